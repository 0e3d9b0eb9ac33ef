//! Mock devices for the wrapper and device-set tests: shared state behind `Rc<RefCell<…>>` so a
//! test keeps a handle after moving the device into a wrapper, and a hand-advanced clock.
#![allow(dead_code, clippy::unwrap_used)]

use ems_core::snapshot::{BmsAlarms, EStopInput as EStopState, InverterState};
use ems_core::{Millis, Volts, Watts};
use ems_devices::traits::{
    Bms, BmsReading, ControlSource, DeviceError, EStopInput, ErrorKind, Inverter, InverterCapabilities,
    InverterReading, InverterSettings, Meter, MeterReading, PvInverter, PvReading, Relay,
};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

/// A mock error of a given kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MockError(pub ErrorKind);

impl DeviceError for MockError {
    fn kind(&self) -> ErrorKind {
        self.0
    }
    /// A refusal comes as Modbus exception 0x04 (server device failure).
    fn exception_code(&self) -> Option<u8> {
        (self.0 == ErrorKind::Refused).then_some(0x04)
    }
}

pub(crate) const COMM: MockError = MockError(ErrorKind::Comm);

/// A hand-advanced clock shared with the mocks that need time (revert timer).
#[derive(Debug, Clone, Default)]
pub(crate) struct Clock(Rc<RefCell<u64>>);

impl Clock {
    pub(crate) fn now(&self) -> Millis {
        Millis::new(*self.0.borrow())
    }
    pub(crate) fn set(&self, ms: u64) {
        *self.0.borrow_mut() = ms;
    }
    pub(crate) fn advance(&self, ms: u64) -> Millis {
        *self.0.borrow_mut() += ms;
        self.now()
    }
}

// ---------- BMS ----------

pub(crate) fn healthy_bms_reading() -> BmsReading {
    BmsReading {
        soc: ems_core::percent!(50.0),
        pack_voltage: ems_core::volts!(52.8),
        pack_current: ems_core::amps!(0.0),
        cell_voltage_min: ems_core::volts!(3.29),
        cell_voltage_max: ems_core::volts!(3.31),
        cell_temp_min: ems_core::celsius!(24.0),
        cell_temp_max: ems_core::celsius!(26.0),
        charge_limit: ems_core::watts!(5000.0),
        discharge_limit: ems_core::watts!(5000.0),
        alarms: BmsAlarms::NONE,
        ready: true,
    }
}

