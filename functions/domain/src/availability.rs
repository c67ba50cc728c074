//! Availability counts per (lot, zone, vehicle class) and the full /
//! almost-full state signs show.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::category::BayCategory;
use crate::class::VehicleClass;
use crate::error::DomainError;
use crate::status::BayStatus;

/// How many bays of a group are in each status.
///
/// Invariants (kept by `add`, `remove`, `transition` and `from_statuses`):
/// `free + occupied + unknown + closed == total`, hence `free <= total`,
/// and no count is negative.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub total: u32,
    pub free: u32,
    pub occupied: u32,
    pub unknown: u32,
    pub closed: u32,
}

impl Counts {
    /// Counts the given statuses.
    pub fn from_statuses(statuses: impl IntoIterator<Item = BayStatus>) -> Self {
        let mut counts = Counts::default();
        for status in statuses {
            counts.add(status);
        }
        counts
    }

    /// How many bays have `status`.
    pub fn get(&self, status: BayStatus) -> u32 {
        match status {
            BayStatus::Free => self.free,
            BayStatus::Occupied => self.occupied,
            BayStatus::Unknown => self.unknown,
            BayStatus::Closed => self.closed,
        }
    }

    fn slot(&mut self, status: BayStatus) -> &mut u32 {
        match status {
            BayStatus::Free => &mut self.free,
            BayStatus::Occupied => &mut self.occupied,
            BayStatus::Unknown => &mut self.unknown,
            BayStatus::Closed => &mut self.closed,
        }
    }

    /// Adds one bay with `status`.
    ///
    /// Infallible in practice: a group would need 4 billion bays to
    /// overflow, against a limit of 20 000 per lot. Should it happen, debug
    /// builds panic and release builds leave the counts unchanged, which
    /// keeps them consistent rather than wrapping.
    pub fn add(&mut self, status: BayStatus) {
        debug_assert!(self.total < u32::MAX, "bay counts overflow u32");
        if self.total == u32::MAX {
            return;
        }
        self.total += 1;
        *self.slot(status) += 1;
    }

    /// Removes one bay with `status`.
    ///
    /// Errs, leaving the counts unchanged, if no bay has that status: that
    /// means the caller's idea of the bay's status was wrong, which must be
    /// surfaced (and the group recounted), not hidden by clamping at zero.
    pub fn remove(&mut self, status: BayStatus) -> Result<(), DomainError> {
        let slot = self.slot(status);
        if *slot == 0 {
            return Err(DomainError::CountUnderflow { status });
        }
        *slot -= 1;
        self.total -= 1;
        Ok(())
    }

    /// Moves one bay from `from` to `to`; unchanged on error (see `remove`).
    pub fn transition(&mut self, from: BayStatus, to: BayStatus) -> Result<(), DomainError> {
        self.remove(from)?;
        self.add(to);
        Ok(())
    }

    /// Whether the invariants hold (counts deserialised from elsewhere may
    /// break them).
    pub fn is_consistent(&self) -> bool {
        let sum = u64::from(self.free)
            + u64::from(self.occupied)
            + u64::from(self.unknown)
            + u64::from(self.closed);
        sum == u64::from(self.total) && self.free <= self.total
    }

    /// The counts of two groups together (a lot's class over its zones).
    /// Saturates rather than wraps, as `add` does.
    pub fn plus(&self, other: &Counts) -> Counts {
        Counts {
            total: self.total.saturating_add(other.total),
            free: self.free.saturating_add(other.free),
            occupied: self.occupied.saturating_add(other.occupied),
            unknown: self.unknown.saturating_add(other.unknown),
            closed: self.closed.saturating_add(other.closed),
        }
    }

    /// Bays that are not closed.
    pub fn usable(&self) -> u32 {
        self.total.saturating_sub(self.closed)
    }

    /// Fraction of usable bays that cannot be promised to a driver: every
    /// usable bay not known to be free. Unknown bays count as taken, so a
    /// sign never advertises space no sensor vouches for. A lot with no
    /// usable bay is 1.0 (full).
    pub fn taken_fraction(&self) -> f64 {
        let usable = self.usable();
        if usable == 0 {
            return 1.0;
        }
        f64::from(usable.saturating_sub(self.free)) / f64::from(usable)
    }
}

/// What a sign shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fullness {
    #[default]
    Available,
    AlmostFull,
    Full,
}

impl Fullness {
    pub fn as_str(self) -> &'static str {
        match self {
            Fullness::Available => "available",
            Fullness::AlmostFull => "almost_full",
            Fullness::Full => "full",
        }
    }
}

