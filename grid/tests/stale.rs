//! A stale or invalid frequency deactivates every service over a bounded ramp and then turns
//! it off (`None`); it never freezes the last response.
// Test helpers outside #[test] functions: a failure should abort loudly; times and sample
// indices are small integers, exact in f32.
#![allow(clippy::unwrap_used, clippy::panic, clippy::cast_precision_loss, clippy::cast_possible_truncation)]
mod common;

use common::{aged, call, delta, envelope, w};
use ems_control::GridService;
use ems_core::Millis;
use ems_grid::{
    Activation, Droop, DroopParams, FcrD, FcrN, Ffr, FfrLevel, FfrParams, FfrSupport, FrequencyServices,
    ParamSet,
};

/// Drive `service` to a response at `f`, then feed `lost` (which makes the frequency unusable)
/// every 100 ms; returns the Δs seen until the service returned `None`.
fn fall_back<G: GridService>(service: &mut G, f: f32, lost: impl Fn(u64) -> ems_core::Snapshot) -> Vec<f32> {
    for t in (10_000..=11_000).step_by(100) {
        let _ = call(service, t, Some(f), 50.0);
    }
    let mut seen = Vec::new();
    let mut t = 11_000;
    loop {
        t += 100;
        assert!(t < 70_000, "still engaged after a minute without frequency");
        match delta(service.request(Millis::new(t), &lost(t), &envelope())) {
            Some(d) => seen.push(d),
            None => return seen,
        }
    }
}

fn check_ramp(seen: &[f32], start: f32, max_per_call: f32) {
    let mut previous = start;
    for &d in seen {
        assert!(d.abs() <= previous.abs() + 1e-3, "not monotone toward zero: {previous} → {d}");
        assert!((previous - d).abs() <= max_per_call * 1.001, "too fast: {previous} → {d}");
        previous = d;
    }
}

#[test]
fn invalid_frequency_ramps_fcr_n_to_zero_then_none() {
    let mut s = FcrN::try_new(w(1000.0), ParamSet::default()).unwrap();
    let seen = fall_back(&mut s, 49.9, |t| common::snapshot(t, None, 50.0));
    // 20 %/s of 1000 W at 100 ms: 20 W per call, so 50 calls from full.
    assert!((45..=51).contains(&seen.len()), "{} calls", seen.len());
    check_ramp(&seen, 1000.0, 20.0);
    assert_eq!(s.status().activation, Activation::FrequencyLost);
    assert!(!seen.windows(2).any(|p| p[0] == p[1] && p[0] != 0.0), "frozen response");
}

#[test]
fn stale_frequency_by_age_deactivates_fcr_d_and_droop() {
    // A reading taken 2.5 s ago is stale (max age 2 s), whatever its value.
    let mut d = FcrD::up(w(1000.0), ParamSet::default()).unwrap();
    let seen = fall_back(&mut d, 49.5, |t| aged(t, 49.5, 2500, 50.0));
    check_ramp(&seen, 1000.0, 20.0);
    assert!(!seen.is_empty());

    let mut droop = Droop::try_new(DroopParams::lfsm_o()).unwrap();
    // Rated 5 kW (testkit); at 51.0 Hz LFSM-O asks −1.6 kW; 20 %/s of 5 kW = 100 W per call.
    let seen = fall_back(&mut droop, 51.0, |t| aged(t, 51.0, 3000, 50.0));
    check_ramp(&seen, -1600.0, 100.0);
    assert!(seen.len() >= 15);
}

#[test]
fn ffr_lost_during_support_ramps_at_its_deactivation_limit() {
    let mut s = Ffr::try_new(w(1000.0), FfrParams::nordic(FfrLevel::Hz49_7, FfrSupport::Short)).unwrap();
    let seen = fall_back(&mut s, 49.6, |t| common::snapshot(t, None, 50.0));
    check_ramp(&seen, 1000.0, 20.0);
    assert!(seen.len() >= 45);
    assert_eq!(s.activations(), 1);
}

#[test]
fn combined_set_turns_off_and_drops_its_reserve() {
    let p = ParamSet::default();
    let mut set = FrequencyServices::new(None)
        .with_fcr_n(FcrN::try_new(w(1000.0), p).unwrap())
        .with_fcr_d(FcrD::up(w(500.0), p).unwrap());
    let seen = fall_back(&mut set, 49.7, |t| common::snapshot(t, None, 50.0));
    check_ramp(&seen, 1250.0, 30.0);
    assert!(!set.status().engaged);
    assert_eq!(set.status().delta, ems_core::Watts::ZERO);
}

#[test]
fn a_gap_in_the_calls_restarts_from_zero() {
    // Not called for 10 s (the controller left RUNNING): the FCR-D response does not resume
    // its old deactivation; it starts from the present frequency.
    let mut d = FcrD::up(w(1000.0), ParamSet::default()).unwrap();
    let _ = call(&mut d, 0, Some(49.5), 50.0);
    let r = delta(call(&mut d, 10_000, Some(50.0), 50.0)).unwrap();
    assert_eq!(r, 0.0);
}
