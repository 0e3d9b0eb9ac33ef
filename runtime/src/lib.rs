//! `ems-runtime`: the one control loop of the EMS.
//!
//! The gateway, the built-in simulated site, the simulation harness, the soaks, the scenarios
//! and the fault-interleaving property tests all run the cycle in [`Runtime::cycle`]:
//!
//! 1. read the devices (the E-stop first, then the others — in real time with the E-stop
//!    watched while they are read, see [`ems_devices::io::DeviceSet::read_watched`]);
//! 2. build the controller's [`ems_control::Inputs`]: the device trips of the previous apply,
//!    the shutdown and software E-stop flags, and whatever the [`Hook`]s add (operator
//!    requests, control modes, schedules, plans, the local minute of day);
//! 3. [`ems_control::Controller::step`] — the single decision point, ending in the final clamp;
//! 4. persist the state machine when it changed;
//! 5. apply the command through the device safety layer with this cycle's envelope;
//! 6. carry the device trips into the next cycle.
//!
//! [`fast`] is the grid services' fast path: a frequency source and a service, ticked at
//! ≥ 10 Hz between the cycles by the same loop on the same thread (one writer to the inverter).
//!
//! [`island`] is the island path: island detection, backup transfer, black start and
//! reconnection (`ems-grid`'s island sequence over the device layer's island devices), stepped
//! in every cycle and fast tick, bounding the controller through `Inputs::grid_tie`.
//!
//! [`realtime::run`] adds what only a real-time run has: pacing against the clock (wall time
//! on a real site, simulated time on the simulated one), the E-stop watched between cycles,
//! the software E-stop that wakes the loop at once and is answered once zero was issued,
//! signals (graceful shutdown, a second one forces zero and open), and the shutdown timeout.
//! [`thread::spawn_control`] puts it on its own thread with its own single-threaded tokio
//! runtime, so that no HTTP client, database write or planner shares it.
//!
//! **Architecture Invariant:** this crate depends on neither `ems-api` nor `ems-testing`; the
//! API bridge, the harness's operator and checker and the economics run are [`Hook`]s.
#![forbid(unsafe_code)]
// Mirrors the lints the workspace is about to enable in the root `Cargo.toml`; removed from
// here once `[workspace.lints]` carries them.

pub mod cycle;
pub mod fast;
pub mod handles;
pub mod hook;
pub mod island;
pub mod marker;
pub mod realtime;
pub mod site;
pub mod thread;

pub use cycle::{CycleFlags, CycleResult, FastTick, Runtime};
pub use fast::{FastPath, FastPathConfig, FastPathError, GridPath, NoGridPath};
pub use handles::{EStopDone, EStopTrigger, ShutdownRequest};
pub use hook::{Context, CycleTiming, Hook, NoHook};
pub use island::{IslandLoop, IslandPath, IslandRequest, IslandRequestOutcome, IslandStatus, NoIslandPath};
pub use realtime::{Clock, RealtimeOptions, RunEnd, RunSummary};
pub use site::SiteDevices;
