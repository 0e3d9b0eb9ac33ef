//! The generic driver: one [`ProfileDevice`] serves whichever device trait its profile is for.

use ems_core::snapshot::{BmsAlarms, InverterState};
use ems_core::units::UnitError;
use ems_core::{Amps, Celsius, Hertz, Millis, Percent, Volts, Watts};

use super::codec::{
    decode, encode, encode_enum, read_plan, DecodeError, EncodeError, ReadRequest, RegisterImage, Value,
    Values,
};
use super::{DeviceKind, EnumValue, Profile, Register, Signal};
use crate::modbus::{LinkError, ModbusException, RegisterAddress, RegisterClient};
use crate::traits::{
    Bms, BmsReading, ControlSource, DeviceError, ErrorKind, Inverter, InverterCapabilities, InverterReading,
    InverterSettings, Meter, MeterReading, PvInverter, PvReading,
};

/// An error of [`ProfileDevice`]; the two Modbus failure levels stay apart.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProfileDeviceError {
    /// The link failed (no answer): [`ErrorKind::Timeout`] or [`ErrorKind::Comm`].
    #[error("{0}")]
    Link(LinkError),
    /// The device answered with an exception: [`ErrorKind::Refused`].
    #[error("register {address}: {exception}")]
    Exception {
        /// The first register of the request.
        address: RegisterAddress,
        /// The exception.
        exception: ModbusException,
    },
    /// The answer cannot be decoded: [`ErrorKind::Decode`].
    #[error("{0}")]
    Decode(DecodeError),
    /// A value is not available where one is required (the register holds its "not
    /// available" code), or does not fit the signal (a negative PV power): [`ErrorKind::Decode`].
    #[error("{signal}: {reason}")]
    Invalid {
        /// The signal.
        signal: Signal,
        /// Why.
        reason: String,
    },
    /// A decoded value is not a valid quantity (non-finite, outside the unit's physical range):
    /// [`ErrorKind::OutOfRange`]. Every register value enters through the unit's `try_new`.
    #[error("register {signal}: {source}")]
    OutOfRange {
        /// The signal (the profile's register name).
        signal: Signal,
        /// The value refused, with its unit and the accepted range.
        source: UnitError,
    },
    /// A value to write does not fit the register: [`ErrorKind::OutOfRange`].
    #[error("{0}")]
    Encode(EncodeError),
    /// The profile is for another device kind: [`ErrorKind::Refused`].
    #[error("profile {profile} is a {actual} profile, used as a {wanted}")]
    WrongDevice {
        /// The profile's name.
        profile: String,
        /// What the profile describes.
        actual: DeviceKind,
        /// The trait that was called.
        wanted: DeviceKind,
    },
    /// The profile does not map what the call needs: [`ErrorKind::Refused`].
    #[error("profile has no writable '{0}' register")]
    Unsupported(Signal),
}

impl DeviceError for ProfileDeviceError {
    fn exception_code(&self) -> Option<u8> {
        match self {
            Self::Exception { exception, .. } => Some(exception.code()),
            _ => None,
        }
    }

    fn kind(&self) -> ErrorKind {
        match self {
            Self::Link(LinkError::Timeout(_)) => ErrorKind::Timeout,
            Self::Link(LinkError::Disconnected(_) | LinkError::Io(_) | LinkError::Protocol(_)) => {
                ErrorKind::Comm
            }
            Self::Exception { .. } | Self::WrongDevice { .. } | Self::Unsupported(_) => ErrorKind::Refused,
            Self::Decode(_) | Self::Invalid { .. } => ErrorKind::Decode,
            Self::Encode(EncodeError::OutOfRange { .. }) | Self::OutOfRange { .. } => ErrorKind::OutOfRange,
            Self::Encode(EncodeError::NotWritable { .. }) => ErrorKind::Refused,
        }
    }
}

/// A device driven by a register-map profile over any [`RegisterClient`].
///
/// It implements [`Meter`], [`Inverter`], [`Bms`] and [`PvInverter`]; only the trait of the
/// profile's [`DeviceKind`] works, the others return [`ProfileDeviceError::WrongDevice`].
/// Every read fetches the whole profile with the requests of [`read_plan`].
///
/// Signals a profile may leave out, and what the readings then hold (also in
/// `devices/profiles/README.md`):
///
/// * inverter `setpoint` (no read-back register): the last set-point this driver wrote and the
///   device acknowledged (0 W before the first write) — the read-back check then proves only
///   that the device accepted the write, not that it applies it;
/// * inverter `temperature`: 25 °C (no heat-sink derating from the EMS);
/// * inverter `rated_power`: 0 W, so the safety layer allows no power at all;
/// * inverter `dc_link_voltage`: 0 V, which the pre-charge check never accepts (use such a
///   profile only where the EMS does not run the pre-charge);
/// * inverter `control_enable` / `revert_timeout` not readable: the last values written;
/// * BMS `alarms`: none; BMS `ready`: ready when no alarm is set.
#[derive(Debug)]
pub struct ProfileDevice<C> {
    client: C,
    profile: Profile,
    plan: Vec<ReadRequest>,
    last_setpoint: Watts,
    last_control: ControlSource,
    last_revert: Option<Millis>,
}

