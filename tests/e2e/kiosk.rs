//! The kiosk page in a real browser: Debian's headless Chromium, driven over
//! WebDriver (chromedriver) with fantoccini. A sensor reading published over
//! MQTT changes the number on the page; a stopped gateway makes the page
//! warn that its data may be stale, and it recovers when the gateway is back;
//! frames that stop coming while the connection lives make it warn by the
//! data's age.
//! Screenshots are written under the target directory and their paths printed.

use std::sync::Arc;
use std::time::Duration;

use parkd::database::Database;
use parkd::gateway::{self, Gateway, GatewayConfig};
use parking_tests::browser::{ChromeDriver, Client, Locator, screenshot, text_of, wait_for};
use parking_tests::mosquitto::Mosquitto;
use parking_tests::terminals::token_for;
use parking_tests::{Backend, Parkd, ParkdOptions, lot_spec, reading};
use rumqttc::{AsyncClient, MqttOptions, QoS};

/// A gateway alone on its own port, as `parkd gateway` runs it.
struct StandaloneGateway {
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl StandaloneGateway {
    async fn start(broker: &Mosquitto, database: &Database, port: u16) -> Self {
        let config =
            GatewayConfig { keep_alive: Duration::from_secs(1), ..GatewayConfig::new(&broker.url()) };
        let gateway: Arc<Gateway> = Gateway::start(config, database).await.unwrap();
        gateway.ready(Duration::from_secs(10)).await.unwrap();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        Self { task: tokio::spawn(gateway::serve(gateway, listener, Default::default())) }
    }

    /// Stops it: its listener and every open stream close.
    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

async fn is_stale(browser: &Client) -> bool {
    let class = browser.execute("return document.body.className", vec![]).await.unwrap();
    class.as_str().unwrap_or_default().contains("stale")
}

/// Why the page says its data is stale: "contact", "age" or "" (it does not).
async fn stale_reason(browser: &Client) -> String {
    let reason = browser.execute("return document.body.dataset.stale || ''", vec![]).await.unwrap();
    reason.as_str().unwrap_or_default().to_owned()
}

/// Now, as a sensor stamps its reading.
fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A sensor publishing readings to `broker` over MQTT.
fn sensor(broker: &Mosquitto, id: &str) -> AsyncClient {
    let (sensor, mut eventloop) = AsyncClient::new(MqttOptions::new(id, "127.0.0.1", broker.port), 16);
    tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    sensor
}

async fn publish(sensor: &AsyncClient, device: &str, occupied: bool, seq: u32) {
    let payload = reading(device, occupied, seq, &now()).to_string();
    sensor.publish(format!("parking/uplink/{device}"), QoS::AtLeastOnce, false, payload).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kiosk_page_follows_readings_and_warns_when_the_gateway_is_gone() {
    let broker = Mosquitto::start().unwrap();
    let parkd = Parkd::bridging(broker.url(), Backend::Sqlite).await.unwrap();
    parkd.put_lot("north", &lot_spec("North", "N", 4, 2)).await;
    parkd.put_terminal("T1", "north", None).await;

    // The page comes from a gateway of its own, so it can be stopped and started.
    let database = Database::parse("sqlite", parkd.data_dir()).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let gateway = StandaloneGateway::start(&broker, &database, port).await;

    let sensor = sensor(&broker, "kiosk-test-sensor");
    publish(&sensor, "N-C0", false, 1).await;

    let driver = ChromeDriver::start();
    let profile = tempfile::tempdir().unwrap();
    let browser = driver.browser(profile.path()).await;
    browser.goto(&format!("http://127.0.0.1:{port}/terminals/T1?token={}", token_for("T1"))).await.unwrap();
    let cars = "#free-L1-four_wheeler";
    wait_for("1 free car bay", || async { text_of(&browser, cars).await.as_deref() == Some("1") }).await;

    publish(&sensor, "N-C1", false, 1).await;
    wait_for("2 free car bays after a reading", || async {
        text_of(&browser, cars).await.as_deref() == Some("2")
    })
    .await;
    assert!(!is_stale(&browser).await, "fresh data carries no warning");
    screenshot(&browser, "kiosk-live.png").await;

    gateway.stop().await;
    wait_for("the stale warning", || async { is_stale(&browser).await }).await;
    assert_eq!(stale_reason(&browser).await, "contact");
    let warning = browser.find(Locator::Id("stale")).await.unwrap();
    assert!(warning.is_displayed().await.unwrap());
    screenshot(&browser, "kiosk-stale.png").await;

    // Back on the same address: the page reconnects by itself, and follows again.
    let gateway = StandaloneGateway::start(&broker, &database, port).await;
    wait_for("recovery from the stale state", || async { !is_stale(&browser).await }).await;
    publish(&sensor, "N-C2", false, 1).await;
    wait_for("3 free car bays after recovery", || async {
        text_of(&browser, cars).await.as_deref() == Some("3")
    })
    .await;
    screenshot(&browser, "kiosk-recovered.png").await;

    browser.close().await.unwrap();
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kiosk_page_warns_when_frames_stop_though_the_connection_lives() {
    const MAX_AGE_SECS: u64 = 4;
    let broker = Mosquitto::start().unwrap();
    let parkd = Parkd::start_with(ParkdOptions {
        mqtt: parkd::up::MqttMode::External(broker.url()),
        // Pings every second: the connection stays visibly alive throughout.
        gateway_keep_alive: Duration::from_secs(1),
        ..ParkdOptions::new(Backend::Sqlite)
    })
    .await
    .unwrap();
    parkd.put_lot("north", &lot_spec("North", "N", 4, 0)).await;
    parkd.put_terminal("T1", "north", None).await;
    let sensor = sensor(&broker, "kiosk-age-sensor");
    publish(&sensor, "N-C0", false, 1).await;

    let driver = ChromeDriver::start();
    let profile = tempfile::tempdir().unwrap();
    let browser = driver.browser(profile.path()).await;
    browser
        .goto(&parkd.url(&format!("/terminals/T1?token={}&maxAge={MAX_AGE_SECS}", token_for("T1"))))
        .await
        .unwrap();
    let cars = "#free-L1-four_wheeler";
    wait_for("1 free car bay", || async { text_of(&browser, cars).await.as_deref() == Some("1") }).await;
    // The data ages while pings keep coming: the page warns by its age.
    wait_for("the stale warning by the data's age", || async { is_stale(&browser).await }).await;
    assert_eq!(stale_reason(&browser).await, "age", "the connection is alive: it is the data that is old");
    let warning = browser.find(Locator::Id("stale")).await.unwrap();
    assert!(warning.text().await.unwrap().contains("no new data since"));
    screenshot(&browser, "kiosk-stale-by-age.png").await;

    // A new frame makes it live again.
    publish(&sensor, "N-C1", false, 1).await;
    wait_for("2 free car bays", || async { text_of(&browser, cars).await.as_deref() == Some("2") }).await;
    wait_for("the warning gone with new data", || async { !is_stale(&browser).await }).await;
    browser.close().await.unwrap();
}
