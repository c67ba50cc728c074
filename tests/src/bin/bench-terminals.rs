//! Terminal benchmark: latency from a sensor reading published over MQTT to
//! the frame that shows it arriving at every connected SSE client, through
//! the whole path (broker, bridge, sensor-event, terminal-push, broker again,
//! the gateway, SSE), at rising reading rates with many clients connected.
//! Beside each round, in the same run and on the same broker: raw
//! publish-to-subscribe latency at the same rate (the floor of any MQTT
//! path), and the difference ("added").
//!
//! The clients run in a child process of their own (this binary with
//! `--clients-only`), so the latency measured is the server's and the
//! server's memory per client is this process's alone.
//!
//! Every reading frees one more bay, so a frame showing `k` free bays shows
//! the k-th reading: its latency at a client is when the first frame with at
//! least `k` free arrived there, less when reading `k` was published.
//!
//! `cargo run --release -p parking-tests --bin bench-terminals -- --broker mosquitto`
//! (`--broker embedded` for parkd's own; `--database postgres` under
//! scripts/with-postgres.sh; `--clients 10000 --rates 100` for the big row).

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use parkd::up::MqttMode;
use parking_tests::mosquitto::Mosquitto;
use parking_tests::terminals::{take_event, token_for};
use parking_tests::{Backend, Parkd, ParkdOptions};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(about = "MQTT reading -> SSE frame latency with many clients, against raw broker latency")]
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
    /// The broker: mosquitto (a real one on loopback) or embedded (parkd's own).
    #[arg(long, default_value = "mosquitto")]
    broker: String,
    /// The gateway's rate cap, in ms between two frames of a terminal.
    #[arg(long)]
    frame_interval_ms: Option<u64>,
    /// Zones the lot's bays are dealt to, in turn (a reading changes one
    /// zone's availability; the terminal shows them all).
    #[arg(long, default_value_t = 1)]
    zones: usize,
    /// Internal: be the client process, streaming from --url.
    #[arg(long, hide = true)]
    clients_only: bool,
    #[arg(long, hide = true)]
    url: Option<String>,
}

// The main process tells the client process, once the readings are out,
// `{"rounds": [[rate, first, end], ...], "published": [ms, ...]}` (when
// reading k+1 was published); it answers `{"latencies": [[ms, ...] per
// round], "onFinalState": n, "clients": n}`.

