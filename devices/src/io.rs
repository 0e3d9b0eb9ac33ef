//! [`DeviceSet`]: one cycle of reads and writes through the safety wrappers.
//!
//! The shell calls, once per cycle:
//!
//! 1. [`DeviceSet::read`] — the E-stop first ([`DeviceSet::check_estop`], which on `Pressed`
//!    writes a zero set-point and opens both relays at once, before any controller cycle), then
//!    the BMS, the inverter, the meter, the PV and the contactor feedback; every snapshot signal
//!    is filled (a failed read leaves the signal to go stale; a rejected value is invalid);
//! 2. `Controller::step(now, &snapshot, &Inputs { device_trips: &report.trips, .. })` with the
//!    trips of the previous [`DeviceSet::apply`];
//! 3. [`DeviceSet::apply`] with the command and the envelope's charge/discharge bounds.
//!
//! [`DeviceSet::release`] at shutdown: zero, open the contactors, restore the inverter's
//! settings — no device is left in a changed state.

use crate::traits::{Bms, DeviceError, EStopInput, Inverter, Meter, PvInverter, Relay};
use crate::wrappers::bms::{SafeBms, SafeBmsConfig};
use crate::wrappers::contactor::{ContactorConfig, ContactorSequencer, ContactorStatus};
use crate::wrappers::events::{Device, DeviceEvent, DeviceEvents, FieldValue, Rejection};
use crate::wrappers::inverter::{ApplyOutcome, SafeInverter, SafeInverterConfig};
use crate::wrappers::{ConfigError, WrapperError};
use ems_control::Command;
use ems_core::snapshot::{EStopInput as EStopState, FAST_MAX_AGE};
use ems_core::{ContactorCommand, Hertz, Measurement, Millis, Snapshot, TripReason, Volts, Watts};

/// Plain range checks for the grid meter and the PV reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ValidationConfig {
    /// Lowest accepted grid frequency (default 45 Hz).
    pub frequency_min: Hertz,
    /// Highest accepted grid frequency (default 65 Hz).
    pub frequency_max: Hertz,
    /// Lowest accepted grid voltage (default 0 V: a dead grid is a reading, not an error).
    pub voltage_min: Volts,
    /// Highest accepted grid voltage (default 1000 V).
    pub voltage_max: Volts,
    /// Highest accepted grid power magnitude (default 1 MW).
    pub grid_power_max: Watts,
    /// Highest accepted PV power (default 1 MW). Small negative PV readings (night
    /// consumption, down to −`pv_negative_tolerance`) are reported as zero; lower ones rejected.
    pub pv_power_max: Watts,
    /// See [`Self::pv_power_max`] (default 100 W).
    pub pv_negative_tolerance: Watts,
}

impl Default for ValidationConfig {
    fn default() -> Self {
        Self {
            frequency_min: ems_core::hertz!(45.0),
            frequency_max: ems_core::hertz!(65.0),
            voltage_min: Volts::ZERO,
            voltage_max: ems_core::volts!(1000.0),
            grid_power_max: ems_core::watts!(1.0e6),
            pv_power_max: ems_core::watts!(1.0e6),
            pv_negative_tolerance: ems_core::watts!(100.0),
        }
    }
}

/// Settings of every wrapper in a [`DeviceSet`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DeviceSetConfig {
    /// BMS wrapper.
    pub bms: SafeBmsConfig,
    /// Inverter wrapper.
    pub inverter: SafeInverterConfig,
    /// Contactor sequencing.
    pub contactor: ContactorConfig,
    /// Meter and PV plain validation.
    pub validation: ValidationConfig,
}

/// What one [`DeviceSet::apply`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct ApplyReport {
    /// The inverter wrapper's outcome.
    pub inverter: ApplyOutcome,
    /// The contactor sequencer's status.
    pub contactor: ContactorStatus,
    /// Device faults for the controller's `Inputs::device_trips` in the next cycle.
    pub trips: heapless::Vec<TripReason, 4>,
}

