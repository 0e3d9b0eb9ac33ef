//! The rules engine: which rules fire at an instant, their `until` latches, the conflict rule
//! and the [`Decision`] (semantics in the docs of [`super`]). Pure: the caller passes the time
//! and the measurements in a [`RuleContext`]; no clock, no I/O.

use super::calendar::DayType;
use super::error::RuleError;
use super::file::{hhmm, override_json, Action, Rule, RuleSet, Until, When};
use super::sun;
use crate::units::Price;
use ems_control::{Override, RuleTarget};
use ems_core::{Percent, WattHours, Watts};
use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, Zoned};
use serde_json::{json, Value};
use std::cmp::Ordering;

/// What the engine knows at one evaluation (signs per design.md §4).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RuleContext {
    /// The instant (UTC).
    pub at: Timestamp,
    /// The current import price, if known.
    pub price: Option<Price>,
    /// The battery's SOC, if known.
    pub soc: Option<Percent>,
    /// PV − load (`+` surplus).
    pub pv_surplus: Watts,
    /// Grid power (`+` import / `−` export).
    pub grid_import: Watts,
    /// The battery's usable capacity (for `CHARGE_TO`).
    pub capacity: Option<WattHours>,
    /// The largest charge power (a magnitude; caps `CHARGE_TO`).
    pub max_charge: Watts,
}

impl RuleContext {
    /// A context at `at` with no measurements: no price, no SOC, zero powers.
    #[must_use]
    pub const fn at(at: Timestamp) -> Self {
        Self {
            at,
            price: None,
            soc: None,
            pv_surplus: Watts::ZERO,
            grid_import: Watts::ZERO,
            capacity: None,
            max_charge: Watts::ZERO,
        }
    }
}

/// What became of one rule in an evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// `enabled = false`.
    Disabled,
    /// Its triggers do not hold (the first trigger that failed, e.g. `soc_above: SOC 15 % <=
    /// 20 %`), or its until-condition ended it and it waits for the triggers to stop holding.
    NotFired {
        /// Why.
        why: String,
    },
    /// Active, but its action has no effect now (a `SOC_RESERVE` above the reserve, a
    /// `CHARGE_TO` reached or past its deadline).
    NoEffect {
        /// Why.
        why: String,
    },
    /// Its action reaches the controller.
    Won {
        /// The action.
        action: Override,
    },
    /// Active, but another rule won.
    Lost {
        /// The action it would have taken.
        action: Override,
        /// The winner's name.
        to: String,
        /// Why the winner outranks it.
        why: String,
    },
}

/// One rule's line of a [`Decision`].
#[derive(Debug, Clone, PartialEq)]
pub struct RuleReport {
    /// The rule's name.
    pub name: String,
    /// The rule's index in the set.
    pub index: usize,
    /// What became of it.
    pub outcome: Outcome,
    /// While latched: what ends it (`until 06:00 (2026-06-22T04:00:00Z)`, `until SOC >= 80 %`).
    pub latched: Option<String>,
}

/// The result of one evaluation: the winner and why every other rule did not win.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The winning rule's name and the override it hands to the controller.
    pub winner: Option<(String, Override)>,
    /// The winning rule's index in the set (its id for the controller).
    pub winner_id: Option<u16>,
    /// The names of the rules that fired (active: triggers hold or latched), in file order.
    pub fired: Vec<String>,
    /// One report per rule, in file order.
    pub reasons: Vec<RuleReport>,
    /// The local date's kind (working, weekend, holiday with its name).
    pub day: DayType,
    /// The evaluated instant in the site's time zone.
    pub local: Zoned,
}

impl Decision {
    /// The controller's input ([`ems_control::Inputs::rule`]).
    #[must_use]
    pub fn rule_target(&self) -> Option<RuleTarget> {
        match (&self.winner, self.winner_id) {
            (Some((_, action)), Some(id)) => Some(RuleTarget { action: *action, id }),
            _ => None,
        }
    }

