//! The trend analyzer: least-squares slopes over short windows predict when a signal will
//! reach its trip level.
//!
//! Three channels are watched: highest cell temperature (dT/dt), highest cell voltage (dV/dt,
//! charging) and lowest cell voltage (discharging). Each keeps at most one sample per
//! `sample_interval` in a bounded window with running sums, so a new sample and a new slope
//! cost O(1) (the sums are rebuilt from the ≤ 32 samples once every 32 samples to keep
//! floating-point drift bounded).
//!
//! * If the predicted time to the trip level is below the horizon, the affected direction is
//!   derated proportionally (`rating × time_to_trip / horizon`, [`Constraint::Trend`]) and a
//!   [`EventKind::TrendWarning`] is emitted once on entering that condition.
//! * A temperature rising faster than `runaway_rise_per_minute` over a (¾-)full window, every
//!   step rising, above `runaway_floor`, reports [`TripReason::Runaway`].
//!
//! Stale or invalid samples are skipped; while a signal is unavailable its last prediction and
//! runaway flag are kept (unavailability never clears a warning).

use crate::envelope::Envelope;
use crate::error::ConfigError;
use crate::limits::{raw_of, LimitConfig};
use ems_core::event::Constraint;
use ems_core::{Celsius, EventKind, Events, Millis, Quantity, Snapshot, TripReason, Watts};

/// Samples per window.
pub const TREND_CAPACITY: usize = 32;

/// A sample that drops by less than this (in the signal's unit) still counts as "rising" for
/// the runaway check: sensor quantisation noise (0.1 °C typical) must not hide a runaway.
const RISING_TOLERANCE: f32 = 0.15;

/// Trend settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrendConfig {
    /// Temperature window length (default 5 min).
    pub temperature_window: Millis,
    /// At most one temperature sample per this interval (default 10 s).
    pub temperature_sample_interval: Millis,
    /// Temperature prediction horizon (default 10 min).
    pub temperature_horizon: Millis,
    /// Voltage window length (default 60 s).
    pub voltage_window: Millis,
    /// At most one voltage sample per this interval (default 2 s).
    pub voltage_sample_interval: Millis,
    /// Voltage prediction horizon (default 2 min).
    pub voltage_horizon: Millis,
    /// Samples needed before a slope is trusted (default 5, 3..=32).
    pub min_samples: u8,
    /// Temperature rise per minute regarded as runaway-like (default 1 °C/min).
    pub runaway_rise_per_minute: Celsius,
    /// Runaway is only reported above this cell temperature (default 40 °C).
    pub runaway_floor: Celsius,
}

impl Default for TrendConfig {
    fn default() -> Self {
        Self {
            temperature_window: Millis::from_secs(300),
            temperature_sample_interval: Millis::from_secs(10),
            temperature_horizon: Millis::from_secs(600),
            voltage_window: Millis::from_secs(60),
            voltage_sample_interval: Millis::from_secs(2),
            voltage_horizon: Millis::from_secs(120),
            min_samples: 5,
            runaway_rise_per_minute: ems_core::celsius!(1.0),
            runaway_floor: ems_core::celsius!(40.0),
        }
    }
}

