//! The `parkd` command line: one file per command, each with its arguments
//! and what it runs; this file names them and dispatches.
//!
//! - `app`: `up` (the whole system) and `serve` (one component, as Knative runs it)
//! - `bridge`: the MQTT bridge alone, to a CloudEvents or Kafka sink
//! - `gateway`: the terminal gateway alone
//! - `simulate`: simulated sensors over MQTT
//! - `migrate`: the database migrations

mod app;
mod bridge;
mod gateway;
mod migrate;
mod simulate;

use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use parkd::shutdown::Signals;

#[derive(Parser)]
#[command(
    name = "parkd",
    version,
    about = "The parking host: runs the parking components, routes their events"
)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "PARKD_LOG_FORMAT")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Runs the whole system: every component, the API and the event ingress.
    Up(app::UpArgs),
    /// Serves one component on every path, as a Knative Service runs it.
    Serve(app::ServeArgs),
    /// Runs only the MQTT bridge, delivering CloudEvents to a sink (as on a cluster).
    Bridge(bridge::BridgeArgs),
    /// Runs only the terminal gateway (SSE, WebSocket, kiosk pages), as its
    /// replicas run on a cluster: each subscribes to the broker itself.
    Gateway(gateway::GatewayArgs),
    /// Publishes simulated bay sensor readings over MQTT at a target rate.
    Simulate(simulate::SimulateArgs),
    /// Applies the database migrations and exits (a cluster's migration Job).
    Migrate(migrate::MigrateArgs),
}

impl Command {
    pub async fn run(self, signals: &mut Signals) -> Result<()> {
        match self {
            Command::Up(args) => args.run(signals).await,
            Command::Serve(args) => args.run(signals).await,
            Command::Bridge(args) => args.run(signals).await,
            Command::Gateway(args) => args.run(signals).await,
            Command::Simulate(args) => args.run().await,
            Command::Migrate(args) => args.run().await,
        }
    }
}

/// How long a command may drain on SIGTERM or SIGINT.
#[derive(clap::Args)]
pub struct DrainArgs {
    /// Seconds to finish in-flight requests and messages after SIGTERM or
    /// SIGINT; past it, what is left is abandoned (unacknowledged messages
    /// stay with the broker) and parkd exits non-zero. Keep it under the
    /// pod's terminationGracePeriodSeconds.
    #[arg(long, default_value = "25", env = "PARKD_GRACE_PERIOD", value_parser = parkd::shutdown::parse_grace_period)]
    grace_period: Duration,
}
