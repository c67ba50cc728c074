//! The `spin:postgres/postgres` host functions, on sqlx.

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgRow, PgTypeInfo};
use sqlx::{Column, Postgres, Row, TypeInfo, ValueRef};
use wasmtime::component::Resource;

use super::{PgConnection, PostgresInstance};
use crate::capabilities::bindings::spin::postgres::postgres::{
    Column as WitColumn, DbDataType, DbValue, Error, Host, HostConnection, ParameterValue, RowSet,
};

impl Host for PostgresInstance {}

impl HostConnection for PostgresInstance {
    async fn open(&mut self, address: String) -> wasmtime::Result<Result<Resource<PgConnection>, Error>> {
        if let Err(refused) = self.allowed.check_url(&address) {
            tracing::warn!(%refused, "refused a PostgreSQL connection");
            return Ok(Err(Error::Other(refused.to_string())));
        }
        let (pool, statements) = match self.shared.pool(&address) {
            Ok(pool) => pool,
            Err(e) => return Ok(Err(Error::ConnectionFailed(format!("invalid PostgreSQL address: {e}")))),
        };
        let conn = match pool.acquire().await {
            Ok(conn) => conn,
            Err(e) => return Ok(Err(Error::ConnectionFailed(describe(&e)))),
        };
        Ok(Ok(self.connections.push(PgConnection { conn, in_transaction: false, statements })?))
    }

    async fn query(
        &mut self,
        connection: Resource<PgConnection>,
        statement: String,
        params: Vec<ParameterValue>,
    ) -> wasmtime::Result<Result<RowSet, Error>> {
        let connection = self.connections.get_mut(&connection)?;
        connection.statements.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Err(e) = check_parameter_count(&statement, params.len()) {
            return Ok(Err(e));
        }
        if let Err(e) = check_parameter_types(&mut connection.conn, &statement, &params).await {
            return Ok(Err(e));
        }
        let query = match bind(sqlx::query(sqlx::AssertSqlSafe(statement.clone())), params) {
            Ok(q) => q,
            Err(e) => return Ok(Err(e)),
        };
        let (before, after) = connection.awaiting(&statement);
        let rows = match query.fetch_all(&mut *connection.conn).await {
            Ok(rows) => rows,
            Err(e) => {
                connection.in_transaction = before;
                return Ok(Err(query_error(&e)));
            }
        };
        connection.in_transaction = after;
        Ok(row_set(&rows))
    }

    async fn execute(
        &mut self,
        connection: Resource<PgConnection>,
        statement: String,
        params: Vec<ParameterValue>,
    ) -> wasmtime::Result<Result<u64, Error>> {
        let connection = self.connections.get_mut(&connection)?;
        connection.statements.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Err(e) = check_parameter_count(&statement, params.len()) {
            return Ok(Err(e));
        }
        if let Err(e) = check_parameter_types(&mut connection.conn, &statement, &params).await {
            return Ok(Err(e));
        }
        let query = match bind(sqlx::query(sqlx::AssertSqlSafe(statement.clone())), params) {
            Ok(q) => q,
            Err(e) => return Ok(Err(e)),
        };
        let (before, after) = connection.awaiting(&statement);
        match query.execute(&mut *connection.conn).await {
            Ok(done) => {
                connection.in_transaction = after;
                Ok(Ok(done.rows_affected()))
            }
            Err(e) => {
                connection.in_transaction = before;
                Ok(Err(query_error(&e)))
            }
        }
    }

    async fn drop(&mut self, connection: Resource<PgConnection>) -> wasmtime::Result<()> {
        let mut connection = self.connections.delete(connection)?;
        if connection.in_transaction {
            // An abandoned transaction must not leak into the next request.
            if let Err(e) = sqlx::query("ROLLBACK").execute(&mut *connection.conn).await {
                tracing::warn!(error = %e, "rolling back an abandoned PostgreSQL transaction failed");
                connection.conn.close_on_drop();
            }
        }
        Ok(())
    }
}

/// Refuses what Spin's PostgreSQL refuses: as many parameters as the
/// statement's placeholders, no more, no fewer (sqlx declares each argument's
/// type, so the server itself would take an extra, unused one).
fn check_parameter_count(statement: &str, given: usize) -> Result<(), Error> {
    let needed = super::placeholders::count(statement);
    if given == needed {
        return Ok(());
    }
    Err(Error::QueryFailed(format!(
        "expected {needed} parameters but got {given}: pass exactly one parameter per placeholder ($1..${needed})"
    )))
}

