//! The cluster as `knative/overlays/parkd` renders it, run on loopback
//! (tests/src/cluster.rs): every Knative Service and Deployment as the parkd
//! process its container spec describes, Mosquitto with the rendered
//! configuration and ACL, tansu for Kafka, and the Broker, Triggers,
//! KafkaSource and PingSource played from the rendered objects.

use std::future::Future;
use std::time::Duration;

use parking_tests::cluster::Cluster;
use parking_tests::knative::Reply;
use parking_tests::terminals::SseStream;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use serde_json::{Value, json};

/// A bay sensor with its own Mosquitto credential (its user name is its device id).
const SENSOR: (&str, &str) = ("E2E-BAY-1", "bay-1-secret");

async fn eventually<F, Fut>(what: &str, cluster: &Cluster, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check().await {
        if tokio::time::Instant::now() > deadline {
            panic!(
                "{what}: not within 30 s\ndeliveries: {:#?}\n{}",
                cluster.broker.deliveries(),
                cluster.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Publishes as the sensor does: over TLS (the broker's 8883), with its own credential.
async fn publish_as_sensor(cluster: &Cluster, topic: &str, payload: String) {
    let config = parkd::bridge::tls::MqttTls { ca: Some(cluster.mosquitto.ca.clone()), client_auth: None }
        .client_config()
        .unwrap();
    let mut options = MqttOptions::new(SENSOR.0, "127.0.0.1", cluster.mosquitto.tls_port);
    options
        .set_credentials(SENSOR.0, SENSOR.1)
        .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(std::sync::Arc::new(config))));
    let (client, mut eventloop) = AsyncClient::new(options, 8);
    client.publish(topic, QoS::AtLeastOnce, false, payload).await.unwrap();
    let acked = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => break Ok(()),
                Ok(_) => continue,
                Err(e) => break Err(e),
            }
        }
    })
    .await;
    assert!(matches!(acked, Ok(Ok(()))), "the sensor's publish was not acknowledged: {acked:?}");
}

fn lot() -> Value {
    json!({ "name": "E2E", "bays": [{ "id": "B1", "zone": "L1", "class": "four_wheeler", "sensor": SENSOR.0 }] })
}

/// One cluster at a time: each starts a dozen processes on ports picked
/// free beforehand, which two clusters starting together could both pick.
static ONE_CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The rendered cluster, with the guard that keeps it the only one.
async fn start() -> (Cluster, reqwest::Client, String, tokio::sync::MutexGuard<'static, ()>) {
    start_overlay("overlays/parkd").await
}

async fn start_overlay(
    overlay: &str,
) -> (Cluster, reqwest::Client, String, tokio::sync::MutexGuard<'static, ()>) {
    let one = ONE_CLUSTER.lock().await;
    let cluster = Cluster::start(overlay, &[SENSOR]).await.unwrap_or_else(|e| panic!("{e:#}"));
    let admin = cluster.secret("parking-admin", "token");
    (cluster, reqwest::Client::new(), admin, one)
}

async fn provision(cluster: &Cluster, http: &reqwest::Client, admin: &str) {
    let url = format!("{}/api/v1/lots/e2e", cluster.services["lot-admin"]);
    let r = http.put(url).bearer_auth(admin).json(&lot()).send().await.unwrap_or_else(|e| {
        panic!(
            "provisioning through lot-admin: {e} (under Spin 4.0.2 with PostgreSQL this is Spin's \
             zero-row query hang)\n{}",
            cluster.logs()
        )
    });
    assert!(
        r.status().is_success(),
        "provisioning through lot-admin: {} {}",
        r.status(),
        r.text().await.unwrap()
    );
}

/// A terminal provisioned through lot-admin, and its SSE stream opened
/// through the gateway (the rendered Ingress path /terminals).
async fn terminal_stream(cluster: &Cluster, http: &reqwest::Client, admin: &str) -> SseStream {
    let token = "e2e-terminal-token-0123456789";
    let url = format!("{}/api/v1/terminals/e2e-sign", cluster.services["lot-admin"]);
    let r =
        http.put(url).bearer_auth(admin).json(&json!({ "lot": "e2e", "token": token })).send().await.unwrap();
    assert!(r.status().is_success(), "provisioning the terminal: {}", r.status());
    let stream_url =
        format!("{}/terminals/e2e-sign/stream?token={token}", cluster.services["parking-gateway"]);
    SseStream::open(http, &stream_url, None).await.unwrap()
}

