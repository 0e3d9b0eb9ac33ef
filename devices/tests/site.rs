//! Site-level tests of the simulator: balance, PV and load shape, determinism, fault injection,
//! device traits.
// Helpers outside `#[test]` functions unwrap too: a failed setup is a failed test.
#![allow(clippy::unwrap_used)]

use ems_core::event::Signal;
use ems_core::snapshot::{BmsAlarm, BmsAlarms, ContactorState, EStopInput, InverterState};
use ems_core::{Celsius, ContactorCommand, Millis, Percent, Quality, Volts, Watts};
use ems_devices::sim::{SharedSite, SimError, SimFault, SimSiteConfig, SimulatedSite};
use ems_devices::traits::{
    Bms, ControlSource, DeviceError, EStopInput as _, ErrorKind, Inverter, InverterSettings, Meter,
    PvInverter, Relay,
};

const SEC: Millis = Millis::new(1000);

fn site(config: SimSiteConfig) -> SimulatedSite {
    SimulatedSite::new(config).unwrap()
}

fn run(site: &mut SimulatedSite, setpoint: f32, secs: u64) {
    site.apply(Watts::saturating(setpoint), ContactorCommand::Close);
    for _ in 0..secs {
        site.advance(SEC);
    }
}

#[test]
fn config_errors_name_field_and_value() {
    let bad = SimSiteConfig { battery_capacity: ems_core::watt_hours!(-5.0), ..SimSiteConfig::default() };
    let e = SimulatedSite::new(bad).unwrap_err();
    assert!(matches!(e, SimError::InvalidConfig { field: "battery_capacity", .. }));
    assert!(e.to_string().contains("battery_capacity = -5.0 Wh"), "{e}");
    let bad = SimSiteConfig { start_day_of_year: 366, ..SimSiteConfig::default() };
    let e = SimulatedSite::new(bad).unwrap_err().to_string();
    assert!(e.contains("start_day_of_year = 366"), "{e}");
}

#[test]
fn grid_balances_every_step_and_counters_add_up() {
    let mut s = site(SimSiteConfig::default());
    let mut now = Millis::ZERO;
    for i in 0..(2 * 86_400 / 10) {
        let sp = [-4000.0, 0.0, 3000.0][(i / 500) % 3];
        s.apply(Watts::saturating(sp), ContactorCommand::Close);
        let dt = Millis::new([100, 250, 1000, 10_000][i % 4]);
        s.advance(dt);
        now = now.plus(dt);
        let t = s.truth();
        let resid = t.grid_power.get() - (t.load_power.get() - t.pv_power.get() - t.battery_power.get());
        assert!(resid.abs() < 0.01, "step {i}: residual {resid}");
        let snap = s.snapshot(now);
        let load = snap.site_load(now).unwrap();
        assert!((load.get() - t.load_power.get()).abs() < 0.01);
    }
    let e = s.energy();
    let lhs = e.grid_import.get() - e.grid_export.get();
    let rhs =
        e.load_consumed.get() - e.pv_produced.get() - (e.battery_discharge.get() - e.battery_charge.get());
    assert!((lhs - rhs).abs() < 1.0, "{lhs} vs {rhs}");
    assert!(e.battery_charge.get() > 1000.0 && e.battery_discharge.get() > 1000.0);
}

#[test]
fn pv_is_zero_at_night_and_peaks_around_noon_in_june() {
    let mut s = site(SimSiteConfig::default()); // 1 June, midnight
    let mut hourly = [0.0_f64; 24];
    for _ in 0..7 {
        for slot in hourly.iter_mut() {
            for _ in 0..3600 {
                s.advance(SEC);
                *slot += f64::from(s.truth().pv_power.get()) / 3600.0 / 7.0;
            }
        }
    }
    assert!(hourly[2] == 0.0 && hourly[22] == 0.0, "night {hourly:?}");
    let peak = hourly.iter().enumerate().fold((0, 0.0), |a, (h, &p)| if p > a.1 { (h, p) } else { a });
    assert!((11..=13).contains(&peak.0), "peak at hour {} {hourly:?}", peak.0);
    assert!(peak.1 > 2500.0 && peak.1 < 6000.0, "peak {}", peak.1);
    let daily_kwh = s.energy().pv_produced.get() / 7000.0;
    assert!((15.0..45.0).contains(&daily_kwh), "{daily_kwh} kWh/day");
}

