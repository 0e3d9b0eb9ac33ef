//! [`SunSpecBattery`]: a battery / BMS over SunSpec model 802 (and 713), implementing
//! [`crate::traits::Bms`].
//!
//! # Registers used
//!
//! | reading / action | source |
//! |---|---|
//! | `soc` | 802 `SoC` × `SoC_SF`, else 713 `SoC` × `Pct_SF` |
//! | `pack_voltage` | 802 `V` × `V_SF` |
//! | `pack_current` | 802 `A` × `A_SF`, taken as `+` discharge (the model does not fix the sign; the SunSpec DER convention is `+` out of the device) |
//! | `cell_voltage_min/max` | 802 `CellVMin` / `CellVMax` × `CellV_SF` |
//! | `cell_temp_min/max` | model 802 has no temperature: [`SunSpecError::MissingPoint`] unless the integrator gives a value with [`SunSpecBattery::with_assumed_cell_temperature`] (only where another trusted sensor or the BMS's own protection covers temperature) |
//! | `charge_limit` / `discharge_limit` | 802 `AChaMax` / `ADisChaMax` × `AMax_SF` × `V`; absent → **0 W** (no limit known: nothing allowed) |
//! | `alarms` | 802 `Evt1` alarm bits: OVER_VOLT_ALARM → CellOverVoltage, UNDER_VOLT_ALARM → CellUnderVoltage, OVER_TEMP_ALARM → OverTemperature, UNDER_TEMP_ALARM → UnderTemperature, OVER_CHARGE/DISCHARGE_CURRENT_ALARM → OverCurrent, GROUND_FAULT → Insulation, COMMUNICATION_ERROR/TEMPERATURE_IMBALANCE_ALARM/CONTACTOR_ERROR/FAN_ERROR/OPEN_DOOR_ERROR/OTHER_ALARM/CONFIGURATION_ALARM → Internal; warnings and the SoC min/max alarms (the envelope's SOC window handles those) are not mapped. `Evt1` not implemented → no alarm |
//! | `ready` | 802 `State` = CONNECTED (3) and `ReqInvState` ≠ STOP (2) |
//! | heartbeat | 802 `CtrlHb` (when implemented) written with an incrementing counter on every `read` |
//! | `reset_alarms` | 802 `AlmRst` ← 1 |
//!
//! Every value enters through the unit's `try_new` ([`SunSpecError::Invalid`], kind
//! `OutOfRange`, naming model, point and value): a SOC of 250 % or a cell voltage above
//! [`CELL_VOLTAGE_MAX`] is an error, never clamped into range.

use super::decode::DecodedModel;
use super::discovery::{discover, ModelInfo, SunSpecMap};
use super::error::{unit_of, SunSpecError};
use super::inverter::{read_decoded, write_point};
use crate::modbus::RegisterClient;
use crate::traits::{Bms, BmsReading};
use ems_core::snapshot::{BmsAlarm, BmsAlarms};
use ems_core::units::UnitError;
use ems_core::{Amps, Celsius, Percent, Volts, Watts};

/// A SunSpec battery (model 802).
#[derive(Debug)]
pub struct SunSpecBattery<C> {
    client: C,
    map: SunSpecMap,
    battery: ModelInfo,
    capacity713: Option<ModelInfo>,
    heartbeat: u16,
    assumed_temp: Option<Celsius>,
}

fn need(m: &DecodedModel, name: &str) -> Result<f64, SunSpecError> {
    m.number(name).ok_or_else(|| SunSpecError::MissingPoint { model: m.id, point: name.to_owned() })
}

/// The highest voltage a single cell can read (every electrochemical cell stays below it); a
/// higher 802 `CellVMin`/`CellVMax` is refused as out of range, not passed on.
pub const CELL_VOLTAGE_MAX: Volts = ems_core::volts!(5.0);

/// `Evt1` bit → alarm.
const EVT1_ALARMS: [(u32, BmsAlarm); 14] = [
    (0, BmsAlarm::Internal),          // COMMUNICATION_ERROR
    (1, BmsAlarm::OverTemperature),   // OVER_TEMP_ALARM
    (3, BmsAlarm::UnderTemperature),  // UNDER_TEMP_ALARM
    (5, BmsAlarm::OverCurrent),       // OVER_CHARGE_CURRENT_ALARM
    (7, BmsAlarm::OverCurrent),       // OVER_DISCHARGE_CURRENT_ALARM
    (9, BmsAlarm::CellOverVoltage),   // OVER_VOLT_ALARM
    (11, BmsAlarm::CellUnderVoltage), // UNDER_VOLT_ALARM
    (18, BmsAlarm::Internal),         // TEMPERATURE_IMBALANCE_ALARM
    (20, BmsAlarm::Internal),         // CONTACTOR_ERROR
    (21, BmsAlarm::Internal),         // FAN_ERROR
    (22, BmsAlarm::Insulation),       // GROUND_FAULT
    (23, BmsAlarm::Internal),         // OPEN_DOOR_ERROR
    (25, BmsAlarm::Internal),         // OTHER_ALARM
    (28, BmsAlarm::Internal),         // CONFIGURATION_ALARM
];

