//! The SunSpec Modbus server of the running gateway (issue #14 item 2), read and written by an
//! independent SCADA client: testing/interop/sunspec_scada_client.py on pysunspec2 (discovery
//! from "SunS" at 40000, model values) and pymodbus (exceptions), against the simulated site
//! with `--modbus-server`. A control write (model 704 `WSet` with a 3 s revert time) reaches
//! the controller as a control mode, the command stays inside the envelope (the clamp), and it
//! reverts. Skipped when `EMS_PYTHON` is not set (scripts/test installs pymodbus and pysunspec2).
// Test code: a failed unwrap or panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

mod support;

#[test]
fn a_sunspec_client_discovers_reads_and_controls_the_simulated_site() {
    let Ok(py) = std::env::var("EMS_PYTHON") else {
        eprintln!(
            "skipped: EMS_PYTHON is not set (scripts/test installs pymodbus and pysunspec2 and sets it)"
        );
        return;
    };
    let probe = Command::new(&py).args(["-c", "import sunspec2, pymodbus"]).output().unwrap();
    assert!(
        probe.status.success(),
        "EMS_PYTHON lacks pysunspec2 or pymodbus (scripts/test installs them): {}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("gw.state");
    let listen = format!("127.0.0.1:{port}");
    let _g = support::spawn(
        &["--speed", "5", "--duration", "600", "--modbus-server", &listen],
        state.to_str().unwrap(),
    );
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let out = Command::new(&py)
        .arg(format!("{root}/testing/interop/sunspec_scada_client.py"))
        .args(["--port", &port.to_string(), "--defs", &format!("{root}/api/data/sunspec")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    assert!(out.status.success(), "client checks failed:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("OK reverted"), "{text}");
}
