//! The MQTT bridge: sensor messages in, CloudEvents out.
//!
//! Nothing accepted is lost: the bridge keeps a persistent MQTT session
//! (fixed client id, clean session off) with QoS 1 subscriptions, and
//! acknowledges a message only after the sink took it. Transient sink faults
//! (busy, unreachable) are retried with capped, jittered exponential backoff
//! for as long as they last, holding back later messages of the same worker
//! lane, so one device's readings stay in order. Events the sink refuses as
//! malformed, and events it keeps failing on (a 500 after
//! `fault_attempts` tries: a poison message), go to a dead-letter topic
//! with the reason, then are acknowledged.
//!
//! Under load a lane delivers what is queued on it as one CloudEvents batch
//! (`batch_size`, `batch_window`), which the receiver applies in one
//! transaction and answers per event; each message is still acknowledged
//! only once its event is committed or dead-lettered.
//!
//! With the embedded broker, the bridge reads the broker's durable inbox
//! instead of subscribing (the broker stores each sensor message there
//! before acknowledging it; see `mqtt_broker`), and acknowledging a message
//! moves the inbox's cursor past it; the MQTT connection then only carries
//! dead letters.

pub mod acks;
pub mod connection;
mod lanes;
pub mod message;
pub mod metrics;
pub mod sink;
pub mod tls;
pub mod topics;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use backon::{BackoffBuilder, ExponentialBuilder};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use self::acks::{Acks, Receipt};
use self::connection::{Client, Incoming, Message, Protocol};
use self::lanes::{lane_of, spawn_lanes};
use self::sink::{BatchDelivery, Delivery, Sink};
use self::tls::MqttTls;
use self::topics::TopicMapping;

/// Larger payloads are not sensor messages: dead-lettered unread.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// How long a draining bridge waits for the broker to close the connection
/// after its DISCONNECT.
const BROKER_CLOSE_WAIT: Duration = Duration::from_secs(5);
/// How much of a refused payload the dead letter keeps for inspection.
const DEAD_LETTER_PAYLOAD_BYTES: usize = 4096;
/// The most inbox messages read and not yet done: what a long backlog
/// after a restart may hold in memory.
const INBOX_IN_FLIGHT: usize = 10_000;

#[derive(Debug, Clone)]
pub struct BridgeConfig {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub credentials: Option<(String, String)>,
    /// MQTT 3.1.1 (the default) or 5 (user properties: binary-mode CloudEvents).
    pub protocol: Protocol,
    /// TLS to the broker (`mqtts://`); plain TCP when absent.
    pub tls: Option<MqttTls>,
    /// Replicas sharing this group split the messages between them (MQTT
    /// shared subscriptions, `$share/{group}/…`): each message reaches one.
    pub share_group: Option<String>,
    pub mappings: Vec<TopicMapping>,
    pub dead_letter_topic: String,
    /// Messages delivered at once (each device's stay in order).
    pub workers: usize,
    /// Tries for an event the sink fails on (500): then it is dead-lettered.
    pub fault_attempts: u32,
    /// The most messages a lane delivers at once, as one CloudEvents batch
    /// (1: one event per delivery). A lane takes what is queued, so batches
    /// grow with the load and a lone reading goes alone, at once.
    pub batch_size: usize,
    /// How long a lane waits for more messages to fill a batch (zero: it
    /// takes only what is already queued).
    pub batch_window: Duration,
    /// Lanes whose batches are not full deliver one at a time (see `lanes`):
    /// for a sink where concurrent batches mostly wait on each other.
    pub take_turns: bool,
    /// The first and the longest wait between two tries.
    pub retry_delays: (Duration, Duration),
}

