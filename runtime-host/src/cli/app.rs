//! `parkd up` and `parkd serve`: the commands that run components, and the
//! arguments they share.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use parkd::shutdown::Signals;
use parkd::up::{self, UpOptions};

use super::DrainArgs;

/// What every command that runs components takes: the application and its state.
#[derive(clap::Args)]
pub struct AppArgs {
    /// The application manifest (shared with `spin up`).
    #[arg(long, default_value = "spin.toml")]
    manifest: PathBuf,
    /// `sqlite` (a file in --data-dir) or a postgres:// URL.
    #[arg(long, default_value = "sqlite", env = "PARKING_DATABASE")]
    database: String,
    /// Where the SQLite database and other state live.
    #[arg(long, default_value = ".parking", env = "PARKD_DATA_DIR")]
    data_dir: PathBuf,
    /// Where compiled components are cached between runs.
    #[arg(long, env = "PARKD_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Sets an application variable, as NAME=VALUE (repeatable).
    #[arg(long = "var", value_parser = parse_var)]
    vars: Vec<(String, String)>,
    /// Serves on a non-loopback address even when the admin or ingest token
    /// the served components use is unset (only where the network alone
    /// guards those routes).
    #[arg(long, env = "PARKD_INSECURE")]
    insecure: bool,
    #[command(flatten)]
    drain: DrainArgs,
}

impl AppArgs {
    /// The options of `parkd up` for these arguments; the caller sets the rest.
    fn up_options(self, listen: SocketAddr) -> UpOptions {
        UpOptions {
            manifest: self.manifest,
            listen,
            database: self.database,
            data_dir: self.data_dir,
            cache_dir: self.cache_dir.unwrap_or_else(parkd::engine::default_cache_dir),
            demo: false,
            variables: self.vars.into_iter().collect::<BTreeMap<_, _>>(),
            components: Vec::new(),
            serve_all_paths: false,
            mqtt: up::MqttMode::Off,
            sweep_schedule: None,
            gateway_keep_alive: std::time::Duration::from_secs(15),
            gateway_frame_interval: parkd::gateway::DEFAULT_FRAME_INTERVAL,
            insecure: self.insecure,
            limits: Default::default(),
        }
    }
}

#[derive(clap::Args)]
pub struct UpArgs {
    #[command(flatten)]
    app: AppArgs,
    /// Address of the HTTP listener.
    #[arg(long, default_value = "127.0.0.1:3000", env = "PARKD_LISTEN")]
    listen: SocketAddr,
    /// Also provision a demo lot.
    #[arg(long)]
    demo: bool,
    /// Serves only this component (repeatable); all by default.
    #[arg(long = "component")]
    components: Vec<String>,
    /// Bridges sensor topics of this MQTT broker (mqtt://[user:pass@]host:port[?version=5])
    /// instead of running one in-process.
    #[arg(long, env = "PARKD_MQTT", conflicts_with_all = ["mqtt_listen", "no_mqtt"])]
    mqtt: Option<String>,
    /// Address of the embedded MQTT broker.
    #[arg(long, default_value = "127.0.0.1:1883", env = "PARKD_MQTT_LISTEN")]
    mqtt_listen: SocketAddr,
    /// Runs no MQTT at all (events over HTTP only).
    #[arg(long)]
    no_mqtt: bool,
    /// Cron schedule (five fields, UTC) of the retention sweep's ticks, as a
    /// PingSource's `schedule`.
    #[arg(long, default_value = parkd::scheduler::DEFAULT_SWEEP_CRON, env = "PARKD_SWEEP_CRON")]
    sweep_cron: String,
    /// Sends no sweep ticks (roll-ups, retention and offline detection wait).
    #[arg(long)]
    no_sweep: bool,
    /// The milliseconds per frame a terminal's clients see at most, on
    /// average (one frame of slack; the newest frame, the last one always),
    /// and the least between two rounds of renders of a lot.
    #[arg(long, env = "PARKD_GATEWAY_FRAME_INTERVAL_MS")]
    frame_interval_ms: Option<u64>,
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?}: expected NAME=VALUE"))
}

#[derive(clap::Args)]
pub struct ServeArgs {
    /// The component (an id in the manifest).
    #[arg(long)]
    component: String,
    /// Knative sets PORT; parkd listens on all interfaces there.
    #[arg(long, env = "PORT", default_value_t = 8080)]
    port: u16,
    #[command(flatten)]
    app: AppArgs,
}

impl UpArgs {
    pub async fn run(self, signals: &mut Signals) -> Result<()> {
        let grace = self.app.drain.grace_period;
        let starting = up::start(UpOptions {
            demo: self.demo,
            components: self.components,
            mqtt: match (self.mqtt, self.no_mqtt) {
                (Some(url), _) => up::MqttMode::External(url),
                (None, true) => up::MqttMode::Off,
                (None, false) => up::MqttMode::Embedded(self.mqtt_listen),
            },
            sweep_schedule: (!self.no_sweep).then_some(self.sweep_cron),
            gateway_frame_interval: self
                .frame_interval_ms
                .map_or(parkd::gateway::DEFAULT_FRAME_INTERVAL, std::time::Duration::from_millis),
            ..self.app.up_options(self.listen)
        });
        run_until_signal(starting, signals, grace).await
    }
}

impl ServeArgs {
    pub async fn run(self, signals: &mut Signals) -> Result<()> {
        let Self { component, port, app } = self;
        let grace = app.drain.grace_period;
        let starting = up::start(UpOptions {
            components: vec![component],
            serve_all_paths: true,
            ..app.up_options(SocketAddr::from(([0, 0, 0, 0], port)))
        });
        run_until_signal(starting, signals, grace).await
    }
}

/// Starts the system, then runs it until SIGTERM or SIGINT and drains it
/// within `grace`. A signal during start-up stops it there (nothing is in
/// flight yet).
async fn run_until_signal(
    starting: impl std::future::Future<Output = Result<up::Running>>,
    signals: &mut Signals,
    grace: Duration,
) -> Result<()> {
    let running = tokio::select! {
        running = starting => running?,
        signal = signals.recv() => {
            tracing::info!(signal, "stopping before start-up finished");
            return Ok(());
        }
    };
    running.run(signals, grace).await
}
