//! Digital I/O over Modbus: contactor relays and the E-stop loop wired to a Modbus I/O module or
//! a PLC (a remote I/O coupler, a safety PLC's status image) instead of the gateway's own GPIO.
//!
//! The register layout is the common one of register-oriented I/O couplers:
//!
//! - a relay **coil** is one holding register, written `1` (energise) or `0` (de-energise) with
//!   function code 16;
//! - a **feedback** contact or the **E-stop loop** is one bit of a register ([`IoPoint`]: table,
//!   address, bit 0–15), read with function code 3 or 4.
//!
//! Both levels of failure stay apart as everywhere in the Modbus layer: a link failure is
//! [`ErrorKind::Timeout`]/[`ErrorKind::Comm`], an exception answer is [`ErrorKind::Refused`]. An
//! E-stop input that cannot be read is not "released": the device layer marks the reading stale
//! and the safety layer treats a stale E-stop as pressed (docs/SAFETY.md).
//!
//! The E-stop over Modbus is only as fast as its poll: [`ModbusEStop`] answers from its last
//! reading for `min_interval` (so the gateway's 1 ms E-stop watch between cycles does not flood
//! the bus) and reads the module again after that. The hard-wired E-stop chain must open the
//! contactors on its own; the EMS reacting to it is the second line (docs/SAFETY.md H33).

use std::time::{Duration, Instant};

use super::{LinkError, ModbusException, RegisterAddress, RegisterClient, RegisterKind};
use crate::estop::ActiveLevel;
use crate::traits::{DeviceError, EStopInput, ErrorKind, Relay};
use ems_core::snapshot::EStopInput as EStopState;

/// One bit of one register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IoPoint {
    /// Holding (FC 3) or input (FC 4) register.
    pub kind: RegisterKind,
    /// The register's 0-based address.
    pub address: RegisterAddress,
    /// The bit, 0 (least significant) to 15.
    pub bit: u8,
}

/// A bit number above 15.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("field 'bit' = {0} must be 0..=15")]
pub struct BitOutOfRange(pub u8);

impl IoPoint {
    /// A point; the bit must be 0–15.
    ///
    /// # Errors
    /// [`BitOutOfRange`] for a bit above 15.
    pub const fn new(kind: RegisterKind, address: RegisterAddress, bit: u8) -> Result<Self, BitOutOfRange> {
        if bit > 15 {
            return Err(BitOutOfRange(bit));
        }
        Ok(Self { kind, address, bit })
    }

    pub(crate) async fn read<C: RegisterClient>(&self, client: &mut C) -> Result<bool, IoError> {
        match client.read(self.kind, self.address, 1).await {
            Err(source) => Err(IoError::Link { address: self.address, source }),
            Ok(Err(exception)) => Err(IoError::Exception { address: self.address, exception }),
            Ok(Ok(v)) => match v.first() {
                Some(word) => Ok(word & (1 << self.bit) != 0),
                None => Err(IoError::Link {
                    address: self.address,
                    source: LinkError::Protocol("empty answer to a one-register read".to_owned()),
                }),
            },
        }
    }
}

/// A Modbus I/O request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IoError {
    /// No usable answer.
    #[error("I/O register {address}: {source}")]
    Link {
        /// The register.
        address: RegisterAddress,
        /// What failed.
        source: LinkError,
    },
    /// The module refused.
    #[error("I/O register {address}: {exception}")]
    Exception {
        /// The register.
        address: RegisterAddress,
        /// The exception code.
        exception: ModbusException,
    },
}

impl DeviceError for IoError {
    fn exception_code(&self) -> Option<u8> {
        match self {
            Self::Exception { exception, .. } => Some(exception.code()),
            Self::Link { .. } => None,
        }
    }

    fn kind(&self) -> ErrorKind {
        match self {
            Self::Link { source: LinkError::Timeout(_), .. } => ErrorKind::Timeout,
            Self::Link { .. } => ErrorKind::Comm,
            Self::Exception { .. } => ErrorKind::Refused,
        }
    }
}

/// A relay on a Modbus I/O module: coil register and feedback bit (see the module docs).
#[derive(Debug)]
pub struct ModbusRelay<C> {
    client: C,
    coil: RegisterAddress,
    feedback: IoPoint,
}

impl<C: RegisterClient> ModbusRelay<C> {
    /// A relay whose coil is the holding register `coil` and whose auxiliary contact is read
    /// at `feedback` (set = main contact closed).
    pub const fn new(client: C, coil: RegisterAddress, feedback: IoPoint) -> Self {
        Self { client, coil, feedback }
    }
}

impl<C: RegisterClient> Relay for ModbusRelay<C> {
    type Error = IoError;

