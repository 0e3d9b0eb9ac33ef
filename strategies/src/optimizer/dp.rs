//! The per-step cost model and the exact backward/forward dynamic programme (see the parent
//! module's docs for the model and why it is exact).

use jiff::Timestamp;

use super::pwl::{Pwl, X_EPS};
use super::{Plan, PlanError, PlanStatus, Problem, Relaxations, Step, MAX_SCENARIOS};
use crate::units::{Money, Ratio};

/// Grid power beyond a limit by more than this (W) is reported as a relaxation.
const GRID_TOL_W: f64 = 1e-3;

/// Most kinks of one step's objective: idle, two grid limits, and grid at zero per scenario.
const KINKS: usize = 3 + MAX_SCENARIOS;

/// One step, in f64 and in the planner's variables. `δ` is the change of stored energy (Wh).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    /// Hours.
    dh: f64,
    /// `load − pv`, W: the grid power with the battery idle.
    net: f64,
    /// Battery power range, W (`b_lo ≤ 0 ≤ b_hi`).
    b_lo: f64,
    b_hi: f64,
    eta_c: f64,
    eta_d: f64,
    p_imp: f64,
    p_exp: f64,
    deg: f64,
    imp_max: f64,
    exp_max: f64,
    /// Per kWh beyond a grid limit.
    penalty: f64,
    /// The scenarios' `load − pv` (W) and weights (sum 1); one scenario, `net`, without
    /// [`Problem::scenarios`].
    nets: [f64; MAX_SCENARIOS],
    weights: [f64; MAX_SCENARIOS],
    scenarios: usize,
}

impl Slot {
    /// Step `s` of a horizon that starts at `origin` (the scenarios' spread grows with the lead
    /// time from there).
    pub(crate) fn new(p: &Problem, s: &Step, penalty: f64, origin: Timestamp) -> Self {
        let (load, pv) = (f64::from(s.load.get()), f64::from(s.pv.get()));
        let net = load - pv;
        let mut nets = [0.0; MAX_SCENARIOS];
        let mut weights = [0.0; MAX_SCENARIOS];
        let mut scenarios = 1;
        nets[0] = net;
        weights[0] = 1.0;
        if let Some(sc) = &p.scenarios {
            let lead = s.start.duration_since(origin) + s.duration / 2;
            let share = sc.share_at(lead);
            let at = |f: f64| 1.0 + (f - 1.0) * share;
            scenarios = 0;
            for (k, item) in sc.items().iter().enumerate().take(MAX_SCENARIOS) {
                nets[k] = load * at(item.load.get()) - pv * at(item.pv.get());
                weights[k] = item.weight.get();
                scenarios = k + 1;
            }
        }
        let imp_max = f64::from(p.grid_import_max_w.get());
        let exp_max = f64::from(p.grid_export_max_w.get());
        // The battery never causes or worsens a grid-limit violation: it charges at most up to
        // the import limit and discharges at most up to the export limit (nothing beyond).
        let b_lo = (-f64::from(p.charge_max_w.get())).max((net - imp_max).min(0.0));
        let mut b_hi = f64::from(p.discharge_max_w.get()).min((net + exp_max).max(0.0));
        if p.no_battery_export {
            b_hi = b_hi.min(net.max(0.0));
        }
        Self {
            dh: s.hours(),
            net,
            b_lo,
            b_hi,
            eta_c: p.eff_charge.get(),
            eta_d: p.eff_discharge.get(),
            p_imp: s.import_price.per_kwh(),
            p_exp: s.export_price.per_kwh(),
            deg: p.degradation_cost.per_kwh(),
            imp_max,
            exp_max,
            penalty,
            nets,
            weights,
            scenarios,
        }
    }

    /// How many scenarios the step's cost averages over (1 without scenarios).
    pub(crate) fn scenario_count(&self) -> usize {
        self.scenarios
    }

    /// The step as if scenario `k` were certain: its `load − pv` and weight 1 (the battery
    /// power range stays the step's own).
    pub(crate) fn scenario(&self, k: usize) -> (Self, f64) {
        let mut out = *self;
        let net = self.nets.get(k).copied().unwrap_or(self.net);
        out.nets[0] = net;
        out.weights[0] = 1.0;
        out.scenarios = 1;
        (out, self.weights.get(k).copied().unwrap_or(0.0))
    }

    /// `load − pv` of the scenario a step taken as certain has (see [`Self::scenario`]).
    pub(crate) fn scenario_net(&self) -> f64 {
        self.nets[0]
    }

    /// The same step with the import limit lowered to `cap` W (a demand-charge cap): the
    /// battery may not charge beyond it, and import beyond it costs the penalty.
    pub(crate) fn with_import_cap(mut self, cap: f64) -> Self {
        if cap < self.imp_max {
            self.imp_max = cap;
            self.b_lo = self.b_lo.max((self.net - cap).min(0.0));
        }
        self
    }

    /// Lowest battery power (largest charge), W.
    pub(crate) fn b_lo(&self) -> f64 {
        self.b_lo
    }

