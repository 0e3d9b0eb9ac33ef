//! The whole-site simulation harness.

use crate::checker::{Checker, ViolationKind};
use crate::faults::{random_timeline, schedule, FaultPlan};
use crate::faulty::{DeviceFault, FaultSwitch, Faulty};
use crate::report::{Report, Stats};
use crate::scenario::{DeviceId, Expectation, FaultSpec, PhysicalFault, TimedFault};
use ems_control::{Controller, ControllerConfig, Inputs};
use ems_core::persist::{MemoryStore, StateStore};
use ems_core::snapshot::{BmsAlarms, ContactorState};
use ems_core::{Measurement, Millis, Snapshot, State, TransitionRequest, Watts};
use ems_devices::sim::{
    SharedSite, SimBms, SimEStopPin, SimFault, SimInverter, SimMeter, SimPv, SimRelay, SimSiteConfig,
    SimulatedSite,
};
use ems_devices::traits::{
    Bms, ControlSource, EStopInput, Inverter, InverterSettings, Meter, PvInverter, Relay,
};
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

/// What to simulate.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Simulated duration.
    pub duration: Millis,
    /// Control and physics step (1 s by default: design.md's simulation-speed target is at
    /// 1 s resolution).
    pub step: Millis,
    /// Seed for the site's noise and the fault plan.
    pub seed: u64,
    /// Faults to inject.
    pub faults: FaultPlan,
    /// Whether the automated operator resets, acknowledges and restarts.
    pub operator: bool,
    /// The site.
    pub site: SimSiteConfig,
    /// The controller.
    pub controller: ControllerConfig,
}

impl RunOptions {
    /// `days` of simulated operation with default site and controller.
    #[must_use]
    pub fn days(days: u32, seed: u64) -> Self {
        Self {
            duration: Millis::new(u64::from(days) * 86_400_000),
            step: Millis::new(1000),
            seed,
            faults: FaultPlan::None,
            operator: true,
            site: SimSiteConfig { seed, ..SimSiteConfig::default() },
            controller: ControllerConfig::default(),
        }
    }
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

/// The lease the harness arms on the inverter's revert timer: without a set-point for this long
/// the inverter falls back to local control at 0 W.
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

/// One device wrapped with its fault switch.
struct Wrapped {
    bms: Faulty<SimBms>,
    inverter: Faulty<SimInverter>,
    meter: Faulty<SimMeter>,
    pv: Faulty<SimPv>,
    precharge_relay: Faulty<SimRelay>,
    main_relay: Faulty<SimRelay>,
    estop: Faulty<SimEStopPin>,
}

/// The fault switches, one per device (the hardware's faults outlive a gateway crash).
#[derive(Debug, Clone, Default)]
struct Switches([FaultSwitch; 7]);

impl Switches {
    fn get(&self, d: DeviceId) -> &FaultSwitch {
        let i = DeviceId::ALL.iter().position(|x| *x == d).unwrap_or(0);
        &self.0[i]
    }

    fn wrap(&self, site: &SharedSite) -> Wrapped {
        let d = site.devices();
        let sw = |id| self.get(id).clone();
        Wrapped {
            bms: Faulty::new(d.bms, sw(DeviceId::Bms)),
            inverter: Faulty::new(d.inverter, sw(DeviceId::Inverter)),
            meter: Faulty::new(d.meter, sw(DeviceId::Meter)),
            pv: Faulty::new(d.pv, sw(DeviceId::Pv)),
            precharge_relay: Faulty::new(d.precharge_relay, sw(DeviceId::PrechargeRelay)),
            main_relay: Faulty::new(d.main_relay, sw(DeviceId::MainRelay)),
            estop: Faulty::new(d.estop, sw(DeviceId::EStop)),
        }
    }

