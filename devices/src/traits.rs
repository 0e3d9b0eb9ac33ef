//! Device traits shared by real drivers (Modbus, later) and the simulated devices.
//!
//! Following embedded-hal 1.0: every method is fallible; each implementation keeps its own error
//! type and maps it onto the shared [`ErrorKind`] through [`DeviceError::kind`], so a safety
//! wrapper can react (retry a timeout, stop on a refusal) without knowing the driver.
//!
//! The methods are native `async fn` (Rust ≥ 1.75). As in `embedded-hal-async`, the returned
//! futures carry no `Send` bound, so the traits serve single-threaded executors (tokio
//! current-thread, `LocalSet`, embassy) as well as multi-threaded ones for `Send` implementors.

use ems_core::snapshot::{BmsAlarms, ContactorState, InverterState};
use ems_core::{Amps, Celsius, Hertz, Percent, Volts, Watts};

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
pub trait DeviceError: core::fmt::Debug {
    /// The kind of this error.
    fn kind(&self) -> ErrorKind;
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
    /// Operating state.
    pub state: InverterState,
    /// Heat-sink temperature.
    pub temperature: Celsius,
    /// Nameplate rating.
    pub rated_power: Watts,
}

/// One grid meter reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeterReading {
    /// Active power, `+` import / `−` export.
    pub active_power: Watts,
    /// Voltage.
    pub voltage: Volts,
    /// Frequency.
    pub frequency: Hertz,
}

/// Contactor feedback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContactorReading {
    /// Position.
    pub state: ContactorState,
    /// Pre-charge completed.
    pub precharge_done: bool,
}

// `async fn` in public traits cannot name `Send` on the returned future; we accept that (as
// embedded-hal-async does) so single-threaded executors and non-`Send` transports work.

/// Battery management system.
#[allow(async_fn_in_trait)]
pub trait Bms {
    /// The driver's error type.
    type Error: DeviceError;
    /// Read every BMS signal.
    async fn read(&mut self) -> Result<BmsReading, Self::Error>;
}

/// Battery inverter / PCS.
#[allow(async_fn_in_trait)]
pub trait Inverter {
    /// The driver's error type.
    type Error: DeviceError;
    /// Read power, state, temperature and rating.
    async fn read(&mut self) -> Result<InverterReading, Self::Error>;
    /// Write the AC active-power set-point, `+` discharge / `−` charge.
    async fn write_setpoint(&mut self, power: Watts) -> Result<(), Self::Error>;
}

/// Grid meter at the connection point.
#[allow(async_fn_in_trait)]
pub trait Meter {
    /// The driver's error type.
    type Error: DeviceError;
    /// Read power, voltage and frequency.
    async fn read(&mut self) -> Result<MeterReading, Self::Error>;
}

/// PV inverter(s).
#[allow(async_fn_in_trait)]
pub trait PvSource {
    /// The driver's error type.
    type Error: DeviceError;
    /// Read the AC production (≥ 0).
    async fn read(&mut self) -> Result<Watts, Self::Error>;
}

/// Main DC contactor with pre-charge.
#[allow(async_fn_in_trait)]
pub trait Contactor {
    /// The driver's error type.
    type Error: DeviceError;
    /// Read position and pre-charge feedback.
    async fn read(&mut self) -> Result<ContactorReading, Self::Error>;
    /// Open the contactor (and the pre-charge relay) at once.
    async fn open(&mut self) -> Result<(), Self::Error>;
    /// Start the pre-charge sequence; the device closes the main contactor when it is done.
    async fn close(&mut self) -> Result<(), Self::Error>;
}

/// The E-stop input loop. (The trait shares its name with the reading type
/// [`ems_core::snapshot::EStopInput`], which it returns.)
#[allow(async_fn_in_trait)]
pub trait EStopInput {
    /// The driver's error type.
    type Error: DeviceError;
    /// Read the input.
    async fn read(&mut self) -> Result<ems_core::snapshot::EStopInput, Self::Error>;
}
