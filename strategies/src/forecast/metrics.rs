//! Forecast error metrics.

use super::ForecastError;

/// What the mean absolute error is divided by to give the normalised error.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "value")]
pub enum Normalisation {
    /// The mean of the absolute actual values (load, prices). Undefined (`None`) when that mean
    /// is zero.
    MeanAbsActual,
    /// A fixed capacity in the unit of the values (PV: the peak power), the usual convention for
    /// PV because the mean of actuals includes the nights.
    Capacity(f64),
}

/// Errors of a forecast against actuals.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ErrorMetrics {
    /// Number of pairs compared.
    pub n: usize,
    /// Mean absolute error, in the unit of the values.
    pub mae: f64,
    /// Root mean square error.
    pub rmse: f64,
    /// Mean error (forecast − actual): positive = the forecast is too high on average.
    pub bias: f64,
    /// Mean of the actual values.
    pub mean_actual: f64,
    /// `mae / normaliser` (see [`Normalisation`]); `None` if the normaliser is zero.
    pub nmae: Option<f64>,
    /// What `nmae` is normalised by.
    pub normalisation: Normalisation,
}

/// Compare `forecast` with `actual` pairwise. Both must be equally long, non-empty and finite.
pub fn error_metrics(
    forecast: &[f64],
    actual: &[f64],
    normalisation: Normalisation,
) -> Result<ErrorMetrics, ForecastError> {
    if forecast.len() != actual.len() {
        return Err(ForecastError::LengthMismatch { expected: actual.len(), found: forecast.len() });
    }
    if actual.is_empty() {
        return Err(ForecastError::Empty);
    }
    if let Some(v) = forecast.iter().chain(actual).find(|v| !v.is_finite()) {
        return Err(ForecastError::NotFinite { value: *v });
    }
    let (mut abs, mut sq, mut err, mut act, mut act_abs) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for (f, a) in forecast.iter().zip(actual) {
        let e = f - a;
        abs += e.abs();
        sq += e * e;
        err += e;
        act += a;
        act_abs += a.abs();
    }
    #[allow(clippy::cast_precision_loss)]
    let n = actual.len() as f64;
    let mae = abs / n;
    let denominator = match normalisation {
        Normalisation::MeanAbsActual => act_abs / n,
        Normalisation::Capacity(c) => c.abs(),
    };
    Ok(ErrorMetrics {
        n: actual.len(),
        mae,
        rmse: (sq / n).sqrt(),
        bias: err / n,
        mean_actual: act / n,
        nmae: (denominator > 0.0 && denominator.is_finite()).then(|| mae / denominator),
        normalisation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed() {
        let m = error_metrics(&[1.0, 2.0, 5.0], &[2.0, 2.0, 2.0], Normalisation::MeanAbsActual).unwrap();
        assert_eq!(m.n, 3);
        assert!((m.mae - 4.0 / 3.0).abs() < 1e-12);
        assert!((m.bias - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.rmse - (10.0_f64 / 3.0).sqrt()).abs() < 1e-12);
        assert!((m.nmae.unwrap() - 2.0 / 3.0).abs() < 1e-12);
        let m = error_metrics(&[0.0, 0.0], &[0.0, 0.0], Normalisation::MeanAbsActual).unwrap();
        assert_eq!(m.nmae, None);
        let m = error_metrics(&[1.0], &[0.0], Normalisation::Capacity(4.0)).unwrap();
        assert_eq!(m.nmae, Some(0.25));
        assert!(error_metrics(&[1.0], &[], Normalisation::MeanAbsActual).is_err());
        assert!(error_metrics(&[], &[], Normalisation::MeanAbsActual).is_err());
        assert!(error_metrics(&[f64::NAN], &[1.0], Normalisation::MeanAbsActual).is_err());
    }
}
