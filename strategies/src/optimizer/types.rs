//! The planner's vocabulary: the steps of a horizon, the battery problem, the plan and the
//! errors. Kept apart from the solver (`dp`) and the CSV reader (`csv`), which use these types,
//! so that the parent module can use those children without a circle.

use std::time::Duration;

use ems_core::{WattHours, Watts};
use jiff::{SignedDuration, Timestamp};

use crate::units::{Factor, Money, Price, Ratio};

/// One time step of the planning horizon: what the site will produce, consume and pay from
/// `start` for `duration`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// Start of the step (UTC instant).
    pub start: Timestamp,
    /// Length of the step; must be positive.
    pub duration: SignedDuration,
    /// Expected PV production, `≥ 0`.
    pub pv: Watts,
    /// Expected site load, `≥ 0`.
    pub load: Watts,
    /// Price paid per kWh imported.
    pub import_price: Price,
    /// Price earned per kWh exported (a negative value is a fee for exporting).
    pub export_price: Price,
}

impl Step {
    /// End of the step.
    #[must_use]
    pub fn end(&self) -> Timestamp {
        self.start.checked_add(self.duration).unwrap_or(Timestamp::MAX)
    }

    /// Length in hours.
    #[must_use]
    pub fn hours(&self) -> f64 {
        self.duration.as_secs_f64() / 3600.0
    }
}

/// Battery and grid parameters of a planning problem. Field names follow the command-line flags
/// (`capacity_wh` ↔ `--capacity-wh`, …); [`Problem::validate`] names them that way. The
/// [`Default`] is the command-line default.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Problem {
    /// Usable capacity, `> 0` (`capacity-wh`, default 10000 Wh).
    pub capacity_wh: WattHours,
    /// Largest AC charge power, `≥ 0` (`charge-max-w`, default 5000 W).
    pub charge_max_w: Watts,
    /// Largest AC discharge power, `≥ 0` (`discharge-max-w`, default 5000 W).
    pub discharge_max_w: Watts,
    /// Charge efficiency AC → stored, `0 < η ≤ 1` (`eff-charge`, default 0.95).
    pub eff_charge: Ratio,
    /// Discharge efficiency stored → AC, `0 < η ≤ 1` (`eff-discharge`, default 0.95).
    pub eff_discharge: Ratio,
    /// Lowest SOC at the end of any step, fraction (`soc-min`, default 0.1).
    pub soc_min: Ratio,
    /// Highest SOC at the end of any step, fraction (`soc-max`, default 0.9).
    pub soc_max: Ratio,
    /// SOC at the start of the first step, fraction `0..=1`; may lie outside the window
    /// (`soc-init`, default 0.5).
    pub soc_init: Ratio,
    /// Least SOC at the end of the horizon, fraction `0..=soc_max` (`soc-final`, default 0.5).
    pub soc_final: Ratio,
    /// Grid import limit, `≥ 0` (`grid-import-max-w`, default 20000 W).
    pub grid_import_max_w: Watts,
    /// Grid export limit, `≥ 0` (`grid-export-max-w`, default 20000 W).
    pub grid_export_max_w: Watts,
    /// The battery may not discharge into the grid: `b ≤ max(load − pv, 0)` in every step
    /// (`no-battery-export`, default false).
    pub no_battery_export: bool,
    /// Cost per kWh of AC throughput, charge plus discharge, `≥ 0` (`degradation-cost`,
    /// default 0).
    pub degradation_cost: Price,
    /// A demand charge on the billing period's peak import, part of the objective (default
    /// `None`: no demand charge). See [`DemandObjective`].
    pub demand_charge: Option<DemandObjective>,
    /// Forecast uncertainty: the plan minimises the cost expected over these scenarios of PV and
    /// load instead of the cost of the point forecast (default `None`: the steps' PV and load are
    /// taken as certain). See [`Scenarios`].
    pub scenarios: Option<Scenarios>,
    /// What energy left in the battery at the end of the horizon is worth (default `None`: zero
    /// above `soc_final`, so the plan empties the battery down to it whenever that earns a cent).
    /// See [`EndValue`].
    pub end_value: Option<EndValue>,
}

/// The value of stored energy at the end of the horizon: every kWh stored above `soc_final` is
/// worth [`Self::price`], up to [`Self::up_to`] of stored energy; energy beyond that is worth
/// nothing. As a cost it is convex (a slope of `−price`, then 0), so the programme stays exact
/// and keeps its convex fast path. It is part of the objective the plan minimises, not of
/// [`Plan::total_cost`].
///
/// A rolling-horizon plan without it sees no use for energy after its last step, so it sells
/// the battery's content or declines to keep it when the horizon ends before the next
/// expensive hours; valued at about what it will save later (e.g. a low quantile of the import
/// price × the discharge efficiency), energy is kept for them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EndValue {
    /// Value per kWh **stored** (not per kWh delivered: the caller includes the discharge
    /// efficiency), `≥ 0`.
    pub price: Price,
    /// How much stored energy above `soc_final` has that value, `≥ 0`.
    pub up_to: WattHours,
}

