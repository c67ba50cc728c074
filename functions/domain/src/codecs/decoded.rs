//! Objects a network server already decoded (The Things Stack
//! `decoded_payload`, ChirpStack `object`), read into a [`SensorFrame`].
//!
//! Payload formatters are written by vendors and users, so there is no one
//! shape; the common ones are accepted:
//!
//! | key | accepted values | meaning |
//! |---|---|---|
//! | `type`, `message_type` or `packet_type` | a frame name, case, spaces and `-` ignored: `parking status`, `status`, `status_change` / `heartbeat`, `keep_alive` / `startup`, `start_up` / `device_information`, `device_usage`, `debug`, `user_registration`, `tag_registration` | the frame kind; without it, a frame with an occupancy is a status frame |
//! | `occupied`, else `status`, else `state` | `true`/`false`, `1`/`0`, `"occupied"`/`"free"` (or `"vacant"`) | the occupancy |
//! | `battery`, `battery_voltage` or `batteryVoltage` | a finite number >= 0 | battery, volts |
//! | `temperature` | a finite number | temperature, °C |
//! | `firmware_version`, `firmwareVersion` | `"major.minor.patch"` | start-up frames; anything else is ignored |
//! | `reset_cause`, `resetCause` | `watchdog`, `power_on`, `system_request`, `user_request`, `rejoin`, `rejoining_lorawan_network`, `brownout`, `other` | start-up frames; anything else is ignored |
//!
//! A null value counts as absent. Other keys are ignored. An object that
//! says nothing about occupancy and names no heartbeat, start-up or
//! diagnostic frame is rejected, as is a value of the wrong kind in any key
//! above that is not marked "ignored".

use serde_json::{Map, Value};

use super::{FirmwareVersion, FrameKind, ResetCause, SensorFrame};
use crate::error::{DecodeError, excerpt, render_json};

const TYPE_KEYS: [&str; 3] = ["type", "message_type", "packet_type"];
const OCCUPANCY_KEYS: [&str; 3] = ["occupied", "status", "state"];
const BATTERY_KEYS: [&str; 3] = ["battery", "battery_voltage", "batteryVoltage"];
const FIRMWARE_KEYS: [&str; 2] = ["firmware_version", "firmwareVersion"];
const RESET_KEYS: [&str; 2] = ["reset_cause", "resetCause"];

const TYPES_EXPECTED: &str = "parking status, heartbeat, startup, device information, device usage, \
                              debug or user registration";

