//! `Faulty<D>`: a device wrapper that injects device-level faults.
//!
//! [`Faulty`] implements every device trait of [`ems_devices::traits`] that the wrapped device
//! implements, by delegating, and bends the calls according to the fault currently set on its
//! [`FaultSwitch`]. The switch is a cheap shared handle (`Rc<RefCell<…>>`): the scenario runner
//! keeps one clone per device and flips faults while the device itself is owned by the device
//! layer. The wrapper has no clock of its own; the runner calls [`FaultSwitch::set_now`] once per
//! cycle (only [`DeviceFault::Delay`] needs time).
//!
//! One fault is active per device at a time; setting a new one replaces the old one.
//!
//! How each fault bends the calls:
//!
//! | fault | reads | writes |
//! |---|---|---|
//! | `CommLoss` | fail, [`ErrorKind::Comm`] | fail, `Comm` |
//! | `Timeout` | fail, [`ErrorKind::Timeout`] | fail, `Timeout` |
//! | `Frozen` | the last reading taken before the fault (stale, but looks fresh) | pass |
//! | `Garbage` | fail, [`ErrorKind::Decode`] (a register decoding to NaN) | pass |
//! | `OutOfRange` | live reading with implausible fields (see below); devices with only a boolean reading fail with `Decode` | pass |
//! | `Spike` | one reading far off, then live again | pass |
//! | `Stuck(field)` | live, except `field` keeps its value from before the fault | pass |
//! | `IgnoreCommands` | live | `Ok`, but not passed on |
//! | `Delay(d)` | live | `Ok`, passed on in order at the first call at or after `now + d` |
//! | `RelayWeld` | live (a welded contact really stays closed, so the feedback shows it) | relay `set(false)` is `Ok` but not passed on while the contact is closed (an open contact cannot weld); `set(true)` passes |
//!
//! The weld is modelled here, not in the simulator: the simulated relay never receives the open
//! command, so its contact — and the power path — stay closed, which is what a weld does.
//!
//! Implausible values (`OutOfRange`): BMS max cell voltage 9.9 V and min cell temperature
//! −200 °C; inverter heat-sink −200 °C and active power 10 × its rating; meter voltage 1500 V
//! and frequency 5 Hz; PV production −5 kW. Spikes: BMS max cell temperature +40 °C; inverter
//! active power × 10; meter power × 10 + 20 kW; PV × 10 + 10 kW; relay feedback and E-stop
//! input inverted for one read.

use ems_core::snapshot::EStopInput as EStopReading;
use ems_core::{Celsius, Millis, Watts};
use ems_devices::traits::{
    Bms, BmsReading, DeviceError, EStopInput, ErrorKind, Inverter, InverterCapabilities, InverterReading,
    InverterSettings, Meter, MeterReading, PvInverter, PvReading, Relay,
};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::rc::Rc;

/// Which field a [`DeviceFault::Stuck`] sensor freezes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Field {
    /// The device's main measurement: BMS cell temperatures, inverter/meter/PV active power,
    /// relay feedback, E-stop input.
    #[default]
    Primary,
    /// BMS state of charge.
    Soc,
    /// BMS pack current.
    PackCurrent,
    /// BMS min and max cell voltage.
    CellVoltage,
    /// BMS min and max cell temperature.
    CellTemperature,
    /// BMS charge and discharge limits.
    BmsLimits,
    /// Inverter, meter or PV active power.
    ActivePower,
    /// Inverter heat-sink temperature.
    Temperature,
}

impl Field {
    /// Every field, in declaration order.
    pub const ALL: [Self; 8] = [
        Self::Primary,
        Self::Soc,
        Self::PackCurrent,
        Self::CellVoltage,
        Self::CellTemperature,
        Self::BmsLimits,
        Self::ActivePower,
        Self::Temperature,
    ];

    /// The snake-case name used in scenario files.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Soc => "soc",
            Self::PackCurrent => "pack_current",
            Self::CellVoltage => "cell_voltage",
            Self::CellTemperature => "cell_temperature",
            Self::BmsLimits => "bms_limits",
            Self::ActivePower => "active_power",
            Self::Temperature => "temperature",
        }
    }

    /// Parse a name of [`Self::name`].
    #[must_use]
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == s)
    }
}

/// A device-level fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceFault {
    /// Every call fails with [`ErrorKind::Comm`].
    CommLoss,
    /// Every call fails with [`ErrorKind::Timeout`].
    Timeout,
    /// Reads return the last reading taken before the fault began.
    Frozen,
    /// Reads fail with [`ErrorKind::Decode`] (the registers would decode to NaN).
    Garbage,
    /// Reads carry physically possible but implausible values.
    OutOfRange,
    /// One reading far off, then normal.
    Spike,
    /// One field keeps its value from before the fault while the rest is live.
    Stuck(Field),
    /// Writes return `Ok` but are not passed to the device.
    IgnoreCommands,
    /// Writes are held and passed on after this delay.
    Delay(Millis),
    /// A relay's open command is `Ok` but the contact stays closed.
    RelayWeld,
}

