//! The real-time loop against fake devices: an E-stop that nothing delays (a hung inverter
//! link included), the software E-stop answered after zero was issued, the graceful shutdown
//! and a second request that forces zero and open.
#![allow(clippy::unwrap_used)] // helpers of the tests below: a failure is a failed test

#[path = "support/fakes.rs"]
mod fakes;

use ems_control::{Controller, ControllerConfig, Inputs};
use ems_core::persist::MemoryStore;
use ems_core::{Millis, State, TransitionRequest};
use ems_runtime::realtime::{self, Clock, RealtimeOptions, RunEnd};
use ems_runtime::{Context, EStopTrigger, Hook, Runtime, ShutdownRequest};
use fakes::Probe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Boots and starts, as the gateway's start-up sequence does.
struct Starter;

impl Hook for Starter {
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
}

fn options() -> RealtimeOptions {
    RealtimeOptions { cycle: Millis::new(20), clock: Clock::Wall, ..RealtimeOptions::default() }
}

/// Run the loop on its own thread; returns the handles and the join handle.
fn spawn(
    probe: &Arc<Probe>,
    opts: RealtimeOptions,
) -> (EStopTrigger, ShutdownRequest, std::thread::JoinHandle<std::io::Result<realtime::RunSummary>>) {
    let trigger = EStopTrigger::new();
    let shutdown = ShutdownRequest::new();
    let (t, s, p) = (trigger.clone(), shutdown.clone(), probe.clone());
    let handle = ems_runtime::thread::spawn_control(move || async move {
        let mut devices = fakes::device_set(&p);
        devices.set_emergency_timeout(Duration::from_millis(50));
        let controller = Controller::new(ControllerConfig::default()).unwrap();
        let mut rt = Runtime::new(devices, controller, MemoryStore::default());
        rt.watch_estop(Duration::from_millis(1), t);
        realtime::run(&mut rt, &mut Starter, &opts, &s).await
    })
    .unwrap();
    (trigger, shutdown, handle)
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    // A liveness bound, not a timing target (that is the benchmark's).
    let until = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < until, "{what} never happened");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn an_estop_press_during_a_hung_inverter_read_opens_the_contactors_and_issues_zero() {
    let probe = Arc::new(Probe::default());
    let (_trigger, shutdown, handle) = spawn(&probe, options());
    // Let it close the contactors and run, then the inverter link dies.
    wait_until("contactors closed", || probe.coils.lock().unwrap().1);
    probe.hung.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(100));
    let pressed = Instant::now();
    probe.set_estop(true);
    wait_until("zero and open issued", || probe.all_issued_after(pressed).is_some());
    assert!(!probe.coils.lock().unwrap().1, "main contactor commanded open");
    shutdown.request();
    shutdown.request();
    let summary = handle.join().unwrap().unwrap();
    assert_eq!(summary.end, RunEnd::Forced);
}

#[test]
fn the_software_estop_wakes_the_loop_and_is_answered_after_zero_was_issued() {
    let probe = Arc::new(Probe::default());
    let (trigger, shutdown, handle) = spawn(&probe, options());
    wait_until("contactors closed", || probe.coils.lock().unwrap().1);
    probe.hung.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(100));
    let pressed = Instant::now();
    let answer = trigger.press();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let done =
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), answer).await }).unwrap().unwrap();
    let issued = probe.all_issued_after(pressed).expect("zero and open issued before the answer");
    assert!(issued <= Instant::now());
    assert_eq!(done.state, State::Stopped);
    assert!(done.took <= pressed.elapsed(), "{:?}", done.took);
    // A device that never answers does not stop the cycles: the state machine latched the stop.
    shutdown.request();
    shutdown.request();
    let summary = handle.join().unwrap().unwrap();
    assert_eq!(summary.state, State::Stopped, "{summary:?}");
}

#[test]
fn a_shutdown_request_ramps_down_opens_and_ends_idle_in_wall_time() {
    let probe = Arc::new(Probe::default());
    let (_trigger, shutdown, handle) = spawn(&probe, options());
    wait_until("contactors closed", || probe.coils.lock().unwrap().1);
    let asked = Instant::now();
    shutdown.request();
    let summary = handle.join().unwrap().unwrap();
    assert_eq!(summary.end, RunEnd::Complete, "{summary:?}");
    assert_eq!(summary.state, State::Idle);
    assert!(summary.released.is_ok(), "{summary:?}");
    let coils = *probe.coils.lock().unwrap();
    assert!(!coils.0 && !coils.1, "contactors open: {coils:?}");
    // Control time follows wall time: the shutdown's control time is no more than the wall
    // time it took (the old loop raced ahead after a signal).
    assert!(u128::from(summary.now.get()) <= asked.elapsed().as_millis() + 10_000, "{summary:?}");
}

