//! Modbus: the one seam between the device drivers and `tokio-modbus`.
//!
//! Drivers (SunSpec, register-map profiles) talk to a [`RegisterClient`]; only
//! [`transport`] knows `tokio-modbus`. Every call keeps the two levels of failure apart, as
//! `tokio-modbus` does: the outer `Result` is "the link failed" ([`LinkError`]: timeout, I/O,
//! disconnected), the inner one is "the device answered with an exception"
//! ([`ModbusException`]). A dead link and a refused request call for different reactions (stale
//! signals and reconnect vs. a configuration or capability problem).
//!
//! * [`transport`]: TCP and RTU clients (supervised: timeouts, reconnect with backoff) and the
//!   read batcher (≤ 125 registers a request, adjacent blocks merged).
//! * [`sunspec`]: SunSpec discovery, model definitions, decoding and controls.
//! * [`profile`]: TOML register-map profiles for non-SunSpec devices and the generic driver.

use core::fmt;

pub mod io;
pub mod profile;
pub mod sunspec;
pub mod transport;

/// A register address as it goes on the wire: **0-based** (the PDU address). Vendor documents
/// often print 1-based "register numbers" (40001 = holding register at address 0); convert
/// those with [`RegisterAddress::from_register_number`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RegisterAddress(pub u16);

impl RegisterAddress {
    /// From a 1-based holding-register number in the 4xxxx convention (40001 → 0). `None` if
    /// the number is not in 40001..=105536.
    #[must_use]
    pub fn from_register_number(n: u32) -> Option<Self> {
        n.checked_sub(40_001).and_then(|a| u16::try_from(a).ok()).map(Self)
    }

    /// The address `n` registers further on, if it does not wrap.
    #[must_use]
    pub fn offset(self, n: u16) -> Option<Self> {
        self.0.checked_add(n).map(Self)
    }
}

impl fmt::Display for RegisterAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The maximum number of registers one read request may ask for (Modbus application protocol
/// v1.1b3, function codes 3 and 4).
pub const MAX_READ_REGISTERS: u16 = 125;
/// The maximum number of registers one write-multiple request may carry (function code 16).
pub const MAX_WRITE_REGISTERS: u16 = 123;

/// A Modbus exception response: the device understood the request and refused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModbusException {
    /// 0x01 illegal function.
    IllegalFunction,
    /// 0x02 illegal data address.
    IllegalDataAddress,
    /// 0x03 illegal data value.
    IllegalDataValue,
    /// 0x04 server device failure.
    ServerDeviceFailure,
    /// 0x05 acknowledge (accepted, long operation).
    Acknowledge,
    /// 0x06 server device busy.
    ServerDeviceBusy,
    /// 0x0A gateway path unavailable.
    GatewayPathUnavailable,
    /// 0x0B gateway target failed to respond.
    GatewayTargetFailedToRespond,
    /// Any other code.
    Other(u8),
}

impl ModbusException {
    /// The exception code on the wire.
    #[must_use]
    pub const fn code(self) -> u8 {
        match self {
            Self::IllegalFunction => 0x01,
            Self::IllegalDataAddress => 0x02,
            Self::IllegalDataValue => 0x03,
            Self::ServerDeviceFailure => 0x04,
            Self::Acknowledge => 0x05,
            Self::ServerDeviceBusy => 0x06,
            Self::GatewayPathUnavailable => 0x0A,
            Self::GatewayTargetFailedToRespond => 0x0B,
            Self::Other(c) => c,
        }
    }

    /// From the code on the wire.
    #[must_use]
    pub const fn from_code(code: u8) -> Self {
        match code {
            0x01 => Self::IllegalFunction,
            0x02 => Self::IllegalDataAddress,
            0x03 => Self::IllegalDataValue,
            0x04 => Self::ServerDeviceFailure,
            0x05 => Self::Acknowledge,
            0x06 => Self::ServerDeviceBusy,
            0x0A => Self::GatewayPathUnavailable,
            0x0B => Self::GatewayTargetFailedToRespond,
            c => Self::Other(c),
        }
    }
}

