//! The island devices (issue #13 item 6): the grid-tie breaker, the inverter's grid mode and
//! the island's load relays, as the loop reads and commands them.
//!
//! * [`GridTieBreaker`]: read the position; open; close (operations: the breaker latches).
//! * [`GridModeInverter`]: read the operating mode (with the inverter's own measurements of the
//!   island bus and, where it has them, of the grid side and the phase difference); command
//!   off / grid-following / grid-forming / synchronise.
//! * Load relays reuse [`crate::traits::Relay`] (coil + feedback contact).
//!
//! Each trait has a Modbus driver ([`ModbusBreaker`], [`ModbusGridMode`]; a load relay is a
//! [`crate::modbus::io::ModbusRelay`]) and, behind the `sim` feature, a simulated device backed
//! by the island plant ([`SharedIsland`] over `sim::island::SimIsland`).
//!
//! [`IslandDevices`] is the device-layer wrapper: it keeps every read-back as a
//! [`Measurement`] with its own quality and maximum age (a failed read brings no new value, so
//! the last one goes stale; an answer that is no reading invalidates at once), writes the
//! commands (the breaker operation every cycle it is asked for, a mode or relay position when
//! it differs from the last one written or read back) and reports what failed.
//!
//! **The breaker's close authority stays with the island sequence:** this layer writes a close
//! only when told to, and [`IslandDevices::apply`] refuses a close while `stop` is set (an
//! E-stop) — see `docs/ISLAND.md`.

mod modbus;
#[cfg(feature = "sim")]
mod sim;

pub use modbus::{
    GridModeRegisters, GridModeValues, IslandModbusError, ModbusBreaker, ModbusGridMode, ScaledRegister,
};
#[cfg(feature = "sim")]
pub use sim::{SharedIsland, SimIslandBreaker, SimIslandInverter, SimIslandRelay};

use crate::traits::{DeviceError, ErrorKind, Relay};
use core::fmt;
use ems_core::snapshot::{GridMode, GridTie};
use ems_core::{Hertz, Measurement, Millis, Snapshot, Volts, Watts};

/// The grid-tie breaker (or transfer switch) between the site and the grid.
#[allow(async_fn_in_trait)] // driven on the control thread; no Send bound wanted
pub trait GridTieBreaker {
    /// The driver's error.
    type Error: DeviceError;
    /// Read the auxiliary contact.
    async fn position(&mut self) -> Result<GridTie, Self::Error>;
    /// Operate: open (trip).
    async fn open(&mut self) -> Result<(), Self::Error>;
    /// Operate: close. Only the island sequence decides this (its close gate).
    async fn close(&mut self) -> Result<(), Self::Error>;
}

/// The inverter's operating mode as read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InverterGridMode {
    /// Not switching.
    Off,
    /// Grid-following (current source).
    GridFollowing,
    /// Grid-forming (voltage source; also while synchronising).
    GridForming,
}

impl fmt::Display for InverterGridMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Off => "off",
            Self::GridFollowing => "grid-following",
            Self::GridForming => "grid-forming",
        })
    }
}

/// What the inverter is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GridModeCommand {
    /// Stop switching.
    Off,
    /// Grid-following.
    GridFollowing,
    /// Grid-forming at nominal voltage and frequency.
    GridForming,
    /// Grid-forming, steering onto the grid's voltage, frequency and phase.
    Synchronise,
}

impl fmt::Display for GridModeCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Off => "off",
            Self::GridFollowing => "grid-following",
            Self::GridForming => "grid-forming",
            Self::Synchronise => "synchronise",
        })
    }
}

/// A phase angle in degrees, −180..=180 (bus minus grid).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct PhaseAngle(f32);

/// A phase angle outside −180..=180° or not finite.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("phase difference = {0} must be within -180..=180 degrees")]
pub struct PhaseAngleError(pub f32);

impl PhaseAngle {
    /// An angle; refused outside −180..=180° or when not finite.
    ///
    /// # Errors
    /// [`PhaseAngleError`] with the value.
    pub fn try_new(degrees: f32) -> Result<Self, PhaseAngleError> {
        if degrees.is_finite() && (-180.0..=180.0).contains(&degrees) {
            Ok(Self(degrees))
        } else {
            Err(PhaseAngleError(degrees))
        }
    }

