//! The Kafka sink: each bridged event becomes one record by the CloudEvents
//! Kafka binding (binary mode: `ce_` headers and the payload as the value;
//! a structured CloudEvent passes through with `content-type:
//! application/cloudevents+json`). The record key is the device, and the
//! partition is Kafka's default partitioner over that key, so one device's
//! readings share a partition and stay in order, and every Kafka client
//! agrees on where a device's records live.
//!
//! The topic is not created here: on a cluster it is provisioned (a
//! `KafkaTopic` or the Broker's own); a missing topic is a transient fault
//! the bridge retries and names in its logs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rskafka::client::error::{Error as KafkaError, ProtocolError};
use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;

use super::Delivery;
use crate::bridge::message::BridgedEvent;

/// How long one produce may keep retrying inside the client before the
/// bridge counts a retry and backs off itself (visible in `/metrics`).
const CLIENT_DEADLINE: Duration = Duration::from_secs(5);

pub struct KafkaSink {
    brokers: Vec<String>,
    topic: String,
    /// Connected lazily, and dropped after a failure so the next attempt
    /// reads fresh metadata (leaders move, partitions get added).
    producer: tokio::sync::Mutex<Option<Arc<Producer>>>,
}

struct Producer {
    /// One client per partition, in partition order.
    partitions: Vec<PartitionClient>,
}

impl KafkaSink {
    /// From `kafka://host:port[,host:port…]/topic`.
    pub fn from_url(url: &str) -> Result<Self> {
        let rest = url.strip_prefix("kafka://").context("a Kafka sink URL starts with kafka://")?;
        let (brokers, topic) = rest.split_once('/').with_context(|| {
            format!("sink {url:?}: expected kafka://host:port/topic (the topic is missing)")
        })?;
        let brokers: Vec<String> = brokers
            .split(',')
            .filter(|b| !b.is_empty())
            .map(|b| if b.contains(':') { b.to_owned() } else { format!("{b}:9092") })
            .collect();
        if brokers.is_empty() {
            bail!("sink {url:?}: expected kafka://host:port/topic (no broker address)");
        }
        // Kafka's own rule for topic names.
        let valid_topic = !topic.is_empty()
            && topic.len() <= 249
            && topic != "."
            && topic != ".."
            && topic.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !valid_topic {
            bail!(
                "sink {url:?}: {topic:?} is not a Kafka topic name (letters, digits, '.', '_', '-'; at most 249)"
            );
        }
        Ok(Self { brokers, topic: topic.to_owned(), producer: tokio::sync::Mutex::new(None) })
    }

    pub fn describe(&self) -> String {
        format!("kafka://{}/{}", self.brokers.join(","), self.topic)
    }

    pub async fn deliver(&self, event: &BridgedEvent) -> Delivery {
        let producer = match self.producer().await {
            Ok(producer) => producer,
            Err(reason) => return Delivery::Retry { reason },
        };
        let partition = default_partition(event.device.as_bytes(), producer.partitions.len());
        let record = to_record(event);
        match producer.partitions[partition].produce(vec![record], Compression::NoCompression).await {
            Ok(_) => Delivery::Accepted,
            Err(e) => match refusal(&e) {
                Some(status) => {
                    Delivery::Rejected { status, reason: format!("Kafka refused the record: {e}") }
                }
                None => {
                    self.producer.lock().await.take();
                    Delivery::Retry { reason: format!("producing to {}: {e}", self.describe()) }
                }
            },
        }
    }

    async fn producer(&self) -> Result<Arc<Producer>, String> {
        let mut slot = self.producer.lock().await;
        if let Some(producer) = slot.as_ref() {
            return Ok(producer.clone());
        }
        let producer = Arc::new(self.connect().await.map_err(|e| format!("{e:#}"))?);
        *slot = Some(producer.clone());
        Ok(producer)
    }

    async fn connect(&self) -> Result<Producer> {
        let backoff = rskafka::BackoffConfig { deadline: Some(CLIENT_DEADLINE), ..Default::default() };
        let client: Client = ClientBuilder::new(self.brokers.clone())
            .client_id("parkd-bridge")
            .backoff_config(backoff)
            .build()
            .await
            .with_context(|| format!("connecting to Kafka at {}", self.brokers.join(",")))?;
        let topics = client.list_topics().await.context("reading Kafka's topic list")?;
        let Some(topic) = topics.into_iter().find(|t| t.name == self.topic) else {
            bail!("Kafka topic {:?} does not exist: create it (or its KafkaTopic) first", self.topic);
        };
        // Partition ids are 0..n; the partitioner relies on that.
        let count = topic.partitions.len();
        if count == 0 || topic.partitions.iter().copied().ne(0..count as i32) {
            bail!("Kafka topic {:?} has partitions {:?}, expected 0..n", self.topic, topic.partitions);
        }
        let mut partitions = Vec::with_capacity(count);
        for partition in 0..count as i32 {
            partitions.push(
                client
                    .partition_client(self.topic.clone(), partition, UnknownTopicHandling::Error)
                    .await
                    .with_context(|| format!("opening partition {partition} of {:?}", self.topic))?,
            );
        }
        Ok(Producer { partitions })
    }
}

