//! The whole-site simulation harness.

use crate::checker::{Checker, ViolationKind};
use crate::faults::{random_timeline, schedule, FaultPlan, Scheduled};
use crate::faulty::{FaultSwitch, Faulty};
// Re-exported where callers have always found them.
pub use crate::options::{Duty, RunOptions};
use crate::report::{Report, Stats};
use crate::scenario::{DeviceId, Expectation, FaultSpec, PhysicalFault, TimedFault};
use ems_control::{Controller, Inputs, Output, Override, PlanTarget};
use ems_core::persist::{MemoryStore, StateStore};
use ems_core::snapshot::BmsAlarms;
use ems_core::{Millis, Snapshot, State, TransitionRequest, Watts};
use ems_devices::io::{ApplyReport, DeviceSet, DeviceSetConfig};
use ems_devices::sim::{
    SharedSite, SimBms, SimEStopPin, SimFault, SimInverter, SimMeter, SimPv, SimRelay, SimulatedSite,
};
use ems_devices::traits::ControlSource;
use ems_devices::wrappers::DeviceEvents;
use ems_runtime::{Context as CycleContext, CycleFlags, Runtime};
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

/// A harness run that could not start.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The simulated site's configuration is invalid.
    #[error("site config: {0}")]
    Site(String),
    /// The controller's configuration is invalid.
    #[error("controller config: {0}")]
    Controller(#[from] ems_control::ConfigError),
    /// The step is zero or longer than a minute.
    #[error("field 'step' = {0} must be between 1 ms and 60000 ms")]
    Step(Millis),
}

/// Stands in for a person at the site.
#[derive(Debug, Default)]
struct Operator {
    last_attempt: Option<Millis>,
    stopped_since: Option<Millis>,
    away_until: Option<Millis>,
}

const OPERATOR_RETRY: Millis = Millis::new(60_000);
const OPERATOR_RESET_DELAY: Millis = Millis::new(30_000);
const RESET_REASON: &str = "automated operator: E-stop released, site inspected";
const ACK_REASON: &str = "automated operator: fault cleared";

impl Operator {
    fn decide(
        &mut self,
        now: Millis,
        state: State,
        snapshot: &Snapshot,
    ) -> Option<(TransitionRequest, &'static str)> {
        if state != State::Stopped {
            self.stopped_since = None;
        }
        if self.away_until.is_some_and(|t| now < t) {
            return None;
        }
        let due = self.last_attempt.is_none_or(|t| now.since(t) >= OPERATOR_RETRY);
        let request = match state {
            State::Boot => Some((TransitionRequest::BootComplete, "")),
            State::Idle if due => Some((TransitionRequest::Start, "")),
            State::Error if due => Some((TransitionRequest::Acknowledge, ACK_REASON)),
            State::Stopped => {
                let since = *self.stopped_since.get_or_insert(now);
                let released = !snapshot.estop_pressed(now);
                (released && due && now.since(since) >= OPERATOR_RESET_DELAY)
                    .then_some((TransitionRequest::Reset, RESET_REASON))
            }
            State::Idle | State::Error | State::Running => None,
        };
        if request.is_some_and(|r| r.0 != TransitionRequest::BootComplete) {
            self.last_attempt = Some(now);
        }
        request
    }
}

/// The inverter control lease (`SafeInverterConfig::lease`, the revert timer the device layer
/// arms when it takes control): without a write for this long the inverter falls back to local
/// control at 0 W.
pub const LEASE: Millis = Millis::new(10_000);

/// The outcome of one expectation of a scenario.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExpectationOutcome {
    /// `expect[i]`.
    pub index: usize,
    /// What was expected, in words.
    pub expected: String,
    /// Whether it was met.
    pub met: bool,
    /// Why not (or when it was met).
    pub detail: String,
}

#[derive(Debug)]
struct ExpectTracker {
    x: Expectation,
    // `eventually`: when all cycle conditions held together; `always`: first failure.
    met_at: Option<Millis>,
    failed: Option<String>,
    trip_seen: bool,
    event_seen: bool,
}