#[test]
fn a_second_request_forces_zero_and_open_at_once() {
    let probe = Arc::new(Probe::default());
    let (_trigger, shutdown, handle) = spawn(&probe, options());
    wait_until("contactors closed", || probe.coils.lock().unwrap().1);
    // A hung inverter keeps the graceful shutdown from completing; the second request forces.
    probe.hung.store(true, Ordering::SeqCst);
    shutdown.request();
    std::thread::sleep(Duration::from_millis(100));
    let second = Instant::now();
    shutdown.request();
    let summary = handle.join().unwrap().unwrap();
    assert_eq!(summary.end, RunEnd::Forced, "{summary:?}");
    assert!(probe.main_opened.lock().unwrap().is_some_and(|t| t >= second));
}

#[test]
fn a_shutdown_that_cannot_complete_times_out_and_forces() {
    let probe = Arc::new(Probe::default());
    let opts = RealtimeOptions { shutdown_timeout: Duration::from_millis(300), ..options() };
    let (_trigger, shutdown, handle) = spawn(&probe, opts);
    wait_until("contactors closed", || probe.coils.lock().unwrap().1);
    probe.hung.store(true, Ordering::SeqCst);
    shutdown.request();
    let summary = handle.join().unwrap().unwrap();
    assert_eq!(summary.end, RunEnd::TimedOut, "{summary:?}");
    assert!(!probe.coils.lock().unwrap().1);
}

#[test]
fn repeated_presses_during_a_hung_link_each_issue_zero_and_open_and_the_loop_keeps_stepping() {
    let probe = Arc::new(Probe::default());
    let (_trigger, shutdown, handle) = spawn(&probe, options());
    wait_until("contactors closed", || probe.coils.lock().unwrap().1);
    probe.hung.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(100));
    for i in 0..20 {
        probe.set_estop(false);
        let seen = probe.released_reads.load(Ordering::SeqCst);
        wait_until("release seen", || probe.released_reads.load(Ordering::SeqCst) > seen + 1);
        let pressed = Instant::now();
        probe.set_estop(true);
        wait_until(&format!("press {i}: zero and open issued"), || probe.all_issued_after(pressed).is_some());
    }
    // A device that never answers does not stop the cycles: the state machine latched the stop.
    shutdown.request();
    shutdown.request();
    let summary = handle.join().unwrap().unwrap();
    assert_eq!(summary.state, State::Stopped, "{summary:?}");
}

#[test]
fn repeated_software_presses_during_a_hung_link_are_each_answered() {
    let probe = Arc::new(Probe::default());
    let (trigger, shutdown, handle) = spawn(&probe, options());
    wait_until("contactors closed", || probe.coils.lock().unwrap().1);
    probe.hung.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(100));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for i in 0..5 {
        let pressed = Instant::now();
        let answer = trigger.press();
        let done = rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), answer).await });
        let done = done.unwrap_or_else(|_| panic!("press {i} not answered")).unwrap();
        assert_eq!(done.state, State::Stopped);
        assert!(probe.all_issued_after(pressed).is_some(), "press {i}: zero and open issued");
        wait_until(&format!("press {i} taken"), || !trigger.is_pending());
    }
    shutdown.request();
    shutdown.request();
    let _ = handle.join().unwrap().unwrap();
}

#[test]
fn the_software_estop_is_accepted_during_a_graceful_shutdown() {
    let probe = Arc::new(Probe::default());
    let (trigger, shutdown, handle) = spawn(&probe, options());
    wait_until("contactors closed", || probe.coils.lock().unwrap().1);
    shutdown.request();
    std::thread::sleep(Duration::from_millis(60));
    let pressed = Instant::now();
    let answer = trigger.press();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let done =
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), answer).await }).unwrap().unwrap();
    assert_eq!(done.state, State::Stopped, "the E-stop latches STOPPED during the shutdown");
    assert!(probe.all_issued_after(pressed).is_some(), "zero and open issued for the press");
    let summary = handle.join().unwrap().unwrap();
    assert_eq!(summary.state, State::Stopped, "{summary:?}");
}
