//! Pages in a real browser: Debian's headless Chromium driven over WebDriver
//! (chromedriver) with fantoccini, as the kiosk and operator tests use it.
//! Screenshots go under the target directory and their paths are printed.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use fantoccini::{Client, Locator};

/// chromedriver on a free port, for as long as the value lives.
pub struct ChromeDriver {
    port: u16,
    child: Child,
}

impl ChromeDriver {
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "chromedriver (Debian's chromium-driver; scripts/bootstrap.sh --test-servers installs it)",
            );
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(20), "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { port, child }
    }

    /// A headless Chromium session with its own throwaway profile, 1280×800.
    pub async fn browser(&self, profile: &Path) -> Client {
        self.session(profile, None).await
    }

    /// A headless Chromium session emulating a phone: a 390×844 viewport at
    /// 3 device pixels per CSS pixel, touch, a mobile user agent.
    pub async fn phone(&self, profile: &Path) -> Client {
        let emulation = serde_json::json!({
            "deviceMetrics": {"width": 390, "height": 844, "pixelRatio": 3.0, "touch": true, "mobile": true},
            "userAgent": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) \
                          Chrome/120.0 Mobile Safari/537.36",
        });
        self.session(profile, Some(emulation)).await
    }

    async fn session(&self, profile: &Path, mobile_emulation: Option<serde_json::Value>) -> Client {
        let mut options = serde_json::json!({
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1280,800", format!("--user-data-dir={}", profile.display()),
            ],
        });
        if let Some(emulation) = mobile_emulation {
            options["mobileEmulation"] = emulation;
        }
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("goog:chromeOptions".into(), options);
        fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a Chromium session")
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Chrome DevTools Protocol command, sent through chromedriver's
/// `goog/cdp/execute` (to the page the session shows).
#[derive(Debug)]
struct Cdp {
    body: String,
}

impl fantoccini::wd::WebDriverCompatibleCommand for Cdp {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/goog/cdp/execute", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(self.body.clone()))
    }
}

/// Runs a DevTools command (`Browser.grantPermissions`,
/// `Emulation.setGeolocationOverride`, ...) and answers its result.
pub async fn cdp(browser: &Client, command: &str, params: serde_json::Value) -> serde_json::Value {
    let body = serde_json::json!({ "cmd": command, "params": params }).to_string();
    browser
        .issue_cmd(Cdp { body })
        .await
        .unwrap_or_else(|e| panic!("the DevTools command {command} failed: {e}"))
}

/// `<target>/test-artefacts`, created if missing.
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::repo_root().join("target"));
    let dir = target.join("test-artefacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Saves the page as `name` under [`screenshot_dir`] and prints the path.
pub async fn screenshot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.unwrap();
    let path = screenshot_dir().join(name);
    std::fs::write(&path, png).unwrap();
    println!("screenshot: {}", path.display());
}

/// Waits until `check` holds on the page, or fails naming `what`.
pub async fn wait_for<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < Duration::from_secs(30), "the page never showed {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The text of the first element matching `css`, if there is one.
pub async fn text_of(browser: &Client, css: &str) -> Option<String> {
    browser.find(Locator::Css(css)).await.ok()?.text().await.ok()
}
