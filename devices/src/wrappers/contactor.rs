//! The main contactor with its pre-charge relay: a compile-time-checked typestate API
//! ([`Contactor`]) for sequences written as code, and a per-cycle runtime
//! [`ContactorSequencer`] for the control loop (whose commands arrive at run time).
//!
//! The sequence to close: energise the pre-charge relay; wait until
//! `|V_dc − V_pack| ≤ precharge_tolerance × V_pack` (unknown voltages count as not reached)
//! within `precharge_timeout`; energise the main contactor and verify its feedback closed within
//! `feedback_timeout`; de-energise the pre-charge relay. To open: de-energise both and verify the
//! main feedback open within `feedback_timeout`, else the contact is welded (keep commanding
//! open). **The main contactor is never energised without a completed pre-charge.**
//!
//! Relay errors by kind: a feedback that cannot be read, whatever the kind, leaves the contactor
//! state unknown (the snapshot signal invalid → no power); a coil command the I/O module refuses
//! is reported with its exception code ([`DeviceEvent::WriteRefused`]), one lost on a dead link
//! as [`DeviceEvent::WriteFailed`]; either way the feedback check decides what happened.

use super::events::{Device, DeviceEvent, DeviceEvents};
use super::{check_positive_ms, ConfigError};
use crate::traits::{DeviceError, ErrorKind, Relay};
use core::marker::PhantomData;
use ems_core::snapshot::ContactorState;
use ems_core::{ContactorCommand, Millis, Percent, TripReason, Volts};

/// Contactor sequencing settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ContactorConfig {
    /// Pre-charge is done when `|V_dc − V_pack| ≤` this fraction of `V_pack` (default 5 %).
    pub precharge_tolerance: Percent,
    /// Pre-charge must complete within this (default 3 s).
    pub precharge_timeout: Millis,
    /// The pre-charge relay stays closed at least this long before the main contactor may close,
    /// whatever the DC-link reading says (default 500 ms, ≥ 3 time constants of a typical
    /// pre-charge circuit). A frozen or stale DC-link reading that already shows the pack voltage
    /// would otherwise close the main contactor onto an uncharged link (found by the
    /// fault-interleaving property test in `ems-testing`).
    pub min_precharge_time: Millis,
    /// The main feedback must follow a close or open command within this (default 500 ms).
    pub feedback_timeout: Millis,
}

/// A DC-link reading is evidence of a charged link only if it changed (to the bit) since the
/// pre-charge relay closed: a frozen reading (a stuck register, a driver returning its cache)
/// would otherwise vouch for a link that an open pre-charge resistor never charged — found by
/// the fault-interleaving property test (frozen inverter reading + open pre-charge resistor).
/// A real link always moves while it charges, and a measurement of a charged one carries noise.
fn live(at_start: Option<Volts>, now: Option<Volts>) -> bool {
    match (at_start, now) {
        (Some(a), Some(b)) => a.get().to_bits() != b.get().to_bits(),
        (None, Some(_)) => true,
        (_, None) => false,
    }
}

impl Default for ContactorConfig {
    fn default() -> Self {
        Self {
            precharge_tolerance: ems_core::percent!(5.0),
            precharge_timeout: Millis::from_secs(3),
            min_precharge_time: Millis::new(500),
            feedback_timeout: Millis::new(500),
        }
    }
}