    /// Degrees.
    #[must_use]
    pub const fn degrees(self) -> f32 {
        self.0
    }
}

/// One read of a [`GridModeInverter`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GridModeReading {
    /// The operating mode.
    pub mode: InverterGridMode,
    /// The inverter reports a fault (it stopped forming, tripped).
    pub fault: bool,
    /// Voltage of the island bus (the inverter's AC terminals).
    pub bus_voltage: Option<Volts>,
    /// Frequency of the island bus (`None`: dead).
    pub bus_frequency: Option<Hertz>,
    /// Grid-side voltage, if the inverter measures the grid side of the breaker (a hybrid
    /// inverter with a backup port does); `None`: the loop uses the meter's.
    pub grid_voltage: Option<Volts>,
    /// Grid-side frequency (as `grid_voltage`).
    pub grid_frequency: Option<Hertz>,
    /// Phase of the bus minus phase of the grid (`None`: not measured or one side dead).
    pub phase_difference: Option<PhaseAngle>,
    /// AC output, `+` discharge (the island load while forming).
    pub ac_power: Option<Watts>,
    /// The discharge power the inverter can give in island operation (`None`: not reported;
    /// the loop then uses the rating and the BMS limit).
    pub available: Option<Watts>,
}

/// The battery inverter's grid-mode control.
#[allow(async_fn_in_trait)] // driven on the control thread; no Send bound wanted
pub trait GridModeInverter {
    /// The driver's error.
    type Error: DeviceError;
    /// Read the mode and the island-side measurements.
    async fn read(&mut self) -> Result<GridModeReading, Self::Error>;
    /// Command a mode.
    async fn set_mode(&mut self, mode: GridModeCommand) -> Result<(), Self::Error>;
}

/// The most load relays an island holds (the sequence's `MAX_LOADS`).
pub const MAX_ISLAND_RELAYS: usize = 16;

/// Settings of [`IslandDevices`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IslandDeviceConfig {
    /// A breaker read-back older than this is stale (not used: the sequence treats it as
    /// unknown, and a lost read-back while islanded ends in a safe stop after 2 s).
    pub breaker_max_age: Millis,
    /// The same for the inverter's mode and measurements.
    pub inverter_max_age: Millis,
    /// The same for the relay feedback contacts.
    pub relay_max_age: Millis,
}

impl Default for IslandDeviceConfig {
    /// 500 ms each. **Assumption**: a few fast ticks at 10 Hz or half a 1 s cycle, well inside
    /// the sequence's 2 s breaker verification.
    fn default() -> Self {
        let m = Millis::new(500);
        Self { breaker_max_age: m, inverter_max_age: m, relay_max_age: m }
    }
}

/// Invalid [`IslandDeviceConfig`] or relay count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IslandDeviceError {
    /// A maximum age of zero.
    #[error("{0} = 0 ms must be > 0")]
    ZeroMaxAge(&'static str),
    /// More relays than the island holds.
    #[error("loads: {0} relays, at most 16")]
    TooManyRelays(usize),
}

/// What the loop commands in one cycle, in device terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IslandCommand {
    /// `None`: leave the breaker; `Some(Open)` / `Some(Closed)`: operate it.
    pub breaker: Option<GridTie>,
    /// The inverter mode.
    pub mode: GridModeCommand,
    /// Relay positions, bit `i` = relay `i` closed.
    pub relays: u16,
}

/// What an apply did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IslandApplyReport {
    /// The breaker was operated (written).
    pub breaker_written: Option<GridTie>,
    /// A close was asked for while `stop` was set and not written.
    pub close_refused: bool,
    /// The mode was written.
    pub mode_written: Option<GridModeCommand>,
    /// Relays written this cycle (bit `i`).
    pub relays_written: u16,
    /// Writes that failed, and the kind of the first failure.
    pub failures: u8,
    /// The first failure's kind.
    pub first_failure: Option<ErrorKind>,
}

impl IslandApplyReport {
    fn fail(&mut self, kind: ErrorKind) {
        self.failures = self.failures.saturating_add(1);
        self.first_failure.get_or_insert(kind);
    }
}

