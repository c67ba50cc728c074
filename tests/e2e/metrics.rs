//! `/metrics` scraped from a running parkd (real components, a real
//! Mosquitto behind the bridge), parsed with a Prometheus text-format parser:
//! the counts match what was sent, and every metric that knative/'s alert
//! rules and Grafana dashboard name is exposed.

use std::collections::{BTreeMap, BTreeSet};

use parkd::up::MqttMode;
use parking_tests::mosquitto::Mosquitto;
use parking_tests::{Backend, Parkd, ParkdOptions, lot_spec, reading};
use promql_parser::parser::{Expr, parse};
use promql_parser::util::{ExprVisitor, walk_expr};
use reqwest::StatusCode;

use parking_tests::on_both_backends;

on_both_backends!(a_scrape_counts_what_happened_and_has_every_metric_rules_and_dashboard_name);

/// One series: its labels and its value.
type Series = (BTreeMap<String, String>, f64);

/// Every series in a scrape, by metric name.
struct Scraped(BTreeMap<String, Vec<Series>>);

impl Scraped {
    fn parse(text: &str) -> Self {
        let scrape =
            prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("text format");
        let mut series: BTreeMap<String, Vec<_>> = BTreeMap::new();
        for sample in scrape.samples {
            let labels: BTreeMap<String, String> =
                sample.labels.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
            let mut add =
                |name: String, value: f64| series.entry(name).or_default().push((labels.clone(), value));
            match sample.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => add(sample.metric.clone(), v),
                prometheus_parse::Value::Histogram(buckets) => {
                    let base = sample.metric.trim_end_matches("_bucket").to_owned();
                    let count = buckets.iter().map(|b| b.count).fold(0.0, f64::max);
                    add(format!("{base}_bucket"), count);
                }
                prometheus_parse::Value::Summary(_) => add(sample.metric.clone(), f64::NAN),
            }
        }
        Self(series)
    }

    /// The value of the one series of `name` whose labels include `want`.
    fn value(&self, name: &str, want: &[(&str, &str)]) -> Option<f64> {
        self.0
            .get(name)?
            .iter()
            .find(|(labels, _)| want.iter().all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v)))
            .map(|(_, v)| *v)
    }
}

/// Metric names a PromQL expression reads.
fn metric_names(expr: &str) -> BTreeSet<String> {
    struct Names(BTreeSet<String>);
    impl ExprVisitor for Names {
        type Error = ();
        fn pre_visit(&mut self, e: &Expr) -> Result<bool, ()> {
            let selector = match e {
                Expr::VectorSelector(vs) => Some(vs),
                Expr::MatrixSelector(ms) => Some(&ms.vs),
                _ => None,
            };
            if let Some(name) = selector.and_then(|vs| vs.name.clone()) {
                self.0.insert(name);
            }
            Ok(true)
        }
    }
    let ast = parse(expr).unwrap_or_else(|e| panic!("PromQL {expr:?} does not parse: {e}"));
    let mut names = Names(BTreeSet::new());
    walk_expr(&mut names, &ast).unwrap();
    names.0
}

/// Every PromQL expression of the PrometheusRule and the dashboard.
fn expressions_in_rules_and_dashboard() -> Vec<(String, String)> {
    let root = parking_tests::repo_root();
    let base = root.join("knative/base/observability");
    let mut exprs = Vec::new();
    let rules: serde_json::Value =
        serde_norway::from_str(&std::fs::read_to_string(base.join("rules.yaml")).unwrap()).unwrap();
    for group in rules["spec"]["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            exprs.push((format!("rule {}", rule["alert"]), rule["expr"].as_str().unwrap().to_owned()));
        }
    }
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(base.join("parking-dashboard.json")).unwrap()).unwrap();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            exprs.push((format!("panel {}", panel["title"]), target["expr"].as_str().unwrap().to_owned()));
        }
    }
    assert!(exprs.len() >= 15, "expected the rules and panels, found {}", exprs.len());
    exprs
}