impl ExpectTracker {
    fn new(x: &Expectation) -> Self {
        Self { x: x.clone(), met_at: None, failed: None, trip_seen: false, event_seen: false }
    }

    fn describe(&self) -> String {
        let x = &self.x;
        let mut parts = Vec::new();
        if let Some(s) = x.state {
            parts.push(format!("state {s}"));
        }
        if let Some(t) = &x.trip {
            parts.push(format!("trip '{t}'"));
        }
        if let Some(e) = &x.event {
            parts.push(format!("event '{e}'"));
        }
        if let Some(b) = x.command_zero {
            parts.push(format!("command_zero = {b}"));
        }
        if let Some(b) = x.contactor_open {
            parts.push(format!("contactor_open = {b}"));
        }
        if let Some(b) = x.inverter_local {
            parts.push(format!("inverter_local = {b}"));
        }
        let by = x.by.map_or_else(|| "the end".to_owned(), |b| format!("{} s", b.get() / 1000));
        format!(
            "{} {} from {} s to {by}",
            if x.always { "always" } else { "eventually" },
            parts.join(", "),
            x.after.get() / 1000
        )
    }

    fn outcome(&self) -> ExpectationOutcome {
        let x = &self.x;
        let seen_ok = (x.trip.is_none() || self.trip_seen) && (x.event.is_none() || self.event_seen);
        let (met, detail) = if x.always {
            match &self.failed {
                Some(f) => (false, f.clone()),
                None if !seen_ok => (false, "trip/event not seen in the window".to_owned()),
                None => (true, "held throughout".to_owned()),
            }
        } else {
            match self.met_at {
                Some(t) => (true, format!("met at {} s", t.get() / 1000)),
                None => (false, "never met in the window".to_owned()),
            }
        };
        ExpectationOutcome { index: x.index, expected: self.describe(), met, detail }
    }
}

/// What one cycle looked like, for expectations.
struct CycleView<'a> {
    state: Option<State>,
    command_zero: Option<bool>,
    contactor_open: bool,
    inverter_local: bool,
    trips: &'a [String],
    events: &'a [String],
}

impl ExpectTracker {
    fn observe(&mut self, now: Millis, v: &CycleView<'_>) {
        let x = &self.x;
        if now < x.after || x.by.is_some_and(|b| now > b) {
            return;
        }
        if let Some(t) = &x.trip {
            if v.trips.iter().any(|s| s.contains(t.as_str())) {
                self.trip_seen = true;
            }
        }
        if let Some(e) = &x.event {
            if v.events.iter().any(|s| s.contains(e.as_str())) {
                self.event_seen = true;
            }
        }
        let mut failures = Vec::new();
        if let Some(s) = x.state {
            if v.state != Some(s) {
                failures.push(format!("state {}", v.state.map_or("(gateway down)", State::as_str)));
            }
        }
        if let Some(b) = x.command_zero {
            if v.command_zero != Some(b) {
                failures.push(format!("command_zero {:?}", v.command_zero));
            }
        }
        if let Some(b) = x.contactor_open {
            if v.contactor_open != b {
                failures.push(format!("contactor_open {}", v.contactor_open));
            }
        }
        if let Some(b) = x.inverter_local {
            if v.inverter_local != b {
                failures.push(format!("inverter_local {}", v.inverter_local));
            }
        }
        if x.always {
            if self.failed.is_none() && !failures.is_empty() {
                self.failed = Some(format!("at {} s: {}", now.get() / 1000, failures.join(", ")));
            }
        } else if self.met_at.is_none()
            && failures.is_empty()
            && (x.trip.is_none() || self.trip_seen)
            && (x.event.is_none() || self.event_seen)
        {
            self.met_at = Some(now);
        }
    }
}

/// The device layer of the harness: the real `DeviceSet` with its safety wrappers around the
/// simulator's device handles, each behind a fault-injecting [`Faulty`] wrapper.
type Devices = DeviceSet<
    Faulty<SimBms>,
    Faulty<SimInverter>,
    Faulty<SimMeter>,
    Faulty<SimPv>,
    Faulty<SimRelay>,
    Faulty<SimRelay>,
    Faulty<SimEStopPin>,
