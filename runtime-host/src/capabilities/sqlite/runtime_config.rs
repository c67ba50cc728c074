//! Where each SQLite database label lives, and how its pool is opened.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

/// Label → database file. `default` is what `Connection::open_default()` opens.
#[derive(Debug, Clone, Default)]
pub struct SqliteConfig {
    pub databases: BTreeMap<String, PathBuf>,
}

impl SqliteConfig {
    /// The `default` label in `data_dir`, the file `spin up` is pointed at by
    /// `runtime-config.toml`, so both runtimes share one database.
    pub fn in_data_dir(data_dir: &Path) -> Self {
        Self { databases: BTreeMap::from([("default".to_owned(), data_dir.join("parking.db"))]) }
    }
}

/// A pool on one database file, created if missing, in WAL mode so readers
/// never wait for the writer.
pub async fn open_pool(path: &Path) -> Result<SqlitePool> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the data directory {}", dir.display()))?;
    }
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5))
        .foreign_keys(true);
    SqlitePoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .with_context(|| format!("opening the SQLite database {}", path.display()))
}
