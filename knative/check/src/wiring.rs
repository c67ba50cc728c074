//! Cross-checks of the rendered manifests against what runs in them: the
//! variables `spin.toml` declares, the routes Spin and `parkd` serve, and the
//! ports and paths the metrics scrapes reach.
//!
//! `spin.toml` is read with parkd's own parser and routed with parkd's own
//! router (which follows Spin's routing rules), never from a copy.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use parkd::manifest::Manifest;
use parkd::routes::Router;
use serde_norway::Value;

use crate::describe;

/// The runtime class SpinKube's containerd shim registers.
const SPIN_RUNTIME_CLASS: &str = "wasmtime-spin-v2";

/// Paths `parkd serve` answers itself, before the component (server.rs).
const PARKD_SERVE_HOST_PATHS: &[&str] = &["/healthz", "/metrics"];

/// The application: its variables and its routes, as `spin.toml` gives them.
pub struct Application {
    manifest: Manifest,
}

impl Application {
    pub fn load(spin_toml: &Path) -> Result<Self> {
        Ok(Self { manifest: Manifest::load(spin_toml)?.0 })
    }

    /// The component Spin routes `path` to, among `retained` (all when empty).
    pub fn spin_component_for(&self, path: &str, retained: &[String]) -> Option<String> {
        let mut router = Router::default();
        for trigger in &self.manifest.trigger.http {
            if retained.is_empty() || retained.contains(&trigger.component) {
                router.add(&trigger.route, &trigger.component).ok()?;
            }
        }
        router.find(path).map(str::to_owned)
    }

    pub fn declares(&self, variable: &str) -> bool {
        self.manifest.variables.contains_key(variable)
    }

    /// Whether `component` takes the application variable `variable` into one of its own.
    pub fn component_uses(&self, component: &str, variable: &str) -> bool {
        let reference = format!("{{{{ {variable} }}}}");
        self.manifest
            .component
            .get(component)
            .is_some_and(|c| c.variables.values().any(|template| template.contains(&reference)))
    }

    pub fn routes(&self) -> Vec<String> {
        self.manifest.trigger.http.iter().map(|t| format!("{} -> {}", t.route, t.component)).collect()
    }
}

/// One pod template (a Knative Service's, a Deployment's, a Job's ...).
pub struct Workload<'a> {
    pub object: &'a Value,
    pub pod_labels: BTreeMap<String, String>,
    pub runtime_class: Option<String>,
    pub containers: Vec<&'a Value>,
}

fn at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, key| v.get(*key))
}

fn text<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(value, path).and_then(Value::as_str)
}

fn string_map(value: Option<&Value>) -> BTreeMap<String, String> {
    value
        .and_then(Value::as_mapping)
        .map(|m| {
            m.iter().filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.as_str()?.to_owned()))).collect()
        })
        .unwrap_or_default()
}

fn kind(object: &Value) -> &str {
    text(object, &["kind"]).unwrap_or_default()
}

fn name(object: &Value) -> &str {
    text(object, &["metadata", "name"]).unwrap_or_default()
}

/// Every pod template the objects hold.
pub fn workloads(objects: &[Value]) -> Vec<Workload<'_>> {
    objects
        .iter()
        .filter_map(|object| {
            let template = match kind(object) {
                "Service" if text(object, &["apiVersion"]) == Some("serving.knative.dev/v1") => {
                    at(object, &["spec", "template"])
                }
                "Deployment" | "StatefulSet" | "Job" => at(object, &["spec", "template"]),
                "CronJob" => at(object, &["spec", "jobTemplate", "spec", "template"]),
                _ => None,
            }?;
            let containers = at(template, &["spec", "containers"])?.as_sequence()?.iter().collect();
            Some(Workload {
                object,
                pod_labels: string_map(at(template, &["metadata", "labels"])),
                runtime_class: text(template, &["spec", "runtimeClassName"]).map(str::to_owned),
                containers,
            })
        })
        .collect()
}

