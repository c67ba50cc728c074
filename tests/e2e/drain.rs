//! Shutting down under load: `parkd up` as a real process gets SIGTERM (what
//! Kubernetes sends) mid-burst, drains, exits 0, and a restart on the same
//! state ends with every reading applied exactly once.

use std::io::{Read, Write};
use std::time::Duration;

use parking_tests::db::Db;
use parking_tests::mosquitto::Mosquitto;
use parking_tests::process::{ParkdProcess, free_port};
use parking_tests::{
    Backend, eventually_within, fresh_postgres_database, on_both_backends, shows_last_published,
};
use serde_json::Value;

/// A generous bound on the exit: the grace period (20 s) and then some.
const EXITS_WITHIN: Duration = Duration::from_secs(45);

/// A few hundred readings a second, for several seconds: a burst to cut.
const RATE: f64 = 300.0;
const READINGS: u64 = 1500;
const BAYS: usize = 60;

async fn database(backend: Backend) -> String {
    match backend {
        Backend::Sqlite => "sqlite".to_owned(),
        Backend::Postgres => fresh_postgres_database().await.unwrap(),
    }
}

/// A counter or gauge without labels (or with exactly these) from `/metrics`; 0 when absent.
async fn metric(parkd: &ParkdProcess, series: &str) -> u64 {
    let Ok(response) = reqwest::get(parkd.url("/metrics")).await else { return 0 };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse::<f64>().ok())
        .unwrap_or_default() as u64
}

async fn provision(parkd: &ParkdProcess) {
    let lot = parkd::simulate::lot_definition("Burst", "BURST", BAYS);
    let r = reqwest::Client::new().put(parkd.url("/api/v1/lots/burst")).json(&lot).send().await.unwrap();
    assert!(r.status().is_success(), "{:?}", r.text().await);
}

fn burst(port: u16) -> tokio::task::JoinHandle<anyhow::Result<parkd::simulate::Summary>> {
    tokio::spawn(parkd::simulate::run(parkd::simulate::SimulateOptions {
        mqtt_port: port,
        bays: BAYS,
        rate: RATE,
        readings: READINGS,
        device_prefix: "BURST".into(),
        heartbeat_share: 0.0,
        progress: false,
        ..Default::default()
    }))
}

/// SIGTERM, then a clean exit (status 0) within the bound, having drained.
async fn terminate(parkd: &mut ParkdProcess) {
    parkd.signal("TERM").unwrap();
    let status = parkd.exited(EXITS_WITHIN).await.unwrap();
    assert!(status.success(), "parkd exited with {status} after SIGTERM:\n{}", parkd.tail());
    let tail = parkd.tail();
    assert!(tail.contains("drained; stopping"), "{tail}");
    assert!(!tail.contains("did not close the connection"), "the broker did not see the DISCONNECT:\n{tail}");
}

/// What the bridges and their drains logged, for failure messages.
fn bridge_log(log: &std::path::Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("bridge") || l.contains("drain")).collect();
    lines.join("\n")
}

/// The state a run must end in: no reading and no status change applied
/// twice, and counts that agree with the bays.
async fn assert_each_applied_once(db: &Db) -> i64 {
    let readings = db.count("SELECT COUNT(*) FROM readings").await;
    let distinct = db.count("SELECT COUNT(DISTINCT event_key) FROM readings").await;
    assert_eq!(readings, distinct, "a reading was applied twice");
    let changes = db.count("SELECT COUNT(*) FROM status_changes").await;
    let distinct_changes = db.count("SELECT COUNT(DISTINCT event_key) FROM status_changes").await;
    assert_eq!(changes, distinct_changes, "a status change was recorded twice");
    let (kept, recounted) = db.kept_and_recounted().await;
    assert_eq!(kept, recounted, "the kept counts disagree with the bays");
    readings
}

