//! [`Hook`]: how a caller takes part in every cycle without owning the loop.

use crate::island::{IslandRequest, IslandRequestOutcome, IslandStatus};
use ems_control::{Inputs, ModeSetting, Output};
use ems_core::{Millis, Snapshot, State, TripReason};
use ems_devices::io::ApplyReport;
use ems_devices::wrappers::DeviceEvents;
use std::time::Duration;

/// What a hook sees of the cycle.
#[derive(Debug)]
pub struct Context<'a> {
    /// Control time of this cycle.
    pub now: Millis,
    /// What the devices reported this cycle.
    pub snapshot: &'a Snapshot,
    /// The controller's state (before the step in [`Hook::inputs`], after it in the others).
    pub state: State,
    /// Latched faults.
    pub latched: &'a [TripReason],
    /// The controller's active mode.
    pub mode: ModeSetting,
    /// A graceful shutdown was requested (hooks then stop asking for anything but an E-stop).
    pub shutting_down: bool,
    /// The island path's status after this cycle's island step (`None`: no island path).
    pub island: Option<&'a IslandStatus>,
}

/// How long a cycle took and how late it started against its schedule (real-time runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CycleTiming {
    /// Read → step → apply, wall time.
    pub duration: Duration,
    /// How late the cycle started against its due time (zero when on time).
    pub lateness: Duration,
}

/// A participant in every cycle. Every method has an empty default.
pub trait Hook {
    /// Before the step: add to this cycle's inputs (a request with its reason, a mode change,
    /// an override, a plan slot, the local minute of day). Several hooks fill in turn; a later
    /// one sees what the earlier ones set.
    fn inputs<'a>(&'a mut self, cx: &Context<'_>, inputs: &mut Inputs<'a>) {
        let _ = (cx, inputs);
    }
    /// After the step, before the command is applied (answer requests, publish, audit).
    fn stepped(&mut self, cx: &Context<'_>, out: &Output) {
        let _ = (cx, out);
    }
    /// After the command was applied (`None` when an E-stop interrupted the apply; its fast
    /// path then commanded zero and open), with this cycle's device events.
    fn applied(
        &mut self,
        cx: &Context<'_>,
        out: &Output,
        applied: Option<&ApplyReport>,
        events: &DeviceEvents,
    ) {
        let _ = (cx, out, applied, events);
    }
    /// After the cycle, before the wait: control time advances by `step` to `next` (the
    /// simulated site advances its physics here).
    fn advance(&mut self, next: Millis, step: Millis) {
        let _ = (next, step);
    }
    /// Before the island step of a cycle: an operator's black-start or reset request.
    fn island_request(&mut self) -> Option<IslandRequest> {
        None
    }
    /// What became of the request [`Self::island_request`] returned.
    fn island_answer(&mut self, request: &IslandRequest, outcome: IslandRequestOutcome) {
        let _ = (request, outcome);
    }
    /// Real-time runs: the cycle's timing.
    fn timing(&mut self, timing: CycleTiming) {
        let _ = timing;
    }
    /// Real-time runs: the fast path commanded zero and open, `took` after the E-stop (input
    /// edge seen, or software E-stop pressed).
    fn estop_fast_path(&mut self, took: Duration, software: bool) {
        let _ = (took, software);
    }
}

/// The hook that adds nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHook;

impl Hook for NoHook {}
