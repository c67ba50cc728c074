//! One MQTT message as a CloudEvent, by the CloudEvents MQTT binding.
//!
//! A message whose payload is already a structured-mode CloudEvent (JSON with
//! `specversion`) is passed on as it is. Any other message is a sensor uplink:
//! it becomes an `io.parking.sensor.uplink.v1` event whose data is the payload,
//! untouched (the bridge never decodes vendor bytes), with `subject` = the
//! device from the topic, `format` = the topic mapping's format, and an `id`
//! derived from topic and payload, so a redelivered message dedups downstream.

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

    #[test]
    fn header_values_are_always_valid() {
        assert_eq!(header_safe("dev\u{e9}\n%"), "dev%C3%A9%0A%25");
    }
}