>;

/// The fault switches, one per device (the hardware's faults outlive a gateway crash).
#[derive(Debug, Clone, Default)]
struct Switches([FaultSwitch; 7]);

impl Switches {
    fn get(&self, d: DeviceId) -> &FaultSwitch {
        let i = DeviceId::ALL.iter().position(|x| *x == d).unwrap_or(0);
        &self.0[i]
    }

    /// A fresh device layer (a new gateway process) on the same hardware and fault switches.
    fn device_set(&self, site: &SharedSite) -> Result<Devices, HarnessError> {
        let d = site.devices();
        let sw = |id| self.get(id).clone();
        DeviceSet::new(
            Faulty::new(d.bms, sw(DeviceId::Bms)),
            Faulty::new(d.inverter, sw(DeviceId::Inverter)),
            Faulty::new(d.meter, sw(DeviceId::Meter)),
            Faulty::new(d.pv, sw(DeviceId::Pv)),
            Faulty::new(d.precharge_relay, sw(DeviceId::PrechargeRelay)),
            Faulty::new(d.main_relay, sw(DeviceId::MainRelay)),
            Faulty::new(d.estop, sw(DeviceId::EStop)),
            DeviceSetConfig::default(),
        )
        .map_err(|e| HarnessError::Site(format!("device layer: {e}")))
    }

    fn set_now(&self, now: Millis) {
        for s in &self.0 {
            s.set_now(now);
        }
    }
}

/// A waker that does nothing: the simulated devices complete every call at once.
struct NoopWake;

impl Wake for NoopWake {
    fn wake(self: Arc<Self>) {}
}

/// Drive one device-layer future to completion. The simulated devices never return
/// `Pending`, so this is one poll with a no-op waker (no allocation, no thread parking); a
/// future that does pend is finished by `pollster`.
fn drive<F: Future>(waker: &Waker, f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(waker);
    match f.as_mut().poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => pollster::block_on(f),
    }
}

fn sim_fault(p: PhysicalFault) -> SimFault {
    match p {
        PhysicalFault::EStopPress => SimFault::EStopPressed,
        PhysicalFault::EStopRelease => SimFault::EStopReleased,
        PhysicalFault::CellHeating(watts) => SimFault::CellHeating { watts },
        PhysicalFault::BmsAlarm(a) => SimFault::BmsAlarm(BmsAlarms::NONE.with(a)),
        PhysicalFault::InverterFault => SimFault::InverterFault,
        PhysicalFault::SensorDropout(signal) => SimFault::SensorDropout { signal, for_: Millis::new(1_000) },
        PhysicalFault::CellImbalance(volts) => SimFault::CellImbalance { volts },
        PhysicalFault::ContactorWeld => SimFault::ContactorWeld,
        PhysicalFault::ContactorStuckOpen => SimFault::ContactorStuckOpen,
        PhysicalFault::PrechargeResistorOpen => SimFault::PrechargeResistorOpen,
        PhysicalFault::InverterIgnoresSetpoint => SimFault::InverterIgnoresSetpoint,
        PhysicalFault::InverterDelay(by) => SimFault::InverterDelay { by },
        PhysicalFault::CellRunaway { initial, doubling } => {
            SimFault::CellRunaway { initial_watts: initial, doubling }
        }
    }
}

/// An active physical fault (re-injected after a `Clear` that was meant for another one).
#[derive(Debug, Clone, Copy)]
struct Active {
    id: usize,
    fault: PhysicalFault,
}

#[derive(Debug, Clone, Copy)]
enum Action {
    Start(usize),
    Stop(usize),
}

/// The faults as the run goes: the legacy plan of `opts.faults`, the start and stop actions of
/// the timeline (time-ordered), the physical faults now active, and when a crashed gateway
/// restarts.
struct FaultState<'t> {
    timeline: &'t [TimedFault],
    legacy: Vec<Scheduled>,
    next_legacy: usize,
    actions: Vec<(Millis, Action)>,
    next_action: usize,
    active: Vec<Active>,
    down_until: Option<Millis>,
}

