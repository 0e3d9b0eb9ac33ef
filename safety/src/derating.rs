//! Piecewise-linear derating curves: allowed power as a percentage of the inverter rating,
//! interpolated linearly between configured points and flat outside them.

use crate::envelope::Envelope;
use crate::error::ConfigError;
use crate::scalar::Scalar;
use ems_core::event::Constraint;
use ems_core::{Celsius, Millis, Percent, Quantity, Snapshot, Volts, Watts};

/// Maximum number of points per curve.
pub const MAX_POINTS: usize = 8;

/// The points of one curve: `(x, allowed %)`, strictly increasing in `x`.
pub type Points<X> = heapless::Vec<(X, Percent), MAX_POINTS>;

/// A derating curve over the unit `X`.
///
/// An empty curve means "no derating" (100 % everywhere).
#[derive(Debug, Clone, PartialEq)]
pub struct DeratingCurve<X: Scalar> {
    points: Points<X>,
}

impl<X: Scalar> DeratingCurve<X> {
    /// A curve from points; they are checked by [`Self::validate`] (called by
    /// [`crate::SafetyConfig::validate`]), and more than [`MAX_POINTS`] are refused here.
    ///
    /// # Errors
    /// [`ConfigError`] naming `field` when there are more than [`MAX_POINTS`] points.
    pub fn new(points: &[(X, Percent)], field: &'static str) -> Result<Self, ConfigError> {
        let mut v = Points::new();
        for (i, p) in points.iter().enumerate() {
            if v.push(*p).is_err() {
                #[allow(clippy::cast_precision_loss)] // i ≤ a slice length, only reported
                return Err(ConfigError::OutOfRange { field, value: i as f32, expected: "at most 8 points" });
            }
        }
        let c = Self { points: v };
        c.validate(field)?;
        Ok(c)
    }

    /// A curve that never derates.
    #[must_use]
    pub const fn none() -> Self {
        Self { points: heapless::Vec::new() }
    }

    /// The points.
    #[must_use]
    pub fn points(&self) -> &[(X, Percent)] {
        &self.points
    }

    /// Points must be finite and strictly increasing in `x`.
    ///
    /// # Errors
    /// [`ConfigError`] naming `field` and the first point that is not finite or not increasing.
    pub fn validate(&self, field: &'static str) -> Result<(), ConfigError> {
        let mut prev: Option<f32> = None;
        for (index, (x, y)) in self.points.iter().enumerate() {
            let x = x.raw();
            if !x.is_finite() {
                return Err(ConfigError::NotFinite { field, value: x });
            }
            let y = y.get();
            if !y.is_finite() {
                return Err(ConfigError::NotFinite { field, value: y });
            }
            if let Some(p) = prev {
                if x <= p {
                    return Err(ConfigError::NotIncreasing { field, index, value: x, previous: p });
                }
            }
            prev = Some(x);
        }
        Ok(())
    }

    /// The allowed percentage at `x`: linear between points, the end value outside them.
    #[must_use]
    pub fn factor(&self, x: X) -> Percent {
        Percent::from_fraction(self.fraction(x.raw()))
    }

    /// The factor as a fraction 0..=1 (private helper, raw numbers).
    fn fraction(&self, x: f32) -> f32 {
        let pts = self.points.as_slice();
        let Some((first, rest)) = pts.split_first() else { return 1.0 };
        if x <= first.0.raw() {
            return first.1.fraction();
        }
        let mut prev = first;
        for p in rest {
            let (x1, y1) = (p.0.raw(), p.1.fraction());
            if x <= x1 {
                let (x0, y0) = (prev.0.raw(), prev.1.fraction());
                let span = x1 - x0;
                if span <= 0.0 {
                    // Unvalidated curve: take the lower of the two points.
                    return y0.min(y1);
                }
                let t = (x - x0) / span;
                return (y0 + (y1 - y0) * t).clamp(0.0, 1.0);
            }
            prev = p;
        }
        prev.1.fraction()
    }
}

