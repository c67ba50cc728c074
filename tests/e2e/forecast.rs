//! The forecast route, end to end: weeks of readings with past observation
//! times, rolled up by sweep ticks through the broker, then
//! `GET /api/v1/lots/{lot}/forecast` from the real component, on SQLite and
//! on PostgreSQL.

use chrono::{DateTime, Duration, DurationRound, Utc};
use parking_tests::{Backend, Parkd, lot_spec, on_both_backends, reading};
use reqwest::StatusCode;
use serde_json::{Value, json};

on_both_backends!(
    a_lot_full_at_the_same_hour_every_day_is_forecast_full_then,
    a_fresh_lot_falls_back_to_persistence,
    forecast_requests_are_validated,
    the_lot_list_shows_the_forecast_the_sweep_fitted
);

const BATCH: &str = "application/cloudevents-batch+json";
const DAYS: i64 = 21;
const CARS: usize = 8;

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn uplink(id: &str, data: Value) -> Value {
    json!({
        "specversion": "1.0", "id": id, "source": "/parking/bridge",
        "type": "io.parking.sensor.uplink.v1", "format": "parking-json",
        "datacontenttype": "application/json", "data": data,
    })
}

async fn put(parkd: &Parkd, lot: &str, body: &Value) {
    let r = parkd.put_lot(lot, body).await;
    let status = r.status();
    assert!(status.is_success(), "PUT {lot}: {status} {}", r.text().await.unwrap());
}

/// Sends readings as CloudEvents batches, in the order given.
async fn send_batches(parkd: &Parkd, events: &[Value]) {
    for chunk in events.chunks(100) {
        let r = parkd
            .client
            .post(parkd.url("/api/v1/events"))
            .header("content-type", BATCH)
            .body(serde_json::to_vec(chunk).unwrap())
            .send()
            .await
            .unwrap();
        let status = r.status();
        assert_eq!(status, StatusCode::OK, "{}", r.text().await.unwrap());
    }
}

/// Sweeps until a run completes within its budget (every closed hour rolled up).
async fn sweep_until_complete(parkd: &Parkd) {
    for run in 0..200 {
        let (report, _) = parkd.sweep_tick(&format!("forecast-tick-{run}")).await;
        if report["complete"].as_bool().unwrap() {
            return;
        }
    }
    panic!("the sweep never completed");
}

