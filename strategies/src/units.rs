//! Units of the economics layer. Power uses the `ems-core` newtype [`Watts`]; prices and amounts
//! of money live here because nothing below this layer knows about money, and so do the
//! `f64` quantities of planning and accounting that the `f32` core units cannot carry exactly
//! enough: fractions ([`Ratio`]), dimensionless factors ([`Factor`]), long energy sums
//! ([`KilowattHours`]), angles ([`Degrees`]) and irradiance ([`WattsPerSquareMetre`]).
//!
//! Like the core units, each enters from outside through `try_new` (which refuses NaN, ±inf and
//! values outside its range, naming the value), computed values through `saturating`, and
//! literals through the `const` `checked` (e.g. in a `const` item, or [`crate::ratio!`]).

use ems_core::Watts;

use core::fmt;

/// A price in currency per kWh (the currency is the site's, e.g. EUR). May be negative: day-ahead
/// spot prices are, at times.
///
/// Deserializes through [`Price::checked`]: a NaN or infinite price in a file is refused with an
/// error naming the value.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Price(f64);

/// A non-finite price was given.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("field '{field}' = {value} is not a finite price")]
pub struct PriceError {
    /// Which field carried it.
    pub field: &'static str,
    /// The rejected value.
    pub value: f64,
}

impl Price {
    /// Zero.
    pub const ZERO: Self = Self(0.0);

    /// A price from a value that is known to be finite (constants, results of arithmetic on
    /// checked prices).
    #[must_use]
    pub const fn new(per_kwh: f64) -> Self {
        Self(per_kwh)
    }

    /// A price read from outside: NaN and ±inf are refused, naming the field.
    ///
    /// # Errors
    /// [`PriceError`] with `field` and the value when it is not finite.
    pub fn checked(field: &'static str, per_kwh: f64) -> Result<Self, PriceError> {
        if per_kwh.is_finite() {
            Ok(Self(per_kwh))
        } else {
            Err(PriceError { field, value: per_kwh })
        }
    }

    /// Currency per kWh.
    #[must_use]
    pub const fn per_kwh(self) -> f64 {
        self.0
    }
}

impl TryFrom<f64> for Price {
    type Error = PriceError;
    fn try_from(per_kwh: f64) -> Result<Self, PriceError> {
        Self::checked("price", per_kwh)
    }
}

impl From<Price> for f64 {
    fn from(p: Price) -> Self {
        p.0
    }
}

impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.4}/kWh", self.0)
    }
}

/// An amount of money in the site's currency (costs `+`, revenues `−`). Deserializes only if
/// finite (the error names the value).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Money(f64);

impl Money {
    /// Zero.
    pub const ZERO: Self = Self(0.0);

    /// An amount.
    #[must_use]
    pub const fn new(amount: f64) -> Self {
        Self(amount)
    }

    /// The amount.
    #[must_use]
    pub const fn get(self) -> f64 {
        self.0
    }
}

impl TryFrom<f64> for Money {
    type Error = RangeError;
    fn try_from(amount: f64) -> Result<Self, RangeError> {
        if amount.is_finite() {
            Ok(Self(amount))
        } else {
            Err(RangeError { quantity: "money", value: amount, min: f64::MIN, max: f64::MAX })
        }
    }
}

impl From<Money> for f64 {
    fn from(m: Money) -> Self {
        m.0
    }
}

impl core::ops::Add for Money {
    type Output = Self;
    fn add(self, rhs: Self) -> Self {
        Self(self.0 + rhs.0)
    }
}

impl core::ops::AddAssign for Money {
    fn add_assign(&mut self, rhs: Self) {
        self.0 += rhs.0;
    }
}

impl core::ops::Sub for Money {
    type Output = Self;
    fn sub(self, rhs: Self) -> Self {
        Self(self.0 - rhs.0)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.2}", self.0)
    }
}

/// A value refused by one of the `f64` units of this module: not finite, or outside its range.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("{quantity}: {value} is not a finite number in {min}..={max}")]
pub struct RangeError {
    /// Which quantity (e.g. "fraction").
    pub quantity: &'static str,
    /// The rejected raw value.
    pub value: f64,
    /// Lowest accepted value.
    pub min: f64,
    /// Highest accepted value.
    pub max: f64,
}

