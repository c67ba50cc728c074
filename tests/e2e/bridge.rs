//! The MQTT bridge against a real Mosquitto: sensor messages in, bay state out.

use std::time::Duration;

use parkd::up::MqttMode;
use parking_tests::mosquitto::Mosquitto;
use parking_tests::{
    Backend, Parkd, ParkdOptions, eventually_within, lot_spec, manifest_with_recorder, on_both_backends,
    reading, shows_last_published,
};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};

/// A sensor-side MQTT client; messages on `subscribe` topics arrive on the channel.
async fn mqtt_client(
    broker: &Mosquitto,
    id: &str,
    subscribe: &[&str],
) -> (AsyncClient, tokio::sync::mpsc::Receiver<(String, Vec<u8>)>) {
    mqtt_client_on(broker.port, id, subscribe).await
}

async fn mqtt_client_on(
    port: u16,
    id: &str,
    subscribe: &[&str],
) -> (AsyncClient, tokio::sync::mpsc::Receiver<(String, Vec<u8>)>) {
    mqtt_client_as(port, id, None, subscribe).await
}

async fn mqtt_client_as(
    port: u16,
    id: &str,
    credentials: Option<(&str, &str)>,
    subscribe: &[&str],
) -> (AsyncClient, tokio::sync::mpsc::Receiver<(String, Vec<u8>)>) {
    let mut options = MqttOptions::new(id, "127.0.0.1", port);
    if let Some((user, password)) = credentials {
        options.set_credentials(user, password);
    }
    mqtt_client_with(options, subscribe).await
}

async fn mqtt_client_with(
    mut options: MqttOptions,
    subscribe: &[&str],
) -> (AsyncClient, tokio::sync::mpsc::Receiver<(String, Vec<u8>)>) {
    options.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    for topic in subscribe {
        client.subscribe(*topic, QoS::AtLeastOnce).await.unwrap();
    }
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send((p.topic.clone(), p.payload.to_vec())).await;
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    (client, rx)
}

async fn publish(client: &AsyncClient, topic: &str, payload: impl Into<Vec<u8>>) {
    client.publish(topic, QoS::AtLeastOnce, false, payload).await.unwrap();
}

/// 800 status changes over `bays` simulated bays, no heartbeats, at 200/s:
/// four seconds, so a fault injected early falls inside the stream.
async fn steady_stream(port: u16, bays: usize) -> anyhow::Result<parkd::simulate::Summary> {
    parkd::simulate::run(parkd::simulate::SimulateOptions {
        mqtt_port: port,
        bays,
        rate: 200.0,
        readings: 800,
        heartbeat_share: 0.0,
        progress: false,
        ..Default::default()
    })
    .await
}

/// A parkd without a bridge of its own (the bridge runs apart, as on a
/// cluster), recording slot changes at `/test/recorded`, with lot `sim` of
/// simulated bays; returns it and the number of bays.
async fn parkd_with_sim_lot(dir: &std::path::Path) -> (Parkd, usize) {
    let manifest = manifest_with_recorder(dir, &["io.parking.slot.changed.v1"]).unwrap();
    let parkd =
        Parkd::start_with(ParkdOptions { manifest: Some(manifest), ..ParkdOptions::new(Backend::Sqlite) })
            .await
            .unwrap();
    let bays = 30;
    let lot = parkd::simulate::lot_definition("Sim", "SIM", bays);
    assert!(parkd.put_lot("sim", &lot).await.status().is_success());
    (parkd, bays)
}

/// Asserts that no recorded derived event was delivered twice.
fn assert_each_change_once(recorded: &[Value]) {
    let mut ids: Vec<&str> = recorded.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "a slot change was derived twice");
}

/// Polls `check` until it holds or 15 s pass.
async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually_within(Duration::from_secs(15), what, check).await
}

