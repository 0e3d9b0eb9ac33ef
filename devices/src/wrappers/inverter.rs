//! [`SafeInverter`]: every set-point is clamped, ramped, deadbanded, budgeted, written under a
//! control lease and verified by read-back.
//!
//! # The control lease
//!
//! [`SafeInverter::take_control`] reads and remembers the device's [`InverterSettings`], then
//! writes `Remote` with the revert timer armed for [`SafeInverterConfig::lease`] (only when
//! [`InverterCapabilities::revert_timer`]; without it the EMS's own watchdog is the only fallback
//! if the EMS hangs, and the event says so). Every set-point write renews the lease; when no
//! write is needed, the settings are re-written every `lease / 3`. [`SafeInverter::release`]
//! writes zero and restores the remembered settings exactly. A device found in `Local` while the
//! wrapper holds the lease (it reverted because the EMS hung, or somebody switched it) is
//! reported ([`DeviceEvent::LeaseLost`]), control is re-taken and the set-point ramps from zero.
//!
//! # Read-back verification
//!
//! Every written value must show up in the device's read-back `setpoint` (within
//! `max(readback_tolerance, readback_tolerance_pct × |value|)`) — or be superseded by a later
//! written value that shows up — within [`SafeInverterConfig::readback_cycles`] successful
//! polls. Otherwise a [`DeviceEvent::SetpointNotApplied`] is emitted and the next
//! [`SafeInverter::apply`] returns [`TripReason::SetpointNotApplied`]. Polls whose read failed do
//! not count (a dead link is reported by the signals going stale, not as a refusal).
//!
//! # Device errors by kind
//!
//! * A **dead link** (`Timeout`, `Comm`) on a read keeps the last reading, which goes stale
//!   through its maximum age (then the safety layer takes the worst case); a write lost on a
//!   dead link is reported ([`DeviceEvent::WriteFailed`]) and retried by the next cycle.
//! * A read **answered with no usable reading** (`Refused`, `Decode`, `OutOfRange`: an
//!   exception, garbage, a value outside its range) drops the last reading at once: the
//!   signals are invalid and the rating unknown, so no power is allowed until a good read.
//! * A **refused write** (the device answered with an exception) is reported with the
//!   device's exception code ([`DeviceEvent::WriteRefused`]), gives back its flash-budget slot
//!   (nothing was stored) and counts like a lost lease: [`MAX_LEASE_LOSSES`] of them (refusals
//!   and losses together) without a confirmed non-zero set-point trip
//!   [`TripReason::SetpointNotApplied`].

use super::events::{ClampedBy, Device, DeviceEvent, DeviceEvents, SkipReason};
use super::rate::{RateLimit, RateLimiter};
use super::{check_positive_ms, ms_f64, ConfigError, WrapperError};
use crate::traits::{
    ControlSource, DeviceError, ErrorKind, Inverter, InverterCapabilities, InverterReading, InverterSettings,
};
use ems_control::{Command, CommandClass};
use ems_core::snapshot::{InverterSignals, FAST_MAX_AGE, SLOW_MAX_AGE};
use ems_core::{Measurement, Millis, Percent, TripReason, Volts, Watts};

/// Largest accepted [`SafeInverterConfig::readback_cycles`].
pub const MAX_READBACK_CYCLES: u8 = 6;

/// [`SafeInverter`] settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SafeInverterConfig {
    /// Writes that change the set-point by less than this are skipped, unless the move is to
    /// zero or the device's value is outside the current bounds (default 20 W).
    pub deadband: Watts,
    /// Set-point writes per [`Self::flash_write_window`] when the device stores set-points in
    /// flash (default 360). Moves toward zero are never refused (they still count).
    pub flash_write_budget: u16,
    /// Rolling window of the flash write budget (default 1 h).
    pub flash_write_window: Millis,
    /// Minimum interval between flash set-point writes (default 2 s).
    pub flash_min_interval: Millis,
    /// Successful polls within which a written set-point must be read back (default 3).
    pub readback_cycles: u8,
    /// Absolute read-back tolerance (default 50 W).
    pub readback_tolerance: Watts,
    /// Relative read-back tolerance (default 2 %); the larger of the two applies.
    pub readback_tolerance_pct: Percent,
    /// Control lease: the device's revert timer (default 10 s).
    pub lease: Millis,
}

