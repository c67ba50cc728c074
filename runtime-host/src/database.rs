//! Which database parkd runs on, and its migrations (run at start).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

pub(crate) static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The database of a parkd run: an explicit choice, not a URL sniffed everywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// The embedded default: a file in the data directory.
    Sqlite { path: PathBuf },
    /// A PostgreSQL server.
    Postgres { url: String },
}

impl Database {
    /// `sqlite` (or empty) is the data directory's file; a `postgres://` URL is a server.
    pub fn parse(value: &str, data_dir: &Path) -> Result<Self> {
        match value.trim() {
            "" | "sqlite" => Ok(Self::Sqlite { path: data_dir.join("parking.db") }),
            url if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                PgConnectOptions::from_str(url)
                    .with_context(|| "--database is not a valid PostgreSQL URL")?;
                Ok(Self::Postgres { url: url.to_owned() })
            }
            other => bail!("--database {other:?}: expected `sqlite` or a postgres://user@host:port/db URL"),
        }
    }

    /// The value of the components' `database_url` variable.
    pub fn component_url(&self) -> String {
        match self {
            Self::Sqlite { .. } => "sqlite".to_owned(),
            Self::Postgres { url } => url.clone(),
        }
    }

    /// `host:port` of the server, for `allowed_outbound_hosts` (`database_host`).
    pub fn host_port(&self) -> Option<String> {
        match self {
            Self::Sqlite { .. } => None,
            Self::Postgres { url } => {
                let parsed = url::Url::parse(url).ok()?;
                Some(format!("{}:{}", parsed.host_str()?, parsed.port().unwrap_or(5432)))
            }
        }
    }

    /// Where it is, without credentials, for logs.
    pub fn describe(&self) -> String {
        match self {
            Self::Sqlite { path } => format!("SQLite {}", path.display()),
            Self::Postgres { .. } => format!("PostgreSQL {}", self.host_port().unwrap_or_default()),
        }
    }

    /// Brings the schema up to date. Safe to run by several processes at once
    /// (sqlx takes an advisory lock on PostgreSQL).
    pub async fn migrate(&self) -> Result<()> {
        match self {
            Self::Sqlite { path } => {
                let pool = crate::capabilities::sqlite::runtime_config::open_pool(path).await?;
                SQLITE_MIGRATIONS.run(&pool).await.context("running the SQLite migrations")?;
                pool.close().await;
            }
            Self::Postgres { url } => {
                let options = PgConnectOptions::from_str(url)?;
                let pool = PgPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(options)
                    .await
                    .with_context(|| {
                        format!(
                            "cannot reach {}: start the server or pass another --database",
                            self.describe()
                        )
                    })?;
                POSTGRES_MIGRATIONS.run(&pool).await.context("running the PostgreSQL migrations")?;
                pool.close().await;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_is_chosen_explicitly() {
        let dir = Path::new("/data");
        assert_eq!(
            Database::parse("sqlite", dir).unwrap(),
            Database::Sqlite { path: dir.join("parking.db") }
        );
        let pg = Database::parse("postgres://parking:pw@db:6543/parking", dir).unwrap();
        assert_eq!(pg.host_port().as_deref(), Some("db:6543"));
        assert!(!pg.describe().contains("pw"), "no credentials in logs");
        assert!(Database::parse("mysql://x", dir).is_err());
    }

    #[tokio::test]
    async fn sqlite_migrations_apply_twice_without_harm() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::parse("sqlite", dir.path()).unwrap();
        db.migrate().await.unwrap();
        db.migrate().await.unwrap();
        assert!(dir.path().join("parking.db").is_file());
    }

    #[tokio::test]
    async fn postgres_migrations_apply() {
        let url = std::env::var("PARKING_TEST_DATABASE_URL").expect(
            "PARKING_TEST_DATABASE_URL is not set: run the tests with scripts/test.sh, which starts PostgreSQL",
        );
        let db = Database::parse(&url, Path::new(".")).unwrap();
        db.migrate().await.unwrap();
        db.migrate().await.unwrap();
    }
}