impl TrendConfig {
    /// Intervals and horizons > 0, windows at most `(TREND_CAPACITY − 1) × interval`,
    /// `min_samples` in 3..=32, runaway rate > 0.
    ///
    /// # Errors
    /// [`ConfigError::OutOfRange`] naming the first field outside these bounds.
    pub fn validate(&self) -> Result<(), ConfigError> {
        #[allow(clippy::cast_precision_loss)] // reporting only
        let ms = |m: Millis| m.get() as f32;
        for (v, field) in [
            (self.temperature_sample_interval, "trend.temperature_sample_interval"),
            (self.voltage_sample_interval, "trend.voltage_sample_interval"),
            (self.temperature_horizon, "trend.temperature_horizon"),
            (self.voltage_horizon, "trend.voltage_horizon"),
        ] {
            if v == Millis::ZERO {
                return Err(ConfigError::OutOfRange { field, value: 0.0, expected: "> 0 ms" });
            }
        }
        let cap = u64::try_from(TREND_CAPACITY.saturating_sub(1)).unwrap_or(u64::MAX);
        if self.temperature_window.get() > self.temperature_sample_interval.get().saturating_mul(cap) {
            return Err(ConfigError::OutOfRange {
                field: "trend.temperature_window",
                value: ms(self.temperature_window),
                expected: "≤ 31 × temperature_sample_interval",
            });
        }
        if self.voltage_window.get() > self.voltage_sample_interval.get().saturating_mul(cap) {
            return Err(ConfigError::OutOfRange {
                field: "trend.voltage_window",
                value: ms(self.voltage_window),
                expected: "≤ 31 × voltage_sample_interval",
            });
        }
        if !(3..=32).contains(&self.min_samples) {
            return Err(ConfigError::OutOfRange {
                field: "trend.min_samples",
                value: f32::from(self.min_samples),
                expected: "3..=32",
            });
        }
        if self.runaway_rise_per_minute.get() <= 0.0 {
            return Err(ConfigError::OutOfRange {
                field: "trend.runaway_rise_per_minute",
                value: self.runaway_rise_per_minute.get(),
                expected: "> 0 °C/min",
            });
        }
        Ok(())
    }
}

/// A bounded sample window with running least-squares sums.
#[derive(Debug, Clone)]
struct Window {
    buf: heapless::Deque<(Millis, f32), TREND_CAPACITY>,
    window: Millis,
    interval: Millis,
    origin: Millis,
    n: f64,
    st: f64,
    sv: f64,
    stt: f64,
    stv: f64,
    since_rebase: usize,
    rising_run: usize,
}

impl Window {
    fn new(window: Millis, interval: Millis) -> Self {
        Self {
            buf: heapless::Deque::new(),
            window,
            interval,
            origin: Millis::ZERO,
            n: 0.0,
            st: 0.0,
            sv: 0.0,
            stt: 0.0,
            stv: 0.0,
            since_rebase: 0,
            rising_run: 0,
        }
    }

    fn rel(&self, t: Millis) -> f64 {
        #[allow(clippy::cast_precision_loss)] // t − origin spans at most a few windows
        let ms = t.since(self.origin).get() as f64;
        ms / 1000.0
    }

    fn add(&mut self, t: Millis, v: f32, sign: f64) {
        let x = self.rel(t);
        let y = f64::from(v);
        self.n += sign;
        self.st += sign * x;
        self.sv += sign * y;
        self.stt += sign * x * x;
        self.stv += sign * x * y;
    }

    fn clear(&mut self) {
        self.buf.clear();
        self.n = 0.0;
        self.st = 0.0;
        self.sv = 0.0;
        self.stt = 0.0;
        self.stv = 0.0;
        self.since_rebase = 0;
        self.rising_run = 0;
    }

    fn rebase(&mut self) {
        self.origin = self.buf.front().map_or(self.origin, |s| s.0);
        self.n = 0.0;
        self.st = 0.0;
        self.sv = 0.0;
        self.stt = 0.0;
        self.stv = 0.0;
        // Copy out first: `add` borrows self mutably. ≤ 32 samples, once per 32 pushes.
        let samples = self.buf.clone();
        for (t, v) in &samples {
            self.add(*t, *v, 1.0);
        }
        self.since_rebase = 0;
    }

