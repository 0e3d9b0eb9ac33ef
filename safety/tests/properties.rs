//! Property tests: for any snapshot, `evaluate` stays inside the rating, never panics, and
//! adding a constraint never widens the envelope.

use ems_core::event::Signal;
use ems_core::snapshot::{BmsAlarms, ContactorState, EStopInput, InverterState};
use ems_core::{Amps, Celsius, Events, Hertz, Measurement, Millis, Percent, Snapshot, Volts, Watts};
use ems_safety::{evaluate_once, Envelope, SafetyConfig, SafetyMonitor};
use proptest::prelude::*;

/// Raw ingredients of one measurement: a number, a quality selector and an age.
type Raw = (f32, u8, u64);

fn raw_value() -> impl Strategy<Value = f32> {
    prop_oneof![
        proptest::num::f32::ANY,
        Just(0.0f32),
        Just(-1.0e9f32),
        Just(1.0e9f32),
        Just(f32::MAX),
        Just(f32::MIN),
        -100.0f32..100.0,
        2.0f32..4.0,
        -10_000.0f32..10_000.0,
    ]
}

fn raw() -> impl Strategy<Value = Raw> {
    (raw_value(), 0u8..4, prop_oneof![0u64..3_000, 0u64..20_000, Just(u64::MAX)])
}

/// A measurement at `now`: quality 0/1 good (age possibly beyond max age → stale), 2 invalid,
/// 3 good but taken in the future.
fn meas<T: Copy>(v: T, r: Raw, now: Millis, max_age: Millis) -> Measurement<T> {
    match r.1 {
        0 | 1 => Measurement::good(v, Millis::new(now.get().saturating_sub(r.2)), max_age),
        2 => Measurement::invalid(v, max_age),
        _ => Measurement::good(v, now.plus(Millis::new(r.2 % 10_000)), max_age),
    }
}

fn build(r: &[Raw], rated: f32, now: Millis) -> Snapshot {
    let g = |i: usize| r.get(i).copied().unwrap_or((0.0, 2, 0));
    let fast = Millis::new(2_000);
    let slow = Millis::new(5_000);
    let mut s = Snapshot::unknown(Watts::saturating(rated));
    let b = &mut s.battery;
    b.soc = meas(Percent::saturating(g(0).0), g(0), now, slow);
    b.pack_voltage = meas(Volts::saturating(g(1).0), g(1), now, fast);
    b.pack_current = meas(Amps::saturating(g(2).0), g(2), now, fast);
    b.cell_voltage_min = meas(Volts::saturating(g(3).0), g(3), now, fast);
    b.cell_voltage_max = meas(Volts::saturating(g(4).0), g(4), now, fast);
    b.cell_temp_min = meas(Celsius::saturating(g(5).0), g(5), now, slow);
    b.cell_temp_max = meas(Celsius::saturating(g(6).0), g(6), now, slow);
    b.bms_charge_limit = meas(Watts::saturating(g(7).0), g(7), now, slow);
    b.bms_discharge_limit = meas(Watts::saturating(g(8).0), g(8), now, slow);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // abs() of a finite f32, then % 4
    let bits = (g(9).0.abs() as u32 % 4) as u16; // mostly no alarm
    b.bms_alarms = meas(BmsAlarms::from_bits(if bits == 3 { 1 << 2 } else { 0 }), g(9), now, slow);
    b.bms_ready = meas(g(10).0 > -50.0, g(10), now, slow);
    s.inverter.active_power = meas(Watts::saturating(g(11).0), g(11), now, fast);
    let st = match g(12).0 {
        x if x > 90.0 => InverterState::Fault,
        x if x < -90.0 => InverterState::Standby,
        _ => InverterState::Running,
    };
    s.inverter.state = meas(st, g(12), now, slow);
    s.inverter.temperature = meas(Celsius::saturating(g(13).0), g(13), now, slow);
    s.grid.active_power = meas(Watts::saturating(g(14).0), g(14), now, fast);
    s.grid.voltage = meas(Volts::saturating(g(15).0), g(15), now, fast);
    s.grid.frequency = meas(Hertz::saturating(g(16).0), g(16), now, fast);
    s.pv_power = meas(Watts::saturating(g(17).0), g(17), now, fast);
    let c = match g(18).0 {
        x if x > 50.0 => ContactorState::Open,
        x if x < -50.0 => ContactorState::Precharging,
        _ => ContactorState::Closed,
    };
    s.contactor = meas(c, g(18), now, fast);
    s.precharge_done = meas(g(19).0 > -50.0, g(19), now, fast);
    let e = if g(20).0 > 90.0 { EStopInput::Pressed } else { EStopInput::Released };
    s.estop = meas(e, g(20), now, Millis::new(500));
    s
}