fn numbers(v: &Value) -> Vec<f64> {
    v.as_array().map(|a| a.iter().filter_map(Value::as_f64).collect()).unwrap_or_default()
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

/// Bay `i`'s zone when the lot's bays are dealt to `zones` zones in turn.
fn zone_of(i: usize, zones: usize) -> String {
    format!("Z{}", i % zones.max(1))
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

/// CPU time (user and system) this process has used, in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which is in parentheses): utime and
    // stime are the 12th and 13th, in clock ticks of 1/100 s.
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

struct Stats {
    p50: f64,
    p95: f64,
    p99: f64,
    max: f64,
    samples: usize,
}

fn stats(mut values: Vec<f64>) -> Stats {
    values.sort_by(f64::total_cmp);
    Stats {
        p50: percentile(&values, 0.5),
        p95: percentile(&values, 0.95),
        p99: percentile(&values, 0.99),
        max: values.last().copied().unwrap_or(f64::NAN),
        samples: values.len(),
    }
}

/// Raw broker latency: one publisher, one subscriber, timestamps in the payload.
async fn broker_baseline(port: u16, rate: f64, count: usize) -> Result<Stats> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (sub, mut sub_loop) =
        AsyncClient::new(MqttOptions::new(format!("base-sub-{id}"), "127.0.0.1", port), 4096);
    let topic = format!("bench/base/{id}");
    sub.subscribe(&topic, QoS::AtLeastOnce).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    let listener = tokio::spawn(async move {
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
    tokio::time::timeout(Duration::from_secs(10), subscribed)
        .await
        .context("no SUBACK for the baseline")??;
    let (publisher, mut pub_loop) =
        AsyncClient::new(MqttOptions::new(format!("base-pub-{id}"), "127.0.0.1", port), 4096);
    let publisher_loop = tokio::spawn(async move { while pub_loop.poll().await.is_ok() {} });
    let interval = Duration::from_secs_f64(1.0 / rate);
    let started = Instant::now();
    for i in 0..count {
        tokio::time::sleep_until((started + interval * i as u32).into()).await;
        publisher.publish(&topic, QoS::AtLeastOnce, false, format!("{:.3}", since_epoch_ms())).await?;
    }
    let mut latencies = Vec::with_capacity(count);
    while latencies.len() < count {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some(l)) => latencies.push(l),
            _ => bail!("the baseline subscriber got {} of {count} messages", latencies.len()),
        }
    }
    listener.abort();
    publisher_loop.abort();
    Ok(stats(latencies))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.clients_only {
        return clients_process(&args).await;
    }
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

    // The broker: a Mosquitto of its own, or parkd's embedded one on a free port.
    let mosquitto = match args.broker.as_str() {
        "mosquitto" => Some(Mosquitto::start()?),
        "embedded" => None,
        other => bail!("--broker {other:?}: mosquitto or embedded"),
    };
    let (mqtt, port) = match &mosquitto {
        Some(broker) => (MqttMode::External(broker.url()), broker.port),
        None => {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            (MqttMode::Embedded(([127, 0, 0, 1], port).into()), port)
        }
    };
    let mut options = ParkdOptions { mqtt, ..ParkdOptions::new(backend) };
    if let Some(ms) = args.frame_interval_ms {
        options.gateway_frame_interval = Duration::from_millis(ms);
    }
    let frame_interval = options.gateway_frame_interval;
    let parkd = Parkd::start_with(options).await.context("starting parkd")?;
    let spec = json!({
        "name": "Bench",
        "bays": (0..bays).map(|i| json!({ "id": format!("B{i}"), "zone": zone_of(i, args.zones), "class": "four_wheeler", "sensor": format!("BENCH-{i}") })).collect::<Vec<_>>(),
    });
    if !parkd.put_lot("bench", &spec).await.status().is_success() {
        bail!("provisioning the benchmark lot failed");
    }
    if !parkd.put_terminal("BENCH", "bench", None).await.status().is_success() {
        bail!("provisioning the benchmark terminal failed");
    }
    let gateway = parkd.running.gateway.clone().context("no gateway")?;
    if backend == Backend::Postgres {
        // A served lot has its statistics: autovacuum takes them within a
        // minute of the bays being written. Taken now, as pgbench vacuums
        // before it measures, so the plans are the ones a running system has.
        parking_tests::db::Db::open(&parkd).await?.execute("ANALYZE").await;
    }

    // The clients, in their own process.
    let rss_before = rss_kib();
    let url = parkd.url(&format!("/terminals/BENCH/stream?token={}", token_for("BENCH")));
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--clients-only", "--url", &url, "--clients", &args.clients.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the client process")?;
    let mut child_out = std::io::BufReader::new(child.stdout.take().context("client stdout")?);
    let ready = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        child_out.read_line(&mut line).map(|_| (line, child_out))
    });
    let (line, mut child_out) = ready.await??;
    if !line.starts_with("ready") {
        bail!("the client process did not connect its clients: {line:?}");
    }
    // Let the connections settle before measuring memory.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let connected = gateway.metrics.connections.get();
    let kib_per_client = rss_kib().saturating_sub(rss_before) as f64 / args.clients.max(1) as f64;

    // The readings, paced per round, each after the raw broker at that rate.
    let (sensor, mut sensor_loop) =
        AsyncClient::new(MqttOptions::new("bench-sensors", "127.0.0.1", port), 4096);
    tokio::spawn(async move { while sensor_loop.poll().await.is_ok() {} });
    let mut published = Vec::with_capacity(bays);
    let mut rounds = Vec::new();
    let mut baselines = Vec::new();
    let skipped_before = gateway.metrics.frames_skipped.get();
    let cpu_before = cpu_seconds();
    let mut components = Vec::new();
    for (&rate, &count) in args.rates.iter().zip(&readings) {
        baselines.push(broker_baseline(port, rate, count).await?);
        let before = component_times(&parkd).await?;
        let first = published.len();
        let interval = Duration::from_secs_f64(1.0 / rate);
        let started = Instant::now();
        for i in 0..count {
            tokio::time::sleep_until((started + interval * i as u32).into()).await;
            let bay = published.len();
            let payload = json!({ "device": format!("BENCH-{bay}"), "occupied": false, "observedAt": chrono::Utc::now().to_rfc3339() });
            published.push(since_epoch_ms());
            sensor
                .publish(format!("parking/uplink/BENCH-{bay}"), QoS::AtLeastOnce, false, payload.to_string())
                .await?;
        }
        rounds.push((rate, first, published.len()));
        wait_until_shown(&gateway, published.len(), rate).await;
        components.push(since(&before, &component_times(&parkd).await?));
    }
    let skipped = gateway.metrics.frames_skipped.get() - skipped_before;
    let server_cpu = cpu_seconds() - cpu_before;

    // The client process measures against the publish times.
    let job = serde_json::to_vec(&json!({ "rounds": rounds, "published": published }))?;
    let mut stdin = child.stdin.take().context("client stdin")?;
    let measured = tokio::task::spawn_blocking(move || -> Result<Value> {
        stdin.write_all(&job)?;
        drop(stdin);
        let mut answer = String::new();
        child_out.read_line(&mut answer)?;
        serde_json::from_str(&answer).context("the client process's answer")
    })
    .await??;
    let _ = child.wait();
    let per_round: Vec<Vec<f64>> =
        measured["latencies"].as_array().map(|a| a.iter().map(numbers).collect()).unwrap_or_default();

    println!(
        "bench-terminals: {} SSE clients in a separate process ({connected} counted by the gateway), {backend:?}, \
         broker {}, rate cap {} ms, one terminal showing a {bays}-bay lot in {} zone(s){}",
        args.clients,
        args.broker,
        frame_interval.as_millis(),
        args.zones.max(1),
        if backend == Backend::Postgres { " (statistics taken after provisioning)" } else { "" }
    );
    println!(
        "path: MQTT publish -> bridge -> sensor-event -> terminal-push -> MQTT (retained) -> gateway -> SSE client"
    );
    println!(
        "{:>7} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} | {:>8} {:>8} {:>8} | {:>9} {:>9}",
        "rate/s",
        "clients",
        "samples",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "raw p50",
        "raw p95",
        "raw p99",
        "added p99",
        "p99 x raw"
    );
    for ((rate, _, _), (latencies, raw)) in rounds.iter().zip(per_round.into_iter().zip(&baselines)) {
        let s = stats(latencies);
        println!(
            "{:>7.0} {:>8} {:>9} {:>9.1} {:>9.1} {:>9.1} {:>9.1} | {:>8.2} {:>8.2} {:>8.2} | {:>9.1} {:>8.1}x",
            rate,
            args.clients,
            s.samples,
            s.p50,
            s.p95,
            s.p99,
            s.max,
            raw.p50,
            raw.p95,
            raw.p99,
            s.p99 - raw.p99,
            s.p99 / raw.p99
        );
    }
    let split = |key: &str| -> Vec<Vec<f64>> {
        measured[key].as_array().map(|a| a.iter().map(numbers).collect()).unwrap_or_default()
    };
    for (((rate, _, _), rendering), delivering) in
        rounds.iter().zip(split("rendering")).zip(split("delivering"))
    {
        let (r, d) = (stats(rendering), stats(delivering));
        println!(
            "round {rate:.0}/s, split at the frame's render: publish -> rendered p50 {:.1} p99 {:.1} ms; \
             rendered -> at the client p50 {:.1} p99 {:.1} ms",
            r.p50, r.p99, d.p50, d.p99
        );
    }
    for ((rate, _, _), times) in rounds.iter().zip(&components) {
        let times: Vec<String> = times
            .iter()
            .map(|(component, (seconds, count))| {
                format!("{component} {count} x {:.1} ms", seconds * 1000.0 / (*count).max(1) as f64)
            })
            .collect();
        println!("round {rate:.0}/s, component requests (count x mean): {}", times.join(", "));
    }
    println!(
        "CPU over the rounds: server (parkd, broker when embedded, the reading publisher) {server_cpu:.1} s, \
         client process {:.1} s while frames came (2 cores)",
        measured["cpuSeconds"].as_f64().unwrap_or(f64::NAN)
    );
    println!(
        "clients on the final state: {} of {}; frames skipped for slow clients: {skipped}; \
         server memory: {kib_per_client:.1} KiB per connected client",
        measured["onFinalState"], measured["clients"]
    );
    drop(parkd);
    Ok(())
}