    /// Offer a sample; returns whether it was taken.
    fn push(&mut self, t: Millis, v: f32) -> bool {
        if let Some(&(last_t, last_v)) = self.buf.back() {
            if t < last_t {
                // A clock that went back: the old slope means nothing.
                self.clear();
            } else if t.since(last_t) < self.interval {
                return false;
            } else if v >= last_v - RISING_TOLERANCE {
                self.rising_run = self.rising_run.saturating_add(1);
            } else {
                self.rising_run = 0;
            }
        }
        if self.buf.is_empty() {
            self.origin = t;
        }
        while let Some(&(ft, fv)) = self.buf.front() {
            if t.since(ft) > self.window || self.buf.is_full() {
                self.add(ft, fv, -1.0);
                let _ = self.buf.pop_front();
            } else {
                break;
            }
        }
        if self.buf.push_back((t, v)).is_err() {
            return false;
        }
        self.add(t, v, 1.0);
        self.since_rebase = self.since_rebase.saturating_add(1);
        if self.since_rebase >= TREND_CAPACITY {
            self.rebase();
        }
        true
    }

    fn len(&self) -> usize {
        self.buf.len()
    }

    /// Least-squares slope per second.
    fn slope(&self, min_samples: usize) -> Option<f64> {
        if self.len() < min_samples {
            return None;
        }
        let denom = self.n * self.stt - self.st * self.st;
        if denom <= 1e-9 {
            return None;
        }
        let s = (self.n * self.stv - self.st * self.sv) / denom;
        s.is_finite().then_some(s)
    }

    fn span(&self) -> Millis {
        match (self.buf.front(), self.buf.back()) {
            (Some(f), Some(b)) => b.0.since(f.0),
            _ => Millis::ZERO,
        }
    }

    fn latest(&self) -> Option<f32> {
        self.buf.back().map(|s| s.1)
    }

    fn oldest(&self) -> Option<f32> {
        self.buf.front().map(|s| s.1)
    }
}

/// One watched channel.
#[derive(Debug, Clone)]
struct Channel {
    quantity: Quantity,
    rising: bool,
    trip: Option<f32>,
    horizon: Millis,
    window: Window,
    time_to_trip: Option<Millis>,
    warned: bool,
}

impl Channel {
    fn new(quantity: Quantity, rising: bool, limits: &LimitConfig, window: Window, horizon: Millis) -> Self {
        Self {
            quantity,
            rising,
            trip: limits.trip_or_alarm(quantity).map(raw_of),
            horizon,
            window,
            time_to_trip: None,
            warned: false,
        }
    }

    /// Sample (if `v` is available) and update the prediction.
    /// Returns whether a sample was taken.
    fn update(
        &mut self,
        sample: Option<(Millis, f32)>,
        min_samples: usize,
        now: Millis,
        events: &mut Events,
    ) -> bool {
        let Some((t, v)) = sample else { return false };
        if !self.window.push(t, v) {
            return false;
        }
        self.time_to_trip = self.predict(min_samples);
        let inside = self.time_to_trip.is_some_and(|ttt| ttt < self.horizon);
        if inside && !self.warned {
            if let Some(ttt) = self.time_to_trip {
                events.push(now, EventKind::TrendWarning { quantity: self.quantity, time_to_trip: ttt });
            }
        }
        self.warned = inside;
        true
    }

    fn predict(&self, min_samples: usize) -> Option<Millis> {
        let trip = f64::from(self.trip?);
        let slope = self.window.slope(min_samples)?;
        let latest = f64::from(self.window.latest()?);
        // Distance still to go and the speed towards the trip level, both ≥ 0 when moving
        // towards it.
        let (distance, speed) = if self.rising { (trip - latest, slope) } else { (latest - trip, -slope) };
        if distance <= 0.0 {
            return Some(Millis::ZERO);
        }
        // A slope fitted over a short span is dominated by steps (a cell voltage jumps by the
        // I·R drop when charging starts) and would predict a trip that is not coming; predict
        // only once the samples cover three quarters of the window.
        if self.window.span().get() < self.window.window.get().saturating_mul(3) / 4 {
            return None;
        }
        if speed <= 0.0 {
            return None;
        }
        let secs = distance / speed;
        // Anything beyond a day is "never" for a horizon of minutes.
        if !secs.is_finite() || secs > 86_400.0 {
            return None;
        }
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // 0 ≤ secs ≤ 86 400
        let ms = (secs * 1000.0) as u64;
        Some(Millis::new(ms))
    }

