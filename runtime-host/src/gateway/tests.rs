//! The gateway's own parts: token verdicts against a real (migrated) SQLite
//! database, and how a request presents its token and resume point. The
//! streams themselves are tested end to end (tests/e2e/terminals.rs).

use super::tokens::{Tokens, Verdict};
use super::*;

async fn database_with_terminal(dir: &std::path::Path, terminal: &str, token: &str) -> Database {
    let database = Database::parse("sqlite", dir).unwrap();
    database.migrate().await.unwrap();
    let Database::Sqlite { path } = &database else { unreachable!() };
    let pool = sqlx::SqlitePool::connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(path))
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO terminals (terminal_id, lot_id, token_sha256, created_at_ms, updated_at_ms) \
         VALUES (?1, 'north', ?2, 0, 0)",
    )
    .bind(terminal)
    .bind(parking_domain::token_digest(token))
    .execute(&pool)
    .await
    .unwrap();
    database
}

#[tokio::test]
async fn tokens_allow_their_terminal_forbid_others_and_refuse_strangers() {
    let dir = tempfile::tempdir().unwrap();
    let database = database_with_terminal(dir.path(), "T1", "t1-secret-0123456789").await;
    let tokens = Tokens::open(&database).await.unwrap();
    assert_eq!(tokens.check("T1", Some("t1-secret-0123456789")).await.unwrap(), Verdict::Allowed);
    assert_eq!(tokens.check("T2", Some("t1-secret-0123456789")).await.unwrap(), Verdict::Forbidden);
    assert!(matches!(
        tokens.check("T1", Some("guess-0123456789")).await.unwrap(),
        Verdict::Unauthenticated(_)
    ));
    assert!(matches!(tokens.check("T1", None).await.unwrap(), Verdict::Unauthenticated(_)));
    assert!(matches!(tokens.check("T1", Some("")).await.unwrap(), Verdict::Unauthenticated(_)));
}

#[test]
fn tokens_come_from_the_bearer_header_or_the_query() {
    let req = |uri: &str, auth: Option<&str>| {
        let mut b = hyper::Request::get(uri);
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        b.body(()).unwrap()
    };
    assert_eq!(presented_token(&req("/terminals/T/stream", Some("Bearer abc"))).as_deref(), Some("abc"));
    assert_eq!(presented_token(&req("/terminals/T/stream?token=a%2Bb", None)).as_deref(), Some("a+b"));
    assert_eq!(presented_token(&req("/terminals/T/stream", Some("Basic abc"))), None);
    let with_id = hyper::Request::get("/t").header("last-event-id", " 42 ").body(()).unwrap();
    assert_eq!(last_event_id(&with_id), Some(42));
    assert_eq!(last_event_id(&req("/t?lastEventId=7", None)), Some(7));
    assert_eq!(last_event_id(&req("/t?lastEventId=x", None)), None);
}

#[tokio::test]
async fn the_kiosk_page_is_served_with_the_keep_alive_filled_in() {
    let page = kiosk_page(Duration::from_millis(1500));
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let body = page.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(text.contains("const keepAliveMs = 1500;"), "the placeholder is replaced");
    assert!(!text.contains("{{"), "no placeholder left");
}
