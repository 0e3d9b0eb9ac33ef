//! The grid services' fast path (issue #13 item 3, design.md §8: frequency sample → inverter
//! command ≤ 100 ms).
//!
//! * `fast_tick/sample_to_command`: one `Runtime::fast_tick` — the E-stop read, the frequency
//!   read (simulated source), `Controller::step_with` with FCR-N + FFR on the last snapshot,
//!   and the apply through the inverter's safety wrapper to the (fake, instant) device. The
//!   frequency alternates between 49.9 and 50.1 Hz so that every tick writes a new set-point.
//!   This is the compute part of the latency; the wall-clock bound adds at most one tick
//!   period (100 ms by default) of waiting for the next tick, plus the device link's own
//!   request time — so sample-to-command ≤ period + this + link time.
//!
//!   The BMS here ([`FollowingBms`]) follows the commanded power: its pack current is the
//!   inverter's set-point over the pack voltage and its cell voltages move with that current,
//!   as a real pack's do. A BMS whose readings never change while the inverter reports power
//!   trips the frozen-BMS plausibility check (ERROR after ~40 s of control time), after which a
//!   fast tick returns at once and the bench would measure nothing; `report_ticks` still fails
//!   the bench if most ticks did not step the controller.
//! * `step_with/fcr_n_active`: `Controller::step_with` alone with FCR-N responding (49.95 Hz),
//!   and a p50/p99 over 200,000 single calls printed by `step_with_percentiles`.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // a bench: a broken set-up ends it
#![allow(missing_docs)] // `criterion_main!` generates an undocumented `pub fn main`

#[path = "../tests/support/fakes.rs"]
mod fakes;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ems_control::{Controller, ControllerConfig, Inputs, ModeSetting};
use ems_core::persist::MemoryStore;
use ems_core::snapshot::FAST_MAX_AGE;
use ems_core::{Hertz, Measurement, Millis, State, TransitionRequest};
use ems_devices::frequency::{FrequencyInput, FrequencyInputConfig, SimFrequency, SimFrequencySignal};
use ems_grid::{FcrN, Ffr, FfrLevel, FfrParams, FfrSupport, FrequencyServices, ParamSet};
use ems_runtime::{Context, CycleFlags, FastPath, FastPathConfig, Hook, Runtime};
use ems_safety::testkit::healthy_snapshot;
use fakes::Probe;
use std::sync::Arc;
use std::time::Instant;

/// A BMS whose readings follow the inverter's accepted set-point (see the module docs).
#[derive(Debug)]
struct FollowingBms(Arc<Probe>, u32);

impl ems_devices::traits::Bms for FollowingBms {
    type Error = fakes::FakeError;
    async fn read(&mut self) -> Result<ems_devices::traits::BmsReading, fakes::FakeError> {
        self.1 = self.1.wrapping_add(1);
        let p = *self.0.setpoint.lock().unwrap();
        let pack_v = 52.9 - p / 50_000.0;
        // + discharge: current out of the pack; cells sag under discharge, rise under charge.
        let current = p / pack_v;
        let cell = 3.30 - current * 0.0005 + if self.1 % 2 == 0 { 0.0 } else { 0.0005 };
        Ok(ems_devices::traits::BmsReading {
            soc: ems_core::Percent::saturating(
                50.0 - f32::from(u16::try_from(self.1 % 100).unwrap_or(0)) * 0.001,
            ),
            pack_voltage: ems_core::Volts::saturating(pack_v),
            pack_current: ems_core::Amps::saturating(current),
            cell_voltage_min: ems_core::Volts::saturating(cell),
            cell_voltage_max: ems_core::Volts::saturating(cell + 0.01),
            cell_temp_min: ems_core::Celsius::saturating(
                25.0 + f32::from(u16::try_from(self.1 % 10).unwrap_or(0)) * 0.01,
            ),
            cell_temp_max: ems_core::Celsius::saturating(
                25.3 + f32::from(u16::try_from(self.1 % 10).unwrap_or(0)) * 0.01,
            ),
            charge_limit: ems_core::watts!(5000.0),
            discharge_limit: ems_core::watts!(5000.0),
            alarms: ems_core::snapshot::BmsAlarms::NONE,
            ready: true,
        })
    }
    async fn reset_alarms(&mut self) -> Result<(), fakes::FakeError> {
        Ok(())
    }
}

fn following_set(
    probe: &Arc<Probe>,
) -> ems_devices::io::DeviceSet<
    FollowingBms,
    fakes::FakeInverter,
    fakes::FakeMeter,
    fakes::FakePv,
    fakes::FakeRelay,
    fakes::FakeRelay,
    fakes::FakeEStop,
> {
    ems_devices::io::DeviceSet::new(
        FollowingBms(probe.clone(), 0),
        fakes::FakeInverter(probe.clone(), 0),
        fakes::FakeMeter,
        fakes::FakePv,
        fakes::FakeRelay(probe.clone(), false),
        fakes::FakeRelay(probe.clone(), true),
        fakes::FakeEStop(probe.clone()),
        ems_devices::io::DeviceSetConfig::default(),
    )
    .unwrap()
}

struct Starter;

impl Hook for Starter {
    fn inputs<'a>(&'a mut self, cx: &Context<'_>, inputs: &mut Inputs<'a>) {
        inputs.request = match cx.state {
            State::Boot => Some(TransitionRequest::BootComplete),
            State::Idle => Some(TransitionRequest::Start),
            State::Running | State::Error | State::Stopped => None,
        };
    }
}