impl Default for SafeInverterConfig {
    fn default() -> Self {
        Self {
            deadband: ems_core::watts!(20.0),
            flash_write_budget: 360,
            flash_write_window: Millis::from_secs(3600),
            flash_min_interval: Millis::from_secs(2),
            readback_cycles: 3,
            readback_tolerance: ems_core::watts!(50.0),
            readback_tolerance_pct: ems_core::percent!(2.0),
            lease: Millis::from_secs(10),
        }
    }
}

impl SafeInverterConfig {
    /// Check every field; the error names the field and the value.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the first field out of its range and its value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.deadband.get() < 0.0 {
            return Err(ConfigError::new("deadband", f64::from(self.deadband.get()), "must be ≥ 0 W"));
        }
        if self.readback_cycles == 0 || self.readback_cycles > MAX_READBACK_CYCLES {
            return Err(ConfigError::new(
                "readback_cycles",
                f64::from(self.readback_cycles),
                "must be 1..=6",
            ));
        }
        if self.readback_tolerance.get() < 0.0 {
            return Err(ConfigError::new(
                "readback_tolerance",
                f64::from(self.readback_tolerance.get()),
                "must be ≥ 0 W",
            ));
        }
        check_positive_ms("lease", self.lease)?;
        if self.lease < Millis::new(300) {
            return Err(ConfigError::new("lease", ms_f64(self.lease), "must be ≥ 300 ms"));
        }
        self.limiter().map(|_| ())
    }

    fn limiter(&self) -> Result<RateLimiter, ConfigError> {
        RateLimiter::new(self.flash_min_interval, self.flash_write_budget, self.flash_write_window).map_err(
            |e| {
                ConfigError::new(
                    match e.field {
                        "budget" => "flash_write_budget",
                        "window" => "flash_write_window",
                        _ => "flash_min_interval",
                    },
                    e.value,
                    e.requirement,
                )
            },
        )
    }
}

/// Why the device holds less than (or other than) the command asked: the wrapper's own
/// shaping, reported so that no throttling below the command is silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttle {
    /// Clamped to the device rating or the command's bounds, or no control lease.
    Clamped(ClampedBy),
    /// The wrapper's ramp (derived from the command's own, [`RAMP_MARGIN`] wider) held it back:
    /// the device lags (e.g. after a lease was re-taken and the set-point ramps from zero).
    Ramp,
    /// The write was skipped (deadband, flash budget, minimum interval).
    Skipped(SkipReason),
}

/// The wrapper's ramp is the command's ramp times this: wide enough that cycle jitter never lets
/// it fight the controller's ramp, tight enough to stop a runaway set-point. There is one ramp
/// setting (the site file's `ramp_w_per_s`); this guard derives from it.
pub const RAMP_MARGIN: f32 = 1.25;

/// What [`SafeInverter::apply`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct ApplyOutcome {
    /// The set-point after clamping and ramping (what the device should hold).
    pub target: Watts,
    /// Why [`Self::target`] (or the value the device keeps) differs from the command's
    /// set-point, if it does.
    pub throttled: Option<Throttle>,
    /// The value written in this call (`None`: no write needed, skipped or failed).
    pub written: Option<Watts>,
    /// A write that failed, by kind.
    pub write_error: Option<ErrorKind>,
    /// Device faults to pass to the controller (`Inputs::device_trips`).
    pub trips: heapless::Vec<TripReason, 2>,
}

#[derive(Debug, Clone, Copy)]
struct Lease {
    renewed_at: Millis,
}

/// Consecutive lease losses without a confirmed set-point that count as "set-point not applied".
const MAX_LEASE_LOSSES: u8 = 3;

