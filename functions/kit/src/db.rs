//! One connection over the two databases a parking function may use.
//!
//! Which one is an explicit, typed decision ([`Backend`]) made from the
//! component variable `database_url`: empty or `sqlite` is the embedded
//! default database, a `postgres://` URL is PostgreSQL (the host must allow
//! the address in `allowed_outbound_hosts`).

use chrono::{DateTime, TimeZone, Utc};
use spin_sdk::{pg3, sqlite};

use crate::error_codes::{self, Kind};
use crate::sql::{self, Statements};

/// Where a component's data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// Spin's default SQLite database (label `default`).
    Sqlite,
    /// A PostgreSQL server, by connection URL.
    Postgres(String),
}

impl Backend {
    /// Reads the `database_url` component variable.
    pub fn from_variables() -> Result<Self, DbError> {
        let url = spin_sdk::variables::get("database_url")
            .map_err(|e| DbError::Config(format!("variable `database_url`: {e}")))?;
        Self::parse(&url)
    }

    pub fn parse(url: &str) -> Result<Self, DbError> {
        let url = url.trim();
        match url {
            "" | "sqlite" | "sqlite:default" => Ok(Self::Sqlite),
            _ if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(Self::Postgres(url.to_owned()))
            }
            _ => Err(DbError::Config(format!(
                "variable `database_url` is {url:?}: expected `sqlite` or a postgres:// URL"
            ))),
        }
    }
}

/// A parameter or column value, the same for both dialects.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Bool(bool),
}

impl Value {
    pub fn opt_text(v: Option<&str>) -> Self {
        v.map_or(Value::Null, |s| Value::Text(s.to_owned()))
    }
    pub fn opt_int(v: Option<i64>) -> Self {
        v.map_or(Value::Null, Value::Int)
    }
    pub fn opt_real(v: Option<f64>) -> Self {
        v.map_or(Value::Null, Value::Real)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Text(s.to_owned())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Text(s)
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

/// One result row; columns are read by position, in the order the statement selects them.
#[derive(Debug, Clone)]
pub struct Row(Vec<Value>);

impl Row {
    pub fn text(&self, i: usize) -> Result<String, DbError> {
        match self.0.get(i) {
            Some(Value::Text(s)) => Ok(s.clone()),
            other => Err(DbError::Decode(format!("column {i}: expected text, got {other:?}"))),
        }
    }
    pub fn opt_text(&self, i: usize) -> Result<Option<String>, DbError> {
        match self.0.get(i) {
            Some(Value::Null) => Ok(None),
            _ => self.text(i).map(Some),
        }
    }
    pub fn int(&self, i: usize) -> Result<i64, DbError> {
        match self.0.get(i) {
            Some(Value::Int(v)) => Ok(*v),
            other => Err(DbError::Decode(format!("column {i}: expected an integer, got {other:?}"))),
        }
    }
    pub fn opt_real(&self, i: usize) -> Result<Option<f64>, DbError> {
        match self.0.get(i) {
            Some(Value::Null) => Ok(None),
            Some(Value::Real(v)) => Ok(Some(*v)),
            Some(Value::Int(v)) => Ok(Some(*v as f64)),
            other => Err(DbError::Decode(format!("column {i}: expected a number, got {other:?}"))),
        }
    }
    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, DbError> {
        match self.0.get(i) {
            Some(Value::Null) => Ok(None),
            _ => self.int(i).map(Some),
        }
    }

    /// The rows a statement nested in column `i` (`json_agg(json_build_array(...))`
    /// as text; NULL for none), each read by position like a row of its own:
    /// several results in one round trip. Strings are text, whole numbers
    /// integers, other numbers reals.
    pub fn nested_rows(&self, i: usize) -> Result<Vec<Row>, DbError> {
        let Some(json) = self.opt_text(i)? else { return Ok(Vec::new()) };
        let rows: Vec<Vec<serde_json::Value>> = serde_json::from_str(&json)
            .map_err(|e| DbError::Decode(format!("column {i}: expected rows as JSON arrays: {e}")))?;
        Ok(rows.into_iter().map(|values| Row(values.into_iter().map(json_value).collect())).collect())
    }

    /// The one row a statement nested in column `i` (`json_build_array(...)` as
    /// text), or `None` for NULL.
    pub fn nested_row(&self, i: usize) -> Result<Option<Row>, DbError> {
        let Some(json) = self.opt_text(i)? else { return Ok(None) };
        let values: Vec<serde_json::Value> = serde_json::from_str(&json)
            .map_err(|e| DbError::Decode(format!("column {i}: expected a row as a JSON array: {e}")))?;
        Ok(Some(Row(values.into_iter().map(json_value).collect())))
    }
}

fn json_value(v: serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::Number(n) => {
            n.as_i64().map_or_else(|| Value::Real(n.as_f64().unwrap_or(f64::NAN)), Value::Int)
        }
        serde_json::Value::String(s) => Value::Text(s),
        nested => Value::Text(nested.to_string()),
    }
}

/// Milliseconds since the epoch: how every time is stored.
pub fn to_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub fn from_ms(ms: i64) -> Result<DateTime<Utc>, DbError> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .ok_or_else(|| DbError::Decode(format!("{ms} is not a valid time in milliseconds")))
}

