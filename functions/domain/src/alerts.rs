//! Alerts: what an operator must look at, and when one opens and closes.
//!
//! An alert is open while its cause lasts; at most one is open per (kind,
//! subject). Opening and closing follow hysteresis, so a value hovering at a
//! threshold does not raise a stream of alerts.

use serde::{Deserialize, Serialize};

use crate::availability::{Counts, Fullness, Thresholds, next_fullness};

/// The kinds of `io.parking.sensor.alert.v1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A sensor silent past its heartbeat window (subject `lot/bay`).
    SensorOffline,
    /// A sensor's battery is running out (subject `lot/bay`).
    BatteryLow,
    /// Every usable bay of a vehicle class in a lot is taken (subject `lot/class`).
    LotFull,
    /// A class in a lot is almost full (subject `lot/class`).
    LotAlmostFull,
    /// A device reports but no bay has it as its sensor (subject: the device).
    UnknownDevice,
    /// A stay past its bay's time limit (subject `lot/bay`): opened when the
    /// overstay is raised, closed when the bay frees.
    BayOverstay,
}

impl AlertKind {
    pub const ALL: [AlertKind; 6] = [
        AlertKind::SensorOffline,
        AlertKind::BatteryLow,
        AlertKind::LotFull,
        AlertKind::LotAlmostFull,
        AlertKind::UnknownDevice,
        AlertKind::BayOverstay,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::SensorOffline => "sensor_offline",
            AlertKind::BatteryLow => "battery_low",
            AlertKind::LotFull => "lot_full",
            AlertKind::LotAlmostFull => "lot_almost_full",
            AlertKind::UnknownDevice => "unknown_device",
            AlertKind::BayOverstay => "bay_overstay",
        }
    }

    pub fn parse(value: &str) -> Option<AlertKind> {
        AlertKind::ALL.into_iter().find(|k| k.as_str() == value)
    }
}

/// The alert a sign state keeps open (none while available).
pub fn fullness_alert(fullness: Fullness) -> Option<AlertKind> {
    match fullness {
        Fullness::Available => None,
        Fullness::AlmostFull => Some(AlertKind::LotAlmostFull),
        Fullness::Full => Some(AlertKind::LotFull),
    }
}

/// The fullness an operator is alerted about: judged on the bays whose
/// state a sensor vouches for (free or occupied), unlike a sign, which
/// counts unknown bays as taken. While fewer than half of the usable bays
/// are known, nothing can be judged and the previous state stays, so a lot
/// whose sensors are still joining (or silent) raises no "full" alert.
pub fn alert_fullness(previous: Fullness, counts: &Counts, thresholds: &Thresholds) -> Fullness {
    let known = counts.free + counts.occupied;
    if known == 0 || known * 2 < counts.usable() {
        return previous;
    }
    let judged = Counts { total: known, free: counts.free, occupied: counts.occupied, unknown: 0, closed: 0 };
    next_fullness(previous, &judged, thresholds)
}

/// The sign state the open fullness alerts of a (lot, class) stand for.
pub fn fullness_from_alerts(open: &[AlertKind]) -> Fullness {
    if open.contains(&AlertKind::LotFull) {
        Fullness::Full
    } else if open.contains(&AlertKind::LotAlmostFull) {
        Fullness::AlmostFull
    } else {
        Fullness::Available
    }
}

/// Battery voltage thresholds of the low-battery alert. The usual bay sensor
/// runs on a 3.6 V lithium thionyl chloride cell, whose voltage stays flat
/// for years and drops near the end: below `low_below` the alert opens; it
/// closes only at `ok_from` or above (a replaced battery), so a cell
/// wavering with temperature around the threshold raises one alert.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatteryThresholds {
    pub low_below: f64,
    pub ok_from: f64,
}

impl Default for BatteryThresholds {
    fn default() -> Self {
        BatteryThresholds { low_below: 3.2, ok_from: 3.4 }
    }
}

/// What a battery reading does to the low-battery alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatteryAlert {
    Open,
    Close,
    Keep,
}

/// Compares a battery reading with the bay's previous one: crossing below
/// `low_below` opens the alert, crossing up to `ok_from` closes it, anything
/// else keeps it as it is. (Opening twice is harmless: one alert is open per
/// subject at most.)
pub fn battery_alert(previous: Option<f64>, volts: f64, t: &BatteryThresholds) -> BatteryAlert {
    let was_low = previous.is_some_and(|p| p < t.low_below);
    let was_ok = previous.is_some_and(|p| p >= t.ok_from);
    if volts < t.low_below && !was_low {
        BatteryAlert::Open
    } else if volts >= t.ok_from && !was_ok {
        BatteryAlert::Close
    } else {
        BatteryAlert::Keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        for kind in AlertKind::ALL {
            assert_eq!(AlertKind::parse(kind.as_str()), Some(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        assert_eq!(AlertKind::parse("meteor"), None);
    }

    #[test]
    fn fullness_and_its_alerts_agree() {
        for f in [Fullness::Available, Fullness::AlmostFull, Fullness::Full] {
            let open: Vec<AlertKind> = fullness_alert(f).into_iter().collect();
            assert_eq!(fullness_from_alerts(&open), f);
        }
    }

    #[test]
    fn fullness_alerts_judge_known_bays_only() {
        let t = Thresholds::default();
        let counts = |free, occupied, unknown| Counts {
            total: free + occupied + unknown,
            free,
            occupied,
            unknown,
            closed: 0,
        };
        use Fullness::{AlmostFull, Available, Full};
        assert_eq!(alert_fullness(Available, &counts(0, 1, 2), &t), Available, "one known bay of three");
        assert_eq!(alert_fullness(Full, &counts(0, 0, 3), &t), Full, "nothing known: unchanged");
        assert_eq!(alert_fullness(Available, &counts(0, 2, 1), &t), Full);
        assert_eq!(alert_fullness(Available, &counts(1, 9, 0), &t), AlmostFull);
        // Hysteresis: 98 % taken keeps a full lot full, 96 % releases it.
        assert_eq!(alert_fullness(Full, &counts(2, 98, 0), &t), Full);
        assert_eq!(alert_fullness(Full, &counts(4, 96, 0), &t), AlmostFull);
        assert_eq!(alert_fullness(AlmostFull, &counts(14, 86, 0), &t), AlmostFull);
        assert_eq!(alert_fullness(AlmostFull, &counts(15, 85, 0), &t), Available);
    }

    #[test]
    fn battery_alerts_open_and_close_with_hysteresis() {
        let t = BatteryThresholds::default();
        use BatteryAlert::{Close, Keep, Open};
        assert_eq!(battery_alert(None, 3.6, &t), Close, "a first good reading closes any stale alert");
        assert_eq!(battery_alert(Some(3.6), 3.6, &t), Keep);
        assert_eq!(battery_alert(Some(3.25), 3.19, &t), Open);
        assert_eq!(battery_alert(Some(3.19), 3.18, &t), Keep);
        assert_eq!(battery_alert(Some(3.19), 3.25, &t), Keep, "inside the dead band nothing changes");
        assert_eq!(battery_alert(Some(3.25), 3.19, &t), Open, "open again is idempotent");
        assert_eq!(battery_alert(Some(3.3), 3.6, &t), Close);
    }
}
