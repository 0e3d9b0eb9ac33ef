//! `SafeBms` and `RateLimiter`: plausibility, SOC jumps, stuck sensors, comm-loss fallback and
//! the alarm-reset rate limit.
#![allow(clippy::unwrap_used)]

mod wrappers_mocks;

use ems_core::snapshot::BatterySignals;
use ems_core::{Celsius, Millis, Percent, Quality, Snapshot, Volts, Watts};
use ems_devices::wrappers::bms::{SafeBms, SafeBmsConfig};
use ems_devices::wrappers::rate::{RateLimit, RateLimiter};
use ems_devices::wrappers::{DeviceEvent, DeviceEvents, WrapperError};
use pollster::block_on;
use wrappers_mocks::{healthy_bms_reading, MockBms, COMM};

fn signals(bms: &SafeBms<MockBms>, now: Millis) -> BatterySignals {
    let mut b = Snapshot::unknown(Watts::ZERO).battery;
    bms.fill(now, &mut b);
    b
}

fn poll(bms: &mut SafeBms<MockBms>, now: u64) -> DeviceEvents {
    let mut ev = DeviceEvents::new();
    block_on(bms.poll(Millis::new(now), &mut ev));
    ev
}

fn texts(ev: &DeviceEvents) -> Vec<String> {
    ev.iter().map(|e| e.event.to_string()).collect()
}

#[test]
fn rate_limiter_min_interval_and_rolling_budget() {
    let mut r = RateLimiter::new(Millis::from_secs(60), 3, Millis::from_secs(3600)).unwrap();
    assert!(r.try_acquire(Millis::ZERO).is_ok());
    let e = r.try_acquire(Millis::from_secs(30)).unwrap_err();
    assert_eq!(e.limit, RateLimit::MinInterval);
    assert_eq!(e.next_allowed, Millis::from_secs(60));
    assert!(r.try_acquire(Millis::from_secs(60)).is_ok());
    assert!(r.try_acquire(Millis::from_secs(120)).is_ok());
    let e = r.try_acquire(Millis::from_secs(180)).unwrap_err();
    assert_eq!(e.limit, RateLimit::Budget);
    assert_eq!(e.next_allowed, Millis::from_secs(3600), "the oldest stamp leaves the window then");
    assert!(r.try_acquire(Millis::from_secs(3599)).is_err());
    assert!(r.try_acquire(Millis::from_secs(3600)).is_ok());
    assert!(e.to_string().contains("budget"), "{e}");
}

#[test]
fn rate_limiter_config_errors_name_the_field() {
    let e = RateLimiter::new(Millis::ZERO, 0, Millis::from_secs(1)).unwrap_err();
    assert_eq!(e.field, "budget");
    let e = RateLimiter::new(Millis::ZERO, 10, Millis::ZERO).unwrap_err();
    assert_eq!(e.field, "window");
}

#[test]
fn config_errors_name_field_and_value() {
    let e = SafeBmsConfig { cells_in_series: 0, ..SafeBmsConfig::default() }.validate().unwrap_err();
    assert!(e.to_string().contains("cells_in_series") && e.to_string().contains('0'), "{e}");
    let e = SafeBmsConfig { reset_budget: 0, ..SafeBmsConfig::default() }.validate().unwrap_err();
    assert_eq!(e.field, "reset_budget");
    let e = SafeBmsConfig { comm_loss_fallback: Millis::ZERO, ..SafeBmsConfig::default() }
        .validate()
        .unwrap_err();
    assert_eq!(e.field, "comm_loss_fallback");
    assert!(SafeBms::new(
        MockBms::healthy(),
        SafeBmsConfig { plausibility_tolerance: Percent::ZERO, ..SafeBmsConfig::default() }
    )
    .is_err());
}