impl<C: RegisterClient> ProfileDevice<C> {
    /// A driver for `profile` over `client` (which it owns).
    #[must_use]
    pub fn new(client: C, profile: Profile) -> Self {
        let plan = read_plan(&profile);
        Self {
            client,
            profile,
            plan,
            last_setpoint: Watts::ZERO,
            last_control: ControlSource::Local,
            last_revert: None,
        }
    }

    /// The profile.
    #[must_use]
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// The read requests of one cycle.
    #[must_use]
    pub fn plan(&self) -> &[ReadRequest] {
        &self.plan
    }

    /// The client.
    #[must_use]
    pub fn client(&self) -> &C {
        &self.client
    }

    /// The client, mutably (tests change register images through it).
    pub fn client_mut(&mut self) -> &mut C {
        &mut self.client
    }

    /// Give the client back.
    #[must_use]
    pub fn into_client(self) -> C {
        self.client
    }

    /// Read every register of the profile and decode it.
    ///
    /// # Errors
    /// Link failure, exception, or decode error of the first failing request.
    pub async fn read_values(&mut self) -> Result<Values, ProfileDeviceError> {
        let mut image = RegisterImage::new();
        for req in &self.plan {
            let words = self
                .client
                .read(req.kind, req.address, req.count)
                .await
                .map_err(ProfileDeviceError::Link)?
                .map_err(|exception| ProfileDeviceError::Exception { address: req.address, exception })?;
            if words.len() != usize::from(req.count) {
                return Err(ProfileDeviceError::Link(LinkError::Protocol(format!(
                    "asked for {} registers at {}, got {}",
                    req.count,
                    req.address,
                    words.len()
                ))));
            }
            image.insert(req.kind, req.address, &words);
        }
        decode(&self.profile, &image).map_err(ProfileDeviceError::Decode)
    }

    fn expect(&self, wanted: DeviceKind) -> Result<(), ProfileDeviceError> {
        if self.profile.device() == wanted {
            Ok(())
        } else {
            Err(ProfileDeviceError::WrongDevice {
                profile: self.profile.name().to_owned(),
                actual: self.profile.device(),
                wanted,
            })
        }
    }

    fn writable(&self, signal: Signal) -> Result<&Register, ProfileDeviceError> {
        self.profile.register(signal).filter(|r| r.write).ok_or(ProfileDeviceError::Unsupported(signal))
    }

    async fn write_words(
        &mut self,
        address: RegisterAddress,
        words: &[u16],
    ) -> Result<(), ProfileDeviceError> {
        self.client
            .write(address, words)
            .await
            .map_err(ProfileDeviceError::Link)?
            .map_err(|exception| ProfileDeviceError::Exception { address, exception })
    }

    async fn write_number(&mut self, signal: Signal, value: f64) -> Result<(), ProfileDeviceError> {
        let r = self.writable(signal)?;
        let address = r.address;
        let words = encode(r, value).map_err(ProfileDeviceError::Encode)?;
        self.write_words(address, &words).await
    }

    async fn write_code(&mut self, signal: Signal, meaning: EnumValue) -> Result<(), ProfileDeviceError> {
        let r = self.writable(signal)?;
        let address = r.address;
        let words = encode_enum(r, meaning).map_err(ProfileDeviceError::Encode)?;
        self.write_words(address, &words).await
    }
}

fn invalid(signal: Signal) -> impl Fn(UnitError) -> ProfileDeviceError {
    move |source| ProfileDeviceError::OutOfRange { signal, source }
}

/// A required number: mapped (validation guarantees it for required signals) and available.
fn required(values: &Values, signal: Signal) -> Result<f32, ProfileDeviceError> {
    match values.number(signal) {
        // The unit constructors reject what does not fit f32.
        Some(x) => Ok(crate::narrow::f32_of(x)),
        None => Err(ProfileDeviceError::Invalid { signal, reason: "not available".to_owned() }),
    }
}

