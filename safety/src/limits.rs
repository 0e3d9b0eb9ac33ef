//! The limit monitor: warn / alarm / trip levels per watched [`Quantity`], with hysteresis,
//! debounce and a latched trip.
//!
//! Every quantity has a [`LimitSpec`] in its own unit. A level is entered once the value has
//! reached it continuously for `debounce`; a level is left only once the value has come back
//! past it by `hysteresis`, again for `debounce`. The very first good value of a quantity sets
//! its level at once (there is no history to debounce against, and waiting would be the
//! optimistic choice). A trip level latches until [`LimitMonitor::reset_latches`].
//!
//! Effects on the envelope ([`LimitMonitor::apply`]): an alarm zeroes the direction the
//! quantity affects ([`Quantity`] → [`PowerDirection`] in [`alarm_direction`]); a trip zeroes
//! both directions and reports [`TripReason::Limit`].

use crate::envelope::Envelope;
use crate::error::ConfigError;
use crate::scalar::sealed::Sealed;
use crate::scalar::Scalar;
use core::fmt;
use ems_core::event::{Constraint, Value};
use ems_core::{
    Amps, Celsius, EventKind, Events, Level, Millis, Percent, Quantity, Snapshot, TripReason, Volts, Watts,
};

/// Which way a value moves to become dangerous.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Higher is worse: `warn ≤ alarm ≤ trip` (over-voltage, over-temperature, over-current).
    Rising,
    /// Lower is worse: `warn ≥ alarm ≥ trip` (under-voltage, under-temperature, low SOC).
    Falling,
}

/// Which power direction(s) a condition affects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PowerDirection {
    /// Charging only.
    Charge,
    /// Discharging only.
    Discharge,
    /// Both directions.
    Both,
}

/// The direction an alarm level of `q` zeroes.
#[must_use]
pub const fn alarm_direction(q: Quantity) -> PowerDirection {
    match q {
        Quantity::CellVoltageHigh
        | Quantity::CellTempLow
        | Quantity::ChargeCurrent
        | Quantity::SocHigh
        | Quantity::GridImport => PowerDirection::Charge,
        Quantity::CellVoltageLow | Quantity::DischargeCurrent | Quantity::SocLow | Quantity::GridExport => {
            PowerDirection::Discharge
        }
        Quantity::CellTempHigh | Quantity::InverterTemp => PowerDirection::Both,
    }
}

/// Whether a trip of `q` concerns the battery itself (and so also forbids closing the main
/// contactor). Inverter and grid trips zero power but leave contactor sequencing to the state
/// machine, because an inverter powered from the DC bus needs the contactor to recover.
#[must_use]
pub const fn trip_forbids_contactor_close(q: Quantity) -> bool {
    match q {
        Quantity::CellVoltageHigh
        | Quantity::CellVoltageLow
        | Quantity::CellTempHigh
        | Quantity::CellTempLow
        | Quantity::ChargeCurrent
        | Quantity::DischargeCurrent
        | Quantity::SocHigh
        | Quantity::SocLow => true,
        Quantity::InverterTemp | Quantity::GridImport | Quantity::GridExport => false,
    }
}

/// Thresholds for one quantity, in its unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimitSpec<T: Scalar> {
    /// Which way is dangerous.
    pub direction: Direction,
    /// Warn level (logged only).
    pub warn: T,
    /// Alarm level (zeroes the affected direction).
    pub alarm: T,
    /// Trip level (latched, zeroes both directions, trips the system); `None` = no trip.
    pub trip: Option<T>,
    /// How far the value must come back past a level before the level is left (≥ 0).
    pub hysteresis: T,
    /// How long a condition must hold before the level changes.
    pub debounce: Millis,
}

impl<T: Scalar> LimitSpec<T> {
    /// A rising limit (higher is worse).
    #[must_use]
    pub const fn rising(warn: T, alarm: T, trip: Option<T>, hysteresis: T, debounce: Millis) -> Self {
        Self { direction: Direction::Rising, warn, alarm, trip, hysteresis, debounce }
    }

    /// A falling limit (lower is worse).
    #[must_use]
    pub const fn falling(warn: T, alarm: T, trip: Option<T>, hysteresis: T, debounce: Millis) -> Self {
        Self { direction: Direction::Falling, warn, alarm, trip, hysteresis, debounce }
    }

