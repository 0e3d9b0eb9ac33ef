//! `ems-gateway rules check` end to end on examples/rules.toml: the lines per rule, the winner,
//! the day type, `--json`, and exit 2 with the field-naming error for a bad file.
// Test code: a failed unwrap or panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output, Stdio};

const RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/rules.toml");

fn check(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ems-gateway"))
        .args(["rules", "check"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn prints_each_rule_the_winner_and_the_day_type() {
    // Tuesday 5 May 2026, 15:00 CEST, SOC 45 %: the afternoon NO_DISCHARGE rule fires.
    let o = check(&[RULES, "--at", "2026-05-05T15:00:00+02:00", "--soc", "45", "--price", "0.34"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("day: 2026-05-05 Tuesday, working day"), "{text}");
    assert!(
        text.contains("rule 0 \"no discharge before the evening peak\": fires, wins: NO_DISCHARGE"),
        "{text}"
    );
    assert!(
        text.contains("rule 1 \"charge overnight when cheap\": not fired (window: 15:00 not in 23:00-06:30)"),
        "{text}"
    );
    assert!(text.contains("rule 5 \"negative price\": not fired (price_below"), "{text}");
    assert!(
        text.trim_end().ends_with("winner: no discharge before the evening peak (NO_DISCHARGE)"),
        "{text}"
    );
    // One line per rule of the file.
    assert_eq!(text.lines().filter(|l| l.starts_with("rule ")).count(), 6, "{text}");
}

#[test]
fn conflicts_and_holidays_show_who_lost_and_why() {
    // Ascension Day (Thursday 14 May 2026), 14:00 CEST with a PV surplus and a low SOC: "solar
    // noon" (priority 5, NO_DISCHARGE) beats the holiday reserve (priority 1).
    let o = check(&[RULES, "--at", "2026-05-14T12:00:00Z", "--soc", "20", "--pv-surplus-w", "4000"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("day: 2026-05-14 Thursday, holiday (Ascension Day)"), "{text}");
    assert!(
        text.contains(
            "rule 4 \"weekend reserve\": fires (NO_DISCHARGE), loses to \"solar noon\": priority 1 < 5"
        ),
        "{text}"
    );
    assert!(text.contains("[latched until 2026-05-14 20:5"), "{text}");
    assert!(text.trim_end().ends_with("winner: solar noon (NO_DISCHARGE)"), "{text}");
    // Nothing fires: winner none.
    let o = check(&[RULES, "--at", "2026-05-05T10:00:00Z", "--price", "0.2"]);
    assert!(stdout(&o).trim_end().ends_with("winner: none"), "{}", stdout(&o));
}

#[test]
fn json_prints_the_decision() {
    let o = check(&[
        RULES,
        "--at",
        "2026-05-06T00:00:00Z",
        "--soc",
        "45",
        "--price",
        "0.08",
        "--capacity-wh",
        "10000",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // 02:00 CEST: 3.5 kWh missing to 80 % of 10 kWh, 4.5 h until 06:30 → 778 W.
    assert_eq!(v["winner"]["name"], "charge overnight when cheap");
    assert_eq!(v["winner"]["id"], 1);
    assert_eq!(v["winner"]["action"]["mode"], "FORCE_CHARGE");
    let w = v["winner"]["action"]["power"].as_f64().unwrap();
    assert!((w - 3500.0 / 4.5).abs() < 1.0, "{w}");
    assert_eq!(v["day"], "working");
    assert_eq!(v["fired"], serde_json::json!(["charge overnight when cheap"]));
    assert_eq!(v["rules"].as_array().unwrap().len(), 6);
}

#[test]
fn a_bad_file_or_flag_exits_2_naming_the_field_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[rules]]\nname = \"x\"\npriority = 1\n[rules.action]\nmode = \"LIMIT_CHARGE\"\nmaxChargePower = -100\n",
    )
    .unwrap();
    let o = check(&[bad.to_str().unwrap(), "--at", "2026-05-05T10:00:00Z"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("rules[0].action.maxChargePower = -100: must be >= 0 W"), "{}", stderr(&o));
    let o = check(&[RULES, "--at", "yesterday"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--at = yesterday"), "{}", stderr(&o));
    let o = check(&[RULES, "--at", "2026-05-05T10:00:00Z", "--soc", "130"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--soc = 130"), "{}", stderr(&o));
    let o = check(&[dir.path().join("missing.toml").to_str().unwrap(), "--at", "2026-05-05T10:00:00Z"]);
    assert_eq!(o.status.code(), Some(2));
}
