//! PV forecast: clear-sky power of the array, corrected by recent measurements, or power from an
//! irradiance forecast.

use super::solar::{plane_of_array, solar_position, Irradiance};
use super::ForecastError;
use crate::units::{Factor, Ratio};
use ems_core::Watts;
use jiff::{SignedDuration, Timestamp};
use std::collections::VecDeque;

/// Sub-sample spacing for interval means: 5 minutes.
const SUBSAMPLE_S: i64 = 300;

/// A PV array: where it is, how it is mounted, how big it is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PvSystem {
    latitude_deg: f64,
    longitude_deg: f64,
    tilt_deg: f64,
    azimuth_deg: f64,
    capacity: Watts,
    losses: f64,
    albedo: f64,
}

impl PvSystem {
    /// An array at `latitude_deg` (north +), `longitude_deg` (east +), tilted `tilt_deg` from
    /// horizontal, facing `azimuth_deg` clockwise from north (180 = south), of DC peak power
    /// `capacity` (kWp × 1000 W). System losses default to 14 % and ground albedo to 0.2.
    ///
    /// # Errors
    /// [`ForecastError::OutOfRange`] naming the first coordinate, angle or capacity out of range.
    pub fn new(
        latitude_deg: f64,
        longitude_deg: f64,
        tilt_deg: f64,
        azimuth_deg: f64,
        capacity: Watts,
    ) -> Result<Self, ForecastError> {
        let check = |field: &'static str, v: f64, lo: f64, hi: f64| {
            if v.is_finite() && (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(ForecastError::OutOfRange { field, value: v, min: lo, max: hi })
            }
        };
        check("latitude_deg", latitude_deg, -90.0, 90.0)?;
        check("longitude_deg", longitude_deg, -180.0, 180.0)?;
        check("tilt_deg", tilt_deg, 0.0, 90.0)?;
        check("azimuth_deg", azimuth_deg, 0.0, 360.0)?;
        check("capacity", f64::from(capacity.get()), 0.0, 1.0e8)?;
        Ok(Self { latitude_deg, longitude_deg, tilt_deg, azimuth_deg, capacity, losses: 0.14, albedo: 0.2 })
    }

    /// Set the lumped system losses (temperature, inverter, wiring, soiling, mismatch) as a
    /// fraction 0..1.
    ///
    /// # Errors
    /// [`ForecastError::OutOfRange`] when `losses` is not in `0..1`.
    pub fn with_losses(mut self, losses: f64) -> Result<Self, ForecastError> {
        if !(losses.is_finite() && (0.0..1.0).contains(&losses)) {
            return Err(ForecastError::OutOfRange { field: "losses", value: losses, min: 0.0, max: 1.0 });
        }
        self.losses = losses;
        Ok(self)
    }

    /// Set the ground albedo (0..=1).
    ///
    /// # Errors
    /// [`ForecastError::OutOfRange`] when `albedo` is not in `0..=1`.
    pub fn with_albedo(mut self, albedo: f64) -> Result<Self, ForecastError> {
        if !(albedo.is_finite() && (0.0..=1.0).contains(&albedo)) {
            return Err(ForecastError::OutOfRange { field: "albedo", value: albedo, min: 0.0, max: 1.0 });
        }
        self.albedo = albedo;
        Ok(self)
    }

    /// DC peak power.
    #[must_use]
    pub fn capacity(&self) -> Watts {
        self.capacity
    }

    /// Latitude in degrees.
    #[must_use]
    pub fn latitude_deg(&self) -> f64 {
        self.latitude_deg
    }

    /// Longitude in degrees.
    #[must_use]
    pub fn longitude_deg(&self) -> f64 {
        self.longitude_deg
    }

    /// Plane-of-array irradiance (W/m²) for `irr` at `at`.
    #[must_use]
    pub fn plane_of_array(&self, at: Timestamp, irr: Irradiance) -> f64 {
        let sun = solar_position(at, self.latitude_deg, self.longitude_deg);
        plane_of_array(irr, sun, self.tilt_deg, self.azimuth_deg, self.albedo)
    }

    /// AC power for irradiance `irr` at `at`: `capacity × POA / 1000 W/m² × (1 − losses)`.
    #[must_use]
    pub fn power(&self, at: Timestamp, irr: Irradiance) -> Watts {
        let poa = self.plane_of_array(at, irr);
        let p = f64::from(self.capacity.get()) * poa / 1000.0 * (1.0 - self.losses);
        // `as f32` is an explicit narrowing: the product of checked finite inputs stays well
        // inside f32 range; Watts::new clamps anyway.
        #[allow(clippy::cast_possible_truncation)]
        Watts::saturating(p as f32)
    }

    /// Power under a clear sky at `at`.
    #[must_use]
    pub fn clear_sky_power(&self, at: Timestamp) -> Watts {
        self.power(at, Irradiance::clear_sky(at, self.latitude_deg, self.longitude_deg))
    }

    /// Mean clear-sky power over `[start, start + step)`, averaged over 5-minute sub-intervals
    /// (midpoint rule), so that sunrise and sunset hours come out right.
    #[must_use]
    pub fn clear_sky_mean(&self, start: Timestamp, step: SignedDuration) -> Watts {
        mean_over(start, step, |t| f64::from(self.clear_sky_power(t).get()))
    }
}