/// The sensor, with its own credentials, reports its bay occupied.
async fn publish_occupied(cluster: &Cluster) {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let reading = json!({ "device": SENSOR.0, "occupied": true, "seq": 1, "observedAt": now });
    publish_as_sensor(cluster, &format!("parking/uplink/{}", SENSOR.0), reading.to_string()).await;
}

async fn four_wheelers(cluster: &Cluster, http: &reqwest::Client) -> Value {
    let url = format!("{}/api/v1/lots/e2e/availability", cluster.services["availability-query"]);
    let r = http.get(url).send().await.unwrap();
    r.json::<Value>().await.unwrap_or(Value::Null)["classes"]["four_wheeler"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sensor_uplink_reaches_the_availability_api_and_a_ping_runs_the_sweep() {
    let (cluster, http, admin, _one) = start().await;
    provision(&cluster, &http, &admin).await;
    assert_eq!(four_wheelers(&cluster, &http).await["unknown"], 1);

    // Sensor → Mosquitto (TLS, its ACL) → bridge → Kafka → KafkaSource →
    // Broker → Trigger sensor-uplinks → sensor-event → PostgreSQL.
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let reading = json!({ "device": SENSOR.0, "occupied": true, "seq": 1, "observedAt": now });
    publish_as_sensor(&cluster, &format!("parking/uplink/{}", SENSOR.0), reading.to_string()).await;
    eventually("the uplink counted by the availability API", &cluster, || async {
        four_wheelers(&cluster, &http).await["occupied"] == 1
    })
    .await;
    let delivery = cluster.broker.delivered_by("sensor-uplinks", Duration::from_secs(5)).await.unwrap();
    assert_eq!(delivery.status, Some(200), "{delivery:?}");

    // The PingSource's tick → Broker → Trigger retention-tick → retention-sweep.
    assert_eq!(cluster.ping().unwrap(), 1, "one PingSource rendered");
    let sweep = cluster.broker.delivered_by("retention-tick", Duration::from_secs(60)).await.unwrap();
    assert_eq!(sweep.status, Some(200), "the sweep ran: {sweep:?}\n{}", cluster.logs());

    // Every metrics scrape target (the functions' pods, the bridge and the
    // gateway; knative/check checks the monitors point at these) answers.
    // Each is scraped as its rendered monitor says, with its bearer token.
    for (name, base) in &cluster.services {
        let mut request = http.get(format!("{base}/metrics"));
        if let Some(token) = scrape_token(&cluster, name) {
            request = request.bearer_auth(token);
        }
        let r = request.send().await.unwrap();
        let body = r.text().await.unwrap();
        assert!(body.contains("# TYPE parkd_"), "{name} /metrics: {body}");
    }
}

/// The bearer token the rendered monitor scraping `name` presents: the
/// functions' PodMonitor for a Knative Service labelled as a function, the
/// edge's ServiceMonitor otherwise.
fn scrape_token(cluster: &Cluster, name: &str) -> Option<String> {
    let function = cluster.objects.iter().any(|o| {
        o["kind"] == "Service"
            && o["metadata"]["name"] == name
            && o["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == "function"
    });
    let (kind, endpoints) =
        if function { ("PodMonitor", "podMetricsEndpoints") } else { ("ServiceMonitor", "endpoints") };
    let monitors: Vec<&serde_norway::Value> = cluster.objects.iter().filter(|o| o["kind"] == kind).collect();
    assert_eq!(monitors.len(), 1, "one {kind} rendered");
    let credentials = &monitors[0]["spec"][endpoints][0]["authorization"]["credentials"];
    let secret = credentials["name"].as_str()?;
    Some(cluster.secret(secret, credentials["key"].as_str().expect("the credentials' key")))
}

/// A terminal's SSE stream (the gateway, through the rendered Ingress path
/// /terminals) shows the uplink: sensor-event replies to the Broker with the
/// one event a Knative Broker takes (availability.changed), which the
/// rendered Trigger hands to terminal-push. The public page's stream (the
/// gateway, Ingress path /find) shows it too: terminal-push published the
/// lot's summary and the gateway read it, both under the rendered ACL.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sensor_uplink_reaches_a_terminals_sse_stream() {
    let (cluster, http, admin, _one) = start().await;
    provision(&cluster, &http, &admin).await;
    let mut stream = terminal_stream(&cluster, &http, &admin).await;
    let public = format!("{}/find/stream", cluster.services["parking-gateway"]);
    let mut public = SseStream::open(&http, &public, None).await.unwrap();
    publish_occupied(&cluster).await;
    let delivery = cluster.broker.delivered_by("sensor-uplinks", Duration::from_secs(30)).await.unwrap();
    assert!(matches!(delivery.reply, Reply::Event(_)), "sensor-event's reply: {delivery:?}");
    // The terminal's first frame (unknown, rendered when it was provisioned) may come first.
    frame_showing(&cluster, &mut stream, "occupied", 1).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let event = public.next(left).await.unwrap_or_else(|e| {
            panic!("no summary of lot e2e on the public stream: {e:#}\n{}", cluster.logs())
        });
        if event.event == "lot" && event.json()["classes"]["four_wheeler"]["occupied"] == 1 {
            assert_eq!(event.json()["lot"], "e2e", "{event:?}");
            break;
        }
    }
}

/// What the sweep derives reaches a terminal too: a sensor silent past its
/// heartbeat window is marked unknown by the sweep the PingSource sets off,
/// which sends the derived events to the rendered Broker's ingress (a
/// Knative Broker drops a batch reply); the rendered Trigger hands the
/// availability change to terminal-push, and the sign shows the bay unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sensor_gone_silent_reaches_a_terminal_through_the_sweep_and_the_broker() {
    let (cluster, http, admin, _one) = start().await;
    provision(&cluster, &http, &admin).await;
    let mut stream = terminal_stream(&cluster, &http, &admin).await;
    publish_occupied(&cluster).await;
    frame_showing(&cluster, &mut stream, "occupied", 1).await;

    // Three hours of silence (the window of a sensor of no known model is 2h10m).
    let database = cluster.translate(&cluster.secret("parking-database", "url"));
    let db = parking_tests::db::Db::connect(&database, &std::env::temp_dir()).await.unwrap();
    let three_hours_ago = chrono::Utc::now().timestamp_millis() - 3 * 3600 * 1000;
    db.execute(&format!("UPDATE bays SET last_seen_at_ms = {three_hours_ago} WHERE sensor = '{}'", SENSOR.0))
        .await;

    assert_eq!(cluster.ping().unwrap(), 1, "one PingSource rendered");
    let sweep = cluster.broker.delivered_by("retention-tick", Duration::from_secs(60)).await.unwrap();
    assert_eq!(sweep.status, Some(200), "the sweep ran: {sweep:?}\n{}", cluster.logs());
    assert_eq!(sweep.reply, Reply::Event("io.parking.sweep.report.v1".into()), "its reply is one event");
    let derived: Vec<String> = cluster
        .broker
        .received()
        .iter()
        .filter(|e| e.attributes.get("source").is_some_and(|s| s.contains("retention-sweep")))
        .map(|e| e.kind().to_owned())
        .collect();
    assert!(
        derived.contains(&"io.parking.availability.changed.v1".to_owned())
            && derived.contains(&"io.parking.sensor.alert.v1".to_owned()),
        "the sweep sent its events to the Broker's ingress: {derived:?}"
    );
    let frame = frame_showing(&cluster, &mut stream, "unknown", 1).await;
    assert_eq!(frame["classes"][0]["occupied"], 0, "{frame}");
    // The report reaches terminal-push too (Trigger sweep-to-terminals),
    // which renders every sign again.
    let rerender = cluster.broker.delivered_by("sweep-to-terminals", Duration::from_secs(60)).await.unwrap();
    assert_eq!(rerender.status, Some(200), "terminal-push took the report: {rerender:?}\n{}", cluster.logs());
}

