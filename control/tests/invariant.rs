//! The invariant the whole project is judged by (design.md §6), as a property test:
//! for every sequence of snapshots (random values including NaN/±inf/out-of-range, stale and
//! invalid signals), every mode setting and every request, the command
//! * lies inside the envelope computed from the same snapshot,
//! * is never above the inverter rating or a *good* BMS limit, and zero when those are unknown,
//! * moves no faster than the ramp limit (moves toward zero are never delayed),
//! * is zero outside RUNNING, and zero with contactors commanded open when the E-stop is pressed.
//!
//! `PROPTEST_CASES` lengthens the run (default 256 sequences of up to 80 cycles).

mod common;

use ems_control::{ChargeOnlyConfig, ChargeSource, Controller, ControllerConfig, Inputs, ModeSetting};
use ems_core::snapshot::{BmsAlarms, ContactorState, EStopInput, InverterState};
use ems_core::{
    Amps, Celsius, ContactorCommand, Hertz, Measurement, Millis, Percent, Snapshot, State, TransitionRequest,
    TripReason, Volts, Watts,
};
use proptest::prelude::*;

#[derive(Debug, Clone, Copy)]
enum Q {
    Good,
    Stale,
    Invalid,
}

fn quality() -> BoxedStrategy<Q> {
    prop_oneof![8 => Just(Q::Good), 1 => Just(Q::Stale), 1 => Just(Q::Invalid)].boxed()
}

/// Any f32, biased toward plausible values, with NaN, infinities and extremes included.
fn raw(lo: f32, hi: f32) -> BoxedStrategy<f32> {
    prop_oneof![
        8 => lo..hi,
        1 => proptest::num::f32::ANY,
        1 => prop_oneof![Just(f32::NAN), Just(f32::INFINITY), Just(f32::NEG_INFINITY), Just(-1e30f32), Just(1e30f32)],
    ]
    .boxed()
}

/// A reader that validates: a value that fails the unit's checks becomes an invalid signal.
fn meas<T: Copy>(v: Result<T, ems_core::UnitError>, q: Q, now: Millis, zero: T) -> Measurement<T> {
    let age = Millis::new(2_000);
    match (v, q) {
        (Ok(v), Q::Good) => Measurement::good(v, now, age),
        (Ok(v), Q::Stale) => Measurement::good(v, Millis::new(now.get().saturating_sub(10_000)), age),
        (Ok(_) | Err(_), Q::Invalid) | (Err(_), _) => Measurement::invalid(zero, age),
    }
}

fn state_meas<T: Copy>(v: T, q: Q, now: Millis) -> Measurement<T> {
    let age = Millis::new(2_000);
    match q {
        Q::Good => Measurement::good(v, now, age),
        Q::Stale => Measurement::good(v, Millis::new(now.get().saturating_sub(10_000)), age),
        Q::Invalid => Measurement::invalid(v, age),
    }
}

#[derive(Debug, Clone)]
struct RawSnap {
    f: [(f32, Q); 15],
    alarms: (u16, Q),
    ready: (bool, Q),
    inv_state: (u8, Q),
    contactor: (u8, Q),
    precharge: (bool, Q),
    estop: (bool, Q),
}

fn raw_snap() -> BoxedStrategy<RawSnap> {
    let f = [
        (raw(0.0, 100.0), quality()),        // soc
        (raw(40.0, 60.0), quality()),        // pack V
        (raw(-150.0, 150.0), quality()),     // pack A
        (raw(2.4, 3.7), quality()),          // cell V min
        (raw(2.4, 3.7), quality()),          // cell V max
        (raw(-25.0, 65.0), quality()),       // cell T min
        (raw(-25.0, 65.0), quality()),       // cell T max
        (raw(-1000.0, 8000.0), quality()),   // BMS charge limit
        (raw(-1000.0, 8000.0), quality()),   // BMS discharge limit
        (raw(-6000.0, 6000.0), quality()),   // inverter P
        (raw(0.0, 100.0), quality()),        // inverter T
        (raw(-20000.0, 20000.0), quality()), // grid P
        (raw(180.0, 260.0), quality()),      // grid V
        (raw(47.0, 52.0), quality()),        // grid f
        (raw(0.0, 8000.0), quality()),       // PV
    ];
    (
        f,
        (prop_oneof![6 => Just(0u16), 1 => any::<u16>()], quality()),
        (prop_oneof![8 => Just(true), 1 => Just(false)], quality()),
        (0u8..3, quality()),
        (prop_oneof![6 => Just(2u8), 1 => 0u8..2], quality()),
        (prop_oneof![8 => Just(true), 1 => Just(false)], quality()),
        (prop_oneof![12 => Just(false), 1 => Just(true)], quality()),
    )
        .prop_map(|(f, alarms, ready, inv_state, contactor, precharge, estop)| RawSnap {
            f,
            alarms,
            ready,
            inv_state,
            contactor,
            precharge,
            estop,
        })
        .boxed()
}

