//! `parkd up`: the whole system on one machine.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::Full;

use crate::app::{App, LoadOptions};
use crate::bridge::sink::Sink;
use crate::bridge::{Bridge, BridgeConfig};
use crate::capabilities::postgres::{PostgresCapability, PostgresConfig};
use crate::capabilities::sqlite::{SqliteCapability, SqliteConfig};
use crate::database::Database;
use crate::engine::PoolLimits;
use crate::eventing::Eventing;
use crate::eventing::derived::QueueConfig;
use crate::gateway::{Gateway, GatewayConfig};
use crate::manifest::{self, Manifest};
use crate::routes::Router;
use crate::server::Server;
use crate::shutdown::{Abandoned, Signals};
use tokio_util::sync::CancellationToken;

/// The most readings one delivery of the in-process bridge carries. Batches
/// only fill when readings queue up, so the size matters only at the limit.
/// Measured (`bench-ingest`, 500 bays, same runs, 2026-12-05), 100 against
/// 250: PostgreSQL with fsync on, 12,000/s offered, Mosquitto sustained
/// 10,199 against 11,858 and the embedded broker 7,111 against 8,929;
/// SQLite, 10,000/s offered, 5,637 against 6,509 and 4,802 against 5,410.
/// At 1,000 and 5,000/s, where batches stay small, both were the same
/// within the runs' spread.
pub const IN_PROCESS_BATCH: usize = 250;

/// Lanes of the in-process bridge: how many batches may be applied at once.
/// They take turns (`BridgeConfig::take_turns`): batches that are not full
/// go one at a time, as on a single lane, since batches of one lot mostly
/// wait on each other's locks (SQLite has one writer; on PostgreSQL every
/// reading of a lot moves that lot's counts rows); full batches (a backlog)
/// go at once, so one batch's parsing and deciding overlaps another's
/// writing. Measured on the 2-core development machine, 2026-12-05 (a slower
/// instance than the day before), `bench-terminals` at 1,000 readings/s of
/// one lot and 1,000 clients (added p99, two runs each) and `bench-ingest`
/// at 10,000/s offered, 500 bays (sustained, embedded broker and Mosquitto):
/// - PostgreSQL, fsync on: 2 lanes taking turns 70 and 83 ms, 2 lanes
///   without turns 92 and 164, 1 lane 73 and 122; sustained with and without
///   turns the same (8,171-8,472 against 8,427-8,581: batches are full).
/// - SQLite: 2 lanes taking turns 64 and 56 ms, 1 lane 59 and 53; sustained
///   5,080 and 4,631 against 3,704 and 3,475 (4,945 and 4,617 against 4,383
///   and 3,649 at 5,000 offered).
///
/// Earlier rounds without turns: 8 lanes had frame p50 at 36 ms (SQLite) and
/// 108 ms (PostgreSQL), 2 lanes 29-34 ms, 1 lane 24-26 ms.
pub const IN_PROCESS_LANES: usize = 2;

/// The bridge `parkd up` runs in-process: it hands batches to
/// sensor-event, on lanes that take turns.
pub fn in_process_bridge(url: &str) -> Result<BridgeConfig> {
    Ok(BridgeConfig {
        batch_size: IN_PROCESS_BATCH,
        workers: IN_PROCESS_LANES,
        take_turns: true,
        ..BridgeConfig::from_url(url)?
    })
}

#[derive(Debug, Clone)]
pub struct UpOptions {
    pub manifest: PathBuf,
    pub listen: SocketAddr,
    pub database: String,
    pub data_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub demo: bool,
    pub variables: BTreeMap<String, String>,
    /// Serve only these components (all when empty).
    pub components: Vec<String>,
    /// With exactly one component: send it every path (`parkd serve`).
    pub serve_all_paths: bool,
    /// Where sensor messages come from.
    pub mqtt: MqttMode,
    /// Cron schedule of the `dev.knative.sources.ping` ticks sent through the
    /// broker (the retention sweep); none: no ticks (tests send their own).
    pub sweep_schedule: Option<String>,
    /// How often the terminal gateway's idle streams carry a ping (it runs
    /// whenever MQTT does, except when serving one component).
    pub gateway_keep_alive: std::time::Duration,
    /// The gateway's rate cap: the least time between two frames a
    /// terminal's clients see.
    pub gateway_frame_interval: std::time::Duration,
    /// Serve beyond loopback even with a credential unset (`--insecure`).
    pub insecure: bool,
    /// Timeouts, the connection cap and the request deadline.
    pub limits: crate::server::Limits,
}

