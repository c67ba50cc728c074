//! Fuzzing of every payload decoder: arbitrary bytes, JSON-ish text,
//! envelope-shaped JSON with right and wrong fields, and mutations of it.
//! Each property asserts that nothing panics and that what is accepted is
//! well-formed.
//!
//! The number of cases per property comes from `PROPTEST_CASES` (proptest's
//! default configuration reads it; 256 when unset), so the documented
//! million-case run is:
//!
//! ```text
//! PROPTEST_CASES=1000000 cargo test -p parking-domain --release --test codecs_fuzz
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use parking_domain::{
    DecodeError, Envelope, FrameKind, MAX_FRAME_BYTES, PayloadFormat, SensorFrame, SensorModel, decode_frame,
    interpret_decoded, parse_envelope, validate_device_id,
};
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use serde_json::{Map, Number, Value, json};

// ---------------------------------------------------------------- checks

/// Error messages end up in HTTP bodies and logs: they must render, and
/// quoted input must have been cut short.
fn check_error(e: &DecodeError) {
    let message = e.to_string();
    assert!(!message.is_empty());
    assert!(message.len() < 1024, "error message of {} bytes: {message}", message.len());
}

fn check_frame(frame: &SensorFrame) {
    assert!(frame.battery.is_none_or(|b| b.is_finite() && b >= 0.0), "{frame:?}");
    assert!(frame.temperature.is_none_or(f64::is_finite), "{frame:?}");
    match &frame.kind {
        FrameKind::Status { occupied } => assert_eq!(frame.status(), Some(*occupied)),
        FrameKind::Heartbeat { .. } | FrameKind::Startup { .. } | FrameKind::Diagnostic { .. } => {
            assert_eq!(frame.status(), None, "only status frames set status")
        }
    }
}

fn check_decode_frame(model: SensorModel, port: Option<u8>, bytes: &[u8]) {
    match decode_frame(model, port, bytes) {
        Ok(frame) => {
            assert!(bytes.len() <= MAX_FRAME_BYTES);
            check_frame(&frame);
        }
        Err(e) => check_error(&e),
    }
}

fn check_interpret(value: &Value) {
    match interpret_decoded(value) {
        Ok(frame) => {
            assert!(value.is_object());
            check_frame(&frame);
        }
        Err(e) => check_error(&e),
    }
}

fn is_dev_eui(id: &str) -> bool {
    id.len() == 16 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn check_envelope_of(format: PayloadFormat, envelope: &Envelope) {
    assert_eq!(envelope.format, format);
    match format {
        PayloadFormat::ParkingJson => assert!(envelope.port.is_none() && envelope.raw.is_none()),
        PayloadFormat::ChirpstackV4 => assert!(is_dev_eui(&envelope.device), "{}", envelope.device),
        PayloadFormat::TtnV3 => {
            assert!(is_dev_eui(&envelope.device) || validate_device_id(&envelope.device).is_ok())
        }
    }
    if format != PayloadFormat::ParkingJson {
        assert!(envelope.port.is_some() && envelope.frame_counter.is_some());
    }
    assert!(envelope.rssi.is_none_or(f64::is_finite) && envelope.snr.is_none_or(f64::is_finite));
    for model in [None, Some(SensorModel::BoschPls), Some(SensorModel::Nwave)] {
        match envelope.frame(model) {
            Ok(frame) => check_frame(&frame),
            Err(e) => check_error(&e),
        }
    }
}

fn check_envelope(payload: &[u8]) {
    for format in PayloadFormat::ALL {
        match parse_envelope(format, payload) {
            Ok(envelope) => check_envelope_of(format, &envelope),
            Err(e) => check_error(&e),
        }
    }
}

// ------------------------------------------------------------ strategies

fn model() -> impl Strategy<Value = SensorModel> {
    prop::sample::select(SensorModel::ALL.to_vec())
}

/// Ports: mostly the documented ones, so decoding goes past the port check.
fn port() -> impl Strategy<Value = Option<u8>> {
    prop_oneof![
        4 => prop::sample::select(vec![1u8, 2, 3, 4, 5, 6, 10]).prop_map(Some),
        1 => any::<u8>().prop_map(Some),
        1 => Just(None),
    ]
}

/// Frames of every length up to just past the limit.
fn frame_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![4 => vec(any::<u8>(), 0..24), 1 => vec(any::<u8>(), 0..=MAX_FRAME_BYTES + 8)]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
        (0u32..300).prop_map(|n| json!(n)),
        prop::sample::select(vec![0i64, 1, -1, 255, 256, 4_294_967_295, 4_294_967_296])
            .prop_map(|n| json!(n)),
    ]
}

