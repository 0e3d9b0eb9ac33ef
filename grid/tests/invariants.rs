//! Property tests: for any frequency sequence (with stale and invalid readings and gaps) and
//! any SOC, no service requests more than its bound (FCR-N `(1 + NEM offset)·C`, FCR-D and
//! FFR `C`, droop `2·P_ref`, the set the sum), reserves are ≥ 0 and finite, and no NaN leaves
//! a service.
// Test helpers outside #[test] functions: a failure should abort loudly; times and sample
// indices are small integers, exact in f32.
#![allow(clippy::unwrap_used, clippy::panic, clippy::cast_precision_loss, clippy::cast_possible_truncation)]
mod common;

use common::envelope;
use ems_control::{GridAction, GridRequest, GridService};
use ems_core::snapshot::{FAST_MAX_AGE, SLOW_MAX_AGE};
use ems_core::{Hertz, Measurement, Millis, Percent, Watts};
use ems_grid::{
    Droop, DroopParams, FcrD, FcrN, Ffr, FfrLevel, FfrParams, FfrSupport, FrequencyServices, LerConfig,
    ParamSet,
};
use proptest::prelude::*;

#[derive(Debug, Clone, Copy)]
enum Reading {
    Good(f32),
    Stale(f32),
    Invalid,
}

fn reading() -> impl Strategy<Value = Reading> {
    prop_oneof![
        6 => (45.0_f32..55.0).prop_map(Reading::Good),
        3 => (49.3_f32..50.7).prop_map(Reading::Good),
        1 => (45.0_f32..55.0).prop_map(Reading::Stale),
        1 => Just(Reading::Invalid),
    ]
}

fn step() -> impl Strategy<Value = (Reading, u64, Option<f32>)> {
    (
        reading(),
        prop_oneof![8 => 1_u64..300, 1 => 300_u64..5000],
        proptest::option::weighted(0.9, 0.0_f32..=100.0),
    )
}

fn snapshot(now: u64, r: Reading, soc: Option<f32>) -> ems_core::Snapshot {
    let t = Millis::new(now);
    let mut s = ems_safety::testkit::healthy_snapshot(t);
    s.grid.frequency = match r {
        Reading::Good(f) => Measurement::good(Hertz::try_new(f).unwrap(), t, FAST_MAX_AGE),
        Reading::Stale(f) => {
            Measurement::good(Hertz::try_new(f).unwrap(), Millis::new(now.saturating_sub(5000)), FAST_MAX_AGE)
        }
        Reading::Invalid => Measurement::invalid(Hertz::ZERO, FAST_MAX_AGE),
    };
    s.battery.soc = match soc {
        Some(v) => Measurement::good(Percent::try_new(v).unwrap(), t, SLOW_MAX_AGE),
        None => Measurement::invalid(Percent::ZERO, SLOW_MAX_AGE),
    };
    s
}

fn check(request: Option<GridRequest>, bound: f32) -> Result<(), TestCaseError> {
    let Some(r) = request else { return Ok(()) };
    let d = match r.action {
        GridAction::Idle => 0.0,
        GridAction::Add(d) => d.get(),
        GridAction::Replace(w) => return Err(TestCaseError::fail(format!("replace {w}"))),
    };
    prop_assert!(d.is_finite(), "non-finite Δ");
    prop_assert!(d.abs() <= bound * 1.0001 + 1e-3, "Δ {d} over bound {bound}");
    let res = r.reserve;
    for v in
        [res.charge.get(), res.discharge.get(), res.energy_for_charge.get(), res.energy_for_discharge.get()]
    {
        prop_assert!(v.is_finite() && v >= 0.0, "reserve {res:?}");
    }
    prop_assert_eq!(r.ramp, None);
    Ok(())
}

