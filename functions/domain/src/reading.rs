//! The project's own JSON sensor reading (`parking-json`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{DecodeError, render_json};
use crate::lot::device_id_problem;

/// The `format` extension value of an uplink carrying a [`Reading`] as JSON.
pub const FORMAT_PARKING_JSON: &str = "parking-json";

/// Largest payload accepted: a reading is ~100 bytes, so anything near this
/// is not a reading, and bounding it bounds the parser's work.
pub const MAX_READING_BYTES: usize = 4096;

/// One occupancy reading from one sensor, whatever format it arrived in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reading {
    /// The device id as sent; compare it through `normalise_device_id`.
    pub device: String,
    pub occupied: bool,
    /// The device's frame counter, when the format has one.
    pub seq: Option<u32>,
    /// When the sensor observed the bay (not when it was received).
    pub observed_at: DateTime<Utc>,
    /// Battery level as the device reports it (volts for most sensors).
    pub battery: Option<f64>,
}

/// Decodes `{"device": "DEV-1", "occupied": true, "seq": 17,
/// "observedAt": "2026-11-25T10:00:00Z", "battery": 3.6}`.
///
/// `seq` and `battery` may be missing or null; unknown fields are ignored so
/// devices can send more than we read. Never panics, whatever the bytes.
pub fn decode_parking_json(payload: &[u8]) -> Result<Reading, DecodeError> {
    if payload.len() > MAX_READING_BYTES {
        return Err(DecodeError::TooLarge { size: payload.len(), max: MAX_READING_BYTES });
    }
    // serde_json limits nesting depth, so hostile input cannot exhaust the stack.
    let value: Value =
        serde_json::from_slice(payload).map_err(|e| DecodeError::Json { detail: e.to_string() })?;
    let Value::Object(obj) = value else {
        return Err(DecodeError::NotAnObject { got: render_json(&value) });
    };

    let device = match required(&obj, "device")? {
        Value::String(s) if device_id_problem(s).is_none() => s.clone(),
        other => return Err(invalid("device", DEVICE_EXPECTED, other)),
    };
    let occupied = match required(&obj, "occupied")? {
        Value::Bool(b) => *b,
        other => return Err(invalid("occupied", "true or false", other)),
    };
    let seq = match obj.get("seq") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) => Some(n),
            None => {
                return Err(invalid("seq", "an integer from 0 to 4294967295, or null", v));
            }
        },
    };
    let observed_at = match required(&obj, "observedAt")? {
        Value::String(s) => match DateTime::parse_from_rfc3339(s) {
            Ok(t) => t.with_timezone(&Utc),
            Err(_) => {
                return Err(invalid("observedAt", TIMESTAMP_EXPECTED, &Value::String(s.clone())));
            }
        },
        other => return Err(invalid("observedAt", TIMESTAMP_EXPECTED, other)),
    };
    let battery = match obj.get("battery") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_f64() {
            Some(b) if b.is_finite() && b >= 0.0 => Some(b),
            _ => return Err(invalid("battery", "a finite number >= 0, or null", v)),
        },
    };
    Ok(Reading { device, occupied, seq, observed_at, battery })
}

const DEVICE_EXPECTED: &str = "a device id of 1 to 128 bytes of printable characters without whitespace";
const TIMESTAMP_EXPECTED: &str = "an RFC 3339 timestamp";

fn required<'v>(obj: &'v Map<String, Value>, field: &'static str) -> Result<&'v Value, DecodeError> {
    obj.get(field).ok_or(DecodeError::MissingField { field })
}

