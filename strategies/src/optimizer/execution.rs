//! How a plan is executed, as measured in `docs/ECONOMICS.md` (step 2), for the simulation's
//! EMS and the running gateway alike: a plan is acted on only
//! when it beats plain self-consumption on its own forecast by a margin, and its slots in which
//! the battery does what self-consumption would do are handed to the controller's
//! self-consumption loop (grid target 0), so the battery, not the grid, absorbs what the
//! forecast missed.

use super::baseline::self_consumption;
use super::types::{Plan, Problem, Step};
use crate::units::{Money, Ratio};

/// A planned battery power within this of self-consumption's (W) is self-consumption.
const SELF_CONSUMPTION_TOLERANCE_W: f64 = 1.0;

/// Whether `plan` (made from `problem` with its `soc_init`) beats self-consumption over `steps`
/// by at least `margin`. The energy each leaves in the battery at the end is valued at the
/// horizon's mean import price × the discharge efficiency, so a plan does not win by emptying
/// the battery at the horizon's end. A negative margin acts on every plan; so does a plan with
/// a demand charge in its objective (self-consumption's cost leaves the demand charge out, so
/// the comparison would turn away the peak shaving that is the plan's point).
#[must_use]
pub fn acted_on(problem: &Problem, steps: &[Step], plan: &Plan, margin: Money) -> bool {
    if margin.get() < 0.0 || problem.demand_charge.is_some() {
        return true;
    }
    let sc = self_consumption(problem, steps);
    let end = plan.soc.last().copied().unwrap_or(problem.soc_init.get());
    let sc_value = sc.total_cost.get() - end_worth(problem, steps, sc.final_soc.get());
    let plan_value = plan.total_cost.get() - end_worth(problem, steps, end);
    sc_value - plan_value >= margin.get()
}

/// What the energy left at SOC `soc` at the end of the horizon is worth to the gate: the
/// horizon's mean import price × the discharge efficiency for all of it (also when the plan
/// has its own [`Problem::end_value`]: the gate's yardstick stays the one measured in
/// `docs/ECONOMICS.md`).
fn end_worth(problem: &Problem, steps: &[Step], soc: f64) -> f64 {
    let cap = f64::from(problem.capacity_wh.get());
    #[allow(clippy::cast_precision_loss)] // a horizon of at most a few hundred steps
    let mean_price = steps.iter().map(|s| s.import_price.per_kwh()).sum::<f64>() / steps.len().max(1) as f64;
    (mean_price * problem.eff_discharge.get() * cap / 1000.0).max(0.0) * soc
}

/// Per step: whether the planned battery power is what self-consumption would do from the
/// planned SOC at the step's start (a full battery exporting, an empty one importing, the
/// deficit or surplus covered exactly).
#[must_use]
pub fn self_consumption_steps(problem: &Problem, steps: &[Step], plan: &Plan) -> Vec<bool> {
    let starts = core::iter::once(problem.soc_init.get()).chain(plan.soc.iter().copied());
    steps
        .iter()
        .zip(starts)
        .zip(&plan.battery_w)
        .map(|((step, start), b)| {
            let p = Problem { soc_init: Ratio::saturating(start), demand_charge: None, ..*problem };
            let sc = self_consumption(&p, core::slice::from_ref(step));
            sc.battery_w.first().is_some_and(|s| (s - b).abs() <= SELF_CONSUMPTION_TOLERANCE_W)
        })
        .collect()
}
