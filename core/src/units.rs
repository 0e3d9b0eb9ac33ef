//! Physical units as newtypes.
//!
//! Every quantity is an `f32` inside a newtype. Values enter through [`Watts::try_new`] (and the
//! same constructor on each unit), which rejects NaN, ±infinity and values outside the physical
//! range of the quantity, so no invalid number crosses a public API. Arithmetic between valid
//! values stays finite at any physically meaningful magnitude; scaling by a factor that would make
//! the result non-finite yields zero (documented on [`Watts::scale`]) rather than poisoning a
//! control loop with NaN.

use core::fmt;
use core::ops::{Add, AddAssign, Neg, Sub, SubAssign};

/// A value refused at the boundary, with the quantity it was meant to be.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum UnitError {
    /// NaN or ±infinity.
    #[error("{quantity}: {value} is not a finite number")]
    NotFinite {
        /// Which quantity (e.g. "power").
        quantity: &'static str,
        /// The rejected raw value.
        value: f32,
    },
    /// Finite, but outside what the quantity can physically be.
    #[error("{quantity}: {value} {unit} is outside the physical range {min}..={max}")]
    OutOfRange {
        /// Which quantity.
        quantity: &'static str,
        /// The rejected raw value.
        value: f32,
        /// The unit symbol.
        unit: &'static str,
        /// Lowest accepted value.
        min: f32,
        /// Highest accepted value.
        max: f32,
    },
}

