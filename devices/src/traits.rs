//! Device traits shared by real drivers (Modbus, later) and the simulated devices.
//!
//! Following embedded-hal 1.0: every method is fallible; each implementation keeps its own error
//! type and maps it onto the shared [`ErrorKind`] through [`DeviceError::kind`], so a safety
//! wrapper can react (retry a timeout, stop on a refusal) without knowing the driver.
//!
//! The methods are native `async fn` (Rust ≥ 1.75). As in `embedded-hal-async`, the returned
//! futures carry no `Send` bound, so the traits serve single-threaded executors (tokio
//! current-thread, `LocalSet`, embassy) as well as multi-threaded ones for `Send` implementors.

use ems_core::snapshot::{BmsAlarms, InverterState};
use ems_core::{Amps, Celsius, Hertz, Millis, Percent, Volts, Watts};

/// What kind of failure a device error is, whatever the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// No answer in time (the link may be down).
    Timeout,
    /// Transport error (connection lost, CRC, framing).
    Comm,
    /// An answer that cannot be decoded into a valid reading.
    Decode,
    /// The device understood and refused (exception response, wrong state).
    Refused,
    /// A value outside what the device or the quantity accepts.
    OutOfRange,
}

impl core::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Timeout => "timeout",
            Self::Comm => "communication error",
            Self::Decode => "decode error",
            Self::Refused => "refused by device",
            Self::OutOfRange => "value out of range",
        })
    }
}

/// An implementation's error, mapped onto the shared vocabulary.
///
/// The safety wrappers react by kind (docs/SAFETY.md H56): a dead link ([`ErrorKind::Timeout`],
/// [`ErrorKind::Comm`]) brings no new value, so the last good one ages out and goes `Stale`
/// through its maximum age (worst case from then on); an answer that is no usable reading
/// ([`ErrorKind::Refused`], [`ErrorKind::Decode`], [`ErrorKind::OutOfRange`]) marks the
/// device's signals `Invalid` at once; a refused *write* counts toward "set-point not applied"
/// and is reported with the device's exception code ([`Self::exception_code`]).
pub trait DeviceError: core::fmt::Debug {
    /// The kind of this error.
    fn kind(&self) -> ErrorKind;

    /// The device's own refusal code (the Modbus exception code), for a [`ErrorKind::Refused`]
    /// that came as one; `None` otherwise (the default, for drivers without such codes).
    fn exception_code(&self) -> Option<u8> {
        None
    }
}

impl ErrorKind {
    /// A dead link (timeout, transport failure): no answer, so no new information.
    #[must_use]
    pub const fn is_link(self) -> bool {
        match self {
            Self::Timeout | Self::Comm => true,
            Self::Decode | Self::Refused | Self::OutOfRange => false,
        }
    }
}

impl DeviceError for core::convert::Infallible {
    fn kind(&self) -> ErrorKind {
        match *self {}
    }
}

/// One BMS reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BmsReading {
    /// State of charge.
    pub soc: Percent,
    /// Pack voltage.
    pub pack_voltage: Volts,
    /// Pack current, `+` discharge / `−` charge.
    pub pack_current: Amps,
    /// Lowest cell voltage.
    pub cell_voltage_min: Volts,
    /// Highest cell voltage.
    pub cell_voltage_max: Volts,
    /// Lowest cell temperature.
    pub cell_temp_min: Celsius,
    /// Highest cell temperature.
    pub cell_temp_max: Celsius,
    /// Charge power limit (magnitude).
    pub charge_limit: Watts,
    /// Discharge power limit (magnitude).
    pub discharge_limit: Watts,
    /// Alarm flags.
    pub alarms: BmsAlarms,
    /// Ready to be charged/discharged.
    pub ready: bool,
}

/// One inverter reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InverterReading {
    /// AC active power, `+` discharge / `−` charge.
    pub active_power: Watts,
    /// The active-power set-point the device is currently applying (read back from the
    /// device's own register, not remembered by the driver).
    pub setpoint: Watts,
    /// Operating state.
    pub state: InverterState,
    /// Heat-sink temperature.
    pub temperature: Celsius,
    /// Nameplate rating (magnitude).
    pub rated_power: Watts,
    /// DC-link voltage (used by the pre-charge sequence).
    pub dc_link_voltage: Volts,
}

/// Who the inverter takes its set-point from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControlSource {
    /// The inverter's own logic (its local/default behaviour).
    Local,
    /// An external controller (the EMS) writes the set-point.
    Remote,
}

/// The inverter settings the EMS changes when it takes control, so they can be restored when
/// control ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InverterSettings {
    /// Who controls the set-point.
    pub control: ControlSource,
    /// Stored active-power set-point.
    pub setpoint: Watts,
    /// The device's own revert timer: with `Some(t)`, the device falls back to `Local` with a
    /// zero set-point when no set-point was written for `t`. `None` = no timer armed.
    pub revert_timeout: Option<Millis>,
}

/// What an inverter can do beyond the basics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InverterCapabilities {
    /// The device has a revert (communication-loss) timer the EMS can arm.
    pub revert_timer: bool,
    /// The device stores set-points in non-volatile memory (writes must be budgeted).
    pub setpoint_in_flash: bool,
}

