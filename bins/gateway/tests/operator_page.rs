//! The operator page in headless Chromium (issue #6), driven through chromedriver with
//! fantoccini: load the page of a running gateway, sign in with the generated admin token, see
//! live values, press the big red E-stop, confirm, see STOPPED and the recovery instructions,
//! reset with a reason, start, see RUNNING again.
//!
//! Needs Debian's `chromium` and `chromium-driver`: `scripts/test` installs them and sets
//! `EMS_CHROMEDRIVER` (and `EMS_CHROMIUM`); without it plain `cargo test` skips this test and
//! says so.
// Test code: a failed unwrap or panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn text(c: &Client, id: &str) -> String {
    match c.find(Locator::Id(id)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

async fn wait_text(c: &Client, id: &str, want: &str) {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let t = text(c, id).await;
        if t.contains(want) {
            return;
        }
        assert!(Instant::now() < until, "#{id} never showed {want:?} (shows {t:?})");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn click(c: &Client, id: &str) {
    c.find(Locator::Id(id)).await.unwrap_or_else(|e| panic!("#{id}: {e}")).click().await.unwrap();
}

#[tokio::test]
async fn operator_page_shows_live_values_and_runs_the_estop_and_reset_flow() {
    let Ok(chromedriver) = std::env::var("EMS_CHROMEDRIVER") else {
        eprintln!("skipped: EMS_CHROMEDRIVER is not set (scripts/test installs Chromium and sets it)");
        return;
    };
    let chromium = std::env::var("EMS_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    let dir = tempfile::tempdir().unwrap();
    let g = support::start(&dir.path().join("gw.state"));

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let _driver = Driver(
        Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let profile = dir.path().join("chromium-profile");
    let caps: serde_json::Map<String, serde_json::Value> = serde_json::from_value(serde_json::json!({
        "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                format!("--user-data-dir={}", profile.display()),
            ]
        }
    }))
    .unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    let c = loop {
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

    c.goto(&format!("http://{}/", g.addr)).await.unwrap();
    c.find(Locator::Id("token")).await.unwrap().send_keys(&g.token).await.unwrap();
    click(&c, "login").await;
    wait_text(&c, "state", "RUNNING").await;
    // Live values arrive and change (the grid power moves with load and PV every cycle).
    let until = Instant::now() + Duration::from_secs(30);
    while text(&c, "soc").await.trim().parse::<f64>().is_err() {
        assert!(Instant::now() < until, "no SOC on the page: {:?}", text(&c, "soc").await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let first = text(&c, "grid").await;
    while text(&c, "grid").await == first {
        assert!(Instant::now() < until, "grid power never changed from {first:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The big red button, with confirmation.
    click(&c, "estop").await;
    click(&c, "estop-confirm").await;
    wait_text(&c, "state", "STOPPED").await;
    let recovery = c.find(Locator::Id("recovery")).await.unwrap();
    assert!(recovery.is_displayed().await.unwrap(), "recovery instructions shown in STOPPED");

    // Reset with a reason, then start.
    c.find(Locator::Id("reset-reason")).await.unwrap().send_keys("checked the cabinet").await.unwrap();
    click(&c, "reset").await;
    wait_text(&c, "state", "IDLE").await;
    click(&c, "start").await;
    wait_text(&c, "state", "RUNNING").await;
    c.close().await.unwrap();
}