#[test]
fn healthy_reading_is_good_with_the_read_time() {
    let mut bms = SafeBms::new(MockBms::healthy(), SafeBmsConfig::default()).unwrap();
    let ev = poll(&mut bms, 1000);
    assert!(ev.is_empty(), "{:?}", texts(&ev));
    let s = signals(&bms, Millis::new(1000));
    assert_eq!(s.pack_voltage.value_at(Millis::new(1000)), Some(ems_core::volts!(52.8)));
    assert_eq!(s.soc.value_at(Millis::new(1000)), Some(ems_core::percent!(50.0)));
    assert_eq!(s.bms_charge_limit.value_at(Millis::new(1000)), Some(ems_core::watts!(5000.0)));
    assert_eq!(s.bms_ready.value_at(Millis::new(1000)), Some(true));
    // Goes stale naturally through the max age.
    assert_eq!(s.pack_voltage.quality_at(Millis::new(4000)), Quality::Stale);
}

#[test]
fn implausible_cell_voltage_is_rejected_naming_field_and_value() {
    let mock = MockBms::healthy();
    let mut r = healthy_bms_reading();
    r.cell_voltage_max = ems_core::volts!(9.9);
    mock.set(Ok(r));
    let mut bms = SafeBms::new(mock, SafeBmsConfig::default()).unwrap();
    let ev = poll(&mut bms, 0);
    let t = texts(&ev);
    assert!(
        t.iter().any(|s| s == "BMS cell_voltage_max 9.900 V implausible: pack 52.8 V for 16 cells"),
        "{t:?}"
    );
    let s = signals(&bms, Millis::ZERO);
    assert_eq!(s.cell_voltage_max.quality_at(Millis::ZERO), Quality::Invalid);
    assert_eq!(s.cell_voltage_min.quality_at(Millis::ZERO), Quality::Invalid);
    assert_eq!(s.pack_voltage.quality_at(Millis::ZERO), Quality::Invalid);
    // Unrelated fields stay good.
    assert_eq!(s.cell_temp_max.quality_at(Millis::ZERO), Quality::Good);
}

#[test]
fn pack_voltage_within_tolerance_passes_and_outside_fails() {
    let mock = MockBms::healthy();
    let mut r = healthy_bms_reading();
    r.pack_voltage = Volts::saturating(52.8 * 1.02); // 2 % off: inside 3 %
    mock.set(Ok(r));
    let mut bms = SafeBms::new(mock.clone(), SafeBmsConfig::default()).unwrap();
    assert!(poll(&mut bms, 0).is_empty());
    r.pack_voltage = Volts::saturating(52.8 * 0.9);
    mock.set(Ok(r));
    let ev = poll(&mut bms, 100);
    assert!(ev.any(|e| matches!(
        e,
        DeviceEvent::ReadingRejected { field: "cell_voltage_min" | "cell_voltage_max", .. }
    )));
    assert_eq!(signals(&bms, Millis::new(100)).pack_voltage.quality_at(Millis::new(100)), Quality::Invalid);
}

#[test]
fn min_above_max_is_rejected() {
    let mock = MockBms::healthy();
    let mut r = healthy_bms_reading();
    r.cell_temp_min = ems_core::celsius!(40.0);
    mock.set(Ok(r));
    let mut bms = SafeBms::new(mock, SafeBmsConfig::default()).unwrap();
    let ev = poll(&mut bms, 0);
    let t = texts(&ev);
    assert!(t.iter().any(|s| s.contains("cell_temp_min 40.0 °C") && s.contains("26.0 °C")), "{t:?}");
    let s = signals(&bms, Millis::ZERO);
    assert_eq!(s.cell_temp_min.quality_at(Millis::ZERO), Quality::Invalid);
    assert_eq!(s.cell_temp_max.quality_at(Millis::ZERO), Quality::Invalid);
    assert_eq!(s.cell_voltage_min.quality_at(Millis::ZERO), Quality::Good);
}

