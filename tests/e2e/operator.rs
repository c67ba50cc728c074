//! The operator page (`GET /`) in a real browser: Debian's headless Chromium
//! over WebDriver. It shows an empty state with no lots; then, for a lot
//! with hours of readings rolled up by one sweep, the live counts of the
//! availability API, following a new reading over the lots' live stream, a 24-hour chart per vehicle
//! class drawn from the history API, and a low battery under sensor health.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, DurationRound, Utc};
use parking_tests::browser::{ChromeDriver, Client, Locator, screenshot, text_of, wait_for};
use parking_tests::{Backend, Parkd, ParkdOptions, lot_spec, reading};
use reqwest::StatusCode;
use serde_json::{Value, json};

const CLASSES: [&str; 2] = ["four_wheeler", "two_wheeler"];
const COUNTS: [&str; 5] = ["total", "free", "occupied", "unknown", "closed"];

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn count_cell(class: &str, status: &str) -> String {
    format!(r#"td[data-lot="north"][data-class="{class}"][data-status="{status}"]"#)
}

async fn send(parkd: &Parkd, id: &str, reading: &Value) {
    let r = parkd.send_reading(id, reading).await;
    assert!(r.status().is_success(), "reading {id}: {:?}", r.text().await);
}

/// Sends a cron tick through the broker, as parkd's scheduler does, so the
/// closed hours are rolled up.
async fn sweep(parkd: &Parkd) -> Value {
    parkd.sweep_tick("operator-tick-1").await.0
}

/// The page's counts for every class agree with the availability API.
async fn counts_match_the_api(parkd: &Parkd, browser: &Client) -> bool {
    let (status, availability) = parkd.availability("north").await;
    assert_eq!(status, StatusCode::OK);
    for class in CLASSES {
        for count in COUNTS {
            let expected = availability["classes"][class][count].to_string();
            if text_of(browser, &count_cell(class, count)).await.as_deref() != Some(expected.as_str()) {
                return false;
            }
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_page_shows_live_counts_history_and_sensor_health() {
    let mut options = ParkdOptions::new(Backend::Sqlite);
    options.variables = vec![("rollup_settle_seconds".into(), "0".into())];
    // As `parkd up` runs by default: its embedded broker, so the gateway
    // streams the lots' summaries the page listens to.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    options.mqtt = parkd::up::MqttMode::Embedded(format!("127.0.0.1:{port}").parse().unwrap());
    let parkd = Parkd::start_with(options).await.unwrap();

    let driver = ChromeDriver::start();
    let profile = tempfile::tempdir().unwrap();
    let browser = driver.browser(profile.path()).await;

    // Nothing provisioned: the page says what to do, and that all is healthy.
    browser.goto(&parkd.url("/")).await.unwrap();
    wait_for("the no-lots state", || async {
        text_of(&browser, "#lots").await.is_some_and(|t| t.contains("No lots yet: PUT /api/v1/lots/{lot}"))
    })
    .await;
    wait_for("healthy sensors", || async {
        text_of(&browser, "#health-summary").await.is_some_and(|t| t.starts_with("All sensors healthy"))
    })
    .await;
    screenshot(&browser, "operator-empty.png").await;

    // Two closed hours of readings for every bay, then one sweep rolls them up.
    assert!(parkd.put_lot("north", &lot_spec("North", "N", 3, 2)).await.status().is_success());
    let now = Utc::now();
    let base = now.duration_trunc(Duration::hours(1)).unwrap() - Duration::hours(2);
    let devices = ["N-C0", "N-C1", "N-C2", "N-M0", "N-M1"];
    for (i, device) in devices.iter().enumerate() {
        let first = i % 2 == 0;
        let at = base + Duration::minutes(5 + i as i64 * 3);
        send(&parkd, &format!("{device}-1"), &reading(device, first, 1, &ts(at))).await;
        let at = at + Duration::minutes(70);
        send(&parkd, &format!("{device}-2"), &reading(device, !first, 2, &ts(at))).await;
    }
    // A bike sensor reports a battery below 3.2 V.
    let low = json!({ "device": "N-M0", "occupied": true, "seq": 3, "observedAt": ts(now), "battery": 3.15 });
    send(&parkd, "N-M0-3", &low).await;
    let report = sweep(&parkd).await;
    assert!(report["complete"].as_bool().unwrap(), "{report}");

    let url = format!(
        "/api/v1/lots/north/history?bucket=hour&from={}&to={}",
        ts(now - Duration::hours(24)),
        ts(now)
    );
    let history: Value = parkd.client.get(parkd.url(&url)).send().await.unwrap().json().await.unwrap();
    // Mean occupied bays per (class, hour), the zones summed, as the chart draws them.
    let mut expected: BTreeMap<String, BTreeMap<DateTime<Utc>, f64>> = BTreeMap::new();
    for row in history["rows"].as_array().unwrap() {
        let start: DateTime<Utc> = row["start"].as_str().unwrap().parse().unwrap();
        *expected.entry(row["class"].as_str().unwrap().to_owned()).or_default().entry(start).or_default() +=
            row["meanOccupied"].as_f64().unwrap();
    }
    for class in CLASSES {
        assert!(
            expected.get(class).is_some_and(|hours| hours.len() >= 2),
            "two rolled-up hours of {class}: {history}"
        );
    }

    // The page picks the lot up with its history.
    browser.goto(&parkd.url("/")).await.unwrap();
    wait_for("counts equal to the availability API", || counts_match_the_api(&parkd, &browser)).await;

    // The page listens to the lots' stream; it then polls only every minute.
    wait_for("the live stream open", || async {
        let updated = browser.find(Locator::Css("#updated")).await.unwrap();
        updated.attr("data-live").await.unwrap().as_deref() == Some("stream")
    })
    .await;
    // A car parks in the free bay C0: the page follows it over the stream,
    // well before its next poll (a minute away; wait_for gives up at 30 s).
    let cars = count_cell("four_wheeler", "free");
    let before = text_of(&browser, &cars).await.unwrap();
    let parks = reading("N-C0", true, 3, &ts(Utc::now()));
    send(&parkd, "N-C0-3", &parks).await;
    let (_, availability) = parkd.availability("north").await;
    let after = availability["classes"]["four_wheeler"]["free"].to_string();
    assert_ne!(before, after, "the reading takes a free car bay");
    wait_for(&format!("{after} free car bays after the reading"), || async {
        text_of(&browser, &cars).await.as_deref() == Some(after.as_str())
    })
    .await;
    assert!(counts_match_the_api(&parkd, &browser).await);

    // One point per rolled-up hour and class, at the API's value.
    for class in CLASSES {
        let svg = format!(r#"svg.chart[data-lot="north"][data-class="{class}"]"#);
        let chart = browser.find(Locator::Css(&svg)).await.unwrap_or_else(|_| panic!("a chart for {class}"));
        assert!(chart.is_displayed().await.unwrap());
        let points = chart.find_all(Locator::Css("circle.point")).await.unwrap();
        let mut drawn = BTreeMap::new();
        for point in points {
            let start: DateTime<Utc> = point.attr("data-start").await.unwrap().unwrap().parse().unwrap();
            let value: f64 = point.attr("data-mean-occupied").await.unwrap().unwrap().parse().unwrap();
            drawn.insert(start, value);
        }
        let wanted = &expected[class];
        assert_eq!(
            drawn.keys().collect::<BTreeSet<_>>(),
            wanted.keys().collect::<BTreeSet<_>>(),
            "{class}: a point per hour"
        );
        for (start, value) in wanted {
            assert!(
                (drawn[start] - value).abs() < 1e-3,
                "{class} at {start}: drawn {}, API {value}",
                drawn[start]
            );
        }
        let line = chart.find(Locator::Css("polyline")).await.unwrap();
        assert!(line.attr("points").await.unwrap().is_some_and(|p| p.split(' ').count() == wanted.len()));
    }

    // The low battery, under sensor health.
    let battery = r#"#health-rows tr[data-kind="battery_low"][data-device="N-M0"]"#;
    wait_for("the low battery alert", || async { text_of(&browser, battery).await.is_some() }).await;
    let row = text_of(&browser, battery).await.unwrap();
    assert!(row.contains("Battery low") && row.contains("north") && row.contains("M0"), "{row}");
    let summary = text_of(&browser, "#health-summary").await.unwrap();
    assert_eq!(summary, "0 offline, 1 with a low battery.");
    assert_eq!(text_of(&browser, "#problem").await.as_deref(), Some(""), "no error shown");
    screenshot(&browser, "operator-live.png").await;

    browser.close().await.unwrap();
}

/// Zones, occupancy, the forecast and overstays: a lot with a 15-minute zone
/// on a parkd with an admin token. The page shows a row per zone and class
/// with the API's counts, each class's occupancy and its forecast free bays
/// in an hour (within the API's range), the running hour on the chart
/// (counted so far, before any sweep), and, once the operator enters the
/// admin token (refused without it), the overstay the sweep raised.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_page_shows_zones_forecasts_and_overstays_behind_the_admin_token() {
    const TOKEN: &str = "operator-admin-token-0123456789";
    let mut options = ParkdOptions::new(Backend::Sqlite);
    options.variables = vec![("admin_token".into(), TOKEN.into())];
    let parkd = Parkd::start_with(options).await.unwrap();
    let lot = json!({
        "name": "North",
        "zones": { "L1": { "maxStay": "PT15M" } },
        "bays": [
            { "id": "C0", "zone": "L1", "class": "four_wheeler", "sensor": "N-C0" },
            { "id": "C1", "zone": "L1", "class": "four_wheeler", "sensor": "N-C1" },
            { "id": "C2", "zone": "L2", "class": "four_wheeler", "sensor": "N-C2" },
            { "id": "M0", "zone": "M", "class": "two_wheeler", "sensor": "N-M0" },
        ],
    });
    let r =
        parkd.client.put(parkd.url("/api/v1/lots/north")).bearer_auth(TOKEN).json(&lot).send().await.unwrap();
    assert!(r.status().is_success(), "{:?}", r.text().await);
    let now = Utc::now();
    send(&parkd, "c0", &reading("N-C0", true, 1, &ts(now - Duration::minutes(40)))).await;
    send(&parkd, "c1", &reading("N-C1", false, 1, &ts(now))).await;
    send(&parkd, "c2", &reading("N-C2", true, 1, &ts(now))).await;
    send(&parkd, "m0", &reading("N-M0", false, 1, &ts(now))).await;
    let (_, events) = parkd.sweep_tick("operator-overstays").await;
    assert!(events.iter().any(|e| e["type"] == "io.parking.bay.overstay.v1"), "C0 overstays: {events:?}");

    let driver = ChromeDriver::start();
    let profile = tempfile::tempdir().unwrap();
    let browser = driver.browser(profile.path()).await;
    browser.goto(&parkd.url("/")).await.unwrap();
    wait_for("counts equal to the availability API", || counts_match_the_api(&parkd, &browser)).await;

    // A row per (zone, class), with the API's counts.
    let (_, availability) = parkd.availability("north").await;
    for zone in availability["zones"].as_array().unwrap() {
        let name = zone["zone"].as_str().unwrap();
        for (class, counts) in zone["classes"].as_object().unwrap() {
            for count in COUNTS {
                let css = format!(r#"td[data-zone="{name}"][data-class="{class}"][data-status="{count}"]"#);
                assert_eq!(
                    text_of(&browser, &css).await,
                    Some(counts[count].to_string()),
                    "zone {name} {class} {count}"
                );
            }
        }
    }
    // Occupancy: two of the three reporting car bays, no bike.
    let share = |class: &str| format!(r#"tr.class td[data-class="{class}"][data-measure="occupancy"]"#);
    assert_eq!(text_of(&browser, &share("four_wheeler")).await.as_deref(), Some("67%"));
    assert_eq!(text_of(&browser, &share("two_wheeler")).await.as_deref(), Some("0%"));

    // The forecast beside the counts, within the range the API states.
    let forecast_cell = r#"tr.class td[data-class="four_wheeler"][data-measure="forecast"]"#;
    wait_for("the car forecast", || async {
        text_of(&browser, forecast_cell).await.is_some_and(|t| t.starts_with('≈'))
    })
    .await;
    let shown = text_of(&browser, forecast_cell).await.unwrap();
    let free: f64 = shown.trim_start_matches('≈').split(' ').next().unwrap().parse().unwrap();
    let api: Value = parkd
        .client
        .get(parkd.url("/api/v1/lots/north/forecast?class=four_wheeler&horizon=60m"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let f = &api["forecasts"][0];
    assert!(
        (f["low"].as_f64().unwrap().floor()..=f["high"].as_f64().unwrap().ceil()).contains(&free),
        "page {shown}, API {api}"
    );

    // The running hour is on the chart before any hour is rolled up.
    let point = r#"svg.chart[data-class="four_wheeler"] circle.point.provisional"#;
    wait_for("the running hour on the chart", || async { browser.find(Locator::Css(point)).await.is_ok() })
        .await;

    // Overstays: refused without the token, shown with it.
    wait_for("the admin token prompt", || async {
        text_of(&browser, "#overstays-summary").await.is_some_and(|t| t.contains("admin token"))
    })
    .await;
    let input = browser.find(Locator::Css("#admin-token")).await.unwrap();
    input.send_keys(TOKEN).await.unwrap();
    browser.find(Locator::Css("#token-form button")).await.unwrap().click().await.unwrap();
    let row = r#"#overstays-rows tr[data-lot="north"][data-bay="C0"]"#;
    wait_for("C0's overstay", || async { text_of(&browser, row).await.is_some() }).await;
    let over_by: i64 = browser
        .find(Locator::Css(&format!("{row} td[data-over-by]")))
        .await
        .unwrap()
        .attr("data-over-by")
        .await
        .unwrap()
        .unwrap()
        .parse()
        .unwrap();
    assert!((25 * 60..27 * 60).contains(&over_by), "40 minutes parked, 15 allowed: over by {over_by} s");
    assert_eq!(text_of(&browser, "#overstays-summary").await.as_deref(), Some("1 stay past the limit."));
    assert!(!browser.find(Locator::Css("#token-form")).await.unwrap().is_displayed().await.unwrap());
    assert_eq!(text_of(&browser, "#problem").await.as_deref(), Some(""), "no error shown");
    screenshot(&browser, "operator-zones-overstays.png").await;
    browser.close().await.unwrap();
}
