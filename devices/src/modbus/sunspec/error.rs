//! [`SunSpecError`], the vocabulary every SunSpec module shares: its own module so the drivers,
//! discovery and the image builder can use it without importing their parent.

use super::decode::DecodeError;
use crate::modbus::{LinkError, ModbusException, RegisterAddress};
use crate::traits::{DeviceError, ErrorKind};
use ems_core::units::UnitError;

/// What happened at one candidate base address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseProbe {
    /// The link failed.
    Link(LinkError),
    /// The device answered with an exception.
    Exception(ModbusException),
    /// Registers that are not the `SunS` marker.
    NoMarker([u16; 2]),
}

impl core::fmt::Display for BaseProbe {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Link(e) => write!(f, "{e}"),
            Self::Exception(e) => write!(f, "{e}"),
            Self::NoMarker([a, b]) => write!(f, "no SunS marker (0x{a:04X} 0x{b:04X})"),
        }
    }
}

/// Everything that can go wrong talking SunSpec.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SunSpecError {
    /// The link failed (no answer).
    #[error("SunSpec read/write at {address}: {source}")]
    Link {
        /// The request's first register.
        address: RegisterAddress,
        /// What failed.
        source: LinkError,
    },
    /// The device answered with an exception.
    #[error("SunSpec request at {address}: {exception}")]
    Exception {
        /// The request's first register.
        address: RegisterAddress,
        /// The exception.
        exception: ModbusException,
    },
    /// A block that does not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// No `SunS` marker at any base address.
    #[error("no SunSpec marker found: {}", describe_attempts(.attempts))]
    NotFound {
        /// What happened at each base address tried.
        attempts: Vec<(RegisterAddress, BaseProbe)>,
    },
    /// The model chain is corrupt.
    #[error("SunSpec model chain at {address}: {reason}")]
    BadChain {
        /// The model header where the problem is.
        address: RegisterAddress,
        /// What is wrong.
        reason: &'static str,
    },
    /// The device has none of the models needed.
    #[error("SunSpec device has no model {wanted}")]
    MissingModel {
        /// What was looked for (e.g. `"701 or 103/102/101"`).
        wanted: String,
    },
    /// A point is absent (not implemented, or beyond the model's length).
    #[error("SunSpec model {model}: point {point} is not implemented")]
    MissingPoint {
        /// Model id.
        model: u16,
        /// Point name.
        point: String,
    },
    /// A value the device cannot take or represent.
    #[error("SunSpec model {model}, point {point}: {value} is out of range ({reason})")]
    OutOfRange {
        /// Model id.
        model: u16,
        /// Point name.
        point: String,
        /// The value.
        value: f64,
        /// Why.
        reason: &'static str,
    },
    /// A value read from the device that is not a valid quantity: non-finite, outside the
    /// unit's physical range, or outside what the point can physically be (a cell above 5 V).
    #[error("SunSpec model {model} point {point}: {source}")]
    Invalid {
        /// Model id.
        model: u16,
        /// Point name.
        point: String,
        /// The value refused, with its unit and the accepted range.
        source: UnitError,
    },
}

/// A point's value read from the device as a unit: through the unit's `try_new`, never
/// clamped (a SOC register of 250 % is an error naming the point, not 100 %).
pub(crate) fn unit_of<U>(
    model: u16,
    point: &str,
    value: f64,
    try_new: fn(f32) -> Result<U, UnitError>,
) -> Result<U, SunSpecError> {
    // f64 → f32 rounds to nearest and overflows to ±inf, which `try_new` refuses.
    #[allow(clippy::cast_possible_truncation)]
    let v = value as f32;
    try_new(v).map_err(|source| SunSpecError::Invalid { model, point: point.to_owned(), source })
}

fn describe_attempts(attempts: &[(RegisterAddress, BaseProbe)]) -> String {
    attempts.iter().map(|(a, p)| format!("at {a}: {p}")).collect::<Vec<_>>().join("; ")
}

impl DeviceError for SunSpecError {
    fn exception_code(&self) -> Option<u8> {
        match self {
            Self::Exception { exception, .. } => Some(exception.code()),
            _ => None,
        }
    }

    fn kind(&self) -> ErrorKind {
        match self {
            Self::Link { source: LinkError::Timeout(_), .. } => ErrorKind::Timeout,
            Self::Link { .. } => ErrorKind::Comm,
            Self::Exception { .. } | Self::MissingModel { .. } | Self::MissingPoint { .. } => {
                ErrorKind::Refused
            }
            Self::Decode(_) | Self::BadChain { .. } => ErrorKind::Decode,
            Self::OutOfRange { .. } | Self::Invalid { .. } => ErrorKind::OutOfRange,
            Self::NotFound { attempts } => {
                // Only a dead link everywhere is a link problem; any answer means "not SunSpec".
                let timeouts =
                    attempts.iter().all(|(_, p)| matches!(p, BaseProbe::Link(LinkError::Timeout(_))));
                let links = attempts.iter().all(|(_, p)| matches!(p, BaseProbe::Link(_)));
                if attempts.is_empty() || !links {
                    ErrorKind::Refused
                } else if timeouts {
                    ErrorKind::Timeout
                } else {
                    ErrorKind::Comm
                }
            }
        }
    }
}