    /// Highest battery power (largest discharge), W.
    pub(crate) fn b_hi(&self) -> f64 {
        self.b_hi
    }

    /// Energy change caused by battery power `b` over the step.
    pub(crate) fn delta_of(&self, b: f64) -> f64 {
        if b >= 0.0 {
            -b * self.dh / self.eta_d
        } else {
            -b * self.eta_c * self.dh
        }
    }

    /// Battery power that changes the stored energy by `d` over the step.
    pub(crate) fn power_of(&self, d: f64) -> f64 {
        if d <= 0.0 {
            -d * self.eta_d / self.dh
        } else {
            -d / (self.eta_c * self.dh)
        }
    }

    /// Most negative energy change (full discharge).
    pub(crate) fn d_lo(&self) -> f64 {
        self.delta_of(self.b_hi)
    }

    /// Largest energy change (full charge).
    pub(crate) fn d_hi(&self) -> f64 {
        self.delta_of(self.b_lo)
    }

    /// Money for battery power `b`: energy cost − export revenue + degradation, the mean over
    /// the scenarios.
    pub(crate) fn money(&self, b: f64) -> f64 {
        let mut energy = self.deg * b.abs();
        for (net, w) in self.nets.iter().zip(&self.weights).take(self.scenarios) {
            let g = net - b;
            energy += w * (self.p_imp * g.max(0.0) - self.p_exp * (-g).max(0.0));
        }
        self.dh / 1000.0 * energy
    }

    /// Grid power beyond the limits, W.
    pub(crate) fn violation_w(&self, b: f64) -> f64 {
        let g = self.net - b;
        (g - self.imp_max).max(0.0) + (-self.exp_max - g).max(0.0)
    }

    /// The DP objective of energy change `d`: money plus the grid-limit penalty.
    fn objective(&self, d: f64) -> f64 {
        let b = self.power_of(d);
        self.money(b) + self.penalty * self.dh / 1000.0 * self.violation_w(b)
    }

    /// Kinks of the objective strictly inside the δ range, sorted: idle, grid at zero in each
    /// scenario, grid at each limit.
    fn kinks(&self) -> ([f64; KINKS], usize) {
        let (lo, hi) = (self.d_lo(), self.d_hi());
        let mut k = [0.0; KINKS];
        let mut n = 0;
        let limits = [0.0, self.net - self.imp_max, self.net + self.exp_max];
        let zeros = self.nets.iter().take(self.scenarios).copied();
        for b in limits.into_iter().chain(zeros) {
            let d = self.delta_of(b);
            if d > lo + X_EPS && d < hi - X_EPS && n < KINKS {
                k[n] = d;
                n += 1;
            }
        }
        k[..n].sort_by(f64::total_cmp);
        (k, n)
    }

    /// The objective as a piecewise-linear function of `δ` (linear between the kinks).
    fn cost_fn(&self) -> Pwl {
        let (k, n) = self.kinks();
        let pts = core::iter::once(self.d_lo())
            .chain(k[..n].iter().copied())
            .chain(core::iter::once(self.d_hi()))
            .map(|d| (d, self.objective(d)));
        Pwl::from_points(pts).unwrap_or_else(|| Pwl::constant(0.0, 0.0, self.objective(0.0)))
    }
}