macro_rules! unit {
    ($(#[$doc:meta])* $name:ident, $quantity:literal, $symbol:literal, $min:expr, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
        pub struct $name(f32);

        impl $name {
            /// Zero.
            pub const ZERO: Self = Self(0.0);
            /// Lowest value this quantity accepts.
            pub const MIN: Self = Self($min);
            /// Highest value this quantity accepts.
            pub const MAX: Self = Self($max);
            /// Unit symbol used by `Display`.
            pub const SYMBOL: &'static str = $symbol;

            /// Validate a raw value: finite and inside the physical range.
            ///
            /// # Errors
            /// [`UnitError`] naming the quantity and the value when it is not finite or outside the physical range.
            pub fn try_new(value: f32) -> Result<Self, UnitError> {
                if !value.is_finite() {
                    return Err(UnitError::NotFinite { quantity: $quantity, value });
                }
                if !($min..=$max).contains(&value) {
                    return Err(UnitError::OutOfRange {
                        quantity: $quantity,
                        value,
                        unit: $symbol,
                        min: $min,
                        max: $max,
                    });
                }
                Ok(Self(value))
            }

            /// A number derived from already valid values (arithmetic inside the control core),
            /// saturated into the physical range: a non-finite input gives zero and an
            /// out-of-range input is clamped to the nearest bound. Never use it on a value that
            /// comes from outside (a register, a config file, an API call): a clamp there hides a
            /// broken sensor; use [`Self::try_new`], which names the value it refuses. Literals
            /// use the checked-at-compile-time macros ([`crate::watts!`] and its siblings).
            #[must_use]
            pub const fn saturating(value: f32) -> Self {
                if !value.is_finite() {
                    Self(0.0)
                } else if value < $min {
                    Self($min)
                } else if value > $max {
                    Self($max)
                } else {
                    Self(value)
                }
            }

            /// The value if it is finite and inside the physical range, else `None`; usable in
            /// `const` items (the literal macros are built on it).
            #[must_use]
            pub const fn checked(value: f32) -> Option<Self> {
                if value.is_finite() && value >= $min && value <= $max {
                    Some(Self(value))
                } else {
                    None
                }
            }

            /// The raw number in the base unit.
            #[must_use]
            pub const fn get(self) -> f32 {
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

            /// Clamp into `lo..=hi` (if `lo > hi`, `lo` wins: the result is never above `lo`
            /// when the bounds are inverted, which is the conservative choice for limits).
            #[must_use]
            pub fn clamp(self, lo: Self, hi: Self) -> Self {
                self.min(hi).max(lo)
            }

            /// Absolute value.
            #[must_use]
            pub fn abs(self) -> Self {
                Self::saturating(if self.0 < 0.0 { -self.0 } else { self.0 })
            }

            /// Multiply by a dimensionless factor. A non-finite result gives zero.
            #[must_use]
            pub fn scale(self, factor: f32) -> Self {
                Self::saturating(self.0 * factor)
            }
        }

        impl Add for $name {
            type Output = Self;
            fn add(self, rhs: Self) -> Self {
                Self::saturating(self.0 + rhs.0)
            }
        }

        impl Sub for $name {
            type Output = Self;
            fn sub(self, rhs: Self) -> Self {
                Self::saturating(self.0 - rhs.0)
            }
        }

        impl AddAssign for $name {
            fn add_assign(&mut self, rhs: Self) {
                *self = *self + rhs;
            }
        }

        impl SubAssign for $name {
            fn sub_assign(&mut self, rhs: Self) {
                *self = *self - rhs;
            }
        }

        impl Neg for $name {
            type Output = Self;
            fn neg(self) -> Self {
                Self::saturating(-self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match f.precision() {
                    Some(p) => write!(f, "{:.*} {}", p, self.0, $symbol),
                    None => write!(f, "{:.1} {}", self.0, $symbol),
                }
            }
        }

        impl TryFrom<f32> for $name {
            type Error = UnitError;
            fn try_from(value: f32) -> Result<Self, UnitError> {
                Self::try_new(value)
            }
        }
    };
}

unit!(
    /// Active power in watts. Signs follow design.md §4: battery `+` discharge / `−` charge,
    /// grid `+` import / `−` export, PV `≥ 0`. Physical range ±100 MW.
    Watts, "power", "W", -1.0e8, 1.0e8
);
unit!(
    /// Energy in watt-hours. Physical range ±1 TWh.
    WattHours, "energy", "Wh", -1.0e12, 1.0e12
);
unit!(
    /// Voltage in volts. Accepts 0..=2000 V (cells, packs and low-voltage grids); negative
    /// readings are refused as sensor faults.
    Volts, "voltage", "V", 0.0, 2000.0
);
unit!(
    /// Current in amperes; battery current `+` discharge / `−` charge. Range ±10 kA.
    Amps, "current", "A", -10000.0, 10000.0
);
unit!(
    /// Temperature in degrees Celsius; −273.15 ..= 1000 °C (a thermal runaway is still a
    /// reading, not a parse error).
    Celsius, "temperature", "°C", -273.15, 1000.0
);
unit!(
    /// A percentage 0..=100 (state of charge, derating factor).
    Percent, "percentage", "%", 0.0, 100.0
);
unit!(
    /// Frequency in hertz, 0..=1000.
    Hertz, "frequency", "Hz", 0.0, 1000.0
);

/// The body of the literal macros ([`watts!`] and its siblings): the value is checked when the
/// program is compiled (an out-of-range or non-finite literal is a build error), so no literal
/// is clamped silently and none can fail at run time. Not for direct use.
#[doc(hidden)]
#[macro_export]
macro_rules! __unit_literal {
    ($name:ident, $value:expr) => {{
        // Evaluated by the compiler: this panic is a build error, never a run-time one.
        #[allow(clippy::panic)]
        const VALUE: $crate::units::$name = match $crate::units::$name::checked($value) {
            Some(v) => v,
            None => panic!(concat!("literal out of range for ", stringify!($name))),
        };
        VALUE
    }};
}

/// A [`Watts`] literal, checked at compile time: `watts!(…)` (see [`Watts::checked`]).
#[macro_export]
macro_rules! watts {
    ($value:expr) => {
        $crate::__unit_literal!(Watts, $value)
    };
}

/// A [`WattHours`] literal, checked at compile time: `watt_hours!(…)` (see [`WattHours::checked`]).
#[macro_export]
macro_rules! watt_hours {
    ($value:expr) => {
        $crate::__unit_literal!(WattHours, $value)
    };
}

/// A [`Volts`] literal, checked at compile time: `volts!(…)` (see [`Volts::checked`]).
#[macro_export]
macro_rules! volts {
    ($value:expr) => {
        $crate::__unit_literal!(Volts, $value)
    };
}

/// An [`Amps`] literal, checked at compile time: `amps!(…)` (see [`Amps::checked`]).
#[macro_export]
macro_rules! amps {
    ($value:expr) => {
        $crate::__unit_literal!(Amps, $value)
    };
}

/// A [`Celsius`] literal, checked at compile time: `celsius!(…)` (see [`Celsius::checked`]).
#[macro_export]
macro_rules! celsius {
    ($value:expr) => {
        $crate::__unit_literal!(Celsius, $value)
    };
}

/// A [`Percent`] literal, checked at compile time: `percent!(…)` (see [`Percent::checked`]).
#[macro_export]
macro_rules! percent {
    ($value:expr) => {
        $crate::__unit_literal!(Percent, $value)
    };
}

/// A [`Hertz`] literal, checked at compile time: `hertz!(…)` (see [`Hertz::checked`]).
#[macro_export]
macro_rules! hertz {
    ($value:expr) => {
        $crate::__unit_literal!(Hertz, $value)
    };
}

impl Watts {
    /// Power from kilowatts.
    #[must_use]
    pub const fn from_kw(kw: f32) -> Self {
        Self::saturating(kw * 1000.0)
    }

    /// Energy moved at this power over `dt`.
    #[must_use]
    pub fn energy_over(self, dt: Millis) -> WattHours {
        // u64 milliseconds to f32 hours loses precision only beyond ~2^24 ms steps, far longer
        // than any control or simulation step.
        #[allow(clippy::cast_precision_loss)]
        let hours = dt.get() as f32 / 3_600_000.0;
        WattHours::saturating(self.0 * hours)
    }
}

impl Volts {
    /// Power drawn at this voltage and `current` (same sign as the current).
    #[must_use]
    pub fn times(self, current: Amps) -> Watts {
        Watts::saturating(self.0 * current.get())
    }
}

impl Percent {
    /// The percentage as a fraction 0..=1.
    #[must_use]
    pub fn fraction(self) -> f32 {
        self.0 / 100.0
    }

    /// Fraction 0..=1 to percentage (clamped).
    #[must_use]
    pub fn from_fraction(fraction: f32) -> Self {
        Self::saturating(fraction * 100.0)
    }
}

/// A duration or monotonic timestamp in milliseconds. Integer arithmetic saturates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Millis(u64);

impl Millis {
    /// Zero milliseconds.
    pub const ZERO: Self = Self(0);

    /// From a millisecond count.
    #[must_use]
    pub const fn new(ms: u64) -> Self {
        Self(ms)
    }

    /// From whole seconds (saturating).
    #[must_use]
    pub const fn from_secs(s: u64) -> Self {
        Self(s.saturating_mul(1000))
    }

    /// The millisecond count.
    #[must_use]
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The duration in seconds as `f32` (sub-millisecond precision is not needed here).
    #[must_use]
    pub fn as_secs_f32(self) -> f32 {
        // Exact below 2^24 ms (4.6 h); longer durations lose sub-millisecond precision only.
        #[allow(clippy::cast_precision_loss)]
        let ms = self.0 as f32;
        ms / 1000.0
    }

    /// `self - earlier`, or zero if `earlier` is later (a monotonic clock never goes back, but a
    /// stored timestamp from a device may be ahead of ours).
    #[must_use]
    pub const fn since(self, earlier: Self) -> Self {
        Self(self.0.saturating_sub(earlier.0))
    }

    /// Saturating addition.
    #[must_use]
    pub const fn plus(self, d: Self) -> Self {
        Self(self.0.saturating_add(d.0))
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ms", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_nan_and_infinity_naming_the_quantity() {
        let err = Watts::try_new(f32::NAN).unwrap_err();
        assert!(matches!(err, UnitError::NotFinite { quantity: "power", .. }));
        assert!(Celsius::try_new(f32::INFINITY).is_err());
        assert!(Volts::try_new(f32::NEG_INFINITY).is_err());
    }

    #[test]
    fn rejects_out_of_range_with_bounds_in_message() {
        let err = Percent::try_new(101.0).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("percentage"), "{text}");
        assert!(text.contains("101"), "{text}");
        assert!(Celsius::try_new(-300.0).is_err());
        assert!(Volts::try_new(-1.0).is_err());
    }

    #[test]
    fn new_never_produces_invalid_values() {
        assert_eq!(Watts::saturating(f32::NAN), Watts::ZERO);
        assert_eq!(Percent::saturating(150.0), Percent::MAX);
        assert_eq!(Percent::saturating(-5.0), Percent::ZERO);
    }

    #[test]
    fn arithmetic_and_display() {
        let p = Watts::saturating(1500.0) - Watts::saturating(2000.0);
        assert_eq!(p.get(), -500.0);
        assert_eq!((-p).get(), 500.0);
        assert_eq!(p.abs().get(), 500.0);
        assert_eq!(format!("{}", crate::celsius!(58.24)), "58.2 °C");
        assert_eq!(format!("{:.0}", Watts::saturating(1234.4)), "1234 W");
        let e = Watts::saturating(1000.0).energy_over(Millis::from_secs(3600));
        assert!((e.get() - 1000.0).abs() < 1e-3);
    }

    #[test]
    fn inverted_clamp_is_conservative() {
        let v = Watts::saturating(100.0).clamp(Watts::saturating(50.0), Watts::saturating(10.0));
        assert_eq!(v.get(), 50.0);
    }

    proptest::proptest! {
        #[test]
        fn arithmetic_stays_finite(a in proptest::num::f32::ANY, b in proptest::num::f32::ANY, k in proptest::num::f32::ANY) {
            let x = Watts::saturating(a);
            let y = Watts::saturating(b);
            proptest::prop_assert!((x + y).get().is_finite());
            proptest::prop_assert!((x - y).get().is_finite());
            proptest::prop_assert!(x.scale(k).get().is_finite());
            proptest::prop_assert!(x.clamp(Watts::saturating(-1.0), y).get().is_finite());
        }
    }
}