/// Strings the decoders give meaning to, and noise.
fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "occupied",
            "free",
            "vacant",
            "Occupied",
            "heartbeat",
            "parking status",
            "parking_status",
            "status",
            "startup",
            "Start-Up",
            "keep_alive",
            "debug",
            "device information",
            "user_registration",
            "alarm",
            "0.29.2",
            "2.4.9",
            "1.2.3.4",
            "power_on",
            "system request",
            "rejoining_lorawan_network",
            "FCD6BD00001936B0",
            "70b3d5499a1b2c3d",
            "70B3D5499A1B2C3",
            "pls-bay-17",
            "dev 1",
            "",
            "2026-11-25T10:00:00Z",
            "2026-11-25T10:00:01.912345678+01:00",
            "9999-12-31T23:59:60Z",
            "today",
            "AQ==",
            "AQ",
            "ANPYAFkL",
            "_-8",
            "***",
        ])
        .prop_map(str::to_owned),
        "\\PC{0,20}",
        "[ -~]{0,80}",
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        word().prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        3 => prop::sample::select(vec![
            "type", "message_type", "packet_type", "occupied", "status", "state", "battery", "battery_voltage",
            "batteryVoltage", "temperature", "firmware_version", "firmwareVersion", "reset_cause", "resetCause",
        ])
        .prop_map(str::to_owned),
        1 => "[a-zA-Z_]{0,8}",
    ];
    leaf().prop_recursive(3, 48, 6, move |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map(key.clone(), inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An object shaped like a payload formatter's output.
fn decoded_like() -> impl Strategy<Value = Value> {
    let field = |keys: Vec<&'static str>, good: BoxedStrategy<Value>| {
        option::of((prop::sample::select(keys), prop_oneof![3 => good, 1 => leaf()]))
    };
    (
        field(
            vec!["type", "message_type", "packet_type"],
            prop::sample::select(vec!["heartbeat", "parking status", "startup", "debug", "status"])
                .prop_map(|s| json!(s))
                .boxed(),
        ),
        field(
            vec!["occupied", "status", "state"],
            prop_oneof![any::<bool>().prop_map(Value::Bool), (0u8..2).prop_map(|n| json!(n))].boxed(),
        ),
        field(vec!["battery", "battery_voltage"], (0.0..4.0f64).prop_map(|v| json!(v)).boxed()),
        field(vec!["temperature"], (-40.0..80.0f64).prop_map(|v| json!(v)).boxed()),
        field(vec!["firmware_version", "resetCause"], word().prop_map(Value::String).boxed()),
    )
        .prop_map(|(a, b, c, d, e)| {
            let obj: Map<String, Value> =
                [a, b, c, d, e].into_iter().flatten().map(|(k, v)| (k.to_owned(), v)).collect();
            Value::Object(obj)
        })
}

/// A field that is absent, right, or anything.
fn maybe(good: impl Strategy<Value = Value> + 'static) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![1 => Just(None), 4 => good.prop_map(Some), 1 => leaf().prop_map(Some)]
}

fn base64_of_frame() -> impl Strategy<Value = Value> {
    (frame_bytes(), any::<bool>()).prop_map(|(bytes, url_safe)| {
        json!(if url_safe { URL_SAFE_NO_PAD.encode(bytes) } else { STANDARD.encode(bytes) })
    })
}

fn timestamp() -> impl Strategy<Value = Value> {
    (0i64..4_102_444_800, 0u32..1_000_000_000)
        .prop_map(|(secs, nanos)| json!(chrono::DateTime::from_timestamp(secs, nanos).unwrap().to_rfc3339()))
}

fn dev_eui() -> impl Strategy<Value = Value> {
    prop_oneof!["[0-9A-F]{16}", "[0-9a-f]{16}", "[0-9a-fA-Fg]{14,17}"].prop_map(Value::String)
}

fn receptions(rssi_key: &'static str) -> impl Strategy<Value = Value> {
    vec((maybe(number()), maybe(number())), 0..4).prop_map(move |entries| {
        Value::Array(
            entries
                .into_iter()
                .map(|(rssi, snr)| {
                    let mut m = Map::new();
                    m.extend(rssi.map(|v| (rssi_key.to_owned(), v)));
                    m.extend(snr.map(|v| ("snr".to_owned(), v)));
                    Value::Object(m)
                })
                .collect(),
        )
    })
}

fn insert_all(obj: &mut Map<String, Value>, fields: Vec<(&str, Option<Value>)>) {
    for (key, value) in fields {
        if let Some(v) = value {
            obj.insert(key.to_owned(), v);
        }
    }
}

/// FPorts as JSON: mostly the documented ones, so frames get decoded.
fn fport() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => prop::sample::select(vec![1u16, 2, 3, 4, 5, 6, 10]),
        1 => 0u16..300,
    ]
    .prop_map(|n| json!(n))
}

