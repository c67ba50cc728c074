//! The project's own JSON reading (`parking-json`) as an [`Envelope`], so
//! every format reaches the bay through the same path.
//!
//! The reading is decoded by `decode_parking_json`; its occupancy and
//! battery become the envelope's decoded object, which
//! [`interpret_decoded`](super::interpret_decoded) reads as a status frame.

use serde_json::{Map, Value};

use super::{Envelope, PayloadFormat};
use crate::error::DecodeError;
use crate::reading::decode_parking_json;

pub(super) fn parse(payload: &[u8]) -> Result<Envelope, DecodeError> {
    let reading = decode_parking_json(payload)?;
    let mut decoded = Map::new();
    decoded.insert("occupied".into(), Value::Bool(reading.occupied));
    if let Some(volts) = reading.battery.and_then(serde_json::Number::from_f64) {
        decoded.insert("battery".into(), Value::Number(volts));
    }
    Ok(Envelope {
        format: PayloadFormat::ParkingJson,
        device: reading.device,
        device_name: None,
        frame_counter: reading.seq,
        port: None,
        received_at: reading.observed_at,
        raw: None,
        decoded: Some(Value::Object(decoded)),
        rssi: None,
        snr: None,
    })
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::super::{FrameKind, SensorModel, parse_envelope};
    use super::*;

    #[test]
    fn a_reading_becomes_a_status_frame() {
        let e = parse_envelope(
            PayloadFormat::ParkingJson,
            br#"{"device": "DEV-1", "occupied": true, "seq": 17, "observedAt": "2026-11-25T10:00:00Z", "battery": 3.6}"#,
        )
        .unwrap();
        assert_eq!(e.device, "DEV-1");
        assert_eq!((e.frame_counter, e.port, e.raw.as_ref()), (Some(17), None, None));
        assert_eq!(e.received_at, Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap());
        // The bay's model does not matter: there are no raw bytes.
        let frame = e.frame(Some(SensorModel::BoschPls)).unwrap();
        assert_eq!(frame.kind, FrameKind::Status { occupied: true });
        assert_eq!((frame.battery, frame.temperature), (Some(3.6), None));
    }

    #[test]
    fn reading_errors_pass_through() {
        let err =
            parse_envelope(PayloadFormat::ParkingJson, br#"{"device": "D", "occupied": 1}"#).unwrap_err();
        assert_eq!(err.to_string(), "field `occupied`: expected true or false, got 1");
        let big = vec![b' '; crate::MAX_READING_BYTES + 1];
        assert!(matches!(
            parse_envelope(PayloadFormat::ParkingJson, &big),
            Err(DecodeError::TooLarge { max: 4096, .. })
        ));
    }
}