fn build(r: &RawSnap, now: Millis) -> Snapshot {
    let mut s = Snapshot::unknown(Watts::new(5000.0));
    let f = &r.f;
    s.battery.soc = meas(Percent::try_new(f[0].0), f[0].1, now, Percent::ZERO);
    s.battery.pack_voltage = meas(Volts::try_new(f[1].0), f[1].1, now, Volts::ZERO);
    s.battery.pack_current = meas(Amps::try_new(f[2].0), f[2].1, now, Amps::ZERO);
    s.battery.cell_voltage_min = meas(Volts::try_new(f[3].0), f[3].1, now, Volts::ZERO);
    s.battery.cell_voltage_max = meas(Volts::try_new(f[4].0), f[4].1, now, Volts::ZERO);
    s.battery.cell_temp_min = meas(Celsius::try_new(f[5].0), f[5].1, now, Celsius::ZERO);
    s.battery.cell_temp_max = meas(Celsius::try_new(f[6].0), f[6].1, now, Celsius::ZERO);
    s.battery.bms_charge_limit = meas(Watts::try_new(f[7].0), f[7].1, now, Watts::ZERO);
    s.battery.bms_discharge_limit = meas(Watts::try_new(f[8].0), f[8].1, now, Watts::ZERO);
    s.inverter.active_power = meas(Watts::try_new(f[9].0), f[9].1, now, Watts::ZERO);
    s.inverter.temperature = meas(Celsius::try_new(f[10].0), f[10].1, now, Celsius::ZERO);
    s.grid.active_power = meas(Watts::try_new(f[11].0), f[11].1, now, Watts::ZERO);
    s.grid.voltage = meas(Volts::try_new(f[12].0), f[12].1, now, Volts::ZERO);
    s.grid.frequency = meas(Hertz::try_new(f[13].0), f[13].1, now, Hertz::ZERO);
    s.pv_power = meas(Watts::try_new(f[14].0), f[14].1, now, Watts::ZERO);
    s.battery.bms_alarms = state_meas(BmsAlarms::from_bits(r.alarms.0), r.alarms.1, now);
    s.battery.bms_ready = state_meas(r.ready.0, r.ready.1, now);
    let inv = [InverterState::Standby, InverterState::Running, InverterState::Fault];
    s.inverter.state = state_meas(inv[usize::from(r.inv_state.0 % 3)], r.inv_state.1, now);
    let cont = [ContactorState::Open, ContactorState::Precharging, ContactorState::Closed];
    s.contactor = state_meas(cont[usize::from(r.contactor.0 % 3)], r.contactor.1, now);
    s.precharge_done = state_meas(r.precharge.0, r.precharge.1, now);
    let e = if r.estop.0 { EStopInput::Pressed } else { EStopInput::Released };
    s.estop = state_meas(e, r.estop.1, now);
    s
}

fn request() -> impl Strategy<Value = Option<TransitionRequest>> {
    prop_oneof![
        6 => Just(None),
        2 => Just(Some(TransitionRequest::BootComplete)),
        3 => Just(Some(TransitionRequest::Start)),
        1 => Just(Some(TransitionRequest::Stop)),
        1 => Just(Some(TransitionRequest::Acknowledge)),
        1 => Just(Some(TransitionRequest::Reset)),
    ]
}

fn mode() -> impl Strategy<Value = Option<ModeSetting>> {
    prop_oneof![
        8 => Just(None),
        1 => Just(Some(ModeSetting::Passive)),
        1 => raw(-20000.0, 20000.0).prop_map(|p| Some(ModeSetting::Manual { setpoint: Watts::new(p) })),
        1 => Just(Some(ModeSetting::ChargeOnly(ChargeOnlyConfig::default()))),
        2 => (raw(-1000.0, 9000.0), raw(0.0, 100.0), raw(-100.0, 20000.0)).prop_map(|(p, soc, imp)| Some(
            ModeSetting::ChargeOnly(ChargeOnlyConfig {
                source: ChargeSource::Fixed(Watts::new(p)),
                soc_target: Percent::new(soc),
                max_grid_import: Watts::new(imp),
            })
        )),
    ]
}

#[derive(Debug, Clone)]
struct Cycle {
    dt_ms: u64,
    snap: RawSnap,
    request: Option<TransitionRequest>,
    mode: Option<ModeSetting>,
    estop: bool,
    shutdown: bool,
    device_trip: Option<TripReason>,
}

fn cycle() -> BoxedStrategy<Cycle> {
    (
        prop_oneof![6 => Just(100u64), 2 => 1u64..2_000, 1 => Just(0u64)],
        raw_snap(),
        request(),
        mode(),
        prop_oneof![40 => Just(false), 1 => Just(true)],
        prop_oneof![40 => Just(false), 1 => Just(true)],
        prop_oneof![
            40 => Just(None),
            1 => Just(Some(TripReason::SetpointNotApplied)),
            1 => Just(Some(TripReason::PrechargeFailed)),
            1 => Just(Some(TripReason::ContactorWelded)),
            1 => Just(Some(TripReason::ContactorFailedToClose)),
        ],
    )
        .prop_map(|(dt_ms, snap, request, mode, estop, shutdown, device_trip)| Cycle {
            dt_ms,
            snap,
            request,
            mode,
            estop,
            shutdown,
            device_trip,
        })
        .boxed()
}