impl UpOptions {
    /// One component alone, answering every path (a Knative Service runs
    /// `parkd serve --component X`: events arrive at `/`, not through a broker).
    pub fn serving_one(&self) -> Option<&str> {
        match self.components.as_slice() {
            [only] if self.serve_all_paths => Some(only.as_str()),
            _ => None,
        }
    }
}

/// Where `parkd up` reads sensor messages from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MqttMode {
    /// No MQTT: events arrive over HTTP only.
    Off,
    /// Run a broker in-process on this address and bridge it.
    Embedded(SocketAddr),
    /// Bridge an external broker (`mqtt://[user:pass@]host:port`).
    External(String),
}

impl MqttMode {
    /// For the components' variables: the `mqtt://host:port` of an external
    /// broker and its `host:port` (for `allowed_outbound_hosts`). Never the
    /// credentials in the URL: those are the bridge's; terminal-push has its
    /// own (`mqtt_username`, `mqtt_password`), the only ones that may write frames.
    pub fn component_address(&self) -> Result<Option<(String, String)>> {
        let MqttMode::External(url) = self else { return Ok(None) };
        let shown = crate::credentials::redact_url(url);
        let parsed = url::Url::parse(url).with_context(|| format!("--mqtt {shown:?} is not a URL"))?;
        let host = match parsed.host() {
            Some(url::Host::Ipv6(ip)) => format!("[{ip}]"),
            Some(h) => h.to_string(),
            None => bail!("--mqtt {shown:?} names no host"),
        };
        let host = format!("{host}:{}", parsed.port().unwrap_or(1883));
        Ok(Some((format!("mqtt://{host}"), host)))
    }
}

/// The variables that point terminal-push at the broker of frames: the
/// embedded setup's private frame broker (with the credential parkd made up
/// for it), or the external broker (with terminal-push's own credential,
/// which the operator sets).
fn frame_variables(
    mqtt: &MqttMode,
    frame_broker: Option<&crate::mqtt_broker::FrameBroker>,
) -> Result<Vec<(&'static str, String)>> {
    if let Some(broker) = frame_broker {
        return Ok(vec![
            ("mqtt_address", format!("mqtt://{}", broker.address)),
            ("mqtt_host", broker.address.to_string()),
            ("mqtt_username", broker.publisher.0.clone()),
            ("mqtt_password", broker.publisher.1.clone()),
        ]);
    }
    Ok(match mqtt.component_address()? {
        Some((address, host)) => vec![("mqtt_address", address), ("mqtt_host", host)],
        None => Vec::new(),
    })
}

/// A running system; dropping it stops everything at once, [`Running::shutdown`]
/// stops it gracefully.
pub struct Running {
    pub addr: SocketAddr,
    pub app: Arc<App>,
    /// Routes events between the components (and their derived events).
    pub eventing: Arc<Eventing>,
    pub bridge: Option<Bridge>,
    pub gateway: Option<Arc<Gateway>>,
    server: Arc<Server>,
    /// Cancelled to stop the listener gracefully.
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<()>>>,
    scheduler: Option<tokio::task::JoinHandle<()>>,
    /// `--demo`'s terminal token (its kiosk is `/terminals/demo-entrance?token=`).
    pub demo_token: Option<String>,
    /// `--demo`'s simulated sensors.
    demo_traffic: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Runs until the listener fails, or until SIGTERM or SIGINT: then
    /// drains within `grace` ([`Running::shutdown`]).
    pub async fn run(mut self, signals: &mut Signals, grace: Duration) -> Result<()> {
        let Some(task) = self.task.as_mut() else { return Ok(()) };
        let signal = tokio::select! {
            result = task => return result?,
            signal = signals.recv() => signal,
        };
        tracing::info!(signal, grace_period_s = grace.as_secs_f64(), "shutting down: draining");
        self.shutdown(grace).await
    }