impl fmt::Display for ModbusException {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::IllegalFunction => "illegal function",
            Self::IllegalDataAddress => "illegal data address",
            Self::IllegalDataValue => "illegal data value",
            Self::ServerDeviceFailure => "server device failure",
            Self::Acknowledge => "acknowledge",
            Self::ServerDeviceBusy => "server device busy",
            Self::GatewayPathUnavailable => "gateway path unavailable",
            Self::GatewayTargetFailedToRespond => "gateway target failed to respond",
            Self::Other(_) => "exception",
        };
        write!(f, "Modbus exception 0x{:02X} ({name})", self.code())
    }
}

/// The link failed: no answer from the device at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// No response within the timeout.
    #[error("timeout after {0} ms")]
    Timeout(u64),
    /// Not connected (connecting failed or the connection dropped; reconnect is under way).
    #[error("not connected: {0}")]
    Disconnected(String),
    /// An I/O or framing error.
    #[error("I/O error: {0}")]
    Io(String),
    /// The answer did not match the request (wrong length, wrong transaction).
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// Which register table a read goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RegisterKind {
    /// Holding registers (function code 3 to read, 6/16 to write).
    Holding,
    /// Input registers (function code 4, read-only).
    Input,
}

/// The seam: what a driver needs from a Modbus connection to one unit. Implemented by the
/// `tokio-modbus` TCP/RTU clients in [`transport`] and by in-memory register images in tests.
#[allow(async_fn_in_trait)]
pub trait RegisterClient {
    /// Read `count` (1..=125) registers starting at `address`.
    async fn read(
        &mut self,
        kind: RegisterKind,
        address: RegisterAddress,
        count: u16,
    ) -> Result<Result<Vec<u16>, ModbusException>, LinkError>;

    /// Write `values` (1..=123 registers) starting at `address` (function code 16).
    async fn write(
        &mut self,
        address: RegisterAddress,
        values: &[u16],
    ) -> Result<Result<(), ModbusException>, LinkError>;

    /// Read one coil (function code 1). The default answers `IllegalFunction` without a
    /// request: a client without coil support behaves like a device without coils.
    async fn read_coil(
        &mut self,
        address: RegisterAddress,
    ) -> Result<Result<bool, ModbusException>, LinkError> {
        let _ = address;
        Ok(Err(ModbusException::IllegalFunction))
    }

    /// Write one coil (function code 5). The default answers `IllegalFunction`, as
    /// [`Self::read_coil`].
    async fn write_coil(
        &mut self,
        address: RegisterAddress,
        on: bool,
    ) -> Result<Result<(), ModbusException>, LinkError> {
        let _ = (address, on);
        Ok(Err(ModbusException::IllegalFunction))
    }
}

/// An in-memory register image implementing [`RegisterClient`], for tests and for the
/// simulated SunSpec devices: unmapped addresses answer `IllegalDataAddress`, as real devices do.
#[derive(Debug, Clone, Default)]
pub struct MemoryRegisters {
    /// The holding registers that exist.
    pub holding: std::collections::BTreeMap<u16, u16>,
    /// The input registers that exist.
    pub input: std::collections::BTreeMap<u16, u16>,
    /// Holding registers that accept writes (a write anywhere else answers `IllegalDataAddress`).
    pub writable: std::collections::BTreeSet<u16>,
    /// Requests served so far (reads and writes).
    pub requests: u64,
    /// The coils that exist (all writable).
    pub coils: std::collections::BTreeMap<u16, bool>,
}

impl MemoryRegisters {
    /// Put `values` into the holding table from `address` on (read-only).
    pub fn put(&mut self, address: u16, values: &[u16]) {
        for (i, v) in values.iter().enumerate() {
            if let Some(a) = u16::try_from(i).ok().and_then(|i| address.checked_add(i)) {
                self.holding.insert(a, *v);
            }
        }
    }

