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
    pools: BTreeMap<String, (SqlitePool, Arc<tokio::sync::Mutex<()>>)>,
}

impl SqliteCapability {
    pub async fn new(config: &SqliteConfig) -> Result<Arc<Self>> {
        let mut pools = BTreeMap::new();
        for (label, path) in &config.databases {
            let pool = runtime_config::open_pool(path).await?;
            pools.insert(label.clone(), (pool, Arc::new(tokio::sync::Mutex::new(()))));
        }
        Ok(Arc::new(Self { pools }))
    }

    /// Each pool's connections, for `/metrics`.
    pub fn pool_stats(&self) -> Vec<crate::metrics::PoolStats> {
        self.pools
            .iter()
            .map(|(label, (pool, _))| crate::metrics::PoolStats {
                database: format!("sqlite:{label}"),
                connections: pool.size(),
                idle: pool.num_idle(),
                max: pool.options().get_max_connections(),
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
