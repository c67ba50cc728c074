//! Display terminals end to end: provisioning through the admin API, and
//! terminal-push publishing retained frames to a real Mosquitto when a
//! sensor reading arrives over MQTT. Storage scenarios run on SQLite and on
//! PostgreSQL.

use std::time::Duration;

use parkd::up::MqttMode;
use parking_tests::mosquitto::Mosquitto;
use parking_tests::terminals::{next_matching, subscribe, token_for};
use parking_tests::{Backend, Parkd, ParkdOptions, lot_spec, reading};
use reqwest::StatusCode;
use rumqttc::QoS;
use serde_json::{Value, json};

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Backend::Sqlite).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Backend::Postgres).await })*
        }
    };
}

on_both_backends!(
    terminals_are_provisioned_and_refused_with_reasons,
    a_reading_over_mqtt_publishes_retained_frames_to_the_terminals_that_show_it,
    a_redelivered_change_publishes_the_same_frame_again,
);

async fn parkd_with_broker(backend: Backend, broker: &Mosquitto) -> Parkd {
    Parkd::start_with(ParkdOptions { mqtt: MqttMode::External(broker.url()), ..ParkdOptions::new(backend) })
        .await
        .unwrap()
}

async fn terminals_are_provisioned_and_refused_with_reasons(backend: Backend) {
    let parkd = Parkd::start(backend).await.unwrap();
    parkd.put_lot("north", &lot_spec("North", "N", 2, 1)).await;

    let r = parkd.put_terminal("T1", "north", Some(&["L1"])).await;
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    let r = parkd.put_terminal("T1", "north", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let got: Value =
        parkd.client.get(parkd.url("/api/v1/terminals/T1")).send().await.unwrap().json().await.unwrap();
    assert_eq!(got["lot"], "north");
    assert_eq!(got["zones"], Value::Null, "the replace showed every zone");
    assert!(!got.to_string().contains(&token_for("T1")), "the token is never shown: {got}");

    let put = |body: Value| {
        let request = parkd.client.put(parkd.url("/api/v1/terminals/T2")).json(&body);
        async move {
            let r = request.send().await.unwrap();
            let status = r.status();
            (
                status,
                r.json::<Value>().await.unwrap_or(Value::Null)["error"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        }
    };
    let (status, error) = put(json!({ "token": token_for("T2") })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error.contains("`lot`"), "{error}");
    let (status, error) = put(json!({ "lot": "north", "classes": ["Cars"], "token": token_for("T2") })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error.contains("`classes[0]`"), "{error}");
    let (status, error) = put(json!({ "lot": "north", "token": "short" })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error.contains("`token`"), "{error}");
    let (status, error) = put(json!({ "lot": "south", "token": token_for("T2") })).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(error.contains("south"), "{error}");
    let (status, error) = put(json!({ "lot": "north", "token": token_for("T1") })).await;
    assert_eq!(status, StatusCode::CONFLICT, "a token belongs to one terminal: {error}");

    let r = parkd.client.delete(parkd.url("/api/v1/terminals/T1")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = parkd.client.get(parkd.url("/api/v1/terminals/T1")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = parkd.client.delete(parkd.url("/api/v1/terminals/T1")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

async fn a_reading_over_mqtt_publishes_retained_frames_to_the_terminals_that_show_it(backend: Backend) {
    let broker = Mosquitto::start().unwrap();
    let parkd = parkd_with_broker(backend, &broker).await;
    parkd.put_lot("north", &lot_spec("North", "N", 3, 2)).await;
    assert_eq!(parkd.put_terminal("L1-SIGN", "north", Some(&["L1"])).await.status(), StatusCode::CREATED);
    assert_eq!(parkd.put_terminal("ENTRANCE", "north", None).await.status(), StatusCode::CREATED);
    let (_sub, mut frames) = subscribe(broker.port, "parking/terminals/+/frame").await.unwrap();

    let (sensor, _) = subscribe(broker.port, "unused/none").await.unwrap();
    let free = reading("N-C0", false, 1, "2026-11-25T10:00:00Z");
    sensor.publish("parking/uplink/N-C0", QoS::AtLeastOnce, false, free.to_string()).await.unwrap();

    let wait = Duration::from_secs(20);
    let mut both = Vec::new();
    for _ in 0..2 {
        both.push(next_matching(&mut frames, wait, |_| true).await.unwrap());
    }
    both.sort_by(|a, b| a.topic.cmp(&b.topic));
    let (entrance, sign) = (&both[0], &both[1]);
    assert_eq!(sign.topic, "parking/terminals/L1-SIGN/frame");
    let frame = sign.json();
    assert_eq!(frame["seq"], 1);
    assert_eq!(frame["text"], "L1  CARS 1");
    assert_eq!(frame["classes"][0]["class"], "four_wheeler");
    assert_eq!(frame["classes"][0]["free"], 1);
    assert_eq!(frame["classes"][0]["total"], 3);
    assert_eq!(frame["classes"][0]["state"], "available", "2 of 3 bays taken or unknown: under 90 %");
    assert!(frame["freshAt"].is_string(), "{frame}");
    assert_eq!(entrance.json()["text"], "L1  CARS 1\nM  BIKES FULL", "no bike bay vouched free");

    // A bike bay changes: only the terminal that shows zone M gets a frame.
    let bike = reading("N-M1", false, 1, "2026-11-25T10:00:01Z");
    sensor.publish("parking/uplink/N-M1", QoS::AtLeastOnce, false, bike.to_string()).await.unwrap();
    let next = next_matching(&mut frames, wait, |_| true).await.unwrap();
    assert_eq!(next.topic, "parking/terminals/ENTRANCE/frame");
    assert_eq!(next.json()["seq"], 2);
    assert_eq!(next.json()["text"], "L1  CARS 1\nM  BIKES 1");
    assert!(
        next_matching(&mut frames, Duration::from_millis(500), |m| m.topic.contains("L1-SIGN"))
            .await
            .is_err(),
        "the L1 sign does not show zone M"
    );

    // A sign that connects later gets each terminal's current frame, retained.
    let (_late, mut late) = subscribe(broker.port, "parking/terminals/+/frame").await.unwrap();
    let mut retained = Vec::new();
    for _ in 0..2 {
        retained.push(next_matching(&mut late, wait, |_| true).await.unwrap());
    }
    retained.sort_by(|a, b| a.topic.cmp(&b.topic));
    assert!(retained.iter().all(|m| m.retained), "{retained:?}");
    assert_eq!(retained[0].json()["seq"], 2, "ENTRANCE's latest");
    assert_eq!(retained[1].json()["seq"], 1, "L1-SIGN's latest");
}

async fn a_redelivered_change_publishes_the_same_frame_again(backend: Backend) {
    let broker = Mosquitto::start().unwrap();
    let parkd = parkd_with_broker(backend, &broker).await;
    parkd.put_lot("north", &lot_spec("North", "N", 2, 0)).await;
    parkd.put_terminal("T1", "north", None).await;
    let r = parkd.send_reading("e-1", &reading("N-C0", true, 1, "2026-11-25T10:00:00Z")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let events: Vec<Value> = r.json().await.unwrap();
    let change = events.iter().find(|e| e["type"] == "io.parking.availability.changed.v1").unwrap().clone();

    // The derived event was already pushed once by the in-process broker;
    // delivering it again (as Knative may) renders the same content.
    let (_sub, mut frames) = subscribe(broker.port, "parking/terminals/T1/frame").await.unwrap();
    let retained = next_matching(&mut frames, Duration::from_secs(10), |_| true).await.unwrap();
    assert_eq!(retained.json()["seq"], 1);
    for _ in 0..2 {
        let r = parkd
            .client
            .post(parkd.url("/api/v1/events"))
            .header("content-type", "application/cloudevents+json")
            .body(change.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let answer: Value = r.json().await.unwrap();
        assert_eq!(answer["published"], json!([{ "terminal": "T1", "seq": 1 }]));
        let again = next_matching(&mut frames, Duration::from_secs(10), |_| true).await.unwrap();
        assert_eq!(again.payload, retained.payload, "the very same frame, same id");
    }
}
