//! The per-cycle controller: the functional core of one control cycle (design.md §3).
//!
//! [`Controller::step`] reads no clock, does no I/O and never allocates. It runs, in order:
//! the emergency handler, the safety monitor (envelope), trips into the state machine, operator
//! requests, the proposals (default mode, plan slot, overrides, grid services) and their
//! arbitration ([`crate::arbitration`]), the final clamp and the contactor logic, and returns
//! the command with the state, the envelope, the source of the set-point and the events that
//! explain it.

use crate::arbitration::{
    arbitrate, Arbitrated, Candidates, CommandSource, Override, OverrideError, PlanExecutor, PlanTarget,
    ProviderTarget, RuleTarget,
};
use crate::clamp::{final_clamp, Clamped};
use crate::command::{Command, CommandClass};
use crate::grid_service::{GridRequest, GridService, NoGridService};
use crate::modes::{Feedback, Mode, ModeError, ModeSetting, Proposal, ProposalReason};
use crate::ramp::{PowerRamper, RampRate};
use ems_core::emergency::{
    EmergencyDemand, EmergencyHandler, ShutdownConfig, ShutdownPhase, REASON_CAPACITY,
};
use ems_core::event::{Constraint, GridTieLimit};
use ems_core::persist::PersistedState;
use ems_core::snapshot::ContactorState;
use ems_core::state::{Guards, Transition, TransitionError};
use ems_core::{
    ContactorCommand, EventKind, Events, Millis, Snapshot, State, StateMachine, TransitionRequest,
    TripReason, WattHours, Watts,
};
use ems_safety::{Envelope, SafetyConfig, SafetyMonitor};

/// Controller settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ControllerConfig {
    /// Safety monitor settings (limits, derating, interlocks, grid limits).
    pub safety: SafetyConfig,
    /// Maximum rate of change of the battery set-point.
    pub ramp: RampRate,
    /// Graceful-shutdown settings.
    pub shutdown: ShutdownConfig,
    /// The mode selected at start.
    pub mode: ModeSetting,
    /// How long contactor feedback may disagree with the command before tripping.
    pub contactor_timeout: Millis,
    /// The nominal cycle period (for [`Controller::next_deadline`]).
    pub cycle: Millis,
    /// The battery's usable capacity, to turn a grid service's energy reserve into an SOC
    /// bound ([`crate::Reserve::narrow`]); `None`: an energy reserve keeps the whole direction.
    pub capacity: Option<WattHours>,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            safety: SafetyConfig::default(),
            ramp: RampRate::per_second(ems_core::watts!(2500.0)),
            shutdown: ShutdownConfig::default(),
            mode: ModeSetting::ChargeOnly(crate::modes::ChargeOnlyConfig::default()),
            contactor_timeout: Millis::from_secs(5),
            cycle: Millis::new(100),
            capacity: None,
        }
    }
}

/// Invalid controller settings.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// The mode settings are invalid.
    #[error(transparent)]
    Mode(#[from] ModeError),
    /// The safety settings are invalid.
    #[error("safety config: {0}")]
    Safety(ems_safety::ConfigError),
    /// The cycle period is zero.
    #[error("field 'cycle' = 0 ms must be > 0")]
    ZeroCycle,
}

/// What the outside asks of this cycle. Everything defaults to "nothing".
#[derive(Debug, Clone, Copy, Default)]
pub struct Inputs<'a> {
    /// A state-machine request (boot complete, start, stop, acknowledge, reset).
    pub request: Option<TransitionRequest>,
    /// The operator's reason, required with [`TransitionRequest::Reset`].
    pub reason: &'a str,
    /// A software emergency stop (API, operator button).
    pub emergency_stop: bool,
    /// Start a graceful shutdown.
    pub shutdown: bool,
    /// Switch the active mode.
    pub set_mode: Option<ModeSetting>,
    /// Faults detected by the device layer since the last cycle (a set-point not applied, a
    /// failed pre-charge, a welded contactor); each trips the system.
    pub device_trips: &'a [TripReason],
    /// The site's local minute of day (`0..1440`, in the site's time zone, supplied by the
    /// shell); selects peak-shaving cap slots. `None` (or a value ≥ 1440) = the default caps.
    pub local_minute: Option<u16>,
    /// An operator/API control-mode override active in this cycle (its watchdog and expiry
    /// live in the API layer). Must pass [`Override::validate`]; an invalid one is ignored and
    /// reported in [`Output::override_refused`].
    pub ess_override: Option<Override>,
    /// The current slot of a day-ahead plan; replaces the default mode's proposal
    /// (execution policy in [`crate::arbitration`]).
    pub plan: Option<PlanTarget>,
    /// A provider schedule due now; replaces the plan and the mode, below an operator rule and
    /// an operator override ([`crate::arbitration`]).
    pub provider: Option<ProviderTarget>,
    /// The action of the operator rule that won this cycle (the rules engine runs off the
    /// control thread); ranked above the provider schedule and below the operator override
    /// ([`crate::arbitration`]). Its action must pass [`Override::validate`]; an invalid one is
    /// ignored and reported in [`Output::rule_refused`].
    pub rule: Option<RuleTarget>,
    /// The grid-tie (island) sequence's bound of this cycle (`None`: the site has no island
    /// sequence). It narrows the envelope in both directions to `limit` with its reason
    /// ([`Constraint::GridTie`]), before any proposal and before the final clamp.
    pub grid_tie: Option<GridTieBound>,
}