/// The container's environment: literal values, and `None` for values from
/// Secrets, ConfigMaps or fields.
pub fn env(container: &Value) -> BTreeMap<String, Option<String>> {
    at(container, &["env"])
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(|e| Some((text(e, &["name"])?.to_owned(), text(e, &["value"]).map(str::to_owned))))
        .collect()
}

fn args(container: &Value) -> Vec<String> {
    at(container, &["args"])
        .and_then(Value::as_sequence)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// What a container runs, as far as these checks care.
#[derive(Debug, PartialEq, Eq)]
pub enum Runtime {
    /// The Spin app under SpinKube's shim, with the components it retains.
    Spin { components: Vec<String> },
    /// The parkd image with a subcommand and its arguments.
    Parkd { args: Vec<String> },
    /// Anything else (PostgreSQL, Mosquitto, ...).
    Other,
}

pub fn runtime(workload: &Workload, container: &Value) -> Runtime {
    if workload.runtime_class.as_deref() == Some(SPIN_RUNTIME_CLASS) {
        let retained = env(container).get("SPIN_COMPONENTS_TO_RETAIN").cloned().flatten().unwrap_or_default();
        let components = retained.split(',').map(str::trim).filter(|c| !c.is_empty()).map(str::to_owned);
        return Runtime::Spin { components: components.collect() };
    }
    let image = text(container, &["image"]).unwrap_or_default();
    if image == "parkd" || image.contains("/parkd") {
        return Runtime::Parkd { args: args(container) };
    }
    Runtime::Other
}

/// The value of `--flag VALUE` (or `--flag=VALUE`) in `args`.
fn flag(args: &[String], flag: &str) -> Option<String> {
    let prefix = format!("{flag}=");
    args.iter().enumerate().find_map(|(i, a)| {
        if a == flag { args.get(i + 1).cloned() } else { a.strip_prefix(&prefix).map(str::to_owned) }
    })
}

/// Every `SPIN_VARIABLE_<NAME>` a container sets names a variable `spin.toml`
/// declares (an undeclared one is ignored by both Spin and parkd).
pub fn undeclared_spin_variables(objects: &[Value], app: &Application) -> Vec<String> {
    let mut problems = Vec::new();
    for workload in workloads(objects) {
        for container in &workload.containers {
            for variable in env(container).keys() {
                let Some(declared) = variable.strip_prefix("SPIN_VARIABLE_") else { continue };
                if !app.declares(&declared.to_lowercase()) {
                    problems.push(format!(
                        "{}: {variable} names `{}`, which spin.toml's [variables] does not declare",
                        describe(workload.object),
                        declared.to_lowercase()
                    ));
                }
            }
        }
    }
    problems
}

/// Where events are delivered to a Knative Service: (who delivers, service, path).
fn deliveries(objects: &[Value]) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for object in objects {
        let destination = match kind(object) {
            "Trigger" => at(object, &["spec", "subscriber"]),
            "PingSource" | "KafkaSource" | "SinkBinding" | "ApiServerSource" => at(object, &["spec", "sink"]),
            _ => None,
        };
        let Some(destination) = destination else { continue };
        if text(destination, &["ref", "kind"]) != Some("Service") {
            continue; // a Broker or a KafkaSink: its Triggers are checked instead
        }
        let service = text(destination, &["ref", "name"]).unwrap_or_default().to_owned();
        let path = text(destination, &["uri"]).unwrap_or("/").to_owned();
        out.push((describe(object), service, path));
    }
    out
}

