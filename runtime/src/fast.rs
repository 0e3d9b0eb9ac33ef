//! The grid services' fast path (issue #13 item 3): frequency sample → service → inverter
//! command at ≥ 10 Hz, independent of the EMS cycle, through the same controller and device
//! layer.
//!
//! # Design: one loop, one writer
//!
//! The control thread stays the only one that commands the inverter. A [`GridPath`] gives the
//! [`crate::Runtime`] a frequency source, the grid service (`ems-grid`'s `FrequencyServices`)
//! and a tick period. [`crate::realtime::run`] then runs, between two full cycles, a **fast
//! tick** every `period` ([`crate::Runtime::fast_tick`]):
//!
//! 1. the E-stop input first ([`crate::SiteDevices::read_estop`]; a press runs the device
//!    layer's fast path and cuts the wait short so the next full cycle latches STOPPED);
//! 2. the frequency, with the E-stop watched and bounded by the tick's I/O budget; its
//!    measurement (own quality and max age) replaces the snapshot's grid frequency;
//! 3. `Controller::step_with` on the **last full snapshot** with the fresh frequency, the
//!    previous cycle's standing inputs (override, rule, provider schedule, plan slot, local
//!    minute — never a one-shot request) and the device trips of the last apply: the envelope,
//!    the arbitration and the final clamp are the same code as the cycle's;
//! 4. the command through the device layer (`apply_watched`: the inverter's safety wrapper,
//!    class `GridService` = no deadband and no flash budget while a service acts).
//!
//! Ticks run only while RUNNING. The full cycle also samples the source and calls the same
//! service, so the service sees one continuous stream of calls. Controller events of a fast
//! tick are persisted at once when the state changed and handed to the hooks with the next
//! full cycle's output (prepended, in time order); the device events join the cycle's as
//! they do for the wait between cycles.
//!
//! A stale or invalid frequency is never used: the measurement's `value_at` is `None`, the
//! services fall to zero at their bounded rate and then return `None` — they do not freeze.

use core::fmt;
use core::time::Duration;
use ems_control::{GridService, NoGridService, Output};
use ems_core::{Millis, Snapshot};
use ems_devices::frequency::{FrequencyInput, FrequencyPoll, FrequencySource};

/// What the runtime needs of a grid-service path: the service, where its frequency comes from
/// and how often the fast tick runs.
#[allow(async_fn_in_trait)] // driven on the control thread; no Send bound wanted
pub trait GridPath: fmt::Debug {
    /// The service called by every step.
    type Service: GridService;
    /// The fast tick period (`None`: no fast ticks; the service runs with the cycle only).
    fn period(&self) -> Option<Millis>;
    /// How long one tick's frequency read (and its apply) may take before it is abandoned.
    fn io_budget(&self) -> Duration;
    /// Read the frequency at `now` into `snapshot.grid.frequency`. Must leave the snapshot
    /// holding this source's measurement even when the read is abandoned half-way.
    async fn sample(&mut self, now: Millis, snapshot: &mut Snapshot);
    /// The service.
    fn service(&mut self) -> &mut Self::Service;
    /// After every step (full cycle: `fast == false`), e.g. to publish the services' status.
    fn stepped(&mut self, now: Millis, out: &Output, fast: bool) {
        let _ = (now, out, fast);
    }
}

/// No grid service: the runtime's default.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoGridPath(NoGridService);

impl GridPath for NoGridPath {
    type Service = NoGridService;
    fn period(&self) -> Option<Millis> {
        None
    }
    fn io_budget(&self) -> Duration {
        Duration::ZERO
    }
    async fn sample(&mut self, _now: Millis, _snapshot: &mut Snapshot) {}
    fn service(&mut self) -> &mut NoGridService {
        &mut self.0
    }
}

/// Settings of a [`FastPath`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FastPathConfig {
    /// The fast tick period: 10..=100 ms (≥ 10 Hz, design.md §3).
    pub period: Millis,
    /// The frequency read's (and the apply's) budget within a tick; `None`: half the period.
    pub io_budget: Option<Duration>,
}

impl Default for FastPathConfig {
    /// 100 ms (10 Hz), budget 50 ms.
    fn default() -> Self {
        Self { period: Millis::new(100), io_budget: None }
    }
}