    async fn set(&mut self, closed: bool) -> Result<(), IoError> {
        match self.client.write(self.coil, &[u16::from(closed)]).await {
            Err(source) => Err(IoError::Link { address: self.coil, source }),
            Ok(Err(exception)) => Err(IoError::Exception { address: self.coil, exception }),
            Ok(Ok(())) => Ok(()),
        }
    }

    async fn feedback(&mut self) -> Result<bool, IoError> {
        self.feedback.read(&mut self.client).await
    }
}

/// The E-stop loop on a Modbus I/O module (see the module docs for its latency).
#[derive(Debug)]
pub struct ModbusEStop<C> {
    client: C,
    input: IoPoint,
    active: ActiveLevel,
    min_interval: Duration,
    last: Option<(Instant, EStopState)>,
}

impl<C: RegisterClient> ModbusEStop<C> {
    /// An E-stop input at `input`; `active` is the bit level that means pressed (`Low` for a
    /// normally-closed loop). Reads closer together than `min_interval` return the last reading;
    /// a failed read is never cached.
    pub const fn new(client: C, input: IoPoint, active: ActiveLevel, min_interval: Duration) -> Self {
        Self { client, input, active, min_interval, last: None }
    }
}

impl<C: RegisterClient> EStopInput for ModbusEStop<C> {
    type Error = IoError;

    async fn read(&mut self) -> Result<EStopState, IoError> {
        if let Some((at, state)) = self.last {
            if at.elapsed() < self.min_interval {
                return Ok(state);
            }
        }
        let set = match self.input.read(&mut self.client).await {
            Ok(set) => set,
            Err(e) => {
                self.last = None;
                return Err(e);
            }
        };
        let pressed = match self.active {
            ActiveLevel::High => set,
            ActiveLevel::Low => !set,
        };
        let state = if pressed { EStopState::Pressed } else { EStopState::Released };
        self.last = Some((Instant::now(), state));
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modbus::MemoryRegisters;

    fn block_on<F: core::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    fn module() -> MemoryRegisters {
        let mut m = MemoryRegisters::default();
        m.put(0, &[0, 0]);
        m.allow_write(0, 2);
        m.input.insert(0, 0b101);
        m
    }

    #[test]
    fn relay_writes_its_coil_and_reads_its_feedback_bit() {
        let feedback = IoPoint::new(RegisterKind::Input, RegisterAddress(0), 2).unwrap();
        let mut r = ModbusRelay::new(module(), RegisterAddress(1), feedback);
        block_on(r.set(true)).unwrap();
        assert_eq!(r.client.holding.get(&1), Some(&1));
        assert!(block_on(r.feedback()).unwrap());
        block_on(r.set(false)).unwrap();
        assert_eq!(r.client.holding.get(&1), Some(&0));
        let missing = IoPoint::new(RegisterKind::Input, RegisterAddress(9), 0).unwrap();
        let mut r = ModbusRelay::new(module(), RegisterAddress(7), missing);
        let e = block_on(r.set(true)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Refused);
        assert!(e.to_string().contains("illegal data address"), "{e}");
        assert_eq!(block_on(r.feedback()).unwrap_err().kind(), ErrorKind::Refused);
    }

    #[test]
    fn estop_active_low_bit_and_cached_reads() {
        let input = IoPoint::new(RegisterKind::Input, RegisterAddress(0), 1).unwrap();
        let mut e = ModbusEStop::new(module(), input, ActiveLevel::Low, Duration::from_secs(3600));
        // Bit 1 of 0b101 is clear: the normally-closed loop is open → pressed.
        assert_eq!(block_on(e.read()).unwrap(), EStopState::Pressed);
        let served = e.client.requests;
        e.client.input.insert(0, 0b111);
        assert_eq!(block_on(e.read()).unwrap(), EStopState::Pressed, "answered from the cache");
        assert_eq!(e.client.requests, served);
        let mut e = ModbusEStop::new(module(), input, ActiveLevel::Low, Duration::ZERO);
        e.client.input.insert(0, 0b010);
        assert_eq!(block_on(e.read()).unwrap(), EStopState::Released);
        let high = IoPoint::new(RegisterKind::Input, RegisterAddress(0), 0).unwrap();
        let mut e = ModbusEStop::new(module(), high, ActiveLevel::High, Duration::ZERO);
        assert_eq!(block_on(e.read()).unwrap(), EStopState::Pressed);
    }

    #[test]
    fn bits_above_15_are_refused() {
        let e = IoPoint::new(RegisterKind::Holding, RegisterAddress(0), 16).unwrap_err();
        assert_eq!(e.to_string(), "field 'bit' = 16 must be 0..=15");
    }
}