/// A The Things Stack uplink whose fields may each be absent, right or wrong.
fn ttn_like() -> impl Strategy<Value = Value> {
    (
        (maybe(dev_eui()), maybe(word().prop_map(Value::String))),
        (maybe((0u32..100_000).prop_map(|n| json!(n))), maybe(fport())),
        (maybe(base64_of_frame()), maybe(prop_oneof![decoded_like(), json_value()])),
        (maybe(timestamp()), maybe(timestamp()), maybe(receptions("rssi"))),
    )
        .prop_map(|((eui, id), (f_cnt, f_port), (payload, decoded), (up_at, at, rx))| {
            let mut ids = Map::new();
            insert_all(&mut ids, vec![("dev_eui", eui), ("device_id", id)]);
            let mut up = Map::new();
            insert_all(
                &mut up,
                vec![
                    ("f_cnt", f_cnt),
                    ("f_port", f_port),
                    ("frm_payload", payload),
                    ("decoded_payload", decoded),
                    ("received_at", up_at),
                    ("rx_metadata", rx),
                ],
            );
            let mut root = Map::new();
            root.insert("end_device_ids".into(), Value::Object(ids));
            root.insert("uplink_message".into(), Value::Object(up));
            insert_all(&mut root, vec![("received_at", at)]);
            Value::Object(root)
        })
}

/// A ChirpStack uplink event whose fields may each be absent, right or wrong.
fn chirpstack_like() -> impl Strategy<Value = Value> {
    (
        (maybe(dev_eui()), maybe(word().prop_map(Value::String))),
        (maybe((0u32..100_000).prop_map(|n| json!(n))), maybe(fport())),
        (maybe(base64_of_frame()), maybe(prop_oneof![decoded_like(), json_value()])),
        (maybe(timestamp()), maybe(receptions("rssi"))),
    )
        .prop_map(|((eui, name), (f_cnt, f_port), (data, object), (time, rx))| {
            let mut info = Map::new();
            insert_all(&mut info, vec![("devEui", eui), ("deviceName", name)]);
            let mut root = Map::new();
            root.insert("deviceInfo".into(), Value::Object(info));
            insert_all(
                &mut root,
                vec![
                    ("fCnt", f_cnt),
                    ("fPort", f_port),
                    ("data", data),
                    ("object", object),
                    ("time", time),
                    ("rxInfo", rx),
                ],
            );
            Value::Object(root)
        })
}

