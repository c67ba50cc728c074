//! What the gateway counts, in the host's one Prometheus registry
//! (`parkd_gateway_*`): connected clients, frames sent and skipped, reconnects.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Handles to the gateway's metrics (cheap to clone: each is shared).
#[derive(Clone, Debug, Default)]
pub struct GatewayMetrics {
    /// SSE and WebSocket clients connected now.
    pub connections: Gauge,
    /// Frames written to clients.
    pub frames_sent: Counter,
    /// Frames a client never got because a newer one replaced them first.
    pub frames_skipped: Counter,
    /// Streams opened with a `Last-Event-ID` (a client coming back).
    pub reconnects: Counter,
    /// Frames the gateway took from the broker as newer.
    pub frames_received: Counter,
    /// Frames refused as malformed or implausible.
    pub frames_refused: Counter,
}

impl GatewayMetrics {
    /// Registers the metrics in `registry` (whose prefix is `parkd`).
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let gateway = registry.sub_registry_with_prefix("gateway");
        gateway.register(
            "connections",
            "Terminal clients (SSE and WebSocket) connected now",
            m.connections.clone(),
        );
        gateway.register("frames_sent", "Terminal frames written to clients", m.frames_sent.clone());
        gateway.register(
            "frames_skipped",
            "Terminal frames a client skipped because a newer one replaced them before it was ready",
            m.frames_skipped.clone(),
        );
        gateway.register(
            "reconnects",
            "Terminal streams opened with a Last-Event-ID (a client coming back)",
            m.reconnects.clone(),
        );
        gateway.register(
            "frames_received",
            "Terminal frames taken from the broker as newer than the current one",
            m.frames_received.clone(),
        );
        gateway.register(
            "frames_refused",
            "Terminal frames refused as malformed or implausible (e.g. rendered in the future)",
            m.frames_refused.clone(),
        );
        m
    }

    /// The metrics alone in a registry of their own (`parkd gateway`).
    pub fn standalone() -> (Self, Registry) {
        let mut registry = Registry::with_prefix("parkd");
        let metrics = Self::register(&mut registry);
        (metrics, registry)
    }
}
