//! CloudEvent types and the data of the events the domain derives.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::availability::Counts;
use crate::class::VehicleClass;
use crate::status::BayStatus;

/// One MQTT message as received by the bridge; `subject` is the device id.
pub const UPLINK_V1: &str = "io.parking.sensor.uplink.v1";
/// A bay changed status; data is [`SlotChanged`].
pub const SLOT_CHANGED_V1: &str = "io.parking.slot.changed.v1";
/// Counts of a (lot, zone, class) changed; data is [`AvailabilityChanged`].
pub const AVAILABILITY_CHANGED_V1: &str = "io.parking.availability.changed.v1";
/// A sensor is offline, low on battery or faulty.
pub const SENSOR_ALERT_V1: &str = "io.parking.sensor.alert.v1";
/// A display terminal was provisioned, changed or deleted; `subject` is the
/// terminal id. Its frame is rendered (or cleared) from the stored truth.
pub const TERMINAL_CHANGED_V1: &str = "io.parking.terminal.changed.v1";
/// A stay passed its bay's time limit; data is [`Overstay`]. Raised once per
/// stay; its `id` is `overstay/{lot}/{bay}/{stay start in ms}`, whichever
/// path raises it.
pub const BAY_OVERSTAY_V1: &str = "io.parking.bay.overstay.v1";
/// Knative PingSource's cron tick.
pub const PING: &str = "dev.knative.sources.ping";
/// What a retention sweep did (its answer to a tick). terminal-push takes it
/// as the moment to render every sign again.
pub const SWEEP_REPORT_V1: &str = "io.parking.sweep.report.v1";

/// Data of `io.parking.slot.changed.v1`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlotChanged {
    pub lot: String,
    pub bay: String,
    #[serde(default)]
    pub zone: Option<String>,
    pub class: VehicleClass,
    /// The sensor whose reading caused the change; null when an operator or
    /// the retention sweep (silence) did.
    #[serde(default)]
    pub device: Option<String>,
    pub previous: BayStatus,
    pub status: BayStatus,
    pub observed_at: DateTime<Utc>,
}

/// Data of `io.parking.availability.changed.v1`: the group's counts after
/// the change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AvailabilityChanged {
    pub lot: String,
    /// Null for the bays of the lot that have no zone.
    #[serde(default)]
    pub zone: Option<String>,
    pub class: VehicleClass,
    pub counts: Counts,
    pub changed_at: DateTime<Utc>,
}

/// Data of `io.parking.bay.overstay.v1`: all observation times, so a replayed
/// stream derives the same data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Overstay {
    pub lot: String,
    pub bay: String,
    #[serde(default)]
    pub zone: Option<String>,
    pub class: VehicleClass,
    /// When the stay began (the bay turned occupied).
    pub since: DateTime<Utc>,
    /// The limit it passed (ISO 8601).
    pub max_stay: String,
    /// When its restricted time passed the limit plus grace.
    pub due_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn slot_changed_shape() {
        let e = SlotChanged {
            lot: "central".into(),
            bay: "B1".into(),
            zone: Some("L1".into()),
            class: VehicleClass::four_wheeler(),
            device: Some("DEV-1".into()),
            previous: BayStatus::Free,
            status: BayStatus::Occupied,
            observed_at: Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap(),
        };
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(
            json,
            r#"{"lot":"central","bay":"B1","zone":"L1","class":"four_wheeler","device":"DEV-1","previous":"free","status":"occupied","observedAt":"2026-11-25T10:00:00Z"}"#
        );
        assert_eq!(serde_json::from_str::<SlotChanged>(&json).unwrap(), e);
        let minimal = r#"{"lot":"c","bay":"B","class":"two_wheeler","previous":"unknown","status":"free","observedAt":"2026-11-25T10:00:00Z"}"#;
        let parsed: SlotChanged = serde_json::from_str(minimal).unwrap();
        assert_eq!((parsed.zone, parsed.device), (None, None));
    }

    #[test]
    fn availability_changed_shape() {
        let e = AvailabilityChanged {
            lot: "central".into(),
            zone: None,
            class: VehicleClass::two_wheeler(),
            counts: Counts::from_statuses([BayStatus::Free]),
            changed_at: Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap(),
        };
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(
            json,
            r#"{"lot":"central","zone":null,"class":"two_wheeler","counts":{"total":1,"free":1,"occupied":0,"unknown":0,"closed":0},"changedAt":"2026-11-25T10:00:00Z"}"#
        );
        assert_eq!(serde_json::from_str::<AvailabilityChanged>(&json).unwrap(), e);
    }

    #[test]
    fn type_names() {
        assert_eq!(UPLINK_V1, "io.parking.sensor.uplink.v1");
        assert_eq!(SLOT_CHANGED_V1, "io.parking.slot.changed.v1");
        assert_eq!(AVAILABILITY_CHANGED_V1, "io.parking.availability.changed.v1");
        assert_eq!(SENSOR_ALERT_V1, "io.parking.sensor.alert.v1");
        assert_eq!(PING, "dev.knative.sources.ping");
    }
}
