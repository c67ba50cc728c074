//! `fermyon:spin/sqlite@2.0.0`: the embedded default database.
//!
//! - linker: [`add_to_linker`];
//! - shared: [`SqliteCapability`], one connection pool per database label;
//! - per instance: [`SqliteInstance`], the labels the component may open
//!   (its `sqlite_databases`) and its open connections.

mod host;
pub mod runtime_config;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Result;
use sqlx::SqlitePool;
use sqlx::pool::PoolConnection;
use wasmtime::component::{HasSelf, Linker, ResourceTable};

pub use runtime_config::SqliteConfig;

use crate::capabilities::bindings::fermyon::spin::sqlite;

/// One open guest connection: a pooled connection held until the guest drops it.
pub struct SqliteConnection {
    conn: PoolConnection<sqlx::Sqlite>,
    /// Set by a `BEGIN`, cleared by `COMMIT`/`ROLLBACK`/`END`: a connection
    /// dropped inside a transaction is rolled back before it is reused.
    in_transaction: bool,
    /// Held from `BEGIN` to its end: one writer at a time, queued in order.
    write_turn: Option<tokio::sync::OwnedMutexGuard<()>>,
    /// The database's queue of writers.
    writers: Arc<tokio::sync::Mutex<()>>,
    /// The database's count of statements run.
    statements: Arc<AtomicU64>,
}

/// A connection released inside a transaction (its guest trapped, ran past
/// its deadline, or never ended it) is closed, not pooled: SQLite rolls the
/// transaction back and its write lock goes with it; the write turn is
/// released as this value drops.
impl Drop for SqliteConnection {
    fn drop(&mut self) {
        if self.in_transaction {
            tracing::warn!("closing a SQLite connection released inside a transaction (rolled back)");
            self.conn.close_on_drop();
        }
    }
}

/// Shared across requests: the pool of each database label, and its queue
/// of writers. SQLite admits one writer at a time and makes the others
/// retry with sleeps of up to 100 ms; queueing transactions in the host
/// instead hands the lock over at once and in arrival order.
pub struct SqliteCapability {
    pools: BTreeMap<String, SqliteDatabase>,
}

/// One database label: its pool, its queue of writers, its statements run.
struct SqliteDatabase {
    pool: SqlitePool,
    writers: Arc<tokio::sync::Mutex<()>>,
    statements: Arc<AtomicU64>,
}

impl SqliteCapability {
    pub async fn new(config: &SqliteConfig) -> Result<Arc<Self>> {
        let mut pools = BTreeMap::new();
        for (label, path) in &config.databases {
            let pool = runtime_config::open_pool(path).await?;
            let writers = Arc::new(tokio::sync::Mutex::new(()));
            pools.insert(label.clone(), SqliteDatabase { pool, writers, statements: Arc::default() });
        }
        Ok(Arc::new(Self { pools }))
    }

    /// Each pool's connections, for `/metrics`.
    pub fn pool_stats(&self) -> Vec<crate::metrics::PoolStats> {
        self.pools
            .iter()
            .map(|(label, db)| crate::metrics::PoolStats {
                database: format!("sqlite:{label}"),
                connections: db.pool.size(),
                idle: db.pool.num_idle(),
                max: db.pool.options().get_max_connections(),
                statements: db.statements.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// The state for one instance of a component that may open `labels`.
    pub fn instance(self: &Arc<Self>, labels: &[String]) -> SqliteInstance {
        SqliteInstance { shared: self.clone(), labels: labels.to_vec(), connections: ResourceTable::new() }
    }
}

pub struct SqliteInstance {
    shared: Arc<SqliteCapability>,
    labels: Vec<String>,
    connections: ResourceTable,
}

pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut SqliteInstance,
) -> Result<()> {
    sqlite::add_to_linker::<T, HasSelf<SqliteInstance>>(linker, get)?;
    Ok(())
}