/// Mean of `f` over `[start, start + step)` by the midpoint rule on ≤ 5-minute sub-intervals.
fn mean_over(start: Timestamp, step: SignedDuration, f: impl Fn(Timestamp) -> f64) -> Watts {
    let step_s = step.as_secs().max(1);
    let n = (step_s / SUBSAMPLE_S).max(1);
    let sub = SignedDuration::from_nanos(i64::try_from(step.as_nanos() / i128::from(n)).unwrap_or(i64::MAX));
    let mut sum = 0.0;
    let mut count = 0.0;
    for k in 0..n {
        let offset = sub.checked_mul(i32::try_from(k).unwrap_or(i32::MAX)).unwrap_or(SignedDuration::ZERO);
        let mid = offset.checked_add(sub / 2).unwrap_or(offset);
        if let Ok(t) = start.checked_add(mid) {
            sum += f(t);
            count += 1.0;
        }
    }
    // f64 to f32 has no `From`: a mean of finite PV powers is far inside f32, and `saturating` bounds it.
    #[allow(clippy::cast_possible_truncation)]
    let mean = if count > 0.0 { (sum / count) as f32 } else { 0.0 };
    Watts::saturating(mean)
}

/// Settings of the measurement correction of [`PvForecaster`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PvCorrection {
    /// Daylight time of measurements that forms the recent ratio (default 3 h, 0.25..=48 h).
    pub window: SignedDuration,
    /// e-folding time with which the recent ratio gives way to the long-run ratio as the lead
    /// time grows (default 24 h, 0.01..=1000 h): at lead `L` the weight of the recent ratio is
    /// `exp(−L / τ)`.
    /// Cloudiness persists from one day to the next only in part; on the TMY3 Greensboro year
    /// 12–48 h gave the lowest day-ahead error (6 h: nMAE 0.114, 24 h: 0.103, 48 h: 0.101), and
    /// 24 h is the round value in that range.
    pub decay: SignedDuration,
    /// Smoothing factor of the long-run ratio, updated once per solar day (default 0.1).
    pub daily_alpha: Ratio,
    /// Long-run ratio before any day has been seen (default 0.75, a typical mid-latitude
    /// ratio of actual to clear-sky yield; `min_ratio..=max_ratio`).
    pub initial_ratio: Factor,
    /// Lower bound of any ratio used (default 0.05, at most 1).
    pub min_ratio: Factor,
    /// Upper bound of any ratio used (default 1.2, `min_ratio..=2`; cloud-edge enhancement
    /// rarely lasts hours).
    pub max_ratio: Factor,
    /// Intervals whose clear-sky power is below this fraction of capacity are ignored (default
    /// 0.1): near sunrise and sunset the ratio is dominated by model and timing errors.
    pub min_clear_fraction: Ratio,
}

impl Default for PvCorrection {
    fn default() -> Self {
        Self {
            window: SignedDuration::from_hours(3),
            decay: SignedDuration::from_hours(24),
            daily_alpha: crate::ratio!(0.1),
            initial_ratio: crate::factor!(0.75),
            min_ratio: crate::factor!(0.05),
            max_ratio: crate::factor!(1.2),
            min_clear_fraction: crate::ratio!(0.1),
        }
    }
}

fn in_hours(d: SignedDuration) -> f64 {
    d.as_secs_f64() / 3600.0
}