#[derive(Debug, Default)]
pub(crate) struct BmsState {
    /// Scripted results, consumed one per read; when empty, `steady` is returned.
    pub script: VecDeque<Result<BmsReading, MockError>>,
    pub steady: Option<Result<BmsReading, MockError>>,
    pub resets: u32,
    pub reads: u32,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct MockBms(pub Rc<RefCell<BmsState>>);

impl MockBms {
    pub(crate) fn healthy() -> Self {
        let m = Self::default();
        m.0.borrow_mut().steady = Some(Ok(healthy_bms_reading()));
        m
    }
    pub(crate) fn set(&self, r: Result<BmsReading, MockError>) {
        self.0.borrow_mut().steady = Some(r);
    }
}

impl Bms for MockBms {
    type Error = MockError;
    async fn read(&mut self) -> Result<BmsReading, MockError> {
        let mut s = self.0.borrow_mut();
        s.reads += 1;
        match s.script.pop_front() {
            Some(r) => r,
            None => s.steady.unwrap_or(Err(COMM)),
        }
    }
    async fn reset_alarms(&mut self) -> Result<(), MockError> {
        self.0.borrow_mut().resets += 1;
        Ok(())
    }
}

// ---------- Inverter ----------

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum InvWrite {
    Setpoint(Watts),
    Settings(InverterSettings),
}

#[derive(Debug)]
pub(crate) struct InverterState_ {
    pub clock: Clock,
    pub caps: InverterCapabilities,
    pub settings: InverterSettings,
    /// The set-point the device applies (read back).
    pub applied: Watts,
    pub rated: Watts,
    pub dc_link: Volts,
    /// Reads so far (drives the DC-link measurement noise).
    pub dc_reads: u32,
    pub state: InverterState,
    /// Ignore set-point writes (accept them, apply nothing).
    pub ignore_writes: bool,
    /// Settings writes are acknowledged but change nothing (the device stays in Local).
    pub ignore_settings: bool,
    /// Apply a written set-point only after this many reads.
    pub apply_delay_reads: u32,
    pending: VecDeque<(Watts, u32)>,
    pub fail_reads: bool,
    /// Reads fail with this error (e.g. an out-of-range value) while set.
    pub read_error: Option<MockError>,
    pub fail_writes: bool,
    /// Set-point writes are answered with an exception (`Refused`).
    pub refuse_setpoints: bool,
    pub last_write_at: Millis,
    pub writes: Vec<(Millis, InvWrite)>,
}

#[derive(Debug, Clone)]
pub(crate) struct MockInverter(pub Rc<RefCell<InverterState_>>);

pub(crate) const ORIGINAL: InverterSettings = InverterSettings {
    control: ControlSource::Local,
    setpoint: ems_core::watts!(1234.0),
    revert_timeout: None,
};

impl MockInverter {
    pub(crate) fn new(clock: &Clock, caps: InverterCapabilities) -> Self {
        Self(Rc::new(RefCell::new(InverterState_ {
            clock: clock.clone(),
            caps,
            settings: ORIGINAL,
            applied: Watts::ZERO,
            rated: ems_core::watts!(5000.0),
            dc_link: ems_core::volts!(52.8),
            dc_reads: 0,
            state: InverterState::Running,
            ignore_writes: false,
            ignore_settings: false,
            apply_delay_reads: 0,
            pending: VecDeque::new(),
            fail_reads: false,
            read_error: None,
            fail_writes: false,
            refuse_setpoints: false,
            last_write_at: Millis::ZERO,
            writes: Vec::new(),
        })))
    }
    pub(crate) fn with_timer(clock: &Clock) -> Self {
        Self::new(clock, InverterCapabilities { revert_timer: true, setpoint_in_flash: false })
    }
    pub(crate) fn settings(&self) -> InverterSettings {
        let mut s = self.0.borrow_mut();
        s.tick();
        s.settings
    }
    pub(crate) fn setpoint_writes(&self) -> Vec<Watts> {
        self.0
            .borrow()
            .writes
            .iter()
            .filter_map(|(_, w)| if let InvWrite::Setpoint(p) = w { Some(*p) } else { None })
            .collect()
    }
    pub(crate) fn settings_writes(&self) -> Vec<InverterSettings> {
        self.0
            .borrow()
            .writes
            .iter()
            .filter_map(|(_, w)| if let InvWrite::Settings(p) = w { Some(*p) } else { None })
            .collect()
    }
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut InverterState_) -> R) -> R {
        f(&mut self.0.borrow_mut())
    }
}

impl InverterState_ {
    /// The device's revert timer.
    fn tick(&mut self) {
        let now = self.clock.now();
        if self.settings.control == ControlSource::Remote {
            if let Some(t) = self.settings.revert_timeout {
                if now.since(self.last_write_at) > t {
                    self.settings = InverterSettings {
                        control: ControlSource::Local,
                        setpoint: Watts::ZERO,
                        revert_timeout: None,
                    };
                    self.applied = Watts::ZERO;
                    self.pending.clear();
                }
            }
        }
    }
}

