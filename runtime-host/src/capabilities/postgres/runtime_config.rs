//! How parkd connects to PostgreSQL servers.

use std::str::FromStr;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// A pooled connection idle longer than this is pinged before it is used.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct PostgresConfig {
    /// Connections per server address, shared by all instances.
    pub max_connections: u32,
    /// How long `open` waits for a connection before the guest gets
    /// `connection-failed` (which the components answer with 503: retry).
    pub acquire_timeout: Duration,
    /// Server-side limits of every session, so a stuck statement, a lock
    /// wait or an abandoned transaction ends even if parkd cannot end it.
    pub session_timeouts: SessionTimeouts,
}

/// PostgreSQL's own timeouts, set on each session at connect.
#[derive(Debug, Clone)]
pub struct SessionTimeouts {
    /// `statement_timeout`: no statement runs longer.
    pub statement: Duration,
    /// `lock_timeout`: no statement waits longer for a lock.
    pub lock: Duration,
    /// `idle_in_transaction_session_timeout`: a session idle inside a
    /// transaction this long is ended (and its transaction rolled back).
    pub idle_in_transaction: Duration,
}

impl Default for SessionTimeouts {
    fn default() -> Self {
        Self {
            statement: Duration::from_secs(30),
            lock: Duration::from_secs(10),
            idle_in_transaction: Duration::from_secs(60),
        }
    }
}

impl SessionTimeouts {
    /// The startup options (`-c name=value`), in milliseconds.
    fn options(&self) -> [(&'static str, String); 3] {
        let ms = |d: Duration| format!("{}ms", d.as_millis());
        [
            ("statement_timeout", ms(self.statement)),
            ("lock_timeout", ms(self.lock)),
            ("idle_in_transaction_session_timeout", ms(self.idle_in_transaction)),
        ]
    }
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(3),
            session_timeouts: SessionTimeouts::default(),
        }
    }
}

impl PostgresConfig {
    pub fn lazy_pool(&self, url: &str) -> Result<PgPool, sqlx::Error> {
        let options = PgConnectOptions::from_str(url)?
            .application_name("parkd")
            .options(self.session_timeouts.options());
        Ok(PgPoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(self.acquire_timeout)
            // sqlx pings every connection it hands out: a round trip in front
            // of every instance's first statement. A connection in use moments
            // ago is alive; one idle for longer (the server may have restarted
            // since) is still pinged, and a failed ping replaces it.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for > PING_IF_IDLE_FOR {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect_lazy_with(options))
    }
}
