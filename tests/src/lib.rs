//! The harness of the end-to-end tests: a throwaway database (SQLite file or
//! a fresh PostgreSQL database on the test server) and a `parkd` running the
//! real components from `spin.toml`, reached over HTTP.

use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{Context, Result};
use parkd::up::{Running, UpOptions};
use serde_json::{Value, json};
use sqlx::Connection;

pub mod browser;
pub mod cluster;
pub mod db;
pub mod kafka;
pub mod knative;
pub mod mosquitto;
pub mod open_data;
pub mod postgres;
pub mod process;
pub mod terminals;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// From a benchmark's `--backend` (or `--database`) argument.
    pub fn from_arg(arg: &str) -> Result<Self> {
        match arg {
            "sqlite" => Ok(Backend::Sqlite),
            "postgres" => Ok(Backend::Postgres),
            other => anyhow::bail!("--backend {other:?}: expected sqlite or postgres"),
        }
    }
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The PostgreSQL server `scripts/test.sh` started.
pub fn test_server_url() -> String {
    std::env::var("PARKING_TEST_DATABASE_URL").expect(
        "PARKING_TEST_DATABASE_URL is not set: run the tests with scripts/test.sh, which starts PostgreSQL",
    )
}

/// A new, empty database on the test server; answers its URL.
pub async fn fresh_postgres_database() -> Result<String> {
    let server = test_server_url();
    let name = format!("parking_{}", uuid::Uuid::new_v4().simple());
    let options = sqlx::postgres::PgConnectOptions::from_str(&server)?;
    let mut conn =
        sqlx::PgConnection::connect_with(&options).await.context("connecting to the test server")?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await?;
    Ok(url_with_database(&server, &name))
}

fn url_with_database(server: &str, database: &str) -> String {
    let (base, _) = server.rsplit_once('/').expect("a database URL has a path");
    format!("{base}/{database}")
}

/// A running parkd with its own data directory.
pub struct Parkd {
    pub base: String,
    pub running: Running,
    pub client: reqwest::Client,
    /// The database parkd runs on: `sqlite` or a postgres:// URL.
    pub database: String,
    _data_dir: tempfile::TempDir,
}

pub struct ParkdOptions {
    pub backend: Backend,
    /// The database URL, when not a fresh one on the shared test server.
    pub database: Option<String>,
    pub variables: Vec<(String, String)>,
    /// Another manifest than the repository's `spin.toml`.
    pub manifest: Option<PathBuf>,
    /// Where sensor messages come from (none by default).
    pub mqtt: parkd::up::MqttMode,
    /// Serve only these components (all by default).
    pub components: Vec<String>,
    /// With one component: route every path to it (`parkd serve`).
    pub serve_all_paths: bool,
    /// Cron schedule of sweep ticks; none by default (tests send their own).
    pub sweep_schedule: Option<String>,
    /// The terminal gateway's keep-alive interval.
    pub gateway_keep_alive: std::time::Duration,
    /// The terminal gateway's rate cap (least time between two frames).
    pub gateway_frame_interval: std::time::Duration,
    /// The listener's timeouts and caps, and the request deadline.
    pub limits: parkd::server::Limits,
    /// Where parkd listens (a free loopback port by default).
    pub listen: Option<std::net::SocketAddr>,
    /// `--insecure`: serve beyond loopback without the tokens.
    pub insecure: bool,
}

impl ParkdOptions {
    pub fn new(backend: Backend) -> Self {
        Self {
            backend,
            database: None,
            variables: Vec::new(),
            manifest: None,
            mqtt: parkd::up::MqttMode::Off,
            components: Vec::new(),
            serve_all_paths: false,
            sweep_schedule: None,
            gateway_keep_alive: std::time::Duration::from_secs(15),
            gateway_frame_interval: parkd::gateway::DEFAULT_FRAME_INTERVAL,
            limits: Default::default(),
            listen: None,
            insecure: false,
        }
    }
}

