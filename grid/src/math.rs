//! Private numeric helpers: the only place where durations, energies and rates turn into bare
//! `f32` and back. Every conversion saturates; a non-finite intermediate gives zero.

use ems_core::{Millis, Percent, WattHours, Watts};

/// The largest duration this crate reports (about 31 years): endurance of a tiny service on a
/// big battery saturates here instead of overflowing.
const MAX_MILLIS: f32 = 1.0e12;

/// A duration from seconds; non-finite or negative gives zero, a huge one saturates.
pub(crate) fn millis_from_secs(secs: f32) -> Millis {
    if !secs.is_finite() || secs <= 0.0 {
        return Millis::ZERO;
    }
    let ms = (secs * 1000.0).min(MAX_MILLIS);
    // Finite and inside 0..=1e12 (checked above), which a u64 holds exactly enough.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let ms = ms as u64;
    Millis::new(ms)
}

/// How long `energy` lasts at a constant `power` (magnitudes; a negative energy counts as
/// none). `None` when the power is zero: nothing is drawn, the endurance is unbounded.
pub(crate) fn endurance(energy: WattHours, power: Watts) -> Option<Millis> {
    let p = magnitude(power.get());
    if p <= 0.0 {
        return None;
    }
    let e = energy.get().max(0.0);
    Some(millis_from_secs(e / p * 3600.0))
}

/// The energy of `power` (a magnitude) held for `time`.
pub(crate) fn energy_for(power: Watts, time: Millis) -> WattHours {
    power.abs().energy_over(time)
}

/// The largest change over `dt` of a rate given in % of `base` per second.
pub(crate) fn rate_step(rate: Percent, base: Watts, dt: Millis) -> Watts {
    base.abs().scale(rate.fraction() * dt.as_secs_f32())
}

/// `|x|` without `f32::abs` (not in `core` at this crate's minimum Rust version).
pub(crate) fn magnitude(x: f32) -> f32 {
    if x < 0.0 {
        -x
    } else {
        x
    }
}

/// `(x − start) / (full − start)`, clamped to `0..=1`; `0` when the span is not positive.
pub(crate) fn fraction_between(x: f32, start: f32, full: f32) -> f32 {
    let span = full - start;
    if !span.is_finite() || span <= 0.0 || !x.is_finite() {
        return 0.0;
    }
    ((x - start) / span).clamp(0.0, 1.0)
}

/// A response whose magnitude may grow at once but shrink by at most `max_fall` per call (a
/// deactivation limit). Passing through zero to the other sign is a fall first.
pub(crate) fn limit_fall(current: Watts, target: Watts, max_fall: Watts) -> Watts {
    let c = current.get();
    let t = target.get();
    let step = magnitude(max_fall.get());
    let next = if c > 0.0 {
        if t >= c {
            t
        } else {
            t.max(c - step)
        }
    } else if c < 0.0 {
        if t <= c {
            t
        } else {
            t.min(c + step)
        }
    } else {
        t
    };
    Watts::saturating(next)
}

/// Move `current` toward zero by at most `max_fall` (a deactivation at a bounded rate).
pub(crate) fn fall_to_zero(current: Watts, max_fall: Watts) -> Watts {
    limit_fall(current, Watts::ZERO, max_fall)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_saturate_and_refuse_garbage() {
        assert_eq!(millis_from_secs(f32::NAN), Millis::ZERO);
        assert_eq!(millis_from_secs(-1.0), Millis::ZERO);
        assert_eq!(millis_from_secs(1.5), Millis::new(1500));
        assert!(millis_from_secs(f32::MAX).get() >= 999_000_000_000);
        assert_eq!(endurance(WattHours::saturating(1000.0), Watts::ZERO), None);
        assert_eq!(
            endurance(WattHours::saturating(1000.0), Watts::saturating(-1000.0)),
            Some(Millis::from_secs(3600))
        );
        assert_eq!(endurance(WattHours::saturating(-5.0), Watts::saturating(1000.0)), Some(Millis::ZERO));
    }

    #[test]
    fn fall_is_limited_rise_is_not() {
        let w = Watts::saturating;
        assert_eq!(limit_fall(w(100.0), w(300.0), w(10.0)), w(300.0));
        assert_eq!(limit_fall(w(100.0), w(0.0), w(10.0)), w(90.0));
        assert_eq!(limit_fall(w(-100.0), w(0.0), w(10.0)), w(-90.0));
        assert_eq!(limit_fall(w(5.0), w(-100.0), w(10.0)), w(-5.0));
        assert_eq!(limit_fall(w(0.0), w(-100.0), w(10.0)), w(-100.0));
        assert_eq!(fall_to_zero(w(4.0), w(10.0)), w(0.0));
        assert_eq!(fraction_between(49.7, 49.9, 49.5), 0.0);
        assert!((fraction_between(0.2, 0.1, 0.5) - 0.25).abs() < 1e-6);
    }
}
