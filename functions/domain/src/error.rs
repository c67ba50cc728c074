//! Errors of the domain rules and of payload decoding.
//!
//! Every message names the field or value that is wrong and says what is
//! allowed, because these messages end up verbatim in HTTP 400 bodies and in
//! the rejected-payload log that operators read.

use crate::status::BayStatus;

/// Values quoted in messages are cut to this many characters, so a hostile
/// multi-megabyte value cannot blow up an error body or a log line.
const EXCERPT_CHARS: usize = 64;

/// The first [`EXCERPT_CHARS`] characters of `value`, with `…` if cut.
pub(crate) fn excerpt(value: &str) -> String {
    match value.char_indices().nth(EXCERPT_CHARS) {
        None => value.to_owned(),
        Some((at, _)) => format!("{}…", &value[..at]),
    }
}

/// `value` as compact JSON, cut like [`excerpt`]: how a wrong value is shown.
pub(crate) fn render_json(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Array(_) | serde_json::Value::Object(_) | serde_json::Value::String(_) => {
            excerpt(&serde_json::to_string(value).unwrap_or_default())
        }
        other => other.to_string(),
    }
}

/// A value that breaks a domain rule (provisioning input, names, counts).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error(
        "vehicle class {value:?}: expected 1 to 32 characters of a-z, 0-9 and '_', \
         starting with a lowercase letter (e.g. \"two_wheeler\", \"four_wheeler\")"
    )]
    InvalidVehicleClass { value: String },

    #[error("bay status {value:?}: expected one of \"free\", \"occupied\", \"unknown\", \"closed\"")]
    InvalidBayStatus { value: String },

    #[error(
        "{kind} id {value:?} {problem}; expected 1 to 64 characters of A-Z, a-z, 0-9, \
         '.', '_' and '-', not only dots"
    )]
    InvalidId { kind: String, value: String, problem: String },

    #[error(
        "device id {value:?} {problem}; expected 1 to 128 bytes of printable characters \
         without whitespace"
    )]
    InvalidDeviceId { value: String, problem: String },

    #[error("lot name {value:?} {problem}; expected 1 to 200 characters without control characters")]
    InvalidLotName { value: String, problem: String },

    #[error("bay model {value:?} {problem}; expected at most 128 characters without control characters")]
    InvalidModel { value: String, problem: String },

    /// A time-limit field (`maxStay`, `hours`, `graceSeconds`, `timeZone`) that does not hold.
    #[error("{what} {value:?} {problem}")]
    InvalidStayRule { what: &'static str, value: String, problem: String },

    #[error("GeoJSON {value} {problem}")]
    InvalidGeometry { value: String, problem: String },

    /// A descriptive lot field (`kind`, `address`, `openingHours`, `fees`, ...) that does not hold.
    #[error("{problem}")]
    InvalidSite { problem: String },

    #[error(
        "bay category {value:?}: expected one of \"accessible\", \"ev_charging\", \"loading\", \"permit\", \"family\", \"carsharing\""
    )]
    InvalidCategory { value: String },

    #[error("bays: {count} bays given; a lot has at most {max}")]
    TooManyBays { count: usize, max: usize },

    #[error(
        "bays[{index}].id: bay id {id:?} is already used by bays[{first_index}]; bay ids are unique within a lot"
    )]
    DuplicateBayId { id: String, index: usize, first_index: usize },

    #[error(
        "bays[{index}].sensor: sensor {sensor:?} is already bound to bay {first_bay:?}; \
         a sensor is bound to one bay only"
    )]
    DuplicateSensor { sensor: String, index: usize, first_bay: String },

    #[error("lot spec is {size} bytes; at most {max} bytes are allowed")]
    LotSpecTooLarge { size: usize, max: usize },

    #[error("lot spec is not valid JSON: {detail}")]
    LotSpecJson { detail: String },

    #[error("lot spec: expected a JSON object with `name` and `bays`, got {got}")]
    LotSpecNotAnObject { got: String },

    #[error("lot spec field `{field}`: required, but missing")]
    MissingField { field: String },

    #[error("lot spec field `{field}`: expected {expected}, got {got}")]
    WrongType { field: String, expected: &'static str, got: String },

    #[error("lot spec field `{field}`: unknown field; allowed fields are {allowed}")]
    UnknownField { field: String, allowed: &'static str },

    /// A rule broken by a value nested in a larger input (`bays[3].class`).
    #[error("{field}: {inner}")]
    AtField { field: String, inner: Box<DomainError> },

    #[error("terminal field `{field}`: {problem}")]
    InvalidTerminal { field: String, problem: String },

    #[error("thresholds: {detail}")]
    InvalidThresholds { detail: String },

    #[error(
        "counts: cannot remove a bay with status {status}: the {status} count is already 0 \
         (each removed bay must have been added)"
    )]
    CountUnderflow { status: BayStatus },
}

