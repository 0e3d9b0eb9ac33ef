//! SunSpec: model definitions, decoding, discovery, the installer's scan, a register-image
//! builder for simulated devices, and typed drivers.
//!
//! * [`model`]: the official model definitions (pysunspec2 1.3.7 JSON, embedded), parsed once.
//! * [`decode`]: a register block → typed point values ([`decode::decode_model`]), with
//!   [`decode::DecodeError`]; the fuzz entry point is [`fuzz_entry`] (feature `_fuzz`).
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
mod error;
#[cfg(feature = "_fuzz")]
mod fuzz;
pub mod image;
pub mod inverter;
pub mod model;

pub use battery::SunSpecBattery;
pub use decode::{decode_model, DecodeError, DecodedModel, PointValue};
pub use discovery::{discover, scan, ModelInfo, ScanResult, ScannedModel, SunSpecMap};
pub use error::SunSpecError;
#[cfg(feature = "_fuzz")]
pub use fuzz::fuzz_entry;
pub use image::SunSpecImage;
pub use inverter::SunSpecInverter;
