//! The vocabulary of the safety core: the five states, the requests that move between them,
//! the quantities and signals the monitors watch, why a fault trips and what caused a
//! transition. It imports no other module of this crate except the BMS alarm bits, so the
//! state machine, the events and the persisted state all build on it without importing each
//! other back.

use crate::snapshot::BmsAlarm;
use core::fmt;

/// The five states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Starting up; no power.
    Boot,
    /// Healthy and ready; no power.
    Idle,
    /// The only state in which power may be commanded.
    Running,
    /// A fault tripped; no power until the fault is gone and acknowledged.
    Error,
    /// Emergency stop latched; no power, contactors open, until a manual reset.
    Stopped,
}

impl State {
    /// Every state.
    pub const ALL: [Self; 5] = [Self::Boot, Self::Idle, Self::Running, Self::Error, Self::Stopped];

    /// Whether power may be commanded in this state.
    #[must_use]
    pub const fn may_act(self) -> bool {
        match self {
            Self::Running => true,
            Self::Boot | Self::Idle | Self::Error | Self::Stopped => false,
        }
    }

    /// The name used in logs, persistence and the API.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Boot => "BOOT",
            Self::Idle => "IDLE",
            Self::Running => "RUNNING",
            Self::Error => "ERROR",
            Self::Stopped => "STOPPED",
        }
    }

    /// Parse the name written by [`Self::as_str`].
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A request to change state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransitionRequest {
    /// The boot sequence finished its self-checks.
    BootComplete,
    /// Start acting (IDLE → RUNNING).
    Start,
    /// Stop acting (RUNNING → IDLE).
    Stop,
    /// Acknowledge a fault (ERROR → IDLE).
    Acknowledge,
    /// Manual reset after an E-stop (STOPPED → IDLE).
    Reset,
}

impl fmt::Display for TransitionRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BootComplete => "boot complete",
            Self::Start => "start",
            Self::Stop => "stop",
            Self::Acknowledge => "acknowledge",
            Self::Reset => "reset",
        })
    }
}

/// A quantity the limit monitor and trend analyzer watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quantity {
    /// Highest cell voltage (over-voltage).
    CellVoltageHigh,
    /// Lowest cell voltage (under-voltage).
    CellVoltageLow,
    /// Highest cell temperature (over-temperature).
    CellTempHigh,
    /// Lowest cell temperature (under-temperature).
    CellTempLow,
    /// Pack charge current magnitude.
    ChargeCurrent,
    /// Pack discharge current magnitude.
    DischargeCurrent,
    /// State of charge too high.
    SocHigh,
    /// State of charge too low.
    SocLow,
    /// Inverter heat-sink temperature.
    InverterTemp,
    /// Grid import power.
    GridImport,
    /// Grid export power.
    GridExport,
}

impl Quantity {
    /// Every quantity, in a fixed order (used for per-quantity state arrays).
    pub const ALL: [Self; 11] = [
        Self::CellVoltageHigh,
        Self::CellVoltageLow,
        Self::CellTempHigh,
        Self::CellTempLow,
        Self::ChargeCurrent,
        Self::DischargeCurrent,
        Self::SocHigh,
        Self::SocLow,
        Self::InverterTemp,
        Self::GridImport,
        Self::GridExport,
    ];

    /// Index into [`Self::ALL`].
    #[must_use]
    pub const fn index(self) -> usize {
        match self {
            Self::CellVoltageHigh => 0,
            Self::CellVoltageLow => 1,
            Self::CellTempHigh => 2,
            Self::CellTempLow => 3,
            Self::ChargeCurrent => 4,
            Self::DischargeCurrent => 5,
            Self::SocHigh => 6,
            Self::SocLow => 7,
            Self::InverterTemp => 8,
            Self::GridImport => 9,
            Self::GridExport => 10,
        }
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::CellVoltageHigh => "Cell over-voltage",
            Self::CellVoltageLow => "Cell under-voltage",
            Self::CellTempHigh => "Cell over-temperature",
            Self::CellTempLow => "Cell under-temperature",
            Self::ChargeCurrent => "Charge over-current",
            Self::DischargeCurrent => "Discharge over-current",
            Self::SocHigh => "SOC high",
            Self::SocLow => "SOC low",
            Self::InverterTemp => "Inverter over-temperature",
            Self::GridImport => "Grid import over limit",
            Self::GridExport => "Grid export over limit",
        })
    }
}

