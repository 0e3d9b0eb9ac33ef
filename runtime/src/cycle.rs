//! [`Runtime`]: one control cycle, the same for every run.

use crate::fast::{GridPath, NoGridPath};
use crate::handles::EStopTrigger;
use crate::hook::{Context, Hook};
use crate::island::{IslandPath, NoIslandPath};
use crate::site::SiteDevices;
use ems_control::{Command, Controller, Inputs, Output, Override, PlanTarget, ProviderTarget, RuleTarget};
use ems_core::persist::StateStore;
use ems_core::{Events, Millis, Snapshot, State, TransitionRequest, TripReason, Watts};
use ems_devices::io::{ApplyReport, Interrupt};
use ems_devices::wrappers::DeviceEvents;
use std::time::Duration;

/// What the loop adds to a cycle's inputs itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CycleFlags {
    /// Start (or continue asking for) the graceful shutdown.
    pub shutdown: bool,
    /// A software E-stop (also taken from the runtime's [`EStopTrigger`] when it has one).
    pub emergency_stop: bool,
}

/// What one cycle did.
#[derive(Debug, Clone)]
pub struct CycleResult {
    /// The controller's output.
    pub output: Output,
    /// What the device layer did (`None` when an E-stop interrupted the apply).
    pub applied: Option<ApplyReport>,
    /// What interrupted the reads or the apply, if anything.
    pub interrupt: Interrupt,
    /// The state could not be persisted (the error's text); the loop goes on.
    pub persist_error: Option<String>,
}

/// What one fast tick did ([`Runtime::fast_tick`]).
#[derive(Debug, Clone)]
pub struct FastTick {
    /// The controller's output (`None`: an E-stop cut the tick short before the step).
    pub output: Option<Output>,
    /// What the device layer did (`None`: not applied, or an E-stop interrupted the apply).
    pub applied: Option<ApplyReport>,
    /// What interrupted the tick: the loop then starts the next full cycle at once.
    pub interrupt: Interrupt,
}

/// The inputs that stand from one cycle to the next (never a one-shot request): what a fast
/// tick repeats so that the baseline below the grid service does not change between cycles.
#[derive(Debug, Clone, Copy, Default)]
struct Standing {
    local_minute: Option<u16>,
    ess_override: Option<Override>,
    plan: Option<PlanTarget>,
    provider: Option<ProviderTarget>,
    rule: Option<RuleTarget>,
}

impl Standing {
    fn of(inputs: &Inputs<'_>) -> Self {
        Self {
            local_minute: inputs.local_minute,
            ess_override: inputs.ess_override,
            plan: inputs.plan,
            provider: inputs.provider,
            rule: inputs.rule,
        }
    }
}

/// Real-time watching: the E-stop input is polled at least every `tick` while devices are
/// busy, and the software E-stop interrupts them.
#[derive(Debug, Clone)]
struct Watch {
    tick: Duration,
    trigger: EStopTrigger,
    io_budget: Duration,
}

/// How long the reads (or the writes) of one cycle may take in real time before they are
/// abandoned: a device that never answers must not stop the cycles (its signals then go stale,
/// which the safety layer treats as the worst case, and the state machine keeps stepping).
pub const IO_BUDGET: Duration = Duration::from_secs(1);

/// The control loop's state: the devices, the controller, the state store and what carries
/// from one cycle to the next (the snapshot, the device trips).
///
/// `G` is the grid-service path ([`crate::fast`]): [`NoGridPath`] by default; with
/// [`Self::with_grid_path`] every step calls its service and [`crate::realtime::run`] runs its
/// fast ticks between the cycles.
///
/// `I` is the island path ([`crate::island`]): [`NoIslandPath`] by default; with
/// [`Self::with_island_path`] every cycle (and every fast tick) reads the island devices, steps
/// the island sequence, bounds the controller with its [`ems_control::GridTieBound`] and writes
/// the breaker, inverter-mode and relay commands.
#[derive(Debug)]
pub struct Runtime<D, S, G = NoGridPath, I = NoIslandPath> {
    devices: D,
    controller: Controller,
    store: S,
    snapshot: Snapshot,
    events: DeviceEvents,
    device_trips: heapless::Vec<TripReason, 4>,
    watch: Option<Watch>,
    shutting_down: bool,
    grid: G,
    standing: Standing,
    fast_events: Events,
    island: I,
}

