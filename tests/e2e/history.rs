//! History, retention and alerts, end to end: the real components in parkd,
//! sweeps set off by `dev.knative.sources.ping` events through the broker,
//! on SQLite and on PostgreSQL.

use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, DurationRound, Utc};
use parking_tests::db::{Db, RawChange};
use parking_tests::{Backend, Parkd, ParkdOptions, lot_spec, manifest_with_recorder, reading};
use reqwest::StatusCode;
use serde_json::{Value, json};

use parking_tests::on_both_backends;

on_both_backends!(
    rollups_match_a_recount_from_raw_rows,
    sweeps_are_idempotent_even_when_concurrent,
    history_requests_are_validated,
    silent_sensors_go_unknown_once_per_outage,
    a_million_raw_readings_are_deleted_in_bounded_batches_while_ingest_continues,
    low_batteries_raise_one_alert_until_replaced,
    full_and_almost_full_alerts_follow_the_hysteresis,
    unknown_devices_are_alerted_by_the_next_sweep,
    lots_and_bays_export_as_fiware_entities,
    derived_events_wait_in_the_outbox_until_the_sink_takes_them,
    the_present_is_counted_from_raw_changes_until_the_sweep_rolls_it_up,
);

// ------------------------------------------------------------ helpers

async fn sweep(parkd: &Parkd, tick: &str) -> (Value, Vec<Value>) {
    parkd.sweep_tick(tick).await
}