    /// The JSON form: `{"at", "local", "day", "holiday", "winner": {"name", "id", "action"} |
    /// null, "fired": [...], "rules": [{"name", "outcome", "why", "action", "latched"}]}`.
    #[must_use]
    pub fn to_json(&self) -> Value {
        let winner = match (&self.winner, self.winner_id) {
            (Some((name, o)), Some(id)) => json!({ "name": name, "id": id, "action": override_json(o) }),
            _ => Value::Null,
        };
        let (day, holiday) = match &self.day {
            DayType::Working => ("working", Value::Null),
            DayType::Weekend => ("weekend", Value::Null),
            DayType::Holiday(n) => ("holiday", json!(n)),
        };
        let rules: Vec<Value> = self
            .reasons
            .iter()
            .map(|r| {
                let (outcome, why, action) = match &r.outcome {
                    Outcome::Disabled => ("disabled", Value::Null, Value::Null),
                    Outcome::NotFired { why } => ("not_fired", json!(why), Value::Null),
                    Outcome::NoEffect { why } => ("no_effect", json!(why), Value::Null),
                    Outcome::Won { action } => ("won", Value::Null, override_json(action)),
                    Outcome::Lost { action, to, why } => {
                        ("lost", json!(format!("{why} (winner: {to})")), override_json(action))
                    }
                };
                json!({ "name": r.name, "outcome": outcome, "why": why, "action": action, "latched": r.latched })
            })
            .collect();
        json!({
            "at": self.local.timestamp().to_string(),
            "local": self.local.to_string(),
            "day": day,
            "holiday": holiday,
            "winner": winner,
            "fired": self.fired,
            "rules": rules,
        })
    }
}

