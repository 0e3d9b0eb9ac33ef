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

#[path = "support/browser.rs"]
mod browser;
mod support;

use browser::{click, text, wait_text};

use std::time::{Duration, Instant};

use fantoccini::Locator;

#[tokio::test]
async fn operator_page_shows_live_values_and_runs_the_estop_and_reset_flow() {
    let dir = tempfile::tempdir().unwrap();
    let Some(browser) = browser::open(dir.path(), &[]).await else { return };
    let c = browser.client.clone();
    let g = support::start(&dir.path().join("gw.state"));

    c.goto(&format!("http://{}/", g.addr)).await.unwrap();
    c.find(Locator::Id("token")).await.unwrap().send_keys(&g.token).await.unwrap();
    click(&c, "login").await;
    wait_text(&c, "state", "RUNNING", 30).await;
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
    wait_text(&c, "state", "STOPPED", 30).await;
    let recovery = c.find(Locator::Id("recovery")).await.unwrap();
    assert!(recovery.is_displayed().await.unwrap(), "recovery instructions shown in STOPPED");

    // Reset with a reason, then start.
    c.find(Locator::Id("reset-reason")).await.unwrap().send_keys("checked the cabinet").await.unwrap();
    click(&c, "reset").await;
    wait_text(&c, "state", "IDLE", 30).await;
    click(&c, "start").await;
    wait_text(&c, "state", "RUNNING", 30).await;
    c.close().await.unwrap();
}