/// Solves the problem (inputs already validated) without its demand charge, with the import
/// limit of step `t` lowered to `caps[t]` where given. `solve_time` is left at 0 for the caller.
pub(crate) fn solve(
    problem: &Problem,
    steps: &[Step],
    penalty: f64,
    caps: Option<&[Option<f64>]>,
) -> Result<Plan, PlanError> {
    let origin = steps.first().map_or(Timestamp::UNIX_EPOCH, |s| s.start);
    let slots: Vec<Slot> = steps
        .iter()
        .enumerate()
        .map(|(t, s)| {
            let slot = Slot::new(problem, s, penalty, origin);
            match caps.and_then(|c| c.get(t).copied().flatten()) {
                Some(cap) => slot.with_import_cap(cap),
                None => slot,
            }
        })
        .collect();
    let cap = f64::from(problem.capacity_wh.get());
    let n = slots.len();
    let (w_lo, w_hi) = (problem.soc_min.get() * cap, problem.soc_max.get() * cap);
    let e0 = problem.soc_init.get() * cap;
    let mut relax = Relaxations::default();

    // Forward: the energies allowed at the end of each step. Inside the window the window is
    // hard; from outside, the nearest reachable point (the fastest return).
    let mut sets: Vec<(f64, f64)> = Vec::with_capacity(n + 1);
    sets.push((e0, e0));
    for (t, s) in slots.iter().enumerate() {
        let (lo, hi) = sets[t];
        let (c_lo, c_hi) = (lo + s.d_lo(), hi + s.d_hi());
        let (a, b) = (c_lo.max(w_lo), c_hi.min(w_hi));
        if a <= b {
            sets.push((a, b));
        } else {
            let p = if c_hi < w_lo { c_hi } else { c_lo };
            sets.push((p, p));
            relax.soc_window_steps.push(t);
        }
    }
    let e_final = problem.soc_final.get() * cap;
    if let Some(last) = sets.last_mut() {
        if e_final <= last.1 {
            last.0 = last.0.max(e_final);
        } else {
            *last = (last.1, last.1);
        }
    }

    // Backward: exact value functions on the allowed sets.
    let snap = 1e-6 + 1e-12 * cap;
    let mut values: Vec<Pwl> = Vec::with_capacity(n + 1);
    let (flo, fhi) = sets.last().copied().unwrap_or((e0, e0));
    values.push(end_value(problem, flo, fhi));
    for t in (1..n).rev() {
        let next = values.last().ok_or(PlanError::Numerical { index: t })?;
        let v = next.min_plus(&slots[t].cost_fn());
        let (lo, hi) = sets[t];
        let v = v.restrict(lo, hi, snap).ok_or(PlanError::Numerical { index: t })?;
        values.push(v);
    }
    values.reverse(); // values[t] is V_{t+1}, the cost from the end of step t on.

    // Forward: pick the minimising δ in each step.
    let mut e = e0;
    let mut plan = Plan {
        total_cost: Money::ZERO,
        battery_w: Vec::with_capacity(n),
        soc: Vec::with_capacity(n),
        grid_w: Vec::with_capacity(n),
        solve_time: std::time::Duration::ZERO,
        status: PlanStatus::Optimal,
        relaxations: Relaxations::default(),
    };
    let mut total = 0.0;
    for (t, s) in slots.iter().enumerate() {
        let v = values.get(t).ok_or(PlanError::Numerical { index: t })?;
        let d = best_delta(s, v, e);
        let e_next = (e + d).clamp(v.lo(), v.hi());
        let b = s.power_of(e_next - e).clamp(s.b_lo, s.b_hi);
        e = e_next;
        total += s.money(b);
        if s.violation_w(b) > GRID_TOL_W {
            relax.grid_limit_steps.push(t);
        }
        plan.battery_w.push(b);
        plan.grid_w.push(s.net - b);
        plan.soc.push(e / cap);
    }
    relax.final_soc_shortfall = Ratio::saturating(problem.soc_final.get() - e / cap);
    if relax.final_soc_shortfall.get() * cap <= snap {
        relax.final_soc_shortfall = Ratio::ZERO;
    }
    plan.total_cost = Money::new(total);
    if !relax.is_empty() {
        plan.status = PlanStatus::FeasibleRelaxed;
    }
    plan.relaxations = relax;
    Ok(plan)
}

/// The cost (minus the value) of ending the horizon with stored energy `e ∈ [lo, hi]` (Wh):
/// 0 without [`Problem::end_value`]; with it `−price · min(e − floor, up_to)` above the floor
/// `soc_final`, a convex function with at most one kink.
fn end_value(problem: &Problem, lo: f64, hi: f64) -> Pwl {
    let Some(v) = problem.end_value else {
        return Pwl::constant(lo, hi, 0.0);
    };
    let floor = problem.soc_final.get() * f64::from(problem.capacity_wh.get());
    let (price, up_to) = (v.price.per_kwh() / 1000.0, f64::from(v.up_to.get()));
    let cost = |e: f64| -price * (e - floor).clamp(0.0, up_to);
    let kink = floor + up_to;
    let mid = (kink > lo + X_EPS && kink < hi - X_EPS).then_some(kink);
    let pts = core::iter::once(lo).chain(mid).chain(core::iter::once(hi)).map(|e| (e, cost(e)));
    Pwl::from_points(pts).unwrap_or_else(|| Pwl::constant(lo, hi, 0.0))
}

/// The energy change in step `s` from energy `e` that minimises objective + `v(e + δ)`. The
/// minimum of a piecewise-linear function over an interval is at an end or a vertex, so only
/// those are tried; exact ties go to the smaller `|δ|` (no needless cycling).
fn best_delta(s: &Slot, v: &Pwl, e: f64) -> f64 {
    let lo = s.d_lo().max(v.lo() - e);
    let hi = s.d_hi().min(v.hi() - e);
    if lo >= hi {
        return 0.5 * (lo + hi);
    }
    let mut best = (f64::INFINITY, 0.0_f64);
    let mut consider = |d: f64| {
        let val = s.objective(d) + v.eval(e + d);
        let tol = 1e-12 * (1.0 + val.abs());
        if val < best.0 - tol || (val <= best.0 + tol && d.abs() < best.1.abs()) {
            best = (val.min(best.0), d);
        }
    };
    consider(lo);
    consider(hi);
    let (k, nk) = s.kinks();
    for &d in &k[..nk] {
        if d > lo && d < hi {
            consider(d);
        }
    }
    let pts = v.points();
    let first = pts.partition_point(|p| p.x <= e + lo);
    for p in pts.get(first..).unwrap_or_default() {
        let d = p.x - e;
        if d >= hi {
            break;
        }
        consider(d);
    }
    if 0.0 > lo && 0.0 < hi {
        consider(0.0);
    }
    best.1
}
