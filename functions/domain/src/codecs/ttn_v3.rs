//! The Things Stack (v3) uplink message JSON (`ttn-v3`), as published on
//! `v3/{application}@{tenant}/devices/{device}/up` and sent by webhooks.
//!
//! Fields read:
//!
//! | path | meaning | when absent |
//! |---|---|---|
//! | `end_device_ids.dev_eui` | DevEUI, hex | fall back to `device_id` (ABP devices may have no DevEUI) |
//! | `end_device_ids.device_id` | the application's name for the device | `device_name` is `None` |
//! | `uplink_message` | the uplink itself | error: not an uplink message |
//! | `uplink_message.f_cnt` | frame counter | 0 (protobuf JSON omits zero values) |
//! | `uplink_message.f_port` | FPort | 0 |
//! | `uplink_message.frm_payload` | payload, base64 | no raw bytes |
//! | `uplink_message.decoded_payload` | the payload formatter's output | no decoded object |
//! | `uplink_message.received_at` | Network Server receive time | top-level `received_at` (Application Server time) |
//! | `uplink_message.rx_metadata[].rssi`, `.channel_rssi`, `.snr` | per-gateway signal | no signal data |
//!
//! Other fields (`correlation_ids`, `settings`, `network_ids`, attributes
//! and the like) are ignored.

use super::json::{self, Object};
use super::{Envelope, PayloadFormat};
use crate::error::DecodeError;

pub(super) fn parse(payload: &[u8]) -> Result<Envelope, DecodeError> {
    let root = json::parse_object(payload)?;
    let ids = json::object(&root, "end_device_ids", "end_device_ids")?
        .ok_or(DecodeError::MissingField { field: "end_device_ids" })?;
    let device_name = json::string(ids, "device_id", "end_device_ids.device_id")?;
    let device = match (json::string(ids, "dev_eui", "end_device_ids.dev_eui")?, device_name) {
        (Some(eui), _) => json::dev_eui(eui, "end_device_ids.dev_eui")?,
        (None, Some(name)) => json::device_name(name, "end_device_ids.device_id")?,
        (None, None) => return Err(DecodeError::MissingField { field: "end_device_ids.dev_eui" }),
    };

    let up = json::object(&root, "uplink_message", "uplink_message")?
        .ok_or(DecodeError::MissingField { field: "uplink_message" })?;
    let frame_counter = json::u32_or_zero(up, "f_cnt", "uplink_message.f_cnt")?;
    let port = json::port_or_zero(up, "f_port", "uplink_message.f_port")?;
    let raw = json::base64_bytes(up, "frm_payload", "uplink_message.frm_payload")?;
    let decoded = json::get(up, "decoded_payload").cloned();
    let received_at = received_at(&root, up)?;
    let (rssi, snr) = json::best_signal(up.get("rx_metadata"), &["rssi", "channel_rssi"]);

    Ok(Envelope {
        format: PayloadFormat::TtnV3,
        device,
        device_name: device_name.map(str::to_owned),
        frame_counter: Some(frame_counter),
        port: Some(port),
        received_at,
        raw,
        decoded,
        rssi,
        snr,
    })
}