#[test]
fn load_daily_energy_is_plausible() {
    for (day, lo, hi) in [(15, 11.0, 16.0), (152, 7.0, 11.5)] {
        let mut s = site(SimSiteConfig { start_day_of_year: day, ..SimSiteConfig::default() });
        let mut min = f32::MAX;
        for _ in 0..(7 * 86_400 / 10) {
            s.advance(Millis::new(10_000));
            min = min.min(s.truth().load_power.get());
        }
        let per_day = s.energy().load_consumed.get() / 7000.0;
        assert!((lo..hi).contains(&per_day), "day {day}: {per_day} kWh/day");
        assert!(min >= 0.0);
    }
    // Noise-free profile over a whole year ≈ the annual consumption (BDEW: 995 MWh per 1 GWh).
    let mut s = site(SimSiteConfig { start_day_of_year: 1, ..SimSiteConfig::default() });
    let mut wh = 0.0_f64;
    for _ in 0..(365 * 96) {
        s.advance(Millis::new(900_000));
        wh += f64::from(s.load_profile_power().get()) * 0.25;
    }
    assert!((wh / 1000.0 - 3980.0).abs() < 60.0, "annual {} kWh", wh / 1000.0);
}

#[test]
fn same_seed_same_day() {
    let day = |seed| {
        let mut s = site(SimSiteConfig { seed, ..SimSiteConfig::default() });
        for i in 0..86_400 {
            let sp = if (i / 3600) % 2 == 0 { -2500.0 } else { 2500.0 };
            s.apply(Watts::saturating(sp), ContactorCommand::Close);
            s.advance(SEC);
        }
        (s.truth(), s.energy(), s.snapshot(Millis::ZERO).grid.voltage.last_value())
    };
    assert_eq!(day(7), day(7));
    assert_ne!(day(7).0.load_power, day(8).0.load_power);
}

#[test]
fn no_power_until_precharged_and_closed() {
    let mut s = site(SimSiteConfig::default());
    s.apply(ems_core::watts!(3000.0), ContactorCommand::Open);
    s.advance(SEC);
    assert_eq!(s.truth().battery_power, Watts::ZERO);
    assert_eq!(s.truth().inverter_state, InverterState::Standby);
    assert_eq!(s.truth().dc_link_voltage, Volts::ZERO);
    s.apply(ems_core::watts!(3000.0), ContactorCommand::Close);
    s.advance(Millis::new(100));
    let snap = s.snapshot(Millis::new(1100));
    assert_eq!(snap.contactor.last_value(), ContactorState::Precharging);
    assert!(!snap.precharge_done.last_value());
    // τ = 150 ms: the DC link passes 95 % of the pack voltage after ≈ 450 ms.
    for _ in 0..3 {
        s.advance(Millis::new(100));
        assert_eq!(s.truth().contactor, ContactorState::Precharging);
        assert_eq!(s.truth().battery_power, Watts::ZERO);
    }
    s.advance(Millis::new(100));
    let t = s.truth();
    assert!(t.dc_link_voltage.get() > 0.95 * t.pack_voltage.get(), "{t:?}");
    assert!(s.snapshot(Millis::new(1500)).precharge_done.last_value());
    assert_eq!(t.battery_power, Watts::ZERO, "main closes at the next sub-step");
    s.advance(Millis::new(100));
    assert_eq!(s.truth().contactor, ContactorState::Closed);
    assert!(s.truth().main_relay && !s.truth().precharge_relay);
    assert!((s.truth().battery_power.get() - 1000.0).abs() < 1.0, "ramp 10 kW/s");
    assert_eq!(s.truth().inrush_events, 0);
    s.advance(SEC);
    assert!((s.truth().battery_power.get() - 3000.0).abs() < 1.0);
    assert_eq!(s.truth().inverter_state, InverterState::Running);
    s.apply(ems_core::watts!(3000.0), ContactorCommand::Open);
    s.advance(Millis::new(100));
    assert_eq!(s.truth().battery_power, Watts::ZERO);
    assert_eq!(s.truth().contactor, ContactorState::Open);
}