impl BridgeConfig {
    /// From an `mqtt://` or `mqtts://[user:password@]host[:port][?version=5]` URL, with
    /// the default mappings (`mqtts://` checks the broker against the
    /// system's roots until `tls` names a CA).
    pub fn from_url(url: &str) -> Result<Self> {
        let shown = crate::credentials::redact_url(url);
        let parsed = url::Url::parse(url).with_context(|| format!("--mqtt {shown:?} is not a URL"))?;
        let (tls, default_port) = match parsed.scheme() {
            "mqtt" => (None, 1883),
            "mqtts" => (Some(MqttTls::default()), 8883),
            _ => bail!("--mqtt {url:?}: expected mqtt://host:port, or mqtts://host:port for TLS"),
        };
        let mut protocol = Protocol::default();
        for (key, value) in parsed.query_pairs() {
            match &*key {
                "version" => {
                    protocol = value.parse().map_err(|e: String| anyhow::anyhow!("--mqtt {shown:?}: {e}"))?
                }
                other => bail!("--mqtt {shown:?}: unknown option {other:?} (known: version=3.1.1|5)"),
            }
        }
        let host = parsed.host_str().context("--mqtt needs a host")?.to_owned();
        let credentials = (!parsed.username().is_empty())
            .then(|| (parsed.username().to_owned(), parsed.password().unwrap_or_default().to_owned()));
        Ok(Self {
            host,
            port: parsed.port().unwrap_or(default_port),
            client_id: "parkd-bridge".to_owned(),
            credentials,
            protocol,
            tls,
            share_group: None,
            mappings: topics::default_mappings(),
            dead_letter_topic: "parking/dead-letter".to_owned(),
            workers: 8,
            fault_attempts: 5,
            batch_size: 1,
            batch_window: Duration::ZERO,
            take_turns: false,
            retry_delays: (Duration::from_millis(100), Duration::from_secs(10)),
        })
    }
}

/// What the bridge has done, for `/metrics` and tests.
#[derive(Debug, Default)]
pub struct BridgeStats {
    pub received: AtomicU64,
    pub delivered: AtomicU64,
    pub retries: AtomicU64,
    pub dead_lettered: AtomicU64,
    /// Deliveries that carried more than one event (a CloudEvents batch).
    pub batches: AtomicU64,
    /// Connections made to the broker: more than one means it was lost (or
    /// dropped by the broker) and made again.
    pub connections: AtomicU64,
    /// Set once the broker has confirmed every subscription: messages
    /// published before that, on a first connection, reach no one.
    pub subscribed: std::sync::atomic::AtomicBool,
    /// When each message still in the bridge arrived, by arrival number:
    /// the oldest is the lag, as time.
    in_flight: Mutex<BTreeMap<u64, Instant>>,
}

impl BridgeStats {
    /// How long the oldest message not yet delivered or dead-lettered has
    /// waited in the bridge (0 when none waits).
    pub fn lag(&self) -> Duration {
        let in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        in_flight.values().next().map(|arrived| arrived.elapsed()).unwrap_or_default()
    }

    /// Messages received and not yet delivered or dead-lettered.
    pub fn in_flight(&self) -> usize {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn arrived(&self, number: u64) {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner()).insert(number, Instant::now());
    }

    fn done(&self, number: u64) {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner()).remove(&number);
    }
}

/// What goes to the dead-letter topic: the message and why it was refused.
#[derive(Serialize)]
struct DeadLetter<'a> {
    topic: &'a str,
    reason: &'a str,
    status: Option<u16>,
    event_id: Option<&'a str>,
    payload_bytes: usize,
    /// The payload's first bytes, hex-encoded.
    payload_hex: String,
}

pub struct Bridge {
    pub stats: Arc<BridgeStats>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Drained>,
    drained: Option<Drained>,
}

