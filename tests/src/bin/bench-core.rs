//! Benchmark of the core: `sensor-event` and `availability-query` through
//! parkd over HTTP, next to the same domain code called natively in-process,
//! measured in the same run (machines are noisy: compare the ratios).
//!
//! `cargo run --release -p parking-tests --bin bench-core -- --help`

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{TimeZone, Utc};
use clap::Parser;
use parking_domain::{
    BayCount, BayStatus, Observation, Outcome, VehicleClass, apply_reading, decode_parking_json, summarise,
};
use parking_tests::progress as bar;
use parking_tests::{Backend, Parkd, lot_spec, reading};

#[derive(Parser)]
#[command(about = "Latency and throughput of the core components through parkd, against native domain code")]
struct Args {
    /// Requests per measured operation.
    #[arg(long, default_value_t = 2000)]
    requests: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Four-wheeler bays in the lot (plus a quarter as many two-wheeler bays).
    #[arg(long, default_value_t = 200)]
    bays: usize,
    /// `sqlite`, or `postgres` (a fresh database on PARKING_TEST_DATABASE_URL).
    #[arg(long, default_value = "sqlite")]
    backend: String,
}

struct Stats {
    name: &'static str,
    p50: Duration,
    p99: Duration,
    per_second: f64,
}

fn stats(name: &'static str, mut latencies: Vec<Duration>, wall: Duration) -> Stats {
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Stats { name, p50: at(0.50), p99: at(0.99), per_second: latencies.len() as f64 / wall.as_secs_f64() }
}

/// The domain work one reading costs natively: decode, order, count.
fn native_reading(n: usize) -> Stats {
    let progress = bar(n as u64, "native: reading");
    let mut current = Observation::never_observed();
    let mut latencies = Vec::with_capacity(n);
    let wall = Instant::now();
    for i in 0..n {
        let payload = reading("N-C0", i % 2 == 0, i as u32 + 1, &observed_at(i)).to_string();
        let started = Instant::now();
        let r = decode_parking_json(payload.as_bytes()).expect("valid reading");
        if let Outcome::Changed(next) | Outcome::Refreshed(next) =
            apply_reading(&current, r.occupied, r.observed_at, r.seq)
        {
            current = next;
        }
        latencies.push(started.elapsed());
        progress.inc(1);
    }
    progress.finish_and_clear();
    stats("native  decode+apply reading", latencies, wall.elapsed())
}

/// The domain work one availability answer costs natively: summarise the lot.
fn native_availability(n: usize, bays: usize) -> Stats {
    let progress = bar(n as u64, "native: availability");
    let (car, bike) = (VehicleClass::four_wheeler(), VehicleClass::two_wheeler());
    let lot: Vec<(Option<String>, VehicleClass, BayStatus)> = (0..bays + bays / 4)
        .map(|i| {
            let (zone, class) = if i < bays { ("L1", car.clone()) } else { ("M", bike.clone()) };
            (Some(zone.to_owned()), class, BayStatus::ALL[i % 4])
        })
        .collect();
    let mut latencies = Vec::with_capacity(n);
    let wall = Instant::now();
    for _ in 0..n {
        let started = Instant::now();
        let summary = summarise(
            "north",
            lot.iter().map(|(zone, class, status)| BayCount {
                zone: zone.as_deref(),
                class,
                status: *status,
                changed_at: None,
            }),
        );
        let body = serde_json::to_vec(&summary).expect("serialisable");
        std::hint::black_box(body);
        latencies.push(started.elapsed());
        progress.inc(1);
    }
    progress.finish_and_clear();
    stats("native  summarise lot", latencies, wall.elapsed())
}

