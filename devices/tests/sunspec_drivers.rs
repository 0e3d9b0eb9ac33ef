//! SunSpec inverter and battery drivers end to end over register images.
#![allow(clippy::unwrap_used, clippy::panic)]

use ems_core::snapshot::{BmsAlarm, InverterState};
use ems_core::{Millis, Watts};
use ems_devices::modbus::sunspec::inverter::ControlModel;
use ems_devices::modbus::sunspec::model;
use ems_devices::modbus::sunspec::{
    decode_model, SunSpecBattery, SunSpecError, SunSpecImage, SunSpecInverter,
};
use ems_devices::modbus::{MemoryRegisters, RegisterAddress};
use ems_devices::traits::{Bms, ControlSource, DeviceError, ErrorKind, Inverter, InverterSettings};
use pollster::block_on;

const BASE: u16 = 40_000;

fn point_addr(img: &SunSpecImage, id: u16, name: &str) -> u16 {
    img.model_address(id).unwrap().0
        + u16::try_from(model::model(id).unwrap().point_offset(name).unwrap()).unwrap()
}

fn read_point(regs: &MemoryRegisters, img: &SunSpecImage, id: u16, name: &str) -> Option<f64> {
    let start = img.model_address(id).unwrap().0;
    let len = regs.holding[&(start + 1)];
    let block: Vec<u16> = (start..start + len + 2).map(|a| regs.holding[&a]).collect();
    decode_model(id, &block).unwrap().number(name)
}

fn der_inverter() -> SunSpecImage {
    let mut img = SunSpecImage::new(RegisterAddress(BASE));
    img.add_model(1).unwrap().add_model(701).unwrap().add_model(702).unwrap();
    img.add_model(704).unwrap().add_model_with_counts(714, &[("NPrt", 1)]).unwrap();
    img.set(701, "W_SF", 0.0).unwrap().set(701, "W", 3000.0).unwrap();
    img.set_symbol(701, "InvSt", "RUNNING").unwrap();
    img.set(701, "Tmp_SF", -1.0).unwrap().set(701, "TmpSnk", 41.5).unwrap();
    img.set(702, "W_SF", 1.0).unwrap().set(702, "WMaxRtg", 10_000.0).unwrap();
    img.set(704, "WSet_SF", 0.0).unwrap().set(704, "WSet", 0.0).unwrap().set(704, "WSetEna", 0.0).unwrap();
    img.set(704, "WSetRvrtTms", 0.0).unwrap().set(704, "WSetMod", 0.0).unwrap();
    img.set(704, "WSetRvrt", 0.0).unwrap().set(704, "WSetEnaRvrt", 0.0).unwrap();
    img.set(714, "DCV_SF", 0.0).unwrap().set(714, "Prt[1].DCV", 780.0).unwrap();
    img
}

#[test]
fn der_inverter_reads_writes_and_arms_the_revert_timer() {
    let img = der_inverter();
    let regs = img.clone().finish();
    let mut inv = block_on(SunSpecInverter::new(regs)).unwrap();
    assert_eq!(inv.control_model(), ControlModel::DerWSet);
    assert!(inv.capabilities().revert_timer);
    let r = block_on(inv.read()).unwrap();
    assert_eq!(r.active_power, ems_core::watts!(3000.0));
    assert_eq!(r.state, InverterState::Running);
    assert_eq!(r.temperature, ems_core::celsius!(41.5));
    assert_eq!(r.rated_power, ems_core::watts!(10_000.0));
    assert_eq!(r.dc_link_voltage.get(), 780.0);
    assert_eq!(r.setpoint, Watts::ZERO);

    let s = block_on(inv.read_settings()).unwrap();
    assert_eq!(
        s,
        InverterSettings { control: ControlSource::Local, setpoint: Watts::ZERO, revert_timeout: None }
    );
    let remote = InverterSettings {
        control: ControlSource::Remote,
        setpoint: Watts::ZERO,
        revert_timeout: Some(Millis::from_secs(10)),
    };
    block_on(inv.write_settings(&remote)).unwrap();
    block_on(inv.write_setpoint(ems_core::watts!(-2500.0))).unwrap();
    let r = block_on(inv.read()).unwrap();
    assert_eq!(r.setpoint, ems_core::watts!(-2500.0));
    let s = block_on(inv.read_settings()).unwrap();
    assert_eq!(s.control, ControlSource::Remote);
    assert_eq!(s.revert_timeout, Some(Millis::from_secs(10)));
    let regs = inv.client_mut();
    assert_eq!(read_point(regs, &img, 704, "WSetRvrtTms"), Some(10.0));
    assert_eq!(read_point(regs, &img, 704, "WSetMod"), Some(1.0));
    assert_eq!(read_point(regs, &img, 704, "WSetEnaRvrt"), Some(0.0));
    // Restore.
    block_on(inv.write_settings(&InverterSettings {
        control: ControlSource::Local,
        setpoint: Watts::ZERO,
        revert_timeout: None,
    }))
    .unwrap();
    assert_eq!(block_on(inv.read_settings()).unwrap().control, ControlSource::Local);
}