/// How long the fast path waits for each of its writes (zero set-point, relays open) before
/// it gives up on that device; both are issued at once, so one hung link delays neither the
/// other write nor (beyond this bound) the caller.
pub const EMERGENCY_IO_TIMEOUT: core::time::Duration = core::time::Duration::from_millis(2_000);

/// What interrupted a watched device operation (`read_watched`, `apply_watched`,
/// `wait_watched`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    /// Nothing: the operation completed (or the wait reached its deadline).
    None,
    /// A new press of the E-stop input; its fast path ran.
    EStopInput,
    /// The software E-stop; the fast path ran (in `wait_watched` the caller runs it).
    Software,
}

/// Run `work` while watching the E-stop input for a new press and the software E-stop; the
/// first to finish wins and the others are dropped. `pressed` is the device layer's record of
/// the input: the watcher keeps it current (a release seen here makes the next press an edge,
/// even if it comes in a later phase of the cycle).
async fn watched<E, X, W>(
    estop: &mut E,
    pressed: &mut bool,
    tick: core::time::Duration,
    software: X,
    work: W,
) -> Interrupt
where
    E: EStopInput,
    X: core::future::Future<Output = ()>,
    W: core::future::Future<Output = ()>,
{
    // Whether the watcher is inside a read of the input: a read is never abandoned half-way
    // when `work` finishes (a Modbus E-stop would otherwise lose its request in flight).
    let reading = core::cell::Cell::new(false);
    let watch = async {
        loop {
            // A read error is the regular check's business (reported, treated as pressed by
            // the envelope); the watcher only looks for a press.
            reading.set(true);
            let now_pressed = matches!(estop.read().await, Ok(EStopState::Pressed));
            reading.set(false);
            let edge = now_pressed && !*pressed;
            *pressed = now_pressed;
            if edge {
                return;
            }
            estop.changed(tick).await;
        }
    };
    let mut watch = core::pin::pin!(watch);
    let outcome = tokio::select! {
        biased;
        () = software => Interrupt::Software,
        () = &mut watch => Interrupt::EStopInput,
        () = work => Interrupt::None,
    };
    if matches!(outcome, Interrupt::None) && reading.get() {
        // Let the read in flight finish (bounded by the input's own timeout).
        let edge = core::future::poll_fn(|cx| match core::future::Future::poll(watch.as_mut(), cx) {
            core::task::Poll::Ready(()) => core::task::Poll::Ready(true),
            core::task::Poll::Pending if reading.get() => core::task::Poll::Pending,
            core::task::Poll::Pending => core::task::Poll::Ready(false),
        })
        .await;
        if edge {
            return Interrupt::EStopInput;
        }
    }
    outcome
}

/// Every device of a [`DeviceSet`] but the E-stop input, so the E-stop can be watched while
/// these are busy.
#[derive(Debug)]
struct Parts<B, I, M, P, PR, MR> {
    bms: SafeBms<B>,
    inverter: SafeInverter<I>,
    meter: M,
    pv: P,
    contactor: ContactorSequencer<PR, MR>,
    config: DeviceSetConfig,
    grid: ems_core::snapshot::GridSignals,
    pv_power: Measurement<Watts>,
    meter_failing: bool,
    pv_failing: bool,
}

/// The site's devices behind their safety wrappers.
#[derive(Debug)]
pub struct DeviceSet<B, I, M, P, PR, MR, E> {
    parts: Parts<B, I, M, P, PR, MR>,
    estop: E,
    estop_reading: Measurement<EStopState>,
    estop_pressed: bool,
    estop_failing: bool,
    realtime: bool,
    emergency_timeout: core::time::Duration,
}

