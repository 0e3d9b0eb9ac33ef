//! P1 smart meters (DSMR 4/5, ESMR 5 as in Belgium's e-MUCS and Luxembourg's Smarty): the
//! telegram parser and the P1 port as a grid [`crate::traits::Meter`].
//!
//! * [`telegram`]: one CRC-checked telegram parsed into typed values ([`telegram::Telegram`]).
//! * [`framer`]: a byte stream cut into telegrams with a bounded buffer (garbage skipped,
//!   truncated and over-long telegrams reported).
//! * [`meter`]: [`meter::P1Meter`] over a TCP P1 dongle or a serial port ([`endpoint`]).
//! * [`crc`] computes the CRC-16/ARC of the trailer.

pub mod crc;
pub mod endpoint;
pub mod error;
pub mod framer;
pub mod meter;
pub mod telegram;

pub use endpoint::{P1Endpoint, P1EndpointError};
pub use error::{P1Error, P1MeterError};
pub use framer::Framer;
pub use meter::{reading_of, P1Meter, P1MeterOptions, P1Stats};
pub use telegram::{parse_telegram, P1Timestamp, PhaseValues, Telegram, MAX_TELEGRAM_LEN};