/// An inverter behind the set-point and control-lease safety logic.
#[derive(Debug)]
pub struct SafeInverter<I> {
    inv: I,
    config: SafeInverterConfig,
    caps: InverterCapabilities,
    limiter: RateLimiter,
    reading: Option<(InverterReading, Millis)>,
    read_failing: bool,
    last_written: Watts,
    last_write_at: Option<Millis>,
    prev_apply: Option<Millis>,
    /// Written values not yet seen in the read-back, oldest first, with the successful polls
    /// since each was written.
    unconfirmed: heapless::Deque<(Watts, u8), 8>,
    pending_trip: bool,
    /// Consecutive times the device was found back in Local (lease lost) without one of our
    /// set-points being confirmed in between.
    lease_losses: u8,
    lease: Option<Lease>,
    original: Option<InverterSettings>,
    last_settings_check: Millis,
    last_clamp: Option<ClampedBy>,
    last_skip: Option<SkipReason>,
}

impl<I: Inverter> SafeInverter<I> {
    /// Wrap `inv`; the config is validated. The capabilities are read once here.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `config` does not validate ([`SafeInverterConfig::validate`]).
    pub fn new(inv: I, config: SafeInverterConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let caps = inv.capabilities();
        let limiter = if caps.setpoint_in_flash { config.limiter()? } else { RateLimiter::unlimited() };
        Ok(Self {
            inv,
            config,
            caps,
            limiter,
            reading: None,
            read_failing: false,
            last_written: Watts::ZERO,
            last_write_at: None,
            prev_apply: None,
            unconfirmed: heapless::Deque::new(),
            pending_trip: false,
            lease_losses: 0,
            lease: None,
            original: None,
            last_settings_check: Millis::ZERO,
            last_clamp: None,
            last_skip: None,
        })
    }

    /// The configuration.
    #[must_use]
    pub const fn config(&self) -> &SafeInverterConfig {
        &self.config
    }

    /// The wrapped device.
    #[must_use]
    pub const fn device(&self) -> &I {
        &self.inv
    }

    /// The wrapped device, mutably: bypasses every check of the wrapper, so only for tests
    /// (private feature `_test-access`, never enabled by a production build).
    ///
    /// ```compile_fail,E0599
    /// // Without the private feature the raw driver cannot be reached.
    /// fn raw<I: ems_devices::traits::Inverter>(s: &mut ems_devices::wrappers::SafeInverter<I>) {
    ///     let _ = s.device_mut();
    /// }
    /// ```
    #[cfg(feature = "_test-access")]
    pub fn device_mut(&mut self) -> &mut I {
        &mut self.inv
    }

    /// Unwrap (private feature `_test-access`, like [`Self::device`]'s mutable twin).
    #[cfg(feature = "_test-access")]
    pub fn into_inner(self) -> I {
        self.inv
    }

    /// The last successful reading and when it was taken.
    #[must_use]
    pub const fn last_reading(&self) -> Option<(InverterReading, Millis)> {
        self.reading
    }

    /// The last value written successfully (zero before the first write).
    #[must_use]
    pub const fn last_written(&self) -> Watts {
        self.last_written
    }

    /// The DC-link voltage from a reading no older than the fast max age.
    #[must_use]
    pub fn dc_link_voltage(&self, now: Millis) -> Option<Volts> {
        self.reading.and_then(|(r, at)| (now.since(at) <= FAST_MAX_AGE).then_some(r.dc_link_voltage))
    }

    /// Whether the wrapper holds the control lease at `now`: taken, not released, and (with a
    /// revert timer) renewed less than one lease ago.
    #[must_use]
    pub fn lease_active(&self, now: Millis) -> bool {
        match self.lease {
            None => false,
            Some(l) => !self.caps.revert_timer || now.since(l.renewed_at) < self.config.lease,
        }
    }

    /// The settings remembered by [`Self::take_control`] (restored by [`Self::release`]).
    #[must_use]
    pub const fn remembered_settings(&self) -> Option<InverterSettings> {
        self.original
    }

    fn tolerance(&self, w: Watts) -> f32 {
        self.config
            .readback_tolerance
            .get()
            .max(self.config.readback_tolerance_pct.fraction() * w.get().abs())
    }

