//! The safety monitor: one call per control cycle turns a [`Snapshot`] into an [`Envelope`].
//!
//! [`SafetyMonitor::evaluate`] intersects, in this order: inverter rating; worst case for
//! unavailable signals; BMS charge/discharge limits; BMS alarms; inverter fault; E-stop; the
//! limit monitor; pack current limits; derating curves; trend predictions; interlocks; grid
//! connection limits. Every step only narrows the envelope, so the result is monotone.

use crate::derating::DeratingConfig;
use crate::envelope::Envelope;
use crate::error::ConfigError;
use crate::interlock::Interlocks;
use crate::limits::{LimitConfig, LimitMonitor, DEFAULT_GRID_EXPORT_LIMIT, DEFAULT_GRID_IMPORT_LIMIT};
use crate::plausibility::{FrozenBmsDetector, FrozenConfig};
use crate::trend::{TrendAnalyzer, TrendConfig};
use ems_core::event::{Constraint, Signal};
use ems_core::snapshot::{BmsAlarm, BmsAlarms, ContactorState, EStopInput, InverterState};
use ems_core::{Amps, Events, Level, Millis, Quality, Quantity, Snapshot, TripReason, Watts};

/// Everything the safety monitor needs to know about the site.
#[derive(Debug, Clone, PartialEq)]
pub struct SafetyConfig {
    /// Warn/alarm/trip levels.
    pub limits: LimitConfig,
    /// Trend windows, horizons and the runaway criterion.
    pub trend: TrendConfig,
    /// Derating curves.
    pub derating: DeratingConfig,
    /// Interlock rules.
    pub interlocks: Interlocks,
    /// Import limit at the connection point (main fuse or contract); `None` = unlimited.
    pub grid_import_limit: Option<Watts>,
    /// Export cap at the connection point; `None` = unlimited.
    pub grid_export_limit: Option<Watts>,
    /// Pack maximum charge current (magnitude): charge power ≤ pack voltage × this.
    pub pack_max_charge_current: Amps,
    /// Pack maximum discharge current (magnitude): discharge power ≤ pack voltage × this.
    pub pack_max_discharge_current: Amps,
    /// A safety-critical signal that was good once and has been unavailable this long (while
    /// the contactor is not known to be open) trips with [`TripReason::SignalLost`].
    pub signal_loss_trip_after: Millis,
    /// Treat the BMS readings as unavailable when they stop moving under load (see
    /// [`crate::plausibility`]); `None` switches the cross-check off.
    pub frozen_bms: Option<FrozenConfig>,
    /// Supervised recovery of a deeply discharged pack: after an acknowledge with a cell
    /// under-voltage still present, the pack may charge at most at pack voltage × this current
    /// (discharge stays zero) until its lowest cell is back where the cell-voltage-low alarm is
    /// left; `None` leaves such a pack in ERROR. See [`SafetyMonitor::acknowledge`].
    pub recovery_charge_current: Option<Amps>,
}

impl Default for SafetyConfig {
    /// A 16-cell LFP home battery (51.2 V nominal, 100 Ah) with a 5 kW inverter behind a
    /// 3 × 25 A fuse: pack current 100 A each way, grid import 17.25 kW (25 A × 230 V × 3),
    /// export cap 10 kW, signal-loss trip after 10 s; limit, derating and trend defaults as in
    /// [`LimitConfig::default`], [`DeratingConfig::default`], [`TrendConfig::default`].
    fn default() -> Self {
        Self::for_site(
            ems_core::amps!(100.0),
            ems_core::amps!(100.0),
            Some(DEFAULT_GRID_IMPORT_LIMIT),
            Some(DEFAULT_GRID_EXPORT_LIMIT),
        )
    }
}

impl SafetyConfig {
    /// LFP defaults with the site's pack currents and grid limits; the current and grid limit
    /// levels are derived from them ([`LimitConfig::for_site`]).
    #[must_use]
    pub fn for_site(
        pack_max_charge_current: Amps,
        pack_max_discharge_current: Amps,
        grid_import_limit: Option<Watts>,
        grid_export_limit: Option<Watts>,
    ) -> Self {
        Self {
            limits: LimitConfig::for_site(
                pack_max_charge_current,
                pack_max_discharge_current,
                grid_import_limit,
                grid_export_limit,
            ),
            trend: TrendConfig::default(),
            derating: DeratingConfig::default(),
            interlocks: Interlocks::default(),
            grid_import_limit,
            grid_export_limit,
            pack_max_charge_current,
            pack_max_discharge_current,
            signal_loss_trip_after: Millis::from_secs(10),
            frozen_bms: Some(FrozenConfig::default()),
            // 5 % of the default pack current (0.05 C of a 100 Ah pack): the "small fraction
            // of C" a deeply discharged LFP cell is brought back with.
            recovery_charge_current: Some(pack_max_charge_current.abs().scale(0.05)),
        }
    }

