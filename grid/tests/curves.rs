//! Activation curves at their corner points, through the `GridService` seam, and the FCR-N →
//! FCR-D hand-over of the combined set.
// Test helpers outside #[test] functions: a failure should abort loudly; times and sample
// indices are small integers, exact in f32.
#![allow(clippy::unwrap_used, clippy::panic, clippy::cast_precision_loss, clippy::cast_possible_truncation)]
mod common;

use common::{call, delta, w};
use ems_grid::{FcrD, FcrN, FrequencyServices, LerConfig, ParamSet};

fn close(a: Option<f32>, b: f32) -> bool {
    a.is_some_and(|a| (a - b).abs() < 0.5)
}

#[test]
fn fcr_n_corner_points() {
    let mut s = FcrN::try_new(w(2000.0), ParamSet::nordic_2025_v1_1()).unwrap();
    let mut t = 0;
    for (f, want) in [
        (50.0, 0.0),
        (49.9, 2000.0),
        (50.1, -2000.0),
        (49.95, 1000.0),
        (50.05, -1000.0),
        (49.5, 2000.0),
        (50.6, -2000.0),
    ] {
        t += 100;
        let d = delta(call(&mut s, t, Some(f), 50.0));
        assert!(close(d, want), "FCR-N at {f} Hz: {d:?}, want {want}");
    }
    // At exactly 50.0 Hz the request holds the reserve and moves nothing.
    let r = call(&mut s, t + 100, Some(50.0), 50.0).unwrap();
    assert_eq!(r.action, ems_control::GridAction::Idle);
    assert!(r.reserve.any());
    assert_eq!(r.ramp, None);
}

#[test]
fn fcr_d_corner_points() {
    let p = ParamSet::nordic_2023_v1_0();
    let mut up = FcrD::up(w(1000.0), p).unwrap();
    let mut down = FcrD::down(w(1000.0), p).unwrap();
    let mut t = 0;
    for (f, want) in [(50.1, 0.0), (49.9, 0.0), (49.7, 500.0), (49.5, 1000.0), (49.2, 1000.0)] {
        t += 100;
        assert!(close(delta(call(&mut up, t, Some(f), 50.0)), want), "up at {f}");
    }
    for (f, want) in [(49.9, 0.0), (50.1, 0.0), (50.3, -500.0), (50.5, -1000.0), (50.8, -1000.0)] {
        t += 100;
        assert!(close(delta(call(&mut down, t, Some(f), 50.0)), want), "down at {f}");
    }
}

#[test]
fn fcr_n_hands_over_to_fcr_d_at_49_9_with_no_gap_and_no_delay() {
    let p = ParamSet::nordic_2025_v1_1();
    let ler = LerConfig::try_new(
        ems_core::watt_hours!(100_000.0),
        ems_core::percent!(0.0),
        ems_core::percent!(100.0),
    )
    .unwrap();
    let mut set = FrequencyServices::new(Some(ler))
        .with_fcr_n(FcrN::try_new(w(1000.0), p).unwrap())
        .with_fcr_d(FcrD::up(w(1000.0), p).unwrap())
        .with_fcr_d(FcrD::down(w(1000.0), p).unwrap());
    // Sweep down 50.0 → 49.5 and up 50.0 → 50.5 in 1 mHz steps, 100 ms apart: the sum is
    // monotone and has no step larger than one slope step (10 W/mHz for FCR-N).
    for sign in [-1.0_f32, 1.0] {
        let mut t = 1_000_000 * u64::from(sign > 0.0);
        let mut previous = 0.0_f32;
        for i in 0..=500 {
            t += 100;
            let f = 50.0 + sign * i as f32 * 0.001;
            let d = delta(call(&mut set, t, Some(f), 50.0)).unwrap();
            let want = -sign
                * (1000.0 * (i as f32 / 100.0).min(1.0)
                    + 1000.0 * ((i as f32 - 100.0) / 400.0).clamp(0.0, 1.0));
            assert!((d - want).abs() < 1.0, "at {f:.3} Hz: {d} != {want}");
            assert!((d - previous).abs() <= 10.5, "step at {f:.3} Hz: {previous} → {d}");
            previous = d;
        }
    }
}

#[test]
fn fcr_d_falls_back_to_fcr_n_within_15_s() {
    let p = ParamSet::nordic_2025_v1_1();
    let mut set = FrequencyServices::new(None)
        .with_fcr_n(FcrN::try_new(w(1000.0), p).unwrap())
        .with_fcr_d(FcrD::up(w(1000.0), p).unwrap());
    let _ = call(&mut set, 0, Some(49.5), 50.0);
    let mut t = 0;
    while set.status().fcr_d_up.unwrap().delta.get() > 0.0 {
        t += 100;
        let _ = call(&mut set, t, Some(49.95), 50.0);
        assert!(t <= 15_000, "FCR-D still active after 15 s");
    }
    assert!((set.status().delta.get() - 500.0).abs() < 0.5, "FCR-N alone: {}", set.status().delta);
}
