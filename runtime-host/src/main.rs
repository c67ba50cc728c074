//! The `parkd` command line (see `cli`): parse, log, dispatch.

mod cli;

use anyhow::Result;
use clap::Parser;
use parkd::shutdown::Signals;

#[tokio::main]
async fn main() -> Result<()> {
    let cli = cli::Cli::parse();
    parkd::logging::init(matches!(cli.log_format, cli::LogFormat::Json));
    // From here on SIGTERM and SIGINT ask for a drain; neither kills parkd.
    let mut signals = Signals::install()?;
    cli.command.run(&mut signals).await
}
