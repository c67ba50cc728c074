//! Nothing changes state without a credential, and the listener guards
//! itself: the ingest token on the event routes, the admin token on writes
//! and on reads that show sensors (failing closed), no open listener beyond
//! loopback, body limits, slow clients cut off, a connection cap.

use std::time::Duration;

use parking_tests::{Backend, Parkd, ParkdOptions, lot_spec, reading};
use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const INGEST: &str = "ingest-t0ken";
const ADMIN: &str = "admin-t0ken";

async fn with_variables(variables: &[(&str, &str)]) -> Parkd {
    Parkd::start_with(ParkdOptions {
        variables: variables.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..ParkdOptions::new(Backend::Sqlite)
    })
    .await
    .unwrap()
}

/// A reading as a binary-mode CloudEvent, with an optional bearer token.
async fn post_reading(parkd: &Parkd, id: &str, token: Option<&str>) -> StatusCode {
    let mut request = parkd
        .client
        .post(parkd.url("/api/v1/events"))
        .header("ce-specversion", "1.0")
        .header("ce-id", id)
        .header("ce-source", "/parking/bridge")
        .header("ce-type", "io.parking.sensor.uplink.v1")
        .header("ce-format", "parking-json")
        .header("content-type", "application/json")
        .body(reading("N-C0", true, 1, "2026-11-25T10:00:00Z").to_string());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap().status()
}

/// Occupied four-wheeler bays of lot `north`.
async fn occupied(parkd: &Parkd) -> u64 {
    let (_, availability) = parkd.availability("north").await;
    availability["classes"]["four_wheeler"]["occupied"].as_u64().unwrap_or_else(|| panic!("{availability}"))
}

