//! Safety wrappers around the device traits (issue #3): no device is left in a changed state,
//! no command is silently not applied, and the EMS never fights another controller.
//!
//! * [`rate`]: [`rate::RateLimiter`], a minimum interval plus a budget of actions per rolling
//!   window (allocation-free ring of timestamps).
//! * [`bms`]: [`bms::SafeBms`] — plausibility (pack vs cells, min ≤ max), SOC-jump and
//!   stuck-sensor rejection, comm-loss fallback to zero allowed power, rate-limited alarm reset.
//! * [`inverter`]: [`inverter::SafeInverter`] — clamp to rating and envelope, ramp, deadband,
//!   flash write budget, read-back verification ([`ems_core::TripReason::SetpointNotApplied`]) and
//!   the control lease (take, renew, detect a revert, release with the previous settings
//!   restored).
//! * [`contactor`]: the typestate [`contactor::Contactor`] and the per-cycle
//!   [`contactor::ContactorSequencer`] (pre-charge, close, verify, open, weld detection).
//! * [`events`]: [`events::DeviceEvents`], the bounded buffer of operator-language
//!   [`events::DeviceEvent`]s every wrapper reports into.

pub mod bms;
pub mod contactor;
pub mod events;
pub mod inverter;
pub mod rate;

pub use events::{Device, DeviceEvent, DeviceEvents, TimedDeviceEvent, DEVICE_EVENT_CAPACITY};
pub use rate::{RateLimited, RateLimiter};

use crate::traits::{DeviceError, ErrorKind};

/// A wrapper configuration value that is not acceptable, naming the field and the value.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("field '{field}' = {value}: {requirement}")]
pub struct ConfigError {
    /// The field, as spelled in the config struct (`"cells_in_series"`).
    pub field: &'static str,
    /// The rejected value in the field's base unit (ms for durations).
    pub value: f64,
    /// What the field must satisfy.
    pub requirement: &'static str,
}

impl ConfigError {
    pub(crate) const fn new(field: &'static str, value: f64, requirement: &'static str) -> Self {
        Self { field, value, requirement }
    }
}

/// Why a wrapper operation (alarm reset, taking or releasing control) did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WrapperError {
    /// The device failed to answer, or answered with something other than a refusal (mapped
    /// onto the shared vocabulary).
    #[error("device error: {0}")]
    Device(ErrorKind),
    /// The device refused ([`ErrorKind::Refused`]), with its exception code if it gave one.
    #[error("refused by device{}", .0.map(|c| format!(": exception 0x{c:02X}")).unwrap_or_default())]
    Refused(Option<u8>),
    /// The action is rate-limited.
    #[error(transparent)]
    RateLimited(#[from] RateLimited),
    /// Nothing to do that: e.g. release without settings remembered from `take_control`.
    #[error("not in control of the device")]
    NotInControl,
}

impl WrapperError {
    /// A device's error: [`Self::Refused`] with the exception code for a refusal, else
    /// [`Self::Device`] with the kind.
    pub fn device<E: DeviceError>(e: &E) -> Self {
        match e.kind() {
            ErrorKind::Refused => Self::Refused(e.exception_code()),
            kind @ (ErrorKind::Timeout | ErrorKind::Comm | ErrorKind::Decode | ErrorKind::OutOfRange) => {
                Self::Device(kind)
            }
        }
    }

    /// The event a failed write of `device` is reported with, if this error came from the
    /// device (not from a rate limit or a missing lease).
    #[must_use]
    pub const fn write_event(&self, device: Device) -> Option<DeviceEvent> {
        match *self {
            Self::Device(kind) => Some(DeviceEvent::WriteFailed { device, kind }),
            Self::Refused(exception) => Some(DeviceEvent::WriteRefused { device, exception }),
            Self::RateLimited(_) | Self::NotInControl => None,
        }
    }
}

pub(crate) fn check_positive_ms(field: &'static str, v: ems_core::Millis) -> Result<(), ConfigError> {
    if v.get() == 0 {
        return Err(ConfigError::new(field, 0.0, "must be > 0 ms"));
    }
    Ok(())
}

pub(crate) fn ms_f64(v: ems_core::Millis) -> f64 {
    // u64 → f64 is exact below 2^53 ms (285 000 years); only used in error messages.
    #[allow(clippy::cast_precision_loss)]
    let x = v.get() as f64;
    x
}