#[test]
fn soc_jump_is_rejected_and_a_plausible_change_is_not() {
    let mock = MockBms::healthy();
    let mut bms = SafeBms::new(mock.clone(), SafeBmsConfig::default()).unwrap();
    assert!(poll(&mut bms, 0).is_empty());
    let mut r = healthy_bms_reading();
    r.soc = ems_core::percent!(51.0); // 1 % in 1 s: allowed
    mock.set(Ok(r));
    assert!(poll(&mut bms, 1000).is_empty());
    r.soc = ems_core::percent!(80.0); // 29 % in 1 s: a jump
    mock.set(Ok(r));
    let ev = poll(&mut bms, 2000);
    let t = texts(&ev);
    assert!(t.iter().any(|s| s.starts_with("BMS soc 80.0 % rejected as a jump from 51.0 %")), "{t:?}");
    assert_eq!(signals(&bms, Millis::new(2000)).soc.quality_at(Millis::new(2000)), Quality::Invalid);
    // 80 % stays rejected until enough time has passed to make it plausible (29 s at 1 %/s).
    assert!(!poll(&mut bms, 10_000).is_empty());
    assert!(poll(&mut bms, 31_000).is_empty());
    assert_eq!(
        signals(&bms, Millis::new(31_000)).soc.value_at(Millis::new(31_000)),
        Some(ems_core::percent!(80.0))
    );
}

#[test]
fn stuck_cell_sensor_under_load_is_marked_invalid_and_not_at_rest() {
    let mock = MockBms::healthy();
    let mut r = healthy_bms_reading();
    r.pack_current = ems_core::amps!(20.0);
    mock.set(Ok(r));
    let mut bms = SafeBms::new(mock.clone(), SafeBmsConfig::default()).unwrap();
    // 9 minutes unchanged under load: fine.
    let mut t = 0;
    while t <= 540_000 {
        assert!(poll(&mut bms, t).is_empty(), "at {t}");
        t += 10_000;
    }
    // Past 10 minutes: all four cell signals reported stuck.
    let mut stuck_events = 0;
    while t <= 620_000 {
        stuck_events += poll(&mut bms, t)
            .iter()
            .filter(|e| {
                matches!(
                    e.event,
                    DeviceEvent::ReadingRejected {
                        why: ems_devices::wrappers::events::Rejection::Stuck { .. },
                        ..
                    }
                )
            })
            .count();
        t += 10_000;
    }
    assert_eq!(stuck_events, 4, "each stuck signal reported once");
    let s = signals(&bms, Millis::new(620_000));
    assert_eq!(s.cell_voltage_max.quality_at(Millis::new(620_000)), Quality::Invalid);
    assert_eq!(s.cell_temp_min.quality_at(Millis::new(620_000)), Quality::Invalid);
    assert_eq!(s.pack_current.quality_at(Millis::new(620_000)), Quality::Good);
    // A change of one value clears that signal.
    r.cell_voltage_max = ems_core::volts!(3.311);
    mock.set(Ok(r));
    let _ = poll(&mut bms, 630_000);
    assert_eq!(
        signals(&bms, Millis::new(630_000)).cell_voltage_max.quality_at(Millis::new(630_000)),
        Quality::Good
    );

    // At rest an unchanged reading is never stuck.
    let mock = MockBms::healthy();
    let mut bms = SafeBms::new(mock, SafeBmsConfig::default()).unwrap();
    for k in 0..100 {
        assert!(poll(&mut bms, k * 60_000).is_empty());
    }
}

