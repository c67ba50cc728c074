//! The MQTT bridge: sensor messages in, CloudEvents out.
//!
//! Nothing accepted is lost: the bridge keeps a persistent MQTT session
//! (fixed client id, clean session off) with QoS 1 subscriptions, and
//! acknowledges a message only after the sink took it. Transient sink faults
//! are retried with capped exponential backoff, holding back later messages
//! of the same worker lane, so one device's readings stay in order; events the sink refuses as
//! malformed go to a dead-letter topic with the reason, then are acknowledged.

pub mod message;
pub mod sink;
pub mod topics;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS};
use serde::Serialize;

use self::message::to_event;
use self::sink::{Delivery, Sink};
use self::topics::TopicMapping;

/// Larger payloads are not sensor messages: dead-lettered unread.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// The largest packet the bridge reads. Past it rumqttc drops the connection
/// and the broker redelivers forever, so it is generous; brokers should cap
/// messages themselves (Mosquitto's `message_size_limit`).
const MAX_PACKET_BYTES: usize = 16 << 20;
/// How much of a refused payload the dead letter keeps for inspection.
const DEAD_LETTER_PAYLOAD_BYTES: usize = 4096;

#[derive(Debug, Clone)]
pub struct BridgeConfig {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub credentials: Option<(String, String)>,
    pub mappings: Vec<TopicMapping>,
    pub dead_letter_topic: String,
    /// Messages delivered at once (each device's stay in order).
    pub workers: usize,
}