/// What a fault acts on: the simulator, the device wrappers' switches, the statistics, the
/// operator and, for a crash, the running gateway and what it persisted.
struct Targets<'a> {
    site: &'a SharedSite,
    switches: &'a Switches,
    stats: &'a mut Stats,
    operator: &'a mut Operator,
    runtime: &'a mut Option<Runtime<Devices, MemoryStore>>,
    saved: &'a mut MemoryStore,
}

impl<'t> FaultState<'t> {
    fn new(opts: &RunOptions, timeline: &'t [TimedFault]) -> Self {
        let days = u32::try_from(opts.duration.get().div_ceil(86_400_000)).unwrap_or(u32::MAX);
        let mut actions: Vec<(Millis, Action)> = Vec::with_capacity(timeline.len() * 2);
        for (i, f) in timeline.iter().enumerate() {
            actions.push((f.at, Action::Start(i)));
            if let Some(d) = f.for_ {
                actions.push((f.at.plus(d), Action::Stop(i)));
            }
        }
        actions.sort_by_key(|a| a.0);
        Self {
            timeline,
            legacy: schedule(opts.faults, days, opts.seed),
            next_legacy: 0,
            actions,
            next_action: 0,
            active: Vec::new(),
            down_until: None,
        }
    }

    /// Inject every fault due at `now` and end those whose time is up.
    fn apply_due(&mut self, now: Millis, t: &mut Targets<'_>) {
        while let Some(s) = self.legacy.get(self.next_legacy).filter(|s| s.at <= now) {
            t.site.borrow_mut().inject(s.fault);
            t.stats.faults_injected += 1;
            self.next_legacy += 1;
        }
        while let Some(&(_, action)) = self.actions.get(self.next_action).filter(|a| a.0 <= now) {
            self.next_action += 1;
            match action {
                Action::Start(i) => self.start(i, now, t),
                Action::Stop(i) => self.stop(i, t),
            }
        }
    }

    fn start(&mut self, i: usize, now: Millis, t: &mut Targets<'_>) {
        let Some(f) = self.timeline.get(i) else { return };
        t.stats.faults_injected += 1;
        *t.stats.faults_by_kind.entry(f.fault.kind_name().to_owned()).or_default() += 1;
        match f.fault {
            FaultSpec::Physical(p) => {
                let fault = match p {
                    PhysicalFault::SensorDropout(signal) => {
                        SimFault::SensorDropout { signal, for_: f.for_.unwrap_or(Millis::new(1_000)) }
                    }
                    other => sim_fault(other),
                };
                t.site.borrow_mut().inject(fault);
                if !matches!(p, PhysicalFault::SensorDropout(_) | PhysicalFault::EStopRelease) {
                    self.active.push(Active { id: i, fault: p });
                }
                if p == PhysicalFault::EStopRelease {
                    self.active.retain(|a| a.fault != PhysicalFault::EStopPress);
                }
            }
            // Device faults act in the `Faulty` wrappers, reads and writes alike.
            FaultSpec::Device(d, fault) => t.switches.get(d).set(fault),
            FaultSpec::GatewayCrash { down } => {
                if self.down_until.is_none() {
                    self.down_until = Some(now.plus(down));
                    t.stats.gateway_restarts += 1;
                    t.stats.was_down = true;
                    // The process dies: controller and device layer are gone without a release;
                    // the inverter's own revert timer is the fallback. Only what was persisted
                    // survives.
                    if let Some(rt) = t.runtime.take() {
                        *t.saved = rt.into_parts().2;
                    }
                }
            }
            FaultSpec::OperatorAway => {
                let until = now.plus(f.for_.unwrap_or(Millis::ZERO));
                let op = &mut *t.operator;
                op.away_until = Some(op.away_until.map_or(until, |u| u.max(until)));
            }
        }
    }