impl ContactorConfig {
    /// Check every field; the error names the field and the value.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the first field out of its range and its value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let t = self.precharge_tolerance.get();
        if !(t > 0.0 && t <= 20.0) {
            return Err(ConfigError::new("precharge_tolerance", f64::from(t), "must be > 0 % and ≤ 20 %"));
        }
        check_positive_ms("precharge_timeout", self.precharge_timeout)?;
        if self.min_precharge_time >= self.precharge_timeout {
            #[allow(clippy::cast_precision_loss)] // milliseconds of a configuration value
            let value = self.min_precharge_time.get() as f64;
            return Err(ConfigError::new(
                "min_precharge_time",
                value,
                "must be shorter than precharge_timeout",
            ));
        }
        check_positive_ms("feedback_timeout", self.feedback_timeout)
    }

    fn precharged(&self, pack: Option<Volts>, dc: Option<Volts>) -> bool {
        match (pack, dc) {
            (Some(p), Some(d)) => {
                p > Volts::ZERO && (d.get() - p.get()).abs() <= self.precharge_tolerance.fraction() * p.get()
            }
            _ => false,
        }
    }
}

/// Why a contactor sequence failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ContactorError {
    /// The DC link did not reach the pack voltage within the pre-charge timeout.
    #[error("pre-charge failed: DC link did not reach the pack voltage in time")]
    PrechargeFailed,
    /// The main feedback did not close within the feedback timeout.
    #[error("main contactor failed to close")]
    FailedToClose,
    /// The main feedback stayed closed after the open command.
    #[error("main contactor welded (still closed after the open command)")]
    Welded,
    /// A relay command or feedback read failed.
    #[error("{device} error: {kind}")]
    Device {
        /// Which relay.
        device: Device,
        /// The error kind.
        kind: ErrorKind,
    },
}

impl ContactorError {
    /// The trip this failure means for the controller, if any (a relay communication error is
    /// reported by the contactor signal going invalid instead).
    #[must_use]
    pub const fn trip(self) -> Option<TripReason> {
        match self {
            Self::PrechargeFailed => Some(TripReason::PrechargeFailed),
            Self::FailedToClose => Some(TripReason::ContactorFailedToClose),
            Self::Welded => Some(TripReason::ContactorWelded),
            Self::Device { .. } => None,
        }
    }
}

/// One observation used by the typestate sequences: the time and the two voltages.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeSample {
    /// Monotonic time of the sample.
    pub at: Millis,
    /// Pack voltage, if known.
    pub pack: Option<Volts>,
    /// DC-link voltage, if known.
    pub dc_link: Option<Volts>,
}

/// Time and voltages for the typestate sequences. An implementation waits a little (one
/// sampling period) before returning, then reads the clock, the BMS pack voltage and the
/// inverter DC link; the sequences call it until their condition or timeout is reached.
#[allow(async_fn_in_trait)]
pub trait ContactorProbe {
    /// Wait one sampling period, then sample.
    async fn sample(&mut self) -> ProbeSample;
}

/// Typestate: both relays commanded open.
#[derive(Debug, Clone, Copy)]
pub struct Open;
/// Typestate: pre-charge relay closed and the DC link equalised; main still open.
#[derive(Debug, Clone, Copy)]
pub struct Precharged;
/// Typestate: main contactor closed (feedback verified), pre-charge relay open.
#[derive(Debug, Clone, Copy)]
pub struct Closed;

/// The contactor pair in state `S`: pre-charge relay `P`, main contactor `M`.
#[derive(Debug)]
pub struct Contactor<P, M, S> {
    precharge: P,
    main: M,
    config: ContactorConfig,
    _state: PhantomData<S>,
}

/// A failed transition gives back the contactor, commanded open, with the reason.
pub type Failed<P, M> = (Contactor<P, M, Open>, ContactorError);

fn dev_err<E: DeviceError>(device: Device) -> impl Fn(E) -> ContactorError {
    move |e| ContactorError::Device { device, kind: e.kind() }
}

impl<P: Relay, M: Relay, S> Contactor<P, M, S> {
    fn to<T>(self) -> Contactor<P, M, T> {
        Contactor { precharge: self.precharge, main: self.main, config: self.config, _state: PhantomData }
    }

    /// De-energise both relays (errors of either are reported, both are attempted).
    async fn command_open(&mut self) -> Result<(), ContactorError> {
        let m = self.main.set(false).await.map_err(dev_err(Device::MainContactor));
        let p = self.precharge.set(false).await.map_err(dev_err(Device::PrechargeRelay));
        m.and(p)
    }

