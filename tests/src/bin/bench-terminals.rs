//! Terminal benchmark: latency from a sensor reading published over MQTT to
//! the frame that shows it arriving at every connected SSE client, through
//! the whole path (Mosquitto, bridge, sensor-event, terminal-push, Mosquitto
//! again, the gateway, SSE), at rising reading rates with many clients
//! connected. Beside it, in the same run: raw Mosquitto publish-to-subscribe
//! latency on the same machine (the floor of any MQTT path), as a ratio.
//!
//! Every reading frees one more bay, so a frame showing `k` free bays shows
//! the k-th reading: its latency at a client is when the first frame with at
//! least `k` free arrived there, less when reading `k` was published.
//!
//! `bash scripts/with-postgres.sh cargo run --release -p parking-tests --bin bench-terminals`

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use parkd::up::MqttMode;
use parking_tests::mosquitto::Mosquitto;
use parking_tests::terminals::{SseStream, token_for};
use parking_tests::{Backend, Parkd, ParkdOptions};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::json;

#[derive(Parser)]
#[command(about = "MQTT reading -> SSE frame latency with many clients, against raw Mosquitto latency")]
struct Args {
    /// Reading rates (per second), one round each.
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    rates: Vec<f64>,
    /// Seconds of readings per round.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Connected SSE clients.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Storage: sqlite or postgres (postgres needs scripts/with-postgres.sh).
    #[arg(long, default_value = "sqlite")]
    database: String,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

fn since_epoch_ms() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs_f64() * 1e3
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

struct Stats {
    p50: f64,
    p99: f64,
    max: f64,
    samples: usize,
}

fn stats(mut values: Vec<f64>) -> Stats {
    values.sort_by(f64::total_cmp);
    Stats {
        p50: percentile(&values, 0.5),
        p99: percentile(&values, 0.99),
        max: values.last().copied().unwrap_or(f64::NAN),
        samples: values.len(),
    }
}

/// Raw broker latency: one publisher, one subscriber, timestamps in the payload.
async fn mosquitto_baseline(broker: &Mosquitto, rate: f64, count: usize) -> Result<Stats> {
    let (sub, mut sub_loop) =
        AsyncClient::new(MqttOptions::new("bench-base-sub", "127.0.0.1", broker.port), 1024);
    sub.subscribe("bench/base", QoS::AtLeastOnce).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut subscribed_tx = Some(subscribed_tx);
        while let Ok(event) = sub_loop.poll().await {
            match event {
                Event::Incoming(Packet::SubAck(_)) => {
                    if let Some(s) = subscribed_tx.take() {
                        let _ = s.send(());
                    }
                }
                Event::Incoming(Packet::Publish(p)) => {
                    let sent: f64 = String::from_utf8_lossy(&p.payload).parse().unwrap_or(f64::NAN);
                    let _ = tx.send(since_epoch_ms() - sent);
                }
                _ => {}
            }
        }
    });
    subscribed.await?;
    let (publisher, mut pub_loop) =
        AsyncClient::new(MqttOptions::new("bench-base-pub", "127.0.0.1", broker.port), 1024);
    tokio::spawn(async move { while pub_loop.poll().await.is_ok() {} });
    let interval = Duration::from_secs_f64(1.0 / rate);
    let started = Instant::now();
    for i in 0..count {
        tokio::time::sleep_until((started + interval * i as u32).into()).await;
        publisher.publish("bench/base", QoS::AtLeastOnce, false, format!("{:.3}", since_epoch_ms())).await?;
    }
    let mut latencies = Vec::with_capacity(count);
    while latencies.len() < count {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some(l)) => latencies.push(l),
            _ => bail!("the baseline subscriber got {} of {count} messages", latencies.len()),
        }
    }
    Ok(stats(latencies))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let backend = match args.database.as_str() {
        "sqlite" => Backend::Sqlite,
        "postgres" => Backend::Postgres,
        other => bail!("--database {other:?}: sqlite or postgres"),
    };
    let readings: Vec<usize> = args.rates.iter().map(|r| (r * args.seconds).round() as usize).collect();
    let bays: usize = readings.iter().sum();
    if bays > parking_domain::MAX_BAYS_PER_LOT {
        bail!("{bays} readings need as many bays; a lot has at most {}", parking_domain::MAX_BAYS_PER_LOT);
    }

    let broker = Mosquitto::start()?;
    let parkd = Parkd::start_with(ParkdOptions {
        mqtt: MqttMode::External(broker.url()),
        ..ParkdOptions::new(backend)
    })
    .await
    .context("starting parkd")?;
    let spec = json!({
        "name": "Bench",
        "bays": (0..bays).map(|i| json!({ "id": format!("B{i}"), "zone": "Z", "class": "four_wheeler", "sensor": format!("BENCH-{i}") })).collect::<Vec<_>>(),
    });
    if !parkd.put_lot("bench", &spec).await.status().is_success() {
        bail!("provisioning the benchmark lot failed");
    }
    if !parkd.put_terminal("BENCH", "bench", None).await.status().is_success() {
        bail!("provisioning the benchmark terminal failed");
    }

    // The clients: each records (free bays shown, arrival ms) per frame.
    let rss_before = rss_kib();
    let url = parkd.url(&format!("/terminals/BENCH/stream?token={}", token_for("BENCH")));
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build()?;
    let bar = ProgressBar::new(args.clients as u64)
        .with_style(ProgressStyle::with_template("connecting {bar:40} {pos}/{len} clients")?);
    let mut streams = Vec::with_capacity(args.clients);
    for _ in 0..args.clients {
        streams.push(SseStream::open(&http, &url, None).await?);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let gateway = parkd.running.gateway.as_ref().context("no gateway")?;
    let connected = gateway.stats.clients.load(std::sync::atomic::Ordering::Relaxed);
    let rss_per_client = (rss_kib().saturating_sub(rss_before)) as f64 / args.clients as f64;
    let arrivals: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while let Ok(frame) = stream.next_frame(Duration::from_secs(30)).await {
                    let free = frame.json()["classes"][0]["free"].as_u64().unwrap_or(0);
                    seen.push((free as usize, since_epoch_ms()));
                }
                seen
            })
        })
        .collect();

    // The readings, paced per round; published[k-1] is when the k-th went out.
    let (sensor, mut sensor_loop) =
        AsyncClient::new(MqttOptions::new("bench-sensors", "127.0.0.1", broker.port), 4096);
    tokio::spawn(async move { while sensor_loop.poll().await.is_ok() {} });
    let published = Arc::new(std::sync::Mutex::new(Vec::with_capacity(bays)));
    let mut rounds = Vec::new();
    let mut next_bay = 0;
    for (&rate, &count) in args.rates.iter().zip(&readings) {
        let bar = ProgressBar::new(count as u64).with_style(ProgressStyle::with_template(&format!(
            "{rate:>6}/s {{bar:40}} {{pos}}/{{len}} readings"
        ))?);
        let first = next_bay;
        let interval = Duration::from_secs_f64(1.0 / rate);
        let started = Instant::now();
        for i in 0..count {
            tokio::time::sleep_until((started + interval * i as u32).into()).await;
            let bay = next_bay;
            next_bay += 1;
            let payload = json!({ "device": format!("BENCH-{bay}"), "occupied": false, "observedAt": chrono::Utc::now().to_rfc3339() });
            published.lock().expect("lock").push(since_epoch_ms());
            sensor
                .publish(format!("parking/uplink/BENCH-{bay}"), QoS::AtLeastOnce, false, payload.to_string())
                .await?;
            bar.inc(1);
        }
        bar.finish_and_clear();
        rounds.push((rate, first, next_bay));
        // Let the round drain before the next one starts.
        let drain = Instant::now();
        let shown = || {
            gateway
                .frames
                .current("BENCH")
                .and_then(|f| serde_json::from_slice::<serde_json::Value>(&f.json).ok())
                .and_then(|f| f["classes"][0]["free"].as_u64())
                .unwrap_or(0)
        };
        while shown() < next_bay as u64 {
            if drain.elapsed() > Duration::from_secs(120) {
                eprintln!("round {rate}/s: the last frame never showed every reading");
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Ends the client streams (they stop after 30 s without a frame otherwise).
    drop(parkd);
    let mut per_client = Vec::with_capacity(arrivals.len());
    for a in arrivals {
        per_client.push(a.await?);
    }
    let published = published.lock().expect("lock").clone();

    let baseline = mosquitto_baseline(&broker, 1000.0, 2000).await?;
    println!(
        "bench-terminals: {} SSE clients ({} counted by the gateway), {:?} database, one terminal showing a {bays}-bay lot",
        args.clients, connected, backend
    );
    println!(
        "path: MQTT publish -> bridge -> sensor-event -> terminal-push -> MQTT (retained) -> gateway -> SSE client"
    );
    println!(
        "{:>9} {:>9} {:>10} {:>10} {:>10} {:>10} {:>14}",
        "rate/s", "readings", "samples", "p50 ms", "p99 ms", "max ms", "p50 vs raw"
    );
    for (rate, first, end) in rounds {
        let mut latencies = Vec::new();
        for seen in &per_client {
            // For each reading k of the round: the first frame showing >= k free.
            let mut j = 0;
            for k in (first + 1)..=end {
                while j < seen.len() && seen[j].0 < k {
                    j += 1;
                }
                if j == seen.len() {
                    break;
                }
                latencies.push(seen[j].1 - published[k - 1]);
            }
        }
        let s = stats(latencies);
        println!(
            "{:>9.0} {:>9} {:>10} {:>10.1} {:>10.1} {:>10.1} {:>13.1}x",
            rate,
            end - first,
            s.samples,
            s.p50,
            s.p99,
            s.max,
            s.p50 / baseline.p50
        );
    }
    println!(
        "baseline, raw Mosquitto publish -> subscribe at 1000/s on this machine: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} messages)",
        baseline.p50, baseline.p99, baseline.max, baseline.samples
    );
    println!(
        "memory: {rss_per_client:.1} KiB resident per connected client (this process holds the gateway and the clients: an upper bound for the gateway's share)"
    );
    Ok(())
}