    /// Read the inverter once: store the reading, verify the read-back set-point and check that
    /// the device is still under the EMS's control.
    pub async fn poll(&mut self, now: Millis, events: &mut DeviceEvents) -> Option<InverterReading> {
        let r = match self.inv.read().await {
            Ok(r) => r,
            Err(e) => {
                if !self.read_failing {
                    events.push(now, DeviceEvent::ReadFailed { device: Device::Inverter, kind: e.kind() });
                }
                self.read_failing = true;
                if !e.kind().is_link() {
                    // The device answered, but with no usable reading: nothing of the last one
                    // is trusted any more (signals invalid, rating unknown → no power). A dead
                    // link keeps it, to go stale through its maximum age.
                    self.reading = None;
                }
                return None;
            }
        };
        if self.read_failing {
            events.push(now, DeviceEvent::CommRestored { device: Device::Inverter });
        }
        self.read_failing = false;
        self.reading = Some((r, now));

        let latest_ok = self
            .unconfirmed
            .back()
            .is_none_or(|(w, _)| (r.setpoint.get() - w.get()).abs() <= self.tolerance(*w));
        let check_due = now.since(self.last_settings_check) >= self.renew_period();
        if self.lease.is_some() && (!latest_ok || check_due) {
            self.check_lease(now, events).await;
        }
        self.verify(r, events, now);
        Some(r)
    }

    fn renew_period(&self) -> Millis {
        Millis::new(self.config.lease.get() / 3)
    }

    async fn check_lease(&mut self, now: Millis, events: &mut DeviceEvents) {
        self.last_settings_check = now;
        let Ok(settings) = self.inv.read_settings().await else { return };
        if settings.control == ControlSource::Local {
            events.push(now, DeviceEvent::LeaseLost);
            // A device that keeps dropping out of remote control (it ignores our settings
            // writes, or something else keeps taking it back) never gets to confirm a
            // set-point; without this the wrapper would re-take it forever and the set-point
            // would silently not be applied.
            self.lease_losses = self.lease_losses.saturating_add(1);
            if self.lease_losses >= MAX_LEASE_LOSSES {
                self.lease_losses = 0;
                self.pending_trip = true;
            }
            self.lease = None;
            self.unconfirmed.clear();
            self.last_written = Watts::ZERO;
            if let Err(e) = self.take_control(now, events).await {
                if let Some(ev) = e.write_event(Device::Inverter) {
                    events.push(now, ev);
                }
            }
        }
    }

    fn verify(&mut self, r: InverterReading, events: &mut DeviceEvents, now: Millis) {
        if self.unconfirmed.is_empty() {
            return;
        }
        for e in self.unconfirmed.iter_mut() {
            e.1 = e.1.saturating_add(1);
        }
        let matched = self
            .unconfirmed
            .iter()
            .enumerate()
            .filter(|(_, (w, _))| (r.setpoint.get() - w.get()).abs() <= self.tolerance(*w))
            .map(|(i, _)| i)
            .last();
        if let Some(i) = matched {
            // A confirmed non-zero set-point proves the device follows us (a device that fell
            // back to Local also "confirms" zero).
            if self.unconfirmed.iter().nth(i).is_some_and(|(w, _)| *w != Watts::ZERO) {
                self.lease_losses = 0;
            }
            for _ in 0..=i {
                self.unconfirmed.pop_front();
            }
        }
        let overdue = self.unconfirmed.front().is_some_and(|(_, age)| *age >= self.config.readback_cycles);
        if overdue {
            let commanded = self.unconfirmed.back().map_or(self.last_written, |(w, _)| *w);
            events.push(now, DeviceEvent::SetpointNotApplied { commanded, read_back: r.setpoint });
            self.pending_trip = true;
            self.unconfirmed.clear();
        }
    }