/// Sweeps until a run completes within its budget.
async fn sweep_until_complete(parkd: &Parkd, prefix: &str) -> Vec<Value> {
    let mut reports = Vec::new();
    for run in 0..200 {
        let (report, _) = sweep(parkd, &format!("{prefix}-{run}")).await;
        let complete = report["complete"].as_bool().unwrap();
        reports.push(report);
        if complete {
            return reports;
        }
    }
    panic!("the sweep never completed: {:?}", reports.last());
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn hour_floor(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(Duration::hours(1)).unwrap()
}

/// Starts parkd with the sweep's variables set for tests.
async fn start(backend: Backend, variables: &[(&str, &str)], recorder: Option<&std::path::Path>) -> Parkd {
    let mut options = ParkdOptions::new(backend);
    options.variables = variables.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    if let Some(dir) = recorder {
        options.manifest = Some(
            manifest_with_recorder(
                dir,
                &[
                    "io.parking.slot.changed.v1",
                    "io.parking.availability.changed.v1",
                    "io.parking.sensor.alert.v1",
                ],
            )
            .unwrap(),
        );
    }
    Parkd::start_with(options).await.unwrap()
}

/// Sends readings for the lot's five bays over the three closed hours before
/// now, toggling each bay at irregular intervals (plus a duplicate and a
/// stale reading, which must not count). Only closed hours, so the readings
/// are the same whatever minute of the hour the test runs at.
async fn send_history(parkd: &Parkd, now: DateTime<Utc>) -> DateTime<Utc> {
    let base = hour_floor(now) - Duration::hours(3);
    let bays = ["N-C0", "N-C1", "N-C2", "N-M0", "N-M1"];
    let mut sent = 0;
    for (i, device) in bays.iter().enumerate() {
        let mut at = base + Duration::minutes(i as i64 * 7);
        let mut occupied = i % 2 == 0;
        let mut seq = 1;
        while at < hour_floor(now) {
            let r = parkd
                .send_reading(&format!("h-{device}-{seq}"), &reading(device, occupied, seq, &ts(at)))
                .await;
            assert!(r.status().is_success(), "{:?}", r.text().await);
            sent += 1;
            if seq == 3 {
                // A relayed copy of the same frame and a late older reading.
                parkd
                    .send_reading(&format!("h-{device}-{seq}-copy"), &reading(device, occupied, seq, &ts(at)))
                    .await;
                let stale = at - Duration::minutes(2);
                parkd
                    .send_reading(&format!("h-{device}-stale"), &reading(device, !occupied, 0, &ts(stale)))
                    .await;
            }
            at += Duration::minutes(7 + ((i as i64) * 5 + seq as i64 * 13) % 29);
            occupied = !occupied;
            seq += 1;
        }
    }
    assert!(sent > 30, "enough readings to span the hours: {sent}");
    base
}

/// The roll-up of one (zone, class) and hour, recounted from raw status changes.
#[derive(Debug, Default, PartialEq)]
struct Recount {
    bays: u32,
    occupied_bay_ms: i64,
    peak_occupied: u32,
    min_free: u32,
    arrivals: u32,
    departures: u32,
    dwell_ms: Vec<i64>,
}

/// Recounts a group's hour from raw rows, independently of the domain code:
/// each bay's timeline of statuses (unknown before its first change), then
/// overlaps and samples at every change instant.
fn recount(changes: &[RawChange], bays: &[&str], zone: &str, class: &str, start: i64, end: i64) -> Recount {
    let mine: Vec<&RawChange> =
        changes.iter().filter(|c| c.zone.as_deref() == Some(zone) && c.class == class).collect();
    let status_at = |bay: &str, t: i64| -> String {
        mine.iter()
            .rfind(|c| c.bay == bay && c.at <= t)
            .map(|c| c.status.clone())
            .unwrap_or_else(|| "unknown".into())
    };
    let mut r = Recount { bays: bays.len() as u32, min_free: u32::MAX, ..Default::default() };
    // Occupied time: each bay's occupied intervals clipped to the hour.
    for bay in bays {
        let mut points: Vec<i64> = vec![start];
        points.extend(mine.iter().filter(|c| c.bay == *bay && c.at > start && c.at < end).map(|c| c.at));
        points.push(end);
        for w in points.windows(2) {
            if status_at(bay, w[0]) == "occupied" {
                r.occupied_bay_ms += w[1] - w[0];
            }
        }
    }
    // Peak and minimum free: sample at the start and right after each change.
    let mut instants: Vec<i64> = vec![start];
    instants.extend(mine.iter().filter(|c| c.at >= start && c.at < end).map(|c| c.at));
    for t in instants {
        let occupied = bays.iter().filter(|b| status_at(b, t) == "occupied").count() as u32;
        let free = bays.iter().filter(|b| status_at(b, t) == "free").count() as u32;
        r.peak_occupied = r.peak_occupied.max(occupied);
        r.min_free = r.min_free.min(free);
    }
    for c in mine.iter().filter(|c| c.at >= start && c.at < end) {
        if c.status == "occupied" {
            r.arrivals += 1;
        }
        if c.previous == "occupied" && c.status == "free" {
            r.departures += 1;
            if let Some(arrived) = mine
                .iter()
                .filter(|p| p.bay == c.bay && p.at <= c.at && p.status == "occupied")
                .map(|p| p.at)
                .max()
            {
                r.dwell_ms.push(c.at - arrived);
            }
        }
    }
    r
}

// ------------------------------------------------------------ scenarios

async fn rollups_match_a_recount_from_raw_rows(backend: Backend) {
    let parkd = start(backend, &[("rollup_settle_seconds", "0")], None).await;
    parkd.put_lot("north", &lot_spec("North", "N", 3, 2)).await;
    let now = Utc::now();
    let base = send_history(&parkd, now).await;
    let (report, _) = sweep(&parkd, "tick-1").await;
    assert!(report["complete"].as_bool().unwrap(), "{report}");
    let rolled_up_to: DateTime<Utc> = report["rolledUpTo"].as_str().unwrap().parse().unwrap();
    assert_eq!(rolled_up_to, hour_floor(Utc::now()), "{report}");
    assert!(report["hoursRolledUp"].as_array().unwrap().len() >= 3, "{report}");

    let db = Db::open(&parkd).await.unwrap();
    let changes = db.status_changes().await;
    assert!(changes.len() > 30, "{} changes", changes.len());

    let url = format!("/api/v1/lots/north/history?from={}&to={}", ts(base), ts(rolled_up_to));
    let history: Value = parkd.client.get(parkd.url(&url)).send().await.unwrap().json().await.unwrap();
    let rows = history["rows"].as_array().unwrap();
    let hours = (rolled_up_to - base).num_hours();
    assert_eq!(rows.len() as i64, hours * 2, "one row per (zone, class) and hour: {history}");
    let groups = [("L1", "four_wheeler", vec!["C0", "C1", "C2"]), ("M", "two_wheeler", vec!["M0", "M1"])];
    let mut arrivals = 0;
    for row in rows {
        let start: DateTime<Utc> = row["start"].as_str().unwrap().parse().unwrap();
        let (zone, class, bays) = groups.iter().find(|g| row["zone"] == g.0 && row["class"] == g.1).unwrap();
        let s = start.timestamp_millis();
        let expected = recount(&changes, bays, zone, class, s, s + 3_600_000);
        let at = format!("{zone}/{class} at {start}: {row}");
        assert_eq!(row["bays"], expected.bays, "{at}");
        let mean = expected.occupied_bay_ms as f64 / 3_600_000.0;
        assert!((row["meanOccupied"].as_f64().unwrap() - mean).abs() < 1e-9, "{at}: mean {mean}");
        assert!((row["meanOccupancy"].as_f64().unwrap() - mean / bays.len() as f64).abs() < 1e-9, "{at}");
        assert_eq!(row["peakOccupied"], expected.peak_occupied, "{at}");
        assert_eq!(row["minFree"], expected.min_free, "{at}");
        assert_eq!(row["arrivals"], expected.arrivals, "{at}");
        assert_eq!(row["departures"], expected.departures, "{at}");
        match expected.dwell_ms.len() {
            0 => assert!(row["meanDwellSeconds"].is_null(), "{at}"),
            n => {
                let mean = expected.dwell_ms.iter().sum::<i64>() / n as i64;
                assert!((row["meanDwellSeconds"].as_f64().unwrap() - mean as f64 / 1e3).abs() < 1e-3, "{at}");
            }
        }
        arrivals += expected.arrivals;
    }
    assert!(arrivals > 10, "the scenario has arrivals to count: {arrivals}");

    // Days are the sum of their hours; a class filter keeps one class.
    let url = format!(
        "/api/v1/lots/north/history?from={}&to={}&bucket=day&class=two_wheeler",
        ts(base),
        ts(rolled_up_to)
    );
    let days: Value = parkd.client.get(parkd.url(&url)).send().await.unwrap().json().await.unwrap();
    let day_arrivals: u64 =
        days["rows"].as_array().unwrap().iter().map(|r| r["arrivals"].as_u64().unwrap()).sum();
    let hour_arrivals: u64 =
        rows.iter().filter(|r| r["class"] == "two_wheeler").map(|r| r["arrivals"].as_u64().unwrap()).sum();
    assert_eq!(day_arrivals, hour_arrivals, "{days}");
    assert!(days["rows"].as_array().unwrap().iter().all(|r| r["class"] == "two_wheeler"));

    // The same as CSV, by Accept header and by format=csv.
    let url = format!("/api/v1/lots/north/history?from={}&to={}", ts(base), ts(rolled_up_to));
    let r = parkd.client.get(parkd.url(&url)).header("accept", "text/csv").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let csv = r.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("start,zone,class,bays,mean_occupied"), "{csv}");
    assert_eq!(lines.len(), rows.len() + 1, "{csv}");
    let first: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(first[1], rows[0]["zone"].as_str().unwrap());
    assert_eq!(first[8], rows[0]["arrivals"].to_string());
    let same =
        parkd.client.get(parkd.url(&format!("{url}&format=csv"))).send().await.unwrap().text().await.unwrap();
    assert_eq!(same, csv);
}

