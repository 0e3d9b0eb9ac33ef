//! `SafeEvse`: config validation naming field and value, clamping to 0 or min..max, read-back,
//! measured current above the limit (the "ignores 0 A" fault), the lease with its fallback
//! current, the write budget and communication loss.
#![allow(clippy::unwrap_used)] // tests fail loudly

use ems_core::{amps, Millis, Percent, WattHours};
use ems_devices::evse::events::EvseClampedBy;
use ems_devices::evse::safe::EvseFault;
use ems_devices::evse::sim::{SimEv, SimEvse, SimEvseFault};
use ems_devices::evse::{DeciAmps, EvseCapabilities, EvseEvent, Phases, SafeEvse, SafeEvseConfig};
use pollster::block_on;

fn a(x: f32) -> DeciAmps {
    DeciAmps::try_from_amps(x).unwrap()
}

fn ms(x: u64) -> Millis {
    Millis::new(x)
}

fn sim() -> SimEvse {
    let mut s =
        SimEvse::new(EvseCapabilities { min_current: a(6.0), max_current: a(32.0), phase_switching: false });
    s.plug(SimEv {
        capacity: WattHours::try_new(50_000.0).unwrap(),
        soc: Percent::try_new(30.0).unwrap(),
        onboard_max: a(32.0),
        onboard_phases: Phases::Three,
        departure: None,
    });
    s
}

fn config() -> SafeEvseConfig {
    SafeEvseConfig {
        verify_window: ms(2000),
        lease: ms(10_000),
        write_min_interval: ms(1000),
        write_budget: 3,
        write_window: ms(60_000),
        ..SafeEvseConfig::default()
    }
}

/// One cycle: the physics advance, then the wrapper polls.
fn cycle(safe: &mut SafeEvse<SimEvse>, now: Millis) {
    safe.device_mut().advance(ms(500));
    let _ = block_on(safe.poll(now));
}

#[test]
fn config_errors_name_the_field_and_value() {
    let caps = sim();
    let cases = [
        (SafeEvseConfig { max_current: amps!(20.0), ..config() }, "max_current", 20.0),
        (SafeEvseConfig { circuit_limit: amps!(0.0), ..config() }, "circuit_limit", 0.0),
        (SafeEvseConfig { fuse_limit: amps!(-1.0), ..config() }, "fuse_limit", -1.0),
        (SafeEvseConfig { fuse_limit: amps!(10.0), ..config() }, "max_current", 16.0),
        (SafeEvseConfig { min_current: amps!(0.0), ..config() }, "min_current", 0.0),
        (SafeEvseConfig { fallback_current: amps!(3.0), ..config() }, "fallback_current", 3.0),
        (SafeEvseConfig { tolerance: amps!(0.0), ..config() }, "tolerance", 0.0),
        (SafeEvseConfig { lease: ms(0), ..config() }, "lease", 0.0),
    ];
    for (cfg, field, value) in cases {
        let e = SafeEvse::new(caps.clone(), cfg).unwrap_err();
        assert_eq!((e.field, e.value), (field, value), "{e}");
        assert!(e.to_string().contains(field));
    }
    // The charger's own rating narrows the configured maximum.
    let small =
        SimEvse::new(EvseCapabilities { min_current: a(6.0), max_current: a(10.0), phase_switching: false });
    assert_eq!(SafeEvse::new(small, config()).unwrap().limits().max, a(10.0));
}

#[test]
fn every_command_is_clamped_to_zero_or_min_to_max() {
    let mut safe =
        SafeEvse::new(sim(), SafeEvseConfig { write_min_interval: ms(0), write_budget: 100, ..config() })
            .unwrap();
    let cases = [
        (0.0, 0.0),
        (3.0, 0.0),
        (5.9, 0.0),
        (6.0, 6.0),
        (12.3, 12.3),
        (16.0, 16.0),
        (40.0, 16.0),
        (800.0, 16.0),
    ];
    for (i, (req, want)) in cases.into_iter().enumerate() {
        let now = ms(1000 * (u64::try_from(i).unwrap() + 1));
        assert_eq!(block_on(safe.command(now, a(req))).unwrap(), a(want), "request {req} A");
        assert_eq!(safe.written(), Some(a(want)));
    }
    let events = safe.drain_events();
    assert!(events
        .iter()
        .any(|(_, e)| matches!(e, EvseEvent::Clamped { by: EvseClampedBy::BelowMinimum, .. })));
    assert!(events.iter().any(|(_, e)| matches!(e, EvseEvent::Clamped { by: EvseClampedBy::Maximum, .. })));
}

#[test]
fn a_charger_that_ignores_zero_is_detected_disabled_and_latched() {
    let mut safe = SafeEvse::new(sim(), config()).unwrap();
    safe.device_mut().set_fault(Some(SimEvseFault::IgnoresZero));
    block_on(safe.command(ms(0), a(16.0))).unwrap();
    cycle(&mut safe, ms(500));
    block_on(safe.command(ms(1000), DeciAmps::ZERO)).unwrap();
    let mut t = 1000;
    while safe.fault().is_none() && t < 10_000 {
        t += 500;
        cycle(&mut safe, ms(t));
    }
    assert_eq!(safe.fault(), Some(EvseFault::ZeroIgnored));
    assert!(t >= 3000, "not before the verification window ({t} ms)");
    let events = safe.drain_events();
    assert!(
        events.iter().any(|(_, e)| matches!(e, EvseEvent::ZeroIgnored { measured } if measured.get() > 15.0)),
        "{events:?}"
    );
    assert!(events.iter().any(|(_, e)| *e == EvseEvent::DisabledAfterFault));
    // Disabled: the car stops even though the charger ignores 0 A.
    cycle(&mut safe, ms(t + 500));
    assert_eq!(block_on(safe.poll(ms(t + 600))).unwrap().power.get(), 0.0);
    // Latched: a new command stays at 0 A until acknowledged.
    assert_eq!(block_on(safe.command(ms(t + 2000), a(10.0))).unwrap(), DeciAmps::ZERO);
    block_on(safe.acknowledge_fault()).unwrap();
    assert_eq!(safe.fault(), None);
}

