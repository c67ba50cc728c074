//! Display terminals end to end: provisioning through the admin API, and
//! terminal-push publishing retained frames to a real Mosquitto when a
//! sensor reading arrives over MQTT. Storage scenarios run on SQLite and on
//! PostgreSQL.

use std::time::Duration;

use parkd::up::MqttMode;
use parking_tests::mosquitto::Mosquitto;
use parking_tests::terminals::{SseStream, next_matching, subscribe, token_for};
use parking_tests::{Backend, Parkd, ParkdOptions, lot_spec, reading};
use reqwest::StatusCode;
use rumqttc::QoS;
use serde_json::{Value, json};

use parking_tests::on_both_backends;

on_both_backends!(
    streams_refuse_missing_and_foreign_tokens,
    terminals_are_provisioned_and_refused_with_reasons,
    a_reading_over_mqtt_publishes_retained_frames_to_the_terminals_that_show_it,
    a_redelivered_change_publishes_the_same_frame_again,
);

async fn parkd_with_broker(backend: Backend, broker: &Mosquitto) -> Parkd {
    Parkd::start_with(ParkdOptions {
        mqtt: MqttMode::External(broker.url()),
        // Short, so the keep-alive test is quick.
        gateway_keep_alive: Duration::from_secs(1),
        ..ParkdOptions::new(backend)
    })
    .await
    .unwrap()
}

const WAIT: Duration = Duration::from_secs(20);

/// A lot of `cars` bays with terminal T1 showing it; answers parkd.
async fn lot_with_terminal(backend: Backend, broker: &Mosquitto, cars: usize) -> Parkd {
    let parkd = parkd_with_broker(backend, broker).await;
    assert_eq!(parkd.put_lot("north", &lot_spec("North", "N", cars, 0)).await.status(), StatusCode::CREATED);
    assert_eq!(parkd.put_terminal("T1", "north", None).await.status(), StatusCode::CREATED);
    parkd
}

/// Turns car bay `i` free (one new frame each, as every call changes the counts).
async fn free_bay(parkd: &Parkd, i: usize) {
    let r = parkd
        .send_reading(&format!("free-{i}"), &reading(&format!("N-C{i}"), false, 1, "2026-11-25T10:00:00Z"))
        .await;
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);
}

fn stream_url(parkd: &Parkd, terminal: &str, token: &str) -> String {
    parkd.url(&format!("/terminals/{terminal}/stream?token={token}"))
}