async fn sweeps_are_idempotent_even_when_concurrent(backend: Backend) {
    let parkd = start(backend, &[("rollup_settle_seconds", "0")], None).await;
    parkd.put_lot("north", &lot_spec("North", "N", 3, 2)).await;
    let base = send_history(&parkd, Utc::now()).await;
    let db = Db::open(&parkd).await.unwrap();

    // Two sweeps at once, then one more, then a redelivered tick.
    let (a, b) = tokio::join!(sweep(&parkd, "tick-a"), sweep(&parkd, "tick-b"));
    let rolled =
        a.0["hoursRolledUp"].as_array().unwrap().len() + b.0["hoursRolledUp"].as_array().unwrap().len();
    let hours = (hour_floor(Utc::now()) - base).num_hours() as usize;
    assert_eq!(rolled, hours, "each hour rolled up by exactly one of the two: {} / {}", a.0, b.0);
    let url = format!("/api/v1/lots/north/history?from={}&to={}", ts(base), ts(hour_floor(Utc::now())));
    let first: Value = parkd.client.get(parkd.url(&url)).send().await.unwrap().json().await.unwrap();
    let rows_before = db.count("SELECT COUNT(*) FROM occupancy_hourly").await;

    let (again, _) = sweep(&parkd, "tick-c").await;
    assert!(again["hoursRolledUp"].as_array().unwrap().is_empty(), "{again}");
    sweep(&parkd, "tick-c").await;
    let second: Value = parkd.client.get(parkd.url(&url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(first["rows"], second["rows"]);
    assert_eq!(db.count("SELECT COUNT(*) FROM occupancy_hourly").await, rows_before);

    // Even an hour rolled up again from scratch gives the same numbers (upsert-replace).
    db.execute(&format!("UPDATE rollup_progress SET rolled_up_to_ms = {}", base.timestamp_millis())).await;
    let (redo, _) = sweep(&parkd, "tick-d").await;
    assert_eq!(redo["hoursRolledUp"].as_array().unwrap().len(), hours, "{redo}");
    let third: Value = parkd.client.get(parkd.url(&url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(first["rows"], third["rows"]);
    assert_eq!(db.count("SELECT COUNT(*) FROM occupancy_hourly").await, rows_before);
}

async fn history_requests_are_validated(backend: Backend) {
    let parkd = start(backend, &[], None).await;
    parkd.put_lot("north", &lot_spec("North", "N", 1, 0)).await;
    let get = |q: &str| parkd.client.get(parkd.url(&format!("/api/v1/lots/north/history{q}"))).send();
    let error = |body: Value| body["error"].as_str().unwrap_or_default().to_owned();

    let r = get("").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "the last 24 hours by default");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["bucket"], "hour");
    assert_eq!(body["rows"], json!([]));

    for (query, needle) in [
        ("?from=yesterday", "from"),
        ("?bucket=week", "bucket"),
        ("?class=Lorry!", "class"),
        ("?format=xml", "format"),
        ("?colour=red", "colour"),
        ("?from=2026-11-25T10:00:00Z&to=2026-11-25T09:00:00Z", "before"),
        ("?from=2025-01-01T00:00:00Z&to=2026-01-01T00:00:00Z", "bucket=day"),
    ] {
        let r = get(query).await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{query}");
        let message = error(r.json().await.unwrap());
        assert!(message.contains(needle), "{query}: {message}");
    }
    let r = parkd.client.get(parkd.url("/api/v1/lots/nowhere/history")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = parkd.client.post(parkd.url("/api/v1/lots/north/history")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
}

async fn silent_sensors_go_unknown_once_per_outage(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let parkd = start(backend, &[("offline_after_seconds", "3")], Some(dir.path())).await;
    parkd.put_lot("north", &lot_spec("North", "N", 2, 0)).await;
    let r = parkd.send_reading("o-1", &reading("N-C0", true, 1, &ts(Utc::now()))).await;
    assert_eq!(r.status(), StatusCode::OK);
    parkd.send_reading("o-2", &reading("N-C1", false, 1, &ts(Utc::now()))).await;

    // Within the window: nothing happens.
    let (report, events) = sweep(&parkd, "s-0").await;
    assert_eq!(report["baysMarkedUnknown"], 0, "{report}");
    assert!(events.is_empty());

    // Both sensors silent past the window: both bays unknown, one alert each.
    tokio::time::sleep(StdDuration::from_millis(3600)).await;
    // C1 is heard again just in time (a heartbeat-like refresh): it stays free.
    parkd.send_reading("o-3", &reading("N-C1", false, 2, &ts(Utc::now()))).await;
    let (report, events) = sweep(&parkd, "s-1").await;
    assert_eq!(report["baysMarkedUnknown"], 1, "{report}");
    assert_eq!(report["alertsOpened"], 1, "{report}");
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        ["io.parking.slot.changed.v1", "io.parking.availability.changed.v1", "io.parking.sensor.alert.v1"]
    );
    assert_eq!(events[0]["data"]["previous"], "occupied");
    assert_eq!(events[0]["data"]["status"], "unknown");
    assert!(events[0]["data"]["device"].is_null());
    assert_eq!(events[1]["data"]["counts"]["unknown"], 1);
    assert_eq!(events[2]["data"]["kind"], "sensor_offline");
    assert_eq!(events[2]["data"]["device"], "N-C0");
    assert_eq!(events[2]["data"]["state"], "open");
    let (_, a) = parkd.availability("north").await;
    assert_eq!(a["classes"]["four_wheeler"]["unknown"], 1, "{a}");
    let offline: Vec<Value> =
        open_alerts(&parkd).await.into_iter().filter(|a| a["kind"] == "sensor_offline").collect();
    assert_eq!(offline.len(), 1, "{offline:?}");
    assert_eq!(offline[0]["subject"], "north/C0");

    // Later sweeps during the same outage: no second alert, no second change.
    for tick in ["s-2", "s-3"] {
        let (report, events) = sweep(&parkd, tick).await;
        assert_eq!((report["baysMarkedUnknown"].as_u64(), events.len()), (Some(0), 0), "{report}");
    }

    // The sensor comes back: the bay follows it and the alert closes.
    let r = parkd.send_reading("o-4", &reading("N-C0", false, 2, &ts(Utc::now()))).await;
    assert_eq!(r.status(), StatusCode::OK);
    let (report, events) = sweep(&parkd, "s-4").await;
    assert_eq!(report["alertsClosed"], 1, "{report}");
    assert_eq!(events[0]["data"]["state"], "closed");
    assert!(open_alerts(&parkd).await.iter().all(|a| a["kind"] != "sensor_offline"));

    // A second outage is a second alert.
    tokio::time::sleep(StdDuration::from_millis(3600)).await;
    let (report, _) = sweep(&parkd, "s-5").await;
    assert_eq!(report["alertsOpened"], 2, "both sensors silent now: {report}");

    // The broker delivered each derived event once to its subscribers.
    let recorded = parkd.recorded().await;
    // (Offline alerts are about a bay; the lot-full alerts of this two-bay lot are about its class.)
    let offline =
        |e: &&Value| e["type"] == "io.parking.sensor.alert.v1" && e["subject"] != "north/four_wheeler";
    let alerts_recorded = recorded.iter().filter(offline).count();
    assert_eq!(alerts_recorded, 1 + 1 + 2, "open, closed, then two opens: {recorded:?}");
    let c0_alerts = recorded
        .iter()
        .filter(|e| e["type"] == "io.parking.sensor.alert.v1" && e["subject"] == "north/C0")
        .count();
    assert_eq!(c0_alerts, 3, "C0: one alert per outage plus its closing");
}

async fn a_million_raw_readings_are_deleted_in_bounded_batches_while_ingest_continues(backend: Backend) {
    const OLD_ROWS: i64 = 1_000_000;
    const BATCH: usize = 20_000;
    let parkd = start(
        backend,
        &[("sweep_batch_size", "20000"), ("sweep_time_budget_ms", "4000"), ("rollup_settle_seconds", "0")],
        None,
    )
    .await;
    parkd.put_lot("north", &lot_spec("North", "N", 20, 0)).await;
    let db = Db::open(&parkd).await.unwrap();
    // 40 days old: past the 30-day raw retention. Generated in the database, set-based.
    let old = (Utc::now() - Duration::days(40)).timestamp_millis();
    db.generate_readings("north", "C", 20, OLD_ROWS, old).await;
    assert_eq!(db.count("SELECT COUNT(*) FROM readings").await, OLD_ROWS);

    // A stream of readings, applied while the sweeps run.
    let stream = {
        let client = parkd.client.clone();
        let url = parkd.url("/api/v1/events");
        tokio::spawn(async move {
            let mut applied = 0u32;
            for seq in 1..=400u32 {
                let device = format!("N-C{}", seq % 20);
                let body = reading(&device, seq % 3 == 0, seq, &ts(Utc::now()));
                let r = client
                    .post(&url)
                    .header("ce-specversion", "1.0")
                    .header("ce-id", format!("live-{seq}"))
                    .header("ce-source", "/parking/bridge")
                    .header("ce-type", "io.parking.sensor.uplink.v1")
                    .header("ce-format", "parking-json")
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success(), "reading {seq}: {}", r.status());
                applied += 1;
                tokio::time::sleep(StdDuration::from_millis(5)).await;
            }
            applied
        })
    };
    let reports = sweep_until_complete(&parkd, "m").await;
    let applied = stream.await.unwrap();

    let batches: Vec<&Value> = reports.iter().flat_map(|r| r["batches"].as_array().unwrap()).collect();
    let reading_batches: Vec<&&Value> = batches.iter().filter(|b| b["table"] == "readings").collect();
    let deleted: u64 = reading_batches.iter().map(|b| b["rows"].as_u64().unwrap()).sum();
    assert_eq!(deleted, OLD_ROWS as u64, "every old reading deleted, none twice");
    assert!(reading_batches.len() >= OLD_ROWS as usize / BATCH, "{} batches", reading_batches.len());
    for b in &batches {
        assert!(b["rows"].as_u64().unwrap() <= BATCH as u64, "a batch over its size: {b}");
        assert!(b["millis"].as_f64().unwrap() >= 0.0, "each batch reports its duration: {b}");
    }
    // Every live reading was applied and kept; only the old ones are gone.
    assert_eq!(applied, 400);
    assert_eq!(db.count("SELECT COUNT(*) FROM readings WHERE event_key LIKE 'gen-%'").await, 0);
    let live = db.count("SELECT COUNT(*) FROM readings").await;
    assert_eq!(live, 400, "the concurrent stream's readings are all stored");
    let (_, a) = parkd.availability("north").await;
    assert_eq!(a["classes"]["four_wheeler"]["unknown"], 0, "every bay heard from: {a}");
    let slowest = batches.iter().map(|b| b["millis"].as_f64().unwrap()).fold(0.0, f64::max);
    println!("{} sweep runs, {} delete batches, slowest batch {slowest:.1} ms", reports.len(), batches.len());
}

/// parkd's scheduler sends the ticks itself on its cron schedule (every
/// second here): a silent sensor's bay becomes unknown with no test tick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parkd_sends_sweep_ticks_on_its_cron_schedule() {
    let mut options = ParkdOptions::new(Backend::Sqlite);
    options.variables = vec![("offline_after_seconds".into(), "1".into())];
    options.sweep_schedule = Some("* * * * * *".into());
    let parkd = Parkd::start_with(options).await.unwrap();
    parkd.put_lot("north", &lot_spec("North", "N", 1, 0)).await;
    let r = parkd.send_reading("t-1", &reading("N-C0", true, 1, &ts(Utc::now()))).await;
    assert_eq!(r.status(), StatusCode::OK);
    for _ in 0..100 {
        let (_, a) = parkd.availability("north").await;
        if a["classes"]["four_wheeler"]["unknown"] == 1 {
            let alerts: Value =
                parkd.client.get(parkd.url("/api/v1/alerts")).send().await.unwrap().json().await.unwrap();
            let kinds: Vec<&str> =
                alerts["alerts"].as_array().unwrap().iter().filter_map(|a| a["kind"].as_str()).collect();
            assert!(kinds.contains(&"sensor_offline"), "{alerts}");
            return;
        }
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
    panic!("no scheduled sweep marked the silent bay unknown within 10 s");
}

#[test]
fn a_bad_sweep_schedule_stops_parkd_before_it_starts() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut options = ParkdOptions::new(Backend::Sqlite);
    options.sweep_schedule = Some("every five minutes".into());
    let err = runtime.block_on(Parkd::start_with(options)).err().expect("refused");
    assert!(format!("{err:#}").contains("every five minutes"), "{err:#}");
}

/// The alert events in a reading's answer (empty for a 202).
async fn alert_events(r: reqwest::Response) -> Vec<Value> {
    if r.status() == StatusCode::ACCEPTED {
        return Vec::new();
    }
    assert_eq!(r.status(), StatusCode::OK);
    let events: Vec<Value> = r.json().await.unwrap();
    events
        .into_iter()
        .filter(|e| e["type"] == "io.parking.sensor.alert.v1")
        .map(|e| e["data"].clone())
        .collect()
}

async fn open_alerts(parkd: &Parkd) -> Vec<Value> {
    let body: Value =
        parkd.client.get(parkd.url("/api/v1/alerts")).send().await.unwrap().json().await.unwrap();
    body["alerts"].as_array().unwrap().clone()
}

fn with_battery(device: &str, occupied: bool, seq: u32, volts: f64) -> Value {
    json!({ "device": device, "occupied": occupied, "seq": seq, "observedAt": ts(Utc::now()), "battery": volts })
}

async fn low_batteries_raise_one_alert_until_replaced(backend: Backend) {
    let parkd = start(backend, &[], None).await;
    parkd.put_lot("north", &lot_spec("North", "N", 3, 0)).await;
    let r = parkd.send_reading("b-1", &with_battery("N-C0", true, 1, 3.6)).await;
    assert!(alert_events(r).await.is_empty());
    // Below 3.2 V: one alert, in the reading's answer.
    let r = parkd.send_reading("b-2", &with_battery("N-C0", true, 2, 3.15)).await;
    let alerts = alert_events(r).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(
        (alerts[0]["kind"].as_str(), alerts[0]["state"].as_str()),
        (Some("battery_low"), Some("open"))
    );
    assert_eq!(alerts[0]["subject"], "north/C0");
    assert!(alerts[0]["detail"].as_str().unwrap().contains("3.15 V"), "{alerts:?}");
    // Lower still, or wavering inside the dead band: no second alert.
    for (i, volts) in [3.1, 3.3, 3.19].into_iter().enumerate() {
        let r = parkd
            .send_reading(&format!("b-w{i}"), &with_battery("N-C0", i % 2 == 0, 3 + i as u32, volts))
            .await;
        assert!(alert_events(r).await.is_empty(), "{volts} V");
    }
    assert_eq!(open_alerts(&parkd).await.len(), 1);
    // A new battery closes it.
    let r = parkd.send_reading("b-3", &with_battery("N-C0", false, 9, 3.62)).await;
    let alerts = alert_events(r).await;
    assert_eq!((alerts.len(), alerts[0]["state"].as_str()), (1, Some("closed")), "{alerts:?}");
    assert!(open_alerts(&parkd).await.is_empty());
    // Prometheus counts what the broker routed.
    let metrics = parkd.client.get(parkd.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("parkd_alerts_total{kind=\"battery_low\",state=\"open\"} 1"), "{metrics}");
    assert!(metrics.contains("parkd_alerts_total{kind=\"battery_low\",state=\"closed\"} 1"), "{metrics}");
    assert!(metrics.contains("parkd_alerts_open{kind=\"battery_low\"} 0"), "{metrics}");
    assert!(metrics.contains("parkd_derived_events_total{type=\"io.parking.slot.changed.v1\"}"), "{metrics}");
}

async fn full_and_almost_full_alerts_follow_the_hysteresis(backend: Backend) {
    let parkd = start(backend, &[], None).await;
    parkd.put_lot("north", &lot_spec("North", "N", 40, 2)).await;
    let mut seq = 0;
    let mut send = async |bay: usize, occupied: bool| {
        seq += 1;
        let r = parkd
            .send_reading(&format!("f-{seq}"), &reading(&format!("N-C{bay}"), occupied, seq, &ts(Utc::now())))
            .await;
        alert_events(r).await
    };
    for bay in 0..40 {
        assert!(send(bay, false).await.is_empty(), "an empty lot raises nothing");
    }
    let mut raised = Vec::new();
    for bay in 0..36 {
        raised.extend(send(bay, true).await);
    }
    assert_eq!(raised.len(), 1, "almost full at 36 of 40 (90 %): {raised:?}");
    assert_eq!(
        (raised[0]["kind"].as_str(), raised[0]["subject"].as_str()),
        (Some("lot_almost_full"), Some("north/four_wheeler"))
    );
    // Hovering at the threshold (35, 36, 35 taken) changes nothing.
    assert!(send(0, false).await.is_empty());
    assert!(send(0, true).await.is_empty());
    assert!(send(0, false).await.is_empty());
    // Full at 40 of 40: almost-full closes, full opens.
    let mut changes = Vec::new();
    for bay in [0, 36, 37, 38, 39] {
        changes.extend(send(bay, true).await);
    }
    let summary: Vec<(String, String)> = changes
        .iter()
        .map(|a| (a["kind"].as_str().unwrap().to_owned(), a["state"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        summary,
        [("lot_almost_full".to_owned(), "closed".to_owned()), ("lot_full".to_owned(), "open".to_owned())]
    );
    let open = open_alerts(&parkd).await;
    assert_eq!((open.len(), open[0]["kind"].as_str()), (1, Some("lot_full")), "{open:?}");
    // Down to 34 of 40 (85 %): back to available, every fullness alert closed.
    let mut changes = Vec::new();
    for bay in 0..6 {
        changes.extend(send(bay, false).await);
    }
    assert!(open_alerts(&parkd).await.is_empty());
    assert_eq!(changes.last().unwrap()["state"], "closed", "{changes:?}");
}

async fn unknown_devices_are_alerted_by_the_next_sweep(backend: Backend) {
    let parkd = start(backend, &[], None).await;
    parkd.put_lot("north", &lot_spec("North", "N", 1, 0)).await;
    for i in 0..3 {
        let r =
            parkd.send_reading(&format!("u-{i}"), &reading("STRAY-7", true, i + 1, &ts(Utc::now()))).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "refused, so Knative does not retry it");
    }
    let open = open_alerts(&parkd).await;
    assert_eq!(open.len(), 1, "one alert however often it reports: {open:?}");
    assert_eq!(
        (open[0]["kind"].as_str(), open[0]["subject"].as_str()),
        (Some("unknown_device"), Some("STRAY-7"))
    );

    let (_, events) = sweep(&parkd, "u-tick-1").await;
    let announced: Vec<&Value> =
        events.iter().filter(|e| e["type"] == "io.parking.sensor.alert.v1").collect();
    assert_eq!(announced.len(), 1, "{events:?}");
    assert_eq!(announced[0]["data"]["kind"], "unknown_device");
    let (_, events) = sweep(&parkd, "u-tick-2").await;
    assert!(events.is_empty(), "announced once: {events:?}");

    // Provisioned: the next sweep closes it.
    let mut spec = lot_spec("North", "N", 1, 0);
    spec["bays"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "id": "S7", "class": "four_wheeler", "sensor": "STRAY-7" }));
    assert!(parkd.put_lot("north", &spec).await.status().is_success());
    let (report, events) = sweep(&parkd, "u-tick-3").await;
    assert_eq!(report["alertsClosed"], 1, "{report}");
    assert_eq!(events[0]["data"]["state"], "closed");
    assert!(open_alerts(&parkd).await.is_empty());
}

