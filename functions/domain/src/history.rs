//! History: the roll-up arithmetic of bay status changes into per-group
//! summaries, and how long a sensor may stay silent before its bay is
//! `unknown`.
//!
//! A roll-up covers a window `[start, end)` of one group (lot, zone, vehicle
//! class). It is built from the status of every bay at `start` and the
//! status changes inside the window, and keeps *sums* (bay-milliseconds
//! occupied, dwell milliseconds) rather than means, so hourly roll-ups merge
//! exactly into daily ones and a window split at any instant merges back into
//! the roll-up of the whole (see [`Rollup::merge`] and the property tests).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, DurationRound, Utc};
use serde::{Deserialize, Serialize};

use crate::class::VehicleClass;
use crate::codecs::SensorModel;
use crate::status::BayStatus;
use crate::stay_lengths::StayLengths;

/// A (lot, zone, vehicle class) group; zone is `None` for bays without one.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupKey {
    pub lot: String,
    pub zone: Option<String>,
    pub class: VehicleClass,
}

/// One bay as the window starts.
#[derive(Clone, Debug, PartialEq)]
pub struct BayAtStart {
    pub group: GroupKey,
    pub bay: String,
    pub status: BayStatus,
}

/// One status change inside the window.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusChange {
    pub group: GroupKey,
    pub bay: String,
    pub at: DateTime<Utc>,
    pub previous: BayStatus,
    pub status: BayStatus,
    /// For a departure (occupied → free): when the bay became occupied, if
    /// that is still known. The dwell of the stay is `at - occupied_since`.
    pub occupied_since: Option<DateTime<Utc>>,
    /// The stay this change starts or ends (the reading path marks it): when
    /// that stay started, which for a start is `at` itself; `None` for a
    /// change that neither starts nor ends one (a stay suspended or resumed
    /// by an `unknown` spell, a silent sensor, a change recorded before stays
    /// were marked).
    pub stay_started_at: Option<DateTime<Utc>>,
    /// For a change that ends a stay: whether that stay went past its limit.
    pub overstayed: bool,
}

impl StatusChange {
    /// A vehicle arrived: the bay became occupied.
    pub fn is_arrival(&self) -> bool {
        self.status == BayStatus::Occupied && self.previous != BayStatus::Occupied
    }

    /// A vehicle left: the bay went from occupied to free. (Occupied to
    /// unknown is a silent sensor, not a departure; to closed is an operator.)
    pub fn is_departure(&self) -> bool {
        self.previous == BayStatus::Occupied && self.status == BayStatus::Free
    }

    /// A stay started (a resumed one is not a start).
    pub fn starts_stay(&self) -> bool {
        self.status == BayStatus::Occupied && self.stay_started_at == Some(self.at)
    }

    /// A stay ended (the bay freed, or closed by an operator): how long it lasted.
    pub fn ends_stay(&self) -> Option<Duration> {
        let started = self.stay_started_at?;
        matches!(self.status, BayStatus::Free | BayStatus::Closed).then(|| self.at - started)
    }
}

/// The summary of one group over one window. Only sums, maxima and minima:
/// every field merges exactly.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rollup {
    /// Length of the window(s) covered, in milliseconds.
    pub span_ms: i64,
    /// Most bays the group had at any point.
    pub bays: u32,
    /// Integral of the number of occupied bays over time (bay-milliseconds).
    pub occupied_bay_ms: i64,
    /// Most bays occupied at once.
    pub peak_occupied: u32,
    /// Fewest bays free at once.
    pub min_free: u32,
    pub arrivals: u32,
    pub departures: u32,
    /// Sum of the dwell times of the departures whose arrival is known.
    pub dwell_total_ms: i64,
    /// How many departures `dwell_total_ms` sums.
    pub dwell_count: u32,
    /// Stays that started in the span.
    pub stays_started: u32,
    /// Stays that ended in the span, and the sum of their lengths.
    pub stays_ended: u32,
    pub stay_total_ms: i64,
    /// The lengths of the stays that ended, by bucket (for percentiles).
    pub stay_lengths: StayLengths,
    /// How many of the stays that ended went past their limit.
    pub overstays: u32,
}

