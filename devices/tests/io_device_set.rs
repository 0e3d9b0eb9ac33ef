//! `DeviceSet`: every signal filled, the E-stop fast path, release, and a property test over
//! random faults and commands.
#![allow(clippy::unwrap_used)]

#[path = "wrappers_mocks/mod.rs"]
mod wrappers_mocks;

use ems_control::{Command, CommandClass, RampRate};
use ems_core::snapshot::{ContactorState, EStopInput as EStopState};
use ems_core::{ContactorCommand, Quality, Snapshot, TripReason, Watts};
use ems_devices::io::{DeviceSet, DeviceSetConfig};
use ems_devices::traits::ControlSource;
use ems_devices::wrappers::{DeviceEvent, DeviceEvents};
use pollster::block_on;
use proptest::prelude::*;
use wrappers_mocks::{
    Clock, InvWrite, MockBms, MockEStop, MockInverter, MockMeter, MockPv, MockRelay, COMM, ORIGINAL,
};

type Set = DeviceSet<MockBms, MockInverter, MockMeter, MockPv, MockRelay, MockRelay, MockEStop>;

struct Rig {
    clock: Clock,
    bms: MockBms,
    inv: MockInverter,
    pre: MockRelay,
    main: MockRelay,
    estop: MockEStop,
    set: Set,
    snap: Snapshot,
}

fn rig() -> Rig {
    let clock = Clock::default();
    let bms = MockBms::healthy();
    let inv = MockInverter::with_timer(&clock);
    let pre = MockRelay::default();
    let main = MockRelay::default();
    let estop = MockEStop::default();
    let set = DeviceSet::new(
        bms.clone(),
        inv.clone(),
        MockMeter::default(),
        MockPv::default(),
        pre.clone(),
        main.clone(),
        estop.clone(),
        DeviceSetConfig::default(),
    )
    .unwrap();
    Rig { clock, bms, inv, pre, main, estop, set, snap: Snapshot::unknown(Watts::ZERO) }
}

impl Rig {
    fn read(&mut self) -> DeviceEvents {
        let mut ev = DeviceEvents::new();
        block_on(self.set.read(self.clock.now(), &mut self.snap, &mut ev));
        ev
    }
    fn cycle(&mut self, dt: u64, sp: f32, c: ContactorCommand) -> ems_devices::io::ApplyReport {
        self.clock.advance(dt);
        let _ = self.read();
        let mut ev = DeviceEvents::new();
        let cmd = command(Watts::saturating(sp), (ems_core::watts!(1.0e6), ems_core::watts!(1.0e6)), c);
        block_on(self.set.apply(self.clock.now(), &cmd, &mut ev))
    }
}

/// A command as the controller would make it (the site's default 2.5 kW/s ramp, comfort class).
fn command(setpoint: Watts, bounds: (Watts, Watts), contactor: ContactorCommand) -> Command {
    let ramp = Some(RampRate::per_second(ems_core::watts!(2500.0)));
    Command::for_test(setpoint, bounds, contactor, ramp, CommandClass::Comfort)
}

#[test]
fn read_fills_every_signal_good_from_healthy_devices() {
    let mut r = rig();
    let ev = r.read();
    assert!(ev.is_empty(), "{:?}", ev.iter().map(|e| e.event.to_string()).collect::<Vec<_>>());
    let now = r.clock.now();
    let s = &r.snap;
    let b = &s.battery;
    let q = [
        b.soc.quality_at(now),
        b.pack_voltage.quality_at(now),
        b.pack_current.quality_at(now),
        b.cell_voltage_min.quality_at(now),
        b.cell_voltage_max.quality_at(now),
        b.cell_temp_min.quality_at(now),
        b.cell_temp_max.quality_at(now),
        b.bms_charge_limit.quality_at(now),
        b.bms_discharge_limit.quality_at(now),
        b.bms_alarms.quality_at(now),
        b.bms_ready.quality_at(now),
        s.inverter.active_power.quality_at(now),
        s.inverter.state.quality_at(now),
        s.inverter.temperature.quality_at(now),
        s.grid.active_power.quality_at(now),
        s.grid.voltage.quality_at(now),
        s.grid.frequency.quality_at(now),
        s.pv_power.quality_at(now),
        s.contactor.quality_at(now),
        s.precharge_done.quality_at(now),
        s.estop.quality_at(now),
    ];
    assert!(q.iter().all(|q| *q == Quality::Good), "{q:?}");
    assert_eq!(s.inverter.rated_power, ems_core::watts!(5000.0));
    assert_eq!(s.estop.value_at(now), Some(EStopState::Released));
    assert_eq!(s.contactor.value_at(now), Some(ContactorState::Open));
}