fn pts<X: Scalar, const N: usize>(p: [(f32, f32); N]) -> DeratingCurve<X> {
    let mut v = Points::new();
    for (x, y) in p {
        // N ≤ MAX_POINTS for every default below; an overflow would only shorten a default.
        let _ = v.push((X::from_raw(x), Percent::saturating(y)));
    }
    DeratingCurve { points: v }
}

/// All derating curves.
#[derive(Debug, Clone, PartialEq)]
pub struct DeratingConfig {
    /// Charge power vs. cell temperature (evaluated at both the lowest and highest cell).
    pub charge_vs_temperature: DeratingCurve<Celsius>,
    /// Discharge power vs. cell temperature (lowest and highest cell).
    pub discharge_vs_temperature: DeratingCurve<Celsius>,
    /// Charge power vs. highest cell voltage.
    pub charge_vs_cell_voltage: DeratingCurve<Volts>,
    /// Discharge power vs. lowest cell voltage.
    pub discharge_vs_cell_voltage: DeratingCurve<Volts>,
    /// Charge power vs. state of charge.
    pub charge_vs_soc: DeratingCurve<Percent>,
}

impl Default for DeratingConfig {
    /// LFP defaults:
    ///
    /// | curve | points |
    /// |---|---|
    /// | charge vs. cell °C | 0 % ≤ 0 °C, 100 % 10–40 °C, 0 % ≥ 50 °C |
    /// | discharge vs. cell °C | 0 % ≤ −20 °C, 100 % −10–45 °C, 0 % ≥ 55 °C |
    /// | charge vs. max cell V | 100 % ≤ 3.45 V, 0 % ≥ 3.60 V |
    /// | discharge vs. min cell V | 0 % ≤ 2.80 V, 100 % ≥ 3.00 V |
    /// | charge vs. SOC | 100 % ≤ 90 %, 20 % at 100 % |
    fn default() -> Self {
        Self {
            charge_vs_temperature: pts([(0.0, 0.0), (10.0, 100.0), (40.0, 100.0), (50.0, 0.0)]),
            discharge_vs_temperature: pts([(-20.0, 0.0), (-10.0, 100.0), (45.0, 100.0), (55.0, 0.0)]),
            charge_vs_cell_voltage: pts([(3.45, 100.0), (3.60, 0.0)]),
            discharge_vs_cell_voltage: pts([(2.80, 0.0), (3.00, 100.0)]),
            charge_vs_soc: pts([(90.0, 100.0), (100.0, 20.0)]),
        }
    }
}

impl DeratingConfig {
    /// Validate every curve.
    ///
    /// # Errors
    /// The first curve's [`ConfigError`], naming it (`derating.…`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.charge_vs_temperature.validate("derating.charge_vs_temperature")?;
        self.discharge_vs_temperature.validate("derating.discharge_vs_temperature")?;
        self.charge_vs_cell_voltage.validate("derating.charge_vs_cell_voltage")?;
        self.discharge_vs_cell_voltage.validate("derating.discharge_vs_cell_voltage")?;
        self.charge_vs_soc.validate("derating.charge_vs_soc")?;
        Ok(())
    }

    /// Narrow `envelope` to `rating × factor` per curve, for the signals that are good at
    /// `now` (unavailable signals are handled by the monitor, which zeroes their directions).
    pub fn apply(&self, snapshot: &Snapshot, now: Millis, rating: Watts, envelope: &mut Envelope) {
        let b = &snapshot.battery;
        let tmin = b.cell_temp_min.value_at(now);
        let tmax = b.cell_temp_max.value_at(now);
        for (curve, charge) in [(&self.charge_vs_temperature, true), (&self.discharge_vs_temperature, false)]
        {
            let low = tmin.map(|t| curve.fraction(t.get()));
            let high = tmax.map(|t| curve.fraction(t.get()));
            // The cell that derates more names the reason.
            let pick = match (low, high) {
                (Some(l), Some(h)) if l < h => Some((l, Quantity::CellTempLow)),
                (_, Some(h)) => Some((h, Quantity::CellTempHigh)),
                (Some(l), None) => Some((l, Quantity::CellTempLow)),
                (None, None) => None,
            };
            if let Some((f, q)) = pick {
                limit(envelope, charge, rating, f, q);
            }
        }
        if let Some(v) = b.cell_voltage_max.value_at(now) {
            limit(
                envelope,
                true,
                rating,
                self.charge_vs_cell_voltage.fraction(v.get()),
                Quantity::CellVoltageHigh,
            );
        }
        if let Some(v) = b.cell_voltage_min.value_at(now) {
            let f = self.discharge_vs_cell_voltage.fraction(v.get());
            limit(envelope, false, rating, f, Quantity::CellVoltageLow);
        }
        if let Some(s) = b.soc.value_at(now) {
            limit(envelope, true, rating, self.charge_vs_soc.fraction(s.get()), Quantity::SocHigh);
        }
    }
}

