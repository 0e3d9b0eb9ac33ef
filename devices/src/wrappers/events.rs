//! Device-layer events in the operator's language, collected in a bounded buffer.

use crate::traits::{DeviceError, ErrorKind};
use core::fmt;
use ems_core::{Amps, Celsius, Hertz, Millis, Percent, Volts, Watts};

/// Capacity of a [`DeviceEvents`] buffer (one cycle's worth).
pub const DEVICE_EVENT_CAPACITY: usize = 16;

/// Which device an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Device {
    /// The battery management system.
    Bms,
    /// The battery inverter / PCS.
    Inverter,
    /// The grid meter.
    Meter,
    /// The PV inverter(s).
    Pv,
    /// The pre-charge relay.
    PrechargeRelay,
    /// The main contactor.
    MainContactor,
    /// The E-stop input.
    EStop,
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Bms => "BMS",
            Self::Inverter => "Inverter",
            Self::Meter => "Grid meter",
            Self::Pv => "PV inverter",
            Self::PrechargeRelay => "Pre-charge relay",
            Self::MainContactor => "Main contactor",
            Self::EStop => "E-stop input",
        })
    }
}

/// A rejected value with its unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldValue {
    /// A power.
    Watts(Watts),
    /// A voltage.
    Volts(Volts),
    /// A current.
    Amps(Amps),
    /// A temperature.
    Celsius(Celsius),
    /// A percentage.
    Percent(Percent),
    /// A frequency.
    Hertz(Hertz),
}

impl fmt::Display for FieldValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Watts(v) => write!(f, "{v:.0}"),
            Self::Volts(v) => write!(f, "{v:.3}"),
            Self::Amps(v) => write!(f, "{v:.1}"),
            Self::Celsius(v) => write!(f, "{v:.1}"),
            Self::Percent(v) => write!(f, "{v:.1}"),
            Self::Hertz(v) => write!(f, "{v:.2}"),
        }
    }
}

/// Why a reading was rejected.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rejection {
    /// Pack voltage and cell voltages disagree beyond the plausibility tolerance.
    PackMismatch {
        /// The pack voltage read.
        pack: Volts,
        /// Cells in series.
        cells: u16,
    },
    /// A minimum above its maximum.
    MinAboveMax {
        /// The maximum it exceeds.
        max: FieldValue,
    },
    /// A change faster than physically possible.
    Jump {
        /// The last accepted value.
        from: FieldValue,
        /// Over this time.
        over: Millis,
    },
    /// The value did not change by a single bit for this long while current flowed.
    Stuck {
        /// How long unchanged.
        for_: Millis,
    },
    /// Outside the range accepted for this signal.
    OutOfRange {
        /// Lowest accepted.
        min: FieldValue,
        /// Highest accepted.
        max: FieldValue,
    },
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PackMismatch { pack, cells } => write!(f, "implausible: pack {pack:.1} for {cells} cells"),
            Self::MinAboveMax { max } => write!(f, "implausible: above the maximum {max}"),
            Self::Jump { from, over } => {
                write!(f, "rejected as a jump from {from} within {:.1} s", over.as_secs_f32())
            }
            Self::Stuck { for_ } => {
                write!(f, "stuck: unchanged for {:.0} s under load", for_.as_secs_f32())
            }
            Self::OutOfRange { min, max } => write!(f, "outside the accepted range {min} ..= {max}"),
        }
    }
}

/// What bounded a set-point in the inverter wrapper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClampedBy {
    /// The inverter's nameplate rating (or an unknown rating: no reading yet).
    Rating,
    /// The charge bound passed in (the safety envelope).
    MaxCharge,
    /// The discharge bound passed in (the safety envelope).
    MaxDischarge,
    /// The EMS could not take control of the inverter.
    NoControl,
}

impl fmt::Display for ClampedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Rating => "inverter rating",
            Self::MaxCharge => "allowed charge power",
            Self::MaxDischarge => "allowed discharge power",
            Self::NoControl => "no control of the inverter",
        })
    }
}

