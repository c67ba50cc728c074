//! Field access shared by the envelope parsers.
//!
//! Network servers serialise protobuf messages to JSON, where a field at its
//! default (0, "", false, empty) may be left out; these helpers make
//! "absent", "null" and "wrong type" distinct so each parser can decide
//! what absence means for each field.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::MAX_ENVELOPE_BYTES;
use crate::error::{DecodeError, render_json};
use crate::lot::{device_id_problem, normalise_device_id};

pub(super) type Object = Map<String, Value>;

/// Size check, JSON parse, and the top-level object.
pub(super) fn parse_object(payload: &[u8]) -> Result<Object, DecodeError> {
    if payload.len() > MAX_ENVELOPE_BYTES {
        return Err(DecodeError::TooLarge { size: payload.len(), max: MAX_ENVELOPE_BYTES });
    }
    // serde_json limits nesting depth, so hostile input cannot exhaust the stack.
    let value: Value =
        serde_json::from_slice(payload).map_err(|e| DecodeError::Json { detail: e.to_string() })?;
    match value {
        Value::Object(obj) => Ok(obj),
        other => Err(DecodeError::NotAnObject { got: render_json(&other) }),
    }
}

pub(super) fn invalid(field: &'static str, expected: &'static str, got: &Value) -> DecodeError {
    DecodeError::InvalidField { field, expected, got: render_json(got) }
}

/// `obj[key]`, with JSON null read as absent (protobuf JSON allows either).
pub(super) fn get<'v>(obj: &'v Object, key: &str) -> Option<&'v Value> {
    obj.get(key).filter(|v| !v.is_null())
}

/// A nested object; `path` names it in errors.
pub(super) fn object<'v>(
    obj: &'v Object,
    key: &str,
    path: &'static str,
) -> Result<Option<&'v Object>, DecodeError> {
    match get(obj, key) {
        None => Ok(None),
        Some(Value::Object(inner)) => Ok(Some(inner)),
        Some(other) => Err(invalid(path, "a JSON object", other)),
    }
}

pub(super) fn string<'v>(
    obj: &'v Object,
    key: &str,
    path: &'static str,
) -> Result<Option<&'v str>, DecodeError> {
    match get(obj, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(invalid(path, "a string", other)),
    }
}

/// A uint32 field; absent means 0, as protobuf JSON omits zero.
pub(super) fn u32_or_zero(obj: &Object, key: &str, path: &'static str) -> Result<u32, DecodeError> {
    match get(obj, key) {
        None => Ok(0),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| invalid(path, "an integer from 0 to 4294967295", v)),
    }
}

/// An FPort; absent means 0, as protobuf JSON omits zero.
pub(super) fn port_or_zero(obj: &Object, key: &str, path: &'static str) -> Result<u8, DecodeError> {
    match get(obj, key) {
        None => Ok(0),
        Some(v) => v
            .as_u64()
            .and_then(|n| u8::try_from(n).ok())
            .ok_or_else(|| invalid(path, "an FPort, an integer from 0 to 255", v)),
    }
}

pub(super) fn timestamp(
    obj: &Object,
    key: &str,
    path: &'static str,
) -> Result<Option<DateTime<Utc>>, DecodeError> {
    const EXPECTED: &str = "an RFC 3339 timestamp";
    match get(obj, key) {
        None => Ok(None),
        Some(Value::String(s)) => DateTime::parse_from_rfc3339(s)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| invalid(path, EXPECTED, &Value::String(s.clone()))),
        Some(other) => Err(invalid(path, EXPECTED, other)),
    }
}

/// Protobuf JSON writes bytes as base64, standard or URL-safe alphabet,
/// padded or not; accept all four rather than reject a valid uplink.
pub(super) fn base64_bytes(
    obj: &Object,
    key: &str,
    path: &'static str,
) -> Result<Option<Vec<u8>>, DecodeError> {
    const EXPECTED: &str = "base64-encoded bytes";
    const CONFIG: GeneralPurposeConfig =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    const STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, CONFIG);
    const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, CONFIG);
    match get(obj, key) {
        None => Ok(None),
        Some(Value::String(s)) => STANDARD
            .decode(s)
            .or_else(|_| URL_SAFE.decode(s))
            .map(Some)
            .map_err(|_| invalid(path, EXPECTED, &Value::String(s.clone()))),
        Some(other) => Err(invalid(path, EXPECTED, other)),
    }
}

/// A DevEUI: 16 hex digits in any case, returned lower-cased.
pub(super) fn dev_eui(value: &str, path: &'static str) -> Result<String, DecodeError> {
    if value.len() == 16 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(normalise_device_id(value))
    } else {
        Err(invalid(path, "a DevEUI of 16 hex digits", &Value::String(value.to_owned())))
    }
}

/// A device name used as the device id when there is no DevEUI.
pub(super) fn device_name(value: &str, path: &'static str) -> Result<String, DecodeError> {
    if device_id_problem(value).is_none() {
        Ok(value.to_owned())
    } else {
        Err(invalid(
            path,
            "a device id of 1 to 128 bytes of printable characters without whitespace",
            &Value::String(value.to_owned()),
        ))
    }
}

/// The best RSSI and SNR over a list of gateway receptions.
///
/// Radio metadata is informational: an entry that is not an object, or a
/// value that is not a number, is skipped rather than failing the uplink.
pub(super) fn best_signal(receptions: Option<&Value>, rssi_keys: &[&str]) -> (Option<f64>, Option<f64>) {
    let Some(Value::Array(entries)) = receptions else { return (None, None) };
    let (mut rssi, mut snr) = (None::<f64>, None::<f64>);
    for entry in entries.iter().filter_map(Value::as_object) {
        let entry_rssi = rssi_keys.iter().find_map(|k| entry.get(*k).and_then(Value::as_f64));
        if let Some(r) = entry_rssi {
            rssi = Some(rssi.map_or(r, |best| best.max(r)));
        }
        if let Some(s) = entry.get("snr").and_then(Value::as_f64) {
            snr = Some(snr.map_or(s, |best| best.max(s)));
        }
    }
    (rssi, snr)
}
