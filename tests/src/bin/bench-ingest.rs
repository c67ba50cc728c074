//! Ingest benchmark: `parkd simulate` at rising rates through a real
//! Mosquitto and the bridge into parkd on PostgreSQL. Prints the sustained
//! readings/s and the latency from MQTT publish to the derived slot change,
//! beside `pgbench`'s single-row update rate on the same server in the same
//! run, as a ratio (machines are noisy: compare ratios).
//!
//! `bash scripts/with-postgres.sh cargo run --release -p parking-tests --bin bench-ingest`

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use parkd::simulate::{SimulateOptions, lot_definition};
use parkd::up::MqttMode;
use parking_tests::mosquitto::Mosquitto;
use parking_tests::{Backend, Parkd, ParkdOptions, manifest_with_recorder, test_server_url};
use serde_json::Value;

#[derive(Parser)]
#[command(about = "Sustained ingest and publish-to-change latency, against pgbench on the same PostgreSQL")]
struct Args {
    /// Target readings per second, one round each.
    #[arg(long, value_delimiter = ',', default_value = "50,100,200,400")]
    rates: Vec<f64>,
    /// Seconds of traffic per round.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Simulated bays.
    #[arg(long, default_value_t = 500)]
    bays: usize,
    /// Seconds pgbench runs.
    #[arg(long, default_value_t = 10)]
    pgbench_seconds: u64,
}

struct Round {
    target: f64,
    sent: u64,
    sustained: f64,
    p50_ms: f64,
    p99_ms: f64,
    samples: usize,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let broker = Mosquitto::start()?;
    let dir = tempfile::tempdir()?;
    let manifest = manifest_with_recorder(dir.path(), &["io.parking.slot.changed.v1"])?;
    let parkd = Parkd::start_with(ParkdOptions {
        mqtt: MqttMode::External(broker.url()),
        manifest: Some(manifest),
        ..ParkdOptions::new(Backend::Postgres)
    })
    .await
    .context("starting parkd on PostgreSQL (run under scripts/with-postgres.sh)")?;
    let put = parkd.put_lot("sim", &lot_definition("Sim", "SIM", args.bays)).await;
    if !put.status().is_success() {
        bail!("provisioning the lot failed: {}", put.status());
    }
    let bridge = parkd.running.bridge.as_ref().context("no bridge")?;

    let mut rounds = Vec::new();
    for (i, &rate) in args.rates.iter().enumerate() {
        let before = bridge.stats.delivered.load(Ordering::Relaxed);
        let started_ms = chrono::Utc::now().timestamp_millis();
        let started = Instant::now();
        let readings = (rate * args.seconds as f64) as u64;
        eprintln!("round {}: {readings} readings at {rate}/s", i + 1);
        let summary = parkd::simulate::run(SimulateOptions {
            mqtt_port: broker.port,
            bays: args.bays,
            rate,
            readings,
            seed: i as u64 + 1,
            ..Default::default()
        })
        .await?;
        // Sustained: until the last reading of the round was applied.
        while bridge.stats.delivered.load(Ordering::Relaxed) < before + summary.sent {
            if started.elapsed() > Duration::from_secs(args.seconds * 10 + 60) {
                bail!("round {}: readings still undelivered long after publishing ended", i + 1);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let sustained = summary.sent as f64 / started.elapsed().as_secs_f64();
        let recorded: Vec<Value> = parkd.client.get(parkd.url("/test/recorded")).send().await?.json().await?;
        let mut latencies: Vec<f64> = recorded
            .iter()
            .filter(|e| e["receivedMs"].as_i64().unwrap_or_default() >= started_ms)
            .filter_map(|e| {
                let observed: chrono::DateTime<chrono::Utc> = e["observedAt"].as_str()?.parse().ok()?;
                Some((e["receivedMs"].as_i64()? - observed.timestamp_millis()) as f64)
            })
            .collect();
        latencies.sort_by(f64::total_cmp);
        rounds.push(Round {
            target: rate,
            sent: summary.sent,
            sustained,
            p50_ms: percentile(&latencies, 0.5),
            p99_ms: percentile(&latencies, 0.99),
            samples: latencies.len(),
        });
    }

    let pgbench_tps = pgbench(args.pgbench_seconds).await?;
    println!(
        "bench-ingest: {} bays, {} s per round, PostgreSQL, Mosquitto, bridge -> sensor-event",
        args.bays, args.seconds
    );
    println!(
        "{:>8} {:>8} {:>14} {:>10} {:>10} {:>9} {:>16}",
        "target/s", "sent", "sustained/s", "p50 ms", "p99 ms", "changes", "vs pgbench tps"
    );
    for r in &rounds {
        println!(
            "{:>8.0} {:>8} {:>14.1} {:>10.1} {:>10.1} {:>9} {:>15.3}x",
            r.target,
            r.sent,
            r.sustained,
            r.p50_ms,
            r.p99_ms,
            r.samples,
            r.sustained / pgbench_tps
        );
    }
    println!("pgbench single-row UPDATE, 4 clients, same server: {pgbench_tps:.0} tps");
    Ok(())
}

/// pgbench's rate of single-row updates on the benchmark's PostgreSQL server.
async fn pgbench(seconds: u64) -> Result<f64> {
    let url = url::Url::parse(&test_server_url())?;
    let binary = ["/usr/bin/pgbench"]
        .into_iter()
        .map(std::path::PathBuf::from)
        .chain(
            std::fs::read_dir("/usr/lib/postgresql")
                .into_iter()
                .flatten()
                .flatten()
                .map(|d| d.path().join("bin/pgbench")),
        )
        .find(|p| p.exists())
        .context("pgbench not found (Debian package postgresql-client)")?;
    let database = parking_tests::fresh_postgres_database().await?;
    let db_name = database.rsplit('/').next().unwrap_or_default().to_owned();
    let options: sqlx::postgres::PgConnectOptions = database.parse()?;
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect_with(&options).await?;
    sqlx::query("CREATE TABLE counter (id INT PRIMARY KEY, n BIGINT NOT NULL)").execute(&mut conn).await?;
    sqlx::query("INSERT INTO counter VALUES (1, 0)").execute(&mut conn).await?;
    let script = tempfile::NamedTempFile::new()?;
    std::fs::write(script.path(), "UPDATE counter SET n = n + 1 WHERE id = 1;\n")?;
    eprintln!("pgbench: {seconds} s of single-row updates");
    let output = tokio::process::Command::new(binary)
        .args(["-n", "-c", "4", "-j", "2", "-T", &seconds.to_string(), "-f"])
        .arg(script.path())
        .args(["-h", url.host_str().unwrap_or("127.0.0.1"), "-p", &url.port().unwrap_or(5432).to_string()])
        .args(["-U", url.username(), &db_name])
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("tps = ").and_then(|r| r.split_whitespace().next()).and_then(|t| t.parse().ok())
        })
        .with_context(|| {
            format!("no tps in pgbench's output: {stdout}{}", String::from_utf8_lossy(&output.stderr))
        })
}