fn snapshot_strategy() -> impl Strategy<Value = (Snapshot, Millis)> {
    (
        proptest::collection::vec(raw(), 21),
        prop_oneof![Just(5_000.0f32), -1.0e9f32..1.0e9, proptest::num::f32::ANY],
        prop_oneof![0u64..1_000_000_000, Just(u64::MAX), Just(0u64)],
    )
        .prop_map(|(r, rated, now)| {
            let now = Millis::new(now);
            (build(&r, rated, now), now)
        })
}

fn check_bounds(env: &Envelope, s: &Snapshot) -> Result<(), TestCaseError> {
    let rating = s.inverter.rated_power.max(Watts::ZERO);
    for w in [env.max_charge(), env.max_discharge()] {
        prop_assert!(w.get().is_finite());
        prop_assert!(w >= Watts::ZERO);
        prop_assert!(w <= rating, "{w} > rating {rating}");
    }
    Ok(())
}

fn not_wider(narrow: &Envelope, wide: &Envelope) -> Result<(), TestCaseError> {
    prop_assert!(narrow.max_charge() <= wide.max_charge(), "charge widened: {narrow:?} vs {wide:?}");
    prop_assert!(narrow.max_discharge() <= wide.max_discharge(), "discharge widened: {narrow:?} vs {wide:?}");
    prop_assert!(
        !narrow.contactor_close_allowed() || wide.contactor_close_allowed(),
        "contactor permission widened"
    );
    Ok(())
}

/// Invalidate the measurement(s) behind `sig`.
fn invalidate(s: &mut Snapshot, sig: Signal) {
    let b = &mut s.battery;
    match sig {
        Signal::Soc => b.soc.invalidate(),
        Signal::PackVoltage => b.pack_voltage.invalidate(),
        Signal::PackCurrent => b.pack_current.invalidate(),
        Signal::CellVoltage => b.cell_voltage_max.invalidate(),
        Signal::CellTemperature => b.cell_temp_min.invalidate(),
        Signal::BmsLimits => b.bms_discharge_limit.invalidate(),
        Signal::BmsAlarms => b.bms_alarms.invalidate(),
        Signal::BmsReady => b.bms_ready.invalidate(),
        Signal::InverterPower => s.inverter.active_power.invalidate(),
        Signal::InverterState => s.inverter.state.invalidate(),
        Signal::InverterTemperature => s.inverter.temperature.invalidate(),
        Signal::GridPower => s.grid.active_power.invalidate(),
        Signal::GridVoltageFrequency => s.grid.frequency.invalidate(),
        Signal::PvPower => s.pv_power.invalidate(),
        Signal::Contactor => s.contactor.invalidate(),
        Signal::Precharge => s.precharge_done.invalidate(),
        Signal::EStop => s.estop.invalidate(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn evaluate_stays_inside_the_rating((s, now) in snapshot_strategy()) {
        let env = evaluate_once(&SafetyConfig::default(), &s, now);
        check_bounds(&env, &s)?;
    }

    #[test]
    fn lowering_a_bms_limit_never_widens((s, now) in snapshot_strategy(), f in 0.0f32..1.0, charge in any::<bool>()) {
        let cfg = SafetyConfig::default();
        let wide = evaluate_once(&cfg, &s, now);
        let mut s2 = s;
        let m = if charge { &mut s2.battery.bms_charge_limit } else { &mut s2.battery.bms_discharge_limit };
        let quality = m.stored_quality();
        let lowered = m.last_value().max(Watts::ZERO).scale(f);
        *m = Measurement::good(lowered, m.taken_at(), m.max_age());
        // Same quality as before: an invalid limit stays invalid.
        if quality != ems_core::Quality::Good {
            m.invalidate();
        }
        let narrow = evaluate_once(&cfg, &s2, now);
        not_wider(&narrow, &wide)?;
    }

    #[test]
    fn losing_a_signal_never_widens((s, now) in snapshot_strategy(), i in 0usize..17) {
        let cfg = SafetyConfig::default();
        let wide = evaluate_once(&cfg, &s, now);
        let mut s2 = s;
        invalidate(&mut s2, Signal::ALL[i]);
        let narrow = evaluate_once(&cfg, &s2, now);
        not_wider(&narrow, &wide)?;
        // Stale (older than any max age) behaves the same way.
        if now.get() < u64::MAX / 2 {
            let later = now.plus(Millis::from_secs(60));
            let stale = evaluate_once(&cfg, &s, later);
            prop_assert_eq!(stale.max_charge(), Watts::ZERO);
            prop_assert_eq!(stale.max_discharge(), Watts::ZERO);
        }
    }

    #[test]
    fn a_running_monitor_stays_inside_the_rating(seq in proptest::collection::vec(snapshot_strategy(), 1..40)) {
        let mut m = SafetyMonitor::new(SafetyConfig::default());
        let mut events = Events::new();
        for (s, now) in seq {
            events.clear();
            let env = m.evaluate(&s, now, &mut events);
            check_bounds(&env, &s)?;
            let _ = m.active_fault(&s, now);
        }
        m.reset_latches();
    }
}
