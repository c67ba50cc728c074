//! Benchmark of overstay detection: what the sweep's overstay step costs per
//! tick as a lot grows from `--sizes` bays, every bay with a stay running and
//! `--due` of them falling due before each tick, against a baseline measured
//! in the same run on the same database: one read of every bay's stay (what
//! detection that scans every bay would do at least).
//!
//! Detection reads the due-time index, so its cost should follow the stays
//! due, not the bays: the headline is the growth factor from the smallest to
//! the largest lot, next to the scan's.
//!
//! `cargo run -p parking-tests --bin bench-overstays -- --help`

use std::time::Instant;

use anyhow::{Context, Result, ensure};
use clap::Parser;
use parking_tests::db::Db;
use parking_tests::progress as bar;
use parking_tests::{Backend, Parkd, ParkdOptions};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(about = "Overstay detection per sweep tick as lots grow, against a scan of every bay")]
struct Args {
    /// Lot sizes (bays), comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [2_000usize, 20_000])]
    sizes: Vec<usize>,
    /// Stays falling due before each measured tick.
    #[arg(long, default_value_t = 20)]
    due: usize,
    /// Measured ticks per size.
    #[arg(long, default_value_t = 30)]
    ticks: usize,
    /// `sqlite`, or `postgres` (a fresh database on PARKING_TEST_DATABASE_URL).
    #[arg(long, default_value = "sqlite")]
    backend: String,
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// A lot of `bays` bays in eight zones with a two-hour limit.
fn lot(bays: usize) -> Value {
    let zones: serde_json::Map<String, Value> =
        (1..=8).map(|z| (format!("L{z}"), json!({ "maxStay": "PT2H" }))).collect();
    let spec: Vec<Value> = (0..bays)
        .map(|i| json!({ "id": format!("C{i}"), "zone": format!("L{}", i % 8 + 1), "class": "four_wheeler", "sensor": format!("O-C{i}") }))
        .collect();
    json!({ "name": "Overstays", "zones": zones, "bays": spec })
}

/// One lot size's measurements, in milliseconds.
struct Sized {
    bays: usize,
    due_tick: f64,
    idle_tick: f64,
    scan: f64,
}

async fn measure(args: &Args, backend: Backend, bays: usize) -> Result<Sized> {
    let options = ParkdOptions::new(backend);
    let parkd = Parkd::start_with(options).await.context("starting parkd")?;
    let put = parkd.put_lot("bench", &lot(bays)).await;
    ensure!(put.status().is_success(), "provisioning {bays} bays failed: {}", put.status());
    let db = Db::open(&parkd).await?;
    // Every bay occupied for an hour, heard from now, its stay due in an hour.
    let now = chrono::Utc::now().timestamp_millis();
    let (started, due) = (now - 3_600_000, now + 3_600_000);
    db.execute(&format!(
        "UPDATE bays SET status = 'occupied', status_changed_at_ms = {started}, observed_at_ms = {started}, \
         last_seen_at_ms = {now}, stay_started_at_ms = {started}, stay_resumed_at_ms = {started}, \
         stay_counted_ms = 0, stay_limit_ms = 7200000, stay_due_at_ms = {due}, overstay_at_ms = NULL \
         WHERE lot_id = 'bench'"
    ))
    .await;
    parkd.sweep_report(&format!("warm-{bays}")).await?;

    let progress = bar(args.ticks as u64, &format!("{bays} bays: ticks"));
    let (mut due_ticks, mut idle_ticks) = (Vec::new(), Vec::new());
    for t in 0..args.ticks {
        // `due` bays, different each tick, fell due a minute ago; the
        // overstays of the last tick are closed as their bays would free.
        let first = (t * args.due) % bays.max(1);
        let chosen: Vec<String> = (first..first + args.due).map(|i| format!("'C{}'", i % bays)).collect();
        db.execute("UPDATE alerts SET closed_at_ms = 0 WHERE kind = 'bay_overstay' AND closed_at_ms IS NULL")
            .await;
        db.execute(&format!(
            "UPDATE bays SET overstay_at_ms = NULL, stay_due_at_ms = {} WHERE lot_id = 'bench' AND bay_id IN ({})",
            chrono::Utc::now().timestamp_millis() - 60_000,
            chosen.join(", ")
        ))
        .await;
        let report = parkd.sweep_report(&format!("due-{bays}-{t}")).await?;
        ensure!(
            report["overstaysRaised"].as_u64() == Some(args.due as u64),
            "tick {t}: {} overstays raised, expected {}: {report}",
            report["overstaysRaised"],
            args.due
        );
        due_ticks.push(report["stepMillis"]["overstays"].as_f64().context("stepMillis.overstays")?);
        let report = parkd.sweep_report(&format!("idle-{bays}-{t}")).await?;
        ensure!(report["overstaysRaised"] == 0, "an idle tick raised overstays: {report}");
        idle_ticks.push(report["stepMillis"]["overstays"].as_f64().context("stepMillis.overstays")?);
        progress.inc(1);
    }
    progress.finish_and_clear();

    let scan_sql = "SELECT lot_id, bay_id, stay_started_at_ms, stay_resumed_at_ms, stay_counted_ms, \
                    stay_limit_ms, stay_due_at_ms, overstay_at_ms FROM bays";
    let mut scans = Vec::new();
    for _ in 0..args.ticks {
        let started = Instant::now();
        let rows = db.fetch_len(scan_sql).await;
        scans.push(started.elapsed().as_secs_f64() * 1e3);
        ensure!(rows == bays, "the scan read {rows} of {bays} bays");
    }
    Ok(Sized { bays, due_tick: median(due_ticks), idle_tick: median(idle_ticks), scan: median(scans) })
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let backend = Backend::from_arg(&args.backend)?;
    ensure!(args.ticks > 0 && !args.sizes.is_empty(), "--ticks and --sizes must not be empty");
    ensure!(args.sizes.iter().all(|&s| s >= args.due), "every size must hold --due bays");
    let mut results = Vec::new();
    for &bays in &args.sizes {
        let started = Instant::now();
        results.push(measure(&args, backend, bays).await?);
        eprintln!("{bays} bays measured in {:.1} s", started.elapsed().as_secs_f64());
    }
    println!(
        "overstay detection, {} ({} stays due per tick, median of {} ticks; step time inside the sweep)",
        args.backend, args.due, args.ticks
    );
    println!(
        "{:>8} {:>16} {:>16} {:>22} {:>16}",
        "bays", "tick, due ms", "tick, idle ms", "baseline: scan ms", "due tick/scan"
    );
    for r in &results {
        println!(
            "{:>8} {:>16.2} {:>16.2} {:>22.2} {:>15.2}x",
            r.bays,
            r.due_tick,
            r.idle_tick,
            r.scan,
            r.due_tick / r.scan
        );
    }
    let (first, last) = (&results[0], &results[results.len() - 1]);
    let grew = |a: f64, b: f64| if a > 0.0 { b / a } else { f64::NAN };
    println!(
        "from {} to {} bays ({:.0}x): detection with stays due {:.2}x, idle {:.2}x; baseline scan {:.2}x",
        first.bays,
        last.bays,
        last.bays as f64 / first.bays as f64,
        grew(first.due_tick, last.due_tick),
        grew(first.idle_tick, last.idle_tick),
        grew(first.scan, last.scan)
    );
    Ok(())
}