    /// The fraction of the rating still allowed (1.0 if no prediction inside the horizon).
    fn fraction(&self) -> f32 {
        match self.time_to_trip {
            Some(ttt) if ttt < self.horizon => {
                #[allow(clippy::cast_precision_loss)] // millisecond counts of minutes
                let f = ttt.get() as f32 / self.horizon.get() as f32;
                f.clamp(0.0, 1.0)
            }
            Some(_) | None => 1.0,
        }
    }
}

/// The trend analyzer.
#[derive(Debug, Clone)]
pub struct TrendAnalyzer {
    temp: Channel,
    v_max: Channel,
    v_min: Channel,
    min_samples: usize,
    runaway_rate_per_s: f64,
    runaway_floor: f32,
    runaway_span: Millis,
    runaway: bool,
}

impl TrendAnalyzer {
    /// An analyzer with empty windows; trip levels come from `limits`.
    #[must_use]
    pub fn new(config: &TrendConfig, limits: &LimitConfig) -> Self {
        let tw = Window::new(config.temperature_window, config.temperature_sample_interval);
        let vw = Window::new(config.voltage_window, config.voltage_sample_interval);
        Self {
            temp: Channel::new(Quantity::CellTempHigh, true, limits, tw, config.temperature_horizon),
            v_max: Channel::new(Quantity::CellVoltageHigh, true, limits, vw.clone(), config.voltage_horizon),
            v_min: Channel::new(Quantity::CellVoltageLow, false, limits, vw, config.voltage_horizon),
            min_samples: usize::from(config.min_samples),
            runaway_rate_per_s: f64::from(config.runaway_rise_per_minute.get()) / 60.0,
            runaway_floor: config.runaway_floor.get(),
            // "Sustained over the window": at least three quarters of it covered.
            runaway_span: Millis::new((config.temperature_window.get() / 4).saturating_mul(3)),
            runaway: false,
        }
    }

    /// Sample this cycle's good values and update predictions; emits
    /// [`EventKind::TrendWarning`] on entering a prediction inside the horizon.
    pub fn update(&mut self, s: &Snapshot, now: Millis, events: &mut Events) {
        let b = &s.battery;
        let ms = self.min_samples;
        let t = b.cell_temp_max.value_at(now).map(|v| (b.cell_temp_max.taken_at().min(now), v.get()));
        if self.temp.update(t, ms, now, events) {
            self.runaway = self.runaway_now();
        }
        let v = b.cell_voltage_max.value_at(now).map(|v| (b.cell_voltage_max.taken_at().min(now), v.get()));
        self.v_max.update(v, ms, now, events);
        let v = b.cell_voltage_min.value_at(now).map(|v| (b.cell_voltage_min.taken_at().min(now), v.get()));
        self.v_min.update(v, ms, now, events);
    }

    fn runaway_now(&self) -> bool {
        let w = &self.temp.window;
        let (Some(latest), Some(oldest), Some(slope)) = (w.latest(), w.oldest(), w.slope(self.min_samples))
        else {
            return false;
        };
        let span = w.span();
        let steadily_rising = w.rising_run.saturating_add(1) >= w.len();
        let net = f64::from(latest - oldest);
        let needed = self.runaway_rate_per_s * f64::from(span.as_secs_f32()) * 0.75;
        span >= self.runaway_span
            && steadily_rising
            && slope >= self.runaway_rate_per_s
            && net >= needed
            && latest >= self.runaway_floor
    }

