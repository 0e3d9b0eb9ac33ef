//! Load forecast: one profile per day type, learned by exponential smoothing.

use super::pv::intervals;
use super::ForecastError;
use crate::tariff::Calendar;
use ems_core::Watts;
use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

/// The day types of German standard load profiles (BDEW `WT`, `SA`, `FT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoadDayType {
    /// Monday to Friday, not a holiday (`WT`).
    Working,
    /// Saturday, not a holiday (`SA`).
    Saturday,
    /// Sunday or a holiday (`FT`).
    SundayOrHoliday,
}

impl LoadDayType {
    /// All day types, in profile order.
    pub const ALL: [Self; 3] = [Self::Working, Self::Saturday, Self::SundayOrHoliday];

    /// The day type of `date` under `calendar` (holidays first).
    #[must_use]
    pub fn of(date: Date, calendar: &Calendar) -> Self {
        if calendar.is_holiday(date) {
            return Self::SundayOrHoliday;
        }
        match date.weekday() {
            Weekday::Saturday => Self::Saturday,
            Weekday::Sunday => Self::SundayOrHoliday,
            Weekday::Monday | Weekday::Tuesday | Weekday::Wednesday | Weekday::Thursday | Weekday::Friday => {
                Self::Working
            }
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Working => 0,
            Self::Saturday => 1,
            Self::SundayOrHoliday => 2,
        }
    }
}

/// Mean power per time-of-day slot for each day type. Slot `k` of `n` covers local wall-clock
/// minutes `[k·1440/n, (k+1)·1440/n)`.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadProfile {
    slots_per_day: usize,
    values: [Vec<Watts>; 3],
}

impl LoadProfile {
    /// A profile from one vector per day type (working day, Saturday, Sunday/holiday), each of
    /// `slots_per_day` values; `slots_per_day` must divide 1440 (24 and 96 do).
    ///
    /// # Errors
    /// [`ForecastError`] when the day types differ in length or `slots_per_day` does not divide a day.
    pub fn new(working: Vec<Watts>, saturday: Vec<Watts>, sunday: Vec<Watts>) -> Result<Self, ForecastError> {
        let n = working.len();
        if n == 0 || 1440 % n != 0 {
            return Err(ForecastError::BadSlots { slots: n });
        }
        if saturday.len() != n || sunday.len() != n {
            return Err(ForecastError::LengthMismatch {
                expected: n,
                found: saturday.len().max(sunday.len()),
            });
        }
        Ok(Self { slots_per_day: n, values: [working, saturday, sunday] })
    }

    /// The same power in every slot of every day type.
    ///
    /// # Errors
    /// [`ForecastError`] when `slots_per_day` does not divide a day.
    pub fn flat(slots_per_day: usize, power: Watts) -> Result<Self, ForecastError> {
        let v = vec![power; slots_per_day];
        Self::new(v.clone(), v.clone(), v)
    }

    /// Slots per day.
    #[must_use]
    pub fn slots_per_day(&self) -> usize {
        self.slots_per_day
    }

    /// The values of one day type.
    #[must_use]
    pub fn day(&self, day: LoadDayType) -> &[Watts] {
        self.values.get(day.index()).map_or(&[], Vec::as_slice)
    }

    /// The value of one slot (zero for an index beyond the day).
    #[must_use]
    pub fn get(&self, day: LoadDayType, slot: usize) -> Watts {
        self.day(day).get(slot).copied().unwrap_or(Watts::ZERO)
    }

    fn slot_mut(&mut self, day: LoadDayType, slot: usize) -> Option<&mut Watts> {
        self.values.get_mut(day.index()).and_then(|v| v.get_mut(slot))
    }
}