/// Every Trigger's (and source's) subscriber path is answered by the
/// component its Service runs, both by `parkd serve` and by Spin's routes.
pub fn unserved_subscribers(objects: &[Value], app: &Application) -> Vec<String> {
    let mut problems = Vec::new();
    let all = workloads(objects);
    for (from, service, path) in deliveries(objects) {
        let Some(workload) = all.iter().find(|w| kind(w.object) == "Service" && name(w.object) == service)
        else {
            problems.push(format!("{from}: delivers to Knative Service {service}, which is not rendered"));
            continue;
        };
        let Some(container) = workload.containers.first() else { continue };
        let component = match runtime(workload, container) {
            Runtime::Parkd { args } => flag(&args, "--component"),
            Runtime::Spin { components } => components.first().cloned(),
            Runtime::Other => None,
        };
        let Some(component) = component else {
            problems.push(format!("{from}: Service {service} runs no named component"));
            continue;
        };
        if PARKD_SERVE_HOST_PATHS.contains(&path.as_str()) {
            problems.push(format!(
                "{from}: delivers to {path} on {service}, which `parkd serve` answers itself, not {component}"
            ));
        }
        let spin = app.spin_component_for(&path, std::slice::from_ref(&component));
        if spin.as_deref() != Some(component.as_str()) {
            problems.push(format!(
                "{from}: delivers to {path} on {service}, but under Spin no [[trigger.http]] route of {component} \
                 matches it (routes: {}): set the subscriber's uri to {component}'s route, or add one to spin.toml",
                app.routes().join(", ")
            ));
        }
    }
    problems
}

/// The host of a Kafka-class Broker's ingress (eventing-kafka-broker's
/// `kafka-broker-ingress` Service), which takes a Broker's events at
/// `/{namespace}/{broker}`.
pub const KAFKA_BROKER_INGRESS: &str = "kafka-broker-ingress.knative-eventing.svc.cluster.local";

/// Every component that sends its derived events to a sink (spin.toml gives
/// it `events_sink`) is given one, and it is a rendered Broker's ingress,
/// with `events_sink_host` its host, so the component may connect to it.
/// Without one the events would go in the component's answer as a batch,
/// which a Knative Broker drops.
pub fn misdirected_event_sinks(objects: &[Value], app: &Application) -> Vec<String> {
    let brokers: Vec<String> = objects
        .iter()
        .filter(|o| kind(o) == "Broker")
        .map(|o| format!("/{}/{}", text(o, &["metadata", "namespace"]).unwrap_or("default"), name(o)))
        .collect();
    let mut problems = Vec::new();
    for workload in workloads(objects) {
        for container in &workload.containers {
            let components = match runtime(&workload, container) {
                Runtime::Parkd { args } => flag(&args, "--component").into_iter().collect(),
                Runtime::Spin { components } => components,
                Runtime::Other => Vec::new(),
            };
            let env = env(container);
            let what = describe(workload.object);
            for component in components.iter().filter(|c| app.component_uses(c, "events_sink")) {
                let Some(Some(sink)) = env.get("SPIN_VARIABLE_EVENTS_SINK") else {
                    problems.push(format!(
                        "{what}: runs {component}, whose derived events would go in its answer as a batch,                          which a Knative Broker drops: set SPIN_VARIABLE_EVENTS_SINK to the Broker's ingress                          (http://{KAFKA_BROKER_INGRESS}/NAMESPACE/BROKER)"
                    ));
                    continue;
                };
                let (host, path) = match sink.strip_prefix("http://").and_then(|rest| rest.split_once('/')) {
                    Some((host, path)) => (host, format!("/{path}")),
                    None => {
                        problems.push(format!(
                            "{what}: SPIN_VARIABLE_EVENTS_SINK {sink:?} is not an http:// URL"
                        ));
                        continue;
                    }
                };
                if host.split(':').next() != Some(KAFKA_BROKER_INGRESS) || !brokers.contains(&path) {
                    problems.push(format!(
                        "{what}: SPIN_VARIABLE_EVENTS_SINK {sink:?} is not the ingress of a rendered Broker                          (http://{KAFKA_BROKER_INGRESS} followed by one of {brokers:?})"
                    ));
                }
                let allowed = env.get("SPIN_VARIABLE_EVENTS_SINK_HOST").cloned().flatten();
                if allowed.as_deref() != Some(host) {
                    problems.push(format!(
                        "{what}: SPIN_VARIABLE_EVENTS_SINK_HOST is {allowed:?}, not the sink's host {host:?}:                          {component} may not connect to its sink"
                    ));
                }
            }
        }
    }
    problems
}

