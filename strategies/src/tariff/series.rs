//! A uniformly stepped series of prices on UTC instants, with gaps.

use crate::units::Price;
use jiff::{SignedDuration, Timestamp};

/// A price series could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SeriesError {
    /// No slots at all.
    #[error("the price series is empty")]
    Empty,
    /// The step is not a positive whole number of seconds that divides a day.
    #[error("step of {seconds} s is not a positive whole number of seconds dividing a day")]
    BadStep {
        /// The rejected step in seconds (rounded down).
        seconds: i64,
    },
    /// A price is NaN or infinite.
    #[error("price at index {index} is not finite: {value}")]
    NotFinite {
        /// Index of the slot.
        index: usize,
        /// The rejected value in currency per kWh.
        value: f64,
    },
    /// Points handed to [`PriceSeries::from_points`] are not evenly spaced and increasing.
    #[error("point {index} at {at} is not one step ({step_s} s) after the previous point")]
    NotUniform {
        /// Index of the offending point.
        index: usize,
        /// Its timestamp.
        at: Timestamp,
        /// The step implied by the first two points, in seconds.
        step_s: i64,
    },
    /// The series would end after the last representable timestamp.
    #[error("the price series extends beyond the representable time range")]
    OutOfRange,
}

/// Prices on a regular grid of UTC instants: slot `i` covers `[start + i·step, start + (i+1)·step)`.
/// A slot may be empty (`None`), e.g. a `-` in a SMARD file.
///
/// Hourly and quarter-hourly day-ahead prices both fit; lookups are O(1).
#[derive(Debug, Clone, PartialEq)]
pub struct PriceSeries {
    start: Timestamp,
    step_s: i64,
    values: Vec<Option<Price>>,
}

const DAY_S: i64 = 86_400;
const NANOS_PER_S: i128 = 1_000_000_000;

impl PriceSeries {
    /// A series of `values` starting at `start`, one every `step`. The step must be a whole
    /// number of seconds that divides a day (15 min and 1 h do); prices must be finite.
    ///
    /// # Errors
    /// [`SeriesError`] for a step that does not divide a day, or a price that is not finite.
    pub fn new(
        start: Timestamp,
        step: SignedDuration,
        values: Vec<Option<Price>>,
    ) -> Result<Self, SeriesError> {
        let step_s = step.as_secs();
        if step.subsec_nanos() != 0 || step_s <= 0 || DAY_S % step_s != 0 {
            return Err(SeriesError::BadStep { seconds: step_s });
        }
        if values.is_empty() {
            return Err(SeriesError::Empty);
        }
        if let Some((index, value)) = values
            .iter()
            .enumerate()
            .find_map(|(i, v)| v.filter(|p| !p.per_kwh().is_finite()).map(|p| (i, p.per_kwh())))
        {
            return Err(SeriesError::NotFinite { index, value });
        }
        let series = Self { start, step_s, values };
        // The end must be representable so that `end()` and `slot_start()` never fail.
        let len = i64::try_from(series.values.len()).map_err(|_| SeriesError::OutOfRange)?;
        let span = step_s.checked_mul(len).ok_or(SeriesError::OutOfRange)?;
        start.checked_add(SignedDuration::from_secs(span)).map_err(|_| SeriesError::OutOfRange)?;
        Ok(series)
    }

    /// A series from `(start of slot, price)` points that are evenly spaced and increasing; the
    /// step is taken from the first two points (a single point gives a one-hour slot).
    ///
    /// # Errors
    /// [`SeriesError`] for no points, or points not evenly spaced and increasing.
    pub fn from_points(points: &[(Timestamp, Price)]) -> Result<Self, SeriesError> {
        let (first, _) = *points.first().ok_or(SeriesError::Empty)?;
        let step = match points.get(1) {
            Some((second, _)) => second.duration_since(first),
            None => SignedDuration::from_hours(1),
        };
        let step_s = step.as_secs();
        for (index, pair) in points.windows(2).enumerate() {
            if let [(a, _), (b, _)] = pair {
                if b.duration_since(*a) != step {
                    return Err(SeriesError::NotUniform { index: index + 1, at: *b, step_s });
                }
            }
        }
        Self::new(first, step, points.iter().map(|(_, p)| Some(*p)).collect())
    }

