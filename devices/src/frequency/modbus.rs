//! [`ModbusFrequency`]: the grid frequency from one register of a meter or a dedicated
//! measurement device, decoded exactly as a register-map profile's `frequency` register is
//! ([`crate::modbus::profile::decode_register`]: value type, word order, scale, offset, unit,
//! `absent` codes).

use super::FrequencySource;
use crate::modbus::profile::{
    decode_register, DecodeError, Register, Sign, Signal, Value, ValueType, WordOrder,
};
use crate::modbus::{LinkError, ModbusException, RegisterAddress, RegisterClient, RegisterKind};
use crate::traits::{DeviceError, ErrorKind};
use ems_core::Hertz;

/// Where and how the frequency sits in the device's registers.
#[derive(Debug, Clone, PartialEq)]
pub struct FrequencyRegister {
    /// Holding (function 3) or input (function 4) registers.
    pub table: RegisterKind,
    /// The first register, 0-based (wire address).
    pub address: RegisterAddress,
    /// The value type (`u16`, `i16`, `u32`, `i32`, `f32`, …).
    pub value_type: ValueType,
    /// Word order of a multi-register value.
    pub word_order: WordOrder,
    /// Multiplier on the raw value (e.g. 0.01 for a register in centi-hertz).
    pub scale: f64,
    /// `"Hz"` or `"mHz"`.
    pub unit_factor: f64,
    /// Raw values that mean "not available".
    pub absent: Vec<i64>,
}

impl FrequencyRegister {
    /// A register of `value_type` at `address` in `table`, scale 1, Hz, big word order.
    #[must_use]
    pub fn new(table: RegisterKind, address: RegisterAddress, value_type: ValueType) -> Self {
        Self {
            table,
            address,
            value_type,
            word_order: WordOrder::Big,
            scale: 1.0,
            unit_factor: 1.0,
            absent: Vec::new(),
        }
    }

    fn as_profile_register(&self) -> Register {
        Register {
            signal: Signal::Frequency,
            table: self.table,
            address: self.address,
            read: true,
            write: false,
            value_type: self.value_type,
            word_order: self.word_order,
            scale: self.scale,
            scale_register: None,
            offset: 0.0,
            unit: "Hz",
            unit_factor: self.unit_factor,
            sign: Sign::Normal,
            enum_map: Vec::new(),
            bits: Vec::new(),
            absent: self.absent.clone(),
            line: 0,
        }
    }
}

/// An error of [`ModbusFrequency`]; the two Modbus failure levels stay apart.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModbusFrequencyError {
    /// The link failed: [`ErrorKind::Timeout`] or [`ErrorKind::Comm`].
    #[error("{0}")]
    Link(LinkError),
    /// The device answered with an exception: [`ErrorKind::Refused`].
    #[error("frequency register {address}: {exception}")]
    Exception {
        /// The register.
        address: RegisterAddress,
        /// The exception.
        exception: ModbusException,
    },
    /// The words cannot be decoded: [`ErrorKind::Decode`].
    #[error("{0}")]
    Decode(DecodeError),
    /// The register holds its "not available" code: [`ErrorKind::Decode`].
    #[error("frequency register {0}: not available")]
    Absent(RegisterAddress),
    /// The decoded value is no frequency (negative, non-finite): [`ErrorKind::OutOfRange`].
    #[error("frequency register {address}: {value} is not a frequency")]
    OutOfRange {
        /// The register.
        address: RegisterAddress,
        /// The decoded value.
        value: f64,
    },
}

impl DeviceError for ModbusFrequencyError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Link(LinkError::Timeout(_)) => ErrorKind::Timeout,
            Self::Link(LinkError::Disconnected(_) | LinkError::Io(_) | LinkError::Protocol(_)) => {
                ErrorKind::Comm
            }
            Self::Exception { .. } => ErrorKind::Refused,
            Self::Decode(_) | Self::Absent(_) => ErrorKind::Decode,
            Self::OutOfRange { .. } => ErrorKind::OutOfRange,
        }
    }

    fn exception_code(&self) -> Option<u8> {
        match self {
            Self::Exception { exception, .. } => Some(exception.code()),
            _ => None,
        }
    }
}

