//! A lot's public summary: what anyone may see of a lot, and nothing of its
//! bays' sensors or devices: name, kind, location, whether it is open, when a
//! bay last changed, and the counts per vehicle class and per bay category.
//!
//! The lot list, the nearest-lots search and the live summaries
//! terminal-push publishes for the public availability page (`GET /find`)
//! all show a lot in this one shape; a live summary adds its `seq` and
//! `renderedAt` (how the gateway orders them, as it orders terminal frames).
//! The lot list adds each class's published forecast, free bays in an hour
//! (`forecast`), while the sweep keeps it fresh; live summaries carry counts
//! only.

use std::collections::BTreeMap;

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
    let forecasts: BTreeMap<_, _> = lot
        .forecasts
        .iter()
        .filter(|(class, f)| lot.classes.contains_key(*class) && f.is_current(now))
        .collect();
    if !forecasts.is_empty() {
        entry["forecast"] = json!(forecasts);
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
    fn the_summary_shows_a_current_forecast_of_a_class_the_lot_has() {
        use crate::forecast::{Forecast, Horizon, Method, PUBLISHED_MAX_AGE_MINUTES, PublishedForecast};
        let fitted = now() - chrono::Duration::minutes(3);
        let seasonal =
            Forecast { horizon: Horizon::HOUR, free: 1, low: 0, high: 2, method: Method::Seasonal };
        let published = PublishedForecast::of(&seasonal, Some(0.4), fitted).unwrap();
        assert_eq!(published.at, fitted + chrono::Duration::hours(1));
        let persistence = Forecast { method: Method::Persistence, ..seasonal };
        assert_eq!(PublishedForecast::of(&persistence, None, fitted), None, "persistence is not published");

        let mut with = lot(true);
        with.forecasts.insert(crate::VehicleClass::four_wheeler(), published.clone());
        with.forecasts.insert(crate::VehicleClass::parse("two_wheeler").unwrap(), published.clone());
        let summary = lot_summary(&with, now());
        assert_eq!(summary["forecast"]["four_wheeler"]["free"], 1);
        assert_eq!(summary["forecast"]["four_wheeler"]["horizon"], "60m");
        assert_eq!(summary["forecast"]["four_wheeler"]["recentError"], 0.4);
        assert!(
            summary["forecast"].get("two_wheeler").is_none(),
            "the lot has no two-wheeler bays: {summary}"
        );

        let stale = now() + chrono::Duration::minutes(PUBLISHED_MAX_AGE_MINUTES);
        assert!(
            lot_summary(&with, stale).get("forecast").is_none(),
            "a forecast the sweep stopped refreshing"
        );
        assert!(lot_summary(&lot(true), now()).get("forecast").is_none());
    }

    #[test]
    fn a_live_summary_orders_by_its_render_time() {
        let first = live_summary(&lot(true), now());
        let later = live_summary(&lot(true), now() + chrono::Duration::microseconds(1));
        assert_eq!(first["renderedAt"], json!(now()));
        assert!(later["seq"].as_u64().unwrap() > first["seq"].as_u64().unwrap());
    }
}