/// An optional number: `default` only if the profile does not map the signal; a mapped
/// signal that reads "not available" is an error, never silently the default.
fn optional(values: &Values, signal: Signal, default: f32) -> Result<f32, ProfileDeviceError> {
    if values.contains(signal) {
        required(values, signal)
    } else {
        Ok(default)
    }
}

impl<C: RegisterClient> Meter for ProfileDevice<C> {
    type Error = ProfileDeviceError;

    async fn read(&mut self) -> Result<MeterReading, ProfileDeviceError> {
        self.expect(DeviceKind::Meter)?;
        let v = self.read_values().await?;
        Ok(MeterReading {
            active_power: Watts::try_new(required(&v, Signal::ActivePower)?)
                .map_err(invalid(Signal::ActivePower))?,
            voltage: Volts::try_new(required(&v, Signal::Voltage)?).map_err(invalid(Signal::Voltage))?,
            frequency: Some(
                Hertz::try_new(required(&v, Signal::Frequency)?).map_err(invalid(Signal::Frequency))?,
            ),
        })
    }
}

impl<C: RegisterClient> PvInverter for ProfileDevice<C> {
    type Error = ProfileDeviceError;

    async fn read(&mut self) -> Result<PvReading, ProfileDeviceError> {
        self.expect(DeviceKind::Pv)?;
        let v = self.read_values().await?;
        let p = Watts::try_new(required(&v, Signal::ActivePower)?).map_err(invalid(Signal::ActivePower))?;
        if p < Watts::ZERO {
            return Err(ProfileDeviceError::Invalid {
                signal: Signal::ActivePower,
                reason: format!("PV power {p} is negative"),
            });
        }
        Ok(PvReading { active_power: p })
    }
}

impl<C: RegisterClient> Inverter for ProfileDevice<C> {
    type Error = ProfileDeviceError;

    fn capabilities(&self) -> InverterCapabilities {
        InverterCapabilities {
            revert_timer: self.profile.register(Signal::RevertTimeout).is_some_and(|r| r.write),
            setpoint_in_flash: self.profile.setpoint_in_flash(),
        }
    }

    async fn read(&mut self) -> Result<InverterReading, ProfileDeviceError> {
        self.expect(DeviceKind::Inverter)?;
        let v = self.read_values().await?;
        let state = match v.get(Signal::State) {
            Some(Value::State(s)) => s,
            // "Not available" is a state the EMS cannot act on.
            _ => InverterState::Fault,
        };
        let setpoint = if v.contains(Signal::Setpoint) {
            Watts::try_new(required(&v, Signal::Setpoint)?).map_err(invalid(Signal::Setpoint))?
        } else {
            self.last_setpoint
        };
        Ok(InverterReading {
            active_power: Watts::try_new(required(&v, Signal::ActivePower)?)
                .map_err(invalid(Signal::ActivePower))?,
            setpoint,
            state,
            temperature: Celsius::try_new(optional(&v, Signal::Temperature, 25.0)?)
                .map_err(invalid(Signal::Temperature))?,
            rated_power: Watts::try_new(optional(&v, Signal::RatedPower, 0.0)?)
                .map_err(invalid(Signal::RatedPower))?
                .abs(),
            dc_link_voltage: Volts::try_new(optional(&v, Signal::DcLinkVoltage, 0.0)?)
                .map_err(invalid(Signal::DcLinkVoltage))?,
        })
    }

    async fn write_setpoint(&mut self, power: Watts) -> Result<(), ProfileDeviceError> {
        self.expect(DeviceKind::Inverter)?;
        self.write_number(Signal::SetpointWrite, f64::from(power.get())).await?;
        self.last_setpoint = power;
        Ok(())
    }

    async fn read_settings(&mut self) -> Result<InverterSettings, ProfileDeviceError> {
        self.expect(DeviceKind::Inverter)?;
        let v = self.read_values().await?;
        let control = match v.get(Signal::ControlEnable) {
            Some(Value::Control(c)) => c,
            _ if v.contains(Signal::ControlEnable) => {
                return Err(ProfileDeviceError::Invalid {
                    signal: Signal::ControlEnable,
                    reason: "not available".to_owned(),
                })
            }
            _ => self.last_control,
        };
        let setpoint = if v.contains(Signal::Setpoint) {
            Watts::try_new(required(&v, Signal::Setpoint)?).map_err(invalid(Signal::Setpoint))?
        } else {
            self.last_setpoint
        };
        let revert_timeout = if v.contains(Signal::RevertTimeout) {
            let ms = required(&v, Signal::RevertTimeout)?;
            if !(ms.is_finite() && ms >= 0.0) {
                return Err(ProfileDeviceError::Invalid {
                    signal: Signal::RevertTimeout,
                    reason: format!("{ms} ms"),
                });
            }
            // Zero means "no timer armed"; the float → integer cast saturates and is rounded
            // to whole milliseconds on purpose (finite and non-negative: checked above).
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let ms = ms.round() as u64;
            (ms > 0).then(|| Millis::new(ms))
        } else {
            self.last_revert
        };
        Ok(InverterSettings { control, setpoint, revert_timeout })
    }