pub fn opt_from_ms(ms: Option<i64>) -> Result<Option<DateTime<Utc>>, DbError> {
    ms.map(from_ms).transpose()
}

/// What can go wrong talking to the database, split by what the caller should do.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database cannot be reached or is busy: retry later (503).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A uniqueness rule was violated (409 for the admin API).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The component is configured wrongly (500, with the variable named).
    #[error("configuration: {0}")]
    Config(String),
    /// A statement failed for another reason (500).
    #[error("query failed: {0}")]
    Query(String),
    /// A column did not have the type the code expects (500: a bug).
    #[error("unexpected column value: {0}")]
    Decode(String),
}

enum Conn {
    Sqlite(sqlite::Connection),
    Postgres(pg3::Connection),
}

/// An open connection plus the statements of its dialect.
pub struct Database {
    conn: Conn,
    pub sql: &'static Statements,
    /// How many [`Database::transaction`]s are open: an inner one is part of
    /// the outer one (it neither begins nor commits).
    depth: std::cell::Cell<u32>,
}

impl Database {
    /// Opens the database named by the component's `database_url` variable.
    pub fn open_configured() -> Result<Self, DbError> {
        Self::open(&Backend::from_variables()?)
    }

    pub fn open(backend: &Backend) -> Result<Self, DbError> {
        match backend {
            Backend::Sqlite => {
                let conn = sqlite::Connection::open_default().map_err(sqlite_error)?;
                Ok(Self {
                    conn: Conn::Sqlite(conn),
                    sql: &sql::sqlite::STATEMENTS,
                    depth: Default::default(),
                })
            }
            Backend::Postgres(url) => {
                let conn = pg3::Connection::open(url).map_err(pg_error)?;
                Ok(Self {
                    conn: Conn::Postgres(conn),
                    sql: &sql::postgres::STATEMENTS,
                    depth: Default::default(),
                })
            }
        }
    }

    /// Runs a statement that returns no rows; answers how many rows it touched
    /// where the dialect tells (SQLite's Spin 2 interface does not: 0).
    pub fn execute(&self, statement: &str, params: &[Value]) -> Result<u64, DbError> {
        match &self.conn {
            Conn::Sqlite(c) => {
                c.execute(statement, &to_sqlite(params)).map_err(sqlite_error)?;
                Ok(0)
            }
            Conn::Postgres(c) => c.execute(statement, &to_pg(params)).map_err(pg_error),
        }
    }

    pub fn query(&self, statement: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        match &self.conn {
            Conn::Sqlite(c) => {
                let result = c.execute(statement, &to_sqlite(params)).map_err(sqlite_error)?;
                Ok(result
                    .rows
                    .into_iter()
                    .map(|r| Row(r.values.into_iter().map(from_sqlite).collect()))
                    .collect())
            }
            Conn::Postgres(c) => {
                let set = c.query(statement, &to_pg(params)).map_err(pg_error)?;
                set.rows
                    .into_iter()
                    .map(|r| r.into_iter().map(from_pg).collect::<Result<Vec<_>, _>>().map(Row))
                    .collect()
            }
        }
    }

    /// Runs `body` in a transaction: committed if it returns Ok, rolled back
    /// otherwise. Within another transaction, `body` is part of that one: so
    /// a caller can add its own writes (an outbox row, say) to the
    /// transaction of a repository function that opens one itself.
    pub fn transaction<T, E: From<DbError>>(&self, body: impl FnOnce(&Self) -> Result<T, E>) -> Result<T, E> {
        let depth = self.depth.get();
        if depth > 0 {
            self.depth.set(depth + 1);
            let result = body(self);
            self.depth.set(depth);
            return result;
        }
        self.execute(self.sql.begin, &[])?;
        self.depth.set(1);
        let result = body(self);
        self.depth.set(0);
        match result {
            Ok(value) => {
                self.execute("COMMIT", &[])?;
                Ok(value)
            }
            Err(e) => {
                // The original error matters more than a failed rollback; the
                // host also rolls back when the connection is dropped.
                let _ = self.execute("ROLLBACK", &[]);
                Err(e)
            }
        }
    }
}

fn to_sqlite(params: &[Value]) -> Vec<sqlite::Value> {
    params
        .iter()
        .map(|v| match v {
            Value::Null => sqlite::Value::Null,
            Value::Int(i) => sqlite::Value::Integer(*i),
            Value::Real(r) => sqlite::Value::Real(*r),
            Value::Text(s) => sqlite::Value::Text(s.clone()),
            Value::Bool(b) => sqlite::Value::Integer(i64::from(*b)),
        })
        .collect()
}