/// A terminal provisioned on a quiet lot shows the truth at once: lot-admin
/// is called through the Ingress, so its answer goes back to the caller, not
/// to the Broker; it sends `terminal.changed` to the Broker's ingress itself,
/// and the rendered Trigger hands it to terminal-push, which renders the
/// first frame. No bay changes and no sweep runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_terminal_provisioned_on_a_quiet_lot_shows_its_frame_at_once() {
    let (cluster, http, admin, _one) = start().await;
    provision(&cluster, &http, &admin).await;
    let mut stream = terminal_stream(&cluster, &http, &admin).await;
    let delivery = cluster
        .broker
        .delivered_by("terminal-changes-to-terminals", Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", cluster.logs()));
    assert_eq!(delivery.status, Some(200), "terminal-push took the event: {delivery:?}\n{}", cluster.logs());
    let frame = frame_showing(&cluster, &mut stream, "unknown", 1).await;
    assert_eq!(frame["terminal"], "e2e-sign", "{frame}");
}

/// The first frame on `stream` whose first class shows `count` bays `status`.
async fn frame_showing(cluster: &Cluster, stream: &mut SseStream, status: &str, count: u64) -> Value {
    loop {
        let frame = stream
            .next_frame(Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("no frame with {count} {status}: {e:#}\n{}", cluster.logs()))
            .json();
        if frame["classes"][0][status] == count {
            return frame;
        }
    }
}