impl fmt::Display for Fullness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Hysteresis thresholds, as fractions (0..=1) of usable bays taken (see
/// [`Counts::taken_fraction`]). A state is entered when the fraction reaches
/// its `enter` threshold (`>=`) and left when it falls to its `exit`
/// threshold (`<=`); between the two it keeps whatever it was, so a lot
/// hovering at one boundary does not make the sign flicker.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", try_from = "RawThresholds")]
pub struct Thresholds {
    almost_full_enter: f64,
    almost_full_exit: f64,
    full_enter: f64,
    full_exit: f64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawThresholds {
    almost_full_enter: f64,
    almost_full_exit: f64,
    full_enter: f64,
    full_exit: f64,
}

impl TryFrom<RawThresholds> for Thresholds {
    type Error = DomainError;

    fn try_from(r: RawThresholds) -> Result<Self, Self::Error> {
        Thresholds::new(r.almost_full_enter, r.almost_full_exit, r.full_enter, r.full_exit)
    }
}

impl Default for Thresholds {
    /// Almost full from 90 % taken until back to 85 %; full from 100 % until
    /// back to 97 % (on a 100-bay lot: full at 0 free, available again for
    /// the sign at 3 free, so one car leaving and another arriving does not
    /// toggle it).
    fn default() -> Self {
        Thresholds { almost_full_enter: 0.90, almost_full_exit: 0.85, full_enter: 1.0, full_exit: 0.97 }
    }
}

impl Thresholds {
    /// Validates: every value finite in 0..=1; each exit strictly below its
    /// enter (the dead band is what prevents flicker); almost-full below or
    /// at full for both enter and exit, so the states stay ordered.
    pub fn new(
        almost_full_enter: f64,
        almost_full_exit: f64,
        full_enter: f64,
        full_exit: f64,
    ) -> Result<Self, DomainError> {
        let named = [
            ("almostFullEnter", almost_full_enter),
            ("almostFullExit", almost_full_exit),
            ("fullEnter", full_enter),
            ("fullExit", full_exit),
        ];
        for (name, value) in named {
            if !(value.is_finite() && (0.0..=1.0).contains(&value)) {
                return Err(DomainError::InvalidThresholds {
                    detail: format!("{name} is {value}; expected a fraction from 0 to 1"),
                });
            }
        }
        let order = [
            ("almostFullExit", almost_full_exit, "almostFullEnter", almost_full_enter, "below"),
            ("fullExit", full_exit, "fullEnter", full_enter, "below"),
            ("almostFullEnter", almost_full_enter, "fullEnter", full_enter, "at most"),
            ("almostFullExit", almost_full_exit, "fullExit", full_exit, "at most"),
        ];
        for (low_name, low, high_name, high, relation) in order {
            let ok = if relation == "below" { low < high } else { low <= high };
            if !ok {
                return Err(DomainError::InvalidThresholds {
                    detail: format!("{low_name} ({low}) must be {relation} {high_name} ({high})"),
                });
            }
        }
        Ok(Thresholds { almost_full_enter, almost_full_exit, full_enter, full_exit })
    }

    pub fn almost_full_enter(&self) -> f64 {
        self.almost_full_enter
    }

    pub fn almost_full_exit(&self) -> f64 {
        self.almost_full_exit
    }

    pub fn full_enter(&self) -> f64 {
        self.full_enter
    }

    pub fn full_exit(&self) -> f64 {
        self.full_exit
    }
}

/// The sign state after `counts`, given the state it showed before.
///
/// Going up, a state is entered at its enter threshold; going down, it is
/// kept until its exit threshold. With no history, pass
/// `Fullness::Available`: the lot then shows the lowest state consistent
/// with its counts.
pub fn next_fullness(previous: Fullness, counts: &Counts, thresholds: &Thresholds) -> Fullness {
    let taken = counts.taken_fraction();
    let t = thresholds;
    if taken >= t.full_enter || (previous == Fullness::Full && taken > t.full_exit) {
        return Fullness::Full;
    }
    let was_at_least_almost = matches!(previous, Fullness::AlmostFull | Fullness::Full);
    if taken >= t.almost_full_enter || (was_at_least_almost && taken > t.almost_full_exit) {
        return Fullness::AlmostFull;
    }
    Fullness::Available
}

/// A lot's availability as the API shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LotAvailability {
    pub lot: String,
    /// When any bay of the lot last changed status; null if none ever did.
    pub updated_at: Option<DateTime<Utc>>,
    /// Counts over the whole lot, zoned or not.
    pub classes: BTreeMap<VehicleClass, Counts>,
    /// Per zone, sorted by zone name.
    pub zones: Vec<ZoneAvailability>,
    /// Per bay category (a bay counts in each of its categories); only
    /// shown when some bay has a category.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub categories: BTreeMap<BayCategory, Counts>,
    /// Whether the lot is open now (its hours, or an operator's closing);
    /// set by the read API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open: Option<bool>,
}

/// One zone's counts within a [`LotAvailability`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ZoneAvailability {
    pub zone: String,
    pub classes: BTreeMap<VehicleClass, Counts>,
}