/// What a frame type names, before its fields are read.
enum Hint {
    Status,
    Heartbeat,
    Startup,
    Diagnostic(&'static str),
}

/// Reads a network server's decoded payload. Never panics; looks only at
/// the keys listed in the module documentation, so its work is bounded by
/// the object's size, which the envelope already bounds.
pub fn interpret_decoded(object: &Value) -> Result<SensorFrame, DecodeError> {
    let Value::Object(obj) = object else {
        return Err(reject(format!("expected a JSON object, got {}", render_json(object))));
    };
    let hint = match first(obj, &TYPE_KEYS) {
        None => None,
        Some((key, value)) => Some(frame_type(key, value)?),
    };
    let occupied = match first(obj, &OCCUPANCY_KEYS) {
        None => None,
        Some((key, value)) => Some(occupancy(key, value)?),
    };
    let battery = match first(obj, &BATTERY_KEYS) {
        None => None,
        Some((key, value)) => match value.as_f64() {
            Some(v) if v.is_finite() && v >= 0.0 => Some(v),
            _ => return Err(wrong(key, "a battery voltage in volts, a finite number >= 0", value)),
        },
    };
    let temperature = match first(obj, &["temperature"]) {
        None => None,
        Some((key, value)) => match value.as_f64() {
            Some(v) if v.is_finite() => Some(v),
            _ => return Err(wrong(key, "a temperature in °C, a finite number", value)),
        },
    };

    let kind = match (hint, occupied) {
        (None | Some(Hint::Status), Some(occupied)) => FrameKind::Status { occupied },
        (Some(Hint::Status), None) => {
            return Err(reject(
                "a status frame without an occupancy; expected `occupied`, `status` or `state`".to_owned(),
            ));
        }
        (None, None) => {
            return Err(reject(
                "no occupancy and no frame type; expected `occupied` (true or false), `status` or `state` \
                 (\"occupied\", \"free\", 1 or 0), or a `type` naming a heartbeat or startup frame"
                    .to_owned(),
            ));
        }
        (Some(Hint::Heartbeat), occupied) => FrameKind::Heartbeat { occupied },
        (Some(Hint::Startup), occupied) => FrameKind::Startup {
            firmware: first(obj, &FIRMWARE_KEYS)
                .and_then(|(_, v)| v.as_str())
                .and_then(FirmwareVersion::parse),
            reset_cause: first(obj, &RESET_KEYS).and_then(|(_, v)| v.as_str()).and_then(reset_cause),
            occupied,
        },
        (Some(Hint::Diagnostic(what)), _) => FrameKind::Diagnostic { what: what.to_owned() },
    };
    Ok(SensorFrame { kind, battery, temperature })
}

/// The first of `keys` present with a non-null value.
fn first<'v>(obj: &'v Map<String, Value>, keys: &[&'static str]) -> Option<(&'static str, &'v Value)> {
    keys.iter().find_map(|&k| obj.get(k).filter(|v| !v.is_null()).map(|v| (k, v)))
}

/// Lower-case with spaces and dashes as underscores, so "Parking Status",
/// "parking-status" and "parking_status" match.
fn normalise(name: &str) -> String {
    name.trim().chars().map(|c| if c == ' ' || c == '-' { '_' } else { c.to_ascii_lowercase() }).collect()
}

fn frame_type(key: &'static str, value: &Value) -> Result<Hint, DecodeError> {
    let Value::String(name) = value else {
        return Err(wrong(key, "a string naming the frame", value));
    };
    // Bounded: names longer than any known one cannot match.
    if name.len() > 64 {
        return Err(unknown_type(key, name));
    }
    Ok(match normalise(name).as_str() {
        "parking_status" | "status" | "status_change" => Hint::Status,
        "heartbeat" | "keep_alive" | "keepalive" => Hint::Heartbeat,
        "startup" | "start_up" => Hint::Startup,
        "device_information" => Hint::Diagnostic("device information"),
        "device_usage" => Hint::Diagnostic("device usage"),
        "debug" => Hint::Diagnostic("debug"),
        "user_registration" | "tag_registration" => Hint::Diagnostic("tag registration"),
        _ => return Err(unknown_type(key, name)),
    })
}

fn occupancy(key: &'static str, value: &Value) -> Result<bool, DecodeError> {
    let parsed = match value {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_u64() {
            Some(0) => Some(false),
            Some(1) => Some(true),
            _ => None,
        },
        Value::String(s) if s.len() <= 16 => match normalise(s).as_str() {
            "occupied" => Some(true),
            "free" | "vacant" => Some(false),
            _ => None,
        },
        _ => None,
    };
    parsed.ok_or_else(|| wrong(key, "true or false, \"occupied\" or \"free\", 1 or 0", value))
}

fn reset_cause(name: &str) -> Option<ResetCause> {
    if name.len() > 64 {
        return None;
    }
    Some(match normalise(name).as_str() {
        "watchdog" => ResetCause::Watchdog,
        "power_on" => ResetCause::PowerOn,
        "system_request" => ResetCause::SystemRequest,
        "user_request" => ResetCause::UserRequest,
        "rejoin" | "rejoining_lorawan_network" => ResetCause::Rejoin,
        "brownout" => ResetCause::Brownout,
        "other" => ResetCause::Other,
        _ => return None,
    })
}

fn reject(detail: String) -> DecodeError {
    DecodeError::DecodedObject { detail }
}

fn wrong(key: &str, expected: &str, got: &Value) -> DecodeError {
    reject(format!("field `{key}`: expected {expected}, got {}", render_json(got)))
}

fn unknown_type(key: &str, name: &str) -> DecodeError {
    reject(format!("field `{key}`: unknown frame type {:?}; expected {TYPES_EXPECTED}", excerpt(name)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn frame(v: Value) -> SensorFrame {
        interpret_decoded(&v).unwrap()
    }

    fn err(v: Value) -> String {
        interpret_decoded(&v).unwrap_err().to_string()
    }

    #[test]
    fn occupancy_shapes() {
        for (v, occupied) in [
            (json!({"occupied": true}), true),
            (json!({"occupied": false}), false),
            (json!({"occupied": 1}), true),
            (json!({"occupied": "occupied"}), true),
            (json!({"status": "free"}), false),
            (json!({"status": "Occupied"}), true),
            (json!({"state": 0}), false),
            (json!({"state": "vacant"}), false),
            (json!({"state": 1}), true),
            // `occupied` wins over `status`, and null counts as absent.
            (json!({"occupied": true, "status": "free"}), true),
            (json!({"occupied": null, "status": "free"}), false),
        ] {
            assert_eq!(frame(v.clone()).kind, FrameKind::Status { occupied }, "{v}");
        }
    }

    #[test]
    fn bosch_device_repository_formatter_output() {
        assert_eq!(frame(json!({"type": "parking status", "occupied": true})).status(), Some(true));
        let hb = frame(json!({"type": "heartbeat", "occupied": true, "temperature": -1}));
        assert_eq!(hb.kind, FrameKind::Heartbeat { occupied: Some(true) });
        assert_eq!(hb.temperature, Some(-1.0));
        let up = frame(json!({
            "type": "startup", "debugCodes": [804, 885], "firmwareVersion": "0.29.2",
            "resetCause": "system request", "occupied": true
        }));
        assert_eq!(
            up.kind,
            FrameKind::Startup {
                firmware: Some(FirmwareVersion { major: 0, minor: 29, patch: 2 }),
                reset_cause: Some(ResetCause::SystemRequest),
                occupied: Some(true),
            }
        );
        assert_eq!(
            frame(json!({"type": "device information", "bytes": [1, 2]})).kind,
            FrameKind::Diagnostic { what: "device information".into() }
        );
    }

    #[test]
    fn nwave_device_repository_formatter_output() {
        let hb = frame(json!({
            "type": "heartbeat", "occupied": false, "battery_voltage": 3.344, "temperature": -10,
            "battery_health": "normal", "hw_health_status": 0
        }));
        assert_eq!(hb.kind, FrameKind::Heartbeat { occupied: Some(false) });
        assert_eq!((hb.battery, hb.temperature), (Some(3.344), Some(-10.0)));
        let st = frame(json!({"type": "parking_status", "occupied": true, "previous_state_duration": 74}));
        assert_eq!(st.status(), Some(true));
        let reg = frame(json!({"type": "user_registration", "occupied": null, "tag_id": "1F345678"}));
        assert_eq!(reg.kind, FrameKind::Diagnostic { what: "tag registration".into() });
        let up = frame(
            json!({"type": "startup", "firmware_version": "2.4.9", "reset_cause": "rejoining_lorawan_network"}),
        );
        let FrameKind::Startup { reset_cause, occupied, .. } = up.kind else { panic!() };
        assert_eq!((reset_cause, occupied), (Some(ResetCause::Rejoin), None));
    }

    #[test]
    fn battery_and_temperature() {
        let f = frame(json!({"occupied": true, "battery": 3.6, "temperature": 21.5}));
        assert_eq!((f.battery, f.temperature), (Some(3.6), Some(21.5)));
        assert_eq!(frame(json!({"occupied": true, "batteryVoltage": 3})).battery, Some(3.0));
        assert_eq!(frame(json!({"occupied": true, "battery": null})).battery, None);
        assert_eq!(
            err(json!({"occupied": true, "battery": -1})),
            "decoded object: field `battery`: expected a battery voltage in volts, a finite number >= 0, got -1"
        );
        assert_eq!(
            err(json!({"occupied": true, "temperature": "warm"})),
            "decoded object: field `temperature`: expected a temperature in °C, a finite number, got \"warm\""
        );
    }

    #[test]
    fn heartbeats_and_startups_need_no_occupancy() {
        assert_eq!(frame(json!({"type": "Keep-Alive"})).kind, FrameKind::Heartbeat { occupied: None });
        let up = frame(json!({"packet_type": "Startup", "firmware_version": "v1", "reset_cause": 3}));
        assert_eq!(up.kind, FrameKind::Startup { firmware: None, reset_cause: None, occupied: None });
    }

    #[test]
    fn rejects_objects_that_say_nothing_usable() {
        assert_eq!(
            err(json!({"temperature": 20})),
            "decoded object: no occupancy and no frame type; expected `occupied` (true or false), `status` \
             or `state` (\"occupied\", \"free\", 1 or 0), or a `type` naming a heartbeat or startup frame"
        );
        assert_eq!(
            err(json!({"type": "status"})),
            "decoded object: a status frame without an occupancy; expected `occupied`, `status` or `state`"
        );
        assert_eq!(
            err(json!({"type": "alarm", "occupied": true})),
            "decoded object: field `type`: unknown frame type \"alarm\"; expected parking status, heartbeat, \
             startup, device information, device usage, debug or user registration"
        );
        assert_eq!(
            err(json!({"message_type": 3})),
            "decoded object: field `message_type`: expected a string naming the frame, got 3"
        );
        assert_eq!(err(json!([true])), "decoded object: expected a JSON object, got [true]");
        assert_eq!(err(json!("occupied")), "decoded object: expected a JSON object, got \"occupied\"");
        for bad in [json!(2), json!(-1), json!(1.0), json!("yes"), json!([]), json!({})] {
            let msg = err(json!({"status": bad}));
            assert!(
                msg.starts_with(
                    "decoded object: field `status`: expected true or false, \"occupied\" or \"free\", 1 or 0, got "
                ),
                "{msg}"
            );
        }
        let long = "x".repeat(10_000);
        assert!(err(json!({"type": long})).len() < 300);
        assert!(err(json!({"state": long})).len() < 300);
    }
}
