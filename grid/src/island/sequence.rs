//! The grid↔island sequence: transfer (open and verify the breaker, switch the inverter to
//! grid-forming, restore loads by priority), load shedding, black start, resynchronisation and
//! reconnection with the enter-service delay and the power ramp.
//!
//! ```text
//!  Starting ──closed──► Connected ──trip / breaker opened──► Transferring(open, verify)
//!     │                    ▲                                   │ verified open
//!     └──open──► Blackout  │ read back closed                  ▼
//!                 │  ▲     Reconnecting ◄── close conditions ─ Transferring(forming, verify)
//!   black start   │  │          ▲ (dead bus)  all true             │ forming + bus in window
//!                 ▼  │          │                                   ▼
//!            BlackStart ──────► Islanded ◄──────────► Resynchronising ──► Reconnecting
//!   any failed verification ──► SafeStop (breaker open, inverter off; operator reset)
//! ```
//!
//! The EMS is the sole close authority: a close is issued only from `Reconnecting`, and every
//! cycle's output passes one gate ([`IslandSequencer::step`]'s last act) that turns a `Close`
//! into an `Open` unless every [`CloseConditions`] field holds.

use super::detect::{Detection, EnterServiceMonitor, IslandDetector};
use super::loads::{LoadCircuit, LoadMask, LoadTable};
use super::settings::{IslandSettings, SettingValue, SettingsError};
use super::types::{
    BlackoutReason, BreakerCommand, CloseConditions, GridState, InverterCommand, InverterMode, IslandEvent,
    IslandInputs, IslandOutput, ShedCause, StopReason, MAX_EVENTS,
};
use ems_core::snapshot::GridTie;
use ems_core::{Millis, Watts};
use heapless::Vec;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Starting,
    Connected { ramp_from: Millis },
    Opening { since: Millis },
    Forming { since: Millis, black_start: bool },
    Islanded,
    Synchronising { since: Millis },
    Closing { since: Millis, dead_bus: bool },
    Blackout { since: Millis },
    SafeStop { reason: StopReason },
}

impl Phase {
    const fn state(self) -> GridState {
        match self {
            Self::Starting => GridState::Starting,
            Self::Connected { .. } => GridState::Connected,
            Self::Opening { .. } | Self::Forming { black_start: false, .. } => GridState::Transferring,
            Self::Forming { black_start: true, .. } => GridState::BlackStart,
            Self::Islanded => GridState::Islanded,
            Self::Synchronising { .. } => GridState::Resynchronising,
            Self::Closing { .. } => GridState::Reconnecting,
            Self::Blackout { .. } => GridState::Blackout,
            Self::SafeStop { .. } => GridState::SafeStop,
        }
    }
}

/// A condition timer (`Some(since)` while it holds).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct Held(Option<Millis>);

impl Held {
    fn update(&mut self, now: Millis, cond: bool) -> Millis {
        if cond {
            now.since(*self.0.get_or_insert(now))
        } else {
            self.0 = None;
            Millis::ZERO
        }
    }
}

/// The commands being built in one cycle.
#[derive(Debug, Clone)]
struct Cycle {
    breaker: BreakerCommand,
    inverter: InverterCommand,
    events: Vec<IslandEvent, MAX_EVENTS>,
    dropped: u8,
}

impl Cycle {
    fn event(&mut self, e: IslandEvent) {
        if self.events.push(e).is_err() {
            self.dropped = self.dropped.saturating_add(1);
        }
    }
}

/// The island sequence of one site. Call [`Self::step`] once a cycle; it reads no clock, does
/// no I/O and never allocates.
#[derive(Debug, Clone)]
pub struct IslandSequencer {
    settings: IslandSettings,
    rated: Watts,
    table: LoadTable,
    detector: IslandDetector,
    enter: EnterServiceMonitor,
    phase: Phase,
    loads: LoadMask,
    last_step: Option<Millis>,
    last_shed: Option<Millis>,
    bus_ok: Held,
    no_energy: Held,
    bus_bad: Held,
    relay_mismatch: Held,
    breaker_unknown: Held,
    breaker_unknown_for: Millis,
    mismatch_reported: bool,
    black_start_requested: bool,
}