fn invalid(field: &'static str, expected: &'static str, got: &Value) -> DecodeError {
    DecodeError::InvalidField { field, expected, got: render_json(got) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn decode(json: &str) -> Result<Reading, DecodeError> {
        decode_parking_json(json.as_bytes())
    }

    fn err(json: &str) -> String {
        decode(json).unwrap_err().to_string()
    }

    #[test]
    fn decodes_the_documented_reading() {
        let r = decode(
            r#"{"device": "DEV-1", "occupied": true, "seq": 17, "observedAt": "2026-11-25T10:00:00Z", "battery": 3.6}"#,
        )
        .unwrap();
        assert_eq!(
            r,
            Reading {
                device: "DEV-1".into(),
                occupied: true,
                seq: Some(17),
                observed_at: Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap(),
                battery: Some(3.6),
            }
        );
    }

    #[test]
    fn optional_fields_may_be_missing_or_null_and_unknown_fields_are_ignored() {
        let base = r#""device":"D","occupied":false,"observedAt":"2026-11-25T11:00:00+01:00""#;
        for json in [
            format!("{{{base}}}"),
            format!(r#"{{{base},"seq":null,"battery":null}}"#),
            format!(r#"{{{base},"rssi":-80,"extra":{{"a":[1,2]}}}}"#),
        ] {
            let r = decode(&json).unwrap();
            assert_eq!(r.seq, None);
            assert_eq!(r.battery, None);
            assert!(!r.occupied);
            // Offsets are converted to UTC.
            assert_eq!(r.observed_at, Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap());
        }
    }

    #[test]
    fn seq_limits() {
        let at = r#""device":"D","occupied":true,"observedAt":"2026-11-25T10:00:00Z""#;
        assert_eq!(decode(&format!(r#"{{{at},"seq":0}}"#)).unwrap().seq, Some(0));
        assert_eq!(decode(&format!(r#"{{{at},"seq":4294967295}}"#)).unwrap().seq, Some(u32::MAX));
        for bad in ["4294967296", "-1", "1.5", "\"17\"", "true"] {
            let msg = err(&format!(r#"{{{at},"seq":{bad}}}"#));
            assert_eq!(
                msg,
                format!("field `seq`: expected an integer from 0 to 4294967295, or null, got {bad}")
            );
        }
        // An integer written as a float is not a frame counter.
        assert!(err(&format!(r#"{{{at},"seq":1e3}}"#)).ends_with("got 1000.0"));
    }

    #[test]
    fn battery_limits() {
        let at = r#""device":"D","occupied":true,"observedAt":"2026-11-25T10:00:00Z""#;
        assert_eq!(decode(&format!(r#"{{{at},"battery":0}}"#)).unwrap().battery, Some(0.0));
        assert_eq!(decode(&format!(r#"{{{at},"battery":100}}"#)).unwrap().battery, Some(100.0));
        for bad in ["-0.1", "\"3.6\"", "[]"] {
            let msg = err(&format!(r#"{{{at},"battery":{bad}}}"#));
            assert_eq!(msg, format!("field `battery`: expected a finite number >= 0, or null, got {bad}"));
        }
        // JSON has no literal for infinity; an overflowing number is refused by the parser.
        assert!(err(&format!(r#"{{{at},"battery":1e999}}"#)).starts_with("payload is not valid JSON"));
    }

    #[test]
    fn observed_at_must_be_rfc3339() {
        let msg = err(r#"{"device":"D","occupied":true,"observedAt":"yesterday"}"#);
        assert_eq!(msg, "field `observedAt`: expected an RFC 3339 timestamp, got \"yesterday\"");
        for bad in ["1764064800", "\"2026-11-25\"", "\"2026-11-25T10:00:00\"", "null"] {
            let msg = err(&format!(r#"{{"device":"D","occupied":true,"observedAt":{bad}}}"#));
            assert!(msg.starts_with("field `observedAt`: expected an RFC 3339 timestamp, got "), "{msg}");
        }
        assert_eq!(err(r#"{"device":"D","occupied":true}"#), "field `observedAt`: required, but missing");
    }

    #[test]
    fn occupied_must_be_a_boolean() {
        assert_eq!(
            err(r#"{"device":"D","observedAt":"2026-11-25T10:00:00Z"}"#),
            "field `occupied`: required, but missing"
        );
        for bad in ["1", "\"true\"", "null"] {
            let msg =
                err(&format!(r#"{{"device":"D","occupied":{bad},"observedAt":"2026-11-25T10:00:00Z"}}"#));
            assert_eq!(msg, format!("field `occupied`: expected true or false, got {bad}"));
        }
    }

    #[test]
    fn device_rules() {
        let rest = r#""occupied":true,"observedAt":"2026-11-25T10:00:00Z""#;
        assert_eq!(err(&format!("{{{rest}}}")), "field `device`: required, but missing");
        let long = "d".repeat(129);
        for bad in ["\"\"", "\"a\\u0000b\"", "\"a\\nb\"", "\"DEV 1\"", "42", "null", &format!("\"{long}\"")] {
            let msg = err(&format!(r#"{{"device":{bad},{rest}}}"#));
            assert!(msg.starts_with("field `device`: expected a device id of 1 to 128 bytes"), "{msg}");
        }
        assert!(decode(&format!(r#"{{"device":"{}",{rest}}}"#, "d".repeat(128))).is_ok());
    }

    #[test]
    fn rejects_non_objects_bad_json_and_oversized_payloads() {
        assert_eq!(err("[]"), "payload: expected a JSON object, got []");
        assert_eq!(err("\"x\""), "payload: expected a JSON object, got \"x\"");
        assert!(err("").starts_with("payload is not valid JSON"));
        assert!(err("{\"device\":").starts_with("payload is not valid JSON"));
        assert!(decode_parking_json(&[0xc3, 0x28]).is_err());
        let big = format!(r#"{{"device":"D","pad":"{}"}}"#, "x".repeat(MAX_READING_BYTES));
        assert_eq!(err(&big), format!("payload is {} bytes; at most 4096 bytes are allowed", big.len()));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!("{}{}", "[".repeat(2000), "]".repeat(2000));
        assert!(decode_parking_json(deep.as_bytes()).is_err());
    }

    #[test]
    fn long_values_are_cut_in_messages() {
        let msg = err(&format!(r#"{{"device":"D","occupied":true,"observedAt":"{}"}}"#, "9".repeat(1000)));
        assert!(msg.len() < 200, "{msg}");
    }
}
