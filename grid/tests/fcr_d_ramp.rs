//! The FCR-D ramp test of the Nordic test program, on the request itself: a 0.24 Hz/s ramp
//! from 49.9 to 49.5 Hz (and 50.1 → 50.5 Hz) sampled at 10 Hz; ΔP(7.5 s) ≥ 0.86·ΔPss and the
//! energy over 0–7.5 s ≥ 3.2 s·ΔPss.
// Test helpers outside #[test] functions: a failure should abort loudly; times and sample
// indices are small integers, exact in f32.
#![allow(clippy::unwrap_used, clippy::panic, clippy::cast_precision_loss, clippy::cast_possible_truncation)]
mod common;

use common::{call, delta, w};
use ems_grid::{FcrD, ParamSet};

fn ramp(mut service: FcrD, from: f32, slope: f32, end: f32) -> (f32, f32) {
    let mut energy = 0.0_f32;
    let mut previous = 0.0_f32;
    let mut last = 0.0_f32;
    for i in 0..=75_u64 {
        let t = i as f32 * 0.1;
        let f = from + slope * t;
        let f = if slope < 0.0 { f.max(end) } else { f.min(end) };
        last = delta(call(&mut service, 100_000 + i * 100, Some(f), 50.0)).unwrap().abs();
        if i > 0 {
            energy += 0.5 * (previous + last) * 0.1;
        }
        previous = last;
    }
    (last, energy)
}

#[test]
fn fcr_d_up_ramp_meets_the_performance_requirement() {
    for params in [ParamSet::nordic_2023_v1_0(), ParamSet::nordic_2025_v1_1()] {
        let c = 1000.0;
        let (p75, energy) = ramp(FcrD::up(w(c), params).unwrap(), 49.9, -0.24, 49.5);
        // ΔPss: the steady-state response at 49.5 Hz = C.
        assert!(p75 >= 0.86 * c, "ΔP(7.5 s) = {p75}");
        assert!(energy >= 3.2 * c, "energy {energy} W·s < 3.2 s·ΔPss");
    }
}

#[test]
fn fcr_d_down_ramp_meets_the_performance_requirement() {
    let c = 2500.0;
    let (p75, energy) = ramp(FcrD::down(w(c), ParamSet::default()).unwrap(), 50.1, 0.24, 50.5);
    assert!(p75 >= 0.86 * c, "ΔP(7.5 s) = {p75}");
    assert!(energy >= 3.2 * c, "energy {energy}");
}