    /// Write the signals for `now`: values from the last good reading with its read time (they
    /// go stale through their maximum age); the rating from the reading.
    pub fn fill(&self, _now: Millis, inv: &mut InverterSignals) {
        match self.reading {
            Some((r, at)) => {
                inv.active_power = Measurement::good(r.active_power, at, FAST_MAX_AGE);
                inv.state = Measurement::good(r.state, at, SLOW_MAX_AGE);
                inv.temperature = Measurement::good(r.temperature, at, SLOW_MAX_AGE);
                inv.rated_power = r.rated_power.abs();
            }
            None => {
                inv.active_power.invalidate();
                inv.state.invalidate();
                inv.temperature.invalidate();
            }
        }
    }

    /// Take control: remember the current settings (once — a re-take keeps the original), then
    /// write `Remote` with a zero set-point and the revert timer armed for the lease.
    ///
    /// # Errors
    ///
    /// [`WrapperError`] when the current settings cannot be read or the remote settings cannot be written.
    pub async fn take_control(&mut self, now: Millis, events: &mut DeviceEvents) -> Result<(), WrapperError> {
        if self.lease.is_some() {
            return Ok(());
        }
        if self.original.is_none() {
            let s = self.inv.read_settings().await.map_err(|e| WrapperError::device(&e))?;
            self.original = Some(s);
        }
        let revert_timeout = self.caps.revert_timer.then_some(self.config.lease);
        let settings =
            InverterSettings { control: ControlSource::Remote, setpoint: Watts::ZERO, revert_timeout };
        self.inv.write_settings(&settings).await.map_err(|e| WrapperError::device(&e))?;
        self.lease = Some(Lease { renewed_at: now });
        self.last_written = Watts::ZERO;
        self.last_write_at = Some(now);
        // The ramp starts from zero at the moment control is taken.
        self.prev_apply = Some(now);
        self.last_settings_check = now;
        self.unconfirmed.clear();
        events.push(now, DeviceEvent::LeaseTaken { revert_timeout });
        Ok(())
    }

    /// End control: write zero, then restore the remembered settings exactly. A no-op if
    /// control was never taken. If the restore fails, the settings stay remembered so a later
    /// call can retry (and a device with a revert timer reverts by itself after the lease).
    ///
    /// # Errors
    ///
    /// [`WrapperError`] when the zero set-point or the remembered settings cannot be written; the settings
    /// stay remembered for a retry.
    pub async fn release(&mut self, now: Millis, events: &mut DeviceEvents) -> Result<(), WrapperError> {
        let Some(original) = self.original else {
            self.lease = None;
            return Ok(());
        };
        if let Err(kind) = self.write_zero(now).await {
            events.push(now, DeviceEvent::WriteFailed { device: Device::Inverter, kind });
        }
        self.lease = None;
        match self.inv.write_settings(&original).await {
            Ok(()) => {
                self.original = None;
                self.unconfirmed.clear();
                events.push(now, DeviceEvent::LeaseReleased { settings_restored: true });
                Ok(())
            }
            Err(e) => {
                events.push(now, DeviceEvent::write_error(Device::Inverter, &e));
                events.push(now, DeviceEvent::LeaseReleased { settings_restored: false });
                Err(WrapperError::device(&e))
            }
        }
    }

    async fn write_zero(&mut self, now: Millis) -> Result<(), ErrorKind> {
        self.limiter.record(now);
        self.inv.write_setpoint(Watts::ZERO).await.map_err(|e| e.kind())?;
        self.note_written(Watts::ZERO, now);
        Ok(())
    }

    fn note_written(&mut self, w: Watts, now: Millis) {
        self.last_written = w;
        self.last_write_at = Some(now);
        if let Some(l) = self.lease.as_mut() {
            l.renewed_at = now;
        }
        if self.unconfirmed.is_full() {
            self.unconfirmed.pop_front();
        }
        let _ = self.unconfirmed.push_back((w, 0));
    }

    /// The emergency path: write a zero set-point at once, bypassing ramp, deadband and budget.
    ///
    /// # Errors
    ///
    /// The device's [`ErrorKind`] when the zero set-point cannot be written.
    pub async fn emergency_zero(&mut self, now: Millis) -> Result<(), ErrorKind> {
        self.write_zero(now).await
    }