    /// Narrow `envelope` by the predictions and report a runaway.
    pub fn apply(&self, rating: Watts, envelope: &mut Envelope) {
        let f = self.temp.fraction();
        if f < 1.0 {
            envelope.limit_both(rating.scale(f), Constraint::Trend(Quantity::CellTempHigh));
        }
        let f = self.v_max.fraction();
        if f < 1.0 {
            envelope.limit_charge(rating.scale(f), Constraint::Trend(Quantity::CellVoltageHigh));
        }
        let f = self.v_min.fraction();
        if f < 1.0 {
            envelope.limit_discharge(rating.scale(f), Constraint::Trend(Quantity::CellVoltageLow));
        }
        if self.runaway {
            envelope.limit_both(Watts::ZERO, Constraint::Trend(Quantity::CellTempHigh));
            envelope.forbid_contactor_close(Constraint::Trend(Quantity::CellTempHigh));
            envelope.add_trip(TripReason::Runaway(Quantity::CellTempHigh));
        }
    }

    /// Predicted time until `q` reaches its trip level (watched: `CellTempHigh`,
    /// `CellVoltageHigh`, `CellVoltageLow`; `None` for others or without a prediction).
    #[must_use]
    pub fn time_to_trip(&self, q: Quantity) -> Option<Millis> {
        match q {
            Quantity::CellTempHigh => self.temp.time_to_trip,
            Quantity::CellVoltageHigh => self.v_max.time_to_trip,
            Quantity::CellVoltageLow => self.v_min.time_to_trip,
            Quantity::CellTempLow
            | Quantity::ChargeCurrent
            | Quantity::DischargeCurrent
            | Quantity::SocHigh
            | Quantity::SocLow
            | Quantity::InverterTemp
            | Quantity::GridImport
            | Quantity::GridExport => None,
        }
    }

    /// Highest-cell temperature slope in °C per minute (for diagnostics; may be negative,
    /// clamped to the [`Celsius`] range).
    #[must_use]
    pub fn temperature_rate_per_minute(&self) -> Option<Celsius> {
        #[allow(clippy::cast_possible_truncation)] // displayed rate, clamped by Celsius::new
        self.temp.window.slope(self.min_samples).map(|s| Celsius::saturating((s * 60.0) as f32))
    }