impl<D: SiteDevices, S: StateStore> Runtime<D, S> {
    /// A runtime over `devices` and `controller` (restored from `store` by the caller),
    /// persisting to `store`. Without [`Self::watch_estop`] the devices are read and written
    /// plainly (the simulation harness, whose devices answer at once).
    pub fn new(devices: D, controller: Controller, store: S) -> Self {
        Self {
            devices,
            controller,
            store,
            snapshot: Snapshot::unknown(Watts::ZERO),
            events: DeviceEvents::new(),
            device_trips: heapless::Vec::new(),
            watch: None,
            shutting_down: false,
            grid: NoGridPath::default(),
            standing: Standing::default(),
            fast_events: Events::new(),
            island: NoIslandPath,
        }
    }
}

impl<D: SiteDevices, S: StateStore, G0, I0> Runtime<D, S, G0, I0> {
    /// The same runtime with a grid-service path: every step calls its service, and the
    /// real-time loop runs its fast ticks.
    pub fn with_grid_path<G: GridPath>(self, grid: G) -> Runtime<D, S, G, I0> {
        Runtime {
            devices: self.devices,
            controller: self.controller,
            store: self.store,
            snapshot: self.snapshot,
            events: self.events,
            device_trips: self.device_trips,
            watch: self.watch,
            shutting_down: self.shutting_down,
            grid,
            standing: self.standing,
            fast_events: self.fast_events,
            island: self.island,
        }
    }

    /// The same runtime with an island path ([`crate::island`]).
    pub fn with_island_path<I: IslandPath>(self, island: I) -> Runtime<D, S, G0, I> {
        Runtime {
            devices: self.devices,
            controller: self.controller,
            store: self.store,
            snapshot: self.snapshot,
            events: self.events,
            device_trips: self.device_trips,
            watch: self.watch,
            shutting_down: self.shutting_down,
            grid: self.grid,
            standing: self.standing,
            fast_events: self.fast_events,
            island,
        }
    }
}

impl<D: SiteDevices, S: StateStore, G: GridPath, I: IslandPath> Runtime<D, S, G, I> {
    /// The island path.
    pub fn island_path(&mut self) -> &mut I {
        &mut self.island
    }

    /// The island path's status after the last step (`None`: no island path).
    #[must_use]
    pub fn island_status(&self) -> Option<&crate::island::IslandStatus> {
        self.island.status()
    }

    /// The grid-service path.
    pub fn grid_path(&mut self) -> &mut G {
        &mut self.grid
    }

    /// The fast tick period, if the grid path has one.
    #[must_use]
    pub fn fast_period(&self) -> Option<Millis> {
        self.grid.period()
    }

    /// Real time (needs a tokio runtime with its timer): watch the E-stop input at least every
    /// `tick` while devices are read or written, and let `trigger` (the software E-stop)
    /// interrupt them too.
    pub fn watch_estop(&mut self, tick: Duration, trigger: EStopTrigger) {
        self.devices.set_realtime(true);
        self.watch = Some(Watch { tick, trigger, io_budget: IO_BUDGET });
    }

    /// Real time: how long one cycle's reads (or writes) may take before they are abandoned
    /// (default [`IO_BUDGET`]).
    pub fn set_io_budget(&mut self, budget: Duration) {
        if let Some(w) = &mut self.watch {
            w.io_budget = budget;
        }
    }

    /// The controller.
    #[must_use]
    pub const fn controller(&self) -> &Controller {
        &self.controller
    }