#[test]
fn a_refused_write_is_refused_not_a_link_error() {
    let img = der_inverter();
    let mut regs = img.clone().finish();
    let wset = point_addr(&img, 704, "WSet");
    regs.writable.remove(&wset);
    regs.writable.remove(&(wset + 1));
    let mut inv = block_on(SunSpecInverter::new(regs)).unwrap();
    let e = block_on(inv.write_setpoint(ems_core::watts!(100.0))).unwrap_err();
    assert!(matches!(e, SunSpecError::Exception { address, .. } if address.0 == wset), "{e}");
    assert_eq!(e.kind(), ErrorKind::Refused);
}

#[test]
fn missing_models_and_points() {
    let mut img = SunSpecImage::new(RegisterAddress(BASE));
    img.add_model(1).unwrap();
    let e = block_on(SunSpecInverter::new(img.finish())).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Refused);
    // No temperature implemented → MissingPoint (Refused), no invented value.
    let mut img = der_inverter();
    img.set_raw(701, "TmpSnk", &[0x8000]).unwrap();
    let mut inv = block_on(SunSpecInverter::new(img.finish())).unwrap();
    let e = block_on(inv.read()).unwrap_err();
    assert!(matches!(e, SunSpecError::MissingPoint { model: 701, .. }), "{e}");
}

#[test]
fn storage_124_inverter_uses_a_collapsed_window() {
    let mut img = SunSpecImage::new(RegisterAddress(0));
    img.add_model(1).unwrap().add_model(103).unwrap().add_model(120).unwrap().add_model(124).unwrap();
    img.set(103, "W_SF", 0.0)
        .unwrap()
        .set(103, "W", -1000.0)
        .unwrap()
        .set_symbol(103, "St", "FAULT")
        .unwrap();
    img.set(103, "Tmp_SF", 0.0).unwrap().set(103, "TmpCab", 35.0).unwrap();
    img.set(103, "DCV_SF", 0.0).unwrap().set(103, "DCV", 400.0).unwrap();
    img.set(120, "WRtg_SF", 0.0).unwrap().set(120, "WRtg", 5000.0).unwrap();
    img.set(124, "WChaMax_SF", 0.0).unwrap().set(124, "WChaMax", 5000.0).unwrap();
    img.set(124, "InOutWRte_SF", -2.0)
        .unwrap()
        .set(124, "InWRte", 0.0)
        .unwrap()
        .set(124, "OutWRte", 0.0)
        .unwrap();
    img.set(124, "StorCtl_Mod", 0.0).unwrap().set(124, "InOutWRte_RvrtTms", 0.0).unwrap();
    let mut inv = block_on(SunSpecInverter::new(img.clone().finish())).unwrap();
    assert_eq!(inv.control_model(), ControlModel::Storage);
    let r = block_on(inv.read()).unwrap();
    assert_eq!(r.state, InverterState::Fault);
    assert_eq!(r.dc_link_voltage.get(), 400.0);
    let remote = InverterSettings {
        control: ControlSource::Remote,
        setpoint: Watts::ZERO,
        revert_timeout: Some(Millis::new(2500)),
    };
    block_on(inv.write_settings(&remote)).unwrap();
    block_on(inv.write_setpoint(ems_core::watts!(1250.0))).unwrap();
    let r = block_on(inv.read()).unwrap();
    assert_eq!(r.setpoint, ems_core::watts!(1250.0));
    let regs = inv.client_mut();
    assert_eq!(read_point(regs, &img, 124, "OutWRte"), Some(25.0));
    assert_eq!(read_point(regs, &img, 124, "InWRte"), Some(-25.0));
    assert_eq!(read_point(regs, &img, 124, "InOutWRte_RvrtTms"), Some(2.0)); // floor, ≥ 1 s
    let e = block_on(inv.write_setpoint(ems_core::watts!(6000.0))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutOfRange);
}