/// The most scenarios a [`Scenarios`] holds.
pub const MAX_SCENARIOS: usize = 16;

/// One forecast scenario: the steps' PV and load multiplied by these factors, with a weight
/// (its probability, up to normalisation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scenario {
    /// Factor on every step's PV forecast.
    pub pv: Factor,
    /// Factor on every step's load forecast.
    pub load: Factor,
    /// Weight; the weights of a [`Scenarios`] are normalised to sum 1.
    pub weight: Ratio,
}

/// Forecast uncertainty as a few weighted scenarios of PV and load (e.g. quantiles of the
/// forecaster's own past errors), for a plan that minimises the **expected** cost.
///
/// In step `t` the planner's cost of a battery power `b` becomes the weighted mean of the cost
/// over the scenarios' grid powers `g_k = load·l_k − pv·p_k − b`, so a plan weighs a shortfall
/// (import at the import price) against a surplus (export at the export price) by how likely
/// each is, instead of trusting the point forecast. The schedule is one battery power per step
/// for all scenarios (the plan is re-made every few minutes with new measurements, so no
/// scenario-dependent decisions are planned). The spread grows with the lead time: at lead `L`
/// (from the start of the first step to the middle of step `t`) a factor `f` acts as
/// `1 + (f − 1)·min(1, L / ramp)`, so the next minutes, which the latest measurements
/// describe well, are nearly certain. The battery power range and the grid-limit accounting use
/// the steps' own PV and load.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scenarios {
    items: [Scenario; MAX_SCENARIOS],
    len: usize,
    ramp: SignedDuration,
}

impl Scenarios {
    /// Scenarios from a list (at most [`MAX_SCENARIOS`], weights not all zero) whose spread is
    /// complete after `ramp` of lead time (`ramp ≤ 0`: from the first step).
    ///
    /// # Errors
    /// [`ParamError`] (field `scenarios`, the count) for an empty or too long list, or (field
    /// `scenario-weight`, the sum) when the weights sum to zero.
    pub fn new(items: &[Scenario], ramp: SignedDuration) -> Result<Self, ParamError> {
        #[allow(clippy::cast_precision_loss)] // a short list
        let n = items.len() as f64;
        check("scenarios", n, !items.is_empty() && items.len() <= MAX_SCENARIOS, "1..=16 scenarios")?;
        let sum: f64 = items.iter().map(|s| s.weight.get()).sum();
        check("scenario-weight", sum, sum > 0.0, "a sum > 0")?;
        let one =
            Scenario { pv: Factor::saturating(1.0), load: Factor::saturating(1.0), weight: Ratio::ZERO };
        let mut out = [one; MAX_SCENARIOS];
        for (slot, s) in out.iter_mut().zip(items) {
            *slot = Scenario { weight: Ratio::saturating(s.weight.get() / sum), ..*s };
        }
        Ok(Self { items: out, len: items.len(), ramp })
    }

    /// Every combination of a PV factor and a load factor (independent errors), each weighted
    /// by the product of their weights.
    ///
    /// # Errors
    /// As [`Self::new`] (more than [`MAX_SCENARIOS`] combinations, or zero weights).
    pub fn product(
        pv: &[(Factor, Ratio)],
        load: &[(Factor, Ratio)],
        ramp: SignedDuration,
    ) -> Result<Self, ParamError> {
        let one =
            Scenario { pv: Factor::saturating(1.0), load: Factor::saturating(1.0), weight: Ratio::ZERO };
        let mut items = [one; MAX_SCENARIOS];
        let mut n = 0;
        for &(p, wp) in pv {
            for &(l, wl) in load {
                if let Some(slot) = items.get_mut(n) {
                    *slot = Scenario { pv: p, load: l, weight: Ratio::saturating(wp.get() * wl.get()) };
                }
                n += 1;
            }
        }
        #[allow(clippy::cast_precision_loss)] // a short list
        check("scenarios", n as f64, (1..=MAX_SCENARIOS).contains(&n), "1..=16 scenarios")?;
        Self::new(&items[..n], ramp)
    }

    /// The scenarios, weights normalised.
    #[must_use]
    pub fn items(&self) -> &[Scenario] {
        self.items.get(..self.len).unwrap_or_default()
    }

