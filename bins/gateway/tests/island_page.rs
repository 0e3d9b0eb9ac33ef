//! The operator page's island panel in a real Chromium (issue #13 item 6): the built-in simulated
//! site with an island whose grid fails 10 s in and stays away. The panel shows the transfer
//! (ISLANDED, breaker open, grid-forming, the critical circuits back, the battery held at 0 W);
//! an E-stop while islanded de-energises the island and the panel says so; once the E-stop is
//! reset, the operator brings the island back from the page: a reset of the island's safe stop
//! or a black start, each with a reason, each refused without one.
// Test code: a failed unwrap or panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/browser.rs"]
mod browser;
mod support;

use browser::{click, text, wait_text};
use fantoccini::{Client, Locator};
use std::time::{Duration, Instant};

/// Wait until `#id` is enabled (`true`) or disabled (`false`).
async fn wait_enabled(c: &Client, id: &str, enabled: bool, secs: u64) {
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        let e = c.find(Locator::Id(id)).await.unwrap();
        if e.is_enabled().await.unwrap() == enabled {
            return;
        }
        assert!(
            Instant::now() < until,
            "#{id} never became {}",
            if enabled { "enabled" } else { "disabled" }
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Wait until a row of the circuits table reads `want` (cells joined by single spaces).
async fn wait_load(c: &Client, want: &str, secs: u64) {
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        let rows = c.find_all(Locator::Css("#island-loads tr")).await.unwrap();
        let mut seen = Vec::new();
        for r in rows {
            let cells = r.find_all(Locator::Css("td")).await.unwrap();
            let mut t = Vec::new();
            for cell in cells {
                t.push(cell.text().await.unwrap());
            }
            seen.push(t.join(" "));
        }
        if seen.iter().any(|r| r == want) {
            return;
        }
        assert!(Instant::now() < until, "no circuit row {want:?} in {seen:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn type_reason(c: &Client, reason: &str) {
    let e = c.find(Locator::Id("island-reason")).await.unwrap();
    e.clear().await.unwrap();
    e.send_keys(reason).await.unwrap();
}

#[tokio::test]
async fn the_page_shows_the_island_and_brings_it_back_after_an_estop() {
    let dir = tempfile::tempdir().unwrap();
    let Some(browser) = browser::open(dir.path(), &["--window-size=1400,1600"]).await else {
        return;
    };
    let c = browser.client.clone();
    let file = dir.path().join("island.toml");
    std::fs::write(
        &file,
        "[island]\noutages = [{ at_s = 10, for_s = 100000 }]\n\
         [[island.loads]]\nname = \"fridge\"\npriority = 0\nnominal_w = 300\n\
         [[island.loads]]\nname = \"heat pump\"\npriority = 2\nnominal_w = 1500\n",
    )
    .unwrap();
    let g = support::start_with(&dir.path().join("gw.state"), &["--island", file.to_str().unwrap()]);

    c.goto(&format!("http://{}/", g.addr)).await.unwrap();
    c.find(Locator::Id("token")).await.unwrap().send_keys(&g.token).await.unwrap();
    click(&c, "login").await;
    wait_text(&c, "whoami", "(admin)", 30).await;
    assert!(c.find(Locator::Id("island-panel")).await.unwrap().is_displayed().await.unwrap());

    // The grid fails: the panel follows the transfer without a reload (2 s refresh).
    wait_text(&c, "island-state", "ISLANDED", 60).await;
    wait_text(&c, "island-summary", "the battery supplies the critical circuits", 5).await;
    wait_text(&c, "island-breaker", "open", 5).await;
    wait_text(&c, "island-inverter", "grid-forming", 5).await;
    wait_text(&c, "island-bound", "held at 0 W: islanded", 5).await;
    wait_text(&c, "island-detection", "tripped", 5).await;
    wait_text(&c, "island-close", "breaker may not close", 5).await;
    wait_load(&c, "fridge 0 (critical) 300 W on on", 30).await;
    wait_text(&c, "island-events", "grid", 5).await;
    // Events are stamped with the clock time, not seconds since boot.
    let events = text(&c, "island-events").await;
    assert!(events.contains(':'), "clock time in {events:?}");
    // Nothing to reset or black-start while islanded.
    wait_enabled(&c, "island-black-start", false, 5).await;
    wait_enabled(&c, "island-reset", false, 5).await;

    // An E-stop while islanded de-energises the island: the panel says so.
    let (code, v) = support::http(&g, "POST", "/api/v1/emergency-stop", Some("{}"), true);
    assert_eq!(code, 200, "{v}");
    wait_text(&c, "island-alert", "emergency stop holds the island down", 30).await;
    wait_load(&c, "fridge 0 (critical) 300 W off off", 30).await;
    // The operator clears the E-stop; the island's own sequence now waits for an operator.
    let body = serde_json::json!({ "reason": "test: E-stop cause checked" }).to_string();
    let (code, v) = support::http(&g, "POST", "/api/v1/reset", Some(&body), true);
    assert_eq!(code, 200, "{v}");
    let until = Instant::now() + Duration::from_secs(60);
    let state = loop {
        let s = text(&c, "island-state").await;
        if s == "SAFE STOP" || s == "BLACKOUT" {
            break s;
        }
        assert!(Instant::now() < until, "the island never waited for the operator (shows {s:?})");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    if state == "SAFE STOP" {
        wait_text(&c, "island-alert", "SAFE STOP", 5).await;
        wait_enabled(&c, "island-reset", true, 10).await;
        // Without a reason the page asks for one and sends nothing.
        click(&c, "island-reset").await;
        wait_text(&c, "message", "Enter the reason", 5).await;
        assert_eq!(text(&c, "island-state").await, "SAFE STOP");
        type_reason(&c, "test: inverter and breaker checked").await;
        click(&c, "island-reset").await;
        wait_text(&c, "message", "Reset: accepted", 10).await;
        wait_text(&c, "island-state", "BLACKOUT", 30).await;
    }
    wait_text(&c, "island-alert", "A black start needs an operator", 10).await;
    wait_enabled(&c, "island-black-start", true, 10).await;
    type_reason(&c, "test: site checked, energise the critical circuits").await;
    click(&c, "island-black-start").await;
    wait_text(&c, "message", "Black start: accepted", 10).await;
    wait_text(&c, "island-state", "ISLANDED", 60).await;
    wait_load(&c, "fridge 0 (critical) 300 W on on", 60).await;

    // Both actions are in the audit log with their reasons.
    let (code, v) = support::http(&g, "GET", "/api/v1/audit?limit=50", None, true);
    assert_eq!(code, 200, "{v}");
    let audit = v.to_string();
    assert!(audit.contains("island/black-start (test: site checked"), "{audit}");
}