    /// Open everything and give back `Contactor<Open>` with `error`.
    async fn abort(mut self, error: ContactorError) -> Failed<P, M> {
        let _ = self.command_open().await;
        (self.to(), error)
    }

    /// Take the relays back.
    pub fn into_parts(self) -> (P, M) {
        (self.precharge, self.main)
    }
}

impl<P: Relay, M: Relay> Contactor<P, M, Open> {
    /// Take the two relays and command both open. The config is validated.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `config` does not validate ([`ContactorConfig::validate`]).
    pub async fn new(precharge: P, main: M, config: ContactorConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let mut c = Self { precharge, main, config, _state: PhantomData };
        let _ = c.command_open().await;
        Ok(c)
    }

    /// Close the pre-charge relay and wait (through `probe`) until the DC link reaches the pack
    /// voltage — with the same checks as [`ContactorSequencer`]: at least `min_precharge_time`,
    /// a DC-link reading that changed since the relay closed (a frozen reading is no evidence)
    /// and `|V_dc − V_pack|` within tolerance; on timeout or error, both relays are opened again.
    ///
    /// # Errors
    ///
    /// [`Failed`] (with both relays commanded open) when a relay cannot be driven, the probe fails, or the DC
    /// link does not reach the pack voltage in time.
    pub async fn precharge<Q: ContactorProbe>(
        mut self,
        probe: &mut Q,
    ) -> Result<Contactor<P, M, Precharged>, Failed<P, M>> {
        let start = probe.sample().await;
        if let Err(e) = self.precharge.set(true).await.map_err(dev_err(Device::PrechargeRelay)) {
            return Err(self.abort(e).await);
        }
        let mut s = start;
        loop {
            // Exactly the sequencer's checks (`ContactorSequencer`): the minimum time, a DC-link
            // reading that moved since the relay closed, and the voltages within tolerance.
            if s.at.since(start.at) >= self.config.min_precharge_time
                && live(start.dc_link, s.dc_link)
                && self.config.precharged(s.pack, s.dc_link)
            {
                return Ok(self.to());
            }
            if s.at.since(start.at) > self.config.precharge_timeout {
                return Err(self.abort(ContactorError::PrechargeFailed).await);
            }
            s = probe.sample().await;
        }
    }
}

impl<P: Relay, M: Relay> Contactor<P, M, Precharged> {
    /// Close the main contactor, verify its feedback within the feedback timeout, then open the
    /// pre-charge relay. On failure both are opened.
    ///
    /// # Errors
    ///
    /// [`Failed`] (with both relays commanded open) when a relay cannot be driven or the main feedback does
    /// not confirm closing in time.
    pub async fn close<Q: ContactorProbe>(
        mut self,
        probe: &mut Q,
    ) -> Result<Contactor<P, M, Closed>, Failed<P, M>> {
        let start = probe.sample().await;
        if let Err(e) = self.main.set(true).await.map_err(dev_err(Device::MainContactor)) {
            return Err(self.abort(e).await);
        }
        loop {
            if matches!(self.main.feedback().await, Ok(true)) {
                break;
            }
            let s = probe.sample().await;
            if s.at.since(start.at) > self.config.feedback_timeout {
                return Err(self.abort(ContactorError::FailedToClose).await);
            }
        }
        if let Err(e) = self.precharge.set(false).await.map_err(dev_err(Device::PrechargeRelay)) {
            return Err(self.abort(e).await);
        }
        Ok(self.to())
    }

    /// Give up before closing: open the pre-charge relay.
    pub async fn abort_precharge(self) -> Contactor<P, M, Open> {
        self.abort(ContactorError::PrechargeFailed).await.0
    }
}

