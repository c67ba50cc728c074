//! Parking domain rules shared by every parking component.
//!
//! Pure functions and plain data: no I/O, no clock (times are passed in), no
//! randomness, so the same code runs natively in tests and inside the Wasm
//! components, and behaves the same in both.

pub mod alerts;
pub mod availability;
pub mod bay;
pub mod category;
pub mod class;
pub mod codecs;
pub mod credential;
pub mod error;
pub mod events;
pub mod feeds;
pub mod fiware;
pub mod forecast;
pub mod geo;
pub mod history;
pub mod lot;
pub mod near;
pub mod reading;
pub mod site;
pub mod status;
pub mod stay;
pub mod stay_lengths;
pub mod summary;
pub mod terminal;

pub use alerts::{
    AlertKind, BatteryAlert, BatteryThresholds, alert_fullness, battery_alert, fullness_alert,
    fullness_from_alerts,
};
pub use availability::{
    BayCount, Counts, Fullness, GroupCount, LotAvailability, Thresholds, ZoneAvailability, next_fullness,
    summarise, summarise_groups,
};
pub use bay::{FRAME_REPLAY_WINDOW, Observation, Outcome, apply_reading, is_silent, status_for};
pub use category::BayCategory;
pub use class::VehicleClass;
pub use codecs::{
    Envelope, FirmwareVersion, FrameKind, MAX_ENVELOPE_BYTES, MAX_FRAME_BYTES, PayloadFormat, ResetCause,
    SensorFrame, SensorModel, decode_frame, interpret_decoded, parse_envelope,
};
pub use credential::Credential;
pub use error::{DecodeError, DomainError};
pub use events::{AvailabilityChanged, Overstay, SlotChanged};
pub use history::{
    BayAtStart, Bucket, GroupKey, Rollup, StatusChange, heartbeat_interval, heartbeat_window, hour_floor,
    roll_up, statuses_at,
};
pub use lot::{
    BaySpec, LotSpec, MAX_BAYS_PER_LOT, MAX_LOT_SPEC_BYTES, normalise_device_id, parse_lot_spec,
    validate_device_id, validate_id,
};
pub use reading::{FORMAT_PARKING_JSON, MAX_READING_BYTES, Reading, decode_parking_json};
pub use status::BayStatus;
pub use stay::{
    HoursSpec, Restriction, Stay, StayPolicy, format_iso_duration, parse_hours, parse_iso_duration, time_zone,
};
pub use summary::{SUMMARY_TOPIC_FILTER, live_summary, lot_of_summary_topic, lot_summary, summary_topic};
pub use terminal::{
    ClassFrame, FRAME_TOPIC_FILTER, Frame, TerminalScope, TerminalSpec, ZoneFrame, frame_topic,
    parse_terminal_spec, render_frame, terminal_of_topic, token_digest,
};