/// `knative/overlays/spinkube` as rendered, its functions under the Spin CLI
/// as SpinKube's shim runs them (each Service the app with only its own
/// component; the bridge, gateway and migration Job stay parkd): a sensor's
/// uplink reaches the availability API and a terminal's stream, and every
/// rendered Trigger (the PingSource's tick included) posts to a route its
/// Service's component serves under Spin, which answers 2xx. Skipped, saying
/// so, without a Spin CLI (`PARKING_SPIN`, or `spin` on PATH).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_spinkube_every_trigger_and_the_ping_reach_a_route_that_answers() {
    if parking_tests::cluster::spin_binary().is_none() {
        eprintln!(
            "SKIPPED under_spinkube_every_trigger_and_the_ping_reach_a_route_that_answers: no Spin CLI \
             (set PARKING_SPIN to its path or put `spin` on PATH)"
        );
        return;
    }
    let (cluster, _, admin, _one) = start_overlay("overlays/spinkube").await;
    // Bounded: under Spin 4.0.2 a PostgreSQL query that returns no rows never
    // answers (Spin's bug, see the README's "Under `spin up`"), and this
    // overlay's database is PostgreSQL.
    let http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(60)).build().unwrap();
    provision(&cluster, &http, &admin).await;
    assert_eq!(four_wheelers(&cluster, &http).await["unknown"], 1, "{}", cluster.logs());
    let mut stream = terminal_stream(&cluster, &http, &admin).await;
    publish_occupied(&cluster).await;
    eventually("the uplink counted by the availability API", &cluster, || async {
        four_wheelers(&cluster, &http).await["occupied"] == 1
    })
    .await;
    // terminal-push, under Spin, published the frame with its own credential
    // (after the terminal's first frame, which lot-admin's event set off).
    frame_showing(&cluster, &mut stream, "occupied", 1).await;

    assert_eq!(cluster.ping().unwrap(), 1, "one PingSource rendered");
    let triggers = parking_tests::knative::triggers(&cluster.objects, "parking").unwrap();
    assert!(!triggers.is_empty(), "no Trigger rendered");
    for trigger in &triggers {
        let delivery = cluster
            .broker
            .delivered_by(&trigger.name, Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("{e:#}\n{}", cluster.logs()));
        assert!(
            delivery.status.is_some_and(|s| (200..300).contains(&s)),
            "Trigger {} posted to {} {} under Spin: {delivery:?}\n{}",
            trigger.name,
            trigger.service,
            trigger.path,
            cluster.logs()
        );
    }
}

/// parkd's text logs carry no colour codes when they go to a file or a pipe.
#[test]
fn parkd_logs_are_plain_text_when_not_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(parking_tests::cluster::parkd_binary().unwrap())
        .args(["--log-format", "text", "migrate", "--database", "sqlite", "--data-dir"])
        .arg(dir.path())
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let logs = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{logs}");
    assert!(logs.contains("migrations applied"), "{logs}");
    assert!(!logs.contains('\u{1b}'), "ANSI escape codes in piped logs: {logs:?}");
}
