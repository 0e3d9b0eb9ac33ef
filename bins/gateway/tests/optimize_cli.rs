//! `ems-gateway optimize` end to end: the JSON interface of issue #5 on the example day (real
//! SMARD prices with negative hours, BDEW load, TMY3 PV), and errors naming line and column or
//! the flag and value.
// Test code: a failed unwrap or panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output, Stdio};

const DAY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/optimizer/day.csv");

fn optimize(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ems-gateway"))
        .arg("optimize")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn optimize_prints_the_plan_as_json_with_the_documented_keys_and_conventions() {
    let o = optimize(&["--input", DAY]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for key in ["total_cost", "battery_w", "soc", "grid_w", "solve_time_s", "status"] {
        assert!(v.get(key).is_some(), "missing {key}: {v}");
    }
    assert_eq!(v["status"], "optimal");
    let b: Vec<f64> = serde_json::from_value(v["battery_w"].clone()).unwrap();
    let g: Vec<f64> = serde_json::from_value(v["grid_w"].clone()).unwrap();
    let soc: Vec<f64> = serde_json::from_value(v["soc"].clone()).unwrap();
    assert_eq!((b.len(), g.len(), soc.len()), (96, 96, 96));
    // Recompute from the CSV: grid = load − pv − battery; cost = Σ (import·p_imp − export·p_exp)·Δt.
    let text = std::fs::read_to_string(DAY).unwrap();
    let mut cost = 0.0;
    let mut e = 0.5 * 10_000.0;
    for (i, line) in text.lines().skip(1).enumerate() {
        let f: Vec<f64> = line.split(',').skip(1).map(|x| x.parse().unwrap()).collect();
        let (pv, load, pi, pe) = (f[0], f[1], f[2], f[3]);
        assert!((g[i] - (load - pv - b[i])).abs() < 1e-3, "step {i}");
        let kwh = g[i] * 0.25 / 1000.0;
        cost += if kwh > 0.0 { kwh * pi } else { kwh * pe };
        e += if b[i] > 0.0 { -b[i] * 0.25 / 0.95 } else { -b[i] * 0.25 * 0.95 };
        assert!((e / 10_000.0 - soc[i]).abs() < 1e-6, "soc step {i}: {} vs {}", e / 10_000.0, soc[i]);
        assert!((0.1 - 1e-9..=0.9 + 1e-9).contains(&soc[i]));
        assert!(b[i] <= 5000.0 + 1e-6 && b[i] >= -5000.0 - 1e-6);
    }
    assert!((cost - v["total_cost"].as_f64().unwrap()).abs() < 1e-6, "{cost} vs {}", v["total_cost"]);
    assert!(soc[95] >= 0.5 - 1e-9, "final SOC {}", soc[95]);
    // The battery earns its keep on this day: cheaper than leaving it idle at the same final SOC.
    let idle: f64 = text
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<f64> = l.split(',').skip(1).map(|x| x.parse().unwrap()).collect();
            let kwh = (f[1] - f[0]) * 0.25 / 1000.0;
            if kwh > 0.0 {
                kwh * f[2]
            } else {
                kwh * f[3]
            }
        })
        .sum();
    assert!(cost < idle, "plan {cost} vs idle battery {idle}");
}

#[test]
fn optimize_flags_change_the_problem() {
    let o = optimize(&["--input", DAY, "--no-battery-export", "--soc-init", "0.05", "--capacity-wh", "5000"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let g: Vec<f64> = serde_json::from_value(v["grid_w"].clone()).unwrap();
    let b: Vec<f64> = serde_json::from_value(v["battery_w"].clone()).unwrap();
    for (gi, bi) in g.iter().zip(&b) {
        // Discharging never makes the site export.
        assert!(!(*bi > 1e-6 && *gi < -1e-6), "battery {bi} W while exporting {gi} W");
    }
}

#[test]
fn optimize_errors_name_line_column_or_flag_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.csv");
    let text = std::fs::read_to_string(DAY).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines[7] = lines[7].replacen(",0.08000", ",abc", 1);
    std::fs::write(&bad, lines.join("\n")).unwrap();
    let o = optimize(&["--input", bad.to_str().unwrap()]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("line 8") && e.contains("export_price") && e.contains("abc"), "{e}");

    let o = optimize(&["--input", DAY, "--eff-charge", "1.5"]);
    let e = stderr(&o);
    assert!(!o.status.success() && e.contains("eff-charge") && e.contains("1.5"), "{e}");
    let o = optimize(&["--input", DAY, "--charge-max-w", "NaN"]);
    let e = stderr(&o);
    assert!(!o.status.success() && e.contains("charge-max-w") && e.contains("NaN"), "{e}");
    let o = optimize(&["--input", "/nonexistent/day.csv"]);
    assert!(!o.status.success() && stderr(&o).contains("/nonexistent/day.csv"));
}
