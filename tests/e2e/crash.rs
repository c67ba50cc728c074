//! A crash of `parkd up` (kill -9) with the embedded broker loses no reading
//! it acknowledged (issue 14, item 9): bursts of QoS 1 readings, the
//! process killed at a random point of each, restarted on the same state;
//! the sensor publishes again what was not acknowledged, as a real sensor
//! does. In the end every reading is applied exactly once, the counts agree
//! with the bays, and the lot shows what was published last.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use parking_tests::db::Db;
use parking_tests::process::{ParkdProcess, free_port};
use parking_tests::{Backend, fresh_postgres_database, on_both_backends};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};

const BAYS: usize = 40;
const ROUNDS: usize = 6;
const PER_ROUND: usize = 800;
/// Readings, by index: each bay's in turn, flipping its state.
const TOTAL: usize = ROUNDS * PER_ROUND;

/// Reading `i`: its topic, payload (fixed: a republished reading is the
/// same message) and state.
fn reading(i: usize) -> (String, String, bool) {
    let bay = i % BAYS;
    let seq = i / BAYS + 1;
    let device = parkd::simulate::device_id("CRASH", bay);
    let occupied = seq % 2 == 1;
    let observed = chrono::DateTime::from_timestamp(1_790_000_000 + i as i64, 0).unwrap();
    let payload = serde_json::json!({
        "device": device,
        "occupied": occupied,
        "seq": seq,
        "observedAt": observed.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    })
    .to_string();
    (format!("parking/uplink/{device}"), payload, occupied)
}

fn event_id(i: usize) -> String {
    let (topic, payload, _) = reading(i);
    parkd::bridge::message::event_id(&topic, payload.as_bytes())
}