/// What ends a latched rule.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Latch {
    /// At this instant.
    At(Timestamp),
    /// When the SOC reaches the target (`rising`: `≥`, else `≤`).
    Soc { target: Percent, rising: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct State {
    latch: Option<Latch>,
    /// The until-condition ended the last latch while the triggers still held: wait until
    /// they stop holding.
    spent: bool,
}

/// The engine: a rule set and its latch state.
#[derive(Debug, Clone)]
pub struct RuleEngine {
    set: RuleSet,
    tz: TimeZone,
    states: Vec<State>,
}

impl RuleEngine {
    /// An engine for `set` in the set's time zone (UTC when it has none; the gateway sets the
    /// site's zone with [`RuleSet::set_time_zone`] first).
    ///
    /// # Errors
    /// [`RuleError`] at `rules[i].until.sunset` when a rule ends at sunset but the set has no
    /// location.
    pub fn new(set: RuleSet) -> Result<Self, RuleError> {
        check_sunset(&set)?;
        let tz = set.time_zone().cloned().unwrap_or(TimeZone::UTC);
        let states = vec![State::default(); set.rules().len()];
        Ok(Self { set, tz, states })
    }

    /// Replace the rule set (the API's `PUT`), keeping the latch state of every rule whose name
    /// and definition are unchanged; a new or changed rule starts unlatched. On an error the
    /// engine keeps its set.
    ///
    /// # Errors
    /// As [`Self::new`].
    pub fn replace(&mut self, set: RuleSet) -> Result<(), RuleError> {
        check_sunset(&set)?;
        let states = set
            .rules()
            .iter()
            .map(|r| {
                self.set
                    .rules()
                    .iter()
                    .position(|old| old == r)
                    .and_then(|i| self.states.get(i).copied())
                    .unwrap_or_default()
            })
            .collect();
        self.tz = set.time_zone().cloned().unwrap_or(TimeZone::UTC);
        self.set = set;
        self.states = states;
        Ok(())
    }

    /// The rule set.
    #[must_use]
    pub const fn rules(&self) -> &RuleSet {
        &self.set
    }

    /// The time zone the engine evaluates in.
    #[must_use]
    pub const fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    /// The day type of the local date of `at`.
    #[must_use]
    pub fn day_type(&self, at: Timestamp) -> DayType {
        self.set.calendar().day_type(at.to_zoned(self.tz.clone()).date())
    }

    /// Evaluate the rules at `ctx.at`, updating the latches, and decide the winner.
    #[must_use]
    pub fn evaluate(&mut self, ctx: &RuleContext) -> Decision {
        let local = ctx.at.to_zoned(self.tz.clone());
        let mut reasons = Vec::with_capacity(self.set.rules().len());
        let mut fired = Vec::new();
        // (index, priority, action) of the active rules with an effect.
        let mut candidates: Vec<(usize, i32, Override)> = Vec::new();
        for (i, rule) in self.set.rules().iter().enumerate() {
            let state = self.states.get(i).copied().unwrap_or_default();
            let (state, outcome) = self.step_rule(rule, state, ctx, &local);
            if let Some(s) = self.states.get_mut(i) {
                *s = state;
            }
            let latched = state.latch.map(|l| describe(l, &self.tz));
            let outcome = match outcome {
                Ok(()) => {
                    fired.push(rule.name.clone());
                    match resolve(rule.action, ctx, &local) {
                        Ok(o) => {
                            candidates.push((i, rule.priority, o));
                            Outcome::Won { action: o }
                        }
                        Err(why) => Outcome::NoEffect { why },
                    }
                }
                Err(o) => o,
            };
            reasons.push(RuleReport { name: rule.name.clone(), index: i, outcome, latched });
        }
        let best = candidates.iter().copied().reduce(|a, b| if outranks(b, a) { b } else { a });
        if let Some((w, wp, wo)) = best {
            let wname = self.set.rules().get(w).map(|r| r.name.clone()).unwrap_or_default();
            for (i, p, o) in candidates.iter().copied().filter(|c| c.0 != w) {
                let why = if p < wp {
                    format!("priority {p} < {wp}")
                } else if restrictiveness(wo) != restrictiveness(o) {
                    format!("same priority {p}, {} is more restrictive than {}", wo.kind(), o.kind())
                } else {
                    format!("same priority {p} and as restrictive, later in the file")
                };
                if let Some(r) = reasons.get_mut(i) {
                    r.outcome = Outcome::Lost { action: o, to: wname.clone(), why };
                }
            }
            let day = self.set.calendar().day_type(local.date());
            return Decision {
                winner: Some((wname, wo)),
                winner_id: u16::try_from(w).ok(),
                fired,
                reasons,
                day,
                local,
            };
        }
        let day = self.set.calendar().day_type(local.date());
        Decision { winner: None, winner_id: None, fired, reasons, day, local }
    }

    /// One rule's latch update. `Ok(())`: active; `Err(outcome)`: not.
    fn step_rule(
        &self,
        rule: &Rule,
        mut state: State,
        ctx: &RuleContext,
        local: &Zoned,
    ) -> (State, Result<(), Outcome>) {
        if !rule.enabled {
            return (State::default(), Err(Outcome::Disabled));
        }
        let triggers = check(&rule.when, ctx, local, &self.set);
        if let Some(l) = state.latch {
            if !ended(l, ctx) {
                return (state, Ok(()));
            }
            state.latch = None;
            state.spent = true;
        }
        let Some(until) = rule.until else {
            return (state, triggers.map_err(|why| Outcome::NotFired { why }));
        };
        match triggers {
            Err(why) => {
                state.spent = false;
                (state, Err(Outcome::NotFired { why }))
            }
            Ok(()) if state.spent => (
                state,
                Err(Outcome::NotFired {
                    why: "until-condition met; waits for its triggers to stop holding".into(),
                }),
            ),
            Ok(()) => {
                let latch = self.latch(until, rule.action, local);
                if ended(latch, ctx) {
                    state.spent = true;
                    return (
                        state,
                        Err(Outcome::NotFired { why: format!("{} already met", describe(latch, &self.tz)) }),
                    );
                }
                state.latch = Some(latch);
                (state, Ok(()))
            }
        }
    }

    /// The latch of a rule firing at `local`.
    fn latch(&self, until: Until, action: Action, local: &Zoned) -> Latch {
        let at = local.timestamp();
        match until {
            Until::Time(t) => Latch::At(next_occurrence(local, t)),
            Until::Duration { minutes } => {
                Latch::At(at.checked_add(SignedDuration::from_mins(minutes)).unwrap_or(Timestamp::MAX))
            }
            Until::Sunset => {
                let next = self.set.location().and_then(|l| sun::next_sunset(at, l, &self.tz));
                Latch::At(next.unwrap_or_else(|| end_of_day(local)))
            }
            Until::Soc(target) => Latch::Soc { target, rising: action.charges() },
        }
    }
}

/// A rule that ends at sunset needs the site's location.
fn check_sunset(set: &RuleSet) -> Result<(), RuleError> {
    if set.location().is_none() {
        if let Some(i) = set.rules().iter().position(|r| r.until == Some(Until::Sunset)) {
            return Err(RuleError::new(
                format!("rules[{i}].until.sunset"),
                "true",
                "needs the site's location (latitude and longitude)",
            ));
        }
    }
    Ok(())
}

/// The next instant after `local` at which the local clock shows `t` (today or tomorrow; a
/// time in a skipped hour maps to the instant after the gap).
fn next_occurrence(local: &Zoned, t: Time) -> Timestamp {
    let tz = local.time_zone().clone();
    let at = local.timestamp();
    let on = |d: Date| d.to_datetime(t).to_zoned(tz.clone()).ok().map(|z| z.timestamp());
    let today = local.date();
    match on(today).filter(|x| *x > at) {
        Some(x) => x,
        None => today.tomorrow().ok().and_then(on).unwrap_or_else(|| end_of_day(local)),
    }
}

/// The start of the next local day.
fn end_of_day(local: &Zoned) -> Timestamp {
    local
        .date()
        .tomorrow()
        .ok()
        .and_then(|d| d.to_zoned(local.time_zone().clone()).ok())
        .map_or(Timestamp::MAX, |z| z.timestamp())
}

fn ended(l: Latch, ctx: &RuleContext) -> bool {
    match (l, ctx.soc) {
        (Latch::At(t), _) => ctx.at >= t,
        (Latch::Soc { target, rising: true }, Some(s)) => s >= target,
        (Latch::Soc { target, rising: false }, Some(s)) => s <= target,
        // Unknown SOC: the latch holds.
        (Latch::Soc { .. }, None) => false,
    }
}

fn describe(l: Latch, tz: &TimeZone) -> String {
    match l {
        Latch::At(t) => {
            let z = t.to_zoned(tz.clone());
            format!("until {} ({})", z.strftime("%Y-%m-%d %H:%M %Z"), t)
        }
        Latch::Soc { target, rising: true } => format!("until SOC >= {target}"),
        Latch::Soc { target, rising: false } => format!("until SOC <= {target}"),
    }
}

/// Whether every trigger holds; the first that does not, described.
fn check(w: &When, ctx: &RuleContext, local: &Zoned, set: &RuleSet) -> Result<(), String> {
    let now = local.time();
    let mut date = local.date();
    if let Some(win) = w.window {
        if !win.contains(now) {
            return Err(format!("window: {} not in {}-{}", hhmm(now), hhmm(win.from), hhmm(win.to)));
        }
        if win.after_midnight(now) {
            // The window started yesterday: its day is yesterday's.
            date = date.yesterday().unwrap_or(date);
        }
    }
    if !w.days.is_empty() && !w.days.iter().any(|d| d.matches(date, set.calendar())) {
        let names: Vec<&str> = w.days.iter().map(|d| d.name()).collect();
        return Err(format!(
            "days: {} {} is a {}, not {}",
            date.strftime("%A"),
            date,
            set.calendar().day_type(date),
            names.join("/")
        ));
    }
    above_below("price_above", ctx.price.map(Price::per_kwh), w.price_above.map(Price::per_kwh), true)?;
    above_below("price_below", ctx.price.map(Price::per_kwh), w.price_below.map(Price::per_kwh), false)?;
    let pct = |p: Percent| f64::from(p.get());
    above_below("soc_above", ctx.soc.map(pct), w.soc_above.map(pct), true)?;
    above_below("soc_below", ctx.soc.map(pct), w.soc_below.map(pct), false)?;
    let watts = |x: Watts| f64::from(x.get());
    above_below("pv_surplus_above_w", Some(watts(ctx.pv_surplus)), w.pv_surplus_above.map(watts), true)?;
    above_below("grid_import_above_w", Some(watts(ctx.grid_import)), w.grid_import_above.map(watts), true)?;
    Ok(())
}

fn above_below(name: &str, value: Option<f64>, threshold: Option<f64>, above: bool) -> Result<(), String> {
    let Some(th) = threshold else { return Ok(()) };
    let Some(v) = value else {
        return Err(format!("{name}: the value is unknown"));
    };
    match (above, v > th, v < th) {
        (true, true, _) | (false, _, true) => Ok(()),
        (true, false, _) => Err(format!("{name}: {v} <= {th}")),
        (false, _, false) => Err(format!("{name}: {v} >= {th}")),
    }
}

/// The controller override of an active rule's action now, or why it has no effect.
fn resolve(action: Action, ctx: &RuleContext, local: &Zoned) -> Result<Override, String> {
    match action {
        Action::NoDischarge => Ok(Override::NoDischarge),
        Action::LimitCharge { max_charge_power } => Ok(Override::LimitCharge { max_charge_power }),
        Action::LimitDischarge { max_discharge_power } => {
            Ok(Override::LimitDischarge { max_discharge_power })
        }
        Action::ForceCharge { power } => Ok(Override::ForceCharge { power }),
        Action::SocReserve { soc } => match ctx.soc {
            Some(s) if s > soc => Err(format!("SOC {s} above the reserve {soc}")),
            // At or below the reserve, or unknown (a reserve that cannot be checked is kept).
            Some(_) | None => Ok(Override::NoDischarge),
        },
        Action::ChargeTo { soc: target, by } => {
            let deadline = local
                .date()
                .to_datetime(by)
                .to_zoned(local.time_zone().clone())
                .map_err(|e| format!("deadline {}: {e}", hhmm(by)))?
                .timestamp();
            if ctx.at >= deadline {
                return Err(format!("past {} (inactive until tomorrow)", hhmm(by)));
            }
            let soc = ctx.soc.ok_or("SOC unknown")?;
            if soc >= target {
                return Err(format!("SOC {soc} reached the target {target}"));
            }
            let capacity = ctx.capacity.ok_or("battery capacity unknown")?;
            let missing_wh = f64::from(target.get() - soc.get()) / 100.0 * f64::from(capacity.get());
            let hours = deadline.duration_since(ctx.at).as_secs_f64() / 3600.0;
            let max = f64::from(ctx.max_charge.get().max(0.0));
            let w = (missing_wh / hours).min(max);
            // Bounded by `max` (an f32 Watts) and ≥ 0: the f32 conversion only rounds.
            #[allow(clippy::cast_possible_truncation)]
            let power = Watts::saturating(w as f32);
            Ok(Override::ForceCharge { power })
        }
    }
}

/// Smaller = more restrictive: allowed discharge, then forcing (1) after not (0), then
/// allowed (or forced) charge.
fn restrictiveness(o: Override) -> (f32, u8, f32) {
    match o {
        Override::NoDischarge => (0.0, 0, f32::INFINITY),
        Override::LimitCharge { max_charge_power } => (f32::INFINITY, 0, max_charge_power.get().abs()),
        Override::LimitDischarge { max_discharge_power } => {
            (max_discharge_power.get().abs(), 0, f32::INFINITY)
        }
        Override::ForceCharge { power } => (0.0, 1, power.get().abs()),
    }
}

/// Whether candidate `b` beats `a` (`a` comes earlier in the file).
fn outranks(b: (usize, i32, Override), a: (usize, i32, Override)) -> bool {
    match b.1.cmp(&a.1) {
        Ordering::Greater => true,
        Ordering::Less => false,
        Ordering::Equal => restrictiveness(b.2).partial_cmp(&restrictiveness(a.2)) == Some(Ordering::Less),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restrictiveness_order() {
        let w = |x: f32| Watts::saturating(x);
        let nd = Override::NoDischarge;
        let fc = Override::ForceCharge { power: w(1000.0) };
        let ld = Override::LimitDischarge { max_discharge_power: w(500.0) };
        let lc = Override::LimitCharge { max_charge_power: w(500.0) };
        assert!(outranks((1, 0, nd), (0, 0, fc)));
        assert!(!outranks((1, 0, fc), (0, 0, nd)));
        assert!(outranks((1, 0, fc), (0, 0, ld)));
        assert!(outranks((1, 0, ld), (0, 0, lc)));
        assert!(outranks((1, 0, Override::ForceCharge { power: w(500.0) }), (0, 0, fc)));
        // A tie stays with the earlier rule.
        assert!(!outranks((1, 0, nd), (0, 0, nd)));
        assert!(outranks((1, 1, lc), (0, 0, nd)));
    }
}
