//! The open-data feeds end to end, on SQLite and PostgreSQL: DATEX II v3
//! Parking Publication light and ParkAPI parking sites checked against
//! their formats' rules (`parking_tests::open_data`), counts equal to the
//! availability API, closed lots (by an operator, by their hours) published
//! as closed, a lot without a location left out (both formats require a
//! position) but given by NGSI-LD without one, and HTTP caching and CORS.

use chrono::{Duration, Utc};
use parking_tests::open_data::{datex2_light_problems, parkapi_problems};
use parking_tests::{Backend, Parkd, on_both_backends, reading};
use reqwest::StatusCode;
use serde_json::{Value, json};

on_both_backends!(
    feeds_follow_their_formats_and_the_availability_api,
    feeds_are_cacheable_and_readable_from_any_origin,
    ngsi_ld_entities_carry_location_categories_and_kind,
);

const DATEX: &str = "/api/v1/feeds/datex2/parking-light";
const PARKAPI: &str = "/api/v1/feeds/parkapi/parking-sites";

async fn put(parkd: &Parkd, lot: &str, body: Value) {
    let r = parkd.put_lot(lot, &body).await;
    assert!(r.status().is_success(), "PUT {lot}: {}", r.text().await.unwrap());
}

async fn get(parkd: &Parkd, path: &str) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let r = parkd.client.get(parkd.url(path)).send().await.unwrap();
    let (status, headers) = (r.status(), r.headers().clone());
    (status, headers, r.json().await.unwrap_or(Value::Null))
}

async fn occupy(parkd: &Parkd, device: &str, occupied: bool, seq: u32) {
    let at = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let r = parkd.send_reading(&format!("{device}-{seq}"), &reading(device, occupied, seq, &at)).await;
    assert!(r.status().is_success());
}

fn point(lat: f64, lon: f64) -> Value {
    json!({"type": "Point", "coordinates": [lon, lat]})
}