/// Shortest fast tick.
pub const MIN_FAST_PERIOD: Millis = Millis::new(10);
/// Longest fast tick (10 Hz).
pub const MAX_FAST_PERIOD: Millis = Millis::new(100);

/// Invalid [`FastPathConfig`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FastPathError {
    /// The period is outside 10..=100 ms.
    #[error("period = {0} ms is outside 10..=100 ms (the fast path runs at 10 Hz or faster)")]
    Period(u64),
    /// The budget is zero or longer than the period.
    #[error("io_budget = {got} ms must be > 0 and ≤ the period ({period} ms)")]
    Budget {
        /// The budget given, ms.
        got: u128,
        /// The period, ms.
        period: u64,
    },
}

impl FastPathConfig {
    /// Check the settings.
    ///
    /// # Errors
    /// [`FastPathError`] naming the field and the value.
    pub fn validate(&self) -> Result<(), FastPathError> {
        if self.period < MIN_FAST_PERIOD || self.period > MAX_FAST_PERIOD {
            return Err(FastPathError::Period(self.period.get()));
        }
        if let Some(b) = self.io_budget {
            if b.is_zero() || b.as_millis() > u128::from(self.period.get()) {
                return Err(FastPathError::Budget { got: b.as_millis(), period: self.period.get() });
            }
        }
        Ok(())
    }
}

/// An observer of every step (the gateway publishes the services' status through it).
pub type StepObserver<G> = Box<dyn FnMut(Millis, &G, &Output, bool)>;

/// A frequency source and a grid service, ticked every `period`.
pub struct FastPath<F, G> {
    input: FrequencyInput<F>,
    service: G,
    config: FastPathConfig,
    observer: Option<StepObserver<G>>,
    last_poll: Option<FrequencyPoll>,
}

impl<F: fmt::Debug, G: fmt::Debug> fmt::Debug for FastPath<F, G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FastPath")
            .field("input", &self.input)
            .field("service", &self.service)
            .field("config", &self.config)
            .field("last_poll", &self.last_poll)
            .finish_non_exhaustive()
    }
}

impl<F: FrequencySource, G: GridService> FastPath<F, G> {
    /// `service` fed by `input`, ticked as `config` says.
    ///
    /// # Errors
    /// [`FastPathError`] for an invalid `config`.
    pub fn new(input: FrequencyInput<F>, service: G, config: FastPathConfig) -> Result<Self, FastPathError> {
        config.validate()?;
        Ok(Self { input, service, config, observer: None, last_poll: None })
    }

    /// Call `observer` after every step.
    #[must_use]
    pub fn observe(mut self, observer: StepObserver<G>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The frequency input.
    #[must_use]
    pub const fn input(&self) -> &FrequencyInput<F> {
        &self.input
    }

    /// The service (its status).
    #[must_use]
    pub const fn grid_service(&self) -> &G {
        &self.service
    }

    /// What the last read did.
    #[must_use]
    pub const fn last_poll(&self) -> Option<FrequencyPoll> {
        self.last_poll
    }
}

impl<F: FrequencySource + fmt::Debug, G: GridService + fmt::Debug> GridPath for FastPath<F, G> {
    type Service = G;

    fn period(&self) -> Option<Millis> {
        Some(self.config.period)
    }

    fn io_budget(&self) -> Duration {
        self.config.io_budget.unwrap_or_else(|| Duration::from_millis(self.config.period.get() / 2))
    }

    async fn sample(&mut self, now: Millis, snapshot: &mut Snapshot) {
        // Set first: a read abandoned half-way leaves this source's (aging) sample in place,
        // never the meter's frequency of the cycle's reads.
        snapshot.grid.frequency = self.input.measurement();
        let poll = self.input.poll(now).await;
        if poll != FrequencyPoll::Good && self.last_poll != Some(poll) {
            tracing::warn!(target: "audit", "grid frequency source: {poll:?}");
        }
        self.last_poll = Some(poll);
        snapshot.grid.frequency = self.input.measurement();
    }

    fn service(&mut self) -> &mut G {
        &mut self.service
    }

    fn stepped(&mut self, now: Millis, out: &Output, fast: bool) {
        if let Some(o) = self.observer.as_mut() {
            o(now, &self.service, out, fast);
        }
    }
}
