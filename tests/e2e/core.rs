//! The core, end to end: the real `.wasm` components in parkd, over HTTP.
//! Every scenario runs on SQLite and on PostgreSQL: one storage suite, two
//! dialects.

use parking_tests::{Backend, Parkd, ParkdOptions, lot_spec, manifest_with_recorder, reading};
use reqwest::StatusCode;
use serde_json::{Value, json};

use parking_tests::on_both_backends;

on_both_backends!(
    provisioning_reports_every_bay_unknown,
    a_reading_changes_the_bay_and_answers_derived_events,
    redelivered_events_change_nothing,
    older_readings_never_overwrite_newer_state,
    bad_events_are_rejected_with_a_reason,
    structured_mode_events_are_accepted,
    unknown_lots_are_404,
    replacing_a_lot_keeps_live_state_and_sensors_are_unique,
    concurrent_readings_keep_counts_consistent,
    derived_events_reach_the_components_subscribed_to_their_type,
);

fn class_counts(availability: &Value, class: &str) -> Value {
    availability["classes"][class].clone()
}

fn counts(total: u64, free: u64, occupied: u64, unknown: u64, closed: u64) -> Value {
    json!({ "total": total, "free": free, "occupied": occupied, "unknown": unknown, "closed": closed })
}

async fn provisioning_reports_every_bay_unknown(backend: Backend) {
    let parkd = Parkd::start(backend).await.unwrap();
    let r = parkd.put_lot("north", &lot_spec("North Garage", "N", 3, 2)).await;
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    let (status, a) = parkd.availability("north").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(a["lot"], "north");
    assert_eq!(class_counts(&a, "four_wheeler"), counts(3, 0, 0, 3, 0));
    assert_eq!(class_counts(&a, "two_wheeler"), counts(2, 0, 0, 2, 0));
    let zones = a["zones"].as_array().unwrap();
    assert_eq!(zones.len(), 2);
    assert_eq!(zones[0]["zone"], "L1");
    assert_eq!(zones[0]["classes"]["four_wheeler"], counts(3, 0, 0, 3, 0));
    assert_eq!(zones[1]["zone"], "M");

    let lots: Value = parkd.client.get(parkd.url("/api/v1/lots")).send().await.unwrap().json().await.unwrap();
    assert_eq!(lots["lots"][0]["lot"], "north");
    assert_eq!(lots["lots"][0]["name"], "North Garage");
}