impl DeviceFault {
    /// Snake-case name of the kind (scenario files, report keys).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::CommLoss => "comm_loss",
            Self::Timeout => "timeout",
            Self::Frozen => "frozen",
            Self::Garbage => "garbage",
            Self::OutOfRange => "out_of_range",
            Self::Spike => "spike",
            Self::Stuck(_) => "stuck",
            Self::IgnoreCommands => "ignore_commands",
            Self::Delay(_) => "delay",
            Self::RelayWeld => "relay_weld",
        }
    }
}

impl fmt::Display for DeviceFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stuck(field) => write!(f, "stuck {}", field.name()),
            Self::Delay(d) => write!(f, "delay {d}"),
            other => f.write_str(other.name()),
        }
    }
}

#[derive(Debug, Default)]
struct SwitchState {
    fault: Option<DeviceFault>,
    generation: u64,
    now: Millis,
    injected_errors: u64,
    dropped_writes: u64,
}

/// The shared control handle of one [`Faulty`] device. Clones control the same device.
#[derive(Debug, Clone, Default)]
pub struct FaultSwitch(Rc<RefCell<SwitchState>>);

impl FaultSwitch {
    /// A switch with no fault set.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Set `fault` (replacing any active one).
    pub fn set(&self, fault: DeviceFault) {
        let mut s = self.0.borrow_mut();
        s.fault = Some(fault);
        s.generation = s.generation.wrapping_add(1);
    }

    /// Clear the active fault. Writes held by a [`DeviceFault::Delay`] are still passed on when
    /// due.
    pub fn clear(&self) {
        let mut s = self.0.borrow_mut();
        s.fault = None;
        s.generation = s.generation.wrapping_add(1);
    }

    /// The active fault.
    #[must_use]
    pub fn fault(&self) -> Option<DeviceFault> {
        self.0.borrow().fault
    }

    /// Tell the wrapper what time it is (monotonic, the runner's simulated clock).
    pub fn set_now(&self, now: Millis) {
        self.0.borrow_mut().now = now;
    }

    /// The time last set.
    #[must_use]
    pub fn now(&self) -> Millis {
        self.0.borrow().now
    }

    /// Calls failed by an injected error so far.
    #[must_use]
    pub fn injected_errors(&self) -> u64 {
        self.0.borrow().injected_errors
    }

    /// Writes swallowed (ignored or welded) so far.
    #[must_use]
    pub fn dropped_writes(&self) -> u64 {
        self.0.borrow().dropped_writes
    }

    fn generation(&self) -> u64 {
        self.0.borrow().generation
    }

    fn count_error(&self) {
        self.0.borrow_mut().injected_errors += 1;
    }

    fn count_drop(&self) {
        self.0.borrow_mut().dropped_writes += 1;
    }
}

/// Error of a [`Faulty`] device: an injected failure or the wrapped device's own error.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultyError<E> {
    /// Injected by the wrapper.
    Injected(ErrorKind),
    /// The wrapped device failed by itself.
    Device(E),
}

impl<E: fmt::Debug> fmt::Display for FaultyError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Injected(k) => write!(f, "injected {k}"),
            Self::Device(e) => write!(f, "{e:?}"),
        }
    }
}

impl<E: fmt::Debug> std::error::Error for FaultyError<E> {}

impl<E: DeviceError> DeviceError for FaultyError<E> {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Injected(k) => *k,
            Self::Device(e) => e.kind(),
        }
    }
}

/// A write held back by [`DeviceFault::Delay`].
#[derive(Debug, Clone, Copy, PartialEq)]
enum Held {
    Setpoint(Watts),
    Settings(InverterSettings),
    Relay(bool),
    ResetAlarms,
}