/// Why a set-point write was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// The change is smaller than the write deadband.
    Deadband,
    /// The write budget of the rolling window is used up (set-point stored in flash).
    Budget,
    /// Too soon after the previous write (set-point stored in flash).
    MinInterval,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Deadband => "change within the deadband",
            Self::Budget => "write budget used up",
            Self::MinInterval => "minimum interval between writes",
        })
    }
}

/// One device-layer event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DeviceEvent {
    /// A value was read but rejected by validation; the signal is reported invalid.
    ReadingRejected {
        /// Device.
        device: Device,
        /// Field name as in the reading struct.
        field: &'static str,
        /// The rejected value.
        value: FieldValue,
        /// Why.
        why: Rejection,
    },
    /// A read failed (reported on the first failure after a good read).
    ReadFailed {
        /// Device.
        device: Device,
        /// Error kind.
        kind: ErrorKind,
    },
    /// No good read for longer than the comm-loss time: fallback active.
    CommLost {
        /// Device.
        device: Device,
        /// Time since the last good read.
        after: Millis,
    },
    /// A good read after a failure.
    CommRestored {
        /// Device.
        device: Device,
    },
    /// A write failed on the link (timeout, transport) or for another reason than a refusal.
    WriteFailed {
        /// Device.
        device: Device,
        /// Error kind.
        kind: ErrorKind,
    },
    /// The device answered a write with a refusal ([`ErrorKind::Refused`]). For the inverter it
    /// counts toward "set-point not applied" (see [`crate::wrappers::inverter`]).
    WriteRefused {
        /// Device.
        device: Device,
        /// The device's exception code (Modbus), if the refusal came as one.
        exception: Option<u8>,
    },
    /// The inverter set-point was clamped (reported when the binding bound changes).
    SetpointClamped {
        /// Requested.
        requested: Watts,
        /// Written (or about to be ramped toward).
        written: Watts,
        /// The bound.
        by: ClampedBy,
    },
    /// A set-point write was skipped (reported when the reason changes).
    WriteSkipped {
        /// The value not written.
        requested: Watts,
        /// The value the device keeps.
        kept: Watts,
        /// Why.
        why: SkipReason,
    },
    /// The inverter did not apply a written set-point within the verification window.
    SetpointNotApplied {
        /// What was written.
        commanded: Watts,
        /// What the device reported applying.
        read_back: Watts,
    },
    /// The EMS took control of the inverter.
    LeaseTaken {
        /// The revert timer armed on the device (`None`: no timer, the EMS watchdog only).
        revert_timeout: Option<Millis>,
    },
    /// The control lease was renewed without a set-point change.
    LeaseRenewed,
    /// The inverter was found back in local control while the EMS held the lease.
    LeaseLost,
    /// Control was handed back.
    LeaseReleased {
        /// The previous settings were written back.
        settings_restored: bool,
    },
    /// Pre-charge relay closed.
    PrechargeStarted,
    /// DC link reached the pack voltage.
    PrechargeDone {
        /// Time taken.
        after: Millis,
    },
    /// DC link did not reach the pack voltage in time.
    PrechargeFailed {
        /// Pack voltage at timeout (`None` if unknown).
        pack: Option<Volts>,
        /// DC link voltage at timeout (`None` if unknown).
        dc_link: Option<Volts>,
    },
    /// Main contactor closed (feedback confirmed).
    ContactorClosed,
    /// Main contactor opened (feedback confirmed).
    ContactorOpened,
    /// Main contactor still closed after being commanded open.
    ContactorWelded,
    /// Main contactor did not close when commanded.
    ContactorFailedToClose,
    /// E-stop pressed: zero set-point written and both relays commanded open at once.
    EStopFastPath {
        /// The zero set-point write succeeded.
        zero_written: bool,
        /// Both relay open commands succeeded.
        relays_opened: bool,
    },
}

impl DeviceEvent {
    /// The event for a failed write: [`Self::WriteRefused`] with the device's exception code for
    /// a refusal, [`Self::WriteFailed`] with the kind otherwise.
    #[must_use]
    pub fn write_error<E: DeviceError>(device: Device, e: &E) -> Self {
        match e.kind() {
            ErrorKind::Refused => Self::WriteRefused { device, exception: e.exception_code() },
            kind @ (ErrorKind::Timeout | ErrorKind::Comm | ErrorKind::Decode | ErrorKind::OutOfRange) => {
                Self::WriteFailed { device, kind }
            }
        }
    }
}

