//! One MQTT message as a CloudEvent, by the CloudEvents MQTT binding.
//!
//! A message whose payload is already a structured-mode CloudEvent (JSON with
//! `specversion`) is passed on as it is. Any other message is a sensor uplink:
//! it becomes an `io.parking.sensor.uplink.v1` event whose data is the payload,
//! untouched (the bridge never decodes vendor bytes), with `subject` = the
//! device from the topic, `format` = the topic mapping's format, and an `id`
//! derived from topic and payload, so a redelivered message dedups downstream.
//!
//! Under MQTT 5 a message whose user properties include `specversion` is a
//! binary-mode CloudEvent: each user property is an attribute (by its own
//! name), the Content Type property is `datacontenttype`, and the payload is
//! the data. The publisher's `id` then decides dedup.

use bytes::Bytes;
use http::Request;
use sha2::{Digest, Sha256};

use super::topics::Matched;

pub const UPLINK_TYPE: &str = "io.parking.sensor.uplink.v1";
/// The `source` of bridged uplinks: one value for every bridge replica, so the
/// same message through two replicas is one event.
pub const SOURCE: &str = "/parking/bridge/mqtt";

/// A message ready for a sink: a CloudEvent as an HTTP request (binary mode
/// for uplinks, structured for pass-through), and its id for logs.
#[derive(Debug, Clone)]
pub struct BridgedEvent {
    pub id: String,
    /// The device the topic names: the partition key, so a partitioned sink
    /// (Kafka) keeps one device's readings in order.
    pub device: String,
    pub request: Request<Bytes>,
}

pub fn event_id(topic: &str, payload: &[u8]) -> String {
    let mut digest = Sha256::new();
    digest.update(topic.as_bytes());
    digest.update([0]);
    digest.update(payload);
    hex::encode(&digest.finalize()[..16])
}

/// What a payload is, from one JSON parse (every message passes here).
enum PayloadKind {
    StructuredCloudEvent,
    Json,
    Bytes,
}

fn payload_kind(payload: &[u8]) -> PayloadKind {
    match serde_json::from_slice::<serde_json::Value>(payload) {
        Ok(v) if v.get("specversion").is_some() && v.get("type").is_some() => {
            PayloadKind::StructuredCloudEvent
        }
        Ok(_) => PayloadKind::Json,
        Err(_) => PayloadKind::Bytes,
    }
}

pub fn to_event(topic: &str, payload: Bytes, matched: &Matched) -> BridgedEvent {
    let id = event_id(topic, &payload);
    let content_type = match payload_kind(&payload) {
        PayloadKind::StructuredCloudEvent => {
            let request = Request::post("/")
                .header("content-type", "application/cloudevents+json")
                .body(payload)
                .expect("valid request");
            return BridgedEvent { id, device: matched.device.clone(), request };
        }
        PayloadKind::Json => "application/json",
        PayloadKind::Bytes => "application/octet-stream",
    };
    let request = Request::post("/")
        .header("ce-specversion", "1.0")
        .header("ce-id", &id)
        .header("ce-source", SOURCE)
        .header("ce-type", UPLINK_TYPE)
        .header("ce-subject", header_safe(&matched.device))
        .header("ce-format", header_safe(&matched.format))
        .header("ce-time", chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .header("content-type", content_type)
        .body(payload)
        .expect("valid request");
    BridgedEvent { id, device: matched.device.clone(), request }
}

/// What MQTT 5 adds to a message, for the binding (empty under 3.1.1).
#[derive(Debug, Default, Clone, Copy)]
pub struct Mqtt5Properties<'a> {
    pub user_properties: &'a [(String, String)],
    pub content_type: Option<&'a str>,
}

/// Attributes a binary-mode event must carry (the binding adds `subject` and
/// `format` from the topic when the publisher left them out).
const REQUIRED_ATTRIBUTES: [&str; 3] = ["id", "source", "type"];

/// Any message as an event: binary mode from MQTT 5 user properties when they
/// carry `specversion`, otherwise as `to_event`. Errors say why the message
/// cannot be a CloudEvent (it is then dead-lettered).
pub fn from_message(
    topic: &str,
    payload: Bytes,
    properties: Mqtt5Properties<'_>,
    matched: &Matched,
) -> Result<BridgedEvent, String> {
    if !properties.user_properties.iter().any(|(name, _)| name == "specversion") {
        return Ok(to_event(topic, payload, matched));
    }
    let mut attributes = std::collections::BTreeMap::new();
    for (name, value) in properties.user_properties {
        // CloudEvents attribute names: lower-case ASCII letters and digits.
        let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !valid {
            return Err(format!(
                "MQTT 5 user property {name:?} is not a CloudEvents attribute name (lower-case letters and digits)"
            ));
        }
        if name == "datacontenttype" {
            return Err(
                "datacontenttype travels as the MQTT 5 Content Type property, not a user property".into()
            );
        }
        if attributes.insert(name.as_str(), value.as_str()).is_some() {
            return Err(format!("MQTT 5 user property {name:?} appears twice"));
        }
    }
    if attributes.get("specversion") != Some(&"1.0") {
        return Err(format!(
            "specversion {:?} is not supported: expected \"1.0\"",
            attributes["specversion"]
        ));
    }
    if let Some(missing) =
        REQUIRED_ATTRIBUTES.iter().find(|a| attributes.get(*a).is_none_or(|v| v.is_empty()))
    {
        return Err(format!("binary-mode CloudEvent without {missing:?} (an MQTT 5 user property)"));
    }
    attributes.entry("subject").or_insert(&matched.device);
    attributes.entry("format").or_insert(&matched.format);
    let content_type = match properties.content_type {
        Some(content_type) => content_type,
        None if serde_json::from_slice::<serde::de::IgnoredAny>(&payload).is_ok() => "application/json",
        None => "application/octet-stream",
    };
    let mut request = Request::post("/");
    for (name, value) in &attributes {
        request = request.header(format!("ce-{name}"), header_safe(value));
    }
    let request = request
        .header("content-type", header_safe(content_type))
        .body(payload)
        .map_err(|e| format!("the event's attributes do not fit an HTTP request: {e}"))?;
    Ok(BridgedEvent { id: attributes["id"].to_owned(), device: matched.device.clone(), request })
}