impl<B, I, M, P, PR, MR, E> DeviceSet<B, I, M, P, PR, MR, E>
where
    B: Bms,
    I: Inverter,
    M: Meter,
    P: PvInverter,
    PR: Relay,
    MR: Relay,
    E: EStopInput,
{
    /// Wrap the devices; every config is validated.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the field and value when a wrapper's configuration (BMS, inverter, contactor,
    /// rate limits) is invalid.
    #[allow(clippy::too_many_arguments)] // one argument per device kind, named by the trait
    pub fn new(
        bms: B,
        inverter: I,
        meter: M,
        pv: P,
        precharge_relay: PR,
        main_contactor: MR,
        estop: E,
        config: DeviceSetConfig,
    ) -> Result<Self, ConfigError> {
        let unknown = Snapshot::unknown(Watts::ZERO);
        let v = &config.validation;
        if v.frequency_min > v.frequency_max {
            return Err(ConfigError::new(
                "validation.frequency_min",
                f64::from(v.frequency_min.get()),
                "must not exceed frequency_max",
            ));
        }
        if v.voltage_min > v.voltage_max {
            return Err(ConfigError::new(
                "validation.voltage_min",
                f64::from(v.voltage_min.get()),
                "must not exceed voltage_max",
            ));
        }
        Ok(Self {
            parts: Parts {
                bms: SafeBms::new(bms, config.bms)?,
                inverter: SafeInverter::new(inverter, config.inverter)?,
                meter,
                pv,
                contactor: ContactorSequencer::new(precharge_relay, main_contactor, config.contactor)?,
                config,
                grid: unknown.grid,
                pv_power: unknown.pv_power,
                meter_failing: false,
                pv_failing: false,
            },
            estop,
            estop_reading: unknown.estop,
            estop_pressed: false,
            estop_failing: false,
            realtime: false,
            emergency_timeout: EMERGENCY_IO_TIMEOUT,
        })
    }

    /// The configuration.
    #[must_use]
    pub const fn config(&self) -> &DeviceSetConfig {
        &self.parts.config
    }

    /// The BMS wrapper.
    pub fn bms(&mut self) -> &mut SafeBms<B> {
        &mut self.parts.bms
    }

    /// The inverter wrapper.
    pub fn inverter(&mut self) -> &mut SafeInverter<I> {
        &mut self.parts.inverter
    }

    /// The contactor sequencer.
    pub fn contactor(&mut self) -> &mut ContactorSequencer<PR, MR> {
        &mut self.parts.contactor
    }

    /// The meter.
    pub fn meter(&mut self) -> &mut M {
        &mut self.parts.meter
    }

    /// The PV inverter.
    pub fn pv(&mut self) -> &mut P {
        &mut self.parts.pv
    }

    /// The E-stop input.
    pub fn estop(&mut self) -> &mut E {
        &mut self.estop
    }

    /// Whether the inverter control lease is held at `now`.
    #[must_use]
    pub fn lease_active(&self, now: Millis) -> bool {
        self.parts.inverter.lease_active(now)
    }

    /// The E-stop fast path: read the input; on `Pressed`, write a zero set-point and command
    /// both relays open at once. On the press edge an [`DeviceEvent::EStopFastPath`] is
    /// emitted; while it stays pressed the relays are re-commanded open every call and zero is
    /// re-written if anything else was written. Returns whether the E-stop is pressed (an
    /// unreadable input returns `false` here and is reported invalid in the snapshot, which
    /// the controller treats as pressed for the envelope).
    pub async fn check_estop(&mut self, now: Millis, events: &mut DeviceEvents) -> bool {
        let reading = match self.estop.read().await {
            Ok(r) => {
                if self.estop_failing {
                    events.push(now, DeviceEvent::CommRestored { device: Device::EStop });
                }
                self.estop_failing = false;
                self.estop_reading.update(r, now);
                r
            }
            Err(e) => {
                if !self.estop_failing {
                    events.push(now, DeviceEvent::ReadFailed { device: Device::EStop, kind: e.kind() });
                }
                self.estop_failing = true;
                return false;
            }
        };
        let pressed = reading == EStopState::Pressed;
        if pressed {
            let edge = !self.estop_pressed;
            let zero_needed = edge || self.parts.inverter.last_written() != Watts::ZERO;
            let (zero_written, relays_opened) = if zero_needed {
                self.emergency_now(now, events).await
            } else {
                (true, self.parts.contactor.emergency_open(now, events).await)
            };
            if edge {
                events.push(now, DeviceEvent::EStopFastPath { zero_written, relays_opened });
            }
        }
        self.estop_pressed = pressed;
        pressed
    }

    /// Only the E-stop ([`Self::check_estop`], its fast path included) into the snapshot: the
    /// grid services' fast tick reads the input first, like every cycle does.
    pub async fn read_estop(
        &mut self,
        now: Millis,
        snapshot: &mut Snapshot,
        events: &mut DeviceEvents,
    ) -> bool {
        let pressed = self.check_estop(now, events).await;
        snapshot.estop = self.estop_reading;
        pressed
    }

    /// Poll every device once and fill every snapshot signal (E-stop first).
    pub async fn read(&mut self, now: Millis, snapshot: &mut Snapshot, events: &mut DeviceEvents) {
        let _ = self.check_estop(now, events).await;
        snapshot.estop = self.estop_reading;
        self.parts.read(now, snapshot, events).await;
    }

    /// [`Self::read`] with the E-stop watched while the other devices are read: the input is
    /// read again whenever it may have changed (at least every `tick`), and `software` is a
    /// software E-stop (the API's) that resolves when pressed. On a new press of either the
    /// reads in flight are abandoned (a hung device cannot hold the E-stop up) and
    /// [`Self::emergency_now`] commands zero and open in parallel. Returns what interrupted
    /// the reads, if anything; the snapshot then holds the signals read so far.
    pub async fn read_watched<X>(
        &mut self,
        now: Millis,
        snapshot: &mut Snapshot,
        events: &mut DeviceEvents,
        tick: core::time::Duration,
        software: X,
    ) -> Interrupt
    where
        X: core::future::Future<Output = ()>,
    {
        let _ = self.check_estop(now, events).await;
        snapshot.estop = self.estop_reading;
        let interrupt = {
            let work = self.parts.read(now, snapshot, events);
            watched(&mut self.estop, &mut self.estop_pressed, tick, software, work).await
        };
        self.after_interrupt(now, snapshot, events, interrupt).await
    }

    /// [`Self::apply`] with the E-stop watched as in [`Self::read_watched`]: a write in flight
    /// (or hung) does not delay the fast path. `None` when the apply was interrupted.
    pub async fn apply_watched<X>(
        &mut self,
        now: Millis,
        command: &Command,
        events: &mut DeviceEvents,
        tick: core::time::Duration,
        software: X,
    ) -> (Option<ApplyReport>, Interrupt)
    where
        X: core::future::Future<Output = ()>,
    {
        let mut report = None;
        let hold = self.estop_pressed;
        let interrupt = {
            let work = async {
                report = Some(self.parts.apply(now, command, hold, events).await);
            };
            watched(&mut self.estop, &mut self.estop_pressed, tick, software, work).await
        };
        let mut scratch = Snapshot::unknown(Watts::ZERO);
        let interrupt = self.after_interrupt(now, &mut scratch, events, interrupt).await;
        (report, interrupt)
    }

    /// Record what interrupted a watched operation and take the fast path for it.
    async fn after_interrupt(
        &mut self,
        now: Millis,
        snapshot: &mut Snapshot,
        events: &mut DeviceEvents,
        interrupt: Interrupt,
    ) -> Interrupt {
        if interrupt == Interrupt::None {
            return interrupt;
        }
        if interrupt == Interrupt::EStopInput {
            self.estop_reading.update(EStopState::Pressed, now);
            snapshot.estop = self.estop_reading;
        }
        let (zero_written, relays_opened) = self.emergency_now(now, events).await;
        events.push(now, DeviceEvent::EStopFastPath { zero_written, relays_opened });
        interrupt
    }

    /// Wait between cycles with the E-stop watched: returns at `deadline`, on a new press of
    /// the input (after its fast path ran) or when `software` resolves (the caller then takes
    /// the fast path with [`Self::emergency_now`]). The input is only read here; while it stays
    /// pressed, zero and open are re-commanded once a cycle by [`Self::read`]'s check, not
    /// every tick (a Modbus I/O module or a hung inverter would otherwise see a write per
    /// millisecond).
    pub async fn wait_watched<X>(
        &mut self,
        now: Millis,
        events: &mut DeviceEvents,
        tick: core::time::Duration,
        deadline: tokio::time::Instant,
        software: X,
    ) -> Interrupt
    where
        X: core::future::Future<Output = ()>,
    {
        let sleep = tokio::time::sleep_until(deadline);
        let w = watched(&mut self.estop, &mut self.estop_pressed, tick, software, sleep).await;
        if w == Interrupt::Software {
            // The caller runs the software fast path (it times it).
            return w;
        }
        let mut scratch = Snapshot::unknown(Watts::ZERO);
        self.after_interrupt(now, &mut scratch, events, w).await
    }

    /// Run on a tokio runtime with its timer (the real-time loop): the fast path then bounds
    /// each of its writes by [`EMERGENCY_IO_TIMEOUT`] (or [`Self::set_emergency_timeout`]).
    /// Without it (the simulation harness, whose devices answer at once) no timer is touched.
    pub fn set_realtime(&mut self, realtime: bool) {
        self.realtime = realtime;
    }

    /// How long the real-time fast path waits for each of its writes (default
    /// [`EMERGENCY_IO_TIMEOUT`]); a link's own request timeout is usually shorter.
    pub fn set_emergency_timeout(&mut self, timeout: core::time::Duration) {
        self.emergency_timeout = timeout;
    }

    /// The fast path: a zero set-point and both relays commanded open *in parallel*, so a hung
    /// inverter link does not delay the contactors (in real time each side is bounded by
    /// [`EMERGENCY_IO_TIMEOUT`]). Returns (zero written, relays opened).
    pub async fn emergency_now(&mut self, now: Millis, events: &mut DeviceEvents) -> (bool, bool) {
        let parts = &mut self.parts;
        if self.realtime {
            let zero = tokio::time::timeout(self.emergency_timeout, parts.inverter.emergency_zero(now));
            let open =
                tokio::time::timeout(self.emergency_timeout, parts.contactor.emergency_open(now, events));
            let (zero, open) = tokio::join!(zero, open);
            (matches!(zero, Ok(Ok(()))), matches!(open, Ok(true)))
        } else {
            let (zero, open) =
                tokio::join!(parts.inverter.emergency_zero(now), parts.contactor.emergency_open(now, events));
            (zero.is_ok(), open)
        }
    }

    /// Apply one cycle's command — only `Controller::step` makes a [`Command`], so nothing but
    /// the final clamp's output reaches the devices: the contactor sequence and the inverter
    /// set-point (bounded by the command's own envelope bounds). When opening, zero is
    /// written before the contactor opens; when closing, the contactor goes first. The inverter
    /// lease is taken on the first non-zero set-point. The returned trips go to the
    /// controller's `Inputs::device_trips` in the next cycle. An E-stop seen by the fast path
    /// holds zero and open whatever the command says.
    pub async fn apply(&mut self, now: Millis, command: &Command, events: &mut DeviceEvents) -> ApplyReport {
        self.parts.apply(now, command, self.estop_pressed, events).await
    }

    /// End control: write zero, open the contactors, restore the inverter's previous settings.
    /// The error (if any) is the inverter's restore failure; the settings stay remembered so
    /// the call can be retried.
    ///
    /// # Errors
    ///
    /// The inverter's restore failure ([`WrapperError`]): its previous settings could not be written back;
    /// they stay remembered so the call can be retried.
    pub async fn release(&mut self, now: Millis, events: &mut DeviceEvents) -> Result<(), WrapperError> {
        self.parts.release(now, events).await
    }

    /// Reset latched BMS alarms (rate-limited).
    ///
    /// # Errors
    ///
    /// [`WrapperError`] when the reset is refused by the rate limit, or the BMS fails to take it.
    pub async fn reset_bms_alarms(&mut self, now: Millis) -> Result<(), WrapperError> {
        self.parts.bms.reset_alarms(now).await
    }
}

