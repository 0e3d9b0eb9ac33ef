//! The services plugged into the real seam: `Controller::step_with` adds FCR-N's Δ on top of
//! the baseline, the command class is `GridService`, and the reserve narrows what an operator
//! override (a source below the service) may use.
// Test helpers outside #[test] functions: a failure should abort loudly.
#![allow(clippy::unwrap_used)]

use ems_control::{CommandClass, CommandSource, Controller, ControllerConfig, Inputs, Override};
use ems_core::snapshot::FAST_MAX_AGE;
use ems_core::{Hertz, Measurement, Millis, TransitionRequest};
use ems_grid::{FcrN, FrequencyServices, LerConfig, ParamSet};
use ems_safety::testkit::healthy_snapshot;

fn at(now: u64, f: f32) -> ems_core::Snapshot {
    let t = Millis::new(now);
    let mut s = healthy_snapshot(t);
    s.grid.frequency = Measurement::good(Hertz::try_new(f).unwrap(), t, FAST_MAX_AGE);
    s
}

#[test]
fn fcr_n_adds_to_the_baseline_and_its_reserve_narrows_an_override() {
    let config =
        ControllerConfig { capacity: Some(ems_core::watt_hours!(10_000.0)), ..ControllerConfig::default() };
    let mut c = Controller::new(config).unwrap();
    let ler = LerConfig::try_new(
        ems_core::watt_hours!(10_000.0),
        ems_core::percent!(5.0),
        ems_core::percent!(95.0),
    )
    .unwrap();
    let mut services = FrequencyServices::new(Some(ler))
        .with_fcr_n(FcrN::try_new(ems_core::watts!(1000.0), ParamSet::nordic_2025_v1_1()).unwrap());
    let mut now = 0;
    for request in [Some(TransitionRequest::BootComplete), Some(TransitionRequest::Start)] {
        now += 100;
        let _ = c.step_with(now, &at(now, 50.0), &Inputs { request, ..Inputs::default() }, &mut services);
    }
    // An operator override forces a 5 kW charge; the inverter allows 5 kW, FCR-N keeps 1.34 kW
    // of charge headroom, so the override gets 3.66 kW, and at 49.95 Hz FCR-N adds 500 W
    // (less charging) on top.
    let ess_override = Some(Override::ForceCharge { power: ems_core::watts!(5000.0) });
    let mut out = None;
    for _ in 0..100 {
        now += 100;
        out = Some(c.step_with(
            now,
            &at(now, 49.95),
            &Inputs { ess_override, ..Inputs::default() },
            &mut services,
        ));
    }
    let out = out.unwrap();
    assert!(out.reserve_bound, "the reserve did not narrow the override");
    assert!(matches!(out.source, CommandSource::GridService { added: true, .. }), "{:?}", out.source);
    assert_eq!(out.command.class(), CommandClass::GridService);
    assert!((out.requested.get() + 3160.0).abs() < 1.0, "requested {}", out.requested);
    assert!(out.command.setpoint().get() >= -5000.0);
}
