//! Phoenix Contact EM-CP-PP-ETH wallbox controller over Modbus TCP, as an [`Evse`].
//!
//! **Source of the register map:** evcc `charger/phoenix-em-eth.go` (github.com/evcc-io/evcc,
//! commit 0081e635b222b6b2695843edacadb8a83a1027a2, then MIT-licensed), which names: input
//! register 100 = IEC 61851 state as an ASCII letter in the low byte; input registers 114/116/118
//! = phase currents (u32, low word first, mA); 120 = active power (u32, low word first, × 10 as
//! evcc scales it); 128 = energy (u32, low word first, 0.01 kWh); holding register 300 = maximum
//! charging current (whole amperes, ≥ 6 A); coil 400 = charging enabled. Unit id 180 by default.
//! The Phoenix Contact document itself was not available offline; nothing else was added.
//!
//! **Unverified** (check at commissioning): the power scale (× 10 → W), that holding register
//! 300 reads back the applied value, and the meter registers (only with a meter attached to the
//! controller; without one this driver reports zero currents and power, and `SafeEvse` cannot
//! check the measured current).

use super::types::{DeciAmps, EvseCapabilities, EvseReading, EvseStatus, Phases};
use super::Evse;
use crate::modbus::{LinkError, ModbusException, RegisterAddress, RegisterClient, RegisterKind};
use crate::traits::{DeviceError, ErrorKind};
use ems_core::{Amps, WattHours, Watts};

/// Input register: IEC 61851 state letter (low byte).
pub const REG_STATUS: u16 = 100;
/// Input registers: phase currents L1, L2, L3 (u32 each, low word first, mA).
pub const REG_CURRENTS: [u16; 3] = [114, 116, 118];
/// Input register: active power (u32, low word first, raw × 10).
pub const REG_POWER: u16 = 120;
/// Input register: energy (u32, low word first, 0.01 kWh).
pub const REG_ENERGY: u16 = 128;
/// Holding register: maximum charging current in whole amperes.
pub const REG_MAX_CURRENT: u16 = 300;
/// Coil: charging enabled.
pub const COIL_ENABLE: u16 = 400;
/// The default Modbus unit id of the controller.
pub const DEFAULT_UNIT: u8 = 180;

/// The driver's error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoenixError {
    /// The link failed.
    #[error("EM-CP-PP-ETH link: {0}")]
    Link(#[from] LinkError),
    /// The controller refused.
    #[error("EM-CP-PP-ETH refused register {address}: {exception:?}")]
    Exception {
        /// Register or coil.
        address: u16,
        /// The exception.
        exception: ModbusException,
    },
    /// An answer that is no valid reading.
    #[error("EM-CP-PP-ETH register {address}: {what}")]
    Decode {
        /// Register.
        address: u16,
        /// What is wrong.
        what: String,
    },
    /// A limit the controller cannot take (between 0 and 6 A).
    #[error("EM-CP-PP-ETH cannot set {0}: 0 A or 6 A and more")]
    OutOfRange(DeciAmps),
    /// Phase switching is not supported.
    #[error("EM-CP-PP-ETH cannot switch phases")]
    NoPhaseSwitching,
}

impl DeviceError for PhoenixError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Link(LinkError::Timeout(_)) => ErrorKind::Timeout,
            Self::Link(_) => ErrorKind::Comm,
            Self::Exception { .. } | Self::NoPhaseSwitching => ErrorKind::Refused,
            Self::Decode { .. } => ErrorKind::Decode,
            Self::OutOfRange(_) => ErrorKind::OutOfRange,
        }
    }

    fn exception_code(&self) -> Option<u8> {
        match self {
            Self::Exception { exception, .. } => Some(exception.code()),
            _ => None,
        }
    }
}

/// The EM-CP-PP-ETH as an [`Evse`].
#[derive(Debug)]
pub struct PhoenixEmCpPpEth<C> {
    client: C,
    max_current: DeciAmps,
    phases: Phases,
    meter: bool,
    enabled: bool,
    limit: DeciAmps,
    session_start: Option<f64>,
}

impl<C: RegisterClient> PhoenixEmCpPpEth<C> {
    /// A driver over `client` (connected to the controller's unit). `max_current` is the
    /// installation's rating; `meter` whether a meter is attached to the controller.
    #[must_use]
    pub const fn new(client: C, max_current: DeciAmps, phases: Phases, meter: bool) -> Self {
        Self { client, max_current, phases, meter, enabled: true, limit: DeciAmps::ZERO, session_start: None }
    }

    /// The client (tests inspect the image through it).
    pub fn client_mut(&mut self) -> &mut C {
        &mut self.client
    }

    async fn input(&mut self, address: u16, count: u16) -> Result<Vec<u16>, PhoenixError> {
        match self.client.read(RegisterKind::Input, RegisterAddress(address), count).await? {
            Ok(v) => Ok(v),
            Err(exception) => Err(PhoenixError::Exception { address, exception }),
        }
    }

