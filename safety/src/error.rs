//! Configuration errors: each names the offending field and value.

/// A safety configuration that must not be used.
///
/// `field` is a dotted path into [`crate::SafetyConfig`] (for example
/// `limits.cell_temp_high.alarm` or `derating.charge_vs_temperature[2]`), so an operator can
/// find the line in the site configuration. Values are the raw numbers in the field's unit.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// NaN or ±infinity.
    #[error("{field}: {value} is not a finite number")]
    NotFinite {
        /// The field.
        field: &'static str,
        /// The rejected value.
        value: f32,
    },
    /// A value outside what the field accepts.
    #[error("{field}: {value} is out of range ({expected})")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// The rejected value.
        value: f32,
        /// What is accepted, in words.
        expected: &'static str,
    },
    /// Derating curve points must be strictly increasing in x.
    #[error("{field}[{index}]: x = {value} is not strictly greater than the previous point ({previous})")]
    NotIncreasing {
        /// The curve.
        field: &'static str,
        /// Index of the offending point.
        index: usize,
        /// Its x value.
        value: f32,
        /// The previous point's x value.
        previous: f32,
    },
    /// Warn, alarm and trip levels are not ordered in the limit's direction.
    #[error("{field}: {value} is out of order (warn → alarm → trip must move away from normal)")]
    LevelOrder {
        /// The level that breaks the order (e.g. `limits.soc_low.alarm`).
        field: &'static str,
        /// Its value.
        value: f32,
    },
}
