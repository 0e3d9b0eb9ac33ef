//! The operator page's grid-services panel in a real Chromium (issue #13): on the simulated site
//! with `--grid-services` and FCR-N committed over the API, the panel shows the parameter set,
//! the committed service live with its activation and readiness, and the commitment.
// Test code: a failed unwrap or panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/browser.rs"]
mod browser;
mod support;

use browser::{click, wait_text};
use fantoccini::Locator;

#[tokio::test]
async fn the_page_shows_committed_grid_services_live() {
    let dir = tempfile::tempdir().unwrap();
    let Some(browser) = browser::open(dir.path(), &["--window-size=1400,1000"]).await else {
        return;
    };
    let c = browser.client.clone();
    let file = dir.path().join("grid.toml");
    std::fs::write(
        &file,
        "[grid_services]\n[grid_services.frequency]\nsource = \"simulated\"\nsignal = \"nominal\"\n[grid_services.fcr_n]\ncapacity_w = 1000\n",
    )
    .unwrap();
    let g = support::start_with(&dir.path().join("gw.state"), &["--grid-services", file.to_str().unwrap()]);
    let now = jiff::Timestamp::now();
    let body = serde_json::json!({ "commitments": [{
        "service": "fcr-n", "capacity_w": 800,
        "from": now.checked_sub(jiff::SignedDuration::from_mins(1)).unwrap().to_string(),
        "until": now.checked_add(jiff::SignedDuration::from_hours(1)).unwrap().to_string(),
    }] });
    let (code, v) = support::http(&g, "PUT", "/api/v1/grid-services", Some(&body.to_string()), true);
    assert_eq!(code, 200, "{v}");

    c.goto(&format!("http://{}/", g.addr)).await.unwrap();
    c.find(Locator::Id("token")).await.unwrap().send_keys(&g.token).await.unwrap();
    click(&c, "login").await;
    wait_text(&c, "whoami", "(admin)", 30).await;
    wait_text(&c, "grid-summary", "nordic-2025-v1.1", 30).await;
    wait_text(&c, "grid-summary", "active: fcr-n", 30).await;
    wait_text(&c, "grid-services", "ARMED", 30).await;
    wait_text(&c, "grid-commitments", "fcr-n 800 W", 30).await;
    assert!(c.find(Locator::Id("grid-panel")).await.unwrap().is_displayed().await.unwrap());
}
