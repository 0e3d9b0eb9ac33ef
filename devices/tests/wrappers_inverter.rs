//! `SafeInverter`: clamp, ramp, deadband, flash budget, read-back verification and the control
//! lease.
#![allow(clippy::unwrap_used)]

mod wrappers_mocks;

use ems_control::{Command, CommandClass, RampRate};
use ems_core::{ContactorCommand, Millis, TripReason, Watts};
use ems_devices::traits::{ControlSource, InverterCapabilities};
use ems_devices::wrappers::events::{ClampedBy, SkipReason};
use ems_devices::wrappers::inverter::{
    ApplyOutcome, SafeInverter, SafeInverterConfig, Throttle, RAMP_MARGIN,
};
use ems_devices::wrappers::{DeviceEvent, DeviceEvents};
use pollster::block_on;
use wrappers_mocks::{Clock, MockInverter, ORIGINAL};

const BIG: Watts = ems_core::watts!(1.0e6);

struct Rig {
    clock: Clock,
    mock: MockInverter,
    inv: SafeInverter<MockInverter>,
}

fn rig(caps: InverterCapabilities, config: SafeInverterConfig) -> Rig {
    let clock = Clock::default();
    let mock = MockInverter::new(&clock, caps);
    let mut inv = SafeInverter::new(mock.clone(), config).unwrap();
    let mut ev = DeviceEvents::new();
    block_on(inv.poll(clock.now(), &mut ev)).unwrap();
    // A zero cycle first, as the gateway's first cycle would be.
    let _ = block_on(inv.apply(clock.now(), &cmd(Watts::ZERO, BIG, BIG), &mut ev));
    Rig { clock, mock, inv }
}

fn timer_rig() -> Rig {
    rig(InverterCapabilities { revert_timer: true, setpoint_in_flash: false }, SafeInverterConfig::default())
}

impl Rig {
    /// One cycle: advance, poll, apply.
    fn cycle(&mut self, dt: u64, sp: f32, max_c: f32, max_d: f32) -> (ApplyOutcome, DeviceEvents) {
        let now = self.clock.advance(dt);
        let mut ev = DeviceEvents::new();
        let _ = block_on(self.inv.poll(now, &mut ev));
        let command = cmd(Watts::saturating(sp), Watts::saturating(max_c), Watts::saturating(max_d));
        let out = block_on(self.inv.apply(now, &command, &mut ev));
        (out, ev)
    }

    /// One cycle with a grid-service command (its own ramp, no deadband or budget).
    fn grid_cycle(&mut self, dt: u64, sp: f32, ramp: Option<RampRate>) -> (ApplyOutcome, DeviceEvents) {
        let now = self.clock.advance(dt);
        let mut ev = DeviceEvents::new();
        let _ = block_on(self.inv.poll(now, &mut ev));
        let command = Command::for_test(
            Watts::saturating(sp),
            (BIG, BIG),
            ContactorCommand::Close,
            ramp,
            CommandClass::GridService,
        );
        let out = block_on(self.inv.apply(now, &command, &mut ev));
        (out, ev)
    }
}

/// A comfort command at a site ramp of 4 kW/s: the wrapper's guard is 5 kW/s
/// ([`RAMP_MARGIN`] = 1.25), 500 W per 100 ms cycle.
fn cmd(setpoint: Watts, max_charge: Watts, max_discharge: Watts) -> Command {
    let ramp = Some(RampRate::per_second(ems_core::watts!(4000.0)));
    Command::for_test(
        setpoint,
        (max_charge, max_discharge),
        ContactorCommand::Close,
        ramp,
        CommandClass::Comfort,
    )
}

#[test]
fn the_wrapper_ramp_derives_from_the_command_and_its_lag_is_reported() {
    assert_eq!(RAMP_MARGIN, 1.25);
    let mut r = timer_rig();
    let (out, _) = r.cycle(100, 3000.0, 1.0e6, 1.0e6);
    assert_eq!(out.written, Some(ems_core::watts!(500.0)));
    assert_eq!(out.throttled, Some(Throttle::Ramp), "the lag below the command is not silent");
}