#[test]
fn a_failed_read_leaves_the_signal_to_go_stale() {
    let mut r = rig();
    let _ = r.read();
    *r.set.meter().0.borrow_mut() = Err(COMM);
    r.clock.advance(3000);
    let ev = r.read();
    assert!(ev.any(|e| matches!(e, DeviceEvent::ReadFailed { .. })));
    assert_eq!(r.snap.grid.active_power.quality_at(r.clock.now()), Quality::Stale);
}

/// A meter without frequency (a P1 smart meter): power and voltage are taken, the frequency is
/// left alone (it goes stale unless a frequency source supplies it), never invented.
#[test]
fn a_meter_without_frequency_leaves_the_grid_frequency_to_go_stale() {
    let mut r = rig();
    let _ = r.read();
    *r.set.meter().0.borrow_mut() = Ok(ems_devices::traits::MeterReading {
        active_power: ems_core::watts!(-1500.0),
        voltage: ems_core::volts!(231.0),
        frequency: None,
    });
    r.clock.advance(3000);
    let ev = r.read();
    assert!(ev.is_empty(), "{:?}", ev.iter().map(|e| e.event.to_string()).collect::<Vec<_>>());
    let now = r.clock.now();
    let g = &r.snap.grid;
    assert_eq!(g.active_power.value_at(now), Some(ems_core::watts!(-1500.0)));
    assert_eq!(g.voltage.quality_at(now), Quality::Good);
    assert_eq!(g.frequency.quality_at(now), Quality::Stale);
}

#[test]
fn closes_and_runs_then_estop_fast_path_zeroes_and_opens_within_the_same_call() {
    let mut r = rig();
    for _ in 0..20 {
        let _ = r.cycle(100, 3000.0, ContactorCommand::Close);
    }
    assert!(r.main.closed());
    assert_eq!(r.inv.with(|s| s.applied), ems_core::watts!(3000.0));
    assert!(r.set.lease_active(r.clock.now()));
    r.estop.press();
    let mut ev = DeviceEvents::new();
    let pressed = block_on(r.set.check_estop(r.clock.now(), &mut ev));
    assert!(pressed);
    assert_eq!(r.inv.setpoint_writes().last(), Some(&Watts::ZERO));
    assert!(!r.main.energised() && !r.pre.energised(), "both relays commanded open");
    assert!(ev.any(|e| matches!(e, DeviceEvent::EStopFastPath { zero_written: true, relays_opened: true })));
    // The following apply keeps zero even if the command were not.
    let rep = r.cycle(100, 3000.0, ContactorCommand::Close);
    assert_eq!(rep.inverter.target, Watts::ZERO);
    assert!(!r.main.energised());
}

#[test]
fn release_leaves_the_inverter_in_its_original_settings_and_contactors_open() {
    let mut r = rig();
    for _ in 0..20 {
        let _ = r.cycle(100, -2000.0, ContactorCommand::Close);
    }
    assert_eq!(r.inv.settings().control, ControlSource::Remote);
    let mut ev = DeviceEvents::new();
    block_on(r.set.release(r.clock.now(), &mut ev)).unwrap();
    assert_eq!(r.inv.settings(), ORIGINAL);
    assert!(!r.main.energised() && !r.pre.energised());
    assert!(!r.set.lease_active(r.clock.now()));
}

#[test]
fn apply_reports_device_trips_for_the_controller() {
    let mut r = rig();
    let _ = r.cycle(100, 0.0, ContactorCommand::Close);
    r.inv.with(|s| s.ignore_writes = true);
    let mut trips = Vec::new();
    for _ in 0..10 {
        trips.extend(r.cycle(100, 1000.0, ContactorCommand::Close).trips);
    }
    assert!(trips.contains(&TripReason::SetpointNotApplied), "{trips:?}");
    let _ = r.bms; // kept alive for symmetry with the other handles
}

