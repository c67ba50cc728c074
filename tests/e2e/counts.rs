//! The availability counts are kept per (lot, zone, class) in the same
//! transaction as every change of a bay; these tests recount the bays after
//! random streams and re-provisioning and find the same numbers, on both
//! databases.

use futures::StreamExt;
use parking_tests::db::Db;
use parking_tests::{Backend, Parkd, on_both_backends, reading};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};

on_both_backends!(kept_counts_equal_a_recount_after_random_streams);

/// A lot of `bays` bays over zones L1, L2 and none, both classes; sensor of bay i is `{prefix}-{i}`,
/// or `{prefix}-{i}-b` when `moved` (a new sensor: the bay starts unknown again).
fn random_lot(rng: &mut StdRng, prefix: &str, bays: usize, moved: bool) -> Value {
    let kept: Vec<usize> = (0..bays).filter(|_| rng.random_bool(0.9)).collect();
    let bays: Vec<Value> = kept
        .into_iter()
        .map(|i| {
            let zone = match rng.random_range(0..3) {
                0 => json!("L1"),
                1 => json!("L2"),
                _ => Value::Null,
            };
            let class = if rng.random_bool(0.3) { "two_wheeler" } else { "four_wheeler" };
            let sensor = if moved && rng.random_bool(0.2) {
                format!("{prefix}-{i}-b")
            } else {
                format!("{prefix}-{i}")
            };
            json!({ "id": format!("B{i}"), "zone": zone, "class": class, "sensor": sensor })
        })
        .collect();
    json!({ "name": prefix, "bays": bays })
}

/// Readings in a random order, with repeats under the same and other event ids.
fn random_readings(
    rng: &mut StdRng,
    prefix: &str,
    bays: usize,
    n: usize,
    round: usize,
) -> Vec<(String, Value)> {
    (0..n)
        .map(|k| {
            let bay = rng.random_range(0..bays);
            let seq = rng.random_range(1..6u32) + 10 * round as u32;
            let minute = rng.random_range(0..50);
            let device =
                if rng.random_bool(0.1) { format!("{prefix}-{bay}-b") } else { format!("{prefix}-{bay}") };
            let id =
                if rng.random_bool(0.1) { format!("{prefix}-dup") } else { format!("{prefix}-{round}-{k}") };
            let at = format!("2026-11-25T1{round}:{minute:02}:00Z");
            (id, reading(&device, rng.random_bool(0.5), seq, &at))
        })
        .collect()
}

async fn assert_counts_agree(parkd: &Parkd, db: &Db, when: &str) {
    let (kept, recounted) = db.kept_and_recounted().await;
    assert!(!recounted.is_empty(), "{when}: the lots have bays");
    assert_eq!(kept, recounted, "{when}: kept counts differ from a recount of the bays");
    // And the API answers from them.
    for lot in ["east", "west"] {
        let (status, availability) = parkd.availability(lot).await;
        assert!(status.is_success(), "{when}: {lot}: {status}");
        let total: u64 = recounted
            .iter()
            .filter(|line| line.starts_with(&format!("{lot}|")))
            .map(|line| line.split('|').nth(3).unwrap().parse::<u64>().unwrap())
            .sum();
        let api_total: u64 =
            availability["classes"].as_object().unwrap().values().map(|c| c["total"].as_u64().unwrap()).sum();
        assert_eq!(api_total, total, "{when}: {lot}: {availability}");
    }
}

async fn kept_counts_equal_a_recount_after_random_streams(backend: Backend) {
    let parkd = Parkd::start(backend).await.unwrap();
    let db = Db::open(&parkd).await.unwrap();
    let mut rng = StdRng::seed_from_u64(20261204);
    let bays = 40;
    for round in 0..3 {
        for lot in ["east", "west"] {
            let spec = random_lot(&mut rng, lot, bays, round > 0);
            let r = parkd.put_lot(lot, &spec).await;
            assert!(r.status().is_success(), "PUT {lot}: {}", r.text().await.unwrap());
        }
        assert_counts_agree(&parkd, &db, &format!("round {round}, after provisioning")).await;
        let mut readings = random_readings(&mut rng, "east", bays, 150, round);
        readings.extend(random_readings(&mut rng, "west", bays, 150, round));
        // Four at a time: concurrent transactions on the same groups.
        futures::stream::iter(readings)
            .for_each_concurrent(4, |(id, reading)| {
                let parkd = &parkd;
                async move {
                    let r = parkd.send_reading(&id, &reading).await;
                    // Unknown devices (bays left out of the lot) are refused; nothing else is.
                    assert!(r.status().is_success() || r.status() == 400, "{}", r.status());
                }
            })
            .await;
        assert_counts_agree(&parkd, &db, &format!("round {round}, after readings")).await;
    }
    // A lot deleted leaves no counts behind.
    let r = parkd.client.delete(parkd.url("/api/v1/lots/west")).send().await.unwrap();
    assert!(r.status().is_success());
    let (kept, recounted) = db.kept_and_recounted().await;
    assert_eq!(kept, recounted, "after deleting a lot");
    assert!(kept.iter().all(|line| line.starts_with("east|")), "{kept:?}");
}