    fn stop(&mut self, i: usize, t: &Targets<'_>) {
        let Some(f) = self.timeline.get(i) else { return };
        match f.fault {
            FaultSpec::Physical(PhysicalFault::EStopPress) => {
                self.active.retain(|a| a.id != i);
                if !self.active.iter().any(|a| a.fault == PhysicalFault::EStopPress) {
                    t.site.borrow_mut().inject(SimFault::EStopReleased);
                }
            }
            FaultSpec::Device(d, fault) => {
                if t.switches.get(d).fault() == Some(fault) {
                    t.switches.get(d).clear();
                }
            }
            FaultSpec::Physical(_) => {
                if self.active.iter().any(|a| a.id == i) {
                    self.active.retain(|a| a.id != i);
                    // `Clear` clears every physical fault: re-inject the others.
                    let mut s = t.site.borrow_mut();
                    s.inject(SimFault::Clear);
                    for a in &self.active {
                        s.inject(sim_fault(a.fault));
                    }
                }
            }
            FaultSpec::GatewayCrash { .. } | FaultSpec::OperatorAway => {}
        }
    }

    /// Whether a crashed gateway restarts at `now` (true once per crash).
    fn restart_due(&mut self, now: Millis) -> bool {
        if self.down_until.is_some_and(|t| now >= t) {
            self.down_until = None;
            true
        } else {
            false
        }
    }
}

/// Run the site as fast as possible with the fault plan of `opts` and report.
///
/// # Errors
/// [`HarnessError`] when the site, the controller or the step is invalid.
pub fn run(opts: &RunOptions) -> Result<Report, HarnessError> {
    let timeline =
        if opts.faults == FaultPlan::Random { random_timeline(opts.duration, opts.seed) } else { Vec::new() };
    run_timeline(opts, &timeline, &[]).map(|(r, _)| r)
}

/// What a [`CycleHook`] adds to a cycle's controller inputs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HookInputs {
    /// The current slot of a plan.
    pub plan: Option<PlanTarget>,
    /// An operator/API control-mode override.
    pub ess_override: Option<Override>,
}

/// Lets a caller take part in every cycle of a run without owning the loop: the economics
/// simulation re-plans from the snapshot and feeds the plan's slot to the controller, and keeps
/// its cost ledgers from the simulator's truth.
pub trait CycleHook {
    /// Before the controller steps: what to add to its inputs. `snapshot` is what the EMS
    /// measured this cycle (the harness itself passes the simulator's local minute of day).
    fn inputs(&mut self, now: Millis, snapshot: &Snapshot) -> HookInputs;
    /// After the physics advanced by `step` to `now`.
    fn observe(&mut self, now: Millis, step: Millis, site: &SimulatedSite);
}

/// The hook that adds nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHook;

impl CycleHook for NoHook {
    fn inputs(&mut self, _: Millis, _: &Snapshot) -> HookInputs {
        HookInputs::default()
    }
    fn observe(&mut self, _: Millis, _: Millis, _: &SimulatedSite) {}
}

/// Run with an explicit fault timeline and expectations (what scenarios and property tests use).
///
/// # Errors
/// [`HarnessError`] when the site, the controller or the step is invalid.
pub fn run_timeline(
    opts: &RunOptions,
    timeline: &[TimedFault],
    expects: &[Expectation],
) -> Result<(Report, Vec<ExpectationOutcome>), HarnessError> {
    run_with_hook(opts, timeline, expects, &mut NoHook)
}

