//! The site snapshot: the single source of truth for one control cycle.
//!
//! Device readers write into it; `ems_safety::evaluate` and the controller only read it. Every
//! signal is a [`Measurement`] with its own maximum age. Site load is derived
//! ([`Snapshot::site_load`]), never measured.

use crate::measurement::Measurement;
use crate::units::{Amps, Celsius, Hertz, Millis, Percent, Volts, Watts};
use core::fmt;

/// BMS alarm bits as a small bit set (one bit per [`BmsAlarm`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct BmsAlarms(u16);

/// One BMS alarm flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BmsAlarm {
    /// A cell above its maximum voltage.
    CellOverVoltage,
    /// A cell below its minimum voltage.
    CellUnderVoltage,
    /// Cell temperature too high.
    OverTemperature,
    /// Cell temperature too low.
    UnderTemperature,
    /// Charge or discharge current above the BMS limit.
    OverCurrent,
    /// Insulation fault.
    Insulation,
    /// Internal BMS fault (communication with slaves, sensor failure).
    Internal,
}

impl BmsAlarm {
    /// Every alarm, in bit order.
    pub const ALL: [Self; 7] = [
        Self::CellOverVoltage,
        Self::CellUnderVoltage,
        Self::OverTemperature,
        Self::UnderTemperature,
        Self::OverCurrent,
        Self::Insulation,
        Self::Internal,
    ];

    const fn bit(self) -> u16 {
        match self {
            Self::CellOverVoltage => 1 << 0,
            Self::CellUnderVoltage => 1 << 1,
            Self::OverTemperature => 1 << 2,
            Self::UnderTemperature => 1 << 3,
            Self::OverCurrent => 1 << 4,
            Self::Insulation => 1 << 5,
            Self::Internal => 1 << 6,
        }
    }
}

impl fmt::Display for BmsAlarm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::CellOverVoltage => "BMS cell over-voltage",
            Self::CellUnderVoltage => "BMS cell under-voltage",
            Self::OverTemperature => "BMS over-temperature",
            Self::UnderTemperature => "BMS under-temperature",
            Self::OverCurrent => "BMS over-current",
            Self::Insulation => "BMS insulation fault",
            Self::Internal => "BMS internal fault",
        })
    }
}

impl BmsAlarms {
    /// No alarm.
    pub const NONE: Self = Self(0);

    /// From raw bits; unknown bits are kept and reported as [`BmsAlarm::Internal`] by
    /// [`Self::contains`], since an unknown alarm must not be ignored.
    #[must_use]
    pub const fn from_bits(bits: u16) -> Self {
        Self(bits)
    }

    /// The raw bits.
    #[must_use]
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// Set one alarm.
    #[must_use]
    pub const fn with(self, alarm: BmsAlarm) -> Self {
        Self(self.0 | alarm.bit())
    }

    /// Whether `alarm` is set.
    #[must_use]
    pub const fn contains(self, alarm: BmsAlarm) -> bool {
        let unknown = self.0 & !0x7f != 0;
        self.0 & alarm.bit() != 0 || (unknown && matches!(alarm, BmsAlarm::Internal))
    }

    /// Whether any alarm is set.
    #[must_use]
    pub const fn any(self) -> bool {
        self.0 != 0
    }

    /// The first set alarm, for reporting.
    #[must_use]
    pub fn first(self) -> Option<BmsAlarm> {
        BmsAlarm::ALL.into_iter().find(|a| self.contains(*a))
    }
}

/// Inverter/PCS operating state as reported by the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InverterState {
    /// Switched off or in standby; will not follow a set-point.
    Standby,
    /// Synchronised and following set-points.
    Running,
    /// The inverter reports a fault of its own.
    Fault,
}

impl fmt::Display for InverterState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Standby => "STANDBY",
            Self::Running => "RUNNING",
            Self::Fault => "FAULT",
        })
    }
}

/// Main DC contactor feedback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContactorState {
    /// Open: no current can flow.
    Open,
    /// Pre-charge relay closed, main contactor still open.
    Precharging,
    /// Main contactor closed.
    Closed,
}

impl fmt::Display for ContactorState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Open => "OPEN",
            Self::Precharging => "PRECHARGING",
            Self::Closed => "CLOSED",
        })
    }
}

/// The E-stop input (a normally-closed loop, read as pressed when broken).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EStopInput {
    /// Loop closed: no emergency.
    Released,
    /// Loop open: emergency stop.
    Pressed,
}