impl IslandSequencer {
    /// A sequence for a site whose inverter is rated `rated` (grid-forming, both directions),
    /// with these load circuits.
    ///
    /// # Errors
    /// [`SettingsError`] for invalid settings, a rating that is not > 0 W or an invalid load
    /// table.
    pub fn try_new(
        settings: IslandSettings,
        rated: Watts,
        loads: &[LoadCircuit],
    ) -> Result<Self, SettingsError> {
        settings.validate()?;
        if rated <= Watts::ZERO {
            return Err(SettingsError::new("rated", SettingValue::Watts(rated), "must be > 0 W"));
        }
        let table = LoadTable::try_new(loads)?;
        let all = table.all();
        Ok(Self {
            detector: IslandDetector::new(settings.protection),
            enter: EnterServiceMonitor::new(settings.enter_service),
            settings,
            rated,
            table,
            phase: Phase::Starting,
            loads: all,
            last_step: None,
            last_shed: None,
            bus_ok: Held::default(),
            no_energy: Held::default(),
            bus_bad: Held::default(),
            relay_mismatch: Held::default(),
            breaker_unknown: Held::default(),
            breaker_unknown_for: Millis::ZERO,
            mismatch_reported: false,
            black_start_requested: false,
        })
    }

    /// The grid state.
    #[must_use]
    pub fn state(&self) -> GridState {
        self.phase.state()
    }

    /// The load table.
    #[must_use]
    pub fn loads(&self) -> &LoadTable {
        &self.table
    }

    /// The settings.
    #[must_use]
    pub fn settings(&self) -> &IslandSettings {
        &self.settings
    }

    /// Ask for a black start (taken in `Blackout` when the battery can supply and the grid is
    /// not healthy; forgotten otherwise at the next cycle that cannot take it).
    pub fn request_black_start(&mut self) {
        self.black_start_requested = true;
    }

    /// Operator reset of a safe stop: back to `Blackout`, from where the normal conditions
    /// apply. Returns false (and changes nothing) outside `SafeStop`.
    pub fn reset(&mut self, now: Millis) -> bool {
        if matches!(self.phase, Phase::SafeStop { .. }) {
            self.phase = Phase::Blackout { since: now };
            true
        } else {
            false
        }
    }

    /// The close conditions for `inputs` after the detector and the enter-service monitor saw
    /// this cycle's sample.
    fn close_conditions(&self, inputs: &IslandInputs, healthy: bool, d: &Detection) -> CloseConditions {
        let s = &self.settings.sync;
        let g = &inputs.grid;
        let b = &inputs.bus;
        let dead_bus =
            inputs.inverter == Some(InverterMode::Off) && b.voltage.is_some_and(|v| v < s.dead_bus);
        let in_sync = match (g.voltage, g.frequency, b.voltage, b.frequency, inputs.phase_difference) {
            (Some(gv), Some(gf), Some(bv), Some(bf), Some(ph)) => {
                // In f32: `Hertz` and `Volts` are non-negative, so their own difference would
                // saturate a negative Δ to zero and pass any bus below the grid.
                abs_diff(gf.get(), bf.get()) <= s.max_df.get()
                    && abs_diff(gv.get(), bv.get()) <= s.max_du.get()
                    && ph.abs() <= s.max_phase
            }
            _ => false,
        };
        CloseConditions {
            grid_healthy: healthy && self.enter.inside(g.voltage, g.frequency),
            no_trip: d.trip.is_none(),
            breaker_open: inputs.breaker == Some(GridTie::Open),
            synchronised: dead_bus || in_sync,
            authorised: !matches!(self.phase, Phase::SafeStop { .. }) && !inputs.inverter_fault,
        }
    }

    fn go(&mut self, c: &mut Cycle, to: Phase) {
        let from = self.phase.state();
        self.phase = to;
        if from != to.state() {
            c.event(IslandEvent::State { from, to: to.state() });
        }
    }

    fn stop(&mut self, c: &mut Cycle, reason: StopReason) {
        c.event(IslandEvent::Stopped(reason));
        self.go(c, Phase::SafeStop { reason });
    }

    fn blackout(&mut self, now: Millis, c: &mut Cycle, reason: BlackoutReason) {
        c.event(IslandEvent::Blackout(reason));
        self.go(c, Phase::Blackout { since: now });
    }