    /// Stops gracefully, within `grace`: no sweep ticks or demo readings
    /// start; the listener stops accepting and its connections finish the
    /// requests they are on (terminal streams end: their clients reconnect
    /// elsewhere); the bridge's lanes finish what they hold and acknowledge
    /// it, leaving the rest with the broker; then the derived events those
    /// produced are delivered. Past `grace`, what is left is abandoned, said
    /// and answered as an error: nothing unacknowledged is lost (the broker
    /// redelivers it), but undelivered derived events are (terminals show
    /// the next change).
    pub async fn shutdown(mut self, grace: Duration) -> Result<()> {
        let started = Instant::now();
        for task in [self.scheduler.take(), self.demo_traffic.take()].into_iter().flatten() {
            task.abort();
        }
        self.stop.cancel();
        if let Some(gateway) = &self.gateway {
            gateway.close_streams();
        }
        let connections = self.server.open_connections();
        tracing::info!(
            connections,
            bridge_messages = self.bridge.as_ref().map_or(0, |b| b.stats.in_flight()),
            derived_events = self.eventing.outstanding(),
            "draining: HTTP requests in flight, the bridge's messages, derived events"
        );
        let mut listener = self.task.take();
        let mut bridge = self.bridge.take();
        let eventing = self.eventing.clone();
        let drain = async {
            let http = async {
                if let Some(task) = listener.as_mut() {
                    match task.await {
                        Ok(Err(e)) => tracing::warn!(error = %format!("{e:#}"), "the listener failed"),
                        Err(e) => tracing::warn!(error = %e, "the listener's task failed"),
                        Ok(Ok(())) => {}
                    }
                    tracing::info!(ms = started.elapsed().as_millis() as u64, "HTTP drained");
                }
            };
            let mqtt = async {
                if let Some(bridge) = bridge.as_mut() {
                    bridge.drain().await;
                }
            };
            tokio::join!(http, mqtt);
            // What those requests and messages derived.
            eventing.settled().await;
        };
        if tokio::time::timeout(grace, drain).await.is_ok() {
            tracing::info!(ms = started.elapsed().as_millis() as u64, "drained; stopping");
            return Ok(());
        }
        let mut abandoned = Abandoned::default();
        if listener.as_ref().is_some_and(|task| !task.is_finished()) {
            abandoned.add(format!("{} HTTP connection(s) cut mid-request", self.server.open_connections()));
        }
        if let Some(bridge) = &bridge
            && bridge.stats.in_flight() > 0
        {
            abandoned.add(format!(
                "{} MQTT message(s) unfinished, left unacknowledged (the broker redelivers them)",
                bridge.stats.in_flight()
            ));
        }
        if eventing.outstanding() > 0 {
            abandoned.add(format!("{} derived event delivery(ies) dropped", eventing.outstanding()));
        }
        if let Some(task) = listener {
            task.abort();
        }
        drop(bridge);
        tracing::warn!(%abandoned, grace_period_s = grace.as_secs_f64(), "the drain ran out of time");
        bail!("the drain did not finish within the {grace:?} grace period: abandoned {abandoned}")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for task in [&self.scheduler, &self.demo_traffic].into_iter().flatten() {
            task.abort();
        }
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

pub async fn start(options: UpOptions) -> Result<Running> {
    let (manifest, manifest_dir) = Manifest::load(&options.manifest)?;
    // A bad schedule fails before anything starts.
    let schedule = options.sweep_schedule.as_deref().map(crate::scheduler::Schedule::parse).transpose()?;
    let database = Database::parse(&options.database, &options.data_dir)?;
    database.migrate().await?;
    tracing::info!(database = %database.describe(), "database ready (migrations applied)");

    // Terminal frames: to the external broker parkd bridges, or in the embedded setup, on a private broker only
    // terminal-push may write to (see mqtt_broker).
    let frame_broker = match options.mqtt {
        MqttMode::Embedded(_) => Some(crate::mqtt_broker::start_frame_broker()?),
        _ => None,
    };
    let variables = component_variables(&manifest, &options, &database, frame_broker.as_ref())?;
    let app = Arc::new(load_app(&manifest, &manifest_dir, &variables, &options).await?);

    // Renders of a lot no closer together than its signs show frames.
    let queue = QueueConfig { render_interval: options.gateway_frame_interval, ..QueueConfig::default() };
    let eventing = Eventing::new(app.clone(), queue);
    let (router, events_route) = http_routes(&manifest, &app, &options)?;
    // Bind first: a busy port should fail before anything else starts.
    let listener = Server::bind(options.listen).await?;
    let addr = listener.local_addr()?;
    let (inbox, mqtt_url) = start_sensor_broker(&options)?;
    let frames_url = frame_broker.as_ref().map(|b| b.reader_url()).or_else(|| mqtt_url.clone());
    let gateway = match (&frames_url, options.serving_one()) {
        (Some(url), None) => Some(start_gateway(url, &options, &app, &database).await?),
        _ => None,
    };
    let bridge = mqtt_url.map(|url| start_bridge(&url, inbox, &eventing)).transpose()?;
    if let Some(bridge) = &bridge
        && let Err(e) = bridge.ready(std::time::Duration::from_secs(10)).await
    {
        // The bridge keeps reconnecting; say so rather than fail the whole system.
        tracing::warn!(error = %e, "continuing without a subscribed MQTT bridge for now");
    }
    if let Some(bridge) = &bridge {
        app.metrics.bridge.attach(bridge.stats.clone());
    }
    if let Some(gateway) = &gateway
        && let Err(e) = gateway.ready(std::time::Duration::from_secs(10)).await
    {
        tracing::warn!(error = %e, "continuing; the terminal gateway keeps reconnecting");
    }
    let server = Server::with_gateway(
        eventing.clone(),
        app.clone(),
        router,
        events_route.clone(),
        gateway.clone(),
        options.limits.clone(),
    );
    tracing::info!(
        "parkd listening on http://{addr} (API under /api/v1, health at /healthz, metrics at /metrics)"
    );
    if let Some(route) = &events_route {
        tracing::info!("CloudEvents ingress on http://{addr}{route}");
    }
    let stop = CancellationToken::new();
    let task = tokio::spawn(server.clone().serve(listener, stop.clone()));
    let scheduler = match (schedule, &events_route) {
        (Some(schedule), Some(_)) => Some(crate::scheduler::spawn(schedule, eventing.clone())),
        _ => None,
    };
    if gateway.is_some() {
        tracing::info!("terminal kiosk pages at http://{addr}/terminals/{{terminal}}?token=...");
    }
    let mut running = Running {
        addr,
        app,
        eventing,
        bridge,
        gateway,
        server,
        stop,
        task: Some(task),
        scheduler,
        demo_token: None,
        demo_traffic: None,
    };
    if options.demo {
        running.demo_token = Some(provision_demo(&running, &variables).await?);
        running.demo_traffic = start_demo_traffic(&options.mqtt);
    }
    Ok(running)
}

/// The components' variables, resolved from the manifest, the command line
/// and the environment, with the database and the terminal-frame broker
/// filled in the way `spin up` would pass them (SPIN_VARIABLE_DATABASE_URL);
/// the embedded setup's frame broker always wins, as only parkd knows it.
/// Refuses to serve beyond loopback while a credential the served components
/// use is missing (unless `--insecure`).
fn component_variables(
    manifest: &Manifest,
    options: &UpOptions,
    database: &Database,
    frame_broker: Option<&crate::mqtt_broker::FrameBroker>,
) -> Result<BTreeMap<String, String>> {
    let mut overrides = options.variables.clone();
    if manifest.variables.contains_key("database_url") {
        overrides.entry("database_url".into()).or_insert_with(|| database.component_url());
    }
    if let (Some(host), true) = (database.host_port(), manifest.variables.contains_key("database_host")) {
        overrides.entry("database_host".into()).or_insert(host);
    }
    for (name, value) in frame_variables(&options.mqtt, frame_broker)? {
        if manifest.variables.contains_key(name) {
            if frame_broker.is_some() {
                overrides.insert(name.into(), value);
            } else {
                overrides.entry(name.into()).or_insert(value);
            }
        }
    }
    let resolved = manifest::resolve_variables(&manifest.variables, &overrides, |k| std::env::var(k).ok())?;
    let variables: BTreeMap<String, String> = resolved.into_iter().map(|(k, (v, _))| (k, v)).collect();
    crate::credentials::check_exposure(
        options.listen,
        &needed_credentials(manifest, &options.components),
        &crate::credentials::Credentials::from_variables(&variables),
        options.insecure,
    )?;
    Ok(variables)
}

/// The manifest's components (or the ones `--component` names), compiled or
/// taken from the cache, with the database capabilities they share.
async fn load_app(
    manifest: &Manifest,
    manifest_dir: &std::path::Path,
    variables: &BTreeMap<String, String>,
    options: &UpOptions,
) -> Result<App> {
    let sqlite = SqliteCapability::new(&SqliteConfig::in_data_dir(&options.data_dir)).await?;
    let postgres = PostgresCapability::new(PostgresConfig::default());
    App::load(
        LoadOptions {
            manifest,
            manifest_dir,
            variables,
            cache_dir: options.cache_dir.clone(),
            pool: PoolLimits { request_deadline: options.limits.request_deadline, ..Default::default() },
            only: options.components.clone(),
        },
        sqlite,
        postgres,
    )
    .await
}

/// The HTTP routes: every trigger's (of the components loaded) and the
/// CloudEvents ingress route, or everything to the one component served.
fn http_routes(manifest: &Manifest, app: &App, options: &UpOptions) -> Result<(Router, Option<String>)> {
    let mut router = Router::default();
    if let Some(only) = options.serving_one() {
        router.add("/...", only)?;
        return Ok((router, None));
    }
    for trigger in &manifest.trigger.http {
        if app.components.contains_key(&trigger.component) {
            router.add(&trigger.route, &trigger.component)?;
        }
    }
    Ok((router, manifest.application.tool.parkd.events_route.clone()))
}

/// The broker sensors publish to: the embedded one (started here, storing
/// what it acknowledges in its inbox, which the bridge reads) or an external
/// one, or none. Answers the inbox, if any, and the broker's URL.
fn start_sensor_broker(options: &UpOptions) -> Result<(Option<Arc<crate::inbox::Inbox>>, Option<String>)> {
    match &options.mqtt {
        MqttMode::Off => Ok((None, None)),
        MqttMode::Embedded(listen) => {
            let dir = options.data_dir.join("inbox");
            let inbox = crate::inbox::Inbox::open(&dir)
                .with_context(|| format!("opening the embedded MQTT broker's inbox in {}", dir.display()))?;
            let inbox = Arc::new(inbox);
            crate::mqtt_broker::start_embedded(
                *listen,
                inbox.clone(),
                crate::bridge::topics::default_mappings(),
            )?;
            tracing::info!(
                "embedded MQTT broker listening on mqtt://{listen} (sensors publish to parking/uplink/{{device}})"
            );
            Ok((Some(inbox), Some(format!("mqtt://{listen}"))))
        }
        MqttMode::External(url) => Ok((None, Some(url.clone()))),
    }
}

/// The terminal gateway, on the broker frames are published to.
async fn start_gateway(
    url: &str,
    options: &UpOptions,
    app: &App,
    database: &Database,
) -> Result<Arc<Gateway>> {
    let config = GatewayConfig {
        keep_alive: options.gateway_keep_alive,
        frame_interval: options.gateway_frame_interval,
        metrics: Some(app.metrics.gateway.clone()),
        ..GatewayConfig::new(url)
    };
    Gateway::start(config, database).await
}

/// The bridge from the sensors' broker to sensor-event, in-process; it reads
/// the embedded broker's inbox when there is one.
fn start_bridge(
    url: &str,
    inbox: Option<Arc<crate::inbox::Inbox>>,
    eventing: &Arc<Eventing>,
) -> Result<Bridge> {
    let config = in_process_bridge(url)?;
    let sink = Sink::InProcess(eventing.clone());
    Ok(match inbox {
        Some(inbox) => Bridge::start_with_inbox(config, sink, inbox),
        None => Bridge::start(config, sink),
    })
}

/// The credentials the served components use (declare as variables).
fn needed_credentials(manifest: &Manifest, only: &[String]) -> Vec<crate::credentials::Credential> {
    let served = manifest.component.iter().filter(|(id, _)| only.is_empty() || only.contains(id));
    let declared: Vec<&String> = served.flat_map(|(_, def)| def.variables.keys()).collect();
    crate::credentials::Credential::ALL
        .into_iter()
        .filter(|c| declared.iter().any(|v| v.as_str() == c.variable()))
        .collect()
}

/// The demo's simulated sensors, on the embedded broker (none otherwise:
/// another broker's sensors are real).
fn start_demo_traffic(mqtt: &MqttMode) -> Option<tokio::task::JoinHandle<()>> {
    let MqttMode::Embedded(listen) = mqtt else {
        tracing::info!("demo: no simulated sensors (they run only on the embedded MQTT broker)");
        return None;
    };
    let traffic = crate::demo::traffic(*listen);
    tracing::info!(
        "demo: {} simulated sensors publish {} readings/s to mqtt://{}:{}",
        traffic.devices.len(),
        crate::demo::DEMO_RATE,
        traffic.mqtt_host,
        traffic.mqtt_port
    );
    Some(tokio::spawn(async move {
        if let Err(e) = crate::simulate::run(traffic).await {
            tracing::warn!(error = %e, "demo: the simulated sensors stopped");
        }
    }))
}

/// Provisions the demo lot and a terminal showing it through the admin API,
/// as an operator would, and says where to look.
async fn provision_demo(running: &Running, variables: &BTreeMap<String, String>) -> Result<String> {
    let lot_path = format!("/api/v1/lots/{}", crate::demo::DEMO_LOT);
    admin_put(running, variables, &lot_path, &crate::demo::demo_lot())
        .await
        .context("provisioning the demo lot")?;
    let token = crate::demo::new_token();
    let terminal_path = format!("/api/v1/terminals/{}", crate::demo::DEMO_TERMINAL);
    admin_put(running, variables, &terminal_path, &crate::demo::demo_terminal(&token))
        .await
        .context("provisioning the demo terminal")?;
    let addr = running.addr;
    tracing::info!(
        "demo lot provisioned: GET http://{addr}{lot_path}/availability; operator page: http://{addr}/"
    );
    if running.gateway.is_some() {
        tracing::info!(
            "demo kiosk: http://{addr}/terminals/{}?token={token} (terminal token: {token})",
            crate::demo::DEMO_TERMINAL
        );
    }
    Ok(token)
}

/// A `PUT` to lot-admin, with the admin token when one is set.
async fn admin_put(
    running: &Running,
    variables: &BTreeMap<String, String>,
    path: &str,
    body: &serde_json::Value,
) -> Result<()> {
    let Some(admin) = running.app.components.get("lot-admin") else {
        bail!("--demo needs the lot-admin component, which is not loaded");
    };
    let mut request = http::Request::put(path).header("content-type", "application/json");
    if let Some(token) = variables.get("admin_token").filter(|t| !t.is_empty()) {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response =
        running.app.invoke(admin, request.body(Full::new(Bytes::from(serde_json::to_vec(body)?)))?).await?;
    if !response.status().is_success() {
        bail!("PUT {path} answered {}: {}", response.status(), String::from_utf8_lossy(response.body()));
    }
    Ok(())
}