/// The island sequence's bound on the battery set-point, in control-layer terms (the runtime
/// translates `ems-grid`'s `IslandOutput`: `setpoints_allowed == false` → zero, the
/// reconnection ramp's `power_limit` → that limit).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GridTieBound {
    /// The largest |set-point| (a negative value counts as zero: the safe side).
    pub limit: Watts,
    /// Why.
    pub reason: GridTieLimit,
}

impl GridTieBound {
    /// No set-point at all, for `reason`.
    #[must_use]
    pub const fn zero(reason: GridTieLimit) -> Self {
        Self { limit: Watts::ZERO, reason }
    }

    /// Narrow `envelope` (monotone: it can only shrink).
    pub fn narrow(&self, envelope: &mut Envelope) {
        let limit = self.limit.max(Watts::ZERO);
        envelope.limit_both(limit, Constraint::GridTie(self.reason));
    }
}

/// Everything one cycle decided, with its reasons.
#[derive(Debug, Clone)]
pub struct Output {
    /// The command for the devices (after the final clamp).
    pub command: Command,
    /// The state after this cycle.
    pub state: State,
    /// The envelope computed from this cycle's snapshot.
    pub envelope: Envelope,
    /// The default mode's proposal (what the mode alone would do; zero with reason
    /// [`ProposalReason::Passive`] outside RUNNING). The set-point actually handed to the final
    /// clamp is [`Self::requested`], set by [`Self::source`].
    pub proposal: Proposal,
    /// The set-point arbitration handed to the final clamp (before safety).
    pub requested: Watts,
    /// Which layer set [`Self::requested`]: the mode, the plan, a provider schedule, an
    /// override or a grid service.
    pub source: CommandSource,
    /// The layer [`Self::source`] overruled, modified or added to (`None`: nothing below it
    /// proposed).
    pub over: Option<CommandSource>,
    /// The grid service's request of this cycle (`None`: no service active).
    pub grid: Option<GridRequest>,
    /// The layers below the grid service were cut by its reserve
    /// ([`ems_core::event::Constraint::GridServiceReserve`]).
    pub reserve_bound: bool,
    /// Whether [`Self::source`] differs from the previous cycle's (for the audit log; there is
    /// no event kind for it in `ems-core`).
    pub source_changed: bool,
    /// The constraint that made the command differ from [`Self::requested`] (safety: the
    /// envelope, the ramp, the state machine, an E-stop or a shutdown).
    pub binding: Option<Constraint>,
    /// Events of this cycle.
    pub events: Events,
    /// A request of this cycle that was refused, and why.
    pub refused: Option<TransitionError>,
    /// A mode change of this cycle that was refused (the previous mode stays active), and why.
    pub mode_refused: Option<ModeError>,
    /// An override of this cycle that was refused (and therefore ignored), and why.
    pub override_refused: Option<OverrideError>,
    /// A rule action of this cycle that was refused (and therefore ignored), and why.
    pub rule_refused: Option<OverrideError>,
    /// The shutdown phase.
    pub shutdown: ShutdownPhase,
}

impl Output {
    /// Whether the state machine changed state in this cycle (the caller persists it then).
    #[must_use]
    pub fn state_changed(&self) -> bool {
        self.events.iter().any(|e| matches!(e.kind, EventKind::StateChanged { .. }))
    }
}

/// The controller.
#[derive(Debug, Clone)]
pub struct Controller {
    config: ControllerConfig,
    sm: StateMachine,
    emergency: EmergencyHandler,
    safety: SafetyMonitor,
    mode: Mode,
    plan: PlanExecutor,
    ramper: PowerRamper,
    last_command: Command,
    last_binding: Option<Constraint>,
    last_source: Option<CommandSource>,
    mismatch_since: Option<Millis>,
    last_now: Millis,
    boot_events: Events,
}

impl Controller {
    /// A controller in BOOT.
    ///
    /// # Errors
    /// [`ConfigError`] when the cycle is zero, or the safety or mode settings are invalid.
    pub fn new(config: ControllerConfig) -> Result<Self, ConfigError> {
        if config.cycle == Millis::ZERO {
            return Err(ConfigError::ZeroCycle);
        }
        config.safety.validate().map_err(ConfigError::Safety)?;
        let mode = Mode::new(config.mode)?;
        Ok(Self {
            sm: StateMachine::new(),
            emergency: EmergencyHandler::new(config.shutdown),
            safety: SafetyMonitor::new(config.safety.clone()),
            mode,
            plan: PlanExecutor::default(),
            ramper: PowerRamper::new(config.ramp),
            last_command: Command::SAFE,
            last_binding: None,
            last_source: None,
            mismatch_since: None,
            last_now: Millis::ZERO,
            boot_events: Events::new(),
            config,
        })
    }

