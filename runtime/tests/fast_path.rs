//! The grid services' fast path (issue #13 item 3) through the one loop: a frequency dip
//! reaches the inverter within a fast tick while the full cycle runs at 1 s, and a stale
//! frequency deactivates the services (bounded fall to zero, then no request) — never freezes.
#![allow(clippy::unwrap_used)] // helpers of the tests below: a failure is a failed test

#[path = "support/fakes.rs"]
mod fakes;

use ems_control::{CommandClass, Controller, ControllerConfig, Inputs, ModeSetting, Output};
use ems_core::persist::MemoryStore;
use ems_core::{Hertz, Millis, State, TransitionRequest};
use ems_devices::frequency::{
    FrequencyInput, FrequencyInputConfig, FrequencySource, SimFrequency, SimFrequencySignal,
};
use ems_devices::traits::{DeviceError, ErrorKind};
use ems_grid::{FcrN, Ffr, FfrLevel, FfrParams, FfrSupport, FrequencyServices, ParamSet};
use ems_runtime::realtime::{self, Clock, RealtimeOptions};
use ems_runtime::{
    Context, CycleFlags, EStopTrigger, FastPath, FastPathConfig, Hook, Runtime, ShutdownRequest,
};
use fakes::Probe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn hz(v: f32) -> Hertz {
    Hertz::try_new(v).unwrap()
}

/// FCR-N 1 kW + FFR 1 kW at 49.5 Hz (short support): at 49.4 Hz both are fully activated
/// (+2 kW, discharge).
fn services() -> FrequencyServices {
    FrequencyServices::new(None)
        .with_fcr_n(FcrN::try_new(ems_core::watts!(1000.0), ParamSet::nordic_2025_v1_1()).unwrap())
        .with_ffr(
            Ffr::try_new(ems_core::watts!(1000.0), FfrParams::nordic(FfrLevel::Hz49_5, FfrSupport::Short))
                .unwrap(),
        )
}

fn controller(cycle_ms: u64) -> Controller {
    // Passive: the baseline is zero, so the inverter's set-point is the services' response.
    Controller::new(ControllerConfig {
        mode: ModeSetting::Passive,
        cycle: Millis::new(cycle_ms),
        ..ControllerConfig::default()
    })
    .unwrap()
}

/// Boots and starts; records when each full cycle stepped and the state.
#[derive(Default)]
struct Recorder {
    cycles: Arc<Mutex<Vec<Instant>>>,
    state: Arc<Mutex<Option<State>>>,
}

impl Hook for Recorder {
    fn inputs<'a>(&'a mut self, cx: &Context<'_>, inputs: &mut Inputs<'a>) {
        if cx.shutting_down {
            return;
        }
        inputs.request = match cx.state {
            State::Boot => Some(TransitionRequest::BootComplete),
            State::Idle => Some(TransitionRequest::Start),
            State::Running | State::Error | State::Stopped => None,
        };
    }
    fn stepped(&mut self, _cx: &Context<'_>, out: &Output) {
        self.cycles.lock().unwrap().push(Instant::now());
        *self.state.lock().unwrap() = Some(out.state);
    }
}

/// A frequency source the test thread sets (the simulated one is `Rc`, for one thread).
#[derive(Debug, Clone)]
struct SharedFrequency(Arc<Mutex<f32>>);

#[derive(Debug)]
struct Never;
impl DeviceError for Never {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Comm
    }
}

impl FrequencySource for SharedFrequency {
    type Error = Never;
    async fn read(&mut self) -> Result<Hertz, Never> {
        Ok(hz(*self.0.lock().unwrap()))
    }
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    // A liveness bound, not a timing target (that is the benchmark's).
    let until = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < until, "{what} never happened");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_frequency_dip_reaches_the_inverter_in_a_fast_tick_between_two_1_s_cycles() {
    let probe = Arc::new(Probe::default());
    let freq = SharedFrequency(Arc::new(Mutex::new(50.0)));
    let hook_cycles = Arc::new(Mutex::new(Vec::new()));
    let hook_state = Arc::new(Mutex::new(None));
    let trigger = EStopTrigger::new();
    let shutdown = ShutdownRequest::new();
    let (p, f, s, t) = (probe.clone(), freq.clone(), shutdown.clone(), trigger.clone());
    let (hc, hs) = (hook_cycles.clone(), hook_state.clone());
    let handle = ems_runtime::thread::spawn_control(move || async move {
        let input = FrequencyInput::new(f, FrequencyInputConfig::default()).unwrap();
        let fast = FastPath::new(input, services(), FastPathConfig::default()).unwrap();
        let mut rt = Runtime::new(fakes::device_set(&p), controller(1000), MemoryStore::default())
            .with_grid_path(fast);
        rt.watch_estop(Duration::from_millis(1), t);
        let opts =
            RealtimeOptions { cycle: Millis::new(1000), clock: Clock::Wall, ..RealtimeOptions::default() };
        let mut hook = Recorder { cycles: hc, state: hs };
        realtime::run(&mut rt, &mut hook, &opts, &s).await
    })
    .unwrap();

    wait_until("running", || *hook_state.lock().unwrap() == Some(State::Running));
    wait_until("contactors closed", || probe.coils.lock().unwrap().1);
    // Just after a full cycle, the frequency dips.
    let seen = hook_cycles.lock().unwrap().len();
    wait_until("a new cycle", || hook_cycles.lock().unwrap().len() > seen);
    std::thread::sleep(Duration::from_millis(150));
    let cycles_before = hook_cycles.lock().unwrap().len();
    let dip = Instant::now();
    *freq.0.lock().unwrap() = 49.4;
    wait_until("the services' response written", || {
        probe.writes.lock().unwrap().iter().any(|(at, w)| *at >= dip && *w >= 1999.0)
    });
    let written = probe.writes.lock().unwrap().iter().find(|(at, w)| *at >= dip && *w >= 1999.0).unwrap().0;
    let cycles = hook_cycles.lock().unwrap().clone();
    // The response came from a fast tick: no full cycle ran between the dip and the write.
    let next_cycle = cycles.get(cycles_before).copied();
    assert!(
        next_cycle.is_none_or(|c| written < c),
        "the response waited for the full cycle: written {:?} after the dip, next cycle {:?} after it",
        written - dip,
        next_cycle.map(|c| c - dip)
    );
    println!("dip → inverter write: {:?} (fast tick 100 ms, cycle 1 s)", written - dip);
    shutdown.request();
    shutdown.request();
    let summary = handle.join().unwrap().unwrap();
    assert!(summary.cycles >= 3, "{summary:?}");
}

