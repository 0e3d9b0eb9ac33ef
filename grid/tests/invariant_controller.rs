//! The safety invariant (design.md §6) with every frequency service plugged into the real
//! controller: for any sequence of frequencies (good, stale, invalid), SOCs, BMS limits and
//! operator overrides and plan slots, the command stays inside the envelope and the inverter rating, and the
//! sources below the services never spend what the services reserved (the LER reservations).

// Test code: a failed unwrap is a failed test with its message.
#![allow(clippy::unwrap_used)]

use ems_control::{Controller, ControllerConfig, GridAction, Inputs, Override, PlanTarget};
use ems_core::snapshot::FAST_MAX_AGE;
use ems_core::{Hertz, Measurement, Millis, Percent, TransitionRequest, WattHours, Watts};
use ems_grid::params::{DroopParams, FfrLevel, FfrParams, FfrSupport, ParamSet};
use ems_grid::{Droop, FcrD, FcrN, Ffr, FrequencyServices, LerConfig};
use ems_safety::testkit::healthy_snapshot;
use proptest::prelude::*;

const CAPACITY: WattHours = ems_core::watt_hours!(10_000.0);

/// One cycle: time step, frequency (None: invalid), sample age, SOC, BMS limits, override, plan.
#[derive(Debug, Clone)]
struct Cycle {
    dt_ms: u64,
    frequency: Option<f32>,
    stale: bool,
    soc: f32,
    charge_limit: f32,
    discharge_limit: f32,
    ess_override: Option<Override>,
    /// A plan slot (a baseline that may discharge).
    plan: Option<PlanTarget>,
}

fn cycle() -> impl Strategy<Value = Cycle> {
    let frequency = prop_oneof![
        6 => (49.3f32..50.7).prop_map(Some),
        1 => Just(None),
    ];
    let ess_override = prop_oneof![
        3 => Just(None),
        1 => (0.0f32..6000.0).prop_map(|w| Some(Override::ForceCharge { power: Watts::saturating(w) })),
    ];
    let plan = prop_oneof![
        2 => Just(None),
        1 => (-6000.0f32..6000.0).prop_map(|w| Some(PlanTarget { battery: Watts::saturating(w), grid: Watts::saturating(-w - 500.0) })),
    ];
    (
        50u64..1500,
        frequency,
        prop::bool::weighted(0.1),
        0.0f32..100.0,
        0.0f32..6000.0,
        0.0f32..6000.0,
        ess_override,
        plan,
    )
        .prop_map(|(dt_ms, frequency, stale, soc, charge_limit, discharge_limit, ess_override, plan)| {
            Cycle { dt_ms, frequency, stale, soc, charge_limit, discharge_limit, ess_override, plan }
        })
}

fn services() -> FrequencyServices {
    let ler = LerConfig::try_new(CAPACITY, ems_core::percent!(5.0), ems_core::percent!(95.0)).unwrap();
    let params = ParamSet::nordic_2025_v1_1();
    FrequencyServices::new(Some(ler))
        .with_fcr_n(FcrN::try_new(ems_core::watts!(1000.0), params).unwrap())
        .with_fcr_d(FcrD::up(ems_core::watts!(800.0), params).unwrap())
        .with_fcr_d(FcrD::down(ems_core::watts!(800.0), params).unwrap())
        .with_ffr(
            Ffr::try_new(ems_core::watts!(700.0), FfrParams::nordic(FfrLevel::Hz49_6, FfrSupport::Short))
                .unwrap(),
        )
        .with_droop(Droop::try_new(DroopParams::lfsm_ou()).unwrap())
}

