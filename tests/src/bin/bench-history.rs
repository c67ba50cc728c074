//! Benchmark of history and retention, each next to a baseline measured in
//! the same run on the same database:
//!
//! - history query latency over `--days` of hourly roll-ups for a lot of
//!   `--bays` bays (GET /api/v1/lots/{lot}/history, hourly and daily, JSON
//!   and CSV), against a plain indexed SELECT of the same rows from the bench
//!   process;
//! - roll-up speed: a day of status changes of every bay rolled up by the sweep;
//! - sweep throughput (raw rows deleted per second) over `--raw-rows` old
//!   readings, alone and with a concurrent stream of readings, against one
//!   plain DELETE of the same number of rows; and ingest latency during the
//!   sweep against ingest alone.
//!
//! `cargo run --release -p parking-tests --bin bench-history -- --help`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use chrono::{DurationRound, Utc};
use clap::Parser;
use parking_tests::db::Db;
use parking_tests::progress as bar;
use parking_tests::{Backend, Parkd, ParkdOptions, reading};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(about = "History query latency and retention sweep throughput, against same-run baselines")]
struct Args {
    /// Bays in the lot (four-wheelers in zones L1..L8, a fifth two-wheelers in M1..M2).
    #[arg(long, default_value_t = 5000)]
    bays: usize,
    /// Days of hourly roll-ups to query.
    #[arg(long, default_value_t = 90)]
    days: i64,
    /// Requests per measured query.
    #[arg(long, default_value_t = 50)]
    queries: usize,
    /// Old raw readings per sweep measurement.
    #[arg(long, default_value_t = 1_000_000)]
    raw_rows: i64,
    /// Rows per delete batch (the sweep's `sweep_batch_size`).
    #[arg(long, default_value_t = 5000)]
    batch: u32,
    /// `sqlite`, or `postgres` (a fresh database on PARKING_TEST_DATABASE_URL).
    #[arg(long, default_value = "sqlite")]
    backend: String,
}

struct Latency {
    p50: Duration,
    p99: Duration,
}