impl Rollup {
    /// Mean number of occupied bays over the span (time-weighted).
    pub fn mean_occupied(&self) -> f64 {
        if self.span_ms <= 0 { 0.0 } else { self.occupied_bay_ms as f64 / self.span_ms as f64 }
    }

    /// Mean occupancy as a fraction of the group's bays (0 for an empty group).
    pub fn mean_occupancy(&self) -> f64 {
        if self.bays == 0 { 0.0 } else { self.mean_occupied() / f64::from(self.bays) }
    }

    /// Mean dwell of the stays that ended in the span, if any did.
    pub fn mean_dwell(&self) -> Option<Duration> {
        (self.dwell_count > 0)
            .then(|| Duration::milliseconds(self.dwell_total_ms / i64::from(self.dwell_count)))
    }

    /// Mean length of the stays that ended in the span, if any did.
    pub fn mean_stay(&self) -> Option<Duration> {
        (self.stays_ended > 0)
            .then(|| Duration::milliseconds(self.stay_total_ms / i64::from(self.stays_ended)))
    }

    /// The 90th percentile of the lengths of the stays that ended (exact to
    /// its length bucket, see [`StayLengths`]).
    pub fn p90_stay(&self) -> Option<Duration> {
        self.stay_lengths.quantile(0.9)
    }

    /// The share of the stays that ended which went past their limit.
    pub fn overstay_share(&self) -> Option<f64> {
        (self.stays_ended > 0).then(|| f64::from(self.overstays) / f64::from(self.stays_ended))
    }

    /// The roll-up of two windows of the same group side by side (or of the
    /// hours of one day).
    pub fn merge(&self, other: &Rollup) -> Rollup {
        if self.span_ms == 0 {
            return *other;
        }
        if other.span_ms == 0 {
            return *self;
        }
        Rollup {
            span_ms: self.span_ms + other.span_ms,
            bays: self.bays.max(other.bays),
            occupied_bay_ms: self.occupied_bay_ms + other.occupied_bay_ms,
            peak_occupied: self.peak_occupied.max(other.peak_occupied),
            min_free: self.min_free.min(other.min_free),
            arrivals: self.arrivals + other.arrivals,
            departures: self.departures + other.departures,
            dwell_total_ms: self.dwell_total_ms + other.dwell_total_ms,
            dwell_count: self.dwell_count + other.dwell_count,
            stays_started: self.stays_started + other.stays_started,
            stays_ended: self.stays_ended + other.stays_ended,
            stay_total_ms: self.stay_total_ms + other.stay_total_ms,
            stay_lengths: self.stay_lengths.merge(&other.stay_lengths),
            overstays: self.overstays + other.overstays,
        }
    }
}

/// Per-group running state while a window is replayed.
struct GroupState {
    bays: BTreeMap<String, BayStatus>,
    occupied: u32,
    free: u32,
    last_at: DateTime<Utc>,
    rollup: Rollup,
}

impl GroupState {
    fn new(start: DateTime<Utc>) -> Self {
        GroupState {
            bays: BTreeMap::new(),
            occupied: 0,
            free: 0,
            last_at: start,
            rollup: Rollup { min_free: u32::MAX, ..Rollup::default() },
        }
    }

    fn count(&mut self, status: BayStatus, delta: i32) {
        let slot = match status {
            BayStatus::Occupied => &mut self.occupied,
            BayStatus::Free => &mut self.free,
            _ => return,
        };
        *slot = slot.saturating_add_signed(delta);
    }

    /// Time passes at the current counts up to `at`.
    fn advance(&mut self, at: DateTime<Utc>) {
        let elapsed = (at - self.last_at).num_milliseconds().max(0);
        self.rollup.occupied_bay_ms += i64::from(self.occupied) * elapsed;
        self.last_at = self.last_at.max(at);
    }

