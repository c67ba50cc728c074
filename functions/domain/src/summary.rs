//! A lot's public summary: what anyone may see of a lot, and nothing of its
//! bays' sensors or devices: name, kind, location, whether it is open, when a
//! bay last changed, and the counts per vehicle class and per bay category.
//!
//! The lot list, the nearest-lots search and the live summaries
//! terminal-push publishes for the public availability page (`GET /find`)
//! all show a lot in this one shape; a live summary adds its `seq` and
//! `renderedAt` (how the gateway orders them, as it orders terminal frames).

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::feeds::LotSnapshot;

/// The MQTT topic a lot's live summary is published on (retained, QoS 1).
pub fn summary_topic(lot: &str) -> String {
    format!("parking/lots/{lot}/summary")
}

/// The filter that matches every lot's summary.
pub const SUMMARY_TOPIC_FILTER: &str = "parking/lots/+/summary";

/// The lot id in a summary topic, if `topic` is one.
pub fn lot_of_summary_topic(topic: &str) -> Option<&str> {
    topic
        .strip_prefix("parking/lots/")?
        .strip_suffix("/summary")
        .filter(|l| !l.is_empty() && !l.contains('/'))
}

/// The lot as the public reads show it, judged open or closed at `now`.
pub fn lot_summary(lot: &LotSnapshot, now: DateTime<Utc>) -> Value {
    let mut entry = json!({
        "lot": lot.lot,
        "name": lot.name,
        "location": lot.site.location,
        "open": lot.is_open(now),
        "updatedAt": lot.updated_at,
        "classes": lot.classes,
    });
    if !lot.categories.is_empty() {
        entry["categories"] = json!(lot.categories);
    }
    if let Some(kind) = lot.site.kind {
        entry["kind"] = json!(kind);
    }
    entry
}

/// The summary as published live: with `seq` (the render time in
/// microseconds, so summaries of one lot rendered apart order by it) and
/// `renderedAt`.
pub fn live_summary(lot: &LotSnapshot, now: DateTime<Utc>) -> Value {
    let mut entry = lot_summary(lot, now);
    entry["seq"] = json!(now.timestamp_micros().max(0));
    entry["renderedAt"] = json!(now);
    entry
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feeds::tests_support::{lot, now};

    #[test]
    fn topics_name_the_lot() {
        assert_eq!(summary_topic("north"), "parking/lots/north/summary");
        assert_eq!(lot_of_summary_topic("parking/lots/north/summary"), Some("north"));
        for other in [
            "parking/lots//summary",
            "parking/lots/a/b/summary",
            "parking/terminals/north/frame",
            "parking/lots/north/summary/x",
        ] {
            assert_eq!(lot_of_summary_topic(other), None, "{other}");
        }
    }

    #[test]
    fn the_summary_holds_public_data_only() {
        let summary = lot_summary(&lot(true), now());
        assert_eq!(summary["lot"], "north");
        assert_eq!(summary["classes"]["four_wheeler"]["free"], 2);
        assert_eq!(summary["categories"]["accessible"]["free"], 1);
        assert_eq!(summary["location"]["coordinates"], json!([13.4, 52.5]));
        assert_eq!(summary["kind"], "off_street");
        assert_eq!(summary["open"], true);
        let keys: Vec<&str> = summary.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["categories", "classes", "kind", "location", "lot", "name", "open", "updatedAt"]);
        let unlocated = lot_summary(&lot(false), now());
        assert_eq!(unlocated["location"], Value::Null);
    }

    #[test]
    fn a_live_summary_orders_by_its_render_time() {
        let first = live_summary(&lot(true), now());
        let later = live_summary(&lot(true), now() + chrono::Duration::microseconds(1));
        assert_eq!(first["renderedAt"], json!(now()));
        assert!(later["seq"].as_u64().unwrap() > first["seq"].as_u64().unwrap());
    }
}
