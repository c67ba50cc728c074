//! What the bridge reports (`parkd_bridge_*`): its counts, its lag and
//! whether it holds its subscriptions, read from [`BridgeStats`] at each
//! scrape by a prometheus-client collector, in the host's one registry
//! (`parkd up`) or in the standalone bridge's own (`parkd bridge`).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, OnceLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::BridgeStats;

/// The bridge's metrics: nothing until a bridge is attached (a host that
/// runs none reports none). Cheap to clone: the clones share the bridge.
#[derive(Debug, Clone, Default)]
pub struct BridgeMetrics(Arc<OnceLock<Arc<BridgeStats>>>);

impl BridgeMetrics {
    /// Registers the collector in `registry` (whose prefix is `parkd`).
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register_collector(Box::new(metrics.clone()));
        metrics
    }

    /// Reports `stats` from now on; a host runs one bridge, so a second is ignored.
    pub fn attach(&self, stats: Arc<BridgeStats>) {
        if self.0.set(stats).is_err() {
            tracing::warn!("a second bridge's metrics were not attached: a host reports one bridge");
        }
    }

    /// The metrics of `stats` alone, in a registry of their own (`parkd bridge`).
    pub fn standalone(stats: Arc<BridgeStats>) -> Registry {
        let mut registry = Registry::with_prefix("parkd");
        Self::register(&mut registry).attach(stats);
        registry
    }
}

impl Collector for BridgeMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(b) = self.0.get() else { return Ok(()) };
        let counters = [
            ("bridge_messages_received", "MQTT messages the bridge received", &b.received),
            ("bridge_messages_delivered", "Messages the sink accepted", &b.delivered),
            ("bridge_delivery_retries", "Deliveries retried after a transient fault", &b.retries),
            ("bridge_dead_letters", "Messages refused and sent to the dead-letter topic", &b.dead_lettered),
            (
                "bridge_batches",
                "Deliveries that carried more than one event (a CloudEvents batch)",
                &b.batches,
            ),
            (
                "bridge_connections",
                "Connections made to the MQTT broker (more than one: it was lost and made again)",
                &b.connections,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value.load(Relaxed));
            counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)?;
        }
        let lag = b
            .received
            .load(Relaxed)
            .saturating_sub(b.delivered.load(Relaxed) + b.dead_lettered.load(Relaxed));
        let gauges = [
            (
                "bridge_lag_messages",
                "Messages received but not yet delivered or dead-lettered",
                ConstGauge::new(i64::try_from(lag).unwrap_or(i64::MAX)),
            ),
            (
                "bridge_subscribed",
                "Whether the bridge holds its subscriptions (1) or not (0)",
                ConstGauge::new(i64::from(b.subscribed.load(Relaxed))),
            ),
        ];
        for (name, help, gauge) in gauges {
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        let waited = ConstGauge::new(b.lag().as_secs_f64());
        waited.encode(encoder.encode_descriptor(
            "bridge_lag_seconds",
            "How long the oldest message not yet delivered or dead-lettered has waited, in seconds",
            None,
            waited.metric_type(),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_without_a_bridge_reports_none_and_one_with_a_bridge_reports_its_counts() {
        let mut registry = Registry::with_prefix("parkd");
        let metrics = BridgeMetrics::register(&mut registry);
        let encode = |registry: &Registry| {
            let mut text = String::new();
            prometheus_client::encoding::text::encode_registry(&mut text, registry).unwrap();
            text
        };
        assert!(!encode(&registry).contains("parkd_bridge"), "{}", encode(&registry));

        let stats = Arc::new(BridgeStats::default());
        stats.received.store(5, Relaxed);
        stats.delivered.store(2, Relaxed);
        stats.dead_lettered.store(1, Relaxed);
        stats.subscribed.store(true, Relaxed);
        metrics.attach(stats);
        let text = encode(&registry);
        for line in [
            "# TYPE parkd_bridge_messages_received counter",
            "parkd_bridge_messages_received_total 5",
            "parkd_bridge_messages_delivered_total 2",
            "parkd_bridge_dead_letters_total 1",
            "# TYPE parkd_bridge_lag_messages gauge",
            "parkd_bridge_lag_messages 2",
            "parkd_bridge_subscribed 1",
            "parkd_bridge_lag_seconds 0.0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} in\n{text}");
        }
    }
}