    /// One cycle.
    pub fn step(&mut self, now: Millis, inputs: &IslandInputs) -> IslandOutput {
        let detection = self.detector.update(now, inputs.grid.voltage, inputs.grid.frequency);
        let healthy = self.enter.update(now, inputs.grid.voltage, inputs.grid.frequency);
        self.breaker_unknown_for = self.breaker_unknown.update(now, inputs.breaker.is_none());
        let mut c = Cycle {
            breaker: BreakerCommand::Hold,
            inverter: InverterCommand::Off,
            events: Vec::new(),
            dropped: 0,
        };
        let close = self.close_conditions(inputs, healthy, &detection);
        self.transition(now, inputs, &detection, &close, &mut c);
        self.command(now, inputs, &mut c);
        let mut power_limit = None;
        if let Phase::Connected { ramp_from } = self.phase {
            power_limit = self.ramp_limit(now, ramp_from);
        }
        // The final gate: whatever the phases decided, no close without every condition.
        let close = self.close_conditions(inputs, healthy, &detection);
        if c.breaker == BreakerCommand::Close && !close.all() {
            c.breaker = BreakerCommand::Open;
            c.event(IslandEvent::CloseRefused(close.first_false().unwrap_or("unknown")));
        }
        self.verify_relays(now, inputs, &mut c);
        IslandOutput {
            state: self.phase.state(),
            breaker: c.breaker,
            inverter: c.inverter,
            loads: self.loads,
            setpoints_allowed: matches!(self.phase, Phase::Connected { .. }),
            power_limit,
            close,
            detection,
            stop: match self.phase {
                Phase::SafeStop { reason } => Some(reason),
                Phase::Starting
                | Phase::Connected { .. }
                | Phase::Opening { .. }
                | Phase::Forming { .. }
                | Phase::Islanded
                | Phase::Synchronising { .. }
                | Phase::Closing { .. }
                | Phase::Blackout { .. } => None,
            },
            events: c.events,
            events_dropped: c.dropped,
            grid_healthy_for: self.enter.held(now),
        }
    }

    /// `rated × ramp %/min × minutes since`, `None` once at the rating.
    fn ramp_limit(&self, now: Millis, from: Millis) -> Option<Watts> {
        let minutes = now.since(from).as_secs_f32() / 60.0;
        let share = self.settings.enter_service.ramp_per_min.fraction() * minutes;
        (share < 1.0).then(|| self.rated.scale(share.max(0.0)))
    }

    fn bus_in_window(&self, inputs: &IslandInputs) -> bool {
        let w = &self.settings.bus;
        matches!((inputs.bus.voltage, inputs.bus.frequency), (Some(v), Some(f))
            if v >= w.u_min && v <= w.u_max && f >= w.f_min && f <= w.f_max)
    }

    fn can_form(inputs: &IslandInputs) -> bool {
        inputs.available > Watts::ZERO && !inputs.inverter_fault
    }

    fn transition(
        &mut self,
        now: Millis,
        inputs: &IslandInputs,
        d: &Detection,
        close: &CloseConditions,
        c: &mut Cycle,
    ) {
        let seq = self.settings.sequence;
        let breaker = inputs.breaker;
        match self.phase {
            Phase::Starting => match breaker {
                Some(GridTie::Closed) => self.go(c, Phase::Connected { ramp_from: now }),
                Some(GridTie::Open) => self.blackout(now, c, BlackoutReason::Idle),
                None => {}
            },
            Phase::Connected { .. } => {
                if let Some(cause) = d.trip {
                    c.event(IslandEvent::GridLost(cause));
                    self.go(c, Phase::Opening { since: now });
                } else if breaker == Some(GridTie::Open) {
                    c.event(IslandEvent::BreakerOpenedExternally);
                    self.go(c, Phase::Opening { since: now });
                }
            }
            Phase::Opening { since } => {
                if breaker == Some(GridTie::Open) {
                    if Self::can_form(inputs) {
                        self.go(c, Phase::Forming { since: now, black_start: false });
                    } else {
                        let why = if inputs.inverter_fault {
                            BlackoutReason::InverterLost
                        } else {
                            BlackoutReason::NoEnergy
                        };
                        self.blackout(now, c, why);
                    }
                } else if now.since(since) >= seq.breaker_verify {
                    self.stop(c, StopReason::BreakerFailedToOpen);
                }
            }
            Phase::Forming { since, black_start } => {
                if breaker == Some(GridTie::Closed) {
                    self.stop(c, StopReason::BreakerClosedUnexpectedly);
                } else if self.breaker_unknown_for >= seq.breaker_verify {
                    self.stop(c, StopReason::BreakerReadbackLost);
                } else if inputs.inverter == Some(InverterMode::GridForming) && self.bus_in_window(inputs) {
                    self.last_step = None;
                    self.last_shed = None;
                    self.go(c, Phase::Islanded);
                } else if now.since(since) >= seq.forming_verify {
                    let r = if black_start {
                        StopReason::BlackStartFailed
                    } else {
                        StopReason::InverterDidNotForm
                    };
                    self.stop(c, r);
                }
            }
            Phase::Islanded | Phase::Synchronising { .. } => self.islanded(now, inputs, d, close, c),
            Phase::Closing { since, dead_bus } => {
                if breaker == Some(GridTie::Closed) {
                    self.loads = self.table.all();
                    self.go(c, Phase::Connected { ramp_from: now });
                } else if !close.all() {
                    c.event(IslandEvent::CloseRefused(close.first_false().unwrap_or("unknown")));
                    if dead_bus {
                        self.go(c, Phase::Blackout { since: now });
                    } else {
                        self.go(c, Phase::Islanded);
                    }
                } else if now.since(since) >= seq.breaker_verify {
                    self.stop(c, StopReason::BreakerFailedToClose);
                }
            }
            Phase::Blackout { since } => {
                let auto = seq.auto_black_start.is_some_and(|after| now.since(since) >= after);
                if breaker == Some(GridTie::Closed) {
                    self.stop(c, StopReason::BreakerClosedUnexpectedly);
                } else if close.all() {
                    self.go(c, Phase::Closing { since: now, dead_bus: true });
                } else if (self.black_start_requested || auto)
                    && Self::can_form(inputs)
                    && !close.grid_healthy
                    && breaker == Some(GridTie::Open)
                {
                    self.black_start_requested = false;
                    self.go(c, Phase::Forming { since: now, black_start: true });
                }
            }
            Phase::SafeStop { .. } => {}
        }
        if !matches!(self.phase, Phase::Blackout { .. }) {
            self.black_start_requested = false;
        }
    }

