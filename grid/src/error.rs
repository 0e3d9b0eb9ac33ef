//! The one error of this crate: a parameter refused at construction, naming the field and the
//! bad value (a leaf module: every other module may use it, it uses none of them).

use core::fmt;
use ems_core::{Hertz, Millis, Percent, WattHours, Watts};

/// A refused value, in its unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ParamValue {
    /// A frequency or a frequency deviation.
    Hertz(Hertz),
    /// A percentage (a share of the capacity, a droop, a rate in % of the capacity per second).
    Percent(Percent),
    /// A duration.
    Millis(Millis),
    /// A power.
    Watts(Watts),
    /// An energy.
    WattHours(WattHours),
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Hertz(v) => write!(f, "{v:.3}"),
            Self::Percent(v) => write!(f, "{v:.2}"),
            Self::Millis(v) => write!(f, "{v}"),
            Self::Watts(v) => write!(f, "{v:.0}"),
            Self::WattHours(v) => write!(f, "{v:.0}"),
        }
    }
}

/// A parameter set or service configuration that cannot be used: which set, which field, the
/// value and the rule it breaks (`"FCR 2025 v1.1: field 'nem_offset' = 134.00 % must be <= 100 %"`).
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("{set}: field '{field}' = {value} {rule}")]
pub struct ParamError {
    /// The parameter set or service (`"FCR 2025 v1.1"`, `"FFR"`, `"LFSM-O"`).
    pub set: &'static str,
    /// The field name as written in the struct.
    pub field: &'static str,
    /// The refused value.
    pub value: ParamValue,
    /// The rule it breaks, in words (`"must be > 0"`).
    pub rule: &'static str,
}

impl ParamError {
    /// An error for `field` of `set`.
    #[must_use]
    pub const fn new(set: &'static str, field: &'static str, value: ParamValue, rule: &'static str) -> Self {
        Self { set, field, value, rule }
    }
}
