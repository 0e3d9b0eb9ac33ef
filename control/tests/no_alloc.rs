//! **Architecture Invariant:** `Controller::step` never allocates. Proven with a counting
//! global allocator (the `allocation-counter` crate) over a run that visits every state:
//! BOOT → IDLE → RUNNING (charging, ramping, clamped), a trip to ERROR, acknowledge, an E-stop
//! to STOPPED, a manual reset, and a graceful shutdown; and over a second run in RUNNING that
//! visits every mode, every override (valid and refused), plan slots of both kinds, a
//! grid-service set-point, mode changes (valid and refused) and time-slotted caps.

mod common;

use ems_control::{
    CapSlot, CapSlots, CommandSource, Controller, ControllerConfig, FixedRequest, GridAction, GridRequest,
    GridTieBound, Inputs, ModeSetting, Override, PeakShavingConfig, PlanTarget, ProviderOperation,
    ProviderTarget, Reserve, RuleTarget, SelfConsumptionConfig,
};
use ems_core::event::GridTieLimit;
use ems_core::snapshot::{BmsAlarm, BmsAlarms, EStopInput};
use ems_core::{Measurement, Millis, State, TransitionRequest, Watts};

#[test]
fn step_never_allocates_in_any_state() {
    let mut c = Controller::new(ControllerConfig::default()).unwrap();
    // Warm up outside the measurement (nothing is lazily initialised, but be explicit).
    let warm = common::healthy(Millis::ZERO);
    let _ = c.step(0, &warm, &Inputs::default());
    let mut states = Vec::with_capacity(16);
    let mut snaps = Vec::with_capacity(400);
    for i in 0..400u64 {
        let now = Millis::new(100 + i * 100);
        let mut s = common::healthy(now);
        if (150..170).contains(&i) {
            s.battery.bms_alarms =
                Measurement::good(BmsAlarms::NONE.with(BmsAlarm::OverTemperature), now, Millis::new(2000));
        }
        if (200..210).contains(&i) {
            s.battery.cell_temp_max = Measurement::good(ems_core::celsius!(70.0), now, Millis::new(2000));
        }
        if (250..260).contains(&i) {
            s.estop = Measurement::good(EStopInput::Pressed, now, Millis::new(2000));
        }
        if (300..305).contains(&i) {
            s.battery.cell_temp_min.invalidate();
        }
        let request = match i {
            0 => Some(TransitionRequest::BootComplete),
            1 | 235 | 290 => Some(TransitionRequest::Start),
            180 | 230 => Some(TransitionRequest::Acknowledge),
            280 => Some(TransitionRequest::Reset),
            _ => None,
        };
        snaps.push((now, s, request, i == 350));
    }
    let info = allocation_counter::measure(|| {
        for (now, s, request, shutdown) in &snaps {
            let out = c.step(
                now.get(),
                s,
                &Inputs { request: *request, reason: "test", shutdown: *shutdown, ..Inputs::default() },
            );
            if states.last() != Some(&out.state) && states.len() < states.capacity() {
                states.push(out.state);
            }
        }
    });
    assert_eq!(info.count_total, 0, "Controller::step allocated {} times", info.count_total);
    for s in [State::Idle, State::Running, State::Error, State::Stopped] {
        assert!(states.contains(&s), "run did not visit {s}: {states:?}");
    }
}