async fn forecast(parkd: &Parkd, lot: &str, query: &str) -> (StatusCode, Value) {
    let r = parkd.client.get(parkd.url(&format!("/api/v1/lots/{lot}/forecast{query}"))).send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Every forecast holds `0 <= low <= free <= high <= total`.
fn assert_ranges_hold(answer: &Value, total: u64) {
    for f in answer["forecasts"].as_array().unwrap() {
        let (low, free, high) =
            (f["low"].as_u64().unwrap(), f["free"].as_u64().unwrap(), f["high"].as_u64().unwrap());
        assert!(low <= free && free <= high && high <= total, "{f}");
    }
}

/// Provisions lot "rush" and sends three weeks of its daily rush (see
/// below), rolled up; answers the present the pattern is anchored to.
async fn rush_hour_every_day(parkd: &Parkd) -> DateTime<Utc> {
    put(parkd, "rush", &lot_spec("Rush", "RU", CARS, 0)).await;
    let now = Utc::now().duration_trunc(Duration::seconds(1)).unwrap();
    let start = now - Duration::days(DAYS) - Duration::hours(1);
    let mut timeline: Vec<(DateTime<Utc>, bool)> = vec![(start, false)];
    for day in (1..=DAYS).rev() {
        let anchor = now - Duration::days(day);
        timeline.push((anchor + Duration::minutes(10), true));
        timeline.push((anchor + Duration::minutes(160), false));
    }
    let mut events = Vec::new();
    for (seq, (at, occupied)) in timeline.iter().enumerate() {
        for car in 0..CARS {
            let device = format!("RU-C{car}");
            let data = reading(&device, *occupied, seq as u32 + 1, &ts(*at + Duration::seconds(car as i64)));
            events.push(uplink(&format!("rush-{car}-{seq}"), data));
        }
    }
    send_batches(parkd, &events).await;
    sweep_until_complete(parkd).await;
    now
}

/// Each of the last three weeks, every day, the whole lot was full from 10
/// minutes after the present clock time to 2 h 40 min after it, and empty
/// otherwise (the pattern is anchored to the test's clock, so it holds
/// whatever the time the test runs). Now it is empty: in 60 minutes it will
/// be full, in four hours empty again.
async fn a_lot_full_at_the_same_hour_every_day_is_forecast_full_then(backend: Backend) {
    let parkd = Parkd::start(backend).await.unwrap();
    let now = rush_hour_every_day(&parkd).await;
    let (status, answer) = forecast(&parkd, "rush", "?class=four_wheeler&horizon=15m,30m,60m,4h").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!((answer["lot"].as_str(), answer["class"].as_str()), (Some("rush"), Some("four_wheeler")));
    let at = DateTime::parse_from_rfc3339(answer["at"].as_str().unwrap()).unwrap();
    assert!((at.with_timezone(&Utc) - now).num_seconds().abs() < 120, "{answer}");
    let horizons: Vec<&str> =
        answer["forecasts"].as_array().unwrap().iter().map(|f| f["horizon"].as_str().unwrap()).collect();
    assert_eq!(horizons, ["15m", "30m", "60m", "240m"]);
    assert_ranges_hold(&answer, CARS as u64);
    let f = |i: usize| &answer["forecasts"][i];
    assert!(answer["forecasts"].as_array().unwrap().iter().all(|f| f["method"] == "seasonal"), "{answer}");
    assert!(f(2)["free"].as_u64().unwrap() <= 1, "in an hour the lot is full as every day: {answer}");
    assert!(f(3)["free"].as_u64().unwrap() >= (CARS - 1) as u64, "in four hours it is empty again: {answer}");
    assert_eq!(answer["present"], json!({"total": CARS, "free": CARS, "occupied": 0}));
    assert!(answer["model"]["historyHours"].as_u64().unwrap() >= 24 * (DAYS as u64 - 1), "{answer}");
    // The recent error is out of sample (fitted on the weeks before the last
    // one) and, on a lot this regular, far below persistence's.
    let recent = answer["recentError"].as_f64().expect("a recent error after three weeks");
    let persistence = answer["recentErrorDetail"]["persistenceError"].as_f64().unwrap();
    assert!(recent < persistence / 2.0, "{answer}");
    assert!(answer["recentErrorDetail"]["forecasts"].as_u64().unwrap() >= 24 * 6, "{answer}");
}

/// A lot provisioned a moment ago: no roll-ups, so every horizon is
/// persistence (as many free as now) with a range that claims nothing, and
/// the answer says so.
async fn a_fresh_lot_falls_back_to_persistence(backend: Backend) {
    let parkd = Parkd::start(backend).await.unwrap();
    put(&parkd, "fresh", &lot_spec("Fresh", "FR", 3, 2)).await;
    let now = ts(Utc::now());
    for (i, (device, occupied)) in [("FR-C0", true), ("FR-C1", false), ("FR-C2", false)].iter().enumerate() {
        let r = parkd.send_reading(&format!("fresh-{i}"), &reading(device, *occupied, 1, &now)).await;
        assert!(r.status().is_success(), "{:?}", r.text().await);
    }
    sweep_until_complete(&parkd).await;
    let (status, answer) = forecast(&parkd, "fresh", "").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let forecasts = answer["forecasts"].as_array().unwrap();
    assert_eq!(forecasts.len(), 3, "15m, 30m and 60m by default: {answer}");
    for f in forecasts {
        assert_eq!((f["method"].as_str(), f["free"].as_u64()), (Some("persistence"), Some(2)), "{answer}");
        assert_eq!((f["low"].as_u64(), f["high"].as_u64()), (Some(0), Some(3)), "{answer}");
    }
    assert!(answer["model"]["note"].as_str().unwrap().contains("persistence"), "{answer}");
    assert_eq!(answer["recentError"], Value::Null);
    // The two-wheelers have no sensor reading yet: none vouched for, none free.
    let (status, bikes) = forecast(&parkd, "fresh", "?class=two_wheeler&horizon=60m").await;
    assert_eq!(status, StatusCode::OK, "{bikes}");
    assert_eq!(
        bikes["forecasts"][0],
        json!({
            "horizon": "60m", "at": bikes["forecasts"][0]["at"], "free": 0, "low": 0, "high": 0, "method": "persistence"
        })
    );
}

async fn forecast_requests_are_validated(backend: Backend) {
    let parkd = Parkd::start(backend).await.unwrap();
    put(&parkd, "cars", &lot_spec("Cars", "CA", 2, 0)).await;
    for (query, names) in [
        ("?class=Bus!", "class"),
        ("?class=two_wheeler", "has no two_wheeler bays"),
        ("?horizon=90s", "horizon"),
        ("?horizon=0m", "horizon"),
        ("?horizon=25h", "horizon"),
        ("?horizon=15m,,30m", "horizon"),
        ("?horizon=", "horizon"),
        ("?window=7d", "unknown query parameter"),
    ] {
        let (status, body) = forecast(&parkd, "cars", query).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert!(body["error"].as_str().unwrap().contains(names), "{query}: {body}");
    }
    let (status, body) = forecast(&parkd, "nowhere", "?class=four_wheeler").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body["error"].as_str().unwrap().contains("nowhere"), "{body}");
    let r = parkd.client.post(parkd.url("/api/v1/lots/cars/forecast")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    let (status, body) = forecast(&parkd, "cars", "?horizon=2h").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["forecasts"][0]["horizon"], "120m");
}