/// [`run_timeline`] with a [`CycleHook`] taking part in every cycle.
///
/// # Errors
/// [`HarnessError`] when the site, the controller or the step is invalid.
pub fn run_with_hook(
    opts: &RunOptions,
    timeline: &[TimedFault],
    expects: &[Expectation],
    hook: &mut dyn CycleHook,
) -> Result<(Report, Vec<ExpectationOutcome>), HarnessError> {
    if opts.step == Millis::ZERO || opts.step > Millis::new(60_000) {
        return Err(HarnessError::Step(opts.step));
    }
    let site = SharedSite::new(SimulatedSite::new(opts.site).map_err(|e| HarnessError::Site(e.to_string()))?);
    let controller = Controller::new(opts.controller.clone())?;
    let mut store = MemoryStore::default();
    let _ = store.save(&controller.persisted());
    let switches = Switches::default();
    // The one control loop (`ems-runtime`), as in the gateway; `None` while the gateway is
    // down (crashed, not yet restarted), with the persisted state kept in `saved`.
    let mut runtime: Option<Runtime<Devices, MemoryStore>> =
        Some(Runtime::new(switches.device_set(&site)?, controller, store));
    let mut saved = MemoryStore::default();
    let mut last_state = State::Boot;
    let waker = Waker::from(Arc::new(NoopWake));
    let mut faults = FaultState::new(opts, timeline);
    // When a set-point or settings write last reached the inverter (the simulator's counters).
    let mut last_write = Millis::ZERO;
    let mut writes_seen = 0u64;
    let mut trackers: Vec<ExpectTracker> = expects.iter().map(ExpectTracker::new).collect();
    let mut cycle_hook = HarnessHook {
        opts,
        site: &site,
        user: hook,
        operator: Operator::default(),
        checker: Checker::new(&opts.controller.safety, opts.controller.ramp.watts_per_second()),
        stats: Stats::default(),
        record_texts: !trackers.is_empty(),
        trip_texts: Vec::new(),
        event_texts: Vec::new(),
    };
    let mut now = Millis::ZERO;
    let started = Instant::now();
    while now < opts.duration {
        switches.set_now(now);
        faults.apply_due(
            now,
            &mut Targets {
                site: &site,
                switches: &switches,
                stats: &mut cycle_hook.stats,
                operator: &mut cycle_hook.operator,
                runtime: &mut runtime,
                saved: &mut saved,
            },
        );
        // The gateway restarts: a new process restores the controller from the persisted state
        // and builds a new device layer on the same hardware.
        if faults.restart_due(now) {
            let mut store = std::mem::take(&mut saved);
            let controller = match store.load().ok().flatten() {
                Some(p) => Controller::restore(opts.controller.clone(), &p)?,
                None => Controller::new(opts.controller.clone())?,
            };
            runtime = Some(Runtime::new(switches.device_set(&site)?, controller, store));
            cycle_hook.checker.reset_ramp();
        }
        cycle_hook.trip_texts.clear();
        cycle_hook.event_texts.clear();
        let mut view_state = None;
        let mut command_zero = None;
        if let Some(rt) = runtime.as_mut() {
            let r = drive(&waker, rt.cycle(now, CycleFlags::default(), &mut cycle_hook));
            view_state = Some(r.output.state);
            last_state = r.output.state;
            command_zero = Some(r.output.command.setpoint() == Watts::ZERO);
        }
        let cycle_start = now;
        site.borrow_mut().advance(opts.step);
        now = now.plus(opts.step);
        cycle_hook.user.observe(now, opts.step, &site.borrow());
        let truth = site.borrow().truth();
        let writes = truth.setpoint_writes.saturating_add(truth.settings_writes);
        if writes != writes_seen {
            writes_seen = writes;
            last_write = cycle_start;
        }
        cycle_hook.checker.check_truth(now, &truth);
        cycle_hook.stats.observe_truth(&truth);
        if truth.control == ControlSource::Remote && now.since(last_write) > LEASE.plus(opts.step) {
            cycle_hook.checker.record(
                now,
                ViolationKind::LeaseExpired,
                format!(
                    "inverter under remote control {} after the last write reached it",
                    now.since(last_write)
                ),
            );
        }
        if !trackers.is_empty() {
            let view = CycleView {
                state: view_state,
                command_zero,
                contactor_open: !truth.main_relay,
                inverter_local: truth.control == ControlSource::Local
                    && truth.inverter_setpoint == Watts::ZERO,
                trips: &cycle_hook.trip_texts,
                events: &cycle_hook.event_texts,
            };
            for t in &mut trackers {
                t.observe(now, &view);
            }
        }
    }
    let HarnessHook { checker, mut stats, .. } = cycle_hook;
    // A graceful end: the device layer hands the inverter back (zero, contactors open, the
    // remembered settings restored).
    let released = match runtime.as_mut() {
        Some(rt) => {
            rt.clear_events();
            let ok = drive(&waker, rt.release(now)).is_ok();
            stats.observe_device_events(rt.events());
            ok
        }
        None => false,
    };
    let final_state = runtime.as_ref().map_or(last_state, |rt| rt.controller().state());
    let wall = started.elapsed();
    let (energy, final_truth) = site.with(|s| (s.energy(), s.truth()));
    stats.released = released;
    stats.final_inverter_local = final_truth.control == ControlSource::Local;
    let report = Report::new(opts, stats, checker, energy, now, wall, final_state);
    Ok((report, trackers.iter().map(ExpectTracker::outcome).collect()))
}