/// Whether a lot's availability (the API's JSON) shows exactly what a
/// simulation published last.
pub fn shows_last_published(availability: &Value, summary: &parkd::simulate::Summary) -> bool {
    let Some(classes) = availability["classes"].as_object() else { return false };
    let total = |f: &str| -> u64 { classes.values().map(|c| c[f].as_u64().unwrap_or_default()).sum() };
    let expect = |state: Option<bool>| summary.last_published.iter().filter(|s| **s == state).count() as u64;
    total("occupied") == expect(Some(true))
        && total("free") == expect(Some(false))
        && total("unknown") == expect(None)
}

/// Polls `check` until it holds; fails the test, naming `what`, once
/// `limit` passes.
pub async fn eventually_within<F, Fut>(limit: std::time::Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = std::time::Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "timed out after {limit:?} waiting for: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The repository's root and its `spin.toml`, with component sources made
/// absolute so the manifest can be written anywhere.
fn repository_manifest() -> Result<(PathBuf, String)> {
    let root = repo_root().canonicalize()?;
    let manifest = std::fs::read_to_string(root.join("spin.toml"))?
        .replace("source = \"", &format!("source = \"{}/", root.display()));
    Ok((root, manifest))
}

/// The repository's manifest plus the `event-recorder` fixture, subscribed to
/// the given event types and routed at `/test/recorded`. Written into `dir`.
pub fn manifest_with_recorder(dir: &std::path::Path, subscribes: &[&str]) -> Result<PathBuf> {
    let (root, manifest) = repository_manifest()?;
    let types = subscribes.iter().map(|t| format!("{t:?}")).collect::<Vec<_>>().join(", ");
    let recorder = format!(
        r#"
[[trigger.http]]
route = "/test/recorded"
component = "event-recorder"

[component.event-recorder]
source = "{}/target/wasm32-wasip2/release/event_recorder.wasm"
sqlite_databases = ["default"]
[component.event-recorder.tool.parkd]
subscribes = [{types}]
"#,
        root.display()
    );
    let path = dir.join("spin.toml");
    std::fs::write(&path, manifest + &recorder)?;
    Ok(path)
}

/// The repository's manifest plus the `fault-injector` fixture (routed at
/// `/test/fault/...`, on the configured database). Written into `dir`.
pub fn manifest_with_fault_injector(dir: &std::path::Path) -> Result<PathBuf> {
    manifest_with_fault_injector_subscribed(dir, &[])
}

/// As [`manifest_with_fault_injector`], the fixture also subscribed to the
/// given event types: a subscriber that fails, spins or records on demand.
pub fn manifest_with_fault_injector_subscribed(
    dir: &std::path::Path,
    subscribes: &[&str],
) -> Result<PathBuf> {
    let (root, manifest) = repository_manifest()?;
    let types = subscribes.iter().map(|t| format!("{t:?}")).collect::<Vec<_>>().join(", ");
    let fixture = format!(
        r#"
[[trigger.http]]
route = "/test/fault/..."
component = "fault-injector"

[component.fault-injector]
source = "{}/target/wasm32-wasip2/release/fault_injector.wasm"
sqlite_databases = ["default"]
allowed_outbound_hosts = ["postgres://{{{{ database_host }}}}"]
[component.fault-injector.variables]
database_url = "{{{{ database_url }}}}"
[component.fault-injector.tool.parkd]
subscribes = [{types}]
"#,
        root.display()
    );
    let path = dir.join("spin.toml");
    std::fs::write(&path, manifest + &fixture)?;
    Ok(path)
}

impl Parkd {
    /// Where this parkd keeps its state (its SQLite database is `parking.db` there).
    pub fn data_dir(&self) -> &std::path::Path {
        self._data_dir.path()
    }

    pub async fn start(backend: Backend) -> Result<Self> {
        Self::start_with(ParkdOptions::new(backend)).await
    }

    pub async fn start_with(options: ParkdOptions) -> Result<Self> {
        // parkd's logs, shown for failing tests (RUST_LOG narrows or widens them).
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,parkd=info,rumqttd=error")),
            )
            .with_test_writer()
            // Plain text where it is not read on a terminal (a benchmark's output file).
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .try_init();
        let data_dir = tempfile::tempdir()?;
        let database = match (options.database, options.backend) {
            (Some(url), _) => url,
            (None, Backend::Sqlite) => "sqlite".to_owned(),
            (None, Backend::Postgres) => fresh_postgres_database().await?,
        };
        let cache_dir = std::env::var_os("PARKD_CACHE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| std::env::temp_dir().join("parkd-test-components"));
        let idle_limit = options.limits.header_read_timeout;
        let running = parkd::up::start(UpOptions {
            manifest: options.manifest.unwrap_or_else(|| repo_root().join("spin.toml")),
            listen: options.listen.unwrap_or_else(|| "127.0.0.1:0".parse().expect("a socket address")),
            database: database.clone(),
            data_dir: data_dir.path().to_path_buf(),
            cache_dir,
            demo: false,
            variables: options.variables.into_iter().collect(),
            components: options.components,
            serve_all_paths: options.serve_all_paths,
            mqtt: options.mqtt,
            sweep_schedule: options.sweep_schedule,
            gateway_keep_alive: options.gateway_keep_alive,
            gateway_frame_interval: options.gateway_frame_interval,
            insecure: options.insecure,
            limits: options.limits,
        })
        .await?;
        if let Some(bridge) = &running.bridge {
            bridge.ready(std::time::Duration::from_secs(20)).await?;
        }
        // parkd closes a kept-alive connection idle for its header read
        // timeout; a client reusing one at that moment gets it closed under
        // its request (hyper: IncompleteMessage). The client lets idle
        // connections go well before, as a client of parkd should.
        let client = reqwest::Client::builder()
            .pool_idle_timeout(idle_limit / 2)
            .build()
            .context("building the test's HTTP client")?;
        Ok(Self { base: format!("http://{}", running.addr), running, client, database, _data_dir: data_dir })
    }

    /// The SQLite file parkd uses when it runs on SQLite.
    pub fn sqlite_path(&self) -> PathBuf {
        self._data_dir.path().join("parking.db")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The statements the components ran so far, over every database (from
    /// `/metrics`): what a benchmark divides by the readings it sent.
    pub async fn database_statements(&self) -> Result<u64> {
        let text = self.client.get(self.url("/metrics")).send().await?.error_for_status()?.text().await?;
        Ok(text
            .lines()
            .filter(|l| l.starts_with("parkd_database_statements_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum())
    }

    /// The derived events the `event-recorder` fixture recorded
    /// (`manifest_with_recorder`), in arrival order, once every derived event
    /// queued so far has been delivered.
    pub async fn recorded(&self) -> Vec<Value> {
        self.settled().await;
        self.client.get(self.url("/test/recorded")).send().await.unwrap().json().await.unwrap()
    }

    /// Waits until the derived events queued so far have reached their
    /// subscribers (they leave asynchronously, as from a Knative Broker).
    pub async fn settled(&self) {
        tokio::time::timeout(std::time::Duration::from_secs(60), self.running.eventing.settled())
            .await
            .expect("derived events still undelivered after 60 s");
    }

    /// A parkd bridging an existing broker (no embedded one).
    pub async fn bridging(broker_url: String, backend: Backend) -> Result<Self> {
        Self::start_with(ParkdOptions {
            mqtt: parkd::up::MqttMode::External(broker_url),
            ..ParkdOptions::new(backend)
        })
        .await
    }

    pub async fn put_lot(&self, lot: &str, body: &Value) -> reqwest::Response {
        self.client.put(self.url(&format!("/api/v1/lots/{lot}"))).json(body).send().await.expect("PUT lot")
    }

    pub async fn availability(&self, lot: &str) -> (reqwest::StatusCode, Value) {
        let r = self.client.get(self.url(&format!("/api/v1/lots/{lot}/availability"))).send().await.unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Sends a cron tick through the broker, as parkd's scheduler and a
    /// PingSource do; answers the sweep's report and the events it derived.
    /// Posts a PingSource tick through the events route; answers as it is.
    pub async fn post_tick(&self, tick: &str) -> reqwest::Response {
        self.client
            .post(self.url("/api/v1/events"))
            .header("ce-specversion", "1.0")
            .header("ce-id", tick)
            .header("ce-source", "/apis/v1/namespaces/parking/pingsources/retention-sweep")
            .header("ce-type", "dev.knative.sources.ping")
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap()
    }

    /// A tick's report, or why the sweep refused it (for the benchmarks).
    pub async fn sweep_report(&self, tick: &str) -> Result<Value> {
        let r = self.post_tick(tick).await;
        anyhow::ensure!(r.status().is_success(), "sweep: {} {}", r.status(), r.text().await?);
        let events: Vec<Value> = r.json().await?;
        Ok(events[0]["data"].clone())
    }

    /// A tick that must succeed: the sweep's report and the events it answered with.
    pub async fn sweep_tick(&self, tick: &str) -> (Value, Vec<Value>) {
        let r = self.post_tick(tick).await;
        let status = r.status();
        let body = r.text().await.unwrap();
        assert_eq!(status, reqwest::StatusCode::OK, "sweep {tick}: {body}");
        let mut events: Vec<Value> = serde_json::from_str(&body).unwrap();
        let report = events.remove(0);
        assert_eq!(report["type"], "io.parking.sweep.report.v1");
        (report["data"].clone(), events)
    }

    /// Sends a reading as a binary-mode CloudEvent (as Knative delivers).
    pub async fn send_reading(&self, event_id: &str, reading: &Value) -> reqwest::Response {
        self.client
            .post(self.url("/api/v1/events"))
            .header("ce-specversion", "1.0")
            .header("ce-id", event_id)
            .header("ce-source", "/parking/bridge")
            .header("ce-type", "io.parking.sensor.uplink.v1")
            .header("ce-format", "parking-json")
            .header("content-type", "application/json")
            .body(reading.to_string())
            .send()
            .await
            .expect("POST event")
    }

    /// Sends a CloudEvent in structured mode (the whole event as JSON).
    pub async fn send_event(&self, event: &Value) -> reqwest::Response {
        self.client
            .post(self.url("/api/v1/events"))
            .header("content-type", "application/cloudevents+json")
            .body(event.to_string())
            .send()
            .await
            .expect("POST event")
    }
}

/// A reading in the project's own JSON format.
pub fn reading(device: &str, occupied: bool, seq: u32, observed_at: &str) -> Value {
    json!({ "device": device, "occupied": occupied, "seq": seq, "observedAt": observed_at, "battery": 3.6 })
}

/// A lot of `cars` four-wheeler bays in zone L1 and `bikes` two-wheeler bays in zone M.
pub fn lot_spec(name: &str, sensor_prefix: &str, cars: usize, bikes: usize) -> Value {
    let mut bays = Vec::new();
    for i in 0..cars {
        bays.push(json!({ "id": format!("C{i}"), "zone": "L1", "class": "four_wheeler", "sensor": format!("{sensor_prefix}-C{i}") }));
    }
    for i in 0..bikes {
        bays.push(json!({ "id": format!("M{i}"), "zone": "M", "class": "two_wheeler", "sensor": format!("{sensor_prefix}-M{i}") }));
    }
    json!({ "name": name, "bays": bays })
}

/// Runs each scenario (an `async fn(Backend)` in the calling file) once per
/// backend, as `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::Backend::Sqlite).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::Backend::Postgres).await })*
        }
    };
}

/// A benchmark's progress bar: what it is doing, how far, how fast.
pub fn progress(len: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:<34} [{bar:30}] {pos}/{len} {per_sec}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}