impl DomainError {
    /// Wraps `self` with the path of the field it came from.
    pub(crate) fn at(self, field: impl Into<String>) -> Self {
        DomainError::AtField { field: field.into(), inner: Box::new(self) }
    }
}

/// Why a sensor payload could not be decoded into a reading.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("payload is {size} bytes; at most {max} bytes are allowed")]
    TooLarge { size: usize, max: usize },

    #[error("payload is not valid JSON: {detail}")]
    Json { detail: String },

    #[error("payload: expected a JSON object, got {got}")]
    NotAnObject { got: String },

    #[error("field `{field}`: required, but missing")]
    MissingField { field: &'static str },

    #[error("field `{field}`: expected {expected}, got {got}")]
    InvalidField { field: &'static str, expected: &'static str, got: String },

    #[error("payload format {value:?}: unknown; expected one of {expected}")]
    UnknownFormat { value: String, expected: &'static str },

    #[error("sensor model {value:?}: unknown; expected one of {expected}")]
    UnknownModel { value: String, expected: &'static str },

    #[error("{codec} frame is {size} bytes; at most {max} bytes are allowed")]
    FrameTooLarge { codec: &'static str, size: usize, max: usize },

    /// A frame shorter than its layout; `layout` names the bytes expected.
    #[error("{codec} {frame} frame (port {port}) is {len} bytes; expected at least {min}: {layout}")]
    FrameTooShort {
        codec: &'static str,
        frame: &'static str,
        port: u8,
        len: usize,
        min: usize,
        layout: &'static str,
    },

    #[error("{codec} frame on port {port}: not an uplink port of this sensor; expected {expected}")]
    UnknownPort { codec: &'static str, port: u8, expected: &'static str },

    #[error("{codec} frame without a port: its frames are told apart by port ({expected})")]
    PortRequired { codec: &'static str, expected: &'static str },

    #[error(
        "uplink carries raw bytes but no decoded object, and the bay's sensor has no known model; \
         set the bay's `model` to one of {expected}"
    )]
    ModelRequired { expected: &'static str },

    #[error("{format} uplink carries neither payload bytes nor a decoded object")]
    NoPayload { format: &'static str },

    /// A network server's decoded object that does not say what the sensor saw.
    #[error("decoded object: {detail}")]
    DecodedObject { detail: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_keeps_short_values() {
        assert_eq!(excerpt("B1"), "B1");
        assert_eq!(excerpt(""), "");
    }

    #[test]
    fn excerpt_cuts_long_values_on_a_char_boundary() {
        let long = "é".repeat(100);
        let cut = excerpt(&long);
        assert_eq!(cut.chars().count(), EXCERPT_CHARS + 1);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn nested_errors_name_the_path() {
        let e = DomainError::InvalidVehicleClass { value: "Car".into() }.at("bays[3].class");
        assert!(e.to_string().starts_with("bays[3].class: vehicle class \"Car\""), "{e}");
    }

    #[test]
    fn decode_error_names_field_and_value() {
        let e = DecodeError::InvalidField {
            field: "observedAt",
            expected: "an RFC 3339 timestamp",
            got: "\"yesterday\"".into(),
        };
        assert_eq!(e.to_string(), "field `observedAt`: expected an RFC 3339 timestamp, got \"yesterday\"");
    }
}
