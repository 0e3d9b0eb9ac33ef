//! The control thread's side of live economics: hands the current plan slot and the winning
//! operator rule to `Controller::step`, and the measurements to the planner thread. Nothing here
//! blocks or plans: the planner's results arrive on a bounded channel and are read with
//! `try_recv`; measurements leave with `try_send` (a full channel drops the sample and counts it).

use super::{ActiveRule, LoopPlan, SiteClock, Sample, ToLoop, ToPlanner};
use ems_control::{Inputs, Output, PlanTarget};
use ems_core::{Millis, Snapshot, Watts};
use jiff::{SignedDuration, Timestamp};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::Arc;

/// Measurements are averaged over this long before they go to the planner.
const SAMPLE_PERIOD: SignedDuration = SignedDuration::from_secs(60);

/// A tick (site time, SOC, powers) goes to the planner this often, for rules and re-planning.
const TICK_PERIOD: SignedDuration = SignedDuration::from_secs(1);

/// Running means of one sample period.
#[derive(Debug, Clone, Copy, Default)]
struct Accumulator {
    start: Option<Timestamp>,
    seconds: f64,
    grid_ws: f64,
    pv_ws: f64,
    battery_ws: f64,
    soc: Option<f32>,
}

impl Accumulator {
    fn add(&mut self, at: Timestamp, dt_s: f64, now: Millis, s: &Snapshot) {
        if self.start.is_none() {
            self.start = Some(at);
        }
        // Last values whatever their quality: an energy meter integrates what the site did.
        self.seconds += dt_s;
        self.grid_ws += f64::from(s.grid.active_power.last_value().get()) * dt_s;
        self.pv_ws += f64::from(s.pv_power.last_value().get()) * dt_s;
        self.battery_ws += f64::from(s.inverter.active_power.last_value().get()) * dt_s;
        self.soc = s.battery.soc.value_at(now).map(ems_core::Percent::get);
    }

    fn take(&mut self, end: Timestamp) -> Option<Sample> {
        let start = self.start?;
        let mean = |ws: f64| {
            // A mean of f32 powers over a positive duration: inside the f32 range.
            #[allow(clippy::cast_possible_truncation)]
            let w = (ws / self.seconds) as f32;
            Watts::saturating(w)
        };
        let sample = (self.seconds > 0.0).then(|| Sample {
            at: start,
            dt: end.duration_since(start),
            grid: mean(self.grid_ws),
            pv: mean(self.pv_ws),
            battery: mean(self.battery_ws),
            soc: self.soc,
        });
        *self = Self::default();
        sample
    }
}

/// The loop's handle on live economics (owned by the gateway's hook).
#[derive(Debug)]
pub(crate) struct LoopEconomics {
    clock: SiteClock,
    to_planner: SyncSender<ToPlanner>,
    from_planner: Receiver<ToLoop>,
    plan: Option<Arc<LoopPlan>>,
    rule: Option<ActiveRule>,
    acc: Accumulator,
    last: Option<(Millis, Timestamp)>,
    next_tick: Option<Timestamp>,
    dropped: u64,
}

impl LoopEconomics {
    pub(super) fn new(clock: SiteClock, to_planner: SyncSender<ToPlanner>, from_planner: Receiver<ToLoop>) -> Self {
        Self {
            clock,
            to_planner,
            from_planner,
            plan: None,
            rule: None,
            acc: Accumulator::default(),
            last: None,
            next_tick: None,
            dropped: 0,
        }
    }

    /// Site time (UTC) of control time `now`.
    fn site_time(&self, now: Millis) -> Timestamp {
        self.clock.at(now)
    }

    /// Before the step: the planner's news, then this cycle's plan slot and rule.
    pub(crate) fn fill(&mut self, cx_now: Millis, inputs: &mut Inputs<'_>) {
        while let Ok(msg) = self.from_planner.try_recv() {
            match msg {
                ToLoop::Plan(p) => self.plan = p,
                ToLoop::Rule(r) => self.rule = r,
            }
        }
        let at = self.site_time(cx_now);
        if let Some(plan) = &self.plan {
            if at < plan.expires_at {
                inputs.plan = plan.target(at);
            }
        }
        if let Some(r) = &self.rule {
            inputs.rule = Some(r.target);
        }
    }

    /// After the step: accumulate the measurements, send a tick every second and a sample
    /// every minute, and a re-plan request when the source of the set-point changed by a mode.
    pub(crate) fn observe(&mut self, now: Millis, snapshot: &Snapshot, out: &Output) {
        let at = self.site_time(now);
        if let Some((prev_ms, _)) = self.last {
            // One cycle: milliseconds, far inside f64's exact integers.
            #[allow(clippy::cast_precision_loss)]
            let dt_s = now.get().saturating_sub(prev_ms.get()) as f64 / 1000.0;
            self.acc.add(at, dt_s, now, snapshot);
        }
        self.last = Some((now, at));
        if self.acc.start.is_some_and(|s| at.duration_since(s) >= SAMPLE_PERIOD) {
            if let Some(sample) = self.acc.take(at) {
                self.send(ToPlanner::Sample(sample));
            }
        }
        if self.next_tick.is_none_or(|t| at >= t) {
            self.next_tick = at.checked_add(TICK_PERIOD).ok();
            let tick = super::Tick {
                at,
                soc: snapshot.battery.soc.value_at(now).map(ems_core::Percent::get),
                grid: snapshot.grid.active_power.last_value(),
                pv: snapshot.pv_power.last_value(),
                battery: snapshot.inverter.active_power.last_value(),
                rating: snapshot.inverter.rated_power,
                source: out.source,
            };
            self.send(ToPlanner::Tick(tick));
        }
    }

    fn send(&mut self, msg: ToPlanner) {
        match self.to_planner.try_send(msg) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped = self.dropped.saturating_add(1);
                if self.dropped.is_power_of_two() {
                    tracing::warn!("economics: planner busy, {} measurements dropped so far", self.dropped);
                }
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

impl LoopPlan {
    /// The planned battery and grid power of the slot containing `at`.
    pub(super) fn target(&self, at: Timestamp) -> Option<PlanTarget> {
        let i = self.slots.partition_point(|s| s.end <= at);
        let s = self.slots.get(i)?;
        (s.start <= at).then_some(PlanTarget { battery: s.battery, grid: s.grid })
    }
}