#[test]
fn comm_loss_falls_back_to_zero_limits_after_the_timeout_and_not_before() {
    let mock = MockBms::healthy();
    let mut bms = SafeBms::new(mock.clone(), SafeBmsConfig::default()).unwrap();
    let _ = poll(&mut bms, 0);
    mock.set(Err(COMM));
    let ev = poll(&mut bms, 100);
    assert!(ev.any(|e| matches!(e, DeviceEvent::ReadFailed { .. })));
    // 5 s after the last good read: not yet.
    let _ = poll(&mut bms, 5000);
    assert!(!bms.fallback_active(Millis::new(5000)));
    let s = signals(&bms, Millis::new(5000));
    assert_eq!(s.bms_charge_limit.value_at(Millis::new(5000)), Some(ems_core::watts!(5000.0)));
    // Past 5 s: good zero limits, everything else invalid.
    let ev = poll(&mut bms, 5100);
    assert!(ev.any(|e| matches!(e, DeviceEvent::CommLost { .. })), "{:?}", texts(&ev));
    let now = Millis::new(5100);
    let s = signals(&bms, now);
    assert_eq!(s.bms_charge_limit.value_at(now), Some(Watts::ZERO));
    assert_eq!(s.bms_discharge_limit.value_at(now), Some(Watts::ZERO));
    assert_eq!(s.soc.quality_at(now), Quality::Invalid);
    assert_eq!(s.pack_voltage.quality_at(now), Quality::Invalid);
    assert_eq!(s.bms_ready.quality_at(now), Quality::Invalid);
    // Restored.
    mock.set(Ok(healthy_bms_reading()));
    let ev = poll(&mut bms, 6000);
    assert!(ev.any(|e| matches!(e, DeviceEvent::CommRestored { .. })));
    assert_eq!(
        signals(&bms, Millis::new(6000)).bms_charge_limit.value_at(Millis::new(6000)),
        Some(ems_core::watts!(5000.0))
    );
}

#[test]
fn never_read_bms_falls_back_after_the_timeout() {
    let mock = MockBms::default(); // every read fails
    let mut bms = SafeBms::new(mock, SafeBmsConfig::default()).unwrap();
    let _ = poll(&mut bms, 0);
    assert_eq!(signals(&bms, Millis::ZERO).bms_charge_limit.quality_at(Millis::ZERO), Quality::Invalid);
    let _ = poll(&mut bms, 6000);
    assert_eq!(
        signals(&bms, Millis::new(6000)).bms_charge_limit.value_at(Millis::new(6000)),
        Some(Watts::ZERO)
    );
}

#[test]
fn reset_alarms_is_rate_limited() {
    let mock = MockBms::healthy();
    let mut bms = SafeBms::new(mock.clone(), SafeBmsConfig::default()).unwrap();
    assert!(block_on(bms.reset_alarms(Millis::ZERO)).is_ok());
    let e = block_on(bms.reset_alarms(Millis::from_secs(30))).unwrap_err();
    assert!(matches!(e, WrapperError::RateLimited(r) if r.next_allowed == Millis::from_secs(60)), "{e}");
    // 10 per hour: 9 more at 60 s spacing, then refused until the hour is over.
    for k in 1..10 {
        assert!(block_on(bms.reset_alarms(Millis::from_secs(60 * k))).is_ok(), "reset {k}");
    }
    let e = block_on(bms.reset_alarms(Millis::from_secs(660))).unwrap_err();
    assert!(matches!(e, WrapperError::RateLimited(r) if r.limit == RateLimit::Budget));
    assert_eq!(mock.0.borrow().resets, 10);
    assert!(block_on(bms.reset_alarms(Millis::from_secs(3600))).is_ok());
}

#[test]
fn cell_temperature_jump_is_rejected_and_a_plausible_rise_is_not() {
    let mock = MockBms::healthy();
    let mut bms = SafeBms::new(mock.clone(), SafeBmsConfig::default()).unwrap();
    assert!(poll(&mut bms, 0).is_empty());
    let mut r = healthy_bms_reading();
    let base = r.cell_temp_max.get();
    // +1 °C in 1 s: a fast but possible rise is accepted.
    r.cell_temp_max = Celsius::saturating(base + 1.0);
    mock.set(Ok(r));
    assert!(poll(&mut bms, 1000).is_empty());
    // +40 °C in the next second: a sensor or bus fault, rejected and marked invalid.
    r.cell_temp_max = Celsius::saturating(base + 41.0);
    mock.set(Ok(r));
    let t = texts(&poll(&mut bms, 2000));
    assert!(t.iter().any(|s| s.contains("cell_temp_max") && s.contains("jump")), "{t:?}");
    let b = signals(&bms, Millis::new(2000));
    assert_eq!(b.cell_temp_max.quality_at(Millis::new(2000)), Quality::Invalid);
    assert_eq!(b.cell_temp_min.quality_at(Millis::new(2000)), Quality::Invalid);
}