macro_rules! f64_unit {
    ($(#[$doc:meta])* $name:ident, $quantity:literal, $symbol:literal, $min:expr, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "f64", into = "f64")]
        pub struct $name(f64);

        impl $name {
            /// Zero.
            pub const ZERO: Self = Self(0.0);
            /// Lowest value accepted.
            pub const MIN: Self = Self($min);
            /// Highest value accepted.
            pub const MAX: Self = Self($max);

            /// A value from outside: finite and inside the range, else refused naming the value.
            ///
            /// # Errors
            /// [`RangeError`] with the quantity, the value and the range.
            pub fn try_new(value: f64) -> Result<Self, RangeError> {
                Self::checked(value).ok_or(RangeError { quantity: $quantity, value, min: $min, max: $max })
            }

            /// The value if it is finite and in range, else `None`; usable in `const` items.
            #[must_use]
            pub const fn checked(value: f64) -> Option<Self> {
                if value.is_finite() && value >= $min && value <= $max {
                    Some(Self(value))
                } else {
                    None
                }
            }

            /// A value computed from valid ones, saturated into the range (non-finite gives
            /// zero). Never for a value from outside: use [`Self::try_new`].
            #[must_use]
            pub fn saturating(value: f64) -> Self {
                if value.is_finite() {
                    Self(value.clamp($min, $max))
                } else {
                    Self(0.0)
                }
            }

            /// The raw number.
            #[must_use]
            pub const fn get(self) -> f64 {
                self.0
            }

            /// The smaller of two values.
            #[must_use]
            pub fn min(self, other: Self) -> Self {
                if other.0 < self.0 { other } else { self }
            }

            /// The larger of two values.
            #[must_use]
            pub fn max(self, other: Self) -> Self {
                if other.0 > self.0 { other } else { self }
            }
        }

        impl TryFrom<f64> for $name {
            type Error = RangeError;
            fn try_from(value: f64) -> Result<Self, RangeError> {
                Self::try_new(value)
            }
        }

        impl From<$name> for f64 {
            fn from(v: $name) -> Self {
                v.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match f.precision() {
                    Some(p) => write!(f, "{:.*}{}", p, self.0, $symbol),
                    None => write!(f, "{}{}", self.0, $symbol),
                }
            }
        }
    };
}

f64_unit!(
    /// A fraction `0..=1`: an efficiency, a state of charge, a smoothing factor. `f64` rather than
    /// [`ems_core::Percent`] because the planner computes in `f64` and its exactness test compares
    /// with an independent solver to 1e-9.
    Ratio, "fraction", "", 0.0, 1.0
);
f64_unit!(
    /// A dimensionless factor `≥ 0` that may exceed 1 (e.g. measured over clear-sky PV yield,
    /// which cloud-edge enhancement lifts above 1). Bounded at 1e6 so that products stay finite.
    Factor, "factor", "", 0.0, 1.0e6
);
f64_unit!(
    /// Energy in kWh, for sums over days, months and years. Why not [`ems_core::WattHours`]:
    /// that is an `f32` (24-bit mantissa), which resolves only 0.5 Wh at 5 MWh (a household's
    /// year) and 64 Wh at 1 GWh (a commercial site's year), and the rounding of 35 040
    /// quarter-hour additions per year adds up to kWh; an `f64` keeps a year of a 100 MW site
    /// exact to far below a Wh. Range ±1e12 kWh. Serializes as the plain number of kWh.
    KilowattHours, "energy", " kWh", -1.0e12, 1.0e12
);
f64_unit!(
    /// An angle in degrees, `−360..=360` (sun zenith and azimuth).
    Degrees, "angle", "°", -360.0, 360.0
);
f64_unit!(
    /// Irradiance in W/m², `0..=10 000` (sunlight at the top of the atmosphere is about 1361).
    WattsPerSquareMetre, "irradiance", " W/m²", 0.0, 10_000.0
);

impl Ratio {
    /// One (100 %).
    pub const ONE: Self = Self(1.0);
}

impl KilowattHours {
    /// From watt-hours computed in `f64` (saturating).
    #[must_use]
    pub fn from_wh(wh: f64) -> Self {
        Self::saturating(wh / 1000.0)
    }
}

impl core::ops::Add for KilowattHours {
    type Output = Self;
    fn add(self, rhs: Self) -> Self {
        Self::saturating(self.0 + rhs.0)
    }
}

impl core::ops::AddAssign for KilowattHours {
    fn add_assign(&mut self, rhs: Self) {
        *self = *self + rhs;
    }
}

/// A [`Ratio`] literal, checked when the program is compiled: `ratio!(0.95)`; a value outside
/// `0..=1` is a build error.
#[macro_export]
macro_rules! ratio {
    ($value:expr) => {{
        // Evaluated by the compiler: this panic is a build error, never a run-time one.
        #[allow(clippy::panic)]
        const VALUE: $crate::units::Ratio = match $crate::units::Ratio::checked($value) {
            Some(v) => v,
            None => panic!("ratio literal outside 0..=1"),
        };
        VALUE
    }};
}

/// A [`Factor`] literal, checked when the program is compiled: `factor!(1.2)`.
#[macro_export]
macro_rules! factor {
    ($value:expr) => {{
        // Evaluated by the compiler: this panic is a build error, never a run-time one.
        #[allow(clippy::panic)]
        const VALUE: $crate::units::Factor = match $crate::units::Factor::checked($value) {
            Some(v) => v,
            None => panic!("factor literal outside 0..=1e6"),
        };
        VALUE
    }};
}

/// Power computed in `f64` (sums, averages) as the `f32` core unit, saturated into its range.
#[must_use]
pub(crate) fn watts_from_f64(w: f64) -> Watts {
    // f64 → f32 of a power: f32 keeps 7 significant digits, far finer than any meter, and an
    // out-of-range or non-finite value saturates in `Watts::saturating`.
    #[allow(clippy::cast_possible_truncation)]
    Watts::saturating(w as f32)
}

/// Serializes a power as kW (for output fields named `…_kw`).
pub(crate) fn serialize_kw<S: serde::Serializer>(w: &Watts, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(f64::from(w.get()) / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Row {
        #[allow(dead_code)] // only deserialized
        price: Price,
    }

    #[test]
    fn a_non_finite_price_in_a_file_is_refused_naming_the_value() {
        for (text, shown) in [("price = nan", "NaN"), ("price = inf", "inf"), ("price = -inf", "-inf")] {
            let err = toml::from_str::<Row>(text).unwrap_err().to_string();
            assert!(err.contains(&format!("'price' = {shown} is not a finite price")), "{err}");
        }
        assert_eq!(toml::from_str::<Row>("price = -0.05").unwrap().price, Price::new(-0.05));
        let err = toml::from_str::<Row>("price = \"cheap\"").unwrap_err().to_string();
        assert!(err.contains("cheap"), "{err}");
    }

    #[test]
    fn ratio_refuses_nan_and_out_of_range_naming_the_value() {
        assert_eq!(Ratio::try_new(0.95).map(Ratio::get), Ok(0.95));
        let e = Ratio::try_new(f64::NAN).unwrap_err();
        assert!(e.value.is_nan());
        assert_eq!(
            Ratio::try_new(1.2).unwrap_err().to_string(),
            "fraction: 1.2 is not a finite number in 0..=1"
        );
        assert_eq!(Ratio::try_new(-0.1).unwrap_err().value, -0.1);
        assert_eq!(Ratio::saturating(f64::NAN), Ratio::ZERO);
        assert_eq!(Ratio::saturating(3.0), Ratio::ONE);
        assert_eq!(crate::ratio!(0.5).get(), 0.5);
    }

    #[test]
    fn a_ratio_in_a_file_is_checked() {
        #[derive(Debug, serde::Deserialize)]
        struct R {
            r: Ratio,
        }
        let err = toml::from_str::<R>("r = 1.5").unwrap_err().to_string();
        assert!(err.contains("fraction: 1.5 is not a finite number in 0..=1"), "{err}");
        assert_eq!(toml::from_str::<R>("r = 0.25").unwrap().r.get(), 0.25);
    }

    #[test]
    fn energy_sums_keep_a_year_of_quarter_hours_exact() {
        // 35 040 quarter-hours of 0.1 kWh: f64 is exact to far below a Wh, f32 is not.
        let mut sum = KilowattHours::ZERO;
        let mut sum_f32 = 0.0_f32;
        for _ in 0..35_040 {
            sum += KilowattHours::try_new(0.1).unwrap();
            sum_f32 += 0.1;
        }
        assert!((sum.get() - 3504.0).abs() < 1e-6);
        assert!((f64::from(sum_f32) - 3504.0).abs() > 0.01);
    }
}