    /// The last snapshot.
    #[must_use]
    pub const fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The device layer.
    pub fn devices(&mut self) -> &mut D {
        &mut self.devices
    }

    /// The state store.
    pub fn store(&mut self) -> &mut S {
        &mut self.store
    }

    /// The software E-stop, if watched.
    #[must_use]
    pub fn trigger(&self) -> Option<&EStopTrigger> {
        self.watch.as_ref().map(|w| &w.trigger)
    }

    /// Save the controller's state now.
    ///
    /// # Errors
    /// The store's error.
    pub fn persist(&mut self) -> Result<(), S::Error> {
        self.store.save(&self.controller.persisted())
    }

    /// One cycle at control time `now`: read → inputs (flags, device trips, hooks) → step →
    /// persist on change → apply with the envelope → carry the device trips.
    pub async fn cycle<H: Hook + ?Sized>(
        &mut self,
        now: Millis,
        flags: CycleFlags,
        hook: &mut H,
    ) -> CycleResult {
        self.shutting_down |= flags.shutdown;
        let mut interrupt =
            read_phase(&mut self.devices, &mut self.snapshot, &mut self.events, self.watch.as_ref(), now)
                .await;
        self.note_interrupt(interrupt, hook);
        if interrupt == Interrupt::None {
            // The island read-backs first: the grid services' own frequency source (if any)
            // then has the last word on the snapshot's grid frequency.
            self.island_read(now).await;
            interrupt = self.sample_watched(now, hook).await;
        }
        let software = self.trigger().is_some_and(EStopTrigger::take);
        let fast_path_taken = self.trigger().is_some_and(EStopTrigger::fast_path_taken);
        if software && interrupt == Interrupt::None && !fast_path_taken {
            // Pressed after the wait or the apply looked: zero and open first, then decide.
            let _ = self.devices.emergency_now(now, &mut self.events).await;
            self.note_interrupt(Interrupt::Software, hook);
        }

        let cx_state = self.controller.state();
        if let Some(request) = hook.island_request() {
            let outcome = self.island.request(now, &request);
            hook.island_answer(&request, outcome);
        }
        let island_bound = self.island.step(now, &self.snapshot, cx_state);
        let mut reread_interrupt = Interrupt::None;
        let out = {
            let cx = Context {
                now,
                snapshot: &self.snapshot,
                state: cx_state,
                latched: self.controller.latched(),
                mode: self.controller.mode(),
                shutting_down: self.shutting_down,
                island: self.island.status(),
            };
            let mut inputs = Inputs {
                device_trips: &self.device_trips,
                shutdown: flags.shutdown,
                emergency_stop: flags.emergency_stop || software,
                ..Inputs::default()
            };
            hook.inputs(&cx, &mut inputs);
            // After the hooks: the island sequence's bound is not theirs to lift.
            if island_bound.is_some() {
                inputs.grid_tie = island_bound;
            }
            self.standing = Standing::of(&inputs);
            if inputs.request == Some(TransitionRequest::Acknowledge) && cx_state == State::Error {
                // An acknowledge also resets a resettable BMS alarm (the wrapper rate-limits
                // the reset); the devices are read again (watched and bounded like any read)
                // so the step sees whether it cleared.
                if let Err(e) = self.devices.reset_bms_alarms(now).await {
                    tracing::warn!(target: "audit", "BMS alarm reset with the acknowledge: {e}");
                }
                let i = read_phase(
                    &mut self.devices,
                    &mut self.snapshot,
                    &mut self.events,
                    self.watch.as_ref(),
                    now,
                )
                .await;
                if i != Interrupt::None {
                    reread_interrupt = i;
                }
            }
            self.controller.step_with(now.get(), &self.snapshot, &inputs, self.grid.service())
        };
        // The hook was lent to the inputs until the step; a press the re-read saw is noted now.
        self.note_interrupt(reread_interrupt, hook);
        if interrupt == Interrupt::None {
            interrupt = reread_interrupt;
        }

        let persist_error = if out.state_changed() {
            self.store.save(&self.controller.persisted()).err().map(|e| e.to_string())
        } else {
            None
        };
        if let Some(e) = &persist_error {
            tracing::error!("state not persisted: {e}");
        }
        self.grid.stepped(now, &out, false);
        let out = self.with_fast_events(out);
        {
            let cx = self.context(now);
            hook.stepped(&cx, &out);
        }
        if software {
            if let Some(t) = self.trigger() {
                t.answer(out.state);
            }
        }

        let stop = out.state == State::Stopped
            || software
            || flags.emergency_stop
            || self.snapshot.estop_pressed(now)
            || interrupt != Interrupt::None;
        self.island_apply(now, stop).await;
        let budget = self.watch.as_ref().map(|w| w.io_budget);
        let (applied, i) = self.apply_phase(now, &out.command, budget, hook).await;
        if interrupt == Interrupt::None {
            interrupt = i;
        }
        {
            let cx = self.context(now);
            hook.applied(&cx, &out, applied.as_ref(), &self.events);
        }
        // The events of this cycle (and of the wait before it, e.g. an E-stop fast path) were
        // reported to the hooks.
        self.events.clear();
        CycleResult { output: out, applied, interrupt, persist_error }
    }