/// Refuses what Spin's PostgreSQL refuses: a value whose type is not the one
/// the server infers for its placeholder. Spin (tokio-postgres) prepares each
/// statement without declaring parameter types, so `$1::json` wants JSON and
/// a string is refused there; sqlx declares a type per argument, and the
/// server would cast the text instead (`$1::text::json` is what both take).
/// The statement is prepared the way Spin prepares it, once per connection:
/// sqlx's statement cache gives the query that follows the same statement.
async fn check_parameter_types(
    conn: &mut sqlx::PgConnection,
    statement: &str,
    params: &[ParameterValue],
) -> Result<(), Error> {
    use sqlx::{Either, Executor, SqlSafeStr, Statement};
    if params.is_empty() {
        return Ok(());
    }
    let sql = sqlx::AssertSqlSafe(statement.to_owned()).into_sql_str();
    let prepared = conn.prepare(sql).await.map_err(|e| query_error(&e))?;
    let Some(Either::Left(types)) = prepared.parameters() else { return Ok(()) };
    for (i, (value, wanted)) in params.iter().zip(types).enumerate() {
        if let Some(given) = refused_type(value, wanted.name()) {
            return Err(Error::QueryFailed(format!(
                "error serializing parameter {i}: cannot convert between the Rust type `{given}` and the \
                 Postgres type `{}` (placeholder ${} is typed by the statement: cast it, e.g. `${}::text::json`)",
                wanted.name().to_lowercase(),
                i + 1,
                i + 1,
            )));
        }
    }
    Ok(())
}

/// None when `value` may be bound where the server wants `wanted` (sqlx's
/// type name), as tokio-postgres accepts it; else the Rust type Spin would
/// name in its refusal.
fn refused_type(value: &ParameterValue, wanted: &str) -> Option<&'static str> {
    let (accepted, given): (&[&str], &str) = match value {
        ParameterValue::DbNull => return None,
        ParameterValue::Boolean(_) => (&["BOOL"], "bool"),
        ParameterValue::Int8(_) => (&["\"CHAR\""], "i8"),
        ParameterValue::Int16(_) => (&["INT2"], "i16"),
        ParameterValue::Int32(_) => (&["INT4"], "i32"),
        ParameterValue::Int64(_) => (&["INT8"], "i64"),
        ParameterValue::Floating32(_) => (&["FLOAT4"], "f32"),
        ParameterValue::Floating64(_) => (&["FLOAT8"], "f64"),
        ParameterValue::Str(_) => (
            // sqlx names bpchar `CHAR`.
            &["TEXT", "VARCHAR", "CHAR", "NAME", "UNKNOWN", "citext", "ltree", "lquery", "ltxtquery"],
            "alloc::string::String",
        ),
        ParameterValue::Binary(_) => (&["BYTEA"], "alloc::vec::Vec<u8>"),
        ParameterValue::Date(_) => (&["DATE"], "chrono::naive::date::NaiveDate"),
        ParameterValue::Time(_) => (&["TIME"], "chrono::naive::time::NaiveTime"),
        ParameterValue::Datetime(_) => (&["TIMESTAMP"], "chrono::naive::datetime::NaiveDateTime"),
        ParameterValue::Timestamp(_) => {
            (&["TIMESTAMPTZ"], "chrono::datetime::DateTime<chrono::offset::utc::Utc>")
        }
    };
    if accepted.contains(&wanted) { None } else { Some(given) }
}

/// A NULL whose type the server infers from where it is used, as a NULL
/// written in SQL would be; a typed NULL would clash with the column's type.
struct UntypedNull;

impl sqlx::Type<Postgres> for UntypedNull {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(sqlx::postgres::types::Oid(0))
    }
}

impl sqlx::Encode<'_, Postgres> for UntypedNull {
    fn encode_by_ref(&self, _buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        Ok(IsNull::Yes)
    }
}

type PgQuery<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

fn bind(mut query: PgQuery<'static>, params: Vec<ParameterValue>) -> Result<PgQuery<'static>, Error> {
    for (i, p) in params.into_iter().enumerate() {
        query = match p {
            ParameterValue::Boolean(b) => query.bind(b),
            ParameterValue::Int8(v) => query.bind(v),
            ParameterValue::Int16(v) => query.bind(v),
            ParameterValue::Int32(v) => query.bind(v),
            ParameterValue::Int64(v) => query.bind(v),
            ParameterValue::Floating32(v) => query.bind(v),
            ParameterValue::Floating64(v) => query.bind(v),
            ParameterValue::Str(s) => query.bind(s),
            ParameterValue::Binary(b) => query.bind(b),
            ParameterValue::Date((y, m, d)) => {
                query.bind(chrono::NaiveDate::from_ymd_opt(y, m.into(), d.into()).ok_or_else(|| {
                    Error::BadParameter(format!("parameter ${}: no such date {y}-{m}-{d}", i + 1))
                })?)
            }
            ParameterValue::Time((h, min, s, ns)) => query.bind(
                chrono::NaiveTime::from_hms_nano_opt(h.into(), min.into(), s.into(), ns)
                    .ok_or_else(|| Error::BadParameter(format!("parameter ${}: no such time", i + 1)))?,
            ),
            ParameterValue::Datetime((y, mo, d, h, mi, s, ns)) => query.bind(
                chrono::NaiveDate::from_ymd_opt(y, mo.into(), d.into())
                    .and_then(|date| date.and_hms_nano_opt(h.into(), mi.into(), s.into(), ns))
                    .ok_or_else(|| Error::BadParameter(format!("parameter ${}: no such date-time", i + 1)))?,
            ),
            ParameterValue::Timestamp(v) => {
                query.bind(chrono::DateTime::<chrono::Utc>::from_timestamp(v, 0).ok_or_else(|| {
                    Error::BadParameter(format!("parameter ${}: no such timestamp {v}", i + 1))
                })?)
            }
            ParameterValue::DbNull => query.bind(UntypedNull),
        };
    }
    Ok(query)
}

fn row_set(rows: &[PgRow]) -> Result<RowSet, Error> {
    let columns = rows
        .first()
        .map(|r| {
            r.columns()
                .iter()
                .map(|c| WitColumn { name: c.name().to_owned(), data_type: data_type(c.type_info().name()) })
                .collect()
        })
        .unwrap_or_default();
    let rows = rows
        .iter()
        .map(|row| (0..row.len()).map(|i| value(row, i)).collect::<Result<Vec<_>, _>>())
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RowSet { columns, rows })
}