#[test]
fn export_limit_123_refuses_charge() {
    let mut img = SunSpecImage::new(RegisterAddress(BASE));
    img.add_model(1).unwrap().add_model(101).unwrap().add_model(120).unwrap().add_model(123).unwrap();
    img.set(101, "W_SF", 0.0)
        .unwrap()
        .set(101, "W", 800.0)
        .unwrap()
        .set_symbol(101, "St", "THROTTLED")
        .unwrap();
    img.set(101, "Tmp_SF", 0.0).unwrap().set(101, "TmpSnk", 50.0).unwrap();
    img.set(120, "WRtg_SF", 0.0).unwrap().set(120, "WRtg", 4000.0).unwrap();
    img.set(123, "WMaxLimPct_SF", 0.0)
        .unwrap()
        .set(123, "WMaxLimPct", 100.0)
        .unwrap()
        .set(123, "WMaxLim_Ena", 0.0)
        .unwrap();
    let mut inv = block_on(SunSpecInverter::new(img.finish())).unwrap();
    assert_eq!(inv.control_model(), ControlModel::ExportLimit);
    assert!(!inv.capabilities().revert_timer); // WMaxLimPct_RvrtTms not implemented
    let r = block_on(inv.read()).unwrap();
    assert_eq!(r.state, InverterState::Running);
    assert_eq!(r.dc_link_voltage.get(), 0.0); // no DC source: 0 V
    assert_eq!(r.setpoint, ems_core::watts!(4000.0)); // no limit
    block_on(inv.write_settings(&InverterSettings {
        control: ControlSource::Remote,
        setpoint: ems_core::watts!(1000.0),
        revert_timeout: None,
    }))
    .unwrap();
    assert_eq!(block_on(inv.read()).unwrap().setpoint, ems_core::watts!(1000.0));
    assert_eq!(
        block_on(inv.write_setpoint(ems_core::watts!(-10.0))).unwrap_err().kind(),
        ErrorKind::OutOfRange
    );
}

fn battery_image() -> SunSpecImage {
    let mut img = SunSpecImage::new(RegisterAddress(BASE));
    img.add_model(1).unwrap().add_model(802).unwrap();
    for (n, v) in [("SoC_SF", 0.0), ("V_SF", -1.0), ("CellV_SF", -3.0), ("A_SF", -1.0), ("AMax_SF", 0.0)] {
        img.set(802, n, v).unwrap();
    }
    for (n, v) in [
        ("SoC", 55.0),
        ("V", 512.3),
        ("A", -10.5),
        ("CellVMin", 3.201),
        ("CellVMax", 3.345),
        ("AChaMax", 20.0),
        ("ADisChaMax", 30.0),
        ("State", 3.0),
        ("ReqInvState", 0.0),
        ("CtrlHb", 0.0),
        ("AlmRst", 0.0),
    ] {
        img.set(802, n, v).unwrap();
    }
    img.set_raw(802, "Evt1", &[0x0040, 0x0002]).unwrap(); // GROUND_FAULT (22) + OVER_TEMP_ALARM (1)
    img
}

