//! `Controller::step` (safety evaluation + mode + final clamp) on a healthy RUNNING site, and
//! the E-stop path: the cycle in which the input edge is seen, which must command zero power and
//! open contactors (design.md §8: p99 ≤ 10 µs for a step; E-stop → zero ≤ 1 ms).
#![allow(clippy::unwrap_used)] // benchmark set-up: a failure should abort the run loudly

#[path = "../tests/common/mod.rs"]
mod common;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ems_control::{Controller, ControllerConfig, Inputs};
use ems_core::snapshot::EStopInput;
use ems_core::{ContactorCommand, Measurement, Millis, State, TransitionRequest, Watts};

fn running() -> (Controller, u64) {
    let mut c = Controller::new(ControllerConfig::default()).unwrap();
    let mut now = 0;
    for i in 0..50 {
        now += 100;
        let request = match i {
            0 => Some(TransitionRequest::BootComplete),
            1 => Some(TransitionRequest::Start),
            _ => None,
        };
        let _ = c.step(now, &common::healthy(Millis::new(now)), &Inputs { request, ..Inputs::default() });
    }
    assert_eq!(c.state(), State::Running);
    (c, now)
}

fn bench(cr: &mut Criterion) {
    let (mut c, mut now) = running();
    cr.bench_function("controller_step_running", |b| {
        b.iter(|| {
            now += 100;
            let snap = common::healthy(Millis::new(now));
            black_box(c.step(now, black_box(&snap), &Inputs::default()))
        })
    });
    cr.bench_function("estop_edge_to_zero_command", |b| {
        b.iter_batched(
            || {
                let (c, now) = running();
                let mut s = common::healthy(Millis::new(now + 100));
                s.estop = Measurement::good(EStopInput::Pressed, Millis::new(now + 100), Millis::new(2000));
                (c, now + 100, s)
            },
            |(mut c, now, s)| {
                let out = c.step(now, &s, &Inputs::default());
                assert!(
                    out.command.battery_setpoint == Watts::ZERO
                        && out.command.contactor == ContactorCommand::Open
                );
                out
            },
            criterion::BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