    /// A controller restored from persisted state: STOPPED and ERROR survive a reboot.
    ///
    /// # Errors
    /// [`ConfigError`] as [`Self::new`].
    pub fn restore(config: ControllerConfig, persisted: &PersistedState) -> Result<Self, ConfigError> {
        let mut c = Self::new(config)?;
        let (sm, transition) = StateMachine::restore(persisted);
        c.sm = sm;
        if let Some(t) = transition {
            c.boot_events.push(Millis::ZERO, t.event(Millis::ZERO).kind);
        }
        Ok(c)
    }

    /// The current state.
    #[must_use]
    pub const fn state(&self) -> State {
        self.sm.state()
    }

    /// Latched faults.
    #[must_use]
    pub fn latched(&self) -> &[TripReason] {
        self.sm.latched()
    }

    /// Whether the supervised deep-discharge recovery is active: RUNNING with discharge
    /// forbidden and charge bounded to a small current until the cells are back (see
    /// `ems_safety::SafetyMonitor::acknowledge`).
    #[must_use]
    pub const fn recovering(&self) -> bool {
        self.safety.recovering()
    }

    /// What to persist.
    #[must_use]
    pub fn persisted(&self) -> PersistedState {
        self.sm.persisted()
    }

    /// The active mode.
    #[must_use]
    pub const fn mode(&self) -> ModeSetting {
        self.mode.setting()
    }

    /// The configuration.
    #[must_use]
    pub const fn config(&self) -> &ControllerConfig {
        &self.config
    }

    /// The last command issued.
    #[must_use]
    pub const fn last_command(&self) -> Command {
        self.last_command
    }

    /// Who set the last set-point (`None` before the first cycle).
    #[must_use]
    pub const fn last_source(&self) -> Option<CommandSource> {
        self.last_source
    }

    /// The reason given with the last manual reset (audit).
    #[must_use]
    pub fn last_reset_reason(&self) -> &str {
        self.emergency.last_reset_reason()
    }

    /// When to call [`Self::step`] next, at the latest.
    #[must_use]
    pub const fn next_deadline(&self) -> Millis {
        self.last_now.plus(self.config.cycle)
    }

    /// One control cycle without a grid service: [`Self::step_with`] and [`NoGridService`].
    #[must_use]
    pub fn step(&mut self, now_ms: u64, snapshot: &Snapshot, inputs: &Inputs<'_>) -> Output {
        self.step_with(now_ms, snapshot, inputs, &mut NoGridService)
    }

