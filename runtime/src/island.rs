//! The island path (issue #13 item 6): island detection, backup transfer, black start and
//! reconnection in the one control loop.
//!
//! # Design
//!
//! An [`IslandPath`] is to the island sequence what [`crate::GridPath`] is to the grid
//! services: the [`crate::Runtime`] calls it in every cycle (and in every fast tick when a fast
//! path exists), on the control thread, so the breaker, the inverter's mode, the load relays
//! and the battery set-point have one writer. [`IslandLoop`] is the implementation over the
//! device layer's [`IslandDevices`] and `ems-grid`'s [`IslandSequencer`]:
//!
//! 1. **read** (after the site's devices, before the grid services' frequency sample): the
//!    breaker, the inverter's mode and measurements and the relay contacts, each with its own
//!    quality and maximum age; the read-backs are overlaid on the snapshot (`grid.tie`,
//!    `inverter.grid_mode`, and the grid side where the inverter measures it), so the safety
//!    interlock "no power in an island without a grid-forming inverter" sees them;
//! 2. **step** (before the controller): the [`IslandInputs`] from the read-backs and the
//!    snapshot (the grid side from the inverter when it measures it, else the meter; the
//!    available discharge power = min(inverter rating, BMS discharge limit, what the inverter
//!    reports), zero outside IDLE/RUNNING), the operator's black-start or reset request, then
//!    [`IslandSequencer::step`]. Its `setpoints_allowed` and `power_limit` become the
//!    controller's [`GridTieBound`]: zero with the grid state's reason when set-points are not
//!    allowed, the reconnection ramp's limit after a close. The controller narrows the
//!    envelope with it ([`ems_core::event::Constraint::GridTie`]), so it passes the final clamp
//!    and is named in the output;
//! 3. **apply** (after the controller's step, before its command is applied): the breaker
//!    operation, the inverter mode and the relay positions through the device layer.
//!
//! # E-stop during island operation
//!
//! An E-stop (input pressed, software E-stop, or the controller STOPPED) never closes the
//! breaker (the device layer refuses the close as well). With the breaker not read back closed
//! — islanded, transferring, black-starting, or unknown — the island is de-energised: the
//! inverter is commanded *off* and every load relay opens (the battery is the only source and
//! is being stopped; the relays open so that nothing is re-energised all at once after the
//! reset — the sequence then reads the inverter off, goes to `BLACKOUT`, and an operator black
//! start brings the loads back one by one). On the grid (breaker read back closed) the loads
//! stay on the grid and the breaker stays closed: the E-stop stops the battery, not the house.

use core::fmt;
use ems_control::GridTieBound;
use ems_core::event::GridTieLimit;
use ems_core::snapshot::GridTie;
use ems_core::{Millis, Snapshot, State, Watts};
use ems_devices::island::{
    GridModeCommand, GridModeInverter, GridTieBreaker, InverterGridMode, IslandApplyReport, IslandCommand,
    IslandDevices,
};
use ems_devices::traits::Relay;
use ems_grid::island::{
    BreakerCommand, CloseConditions, Degrees, Detection, GridState, InverterCommand, InverterMode,
    IslandEvent, IslandInputs, IslandOutput, IslandSequencer, LoadMask, Side, StopReason,
};

/// An operator's request to the island sequence (from the API, through the loop's bounded
/// command channel and a [`crate::Hook`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IslandRequest {
    /// Black start from `BLACKOUT` (taken when the breaker reads open, the battery can supply
    /// and the grid is not healthy; forgotten otherwise).
    BlackStart {
        /// The operator's reason (audited).
        reason: String,
    },
    /// Reset a safe stop (back to `BLACKOUT`).
    Reset {
        /// The operator's reason (audited).
        reason: String,
    },
}

/// What became of an [`IslandRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IslandRequestOutcome {
    /// Handed to the sequence (a black start is taken by the next step that can take it).
    Accepted,
    /// A reset outside `SAFE STOP`: nothing changed.
    NotInSafeStop,
    /// The site has no island path.
    NoIsland,
}

/// Most recent island events kept in the status.
pub const RECENT_ISLAND_EVENTS: usize = 32;

/// One load circuit's state in the status.
#[derive(Debug, Clone, PartialEq)]
pub struct IslandLoadStatus {
    /// The circuit's name.
    pub name: String,
    /// Restore priority (0 = critical).
    pub priority: u8,
    /// Nominal power.
    pub nominal: Watts,
    /// Commanded on.
    pub commanded: bool,
    /// Read back on (`None`: the relay feedback is not good).
    pub on: Option<bool>,
}