#[test]
fn a_grid_service_command_bypasses_deadband_and_steps_without_ramp() {
    let mut r = timer_rig();
    let (out, _) = r.cycle(100, 400.0, 1.0e6, 1.0e6);
    assert_eq!(out.written, Some(ems_core::watts!(400.0)));
    // A 10 W change is inside the 20 W deadband for comfort …
    let (out, _) = r.cycle(100, 410.0, 1.0e6, 1.0e6);
    assert_eq!(out.written, None);
    assert_eq!(out.throttled, Some(Throttle::Skipped(SkipReason::Deadband)));
    // … but a grid-service response is written as it is.
    let (out, _) = r.grid_cycle(100, 410.0, None);
    assert_eq!(out.written, Some(ems_core::watts!(410.0)));
    // Without its own ramp it steps (bounded by the rating, 5 kW).
    let (out, _) = r.grid_cycle(100, 4000.0, None);
    assert_eq!(out.written, Some(ems_core::watts!(4000.0)));
    assert_eq!(out.throttled, None);
    let (out, _) = r.grid_cycle(100, 9000.0, None);
    assert_eq!(out.written, Some(ems_core::watts!(5000.0)), "never beyond the rating");
    // With its own ramp, that ramp (× margin) applies.
    let ramp = Some(RampRate::per_second(ems_core::watts!(8000.0)));
    let (out, _) = r.grid_cycle(100, -5000.0, ramp);
    assert_eq!(out.written, Some(ems_core::watts!(-1000.0)));
}

#[test]
fn config_errors_name_the_field() {
    let e =
        SafeInverterConfig { readback_cycles: 0, ..SafeInverterConfig::default() }.validate().unwrap_err();
    assert_eq!(e.field, "readback_cycles");
    let e =
        SafeInverterConfig { flash_write_budget: 0, ..SafeInverterConfig::default() }.validate().unwrap_err();
    assert_eq!(e.field, "flash_write_budget");
}

#[test]
fn clamps_to_rating_and_envelope_with_an_event_naming_the_bound() {
    let mut r = timer_rig();
    let (out, ev) = r.cycle(100, 9000.0, 1.0e6, 1.0e6);
    assert!(out.target <= ems_core::watts!(5000.0));
    assert!(ev.any(|e| matches!(e, DeviceEvent::SetpointClamped { by: ClampedBy::Rating, written, .. } if *written == ems_core::watts!(5000.0))));
    // A command cannot carry a set-point outside its own bounds (its constructor clamps it);
    // the wrapper's bound check stays as a second line behind it.
    assert_eq!(
        cmd(ems_core::watts!(-3000.0), ems_core::watts!(1000.0), BIG).setpoint(),
        ems_core::watts!(-1000.0)
    );
    let (out, ev) = r.cycle(100, -3000.0, 1000.0, 1.0e6);
    assert!(out.target >= ems_core::watts!(-1000.0));
    assert!(!ev.any(|e| matches!(e, DeviceEvent::SetpointClamped { by: ClampedBy::MaxCharge, .. })));
    // Written values never exceed the bounds.
    for w in r.mock.setpoint_writes() {
        assert!(w.get() <= 5000.0);
    }
    let (out, _) = r.cycle(100, 2000.0, 1.0e6, 0.0);
    assert_eq!(out.target, Watts::ZERO, "a zero discharge bound allows nothing");
}