fn latency(mut samples: Vec<Duration>) -> Latency {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    Latency { p50: at(0.5), p99: at(0.99) }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn lot(bays: usize) -> Value {
    let bikes = bays / 5;
    let cars = bays - bikes;
    let mut spec = Vec::with_capacity(bays);
    for i in 0..cars {
        spec.push(json!({ "id": format!("C{i}"), "zone": format!("L{}", i % 8 + 1), "class": "four_wheeler", "sensor": format!("B-C{i}") }));
    }
    for i in 0..bikes {
        spec.push(json!({ "id": format!("M{i}"), "zone": format!("M{}", i % 2 + 1), "class": "two_wheeler", "sensor": format!("B-M{i}") }));
    }
    json!({ "name": "Benchmark", "bays": spec })
}

/// `days` of hourly roll-ups for every (zone, class) group, set-based.
async fn generate_rollups(db: &Db, first_hour_ms: i64, hours: i64, bays: usize) {
    let groups = "SELECT 'L' || g AS zone, 'four_wheeler' AS class FROM z8 UNION ALL \
                  SELECT 'M' || g, 'two_wheeler' FROM z8 WHERE g <= 2";
    let per_group = bays / 10;
    let columns = "occupancy_hourly (lot_id, hour_start_ms, zone, class, span_ms, bays, occupied_bay_ms, \
                   peak_occupied, min_free, arrivals, departures, dwell_total_ms, dwell_count, computed_at_ms)";
    let values = format!(
        "SELECT 'bench', {first_hour_ms} + CAST(h AS BIGINT) * 3600000, zone, class, 3600000, {per_group}, \
         ({per_group} / 2 + h % 7) * 3600000, {per_group} / 2 + 10, {per_group} / 3, 20 + h % 11, 19 + h % 13, \
         (20 + h % 11) * 5400000, 20 + h % 11, 0"
    );
    let sql = if db.is_postgres() {
        format!(
            "WITH z8 AS (SELECT g FROM generate_series(1, 8) AS g), grp AS ({groups}) \
             INSERT INTO {columns} {values} FROM grp, generate_series(0, {hours} - 1) AS h"
        )
    } else {
        format!(
            "WITH RECURSIVE z8(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM z8 WHERE g < 8), \
             hs(h) AS (SELECT 0 UNION ALL SELECT h + 1 FROM hs WHERE h < {hours} - 1), grp AS ({groups}) \
             INSERT INTO {columns} {values} FROM grp, hs"
        )
    };
    db.execute(&sql).await;
}

/// A day of status changes: every bay arrives and leaves twice, set-based.
async fn generate_status_changes(db: &Db, first_hour_ms: i64, bays: usize) {
    let columns =
        "status_changes (lot_id, bay_id, zone, class, previous, status, changed_at_ms, recorded_at_ms)";
    let per = "(CASE WHEN b < {cars} THEN 'C' || b ELSE 'M' || (b - {cars}) END), \
               (CASE WHEN b < {cars} THEN 'L' || (b % 8 + 1) ELSE 'M' || ((b - {cars}) % 2 + 1) END), \
               (CASE WHEN b < {cars} THEN 'four_wheeler' ELSE 'two_wheeler' END)";
    let cars = bays - bays / 5;
    let per = per.replace("{cars}", &cars.to_string());
    // Step k of 4: free->occupied, occupied->free, free->occupied, occupied->free.
    let values = format!(
        "SELECT 'bench', {per}, CASE WHEN k % 2 = 0 THEN 'free' ELSE 'occupied' END, \
         CASE WHEN k % 2 = 0 THEN 'occupied' ELSE 'free' END, \
         {first_hour_ms} + k * 21600000 + (b * 7919) % 21600000, {first_hour_ms} + k * 21600000 + (b * 7919) % 21600000"
    );
    let sql = if db.is_postgres() {
        format!(
            "INSERT INTO {columns} {values} FROM generate_series(0, {bays} - 1) AS b, generate_series(0, 3) AS k"
        )
    } else {
        format!(
            "WITH RECURSIVE bs(b) AS (SELECT 0 UNION ALL SELECT b + 1 FROM bs WHERE b < {bays} - 1), \
             ks(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM ks WHERE k < 3) \
             INSERT INTO {columns} {values} FROM bs, ks"
        )
    };
    db.execute(&sql).await;
}

struct SweepRun {
    rows: u64,
    wall: Duration,
    batches: Vec<f64>,
    runs: usize,
}

/// Sweeps until a run completes; counts the readings deleted.
async fn sweep_all(parkd: &Parkd, prefix: &str, expected: u64) -> Result<SweepRun> {
    let progress = bar(expected, prefix);
    let started = Instant::now();
    let mut run = SweepRun { rows: 0, wall: Duration::ZERO, batches: Vec::new(), runs: 0 };
    loop {
        let report = parkd.sweep_report(&format!("{prefix}-{}", run.runs)).await?;
        run.runs += 1;
        for b in report["batches"].as_array().context("batches")? {
            if b["table"] == "readings" {
                run.rows += b["rows"].as_u64().unwrap_or_default();
                run.batches.push(b["millis"].as_f64().unwrap_or_default());
            }
        }
        progress.set_position(run.rows);
        if report["complete"].as_bool() == Some(true) {
            break;
        }
    }
    run.wall = started.elapsed();
    progress.finish_and_clear();
    ensure!(run.rows == expected, "the sweep deleted {} of {expected} readings", run.rows);
    Ok(run)
}

/// Sends readings one after another until `stop`; answers their latencies.
fn ingest(
    parkd: Arc<Parkd>,
    stop: Arc<AtomicBool>,
    prefix: &'static str,
) -> tokio::task::JoinHandle<Vec<Duration>> {
    tokio::spawn(async move {
        let mut latencies = Vec::new();
        let mut seq = 0u32;
        while !stop.load(Ordering::Relaxed) {
            seq += 1;
            let device = format!("B-C{}", seq % 200);
            let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            let started = Instant::now();
            let r = parkd
                .send_reading(&format!("{prefix}-{seq}"), &reading(&device, seq.is_multiple_of(3), seq, &now))
                .await;
            latencies.push(started.elapsed());
            assert!(r.status().is_success(), "reading during the benchmark: {}", r.status());
        }
        latencies
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let backend = Backend::from_arg(&args.backend)?;
    let mut options = ParkdOptions::new(backend);
    options.variables = vec![
        ("sweep_batch_size".into(), args.batch.to_string()),
        ("sweep_time_budget_ms".into(), "10000".into()),
        ("rollup_settle_seconds".into(), "0".into()),
    ];
    let parkd = Arc::new(Parkd::start_with(options).await.context("starting parkd")?);
    let put = parkd.put_lot("bench", &lot(args.bays)).await;
    ensure!(put.status().is_success(), "provisioning the benchmark lot failed: {}", put.status());
    let db = Db::open(&parkd).await?;
    let this_hour = Utc::now().duration_trunc(chrono::Duration::hours(1))?;

    // ---- roll-up: a day of status changes of every bay.
    let day_start = this_hour - chrono::Duration::hours(24);
    generate_status_changes(&db, day_start.timestamp_millis(), args.bays).await;
    db.execute(&format!(
        "INSERT INTO rollup_progress (name, rolled_up_to_ms, updated_at_ms) VALUES ('occupancy_hourly', {}, 0)",
        day_start.timestamp_millis()
    ))
    .await;
    let progress = bar(24, "sweep: roll up 24 hours");
    let started = Instant::now();
    let mut hours = Vec::new();
    let mut tick = 0;
    while hours.len() < 24 {
        let report = parkd.sweep_report(&format!("rollup-{tick}")).await?;
        tick += 1;
        let rolled = report["hoursRolledUp"].as_array().context("hoursRolledUp")?.clone();
        ensure!(!rolled.is_empty() || hours.len() >= 24, "the sweep rolled up nothing: {report}");
        hours.extend(rolled.iter().map(|h| h["millis"].as_f64().unwrap_or_default()));
        progress.set_position(hours.len() as u64);
    }
    let rollup_wall = started.elapsed();
    progress.finish_and_clear();
    let changes = (args.bays * 4) as f64;

    // ---- history: `days` of hourly roll-ups before the day above.
    let hours_of_history = args.days * 24;
    let first_hour = day_start - chrono::Duration::hours(hours_of_history);
    generate_rollups(&db, first_hour.timestamp_millis(), hours_of_history, args.bays).await;
    let (from, to) = (first_hour, day_start);
    let range = format!(
        "from={}&to={}",
        from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        to.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let mut results = Vec::new();
    let baseline_sql = format!(
        "SELECT zone, class, hour_start_ms, span_ms, bays, occupied_bay_ms, peak_occupied, min_free, arrivals, \
         departures, dwell_total_ms, dwell_count FROM occupancy_hourly WHERE lot_id = 'bench' \
         AND hour_start_ms >= {} AND hour_start_ms < {} ORDER BY hour_start_ms, zone, class",
        from.timestamp_millis(),
        to.timestamp_millis()
    );
    let progress = bar(args.queries as u64, "baseline: indexed SELECT");
    let mut samples = Vec::new();
    let mut baseline_rows = 0;
    for _ in 0..args.queries {
        let started = Instant::now();
        baseline_rows = db.fetch_len(&baseline_sql).await;
        samples.push(started.elapsed());
        progress.inc(1);
    }
    progress.finish_and_clear();
    let baseline = latency(samples);
    for (name, query, accept) in [
        ("history hourly JSON", format!("{range}&bucket=hour"), "application/json"),
        ("history hourly CSV", format!("{range}&bucket=hour"), "text/csv"),
        ("history daily JSON", format!("{range}&bucket=day"), "application/json"),
        (
            "history hourly JSON, one class",
            format!("{range}&bucket=hour&class=two_wheeler"),
            "application/json",
        ),
    ] {
        let progress = bar(args.queries as u64, name);
        let mut samples = Vec::new();
        let mut size = 0;
        for _ in 0..args.queries {
            let started = Instant::now();
            let r = parkd
                .client
                .get(parkd.url(&format!("/api/v1/lots/bench/history?{query}")))
                .header("accept", accept)
                .send()
                .await?;
            ensure!(r.status().is_success(), "{name}: {} {}", r.status(), r.text().await?);
            size = r.bytes().await?.len();
            samples.push(started.elapsed());
            progress.inc(1);
        }
        progress.finish_and_clear();
        results.push((name, latency(samples), size));
    }

    // ---- sweep throughput: alone, then with ingest; baseline: one plain DELETE.
    let old = (Utc::now() - chrono::Duration::days(40)).timestamp_millis();
    let n = args.raw_rows;
    let progress = bar(1, "baseline: one plain DELETE");
    db.generate_readings("bench", "X", 100, n, old).await;
    let started = Instant::now();
    db.execute(&format!("DELETE FROM readings WHERE received_at_ms < {}", old + n + 1)).await;
    let plain_delete = started.elapsed();
    progress.finish_and_clear();

    // Ingest alone, for the latency baseline.
    let stop = Arc::new(AtomicBool::new(false));
    let alone = ingest(parkd.clone(), stop.clone(), "alone");
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    let ingest_alone = alone.await?;

    db.generate_readings("bench", "X", 100, n, old).await;
    let quiet = sweep_all(&parkd, "sweep alone", n as u64).await?;

    db.generate_readings("bench", "X", 100, n, old).await;
    let stop = Arc::new(AtomicBool::new(false));
    let during = ingest(parkd.clone(), stop.clone(), "during");
    let busy = sweep_all(&parkd, "sweep with ingest", n as u64).await?;
    stop.store(true, Ordering::Relaxed);
    let ingest_during = during.await?;

    // ---- report
    println!(
        "bench-history: {:?} database, lot of {} bays in 10 (zone, class) groups, {} days of hourly roll-ups \
         ({} rows), {} requests per query",
        backend, args.bays, args.days, baseline_rows, args.queries
    );
    println!(
        "{:<36} {:>10} {:>10} {:>10} {:>16}",
        "history query", "p50 ms", "p99 ms", "bytes", "p50 vs baseline"
    );
    println!(
        "{:<36} {:>10.2} {:>10.2} {:>10} {:>16}",
        "baseline: indexed SELECT (sqlx)",
        ms(baseline.p50),
        ms(baseline.p99),
        "-",
        "1.0x"
    );
    for (name, l, size) in &results {
        println!(
            "{:<36} {:>10.2} {:>10.2} {:>10} {:>15.1}x",
            name,
            ms(l.p50),
            ms(l.p99),
            size,
            l.p50.as_secs_f64() / baseline.p50.as_secs_f64()
        );
    }
    let mean_hour = hours.iter().sum::<f64>() / hours.len() as f64;
    println!(
        "roll-up: 24 hours of {} status changes of {} bays in {:.2} s ({:.0} changes/s; {:.1} ms per hour's \
         transaction, slowest {:.1} ms)",
        changes,
        args.bays,
        rollup_wall.as_secs_f64(),
        changes / rollup_wall.as_secs_f64(),
        mean_hour,
        hours.iter().copied().fold(0.0, f64::max)
    );
    let plain_rate = n as f64 / plain_delete.as_secs_f64();
    println!(
        "{:<36} {:>12} {:>8} {:>14} {:>12} {:>14}",
        "sweep", "rows/s", "runs", "batches", "slowest ms", "vs DELETE"
    );
    println!(
        "{:<36} {:>12.0} {:>8} {:>14} {:>12.1} {:>14}",
        "baseline: one plain DELETE (sqlx)",
        plain_rate,
        1,
        1,
        ms(plain_delete),
        "1.00x"
    );
    for (name, run) in [("sweep alone", &quiet), ("sweep with concurrent ingest", &busy)] {
        let rate = run.rows as f64 / run.wall.as_secs_f64();
        println!(
            "{:<36} {:>12.0} {:>8} {:>14} {:>12.1} {:>13.2}x",
            name,
            rate,
            run.runs,
            run.batches.len(),
            run.batches.iter().copied().fold(0.0, f64::max),
            rate / plain_rate
        );
    }
    let (a, d) = (latency(ingest_alone.clone()), latency(ingest_during.clone()));
    println!(
        "ingest alone: {} readings, p50 {:.2} ms, p99 {:.2} ms; during the sweep: {} readings, p50 {:.2} ms, \
         p99 {:.2} ms ({:.1}x p99)",
        ingest_alone.len(),
        ms(a.p50),
        ms(a.p99),
        ingest_during.len(),
        ms(d.p50),
        ms(d.p99),
        d.p99.as_secs_f64() / a.p99.as_secs_f64()
    );
    Ok(())
}