/// The harness's part in every cycle of the runtime: the automated operator, the duty's mode,
/// the caller's [`CycleHook`], the simulator's local minute, and the checker and statistics
/// on every output, write and device event.
struct HarnessHook<'h> {
    opts: &'h RunOptions,
    site: &'h SharedSite,
    user: &'h mut dyn CycleHook,
    operator: Operator,
    checker: Checker,
    stats: Stats,
    record_texts: bool,
    trip_texts: Vec<String>,
    event_texts: Vec<String>,
}

impl ems_runtime::Hook for HarnessHook<'_> {
    fn inputs<'a>(&'a mut self, cx: &CycleContext<'_>, inputs: &mut Inputs<'a>) {
        self.stats.observe_device_trips(inputs.device_trips);
        let request =
            if self.opts.operator { self.operator.decide(cx.now, cx.state, cx.snapshot) } else { None };
        let time_of_day = self.site.borrow().calendar().time_of_day;
        let wanted = self.opts.duty.mode_at(time_of_day, self.opts.controller.mode);
        let extra = self.user.inputs(cx.now, cx.snapshot);
        inputs.request = request.map(|r| r.0);
        inputs.reason = request.map_or("", |r| r.1);
        inputs.set_mode = (cx.mode != wanted).then_some(wanted);
        inputs.plan = extra.plan;
        // The simulator's local clock, as the gateway passes the site's.
        inputs.local_minute = u16::try_from(time_of_day.get() / 60_000).ok();
        inputs.ess_override = extra.ess_override;
    }

    fn stepped(&mut self, cx: &CycleContext<'_>, out: &Output) {
        self.checker.check_output(cx.now, out);
        self.stats.observe_output(out, self.opts.step);
        if self.record_texts {
            for e in &out.events {
                if let ems_core::event::EventKind::StateChanged {
                    cause: ems_core::event::Cause::Trip(t),
                    ..
                } = e.kind
                {
                    self.trip_texts.push(t.to_string());
                }
                self.event_texts.push(e.to_string());
            }
        }
    }

    fn applied(
        &mut self,
        cx: &CycleContext<'_>,
        out: &Output,
        applied: Option<&ApplyReport>,
        events: &DeviceEvents,
    ) {
        if let Some(w) = applied.and_then(|a| a.inverter.written) {
            self.checker.check_written(cx.now, w, out.envelope.max_charge(), out.envelope.max_discharge());
        }
        self.stats.observe_device_events(events);
        if self.record_texts {
            // The device faults fed to the controller in the next cycle are trips too.
            for t in applied.map_or(&[][..], |a| &a.trips[..]) {
                self.trip_texts.push(t.to_string());
            }
            for e in events {
                self.event_texts.push(e.event.to_string());
            }
        }
    }
}

/// The result of one scenario run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScenarioReport {
    /// The scenario's title.
    pub name: String,
    /// The file, if read from one.
    pub file: Option<String>,
    /// The hazard row it proves.
    pub hazard: Option<String>,
    /// Every expectation and whether it was met.
    pub expectations: Vec<ExpectationOutcome>,
    /// All expectations met and zero hard-limit, invariant and lease violations.
    pub passed: bool,
    /// The run's report.
    pub report: Report,
}