impl<B, I, M, P, PR, MR> Parts<B, I, M, P, PR, MR>
where
    B: Bms,
    I: Inverter,
    M: Meter,
    P: PvInverter,
    PR: Relay,
    MR: Relay,
{
    /// Every device but the E-stop, into the snapshot.
    async fn read(&mut self, now: Millis, snapshot: &mut Snapshot, events: &mut DeviceEvents) {
        self.bms.poll(now, events).await;
        self.bms.fill(now, &mut snapshot.battery);

        let _ = self.inverter.poll(now, events).await;
        self.inverter.fill(now, &mut snapshot.inverter);

        self.read_meter(now, events).await;
        snapshot.grid = self.grid;
        self.read_pv(now, events).await;
        snapshot.pv_power = self.pv_power;

        let status = self.contactor.observe().await;
        fill_contactor(now, &status, snapshot);
    }

    async fn read_meter(&mut self, now: Millis, events: &mut DeviceEvents) {
        let r = match self.meter.read().await {
            Ok(r) => r,
            Err(e) => {
                if !self.meter_failing {
                    events.push(now, DeviceEvent::ReadFailed { device: Device::Meter, kind: e.kind() });
                }
                self.meter_failing = true;
                return;
            }
        };
        if self.meter_failing {
            events.push(now, DeviceEvent::CommRestored { device: Device::Meter });
        }
        self.meter_failing = false;
        // A reading reused by a cache (`Polled`) is as old as the real read, not `now`.
        let at = now.since(self.meter.reading_age());
        let v = self.config.validation;
        let reject = |events: &mut DeviceEvents, field, value, min, max| {
            events.push(
                now,
                DeviceEvent::ReadingRejected {
                    device: Device::Meter,
                    field,
                    value,
                    why: Rejection::OutOfRange { min, max },
                },
            );
        };
        if r.active_power.abs() <= v.grid_power_max {
            self.grid.active_power.update(r.active_power, at);
        } else {
            reject(
                events,
                "active_power",
                FieldValue::Watts(r.active_power),
                FieldValue::Watts(-v.grid_power_max),
                FieldValue::Watts(v.grid_power_max),
            );
            self.grid.active_power.invalidate();
        }
        if r.voltage >= v.voltage_min && r.voltage <= v.voltage_max {
            self.grid.voltage.update(r.voltage, at);
        } else {
            reject(
                events,
                "voltage",
                FieldValue::Volts(r.voltage),
                FieldValue::Volts(v.voltage_min),
                FieldValue::Volts(v.voltage_max),
            );
            self.grid.voltage.invalidate();
        }
        // A meter without frequency (P1) leaves the signal to the frequency source, or to age out.
        let Some(frequency) = r.frequency else { return };
        if frequency >= v.frequency_min && frequency <= v.frequency_max {
            self.grid.frequency.update(frequency, at);
        } else {
            reject(
                events,
                "frequency",
                FieldValue::Hertz(frequency),
                FieldValue::Hertz(v.frequency_min),
                FieldValue::Hertz(v.frequency_max),
            );
            self.grid.frequency.invalidate();
        }
    }

    async fn read_pv(&mut self, now: Millis, events: &mut DeviceEvents) {
        let r = match self.pv.read().await {
            Ok(r) => r,
            Err(e) => {
                if !self.pv_failing {
                    events.push(now, DeviceEvent::ReadFailed { device: Device::Pv, kind: e.kind() });
                }
                self.pv_failing = true;
                return;
            }
        };
        if self.pv_failing {
            events.push(now, DeviceEvent::CommRestored { device: Device::Pv });
        }
        self.pv_failing = false;
        // A reading reused by a cache (`Polled`) is as old as the real read, not `now`.
        let at = now.since(self.pv.reading_age());
        let v = self.config.validation;
        let p = r.active_power;
        if p >= -v.pv_negative_tolerance && p <= v.pv_power_max {
            self.pv_power.update(p.max(Watts::ZERO), at);
        } else {
            events.push(
                now,
                DeviceEvent::ReadingRejected {
                    device: Device::Pv,
                    field: "active_power",
                    value: FieldValue::Watts(p),
                    why: Rejection::OutOfRange {
                        min: FieldValue::Watts(-v.pv_negative_tolerance),
                        max: FieldValue::Watts(v.pv_power_max),
                    },
                },
            );
            self.pv_power.invalidate();
        }
    }

    /// Apply one cycle's command (see [`DeviceSet::apply`]): the contactor sequence and the
    /// inverter set-point (bounded by the command's envelope bounds). When opening, zero is
    /// written before the contactor opens; when closing, the contactor goes first. The inverter
    /// lease is taken on the first non-zero set-point. The returned trips go to the
    /// controller's `Inputs::device_trips` in the next cycle.
    async fn apply(
        &mut self,
        now: Millis,
        command: &Command,
        estop_pressed: bool,
        events: &mut DeviceEvents,
    ) -> ApplyReport {
        let pack = self.bms_pack_voltage(now);
        let dc = self.inverter.dc_link_voltage(now);
        // An E-stop seen by the fast path in this cycle holds zero whatever the command says.
        let contactor_cmd = if estop_pressed { ContactorCommand::Open } else { command.contactor() };
        let (inverter, contactor) = if contactor_cmd == ContactorCommand::Open {
            let inv = if estop_pressed {
                self.inverter.apply_zero(now, command, events).await
            } else {
                self.inverter.apply(now, command, events).await
            };
            let c = self.contactor.step(now, contactor_cmd, pack, dc, events).await;
            (inv, c)
        } else {
            let c = self.contactor.step(now, contactor_cmd, pack, dc, events).await;
            let inv = self.inverter.apply(now, command, events).await;
            (inv, c)
        };
        let mut trips = heapless::Vec::new();
        for t in inverter.trips.iter().chain(contactor.trips.iter()) {
            if !trips.contains(t) {
                let _ = trips.push(*t);
            }
        }
        ApplyReport { inverter, contactor, trips }
    }

    fn bms_pack_voltage(&self, now: Millis) -> Option<Volts> {
        let mut battery = Snapshot::unknown(Watts::ZERO).battery;
        self.bms.fill(now, &mut battery);
        battery.pack_voltage.value_at(now)
    }

    /// End control: write zero, open the contactors, restore the inverter's previous settings.
    /// The error (if any) is the inverter's restore failure; the settings stay remembered so
    /// the call can be retried.
    async fn release(&mut self, now: Millis, events: &mut DeviceEvents) -> Result<(), WrapperError> {
        if self.inverter.last_written() != Watts::ZERO {
            if let Err(kind) = self.inverter.emergency_zero(now).await {
                events.push(now, DeviceEvent::WriteFailed { device: Device::Inverter, kind });
            }
        }
        let _ = self.contactor.step(now, ContactorCommand::Open, None, None, events).await;
        self.inverter.release(now, events).await
    }
}

/// Write the contactor status into the snapshot (feedback unreadable → invalid).
fn fill_contactor(now: Millis, status: &ContactorStatus, snapshot: &mut Snapshot) {
    match status.state {
        Some(s) => {
            snapshot.contactor = Measurement::good(s, now, FAST_MAX_AGE);
            snapshot.precharge_done = Measurement::good(status.precharge_done, now, FAST_MAX_AGE);
        }
        None => {
            snapshot.contactor.invalidate();
            snapshot.precharge_done.invalidate();
        }
    }
}