impl PvCorrection {
    fn validate(&self) -> Result<(), ForecastError> {
        let check = |field: &'static str, v: f64, lo: f64, hi: f64| {
            if v.is_finite() && (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(ForecastError::OutOfRange { field, value: v, min: lo, max: hi })
            }
        };
        check("window_hours", in_hours(self.window), 0.25, 48.0)?;
        check("decay_hours", in_hours(self.decay), 0.01, 1000.0)?;
        let (lo, hi) = (self.min_ratio.get(), self.max_ratio.get());
        check("min_ratio", lo, 0.0, 1.0)?;
        check("max_ratio", hi, lo, 2.0)?;
        check("initial_ratio", self.initial_ratio.get(), lo, hi)?;
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
struct Observation {
    end: Timestamp,
    hours: f64,
    measured_wh: f64,
    clear_wh: f64,
}

/// PV forecaster: clear-sky power of the array × a ratio learned from measurements.
///
/// The ratio for a lead time `L` after the latest observation is
/// `r(L) = long + (recent − long) · exp(−L / decay_hours)`, bounded to
/// `min_ratio..=max_ratio`, where `recent` is Σ measured / Σ clear-sky energy over the last
/// `window_hours` of daylight observations and `long` an exponentially smoothed daily ratio.
/// Without observations `r = initial_ratio`. So the next hours follow the current weather and a
/// day-ahead forecast mostly the site's typical yield.
#[derive(Debug, Clone)]
pub struct PvForecaster {
    system: PvSystem,
    cfg: PvCorrection,
    recent: VecDeque<Observation>,
    long_run: f64,
    /// Solar day (days since the epoch in local solar time) being accumulated, measured and
    /// clear-sky Wh.
    day: Option<(i64, f64, f64)>,
}

impl PvForecaster {
    /// A forecaster for `system`.
    ///
    /// # Errors
    /// [`ForecastError::OutOfRange`] naming the first setting of `cfg` out of its range.
    pub fn new(system: PvSystem, cfg: PvCorrection) -> Result<Self, ForecastError> {
        cfg.validate()?;
        Ok(Self { system, cfg, recent: VecDeque::new(), long_run: cfg.initial_ratio.get(), day: None })
    }

    /// The array.
    #[must_use]
    pub fn system(&self) -> &PvSystem {
        &self.system
    }

    /// Record the measured mean power over `[start, start + step)`. Observations should arrive
    /// in time order; ones with little clear-sky power (night, dawn) only advance the clock.
    pub fn observe(&mut self, start: Timestamp, step: SignedDuration, measured: Watts) {
        let hours = step.as_secs_f64() / 3600.0;
        if hours.is_nan() || hours <= 0.0 {
            return;
        }
        let end = start.checked_add(step).unwrap_or(start);
        let clear_w = f64::from(self.system.clear_sky_mean(start, step).get());
        let measured_w = f64::from(measured.get().max(0.0));
        let solar_day = self.solar_day(start);
        match self.day {
            Some((d, m, c)) if d != solar_day => {
                // The previous solar day is complete: fold its ratio into the long-run ratio.
                if c > 0.0 {
                    let ratio = (m / c).clamp(self.cfg.min_ratio.get(), self.cfg.max_ratio.get());
                    self.long_run += self.cfg.daily_alpha.get() * (ratio - self.long_run);
                }
                self.day = Some((solar_day, 0.0, 0.0));
            }
            None => self.day = Some((solar_day, 0.0, 0.0)),
            Some(_) => {}
        }
        if clear_w < self.cfg.min_clear_fraction.get() * f64::from(self.system.capacity.get()) {
            return;
        }
        if let Some((_, m, c)) = &mut self.day {
            *m += measured_w * hours;
            *c += clear_w * hours;
        }
        self.recent.push_back(Observation {
            end,
            hours,
            measured_wh: measured_w * hours,
            clear_wh: clear_w * hours,
        });
        let mut total: f64 = self.recent.iter().map(|o| o.hours).sum();
        while total > in_hours(self.cfg.window) + 1e-9 {
            match self.recent.pop_front() {
                Some(o) => total -= o.hours,
                None => break,
            }
        }
    }

    /// Days since the epoch in local mean solar time: the night separates solar days.
    fn solar_day(&self, at: Timestamp) -> i64 {
        let shift = (self.system.longitude_deg / 15.0 * 3600.0).round();
        // A longitude within ±180° shifts by at most ±12 h.
        #[allow(clippy::cast_possible_truncation)]
        let shift = shift as i64;
        (at.as_second() + shift).div_euclid(86_400)
    }

    /// Σ measured / Σ clear-sky over the recent window (bounded), if there are observations.
    #[must_use]
    pub fn recent_ratio(&self) -> Option<f64> {
        let (m, c) = self.recent.iter().fold((0.0, 0.0), |(m, c), o| (m + o.measured_wh, c + o.clear_wh));
        (c > 0.0).then(|| (m / c).clamp(self.cfg.min_ratio.get(), self.cfg.max_ratio.get()))
    }