#[test]
fn one_second_steps_close_within_two_steps_without_inrush() {
    let mut s = site(SimSiteConfig::default());
    s.apply(ems_core::watts!(2000.0), ContactorCommand::Close);
    s.advance(SEC);
    assert_eq!(s.truth().contactor, ContactorState::Precharging);
    s.advance(SEC);
    assert_eq!(s.truth().contactor, ContactorState::Closed);
    assert!((s.truth().battery_power.get() - 2000.0).abs() < 1.0);
    assert_eq!(s.truth().inrush_events, 0);
    assert_eq!(s.truth().control, ControlSource::Remote);
    assert_eq!(s.truth().setpoint_writes, 0, "apply is not a handle write");
}

#[test]
fn setpoint_is_clamped_to_rating_and_battery() {
    let mut s = site(SimSiteConfig { initial_soc: ems_core::percent!(99.0), ..SimSiteConfig::default() });
    run(&mut s, 9000.0, 5);
    assert!((s.truth().battery_power.get() - 5000.0).abs() < 1.0);
    run(&mut s, -5000.0, 4 * 3600);
    let t = s.truth();
    assert_eq!(t.soc, Percent::MAX);
    assert_eq!(t.battery_power, Watts::ZERO, "a full pack takes no charge");
    assert!(t.bms_charge_limit == Watts::ZERO);
}

#[test]
fn site_soc_gain_for_one_hour_at_5kw() {
    let mut s = site(SimSiteConfig { initial_soc: ems_core::percent!(20.0), ..SimSiteConfig::default() });
    run(&mut s, -5000.0, 3600);
    let gained = s.truth().soc.get() - 20.0;
    assert!((44.0..=49.0).contains(&gained), "{gained}");
    let charged = s.energy().battery_charge.get();
    assert!((charged - 5000.0).abs() < 10.0, "{charged}");
}

#[test]
fn inverter_heats_with_losses() {
    let mut s = site(SimSiteConfig::default());
    let t0 = s.truth().inverter_temp.get();
    run(&mut s, 5000.0, 1800);
    assert!(s.truth().inverter_temp.get() > t0 + 20.0, "{:?}", s.truth().inverter_temp);
}