/// The island path's state after the last step (for hooks: the API, the operator page, the
/// scenario runner).
#[derive(Debug, Clone, PartialEq)]
pub struct IslandStatus {
    /// Control time of the last step.
    pub at: Millis,
    /// The grid state.
    pub state: GridState,
    /// The breaker read-back (`None`: not good).
    pub breaker: Option<GridTie>,
    /// The breaker command of the last step.
    pub breaker_command: BreakerCommand,
    /// The inverter mode read back (`None`: not good).
    pub inverter: Option<InverterGridMode>,
    /// The inverter command of the last step (after the E-stop policy).
    pub inverter_command: InverterCommand,
    /// The close conditions.
    pub close: CloseConditions,
    /// The detector's view.
    pub detection: Detection,
    /// How long the grid has been inside the enter-service window.
    pub grid_healthy_for: Millis,
    /// The latched safe-stop reason.
    pub stop: Option<StopReason>,
    /// Set-points allowed (connected).
    pub setpoints_allowed: bool,
    /// The reconnection ramp's limit.
    pub power_limit: Option<Watts>,
    /// The bound handed to the controller.
    pub bound: Option<GridTieBound>,
    /// Available discharge power as fed to the sequence.
    pub available: Watts,
    /// The circuits.
    pub loads: Vec<IslandLoadStatus>,
    /// An E-stop held the island down in the last apply.
    pub estop: bool,
    /// The last events, oldest first, `(at, text)`.
    pub recent: Vec<(Millis, String)>,
    /// The events of the last step (texts).
    pub events: Vec<String>,
}

/// What the runtime needs of an island path (see the module docs).
#[allow(async_fn_in_trait)] // driven on the control thread; no Send bound wanted
pub trait IslandPath: fmt::Debug {
    /// Read the island devices at `now` and overlay their read-backs on `snapshot`.
    async fn read(&mut self, now: Millis, snapshot: &mut Snapshot);
    /// Take an operator request.
    fn request(&mut self, now: Millis, request: &IslandRequest) -> IslandRequestOutcome;
    /// Step the sequence; the bound for the controller (`None`: no island path).
    fn step(&mut self, now: Millis, snapshot: &Snapshot, state: State) -> Option<GridTieBound>;
    /// Write the last step's commands; `stop`: an E-stop is active (see the module docs).
    async fn apply(&mut self, now: Millis, stop: bool);
    /// The status after the last step (`None`: no island path).
    fn status(&self) -> Option<&IslandStatus>;
}

/// No island: the runtime's default.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoIslandPath;

impl IslandPath for NoIslandPath {
    async fn read(&mut self, _now: Millis, _snapshot: &mut Snapshot) {}
    fn request(&mut self, _now: Millis, _request: &IslandRequest) -> IslandRequestOutcome {
        IslandRequestOutcome::NoIsland
    }
    fn step(&mut self, _now: Millis, _snapshot: &Snapshot, _state: State) -> Option<GridTieBound> {
        None
    }
    async fn apply(&mut self, _now: Millis, _stop: bool) {}
    fn status(&self) -> Option<&IslandStatus> {
        None
    }
}

/// The island sequence over the island devices.
#[derive(Debug)]
pub struct IslandLoop<B, V, R> {
    devices: IslandDevices<B, V, R>,
    sequencer: IslandSequencer,
    rating: Watts,
    names: Vec<String>,
    last: Option<IslandOutput>,
    status: IslandStatus,
    last_apply: Option<IslandApplyReport>,
}

/// The bound the controller gets for one island output.
#[must_use]
pub fn bound_of(out: &IslandOutput) -> Option<GridTieBound> {
    if out.setpoints_allowed {
        return out.power_limit.map(|limit| GridTieBound { limit, reason: GridTieLimit::ReconnectionRamp });
    }
    let reason = match out.state {
        GridState::Starting | GridState::Connected => GridTieLimit::Unverified,
        GridState::Transferring => GridTieLimit::Transferring,
        GridState::Islanded
        | GridState::BlackStart
        | GridState::Resynchronising
        | GridState::Reconnecting => GridTieLimit::Islanded,
        GridState::Blackout | GridState::SafeStop => GridTieLimit::NoSupply,
    };
    Some(GridTieBound::zero(reason))
}

