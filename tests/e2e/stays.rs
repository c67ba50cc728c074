//! Time limits and overstays, end to end: limits provisioned with the lot,
//! stays judged on the readings' observation times, overstays raised by the
//! sweep tick (`dev.knative.sources.ping` through the broker) and closed when
//! the bay frees; on SQLite and PostgreSQL.

use chrono::{DateTime, Duration, DurationRound, Utc};
use parking_tests::db::Db;
use parking_tests::{Backend, Parkd, ParkdOptions, manifest_with_recorder, on_both_backends, reading};
use reqwest::StatusCode;
use serde_json::{Value, json};

on_both_backends!(
    an_overstay_is_raised_once_and_closed_when_the_bay_frees,
    hours_count_only_restricted_time_and_grace_delays_the_overstay,
    an_unknown_bay_suspends_its_stay,
    a_replayed_stream_gives_the_same_overstays_as_live_delivery,
    a_late_older_reading_does_not_start_a_stay_again,
    overstays_need_the_admin_token,
    time_limits_are_validated,
    stay_statistics_are_rolled_up_per_hour_and_shown_in_history_and_csv,
);

const OVERSTAY: &str = "io.parking.bay.overstay.v1";
const BATCH: &str = "application/cloudevents-batch+json";

// ------------------------------------------------------------ helpers

async fn start(backend: Backend, variables: &[(&str, &str)], dir: &std::path::Path) -> Parkd {
    let mut options = ParkdOptions::new(backend);
    options.variables = variables.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    options.manifest = Some(manifest_with_recorder(dir, &[OVERSTAY, "io.parking.sensor.alert.v1"]).unwrap());
    Parkd::start_with(options).await.unwrap()
}

