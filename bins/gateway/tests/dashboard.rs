//! The energy dashboard of the operator page in headless Chromium (issue #12), driven through
//! chromedriver with fantoccini: the gateway runs its simulated site with live economics
//! (`--economics`, a copy of `examples/economics/sim.toml` in a temporary directory so that
//! saved rules stay there); sign in with the generated admin token, see the power-flow diagram
//! with values, the plan chart with its slots, refuse a bad rule with the server's error naming
//! the field, create a rule that fires now (FORCE_CHARGE all day) in the rule editor, save it,
//! and see it reported as what drives the battery; the stored set keeps the site's time zone. Screenshots go to `target/screenshots/dashboard-*.png`.
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

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};

/// Wait (at most `secs`) until `#id` shows `want`.
/// Wait until `#id` shows a number (thousands separators allowed) and return it.
async fn wait_number(c: &Client, id: &str) -> f64 {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let t = text(c, id).await;
        if let Ok(v) = t.replace(',', "").trim().parse::<f64>() {
            return v;
        }
        assert!(Instant::now() < until, "#{id} shows no number: {t:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn type_into(c: &Client, id: &str, value: &str) {
    let e = c.find(Locator::Id(id)).await.unwrap_or_else(|e| panic!("#{id}: {e}"));
    e.clear().await.unwrap();
    e.send_keys(value).await.unwrap();
}

/// A full-page screenshot (the window grown to the page's height) at
/// `target/screenshots/dashboard-<name>.png`.
async fn screenshot(c: &Client, name: &str) -> PathBuf {
    let height = c.execute("return document.body.scrollHeight;", vec![]).await.unwrap();
    let h = u32::try_from(height.as_u64().unwrap_or(2000)).unwrap_or(2000).clamp(800, 6000);
    c.set_window_size(1400, h + 140).await.unwrap();
    // Let the charts redraw at the new size.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"), PathBuf::from);
    let dir = target.join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("dashboard-{name}.png"));
    std::fs::write(&path, c.screenshot().await.unwrap()).unwrap();
    c.set_window_size(1400, 1000).await.unwrap();
    path
}

