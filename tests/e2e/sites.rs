//! Lots as cities describe them, end to end on SQLite and PostgreSQL: the
//! site fields and bay categories round-trip through the admin API,
//! availability is counted per category (without a statement more per
//! reading), and the nearest-lots search sorts by distance.

use chrono::{SecondsFormat, Utc};
use parking_tests::{Backend, Parkd, ParkdOptions, on_both_backends, reading};
use reqwest::StatusCode;
use serde_json::{Value, json};

on_both_backends!(
    site_fields_round_trip_and_an_old_body_clears_them,
    bad_site_fields_are_refused_naming_the_field,
    availability_is_counted_per_category_at_read_time,
    nearest_lots_are_sorted_by_distance,
);

const ADMIN: &str = "admin-secret-token-for-sites";

async fn start(backend: Backend) -> Parkd {
    let mut options = ParkdOptions::new(backend);
    options.variables = vec![("admin_token".into(), ADMIN.into())];
    Parkd::start_with(options).await.unwrap()
}

async fn put(parkd: &Parkd, lot: &str, body: &Value) -> (StatusCode, Value) {
    let r = parkd
        .client
        .put(parkd.url(&format!("/api/v1/lots/{lot}")))
        .bearer_auth(ADMIN)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get_lot(parkd: &Parkd, lot: &str) -> Value {
    let r =
        parkd.client.get(parkd.url(&format!("/api/v1/lots/{lot}"))).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

async fn get_json(parkd: &Parkd, path: &str) -> (StatusCode, Value) {
    let r = parkd.client.get(parkd.url(path)).send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn send(parkd: &Parkd, id: &str, device: &str, occupied: bool, seq: u32) {
    let at = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    let r = parkd.send_reading(id, &reading(device, occupied, seq, &at)).await;
    assert!(r.status().is_success(), "reading {id}: {}", r.status());
}

/// The statements run for one reading that turns its bay occupied, once
/// what it derived was delivered (from `/metrics`, which needs the token).
async fn statements_for(parkd: &Parkd, id: &str, device: &str) -> u64 {
    let total = || async {
        parkd.settled().await;
        let r = parkd.client.get(parkd.url("/metrics")).bearer_auth(ADMIN).send().await.unwrap();
        let text = r.error_for_status().unwrap().text().await.unwrap();
        text.lines()
            .filter(|l| l.starts_with("parkd_database_statements_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>()
    };
    let before = total().await;
    send(parkd, id, device, true, 1).await;
    total().await - before
}

fn point(lat: f64, lon: f64) -> Value {
    json!({"type": "Point", "coordinates": [lon, lat]})
}

/// Every new field of the lot body, at the Brandenburg Gate.
fn full_site() -> Value {
    json!({
        "name": "Pariser Platz", "timeZone": "Europe/Berlin",
        "kind": "on_street",
        "location": point(52.516275, 13.377704),
        "outline": {"type": "Polygon", "coordinates": [[[13.3770, 52.5160], [13.3785, 52.5160], [13.3785, 52.5166], [13.3770, 52.5160]]]},
        "address": "Pariser Platz, 10117 Berlin",
        "openingHours": {"weekly": [{"days": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"], "from": "00:00", "to": "24:00"}],
                         "exceptions": [{"date": "2026-12-31", "from": "06:00", "to": "14:00"}]},
        "maxHeightCm": 200,
        "fees": {"description": "EUR 4 per hour", "url": "https://example.org/fees"},
        "operator": {"name": "Bezirksamt Mitte", "contact": "parking@example.org"},
        "bays": [
            {"id": "B1", "class": "four_wheeler", "sensor": "SITE-1", "categories": ["ev_charging", "accessible"],
             "location": point(52.51630, 13.37780)},
            {"id": "B2", "class": "four_wheeler", "sensor": "SITE-2"}
        ]
    })
}

async fn site_fields_round_trip_and_an_old_body_clears_them(backend: Backend) {
    let parkd = start(backend).await;
    let (status, body) = put(&parkd, "gate", &full_site()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    send(&parkd, "site-r1", "SITE-1", true, 1).await;

    let lot = get_lot(&parkd, "gate").await;
    let sent = full_site();
    for field in ["kind", "location", "outline", "address", "openingHours", "maxHeightCm", "fees", "operator"]
    {
        assert_eq!(lot[field], sent[field], "{field}: {lot}");
    }
    assert!(lot.get("closed").is_none(), "open unless closed: {lot}");
    assert_eq!(lot["bays"][0]["categories"], json!(["accessible", "ev_charging"]), "sorted: {lot}");
    assert_eq!(lot["bays"][0]["location"], point(52.51630, 13.37780));
    assert!(lot["bays"][1].get("categories").is_none() && lot["bays"][1].get("location").is_none());

    // Today's body (no new field) still works and clears what it leaves out;
    // the bays keep their live state.
    let (status, _) = put(
        &parkd,
        "gate",
        &json!({"name": "Pariser Platz", "bays": [
        {"id": "B1", "class": "four_wheeler", "sensor": "SITE-1"},
        {"id": "B2", "class": "four_wheeler", "sensor": "SITE-2"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let lot = get_lot(&parkd, "gate").await;
    for field in ["kind", "location", "outline", "address", "openingHours", "maxHeightCm", "fees", "operator"]
    {
        assert!(lot.get(field).is_none(), "{field} left over: {lot}");
    }
    assert!(lot["bays"][0].get("categories").is_none(), "{lot}");
    assert_eq!(lot["bays"][0]["status"], "occupied", "the bay kept its state: {lot}");

    // An operator closes the lot; GET says so and so does the availability API.
    let mut closed = full_site();
    closed["closed"] = json!(true);
    assert_eq!(put(&parkd, "gate", &closed).await.0, StatusCode::OK);
    assert_eq!(get_lot(&parkd, "gate").await["closed"], true);
    let (_, availability) = parkd.availability("gate").await;
    assert_eq!(availability["open"], false, "{availability}");
}

async fn bad_site_fields_are_refused_naming_the_field(backend: Backend) {
    let parkd = start(backend).await;
    let cases = [
        (json!({"location": point(91.0, 13.0)}), "location: GeoJSON"),
        (json!({"location": {"type": "Point", "coordinates": [13.0]}}), "location: GeoJSON"),
        (
            json!({"outline": {"type": "Polygon", "coordinates": [[[13.0, 52.0], [13.1, 52.0], [13.1, 52.1], [13.0, 52.1]]]}}),
            "outline: GeoJSON",
        ),
        (json!({"kind": "garage"}), "kind: \"garage\""),
        (json!({"maxHeightCm": -1}), "maxHeightCm"),
        (json!({"fees": {"url": "not a url"}}), "fees.url"),
        (json!({"operator": {}}), "operator.name"),
        (
            json!({"openingHours": {"weekly": [{"days": ["Mo"], "from": "08:00", "to": "18:00"}]}}),
            "openingHours.weekly",
        ),
        (json!({"closed": "no"}), "closed"),
        (
            json!({"bays": [{"id": "B1", "class": "four_wheeler", "categories": ["vip"]}]}),
            "bays[0].categories",
        ),
        (
            json!({"bays": [{"id": "B1", "class": "four_wheeler", "location": point(0.0, 200.0)}]}),
            "bays[0].location",
        ),
    ];
    for (fields, expected) in cases {
        let mut body = json!({"name": "Bad", "bays": []});
        for (k, v) in fields.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (status, answer) = put(&parkd, "bad", &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{fields}: {answer}");
        let message = answer["error"].as_str().unwrap();
        assert!(message.contains(expected), "{fields}: {message}");
    }
    let r = parkd.client.get(parkd.url("/api/v1/lots/bad")).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "nothing was stored");
    // Provisioning keeps needing the admin token.
    let r = parkd.client.put(parkd.url("/api/v1/lots/bad")).json(&full_site()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

async fn availability_is_counted_per_category_at_read_time(backend: Backend) {
    let parkd = start(backend).await;
    let bays = json!([
        {"id": "A1", "class": "four_wheeler", "sensor": "CAT-A1", "categories": ["accessible"]},
        {"id": "A2", "class": "four_wheeler", "sensor": "CAT-A2", "categories": ["accessible", "ev_charging"]},
        {"id": "E1", "class": "four_wheeler", "sensor": "CAT-E1", "categories": ["ev_charging"]},
        {"id": "P1", "class": "four_wheeler", "sensor": "CAT-P1"},
        {"id": "M1", "class": "two_wheeler", "sensor": "CAT-M1", "categories": ["permit"]}
    ]);
    assert!(put(&parkd, "cats", &json!({"name": "Categories", "bays": bays})).await.0.is_success());
    // The same bays without categories, in a lot of their own.
    let plain: Vec<Value> = bays
        .as_array()
        .unwrap()
        .iter()
        .map(|b| json!({"id": b["id"], "class": b["class"], "sensor": format!("PLAIN-{}", b["id"].as_str().unwrap())}))
        .collect();
    assert!(put(&parkd, "plain", &json!({"name": "Plain", "bays": plain})).await.0.is_success());

    // Statements per reading (and the events it derives): a bay with
    // categories costs what a bay without does.
    let plain = statements_for(&parkd, "cat-plain-1", "PLAIN-A2").await;
    let categorised = statements_for(&parkd, "cat-a2-1", "CAT-A2").await;
    assert_eq!(
        categorised, plain,
        "a reading of a categorised bay ran {categorised} statements, a plain one {plain}"
    );

    send(&parkd, "cat-a1-1", "CAT-A1", false, 1).await;
    send(&parkd, "cat-e1-1", "CAT-E1", true, 1).await;
    let (status, a) = parkd.availability("cats").await;
    assert_eq!(status, StatusCode::OK);
    let counts = |c: &str| {
        let v = &a["categories"][c];
        [&v["total"], &v["free"], &v["occupied"], &v["unknown"], &v["closed"]].map(|n| n.as_u64().unwrap())
    };
    assert_eq!(counts("accessible"), [2, 1, 1, 0, 0], "{a}");
    assert_eq!(counts("ev_charging"), [2, 0, 2, 0, 0], "{a}");
    assert_eq!(counts("permit"), [1, 0, 0, 1, 0], "{a}");
    assert_eq!(a["categories"].as_object().unwrap().len(), 3, "only categories some bay has: {a}");
    assert_eq!(a["open"], true);
    // The class counts are the counts table's, as before.
    assert_eq!(a["classes"]["four_wheeler"]["occupied"], 2, "{a}");
    let (_, plain) = parkd.availability("plain").await;
    assert!(plain.get("categories").is_none(), "no bay has a category: {plain}");
}

async fn nearest_lots_are_sorted_by_distance(backend: Backend) {
    let parkd = start(backend).await;
    let lot = |name: &str, location: Option<Value>, bays: Value| {
        let mut body = json!({"name": name, "bays": bays});
        if let Some(location) = location {
            body["location"] = location;
        }
        body
    };
    let car = |id: &str| json!({"id": id, "class": "four_wheeler"});
    let bike = |id: &str| json!({"id": id, "class": "two_wheeler", "categories": ["family"]});
    // The Brandenburg Gate, Munich's Marienplatz (503.7 km by WGS84 geodesic),
    // the Eiffel Tower (881.3 km), a lot 111 m north of the gate, and one without a location.
    let lots = [
        ("gate", lot("Gate", Some(point(52.516275, 13.377704)), json!([car("C1")]))),
        ("munich", lot("Munich", Some(point(48.137154, 11.576124)), json!([car("C1"), bike("M1")]))),
        ("paris", lot("Paris", Some(point(48.858370, 2.294481)), json!([car("C1")]))),
        ("north", lot("North", Some(point(52.517275, 13.377704)), json!([bike("M1")]))),
        ("nowhere", lot("Nowhere", None, json!([car("C1")]))),
    ];
    for (id, body) in &lots {
        assert!(put(&parkd, id, body).await.0.is_success(), "{id}");
    }
    let (status, found) = get_json(&parkd, "/api/v1/lots?near=52.516275,13.377704&radius=100000").await;
    assert_eq!(status, StatusCode::OK, "{found}");
    let ids: Vec<&str> =
        found["lots"].as_array().unwrap().iter().map(|l| l["lot"].as_str().unwrap()).collect();
    assert_eq!(ids, ["gate", "north"]);
    assert_eq!(found["lots"][0]["distanceMeters"], 0.0);
    let d = found["lots"][1]["distanceMeters"].as_f64().unwrap();
    assert!((d - 111.2).abs() < 0.5, "{d}");
    assert_eq!(found["lots"][1]["classes"]["two_wheeler"]["unknown"], 1, "{found}");

    // Around Marienplatz only Munich's lot; nothing between the cities.
    let (_, found) = get_json(&parkd, "/api/v1/lots?near=48.137154,11.576124&radius=100000").await;
    assert_eq!(found["lots"][0]["lot"], "munich");
    let (_, found) = get_json(&parkd, "/api/v1/lots?near=50.5,12.5&radius=100000").await;
    assert!(found["lots"].as_array().unwrap().is_empty(), "{found}");

    let (_, found) =
        get_json(&parkd, "/api/v1/lots?near=52.516275,13.377704&radius=1000&class=four_wheeler").await;
    let ids: Vec<&str> =
        found["lots"].as_array().unwrap().iter().map(|l| l["lot"].as_str().unwrap()).collect();
    assert_eq!(ids, ["gate"], "class filter");
    let (_, found) =
        get_json(&parkd, "/api/v1/lots?near=52.516275,13.377704&radius=1000&category=family").await;
    let ids: Vec<&str> =
        found["lots"].as_array().unwrap().iter().map(|l| l["lot"].as_str().unwrap()).collect();
    assert_eq!(ids, ["north"], "category filter");

    // The plain list is unchanged (every lot, no distance).
    let (_, all) = get_json(&parkd, "/api/v1/lots").await;
    assert_eq!(all["lots"].as_array().unwrap().len(), 5);
    assert!(all["lots"][0].get("distanceMeters").is_none());

    for (query, expected) in [
        ("near=52.5&radius=10", "`near`"),
        ("near=52.5,13.4", "`radius` is missing"),
        ("near=52.5,13.4&radius=-5", "`radius`"),
        ("near=91,13.4&radius=5", "latitude must be"),
        ("near=52.5,13.4&radius=5&category=vip", "`category`"),
        ("radius=5", "`near` is missing"),
    ] {
        let (status, answer) = get_json(&parkd, &format!("/api/v1/lots?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains(expected), "{query}: {answer}");
    }
    // Public: no token needed, any origin may read it.
    let r = parkd.client.get(parkd.url("/api/v1/lots?near=52.5,13.4&radius=50")).send().await.unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
}
