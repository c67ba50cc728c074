//! ParkAPI v3-style parking sites: each located lot's static data (name,
//! type, position, address, operator, fees, opening hours in OpenStreetMap
//! syntax, height limit, capacities per category) and its realtime data
//! (opening status, free capacity overall and per category, when it was
//! updated).
//!
//! Categories map to ParkAPI's capacity groups: accessible to `disabled`,
//! EV charging to `charging`, family to `family`, car-sharing to
//! `carsharing`. Loading and permit bays have no group and count only in
//! the totals. Positions are decimal strings with seven decimals, as ParkAPI
//! carries them.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::{LotSnapshot, rfc3339};
use crate::category::BayCategory;
use crate::class::VehicleClass;
use crate::site::{LotKind, osm_opening_hours};

fn site_type(kind: Option<LotKind>) -> &'static str {
    match kind {
        Some(LotKind::OffStreet) => "CAR_PARK",
        Some(LotKind::OnStreet) => "ON_STREET",
        None => "OTHER",
    }
}

/// The ParkAPI capacity group of a category.
fn group(category: BayCategory) -> Option<&'static str> {
    match category {
        BayCategory::Accessible => Some("disabled"),
        BayCategory::EvCharging => Some("charging"),
        BayCategory::Family => Some("family"),
        BayCategory::Carsharing => Some("carsharing"),
        BayCategory::Loading | BayCategory::Permit => None,
    }
}

/// One lot as a parking site; `None` without a location.
pub fn parking_site(lot: &LotSnapshot, now: DateTime<Utc>) -> Option<Value> {
    let location = lot.site.location?;
    let open = lot.is_open(now);
    let totals = lot.totals();
    let mut s = Map::new();
    let mut put = |k: &str, v: Value| {
        s.insert(k.to_owned(), v);
    };
    put("uid", json!(lot.lot));
    put("name", json!(lot.name));
    put("type", json!(site_type(lot.site.kind)));
    put("lat", json!(format!("{:.7}", location.lat)));
    put("lon", json!(format!("{:.7}", location.lon)));
    if lot.classes.contains_key(&VehicleClass::four_wheeler()) {
        put("purpose", json!("CAR"));
    }
    if let Some(address) = &lot.site.address {
        put("address", json!(address));
    }
    if let Some(operator) = &lot.site.operator {
        put("operator_name", json!(operator.name));
    }
    if let Some(fees) = &lot.site.fees {
        if let Some(description) = &fees.description {
            put("has_fee", json!(true));
            // ParkAPI takes at most 256 characters here.
            put("fee_description", json!(description.chars().take(256).collect::<String>()));
        }
        if let Some(url) = &fees.url {
            put("public_url", json!(url));
        }
    }
    if let Some(cm) = lot.site.max_height_cm {
        put("max_height", json!(cm));
    }
    put("opening_hours", json!(osm_opening_hours(lot.site.opening_hours.as_ref())));
    put("has_realtime_data", json!(true));
    put("static_data_updated_at", json!(rfc3339(lot.defined_at.unwrap_or(now))));
    put("realtime_data_updated_at", json!(rfc3339(lot.modified_at().unwrap_or(now))));
    put("realtime_opening_status", json!(if open { "OPEN" } else { "CLOSED" }));
    put("capacity", json!(totals.total));
    put("realtime_capacity", json!(totals.total));
    put("realtime_free_capacity", json!(lot.vacant(&totals, open)));
    for (category, counts) in &lot.categories {
        if let Some(group) = group(*category) {
            put(&format!("capacity_{group}"), json!(counts.total));
            put(&format!("realtime_capacity_{group}"), json!(counts.total));
            put(&format!("realtime_free_capacity_{group}"), json!(lot.vacant(counts, open)));
        }
    }
    Some(Value::Object(s))
}

/// Every located lot, in lot id order: `{"items": [...], "total_count": n}`.
pub fn parking_sites(lots: &[LotSnapshot], now: DateTime<Utc>) -> Value {
    let items: Vec<Value> = lots.iter().filter_map(|lot| parking_site(lot, now)).collect();
    json!({ "total_count": items.len(), "items": items })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feeds::tests_support::{lot, now};

    #[test]
    fn a_located_lot_is_a_site_with_groups() {
        let p = parking_sites(&[lot(true), lot(false)], now());
        assert_eq!(p["total_count"], 1, "the lot without a location is left out");
        let s = &p["items"][0];
        assert_eq!((s["uid"].as_str(), s["type"].as_str()), (Some("north"), Some("CAR_PARK")));
        assert_eq!((s["lat"].as_str(), s["lon"].as_str()), (Some("52.5000000"), Some("13.4000000")));
        assert_eq!((s["capacity"].as_u64(), s["realtime_free_capacity"].as_u64()), (Some(3), Some(2)));
        assert_eq!(
            (s["capacity_disabled"].as_u64(), s["realtime_free_capacity_disabled"].as_u64()),
            (Some(1), Some(1))
        );
        assert_eq!(s["realtime_opening_status"], "OPEN");
        assert_eq!(s["opening_hours"], "24/7");
        assert_eq!(s["static_data_updated_at"], "2026-12-07T10:00:00Z");
    }

    #[test]
    fn a_closed_lot_is_closed_with_no_free_capacity() {
        let mut l = lot(true);
        l.site.closed = true;
        let s = parking_site(&l, now()).unwrap();
        assert_eq!(s["realtime_opening_status"], "CLOSED");
        assert_eq!(
            (s["realtime_free_capacity"].as_u64(), s["realtime_free_capacity_disabled"].as_u64()),
            (Some(0), Some(0))
        );
    }
}