#[test]
fn battery_802_reads_limits_alarms_and_writes_the_heartbeat() {
    let img = battery_image();
    let bat = block_on(SunSpecBattery::new(img.clone().finish())).unwrap();
    let mut bat = bat.with_assumed_cell_temperature(ems_core::celsius!(25.0));
    let r = block_on(bat.read()).unwrap();
    assert_eq!(r.soc.get(), 55.0);
    assert_eq!(r.pack_voltage.get(), 512.3);
    assert_eq!(r.pack_current.get(), -10.5);
    assert_eq!(r.cell_voltage_min.get(), 3.201);
    assert_eq!(r.cell_voltage_max.get(), 3.345);
    assert!((r.charge_limit.get() - 20.0 * 512.3).abs() < 0.1);
    assert!((r.discharge_limit.get() - 30.0 * 512.3).abs() < 0.1);
    assert!(r.alarms.contains(BmsAlarm::Insulation) && r.alarms.contains(BmsAlarm::OverTemperature));
    assert!(!r.alarms.contains(BmsAlarm::CellOverVoltage));
    assert!(r.ready);
    block_on(bat.read()).unwrap();
    assert_eq!(read_point(bat.client_mut(), &img, 802, "CtrlHb"), Some(2.0));
    block_on(bat.reset_alarms()).unwrap();
    assert_eq!(read_point(bat.client_mut(), &img, 802, "AlmRst"), Some(1.0));
}

#[test]
fn battery_without_temperature_source_refuses_to_guess() {
    let mut bat = block_on(SunSpecBattery::new(battery_image().finish())).unwrap();
    let e = block_on(bat.read()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Refused);
    // Not connected → not ready; a read-only AlmRst → Refused.
    let mut img = battery_image();
    img.set(802, "State", 4.0).unwrap();
    let mut regs = img.clone().finish();
    let a = point_addr(&img, 802, "AlmRst");
    regs.writable.remove(&a);
    let mut bat =
        block_on(SunSpecBattery::new(regs)).unwrap().with_assumed_cell_temperature(ems_core::celsius!(20.0));
    assert!(!block_on(bat.read()).unwrap().ready);
    assert_eq!(block_on(bat.reset_alarms()).unwrap_err().kind(), ErrorKind::Refused);
    // No 802 at all.
    let mut img = SunSpecImage::new(RegisterAddress(BASE));
    img.add_model(1).unwrap();
    assert!(matches!(block_on(SunSpecBattery::new(img.finish())), Err(SunSpecError::MissingModel { .. })));
}

#[test]
fn connect_disconnect_through_703_or_123_and_min_reserve_through_124() {
    // 703 enter service present: ES is used.
    let mut img = der_inverter();
    img.add_model(703).unwrap().set_symbol(703, "ES", "ENABLED").unwrap();
    let mut inv = block_on(SunSpecInverter::new(img.clone().finish())).unwrap();
    assert_eq!(block_on(inv.connected()).unwrap(), Some(true));
    block_on(inv.set_connected(false, None)).unwrap();
    assert_eq!(block_on(inv.connected()).unwrap(), Some(false));
    let regs = inv.into_client();
    assert_eq!(regs.holding[&point_addr(&img, 703, "ES")], 0);

    // Only 123: Conn with its revert timer (whole seconds).
    let mut img = SunSpecImage::new(RegisterAddress(BASE));
    img.add_model(1).unwrap().add_model(103).unwrap().add_model(120).unwrap().add_model(123).unwrap();
    img.add_model(124).unwrap();
    img.set(103, "W_SF", 0.0).unwrap().set(103, "W", 0.0).unwrap().set_symbol(103, "St", "MPPT").unwrap();
    img.set(120, "WRtg_SF", 0.0).unwrap().set(120, "WRtg", 5000.0).unwrap();
    img.set_symbol(123, "Conn", "CONNECT").unwrap().set(123, "Conn_RvrtTms", 0.0).unwrap();
    img.set(124, "WChaMax_SF", 0.0).unwrap().set(124, "WChaMax", 5000.0).unwrap();
    img.set(124, "MinRsvPct_SF", 0.0).unwrap().set(124, "MinRsvPct", 10.0).unwrap();
    let mut inv = block_on(SunSpecInverter::new(img.clone().finish())).unwrap();
    block_on(inv.set_connected(false, Some(Millis::from_secs(30)))).unwrap();
    assert_eq!(block_on(inv.connected()).unwrap(), Some(false));
    block_on(inv.set_min_reserve(ems_core::percent!(20.0))).unwrap();
    let regs = inv.into_client();
    assert_eq!(regs.holding[&point_addr(&img, 123, "Conn_RvrtTms")], 30);
    assert_eq!(read_point(&regs, &img, 124, "MinRsvPct"), Some(20.0));

    // Neither model: a clear MissingModel.
    let mut inv = block_on(SunSpecInverter::new(der_inverter().finish())).unwrap();
    let e = block_on(inv.set_connected(true, None)).unwrap_err();
    assert!(matches!(e, SunSpecError::MissingModel { .. }), "{e:?}");
    assert_eq!(block_on(inv.connected()).unwrap(), None);
}