/// One bay, as [`summarise`] needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BayCount<'a> {
    pub zone: Option<&'a str>,
    pub class: &'a VehicleClass,
    pub status: BayStatus,
    /// When the bay last changed status.
    pub changed_at: Option<DateTime<Utc>>,
}

/// Builds a lot's availability from its bays. Bays without a zone count in
/// the lot's classes but in no zone.
pub fn summarise<'a>(lot: &str, bays: impl IntoIterator<Item = BayCount<'a>>) -> LotAvailability {
    // Each bay is a group of one.
    summarise_groups(
        lot,
        bays.into_iter().map(|bay| {
            let mut counts = Counts::default();
            counts.add(bay.status);
            GroupCount { zone: bay.zone, class: bay.class, counts, changed_at: bay.changed_at }
        }),
    )
}

/// One (zone, class) group's counts, as kept per group (the counts table).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupCount<'a> {
    pub zone: Option<&'a str>,
    pub class: &'a VehicleClass,
    pub counts: Counts,
    /// When a bay of the group last changed status.
    pub changed_at: Option<DateTime<Utc>>,
}

/// Builds a lot's availability from its groups' counts: the same answer as
/// [`summarise`] over the groups' bays, without visiting a bay.
pub fn summarise_groups<'a>(lot: &str, groups: impl IntoIterator<Item = GroupCount<'a>>) -> LotAvailability {
    let mut classes: BTreeMap<VehicleClass, Counts> = BTreeMap::new();
    let mut zones: BTreeMap<&'a str, BTreeMap<VehicleClass, Counts>> = BTreeMap::new();
    let mut updated_at = None;
    for group in groups.into_iter().filter(|g| g.counts.total > 0) {
        let class = classes.entry(group.class.clone()).or_default();
        *class = class.plus(&group.counts);
        if let Some(zone) = group.zone {
            let counts = zones.entry(zone).or_default().entry(group.class.clone()).or_default();
            *counts = counts.plus(&group.counts);
        }
        updated_at = updated_at.max(group.changed_at);
    }
    LotAvailability {
        lot: lot.to_owned(),
        updated_at,
        classes,
        zones: zones
            .into_iter()
            .map(|(zone, classes)| ZoneAvailability { zone: zone.to_owned(), classes })
            .collect(),
        ..LotAvailability::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use BayStatus::{Closed, Free, Occupied, Unknown};
    use chrono::TimeZone;

    #[test]
    fn counts_add_remove_transition() {
        let mut c = Counts::default();
        c.add(Free);
        c.add(Free);
        c.add(Closed);
        assert_eq!(c, Counts { total: 3, free: 2, occupied: 0, unknown: 0, closed: 1 });
        c.transition(Free, Occupied).unwrap();
        assert_eq!(c, Counts { total: 3, free: 1, occupied: 1, unknown: 0, closed: 1 });
        c.remove(Closed).unwrap();
        assert_eq!(c, Counts { total: 2, free: 1, occupied: 1, unknown: 0, closed: 0 });
        assert!(c.is_consistent());
    }

    #[test]
    fn removing_a_status_nobody_has_is_an_error_and_changes_nothing() {
        let mut c = Counts::from_statuses([Free]);
        let before = c;
        let e = c.remove(Occupied).unwrap_err();
        assert_eq!(c, before);
        assert_eq!(
            e.to_string(),
            "counts: cannot remove a bay with status occupied: the occupied count is already 0 \
             (each removed bay must have been added)"
        );
        assert!(c.transition(Unknown, Free).is_err());
        assert_eq!(c, before);
    }

    #[test]
    fn from_statuses_counts_each() {
        let c = Counts::from_statuses([Free, Occupied, Occupied, Unknown, Closed, Free]);
        assert_eq!(c, Counts { total: 6, free: 2, occupied: 2, unknown: 1, closed: 1 });
        for s in BayStatus::ALL {
            assert_eq!(
                c.get(s),
                [Free, Occupied, Occupied, Unknown, Closed, Free].iter().filter(|x| **x == s).count() as u32
            );
        }
    }

    #[test]
    fn consistency() {
        assert!(Counts::default().is_consistent());
        assert!(!Counts { total: 1, free: 2, occupied: 0, unknown: 0, closed: 0 }.is_consistent());
        assert!(!Counts { total: 3, free: 1, occupied: 1, unknown: 0, closed: 0 }.is_consistent());
        let huge = Counts { total: u32::MAX, free: u32::MAX, occupied: u32::MAX, unknown: 0, closed: 2 };
        assert!(!huge.is_consistent());
    }

    #[test]
    fn counts_serialise_in_field_order() {
        let json = serde_json::to_string(&Counts::from_statuses([Free])).unwrap();
        assert_eq!(json, r#"{"total":1,"free":1,"occupied":0,"unknown":0,"closed":0}"#);
    }

    #[test]
    fn taken_fraction_counts_unknown_as_taken_and_ignores_closed() {
        let c = Counts { total: 10, free: 4, occupied: 3, unknown: 1, closed: 2 };
        assert_eq!(c.usable(), 8);
        assert!((c.taken_fraction() - 0.5).abs() < 1e-12);
        assert_eq!(Counts::from_statuses([Closed]).taken_fraction(), 1.0);
        assert_eq!(Counts::default().taken_fraction(), 1.0);
    }

    fn lot(free: u32, occupied: u32) -> Counts {
        Counts { total: free + occupied, free, occupied, unknown: 0, closed: 0 }
    }

    #[test]
    fn fullness_enters_at_enter_and_leaves_at_exit() {
        let t = Thresholds::default();
        use Fullness::{AlmostFull, Available, Full};
        // 100 bays: almost full from 90 taken, back at 85; full at 100, back at 97.
        assert_eq!(next_fullness(Available, &lot(11, 89), &t), Available);
        assert_eq!(next_fullness(Available, &lot(10, 90), &t), AlmostFull);
        assert_eq!(next_fullness(AlmostFull, &lot(14, 86), &t), AlmostFull);
        assert_eq!(next_fullness(AlmostFull, &lot(15, 85), &t), Available);
        assert_eq!(next_fullness(AlmostFull, &lot(1, 99), &t), AlmostFull);
        assert_eq!(next_fullness(AlmostFull, &lot(0, 100), &t), Full);
        assert_eq!(next_fullness(Full, &lot(2, 98), &t), Full);
        assert_eq!(next_fullness(Full, &lot(3, 97), &t), AlmostFull);
        assert_eq!(next_fullness(Full, &lot(50, 50), &t), Available);
        assert_eq!(next_fullness(Available, &lot(0, 100), &t), Full);
        // In the band with no history, the lower state.
        assert_eq!(next_fullness(Available, &lot(12, 88), &t), Available);
    }

    #[test]
    fn fullness_does_not_flicker_at_the_boundary() {
        let t = Thresholds::default();
        let mut state = Fullness::Available;
        let mut changes = 0;
        // One car in, one out, repeatedly, right at the almost-full line.
        for taken in [89, 90, 89, 90, 89, 90, 89, 88, 89, 90] {
            let next = next_fullness(state, &lot(100 - taken, taken), &t);
            changes += usize::from(next != state);
            state = next;
        }
        assert_eq!(changes, 1);
        assert_eq!(state, Fullness::AlmostFull);
    }

    #[test]
    fn closed_and_empty_lots_are_full() {
        let t = Thresholds::default();
        assert_eq!(
            next_fullness(Fullness::Available, &Counts::from_statuses([Closed, Closed]), &t),
            Fullness::Full
        );
        assert_eq!(next_fullness(Fullness::Available, &Counts::default(), &t), Fullness::Full);
    }

    #[test]
    fn unknown_bays_are_not_promised() {
        let c = Counts { total: 10, free: 0, occupied: 0, unknown: 10, closed: 0 };
        assert_eq!(next_fullness(Fullness::Available, &c, &Thresholds::default()), Fullness::Full);
    }

    #[test]
    fn thresholds_validation_names_the_threshold() {
        assert!(Thresholds::new(0.9, 0.85, 1.0, 0.97).is_ok());
        assert_eq!(Thresholds::new(0.9, 0.85, 1.0, 0.97).unwrap(), Thresholds::default());
        let cases = [
            ((0.9, 0.9, 1.0, 0.97), "thresholds: almostFullExit (0.9) must be below almostFullEnter (0.9)"),
            ((0.9, 0.85, 0.95, 0.95), "thresholds: fullExit (0.95) must be below fullEnter (0.95)"),
            ((0.95, 0.85, 0.9, 0.8), "thresholds: almostFullEnter (0.95) must be at most fullEnter (0.9)"),
            ((0.9, 0.85, 1.0, 0.8), "thresholds: almostFullExit (0.85) must be at most fullExit (0.8)"),
            ((1.5, 0.85, 1.0, 0.97), "thresholds: almostFullEnter is 1.5; expected a fraction from 0 to 1"),
            ((0.9, -0.1, 1.0, 0.97), "thresholds: almostFullExit is -0.1; expected a fraction from 0 to 1"),
            ((0.9, 0.85, f64::NAN, 0.97), "thresholds: fullEnter is NaN; expected a fraction from 0 to 1"),
            ((0.9, 0.85, 1.0, f64::INFINITY), "thresholds: fullExit is inf; expected a fraction from 0 to 1"),
        ];
        for ((a, b, c, d), msg) in cases {
            assert_eq!(Thresholds::new(a, b, c, d).unwrap_err().to_string(), msg);
        }
    }

    #[test]
    fn thresholds_serde_validates() {
        let json = serde_json::to_string(&Thresholds::default()).unwrap();
        assert_eq!(json, r#"{"almostFullEnter":0.9,"almostFullExit":0.85,"fullEnter":1.0,"fullExit":0.97}"#);
        assert_eq!(serde_json::from_str::<Thresholds>(&json).unwrap(), Thresholds::default());
        let bad = r#"{"almostFullEnter":0.8,"almostFullExit":0.85,"fullEnter":1.0,"fullExit":0.97}"#;
        assert!(serde_json::from_str::<Thresholds>(bad).unwrap_err().to_string().contains("almostFullExit"));
    }

    #[test]
    fn fullness_serialises_in_snake_case() {
        assert_eq!(serde_json::to_string(&Fullness::AlmostFull).unwrap(), "\"almost_full\"");
        assert_eq!(Fullness::Full.to_string(), "full");
        assert_eq!(serde_json::from_str::<Fullness>("\"available\"").unwrap(), Fullness::Available);
    }

    #[test]
    fn summarise_groups_by_class_and_zone() {
        let car = VehicleClass::four_wheeler();
        let bike = VehicleClass::two_wheeler();
        let at = |h| Some(Utc.with_ymd_and_hms(2026, 11, 25, h, 0, 0).unwrap());
        let bays = [
            BayCount { zone: Some("L2"), class: &car, status: Free, changed_at: at(9) },
            BayCount { zone: Some("L1"), class: &car, status: Occupied, changed_at: at(11) },
            BayCount { zone: Some("L1"), class: &bike, status: Unknown, changed_at: None },
            BayCount { zone: None, class: &car, status: Closed, changed_at: at(10) },
        ];
        let a = summarise("central", bays);
        assert_eq!(a.lot, "central");
        assert_eq!(a.updated_at, at(11));
        assert_eq!(a.classes[&car], Counts { total: 3, free: 1, occupied: 1, unknown: 0, closed: 1 });
        assert_eq!(a.classes[&bike], Counts { total: 1, free: 0, occupied: 0, unknown: 1, closed: 0 });
        let names: Vec<&str> = a.zones.iter().map(|z| z.zone.as_str()).collect();
        assert_eq!(names, ["L1", "L2"]);
        assert_eq!(a.zones[0].classes[&car], Counts::from_statuses([Occupied]));
        assert_eq!(a.zones[0].classes[&bike], Counts::from_statuses([Unknown]));
        assert_eq!(a.zones[1].classes[&car], Counts::from_statuses([Free]));
        assert!(!a.zones[1].classes.contains_key(&bike));
    }

    #[test]
    fn summarise_serialises_in_the_api_shape() {
        let car = VehicleClass::four_wheeler();
        let at = Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap();
        let a = summarise(
            "central",
            [BayCount { zone: Some("L1"), class: &car, status: Free, changed_at: Some(at) }],
        );
        let counts = r#"{"four_wheeler":{"total":1,"free":1,"occupied":0,"unknown":0,"closed":0}}"#;
        let expected = format!(
            r#"{{"lot":"central","updatedAt":"2026-11-25T10:00:00Z","classes":{counts},"zones":[{{"zone":"L1","classes":{counts}}}]}}"#
        );
        assert_eq!(serde_json::to_string(&a).unwrap(), expected);
        assert_eq!(serde_json::from_str::<LotAvailability>(&expected).unwrap(), a);
    }

    #[test]
    fn summarise_of_no_bays() {
        let a = summarise("empty", std::iter::empty());
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            r#"{"lot":"empty","updatedAt":null,"classes":{},"zones":[]}"#
        );
    }
}