/// `examples/economics/sim.toml` and its `rules.toml` copied into `dir`, the file's `../` paths
/// made absolute (so that the rules the test saves land in `dir`, not in the repository).
fn economics_file(dir: &Path) -> PathBuf {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/economics");
    std::fs::copy(examples.join("rules.toml"), dir.join("rules.toml")).unwrap();
    let text = std::fs::read_to_string(examples.join("sim.toml")).unwrap();
    let parent = examples.join("..").canonicalize().unwrap();
    let text = text.replace("\"../", &format!("\"{}/", parent.display()));
    let path = dir.join("sim.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn dashboard_shows_flows_plan_and_a_rule_made_in_the_editor_driving_the_battery() {
    let dir = tempfile::tempdir().unwrap();
    let Some(browser) = browser::open(dir.path(), &["--window-size=1400,1000", "--hide-scrollbars"]).await
    else {
        return;
    };
    let c = browser.client.clone();
    let econ = economics_file(dir.path());
    let g = support::start_with(&dir.path().join("gw.state"), &["--economics", econ.to_str().unwrap()]);

    c.goto(&format!("http://{}/", g.addr)).await.unwrap();
    c.find(Locator::Id("token")).await.unwrap().send_keys(&g.token).await.unwrap();
    click(&c, "login").await;
    wait_text(&c, "whoami", "(admin)", 30).await;

    // The flow diagram: four values, a direction for the grid and the battery.
    for id in ["grid", "pv", "battery", "load"] {
        wait_number(&c, id).await;
    }
    let pv = wait_number(&c, "pv").await;
    assert!(pv >= 0.0, "PV is never negative: {pv}");
    assert!(!text(&c, "grid-dir").await.is_empty(), "grid direction shown");
    assert!(!text(&c, "battery-dir").await.is_empty(), "battery direction shown");
    assert!(c.find(Locator::Id("flow")).await.unwrap().is_displayed().await.unwrap());

    // Economics is configured: its panels are shown, the plan has slots.
    assert!(!c.find(Locator::Id("econ-missing")).await.unwrap().is_displayed().await.unwrap());
    wait_text(&c, "plan-info", "slots", 90).await;
    let info = text(&c, "plan-info").await;
    let slots: u32 = info.split_whitespace().next().unwrap().parse().unwrap_or_else(|_| panic!("{info}"));
    assert!(slots >= 4, "{info}");
    assert_ne!(text(&c, "drives").await.trim(), "–", "what drives the battery is shown");
    assert_ne!(text(&c, "price-basis").await.trim(), "–");
    // The plan chart and the history chart take the page's width (not half of it).
    let widths = c
        .execute(
            "return ['plan-chart', 'chart', 'main'].map(id => document.getElementById(id).clientWidth);",
            vec![],
        )
        .await
        .unwrap();
    let w = |i: usize| widths[i].as_f64().unwrap();
    assert!(w(0) > 0.8 * w(2) && w(1) > 0.8 * w(2), "charts {} and {} px of {} px", w(0), w(1), w(2));
    let shot = screenshot(&c, "overview").await;
    eprintln!("screenshot: {}", shot.display());

    // A bad rule: the server's error names the field and the value; nothing is stored.
    type_into(&c, "rule-name", "broken window").await;
    type_into(&c, "rule-from", "25:00").await;
    type_into(&c, "rule-to", "26:00").await;
    click(&c, "rule-add").await;
    click(&c, "rules-save").await;
    wait_text(&c, "rules-error", "when.from", 15).await;
    assert!(text(&c, "rules-error").await.contains("25:00"), "{}", text(&c, "rules-error").await);
    c.find(Locator::Css("#rules-list li:last-child button:last-child")).await.unwrap().click().await.unwrap();

    // A rule that fires now, the whole local day (the site's time zone need not be ours), and
    // sets the battery's power itself (a NO_DISCHARGE while the plan charges would only limit,
    // and the plan would still drive).
    type_into(&c, "rule-name", "dashboard test").await;
    type_into(&c, "rule-priority", "90").await;
    type_into(&c, "rule-from", "00:00").await;
    type_into(&c, "rule-to", "23:59").await;
    c.find(Locator::Id("rule-mode")).await.unwrap().select_by_value("FORCE_CHARGE").await.unwrap();
    type_into(&c, "rule-value", "1000").await;
    click(&c, "rule-add").await;
    click(&c, "rules-save").await;
    wait_text(&c, "rules-status", "Saved", 15).await;
    assert_eq!(text(&c, "rules-error").await, "", "saved without error");
    wait_text(&c, "rules-list", "dashboard test", 5).await;
    // The engine picks it up and the page reports it as what drives the battery.
    wait_text(&c, "drives", "dashboard test", 60).await;
    wait_text(&c, "active-rule", "dashboard test", 30).await;
    // What the page sent kept the rest of the stored set (the site's time zone, location).
    let stored = c
        .execute(
            "const x = new XMLHttpRequest(); x.open('GET', '/api/v1/rules', false); \
             x.setRequestHeader('Authorization', 'Bearer ' + sessionStorage.getItem('ems-token')); \
             x.send(); return JSON.parse(x.responseText);",
            vec![],
        )
        .await
        .unwrap();
    assert!(stored["time_zone"].is_string(), "{stored}");
    let mine = stored["rules"].as_array().unwrap().iter().find(|r| r["name"] == "dashboard test").cloned();
    let mine = mine.unwrap_or_else(|| panic!("{stored}"));
    assert_eq!(mine["action"]["mode"], "FORCE_CHARGE", "{mine}");
    assert_eq!(mine["when"]["from"], "00:00", "{mine}");
    assert!(!stored["rules"].as_array().unwrap().iter().any(|r| r["name"] == "broken window"), "{stored}");
    let shot = screenshot(&c, "rule").await;
    eprintln!("screenshot: {}", shot.display());
    c.close().await.unwrap();
}
