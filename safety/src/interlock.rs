//! The interlock manager: declarative permission rules in a fixed table.
//!
//! Each [`Rule`] says what its [`Target`] (charging, discharging, both or closing the main
//! contactor) requires. A rule whose conditions are not all met — and a condition whose signal
//! is stale or invalid counts as not met — zeroes its target with [`Constraint::Interlock`]
//! carrying the rule's `id`.

use crate::envelope::Envelope;
use core::fmt;
use ems_core::event::Constraint;
use ems_core::snapshot::{BmsAlarm, BmsAlarms, ContactorState, EStopInput, GridMode, InverterState};
use ems_core::{Celsius, Hertz, Millis, Snapshot, Watts};

/// Maximum number of rules in a table.
pub const MAX_RULES: usize = 16;

/// What a rule guards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// Charging.
    Charge,
    /// Discharging.
    Discharge,
    /// Both power directions.
    Both,
    /// Closing the main contactor.
    ContactorClose,
}

/// One condition; every condition reads one or two snapshot signals and fails when any of
/// them is not good.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Condition {
    /// Lowest cell temperature at least this.
    CellTempAtLeast(Celsius),
    /// Highest cell temperature at most this.
    CellTempAtMost(Celsius),
    /// Main contactor reports closed.
    ContactorClosed,
    /// Pre-charge reported done.
    PrechargeDone,
    /// BMS reports ready.
    BmsReady,
    /// No BMS alarm flag set.
    NoBmsAlarm,
    /// No BMS alarm flag set other than this one (a cell under-voltage protection forbids
    /// discharge only: a deeply discharged pack must be able to take its recovery charge).
    NoBmsAlarmExcept(BmsAlarm),
    /// Inverter reports `Running` (stricter than [`Condition::InverterNotFaulted`]).
    InverterRunning,
    /// Inverter reports `Running` or `Standby` (an inverter in standby still accepts a
    /// set-point, so requiring `Running` would deadlock the start-up).
    InverterNotFaulted,
    /// E-stop loop closed.
    EStopReleased,
    /// Grid frequency inside `lo..=hi`.
    GridFrequencyWithin(Hertz, Hertz),
    /// Not islanded, or islanded with a (good) grid-forming inverter: a grid-following
    /// inverter must not push power into an island it cannot hold (see
    /// [`Snapshot::islanded`]).
    GridTiedOrGridForming,
}

impl Condition {
    /// Whether the condition holds in `s` at `now` (unavailable signals: `false`).
    #[must_use]
    pub fn holds(&self, s: &Snapshot, now: Millis) -> bool {
        match *self {
            Self::CellTempAtLeast(t) => s.battery.cell_temp_min.value_at(now).is_some_and(|v| v >= t),
            Self::CellTempAtMost(t) => s.battery.cell_temp_max.value_at(now).is_some_and(|v| v <= t),
            Self::ContactorClosed => matches!(s.contactor.value_at(now), Some(ContactorState::Closed)),
            Self::PrechargeDone => s.precharge_done.value_at(now) == Some(true),
            Self::BmsReady => s.battery.bms_ready.value_at(now) == Some(true),
            Self::NoBmsAlarm => s.battery.bms_alarms.value_at(now).is_some_and(|a| !a.any()),
            Self::NoBmsAlarmExcept(x) => s
                .battery
                .bms_alarms
                .value_at(now)
                .is_some_and(|a| a.bits() & !BmsAlarms::NONE.with(x).bits() == 0),
            Self::InverterRunning => matches!(s.inverter.state.value_at(now), Some(InverterState::Running)),
            Self::InverterNotFaulted => match s.inverter.state.value_at(now) {
                Some(InverterState::Running | InverterState::Standby) => true,
                Some(InverterState::Fault) | None => false,
            },
            Self::EStopReleased => matches!(s.estop.value_at(now), Some(EStopInput::Released)),
            Self::GridFrequencyWithin(lo, hi) => {
                s.grid.frequency.value_at(now).is_some_and(|f| f >= lo && f <= hi)
            }
            Self::GridTiedOrGridForming => {
                !s.islanded(now) || s.inverter.grid_mode.value_at(now) == Some(GridMode::GridForming)
            }
        }
    }
}

/// One interlock rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rule {
    /// Identifier shown to the operator (`interlock #id`) and carried in
    /// [`Constraint::Interlock`].
    pub id: u8,
    /// What the rule says, in operator language.
    pub name: &'static str,
    /// What it guards.
    pub direction: Target,
    /// All of these must hold.
    pub conditions: &'static [Condition],
}

impl Rule {
    /// Whether every condition holds.
    #[must_use]
    pub fn satisfied(&self, s: &Snapshot, now: Millis) -> bool {
        self.conditions.iter().all(|c| c.holds(s, now))
    }