fn from_sqlite(v: sqlite::Value) -> Value {
    match v {
        sqlite::Value::Null => Value::Null,
        sqlite::Value::Integer(i) => Value::Int(i),
        sqlite::Value::Real(r) => Value::Real(r),
        sqlite::Value::Text(s) => Value::Text(s),
        sqlite::Value::Blob(b) => Value::Text(String::from_utf8_lossy(&b).into_owned()),
    }
}

fn to_pg(params: &[Value]) -> Vec<pg3::ParameterValue> {
    params
        .iter()
        .map(|v| match v {
            Value::Null => pg3::ParameterValue::DbNull,
            Value::Int(i) => pg3::ParameterValue::Int64(*i),
            Value::Real(r) => pg3::ParameterValue::Floating64(*r),
            Value::Text(s) => pg3::ParameterValue::Str(s.clone()),
            Value::Bool(b) => pg3::ParameterValue::Boolean(*b),
        })
        .collect()
}

fn from_pg(v: pg3::DbValue) -> Result<Value, DbError> {
    Ok(match v {
        pg3::DbValue::DbNull => Value::Null,
        pg3::DbValue::Boolean(b) => Value::Bool(b),
        pg3::DbValue::Int8(i) => Value::Int(i.into()),
        pg3::DbValue::Int16(i) => Value::Int(i.into()),
        pg3::DbValue::Int32(i) => Value::Int(i.into()),
        pg3::DbValue::Int64(i) => Value::Int(i),
        pg3::DbValue::Floating32(f) => Value::Real(f.into()),
        pg3::DbValue::Floating64(f) => Value::Real(f),
        pg3::DbValue::Str(s) => Value::Text(s),
        other => return Err(DbError::Decode(format!("unsupported PostgreSQL value {other:?}"))),
    })
}

fn sqlite_error(e: sqlite::Error) -> DbError {
    match e {
        sqlite::Error::Io(msg) => match error_codes::sqlite_kind(&msg) {
            Kind::UniqueViolation => DbError::Conflict(msg),
            Kind::Transient => DbError::Unavailable(msg),
            Kind::Other => DbError::Query(msg),
        },
        sqlite::Error::NoSuchDatabase => DbError::Config(
            "the SQLite database `default` is not available: add `sqlite_databases = [\"default\"]` \
             to the component in spin.toml"
                .into(),
        ),
        sqlite::Error::AccessDenied => DbError::Config(
            "access to the SQLite database `default` was denied: list it in the component's \
             `sqlite_databases`"
                .into(),
        ),
        other => DbError::Unavailable(other.to_string()),
    }
}

fn pg_error(e: pg3::PgError) -> DbError {
    match e {
        pg3::PgError::ConnectionFailed(msg) => DbError::Unavailable(msg),
        pg3::PgError::QueryFailed(msg) => match error_codes::postgres_kind(&msg) {
            Kind::UniqueViolation => DbError::Conflict(msg),
            Kind::Transient => DbError::Unavailable(msg),
            Kind::Other => DbError::Query(msg),
        },
        other => DbError::Query(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_is_chosen_by_url() {
        assert_eq!(Backend::parse("").unwrap(), Backend::Sqlite);
        assert_eq!(Backend::parse("sqlite").unwrap(), Backend::Sqlite);
        assert_eq!(
            Backend::parse("postgres://u@127.0.0.1:5432/parking").unwrap(),
            Backend::Postgres("postgres://u@127.0.0.1:5432/parking".into())
        );
        let err = Backend::parse("mysql://x").unwrap_err().to_string();
        assert!(err.contains("database_url") && err.contains("mysql://x"), "{err}");
    }

    #[test]
    fn nested_rows_read_like_rows() {
        let row = Row(vec![
            Value::Text(
                r#"[["a", 3, null, 1.5, "{\"k\":1}"], ["b", 9007199254740993, "x", 2, null]]"#.into(),
            ),
            Value::Null,
            Value::Text(r#"["Lot", "Europe/Berlin", null]"#.into()),
            Value::Text("not json".into()),
        ]);
        let rows = row.nested_rows(0).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].text(0).unwrap(), "a");
        assert_eq!(rows[0].int(1).unwrap(), 3);
        assert_eq!(rows[0].opt_text(2).unwrap(), None);
        assert_eq!(rows[0].opt_real(3).unwrap(), Some(1.5));
        assert_eq!(rows[0].text(4).unwrap(), r#"{"k":1}"#, "a nested JSON document stays its text");
        assert_eq!(rows[1].int(1).unwrap(), 9_007_199_254_740_993, "a BIGINT beyond f64's integers");
        assert!(row.nested_rows(1).unwrap().is_empty(), "NULL: no rows");
        let lot = row.nested_row(2).unwrap().unwrap();
        assert_eq!((lot.text(0).unwrap(), lot.opt_text(2).unwrap()), ("Lot".to_owned(), None));
        assert_eq!(row.nested_row(1).unwrap().map(|r| r.0), None);
        let err = row.nested_rows(3).unwrap_err().to_string();
        assert!(err.contains("column 3"), "{err}");
    }
}
