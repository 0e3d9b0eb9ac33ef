//! SunSpec: model definitions, decoding, discovery, the installer's scan, a register-image
//! builder for simulated devices, and typed drivers.
//!
//! * [`model`]: the official model definitions (pysunspec2 1.3.7 JSON, embedded), parsed once.
//! * [`decode`]: a register block → typed point values ([`decode::decode_model`]), with
//!   [`decode::DecodeError`] and the fuzz entry point [`decode::fuzz_entry`].
//! * [`discovery`]: the `SunS` marker at 40000 / 0 / 50000, the model chain ([`discover`]) and
//!   [`scan`] for `ems-gateway scan`.
//! * [`image`]: [`SunSpecImage`], which lays models out from the definitions into a
//!   [`crate::modbus::MemoryRegisters`] (the server side of tests and simulated devices).
//! * [`inverter`] / [`battery`]: [`SunSpecInverter`] (`traits::Inverter`) and
//!   [`SunSpecBattery`] (`traits::Bms`) over any [`crate::modbus::RegisterClient`].
//!
//! # Errors
//!
//! [`SunSpecError`] keeps the two levels of Modbus failure apart: [`SunSpecError::Link`] (the
//! link failed: [`ErrorKind::Timeout`] for a timeout, [`ErrorKind::Comm`] otherwise) and
//! [`SunSpecError::Exception`] (the device refused: [`ErrorKind::Refused`]). A block that does
//! not decode is [`ErrorKind::Decode`], as is a corrupt model chain. A model or point the device
//! does not have is [`ErrorKind::Refused`] (the device cannot do what is asked: a capability or
//! configuration problem that retrying will not fix); a value the device cannot represent (a
//! charge set-point for an export-limit-only inverter, a set-point beyond the register range) is
//! [`ErrorKind::OutOfRange`], and so is a value *read* that is not a valid quantity
//! ([`SunSpecError::Invalid`]: every register value enters through the unit's `try_new`, never a
//! clamp, so a SOC of 250 % is an error naming model, point and value, not 100 %).

pub mod battery;
pub mod decode;
pub mod discovery;
pub mod image;
pub mod inverter;
pub mod model;

pub use battery::SunSpecBattery;
#[cfg(feature = "_fuzz")]
pub use decode::fuzz_entry;
pub use decode::{decode_model, DecodeError, DecodedModel, PointValue};
pub use discovery::{discover, scan, ModelInfo, ScanResult, ScannedModel, SunSpecMap};
pub use image::SunSpecImage;
pub use inverter::SunSpecInverter;

use crate::modbus::{LinkError, ModbusException, RegisterAddress};
use crate::traits::{DeviceError, ErrorKind};
use discovery::BaseProbe;
use ems_core::units::UnitError;

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

/// Drive a future that never waits (e.g. one over [`crate::modbus::MemoryRegisters`]) to
/// completion without an executor; `None` if it is still pending after many polls.
#[cfg(feature = "_fuzz")]
pub(crate) fn block_on_ready<F: core::future::Future>(f: F) -> Option<F::Output> {
    use std::task::{Context, Poll, Wake, Waker};
    struct Noop;
    impl Wake for Noop {
        fn wake(self: std::sync::Arc<Self>) {}
    }
    let waker = Waker::from(std::sync::Arc::new(Noop));
    let mut cx = Context::from_waker(&waker);
    let mut f = core::pin::pin!(f);
    for _ in 0..1024 {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return Some(v);
        }
    }
    None
}
