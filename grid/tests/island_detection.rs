//! Island detection: every stage at the edges of its level and its trip time, the 10-min mean,
//! RoCoF over its window, a lost sample, and the enter-service window and delay.

// Test helpers outside #[test] functions unwrap (a failure should abort loudly) and turn small
// exact step counts and millisecond offsets into f32.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::cast_precision_loss)]

use ems_core::{Hertz, Millis, Volts};
use ems_grid::island::{EnterServiceMonitor, IslandDetector, IslandSettings, TripCause};

const UN: Volts = ems_core::volts!(230.0);
const F50: Hertz = ems_core::hertz!(50.0);

fn detector() -> IslandDetector {
    IslandDetector::new(IslandSettings::en50549_vde4105(UN).protection)
}

/// Feed a constant sample every `dt` ms from `from` until `to` (inclusive); the first trip and
/// when it came.
fn hold(
    d: &mut IslandDetector,
    from: u64,
    to: u64,
    dt: u64,
    v: Option<Volts>,
    f: Option<Hertz>,
) -> Option<(u64, TripCause)> {
    let mut t = from;
    while t <= to {
        if let Some(c) = d.update(Millis::new(t), v, f).trip {
            return Some((t, c));
        }
        t += dt;
    }
    None
}

/// Ten minutes of nominal samples, so the 10-min mean stage sits at Un.
fn warmed() -> IslandDetector {
    let mut d = detector();
    assert_eq!(hold(&mut d, 0, 600_000, 1_000, Some(UN), Some(F50)), None);
    d
}

const T0: u64 = 600_000;

#[test]
fn under_voltage_trips_after_3_s_not_before_and_not_at_the_level() {
    let mut d = warmed();
    let below = Some(ems_core::volts!(183.9)); // 0.8 Un = 184.0 V
    assert_eq!(hold(&mut d, T0 + 10, T0 + 10 + 2_999, 1, below, Some(F50)), None);
    assert_eq!(d.update(Millis::new(T0 + 10 + 3_000), below, Some(F50)).trip, Some(TripCause::UnderVoltage));

    let mut d = warmed();
    assert_eq!(hold(&mut d, T0 + 10, T0 + 20_000, 10, Some(ems_core::volts!(184.0)), Some(F50)), None);
}

#[test]
fn fast_under_voltage_trips_after_300_ms() {
    let mut d = warmed();
    let lost = Some(ems_core::volts!(103.4)); // 0.45 Un = 103.5 V
    assert_eq!(hold(&mut d, T0 + 10, T0 + 10 + 299, 1, lost, None), None);
    assert_eq!(d.update(Millis::new(T0 + 310), lost, None).trip, Some(TripCause::UnderVoltageFast));
    // A dead grid (0 V, no frequency) is the same stage.
    let mut d = warmed();
    assert_eq!(
        hold(&mut d, T0 + 10, T0 + 1_000, 10, Some(Volts::ZERO), None),
        Some((T0 + 310, TripCause::UnderVoltageFast))
    );
}

#[test]
fn fast_over_voltage_trips_after_100_ms_not_at_the_level() {
    let mut d = warmed();
    let high = Some(ems_core::volts!(287.6)); // 1.25 Un = 287.5 V
    assert_eq!(hold(&mut d, T0 + 10, T0 + 10 + 99, 1, high, Some(F50)), None);
    assert_eq!(d.update(Millis::new(T0 + 110), high, Some(F50)).trip, Some(TripCause::OverVoltageFast));
    let mut d = warmed();
    assert_eq!(hold(&mut d, T0 + 10, T0 + 1_000, 1, Some(ems_core::volts!(287.5)), Some(F50)), None);
}

#[test]
fn ten_minute_mean_over_voltage() {
    // 1.10 Un = 253 V: ten minutes at 253 V do not trip, at 254 V they do (the mean is the delay).
    let mut d = detector();
    assert_eq!(hold(&mut d, 0, 1_200_000, 1_000, Some(ems_core::volts!(253.0)), Some(F50)), None);
    let mut d = warmed();
    let trip = hold(&mut d, T0 + 1_000, T0 + 1_200_000, 1_000, Some(ems_core::volts!(260.0)), Some(F50));
    let (t, cause) = trip.unwrap();
    assert_eq!(cause, TripCause::OverVoltageMean);
    // Half of the window at 260 V against Un: the mean crosses 253 V after about 7 minutes.
    assert!(t > T0 + 5 * 60_000 && t < T0 + 9 * 60_000, "tripped at {t}");
}

