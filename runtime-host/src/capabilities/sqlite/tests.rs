//! The SQLite capability against a real database file, called as a guest would.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::capabilities::bindings::fermyon::spin::sqlite::{Error, HostConnection, Value};
use crate::capabilities::transaction_state;

async fn capability(dir: &std::path::Path) -> Arc<SqliteCapability> {
    SqliteCapability::new(&SqliteConfig::in_data_dir(dir)).await.unwrap()
}

#[tokio::test]
async fn executes_statements_with_parameters_and_reads_typed_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut instance = capability(dir.path()).await.instance(&["default".into()]);
    let conn = instance.open("default".into()).await.unwrap().unwrap();
    let c = || Resource::new_borrow(conn.rep());
    instance
        .execute(c(), "CREATE TABLE t (i INTEGER, r REAL, s TEXT, b BLOB, n TEXT)".into(), vec![])
        .await
        .unwrap()
        .unwrap();
    instance
        .execute(
            c(),
            "INSERT INTO t VALUES (?1, ?2, ?3, ?4, ?5)".into(),
            vec![
                Value::Integer(7),
                Value::Real(1.5),
                Value::Text("bay".into()),
                Value::Blob(vec![1, 2]),
                Value::Null,
            ],
        )
        .await
        .unwrap()
        .unwrap();
    let result = instance.execute(c(), "SELECT i, r, s, b, n FROM t".into(), vec![]).await.unwrap().unwrap();
    assert_eq!(result.columns, ["i", "r", "s", "b", "n"]);
    assert_eq!(
        result.rows[0].values,
        [
            Value::Integer(7),
            Value::Real(1.5),
            Value::Text("bay".into()),
            Value::Blob(vec![1, 2]),
            Value::Null
        ]
    );
    instance.drop(conn).await.unwrap();
}

#[tokio::test]
async fn a_component_opens_only_its_own_labels() {
    let dir = tempfile::tempdir().unwrap();
    let cap = capability(dir.path()).await;
    let mut none = cap.instance(&[]);
    assert!(matches!(none.open("default".into()).await.unwrap(), Err(Error::AccessDenied)));
    let mut other = cap.instance(&["archive".into()]);
    assert!(matches!(other.open("archive".into()).await.unwrap(), Err(Error::NoSuchDatabase)));
}

#[tokio::test]
async fn errors_carry_the_database_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut instance = capability(dir.path()).await.instance(&["default".into()]);
    let conn = instance.open("default".into()).await.unwrap().unwrap();
    let err = instance.execute(conn, "SELEC 1".into(), vec![]).await.unwrap().unwrap_err();
    assert!(matches!(&err, Error::Io(m) if m.contains("syntax error")), "{err:?}");
    // The result code, by which the components classify a failure.
    assert!(matches!(&err, Error::Io(m) if m.ends_with("(SQLite code 1)")), "{err:?}");
}

#[tokio::test]
async fn a_transaction_left_open_by_a_trapped_guest_never_reaches_the_next_request() {
    let dir = tempfile::tempdir().unwrap();
    let cap = capability(dir.path()).await;
    let mut setup = cap.instance(&["default".into()]);
    let c = setup.open("default".into()).await.unwrap().unwrap();
    setup
        .execute(Resource::new_borrow(c.rep()), "CREATE TABLE t (i INTEGER)".into(), vec![])
        .await
        .unwrap()
        .unwrap();
    setup.drop(c).await.unwrap();

    // A guest that traps mid-transaction never calls `drop`: its instance
    // state simply goes away, connection and all.
    let mut trapped = cap.instance(&["default".into()]);
    let c = trapped.open("default".into()).await.unwrap().unwrap();
    for statement in ["BEGIN IMMEDIATE", "INSERT INTO t VALUES (1)"] {
        trapped.execute(Resource::new_borrow(c.rep()), statement.into(), vec![]).await.unwrap().unwrap();
    }
    drop(trapped);

    let mut next = cap.instance(&["default".into()]);
    for _ in 0..8 {
        let c = next.open("default".into()).await.unwrap().unwrap();
        let b = || Resource::new_borrow(c.rep());
        let rows = next.execute(b(), "SELECT COUNT(*) FROM t".into(), vec![]).await.unwrap().unwrap();
        assert_eq!(rows.rows[0].values, [Value::Integer(0)], "the trapped guest's row is visible");
        // Its write lock is gone too.
        next.execute(b(), "BEGIN IMMEDIATE".into(), vec![]).await.unwrap().unwrap();
        next.execute(b(), "COMMIT".into(), vec![]).await.unwrap().unwrap();
        next.drop(c).await.unwrap();
    }
}

/// Spin's SQLite (rusqlite) refuses a parameter list that does not match
/// the statement's placeholders; sqlx would ignore extras and bind missing
/// ones as NULL, hiding the bug until the component runs under Spin.
#[tokio::test]
async fn a_parameter_count_that_does_not_match_the_statement_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut instance = capability(dir.path()).await.instance(&["default".into()]);
    let conn = instance.open("default".into()).await.unwrap().unwrap();
    let c = || Resource::new_borrow(conn.rep());
    let too_many = instance
        .execute(c(), "SELECT ?1".into(), vec![Value::Integer(1), Value::Integer(2)])
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&too_many, Error::Io(m) if m.contains("Wrong number of parameters") && m.contains("Got 2, needed 1")),
        "{too_many:?}"
    );
    let too_few =
        instance.execute(c(), "SELECT ?1, ?2".into(), vec![Value::Integer(1)]).await.unwrap().unwrap_err();
    assert!(matches!(&too_few, Error::Io(m) if m.contains("Got 1, needed 2")), "{too_few:?}");
    // A placeholder used twice is one parameter, as SQLite counts them.
    let reused =
        instance.execute(c(), "SELECT ?1 + ?1".into(), vec![Value::Integer(2)]).await.unwrap().unwrap();
    assert_eq!(reused.rows[0].values, [Value::Integer(4)]);
    instance.drop(conn).await.unwrap();
}

