//! Money units of the economics layer. Power and energy use the `ems-core` newtypes; prices and
//! amounts of money live here because nothing below this layer knows about money.

use core::fmt;

/// A price in currency per kWh (the currency is the site's, e.g. EUR). May be negative: day-ahead
/// spot prices are, at times.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
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

impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.4}/kWh", self.0)
    }
}

/// An amount of money in the site's currency (costs `+`, revenues `−`).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
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