impl fmt::Display for DeviceEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ReadingRejected { device, field, value, why } => {
                write!(f, "{device} {field} {value} {why}")
            }
            Self::ReadFailed { device, kind } => write!(f, "{device} read failed: {kind}"),
            Self::CommLost { device, after } => write!(
                f,
                "{device} communication lost for {:.1} s: falling back to safe values",
                after.as_secs_f32()
            ),
            Self::CommRestored { device } => write!(f, "{device} communication restored"),
            Self::WriteFailed { device, kind } => write!(f, "{device} write failed: {kind}"),
            Self::WriteRefused { device, exception: Some(code) } => {
                write!(f, "{device} refused the write: exception 0x{code:02X}")
            }
            Self::WriteRefused { device, exception: None } => write!(f, "{device} refused the write"),
            Self::SetpointClamped { requested, written, by } => {
                write!(f, "Inverter set-point {requested:.0} clamped to {written:.0} by {by}")
            }
            Self::WriteSkipped { requested, kept, why } => {
                write!(f, "Inverter set-point {requested:.0} not written ({why}); device keeps {kept:.0}")
            }
            Self::SetpointNotApplied { commanded, read_back } => {
                write!(f, "Inverter did not apply the set-point: commanded {commanded:.0}, reads back {read_back:.0}")
            }
            Self::LeaseTaken { revert_timeout: Some(t) } => {
                write!(f, "EMS took control of the inverter (revert timer {:.1} s)", t.as_secs_f32())
            }
            Self::LeaseTaken { revert_timeout: None } => {
                f.write_str("EMS took control of the inverter (no revert timer: EMS watchdog only)")
            }
            Self::LeaseRenewed => f.write_str("Inverter control lease renewed"),
            Self::LeaseLost => f.write_str("Inverter reverted to local control: control lease lost"),
            Self::LeaseReleased { settings_restored: true } => {
                f.write_str("EMS released the inverter: previous settings restored")
            }
            Self::LeaseReleased { settings_restored: false } => {
                f.write_str("EMS released the inverter: previous settings NOT restored")
            }
            Self::PrechargeStarted => f.write_str("Pre-charge started"),
            Self::PrechargeDone { after } => write!(f, "Pre-charge done after {:.2} s", after.as_secs_f32()),
            Self::PrechargeFailed { pack, dc_link } => {
                f.write_str("Pre-charge failed: DC link ")?;
                match dc_link {
                    Some(v) => write!(f, "{v:.1}")?,
                    None => f.write_str("unknown")?,
                }
                f.write_str(", pack ")?;
                match pack {
                    Some(v) => write!(f, "{v:.1}"),
                    None => f.write_str("unknown"),
                }
            }
            Self::ContactorClosed => f.write_str("Main contactor closed"),
            Self::ContactorOpened => f.write_str("Main contactor opened"),
            Self::ContactorWelded => f.write_str("Main contactor welded: still closed after open command"),
            Self::ContactorFailedToClose => f.write_str("Main contactor failed to close"),
            Self::EStopFastPath { zero_written, relays_opened } => write!(
                f,
                "E-stop: zero set-point {}, contactors {}",
                if *zero_written { "written" } else { "NOT written" },
                if *relays_opened { "commanded open" } else { "open command FAILED" }
            ),
        }
    }
}

/// An event with the monotonic time it happened.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimedDeviceEvent {
    /// When.
    pub at: Millis,
    /// What.
    pub event: DeviceEvent,
}

impl ems_core::Stamped for TimedDeviceEvent {
    type Kind = DeviceEvent;
    fn stamp(at: Millis, event: DeviceEvent) -> Self {
        Self { at, event }
    }
    fn kind(&self) -> &DeviceEvent {
        &self.event
    }
}

/// A bounded buffer of device events (the same buffer as the controller's events); when full,
/// further events are counted, not stored.
pub type DeviceEvents = ems_core::EventLog<TimedDeviceEvent, DEVICE_EVENT_CAPACITY>;