/// The island read-backs with quality and maximum age.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IslandReadbacks {
    /// The breaker position.
    pub breaker: Measurement<GridTie>,
    /// The inverter's mode and measurements.
    pub inverter: Measurement<GridModeReading>,
    /// The relay feedback contacts (bit `i` = relay `i` closed); valid only when every relay
    /// answered.
    pub relays: Measurement<u16>,
}

const NO_READING: GridModeReading = GridModeReading {
    mode: InverterGridMode::Off,
    fault: false,
    bus_voltage: None,
    bus_frequency: None,
    grid_voltage: None,
    grid_frequency: None,
    phase_difference: None,
    ac_power: None,
    available: None,
};

fn bit(i: usize) -> u16 {
    u32::try_from(i).ok().and_then(|s| 1_u16.checked_shl(s)).unwrap_or(0)
}

/// The island's devices behind their read-back bookkeeping (see the module docs).
#[derive(Debug)]
pub struct IslandDevices<B, V, R> {
    breaker: B,
    inverter: V,
    relays: Vec<R>,
    readbacks: IslandReadbacks,
    last_mode: Option<GridModeCommand>,
    last_relays: Option<u16>,
}

fn note<E: DeviceError, T: Copy>(m: &mut Measurement<T>, e: &E) -> ErrorKind {
    let kind = e.kind();
    if !kind.is_link() {
        // An answer that is no usable reading: invalid at once (design.md §4).
        m.invalidate();
    }
    kind
}

impl<B: GridTieBreaker, V: GridModeInverter, R: Relay> IslandDevices<B, V, R> {
    /// The breaker, the inverter and the load relays (in the load table's order).
    ///
    /// # Errors
    /// [`IslandDeviceError`] for a zero maximum age or more than [`MAX_ISLAND_RELAYS`] relays.
    pub fn new(
        breaker: B,
        inverter: V,
        relays: Vec<R>,
        config: IslandDeviceConfig,
    ) -> Result<Self, IslandDeviceError> {
        for (name, age) in [
            ("breaker_max_age", config.breaker_max_age),
            ("inverter_max_age", config.inverter_max_age),
            ("relay_max_age", config.relay_max_age),
        ] {
            if age == Millis::ZERO {
                return Err(IslandDeviceError::ZeroMaxAge(name));
            }
        }
        if relays.len() > MAX_ISLAND_RELAYS {
            return Err(IslandDeviceError::TooManyRelays(relays.len()));
        }
        Ok(Self {
            breaker,
            inverter,
            relays,
            readbacks: IslandReadbacks {
                breaker: Measurement::invalid(GridTie::Open, config.breaker_max_age),
                inverter: Measurement::invalid(NO_READING, config.inverter_max_age),
                relays: Measurement::invalid(0, config.relay_max_age),
            },
            last_mode: None,
            last_relays: None,
        })
    }

    /// The read-backs.
    #[must_use]
    pub const fn readbacks(&self) -> &IslandReadbacks {
        &self.readbacks
    }

    /// How many load relays.
    #[must_use]
    pub fn relay_count(&self) -> usize {
        self.relays.len()
    }

    /// The breaker driver.
    pub fn breaker_mut(&mut self) -> &mut B {
        &mut self.breaker
    }

    /// The inverter driver.
    pub fn inverter_mut(&mut self) -> &mut V {
        &mut self.inverter
    }

    /// Read every device at `now`; returns the kinds of the failed reads (at most one per
    /// device, relays counted once).
    pub async fn read(&mut self, now: Millis) -> heapless::Vec<ErrorKind, 3> {
        let mut failed = heapless::Vec::new();
        match self.breaker.position().await {
            Ok(p) => self.readbacks.breaker.update(p, now),
            Err(e) => {
                let _ = failed.push(note(&mut self.readbacks.breaker, &e));
            }
        }
        match self.inverter.read().await {
            Ok(r) => self.readbacks.inverter.update(r, now),
            Err(e) => {
                let _ = failed.push(note(&mut self.readbacks.inverter, &e));
            }
        }
        let mut mask = 0_u16;
        let mut relay_error = None;
        for (i, r) in self.relays.iter_mut().enumerate() {
            match r.feedback().await {
                Ok(true) => mask |= bit(i),
                Ok(false) => {}
                Err(e) => {
                    relay_error.get_or_insert(e);
                }
            }
        }
        match relay_error {
            None => self.readbacks.relays.update(mask, now),
            Some(e) => {
                let _ = failed.push(note(&mut self.readbacks.relays, &e));
            }
        }
        failed
    }

