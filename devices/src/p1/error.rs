//! Errors of the P1 telegram parser and the P1 meter.

use crate::traits::{DeviceError, ErrorKind};

/// A telegram that is not a valid DSMR 4/5 telegram; says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum P1Error {
    /// More bytes than [`super::telegram::MAX_TELEGRAM_LEN`] without a complete telegram.
    #[error("P1 telegram of {len} bytes exceeds the limit of {max} bytes")]
    TooLong {
        /// Bytes seen.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The bytes do not start with `/`.
    #[error("P1 telegram does not start with '/'")]
    NoStart,
    /// No `!` trailer.
    #[error("P1 telegram has no '!' trailer")]
    NoEnd,
    /// A new `/` header arrived before the `!` of the telegram being read (it was cut off).
    #[error("P1 telegram truncated after {len} bytes: a new header started before its '!' trailer")]
    Truncated {
        /// Bytes of the cut-off telegram.
        len: usize,
    },
    /// `!` without a CRC (DSMR 2.2/3 meters send none; they are not supported: without a CRC
    /// a corrupted byte would be taken for a reading).
    #[error("P1 telegram has no CRC after '!' (DSMR 2.2/3 telegrams without CRC are not accepted)")]
    MissingCrc,
    /// The CRC field is not four hex digits.
    #[error("P1 telegram CRC field '{text}' is not four hex digits")]
    BadCrcField {
        /// What came after `!` (at most 16 bytes).
        text: String,
    },
    /// The CRC does not match the content.
    #[error("P1 telegram CRC mismatch: telegram says {expected:04X}, content gives {computed:04X}")]
    CrcMismatch {
        /// The CRC carried by the telegram.
        expected: u16,
        /// The CRC computed over `/`..=`!`.
        computed: u16,
    },
    /// A byte outside ASCII in the (CRC-valid) text.
    #[error("P1 telegram contains bytes that are not ASCII")]
    NotAscii,
    /// The header line is empty, too short or holds control characters.
    #[error("P1 telegram header '/{header}' is not a meter identification")]
    BadHeader {
        /// The header without `/`.
        header: String,
    },
    /// A line that is no COSEM object, or a known object with a bad value.
    #[error("P1 telegram line {line_no} '{line}': {reason}")]
    BadLine {
        /// 1-based line number in the telegram (the header is line 1).
        line_no: usize,
        /// The line (at most 120 characters).
        line: String,
        /// What is wrong.
        reason: String,
    },
}

/// Why [`super::meter::P1Meter`] has no reading to give.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum P1MeterError {
    /// No valid telegram within the maximum age (link down, meter silent, or every telegram
    /// corrupt): the grid power is unknown, never 0 W.
    #[error("P1 meter at {endpoint}: no valid telegram for {age_ms} ms (max age {max_age_ms} ms){}", last_error.as_ref().map(|e| format!("; last problem: {e}")).unwrap_or_default())]
    Stale {
        /// The meter's endpoint.
        endpoint: String,
        /// Milliseconds since the last valid telegram (since start if there was none).
        age_ms: u64,
        /// The configured maximum age.
        max_age_ms: u64,
        /// The last connection or telegram problem, if any.
        last_error: Option<String>,
    },
    /// A valid telegram that cannot be a grid-meter reading (no total power or no voltage).
    #[error("P1 meter at {endpoint}: {reason}")]
    Unusable {
        /// The meter's endpoint.
        endpoint: String,
        /// What is missing.
        reason: String,
    },
}

impl DeviceError for P1MeterError {
    fn kind(&self) -> ErrorKind {
        match self {
            // No information arrived: the last good value ages out through its maximum age.
            Self::Stale { .. } => ErrorKind::Timeout,
            Self::Unusable { .. } => ErrorKind::Decode,
        }
    }
}
