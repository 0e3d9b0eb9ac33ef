//! The exact day-ahead / rolling-horizon battery planner and its CSV input.
//!
//! # Signs and units (design.md §4)
//!
//! Battery AC power `b` is `+` discharge / `−` charge, grid power `g` is `+` import / `−`
//! export, PV `≥ 0`, and `load = grid + pv + battery`, so `g = load − pv − b`. Powers are watts,
//! energies watt-hours, prices currency per kWh, state of charge (SOC) a fraction `0..=1` of
//! [`Problem::capacity_wh`].
//!
//! # The model
//!
//! One step `t` lasts `Δt_t` hours (steps may differ in length, e.g. 92 or 100 quarter-hours on
//! daylight-saving days). Per step the planner picks one net battery power `b_t`: the battery
//! charges *or* discharges within a step, never both. Stored energy `e` (Wh) evolves as
//!
//! ```text
//! e_{t+1} = e_t − Δt·b_t / η_d      if b_t ≥ 0 (discharge; the battery gives up more than the AC side gets)
//! e_{t+1} = e_t + Δt·|b_t|·η_c      if b_t < 0 (charge)
//! ```
//!
//! subject to, in every step,
//!
//! * `−charge_max_w ≤ b_t ≤ discharge_max_w`, and with `no_battery_export`
//!   `b_t ≤ max(load_t − pv_t, 0)` (the battery may cover the site's own deficit, never feed
//!   the grid);
//! * `g_t = load_t − pv_t − b_t` with `−grid_export_max_w ≤ g_t ≤ grid_import_max_w`. The
//!   battery itself never causes or worsens a violation: it charges at most up to the import
//!   limit and discharges at most down to the export limit, i.e.
//!   `min(0, net_t − import_max) ≤ b_t ≤ max(0, net_t + export_max)` with `net_t = load_t − pv_t`
//!   (when the load or the PV alone exceeds a limit, the battery may only help);
//! * `soc_min ≤ e_{t+1}/capacity ≤ soc_max` at the end of every step, and at the end of the
//!   horizon `SOC ≥ soc_final` (**at least**: ending fuller is allowed when it pays).
//!
//! The cost minimised and reported as [`Plan::total_cost`] is
//!
//! ```text
//! Σ_t Δt_t/1000 · ( import_price_t·max(g_t, 0) − export_price_t·max(−g_t, 0) + degradation·|b_t| )
//! ```
//!
//! i.e. energy cost minus export revenue plus the degradation cost per kWh of AC throughput.
//! Prices may be negative and the export price may exceed the import price; the model stays
//! exact because `b_t` is a single signed power (a linear relaxation with separate charge and
//! discharge variables would charge and discharge at once to burn energy at negative prices).
//!
//! # Never infeasible
//!
//! [`plan`] fails only for invalid parameters or step data. Data that make the constraints
//! unsatisfiable are handled by documented relaxations, reported in [`Plan::status`]
//! (`"feasible_relaxed"`) and detailed in [`Plan::relaxations`]:
//!
//! * **The battery power range of each step is hard:** the power limits, `no_battery_export`
//!   and the rule that the battery never pushes the grid beyond a limit. It always contains 0.
//! * **SOC window:** if the initial SOC is outside `[soc_min, soc_max]`, the plan returns into
//!   the window as fast as that power range allows; the steps that still end outside are listed.
//!   Once inside, the window is hard.
//! * **Final SOC:** if `soc_final` cannot be reached, the plan ends as full as possible.
//! * **Grid limits yield to PV and load:** PV is not curtailable and load is not sheddable, so
//!   when the battery cannot keep the grid within its limits (PV surplus beyond the export limit
//!   plus the charge power, a full battery, a load above the import limit and an empty battery),
//!   the limit is exceeded by as little energy, summed over the horizon, as possible. Internally
//!   each kWh beyond a limit costs [`grid_limit_penalty`], a price so high (1000 × the largest
//!   price, divided by the round-trip efficiency) that no saving justifies an avoidable
//!   violation; the penalty is *not* part of `total_cost`. The steps are listed.
//!
//! # The algorithm: exact dynamic programming over piecewise-linear value functions
//!
//! Let `V_t(e)` be the least cost of steps `t..T` from stored energy `e`. In step `t`, as a
//! function of the energy change `δ = e_{t+1} − e_t`, the cost `f_t(δ)` is piecewise linear with
//! at most five pieces: `b` is linear in `δ` on each side of `δ = 0` (the efficiencies and the
//! degradation cost put a kink there), the grid power is linear in `b`, and the price changes
//! where the grid power crosses zero (import/export) and where it crosses a grid limit (the
//! penalty). Its domain is given by the battery power limits. Then, backwards from
//! `V_T = 0` on the allowed final energies,
//!
//! ```text
//! V_t(e) = min_δ f_t(δ) + V_{t+1}(e + δ)          on the energies allowed at the start of step t
//! ```
//!
//! is again continuous and piecewise linear, and it is computed **exactly** (no grid over SOC):
//! for each linear piece of `f_t` (slope `s` on `[a, b]`) the inner minimum is
//! `−s·e + const + min_{x ∈ [e+a, e+b]} (V_{t+1}(x) + s·x)`, a sliding-window minimum computed in
//! linear time with a monotone deque; `V_t` is the lower envelope over the pieces. When both
//! functions are convex (the common case: positive prices, export price ≤ import price) the
//! min-plus convolution is simply the merge of the two slope sequences. Collinear vertices are
//! dropped so the functions stay small. A forward pass then picks in each step the `δ` that
//! attains the minimum, which needs only the vertices of `f_t` and `V_{t+1}` in range.
//!
//! **Why it is exact:** every operation (min-plus convolution of continuous piecewise-linear
//! functions, restriction to an interval, minimisation over an interval) maps continuous
//! piecewise-linear functions to continuous piecewise-linear functions whose vertices are
//! computed in closed form, so the only error is floating-point rounding (relative 1e-12 per
//! operation). The optimality of the plan is checked in `strategies/tests/planner_exact.rs`
//! against a mixed-integer linear programme solved by an independent solver.
//!
//! **Complexity:** `O(T · (n + m))` per plan in the convex case and `O(T · m · n)` in general,
//! for `T` steps, `m ≤ 5` pieces per step and `n` vertices of the value function; memory
//! `O(T · n)` for the value functions kept for the forward pass. `n` has no small theoretical
//! bound (a step can add a few vertices), but merging collinear vertices keeps it small: at most
//! 16 on the real-data week of `benches/planner.rs` (18 on its non-convex stress variant), where
//! 96 steps plan in well under a millisecond and 672 steps in under one.