/// A signal of the snapshot, for "stale/invalid" reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    /// State of charge.
    Soc,
    /// Pack voltage.
    PackVoltage,
    /// Pack current.
    PackCurrent,
    /// Lowest/highest cell voltage.
    CellVoltage,
    /// Lowest/highest cell temperature.
    CellTemperature,
    /// BMS charge/discharge limits.
    BmsLimits,
    /// BMS alarm flags.
    BmsAlarms,
    /// BMS ready flag.
    BmsReady,
    /// Inverter active power.
    InverterPower,
    /// Inverter state.
    InverterState,
    /// Inverter temperature.
    InverterTemperature,
    /// Grid meter power.
    GridPower,
    /// Grid voltage or frequency.
    GridVoltageFrequency,
    /// PV power.
    PvPower,
    /// Contactor feedback.
    Contactor,
    /// Pre-charge feedback.
    Precharge,
    /// E-stop input.
    EStop,
}

impl Signal {
    /// Every signal, in a fixed order (used by the persisted fault codes).
    pub const ALL: [Self; 17] = [
        Self::Soc,
        Self::PackVoltage,
        Self::PackCurrent,
        Self::CellVoltage,
        Self::CellTemperature,
        Self::BmsLimits,
        Self::BmsAlarms,
        Self::BmsReady,
        Self::InverterPower,
        Self::InverterState,
        Self::InverterTemperature,
        Self::GridPower,
        Self::GridVoltageFrequency,
        Self::PvPower,
        Self::Contactor,
        Self::Precharge,
        Self::EStop,
    ];
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Soc => "SOC",
            Self::PackVoltage => "pack voltage",
            Self::PackCurrent => "pack current",
            Self::CellVoltage => "cell voltage",
            Self::CellTemperature => "cell temperature",
            Self::BmsLimits => "BMS limits",
            Self::BmsAlarms => "BMS alarms",
            Self::BmsReady => "BMS ready",
            Self::InverterPower => "inverter power",
            Self::InverterState => "inverter state",
            Self::InverterTemperature => "inverter temperature",
            Self::GridPower => "grid power",
            Self::GridVoltageFrequency => "grid voltage/frequency",
            Self::PvPower => "PV power",
            Self::Contactor => "contactor feedback",
            Self::Precharge => "pre-charge feedback",
            Self::EStop => "E-stop input",
        })
    }
}

/// Why a fault tripped the system to ERROR. Latched until acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TripReason {
    /// A hard limit reached its trip level.
    Limit(Quantity),
    /// A trend predicted a runaway (e.g. a temperature rise the cooling cannot explain).
    Runaway(Quantity),
    /// The BMS raised an alarm.
    Bms(BmsAlarm),
    /// The inverter reports a fault.
    InverterFault,
    /// A safety-critical signal stayed stale/invalid longer than allowed while running.
    SignalLost(Signal),
    /// Contactor feedback disagrees with the command.
    ContactorMismatch,
    /// A graceful shutdown could not verify zero power and open contactors.
    ShutdownFailed,
    /// The inverter did not apply a written set-point within the verification window.
    SetpointNotApplied,
    /// The DC link did not reach the pack voltage within the pre-charge timeout.
    PrechargeFailed,
    /// The main contact stayed closed after it was commanded open (welded).
    ContactorWelded,
    /// The main contact did not close when commanded.
    ContactorFailedToClose,
}

impl fmt::Display for TripReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Limit(q) => write!(f, "{q} trip"),
            Self::Runaway(q) => write!(f, "{q} runaway predicted"),
            Self::Bms(a) => write!(f, "{a}"),
            Self::InverterFault => f.write_str("Inverter fault"),
            Self::SignalLost(s) => write!(f, "{s} lost"),
            Self::ContactorMismatch => f.write_str("Contactor feedback mismatch"),
            Self::ShutdownFailed => f.write_str("Graceful shutdown not verified"),
            Self::SetpointNotApplied => f.write_str("Inverter did not apply the set-point"),
            Self::PrechargeFailed => f.write_str("Pre-charge failed"),
            Self::ContactorWelded => f.write_str("Main contactor welded"),
            Self::ContactorFailedToClose => f.write_str("Main contactor failed to close"),
        }
    }
}

/// What caused a state transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cause {
    /// A request (from the operator, the API or the boot sequence).
    Request(TransitionRequest),
    /// A trip.
    Trip(TripReason),
    /// The E-stop input or an emergency-stop request.
    EStop,
    /// Restored from persisted state at boot.
    Restored,
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Request(r) => write!(f, "{r}"),
            Self::Trip(t) => write!(f, "{t}"),
            Self::EStop => f.write_str("emergency stop"),
            Self::Restored => f.write_str("restored after reboot"),
        }
    }
}