/// Day-type load forecaster.
///
/// Each observed slot mean updates its profile value by exponential smoothing,
/// `p ← p + α · (observed − p)`; the forecast for a slot is the current profile value of its
/// day type. It starts from a default profile (a standard load profile scaled to the site's
/// annual consumption, or a flat mean). Time slots are local wall-clock time in the site time
/// zone: the missing hour of a spring-forward day is simply not observed, and the repeated hour
/// of a fall-back day updates the same slots twice.
#[derive(Debug, Clone)]
pub struct LoadForecaster {
    profile: LoadProfile,
    alpha: f64,
    tz: TimeZone,
    calendar: Calendar,
}

impl LoadForecaster {
    /// A forecaster starting from `default` with smoothing factor `alpha` (0 < α ≤ 1; 0.1–0.3
    /// suits daily updates of a household).
    ///
    /// # Errors
    /// [`ForecastError::OutOfRange`] when `alpha` is not in `(0, 1]`.
    pub fn new(
        default: LoadProfile,
        alpha: f64,
        tz: TimeZone,
        calendar: Calendar,
    ) -> Result<Self, ForecastError> {
        if !(alpha.is_finite() && alpha > 0.0 && alpha <= 1.0) {
            return Err(ForecastError::OutOfRange { field: "alpha", value: alpha, min: 0.0, max: 1.0 });
        }
        Ok(Self { profile: default, alpha, tz, calendar })
    }

    /// The learned profile.
    #[must_use]
    pub fn profile(&self) -> &LoadProfile {
        &self.profile
    }

    /// Day type and slot index at `at`.
    #[must_use]
    pub fn slot_of(&self, at: Timestamp) -> (LoadDayType, usize) {
        let dt = self.tz.to_datetime(at);
        let minute = usize::try_from(i32::from(dt.hour()) * 60 + i32::from(dt.minute())).unwrap_or_default();
        let slot = minute * self.profile.slots_per_day / 1440;
        (LoadDayType::of(dt.date(), &self.calendar), slot)
    }

    /// Learn from the measured mean load over the slot containing `slot_start` (one call per
    /// slot; averaging finer samples into slot means is the caller's job). Negative loads count
    /// as zero.
    pub fn observe(&mut self, slot_start: Timestamp, mean: Watts) {
        let (day, slot) = self.slot_of(slot_start);
        let alpha = self.alpha;
        if let Some(p) = self.profile.slot_mut(day, slot) {
            let old = f64::from(p.get());
            let new = old + alpha * (f64::from(mean.get().max(0.0)) - old);
            // f64 to f32 has no `From`: a blend of two f32 powers lies between them.
            #[allow(clippy::cast_possible_truncation)]
            let new = new as f32;
            *p = Watts::saturating(new);
        }
    }

    /// Mean load forecast for `n` intervals of `step` from `start`: the profile value at each
    /// interval's midpoint if `step` is at most a slot, else the mean of the profile over the
    /// interval (sampled once per slot length).
    #[must_use]
    pub fn forecast(&self, start: Timestamp, step: SignedDuration, n: usize) -> Vec<Watts> {
        let slot_len =
            SignedDuration::from_secs(86_400 / i64::try_from(self.profile.slots_per_day).unwrap_or(1));
        intervals(start, step, n)
            .map(|t| {
                if step <= slot_len {
                    let mid = t.checked_add(step / 2).unwrap_or(t);
                    let (d, s) = self.slot_of(mid);
                    self.profile.get(d, s)
                } else {
                    let samples: Vec<f64> = intervals(
                        t,
                        slot_len,
                        usize::try_from(step.as_secs() / slot_len.as_secs().max(1)).unwrap_or(1),
                    )
                    .map(|u| {
                        let (d, s) = self.slot_of(u.checked_add(slot_len / 2).unwrap_or(u));
                        f64::from(self.profile.get(d, s).get())
                    })
                    .collect();
                    let n = f64::from(u32::try_from(samples.len().max(1)).unwrap_or(u32::MAX));
                    // f64 to f32 has no `From`: a mean of f32 powers lies among them.
                    #[allow(clippy::cast_possible_truncation)]
                    let mean = (samples.iter().sum::<f64>() / n) as f32;
                    Watts::saturating(mean)
                }
            })
            .collect()
    }
}