#[test]
fn every_fault_has_an_observable_effect() {
    let now = Millis::new(1_000_000);
    let mut s = site(SimSiteConfig::default());
    run(&mut s, 2000.0, 10);

    s.inject(SimFault::EStopPressed);
    assert_eq!(s.snapshot(now).estop.last_value(), EStopInput::Pressed);
    assert!(s.snapshot(now).estop_pressed(now));
    s.inject(SimFault::EStopReleased);
    assert!(!s.snapshot(now).estop_pressed(now));

    let t0 = s.truth().cell_temp_max.get();
    s.inject(SimFault::CellHeating { watts: ems_core::watts!(5000.0) });
    run(&mut s, 0.0, 600);
    assert!(s.truth().cell_temp_max.get() > t0 + 15.0);
    run(&mut s, 0.0, 3000);
    let t = s.truth();
    assert!(t.bms_alarms.contains(BmsAlarm::OverTemperature), "{:?}", t.cell_temp_max);
    assert_eq!(t.bms_charge_limit, Watts::ZERO);
    s.inject(SimFault::Clear);
    run(&mut s, 0.0, 4 * 3600);
    assert!(s.truth().bms_alarms == BmsAlarms::NONE);

    s.inject(SimFault::BmsAlarm(BmsAlarms::NONE.with(BmsAlarm::Insulation)));
    let snap = s.snapshot(now);
    assert!(snap.battery.bms_alarms.last_value().contains(BmsAlarm::Insulation));
    assert!(!snap.battery.bms_ready.last_value());
    assert_eq!(snap.battery.bms_discharge_limit.last_value(), Watts::ZERO);
    s.inject(SimFault::Clear);
    assert!(s.snapshot(now).battery.bms_ready.last_value());

    run(&mut s, 2000.0, 2);
    s.inject(SimFault::InverterFault);
    s.advance(Millis::new(100));
    assert_eq!(s.truth().inverter_state, InverterState::Fault);
    assert_eq!(s.truth().battery_power, Watts::ZERO);
    s.inject(SimFault::Clear);
    s.advance(Millis::new(100));
    assert_eq!(s.truth().inverter_state, InverterState::Running);

    s.inject(SimFault::SensorDropout { signal: Signal::CellVoltage, for_: Millis::new(5000) });
    let snap = s.snapshot(now);
    assert_eq!(snap.battery.cell_voltage_max.quality_at(now), Quality::Invalid);
    assert_eq!(snap.battery.cell_voltage_min.quality_at(now), Quality::Invalid);
    assert_eq!(snap.battery.soc.quality_at(now), Quality::Good);
    run(&mut s, 0.0, 6);
    assert_eq!(s.snapshot(now).battery.cell_voltage_max.quality_at(now), Quality::Good);

    let v0 = s.truth().cell_voltage_max.get();
    s.inject(SimFault::CellImbalance { volts: ems_core::volts!(0.5) });
    s.advance(SEC);
    assert!(s.truth().cell_voltage_max.get() > v0 + 0.45);
    assert!(s.truth().bms_alarms.contains(BmsAlarm::CellOverVoltage));
    s.inject(SimFault::Clear);
    s.advance(SEC);
    assert!(!s.truth().bms_alarms.any());
}

#[test]
fn every_signal_is_good_in_a_fresh_snapshot_and_each_dropout_hits_it() {
    let now = Millis::new(5);
    let mut s = site(SimSiteConfig::default());
    let snap = s.snapshot(now);
    assert_eq!(snap.inverter.rated_power, ems_core::watts!(5000.0));
    assert_eq!(snap.grid.frequency.quality_at(now), Quality::Good);
    assert_eq!(snap.estop.max_age(), ems_core::snapshot::ESTOP_MAX_AGE);
    assert!((snap.grid.voltage.last_value().get() - 230.0).abs() < 5.0);
    for sig in Signal::ALL {
        s.inject(SimFault::Clear);
        let before = s.snapshot(now);
        s.inject(SimFault::SensorDropout { signal: sig, for_: SEC });
        let after = s.snapshot(now);
        assert_ne!(before, after, "{sig} dropout had no effect");
    }
}