/// Runs the cycles, checking every one; returns how many cycles a service acted in.
fn check(cycles: &[Cycle]) -> Result<usize, TestCaseError> {
    let config = ControllerConfig { capacity: Some(CAPACITY), ..ControllerConfig::default() };
    let mut c = Controller::new(config).unwrap();
    let mut s = services();
    let mut now = 0;
    for request in [Some(TransitionRequest::BootComplete), Some(TransitionRequest::Start)] {
        now += 100;
        let snap = healthy_snapshot(Millis::new(now));
        let _ = c.step_with(now, &snap, &Inputs { request, ..Inputs::default() }, &mut s);
    }
    let mut acted = 0;
    for cy in cycles {
        now += cy.dt_ms;
        let t = Millis::new(now);
        let mut snap = healthy_snapshot(t);
        let soc = Percent::saturating(cy.soc);
        snap.battery.soc = Measurement::good(soc, t, Millis::new(60_000));
        snap.battery.bms_charge_limit =
            Measurement::good(Watts::saturating(cy.charge_limit), t, Millis::new(60_000));
        snap.battery.bms_discharge_limit =
            Measurement::good(Watts::saturating(cy.discharge_limit), t, Millis::new(60_000));
        let sampled = if cy.stale { Millis::new(now.saturating_sub(10_000)) } else { t };
        snap.grid.frequency = match cy.frequency.and_then(|f| Hertz::try_new(f).ok()) {
            Some(f) => Measurement::good(f, sampled, FAST_MAX_AGE),
            None => Measurement::invalid(Hertz::ZERO, FAST_MAX_AGE),
        };
        let inputs = Inputs { ess_override: cy.ess_override, plan: cy.plan, ..Inputs::default() };
        let out = c.step_with(now, &snap, &inputs, &mut s);
        let cmd = out.command.setpoint();
        prop_assert!(cmd.get().is_finite());
        prop_assert!(
            out.envelope.contains(cmd),
            "{cmd} outside -{}..{}",
            out.envelope.max_charge(),
            out.envelope.max_discharge()
        );
        prop_assert!(cmd.abs() <= snap.inverter.rated_power);
        prop_assert!(cmd <= Watts::saturating(cy.discharge_limit).max(Watts::ZERO));
        prop_assert!(-cmd <= Watts::saturating(cy.charge_limit).max(Watts::ZERO));
        // What the sources below the services asked for lies in the envelope narrowed by the
        // services' reserve.
        if let Some(g) = out.grid {
            acted += usize::from(g.acts());
            let baseline = match g.action {
                GridAction::Add(d) => Some(out.requested - d),
                GridAction::Idle => Some(out.requested),
                GridAction::Replace(_) => None,
            };
            let r = g.reserve;
            prop_assert!(r.charge.get() >= 0.0 && r.discharge.get() >= 0.0);
            prop_assert!(r.energy_for_charge.get() >= 0.0 && r.energy_for_discharge.get() >= 0.0);
            if let Some(b) = baseline {
                let narrowed = r.narrow(&out.envelope, Some(CAPACITY), Some(soc));
                let tol = Watts::saturating(0.5);
                prop_assert!(
                    b <= narrowed.max_discharge() + tol && -b <= narrowed.max_charge() + tol,
                    "baseline {b} outside the reserved envelope -{}..{} (reserve {r:?})",
                    narrowed.max_charge(),
                    narrowed.max_discharge()
                );
            }
        }
    }
    Ok(acted)
}

#[test]
fn the_check_sees_services_act() {
    // A dip to 49.45 Hz under a force-charge override: FCR-N, FCR-D up, FFR and LFSM-U act,
    // and the override keeps out of their reserve.
    let dip = Cycle {
        dt_ms: 100,
        frequency: Some(49.45),
        stale: false,
        soc: 60.0,
        charge_limit: 5000.0,
        discharge_limit: 5000.0,
        ess_override: Some(Override::ForceCharge { power: ems_core::watts!(5000.0) }),
        plan: None,
    };
    let acted = check(&vec![dip; 50]).unwrap();
    assert!(acted >= 45, "the services acted in {acted} of 50 cycles");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_service_keeps_the_invariant_and_its_reserve(cycles in proptest::collection::vec(cycle(), 1..120)) {
        check(&cycles)?;
    }
}
