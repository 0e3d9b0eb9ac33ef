//! Interoperability with an independent Modbus/SunSpec implementation: the drivers and
//! `ems-gateway scan` against a SunSpec device served by pymodbus (testing/interop/
//! sunspec_server.py), including real-device quirks (marker at address 0, scale factors of 0, a
//! short common model, a missing nameplate model) and exception handling.
//!
//! Needs `EMS_PYTHON` pointing at a Python with pymodbus; `scripts/test` installs it and sets it.
//! Without it each test prints that it was skipped and passes.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns: a failure should fail loudly

#[path = "support/pyserver.rs"]
mod pyserver;
use pyserver::{python, start};
use std::process::{Command, Stdio};

use ems_devices::modbus::sunspec::SunSpecInverter;
use ems_devices::modbus::transport::{AnyClient, ClientOptions, TcpClient};
use ems_devices::modbus::{ModbusException, RegisterAddress, RegisterClient, RegisterKind};
use ems_devices::traits::{ControlSource, Inverter, InverterSettings};

fn scan(port: u16) -> serde_json::Value {
    let o = Command::new(env!("CARGO_BIN_EXE_ems-gateway"))
        .args(["scan", &format!("modbus-tcp://127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn model(scan: &serde_json::Value, id: u64) -> Option<&serde_json::Value> {
    scan["models"].as_array().unwrap().iter().find(|m| m["id"] == id)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn scan_reads_a_pymodbus_sunspec_device_with_scale_factors_applied() {
    let Some(py) = python() else { return };
    let s = start(&py, &[]);
    let v = scan(s.port);
    assert_eq!(v["base_address"], 40000);
    let common = model(&v, 1).unwrap();
    assert_eq!(common["address"], 40002);
    assert_eq!(common["points"]["Mn"], "EMS Interop");
    let inv = &model(&v, 103).unwrap()["points"];
    assert_eq!(inv["W"]["value"], 3000.0);
    assert_eq!(inv["W"]["units"], "W");
    assert_eq!(inv["Hz"]["value"], 50.01);
    assert_eq!(inv["DCV"]["value"], 528.0);
    // Not-implemented points are omitted, not printed as 65535 or -32768.
    assert!(inv.get("PhVphB").is_none(), "{inv}");
    assert!(model(&v, 120).is_some() && model(&v, 123).is_some());
    // The suggested stanza: a SunSpec inverter (models 103/120/123).
    let rec = v["recognised"].as_array().unwrap();
    let inv = rec.iter().find(|r| r["role"] == "devices.inverter").unwrap();
    assert_eq!(inv["manufacturer"], common["points"]["Mn"]);
    assert!(inv["stanza"].as_str().unwrap().contains("driver = \"sunspec\""), "{inv}");
}

#[test]
fn device_quirks_are_tolerated() {
    let Some(py) = python() else { return };
    let s = start(&py, &["base0", "sf-zero", "short-common", "no-nameplate"]);
    let v = scan(s.port);
    assert_eq!(v["base_address"], 0, "marker at address 0");
    assert_eq!(model(&v, 1).unwrap()["length"], 50, "short common model");
    assert_eq!(model(&v, 103).unwrap()["points"]["W"]["value"], 3000.0, "scale factor 0");
    assert!(model(&v, 120).is_none(), "missing nameplate model");
}

#[test]
fn inverter_driver_reads_writes_and_sees_exceptions_over_real_modbus() {
    let Some(py) = python() else { return };
    let s = start(&py, &[]);
    rt().block_on(async {
        let client = AnyClient::Tcp(TcpClient::new("127.0.0.1", s.port, 1, ClientOptions::default()));
        let mut inv = SunSpecInverter::new(client).await.unwrap();
        let r = inv.read().await.unwrap();
        assert_eq!(r.active_power.get(), 3000.0);
        assert_eq!(r.rated_power.get(), 5000.0);
        assert_eq!(r.dc_link_voltage.get(), 528.0);
        // Take control with a revert timer (the lease), as SafeInverter does, then write.
        // Model 123 only: export limiting — 2000 W of a 5000 W rating = 40 % with the limit enabled.
        let settings = InverterSettings {
            control: ControlSource::Remote,
            setpoint: ems_core::watts!(2000.0),
            revert_timeout: Some(ems_core::Millis::from_secs(10)),
        };
        inv.write_settings(&settings).await.unwrap();
        inv.write_setpoint(ems_core::watts!(2000.0)).await.unwrap();
        let r = inv.read().await.unwrap();
        assert!((r.setpoint.get() - 2000.0).abs() < 1.0, "read-back {}", r.setpoint);
        let back = inv.read_settings().await.unwrap();
        assert_eq!(back.control, ControlSource::Remote);
        assert_eq!(back.revert_timeout, Some(ems_core::Millis::from_secs(10)));
        // A read outside the image is refused by the device, not a link failure.
        let c = inv.client_mut();
        let e = c.read(RegisterKind::Holding, RegisterAddress(30000), 2).await;
        assert_eq!(e, Ok(Err(ModbusException::IllegalDataAddress)));
    });
}

#[test]
fn scan_of_a_dead_endpoint_fails_naming_it() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let o = Command::new(env!("CARGO_BIN_EXE_ems-gateway"))
        .args(["scan", &format!("modbus-tcp://127.0.0.1:{port}"), "--timeout-ms", "300"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains(&format!("127.0.0.1:{port}")), "{e}");
}
