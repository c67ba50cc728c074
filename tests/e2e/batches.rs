//! CloudEvents batches to sensor-event (what the bridge sends under load):
//! one transaction, each event applied as if alone and in order, one result
//! per event; on SQLite and PostgreSQL.

use parking_tests::db::Db;
use parking_tests::{
    Backend, Parkd, ParkdOptions, lot_spec, manifest_with_recorder, on_both_backends, reading,
};
use serde_json::{Value, json};

const BATCH: &str = "application/cloudevents-batch+json";

/// An uplink event in JSON event format.
fn uplink(id: &str, data: Value) -> Value {
    json!({
        "specversion": "1.0", "id": id, "source": "/parking/bridge",
        "type": "io.parking.sensor.uplink.v1", "format": "parking-json",
        "datacontenttype": "application/json", "data": data,
    })
}

async fn post_batch(parkd: &Parkd, events: &[Value]) -> (reqwest::StatusCode, Value) {
    let r = parkd
        .client
        .post(parkd.url("/api/v1/events"))
        .header("content-type", BATCH)
        .body(serde_json::to_vec(events).unwrap())
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn statuses(answer: &Value) -> Vec<u64> {
    answer["results"].as_array().unwrap().iter().map(|r| r["status"].as_u64().unwrap()).collect()
}

fn outcomes(answer: &Value) -> Vec<String> {
    let results = answer["results"].as_array().unwrap();
    results
        .iter()
        .map(|r| r["outcome"].as_str().or(r["error"].as_str()).unwrap_or_default().to_owned())
        .collect()
}

on_both_backends!(
    a_batch_is_applied_as_its_events_one_by_one_and_answers_each,
    a_single_event_and_a_batch_of_one_do_the_same
);

async fn a_batch_is_applied_as_its_events_one_by_one_and_answers_each(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let manifest = manifest_with_recorder(dir.path(), &["io.parking.slot.changed.v1"]).unwrap();
    let parkd = Parkd::start_with(ParkdOptions { manifest: Some(manifest), ..ParkdOptions::new(backend) })
        .await
        .unwrap();
    assert!(parkd.put_lot("north", &lot_spec("North", "N", 3, 0)).await.status().is_success());
    let batch = [
        uplink("e1", reading("N-C0", true, 1, "2026-11-25T10:00:00Z")),
        uplink("e2", reading("N-C1", true, 1, "2026-11-25T10:00:00Z")),
        uplink("e3", reading("N-C0", false, 2, "2026-11-25T10:05:00Z")),
        // Older than e3, later in the batch: stale, never overwrites it.
        uplink("e4", reading("N-C0", true, 3, "2026-11-25T10:01:00Z")),
        // e1 again, in the same batch.
        uplink("e1", reading("N-C0", true, 1, "2026-11-25T10:00:00Z")),
        uplink("e6", reading("STRANGER", true, 1, "2026-11-25T10:00:00Z")),
        // No source: not a CloudEvent.
        json!({ "specversion": "1.0", "id": "e7", "type": "io.parking.sensor.uplink.v1", "data": {} }),
        uplink("e8", json!({ "device": "N-C2", "occupied": "maybe" })),
    ];
    let (status, answer) = post_batch(&parkd, &batch).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{answer}");
    assert_eq!(statuses(&answer), [200, 200, 200, 202, 202, 400, 400, 400], "{answer}");
    let first = outcomes(&answer);
    assert_eq!(first[..5], ["changed", "changed", "changed", "stale", "duplicate-event"], "{answer}");
    assert!(first[5].contains("unknown device"), "{first:?}");
    assert!(first[6].contains("not a CloudEvent"), "{first:?}");
    assert!(first[7].contains("occupied"), "the reason names the field: {first:?}");
    // The derived events of all three changes, each once.
    let events = answer["events"].as_array().unwrap();
    let slot_changes = events.iter().filter(|e| e["type"] == "io.parking.slot.changed.v1").count();
    assert_eq!(slot_changes, 3, "{answer}");

    let check = |availability: Value| {
        let cars = &availability["classes"]["four_wheeler"];
        assert_eq!(
            (cars["free"].as_u64(), cars["occupied"].as_u64(), cars["unknown"].as_u64()),
            (Some(1), Some(1), Some(1)),
            "{availability}"
        );
    };
    check(parkd.availability("north").await.1);
    assert_eq!(parkd.recorded().await.len(), 3, "three slot changes recorded");

    // Redelivered whole: nothing applied twice, the bad ones refused again.
    let (status, answer) = post_batch(&parkd, &batch).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{answer}");
    assert_eq!(statuses(&answer), [202, 202, 202, 202, 202, 400, 400, 400], "{answer}");
    assert!(outcomes(&answer)[..5].iter().all(|o| o == "duplicate-event"), "{answer}");
    check(parkd.availability("north").await.1);
    assert_eq!(parkd.recorded().await.len(), 3, "nothing derived twice");

    // The kept counts are the bays' counts.
    let db = Db::open(&parkd).await.unwrap();
    let (kept, recounted) = db.kept_and_recounted().await;
    assert_eq!(kept, recounted);
}

/// The path a Knative trigger uses (one event) and a batch of that one event
/// leave the same bay and the same history.
async fn a_single_event_and_a_batch_of_one_do_the_same(backend: Backend) {
    let parkd = Parkd::start(backend).await.unwrap();
    assert!(parkd.put_lot("north", &lot_spec("North", "N", 2, 0)).await.status().is_success());
    let single = parkd.send_reading("s1", &reading("N-C0", true, 1, "2026-11-25T10:00:00Z")).await;
    assert_eq!(single.status(), reqwest::StatusCode::OK);
    let (status, answer) =
        post_batch(&parkd, &[uplink("b1", reading("N-C1", true, 1, "2026-11-25T10:00:00Z"))]).await;
    assert_eq!((status, statuses(&answer)), (reqwest::StatusCode::OK, vec![200]), "{answer}");
    let cars = &parkd.availability("north").await.1["classes"]["four_wheeler"];
    assert_eq!(cars["occupied"], 2, "{cars}");
    let db = Db::open(&parkd).await.unwrap();
    assert_eq!(db.count("SELECT COUNT(*) FROM readings WHERE outcome = 'changed'").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_refused_whole_when_too_large_or_malformed() {
    let parkd = Parkd::start(Backend::Sqlite).await.unwrap();
    let (status, answer) = post_batch(&parkd, &[]).await;
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "an empty batch: {answer}");
    let mixed = [
        uplink("a", reading("N-C0", true, 1, "2026-11-25T10:00:00Z")),
        json!({ "specversion": "1.0", "id": "b", "source": "/x", "type": "io.parking.other.v1" }),
    ];
    let (status, answer) = post_batch(&parkd, &mixed).await;
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("one type"), "{answer}");
    let many: Vec<Value> = (0..1001)
        .map(|i| uplink(&format!("m{i}"), reading("N-C0", true, 1, "2026-11-25T10:00:00Z")))
        .collect();
    let (status, answer) = post_batch(&parkd, &many).await;
    assert_eq!(status, reqwest::StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("1000"), "{answer}");
}

/// The reading path reaches a batch's own bays (and event keys) through
/// their indexes, however many bays the lot has. PostgreSQL plans a JSON
/// list as a hundred rows whatever its length, so with a lot of a few
/// thousand bays (and up to the 20,000 a lot may have) it would read every
/// bay for every batch: twice, in the load and in the write. Planned here
/// as the components run them: the kit's statements, custom and generic
/// plans, after the table's statistics are taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_batch_reaches_only_its_own_bays_in_a_lot_of_thousands() {
    use parking_kit::sql::postgres::STATEMENTS;
    let parkd = Parkd::start(Backend::Postgres).await.unwrap();
    assert!(parkd.put_lot("big", &lot_spec("Big", "B", 3000, 0)).await.status().is_success());
    let Db::Postgres(pool) = Db::open(&parkd).await.unwrap() else { unreachable!("a PostgreSQL parkd") };
    // The event keys of the last days' readings, as the retention keeps them.
    sqlx::query("INSERT INTO processed_events (event_key, processed_at_ms) SELECT 'old-' || i, i FROM generate_series(1, 20000) AS i")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("ANALYZE").execute(&pool).await.unwrap();

    let devices: Vec<String> = (0..10).map(|i| format!("B-C{}", i * 250)).collect();
    let events: Vec<Value> =
        devices.iter().enumerate().map(|(i, d)| json!({ "key": format!("e{i}"), "device": d })).collect();
    let bays: Vec<Value> = (0..10)
        .map(|i| json!({ "lot_id": "big", "bay_id": format!("C{}", i * 250), "sensor": devices[i], "status": "occupied" }))
        .collect();
    let rows = json!([{ "lot_id": "big", "bay_id": "C0" }]).to_string();
    let keys = json!(["e0", "e1"]).to_string();
    let load = STATEMENTS.load_batch.expect("PostgreSQL loads a batch in one statement");
    let write = STATEMENTS.write_batch.expect("PostgreSQL writes a batch in one statement");
    let mut conn = pool.acquire().await.unwrap();
    for mode in ["force_custom_plan", "force_generic_plan"] {
        sqlx::query(sqlx::AssertSqlSafe(format!("SET plan_cache_mode = {mode}")))
            .execute(&mut *conn)
            .await
            .unwrap();
        let explain = |statement: &str| sqlx::AssertSqlSafe(format!("EXPLAIN {statement}"));
        let load_plan: Vec<String> = sqlx::query_scalar(explain(load))
            .bind(json!(devices).to_string())
            .bind(json!(events).to_string())
            .bind(0_i64)
            .fetch_all(&mut *conn)
            .await
            .unwrap();
        let write_plan: Vec<String> = sqlx::query_scalar(explain(write))
            .bind(&rows)
            .bind("[]")
            .bind("[]")
            .bind(json!(bays).to_string())
            .bind(json!(["big"]).to_string())
            .bind(&keys)
            .fetch_all(&mut *conn)
            .await
            .unwrap();
        for (statement, plan) in [("load", load_plan), ("write", write_plan)] {
            let plan = plan.join("\n");
            for table in ["bays", "processed_events"] {
                let whole = format!("Seq Scan on {table} ");
                assert!(
                    !plan.contains(&whole),
                    "{mode}: the batch's {statement} reads all of {table}:\n{plan}"
                );
            }
        }
    }
}