    /// One control cycle. Pure in the sense of design.md §3: no clock, no I/O, no allocation.
    /// `service` is asked for its request while RUNNING, with this cycle's snapshot and
    /// envelope ([`crate::grid_service`]). This is the only function that makes a [`Command`].
    #[must_use]
    pub fn step_with<G: GridService + ?Sized>(
        &mut self,
        now_ms: u64,
        snapshot: &Snapshot,
        inputs: &Inputs<'_>,
        service: &mut G,
    ) -> Output {
        let now = Millis::new(now_ms);
        self.last_now = now;
        let mut events = core::mem::take(&mut self.boot_events);

        // 1. Emergency path first: an E-stop edge zeroes the command in this very cycle.
        let mut demand =
            self.emergency.poll(now, snapshot, self.last_command.setpoint(), &mut self.sm, &mut events);
        if inputs.shutdown {
            self.emergency.begin_shutdown(now, &mut events);
        }

        // 2. Safety envelope from this snapshot; trips latch into the state machine.
        let mut envelope = self.safety.evaluate(snapshot, now, &mut events);
        // The island sequence's bound is one more constraint of the envelope: every layer
        // below (grid service, override, rule, schedule, plan, mode) and the final clamp see it.
        if let Some(bound) = inputs.grid_tie {
            bound.narrow(&mut envelope);
        }
        for trip in envelope.trips() {
            self.trip(*trip, now, &mut events);
        }
        if let Some(reason) = self.contactor_mismatch(now, snapshot) {
            self.trip(reason, now, &mut events);
        }
        for trip in inputs.device_trips {
            self.trip(*trip, now, &mut events);
        }

        // 3. Requests.
        // A device fault reported this cycle is still present: it must block an acknowledge too.
        let device_fault = inputs.device_trips.first().copied();
        let refused = inputs.request.and_then(|r| {
            self.handle_request(r, inputs.reason, now, snapshot, device_fault, &mut events).err()
        });
        // An invalid mode keeps the current one and is reported in the output.
        let mode_refused = match inputs.set_mode.map(Mode::new) {
            Some(Ok(m)) => {
                self.mode = m;
                None
            }
            Some(Err(e)) => Some(e),
            None => None,
        };
        // The software E-stop is handled after the requests so that a reset in the same cycle
        // can never undo it.
        if inputs.emergency_stop {
            demand = merge(demand, self.emergency.request_estop(now, &mut self.sm, &mut events));
        }
        // A state change in this cycle (E-stop, trip) must be reflected in the demand.
        if self.sm.state() == State::Stopped {
            demand.force_zero = true;
            demand.open_contactors = true;
        }

        // 4. Proposals and arbitration, 5. final clamp (the single choke point).
        let override_refused = inputs.ess_override.and_then(|o| o.validate().err());
        let ess_override = inputs.ess_override.filter(|_| override_refused.is_none());
        let rule_refused = inputs.rule.and_then(|r| r.action.validate().err());
        let rule = inputs.rule.filter(|_| rule_refused.is_none());
        // What became of the previous cycle's set-point: the modes' anti-windup.
        let feedback = Some(Feedback {
            commanded: self.last_command.setpoint(),
            source: self.last_source.unwrap_or(CommandSource::NotRunning),
        });
        let (proposal, arbitrated, grid) =
            self.arbitrate_cycle(now, snapshot, inputs, (rule, ess_override), feedback, &envelope, service);
        let requested = arbitrated.setpoint;
        // A grid service that acts brings its own ramp (`None`: a step) and bypasses the
        // device's comfort shaping; everything else obeys the site's ramp.
        let (ramp, class) = match grid {
            Some(g) if g.acts() => (g.ramp, CommandClass::GridService),
            Some(_) | None => (Some(self.config.ramp), CommandClass::Comfort),
        };
        let Clamped { command: setpoint, binding } =
            final_clamp(requested, now, self.sm.state(), demand, &envelope, &mut self.ramper, ramp);
        if binding != self.last_binding {
            if let Some(by) = binding {
                events.push(now, EventKind::CommandLimited { requested, commanded: setpoint, by });
            }
            self.last_binding = binding;
        }
        let source_changed = self.last_source != Some(arbitrated.source);
        self.last_source = Some(arbitrated.source);

        // 6. Contactors.
        let contactor = self.contactor_command(demand, &envelope, setpoint);
        self.last_command =
            Command::new(setpoint, (envelope.max_charge(), envelope.max_discharge()), contactor, ramp, class);

        Output {
            command: self.last_command,
            state: self.sm.state(),
            envelope,
            proposal,
            requested,
            source: arbitrated.source,
            over: arbitrated.over,
            grid,
            reserve_bound: arbitrated.reserve_bound,
            source_changed,
            binding,
            events,
            refused,
            mode_refused,
            override_refused,
            rule_refused,
            shutdown: self.emergency.shutdown_phase(),
        }
    }

    /// Proposals and arbitration of one cycle (step 4 of [`Self::step_with`]): the grid
    /// service's request and reserve, the mode, the plan, the provider schedule, the rule and
    /// the override (both validated), ranked by [`arbitrate`].
    #[allow(clippy::too_many_arguments)] // the cycle's inputs, passed through once
    fn arbitrate_cycle<G: GridService + ?Sized>(
        &mut self,
        now: Millis,
        snapshot: &Snapshot,
        inputs: &Inputs<'_>,
        (rule, ess_override): (Option<RuleTarget>, Option<Override>),
        feedback: Option<Feedback>,
        envelope: &Envelope,
        service: &mut G,
    ) -> (Proposal, Arbitrated, Option<GridRequest>) {
        match self.sm.state() {
            State::Running => {
                let grid = service.request(now, snapshot, envelope);
                // What the layers below the service may use.
                // Only a reserve builds a second envelope; every other cycle uses this one as is.
                let reserved = grid.filter(|g| g.reserve != crate::Reserve::NONE).map(|g| {
                    g.reserve.narrow(envelope, self.config.capacity, snapshot.battery.soc.value_at(now))
                });
                let narrowed = reserved.as_ref().unwrap_or(envelope);
                let proposal = self.mode.propose_with(now, snapshot, inputs.local_minute, feedback);
                let plan = match inputs.plan {
                    Some(slot) => Some(self.plan.propose(
                        slot,
                        now,
                        snapshot,
                        narrowed,
                        self.mode.setting().reserve_soc(),
                        feedback,
                    )),
                    None => {
                        self.plan.reset();
                        None
                    }
                };
                let candidates = Candidates {
                    mode: proposal,
                    plan,
                    provider: inputs.provider.map(|p| (p.operation, p.setpoint_at(now, snapshot))),
                    rule,
                    ess_override,
                    grid: grid.map(|g| (service.name(), g)),
                };
                (proposal, arbitrate(&candidates, narrowed), grid)
            }
            State::Boot | State::Idle | State::Error | State::Stopped => {
                let _ = self.mode.propose_with(now, snapshot, inputs.local_minute, feedback);
                self.plan.reset();
                (
                    Proposal { setpoint: Watts::ZERO, reason: ProposalReason::Passive },
                    Arbitrated {
                        setpoint: Watts::ZERO,
                        source: CommandSource::NotRunning,
                        over: None,
                        reserve_bound: false,
                    },
                    None,
                )
            }
        }
    }