async fn lots_and_bays_export_as_fiware_entities(backend: Backend) {
    let parkd = start(backend, &[], None).await;
    parkd.put_lot("north", &lot_spec("North Garage", "N", 3, 2)).await;
    parkd.send_reading("x-1", &reading("N-C0", true, 1, "2026-11-25T10:00:00Z")).await;
    parkd.send_reading("x-2", &reading("N-C1", false, 1, "2026-11-25T10:00:00Z")).await;
    parkd.send_reading("x-3", &reading("N-M0", false, 1, "2026-11-25T10:01:00Z")).await;

    let r = parkd.client.get(parkd.url("/api/v1/lots/north/ngsi-ld/OffStreetParking")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/ld+json");
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["id"], "urn:ngsi-ld:OffStreetParking:north");
    assert_eq!(e["type"], "OffStreetParking");
    assert_eq!(e["name"]["value"], "North Garage");
    assert_eq!(e["totalSpotNumber"]["value"], 5);
    assert_eq!(e["availableSpotNumber"]["value"], 2);
    assert_eq!(
        e["fourWheelerSlots"]["value"],
        json!({ "availableSpotNumber": 1, "totalSpotNumber": 3, "occupiedSpotNumber": 1 })
    );
    assert_eq!(
        e["twoWheelerSlots"]["value"],
        json!({ "availableSpotNumber": 1, "totalSpotNumber": 2, "occupiedSpotNumber": 0 })
    );
    let (_, a) = parkd.availability("north").await;
    let modified: DateTime<Utc> = e["occupancyModified"]["value"].as_str().unwrap().parse().unwrap();
    let updated: DateTime<Utc> = a["updatedAt"].as_str().unwrap().parse().unwrap();
    assert_eq!(modified, updated, "occupancyModified is when a bay last changed");
    assert!(e["@context"].as_array().unwrap().iter().any(|c| c.as_str().unwrap().contains("ngsi-ld")));

    let spots: Vec<Value> = parkd
        .client
        .get(parkd.url("/api/v1/lots/north/ngsi-ld/ParkingSpot"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(spots.len(), 5);
    let c0 = spots.iter().find(|s| s["id"] == "urn:ngsi-ld:ParkingSpot:north:C0").unwrap();
    assert_eq!(c0["type"], "ParkingSpot");
    assert_eq!(c0["status"]["value"], "occupied");
    assert_eq!(c0["status"]["observedAt"], "2026-11-25T10:00:00.000Z");
    assert_eq!(
        c0["refParkingSite"],
        json!({ "type": "Relationship", "object": "urn:ngsi-ld:OffStreetParking:north" })
    );
    let unknown = spots.iter().filter(|s| s["status"]["value"] == "unknown").count();
    assert_eq!(unknown, 2);

    let r =
        parkd.client.get(parkd.url("/api/v1/lots/nowhere/ngsi-ld/OffStreetParking")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

/// With `events_sink` set (as the cluster sets it to the Broker's ingress),
/// the sweep POSTs what it derives there, one event per request, and answers
/// with its report alone. While the sink refuses, the state changes still
/// commit, their events wait in the outbox and the tick is answered 503 (so
/// it is redelivered); the next run delivers them, oldest first, once.
async fn derived_events_wait_in_the_outbox_until_the_sink_takes_them(backend: Backend) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let sink = parking_tests::knative::Broker::new(Vec::new(), Default::default(), "/parking/parking");
    tokio::spawn(sink.clone().serve(listener));
    let url = format!("http://{address}/parking/parking");
    let parkd = start(
        backend,
        &[("offline_after_seconds", "2"), ("events_sink", &url), ("events_sink_host", &address)],
        None,
    )
    .await;
    parkd.put_lot("north", &lot_spec("North", "N", 2, 0)).await;
    parkd.send_reading("x-1", &reading("N-C0", true, 1, &ts(Utc::now()))).await;
    parkd.send_reading("x-2", &reading("N-C1", false, 1, &ts(Utc::now()))).await;
    tokio::time::sleep(StdDuration::from_millis(2600)).await;

    // The sink is down: the bays still go unknown, the tick is refused.
    sink.refusing.store(true, std::sync::atomic::Ordering::SeqCst);
    let r = parkd.post_tick("x-tick-1").await;
    let (status, body) = (r.status(), r.text().await.unwrap());
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("outbox") && body.contains(&url), "names the outbox and the sink: {body}");
    let (_, a) = parkd.availability("north").await;
    assert_eq!(a["classes"]["four_wheeler"]["unknown"], 2, "the sweep's changes committed: {a}");
    assert!(sink.received().is_empty());

    // The sink is back: the next run delivers what the first one derived.
    sink.refusing.store(false, std::sync::atomic::Ordering::SeqCst);
    let (report, answered) = sweep(&parkd, "x-tick-2").await;
    assert!(answered.is_empty(), "the events went to the sink, not in the answer: {answered:?}");
    assert_eq!(report["baysMarkedUnknown"], 0, "{report}");
    assert_eq!(report["outbox"]["pending"], 0, "{report}");
    let received = sink.received();
    let seen: Vec<(String, String)> =
        received.iter().map(|e| (e.kind().to_owned(), e.attributes["id"].clone())).collect();
    assert_eq!(report["outbox"]["delivered"], seen.len(), "{report}");
    let types: Vec<&str> = seen.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        types,
        [
            "io.parking.slot.changed.v1",
            "io.parking.availability.changed.v1",
            "io.parking.sensor.alert.v1",
            "io.parking.slot.changed.v1",
            "io.parking.availability.changed.v1",
            "io.parking.sensor.alert.v1",
        ],
        "each bay's events, in the order they were derived"
    );
    assert!(seen.iter().all(|(_, id)| id.starts_with("x-tick-1/")), "derived by the first run: {seen:?}");
    let availability: Vec<Value> = received
        .iter()
        .filter(|e| e.kind() == "io.parking.availability.changed.v1")
        .map(|e| serde_json::from_slice(&e.data).unwrap())
        .collect();
    assert_eq!(availability[1]["counts"]["unknown"], 2, "{availability:?}");

    // Delivered once: a later run has nothing to send.
    let (report, _) = sweep(&parkd, "x-tick-3").await;
    assert_eq!(
        (report["outbox"]["delivered"].as_u64(), report["outbox"]["pending"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(sink.received().len(), 6);
}

/// History includes the present: before any sweep, the last closed hour and
/// the running one are counted from the raw changes (marked provisional), so
/// a fresh system's charts are not empty; once the sweep rolls the closed
/// hour up, it shows the same numbers, no longer provisional, and the running
/// hour is still counted live.
async fn the_present_is_counted_from_raw_changes_until_the_sweep_rolls_it_up(backend: Backend) {
    let parkd = start(backend, &[("rollup_settle_seconds", "0")], None).await;
    parkd.put_lot("north", &lot_spec("North", "N", 2, 0)).await;
    let now = Utc::now();
    let this_hour = hour_floor(now);
    let last_hour = this_hour - Duration::hours(1);
    let within_this_hour = this_hour + (now - this_hour) / 2;
    for (id, device, occupied, seq, at) in [
        ("p-0", "N-C0", false, 1, last_hour + Duration::minutes(5)),
        ("p-1", "N-C0", true, 2, last_hour + Duration::minutes(10)),
        ("p-2", "N-C0", false, 3, last_hour + Duration::minutes(40)),
        ("p-3", "N-C1", true, 1, within_this_hour),
    ] {
        let r = parkd.send_reading(id, &reading(device, occupied, seq, &ts(at))).await;
        assert_eq!(r.status(), StatusCode::OK, "{id}");
    }
    let history = || async {
        let url = format!("/api/v1/lots/north/history?from={}", ts(last_hour));
        let body: Value = parkd.client.get(parkd.url(&url)).send().await.unwrap().json().await.unwrap();
        let rows = body["rows"].as_array().unwrap_or_else(|| panic!("{body}")).clone();
        let at = |hour: DateTime<Utc>| {
            rows.iter()
                .find(|r| r["start"].as_str().unwrap().parse::<DateTime<Utc>>().unwrap() == hour)
                .unwrap_or_else(|| panic!("no row for {hour}: {body}"))
                .clone()
        };
        (at(last_hour), at(this_hour))
    };

    let (last, current) = history().await;
    assert_eq!(last["provisional"], true, "{last}");
    assert_eq!((last["arrivals"].as_u64(), last["departures"].as_u64()), (Some(1), Some(1)), "{last}");
    assert_eq!(last["meanDwellSeconds"], 1800.0, "{last}");
    assert_eq!(current["provisional"], true, "{current}");
    assert_eq!(current["arrivals"], 1, "{current}");
    assert!(current["meanOccupied"].as_f64().unwrap() > 0.0, "{current}");

    let (report, _) = sweep(&parkd, "present-1").await;
    assert!(!report["hoursRolledUp"].as_array().unwrap().is_empty(), "{report}");
    let (rolled, still_current) = history().await;
    assert!(rolled.get("provisional").is_none(), "rolled up now: {rolled}");
    let mut live = last.clone();
    live.as_object_mut().unwrap().remove("provisional");
    assert_eq!(rolled, live, "the sweep counts the hour as the live count did");
    assert_eq!(still_current["provisional"], true, "{still_current}");
    assert_eq!(still_current["arrivals"], 1, "{still_current}");
}