fn hz(v: f32) -> Hertz {
    Hertz::try_new(v).unwrap()
}

fn services() -> FrequencyServices {
    FrequencyServices::new(None)
        .with_fcr_n(FcrN::try_new(ems_core::watts!(1000.0), ParamSet::nordic_2025_v1_1()).unwrap())
        .with_ffr(
            Ffr::try_new(ems_core::watts!(1000.0), FfrParams::nordic(FfrLevel::Hz49_5, FfrSupport::Short))
                .unwrap(),
        )
}

fn fast_tick(c: &mut Criterion) {
    let probe = Arc::new(Probe::default());
    let (source, freq) = SimFrequency::new(SimFrequencySignal::Fixed(hz(50.0)));
    let input = FrequencyInput::new(source, FrequencyInputConfig::default()).unwrap();
    let fast = FastPath::new(input, services(), FastPathConfig::default()).unwrap();
    let controller =
        Controller::new(ControllerConfig { mode: ModeSetting::Passive, ..ControllerConfig::default() })
            .unwrap();
    let mut rt = Runtime::new(following_set(&probe), controller, MemoryStore::default()).with_grid_path(fast);
    let mut now = 0u64;
    // Start up with full cycles (the contactors need a few) until RUNNING and closed.
    while rt.controller().state() != State::Running || !probe.coils.lock().unwrap().1 {
        now += 100;
        freq.set_time(Millis::new(now));
        let _ = pollster::block_on(rt.cycle(Millis::new(now), CycleFlags::default(), &mut Starter));
        assert!(now < 60_000, "never running");
    }
    let mut n = 0u64;
    let mut stepped = 0u64;
    c.bench_function("fast_tick/sample_to_command", |b| {
        b.iter(|| {
            n += 1;
            // Control time must advance for the ramp and the services; a full cycle every
            // 10 ticks keeps the snapshot fresh (not measured separately).
            now += 10;
            let t = Millis::new(now);
            freq.set_time(t);
            freq.set(if n % 2 == 0 { hz(49.9) } else { hz(50.1) });
            if n % 100 == 0 {
                probe.writes.lock().unwrap().clear();
                black_box(pollster::block_on(rt.cycle(t, CycleFlags::default(), &mut Starter)).output.command)
            } else {
                let out = pollster::block_on(rt.fast_tick(t, &mut Starter)).and_then(|f| f.output);
                stepped += u64::from(out.is_some());
                black_box(out.map_or(ems_control::Command::SAFE, |o| o.command))
            }
        });
    });
    if rt.controller().state() != State::Running {
        println!("fast_tick/sample_to_command: latched {:?}", rt.controller().latched());
    }
    report_ticks(n, stepped, rt.controller().state());
}

fn report_ticks(n: u64, stepped: u64, state: State) {
    println!("fast_tick/sample_to_command: {stepped} of {n} calls stepped the controller (state at the end {state:?})");
    // A site that left RUNNING (a trip) makes a fast tick return at once: the time above would
    // then not be the fast path's. Fail loudly.
    assert!(
        stepped * 2 > n,
        "most fast ticks did not step (state {state:?}): the measured time is not the fast path's"
    );
}

fn running_controller() -> (Controller, FrequencyServices, u64) {
    let mut c =
        Controller::new(ControllerConfig { mode: ModeSetting::Passive, ..ControllerConfig::default() })
            .unwrap();
    let mut s = services();
    let mut now = 0;
    for request in [Some(TransitionRequest::BootComplete), Some(TransitionRequest::Start)] {
        now += 100;
        let _ = c.step_with(now, &at(now, 50.0), &Inputs { request, ..Inputs::default() }, &mut s);
    }
    (c, s, now)
}

fn at(now: u64, f: f32) -> ems_core::Snapshot {
    let t = Millis::new(now);
    let mut s = healthy_snapshot(t);
    s.grid.frequency = Measurement::good(hz(f), t, FAST_MAX_AGE);
    s
}

fn step_with(c: &mut Criterion) {
    let (mut ctl, mut s, mut now) = running_controller();
    let inputs = Inputs::default();
    c.bench_function("step_with/fcr_n_active", |b| {
        b.iter(|| {
            now += 100;
            let snap = at(now, 49.95);
            black_box(ctl.step_with(now, black_box(&snap), &inputs, &mut s).command)
        });
    });
}

fn step_with_percentiles(_c: &mut Criterion) {
    let (mut ctl, mut s, mut now) = running_controller();
    let inputs = Inputs::default();
    let mut samples = Vec::with_capacity(200_000);
    for i in 0..220_000u32 {
        now += 100;
        let snap = at(now, if i % 2 == 0 { 49.95 } else { 49.97 });
        let t0 = Instant::now();
        let out = ctl.step_with(now, &snap, &inputs, &mut s);
        let dt = t0.elapsed();
        black_box(out.command);
        if i >= 20_000 {
            samples.push(dt);
        }
    }
    assert!(ctl.last_command().setpoint().get() > 0.0, "FCR-N not active");
    samples.sort_unstable();
    let p = |q: f64| {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
        let i = ((samples.len() as f64) * q) as usize;
        samples[i.min(samples.len() - 1)]
    };
    println!(
        "step_with/fcr_n_active single calls (n = {}, Instant::now overhead included): p50 {:?}, p99 {:?}, max {:?}",
        samples.len(),
        p(0.50),
        p(0.99),
        samples[samples.len() - 1]
    );
}

criterion_group!(benches, fast_tick, step_with, step_with_percentiles);
criterion_main!(benches);