/// Four lots: an open car park with categories, an on-street lot an
/// operator closed, a lot outside its hours (closed yesterday, today and
/// tomorrow by exceptions, so the test does not depend on the clock), and a
/// lot without a location.
async fn provision(parkd: &Parkd) {
    let bay = |id: &str, class: &str, categories: Value| json!({"id": id, "class": class, "sensor": format!("FEED-{id}"), "categories": categories});
    put(parkd, "garage", json!({
        "name": "Garage", "kind": "off_street", "location": point(52.5163, 13.3777),
        "address": "Pariser Platz 1", "maxHeightCm": 210,
        "fees": {"description": "EUR 3 per hour", "url": "https://example.org/garage"},
        "operator": {"name": "City", "contact": "parking@example.org"},
        "openingHours": {"weekly": [{"days": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"], "from": "00:00", "to": "24:00"}]},
        "bays": [bay("G1", "four_wheeler", json!(["accessible"])), bay("G2", "four_wheeler", json!(["accessible", "ev_charging"])),
                 bay("G3", "four_wheeler", json!([])), bay("G4", "two_wheeler", json!(["loading"]))]
    }))
    .await;
    put(
        parkd,
        "street",
        json!({
            "name": "Main Street", "kind": "on_street", "location": point(52.5200, 13.4050), "closed": true,
            "bays": [bay("S1", "four_wheeler", json!(["permit"])), bay("S2", "four_wheeler", json!([]))]
        }),
    )
    .await;
    let day = |d: i64| (Utc::now() + Duration::days(d)).format("%Y-%m-%d").to_string();
    put(
        parkd,
        "night",
        json!({
            "name": "Night", "kind": "off_street", "location": point(52.5000, 13.4000), "timeZone": "UTC",
            "openingHours": {"exceptions": [{"date": day(-1)}, {"date": day(0)}, {"date": day(1)}]},
            "bays": [bay("N1", "four_wheeler", json!(["family"]))]
        }),
    )
    .await;
    put(parkd, "nowhere", json!({"name": "Nowhere", "bays": [bay("X1", "four_wheeler", json!([]))]})).await;
    occupy(parkd, "FEED-G1", false, 1).await;
    occupy(parkd, "FEED-G2", true, 1).await;
    occupy(parkd, "FEED-G3", false, 1).await;
    occupy(parkd, "FEED-S1", false, 1).await;
    occupy(parkd, "FEED-N1", false, 1).await;
    occupy(parkd, "FEED-X1", false, 1).await;
}

async fn availability(parkd: &Parkd, lot: &str) -> Value {
    let (status, a) = parkd.availability(lot).await;
    assert_eq!(status, StatusCode::OK);
    a
}

/// Totals over every class of an availability answer: (total, free).
fn totals(a: &Value) -> (u64, u64) {
    a["classes"]
        .as_object()
        .unwrap()
        .values()
        .fold((0, 0), |(t, f), c| (t + c["total"].as_u64().unwrap(), f + c["free"].as_u64().unwrap()))
}

async fn feeds_follow_their_formats_and_the_availability_api(backend: Backend) {
    let parkd = Parkd::start(backend).await.unwrap();
    provision(&parkd).await;

    let (status, headers, datex) = get(&parkd, DATEX).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"].to_str().unwrap().starts_with("application/json"));
    assert_eq!(datex2_light_problems(&datex), Vec::<String>::new(), "{datex:#}");
    let sites = datex["parkingPublicationLight"]["parkingSite"].as_array().unwrap();
    let site = |id: &str| sites.iter().find(|s| s["_id"] == id).cloned();
    assert!(site("nowhere").is_none(), "a lot without a location is left out: {datex}");
    assert_eq!(sites.len(), 3);

    let (_, _, parkapi) = get(&parkd, PARKAPI).await;
    assert_eq!(parkapi_problems(&parkapi), Vec::<String>::new(), "{parkapi:#}");
    let items = parkapi["items"].as_array().unwrap();
    let item = |id: &str| items.iter().find(|s| s["uid"] == id).cloned();
    assert!(item("nowhere").is_none(), "{parkapi}");
    assert_eq!(parkapi["total_count"], 3);

    // The open garage: counts as the availability API gives them.
    let a = availability(&parkd, "garage").await;
    let (total, free) = totals(&a);
    assert_eq!((total, free), (4, 2), "{a}");
    let g = site("garage").unwrap();
    assert_eq!((g["numberOfSpaces"].as_u64(), g["availableSpaces"].as_u64()), (Some(total), Some(free)));
    assert_eq!((g["type"].as_str(), g["isOpenNow"].as_bool()), (Some("carPark"), Some(true)));
    let wheelchair =
        g["assignedFor"].as_array().unwrap().iter().find(|x| x["user"] == "wheelchairUsers").unwrap();
    assert_eq!(wheelchair["availableSpaces"], a["categories"]["accessible"]["free"]);
    let battery = g["assignedFor"].as_array().unwrap().iter().find(|x| x["fuelType"] == "battery").unwrap();
    assert_eq!(battery["availableSpaces"], a["categories"]["ev_charging"]["free"]);
    assert_eq!(g["tariffDescription"], json!(["EUR 3 per hour"]));
    let p = item("garage").unwrap();
    assert_eq!((p["capacity"].as_u64(), p["realtime_free_capacity"].as_u64()), (Some(total), Some(free)));
    assert_eq!(p["capacity_disabled"], a["categories"]["accessible"]["total"]);
    assert_eq!(p["realtime_free_capacity_disabled"], a["categories"]["accessible"]["free"]);
    assert_eq!(p["realtime_free_capacity_charging"], a["categories"]["ev_charging"]["free"]);
    assert_eq!((p["type"].as_str(), p["realtime_opening_status"].as_str()), (Some("CAR_PARK"), Some("OPEN")));
    assert_eq!((p["lat"].as_str(), p["lon"].as_str()), (Some("52.5163000"), Some("13.3777000")));
    assert_eq!(p["opening_hours"], "Mo,Tu,We,Th,Fr,Sa,Su 00:00-24:00");
    assert_eq!((p["max_height"].as_u64(), p["operator_name"].as_str()), (Some(210), Some("City")));

    // Closed by an operator, and closed by its hours: closed, nothing vacant,
    // capacity as provisioned, though the sensors see free bays.
    for (lot, operator) in [("street", true), ("night", false)] {
        let a = availability(&parkd, lot).await;
        assert_eq!(a["open"], false, "{lot}: {a}");
        assert!(totals(&a).1 >= 1, "{lot} has a free bay: {a}");
        let d = site(lot).unwrap();
        assert_eq!(
            (d["isOpenNow"].as_bool(), d["availableSpaces"].as_u64()),
            (Some(false), Some(0)),
            "{lot}: {d}"
        );
        assert_eq!(d["temporaryClosed"], operator, "{lot}");
        assert_eq!(d["numberOfSpaces"].as_u64(), Some(totals(&a).0));
        let p = item(lot).unwrap();
        assert_eq!(
            (p["realtime_opening_status"].as_str(), p["realtime_free_capacity"].as_u64()),
            (Some("CLOSED"), Some(0))
        );
    }
    assert_eq!(site("street").unwrap()["type"], "onStreet");
    assert_eq!(item("street").unwrap()["type"], "ON_STREET");
    assert_eq!(item("night").unwrap()["realtime_free_capacity_family"], 0);
}

async fn feeds_are_cacheable_and_readable_from_any_origin(backend: Backend) {
    let parkd = Parkd::start(backend).await.unwrap();
    provision(&parkd).await;
    for path in [
        DATEX,
        PARKAPI,
        "/api/v1/lots/garage/ngsi-ld/OffStreetParking",
        "/api/v1/lots/garage/ngsi-ld/ParkingSpot",
    ] {
        let (status, headers, _) = get(&parkd, path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(headers["access-control-allow-origin"], "*", "{path}");
        assert_eq!(headers["cache-control"], "public, max-age=30", "{path}");
        assert!(headers.contains_key("last-modified"), "{path}");
        let etag = headers["etag"].to_str().unwrap().to_owned();

        let r = parkd.client.get(parkd.url(path)).header("if-none-match", &etag).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED, "{path}");
        assert_eq!(r.headers()["etag"], etag.as_str());
        assert!(r.bytes().await.unwrap().is_empty());

        let r = parkd
            .client
            .request(reqwest::Method::OPTIONS, parkd.url(path))
            .header("origin", "https://app.example.org")
            .header("access-control-request-method", "GET")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT, "{path}");
        assert_eq!(r.headers()["access-control-allow-origin"], "*");
        assert!(r.headers()["access-control-allow-methods"].to_str().unwrap().contains("GET"));
        assert!(r.headers()["access-control-allow-headers"].to_str().unwrap().contains("If-None-Match"));
    }
    // A change of counts changes the tag: the old one gets the new document.
    let (_, headers, before) = get(&parkd, PARKAPI).await;
    let etag = headers["etag"].to_str().unwrap().to_owned();
    occupy(&parkd, "FEED-G3", true, 2).await;
    let r = parkd.client.get(parkd.url(PARKAPI)).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_ne!(r.headers()["etag"], etag.as_str());
    let after: Value = r.json().await.unwrap();
    let free = |doc: &Value| {
        doc["items"].as_array().unwrap().iter().find(|s| s["uid"] == "garage").unwrap()["realtime_free_capacity"].as_u64()
    };
    assert_eq!(free(&after), free(&before).map(|f| f - 1));
    // Writes are not open to the feed's route.
    let r = parkd.client.post(parkd.url(DATEX)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
}

async fn ngsi_ld_entities_carry_location_categories_and_kind(backend: Backend) {
    let parkd = Parkd::start(backend).await.unwrap();
    provision(&parkd).await;
    let (status, headers, e) = get(&parkd, "/api/v1/lots/garage/ngsi-ld/OffStreetParking").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/ld+json");
    assert_eq!(e["location"], json!({"type": "GeoProperty", "value": point(52.5163, 13.3777)}));
    assert_eq!(e["status"]["value"], json!(["open", "spacesAvailable"]));
    let a = availability(&parkd, "garage").await;
    for (category, counts) in a["categories"].as_object().unwrap() {
        assert_eq!(
            e["categorySlots"]["value"][category]["availableSpotNumber"], counts["free"],
            "{category}"
        );
        assert_eq!(e["categorySlots"]["value"][category]["totalSpotNumber"], counts["total"], "{category}");
    }
    assert_eq!(e["openingHours"]["value"], json!(["Mo,Tu,We,Th,Fr,Sa,Su 00:00-24:00"]));

    // An on-street lot is an OnStreetParking, closed; its spots refer to it.
    let (status, _, e) = get(&parkd, "/api/v1/lots/street/ngsi-ld/OnStreetParking").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (e["type"].as_str(), e["id"].as_str()),
        (Some("OnStreetParking"), Some("urn:ngsi-ld:OnStreetParking:street"))
    );
    assert_eq!(e["status"]["value"], json!(["closed"]));
    let (status, _, answer) = get(&parkd, "/api/v1/lots/street/ngsi-ld/OffStreetParking").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(answer["error"].as_str().unwrap().contains("ngsi-ld/OnStreetParking"), "{answer}");
    let (_, _, spots) = get(&parkd, "/api/v1/lots/street/ngsi-ld/ParkingSpot").await;
    let s1 =
        spots.as_array().unwrap().iter().find(|s| s["id"] == "urn:ngsi-ld:ParkingSpot:street:S1").unwrap();
    assert_eq!(s1["refParkingSite"]["object"], "urn:ngsi-ld:OnStreetParking:street");
    assert_eq!(s1["bayCategory"]["value"], json!(["permit"]));

    // A lot without a location is given without one (NGSI-LD does not require it).
    let (status, _, e) = get(&parkd, "/api/v1/lots/nowhere/ngsi-ld/OffStreetParking").await;
    assert_eq!(status, StatusCode::OK);
    assert!(e.get("location").is_none(), "{e}");
    assert_eq!(e["totalSpotNumber"]["value"], 1);
}