/// Map 802 `Evt1` bits onto [`BmsAlarms`].
#[must_use]
pub fn alarms_from_evt1(bits: u64) -> BmsAlarms {
    EVT1_ALARMS
        .iter()
        .filter(|(bit, _)| bits & (1u64 << bit) != 0)
        .fold(BmsAlarms::NONE, |a, (_, alarm)| a.with(*alarm))
}

impl<C: RegisterClient> SunSpecBattery<C> {
    /// Discover the device's models; model 802 is required.
    ///
    /// # Errors
    ///
    /// [`SunSpecError`] when discovery fails (no `SunS` marker, a corrupt chain, the link) or the device has
    /// no model 802.
    pub async fn new(mut client: C) -> Result<Self, SunSpecError> {
        let map = discover(&mut client).await?;
        let battery =
            *map.find(802).ok_or_else(|| SunSpecError::MissingModel { wanted: "802".to_owned() })?;
        Ok(Self {
            capacity713: map.find(713).copied(),
            client,
            map,
            battery,
            heartbeat: 0,
            assumed_temp: None,
        })
    }

    /// Report `t` as the cell temperature (min and max), since model 802 has none. Use only where
    /// temperature is guarded by another trusted source.
    #[must_use]
    pub fn with_assumed_cell_temperature(mut self, t: Celsius) -> Self {
        self.assumed_temp = Some(t);
        self
    }

    /// The discovered register map.
    #[must_use]
    pub const fn map(&self) -> &SunSpecMap {
        &self.map
    }

    /// The client, read-only (its statistics).
    #[must_use]
    pub const fn client(&self) -> &C {
        &self.client
    }

    /// The client.
    pub fn client_mut(&mut self) -> &mut C {
        &mut self.client
    }

    /// The heartbeat value written last.
    #[must_use]
    pub const fn heartbeat(&self) -> u16 {
        self.heartbeat
    }

    async fn read_inner(&mut self) -> Result<BmsReading, SunSpecError> {
        let info = self.battery;
        let b = read_decoded(&mut self.client, &info).await?;
        let (soc_model, soc) = match b.number("SoC") {
            Some(s) => (802, s),
            None => match self.capacity713 {
                Some(ci) => (713, need(&read_decoded(&mut self.client, &ci).await?, "SoC")?),
                None => return Err(SunSpecError::MissingPoint { model: 802, point: "SoC".to_owned() }),
            },
        };
        let v = need(&b, "V")?;
        let a = need(&b, "A")?;
        let cmin = need(&b, "CellVMin")?;
        let cmax = need(&b, "CellVMax")?;
        let t = self
            .assumed_temp
            .ok_or_else(|| SunSpecError::MissingPoint { model: 802, point: "cell temperature".to_owned() })?;
        let cha = b.number("AChaMax").map_or(0.0, |x| x.abs() * v.abs());
        let dis = b.number("ADisChaMax").map_or(0.0, |x| x.abs() * v.abs());
        let alarms = b.raw("Evt1").map_or(BmsAlarms::NONE, alarms_from_evt1);
        let ready = b.raw("State") == Some(3) && b.raw("ReqInvState") != Some(2);
        if b.get("CtrlHb").is_some() {
            self.heartbeat = self.heartbeat.wrapping_add(1) % 0xFFFF;
            write_point(&mut self.client, &info, &b, "CtrlHb", f64::from(self.heartbeat)).await?;
        }
        let cell = |point: &str, v: f64| -> Result<Volts, SunSpecError> {
            let volts = unit_of(802, point, v, Volts::try_new)?;
            if volts > CELL_VOLTAGE_MAX {
                // A cell cannot read this; a signed −3 V written into the unsigned register
                // reads as 65 533 × 10^CellV_SF and lands here.
                return Err(SunSpecError::Invalid {
                    model: 802,
                    point: point.to_owned(),
                    source: UnitError::OutOfRange {
                        quantity: "cell voltage",
                        value: volts.get(),
                        unit: Volts::SYMBOL,
                        min: 0.0,
                        max: CELL_VOLTAGE_MAX.get(),
                    },
                });
            }
            Ok(volts)
        };
        Ok(BmsReading {
            soc: unit_of(soc_model, "SoC", soc, Percent::try_new)?,
            pack_voltage: unit_of(802, "V", v, Volts::try_new)?,
            pack_current: unit_of(802, "A", a, Amps::try_new)?,
            cell_voltage_min: cell("CellVMin", cmin)?,
            cell_voltage_max: cell("CellVMax", cmax)?,
            cell_temp_min: t,
            cell_temp_max: t,
            charge_limit: unit_of(802, "AChaMax", cha, Watts::try_new)?,
            discharge_limit: unit_of(802, "ADisChaMax", dis, Watts::try_new)?,
            alarms,
            ready,
        })
    }
}

impl<C: RegisterClient> Bms for SunSpecBattery<C> {
    type Error = SunSpecError;

    async fn read(&mut self) -> Result<BmsReading, Self::Error> {
        self.read_inner().await
    }

    async fn reset_alarms(&mut self) -> Result<(), Self::Error> {
        let info = self.battery;
        let b = read_decoded(&mut self.client, &info).await?;
        write_point(&mut self.client, &info, &b, "AlmRst", 1.0).await
    }
}