async fn a_scrape_counts_what_happened_and_has_every_metric_rules_and_dashboard_name(backend: Backend) {
    let broker = Mosquitto::start().unwrap();
    let parkd = Parkd::start_with(ParkdOptions {
        mqtt: MqttMode::External(broker.url()),
        ..ParkdOptions::new(backend)
    })
    .await
    .unwrap();
    let r = parkd.put_lot("metro", &lot_spec("Metro", "MT", 2, 1)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let at = "2026-03-01T08:00:00Z";
    assert_eq!(parkd.send_reading("m-1", &reading("MT-C0", true, 1, at)).await.status(), StatusCode::OK);
    // The same event again: a duplicate, applied once.
    assert_eq!(
        parkd.send_reading("m-1", &reading("MT-C0", true, 1, at)).await.status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(parkd.send_reading("m-2", &reading("MT-C1", false, 1, at)).await.status(), StatusCode::OK);
    // A sensor no bay has: rejected.
    assert_eq!(
        parkd.send_reading("m-3", &reading("NOBODY", true, 1, at)).await.status(),
        StatusCode::BAD_REQUEST
    );

    let response = parkd.client.get(parkd.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    let scraped = Scraped::parse(&text);

    let events = |outcome| scraped.value("parkd_events_total", &[("outcome", outcome)]);
    assert_eq!(events("changed"), Some(2.0), "{text}");
    assert_eq!(events("duplicate-event"), Some(1.0), "{text}");
    assert_eq!(events("rejected"), Some(1.0), "{text}");
    assert_eq!(
        scraped.value("parkd_requests_total", &[("component", "sensor-event"), ("code", "200")]),
        Some(2.0)
    );
    assert_eq!(
        scraped.value("parkd_requests_total", &[("component", "lot-admin"), ("code", "201")]),
        Some(1.0)
    );
    let bays = |status| {
        scraped.value(
            "parkd_availability_bays",
            &[("lot", "metro"), ("zone", "L1"), ("vehicle_class", "four_wheeler"), ("status", status)],
        )
    };
    assert_eq!(
        (bays("occupied"), bays("free"), bays("unknown")),
        (Some(1.0), Some(1.0), Some(0.0)),
        "{text}"
    );
    assert_eq!(
        scraped.value("parkd_availability_total_bays", &[("lot", "metro"), ("zone", "L1")]),
        Some(2.0)
    );
    let pool = match backend {
        Backend::Sqlite => "sqlite:default".to_owned(),
        Backend::Postgres => {
            let series = &scraped.0["parkd_database_pool_max_connections"];
            series
                .iter()
                .map(|(l, _)| l["database"].clone())
                .find(|d| d.starts_with("postgres://"))
                .expect("a postgres pool")
        }
    };
    assert!(!pool.contains('@'), "pool labels carry no credentials: {pool}");
    assert!(scraped.value("parkd_database_pool_max_connections", &[("database", &pool)]).unwrap() >= 1.0);
    assert!(scraped.value("parkd_database_pool_connections", &[("database", &pool)]).unwrap() >= 1.0);
    assert_eq!(scraped.value("parkd_bridge_subscribed", &[]), Some(1.0));

    let mut missing = Vec::new();
    let mut named = BTreeSet::new();
    for (whence, expr) in expressions_in_rules_and_dashboard() {
        for name in metric_names(&expr) {
            named.insert(name.clone());
            if !scraped.0.contains_key(&name) {
                missing.push(format!("{whence}: {name}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "named by alert rules or the dashboard but not exposed by parkd:\n{}\n\nscrape:\n{text}",
        missing.join("\n")
    );
}

/// `parkd bridge` (the bridge alone, as on a cluster) answers
/// its probes and exposes the bridge's metrics.
#[tokio::test]
async fn the_bridge_alone_serves_health_and_its_metrics() {
    let listener = parkd::server::Server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stats = std::sync::Arc::new(parkd::bridge::BridgeStats::default());
    stats.received.store(5, std::sync::atomic::Ordering::Relaxed);
    stats.delivered.store(3, std::sync::atomic::Ordering::Relaxed);
    let server = tokio::spawn(parkd::server::serve_bridge_health(listener, stats.clone()));
    let client = reqwest::Client::new();
    let health = client.get(format!("http://{addr}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    // Not ready until the bridge holds its subscriptions.
    let ready = client.get(format!("http://{addr}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    stats.subscribed.store(true, std::sync::atomic::Ordering::Relaxed);
    let ready = client.get(format!("http://{addr}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let text = client.get(format!("http://{addr}/metrics")).send().await.unwrap().text().await.unwrap();
    let scraped = Scraped::parse(&text);
    assert_eq!(scraped.value("parkd_bridge_messages_received_total", &[]), Some(5.0), "{text}");
    assert_eq!(scraped.value("parkd_bridge_lag_messages", &[]), Some(2.0), "{text}");
    let other = client.get(format!("http://{addr}/api/v1/lots")).send().await.unwrap();
    assert_eq!(other.status(), StatusCode::NOT_FOUND);
    server.abort();
}
