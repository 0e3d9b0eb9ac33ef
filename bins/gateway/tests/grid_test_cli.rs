//! `ems-gateway grid-test` end to end: every built-in sequence of every service with σ 5 mHz
//! noise on the frequency passes its own evaluation (JSON), response.csv has its header and
//! ≥ 10 rows per second, the SvK log is CRLF with its header, and bad input exits 2 naming it.
// Test code: a failed unwrap or panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::cast_precision_loss)]

use std::process::{Command, Output, Stdio};

fn grid_test(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ems-gateway"))
        .arg("grid-test")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stdout).lines().map(str::to_owned).collect()
}

#[test]
fn every_built_in_sequence_of_every_service_passes_with_5_mhz_noise() {
    let dir = tempfile::tempdir().unwrap();
    let mut count = 0;
    for service in ["fcr-n", "fcr-d-up", "fcr-d-down", "ffr"] {
        let list = grid_test(&["--service", service, "--capacity-w", "1000000", "--list"]);
        assert!(list.status.success());
        let names = lines(&list);
        assert!(names.len() >= 4, "{service}: {names:?}");
        for name in names {
            let out = dir.path().join(format!("{service}-{name}.csv"));
            let mut args = vec![
                "--service",
                service,
                "--capacity-w",
                "1000000",
                "--sequence",
                &name,
                "--out",
                out.to_str().unwrap(),
                "--report",
                "json",
                "--noise-mhz",
                "5",
                "--seed",
                "42",
            ];
            // The endurance variants on a shortened scale (the full scale is the default).
            if name.ends_with("endurance") {
                args.extend(["--endurance-s", "120"]);
            }
            let o = grid_test(&args);
            let v: serde_json::Value = serde_json::from_slice(&o.stdout)
                .unwrap_or_else(|e| panic!("{service} {name}: {e}: {}", String::from_utf8_lossy(&o.stderr)));
            let failed: Vec<_> =
                v["checks"].as_array().unwrap().iter().filter(|c| c["pass"] != true).collect();
            assert_eq!(v["pass"], true, "{service} {name}: {failed:#?}");
            assert!(o.status.success(), "{service} {name}");
            for c in v["checks"].as_array().unwrap() {
                for key in ["name", "pass", "value", "limit", "margin"] {
                    assert!(c.get(key).is_some(), "{service} {name}: no {key} in {c}");
                }
                assert_eq!(c.as_object().unwrap().len(), 5, "exactly the five keys: {c}");
            }
            let text = std::fs::read_to_string(&out).unwrap();
            let mut rows = text.lines();
            assert_eq!(rows.next(), Some("time_s,frequency_hz,setpoint_w,power_w,soc"));
            let times: Vec<f64> = rows.map(|l| l.split(',').next().unwrap().parse().unwrap()).collect();
            let span = times.last().unwrap() - times.first().unwrap();
            let rate = (times.len() - 1) as f64 / span;
            assert!(rate >= 10.0, "{service} {name}: {rate} rows/s");
            count += 1;
        }
    }
    assert!(count >= 40, "{count} sequences");
}

#[test]
fn sine_verdicts_are_printed_with_margins_and_the_svk_log_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.csv");
    let log = dir.path().join("svk");
    let o = grid_test(&[
        "--service",
        "fcr-n",
        "--capacity-w",
        "2000000",
        "--sequence",
        "sine-60s",
        "--out",
        out.to_str().unwrap(),
        "--svk-log",
        log.to_str().unwrap(),
        "--noise-mhz",
        "5",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("stability |1 + F G|") && text.contains("performance |0.95 G / (1 + F G)|"),
        "{text}"
    );
    assert!(text.contains("margin"), "{text}");
    let files: Vec<_> = std::fs::read_dir(&log).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let svk = std::fs::read_to_string(&files[0]).unwrap();
    assert!(svk.starts_with(
        "DateTime,InsAcPow,GridFreq,ContStatus_FCRN,Activated_FCRN,ResSize_FCRN,NEM,AEM,Pmin,Pmax,Cap_Up,Cap_Down\r\n"
    ));
    let second = svk.split("\r\n").nth(1).unwrap();
    let stamp = second.split(',').next().unwrap();
    assert_eq!(stamp.len(), 19, "{stamp}");
    assert_eq!(&stamp[8..9], "T");
    assert_eq!(&stamp[15..16], ".");
    assert_eq!(svk.matches("\r\n").count(), svk.matches('\n').count(), "CRLF only");
}

#[test]
fn a_profile_runs_and_bad_input_exits_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("p.csv");
    std::fs::write(&profile, "time_s,frequency_hz\n0,50\n10,50\n10.1,49.9\n60,49.9\n").unwrap();
    let out = dir.path().join("r.csv");
    let o = grid_test(&[
        "--service",
        "fcr-n",
        "--capacity-w",
        "1000",
        "--profile",
        profile.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--report",
        "json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::write(&profile, "time_s,frequency_hz\n0,50\n1,abc\n").unwrap();
    let o = grid_test(&[
        "--service",
        "fcr-n",
        "--capacity-w",
        "1000",
        "--profile",
        profile.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("line 3, column frequency_hz: \"abc\""), "{e}");
    let o = grid_test(&[
        "--service",
        "fcr-x",
        "--capacity-w",
        "1000",
        "--sequence",
        "a",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("\"fcr-x\""));
    let o = grid_test(&[
        "--service",
        "ffr",
        "--capacity-w",
        "1000",
        "--sequence",
        "fcr-n-steps",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("ffr-step-49.5"));
    let o = grid_test(&[
        "--service",
        "ffr",
        "--capacity-w",
        "0",
        "--sequence",
        "ffr-ramp",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("capacity_w = 0"));
}
