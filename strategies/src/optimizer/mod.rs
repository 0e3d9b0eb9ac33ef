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
//! # Demand charge
//!
//! With [`Problem::demand_charge`] the objective also charges
//! `per_kw · max(0, max_t g_t − peak_so_far) / 1000` over the counting steps (all steps before
//! [`DemandObjective::until`], or those marked in [`plan_with_demand_steps`]), and
//! [`Plan::total_cost`] includes it. The maximum couples all steps; the plan is found by an outer
//! golden-section search over an import cap on the counting steps, each cap solved exactly by
//! the programme below (module `demand`). It is exact per cap and never worse than the plan
//! without a cap by the true objective; the cap search is exact when the objective is convex in
//! the cap (positive prices, export price ≤ import price). About 27 exact solves per plan.
//!
//! # Forecast scenarios
//!
//! With [`Problem::scenarios`] the cost of a step is the weighted mean over a few scenarios of
//! PV and load (factors on the step's forecast whose spread grows with the lead time, see
//! [`Scenarios`]): `Σ_k w_k · cost(load·l_k − pv·p_k − b)`. Each scenario adds one kink (its grid
//! power at zero), so a step's cost has at most `3 + MAX_SCENARIOS` kinks and stays convex in the
//! convex case; the programme below is unchanged and still exact. [`Plan::total_cost`] is then
//! the expected cost and [`Plan::grid_w`] the grid power for the steps' own forecast.
//! `strategies/tests/optimizer_scenarios.rs` checks it against a brute force.
//!
//! # Yardstick
//!
//! [`self_consumption`] computes what plain self-consumption would do over the same steps in the
//! same model, so a caller can act on a plan only when it beats that by a margin.
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

mod baseline;
mod csv;
mod demand;
mod dp;
mod execution;
mod pwl;
mod types;

use std::time::Instant;

use jiff::Timestamp;

pub use self::baseline::{self_consumption, SelfConsumptionSchedule};
pub use self::csv::{parse_csv, CsvError, ValueProblem, COLUMNS};
pub use self::execution::{acted_on, self_consumption_steps};
pub use self::types::{
    DemandObjective, DemandPrice, EndValue, ParamError, Plan, PlanError, PlanStatus, Problem, Relaxations,
    Scenario, Scenarios, Step, MAX_SCENARIOS,
};
use crate::units::{Price, Ratio};

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
    let until = problem.demand_charge.and_then(|d| d.until);
    let counts: Vec<bool> = steps.iter().map(|s| until.is_none_or(|u| s.start < u)).collect();
    plan_with_demand_steps(problem, steps, &counts)
}

/// As [`plan`], with the steps that count for the demand charge given one by one (e.g. only a
/// tariff's peak windows): step `t` counts when `counts[t]` is `true` and it starts before
/// [`DemandObjective::until`]; steps beyond the end of `counts` do not count. Without a demand
/// charge in `problem` this is [`plan`].
///
/// The demand charge makes the objective depend on the largest import of the counting steps;
/// the plan is exact for the import cap an outer search settles on (see the module docs of
/// `demand`: golden-section search over the cap, each cap solved exactly), about 27 exact
/// solves.
///
/// # Errors
/// As [`plan`].
pub fn plan_with_demand_steps(problem: &Problem, steps: &[Step], counts: &[bool]) -> Result<Plan, PlanError> {
    let started = Instant::now();
    problem.validate()?;
    validate_steps(steps)?;
    let penalty = grid_limit_penalty(problem, steps).per_kwh();
    let mut out = match problem.demand_charge {
        None => dp::solve(problem, steps, penalty, None)?,
        Some(d) => {
            let counts: Vec<bool> = steps
                .iter()
                .enumerate()
                .map(|(t, s)| counts.get(t).copied().unwrap_or(false) && d.until.is_none_or(|u| s.start < u))
                .collect();
            demand::solve(problem, steps, penalty, &counts)?
        }
    };
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
    use ems_core::WattHours;
    use jiff::SignedDuration;

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