fn parking_json_like() -> impl Strategy<Value = Value> {
    (
        maybe(word().prop_map(Value::String)),
        maybe(any::<bool>().prop_map(Value::Bool)),
        maybe(any::<u32>().prop_map(|n| json!(n))),
        maybe(timestamp()),
        maybe((0.0..5.0f64).prop_map(|v| json!(v))),
    )
        .prop_map(|(device, occupied, seq, at, battery)| {
            let mut obj = Map::new();
            insert_all(
                &mut obj,
                vec![
                    ("device", device),
                    ("occupied", occupied),
                    ("seq", seq),
                    ("observedAt", at),
                    ("battery", battery),
                ],
            );
            Value::Object(obj)
        })
}

/// Boxed: the value trees of these wide tuples are large, and unboxed they
/// overflow the test thread's stack once wrapped again by the mutator.
fn envelope_like() -> BoxedStrategy<Value> {
    prop_oneof![ttn_like().boxed(), chirpstack_like().boxed(), parking_json_like().boxed()].boxed()
}

/// The bytes of an envelope with a few bytes overwritten, dropped or added.
fn mutated_envelope() -> impl Strategy<Value = Vec<u8>> {
    (envelope_like(), vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4)).prop_map(
        |(value, edits)| {
            let mut bytes = serde_json::to_vec(&value).unwrap();
            for (at, byte, edit) in edits {
                let i = at.index(bytes.len() + 1);
                match edit {
                    0 if i < bytes.len() => bytes[i] = byte,
                    1 => bytes.truncate(i),
                    _ => bytes.insert(i.min(bytes.len()), byte),
                }
            }
            bytes
        },
    )
}

// ------------------------------------------------------------ properties

proptest! {
    // No case count here: it comes from PROPTEST_CASES.

    #[test]
    fn byte_codecs_survive_arbitrary_frames(model in model(), port in port(), bytes in frame_bytes()) {
        check_decode_frame(model, port, &bytes);
    }

    #[test]
    fn documented_status_frames_always_decode_to_bit_zero(model in model(), bytes in vec(any::<u8>(), 1..=MAX_FRAME_BYTES)) {
        let frame = decode_frame(model, Some(1), &bytes).unwrap();
        prop_assert_eq!(frame.kind, FrameKind::Status { occupied: bytes[0] & 1 == 1 });
    }

    #[test]
    fn envelope_parsers_survive_arbitrary_bytes(bytes in vec(any::<u8>(), 0..1024)) {
        check_envelope(&bytes);
    }

    #[test]
    fn envelope_parsers_survive_json_ish_text(text in r#"[\[\]{}",:0-9a-zA-Z_ .eE+\-\\/=]{0,300}"#) {
        check_envelope(text.as_bytes());
    }

    #[test]
    fn envelope_parsers_survive_envelope_shaped_json(value in envelope_like()) {
        check_envelope(&serde_json::to_vec(&value).unwrap());
    }

    #[test]
    fn envelope_parsers_survive_mutated_envelopes(bytes in mutated_envelope()) {
        check_envelope(&bytes);
    }

    #[test]
    fn decoded_object_reader_survives_arbitrary_json(value in prop_oneof![decoded_like(), json_value()]) {
        check_interpret(&value);
    }
}

#[test]
fn oversized_inputs_are_rejected_with_a_reason() {
    let huge = vec![b' '; parking_domain::MAX_ENVELOPE_BYTES + 1];
    for format in PayloadFormat::ALL {
        let e = parse_envelope(format, &huge).unwrap_err();
        assert!(matches!(e, DecodeError::TooLarge { .. }), "{e}");
    }
    for model in SensorModel::ALL {
        let e = decode_frame(model, Some(1), &[1; MAX_FRAME_BYTES + 1]).unwrap_err();
        assert!(matches!(e, DecodeError::FrameTooLarge { .. }), "{e}");
    }
}
