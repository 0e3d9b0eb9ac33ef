//! The unit newtypes a limit or a derating curve can be expressed in.

use ems_core::event::Value;
use ems_core::{Amps, Celsius, Percent, Volts, Watts};

pub(crate) mod sealed {
    use ems_core::event::Value;

    /// Raw access for this crate's arithmetic; not part of the public API.
    pub trait Sealed: Copy + PartialOrd + core::fmt::Debug {
        fn raw(self) -> f32;
        fn from_raw(x: f32) -> Self;
        fn to_value(self) -> Value;
    }
}

/// A unit newtype from `ems-core` usable as a limit threshold or a derating-curve axis:
/// [`Volts`], [`Celsius`], [`Amps`], [`Percent`] and [`Watts`]. Sealed.
pub trait Scalar: sealed::Sealed {}

macro_rules! scalar {
    ($t:ty, $variant:ident) => {
        impl sealed::Sealed for $t {
            fn raw(self) -> f32 {
                self.get()
            }
            fn from_raw(x: f32) -> Self {
                <$t>::saturating(x)
            }
            fn to_value(self) -> Value {
                Value::$variant(self)
            }
        }
        impl Scalar for $t {}
    };
}

scalar!(Volts, Voltage);
scalar!(Celsius, Temperature);
scalar!(Amps, Current);
scalar!(Percent, Percent);
scalar!(Watts, Power);