/// Topic segments are UTF-8 and may hold bytes a header may not: percent-encode those.
fn header_safe(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if (0x20..0x7f).contains(&b) && b != b'%' { (b as char).to_string() } else { format!("%{b:02X}") }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matched() -> Matched {
        Matched { device: "DEV-1".into(), format: "parking-json".into() }
    }

    #[test]
    fn a_plain_reading_becomes_a_binary_mode_uplink() {
        let payload = Bytes::from_static(br#"{"device":"DEV-1","occupied":true}"#);
        let e = to_event("parking/uplink/DEV-1", payload.clone(), &matched());
        let event =
            cloudevents::binding::http::to_event(e.request.headers(), e.request.body().to_vec()).unwrap();
        use cloudevents::AttributesReader;
        assert_eq!(event.ty(), UPLINK_TYPE);
        assert_eq!(event.subject(), Some("DEV-1"));
        assert_eq!(event.extension("format").map(|f| f.to_string()).as_deref(), Some("parking-json"));
        assert_eq!(e.request.headers()["content-type"], "application/json");
        assert_eq!(e.request.body(), &payload, "the payload is passed on untouched");
    }

    #[test]
    fn the_same_message_always_gets_the_same_id() {
        let a = to_event("parking/uplink/DEV-1", Bytes::from_static(b"\x01\x02"), &matched());
        let b = to_event("parking/uplink/DEV-1", Bytes::from_static(b"\x01\x02"), &matched());
        let c = to_event("parking/uplink/DEV-2", Bytes::from_static(b"\x01\x02"), &matched());
        assert_eq!(a.id, b.id);
        assert_ne!(a.id, c.id);
        assert_eq!(a.request.headers()["content-type"], "application/octet-stream");
    }

    #[test]
    fn structured_cloudevents_pass_through() {
        let payload = Bytes::from(
            serde_json::json!({"specversion": "1.0", "id": "x", "source": "/s", "type": "t"}).to_string(),
        );
        let e = to_event("parking/uplink/DEV-1", payload, &matched());
        assert_eq!(e.request.headers()["content-type"], "application/cloudevents+json");
    }

    fn props(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn mqtt5_user_properties_make_a_binary_mode_event() {
        let user = props(&[
            ("specversion", "1.0"),
            ("id", "gw-7-42"),
            ("source", "/gateways/7"),
            ("type", UPLINK_TYPE),
            ("time", "2026-11-25T10:00:00Z"),
        ]);
        let properties = Mqtt5Properties { user_properties: &user, content_type: Some("application/json") };
        let payload = Bytes::from_static(br#"{"occupied":true}"#);
        let e = from_message("parking/uplink/DEV-1", payload.clone(), properties, &matched()).unwrap();
        let event =
            cloudevents::binding::http::to_event(e.request.headers(), e.request.body().to_vec()).unwrap();
        use cloudevents::AttributesReader;
        assert_eq!(e.id, "gw-7-42", "the publisher's id decides dedup");
        assert_eq!(event.id(), "gw-7-42");
        assert_eq!(event.source().as_str(), "/gateways/7");
        assert_eq!(event.subject(), Some("DEV-1"), "subject from the topic when absent");
        assert_eq!(event.extension("format").map(|f| f.to_string()).as_deref(), Some("parking-json"));
        assert_eq!(event.datacontenttype(), Some("application/json"));
        assert_eq!(e.request.body(), &payload);
    }

    #[test]
    fn malformed_mqtt5_events_are_refused_with_the_reason() {
        let cases: [(&[(&str, &str)], &str); 5] = [
            (&[("specversion", "1.0"), ("source", "/s"), ("type", "t")], "without \"id\""),
            (&[("specversion", "0.3"), ("id", "1"), ("source", "/s"), ("type", "t")], "not supported"),
            (
                &[("specversion", "1.0"), ("id", "1"), ("source", "/s"), ("type", "t"), ("Battery", "3")],
                "\"Battery\"",
            ),
            (&[("specversion", "1.0"), ("id", "1"), ("id", "2"), ("source", "/s"), ("type", "t")], "twice"),
            (
                &[
                    ("specversion", "1.0"),
                    ("id", "1"),
                    ("source", "/s"),
                    ("type", "t"),
                    ("datacontenttype", "x"),
                ],
                "Content Type",
            ),
        ];
        for (pairs, expected) in cases {
            let user = props(pairs);
            let properties = Mqtt5Properties { user_properties: &user, content_type: None };
            let reason = from_message("t", Bytes::new(), properties, &matched()).unwrap_err();
            assert!(reason.contains(expected), "{pairs:?}: {reason}");
        }
        // Without specversion, properties are not an event: the plain path.
        let user = props(&[("battery", "3")]);
        let properties = Mqtt5Properties { user_properties: &user, content_type: None };
        let e = from_message("parking/uplink/DEV-1", Bytes::from_static(b"\x01"), properties, &matched())
            .unwrap();
        assert_eq!(e.request.headers()["ce-type"], UPLINK_TYPE);
    }

    #[test]
    fn header_values_are_always_valid() {
        assert_eq!(header_safe("dev\u{e9}\n%"), "dev%C3%A9%0A%25");
    }
}