    /// The lead time after which the spread is complete.
    #[must_use]
    pub fn ramp(&self) -> SignedDuration {
        self.ramp
    }

    /// How much of the spread applies at lead `lead`: `min(1, lead / ramp)`, 1 without a ramp.
    #[must_use]
    pub(crate) fn share_at(&self, lead: SignedDuration) -> f64 {
        let r = self.ramp.as_secs_f64();
        if r <= 0.0 {
            1.0
        } else {
            (lead.as_secs_f64() / r).clamp(0.0, 1.0)
        }
    }
}

/// A demand charge in the plan's objective: every watt by which the highest import of a
/// counting step (the step's mean grid power) rises above [`Self::peak_so_far`] costs
/// [`Self::per_kw`] per kW. So a plan that raises the billing period's peak pays for it, and one
/// that shaves it saves the energy-price difference only where that pays more.
///
/// Which steps count: those that start before [`Self::until`] (the end of the billing period;
/// `None`: all), and with [`super::plan_with_demand_steps`] only those marked (e.g. a tariff's
/// peak windows).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DemandObjective {
    /// Charge per kW of the period's peak.
    pub per_kw: DemandPrice,
    /// The highest import that already counts in this billing period, `≥ 0` (0 at its start).
    pub peak_so_far: Watts,
    /// End of the billing period: steps starting at or after it do not count.
    pub until: Option<Timestamp>,
}

/// Currency per kW of peak power (a demand charge's rate), finite and `≥ 0`.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct DemandPrice(f64);

impl DemandPrice {
    /// Zero.
    pub const ZERO: Self = Self(0.0);

    /// A rate in currency per kW.
    ///
    /// # Errors
    /// [`ParamError`] (field `demand-charge-per-kw`) when it is negative or not finite.
    pub fn try_new(per_kw: f64) -> Result<Self, ParamError> {
        check("demand-charge-per-kw", per_kw, per_kw >= 0.0, ">= 0 per kW")?;
        Ok(Self(per_kw))
    }

    /// Currency per kW.
    #[must_use]
    pub const fn per_kw(self) -> f64 {
        self.0
    }
}

impl Default for Problem {
    fn default() -> Self {
        Self {
            capacity_wh: ems_core::watt_hours!(10_000.0),
            charge_max_w: ems_core::watts!(5000.0),
            discharge_max_w: ems_core::watts!(5000.0),
            eff_charge: crate::ratio!(0.95),
            eff_discharge: crate::ratio!(0.95),
            soc_min: crate::ratio!(0.1),
            soc_max: crate::ratio!(0.9),
            soc_init: crate::ratio!(0.5),
            soc_final: crate::ratio!(0.5),
            grid_import_max_w: ems_core::watts!(20_000.0),
            grid_export_max_w: ems_core::watts!(20_000.0),
            no_battery_export: false,
            degradation_cost: Price::ZERO,
            demand_charge: None,
            scenarios: None,
            end_value: None,
        }
    }
}

/// A parameter outside its valid range, named as its command-line flag.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("--{field} = {value}: must be {expected}")]
pub struct ParamError {
    /// Flag name, e.g. `eff-charge`.
    pub field: &'static str,
    /// The rejected value.
    pub value: f64,
    /// The valid range, in words.
    pub expected: &'static str,
}

fn check(field: &'static str, value: f64, ok: bool, expected: &'static str) -> Result<(), ParamError> {
    if ok && value.is_finite() {
        Ok(())
    } else {
        Err(ParamError { field, value, expected })
    }
}

