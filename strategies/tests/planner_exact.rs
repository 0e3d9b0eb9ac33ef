//! Exactness of the planner against independent solvers.
//!
//! * Short random horizons (4–24 steps): the same model as a mixed-integer linear programme
//!   (good_lp with the pure-Rust `microlp` branch and bound; one binary per step for
//!   charge-vs-discharge and, where export pays more than import, one for import-vs-export).
//!   Instances include negative prices, export price above import price, tight grid limits,
//!   `no_battery_export`, mixed step lengths, degradation cost, and initial SOC below `soc_min`
//!   and above `soc_max`.
//! * Daylight-saving days (92 and 100 quarter-hours, UTC timestamps): with convex prices the
//!   linear relaxation is exact and is solved as an LP; with non-convex prices the plan must be
//!   at least as cheap as a fine-grid DP (a feasible, hence upper-bound, plan) and no cheaper
//!   than the LP relaxation (a lower bound).
//!
//! Every plan is also checked for feasibility by recomputing SOC, grid power and limits from
//! `battery_w` here, independently of the planner.
//!
//! The default numbers of random cases (200 MILP, 60 LP, 20 grid-DP) keep this file at about
//! 10 s in a debug build; `PLANNER_CASES=2000` (for example) sets the number for each random test
//! (2000 take about 5 minutes even with `--release`, mostly in the MILP solver). A MILP that the
//! solver cannot prove optimal within `PLANNER_MILP_SECONDS` (default 3) is used as an upper
//! bound only; the count is printed (`--nocapture`).

// Test code: a failed unwrap or panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// Random instances: small counts and generated values in W, far inside every target type.
#![allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]

use ems_core::{WattHours, Watts};
use ems_strategies::optimizer::{grid_limit_penalty, parse_csv, plan, Plan, PlanStatus, Problem, Step};
use ems_strategies::{Price, Ratio};
use good_lp::{
    microlp, variable, Expression, ProblemVariables, Solution, SolutionStatus, SolverModel, Variable,
    WithTimeLimit,
};
use jiff::{SignedDuration, Timestamp};

/// Relative tolerance of the comparison (0.1 %), with an absolute floor in currency.
const REL_TOL: f64 = 1e-3;
const ABS_FLOOR: f64 = 1e-2;

// ---------------------------------------------------------------------------------------------
// Random numbers (SplitMix64: seeded, no dependency).

struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    fn int(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }
}

