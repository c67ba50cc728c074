//! The PostgreSQL capability against a real server (started by
//! `scripts/test.sh`, which sets `PARKING_TEST_DATABASE_URL`).

use wasmtime::component::Resource;

use super::*;
use crate::capabilities::bindings::spin::postgres::postgres::{
    DbValue, Error, HostConnection, ParameterValue,
};

fn server_url() -> String {
    std::env::var("PARKING_TEST_DATABASE_URL").expect(
        "PARKING_TEST_DATABASE_URL is not set: run the tests with scripts/test.sh, which starts PostgreSQL",
    )
}

fn allowed(entries: &[&str]) -> AllowedHosts {
    AllowedHosts::parse("test", &entries.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
}

fn instance_for(url: &str) -> PostgresInstance {
    let parsed = url::Url::parse(url).unwrap();
    let entry = format!("postgres://{}:{}", parsed.host_str().unwrap(), parsed.port().unwrap_or(5432));
    PostgresCapability::new(PostgresConfig::default()).instance(allowed(&[&entry]))
}

#[tokio::test]
async fn queries_bind_parameters_and_read_typed_rows() {
    let url = server_url();
    let mut pg = instance_for(&url);
    let conn = pg.open(url.clone()).await.unwrap().unwrap();
    let c = || Resource::new_borrow(conn.rep());
    let rows = pg
        .query(
            c(),
            "SELECT $1::bool, $2::int8, $3::float8, $4::text, $5::bytea, $6::int4 IS NULL, 42::int2, \
             DATE '2026-11-25', TIMESTAMP '2026-11-25 10:00:01'"
                .into(),
            vec![
                ParameterValue::Boolean(true),
                ParameterValue::Int64(-7),
                ParameterValue::Floating64(2.5),
                ParameterValue::Str("bay".into()),
                ParameterValue::Binary(vec![0, 255]),
                ParameterValue::DbNull,
            ],
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        rows.rows[0],
        [
            DbValue::Boolean(true),
            DbValue::Int64(-7),
            DbValue::Floating64(2.5),
            DbValue::Str("bay".into()),
            DbValue::Binary(vec![0, 255]),
            DbValue::Boolean(true),
            DbValue::Int16(42),
            DbValue::Date((2026, 11, 25)),
            DbValue::Datetime((2026, 11, 25, 10, 0, 1, 0)),
        ]
    );
    pg.drop(conn).await.unwrap();
}

#[tokio::test]
async fn a_null_parameter_takes_the_type_of_its_column() {
    let url = server_url();
    let mut pg = instance_for(&url);
    let conn = pg.open(url.clone()).await.unwrap().unwrap();
    let c = || Resource::new_borrow(conn.rep());
    let table = format!("nulls_{}", uuid::Uuid::new_v4().simple());
    pg.execute(c(), format!("CREATE TABLE {table} (n BIGINT, f DOUBLE PRECISION, t TEXT)"), vec![])
        .await
        .unwrap()
        .unwrap();
    let inserted = pg
        .execute(
            c(),
            format!("INSERT INTO {table} VALUES ($1, $2, $3)"),
            vec![ParameterValue::DbNull, ParameterValue::DbNull, ParameterValue::DbNull],
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(inserted, 1);
    pg.execute(c(), format!("DROP TABLE {table}"), vec![]).await.unwrap().unwrap();
    pg.drop(conn).await.unwrap();
}

#[tokio::test]
async fn addresses_outside_allowed_outbound_hosts_are_refused_before_connecting() {
    let mut pg = PostgresCapability::new(PostgresConfig::default())
        .instance(allowed(&["postgres://db.internal:5432"]));
    // Nothing listens on this port; a refusal must come from the allow-list, not the network.
    let err = pg.open("postgres://u:secret@127.0.0.1:1/parking".into()).await.unwrap().unwrap_err();
    let Error::Other(msg) = err else { panic!("expected a refusal, got {err:?}") };
    assert!(msg.contains("postgres://127.0.0.1:1"), "{msg}");
    assert!(msg.contains("allowed_outbound_hosts"), "{msg}");
    assert!(!msg.contains("secret"), "{msg}");
}

#[tokio::test]
async fn an_unreachable_server_is_connection_failed() {
    // Allowed, but nothing listens: the guest must see a retryable error.
    let mut pg = PostgresCapability::new(PostgresConfig {
        acquire_timeout: std::time::Duration::from_millis(500),
        ..Default::default()
    })
    .instance(allowed(&["postgres://127.0.0.1:*"]));
    let err = pg.open("postgres://u@127.0.0.1:1/parking".into()).await.unwrap().unwrap_err();
    assert!(matches!(err, Error::ConnectionFailed(_)), "{err:?}");
}

#[tokio::test]
async fn server_errors_carry_the_server_message() {
    let url = server_url();
    let mut pg = instance_for(&url);
    let conn = pg.open(url.clone()).await.unwrap().unwrap();
    let err = pg.query(conn, "SELEC 1".into(), vec![]).await.unwrap().unwrap_err();
    assert!(matches!(&err, Error::QueryFailed(m) if m.contains("syntax error")), "{err:?}");
    // The SQLSTATE, by which the components classify a failure.
    assert!(matches!(&err, Error::QueryFailed(m) if m.ends_with("(SQLSTATE 42601)")), "{err:?}");
}

#[tokio::test]
async fn sessions_carry_server_side_timeouts() {
    let url = server_url();
    let mut pg = instance_for(&url);
    let conn = pg.open(url.clone()).await.unwrap().unwrap();
    let c = || Resource::new_borrow(conn.rep());
    for (setting, expected) in [
        ("statement_timeout", "30s"),
        ("lock_timeout", "10s"),
        ("idle_in_transaction_session_timeout", "1min"),
    ] {
        let rows = pg.query(c(), format!("SHOW {setting}"), vec![]).await.unwrap().unwrap();
        assert_eq!(rows.rows[0], [DbValue::Str(expected.into())], "{setting}");
    }
    pg.drop(conn).await.unwrap();
}

#[tokio::test]
async fn a_transaction_left_open_by_a_trapped_guest_never_reaches_the_next_request() {
    let url = server_url();
    // One connection: had the trapped guest's gone back to the pool, the next
    // guest would get it, transaction and all.
    let parsed = url::Url::parse(&url).unwrap();
    let entry = format!("postgres://{}:{}", parsed.host_str().unwrap(), parsed.port().unwrap_or(5432));
    let cap = PostgresCapability::new(PostgresConfig { max_connections: 1, ..Default::default() });
    let table = format!("trapped_{}", uuid::Uuid::new_v4().simple());
    let mut setup = cap.instance(allowed(&[&entry]));
    let c = setup.open(url.clone()).await.unwrap().unwrap();
    let create = format!("CREATE TABLE {table} (i INT)");
    setup.execute(Resource::new_borrow(c.rep()), create, vec![]).await.unwrap().unwrap();
    setup.drop(c).await.unwrap();

    // A guest that traps mid-transaction never calls `drop`.
    let mut trapped = cap.instance(allowed(&[&entry]));
    let c = trapped.open(url.clone()).await.unwrap().unwrap();
    for statement in ["BEGIN".to_owned(), format!("INSERT INTO {table} VALUES (1)")] {
        trapped.execute(Resource::new_borrow(c.rep()), statement, vec![]).await.unwrap().unwrap();
    }
    drop(trapped);

    // The next guest's own transaction commits only its own row.
    let mut next = cap.instance(allowed(&[&entry]));
    let c = next.open(url.clone()).await.unwrap().unwrap();
    let b = || Resource::new_borrow(c.rep());
    for statement in ["BEGIN".to_owned(), format!("INSERT INTO {table} VALUES (2)"), "COMMIT".to_owned()] {
        next.execute(b(), statement, vec![]).await.unwrap().unwrap();
    }
    let rows = next.query(b(), format!("SELECT i FROM {table} ORDER BY i"), vec![]).await.unwrap().unwrap();
    assert_eq!(rows.rows, [[DbValue::Int32(2)]], "the trapped guest's write was committed");
    next.execute(b(), format!("DROP TABLE {table}"), vec![]).await.unwrap().unwrap();
    next.drop(c).await.unwrap();
}

/// Spin's PostgreSQL (tokio-postgres, statements prepared without declared
/// types) refuses a parameter list that does not match the placeholders the
/// statement uses; sqlx declares a type per argument, so the server would
/// accept an extra, unused one.
#[tokio::test]
async fn a_parameter_count_that_does_not_match_the_statement_is_refused() {
    let url = server_url();
    let mut pg = instance_for(&url);
    let conn = pg.open(url.clone()).await.unwrap().unwrap();
    let c = || Resource::new_borrow(conn.rep());
    let too_many = pg
        .query(c(), "SELECT $1::int8".into(), vec![ParameterValue::Int64(1), ParameterValue::Int64(2)])
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&too_many, Error::QueryFailed(m) if m.contains("expected 1 parameters but got 2")),
        "{too_many:?}"
    );
    let too_few = pg
        .execute(c(), "SELECT $1::int8, $2::int8".into(), vec![ParameterValue::Int64(1)])
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&too_few, Error::QueryFailed(m) if m.contains("expected 2 parameters but got 1")),
        "{too_few:?}"
    );
    // `$2` inside a string literal, a quoted name or a comment is not a placeholder.
    let rows = pg
        .query(c(), "SELECT $1::int8, '$2' AS \"$3\" -- $4\n".into(), vec![ParameterValue::Int64(5)])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rows.rows[0], [DbValue::Int64(5), DbValue::Str("$2".into())]);
    pg.drop(conn).await.unwrap();
}

