//! `parkd bridge`: the MQTT bridge alone, delivering CloudEvents to a sink
//! (as on a cluster), with its own health and metrics listener.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use parkd::shutdown::Signals;

use super::DrainArgs;

#[derive(clap::Args)]
pub struct BridgeArgs {
    /// The MQTT broker (mqtt://[user:pass@]host:port, mqtts:// for TLS; ?version=5 for MQTT 5).
    #[arg(long, env = "PARKD_MQTT")]
    mqtt: String,
    /// With mqtts://: the CA bundle (PEM) that signed the broker's certificate
    /// (the system's roots otherwise).
    #[arg(long, env = "PARKD_MQTT_CA")]
    mqtt_ca: Option<PathBuf>,
    /// With mqtts://: the bridge's own certificate chain (PEM), for brokers that
    /// require client certificates; needs --mqtt-key.
    #[arg(long, env = "PARKD_MQTT_CERT", requires = "mqtt_key")]
    mqtt_cert: Option<PathBuf>,
    /// The private key (PEM) for --mqtt-cert.
    #[arg(long, env = "PARKD_MQTT_KEY", requires = "mqtt_cert")]
    mqtt_key: Option<PathBuf>,
    /// Where events go: a CloudEvents endpoint (http://…: a Knative Broker, a KafkaSink,
    /// parkd's /api/v1/events) or a Kafka topic (kafka://host:port/topic, keyed by device).
    #[arg(long, env = "K_SINK")]
    sink: String,
    /// The ingest token an HTTP sink (a parkd's /api/v1/events) requires,
    /// sent as `Authorization: Bearer`.
    #[arg(long, env = "PARKING_INGEST_TOKEN", hide_env_values = true)]
    sink_token: Option<String>,
    /// A topic mapping PATTERN=FORMAT (repeatable); the defaults otherwise.
    #[arg(long = "topic")]
    topics: Vec<String>,
    /// The MQTT client id: stable across restarts (the broker keeps the session
    /// and its unacknowledged messages under it), distinct per replica.
    #[arg(long, default_value = "parkd-bridge", env = "PARKD_BRIDGE_CLIENT_ID")]
    client_id: String,
    /// Replicas with the same group share the messages (an MQTT shared
    /// subscription, `$share/GROUP/…`), each with its own --client-id.
    #[arg(long, env = "PARKD_BRIDGE_SHARE_GROUP")]
    share_group: Option<String>,
    /// Where /healthz, /readyz (subscribed) and /metrics are served (a
    /// cluster's probes and Prometheus).
    #[arg(long, default_value = "0.0.0.0:9090", env = "PARKD_METRICS_LISTEN")]
    metrics_listen: SocketAddr,
    /// Messages delivered at once; each device's messages stay in order.
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// Tries for an event the sink fails on (500) before it is
    /// dead-lettered; busy or unreachable sinks are retried until they answer.
    #[arg(long, default_value_t = 5)]
    fault_attempts: u32,
    /// The most messages a lane delivers at once as one CloudEvents batch.
    /// A parkd's events route takes batches; a Knative Broker does not
    /// (keep 1 for it).
    #[arg(long, default_value_t = 1)]
    batch_size: usize,
    /// How long a lane waits for more messages to fill a batch (0: only
    /// what is already queued goes with it).
    #[arg(long, default_value_t = 0)]
    batch_window_ms: u64,
    #[command(flatten)]
    drain: DrainArgs,
}

impl BridgeArgs {
    pub async fn run(self, signals: &mut Signals) -> Result<()> {
        let Self {
            mqtt,
            mqtt_ca,
            mqtt_cert,
            mqtt_key,
            sink,
            sink_token,
            topics,
            client_id,
            share_group,
            metrics_listen,
            workers,
            fault_attempts,
            batch_size,
            batch_window_ms,
            drain,
        } = self;
        let mut config = parkd::bridge::BridgeConfig::from_url(&mqtt)?;
        config.client_id = client_id;
        config.workers = workers;
        config.fault_attempts = fault_attempts;
        config.batch_size = batch_size.max(1);
        config.batch_window = std::time::Duration::from_millis(batch_window_ms);
        config.share_group = share_group;
        if let Some(tls) = config.tls.as_mut() {
            tls.ca = mqtt_ca;
            tls.client_auth = mqtt_cert.zip(mqtt_key);
            tls.client_config()?; // a wrong file fails now, by name
        } else if mqtt_ca.is_some() || mqtt_cert.is_some() {
            anyhow::bail!("--mqtt-ca/--mqtt-cert need a TLS broker URL: mqtts://host:port");
        }
        if !topics.is_empty() {
            config.mappings = topics
                .iter()
                .map(|t| parkd::bridge::topics::TopicMapping::parse(t))
                .collect::<Result<_>>()?;
        }
        let sink = parkd::bridge::sink::Sink::from_url(&sink)?.with_token(sink_token.as_deref())?;
        let mut bridge = parkd::bridge::Bridge::start(config, sink);
        let listener = parkd::server::Server::bind(metrics_listen).await?;
        tracing::info!(%metrics_listen, "bridge health and metrics on http://{metrics_listen}/metrics");
        let health = tokio::spawn(parkd::server::serve_bridge_health(listener, bridge.stats.clone()));
        let signal = signals.recv().await;
        let grace = drain.grace_period;
        tracing::info!(signal, grace_period_s = grace.as_secs_f64(), "shutting down: draining the bridge");
        let started = Instant::now();
        // Health and metrics answer while it drains.
        let drained = tokio::time::timeout(grace, bridge.drain()).await;
        health.abort();
        match drained {
            Ok(_) => {
                tracing::info!(ms = started.elapsed().as_millis() as u64, "drained; stopping");
                Ok(())
            }
            Err(_) => {
                let unfinished = bridge.stats.in_flight();
                tracing::warn!(
                    unfinished,
                    "the drain ran out of time; unfinished messages stay unacknowledged (the broker redelivers them)"
                );
                anyhow::bail!(
                    "the drain did not finish within the {grace:?} grace period: abandoned {unfinished} MQTT message(s)"
                )
            }
        }
    }
}