    /// One cycle's command (only `Controller::step` makes one): clamp to ±rating and to the
    /// command's bounds, take control if a non-zero value is needed, ramp at the command's ramp
    /// × [`RAMP_MARGIN`] (moves toward zero are applied at once; a command without ramp is not
    /// ramped), skip changes inside the deadband or beyond the flash budget (not for a
    /// [`CommandClass::GridService`] command), write, renew the lease, and report a pending
    /// read-back failure as a trip. `command` with its set-point replaced by zero is what an
    /// E-stop holds ([`Self::apply_zero`]).
    pub async fn apply(&mut self, now: Millis, command: &Command, events: &mut DeviceEvents) -> ApplyOutcome {
        self.apply_setpoint(now, command.setpoint(), command, events).await
    }

    /// Zero within the command's shaping: what the device set holds while an E-stop seen by its
    /// fast path overrules the command of the cycle.
    pub async fn apply_zero(
        &mut self,
        now: Millis,
        command: &Command,
        events: &mut DeviceEvents,
    ) -> ApplyOutcome {
        self.apply_setpoint(now, Watts::ZERO, command, events).await
    }

    /// Step 3 of [`Self::apply`]: from `base` (what the device holds) toward `clamped` at the
    /// command's ramp × [`RAMP_MARGIN`]; moves toward zero at once, a command without ramp too.
    fn ramped(&self, now: Millis, base: Watts, clamped: Watts, command: &Command) -> Watts {
        let toward_zero =
            clamped == Watts::ZERO || (base.get() * clamped.get() > 0.0 && clamped.abs() <= base.abs());
        if toward_zero {
            return clamped;
        }
        let from = if base.get() * clamped.get() > 0.0 { base } else { Watts::ZERO };
        let cap = Millis::from_secs(1).max(if self.caps.setpoint_in_flash {
            self.config.flash_min_interval
        } else {
            Millis::ZERO
        });
        // Steps accumulate over skipped writes (up to `cap`); the first apply moves nothing.
        let reference = match (self.last_write_at, self.prev_apply) {
            (Some(w), Some(p)) => w.min(p),
            (None, Some(t)) | (Some(t), None) => t,
            (None, None) => now,
        };
        let dt = now.since(reference).min(cap);
        match command.ramp() {
            Some(rate) => {
                let step = rate.watts_per_second().scale(RAMP_MARGIN * dt.as_secs_f32()).abs();
                from + (clamped - from).clamp(-step, step)
            }
            None => clamped,
        }
    }

