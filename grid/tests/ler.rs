//! Limited energy reservoirs: reservations as the `Reserve` of the request, NEM and AEM
//! transitions, endurance, and FCR-N never spending FCR-D's energy.
// Test helpers outside #[test] functions: a failure should abort loudly; times and sample
// indices are small integers, exact in f32.
#![allow(clippy::unwrap_used, clippy::panic, clippy::cast_precision_loss, clippy::cast_possible_truncation)]
mod common;

use common::{call, w};
use ems_grid::{AemState, FcrD, FcrN, FrequencyServices, LerConfig, NemState, ParamSet};

fn ler(wh: f32) -> LerConfig {
    LerConfig::try_new(
        ems_core::WattHours::try_new(wh).unwrap(),
        ems_core::percent!(0.0),
        ems_core::percent!(100.0),
    )
    .unwrap()
}

fn fcr_n() -> FcrN {
    // C = 1000 W on a 3 kWh reservoir: endurance each way = 3 h × SOC share.
    FcrN::try_new(w(1000.0), ParamSet::nordic_2025_v1_1()).unwrap().with_ler(ler(3000.0))
}

#[test]
fn nem_switches_on_below_30_min_and_off_above_45_min() {
    let mut s = fcr_n();
    let mut t = 0;
    let mut step = |s: &mut FcrN, soc: f32| {
        t += 100;
        let r = call(s, t, Some(50.0), soc).unwrap();
        (s.status(), r)
    };
    let (st, _) = step(&mut s, 20.0); // 36 min up: between the thresholds
    assert_eq!(st.ler.nem, NemState::Off);
    assert_eq!(st.ler.endurance_up.unwrap().get() / 60_000, 36);
    let (st, r) = step(&mut s, 15.0); // 27 min: on, offset toward charging
    assert_eq!(st.ler.nem, NemState::Charging);
    assert!((st.delta.get() + 340.0).abs() < 0.5, "offset 0.34·C: {}", st.delta);
    assert_eq!(r.action, ems_control::GridAction::Add(st.delta));
    let (st, _) = step(&mut s, 20.0); // 36 min: still on (hysteresis)
    assert_eq!(st.ler.nem, NemState::Charging);
    let (st, _) = step(&mut s, 26.0); // 46.8 min: off
    assert_eq!(st.ler.nem, NemState::Off);
    assert_eq!(st.delta.get(), 0.0);
    let (st, _) = step(&mut s, 85.0); // 27 min of room down: offset toward discharging
    assert_eq!(st.ler.nem, NemState::Discharging);
    assert!((st.delta.get() - 340.0).abs() < 0.5);
}

#[test]
fn the_2023_set_offsets_by_0_10_c() {
    let mut s = FcrN::try_new(w(1000.0), ParamSet::nordic_2023_v1_0()).unwrap().with_ler(ler(3000.0));
    let _ = call(&mut s, 0, Some(50.0), 10.0);
    assert_eq!(s.status().ler.nem, NemState::Charging);
    assert!((s.status().delta.get() + 100.0).abs() < 0.5);
}

#[test]
fn nem_stays_off_while_the_rolling_mean_already_refills() {
    let mut s = fcr_n();
    // 300 s at 50.05 Hz (FCR-N charging at 500 W) with plenty of energy …
    for i in 0..3000_u64 {
        let _ = call(&mut s, i * 100, Some(50.05), 50.0);
    }
    assert!((s.status().ler.mean_response.get() + 500.0).abs() < 5.0, "{}", s.status().ler.mean_response);
    // … then the SOC reads low: the grid is already refilling, no offset.
    let _ = call(&mut s, 300_000, Some(50.05), 15.0);
    assert_eq!(s.status().ler.nem, NemState::Off);
}

#[test]
fn aem_moves_f_ref_in_the_alert_state_and_releases_after_it() {
    let mut s = fcr_n();
    let soc = 7.0; // 12.6 min of up-regulation left
    let mut t = 0;
    let _ = call(&mut s, t, Some(49.85), soc);
    assert_eq!(s.status().ler.nem, NemState::Charging);
    assert!((s.status().delta.get() - 660.0).abs() < 0.5, "{}", s.status().delta);
    // 5 minutes outside 49.9–50.1 Hz: alert state, AEM on, f_ref = 49.9 Hz.
    while t < 300_000 {
        t += 100;
        let _ = call(&mut s, t, Some(49.85), soc);
    }
    let st = s.status();
    assert!(st.ler.alert_state);
    assert_eq!(st.ler.aem, AemState::SavingUp);
    assert!((st.delta.get() - 500.0).abs() < 0.5, "half of C around f_ref 49.9: {}", st.delta);
    assert_eq!(st.ler.nem_offset.get(), 0.0);
    // Back in the normal band: alert over, AEM off, NEM charging again.
    let _ = call(&mut s, t + 100, Some(50.0), soc);
    let st = s.status();
    assert_eq!(st.ler.aem, AemState::Off);
    assert!(!st.ler.alert_state);
    assert!((st.delta.get() + 340.0).abs() < 0.5);
}

#[test]
fn no_good_soc_no_energy_management() {
    let mut s = fcr_n();
    let mut snap = common::snapshot(0, Some(50.0), 10.0);
    snap.battery.soc =
        ems_core::Measurement::invalid(ems_core::Percent::ZERO, ems_core::snapshot::SLOW_MAX_AGE);
    let _ = ems_control::GridService::request(&mut s, ems_core::Millis::ZERO, &snap, &common::envelope());
    assert_eq!(s.status().ler.nem, NemState::Off);
    assert_eq!(s.status().ler.endurance_up, None);
    assert_eq!(s.status().delta.get(), 0.0);
}

#[test]
fn combined_reserve_is_the_sum_and_fcr_n_never_uses_fcr_d_energy() {
    let p = ParamSet::nordic_2025_v1_1();
    // 1 kWh; FCR-D up keeps C/3 h = 333 Wh for discharging.
    let mut set = FrequencyServices::new(Some(ler(1000.0)))
        .with_fcr_n(FcrN::try_new(w(1000.0), p).unwrap())
        .with_fcr_d(FcrD::up(w(1000.0), p).unwrap())
        .with_fcr_d(FcrD::down(w(500.0), p).unwrap());
    let r = call(&mut set, 0, Some(49.95), 33.0).unwrap();
    assert!((r.reserve.discharge.get() - 2340.0).abs() < 0.5);
    assert!((r.reserve.charge.get() - 1840.0).abs() < 0.5);
    assert!((r.reserve.energy_for_discharge.get() - 1333.33).abs() < 0.5);
    assert!((r.reserve.energy_for_charge.get() - (1000.0 + 166.67)).abs() < 0.5);
    let st = set.status();
    let n = st.fcr_n.unwrap();
    // 330 Wh above the floor, all of it FCR-D's: FCR-N does not discharge.
    assert_eq!(n.ler.endurance_up, Some(ems_core::Millis::ZERO));
    assert!(n.delta.get() <= 0.0, "FCR-N discharged into FCR-D's energy: {}", n.delta);
    let d = st.fcr_d_up.unwrap();
    assert!(d.ler.endurance_up.unwrap().get() > 19 * 60_000, "{:?}", d.ler.endurance_up);
    // FCR-D still answers a disturbance with what the reservoir holds.
    let _ = call(&mut set, 100, Some(49.5), 33.0);
    assert!((set.status().fcr_d_up.unwrap().delta.get() - 1000.0).abs() < 0.5);
}
