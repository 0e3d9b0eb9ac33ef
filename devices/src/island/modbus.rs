//! Modbus drivers of the island devices, in the register layout of [`crate::modbus::io`]: a
//! command is one holding register written with function code 16, a contact is one bit of a
//! register ([`IoPoint`]), a measurement one 16-bit register with a scale.
//!
//! * [`ModbusBreaker`]: a command register written `open_value` to open and `close_value` to
//!   close (a single coil register 0/1 of a transfer switch, or a trip/close command register
//!   1/2 of a motorised breaker), the position from an auxiliary contact bit (set = closed).
//! * [`ModbusGridMode`]: the inverter's mode command register and mode read-back register with
//!   one value per mode ([`GridModeValues`]), an optional fault bit and optional measurement
//!   registers (bus voltage and frequency, grid side, phase difference, AC power).

use super::{
    GridModeCommand, GridModeInverter, GridModeReading, GridTieBreaker, InverterGridMode, PhaseAngle,
};
use crate::modbus::io::IoPoint;
use crate::modbus::{LinkError, ModbusException, RegisterAddress, RegisterClient, RegisterKind};
use crate::traits::{DeviceError, ErrorKind};
use ems_core::snapshot::GridTie;
use ems_core::{Hertz, Volts, Watts};

/// An island Modbus request failed; the two Modbus failure levels stay apart.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IslandModbusError {
    /// The link failed: [`ErrorKind::Timeout`] or [`ErrorKind::Comm`].
    #[error("register {address}: {source}")]
    Link {
        /// The register.
        address: RegisterAddress,
        /// What failed.
        source: LinkError,
    },
    /// The device refused: [`ErrorKind::Refused`].
    #[error("register {address}: {exception}")]
    Exception {
        /// The register.
        address: RegisterAddress,
        /// The exception.
        exception: ModbusException,
    },
    /// A value that maps to no mode, or a measurement that is no quantity:
    /// [`ErrorKind::Decode`].
    #[error("register {address}: {what} = {value} is not valid")]
    Decode {
        /// The register.
        address: RegisterAddress,
        /// Which field.
        what: &'static str,
        /// The raw value.
        value: u16,
    },
}

impl DeviceError for IslandModbusError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Link { source: LinkError::Timeout(_), .. } => ErrorKind::Timeout,
            Self::Link { .. } => ErrorKind::Comm,
            Self::Exception { .. } => ErrorKind::Refused,
            Self::Decode { .. } => ErrorKind::Decode,
        }
    }

    fn exception_code(&self) -> Option<u8> {
        match self {
            Self::Exception { exception, .. } => Some(exception.code()),
            Self::Link { .. } | Self::Decode { .. } => None,
        }
    }
}

async fn read_word<C: RegisterClient>(
    client: &mut C,
    kind: RegisterKind,
    address: RegisterAddress,
) -> Result<u16, IslandModbusError> {
    match client.read(kind, address, 1).await {
        Err(source) => Err(IslandModbusError::Link { address, source }),
        Ok(Err(exception)) => Err(IslandModbusError::Exception { address, exception }),
        Ok(Ok(v)) => v.first().copied().ok_or_else(|| IslandModbusError::Link {
            address,
            source: LinkError::Protocol("empty answer to a one-register read".to_owned()),
        }),
    }
}

async fn write_word<C: RegisterClient>(
    client: &mut C,
    address: RegisterAddress,
    value: u16,
) -> Result<(), IslandModbusError> {
    match client.write(address, &[value]).await {
        Err(source) => Err(IslandModbusError::Link { address, source }),
        Ok(Err(exception)) => Err(IslandModbusError::Exception { address, exception }),
        Ok(Ok(())) => Ok(()),
    }
}

async fn read_bit<C: RegisterClient>(client: &mut C, point: IoPoint) -> Result<bool, IslandModbusError> {
    let w = read_word(client, point.kind, point.address).await?;
    Ok(w & (1 << point.bit) != 0)
}

/// A grid-tie breaker on a Modbus I/O module or breaker controller.
#[derive(Debug)]
pub struct ModbusBreaker<C> {
    client: C,
    command: RegisterAddress,
    open_value: u16,
    close_value: u16,
    position: IoPoint,
}

impl<C: RegisterClient> ModbusBreaker<C> {
    /// A breaker operated through the holding register `command` (`open_value` opens,
    /// `close_value` closes) whose auxiliary contact is `position` (set = closed).
    pub const fn new(
        client: C,
        command: RegisterAddress,
        open_value: u16,
        close_value: u16,
        position: IoPoint,
    ) -> Self {
        Self { client, command, open_value, close_value, position }
    }

    /// The register image or connection (tests).
    pub fn client_mut(&mut self) -> &mut C {
        &mut self.client
    }
}

impl<C: RegisterClient> GridTieBreaker for ModbusBreaker<C> {
    type Error = IslandModbusError;

    async fn position(&mut self) -> Result<GridTie, IslandModbusError> {
        let closed = read_bit(&mut self.client, self.position).await?;
        Ok(if closed { GridTie::Closed } else { GridTie::Open })
    }

