//! Measurement-based island detection on the grid side of the breaker: voltage and frequency
//! stages with trip times, a 10-min mean over-voltage stage, RoCoF over a window, and the
//! enter-service monitor that says when the grid has been healthy long enough to reconnect.
//!
//! Every stage trips when its condition has held **continuously** for its delay (a strict
//! comparison: a value exactly at the level does not trip). A missing or non-good sample
//! restarts every timer, so a lost measurement never trips and never counts as healthy — the
//! certified relay keeps protecting, and the sequence never closes on a grid it cannot see.
//!
//! Allocation-free: fixed fields and a `heapless::Deque` of frequency samples.

use super::settings::{EnterService, FrequencyStage, ProtectionSettings, VoltageStage};
use core::fmt;
use ems_core::{Hertz, Millis, Volts};
use heapless::Deque;

/// Which stage tripped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TripCause {
    /// U< (slow under-voltage).
    UnderVoltage,
    /// U<< (fast under-voltage; a grid that is gone).
    UnderVoltageFast,
    /// U>> (fast over-voltage).
    OverVoltageFast,
    /// U> (10-min mean over-voltage).
    OverVoltageMean,
    /// f<.
    UnderFrequency,
    /// f>.
    OverFrequency,
    /// |df/dt| above the RoCoF limit.
    Rocof,
}

impl fmt::Display for TripCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::UnderVoltage => "U< under-voltage",
            Self::UnderVoltageFast => "U<< under-voltage (grid lost)",
            Self::OverVoltageFast => "U>> over-voltage",
            Self::OverVoltageMean => "U> 10-min mean over-voltage",
            Self::UnderFrequency => "f< under-frequency",
            Self::OverFrequency => "f> over-frequency",
            Self::Rocof => "RoCoF",
        })
    }
}

/// A condition timer: `Some(since)` while the condition holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Timer {
    since: Option<Millis>,
}

impl Timer {
    /// Feed the condition at `now`; true when it has held for `delay`.
    fn update(&mut self, now: Millis, condition: bool, delay: Millis) -> bool {
        if condition {
            let since = *self.since.get_or_insert(now);
            now.since(since) >= delay
        } else {
            self.since = None;
            false
        }
    }

    fn held(&self, now: Millis) -> Millis {
        self.since.map_or(Millis::ZERO, |s| now.since(s))
    }
}

/// Buckets of the moving mean (one per minute of a 10-min window).
const MEAN_BUCKETS: usize = 10;
/// [`MEAN_BUCKETS`] as `u64`.
const MEAN_BUCKETS_U64: u64 = 10;
/// Length of one bucket.
const BUCKET_MS: u64 = 60_000;

/// Longest time one sample stands for in the mean (a gap in the samples counts at most this).
const MAX_WEIGHT_MS: u64 = 1_000;

/// A 10-min moving mean of the voltage in ten one-minute buckets, **time-weighted**: each sample
/// counts for the time since the previous one (at least 1 ms, at most [`MAX_WEIGHT_MS`]), so a
/// burst of fast samples does not outweigh minutes of slow ones.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct MovingMean {
    sum: [f64; MEAN_BUCKETS],
    weight: [u64; MEAN_BUCKETS],
    minute: [u64; MEAN_BUCKETS],
    last: Option<Millis>,
}

impl MovingMean {
    fn push(&mut self, now: Millis, v: Volts) {
        let w = self.last.map_or(1, |t| now.since(t).get().clamp(1, MAX_WEIGHT_MS));
        self.last = Some(now);
        let minute = now.get() / BUCKET_MS;
        // The remainder is < MEAN_BUCKETS (10), so it fits a usize.
        #[allow(clippy::cast_possible_truncation)]
        let i = minute.checked_rem(MEAN_BUCKETS_U64).unwrap_or(0) as usize;
        if let (Some(m), Some(s), Some(c)) =
            (self.minute.get_mut(i), self.sum.get_mut(i), self.weight.get_mut(i))
        {
            if *m != minute || *c == 0 {
                *m = minute;
                *s = 0.0;
                *c = 0;
            }
            // A weight of at most 1 000 ms is exact in f64.
            #[allow(clippy::cast_precision_loss)]
            let wf = w as f64;
            *s += f64::from(v.get()) * wf;
            *c = c.saturating_add(w);
        }
    }

