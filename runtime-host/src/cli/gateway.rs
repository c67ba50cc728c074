//! `parkd gateway`: the terminal gateway alone (SSE, WebSocket, kiosk pages),
//! as its replicas run on a cluster.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use parkd::database::Database;
use parkd::shutdown::Signals;

use super::DrainArgs;

#[derive(clap::Args)]
pub struct GatewayArgs {
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
    /// The milliseconds per frame a terminal's clients see at most, on
    /// average (one frame of slack; the newest frame, the last one always).
    #[arg(long, env = "PARKD_GATEWAY_FRAME_INTERVAL_MS")]
    frame_interval_ms: Option<u64>,
    #[command(flatten)]
    drain: DrainArgs,
}

impl GatewayArgs {
    pub async fn run(self, signals: &mut Signals) -> Result<()> {
        let Self { mqtt, database, data_dir, listen, keep_alive, frame_interval_ms, drain } = self;
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
}