#[test]
fn ramps_away_from_zero_and_drops_toward_zero_at_once() {
    let mut r = timer_rig();
    // 5000 W/s: 500 W per 100 ms cycle.
    let (out, _) = r.cycle(100, 3000.0, 1.0e6, 1.0e6);
    assert_eq!(out.written, Some(ems_core::watts!(500.0)));
    let (out, _) = r.cycle(100, 3000.0, 1.0e6, 1.0e6);
    assert_eq!(out.written, Some(ems_core::watts!(1000.0)));
    // Reduction toward zero: at once.
    let (out, _) = r.cycle(100, 200.0, 1.0e6, 1.0e6);
    assert_eq!(out.written, Some(ems_core::watts!(200.0)));
    // Sign reversal: straight through zero, then ramp.
    let (out, _) = r.cycle(100, -3000.0, 1.0e6, 1.0e6);
    assert_eq!(out.written, Some(ems_core::watts!(-500.0)));
    // An envelope that shrinks below the held value is applied at once.
    let (out, _) = r.cycle(100, -3000.0, 100.0, 1.0e6);
    assert_eq!(out.written, Some(ems_core::watts!(-100.0)));
}

#[test]
fn deadband_skips_small_changes_but_not_a_move_to_zero() {
    let mut r = timer_rig();
    let _ = r.cycle(100, 400.0, 1.0e6, 1.0e6);
    let n = r.mock.setpoint_writes().len();
    let (out, ev) = r.cycle(100, 410.0, 1.0e6, 1.0e6);
    assert_eq!(out.written, None);
    assert!(ev.any(|e| matches!(e, DeviceEvent::WriteSkipped { why: SkipReason::Deadband, .. })));
    assert_eq!(r.mock.setpoint_writes().len(), n);
    let (out, _) = r.cycle(100, 425.0, 1.0e6, 1.0e6);
    assert_eq!(out.written, Some(ems_core::watts!(425.0)));
    // A tiny set-point to zero is written.
    let _ = r.cycle(100, 10.0, 1.0e6, 1.0e6);
    let (out, _) = r.cycle(100, 0.0, 1.0e6, 1.0e6);
    assert_eq!(out.written, Some(Watts::ZERO));
}

#[test]
fn flash_budget_exhaustion_skips_increases_with_an_event_but_never_a_reduction() {
    let config = SafeInverterConfig {
        flash_write_budget: 3,
        flash_min_interval: Millis::ZERO,
        ..SafeInverterConfig::default()
    };
    let mut r = rig(InverterCapabilities { revert_timer: false, setpoint_in_flash: true }, config);
    let mut written = 0;
    let mut skipped_budget = false;
    for _ in 0..6 {
        let (out, ev) = r.cycle(100, 3000.0, 1.0e6, 1.0e6);
        written += usize::from(out.written.is_some());
        skipped_budget |= ev.any(|e| matches!(e, DeviceEvent::WriteSkipped { why: SkipReason::Budget, .. }));
    }
    assert_eq!(written, 3);
    assert!(skipped_budget);
    assert_eq!(r.mock.setpoint_writes().len(), 3);
    let held = r.inv.last_written();
    // A reduction goes through even with the budget used up.
    let (out, _) = r.cycle(100, 100.0, 1.0e6, 1.0e6);
    assert_eq!(out.written, Some(ems_core::watts!(100.0)));
    assert!(held > ems_core::watts!(100.0));
}

#[test]
fn ignored_setpoint_trips_after_n_polls_and_not_before() {
    let mut r = timer_rig();
    r.mock.with(|s| s.ignore_writes = true);
    let (out, _) = r.cycle(100, 400.0, 1.0e6, 1.0e6);
    assert_eq!(out.written, Some(ems_core::watts!(400.0)));
    // Polls 1 and 2 after the write: no trip yet (keep the set-point steady).
    for k in 1..=2 {
        let (out, ev) = r.cycle(100, 400.0, 1.0e6, 1.0e6);
        assert!(out.trips.is_empty(), "poll {k}");
        assert!(!ev.any(|e| matches!(e, DeviceEvent::SetpointNotApplied { .. })));
    }
    // Poll 3: the event at the poll, the trip in that cycle's apply.
    let (out, ev) = r.cycle(100, 400.0, 1.0e6, 1.0e6);
    assert!(ev.any(|e| matches!(e, DeviceEvent::SetpointNotApplied { commanded, read_back } if *commanded == ems_core::watts!(400.0) && *read_back == Watts::ZERO)));
    assert_eq!(out.trips.as_slice(), &[TripReason::SetpointNotApplied]);
}

