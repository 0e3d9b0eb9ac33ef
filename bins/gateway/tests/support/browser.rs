//! Headless Chromium through chromedriver and fantoccini, shared by the page tests: start the
//! driver, open a session, find, read, wait for and click elements by id.
//!
//! Needs Debian's `chromium` and `chromium-driver`: `scripts/test` installs them and sets
//! `EMS_CHROMEDRIVER` (and `EMS_CHROMIUM`); without it [`open`] says the test is skipped.
// Test code: a failed unwrap or panic is a failed test with its message; a helper that one
// test binary does not call is dead code there.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

/// The chromedriver process; killed when dropped.
pub(crate) struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A browser session and the driver behind it.
pub(crate) struct Browser {
    /// The WebDriver session.
    pub client: Client,
    _driver: Driver,
}

/// Start chromedriver and open a headless Chromium session with its profile in `dir` and the
/// `extra` command-line arguments; `None` (and a message) when `EMS_CHROMEDRIVER` is not set.
pub(crate) async fn open(dir: &Path, extra: &[&str]) -> Option<Browser> {
    let Ok(chromedriver) = std::env::var("EMS_CHROMEDRIVER") else {
        eprintln!("skipped: EMS_CHROMEDRIVER is not set (scripts/test installs Chromium and sets it)");
        return None;
    };
    let chromium = std::env::var("EMS_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let driver = Driver(
        Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut args: Vec<String> = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    .iter()
    .chain(extra)
    .map(|a| (*a).to_owned())
    .collect();
    args.push(format!("--user-data-dir={}", dir.join("chromium-profile").display()));
    let caps: serde_json::Map<String, serde_json::Value> = serde_json::from_value(
        serde_json::json!({ "goog:chromeOptions": { "binary": chromium, "args": args } }),
    )
    .unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    let client = loop {
        match ClientBuilder::rustls()
            .unwrap()
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => break c,
            Err(e) => {
                assert!(Instant::now() < until, "chromedriver did not come up: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    Some(Browser { client, _driver: driver })
}

/// The text of element `#id` (empty when it is not there).
pub(crate) async fn text(c: &Client, id: &str) -> String {
    match c.find(Locator::Id(id)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Wait up to `secs` for `#id` to show `want`.
pub(crate) async fn wait_text(c: &Client, id: &str, want: &str, secs: u64) {
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        let t = text(c, id).await;
        if t.contains(want) {
            return;
        }
        assert!(Instant::now() < until, "#{id} never showed {want:?} (shows {t:?})");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Click `#id`.
pub(crate) async fn click(c: &Client, id: &str) {
    c.find(Locator::Id(id)).await.unwrap_or_else(|e| panic!("#{id}: {e}")).click().await.unwrap();
}