    /// The mean over the buckets of the last ten minutes, if any sample.
    fn mean(&self, now: Millis) -> Option<Volts> {
        let minute = now.get() / BUCKET_MS;
        let oldest = minute.saturating_sub(MEAN_BUCKETS_U64.saturating_sub(1));
        let (mut sum, mut weight) = (0.0_f64, 0_u64);
        for ((m, s), c) in self.minute.iter().zip(self.sum.iter()).zip(self.weight.iter()) {
            if *c > 0 && *m >= oldest && *m <= minute {
                sum += *s;
                weight = weight.saturating_add(*c);
            }
        }
        // At most ten minutes of milliseconds: exact in f64.
        #[allow(clippy::cast_precision_loss)]
        let n = weight as f64;
        // A mean of valid voltages is a valid voltage; narrowing to f32 keeps 7 digits.
        #[allow(clippy::cast_possible_truncation)]
        let mean = (sum / n) as f32;
        (weight > 0).then(|| Volts::saturating(mean))
    }
}

/// Frequency samples kept for the RoCoF window (two windows at the decimated rate).
pub const ROCOF_SAMPLES: usize = 32;

/// RoCoF over a window: `(f(now) − f(now − window)) / Δt` from decimated samples.
#[derive(Debug, Clone, Default)]
struct Rocof {
    samples: Deque<(Millis, Hertz), ROCOF_SAMPLES>,
}

impl Rocof {
    fn push(&mut self, now: Millis, f: Hertz, window: Millis) {
        // Decimate to window/16 so the deque always spans at least one window.
        let spacing = Millis::new(window.get() / 16);
        if let Some((t, _)) = self.samples.back() {
            if now.since(*t) < spacing {
                return;
            }
        }
        if self.samples.is_full() {
            self.samples.pop_front();
        }
        // Cannot fail: a slot was freed above.
        let _ = self.samples.push_back((now, f));
        // Drop what is older than needed: keep the newest sample at or before now − window.
        let cutoff = Millis::new(now.get().saturating_sub(window.get()));
        while self.samples.iter().nth(1).is_some_and(|(t, _)| *t <= cutoff) {
            self.samples.pop_front();
        }
    }

    fn clear(&mut self) {
        self.samples.clear();
    }

    /// df/dt in Hz/s, when the samples span at least `window`.
    fn value(&self, window: Millis) -> Option<f32> {
        let (t0, f0) = self.samples.front()?;
        let (t1, f1) = self.samples.back()?;
        let dt = t1.since(*t0);
        if dt < window || dt == Millis::ZERO {
            return None;
        }
        Some((f1.get() - f0.get()) / dt.as_secs_f32())
    }
}

/// What the detector concluded from one sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// The first stage (in the order of [`TripCause`]) whose condition held for its delay.
    pub trip: Option<TripCause>,
    /// Both voltage and frequency were good in this sample.
    pub measured: bool,
    /// The last RoCoF value (Hz/s), when the window was filled.
    pub rocof: Option<f32>,
    /// The 10-min mean voltage.
    pub mean_voltage: Option<Volts>,
}

/// Island (loss-of-mains) detection: the interface-protection stages of [`ProtectionSettings`]
/// on the grid-side voltage and frequency. Feed every sample with [`Self::update`].
#[derive(Debug, Clone)]
pub struct IslandDetector {
    settings: ProtectionSettings,
    uv: Timer,
    uv_fast: Timer,
    ov_fast: Timer,
    uf: Timer,
    of: Timer,
    mean: MovingMean,
    rocof: Rocof,
}

fn below_v(v: Option<Volts>, stage: &VoltageStage) -> bool {
    v.is_some_and(|v| v < stage.level)
}

fn above_v(v: Option<Volts>, stage: &VoltageStage) -> bool {
    v.is_some_and(|v| v > stage.level)
}

fn below_f(f: Option<Hertz>, stage: &FrequencyStage) -> bool {
    f.is_some_and(|f| f < stage.level)
}

fn above_f(f: Option<Hertz>, stage: &FrequencyStage) -> bool {
    f.is_some_and(|f| f > stage.level)
}

impl IslandDetector {
    /// A detector with `settings` (validate them with
    /// [`super::settings::IslandSettings::validate`]).
    #[must_use]
    pub fn new(settings: ProtectionSettings) -> Self {
        Self {
            settings,
            uv: Timer::default(),
            uv_fast: Timer::default(),
            ov_fast: Timer::default(),
            uf: Timer::default(),
            of: Timer::default(),
            mean: MovingMean::default(),
            rocof: Rocof::default(),
        }
    }

    /// The settings.
    #[must_use]
    pub fn settings(&self) -> &ProtectionSettings {
        &self.settings
    }

