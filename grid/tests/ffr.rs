//! FFR: one activation per event with a noisy frequency at the threshold, support, bounded
//! deactivation, recovery and re-arming.
// Test helpers outside #[test] functions: a failure should abort loudly; times and sample
// indices are small integers, exact in f32.
#![allow(clippy::unwrap_used, clippy::panic, clippy::cast_precision_loss, clippy::cast_possible_truncation)]
mod common;

use common::{call, delta, w, Noise};
use ems_grid::{Activation, Ffr, FfrLevel, FfrParams, FfrSupport};

fn short(level: FfrLevel) -> Ffr {
    Ffr::try_new(w(1000.0), FfrParams::nordic(level, FfrSupport::Short)).unwrap()
}

#[test]
fn noisy_frequency_at_the_threshold_activates_exactly_once() {
    for (seed, level) in [(1, FfrLevel::Hz49_7), (7, FfrLevel::Hz49_6), (42, FfrLevel::Hz49_5)] {
        let mut s = short(level);
        let mut noise = Noise::new(seed, 0.005);
        let threshold = level.threshold().get();
        // 20 minutes at 10 Hz hovering at the threshold (σ 5 mHz).
        for i in 0..12_000_u64 {
            let _ = call(&mut s, i * 100, Some(threshold + noise.sample()), 50.0);
        }
        assert_eq!(s.activations(), 1, "{level:?}");
    }
}

#[test]
fn support_5_s_then_at_most_20_percent_per_second() {
    let mut s = short(FfrLevel::Hz49_7);
    let mut seen = Vec::new();
    for i in 0..200_u64 {
        let f = if i < 10 { 50.0 } else { 49.65 };
        seen.push(delta(call(&mut s, i * 100, Some(f), 50.0)).unwrap());
    }
    let start = seen.iter().position(|&d| d > 0.0).unwrap();
    assert_eq!(start, 10, "activates on the first sample at or below the threshold");
    assert_eq!(seen[start], 1000.0, "full at once");
    let full = seen[start..].iter().take_while(|&&d| d == 1000.0).count();
    assert!(full >= 50, "support {} ms < 5 s", full * 100);
    for pair in seen[start..].windows(2) {
        assert!(pair[0] - pair[1] <= 20.0 * 1.001, "fell faster than 20 %/s: {pair:?}");
    }
    let end = seen.iter().rposition(|&d| d > 0.0).unwrap();
    assert!((end - start) * 100 >= 5000 + 4800, "deactivation took under 5 s");
    assert!(matches!(s.status().activation, Activation::Recovering { .. }));
}

#[test]
fn long_support_class_holds_30_s() {
    let mut s = Ffr::try_new(w(1000.0), FfrParams::nordic(FfrLevel::Hz49_5, FfrSupport::Long)).unwrap();
    let mut held = 0;
    for i in 0..400_u64 {
        if delta(call(&mut s, i * 100, Some(49.4), 50.0)).unwrap() == 1000.0 {
            held += 1;
        }
    }
    assert!(held >= 300, "held {} ms", held * 100);
}

#[test]
fn recovery_15_min_then_rearmed() {
    let mut s = short(FfrLevel::Hz49_6);
    let _ = call(&mut s, 0, Some(49.5), 50.0);
    assert_eq!(s.activations(), 1);
    let mut t = 0;
    // Frequency back to normal; a new dip at 14 min is ignored (still recovering).
    while t < 14 * 60_000 {
        t += 1000;
        let _ = call(&mut s, t, Some(50.0), 50.0);
    }
    let Activation::Recovering { ready_at } = s.status().activation else { panic!("{:?}", s.status()) };
    assert_eq!(ready_at.get(), 15 * 60_000);
    assert_eq!(delta(call(&mut s, t + 1000, Some(49.5), 50.0)), Some(0.0));
    assert_eq!(s.activations(), 1);
    // Back above threshold + hysteresis; ready again at 15 min.
    t += 1000;
    while t < 15 * 60_000 {
        t += 1000;
        let _ = call(&mut s, t, Some(50.0), 50.0);
    }
    assert_eq!(s.status().activation, Activation::Armed, "ready again within 15 min");
    assert_eq!(delta(call(&mut s, t + 100, Some(49.55), 50.0)), Some(1000.0));
    assert_eq!(s.activations(), 2);
}

#[test]
fn rearm_needs_the_frequency_above_threshold_plus_hysteresis_for_the_rearm_time() {
    let mut s = short(FfrLevel::Hz49_7);
    let _ = call(&mut s, 0, Some(49.6), 50.0);
    let mut t = 0;
    // 16 min at 49.715 Hz: above the threshold, below threshold + 20 mHz → never re-armed.
    while t < 16 * 60_000 {
        t += 1000;
        let _ = call(&mut s, t, Some(49.715), 50.0);
    }
    assert!(matches!(s.status().activation, Activation::Recovering { .. }));
    // 9 s above, one sample below, then 10 s above: armed only after the full 10 s.
    for _ in 0..9 {
        t += 1000;
        let _ = call(&mut s, t, Some(49.75), 50.0);
    }
    t += 1000;
    let _ = call(&mut s, t, Some(49.71), 50.0);
    for _ in 0..10 {
        t += 1000;
        let _ = call(&mut s, t, Some(49.75), 50.0);
        assert!(matches!(s.status().activation, Activation::Recovering { .. }));
    }
    t += 1000;
    let _ = call(&mut s, t, Some(49.75), 50.0);
    assert_eq!(s.status().activation, Activation::Armed);
}