    /// The threshold of `level` (`None` for [`Level::Normal`] and an absent trip).
    #[must_use]
    pub fn threshold(&self, level: Level) -> Option<T> {
        match level {
            Level::Normal => None,
            Level::Warn => Some(self.warn),
            Level::Alarm => Some(self.alarm),
            Level::Trip => self.trip,
        }
    }

    /// Check ordering and ranges. `fields` = (warn, alarm, trip, hysteresis) field names.
    fn validate(&self, fields: [&'static str; 4]) -> Result<(), ConfigError> {
        let [warn_f, alarm_f, trip_f, hyst_f] = fields;
        for (v, f) in
            [(self.warn.raw(), warn_f), (self.alarm.raw(), alarm_f), (self.hysteresis.raw(), hyst_f)]
        {
            if !v.is_finite() {
                return Err(ConfigError::NotFinite { field: f, value: v });
            }
        }
        let h = self.hysteresis.raw();
        if h < 0.0 {
            return Err(ConfigError::OutOfRange { field: hyst_f, value: h, expected: "≥ 0" });
        }
        let worse_or_equal = |a: f32, b: f32| match self.direction {
            Direction::Rising => b >= a,
            Direction::Falling => b <= a,
        };
        if !worse_or_equal(self.warn.raw(), self.alarm.raw()) {
            return Err(ConfigError::LevelOrder { field: alarm_f, value: self.alarm.raw() });
        }
        if let Some(t) = self.trip {
            let t = t.raw();
            if !t.is_finite() {
                return Err(ConfigError::NotFinite { field: trip_f, value: t });
            }
            if !worse_or_equal(self.alarm.raw(), t) {
                return Err(ConfigError::LevelOrder { field: trip_f, value: t });
            }
        }
        Ok(())
    }

    fn to_raw(self) -> RawSpec {
        RawSpec {
            direction: self.direction,
            warn: self.warn.raw(),
            alarm: self.alarm.raw(),
            trip: self.trip.map(Sealed::raw),
            hysteresis: self.hysteresis.raw(),
            debounce: self.debounce,
        }
    }
}

/// Limit specifications for all quantities.
///
/// Defaults (see [`LimitConfig::default`]) are for a 16-cell LFP pack; current and grid specs
/// come from [`LimitConfig::for_site`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimitConfig {
    /// Highest cell voltage.
    pub cell_voltage_high: LimitSpec<Volts>,
    /// Lowest cell voltage.
    pub cell_voltage_low: LimitSpec<Volts>,
    /// Highest cell temperature.
    pub cell_temp_high: LimitSpec<Celsius>,
    /// Lowest cell temperature (charging is the concern: its alarm zeroes charging).
    pub cell_temp_low: LimitSpec<Celsius>,
    /// Charge current magnitude.
    pub charge_current: LimitSpec<Amps>,
    /// Discharge current magnitude.
    pub discharge_current: LimitSpec<Amps>,
    /// State of charge, high side.
    pub soc_high: LimitSpec<Percent>,
    /// State of charge, low side.
    pub soc_low: LimitSpec<Percent>,
    /// Inverter heat-sink temperature.
    pub inverter_temp: LimitSpec<Celsius>,
    /// Grid import at the connection point (`None` = not monitored).
    pub grid_import: Option<LimitSpec<Watts>>,
    /// Grid export at the connection point (`None` = not monitored).
    pub grid_export: Option<LimitSpec<Watts>>,
}

/// Default pack maximum current (each direction) used by [`LimitConfig::default`].
pub const DEFAULT_PACK_MAX_CURRENT: Amps = ems_core::amps!(100.0);
/// Default grid import limit: 25 A × 230 V × 3 phases.
pub const DEFAULT_GRID_IMPORT_LIMIT: Watts = ems_core::watts!(17_250.0);
/// Default grid export cap.
pub const DEFAULT_GRID_EXPORT_LIMIT: Watts = ems_core::watts!(10_000.0);

impl Default for LimitConfig {
    fn default() -> Self {
        Self::for_site(
            DEFAULT_PACK_MAX_CURRENT,
            DEFAULT_PACK_MAX_CURRENT,
            Some(DEFAULT_GRID_IMPORT_LIMIT),
            Some(DEFAULT_GRID_EXPORT_LIMIT),
        )
    }
}

