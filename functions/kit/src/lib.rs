//! What every parking component shares.
//!
//! - [`db`]: one connection type over Spin's SQLite and PostgreSQL interfaces,
//!   chosen by the `database_url` variable;
//! - [`sql`]: every statement a component issues, one module per dialect;
//! - [`alerts`]: alerts opened, closed, listed and announced;
//! - [`forecast`]: a (lot, class)'s forecast from its roll-ups and present counts;
//! - [`outbox`]: derived events staged with the change they report, then delivered;
//! - [`history`]: roll-ups, the history query, retention deletes, silent sensors;
//! - [`repo`]: lots, bays and their counts as the components use them;
//! - [`sites`]: what lots are and where, counts per bay category, for the feeds;
//! - [`uplink`]: the reading path, one uplink or a batch in one transaction;
//! - [`terminals`]: display terminals and the frames rendered for them;
//! - [`public`]: CORS, ETag and caching of the public reads;
//! - [`respond`]: JSON answers and the status code each failure maps to;
//! - [`auth`]: the bearer credentials (admin and ingest tokens), fail closed.

pub mod alerts;
pub mod auth;
pub mod cloudevent;
pub mod db;
pub mod error_codes;
pub mod forecast;
pub mod history;
pub mod outbox;
pub mod public;
pub mod repo;
pub mod respond;
pub mod sites;
pub mod sql;
pub mod stays;
pub mod terminals;
pub mod uplink;

pub use db::{Database, DbError, Value};
pub use respond::ApiError;