impl<P: Relay, M: Relay> Contactor<P, M, Closed> {
    /// De-energise both relays and verify the main feedback opens within the feedback timeout.
    /// A welded contact gives back `Contactor<Open>` (commanded open — keep it so) with
    /// [`ContactorError::Welded`].
    ///
    /// # Errors
    ///
    /// [`Failed`] when a relay cannot be driven or the main feedback stays closed past the feedback timeout
    /// ([`ContactorError::Welded`]).
    pub async fn open<Q: ContactorProbe>(
        mut self,
        probe: &mut Q,
    ) -> Result<Contactor<P, M, Open>, Failed<P, M>> {
        let start = probe.sample().await;
        let commanded = self.command_open().await;
        loop {
            if matches!(self.main.feedback().await, Ok(false)) {
                return match commanded {
                    Ok(()) => Ok(self.to()),
                    Err(e) => Err((self.to(), e)),
                };
            }
            let s = probe.sample().await;
            if s.at.since(start.at) > self.config.feedback_timeout {
                return Err(self.abort(ContactorError::Welded).await);
            }
        }
    }
}

/// What one [`ContactorSequencer::step`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactorStatus {
    /// The contactor position from the main feedback and the sequence phase; `None` if the
    /// feedback could not be read.
    pub state: Option<ContactorState>,
    /// The DC link is equalised with the pack (pre-charge completed) and stays so while closed.
    pub precharge_done: bool,
    /// Faults to pass to the controller (`Inputs::device_trips`), each reported once.
    pub trips: heapless::Vec<TripReason, 2>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Open,
    Opening {
        since: Millis,
        welded: bool,
    },
    Precharging {
        since: Millis,
        /// The DC-link reading when the pre-charge relay was closed (liveness check).
        dc_at_start: Option<Volts>,
    },
    Closing {
        since: Millis,
    },
    Closed,
}

/// The runtime contactor sequencer, stepped once per control cycle.
///
/// `Hold` completes a sequence in progress (a half-done pre-charge must not be left energised)
/// and otherwise keeps the position. After a failed close (pre-charge or feedback) a new close
/// needs an `Open` command first, so a failing sequence is not retried every cycle.
#[derive(Debug)]
pub struct ContactorSequencer<P, M> {
    precharge: P,
    main: M,
    config: ContactorConfig,
    phase: Phase,
    close_blocked: bool,
    status: ContactorStatus,
}

