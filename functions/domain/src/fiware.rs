//! Exports a city asks for: a lot as a FIWARE Smart Data Models
//! `OffStreetParking` entity and its bays as `ParkingSpot` entities, in
//! NGSI-LD normalized form (every attribute a `Property` or `Relationship`).
//! Attribute names are those of the public `dataModel.Parking` models.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::availability::{Counts, LotAvailability};
use crate::category::BayCategory;
use crate::class::VehicleClass;
use crate::geo::Point;
use crate::site::{LotKind, SiteSpec, osm_opening_hours};
use crate::status::BayStatus;

/// The JSON-LD contexts the entities are written against.
pub const CONTEXT: [&str; 2] = [
    "https://smartdatamodels.org/context.jsonld",
    "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld",
];

/// The media type of NGSI-LD JSON-LD documents.
pub const MEDIA_TYPE: &str = "application/ld+json";

pub fn off_street_parking_id(lot: &str) -> String {
    format!("urn:ngsi-ld:OffStreetParking:{lot}")
}

/// The entity type of a lot: `OnStreetParking` for an on-street lot,
/// `OffStreetParking` otherwise (also when its kind is not given).
pub fn site_type(kind: Option<LotKind>) -> &'static str {
    match kind {
        Some(LotKind::OnStreet) => "OnStreetParking",
        _ => "OffStreetParking",
    }
}

pub fn site_id(lot: &str, kind: Option<LotKind>) -> String {
    format!("urn:ngsi-ld:{}:{lot}", site_type(kind))
}

fn geo_property(point: Point) -> Value {
    json!({ "type": "GeoProperty", "value": point.to_geojson() })
}