impl LimitConfig {
    /// LFP cell defaults plus current and grid specs derived from the site:
    ///
    /// * current: warn at 100 %, alarm at 110 %, trip at 125 % of the pack maximum,
    ///   hysteresis 5 % of it, debounce 2 s;
    /// * grid import/export: warn at 90 %, alarm at 105 % of the connection limit, no trip
    ///   (stopping the battery does not relieve a fuse overloaded by the house), hysteresis 5 %,
    ///   debounce 5 s; `None` limit = not monitored.
    #[must_use]
    pub fn for_site(
        max_charge_current: Amps,
        max_discharge_current: Amps,
        grid_import_limit: Option<Watts>,
        grid_export_limit: Option<Watts>,
    ) -> Self {
        let current = |max: Amps| {
            let max = max.abs();
            LimitSpec::rising(max, max.scale(1.1), Some(max.scale(1.25)), max.scale(0.05), Millis::new(2_000))
        };
        let grid = |limit: Option<Watts>| {
            limit.map(|l| {
                let l = l.abs();
                LimitSpec::rising(l.scale(0.9), l.scale(1.05), None, l.scale(0.05), Millis::new(5_000))
            })
        };
        Self {
            cell_voltage_high: LimitSpec::rising(
                ems_core::volts!(3.55),
                ems_core::volts!(3.60),
                Some(ems_core::volts!(3.65)),
                ems_core::volts!(0.05),
                Millis::new(2_000),
            ),
            cell_voltage_low: LimitSpec::falling(
                ems_core::volts!(2.90),
                ems_core::volts!(2.80),
                Some(ems_core::volts!(2.50)),
                ems_core::volts!(0.10),
                Millis::new(2_000),
            ),
            cell_temp_high: LimitSpec::rising(
                ems_core::celsius!(45.0),
                ems_core::celsius!(50.0),
                Some(ems_core::celsius!(55.0)),
                ems_core::celsius!(2.0),
                Millis::new(5_000),
            ),
            cell_temp_low: LimitSpec::falling(
                ems_core::celsius!(5.0),
                ems_core::celsius!(0.0),
                Some(ems_core::celsius!(-20.0)),
                ems_core::celsius!(2.0),
                Millis::new(5_000),
            ),
            charge_current: current(max_charge_current),
            discharge_current: current(max_discharge_current),
            soc_high: LimitSpec::rising(
                ems_core::percent!(95.0),
                ems_core::percent!(100.0),
                None,
                ems_core::percent!(2.0),
                Millis::new(5_000),
            ),
            soc_low: LimitSpec::falling(
                ems_core::percent!(10.0),
                ems_core::percent!(5.0),
                None,
                ems_core::percent!(2.0),
                Millis::new(5_000),
            ),
            inverter_temp: LimitSpec::rising(
                ems_core::celsius!(70.0),
                ems_core::celsius!(80.0),
                Some(ems_core::celsius!(90.0)),
                ems_core::celsius!(5.0),
                Millis::new(5_000),
            ),
            grid_import: grid(grid_import_limit),
            grid_export: grid(grid_export_limit),
        }
    }

    /// Check every spec: finite, ordered warn → alarm → trip in its direction, hysteresis ≥ 0.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first spec field that breaks one of these rules.
    pub fn validate(&self) -> Result<(), ConfigError> {
        macro_rules! check {
            ($spec:expr, $name:literal) => {
                $spec.validate([
                    concat!("limits.", $name, ".warn"),
                    concat!("limits.", $name, ".alarm"),
                    concat!("limits.", $name, ".trip"),
                    concat!("limits.", $name, ".hysteresis"),
                ])?
            };
        }
        check!(self.cell_voltage_high, "cell_voltage_high");
        check!(self.cell_voltage_low, "cell_voltage_low");
        check!(self.cell_temp_high, "cell_temp_high");
        check!(self.cell_temp_low, "cell_temp_low");
        check!(self.charge_current, "charge_current");
        check!(self.discharge_current, "discharge_current");
        check!(self.soc_high, "soc_high");
        check!(self.soc_low, "soc_low");
        check!(self.inverter_temp, "inverter_temp");
        if let Some(s) = self.grid_import {
            check!(s, "grid_import");
        }
        if let Some(s) = self.grid_export {
            check!(s, "grid_export");
        }
        Ok(())
    }