impl ScenarioReport {
    /// What failed, one line each (empty when passed).
    #[must_use]
    pub fn failures(&self) -> Vec<String> {
        let r = &self.report;
        let mut out: Vec<String> = self
            .expectations
            .iter()
            .filter(|e| !e.met)
            .map(|e| format!("expect[{}] ({}): {}", e.index, e.expected, e.detail))
            .collect();
        for (n, what) in [
            (r.hard_limit_violations, "hard-limit violations"),
            (r.invariant_violations, "invariant violations"),
            (r.lease_violations, "lease violations"),
        ] {
            if n > 0 {
                out.push(format!("{n} {what}"));
            }
        }
        out
    }

    /// The report as pretty JSON.
    ///
    /// # Errors
    /// When serialization fails (it does not for finite numbers).
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self)
    }
}

impl std::fmt::Display for ScenarioReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "scenario {} ({}){}: {}",
            self.name,
            self.file.as_deref().unwrap_or("inline"),
            self.hazard.as_deref().map_or(String::new(), |h| format!(" proves {h}")),
            if self.passed { "PASSED" } else { "FAILED" }
        )?;
        for e in &self.expectations {
            writeln!(
                f,
                "  [{}] expect[{}]: {} — {}",
                if e.met { "ok" } else { "FAIL" },
                e.index,
                e.expected,
                e.detail
            )?;
        }
        write!(f, "{}", self.report)
    }
}

/// A scenario file that could not be read or run.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioRunError {
    /// The file is unreadable or invalid.
    #[error(transparent)]
    Parse(#[from] crate::scenario::ScenarioError),
    /// The run could not start.
    #[error("{0}")]
    Harness(#[from] HarnessError),
}

/// The run options of a scenario (site overrides applied).
///
/// # Errors
/// [`HarnessError::Step`] for an invalid step.
pub fn scenario_options(s: &crate::scenario::Scenario) -> Result<RunOptions, HarnessError> {
    let mut opts = RunOptions::days(1, s.seed);
    opts.duration = s.duration;
    opts.step = s.step;
    opts.operator = s.operator;
    let o = &s.site;
    let site = &mut opts.site;
    if let Some(d) = o.start_day {
        site.start_day_of_year = d;
    }
    if let Some(h) = o.start_hour {
        site.start_time_of_day = Millis::new(u64::from(h) * 3_600_000);
    }
    if let Some(v) = o.initial_soc {
        site.initial_soc = ems_core::Percent::saturating(v);
    }
    if let Some(v) = o.ambient {
        site.ambient = ems_devices::sim::Ambient::Indoor(ems_core::Celsius::saturating(v));
    }
    if let Some(v) = o.pv_peak {
        site.pv_peak = Watts::saturating(v);
    }
    if let Some(v) = o.battery_capacity {
        site.battery_capacity = ems_core::WattHours::saturating(v);
    }
    if let Some(v) = o.annual_load {
        site.annual_load = ems_core::WattHours::saturating(v * 1000.0);
    }
    if opts.step == Millis::ZERO || opts.step > Millis::new(60_000) {
        return Err(HarnessError::Step(opts.step));
    }
    Ok(opts)
}

/// Run a parsed scenario and check its expectations.
///
/// # Errors
/// [`HarnessError`] when the site (with its overrides) or the controller is invalid.
pub fn run_scenario(s: &crate::scenario::Scenario) -> Result<ScenarioReport, HarnessError> {
    let opts = scenario_options(s)?;
    let (report, expectations) = run_timeline(&opts, &s.faults, &s.expects)?;
    let mut out = ScenarioReport {
        name: s.name.clone(),
        file: s.path.as_ref().map(|p| p.display().to_string()),
        hazard: s.hazard.clone(),
        expectations,
        passed: false,
        report,
    };
    out.passed = out.failures().is_empty();
    Ok(out)
}

/// Read, parse and run a scenario file (`ems-gateway simulate --scenario FILE`).
///
/// # Errors
/// [`ScenarioRunError::Parse`] naming the file, field and value; [`ScenarioRunError::Harness`].
pub fn run_scenario_file(path: impl AsRef<std::path::Path>) -> Result<ScenarioReport, ScenarioRunError> {
    let s = crate::scenario::Scenario::from_file(path)?;
    Ok(run_scenario(&s)?)
}