/// Mosquitto keeps the bridge's session (and the messages it did not
/// acknowledge) across the restart: in the end every reading is applied
/// exactly once, and none that the first parkd committed comes back (it
/// acknowledged each before it exited).
async fn sigterm_mid_burst_on_mosquitto(backend: Backend) {
    let broker = Mosquitto::start().unwrap();
    let state = tempfile::tempdir().unwrap();
    let database = database(backend).await;
    let log = state.path().join("parkd.log");
    let mqtt = broker.url();
    let args = ["--mqtt", mqtt.as_str()];
    let mut first = ParkdProcess::up(state.path(), &database, &log, &args).await.unwrap();
    provision(&first).await;

    let simulation = burst(broker.port);
    eventually_within(Duration::from_secs(60), "the first readings delivered", || async {
        metric(&first, "parkd_bridge_messages_delivered_total").await >= 300
    })
    .await;
    terminate(&mut first).await;
    assert!(!simulation.is_finished(), "the burst ended before SIGTERM: it did not cut it");
    drop(first);

    // The burst goes on into the broker, which keeps it for the bridge.
    let mut second = ParkdProcess::up(state.path(), &database, &log, &args).await.unwrap();
    let summary = simulation.await.unwrap().unwrap();
    assert_eq!(summary.sent, READINGS);
    let db = Db::connect(&database, state.path()).await.unwrap();
    eventually_within(Duration::from_secs(120), "every reading applied", || async {
        db.count("SELECT COUNT(*) FROM readings").await >= READINGS as i64
    })
    .await;
    let redelivered_committed = metric(&second, r#"parkd_events_total{outcome="duplicate-event"}"#).await;
    assert_eq!(
        redelivered_committed,
        0,
        "readings the first parkd committed came again: it did not acknowledge them before exiting:\n{}",
        bridge_log(&log)
    );
    let (_, availability) = availability(&second).await;
    assert!(
        shows_last_published(&availability, &summary),
        "{availability} after {:?}",
        summary.last_published
    );
    terminate(&mut second).await;

    assert_eq!(assert_each_applied_once(&db).await, READINGS as i64, "a reading was lost");
    // Every reading of the burst changes its bay.
    assert_eq!(db.count("SELECT COUNT(*) FROM status_changes").await, READINGS as i64);
}

/// The embedded broker's inbox keeps what the bridge's lanes did not take
/// for the next start (a crash is crash.rs's). The drain exits cleanly, what
/// the bridge delivered before the signal is applied, once, and the same
/// state serves again.
async fn sigterm_mid_burst_on_the_embedded_broker(backend: Backend) {
    let state = tempfile::tempdir().unwrap();
    let database = database(backend).await;
    let log = state.path().join("parkd.log");
    let port = free_port().unwrap();
    let listen = format!("127.0.0.1:{port}");
    let args = ["--mqtt-listen", listen.as_str()];
    let mut parkd = ParkdProcess::up(state.path(), &database, &log, &args).await.unwrap();
    provision(&parkd).await;

    let simulation = burst(port);
    eventually_within(Duration::from_secs(60), "the first readings delivered", || async {
        metric(&parkd, "parkd_bridge_messages_delivered_total").await >= 300
    })
    .await;
    // Delivered means committed: all of these must be there after the exit.
    let delivered = metric(&parkd, "parkd_bridge_messages_delivered_total").await;
    terminate(&mut parkd).await;
    // Its broker went with it: the simulated sensors have no one to publish to.
    simulation.abort();
    assert!(parkd.tail().contains("MQTT bridge drained"), "{}", parkd.tail());

    let db = Db::connect(&database, state.path()).await.unwrap();
    let applied = assert_each_applied_once(&db).await;
    assert!(applied >= delivered as i64, "{applied} readings applied, {delivered} delivered before SIGTERM");
    // The same state serves again.
    let mut again = ParkdProcess::up(state.path(), &database, &log, &args).await.unwrap();
    terminate(&mut again).await;
}

on_both_backends!(sigterm_mid_burst_on_mosquitto, sigterm_mid_burst_on_the_embedded_broker);

async fn availability(parkd: &ParkdProcess) -> (reqwest::StatusCode, Value) {
    let r = reqwest::get(parkd.url("/api/v1/lots/burst/availability")).await.unwrap();
    (r.status(), r.json().await.unwrap_or_default())
}

/// A request in flight when SIGTERM arrives is answered, while new
/// connections are refused; then parkd exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_is_answered_during_the_drain_while_new_connections_are_refused() {
    let state = tempfile::tempdir().unwrap();
    let log = state.path().join("parkd.log");
    let args = ["--no-mqtt"];
    let mut parkd = ParkdProcess::up(state.path(), "sqlite", &log, &args).await.unwrap();
    provision(&parkd).await;
    let address = parkd.base.trim_start_matches("http://").to_owned();

    // A slow client: the head and half the body, then SIGTERM.
    let body = serde_json::json!({
        "device": "BURST-0001", "occupied": true, "seq": 1, "observedAt": chrono::Utc::now().to_rfc3339()
    })
    .to_string();
    let (first_half, second_half) = body.split_at(body.len() / 2);
    let mut slow = std::net::TcpStream::connect(&address).unwrap();
    write!(
        slow,
        "POST /api/v1/events HTTP/1.1\r\nhost: {address}\r\nce-specversion: 1.0\r\nce-id: slow-1\r\n\
         ce-source: /drain-test\r\nce-type: io.parking.sensor.uplink.v1\r\nce-format: parking-json\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{first_half}",
        body.len()
    )
    .unwrap();
    slow.flush().unwrap();
    // The request has reached parkd (a response to another request on a
    // second connection proves the first was accepted before it).
    assert!(reqwest::get(parkd.url("/healthz")).await.unwrap().status().is_success());
    parkd.signal("TERM").unwrap();

    eventually_within(Duration::from_secs(20), "new connections refused", || async {
        std::net::TcpStream::connect(&address).is_err()
    })
    .await;
    assert!(parkd.exited(Duration::ZERO).await.is_err(), "parkd exited with a request in flight");

    slow.write_all(second_half.as_bytes()).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut answer = String::new();
    // The connection closes after the answer (no keep-alive while draining).
    slow.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 2"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");

    let status = parkd.exited(EXITS_WITHIN).await.unwrap();
    assert!(status.success(), "parkd exited with {status}:\n{}", parkd.tail());
    let db = Db::connect("sqlite", state.path()).await.unwrap();
    assert_eq!(db.count("SELECT COUNT(*) FROM readings WHERE event_key LIKE '%slow-1%'").await, 1);
}