/// Errors that no retry will cure: the record itself is refused.
fn refusal(error: &KafkaError) -> Option<u16> {
    match error {
        KafkaError::ServerError { protocol_error, .. } => match protocol_error {
            ProtocolError::MessageTooLarge | ProtocolError::RecordListTooLarge => Some(413),
            ProtocolError::InvalidRecord | ProtocolError::CorruptMessage => Some(400),
            _ => None,
        },
        _ => None,
    }
}

/// Kafka's default partitioner (the Java client's): murmur2 of the key with
/// Kafka's seed, made positive, modulo the partition count.
pub fn default_partition(key: &[u8], partitions: usize) -> usize {
    let hash = murmur2::murmur2(key, murmur2::KAFKA_SEED) & 0x7fff_ffff;
    hash as usize % partitions.max(1)
}

/// The HTTP form of the event (what every sink starts from) mapped onto a
/// Kafka record: `ce-x` headers become `ce_x` (values percent-decoded: HTTP
/// needs the encoding, Kafka headers are bytes), `content-type` stays.
pub fn to_record(event: &BridgedEvent) -> Record {
    let mut headers = BTreeMap::new();
    for (name, value) in event.request.headers() {
        let name = name.as_str();
        let value = percent_encoding::percent_decode(value.as_bytes()).collect::<Vec<u8>>();
        if let Some(attribute) = name.strip_prefix("ce-") {
            headers.insert(format!("ce_{attribute}"), value);
        } else if name == "content-type" {
            headers.insert("content-type".to_owned(), value);
        }
    }
    if headers.contains_key("ce_id") {
        // Binary mode: the spec maps the `partitionkey` extension to the key.
        headers.insert("ce_partitionkey".to_owned(), event.device.as_bytes().to_vec());
    }
    Record {
        key: Some(event.device.as_bytes().to_vec()),
        value: Some(event.request.body().to_vec()),
        headers,
        timestamp: chrono::Utc::now(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bridge::message::to_event;
    use crate::bridge::topics::Matched;

    #[test]
    fn urls_name_brokers_and_a_valid_topic() {
        let sink = KafkaSink::from_url("kafka://k1:9092,k2/parking.uplinks").unwrap();
        assert_eq!(sink.brokers, ["k1:9092", "k2:9092"]);
        assert_eq!(sink.describe(), "kafka://k1:9092,k2:9092/parking.uplinks");
        for bad in ["kafka://k1:9092", "kafka://k1:9092/", "kafka:///t", "kafka://k/a b", "kafka://k/.."] {
            assert!(KafkaSink::from_url(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn partitions_match_kafkas_default_partitioner() {
        // Values of the Java client's Utils.murmur2 (from its own tests),
        // masked positive as its partitioner does.
        assert_eq!(murmur2::murmur2(b"21", murmur2::KAFKA_SEED) as i32, -973932308);
        assert_eq!(murmur2::murmur2(b"foobar", murmur2::KAFKA_SEED) as i32, -790332482);
        assert_eq!(default_partition(b"21", 7), (-973932308i32 & 0x7fff_ffff) as usize % 7);
        // One device, one partition, whatever the call.
        assert_eq!(default_partition(b"N-C0", 12), default_partition(b"N-C0", 12));
        assert_eq!(default_partition(b"x", 0), 0);
    }

    #[test]
    fn an_uplink_becomes_a_binary_mode_record_keyed_by_device() {
        let matched = Matched { device: "Bay 7/é".into(), format: "parking-json".into() };
        let event = to_event("parking/uplink/x", bytes::Bytes::from_static(b"{\"occupied\":true}"), &matched);
        let record = to_record(&event);
        assert_eq!(record.key.as_deref(), Some("Bay 7/é".as_bytes()));
        assert_eq!(record.value.as_deref(), Some(&b"{\"occupied\":true}"[..]));
        let header = |name: &str| String::from_utf8(record.headers[name].clone()).unwrap();
        assert_eq!(header("ce_specversion"), "1.0");
        assert_eq!(header("ce_type"), "io.parking.sensor.uplink.v1");
        assert_eq!(header("ce_id"), event.id);
        assert_eq!(header("ce_subject"), "Bay 7/é", "percent-encoding undone");
        assert_eq!(header("ce_format"), "parking-json");
        assert_eq!(header("ce_partitionkey"), "Bay 7/é");
        assert_eq!(header("content-type"), "application/json");
        assert!(record.headers.keys().all(|k| k.starts_with("ce_") || k == "content-type"));
    }

    #[test]
    fn a_structured_event_passes_through() {
        let matched = Matched { device: "D1".into(), format: "parking-json".into() };
        let body = br#"{"specversion":"1.0","id":"e1","source":"/s","type":"t"}"#;
        let record = to_record(&to_event("parking/uplink/D1", bytes::Bytes::from_static(body), &matched));
        assert_eq!(record.headers["content-type"], b"application/cloudevents+json");
        assert_eq!(record.headers.len(), 1);
        assert_eq!(record.value.as_deref(), Some(&body[..]));
        assert_eq!(record.key.as_deref(), Some(&b"D1"[..]));
    }
}