fn battery_with_raw(point: &str, raw: u16) -> SunSpecBattery<MemoryRegisters> {
    let mut img = battery_image();
    img.set_raw(802, point, &[raw]).unwrap();
    block_on(SunSpecBattery::new(img.finish()))
        .unwrap()
        .with_assumed_cell_temperature(ems_core::celsius!(25.0))
}

#[test]
fn soc_register_of_250_percent_is_out_of_range_naming_the_point_not_100() {
    // SoC_SF = 0: raw 250 is 250 %. Before, the driver clamped it to a valid-looking 100 %.
    let mut bat = battery_with_raw("SoC", 250);
    let e = block_on(bat.read()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutOfRange);
    assert!(matches!(&e, SunSpecError::Invalid { model: 802, point, .. } if point == "SoC"), "{e:?}");
    assert_eq!(
        e.to_string(),
        "SunSpec model 802 point SoC: percentage: 250 % is outside the physical range 0..=100"
    );
}

#[test]
fn cell_at_minus_3_volts_written_signed_is_out_of_range_not_0() {
    // −3.000 V written as a signed −3000 into the unsigned CellVMin (CellV_SF = −3) reads as
    // 62.536 V: no cell reads that. Before, a negative cell voltage was clamped to 0 V.
    let mut bat = battery_with_raw("CellVMin", 0xF448);
    let e = block_on(bat.read()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutOfRange);
    let text = e.to_string();
    assert!(text.starts_with("SunSpec model 802 point CellVMin: cell voltage: 62.536 V"), "{text}");
    assert!(text.ends_with("outside the physical range 0..=5"), "{text}");
    // The maximum too, and a healthy reading still passes.
    let mut bat = battery_with_raw("CellVMax", 7_000);
    let e = block_on(bat.read()).unwrap_err();
    assert!(matches!(&e, SunSpecError::Invalid { point, .. } if point == "CellVMax"), "{e}");
    assert!(block_on(battery_with_raw("CellVMin", 3_100).read()).is_ok());
}

#[test]
fn inverter_values_out_of_range_are_errors_naming_model_and_point() {
    // Heat sink at −3000.0 °C (raw −30000, Tmp_SF −1): below absolute zero.
    let mut img = der_inverter();
    img.set_raw(701, "TmpSnk", &[0x8AD0]).unwrap();
    let mut inv = block_on(SunSpecInverter::new(img.finish())).unwrap();
    let e = block_on(inv.read()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutOfRange);
    assert!(e.to_string().starts_with("SunSpec model 701 point TmpSnk: temperature: -3000 °C"), "{e}");
    // A rating beyond 100 MW (702 WMaxRtg 60000 × 10^4 W) refuses to build the driver.
    let mut img = der_inverter();
    img.set(702, "W_SF", 4.0).unwrap().set_raw(702, "WMaxRtg", &[60_000]).unwrap();
    let e = block_on(SunSpecInverter::new(img.finish())).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutOfRange);
    assert!(e.to_string().starts_with("SunSpec model 702 point WMaxRtg: power:"), "{e}");
}