    /// Islanded and resynchronising: supervision, grid return, synchronisation, loads.
    fn islanded(
        &mut self,
        now: Millis,
        inputs: &IslandInputs,
        d: &Detection,
        close: &CloseConditions,
        c: &mut Cycle,
    ) {
        let seq = self.settings.sequence;
        if inputs.breaker == Some(GridTie::Closed) {
            self.stop(c, StopReason::BreakerClosedUnexpectedly);
            return;
        }
        if self.breaker_unknown_for >= seq.breaker_verify {
            self.stop(c, StopReason::BreakerReadbackLost);
            return;
        }
        if inputs.inverter_fault || inputs.inverter != Some(InverterMode::GridForming) {
            self.loads = LoadMask::NONE;
            self.blackout(now, c, BlackoutReason::InverterLost);
            return;
        }
        if self.no_energy.update(now, inputs.available <= Watts::ZERO) >= seq.no_energy_delay {
            self.loads = LoadMask::NONE;
            self.blackout(now, c, BlackoutReason::NoEnergy);
            return;
        }
        let bad_for = self.bus_bad.update(now, !self.bus_in_window(inputs) && self.loads == LoadMask::NONE);
        if bad_for >= seq.forming_verify {
            self.blackout(now, c, BlackoutReason::BusOutOfWindow);
            return;
        }
        self.manage_loads(now, inputs, c);
        match self.phase {
            Phase::Islanded => {
                if close.grid_healthy && d.trip.is_none() {
                    self.go(c, Phase::Synchronising { since: now });
                }
            }
            Phase::Synchronising { since } => {
                if !close.grid_healthy || d.trip.is_some() {
                    self.go(c, Phase::Islanded);
                } else if close.all() {
                    self.go(c, Phase::Closing { since: now, dead_bus: false });
                } else if now.since(since) >= seq.sync_timeout {
                    c.event(IslandEvent::SyncFailed);
                    self.enter.restart();
                    self.go(c, Phase::Islanded);
                }
            }
            Phase::Starting
            | Phase::Connected { .. }
            | Phase::Opening { .. }
            | Phase::Forming { .. }
            | Phase::Closing { .. }
            | Phase::Blackout { .. }
            | Phase::SafeStop { .. } => {}
        }
    }