    /// The trip level of `q` as a value (or its alarm level if it has no trip), used as the
    /// target of trend predictions. `None` if `q` is not monitored.
    #[must_use]
    pub fn trip_or_alarm(&self, q: Quantity) -> Option<Value> {
        fn pick<T: Scalar>(s: &LimitSpec<T>) -> Value {
            s.trip.unwrap_or(s.alarm).to_value()
        }
        match q {
            Quantity::CellVoltageHigh => Some(pick(&self.cell_voltage_high)),
            Quantity::CellVoltageLow => Some(pick(&self.cell_voltage_low)),
            Quantity::CellTempHigh => Some(pick(&self.cell_temp_high)),
            Quantity::CellTempLow => Some(pick(&self.cell_temp_low)),
            Quantity::ChargeCurrent => Some(pick(&self.charge_current)),
            Quantity::DischargeCurrent => Some(pick(&self.discharge_current)),
            Quantity::SocHigh => Some(pick(&self.soc_high)),
            Quantity::SocLow => Some(pick(&self.soc_low)),
            Quantity::InverterTemp => Some(pick(&self.inverter_temp)),
            Quantity::GridImport => self.grid_import.as_ref().map(pick),
            Quantity::GridExport => self.grid_export.as_ref().map(pick),
        }
    }