async fn a_reading_changes_the_bay_and_answers_derived_events(backend: Backend) {
    let parkd = Parkd::start(backend).await.unwrap();
    parkd.put_lot("north", &lot_spec("North", "N", 3, 2)).await;
    let r = parkd.send_reading("e-1", &reading("N-C0", true, 1, "2026-11-25T10:00:00Z")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/cloudevents-batch+json");
    let events: Vec<Value> = r.json().await.unwrap();
    assert_eq!(events.len(), 2);
    let slot = &events[0];
    assert_eq!(slot["type"], "io.parking.slot.changed.v1");
    assert_eq!(slot["specversion"], "1.0");
    assert_eq!(slot["subject"], "north/C0");
    assert_eq!(slot["data"]["previous"], "unknown");
    assert_eq!(slot["data"]["status"], "occupied");
    let availability = &events[1];
    assert_eq!(availability["type"], "io.parking.availability.changed.v1");
    assert_eq!(availability["data"]["zone"], "L1");
    assert_eq!(availability["data"]["class"], "four_wheeler");
    assert_eq!(availability["data"]["counts"], counts(3, 0, 1, 2, 0));

    // A bike leaves its bay: only two-wheeler counts move.
    let r = parkd.send_reading("e-2", &reading("N-M1", false, 1, "2026-11-25T10:00:05Z")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let (_, a) = parkd.availability("north").await;
    assert_eq!(class_counts(&a, "four_wheeler"), counts(3, 0, 1, 2, 0));
    assert_eq!(class_counts(&a, "two_wheeler"), counts(2, 1, 0, 1, 0));
    // The newest change in the lot: provisioning or this reading, whichever came later.
    let updated: chrono::DateTime<chrono::Utc> = a["updatedAt"].as_str().unwrap().parse().unwrap();
    assert!(updated >= "2026-11-25T10:00:05Z".parse::<chrono::DateTime<chrono::Utc>>().unwrap(), "{a}");
}

async fn redelivered_events_change_nothing(backend: Backend) {
    let parkd = Parkd::start(backend).await.unwrap();
    parkd.put_lot("north", &lot_spec("North", "N", 2, 0)).await;
    let first = parkd.send_reading("same-id", &reading("N-C0", true, 5, "2026-11-25T10:00:00Z")).await;
    assert_eq!(first.status(), StatusCode::OK);
    let (_, before) = parkd.availability("north").await;

    // The same event again (Knative redelivery): accepted, nothing derived.
    let again = parkd.send_reading("same-id", &reading("N-C0", true, 5, "2026-11-25T10:00:00Z")).await;
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    assert_eq!(again.headers()["parking-outcome"], "duplicate-event");
    // The same radio frame under a new event id (two gateways): a duplicate frame.
    let relayed = parkd.send_reading("other-id", &reading("N-C0", true, 5, "2026-11-25T10:00:00Z")).await;
    assert_eq!(relayed.status(), StatusCode::ACCEPTED);
    assert_eq!(relayed.headers()["parking-outcome"], "duplicate-frame");
    let (_, after) = parkd.availability("north").await;
    assert_eq!(before, after);
}

async fn older_readings_never_overwrite_newer_state(backend: Backend) {
    let parkd = Parkd::start(backend).await.unwrap();
    parkd.put_lot("north", &lot_spec("North", "N", 1, 0)).await;
    parkd.send_reading("e-new", &reading("N-C0", false, 10, "2026-11-25T10:05:00Z")).await;
    let late = parkd.send_reading("e-old", &reading("N-C0", true, 9, "2026-11-25T10:00:00Z")).await;
    assert_eq!(late.status(), StatusCode::ACCEPTED);
    assert_eq!(late.headers()["parking-outcome"], "stale");
    let (_, a) = parkd.availability("north").await;
    assert_eq!(class_counts(&a, "four_wheeler"), counts(1, 1, 0, 0, 0));

    // After a rejoin the frame counter restarts; the newer observation wins.
    let rejoined = parkd.send_reading("e-rejoin", &reading("N-C0", true, 1, "2026-11-25T11:00:00Z")).await;
    assert_eq!(rejoined.status(), StatusCode::OK);
    let (_, a) = parkd.availability("north").await;
    assert_eq!(class_counts(&a, "four_wheeler"), counts(1, 0, 1, 0, 0));
}

async fn bad_events_are_rejected_with_a_reason(backend: Backend) {
    let parkd = Parkd::start(backend).await.unwrap();
    parkd.put_lot("north", &lot_spec("North", "N", 1, 0)).await;
    let error_of = |body: Value| body["error"].as_str().unwrap_or_default().to_owned();

    // An unknown device.
    let r = parkd.send_reading("e-x", &reading("NOBODY", true, 1, "2026-11-25T10:00:00Z")).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(error_of(r.json().await.unwrap()).contains("NOBODY"));

    // A malformed reading names the field.
    let r = parkd.send_reading("e-y", &json!({ "device": "N-C0", "occupied": "yes" })).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(error_of(r.json().await.unwrap()).contains("occupied"));

    // Not a CloudEvent at all.
    let r = parkd.client.post(parkd.url("/api/v1/events")).body("hello").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // A type nobody subscribes to.
    let r = parkd
        .client
        .post(parkd.url("/api/v1/events"))
        .header("ce-specversion", "1.0")
        .header("ce-id", "t-1")
        .header("ce-source", "/x")
        .header("ce-type", "io.parking.unknown.v1")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(error_of(r.json().await.unwrap()).contains("io.parking.unknown.v1"));

    // An unknown payload format.
    let r = parkd
        .client
        .post(parkd.url("/api/v1/events"))
        .header("ce-specversion", "1.0")
        .header("ce-id", "f-1")
        .header("ce-source", "/x")
        .header("ce-type", "io.parking.sensor.uplink.v1")
        .header("ce-format", "vendor-xyz")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(error_of(r.json().await.unwrap()).contains("vendor-xyz"));

    // Nothing of that touched state.
    let (_, a) = parkd.availability("north").await;
    assert_eq!(class_counts(&a, "four_wheeler"), counts(1, 0, 0, 1, 0));
}

async fn structured_mode_events_are_accepted(backend: Backend) {
    let parkd = Parkd::start(backend).await.unwrap();
    parkd.put_lot("north", &lot_spec("North", "N", 1, 0)).await;
    let event = json!({
        "specversion": "1.0", "id": "s-1", "source": "/parking/bridge",
        "type": "io.parking.sensor.uplink.v1", "subject": "N-C0", "format": "parking-json",
        "datacontenttype": "application/json",
        "data": { "device": "N-C0", "occupied": true, "observedAt": "2026-11-25T10:00:00Z" }
    });
    let r = parkd.send_event(&event).await;
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);
    let (_, a) = parkd.availability("north").await;
    assert_eq!(class_counts(&a, "four_wheeler"), counts(1, 0, 1, 0, 0));
}

async fn unknown_lots_are_404(backend: Backend) {
    let parkd = Parkd::start(backend).await.unwrap();
    let (status, body) = parkd.availability("nowhere").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].as_str().unwrap().contains("nowhere"));
}

