//! The schema `spin up` is given (`spin up --sqlite @runtime-host/schema/sqlite.sql`):
//! what parkd's SQLite migrations produce, as one script that may run on every
//! start (every `CREATE` is `IF NOT EXISTS`), since Spin runs no migrations.
//!
//! The script is generated from the migrations and committed; a test keeps it
//! equal to what they produce (`PARKING_BLESS=1` rewrites it).

use anyhow::{Context, Result};
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

/// The committed script, relative to the repository root.
pub const SCRIPT_PATH: &str = "runtime-host/schema/sqlite.sql";

const HEADER: &str = "\
-- Generated from runtime-host/migrations/sqlite (do not edit): the whole
-- schema for `spin up --sqlite @runtime-host/schema/sqlite.sql`, safe to run
-- on every start. Regenerate: PARKING_BLESS=1 cargo test --lib spin_schema
";

/// An empty in-memory SQLite database (one connection, so it lives as long as the pool).
pub async fn memory_database() -> Result<SqlitePool> {
    SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(SqliteConnectOptions::new().in_memory(true).foreign_keys(true))
        .await
        .context("opening an in-memory SQLite database")
}

/// The script for the current migrations.
pub async fn script() -> Result<String> {
    let pool = memory_database().await?;
    crate::database::SQLITE_MIGRATIONS.run(&pool).await.context("running the SQLite migrations")?;
    let mut out = HEADER.to_owned();
    for (_, sql) in objects(&pool).await? {
        out.push('\n');
        out.push_str(&if_not_exists(&sql));
        out.push_str(";\n");
    }
    Ok(out)
}

/// The schema's objects in creation order, as (name, normalised `CREATE`),
/// leaving out SQLite's own and sqlx's bookkeeping table.
pub async fn objects(pool: &SqlitePool) -> Result<Vec<(String, String)>> {
    let rows = sqlx::query(
        "SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' \
         AND name <> '_sqlx_migrations' ORDER BY rowid",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// `CREATE TABLE x` → `CREATE TABLE IF NOT EXISTS x` (and the same for indexes).
fn if_not_exists(create: &str) -> String {
    for kind in ["CREATE TABLE ", "CREATE UNIQUE INDEX ", "CREATE INDEX ", "CREATE VIEW ", "CREATE TRIGGER "]
    {
        if let Some(rest) = create.strip_prefix(kind) {
            return format!("{kind}IF NOT EXISTS {rest}");
        }
    }
    create.to_owned()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn committed_path() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(SCRIPT_PATH)
    }

    /// What each table holds after a fresh start (a migration may seed rows).
    async fn contents(pool: &SqlitePool) -> Vec<(String, i64)> {
        let mut counts = Vec::new();
        for (name, sql) in objects(pool).await.unwrap() {
            if sql.starts_with("CREATE TABLE") {
                let n: i64 =
                    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM \"{name}\"")))
                        .fetch_one(pool)
                        .await
                        .unwrap();
                counts.push((name, n));
            }
        }
        counts
    }

    #[tokio::test]
    async fn spin_schema_is_what_the_migrations_produce() {
        let generated = script().await.unwrap();
        let path = committed_path();
        if std::env::var_os("PARKING_BLESS").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{SCRIPT_PATH} is not what runtime-host/migrations/sqlite produce: \
             regenerate it with PARKING_BLESS=1 cargo test --lib spin_schema"
        );
    }

    /// `spin up` runs the script on every start: on a fresh database it makes
    /// exactly the migrations' schema, and a second start changes nothing.
    #[tokio::test]
    async fn spin_schema_makes_the_same_database_and_runs_again_after_a_restart() {
        let script = std::fs::read_to_string(committed_path()).unwrap();
        let migrated = memory_database().await.unwrap();
        crate::database::SQLITE_MIGRATIONS.run(&migrated).await.unwrap();

        let spin = memory_database().await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(script.clone())).execute(&spin).await.unwrap();
        assert_eq!(objects(&spin).await.unwrap(), objects(&migrated).await.unwrap());
        assert_eq!(contents(&spin).await, contents(&migrated).await);

        sqlx::raw_sql(sqlx::AssertSqlSafe(script)).execute(&spin).await.expect("a second start must work");
        assert_eq!(objects(&spin).await.unwrap(), objects(&migrated).await.unwrap());
    }

    /// The README's one `spin up` command is given this script.
    #[test]
    fn the_readme_gives_spin_up_this_script() {
        let readme =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).unwrap();
        assert!(
            readme.contains(&format!("spin up --sqlite @{SCRIPT_PATH}")),
            "README.md should tell `spin up --sqlite @{SCRIPT_PATH}`"
        );
    }
}