#[test]
fn continuous_ramping_does_not_hide_an_ignoring_device() {
    let mut r = timer_rig();
    r.mock.with(|s| s.ignore_writes = true);
    let mut tripped = false;
    for k in 0..10u8 {
        let (out, _) = r.cycle(100, 100.0 * (f32::from(k) + 1.0) * 10.0, 1.0e6, 1.0e6);
        tripped |= out.trips.contains(&TripReason::SetpointNotApplied);
    }
    assert!(tripped);
}

#[test]
fn delayed_but_in_time_application_passes() {
    let mut r = timer_rig();
    r.mock.with(|s| s.apply_delay_reads = 2);
    for _ in 0..30 {
        let (out, ev) = r.cycle(100, 2000.0, 1.0e6, 1.0e6);
        assert!(out.trips.is_empty());
        assert!(!ev.any(|e| matches!(e, DeviceEvent::SetpointNotApplied { .. })));
    }
    assert_eq!(r.mock.with(|s| s.applied), ems_core::watts!(2000.0));
}

#[test]
fn lease_is_taken_with_the_revert_timer_armed_and_renewed_without_setpoint_changes() {
    let mut r = timer_rig();
    assert!(!r.inv.lease_active(r.clock.now()));
    let (_, ev) = r.cycle(100, 500.0, 1.0e6, 1.0e6);
    assert!(ev.any(
        |e| matches!(e, DeviceEvent::LeaseTaken { revert_timeout: Some(t) } if *t == Millis::from_secs(10))
    ));
    let s = r.mock.settings();
    assert_eq!(s.control, ControlSource::Remote);
    assert_eq!(s.revert_timeout, Some(Millis::from_secs(10)));
    assert_eq!(r.inv.remembered_settings(), Some(ORIGINAL));
    // 60 s at a constant set-point: no set-point writes, settings re-written every ~lease/3.
    let writes_before = r.mock.setpoint_writes().len();
    let mut renewals = 0;
    for _ in 0..600 {
        let (_, ev) = r.cycle(100, 500.0, 1.0e6, 1.0e6);
        renewals += ev.iter().filter(|e| matches!(e.event, DeviceEvent::LeaseRenewed)).count();
        assert!(r.inv.lease_active(r.clock.now()));
    }
    assert_eq!(r.mock.setpoint_writes().len(), writes_before);
    assert!((16..=20).contains(&renewals), "{renewals} renewals in 60 s");
    assert_eq!(r.mock.settings().control, ControlSource::Remote, "the device never reverted");
}

#[test]
fn device_found_local_is_re_taken_and_ramps_from_zero() {
    let mut r = timer_rig();
    for _ in 0..10 {
        let _ = r.cycle(100, 2000.0, 1.0e6, 1.0e6);
    }
    assert_eq!(r.inv.last_written(), ems_core::watts!(2000.0));
    // The EMS hangs for 11 s: the device reverts to Local and zero.
    let _ = r.clock.advance(11_000);
    assert_eq!(r.mock.settings().control, ControlSource::Local);
    let (out, ev) = r.cycle(100, 2000.0, 1.0e6, 1.0e6);
    assert!(
        ev.any(|e| matches!(e, DeviceEvent::LeaseLost)),
        "{:?}",
        ev.iter().map(|e| e.event.to_string()).collect::<Vec<_>>()
    );
    assert!(ev.any(|e| matches!(e, DeviceEvent::LeaseTaken { .. })));
    assert!(!ev.any(|e| matches!(e, DeviceEvent::SetpointNotApplied { .. })));
    assert!(out.trips.is_empty());
    assert!(out.target <= ems_core::watts!(500.0), "ramps from zero again: {:?}", out.target);
    let (out, _) = r.cycle(100, 2000.0, 1.0e6, 1.0e6);
    assert!(out.target <= ems_core::watts!(1000.0), "ramps from zero again: {:?}", out.target);
    assert_eq!(r.mock.settings().control, ControlSource::Remote);
    assert_eq!(r.inv.remembered_settings(), Some(ORIGINAL), "the original settings are kept");
}