#[derive(Debug, Clone)]
enum Op {
    Cycle { dt: u64, sp: f32, max_c: f32, max_d: f32, contactor: u8 },
    InvReadFail(bool),
    InvWriteFail(bool),
    IgnoreWrites(bool),
    MainStuck(bool),
    BmsFail(bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (50u64..2000, -8000.0f32..8000.0, 0.0f32..6000.0, 0.0f32..6000.0, 0u8..3)
            .prop_map(|(dt, sp, max_c, max_d, contactor)| Op::Cycle { dt, sp, max_c, max_d, contactor }),
        1 => any::<bool>().prop_map(Op::InvReadFail),
        1 => any::<bool>().prop_map(Op::InvWriteFail),
        1 => any::<bool>().prop_map(Op::IgnoreWrites),
        1 => any::<bool>().prop_map(Op::MainStuck),
        1 => any::<bool>().prop_map(Op::BmsFail),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn written_setpoints_stay_inside_bounds_and_release_or_revert_restores(
        ops in proptest::collection::vec(op(), 1..80),
        hang in any::<bool>(),
    ) {
        let mut r = rig();
        for op in ops {
            match op {
                Op::Cycle { dt, sp, max_c, max_d, contactor } => {
                    let now = r.clock.advance(dt);
                    let mut ev = DeviceEvents::new();
                    block_on(r.set.read(now, &mut r.snap, &mut ev));
                    let n = r.inv.0.borrow().writes.len();
                    // The command's own constructor clamps too; give the wrapper raw bounds to
                    // check against anyway (they are what the command carries).
                    let cmd = command(
                        Watts::saturating(sp),
                        (Watts::saturating(max_c), Watts::saturating(max_d)),
                        [ContactorCommand::Open, ContactorCommand::Hold, ContactorCommand::Close][usize::from(contactor)],
                    );
                    let _ = block_on(r.set.apply(now, &cmd, &mut ev));
                    for (_, w) in r.inv.0.borrow().writes[n..].iter() {
                        let p = match w { InvWrite::Setpoint(p) => *p, InvWrite::Settings(s) => s.setpoint };
                        prop_assert!(p.get() <= max_d + 1e-3 && p.get() >= -max_c - 1e-3, "wrote {p:?} with bounds -{max_c}..{max_d}");
                        prop_assert!(p.abs().get() <= 5000.0 + 1e-3);
                    }
                    // The main contactor is never energised without a completed pre-charge: the
                    // mock DC link equals the pack, so this checks the relay order instead.
                    if r.main.energised() {
                        prop_assert!(r.pre.with(|s| s.commands.contains(&true)));
                    }
                }
                Op::InvReadFail(b) => r.inv.with(|s| s.fail_reads = b),
                Op::InvWriteFail(b) => r.inv.with(|s| s.fail_writes = b),
                Op::IgnoreWrites(b) => r.inv.with(|s| s.ignore_writes = b),
                Op::MainStuck(b) => r.main.with(|s| s.stuck_open = b),
                Op::BmsFail(b) => r.bms.set(if b { Err(COMM) } else { Ok(wrappers_mocks::healthy_bms_reading()) }),
            }
        }
        r.inv.with(|s| { s.fail_reads = false; s.fail_writes = false; s.ignore_writes = false; });
        if hang {
            // The EMS stops: after the lease the device is back in local control.
            r.clock.advance(10_001);
            prop_assert_eq!(r.inv.settings().control, ControlSource::Local);
        } else {
            let mut ev = DeviceEvents::new();
            block_on(r.set.release(r.clock.now(), &mut ev)).unwrap();
            let s = r.inv.settings();
            // Restored exactly if control was ever taken; untouched otherwise.
            prop_assert_eq!(s, ORIGINAL);
            prop_assert!(!r.main.energised() && !r.pre.energised());
        }
    }
}

/// The bug: the meter and PV readings were stamped with the cycle's `now` even when `Polled`
/// handed out a reading taken earlier, so they went stale only `poll interval + max_age` after
/// the real read. They must carry the time of the real read, like the BMS.
#[test]
fn polled_meter_and_pv_readings_keep_the_time_they_were_read() {
    use ems_core::Millis;
    use ems_devices::traits::{MeterReading, PvReading};
    use ems_devices::Polled;
    let clock = Clock::default();
    let meter: Polled<MockMeter, MeterReading> = Polled::new(MockMeter::default(), Some(60_000));
    let pv: Polled<MockPv, PvReading> = Polled::new(MockPv::default(), Some(60_000));
    let mut set = DeviceSet::new(
        MockBms::healthy(),
        MockInverter::with_timer(&clock),
        meter,
        pv,
        MockRelay::default(),
        MockRelay::default(),
        MockEStop::default(),
        DeviceSetConfig::default(),
    )
    .unwrap();
    let mut snap = Snapshot::unknown(Watts::ZERO);
    let t0 = Millis::new(10_000);
    block_on(set.read(t0, &mut snap, &mut DeviceEvents::new()));
    assert_eq!(snap.grid.active_power.taken_at(), t0, "a fresh read is stamped now");
    // Real time passes (the cache's clock), and the next cycle reuses the cached reading.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let t1 = t0.plus(Millis::new(200));
    block_on(set.read(t1, &mut snap, &mut DeviceEvents::new()));
    let stale = |max_age: Millis| t0.plus(max_age).plus(Millis::new(1));
    let (g, pv) = (&snap.grid, &snap.pv_power);
    for (name, taken, quality) in [
        ("grid power", g.active_power.taken_at(), g.active_power.quality_at(stale(g.active_power.max_age()))),
        ("grid voltage", g.voltage.taken_at(), g.voltage.quality_at(stale(g.voltage.max_age()))),
        ("grid frequency", g.frequency.taken_at(), g.frequency.quality_at(stale(g.frequency.max_age()))),
        ("PV power", pv.taken_at(), pv.quality_at(stale(pv.max_age()))),
    ] {
        assert!(taken <= t0, "{name}: reused reading stamped {taken:?}, after the real read at {t0:?}");
        assert_eq!(quality, Quality::Stale, "{name}: stale max_age after the real read");
    }
}
