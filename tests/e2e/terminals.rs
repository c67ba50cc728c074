//! Display terminals end to end: provisioning through the admin API, and
//! terminal-push publishing retained frames to a real Mosquitto when a
//! sensor reading arrives over MQTT, and the gateway's streams: frames are
//! state (the newest one, at most one per interval, the last always), many
//! clients at once, and a frame at once for a new terminal. Storage
//! scenarios run on SQLite and on PostgreSQL.

use std::time::Duration;

use parkd::up::MqttMode;
use parking_tests::db::Db;
use parking_tests::mosquitto::Mosquitto;
use parking_tests::terminals::{SseStream, next_matching, subscribe, token_for};
use parking_tests::{Backend, Parkd, ParkdOptions, lot_spec, manifest_with_recorder, reading};
use reqwest::StatusCode;
use rumqttc::QoS;
use serde_json::{Value, json};

use parking_tests::on_both_backends;

on_both_backends!(
    streams_refuse_missing_and_foreign_tokens,
    terminals_are_provisioned_and_refused_with_reasons,
    a_reading_over_mqtt_publishes_retained_frames_to_the_terminals_that_show_it,
    a_redelivered_change_publishes_the_same_frame_again,
    a_change_delivered_after_a_newer_one_shows_the_present_and_never_goes_back,
    a_new_terminal_on_a_quiet_lot_gets_its_frame_without_any_reading,
    a_burst_across_zones_leaves_each_zones_sign_on_its_final_count,
    a_round_of_changes_in_several_zones_renders_a_sign_showing_them_all_once,
    a_batch_of_changes_renders_the_readable_ones_and_says_which_it_refused,
    a_subscriber_that_takes_no_batch_gets_a_rounds_changes_one_by_one,
    a_change_whose_event_never_arrived_reaches_the_sign_with_the_next_sweep,
    a_deleted_lots_signs_are_cleared_by_the_next_sweep,
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

    // Frame 1 came with the terminal (no bay free); frame 2 shows the reading.
    let mut first = SseStream::open(&parkd.client, &url, None).await.unwrap();
    let current = frames_until_free(&mut first, 1).await;
    assert_eq!(current.last(), Some(&2), "the current frame at once: {current:?}");
    free_bay(&parkd, 1).await;
    let live = first.next_frame(WAIT).await.unwrap();
    assert_eq!(live.id.as_deref(), Some("3"));
    assert_eq!(live.json()["classes"][0]["free"], 2);
    // Idle streams carry a ping event every keep-alive (1 s here).
    let ping = first.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(ping.event, "ping");
    assert!(ping.data.parse::<i64>().is_ok(), "the gateway's clock: {ping:?}");
    drop(first);

    // Missed while away: two readings (one frame or two: renders of a lot
    // are coalesced).
    free_bay(&parkd, 2).await;
    free_bay(&parkd, 3).await;
    // A new client gets the gateway's current frame at once. Renders run
    // after the readings are answered, one in flight per lot and the newest
    // waiting, so up to two newer frames may still be on their way and come
    // next, live; never one it had.
    let mut newest = SseStream::open(&parkd.client, &url, None).await.unwrap();
    let ids = frames_until_free(&mut newest, 4).await;
    assert!(ids.len() <= 3 && ids[0] >= 3 && ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let last = *ids.last().unwrap();

    // Frames are state: a client that resumes gets the newest frame, not
    // each one it missed, and nothing it has.
    let mut resumed = SseStream::open(&parkd.client, &url, Some(3)).await.unwrap();
    let newest = resumed.next_frame(WAIT).await.unwrap();
    let newest_id = newest.id.as_deref().and_then(|id| id.parse::<u64>().ok());
    assert_eq!((newest_id, newest.json()["classes"][0]["free"].as_u64()), (Some(last), Some(4)));
    free_bay(&parkd, 4).await;
    let live = resumed.next_frame(WAIT).await.unwrap();
    assert_eq!(live.id.as_deref(), Some((last + 1).to_string().as_str()), "then live, nothing twice");

    // Up to date already: nothing until the next frame.
    let mut current_client = SseStream::open(&parkd.client, &url, Some(last + 1)).await.unwrap();
    assert!(current_client.next_frame(Duration::from_millis(1500)).await.is_err());
}

/// Reads `stream`'s frames until one shows `free` free car bays; answers
/// the seqs it saw.
async fn frames_until_free(stream: &mut SseStream, free: u64) -> Vec<u64> {
    let mut seqs = Vec::new();
    loop {
        let frame = stream.next_frame(WAIT).await.unwrap();
        seqs.push(frame.id.as_deref().unwrap().parse::<u64>().unwrap());
        if frame.json()["classes"][0]["free"].as_u64() == Some(free) {
            return seqs;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_clients_reconnecting_at_once_get_the_current_frame_then_the_final_one() {
    const CLIENTS: usize = 1000;
    const READINGS: usize = 10;
    let broker = Mosquitto::start().unwrap();
    let parkd = lot_with_terminal(Backend::Sqlite, &broker, READINGS).await;
    free_bay(&parkd, 0).await;
    let url = stream_url(&parkd, "T1", &token_for("T1"));
    let gateway = parkd.running.gateway.as_ref().unwrap();
    let lookups_before = gateway.token_lookups();
    // A reconnect storm (the gateway restarted, say): every client at once,
    // each on its own connection, resuming after the frame it had (seq 1,
    // the terminal's first).
    let opening = (0..CLIENTS).map(|_| {
        let url = url.clone();
        async move { SseStream::open(&reqwest::Client::new(), &url, Some(1)).await }
    });
    let mut streams = Vec::new();
    for opened in futures::future::join_all(opening).await {
        streams.push(opened.expect("every client is let in (no 503)"));
    }
    // One look-up per cache lifetime (a loaded machine may take longer than one).
    assert!(
        gateway.token_lookups() - lookups_before <= 3,
        "one token, {CLIENTS} checks at once: a look-up or so, not {}",
        gateway.token_lookups() - lookups_before
    );
    assert_eq!(gateway.metrics.connections.get(), CLIENTS as i64);
    assert_eq!(gateway.metrics.reconnects.get(), CLIENTS as u64, "each counted as a reconnect");
    let readers: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            tokio::spawn(async move {
                let current = frames_until_free(&mut stream, 1).await;
                let rest = frames_until_free(&mut stream, READINGS as u64).await;
                (current, rest)
            })
        })
        .collect();
    for i in 1..READINGS {
        free_bay(&parkd, i).await;
    }
    let mut finals = std::collections::BTreeSet::new();
    for reader in readers {
        let (current, rest) = reader.await.unwrap();
        // Frame 1 came with the terminal, frame 2 with the first reading.
        assert_eq!(current.last(), Some(&2), "the current frame at once: {current:?}");
        assert!(rest.windows(2).all(|w| w[0] < w[1]), "in order, nothing twice: {rest:?}");
        // Renders of a lot are coalesced: fewer frames than readings, maybe.
        finals.insert(*rest.last().expect("the final frame"));
    }
    assert_eq!(finals.len(), 1, "every client ends on the same final frame: {finals:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_readings_yields_fewer_frames_than_readings_and_the_final_frame_is_right() {
    const READINGS: usize = 12;
    let broker = Mosquitto::start().unwrap();
    let parkd = Parkd::start_with(ParkdOptions {
        mqtt: MqttMode::External(broker.url()),
        // Longer than the whole burst takes: it is one frame, plus the first.
        gateway_frame_interval: Duration::from_secs(3),
        ..ParkdOptions::new(Backend::Sqlite)
    })
    .await
    .unwrap();
    parkd.put_lot("north", &lot_spec("North", "N", READINGS, 0)).await;
    parkd.put_terminal("T1", "north", None).await;
    let mut stream =
        SseStream::open(&parkd.client, &stream_url(&parkd, "T1", &token_for("T1")), None).await.unwrap();
    assert_eq!(
        stream.next_frame(WAIT).await.unwrap().json()["classes"][0]["free"],
        0,
        "the new terminal's frame"
    );
    for i in 0..READINGS {
        free_bay(&parkd, i).await;
    }
    let seen = frames_until_free(&mut stream, READINGS as u64).await;
    // frames_until_free returned: the final state was shown, though the cap held it.
    assert!(seen.len() < READINGS, "{READINGS} readings, {} frames: {seen:?}", seen.len());
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "in order, nothing twice: {seen:?}");
}

/// A burst of readings in two zones of one lot: renders of the lot
/// coalesce, yet each zone's sign ends on its zone's final count (a change
/// of one zone never stands in for a change of the other, which renders
/// other terminals). No sweep runs here to mend a lost change.
async fn a_burst_across_zones_leaves_each_zones_sign_on_its_final_count(backend: Backend) {
    const EACH: usize = 24;
    let broker = Mosquitto::start().unwrap();
    let parkd = parkd_with_broker(backend, &broker).await;
    parkd.put_lot("north", &lot_spec("North", "N", EACH, EACH)).await;
    assert_eq!(parkd.put_terminal("CARS", "north", Some(&["L1"])).await.status(), StatusCode::CREATED);
    assert_eq!(parkd.put_terminal("BIKES", "north", Some(&["M"])).await.status(), StatusCode::CREATED);
    let readings = (0..EACH).flat_map(|i| [format!("N-C{i}"), format!("N-M{i}")]).map(|device| {
        let parkd = &parkd;
        async move {
            let r = parkd
                .send_reading(&format!("free-{device}"), &reading(&device, false, 1, "2026-11-25T10:00:00Z"))
                .await;
            assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);
        }
    });
    futures::future::join_all(readings).await;
    let gateway = parkd.running.gateway.as_ref().unwrap();
    let free = |terminal: &str| {
        gateway
            .frames
            .current(terminal)
            .map(|f| serde_json::from_slice::<Value>(f.json()).unwrap()["classes"][0]["free"].clone())
    };
    let deadline = std::time::Instant::now() + WAIT;
    while free("CARS") != Some(json!(EACH)) || free("BIKES") != Some(json!(EACH)) {
        assert!(
            std::time::Instant::now() < deadline,
            "each sign ends on its zone's count ({EACH} free): cars show {:?}, bikes {:?}",
            free("CARS"),
            free("BIKES")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A lot of one car bay in each of `zones` zones (`Z0`, `Z1`, ...), sensors
/// `N-Z0`, `N-Z1`, ...
fn lot_in_zones(zones: usize) -> Value {
    let bays: Vec<Value> = (0..zones)
        .map(|i| json!({ "id": format!("B{i}"), "zone": format!("Z{i}"), "class": "four_wheeler", "sensor": format!("N-Z{i}") }))
        .collect();
    json!({ "name": "North", "bays": bays })
}

/// A parkd whose rounds of renders start 3 s apart: longer than a few
/// readings take, so every change after the first waits for one round.
async fn parkd_with_long_rounds(
    backend: Backend,
    broker: &Mosquitto,
    manifest: Option<std::path::PathBuf>,
) -> Parkd {
    Parkd::start_with(ParkdOptions {
        mqtt: MqttMode::External(broker.url()),
        manifest,
        gateway_frame_interval: Duration::from_secs(3),
        ..ParkdOptions::new(backend)
    })
    .await
    .unwrap()
}

/// Turns the bay of each of the first `zones` zones free, one reading each.
async fn free_a_bay_in_each_zone(parkd: &Parkd, zones: usize) {
    for i in 0..zones {
        let device = format!("N-Z{i}");
        let r = parkd
            .send_reading(&format!("free-{i}"), &reading(&device, false, 1, "2026-11-25T10:00:00Z"))
            .await;
        assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);
    }
}

/// The requests parkd has handed `component`, whatever their answer.
async fn requests_to(parkd: &Parkd, component: &str) -> u64 {
    let text = parkd.client.get(parkd.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let prefix = format!("parkd_requests_total{{component=\"{component}\",");
    text.lines()
        .filter(|l| l.starts_with(&prefix))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

/// Changes of several zones of one lot that wait for the same round reach
/// terminal-push together: a sign that shows every zone is rendered once
/// for all of them (not once per zone), and shows each zone's count.
async fn a_round_of_changes_in_several_zones_renders_a_sign_showing_them_all_once(backend: Backend) {
    const ZONES: usize = 4;
    let broker = Mosquitto::start().unwrap();
    let parkd = parkd_with_long_rounds(backend, &broker, None).await;
    assert_eq!(parkd.put_lot("north", &lot_in_zones(ZONES)).await.status(), StatusCode::CREATED);
    let (_sub, mut frames) = subscribe(broker.port, "parking/terminals/ALL/frame").await.unwrap();
    assert_eq!(parkd.put_terminal("ALL", "north", None).await.status(), StatusCode::CREATED);
    next_matching(&mut frames, WAIT, |m| m.json()["seq"] == 1).await.unwrap();
    parkd.settled().await;
    let before = requests_to(&parkd, "terminal-push").await;

    free_a_bay_in_each_zone(&parkd, ZONES).await;
    parkd.settled().await;
    // Z0's change at once, then one round for the other three zones' changes.
    assert_eq!(requests_to(&parkd, "terminal-push").await - before, 2, "renders for {ZONES} zones' changes");
    let mut published = Vec::new();
    while let Ok(m) = next_matching(&mut frames, Duration::from_millis(500), |_| true).await {
        published.push(m.json());
    }
    let seqs: Vec<_> = published.iter().map(|f| f["seq"].clone()).collect();
    assert_eq!(seqs, [json!(2), json!(3)], "one frame per render: {published:?}");
    let last = &published[1];
    assert_eq!(last["classes"][0]["free"], ZONES, "{last}");
    assert_eq!(last["text"], "Z0  CARS 1\nZ1  CARS 1\nZ2  CARS 1\nZ3  CARS 1", "{last}");
}

/// A subscriber written for Knative takes one event per request: parkd
/// delivers a round's changes to it one by one (the fixture refuses a
/// batch), while terminal-push still gets the round as one batch.
async fn a_subscriber_that_takes_no_batch_gets_a_rounds_changes_one_by_one(backend: Backend) {
    const ZONES: usize = 4;
    let broker = Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let recorder = manifest_with_recorder(dir.path(), &["io.parking.availability.changed.v1"]).unwrap();
    let parkd = parkd_with_long_rounds(backend, &broker, Some(recorder)).await;
    assert_eq!(parkd.put_lot("north", &lot_in_zones(ZONES)).await.status(), StatusCode::CREATED);
    assert_eq!(parkd.put_terminal("ALL", "north", None).await.status(), StatusCode::CREATED);
    parkd.settled().await;
    let before = requests_to(&parkd, "terminal-push").await;
    free_a_bay_in_each_zone(&parkd, ZONES).await;
    let recorded = parkd.recorded().await;
    let mut subjects: Vec<&str> = recorded.iter().map(|e| e["subject"].as_str().unwrap()).collect();
    subjects.sort();
    let each: Vec<String> = (0..ZONES).map(|i| format!("north/Z{i}/four_wheeler")).collect();
    assert_eq!(subjects, each, "every zone's change, once each: {recorded:?}");
    assert!(recorded.iter().all(|e| e["type"] == "io.parking.availability.changed.v1"), "{recorded:?}");
    assert_eq!(requests_to(&parkd, "terminal-push").await - before, 2, "terminal-push takes the round whole");
}

/// A batch of availability changes (what parkd delivers for a round, and
/// what a sender may POST) renders each lot's signs from the readable
/// changes and answers what became of each event, in order.
async fn a_batch_of_changes_renders_the_readable_ones_and_says_which_it_refused(backend: Backend) {
    let broker = Mosquitto::start().unwrap();
    let (parkd, change) = sign_on_its_second_frame(backend, &broker).await;
    let mut unreadable = change.clone();
    unreadable["id"] = json!("not-counts");
    unreadable["data"] = json!({ "lot": "north" });
    let batch = json!([unreadable, change]);
    let answer = post_batch(&parkd, &batch).await;
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{answer}");
    assert_eq!(results[0]["id"], "not-counts");
    assert_eq!(results[0]["status"], 400, "{answer}");
    assert!(
        results[0]["error"].as_str().unwrap().contains("io.parking.availability.changed.v1 data"),
        "{answer}"
    );
    assert_eq!(results[1]["id"], change["id"]);
    assert_eq!(results[1]["status"], 200, "{answer}");
    assert_eq!(answer["published"], json!([{ "terminal": "T1", "seq": 2 }]), "{answer}");
    assert_eq!(answer["summaries"], json!(["north"]), "{answer}");
    // The same batch again, as a retry delivers it: the very same frame, nothing new.
    let again = post_batch(&parkd, &batch).await;
    assert_eq!(again["results"], answer["results"]);
    assert_eq!(again["published"], json!([{ "terminal": "T1", "seq": 2 }]), "{again}");
}

/// POSTs a CloudEvents batch to the events route; answers its 200's body.
async fn post_batch(parkd: &Parkd, batch: &Value) -> Value {
    let r = parkd
        .client
        .post(parkd.url("/api/v1/events"))
        .header("content-type", "application/cloudevents-batch+json")
        .body(batch.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

async fn a_new_terminal_on_a_quiet_lot_gets_its_frame_without_any_reading(backend: Backend) {
    let broker = Mosquitto::start().unwrap();
    let parkd = parkd_with_broker(backend, &broker).await;
    parkd.put_lot("north", &lot_spec("North", "N", 3, 0)).await;
    // No reading at all: every bay is unknown.
    assert_eq!(parkd.put_terminal("QUIET", "north", None).await.status(), StatusCode::CREATED);
    let mut stream = SseStream::open(&parkd.client, &stream_url(&parkd, "QUIET", &token_for("QUIET")), None)
        .await
        .unwrap();
    let frame = stream.next_frame(WAIT).await.expect("a frame at once, without any reading");
    assert_eq!(frame.id.as_deref(), Some("1"));
    assert_eq!(frame.json()["classes"][0]["total"], 3);
    assert_eq!(frame.json()["classes"][0]["free"], 0);
    // Changing its scope renders again at once.
    parkd.put_lot("north", &lot_spec("North", "N", 3, 2)).await;
    assert_eq!(parkd.put_terminal("QUIET", "north", Some(&["M"])).await.status(), StatusCode::OK);
    let changed = stream.next_frame(WAIT).await.unwrap();
    assert_eq!(changed.json()["classes"][0]["class"], "two_wheeler", "{:?}", changed.json());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_terminal_ends_its_streams_clears_its_retained_frame_and_its_token_at_once() {
    let broker = Mosquitto::start().unwrap();
    let parkd = lot_with_terminal(Backend::Sqlite, &broker, 2).await;
    let url = stream_url(&parkd, "T1", &token_for("T1"));
    let mut stream = SseStream::open(&parkd.client, &url, None).await.unwrap();
    stream.next_frame(WAIT).await.unwrap();
    let r = parkd.client.delete(parkd.url("/api/v1/terminals/T1")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let ended = stream.next_frame(WAIT).await.unwrap_err().to_string();
    assert!(ended.contains("ended"), "the stream of a deleted terminal ends: {ended}");
    // Its token is refused now, not once a cache forgets it.
    let r = parkd.client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // And a sign connecting now gets no frame of it.
    let (_late, mut late) = subscribe(broker.port, "parking/terminals/T1/frame").await.unwrap();
    let retained = next_matching(&mut late, Duration::from_millis(1500), |m| !m.payload.is_empty()).await;
    assert!(retained.is_err(), "no retained frame is left: {retained:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_metrics_count_connections_frames_and_reconnects() {
    let broker = Mosquitto::start().unwrap();
    let parkd = lot_with_terminal(Backend::Sqlite, &broker, 3).await;
    let scrape = || async {
        let text = parkd.client.get(parkd.url("/metrics")).send().await.unwrap().text().await.unwrap();
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{text}"))
        };
        [
            value("parkd_gateway_connections"),
            value("parkd_gateway_frames_sent_total"),
            value("parkd_gateway_reconnects_total"),
            value("parkd_gateway_frames_skipped_total"),
        ]
    };
    assert_eq!(scrape().await[..3], [0.0, 0.0, 0.0]);
    let url = stream_url(&parkd, "T1", &token_for("T1"));
    let mut first = SseStream::open(&parkd.client, &url, None).await.unwrap();
    first.next_frame(WAIT).await.unwrap();
    let mut again = SseStream::open(&parkd.client, &url, Some(0)).await.unwrap();
    again.next_frame(WAIT).await.unwrap();
    let [connections, sent, reconnects, _] = scrape().await;
    assert_eq!((connections, sent, reconnects), (2.0, 2.0, 1.0));
    drop(first);
    drop(again);
    // The gauge follows the streams as their connections close.
    let deadline = tokio::time::Instant::now() + WAIT;
    while scrape().await[0] != 0.0 {
        assert!(tokio::time::Instant::now() < deadline, "the connections gauge never went back to 0");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_frame_with_a_huge_seq_does_not_hide_later_genuine_frames_even_after_a_restart() {
    let broker = Mosquitto::start().unwrap();
    let parkd = lot_with_terminal(Backend::Sqlite, &broker, 4).await;
    let url = stream_url(&parkd, "T1", &token_for("T1"));
    let mut stream = SseStream::open(&parkd.client, &url, None).await.unwrap();
    assert_eq!(stream.next_frame(WAIT).await.unwrap().id.as_deref(), Some("1"));

    // Anyone who can publish to the frame topic (no ACL on this broker).
    let (forger, _) = subscribe(broker.port, "unused/none").await.unwrap();
    let forged = json!({
        "terminal": "T1", "lot": "north", "seq": 1_000_000_000_000u64,
        "renderedAt": chrono::Utc::now().to_rfc3339(), "classes": [], "zones": [], "text": "FORGED"
    });
    forger.publish("parking/terminals/T1/frame", QoS::AtLeastOnce, true, forged.to_string()).await.unwrap();
    assert_eq!(stream.next_frame(WAIT).await.unwrap().json()["text"], "FORGED", "plausible, so shown");

    // Genuine frames rendered past the reorder window win, whatever the seq.
    tokio::time::sleep(parkd::gateway::frames::REORDER_WINDOW + Duration::from_millis(500)).await;
    free_bay(&parkd, 0).await;
    let genuine = stream.next_frame(WAIT).await.unwrap();
    assert_eq!((genuine.id.as_deref(), genuine.json()["classes"][0]["free"].as_u64()), (Some("2"), Some(1)));
    free_bay(&parkd, 1).await;
    assert_eq!(stream.next_frame(WAIT).await.unwrap().id.as_deref(), Some("3"), "and on, by seq");

    // A gateway starting now gets the genuine retained frame, not the forged one.
    let restarted = Parkd::bridging(broker.url(), Backend::Sqlite).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    let gateway = restarted.running.gateway.as_ref().unwrap();
    while gateway.frames.current("T1").map(|f| f.seq) != Some(3) {
        assert!(tokio::time::Instant::now() < deadline, "the restarted gateway never showed frame 3");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The last frame `stream` sends until one shows `free` free car bays: (id, data).
async fn frame_showing(stream: &mut SseStream, free: u64) -> (Option<String>, String) {
    loop {
        let frame = stream.next_frame(WAIT).await.unwrap();
        if frame.json()["classes"][0]["free"].as_u64() == Some(free) {
            return (frame.id, frame.data);
        }
    }
}

/// A stream asked for on a new connection is written on the bare socket; on a
/// connection kept alive after another request, hyper serves it. Both send
/// the same events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_on_a_new_connection_and_one_on_a_kept_alive_connection_send_the_same_frames() {
    let broker = Mosquitto::start().unwrap();
    let parkd = lot_with_terminal(Backend::Sqlite, &broker, 3).await;
    let url = stream_url(&parkd, "T1", &token_for("T1"));
    let kept_alive = reqwest::Client::builder().pool_max_idle_per_host(1).build().unwrap();
    let lots = kept_alive.get(parkd.url("/api/v1/lots")).send().await.unwrap();
    assert_eq!(lots.status(), StatusCode::OK);
    lots.text().await.unwrap();
    let mut by_hyper = SseStream::open(&kept_alive, &url, None).await.unwrap();
    let new_connection = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let mut bare = SseStream::open(&new_connection, &url, None).await.unwrap();
    let header = |stream: &SseStream, name: &str| {
        stream.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
    };
    assert_eq!(header(&by_hyper, "transfer-encoding").as_deref(), Some("chunked"), "hyper's chunks");
    assert_eq!(
        header(&bare, "connection").as_deref(),
        Some("close"),
        "the bare socket, delimited by its close"
    );
    for stream in [&by_hyper, &bare] {
        assert_eq!(header(stream, "content-type").as_deref(), Some("text/event-stream"));
        assert_eq!(header(stream, "cache-control").as_deref(), Some("no-store"));
    }
    for free in 0..3u64 {
        let (a, b) = (frame_showing(&mut by_hyper, free).await, frame_showing(&mut bare, free).await);
        assert_eq!(a, b);
        free_bay(&parkd, free as usize).await;
    }
    assert_eq!(frame_showing(&mut by_hyper, 3).await, frame_showing(&mut bare, 3).await);
}

/// Streams are not requests: parkd up's cap on connections serving requests
/// does not count them, so signs beyond it still connect and the API still answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_beyond_the_request_connection_cap_connect_and_the_api_still_answers() {
    let broker = Mosquitto::start().unwrap();
    let limits = parkd::server::Limits { max_connections: 4, ..Default::default() };
    let parkd = Parkd::start_with(ParkdOptions {
        mqtt: MqttMode::External(broker.url()),
        limits,
        ..ParkdOptions::new(Backend::Sqlite)
    })
    .await
    .unwrap();
    assert_eq!(parkd.put_lot("north", &lot_spec("North", "N", 2, 0)).await.status(), StatusCode::CREATED);
    assert_eq!(parkd.put_terminal("T1", "north", None).await.status(), StatusCode::CREATED);
    let url = stream_url(&parkd, "T1", &token_for("T1"));
    let new_connections = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let mut streams = Vec::new();
    for _ in 0..12 {
        let mut stream = tokio::time::timeout(WAIT, SseStream::open(&new_connections, &url, None))
            .await
            .expect("a stream beyond the cap connects")
            .unwrap();
        stream.next_frame(WAIT).await.unwrap();
        streams.push(stream);
    }
    let lots = tokio::time::timeout(WAIT, new_connections.get(parkd.url("/api/v1/lots")).send())
        .await
        .expect("the API answers beside 12 streams")
        .unwrap();
    assert_eq!(lots.status(), StatusCode::OK);
    free_bay(&parkd, 0).await;
    for stream in &mut streams {
        assert!(!frame_showing(stream, 1).await.1.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_and_sse_give_the_same_frames() {
    let broker = Mosquitto::start().unwrap();
    let parkd = lot_with_terminal(Backend::Sqlite, &broker, 2).await;
    let mut sse =
        SseStream::open(&parkd.client, &stream_url(&parkd, "T1", &token_for("T1")), None).await.unwrap();
    let ws = format!("{}/terminals/T1/ws?token={}", parkd.base.replace("http://", "ws://"), token_for("T1"));
    let (mut socket, _) = tokio_tungstenite::connect_async(ws).await.unwrap();
    for i in 0..2 {
        let from_sse = sse.next_frame(WAIT).await.unwrap().json();
        assert_eq!(next_text(&mut socket).await, from_sse);
        free_bay(&parkd, i).await;
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

    // Frame 1 of each came with the terminal; frame 2 shows the reading.
    let wait = Duration::from_secs(20);
    let mut both = Vec::new();
    for _ in 0..2 {
        both.push(next_matching(&mut frames, wait, |m| m.json()["seq"] == 2).await.unwrap());
    }
    both.sort_by(|a, b| a.topic.cmp(&b.topic));
    let (entrance, sign) = (&both[0], &both[1]);
    assert_eq!(sign.topic, "parking/terminals/L1-SIGN/frame");
    let frame = sign.json();
    assert_eq!(frame["seq"], 2);
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
    assert_eq!(next.json()["seq"], 3);
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
    assert_eq!(retained[0].json()["seq"], 3, "ENTRANCE's latest");
    assert_eq!(retained[1].json()["seq"], 2, "L1-SIGN's latest");
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
    // Frame 1 came with the terminal, frame 2 with the reading.
    let retained =
        next_matching(&mut frames, Duration::from_secs(10), |m| m.json()["seq"] == 2).await.unwrap();
    for _ in 0..2 {
        let answer = deliver_again(&parkd, &change).await;
        assert_eq!(answer["published"], json!([{ "terminal": "T1", "seq": 2 }]));
        let again = next_matching(&mut frames, Duration::from_secs(10), |_| true).await.unwrap();
        assert_eq!(again.payload, retained.payload, "the very same frame, same id");
    }
}

/// A lot of two bays with sign T1, on its second frame after reading e-1
/// (every derived event delivered); answers parkd and e-1's availability
/// change, to deliver again.
async fn sign_on_its_second_frame(backend: Backend, broker: &Mosquitto) -> (Parkd, Value) {
    let parkd = lot_with_terminal(backend, broker, 2).await;
    let (_sub, mut frames) = subscribe(broker.port, "parking/terminals/T1/frame").await.unwrap();
    let r = parkd.send_reading("e-1", &reading("N-C0", true, 1, "2026-11-25T10:00:00Z")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let events: Vec<Value> = r.json().await.unwrap();
    let change = events.iter().find(|e| e["type"] == "io.parking.availability.changed.v1").unwrap().clone();
    next_matching(&mut frames, WAIT, |m| m.json()["seq"] == 2).await.unwrap();
    parkd.settled().await;
    (parkd, change)
}

/// A change delivered late, after a newer one (Knative does not keep their
/// order), renders what is true now, and a sign's stored frame never goes
/// back a seq: the write of a frame whose seq is not past the stored one
/// writes nothing, on either database.
async fn a_change_delivered_after_a_newer_one_shows_the_present_and_never_goes_back(backend: Backend) {
    let broker = Mosquitto::start().unwrap();
    let (parkd, older) = sign_on_its_second_frame(backend, &broker).await;
    let (_sub, mut frames) = subscribe(broker.port, "parking/terminals/T1/frame").await.unwrap();
    let r = parkd.send_reading("e-2", &reading("N-C1", true, 1, "2026-11-25T10:00:01Z")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let third = next_matching(&mut frames, WAIT, |m| m.json()["seq"] == 3).await.unwrap();
    parkd.settled().await;
    assert_eq!(third.json()["classes"][0]["free"], 0, "{}", third.json());

    let answer = deliver_again(&parkd, &older).await;
    assert_eq!(answer["published"], json!([{ "terminal": "T1", "seq": 3 }]), "the present, not e-1's counts");
    let again = next_matching(&mut frames, WAIT, |_| true).await.unwrap();
    assert_eq!(again.payload, third.payload, "the stored frame, sent again");

    let db = Db::open(&parkd).await.unwrap();
    let frame = String::from_utf8(third.payload.to_vec()).unwrap();
    for seq in [2, 3] {
        // The dialect's own statement, on its own pool.
        macro_rules! upsert {
            ($pool:expr, $statements:expr) => {
                sqlx::query($statements.upsert_terminal_frame)
                    .bind("T1")
                    .bind(seq)
                    .bind("older")
                    .bind(&frame)
                    .bind(0_i64)
                    .fetch_all($pool)
                    .await
                    .unwrap()
                    .len()
            };
        }
        let written = match &db {
            Db::Postgres(pool) => upsert!(pool, parking_kit::sql::postgres::STATEMENTS),
            Db::Sqlite(pool) => upsert!(pool, parking_kit::sql::sqlite::STATEMENTS),
        };
        assert_eq!(written, 0, "a frame of seq {seq} over the stored seq 3");
    }
    assert_eq!(db.count("SELECT seq FROM terminal_frames WHERE terminal_id = 'T1'").await, 3);
    assert_eq!(db.count("SELECT COUNT(*) FROM terminal_frames WHERE content_digest = 'older'").await, 0);
}

/// A derived event delivered again (as Knative may), to terminal-push:
/// its answer.
async fn deliver_again(parkd: &Parkd, event: &Value) -> Value {
    let r = parkd.send_event(event).await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

/// The statements parkd's components have run, summed over its databases.
async fn statements_run(parkd: &Parkd) -> u64 {
    let text = parkd.client.get(parkd.url("/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with("parkd_database_statements_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

/// A render's round trips to PostgreSQL are the latency of every sign (and,
/// in the cluster, network round trips): what it reads (the lot, its counts,
/// its terminals and their stored frames, locked) is one statement, however
/// many terminals show the lot, and its commit is told not to wait for the
/// disk in that same statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_render_reads_its_lot_and_signs_in_one_statement() {
    let broker = Mosquitto::start().unwrap();
    let parkd = lot_with_terminal(Backend::Postgres, &broker, 2).await;
    assert_eq!(parkd.put_terminal("T2", "north", None).await.status(), StatusCode::CREATED);
    let (_sub, mut frames) = subscribe(broker.port, "parking/terminals/+/frame").await.unwrap();
    let r = parkd.send_reading("e-1", &reading("N-C0", true, 1, "2026-11-25T10:00:00Z")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let events: Vec<Value> = r.json().await.unwrap();
    let change = events.iter().find(|e| e["type"] == "io.parking.availability.changed.v1").unwrap().clone();
    for terminal in ["T1", "T2"] {
        let topic = format!("parking/terminals/{terminal}/frame");
        next_matching(&mut frames, WAIT, |m| m.topic == topic && m.json()["seq"] == 2).await.unwrap();
    }

    // Delivered again (as Knative may): nothing to write, so the render is
    // its transaction and its reads.
    let before = statements_run(&parkd).await;
    let answer = deliver_again(&parkd, &change).await;
    assert_eq!(answer["published"], json!([{ "terminal": "T1", "seq": 2 }, { "terminal": "T2", "seq": 2 }]));
    let run = statements_run(&parkd).await - before;
    assert_eq!(run, 3, "BEGIN, the reads, COMMIT: {run} statements for a render of two signs");
}

/// The one statement a render reads with on PostgreSQL keeps what the
/// statements it stands for did: the terminals it renders stay locked until
/// its transaction ends (two renders of one sign take turns), and the
/// transaction's commit does not wait for the disk (a frame is rebuilt by
/// the next change).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_the_reads_of_a_render_lock_its_signs_and_relax_its_commit() {
    let statement =
        parking_kit::sql::postgres::STATEMENTS.render_inputs.expect("PostgreSQL reads a render at once");
    let broker = Mosquitto::start().unwrap();
    let parkd = lot_with_terminal(Backend::Postgres, &broker, 2).await;
    let Db::Postgres(pool) = Db::open(&parkd).await.unwrap() else { unreachable!("a PostgreSQL parkd") };
    let mut render = pool.acquire().await.unwrap();
    // The servers the tests run on do not wait for the disk at all.
    sqlx::query("SET synchronous_commit = on").execute(&mut *render).await.unwrap();
    sqlx::query("BEGIN").execute(&mut *render).await.unwrap();
    let (relaxed, site, _groups, _categories, terminals): (String, String, String, Option<String>, String) =
        sqlx::query_as(sqlx::AssertSqlSafe(statement)).bind("north").fetch_one(&mut *render).await.unwrap();
    assert_eq!(relaxed, "off");
    assert!(site.contains("North"), "{site}");
    assert!(terminals.contains("T1"), "{terminals}");
    let setting: String =
        sqlx::query_scalar("SHOW synchronous_commit").fetch_one(&mut *render).await.unwrap();
    assert_eq!(setting, "off", "for this transaction");

    let other = sqlx::query("SELECT 1 FROM terminals WHERE terminal_id = 'T1' FOR UPDATE NOWAIT")
        .execute(&pool)
        .await;
    let refused = other.expect_err("T1 is locked by the render").to_string();
    assert!(refused.contains("could not obtain lock"), "{refused}");

    sqlx::query("ROLLBACK").execute(&mut *render).await.unwrap();
    sqlx::query("SELECT 1 FROM terminals WHERE terminal_id = 'T1' FOR UPDATE NOWAIT")
        .execute(&pool)
        .await
        .unwrap();
    let after: String = sqlx::query_scalar("SHOW synchronous_commit").fetch_one(&mut *render).await.unwrap();
    assert_eq!(after, "on", "only that transaction's commit was relaxed");
}

/// Another render of sign T1 (as a second terminal-push instance in the
/// cluster runs one): it holds the sign (its row locked).
async fn another_render_of_t1(pool: &sqlx::PgPool) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut other = pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM terminals WHERE terminal_id = 'T1' FOR UPDATE")
        .execute(&mut *other)
        .await
        .unwrap();
    other
}

/// Once a render of parkd's waits for `other`, `other` stores `frame` (the
/// statement `store`, with the frame as `$1`) and commits.
async fn store_when_waited_for(
    pool: &sqlx::PgPool,
    mut other: sqlx::Transaction<'static, sqlx::Postgres>,
    store: &'static str,
    frame: String,
) {
    // (Other tests share the server: their waits are in other databases.)
    let waiting = "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'";
    let deadline = std::time::Instant::now() + WAIT;
    while sqlx::query_scalar::<_, i64>(waiting).fetch_one(pool).await.unwrap() == 0 {
        assert!(std::time::Instant::now() < deadline, "no render waited for the sign");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sqlx::query(store).bind(frame).execute(&mut *other).await.unwrap();
    other.commit().await.unwrap();
}

/// The stored frame of T1 as JSON, with `seq` set (and `free` of its first
/// class, when given: a frame of other counts).
async fn stored_frame_of_t1(db: &mut sqlx::PgConnection, seq: u64, free: Option<u64>) -> String {
    let stored: String = sqlx::query_scalar("SELECT frame FROM terminal_frames WHERE terminal_id = 'T1'")
        .fetch_one(&mut *db)
        .await
        .unwrap();
    let mut frame: Value = serde_json::from_str(&stored).unwrap();
    frame["seq"] = json!(seq);
    if let Some(free) = free {
        frame["classes"][0]["free"] = json!(free);
    }
    frame.to_string()
}

/// The seq of T1's stored frame.
async fn stored_seq_of_t1(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT seq FROM terminal_frames WHERE terminal_id = 'T1'")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Two renders of one sign at once (two terminal-push instances in the
/// cluster): the second waits for the first one's lock, and then renders
/// from the frame the first one stored, not from the one before it (which it
/// would answer again, one frame old, as the sign's retained copy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_render_that_waited_for_another_builds_on_its_frame() {
    let broker = Mosquitto::start().unwrap();
    let (parkd, change) = sign_on_its_second_frame(Backend::Postgres, &broker).await;
    let Db::Postgres(pool) = Db::open(&parkd).await.unwrap() else { unreachable!("a PostgreSQL parkd") };

    // The other render: it holds the sign, and stores frame 3 (the same
    // content: nothing changed since) while this one waits for it.
    let third = stored_frame_of_t1(&mut pool.acquire().await.unwrap(), 3, None).await;
    let other = another_render_of_t1(&pool).await;
    let store = "UPDATE terminal_frames SET seq = 3, frame = $1 WHERE terminal_id = 'T1'";
    let meanwhile = store_when_waited_for(&pool, other, store, third);
    let (answer, ()) = tokio::join!(deliver_again(&parkd, &change), meanwhile);
    assert_eq!(
        answer["published"],
        json!([{ "terminal": "T1", "seq": 3 }]),
        "the other render's frame, not the one before"
    );
}

/// The sweep's render of every sign, one sign at a time, keeps the same
/// rule: waiting for another render of the sign, it reads the frame that one
/// stored. Here that render read the counts before the last change (its
/// frame shows one bay fewer free): the sweep sets the sign right. Reading
/// the frame from before the wait, it took the sign for right and left the
/// other render's frame, wrong, on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_sweep_render_that_waited_for_another_builds_on_its_frame() {
    let broker = Mosquitto::start().unwrap();
    let parkd = lot_with_terminal(Backend::Postgres, &broker, 2).await;
    let (_sub, mut frames) = subscribe(broker.port, "parking/terminals/T1/frame").await.unwrap();
    free_bay(&parkd, 0).await;
    next_matching(&mut frames, WAIT, |m| m.json()["seq"] == 2).await.unwrap();
    parkd.settled().await;
    let Db::Postgres(pool) = Db::open(&parkd).await.unwrap() else { unreachable!("a PostgreSQL parkd") };

    let stale = stored_frame_of_t1(&mut pool.acquire().await.unwrap(), 3, Some(0)).await;
    let other = another_render_of_t1(&pool).await;
    let sweep = async {
        parkd.sweep_tick("while-another-render-holds-the-sign").await;
        parkd.settled().await;
    };
    let store =
        "UPDATE terminal_frames SET seq = 3, content_digest = 'stale', frame = $1 WHERE terminal_id = 'T1'";
    let other = store_when_waited_for(&pool, other, store, stale);
    tokio::join!(sweep, other);
    let frame = next_matching(&mut frames, WAIT, |m| m.json()["seq"] == 4).await.unwrap().json();
    assert_eq!(frame["classes"][0]["free"], 1, "the sign set right after the other render: {frame}");
    assert_eq!(stored_seq_of_t1(&pool).await, 4);
}

/// A sign's first frame, raced: the render that waited found no stored frame
/// to lock, so its read does not have the one the other render stored
/// meanwhile. It must not store a first frame over it (its seq, 1, behind
/// what the sign has shown: every gateway would take the next few seconds of
/// its frames for old ones), but build on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_render_that_waited_for_another_s_first_frame_builds_on_it() {
    let broker = Mosquitto::start().unwrap();
    let (parkd, change) = sign_on_its_second_frame(Backend::Postgres, &broker).await;
    let Db::Postgres(pool) = Db::open(&parkd).await.unwrap() else { unreachable!("a PostgreSQL parkd") };
    let mut db = pool.acquire().await.unwrap();
    let first = stored_frame_of_t1(&mut db, 5, Some(0)).await;
    sqlx::query("DELETE FROM terminal_frames WHERE terminal_id = 'T1'").execute(&mut *db).await.unwrap();

    let other = another_render_of_t1(&pool).await;
    let store = "INSERT INTO terminal_frames (terminal_id, seq, content_digest, frame, rendered_at_ms) \
                 VALUES ('T1', 5, 'other', $1, 0)";
    let other = store_when_waited_for(&pool, other, store, first);
    let (answer, ()) = tokio::join!(deliver_again(&parkd, &change), other);
    assert_eq!(
        answer["published"],
        json!([{ "terminal": "T1", "seq": 6 }]),
        "after the other render's frame"
    );
    assert_eq!(stored_seq_of_t1(&pool).await, 6);
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
    // Frame 1 came with the terminal; the reading's frame 2 may follow it.
    let mut current = next_text(&mut socket).await;
    if current["seq"] == 1 {
        current = next_text(&mut socket).await;
    }
    assert_eq!((current["seq"].as_u64(), current["classes"][0]["free"].as_u64()), (Some(2), Some(1)));
    free_bay(&parkd, 1).await;
    assert_eq!(next_text(&mut socket).await["seq"], 3);
    drop(socket);

    free_bay(&parkd, 2).await;
    let (mut resumed, _) =
        tokio_tungstenite::connect_async(ws(&format!("{token}&lastEventId=3"))).await.unwrap();
    let missed = next_text(&mut resumed).await;
    assert_eq!((missed["seq"].as_u64(), missed["classes"][0]["free"].as_u64()), (Some(4), Some(3)));

    match tokio_tungstenite::connect_async(ws("")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => {
            panic!("a WebSocket without a token must be refused, got {:?}", other.map(|(_, r)| r.status()))
        }
    }
}

/// A bay that changed without its availability event reaching terminal-push
/// (here changed in the database directly, as when the event is lost with a
/// crash between the commit and its delivery) reaches the sign with the
/// next sweep: its report has terminal-push render every sign again. A sweep
/// with nothing changed publishes nothing.
async fn a_change_whose_event_never_arrived_reaches_the_sign_with_the_next_sweep(backend: Backend) {
    let broker = Mosquitto::start().unwrap();
    let parkd = lot_with_terminal(backend, &broker, 3).await;
    free_bay(&parkd, 0).await;
    let mut stream =
        SseStream::open(&parkd.client, &stream_url(&parkd, "T1", &token_for("T1")), None).await.unwrap();
    assert_eq!(frames_until_free(&mut stream, 1).await.last(), Some(&2), "the current frame");
    let db = parking_tests::db::Db::open(&parkd).await.unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    db.execute(&format!(
        "UPDATE bays SET status = 'free', status_changed_at_ms = {now} WHERE lot_id = 'north' AND bay_id = 'C1'"
    ))
    .await;
    parkd.settled().await;
    assert!(stream.next_frame(Duration::from_millis(500)).await.is_err(), "no event, no frame yet");

    parkd.sweep_tick("after-the-lost-event").await;
    parkd.settled().await;
    let frame = stream.next_frame(WAIT).await.unwrap().json();
    assert_eq!(frame["classes"][0]["free"], 2, "the sign shows the change: {frame}");
    let seq = || db.count("SELECT seq FROM terminal_frames WHERE terminal_id = 'T1'");
    let before = seq().await;
    parkd.sweep_tick("nothing-changed").await;
    parkd.settled().await;
    assert_eq!(seq().await, before, "nothing changed, no new frame");
    assert!(stream.next_frame(Duration::from_millis(500)).await.is_err(), "nothing published");
}

/// A lot deleted under its terminals leaves no sign showing its last
/// counts: the next sweep clears their retained frames, which ends their
/// streams, and a sign connecting later gets no frame of it. Once.
async fn a_deleted_lots_signs_are_cleared_by_the_next_sweep(backend: Backend) {
    let broker = Mosquitto::start().unwrap();
    let parkd = lot_with_terminal(backend, &broker, 2).await;
    let mut stream =
        SseStream::open(&parkd.client, &stream_url(&parkd, "T1", &token_for("T1")), None).await.unwrap();
    stream.next_frame(WAIT).await.unwrap();
    let r = parkd.client.delete(parkd.url("/api/v1/lots/north")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    parkd.sweep_tick("after-the-lot-went").await;
    parkd.settled().await;
    let ended = stream.next_frame(WAIT).await.unwrap_err().to_string();
    assert!(ended.contains("ended"), "the stream of a gone lot's sign ends: {ended}");
    let (_late, mut late) = subscribe(broker.port, "parking/terminals/T1/frame").await.unwrap();
    let retained = next_matching(&mut late, Duration::from_millis(1500), |m| !m.payload.is_empty()).await;
    assert!(retained.is_err(), "no retained frame of the gone lot is left: {retained:?}");
    let db = parking_tests::db::Db::open(&parkd).await.unwrap();
    assert_eq!(db.count("SELECT COUNT(*) FROM terminal_frames WHERE terminal_id = 'T1'").await, 0);
}