fn selector_matches(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    let wanted = string_map(selector.get("matchLabels"));
    let labels_match = wanted.iter().all(|(k, v)| labels.get(k) == Some(v));
    let expressions =
        selector.get("matchExpressions").and_then(Value::as_sequence).cloned().unwrap_or_default();
    labels_match
        && expressions.iter().all(|e| {
            let key = text(e, &["key"]).unwrap_or_default();
            let values: Vec<&str> = at(e, &["values"])
                .and_then(Value::as_sequence)
                .map(|v| v.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let value = labels.get(key).map(String::as_str);
            match text(e, &["operator"]) {
                Some("In") => value.is_some_and(|v| values.contains(&v)),
                Some("NotIn") => value.is_none_or(|v| !values.contains(&v)),
                Some("Exists") => value.is_some(),
                Some("DoesNotExist") => value.is_none(),
                _ => false,
            }
        })
}

/// The port a parkd subcommand listens on for `path`, from its arguments and
/// environment (the defaults are parkd's, in runtime-host/src/main.rs); None
/// when it does not serve `path` at all.
fn parkd_port_for(args: &[String], env: &BTreeMap<String, Option<String>>, path: &str) -> Option<u16> {
    let listen_port = |flag_name: &str, variable: &str, default: &str| {
        let address = flag(args, flag_name)
            .or_else(|| env.get(variable).cloned().flatten())
            .unwrap_or_else(|| default.to_owned());
        if address.starts_with("127.") || address.starts_with("localhost") {
            return None; // not reachable from outside the pod
        }
        address.rsplit(':').next()?.parse().ok()
    };
    match (args.first().map(String::as_str), path) {
        (Some("serve"), "/metrics" | "/healthz") => flag(args, "--port")
            .or_else(|| env.get("PORT").cloned().flatten())
            .unwrap_or_else(|| "8080".into())
            .parse()
            .ok(),
        (Some("bridge"), "/metrics" | "/healthz" | "/readyz") => {
            listen_port("--metrics-listen", "PARKD_METRICS_LISTEN", "0.0.0.0:9090")
        }
        (Some("gateway"), "/metrics" | "/healthz") => {
            listen_port("--listen", "PARKD_GATEWAY_LISTEN", "127.0.0.1:3001")
        }
        _ => None,
    }
}

/// The number of a container port given by name or number.
fn container_port(container: &Value, port: &Value) -> Option<u16> {
    let ports = at(container, &["ports"])?.as_sequence()?;
    let found = match port {
        Value::Number(n) => {
            ports.iter().find(|p| at(p, &["containerPort"]).and_then(Value::as_u64) == n.as_u64())
        }
        Value::String(s) => ports.iter().find(|p| text(p, &["name"]) == Some(s)),
        _ => None,
    }?;
    at(found, &["containerPort"])?.as_u64()?.try_into().ok()
}

/// Whether `container` answers `path` on container port `port`; the reason when not.
fn answers(workload: &Workload, container: &Value, port: u16, path: &str) -> Result<(), String> {
    match runtime(workload, container) {
        Runtime::Parkd { args } => match parkd_port_for(&args, &env(container), path) {
            Some(p) if p == port => Ok(()),
            Some(p) => Err(format!("parkd {} listens for {path} on port {p}, not {port}", args.join(" "))),
            None => Err(format!(
                "parkd {} serves no {path} reachable from outside the pod (check its listen address)",
                args.join(" ")
            )),
        },
        Runtime::Spin { .. } => Err(format!("the Spin runtime serves no {path} (only the app's routes)")),
        Runtime::Other => Ok(()), // not ours to judge
    }
}

/// Every ServiceMonitor and PodMonitor endpoint reaches a container that
/// serves its path on that port.
pub fn unscraped_metrics(objects: &[Value]) -> Vec<String> {
    let mut problems = Vec::new();
    let all = workloads(objects);
    for monitor in objects {
        let Some(selector) = at(monitor, &["spec", "selector"]) else { continue };
        match kind(monitor) {
            "PodMonitor" => {
                let endpoints = at(monitor, &["spec", "podMetricsEndpoints"]).and_then(Value::as_sequence);
                for endpoint in endpoints.into_iter().flatten() {
                    let path = text(endpoint, &["path"]).unwrap_or("/metrics");
                    let port_name = text(endpoint, &["port"]).unwrap_or_default();
                    for workload in all.iter().filter(|w| selector_matches(selector, &w.pod_labels)) {
                        let Some(container) = workload.containers.first() else { continue };
                        // Knative names the user container's port `user-port` in the pod.
                        let port = if kind(workload.object) == "Service" && port_name == "user-port" {
                            at(container, &["ports"])
                                .and_then(|p| p.get(0))
                                .and_then(|p| p.get("containerPort"))
                                .and_then(Value::as_u64)
                                .and_then(|p| u16::try_from(p).ok())
                        } else {
                            container_port(container, &Value::String(port_name.to_owned()))
                        };
                        let outcome = match port {
                            Some(port) => answers(workload, container, port, path),
                            None => Err(format!("it has no port {port_name}")),
                        };
                        if let Err(why) = outcome {
                            problems.push(format!(
                                "{} scrapes {path} of {}: {why}",
                                describe(monitor),
                                describe(workload.object)
                            ));
                        }
                    }
                }
            }
            "ServiceMonitor" => problems.extend(service_monitor_problems(monitor, selector, objects, &all)),
            _ => {}
        }
    }
    problems
}

fn service_monitor_problems(
    monitor: &Value,
    selector: &Value,
    objects: &[Value],
    all: &[Workload],
) -> Vec<String> {
    let mut problems = Vec::new();
    let services = objects.iter().filter(|o| {
        kind(o) == "Service"
            && text(o, &["apiVersion"]) == Some("v1")
            && selector_matches(selector, &string_map(at(o, &["metadata", "labels"])))
    });
    let endpoints: Vec<&Value> =
        at(monitor, &["spec", "endpoints"]).and_then(Value::as_sequence).into_iter().flatten().collect();
    for service in services {
        let pod_selector = string_map(at(service, &["spec", "selector"]));
        for endpoint in &endpoints {
            let path = text(endpoint, &["path"]).unwrap_or("/metrics");
            let port_name = text(endpoint, &["port"]).unwrap_or_default();
            let service_port = at(service, &["spec", "ports"])
                .and_then(Value::as_sequence)
                .and_then(|ports| ports.iter().find(|p| text(p, &["name"]) == Some(port_name)));
            let Some(service_port) = service_port else {
                problems.push(format!(
                    "{} scrapes port {port_name} of {}, which has none",
                    describe(monitor),
                    describe(service)
                ));
                continue;
            };
            let target = service_port
                .get("targetPort")
                .or_else(|| service_port.get("port"))
                .cloned()
                .unwrap_or(Value::Null);
            let pods = all.iter().filter(|w| {
                kind(w.object) != "Service"
                    && pod_selector.iter().all(|(k, v)| w.pod_labels.get(k) == Some(v))
            });
            for workload in pods {
                for container in &workload.containers {
                    let Some(port) = container_port(container, &target) else { continue };
                    if let Err(why) = answers(workload, container, port, path) {
                        problems.push(format!(
                            "{} scrapes {path} of {} through {}: {why}",
                            describe(monitor),
                            describe(workload.object),
                            describe(service)
                        ));
                    }
                }
            }
        }
    }
    problems
}
