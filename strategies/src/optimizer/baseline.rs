//! What plain self-consumption would do over a horizon, in the planner's model: the yardstick a
//! plan has to beat before it is worth acting on (a plan is optimal for its forecast, but a
//! forecast error can make any deviation from self-consumption cost money).

use super::dp::Slot;
use super::{Problem, Step};
use crate::units::{Money, Ratio};

/// The self-consumption schedule of a horizon: the battery covers the site's deficit and takes
/// its surplus, within its power limits and SOC window, and never trades with the grid.
#[derive(Debug, Clone, PartialEq)]
pub struct SelfConsumptionSchedule {
    /// Energy cost minus export revenue plus degradation cost, as [`super::Plan::total_cost`]
    /// (without a demand charge).
    pub total_cost: Money,
    /// Battery AC power per step, W, `+` discharge / `−` charge.
    pub battery_w: Vec<f64>,
    /// SOC (fraction) at the end of the horizon.
    pub final_soc: Ratio,
}

/// Self-consumption over `steps` from `problem.soc_init`, in the planner's model (efficiencies,
/// power limits, SOC window; a SOC outside the window is only moved toward it). Inputs are not
/// validated: call it with a problem and steps [`super::plan`] accepted.
///
/// With [`Problem::scenarios`], self-consumption follows each scenario's own PV and load (it
/// reacts to what happens, unlike a plan), and `total_cost` and `final_soc` are the weighted
/// means over the scenarios; `battery_w` is the schedule for the steps' own PV and load.
#[must_use]
pub fn self_consumption(problem: &Problem, steps: &[Step]) -> SelfConsumptionSchedule {
    let origin = steps.first().map_or(jiff::Timestamp::UNIX_EPOCH, |s| s.start);
    let slots: Vec<Slot> = steps.iter().map(|s| Slot::new(problem, s, 0.0, origin)).collect();
    let count = slots.first().map_or(1, Slot::scenario_count);
    let mut battery_w = Vec::with_capacity(steps.len());
    let (total, e) = if problem.scenarios.is_some() {
        let mut sum = (0.0, 0.0);
        for k in 0..count {
            let (total, e) = run(problem, &slots, k, None);
            let w = slots.first().map_or(0.0, |s| s.scenario(k).1);
            sum = (sum.0 + w * total, sum.1 + w * e);
        }
        let plain = Problem { scenarios: None, ..*problem };
        let plain: Vec<Slot> = steps.iter().map(|s| Slot::new(&plain, s, 0.0, origin)).collect();
        run(problem, &plain, 0, Some(&mut battery_w));
        sum
    } else {
        run(problem, &slots, 0, Some(&mut battery_w))
    };
    let cap = f64::from(problem.capacity_wh.get());
    SelfConsumptionSchedule {
        total_cost: Money::new(total),
        battery_w,
        final_soc: Ratio::saturating(if cap > 0.0 { e / cap } else { 0.0 }),
    }
}

/// Self-consumption through `slots` with scenario `k` taken as certain: the cost and the final
/// stored energy (Wh); the battery powers go to `powers` when given.
fn run(problem: &Problem, slots: &[Slot], k: usize, mut powers: Option<&mut Vec<f64>>) -> (f64, f64) {
    let cap = f64::from(problem.capacity_wh.get());
    let (e_min, e_max) = (problem.soc_min.get() * cap, problem.soc_max.get() * cap);
    let mut e = problem.soc_init.get() * cap;
    let mut total = 0.0;
    for slot in slots {
        let (slot, _) = slot.scenario(k);
        let want = slot.scenario_net().clamp(slot.b_lo(), slot.b_hi());
        // The energy change the window allows from `e` (none beyond it).
        let d = slot.delta_of(want);
        let d = if d < 0.0 { d.max((e_min - e).min(0.0)) } else { d.min((e_max - e).max(0.0)) };
        let b = slot.power_of(d);
        e += d;
        total += slot.money(b);
        if let Some(p) = powers.as_deref_mut() {
            p.push(b);
        }
    }
    (total, e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ems_core::Watts;
    use jiff::{SignedDuration, Timestamp};

    fn hour(i: i64, pv: f32, load: f32) -> Step {
        let t0: Timestamp = "2024-06-01T00:00:00Z".parse().unwrap();
        Step {
            start: t0 + SignedDuration::from_hours(i),
            duration: SignedDuration::from_hours(1),
            pv: Watts::saturating(pv),
            load: Watts::saturating(load),
            import_price: crate::Price::new(0.30),
            export_price: crate::Price::new(0.10),
        }
    }

    #[test]
    fn stores_the_surplus_and_covers_the_deficit_within_the_window() {
        // 10 kWh, window 10–90 %, from 50 %: 2 kWh surplus (1.9 kWh stored), then 6 kWh of load
        // of which the battery can give (5.9 − 1.0) × 0.95 ≈ 5.6 kWh.
        let p = Problem::default();
        let steps = [hour(0, 3000.0, 1000.0), hour(1, 0.0, 3000.0), hour(2, 0.0, 3000.0)];
        let sc = self_consumption(&p, &steps);
        assert!((sc.battery_w[0] + 2000.0).abs() < 1e-9, "{:?}", sc.battery_w);
        assert!((sc.battery_w[1] - 3000.0).abs() < 1e-9);
        let left = (5000.0 + 1900.0 - 3000.0 / 0.95 - 1000.0) * 0.95;
        assert!((sc.battery_w[2] - left).abs() < 1e-6, "{:?}", sc.battery_w);
        assert!((sc.final_soc.get() - 0.1).abs() < 1e-9);
        let cost = (3000.0 - left) / 1000.0 * 0.30;
        assert!((sc.total_cost.get() - cost).abs() < 1e-9, "{} vs {cost}", sc.total_cost);
    }
}