    async fn open(&mut self) -> Result<(), IslandModbusError> {
        write_word(&mut self.client, self.command, self.open_value).await
    }

    async fn close(&mut self) -> Result<(), IslandModbusError> {
        write_word(&mut self.client, self.command, self.close_value).await
    }
}

/// One 16-bit measurement register: value = raw × `scale` (raw read as `i16` when `signed`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScaledRegister {
    /// Holding or input table.
    pub table: RegisterKind,
    /// The register, 0-based.
    pub address: RegisterAddress,
    /// Two's complement.
    pub signed: bool,
    /// Multiplier (e.g. 0.1 for a register in 0.1 V, 0.01 for centi-hertz).
    pub scale: f32,
}

impl ScaledRegister {
    async fn read<C: RegisterClient>(&self, client: &mut C) -> Result<(f32, u16), IslandModbusError> {
        let raw = read_word(client, self.table, self.address).await?;
        let v = if self.signed { f32::from(i16::from_ne_bytes(raw.to_ne_bytes())) } else { f32::from(raw) };
        Ok((v * self.scale, raw))
    }
}

/// The value of each mode in the command and read-back registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GridModeValues {
    /// Off.
    pub off: u16,
    /// Grid-following.
    pub grid_following: u16,
    /// Grid-forming.
    pub grid_forming: u16,
    /// Synchronise (reads back as this value or as `grid_forming`).
    pub synchronise: u16,
}

impl Default for GridModeValues {
    /// 0 off, 1 grid-following, 2 grid-forming, 3 synchronise.
    fn default() -> Self {
        Self { off: 0, grid_following: 1, grid_forming: 2, synchronise: 3 }
    }
}

/// Where an inverter keeps its grid mode and island measurements.
#[derive(Debug, Clone, PartialEq)]
pub struct GridModeRegisters {
    /// The mode command (holding register).
    pub command: RegisterAddress,
    /// The mode read-back.
    pub readback: (RegisterKind, RegisterAddress),
    /// The mode values.
    pub values: GridModeValues,
    /// A fault bit (set = faulted).
    pub fault: Option<IoPoint>,
    /// Island bus voltage, V.
    pub bus_voltage: Option<ScaledRegister>,
    /// Island bus frequency, Hz (0 reads as a dead bus).
    pub bus_frequency: Option<ScaledRegister>,
    /// Grid-side voltage, V.
    pub grid_voltage: Option<ScaledRegister>,
    /// Grid-side frequency, Hz (0 reads as a dead grid).
    pub grid_frequency: Option<ScaledRegister>,
    /// Bus minus grid phase, degrees (signed).
    pub phase_difference: Option<ScaledRegister>,
    /// AC power, W, `+` discharge (signed).
    pub ac_power: Option<ScaledRegister>,
}

impl GridModeRegisters {
    /// Command at `command`, read-back at `readback`, default values, no optional registers.
    #[must_use]
    pub fn new(command: RegisterAddress, readback: (RegisterKind, RegisterAddress)) -> Self {
        Self {
            command,
            readback,
            values: GridModeValues::default(),
            fault: None,
            bus_voltage: None,
            bus_frequency: None,
            grid_voltage: None,
            grid_frequency: None,
            phase_difference: None,
            ac_power: None,
        }
    }
}

/// An inverter's grid-mode control over Modbus.
#[derive(Debug)]
pub struct ModbusGridMode<C> {
    client: C,
    registers: GridModeRegisters,
}

impl<C: RegisterClient> ModbusGridMode<C> {
    /// The registers `registers` over `client`.
    pub const fn new(client: C, registers: GridModeRegisters) -> Self {
        Self { client, registers }
    }

    /// The register image or connection (tests).
    pub fn client_mut(&mut self) -> &mut C {
        &mut self.client
    }

    async fn volts(
        &mut self,
        r: Option<ScaledRegister>,
        what: &'static str,
    ) -> Result<Option<Volts>, IslandModbusError> {
        let Some(r) = r else { return Ok(None) };
        let (v, raw) = r.read(&mut self.client).await?;
        Volts::try_new(v).map(Some).map_err(|_| IslandModbusError::Decode {
            address: r.address,
            what,
            value: raw,
        })
    }

    async fn hertz(
        &mut self,
        r: Option<ScaledRegister>,
        what: &'static str,
    ) -> Result<Option<Hertz>, IslandModbusError> {
        let Some(r) = r else { return Ok(None) };
        let (v, raw) = r.read(&mut self.client).await?;
        if v == 0.0 {
            return Ok(None);
        }
        Hertz::try_new(v).map(Some).map_err(|_| IslandModbusError::Decode {
            address: r.address,
            what,
            value: raw,
        })
    }
}

impl<C: RegisterClient> GridModeInverter for ModbusGridMode<C> {
    type Error = IslandModbusError;