proptest! {
    #[test]
    fn command_always_inside_envelope_ramped_and_zero_outside_running(
        cycles in proptest::collection::vec(cycle(), 1..80)
    ) {
        let config = ControllerConfig::default();
        let ramp = config.ramp.watts_per_second();
        let mut c = Controller::new(config).unwrap();
        let mut now = 0u64;
        let mut prev = Watts::ZERO;
        let mut prev_now: Option<u64> = None;
        for cy in &cycles {
            now += cy.dt_ms;
            let t = Millis::new(now);
            let snap = build(&cy.snap, t);
            let inputs = Inputs {
                request: cy.request,
                reason: "property test",
                emergency_stop: cy.estop,
                shutdown: cy.shutdown,
                set_mode: cy.mode,
                device_trips: cy.device_trip.as_slice(),
            };
            let out = c.step(now, &snap, &inputs);
            let cmd = out.command.battery_setpoint;
            prop_assert!(cmd.get().is_finite());
            prop_assert!(out.envelope.contains(cmd), "{cmd} outside -{}..{}", out.envelope.max_charge(), out.envelope.max_discharge());
            prop_assert!(cmd.abs() <= snap.inverter.rated_power);
            match (cmd > Watts::ZERO, snap.battery.bms_discharge_limit.value_at(t)) {
                (true, Some(lim)) => prop_assert!(cmd <= lim.max(Watts::ZERO)),
                (true, None) => prop_assert!(false, "discharging {cmd} with unknown BMS limit"),
                (false, _) => {}
            }
            match (cmd < Watts::ZERO, snap.battery.bms_charge_limit.value_at(t)) {
                (true, Some(lim)) => prop_assert!(-cmd <= lim.max(Watts::ZERO)),
                (true, None) => prop_assert!(false, "charging {cmd} with unknown BMS limit"),
                (false, _) => {}
            }
            if out.state != State::Running {
                prop_assert_eq!(cmd, Watts::ZERO, "non-zero outside RUNNING ({})", out.state);
            }
            if cy.device_trip.is_some() {
                prop_assert!(matches!(out.state, State::Error | State::Stopped), "device trip left {}", out.state);
                prop_assert_eq!(cmd, Watts::ZERO);
            }
            if snap.estop.value_at(t) == Some(EStopInput::Pressed) || cy.estop {
                prop_assert_eq!(cmd, Watts::ZERO);
                prop_assert_eq!(out.command.contactor, ContactorCommand::Open);
                prop_assert_eq!(out.state, State::Stopped);
            }
            if let Some(p) = prev_now {
                let dt = Millis::new(now - p);
                let max_step = ramp.get() * dt.as_secs_f32() + 1e-3;
                let toward_zero = if prev.get() >= 0.0 {
                    cmd.get() >= 0.0 && cmd.get() <= prev.get() + 1e-3
                } else {
                    cmd.get() <= 0.0 && cmd.get() >= prev.get() - 1e-3
                };
                prop_assert!((cmd - prev).get().abs() <= max_step || toward_zero,
                    "ramp: {prev} -> {cmd} in {dt}");
            }
            prev = cmd;
            prev_now = Some(now);
        }
    }
}

#[test]
fn healthy_site_charges_from_surplus_once_running() {
    let mut c = Controller::new(ControllerConfig::default()).unwrap();
    let mut now = 0;
    let mut last: Option<ems_control::Output> = None;
    for i in 0..100 {
        now += 100;
        let t = Millis::new(now);
        let mut snap = common::healthy(t);
        // Close the loop: the battery follows the last command; load 1 kW, PV 3 kW.
        let battery = last.as_ref().map_or(Watts::ZERO, |o| o.command.battery_setpoint);
        snap.inverter.active_power = common::good(battery, t);
        snap.grid.active_power = common::good(Watts::new(-2000.0) - battery, t);
        let request = match i {
            0 => Some(TransitionRequest::BootComplete),
            1 => Some(TransitionRequest::Start),
            _ => None,
        };
        last = Some(c.step(now, &snap, &Inputs { request, ..Inputs::default() }));
    }
    let out = last.unwrap();
    assert_eq!(out.state, State::Running);
    // 2 kW surplus, ramp 2.5 kW/s: fully there well within 10 s, without export or import.
    assert!((out.command.battery_setpoint.get() + 2000.0).abs() < 20.0, "{}", out.command.battery_setpoint);
    assert_eq!(out.command.contactor, ContactorCommand::Close);
}
