//! DATEX II v3 "Parking Publication light" (JSON): each located lot as a
//! `parkingSite` with its position, capacity, vacant spaces, whether it is
//! open, and vacant spaces per assignment (bay category) where DATEX II has
//! a user or fuel type for it.
//!
//! Categories map to assignments `onlyFor`: accessible to the user
//! `wheelchairUsers`, family to `families`, permit to `residents`, EV
//! charging to the fuel type `battery`. Loading and car-sharing bays have no
//! assignment in the profile and are published only in the totals.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::{LotSnapshot, rfc3339};
use crate::category::BayCategory;
use crate::site::{LotKind, osm_opening_hours};

/// The `type` of a parking site, from the lot's kind.
fn site_type(kind: Option<LotKind>) -> &'static str {
    match kind {
        Some(LotKind::OffStreet) => "carPark",
        Some(LotKind::OnStreet) => "onStreet",
        None => "other",
    }
}

/// The assignment a category maps to, as (member, value).
fn assignment(category: BayCategory) -> Option<(&'static str, &'static str)> {
    match category {
        BayCategory::Accessible => Some(("user", "wheelchairUsers")),
        BayCategory::Family => Some(("user", "families")),
        BayCategory::Permit => Some(("user", "residents")),
        BayCategory::EvCharging => Some(("fuelType", "battery")),
        BayCategory::Loading | BayCategory::Carsharing => None,
    }
}

/// One lot as a `parkingSite`; `None` without a location.
pub fn parking_site(lot: &LotSnapshot, now: DateTime<Utc>) -> Option<Value> {
    let location = lot.site.location?;
    let open = lot.is_open(now);
    let totals = lot.totals();
    let mut site = Map::new();
    site.insert("_id".into(), json!(lot.lot));
    site.insert("name".into(), json!(lot.name));
    site.insert("type".into(), json!(site_type(lot.site.kind)));
    site.insert(
        "locationAndDimension".into(),
        json!({ "coordinatesForDisplay": { "latitude": location.lat, "longitude": location.lon } }),
    );
    site.insert("numberOfSpaces".into(), json!(totals.total));
    site.insert("availableSpaces".into(), json!(lot.vacant(&totals, open)));
    site.insert("isOpenNow".into(), json!(open));
    site.insert("temporaryClosed".into(), json!(lot.site.closed));
    if let Some(at) = lot.modified_at() {
        site.insert("lastUpdate".into(), json!(rfc3339(at)));
    }
    let assigned: Vec<Value> = lot
        .categories
        .iter()
        .filter_map(|(category, counts)| {
            let (member, value) = assignment(*category)?;
            Some(json!({ "typeOfAssignment": "onlyFor", member: value, "availableSpaces": lot.vacant(counts, open) }))
        })
        .collect();
    if !assigned.is_empty() {
        site.insert("assignedFor".into(), json!(assigned));
    }
    if lot.site.opening_hours.is_some() {
        site.insert(
            "openingTimesDescription".into(),
            json!([osm_opening_hours(lot.site.opening_hours.as_ref())]),
        );
    }
    if let Some(fees) = &lot.site.fees {
        if let Some(description) = &fees.description {
            site.insert("tariffDescription".into(), json!([description]));
        }
        if let Some(url) = &fees.url {
            site.insert("urlLinkAddress".into(), json!(url));
        }
    }
    if let Some(operator) = &lot.site.operator {
        let info: Vec<&str> =
            std::iter::once(operator.name.as_str()).chain(operator.contact.as_deref()).collect();
        site.insert("operatorInformation".into(), json!(info));
    }
    Some(Value::Object(site))
}

/// The publication: every located lot, in lot id order.
pub fn publication(lots: &[LotSnapshot], now: DateTime<Utc>) -> Value {
    let sites: Vec<Value> = lots.iter().filter_map(|lot| parking_site(lot, now)).collect();
    json!({
        "_modelBaseVersion": "3",
        "_profileName": "Parking Publication light",
        "parkingPublicationLight": {
            "name": "parking",
            "lang": "en",
            "publicationTime": rfc3339(now),
            "parkingSite": sites,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feeds::tests_support::{lot, now};

    #[test]
    fn a_located_lot_is_a_site_with_assignments() {
        let l = lot(true);
        let p = publication(&[l.clone(), LotSnapshot { site: Default::default(), ..lot(false) }], now());
        let sites = p["parkingPublicationLight"]["parkingSite"].as_array().unwrap();
        assert_eq!(sites.len(), 1, "the lot without a location is left out");
        let s = &sites[0];
        assert_eq!(s["_id"], "north");
        assert_eq!(s["type"], "carPark");
        assert_eq!(
            s["locationAndDimension"]["coordinatesForDisplay"],
            json!({"latitude": 52.5, "longitude": 13.4})
        );
        assert_eq!((s["numberOfSpaces"].as_u64(), s["availableSpaces"].as_u64()), (Some(3), Some(2)));
        assert_eq!(s["isOpenNow"], true);
        assert_eq!(
            s["assignedFor"],
            json!([{"typeOfAssignment": "onlyFor", "user": "wheelchairUsers", "availableSpaces": 1}])
        );
    }

    #[test]
    fn a_closed_lot_has_no_vacant_spaces() {
        let mut l = lot(true);
        l.site.closed = true;
        let s = parking_site(&l, now()).unwrap();
        assert_eq!((s["isOpenNow"].as_bool(), s["temporaryClosed"].as_bool()), (Some(false), Some(true)));
        assert_eq!(s["availableSpaces"], 0);
        assert_eq!(s["assignedFor"][0]["availableSpaces"], 0);
        assert_eq!(s["numberOfSpaces"], 3);
    }
}