fn observed_at(i: usize) -> String {
    let base = Utc.with_ymd_and_hms(2026, 11, 25, 8, 0, 0).unwrap();
    (base + chrono::Duration::milliseconds(i as i64 * 10))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Runs `n` requests, `concurrency` at a time, through `send`.
async fn over_http<F, Fut>(name: &'static str, n: usize, concurrency: usize, send: F) -> Result<Stats>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let progress = bar(n as u64, name);
    let send = Arc::new(send);
    let next = Arc::new(AtomicUsize::new(0));
    let wall = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (send, next, progress) = (send.clone(), next.clone(), progress.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(latencies);
                }
                let started = Instant::now();
                send(i).await?;
                latencies.push(started.elapsed());
                progress.inc(1);
            }
        }));
    }
    let mut latencies = Vec::with_capacity(n);
    for w in workers {
        latencies.extend(w.await??);
    }
    progress.finish_and_clear();
    Ok(stats(name, latencies, wall.elapsed()))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let backend = Backend::from_arg(&args.backend)?;
    let parkd = Arc::new(Parkd::start(backend).await.context("starting parkd")?);
    let put = parkd.put_lot("north", &lot_spec("North", "N", args.bays, args.bays / 4)).await;
    if !put.status().is_success() {
        bail!("provisioning the benchmark lot failed: {}", put.status());
    }
    let (n, c) = (args.requests, args.concurrency);

    // Warm up: the first instances of each component pay for lazy setup.
    for i in 0..50 {
        parkd
            .send_reading(&format!("warm-{i}"), &reading("N-C1", i % 2 == 0, i + 1, &observed_at(i as usize)))
            .await;
        parkd.availability("north").await;
    }

    let native_r = native_reading(n);
    let native_a = native_availability(n, args.bays);

    let p = parkd.clone();
    let health = over_http("parkd   GET /healthz (no Wasm)", n, c, move |_| {
        let p = p.clone();
        async move {
            let r = p.client.get(p.url("/healthz")).send().await?;
            anyhow::ensure!(r.status().is_success(), "healthz: {}", r.status());
            Ok(())
        }
    })
    .await?;

    let statements_before = parkd.database_statements().await?;
    let p = parkd.clone();
    let bays = args.bays;
    let sensor = over_http("parkd   sensor-event", n, c, move |i| {
        let p = p.clone();
        async move {
            // Every reading flips a bay, so each one writes and derives events.
            let device = format!("N-C{}", i % bays);
            let body = reading(&device, (i / bays) % 2 == 0, (i / bays) as u32 + 1, &observed_at(1000 + i));
            let r = p.send_reading(&format!("bench-{i}"), &body).await;
            anyhow::ensure!(r.status().is_success(), "sensor-event: {}", r.status());
            Ok(())
        }
    })
    .await?;
    let statements = (parkd.database_statements().await? - statements_before) as f64 / n as f64;

    let p = parkd.clone();
    let query = over_http("parkd   availability-query", n, c, move |_| {
        let p = p.clone();
        async move {
            let r = p.client.get(p.url("/api/v1/lots/north/availability")).send().await?;
            anyhow::ensure!(r.status().is_success(), "availability: {}", r.status());
            r.bytes().await?;
            Ok(())
        }
    })
    .await?;

    println!(
        "bench-core: {n} requests per row, concurrency {c}, lot of {} bays, {:?} database",
        args.bays + args.bays / 4,
        backend
    );
    println!("{:<32} {:>10} {:>10} {:>10} {:>12}", "operation", "p50", "p99", "ops/s", "p50 ratio");
    let rows = [
        (&native_r, None),
        (&native_a, None),
        (&health, None),
        (&sensor, Some(&native_r)),
        (&query, Some(&native_a)),
    ];
    for (s, baseline) in rows {
        let ratio = baseline
            .map(|b| format!("{:.0}x native", s.p50.as_secs_f64() / b.p50.as_secs_f64()))
            .unwrap_or_default();
        println!(
            "{:<32} {:>8.1}µs {:>8.1}µs {:>10.0} {:>12}",
            s.name,
            s.p50.as_secs_f64() * 1e6,
            s.p99.as_secs_f64() * 1e6,
            s.per_second,
            ratio
        );
    }
    println!("sensor-event: {statements:.1} database statements per reading (each one changes its bay)");
    println!(
        "parkd overhead over the bare HTTP round trip (p50): sensor-event {:.1}x, availability-query {:.1}x",
        sensor.p50.as_secs_f64() / health.p50.as_secs_f64(),
        query.p50.as_secs_f64() / health.p50.as_secs_f64()
    );
    Ok(())
}
