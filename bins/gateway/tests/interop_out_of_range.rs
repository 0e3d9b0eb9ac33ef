//! An impossible register value from an independent SunSpec device (pymodbus,
//! testing/interop/sunspec_server.py): a SOC of 250 % and a cell written as −3 V each give an
//! `OutOfRange` device error naming model, point and value, and the safe reaction — the BMS
//! wrapper reports the failed read, every battery signal is invalid (not the last value, not a
//! clamped 100 % or 0 V), and the safety envelope allows no power either way.
//!
//! Needs `EMS_PYTHON` pointing at a Python with pymodbus; `scripts/test` installs it and sets it.
//! Without it each test prints that it was skipped and passes.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns: a failure should fail loudly

#[path = "support/pyserver.rs"]
mod pyserver;
use pyserver::{python, start};

use ems_core::snapshot::{
    ContactorState, EStopInput, InverterState, ESTOP_MAX_AGE, FAST_MAX_AGE, SLOW_MAX_AGE,
};
use ems_core::{Measurement, Millis, Quality, Snapshot, Watts};
use ems_devices::modbus::sunspec::SunSpecBattery;
use ems_devices::modbus::transport::{AnyClient, ClientOptions, TcpClient};
use ems_devices::traits::{Bms, DeviceError, ErrorKind};
use ems_devices::wrappers::bms::{SafeBms, SafeBmsConfig};
use ems_devices::wrappers::{Device, DeviceEvent, DeviceEvents};
use ems_safety::monitor::{evaluate_once, SafetyConfig};

/// A healthy site around the battery signals the wrapper filled: inverter, grid, contactor and
/// E-stop good at `now`.
fn site(now: Millis, bms: &SafeBms<SunSpecBattery<AnyClient>>) -> Snapshot {
    let mut s = Snapshot::unknown(ems_core::watts!(5_000.0));
    bms.fill(now, &mut s.battery);
    s.inverter.active_power = Measurement::good(Watts::ZERO, now, FAST_MAX_AGE);
    s.inverter.state = Measurement::good(InverterState::Running, now, SLOW_MAX_AGE);
    s.inverter.temperature = Measurement::good(ems_core::celsius!(35.0), now, SLOW_MAX_AGE);
    s.grid.active_power = Measurement::good(ems_core::watts!(500.0), now, FAST_MAX_AGE);
    s.grid.voltage = Measurement::good(ems_core::volts!(230.0), now, FAST_MAX_AGE);
    s.grid.frequency = Measurement::good(ems_core::hertz!(50.0), now, FAST_MAX_AGE);
    s.pv_power = Measurement::good(Watts::ZERO, now, FAST_MAX_AGE);
    s.contactor = Measurement::good(ContactorState::Closed, now, FAST_MAX_AGE);
    s.precharge_done = Measurement::good(true, now, FAST_MAX_AGE);
    s.estop = Measurement::good(EStopInput::Released, now, ESTOP_MAX_AGE);
    s
}

/// Read the battery served with `quirks` through the driver and the wrapper: the driver's
/// result, the wrapper's events, the filled snapshot and the envelope's (charge, discharge).
fn run(py: &str, quirks: &[&str]) -> (Result<(), String>, DeviceEvents, Snapshot, (Watts, Watts)) {
    let s = start(py, quirks);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = AnyClient::Tcp(TcpClient::new("127.0.0.1", s.port, 1, ClientOptions::default()));
        let mut bat = SunSpecBattery::new(client)
            .await
            .unwrap()
            .with_assumed_cell_temperature(ems_core::celsius!(25.0));
        let direct = match bat.read().await {
            Ok(_) => Ok(()),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::OutOfRange, "{e}");
                Err(e.to_string())
            }
        };
        let mut bms = SafeBms::new(bat, SafeBmsConfig::default()).unwrap();
        let now = Millis::new(1_000);
        let mut events = DeviceEvents::new();
        bms.poll(now, &mut events).await;
        let snap = site(now, &bms);
        let env = evaluate_once(&SafetyConfig::default(), &snap, now);
        (direct, events, snap, (env.max_charge(), env.max_discharge()))
    })
}

fn assert_safe_reaction(events: &DeviceEvents, snap: &Snapshot, envelope: (Watts, Watts)) {
    let now = Millis::new(1_000);
    assert!(
        events.any(|e| *e == DeviceEvent::ReadFailed { device: Device::Bms, kind: ErrorKind::OutOfRange }),
        "the wrapper reports the failed read"
    );
    let b = &snap.battery;
    for (name, q) in [
        ("soc", b.soc.quality_at(now)),
        ("cell_voltage_min", b.cell_voltage_min.quality_at(now)),
        ("bms_charge_limit", b.bms_charge_limit.quality_at(now)),
        ("bms_discharge_limit", b.bms_discharge_limit.quality_at(now)),
    ] {
        assert_eq!(q, Quality::Invalid, "{name} is not good");
    }
    assert_eq!(envelope, (Watts::ZERO, Watts::ZERO), "no power either way");
}

#[test]
fn a_healthy_pymodbus_battery_is_read_and_allows_power() {
    let Some(py) = python() else { return };
    let (direct, events, snap, envelope) = run(&py, &["battery"]);
    assert_eq!(direct, Ok(()));
    assert!(events.is_empty(), "{:?}", events.iter().map(|e| e.event.to_string()).collect::<Vec<_>>());
    assert_eq!(snap.battery.soc.value_at(Millis::new(1_000)), Some(ems_core::percent!(50.0)));
    assert!(envelope.0 > Watts::ZERO && envelope.1 > Watts::ZERO, "{envelope:?}");
}

#[test]
fn a_soc_register_of_250_percent_is_out_of_range_and_allows_no_power() {
    let Some(py) = python() else { return };
    let (direct, events, snap, envelope) = run(&py, &["battery", "soc-250"]);
    assert_eq!(
        direct,
        Err("SunSpec model 802 point SoC: percentage: 250 % is outside the physical range 0..=100".to_owned())
    );
    assert_safe_reaction(&events, &snap, envelope);
}

#[test]
fn a_cell_written_as_minus_3_volts_is_out_of_range_and_allows_no_power() {
    let Some(py) = python() else { return };
    let (direct, events, snap, envelope) = run(&py, &["battery", "cell-minus-3v"]);
    let e = direct.unwrap_err();
    assert!(e.starts_with("SunSpec model 802 point CellVMin: cell voltage: 62.536 V"), "{e}");
    assert_safe_reaction(&events, &snap, envelope);
}
