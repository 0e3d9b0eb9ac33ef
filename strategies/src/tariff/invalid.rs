//! The error for a single refused tariff value, shared by the tariff types, the time-of-use
//! schedules and the file format.

use std::fmt;

/// A value that does not make a valid tariff: which field (dotted path as in the TOML file),
/// the value given and why it was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field '{field}' = {value}: {reason}")]
pub struct InvalidField {
    /// Dotted path of the field, e.g. `import.weekday.slots[1].to`.
    pub field: String,
    /// The value as given.
    pub value: String,
    /// Why it was refused.
    pub reason: String,
}

impl InvalidField {
    /// A refused value.
    #[must_use]
    pub fn new(field: impl Into<String>, value: impl fmt::Display, reason: impl Into<String>) -> Self {
        Self { field: field.into(), value: value.to_string(), reason: reason.into() }
    }

    /// The same error with `prefix.` in front of the field path.
    #[must_use]
    pub fn within(mut self, prefix: &str) -> Self {
        self.field = match (prefix.is_empty(), self.field.is_empty()) {
            (true, _) => self.field,
            (false, true) => prefix.to_owned(),
            (false, false) if self.field.starts_with('[') => format!("{prefix}{}", self.field),
            (false, false) => format!("{prefix}.{}", self.field),
        };
        self
    }
}
