//! How readings update a bay: ordering, deduplication, silence.
//!
//! Readings arrive at least once and out of order. A bay keeps the
//! observation it last applied; each new reading is compared with it by
//! observation time, then by frame counter (`seq`), so the bay always ends
//! at its newest observation whatever order the readings came in.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::status::BayStatus;

/// How far apart two receptions of the same frame counter may be and still
/// be the same radio frame. One uplink heard by two gateways is relayed
/// twice, each copy stamped with its own receive time; two minutes covers
/// gateway and backhaul delays while being far shorter than any sensor's
/// reporting interval, so a device's counter never repeats inside it unless
/// the device rejoined within that time.
pub const FRAME_REPLAY_WINDOW: Duration = Duration::minutes(2);

/// A bay's last applied state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Observation {
    pub status: BayStatus,
    /// When the applied reading was observed; `None` means never observed.
    pub observed_at: Option<DateTime<Utc>>,
    /// The applied reading's frame counter, if it had one.
    pub seq: Option<u32>,
}

impl Observation {
    /// A freshly provisioned bay: `unknown`, never observed.
    pub fn never_observed() -> Self {
        Observation { status: BayStatus::Unknown, observed_at: None, seq: None }
    }
}

impl Default for Observation {
    fn default() -> Self {
        Observation::never_observed()
    }
}

/// What a reading does to a bay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The reading is newer and changes the status: store it, emit events.
    Changed(Observation),
    /// The reading is newer but the status stays: store its time and seq,
    /// emit nothing.
    Refreshed(Observation),
    /// The same frame again (redelivery or a second gateway): ignore it.
    Duplicate,
    /// Older than what the bay has: ignore it.
    Stale,
}

impl Outcome {
    /// The observation to store, if the reading is to be applied.
    pub fn observation(&self) -> Option<&Observation> {
        match self {
            Outcome::Changed(o) | Outcome::Refreshed(o) => Some(o),
            Outcome::Duplicate | Outcome::Stale => None,
        }
    }
}

/// The status a sensor reading reports.
pub fn status_for(occupied: bool) -> BayStatus {
    if occupied { BayStatus::Occupied } else { BayStatus::Free }
}

/// Applies one reading to a bay's last observation.
///
/// Readings are ordered by `(observed_at, seq)`, where a missing seq sorts
/// before any seq (so the order is total and the result does not depend on
/// arrival order):
/// - lower than the bay's key: `Stale`; equal: `Duplicate`;
/// - higher: applied, even if seq went down (counters reset on rejoin),
///   except that the same seq again within [`FRAME_REPLAY_WINDOW`] is the
///   same frame relayed with another receive time: `Duplicate`.
///
/// A `closed` bay stays closed (operators own that status): newer readings
/// only refresh its time and seq. Any other status follows the reading.
pub fn apply_reading(
    current: &Observation,
    occupied: bool,
    observed_at: DateTime<Utc>,
    seq: Option<u32>,
) -> Outcome {
    if let Some(last) = current.observed_at {
        let (incoming, stored) = ((observed_at, seq), (last, current.seq));
        if incoming < stored {
            return Outcome::Stale;
        }
        if incoming == stored {
            return Outcome::Duplicate;
        }
        let replayed_frame = seq.is_some() && seq == current.seq && observed_at - last <= FRAME_REPLAY_WINDOW;
        if replayed_frame {
            return Outcome::Duplicate;
        }
    }
    let status = if current.status == BayStatus::Closed { BayStatus::Closed } else { status_for(occupied) };
    let next = Observation { status, observed_at: Some(observed_at), seq };
    if status == current.status { Outcome::Refreshed(next) } else { Outcome::Changed(next) }
}