/// Drive the loop by hand (no real time): cycles at 1 s, fast ticks at 100 ms between them.
struct Driven {
    rt: Runtime<fakes::FakeSet, MemoryStore, FastPath<SimFrequency, FrequencyServices>>,
    hook: Recorder,
    now: u64,
}

impl Driven {
    fn new() -> (Self, ems_devices::frequency::SimFrequencyHandle, Arc<Probe>) {
        let probe = Arc::new(Probe::default());
        let (source, handle) = SimFrequency::new(SimFrequencySignal::Fixed(hz(50.0)));
        let input = FrequencyInput::new(source, FrequencyInputConfig::default()).unwrap();
        let fast = FastPath::new(input, services(), FastPathConfig::default()).unwrap();
        let rt = Runtime::new(fakes::device_set(&probe), controller(1000), MemoryStore::default())
            .with_grid_path(fast);
        (Self { rt, hook: Recorder::default(), now: 0 }, handle, probe)
    }

    /// Advance 100 ms: a full cycle on each whole second, a fast tick otherwise. The output.
    fn tick(&mut self, freq: &ems_devices::frequency::SimFrequencyHandle) -> Option<Output> {
        self.now += 100;
        let now = Millis::new(self.now);
        freq.set_time(now);
        if self.now % 1000 == 0 {
            Some(pollster::block_on(self.rt.cycle(now, CycleFlags::default(), &mut self.hook)).output)
        } else {
            pollster::block_on(self.rt.fast_tick(now, &mut self.hook)).and_then(|t| t.output)
        }
    }
}

#[test]
fn fast_ticks_answer_a_dip_and_a_stale_frequency_deactivates_the_services_without_freezing() {
    let (mut d, freq, probe) = Driven::new();
    while d.rt.controller().state() != State::Running || !probe.coils.lock().unwrap().1 {
        let _ = d.tick(&freq);
        assert!(d.now < 60_000, "never running");
    }
    // One more full cycle reads the closed contactor into the snapshot the fast ticks use;
    // then to the middle of a second, and the dip: the very next fast tick answers it.
    let closed_at = d.now;
    while d.now < closed_at + 1000 || d.now % 1000 != 300 {
        let _ = d.tick(&freq);
    }
    freq.set(hz(49.4));
    let out = d.tick(&freq).expect("a fast tick while RUNNING");
    assert_eq!(d.now % 1000, 400, "a fast tick, not a cycle");
    assert!((out.command.setpoint().get() - 2000.0).abs() < 1.0, "{:?}", out.command);
    assert_eq!(out.command.class(), CommandClass::GridService);
    assert!((*probe.setpoint.lock().unwrap() - 2000.0).abs() < 1.0, "written to the inverter");

    // The source dies: after its max age (300 ms) the sample is stale, and the response falls
    // at the services' bounded rate to zero, then the services stop requesting.
    freq.fail(Some(ErrorKind::Timeout));
    let mut last = 2000.0f32;
    let mut fell = false;
    let mut released = false;
    for _ in 0..150 {
        let Some(out) = d.tick(&freq) else { continue };
        let p = out.command.setpoint().get();
        assert!(p <= last + 0.5, "the response rose on a stale frequency: {last} → {p}");
        // Bounded: no step to zero (20 %/s of 1 kW per service = at most 40 W per 100 ms).
        assert!(last - p <= 41.0, "the response stepped: {last} → {p}");
        fell |= p < last;
        last = p;
        if out.grid.is_none() {
            released = true;
            break;
        }
    }
    assert!(fell, "the response froze on a stale frequency");
    assert!(released, "the services never deactivated (last {last} W)");
    assert_eq!(last, 0.0);
    // The audit sees what the fast ticks did with the next full cycle's events (none lost
    // between cycles): the state stayed RUNNING throughout.
    assert_eq!(d.rt.controller().state(), State::Running);
}

#[test]
fn no_fast_tick_outside_running() {
    let (mut d, freq, _probe) = Driven::new();
    // BOOT: the first 100 ms is a fast slot, and the controller is not RUNNING yet.
    assert!(d.tick(&freq).is_none());
    assert_eq!(d.rt.controller().state(), State::Boot);
}
