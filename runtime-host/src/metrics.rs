//! What parkd measures, in one prometheus-client registry for `/metrics`:
//! requests and their latency per component, the outcome of each sensor
//! reading, the availability the components report, the derived events
//! routed (and alerts among them), the database pools, and the gateway's and
//! the bridge's own (`gateway::metrics`, `bridge::metrics`), registered here
//! when they run in this host.
//! The metric names are the contract of knative/'s alert rules and dashboard
//! (tests/e2e/metrics.rs checks every name they use against a live scrape).

use std::time::Duration;

use parking_domain::events::{AVAILABILITY_CHANGED_V1, AvailabilityChanged, SENSOR_ALERT_V1, UPLINK_V1};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The header sensor-event answers each reading with (changed, stale, ...).
pub const OUTCOME_HEADER: &str = "parking-outcome";
const BATCH: &str = "application/cloudevents-batch+json";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    component: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ComponentLabels {
    component: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabels {
    lot: String,
    zone: String,
    vehicle_class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BayLabels {
    lot: String,
    zone: String,
    vehicle_class: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertLabels {
    kind: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertKindLabels {
    kind: String,
}

/// `type` is a keyword: the label set is spelled out.
type TypeLabels = Vec<(&'static str, String)>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    database: String,
}

/// One database pool as seen at scrape time.
pub struct PoolStats {
    /// Where it points, without credentials (`sqlite:default`, `postgres://host:port/db`).
    pub database: String,
    pub connections: u32,
    pub idle: usize,
    pub max: u32,
    /// Statements run on it since parkd started.
    pub statements: u64,
}

pub struct HostMetrics {
    registry: Registry,
    /// The terminal gateway's (`parkd_gateway_*`), when it runs in this host.
    pub gateway: crate::gateway::metrics::GatewayMetrics,
    /// The MQTT bridge's (`parkd_bridge_*`), once one runs in this host.
    pub bridge: crate::bridge::metrics::BridgeMetrics,
    components_loaded: Gauge,
    requests: Family<RequestLabels, Counter>,
    duration: Family<ComponentLabels, Histogram>,
    events: Family<OutcomeLabels, Counter>,
    bays: Family<BayLabels, Gauge>,
    total_bays: Family<GroupLabels, Gauge>,
    pool_connections: Family<PoolLabels, Gauge>,
    pool_idle: Family<PoolLabels, Gauge>,
    pool_max: Family<PoolLabels, Gauge>,
    pool_statements: Family<PoolLabels, Counter>,
    derived: Family<TypeLabels, Counter>,
    undelivered: Family<ComponentLabels, Counter>,
    alerts: Family<AlertLabels, Counter>,
    alerts_open: Family<AlertKindLabels, Gauge>,
}

impl Default for HostMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("parkd");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("requests", "Requests a component answered, by HTTP status code", requests.clone());
        // 1 ms to ~16 s: a cached component answers in milliseconds, a cold
        // one (compiling, connecting to PostgreSQL) in seconds.
        let duration = Family::<ComponentLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 15))
        });
        registry.register(
            "request_duration_seconds",
            "Time a component took to answer, in seconds",
            duration.clone(),
        );
        let events = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "events",
            "Sensor readings by outcome (changed, refreshed, stale, duplicate-event, duplicate-frame, rejected, ...)",
            events.clone(),
        );
        let bays = Family::<BayLabels, Gauge>::default();
        registry.register(
            "availability_bays",
            "Bays per lot, zone, vehicle class and status, as last reported by a component",
            bays.clone(),
        );
        let total_bays = Family::<GroupLabels, Gauge>::default();
        registry.register(
            "availability_total_bays",
            "Bays per lot, zone and vehicle class, as last reported by a component",
            total_bays.clone(),
        );
        let pool_connections = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "database_pool_connections",
            "Open connections of a database pool",
            pool_connections.clone(),
        );
        let pool_idle = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "database_pool_idle_connections",
            "Idle connections of a database pool",
            pool_idle.clone(),
        );
        let pool_max = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "database_pool_max_connections",
            "The most connections a database pool opens",
            pool_max.clone(),
        );
        let pool_statements = Family::<PoolLabels, Counter>::default();
        registry.register(
            "database_statements",
            "Statements the components ran on a database (each a round trip to it)",
            pool_statements.clone(),
        );
        let derived = Family::<TypeLabels, Counter>::default();
        registry.register(
            "derived_events",
            "Derived CloudEvents routed in-process, by type",
            derived.clone(),
        );
        let undelivered = Family::<ComponentLabels, Counter>::default();
        registry.register(
            "derived_events_undelivered",
            "Derived events a subscriber did not take after every retry, by subscriber",
            undelivered.clone(),
        );
        let alerts = Family::<AlertLabels, Counter>::default();
        registry.register("alerts", "Alerts opened and closed, by kind", alerts.clone());
        let alerts_open = Family::<AlertKindLabels, Gauge>::default();
        registry.register(
            "alerts_open",
            "Alerts this parkd saw open and not yet closed, by kind",
            alerts_open.clone(),
        );
        for kind in parking_domain::AlertKind::ALL {
            let _ = alerts_open.get_or_create(&AlertKindLabels { kind: kind.as_str().to_owned() }).get();
        }
        let components_loaded = Gauge::default();
        registry.register("components_loaded", "Components this parkd serves", components_loaded.clone());
        let gateway = crate::gateway::metrics::GatewayMetrics::register(&mut registry);
        let bridge = crate::bridge::metrics::BridgeMetrics::register(&mut registry);
        Self {
            registry,
            gateway,
            bridge,
            components_loaded,
            requests,
            duration,
            events,
            bays,
            total_bays,
            pool_connections,
            pool_idle,
            pool_max,
            pool_statements,
            derived,
            undelivered,
            alerts,
            alerts_open,
        }
    }
}

