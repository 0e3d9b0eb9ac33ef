//! The error of a rule set or one of its values.

use std::fmt;

/// A rule set (or one of its values) that cannot be used: the path (`rules[2].when.from`), the
/// value as given and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RuleError {
    /// The path of the offending field (`country`, `rules[0].action.maxChargePower`); empty for
    /// an error about the whole text (a syntax error).
    pub path: String,
    /// The value as given (JSON notation: strings are quoted); empty when there is none.
    pub value: String,
    /// What is wrong.
    pub message: String,
}

impl RuleError {
    /// An error at `path` about `value`.
    pub fn new(path: impl Into<String>, value: impl fmt::Display, message: impl Into<String>) -> Self {
        Self { path: path.into(), value: value.to_string(), message: message.into() }
    }
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.path.is_empty(), self.value.is_empty()) {
            (true, _) => f.write_str(&self.message),
            (false, true) => write!(f, "{}: {}", self.path, self.message),
            (false, false) => write!(f, "{} = {}: {}", self.path, self.value, self.message),
        }
    }
}