async fn replacing_a_lot_keeps_live_state_and_sensors_are_unique(backend: Backend) {
    let parkd = Parkd::start(backend).await.unwrap();
    parkd.put_lot("north", &lot_spec("North", "N", 2, 0)).await;
    parkd.send_reading("e-1", &reading("N-C0", true, 1, "2026-11-25T10:00:00Z")).await;
    // Same bays plus one: C0 keeps its state.
    let r = parkd.put_lot("north", &lot_spec("North v2", "N", 3, 0)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let (_, a) = parkd.availability("north").await;
    assert_eq!(class_counts(&a, "four_wheeler"), counts(3, 0, 1, 2, 0));

    // Another lot may not take a sensor that is in use.
    let r = parkd
        .put_lot(
            "south",
            &json!({ "name": "South", "bays": [{ "id": "S1", "class": "four_wheeler", "sensor": "N-C1" }] }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let body: Value = r.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("N-C1"), "{body}");
    // ... and the failed PUT left nothing behind.
    assert_eq!(parkd.availability("south").await.0, StatusCode::NOT_FOUND);
}

async fn concurrent_readings_keep_counts_consistent(backend: Backend) {
    let parkd = std::sync::Arc::new(Parkd::start(backend).await.unwrap());
    parkd.put_lot("north", &lot_spec("North", "N", 20, 10)).await;
    let mut tasks = Vec::new();
    for round in 0..3u32 {
        for bay in 0..30usize {
            let parkd = parkd.clone();
            let device = if bay < 20 { format!("N-C{bay}") } else { format!("N-M{}", bay - 20) };
            tasks.push(tokio::spawn(async move {
                let occupied = (bay + round as usize).is_multiple_of(2);
                let at = format!("2026-11-25T10:0{round}:00Z");
                let r = parkd
                    .send_reading(&format!("c-{round}-{bay}"), &reading(&device, occupied, round + 1, &at))
                    .await;
                assert!(r.status().is_success(), "{}", r.status());
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (_, a) = parkd.availability("north").await;
    // The last round (round 2) decides: bays with an even index+2 are occupied.
    let cars_occupied = (0..20).filter(|b| (b + 2usize).is_multiple_of(2)).count() as u64;
    let bikes_occupied = (20..30).filter(|b| (b + 2usize).is_multiple_of(2)).count() as u64;
    assert_eq!(class_counts(&a, "four_wheeler"), counts(20, 20 - cars_occupied, cars_occupied, 0, 0));
    assert_eq!(class_counts(&a, "two_wheeler"), counts(10, 10 - bikes_occupied, bikes_occupied, 0, 0));
}

async fn derived_events_reach_the_components_subscribed_to_their_type(backend: Backend) {
    // A recorder subscribed to slot changes only, as a Knative Trigger filtered by type.
    let dir = tempfile::tempdir().unwrap();
    let manifest = manifest_with_recorder(dir.path(), &["io.parking.slot.changed.v1"]).unwrap();
    let parkd = Parkd::start_with(ParkdOptions { manifest: Some(manifest), ..ParkdOptions::new(backend) })
        .await
        .unwrap();
    parkd.put_lot("north", &lot_spec("North", "N", 2, 0)).await;
    let recorded = || async {
        parkd.settled().await;
        let r = parkd.client.get(parkd.url("/test/recorded")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json::<Vec<Value>>().await.unwrap()
    };
    assert!(recorded().await.is_empty());

    parkd.send_reading("e-1", &reading("N-C0", true, 1, "2026-11-25T10:00:00Z")).await;
    parkd.send_reading("e-1", &reading("N-C0", true, 1, "2026-11-25T10:00:00Z")).await; // redelivered
    parkd.send_reading("e-2", &reading("N-C1", false, 1, "2026-11-25T10:00:01Z")).await;
    let events: Vec<Value> = recorded()
        .await
        .into_iter()
        .map(|e| json!({ "type": e["type"], "id": e["id"], "subject": e["subject"] }))
        .collect();
    assert_eq!(
        events,
        vec![
            json!({ "type": "io.parking.slot.changed.v1", "id": "e-1/slot", "subject": "north/C0" }),
            json!({ "type": "io.parking.slot.changed.v1", "id": "e-2/slot", "subject": "north/C1" }),
        ],
        "each change delivered once, and only the subscribed type"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_requires_the_token_when_one_is_set() {
    let parkd = Parkd::start_with(ParkdOptions {
        variables: vec![("admin_token".into(), "s3cret".into())],
        ..ParkdOptions::new(Backend::Sqlite)
    })
    .await
    .unwrap();
    let spec = lot_spec("North", "N", 1, 0);
    let r = parkd.put_lot("north", &spec).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = parkd
        .client
        .put(parkd.url("/api/v1/lots/north"))
        .bearer_auth("wrong")
        .json(&spec)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = parkd
        .client
        .put(parkd.url("/api/v1/lots/north"))
        .bearer_auth("s3cret")
        .json(&spec)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_is_a_retryable_503() {
    // Nothing listens on port 1: every component's PostgreSQL connection fails.
    let parkd = Parkd::start_with(ParkdOptions {
        variables: vec![
            ("database_url".into(), "postgres://parking@127.0.0.1:1/parking".into()),
            ("database_host".into(), "127.0.0.1:1".into()),
        ],
        ..ParkdOptions::new(Backend::Sqlite)
    })
    .await
    .unwrap();
    let r = parkd.send_reading("e-1", &reading("N-C0", true, 1, "2026-11-25T10:00:00Z")).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().contains_key("retry-after"));
    let (status, _) = parkd.availability("north").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outside_allowed_outbound_hosts_is_refused() {
    // database_host stays the default (127.0.0.1:5432), so port 1 is not allowed.
    let parkd = Parkd::start_with(ParkdOptions {
        variables: vec![("database_url".into(), "postgres://parking@127.0.0.1:1/parking".into())],
        ..ParkdOptions::new(Backend::Sqlite)
    })
    .await
    .unwrap();
    let r = parkd.send_reading("e-1", &reading("N-C0", true, 1, "2026-11-25T10:00:00Z")).await;
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body: Value = r.json().await.unwrap();
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("postgres://127.0.0.1:1") && error.contains("allowed_outbound_hosts"), "{error}");
}

/// Posts an uplink in `format` (binary mode), as the bridge would.
async fn post_uplink(parkd: &Parkd, id: &str, format: &str, body: &Value) -> reqwest::Response {
    parkd
        .client
        .post(parkd.url("/api/v1/events"))
        .header("ce-specversion", "1.0")
        .header("ce-id", id)
        .header("ce-source", "/parking/bridge/mqtt")
        .header("ce-type", "io.parking.sensor.uplink.v1")
        .header("ce-format", format)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

fn lorawan_lot() -> Value {
    json!({ "name": "LoRa", "bays": [
        { "id": "P1", "zone": "L1", "class": "four_wheeler", "sensor": "FCD6BD00001936B0", "model": "bosch-pls" },
        { "id": "P2", "zone": "L1", "class": "four_wheeler", "sensor": "70b3d5e75e000002", "model": "nwave" },
        { "id": "P3", "zone": "L1", "class": "four_wheeler", "sensor": "70b3d5e75e000003" },
    ]})
}

fn ttn_uplink(dev_eui: &str, f_cnt: u32, port: u8, bytes_b64: &str, at: &str) -> Value {
    json!({
        "end_device_ids": { "device_id": "pls-bay", "dev_eui": dev_eui, "application_ids": { "application_id": "lots" } },
        "received_at": at,
        "uplink_message": { "f_port": port, "f_cnt": f_cnt, "frm_payload": bytes_b64, "received_at": at }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lorawan_uplinks_are_decoded_with_the_bays_sensor_model() {
    let parkd = Parkd::start(Backend::Sqlite).await.unwrap();
    let r = parkd.put_lot("lora", &lorawan_lot()).await;
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);

    // The Things Stack, Bosch PLS status frame on port 1: 0x01 = occupied.
    // The DevEUI is matched whatever its case.
    let r = post_uplink(
        &parkd,
        "ttn-1",
        "ttn-v3",
        &ttn_uplink("fcd6bd00001936b0", 10, 1, "AQ==", "2026-11-25T10:00:00Z"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);

    // ChirpStack, Nwave heartbeat on port 2 (free, 3.344 V, -10 °C): alive, status unchanged.
    let heartbeat = json!({
        "deviceInfo": { "devEui": "70b3d5e75e000002", "deviceName": "nwave-2" },
        "fCnt": 3, "fPort": 2, "data": "ANPYAFkL", "time": "2026-11-25T10:00:02Z"
    });
    let r = post_uplink(&parkd, "cs-1", "chirpstack-v4", &heartbeat).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED, "{:?}", r.text().await);
    assert_eq!(r.headers()["parking-outcome"], "heartbeat");
    let (_, a) = parkd.availability("lora").await;
    assert_eq!(class_counts(&a, "four_wheeler"), counts(3, 0, 1, 2, 0));
    let lot: Value =
        parkd.client.get(parkd.url("/api/v1/lots/lora")).send().await.unwrap().json().await.unwrap();
    let p2 = &lot["bays"][1];
    assert_eq!(p2["status"], "unknown", "a heartbeat never sets status: {p2}");
    assert!(p2["lastSeenAt"].is_string(), "but it proves the sensor alive: {p2}");
    assert!((p2["battery"].as_f64().unwrap() - 3.344).abs() < 1e-9, "{p2}");

    // Raw bytes for a bay whose sensor model is unknown cannot be decoded.
    let r = post_uplink(
        &parkd,
        "ttn-2",
        "ttn-v3",
        &ttn_uplink("70b3d5e75e000003", 1, 1, "AQ==", "2026-11-25T10:00:03Z"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("model"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_sensor_model_is_refused_at_provisioning() {
    let parkd = Parkd::start(Backend::Sqlite).await.unwrap();
    let r = parkd
        .put_lot("x", &json!({ "name": "X", "bays": [{ "id": "B1", "class": "four_wheeler", "sensor": "D1", "model": "acme-9000" }] }))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("acme-9000"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_one_component_on_every_path_as_a_knative_service_does() {
    // The admin API from a full parkd, then sensor-event alone on the same database.
    let database = parking_tests::fresh_postgres_database().await.unwrap();
    let admin = Parkd::start_with(ParkdOptions {
        database: Some(database.clone()),
        ..ParkdOptions::new(Backend::Postgres)
    })
    .await
    .unwrap();
    admin.put_lot("north", &lot_spec("North", "N", 1, 0)).await;
    let service = Parkd::start_with(ParkdOptions {
        database: Some(database),
        components: vec!["sensor-event".into()],
        serve_all_paths: true,
        ..ParkdOptions::new(Backend::Postgres)
    })
    .await
    .unwrap();
    // A KafkaSource or Trigger delivers to `/`.
    let r = service
        .client
        .post(service.url("/"))
        .header("ce-specversion", "1.0")
        .header("ce-id", "k-1")
        .header("ce-source", "/parking/bridge/mqtt")
        .header("ce-type", "io.parking.sensor.uplink.v1")
        .header("ce-format", "parking-json")
        .header("content-type", "application/json")
        .body(reading("N-C0", true, 1, "2026-11-25T10:00:00Z").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);
    // Only sensor-event is there (it takes POSTed events only): the read API is another Service.
    assert_eq!(service.availability("north").await.0, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(class_counts(&admin.availability("north").await.1, "four_wheeler"), counts(1, 0, 1, 0, 0));
}