pub fn parking_spot_id(lot: &str, bay: &str) -> String {
    format!("urn:ngsi-ld:ParkingSpot:{lot}:{bay}")
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn property(value: Value) -> Value {
    json!({ "type": "Property", "value": value })
}

fn observed(value: Value, at: Option<DateTime<Utc>>) -> Value {
    let mut p = property(value);
    if let Some(at) = at {
        p["observedAt"] = json!(time(at));
    }
    p
}

/// `{availableSpotNumber, totalSpotNumber, occupiedSpotNumber}` of some bays.
/// Closed bays are neither available nor occupied; unknown ones are not
/// available (no sensor vouches for them).
fn slots(c: &Counts) -> Value {
    json!({ "availableSpotNumber": c.free, "totalSpotNumber": c.total, "occupiedSpotNumber": c.occupied })
}

/// A lot's live availability as an `OffStreetParking` entity: totals over
/// every class, `fourWheelerSlots` and `twoWheelerSlots` per class (other
/// classes in `unclassifiedSlots`), and `occupancyModified` when a bay last
/// changed.
pub fn off_street_parking(name: &str, availability: &LotAvailability) -> Value {
    let mut all = Counts::default();
    let (mut four, mut two, mut other) = (Counts::default(), Counts::default(), Counts::default());
    for (class, c) in &availability.classes {
        let into = if *class == VehicleClass::four_wheeler() {
            &mut four
        } else if *class == VehicleClass::two_wheeler() {
            &mut two
        } else {
            &mut other
        };
        for target in [into, &mut all] {
            target.total += c.total;
            target.free += c.free;
            target.occupied += c.occupied;
            target.unknown += c.unknown;
            target.closed += c.closed;
        }
    }
    let at = availability.updated_at;
    let mut allowed = Vec::new();
    if four.total > 0 {
        allowed.push("car");
    }
    if two.total > 0 {
        allowed.push("motorcycle");
    }
    let occupancy = if all.total == 0 { 0.0 } else { f64::from(all.occupied) / f64::from(all.total) };
    let mut entity = json!({
        "id": off_street_parking_id(&availability.lot),
        "type": "OffStreetParking",
        "name": property(json!(name)),
        "category": property(json!(["offStreet"])),
        "allowedVehicleType": property(json!(allowed)),
        "totalSpotNumber": property(json!(all.total)),
        "availableSpotNumber": observed(json!(all.free), at),
        "occupiedSpotNumber": observed(json!(all.occupied), at),
        "occupancy": observed(json!(occupancy), at),
        "fourWheelerSlots": observed(slots(&four), at),
        "twoWheelerSlots": observed(slots(&two), at),
        "unclassifiedSlots": observed(slots(&other), at),
        "@context": CONTEXT,
    });
    if let Some(at) = at {
        entity["occupancyModified"] = property(json!(time(at)));
    }
    entity
}

/// A lot as its `OffStreetParking` or `OnStreetParking` entity: the
/// counts of [`off_street_parking`] plus what the lot's site says (location
/// as a GeoProperty, address, opening hours, height limit, operator), its
/// `status` (`open` or `closed`, with `spacesAvailable`/`full` while open)
/// and `categorySlots`: the counts per bay category.
pub fn parking_site(name: &str, availability: &LotAvailability, site: &SiteSpec, open: bool) -> Value {
    let mut entity = off_street_parking(name, availability);
    let kind = site.kind;
    entity["id"] = json!(site_id(&availability.lot, kind));
    entity["type"] = json!(site_type(kind));
    entity["category"] =
        property(json!([if kind == Some(LotKind::OnStreet) { "onStreet" } else { "offStreet" }]));
    if let Some(location) = site.location {
        entity["location"] = geo_property(location);
    }
    if let Some(address) = &site.address {
        entity["address"] = property(json!({ "streetAddress": address }));
    }
    if let Some(hours) = &site.opening_hours {
        entity["openingHours"] = property(json!([osm_opening_hours(Some(hours))]));
    }
    if let Some(cm) = site.max_height_cm {
        entity["maximumAllowedHeight"] = property(json!(f64::from(cm) / 100.0));
    }
    if let Some(operator) = &site.operator {
        entity["provider"] = property(json!({ "name": operator.name, "contact": operator.contact }));
    }
    let free = entity["availableSpotNumber"]["value"].as_u64().unwrap_or(0);
    let status = match (open, free) {
        (false, _) => vec!["closed"],
        (true, 0) => vec!["open", "full"],
        (true, _) => vec!["open", "spacesAvailable"],
    };
    entity["status"] = property(json!(status));
    if !availability.categories.is_empty() {
        let per: serde_json::Map<String, Value> = availability
            .categories
            .iter()
            .map(|(c, counts)| (c.as_str().to_owned(), slots(counts)))
            .collect();
        entity["categorySlots"] = observed(Value::Object(per), availability.updated_at);
    }
    entity
}

/// One bay as a `ParkingSpot` entity; `status` uses the same vocabulary as
/// the bay (free, occupied, unknown, closed), observed when it last changed.
pub fn parking_spot(
    lot: &str,
    bay: &str,
    class: &VehicleClass,
    status: BayStatus,
    status_changed_at: Option<DateTime<Utc>>,
) -> Value {
    parking_spot_at(
        lot,
        None,
        &SpotSite { id: bay, class, status, status_changed_at, location: None, categories: &[] },
    )
}

/// A bay as [`parking_spot_at`] shows it.
pub struct SpotSite<'a> {
    pub id: &'a str,
    pub class: &'a VehicleClass,
    pub status: BayStatus,
    pub status_changed_at: Option<DateTime<Utc>>,
    pub location: Option<Point>,
    pub categories: &'a [BayCategory],
}

