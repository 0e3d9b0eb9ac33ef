//! **Architecture Invariant:** `Controller::step` never allocates. Proven with a counting
//! global allocator (the `allocation-counter` crate) over a run that visits every state:
//! BOOT → IDLE → RUNNING (charging, ramping, clamped), a trip to ERROR, acknowledge, an E-stop
//! to STOPPED, a manual reset, and a graceful shutdown.

mod common;

use ems_control::{Controller, ControllerConfig, Inputs};
use ems_core::snapshot::{BmsAlarm, BmsAlarms, EStopInput};
use ems_core::{Celsius, Measurement, Millis, State, TransitionRequest};

#[test]
fn step_never_allocates_in_any_state() {
    let mut c = Controller::new(ControllerConfig::default()).unwrap();
    // Warm up outside the measurement (nothing is lazily initialised, but be explicit).
    let warm = common::healthy(Millis::ZERO);
    let _ = c.step(0, &warm, &Inputs::default());
    let mut states = Vec::with_capacity(16);
    let mut snaps = Vec::with_capacity(400);
    for i in 0..400u64 {
        let now = Millis::new(100 + i * 100);
        let mut s = common::healthy(now);
        if (150..170).contains(&i) {
            s.battery.bms_alarms =
                Measurement::good(BmsAlarms::NONE.with(BmsAlarm::OverTemperature), now, Millis::new(2000));
        }
        if (200..210).contains(&i) {
            s.battery.cell_temp_max = Measurement::good(Celsius::new(70.0), now, Millis::new(2000));
        }
        if (250..260).contains(&i) {
            s.estop = Measurement::good(EStopInput::Pressed, now, Millis::new(2000));
        }
        if (300..305).contains(&i) {
            s.battery.cell_temp_min.invalidate();
        }
        let request = match i {
            0 => Some(TransitionRequest::BootComplete),
            1 | 235 | 290 => Some(TransitionRequest::Start),
            180 | 230 => Some(TransitionRequest::Acknowledge),
            280 => Some(TransitionRequest::Reset),
            _ => None,
        };
        snaps.push((now, s, request, i == 350));
    }
    let info = allocation_counter::measure(|| {
        for (now, s, request, shutdown) in &snaps {
            let out = c.step(
                now.get(),
                s,
                &Inputs { request: *request, reason: "test", shutdown: *shutdown, ..Inputs::default() },
            );
            if states.last() != Some(&out.state) && states.len() < states.capacity() {
                states.push(out.state);
            }
        }
    });
    assert_eq!(info.count_total, 0, "Controller::step allocated {} times", info.count_total);
    for s in [State::Idle, State::Running, State::Error, State::Stopped] {
        assert!(states.contains(&s), "run did not visit {s}: {states:?}");
    }
}
