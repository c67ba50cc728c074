//! `parkd migrate`: applies the database migrations and exits (a cluster's
//! migration Job).

use std::path::PathBuf;

use anyhow::{Context, Result};
use parkd::database::Database;

#[derive(clap::Args)]
pub struct MigrateArgs {
    #[arg(long, env = "PARKING_DATABASE", default_value = "sqlite")]
    database: String,
    #[arg(long, default_value = ".parking")]
    data_dir: PathBuf,
}

impl MigrateArgs {
    pub async fn run(self) -> Result<()> {
        let database = Database::parse(&self.database, &self.data_dir)?;
        database.migrate().await.context("migrating")?;
        tracing::info!(database = %database.describe(), "migrations applied");
        Ok(())
    }
}