/// A PingSource tick to the sweep route, with an optional bearer token.
async fn post_sweep(parkd: &Parkd, token: Option<&str>) -> StatusCode {
    let mut request = parkd
        .client
        .post(parkd.url("/api/v1/sweep"))
        .header("ce-specversion", "1.0")
        .header("ce-id", uuid::Uuid::new_v4().to_string())
        .header("ce-source", "/test/ping")
        .header("ce-type", "dev.knative.sources.ping")
        .header("content-type", "application/json")
        .body("{}");
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap().status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_sweeps_need_the_ingest_token_when_one_is_set() {
    let parkd = with_variables(&[("ingest_token", INGEST)]).await;
    assert_eq!(parkd.put_lot("north", &lot_spec("North", "N", 1, 0)).await.status(), StatusCode::CREATED);
    for (i, token) in [None, Some("wrong"), Some(ADMIN)].into_iter().enumerate() {
        let status = post_reading(&parkd, &format!("e-{i}"), token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "POST /api/v1/events with token {token:?}");
    }
    assert_eq!(occupied(&parkd).await, 0, "a refused reading changed a bay");
    let status = post_reading(&parkd, "e-authorised", Some(INGEST)).await;
    assert!(status.is_success(), "POST /api/v1/events with the ingest token: {status}");
    assert_eq!(occupied(&parkd).await, 1, "the authorised reading was not applied");
    for token in [None, Some("wrong")] {
        assert_eq!(post_sweep(&parkd, token).await, StatusCode::UNAUTHORIZED, "sweep with token {token:?}");
    }
    assert_eq!(post_sweep(&parkd, Some(INGEST)).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_served_alone_checks_the_ingest_token_itself() {
    // `parkd serve --component sensor-event`, as a Knative Service (and Spin) runs it.
    let parkd = Parkd::start_with(ParkdOptions {
        variables: vec![("ingest_token".into(), INGEST.into())],
        components: vec!["sensor-event".into()],
        serve_all_paths: true,
        ..ParkdOptions::new(Backend::Sqlite)
    })
    .await
    .unwrap();
    let r = parkd
        .client
        .post(parkd.url("/"))
        .header("ce-specversion", "1.0")
        .header("ce-id", "e-1")
        .header("ce-source", "/parking/bridge")
        .header("ce-type", "io.parking.sensor.uplink.v1")
        .header("content-type", "application/json")
        .body(reading("N-C0", true, 1, "2026-11-25T10:00:00Z").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{}", r.text().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parkd_s_own_sweep_ticks_carry_the_ingest_token() {
    let parkd = with_variables(&[("ingest_token", INGEST)]).await;
    let response = parkd::scheduler::tick(&parkd.running.eventing, chrono::Utc::now()).await;
    assert_eq!(response.status(), StatusCode::OK, "{}", String::from_utf8_lossy(response.body()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_bridged_in_process_carry_the_ingest_token() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let parkd = Parkd::start_with(ParkdOptions {
        variables: vec![("ingest_token".into(), INGEST.into())],
        mqtt: parkd::up::MqttMode::Embedded(format!("127.0.0.1:{port}").parse().unwrap()),
        ..ParkdOptions::new(Backend::Sqlite)
    })
    .await
    .unwrap();
    assert_eq!(parkd.put_lot("north", &lot_spec("North", "N", 1, 0)).await.status(), StatusCode::CREATED);
    let options = rumqttc::MqttOptions::new("sensor-N-C0", "127.0.0.1", port);
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 8);
    tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    let payload = reading("N-C0", true, 1, "2026-11-25T10:00:00Z").to_string();
    client.publish("parking/uplink/N-C0", rumqttc::QoS::AtLeastOnce, false, payload).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if occupied(&parkd).await == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the bridged reading was not applied in 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_token_guards_reads_that_show_sensors_and_metrics_but_not_availability() {
    let parkd = with_variables(&[("admin_token", ADMIN)]).await;
    let put = parkd
        .client
        .put(parkd.url("/api/v1/lots/north"))
        .bearer_auth(ADMIN)
        .json(&lot_spec("North", "N", 1, 0))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::CREATED);
    for path in ["/api/v1/lots/north", "/api/v1/terminals/T1", "/metrics"] {
        let anonymous = parkd.client.get(parkd.url(path)).send().await.unwrap();
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED, "GET {path} without the admin token");
        let wrong = parkd.client.get(parkd.url(path)).bearer_auth("wrong").send().await.unwrap();
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED, "GET {path} with another token");
        let admin = parkd.client.get(parkd.url(path)).bearer_auth(ADMIN).send().await.unwrap();
        assert_ne!(admin.status(), StatusCode::UNAUTHORIZED, "GET {path} with the admin token");
    }
    for path in ["/api/v1/lots", "/api/v1/lots/north/availability", "/healthz"] {
        let r = parkd.client.get(parkd.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "GET {path} stays public");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_admin_token_refuses_admin_requests() {
    // lot-admin without its `admin_token` variable: reading it fails.
    let dir = tempfile::tempdir().unwrap();
    let root = parking_tests::repo_root().canonicalize().unwrap();
    let manifest = std::fs::read_to_string(root.join("spin.toml"))
        .unwrap()
        .replace("source = \"", &format!("source = \"{}/", root.display()))
        .replace("admin_token = \"{{ admin_token }}\"\n", "");
    let path = dir.path().join("spin.toml");
    std::fs::write(&path, manifest).unwrap();
    let parkd =
        Parkd::start_with(ParkdOptions { manifest: Some(path), ..ParkdOptions::new(Backend::Sqlite) })
            .await
            .unwrap();
    let r = parkd.put_lot("north", &lot_spec("North", "N", 1, 0)).await;
    let status = r.status();
    let body = r.text().await.unwrap();
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "an unreadable admin_token must refuse: {body}");
    assert!(body.contains("admin_token"), "the refusal names the variable: {body}");
    let (status, _) = parkd.availability("north").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was provisioned");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_beyond_loopback_needs_both_tokens_or_insecure() {
    let open = |variables: &[(&str, &str)], insecure: bool| ParkdOptions {
        variables: variables.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        listen: Some("0.0.0.0:0".parse().unwrap()),
        insecure,
        ..ParkdOptions::new(Backend::Sqlite)
    };
    let refused = Parkd::start_with(open(&[], false)).await.err().expect("an open listener must be refused");
    let refused = format!("{refused:#}");
    assert!(refused.contains("PARKING_ADMIN_TOKEN") && refused.contains("PARKING_INGEST_TOKEN"), "{refused}");
    let refused = Parkd::start_with(open(&[("admin_token", ADMIN)], false))
        .await
        .err()
        .expect("an open ingest route must be refused");
    let refused = format!("{refused:#}");
    assert!(
        refused.contains("PARKING_INGEST_TOKEN") && !refused.contains("PARKING_ADMIN_TOKEN"),
        "{refused}"
    );
    Parkd::start_with(open(&[("admin_token", ADMIN), ("ingest_token", INGEST)], false)).await.unwrap();
    Parkd::start_with(open(&[], true)).await.unwrap();
}

/// Sends only a request head declaring a `length`-byte body; answers the status line.
async fn declare_body(parkd: &Parkd, method: &str, path: &str, length: usize) -> String {
    let mut stream = tokio::net::TcpStream::connect(parkd.running.addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: parkd\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(15), stream.read(&mut answer))
        .await
        .unwrap_or_else(|_| {
            panic!("{method} {path}: no answer to the head alone within 15 s (is the body awaited?)")
        })
        .unwrap();
    String::from_utf8_lossy(&answer[..n]).lines().next().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_their_route_s_limit_are_refused_before_they_are_read() {
    let parkd = Parkd::start(Backend::Sqlite).await.unwrap();
    // An event is small: a 2 MiB one is refused on its head alone.
    assert_eq!(
        declare_body(&parkd, "POST", "/api/v1/events", 2 << 20).await,
        "HTTP/1.1 413 Payload Too Large"
    );
    assert_eq!(
        declare_body(&parkd, "POST", "/api/v1/sweep", 2 << 20).await,
        "HTTP/1.1 413 Payload Too Large"
    );
    assert_eq!(
        declare_body(&parkd, "PUT", "/api/v1/terminals/T1", 1 << 20).await,
        "HTTP/1.1 413 Payload Too Large"
    );
    // A lot definition may be large, but not without bound.
    assert_eq!(
        declare_body(&parkd, "PUT", "/api/v1/lots/north", 5 << 20).await,
        "HTTP/1.1 413 Payload Too Large"
    );
    let two_mib = parkd
        .client
        .put(parkd.url("/api/v1/lots/north"))
        .header("content-type", "application/json")
        .body(vec![b' '; 2 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(
        two_mib.status(),
        StatusCode::BAD_REQUEST,
        "a 2 MiB lot reaches lot-admin, which finds no lot in it"
    );
    assert_eq!(parkd.client.get(parkd.url("/healthz")).send().await.unwrap().status(), StatusCode::OK);
}

/// Reads until the server closes the connection; what it sent, or a failure after `within`.
async fn read_until_closed(stream: &mut tokio::net::TcpStream, within: Duration) -> Result<String, String> {
    let mut received = Vec::new();
    match tokio::time::timeout(within, stream.read_to_end(&mut received)).await {
        Ok(_) => Ok(String::from_utf8_lossy(&received).into_owned()),
        Err(_) => Err(format!(
            "the connection was still open after {within:?} (received {:?})",
            String::from_utf8_lossy(&received)
        )),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_header_and_idle_clients_are_cut_off() {
    let limits = parkd::server::Limits { header_read_timeout: Duration::from_secs(1), ..Default::default() };
    let parkd =
        Parkd::start_with(ParkdOptions { limits, ..ParkdOptions::new(Backend::Sqlite) }).await.unwrap();
    let address = parkd.running.addr;
    // Half a request head, then nothing.
    let mut slow = tokio::net::TcpStream::connect(address).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: parkd\r\n").await.unwrap();
    let sent = read_until_closed(&mut slow, Duration::from_secs(15)).await.expect("a slow header client");
    assert!(!sent.contains("200 OK"), "a request whose head never ended was answered: {sent}");
    // A kept-alive connection that goes quiet after its answer.
    let mut idle = tokio::net::TcpStream::connect(address).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: parkd\r\n\r\n").await.unwrap();
    let sent = read_until_closed(&mut idle, Duration::from_secs(15)).await.expect("an idle client");
    assert!(sent.starts_with("HTTP/1.1 200"), "{sent}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_wait_for_a_free_one() {
    let limits = parkd::server::Limits { max_connections: 1, ..Default::default() };
    let parkd =
        Parkd::start_with(ParkdOptions { limits, ..ParkdOptions::new(Backend::Sqlite) }).await.unwrap();
    let held = tokio::net::TcpStream::connect(parkd.running.addr).await.unwrap();
    // Accepted only once a connection is free: not while `held` is open.
    let waiting = parkd.client.get(parkd.url("/healthz")).timeout(Duration::from_secs(1)).send().await;
    assert!(waiting.is_err(), "a connection past the cap was served: {waiting:?}");
    drop(held);
    let served =
        parkd.client.get(parkd.url("/healthz")).timeout(Duration::from_secs(15)).send().await.unwrap();
    assert_eq!(served.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_name_the_variable_to_set() {
    let parkd = with_variables(&[("ingest_token", INGEST)]).await;
    let r = parkd.client.post(parkd.url("/api/v1/events")).json(&json!({})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let body = r.text().await.unwrap();
    assert!(body.contains("PARKING_INGEST_TOKEN") && !body.contains(INGEST), "{body}");
}

/// On Mosquitto with the repository's ACL: terminal-push writes frames with
/// its own credential (not the bridge's), and a sensor's forged retained
/// frame never replaces the genuine one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_terminal_push_may_publish_frames_on_mosquitto() {
    use parking_tests::mosquitto::Mosquitto;
    use parking_tests::terminals::{next_matching, subscribe_as};

    const BRIDGE: (&str, &str) = ("parkd-bridge", "bridge-pw");
    const PUSH: (&str, &str) = ("terminal-push", "push-pw");
    const SENSOR: (&str, &str) = ("N-C0", "sensor-pw");
    let broker = Mosquitto::start_secured(&[BRIDGE, PUSH, SENSOR]).unwrap();
    let parkd = Parkd::start_with(ParkdOptions {
        mqtt: parkd::up::MqttMode::External(format!(
            "mqtt://{}:{}@127.0.0.1:{}",
            BRIDGE.0, BRIDGE.1, broker.port
        )),
        variables: vec![("mqtt_username".into(), PUSH.0.into()), ("mqtt_password".into(), PUSH.1.into())],
        ..ParkdOptions::new(Backend::Sqlite)
    })
    .await
    .unwrap();
    assert_eq!(parkd.put_lot("north", &lot_spec("North", "N", 1, 0)).await.status(), StatusCode::CREATED);
    assert_eq!(parkd.put_terminal("T1", "north", None).await.status(), StatusCode::CREATED);
    let topic = "parking/terminals/T1/frame";
    let (_watch, mut frames) = subscribe_as(broker.port, topic, Some(BRIDGE)).await.unwrap();
    // A genuine frame: the sensor's reading changes the lot's counts.
    let sensor = {
        let mut options = rumqttc::MqttOptions::new("sensor-N-C0", "127.0.0.1", broker.port);
        options.set_credentials(SENSOR.0, SENSOR.1);
        let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 8);
        let (acked_tx, acked) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(event) = eventloop.poll().await {
                if let rumqttc::Event::Incoming(rumqttc::Packet::PubAck(ack)) = event {
                    let _ = acked_tx.send(ack.pkid);
                }
            }
        });
        (client, acked)
    };
    let (client, mut acked) = sensor;
    let payload = reading("N-C0", true, 1, "2026-11-25T10:00:00Z").to_string();
    client.publish("parking/uplink/N-C0", rumqttc::QoS::AtLeastOnce, false, payload).await.unwrap();
    // (Provisioning rendered a first frame; the one showing the reading follows.)
    let genuine = next_matching(&mut frames, Duration::from_secs(20), |m| {
        serde_json::from_slice::<serde_json::Value>(&m.payload)
            .is_ok_and(|frame| frame["classes"][0]["occupied"] == 1)
    })
    .await
    .expect("terminal-push published no frame with its own credential");
    // The sensor forges a retained frame that would shadow every later one.
    let forged = json!({ "terminal": "T1", "seq": u64::MAX / 2, "forged": true }).to_string();
    client.publish(topic, rumqttc::QoS::AtLeastOnce, true, forged).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        // The uplink's acknowledgement, then the forged frame's.
        for _ in 0..2 {
            acked.recv().await;
        }
    })
    .await
    .expect("the broker acknowledged the sensor's publishes");
    // A newcomer is handed the retained frame: the genuine one.
    let (_late, mut late) = subscribe_as(broker.port, topic, Some(BRIDGE)).await.unwrap();
    let retained = next_matching(&mut late, Duration::from_secs(10), |m| m.retained)
        .await
        .expect("a retained frame for T1");
    assert_eq!(retained.payload, genuine.payload, "a forged frame replaced the genuine one");
}

/// The embedded broker cannot refuse a publish by topic: frames travel on
/// parkd's private frame broker, so one forged on the sensors' broker (with
/// a `seq` that would shadow every genuine frame) never reaches the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_forged_on_the_embedded_broker_never_reaches_the_gateway() {
    use parking_tests::terminals::{SseStream, token_for};

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let parkd = Parkd::start_with(ParkdOptions {
        mqtt: parkd::up::MqttMode::Embedded(format!("127.0.0.1:{port}").parse().unwrap()),
        ..ParkdOptions::new(Backend::Sqlite)
    })
    .await
    .unwrap();
    assert_eq!(parkd.put_lot("north", &lot_spec("North", "N", 1, 0)).await.status(), StatusCode::CREATED);
    assert_eq!(parkd.put_terminal("T1", "north", None).await.status(), StatusCode::CREATED);

    let (forger, mut eventloop) =
        rumqttc::AsyncClient::new(rumqttc::MqttOptions::new("forger", "127.0.0.1", port), 8);
    let (acked_tx, mut acked) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            if let rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)) = event {
                let _ = acked_tx.send(());
            }
        }
    });
    let forged = json!({ "terminal": "T1", "seq": u64::MAX / 2, "forged": true }).to_string();
    forger.publish("parking/terminals/T1/frame", rumqttc::QoS::AtLeastOnce, true, forged).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), acked.recv())
        .await
        .expect("the embedded broker acknowledged the forged frame");

    // A genuine change, so terminal-push renders a frame.
    let r = parkd.send_reading("e-1", &reading("N-C0", true, 1, "2026-11-25T10:00:00Z")).await;
    assert!(r.status().is_success(), "{:?}", r.text().await);
    let url = parkd.url(&format!("/terminals/T1/stream?token={}", token_for("T1")));
    let mut stream = SseStream::open(&parkd.client, &url, None).await.unwrap();
    let frame = stream.next_frame(Duration::from_secs(20)).await.expect("a frame for T1");
    assert!(frame.json()["forged"].is_null(), "the gateway relayed a forged frame: {}", frame.data);
}