/// One bay as a `ParkingSpot` of its lot (of the lot's kind), with its
/// location and categories when it has them.
pub fn parking_spot_at(lot: &str, kind: Option<LotKind>, bay: &SpotSite<'_>) -> Value {
    let street = if kind == Some(LotKind::OnStreet) { "onStreet" } else { "offStreet" };
    let mut entity = json!({
        "id": parking_spot_id(lot, bay.id),
        "type": "ParkingSpot",
        "name": property(json!(bay.id)),
        "category": property(json!([street])),
        "status": observed(json!(bay.status.as_str()), bay.status_changed_at),
        "refParkingSite": { "type": "Relationship", "object": site_id(lot, kind) },
        "@context": CONTEXT,
    });
    if let Some(location) = bay.location {
        entity["location"] = geo_property(location);
    }
    if !bay.categories.is_empty() {
        entity["bayCategory"] = property(json!(bay.categories));
    }
    let class = bay.class;
    // The vehicle the bay is for, in the models' vehicle type vocabulary.
    let vehicle = if *class == VehicleClass::four_wheeler() {
        Some("car")
    } else if *class == VehicleClass::two_wheeler() {
        Some("motorcycle")
    } else {
        None
    };
    if let Some(vehicle) = vehicle {
        entity["allowedVehicleType"] = property(json!([vehicle]));
    }
    entity
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::availability::{BayCount, summarise};
    use chrono::TimeZone;

    #[test]
    fn a_lot_is_an_off_street_parking_entity_with_slots_per_class() {
        let (car, bike) = (VehicleClass::four_wheeler(), VehicleClass::two_wheeler());
        let at = Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap();
        let bays = [
            (&car, BayStatus::Free),
            (&car, BayStatus::Occupied),
            (&car, BayStatus::Unknown),
            (&bike, BayStatus::Free),
        ];
        let availability = summarise(
            "north",
            bays.iter().map(|(class, status)| BayCount {
                zone: None,
                class,
                status: *status,
                changed_at: Some(at),
            }),
        );
        let e = off_street_parking("North Garage", &availability);
        assert_eq!(e["id"], "urn:ngsi-ld:OffStreetParking:north");
        assert_eq!(e["type"], "OffStreetParking");
        assert_eq!(e["name"]["value"], "North Garage");
        assert_eq!(e["totalSpotNumber"]["value"], 4);
        assert_eq!(e["availableSpotNumber"]["value"], 2);
        assert_eq!(e["availableSpotNumber"]["observedAt"], "2026-11-25T10:00:00.000Z");
        assert_eq!(
            e["fourWheelerSlots"]["value"],
            json!({ "availableSpotNumber": 1, "totalSpotNumber": 3, "occupiedSpotNumber": 1 })
        );
        assert_eq!(e["twoWheelerSlots"]["value"]["availableSpotNumber"], 1);
        assert_eq!(
            e["occupancyModified"],
            json!({ "type": "Property", "value": "2026-11-25T10:00:00.000Z" })
        );
        assert_eq!(e["allowedVehicleType"]["value"], json!(["car", "motorcycle"]));
        assert_eq!(e["@context"][0], CONTEXT[0]);
    }

    #[test]
    fn a_bay_is_a_parking_spot_of_its_lot() {
        let e = parking_spot("north", "C1", &VehicleClass::four_wheeler(), BayStatus::Occupied, None);
        assert_eq!(e["id"], "urn:ngsi-ld:ParkingSpot:north:C1");
        assert_eq!(e["status"], json!({ "type": "Property", "value": "occupied" }));
        assert_eq!(e["refParkingSite"]["object"], "urn:ngsi-ld:OffStreetParking:north");
        assert_eq!(e["allowedVehicleType"]["value"], json!(["car"]));
    }

    #[test]
    fn an_on_street_lot_is_an_on_street_parking_entity_with_location_and_categories() {
        let car = VehicleClass::four_wheeler();
        let mut availability = summarise(
            "main-st",
            [BayCount { zone: None, class: &car, status: BayStatus::Free, changed_at: None }],
        );
        availability.categories =
            [(BayCategory::EvCharging, Counts { total: 1, free: 1, ..Counts::default() })].into();
        let site = SiteSpec {
            kind: Some(LotKind::OnStreet),
            location: Point::new(52.5, 13.4),
            ..SiteSpec::default()
        };
        let e = parking_site("Main St", &availability, &site, true);
        assert_eq!(e["type"], "OnStreetParking");
        assert_eq!(e["id"], "urn:ngsi-ld:OnStreetParking:main-st");
        assert_eq!(e["category"]["value"], json!(["onStreet"]));
        assert_eq!(
            e["location"],
            json!({"type": "GeoProperty", "value": {"type": "Point", "coordinates": [13.4, 52.5]}})
        );
        assert_eq!(e["status"]["value"], json!(["open", "spacesAvailable"]));
        assert_eq!(e["categorySlots"]["value"]["ev_charging"]["availableSpotNumber"], 1);
        let closed = parking_site("Main St", &availability, &site, false);
        assert_eq!(closed["status"]["value"], json!(["closed"]));
        let unlocated = parking_site("Main St", &availability, &SiteSpec::default(), true);
        assert!(unlocated.get("location").is_none());
        assert_eq!(unlocated["type"], "OffStreetParking");
        let spot = parking_spot_at(
            "main-st",
            Some(LotKind::OnStreet),
            &SpotSite {
                id: "S1",
                class: &car,
                status: BayStatus::Free,
                status_changed_at: None,
                location: Point::new(52.5, 13.4),
                categories: &[BayCategory::EvCharging],
            },
        );
        assert_eq!(spot["refParkingSite"]["object"], "urn:ngsi-ld:OnStreetParking:main-st");
        assert_eq!(spot["bayCategory"]["value"], json!(["ev_charging"]));
        assert_eq!(spot["location"]["type"], "GeoProperty");
    }
}