fn data_type(name: &str) -> DbDataType {
    match name {
        "BOOL" => DbDataType::Boolean,
        "INT2" => DbDataType::Int16,
        "INT4" => DbDataType::Int32,
        "INT8" => DbDataType::Int64,
        "FLOAT4" => DbDataType::Floating32,
        "FLOAT8" => DbDataType::Floating64,
        "TEXT" | "VARCHAR" | "CHAR" | "NAME" => DbDataType::Str,
        "BYTEA" => DbDataType::Binary,
        "DATE" => DbDataType::Date,
        "TIME" => DbDataType::Time,
        "TIMESTAMP" => DbDataType::Datetime,
        _ => DbDataType::Other,
    }
}

fn value(row: &PgRow, i: usize) -> Result<DbValue, Error> {
    let raw = row.try_get_raw(i).map_err(|e| Error::ValueConversionFailed(e.to_string()))?;
    if raw.is_null() {
        return Ok(DbValue::DbNull);
    }
    let type_name = raw.type_info().name().to_owned();
    let conv = |e: sqlx::Error| Error::ValueConversionFailed(format!("column {i} ({type_name}): {e}"));
    Ok(match type_name.as_str() {
        "BOOL" => DbValue::Boolean(row.try_get(i).map_err(conv)?),
        "INT2" => DbValue::Int16(row.try_get(i).map_err(conv)?),
        "INT4" => DbValue::Int32(row.try_get(i).map_err(conv)?),
        "INT8" => DbValue::Int64(row.try_get(i).map_err(conv)?),
        "FLOAT4" => DbValue::Floating32(row.try_get(i).map_err(conv)?),
        "FLOAT8" => DbValue::Floating64(row.try_get(i).map_err(conv)?),
        "TEXT" | "VARCHAR" | "CHAR" | "NAME" => DbValue::Str(row.try_get(i).map_err(conv)?),
        "BYTEA" => DbValue::Binary(row.try_get(i).map_err(conv)?),
        "DATE" => {
            let d: chrono::NaiveDate = row.try_get(i).map_err(conv)?;
            use chrono::Datelike;
            DbValue::Date((d.year(), d.month() as u8, d.day() as u8))
        }
        "TIME" => {
            let t: chrono::NaiveTime = row.try_get(i).map_err(conv)?;
            use chrono::Timelike;
            DbValue::Time((t.hour() as u8, t.minute() as u8, t.second() as u8, t.nanosecond()))
        }
        "TIMESTAMP" => {
            let t: chrono::NaiveDateTime = row.try_get(i).map_err(conv)?;
            use chrono::{Datelike, Timelike};
            DbValue::Datetime((
                t.year(),
                t.month() as u8,
                t.day() as u8,
                t.hour() as u8,
                t.minute() as u8,
                t.second() as u8,
                t.nanosecond(),
            ))
        }
        _ => DbValue::Unsupported,
    })
}

/// Connection trouble is `connection-failed` (retryable); everything else is
/// `query-failed` with the server's own message, which names the constraint,
/// and its SQLSTATE, by which the components classify it (`(SQLSTATE 40P01)`).
fn query_error(e: &sqlx::Error) -> Error {
    match e {
        sqlx::Error::Database(db) => Error::QueryFailed(match db.code() {
            Some(code) => format!("{} (SQLSTATE {code})", db.message()),
            None => db.message().to_owned(),
        }),
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Tls(_) => {
            Error::ConnectionFailed(describe(e))
        }
        other => Error::QueryFailed(other.to_string()),
    }
}

fn describe(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::PoolTimedOut => "PostgreSQL unreachable: no connection within the timeout".to_owned(),
        other => format!("PostgreSQL unreachable: {other}"),
    }
}