    /// One fast tick at control time `now` (see [`crate::fast`]): E-stop → frequency → step
    /// on the last snapshot with the standing inputs → apply. `None` when there is no fast path,
    /// or the controller is not RUNNING, or a graceful shutdown is under way (then only the
    /// cycles run).
    pub async fn fast_tick<H: Hook + ?Sized>(&mut self, now: Millis, hook: &mut H) -> Option<FastTick> {
        let period = self.grid.period()?;
        if self.controller.state() != State::Running || self.shutting_down {
            return None;
        }
        let cut = |interrupt| Some(FastTick { output: None, applied: None, interrupt });
        // The E-stop first, as in every cycle (a press runs the device layer's fast path).
        if self.devices.read_estop(now, &mut self.snapshot, &mut self.events).await {
            return cut(Interrupt::EStopInput);
        }
        self.island_read(now).await;
        let i = self.sample_watched(now, hook).await;
        if i != Interrupt::None {
            return cut(i);
        }
        let grid_tie = self.island.step(now, &self.snapshot, State::Running);
        let st = self.standing;
        let inputs = Inputs {
            grid_tie,
            device_trips: &self.device_trips,
            local_minute: st.local_minute,
            ess_override: st.ess_override,
            plan: st.plan,
            provider: st.provider,
            rule: st.rule,
            ..Inputs::default()
        };
        let out = self.controller.step_with(now.get(), &self.snapshot, &inputs, self.grid.service());
        if out.state_changed() {
            if let Err(e) = self.store.save(&self.controller.persisted()) {
                tracing::error!("state not persisted: {e}");
            }
        }
        for e in out.events.iter() {
            self.fast_events.push(e.at, e.kind);
        }
        self.grid.stepped(now, &out, true);
        let stop = out.state == State::Stopped || self.snapshot.estop_pressed(now);
        self.island_apply(now, stop).await;
        let budget = self.watch.as_ref().map(|_| core::time::Duration::from_millis(period.get()));
        let (applied, interrupt) = self.apply_phase(now, &out.command, budget, hook).await;
        Some(FastTick { output: Some(out), applied, interrupt })
    }

    /// The controller events of the fast ticks since the last cycle, then the cycle's own.
    fn with_fast_events(&mut self, mut out: Output) -> Output {
        if self.fast_events.is_empty() {
            return out;
        }
        let mut merged = core::mem::take(&mut self.fast_events);
        for e in out.events.iter() {
            merged.push(e.at, e.kind);
        }
        out.events = merged;
        out
    }

