//! The `parkd` command line.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use parkd::database::Database;
use parkd::shutdown::Signals;
use parkd::up::{self, UpOptions};

#[derive(Parser)]
#[command(
    name = "parkd",
    version,
    about = "The parking host: runs the parking components, routes their events"
)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "PARKD_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the whole system: every component, the API and the event ingress.
    Up(UpArgs),
    /// Serves one component on every path, as a Knative Service runs it.
    Serve {
        /// The component (an id in the manifest).
        #[arg(long)]
        component: String,
        /// Knative sets PORT; parkd listens on all interfaces there.
        #[arg(long, env = "PORT", default_value_t = 8080)]
        port: u16,
        #[command(flatten)]
        app: AppArgs,
    },
    /// Runs only the MQTT bridge, delivering CloudEvents to a sink (as on a cluster).
    Bridge {
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
    },
    /// Runs only the terminal gateway (SSE, WebSocket, kiosk pages), as its
    /// replicas run on a cluster: each subscribes to the broker itself.
    Gateway {
        /// The MQTT broker terminal frames are published to.
        #[arg(long, env = "PARKD_MQTT")]
        mqtt: String,
        /// Where terminal tokens are checked: `sqlite` (in --data-dir) or a postgres:// URL.
        #[arg(long, default_value = "sqlite", env = "PARKING_DATABASE")]
        database: String,
        #[arg(long, default_value = ".parking", env = "PARKD_DATA_DIR")]
        data_dir: PathBuf,
        /// Address of the HTTP listener.
        #[arg(long, default_value = "127.0.0.1:3001", env = "PARKD_GATEWAY_LISTEN")]
        listen: SocketAddr,
        /// Seconds between keep-alive pings on idle streams.
        #[arg(long, default_value_t = 15)]
        keep_alive: u64,
        /// The least milliseconds between two frames a terminal's clients see
        /// (the newest frame; the last one is always shown).
        #[arg(long, env = "PARKD_GATEWAY_FRAME_INTERVAL_MS")]
        frame_interval_ms: Option<u64>,
        #[command(flatten)]
        drain: DrainArgs,
    },
    /// Publishes simulated bay sensor readings over MQTT at a target rate.
    Simulate {
        /// The MQTT broker (the one `parkd up` embeds by default).
        #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
        mqtt: String,
        /// Number of bays.
        #[arg(long, default_value_t = 100)]
        bays: usize,
        /// Readings per second.
        #[arg(long, default_value_t = 50.0)]
        rate: f64,
        /// Readings to send in all.
        #[arg(long, default_value_t = 3000)]
        readings: u64,
        /// Provisions the matching lot through this parkd's admin API first.
        #[arg(long, value_name = "URL")]
        provision: Option<String>,
        /// The lot to provision.
        #[arg(long, default_value = "sim")]
        lot: String,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Applies the database migrations and exits (a cluster's migration Job).
    Migrate {
        #[arg(long, env = "PARKING_DATABASE", default_value = "sqlite")]
        database: String,
        #[arg(long, default_value = ".parking")]
        data_dir: PathBuf,
    },
}

/// How long a command may drain on SIGTERM or SIGINT.
#[derive(clap::Args)]
struct DrainArgs {
    /// Seconds to finish in-flight requests and messages after SIGTERM or
    /// SIGINT; past it, what is left is abandoned (unacknowledged messages
    /// stay with the broker) and parkd exits non-zero. Keep it under the
    /// pod's terminationGracePeriodSeconds.
    #[arg(long, default_value = "25", env = "PARKD_GRACE_PERIOD", value_parser = parkd::shutdown::parse_grace_period)]
    grace_period: Duration,
}

/// What every command that runs components takes: the application and its state.
#[derive(clap::Args)]
struct AppArgs {
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
struct UpArgs {
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
    /// The least milliseconds between two frames a terminal's clients see
    /// (the newest frame; the last one is always shown).
    #[arg(long, env = "PARKD_GATEWAY_FRAME_INTERVAL_MS")]
    frame_interval_ms: Option<u64>,
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?}: expected NAME=VALUE"))
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    // From here on SIGTERM and SIGINT ask for a drain; neither kills parkd.
    let mut signals = Signals::install()?;
    match cli.command {
        Command::Up(args) => {
            let grace = args.app.drain.grace_period;
            let starting = up::start(UpOptions {
                demo: args.demo,
                components: args.components,
                mqtt: match (args.mqtt, args.no_mqtt) {
                    (Some(url), _) => up::MqttMode::External(url),
                    (None, true) => up::MqttMode::Off,
                    (None, false) => up::MqttMode::Embedded(args.mqtt_listen),
                },
                sweep_schedule: (!args.no_sweep).then_some(args.sweep_cron),
                gateway_frame_interval: args
                    .frame_interval_ms
                    .map_or(parkd::gateway::DEFAULT_FRAME_INTERVAL, std::time::Duration::from_millis),
                ..args.app.up_options(args.listen)
            });
            run_until_signal(starting, &mut signals, grace).await
        }
        Command::Serve { component, port, app } => {
            let grace = app.drain.grace_period;
            let starting = up::start(UpOptions {
                components: vec![component],
                serve_all_paths: true,
                ..app.up_options(SocketAddr::from(([0, 0, 0, 0], port)))
            });
            run_until_signal(starting, &mut signals, grace).await
        }
        Command::Bridge {
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
        } => {
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
            tracing::info!(
                signal,
                grace_period_s = grace.as_secs_f64(),
                "shutting down: draining the bridge"
            );
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
        Command::Gateway { mqtt, database, data_dir, listen, keep_alive, frame_interval_ms, drain } => {
            let database = Database::parse(&database, &data_dir)?;
            let mut config = parkd::gateway::GatewayConfig {
                keep_alive: std::time::Duration::from_secs(keep_alive.max(1)),
                ..parkd::gateway::GatewayConfig::new(&mqtt)
            };
            if let Some(ms) = frame_interval_ms {
                config.frame_interval = std::time::Duration::from_millis(ms);
            }
            let gateway = parkd::gateway::Gateway::start(config, &database).await?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}: pass --listen ADDR"))?;
            tracing::info!("terminal gateway on http://{listen}/terminals/{{terminal}}");
            let stop = tokio_util::sync::CancellationToken::new();
            let mut serving = tokio::spawn(parkd::gateway::serve(gateway.clone(), listener, stop.clone()));
            let signal = tokio::select! {
                result = &mut serving => return result?,
                signal = signals.recv() => signal,
            };
            let grace = drain.grace_period;
            tracing::info!(
                signal,
                streams = gateway.open_streams(),
                "shutting down: closing the terminal streams (their clients reconnect elsewhere)"
            );
            stop.cancel();
            let started = Instant::now();
            match tokio::time::timeout(grace, &mut serving).await {
                Ok(result) => {
                    result??;
                    tracing::info!(ms = started.elapsed().as_millis() as u64, "drained; stopping");
                    Ok(())
                }
                Err(_) => {
                    serving.abort();
                    anyhow::bail!("the drain did not finish within the {grace:?} grace period")
                }
            }
        }
        Command::Simulate { mqtt, bays, rate, readings, provision, lot, seed } => {
            let url = url::Url::parse(&mqtt).with_context(|| {
                format!("--mqtt {:?} is not a URL", parkd::credentials::redact_url(&mqtt))
            })?;
            let options = parkd::simulate::SimulateOptions {
                mqtt_host: url.host_str().context("--mqtt needs a host")?.to_owned(),
                mqtt_port: url.port().unwrap_or(1883),
                bays,
                rate,
                readings,
                seed,
                ..Default::default()
            };
            if let Some(api) = provision {
                let body = parkd::simulate::lot_definition(&lot, &options.device_prefix, bays);
                let mut request =
                    reqwest::Client::new().put(format!("{}/api/v1/lots/{lot}", api.trim_end_matches('/')));
                if let Ok(token) = std::env::var("PARKING_ADMIN_TOKEN") {
                    request = request.bearer_auth(token);
                }
                let response = request
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .send()
                    .await
                    .with_context(|| format!("provisioning lot {lot} at {api}: is parkd up?"))?;
                anyhow::ensure!(
                    response.status().is_success(),
                    "provisioning lot {lot} failed: {}",
                    response.text().await?
                );
                tracing::info!("lot {lot} provisioned with {bays} simulated bays");
            }
            let summary = parkd::simulate::run(options).await?;
            tracing::info!(sent = summary.sent, "simulation done");
            Ok(())
        }
        Command::Migrate { database, data_dir } => {
            let database = Database::parse(&database, &data_dir)?;
            database.migrate().await.context("migrating")?;
            tracing::info!(database = %database.describe(), "migrations applied");
            Ok(())
        }
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

fn init_logging(format: LogFormat) {
    parkd::logging::init(matches!(format, LogFormat::Json));
}