fn run<G: GridService>(
    service: &mut G,
    steps: &[(Reading, u64, Option<f32>)],
    bound: f32,
) -> Result<(), TestCaseError> {
    let mut now = 10_000;
    for &(r, dt, soc) in steps {
        now += dt;
        check(service.request(Millis::new(now), &snapshot(now, r, soc), &envelope()), bound)?;
    }
    Ok(())
}

fn params(new: bool) -> ParamSet {
    if new {
        ParamSet::nordic_2025_v1_1()
    } else {
        ParamSet::nordic_2023_v1_0()
    }
}

fn ler(wh: f32) -> LerConfig {
    LerConfig::try_new(
        ems_core::WattHours::try_new(wh).unwrap(),
        ems_core::percent!(5.0),
        ems_core::percent!(95.0),
    )
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn fcr_n_stays_within_c_plus_nem_offset(
        steps in proptest::collection::vec(step(), 1..400),
        c in 1.0_f32..1.0e6,
        wh in 1.0_f32..1.0e7,
        new in any::<bool>(),
    ) {
        let p = params(new);
        let mut s = FcrN::try_new(Watts::try_new(c).unwrap(), p).unwrap().with_ler(ler(wh));
        run(&mut s, &steps, c * p.fcr_n_power_factor())?;
        prop_assert!(s.status().delta.get().is_finite());
    }

    #[test]
    fn fcr_d_and_ffr_stay_within_c(
        steps in proptest::collection::vec(step(), 1..400),
        c in 1.0_f32..1.0e6,
        level in 0_u8..3,
        long in any::<bool>(),
    ) {
        let w = Watts::try_new(c).unwrap();
        run(&mut FcrD::up(w, ParamSet::default()).unwrap(), &steps, c)?;
        run(&mut FcrD::down(w, ParamSet::default()).unwrap(), &steps, c)?;
        let level = [FfrLevel::Hz49_7, FfrLevel::Hz49_6, FfrLevel::Hz49_5][usize::from(level)];
        let support = if long { FfrSupport::Long } else { FfrSupport::Short };
        run(&mut Ffr::try_new(w, FfrParams::nordic(level, support)).unwrap().with_ler(ler(1.0e4)), &steps, c)?;
    }

    #[test]
    fn droop_stays_within_twice_p_ref(
        steps in proptest::collection::vec(step(), 1..300),
        droop in 2.0_f32..=12.0,
    ) {
        let d = DroopParams::lfsm_ou().with_droop(Percent::try_new(droop).unwrap()).unwrap();
        // The testkit inverter is rated 5 kW.
        run(&mut Droop::try_new(d).unwrap(), &steps, 10_000.0)?;
    }

    #[test]
    fn combined_set_stays_within_the_sum(
        steps in proptest::collection::vec(step(), 1..400),
        cn in 1.0_f32..1.0e5,
        cu in 1.0_f32..1.0e5,
        cd in 1.0_f32..1.0e5,
        cf in 1.0_f32..1.0e5,
        wh in 1.0_f32..1.0e6,
        new in any::<bool>(),
    ) {
        let p = params(new);
        let w = |c: f32| Watts::try_new(c).unwrap();
        let mut set = FrequencyServices::new(Some(ler(wh)))
            .with_fcr_n(FcrN::try_new(w(cn), p).unwrap())
            .with_fcr_d(FcrD::up(w(cu), p).unwrap())
            .with_fcr_d(FcrD::down(w(cd), p).unwrap())
            .with_ffr(Ffr::try_new(w(cf), FfrParams::nordic(FfrLevel::Hz49_6, FfrSupport::Short)).unwrap())
            .with_droop(Droop::try_new(DroopParams::lfsm_ou()).unwrap());
        let bound = set.max_delta(ems_core::watts!(5000.0)).get();
        prop_assert!((bound - (cn * p.fcr_n_power_factor() + cu + cd + cf + 10_000.0)).abs() <= bound * 1e-4);
        run(&mut set, &steps, bound)?;
        let st = set.status();
        prop_assert!(st.delta.get().is_finite());
    }
}