    fn set_now(&self, now: Millis) {
        for s in &self.0 {
            s.set_now(now);
        }
    }
}

/// Read every faulted device through its `Faulty` wrapper and overwrite its signals in the
/// snapshot: a failed read invalidates them, a bent reading replaces them.
fn overlay_faulted_reads(w: &mut Wrapped, sw: &Switches, snap: &mut Snapshot, now: Millis) {
    use ems_core::snapshot::{FAST_MAX_AGE as F, SLOW_MAX_AGE as S};
    let active = |d| {
        sw.get(d).fault().is_some_and(|f: DeviceFault| {
            !matches!(f, DeviceFault::IgnoreCommands | DeviceFault::Delay(_) | DeviceFault::RelayWeld)
        })
    };
    if active(DeviceId::Bms) {
        let b = &mut snap.battery;
        match pollster::block_on(w.bms.read()) {
            Ok(r) => {
                b.soc = Measurement::good(r.soc, now, S);
                b.pack_voltage = Measurement::good(r.pack_voltage, now, F);
                b.pack_current = Measurement::good(r.pack_current, now, F);
                b.cell_voltage_min = Measurement::good(r.cell_voltage_min, now, F);
                b.cell_voltage_max = Measurement::good(r.cell_voltage_max, now, F);
                b.cell_temp_min = Measurement::good(r.cell_temp_min, now, S);
                b.cell_temp_max = Measurement::good(r.cell_temp_max, now, S);
                b.bms_charge_limit = Measurement::good(r.charge_limit, now, S);
                b.bms_discharge_limit = Measurement::good(r.discharge_limit, now, S);
                b.bms_alarms = Measurement::good(r.alarms, now, S);
                b.bms_ready = Measurement::good(r.ready, now, S);
            }
            Err(_) => {
                b.soc.invalidate();
                b.pack_voltage.invalidate();
                b.pack_current.invalidate();
                b.cell_voltage_min.invalidate();
                b.cell_voltage_max.invalidate();
                b.cell_temp_min.invalidate();
                b.cell_temp_max.invalidate();
                b.bms_charge_limit.invalidate();
                b.bms_discharge_limit.invalidate();
                b.bms_alarms.invalidate();
                b.bms_ready.invalidate();
            }
        }
    }
    if active(DeviceId::Inverter) {
        let inv = &mut snap.inverter;
        match pollster::block_on(w.inverter.read()) {
            Ok(r) => {
                inv.active_power = Measurement::good(r.active_power, now, F);
                inv.state = Measurement::good(r.state, now, S);
                inv.temperature = Measurement::good(r.temperature, now, S);
            }
            Err(_) => {
                inv.active_power.invalidate();
                inv.state.invalidate();
                inv.temperature.invalidate();
            }
        }
    }
    if active(DeviceId::Meter) {
        match pollster::block_on(w.meter.read()) {
            Ok(r) => {
                snap.grid.active_power = Measurement::good(r.active_power, now, F);
                snap.grid.voltage = Measurement::good(r.voltage, now, F);
                snap.grid.frequency = Measurement::good(r.frequency, now, F);
            }
            Err(_) => {
                snap.grid.active_power.invalidate();
                snap.grid.voltage.invalidate();
                snap.grid.frequency.invalidate();
            }
        }
    }
    if active(DeviceId::Pv) {
        match pollster::block_on(w.pv.read()) {
            Ok(r) => snap.pv_power = Measurement::good(r.active_power, now, F),
            Err(_) => snap.pv_power.invalidate(),
        }
    }
    if active(DeviceId::PrechargeRelay) || active(DeviceId::MainRelay) {
        let pre = pollster::block_on(w.precharge_relay.feedback());
        let main = pollster::block_on(w.main_relay.feedback());
        match (pre, main) {
            (Ok(p), Ok(m)) => {
                let state = if m {
                    ContactorState::Closed
                } else if p {
                    ContactorState::Precharging
                } else {
                    ContactorState::Open
                };
                snap.contactor = Measurement::good(state, now, F);
            }
            _ => snap.contactor.invalidate(),
        }
    }
    if active(DeviceId::EStop) {
        match pollster::block_on(w.estop.read()) {
            Ok(r) => snap.estop = Measurement::good(r, now, ems_core::snapshot::ESTOP_MAX_AGE),
            Err(_) => snap.estop.invalidate(),
        }
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

/// The write-side device faults have no path through the ideal device layer yet: they are
/// played by their physical equivalent in the simulator (see the module docs).
fn write_equivalent(d: DeviceId, f: DeviceFault) -> Option<PhysicalFault> {
    match (d, f) {
        (DeviceId::Inverter, DeviceFault::IgnoreCommands) => Some(PhysicalFault::InverterIgnoresSetpoint),
        (DeviceId::Inverter, DeviceFault::Delay(by)) => Some(PhysicalFault::InverterDelay(by)),
        (DeviceId::MainRelay, DeviceFault::RelayWeld | DeviceFault::IgnoreCommands) => {
            Some(PhysicalFault::ContactorWeld)
        }
        (DeviceId::PrechargeRelay, DeviceFault::IgnoreCommands) => Some(PhysicalFault::PrechargeResistorOpen),
        _ => None,
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

/// Run the site as fast as possible with the fault plan of `opts` and report.
///
/// # Errors
/// [`HarnessError`] when the site, the controller or the step is invalid.
pub fn run(opts: &RunOptions) -> Result<Report, HarnessError> {
    let timeline =
        if opts.faults == FaultPlan::Random { random_timeline(opts.duration, opts.seed) } else { Vec::new() };
    run_timeline(opts, &timeline, &[]).map(|(r, _)| r)
}

/// Run with an explicit fault timeline and expectations (what scenarios and property tests use).
///
/// # Errors
/// [`HarnessError`] when the site, the controller or the step is invalid.
#[allow(clippy::too_many_lines)] // one loop that reads top to bottom like the cycle it simulates
pub fn run_timeline(
    opts: &RunOptions,
    timeline: &[TimedFault],
    expects: &[Expectation],
) -> Result<(Report, Vec<ExpectationOutcome>), HarnessError> {
    if opts.step == Millis::ZERO || opts.step > Millis::new(60_000) {
        return Err(HarnessError::Step(opts.step));
    }
    let site = SharedSite::new(SimulatedSite::new(opts.site).map_err(|e| HarnessError::Site(e.to_string()))?);
    let mut controller = Controller::new(opts.controller.clone())?;
    let mut store = MemoryStore::default();
    let _ = store.save(&controller.persisted());
    let switches = Switches::default();
    let mut wrapped = switches.wrap(&site);
    // The lease: the inverter reverts to local control at 0 W when no set-point arrives.
    let mut lease_handle = site.inverter();
    let arm = InverterSettings {
        control: ControlSource::Remote,
        setpoint: Watts::ZERO,
        revert_timeout: Some(LEASE),
    };
    let _ = pollster::block_on(lease_handle.write_settings(&arm));
    let days = u32::try_from(opts.duration.get().div_ceil(86_400_000)).unwrap_or(u32::MAX);
    let legacy = schedule(opts.faults, days, opts.seed);
    let mut next_legacy = 0usize;
    // Start and stop actions, time-ordered.
    let mut actions: Vec<(Millis, Action)> = Vec::with_capacity(timeline.len() * 2);
    for (i, f) in timeline.iter().enumerate() {
        actions.push((f.at, Action::Start(i)));
        if let Some(d) = f.for_ {
            actions.push((f.at.plus(d), Action::Stop(i)));
        }
    }
    actions.sort_by_key(|a| a.0);
    let mut next_action = 0usize;
    let mut active: Vec<Active> = Vec::new();
    let mut down_until: Option<Millis> = None;
    let mut last_write = Millis::ZERO;
    let mut trackers: Vec<ExpectTracker> = expects
        .iter()
        .map(|x| ExpectTracker {
            x: x.clone(),
            met_at: None,
            failed: None,
            trip_seen: false,
            event_seen: false,
        })
        .collect();
    let mut trip_texts: Vec<String> = Vec::new();
    let mut event_texts: Vec<String> = Vec::new();
    let mut checker = Checker::new(&opts.controller.safety, opts.controller.ramp.watts_per_second());
    let mut stats = Stats::default();
    let mut operator = Operator::default();
    let mut snapshot = site.borrow().snapshot(Millis::ZERO);
    let mut now = Millis::ZERO;
    let started = Instant::now();
    while now < opts.duration {
        switches.set_now(now);
        while let Some(s) = legacy.get(next_legacy).filter(|s| s.at <= now) {
            site.borrow_mut().inject(s.fault);
            stats.faults_injected += 1;
            next_legacy += 1;
        }
        while let Some(&(_, action)) = actions.get(next_action).filter(|a| a.0 <= now) {
            next_action += 1;
            match action {
                Action::Start(i) => {
                    let Some(f) = timeline.get(i) else { continue };
                    stats.faults_injected += 1;
                    *stats.faults_by_kind.entry(f.fault.kind_name().to_owned()).or_default() += 1;
                    match f.fault {
                        FaultSpec::Physical(p) => {
                            let fault = match p {
                                PhysicalFault::SensorDropout(signal) => SimFault::SensorDropout {
                                    signal,
                                    for_: f.for_.unwrap_or(Millis::new(1_000)),
                                },
                                other => sim_fault(other),
                            };
                            site.borrow_mut().inject(fault);
                            if !matches!(p, PhysicalFault::SensorDropout(_) | PhysicalFault::EStopRelease) {
                                active.push(Active { id: i, fault: p });
                            }
                            if p == PhysicalFault::EStopRelease {
                                active.retain(|a| a.fault != PhysicalFault::EStopPress);
                            }
                        }
                        FaultSpec::Device(d, fault) => {
                            switches.get(d).set(fault);
                            if let Some(p) = write_equivalent(d, fault) {
                                site.borrow_mut().inject(sim_fault(p));
                                active.push(Active { id: i, fault: p });
                            }
                        }
                        FaultSpec::GatewayCrash { down } => {
                            if down_until.is_none() {
                                down_until = Some(now.plus(down));
                                stats.gateway_restarts += 1;
                                stats.was_down = true;
                            }
                        }
                        FaultSpec::OperatorAway => {
                            let until = now.plus(f.for_.unwrap_or(Millis::ZERO));
                            operator.away_until = Some(operator.away_until.map_or(until, |u| u.max(until)));
                        }
                    }
                }
                Action::Stop(i) => {
                    let Some(f) = timeline.get(i) else { continue };
                    match f.fault {
                        FaultSpec::Physical(PhysicalFault::EStopPress) => {
                            active.retain(|a| a.id != i);
                            if !active.iter().any(|a| a.fault == PhysicalFault::EStopPress) {
                                site.borrow_mut().inject(SimFault::EStopReleased);
                            }
                        }
                        FaultSpec::Physical(_) | FaultSpec::Device(..) => {
                            if let FaultSpec::Device(d, fault) = f.fault {
                                if switches.get(d).fault() == Some(fault) {
                                    switches.get(d).clear();
                                }
                            }
                            if active.iter().any(|a| a.id == i) {
                                active.retain(|a| a.id != i);
                                // `Clear` clears every physical fault: re-inject the others.
                                let mut s = site.borrow_mut();
                                s.inject(SimFault::Clear);
                                for a in &active {
                                    s.inject(sim_fault(a.fault));
                                }
                            }
                        }
                        FaultSpec::GatewayCrash { .. } | FaultSpec::OperatorAway => {}
                    }
                }
            }
        }
        // The gateway restarts: a new process restores the controller from the persisted state
        // and builds a new device layer on the same hardware.
        if down_until.is_some_and(|t| now >= t) {
            down_until = None;
            let persisted = store.load().ok().flatten();
            controller = match persisted {
                Some(p) => Controller::restore(opts.controller.clone(), &p)?,
                None => Controller::new(opts.controller.clone())?,
            };
            wrapped = switches.wrap(&site);
            let _ = pollster::block_on(lease_handle.write_settings(&arm));
            last_write = now;
            checker.reset_ramp();
        }
        trip_texts.clear();
        event_texts.clear();
        let mut view_state = None;
        let mut command_zero = None;
        if down_until.is_none() {
            site.borrow().fill_snapshot(&mut snapshot, now);
            overlay_faulted_reads(&mut wrapped, &switches, &mut snapshot, now);
            let request =
                if opts.operator { operator.decide(now, controller.state(), &snapshot) } else { None };
            let inputs = Inputs {
                request: request.map(|r| r.0),
                reason: request.map_or("", |r| r.1),
                ..Inputs::default()
            };
            let out = controller.step(now.get(), &snapshot, &inputs);
            if out.state_changed() {
                let _ = store.save(&controller.persisted());
            }
            checker.check_output(now, &out);
            stats.observe_output(&out, opts.step);
            if !trackers.is_empty() {
                for e in &out.events {
                    if let ems_core::event::EventKind::StateChanged {
                        cause: ems_core::event::Cause::Trip(t),
                        ..
                    } = e.kind
                    {
                        trip_texts.push(t.to_string());
                    }
                    event_texts.push(e.to_string());
                }
            }
            view_state = Some(out.state);
            command_zero = Some(out.command.battery_setpoint == Watts::ZERO);
            // A link that is down carries no command: the devices keep what they had.
            let link_down = matches!(
                switches.get(DeviceId::Inverter).fault(),
                Some(DeviceFault::CommLoss | DeviceFault::Timeout)
            );
            if !link_down {
                site.borrow_mut().apply(&out.command);
                last_write = now;
            }
        }
        site.borrow_mut().advance(opts.step);
        now = now.plus(opts.step);
        let truth = site.borrow().truth();
        checker.check_truth(now, &truth);
        stats.observe_truth(&truth);
        if truth.control == ControlSource::Remote && now.since(last_write) > LEASE.plus(opts.step) {
            checker.record(
                now,
                ViolationKind::LeaseExpired,
                format!("inverter under remote control {} after the last set-point", now.since(last_write)),
            );
        }
        if !trackers.is_empty() {
            let view = CycleView {
                state: view_state,
                command_zero,
                contactor_open: !truth.main_relay,
                inverter_local: truth.control == ControlSource::Local
                    && truth.inverter_setpoint == Watts::ZERO,
                trips: &trip_texts,
                events: &event_texts,
            };
            for t in &mut trackers {
                t.observe(now, &view);
            }
        }
    }
    let wall = started.elapsed();
    let energy = site.borrow().energy();
    let report = Report::new(opts, stats, checker, energy, now, wall, controller.state());
    Ok((report, trackers.iter().map(ExpectTracker::outcome).collect()))
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
        site.initial_soc = ems_core::Percent::new(v);
    }
    if let Some(v) = o.ambient {
        site.ambient = ems_devices::sim::Ambient::Indoor(ems_core::Celsius::new(v));
    }
    if let Some(v) = o.pv_peak {
        site.pv_peak = Watts::new(v);
    }
    if let Some(v) = o.battery_capacity {
        site.battery_capacity = ems_core::WattHours::new(v);
    }
    if let Some(v) = o.annual_load {
        site.annual_load = ems_core::WattHours::new(v * 1000.0);
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
