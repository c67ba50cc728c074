//! Terminal tokens: which terminal a presented token belongs to.
//!
//! Tokens are stored as their SHA-256 digest (see `parking_domain::token_digest`),
//! unique across terminals, so one indexed lookup by digest answers both "is
//! this token valid" and "for which terminal" — the difference between 401
//! and 403. Answers are cached for a few seconds, and look-ups of one token
//! running at once are merged into one query: a wall of kiosks reconnecting
//! after a network blip costs one query per token, not one per kiosk. A
//! revoked or rotated token stops working within the cache's lifetime, or at
//! once when the gateway sees its terminal change ([`Tokens::forget_terminal`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
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

/// One token's answer: the terminal it belongs to (none: no terminal), filled
/// in once by whichever check looks it up first while the others wait.
struct Cached {
    since: Instant,
    owner: Arc<tokio::sync::OnceCell<Option<String>>>,
}

impl Cached {
    fn fresh(&self) -> bool {
        self.since.elapsed() < CACHE_TTL
    }
}

pub struct Tokens {
    store: Store,
    cache: Mutex<HashMap<String, Cached>>,
    lookups: std::sync::atomic::AtomicU64,
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
        Ok(Self { store, cache: Mutex::new(HashMap::new()), lookups: Default::default() })
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
        let cell = self.cell(&digest);
        let owner = cell.get_or_try_init(|| self.lookup(&digest)).await?;
        Ok(match owner {
            Some(owner) if owner == terminal => Verdict::Allowed,
            Some(_) => Verdict::Forbidden,
            None => Verdict::Unauthenticated("the token is not one of a provisioned terminal"),
        })
    }

    /// The answer slot of `digest`: the cached one while fresh, a new one otherwise.
    fn cell(&self, digest: &str) -> Arc<tokio::sync::OnceCell<Option<String>>> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(cached) = cache.get(digest).filter(|c| c.fresh()) {
            return cached.owner.clone();
        }
        if cache.len() >= CACHE_ENTRIES {
            cache.retain(|_, c| c.fresh());
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
        }
        let owner = Arc::new(tokio::sync::OnceCell::new());
        cache.insert(digest.to_owned(), Cached { since: Instant::now(), owner: owner.clone() });
        owner
    }

    /// Forgets what is cached about `terminal`'s tokens, and every "no such
    /// token" (the terminal may have a new one): its provisioning changed.
    pub fn forget_terminal(&self, terminal: &str) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|_, c| match c.owner.get() {
            Some(Some(owner)) => owner != terminal,
            Some(None) => false,
            None => true,
        });
    }

    /// Database look-ups made so far (merged and cached checks make none).
    pub fn lookups(&self) -> u64 {
        self.lookups.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn lookup(&self, digest: &str) -> Result<Option<String>> {
        self.lookups.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
