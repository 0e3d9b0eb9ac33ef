//! The simulated EV and charger: physics (power = phases × 230 V × current, capped by the car),
//! SOC and session energy, and the injected faults.
#![allow(clippy::unwrap_used)] // tests fail loudly

use ems_core::{Millis, Percent, WattHours};
use ems_devices::evse::sim::{SimEv, SimEvse, SimEvseFault};
use ems_devices::evse::{DeciAmps, Evse, EvseCapabilities, EvseStatus, Phases};
use ems_devices::traits::{DeviceError, ErrorKind};
use pollster::block_on;

fn a(x: f32) -> DeciAmps {
    DeciAmps::try_from_amps(x).unwrap()
}

fn caps() -> EvseCapabilities {
    EvseCapabilities { min_current: a(6.0), max_current: a(32.0), phase_switching: true }
}

fn car(onboard_max: f32, phases: Phases) -> SimEv {
    SimEv {
        capacity: WattHours::try_new(60_000.0).unwrap(),
        soc: Percent::try_new(20.0).unwrap(),
        onboard_max: a(onboard_max),
        onboard_phases: phases,
        departure: Some(Millis::from_secs(8 * 3600)),
    }
}

#[test]
fn power_is_phases_times_230_v_times_current_capped_by_the_car() {
    let mut evse = SimEvse::new(caps());
    assert_eq!(block_on(evse.read()).unwrap().status, EvseStatus::Unplugged);
    evse.plug(car(16.0, Phases::Three));
    block_on(evse.set_current_limit(a(10.0))).unwrap();
    evse.advance(Millis::from_secs(1));
    let r = block_on(evse.read()).unwrap();
    assert_eq!(r.status, EvseStatus::Charging);
    assert!((r.power.get() - 3.0 * 230.0 * 10.0).abs() < 0.5, "{r:?}");
    assert_eq!(r.applied_limit, a(10.0));
    // The car's on-board charger caps it at 16 A.
    block_on(evse.set_current_limit(a(32.0))).unwrap();
    evse.advance(Millis::from_secs(1));
    let r = block_on(evse.read()).unwrap();
    assert!((r.power.get() - 3.0 * 230.0 * 16.0).abs() < 0.5);
    assert!((r.max_phase_current().get() - 16.0).abs() < 1e-3);
}

#[test]
fn a_single_phase_car_uses_one_phase_and_phase_switching_works() {
    let mut evse = SimEvse::new(caps());
    evse.plug(car(32.0, Phases::One));
    block_on(evse.set_current_limit(a(16.0))).unwrap();
    evse.advance(Millis::from_secs(1));
    let r = block_on(evse.read()).unwrap();
    assert!((r.power.get() - 230.0 * 16.0).abs() < 0.5);
    assert_eq!(r.current[1].get(), 0.0);
    block_on(evse.set_phases(Phases::One)).unwrap();
    assert_eq!(block_on(evse.read()).unwrap().phases, Phases::One);
    let mut fixed = SimEvse::new(EvseCapabilities { phase_switching: false, ..caps() });
    let e = block_on(fixed.set_phases(Phases::One)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Refused);
}

#[test]
fn below_the_minimum_current_the_car_stops_and_energy_and_soc_follow() {
    let mut evse = SimEvse::new(caps());
    evse.plug(car(16.0, Phases::Three));
    block_on(evse.set_current_limit(a(5.9))).unwrap();
    evse.advance(Millis::from_secs(1));
    assert_eq!(block_on(evse.read()).unwrap().status, EvseStatus::Plugged);
    block_on(evse.set_current_limit(a(16.0))).unwrap();
    // One hour at 11.04 kW into a 60 kWh pack: +18.4 % SOC.
    for _ in 0..3600 {
        evse.advance(Millis::from_secs(1));
    }
    let r = block_on(evse.read()).unwrap();
    assert!((r.session_energy.get() - 11_040.0).abs() < 5.0, "{r:?}");
    assert!((evse.ev().unwrap().soc.get() - 38.4).abs() < 0.05);
    // A full car draws nothing.
    let mut full = SimEvse::new(caps());
    full.plug(SimEv { soc: Percent::try_new(100.0).unwrap(), ..car(16.0, Phases::Three) });
    block_on(full.set_current_limit(a(16.0))).unwrap();
    full.advance(Millis::from_secs(1));
    assert_eq!(block_on(full.read()).unwrap().power.get(), 0.0);
    // Disabled: no current whatever the limit.
    block_on(evse.set_enabled(false)).unwrap();
    evse.advance(Millis::from_secs(1));
    assert_eq!(block_on(evse.read()).unwrap().status, EvseStatus::Plugged);
    assert!(evse.unplug().is_some());
    assert_eq!(block_on(evse.read()).unwrap().session_energy.get(), 0.0);
}

#[test]
fn injected_faults_ignore_zero_ignore_limit_offline() {
    let mut evse = SimEvse::new(caps());
    evse.plug(car(16.0, Phases::Three));
    evse.set_fault(Some(SimEvseFault::IgnoresZero));
    block_on(evse.set_current_limit(a(12.0))).unwrap();
    evse.advance(Millis::from_secs(1));
    block_on(evse.set_current_limit(DeciAmps::ZERO)).unwrap();
    evse.advance(Millis::from_secs(1));
    let r = block_on(evse.read()).unwrap();
    assert_eq!(r.applied_limit, DeciAmps::ZERO, "it reads back 0 A …");
    assert!((r.max_phase_current().get() - 12.0).abs() < 1e-3, "… and keeps charging");

    evse.set_fault(Some(SimEvseFault::IgnoresLimit));
    block_on(evse.set_current_limit(a(20.0))).unwrap();
    evse.advance(Millis::from_secs(1));
    let r = block_on(evse.read()).unwrap();
    assert_eq!(r.applied_limit, a(20.0));
    assert!(r.max_phase_current().get() < 0.1, "the 0 A it had is still applied");

    evse.set_fault(Some(SimEvseFault::Offline));
    assert_eq!(block_on(evse.read()).unwrap_err().kind(), ErrorKind::Comm);
    assert_eq!(block_on(evse.set_current_limit(a(6.0))).unwrap_err().kind(), ErrorKind::Comm);
}

#[test]
fn deci_amps_round_down_and_refuse_bad_values() {
    assert_eq!(a(6.3).tenths(), 63);
    assert_eq!(a(6.39).tenths(), 63);
    assert_eq!(a(0.0), DeciAmps::ZERO);
    assert_eq!(a(800.0), DeciAmps::MAX);
    for bad in [-0.1, 800.1, f32::NAN, f32::INFINITY] {
        let e = DeciAmps::try_from_amps(bad).unwrap_err();
        assert!(e.to_string().contains("current limit"), "{e}");
    }
    assert_eq!(a(16.0).to_string(), "16.0 A");
    assert_eq!(DeciAmps::from_tenths(8001), None);
}