    async fn write_settings(&mut self, settings: &InverterSettings) -> Result<(), ProfileDeviceError> {
        self.expect(DeviceKind::Inverter)?;
        let has_timer = self.profile.register(Signal::RevertTimeout).is_some_and(|r| r.write);
        if settings.revert_timeout.is_some() && !has_timer {
            return Err(ProfileDeviceError::Unsupported(Signal::RevertTimeout));
        }
        // Taking control: set-point and timer, then control, so that no moment exists with remote
        // control and no timer. Handing back: control first, then set-point and timer.
        if settings.control == ControlSource::Local {
            self.write_control(settings.control).await?;
        }
        self.write_number(Signal::SetpointWrite, f64::from(settings.setpoint.get())).await?;
        self.last_setpoint = settings.setpoint;
        if has_timer {
            let ms = settings.revert_timeout.map_or(0, Millis::get);
            self.write_number(Signal::RevertTimeout, crate::narrow::f64_of_u64(ms)).await?;
            self.last_revert = settings.revert_timeout;
        }
        if settings.control == ControlSource::Remote {
            self.write_control(settings.control).await?;
        }
        Ok(())
    }
}

impl<C: RegisterClient> ProfileDevice<C> {
    async fn write_control(&mut self, control: ControlSource) -> Result<(), ProfileDeviceError> {
        // Without a control register the device always follows the written set-point.
        if self.profile.register(Signal::ControlEnable).is_some() {
            self.write_code(Signal::ControlEnable, EnumValue::Control(control)).await?;
        }
        self.last_control = control;
        Ok(())
    }
}

impl<C: RegisterClient> Bms for ProfileDevice<C> {
    type Error = ProfileDeviceError;

    async fn read(&mut self) -> Result<BmsReading, ProfileDeviceError> {
        self.expect(DeviceKind::Bms)?;
        let v = self.read_values().await?;
        let volts = |s: Signal| -> Result<Volts, ProfileDeviceError> {
            Volts::try_new(required(&v, s)?).map_err(invalid(s))
        };
        let celsius = |s: Signal| -> Result<Celsius, ProfileDeviceError> {
            Celsius::try_new(required(&v, s)?).map_err(invalid(s))
        };
        let pack_voltage = volts(Signal::PackVoltage)?;
        let limit = |w: Signal, a: Signal| -> Result<Watts, ProfileDeviceError> {
            if v.contains(w) {
                Ok(Watts::try_new(required(&v, w)?).map_err(invalid(w))?.abs())
            } else {
                let amps = Amps::try_new(required(&v, a)?).map_err(invalid(a))?.abs();
                Ok(pack_voltage.times(amps).abs())
            }
        };
        let alarms = match v.get(Signal::Alarms) {
            Some(Value::Alarms(a)) => a,
            // A mapped alarm register that reads "not available" is treated as an alarm.
            _ if v.contains(Signal::Alarms) => BmsAlarms::NONE.with(ems_core::snapshot::BmsAlarm::Internal),
            _ => BmsAlarms::NONE,
        };
        let ready = match v.get(Signal::Ready) {
            Some(Value::Ready(b)) => b,
            _ if v.contains(Signal::Ready) => false,
            _ => !alarms.any(),
        };
        Ok(BmsReading {
            soc: Percent::try_new(required(&v, Signal::Soc)?).map_err(invalid(Signal::Soc))?,
            pack_voltage,
            pack_current: Amps::try_new(required(&v, Signal::PackCurrent)?)
                .map_err(invalid(Signal::PackCurrent))?,
            cell_voltage_min: volts(Signal::CellVoltageMin)?,
            cell_voltage_max: volts(Signal::CellVoltageMax)?,
            cell_temp_min: celsius(Signal::CellTempMin)?,
            cell_temp_max: celsius(Signal::CellTempMax)?,
            charge_limit: limit(Signal::ChargeLimit, Signal::ChargeCurrentLimit)?,
            discharge_limit: limit(Signal::DischargeLimit, Signal::DischargeCurrentLimit)?,
            alarms,
            ready,
        })
    }

    async fn reset_alarms(&mut self) -> Result<(), ProfileDeviceError> {
        self.expect(DeviceKind::Bms)?;
        self.write_code(Signal::AlarmReset, EnumValue::Reset).await
    }
}