fn cases(default: usize) -> usize {
    std::env::var("PLANNER_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

// ---------------------------------------------------------------------------------------------
// The model, re-implemented here from its documentation (not from the planner's code).

/// Per-step quantities in f64.
#[derive(Debug, Clone, Copy)]
struct S {
    dh: f64,
    net: f64,
    pi: f64,
    pe: f64,
    /// Battery power range: power limits, the grid limits for the battery's own contribution,
    /// `no_battery_export`.
    b_lo: f64,
    b_hi: f64,
}

struct M {
    cap: f64,
    ec: f64,
    ed: f64,
    wlo: f64,
    whi: f64,
    e0: f64,
    efinal: f64,
    imax: f64,
    xmax: f64,
    deg: f64,
    pen: f64,
    s: Vec<S>,
}

fn model(p: &Problem, steps: &[Step]) -> M {
    let cap = f64::from(p.capacity_wh.get());
    let dmax = f64::from(p.discharge_max_w.get());
    let cmax = f64::from(p.charge_max_w.get());
    let imax = f64::from(p.grid_import_max_w.get());
    let xmax = f64::from(p.grid_export_max_w.get());
    let s = steps
        .iter()
        .map(|st| {
            let net = f64::from(st.load.get()) - f64::from(st.pv.get());
            // Charging may not push the import above its limit (none at all if the load alone
            // exceeds it); discharging likewise for the export.
            let c_hi = cmax.min((imax - net).max(0.0));
            let d_hi = dmax.min((net + xmax).max(0.0));
            S {
                dh: st.duration.as_secs_f64() / 3600.0,
                net,
                pi: st.import_price.per_kwh(),
                pe: st.export_price.per_kwh(),
                b_lo: -c_hi,
                b_hi: if p.no_battery_export { d_hi.min(net.max(0.0)) } else { d_hi },
            }
        })
        .collect();
    M {
        cap,
        ec: p.eff_charge.get(),
        ed: p.eff_discharge.get(),
        wlo: p.soc_min.get() * cap,
        whi: p.soc_max.get() * cap,
        e0: p.soc_init.get() * cap,
        efinal: p.soc_final.get() * cap,
        imax: f64::from(p.grid_import_max_w.get()),
        xmax: f64::from(p.grid_export_max_w.get()),
        deg: p.degradation_cost.per_kwh(),
        pen: grid_limit_penalty(p, steps).per_kwh(),
        s,
    }
}

impl M {
    fn step_energy(&self, s: &S, b: f64) -> f64 {
        if b >= 0.0 {
            -s.dh * b / self.ed
        } else {
            -s.dh * b * self.ec
        }
    }
    fn money(&self, s: &S, b: f64) -> f64 {
        let g = s.net - b;
        s.dh / 1000.0 * (s.pi * g.max(0.0) - s.pe * (-g).max(0.0) + self.deg * b.abs())
    }
    fn violation(&self, s: &S, b: f64) -> f64 {
        let g = s.net - b;
        (g - self.imax).max(0.0) + (-self.xmax - g).max(0.0)
    }
    fn objective(&self, s: &S, b: f64) -> f64 {
        self.money(s, b) + self.pen * s.dh / 1000.0 * self.violation(s, b)
    }

    /// The documented SOC rules: `Some(e)` for steps whose end energy is forced (returning into
    /// the window at full power), `None` where the window holds; and the final lower bound.
    fn soc_rules(&self) -> (Vec<Option<f64>>, f64) {
        let mut forced = Vec::new();
        let mut e = self.e0;
        let mut inside = self.e0 >= self.wlo && self.e0 <= self.whi;
        let mut reach_hi = self.e0;
        for s in &self.s {
            let up = -s.dh * s.b_lo * self.ec;
            let down = s.dh * s.b_hi / self.ed;
            if inside {
                forced.push(None);
                reach_hi = (reach_hi + up).min(self.whi);
                continue;
            }
            if e + up >= self.wlo && e - down <= self.whi {
                inside = true;
                forced.push(None);
                reach_hi = (e + up).min(self.whi);
            } else {
                e = if e < self.wlo { e + up } else { e - down };
                forced.push(Some(e));
                reach_hi = e;
            }
        }
        (forced, self.efinal.min(reach_hi))
    }
}

/// Recomputes everything from `battery_w` and checks the constraints; returns the objective
/// (money + grid penalty) of the plan.
fn check_feasible(p: &Problem, steps: &[Step], plan: &Plan) -> f64 {
    let m = model(p, steps);
    let n = steps.len();
    assert_eq!(plan.battery_w.len(), n);
    assert_eq!(plan.soc.len(), n);
    assert_eq!(plan.grid_w.len(), n);
    let (forced, final_lb) = m.soc_rules();
    let tol_e = 1e-6 * (1.0 + m.cap);
    let mut e = m.e0;
    let mut money = 0.0;
    let mut obj = 0.0;
    let mut grid_violated = false;
    for (t, s) in m.s.iter().enumerate() {
        let b = plan.battery_w[t];
        assert!(
            b >= s.b_lo - 1e-6 && b <= s.b_hi + 1e-6,
            "step {t}: battery {b} W outside [{}, {}]",
            s.b_lo,
            s.b_hi
        );
        assert!((plan.grid_w[t] - (s.net - b)).abs() < 1e-6, "step {t}: grid_w != load - pv - battery");
        e += m.step_energy(s, b);
        assert!(
            (plan.soc[t] * m.cap - e).abs() < tol_e,
            "step {t}: soc {} vs recomputed {}",
            plan.soc[t],
            e / m.cap
        );
        match forced[t] {
            Some(fe) => assert!((e - fe).abs() < tol_e, "step {t}: return to window not at full power"),
            None => assert!(
                e >= m.wlo - tol_e && e <= m.whi + tol_e,
                "step {t}: soc {} outside window",
                e / m.cap
            ),
        }
        money += m.money(s, b);
        obj += m.objective(s, b);
        grid_violated |= m.violation(s, b) > 1e-3;
    }
    assert!(e >= final_lb - tol_e, "final energy {e} below {final_lb}");
    assert!((plan.total_cost.get() - money).abs() < 1e-9 * (1.0 + money.abs()), "total_cost mismatch");
    let relaxed = grid_violated || forced.iter().any(Option::is_some) || final_lb < m.efinal - tol_e;
    assert_eq!(plan.status == PlanStatus::FeasibleRelaxed, relaxed, "status {:?}", plan.status);
    obj
}

// ---------------------------------------------------------------------------------------------
// Independent solvers.

/// The reference solver's answer.
struct Reference {
    /// Objective (money + grid penalty) of its best solution.
    cost: f64,
    /// Whether it proved that solution optimal (else its time limit ran out).
    proven: bool,
}

/// Time limit per MILP: a few instances make microlp's branch and bound take a minute in a debug
/// build. `PLANNER_MILP_SECONDS` overrides it.
fn milp_seconds() -> f64 {
    std::env::var("PLANNER_MILP_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3.0)
}

/// The model as a MILP (`integer = true`) or its LP relaxation; returns the optimal objective.
fn solve_lp(p: &Problem, steps: &[Step], integer: bool) -> f64 {
    let r = solve_reference(p, steps, integer);
    assert!(r.proven, "the LP solver did not finish");
    r.cost
}

fn solve_reference(p: &Problem, steps: &[Step], integer: bool) -> Reference {
    let m = model(p, steps);
    let (forced, final_lb) = m.soc_rules();
    let mut vars = ProblemVariables::new();
    let mut obj = Expression::from(0.0);
    let mut cons = Vec::new();
    let mut e_prev: Expression = Expression::from(m.e0);
    for (t, s) in m.s.iter().enumerate() {
        let c_hi = -s.b_lo;
        let c = vars.add(variable().min(0.0).max(c_hi));
        let d = vars.add(variable().min(0.0).max(s.b_hi));
        let i = vars.add(variable().min(0.0));
        let x = vars.add(variable().min(0.0));
        let vi = vars.add(variable().min(0.0));
        let vx = vars.add(variable().min(0.0));
        let e = match forced[t] {
            Some(fe) => vars.add(variable().min(fe).max(fe)),
            None => {
                let lo = if t + 1 == m.s.len() { m.wlo.max(final_lb) } else { m.wlo };
                vars.add(variable().min(lo).max(m.whi))
            }
        };
        if integer {
            let z: Variable = vars.add(variable().binary());
            cons.push((c - c_hi * z).leq(0.0));
            cons.push((d + s.b_hi * z).leq(s.b_hi));
            if s.pe > s.pi {
                let big = s.net.abs() + c_hi + s.b_hi + 1.0;
                let y: Variable = vars.add(variable().binary());
                cons.push((i - big * y).leq(0.0));
                cons.push((x + big * y).leq(big));
            }
        }
        cons.push((i - x - c + d).eq(s.net));
        cons.push((i - vi).leq(m.imax));
        cons.push((x - vx).leq(m.xmax));
        cons.push((Expression::from(e) - e_prev.clone() - s.dh * m.ec * c + (s.dh / m.ed) * d).eq(0.0));
        let k = s.dh / 1000.0;
        obj += k * s.pi * i - k * s.pe * x + k * m.deg * (c + d) + k * m.pen * (vi + vx);
        e_prev = Expression::from(e);
    }
    let mut problem = vars.minimise(obj.clone()).using(microlp).with_time_limit(milp_seconds());
    for c in cons {
        problem = problem.with(c);
    }
    let sol = problem.solve().unwrap_or_else(|e| panic!("reference solver failed: {e}"));
    Reference { cost: sol.eval(&obj), proven: matches!(sol.status(), SolutionStatus::Optimal) }
}

/// A feasible plan on a grid of `k + 1` energies over the window (plus the start): an upper
/// bound on the optimum. Needs the initial SOC inside the window.
fn grid_dp(p: &Problem, steps: &[Step], k: usize) -> f64 {
    let m = model(p, steps);
    let xs: Vec<f64> = (0..=k).map(|j| m.wlo + (m.whi - m.wlo) * j as f64 / k as f64).collect();
    let n = m.s.len();
    // value[j] = best cost from grid point j at the current time to the end.
    let mut value: Vec<f64> =
        xs.iter().map(|&x| if x >= m.efinal - 1e-9 { 0.0 } else { f64::INFINITY }).collect();
    let trans = |s: &S, from: f64, to: f64| -> Option<f64> {
        let d = to - from;
        let b = if d <= 0.0 { -d * m.ed / s.dh } else { -d / (m.ec * s.dh) };
        (b >= s.b_lo - 1e-9 && b <= s.b_hi + 1e-9).then(|| m.objective(s, b))
    };
    for t in (1..n).rev() {
        let s = &m.s[t];
        value = xs
            .iter()
            .map(|&from| {
                xs.iter()
                    .zip(&value)
                    .filter_map(
                        |(&to, &v)| if v.is_finite() { trans(s, from, to).map(|c| c + v) } else { None },
                    )
                    .fold(f64::INFINITY, f64::min)
            })
            .collect();
    }
    xs.iter()
        .zip(&value)
        .filter_map(|(&to, &v)| if v.is_finite() { trans(&m.s[0], m.e0, to).map(|c| c + v) } else { None })
        .fold(f64::INFINITY, f64::min)
}

// ---------------------------------------------------------------------------------------------
// Instances.

fn t0() -> Timestamp {
    "2024-06-01T00:00:00Z".parse().unwrap()
}

fn ratio(v: f64) -> Ratio {
    Ratio::try_new(v).unwrap()
}

fn random_problem(r: &mut Rng) -> Problem {
    let cap = r.range(2000.0, 20_000.0);
    let soc_min = if r.chance(0.2) { 0.0 } else { r.range(0.0, 0.4) };
    let soc_max = if r.chance(0.2) { 1.0 } else { r.range(0.6, 1.0) };
    let soc_init = match r.int(0, 9) {
        0 | 1 => r.range(0.0, soc_min),
        2 | 3 => r.range(soc_max, 1.0),
        _ => r.range(soc_min, soc_max),
    };
    let tight = r.chance(0.3);
    Problem {
        capacity_wh: WattHours::saturating(cap as f32),
        charge_max_w: Watts::saturating(r.range(300.0, 8000.0) as f32),
        discharge_max_w: Watts::saturating(r.range(300.0, 8000.0) as f32),
        eff_charge: ratio(if r.chance(0.15) { 1.0 } else { r.range(0.7, 1.0) }),
        eff_discharge: ratio(if r.chance(0.15) { 1.0 } else { r.range(0.7, 1.0) }),
        soc_min: ratio(soc_min),
        soc_max: ratio(soc_max),
        soc_init: ratio(soc_init),
        soc_final: ratio(if r.chance(0.3) { 0.0 } else { r.range(0.0, soc_max) }),
        grid_import_max_w: Watts::saturating(if tight { r.range(200.0, 4000.0) } else { 20_000.0 } as f32),
        grid_export_max_w: Watts::saturating(if tight { r.range(200.0, 4000.0) } else { 20_000.0 } as f32),
        no_battery_export: r.chance(0.3),
        degradation_cost: Price::new(if r.chance(0.3) { r.range(0.0, 0.1) } else { 0.0 }),
        ..Problem::default()
    }
}

/// Random steps; `convex` keeps all prices ≥ 0 and export ≤ import (where the LP is exact).
fn random_steps(r: &mut Rng, n: usize, convex: bool, minutes: Option<i64>) -> Vec<Step> {
    let mut t = t0();
    let export_mode = r.int(0, 2);
    let pv_peak = r.range(0.0, 8000.0);
    let load_base = r.range(100.0, 3000.0);
    (0..n)
        .map(|i| {
            let mins = minutes.unwrap_or_else(|| [15, 30, 60][r.int(0, 2)]);
            let phase = (i as f64 / n as f64) * std::f64::consts::TAU;
            let pv = (pv_peak * (phase.sin() * r.range(0.5, 1.0))).max(0.0);
            let load = load_base * r.range(0.3, 2.0);
            let mut imp = r.range(-0.2, 0.6);
            if convex {
                imp = imp.abs();
            }
            let exp = match export_mode {
                0 => 0.08,
                1 => imp - r.range(0.0, 0.3),
                _ => imp + r.range(0.0, 0.3),
            };
            let exp = if convex { exp.clamp(0.0, imp) } else { exp };
            let s = Step {
                start: t,
                duration: SignedDuration::from_mins(mins),
                pv: Watts::saturating(pv as f32),
                load: Watts::saturating(load as f32),
                import_price: Price::new(imp),
                export_price: Price::new(exp),
            };
            t += SignedDuration::from_mins(mins);
            s
        })
        .collect()
}

fn assert_close(what: &str, got: f64, want: f64) -> f64 {
    let scale = want.abs().max(ABS_FLOOR);
    let rel = (got - want).abs() / scale;
    assert!(rel <= REL_TOL, "{what}: planner {got} vs reference {want} (relative {rel:e})");
    rel
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[test]
fn matches_milp_on_random_short_horizons() {
    let n_cases = cases(200);
    let mut r = Rng(0x5eed_0001);
    let mut worst: f64 = 0.0;
    let mut relaxed = 0;
    let mut unproven = 0;
    for case in 0..n_cases {
        let p = random_problem(&mut r);
        let n = r.int(4, if case % 4 == 0 { 24 } else { 12 });
        let steps = random_steps(&mut r, n, false, None);
        let plan = plan(&p, &steps).unwrap();
        let got = check_feasible(&p, &steps, &plan);
        let want = solve_reference(&p, &steps, true);
        let what = format!("case {case} ({n} steps) {p:?}");
        if want.proven {
            worst = worst.max(assert_close(&what, got, want.cost));
        } else {
            // Out of time: its best solution found is still an upper bound on the optimum.
            unproven += 1;
            let tol = REL_TOL * want.cost.abs().max(ABS_FLOOR);
            assert!(
                got <= want.cost + tol,
                "{what}: planner {got} worse than the MILP incumbent {}",
                want.cost
            );
        }
        relaxed += usize::from(plan.status == PlanStatus::FeasibleRelaxed);
    }
    eprintln!(
        "{n_cases} MILP cases, {relaxed} relaxed, {unproven} not proven optimal by the MILP solver within \
         {} s (planner checked against its best solution), worst relative difference {worst:e}",
        milp_seconds()
    );
}

#[test]
fn matches_lp_on_random_convex_instances() {
    // With prices ≥ 0 and export ≤ import, and grid limits loose, the LP relaxation is exact.
    let n_cases = cases(60);
    let mut r = Rng(0x5eed_0002);
    let mut worst: f64 = 0.0;
    for case in 0..n_cases {
        let mut p = random_problem(&mut r);
        p.grid_import_max_w = ems_core::watts!(50_000.0);
        p.grid_export_max_w = ems_core::watts!(50_000.0);
        let n = r.int(4, 48);
        let steps = random_steps(&mut r, n, true, None);
        let plan = plan(&p, &steps).unwrap();
        let got = check_feasible(&p, &steps, &plan);
        let want = solve_lp(&p, &steps, false);
        worst = worst.max(assert_close(&format!("case {case} ({n} steps) {p:?}"), got, want));
    }
    eprintln!("{n_cases} LP cases, worst relative difference {worst:e}");
}

/// A day in quarter-hours from `start` to `end` (UTC), as CSV text, with random data.
fn dst_day(r: &mut Rng, start: &str, end: &str, convex: bool) -> Vec<Step> {
    let start: Timestamp = start.parse().unwrap();
    let end: Timestamp = end.parse().unwrap();
    let mut text = String::from("timestamp,pv_w,load_w,import_price,export_price\n");
    let mut t = start;
    let template = random_steps(r, 100, convex, Some(15));
    let mut i = 0;
    while t < end {
        let s = &template[i];
        text.push_str(&format!(
            "{t},{},{},{},{}\n",
            s.pv.get(),
            s.load.get(),
            s.import_price.per_kwh(),
            s.export_price.per_kwh()
        ));
        t += SignedDuration::from_mins(15);
        i += 1;
    }
    parse_csv(&text).unwrap()
}

#[test]
fn dst_days_match_lp_with_convex_prices() {
    let mut r = Rng(0x5eed_0003);
    // Europe/Berlin 2024-03-31 (23 h) and 2024-10-27 (25 h), midnight to midnight, in UTC.
    for (start, end, len) in [
        ("2024-03-30T23:00:00Z", "2024-03-31T22:00:00Z", 92),
        ("2024-10-26T22:00:00Z", "2024-10-27T23:00:00Z", 100),
    ] {
        for _ in 0..3 {
            let steps = dst_day(&mut r, start, end, true);
            assert_eq!(steps.len(), len);
            let mut p = random_problem(&mut r);
            p.grid_import_max_w = ems_core::watts!(50_000.0);
            p.grid_export_max_w = ems_core::watts!(50_000.0);
            let plan = plan(&p, &steps).unwrap();
            let got = check_feasible(&p, &steps, &plan);
            let want = solve_lp(&p, &steps, false);
            assert_close(&format!("{start} {p:?}"), got, want);
        }
    }
}

#[test]
fn dst_days_with_non_convex_prices_are_bracketed() {
    let mut r = Rng(0x5eed_0004);
    for (start, end) in
        [("2024-03-30T23:00:00Z", "2024-03-31T22:00:00Z"), ("2024-10-26T22:00:00Z", "2024-10-27T23:00:00Z")]
    {
        for _ in 0..2 {
            let steps = dst_day(&mut r, start, end, false);
            let mut p = random_problem(&mut r);
            p.soc_init = ratio(0.5 * (p.soc_min.get() + p.soc_max.get()));
            let plan = plan(&p, &steps).unwrap();
            let got = check_feasible(&p, &steps, &plan);
            let upper = grid_dp(&p, &steps, 120);
            let lower = solve_lp(&p, &steps, false);
            let tol = 1e-9 * (1.0 + upper.abs());
            assert!(got <= upper + tol, "{start}: planner {got} worse than the grid DP {upper}");
            assert!(
                got >= lower - 1e-6 * (1.0 + lower.abs()),
                "{start}: planner {got} below the LP bound {lower}"
            );
            eprintln!("{start}: LP bound {lower:.6} <= planner {got:.6} <= grid DP {upper:.6}");
        }
    }
}

#[test]
fn non_convex_instances_never_lose_to_a_grid_dp() {
    let n_cases = cases(20);
    let mut r = Rng(0x5eed_0005);
    for case in 0..n_cases {
        let mut p = random_problem(&mut r);
        p.soc_init = ratio(r.range(p.soc_min.get(), p.soc_max.get()));
        let n = r.int(4, 48);
        let steps = random_steps(&mut r, n, false, None);
        let plan = plan(&p, &steps).unwrap();
        let got = check_feasible(&p, &steps, &plan);
        let upper = grid_dp(&p, &steps, 60);
        assert!(got <= upper + 1e-9 * (1.0 + upper.abs()), "case {case}: planner {got} > grid DP {upper}");
    }
}