/// Dropping the bridge stops it at once (its lanes, acknowledgements and
/// connection with it); [`Bridge::drain`] stops it gracefully.
impl Drop for Bridge {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a drain did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Drained {
    /// Messages the lanes held when the drain began, each then delivered
    /// or dead-lettered (and acknowledged, unless the connection was lost).
    pub finished: usize,
    /// Messages that arrived during the drain, left unacknowledged for the
    /// broker to redeliver.
    pub left: u64,
}

impl Bridge {
    /// Waits until the bridge is subscribed, or `timeout` passes.
    pub async fn ready(&self, timeout: Duration) -> Result<()> {
        let started = std::time::Instant::now();
        while !self.stats.subscribed.load(Ordering::Relaxed) {
            if started.elapsed() > timeout {
                bail!("the MQTT bridge did not subscribe within {timeout:?}: is the broker reachable?");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// Connects and starts bridging in the background.
    pub fn start(config: BridgeConfig, sink: Sink) -> Self {
        let stats = Arc::new(BridgeStats::default());
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(config, Arc::new(sink), stats.clone(), stop.clone()));
        Self { stats, stop, task, drained: None }
    }

    /// Starts bridging the messages of the embedded broker's `inbox`
    /// (after its cursor, then as they come); the connection to the broker
    /// in `config` carries only dead letters.
    pub fn start_with_inbox(config: BridgeConfig, sink: Sink, inbox: Arc<crate::inbox::Inbox>) -> Self {
        let stats = Arc::new(BridgeStats::default());
        let stop = CancellationToken::new();
        let task = tokio::spawn(run_inbox(config, Arc::new(sink), stats.clone(), stop.clone(), inbox));
        Self { stats, stop, task, drained: None }
    }

    /// Stops gracefully: no new message goes to a lane, the lanes deliver
    /// (or dead-letter) what they hold, those messages are acknowledged,
    /// and the bridge disconnects from the broker, which keeps whatever
    /// else it sent for redelivery. Bound it with a timeout: dropping this
    /// future and dropping the bridge stops it, and what was unfinished stays unacknowledged.
    /// Once drained, the bridge is stopped (draining it again answers at once).
    pub async fn drain(&mut self) -> Drained {
        self.stop.cancel();
        if let Some(drained) = self.drained {
            return drained;
        }
        let drained = (&mut self.task).await.unwrap_or_default();
        self.drained = Some(drained);
        drained
    }
}

/// The bridge's MQTT client, or `None` (logged) when its settings cannot make one.
fn connect(config: &BridgeConfig) -> Option<(connection::Client, connection::EventLoop)> {
    connection::connect(config)
        .inspect_err(
            |e| tracing::error!(error = %format!("{e:#}"), "MQTT bridge set-up failed; not connecting"),
        )
        .ok()
}

async fn run(
    config: BridgeConfig,
    sink: Arc<Sink>,
    stats: Arc<BridgeStats>,
    stop: CancellationToken,
) -> Drained {
    let config = BridgeConfig { workers: config.workers.max(1), ..config };
    let Some((client, eventloop)) = connect(&config) else { return Drained::default() };
    tracing::info!(
        broker = %format!("{}:{}", config.host, config.port),
        sink = %sink.describe(),
        topics = ?config.mappings.iter().map(|m| m.filter()).collect::<Vec<_>>(),
        "MQTT bridge starting"
    );

    // The connection is polled by a task of its own, which only forwards
    // what it reports: polling is never cancelled half-way (a packet
    // half-written), and it goes on sending acknowledgements and
    // keep-alives while the bridge drains.
    let (reports, mut incoming) = tokio::sync::mpsc::unbounded_channel();
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(poll(eventloop, reports));

    // Messages are handled by a few workers, each in arrival order, off the
    // event loop (so it keeps answering keep-alives while a sink is slow).
    // A topic always goes to the same worker: one device's readings stay in
    // order while different devices proceed in parallel. Workers finish in
    // any order; acknowledgements leave in arrival order (acks.rs).
    let (acks, acker) = Acks::start(client.clone());
    // Aborted with the bridge (dropped with this task).
    let (lanes, mut workers) = spawn_lanes(&config, &client, &sink, &stats, &acks, None);

    let mut pending_subacks = 0usize;
    loop {
        let report = tokio::select! {
            _ = stop.cancelled() => break,
            report = incoming.recv() => match report {
                Some(report) => report,
                None => return Drained::default(),
            },
        };
        match report {
            Incoming::Connected { session_present } => {
                // Receipts of an earlier connection mean nothing on this one.
                acks.connection_lost();
                stats.connections.fetch_add(1, Ordering::Relaxed);
                tracing::info!(session_present, protocol = ?config.protocol, "MQTT bridge connected");
                if session_present {
                    stats.subscribed.store(true, Ordering::Relaxed);
                } else {
                    pending_subacks = config.mappings.len();
                    for mapping in &config.mappings {
                        let filter = subscription_filter(config.share_group.as_deref(), &mapping.filter());
                        if let Err(e) = client.subscribe(&filter).await {
                            tracing::error!(error = %e, %filter, "subscribing failed");
                        }
                    }
                }
            }
            Incoming::Subscribed(result) => {
                if let Err(reason) = result {
                    tracing::error!(%reason, "a subscription was refused: check the bridge's ACL entries");
                }
                pending_subacks = pending_subacks.saturating_sub(1);
                if pending_subacks == 0 {
                    stats.subscribed.store(true, Ordering::Relaxed);
                    tracing::info!("MQTT bridge subscribed");
                }
            }
            Incoming::Message(message, receipt) => {
                let number = stats.received.fetch_add(1, Ordering::Relaxed);
                stats.arrived(number);
                acks.arrived(number, Receipt::Broker(Box::new(receipt)));
                let lane = &lanes[lane_of(&message.topic, lanes.len())];
                if lane.send((number, message)).is_err() {
                    return Drained::default();
                }
            }
            Incoming::Other | Incoming::Disconnected => {}
            Incoming::Lost(error) => {
                acks.connection_lost();
                tracing::warn!(%error, "MQTT connection lost; reconnecting in 1 s");
            }
        }
    }

    // Draining: the lanes finish what they hold (their queues close behind
    // it) and nothing new reaches them.
    let started = Instant::now();
    let held = stats.in_flight();
    tracing::info!(messages = held, "MQTT bridge draining: finishing the messages its lanes hold");
    drop(lanes);
    let mut drained = Drained { finished: held, left: 0 };
    let mut connected = true;
    {
        let lanes_done = async { while workers.join_next().await.is_some() {} };
        tokio::pin!(lanes_done);
        loop {
            tokio::select! {
                _ = &mut lanes_done => break,
                report = incoming.recv(), if connected => match report {
                    // Neither handed to a lane nor acknowledged: the broker
                    // sends it again, to this client id's next connection.
                    Some(Incoming::Message(..)) => drained.left += 1,
                    Some(Incoming::Lost(error)) => {
                        // Its receipts are void: what the lanes still finish
                        // comes again after the restart, and is deduplicated.
                        acks.connection_lost();
                        connected = false;
                        tasks.abort_all();
                        tracing::warn!(%error, "MQTT connection lost while draining; the broker redelivers what was not acknowledged");
                    }
                    Some(Incoming::Connected { .. }) => acks.connection_lost(),
                    Some(_) => {}
                    None => connected = false,
                },
            }
        }
    }
    // Every lane has reported; the acknowledging task hands the last
    // acknowledgements to the connection and ends.
    drop(acks);
    let _ = acker.await;
    if connected {
        close(&client, &mut incoming, &mut drained).await;
    }
    tracing::info!(
        finished = drained.finished,
        left_for_redelivery = drained.left,
        ms = started.elapsed().as_millis() as u64,
        "MQTT bridge drained"
    );
    drained
}

/// Polls the connection, forwarding what it reports, until the bridge is
/// gone or the connection is lost after a DISCONNECT.
async fn poll(mut eventloop: connection::EventLoop, reports: tokio::sync::mpsc::UnboundedSender<Incoming>) {
    let mut disconnecting = false;
    loop {
        let report = eventloop.next().await;
        let lost = matches!(report, Incoming::Lost(_));
        disconnecting |= matches!(report, Incoming::Disconnected);
        if reports.send(report).is_err() || (lost && disconnecting) {
            return;
        }
        if lost {
            // The next poll reconnects.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// Ends the connection after what was asked of it before.
async fn close(
    client: &Client,
    incoming: &mut tokio::sync::mpsc::UnboundedReceiver<Incoming>,
    drained: &mut Drained,
) {
    // Requests leave in order: the DISCONNECT goes after the
    // acknowledgements. The broker closes the connection once it has
    // read it, so the acknowledgements are read too; closing first could
    // lose them (a socket closed with unread input is reset, and the
    // broker drops what it had not read yet).
    match client.disconnect().await {
        Ok(()) => {
            let closed = async {
                while let Some(report) = incoming.recv().await {
                    match report {
                        Incoming::Lost(_) => break,
                        Incoming::Message(..) => drained.left += 1,
                        _ => {}
                    }
                }
            };
            if tokio::time::timeout(BROKER_CLOSE_WAIT, closed).await.is_err() {
                tracing::warn!(
                    "the MQTT broker did not close the connection within {BROKER_CLOSE_WAIT:?} of the DISCONNECT"
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "disconnecting from the MQTT broker failed"),
    }
}

/// The bridge on the embedded broker's inbox: messages come from the inbox
/// (what the last run left unapplied first), in order; done ones move its
/// cursor; the MQTT connection publishes dead letters only.
async fn run_inbox(
    config: BridgeConfig,
    sink: Arc<Sink>,
    stats: Arc<BridgeStats>,
    stop: CancellationToken,
    inbox: Arc<crate::inbox::Inbox>,
) -> Drained {
    let config = BridgeConfig { workers: config.workers.max(1), ..config };
    let Some((client, eventloop)) = connect(&config) else { return Drained::default() };
    tracing::info!(
        broker = %format!("{}:{}", config.host, config.port),
        sink = %sink.describe(),
        resumes_at = inbox.committed(),
        "MQTT bridge starting on the embedded broker's inbox"
    );
    let (reports, mut incoming) = tokio::sync::mpsc::unbounded_channel();
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(poll(eventloop, reports));
    let (acks, acker) = Acks::start_inbox(inbox.clone());
    let permits = Arc::new(tokio::sync::Semaphore::new(INBOX_IN_FLIGHT));
    let (lanes, mut workers) = spawn_lanes(&config, &client, &sink, &stats, &acks, Some(&permits));
    // Nothing to subscribe to: the inbox has every message since the broker started.
    stats.subscribed.store(true, Ordering::Relaxed);
    let mut reader = inbox.reader();
    let mut connected = false;
    loop {
        let next = async {
            // Cancelled before the read, the permit goes back.
            let permit = permits.acquire().await.map_err(anyhow::Error::from)?;
            let record = reader.next().await?;
            permit.forget();
            anyhow::Ok(record)
        };
        let record = tokio::select! {
            _ = stop.cancelled() => break,
            report = incoming.recv() => {
                match report {
                    Some(Incoming::Connected { .. }) => {
                        connected = true;
                        stats.connections.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(Incoming::Lost(error)) => {
                        connected = false;
                        tracing::warn!(%error, "MQTT connection (for dead letters) lost; reconnecting in 1 s");
                    }
                    Some(_) => {}
                    None => return Drained::default(),
                }
                continue;
            }
            record = next => record,
        };
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                tracing::error!(
                    error = %format!("{e:#}"),
                    "the bridge cannot read the embedded broker's inbox: stopping it; restart parkd to recover"
                );
                return Drained::default();
            }
        };
        let number = stats.received.fetch_add(1, Ordering::Relaxed);
        stats.arrived(number);
        acks.arrived(number, Receipt::Inbox { next: record.next });
        let message = Message {
            topic: record.topic,
            payload: record.payload,
            user_properties: Vec::new(),
            content_type: None,
        };
        let lane = &lanes[lane_of(&message.topic, lanes.len())];
        if lane.send((number, Box::new(message))).is_err() {
            return Drained::default();
        }
    }

    // Draining: the lanes finish what they hold; what is left in the inbox
    // stays there for the next start.
    let started = Instant::now();
    let held = stats.in_flight();
    tracing::info!(messages = held, "MQTT bridge draining: finishing the messages its lanes hold");
    drop(lanes);
    while workers.join_next().await.is_some() {}
    drop(acks);
    let _ = acker.await;
    let mut drained = Drained { finished: held, left: 0 };
    if connected {
        close(&client, &mut incoming, &mut drained).await;
    }
    tracing::info!(
        finished = drained.finished,
        committed = inbox.committed(),
        ms = started.elapsed().as_millis() as u64,
        "MQTT bridge drained (the rest of the inbox is read after the restart)"
    );
    drained
}

/// The filter to subscribe to: shared among the group's replicas, if any.
fn subscription_filter(share_group: Option<&str>, filter: &str) -> String {
    match share_group {
        Some(group) => format!("$share/{group}/{filter}"),
        None => filter.to_owned(),
    }
}

/// The event a message becomes, or why it cannot be one (dead-lettered).
fn to_event(config: &BridgeConfig, message: &Message) -> Result<message::BridgedEvent, String> {
    let topic = message.topic.as_str();
    if message.payload.len() > MAX_PAYLOAD_BYTES {
        return Err(format!(
            "payload of {} bytes is over the {MAX_PAYLOAD_BYTES}-byte limit",
            message.payload.len()
        ));
    }
    let Some(matched) = topics::resolve(&config.mappings, topic) else {
        return Err("no topic mapping matches this topic".to_owned());
    };
    let properties = message::Mqtt5Properties {
        user_properties: &message.user_properties,
        content_type: message.content_type.as_deref(),
    };
    message::from_message(topic, message.payload.clone(), properties, &matched)
}

fn backoff(config: &BridgeConfig) -> impl Iterator<Item = Duration> {
    let (first, longest) = config.retry_delays;
    ExponentialBuilder::default()
        .with_min_delay(first)
        .with_max_delay(longest)
        .without_max_times()
        .with_jitter()
        .build()
}

/// Delivers a lane's messages, as one batch when there are several and the
/// sink takes batches. Returns once each is delivered or dead-lettered; a
/// batch the sink keeps failing on, or refuses whole, is delivered one by
/// one, so a poison message is found and dead-lettered alone.
pub(crate) async fn handle_batch(
    client: &Client,
    config: &BridgeConfig,
    sink: &Sink,
    stats: &BridgeStats,
    batch: &[(u64, Box<Message>)],
) {
    if batch.len() == 1 || !sink.takes_batches() {
        for (_, message) in batch {
            handle(client, config, sink, stats, message).await;
        }
        return;
    }
    let mut ready = Vec::with_capacity(batch.len());
    for (_, message) in batch {
        match to_event(config, message) {
            Ok(event) => ready.push((message, event)),
            Err(reason) => dead_letter(client, config, stats, message, &reason, None, None).await,
        }
    }
    let events: Vec<&message::BridgedEvent> = ready.iter().map(|(_, event)| event).collect();
    if events.len() > 1 {
        stats.batches.fetch_add(1, Ordering::Relaxed);
        let (mut waits, mut failures) = (backoff(config), 0);
        let reason = loop {
            match sink.deliver_batch(&events).await {
                BatchDelivery::Each(deliveries) => {
                    for ((message, event), delivery) in ready.iter().zip(deliveries) {
                        match delivery {
                            Delivery::Accepted => {
                                stats.delivered.fetch_add(1, Ordering::Relaxed);
                            }
                            Delivery::Rejected { status, reason } => {
                                dead_letter(
                                    client,
                                    config,
                                    stats,
                                    message,
                                    &reason,
                                    Some(status),
                                    Some(&event.id),
                                )
                                .await
                            }
                            // (Not answered per event: then it goes alone.)
                            Delivery::Retry { .. } | Delivery::Failed { .. } => {
                                deliver(client, config, sink, stats, message, event).await
                            }
                        }
                    }
                    return;
                }
                BatchDelivery::Whole(Delivery::Accepted) => {
                    stats.delivered.fetch_add(events.len() as u64, Ordering::Relaxed);
                    return;
                }
                BatchDelivery::Whole(Delivery::Rejected { status, reason }) => {
                    break format!("the batch was refused ({status}: {reason})");
                }
                BatchDelivery::Whole(Delivery::Failed { status, reason }) => {
                    failures += 1;
                    if failures >= config.fault_attempts.max(1) {
                        break format!("the batch failed {failures} times, last with {status}: {reason}");
                    }
                }
                BatchDelivery::Whole(Delivery::Retry { reason }) => {
                    tracing::debug!(%reason, "batch delivery: transient fault");
                }
            }
            stats.retries.fetch_add(1, Ordering::Relaxed);
            let wait = waits.next().unwrap_or(config.retry_delays.1);
            tracing::warn!(events = events.len(), retry_in = ?wait, "batch delivery failed; retrying");
            tokio::time::sleep(wait).await;
        };
        tracing::warn!(%reason, events = events.len(), "delivering the batch's events one by one");
    }
    for (message, event) in &ready {
        deliver(client, config, sink, stats, message, event).await;
    }
}

async fn handle(client: &Client, config: &BridgeConfig, sink: &Sink, stats: &BridgeStats, message: &Message) {
    match to_event(config, message) {
        Ok(event) => deliver(client, config, sink, stats, message, &event).await,
        Err(reason) => dead_letter(client, config, stats, message, &reason, None, None).await,
    }
}

/// Delivers one event: retried while the sink is busy or unreachable,
/// dead-lettered when refused or failed on `fault_attempts` times.
async fn deliver(
    client: &Client,
    config: &BridgeConfig,
    sink: &Sink,
    stats: &BridgeStats,
    message: &Message,
    event: &message::BridgedEvent,
) {
    let topic = message.topic.as_str();
    let mut waits = backoff(config);
    let longest = config.retry_delays.1;
    let mut failures = 0;
    loop {
        let reason = match sink.deliver(event).await {
            Delivery::Accepted => {
                stats.delivered.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Delivery::Rejected { status, reason } => {
                return dead_letter(client, config, stats, message, &reason, Some(status), Some(&event.id))
                    .await;
            }
            Delivery::Failed { status, reason } => {
                failures += 1;
                if failures >= config.fault_attempts.max(1) {
                    let reason = format!("failed {failures} times, last with {status}: {reason}");
                    return dead_letter(
                        client,
                        config,
                        stats,
                        message,
                        &reason,
                        Some(status),
                        Some(&event.id),
                    )
                    .await;
                }
                format!("{status}: {reason}")
            }
            Delivery::Retry { reason } => reason,
        };
        stats.retries.fetch_add(1, Ordering::Relaxed);
        let wait = waits.next().unwrap_or(longest);
        tracing::warn!(%topic, event_id = %event.id, %reason, retry_in = ?wait, "delivery failed; retrying");
        tokio::time::sleep(wait).await;
    }
}

async fn dead_letter(
    client: &Client,
    config: &BridgeConfig,
    stats: &BridgeStats,
    message: &Message,
    reason: &str,
    status: Option<u16>,
    event_id: Option<&str>,
) {
    stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(topic = %message.topic, %reason, "dead-lettering a message");
    let letter = DeadLetter {
        topic: &message.topic,
        reason,
        status,
        event_id,
        payload_bytes: message.payload.len(),
        payload_hex: hex::encode(&message.payload[..message.payload.len().min(DEAD_LETTER_PAYLOAD_BYTES)]),
    };
    let body = serde_json::to_vec(&letter).unwrap_or_default();
    if let Err(e) = client.publish(&config.dead_letter_topic, body).await {
        tracing::error!(error = %e, "publishing to the dead-letter topic failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_group_prefixes_every_filter() {
        assert_eq!(subscription_filter(None, "parking/uplink/+"), "parking/uplink/+");
        assert_eq!(subscription_filter(Some("parkd"), "parking/uplink/+"), "$share/parkd/parking/uplink/+");
    }

    #[test]
    fn urls_pick_tls_and_its_port() {
        let plain = BridgeConfig::from_url("mqtt://broker").unwrap();
        assert_eq!((plain.port, plain.tls.is_some()), (1883, false));
        let tls = BridgeConfig::from_url("mqtts://bridge:secret@broker").unwrap();
        assert_eq!((tls.port, tls.tls.is_some()), (8883, true));
        assert_eq!(tls.credentials, Some(("bridge".into(), "secret".into())));
        assert!(BridgeConfig::from_url("ws://broker").is_err());
        assert_eq!(BridgeConfig::from_url("mqtt://broker?version=5").unwrap().protocol, Protocol::V5);
        assert_eq!(BridgeConfig::from_url("mqtt://broker").unwrap().protocol, Protocol::V311);
        assert!(BridgeConfig::from_url("mqtt://broker?version=6").is_err());
        assert!(BridgeConfig::from_url("mqtt://broker?qos=2").is_err());
    }

    #[test]
    fn lag_is_the_age_of_the_oldest_waiting_message() {
        let stats = BridgeStats::default();
        assert_eq!(stats.lag(), Duration::ZERO);
        stats.arrived(0);
        std::thread::sleep(Duration::from_millis(20));
        stats.arrived(1);
        assert!(stats.lag() >= Duration::from_millis(20));
        stats.done(0);
        assert!(stats.lag() < Duration::from_millis(20), "the oldest is now message 1");
        stats.done(1);
        assert_eq!(stats.lag(), Duration::ZERO);
    }
}