    /// The smoothed daily ratio.
    #[must_use]
    pub fn long_run_ratio(&self) -> f64 {
        self.long_run
    }

    /// The ratio applied at `at`.
    #[must_use]
    pub fn ratio_at(&self, at: Timestamp) -> f64 {
        let r = match (self.recent_ratio(), self.recent.back()) {
            (Some(recent), Some(last)) => {
                let lead_h = (at.duration_since(last.end).as_secs_f64() / 3600.0).max(0.0);
                let w = (-lead_h / in_hours(self.cfg.decay)).exp();
                self.long_run + (recent - self.long_run) * w
            }
            _ => self.long_run,
        };
        r.clamp(self.cfg.min_ratio.get(), self.cfg.max_ratio.get())
    }

    /// Mean power forecast for `n` intervals of `step` from `start`.
    #[must_use]
    pub fn forecast(&self, start: Timestamp, step: SignedDuration, n: usize) -> Vec<Watts> {
        intervals(start, step, n)
            .map(|t| {
                let mid = t.checked_add(step / 2).unwrap_or(t);
                let clear = self.system.clear_sky_mean(t, step);
                // f64 to f32 has no `From`: the correction ratio is bounded to a few units.
                #[allow(clippy::cast_possible_truncation)]
                let ratio = self.ratio_at(mid) as f32;
                clear.scale(ratio)
            })
            .collect()
    }

    /// Mean power for `n` intervals of `step` from `start`, from a forecast of global horizontal
    /// irradiance (W/m², the mean over each interval). Each value is split into beam and diffuse
    /// (Erbs) at the interval's midpoint and transposed to the array; no measurement correction
    /// is applied (the irradiance forecast already carries the weather).
    #[must_use]
    pub fn from_ghi_forecast(&self, start: Timestamp, step: SignedDuration, ghi: &[f64]) -> Vec<Watts> {
        intervals(start, step, ghi.len())
            .zip(ghi)
            .map(|(t, g)| {
                let mid = t.checked_add(step / 2).unwrap_or(t);
                let irr = Irradiance::from_ghi(*g, mid, self.system.latitude_deg, self.system.longitude_deg);
                self.system.power(mid, irr)
            })
            .collect()
    }
}

/// Starts of `n` intervals of `step` from `start` (stops early at the end of time).
pub(crate) fn intervals(start: Timestamp, step: SignedDuration, n: usize) -> impl Iterator<Item = Timestamp> {
    let mut next = Some(start);
    core::iter::from_fn(move || {
        let t = next?;
        next = t.checked_add(step).ok();
        Some(t)
    })
    .take(n)
}

/// What a [`PvForecaster`] has learned from measurements (the recent observations, the
/// long-run ratio and the solar day being accumulated), to persist it across restarts: see
/// [`PvForecaster::learned`] and [`PvForecaster::with_learned`]. Opaque; serializable.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PvLearned {
    recent: Vec<(Timestamp, f64, f64, f64)>,
    long_run: f64,
    day: Option<(i64, f64, f64)>,
}

impl PvForecaster {
    /// The learned state.
    #[must_use]
    pub fn learned(&self) -> PvLearned {
        PvLearned {
            recent: self.recent.iter().map(|o| (o.end, o.hours, o.measured_wh, o.clear_wh)).collect(),
            long_run: self.long_run,
            day: self.day,
        }
    }

    /// This forecaster with a learned state restored (from [`Self::learned`]); non-finite
    /// values are dropped and the long-run ratio is bounded to `min_ratio..=max_ratio`.
    #[must_use]
    pub fn with_learned(mut self, learned: PvLearned) -> Self {
        let finite = |v: &[f64]| v.iter().all(|x| x.is_finite());
        self.recent = learned
            .recent
            .into_iter()
            .filter(|(_, h, m, c)| finite(&[*h, *m, *c]) && *h > 0.0)
            .map(|(end, hours, measured_wh, clear_wh)| Observation { end, hours, measured_wh, clear_wh })
            .collect();
        if learned.long_run.is_finite() {
            self.long_run = learned.long_run.clamp(self.cfg.min_ratio.get(), self.cfg.max_ratio.get());
        }
        self.day = learned.day.filter(|(_, m, c)| finite(&[*m, *c]));
        self
    }
}