/// Spin's SQLite names a result's columns from the statement, so a component
/// may read them from an empty result; sqlx has no row to take them from.
#[tokio::test]
async fn an_empty_result_still_names_its_columns() {
    let dir = tempfile::tempdir().unwrap();
    let mut instance = capability(dir.path()).await.instance(&["default".into()]);
    let conn = instance.open("default".into()).await.unwrap().unwrap();
    let c = || Resource::new_borrow(conn.rep());
    instance
        .execute(c(), "CREATE TABLE bays (bay_id TEXT, status TEXT)".into(), vec![])
        .await
        .unwrap()
        .unwrap();
    let empty = instance
        .execute(
            c(),
            "SELECT bay_id, status AS state FROM bays WHERE bay_id = ?1".into(),
            vec![Value::Text("B1".into())],
        )
        .await
        .unwrap()
        .unwrap();
    assert!(empty.rows.is_empty());
    assert_eq!(empty.columns, ["bay_id", "state"]);
    let written = instance.execute(c(), "DELETE FROM bays".into(), vec![]).await.unwrap().unwrap();
    assert!(written.columns.is_empty() && written.rows.is_empty(), "{written:?}");
    instance.drop(conn).await.unwrap();
}

#[tokio::test]
async fn an_abandoned_transaction_is_rolled_back_when_the_connection_drops() {
    let dir = tempfile::tempdir().unwrap();
    let cap = capability(dir.path()).await;
    let mut instance = cap.instance(&["default".into()]);
    let setup = instance.open("default".into()).await.unwrap().unwrap();
    let b = Resource::new_borrow(setup.rep());
    instance.execute(b, "CREATE TABLE t (i INTEGER)".into(), vec![]).await.unwrap().unwrap();
    instance.drop(setup).await.unwrap();

    let conn = instance.open("default".into()).await.unwrap().unwrap();
    let rep = conn.rep();
    instance.execute(Resource::new_borrow(rep), "BEGIN IMMEDIATE".into(), vec![]).await.unwrap().unwrap();
    instance
        .execute(Resource::new_borrow(rep), "INSERT INTO t VALUES (1)".into(), vec![])
        .await
        .unwrap()
        .unwrap();
    instance.drop(conn).await.unwrap();

    // Had the transaction leaked, this BEGIN would fail ("within a transaction")
    // or the row would be visible.
    let mut next = cap.instance(&["default".into()]);
    for _ in 0..8 {
        let c = next.open("default".into()).await.unwrap().unwrap();
        let b = Resource::new_borrow(c.rep());
        let rows = next.execute(b, "SELECT COUNT(*) FROM t".into(), vec![]).await.unwrap().unwrap();
        assert_eq!(rows.rows[0].values, [Value::Integer(0)]);
        next.drop(c).await.unwrap();
    }
}

#[test]
fn transaction_state_follows_begin_and_commit() {
    assert!(transaction_state("BEGIN IMMEDIATE", false));
    assert!(transaction_state("  begin", false));
    assert!(!transaction_state("COMMIT", true));
    assert!(!transaction_state("rollback;", true));
    assert!(transaction_state("INSERT INTO t VALUES (1)", true));
    assert!(!transaction_state("SELECT 1", false));
    // Comments before the keyword hide nothing.
    assert!(transaction_state("/* apply */ BEGIN", false));
    assert!(transaction_state("-- apply\n  begin immediate", false));
    assert!(!transaction_state("/* done */\nCOMMIT", true));
}

use wasmtime::component::Resource;

/// A request cancelled while its `BEGIN` waits for the write lock (its
/// deadline passed, its client went away) leaves a connection whose
/// transaction opens after the host stopped watching: that connection is
/// closed, never pooled, so no later request finds itself inside it.
#[tokio::test]
async fn a_request_cancelled_while_it_begins_a_transaction_never_leaks_it() {
    let dir = tempfile::tempdir().unwrap();
    let cap = capability(dir.path()).await;
    // Another process holds the write lock, so the guest's BEGIN IMMEDIATE waits.
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(dir.path().join("parking.db"));
    let mut other = <sqlx::SqliteConnection as sqlx::Connection>::connect_with(&options).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE").execute(&mut other).await.unwrap();

    let mut cancelled = cap.instance(&["default".into()]);
    let c = cancelled.open("default".into()).await.unwrap().unwrap();
    let begin = cancelled.execute(Resource::new_borrow(c.rep()), "BEGIN IMMEDIATE".into(), vec![]);
    assert!(tokio::time::timeout(Duration::from_millis(300), begin).await.is_err(), "BEGIN did not wait");
    drop(cancelled);
    // The lock comes free: the abandoned BEGIN completes on its connection.
    sqlx::query("COMMIT").execute(&mut other).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut next = cap.instance(&["default".into()]);
    for _ in 0..8 {
        let c = next.open("default".into()).await.unwrap().unwrap();
        let b = || Resource::new_borrow(c.rep());
        next.execute(b(), "BEGIN IMMEDIATE".into(), vec![]).await.unwrap().unwrap();
        next.execute(b(), "COMMIT".into(), vec![]).await.unwrap().unwrap();
        next.drop(c).await.unwrap();
    }
}