    /// The rule's text.
    #[must_use]
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "interlock #{}: {}", self.id, self.name)
    }
}

/// The default rule table (ids 1–9).
pub const DEFAULT_RULES: [Rule; 9] = [
    Rule {
        id: 1,
        name: "charging requires cell temperature ≥ 0 °C",
        direction: Target::Charge,
        conditions: &[Condition::CellTempAtLeast(ems_core::celsius!(0.0))],
    },
    Rule {
        id: 2,
        name: "discharge requires contactor closed and pre-charge done",
        direction: Target::Discharge,
        conditions: &[Condition::ContactorClosed, Condition::PrechargeDone],
    },
    Rule {
        id: 3,
        name: "charging requires contactor closed and pre-charge done",
        direction: Target::Charge,
        conditions: &[Condition::ContactorClosed, Condition::PrechargeDone],
    },
    Rule {
        id: 4,
        name: "no power while BMS not ready",
        direction: Target::Both,
        conditions: &[Condition::BmsReady],
    },
    Rule {
        id: 5,
        name: "no power while a BMS alarm other than cell under-voltage is active",
        direction: Target::Both,
        conditions: &[Condition::NoBmsAlarmExcept(BmsAlarm::CellUnderVoltage)],
    },
    Rule {
        id: 6,
        name: "no power while the inverter reports a fault",
        direction: Target::Both,
        conditions: &[Condition::InverterNotFaulted],
    },
    Rule {
        id: 7,
        name: "contactor close requires BMS ready, no BMS alarm but cell under-voltage and E-stop released",
        direction: Target::ContactorClose,
        conditions: &[
            Condition::BmsReady,
            Condition::NoBmsAlarmExcept(BmsAlarm::CellUnderVoltage),
            Condition::EStopReleased,
        ],
    },
    Rule {
        id: 8,
        name: "no discharge while the BMS reports cell under-voltage",
        direction: Target::Discharge,
        conditions: &[Condition::NoBmsAlarm],
    },
    Rule {
        id: 9,
        name: "no power in island without a grid-forming inverter",
        direction: Target::Both,
        conditions: &[Condition::GridTiedOrGridForming],
    },
];

/// What the rules permit for one snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Permissions {
    /// Charging permitted.
    pub charge: bool,
    /// Discharging permitted.
    pub discharge: bool,
    /// Closing the main contactor permitted.
    pub contactor_close: bool,
}

/// Too many rules for the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("interlocks: at most 16 rules")]
pub struct TableFull;

/// The rule table.
#[derive(Debug, Clone, PartialEq)]
pub struct Interlocks {
    rules: heapless::Vec<Rule, MAX_RULES>,
}

impl Default for Interlocks {
    fn default() -> Self {
        let mut rules = heapless::Vec::new();
        for r in DEFAULT_RULES {
            // 9 default rules < MAX_RULES.
            let _ = rules.push(r);
        }
        Self { rules }
    }
}

impl Interlocks {
    /// An empty table.
    #[must_use]
    pub const fn empty() -> Self {
        Self { rules: heapless::Vec::new() }
    }

    /// Add a rule.
    ///
    /// # Errors
    /// [`TableFull`] when the table already holds [`MAX_RULES`] rules.
    pub fn push(&mut self, rule: Rule) -> Result<(), TableFull> {
        self.rules.push(rule).map_err(|_| TableFull)
    }

