//! Terminal tokens: which terminal a presented token belongs to.
//!
//! Tokens are stored as their SHA-256 digest (see `parking_domain::token_digest`),
//! unique across terminals, so one indexed lookup by digest answers both "is
//! this token valid" and "for which terminal" — the difference between 401
//! and 403. Answers are cached for a few seconds: a wall of kiosks
//! reconnecting after a network blip costs one query per token, and a revoked
//! or rotated token stops working within the cache's lifetime.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{PgPool, SqlitePool};

use crate::database::Database;

/// How long an answer (valid or not) is trusted.
pub const CACHE_TTL: Duration = Duration::from_secs(5);
/// Entries past which the cache starts over (bounds memory under a token-guessing flood).
const CACHE_ENTRIES: usize = 10_000;

enum Store {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Why a request may not watch a terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// No token, or one no terminal has (401).
    Unauthenticated(&'static str),
    /// A valid token of another terminal (403).
    Forbidden,
}

pub struct Tokens {
    store: Store,
    cache: Mutex<HashMap<String, (Option<String>, Instant)>>,
}

impl Tokens {
    /// Opens a small pool of its own on the system's database.
    pub async fn open(database: &Database) -> Result<Self> {
        let store = match database {
            Database::Sqlite { path } => Store::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(2)
                    .connect_with(SqliteConnectOptions::new().filename(path).read_only(true))
                    .await
                    .with_context(|| format!("opening {} for terminal tokens", path.display()))?,
            ),
            Database::Postgres { url } => Store::Postgres(
                PgPoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(Duration::from_secs(3))
                    .connect_lazy(url)
                    .context("the PostgreSQL URL for terminal tokens")?,
            ),
        };
        Ok(Self { store, cache: Mutex::new(HashMap::new()) })
    }

    /// Decides whether `token` (if any) may watch `terminal`. A database
    /// fault is an error (the caller answers 503).
    pub async fn check(&self, terminal: &str, token: Option<&str>) -> Result<Verdict> {
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Ok(Verdict::Unauthenticated(
                "this terminal needs its token: `Authorization: Bearer <token>` or `?token=<token>`",
            ));
        };
        let digest = parking_domain::token_digest(token);
        let owner = match self.cached(&digest) {
            Some(owner) => owner,
            None => {
                let owner = self.lookup(&digest).await?;
                let mut cache = self.cache.lock().expect("token cache lock");
                if cache.len() >= CACHE_ENTRIES {
                    cache.clear();
                }
                cache.insert(digest, (owner.clone(), Instant::now()));
                owner
            }
        };
        Ok(match owner {
            Some(owner) if owner == terminal => Verdict::Allowed,
            Some(_) => Verdict::Forbidden,
            None => Verdict::Unauthenticated("the token is not one of a provisioned terminal"),
        })
    }

    fn cached(&self, digest: &str) -> Option<Option<String>> {
        let cache = self.cache.lock().expect("token cache lock");
        cache.get(digest).filter(|(_, at)| at.elapsed() < CACHE_TTL).map(|(owner, _)| owner.clone())
    }

    async fn lookup(&self, digest: &str) -> Result<Option<String>> {
        let owner = match &self.store {
            Store::Sqlite(pool) => {
                sqlx::query_scalar("SELECT terminal_id FROM terminals WHERE token_sha256 = ?1")
                    .bind(digest)
                    .fetch_optional(pool)
                    .await
            }
            Store::Postgres(pool) => {
                sqlx::query_scalar("SELECT terminal_id FROM terminals WHERE token_sha256 = $1")
                    .bind(digest)
                    .fetch_optional(pool)
                    .await
            }
        };
        owner.context("looking up a terminal token")
    }
}
