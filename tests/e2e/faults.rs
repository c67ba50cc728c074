//! Faults inside a guest never leave half-applied writes or stuck resources:
//! the `fault-injector` fixture writes inside a transaction and then traps
//! or spins; nothing it wrote is committed, and the next request finds the
//! database, its connections and its locks clean. On SQLite and PostgreSQL.

use std::time::Duration;

use parking_tests::{Backend, Parkd, ParkdOptions, manifest_with_fault_injector, on_both_backends};
use reqwest::StatusCode;

/// How many times each fault is injected in one test.
const ROUNDS: usize = 3;

async fn start(backend: Backend, limits: parkd::server::Limits) -> (Parkd, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let manifest = manifest_with_fault_injector(dir.path()).unwrap();
    let parkd =
        Parkd::start_with(ParkdOptions { manifest: Some(manifest), limits, ..ParkdOptions::new(backend) })
            .await
            .unwrap();
    (parkd, dir)
}

async fn act(parkd: &Parkd, action: &str, key: &str) -> (StatusCode, String) {
    let r = parkd
        .client
        .post(parkd.url(&format!("/test/fault/{action}/{key}")))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{action} {key}: no answer within 60 s: {e}"));
    (r.status(), r.text().await.unwrap())
}

async fn committed(parkd: &Parkd, key: &str) -> i64 {
    let r = parkd
        .client
        .get(parkd.url(&format!("/test/fault/count/{key}")))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap_or_else(|e| panic!("count {key}: no answer within 60 s: {e}"));
    assert_eq!(r.status(), StatusCode::OK, "count {key}");
    r.json::<serde_json::Value>().await.unwrap()["count"].as_i64().unwrap()
}

/// The request after a fault commits its own write, and only its own.
async fn next_request_is_clean(parkd: &Parkd, faulted: &str, next: &str) {
    let (status, body) = act(parkd, "commit", next).await;
    assert_eq!(status, StatusCode::OK, "the request after the fault on {faulted:?} failed: {body}");
    assert_eq!(committed(parkd, faulted).await, 0, "the write of {faulted:?} was committed");
    assert_eq!(committed(parkd, next).await, 1, "the write of {next:?} is missing");
    // No lock or row of the faulted transaction is left: its key can be written.
    let (status, body) = act(parkd, "commit", faulted).await;
    assert_eq!(status, StatusCode::OK, "{faulted:?} cannot be written after the fault: {body}");
}

async fn a_trap_mid_transaction_commits_nothing_and_the_next_request_is_clean(backend: Backend) {
    let (parkd, _dir) = start(backend, Default::default()).await;
    for round in 0..ROUNDS {
        let (trapped, next) = (format!("trapped-{round}"), format!("after-trap-{round}"));
        let (status, body) = act(&parkd, "trap", &trapped).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "a trap is a 500: {body}");
        next_request_is_clean(&parkd, &trapped, &next).await;
    }
}

async fn a_spinning_guest_is_stopped_at_its_deadline_and_the_host_keeps_serving(backend: Backend) {
    let limits = parkd::server::Limits { request_deadline: Duration::from_secs(2), ..Default::default() };
    let (parkd, _dir) = start(backend, limits).await;
    for round in 0..ROUNDS {
        let (spun, next) = (format!("spun-{round}"), format!("after-spin-{round}"));
        let (status, body) = act(&parkd, "spin", &spun).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "a guest past its deadline is a 503: {body}");
        assert!(body.contains("did not answer within"), "{body}");
        next_request_is_clean(&parkd, &spun, &next).await;
    }
}

on_both_backends!(
    a_trap_mid_transaction_commits_nothing_and_the_next_request_is_clean,
    a_spinning_guest_is_stopped_at_its_deadline_and_the_host_keeps_serving,
);

/// The connection pool does not ping a connection it handed out moments ago
/// (a round trip saved per request under load), but one idle for over a
/// second is pinged: after PostgreSQL restarted, the first reading and the
/// first read each succeed at once, on fresh connections, instead of
/// failing on a connection the restart broke.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_database_restart_the_first_requests_find_live_connections() {
    let database = parking_tests::postgres::Postgres::start().unwrap();
    let parkd = Parkd::start_with(ParkdOptions {
        database: Some(database.url()),
        ..ParkdOptions::new(Backend::Postgres)
    })
    .await
    .unwrap();
    assert!(parkd.put_lot("north", &parking_tests::lot_spec("North", "N", 4, 0)).await.status().is_success());
    let now = || chrono::Utc::now().to_rfc3339();
    for i in 0..8 {
        let r = parkd
            .send_reading(&format!("before-{i}"), &parking_tests::reading("N-C0", i % 2 == 0, i + 1, &now()))
            .await;
        assert!(r.status().is_success(), "{:?}", r.text().await);
    }
    database.stop().unwrap();
    database.start_again().unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = parkd.send_reading("after", &parking_tests::reading("N-C1", true, 1, &now())).await;
    let status = r.status();
    assert!(status.is_success(), "the first reading after the restart: {status} {:?}", r.text().await);
    let (status, availability) = parkd.availability("north").await;
    assert_eq!(status, StatusCode::OK, "the first read after the restart: {availability}");
    // N-C0 was last read free, N-C1 occupied after the restart.
    let cars = &availability["classes"]["four_wheeler"];
    assert_eq!((cars["free"].as_u64(), cars["occupied"].as_u64()), (Some(1), Some(1)), "{availability}");
}