    /// Whether a runaway-like temperature rise is present.
    #[must_use]
    pub const fn runaway(&self) -> bool {
        self.runaway
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::healthy_snapshot;
    use ems_core::{Measurement, Volts};

    fn analyzer() -> TrendAnalyzer {
        TrendAnalyzer::new(&TrendConfig::default(), &LimitConfig::default())
    }

    fn with_temp(now: Millis, c: f32) -> Snapshot {
        let mut s = healthy_snapshot(now);
        s.battery.cell_temp_max = Measurement::good(Celsius::saturating(c), now, Millis::from_secs(5));
        s
    }

    #[test]
    fn linear_temperature_rise_predicts_time_to_trip() {
        let mut a = analyzer();
        let mut ev = Events::new();
        // 0.1 °C/min from 40 °C: 55 °C trip is 150 min away at t=0 — outside the horizon.
        for k in 0..=30u16 {
            let now = Millis::from_secs(u64::from(k) * 10);
            a.update(&with_temp(now, 40.0 + 0.1 * (f32::from(k) * 10.0 / 60.0)), now, &mut ev);
        }
        let ttt = a.time_to_trip(Quantity::CellTempHigh).unwrap().as_secs_f32();
        // latest = 40.5 °C, 14.5 °C to go at 0.1 °C/min = 145 min.
        assert!((ttt - 145.0 * 60.0).abs() < 30.0, "{ttt}");
        assert!(ev.is_empty());
        let mut env = Envelope::new(ems_core::watts!(5000.0));
        a.apply(ems_core::watts!(5000.0), &mut env);
        assert_eq!(env.max_charge(), ems_core::watts!(5000.0));
    }

    #[test]
    fn voltage_step_when_charging_starts_predicts_nothing() {
        let mut a = analyzer();
        let mut ev = Events::new();
        // Idle at 3.290 V, then charging starts and the I·R drop lifts the cell to 3.323 V and
        // it stays there: a step, not a trend toward the 3.65 V trip.
        for k in 0..=40u16 {
            let now = Millis::from_secs(u64::from(k) * 2);
            let v = if k < 3 { 3.290 } else { 3.323 };
            let mut s = healthy_snapshot(now);
            s.battery.cell_voltage_max = Measurement::good(Volts::saturating(v), now, Millis::from_secs(5));
            a.update(&s, now, &mut ev);
            let ttt = a.time_to_trip(Quantity::CellVoltageHigh);
            assert!(ttt.is_none_or(|t| t > Millis::from_secs(120)), "k={k}: {ttt:?}");
        }
        assert!(ev.is_empty(), "{ev:?}");
    }

    #[test]
    fn prediction_inside_horizon_derates_and_warns_once() {
        let mut a = analyzer();
        let mut ev = Events::new();
        // 0.5 °C/min from 45 °C, below the runaway rate.
        for k in 0..=30u16 {
            let now = Millis::from_secs(u64::from(k) * 10);
            a.update(&with_temp(now, 45.0 + 0.5 * (f32::from(k) / 6.0)), now, &mut ev);
        }
        // latest 47.5 °C, 7.5 °C at 0.5 °C/min = 15 min > 10 min horizon.
        let ttt = a.time_to_trip(Quantity::CellTempHigh).unwrap().as_secs_f32();
        assert!((ttt - 900.0).abs() < 5.0, "{ttt}");
        assert!(ev.is_empty());
        for k in 31..=60u16 {
            let now = Millis::from_secs(u64::from(k) * 10);
            a.update(&with_temp(now, 45.0 + 0.5 * (f32::from(k) / 6.0)), now, &mut ev);
        }
        // latest 50 °C: 10 min at 0.5 °C/min... now 5 °C → 10 min; continue a bit.
        let ttt = a.time_to_trip(Quantity::CellTempHigh).unwrap();
        assert!((ttt.as_secs_f32() - 600.0).abs() < 5.0, "{ttt}");
        for k in 61..=72u16 {
            let now = Millis::from_secs(u64::from(k) * 10);
            a.update(&with_temp(now, 45.0 + 0.5 * (f32::from(k) / 6.0)), now, &mut ev);
        }
        let ttt = a.time_to_trip(Quantity::CellTempHigh).unwrap();
        assert!((ttt.as_secs_f32() - 480.0).abs() < 5.0, "{ttt}");
        let warnings = ev.iter().filter(|e| matches!(e.kind, EventKind::TrendWarning { .. })).count();
        assert_eq!(warnings, 1, "{ev:?}");
        let mut env = Envelope::new(ems_core::watts!(5000.0));
        a.apply(ems_core::watts!(5000.0), &mut env);
        assert!((env.max_charge().get() - 4000.0).abs() < 40.0, "{}", env.max_charge());
        assert_eq!(env.charge_binding(), Some(Constraint::Trend(Quantity::CellTempHigh)));
        assert!(!a.runaway());
    }

    #[test]
    fn runaway_rise_trips() {
        let mut a = analyzer();
        let mut ev = Events::new();
        for k in 0..=30u16 {
            let now = Millis::from_secs(u64::from(k) * 10);
            // 2 °C/min from 38 °C.
            a.update(&with_temp(now, 38.0 + 2.0 * (f32::from(k) / 6.0)), now, &mut ev);
        }
        assert!(a.runaway());
        let mut env = Envelope::new(ems_core::watts!(5000.0));
        a.apply(ems_core::watts!(5000.0), &mut env);
        assert_eq!(env.trips(), &[TripReason::Runaway(Quantity::CellTempHigh)]);
        assert_eq!(env.max_charge(), Watts::ZERO);
        let rate = a.temperature_rate_per_minute().unwrap().get();
        assert!((rate - 2.0).abs() < 0.01, "{rate}");
    }

    #[test]
    fn fast_rise_below_floor_is_not_runaway() {
        let mut a = analyzer();
        let mut ev = Events::new();
        for k in 0..=30u16 {
            let now = Millis::from_secs(u64::from(k) * 10);
            a.update(&with_temp(now, 10.0 + 2.0 * (f32::from(k) / 6.0)), now, &mut ev);
        }
        assert!(!a.runaway());
    }

    #[test]
    fn stale_samples_are_ignored_and_clear_nothing() {
        let mut a = analyzer();
        let mut ev = Events::new();
        for k in 0..=30u16 {
            let now = Millis::from_secs(u64::from(k) * 10);
            let mut s = with_temp(now, 45.0 + 0.5 * (f32::from(k) / 6.0));
            if k % 3 == 0 && k > 0 {
                // A stale reading carrying a wild value: must not be sampled.
                s.battery.cell_temp_max =
                    Measurement::good(ems_core::celsius!(0.0), Millis::ZERO, Millis::from_secs(5));
            }
            a.update(&s, now, &mut ev);
        }
        let ttt = a.time_to_trip(Quantity::CellTempHigh).unwrap().as_secs_f32();
        assert!((ttt - 900.0).abs() < 30.0, "{ttt}");
        // Signal lost: the prediction stays.
        for k in 31..40u16 {
            let now = Millis::from_secs(u64::from(k) * 10);
            let mut s = healthy_snapshot(now);
            s.battery.cell_temp_max.invalidate();
            a.update(&s, now, &mut ev);
        }
        assert!(a.time_to_trip(Quantity::CellTempHigh).is_some());
    }

    #[test]
    fn falling_min_cell_voltage_derates_discharge() {
        let mut a = analyzer();
        let mut ev = Events::new();
        for k in 0..=30u16 {
            let now = Millis::from_secs(u64::from(k) * 2);
            let mut s = healthy_snapshot(now);
            // −5 mV/s from 2.95 V towards the 2.50 V trip.
            s.battery.cell_voltage_min = Measurement::good(
                Volts::saturating(2.95 - 0.005 * (f32::from(k) * 2.0)),
                now,
                Millis::from_secs(2),
            );
            a.update(&s, now, &mut ev);
        }
        // latest 2.65 V, 0.15 V to go at 5 mV/s = 30 s.
        let ttt = a.time_to_trip(Quantity::CellVoltageLow).unwrap().as_secs_f32();
        assert!((ttt - 30.0).abs() < 1.0, "{ttt}");
        let mut env = Envelope::new(ems_core::watts!(5000.0));
        a.apply(ems_core::watts!(5000.0), &mut env);
        assert!((env.max_discharge().get() - 1250.0).abs() < 50.0);
        assert_eq!(env.max_charge(), ems_core::watts!(5000.0));
    }

    #[test]
    fn long_runs_stay_accurate() {
        // A million seconds of slow drift: the rebased sums must not drift.
        let mut w = Window::new(Millis::from_secs(300), Millis::from_secs(10));
        for k in 0..100_000u32 {
            let t = Millis::from_secs(u64::from(k) * 10);
            w.push(t, 25.0 + 0.001 * f32::from(u16::try_from(k % 1000).unwrap()));
        }
        let s = w.slope(5).unwrap();
        assert!((s - 0.0001).abs() < 1e-6, "{s}");
    }

    #[test]
    fn config_validation_names_the_field() {
        assert!(TrendConfig::default().validate().is_ok());
        let c = TrendConfig { temperature_window: Millis::from_secs(3600), ..TrendConfig::default() };
        assert!(matches!(
            c.validate(),
            Err(ConfigError::OutOfRange { field: "trend.temperature_window", .. })
        ));
    }
}