    /// Start of the first slot.
    #[must_use]
    pub fn start(&self) -> Timestamp {
        self.start
    }

    /// End of the last slot (exclusive).
    #[must_use]
    pub fn end(&self) -> Timestamp {
        self.slot_start(self.values.len())
    }

    /// Length of one slot.
    #[must_use]
    pub fn step(&self) -> SignedDuration {
        SignedDuration::from_secs(self.step_s)
    }

    /// Number of slots (known or not).
    #[must_use]
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Never true for a constructed series; provided for symmetry with `len`.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Number of slots that hold a price.
    #[must_use]
    pub fn known_len(&self) -> usize {
        self.values.iter().filter(|v| v.is_some()).count()
    }

    /// The slot values in order.
    #[must_use]
    pub fn values(&self) -> &[Option<Price>] {
        &self.values
    }

    /// Start of slot `index` (the end of the series for `index == len()`; indices beyond are
    /// clamped to it).
    #[must_use]
    pub fn slot_start(&self, index: usize) -> Timestamp {
        let index = i64::try_from(index.min(self.values.len())).unwrap_or(i64::MAX);
        // `new` checked that start + len·step is representable, so neither step can fail.
        let offset = SignedDuration::from_secs(self.step_s.saturating_mul(index));
        self.start.checked_add(offset).unwrap_or(Timestamp::MAX)
    }

    /// Index of the slot containing `at`, if `at` lies within the series.
    #[must_use]
    pub fn index_of(&self, at: Timestamp) -> Option<usize> {
        let delta = at.as_nanosecond() - self.start.as_nanosecond();
        if delta < 0 {
            return None;
        }
        let index = usize::try_from(delta / (i128::from(self.step_s) * NANOS_PER_S)).ok()?;
        (index < self.values.len()).then_some(index)
    }

    /// The price in force at `at`: `None` outside the series or in an empty slot.
    #[must_use]
    pub fn get(&self, at: Timestamp) -> Option<Price> {
        self.index_of(at).and_then(|i| self.values.get(i).copied().flatten())
    }

    /// `(slot start, price)` for every slot in order.
    pub fn iter(&self) -> impl Iterator<Item = (Timestamp, Option<Price>)> + '_ {
        self.values.iter().enumerate().map(|(i, v)| (self.slot_start(i), *v))
    }

    /// The same series with every slot starting at or after `end` removed (a "prices published
    /// until `end`" view, for forecasts and tests). `None` if nothing would remain.
    #[must_use]
    pub fn truncated(&self, end: Timestamp) -> Option<Self> {
        let keep = match self.index_of(end) {
            Some(i) if self.slot_start(i) == end => i,
            Some(i) => i + 1,
            None if end <= self.start => 0,
            None => self.values.len(),
        };
        (keep > 0).then(|| Self {
            start: self.start,
            step_s: self.step_s,
            values: self.values[..keep].to_vec(),
        })
    }

    /// Lowest known price.
    #[must_use]
    pub fn min(&self) -> Option<Price> {
        self.values.iter().flatten().copied().reduce(|a, b| if b < a { b } else { a })
    }

    /// Highest known price.
    #[must_use]
    pub fn max(&self) -> Option<Price> {
        self.values.iter().flatten().copied().reduce(|a, b| if b > a { b } else { a })
    }

    /// Mean of the known prices (each slot weighs the same).
    #[must_use]
    pub fn mean(&self) -> Option<Price> {
        let (sum, n) = self.values.iter().flatten().fold((0.0, 0.0), |(s, n), p| (s + p.per_kwh(), n + 1.0));
        (n > 0.0).then(|| Price::new(sum / n))
    }
}