    /// The rules.
    #[must_use]
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rule with `id`.
    #[must_use]
    pub fn rule(&self, id: u8) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id == id)
    }

    /// Evaluate every rule; failed rules narrow `envelope`.
    pub fn apply(&self, s: &Snapshot, now: Millis, envelope: &mut Envelope) -> Permissions {
        let mut p = Permissions { charge: true, discharge: true, contactor_close: true };
        for r in &self.rules {
            if r.satisfied(s, now) {
                continue;
            }
            let c = Constraint::Interlock(r.id);
            match r.direction {
                Target::Charge => {
                    p.charge = false;
                    envelope.limit_charge(Watts::ZERO, c);
                }
                Target::Discharge => {
                    p.discharge = false;
                    envelope.limit_discharge(Watts::ZERO, c);
                }
                Target::Both => {
                    p.charge = false;
                    p.discharge = false;
                    envelope.limit_both(Watts::ZERO, c);
                }
                Target::ContactorClose => {
                    p.contactor_close = false;
                    envelope.forbid_contactor_close(c);
                }
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::healthy_snapshot;
    use ems_core::snapshot::{BmsAlarm, BmsAlarms};
    use ems_core::Measurement;

    const NOW: Millis = Millis::new(10_000);

    fn good<T: Copy>(v: T) -> Measurement<T> {
        Measurement::good(v, NOW, Millis::new(5_000))
    }

    #[test]
    fn no_power_in_island_without_a_grid_forming_inverter() {
        use ems_core::snapshot::{GridMode, GridTie};
        let none = Permissions { charge: false, discharge: false, contactor_close: true };
        // Islanded, grid-following: nothing may move.
        check(|s| s.grid.tie = Some(good(GridTie::Open)), 9, none);
        // A monitored breaker whose reading is lost counts as islanded.
        check(|s| s.grid.tie = Some(Measurement::invalid(GridTie::Closed, Millis::new(5_000))), 9, none);
        // Islanded with a grid-forming inverter, or tied to the grid: allowed.
        let all = Permissions { charge: true, discharge: true, contactor_close: true };
        let forming = |s: &mut Snapshot| {
            s.grid.tie = Some(good(GridTie::Open));
            s.inverter.grid_mode = good(GridMode::GridForming);
        };
        check(forming, 9, all);
        check(|s| s.grid.tie = Some(good(GridTie::Closed)), 9, all);
        // A site without a breaker (the default) never islands.
        assert!(!healthy_snapshot(NOW).islanded(NOW));
    }

    fn check(mutate: impl Fn(&mut Snapshot), id: u8, want: Permissions) {
        let mut s = healthy_snapshot(NOW);
        let mut env = Envelope::new(ems_core::watts!(5000.0));
        let all = Permissions { charge: true, discharge: true, contactor_close: true };
        assert_eq!(Interlocks::default().apply(&s, NOW, &mut env), all);
        mutate(&mut s);
        let p = Interlocks::default().apply(&s, NOW, &mut env);
        assert_eq!(p, want, "rule {id}");
        let c = Constraint::Interlock(id);
        let named = env.charge_reasons().contains(&c)
            || env.discharge_reasons().contains(&c)
            || env.contactor_reasons().contains(&c);
        let blocked = !(want.charge && want.discharge && want.contactor_close);
        assert_eq!(named, blocked, "rule {id} named iff something is blocked");
    }

    const NO_CHARGE: Permissions = Permissions { charge: false, discharge: true, contactor_close: true };
    const NO_POWER: Permissions = Permissions { charge: false, discharge: false, contactor_close: true };
    const NO_CLOSE: Permissions = Permissions { charge: true, discharge: true, contactor_close: false };

    #[test]
    fn rule_1_cold_cells_block_charging() {
        check(|s| s.battery.cell_temp_min = good(ems_core::celsius!(-0.1)), 1, NO_CHARGE);
        check(
            |s| s.battery.cell_temp_min = good(ems_core::celsius!(0.0)),
            1,
            Permissions { charge: true, discharge: true, contactor_close: true },
        );
        check(|s| s.battery.cell_temp_min.invalidate(), 1, NO_CHARGE);
    }

    #[test]
    fn rules_2_and_3_need_contactor_and_precharge() {
        let both = Permissions { charge: false, discharge: false, contactor_close: true };
        check(|s| s.contactor = good(ContactorState::Precharging), 2, both);
        check(|s| s.precharge_done = good(false), 3, both);
        check(|s| s.contactor.invalidate(), 2, both);
    }

    #[test]
    fn rules_4_to_6_block_power() {
        check(|s| s.battery.bms_ready = good(false), 4, Permissions { contactor_close: false, ..NO_POWER });
        check(
            |s| s.battery.bms_alarms = good(BmsAlarms::NONE.with(BmsAlarm::Insulation)),
            5,
            Permissions { contactor_close: false, ..NO_POWER },
        );
        check(|s| s.inverter.state = good(InverterState::Fault), 6, NO_POWER);
        check(
            |s| s.inverter.state = good(InverterState::Standby),
            6,
            Permissions { charge: true, discharge: true, contactor_close: true },
        );
    }

    #[test]
    fn rule_7_guards_contactor_close() {
        check(|s| s.estop = good(EStopInput::Pressed), 7, NO_CLOSE);
        check(|s| s.estop.invalidate(), 7, NO_CLOSE);
    }

    #[test]
    fn display_names_the_rule() {
        let r = Interlocks::default().rule(2).copied().unwrap();
        assert_eq!(r.to_string(), "interlock #2: discharge requires contactor closed and pre-charge done");
    }

    #[test]
    fn frequency_window_and_table_capacity() {
        let s = healthy_snapshot(NOW);
        assert!(Condition::GridFrequencyWithin(ems_core::hertz!(49.5), ems_core::hertz!(50.5)).holds(&s, NOW));
        assert!(
            !Condition::GridFrequencyWithin(ems_core::hertz!(50.1), ems_core::hertz!(50.5)).holds(&s, NOW)
        );
        let mut t = Interlocks::empty();
        for _ in 0..MAX_RULES {
            t.push(DEFAULT_RULES[0]).unwrap();
        }
        assert_eq!(t.push(DEFAULT_RULES[0]), Err(TableFull));
    }
}
