//! [`Runtime`]: one control cycle, the same for every run.

use crate::handles::EStopTrigger;
use crate::hook::{Context, Hook};
use crate::site::SiteDevices;
use ems_control::{Controller, Inputs, Output};
use ems_core::persist::StateStore;
use ems_core::{Millis, Snapshot, State, TransitionRequest, TripReason, Watts};
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
#[derive(Debug)]
pub struct Runtime<D, S> {
    devices: D,
    controller: Controller,
    store: S,
    snapshot: Snapshot,
    events: DeviceEvents,
    device_trips: heapless::Vec<TripReason, 4>,
    watch: Option<Watch>,
    shutting_down: bool,
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
        }
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
        let software = self.trigger().is_some_and(EStopTrigger::take);
        let fast_path_taken = self.trigger().is_some_and(EStopTrigger::fast_path_taken);
        if software && interrupt == Interrupt::None && !fast_path_taken {
            // Pressed after the wait or the apply looked: zero and open first, then decide.
            let _ = self.devices.emergency_now(now, &mut self.events).await;
            self.note_interrupt(Interrupt::Software, hook);
        }

        let cx_state = self.controller.state();
        let mut reread_interrupt = Interrupt::None;
        let out = {
            let cx = Context {
                now,
                snapshot: &self.snapshot,
                state: cx_state,
                latched: self.controller.latched(),
                mode: self.controller.mode(),
                shutting_down: self.shutting_down,
            };
            let mut inputs = Inputs {
                device_trips: &self.device_trips,
                shutdown: flags.shutdown,
                emergency_stop: flags.emergency_stop || software,
                ..Inputs::default()
            };
            hook.inputs(&cx, &mut inputs);
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
            self.controller.step(now.get(), &self.snapshot, &inputs)
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
        {
            let cx = self.context(now);
            hook.stepped(&cx, &out);
        }
        if software {
            if let Some(t) = self.trigger() {
                t.answer(out.state);
            }
        }

        let applied = match &self.watch {
            Some(w) => {
                let trigger = w.trigger.clone();
                let budget = w.io_budget;
                let apply = self.devices.apply_watched(
                    now,
                    &out.command,
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
                if interrupt == Interrupt::None {
                    interrupt = i;
                }
                self.note_interrupt(i, hook);
                report
            }
            None => Some(self.devices.apply(now, &out.command, &mut self.events).await),
        };
        self.device_trips.clear();
        if let Some(r) = &applied {
            let _ = self.device_trips.extend_from_slice(&r.trips);
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

    fn context(&self, now: Millis) -> Context<'_> {
        Context {
            now,
            snapshot: &self.snapshot,
            state: self.controller.state(),
            latched: self.controller.latched(),
            mode: self.controller.mode(),
            shutting_down: self.shutting_down,
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