    async fn apply_setpoint(
        &mut self,
        now: Millis,
        setpoint: Watts,
        command: &Command,
        events: &mut DeviceEvents,
    ) -> ApplyOutcome {
        let (max_charge, max_discharge) = command.bounds();
        let grid_service = command.class() == CommandClass::GridService;
        let mut out = ApplyOutcome {
            target: Watts::ZERO,
            throttled: None,
            written: None,
            write_error: None,
            trips: heapless::Vec::new(),
        };
        if core::mem::take(&mut self.pending_trip) {
            let _ = out.trips.push(TripReason::SetpointNotApplied);
        }

        // 1. Clamp: an unknown rating (no reading yet) allows nothing.
        let rating = self.reading.map_or(Watts::ZERO, |(r, _)| r.rated_power.abs());
        let charge_bound = max_charge.abs().min(rating);
        let discharge_bound = max_discharge.abs().min(rating);
        let mut clamped = setpoint.clamp(-charge_bound, discharge_bound);
        let mut by = if clamped == setpoint {
            None
        } else if setpoint > Watts::ZERO {
            Some(if max_discharge.abs() <= rating { ClampedBy::MaxDischarge } else { ClampedBy::Rating })
        } else {
            Some(if max_charge.abs() <= rating { ClampedBy::MaxCharge } else { ClampedBy::Rating })
        };

        // 2. Control lease.
        if clamped != Watts::ZERO && self.lease.is_none() {
            // Taken within a cycle: the first step is one cycle's worth of ramp from zero.
            let prev_apply = self.prev_apply;
            let taken = self.take_control(now, events).await;
            self.prev_apply = prev_apply;
            if let Err(e) = taken {
                if let Some(ev) = e.write_event(Device::Inverter) {
                    events.push(now, ev);
                }
                if matches!(e, WrapperError::Refused(_)) {
                    self.count_refusal();
                }
                clamped = Watts::ZERO;
                by = Some(ClampedBy::NoControl);
            }
        }
        if by != self.last_clamp {
            if let Some(b) = by {
                events
                    .push(now, DeviceEvent::SetpointClamped { requested: setpoint, written: clamped, by: b });
            }
            self.last_clamp = by;
        }

        // 3. Ramp from what the device holds.
        let base = self.last_written;
        let next = self.ramped(now, base, clamped, command);
        out.target = next;
        out.throttled = by.map(Throttle::Clamped).or((next != clamped).then_some(Throttle::Ramp));
        self.prev_apply = Some(now);

        // 4. Deadband and budget.
        let base_in_bounds = base >= -charge_bound && base <= discharge_bound;
        let reduces = next.abs() < base.abs() && (next == Watts::ZERO || base.get() * next.get() > 0.0);
        let mut skip = None;
        if next != base {
            if grid_service {
                // A grid-code response is not comfort: no deadband, no budget (it still counts).
                self.limiter.record(now);
            } else if next != Watts::ZERO && base_in_bounds && (next - base).abs() < self.config.deadband {
                skip = Some(SkipReason::Deadband);
            } else if reduces {
                // Safety over flash wear: a reduction is never refused (it still counts).
                self.limiter.record(now);
            } else if let Err(e) = self.limiter.try_acquire(now) {
                skip = Some(match e.limit {
                    RateLimit::Budget => SkipReason::Budget,
                    RateLimit::MinInterval => SkipReason::MinInterval,
                });
            }
        }
        if let Some(why) = skip {
            out.throttled = Some(Throttle::Skipped(why));
        }
        if skip != self.last_skip {
            if let Some(why) = skip {
                events.push(now, DeviceEvent::WriteSkipped { requested: next, kept: base, why });
            }
            self.last_skip = skip;
        }

        // 5. Write, or renew the lease.
        if next != base && skip.is_none() {
            match self.inv.write_setpoint(next).await {
                Ok(()) => {
                    self.note_written(next, now);
                    out.written = Some(next);
                }
                Err(e) => {
                    events.push(now, DeviceEvent::write_error(Device::Inverter, &e));
                    if e.kind() == ErrorKind::Refused {
                        // Nothing was stored: the refused write does not use up flash budget.
                        self.limiter.refund();
                        self.count_refusal();
                    }
                    out.write_error = Some(e.kind());
                }
            }
        } else if base_in_bounds {
            self.renew(now, events).await;
        }
        out
    }

    async fn renew(&mut self, now: Millis, events: &mut DeviceEvents) {
        let Some(lease) = self.lease else { return };
        if !self.caps.revert_timer || now.since(lease.renewed_at) < self.renew_period() {
            return;
        }
        let settings = InverterSettings {
            control: ControlSource::Remote,
            setpoint: self.last_written,
            revert_timeout: Some(self.config.lease),
        };
        match self.inv.write_settings(&settings).await {
            Ok(()) => {
                if let Some(l) = self.lease.as_mut() {
                    l.renewed_at = now;
                }
                events.push(now, DeviceEvent::LeaseRenewed);
            }
            Err(e) => {
                events.push(now, DeviceEvent::write_error(Device::Inverter, &e));
                if e.kind() == ErrorKind::Refused {
                    self.count_refusal();
                }
            }
        }
    }

    /// A refused write (the device answered it with an exception): the device will not do what
    /// the EMS commands, and retrying does not change that, so it counts like a lost lease
    /// toward [`TripReason::SetpointNotApplied`] (reset by a confirmed non-zero set-point). A
    /// write lost on a dead link does not count: the link's reads fail too, and the signals go
    /// stale.
    fn count_refusal(&mut self) {
        self.lease_losses = self.lease_losses.saturating_add(1);
        if self.lease_losses >= MAX_LEASE_LOSSES {
            self.lease_losses = 0;
            self.pending_trip = true;
        }
    }
}