/// Seconds spent and requests answered per component so far, from parkd's
/// `/metrics` (`parkd_request_duration_seconds`).
async fn component_times(parkd: &Parkd) -> Result<BTreeMap<String, (f64, u64)>> {
    let text = parkd.client.get(parkd.url("/metrics")).send().await?.text().await?;
    let mut times: BTreeMap<String, (f64, u64)> = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("parkd_request_duration_seconds_") else { continue };
        let (is_sum, rest) = match rest.split_once('{') {
            Some(("sum", rest)) => (true, rest),
            Some(("count", rest)) => (false, rest),
            _ => continue,
        };
        let Some(component) = rest.split("component=\"").nth(1).and_then(|r| r.split('"').next()) else {
            continue;
        };
        let Some(value) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else { continue };
        let entry = times.entry(component.to_owned()).or_default();
        if is_sum {
            entry.0 += value;
        } else {
            entry.1 += value as u64;
        }
    }
    Ok(times)
}

fn since(
    before: &BTreeMap<String, (f64, u64)>,
    after: &BTreeMap<String, (f64, u64)>,
) -> BTreeMap<String, (f64, u64)> {
    after
        .iter()
        .map(|(c, (s, n))| {
            let (s0, n0) = before.get(c).copied().unwrap_or_default();
            (c.clone(), (s - s0, n - n0))
        })
        .filter(|(_, (_, n))| *n > 0)
        .collect()
}