#[test]
fn frequency_stages_trip_after_100_ms_not_at_the_level() {
    // Approach the level slowly (a 2.5 Hz step would be a RoCoF trip), then cross it.
    for (near, beyond, cause) in
        [(47.6_f32, 47.49_f32, TripCause::UnderFrequency), (51.4, 51.51, TripCause::OverFrequency)]
    {
        let mut d = warmed();
        let mut t = T0;
        for k in 1..=40 {
            let f = 50.0 + (near - 50.0) * k as f32 / 40.0;
            assert_eq!(d.update(Millis::new(t), Some(UN), Some(Hertz::try_new(f).unwrap())).trip, None);
            t += 100;
        }
        assert_eq!(hold(&mut d, t, t + 2_000, 10, Some(UN), Some(Hertz::try_new(near).unwrap())), None);
        let t = t + 2_010;
        let f = Some(Hertz::try_new(beyond).unwrap());
        assert_eq!(hold(&mut d, t, t + 99, 1, Some(UN), f), None);
        assert_eq!(d.update(Millis::new(t + 100), Some(UN), f).trip, Some(cause));
    }
    for f in [47.5_f32, 51.5] {
        let mut d = detector();
        let mut t = 0;
        for k in 1..=40 {
            let g = 50.0 + (f - 50.0) * k as f32 / 40.0;
            assert_eq!(d.update(Millis::new(t), Some(UN), Some(Hertz::try_new(g).unwrap())).trip, None);
            t += 100;
        }
        assert_eq!(hold(&mut d, t, t + 10_000, 10, Some(UN), Some(Hertz::try_new(f).unwrap())), None);
    }
}

fn ramp(rate_hz_per_s: f32) -> Option<(u64, TripCause)> {
    let mut d = warmed();
    let mut t = T0 + 100;
    while t <= T0 + 900 {
        let dt = (t - T0 - 100) as f32 / 1000.0;
        let f = Hertz::try_new(50.0 - rate_hz_per_s * dt).unwrap();
        if let Some(c) = d.update(Millis::new(t), Some(UN), Some(f)).trip {
            return Some((t, c));
        }
        t += 100;
    }
    None
}

#[test]
fn rocof_over_the_500_ms_window() {
    // 10 Hz samples: the window is filled 500 ms into the ramp.
    assert_eq!(ramp(2.2), Some((T0 + 600, TripCause::Rocof)));
    assert_eq!(ramp(1.9), None);
    assert_eq!(ramp(-2.2), Some((T0 + 600, TripCause::Rocof)));
}

#[test]
fn a_lost_sample_restarts_the_timers() {
    let mut d = warmed();
    let below = Some(ems_core::volts!(180.0));
    assert_eq!(hold(&mut d, T0 + 100, T0 + 2_600, 100, below, Some(F50)), None);
    assert!(!d.update(Millis::new(T0 + 2_700), None, None).measured);
    assert_eq!(hold(&mut d, T0 + 2_800, T0 + 5_700, 100, below, Some(F50)), None);
    assert_eq!(d.update(Millis::new(T0 + 5_800), below, Some(F50)).trip, Some(TripCause::UnderVoltage));
}

#[test]
fn enter_service_needs_60_s_inside_the_window_bounds_included() {
    let s = IslandSettings::en50549_vde4105(UN).enter_service;
    let mut m = EnterServiceMonitor::new(s);
    let edges = [(195.5, 49.9), (253.0, 50.1), (230.0, 50.0)];
    let mut t = 0;
    let mut healthy = false;
    while t <= 60_000 {
        let (v, f) = edges[(t / 1000) as usize % 3];
        healthy =
            m.update(Millis::new(t), Some(Volts::try_new(v).unwrap()), Some(Hertz::try_new(f).unwrap()));
        if t < 60_000 {
            assert!(!healthy, "healthy at {t}");
        }
        t += 1000;
    }
    assert!(healthy);
    // One sample just outside restarts the count.
    assert!(!m.update(Millis::new(61_000), Some(UN), Some(ems_core::hertz!(50.11))));
    assert!(!m.update(Millis::new(62_000), Some(UN), Some(F50)));
    assert!(!m.update(Millis::new(121_999), Some(UN), Some(F50)));
    assert!(m.update(Millis::new(122_000), Some(UN), Some(F50)));
    for (v, f) in [(195.4, 50.0), (253.1, 50.0), (230.0, 49.89)] {
        assert!(!m.inside(Some(Volts::try_new(v).unwrap()), Some(Hertz::try_new(f).unwrap())));
    }
    assert!(!m.inside(None, Some(F50)));
}