async fn lot_entry(parkd: &Parkd, lot: &str) -> Value {
    let r = parkd.client.get(parkd.url("/api/v1/lots")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let list: Value = r.json().await.unwrap();
    list["lots"].as_array().unwrap().iter().find(|l| l["lot"] == lot).cloned().expect("the lot is listed")
}

/// The public lot list (what `/find` reads) shows each class's forecast
/// for an hour ahead as the sweep fitted and stored it: the same numbers
/// the forecast API gives, refitted only once they are a few minutes old,
/// never shown for persistence, and gone with the lot.
async fn the_lot_list_shows_the_forecast_the_sweep_fitted(backend: Backend) {
    let parkd = Parkd::start(backend).await.unwrap();
    rush_hour_every_day(&parkd).await;
    let db = parking_tests::db::Db::open(&parkd).await.unwrap();
    assert_eq!(db.count("SELECT COUNT(*) FROM lot_forecasts").await, 1, "the lot's four-wheelers fitted");
    put(&parkd, "fresh", &lot_spec("Fresh", "FR", 3, 0)).await;
    let (report, _) = parkd.sweep_tick("forecast-fresh").await;
    assert_eq!(report["forecastsFitted"], 1, "the new lot, not the one fitted a moment ago: {report}");

    let listed = lot_entry(&parkd, "rush").await;
    let published = &listed["forecast"]["four_wheeler"];
    assert_eq!(published["horizon"], "60m", "{listed}");
    assert!(published["free"].as_u64().unwrap() <= 1, "in an hour the lot is full as every day: {listed}");
    assert!(published["recentError"].as_f64().is_some(), "{listed}");
    let (_, api) = forecast(&parkd, "rush", "?horizon=60m").await;
    let computed_at = DateTime::parse_from_rfc3339(published["computedAt"].as_str().unwrap()).unwrap();
    let at = DateTime::parse_from_rfc3339(published["at"].as_str().unwrap()).unwrap();
    assert_eq!(at - computed_at, Duration::hours(1), "{listed}");
    let api_at = DateTime::parse_from_rfc3339(api["at"].as_str().unwrap()).unwrap();
    // The model's answer only moves when an hour boundary passes between the two fits.
    if api_at.duration_trunc(Duration::hours(1)).unwrap()
        == computed_at.duration_trunc(Duration::hours(1)).unwrap()
    {
        for field in ["free", "low", "high"] {
            assert_eq!(published[field], api["forecasts"][0][field], "{field}: {listed} against {api}");
        }
    }
    let fresh = lot_entry(&parkd, "fresh").await;
    assert!(fresh.get("forecast").is_none(), "no history: persistence is not published: {fresh}");

    // A tick within the refresh interval fits nothing; once a stored
    // forecast is older, the next tick refits it.
    let (report, _) = parkd.sweep_tick("forecast-refresh-1").await;
    assert_eq!(report["forecastsFitted"], 0, "{report}");
    db.execute("UPDATE lot_forecasts SET computed_at_ms = computed_at_ms - 600000 WHERE lot_id = 'rush'")
        .await;
    let (report, _) = parkd.sweep_tick("forecast-refresh-2").await;
    assert_eq!(report["forecastsFitted"], 1, "{report}");
    let refitted = lot_entry(&parkd, "rush").await;
    let refitted_at =
        DateTime::parse_from_rfc3339(refitted["forecast"]["four_wheeler"]["computedAt"].as_str().unwrap());
    assert!(refitted_at.unwrap() >= computed_at, "{refitted}");

    // One the sweep stopped refreshing is left out of the list.
    db.execute("UPDATE lot_forecasts SET computed_at_ms = computed_at_ms - 3600000 WHERE lot_id = 'rush'")
        .await;
    assert!(lot_entry(&parkd, "rush").await.get("forecast").is_none());

    assert!(parkd.client.delete(parkd.url("/api/v1/lots/rush")).send().await.unwrap().status().is_success());
    assert_eq!(db.count("SELECT COUNT(*) FROM lot_forecasts WHERE lot_id = 'rush'").await, 0);
}