async fn streams_refuse_missing_and_foreign_tokens(backend: Backend) {
    let broker = Mosquitto::start().unwrap();
    let parkd = lot_with_terminal(backend, &broker, 2).await;
    parkd.put_terminal("T2", "north", None).await;
    let get = |path: &str, bearer: Option<String>| {
        let mut request = parkd.client.get(parkd.url(path));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(get("/terminals/T1/stream", None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(get("/terminals/T1/stream?token=not-a-token-of-anyone", None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(get("/terminals/T2/stream", Some(token_for("T1"))).await, StatusCode::FORBIDDEN);
    assert_eq!(
        get(&format!("/terminals/T2/stream?token={}", token_for("T1")), None).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(get("/terminals/T1/ws", Some(token_for("T2"))).await, StatusCode::FORBIDDEN);
    // The right token, either way, opens the stream.
    let ok = parkd
        .client
        .get(parkd.url("/terminals/T1/stream"))
        .bearer_auth(token_for("T1"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.headers()["content-type"], "text/event-stream");
    SseStream::open(&parkd.client, &stream_url(&parkd, "T2", &token_for("T2")), None).await.unwrap();
    // A deleted terminal's token stops working once the cache forgets it.
    let r = parkd.client.delete(parkd.url("/api/v1/terminals/T2")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    tokio::time::sleep(parkd::gateway::tokens::CACHE_TTL + Duration::from_millis(200)).await;
    assert_eq!(
        get(&format!("/terminals/T2/stream?token={}", token_for("T2")), None).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_sends_the_current_frame_at_once_then_live_frames_and_resumes_after_last_event_id() {
    let broker = Mosquitto::start().unwrap();
    let parkd = lot_with_terminal(Backend::Sqlite, &broker, 6).await;
    free_bay(&parkd, 0).await;
    let url = stream_url(&parkd, "T1", &token_for("T1"));

    let mut first = SseStream::open(&parkd.client, &url, None).await.unwrap();
    let current = first.next_frame(WAIT).await.unwrap();
    assert_eq!(current.id.as_deref(), Some("1"), "the current frame, at once");
    assert_eq!(current.json()["classes"][0]["free"], 1);
    free_bay(&parkd, 1).await;
    let live = first.next_frame(WAIT).await.unwrap();
    assert_eq!(live.id.as_deref(), Some("2"));
    assert_eq!(live.json()["classes"][0]["free"], 2);
    // Idle streams carry a ping event every keep-alive (1 s here).
    let ping = first.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(ping.event, "ping");
    assert!(ping.data.parse::<i64>().is_ok(), "the gateway's clock: {ping:?}");
    drop(first);

    // Missed while away: frames 3 and 4.
    free_bay(&parkd, 2).await;
    free_bay(&parkd, 3).await;
    // A new client gets the gateway's current frame at once; frame 4 may still
    // be on its way through the broker, so it may come next, live.
    let mut newest = SseStream::open(&parkd.client, &url, None).await.unwrap();
    let mut ids = vec![newest.next_frame(WAIT).await.unwrap().id.unwrap()];
    if ids[0] != "4" {
        ids.push(newest.next_frame(WAIT).await.unwrap().id.unwrap());
    }
    assert!(ids == ["4"] || ids == ["3", "4"], "{ids:?}");

    let mut resumed = SseStream::open(&parkd.client, &url, Some(2)).await.unwrap();
    let missed: Vec<_> = [resumed.next_frame(WAIT).await.unwrap(), resumed.next_frame(WAIT).await.unwrap()]
        .iter()
        .map(|e| (e.id.clone().unwrap(), e.json()["classes"][0]["free"].as_u64().unwrap()))
        .collect();
    assert_eq!(missed, [("3".to_owned(), 3), ("4".to_owned(), 4)], "exactly what it missed, in order");
    free_bay(&parkd, 4).await;
    assert_eq!(resumed.next_frame(WAIT).await.unwrap().id.as_deref(), Some("5"), "then live, nothing twice");

    // Up to date already: nothing until the next frame.
    let mut current_client = SseStream::open(&parkd.client, &url, Some(5)).await.unwrap();
    assert!(current_client.next_frame(Duration::from_millis(1500)).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hundred_clients_each_receive_every_frame() {
    const CLIENTS: usize = 100;
    const FRAMES: usize = 5;
    let broker = Mosquitto::start().unwrap();
    let parkd = lot_with_terminal(Backend::Sqlite, &broker, FRAMES).await;
    let url = stream_url(&parkd, "T1", &token_for("T1"));
    let mut streams = Vec::new();
    for _ in 0..CLIENTS {
        // Own connection pools: one TCP connection per client, as browsers would.
        streams.push(SseStream::open(&reqwest::Client::new(), &url, None).await.unwrap());
    }
    let gateway = parkd.running.gateway.as_ref().unwrap();
    assert_eq!(gateway.stats.clients.load(std::sync::atomic::Ordering::Relaxed), CLIENTS as u64);
    let readers: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            tokio::spawn(async move {
                let mut ids = Vec::new();
                while ids.len() < FRAMES {
                    let frame = stream.next_frame(WAIT).await.unwrap();
                    ids.push(frame.id.unwrap().parse::<u64>().unwrap());
                }
                ids
            })
        })
        .collect();
    for i in 0..FRAMES {
        free_bay(&parkd, i).await;
    }
    let expected: Vec<u64> = (1..=FRAMES as u64).collect();
    for reader in readers {
        assert_eq!(reader.await.unwrap(), expected);
    }
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

async fn next_text(
    socket: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
) -> Value {
    use futures::StreamExt;
    loop {
        let message = tokio::time::timeout(WAIT, socket.next()).await.expect("a message").unwrap().unwrap();
        if let tokio_tungstenite::tungstenite::Message::Text(text) = message {
            return serde_json::from_str(text.as_str()).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_gets_the_current_frame_then_live_ones_and_resumes() {
    let broker = Mosquitto::start().unwrap();
    let parkd = lot_with_terminal(Backend::Sqlite, &broker, 4).await;
    free_bay(&parkd, 0).await;
    let ws = |query: &str| format!("{}/terminals/T1/ws?{query}", parkd.base.replace("http://", "ws://"));
    let token = format!("token={}", token_for("T1"));
    let (mut socket, response) = tokio_tungstenite::connect_async(ws(&token)).await.unwrap();
    assert_eq!(response.status(), 101);
    let current = next_text(&mut socket).await;
    assert_eq!((current["seq"].as_u64(), current["classes"][0]["free"].as_u64()), (Some(1), Some(1)));
    free_bay(&parkd, 1).await;
    assert_eq!(next_text(&mut socket).await["seq"], 2);
    drop(socket);

    free_bay(&parkd, 2).await;
    let (mut resumed, _) =
        tokio_tungstenite::connect_async(ws(&format!("{token}&lastEventId=2"))).await.unwrap();
    let missed = next_text(&mut resumed).await;
    assert_eq!((missed["seq"].as_u64(), missed["classes"][0]["free"].as_u64()), (Some(3), Some(3)));

    match tokio_tungstenite::connect_async(ws("")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => {
            panic!("a WebSocket without a token must be refused, got {:?}", other.map(|(_, r)| r.status()))
        }
    }
}