/// Waits (bounded) until the gateway shows the `shown`-th reading.
async fn wait_until_shown(gateway: &parkd::gateway::Gateway, shown: usize, rate: f64) {
    let free = || {
        gateway
            .frames
            .current("BENCH")
            .and_then(|f| serde_json::from_slice::<serde_json::Value>(f.json()).ok())
            .and_then(|f| f["classes"][0]["free"].as_u64())
            .unwrap_or(0)
    };
    let started = Instant::now();
    while free() < shown as u64 {
        if started.elapsed() > Duration::from_secs(120) {
            eprintln!("round {rate}/s: the last frame never showed every reading");
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The client process: connects the clients, says `ready`, records every
/// frame's arrival, and once told the publish times answers the latencies.
/// Opens a stream the way a sign's firmware would: a bare TCP connection,
/// one request head, the response head checked (200, an SSE body delimited
/// by the connection). Answers the stream and what arrived after the head.
async fn open_bare(address: std::net::SocketAddr, path: &str) -> Result<(tokio::net::TcpStream, Vec<u8>)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream =
        tokio::net::TcpStream::connect(address).await.with_context(|| format!("connecting to {address}"))?;
    stream.set_nodelay(true)?;
    let head = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nAccept: text/event-stream\r\n\r\n");
    stream.write_all(head.as_bytes()).await?;
    let mut got = Vec::with_capacity(1024);
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
            if !head.starts_with("http/1.1 200") || head.contains("transfer-encoding") {
                bail!("GET {path}: not a bare event stream: {head}");
            }
            return Ok((stream, got.split_off(end + 4)));
        }
        if stream.read_buf(&mut got).await? == 0 {
            bail!("GET {path}: the connection closed in the response head");
        }
    }
}

