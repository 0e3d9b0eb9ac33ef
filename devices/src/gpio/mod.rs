//! Relays on digital pins: a coil output and an auxiliary feedback input, through
//! `embedded-hal` 1.0, so the same driver serves a microcontroller and a Linux gateway (feature
//! `linux-gpio`, [`open_linux_relay`]).

#[cfg(feature = "linux-gpio")]
mod linux;
mod relay;

pub use relay::{GpioRelay, GpioRelayError};

#[cfg(feature = "linux-gpio")]
pub use linux::open_linux_relay;

/// A relay on two Linux GPIO lines (what [`open_linux_relay`] returns).
#[cfg(feature = "linux-gpio")]
pub type LinuxRelay = GpioRelay<linux_embedded_hal::CdevPin, linux_embedded_hal::CdevPin>;