impl<P: Relay, M: Relay> ContactorSequencer<P, M> {
    /// A sequencer in the open phase (call [`Self::step`] with `Open` to command the relays).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `config` does not validate ([`ContactorConfig::validate`]).
    pub fn new(precharge: P, main: M, config: ContactorConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            precharge,
            main,
            config,
            phase: Phase::Open,
            close_blocked: false,
            status: ContactorStatus { state: None, precharge_done: false, trips: heapless::Vec::new() },
        })
    }

    /// The configuration.
    #[must_use]
    pub const fn config(&self) -> &ContactorConfig {
        &self.config
    }

    /// The pre-charge relay.
    #[must_use]
    pub const fn precharge_relay(&self) -> &P {
        &self.precharge
    }

    /// The main contactor.
    #[must_use]
    pub const fn main_contactor(&self) -> &M {
        &self.main
    }

    /// The status of the last step or observation.
    #[must_use]
    pub const fn status(&self) -> &ContactorStatus {
        &self.status
    }

    /// Unwrap into the pre-charge relay and the main contactor.
    pub fn into_parts(self) -> (P, M) {
        (self.precharge, self.main)
    }

    async fn read_feedback(&mut self) -> Option<bool> {
        self.main.feedback().await.ok()
    }

    fn state_from(&self, feedback: Option<bool>) -> Option<ContactorState> {
        match (feedback?, self.phase) {
            (true, _) => Some(ContactorState::Closed),
            (false, Phase::Precharging { .. } | Phase::Closing { .. }) => Some(ContactorState::Precharging),
            (false, Phase::Open | Phase::Opening { .. } | Phase::Closed) => Some(ContactorState::Open),
        }
    }

    fn precharge_done(&self) -> bool {
        matches!(self.phase, Phase::Closing { .. } | Phase::Closed)
    }

    /// Read the main feedback without commanding anything (for the snapshot).
    pub async fn observe(&mut self) -> ContactorStatus {
        let fb = self.read_feedback().await;
        self.status = ContactorStatus {
            state: self.state_from(fb),
            precharge_done: self.precharge_done(),
            trips: heapless::Vec::new(),
        };
        self.status.clone()
    }

    async fn open_all(&mut self, now: Millis, events: &mut DeviceEvents) -> bool {
        let mut ok = true;
        if let Err(e) = self.main.set(false).await {
            events.push(now, DeviceEvent::write_error(Device::MainContactor, &e));
            ok = false;
        }
        if let Err(e) = self.precharge.set(false).await {
            events.push(now, DeviceEvent::write_error(Device::PrechargeRelay, &e));
            ok = false;
        }
        ok
    }

    /// The emergency path: de-energise both relays at once; the next steps verify the opening.
    pub async fn emergency_open(&mut self, now: Millis, events: &mut DeviceEvents) -> bool {
        let ok = self.open_all(now, events).await;
        self.phase = match self.phase {
            Phase::Opening { since, welded } => Phase::Opening { since, welded },
            Phase::Open | Phase::Precharging { .. } | Phase::Closing { .. } | Phase::Closed => {
                Phase::Opening { since: now, welded: false }
            }
        };
        ok
    }

    /// One cycle: advance the sequence for `command` with the latest pack and DC-link voltages.
    pub async fn step(
        &mut self,
        now: Millis,
        command: ContactorCommand,
        pack_voltage: Option<Volts>,
        dc_link_voltage: Option<Volts>,
        events: &mut DeviceEvents,
    ) -> ContactorStatus {
        let mut trips = heapless::Vec::<TripReason, 2>::new();
        let fb_before = match command {
            ContactorCommand::Open => self.step_open(now, events, &mut trips).await,
            ContactorCommand::Close | ContactorCommand::Hold => {
                self.step_close(now, command, pack_voltage, dc_link_voltage, events, &mut trips).await
            }
        };
        let fb = match fb_before {
            Some(v) => Some(v),
            None => self.read_feedback().await,
        };
        self.status =
            ContactorStatus { state: self.state_from(fb), precharge_done: self.precharge_done(), trips };
        self.status.clone()
    }

    /// Returns the feedback if it was read after the last command of this step.
    async fn step_open(
        &mut self,
        now: Millis,
        events: &mut DeviceEvents,
        trips: &mut heapless::Vec<TripReason, 2>,
    ) -> Option<bool> {
        self.close_blocked = false;
        match self.phase {
            Phase::Open => {
                let fb = self.read_feedback().await;
                if fb == Some(true) {
                    // Closed although open: command open again and watch for a weld.
                    self.open_all(now, events).await;
                    self.phase = Phase::Opening { since: now, welded: false };
                }
                fb
            }
            Phase::Precharging { .. } | Phase::Closing { .. } | Phase::Closed => {
                self.open_all(now, events).await;
                self.phase = Phase::Opening { since: now, welded: false };
                self.check_opened(now, events, trips).await
            }
            Phase::Opening { .. } => {
                // Keep commanding open while the contact has not opened.
                self.open_all(now, events).await;
                self.check_opened(now, events, trips).await
            }
        }
    }

    async fn check_opened(
        &mut self,
        now: Millis,
        events: &mut DeviceEvents,
        trips: &mut heapless::Vec<TripReason, 2>,
    ) -> Option<bool> {
        let fb = self.read_feedback().await;
        let Phase::Opening { since, welded } = self.phase else { return fb };
        match fb {
            Some(false) => {
                self.phase = Phase::Open;
                events.push(now, DeviceEvent::ContactorOpened);
            }
            Some(true) | None => {
                if !welded && now.since(since) > self.config.feedback_timeout && fb == Some(true) {
                    self.phase = Phase::Opening { since, welded: true };
                    events.push(now, DeviceEvent::ContactorWelded);
                    let _ = trips.push(TripReason::ContactorWelded);
                }
            }
        }
        fb
    }

    async fn step_close(
        &mut self,
        now: Millis,
        command: ContactorCommand,
        pack: Option<Volts>,
        dc: Option<Volts>,
        events: &mut DeviceEvents,
        trips: &mut heapless::Vec<TripReason, 2>,
    ) -> Option<bool> {
        let start = command == ContactorCommand::Close && !self.close_blocked;
        match self.phase {
            Phase::Open if start => match self.precharge.set(true).await {
                Ok(()) => {
                    events.push(now, DeviceEvent::PrechargeStarted);
                    self.phase = Phase::Precharging { since: now, dc_at_start: dc };
                    self.advance_precharge(now, pack, dc, events, trips).await
                }
                Err(e) => {
                    events.push(now, DeviceEvent::write_error(Device::PrechargeRelay, &e));
                    self.open_all(now, events).await;
                    None
                }
            },
            Phase::Open | Phase::Closed => None,
            Phase::Opening { .. } => {
                // Finish opening before anything else.
                self.open_all(now, events).await;
                self.check_opened(now, events, trips).await
            }
            Phase::Precharging { .. } => self.advance_precharge(now, pack, dc, events, trips).await,
            Phase::Closing { since } => self.check_closed(now, since, events, trips).await,
        }
    }

    async fn advance_precharge(
        &mut self,
        now: Millis,
        pack: Option<Volts>,
        dc: Option<Volts>,
        events: &mut DeviceEvents,
        trips: &mut heapless::Vec<TripReason, 2>,
    ) -> Option<bool> {
        let Phase::Precharging { since, dc_at_start } = self.phase else { return None };
        if now.since(since) >= self.config.min_precharge_time
            && live(dc_at_start, dc)
            && self.config.precharged(pack, dc)
        {
            events.push(now, DeviceEvent::PrechargeDone { after: now.since(since) });
            return match self.main.set(true).await {
                Ok(()) => {
                    self.phase = Phase::Closing { since: now };
                    self.check_closed(now, now, events, trips).await
                }
                Err(e) => {
                    events.push(now, DeviceEvent::write_error(Device::MainContactor, &e));
                    self.open_all(now, events).await;
                    self.phase = Phase::Opening { since: now, welded: false };
                    None
                }
            };
        }
        if now.since(since) > self.config.precharge_timeout {
            events.push(now, DeviceEvent::PrechargeFailed { pack, dc_link: dc });
            let _ = trips.push(TripReason::PrechargeFailed);
            self.open_all(now, events).await;
            self.phase = Phase::Opening { since: now, welded: false };
            self.close_blocked = true;
        }
        None
    }

    async fn check_closed(
        &mut self,
        now: Millis,
        since: Millis,
        events: &mut DeviceEvents,
        trips: &mut heapless::Vec<TripReason, 2>,
    ) -> Option<bool> {
        let fb = self.read_feedback().await;
        if fb == Some(true) {
            if let Err(e) = self.precharge.set(false).await {
                events.push(now, DeviceEvent::write_error(Device::PrechargeRelay, &e));
            }
            self.phase = Phase::Closed;
            events.push(now, DeviceEvent::ContactorClosed);
        } else if now.since(since) > self.config.feedback_timeout {
            events.push(now, DeviceEvent::ContactorFailedToClose);
            let _ = trips.push(TripReason::ContactorFailedToClose);
            self.open_all(now, events).await;
            self.phase = Phase::Opening { since: now, welded: false };
            self.close_blocked = true;
        }
        fb
    }
}