    /// The current counts are one state the group was in.
    fn observe(&mut self) {
        let r = &mut self.rollup;
        r.bays = r.bays.max(u32::try_from(self.bays.len()).unwrap_or(u32::MAX));
        r.peak_occupied = r.peak_occupied.max(self.occupied);
        r.min_free = r.min_free.min(self.free);
    }
}

/// Rolls up the window `[start, end)`: `bays` gives each bay's status at
/// `start`, `changes` the changes with `start <= at < end` (others are
/// ignored). A bay that appears only in `changes` starts in the `previous`
/// status of its first change. Changes are applied in time order (ties in
/// the order given). Answers one roll-up per group.
pub fn roll_up(
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    bays: &[BayAtStart],
    changes: &[StatusChange],
) -> BTreeMap<GroupKey, Rollup> {
    let mut groups: BTreeMap<GroupKey, GroupState> = BTreeMap::new();
    for bay in bays {
        let state = groups.entry(bay.group.clone()).or_insert_with(|| GroupState::new(start));
        if state.bays.insert(bay.bay.clone(), bay.status).is_none() {
            state.count(bay.status, 1);
        }
    }
    let mut ordered: Vec<&StatusChange> = changes.iter().filter(|c| c.at >= start && c.at < end).collect();
    ordered.sort_by_key(|c| c.at);
    for change in &ordered {
        let state = groups.entry(change.group.clone()).or_insert_with(|| GroupState::new(start));
        if !state.bays.contains_key(&change.bay) {
            state.bays.insert(change.bay.clone(), change.previous);
            state.count(change.previous, 1);
        }
    }
    for state in groups.values_mut() {
        state.observe();
    }
    for change in ordered {
        let state = groups.get_mut(&change.group).expect("every change's group was added above");
        state.advance(change.at);
        let current = state.bays.insert(change.bay.clone(), change.status).unwrap_or(change.previous);
        state.count(current, -1);
        state.count(change.status, 1);
        if change.is_arrival() {
            state.rollup.arrivals += 1;
        }
        if change.is_departure() {
            state.rollup.departures += 1;
            if let Some(since) = change.occupied_since.filter(|s| *s <= change.at) {
                state.rollup.dwell_total_ms += (change.at - since).num_milliseconds();
                state.rollup.dwell_count += 1;
            }
        }
        if change.starts_stay() {
            state.rollup.stays_started += 1;
        }
        if let Some(length) = change.ends_stay() {
            let r = &mut state.rollup;
            r.stays_ended += 1;
            r.stay_total_ms += length.num_milliseconds().max(0);
            r.stay_lengths.add(length);
            r.overstays += u32::from(change.overstayed);
        }
        state.observe();
    }
    groups
        .into_iter()
        .map(|(key, mut state)| {
            state.advance(end);
            state.rollup.span_ms = (end - start).num_milliseconds().max(0);
            if state.rollup.min_free == u32::MAX {
                state.rollup.min_free = 0;
            }
            (key, state.rollup)
        })
        .collect()
}

/// The status of every bay at `at`, given the statuses at `start` and the
/// changes since (used to start the next window where the last one ended).
pub fn statuses_at(at: DateTime<Utc>, bays: &[BayAtStart], changes: &[StatusChange]) -> Vec<BayAtStart> {
    let mut by_bay: BTreeMap<(GroupKey, String), BayStatus> =
        bays.iter().map(|b| ((b.group.clone(), b.bay.clone()), b.status)).collect();
    let mut ordered: Vec<&StatusChange> = changes.iter().filter(|c| c.at < at).collect();
    ordered.sort_by_key(|c| c.at);
    for change in ordered {
        by_bay.insert((change.group.clone(), change.bay.clone()), change.status);
    }
    by_bay.into_iter().map(|((group, bay), status)| BayAtStart { group, bay, status }).collect()
}

/// Time buckets of the history API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bucket {
    Hour,
    Day,
}

impl Bucket {
    pub fn parse(value: &str) -> Option<Bucket> {
        match value {
            "hour" => Some(Bucket::Hour),
            "day" => Some(Bucket::Day),
            _ => None,
        }
    }