    /// Shed by priority when overloaded, sagging or low on SOC; restore one by one by priority
    /// when there is headroom and the bus has settled.
    fn manage_loads(&mut self, now: Millis, inputs: &IslandInputs, c: &mut Cycle) {
        let seq = self.settings.sequence;
        let w = self.settings.bus;
        let critical_only = none_or(inputs.soc, |s| s < seq.critical_only_soc);
        let overload =
            inputs.island_load.is_some_and(|p| p > inputs.available.scale(seq.shed_level.fraction()));
        let sag = inputs.bus.voltage.is_some_and(|v| v < w.u_min)
            || inputs.bus.frequency.is_some_and(|f| f < w.f_min);
        let settled = self.bus_ok.update(now, self.bus_in_window(inputs)) >= seq.settle_time;
        let shed_due = none_or(self.last_shed, |t| now.since(t) >= seq.shed_interval);
        let cause = if overload {
            Some(ShedCause::Overload)
        } else if sag {
            Some(ShedCause::BusSag)
        } else if critical_only && self.table.next_to_shed(self.loads, |l| l.priority > 0).is_some() {
            Some(ShedCause::LowSoc)
        } else {
            None
        };
        if let Some(cause) = cause {
            if shed_due {
                let low_soc = matches!(cause, ShedCause::LowSoc);
                if let Some(i) = self.table.next_to_shed(self.loads, |l| !low_soc || l.priority > 0) {
                    self.loads = self.loads.with(i, false);
                    self.last_shed = Some(now);
                    c.event(IslandEvent::LoadShed { index: i, cause });
                }
            }
            return;
        }
        let step_due = none_or(self.last_step, |t| now.since(t) >= seq.load_step_interval);
        let restore_due = none_or(self.last_shed, |t| now.since(t) >= seq.restore_delay);
        let Some(drawn) = inputs.island_load else { return };
        if !(settled && step_due && restore_due) {
            return;
        }
        let headroom = inputs.available - drawn.max(Watts::ZERO);
        let max_step = self.rated.scale(seq.max_load_step.fraction());
        let margin = 1.0 + seq.restore_margin.fraction();
        let next = self.table.next_to_restore(self.loads, |l| {
            (!critical_only || l.priority == 0)
                && l.nominal <= max_step
                && l.nominal.scale(margin) <= headroom
        });
        if let Some(i) = next {
            self.loads = self.loads.with(i, true);
            self.last_step = Some(now);
            c.event(IslandEvent::LoadRestored { index: i });
        }
    }

    /// The commands of the phase the cycle ended in.
    fn command(&mut self, _now: Millis, _inputs: &IslandInputs, c: &mut Cycle) {
        let (breaker, inverter) = match self.phase {
            Phase::Starting => (BreakerCommand::Hold, InverterCommand::Off),
            Phase::Connected { .. } => {
                self.loads = self.table.all();
                (BreakerCommand::Hold, InverterCommand::GridFollowing)
            }
            Phase::Opening { .. } | Phase::Blackout { .. } | Phase::SafeStop { .. } => {
                self.loads = LoadMask::NONE;
                (BreakerCommand::Open, InverterCommand::Off)
            }
            Phase::Forming { .. } => {
                self.loads = LoadMask::NONE;
                (BreakerCommand::Open, InverterCommand::GridForming)
            }
            Phase::Islanded => (BreakerCommand::Open, InverterCommand::GridForming),
            Phase::Synchronising { .. } => (BreakerCommand::Open, InverterCommand::Synchronise),
            Phase::Closing { dead_bus: true, .. } => (BreakerCommand::Close, InverterCommand::Off),
            Phase::Closing { dead_bus: false, .. } => (BreakerCommand::Close, InverterCommand::Synchronise),
        };
        c.breaker = breaker;
        c.inverter = inverter;
    }

    fn verify_relays(&mut self, now: Millis, inputs: &IslandInputs, c: &mut Cycle) {
        let mismatch = inputs.loads.is_some_and(|r| r != self.loads);
        let held = self.relay_mismatch.update(now, mismatch);
        if !mismatch {
            self.mismatch_reported = false;
        } else if held >= self.settings.sequence.relay_verify && !self.mismatch_reported {
            self.mismatch_reported = true;
            if let Some(read) = inputs.loads {
                c.event(IslandEvent::RelayMismatch { commanded: self.loads, read });
            }
        }
    }
}

/// `|a − b|` (`f32::abs` is not in `core` at this crate's minimum Rust version).
fn abs_diff(a: f32, b: f32) -> f32 {
    if a > b {
        a - b
    } else {
        b - a
    }
}

/// `true` when `v` is `None`, else `f(v)`.
fn none_or<T>(v: Option<T>, f: impl FnOnce(T) -> bool) -> bool {
    match v {
        None => true,
        Some(v) => f(v),
    }
}