#[test]
fn an_out_of_range_read_invalidates_every_bms_signal_at_once() {
    use ems_devices::traits::ErrorKind;
    let mock = MockBms::healthy();
    let mut bms = SafeBms::new(mock.clone(), SafeBmsConfig::default()).unwrap();
    let _ = poll(&mut bms, 0);
    // The driver refused a SOC register of 250 % (SunSpecError::Invalid, kind OutOfRange).
    mock.set(Err(wrappers_mocks::MockError(ErrorKind::OutOfRange)));
    let ev = poll(&mut bms, 100);
    assert!(ev.any(|e| matches!(e, DeviceEvent::ReadFailed { kind: ErrorKind::OutOfRange, .. })));
    let now = Millis::new(100);
    let s = signals(&bms, now);
    for q in [
        s.soc.quality_at(now),
        s.cell_voltage_min.quality_at(now),
        s.pack_voltage.quality_at(now),
        s.bms_charge_limit.quality_at(now),
        s.bms_discharge_limit.quality_at(now),
        s.bms_ready.quality_at(now),
    ] {
        assert_eq!(q, Quality::Invalid, "not the last good value, not 100 %");
    }
    // A good read brings them back.
    mock.set(Ok(healthy_bms_reading()));
    let _ = poll(&mut bms, 200);
    assert_eq!(signals(&bms, Millis::new(200)).soc.quality_at(Millis::new(200)), Quality::Good);
}

#[test]
fn a_dead_link_read_lets_the_signals_go_stale_through_their_max_age() {
    let mock = MockBms::healthy();
    let mut bms = SafeBms::new(mock.clone(), SafeBmsConfig::default()).unwrap();
    let _ = poll(&mut bms, 0);
    mock.set(Err(COMM));
    let _ = poll(&mut bms, 100);
    let s = signals(&bms, Millis::new(100));
    assert_eq!(s.soc.quality_at(Millis::new(100)), Quality::Good, "the last value, with its own time");
    assert_eq!(s.soc.taken_at(), Millis::ZERO);
    let stale = Millis::ZERO.plus(s.soc.max_age()).plus(Millis::new(1));
    assert_eq!(s.soc.quality_at(stale), Quality::Stale);
}

/// A BMS behind a cache that hands out a reading taken `age` ago (as `Polled` does).
#[derive(Debug)]
struct Cached(MockBms, Millis);

impl ems_devices::traits::Bms for Cached {
    type Error = wrappers_mocks::MockError;
    async fn read(&mut self) -> Result<ems_devices::traits::BmsReading, Self::Error> {
        self.0.read().await
    }
    async fn reset_alarms(&mut self) -> Result<(), Self::Error> {
        self.0.reset_alarms().await
    }
    fn reading_age(&self) -> Millis {
        self.1
    }
}

#[test]
fn a_reused_reading_keeps_the_time_it_was_read() {
    let mut bms =
        SafeBms::new(Cached(MockBms::healthy(), Millis::new(1500)), SafeBmsConfig::default()).unwrap();
    let mut ev = DeviceEvents::new();
    block_on(bms.poll(Millis::new(10_000), &mut ev));
    let mut b = Snapshot::unknown(Watts::ZERO).battery;
    bms.fill(Millis::new(10_000), &mut b);
    assert_eq!(b.soc.taken_at(), Millis::new(8_500), "stamped when read, not when reused");
    assert_eq!(bms.last_good_read(), Some(Millis::new(8_500)));
}