mod csv;
mod dp;
mod pwl;

use std::time::{Duration, Instant};

use ems_core::{WattHours, Watts};
use jiff::{SignedDuration, Timestamp};

pub use self::csv::{parse_csv, CsvError, ValueProblem, COLUMNS};
use crate::units::{Money, Price, Ratio};

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
    /// Energy cost minus export revenue plus degradation cost over the horizon (the penalty for
    /// exceeding grid limits is not included).
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

/// The internal price of one kWh beyond a grid limit (see the module docs): 1000 × (1 + the
/// largest absolute price + the degradation cost), divided by the round-trip efficiency. Exposed
/// so that independent checks can build the same objective.
#[must_use]
pub fn grid_limit_penalty(problem: &Problem, steps: &[Step]) -> Price {
    let pmax = steps
        .iter()
        .map(|s| s.import_price.per_kwh().abs().max(s.export_price.per_kwh().abs()))
        .fold(0.0_f64, f64::max);
    let eta = problem.eff_charge.get() * problem.eff_discharge.get();
    let eta = if eta > 0.0 { eta } else { 1.0 };
    Price::new(1000.0 * (1.0 + pmax + problem.degradation_cost.per_kwh().abs()) / eta)
}

fn validate_steps(steps: &[Step]) -> Result<(), PlanError> {
    if steps.is_empty() {
        return Err(PlanError::NoSteps);
    }
    for (index, s) in steps.iter().enumerate() {
        let bad = |field, value, expected| PlanError::Step { index, start: s.start, field, value, expected };
        let d = s.duration.as_secs_f64();
        if d <= 0.0 {
            return Err(bad("duration", d, "> 0 s"));
        }
        let pv = f64::from(s.pv.get());
        if pv < 0.0 {
            return Err(bad("pv_w", pv, ">= 0 W"));
        }
        let load = f64::from(s.load.get());
        if load < 0.0 {
            return Err(bad("load_w", load, ">= 0 W"));
        }
        let p = s.import_price.per_kwh();
        if !p.is_finite() {
            return Err(bad("import_price", p, "finite"));
        }
        let p = s.export_price.per_kwh();
        if !p.is_finite() {
            return Err(bad("export_price", p, "finite"));
        }
    }
    Ok(())
}

/// Plans the battery over `steps` at least cost (exact to floating-point rounding; see the
/// module docs for the model and its relaxations).
///
/// # Errors
/// [`PlanError`] for invalid parameters or steps (and, should rounding ever break an internal
/// invariant, [`PlanError::Numerical`]); never because the constraints cannot all be met.
pub fn plan(problem: &Problem, steps: &[Step]) -> Result<Plan, PlanError> {
    let started = Instant::now();
    problem.validate()?;
    validate_steps(steps)?;
    let penalty = grid_limit_penalty(problem, steps);
    let mut out = dp::solve(problem, steps, penalty.per_kwh())?;
    out.solve_time = started.elapsed();
    Ok(out)
}