    async fn u32_low_first(&mut self, address: u16) -> Result<f64, PhoenixError> {
        let w = self.input(address, 2).await?;
        let (lo, hi) = match w.as_slice() {
            [lo, hi] => (*lo, *hi),
            _ => return Err(PhoenixError::Decode { address, what: "short answer".to_owned() }),
        };
        Ok(f64::from(u32::from(hi) << 16 | u32::from(lo)))
    }

    async fn status(&mut self) -> Result<EvseStatus, PhoenixError> {
        let w = self.input(REG_STATUS, 1).await?;
        let letter = w.first().map_or(0, |v| v & 0xFF);
        match u8::try_from(letter).unwrap_or(0) {
            b'A' => Ok(EvseStatus::Unplugged),
            b'B' => Ok(EvseStatus::Plugged),
            b'C' | b'D' => Ok(EvseStatus::Charging),
            b'E' | b'F' => Ok(EvseStatus::Fault),
            other => Err(PhoenixError::Decode {
                address: REG_STATUS,
                what: format!("status 0x{other:02X} is no IEC 61851 state"),
            }),
        }
    }
}

fn f32_of(v: f64) -> f32 {
    // Register values (u32 scaled) into unit newtypes that saturate to their physical range.
    #[allow(clippy::cast_possible_truncation)]
    let x = v as f32;
    x
}

impl<C: RegisterClient> Evse for PhoenixEmCpPpEth<C> {
    type Error = PhoenixError;

    fn capabilities(&self) -> EvseCapabilities {
        EvseCapabilities {
            min_current: DeciAmps::from_tenths(60).unwrap_or(DeciAmps::ZERO),
            max_current: self.max_current,
            phase_switching: false,
        }
    }

    async fn read(&mut self) -> Result<EvseReading, PhoenixError> {
        let status = self.status().await?;
        let enabled = match self.client.read_coil(RegisterAddress(COIL_ENABLE)).await? {
            Ok(b) => b,
            Err(exception) => return Err(PhoenixError::Exception { address: COIL_ENABLE, exception }),
        };
        let max = match self.client.read(RegisterKind::Holding, RegisterAddress(REG_MAX_CURRENT), 1).await? {
            Ok(v) => v.first().copied().unwrap_or(0),
            Err(exception) => return Err(PhoenixError::Exception { address: REG_MAX_CURRENT, exception }),
        };
        let applied = if enabled {
            DeciAmps::from_tenths(max.saturating_mul(10)).ok_or_else(|| PhoenixError::Decode {
                address: REG_MAX_CURRENT,
                what: format!("{max} A is not a current limit"),
            })?
        } else {
            DeciAmps::ZERO
        };
        let (mut current, mut power, mut energy) = ([Amps::ZERO; 3], Watts::ZERO, WattHours::ZERO);
        if self.meter {
            for (slot, reg) in current.iter_mut().zip(REG_CURRENTS) {
                *slot = Amps::saturating(f32_of(self.u32_low_first(reg).await? / 1000.0));
            }
            power = Watts::saturating(f32_of(self.u32_low_first(REG_POWER).await? * 10.0));
            let total_wh = self.u32_low_first(REG_ENERGY).await? * 10.0;
            if status == EvseStatus::Unplugged {
                self.session_start = None;
            } else {
                let start = *self.session_start.get_or_insert(total_wh);
                energy = WattHours::saturating(f32_of((total_wh - start).max(0.0)));
            }
        }
        let phases =
            if current[1].get() > 0.5 || current[2].get() > 0.5 { Phases::Three } else { self.phases };
        Ok(EvseReading {
            status,
            phases,
            current,
            power,
            session_energy: energy,
            applied_limit: applied,
            enabled,
        })
    }

    async fn set_enabled(&mut self, enabled: bool) -> Result<(), PhoenixError> {
        self.enabled = enabled;
        let on = enabled && !self.limit.is_zero();
        match self.client.write_coil(RegisterAddress(COIL_ENABLE), on).await? {
            Ok(()) => Ok(()),
            Err(exception) => Err(PhoenixError::Exception { address: COIL_ENABLE, exception }),
        }
    }

    /// 0 A switches charging off (coil 400); 6 A and more is written as whole amperes (rounded
    /// down) to holding register 300 and switches charging on if enabled.
    async fn set_current_limit(&mut self, limit: DeciAmps) -> Result<(), PhoenixError> {
        if !limit.is_zero() && limit.tenths() < 60 {
            return Err(PhoenixError::OutOfRange(limit));
        }
        if !limit.is_zero() {
            let amps = limit.tenths() / 10;
            if let Err(exception) = self.client.write(RegisterAddress(REG_MAX_CURRENT), &[amps]).await? {
                return Err(PhoenixError::Exception { address: REG_MAX_CURRENT, exception });
            }
        }
        self.limit = limit;
        let enabled = self.enabled;
        self.set_enabled(enabled).await
    }

    async fn set_phases(&mut self, phases: Phases) -> Result<(), PhoenixError> {
        if phases == self.phases {
            Ok(())
        } else {
            Err(PhoenixError::NoPhaseSwitching)
        }
    }
}
