//! Direct access to a running parkd's database, for what the API does not
//! show (raw rows) and for bulk test and benchmark data made set-based in
//! the database itself.

use std::time::Duration;

use sqlx::Row;

use crate::Parkd;

pub enum Db {
    Postgres(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
}

impl Db {
    pub async fn open(parkd: &Parkd) -> anyhow::Result<Db> {
        Self::connect(&parkd.database, parkd.data_dir()).await
    }

    /// The database a parkd with `--database database --data-dir data_dir` uses.
    pub async fn connect(database: &str, data_dir: &std::path::Path) -> anyhow::Result<Db> {
        Ok(if database.starts_with("postgres") {
            Db::Postgres(sqlx::PgPool::connect(database).await?)
        } else {
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(data_dir.join("parking.db"))
                .busy_timeout(Duration::from_secs(30));
            Db::Sqlite(sqlx::SqlitePool::connect_with(options).await?)
        })
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Db::Postgres(_))
    }

    /// Runs one or more statements; panics with the statement on failure.
    pub async fn execute(&self, sql: &str) {
        match self {
            Db::Postgres(p) => {
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).execute(p).await.map(|_| ())
            }
            Db::Sqlite(p) => sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).execute(p).await.map(|_| ()),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// The first column of the first row, as an integer.
    pub async fn count(&self, sql: &str) -> i64 {
        match self {
            Db::Postgres(p) => {
                sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).fetch_one(p).await.map(|r| r.get(0))
            }
            Db::Sqlite(p) => {
                sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).fetch_one(p).await.map(|r| r.get(0))
            }
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// How many rows a query returns (fetched in full).
    pub async fn fetch_len(&self, sql: &str) -> usize {
        match self {
            Db::Postgres(p) => {
                sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).fetch_all(p).await.map(|r| r.len())
            }
            Db::Sqlite(p) => {
                sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).fetch_all(p).await.map(|r| r.len())
            }
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The first column of every row, as text.
    pub async fn strings(&self, sql: &str) -> Vec<String> {
        match self {
            Db::Postgres(p) => sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
                .fetch_all(p)
                .await
                .map(|rows| rows.iter().map(|r| r.get(0)).collect()),
            Db::Sqlite(p) => sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
                .fetch_all(p)
                .await
                .map(|rows| rows.iter().map(|r| r.get(0)).collect()),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The availability counts as kept (`availability_counts`) and as a
    /// recount of the bays finds them, one line per (lot, zone, class):
    /// `lot|zone|class|total|free|occupied|unknown|closed`, sorted.
    pub async fn kept_and_recounted(&self) -> (Vec<String>, Vec<String>) {
        let kept = "SELECT lot_id || '|' || zone || '|' || class || '|' || total || '|' || free || '|' \
                    || occupied || '|' || unknown || '|' || closed FROM availability_counts ORDER BY 1";
        let recount = "SELECT lot_id || '|' || COALESCE(zone, '') || '|' || class || '|' || COUNT(*) \
                       || '|' || SUM(CASE WHEN status = 'free' THEN 1 ELSE 0 END) \
                       || '|' || SUM(CASE WHEN status = 'occupied' THEN 1 ELSE 0 END) \
                       || '|' || SUM(CASE WHEN status = 'unknown' THEN 1 ELSE 0 END) \
                       || '|' || SUM(CASE WHEN status = 'closed' THEN 1 ELSE 0 END) \
                       FROM bays GROUP BY lot_id, COALESCE(zone, ''), class ORDER BY 1";
        (self.strings(kept).await, self.strings(recount).await)
    }

    /// Every status change: bay, zone, class, previous, status, changed_at_ms.
    pub async fn status_changes(&self) -> Vec<RawChange> {
        let sql = "SELECT bay_id, zone, class, previous, status, changed_at_ms FROM status_changes \
                   ORDER BY changed_at_ms, id";
        macro_rules! read {
            ($pool:expr) => {
                sqlx::query(sql)
                    .fetch_all($pool)
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| RawChange {
                        bay: r.get(0),
                        zone: r.get(1),
                        class: r.get(2),
                        previous: r.get(3),
                        status: r.get(4),
                        at: r.get(5),
                    })
                    .collect()
            };
        }
        match self {
            Db::Postgres(p) => read!(p),
            Db::Sqlite(p) => read!(p),
        }
    }

    /// Inserts `rows` readings received at `received_at_ms + i` for bays
    /// `{bay_prefix}0..bays` of `lot`, set-based in the database.
    pub async fn generate_readings(
        &self,
        lot: &str,
        bay_prefix: &str,
        bays: i64,
        rows: i64,
        received_at_ms: i64,
    ) {
        let select = format!(
            "SELECT 'gen-{received_at_ms}-' || i, '{bay_prefix}' || (i % {bays}), '{lot}', '{bay_prefix}' || (i % {bays}), \
             i % 2 = 0, i, {received_at_ms} + i, {received_at_ms} + i, 'changed'"
        );
        let columns = "readings (event_key, device, lot_id, bay_id, occupied, seq, observed_at_ms, received_at_ms, outcome)";
        let sql = if self.is_postgres() {
            format!("INSERT INTO {columns} {select} FROM generate_series(1, {rows}) AS i")
        } else {
            format!(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows}) \
                 INSERT INTO {columns} {select} FROM n"
            )
        };
        self.execute(&sql).await;
    }
}

#[derive(Debug, Clone)]
pub struct RawChange {
    pub bay: String,
    pub zone: Option<String>,
    pub class: String,
    pub previous: String,
    pub status: String,
    pub at: i64,
}
