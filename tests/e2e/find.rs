//! The public availability page (`GET /find`) and its live stream
//! (`GET /find/stream`), against parkd bridging a real Mosquitto, on both
//! databases, in Debian's headless Chromium over WebDriver.
//!
//! Four lots: a located garage with bay categories, an on-street lot an
//! operator closed, a lot 1.9 km away, and one without a location. At
//! desktop size with the location refused: every lot, counts equal to the
//! availability API, the closed lot closed, markers for the located ones,
//! an automated accessibility check, keyboard focus, no credential and no
//! sensor id anywhere, a reading published over MQTT changing the page
//! without a reload, and nothing wider than a 360 px window. At phone size
//! with a location: the nearest first, with their distances, and nothing
//! wider than the screen. Screenshots of both are written under the target
//! directory (`test-artefacts/find-*.png`) and their paths printed. And the
//! stream alone under parkd's embedded broker, as `parkd up` runs.

use std::time::Duration;

use parking_tests::browser::{ChromeDriver, Client, cdp, screenshot, text_of, wait_for};
use parking_tests::mosquitto::Mosquitto;
use parking_tests::terminals::SseStream;
use parking_tests::{Backend, Parkd, ParkdOptions, lot_spec, on_both_backends, reading};
use reqwest::StatusCode;
use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::{Value, json};

on_both_backends!(the_public_page_shows_nearby_lots_live_and_accessibly);

/// The next `lot` event on `stream` for which `wanted` holds, within 30 s
/// (pings and other lots skipped).
async fn next_lot(stream: &mut SseStream, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let event = stream.next(left).await.unwrap_or_else(|e| panic!("no {what} on /find/stream: {e:#}"));
        if event.event == "lot" && wanted(&event.json()) {
            return event.json();
        }
    }
}

/// As `parkd up` runs by default (its embedded broker, frames and summaries
/// on its private broker): a reading sent over HTTP reaches an open public
/// stream, and a stream opened later gets the lot's summary at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_embedded_broker_the_public_stream_follows_readings() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}").parse().unwrap();
    let options =
        ParkdOptions { mqtt: parkd::up::MqttMode::Embedded(listen), ..ParkdOptions::new(Backend::Sqlite) };
    let parkd = Parkd::start_with(options).await.unwrap();
    assert!(parkd.put_lot("north", &lot_spec("North", "N", 2, 0)).await.status().is_success());
    let client = reqwest::Client::new();
    let mut open = SseStream::open(&client, &parkd.url("/find/stream"), None).await.unwrap();
    // Asked for on a new connection: written on the bare socket, as a terminal's stream is.
    assert_eq!(open.headers().get("connection").and_then(|v| v.to_str().ok()), Some("close"));
    let r = parkd.send_reading("e-1", &reading("N-C0", false, 1, &now())).await;
    assert!(r.status().is_success(), "{:?}", r.text().await);
    let free_one = |s: &Value| s["lot"] == "north" && s["classes"]["four_wheeler"]["free"] == 1;
    let summary = next_lot(&mut open, "north with a free bay", free_one).await;
    assert_eq!(summary["open"], true, "{summary}");
    assert!(summary["seq"].as_u64().is_some() && summary["renderedAt"].is_string(), "{summary}");
    let mut later = SseStream::open(&client, &parkd.url("/find/stream"), None).await.unwrap();
    next_lot(&mut later, "the current summary for a new client", free_one).await;
    let r = parkd.send_reading("e-2", &reading("N-C1", false, 1, &now())).await;
    assert!(r.status().is_success());
    let free_two = |s: &Value| s["lot"] == "north" && s["classes"]["four_wheeler"]["free"] == 2;
    next_lot(&mut open, "the next change", free_two).await;
    next_lot(&mut later, "the next change", free_two).await;
}

/// Where the visitor stands: the garage.
const HERE: (f64, f64) = (52.5163, 13.3777);
const SENSORS: [&str; 9] = ["G-C0", "G-C1", "G-C2", "G-M0", "S-C0", "F-C0", "F-C1", "D-C0", "D-C1"];

fn bay(id: &str, class: &str, sensor: &str, categories: &[&str]) -> Value {
    json!({ "id": id, "class": class, "sensor": sensor, "categories": categories })
}

fn point(lat: f64, lon: f64) -> Value {
    json!({ "type": "Point", "coordinates": [lon, lat] })
}