    /// The grid path's frequency read: in real time with the E-stop watched and bounded by the
    /// path's budget (a read that does not finish leaves the sample to age out); plain
    /// otherwise.
    async fn sample_watched<H: Hook + ?Sized>(&mut self, now: Millis, hook: &mut H) -> Interrupt {
        let Some(w) = &self.watch else {
            self.grid.sample(now, &mut self.snapshot).await;
            return Interrupt::None;
        };
        if self.grid.period().is_none() {
            return Interrupt::None;
        }
        let trigger = w.trigger.clone();
        let tick = w.tick;
        let deadline = tokio::time::Instant::now() + self.grid.io_budget();
        let i = {
            let sample = self.grid.sample(now, &mut self.snapshot);
            let watch = self.devices.wait_watched(now, &mut self.events, tick, deadline, trigger.pressed());
            tokio::select! {
                biased;
                () = sample => None,
                i = watch => Some(i),
            }
        };
        match i {
            None => Interrupt::None,
            Some(Interrupt::None) => {
                tracing::warn!("frequency read did not finish within {:?}: abandoned", self.grid.io_budget());
                Interrupt::None
            }
            Some(Interrupt::Software) => {
                if !trigger.fast_path_taken() {
                    let _ = self.devices.emergency_now(now, &mut self.events).await;
                    hook.estop_fast_path(trigger.fast_path_done(), true);
                }
                Interrupt::Software
            }
            Some(Interrupt::EStopInput) => Interrupt::EStopInput,
        }
    }

    /// Apply `command` (watched and bounded by `budget` in real time) and keep its device trips
    /// for the next step.
    async fn apply_phase<H: Hook + ?Sized>(
        &mut self,
        now: Millis,
        command: &Command,
        budget: Option<core::time::Duration>,
        hook: &mut H,
    ) -> (Option<ApplyReport>, Interrupt) {
        let (applied, interrupt) = match (&self.watch, budget) {
            (Some(w), Some(budget)) => {
                let trigger = w.trigger.clone();
                let apply = self.devices.apply_watched(
                    now,
                    command,
                    &mut self.events,
                    w.tick,
                    trigger.needs_fast_path(),
                );
                let (report, i) = match tokio::time::timeout(budget, apply).await {
                    Ok(r) => r,
                    Err(_) => {
                        tracing::warn!("device writes did not finish within {budget:?}: abandoned");
                        (None, Interrupt::None)
                    }
                };
                self.note_interrupt(i, hook);
                (report, i)
            }
            _ => (Some(self.devices.apply(now, command, &mut self.events).await), Interrupt::None),
        };
        self.device_trips.clear();
        if let Some(r) = &applied {
            let _ = self.device_trips.extend_from_slice(&r.trips);
        }
        (applied, interrupt)
    }

