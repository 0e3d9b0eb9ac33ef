//! End-to-end scenarios through `SafetyMonitor::evaluate`.

use ems_core::event::Constraint;
use ems_core::snapshot::{ContactorState, InverterState};
use ems_core::{
    Celsius, EventKind, Events, Level, Measurement, Millis, Percent, Quantity, TripReason, Watts,
};
use ems_safety::testkit::{healthy_snapshot, refreshed};
use ems_safety::{SafetyConfig, SafetyMonitor};

fn secs(s: u64) -> Millis {
    Millis::from_secs(s)
}

#[test]
fn an_hour_of_healthy_operation_is_quiet_and_unconstrained() {
    let mut m = SafetyMonitor::new(SafetyConfig::default());
    let mut ev = Events::new();
    for k in 0..3_600 {
        let now = secs(k);
        let env = m.evaluate(&healthy_snapshot(now), now, &mut ev);
        assert_eq!(env.max_charge(), ems_core::watts!(5000.0));
        assert_eq!(env.max_discharge(), ems_core::watts!(5000.0));
        assert!(env.trips().is_empty());
    }
    assert!(ev.is_empty(), "{ev:?}");
}

#[test]
fn heating_cells_warn_then_derate_then_trip() {
    let mut m = SafetyMonitor::new(SafetyConfig::default());
    let mut first: Option<(Millis, Level)> = None;
    let mut trend_warning_at = None;
    let mut trip_at = None;
    let mut levels = heapless::Vec::<Level, 8>::new();
    // 0.5 °C/min from 40 °C (below the runaway rate): 55 °C after 30 min.
    for k in 0..2_400u64 {
        let now = secs(k);
        let mut s = healthy_snapshot(now);
        #[allow(clippy::cast_precision_loss)] // k < 2400 is exact in f32
        let t = 40.0 + 0.5 * (k as f32 / 60.0);
        s.battery.cell_temp_max = Measurement::good(Celsius::saturating(t), now, secs(5));
        let mut ev = Events::new();
        let env = m.evaluate(&s, now, &mut ev);
        for e in &ev {
            match e.kind {
                EventKind::LimitLevel { level, .. } => {
                    first.get_or_insert((now, level));
                    levels.push(level).unwrap();
                }
                EventKind::TrendWarning { .. } => {
                    trend_warning_at.get_or_insert(now);
                }
                _ => {}
            }
        }
        if !env.trips().is_empty() {
            assert_eq!(env.trips(), &[TripReason::Limit(Quantity::CellTempHigh)]);
            trip_at = Some(now);
            break;
        }
    }
    assert_eq!(levels.as_slice(), &[Level::Warn, Level::Alarm, Level::Trip]);
    let warn = trend_warning_at.unwrap();
    let trip = trip_at.unwrap();
    // The trend warns roughly 10 min (the horizon) before the trip.
    let lead = trip.since(warn).as_secs_f32();
    assert!((540.0..=660.0).contains(&lead), "warned {lead} s before the trip");
    // Trip after 30 min + 5 s debounce.
    assert!((1_800..=1_815).contains(&(trip.get() / 1000)), "{trip}");
    assert!(!m.trend().runaway());
}

#[test]
fn runaway_is_detected_before_the_trip_level() {
    let mut m = SafetyMonitor::new(SafetyConfig::default());
    let mut ev = Events::new();
    let mut runaway_at = None;
    // 3 °C/min from 35 °C.
    for k in 0..600u64 {
        let now = secs(k);
        let mut s = healthy_snapshot(now);
        #[allow(clippy::cast_precision_loss)] // k < 600 is exact in f32
        let t = 35.0 + 3.0 * (k as f32 / 60.0);
        s.battery.cell_temp_max = Measurement::good(Celsius::saturating(t), now, secs(5));
        ev.clear();
        let env = m.evaluate(&s, now, &mut ev);
        if env.trips().contains(&TripReason::Runaway(Quantity::CellTempHigh)) {
            runaway_at = Some((now, t));
            assert_eq!(env.max_charge(), Watts::ZERO);
            assert_eq!(m.active_fault(&s, now), Some(TripReason::Runaway(Quantity::CellTempHigh)));
            break;
        }
    }
    let (_, t) = runaway_at.unwrap();
    assert!(t < 55.0, "runaway found at {t} °C, before the trip level");
}

#[test]
fn startup_sequence_does_not_deadlock() {
    let mut m = SafetyMonitor::new(SafetyConfig::default());
    let mut ev = Events::new();
    let mut s = healthy_snapshot(secs(0));
    s.contactor = Measurement::good(ContactorState::Open, secs(0), secs(2));
    s.precharge_done = Measurement::good(false, secs(0), secs(2));
    s.inverter.state = Measurement::good(InverterState::Standby, secs(0), secs(5));
    let env = m.evaluate(&s, secs(0), &mut ev);
    assert_eq!(env.max_discharge(), Watts::ZERO);
    assert_eq!(env.discharge_binding(), Some(Constraint::Interlock(2)));
    assert!(env.contactor_close_allowed(), "{:?}", env.contactor_reasons());
    // The gateway closes the contactor; the inverter is still in standby.
    s.contactor = Measurement::good(ContactorState::Closed, secs(1), secs(2));
    s.precharge_done = Measurement::good(true, secs(1), secs(2));
    let env = m.evaluate(&refreshed(s, secs(1)), secs(1), &mut ev);
    assert_eq!(env.max_discharge(), ems_core::watts!(5000.0), "{env:?}");
    assert_eq!(env.max_charge(), ems_core::watts!(5000.0));
}

#[test]
fn full_battery_stops_charging_with_hysteresis() {
    let mut m = SafetyMonitor::new(SafetyConfig::default());
    let mut ev = Events::new();
    let soc = |now: Millis, p: f32| {
        let mut s = healthy_snapshot(now);
        s.battery.soc = Measurement::good(Percent::saturating(p), now, secs(5));
        s
    };
    let env = m.evaluate(&soc(secs(0), 100.0), secs(0), &mut ev);
    assert_eq!(env.max_charge(), Watts::ZERO);
    assert_eq!(m.level(Quantity::SocHigh), Level::Alarm);
    for k in 1..20 {
        let env = m.evaluate(&soc(secs(k), 99.0), secs(k), &mut ev);
        assert_eq!(env.max_charge(), Watts::ZERO, "inside hysteresis");
    }
    for k in 20..30 {
        let _ = m.evaluate(&soc(secs(k), 97.5), secs(k), &mut ev);
    }
    assert_eq!(m.level(Quantity::SocHigh), Level::Warn);
    let env = m.evaluate(&soc(secs(30), 97.5), secs(30), &mut ev);
    // Charging allowed again, derated by the SOC curve (100 % at 90 %, 20 % at 100 %).
    assert!((env.max_charge().get() - 5000.0 * 0.4).abs() < 1.0, "{env:?}");
}