impl Inverter for MockInverter {
    type Error = MockError;
    fn capabilities(&self) -> InverterCapabilities {
        self.0.borrow().caps
    }
    async fn read(&mut self) -> Result<InverterReading, MockError> {
        let mut s = self.0.borrow_mut();
        s.tick();
        if s.fail_reads {
            return Err(COMM);
        }
        if let Some(e) = s.read_error {
            return Err(e);
        }
        for p in s.pending.iter_mut() {
            p.1 = p.1.saturating_sub(1);
        }
        while let Some(&(w, 0)) = s.pending.front() {
            s.applied = w;
            s.pending.pop_front();
        }
        s.dc_reads = s.dc_reads.wrapping_add(1);
        Ok(InverterReading {
            active_power: s.applied,
            setpoint: s.applied,
            state: s.state,
            temperature: ems_core::celsius!(40.0),
            rated_power: s.rated,
            // A real measurement carries noise; a bit-identical value would look frozen to the
            // pre-charge liveness check.
            dc_link_voltage: Volts::saturating(
                s.dc_link.get() + if s.dc_reads % 2 == 0 { 0.0 } else { 0.01 },
            ),
        })
    }
    async fn write_setpoint(&mut self, power: Watts) -> Result<(), MockError> {
        let mut s = self.0.borrow_mut();
        s.tick();
        if s.fail_writes {
            return Err(COMM);
        }
        if s.refuse_setpoints {
            return Err(MockError(ErrorKind::Refused));
        }
        let now = s.clock.now();
        s.writes.push((now, InvWrite::Setpoint(power)));
        s.last_write_at = now;
        s.settings.setpoint = power;
        if !s.ignore_writes {
            if s.apply_delay_reads == 0 {
                s.applied = power;
            } else {
                let d = s.apply_delay_reads;
                s.pending.push_back((power, d));
            }
        }
        Ok(())
    }
    async fn read_settings(&mut self) -> Result<InverterSettings, MockError> {
        let mut s = self.0.borrow_mut();
        s.tick();
        if s.fail_reads {
            return Err(COMM);
        }
        Ok(s.settings)
    }
    async fn write_settings(&mut self, settings: &InverterSettings) -> Result<(), MockError> {
        let mut s = self.0.borrow_mut();
        s.tick();
        if s.fail_writes {
            return Err(COMM);
        }
        let now = s.clock.now();
        s.writes.push((now, InvWrite::Settings(*settings)));
        s.last_write_at = now;
        if s.ignore_settings {
            return Ok(());
        }
        s.settings = *settings;
        if !s.ignore_writes {
            s.applied = settings.setpoint;
        }
        Ok(())
    }
}

// ---------- Relay ----------

#[derive(Debug, Default)]
pub(crate) struct RelayState {
    pub energised: bool,
    /// Contact stuck closed whatever the coil.
    pub welded: bool,
    /// Contact never closes.
    pub stuck_open: bool,
    pub fail_set: bool,
    pub fail_feedback: bool,
    pub commands: Vec<bool>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct MockRelay(pub Rc<RefCell<RelayState>>);

impl MockRelay {
    pub(crate) fn energised(&self) -> bool {
        self.0.borrow().energised
    }
    pub(crate) fn closed(&self) -> bool {
        let s = self.0.borrow();
        s.welded || (s.energised && !s.stuck_open)
    }
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut RelayState) -> R) -> R {
        f(&mut self.0.borrow_mut())
    }
}

impl Relay for MockRelay {
    type Error = MockError;
    async fn set(&mut self, closed: bool) -> Result<(), MockError> {
        let mut s = self.0.borrow_mut();
        if s.fail_set {
            return Err(COMM);
        }
        s.energised = closed;
        s.commands.push(closed);
        Ok(())
    }
    async fn feedback(&mut self) -> Result<bool, MockError> {
        if self.0.borrow().fail_feedback {
            return Err(COMM);
        }
        Ok(self.closed())
    }
}

// ---------- Meter, PV, E-stop ----------

#[derive(Debug, Clone)]
pub(crate) struct MockMeter(pub Rc<RefCell<Result<MeterReading, MockError>>>);

impl Default for MockMeter {
    fn default() -> Self {
        Self(Rc::new(RefCell::new(Ok(MeterReading {
            active_power: ems_core::watts!(800.0),
            voltage: ems_core::volts!(230.0),
            frequency: Some(ems_core::hertz!(50.0)),
        }))))
    }
}

impl Meter for MockMeter {
    type Error = MockError;
    async fn read(&mut self) -> Result<MeterReading, MockError> {
        *self.0.borrow()
    }
}

#[derive(Debug, Clone)]
pub(crate) struct MockPv(pub Rc<RefCell<Result<PvReading, MockError>>>);

impl Default for MockPv {
    fn default() -> Self {
        Self(Rc::new(RefCell::new(Ok(PvReading { active_power: ems_core::watts!(1500.0) }))))
    }
}

impl PvInverter for MockPv {
    type Error = MockError;
    async fn read(&mut self) -> Result<PvReading, MockError> {
        *self.0.borrow()
    }
}

#[derive(Debug, Clone)]
pub(crate) struct MockEStop(pub Rc<RefCell<Result<EStopState, MockError>>>);

impl Default for MockEStop {
    fn default() -> Self {
        Self(Rc::new(RefCell::new(Ok(EStopState::Released))))
    }
}

impl MockEStop {
    pub(crate) fn press(&self) {
        *self.0.borrow_mut() = Ok(EStopState::Pressed);
    }
}

impl EStopInput for MockEStop {
    type Error = MockError;
    async fn read(&mut self) -> Result<EStopState, MockError> {
        *self.0.borrow()
    }
}