#[test]
fn a_limit_not_applied_is_reported() {
    let mut safe = SafeEvse::new(sim(), config()).unwrap();
    block_on(safe.command(ms(0), a(16.0))).unwrap();
    cycle(&mut safe, ms(500));
    // The charger reads back the new 8 A but keeps 16 A: over-current.
    safe.device_mut().set_fault(Some(SimEvseFault::IgnoresLimit));
    block_on(safe.command(ms(1000), a(8.0))).unwrap();
    let mut t = 1000;
    while safe.fault().is_none() && t < 10_000 {
        t += 500;
        cycle(&mut safe, ms(t));
    }
    assert_eq!(safe.fault(), Some(EvseFault::OverCurrent));
    let events = safe.drain_events();
    assert!(events
        .iter()
        .any(|(_, e)| matches!(e, EvseEvent::OverCurrent { commanded, .. } if *commanded == a(8.0))));
}

#[test]
fn the_lease_falls_back_when_commands_stop() {
    let mut safe = SafeEvse::new(sim(), config()).unwrap();
    block_on(safe.command(ms(0), a(16.0))).unwrap();
    cycle(&mut safe, ms(9_000));
    assert!(!safe.in_fallback());
    cycle(&mut safe, ms(10_000));
    assert!(safe.in_fallback());
    assert_eq!(safe.written(), Some(a(6.0)));
    let events = safe.drain_events();
    assert!(events.iter().any(|(_, e)| *e == EvseEvent::LeaseExpired { fallback: a(6.0) }));
    cycle(&mut safe, ms(10_500));
    let r = block_on(safe.poll(ms(10_600))).unwrap();
    assert!((r.max_phase_current().get() - 6.0).abs() < 1e-3);
    // A new command renews the lease.
    block_on(safe.command(ms(11_000), a(16.0))).unwrap();
    assert!(!safe.in_fallback());
}

#[test]
fn raises_are_budgeted_decreases_always_written() {
    let mut safe = SafeEvse::new(sim(), config()).unwrap();
    assert_eq!(block_on(safe.command(ms(0), a(8.0))).unwrap(), a(8.0));
    // Too soon after the last write: the raise is held, the previous limit kept.
    assert_eq!(block_on(safe.command(ms(200), a(10.0))).unwrap(), a(8.0));
    // A decrease is written at once.
    assert_eq!(block_on(safe.command(ms(300), a(6.0))).unwrap(), a(6.0));
    assert_eq!(block_on(safe.command(ms(2000), a(12.0))).unwrap(), a(12.0));
    // Budget of 3 per minute used up (8 A, the decrease, 12 A).
    assert_eq!(block_on(safe.command(ms(4000), a(14.0))).unwrap(), a(12.0));
    assert_eq!(block_on(safe.command(ms(61_000), a(14.0))).unwrap(), a(14.0));
    let events = safe.drain_events();
    assert_eq!(events.iter().filter(|(_, e)| matches!(e, EvseEvent::WriteSkipped { .. })).count(), 2);
}

#[test]
fn communication_loss_is_reported_and_restored() {
    let mut safe = SafeEvse::new(sim(), config()).unwrap();
    block_on(safe.command(ms(0), a(10.0))).unwrap();
    assert!(block_on(safe.poll(ms(100))).is_ok());
    safe.device_mut().set_fault(Some(SimEvseFault::Offline));
    assert!(block_on(safe.poll(ms(1000))).is_err());
    assert!(block_on(safe.poll(ms(2200))).is_err());
    assert!(block_on(safe.command(ms(2300), a(6.0))).is_err());
    safe.device_mut().set_fault(None);
    assert!(block_on(safe.poll(ms(3000))).is_ok());
    let events = safe.drain_events();
    assert!(events.iter().any(|(_, e)| matches!(e, EvseEvent::CommLost { .. })), "{events:?}");
    assert!(events.iter().any(|(_, e)| *e == EvseEvent::CommRestored));
    assert!(events.iter().any(|(_, e)| matches!(e, EvseEvent::WriteFailed { .. })));
}

#[test]
fn phases_switch_only_while_charging_is_disabled_through_the_wrapper() {
    let mut s = sim();
    s = {
        let ev = s.unplug().unwrap();
        let mut c = SimEvse::new(EvseCapabilities {
            min_current: a(6.0),
            max_current: a(32.0),
            phase_switching: true,
        });
        c.plug(ev);
        c
    };
    let mut safe = SafeEvse::new(s, config()).unwrap();
    // Never disabled through the wrapper: refused.
    let err = block_on(safe.set_phases(Phases::One)).unwrap_err();
    assert!(err.to_string().contains("charging must be disabled first"), "{err}");
    block_on(safe.set_enabled(true)).unwrap();
    assert!(block_on(safe.set_phases(Phases::One)).is_err());
    block_on(safe.set_enabled(false)).unwrap();
    block_on(safe.set_phases(Phases::One)).unwrap();
    assert_eq!(block_on(safe.poll(ms(0))).unwrap().phases, Phases::One);
}