    /// Check the whole configuration; the error names the field and the value.
    ///
    /// # Errors
    /// The first [`ConfigError`] of the limits, trend settings, derating curves, grid limits or
    /// pack currents.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.limits.validate()?;
        self.trend.validate()?;
        self.derating.validate()?;
        for (v, field) in
            [(self.grid_import_limit, "grid_import_limit"), (self.grid_export_limit, "grid_export_limit")]
        {
            if let Some(w) = v {
                if w.get() < 0.0 {
                    return Err(ConfigError::OutOfRange { field, value: w.get(), expected: "≥ 0 W" });
                }
            }
        }
        for (a, field) in [
            (self.pack_max_charge_current, "pack_max_charge_current"),
            (self.pack_max_discharge_current, "pack_max_discharge_current"),
        ] {
            if a.get() <= 0.0 {
                return Err(ConfigError::OutOfRange { field, value: a.get(), expected: "> 0 A" });
            }
        }
        if let Some(a) = self.recovery_charge_current {
            if !(a.get() > 0.0 && a.get() <= self.pack_max_charge_current.get()) {
                return Err(ConfigError::OutOfRange {
                    field: "recovery_charge_current",
                    value: a.get(),
                    expected: "> 0 A and ≤ pack_max_charge_current",
                });
            }
        }
        if let Some(f) = self.frozen_bms {
            if f.after == Millis::ZERO {
                return Err(ConfigError::OutOfRange {
                    field: "frozen_bms.after",
                    value: 0.0,
                    expected: "> 0 ms",
                });
            }
        }
        if self.signal_loss_trip_after == Millis::ZERO {
            return Err(ConfigError::OutOfRange {
                field: "signal_loss_trip_after",
                value: 0.0,
                expected: "> 0 ms",
            });
        }
        Ok(())
    }

    /// Whether any grid-side limit needs the grid meter: (import side, export side).
    fn grid_needed(&self) -> (bool, bool) {
        (
            self.grid_import_limit.is_some() || self.limits.grid_import.is_some(),
            self.grid_export_limit.is_some() || self.limits.grid_export.is_some(),
        )
    }
}

/// A signal the monitor requires, and what its absence does.
#[derive(Debug, Clone, Copy)]
struct Need {
    signal: Signal,
    /// Also forbid closing the main contactor while unavailable (battery-side signals: with
    /// them unknown the battery must not be connected; inverter signals are exempt because an
    /// inverter powered from the DC bus only reports once the contactor is closed).
    forbid_close: bool,
}

/// Signals whose unavailability zeroes both directions (grid power is handled separately).
const NEEDS: [Need; 14] = [
    Need { signal: Signal::Soc, forbid_close: true },
    Need { signal: Signal::PackVoltage, forbid_close: true },
    Need { signal: Signal::PackCurrent, forbid_close: true },
    Need { signal: Signal::CellVoltage, forbid_close: true },
    Need { signal: Signal::CellTemperature, forbid_close: true },
    Need { signal: Signal::BmsLimits, forbid_close: true },
    Need { signal: Signal::BmsAlarms, forbid_close: true },
    Need { signal: Signal::BmsReady, forbid_close: true },
    Need { signal: Signal::InverterPower, forbid_close: false },
    Need { signal: Signal::InverterState, forbid_close: false },
    Need { signal: Signal::InverterTemperature, forbid_close: false },
    Need { signal: Signal::Contactor, forbid_close: true },
    Need { signal: Signal::Precharge, forbid_close: true },
    Need { signal: Signal::EStop, forbid_close: true },
];

/// Index of grid power in the loss trackers (after [`NEEDS`]).
const GRID_TRACKER: usize = NEEDS.len();

/// Whether every measurement behind `signal` is good at `now`.
fn signal_good(s: &Snapshot, signal: Signal, now: Millis) -> bool {
    let g = Quality::Good;
    let b = &s.battery;
    match signal {
        Signal::Soc => b.soc.quality_at(now) == g,
        Signal::PackVoltage => b.pack_voltage.quality_at(now) == g,
        Signal::PackCurrent => b.pack_current.quality_at(now) == g,
        Signal::CellVoltage => {
            b.cell_voltage_min.quality_at(now) == g && b.cell_voltage_max.quality_at(now) == g
        }
        Signal::CellTemperature => {
            b.cell_temp_min.quality_at(now) == g && b.cell_temp_max.quality_at(now) == g
        }
        Signal::BmsLimits => {
            b.bms_charge_limit.quality_at(now) == g && b.bms_discharge_limit.quality_at(now) == g
        }
        Signal::BmsAlarms => b.bms_alarms.quality_at(now) == g,
        Signal::BmsReady => b.bms_ready.quality_at(now) == g,
        Signal::InverterPower => s.inverter.active_power.quality_at(now) == g,
        Signal::InverterState => s.inverter.state.quality_at(now) == g,
        Signal::InverterTemperature => s.inverter.temperature.quality_at(now) == g,
        Signal::GridPower => s.grid.active_power.quality_at(now) == g,
        Signal::GridVoltageFrequency => {
            s.grid.voltage.quality_at(now) == g && s.grid.frequency.quality_at(now) == g
        }
        Signal::PvPower => s.pv_power.quality_at(now) == g,
        Signal::Contactor => s.contactor.quality_at(now) == g,
        Signal::Precharge => s.precharge_done.quality_at(now) == g,
        Signal::EStop => s.estop.quality_at(now) == g,
    }
}

/// Signal-loss bookkeeping for one signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LossTracker {
    ever_good: bool,
    bad_since: Option<Millis>,
}

impl LossTracker {
    const INIT: Self = Self { ever_good: false, bad_since: None };
}