    fn trip(&mut self, reason: TripReason, now: Millis, events: &mut Events) {
        if let Some(t) = self.sm.trip(reason) {
            push_transition(events, t, now);
        }
    }

    fn handle_request(
        &mut self,
        request: TransitionRequest,
        reason: &str,
        now: Millis,
        snapshot: &Snapshot,
        device_fault: Option<TripReason>,
        events: &mut Events,
    ) -> Result<(), TransitionError> {
        let active_fault = self.safety.active_fault(snapshot, now).or(device_fault);
        let result = match request {
            TransitionRequest::Reset => {
                let mut text = heapless::String::<REASON_CAPACITY>::new();
                for c in reason.chars() {
                    if text.push(c).is_err() {
                        break;
                    }
                }
                self.emergency
                    .manual_reset(now, &text, snapshot, active_fault, &mut self.sm, events)
                    .map(|_| ())
            }
            TransitionRequest::Acknowledge => {
                let guards = Guards { active_fault, estop_released: !snapshot.estop_pressed(now) };
                self.sm.request(request, guards).map(|t| {
                    // Unlatches limit trips; a cell under-voltage still present starts the
                    // supervised recovery charge (`SafetyMonitor::acknowledge`).
                    self.safety.acknowledge(snapshot, now);
                    push_transition(events, t, now);
                })
            }
            TransitionRequest::BootComplete | TransitionRequest::Start | TransitionRequest::Stop => {
                let guards = Guards { active_fault, estop_released: !snapshot.estop_pressed(now) };
                self.sm.request(request, guards).map(|t| push_transition(events, t, now))
            }
        };
        if result.is_err() {
            events.push(now, EventKind::RequestRefused { request, state: self.sm.state() });
        }
        result
    }

    /// Feedback disagreeing with the command for longer than the timeout: a welded contactor
    /// (commanded open, reads closed) or one that does not close.
    fn contactor_mismatch(&mut self, now: Millis, snapshot: &Snapshot) -> Option<TripReason> {
        let feedback = snapshot.contactor.value_at(now);
        let mismatch = match (self.last_command.contactor(), feedback) {
            (ContactorCommand::Open, Some(ContactorState::Closed | ContactorState::Precharging)) => true,
            (ContactorCommand::Close, Some(ContactorState::Open | ContactorState::Precharging)) => true,
            (ContactorCommand::Open, Some(ContactorState::Open) | None)
            | (ContactorCommand::Close, Some(ContactorState::Closed) | None)
            | (ContactorCommand::Hold, _) => false,
        };
        if !mismatch {
            self.mismatch_since = None;
            return None;
        }
        let since = *self.mismatch_since.get_or_insert(now);
        (now.since(since) > self.config.contactor_timeout).then_some(TripReason::ContactorMismatch)
    }

    fn contactor_command(
        &self,
        demand: EmergencyDemand,
        envelope: &Envelope,
        setpoint: Watts,
    ) -> ContactorCommand {
        if demand.open_contactors {
            return ContactorCommand::Open;
        }
        match self.sm.state() {
            State::Boot | State::Error | State::Stopped => ContactorCommand::Open,
            State::Idle => ContactorCommand::Hold,
            State::Running => {
                if envelope.contactor_close_allowed() {
                    ContactorCommand::Close
                } else if setpoint == Watts::ZERO {
                    ContactorCommand::Open
                } else {
                    // The envelope forbids closing but the interlocks should already have zeroed
                    // power; hold until the set-point is zero so the contactor never breaks load.
                    ContactorCommand::Hold
                }
            }
        }
    }
}

fn push_transition(events: &mut Events, t: Transition, now: Millis) {
    events.push(now, t.event(now).kind);
}