    pub fn length(self) -> Duration {
        match self {
            Bucket::Hour => Duration::hours(1),
            Bucket::Day => Duration::days(1),
        }
    }

    /// The start of the bucket holding `at` (UTC days).
    pub fn floor(self, at: DateTime<Utc>) -> DateTime<Utc> {
        at.duration_trunc(self.length()).unwrap_or(at)
    }
}

/// The start of the hour holding `at`.
pub fn hour_floor(at: DateTime<Utc>) -> DateTime<Utc> {
    Bucket::Hour.floor(at)
}

/// How often a sensor model says it is alive when nothing else happens.
pub fn heartbeat_interval(model: Option<SensorModel>) -> Duration {
    match model {
        // Bosch PLS: one heartbeat a day.
        Some(SensorModel::BoschPls) => Duration::hours(24),
        // Nwave: a keep-alive every few hours.
        Some(SensorModel::Nwave) => Duration::hours(3),
        // The project's JSON reading has no fixed heartbeat; gateways that
        // speak it are expected to relay something at least hourly.
        None => Duration::hours(1),
    }
}

/// How long a sensor may be silent before its bay is `unknown`: two missed
/// heartbeats plus ten minutes of delivery slack. One lost LoRaWAN uplink
/// is ordinary radio loss; two in a row is an outage worth an alert.
pub fn heartbeat_window(model: Option<SensorModel>) -> Duration {
    heartbeat_interval(model) * 2 + Duration::minutes(10)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(minutes: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap() + Duration::minutes(minutes)
    }

    fn group() -> GroupKey {
        GroupKey { lot: "north".into(), zone: Some("L1".into()), class: VehicleClass::four_wheeler() }
    }

    fn bay(id: &str, status: BayStatus) -> BayAtStart {
        BayAtStart { group: group(), bay: id.into(), status }
    }

    fn change(id: &str, at: i64, previous: BayStatus, status: BayStatus, since: Option<i64>) -> StatusChange {
        StatusChange {
            group: group(),
            bay: id.into(),
            at: t(at),
            previous,
            status,
            occupied_since: since.map(t),
            stay_started_at: None,
            overstayed: false,
        }
    }

    /// A change that starts (`stay_started` = `at`) or ends a stay.
    fn stay_change(
        id: &str,
        at: i64,
        previous: BayStatus,
        status: BayStatus,
        stay_started: i64,
        overstayed: bool,
    ) -> StatusChange {
        StatusChange {
            stay_started_at: Some(t(stay_started)),
            overstayed,
            ..change(id, at, previous, status, None)
        }
    }

    use BayStatus::{Closed, Free, Occupied, Unknown};

    #[test]
    fn occupancy_is_weighted_by_time() {
        // Two bays; B1 occupied for the last 30 minutes, B2 all hour.
        let bays = [bay("B1", Free), bay("B2", Occupied)];
        let changes = [change("B1", 30, Free, Occupied, None)];
        let r = roll_up(t(0), t(60), &bays, &changes)[&group()];
        assert_eq!(r.span_ms, 3_600_000);
        assert_eq!(r.bays, 2);
        assert_eq!(r.occupied_bay_ms, 30 * 60_000 + 60 * 60_000);
        assert!((r.mean_occupied() - 1.5).abs() < 1e-9);
        assert!((r.mean_occupancy() - 0.75).abs() < 1e-9);
        assert_eq!((r.peak_occupied, r.min_free, r.arrivals, r.departures), (2, 0, 1, 0));
    }

    #[test]
    fn departures_carry_dwell_when_the_arrival_is_known() {
        let bays = [bay("B1", Occupied), bay("B2", Occupied)];
        let changes = [
            change("B1", 10, Occupied, Free, Some(-50)),
            change("B2", 20, Occupied, Free, None),
            change("B2", 40, Free, Occupied, None),
        ];
        let r = roll_up(t(0), t(60), &bays, &changes)[&group()];
        assert_eq!((r.arrivals, r.departures, r.dwell_count), (1, 2, 1));
        assert_eq!(r.mean_dwell(), Some(Duration::minutes(60)));
        assert_eq!(r.min_free, 0);
        assert_eq!(r.peak_occupied, 2);
    }

    #[test]
    fn stays_are_counted_by_their_marks_with_length_percentile_and_overstays() {
        let bays = [bay("B1", Occupied), bay("B2", Free), bay("B3", Free)];
        let changes = [
            // B1's stay began an hour before the window and ends in it, over its limit.
            stay_change("B1", 10, Occupied, Free, -50, true),
            // B2: a stay starts, a spell unknown suspends it, it resumes (no
            // new stay) and ends after 40 minutes.
            stay_change("B2", 5, Free, Occupied, 5, false),
            change("B2", 15, Occupied, Unknown, None),
            change("B2", 20, Unknown, Occupied, None),
            stay_change("B2", 45, Occupied, Free, 5, false),
            // B3: a stay starts and goes on past the window.
            stay_change("B3", 50, Free, Occupied, 50, false),
        ];
        let r = roll_up(t(0), t(60), &bays, &changes)[&group()];
        assert_eq!((r.stays_started, r.stays_ended, r.overstays), (2, 2, 1));
        assert_eq!(r.arrivals, 3, "arrivals still count the resume");
        assert_eq!(r.mean_stay(), Some(Duration::minutes(50)), "(60 + 40) / 2");
        assert_eq!(r.overstay_share(), Some(0.5));
        let p90 = r.p90_stay().unwrap();
        assert!(
            p90 >= Duration::minutes(60) && p90 <= Duration::minutes(90),
            "in the 60 min stay's bucket: {p90}"
        );
        assert_eq!(Rollup::default().overstay_share(), None);
    }

    #[test]
    fn unknown_and_closed_are_neither_free_nor_occupied() {
        let bays = [bay("B1", Occupied), bay("B2", Closed), bay("B3", Free)];
        let changes = [change("B1", 15, Occupied, Unknown, None)];
        let r = roll_up(t(0), t(60), &bays, &changes)[&group()];
        assert_eq!(r.departures, 0, "a silent sensor is not a departure");
        assert_eq!(r.occupied_bay_ms, 15 * 60_000);
        assert_eq!((r.peak_occupied, r.min_free, r.bays), (1, 1, 3));
    }

    #[test]
    fn changes_outside_the_window_are_ignored_and_unseen_bays_start_in_their_previous_status() {
        let changes = [change("B9", 30, Free, Occupied, None), change("B9", 60, Occupied, Free, Some(30))];
        let r = roll_up(t(0), t(60), &[], &changes)[&group()];
        assert_eq!((r.bays, r.arrivals, r.departures, r.min_free), (1, 1, 0, 0));
        assert_eq!(r.occupied_bay_ms, 30 * 60_000);
    }

    #[test]
    fn an_empty_window_has_no_groups() {
        assert!(roll_up(t(0), t(60), &[], &[]).is_empty());
    }

    #[test]
    fn statuses_at_applies_earlier_changes_only() {
        let bays = [bay("B1", Free)];
        let changes = [change("B1", 10, Free, Occupied, None), change("B1", 70, Occupied, Free, Some(10))];
        assert_eq!(statuses_at(t(60), &bays, &changes), vec![bay("B1", Occupied)]);
    }

    #[test]
    fn buckets_floor_to_utc_hours_and_days() {
        assert_eq!(Bucket::Hour.floor(t(37)), t(0));
        assert_eq!(Bucket::Day.floor(t(37)), Utc.with_ymd_and_hms(2026, 11, 25, 0, 0, 0).unwrap());
        assert_eq!(Bucket::parse("day"), Some(Bucket::Day));
        assert_eq!(Bucket::parse("week"), None);
    }

    #[test]
    fn heartbeat_windows_allow_one_lost_heartbeat() {
        assert_eq!(heartbeat_window(Some(SensorModel::BoschPls)), Duration::minutes(48 * 60 + 10));
        assert_eq!(heartbeat_window(Some(SensorModel::Nwave)), Duration::minutes(6 * 60 + 10));
        assert!(heartbeat_window(None) > heartbeat_interval(None));
    }
}