#[test]
fn device_traits_work_on_the_simulated_site() {
    pollster::block_on(async {
        let shared = SharedSite::new(site(SimSiteConfig::default()));
        let mut d = shared.devices();
        d.precharge_relay.set(true).await.unwrap();
        shared.with_mut(|s| s.advance(SEC));
        assert!(d.precharge_relay.feedback().await.unwrap());
        d.main_relay.set(true).await.unwrap();
        d.precharge_relay.set(false).await.unwrap();
        let remote =
            InverterSettings { control: ControlSource::Remote, setpoint: Watts::ZERO, revert_timeout: None };
        d.inverter.write_settings(&remote).await.unwrap();
        d.inverter.write_setpoint(ems_core::watts!(-3000.0)).await.unwrap();
        shared.with_mut(|s| s.advance(SEC));
        assert!(d.main_relay.feedback().await.unwrap());
        assert!(!d.precharge_relay.feedback().await.unwrap());
        shared.with_mut(|s| s.advance(SEC));
        let inv = d.inverter.read().await.unwrap();
        assert!((inv.active_power.get() + 3000.0).abs() < 1.0);
        assert_eq!(inv.setpoint, ems_core::watts!(-3000.0));
        assert_eq!(inv.state, InverterState::Running);
        assert!((inv.dc_link_voltage.get() - shared.borrow().truth().pack_voltage.get()).abs() < 0.01);
        let bms = d.bms.read().await.unwrap();
        assert!(bms.pack_current.get() < -50.0);
        assert!(bms.cell_voltage_max > bms.cell_voltage_min);
        assert!(bms.ready);
        let m = d.meter.read().await.unwrap();
        assert!((m.frequency.unwrap().get() - 50.0).abs() < 0.1);
        assert!(d.pv.read().await.unwrap().active_power >= Watts::ZERO);
        assert_eq!(d.estop.read().await.unwrap(), EStopInput::Released);
        assert_eq!(shared.borrow().truth().inrush_events, 0);

        let e = d.inverter.write_setpoint(ems_core::watts!(6000.0)).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutOfRange);
        shared.with_mut(|s| s.inject(SimFault::InverterFault));
        let e = d.inverter.write_setpoint(ems_core::watts!(100.0)).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Refused);
        shared.with_mut(|s| s.inject(SimFault::SensorDropout { signal: Signal::GridPower, for_: SEC }));
        assert_eq!(d.meter.read().await.unwrap_err().kind(), ErrorKind::Timeout);
        shared.with_mut(|s| s.inject(SimFault::SensorDropout { signal: Signal::BmsReady, for_: SEC }));
        assert_eq!(d.bms.read().await.unwrap_err().kind(), ErrorKind::Timeout);

        d.main_relay.set(false).await.unwrap();
        shared.with_mut(|s| s.advance(Millis::new(10)));
        assert!(!d.main_relay.feedback().await.unwrap());
        assert_eq!(shared.borrow().truth().contactor, ContactorState::Open);
    });
}

#[test]
fn outdoor_ambient_follows_the_weather() {
    let cfg = SimSiteConfig {
        ambient: ems_devices::sim::Ambient::Outdoor,
        start_day_of_year: 20,
        ..SimSiteConfig::default()
    };
    let s = site(cfg);
    let t = s.truth().cell_temp_min.get();
    assert!(t < 15.0, "January night in Greensboro: {t}");
    let cal = s.calendar();
    assert_eq!((cal.month, cal.day_of_month), (1, 20));
    assert_eq!(s.time_of_year(), Millis::new(19 * 86_400_000));
    let _ = Celsius::ZERO;
}

#[test]
fn obeying_the_bms_limits_keeps_every_cell_inside_its_window() {
    let mut s = site(SimSiteConfig { initial_soc: ems_core::percent!(80.0), ..SimSiteConfig::default() });
    let (mut vmax, mut vmin) = (0.0_f32, 10.0_f32);
    for phase in [-1.0_f32, 1.0] {
        for _ in 0..(6 * 3600) {
            let t = s.truth();
            let limit = if phase < 0.0 { t.bms_charge_limit } else { t.bms_discharge_limit };
            let sp = phase * limit.get().min(5000.0) * 0.95;
            s.apply(Watts::saturating(sp), ContactorCommand::Close);
            s.advance(SEC);
            let t = s.truth();
            assert!(!t.bms_alarms.any(), "{t:?}");
            vmax = vmax.max(t.cell_voltage_max.get());
            vmin = vmin.min(t.cell_voltage_min.get());
        }
        let soc = s.truth().soc.get();
        assert!(if phase < 0.0 { soc > 98.0 } else { soc < 6.0 }, "phase {phase}: soc {soc}");
    }
    assert!(vmax <= 3.65 && vmin >= 2.5, "{vmin}..{vmax}");
}