/// Spin's PostgreSQL prepares without declared types, so the server types
/// each placeholder from the statement, and a value of another type is
/// refused (tokio-postgres checks it before sending): a string where
/// `$1::json` wants JSON, an INT8 where an INT4 is wanted. sqlx, declaring
/// TEXT and INT8, had the server cast both, so a statement that fails under
/// Spin passed every test here.
#[tokio::test]
async fn a_value_of_another_type_than_its_placeholder_is_refused() {
    let url = server_url();
    let mut pg = instance_for(&url);
    let conn = pg.open(url.clone()).await.unwrap().unwrap();
    let c = || Resource::new_borrow(conn.rep());
    let json =
        pg.query(c(), "SELECT $1::json ->> 'a'".into(), vec![ParameterValue::Str(r#"{"a": "b"}"#.into())]);
    let err = json.await.unwrap().unwrap_err();
    assert!(
        matches!(&err, Error::QueryFailed(m) if m.contains("cannot convert") && m.contains("`json`")),
        "{err:?}"
    );
    let int4 = pg.execute(c(), "SELECT $1::int4".into(), vec![ParameterValue::Int64(7)]);
    let err = int4.await.unwrap().unwrap_err();
    assert!(matches!(&err, Error::QueryFailed(m) if m.contains("i64") && m.contains("`int4`")), "{err:?}");

    // What Spin takes: the text cast explicitly, the placeholder's own type, or a NULL.
    let rows = pg
        .query(
            c(),
            "SELECT $1::text::json ->> 'a', $2::int4, $3::json IS NULL, $4".into(),
            vec![
                ParameterValue::Str(r#"{"a": "b"}"#.into()),
                ParameterValue::Int32(7),
                ParameterValue::DbNull,
                ParameterValue::Str("untyped".into()),
            ],
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        rows.rows[0],
        [DbValue::Str("b".into()), DbValue::Int32(7), DbValue::Boolean(true), DbValue::Str("untyped".into())]
    );
    pg.drop(conn).await.unwrap();
}