fn limit(envelope: &mut Envelope, charge: bool, rating: Watts, fraction: f32, q: Quantity) {
    if fraction >= 1.0 {
        return;
    }
    let w = rating.scale(fraction);
    if charge {
        envelope.limit_charge(w, Constraint::Derating(q));
    } else {
        envelope.limit_discharge(w, Constraint::Derating(q));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: Percent, b: f32) -> bool {
        (a.get() - b).abs() < 1e-3
    }

    #[test]
    fn interpolates_at_between_and_outside_points() {
        let c = DeratingConfig::default().charge_vs_temperature;
        for (t, want) in [
            (-30.0, 0.0),
            (0.0, 0.0),
            (5.0, 50.0),
            (10.0, 100.0),
            (25.0, 100.0),
            (40.0, 100.0),
            (45.0, 50.0),
            (50.0, 0.0),
            (80.0, 0.0),
        ] {
            assert!(
                close(c.factor(Celsius::saturating(t)), want),
                "{t} °C -> {}",
                c.factor(Celsius::saturating(t))
            );
        }
        let v = DeratingConfig::default().discharge_vs_cell_voltage;
        assert!(close(v.factor(ems_core::volts!(2.9)), 50.0));
        assert!(close(v.factor(ems_core::volts!(3.4)), 100.0));
        let s = DeratingConfig::default().charge_vs_soc;
        assert!(close(s.factor(ems_core::percent!(95.0)), 60.0));
        assert!(close(s.factor(ems_core::percent!(100.0)), 20.0));
        assert!(close(DeratingCurve::<Percent>::none().factor(ems_core::percent!(3.0)), 100.0));
    }

    #[test]
    fn validation_refuses_non_increasing_points_naming_the_field() {
        let err = DeratingCurve::new(
            &[
                (ems_core::celsius!(0.0), Percent::ZERO),
                (ems_core::celsius!(10.0), Percent::MAX),
                (ems_core::celsius!(10.0), Percent::ZERO),
            ],
            "derating.charge_vs_temperature",
        )
        .unwrap_err();
        assert!(matches!(
            err,
            ConfigError::NotIncreasing { field: "derating.charge_vs_temperature", index: 2, .. }
        ));
        assert!(err.to_string().contains("derating.charge_vs_temperature[2]"), "{err}");
        assert!(DeratingConfig::default().validate().is_ok());
    }

    #[test]
    fn applies_as_fraction_of_rating_with_the_lower_cell_named() {
        let mut s = Snapshot::unknown(ems_core::watts!(5000.0));
        let now = Millis::ZERO;
        let good = |c: f32| ems_core::Measurement::good(Celsius::saturating(c), now, Millis::new(5000));
        s.battery.cell_temp_min = good(5.0);
        s.battery.cell_temp_max = good(20.0);
        let mut env = Envelope::new(ems_core::watts!(5000.0));
        DeratingConfig::default().apply(&s, now, ems_core::watts!(5000.0), &mut env);
        assert!((env.max_charge().get() - 2500.0).abs() < 0.5);
        assert_eq!(env.charge_binding(), Some(Constraint::Derating(Quantity::CellTempLow)));
        assert_eq!(env.max_discharge(), ems_core::watts!(5000.0));
    }
}