async fn four_wheelers(parkd: &Parkd) -> Value {
    parkd.availability("north").await.1["classes"]["four_wheeler"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_published_over_mqtt_change_availability_once() {
    let broker = Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manifest = manifest_with_recorder(dir.path(), &["io.parking.slot.changed.v1"]).unwrap();
    let parkd = Parkd::start_with(ParkdOptions {
        mqtt: MqttMode::External(broker.url()),
        manifest: Some(manifest),
        ..ParkdOptions::new(Backend::Sqlite)
    })
    .await
    .unwrap();
    parkd.put_lot("north", &lot_spec("North", "N", 3, 0)).await;
    let (sensor, _) = mqtt_client(&broker, "sensor-1", &[]).await;

    let occupied = reading("N-C0", true, 1, "2026-11-25T10:00:00Z").to_string();
    publish(&sensor, "parking/uplink/N-C0", occupied.clone()).await;
    // The same message again, as a sensor retrying without an acknowledgement would.
    publish(&sensor, "parking/uplink/N-C0", occupied).await;
    publish(&sensor, "parking/uplink/N-C1", reading("N-C1", false, 1, "2026-11-25T10:00:01Z").to_string())
        .await;

    eventually("both bays applied", || async {
        let c = four_wheelers(&parkd).await;
        c["occupied"] == 1 && c["free"] == 1
    })
    .await;
    let bridge = parkd.running.bridge.as_ref().unwrap();
    eventually("all three messages delivered", || async {
        bridge.stats.delivered.load(std::sync::atomic::Ordering::Relaxed) == 3
    })
    .await;
    let recorded = parkd.recorded().await;
    // Different devices may be delivered in either order (parallel lanes).
    let mut subjects: Vec<&str> = recorded.iter().map(|e| e["subject"].as_str().unwrap()).collect();
    subjects.sort();
    assert_eq!(subjects, ["north/C0", "north/C1"], "the repeated message changed nothing: {recorded:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_messages_go_to_the_dead_letter_topic_with_the_reason() {
    let broker = Mosquitto::start().unwrap();
    let parkd = Parkd::bridging(broker.url(), Backend::Sqlite).await.unwrap();
    parkd.put_lot("north", &lot_spec("North", "N", 1, 0)).await;
    let (sensor, mut letters) = mqtt_client(&broker, "operator", &["parking/dead-letter"]).await;
    tokio::time::sleep(Duration::from_millis(200)).await; // let the subscription settle

    publish(&sensor, "parking/uplink/N-C0", b"\x00\xffnot json".to_vec()).await;
    publish(&sensor, "parking/uplink/N-C0", json!({ "device": "N-C0", "occupied": "maybe" }).to_string())
        .await;
    publish(&sensor, "parking/uplink/N-C0", vec![b'x'; 70 * 1024]).await;

    let mut reasons = Vec::new();
    for _ in 0..3 {
        let (topic, body) =
            tokio::time::timeout(Duration::from_secs(15), letters.recv()).await.unwrap().unwrap();
        assert_eq!(topic, "parking/dead-letter");
        let letter: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(letter["topic"], "parking/uplink/N-C0");
        reasons.push(letter["reason"].as_str().unwrap().to_owned());
    }
    // (Delivered as one batch or one by one: their order may differ.)
    let has = |what: &str| reasons.iter().filter(|r| r.contains(what)).count() == 1;
    assert!(has("not valid JSON"), "{reasons:?}");
    assert!(has("field `occupied`"), "the reason names the field: {reasons:?}");
    assert!(has("limit"), "{reasons:?}");
    // None of it touched the bay.
    assert_eq!(four_wheelers(&parkd).await["unknown"], 1);
}

/// A message the sink keeps failing on (500: here a guest that traps) is
/// tried a bounded number of times and dead-lettered with its reason, and the
/// messages behind it in the same lane flow on; nothing else is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_is_dead_lettered_after_bounded_tries_and_its_lane_flows_on() {
    use parkd::bridge::sink::Sink;
    use parkd::bridge::{Bridge, BridgeConfig};

    let broker = Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manifest = parking_tests::manifest_with_fault_injector(dir.path()).unwrap();
    let parkd =
        Parkd::start_with(ParkdOptions { manifest: Some(manifest), ..ParkdOptions::new(Backend::Sqlite) })
            .await
            .unwrap();
    let (sensor, mut letters) = mqtt_client(&broker, "operator-poison", &["parking/dead-letter"]).await;
    tokio::time::sleep(Duration::from_millis(200)).await; // let the subscription settle

    // One lane, so the poison message is in front of the others.
    let config = BridgeConfig {
        client_id: "bridge-poison".into(),
        workers: 1,
        fault_attempts: 3,
        retry_delays: (Duration::from_millis(20), Duration::from_millis(100)),
        ..BridgeConfig::from_url(&broker.url()).unwrap()
    };
    let bridge = Bridge::start(config, Sink::http(&parkd.url("/test/fault/event")).unwrap());
    bridge.ready(Duration::from_secs(10)).await.unwrap();

    let message = |action: &str, key: &str| json!({ "action": action, "key": key }).to_string();
    publish(&sensor, "parking/uplink/D-1", message("commit", "before")).await;
    publish(&sensor, "parking/uplink/D-1", message("trap", "poison")).await;
    for i in 0..20 {
        publish(&sensor, "parking/uplink/D-1", message("commit", &format!("after-{i}"))).await;
    }

    let (topic, body) = tokio::time::timeout(Duration::from_secs(30), letters.recv()).await.unwrap().unwrap();
    assert_eq!(topic, "parking/dead-letter");
    let letter: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(letter["topic"], "parking/uplink/D-1");
    assert_eq!(letter["status"], 500, "{letter}");
    let reason = letter["reason"].as_str().unwrap();
    assert!(reason.contains("failed 3 times"), "the reason says how often it was tried: {reason}");

    let count = |key: String| {
        let parkd = &parkd;
        async move {
            let r = parkd.client.get(parkd.url(&format!("/test/fault/count/{key}"))).send().await.unwrap();
            r.json::<Value>().await.unwrap()["count"].as_i64().unwrap()
        }
    };
    eventually("every message behind the poison one applied", || async {
        count("after-19".into()).await == 1
    })
    .await;
    assert_eq!(count("before".into()).await, 1);
    for i in 0..20 {
        assert_eq!(count(format!("after-{i}")).await, 1, "after-{i}");
    }
    assert_eq!(count("poison".into()).await, 0, "the trapped write was rolled back");
    let stats = &bridge.stats;
    assert_eq!(stats.dead_lettered.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(stats.retries.load(std::sync::atomic::Ordering::Relaxed), 2, "three tries: two retries");
    assert_eq!(stats.delivered.load(std::sync::atomic::Ordering::Relaxed), 21);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_for_postgres_take_the_same_path() {
    let broker = Mosquitto::start().unwrap();
    let parkd = Parkd::bridging(broker.url(), Backend::Postgres).await.unwrap();
    parkd.put_lot("north", &lot_spec("North", "N", 2, 0)).await;
    let (sensor, _) = mqtt_client(&broker, "sensor-pg", &[]).await;
    for (i, bay) in ["N-C0", "N-C1"].iter().enumerate() {
        let body = reading(bay, true, 1, &format!("2026-11-25T10:00:0{i}Z")).to_string();
        publish(&sensor, &format!("parking/uplink/{bay}"), body).await;
    }
    eventually("both bays occupied", || async { four_wheelers(&parkd).await["occupied"] == 2 }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_broker_needs_nothing_installed() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let parkd = Parkd::start_with(ParkdOptions {
        mqtt: MqttMode::Embedded(listen),
        ..ParkdOptions::new(Backend::Sqlite)
    })
    .await
    .unwrap();
    parkd.put_lot("north", &lot_spec("North", "N", 1, 0)).await;
    let (sensor, _) = mqtt_client_on(port, "sensor-embedded", &[]).await;
    publish(&sensor, "parking/uplink/N-C0", reading("N-C0", true, 1, "2026-11-25T10:00:00Z").to_string())
        .await;
    eventually("the bay is occupied", || async { four_wheelers(&parkd).await["occupied"] == 1 }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_stream_ends_in_the_state_last_published() {
    let broker = Mosquitto::start().unwrap();
    let parkd = Parkd::bridging(broker.url(), Backend::Sqlite).await.unwrap();
    let bays = 40;
    let r = parkd.put_lot("sim", &parkd::simulate::lot_definition("Sim", "SIM", bays)).await;
    assert!(r.status().is_success());
    let summary = parkd::simulate::run(parkd::simulate::SimulateOptions {
        mqtt_port: broker.port,
        bays,
        rate: 400.0,
        readings: 400,
        progress: false,
        ..Default::default()
    })
    .await
    .unwrap();
    let bridge = parkd.running.bridge.as_ref().unwrap();
    eventually("every reading delivered", || async {
        bridge.stats.delivered.load(std::sync::atomic::Ordering::Relaxed) == summary.sent
    })
    .await;
    let (_, a) = parkd.availability("sim").await;
    assert!(shows_last_published(&a, &summary), "{a} after {:?}", summary.last_published);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_killed_mid_stream_and_restarted_loses_and_doubles_nothing() {
    killed_mid_stream("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mqtt5_bridge_killed_mid_stream_and_restarted_loses_and_doubles_nothing() {
    // MQTT 5 keeps the session only with a session expiry interval.
    killed_mid_stream("?version=5").await;
}

async fn killed_mid_stream(url_options: &str) {
    use parkd::bridge::sink::Sink;
    use parkd::bridge::{Bridge, BridgeConfig};

    let broker = Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (parkd, bays) = parkd_with_sim_lot(dir.path()).await;
    let start_bridge = || {
        let config = BridgeConfig {
            client_id: "bridge-under-test".into(),
            ..BridgeConfig::from_url(&format!("{}{url_options}", broker.url())).unwrap()
        };
        Bridge::start(config, Sink::http(&parkd.url("/api/v1/events")).unwrap())
    };
    let first = start_bridge();
    first.ready(Duration::from_secs(10)).await.unwrap();

    let simulation = tokio::spawn(steady_stream(broker.port, bays));
    // Kill the bridge part-way: its unacknowledged messages stay with the broker.
    eventually("some readings delivered", || async {
        first.stats.delivered.load(std::sync::atomic::Ordering::Relaxed) >= 100
    })
    .await;
    drop(first);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = start_bridge();
    let summary = simulation.await.unwrap().unwrap();

    // Every reading ends up applied: the bays show exactly what was published last.
    eventually("the final state", || async {
        shows_last_published(&parkd.availability("sim").await.1, &summary)
    })
    .await;
    // And no change was applied twice: each status change has one event.
    let recorded = parkd.recorded().await;
    assert_each_change_once(&recorded);
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_report_the_bridge_counts_and_lag() {
    let broker = Mosquitto::start().unwrap();
    let parkd = Parkd::bridging(broker.url(), Backend::Sqlite).await.unwrap();
    parkd.put_lot("north", &lot_spec("North", "N", 1, 0)).await;
    let (sensor, _) = mqtt_client(&broker, "sensor-m", &[]).await;
    publish(&sensor, "parking/uplink/N-C0", reading("N-C0", true, 1, "2026-11-25T10:00:00Z").to_string())
        .await;
    publish(&sensor, "parking/uplink/N-C0", b"garbage".to_vec()).await;
    let metric = |text: &str, name: &str| -> Option<f64> {
        text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    };
    let scrape =
        || async { parkd.client.get(parkd.url("/metrics")).send().await.unwrap().text().await.unwrap() };
    eventually("both messages counted", || async {
        let text = scrape().await;
        metric(&text, "parkd_bridge_messages_received_total") == Some(2.0)
            && metric(&text, "parkd_bridge_lag_messages") == Some(0.0)
    })
    .await;
    let text = scrape().await;
    assert_eq!(metric(&text, "parkd_bridge_messages_delivered_total"), Some(1.0), "{text}");
    assert_eq!(metric(&text, "parkd_bridge_dead_letters_total"), Some(1.0), "{text}");
    assert_eq!(metric(&text, "parkd_bridge_subscribed"), Some(1.0), "{text}");
    assert_eq!(metric(&text, "parkd_bridge_lag_seconds"), Some(0.0), "nothing waits: {text}");
    assert!(text.contains("# TYPE parkd_bridge_messages_received counter"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_published_while_the_sink_is_down_arrive_once_it_is_back() {
    use parkd::bridge::sink::Sink;
    use parkd::bridge::{Bridge, BridgeConfig};

    let broker = Mosquitto::start().unwrap();
    let data = tempfile::tempdir().unwrap();
    let manifest = manifest_with_recorder(data.path(), &["io.parking.slot.changed.v1"]).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let start_parkd = || {
        parkd::up::start(parkd::up::UpOptions {
            manifest: manifest.clone(),
            listen: format!("127.0.0.1:{port}").parse().unwrap(),
            database: "sqlite".into(),
            data_dir: data.path().join("state"),
            cache_dir: std::env::var_os("PARKD_CACHE_DIR")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| std::env::temp_dir().join("parkd-test-components")),
            demo: false,
            variables: Default::default(),
            components: Vec::new(),
            serve_all_paths: false,
            mqtt: MqttMode::Off,
            sweep_schedule: None,
            gateway_keep_alive: std::time::Duration::from_secs(15),
            gateway_frame_interval: parkd::gateway::DEFAULT_FRAME_INTERVAL,
            insecure: false,
            limits: Default::default(),
        })
    };
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let running = start_parkd().await.unwrap();
    let bays = 30;
    let r = client
        .put(format!("{base}/api/v1/lots/sim"))
        .json(&parkd::simulate::lot_definition("Sim", "SIM", bays))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());

    let config = BridgeConfig {
        client_id: "bridge-sink-down".into(),
        ..BridgeConfig::from_url(&broker.url()).unwrap()
    };
    let bridge = Bridge::start(config, Sink::http(&format!("{base}/api/v1/events")).unwrap());
    bridge.ready(Duration::from_secs(10)).await.unwrap();
    let simulation = tokio::spawn(steady_stream(broker.port, bays));
    eventually("some readings delivered", || async {
        bridge.stats.delivered.load(std::sync::atomic::Ordering::Relaxed) >= 100
    })
    .await;
    drop(running); // the sink goes away mid-stream
    eventually("the bridge retrying", || async {
        bridge.stats.retries.load(std::sync::atomic::Ordering::Relaxed) > 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _running = start_parkd().await.unwrap(); // and comes back, on the same database
    let summary = simulation.await.unwrap().unwrap();

    eventually("the final state", || async {
        let Ok(r) = client.get(format!("{base}/api/v1/lots/sim/availability")).send().await else {
            return false;
        };
        shows_last_published(&r.json().await.unwrap_or_default(), &summary)
    })
    .await;
    let recorded: Vec<Value> =
        client.get(format!("{base}/test/recorded")).send().await.unwrap().json().await.unwrap();
    assert_each_change_once(&recorded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sensor_may_publish_only_to_its_own_topic() {
    let broker =
        Mosquitto::start_secured(&[("parkd-bridge", "bridge-secret"), ("N-C0", "c0-secret")]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let parkd = Parkd::start_with(ParkdOptions {
        mqtt: MqttMode::External(format!("mqtt://parkd-bridge:bridge-secret@127.0.0.1:{}", broker.port)),
        manifest: Some(manifest_with_recorder(dir.path(), &["io.parking.slot.changed.v1"]).unwrap()),
        ..ParkdOptions::new(Backend::Sqlite)
    })
    .await
    .unwrap();
    parkd.put_lot("north", &lot_spec("North", "N", 2, 0)).await;
    let (sensor, _) = mqtt_client_as(broker.port, "N-C0", Some(("N-C0", "c0-secret")), &[]).await;
    // Its neighbour's topic first: the broker drops it, so it can never arrive.
    publish(&sensor, "parking/uplink/N-C1", reading("N-C1", true, 1, "2026-11-25T10:00:00Z").to_string())
        .await;
    publish(&sensor, "parking/uplink/N-C0", reading("N-C0", true, 1, "2026-11-25T10:00:01Z").to_string())
        .await;
    eventually("its own reading applied", || async { four_wheelers(&parkd).await["occupied"] == 1 }).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let recorded = parkd.recorded().await;
    let subjects: Vec<&str> = recorded.iter().map(|e| e["subject"].as_str().unwrap()).collect();
    assert_eq!(subjects, ["north/C0"], "the reading for another sensor's bay was refused by the broker");
    assert_eq!(
        parkd.running.bridge.as_ref().unwrap().stats.received.load(std::sync::atomic::Ordering::Relaxed),
        1
    );

    // Without credentials, or with the wrong password, a client is not let in.
    for credentials in [None, Some(("N-C0", "wrong"))] {
        let mut options = MqttOptions::new("intruder", "127.0.0.1", broker.port);
        if let Some((u, p)) = credentials {
            options.set_credentials(u, p);
        }
        let (_client, mut eventloop) = AsyncClient::new(options, 8);
        let refused = loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    break ack.code != rumqttc::ConnectReturnCode::Success;
                }
                Ok(_) => continue,
                Err(_) => break true,
            }
        };
        assert!(refused, "{credentials:?} must be refused");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_published_while_the_database_is_down_are_applied_once_it_is_back() {
    let database = parking_tests::postgres::Postgres::start().unwrap();
    let broker = Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let parkd = Parkd::start_with(ParkdOptions {
        database: Some(database.url()),
        mqtt: MqttMode::External(broker.url()),
        manifest: Some(manifest_with_recorder(dir.path(), &["io.parking.slot.changed.v1"]).unwrap()),
        ..ParkdOptions::new(Backend::Postgres)
    })
    .await
    .unwrap();
    let bays = 30;
    assert!(
        parkd
            .put_lot("sim", &parkd::simulate::lot_definition("Sim", "SIM", bays))
            .await
            .status()
            .is_success()
    );
    let bridge = parkd.running.bridge.as_ref().unwrap();
    let simulation = tokio::spawn(steady_stream(broker.port, bays));
    eventually("some readings delivered", || async {
        bridge.stats.delivered.load(std::sync::atomic::Ordering::Relaxed) >= 100
    })
    .await;
    database.stop().unwrap(); // the database goes away mid-stream: 503s, retried
    eventually("the bridge retrying", || async {
        bridge.stats.retries.load(std::sync::atomic::Ordering::Relaxed) > 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    database.start_again().unwrap();
    let summary = simulation.await.unwrap().unwrap();
    eventually("the final state", || async {
        shows_last_published(&parkd.availability("sim").await.1, &summary)
    })
    .await;
    let recorded = parkd.recorded().await;
    assert_each_change_once(&recorded);
}

/// The bridge as on a cluster with Knative Kafka: MQTT → bridge → Kafka topic
/// → KafkaSource (the test's consumer) → sensor-event over HTTP.
async fn through_kafka(topic_exists_at_start: bool) {
    use parkd::bridge::sink::Sink;
    use parkd::bridge::sink::kafka::default_partition;
    use parkd::bridge::{Bridge, BridgeConfig};
    use parking_tests::kafka::{Tansu, deliver_to};

    const TOPIC: &str = "parking-uplinks";
    const PARTITIONS: i32 = 3;
    let broker = Mosquitto::start().unwrap();
    let kafka = Tansu::start().unwrap();
    if topic_exists_at_start {
        kafka.create_topic(TOPIC, PARTITIONS).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let (parkd, bays) = parkd_with_sim_lot(dir.path()).await;

    let config = BridgeConfig {
        client_id: "bridge-to-kafka".into(),
        ..BridgeConfig::from_url(&broker.url()).unwrap()
    };
    let sink = Sink::from_url(&format!("kafka://{}/{TOPIC}", kafka.address())).unwrap();
    let bridge = Bridge::start(config, sink);
    bridge.ready(Duration::from_secs(10)).await.unwrap();
    let simulation = tokio::spawn(steady_stream(broker.port, bays));
    if !topic_exists_at_start {
        // Nothing can be produced yet: the bridge holds the messages and retries.
        eventually("the bridge retrying", || async {
            bridge.stats.retries.load(std::sync::atomic::Ordering::Relaxed) > 0
        })
        .await;
        assert_eq!(bridge.stats.delivered.load(std::sync::atomic::Ordering::Relaxed), 0);
        kafka.create_topic(TOPIC, PARTITIONS).await.unwrap();
    }
    let consumed = deliver_to(&kafka, TOPIC, PARTITIONS, parkd.url("/api/v1/events")).await.unwrap();
    let summary = simulation.await.unwrap().unwrap();

    eventually("the final state", || async {
        shows_last_published(&parkd.availability("sim").await.1, &summary)
    })
    .await;
    let recorded = parkd.recorded().await;
    assert_each_change_once(&recorded);

    // The final state can show before the consumer has read the last
    // records (heartbeats change nothing): wait until it has read them all.
    let records = || consumed.lock().unwrap().values().map(Vec::len).sum::<usize>();
    eventually("every record consumed", || async { records() >= 800 }).await;

    // Every record is keyed by its device, on the partition Kafka's default
    // partitioner gives that key, so a device's readings stay in order.
    let consumed = consumed.lock().unwrap().clone();
    assert_eq!(consumed.len(), PARTITIONS as usize, "every partition used: {:?}", consumed.keys());
    let mut total = 0;
    for (partition, records) in &consumed {
        total += records.len();
        for (_, key) in records {
            assert!(key.starts_with("SIM-"), "record key {key:?}");
            assert_eq!(default_partition(key.as_bytes(), PARTITIONS as usize), *partition as usize, "{key}");
        }
    }
    assert!(total >= 800, "{total} records for 800 published readings");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_reach_sensor_event_through_a_kafka_topic() {
    through_kafka(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_wait_in_mqtt_until_the_kafka_topic_exists() {
    through_kafka(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sensors_and_the_bridge_reach_the_broker_over_tls_only() {
    use parkd::bridge::sink::Sink;
    use parkd::bridge::tls::MqttTls;
    use parkd::bridge::{Bridge, BridgeConfig};
    use rumqttc::{TlsConfiguration, Transport};

    let broker =
        Mosquitto::start_secured_tls(&[("parkd-bridge", "bridge-secret"), ("N-C0", "c0-secret")]).unwrap();
    let ca = broker.ca.clone().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let parkd = Parkd::start_with(ParkdOptions {
        manifest: Some(manifest_with_recorder(dir.path(), &["io.parking.slot.changed.v1"]).unwrap()),
        ..ParkdOptions::new(Backend::Sqlite)
    })
    .await
    .unwrap();
    parkd.put_lot("north", &lot_spec("North", "N", 1, 0)).await;
    let tls = |ca: std::path::PathBuf| {
        let config = MqttTls { ca: Some(ca), client_auth: None }.client_config().unwrap();
        Transport::tls_with_config(TlsConfiguration::Rustls(std::sync::Arc::new(config)))
    };

    // The bridge: its own credentials, the broker checked against the CA.
    let url = format!("mqtts://parkd-bridge:bridge-secret@127.0.0.1:{}", broker.port);
    let mut config = BridgeConfig { client_id: "bridge-tls".into(), ..BridgeConfig::from_url(&url).unwrap() };
    config.tls = Some(MqttTls { ca: Some(ca.clone()), client_auth: None });
    let bridge = Bridge::start(config, Sink::http(&parkd.url("/api/v1/events")).unwrap());
    bridge.ready(Duration::from_secs(10)).await.unwrap();

    // A sensor over TLS with its own credential: its reading is applied.
    let mut options = MqttOptions::new("N-C0", "127.0.0.1", broker.port);
    options.set_credentials("N-C0", "c0-secret").set_transport(tls(ca.clone()));
    let (sensor, _) = mqtt_client_with(options, &[]).await;
    publish(&sensor, "parking/uplink/N-C0", reading("N-C0", true, 1, "2026-11-25T10:00:00Z").to_string())
        .await;
    eventually("the reading over TLS applied", || async { four_wheelers(&parkd).await["occupied"] == 1 })
        .await;

    // Plain TCP to the TLS listener gets no session.
    let mut options = MqttOptions::new("plain", "127.0.0.1", broker.port);
    options.set_credentials("N-C0", "c0-secret");
    let (_client, mut eventloop) = AsyncClient::new(options, 8);
    let connected = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    break ack.code == rumqttc::ConnectReturnCode::Success;
                }
                Ok(_) => continue,
                Err(_) => break false,
            }
        }
    })
    .await;
    assert_ne!(connected, Ok(true), "a plain connection to the TLS listener was accepted");

    // A bridge that trusts another CA refuses the broker's certificate.
    let stranger = Mosquitto::start_secured_tls(&[("nobody", "x")]).unwrap();
    let mut config =
        BridgeConfig { client_id: "bridge-wrong-ca".into(), ..BridgeConfig::from_url(&url).unwrap() };
    config.tls = Some(MqttTls { ca: stranger.ca.clone(), client_auth: None });
    let doubtful = Bridge::start(config, Sink::http(&parkd.url("/api/v1/events")).unwrap());
    let refused = doubtful.ready(Duration::from_secs(3)).await.unwrap_err().to_string();
    assert!(refused.contains("did not subscribe"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_replicas_in_a_share_group_split_the_stream() {
    use parkd::bridge::sink::Sink;
    use parkd::bridge::{Bridge, BridgeConfig};
    use std::sync::atomic::Ordering::Relaxed;

    let broker = Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (parkd, bays) = parkd_with_sim_lot(dir.path()).await;
    let replica = |id: &str| {
        let config = BridgeConfig {
            client_id: id.into(),
            share_group: Some("parkd".into()),
            ..BridgeConfig::from_url(&broker.url()).unwrap()
        };
        Bridge::start(config, Sink::http(&parkd.url("/api/v1/events")).unwrap())
    };
    let (a, b) = (replica("bridge-a"), replica("bridge-b"));
    a.ready(Duration::from_secs(10)).await.unwrap();
    b.ready(Duration::from_secs(10)).await.unwrap();

    // The bridge's own listener, as `parkd bridge` serves it.
    let listener = parkd::server::Server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let health = format!("http://{}", listener.local_addr().unwrap());
    let _health = tokio::spawn(parkd::server::serve_bridge_health(listener, a.stats.clone()));

    let summary = steady_stream(broker.port, bays).await.unwrap();
    eventually("the final state", || async {
        shows_last_published(&parkd.availability("sim").await.1, &summary)
    })
    .await;
    // Each message reached one replica: both worked, none twice. A replica
    // counts a delivery once its answer is back, which can trail the commit
    // that made the final state visible: wait for the counts, not a moment.
    eventually("every message counted by one replica", || async {
        a.stats.delivered.load(Relaxed) + b.stats.delivered.load(Relaxed) >= 800
    })
    .await;
    let (by_a, by_b) = (a.stats.delivered.load(Relaxed), b.stats.delivered.load(Relaxed));
    assert!(by_a > 0 && by_b > 0, "a: {by_a}, b: {by_b}");
    assert_eq!(by_a + by_b, 800, "a: {by_a}, b: {by_b}");
    let recorded = parkd.recorded().await;
    assert_each_change_once(&recorded);

    let client = reqwest::Client::new();
    assert_eq!(client.get(format!("{health}/readyz")).send().await.unwrap().status(), 200);
    let metrics = client.get(format!("{health}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(&format!("parkd_bridge_messages_delivered_total {by_a}\n")), "{metrics}");
    assert!(metrics.contains("parkd_bridge_lag_seconds 0.0\n"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_binary_mode_events_are_applied_once_by_their_id() {
    use rumqttc::v5::mqttbytes::v5::PublishProperties;

    let broker = Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let parkd = Parkd::start_with(ParkdOptions {
        mqtt: MqttMode::External(format!("{}?version=5", broker.url())),
        manifest: Some(manifest_with_recorder(dir.path(), &["io.parking.slot.changed.v1"]).unwrap()),
        ..ParkdOptions::new(Backend::Sqlite)
    })
    .await
    .unwrap();
    parkd.put_lot("north", &lot_spec("North", "N", 1, 0)).await;
    let (_watcher, mut dead_letters) = mqtt_client(&broker, "watcher-5", &["parking/dead-letter"]).await;

    let mut options = rumqttc::v5::MqttOptions::new("gateway-5", "127.0.0.1", broker.port);
    options.set_keep_alive(Duration::from_secs(5));
    let (gateway, mut eventloop) = rumqttc::v5::AsyncClient::new(options, 16);
    tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    let send = |attributes: Vec<(&str, &str)>, payload: String| {
        let gateway = gateway.clone();
        let properties = PublishProperties {
            user_properties: attributes.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            content_type: Some("application/json".into()),
            ..Default::default()
        };
        async move {
            gateway
                .publish_with_properties(
                    "parking/uplink/N-C0",
                    rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                    false,
                    payload,
                    properties,
                )
                .await
                .unwrap();
        }
    };
    let event = vec![
        ("specversion", "1.0"),
        ("id", "gw-5-0001"),
        ("source", "/gateways/5"),
        ("type", "io.parking.sensor.uplink.v1"),
    ];
    // Two messages with one event id: the second is a redelivery by its id,
    // whatever it carries (were the bridge to make its own id, this later
    // "free" reading would apply).
    send(event.clone(), reading("N-C0", true, 1, "2026-11-25T10:00:00Z").to_string()).await;
    send(event.clone(), reading("N-C0", false, 2, "2026-11-25T10:00:30Z").to_string()).await;
    eventually("the reading applied", || async { four_wheelers(&parkd).await["occupied"] == 1 }).await;
    let stats = &parkd.running.bridge.as_ref().unwrap().stats;
    eventually("both copies handled", || async {
        stats.delivered.load(std::sync::atomic::Ordering::Relaxed) == 2
    })
    .await;
    let recorded = parkd.recorded().await;
    assert_eq!(recorded.len(), 1, "one change for one event id: {recorded:?}");
    assert_eq!(recorded[0]["subject"], "north/C0");

    // Without a type it is no CloudEvent: dead-lettered with the reason.
    let mut untyped = event.clone();
    untyped.retain(|(k, _)| *k != "type");
    untyped[1].1 = "gw-5-0002";
    send(untyped, reading("N-C0", false, 2, "2026-11-25T10:01:00Z").to_string()).await;
    let (_, letter) =
        tokio::time::timeout(Duration::from_secs(10), dead_letters.recv()).await.unwrap().unwrap();
    let letter: Value = serde_json::from_slice(&letter).unwrap();
    assert!(letter["reason"].as_str().unwrap().contains("\"type\""), "{letter}");
    assert_eq!(four_wheelers(&parkd).await["occupied"], 1);
}

/// Where a burst test's sensors publish: the embedded broker (`parkd up`'s
/// default) or Mosquitto.
enum BurstBroker {
    Embedded,
    Mosquitto,
}

/// 3,000 status changes published as fast as the broker takes them, over 60
/// bays: every one ends up applied, on one connection (a broker that drops
/// the bridge for acknowledging out of order, as rumqttd does, would show
/// more than one), and no change is derived twice.
async fn a_burst_ends_in_the_state_last_published(on: BurstBroker, backend: Backend) {
    let mosquitto = matches!(on, BurstBroker::Mosquitto).then(|| Mosquitto::start().unwrap());
    let port = match &mosquitto {
        Some(broker) => broker.port,
        None => std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port(),
    };
    let mqtt = match &mosquitto {
        Some(broker) => MqttMode::External(broker.url()),
        None => MqttMode::Embedded(format!("127.0.0.1:{port}").parse().unwrap()),
    };
    let dir = tempfile::tempdir().unwrap();
    let manifest = manifest_with_recorder(dir.path(), &["io.parking.slot.changed.v1"]).unwrap();
    let parkd =
        Parkd::start_with(ParkdOptions { mqtt, manifest: Some(manifest), ..ParkdOptions::new(backend) })
            .await
            .unwrap();
    let bays = 60;
    let lot = parkd::simulate::lot_definition("Burst", "BURST", bays);
    assert!(parkd.put_lot("burst", &lot).await.status().is_success());

    let summary = parkd::simulate::run(parkd::simulate::SimulateOptions {
        mqtt_port: port,
        bays,
        rate: 1_000_000.0,
        readings: 3000,
        device_prefix: "BURST".into(),
        heartbeat_share: 0.0,
        progress: false,
        ..Default::default()
    })
    .await
    .unwrap();
    let bridge = parkd.running.bridge.as_ref().unwrap();
    let stats = &bridge.stats;
    eventually_within(Duration::from_secs(120), "every reading of the burst delivered", || async {
        stats.delivered.load(std::sync::atomic::Ordering::Relaxed) >= summary.sent
    })
    .await;
    let (_, availability) = parkd.availability("burst").await;
    assert!(
        shows_last_published(&availability, &summary),
        "{availability} after {:?}",
        summary.last_published
    );
    assert_eq!(
        stats.connections.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "the broker dropped the bridge during the burst (acknowledgements out of order?)"
    );
    assert_eq!(stats.dead_lettered.load(std::sync::atomic::Ordering::Relaxed), 0);
    assert_each_change_once(&parkd.recorded().await);
    // A burst queues up on the lanes: they deliver CloudEvents batches.
    assert!(stats.batches.load(std::sync::atomic::Ordering::Relaxed) > 0, "no batch in a burst of 3000");
}

async fn a_burst_on_the_embedded_broker(backend: Backend) {
    a_burst_ends_in_the_state_last_published(BurstBroker::Embedded, backend).await
}

async fn a_burst_on_mosquitto(backend: Backend) {
    a_burst_ends_in_the_state_last_published(BurstBroker::Mosquitto, backend).await
}

on_both_backends!(a_burst_on_the_embedded_broker, a_burst_on_mosquitto);

/// The Things Stack publishes on `v3/{application}@{tenant}/devices/{device id}/up`,
/// where the device ID is a name an operator chose, not the DevEUI; ChirpStack
/// names the DevEUI in its topic and its own device name in the payload. Both
/// reach the bay whose sensor is the DevEUI, over the embedded broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lorawan_uplinks_from_devices_named_by_their_network_server_reach_their_bays() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let parkd = Parkd::start_with(ParkdOptions {
        mqtt: MqttMode::Embedded(format!("127.0.0.1:{port}").parse().unwrap()),
        ..ParkdOptions::new(Backend::Sqlite)
    })
    .await
    .unwrap();
    let lot = json!({ "name": "LoRa", "bays": [
        { "id": "P1", "class": "four_wheeler", "sensor": "FCD6BD00001936B0", "model": "bosch-pls" },
        { "id": "P2", "class": "four_wheeler", "sensor": "FCD6BD00001936B1", "model": "bosch-pls" },
        { "id": "P3", "class": "four_wheeler", "sensor": "70B3D5E75E000003", "model": "bosch-pls" },
    ]});
    assert!(parkd.put_lot("lora", &lot).await.status().is_success());
    let (network_server, _) = mqtt_client_on(port, "network-server", &[]).await;
    // Bosch PLS status frame on port 1: 0x01 = occupied.
    let tts = |device_id: &str, dev_eui: &str| {
        json!({
            "end_device_ids": {
                "device_id": device_id,
                "application_ids": { "application_id": "city-parking" },
                "dev_eui": dev_eui,
                "join_eui": "70B3D57ED0000000"
            },
            "received_at": "2026-11-25T10:00:01.912Z",
            "uplink_message": { "f_port": 1, "f_cnt": 42, "frm_payload": "AQ==", "received_at": "2026-11-25T10:00:01.600Z" }
        })
        .to_string()
    };
    publish(&network_server, "v3/city-parking@ttn/devices/bay-17/up", tts("bay-17", "FCD6BD00001936B0"))
        .await;
    // The console's suggestion, `eui-` and the DevEUI in lower case.
    publish(
        &network_server,
        "v3/city-parking@ttn/devices/eui-fcd6bd00001936b1/up",
        tts("eui-fcd6bd00001936b1", "FCD6BD00001936B1"),
    )
    .await;
    let chirpstack = json!({
        "deduplicationId": "3ac7e3c4-4401-4b8d-9386-a5c902f9202d",
        "time": "2026-11-25T10:00:02Z",
        "deviceInfo": { "applicationId": "7", "deviceName": "level-2-bay-031", "devEui": "70b3d5e75e000003" },
        "fCnt": 9, "fPort": 1, "data": "AQ=="
    });
    publish(&network_server, "application/7/device/70b3d5e75e000003/event/up", chirpstack.to_string()).await;

    eventually("all three bays occupied", || async {
        parkd.availability("lora").await.1["classes"]["four_wheeler"]["occupied"] == 3
    })
    .await;
    let stats = &parkd.running.bridge.as_ref().unwrap().stats;
    assert_eq!(stats.dead_lettered.load(std::sync::atomic::Ordering::Relaxed), 0);
}

/// A batch mixing good and bad messages: the bridge dead-letters exactly the
/// events sensor-event refused and the others are applied, in one delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_dead_letters_exactly_the_events_it_refuses() {
    use parkd::bridge::sink::Sink;
    use parkd::bridge::{Bridge, BridgeConfig};

    let broker = Mosquitto::start().unwrap();
    let parkd = Parkd::start(Backend::Sqlite).await.unwrap();
    parkd.put_lot("north", &lot_spec("North", "N", 20, 0)).await;
    let (sensor, mut letters) = mqtt_client(&broker, "operator-batch", &["parking/dead-letter"]).await;
    tokio::time::sleep(Duration::from_millis(200)).await; // let the subscription settle

    // One lane, and time enough to gather every message into one batch.
    let config = BridgeConfig {
        client_id: "bridge-batch".into(),
        workers: 1,
        batch_size: 100,
        batch_window: Duration::from_secs(2),
        ..BridgeConfig::from_url(&broker.url()).unwrap()
    };
    let bridge = Bridge::start(config, Sink::InProcess(parkd.running.eventing.clone()));
    bridge.ready(Duration::from_secs(10)).await.unwrap();
    // 15 + 3 messages: within Mosquitto's window of 20 unacknowledged
    // messages to a client (the bridge acknowledges after delivery).
    for i in 0..15 {
        let device = format!("N-C{i}");
        publish(
            &sensor,
            &format!("parking/uplink/{device}"),
            reading(&device, true, 1, "2026-11-25T10:00:00Z").to_string(),
        )
        .await;
        if i % 5 == 0 {
            let stranger = format!("STRANGER-{i}");
            let payload = reading(&stranger, true, 1, "2026-11-25T10:00:00Z").to_string();
            publish(&sensor, &format!("parking/uplink/{stranger}"), payload).await;
        }
    }

    let mut refused = Vec::new();
    for _ in 0..3 {
        let (_, body) = tokio::time::timeout(Duration::from_secs(20), letters.recv()).await.unwrap().unwrap();
        let letter: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(letter["status"], 400, "{letter}");
        assert!(letter["reason"].as_str().unwrap().contains("unknown device"), "{letter}");
        refused.push(letter["topic"].as_str().unwrap().to_owned());
    }
    refused.sort();
    assert_eq!(
        refused,
        ["parking/uplink/STRANGER-0", "parking/uplink/STRANGER-10", "parking/uplink/STRANGER-5"]
    );
    eventually("the 15 good readings applied", || async { four_wheelers(&parkd).await["occupied"] == 15 })
        .await;
    let stats = &bridge.stats;
    assert_eq!(stats.delivered.load(std::sync::atomic::Ordering::Relaxed), 15);
    assert_eq!(stats.dead_lettered.load(std::sync::atomic::Ordering::Relaxed), 3);
    assert_eq!(stats.batches.load(std::sync::atomic::Ordering::Relaxed), 1, "one delivery for all 18");
}

/// How the database goes away in the middle of a burst, and comes back.
enum Outage {
    /// PostgreSQL stopped (immediate: no clean shutdown), then started again.
    PostgresStopped,
    /// Another process holds SQLite's write lock longer than parkd waits for
    /// it (a backup, an operator's `sqlite3` shell), then lets go.
    SqliteLocked,
}

/// The database goes away in the middle of a burst the bridge delivers in
/// batches: a batch in flight when it goes commits nothing, the bridge
/// retries, and once the database is back every reading is stored exactly
/// once (no reading of a half-applied batch twice, none missing) and every
/// change derived once.
async fn a_database_lost_mid_batch(on: BurstBroker, outage: Outage) {
    let postgres = matches!(outage, Outage::PostgresStopped)
        .then(|| parking_tests::postgres::Postgres::start().unwrap());
    let mosquitto = matches!(on, BurstBroker::Mosquitto).then(|| Mosquitto::start().unwrap());
    let port = match &mosquitto {
        Some(broker) => broker.port,
        None => std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port(),
    };
    let mqtt = match &mosquitto {
        Some(broker) => MqttMode::External(broker.url()),
        None => MqttMode::Embedded(format!("127.0.0.1:{port}").parse().unwrap()),
    };
    let dir = tempfile::tempdir().unwrap();
    let backend = if postgres.is_some() { Backend::Postgres } else { Backend::Sqlite };
    let parkd = Parkd::start_with(ParkdOptions {
        database: postgres.as_ref().map(|p| p.url()),
        mqtt,
        manifest: Some(manifest_with_recorder(dir.path(), &["io.parking.slot.changed.v1"]).unwrap()),
        ..ParkdOptions::new(backend)
    })
    .await
    .unwrap();
    let bays = 60;
    let lot = parkd::simulate::lot_definition("Lost", "LOST", bays);
    assert!(parkd.put_lot("lost", &lot).await.status().is_success());
    let bridge = parkd.running.bridge.as_ref().unwrap();
    let stats = &bridge.stats;
    let burst = tokio::spawn(parkd::simulate::run(parkd::simulate::SimulateOptions {
        mqtt_port: port,
        bays,
        rate: 1_000_000.0,
        readings: 3000,
        device_prefix: "LOST".into(),
        heartbeat_share: 0.0,
        progress: false,
        ..Default::default()
    }));
    eventually("a first part of the burst delivered", || async {
        stats.delivered.load(std::sync::atomic::Ordering::Relaxed) >= 300
    })
    .await;
    let retrying = || async { stats.retries.load(std::sync::atomic::Ordering::Relaxed) > 0 };
    match &postgres {
        Some(database) => {
            database.stop().unwrap();
            eventually("the bridge retrying", retrying).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            database.start_again().unwrap();
        }
        None => {
            use sqlx::Connection;
            let file =
                sqlx::sqlite::SqliteConnectOptions::new().filename(parkd.data_dir().join("parking.db"));
            let mut holder = sqlx::SqliteConnection::connect_with(&file).await.unwrap();
            sqlx::raw_sql("BEGIN EXCLUSIVE").execute(&mut holder).await.unwrap();
            // parkd waits 5 s for the lock, then answers the batch as busy (503).
            eventually_within(Duration::from_secs(30), "the bridge retrying", retrying).await;
            sqlx::raw_sql("COMMIT").execute(&mut holder).await.unwrap();
        }
    }
    let summary = burst.await.unwrap().unwrap();
    eventually_within(Duration::from_secs(120), "every reading of the burst delivered", || async {
        stats.delivered.load(std::sync::atomic::Ordering::Relaxed) >= summary.sent
    })
    .await;
    let (_, availability) = parkd.availability("lost").await;
    assert!(shows_last_published(&availability, &summary), "{availability}");
    let db = parking_tests::db::Db::open(&parkd).await.unwrap();
    assert_eq!(
        db.count("SELECT COUNT(*) FROM readings").await,
        summary.sent as i64,
        "each reading stored once: none lost with the batch the database dropped, none stored twice"
    );
    assert_eq!(db.count("SELECT COUNT(DISTINCT event_key) FROM readings").await, summary.sent as i64);
    assert_eq!(stats.dead_lettered.load(std::sync::atomic::Ordering::Relaxed), 0);
    assert!(stats.batches.load(std::sync::atomic::Ordering::Relaxed) > 0, "no batch in a burst of 3000");
    assert_each_change_once(&parkd.recorded().await);
    let (kept, recounted) = db.kept_and_recounted().await;
    assert_eq!(kept, recounted, "the counts table after the outage");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_lost_mid_batch_on_mosquitto() {
    a_database_lost_mid_batch(BurstBroker::Mosquitto, Outage::PostgresStopped).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_lost_mid_batch_on_the_embedded_broker() {
    a_database_lost_mid_batch(BurstBroker::Embedded, Outage::PostgresStopped).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_database_locked_mid_batch_on_the_embedded_broker() {
    a_database_lost_mid_batch(BurstBroker::Embedded, Outage::SqliteLocked).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_database_locked_mid_batch_on_mosquitto() {
    a_database_lost_mid_batch(BurstBroker::Mosquitto, Outage::SqliteLocked).await
}

/// A subscriber of availability changes (where terminal-push sits) that
/// fails, then hangs until its deadline, never holds ingest back: bursts on
/// the embedded broker are applied in full while it misbehaves, on one
/// connection, with nothing dead-lettered. Once it answers again, it catches
/// up: the newest availability of the lot reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_or_hanging_subscriber_never_holds_ingest_back() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let manifest = parking_tests::manifest_with_fault_injector_subscribed(
        dir.path(),
        &["io.parking.availability.changed.v1"],
    )
    .unwrap();
    let parkd = Parkd::start_with(ParkdOptions {
        mqtt: MqttMode::Embedded(format!("127.0.0.1:{port}").parse().unwrap()),
        manifest: Some(manifest),
        // A hanging subscriber is stopped at its deadline: keep it short.
        limits: parkd::server::Limits { request_deadline: Duration::from_secs(2), ..Default::default() },
        ..ParkdOptions::new(Backend::Sqlite)
    })
    .await
    .unwrap();
    let bays = 60;
    assert!(
        parkd
            .put_lot("held", &parkd::simulate::lot_definition("Held", "HELD", bays))
            .await
            .status()
            .is_success()
    );
    let client = reqwest::Client::new();
    let set_mode = |mode: &'static str| {
        let (client, url) = (client.clone(), parkd.url(&format!("/test/fault/mode/{mode}")));
        async move { assert!(client.post(url).send().await.unwrap().status().is_success(), "mode {mode}") }
    };
    // Deliveries to the subscriber that ended in a 5xx (failed, or stopped at the deadline).
    let failed = || async {
        let metrics = client.get(parkd.url("/metrics")).send().await.unwrap().text().await.unwrap();
        metrics
            .lines()
            .filter(|l| l.starts_with(r#"parkd_requests_total{component="fault-injector",code="5"#))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>()
    };
    let stats = &parkd.running.bridge.as_ref().unwrap().stats;
    let mut summary = None;
    for (seed, mode) in [(1, "fail"), (2, "spin")] {
        set_mode(mode).await;
        let failed_before = failed().await;
        let before = stats.delivered.load(std::sync::atomic::Ordering::Relaxed);
        let sent = parkd::simulate::run(parkd::simulate::SimulateOptions {
            mqtt_port: port,
            bays,
            rate: 1_000_000.0,
            readings: 2000,
            seed,
            device_prefix: "HELD".into(),
            heartbeat_share: 0.0,
            progress: false,
            ..Default::default()
        })
        .await
        .unwrap();
        eventually_within(
            Duration::from_secs(120),
            "the burst applied while the subscriber misbehaves",
            || async { stats.delivered.load(std::sync::atomic::Ordering::Relaxed) >= before + sent.sent },
        )
        .await;
        let (_, availability) = parkd.availability("held").await;
        assert!(shows_last_published(&availability, &sent), "subscriber {mode}: {availability}");
        eventually_within(Duration::from_secs(30), "the subscriber misbehaving", || async {
            failed().await > failed_before
        })
        .await;
        summary = Some(sent);
    }
    assert_eq!(stats.connections.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(stats.dead_lettered.load(std::sync::atomic::Ordering::Relaxed), 0);
    assert!(summary.is_some());

    set_mode("ok").await;
    let (_, availability) = parkd.availability("held").await;
    eventually_within(Duration::from_secs(60), "the subscriber caught up with the lot", || async {
        let seen = client.get(parkd.url("/test/fault/seen/held")).send().await.unwrap();
        if !seen.status().is_success() {
            return false;
        }
        let seen: Value = seen.json().await.unwrap();
        let (zone, class) =
            (seen["zone"].as_str().unwrap_or_default(), seen["class"].as_str().unwrap_or_default());
        let shown = availability["zones"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|z| z["zone"] == zone)
            .map(|z| z["classes"][class].clone());
        shown == Some(seen["counts"].clone())
    })
    .await;
}