/// One grid meter reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeterReading {
    /// Active power, `+` import / `−` export.
    pub active_power: Watts,
    /// Voltage.
    pub voltage: Volts,
    /// Frequency; `None` for a meter that does not measure it (a DSMR P1 meter): the
    /// snapshot's grid frequency is then not updated by the meter and goes stale unless a
    /// frequency source (`[grid_services.frequency]`) supplies it.
    pub frequency: Option<Hertz>,
}

/// One PV inverter reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PvReading {
    /// AC production (≥ 0).
    pub active_power: Watts,
}

// `async fn` in public traits cannot name `Send` on the returned future; we accept that (as
// embedded-hal-async does) so single-threaded executors and non-`Send` transports work.

/// Battery management system.
#[allow(async_fn_in_trait)]
pub trait Bms {
    /// The driver's error.
    type Error: DeviceError;
    /// Read every BMS value.
    async fn read(&mut self) -> Result<BmsReading, Self::Error>;
    /// Ask the BMS to clear latched alarms whose cause is gone (the safety wrapper rate-limits
    /// this command).
    async fn reset_alarms(&mut self) -> Result<(), Self::Error>;
    /// How old the reading returned by the last successful `read` already was when it was
    /// returned. Zero (the default) for a driver that reads the device on every call; a caching
    /// wrapper ([`crate::Polled`]) reports the time since it actually read the device, and the
    /// caller stamps the signals with `now − age`, so a reused value is never made fresh.
    fn reading_age(&self) -> Millis {
        Millis::ZERO
    }
}

/// Battery inverter / PCS.
#[allow(async_fn_in_trait)]
pub trait Inverter {
    /// The driver's error.
    type Error: DeviceError;
    /// What the device supports.
    fn capabilities(&self) -> InverterCapabilities;
    /// Read power, state, temperature, rating, DC link and the applied set-point.
    async fn read(&mut self) -> Result<InverterReading, Self::Error>;
    /// Write the active-power set-point (`+` discharge / `−` charge).
    async fn write_setpoint(&mut self, power: Watts) -> Result<(), Self::Error>;
    /// Read the settings the EMS may change.
    async fn read_settings(&mut self) -> Result<InverterSettings, Self::Error>;
    /// Write settings (take control, arm the revert timer, or restore what was there before).
    async fn write_settings(&mut self, settings: &InverterSettings) -> Result<(), Self::Error>;
}

/// Grid meter at the connection point.
#[allow(async_fn_in_trait)]
pub trait Meter {
    /// The driver's error.
    type Error: DeviceError;
    /// Read power, voltage and frequency.
    async fn read(&mut self) -> Result<MeterReading, Self::Error>;
    /// How old the reading returned by the last successful `read` already was when it was
    /// returned. Zero (the default) for a driver that reads the device on every call; a caching
    /// wrapper ([`crate::Polled`]) reports the time since it actually read the device, and the
    /// caller stamps the signals with `now − age`, so a reused value is never made fresh.
    fn reading_age(&self) -> Millis {
        Millis::ZERO
    }
}

/// PV inverter(s).
#[allow(async_fn_in_trait)]
pub trait PvInverter {
    /// The driver's error.
    type Error: DeviceError;
    /// Read the production.
    async fn read(&mut self) -> Result<PvReading, Self::Error>;
    /// How old the reading returned by the last successful `read` already was when it was
    /// returned. Zero (the default) for a driver that reads the device on every call; a caching
    /// wrapper ([`crate::Polled`]) reports the time since it actually read the device, and the
    /// caller stamps the signals with `now − age`, so a reused value is never made fresh.
    fn reading_age(&self) -> Millis {
        Millis::ZERO
    }
}

/// One relay or contactor coil with an auxiliary feedback contact.
#[allow(async_fn_in_trait)]
pub trait Relay {
    /// The driver's error.
    type Error: DeviceError;
    /// Energise (`true`, contact closes) or de-energise (`false`, contact opens) the coil.
    async fn set(&mut self, closed: bool) -> Result<(), Self::Error>;
    /// Read the feedback contact: `true` = the main contact is closed.
    async fn feedback(&mut self) -> Result<bool, Self::Error>;
}

/// The E-stop input loop. (The trait shares its name with the reading type
/// [`ems_core::snapshot::EStopInput`], which it returns.)
#[allow(async_fn_in_trait)]
pub trait EStopInput {
    /// The driver's error.
    type Error: DeviceError;
    /// Read the loop.
    async fn read(&mut self) -> Result<ems_core::snapshot::EStopInput, Self::Error>;
    /// Wait until the loop may have changed, at most `max` (the watcher then reads it again).
    /// The default sleeps `max` on the tokio timer, i.e. the input is polled; an input that can
    /// signal its edge (an interrupt, a notification) returns as soon as it changes, which is
    /// what brings the E-stop watch below the polling period.
    async fn changed(&mut self, max: core::time::Duration) {
        tokio::time::sleep(max).await;
    }
}
