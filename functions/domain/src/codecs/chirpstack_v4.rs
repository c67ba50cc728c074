//! ChirpStack v4 uplink event JSON (`chirpstack-v4`), as published on
//! `application/{application}/device/{devEui}/event/up` by its MQTT
//! integration with the JSON (protobuf JSON mapping) encoding.
//!
//! Fields read:
//!
//! | path | meaning | when absent |
//! |---|---|---|
//! | `deviceInfo.devEui` | DevEUI, hex | error |
//! | `deviceInfo.deviceName` | ChirpStack's name for the device | `device_name` is `None` |
//! | `fCnt` | frame counter | 0 (protobuf JSON may omit zero values) |
//! | `fPort` | FPort | 0 |
//! | `data` | payload, base64 | no raw bytes |
//! | `object` | the device profile codec's output | no decoded object |
//! | `time` | when ChirpStack received the uplink | error |
//! | `rxInfo[].rssi`, `.snr` | per-gateway signal | no signal data |
//!
//! Other fields (`deduplicationId`, `devAddr`, `dr`, `txInfo`, ...) are
//! ignored.

use super::json;
use super::{Envelope, PayloadFormat};
use crate::error::DecodeError;

pub(super) fn parse(payload: &[u8]) -> Result<Envelope, DecodeError> {
    let root = json::parse_object(payload)?;
    let info = json::object(&root, "deviceInfo", "deviceInfo")?
        .ok_or(DecodeError::MissingField { field: "deviceInfo" })?;
    let eui = json::string(info, "devEui", "deviceInfo.devEui")?
        .ok_or(DecodeError::MissingField { field: "deviceInfo.devEui" })?;
    let device = json::dev_eui(eui, "deviceInfo.devEui")?;
    let device_name = json::string(info, "deviceName", "deviceInfo.deviceName")?.map(str::to_owned);

    let frame_counter = json::u32_or_zero(&root, "fCnt", "fCnt")?;
    let port = json::port_or_zero(&root, "fPort", "fPort")?;
    let raw = json::base64_bytes(&root, "data", "data")?;
    let decoded = json::get(&root, "object").cloned();
    let received_at =
        json::timestamp(&root, "time", "time")?.ok_or(DecodeError::MissingField { field: "time" })?;
    let (rssi, snr) = json::best_signal(root.get("rxInfo"), &["rssi"]);

    Ok(Envelope {
        format: PayloadFormat::ChirpstackV4,
        device,
        device_name,
        frame_counter: Some(frame_counter),
        port: Some(port),
        received_at,
        raw,
        decoded,
        rssi,
        snr,
    })
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use serde_json::{Value, json};

    use super::super::{FrameKind, ResetCause, SensorModel, parse_envelope};
    use super::*;

    /// An uplink event as ChirpStack v4 publishes it: an Nwave heartbeat
    /// (port 2) with no device-profile codec, so no `object`.
    fn nwave_heartbeat() -> Value {
        json!({
            "deduplicationId": "3ac7e3c4-4401-4b8d-9386-a5c902f9202d",
            "time": "2026-11-25T10:00:00.123456+00:00",
            "deviceInfo": {
                "tenantId": "52f14cd4-c6f1-4fbd-8f87-4025e1d49242",
                "tenantName": "ChirpStack",
                "applicationId": "17c82e96-be03-4f38-aef3-f83d48582d97",
                "applicationName": "parking",
                "deviceProfileId": "14855bf7-d10d-4aee-b618-ebfcb64dc7ad",
                "deviceProfileName": "Nwave NPS",
                "deviceName": "level-2-bay-031",
                "devEui": "70b3d5499a1b2c3d",
                "tags": {"lot": "central"}
            },
            "devAddr": "00189440",
            "adr": true,
            "dr": 5,
            "fCnt": 31,
            "fPort": 2,
            "confirmed": true,
            "data": "ANPYAFkL",
            "rxInfo": [{
                "gatewayId": "0016c001f153a14c",
                "uplinkId": 4217106255u32,
                "rssi": -84,
                "snr": 9.0,
                "channel": 5,
                "location": {"latitude": 52.3740364, "longitude": 4.9144401},
                "context": "EFwMtA==",
                "metadata": {"region_config_id": "eu868", "region_common_name": "EU868"},
                "crcStatus": "CRC_OK"
            }],
            "txInfo": {
                "frequency": 867_100_000,
                "modulation": {"lora": {"bandwidth": 125_000, "spreadingFactor": 7, "codeRate": "CR_4_5"}}
            }
        })
    }

    fn parse_value(v: &Value) -> Result<Envelope, DecodeError> {
        parse_envelope(PayloadFormat::ChirpstackV4, &serde_json::to_vec(v).unwrap())
    }

    fn err(v: &Value) -> String {
        parse_value(v).unwrap_err().to_string()
    }

    #[test]
    fn unwraps_a_realistic_uplink_event() {
        let e = parse_value(&nwave_heartbeat()).unwrap();
        assert_eq!(e.format, PayloadFormat::ChirpstackV4);
        assert_eq!(e.device, "70b3d5499a1b2c3d");
        assert_eq!(e.device_name.as_deref(), Some("level-2-bay-031"));
        assert_eq!((e.frame_counter, e.port), (Some(31), Some(2)));
        assert_eq!(e.raw, Some(vec![0x00, 0xD3, 0xD8, 0x00, 0x59, 0x0B]));
        assert_eq!(e.decoded, None);
        assert_eq!(
            e.received_at,
            Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap() + chrono::Duration::microseconds(123_456)
        );
        assert_eq!((e.rssi, e.snr), (Some(-84.0), Some(9.0)));

        let frame = e.frame(Some(SensorModel::Nwave)).unwrap();
        assert_eq!(frame.kind, FrameKind::Heartbeat { occupied: Some(false) });
        assert_eq!(frame.battery, Some(3.344));
        assert_eq!(frame.temperature, Some(-10.0));
    }

    #[test]
    fn upper_case_dev_eui_is_normalised() {
        let mut v = nwave_heartbeat();
        v["deviceInfo"]["devEui"] = json!("70B3D5499A1B2C3D");
        assert_eq!(parse_value(&v).unwrap().device, "70b3d5499a1b2c3d");
    }

    #[test]
    fn a_codec_object_is_kept_and_used_without_a_model() {
        let mut v = nwave_heartbeat();
        v["fPort"] = json!(3);
        v["data"] = json!("AgQJAgA=");
        v["object"] = json!({"type": "startup", "firmware_version": "2.4.9", "reset_cause": "power_on", "occupied": false});
        let e = parse_value(&v).unwrap();
        let expected = FrameKind::Startup {
            firmware: Some(crate::codecs::FirmwareVersion { major: 2, minor: 4, patch: 9 }),
            reset_cause: Some(ResetCause::PowerOn),
            occupied: Some(false),
        };
        assert_eq!(e.frame(None).unwrap().kind, expected);
        assert_eq!(e.frame(Some(SensorModel::Nwave)).unwrap().kind, expected);
    }

    #[test]
    fn zero_fields_may_be_absent() {
        let mut v = nwave_heartbeat();
        let root = v.as_object_mut().unwrap();
        for k in ["fCnt", "rxInfo", "deduplicationId", "txInfo"] {
            root.remove(k);
        }
        let e = parse_value(&v).unwrap();
        assert_eq!((e.frame_counter, e.rssi, e.snr), (Some(0), None, None));
    }

    #[test]
    fn required_fields_and_wrong_types_are_named() {
        let mut v = nwave_heartbeat();
        v.as_object_mut().unwrap().remove("time");
        assert_eq!(err(&v), "field `time`: required, but missing");

        let mut v = nwave_heartbeat();
        v["deviceInfo"].as_object_mut().unwrap().remove("devEui");
        assert_eq!(err(&v), "field `deviceInfo.devEui`: required, but missing");

        let mut v = nwave_heartbeat();
        v.as_object_mut().unwrap().remove("deviceInfo");
        assert_eq!(err(&v), "field `deviceInfo`: required, but missing");

        let cases: [(&str, Value, &str); 5] = [
            (
                "fCnt",
                json!(4_294_967_296u64),
                "field `fCnt`: expected an integer from 0 to 4294967295, got 4294967296",
            ),
            ("fPort", json!(1.5), "field `fPort`: expected an FPort, an integer from 0 to 255, got 1.5"),
            ("data", json!("***"), "field `data`: expected base64-encoded bytes, got \"***\""),
            ("time", json!(1_764_064_800), "field `time`: expected an RFC 3339 timestamp, got 1764064800"),
            ("deviceInfo", json!("x"), "field `deviceInfo`: expected a JSON object, got \"x\""),
        ];
        for (key, value, message) in cases {
            let mut v = nwave_heartbeat();
            v[key] = value;
            assert_eq!(err(&v), message);
        }
        let mut v = nwave_heartbeat();
        v["deviceInfo"]["devEui"] = json!("70b3d5499a1b2c3g");
        assert_eq!(
            err(&v),
            "field `deviceInfo.devEui`: expected a DevEUI of 16 hex digits, got \"70b3d5499a1b2c3g\""
        );
    }

    #[test]
    fn malformed_radio_metadata_is_skipped_not_fatal() {
        let mut v = nwave_heartbeat();
        v["rxInfo"] = json!([7, {"rssi": "loud"}, {"rssi": -120, "snr": -7.5}, {"rssi": -101}]);
        let e = parse_value(&v).unwrap();
        assert_eq!((e.rssi, e.snr), (Some(-101.0), Some(-7.5)));
        v["rxInfo"] = json!({"rssi": -1});
        assert_eq!(parse_value(&v).unwrap().rssi, None);
    }

    #[test]
    fn bad_json_is_rejected() {
        for bad in ["", "{", "{\"deviceInfo\":", "null", "\u{feff}{}"] {
            assert!(parse_envelope(PayloadFormat::ChirpstackV4, bad.as_bytes()).is_err(), "{bad:?}");
        }
    }
}