impl HostMetrics {
    /// How many components this host serves (set once they are loaded).
    pub fn set_components_loaded(&self, components: usize) {
        self.components_loaded.set(i64::try_from(components).unwrap_or(i64::MAX));
    }

    /// Records one answer of `component`. `status` is None when the host
    /// failed it (trap, timeout, no free slot): `code` then says what the
    /// caller got.
    pub fn record(
        &self,
        component: &str,
        subscribes_to_uplinks: bool,
        elapsed: Duration,
        code: u16,
        response: Option<&http::Response<bytes::Bytes>>,
    ) {
        self.requests
            .get_or_create(&RequestLabels { component: component.to_owned(), code: code.to_string() })
            .inc();
        self.duration
            .get_or_create(&ComponentLabels { component: component.to_owned() })
            .observe(elapsed.as_secs_f64());
        let outcome = response
            .and_then(|r| r.headers().get(OUTCOME_HEADER))
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            // A reading refused as bad input (4xx) carries no outcome header.
            .or_else(|| (subscribes_to_uplinks && (400..500).contains(&code)).then(|| "rejected".to_owned()));
        if let Some(outcome) = outcome {
            self.events.get_or_create(&OutcomeLabels { outcome }).inc();
        }
        if let Some(response) = response {
            self.observe_availability(response);
        }
    }

    /// Availability events in a reply (a structured batch, or one event in
    /// binary mode) update the per-group gauges.
    fn observe_availability(&self, response: &http::Response<bytes::Bytes>) {
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok());
        let content_type = header("content-type").unwrap_or_default();
        if content_type.starts_with(BATCH) {
            let Ok(batch) = serde_json::from_slice::<Vec<serde_json::Value>>(response.body()) else { return };
            for event in batch {
                if event.get("type").and_then(|t| t.as_str()) == Some(AVAILABILITY_CHANGED_V1)
                    && let Some(data) = event.get("data")
                    && let Ok(changed) = serde_json::from_value::<AvailabilityChanged>(data.clone())
                {
                    self.set_availability(&changed);
                }
            }
        } else if header("ce-type") == Some(AVAILABILITY_CHANGED_V1)
            && let Ok(changed) = serde_json::from_slice::<AvailabilityChanged>(response.body())
        {
            self.set_availability(&changed);
        }
    }

    fn set_availability(&self, changed: &AvailabilityChanged) {
        let zone = changed.zone.clone().unwrap_or_default();
        let class = changed.class.to_string();
        let c = &changed.counts;
        for (status, n) in
            [("free", c.free), ("occupied", c.occupied), ("unknown", c.unknown), ("closed", c.closed)]
        {
            let labels = BayLabels {
                lot: changed.lot.clone(),
                zone: zone.clone(),
                vehicle_class: class.clone(),
                status: status.to_owned(),
            };
            self.bays.get_or_create(&labels).set(i64::from(n));
        }
        let group = GroupLabels { lot: changed.lot.clone(), zone, vehicle_class: class };
        self.total_bays.get_or_create(&group).set(i64::from(c.total));
    }

    /// Counts a derived event routed in-process (an alert also by kind and state).
    pub fn record_derived(&self, event: &cloudevents::Event) {
        use cloudevents::AttributesReader;
        self.derived.get_or_create(&vec![("type", event.ty().to_owned())]).inc();
        if event.ty() == SENSOR_ALERT_V1
            && let Some(cloudevents::Data::Json(data)) = event.data()
        {
            let field = |k: &str| data[k].as_str().unwrap_or("unknown").to_owned();
            let (kind, state) = (field("kind"), field("state"));
            let open = self.alerts_open.get_or_create(&AlertKindLabels { kind: kind.clone() });
            match state.as_str() {
                "open" => {
                    open.inc();
                }
                "closed" if open.get() > 0 => {
                    open.dec();
                }
                _ => {}
            }
            drop(open);
            self.alerts.get_or_create(&AlertLabels { kind, state }).inc();
        }
    }

    /// A derived event `component` did not take after every retry.
    pub fn record_undelivered(&self, component: &str, events: usize) {
        self.undelivered
            .get_or_create(&ComponentLabels { component: component.to_owned() })
            .inc_by(events as u64);
    }

    /// The registry in Prometheus text format, with the pools as they are now.
    pub fn render(&self, pools: &[PoolStats]) -> String {
        for pool in pools {
            let labels = PoolLabels { database: pool.database.clone() };
            self.pool_connections.get_or_create(&labels).set(i64::from(pool.connections));
            self.pool_idle.get_or_create(&labels).set(i64::try_from(pool.idle).unwrap_or(i64::MAX));
            self.pool_max.get_or_create(&labels).set(i64::from(pool.max));
            let statements = self.pool_statements.get_or_create(&labels);
            statements.inc_by(pool.statements.saturating_sub(statements.get()));
        }
        encode(&self.registry)
    }
}

