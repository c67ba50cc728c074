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