/// The frequency register of a device over any [`RegisterClient`] (the supervised TCP/RTU
/// clients of [`crate::modbus::transport`], or a [`crate::modbus::MemoryRegisters`] image). One
/// read request per call: on a meter also read by the 1 s cycle, use a second connection (or
/// unit) so the fast path does not queue behind the meter's whole block.
#[derive(Debug)]
pub struct ModbusFrequency<C> {
    client: C,
    register: FrequencyRegister,
    decoded: Register,
}

impl<C: RegisterClient> ModbusFrequency<C> {
    /// The register `register` over `client`.
    pub fn new(client: C, register: FrequencyRegister) -> Self {
        let decoded = register.as_profile_register();
        Self { client, register, decoded }
    }

    /// The register read.
    #[must_use]
    pub const fn register(&self) -> &FrequencyRegister {
        &self.register
    }

    /// The client.
    pub fn client_mut(&mut self) -> &mut C {
        &mut self.client
    }
}

impl<C: RegisterClient> FrequencySource for ModbusFrequency<C> {
    type Error = ModbusFrequencyError;

    async fn read(&mut self) -> Result<Hertz, ModbusFrequencyError> {
        let r = &self.register;
        let words = self
            .client
            .read(r.table, r.address, r.value_type.words())
            .await
            .map_err(ModbusFrequencyError::Link)?
            .map_err(|exception| ModbusFrequencyError::Exception { address: r.address, exception })?;
        match decode_register(&self.decoded, &words, None).map_err(ModbusFrequencyError::Decode)? {
            Some(Value::Number(v)) => {
                #[allow(clippy::cast_possible_truncation)] // a frequency fits f32; range checked by try_new
                let hz = v as f32;
                Hertz::try_new(hz)
                    .map_err(|_| ModbusFrequencyError::OutOfRange { address: r.address, value: v })
            }
            Some(_) | None => Err(ModbusFrequencyError::Absent(r.address)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modbus::MemoryRegisters;

    fn source(words: &[(u16, u16)], reg: FrequencyRegister) -> ModbusFrequency<MemoryRegisters> {
        let mut m = MemoryRegisters::default();
        for (a, w) in words {
            m.input.insert(*a, *w);
        }
        ModbusFrequency::new(m, reg)
    }

    #[test]
    fn centi_hertz_u16_and_f32_little_word_order_decode() {
        let mut reg = FrequencyRegister::new(RegisterKind::Input, RegisterAddress(10), ValueType::U16);
        reg.scale = 0.01;
        let mut s = source(&[(10, 4_987)], reg);
        let f = pollster::block_on(s.read()).unwrap();
        assert!((f.get() - 49.87).abs() < 1e-4, "{f}");

        let bits = 49.95f32.to_bits();
        let (hi, lo) = (u16::try_from(bits >> 16).unwrap(), u16::try_from(bits & 0xFFFF).unwrap());
        let mut reg = FrequencyRegister::new(RegisterKind::Input, RegisterAddress(20), ValueType::F32);
        reg.word_order = WordOrder::Little;
        let mut s = source(&[(20, lo), (21, hi)], reg);
        assert!((pollster::block_on(s.read()).unwrap().get() - 49.95).abs() < 1e-5);
    }

    #[test]
    fn absent_code_missing_register_and_negative_value_are_errors_of_the_right_kind() {
        let mut reg = FrequencyRegister::new(RegisterKind::Input, RegisterAddress(10), ValueType::U16);
        reg.absent = vec![0xFFFF];
        let mut s = source(&[(10, 0xFFFF)], reg.clone());
        assert_eq!(pollster::block_on(s.read()).unwrap_err().kind(), ErrorKind::Decode);

        let mut s = source(&[], reg);
        let e = pollster::block_on(s.read()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Refused);
        assert_eq!(e.exception_code(), Some(2));

        let reg = FrequencyRegister::new(RegisterKind::Input, RegisterAddress(10), ValueType::I16);
        let mut s = source(&[(10, 0xFF00)], reg);
        let e = pollster::block_on(s.read()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutOfRange, "{e}");
        assert!(e.to_string().contains("-256"), "{e}");
    }
}
