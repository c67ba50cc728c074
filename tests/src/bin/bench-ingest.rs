//! Ingest benchmark: `parkd simulate` at rising rates through a broker (the
//! embedded one and Mosquitto) and the bridge into sensor-event, once per
//! bridge batch size. Prints the sustained readings/s and the latency from
//! MQTT publish (the reading's observation time) to its commit (the status
//! change's record time, read from the database), with two baselines from the same
//! run: the unbatched bridge (batch size 1), the broker's own rate (the
//! same readings, QoS 1, from publisher to a plain subscriber: the
//! transport's limit) and, on PostgreSQL, `pgbench`'s single-row update rate
//! on the same server (machines are noisy: compare ratios). Durable settings
//! are the headline:
//!
//! `PARKING_PG_FSYNC=on bash scripts/with-postgres.sh target/debug/bench-ingest`
//! (built by `cargo test --no-run`, the tests' own build).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use parkd::bridge::sink::Sink;
use parkd::bridge::topics::default_mappings;
use parkd::bridge::{Bridge, BridgeConfig};
use parkd::inbox::Inbox;
use parkd::simulate::{SimulateOptions, lot_definition};
use parking_tests::db::Db;
use parking_tests::mosquitto::Mosquitto;
use parking_tests::{Backend, Parkd, ParkdOptions, test_server_url};

#[derive(Parser)]
#[command(about = "Sustained ingest and publish-to-change latency, by broker and bridge batch size")]
struct Args {
    /// Target readings per second, one round each.
    #[arg(long, value_delimiter = ',', default_value = "500,1000,2000,4000")]
    rates: Vec<f64>,
    /// Seconds of traffic per round.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Simulated bays.
    #[arg(long, default_value_t = 500)]
    bays: usize,
    /// Bridge batch sizes, each with all rates (1 is the unbatched baseline).
    #[arg(long, value_delimiter = ',', default_value = "1,100")]
    batch_sizes: Vec<usize>,
    /// Brokers: embedded (parkd's default) and/or mosquitto.
    #[arg(long, value_delimiter = ',', default_value = "embedded,mosquitto")]
    brokers: Vec<String>,
    /// postgres (under scripts/with-postgres.sh) or sqlite.
    #[arg(long, default_value = "postgres")]
    database: String,
    /// Seconds pgbench runs (PostgreSQL only).
    #[arg(long, default_value_t = 10)]
    pgbench_seconds: u64,
}

