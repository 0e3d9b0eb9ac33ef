//! `ems-safety`: safety monitoring. Limit monitor, trend analyzer, interlock manager and
//! the safety envelope.
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![forbid(unsafe_code)]

pub mod envelope;

pub use envelope::Envelope;
