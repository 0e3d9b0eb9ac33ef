//! What can go wrong when prices are fetched, parsed or configured.

use super::point::PointError;
use super::SourceKind;

/// A price source could not deliver prices. Every variant names the source kind and where it
/// looked (the URL without any token, or the file path), so an operator can act on it.
///
/// (Not to be confused with [`crate::PriceError`], a single non-finite price value.)
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PriceError {
    /// The server answered with an HTTP status other than 200.
    #[error("{kind} source {origin}: HTTP status {status}{}", detail_suffix(detail))]
    Status {
        /// Which kind of source.
        kind: SourceKind,
        /// The URL (without the token).
        origin: String,
        /// The status code.
        status: u16,
        /// The start of the answer's body, if any (servers often say why there).
        detail: String,
    },
    /// Connecting or reading took longer than the configured timeout.
    #[error("{kind} source {origin}: timed out: {cause}")]
    Timeout {
        /// Which kind of source.
        kind: SourceKind,
        /// The URL (without the token).
        origin: String,
        /// What timed out.
        cause: String,
    },
    /// The request failed below HTTP: connection refused, host not found, TLS, a broken answer.
    #[error("{kind} source {origin}: request failed: {cause}")]
    Transport {
        /// Which kind of source.
        kind: SourceKind,
        /// The URL (without the token).
        origin: String,
        /// The cause as reported by the client.
        cause: String,
    },
    /// A file could not be read.
    #[error("{kind} source {origin}: cannot read: {cause}")]
    Read {
        /// Which kind of source.
        kind: SourceKind,
        /// The file path.
        origin: String,
        /// The cause as reported by the operating system.
        cause: String,
    },
    /// The answer or file arrived but does not hold valid prices.
    #[error("{kind} source {origin}: {error}")]
    Decode {
        /// Which kind of source.
        kind: SourceKind,
        /// The URL (without the token) or file path.
        origin: String,
        /// What is wrong with it.
        error: ParseError,
    },
    /// Points handed in from outside (a push) were refused.
    #[error("{kind} source: {error}")]
    Invalid {
        /// Which kind of source.
        kind: SourceKind,
        /// The rule broken.
        error: PointError,
    },
}

impl PriceError {
    /// The kind of source that failed.
    #[must_use]
    pub fn kind(&self) -> SourceKind {
        match self {
            Self::Status { kind, .. }
            | Self::Timeout { kind, .. }
            | Self::Transport { kind, .. }
            | Self::Read { kind, .. }
            | Self::Decode { kind, .. }
            | Self::Invalid { kind, .. } => *kind,
        }
    }
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(" ({detail})")
    }
}

/// A price answer or file is malformed (the parsers of [`super::parse_awattar`],
/// [`super::parse_entsoe`] and [`super::parse_price_csv`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    /// Not well-formed JSON/XML, or not the expected document shape.
    #[error("malformed answer: {cause}")]
    Syntax {
        /// The parser's message.
        cause: String,
    },
    /// A field of a JSON/XML answer has a value that cannot be used.
    #[error("{field} = '{value}': {problem}")]
    Value {
        /// Which field (element or key name).
        field: String,
        /// The value as found.
        value: String,
        /// Why it was refused.
        problem: String,
    },
    /// A CSV cell is wrong: 1-based line and column (column 0 = the whole line).
    #[error("line {line}, column {column}: '{value}': {problem}")]
    Csv {
        /// 1-based line number (the header is line 1).
        line: usize,
        /// 1-based column.
        column: usize,
        /// The cell (or line) as found.
        value: String,
        /// Why it was refused.
        problem: String,
    },
    /// The points read break a rule of [`super::validate_points`].
    #[error("{0}")]
    Points(PointError),
    /// ENTSO-E answered with an `Acknowledgement_MarketDocument` (no data, bad token, bad
    /// query) instead of prices.
    #[error("ENTSO-E acknowledgement instead of prices: {reason}")]
    Acknowledgement {
        /// The `Reason/text` (several joined by "; ").
        reason: String,
    },
    /// A well-formed answer that holds no prices at all.
    #[error("the answer holds no prices")]
    NoData,
}

/// A `[[economics.prices]]` entry of the site configuration is invalid. Displays as the TOML
/// path, e.g. `economics.prices[0].zone: missing for kind = "entsoe"`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("economics.prices[{}].{field}: {problem}", entry_label(*entry))]
pub struct ConfigError {
    /// Index of the entry in the list, when known (set by [`super::PriceFeed::from_configs`]
    /// or [`ConfigError::at`]).
    pub entry: Option<usize>,
    /// The field at fault.
    pub field: &'static str,
    /// What is wrong, with the value.
    pub problem: String,
}

impl ConfigError {
    pub(crate) fn new(field: &'static str, problem: impl Into<String>) -> Self {
        Self { entry: None, field, problem: problem.into() }
    }

    /// The same error, naming entry `index` of the list.
    #[must_use]
    pub fn at(mut self, index: usize) -> Self {
        self.entry = Some(index);
        self
    }
}

fn entry_label(entry: Option<usize>) -> String {
    entry.map_or_else(|| "?".to_owned(), |i| i.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_error_reads_as_a_toml_path() {
        let e = ConfigError::new("zone", "missing for kind = \"entsoe\"").at(0);
        assert_eq!(e.to_string(), "economics.prices[0].zone: missing for kind = \"entsoe\"");
        let e = ConfigError::new("path", "missing");
        assert_eq!(e.to_string(), "economics.prices[?].path: missing");
    }

    #[test]
    fn status_error_names_kind_url_and_detail() {
        let e = PriceError::Status {
            kind: SourceKind::Awattar,
            origin: "http://x/v1/marketdata".into(),
            status: 500,
            detail: "oops".into(),
        };
        assert_eq!(e.to_string(), "awattar source http://x/v1/marketdata: HTTP status 500 (oops)");
        assert_eq!(e.kind(), SourceKind::Awattar);
    }
}