/// Battery and BMS signals.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatterySignals {
    /// State of charge.
    pub soc: Measurement<Percent>,
    /// Pack voltage.
    pub pack_voltage: Measurement<Volts>,
    /// Pack current, `+` discharge / `−` charge.
    pub pack_current: Measurement<Amps>,
    /// Lowest cell voltage.
    pub cell_voltage_min: Measurement<Volts>,
    /// Highest cell voltage.
    pub cell_voltage_max: Measurement<Volts>,
    /// Lowest cell temperature.
    pub cell_temp_min: Measurement<Celsius>,
    /// Highest cell temperature.
    pub cell_temp_max: Measurement<Celsius>,
    /// BMS charge power limit (≥ 0, magnitude).
    pub bms_charge_limit: Measurement<Watts>,
    /// BMS discharge power limit (≥ 0, magnitude).
    pub bms_discharge_limit: Measurement<Watts>,
    /// BMS alarm flags.
    pub bms_alarms: Measurement<BmsAlarms>,
    /// BMS reports it is ready to be charged/discharged.
    pub bms_ready: Measurement<bool>,
}

/// How the inverter sets its AC voltage (island detection needs it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GridMode {
    /// Follows the grid's voltage and frequency (current source): cannot hold an island.
    GridFollowing,
    /// Forms voltage and frequency itself (voltage source): may supply an island.
    GridForming,
}

/// Position of the grid-tie breaker (the transfer switch between the site and the grid).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GridTie {
    /// Connected to the grid.
    Closed,
    /// Islanded: the site runs without the grid.
    Open,
}

/// Inverter/PCS signals.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InverterSignals {
    /// AC active power, `+` discharge / `−` charge.
    pub active_power: Measurement<Watts>,
    /// Operating state.
    pub state: Measurement<InverterState>,
    /// Nameplate rating (magnitude, both directions).
    pub rated_power: Watts,
    /// Heat-sink temperature.
    pub temperature: Measurement<Celsius>,
    /// Grid-forming or grid-following.
    pub grid_mode: Measurement<GridMode>,
}

/// Grid meter signals at the connection point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GridSignals {
    /// Active power, `+` import / `−` export.
    pub active_power: Measurement<Watts>,
    /// Voltage (phase average).
    pub voltage: Measurement<Volts>,
    /// Frequency.
    pub frequency: Measurement<Hertz>,
    /// The grid-tie breaker: `None` when the site has none (a fixed grid connection that
    /// cannot island); `Some` when it is monitored, and then a stale or invalid reading counts
    /// as islanded (the worst case).
    pub tie: Option<Measurement<GridTie>>,
}

/// Everything the control core knows about the site at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Snapshot {
    /// Battery and BMS.
    pub battery: BatterySignals,
    /// Inverter/PCS.
    pub inverter: InverterSignals,
    /// Grid meter.
    pub grid: GridSignals,
    /// PV production (≥ 0).
    pub pv_power: Measurement<Watts>,
    /// Main contactor feedback.
    pub contactor: Measurement<ContactorState>,
    /// Pre-charge completed (reported by the pre-charge circuit or the BMS).
    pub precharge_done: Measurement<bool>,
    /// E-stop loop.
    pub estop: Measurement<EStopInput>,
}

/// Default maximum age for fast signals (power, current, cell voltage): 2 s.
pub const FAST_MAX_AGE: Millis = Millis::new(2_000);
/// Default maximum age for slow signals (temperatures, SOC, limits): 5 s.
pub const SLOW_MAX_AGE: Millis = Millis::new(5_000);
/// Default maximum age for the E-stop input: 500 ms.
pub const ESTOP_MAX_AGE: Millis = Millis::new(500);