impl<B: GridTieBreaker, V: GridModeInverter, R: Relay> IslandLoop<B, V, R> {
    /// The sequence `sequencer` (built with the inverter's grid-forming `rating` and the load
    /// table) over `devices`, whose relays are in the load table's order; `names` names the
    /// circuits for the status and the audit log.
    pub fn new(
        devices: IslandDevices<B, V, R>,
        sequencer: IslandSequencer,
        rating: Watts,
        names: Vec<String>,
    ) -> Self {
        let loads = sequencer
            .loads()
            .circuits()
            .iter()
            .enumerate()
            .map(|(i, c)| IslandLoadStatus {
                name: names.get(i).cloned().unwrap_or_else(|| format!("load {i}")),
                priority: c.priority,
                nominal: c.nominal,
                commanded: true,
                on: None,
            })
            .collect();
        let status = IslandStatus {
            at: Millis::ZERO,
            state: sequencer.state(),
            breaker: None,
            breaker_command: BreakerCommand::Hold,
            inverter: None,
            inverter_command: InverterCommand::Off,
            close: CloseConditions::default(),
            detection: Detection { trip: None, measured: false, rocof: None, mean_voltage: None },
            grid_healthy_for: Millis::ZERO,
            stop: None,
            setpoints_allowed: false,
            power_limit: None,
            bound: None,
            available: Watts::ZERO,
            loads,
            estop: false,
            recent: Vec::new(),
            events: Vec::new(),
        };
        Self { devices, sequencer, rating, names, last: None, status, last_apply: None }
    }

    /// The sequence.
    #[must_use]
    pub const fn sequencer(&self) -> &IslandSequencer {
        &self.sequencer
    }

    /// The devices.
    pub fn devices_mut(&mut self) -> &mut IslandDevices<B, V, R> {
        &mut self.devices
    }

    /// The last step's output.
    #[must_use]
    pub const fn last_output(&self) -> Option<&IslandOutput> {
        self.last.as_ref()
    }

    /// What the last apply did.
    #[must_use]
    pub const fn last_apply(&self) -> Option<&IslandApplyReport> {
        self.last_apply.as_ref()
    }

    fn inputs(&self, now: Millis, snapshot: &Snapshot, state: State) -> IslandInputs {
        let rb = self.devices.readbacks();
        let inv = rb.inverter.value_at(now);
        let grid = Side {
            voltage: inv.and_then(|r| r.grid_voltage).or_else(|| snapshot.grid.voltage.value_at(now)),
            frequency: match inv {
                // The inverter measures the grid side: a dead grid has no frequency, and the
                // meter's must not stand in for it.
                Some(r) if r.grid_voltage.is_some() => r.grid_frequency,
                Some(_) | None => snapshot.grid.frequency.value_at(now),
            },
        };
        let dc_available = matches!(state, State::Running | State::Idle);
        let available = if dc_available {
            let bms = snapshot.battery.bms_discharge_limit.value_at(now).unwrap_or(Watts::ZERO);
            let own = inv.and_then(|r| r.available).unwrap_or(self.rating);
            self.rating.min(bms).min(own).max(Watts::ZERO)
        } else {
            Watts::ZERO
        };
        IslandInputs {
            grid,
            bus: Side {
                voltage: inv.and_then(|r| r.bus_voltage),
                frequency: inv.and_then(|r| r.bus_frequency),
            },
            phase_difference: inv
                .and_then(|r| r.phase_difference)
                .and_then(|d| Degrees::try_new(d.degrees()).ok()),
            breaker: rb.breaker.value_at(now),
            inverter: inv.map(|r| match r.mode {
                InverterGridMode::Off => InverterMode::Off,
                InverterGridMode::GridFollowing => InverterMode::GridFollowing,
                InverterGridMode::GridForming => InverterMode::GridForming,
            }),
            inverter_fault: inv.is_some_and(|r| r.fault),
            loads: rb.relays.value_at(now).map(LoadMask::from_bits),
            island_load: inv.and_then(|r| r.ac_power),
            available,
            soc: snapshot.battery.soc.value_at(now),
        }
    }

    fn event_text(&self, e: &IslandEvent) -> String {
        match e {
            IslandEvent::LoadShed { index, .. } | IslandEvent::LoadRestored { index } => {
                format!("{e}: {}", self.names.get(*index).map_or("?", String::as_str))
            }
            IslandEvent::State { .. }
            | IslandEvent::GridLost(_)
            | IslandEvent::BreakerOpenedExternally
            | IslandEvent::RelayMismatch { .. }
            | IslandEvent::SyncFailed
            | IslandEvent::CloseRefused(_)
            | IslandEvent::Stopped(_)
            | IslandEvent::Blackout(_)
            | IslandEvent::Reset => e.to_string(),
        }
    }