async fn provision(parkd: &Parkd) {
    let lots = [
        (
            "garage",
            json!({
                "name": "Pariser Platz Garage", "kind": "off_street", "location": point(HERE.0, HERE.1),
                "bays": [bay("C0", "four_wheeler", "G-C0", &["accessible"]), bay("C1", "four_wheeler", "G-C1", &["ev_charging"]),
                         bay("C2", "four_wheeler", "G-C2", &[]), bay("M0", "two_wheeler", "G-M0", &[])],
            }),
        ),
        (
            "main-street",
            json!({
                "name": "Main Street", "kind": "on_street", "location": point(52.5170, 13.3787), "closed": true,
                "bays": [bay("C0", "four_wheeler", "S-C0", &["family"])],
            }),
        ),
        (
            "far",
            json!({
                "name": "Far Lot", "kind": "off_street", "location": point(52.5200, 13.4050),
                "bays": [bay("C0", "four_wheeler", "F-C0", &[]), bay("C1", "four_wheeler", "F-C1", &[])],
            }),
        ),
        (
            "depot",
            json!({
                "name": "Depot Yard",
                "bays": [bay("C0", "four_wheeler", "D-C0", &[]), bay("C1", "four_wheeler", "D-C1", &[])],
            }),
        ),
    ];
    for (lot, body) in lots {
        let r = parkd.put_lot(lot, &body).await;
        assert!(r.status().is_success(), "PUT {lot}: {:?}", r.text().await);
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A sensor publishing readings to `broker` over MQTT.
fn sensor(broker: &Mosquitto) -> AsyncClient {
    let (sensor, mut eventloop) =
        AsyncClient::new(MqttOptions::new("find-test-sensor", "127.0.0.1", broker.port), 16);
    tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    sensor
}

async fn publish(sensor: &AsyncClient, device: &str, occupied: bool, seq: u32) {
    let payload = reading(device, occupied, seq, &now()).to_string();
    sensor.publish(format!("parking/uplink/{device}"), QoS::AtLeastOnce, false, payload).await.unwrap();
}

async fn free(parkd: &Parkd, lot: &str, class: &str) -> Option<u64> {
    parkd.availability(lot).await.1["classes"][class]["free"].as_u64()
}

async fn js(browser: &Client, script: &str) -> Value {
    browser.execute(script, vec![]).await.unwrap_or_else(|e| panic!("{script}: {e}"))
}

/// The page's free count for `lot` ("class:four_wheeler", "category:accessible").
async fn shown(browser: &Client, lot: &str, count: &str) -> Option<String> {
    text_of(browser, &format!(r#"li[data-lot="{lot}"] [data-count="{count}"]"#)).await
}

/// Every free count the page shows for `lot` equals the availability API's.
async fn counts_match_the_api(parkd: &Parkd, browser: &Client, lot: &str) -> bool {
    let (status, availability) = parkd.availability(lot).await;
    assert_eq!(status, StatusCode::OK);
    for kind in ["classes", "categories"] {
        let Some(groups) = availability[kind].as_object() else { continue };
        let prefix = if kind == "classes" { "class" } else { "category" };
        for (key, counts) in groups {
            if counts["total"] == 0 {
                continue;
            }
            let expected = counts["free"].to_string();
            if shown(browser, lot, &format!("{prefix}:{key}")).await.as_deref() != Some(expected.as_str()) {
                return false;
            }
        }
    }
    true
}

async fn page_order(browser: &Client) -> Vec<String> {
    let order =
        js(browser, "return [...document.querySelectorAll('#lots > li[data-lot]')].map(e => e.dataset.lot)");
    serde_json::from_value(order.await).unwrap()
}

/// The page's own accessibility check: names of markers and images,
/// landmarks, a labelled list, a polite live region, and the contrast of
/// every visible text against its background (WCAG 2 relative luminance).
const ACCESSIBILITY_CHECK: &str = r#"
const problems = [];
const named = (e) => (e.getAttribute('aria-label') || '').trim()
  || (e.getAttribute('aria-labelledby') || '').split(/\s+/).filter(Boolean)
       .map((id) => (document.getElementById(id) || {}).textContent || '').join(' ').trim()
  || ((e.querySelector(':scope > title') || {}).textContent || '').trim();
const graphics = [...document.querySelectorAll('img, svg a, svg [role=img]')];
for (const g of graphics) if (!named(g)) problems.push('no accessible name: ' + g.outerHTML.slice(0, 80));
for (const [css, what] of [['header', 'banner'], ['main', 'main'], ['footer', 'contentinfo'], ['h1', 'h1']]) {
  if (document.querySelectorAll(css).length !== 1) problems.push('want exactly one ' + what);
}
if (!document.documentElement.lang) problems.push('no lang on <html>');
if (!named(document.getElementById('lots'))) problems.push('the list of lots has no label');
for (const li of document.querySelectorAll('#lots > li[data-lot]')) if (!named(li)) problems.push('unnamed lot entry');
if (!document.querySelector('[aria-live=polite]')) problems.push('no polite live region');
if (!named(document.getElementById('plan'))) problems.push('the plan has no label');
const rgba = (s) => (s.match(/[\d.]+/g) || []).map(Number);
const channel = (c) => { c /= 255; return c <= 0.04045 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4); };
const luminance = ([r, g, b]) => 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
const background = (e) => {
  for (let n = e; n; n = n.parentElement) {
    const c = rgba(getComputedStyle(n).backgroundColor);
    if (c.length === 3 || (c.length === 4 && c[3] > 0)) return c.slice(0, 3);
  }
  return [255, 255, 255];
};
let pairs = 0;
for (const e of document.querySelectorAll('h1, h2, h3, p, dt, dd, .free, .badge, button, time')) {
  if (!e.textContent.trim() || !e.getClientRects().length) continue;
  const fg = rgba(getComputedStyle(e).color).slice(0, 3);
  const [hi, lo] = [luminance(fg), luminance(background(e))].sort((a, b) => b - a);
  const ratio = (hi + 0.05) / (lo + 0.05);
  pairs += 1;
  if (ratio < 4.5) problems.push('contrast ' + ratio.toFixed(2) + ':1 for "' + e.textContent.trim().slice(0, 30) + '"');
}
return { problems, pairs, graphics: graphics.length };
"#;

/// Tabs through the page; answers each element reached (its id) and
/// whether its focus was visible.
async fn tab_through(browser: &Client, presses: usize) -> Vec<(String, bool)> {
    use fantoccini::actions::{InputSource, KeyAction, KeyActions};
    use fantoccini::key::Key;
    let mut reached = Vec::new();
    for _ in 0..presses {
        let tab = KeyActions::new("keyboard".into())
            .then(KeyAction::Down { value: Key::Tab.into() })
            .then(KeyAction::Up { value: Key::Tab.into() });
        browser.perform_actions(tab).await.unwrap();
        let focused = js(
            browser,
            "const e = document.activeElement;
             const inPlan = e.closest('svg') !== null;
             const style = getComputedStyle(inPlan ? e.querySelector('circle') : e);
             const visible = inPlan ? parseFloat(style.strokeWidth) >= 3
                                    : style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 2;
             return [e.id || e.tagName, e.matches(':focus-visible') && visible];",
        )
        .await;
        reached.push(serde_json::from_value(focused).unwrap());
    }
    reached
}

/// The distance as the page writes it.
fn distance_text(meters: f64) -> String {
    if meters < 1000.0 {
        format!("{} m away", meters.round())
    } else {
        format!("{:.1} km away", meters / 1000.0)
    }
}

async fn the_public_page_shows_nearby_lots_live_and_accessibly(backend: Backend) {
    let broker = Mosquitto::start().unwrap();
    let parkd = Parkd::bridging(broker.url(), backend).await.unwrap();
    provision(&parkd).await;
    let sensor = sensor(&broker);
    for (i, device) in SENSORS.iter().enumerate() {
        // G-C0 and F-C1 occupied, every other bay free.
        publish(&sensor, device, matches!(i, 0 | 6), 1).await;
    }
    wait_for("the readings applied", || async {
        free(&parkd, "garage", "four_wheeler").await == Some(2)
            && free(&parkd, "depot", "four_wheeler").await == Some(2)
    })
    .await;

    // The page and its stream are public: no token, no sensor in the stream.
    let client = reqwest::Client::new();
    let page = client.get(parkd.url("/find")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(
        client.post(parkd.url("/find")).send().await.unwrap().status(),
        StatusCode::METHOD_NOT_ALLOWED
    );
    let mut stream = SseStream::open(&client, &parkd.url("/find/stream"), None).await.unwrap();
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let mut lots = std::collections::BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while lots.len() < 4 {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let event = stream.next(left).await.unwrap_or_else(|e| panic!("{e:#}: {lots:?}"));
        if event.event == "lot" {
            assert_eq!(event.id, None, "one stream of every lot has no ids");
            lots.insert(event.json()["lot"].as_str().unwrap().to_owned(), event.data);
        }
    }
    assert_eq!(lots.keys().collect::<Vec<_>>(), ["depot", "far", "garage", "main-street"]);
    assert!(lots["garage"].contains(r#""accessible":{"#), "{}", lots["garage"]);
    for device in SENSORS {
        assert!(
            !lots.values().any(|l| l.contains(device)),
            "the public stream shows sensor {device}: {lots:?}"
        );
    }
    drop(stream);

    // The garage's cars have a forecast, as the sweep stores it once it has
    // weeks of roll-ups (tests/e2e/forecast.rs fits real ones).
    let fitted = chrono::Utc::now();
    let forecast = json!({
        "horizon": "60m", "at": fitted + chrono::Duration::hours(1), "free": 1, "low": 0, "high": 2,
        "recentError": 0.5, "computedAt": fitted,
    });
    let db = parking_tests::db::Db::open(&parkd).await.unwrap();
    db.execute(&format!(
        "INSERT INTO lot_forecasts (lot_id, class, computed_at_ms, forecast) VALUES ('garage', 'four_wheeler', {}, '{forecast}')",
        fitted.timestamp_millis()
    ))
    .await;

    let driver = ChromeDriver::start();
    let origin = parkd.url("");

    // Desktop, location refused: every lot, by name.
    let profile = tempfile::tempdir().unwrap();
    let desktop = driver.browser(profile.path()).await;
    let denied = json!({ "permission": { "name": "geolocation" }, "setting": "denied", "origin": origin });
    cdp(&desktop, "Browser.setPermission", denied).await;
    desktop.goto(&parkd.url("/find")).await.unwrap();
    wait_for("every lot listed", || async { page_order(&desktop).await.len() == 4 }).await;
    wait_for("the location refused", || async {
        text_of(&desktop, "#where").await.is_some_and(|t| t.contains("Location not shared"))
    })
    .await;
    assert_eq!(page_order(&desktop).await, ["depot", "far", "main-street", "garage"], "all lots, by name");
    for lot in ["garage", "far", "depot"] {
        wait_for(&format!("{lot}'s counts as the API gives them"), || async {
            counts_match_the_api(&parkd, &desktop, lot).await
        })
        .await;
    }
    assert_eq!(shown(&desktop, "garage", "category:accessible").await.as_deref(), Some("0"));
    assert_eq!(shown(&desktop, "garage", "class:two_wheeler").await.as_deref(), Some("1"));
    let closed = text_of(&desktop, r#"li[data-lot="main-street"]"#).await.unwrap();
    assert!(closed.contains("Closed") && !closed.contains("Open"), "{closed}");
    assert!(text_of(&desktop, r#"li[data-lot="garage"] .badge"#).await.as_deref() == Some("Open"));
    let markers =
        js(&desktop, "return [...document.querySelectorAll('#plan a')].map(a => a.dataset.lot).sort()");
    assert_eq!(markers.await, json!(["far", "garage", "main-street"]), "a marker per located lot");
    let foreseen = text_of(&desktop, r#"li[data-lot="garage"] [data-forecast="four_wheeler"]"#).await;
    let foreseen = foreseen.expect("the garage's forecast is shown");
    assert!(
        foreseen.starts_with("Forecast for ") && foreseen.ends_with(": about 1 free (0 to 2)"),
        "{foreseen}"
    );
    let unforeseen = js(&desktop, "return document.querySelectorAll('[data-forecast]').length").await;
    assert_eq!(unforeseen, json!(1), "only the garage's cars have a forecast");
    let ages = text_of(&desktop, r#"li[data-lot="garage"] time"#).await.unwrap();
    assert!(ages.starts_with("updated ") && ages.ends_with(" ago"), "{ages}");

    let check = js(&desktop, ACCESSIBILITY_CHECK).await;
    assert_eq!(check["problems"], json!([]), "accessibility: {check}");
    assert!(check["pairs"].as_u64().unwrap() >= 20, "too few texts checked for contrast: {check}");
    assert_eq!(check["graphics"], 3, "the markers are what was checked for names: {check}");

    // No credential asked for or sent, nothing from elsewhere, no sensor id shown.
    let requests =
        js(&desktop, "return [location.href, ...performance.getEntriesByType('resource').map(e => e.name)]");
    let requests: Vec<String> = serde_json::from_value(requests.await).unwrap();
    assert!(requests.iter().any(|r| r.contains("/api/v1/lots")), "{requests:?}");
    for r in &requests {
        assert!(r.starts_with(&origin) && !r.to_lowercase().contains("token"), "request {r}");
    }
    let html = js(&desktop, "return document.documentElement.outerHTML").await;
    for device in SENSORS {
        assert!(!html.as_str().unwrap().contains(device), "the page shows sensor {device}");
    }

    // Keyboard only: Tab reaches every entry and every marker, visibly.
    let reached = tab_through(&desktop, 12).await;
    for target in ["lot-garage", "lot-main-street", "lot-far", "lot-depot", "marker-garage", "marker-far"] {
        let seen = reached.iter().find(|(id, _)| id == target);
        assert!(seen.is_some_and(|(_, visible)| *visible), "{target} by Tab with visible focus: {reached:?}");
    }
    screenshot(&desktop, &format!("find-desktop-{backend:?}.png").to_lowercase()).await;

    // Live: a reading over MQTT changes the page, without a reload.
    wait_for("the live stream open", || async {
        text_of(&desktop, "#live").await.is_some_and(|t| t.starts_with("Live"))
    })
    .await;
    let loaded = js(&desktop, "window.sameDocument = true; return document.body.dataset.loaded").await;
    publish(&sensor, "G-C0", false, 2).await;
    wait_for("3 free cars at the garage, live", || async {
        shown(&desktop, "garage", "class:four_wheeler").await.as_deref() == Some("3")
    })
    .await;
    assert_eq!(shown(&desktop, "garage", "category:accessible").await.as_deref(), Some("1"));
    assert!(counts_match_the_api(&parkd, &desktop, "garage").await);
    let same = js(&desktop, "return [window.sameDocument === true, document.body.dataset.loaded]").await;
    assert_eq!(same, json!([true, loaded]), "changed by the stream: no reload, no new read of the list");
    let kept = text_of(&desktop, r#"li[data-lot="garage"] [data-forecast="four_wheeler"]"#).await;
    assert!(
        kept.is_some_and(|t| t.ends_with("about 1 free (0 to 2)")),
        "the forecast outlives a live update"
    );
    screenshot(&desktop, &format!("find-desktop-live-{backend:?}.png").to_lowercase()).await;
    // The narrowest phones: nothing wider than 360 px.
    desktop.set_window_size(360, 740).await.unwrap();
    wait_for("a 360 px wide window", || async {
        js(&desktop, "return window.innerWidth").await.as_u64().is_some_and(|w| w <= 360)
    })
    .await;
    let fits = js(&desktop, "return [window.innerWidth, document.documentElement.scrollWidth]").await;
    assert!(fits[1].as_u64() <= fits[0].as_u64(), "nothing wider than 360 px: {fits}");
    desktop.close().await.unwrap();

    // A phone that shares its location: the nearest lots first, with distances.
    let profile = tempfile::tempdir().unwrap();
    let phone = driver.phone(profile.path()).await;
    cdp(&phone, "Browser.grantPermissions", json!({ "permissions": ["geolocation"], "origin": origin }))
        .await;
    let position = json!({ "latitude": HERE.0, "longitude": HERE.1, "accuracy": 10 });
    cdp(&phone, "Emulation.setGeolocationOverride", position).await;
    phone.goto(&parkd.url("/find")).await.unwrap();
    wait_for("the nearest lots", || async {
        js(&phone, "return document.body.dataset.mode").await == json!("near")
    })
    .await;
    assert_eq!(page_order(&phone).await, ["garage", "main-street", "far"], "nearest first, located only");
    let near = client
        .get(parkd.url(&format!("/api/v1/lots?near={},{}&radius=10000", HERE.0, HERE.1)))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    for lot in near["lots"].as_array().unwrap() {
        let id = lot["lot"].as_str().unwrap();
        let meta = text_of(&phone, &format!(r#"li[data-lot="{id}"] [data-field="meta"]"#)).await.unwrap();
        let distance = distance_text(lot["distanceMeters"].as_f64().unwrap());
        assert!(meta.contains(&distance), "{id}: {meta:?} should say {distance:?}");
    }
    assert!(counts_match_the_api(&parkd, &phone, "garage").await);
    let you = js(&phone, "return document.getElementById('you').getAttribute('aria-label')").await;
    assert_eq!(you, "You are here");
    let fits = js(&phone, "return [window.innerWidth, document.documentElement.scrollWidth]").await;
    assert_eq!(fits[0], 390, "the phone's viewport: {fits}");
    assert!(fits[1].as_u64() <= fits[0].as_u64(), "nothing wider than the phone: {fits}");
    let check = js(&phone, ACCESSIBILITY_CHECK).await;
    assert_eq!(check["problems"], json!([]), "accessibility on the phone: {check}");
    screenshot(&phone, &format!("find-phone-{backend:?}.png").to_lowercase()).await;
    phone.close().await.unwrap();
}