    /// One sample of the grid-side voltage and frequency (`None`: not good at `now`). A voltage
    /// below U<< with no frequency (a dead grid has none to measure) counts as measured: the
    /// U<< stage still runs on it.
    pub fn update(&mut self, now: Millis, voltage: Option<Volts>, frequency: Option<Hertz>) -> Detection {
        let s = self.settings;
        let uv_fast =
            self.uv_fast.update(now, below_v(voltage, &s.under_voltage_fast), s.under_voltage_fast.delay);
        let uv = self.uv.update(now, below_v(voltage, &s.under_voltage), s.under_voltage.delay);
        let ov_fast =
            self.ov_fast.update(now, above_v(voltage, &s.over_voltage_fast), s.over_voltage_fast.delay);
        if let Some(v) = voltage {
            self.mean.push(now, v);
        }
        let mean = self.mean.mean(now);
        let ov_mean = mean.is_some_and(|m| m > s.over_voltage_mean.level);
        let uf = self.uf.update(now, below_f(frequency, &s.under_frequency), s.under_frequency.delay);
        let of = self.of.update(now, above_f(frequency, &s.over_frequency), s.over_frequency.delay);
        match frequency {
            Some(f) => self.rocof.push(now, f, s.rocof.window),
            None => self.rocof.clear(),
        }
        let rocof = self.rocof.value(s.rocof.window);
        let rocof_trip = rocof.is_some_and(|r| r > s.rocof.limit.get() || r < -s.rocof.limit.get());
        let trip = [
            (uv, TripCause::UnderVoltage),
            (uv_fast, TripCause::UnderVoltageFast),
            (ov_fast, TripCause::OverVoltageFast),
            (ov_mean, TripCause::OverVoltageMean),
            (uf, TripCause::UnderFrequency),
            (of, TripCause::OverFrequency),
            (rocof_trip, TripCause::Rocof),
        ]
        .into_iter()
        .find_map(|(t, c)| t.then_some(c));
        Detection { trip, measured: voltage.is_some() && frequency.is_some(), rocof, mean_voltage: mean }
    }
}

/// Whether the grid has held the enter-service window (EN 50549-1:2019 §4.10) continuously.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EnterServiceMonitor {
    window: EnterService,
    timer: Timer,
}

impl EnterServiceMonitor {
    /// A monitor of `window`.
    #[must_use]
    pub fn new(window: EnterService) -> Self {
        Self { window, timer: Timer::default() }
    }

    /// Whether one sample lies inside the window (both values good and inside, bounds
    /// included).
    #[must_use]
    pub fn inside(&self, voltage: Option<Volts>, frequency: Option<Hertz>) -> bool {
        let w = &self.window;
        matches!((voltage, frequency), (Some(v), Some(f))
            if v >= w.u_min && v <= w.u_max && f >= w.f_min && f <= w.f_max)
    }

    /// Feed one sample; true once the grid has been inside the window for the whole delay.
    pub fn update(&mut self, now: Millis, voltage: Option<Volts>, frequency: Option<Hertz>) -> bool {
        let inside = self.inside(voltage, frequency);
        self.timer.update(now, inside, self.window.delay)
    }

    /// How long the grid has been inside the window.
    #[must_use]
    pub fn held(&self, now: Millis) -> Millis {
        self.timer.held(now)
    }

    /// Start counting again (after a failed synchronisation).
    pub fn restart(&mut self) {
        self.timer.since = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::island::settings::IslandSettings;

    #[test]
    fn moving_mean_forgets_after_ten_minutes() {
        let mut m = MovingMean::default();
        m.push(Millis::ZERO, ems_core::volts!(260.0));
        assert_eq!(m.mean(Millis::ZERO), Some(ems_core::volts!(260.0)));
        m.push(Millis::new(11 * BUCKET_MS), ems_core::volts!(230.0));
        assert_eq!(m.mean(Millis::new(11 * BUCKET_MS)), Some(ems_core::volts!(230.0)));
    }

    #[test]
    fn rocof_needs_a_full_window() {
        let s = IslandSettings::en50549_vde4105(ems_core::volts!(230.0)).protection;
        let mut r = Rocof::default();
        r.push(Millis::ZERO, ems_core::hertz!(50.0), s.rocof.window);
        r.push(Millis::new(400), ems_core::hertz!(49.0), s.rocof.window);
        assert_eq!(r.value(s.rocof.window), None);
        r.push(Millis::new(500), ems_core::hertz!(48.75), s.rocof.window);
        assert!((r.value(s.rocof.window).unwrap() + 2.5).abs() < 1e-3);
    }
}