    fn remember(&mut self, now: Millis, text: String) {
        tracing::info!(target: "audit", "island: {text}");
        if self.status.recent.len() >= RECENT_ISLAND_EVENTS {
            self.status.recent.remove(0);
        }
        self.status.recent.push((now, text.clone()));
        self.status.events.push(text);
    }
}

impl<B, V, R> IslandPath for IslandLoop<B, V, R>
where
    B: GridTieBreaker + fmt::Debug,
    V: GridModeInverter + fmt::Debug,
    R: Relay + fmt::Debug,
{
    async fn read(&mut self, now: Millis, snapshot: &mut Snapshot) {
        let failed = self.devices.read(now).await;
        if !failed.is_empty() {
            tracing::debug!("island devices: reads failed: {failed:?}");
        }
        self.devices.fill_snapshot(snapshot, now);
    }

    fn request(&mut self, now: Millis, request: &IslandRequest) -> IslandRequestOutcome {
        match request {
            IslandRequest::BlackStart { reason } => {
                self.sequencer.request_black_start();
                self.remember(now, format!("black start requested by operator: {reason}"));
                IslandRequestOutcome::Accepted
            }
            IslandRequest::Reset { reason } => {
                if self.sequencer.reset(now) {
                    self.remember(now, format!("safe stop reset by operator: {reason}"));
                    IslandRequestOutcome::Accepted
                } else {
                    self.remember(now, format!("reset refused (not in SAFE STOP): {reason}"));
                    IslandRequestOutcome::NotInSafeStop
                }
            }
        }
    }

    fn step(&mut self, now: Millis, snapshot: &Snapshot, state: State) -> Option<GridTieBound> {
        let inputs = self.inputs(now, snapshot, state);
        let out = self.sequencer.step(now, &inputs);
        self.status.events.clear();
        for e in &out.events {
            let text = self.event_text(e);
            self.remember(now, text);
        }
        if out.events_dropped > 0 {
            self.remember(now, format!("{} island events dropped", out.events_dropped));
        }
        let bound = bound_of(&out);
        let s = &mut self.status;
        s.at = now;
        s.state = out.state;
        s.breaker = inputs.breaker;
        s.breaker_command = out.breaker;
        s.inverter = self.devices.readbacks().inverter.value_at(now).map(|r| r.mode);
        s.inverter_command = out.inverter;
        s.close = out.close;
        s.detection = out.detection;
        s.grid_healthy_for = out.grid_healthy_for;
        s.stop = out.stop;
        s.setpoints_allowed = out.setpoints_allowed;
        s.power_limit = out.power_limit;
        s.bound = bound;
        s.available = inputs.available;
        for (i, l) in s.loads.iter_mut().enumerate() {
            l.commanded = out.loads.contains(i);
            l.on = inputs.loads.map(|m| m.contains(i));
        }
        self.last = Some(out);
        bound
    }

    async fn apply(&mut self, now: Millis, stop: bool) {
        let Some(out) = &self.last else { return };
        let mut command = IslandCommand {
            breaker: match out.breaker {
                BreakerCommand::Hold => None,
                BreakerCommand::Open => Some(GridTie::Open),
                BreakerCommand::Close => Some(GridTie::Closed),
            },
            mode: match out.inverter {
                InverterCommand::Off => GridModeCommand::Off,
                InverterCommand::GridFollowing => GridModeCommand::GridFollowing,
                InverterCommand::GridForming => GridModeCommand::GridForming,
                InverterCommand::Synchronise => GridModeCommand::Synchronise,
            },
            relays: out.loads.bits(),
        };
        let on_grid = self.devices.readbacks().breaker.value_at(now) == Some(GridTie::Closed);
        if stop {
            if command.breaker == Some(GridTie::Closed) {
                command.breaker = None;
            }
            if !on_grid {
                command.mode = GridModeCommand::Off;
                command.relays = 0;
                self.status.inverter_command = InverterCommand::Off;
            }
        }
        if stop != self.status.estop {
            let text = if stop {
                if on_grid {
                    "E-stop: breaker held, no close; loads stay on the grid".to_owned()
                } else {
                    "E-stop: island de-energised (inverter off, load relays open), no close".to_owned()
                }
            } else {
                "E-stop released".to_owned()
            };
            self.remember(now, text);
            self.status.estop = stop;
        }
        let report = self.devices.apply(now, command, stop).await;
        if report.failures > 0 {
            tracing::warn!(
                target: "audit",
                "island devices: {} write(s) failed ({:?})",
                report.failures,
                report.first_failure
            );
        }
        self.last_apply = Some(report);
    }

    fn status(&self) -> Option<&IslandStatus> {
        Some(&self.status)
    }
}