impl Snapshot {
    /// A snapshot in which every signal is invalid (never read). Safety evaluates it to a zero
    /// envelope and an E-stop input of unknown state.
    #[must_use]
    pub const fn unknown(rated_power: Watts) -> Self {
        Self {
            battery: BatterySignals {
                soc: Measurement::invalid(Percent::ZERO, SLOW_MAX_AGE),
                pack_voltage: Measurement::invalid(Volts::ZERO, FAST_MAX_AGE),
                pack_current: Measurement::invalid(Amps::ZERO, FAST_MAX_AGE),
                cell_voltage_min: Measurement::invalid(Volts::ZERO, FAST_MAX_AGE),
                cell_voltage_max: Measurement::invalid(Volts::ZERO, FAST_MAX_AGE),
                cell_temp_min: Measurement::invalid(Celsius::ZERO, SLOW_MAX_AGE),
                cell_temp_max: Measurement::invalid(Celsius::ZERO, SLOW_MAX_AGE),
                bms_charge_limit: Measurement::invalid(Watts::ZERO, SLOW_MAX_AGE),
                bms_discharge_limit: Measurement::invalid(Watts::ZERO, SLOW_MAX_AGE),
                bms_alarms: Measurement::invalid(BmsAlarms::NONE, SLOW_MAX_AGE),
                bms_ready: Measurement::invalid(false, SLOW_MAX_AGE),
            },
            inverter: InverterSignals {
                active_power: Measurement::invalid(Watts::ZERO, FAST_MAX_AGE),
                state: Measurement::invalid(InverterState::Standby, SLOW_MAX_AGE),
                rated_power,
                temperature: Measurement::invalid(Celsius::ZERO, SLOW_MAX_AGE),
                grid_mode: Measurement::invalid(GridMode::GridFollowing, SLOW_MAX_AGE),
            },
            grid: GridSignals {
                active_power: Measurement::invalid(Watts::ZERO, FAST_MAX_AGE),
                voltage: Measurement::invalid(Volts::ZERO, FAST_MAX_AGE),
                frequency: Measurement::invalid(Hertz::ZERO, FAST_MAX_AGE),
                tie: None,
            },
            pv_power: Measurement::invalid(Watts::ZERO, FAST_MAX_AGE),
            contactor: Measurement::invalid(ContactorState::Open, FAST_MAX_AGE),
            precharge_done: Measurement::invalid(false, FAST_MAX_AGE),
            estop: Measurement::invalid(EStopInput::Pressed, ESTOP_MAX_AGE),
        }
    }

    /// Site load derived from the balance `load = grid + pv + battery` (design.md §4), if all
    /// three are good at `now`. Negative results (meter disagreement) are clamped to zero.
    #[must_use]
    pub fn site_load(&self, now: Millis) -> Option<Watts> {
        let grid = self.grid.active_power.value_at(now)?;
        let pv = self.pv_power.value_at(now)?;
        let battery = self.inverter.active_power.value_at(now)?;
        Some((grid + pv + battery).max(Watts::ZERO))
    }

    /// PV surplus at `now`: export that would occur with the battery idle, `max(0, −(grid +
    /// battery))`. `None` if grid or battery power is not good.
    #[must_use]
    pub fn pv_surplus(&self, now: Millis) -> Option<Watts> {
        let grid = self.grid.active_power.value_at(now)?;
        let battery = self.inverter.active_power.value_at(now)?;
        Some((-(grid + battery)).max(Watts::ZERO))
    }

    /// Whether the site may be islanded at `now`: a monitored grid-tie breaker that reads open,
    /// or whose reading is stale or invalid. A site without a breaker (`grid.tie == None`)
    /// never islands.
    #[must_use]
    pub fn islanded(&self, now: Millis) -> bool {
        self.grid.tie.is_some_and(|t| t.value_at(now) != Some(GridTie::Closed))
    }

    /// Whether the E-stop is pressed at `now`; an unknown or stale input counts as pressed.
    #[must_use]
    pub fn estop_pressed(&self, now: Millis) -> bool {
        !matches!(self.estop.value_at(now), Some(EStopInput::Released))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good<T: Copy>(v: T) -> Measurement<T> {
        Measurement::good(v, Millis::ZERO, Millis::new(1000))
    }

    #[test]
    fn load_is_derived_from_the_balance() {
        let mut s = Snapshot::unknown(crate::watts!(5000.0));
        s.grid.active_power = good(crate::watts!(-1000.0));
        s.pv_power = good(crate::watts!(3000.0));
        s.inverter.active_power = good(crate::watts!(-1500.0));
        assert_eq!(s.site_load(Millis::ZERO), Some(crate::watts!(500.0)));
        assert_eq!(s.pv_surplus(Millis::ZERO), Some(crate::watts!(2500.0)));
        assert_eq!(s.site_load(Millis::new(2000)), None, "stale inputs give no load");
    }

    #[test]
    fn unknown_estop_counts_as_pressed() {
        let mut s = Snapshot::unknown(crate::watts!(5000.0));
        assert!(s.estop_pressed(Millis::ZERO));
        s.estop = good(EStopInput::Released);
        assert!(!s.estop_pressed(Millis::ZERO));
        assert!(s.estop_pressed(Millis::new(5000)));
    }

    #[test]
    fn unknown_alarm_bits_count_as_internal_fault() {
        let a = BmsAlarms::from_bits(0x8000);
        assert!(a.contains(BmsAlarm::Internal));
        assert_eq!(a.first(), Some(BmsAlarm::Internal));
        assert!(!BmsAlarms::NONE.any());
    }
}