async fn clients_process(args: &Args) -> Result<()> {
    let url = args.url.clone().context("--clients-only needs --url")?;
    let url = reqwest::Url::parse(&url)?;
    let address = *url.socket_addrs(|| None)?.first().context("the stream's address")?;
    let path = format!("{}?{}", url.path(), url.query().unwrap_or_default());
    parkd::gateway::raise_file_limit();
    let mut streams = Vec::with_capacity(args.clients);
    // 200 connecting at once: a steady ramp, not a SYN flood.
    let mut left = args.clients;
    while left > 0 {
        let batch = left.min(200);
        left -= batch;
        let mut opening = tokio::task::JoinSet::new();
        for _ in 0..batch {
            let path = path.clone();
            opening.spawn(async move { open_bare(address, &path).await });
        }
        while let Some(stream) = opening.join_next().await {
            streams.push(stream??);
        }
    }
    // Read by a thread per core, each waiting on its share of the sockets at
    // once (epoll), not by a task per client: what the clients cost the cores
    // they share with the server they measure is a syscall or two per frame
    // and client.
    let stop = Arc::new(AtomicBool::new(false));
    let clients = streams.len();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(clients.max(1));
    let mut shares: Vec<Vec<_>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, (stream, first)) in streams.into_iter().enumerate() {
        shares[i % threads].push((mio::net::TcpStream::from_std(stream.into_std()?), first));
    }
    let readers = shares
        .into_iter()
        .enumerate()
        .map(|(i, share)| {
            let stop = stop.clone();
            std::thread::Builder::new().name(format!("clients-{i}")).spawn(move || read_streams(share, &stop))
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    println!("ready {clients}");
    std::io::stdout().flush()?;
    let job: Value = tokio::task::spawn_blocking(|| serde_json::from_reader(std::io::stdin())).await??;
    // The job comes when the readings are shown: what the clients took while
    // frames came, before any parsing.
    let cpu_while_streaming = cpu_seconds();
    // The last frame reaches the last client within milliseconds of being
    // shown; a client that still lacks it after this is counted as such.
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    let mut arrivals = Vec::with_capacity(clients);
    for reader in readers {
        arrivals.extend(reader.join().map_err(|_| anyhow::anyhow!("a reader of the clients panicked"))??);
    }
    let published = numbers(&job["published"]);
    let rounds: Vec<(usize, usize)> = job["rounds"]
        .as_array()
        .context("the job's rounds")?
        .iter()
        .map(|r| (r[1].as_u64().unwrap_or(0) as usize, r[2].as_u64().unwrap_or(0) as usize))
        .collect();
    let total = published.len() as u64;
    let mut latencies = vec![Vec::new(); rounds.len()];
    // The same latencies split at the frame's render time: publish to
    // rendered (bridge, sensor-event, queue, terminal-push), and rendered to
    // arrived (broker, gateway with its rate cap, the write, the client).
    let (mut rendering, mut delivering) = (latencies.clone(), latencies.clone());
    let mut on_final_state = 0;
    for (data, reads) in arrivals {
        let seen = frames_seen(&data, reads);
        if seen.last().is_some_and(|(free, _, _)| *free == total) {
            on_final_state += 1;
        }
        for (round, &(first, end)) in rounds.iter().enumerate() {
            let mut j = 0;
            for k in (first + 1)..=end {
                while j < seen.len() && seen[j].0 < k as u64 {
                    j += 1;
                }
                if j == seen.len() {
                    break;
                }
                latencies[round].push(seen[j].1 - published[k - 1]);
                rendering[round].push(seen[j].2 - published[k - 1]);
                delivering[round].push(seen[j].1 - seen[j].2);
            }
        }
    }
    println!(
        "{}",
        json!({ "latencies": latencies, "rendering": rendering, "delivering": delivering, "onFinalState": on_final_state, "clients": clients, "cpuSeconds": cpu_while_streaming })
    );
    Ok(())
}

/// What each client read while frames came: its bytes, and after each read
/// how many it had and when. Reads every stream as soon as it is readable
/// until `stop`; parsing waits until then.
fn read_streams(streams: Vec<(mio::net::TcpStream, Vec<u8>)>, stop: &AtomicBool) -> Result<Vec<Received>> {
    use std::io::Read;
    let mut poll = mio::Poll::new()?;
    let mut clients: Vec<(mio::net::TcpStream, Received)> = Vec::with_capacity(streams.len());
    for (i, (mut stream, first)) in streams.into_iter().enumerate() {
        poll.registry().register(&mut stream, mio::Token(i), mio::Interest::READABLE)?;
        let at = since_epoch_ms();
        let reads = vec![(first.len(), at)];
        clients.push((stream, (first, reads)));
    }
    let mut events = mio::Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    let mut open = clients.len();
    while open > 0 && !stop.load(Ordering::Relaxed) {
        match poll.poll(&mut events, Some(Duration::from_millis(100))) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => other?,
        }
        for event in &events {
            let (stream, (data, reads)) = &mut clients[event.token().0];
            // Edge-triggered: read until the socket has nothing more.
            loop {
                match stream.read(&mut buf) {
                    Ok(0) => {
                        poll.registry().deregister(stream)?;
                        open -= 1;
                        break;
                    }
                    Ok(n) => {
                        data.extend_from_slice(&buf[..n]);
                        reads.push((data.len(), since_epoch_ms()));
                    }
                    Err(e) => {
                        if e.kind() != std::io::ErrorKind::WouldBlock {
                            poll.registry().deregister(stream)?;
                            open -= 1;
                        }
                        break;
                    }
                }
            }
        }
    }
    Ok(clients.into_iter().map(|(_, received)| received).collect())
}

/// A client's bytes, and after each read how many it had and when (ms).
type Received = (Vec<u8>, Vec<(usize, f64)>);

/// The frames a client got: for each, the free bays it showed, when it
/// arrived and when it was rendered (ms since the epoch).
fn frames_seen(data: &[u8], reads: Vec<(usize, f64)>) -> Vec<(u64, f64, f64)> {
    let (mut text, mut start) = (String::new(), 0);
    reads
        .into_iter()
        .flat_map(|(end, at)| {
            text.push_str(&String::from_utf8_lossy(&data[start..end]));
            start = end;
            std::iter::from_fn(|| take_event(&mut text))
                .filter(|event| event.event == "frame")
                .map(|event| {
                    let frame = event.json();
                    let rendered = frame["renderedAt"]
                        .as_str()
                        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                        .map_or(f64::NAN, |t| t.timestamp_micros() as f64 / 1e3);
                    (frame["classes"][0]["free"].as_u64().unwrap_or(0), at, rendered)
                })
                .collect::<Vec<_>>()
        })
        .collect()
}