/// Whether a sensor last heard at `last_seen` has been silent for longer
/// than `heartbeat_window` at `now` (exactly the window is not yet silent).
///
/// A bay that was never seen is not silent: it is provisioned `unknown`
/// already, so there is nothing to mark. A `last_seen` after `now` (clock
/// skew between hosts) is not silent either.
pub fn is_silent(last_seen: Option<DateTime<Utc>>, now: DateTime<Utc>, heartbeat_window: Duration) -> bool {
    match last_seen {
        None => false,
        Some(seen) => now - seen > heartbeat_window,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap() + Duration::seconds(secs)
    }

    fn obs(status: BayStatus, at: i64, seq: Option<u32>) -> Observation {
        Observation { status, observed_at: Some(t(at)), seq }
    }

    use BayStatus::{Closed, Free, Occupied, Unknown};

    #[test]
    fn first_reading_of_a_new_bay_changes_it() {
        let out = apply_reading(&Observation::never_observed(), true, t(0), Some(1));
        assert_eq!(out, Outcome::Changed(obs(Occupied, 0, Some(1))));
        let out = apply_reading(&Observation::default(), false, t(0), None);
        assert_eq!(out, Outcome::Changed(obs(Free, 0, None)));
    }

    #[test]
    fn newer_reading_with_another_status_changes() {
        assert_eq!(
            apply_reading(&obs(Free, 0, Some(1)), true, t(60), Some(2)),
            Outcome::Changed(obs(Occupied, 60, Some(2)))
        );
    }

    #[test]
    fn newer_reading_with_the_same_status_refreshes() {
        assert_eq!(
            apply_reading(&obs(Free, 0, Some(1)), false, t(60), Some(2)),
            Outcome::Refreshed(obs(Free, 60, Some(2)))
        );
    }

    #[test]
    fn older_reading_is_stale() {
        assert_eq!(apply_reading(&obs(Free, 60, Some(5)), true, t(0), Some(4)), Outcome::Stale);
        // Even with a higher seq: time decides first.
        assert_eq!(apply_reading(&obs(Free, 60, Some(5)), true, t(0), Some(9)), Outcome::Stale);
        assert_eq!(apply_reading(&obs(Free, 60, None), true, t(0), None), Outcome::Stale);
    }

    #[test]
    fn same_time_same_seq_is_a_duplicate() {
        assert_eq!(apply_reading(&obs(Free, 0, Some(3)), false, t(0), Some(3)), Outcome::Duplicate);
        assert_eq!(apply_reading(&obs(Free, 0, None), false, t(0), None), Outcome::Duplicate);
        // Even if the copy disagrees: the first one applied stands.
        assert_eq!(apply_reading(&obs(Free, 0, Some(3)), true, t(0), Some(3)), Outcome::Duplicate);
    }

    #[test]
    fn same_time_higher_seq_applies_lower_is_stale() {
        assert_eq!(
            apply_reading(&obs(Free, 0, Some(3)), true, t(0), Some(4)),
            Outcome::Changed(obs(Occupied, 0, Some(4)))
        );
        assert_eq!(apply_reading(&obs(Free, 0, Some(3)), true, t(0), Some(2)), Outcome::Stale);
        // A counter sorts after no counter, so the order stays total.
        assert_eq!(
            apply_reading(&obs(Free, 0, None), true, t(0), Some(0)),
            Outcome::Changed(obs(Occupied, 0, Some(0)))
        );
        assert_eq!(apply_reading(&obs(Free, 0, Some(0)), true, t(0), None), Outcome::Stale);
    }

    #[test]
    fn newer_time_applies_even_if_seq_reset() {
        assert_eq!(
            apply_reading(&obs(Occupied, 0, Some(9000)), false, t(3600), Some(0)),
            Outcome::Changed(obs(Free, 3600, Some(0)))
        );
        // A reset seen within the replay window still applies if the counter differs.
        assert_eq!(
            apply_reading(&obs(Occupied, 0, Some(9000)), false, t(30), Some(1)),
            Outcome::Changed(obs(Free, 30, Some(1)))
        );
    }

    #[test]
    fn same_seq_within_the_replay_window_is_the_same_frame() {
        let current = obs(Free, 0, Some(7));
        assert_eq!(apply_reading(&current, true, t(1), Some(7)), Outcome::Duplicate);
        assert_eq!(apply_reading(&current, true, t(120), Some(7)), Outcome::Duplicate);
        // Past the window the counter has wrapped or reset: a new frame.
        assert_eq!(
            apply_reading(&current, true, t(121), Some(7)),
            Outcome::Changed(obs(Occupied, 121, Some(7)))
        );
        // Without counters there is nothing to match: newer applies.
        assert_eq!(
            apply_reading(&obs(Free, 0, None), true, t(1), None),
            Outcome::Changed(obs(Occupied, 1, None))
        );
    }

    #[test]
    fn closed_bays_stay_closed() {
        let closed = obs(Closed, 0, Some(1));
        assert_eq!(
            apply_reading(&closed, true, t(60), Some(2)),
            Outcome::Refreshed(obs(Closed, 60, Some(2)))
        );
        assert_eq!(
            apply_reading(&closed, false, t(60), Some(2)),
            Outcome::Refreshed(obs(Closed, 60, Some(2)))
        );
        assert_eq!(apply_reading(&closed, true, t(0), Some(1)), Outcome::Duplicate);
        assert_eq!(apply_reading(&closed, true, t(-1), Some(1)), Outcome::Stale);
        let never = Observation { status: Closed, observed_at: None, seq: None };
        assert_eq!(apply_reading(&never, true, t(0), None), Outcome::Refreshed(obs(Closed, 0, None)));
    }

    #[test]
    fn unknown_bays_follow_newer_readings() {
        // Marked unknown after silence, the last observation is kept.
        let silent = obs(Unknown, 0, Some(5));
        assert_eq!(apply_reading(&silent, false, t(900), Some(6)), Outcome::Changed(obs(Free, 900, Some(6))));
        // A late copy of the old frame does not revive it.
        assert_eq!(apply_reading(&silent, false, t(0), Some(5)), Outcome::Duplicate);
        assert_eq!(apply_reading(&silent, false, t(-10), Some(4)), Outcome::Stale);
    }

    #[test]
    fn outcome_exposes_the_observation_to_store() {
        let o = obs(Free, 0, None);
        assert_eq!(Outcome::Changed(o).observation(), Some(&o));
        assert_eq!(Outcome::Refreshed(o).observation(), Some(&o));
        assert_eq!(Outcome::Duplicate.observation(), None);
        assert_eq!(Outcome::Stale.observation(), None);
    }

    #[test]
    fn status_for_readings() {
        assert_eq!(status_for(true), Occupied);
        assert_eq!(status_for(false), Free);
    }

    #[test]
    fn silence() {
        let window = Duration::minutes(30);
        assert!(!is_silent(None, t(0), window));
        assert!(!is_silent(Some(t(0)), t(0), window));
        assert!(!is_silent(Some(t(0)), t(1800), window));
        assert!(is_silent(Some(t(0)), t(1801), window));
        assert!(!is_silent(Some(t(60)), t(0), window));
    }

    #[test]
    fn observation_serialises_in_camel_case() {
        let json = serde_json::to_string(&obs(Free, 0, Some(1))).unwrap();
        assert_eq!(json, r#"{"status":"free","observedAt":"2026-11-25T10:00:00Z","seq":1}"#);
    }
}