/// The Network Server's receive time is closest to when the sensor sent the
/// frame; the Application Server's is a fallback.
fn received_at(root: &Object, up: &Object) -> Result<chrono::DateTime<chrono::Utc>, DecodeError> {
    if let Some(at) = json::timestamp(up, "received_at", "uplink_message.received_at")? {
        return Ok(at);
    }
    json::timestamp(root, "received_at", "received_at")?
        .ok_or(DecodeError::MissingField { field: "uplink_message.received_at" })
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use serde_json::{Value, json};

    use super::super::{FrameKind, SensorModel, parse_envelope};
    use super::*;

    /// An uplink as The Things Stack publishes it: a Bosch PLS status frame
    /// (port 1, byte 0x01 = occupied) heard by two gateways, with the device
    /// repository's payload formatter output.
    fn bosch_uplink() -> Value {
        json!({
            "end_device_ids": {
                "device_id": "pls-bay-17",
                "application_ids": {"application_id": "city-parking"},
                "dev_eui": "FCD6BD00001936B0",
                "join_eui": "70B3D57ED0000000",
                "dev_addr": "260B1234"
            },
            "correlation_ids": ["as:up:01HF7X3Q8ZK2Y4J6M8N0P2R4T6", "rpc:/ttn.lorawan.v3.AppAs/SimulateUplink:abc"],
            "received_at": "2026-11-25T10:00:01.912345678Z",
            "uplink_message": {
                "session_key_id": "AYv1n2Mx8dQz0b3k5W7yPQ==",
                "f_port": 1,
                "f_cnt": 4711,
                "frm_payload": "AQ==",
                "decoded_payload": {"type": "parking status", "occupied": true},
                "rx_metadata": [
                    {
                        "gateway_ids": {"gateway_id": "gw-roof", "eui": "B827EBFFFE61AB12"},
                        "time": "2026-11-25T10:00:01.512Z",
                        "timestamp": 2_037_812_345u32,
                        "rssi": -97,
                        "channel_rssi": -97,
                        "snr": 6.25,
                        "uplink_token": "ChMKEQoEZ3ctMRIIuCfr//5hqxIQ",
                        "channel_index": 2
                    },
                    {
                        "gateway_ids": {"gateway_id": "gw-garage"},
                        "rssi": -112,
                        "channel_rssi": -112,
                        "snr": -3.5
                    }
                ],
                "settings": {
                    "data_rate": {"lora": {"bandwidth": 125_000, "spreading_factor": 10, "coding_rate": "4/5"}},
                    "frequency": "868300000"
                },
                "received_at": "2026-11-25T10:00:01.600123Z",
                "confirmed": true,
                "consumed_airtime": "0.370688s",
                "network_ids": {"net_id": "000013", "tenant_id": "ttn", "cluster_id": "eu1"}
            }
        })
    }

    fn parse_value(v: &Value) -> Result<Envelope, DecodeError> {
        parse_envelope(PayloadFormat::TtnV3, &serde_json::to_vec(v).unwrap())
    }

    fn err(v: &Value) -> String {
        parse_value(v).unwrap_err().to_string()
    }

    #[test]
    fn unwraps_a_realistic_uplink() {
        let e = parse_value(&bosch_uplink()).unwrap();
        assert_eq!(e.format, PayloadFormat::TtnV3);
        assert_eq!(e.device, "fcd6bd00001936b0");
        assert_eq!(e.device_name.as_deref(), Some("pls-bay-17"));
        assert_eq!(e.frame_counter, Some(4711));
        assert_eq!(e.port, Some(1));
        assert_eq!(e.raw, Some(vec![0x01]));
        assert_eq!(e.decoded, Some(json!({"type": "parking status", "occupied": true})));
        assert_eq!(
            e.received_at,
            Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 1).unwrap() + chrono::Duration::microseconds(600_123)
        );
        assert_eq!(e.rssi, Some(-97.0));
        assert_eq!(e.snr, Some(6.25));
        let frame = e.frame(Some(SensorModel::BoschPls)).unwrap();
        assert_eq!(frame.kind, FrameKind::Status { occupied: true });
        assert_eq!(e.frame(None).unwrap().kind, FrameKind::Status { occupied: true });
    }

    #[test]
    fn zero_and_empty_fields_may_be_absent() {
        // The first uplink after a (re)join has f_cnt 0, which protobuf JSON omits.
        let mut v = bosch_uplink();
        let up = v["uplink_message"].as_object_mut().unwrap();
        up.remove("f_cnt");
        up.remove("decoded_payload");
        up.remove("rx_metadata");
        let e = parse_value(&v).unwrap();
        assert_eq!(e.frame_counter, Some(0));
        assert_eq!((e.decoded, e.rssi, e.snr), (None, None, None));

        // No payload at all (a MAC-only uplink): port 0, no bytes.
        let mut v = bosch_uplink();
        let up = v["uplink_message"].as_object_mut().unwrap();
        for k in ["f_port", "frm_payload", "decoded_payload"] {
            up.remove(k);
        }
        let e = parse_value(&v).unwrap();
        assert_eq!((e.port, e.raw.as_ref()), (Some(0), None));
        assert_eq!(
            e.frame(Some(SensorModel::BoschPls)).unwrap_err().to_string(),
            "ttn-v3 uplink carries neither payload bytes nor a decoded object"
        );
    }

    #[test]
    fn nulls_read_as_absent() {
        let mut v = bosch_uplink();
        v["uplink_message"]["f_cnt"] = Value::Null;
        v["uplink_message"]["decoded_payload"] = Value::Null;
        let e = parse_value(&v).unwrap();
        assert_eq!((e.frame_counter, e.decoded), (Some(0), None));
    }

    #[test]
    fn received_at_falls_back_to_the_application_server_time() {
        let mut v = bosch_uplink();
        v["uplink_message"].as_object_mut().unwrap().remove("received_at");
        let e = parse_value(&v).unwrap();
        assert_eq!(e.received_at.timestamp_subsec_nanos(), 912_345_678);
        v.as_object_mut().unwrap().remove("received_at");
        assert_eq!(err(&v), "field `uplink_message.received_at`: required, but missing");
    }

    #[test]
    fn device_id_stands_in_for_a_missing_dev_eui() {
        let mut v = bosch_uplink();
        v["end_device_ids"].as_object_mut().unwrap().remove("dev_eui");
        assert_eq!(parse_value(&v).unwrap().device, "pls-bay-17");
        v["end_device_ids"].as_object_mut().unwrap().remove("device_id");
        assert_eq!(err(&v), "field `end_device_ids.dev_eui`: required, but missing");
    }

    #[test]
    fn wrong_fields_are_named_with_their_path() {
        let cases: [(&str, &str, Value, &str); 8] = [
            (
                "end_device_ids",
                "dev_eui",
                json!("FCD6BD00"),
                "field `end_device_ids.dev_eui`: expected a DevEUI of 16 hex digits, got \"FCD6BD00\"",
            ),
            (
                "end_device_ids",
                "dev_eui",
                json!(42),
                "field `end_device_ids.dev_eui`: expected a string, got 42",
            ),
            (
                "uplink_message",
                "f_cnt",
                json!(-1),
                "field `uplink_message.f_cnt`: expected an integer from 0 to 4294967295, got -1",
            ),
            (
                "uplink_message",
                "f_cnt",
                json!("17"),
                "field `uplink_message.f_cnt`: expected an integer from 0 to 4294967295, got \"17\"",
            ),
            (
                "uplink_message",
                "f_port",
                json!(256),
                "field `uplink_message.f_port`: expected an FPort, an integer from 0 to 255, got 256",
            ),
            (
                "uplink_message",
                "frm_payload",
                json!("A Q"),
                "field `uplink_message.frm_payload`: expected base64-encoded bytes, got \"A Q\"",
            ),
            (
                "uplink_message",
                "frm_payload",
                json!([1]),
                "field `uplink_message.frm_payload`: expected base64-encoded bytes, got [1]",
            ),
            (
                "uplink_message",
                "received_at",
                json!("today"),
                "field `uplink_message.received_at`: expected an RFC 3339 timestamp, got \"today\"",
            ),
        ];
        for (parent, key, value, message) in cases {
            let mut v = bosch_uplink();
            v[parent][key] = value;
            assert_eq!(err(&v), message);
        }
    }

    #[test]
    fn non_uplink_messages_are_rejected() {
        let join_accept = json!({
            "end_device_ids": {"device_id": "dev1", "dev_eui": "0004A30B001C0530"},
            "received_at": "2026-11-25T10:00:00Z",
            "join_accept": {"session_key_id": "AXBSH1Pk6Z0G166", "received_at": "2026-11-25T10:00:00Z"}
        });
        assert_eq!(err(&join_accept), "field `uplink_message`: required, but missing");
        assert_eq!(err(&json!({"uplink_message": {}})), "field `end_device_ids`: required, but missing");
        assert_eq!(
            err(&json!({"end_device_ids": [], "uplink_message": {}})),
            "field `end_device_ids`: expected a JSON object, got []"
        );
        assert_eq!(err(&json!([1, 2])), "payload: expected a JSON object, got [1,2]");
    }

    #[test]
    fn url_safe_and_unpadded_base64_are_accepted() {
        for (text, bytes) in [("AQ", vec![1u8]), ("_-8=", vec![0xff, 0xef]), ("/+8", vec![0xff, 0xef])] {
            let mut v = bosch_uplink();
            v["uplink_message"]["frm_payload"] = json!(text);
            assert_eq!(parse_value(&v).unwrap().raw, Some(bytes), "{text}");
        }
    }

    #[test]
    fn oversized_envelopes_are_rejected_before_parsing() {
        let mut v = bosch_uplink();
        v["pad"] = json!("x".repeat(super::super::MAX_ENVELOPE_BYTES));
        let size = serde_json::to_vec(&v).unwrap().len();
        assert_eq!(err(&v), format!("payload is {size} bytes; at most 65536 bytes are allowed"));
    }
}