impl BridgeConfig {
    /// From an `mqtt://[user:password@]host[:port]` URL, with the default mappings.
    pub fn from_url(url: &str) -> Result<Self> {
        let parsed = url::Url::parse(url).with_context(|| format!("--mqtt {url:?} is not a URL"))?;
        if parsed.scheme() != "mqtt" {
            bail!("--mqtt {url:?}: expected mqtt://host:port (TLS comes with the broker set-up)");
        }
        let host = parsed.host_str().context("--mqtt needs a host")?.to_owned();
        let credentials = (!parsed.username().is_empty())
            .then(|| (parsed.username().to_owned(), parsed.password().unwrap_or_default().to_owned()));
        Ok(Self {
            host,
            port: parsed.port().unwrap_or(1883),
            client_id: "parkd-bridge".to_owned(),
            credentials,
            mappings: topics::default_mappings(),
            dead_letter_topic: "parking/dead-letter".to_owned(),
            workers: 8,
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
    /// Set once the broker has confirmed every subscription: messages
    /// published before that, on a first connection, reach no one.
    pub subscribed: std::sync::atomic::AtomicBool,
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
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.task.abort();
    }
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
        let task = tokio::spawn(run(config, Arc::new(sink), stats.clone()));
        Self { stats, task }
    }
}

async fn run(config: BridgeConfig, sink: Arc<Sink>, stats: Arc<BridgeStats>) {
    let config = BridgeConfig { workers: config.workers.max(1), ..config };
    let mut options = MqttOptions::new(&config.client_id, &config.host, config.port);
    options
        .set_keep_alive(Duration::from_secs(15))
        .set_clean_session(false)
        .set_manual_acks(true)
        .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
    if let Some((user, password)) = &config.credentials {
        options.set_credentials(user, password);
    }
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    tracing::info!(
        broker = %format!("{}:{}", config.host, config.port),
        sink = %sink.describe(),
        topics = ?config.mappings.iter().map(|m| m.filter()).collect::<Vec<_>>(),
        "MQTT bridge starting"
    );

    // Messages are handled by a few workers, each in arrival order, off the
    // event loop (so it keeps answering keep-alives while a sink is slow).
    // A topic always goes to the same worker: one device's readings stay in
    // order while different devices proceed in parallel.
    let mut lanes = Vec::with_capacity(config.workers);
    let mut workers = Vec::with_capacity(config.workers);
    for _ in 0..config.workers {
        // Unbounded, so the event loop never waits on a worker while that
        // worker waits on the event loop to send its acknowledgement; the
        // broker's in-flight window (unacknowledged QoS 1 messages) bounds it.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Publish>();
        let (client, config, stats, sink) = (client.clone(), config.clone(), stats.clone(), sink.clone());
        workers.push(tokio::spawn(async move {
            while let Some(publish) = rx.recv().await {
                handle(&client, &config, &sink, &stats, &publish).await;
                if let Err(e) = client.ack(&publish).await {
                    tracing::warn!(error = %e, "acknowledging a message failed; the broker will redeliver it");
                }
            }
        }));
        lanes.push(tx);
    }

    let mut pending_subacks = 0usize;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                tracing::info!(session_present = ack.session_present, "MQTT bridge connected");
                if ack.session_present {
                    stats.subscribed.store(true, Ordering::Relaxed);
                } else {
                    pending_subacks = config.mappings.len();
                    for mapping in &config.mappings {
                        if let Err(e) = client.subscribe(mapping.filter(), QoS::AtLeastOnce).await {
                            tracing::error!(error = %e, filter = %mapping.filter(), "subscribing failed");
                        }
                    }
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                pending_subacks = pending_subacks.saturating_sub(1);
                if pending_subacks == 0 {
                    stats.subscribed.store(true, Ordering::Relaxed);
                    tracing::info!("MQTT bridge subscribed");
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                stats.received.fetch_add(1, Ordering::Relaxed);
                let lane = &lanes[lane_of(&publish.topic, lanes.len())];
                if lane.send(publish).is_err() {
                    break;
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "MQTT connection lost; reconnecting in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    for worker in workers {
        worker.abort();
    }
}

/// The worker for a topic: stable, so one device's messages keep their order.
fn lane_of(topic: &str, lanes: usize) -> usize {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    topic.hash(&mut hasher);
    (hasher.finish() % lanes.max(1) as u64) as usize
}

async fn handle(
    client: &AsyncClient,
    config: &BridgeConfig,
    sink: &Sink,
    stats: &BridgeStats,
    publish: &Publish,
) {
    let topic = publish.topic.as_str();
    if publish.payload.len() > MAX_PAYLOAD_BYTES {
        let reason =
            format!("payload of {} bytes is over the {MAX_PAYLOAD_BYTES}-byte limit", publish.payload.len());
        return dead_letter(client, config, stats, publish, &reason, None, None).await;
    }
    let Some(matched) = topics::resolve(&config.mappings, topic) else {
        let reason = "no topic mapping matches this topic";
        return dead_letter(client, config, stats, publish, reason, None, None).await;
    };
    let event = to_event(topic, publish.payload.clone(), &matched);
    let mut backoff = Duration::from_millis(100);
    loop {
        match sink.deliver(&event).await {
            Delivery::Accepted => {
                stats.delivered.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Delivery::Rejected { status, reason } => {
                return dead_letter(client, config, stats, publish, &reason, Some(status), Some(&event.id))
                    .await;
            }
            Delivery::Retry { reason } => {
                stats.retries.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%topic, event_id = %event.id, %reason, retry_in = ?backoff, "sink unavailable");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

async fn dead_letter(
    client: &AsyncClient,
    config: &BridgeConfig,
    stats: &BridgeStats,
    publish: &Publish,
    reason: &str,
    status: Option<u16>,
    event_id: Option<&str>,
) {
    stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(topic = %publish.topic, %reason, "dead-lettering a message");
    let letter = DeadLetter {
        topic: &publish.topic,
        reason,
        status,
        event_id,
        payload_bytes: publish.payload.len(),
        payload_hex: hex::encode(&publish.payload[..publish.payload.len().min(DEAD_LETTER_PAYLOAD_BYTES)]),
    };
    let body = serde_json::to_vec(&letter).unwrap_or_default();
    if let Err(e) = client.publish(&config.dead_letter_topic, QoS::AtLeastOnce, false, body).await {
        tracing::error!(error = %e, "publishing to the dead-letter topic failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_always_takes_the_same_lane() {
        let lanes: Vec<usize> = (0..100).map(|i| lane_of(&format!("parking/uplink/D{i}"), 8)).collect();
        for (i, lane) in lanes.iter().enumerate() {
            assert_eq!(*lane, lane_of(&format!("parking/uplink/D{i}"), 8));
            assert!(*lane < 8);
        }
        let used: std::collections::BTreeSet<_> = lanes.iter().collect();
        assert!(used.len() > 4, "devices spread over the lanes: {used:?}");
    }
}