/// The stateful safety monitor. Call [`Self::evaluate`] once per control cycle with a
/// monotonic `now`: debounce, hysteresis, trends and signal-loss timers all live here.
#[derive(Debug, Clone)]
pub struct SafetyMonitor {
    config: SafetyConfig,
    limits: LimitMonitor,
    trend: TrendAnalyzer,
    loss: [LossTracker; NEEDS.len() + 1],
    grid_needed: (bool, bool),
    contactor_known_open: bool,
    frozen: Option<FrozenBmsDetector>,
    recovering: bool,
}

impl SafetyMonitor {
    /// A monitor with no history. The configuration is used as given; call
    /// [`SafetyConfig::validate`] first (or use [`Self::try_new`]).
    #[must_use]
    pub fn new(config: SafetyConfig) -> Self {
        let limits = LimitMonitor::new(&config.limits);
        let trend = TrendAnalyzer::new(&config.trend, &config.limits);
        let grid_needed = config.grid_needed();
        Self {
            limits,
            trend,
            loss: [LossTracker::INIT; NEEDS.len() + 1],
            grid_needed,
            contactor_known_open: false,
            frozen: config.frozen_bms.map(FrozenBmsDetector::new),
            recovering: false,
            config,
        }
    }

    /// Validate, then build.
    ///
    /// # Errors
    /// [`ConfigError`] from [`SafetyConfig::validate`].
    pub fn try_new(config: SafetyConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self::new(config))
    }

    /// The configuration in use.
    #[must_use]
    pub const fn config(&self) -> &SafetyConfig {
        &self.config
    }

    /// The limit monitor (levels, crossings for display).
    #[must_use]
    pub const fn limits(&self) -> &LimitMonitor {
        &self.limits
    }

    /// The trend analyzer (time-to-trip predictions).
    #[must_use]
    pub const fn trend(&self) -> &TrendAnalyzer {
        &self.trend
    }

    /// Current level of `q` (diagnostics).
    #[must_use]
    pub fn level(&self, q: Quantity) -> Level {
        self.limits.level(q)
    }

    /// Unlatch limit trips; call after the operator's acknowledge was accepted (see
    /// [`Self::active_fault`]).
    pub fn reset_latches(&mut self) {
        self.limits.reset_latches();
    }

    /// The operator's acknowledge was accepted: unlatch limit trips and, when a cell
    /// under-voltage is still present and [`SafetyConfig::recovery_charge_current`] is set,
    /// enter the supervised deep-discharge recovery.
    ///
    /// **Recovery design (issue #10).** A pack below its under-voltage trip cannot leave ERROR
    /// by an acknowledge alone: the fault is still present, and with the command zero in ERROR
    /// nothing ever brings it back — a real pack meanwhile keeps losing charge to self-discharge
    /// and the BMS's own supply. Adding a sixth state, or letting ERROR command power, would
    /// break design.md §5/§6. Instead the under-voltage family (the BMS's cell under-voltage
    /// alarm and the cell-voltage-low trip) does not block the acknowledge
    /// ([`Self::active_fault`]); the acknowledge puts the monitor into *recovery*, and the
    /// system then runs in RUNNING — where the invariant allows a command — with an envelope
    /// that forbids discharge and bounds charge to pack voltage × `recovery_charge_current`
    /// (a small fraction of C, as Victron's BatteryLife recharges a pack left below its limit).
    /// In recovery the cell-voltage-low limit stops at its alarm level (no new trip, discharge
    /// zero) and a BMS under-voltage alarm alone zeroes discharge only; every other limit,
    /// alarm, interlock and trip acts as always. Recovery ends by itself once the lowest cell is
    /// back above the level where the cell-voltage-low alarm is left (alarm + hysteresis) and
    /// the BMS has cleared its alarm. Recovery is never entered without an operator's
    /// acknowledge: the automatic part is only the bounded charge.
    pub fn acknowledge(&mut self, snapshot: &Snapshot, now: Millis) {
        self.limits.reset_latches();
        if self.uv_recoverable(snapshot, now) && self.under_voltage_present(snapshot, now) {
            self.recovering = true;
            self.limits.cap_at_alarm(Quantity::CellVoltageLow, true);
        }
    }

    /// Whether the supervised deep-discharge recovery is active (see [`Self::acknowledge`]).
    #[must_use]
    pub const fn recovering(&self) -> bool {
        self.recovering
    }

    /// Whether the BMS currently looks frozen (see [`crate::plausibility`]).
    #[must_use]
    pub fn bms_frozen(&self) -> bool {
        self.frozen.is_some_and(|f| f.frozen())
    }

    /// Where the recovery ends: the lowest cell back where the cell-voltage-low alarm is left.
    fn recovery_exit(&self) -> ems_core::Volts {
        self.config.limits.cell_voltage_low.alarm + self.config.limits.cell_voltage_low.hysteresis
    }

    /// Whether a cell under-voltage may be recovered by a charge: recovery is configured and
    /// the lowest cell *measured* is below the recovery exit. A BMS under-voltage alarm with
    /// healthy cell readings is a BMS fault, not a discharged pack: it keeps blocking.
    fn uv_recoverable(&self, s: &Snapshot, now: Millis) -> bool {
        self.config.recovery_charge_current.is_some()
            && s.battery.cell_voltage_min.value_at(now).is_some_and(|v| v < self.recovery_exit())
    }

    /// A cell under-voltage (BMS alarm, the limit's trip condition or its latched trip).
    fn under_voltage_present(&self, s: &Snapshot, now: Millis) -> bool {
        s.battery.bms_alarms.value_at(now).is_some_and(|a| a.contains(BmsAlarm::CellUnderVoltage))
            || self.limits.level(Quantity::CellVoltageLow) >= Level::Alarm
            || self.limits.trip_condition_of(Quantity::CellVoltageLow, s, now)
    }

    /// Recovery bookkeeping and its envelope, once per cycle.
    fn recovery(&mut self, s: &Snapshot, now: Millis, env: &mut Envelope) {
        if !self.recovering {
            return;
        }
        let exit = self.recovery_exit();
        let cells_back = s.battery.cell_voltage_min.value_at(now).is_some_and(|v| v >= exit);
        let bms_clear =
            s.battery.bms_alarms.value_at(now).is_some_and(|a| !a.contains(BmsAlarm::CellUnderVoltage));
        if cells_back && bms_clear {
            self.recovering = false;
            self.limits.cap_at_alarm(Quantity::CellVoltageLow, false);
            return;
        }
        let c = Constraint::Limit(Quantity::CellVoltageLow);
        env.limit_discharge(Watts::ZERO, c);
        let current = self.config.recovery_charge_current.unwrap_or(Amps::ZERO);
        match s.battery.pack_voltage.value_at(now) {
            Some(v) => env.limit_charge(v.times(current.abs()), c),
            None => env.limit_charge(Watts::ZERO, Constraint::SignalUnavailable(Signal::PackVoltage)),
        }
    }

    /// Evaluate one cycle. Emits [`ems_core::EventKind::LimitLevel`] on every level change and
    /// [`ems_core::EventKind::TrendWarning`] on entering a trend prediction inside its horizon.
    /// Trips found are listed in [`Envelope::trips`]; the caller latches them (they are
    /// reported in every cycle the condition is present, and limit trips until
    /// [`Self::reset_latches`]).
    pub fn evaluate(&mut self, snapshot: &Snapshot, now: Millis, events: &mut Events) -> Envelope {
        let rating = snapshot.inverter.rated_power.max(Watts::ZERO);
        let mut env = Envelope::new(rating);
        let b = &snapshot.battery;

        self.signals(snapshot, now, &mut env);
        if let Some(f) = self.frozen.as_mut() {
            if f.update(snapshot, now) {
                // A BMS reading that stopped moving under load is no measurement: the worst
                // case of unavailable BMS signals (the contactor may still close, so that an
                // inverter on the DC bus can report and the verdict can clear).
                env.limit_both(Watts::ZERO, Constraint::SignalUnavailable(Signal::Soc));
            }
        }
        self.recovery(snapshot, now, &mut env);

        // BMS limits, per direction.
        match b.bms_charge_limit.value_at(now) {
            Some(w) => env.limit_charge(w, Constraint::BmsLimit),
            None => env.limit_charge(Watts::ZERO, Constraint::SignalUnavailable(Signal::BmsLimits)),
        }
        match b.bms_discharge_limit.value_at(now) {
            Some(w) => env.limit_discharge(w, Constraint::BmsLimit),
            None => env.limit_discharge(Watts::ZERO, Constraint::SignalUnavailable(Signal::BmsLimits)),
        }
        if let Some(alarms) = b.bms_alarms.value_at(now) {
            let uv = BmsAlarms::NONE.with(BmsAlarm::CellUnderVoltage);
            // In recovery the BMS's own under-voltage protection forbids discharge only: the
            // bounded recovery charge is what clears it. Any other alarm acts as always.
            let others =
                if self.recovering { BmsAlarms::from_bits(alarms.bits() & !uv.bits()) } else { alarms };
            if alarms.contains(BmsAlarm::CellUnderVoltage) {
                env.limit_discharge(Watts::ZERO, Constraint::BmsLimit);
            }
            if let Some(alarm) = others.first() {
                env.limit_both(Watts::ZERO, Constraint::BmsLimit);
                env.add_trip(TripReason::Bms(alarm));
            }
        }
        match snapshot.inverter.state.value_at(now) {
            Some(InverterState::Fault) => {
                env.limit_both(Watts::ZERO, Constraint::InverterRating);
                env.add_trip(TripReason::InverterFault);
            }
            Some(InverterState::Running | InverterState::Standby) | None => {}
        }
        match snapshot.estop.value_at(now) {
            Some(EStopInput::Pressed) => {
                env.limit_both(Watts::ZERO, Constraint::EmergencyStop);
                env.forbid_contactor_close(Constraint::EmergencyStop);
            }
            Some(EStopInput::Released) | None => {}
        }

        self.limits.update(snapshot, now, events);
        self.limits.apply(&mut env);

        if let Some(v) = b.pack_voltage.value_at(now) {
            env.limit_charge(
                v.times(self.config.pack_max_charge_current.abs()),
                Constraint::Limit(Quantity::ChargeCurrent),
            );
            env.limit_discharge(
                v.times(self.config.pack_max_discharge_current.abs()),
                Constraint::Limit(Quantity::DischargeCurrent),
            );
        }

        self.config.derating.apply(snapshot, now, rating, &mut env);

        self.trend.update(snapshot, now, events);
        self.trend.apply(rating, &mut env);

        let _ = self.config.interlocks.apply(snapshot, now, &mut env);

        self.grid(snapshot, now, &mut env);
        env
    }

    /// Worst case for unavailable signals, and signal-loss trips.
    fn signals(&mut self, s: &Snapshot, now: Millis, env: &mut Envelope) {
        match s.contactor.value_at(now) {
            Some(ContactorState::Open) => self.contactor_known_open = true,
            Some(ContactorState::Precharging | ContactorState::Closed) => self.contactor_known_open = false,
            // Unknown: keep the last known position.
            None => {}
        }
        let armed = !self.contactor_known_open;
        let after = self.config.signal_loss_trip_after;
        for (need, tracker) in NEEDS.iter().zip(self.loss.iter_mut()) {
            let good = signal_good(s, need.signal, now);
            if !good {
                let c = Constraint::SignalUnavailable(need.signal);
                env.limit_both(Watts::ZERO, c);
                if need.forbid_close {
                    env.forbid_contactor_close(c);
                }
            }
            if track(tracker, good, armed, now, after) {
                env.add_trip(TripReason::SignalLost(need.signal));
            }
        }
        let (imp, exp) = self.grid_needed;
        if imp || exp {
            let good = signal_good(s, Signal::GridPower, now);
            if !good {
                let c = Constraint::SignalUnavailable(Signal::GridPower);
                if imp {
                    env.limit_charge(Watts::ZERO, c);
                }
                if exp {
                    env.limit_discharge(Watts::ZERO, c);
                }
            }
            if let Some(tracker) = self.loss.get_mut(GRID_TRACKER) {
                if track(tracker, good, armed, now, after) {
                    env.add_trip(TripReason::SignalLost(Signal::GridPower));
                }
            }
        }
    }

    /// Grid connection limits at the meter: charging adds to import, discharging to export.
    fn grid(&self, s: &Snapshot, now: Millis, env: &mut Envelope) {
        let (Some(grid), Some(battery)) =
            (s.grid.active_power.value_at(now), s.inverter.active_power.value_at(now))
        else {
            return;
        };
        // Grid power with the battery idle (= load − PV).
        let net = grid + battery;
        if let Some(limit) = self.config.grid_import_limit {
            env.limit_charge(limit - net, Constraint::GridImportLimit);
        }
        if let Some(limit) = self.config.grid_export_limit {
            env.limit_discharge(limit + net, Constraint::GridExportLimit);
        }
    }

    /// A fault condition still present in `snapshot` at `now` (refuse an acknowledge while
    /// this is `Some`): a BMS alarm, an inverter fault, a limit at its trip level, a runaway
    /// temperature rise, or a signal still lost.
    #[must_use]
    pub fn active_fault(&self, snapshot: &Snapshot, now: Millis) -> Option<TripReason> {
        // With recovery configured, a cell under-voltage is cleared by the recovery charge that
        // the acknowledge starts (see [`Self::acknowledge`]), so it does not block it.
        let recoverable = self.uv_recoverable(snapshot, now);
        let uv = if recoverable { BmsAlarms::NONE.with(BmsAlarm::CellUnderVoltage).bits() } else { 0 };
        if let Some(a) = snapshot
            .battery
            .bms_alarms
            .value_at(now)
            .and_then(|a| BmsAlarms::from_bits(a.bits() & !uv).first())
        {
            return Some(TripReason::Bms(a));
        }
        if snapshot.inverter.state.value_at(now) == Some(InverterState::Fault) {
            return Some(TripReason::InverterFault);
        }
        let skip = recoverable.then_some(Quantity::CellVoltageLow);
        if let Some(q) = self.limits.trip_condition_except(snapshot, now, skip) {
            return Some(TripReason::Limit(q));
        }
        if self.trend.runaway() {
            return Some(TripReason::Runaway(Quantity::CellTempHigh));
        }
        let after = self.config.signal_loss_trip_after;
        let lost = |t: &LossTracker| t.bad_since.is_some_and(|since| now.since(since) > after);
        for (need, t) in NEEDS.iter().zip(self.loss.iter()) {
            if lost(t) && !signal_good(snapshot, need.signal, now) {
                return Some(TripReason::SignalLost(need.signal));
            }
        }
        if let Some(t) = self.loss.get(GRID_TRACKER) {
            if lost(t) && !signal_good(snapshot, Signal::GridPower, now) {
                return Some(TripReason::SignalLost(Signal::GridPower));
            }
        }
        None
    }
}