#[test]
fn release_restores_the_exact_previous_settings() {
    let mut r = timer_rig();
    for _ in 0..20 {
        let _ = r.cycle(100, 3000.0, 1.0e6, 1.0e6);
    }
    let now = r.clock.advance(100);
    let mut ev = DeviceEvents::new();
    block_on(r.inv.release(now, &mut ev)).unwrap();
    assert!(ev.any(|e| matches!(e, DeviceEvent::LeaseReleased { settings_restored: true })));
    assert_eq!(r.mock.settings(), ORIGINAL);
    assert!(!r.inv.lease_active(now));
    // Zero first, then the settings.
    let writes = r.mock.0.borrow().writes.clone();
    let n = writes.len();
    assert!(matches!(writes[n - 2].1, wrappers_mocks::InvWrite::Setpoint(w) if w == Watts::ZERO));
    assert!(matches!(writes[n - 1].1, wrappers_mocks::InvWrite::Settings(s) if s == ORIGINAL));
}

#[test]
fn release_without_control_changes_nothing_and_failed_restore_can_be_retried() {
    let mut r = timer_rig();
    let mut ev = DeviceEvents::new();
    block_on(r.inv.release(r.clock.now(), &mut ev)).unwrap();
    assert!(r.mock.0.borrow().writes.is_empty());

    let _ = r.cycle(100, 1000.0, 1.0e6, 1.0e6);
    r.mock.with(|s| s.fail_writes = true);
    assert!(block_on(r.inv.release(r.clock.now(), &mut ev)).is_err());
    assert!(ev.any(|e| matches!(e, DeviceEvent::LeaseReleased { settings_restored: false })));
    r.mock.with(|s| s.fail_writes = false);
    block_on(r.inv.release(r.clock.now(), &mut ev)).unwrap();
    assert_eq!(r.mock.settings(), ORIGINAL);
}

#[test]
fn without_a_revert_timer_the_lease_arms_nothing() {
    let mut r = rig(InverterCapabilities::default(), SafeInverterConfig::default());
    let (_, ev) = r.cycle(100, 500.0, 1.0e6, 1.0e6);
    assert!(ev.any(|e| matches!(e, DeviceEvent::LeaseTaken { revert_timeout: None })));
    assert_eq!(r.mock.settings().revert_timeout, None);
    assert!(r.inv.lease_active(r.clock.now().plus(Millis::from_secs(100))));
}

#[test]
fn no_reading_means_no_rating_and_zero_power() {
    let clock = Clock::default();
    let mock = MockInverter::with_timer(&clock);
    let mut inv = SafeInverter::new(mock.clone(), SafeInverterConfig::default()).unwrap();
    let mut ev = DeviceEvents::new();
    let out = block_on(inv.apply(Millis::ZERO, &cmd(ems_core::watts!(1000.0), BIG, BIG), &mut ev));
    assert_eq!(out.target, Watts::ZERO);
    assert!(mock.setpoint_writes().is_empty());
}

#[test]
fn a_device_that_never_stays_in_remote_control_trips_instead_of_being_re_taken_forever() {
    let mut r = timer_rig();
    // The device acknowledges every write but applies nothing and stays in Local: the wrapper
    // finds the lease lost at each check and re-takes it; after three losses without one
    // confirmed set-point this is "set-point not applied", not an endless silent retry.
    r.mock.with(|s| {
        s.ignore_writes = true;
        s.ignore_settings = true;
    });
    let mut trips = Vec::new();
    let mut losses = 0;
    for _ in 0..20 {
        let (out, ev) = r.cycle(100, 2000.0, 1.0e6, 1.0e6);
        losses += ev.iter().filter(|e| matches!(e.event, DeviceEvent::LeaseLost)).count();
        trips.extend(out.trips.iter().copied());
    }
    assert!(losses >= 3, "lease losses: {losses}");
    assert!(trips.contains(&TripReason::SetpointNotApplied), "trips: {trips:?}");
}

