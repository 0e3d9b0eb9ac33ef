//! Properties of the loadpoint controller (`ems_control::loadpoint`), for every sequence of
//! modes, statuses, grid/car/battery powers, time steps and configs:
//!
//! * the commanded current is always 0 A or inside `min ..= max` of the validated config, and
//!   0 A whenever charging is disabled;
//! * the phases never change twice within the minimum dwell time;
//! * the phases never change while the vehicle is plugged in and not known to switch, nor on
//!   a charger that cannot switch;
//! * a phase change is only ever commanded while charging is disabled, after at least the
//!   pause of disabled cycles;
//! * `step` never allocates.
//!
//! `PROPTEST_CASES` lengthens the run (default 256 sequences of up to 300 cycles).

use ems_control::loadpoint::{
    ChargeMode, Loadpoint, LoadpointConfig, LoadpointInputs, Phases, VehicleStatus,
};
use ems_core::{Millis, Watts};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Cycle {
    dt_s: u64,
    mode: ChargeMode,
    status: VehicleStatus,
    grid: f32,
    car: f32,
    battery: f32,
    one_phase_car: bool,
}

fn mode() -> impl Strategy<Value = ChargeMode> {
    prop_oneof![Just(ChargeMode::Off), Just(ChargeMode::Now), Just(ChargeMode::MinPv), Just(ChargeMode::Pv)]
}

fn status() -> impl Strategy<Value = VehicleStatus> {
    prop_oneof![
        1 => Just(VehicleStatus::Unplugged),
        6 => Just(VehicleStatus::Plugged),
        6 => Just(VehicleStatus::Charging),
        1 => Just(VehicleStatus::Fault),
    ]
}

fn cycle() -> impl Strategy<Value = Cycle> {
    (
        prop_oneof![Just(1u64), Just(10), 1u64..400],
        mode(),
        status(),
        -20_000.0f32..20_000.0,
        0.0f32..12_000.0,
        -6_000.0f32..6_000.0,
        any::<bool>(),
    )
        .prop_map(|(dt_s, mode, status, grid, car, battery, one_phase_car)| Cycle {
            dt_s,
            mode,
            status,
            grid,
            car,
            battery,
            one_phase_car,
        })
}

fn config() -> impl Strategy<Value = LoadpointConfig> {
    let phases = (any::<bool>(), any::<bool>(), 1u64..=1800, 1u64..=300);
    let power = (-500i16..=500, 0i16..=500, 0i16..=300, 1u64..=60);
    (60u16..=100, 0u16..=260, any::<bool>(), 1u64..=900, 1u64..=900, phases, power).prop_map(
        |(
            min,
            extra,
            battery,
            enable,
            disable,
            (charger, vehicle, dwell, pause),
            (thr, above, residual, raise),
        )| {
            let min_current = ems_core::Amps::saturating(f32::from(min) / 10.0);
            let max_current = ems_core::Amps::saturating(f32::from(min + extra) / 10.0);
            // The start level must be above the stop level: enable ≥ −disable.
            let enable_threshold = f32::from((-thr).max(0) + above);
            LoadpointConfig {
                min_current,
                max_current,
                circuit_limit: max_current,
                enable_threshold: Watts::saturating(enable_threshold),
                disable_threshold: Watts::saturating(f32::from(thr)),
                residual_power: Watts::saturating(f32::from(residual)),
                raise_interval: Millis::from_secs(raise),
                charger_can_switch_phases: charger,
                vehicle_can_switch_phases: vehicle,
                battery_charge_is_surplus: battery,
                enable_delay: Millis::from_secs(enable),
                disable_delay: Millis::from_secs(disable),
                phase_dwell: Millis::from_secs(dwell),
                phase_switch_pause: Millis::from_secs(pause),
            }
        },
    )
}

proptest! {
    #[test]
    fn current_phases_and_interlock_hold_for_any_sequence(
        config in config(),
        start_three in any::<bool>(),
        cycles in prop::collection::vec(cycle(), 1..300),
    ) {
        let mut lp = Loadpoint::new(config).unwrap();
        let limits = lp.limits();
        let mut now = Millis::ZERO;
        let mut phases = if start_three { Phases::Three } else { Phases::One };
        let mut last_change: Option<Millis> = None;
        let mut disabled_since: Option<Millis> = None;
        for c in &cycles {
            now = now.plus(Millis::from_secs(c.dt_s));
            let inputs = LoadpointInputs {
                mode: c.mode,
                status: c.status,
                grid_power: Watts::saturating(c.grid),
                charge_power: Watts::saturating(c.car),
                battery_power: Watts::saturating(c.battery),
                switched_phases: phases,
                drawing_phases: c.one_phase_car.then_some(Phases::One),
            };
            let out = lp.step(now, &inputs);
            prop_assert!(
                out.current.is_zero() || (limits.min..=limits.max).contains(&out.current),
                "current {} outside 0 or {}..={}", out.current, limits.min, limits.max
            );
            if !out.enabled {
                prop_assert!(out.current.is_zero(), "disabled with {}", out.current);
            }
            if out.enabled {
                disabled_since = None;
            } else if disabled_since.is_none() {
                disabled_since = Some(now);
            }
            if out.phases != phases {
                prop_assert!(config.charger_can_switch_phases, "a charger without switching switched");
                let plugged = matches!(c.status, VehicleStatus::Plugged | VehicleStatus::Charging);
                prop_assert!(
                    !plugged || config.vehicle_can_switch_phases,
                    "phases changed with a vehicle that cannot switch plugged in"
                );
                prop_assert!(!out.enabled, "phases changed while enabled");
                let paused = now.since(disabled_since.unwrap_or(now));
                prop_assert!(paused >= config.phase_switch_pause, "phase change after only {paused} of pause");
                if let Some(prev) = last_change {
                    prop_assert!(
                        now.since(prev) >= config.phase_dwell,
                        "phases changed {} after the previous change (dwell {})",
                        now.since(prev), config.phase_dwell
                    );
                }
                last_change = Some(now);
                phases = out.phases;
            }
        }
    }
}

#[test]
fn step_never_allocates() {
    let config = LoadpointConfig {
        charger_can_switch_phases: true,
        vehicle_can_switch_phases: true,
        ..LoadpointConfig::default()
    };
    let mut lp = Loadpoint::new(config).unwrap();
    let mut phases = Phases::Three;
    let modes = [ChargeMode::Off, ChargeMode::Now, ChargeMode::MinPv, ChargeMode::Pv];
    let info = allocation_counter::measure(|| {
        for t in 0..20_000u64 {
            let export = if (t / 1_000) % 2 == 0 { 6_000.0 } else { 500.0 };
            let inputs = LoadpointInputs {
                mode: modes[usize::try_from((t / 5_000) % 4).unwrap_or(0)],
                status: VehicleStatus::Charging,
                grid_power: Watts::saturating(-export),
                charge_power: Watts::ZERO,
                battery_power: Watts::ZERO,
                switched_phases: phases,
                drawing_phases: None,
            };
            let out = lp.step(Millis::from_secs(t), &inputs);
            phases = out.phases;
        }
    });
    assert_eq!(info.count_total, 0, "loadpoint step allocated");
}
