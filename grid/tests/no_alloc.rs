//! **Architecture Invariant:** `Controller::step_with` with every grid service never allocates
//! (design.md §8: "step with grid service … 0 heap allocations"). Counted with a global
//! allocator (`allocation-counter`) over a run in RUNNING through a frequency that visits
//! FCR-N's band, FCR-D up and down, an FFR activation with its support and deactivation, the
//! droop's bands, a stale frequency and its recovery, with the reservoir's NEM/AEM running.
// Test helpers outside #[test] functions: a failure should abort loudly.
#![allow(clippy::unwrap_used)]

use ems_control::{Controller, ControllerConfig, Inputs};
use ems_core::snapshot::FAST_MAX_AGE;
use ems_core::{Hertz, Measurement, Millis, State, TransitionRequest};
use ems_grid::{
    Droop, DroopParams, FcrD, FcrN, Ffr, FfrLevel, FfrParams, FfrSupport, FrequencyServices, LerConfig,
    ParamSet,
};
use ems_safety::testkit::healthy_snapshot;

fn at(now: u64, f: Option<f32>) -> ems_core::Snapshot {
    let t = Millis::new(now);
    let mut s = healthy_snapshot(t);
    s.grid.frequency = match f {
        Some(f) => Measurement::good(Hertz::try_new(f).unwrap(), t, FAST_MAX_AGE),
        None => Measurement::invalid(Hertz::ZERO, FAST_MAX_AGE),
    };
    s
}

/// The frequency at `i` (100 ms steps): nominal, FCR-N's band, an FCR-D up dip through an FFR
/// trigger, a stale stretch, over-frequency into FCR-D down and LFSM-O, back to nominal.
fn frequency(i: u64) -> Option<f32> {
    #[allow(clippy::cast_precision_loss)] // i < 4000
    let x = i as f32;
    match i {
        0..=299 => Some(50.0 + 0.08 * (x / 30.0).sin()),
        300..=399 => Some(49.9 - 0.45 * (x - 300.0) / 100.0),
        400..=699 => Some(49.45),
        700..=749 => None,
        750..=1199 => Some(50.1 + 0.5 * ((x - 750.0) / 450.0)),
        _ => Some(50.0),
    }
}

#[test]
fn step_with_every_grid_service_never_allocates() {
    let config =
        ControllerConfig { capacity: Some(ems_core::watt_hours!(10_000.0)), ..ControllerConfig::default() };
    let mut c = Controller::new(config).unwrap();
    let params = ParamSet::nordic_2025_v1_1();
    let ler = LerConfig::try_new(
        ems_core::watt_hours!(10_000.0),
        ems_core::percent!(5.0),
        ems_core::percent!(95.0),
    )
    .unwrap();
    let mut services = FrequencyServices::new(Some(ler))
        .with_fcr_n(FcrN::try_new(ems_core::watts!(500.0), params).unwrap())
        .with_fcr_d(FcrD::up(ems_core::watts!(800.0), params).unwrap())
        .with_fcr_d(FcrD::down(ems_core::watts!(800.0), params).unwrap())
        .with_ffr(
            Ffr::try_new(ems_core::watts!(700.0), FfrParams::nordic(FfrLevel::Hz49_6, FfrSupport::Short))
                .unwrap(),
        )
        .with_droop(Droop::try_new(DroopParams::lfsm_ou()).unwrap());
    let mut now = 0;
    for request in [Some(TransitionRequest::BootComplete), Some(TransitionRequest::Start)] {
        now += 100;
        let _ =
            c.step_with(now, &at(now, Some(50.0)), &Inputs { request, ..Inputs::default() }, &mut services);
    }
    assert_eq!(c.state(), State::Running);
    let snaps: Vec<(u64, ems_core::Snapshot)> = (0..1500u64)
        .map(|i| {
            let t = now + 100 * (i + 1);
            (t, at(t, frequency(i)))
        })
        .collect();
    let mut engaged = 0_u32;
    let mut ffr_active = false;
    let info = allocation_counter::measure(|| {
        for (t, s) in &snaps {
            let out = c.step_with(*t, s, &Inputs::default(), &mut services);
            engaged += u32::from(out.grid.is_some());
            let st = services.status();
            ffr_active |= st.ffr.is_some_and(|f| f.activation == ems_grid::Activation::Active);
        }
    });
    assert_eq!(info.count_total, 0, "Controller::step_with allocated {} times", info.count_total);
    assert!(engaged > 1000, "the services engaged in {engaged} steps");
    assert!(ffr_active, "FFR activated");
    assert_eq!(c.state(), State::Running);
}
