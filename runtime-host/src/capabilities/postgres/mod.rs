//! `spin:postgres/postgres@3.0.0`: PostgreSQL for production.
//!
//! - linker: [`add_to_linker`];
//! - shared: [`PostgresCapability`], one pool per server address, opened lazily;
//! - per instance: [`PostgresInstance`], the component's allowed hosts and
//!   its open connections.
//!
//! Every `open` is checked against the component's `allowed_outbound_hosts`
//! before any connection is made.

mod host;
mod placeholders;
pub mod runtime_config;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use sqlx::PgPool;
use sqlx::pool::PoolConnection;
use wasmtime::component::{HasSelf, Linker, ResourceTable};

pub use runtime_config::PostgresConfig;

use crate::capabilities::allowed_hosts::AllowedHosts;
use crate::capabilities::bindings::spin::postgres::postgres;

/// One open guest connection, held from the pool until the guest drops it.
pub struct PgConnection {
    conn: PoolConnection<sqlx::Postgres>,
    in_transaction: bool,
    /// Its pool's count of statements run.
    statements: Arc<AtomicU64>,
}

impl PgConnection {
    /// Before `statement` runs: the transaction state before it and after it
    /// succeeds. Until it completes a transaction may be open whatever it is,
    /// so a request cancelled meanwhile (deadline, client gone) leaves a
    /// connection that is closed, not pooled, when it drops.
    fn awaiting(&mut self, statement: &str) -> (bool, bool) {
        let (before, after) =
            (self.in_transaction, crate::capabilities::transaction_state(statement, self.in_transaction));
        self.in_transaction = before || after;
        (before, after)
    }
}

/// A connection released inside a transaction (its guest trapped, ran past
/// its deadline, or never ended it) is closed, not pooled: the server rolls
/// the transaction back, and no later request's `COMMIT` can commit it.
impl Drop for PgConnection {
    fn drop(&mut self) {
        if self.in_transaction {
            tracing::warn!("closing a PostgreSQL connection released inside a transaction (rolled back)");
            self.conn.close_on_drop();
        }
    }
}

/// Shared across requests: a pool per connection URL.
pub struct PostgresCapability {
    config: PostgresConfig,
    /// By URL: the pool and its count of statements run.
    pools: Mutex<HashMap<String, (PgPool, Arc<AtomicU64>)>>,
}

impl PostgresCapability {
    pub fn new(config: PostgresConfig) -> Arc<Self> {
        Arc::new(Self { config, pools: Mutex::new(HashMap::new()) })
    }

    /// Each pool's connections, for `/metrics`, named without credentials.
    pub fn pool_stats(&self) -> Vec<crate::metrics::PoolStats> {
        let pools = self.pools.lock().expect("pool map lock");
        pools
            .iter()
            .map(|(url, (pool, statements))| {
                let database = match url::Url::parse(url) {
                    Ok(u) => format!(
                        "postgres://{}:{}{}",
                        u.host_str().unwrap_or_default(),
                        u.port().unwrap_or(5432),
                        u.path()
                    ),
                    Err(_) => "postgres".to_owned(),
                };
                crate::metrics::PoolStats {
                    database,
                    connections: pool.size(),
                    idle: pool.num_idle(),
                    max: pool.options().get_max_connections(),
                    statements: statements.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// The pool for `url`, created (without connecting) on first use.
    fn pool(&self, url: &str) -> Result<(PgPool, Arc<AtomicU64>), sqlx::Error> {
        let mut pools = self.pools.lock().expect("pool map lock");
        if let Some(pool) = pools.get(url) {
            return Ok(pool.clone());
        }
        let pool = (self.config.lazy_pool(url)?, Arc::default());
        pools.insert(url.to_owned(), pool.clone());
        Ok(pool)
    }

    pub fn instance(self: &Arc<Self>, allowed: AllowedHosts) -> PostgresInstance {
        PostgresInstance { shared: self.clone(), allowed, connections: ResourceTable::new() }
    }
}

pub struct PostgresInstance {
    shared: Arc<PostgresCapability>,
    allowed: AllowedHosts,
    connections: ResourceTable,
}

pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut PostgresInstance,
) -> Result<()> {
    postgres::add_to_linker::<T, HasSelf<PostgresInstance>>(linker, get)?;
    Ok(())
}