struct Round {
    broker: String,
    batch: usize,
    target: f64,
    sent: u64,
    sustained: f64,
    p50_ms: f64,
    p99_ms: f64,
    batches: u64,
    /// Database statements per reading (round trips from the components).
    statements: f64,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

/// A broker for one set of rounds: its port, Mosquitto's process, and the
/// embedded broker's durable inbox (the in-process bridge reads it).
struct Broker {
    port: u16,
    _mosquitto: Option<Mosquitto>,
    inbox: Option<(std::sync::Arc<Inbox>, tempfile::TempDir)>,
}

fn start_broker(name: &str) -> Result<Broker> {
    match name {
        "mosquitto" => {
            let broker = Mosquitto::start()?;
            Ok(Broker { port: broker.port, _mosquitto: Some(broker), inbox: None })
        }
        "embedded" => {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            let dir = tempfile::tempdir()?;
            let inbox = std::sync::Arc::new(Inbox::open(dir.path())?);
            let address = format!("127.0.0.1:{port}").parse()?;
            parkd::mqtt_broker::start_embedded(address, inbox.clone(), default_mappings())?;
            Ok(Broker { port, _mosquitto: None, inbox: Some((inbox, dir)) })
        }
        other => bail!("--brokers: unknown broker {other:?} (embedded or mosquitto)"),
    }
}

/// Marks everything in the inbox applied (the transport baseline's readings
/// are not the rounds').
fn skip_inbox(inbox: &std::sync::Arc<Inbox>) -> Result<()> {
    let mut reader = inbox.reader();
    let mut last = None;
    while let Some(record) = reader.try_next()? {
        last = Some(record.next);
    }
    if let Some(next) = last {
        inbox.commit(next)?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let backend = match args.database.as_str() {
        "postgres" => Backend::Postgres,
        "sqlite" => Backend::Sqlite,
        other => bail!("--database {other:?}: postgres or sqlite"),
    };
    let lanes = parkd::up::IN_PROCESS_LANES;
    let parkd = Parkd::start_with(ParkdOptions::new(backend))
        .await
        .context("starting parkd (PostgreSQL: run under scripts/with-postgres.sh)")?;
    let db = Db::open(&parkd).await?;
    let put = parkd.put_lot("sim", &lot_definition("Sim", "SIM", args.bays)).await;
    if !put.status().is_success() {
        bail!("provisioning the lot failed: {}", put.status());
    }

    let mut rounds = Vec::new();
    let mut transport = Vec::new();
    let mut seed = 0;
    for broker in &args.brokers {
        let started = start_broker(broker)?;
        let port = started.port;
        let readings = (args.rates.iter().cloned().fold(0.0, f64::max) * args.seconds as f64) as u64;
        transport.push((broker.clone(), transport_rate(port, args.bays, readings.max(1000)).await?));
        if let Some((inbox, _)) = &started.inbox {
            skip_inbox(inbox)?;
        }
        for &batch in &args.batch_sizes {
            // The bridge `parkd up` runs in-process on this database.
            let config = BridgeConfig {
                client_id: format!("bench-{broker}-{batch}"),
                batch_size: batch.max(1),
                ..parkd::up::in_process_bridge(&format!("mqtt://127.0.0.1:{port}"))?
            };
            let sink = Sink::InProcess(parkd.running.eventing.clone());
            let bridge = match &started.inbox {
                Some((inbox, _)) => Bridge::start_with_inbox(config, sink, inbox.clone()),
                None => Bridge::start(config, sink),
            };
            bridge.ready(Duration::from_secs(10)).await?;
            for &rate in &args.rates {
                seed += 1;
                let round = run_round(&parkd, &db, &bridge, port, &args, rate, seed).await?;
                rounds.push(Round { broker: broker.clone(), batch, ..round });
            }
        }
    }

    let pgbench_tps = match backend {
        Backend::Postgres => Some(pgbench(args.pgbench_seconds).await?),
        Backend::Sqlite => None,
    };
    let durability = match backend {
        Backend::Postgres => {
            format!("PostgreSQL, fsync {}", std::env::var("PARKING_PG_FSYNC").unwrap_or("?".into()))
        }
        Backend::Sqlite => "SQLite (WAL)".to_owned(),
    };
    println!(
        "bench-ingest: {} bays, {} s per round, {durability}, bridge ({lanes} {} taking turns, as `parkd up`) -> sensor-event in-process",
        args.bays,
        args.seconds,
        if lanes == 1 { "lane" } else { "lanes" }
    );
    println!(
        "{:>9} {:>5} {:>8} {:>7} {:>11} {:>8} {:>8} {:>8} {:>9} {:>10} {:>12} {:>10}",
        "broker",
        "batch",
        "target/s",
        "sent",
        "sustained/s",
        "p50 ms",
        "p99 ms",
        "batches",
        "stmts/rdg",
        "vs batch 1",
        "vs transport",
        "vs pgbench"
    );
    for r in &rounds {
        let baseline = rounds
            .iter()
            .find(|b| b.broker == r.broker && b.batch == 1 && b.target == r.target)
            .map(|b| format!("{:.2}x", r.sustained / b.sustained))
            .unwrap_or_else(|| "-".into());
        let vs_transport = transport
            .iter()
            .find(|(broker, _)| *broker == r.broker)
            .map(|(_, rate)| format!("{:.2}x", r.sustained / rate))
            .unwrap_or_else(|| "-".into());
        let pgbench = pgbench_tps.map(|t| format!("{:.3}x", r.sustained / t)).unwrap_or_else(|| "-".into());
        println!(
            "{:>9} {:>5} {:>8.0} {:>7} {:>11.0} {:>8.1} {:>8.1} {:>8} {:>9.2} {:>10} {:>12} {:>10}",
            r.broker,
            r.batch,
            r.target,
            r.sent,
            r.sustained,
            r.p50_ms,
            r.p99_ms,
            r.batches,
            r.statements,
            baseline,
            vs_transport,
            pgbench
        );
    }
    for (broker, rate) in &transport {
        println!("transport: {broker}, QoS 1 from the simulator to a plain subscriber: {rate:.0} messages/s");
    }
    if let Some(tps) = pgbench_tps {
        println!("pgbench single-row UPDATE, 4 clients, same server and settings: {tps:.0} tps");
    }
    Ok(())
}

/// One round: `rate` readings/s for `seconds`; sustained until the last was applied.
async fn run_round(
    parkd: &Parkd,
    db: &Db,
    bridge: &Bridge,
    port: u16,
    args: &Args,
    rate: f64,
    seed: u64,
) -> Result<Round> {
    let stats = &bridge.stats;
    let statements_before = parkd.database_statements().await?;
    let (delivered_before, batches_before) =
        (stats.delivered.load(Ordering::Relaxed), stats.batches.load(Ordering::Relaxed));
    let started_ms = chrono::Utc::now().timestamp_millis();
    let started = Instant::now();
    let readings = (rate * args.seconds as f64) as u64;
    eprintln!("round {seed}: {readings} readings at {rate}/s");
    let summary = parkd::simulate::run(SimulateOptions {
        mqtt_port: port,
        bays: args.bays,
        rate,
        readings,
        seed,
        progress: false,
        ..Default::default()
    })
    .await?;
    let done = || stats.delivered.load(Ordering::Relaxed) + stats.dead_lettered.load(Ordering::Relaxed);
    let give_up = Duration::from_secs(args.seconds * 10 + 60);
    while done() < delivered_before + summary.sent && started.elapsed() < give_up {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A round that does not finish reports what it delivered by then.
    let delivered = done() - delivered_before;
    if delivered < summary.sent {
        eprintln!(
            "round {seed}: {} of {} readings undelivered after {give_up:?}",
            summary.sent - delivered,
            summary.sent
        );
    }
    let sustained = delivered as f64 / started.elapsed().as_secs_f64();
    let statements =
        (parkd.database_statements().await? - statements_before) as f64 / delivered.max(1) as f64;
    // Publish (observation) to commit (record) of every status change of the round.
    let mut latencies: Vec<f64> = db
        .strings(&format!(
            "SELECT CAST(recorded_at_ms - changed_at_ms AS TEXT) FROM status_changes WHERE recorded_at_ms >= {started_ms}"
        ))
        .await
        .iter()
        .filter_map(|ms| ms.parse().ok())
        .collect();
    latencies.sort_by(f64::total_cmp);
    Ok(Round {
        broker: String::new(),
        batch: 0,
        target: rate,
        sent: summary.sent,
        sustained,
        p50_ms: percentile(&latencies, 0.5),
        p99_ms: percentile(&latencies, 0.99),
        batches: stats.batches.load(Ordering::Relaxed) - batches_before,
        statements,
    })
}

/// The broker's own rate: `readings` simulated readings published as fast
/// as it takes them, QoS 1, received by a subscriber that acknowledges each
/// at once (no bridge, no database). Messages per second, publish to receipt.
async fn transport_rate(port: u16, bays: usize, readings: u64) -> Result<f64> {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    eprintln!("transport: {readings} readings, QoS 1, to a plain subscriber");
    let mut options = MqttOptions::new(format!("bench-transport-{port}"), "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30)).set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut eventloop) = AsyncClient::new(options, 1000);
    client.subscribe("#", QoS::AtLeastOnce).await?;
    loop {
        if let Event::Incoming(Packet::SubAck(_)) = eventloop.poll().await? {
            break;
        }
    }
    let received = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = received.clone();
    let subscriber = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(_))) => {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(e) => return Err::<(), _>(e),
            }
        }
    });
    let started = Instant::now();
    let summary = parkd::simulate::run(SimulateOptions {
        mqtt_port: port,
        bays,
        rate: 1_000_000.0,
        readings,
        seed: 1_000_000,
        progress: false,
        ..Default::default()
    })
    .await?;
    while received.load(Ordering::Relaxed) < summary.sent {
        if started.elapsed() > Duration::from_secs(120) {
            bail!(
                "transport: {} of {} messages received after 120 s",
                received.load(Ordering::Relaxed),
                summary.sent
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let rate = summary.sent as f64 / started.elapsed().as_secs_f64();
    subscriber.abort();
    client.disconnect().await.ok();
    Ok(rate)
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
