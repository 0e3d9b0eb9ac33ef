//! How wrong a forecaster has been: the ratios of what was measured to what was forecast, kept
//! for a bounded window, and their quantiles as planning scenarios ([`Scenarios`]).

use std::collections::VecDeque;

use ems_core::Watts;
use jiff::SignedDuration;

use crate::optimizer::{ParamError, Scenarios};
use crate::units::{Factor, Ratio};

/// Measured ÷ forecast, for the quarter-hours whose forecast was at least a floor (a ratio of
/// two small numbers says nothing), the latest `capacity` of them.
#[derive(Debug, Clone, PartialEq)]
pub struct ForecastErrors {
    ratios: VecDeque<f64>,
    capacity: usize,
    floor: Watts,
    /// Ratios beyond this are clipped (a forecast of nearly nothing on a bright hour).
    max_ratio: f64,
}

impl ForecastErrors {
    /// Keeps the latest `capacity` ratios (at least 1) of forecasts of at least `floor`.
    #[must_use]
    pub fn new(capacity: usize, floor: Watts) -> Self {
        let capacity = capacity.max(1);
        Self { ratios: VecDeque::with_capacity(capacity), capacity, floor, max_ratio: 5.0 }
    }

    /// Records one pair; a forecast below the floor (or non-finite values) is skipped.
    pub fn record(&mut self, forecast: Watts, measured: Watts) {
        let (f, m) = (f64::from(forecast.get()), f64::from(measured.get()));
        if !(f.is_finite() && m.is_finite()) || f < f64::from(self.floor.get()).max(f64::MIN_POSITIVE) {
            return;
        }
        if self.ratios.len() == self.capacity {
            self.ratios.pop_front();
        }
        self.ratios.push_back((m / f).clamp(0.0, self.max_ratio));
    }

    /// How many ratios are kept.
    #[must_use]
    pub fn len(&self) -> usize {
        self.ratios.len()
    }

    /// Whether none is kept.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ratios.is_empty()
    }

    /// The ratio below which a share `q` of the kept ratios lies (nearest rank); `None` when
    /// none is kept.
    #[must_use]
    pub fn quantile(&self, q: Ratio) -> Option<Factor> {
        let mut sorted: Vec<f64> = self.ratios.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        nearest_rank(&sorted, q.get()).map(Factor::saturating)
    }

    /// `n` equally likely factors: the quantiles at the middles of `n` equal bins
    /// (`(i + ½) / n`), or `None` with fewer than `min_samples` ratios.
    #[must_use]
    pub fn bins(&self, n: usize, min_samples: usize) -> Option<Vec<(Factor, Ratio)>> {
        if n == 0 || self.ratios.len() < min_samples.max(1) {
            return None;
        }
        let mut sorted: Vec<f64> = self.ratios.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        #[allow(clippy::cast_precision_loss)] // a handful of bins
        let w = Ratio::saturating(1.0 / n as f64);
        #[allow(clippy::cast_precision_loss)]
        (0..n)
            .map(|i| nearest_rank(&sorted, (i as f64 + 0.5) / n as f64).map(|f| (Factor::saturating(f), w)))
            .collect()
    }
}

fn nearest_rank(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let i = ((q.clamp(0.0, 1.0) * sorted.len() as f64).floor() as usize).min(last);
    sorted.get(i).copied()
}

/// Planning scenarios from the errors of a PV and a load forecaster: `pv_bins` × `load_bins`
/// equally likely quantile factors, combined as independent (at most 16 combinations), whose
/// spread is complete after `ramp` of lead time. `None` while either has fewer than
/// `min_samples` ratios (the plan then trusts its point forecast).
///
/// # Errors
/// [`ParamError`] when more than 16 combinations are asked for.
pub fn error_scenarios(
    pv: &ForecastErrors,
    load: &ForecastErrors,
    (pv_bins, load_bins): (usize, usize),
    min_samples: usize,
    ramp: SignedDuration,
) -> Result<Option<Scenarios>, ParamError> {
    let (Some(p), Some(l)) = (pv.bins(pv_bins, min_samples), load.bins(load_bins, min_samples)) else {
        return Ok(None);
    };
    Scenarios::product(&p, &l, ramp).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_bounded_and_small_forecasts_skipped() {
        let mut e = ForecastErrors::new(3, Watts::saturating(100.0));
        e.record(Watts::saturating(50.0), Watts::saturating(500.0));
        assert!(e.is_empty(), "a forecast below the floor says nothing");
        for m in [100.0, 200.0, 300.0, 400.0] {
            e.record(Watts::saturating(200.0), Watts::saturating(m));
        }
        assert_eq!(e.len(), 3, "the oldest ratio went");
        let q = |x| e.quantile(Ratio::saturating(x)).map(Factor::get);
        assert_eq!(q(0.0), Some(1.0));
        assert_eq!(q(0.5), Some(1.5));
        assert_eq!(q(1.0), Some(2.0));
    }

    #[test]
    fn bins_are_the_middles_of_equal_shares() {
        let mut e = ForecastErrors::new(100, Watts::saturating(1.0));
        for m in 1..=100_u8 {
            e.record(Watts::saturating(100.0), Watts::saturating(f32::from(m)));
        }
        let bins = e.bins(5, 10).unwrap();
        let f: Vec<f64> = bins.iter().map(|b| b.0.get()).collect();
        assert_eq!(f, vec![0.11, 0.31, 0.51, 0.71, 0.91]);
        assert!(bins.iter().all(|b| (b.1.get() - 0.2).abs() < 1e-12));
        assert!(e.bins(5, 101).is_none(), "too few samples");
        let s = error_scenarios(&e, &e, (5, 3), 10, SignedDuration::ZERO).unwrap().unwrap();
        assert_eq!(s.items().len(), 15);
        let sum: f64 = s.items().iter().map(|i| i.weight.get()).sum();
        assert!((sum - 1.0).abs() < 1e-12);
        assert!(error_scenarios(&e, &e, (5, 4), 10, SignedDuration::ZERO).is_err(), "20 > 16");
    }
}
