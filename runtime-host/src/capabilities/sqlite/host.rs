//! The `fermyon:spin/sqlite` host functions, on sqlx.

use sqlx::{Column, Row, TypeInfo, ValueRef};
use wasmtime::component::Resource;

use super::{SqliteConnection, SqliteInstance};
use crate::capabilities::bindings::fermyon::spin::sqlite::{
    Error, Host, HostConnection, QueryResult, RowResult, Value,
};
use crate::capabilities::transaction_state;

impl Host for SqliteInstance {}

impl HostConnection for SqliteInstance {
    async fn open(
        &mut self,
        database: String,
    ) -> wasmtime::Result<Result<Resource<SqliteConnection>, Error>> {
        if !self.labels.contains(&database) {
            return Ok(Err(Error::AccessDenied));
        }
        let Some(db) = self.shared.pools.get(&database) else {
            return Ok(Err(Error::NoSuchDatabase));
        };
        let conn = match db.pool.acquire().await {
            Ok(conn) => conn,
            Err(e) => return Ok(Err(Error::Io(format!("database busy: {e} (SQLite code {SQLITE_BUSY})")))),
        };
        let handle = self.connections.push(SqliteConnection {
            conn,
            in_transaction: false,
            write_turn: None,
            writers: db.writers.clone(),
            statements: db.statements.clone(),
        })?;
        Ok(Ok(handle))
    }

    async fn execute(
        &mut self,
        connection: Resource<SqliteConnection>,
        statement: String,
        parameters: Vec<Value>,
    ) -> wasmtime::Result<Result<QueryResult, Error>> {
        let connection = self.connections.get_mut(&connection)?;
        connection.statements.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let opens = !connection.in_transaction && transaction_state(&statement, false);
        if opens && connection.write_turn.is_none() {
            connection.write_turn = Some(connection.writers.clone().lock_owned().await);
        }
        // Until the statement completes, a transaction may be open whatever it
        // is: a request cancelled meanwhile (deadline, client gone) must leave
        // a connection that is closed, not pooled, when it drops.
        let (before, after) =
            (connection.in_transaction, transaction_state(&statement, connection.in_transaction));
        connection.in_transaction = before || after;
        let result = run(&mut connection.conn, &statement, parameters).await;
        connection.in_transaction = if result.is_ok() { after } else { before };
        if !connection.in_transaction {
            connection.write_turn = None;
        }
        Ok(result)
    }

    async fn drop(&mut self, connection: Resource<SqliteConnection>) -> wasmtime::Result<()> {
        let mut connection = self.connections.delete(connection)?;
        if connection.in_transaction {
            // An abandoned transaction must not leak into the next request.
            if let Err(e) = sqlx::query("ROLLBACK").execute(&mut *connection.conn).await {
                tracing::warn!(error = %e, "rolling back an abandoned SQLite transaction failed");
                connection.conn.close_on_drop();
            }
        }
        Ok(())
    }
}

async fn run(
    conn: &mut sqlx::SqliteConnection,
    statement: &str,
    parameters: Vec<Value>,
) -> Result<QueryResult, Error> {
    let columns = prepare(conn, statement, parameters.len()).await?;
    let mut query = sqlx::query(sqlx::AssertSqlSafe(statement.to_owned()));
    for p in parameters {
        query = match p {
            Value::Integer(i) => query.bind(i),
            Value::Real(r) => query.bind(r),
            Value::Text(s) => query.bind(s),
            Value::Blob(b) => query.bind(b),
            Value::Null => query.bind(None::<String>),
        };
    }
    let rows = query.fetch_all(&mut *conn).await.map_err(|e| Error::Io(describe(&e)))?;
    let rows = rows
        .iter()
        .map(|row| {
            (0..row.len())
                .map(|i| column_value(row, i))
                .collect::<Result<Vec<_>, _>>()
                .map(|values| RowResult { values })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(QueryResult { columns, rows })
}

/// Prepares the statement as Spin's SQLite (rusqlite) does, and refuses what
/// it refuses, in its words: a parameter list longer or shorter than the
/// statement's placeholders (sqlx would ignore the extras and bind the missing
/// ones as NULL). Gives the statement's column names, which a result carries
/// even when it has no rows, as Spin's does. sqlx caches the prepared
/// statement for the query that follows, once per connection.
async fn prepare(
    conn: &mut sqlx::SqliteConnection,
    statement: &str,
    given: usize,
) -> Result<Vec<String>, Error> {
    use sqlx::{Either, Executor, SqlSafeStr, Statement};
    let sql = sqlx::AssertSqlSafe(statement.to_owned()).into_sql_str();
    let prepared = conn.prepare(sql).await.map_err(|e| Error::Io(describe(&e)))?;
    let needed = match prepared.parameters() {
        Some(Either::Right(n)) => n,
        Some(Either::Left(types)) => types.len(),
        None => 0,
    };
    if given != needed {
        return Err(Error::Io(format!(
            "Wrong number of parameters passed to query. Got {given}, needed {needed}"
        )));
    }
    Ok(prepared.columns().iter().map(|c| c.name().to_owned()).collect())
}

/// SQLite values carry their own type: read each as what it is.
fn column_value(row: &sqlx::sqlite::SqliteRow, i: usize) -> Result<Value, Error> {
    let raw = row.try_get_raw(i).map_err(|e| Error::Io(e.to_string()))?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let type_name = raw.type_info().name().to_owned();
    let value = match type_name.as_str() {
        "INTEGER" | "BOOLEAN" => row.try_get::<i64, _>(i).map(Value::Integer),
        "REAL" => row.try_get::<f64, _>(i).map(Value::Real),
        "TEXT" => row.try_get::<String, _>(i).map(Value::Text),
        _ => row.try_get::<Vec<u8>, _>(i).map(Value::Blob),
    };
    value.map_err(|e| Error::Io(format!("column {i} ({type_name}): {e}")))
}

/// SQLite's result code for a busy database.
const SQLITE_BUSY: i32 = 5;

/// The database's own message, which names the constraint or syntax at
/// fault, and its result code, by which the components classify it
/// (`(SQLite code 2067)`).
fn describe(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => format!("{} (SQLite code {code})", db.message()),
            None => db.message().to_owned(),
        },
        sqlx::Error::PoolTimedOut => {
            format!("database busy: no connection free in time (SQLite code {SQLITE_BUSY})")
        }
        other => other.to_string(),
    }
}
