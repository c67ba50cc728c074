//! How parkd connects to PostgreSQL servers.

use std::str::FromStr;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

#[derive(Debug, Clone)]
pub struct PostgresConfig {
    /// Connections per server address, shared by all instances.
    pub max_connections: u32,
    /// How long `open` waits for a connection before the guest gets
    /// `connection-failed` (which the components answer with 503: retry).
    pub acquire_timeout: Duration,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self { max_connections: 16, acquire_timeout: Duration::from_secs(3) }
    }
}

impl PostgresConfig {
    pub fn lazy_pool(&self, url: &str) -> Result<PgPool, sqlx::Error> {
        let options = PgConnectOptions::from_str(url)?.application_name("parkd");
        Ok(PgPoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(self.acquire_timeout)
            .connect_lazy_with(options))
    }
}
