//! Forecast error metrics.

use super::ForecastError;
use crate::units::{watts_from_f64, Factor, Price};
use ems_core::Watts;

/// A quantity whose forecasts can be scored: the metrics are computed in `f64` in its base unit
/// and handed back in the quantity's own type.
pub trait Scored: Copy {
    /// The value in the base unit (W for power, currency per kWh for prices).
    fn to_f64(self) -> f64;
    /// A computed value back in the unit (saturating).
    fn from_f64(value: f64) -> Self;
}

impl Scored for Watts {
    fn to_f64(self) -> f64 {
        f64::from(self.get())
    }
    fn from_f64(value: f64) -> Self {
        watts_from_f64(value)
    }
}

impl Scored for Price {
    fn to_f64(self) -> f64 {
        self.per_kwh()
    }
    fn from_f64(value: f64) -> Self {
        Price::new(if value.is_finite() { value } else { 0.0 })
    }
}

/// What the mean absolute error is divided by to give the normalised error.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "value")]
pub enum Normalisation<Q> {
    /// The mean of the absolute actual values (load, prices). Undefined (`None`) when that mean
    /// is zero.
    MeanAbsActual,
    /// A fixed capacity (PV: the peak power), the usual convention for PV because the mean of
    /// actuals includes the nights.
    Capacity(Q),
}

/// Errors of a forecast of a quantity `Q` against actuals.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ErrorMetrics<Q> {
    /// Number of pairs compared.
    pub n: usize,
    /// Mean absolute error.
    pub mae: Q,
    /// Root mean square error.
    pub rmse: Q,
    /// Mean error (forecast − actual): positive = the forecast is too high on average.
    pub bias: Q,
    /// Mean of the actual values.
    pub mean_actual: Q,
    /// `mae / normaliser` (see [`Normalisation`]); `None` if the normaliser is zero.
    pub nmae: Option<Factor>,
    /// What `nmae` is normalised by.
    pub normalisation: Normalisation<Q>,
}

/// Compare `forecast` with `actual` pairwise. Both must be equally long, non-empty and finite.
///
/// # Errors
/// [`ForecastError::LengthMismatch`], [`ForecastError::Empty`], or
/// [`ForecastError::NotFinite`] naming the first non-finite value.
pub fn error_metrics<Q: Scored>(
    forecast: &[Q],
    actual: &[Q],
    normalisation: Normalisation<Q>,
) -> Result<ErrorMetrics<Q>, ForecastError> {
    if forecast.len() != actual.len() {
        return Err(ForecastError::LengthMismatch { expected: actual.len(), found: forecast.len() });
    }
    if actual.is_empty() {
        return Err(ForecastError::Empty);
    }
    if let Some(v) = forecast.iter().chain(actual).map(|v| v.to_f64()).find(|v| !v.is_finite()) {
        return Err(ForecastError::NotFinite { value: v });
    }
    let (mut abs, mut sq, mut err, mut act, mut act_abs) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for (f, a) in forecast.iter().zip(actual) {
        let (f, a) = (f.to_f64(), a.to_f64());
        let e = f - a;
        abs += e.abs();
        sq += e * e;
        err += e;
        act += a;
        act_abs += a.abs();
    }
    #[allow(clippy::cast_precision_loss)] // a count of samples: exact below 2^53
    let n = actual.len() as f64;
    let mae = abs / n;
    let denominator = match normalisation {
        Normalisation::MeanAbsActual => act_abs / n,
        Normalisation::Capacity(c) => c.to_f64().abs(),
    };
    Ok(ErrorMetrics {
        n: actual.len(),
        mae: Q::from_f64(mae),
        rmse: Q::from_f64((sq / n).sqrt()),
        bias: Q::from_f64(err / n),
        mean_actual: Q::from_f64(act / n),
        nmae: (denominator > 0.0 && denominator.is_finite()).then(|| Factor::saturating(mae / denominator)),
        normalisation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(v: &[f32]) -> Vec<Watts> {
        v.iter().map(|&x| Watts::try_new(x).unwrap()).collect()
    }

    #[test]
    fn hand_computed() {
        let m =
            error_metrics(&w(&[1.0, 2.0, 5.0]), &w(&[2.0, 2.0, 2.0]), Normalisation::MeanAbsActual).unwrap();
        assert_eq!(m.n, 3);
        assert!((m.mae.to_f64() - 4.0 / 3.0).abs() < 1e-6);
        assert!((m.bias.to_f64() - 2.0 / 3.0).abs() < 1e-6);
        assert!((m.rmse.to_f64() - (10.0_f64 / 3.0).sqrt()).abs() < 1e-6);
        assert!((m.nmae.unwrap().get() - 2.0 / 3.0).abs() < 1e-12);
        let m = error_metrics(&w(&[0.0, 0.0]), &w(&[0.0, 0.0]), Normalisation::MeanAbsActual).unwrap();
        assert_eq!(m.nmae, None);
        let m =
            error_metrics(&w(&[1.0]), &w(&[0.0]), Normalisation::Capacity(ems_core::watts!(4.0))).unwrap();
        assert_eq!(m.nmae.map(Factor::get), Some(0.25));
        assert!(error_metrics(&w(&[1.0]), &[], Normalisation::MeanAbsActual).is_err());
        assert!(error_metrics::<Watts>(&[], &[], Normalisation::MeanAbsActual).is_err());
        let p = [Price::new(f64::NAN)];
        assert!(error_metrics(&p, &[Price::new(1.0)], Normalisation::MeanAbsActual).is_err());
    }
}