/// Publishes `readings` at QoS 1 in order and returns the ones the broker
/// acknowledged. With `kill`, once `after` are acknowledged, the parkd with
/// that pid gets SIGKILL; publishing ends when the connection does.
async fn publish(port: u16, readings: &[usize], kill: Option<(u32, usize)>) -> BTreeSet<usize> {
    let mut options = MqttOptions::new(format!("crash-sensor-{}", uuid::Uuid::new_v4()), "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30)).set_clean_session(true);
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    let requests = readings.to_vec();
    let publisher = tokio::spawn(async move {
        for i in requests {
            let (topic, payload, _) = reading(i);
            if client.publish(topic, QoS::AtLeastOnce, false, payload).await.is_err() {
                return;
            }
        }
    });
    // Publishes leave in request order: the n-th outgoing is readings[n].
    let mut queued: VecDeque<usize> = readings.iter().copied().collect();
    let mut in_flight = HashMap::new();
    let mut acked = BTreeSet::new();
    let mut killed = false;
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked.len() < readings.len() {
        let event = match tokio::time::timeout_at(deadline.into(), eventloop.poll()).await {
            Ok(Ok(event)) => event,
            // The connection ended (the broker died with its process).
            Ok(Err(_)) => break,
            Err(_) => panic!("{} of {} readings acknowledged within 120 s", acked.len(), readings.len()),
        };
        match event {
            Event::Outgoing(Outgoing::Publish(pkid)) => {
                let i = queued.pop_front().expect("an outgoing publish for each reading");
                in_flight.insert(pkid, i);
            }
            Event::Incoming(Packet::PubAck(ack)) => {
                if let Some(i) = in_flight.remove(&ack.pkid) {
                    acked.insert(i);
                }
            }
            _ => {}
        }
        if let Some((pid, after)) = kill
            && !killed
            && acked.len() >= after
        {
            let status =
                std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap();
            assert!(status.success(), "kill -KILL {pid}");
            killed = true;
        }
    }
    publisher.abort();
    acked
}

/// The event ids of the readings applied.
async fn applied(db: &Db) -> Vec<String> {
    let keys = db.strings("SELECT event_key FROM readings").await;
    keys.iter().map(|k| k.rsplit('\u{1f}').next().unwrap_or_default().to_owned()).collect()
}

async fn provision(parkd: &ParkdProcess) {
    let lot = parkd::simulate::lot_definition("Crash", "CRASH", BAYS);
    let r = reqwest::Client::new().put(parkd.url("/api/v1/lots/crash")).json(&lot).send().await.unwrap();
    assert!(r.status().is_success(), "{:?}", r.text().await);
}

async fn kill_9_mid_burst_loses_no_acknowledged_reading(backend: Backend) {
    let state = tempfile::tempdir().unwrap();
    let database = match backend {
        Backend::Sqlite => "sqlite".to_owned(),
        Backend::Postgres => fresh_postgres_database().await.unwrap(),
    };
    let log = state.path().join("parkd.log");
    let port = free_port().unwrap();
    let listen = format!("127.0.0.1:{port}");
    let args = ["--mqtt-listen", listen.as_str()];
    let mut parkd = ParkdProcess::up(state.path(), &database, &log, &args).await.unwrap();
    provision(&parkd).await;
    let db = Db::connect(&database, state.path()).await.unwrap();
    let ids: Vec<String> = (0..TOTAL).map(event_id).collect();

    let mut rng = StdRng::seed_from_u64(14_09);
    let mut acked_so_far = BTreeSet::new();
    for round in 0..ROUNDS {
        let burst: Vec<usize> = (round * PER_ROUND..(round + 1) * PER_ROUND).collect();
        let after = rng.random_range(50..PER_ROUND - 50);
        let acked = publish(port, &burst, Some((parkd.pid(), after))).await;
        let status = parkd.exited(Duration::from_secs(10)).await.unwrap();
        assert!(!status.success(), "parkd was killed, yet exited with {status}");
        assert!(acked.len() >= after, "round {round}: {} acknowledged before the kill", acked.len());
        acked_so_far.extend(acked.iter().copied());
        eprintln!(
            "round {round}: killed after {after} acknowledgements; {} acknowledged in all",
            acked.len()
        );

        // Restarted on the same state: everything acknowledged so far is
        // applied without the sensor's help.
        parkd = ParkdProcess::up(state.path(), &database, &log, &args).await.unwrap();
        let started = Instant::now();
        let missing = loop {
            let present: BTreeSet<String> = applied(&db).await.into_iter().collect();
            let missing: Vec<usize> =
                acked_so_far.iter().copied().filter(|i| !present.contains(&ids[*i])).collect();
            if missing.is_empty() || started.elapsed() > Duration::from_secs(60) {
                break missing;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(
            missing.is_empty(),
            "round {round}: killed after {} acknowledged readings, {} of the {} acknowledged so far were never \
             applied after the restart (first: reading {})",
            acked.len(),
            missing.len(),
            acked_so_far.len(),
            missing[0]
        );
        // The sensor sends again what was not acknowledged, in order.
        let unacked: Vec<usize> = burst.iter().copied().filter(|i| !acked.contains(i)).collect();
        let again = publish(port, &unacked, None).await;
        assert_eq!(
            again.len(),
            unacked.len(),
            "round {round}: the republished readings were all acknowledged"
        );
        acked_so_far.extend(again);
    }
    assert_eq!(acked_so_far.len(), TOTAL);

    // Every reading applied once: no more, no less.
    let started = Instant::now();
    while db.count("SELECT COUNT(*) FROM readings").await < TOTAL as i64
        && started.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let keys = applied(&db).await;
    let distinct: BTreeSet<&String> = keys.iter().collect();
    assert_eq!(distinct.len(), keys.len(), "a reading was applied twice");
    assert_eq!(keys.len(), TOTAL, "readings applied");
    let expected: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(distinct, expected, "the applied readings are not the published ones");
    // Each reading flips its bay: one status change each, none twice.
    let changes = db.count("SELECT COUNT(*) FROM status_changes").await;
    let distinct_changes = db.count("SELECT COUNT(DISTINCT event_key) FROM status_changes").await;
    assert_eq!(changes, distinct_changes, "a status change was recorded twice");
    assert_eq!(changes, TOTAL as i64, "status changes");
    let (kept, recounted) = db.kept_and_recounted().await;
    assert_eq!(kept, recounted, "the kept counts disagree with the bays");
    // The lot shows the last reading of each bay.
    let last_occupied = (TOTAL - BAYS..TOTAL).filter(|i| reading(*i).2).count() as u64;
    let availability: serde_json::Value =
        reqwest::get(parkd.url("/api/v1/lots/crash/availability")).await.unwrap().json().await.unwrap();
    let classes = availability["classes"].as_object().expect("availability by class");
    let total = |f: &str| -> u64 { classes.values().map(|c| c[f].as_u64().unwrap_or_default()).sum() };
    assert_eq!(total("occupied"), last_occupied, "{availability}");
    assert_eq!(total("free"), BAYS as u64 - last_occupied, "{availability}");
    assert_eq!(total("unknown"), 0, "{availability}");
}

on_both_backends!(kill_9_mid_burst_loses_no_acknowledged_reading);