#[test]
fn step_never_allocates_with_every_mode_override_plan_and_grid_service() {
    let mut c = Controller::new(ControllerConfig::default()).unwrap();
    let mut now = 0u64;
    for request in [Some(TransitionRequest::BootComplete), Some(TransitionRequest::Start)] {
        now += 100;
        let _ = c.step(now, &common::healthy(Millis::new(now)), &Inputs { request, ..Inputs::default() });
    }
    assert_eq!(c.state(), State::Running);
    let slots = CapSlots::from_slice(&[
        CapSlot {
            start_minute: 0,
            import_cap: ems_core::watts!(3000.0),
            export_cap: ems_core::watts!(1000.0),
        },
        CapSlot {
            start_minute: 600,
            import_cap: ems_core::watts!(200.0),
            export_cap: ems_core::watts!(500.0),
        },
    ])
    .unwrap();
    let modes = [
        ModeSetting::SelfConsumption(SelfConsumptionConfig::default()),
        ModeSetting::SelfConsumption(SelfConsumptionConfig {
            reserve_soc: ems_core::percent!(60.0),
            max_charge: Some(ems_core::watts!(500.0)),
            ..SelfConsumptionConfig::default()
        }),
        ModeSetting::PeakShaving(PeakShavingConfig { slots, ..PeakShavingConfig::default() }),
        // Refused (negative cap): the previous mode stays.
        ModeSetting::PeakShaving(PeakShavingConfig {
            import_cap: ems_core::watts!(-1.0),
            ..PeakShavingConfig::default()
        }),
        ModeSetting::Manual { setpoint: ems_core::watts!(-1000.0) },
    ];
    let overrides = [
        None,
        Some(Override::NoDischarge),
        Some(Override::LimitCharge { max_charge_power: ems_core::watts!(300.0) }),
        Some(Override::LimitDischarge { max_discharge_power: ems_core::watts!(300.0) }),
        Some(Override::ForceCharge { power: ems_core::watts!(2000.0) }),
        Some(Override::ForceCharge { power: ems_core::watts!(-5.0) }), // refused
    ];
    let rules = [
        None,
        Some(RuleTarget { action: Override::NoDischarge, id: 1 }),
        Some(RuleTarget { action: Override::ForceCharge { power: ems_core::watts!(1500.0) }, id: 2 }),
    ];
    let plans = [
        None,
        Some(PlanTarget { battery: ems_core::watts!(1000.0), grid: Watts::ZERO }),
        Some(PlanTarget { battery: ems_core::watts!(3000.0), grid: ems_core::watts!(-2500.0) }),
    ];
    let mut cycles = Vec::with_capacity(400);
    for i in 0..360usize {
        now += 100;
        let mut s = common::healthy(Millis::new(now));
        // A load step every 3 s so the grid-following loops have work to do.
        let grid = if (i / 30) % 2 == 0 { -2000.0 } else { 2500.0 };
        s.grid.active_power = common::good(Watts::saturating(grid), Millis::new(now));
        let set_mode = (i % 72 == 0).then(|| modes[(i / 72) % modes.len()]);
        let inputs = Inputs {
            set_mode,
            ess_override: overrides[(i / 12) % overrides.len()],
            plan: plans[(i / 20) % plans.len()],
            provider: (i % 40 > 30).then_some(ProviderTarget {
                operation: ProviderOperation::Discharge,
                power: ems_core::watts!(1500.0),
                may_export: true,
            }),
            local_minute: Some(u16::try_from((i * 7) % 1440).unwrap_or(0)),
            // An operator rule in some cycles (under and without an override).
            rule: rules[(i / 9) % rules.len()],
            // The island sequence's bound in some cycles: zero (islanded), then a ramp.
            grid_tie: match i % 60 {
                50..=54 => Some(GridTieBound::zero(GridTieLimit::Islanded)),
                55..=59 => Some(GridTieBound {
                    limit: ems_core::watts!(800.0),
                    reason: GridTieLimit::ReconnectionRamp,
                }),
                _ => None,
            },
            ..Inputs::default()
        };
        // Grid service: add, replace and idle with reserves, in turn.
        let action = match i % 50 {
            0..=39 => None,
            40..=44 => Some(GridAction::Add(ems_core::watts!(-700.0))),
            45..=47 => Some(GridAction::Replace(ems_core::watts!(700.0))),
            _ => Some(GridAction::Idle),
        };
        let grid = action.map(|action| GridRequest {
            action,
            reserve: Reserve { discharge: ems_core::watts!(1000.0), ..Reserve::NONE },
            ramp: None,
        });
        cycles.push((now, s, inputs, grid));
    }
    let mut sources = Vec::with_capacity(64);
    let mut refused = 0usize;
    let info = allocation_counter::measure(|| {
        for (now, s, inputs, grid) in &cycles {
            let mut service = FixedRequest { name: "test", request: *grid };
            let out = c.step_with(*now, s, inputs, &mut service);
            if !sources.contains(&out.source) && sources.len() < sources.capacity() {
                sources.push(out.source);
            }
            refused += usize::from(out.override_refused.is_some()) + usize::from(out.mode_refused.is_some());
        }
    });
    assert_eq!(info.count_total, 0, "Controller::step allocated {} times", info.count_total);
    assert_eq!(c.state(), State::Running);
    assert!(refused > 0, "no refused override or mode exercised");
    for wanted in ["mode", "plan", "provider", "rule", "override", "grid service"] {
        assert!(
            sources.iter().any(|s: &CommandSource| s.to_string().starts_with(wanted)),
            "run never had source {wanted}: {sources:?}"
        );
    }
}