/// Re-plans from a measured SOC, for model-predictive use: call it every few minutes with the
/// latest SOC (which may lie outside the window: the plan then returns into it as fast as the
/// power limits allow) and the steps still ahead (see [`remaining_steps`]); apply
/// `battery_w[0]`.
///
/// # Errors
/// As [`plan`]. (A measured SOC outside `[0, 1]` is refused when it is made a [`Ratio`].)
pub fn replan(problem: &Problem, measured_soc: Ratio, steps: &[Step]) -> Result<Plan, PlanError> {
    let p = Problem { soc_init: measured_soc, ..*problem };
    plan(&p, steps)
}

/// The steps still ahead at `now`: the step containing `now`, shortened to start at `now`, and
/// all later ones. Steps that ended by `now` are dropped, so the index of the first returned step
/// in `steps` is `steps.len() − result.len()`.
#[must_use]
pub fn remaining_steps(steps: &[Step], now: Timestamp) -> Vec<Step> {
    let first = steps.partition_point(|s| s.end() <= now);
    let mut out: Vec<Step> = steps.get(first..).unwrap_or_default().to_vec();
    if let Some(s) = out.first_mut() {
        if s.start < now {
            s.duration = s.end().duration_since(now);
            s.start = now;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(prices: &[(f64, f64)], pv: f64, load: f64) -> Vec<Step> {
        let t0: Timestamp = "2024-06-01T00:00:00Z".parse().unwrap();
        prices
            .iter()
            .enumerate()
            .map(|(i, &(imp, exp))| Step {
                start: t0 + SignedDuration::from_hours(i64::try_from(i).unwrap()),
                duration: SignedDuration::from_hours(1),
                pv: crate::units::watts_from_f64(pv),
                load: crate::units::watts_from_f64(load),
                import_price: Price::new(imp),
                export_price: Price::new(exp),
            })
            .collect()
    }

    #[test]
    fn defaults_are_valid_and_named_like_flags() {
        assert_eq!(Problem::default().validate(), Ok(()));
        let p = Problem { eff_charge: Ratio::ZERO, ..Problem::default() };
        assert_eq!(p.validate().unwrap_err().to_string(), "--eff-charge = 0: must be in (0, 1]");
        let p = Problem { soc_min: crate::ratio!(0.95), ..Problem::default() };
        assert_eq!(p.validate().unwrap_err().field, "soc-max");
        let p = Problem { capacity_wh: WattHours::ZERO, ..Problem::default() };
        assert_eq!(p.validate().unwrap_err().field, "capacity-wh");
        let p = Problem { soc_final: crate::ratio!(0.95), ..Problem::default() };
        assert_eq!(p.validate().unwrap_err().field, "soc-final");
        let p = Problem { degradation_cost: Price::new(-0.01), ..Problem::default() };
        assert_eq!(p.validate().unwrap_err().field, "degradation-cost");
        let p = Problem { eff_discharge: Ratio::saturating(f64::NAN), ..Problem::default() };
        assert_eq!(p.validate().unwrap_err().field, "eff-discharge");
        let p = Problem { grid_export_max_w: ems_core::watts!(-1.0), ..Problem::default() };
        assert_eq!(p.validate().unwrap_err().field, "grid-export-max-w");
    }

    #[test]
    fn invalid_steps_are_refused() {
        assert_eq!(plan(&Problem::default(), &[]), Err(PlanError::NoSteps));
        let mut s = steps(&[(0.3, 0.1)], 0.0, 100.0);
        s[0].duration = SignedDuration::ZERO;
        assert!(matches!(plan(&Problem::default(), &s), Err(PlanError::Step { field: "duration", .. })));
        let mut s = steps(&[(0.3, 0.1)], 0.0, 100.0);
        s[0].import_price = Price::new(f64::NAN);
        assert!(matches!(plan(&Problem::default(), &s), Err(PlanError::Step { field: "import_price", .. })));
        let s = steps(&[(0.3, 0.1)], -1.0, 100.0);
        assert!(matches!(plan(&Problem::default(), &s), Err(PlanError::Step { field: "pv_w", .. })));
    }

    #[test]
    fn remaining_steps_truncates_the_current_step() {
        let s = steps(&[(0.3, 0.1); 4], 0.0, 100.0);
        let now = s[1].start + SignedDuration::from_mins(20);
        let r = remaining_steps(&s, now);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].start, now);
        assert_eq!(r[0].duration, SignedDuration::from_mins(40));
        assert_eq!(r[1], s[2]);
        assert_eq!(remaining_steps(&s, s[2].start).len(), 2);
        assert!(remaining_steps(&s, s[3].end()).is_empty());
    }
}