#[derive(Debug, Clone, Copy, Default)]
struct Last {
    bms: Option<BmsReading>,
    inverter: Option<InverterReading>,
    meter: Option<MeterReading>,
    pv: Option<PvReading>,
    relay: Option<bool>,
    estop: Option<EStopReading>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum ReadPlan {
    Live,
    Fail(ErrorKind),
    Frozen,
    OutOfRange,
    Spike,
    Stuck(Field),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum WritePlan {
    Pass,
    Fail(ErrorKind),
    Drop,
    Hold(Millis),
}

/// A device with injectable faults. See the module documentation.
#[derive(Debug)]
pub struct Faulty<D> {
    inner: D,
    switch: FaultSwitch,
    last: Last,
    spiked_generation: Option<u64>,
    held: VecDeque<(Millis, Held)>,
}

impl<D> Faulty<D> {
    /// Wrap `inner`, controlled by `switch`.
    pub fn new(inner: D, switch: FaultSwitch) -> Self {
        Self { inner, switch, last: Last::default(), spiked_generation: None, held: VecDeque::new() }
    }

    /// Wrap `inner` with a fresh switch; returns the device and a clone of its switch.
    pub fn with_switch(inner: D) -> (Self, FaultSwitch) {
        let switch = FaultSwitch::new();
        (Self::new(inner, switch.clone()), switch)
    }

    /// The control handle.
    #[must_use]
    pub fn switch(&self) -> &FaultSwitch {
        &self.switch
    }

    /// The wrapped device.
    #[must_use]
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// The wrapped device, mutably (bypasses every fault).
    pub fn inner_mut(&mut self) -> &mut D {
        &mut self.inner
    }

    /// Unwrap.
    pub fn into_inner(self) -> D {
        self.inner
    }

    /// Writes currently held by a delay.
    #[must_use]
    pub fn held_writes(&self) -> usize {
        self.held.len()
    }

    fn read_plan(&mut self) -> ReadPlan {
        let plan = match self.switch.fault() {
            None | Some(DeviceFault::IgnoreCommands | DeviceFault::Delay(_) | DeviceFault::RelayWeld) => {
                ReadPlan::Live
            }
            Some(DeviceFault::CommLoss) => ReadPlan::Fail(ErrorKind::Comm),
            Some(DeviceFault::Timeout) => ReadPlan::Fail(ErrorKind::Timeout),
            Some(DeviceFault::Garbage) => ReadPlan::Fail(ErrorKind::Decode),
            Some(DeviceFault::Frozen) => ReadPlan::Frozen,
            Some(DeviceFault::OutOfRange) => ReadPlan::OutOfRange,
            Some(DeviceFault::Stuck(f)) => ReadPlan::Stuck(f),
            Some(DeviceFault::Spike) => {
                let generation = self.switch.generation();
                if self.spiked_generation == Some(generation) {
                    ReadPlan::Live
                } else {
                    self.spiked_generation = Some(generation);
                    ReadPlan::Spike
                }
            }
        };
        if let ReadPlan::Fail(_) = plan {
            self.switch.count_error();
        }
        plan
    }

    fn write_plan(&mut self, relay_open: bool) -> WritePlan {
        let plan = match self.switch.fault() {
            None
            | Some(
                DeviceFault::Frozen
                | DeviceFault::Garbage
                | DeviceFault::OutOfRange
                | DeviceFault::Spike
                | DeviceFault::Stuck(_),
            ) => WritePlan::Pass,
            Some(DeviceFault::CommLoss) => WritePlan::Fail(ErrorKind::Comm),
            Some(DeviceFault::Timeout) => WritePlan::Fail(ErrorKind::Timeout),
            Some(DeviceFault::IgnoreCommands) => WritePlan::Drop,
            Some(DeviceFault::Delay(d)) => WritePlan::Hold(self.switch.now().plus(d)),
            Some(DeviceFault::RelayWeld) => {
                if relay_open {
                    WritePlan::Drop
                } else {
                    WritePlan::Pass
                }
            }
        };
        match plan {
            WritePlan::Fail(_) => self.switch.count_error(),
            WritePlan::Drop => self.switch.count_drop(),
            WritePlan::Pass | WritePlan::Hold(_) => {}
        }
        plan
    }

    /// Held writes that are due now, oldest first.
    fn take_due(&mut self) -> Vec<Held> {
        let now = self.switch.now();
        let mut due = Vec::new();
        while let Some(&(at, h)) = self.held.front() {
            if at > now {
                break;
            }
            due.push(h);
            self.held.pop_front();
        }
        due
    }
}

/// How a reading type is bent.
trait Reading: Copy {
    /// The reading with implausible fields, or `None` when the type has no implausible value.
    fn implausible(self) -> Option<Self>;
    /// The reading far off.
    fn spiked(self) -> Self;
    /// The live reading with `field` taken from `held`.
    fn stuck(self, held: Self, field: Field) -> Self;
}

impl Reading for BmsReading {
    fn implausible(self) -> Option<Self> {
        Some(Self {
            cell_voltage_max: ems_core::volts!(9.9),
            cell_temp_min: ems_core::celsius!(-200.0),
            ..self
        })
    }

    fn spiked(self) -> Self {
        Self { cell_temp_max: Celsius::saturating(self.cell_temp_max.get() + 40.0), ..self }
    }

    fn stuck(self, held: Self, field: Field) -> Self {
        match field {
            Field::Primary | Field::CellTemperature | Field::ActivePower | Field::Temperature => {
                Self { cell_temp_min: held.cell_temp_min, cell_temp_max: held.cell_temp_max, ..self }
            }
            Field::Soc => Self { soc: held.soc, ..self },
            Field::PackCurrent => Self { pack_current: held.pack_current, ..self },
            Field::CellVoltage => Self {
                cell_voltage_min: held.cell_voltage_min,
                cell_voltage_max: held.cell_voltage_max,
                ..self
            },
            Field::BmsLimits => {
                Self { charge_limit: held.charge_limit, discharge_limit: held.discharge_limit, ..self }
            }
        }
    }
}

impl Reading for InverterReading {
    fn implausible(self) -> Option<Self> {
        let p = self.rated_power.get() * 10.0;
        let active_power = Watts::saturating(if self.setpoint.get() < 0.0 { -p } else { p });
        Some(Self { temperature: ems_core::celsius!(-200.0), active_power, ..self })
    }

    fn spiked(self) -> Self {
        Self { active_power: Watts::saturating(self.active_power.get() * 10.0), ..self }
    }

    fn stuck(self, held: Self, field: Field) -> Self {
        match field {
            Field::Temperature => Self { temperature: held.temperature, ..self },
            Field::Primary
            | Field::ActivePower
            | Field::Soc
            | Field::PackCurrent
            | Field::CellVoltage
            | Field::CellTemperature
            | Field::BmsLimits => Self { active_power: held.active_power, ..self },
        }
    }
}

impl Reading for MeterReading {
    fn implausible(self) -> Option<Self> {
        Some(Self { voltage: ems_core::volts!(1500.0), frequency: Some(ems_core::hertz!(5.0)), ..self })
    }

    fn spiked(self) -> Self {
        Self { active_power: Watts::saturating(self.active_power.get() * 10.0 + 20_000.0), ..self }
    }

    fn stuck(self, held: Self, _field: Field) -> Self {
        Self { active_power: held.active_power, ..self }
    }
}

impl Reading for PvReading {
    fn implausible(self) -> Option<Self> {
        Some(Self { active_power: ems_core::watts!(-5_000.0) })
    }

    fn spiked(self) -> Self {
        Self { active_power: Watts::saturating(self.active_power.get() * 10.0 + 10_000.0) }
    }

    fn stuck(self, held: Self, _field: Field) -> Self {
        held
    }
}

impl Reading for bool {
    fn implausible(self) -> Option<Self> {
        None
    }

    fn spiked(self) -> Self {
        !self
    }

    fn stuck(self, held: Self, _field: Field) -> Self {
        held
    }
}

impl Reading for EStopReading {
    fn implausible(self) -> Option<Self> {
        None
    }

    fn spiked(self) -> Self {
        match self {
            Self::Pressed => Self::Released,
            Self::Released => Self::Pressed,
        }
    }

    fn stuck(self, held: Self, _field: Field) -> Self {
        held
    }
}

/// Bend a live reading according to `plan`; `slot` holds the last reading before the fault.
fn shape<R: Reading>(plan: ReadPlan, live: R, slot: &mut Option<R>) -> Result<R, ErrorKind> {
    match plan {
        ReadPlan::Live => {
            *slot = Some(live);
            Ok(live)
        }
        ReadPlan::Fail(k) => Err(k),
        // Frozen or stuck without a reading before the fault: this first reading is the one
        // that stays.
        ReadPlan::Frozen => Ok(*slot.get_or_insert(live)),
        ReadPlan::Stuck(field) => Ok(live.stuck(*slot.get_or_insert(live), field)),
        ReadPlan::OutOfRange => live.implausible().ok_or(ErrorKind::Decode),
        ReadPlan::Spike => Ok(live.spiked()),
    }
}

macro_rules! read_through {
    ($self:ident, $slot:ident, $call:expr) => {{
        let plan = $self.read_plan();
        match plan {
            ReadPlan::Fail(k) => return Err(FaultyError::Injected(k)),
            ReadPlan::Frozen => {
                if let Some(r) = $self.last.$slot {
                    return Ok(r);
                }
            }
            ReadPlan::Live | ReadPlan::OutOfRange | ReadPlan::Spike | ReadPlan::Stuck(_) => {}
        }
        let live = $call.await.map_err(FaultyError::Device)?;
        shape(plan, live, &mut $self.last.$slot).map_err(FaultyError::Injected)
    }};
}

macro_rules! write_through {
    ($self:ident, $relay_open:expr, $held:expr, $call:expr) => {{
        match $self.write_plan($relay_open) {
            WritePlan::Pass => $call.await.map_err(FaultyError::Device),
            WritePlan::Fail(k) => Err(FaultyError::Injected(k)),
            WritePlan::Drop => Ok(()),
            WritePlan::Hold(at) => {
                $self.held.push_back((at, $held));
                Ok(())
            }
        }
    }};
}

impl<D: Bms> Faulty<D> {
    async fn flush_bms(&mut self) {
        for h in self.take_due() {
            if h == Held::ResetAlarms {
                // A delayed write that fails is simply not applied, as on a real link.
                let _ = self.inner.reset_alarms().await;
            }
        }
    }
}

impl<D: Bms> Bms for Faulty<D> {
    type Error = FaultyError<D::Error>;

    async fn read(&mut self) -> Result<BmsReading, Self::Error> {
        self.flush_bms().await;
        read_through!(self, bms, self.inner.read())
    }

    async fn reset_alarms(&mut self) -> Result<(), Self::Error> {
        self.flush_bms().await;
        write_through!(self, false, Held::ResetAlarms, self.inner.reset_alarms())
    }
}

impl<D: Inverter> Faulty<D> {
    async fn flush_inverter(&mut self) {
        for h in self.take_due() {
            // A delayed write that fails is simply not applied, as on a real link.
            match h {
                Held::Setpoint(p) => {
                    let _ = self.inner.write_setpoint(p).await;
                }
                Held::Settings(s) => {
                    let _ = self.inner.write_settings(&s).await;
                }
                Held::Relay(_) | Held::ResetAlarms => {}
            }
        }
    }

    fn settings_plan(&mut self) -> Option<ErrorKind> {
        match self.read_plan() {
            ReadPlan::Fail(k) => Some(k),
            ReadPlan::Live
            | ReadPlan::Frozen
            | ReadPlan::OutOfRange
            | ReadPlan::Spike
            | ReadPlan::Stuck(_) => None,
        }
    }
}

impl<D: Inverter> Inverter for Faulty<D> {
    type Error = FaultyError<D::Error>;

    fn capabilities(&self) -> InverterCapabilities {
        self.inner.capabilities()
    }

    async fn read(&mut self) -> Result<InverterReading, Self::Error> {
        self.flush_inverter().await;
        read_through!(self, inverter, self.inner.read())
    }

    async fn write_setpoint(&mut self, power: Watts) -> Result<(), Self::Error> {
        self.flush_inverter().await;
        write_through!(self, false, Held::Setpoint(power), self.inner.write_setpoint(power))
    }

    async fn read_settings(&mut self) -> Result<InverterSettings, Self::Error> {
        self.flush_inverter().await;
        // Settings are configuration, not measurements: only link failures affect them.
        if let Some(k) = self.settings_plan() {
            return Err(FaultyError::Injected(k));
        }
        self.inner.read_settings().await.map_err(FaultyError::Device)
    }

    async fn write_settings(&mut self, settings: &InverterSettings) -> Result<(), Self::Error> {
        self.flush_inverter().await;
        write_through!(self, false, Held::Settings(*settings), self.inner.write_settings(settings))
    }
}

impl<D: Meter> Meter for Faulty<D> {
    type Error = FaultyError<D::Error>;

    async fn read(&mut self) -> Result<MeterReading, Self::Error> {
        read_through!(self, meter, self.inner.read())
    }
}

impl<D: PvInverter> PvInverter for Faulty<D> {
    type Error = FaultyError<D::Error>;

    async fn read(&mut self) -> Result<PvReading, Self::Error> {
        read_through!(self, pv, self.inner.read())
    }
}

impl<D: Relay> Faulty<D> {
    async fn flush_relay(&mut self) {
        for h in self.take_due() {
            if let Held::Relay(closed) = h {
                // A delayed write that fails is simply not applied, as on a real link.
                let _ = self.inner.set(closed).await;
            }
        }
    }
}

impl<D: Relay> Relay for Faulty<D> {
    type Error = FaultyError<D::Error>;

    async fn set(&mut self, closed: bool) -> Result<(), Self::Error> {
        self.flush_relay().await;
        // Only a closed contact can weld: an opening command to a contact that is open (e.g.
        // one that never closed) passes, otherwise the "weld" would be a coil driver stuck on,
        // a different fault (found by the fault-interleaving property test).
        let welds = !closed
            && self.switch.fault() == Some(DeviceFault::RelayWeld)
            && matches!(self.inner.feedback().await, Ok(true));
        write_through!(self, welds, Held::Relay(closed), self.inner.set(closed))
    }

    async fn feedback(&mut self) -> Result<bool, Self::Error> {
        self.flush_relay().await;
        read_through!(self, relay, self.inner.feedback())
    }
}

impl<D: EStopInput> EStopInput for Faulty<D> {
    type Error = FaultyError<D::Error>;

    async fn read(&mut self) -> Result<EStopReading, Self::Error> {
        read_through!(self, estop, self.inner.read())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ems_core::snapshot::{BmsAlarms, InverterState};

    use pollster::block_on;

    #[derive(Debug, Clone, Copy, PartialEq)]
    struct MockError;

    impl DeviceError for MockError {
        fn kind(&self) -> ErrorKind {
            ErrorKind::Refused
        }
    }

    /// A BMS whose max cell temperature rises 1 °C per read.
    #[derive(Debug, Default)]
    struct MockBms {
        reads: u32,
        resets: u32,
    }

    impl Bms for MockBms {
        type Error = MockError;
        async fn read(&mut self) -> Result<BmsReading, MockError> {
            self.reads += 1;
            let t = 20.0 + f32::from(u16::try_from(self.reads).unwrap());
            Ok(BmsReading {
                soc: ems_core::percent!(50.0),
                pack_voltage: ems_core::volts!(51.2),
                pack_current: ems_core::amps!(-10.0),
                cell_voltage_min: ems_core::volts!(3.30),
                cell_voltage_max: ems_core::volts!(3.31),
                cell_temp_min: Celsius::saturating(t - 1.0),
                cell_temp_max: Celsius::saturating(t),
                charge_limit: ems_core::watts!(5000.0),
                discharge_limit: ems_core::watts!(5000.0),
                alarms: BmsAlarms::NONE,
                ready: true,
            })
        }
        async fn reset_alarms(&mut self) -> Result<(), MockError> {
            self.resets += 1;
            Ok(())
        }
    }

    #[derive(Debug)]
    struct MockInverter {
        setpoint: Watts,
        settings: InverterSettings,
        refuse: bool,
    }

    impl Default for MockInverter {
        fn default() -> Self {
            Self {
                setpoint: Watts::ZERO,
                settings: InverterSettings {
                    control: ems_devices::traits::ControlSource::Local,
                    setpoint: Watts::ZERO,
                    revert_timeout: None,
                },
                refuse: false,
            }
        }
    }

    impl Inverter for MockInverter {
        type Error = MockError;
        fn capabilities(&self) -> InverterCapabilities {
            InverterCapabilities { revert_timer: true, setpoint_in_flash: false }
        }
        async fn read(&mut self) -> Result<InverterReading, MockError> {
            Ok(InverterReading {
                active_power: self.setpoint,
                setpoint: self.setpoint,
                state: InverterState::Running,
                temperature: ems_core::celsius!(30.0),
                rated_power: ems_core::watts!(5000.0),
                dc_link_voltage: ems_core::volts!(51.0),
            })
        }
        async fn write_setpoint(&mut self, power: Watts) -> Result<(), MockError> {
            if self.refuse {
                return Err(MockError);
            }
            self.setpoint = power;
            Ok(())
        }
        async fn read_settings(&mut self) -> Result<InverterSettings, MockError> {
            Ok(self.settings)
        }
        async fn write_settings(&mut self, settings: &InverterSettings) -> Result<(), MockError> {
            self.settings = *settings;
            Ok(())
        }
    }

    #[derive(Debug, Default)]
    struct MockMeter(f32);

    impl Meter for MockMeter {
        type Error = MockError;
        async fn read(&mut self) -> Result<MeterReading, MockError> {
            self.0 += 100.0;
            Ok(MeterReading {
                active_power: Watts::saturating(self.0),
                voltage: ems_core::volts!(230.0),
                frequency: Some(ems_core::hertz!(50.0)),
            })
        }
    }

    #[derive(Debug, Default)]
    struct MockPv(f32);

    impl PvInverter for MockPv {
        type Error = MockError;
        async fn read(&mut self) -> Result<PvReading, MockError> {
            self.0 += 10.0;
            Ok(PvReading { active_power: Watts::saturating(self.0) })
        }
    }

    /// A relay whose contact follows the coil.
    #[derive(Debug, Default)]
    struct MockRelay(bool);

    impl Relay for MockRelay {
        type Error = MockError;
        async fn set(&mut self, closed: bool) -> Result<(), MockError> {
            self.0 = closed;
            Ok(())
        }
        async fn feedback(&mut self) -> Result<bool, MockError> {
            Ok(self.0)
        }
    }

    #[derive(Debug)]
    struct MockEStop(EStopReading);

    impl EStopInput for MockEStop {
        type Error = MockError;
        async fn read(&mut self) -> Result<EStopReading, MockError> {
            Ok(self.0)
        }
    }

    fn kind<T: fmt::Debug, E: DeviceError>(r: Result<T, E>) -> ErrorKind {
        r.unwrap_err().kind()
    }

    #[test]
    fn no_fault_delegates_everything() {
        let (mut bms, sw) = Faulty::with_switch(MockBms::default());
        let r = block_on(bms.read()).unwrap();
        assert_eq!(r.cell_temp_max, ems_core::celsius!(21.0));
        block_on(bms.reset_alarms()).unwrap();
        assert_eq!(bms.inner().resets, 1);
        assert_eq!(sw.injected_errors(), 0);
        let mut inv = Faulty::new(MockInverter::default(), FaultSwitch::new());
        assert!(inv.capabilities().revert_timer);
        block_on(inv.write_setpoint(ems_core::watts!(-1000.0))).unwrap();
        assert_eq!(block_on(inv.read()).unwrap().setpoint, ems_core::watts!(-1000.0));
    }

    #[test]
    fn comm_loss_and_timeout_fail_every_call_then_recover() {
        let (mut inv, sw) = Faulty::with_switch(MockInverter::default());
        for (fault, k) in
            [(DeviceFault::CommLoss, ErrorKind::Comm), (DeviceFault::Timeout, ErrorKind::Timeout)]
        {
            sw.set(fault);
            assert_eq!(kind(block_on(inv.read())), k);
            assert_eq!(kind(block_on(inv.write_setpoint(ems_core::watts!(100.0)))), k);
            assert_eq!(kind(block_on(inv.read_settings())), k);
            assert_eq!(kind(block_on(inv.write_settings(&inv.inner().settings.clone()))), k);
            assert_eq!(inv.inner().setpoint, Watts::ZERO, "a failed write must not reach the device");
        }
        assert_eq!(sw.injected_errors(), 8);
        sw.clear();
        block_on(inv.write_setpoint(ems_core::watts!(100.0))).unwrap();
        assert_eq!(block_on(inv.read()).unwrap().active_power, ems_core::watts!(100.0));
    }

    #[test]
    fn device_errors_keep_their_kind() {
        let mut inv =
            Faulty::new(MockInverter { refuse: true, ..MockInverter::default() }, FaultSwitch::new());
        let e = block_on(inv.write_setpoint(ems_core::watts!(1.0))).unwrap_err();
        assert_eq!(e, FaultyError::Device(MockError));
        assert_eq!(e.kind(), ErrorKind::Refused);
    }

    #[test]
    fn frozen_returns_the_last_reading_before_the_fault() {
        let (mut bms, sw) = Faulty::with_switch(MockBms::default());
        let before = block_on(bms.read()).unwrap();
        sw.set(DeviceFault::Frozen);
        for _ in 0..5 {
            assert_eq!(block_on(bms.read()).unwrap(), before);
        }
        sw.clear();
        assert!(block_on(bms.read()).unwrap().cell_temp_max > before.cell_temp_max);
        // Frozen from the first read: that reading stays.
        let (mut meter, sw) = Faulty::with_switch(MockMeter::default());
        sw.set(DeviceFault::Frozen);
        let first = block_on(meter.read()).unwrap();
        assert_eq!(block_on(meter.read()).unwrap(), first);
    }

    #[test]
    fn garbage_fails_reads_with_decode_but_writes_pass() {
        let (mut inv, sw) = Faulty::with_switch(MockInverter::default());
        sw.set(DeviceFault::Garbage);
        assert_eq!(kind(block_on(inv.read())), ErrorKind::Decode);
        block_on(inv.write_setpoint(ems_core::watts!(200.0))).unwrap();
        assert_eq!(inv.inner().setpoint, ems_core::watts!(200.0));
        let (mut pv, sw) = Faulty::with_switch(MockPv::default());
        sw.set(DeviceFault::Garbage);
        assert_eq!(kind(block_on(pv.read())), ErrorKind::Decode);
    }

    #[test]
    fn out_of_range_gives_implausible_values() {
        let (mut bms, sw) = Faulty::with_switch(MockBms::default());
        sw.set(DeviceFault::OutOfRange);
        let r = block_on(bms.read()).unwrap();
        assert_eq!(r.cell_voltage_max, ems_core::volts!(9.9));
        assert_eq!(r.cell_temp_min, ems_core::celsius!(-200.0));
        let (mut inv, sw) = Faulty::with_switch(MockInverter::default());
        sw.set(DeviceFault::OutOfRange);
        let r = block_on(inv.read()).unwrap();
        assert_eq!(r.temperature, ems_core::celsius!(-200.0));
        assert!(r.active_power.get() >= 50_000.0);
        let (mut meter, sw) = Faulty::with_switch(MockMeter::default());
        sw.set(DeviceFault::OutOfRange);
        assert_eq!(block_on(meter.read()).unwrap().frequency, Some(ems_core::hertz!(5.0)));
        let (mut pv, sw) = Faulty::with_switch(MockPv::default());
        sw.set(DeviceFault::OutOfRange);
        assert!(block_on(pv.read()).unwrap().active_power.get() < 0.0);
        // A boolean has no implausible value: it cannot be decoded.
        let (mut relay, sw) = Faulty::with_switch(MockRelay::default());
        sw.set(DeviceFault::OutOfRange);
        assert_eq!(kind(block_on(relay.feedback())), ErrorKind::Decode);
        let (mut estop, sw) = Faulty::with_switch(MockEStop(EStopReading::Released));
        sw.set(DeviceFault::OutOfRange);
        assert_eq!(kind(block_on(estop.read())), ErrorKind::Decode);
    }

    #[test]
    fn spike_is_one_reading_then_normal_and_rearms_on_the_next_set() {
        let (mut bms, sw) = Faulty::with_switch(MockBms::default());
        sw.set(DeviceFault::Spike);
        assert_eq!(block_on(bms.read()).unwrap().cell_temp_max, ems_core::celsius!(61.0));
        assert_eq!(block_on(bms.read()).unwrap().cell_temp_max, ems_core::celsius!(22.0));
        assert_eq!(block_on(bms.read()).unwrap().cell_temp_max, ems_core::celsius!(23.0));
        sw.set(DeviceFault::Spike);
        assert_eq!(block_on(bms.read()).unwrap().cell_temp_max, ems_core::celsius!(64.0));
        let (mut estop, sw) = Faulty::with_switch(MockEStop(EStopReading::Released));
        sw.set(DeviceFault::Spike);
        assert_eq!(block_on(estop.read()).unwrap(), EStopReading::Pressed);
        assert_eq!(block_on(estop.read()).unwrap(), EStopReading::Released);
        let (mut meter, sw) = Faulty::with_switch(MockMeter::default());
        sw.set(DeviceFault::Spike);
        assert_eq!(block_on(meter.read()).unwrap().active_power, ems_core::watts!(21_000.0));
        assert_eq!(block_on(meter.read()).unwrap().active_power, ems_core::watts!(200.0));
    }

    #[test]
    fn stuck_field_keeps_its_value_while_the_rest_is_live() {
        let (mut bms, sw) = Faulty::with_switch(MockBms::default());
        let before = block_on(bms.read()).unwrap();
        sw.set(DeviceFault::Stuck(Field::CellTemperature));
        let r = block_on(bms.read()).unwrap();
        assert_eq!(r.cell_temp_max, before.cell_temp_max);
        assert_eq!(r.cell_temp_min, before.cell_temp_min);
        assert_eq!(bms.inner().reads, 2, "the rest is read live");
        sw.set(DeviceFault::Stuck(Field::Soc));
        assert!(block_on(bms.read()).unwrap().cell_temp_max > before.cell_temp_max);
        let (mut relay, sw) = Faulty::with_switch(MockRelay::default());
        assert!(!block_on(relay.feedback()).unwrap());
        sw.set(DeviceFault::Stuck(Field::Primary));
        block_on(relay.set(true)).unwrap();
        assert!(!block_on(relay.feedback()).unwrap(), "a stuck auxiliary contact");
        assert!(relay.inner().0);
    }

    #[test]
    fn ignored_commands_are_ok_but_never_arrive() {
        let (mut inv, sw) = Faulty::with_switch(MockInverter::default());
        sw.set(DeviceFault::IgnoreCommands);
        block_on(inv.write_setpoint(ems_core::watts!(-3000.0))).unwrap();
        let s = InverterSettings {
            control: ems_devices::traits::ControlSource::Remote,
            setpoint: Watts::ZERO,
            revert_timeout: Some(Millis::new(10_000)),
        };
        block_on(inv.write_settings(&s)).unwrap();
        assert_eq!(block_on(inv.read()).unwrap().setpoint, Watts::ZERO);
        assert_eq!(block_on(inv.read_settings()).unwrap().control, ems_devices::traits::ControlSource::Local);
        assert_eq!(sw.dropped_writes(), 2);
        let (mut bms, sw) = Faulty::with_switch(MockBms::default());
        sw.set(DeviceFault::IgnoreCommands);
        block_on(bms.reset_alarms()).unwrap();
        assert_eq!(bms.inner().resets, 0);
    }

    #[test]
    fn delayed_writes_arrive_in_order_after_the_delay_even_if_cleared() {
        let (mut inv, sw) = Faulty::with_switch(MockInverter::default());
        sw.set_now(Millis::new(1_000));
        sw.set(DeviceFault::Delay(Millis::new(3_000)));
        block_on(inv.write_setpoint(ems_core::watts!(500.0))).unwrap();
        sw.set_now(Millis::new(2_000));
        block_on(inv.write_setpoint(ems_core::watts!(700.0))).unwrap();
        assert_eq!(inv.held_writes(), 2);
        sw.set_now(Millis::new(3_999));
        assert_eq!(block_on(inv.read()).unwrap().setpoint, Watts::ZERO);
        sw.clear();
        sw.set_now(Millis::new(4_000));
        assert_eq!(block_on(inv.read()).unwrap().setpoint, ems_core::watts!(500.0));
        sw.set_now(Millis::new(5_000));
        assert_eq!(block_on(inv.read()).unwrap().setpoint, ems_core::watts!(700.0));
        assert_eq!(inv.held_writes(), 0);
        let (mut relay, sw) = Faulty::with_switch(MockRelay::default());
        sw.set(DeviceFault::Delay(Millis::new(100)));
        block_on(relay.set(true)).unwrap();
        assert!(!block_on(relay.feedback()).unwrap());
        sw.set_now(Millis::new(100));
        assert!(block_on(relay.feedback()).unwrap());
    }

    #[test]
    fn welded_relay_accepts_open_but_stays_closed() {
        let (mut relay, sw) = Faulty::with_switch(MockRelay::default());
        block_on(relay.set(true)).unwrap();
        sw.set(DeviceFault::RelayWeld);
        block_on(relay.set(false)).unwrap();
        assert!(block_on(relay.feedback()).unwrap(), "feedback shows the real, closed contact");
        assert!(relay.inner().0);
        sw.clear();
        block_on(relay.set(false)).unwrap();
        assert!(!block_on(relay.feedback()).unwrap());
    }

    #[test]
    fn names_round_trip() {
        for f in Field::ALL {
            assert_eq!(Field::from_name(f.name()), Some(f));
        }
        assert_eq!(DeviceFault::Delay(Millis::new(5)).name(), "delay");
        assert_eq!(DeviceFault::Stuck(Field::Soc).to_string(), "stuck soc");
    }
}