    /// Mark `count` holding registers from `address` on as writable.
    pub fn allow_write(&mut self, address: u16, count: u16) {
        for a in address..address.saturating_add(count) {
            self.writable.insert(a);
        }
    }
}

impl RegisterClient for MemoryRegisters {
    async fn read(
        &mut self,
        kind: RegisterKind,
        address: RegisterAddress,
        count: u16,
    ) -> Result<Result<Vec<u16>, ModbusException>, LinkError> {
        self.requests += 1;
        if count == 0 || count > MAX_READ_REGISTERS {
            return Ok(Err(ModbusException::IllegalDataValue));
        }
        let table = match kind {
            RegisterKind::Holding => &self.holding,
            RegisterKind::Input => &self.input,
        };
        let mut out = Vec::with_capacity(usize::from(count));
        for i in 0..count {
            match address.0.checked_add(i).and_then(|a| table.get(&a)) {
                Some(v) => out.push(*v),
                None => return Ok(Err(ModbusException::IllegalDataAddress)),
            }
        }
        Ok(Ok(out))
    }

    async fn write(
        &mut self,
        address: RegisterAddress,
        values: &[u16],
    ) -> Result<Result<(), ModbusException>, LinkError> {
        self.requests += 1;
        if values.is_empty() || values.len() > usize::from(MAX_WRITE_REGISTERS) {
            return Ok(Err(ModbusException::IllegalDataValue));
        }
        let mut addrs = Vec::with_capacity(values.len());
        for i in 0..values.len() {
            let a = u16::try_from(i).ok().and_then(|i| address.0.checked_add(i));
            match a {
                Some(a) if self.writable.contains(&a) => addrs.push(a),
                _ => return Ok(Err(ModbusException::IllegalDataAddress)),
            }
        }
        for (a, v) in addrs.into_iter().zip(values) {
            self.holding.insert(a, *v);
        }
        Ok(Ok(()))
    }

    async fn read_coil(
        &mut self,
        address: RegisterAddress,
    ) -> Result<Result<bool, ModbusException>, LinkError> {
        self.requests += 1;
        Ok(self.coils.get(&address.0).copied().ok_or(ModbusException::IllegalDataAddress))
    }

    async fn write_coil(
        &mut self,
        address: RegisterAddress,
        on: bool,
    ) -> Result<Result<(), ModbusException>, LinkError> {
        self.requests += 1;
        match self.coils.get_mut(&address.0) {
            Some(c) => {
                *c = on;
                Ok(Ok(()))
            }
            None => Ok(Err(ModbusException::IllegalDataAddress)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_numbers_convert_to_zero_based_addresses() {
        assert_eq!(RegisterAddress::from_register_number(40_001), Some(RegisterAddress(0)));
        assert_eq!(RegisterAddress::from_register_number(40_000), None);
        assert_eq!(ModbusException::from_code(2), ModbusException::IllegalDataAddress);
        assert_eq!(
            ModbusException::IllegalDataAddress.to_string(),
            "Modbus exception 0x02 (illegal data address)"
        );
    }

    #[test]
    fn memory_registers_answer_like_a_device() {
        let mut m = MemoryRegisters::default();
        m.put(100, &[1, 2, 3]);
        m.allow_write(101, 1);
        let r = pollster::block_on(m.read(RegisterKind::Holding, RegisterAddress(100), 3));
        assert_eq!(r, Ok(Ok(vec![1, 2, 3])));
        let r = pollster::block_on(m.read(RegisterKind::Holding, RegisterAddress(102), 2));
        assert_eq!(r, Ok(Err(ModbusException::IllegalDataAddress)));
        assert_eq!(pollster::block_on(m.write(RegisterAddress(101), &[9])), Ok(Ok(())));
        assert_eq!(
            pollster::block_on(m.write(RegisterAddress(100), &[9])),
            Ok(Err(ModbusException::IllegalDataAddress))
        );
        assert_eq!(m.holding.get(&101), Some(&9));
    }
}