impl Problem {
    /// Checks every parameter; the first one out of range is named. The fractions are in
    /// `0..=1` by their type; what is checked here is what relates them (an efficiency of 0,
    /// `soc_max < soc_min`, `soc_final > soc_max`).
    ///
    /// # Errors
    /// [`ParamError`] with the flag name, the value and the valid range.
    pub fn validate(&self) -> Result<(), ParamError> {
        let cap = f64::from(self.capacity_wh.get());
        check("capacity-wh", cap, cap > 0.0, "> 0 Wh")?;
        let v = f64::from(self.charge_max_w.get());
        check("charge-max-w", v, v >= 0.0, ">= 0 W")?;
        let v = f64::from(self.discharge_max_w.get());
        check("discharge-max-w", v, v >= 0.0, ">= 0 W")?;
        let v = self.eff_charge.get();
        check("eff-charge", v, v > 0.0, "in (0, 1]")?;
        let v = self.eff_discharge.get();
        check("eff-discharge", v, v > 0.0, "in (0, 1]")?;
        let v = self.soc_max.get();
        check("soc-max", v, self.soc_max >= self.soc_min, "in [soc-min, 1]")?;
        let v = self.soc_final.get();
        check("soc-final", v, self.soc_final <= self.soc_max, "in [0, soc-max]")?;
        let v = f64::from(self.grid_import_max_w.get());
        check("grid-import-max-w", v, v >= 0.0, ">= 0 W")?;
        let v = f64::from(self.grid_export_max_w.get());
        check("grid-export-max-w", v, v >= 0.0, ">= 0 W")?;
        let v = self.degradation_cost.per_kwh();
        check("degradation-cost", v, v >= 0.0, ">= 0 per kWh")?;
        if let Some(v) = self.end_value {
            let p = v.price.per_kwh();
            check("end-value-price", p, p >= 0.0, ">= 0 per kWh")?;
            let w = f64::from(v.up_to.get());
            check("end-value-up-to-wh", w, w >= 0.0, ">= 0 Wh")?;
        }
        if let Some(d) = self.demand_charge {
            let v = d.per_kw.per_kw();
            check("demand-charge-per-kw", v, v >= 0.0, ">= 0 per kW")?;
            let v = f64::from(d.peak_so_far.get());
            check("demand-peak-so-far-w", v, v >= 0.0, ">= 0 W")?;
        }
        Ok(())
    }
}

/// Why no plan was made. Never because the constraints cannot be met (see the module docs).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    /// A battery or grid parameter is out of range.
    #[error(transparent)]
    Param(#[from] ParamError),
    /// There is nothing to plan.
    #[error("no steps to plan")]
    NoSteps,
    /// A step carries an invalid value.
    #[error("step {index} (starting {start}): {field} = {value} is invalid: must be {expected}")]
    Step {
        /// 0-based index of the step.
        index: usize,
        /// Its start.
        start: Timestamp,
        /// The field, as in the CSV header (`duration` for the step length, in seconds).
        field: &'static str,
        /// The rejected value.
        value: f64,
        /// The valid range, in words.
        expected: &'static str,
    },
    /// Floating-point rounding broke an internal invariant (a bug: please report the input).
    #[error("internal numerical failure at step {index}; please report the input")]
    Numerical {
        /// 0-based step.
        index: usize,
    },
}

/// Whether the plan met every constraint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanStatus {
    /// Every constraint holds and the cost is minimal.
    Optimal,
    /// Some constraint could not hold (see [`Plan::relaxations`]); the plan is the cheapest
    /// among those that relax it as little as possible.
    FeasibleRelaxed,
}

/// What a [`PlanStatus::FeasibleRelaxed`] plan had to give up. Not part of the JSON output.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Relaxations {
    /// Steps (0-based) whose grid power exceeds a grid limit (by more than 1 mW) because of PV
    /// or load the battery could not absorb or cover.
    pub grid_limit_steps: Vec<usize>,
    /// Steps (0-based) whose end SOC lies outside `[soc_min, soc_max]` because the initial SOC
    /// was outside and the power limits do not allow returning sooner.
    pub soc_window_steps: Vec<usize>,
    /// How far the final SOC falls short of `soc_final` (0 when reached).
    pub final_soc_shortfall: Ratio,
}

impl Relaxations {
    /// Whether nothing was relaxed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.grid_limit_steps.is_empty()
            && self.soc_window_steps.is_empty()
            && self.final_soc_shortfall <= Ratio::ZERO
    }
}

/// A battery schedule. Serialises to JSON as
/// `{"total_cost", "battery_w": [...], "soc": [...], "grid_w": [...], "solve_time_s", "status"}`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Plan {
    /// Energy cost minus export revenue plus degradation cost over the horizon, plus the demand
    /// charge on the rise of the peak when the problem has one (the penalty for exceeding grid
    /// limits is not included).
    pub total_cost: Money,
    /// Battery AC power per step, W, `+` discharge / `−` charge.
    pub battery_w: Vec<f64>,
    /// SOC (fraction) at the **end** of each step.
    pub soc: Vec<f64>,
    /// Grid power per step, W, `+` import / `−` export (`load − pv − battery`).
    pub grid_w: Vec<f64>,
    /// Wall-clock time spent planning (JSON: `solve_time_s`, seconds).
    #[serde(rename = "solve_time_s", serialize_with = "serialize_secs")]
    pub solve_time: Duration,
    /// `"optimal"` or `"feasible_relaxed"`.
    pub status: PlanStatus,
    /// Details of a relaxed plan.
    #[serde(skip)]
    pub relaxations: Relaxations,
}

fn serialize_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}