/// Update one loss tracker; returns whether the signal counts as lost.
fn track(t: &mut LossTracker, good: bool, armed: bool, now: Millis, after: Millis) -> bool {
    if good {
        t.ever_good = true;
        t.bad_since = None;
        return false;
    }
    if !t.ever_good || !armed {
        t.bad_since = None;
        return false;
    }
    let since = *t.bad_since.get_or_insert(now);
    now.since(since) > after
}

/// Stateless evaluation (`ems_safety::evaluate` in design.md): a fresh monitor with no
/// debounce, trend or signal-loss history. Limit levels are taken directly from the values
/// (the first value of a quantity sets its level without debounce), so this is never more
/// permissive than a long-running monitor that has settled on the same snapshot.
#[must_use]
pub fn evaluate_once(config: &SafetyConfig, snapshot: &Snapshot, now: Millis) -> Envelope {
    let mut events = Events::new();
    SafetyMonitor::new(config.clone()).evaluate(snapshot, now, &mut events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{healthy_snapshot, refreshed};
    use ems_core::snapshot::{BmsAlarm, BmsAlarms};
    use ems_core::{Celsius, EventKind, Measurement};

    const NOW: Millis = Millis::new(100_000);

    fn monitor() -> SafetyMonitor {
        SafetyMonitor::try_new(SafetyConfig::default()).unwrap()
    }

    #[test]
    fn healthy_site_gets_the_full_rating() {
        let mut m = monitor();
        let mut ev = Events::new();
        let env = m.evaluate(&healthy_snapshot(NOW), NOW, &mut ev);
        assert_eq!(env.max_charge(), ems_core::watts!(5000.0), "{env:?}");
        assert_eq!(env.max_discharge(), ems_core::watts!(5000.0), "{env:?}");
        assert!(env.contactor_close_allowed());
        assert!(env.trips().is_empty());
        assert!(ev.is_empty());
    }

    #[test]
    fn bms_alarm_trips_and_zeroes() {
        let mut s = healthy_snapshot(NOW);
        s.battery.bms_alarms =
            Measurement::good(BmsAlarms::NONE.with(BmsAlarm::OverTemperature), NOW, Millis::from_secs(5));
        let env = evaluate_once(&SafetyConfig::default(), &s, NOW);
        assert_eq!(env.max_charge(), Watts::ZERO);
        assert_eq!(env.max_discharge(), Watts::ZERO);
        assert!(env.trips().contains(&TripReason::Bms(BmsAlarm::OverTemperature)));
        assert!(!env.contactor_close_allowed());
        assert_eq!(monitor().active_fault(&s, NOW), Some(TripReason::Bms(BmsAlarm::OverTemperature)));
    }

    #[test]
    fn inverter_fault_trips() {
        let mut s = healthy_snapshot(NOW);
        s.inverter.state = Measurement::good(InverterState::Fault, NOW, Millis::from_secs(5));
        let env = evaluate_once(&SafetyConfig::default(), &s, NOW);
        assert_eq!(env.max_discharge(), Watts::ZERO);
        assert!(env.trips().contains(&TripReason::InverterFault));
    }

    #[test]
    fn grid_import_limit_limits_charging() {
        let mut s = healthy_snapshot(NOW);
        // House draws 15 kW from the grid, battery idle: 2.25 kW left under the 17.25 kW fuse.
        s.grid.active_power = Measurement::good(ems_core::watts!(15_000.0), NOW, Millis::from_secs(2));
        let env = evaluate_once(&SafetyConfig::default(), &s, NOW);
        assert_eq!(env.max_charge(), ems_core::watts!(2250.0));
        assert_eq!(env.charge_binding(), Some(Constraint::GridImportLimit));
        assert_eq!(env.max_discharge(), ems_core::watts!(5000.0));
        // Already charging at 2 kW (grid includes it): the headroom accounts for it.
        s.inverter.active_power = Measurement::good(ems_core::watts!(-2000.0), NOW, Millis::from_secs(2));
        let env = evaluate_once(&SafetyConfig::default(), &s, NOW);
        assert_eq!(env.max_charge(), ems_core::watts!(4250.0));
    }

    #[test]
    fn grid_export_cap_limits_discharging() {
        let mut s = healthy_snapshot(NOW);
        // PV exports 8 kW with the battery idle: 2 kW of discharge left under the 10 kW cap.
        s.grid.active_power = Measurement::good(ems_core::watts!(-8_000.0), NOW, Millis::from_secs(2));
        let env = evaluate_once(&SafetyConfig::default(), &s, NOW);
        assert_eq!(env.max_discharge(), ems_core::watts!(2000.0));
        assert_eq!(env.discharge_binding(), Some(Constraint::GridExportLimit));
    }

    #[test]
    fn stale_and_invalid_signals_zero() {
        let cfg = SafetyConfig::default();
        // Stale: everything read at NOW, evaluated 6 s later.
        let later = NOW.plus(Millis::from_secs(6));
        let env = evaluate_once(&cfg, &healthy_snapshot(NOW), later);
        assert_eq!(env.max_charge(), Watts::ZERO);
        assert_eq!(env.max_discharge(), Watts::ZERO);
        assert!(!env.contactor_close_allowed());
        // A NaN register is refused at the boundary and stored as invalid.
        let mut s = healthy_snapshot(NOW);
        assert!(Celsius::try_new(f32::NAN).is_err());
        s.battery.cell_temp_max.invalidate();
        let env = evaluate_once(&cfg, &s, NOW);
        assert_eq!(env.max_charge(), Watts::ZERO);
        assert!(env.charge_reasons().contains(&Constraint::SignalUnavailable(Signal::CellTemperature)));
        // Unknown snapshot: nothing allowed.
        let env = evaluate_once(&cfg, &Snapshot::unknown(ems_core::watts!(5000.0)), NOW);
        assert_eq!((env.max_charge(), env.max_discharge()), (Watts::ZERO, Watts::ZERO));
        assert!(env.trips().is_empty(), "never-good signals do not trip");
    }

    #[test]
    fn grid_meter_loss_zeroes_only_limited_sides() {
        let mut s = healthy_snapshot(NOW);
        s.grid.active_power.invalidate();
        let env = evaluate_once(&SafetyConfig::default(), &s, NOW);
        assert_eq!((env.max_charge(), env.max_discharge()), (Watts::ZERO, Watts::ZERO));
        let cfg = SafetyConfig::for_site(
            ems_core::amps!(100.0),
            ems_core::amps!(100.0),
            Some(ems_core::watts!(17_250.0)),
            None,
        );
        let env = evaluate_once(&cfg, &s, NOW);
        assert_eq!(env.max_charge(), Watts::ZERO);
        assert_eq!(env.max_discharge(), ems_core::watts!(5000.0));
    }

    #[test]
    fn signal_lost_trips_only_after_being_good_once() {
        let mut m = monitor();
        let mut ev = Events::new();
        let mut s = healthy_snapshot(NOW);
        s.battery.soc.invalidate();
        // Never good: no trip however long.
        for k in 0..30u64 {
            let now = NOW.plus(Millis::from_secs(k));
            let env = m.evaluate(&refreshed(s, now), now, &mut ev);
            assert!(env.trips().is_empty());
        }
        // Good once, then lost for > 10 s.
        let t0 = NOW.plus(Millis::from_secs(30));
        let env = m.evaluate(&healthy_snapshot(t0), t0, &mut ev);
        assert!(env.trips().is_empty());
        let mut tripped_at = None;
        for k in 1..20u64 {
            let now = t0.plus(Millis::from_secs(k));
            let env = m.evaluate(&refreshed(s, now), now, &mut ev);
            if env.trips().contains(&TripReason::SignalLost(Signal::Soc)) {
                tripped_at = Some(k);
                break;
            }
        }
        assert_eq!(tripped_at, Some(12), "lost at t0+1 s, trips once unavailable for more than 10 s");
        let now = t0.plus(Millis::from_secs(13));
        assert_eq!(m.active_fault(&refreshed(s, now), now), Some(TripReason::SignalLost(Signal::Soc)));
        assert_eq!(m.active_fault(&healthy_snapshot(now), now), None);
    }

    #[test]
    fn signal_loss_is_not_counted_with_the_contactor_open() {
        let mut m = monitor();
        let mut ev = Events::new();
        let mut s = healthy_snapshot(NOW);
        s.contactor = Measurement::good(ContactorState::Open, NOW, Millis::from_secs(2));
        let _ = m.evaluate(&s, NOW, &mut ev);
        s.inverter.active_power.invalidate();
        for k in 1..30u64 {
            let now = NOW.plus(Millis::from_secs(k));
            let env = m.evaluate(&refreshed(s, now), now, &mut ev);
            assert!(env.trips().is_empty());
        }
    }

    #[test]
    fn limit_trip_latches_and_active_fault_guards_the_reset() {
        let mut m = monitor();
        let mut ev = Events::new();
        let mut s = healthy_snapshot(NOW);
        s.battery.cell_voltage_max = Measurement::good(ems_core::volts!(3.70), NOW, Millis::from_secs(2));
        let env = m.evaluate(&s, NOW, &mut ev);
        assert!(env.trips().contains(&TripReason::Limit(Quantity::CellVoltageHigh)));
        assert_eq!(m.level(Quantity::CellVoltageHigh), Level::Trip);
        assert!(ev.iter().any(|e| matches!(e.kind, EventKind::LimitLevel { level: Level::Trip, .. })));
        assert_eq!(m.active_fault(&s, NOW), Some(TripReason::Limit(Quantity::CellVoltageHigh)));
        let now = NOW.plus(Millis::from_secs(1));
        let ok = healthy_snapshot(now);
        let env = m.evaluate(&ok, now, &mut ev);
        assert!(env.trips().contains(&TripReason::Limit(Quantity::CellVoltageHigh)), "latched");
        assert_eq!(m.active_fault(&ok, now), None);
        m.reset_latches();
        let env = m.evaluate(&ok, now, &mut ev);
        assert!(env.trips().is_empty());
    }

    #[test]
    fn pack_current_limits_power_at_low_voltage() {
        let mut s = healthy_snapshot(NOW);
        s.battery.pack_voltage = Measurement::good(ems_core::volts!(46.0), NOW, Millis::from_secs(2));
        let env = evaluate_once(&SafetyConfig::default(), &s, NOW);
        assert_eq!(env.max_discharge(), ems_core::watts!(4600.0));
        assert_eq!(env.discharge_binding(), Some(Constraint::Limit(Quantity::DischargeCurrent)));
    }

    #[test]
    fn estop_pressed_zeroes_and_forbids_close() {
        let mut s = healthy_snapshot(NOW);
        s.estop = Measurement::good(EStopInput::Pressed, NOW, Millis::new(500));
        let env = evaluate_once(&SafetyConfig::default(), &s, NOW);
        assert_eq!((env.max_charge(), env.max_discharge()), (Watts::ZERO, Watts::ZERO));
        assert!(!env.contactor_close_allowed());
    }

    #[test]
    fn config_validation_names_the_field() {
        let c = SafetyConfig { pack_max_charge_current: ems_core::amps!(-5.0), ..SafetyConfig::default() };
        let err = c.validate().unwrap_err();
        assert!(matches!(err, ConfigError::OutOfRange { field: "pack_max_charge_current", .. }));
        assert!(err.to_string().contains("pack_max_charge_current: -5"), "{err}");
        let mut c = SafetyConfig::default();
        c.limits.soc_low.alarm = ems_core::percent!(20.0);
        assert!(matches!(c.validate(), Err(ConfigError::LevelOrder { field: "limits.soc_low.alarm", .. })));
    }

    /// A pack drained to its cut-off: lowest cell 2.45 V, SOC 0 %, the BMS's under-voltage
    /// alarm set and its discharge limit zero.
    fn deeply_discharged(now: Millis) -> Snapshot {
        let mut s = healthy_snapshot(now);
        let b = &mut s.battery;
        b.soc = Measurement::good(Percent::ZERO, now, Millis::from_secs(5));
        b.cell_voltage_min = Measurement::good(ems_core::volts!(2.45), now, Millis::from_secs(2));
        b.cell_voltage_max = Measurement::good(ems_core::volts!(2.52), now, Millis::from_secs(2));
        b.pack_voltage = Measurement::good(ems_core::volts!(40.0), now, Millis::from_secs(2));
        b.bms_discharge_limit = Measurement::good(Watts::ZERO, now, Millis::from_secs(5));
        b.bms_alarms =
            Measurement::good(BmsAlarms::NONE.with(BmsAlarm::CellUnderVoltage), now, Millis::from_secs(5));
        s
    }

    #[test]
    fn deep_discharge_trips_then_the_acknowledge_starts_a_bounded_recovery_charge() {
        let mut m = monitor();
        let mut ev = Events::new();
        let s = deeply_discharged(NOW);
        let env = m.evaluate(&s, NOW, &mut ev);
        assert!(env.trips().contains(&TripReason::Bms(BmsAlarm::CellUnderVoltage)), "{env:?}");
        assert_eq!(env.max_charge(), Watts::ZERO);
        // The under-voltage family does not block the acknowledge (another alarm would).
        assert_eq!(m.active_fault(&s, NOW), None);
        let mut other = s;
        other.battery.bms_alarms = Measurement::good(
            BmsAlarms::NONE.with(BmsAlarm::CellUnderVoltage).with(BmsAlarm::Internal),
            NOW,
            Millis::from_secs(5),
        );
        assert_eq!(m.active_fault(&other, NOW), Some(TripReason::Bms(BmsAlarm::Internal)));

        m.acknowledge(&s, NOW);
        assert!(m.recovering());
        // Recovery: no trip, discharge zero, charge bounded to 40 V × 5 A = 200 W, contactor
        // may close.
        for k in 1..=30 {
            let now = NOW.plus(Millis::from_secs(k));
            let env = m.evaluate(&refreshed(s, now), now, &mut ev);
            assert!(env.trips().is_empty(), "{k}: {env:?}");
            assert_eq!(env.max_discharge(), Watts::ZERO);
            assert!((env.max_charge().get() - 200.0).abs() < 1e-3, "{env:?}");
            assert!(env.contactor_close_allowed(), "{env:?}");
        }
        // Another fault in recovery trips as always.
        let now = NOW.plus(Millis::from_secs(31));
        let env = m.evaluate(&refreshed(other, now), now, &mut ev);
        assert!(env.trips().contains(&TripReason::Bms(BmsAlarm::Internal)));
        assert_eq!(env.max_charge(), Watts::ZERO);

        // Cells back above the alarm + hysteresis (2.90 V) and the BMS clear: recovery ends.
        let now = NOW.plus(Millis::from_secs(40));
        let mut back = healthy_snapshot(now);
        back.battery.cell_voltage_min = Measurement::good(ems_core::volts!(2.95), now, Millis::from_secs(2));
        let _ = m.evaluate(&back, now, &mut ev);
        assert!(!m.recovering());
    }

    #[test]
    fn without_recovery_configured_the_under_voltage_blocks_the_acknowledge() {
        let mut m =
            SafetyMonitor::try_new(SafetyConfig { recovery_charge_current: None, ..SafetyConfig::default() })
                .unwrap();
        let s = deeply_discharged(NOW);
        assert_eq!(m.active_fault(&s, NOW), Some(TripReason::Bms(BmsAlarm::CellUnderVoltage)));
        m.acknowledge(&s, NOW);
        assert!(!m.recovering());
    }

    #[test]
    fn a_bms_under_voltage_alarm_with_healthy_cells_keeps_blocking() {
        let mut m = monitor();
        let mut s = healthy_snapshot(NOW);
        s.battery.bms_alarms =
            Measurement::good(BmsAlarms::NONE.with(BmsAlarm::CellUnderVoltage), NOW, Millis::from_secs(5));
        assert_eq!(m.active_fault(&s, NOW), Some(TripReason::Bms(BmsAlarm::CellUnderVoltage)));
        m.acknowledge(&s, NOW);
        assert!(!m.recovering());
    }

    #[test]
    fn an_acknowledge_without_under_voltage_is_no_recovery() {
        let mut m = monitor();
        m.acknowledge(&healthy_snapshot(NOW), NOW);
        assert!(!m.recovering());
    }

    #[test]
    fn a_frozen_bms_under_load_zeroes_both_directions() {
        let mut m = monitor();
        let mut ev = Events::new();
        let mut s = healthy_snapshot(NOW);
        s.inverter.active_power = Measurement::good(ems_core::watts!(3000.0), NOW, Millis::from_secs(2));
        for k in 0..=31 {
            let now = NOW.plus(Millis::from_secs(k));
            let env = m.evaluate(&refreshed(s, now), now, &mut ev);
            if k < 30 {
                assert!(env.max_discharge() > Watts::ZERO, "{k}");
            } else {
                assert_eq!(env.max_discharge(), Watts::ZERO, "{k}");
                assert_eq!(env.max_charge(), Watts::ZERO, "{k}");
                assert!(m.bms_frozen());
            }
        }
    }

    use ems_core::Percent;
}
