//! The demand charge in the objective. The charge depends on the largest import of the counting
//! steps, which couples all steps, so it does not fit the per-step cost of the dynamic
//! programme. It is handled by an outer search over an import cap `C` on the counting steps:
//! for a fixed cap the programme is exact (the cap is a grid limit), and the plan's true
//! objective is
//!
//! ```text
//! J(C) = cost of the exact plan under cap C + per_kw · max(0, its peak − peak_so_far) / 1000
//! ```
//!
//! The cap is searched between `peak_so_far` (no rise) and the peak of the plan without a cap
//! (no shaving) by golden-section search, and the best plan seen wins (the uncapped plan
//! included, so the demand charge never makes the plan worse by its own measure). `J` is convex
//! in `C` when the energy cost is (positive prices, export price ≤ import price); otherwise the
//! search is a heuristic that still never returns a plan worse than the uncapped one.

use super::{dp, Plan, PlanError, PlanStatus, Problem, Step};
use crate::units::Money;

/// Golden-section iterations: the bracket shrinks by 0.618 each, to 1e-5 of its width.
const ITERATIONS: usize = 24;

/// Grid power beyond a limit by more than this (W) is reported as a relaxation.
const GRID_TOL_W: f64 = 1e-3;

/// The largest grid import over the counting steps (W), `None` when no step counts.
fn peak(plan: &Plan, counts: &[bool]) -> Option<f64> {
    plan.grid_w.iter().zip(counts).filter(|(_, c)| **c).map(|(g, _)| *g).reduce(f64::max)
}

/// Solves `problem` with its demand charge; `counts[t]` says whether step `t` counts for the
/// peak (same length as `steps`).
pub(crate) fn solve(
    problem: &Problem,
    steps: &[Step],
    penalty: f64,
    counts: &[bool],
) -> Result<Plan, PlanError> {
    let uncapped = dp::solve(problem, steps, penalty, None)?;
    let Some(d) = problem.demand_charge else {
        return Ok(uncapped);
    };
    let per_w = d.per_kw.per_kw() / 1000.0;
    let floor = f64::from(d.peak_so_far.get()).max(0.0);
    let charge = |plan: &Plan| peak(plan, counts).map_or(0.0, |p| per_w * (p - floor).max(0.0));
    let Some(top) = peak(&uncapped, counts) else {
        return Ok(uncapped);
    };
    if per_w <= 0.0 || top <= floor + GRID_TOL_W {
        return Ok(with_charge(uncapped, 0.0));
    }
    let capped = |cap: f64| -> Result<(f64, Plan), PlanError> {
        let caps: Vec<Option<f64>> = counts.iter().map(|&c| c.then_some(cap)).collect();
        let plan = dp::solve(problem, steps, penalty, Some(&caps))?;
        Ok((plan.total_cost.get() + charge(&plan), plan))
    };
    let mut best = (uncapped.total_cost.get() + charge(&uncapped), uncapped);
    let keep = |candidate: (f64, Plan), best: &mut (f64, Plan)| {
        if candidate.0 < best.0 - 1e-12 * (1.0 + best.0.abs()) {
            *best = candidate;
        }
    };
    keep(capped(floor)?, &mut best);
    let phi = 0.5 * (5.0_f64.sqrt() - 1.0);
    let (mut lo, mut hi) = (floor, top);
    let mut x1 = hi - phi * (hi - lo);
    let mut x2 = lo + phi * (hi - lo);
    let (mut f1, p1) = capped(x1)?;
    let (mut f2, p2) = capped(x2)?;
    keep((f1, p1), &mut best);
    keep((f2, p2), &mut best);
    for _ in 0..ITERATIONS {
        if f1 <= f2 {
            hi = x2;
            x2 = x1;
            f2 = f1;
            x1 = hi - phi * (hi - lo);
            let (f, p) = capped(x1)?;
            f1 = f;
            keep((f, p), &mut best);
        } else {
            lo = x1;
            x1 = x2;
            f1 = f2;
            x2 = lo + phi * (hi - lo);
            let (f, p) = capped(x2)?;
            f2 = f;
            keep((f, p), &mut best);
        }
    }
    let (value, plan) = best;
    let extra = value - plan.total_cost.get();
    Ok(relimit(problem, with_charge(plan, extra)))
}

fn with_charge(mut plan: Plan, charge: f64) -> Plan {
    plan.total_cost = Money::new(plan.total_cost.get() + charge);
    plan
}

/// The relaxations against the problem's own grid limits (a cap is not a limit the data broke).
fn relimit(problem: &Problem, mut plan: Plan) -> Plan {
    let (imp, exp) = (f64::from(problem.grid_import_max_w.get()), f64::from(problem.grid_export_max_w.get()));
    plan.relaxations.grid_limit_steps = plan
        .grid_w
        .iter()
        .enumerate()
        .filter(|(_, &g)| g > imp + GRID_TOL_W || g < -exp - GRID_TOL_W)
        .map(|(t, _)| t)
        .collect();
    plan.status = if plan.relaxations.is_empty() { PlanStatus::Optimal } else { PlanStatus::FeasibleRelaxed };
    plan
}
