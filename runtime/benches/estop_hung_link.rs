//! E-stop edge → zero-power and contactor-open commands issued, with a hung inverter link (a
//! device that never answers), in process (design.md §8: ≤ 1 ms).
//!
//! The control loop runs on its own thread (`ems_runtime::thread`) exactly as in the gateway,
//! against fake devices whose inverter never answers a read or a write, so the loop is always
//! stuck in device I/O when the E-stop comes. Measured per press: from the moment the input
//! changes (hardware: the loop's input signals its edge, as a GPIO line with edge events does;
//! software: `EStopTrigger::press`, what the API calls) until the zero set-point has been sent
//! to the inverter *and* both relays have been commanded open. A polled input adds its polling
//! period (the watch reads it at least every millisecond) on top of this.
//!
//! The fast path's bound on the hung zero write is set to 1 ms here (2 s by default) so that the
//! loop is back to watching quickly and the bench can press again.
#![allow(clippy::expect_used, clippy::panic)] // a bench: a broken set-up ends it
#![allow(missing_docs)] // `criterion_main!` generates an undocumented `pub fn main`

#[path = "../tests/support/fakes.rs"]
mod fakes;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use ems_control::{Controller, ControllerConfig, Inputs};
use ems_core::persist::MemoryStore;
use ems_core::{Millis, State, TransitionRequest};
use ems_runtime::realtime::{self, Clock, RealtimeOptions};
use ems_runtime::{Context, EStopTrigger, Hook, Runtime, ShutdownRequest};
use fakes::Probe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

struct Site {
    probe: Arc<Probe>,
    trigger: EStopTrigger,
    shutdown: ShutdownRequest,
    handle: Option<std::thread::JoinHandle<std::io::Result<realtime::RunSummary>>>,
}

fn start() -> Site {
    let probe = Arc::new(Probe::default());
    let trigger = EStopTrigger::new();
    let shutdown = ShutdownRequest::new();
    let (t, s, p) = (trigger.clone(), shutdown.clone(), probe.clone());
    let handle = ems_runtime::thread::spawn_control(move || async move {
        let mut devices = fakes::device_set(&p);
        devices.set_emergency_timeout(Duration::from_millis(1));
        let controller = Controller::new(ControllerConfig::default()).expect("default config");
        let mut rt = Runtime::new(devices, controller, MemoryStore::default());
        rt.watch_estop(Duration::from_millis(1), t);
        let opts =
            RealtimeOptions { cycle: Millis::new(100), clock: Clock::Wall, ..RealtimeOptions::default() };
        realtime::run(&mut rt, &mut Starter, &opts, &s).await
    })
    .expect("control thread");
    // Running with the contactors closed, then the inverter link dies.
    let until = Instant::now() + Duration::from_secs(10);
    while !probe.coils.lock().expect("lock").1 {
        assert!(Instant::now() < until, "the fake site never closed its contactors");
        std::thread::sleep(Duration::from_millis(5));
    }
    probe.hung.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(200));
    Site { probe, trigger, shutdown, handle: Some(handle) }
}

fn spin_until_issued(probe: &Probe, since: Instant) -> Duration {
    let until = since + Duration::from_secs(10);
    loop {
        if let Some(t) = probe.all_issued_after(since) {
            return t.duration_since(since);
        }
        assert!(
            Instant::now() < until,
            "zero and open never issued: zero {:?} main {:?} precharge {:?} since {since:?}",
            probe.zero_sent.lock().expect("lock"),
            probe.main_opened.lock().expect("lock"),
            probe.precharge_opened.lock().expect("lock")
        );
        std::hint::spin_loop();
    }
}

fn bench(c: &mut Criterion) {
    let mut site = start();
    let mut g = c.benchmark_group("estop_hung_inverter_link");
    g.sampling_mode(SamplingMode::Flat).sample_size(20).measurement_time(Duration::from_secs(5));
    g.bench_function("input_edge_to_zero_and_open_issued", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                // Released, and the loop has seen it (so the next press is an edge).
                site.probe.set_estop(false);
                let seen = site.probe.released_reads.load(Ordering::SeqCst);
                let until = Instant::now() + Duration::from_secs(10);
                while site.probe.released_reads.load(Ordering::SeqCst) <= seen + 1 {
                    assert!(Instant::now() < until, "the loop never read the released input");
                    std::thread::yield_now();
                }
                let t0 = Instant::now();
                site.probe.set_estop(true);
                total += spin_until_issued(&site.probe, t0);
            }
            total
        });
    });
    site.probe.set_estop(false);
    g.bench_function("software_estop_to_zero_and_open_issued", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let until = Instant::now() + Duration::from_secs(10);
                while site.trigger.is_pending() {
                    assert!(Instant::now() < until, "the loop never took the previous press");
                    std::thread::yield_now();
                }
                let t0 = Instant::now();
                let _answer = site.trigger.press();
                total += spin_until_issued(&site.probe, t0);
            }
            total
        });
    });
    g.finish();
    site.shutdown.request();
    site.shutdown.request();
    if let Some(h) = site.handle.take() {
        let _ = h.join();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