    async fn read(&mut self) -> Result<GridModeReading, IslandModbusError> {
        let regs = self.registers.clone();
        let (kind, address) = regs.readback;
        let raw = read_word(&mut self.client, kind, address).await?;
        let v = regs.values;
        let mode = if raw == v.off {
            InverterGridMode::Off
        } else if raw == v.grid_following {
            InverterGridMode::GridFollowing
        } else if raw == v.grid_forming || raw == v.synchronise {
            InverterGridMode::GridForming
        } else {
            return Err(IslandModbusError::Decode { address, what: "grid mode", value: raw });
        };
        let fault = match regs.fault {
            Some(p) => read_bit(&mut self.client, p).await?,
            None => false,
        };
        let bus_voltage = self.volts(regs.bus_voltage, "bus voltage").await?;
        let bus_frequency = self.hertz(regs.bus_frequency, "bus frequency").await?;
        let grid_voltage = self.volts(regs.grid_voltage, "grid voltage").await?;
        let grid_frequency = self.hertz(regs.grid_frequency, "grid frequency").await?;
        let phase_difference = match regs.phase_difference {
            Some(r) => {
                let (d, raw) = r.read(&mut self.client).await?;
                Some(PhaseAngle::try_new(d).map_err(|_| IslandModbusError::Decode {
                    address: r.address,
                    what: "phase difference",
                    value: raw,
                })?)
            }
            None => None,
        };
        let ac_power = match regs.ac_power {
            Some(r) => {
                let (p, raw) = r.read(&mut self.client).await?;
                Some(Watts::try_new(p).map_err(|_| IslandModbusError::Decode {
                    address: r.address,
                    what: "AC power",
                    value: raw,
                })?)
            }
            None => None,
        };
        Ok(GridModeReading {
            mode,
            fault,
            bus_voltage,
            bus_frequency,
            grid_voltage,
            grid_frequency,
            phase_difference,
            ac_power,
            available: None,
        })
    }

    async fn set_mode(&mut self, mode: GridModeCommand) -> Result<(), IslandModbusError> {
        let v = self.registers.values;
        let value = match mode {
            GridModeCommand::Off => v.off,
            GridModeCommand::GridFollowing => v.grid_following,
            GridModeCommand::GridForming => v.grid_forming,
            GridModeCommand::Synchronise => v.synchronise,
        };
        write_word(&mut self.client, self.registers.command, value).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modbus::MemoryRegisters;

    fn block_on<F: core::future::Future>(f: F) -> F::Output {
        pollster::block_on(f)
    }

    #[test]
    fn breaker_writes_its_command_values_and_reads_its_contact() {
        let mut m = MemoryRegisters::default();
        m.put(10, &[0]);
        m.allow_write(10, 1);
        m.input.insert(20, 0b100);
        let pos = IoPoint::new(RegisterKind::Input, RegisterAddress(20), 2).unwrap();
        let mut b = ModbusBreaker::new(m, RegisterAddress(10), 1, 2, pos);
        assert_eq!(block_on(b.position()).unwrap(), GridTie::Closed);
        block_on(b.open()).unwrap();
        assert_eq!(b.client.holding.get(&10), Some(&1));
        block_on(b.close()).unwrap();
        assert_eq!(b.client.holding.get(&10), Some(&2));
        b.client.input.insert(20, 0);
        assert_eq!(block_on(b.position()).unwrap(), GridTie::Open);
        let mut bad = ModbusBreaker::new(MemoryRegisters::default(), RegisterAddress(10), 1, 2, pos);
        assert_eq!(block_on(bad.open()).unwrap_err().kind(), ErrorKind::Refused);
    }

    #[test]
    fn grid_mode_maps_values_and_refuses_unknown_ones() {
        let mut m = MemoryRegisters::default();
        m.put(100, &[0, 2, 2301, 5000, 0xFFF6]);
        m.allow_write(100, 1);
        let mut regs =
            GridModeRegisters::new(RegisterAddress(100), (RegisterKind::Holding, RegisterAddress(101)));
        regs.bus_voltage = Some(ScaledRegister {
            table: RegisterKind::Holding,
            address: RegisterAddress(102),
            signed: false,
            scale: 0.1,
        });
        regs.bus_frequency = Some(ScaledRegister {
            table: RegisterKind::Holding,
            address: RegisterAddress(103),
            signed: false,
            scale: 0.01,
        });
        regs.phase_difference = Some(ScaledRegister {
            table: RegisterKind::Holding,
            address: RegisterAddress(104),
            signed: true,
            scale: 1.0,
        });
        let mut g = ModbusGridMode::new(m, regs);
        let r = block_on(g.read()).unwrap();
        assert_eq!(r.mode, InverterGridMode::GridForming);
        assert!((r.bus_voltage.unwrap().get() - 230.1).abs() < 0.01);
        assert!((r.bus_frequency.unwrap().get() - 50.0).abs() < 0.001);
        assert_eq!(r.phase_difference.unwrap().degrees(), -10.0);
        block_on(g.set_mode(GridModeCommand::Synchronise)).unwrap();
        assert_eq!(g.client.holding.get(&100), Some(&3));
        g.client.holding.insert(101, 9);
        let e = block_on(g.read()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Decode);
        assert_eq!(e.to_string(), "register 101: grid mode = 9 is not valid");
    }
}
