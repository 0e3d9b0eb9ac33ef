//! The whole-site simulation harness.

use crate::checker::Checker;
use crate::faults::{schedule, FaultPlan};
use crate::report::{Report, Stats};
use ems_control::{Controller, ControllerConfig, Inputs};
use ems_core::{Millis, Snapshot, State, TransitionRequest};
use ems_devices::sim::{SimSiteConfig, SimulatedSite};
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

/// Run the site as fast as possible and report.
pub fn run(opts: &RunOptions) -> Result<Report, HarnessError> {
    if opts.step == Millis::ZERO || opts.step > Millis::new(60_000) {
        return Err(HarnessError::Step(opts.step));
    }
    let mut site = SimulatedSite::new(opts.site).map_err(|e| HarnessError::Site(e.to_string()))?;
    let mut controller = Controller::new(opts.controller.clone())?;
    let days = u32::try_from(opts.duration.get().div_ceil(86_400_000)).unwrap_or(u32::MAX);
    let plan = schedule(opts.faults, days, opts.seed);
    let mut next_fault = 0usize;
    let mut checker = Checker::new(&opts.controller.safety, opts.controller.ramp.watts_per_second());
    let mut stats = Stats::default();
    let mut operator = Operator::default();
    let mut snapshot = site.snapshot(Millis::ZERO);
    let mut now = Millis::ZERO;
    let started = Instant::now();
    while now < opts.duration {
        while let Some(s) = plan.get(next_fault).filter(|s| s.at <= now) {
            site.inject(s.fault);
            stats.faults_injected += 1;
            next_fault += 1;
        }
        site.fill_snapshot(&mut snapshot, now);
        let request = if opts.operator { operator.decide(now, controller.state(), &snapshot) } else { None };
        let inputs = Inputs {
            request: request.map(|r| r.0),
            reason: request.map_or("", |r| r.1),
            ..Inputs::default()
        };
        let out = controller.step(now.get(), &snapshot, &inputs);
        checker.check_output(now, &out);
        stats.observe_output(&out, opts.step);
        site.apply(&out.command);
        site.advance(opts.step);
        now = now.plus(opts.step);
        let truth = site.truth();
        checker.check_truth(now, &truth);
        stats.observe_truth(&truth);
    }
    let wall = started.elapsed();
    Ok(Report::new(opts, stats, checker, site.energy(), now, wall, controller.state()))
}
