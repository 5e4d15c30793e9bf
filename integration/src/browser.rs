//! A real headless Chromium for the web page's tests, driven over WebDriver (Debian's
//! `chromium` and `chromium-driver`, with the `fantoccini` client): [`Browser::start`] runs
//! `chromedriver` on a free loopback port and opens one session at a fixed window size, in UTC,
//! so that screenshots are the same from run to run. Killed on drop.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fantoccini::{Client, ClientBuilder, Locator};

/// The window every test uses (and every screenshot has).
pub const WIDTH: u32 = 1280;
pub const HEIGHT: u32 = 800;

/// `chromedriver` and the session it drives.
pub struct Browser {
    driver: Child,
    pub client: Client,
    _profile: tempfile::TempDir,
}

/// Where chromedriver is, or why the browser tests cannot run: `None` with the reason printed
/// (the tests skip), unless LITEOBS_REQUIRE_PRIVILEGED=1 (CI), where its absence fails them.
pub fn chromedriver(test: &str) -> Option<std::path::PathBuf> {
    let found = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists());
    if found.is_none() {
        assert!(
            std::env::var("LITEOBS_REQUIRE_PRIVILEGED").as_deref() != Ok("1"),
            "{test} needs chromium and chromium-driver (scripts/test.sh installs them), and \
             LITEOBS_REQUIRE_PRIVILEGED=1 forbids skipping it"
        );
        eprintln!("SKIPPED {test}: chromedriver is not installed (apt install chromium chromium-driver)");
    }
    found
}

impl Browser {
    pub async fn start(chromedriver: &std::path::Path) -> anyhow::Result<Browser> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .env("TZ", "UTC")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", chromedriver.display()))?;
        let profile = tempfile::tempdir()?;
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "args": [
                    "--headless=new",
                    // As root (CI), Chromium's sandbox cannot start; the page is our own.
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--force-device-scale-factor=1",
                    "--hide-scrollbars",
                    "--lang=en-US",
                    format!("--window-size={WIDTH},{HEIGHT}"),
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }),
        );
        let started = Instant::now();
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(c) => break c,
                Err(e) if started.elapsed() < Duration::from_secs(20) => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => bail!("no WebDriver session from chromedriver on port {port}: {e}"),
            }
        };
        // The window's outer size, so that the page's viewport is the same everywhere.
        client.set_window_size(WIDTH, HEIGHT).await.context("window size")?;
        Ok(Browser { driver, client, _profile: profile })
    }

    /// Runs `script` (its `return` value answered), as the page's own JavaScript.
    pub async fn js(&self, script: &str) -> serde_json::Value {
        self.client.execute(script, vec![]).await.unwrap_or_else(|e| panic!("{script}: {e}"))
    }

    /// Waits (up to 15 s) until `script` returns `true`; panics with `what` and the last value.
    pub async fn until(&self, what: &str, script: &str) {
        let started = Instant::now();
        loop {
            let value = self.js(script).await;
            if value == serde_json::Value::Bool(true) {
                return;
            }
            if started.elapsed() > Duration::from_secs(15) {
                let status = self.js("return document.getElementById('status')?.textContent").await;
                panic!(
                    "timed out waiting for {what} ({script} gave {value}; the page's status line: {status})"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn click(&self, css: &str) {
        let e = self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}"));
        e.click().await.unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// Types `keys` into the element `css` (WebDriver key codes included, e.g. Enter).
    pub async fn type_into(&self, css: &str, keys: &str) {
        let e = self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}"));
        e.send_keys(keys).await.unwrap_or_else(|e| panic!("keys to {css}: {e}"));
    }

    /// Sends `keys` to whatever has the focus, as a user's keyboard does.
    pub async fn press(&self, keys: &str) {
        let active = self.client.active_element().await.unwrap_or_else(|e| panic!("active element: {e}"));
        active.send_keys(keys).await.unwrap_or_else(|e| panic!("keys: {e}"));
    }

    pub async fn select(&self, css: &str, value: &str) {
        let e = self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}"));
        e.select_by_value(value).await.unwrap_or_else(|e| panic!("select {value} in {css}: {e}"));
    }

    pub async fn screenshot(&self) -> Vec<u8> {
        self.client.screenshot().await.unwrap_or_else(|e| panic!("screenshot: {e}"))
    }

    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// WebDriver's code for a key (W3C WebDriver §17.4.2), to put in [`Browser::press`]'s text.
pub fn key(k: fantoccini::key::Key) -> String {
    char::from(k).to_string()
}