/// The content type every `/metrics` answers with.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// `registry` in the Prometheus text format (host, gateway and bridge alike).
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode_registry(&mut out, registry)
        .expect("writing to a String cannot fail");
    out
}

/// Whether a component takes sensor uplinks (its 4xx answers are rejected readings).
pub fn subscribes_to_uplinks(subscribes: &[String]) -> bool {
    subscribes.iter().any(|t| t == UPLINK_V1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch_reply(free: u32, occupied: u32) -> http::Response<bytes::Bytes> {
        let data = serde_json::json!({
            "lot": "central", "zone": "L1", "class": "four_wheeler",
            "counts": { "total": free + occupied, "free": free, "occupied": occupied, "unknown": 0, "closed": 0 },
            "changedAt": "2026-01-01T00:00:00Z"
        });
        let body = serde_json::json!([
            { "specversion": "1.0", "id": "x", "source": "/t", "type": AVAILABILITY_CHANGED_V1, "data": data }
        ]);
        http::Response::builder()
            .header("content-type", BATCH)
            .header(OUTCOME_HEADER, "changed")
            .body(bytes::Bytes::from(body.to_string()))
            .unwrap()
    }

    #[test]
    fn a_reply_updates_counts_outcomes_and_availability() {
        let metrics = HostMetrics::default();
        metrics.record("sensor-event", true, Duration::from_millis(3), 200, Some(&batch_reply(4, 6)));
        metrics.record("sensor-event", true, Duration::from_millis(3), 200, Some(&batch_reply(3, 7)));
        metrics.record("sensor-event", true, Duration::from_millis(1), 400, None);
        metrics.record("availability-query", false, Duration::from_millis(1), 404, None);
        let text = metrics.render(&[PoolStats {
            database: "sqlite:default".into(),
            connections: 2,
            idle: 1,
            max: 8,
            statements: 42,
        }]);
        for line in [
            r#"parkd_database_statements_total{database="sqlite:default"} 42"#,
            r#"parkd_requests_total{component="sensor-event",code="200"} 2"#,
            r#"parkd_requests_total{component="sensor-event",code="400"} 1"#,
            r#"parkd_events_total{outcome="changed"} 2"#,
            r#"parkd_events_total{outcome="rejected"} 1"#,
            r#"parkd_availability_bays{lot="central",zone="L1",vehicle_class="four_wheeler",status="free"} 3"#,
            r#"parkd_availability_total_bays{lot="central",zone="L1",vehicle_class="four_wheeler"} 10"#,
            r#"parkd_database_pool_max_connections{database="sqlite:default"} 8"#,
            r#"parkd_request_duration_seconds_count{component="sensor-event"} 3"#,
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        // A 404 from a component that takes no readings is no rejected reading.
        assert!(!text.contains(r#"outcome="rejected"} 2"#));
    }
}