    fn raw(&self) -> [Option<RawSpec>; 11] {
        let mut out = [None; 11];
        for q in Quantity::ALL {
            let spec = match q {
                Quantity::CellVoltageHigh => Some(self.cell_voltage_high.to_raw()),
                Quantity::CellVoltageLow => Some(self.cell_voltage_low.to_raw()),
                Quantity::CellTempHigh => Some(self.cell_temp_high.to_raw()),
                Quantity::CellTempLow => Some(self.cell_temp_low.to_raw()),
                Quantity::ChargeCurrent => Some(self.charge_current.to_raw()),
                Quantity::DischargeCurrent => Some(self.discharge_current.to_raw()),
                Quantity::SocHigh => Some(self.soc_high.to_raw()),
                Quantity::SocLow => Some(self.soc_low.to_raw()),
                Quantity::InverterTemp => Some(self.inverter_temp.to_raw()),
                Quantity::GridImport => self.grid_import.map(LimitSpec::to_raw),
                Quantity::GridExport => self.grid_export.map(LimitSpec::to_raw),
            };
            if let Some(slot) = out.get_mut(q.index()) {
                *slot = spec;
            }
        }
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct RawSpec {
    direction: Direction,
    warn: f32,
    alarm: f32,
    trip: Option<f32>,
    hysteresis: f32,
    debounce: Millis,
}

impl RawSpec {
    fn threshold(&self, level: Level) -> Option<f32> {
        match level {
            Level::Normal => None,
            Level::Warn => Some(self.warn),
            Level::Alarm => Some(self.alarm),
            Level::Trip => self.trip,
        }
    }

    /// The level reached by `x`, each threshold moved towards normal by `slack`.
    fn level_of(&self, x: f32, slack: f32) -> Level {
        let reached = |thr: f32| match self.direction {
            Direction::Rising => x >= thr - slack,
            Direction::Falling => x <= thr + slack,
        };
        if self.trip.is_some_and(reached) {
            Level::Trip
        } else if reached(self.alarm) {
            Level::Alarm
        } else if reached(self.warn) {
            Level::Warn
        } else {
            Level::Normal
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct QState {
    level: Level,
    initialized: bool,
    up_since: Option<Millis>,
    down_since: Option<Millis>,
    last: Option<Value>,
}

impl QState {
    const INIT: Self =
        Self { level: Level::Normal, initialized: false, up_since: None, down_since: None, last: None };
}

/// A level crossing for display: "Cell over-temperature 58.2 °C > 55.0 °C".
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Crossing {
    /// The quantity.
    pub quantity: Quantity,
    /// Its current level (never [`Level::Normal`]).
    pub level: Level,
    /// The last good value.
    pub value: Value,
    /// The threshold of `level`.
    pub threshold: Value,
    /// Direction of the limit (decides `>` or `<` in the text).
    pub direction: Direction,
}

impl fmt::Display for Crossing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.direction {
            Direction::Rising => '>',
            Direction::Falling => '<',
        };
        write!(f, "{} {} {} {}", self.quantity, self.value, op, self.threshold)
    }
}

/// The per-quantity level state machine.
#[derive(Debug, Clone)]
pub struct LimitMonitor {
    specs: [Option<RawSpec>; 11],
    states: [QState; 11],
    /// Quantities held at most at [`Level::Alarm`] (bit per [`Quantity::index`]).
    capped: u16,
}

impl LimitMonitor {
    /// A monitor with every quantity at [`Level::Normal`] and no history.
    #[must_use]
    pub fn new(config: &LimitConfig) -> Self {
        Self { specs: config.raw(), states: [QState::INIT; 11], capped: 0 }
    }

    /// Hold `q` at most at [`Level::Alarm`] (`true`) or release it (`false`): the supervised
    /// deep-discharge recovery keeps the cell-voltage-low limit from tripping again while the
    /// bounded charge brings the cells back (a latched trip of `q` drops to alarm at once).
    pub fn cap_at_alarm(&mut self, q: Quantity, cap: bool) {
        let bit = 1u16 << q.index();
        if cap {
            self.capped |= bit;
            if let Some(st) = self.states.get_mut(q.index()) {
                if st.level == Level::Trip {
                    st.level = Level::Alarm;
                    st.up_since = None;
                    st.down_since = None;
                }
            }
        } else {
            self.capped &= !bit;
        }
    }

    /// The current level of `q`.
    #[must_use]
    pub fn level(&self, q: Quantity) -> Level {
        self.states.get(q.index()).map_or(Level::Normal, |s| s.level)
    }

    /// The current crossing of `q` for display, if it is above normal and a value was seen.
    #[must_use]
    pub fn crossing(&self, q: Quantity) -> Option<Crossing> {
        let st = self.states.get(q.index())?;
        let spec = self.specs.get(q.index())?.as_ref()?;
        let value = st.last?;
        let threshold = spec.threshold(st.level)?;
        Some(Crossing {
            quantity: q,
            level: st.level,
            value,
            threshold: with_unit(value, threshold),
            direction: spec.direction,
        })
    }

    /// Feed this cycle's values from `snapshot` and record level changes in `events`.
    pub fn update(&mut self, snapshot: &Snapshot, now: Millis, events: &mut Events) {
        for q in Quantity::ALL {
            let v = value_of(snapshot, q, now);
            self.observe(q, v, now, events);
        }
    }

    /// Feed one quantity (`None` = signal unavailable: the level holds, a pending decrease
    /// restarts its debounce).
    pub fn observe(&mut self, q: Quantity, value: Option<Value>, now: Millis, events: &mut Events) {
        let Some(Some(spec)) = self.specs.get(q.index()).copied() else { return };
        let Some(st) = self.states.get_mut(q.index()) else { return };
        let Some(value) = value else {
            st.down_since = None;
            return;
        };
        let x = raw_of(value);
        st.last = Some(value);
        let before = st.level;
        let capped = self.capped & (1u16 << q.index()) != 0;
        let cap = |l: Level| if capped { l.min(Level::Alarm) } else { l };
        if !st.initialized {
            st.initialized = true;
            st.level = cap(spec.level_of(x, 0.0));
        } else if st.level == Level::Trip {
            // Latched until reset_latches().
        } else {
            let up = cap(spec.level_of(x, 0.0));
            let held = spec.level_of(x, spec.hysteresis);
            if up > st.level {
                st.down_since = None;
                let since = *st.up_since.get_or_insert(now);
                if now.since(since) >= spec.debounce {
                    st.level = up;
                    st.up_since = None;
                }
            } else if held < st.level {
                st.up_since = None;
                let since = *st.down_since.get_or_insert(now);
                if now.since(since) >= spec.debounce {
                    st.level = held;
                    st.down_since = None;
                }
            } else {
                st.up_since = None;
                st.down_since = None;
            }
        }
        if st.level != before {
            events.push(now, EventKind::LimitLevel { quantity: q, level: st.level, value: Some(value) });
        }
    }

    /// Narrow `envelope`: alarm zeroes the affected direction, trip zeroes both and is reported.
    pub fn apply(&self, envelope: &mut Envelope) {
        for q in Quantity::ALL {
            match self.level(q) {
                Level::Normal | Level::Warn => {}
                Level::Alarm => zero(envelope, alarm_direction(q), Constraint::Limit(q)),
                Level::Trip => {
                    envelope.limit_both(Watts::ZERO, Constraint::Limit(q));
                    envelope.add_trip(TripReason::Limit(q));
                    if trip_forbids_contactor_close(q) {
                        envelope.forbid_contactor_close(Constraint::Limit(q));
                    }
                }
            }
        }
    }

    /// Unlatch trips (after an operator acknowledge). A tripped quantity drops to
    /// [`Level::Alarm`] (still zeroing its direction) and then follows its value down through
    /// the usual hysteresis and debounce; no event is emitted for this step.
    pub fn reset_latches(&mut self) {
        for st in &mut self.states {
            if st.level == Level::Trip {
                st.level = Level::Alarm;
                st.up_since = None;
                st.down_since = None;
            }
        }
    }

    /// The first quantity whose value in `snapshot` is at or beyond its trip level right now
    /// (no debounce, no hysteresis): a fault that is still present.
    #[must_use]
    pub fn trip_condition(&self, snapshot: &Snapshot, now: Millis) -> Option<Quantity> {
        self.trip_condition_except(snapshot, now, None)
    }

    /// [`Self::trip_condition`] ignoring `skip`.
    #[must_use]
    pub fn trip_condition_except(
        &self,
        snapshot: &Snapshot,
        now: Millis,
        skip: Option<Quantity>,
    ) -> Option<Quantity> {
        Quantity::ALL.into_iter().find(|q| Some(*q) != skip && self.trip_condition_of(*q, snapshot, now))
    }

    /// Whether `q`'s value in `snapshot` is at or beyond its trip level right now.
    #[must_use]
    pub fn trip_condition_of(&self, q: Quantity, snapshot: &Snapshot, now: Millis) -> bool {
        let Some(Some(spec)) = self.specs.get(q.index()) else { return false };
        value_of(snapshot, q, now).is_some_and(|v| spec.level_of(raw_of(v), 0.0) == Level::Trip)
    }
}

pub(crate) fn zero(envelope: &mut Envelope, dir: PowerDirection, reason: Constraint) {
    match dir {
        PowerDirection::Charge => envelope.limit_charge(Watts::ZERO, reason),
        PowerDirection::Discharge => envelope.limit_discharge(Watts::ZERO, reason),
        PowerDirection::Both => envelope.limit_both(Watts::ZERO, reason),
    }
}

pub(crate) fn raw_of(v: Value) -> f32 {
    match v {
        Value::Power(x) => x.get(),
        Value::Voltage(x) => x.get(),
        Value::Current(x) => x.get(),
        Value::Temperature(x) => x.get(),
        Value::Percent(x) => x.get(),
    }
}

/// `x` in the unit of `like`.
pub(crate) fn with_unit(like: Value, x: f32) -> Value {
    match like {
        Value::Power(_) => Value::Power(Watts::saturating(x)),
        Value::Voltage(_) => Value::Voltage(Volts::saturating(x)),
        Value::Current(_) => Value::Current(Amps::saturating(x)),
        Value::Temperature(_) => Value::Temperature(Celsius::saturating(x)),
        Value::Percent(_) => Value::Percent(Percent::saturating(x)),
    }
}

/// The value the limit of `q` watches, if its signal is good at `now`.
#[must_use]
pub fn value_of(s: &Snapshot, q: Quantity, now: Millis) -> Option<Value> {
    let b = &s.battery;
    match q {
        Quantity::CellVoltageHigh => b.cell_voltage_max.value_at(now).map(Value::Voltage),
        Quantity::CellVoltageLow => b.cell_voltage_min.value_at(now).map(Value::Voltage),
        Quantity::CellTempHigh => b.cell_temp_max.value_at(now).map(Value::Temperature),
        Quantity::CellTempLow => b.cell_temp_min.value_at(now).map(Value::Temperature),
        Quantity::ChargeCurrent => b.pack_current.value_at(now).map(|i| Value::Current((-i).max(Amps::ZERO))),
        Quantity::DischargeCurrent => b.pack_current.value_at(now).map(|i| Value::Current(i.max(Amps::ZERO))),
        Quantity::SocHigh | Quantity::SocLow => b.soc.value_at(now).map(Value::Percent),
        Quantity::InverterTemp => s.inverter.temperature.value_at(now).map(Value::Temperature),
        Quantity::GridImport => s.grid.active_power.value_at(now).map(|p| Value::Power(p.max(Watts::ZERO))),
        Quantity::GridExport => {
            s.grid.active_power.value_at(now).map(|p| Value::Power((-p).max(Watts::ZERO)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(c: f32) -> Option<Value> {
        Some(Value::Temperature(Celsius::saturating(c)))
    }

    fn volts(v: f32) -> Option<Value> {
        Some(Value::Voltage(Volts::saturating(v)))
    }

    /// Feed the value first at t = 0 (sets the initial level) and return the monitor.
    fn monitor() -> (LimitMonitor, Events) {
        (LimitMonitor::new(&LimitConfig::default()), Events::new())
    }

    fn settle(m: &mut LimitMonitor, q: Quantity, v: Option<Value>, from_ms: u64, ev: &mut Events) {
        // Hold the value for longer than any default debounce.
        for t in (from_ms..=from_ms.saturating_add(6_000)).step_by(1_000) {
            m.observe(q, v, Millis::new(t), ev);
        }
    }

    #[test]
    fn rising_boundaries_just_below_at_and_above() {
        let q = Quantity::CellTempHigh;
        for (c, want) in [
            (44.9, Level::Normal),
            (45.0, Level::Warn),
            (45.1, Level::Warn),
            (49.9, Level::Warn),
            (50.0, Level::Alarm),
            (54.9, Level::Alarm),
            (55.0, Level::Trip),
            (55.1, Level::Trip),
        ] {
            let (mut m, mut ev) = monitor();
            m.observe(q, temp(25.0), Millis::ZERO, &mut ev);
            settle(&mut m, q, temp(c), 1_000, &mut ev);
            assert_eq!(m.level(q), want, "{c} °C");
        }
    }

    #[test]
    fn falling_boundaries_just_above_at_and_below() {
        let q = Quantity::CellVoltageLow;
        for (v, want) in [
            (2.91, Level::Normal),
            (2.90, Level::Warn),
            (2.81, Level::Warn),
            (2.80, Level::Alarm),
            (2.51, Level::Alarm),
            (2.50, Level::Trip),
            (2.49, Level::Trip),
        ] {
            let (mut m, mut ev) = monitor();
            m.observe(q, volts(3.3), Millis::ZERO, &mut ev);
            settle(&mut m, q, volts(v), 1_000, &mut ev);
            assert_eq!(m.level(q), want, "{v} V");
        }
    }

    #[test]
    fn initial_value_sets_level_without_debounce() {
        let (mut m, mut ev) = monitor();
        m.observe(Quantity::CellTempHigh, temp(51.0), Millis::ZERO, &mut ev);
        assert_eq!(m.level(Quantity::CellTempHigh), Level::Alarm);
        assert_eq!(ev.len(), 1);
    }

    #[test]
    fn spike_shorter_than_debounce_changes_nothing() {
        let q = Quantity::CellTempHigh;
        let (mut m, mut ev) = monitor();
        m.observe(q, temp(25.0), Millis::ZERO, &mut ev);
        m.observe(q, temp(60.0), Millis::new(1_000), &mut ev);
        m.observe(q, temp(60.0), Millis::new(5_999), &mut ev);
        m.observe(q, temp(25.0), Millis::new(6_000), &mut ev);
        m.observe(q, temp(60.0), Millis::new(7_000), &mut ev);
        assert_eq!(m.level(q), Level::Normal);
        assert!(ev.is_empty());
        // Held for the full debounce: trips.
        m.observe(q, temp(60.0), Millis::new(12_000), &mut ev);
        assert_eq!(m.level(q), Level::Trip);
        assert_eq!(ev.len(), 1);
    }

    #[test]
    fn hysteresis_on_the_way_down() {
        let q = Quantity::CellTempHigh;
        let (mut m, mut ev) = monitor();
        m.observe(q, temp(51.0), Millis::ZERO, &mut ev);
        assert_eq!(m.level(q), Level::Alarm);
        // Below alarm but inside the 2 °C hysteresis: stays Alarm.
        settle(&mut m, q, temp(48.5), 1_000, &mut ev);
        assert_eq!(m.level(q), Level::Alarm);
        // Past alarm − hysteresis: Warn after debounce.
        m.observe(q, temp(47.9), Millis::new(10_000), &mut ev);
        assert_eq!(m.level(q), Level::Alarm, "debounced");
        m.observe(q, temp(47.9), Millis::new(15_000), &mut ev);
        assert_eq!(m.level(q), Level::Warn);
        // Past warn − hysteresis: Normal.
        settle(&mut m, q, temp(42.9), 20_000, &mut ev);
        assert_eq!(m.level(q), Level::Normal);
        let levels: heapless::Vec<Level, 8> = ev
            .iter()
            .filter_map(|e| match e.kind {
                EventKind::LimitLevel { level, .. } => Some(level),
                EventKind::StateChanged { .. }
                | EventKind::TrendWarning { .. }
                | EventKind::CommandLimited { .. }
                | EventKind::EStopPressed
                | EventKind::EStopReleased
                | EventKind::ShutdownStarted
                | EventKind::ShutdownComplete
                | EventKind::RequestRefused { .. } => None,
            })
            .collect();
        assert_eq!(levels.as_slice(), &[Level::Alarm, Level::Warn, Level::Normal]);
    }

    #[test]
    fn trip_latches_until_reset() {
        let q = Quantity::CellVoltageHigh;
        let (mut m, mut ev) = monitor();
        m.observe(q, volts(3.70), Millis::ZERO, &mut ev);
        assert_eq!(m.level(q), Level::Trip);
        settle(&mut m, q, volts(3.30), 1_000, &mut ev);
        assert_eq!(m.level(q), Level::Trip, "latched");
        let mut env = Envelope::new(ems_core::watts!(5000.0));
        m.apply(&mut env);
        assert_eq!(env.trips(), &[TripReason::Limit(q)]);
        assert_eq!(env.max_discharge(), Watts::ZERO);
        m.reset_latches();
        assert_eq!(m.level(q), Level::Alarm);
        settle(&mut m, q, volts(3.30), 10_000, &mut ev);
        assert_eq!(m.level(q), Level::Normal);
    }

    #[test]
    fn unavailable_value_holds_the_level() {
        let q = Quantity::SocLow;
        let (mut m, mut ev) = monitor();
        m.observe(q, Some(Value::Percent(ems_core::percent!(4.0))), Millis::ZERO, &mut ev);
        settle(&mut m, q, None, 1_000, &mut ev);
        assert_eq!(m.level(q), Level::Alarm);
    }

    #[test]
    fn alarm_zeroes_only_the_affected_direction() {
        let (mut m, mut ev) = monitor();
        m.observe(Quantity::SocHigh, Some(Value::Percent(ems_core::percent!(100.0))), Millis::ZERO, &mut ev);
        let mut env = Envelope::new(ems_core::watts!(5000.0));
        m.apply(&mut env);
        assert_eq!(env.max_charge(), Watts::ZERO);
        assert_eq!(env.charge_binding(), Some(Constraint::Limit(Quantity::SocHigh)));
        assert_eq!(env.max_discharge(), ems_core::watts!(5000.0));
        assert!(env.trips().is_empty());
    }

    #[test]
    fn crossing_speaks_operator_language() {
        let (mut m, mut ev) = monitor();
        m.observe(Quantity::CellTempHigh, temp(58.24), Millis::ZERO, &mut ev);
        let c = m.crossing(Quantity::CellTempHigh).unwrap();
        assert_eq!(c.to_string(), "Cell over-temperature 58.2 °C > 55.0 °C");
        m.observe(Quantity::CellVoltageLow, volts(2.75), Millis::ZERO, &mut ev);
        let c = m.crossing(Quantity::CellVoltageLow).unwrap();
        assert_eq!(c.to_string(), "Cell under-voltage 2.750 V < 2.800 V");
    }

    #[test]
    fn validation_names_the_field() {
        let mut c = LimitConfig::default();
        assert!(c.validate().is_ok());
        c.cell_voltage_low.trip = Some(ems_core::volts!(2.9));
        let err = c.validate().unwrap_err();
        assert!(matches!(err, ConfigError::LevelOrder { field: "limits.cell_voltage_low.trip", .. }));
        assert!(err.to_string().contains("2.9"), "{err}");
        let mut c = LimitConfig::default();
        c.cell_temp_high.hysteresis = ems_core::celsius!(-1.0);
        assert!(matches!(
            c.validate().unwrap_err(),
            ConfigError::OutOfRange { field: "limits.cell_temp_high.hysteresis", .. }
        ));
    }
}