    /// Overlay the read-backs on the snapshot: `grid.tie` (the breaker), `inverter.grid_mode`
    /// (grid-forming only when it reads grid-forming without a fault) and, where the inverter
    /// measures the grid side, `grid.voltage` / `grid.frequency`.
    pub fn fill_snapshot(&self, snapshot: &mut Snapshot, now: Millis) {
        snapshot.grid.tie = Some(self.readbacks.breaker);
        let inv = self.readbacks.inverter;
        let mode = match inv.last_value() {
            GridModeReading { mode: InverterGridMode::GridForming, fault: false, .. } => {
                GridMode::GridForming
            }
            GridModeReading { mode: InverterGridMode::GridForming | InverterGridMode::Off, .. }
            | GridModeReading { mode: InverterGridMode::GridFollowing, .. } => GridMode::GridFollowing,
        };
        let mut gm = Measurement::good(mode, inv.taken_at(), inv.max_age());
        if inv.value_at(now).is_none() {
            gm.invalidate();
        }
        snapshot.inverter.grid_mode = gm;
        if let Some(r) = inv.value_at(now) {
            if let Some(v) = r.grid_voltage {
                snapshot.grid.voltage = Measurement::good(v, inv.taken_at(), inv.max_age());
            }
            if let Some(f) = r.grid_frequency {
                snapshot.grid.frequency = Measurement::good(f, inv.taken_at(), inv.max_age());
            }
        }
    }

    /// Write one cycle's commands. With `stop` (an E-stop) a close is never written.
    pub async fn apply(&mut self, now: Millis, command: IslandCommand, stop: bool) -> IslandApplyReport {
        let mut report = IslandApplyReport::default();
        match command.breaker {
            Some(GridTie::Closed) if stop => report.close_refused = true,
            Some(GridTie::Closed) => match self.breaker.close().await {
                Ok(()) => report.breaker_written = Some(GridTie::Closed),
                Err(e) => report.fail(e.kind()),
            },
            Some(GridTie::Open) => match self.breaker.open().await {
                Ok(()) => report.breaker_written = Some(GridTie::Open),
                Err(e) => report.fail(e.kind()),
            },
            None => {}
        }
        let read_mode = self.readbacks.inverter.value_at(now).map(|r| r.mode);
        let mode_matches = matches!(
            (command.mode, read_mode),
            (GridModeCommand::Off, Some(InverterGridMode::Off))
                | (GridModeCommand::GridFollowing, Some(InverterGridMode::GridFollowing))
                | (
                    GridModeCommand::GridForming | GridModeCommand::Synchronise,
                    Some(InverterGridMode::GridForming)
                )
        );
        if self.last_mode != Some(command.mode) || !mode_matches {
            match self.inverter.set_mode(command.mode).await {
                Ok(()) => {
                    self.last_mode = Some(command.mode);
                    report.mode_written = Some(command.mode);
                }
                Err(e) => {
                    self.last_mode = None;
                    report.fail(e.kind());
                }
            }
        }
        let read = self.readbacks.relays.value_at(now);
        let mut all_written = true;
        for (i, r) in self.relays.iter_mut().enumerate() {
            let b = bit(i);
            let want = command.relays & b != 0;
            let last = self.last_relays.map(|m| m & b != 0);
            let fed = read.map(|m| m & b != 0);
            if last == Some(want) && fed == Some(want) {
                continue;
            }
            match r.set(want).await {
                Ok(()) => report.relays_written |= b,
                Err(e) => {
                    all_written = false;
                    report.fail(e.kind());
                }
            }
        }
        self.last_relays = all_written.then_some(command.relays);
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_angles_outside_the_circle_are_refused() {
        assert!(PhaseAngle::try_new(180.0).is_ok());
        assert_eq!(
            PhaseAngle::try_new(181.0).unwrap_err().to_string(),
            "phase difference = 181 must be within -180..=180 degrees"
        );
        assert!(PhaseAngle::try_new(f32::NAN).is_err());
    }
}
