//! Exports a city asks for: a lot as a FIWARE Smart Data Models
//! `OffStreetParking` entity and its bays as `ParkingSpot` entities, in
//! NGSI-LD normalized form (every attribute a `Property` or `Relationship`).
//! Attribute names are those of the public `dataModel.Parking` models.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::availability::{Counts, LotAvailability};
use crate::class::VehicleClass;
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

/// One bay as a `ParkingSpot` entity; `status` uses the same vocabulary as
/// the bay (free, occupied, unknown, closed), observed when it last changed.
pub fn parking_spot(
    lot: &str,
    bay: &str,
    class: &VehicleClass,
    status: BayStatus,
    status_changed_at: Option<DateTime<Utc>>,
) -> Value {
    let mut entity = json!({
        "id": parking_spot_id(lot, bay),
        "type": "ParkingSpot",
        "name": property(json!(bay)),
        "category": property(json!(["offStreet"])),
        "status": observed(json!(status.as_str()), status_changed_at),
        "refParkingSite": { "type": "Relationship", "object": off_street_parking_id(lot) },
        "@context": CONTEXT,
    });
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
}
