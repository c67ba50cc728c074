//! The gateway's own parts: token verdicts against a real (migrated) SQLite
//! database, and how a request presents its token and resume point. The
//! streams themselves are tested end to end (tests/e2e/terminals.rs).

use super::metrics::GatewayMetrics;
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

fn frame(seq: u64) -> Vec<u8> {
    let at = chrono::Utc::now().to_rfc3339();
    format!(r#"{{"terminal":"T","seq":{seq},"renderedAt":"{at}","text":"L1  CARS {seq}"}}"#).into_bytes()
}

async fn next_seq(client: &mut Client) -> u64 {
    match tokio::time::timeout(Duration::from_secs(5), client.next(Duration::from_secs(60))).await {
        Ok(Some(Next::Frame(f))) => f.seq,
        Ok(Some(Next::Ping(_))) => panic!("a ping, not a frame"),
        Ok(None) => panic!("the stream ended"),
        Err(_) => panic!("no frame within 5 s"),
    }
}

#[tokio::test]
async fn a_slow_client_gets_the_newest_frame_not_a_backlog_and_skips_are_counted() {
    let frames = Frames::new(Duration::ZERO);
    let metrics = GatewayMetrics::default();
    let now = chrono::Utc::now().timestamp_millis();
    frames.accept("T", &frame(1), now).unwrap();
    let mut client = Client::watching(frames.watch("T"), metrics.clone(), None);
    assert_eq!(next_seq(&mut client).await, 1, "the current frame at once");
    // The client reads nothing while 50 frames come.
    for seq in 2..=51 {
        frames.accept("T", &frame(seq), now).unwrap();
    }
    assert_eq!(next_seq(&mut client).await, 51, "straight to the newest");
    assert_eq!(metrics.frames_skipped.get(), 49);
    assert_eq!(metrics.frames_sent.get(), 2);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), client.next(Duration::from_secs(60))).await.is_err(),
        "nothing behind it"
    );
    assert_eq!(metrics.connections.get(), 1);
    drop(client);
    assert_eq!(metrics.connections.get(), 0);
}

#[tokio::test]
async fn a_resuming_client_gets_the_newest_frame_unless_it_has_it() {
    let frames = Frames::new(Duration::ZERO);
    let metrics = GatewayMetrics::default();
    let now = chrono::Utc::now().timestamp_millis();
    for seq in 1..=5 {
        frames.accept("T", &frame(seq), now).unwrap();
    }
    let mut behind = Client::watching(frames.watch("T"), metrics.clone(), Some(2));
    assert_eq!(next_seq(&mut behind).await, 5);
    let mut current = Client::watching(frames.watch("T"), metrics.clone(), Some(5));
    let waiting =
        tokio::time::timeout(Duration::from_millis(200), current.next(Duration::from_secs(60))).await;
    assert!(waiting.is_err(), "it has frame 5 already");
    frames.accept("T", &frame(6), now).unwrap();
    assert_eq!(next_seq(&mut current).await, 6, "then live");
    assert_eq!(metrics.reconnects.get(), 2);
}

#[tokio::test]
async fn token_checks_of_one_terminal_at_once_make_one_lookup_and_a_change_forgets_them() {
    let dir = tempfile::tempdir().unwrap();
    let database = database_with_terminal(dir.path(), "T1", "t1-secret-0123456789").await;
    let tokens = Arc::new(Tokens::open(&database).await.unwrap());
    let checks = (0..500).map(|_| {
        let tokens = tokens.clone();
        tokio::spawn(async move { tokens.check("T1", Some("t1-secret-0123456789")).await.unwrap() })
    });
    for verdict in futures::future::join_all(checks).await {
        assert_eq!(verdict.unwrap(), Verdict::Allowed);
    }
    assert_eq!(tokens.lookups(), 1, "500 checks at once, one query");
    tokens.check("T1", Some("t1-secret-0123456789")).await.unwrap();
    assert_eq!(tokens.lookups(), 1, "then cached");
    tokens.forget_terminal("T1");
    tokens.check("T1", Some("t1-secret-0123456789")).await.unwrap();
    assert_eq!(tokens.lookups(), 2, "its provisioning changed: looked up again");
}