#[test]
fn a_refused_write_is_reported_with_the_exception_code_and_trips_as_not_applied() {
    let mut r = timer_rig();
    r.mock.with(|s| s.refuse_setpoints = true);
    for k in 1..=3 {
        let (out, ev) = r.cycle(100, 400.0, 1.0e6, 1.0e6);
        assert!(out.trips.is_empty(), "cycle {k}: the trip comes with the next apply");
        assert_eq!(out.write_error, Some(ems_devices::traits::ErrorKind::Refused));
        let refused = ev.iter().find(|e| matches!(e.event, DeviceEvent::WriteRefused { .. })).unwrap();
        assert_eq!(
            refused.event,
            DeviceEvent::WriteRefused {
                device: ems_devices::wrappers::Device::Inverter,
                exception: Some(0x04)
            }
        );
        assert_eq!(refused.event.to_string(), "Inverter refused the write: exception 0x04");
    }
    // Three refusals without a confirmed set-point: the command is not applied → trip.
    let (out, _) = r.cycle(100, 400.0, 1.0e6, 1.0e6);
    assert_eq!(out.trips.as_slice(), &[TripReason::SetpointNotApplied]);
}

#[test]
fn a_dead_link_on_writes_never_trips_and_its_signals_go_stale_through_their_max_age() {
    let mut r = timer_rig();
    let (out, _) = r.cycle(100, 400.0, 1.0e6, 1.0e6);
    assert_eq!(out.written, Some(ems_core::watts!(400.0)));
    let last_good = r.clock.now();
    r.mock.with(|s| {
        s.fail_writes = true;
        s.fail_reads = true;
    });
    for _ in 0..10 {
        let (out, ev) = r.cycle(100, 800.0, 1.0e6, 1.0e6);
        assert!(out.trips.is_empty(), "a dead link is no refusal");
        assert!(!ev.any(|e| matches!(e, DeviceEvent::WriteRefused { .. })));
    }
    // The last good reading is kept with its own time: good within its max age, stale after.
    let mut sig = ems_core::Snapshot::unknown(Watts::ZERO).inverter;
    r.inv.fill(r.clock.now(), &mut sig);
    assert_eq!(sig.active_power.taken_at(), last_good);
    assert_eq!(sig.active_power.quality_at(r.clock.now()), ems_core::Quality::Good);
    let later = last_good.plus(ems_core::snapshot::FAST_MAX_AGE).plus(Millis::new(1));
    assert_eq!(sig.active_power.quality_at(later), ems_core::Quality::Stale);
}

#[test]
fn an_unusable_read_drops_the_last_reading_at_once_and_allows_no_power() {
    use ems_devices::traits::ErrorKind;
    let mut r = timer_rig();
    let (out, _) = r.cycle(100, 400.0, 1.0e6, 1.0e6);
    assert_eq!(out.written, Some(ems_core::watts!(400.0)));
    r.mock.with(|s| s.read_error = Some(wrappers_mocks::MockError(ErrorKind::OutOfRange)));
    let (out, ev) = r.cycle(100, 400.0, 1.0e6, 1.0e6);
    assert!(ev.any(|e| matches!(e, DeviceEvent::ReadFailed { kind: ErrorKind::OutOfRange, .. })));
    let mut sig = ems_core::Snapshot::unknown(Watts::ZERO).inverter;
    r.inv.fill(r.clock.now(), &mut sig);
    assert_eq!(sig.active_power.quality_at(r.clock.now()), ems_core::Quality::Invalid);
    assert_eq!(sig.state.quality_at(r.clock.now()), ems_core::Quality::Invalid);
    assert_eq!(out.target, Watts::ZERO, "rating unknown: no power");
    assert!(r.inv.last_reading().is_none());
}