fn merge(a: EmergencyDemand, b: EmergencyDemand) -> EmergencyDemand {
    EmergencyDemand {
        force_zero: a.force_zero || b.force_zero,
        ramp_to_zero: a.ramp_to_zero || b.ramp_to_zero,
        open_contactors: a.open_contactors || b.open_contactors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arbitration::OverrideKind;
    use crate::modes::{ChargeOnlyConfig, ChargeSource};
    use ems_safety::testkit::healthy_snapshot;

    fn running() -> (Controller, u64) {
        let mut c = Controller::new(ControllerConfig::default()).unwrap();
        let _ = c.step(
            0,
            &healthy_snapshot(Millis::ZERO),
            &Inputs { request: Some(TransitionRequest::BootComplete), ..Inputs::default() },
        );
        let _ = c.step(
            100,
            &healthy_snapshot(Millis::new(100)),
            &Inputs { request: Some(TransitionRequest::Start), ..Inputs::default() },
        );
        assert_eq!(c.state(), State::Running);
        (c, 100)
    }

    #[test]
    fn invalid_mode_change_is_refused_and_reported() {
        let (mut c, now) = running();
        let bad = ModeSetting::ChargeOnly(ChargeOnlyConfig {
            source: ChargeSource::Fixed(ems_core::watts!(-1.0)),
            ..ChargeOnlyConfig::default()
        });
        let out = c.step(
            now + 100,
            &healthy_snapshot(Millis::new(now + 100)),
            &Inputs { set_mode: Some(bad), ..Inputs::default() },
        );
        assert!(out.mode_refused.is_some());
        assert_eq!(c.mode(), ControllerConfig::default().mode);
    }

    #[test]
    fn software_estop_wins_over_a_reset_in_the_same_cycle() {
        let (mut c, now) = running();
        let inputs = Inputs {
            request: Some(TransitionRequest::Reset),
            reason: "x",
            emergency_stop: true,
            ..Inputs::default()
        };
        let out = c.step(now + 100, &healthy_snapshot(Millis::new(now + 100)), &inputs);
        assert_eq!(out.state, State::Stopped);
        assert_eq!(out.command.setpoint(), Watts::ZERO);
        assert_eq!(out.command.contactor(), ContactorCommand::Open);
        assert_eq!(out.binding, Some(Constraint::EmergencyStop));
    }

    #[test]
    fn an_estop_is_reported_as_an_emergency_stop_not_as_not_running() {
        let (mut c, now) = running();
        let manual = Some(ModeSetting::Manual { setpoint: ems_core::watts!(1000.0) });
        let _ = c.step(
            now + 100,
            &healthy_snapshot(Millis::new(now + 100)),
            &Inputs { set_mode: manual, ..Inputs::default() },
        );
        let out = c.step(
            now + 200,
            &healthy_snapshot(Millis::new(now + 200)),
            &Inputs { emergency_stop: true, ..Inputs::default() },
        );
        assert_eq!(out.state, State::Stopped);
        assert_eq!(out.command.setpoint(), Watts::ZERO);
        assert_eq!(out.binding, Some(Constraint::EmergencyStop));
        let out = c.step(now + 300, &healthy_snapshot(Millis::new(now + 300)), &Inputs::default());
        assert_eq!(out.binding, Some(Constraint::EmergencyStop), "named for as long as it holds");
    }

    #[test]
    fn welded_contactor_trips_after_the_timeout() {
        let (mut c, mut now) = running();
        // Stop: the controller holds the contactor in IDLE, so force an open command with an E-stop
        // and a later reset, then report the contactor still closed.
        now += 100;
        let _ = c.step(
            now,
            &healthy_snapshot(Millis::new(now)),
            &Inputs { emergency_stop: true, ..Inputs::default() },
        );
        let mut tripped = false;
        for _ in 0..80 {
            now += 100;
            // healthy_snapshot reports the contactor closed although it was commanded open.
            let out = c.step(now, &healthy_snapshot(Millis::new(now)), &Inputs::default());
            tripped |= c.latched().contains(&TripReason::ContactorMismatch);
            assert_eq!(out.command.contactor(), ContactorCommand::Open);
        }
        assert!(tripped, "no ContactorMismatch after 8 s of a welded contactor");
    }

    #[test]
    fn the_grid_tie_bound_narrows_the_envelope_with_its_reason() {
        let (mut c, mut now) = running();
        let manual = Some(ModeSetting::Manual { setpoint: ems_core::watts!(3000.0) });
        for _ in 0..30 {
            now += 100;
            let _ = c.step(
                now,
                &healthy_snapshot(Millis::new(now)),
                &Inputs { set_mode: manual, ..Inputs::default() },
            );
        }
        now += 100;
        let islanded = Some(GridTieBound::zero(GridTieLimit::Islanded));
        let out = c.step(
            now,
            &healthy_snapshot(Millis::new(now)),
            &Inputs { grid_tie: islanded, ..Inputs::default() },
        );
        assert_eq!(out.command.setpoint(), Watts::ZERO);
        assert_eq!(out.binding, Some(Constraint::GridTie(GridTieLimit::Islanded)));
        assert!(out.envelope.discharge_reasons().contains(&Constraint::GridTie(GridTieLimit::Islanded)));
        assert_eq!(
            Constraint::GridTie(GridTieLimit::Islanded).to_string(),
            "islanded: grid-forming inverter follows the load"
        );
        let ramp =
            Some(GridTieBound { limit: ems_core::watts!(1200.0), reason: GridTieLimit::ReconnectionRamp });
        for _ in 0..20 {
            now += 100;
            let out = c.step(
                now,
                &healthy_snapshot(Millis::new(now)),
                &Inputs { grid_tie: ramp, ..Inputs::default() },
            );
            assert!(out.command.setpoint() <= ems_core::watts!(1200.0));
        }
        now += 100;
        let out =
            c.step(now, &healthy_snapshot(Millis::new(now)), &Inputs { grid_tie: ramp, ..Inputs::default() });
        assert_eq!(out.command.setpoint(), ems_core::watts!(1200.0));
        assert_eq!(out.binding, Some(Constraint::GridTie(GridTieLimit::ReconnectionRamp)));
        assert_eq!(out.binding.unwrap().to_string(), "reconnection ramp (enter-service gradient)");
        // A negative limit counts as zero (the safe side).
        now += 100;
        let bad =
            Some(GridTieBound { limit: ems_core::watts!(-5.0), reason: GridTieLimit::ReconnectionRamp });
        let out =
            c.step(now, &healthy_snapshot(Millis::new(now)), &Inputs { grid_tie: bad, ..Inputs::default() });
        assert_eq!(out.command.setpoint(), Watts::ZERO);
    }

    #[test]
    fn device_trips_latch_and_zero_the_command() {
        let (mut c, now) = running();
        let trips = [TripReason::SetpointNotApplied];
        let out = c.step(
            now + 100,
            &healthy_snapshot(Millis::new(now + 100)),
            &Inputs { device_trips: &trips, ..Inputs::default() },
        );
        assert_eq!(out.state, State::Error);
        assert_eq!(out.command.setpoint(), Watts::ZERO);
        assert_eq!(out.command.contactor(), ContactorCommand::Open);
        assert!(c.latched().contains(&TripReason::SetpointNotApplied));
        assert!(out.events.iter().any(|e| matches!(
            e.kind,
            EventKind::StateChanged {
                to: State::Error,
                cause: ems_core::event::Cause::Trip(TripReason::SetpointNotApplied),
                ..
            }
        )));
    }

    fn step_with(c: &mut Controller, now: u64, inputs: &Inputs<'_>) -> Output {
        c.step(now, &healthy_snapshot(Millis::new(now)), inputs)
    }

    #[test]
    fn grid_service_outranks_override_plan_and_mode() {
        let (mut c, now) = running();
        let inputs = Inputs {
            ess_override: Some(Override::NoDischarge),
            plan: Some(PlanTarget { battery: ems_core::watts!(-3000.0), grid: ems_core::watts!(3500.0) }),
            ..Inputs::default()
        };
        let mut service = crate::FixedRequest {
            name: "FFR",
            request: Some(crate::GridRequest {
                action: crate::GridAction::Replace(ems_core::watts!(2000.0)),
                reserve: crate::Reserve::NONE,
                ramp: None,
            }),
        };
        let out = c.step_with(now + 100, &healthy_snapshot(Millis::new(now + 100)), &inputs, &mut service);
        assert_eq!(out.source, CommandSource::GridService { name: "FFR", added: false });
        assert_eq!(out.over, Some(CommandSource::Plan(ProposalReason::PlanHold)));
        assert_eq!(out.requested, ems_core::watts!(2000.0));
        // No comfort ramp (2.5 kW/s would allow 250 W in 100 ms): the service's step.
        assert_eq!(out.command.setpoint(), ems_core::watts!(2000.0));
        assert_eq!(out.command.class(), crate::CommandClass::GridService);
        assert_eq!(out.command.ramp(), None);
        assert_eq!(out.source.to_string(), "grid service FFR");
        // Without the service, the comfort ramp and class come back.
        let out = step_with(&mut c, now + 200, &inputs);
        assert_eq!(out.command.class(), crate::CommandClass::Comfort);
        assert_eq!(out.command.ramp(), Some(c.config().ramp));
    }

    #[test]
    fn override_modifies_the_plan_and_the_clamp_still_has_the_last_word() {
        let (mut c, mut now) = running();
        let plan = Some(PlanTarget { battery: ems_core::watts!(-4000.0), grid: ems_core::watts!(4500.0) });
        let limit = Some(Override::LimitCharge { max_charge_power: ems_core::watts!(1500.0) });
        now += 100;
        let out = step_with(&mut c, now, &Inputs { plan, ess_override: limit, ..Inputs::default() });
        assert_eq!(out.source, CommandSource::Override(OverrideKind::LimitCharge));
        assert_eq!(out.requested, ems_core::watts!(-1500.0));
        // The ramp (2.5 kW/s over 100 ms) binds first.
        assert_eq!(out.command.setpoint(), ems_core::watts!(-250.0));
        assert_eq!(out.binding, Some(Constraint::Ramp));
        // FORCE_CHARGE beyond the inverter rating: the envelope bounds it.
        let force = Some(Override::ForceCharge { power: ems_core::watts!(9000.0) });
        let mut out = step_with(&mut c, now, &Inputs { plan, ess_override: force, ..Inputs::default() });
        for _ in 0..40 {
            now += 100;
            out = step_with(&mut c, now, &Inputs { plan, ess_override: force, ..Inputs::default() });
        }
        assert_eq!(out.source, CommandSource::Override(OverrideKind::ForceCharge));
        assert_eq!(out.command.setpoint(), -out.envelope.max_charge());
        assert!(out.binding.is_some());
    }

    #[test]
    fn invalid_override_is_ignored_and_reported() {
        let (mut c, now) = running();
        let bad = Some(Override::LimitDischarge { max_discharge_power: ems_core::watts!(-10.0) });
        let manual = Some(ModeSetting::Manual { setpoint: ems_core::watts!(800.0) });
        let out = step_with(
            &mut c,
            now + 100,
            &Inputs { set_mode: manual, ess_override: bad, ..Inputs::default() },
        );
        let e = out.override_refused.unwrap();
        assert_eq!(e.field, "max_discharge_power");
        assert_eq!(out.source, CommandSource::Mode(ProposalReason::Manual));
        assert_eq!(out.requested, ems_core::watts!(800.0));
    }

    #[test]
    fn a_rule_sets_the_setpoint_below_the_override_and_an_invalid_rule_is_reported() {
        let (mut c, now) = running();
        let manual = Some(ModeSetting::Manual { setpoint: ems_core::watts!(800.0) });
        let nd = Some(RuleTarget { action: Override::NoDischarge, id: 3 });
        let out = step_with(&mut c, now + 100, &Inputs { set_mode: manual, rule: nd, ..Inputs::default() });
        assert_eq!(out.source, CommandSource::Rule { kind: OverrideKind::NoDischarge, id: 3 });
        assert_eq!(out.requested, Watts::ZERO);
        assert!(out.rule_refused.is_none());
        // The operator's override applies on top of the rule.
        let force = Some(Override::ForceCharge { power: ems_core::watts!(1000.0) });
        let out =
            step_with(&mut c, now + 200, &Inputs { rule: nd, ess_override: force, ..Inputs::default() });
        assert_eq!(out.source, CommandSource::Override(OverrideKind::ForceCharge));
        assert_eq!(out.over, Some(CommandSource::Rule { kind: OverrideKind::NoDischarge, id: 3 }));
        // An invalid rule action is ignored and reported; the mode keeps the set-point.
        let bad = Some(RuleTarget { action: Override::ForceCharge { power: ems_core::watts!(-5.0) }, id: 0 });
        let out = step_with(&mut c, now + 300, &Inputs { rule: bad, ..Inputs::default() });
        assert_eq!(out.rule_refused.map(|e| e.field), Some("power"));
        assert_eq!(out.source, CommandSource::Mode(ProposalReason::Manual));
    }

    #[test]
    fn source_change_is_flagged_once() {
        let (mut c, now) = running();
        let plan = Some(PlanTarget { battery: ems_core::watts!(-1000.0), grid: ems_core::watts!(1500.0) });
        let a = step_with(&mut c, now + 100, &Inputs { plan, ..Inputs::default() });
        assert!(a.source_changed);
        assert_eq!(a.source, CommandSource::Plan(ProposalReason::PlanHold));
        let b = step_with(&mut c, now + 200, &Inputs { plan, ..Inputs::default() });
        assert!(!b.source_changed);
        let d = step_with(&mut c, now + 300, &Inputs::default());
        assert!(d.source_changed);
        assert!(matches!(d.source, CommandSource::Mode(_)));
        assert_eq!(c.last_source(), Some(d.source));
    }

    #[test]
    fn nothing_proposes_outside_running() {
        let mut c = Controller::new(ControllerConfig::default()).unwrap();
        let inputs = Inputs {
            ess_override: Some(Override::ForceCharge { power: ems_core::watts!(2000.0) }),
            plan: Some(PlanTarget { battery: ems_core::watts!(2000.0), grid: Watts::ZERO }),
            ..Inputs::default()
        };
        let out = step_with(&mut c, 0, &inputs);
        assert_eq!(out.state, State::Boot);
        assert_eq!(out.source, CommandSource::NotRunning);
        assert_eq!(out.requested, Watts::ZERO);
        assert_eq!(out.command.setpoint(), Watts::ZERO);
    }

    #[test]
    fn peak_shaving_uses_the_slot_of_the_local_minute() {
        let (mut c, now) = running();
        let slots = crate::CapSlots::from_slice(&[crate::CapSlot {
            start_minute: 600,
            import_cap: ems_core::watts!(200.0),
            export_cap: ems_core::watts!(1000.0),
        }])
        .unwrap();
        let cfg = crate::PeakShavingConfig { slots, ..crate::PeakShavingConfig::default() };
        let set = Some(ModeSetting::PeakShaving(cfg));
        // healthy_snapshot imports 500 W: under the 10 kW default cap, over the 200 W slot cap.
        let out = step_with(&mut c, now + 100, &Inputs { set_mode: set, ..Inputs::default() });
        assert_eq!(out.proposal.reason, ProposalReason::Recharge);
        let mut out = out;
        for i in 0..30 {
            out = step_with(
                &mut c,
                now + 200 + i * 100,
                &Inputs { local_minute: Some(700), ..Inputs::default() },
            );
        }
        assert_eq!(out.source, CommandSource::Mode(ProposalReason::PeakShaving));
        // The snapshot does not follow the command: the balance stays at 500 W import.
        assert!((out.requested.get() - 300.0).abs() < 1.0, "{}", out.requested);
    }

    #[test]
    fn passive_mode_commands_zero_while_running() {
        let (mut c, now) = running();
        let out = c.step(
            now + 100,
            &healthy_snapshot(Millis::new(now + 100)),
            &Inputs { set_mode: Some(ModeSetting::Passive), ..Inputs::default() },
        );
        assert_eq!(out.command.setpoint(), Watts::ZERO);
        assert_eq!(out.state, State::Running);
        assert_eq!(out.proposal.reason, ProposalReason::Passive);
    }
}