    fn context(&self, now: Millis) -> Context<'_> {
        Context {
            now,
            snapshot: &self.snapshot,
            state: self.controller.state(),
            latched: self.controller.latched(),
            mode: self.controller.mode(),
            shutting_down: self.shutting_down,
            island: self.island.status(),
        }
    }

    /// The island devices' reads, bounded by the I/O budget in real time (a read that does
    /// not finish leaves the read-backs to age out: the sequence then treats them as unknown).
    async fn island_read(&mut self, now: Millis) {
        match self.watch.as_ref().map(|w| w.io_budget) {
            Some(budget) => {
                let read = self.island.read(now, &mut self.snapshot);
                if tokio::time::timeout(budget, read).await.is_err() {
                    tracing::warn!("island device reads did not finish within {budget:?}: abandoned");
                }
            }
            None => self.island.read(now, &mut self.snapshot).await,
        }
    }

    /// The island devices' writes, bounded as [`Self::island_read`].
    async fn island_apply(&mut self, now: Millis, stop: bool) {
        match self.watch.as_ref().map(|w| w.io_budget) {
            Some(budget) => {
                if tokio::time::timeout(budget, self.island.apply(now, stop)).await.is_err() {
                    tracing::warn!("island device writes did not finish within {budget:?}: abandoned");
                }
            }
            None => self.island.apply(now, stop).await,
        }
    }

    /// A software E-stop interrupted a read or an apply: the device layer ran the fast path.
    /// (An input edge's fast path runs inside the device layer on the edge it saw; the time
    /// from the physical press is not known here.)
    fn note_interrupt<H: Hook + ?Sized>(&self, interrupt: Interrupt, hook: &mut H) {
        if interrupt == Interrupt::Software {
            if let Some(t) = self.trigger() {
                // Once per press, wherever the loop was when it came.
                let first = !t.fast_path_taken();
                let took = t.fast_path_done();
                if first {
                    hook.estop_fast_path(took, true);
                }
            }
        }
    }

    /// Between cycles, with the E-stop watched (real time only): wait until `deadline`, or a
    /// new press of the input (its fast path ran), or the software E-stop (its fast path is
    /// run here). Returns what cut the wait short.
    pub async fn wait<H: Hook + ?Sized>(
        &mut self,
        now: Millis,
        deadline: tokio::time::Instant,
        hook: &mut H,
    ) -> Interrupt {
        let Some(w) = &self.watch else {
            tokio::time::sleep_until(deadline).await;
            return Interrupt::None;
        };
        let trigger = w.trigger.clone();
        let tick = w.tick;
        let i = self.devices.wait_watched(now, &mut self.events, tick, deadline, trigger.pressed()).await;
        match i {
            // A press whose fast path already ran (in the apply) only starts the next cycle at
            // once, to latch the stop and answer.
            Interrupt::Software if trigger.fast_path_taken() => {}
            Interrupt::Software => {
                let _ = self.devices.emergency_now(now, &mut self.events).await;
                hook.estop_fast_path(trigger.fast_path_done(), true);
            }
            // The input's fast path ran inside the device layer on the edge it saw.
            Interrupt::EStopInput | Interrupt::None => {}
        }
        i
    }

    /// The device events since the last cycle (of the wait after it, or of a release).
    #[must_use]
    pub const fn events(&self) -> &DeviceEvents {
        &self.events
    }

    /// Clear the device events (after the caller reported the wait's).
    pub fn clear_events(&mut self) {
        self.events.clear();
    }

    /// Force zero and open now (a second signal, a shutdown that timed out).
    pub async fn force_zero_open(&mut self, now: Millis) -> (bool, bool) {
        self.devices.emergency_now(now, &mut self.events).await
    }

    /// End of control: zero, contactors open, the inverter's own settings restored.
    ///
    /// # Errors
    /// The inverter's restore failure.
    pub async fn release(&mut self, now: Millis) -> Result<(), ems_devices::wrappers::WrapperError> {
        self.devices.release(now, &mut self.events).await
    }

    /// Take the runtime apart (the harness's simulated crash drops it without a release).
    pub fn into_parts(self) -> (D, Controller, S) {
        (self.devices, self.controller, self.store)
    }
}

/// One cycle's reads: in real time with the E-stop watched (any pending software press cuts
/// them short, so that the stop is latched and answered at once even when a device hangs; its
/// fast path runs once) and bounded by the I/O budget; plain otherwise.
async fn read_phase<D: SiteDevices>(
    devices: &mut D,
    snapshot: &mut Snapshot,
    events: &mut DeviceEvents,
    watch: Option<&Watch>,
    now: Millis,
) -> Interrupt {
    let Some(w) = watch else {
        devices.read(now, snapshot, events).await;
        return Interrupt::None;
    };
    let trigger = w.trigger.clone();
    let budget = w.io_budget;
    let read = devices.read_watched(now, snapshot, events, w.tick, trigger.pressed());
    if let Ok(i) = tokio::time::timeout(budget, read).await {
        i
    } else {
        tracing::warn!("device reads did not finish within {budget:?}: abandoned, their signals go stale");
        Interrupt::None
    }
}