/// Now, to the second (observation times are stored to the millisecond).
fn now() -> DateTime<Utc> {
    Utc::now().duration_trunc(Duration::seconds(1)).unwrap()
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

async fn put(parkd: &Parkd, lot: &str, body: &Value) {
    let r = parkd.put_lot(lot, body).await;
    let status = r.status();
    assert!(status.is_success(), "PUT {lot}: {status} {}", r.text().await.unwrap());
}

async fn send(parkd: &Parkd, id: &str, device: &str, occupied: bool, seq: u32, at: DateTime<Utc>) {
    let r = parkd.send_reading(id, &reading(device, occupied, seq, &ts(at))).await;
    let status = r.status();
    assert!(status.is_success(), "reading {id}: {status} {}", r.text().await.unwrap());
}

/// A cron tick through the broker; answers the events the sweep derived.
async fn sweep(parkd: &Parkd, tick: &str) -> Vec<Value> {
    parkd.sweep_tick(tick).await.1
}

fn overstays_in(events: &[Value]) -> Vec<String> {
    let mut bays: Vec<String> = events
        .iter()
        .filter(|e| e["type"] == OVERSTAY)
        .map(|e| e["data"]["bay"].as_str().unwrap().to_owned())
        .collect();
    bays.sort();
    bays
}

async fn overstays(parkd: &Parkd, lot: &str, token: Option<&str>) -> (StatusCode, Value) {
    let mut req = parkd.client.get(parkd.url(&format!("/api/v1/lots/{lot}/overstays")));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The open `bay_overstay` alerts' subjects, sorted.
async fn open_overstay_alerts(parkd: &Parkd) -> Vec<String> {
    let alerts: Value =
        parkd.client.get(parkd.url("/api/v1/alerts")).send().await.unwrap().json().await.unwrap();
    let list = alerts.as_array().cloned().or_else(|| alerts["alerts"].as_array().cloned()).unwrap();
    let mut subjects: Vec<String> = list
        .iter()
        .filter(|a| a["kind"] == "bay_overstay")
        .map(|a| a["subject"].as_str().unwrap().to_owned())
        .collect();
    subjects.sort();
    subjects
}

fn bay(id: &str, zone: Option<&str>, sensor: &str) -> Value {
    json!({ "id": id, "zone": zone, "class": "four_wheeler", "sensor": sensor })
}

/// `overBySeconds` of a bay in an overstays answer.
fn over_by(list: &Value, bay: &str) -> i64 {
    let row = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["bay"] == bay)
        .unwrap_or_else(|| panic!("{bay} in {list}"));
    row["overBySeconds"].as_i64().unwrap()
}

fn assert_near(actual: i64, expected: i64, what: &str) {
    // The test's clock moves while it runs: allow a minute.
    assert!((expected..expected + 60).contains(&actual), "{what}: {actual}, expected {expected} (+60)");
}

// ------------------------------------------------------------ scenarios

/// A 2-hour zone with 5 minutes' grace, a 15-minute bay in it, a bay without
/// a zone (no limit): the sweep raises each overstay once (event, alert,
/// listed), a repeated tick or a redelivered reading raises nothing more,
/// and the bay freeing closes its alert. A new limit applies to stays
/// already running.
async fn an_overstay_is_raised_once_and_closed_when_the_bay_frees(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let parkd = start(backend, &[], dir.path()).await;
    let spec = |c2_limit: Option<&str>| {
        let mut c2 = bay("C2", Some("L1"), "S-C2");
        if let Some(limit) = c2_limit {
            c2["maxStay"] = json!(limit);
        }
        json!({
            "name": "Main street",
            "timeZone": "UTC",
            "zones": { "L1": { "maxStay": "PT2H", "graceSeconds": 300 } },
            "bays": [
                bay("C0", Some("L1"), "S-C0"),
                { "id": "C1", "zone": "L1", "class": "four_wheeler", "sensor": "S-C1", "maxStay": "PT15M" },
                c2,
                bay("X0", None, "S-X0"),
            ],
        })
    };
    put(&parkd, "main", &spec(None)).await;
    let lot: Value =
        parkd.client.get(parkd.url("/api/v1/lots/main")).send().await.unwrap().json().await.unwrap();
    assert_eq!(lot["timeZone"], "UTC", "{lot}");
    assert_eq!(lot["zones"]["L1"], json!({ "maxStay": "PT2H", "graceSeconds": 300 }), "{lot}");
    assert_eq!(lot["bays"][1]["maxStay"], "PT15M", "{lot}");
    assert!(lot["bays"][0].get("maxStay").is_none(), "the zone's limit is not the bay's own: {lot}");

    let t = now();
    send(&parkd, "r-c0", "S-C0", true, 1, t - Duration::minutes(135)).await; // due 5 min ago, 15 min over
    send(&parkd, "r-c1", "S-C1", true, 1, t - Duration::minutes(30)).await; // the bay's 15 min win: 15 over
    send(&parkd, "r-c2", "S-C2", true, 1, t - Duration::minutes(60)).await; // within 2 h
    send(&parkd, "r-x0", "S-X0", true, 1, t - Duration::hours(30)).await; // no limit

    let events = sweep(&parkd, "tick-1").await;
    assert_eq!(overstays_in(&events), ["C0", "C1"], "{events:?}");
    let c0 = events.iter().find(|e| e["type"] == OVERSTAY && e["data"]["bay"] == "C0").unwrap();
    assert_eq!(c0["id"], format!("overstay/main/C0/{}", (t - Duration::minutes(135)).timestamp_millis()));
    assert_eq!(c0["data"]["maxStay"], "PT2H");
    assert_eq!(c0["data"]["zone"], "L1");
    assert_eq!(
        c0["data"]["since"].as_str().map(|s| s.parse::<DateTime<Utc>>().unwrap()),
        Some(t - Duration::minutes(135))
    );
    assert_eq!(
        c0["data"]["dueAt"].as_str().map(|s| s.parse::<DateTime<Utc>>().unwrap()),
        Some(t - Duration::minutes(10))
    );
    assert_eq!(open_overstay_alerts(&parkd).await, ["main/C0", "main/C1"]);

    let (status, list) = overstays(&parkd, "main", None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    assert_eq!(list[0]["bay"], "C0");
    assert_eq!(list[0]["zone"], "L1");
    assert_eq!(list[0]["maxStay"], "PT2H");
    assert_eq!(list[1]["maxStay"], "PT15M");
    assert_near(over_by(&list, "C0"), 15 * 60, "C0 over by");
    assert_near(over_by(&list, "C1"), 15 * 60, "C1 over by");

    // Again: a second tick, the same tick redelivered, a redelivered reading.
    assert!(overstays_in(&sweep(&parkd, "tick-2").await).is_empty());
    assert!(overstays_in(&sweep(&parkd, "tick-1").await).is_empty());
    send(&parkd, "r-c0", "S-C0", true, 1, t - Duration::minutes(135)).await;
    send(&parkd, "r-c0-again", "S-C0", true, 2, t - Duration::minutes(134)).await;
    assert!(overstays_in(&sweep(&parkd, "tick-3").await).is_empty());

    // C0 frees: its alert closes, it leaves the list; C1 stays.
    send(&parkd, "r-c0-free", "S-C0", false, 3, t - Duration::minutes(1)).await;
    assert_eq!(open_overstay_alerts(&parkd).await, ["main/C1"]);
    let (_, list) = overstays(&parkd, "main", None).await;
    assert_eq!(list.as_array().unwrap().iter().map(|r| r["bay"].clone()).collect::<Vec<_>>(), ["C1"]);
    // A new stay in C0 starts from zero.
    send(&parkd, "r-c0-back", "S-C0", true, 4, t).await;
    assert!(overstays_in(&sweep(&parkd, "tick-4").await).is_empty());

    // A shorter limit for C2 applies to its running stay (60 min > 30 min + grace).
    put(&parkd, "main", &spec(Some("PT30M"))).await;
    assert_eq!(overstays_in(&sweep(&parkd, "tick-5").await), ["C2"]);

    // One overstay event per stay in all, as delivered to a subscriber.
    let recorded = parkd.recorded().await;
    let mut subjects: Vec<&str> =
        recorded.iter().filter(|e| e["type"] == OVERSTAY).map(|e| e["subject"].as_str().unwrap()).collect();
    subjects.sort();
    assert_eq!(subjects, ["main/C0", "main/C1", "main/C2"], "{recorded:?}");
    // The alerts went out as alert events too, opened and closed.
    let alert_events: Vec<String> = recorded
        .iter()
        // Bays' alerts (the lot's fullness alerts have the subject `main/four_wheeler`).
        .filter(|e| {
            e["type"] == "io.parking.sensor.alert.v1" && e["subject"].as_str().unwrap().starts_with("main/C")
        })
        .map(|e| {
            let state = e["id"].as_str().unwrap().rsplit('/').next().unwrap();
            format!("{} {state}", e["subject"].as_str().unwrap())
        })
        .collect();
    assert!(alert_events.contains(&"main/C0 closed".to_owned()), "{alert_events:?}");
    assert_eq!(alert_events.iter().filter(|s| s.ends_with(" open")).count(), 3, "{alert_events:?}");
}

/// A zone limited 08:00-18:00-style to a window that opened an hour ago: a
/// stay that began three hours ago has about one hour of restricted time.
/// And a grace period delays the overstay by its length of restricted time.
async fn hours_count_only_restricted_time_and_grace_delays_the_overstay(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let parkd = start(backend, &[], dir.path()).await;
    let t = now();
    let opened = (t - Duration::hours(1)).duration_trunc(Duration::minutes(1)).unwrap();
    let closes = opened + Duration::hours(4);
    let hhmm = |at: DateTime<Utc>| at.format("%H:%M").to_string();
    let every_day = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    put(
        &parkd,
        "old-town",
        &json!({
            "name": "Old town",
            "timeZone": "UTC",
            "zones": {
                "H": { "maxStay": "PT90M", "hours": [{ "days": every_day, "from": hhmm(opened), "to": hhmm(closes) }] },
                "G": { "maxStay": "PT1H", "graceSeconds": 1800 },
                "N": { "maxStay": "PT1H" },
            },
            "bays": [
                bay("H0", Some("H"), "S-H0"),
                { "id": "H1", "zone": "H", "class": "four_wheeler", "sensor": "S-H1", "maxStay": "PT30M" },
                bay("G0", Some("G"), "S-G0"),
                bay("N0", Some("N"), "S-N0"),
            ],
        }),
    )
    .await;
    for device in ["S-H0", "S-H1"] {
        send(&parkd, &format!("r-{device}"), device, true, 1, t - Duration::hours(3)).await;
    }
    // 75 minutes: past an hour, within an hour and a half.
    send(&parkd, "r-g0", "S-G0", true, 1, t - Duration::minutes(75)).await;
    send(&parkd, "r-n0", "S-N0", true, 1, t - Duration::minutes(75)).await;

    // H0: 3 h parked but only about 1 h restricted, under 90 min; H1: over its own 30 min.
    // G0: 75 min, within 1 h + 30 min grace; N0: the same stay without grace is over.
    let events = sweep(&parkd, "tick-1").await;
    assert_eq!(overstays_in(&events), ["H1", "N0"], "{events:?}");
    let (_, list) = overstays(&parkd, "old-town", None).await;
    let restricted = (t - opened).num_seconds();
    assert_near(over_by(&list, "H1"), restricted - 30 * 60, "H1 over by (restricted time only)");
    assert_near(over_by(&list, "N0"), 15 * 60, "N0 over by");
    let h1 = events.iter().find(|e| e["type"] == OVERSTAY && e["data"]["bay"] == "H1").unwrap();
    let due = h1["data"]["dueAt"].as_str().unwrap().parse::<DateTime<Utc>>().unwrap();
    assert_eq!(due, opened + Duration::minutes(30), "due 30 restricted minutes after the window opened");
}

/// A bay going unknown suspends its stay: the time it is unknown is not
/// counted, and the stay goes on (same start) when it comes back occupied.
async fn an_unknown_bay_suspends_its_stay(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let parkd = start(backend, &[("offline_after_seconds", "3")], dir.path()).await;
    put(
        &parkd,
        "lane",
        &json!({
            "name": "Lane",
            "zones": { "Z": { "maxStay": "PT1H" } },
            "bays": [bay("U0", Some("Z"), "S-U0"), bay("U1", Some("Z"), "S-U1")],
        }),
    )
    .await;
    let t = now();
    // U0: parked 3 h ago, last seen 2 h ago (1 h counted), back 10 min ago: 70 min, over by 10.
    send(&parkd, "u0-1", "S-U0", true, 1, t - Duration::hours(3)).await;
    send(&parkd, "u0-2", "S-U0", true, 2, t - Duration::hours(2)).await;
    // U1: parked 50 min ago and last seen then, back 1 min ago: 1 min counted, never due
    // (counted through the unknown time it would be 50 min, and due with U0's history).
    send(&parkd, "u1-1", "S-U1", true, 1, t - Duration::minutes(50)).await;
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;

    // Silent past the window: both unknown, and neither raised (U0 was due
    // by the wall clock, but its unknown time does not count).
    let events = sweep(&parkd, "tick-1").await;
    assert_eq!(
        events.iter().filter(|e| e["type"] == "io.parking.slot.changed.v1").count(),
        2,
        "both bays went unknown: {events:?}"
    );
    assert!(overstays_in(&events).is_empty(), "{events:?}");
    let db = Db::open(&parkd).await.unwrap();
    assert_eq!(
        db.count("SELECT COUNT(*) FROM bays WHERE stay_due_at_ms IS NULL AND stay_started_at_ms IS NOT NULL")
            .await,
        2,
        "suspended stays leave the due-time index"
    );

    send(&parkd, "u0-3", "S-U0", true, 3, t - Duration::minutes(10)).await;
    send(&parkd, "u1-2", "S-U1", true, 2, t - Duration::minutes(1)).await;
    let events = sweep(&parkd, "tick-2").await;
    assert_eq!(overstays_in(&events), ["U0"], "{events:?}");
    let u0 = events.iter().find(|e| e["type"] == OVERSTAY).unwrap();
    let since = u0["data"]["since"].as_str().unwrap().parse::<DateTime<Utc>>().unwrap();
    assert_eq!(since, t - Duration::hours(3), "the stay went on through the unknown time");
    let (_, list) = overstays(&parkd, "lane", None).await;
    assert_near(over_by(&list, "U0"), 10 * 60, "U0 over by (unknown time not counted)");

    // Unknown then free: the stay ends, its alert closes.
    send(&parkd, "u0-4", "S-U0", false, 4, t).await;
    assert!(open_overstay_alerts(&parkd).await.is_empty());
    assert_eq!(
        db.count("SELECT COUNT(*) FROM bays WHERE bay_id = 'U0' AND stay_started_at_ms IS NULL").await,
        1
    );
}

fn uplink(id: &str, data: Value) -> Value {
    json!({
        "specversion": "1.0", "id": id, "source": "/parking/bridge",
        "type": "io.parking.sensor.uplink.v1", "format": "parking-json",
        "datacontenttype": "application/json", "data": data,
    })
}

/// A stream delivered as single events with sweep ticks between them, and
/// the same stream replayed later in one batch (twice) with no tick between,
/// give the same overstays: same event ids and data, same alerts, whether the
/// sweep raised an overstay (R0 after e1) or the reading that ended it did.
/// (No tick runs between e2 and e3: the test's ticks run at today's clock,
/// hours after the stream's times, and a tick would judge R1's stay, which
/// the stream ends within its limit, by that clock; see the README.)
async fn a_replayed_stream_gives_the_same_overstays_as_live_delivery(backend: Backend) {
    let t = now();
    let stream = [
        ("e1", "S-R0", true, 1, t - Duration::hours(5)),
        ("e2", "S-R1", true, 1, t - Duration::hours(4)),
        ("e3", "S-R1", false, 2, t - Duration::hours(3)), // 1 h: within 2 h
        ("e4", "S-R0", false, 2, t - Duration::hours(2)), // 3 h: over 2 h
        ("e5", "S-R1", true, 3, t - Duration::minutes(150)), // ongoing, due 30 min ago
    ];
    let spec = json!({
        "name": "Replay",
        "zones": { "Z": { "maxStay": "PT2H" } },
        "bays": [bay("R0", Some("Z"), "S-R0"), bay("R1", Some("Z"), "S-R1")],
    });
    let mut outcomes = Vec::new();
    for batched in [false, true] {
        let mut derived: Vec<Value> = Vec::new();
        let dir = tempfile::tempdir().unwrap();
        let parkd = start(backend, &[], dir.path()).await;
        put(&parkd, "replay", &spec).await;
        if batched {
            let events: Vec<Value> = stream
                .iter()
                .map(|(id, device, occupied, seq, at)| uplink(id, reading(device, *occupied, *seq, &ts(*at))))
                .collect();
            // The batch, then the whole batch again (redelivery): nothing more.
            for _ in 0..2 {
                let r = parkd
                    .client
                    .post(parkd.url("/api/v1/events"))
                    .header("content-type", BATCH)
                    .body(serde_json::to_vec(&events).unwrap())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::OK);
                let answer: Value = r.json().await.unwrap();
                derived.extend(answer["events"].as_array().unwrap().iter().cloned());
            }
            derived.extend(sweep(&parkd, "after").await);
        } else {
            for (i, (id, device, occupied, seq, at)) in stream.iter().enumerate() {
                send(&parkd, id, device, *occupied, *seq, *at).await;
                if *id != "e2" {
                    derived.extend(sweep(&parkd, &format!("tick-{i}")).await);
                }
            }
        }
        derived.extend(sweep(&parkd, "final").await);
        let mut events: Vec<(String, Value)> = derived
            .into_iter()
            .filter(|e| e["type"] == OVERSTAY)
            .map(|e| (e["id"].as_str().unwrap().to_owned(), e["data"].clone()))
            .collect();
        events.sort_by(|a, b| a.0.cmp(&b.0));
        // Delivered once each to a subscriber, too.
        let mut delivered: Vec<String> = parkd
            .recorded()
            .await
            .into_iter()
            .filter(|e| e["type"] == OVERSTAY)
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect();
        delivered.sort();
        assert_eq!(delivered, events.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>());
        let db = Db::open(&parkd).await.unwrap();
        let alerts = db
            .strings(
                "SELECT subject || ' ' || CASE WHEN closed_at_ms IS NULL THEN 'open' ELSE 'closed' END \
                 FROM alerts WHERE kind = 'bay_overstay' ORDER BY subject, id",
            )
            .await;
        outcomes.push((events, alerts));
    }
    let (live, replayed) = (&outcomes[0], &outcomes[1]);
    assert_eq!(live.0.len(), 2, "R0's ended overstay and R1's ongoing one: {live:?}");
    assert_eq!(live.1, ["replay/R0 closed", "replay/R1 open"]);
    assert_eq!(live, replayed);
}

/// The overstays are enforcement data: the admin token, as lot-admin's
/// other routes.
/// Readings out of order: an older "occupied" arriving after the bay freed
/// is stale, so it starts no stay and nothing falls due for it.
async fn a_late_older_reading_does_not_start_a_stay_again(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let parkd = start(backend, &[("admin_token", "admin-secret-0123456789")], dir.path()).await;
    let spec = json!({
        "name": "Late",
        "zones": { "L1": { "maxStay": "PT15M" } },
        "bays": [bay("C0", Some("L1"), "S-C0")],
    });
    let r = parkd
        .client
        .put(parkd.url("/api/v1/lots/late"))
        .bearer_auth("admin-secret-0123456789")
        .json(&spec)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let t = now();
    send(&parkd, "occupied", "S-C0", true, 1, t - Duration::minutes(60)).await;
    // Freed after 10 minutes: within the limit.
    send(&parkd, "freed", "S-C0", false, 3, t - Duration::minutes(50)).await;
    // Late: observed before the free, delivered after it.
    send(&parkd, "late", "S-C0", true, 2, t - Duration::minutes(55)).await;
    let events = sweep(&parkd, "late-tick").await;
    assert!(overstays_in(&events).is_empty(), "{events:?}");
    assert!(open_overstay_alerts(&parkd).await.is_empty());
    let (status, list) = overstays(&parkd, "late", Some("admin-secret-0123456789")).await;
    assert_eq!((status, list), (StatusCode::OK, json!([])));
}

async fn overstays_need_the_admin_token(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let parkd = start(backend, &[("admin_token", "an-admin-secret-for-tests")], dir.path()).await;
    let r = parkd
        .client
        .put(parkd.url("/api/v1/lots/guarded"))
        .bearer_auth("an-admin-secret-for-tests")
        .json(&json!({ "name": "Guarded", "zones": { "Z": { "maxStay": "PT1H" } }, "bays": [bay("B0", Some("Z"), "S-B0")] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(overstays(&parkd, "guarded", None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(overstays(&parkd, "guarded", Some("wrong")).await.0, StatusCode::UNAUTHORIZED);
    let (status, list) = overstays(&parkd, "guarded", Some("an-admin-secret-for-tests")).await;
    assert_eq!((status, list), (StatusCode::OK, json!([])));
    assert_eq!(
        overstays(&parkd, "nowhere", Some("an-admin-secret-for-tests")).await.0,
        StatusCode::NOT_FOUND
    );
    let r = parkd
        .client
        .delete(parkd.url("/api/v1/lots/guarded/overstays"))
        .bearer_auth("an-admin-secret-for-tests")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
}

/// Every time-limit field is checked: 400 naming the field, nothing stored.
async fn time_limits_are_validated(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let parkd = start(backend, &[], dir.path()).await;
    let good = json!({
        "name": "Checked", "timeZone": "Europe/Berlin",
        "zones": { "Z": { "maxStay": "PT2H", "graceSeconds": 60,
                          "hours": [{ "days": ["Mon", "Sat"], "from": "08:00", "to": "18:00" }] } },
        "bays": [bay("B0", Some("Z"), "S-B0")],
    });
    put(&parkd, "checked", &good).await;
    let cases: [(&str, Value, &str); 9] = [
        ("/timeZone", json!("Mars/Olympus_Mons"), "timeZone"),
        ("/zones/Z/maxStay", json!("2 hours"), "zones.Z.maxStay"),
        ("/zones/Z/maxStay", json!("P1M"), "zones.Z.maxStay"),
        ("/zones/Z/graceSeconds", json!(-5), "zones.Z.graceSeconds"),
        ("/zones/Z/hours", json!([{ "days": ["Monday"], "from": "08:00", "to": "18:00" }]), "zones.Z.hours"),
        ("/zones/Z/hours", json!([{ "days": ["Mon"], "from": "25:00", "to": "18:00" }]), "zones.Z.hours"),
        ("/zones/Z/hours", json!([]), "zones.Z.hours"),
        ("/zones/Z/limit", json!("PT1H"), "zones.Z.limit"),
        ("/bays/0/maxStay", json!("PT0S"), "bays[0].maxStay"),
    ];
    for (pointer, value, field) in cases {
        let mut body = good.clone();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        body.pointer_mut(parent).unwrap()[key] = value.clone();
        let r = parkd.put_lot("checked", &body).await;
        let status = r.status();
        let answer: Value = r.json().await.unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{pointer} = {value}: {answer}");
        let message = answer["error"].as_str().unwrap();
        assert!(message.contains(field), "{pointer} = {value}: the error names {field}: {message}");
    }
    let lot: Value =
        parkd.client.get(parkd.url("/api/v1/lots/checked")).send().await.unwrap().json().await.unwrap();
    assert_eq!(lot["timeZone"], "Europe/Berlin");
    assert_eq!(lot["zones"]["Z"]["hours"], good["zones"]["Z"]["hours"], "{lot}");
}

/// The roll-ups count stays: in a closed hour of a 30-minute zone, a
/// 15-minute stay, a 45-minute one (past its limit when it ended, with no
/// sweep in between) and one that starts and goes on (a spell `unknown`
/// within a stay is in the domain's roll-up tests); the history API and its CSV
/// show stays started and ended, mean and p90 length, overstays and their
/// share.
async fn stay_statistics_are_rolled_up_per_hour_and_shown_in_history_and_csv(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let parkd = start(backend, &[("rollup_settle_seconds", "0")], dir.path()).await;
    put(
        &parkd,
        "main",
        &json!({
            "name": "Main street",
            "zones": { "L1": { "maxStay": "PT30M" } },
            "bays": [bay("A", Some("L1"), "S-A"), bay("B", Some("L1"), "S-B"), bay("C", Some("L1"), "S-C")],
        }),
    )
    .await;
    let hour = now().duration_trunc(Duration::hours(1)).unwrap() - Duration::hours(2);
    let at = |minutes: i64| hour + Duration::minutes(minutes);
    send(&parkd, "a-0", "S-A", false, 1, at(0)).await;
    send(&parkd, "b-0", "S-B", false, 1, at(0)).await;
    send(&parkd, "c-0", "S-C", false, 1, at(0)).await;
    send(&parkd, "a-1", "S-A", true, 2, at(5)).await;
    send(&parkd, "b-1", "S-B", true, 3, at(10)).await;
    send(&parkd, "a-2", "S-A", false, 3, at(20)).await;
    send(&parkd, "b-2", "S-B", false, 4, at(55)).await;
    send(&parkd, "c-1", "S-C", true, 2, at(50)).await;
    // A redelivered reading counts nothing twice.
    send(&parkd, "b-2", "S-B", false, 4, at(55)).await;
    for run in 0..50 {
        let (report, _) = parkd.sweep_tick(&format!("stats-{run}")).await;
        if report["complete"] == true && report["hoursRolledUp"].as_array().is_some_and(Vec::is_empty) {
            break;
        }
    }
    let url = |format: &str| {
        let (from, to) = (ts(hour), ts(hour + Duration::hours(1)));
        parkd.url(&format!("/api/v1/lots/main/history?from={from}&to={to}&bucket=hour{format}"))
    };
    let body: Value = parkd.client.get(url("")).send().await.unwrap().json().await.unwrap();
    let rows = body["rows"].as_array().or_else(|| body.as_array()).unwrap_or_else(|| panic!("{body}"));
    assert_eq!(rows.len(), 1, "{body}");
    let row = &rows[0];
    assert_eq!((row["staysStarted"].as_u64(), row["staysEnded"].as_u64()), (Some(3), Some(2)), "{row}");
    assert_eq!(row["meanStaySeconds"], 1800.0, "(15 + 45 minutes) / 2: {row}");
    let p90 = row["p90StaySeconds"].as_f64().unwrap();
    assert!((45.0 * 60.0..=60.0 * 60.0).contains(&p90), "in the 45 minute stay's bucket: {row}");
    assert_eq!((row["overstays"].as_u64(), row["overstayShare"].as_f64()), (Some(1), Some(0.5)), "{row}");

    let csv = parkd.client.get(url("&format=csv")).send().await.unwrap().text().await.unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let values: Vec<&str> = lines.next().unwrap_or_else(|| panic!("{csv}")).split(',').collect();
    let column = |name: &str| {
        values[header.iter().position(|h| *h == name).unwrap_or_else(|| panic!("{name}: {csv}"))]
    };
    assert_eq!(
        ["stays_started", "stays_ended", "mean_stay_seconds", "overstays", "overstay_share"].map(column),
        ["3", "2", "1800.0", "1", "0.5000"],
        "{csv}"
    );
    assert_eq!(column("p90_stay_seconds"), format!("{p90:.1}"));
}
