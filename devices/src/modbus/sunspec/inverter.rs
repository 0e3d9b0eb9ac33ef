//! [`SunSpecInverter`]: a battery inverter / PCS over SunSpec, implementing
//! [`crate::traits::Inverter`].
//!
//! # Registers used
//!
//! The models are found once, by [`SunSpecInverter::new`] (discovery, then the rating). Every
//! offset comes from the model definitions.
//!
//! | reading / action | source (first one present wins) |
//! |---|---|
//! | `active_power` (`+` discharge) | 701 `W` × `W_SF`; else 103/102/101 `W` × `W_SF` (SunSpec: `+` = AC output) |
//! | `state` | 701 `InvSt`: RUNNING/THROTTLED → Running, FAULT → Fault, OFF/SLEEPING/STARTING/SHUTTING_DOWN/STANDBY → Standby; else 10x `St`: MPPT/THROTTLED → Running, FAULT → Fault, OFF/SLEEPING/STARTING/SHUTTING_DOWN/STANDBY → Standby. Absent or an unknown value → **Fault** (the driver cannot confirm the inverter is healthy) |
//! | `temperature` | `TmpSnk`, then `TmpCab`, `TmpTrns`, `TmpOt` (and 701 `TmpSw`, `TmpAmb`) × `Tmp_SF`; none implemented → [`SunSpecError::MissingPoint`] (no temperature is invented) |
//! | `rated_power` | 702 `WMaxRtg` × `W_SF`, else 120 `WRtg` × `WRtg_SF`; read once in `new` (absent → `MissingPoint`) |
//! | `dc_link_voltage` | 714 `Prt[1].DCV` × `DCV_SF`, else 103/102/101 `DCV` × `DCV_SF`; absent → **0 V** (the pre-charge check then never passes without another DC-link source) |
//! | `setpoint` (read-back) | the control model below, from the device's registers |
//!
//! Control, by preference:
//!
//! 1. **704** (DER AC controls), when its `WSet` is implemented: `WSet` × `WSet_SF` (W, `+`
//!    injection = discharge); `WSetEna` (1 = ENABLED) = `Remote`; `WSetMod` written as WATTS;
//!    revert timer `WSetRvrtTms` (s) with `WSetRvrt` = 0 and `WSetEnaRvrt` = DISABLED, so on
//!    expiry the device falls back to its own behaviour with no set-point. Read-back: `WSet` when
//!    enabled, else 0 W.
//! 2. **124** (basic storage controls): the set-point `P` is written as a window
//!    `[-InWRte, OutWRte]` of `WChaMax` collapsed to one point: `OutWRte = P/WChaMax·100 %`,
//!    `InWRte = −P/WChaMax·100 %` (× `InOutWRte_SF`), `StorCtl_Mod` = 3 (both limits) =
//!    `Remote`, 0 = `Local`; revert timer `InOutWRte_RvrtTms` (s). Read-back: the window's middle
//!    `(OutWRte − InWRte)/2 · WChaMax/100` when both limits are active, else 0 W. |P| > `WChaMax`
//!    is [`SunSpecError::OutOfRange`].
//! 3. **123** (immediate controls, export limit only): `WMaxLimPct` (% of 121 `WMax`, else the
//!    rating) with `WMaxLim_Ena` (1 = `Remote`) and revert timer `WMaxLimPct_RvrtTms` (s). A
//!    charge set-point (`P < 0`) is `OutOfRange`. Read-back: `WMaxLimPct · WMax` when enabled, else
//!    `WMax` (no limit).
//!
//! The revert time is written in whole seconds: `floor(ms / 1000)`, at least 1 s (so the device
//! never reverts later than the EMS's lease). With a timer armed, every set-point write also
//! rewrites the revert time, which restarts the device's timer. `capabilities().revert_timer` is
//! true when the revert-time register is implemented; `setpoint_in_flash` is false (SunSpec
//! controls are volatile).
//!
//! Every method reads the control model before writing (the scale factor is read, not assumed).
//!
//! Every value read enters through the unit's `try_new`: a non-finite or out-of-range value is
//! [`SunSpecError::Invalid`] (kind `OutOfRange`) naming model, point and value, never clamped.

use super::decode::{decode_model, encode_point, DecodedModel, PointValue};
use super::discovery::{discover, read_model, read_models, ModelInfo, SunSpecMap};
use super::error::{unit_of, SunSpecError};
use super::model::{self, PointDef};
use crate::modbus::{RegisterAddress, RegisterClient};
use crate::traits::{ControlSource, Inverter, InverterCapabilities, InverterReading, InverterSettings};
use ems_core::snapshot::InverterState;
use ems_core::{Celsius, Millis, Volts, Watts};

/// Which control model the driver uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlModel {
    /// 704 `WSet`.
    DerWSet,
    /// 124 `InWRte`/`OutWRte`.
    Storage,
    /// 123 `WMaxLimPct` (export limit only).
    ExportLimit,
}

/// A SunSpec inverter.
#[derive(Debug)]
pub struct SunSpecInverter<C> {
    client: C,
    map: SunSpecMap,
    measurement: ModelInfo,
    control: (ControlModel, ModelInfo),
    settings121: Option<ModelInfo>,
    dc714: Option<ModelInfo>,
    rated: Watts,
    revert_timer: bool,
    armed_secs: Option<u32>,
}

/// Write one point (scaled with `sf`) of a model at its definition's offset.
pub(crate) async fn write_point<C: RegisterClient>(
    client: &mut C,
    info: &ModelInfo,
    block: &DecodedModel,
    name: &str,
    value: f64,
) -> Result<(), SunSpecError> {
    let (address, def) = point_address(info, name)?;
    let sf = match &def.sf {
        model::ScaleFactorRef::None => None,
        model::ScaleFactorRef::Fixed(v) => Some(*v),
        model::ScaleFactorRef::Point(sf_name) => Some(
            block
                .get(sf_name)
                .and_then(|v| match v {
                    PointValue::ScaleFactor(s) => Some(*s),
                    _ => None,
                })
                .ok_or_else(|| SunSpecError::MissingPoint { model: info.id, point: sf_name.clone() })?,
        ),
    };
    let regs = encode_point(def, sf, value).ok_or_else(|| SunSpecError::OutOfRange {
        model: info.id,
        point: name.to_owned(),
        value,
        reason: "not representable by the register",
    })?;
    match client.write(address, &regs).await {
        Err(source) => Err(SunSpecError::Link { address, source }),
        Ok(Err(exception)) => Err(SunSpecError::Exception { address, exception }),
        Ok(Ok(())) => Ok(()),
    }
}

/// The address and definition of a top-level point of a discovered model; `MissingPoint` if the
/// model's `L` does not cover it.
pub(crate) fn point_address(
    info: &ModelInfo,
    name: &str,
) -> Result<(RegisterAddress, &'static PointDef), SunSpecError> {
    let missing = || SunSpecError::MissingPoint { model: info.id, point: name.to_owned() };
    let def = model::model(info.id).ok_or_else(missing)?;
    let off = def.point_offset(name).ok_or_else(missing)?;
    let p = def.point(name).ok_or_else(missing)?;
    if off + usize::from(p.size) > usize::from(info.length) + 2 {
        return Err(missing());
    }
    let address = u16::try_from(off).ok().and_then(|o| info.address.offset(o)).ok_or_else(missing)?;
    Ok((address, p))
}

/// Read and decode one model.
pub(crate) async fn read_decoded<C: RegisterClient>(
    client: &mut C,
    info: &ModelInfo,
) -> Result<DecodedModel, SunSpecError> {
    let block = read_model(client, info).await?;
    Ok(decode_model(info.id, &block)?)
}

fn need(m: &DecodedModel, name: &str) -> Result<f64, SunSpecError> {
    m.number(name).ok_or_else(|| SunSpecError::MissingPoint { model: m.id, point: name.to_owned() })
}

/// Revert time in whole seconds: floor, at least 1 s.
fn revert_secs(t: Millis) -> u32 {
    u32::try_from(t.get() / 1000).unwrap_or(u32::MAX).max(1)
}

impl<C: RegisterClient> SunSpecInverter<C> {
    /// Discover the device's models and read its rating.
    ///
    /// # Errors
    ///
    /// [`SunSpecError`] when discovery fails, the device has none of models 701/103/102/101, or the rating
    /// cannot be read or is not a valid quantity.
    pub async fn new(mut client: C) -> Result<Self, SunSpecError> {
        let map = discover(&mut client).await?;
        let measurement = *map
            .find_any(&[701, 103, 102, 101])
            .ok_or_else(|| SunSpecError::MissingModel { wanted: "701 or 103/102/101".to_owned() })?;
        let m704 = map.find(704).copied();
        let mut control = None;
        let mut revert_timer = false;
        if let Some(info) = m704 {
            let d = read_decoded(&mut client, &info).await?;
            if d.get("WSet").is_some() {
                revert_timer = d.get("WSetRvrtTms").is_some();
                control = Some((ControlModel::DerWSet, info));
            }
        }
        if control.is_none() {
            if let Some(info) = map.find(124).copied() {
                let d = read_decoded(&mut client, &info).await?;
                revert_timer = d.get("InOutWRte_RvrtTms").is_some();
                control = Some((ControlModel::Storage, info));
            }
        }
        if control.is_none() {
            if let Some(info) = map.find(123).copied() {
                let d = read_decoded(&mut client, &info).await?;
                revert_timer = d.get("WMaxLimPct_RvrtTms").is_some();
                control = Some((ControlModel::ExportLimit, info));
            }
        }
        let control =
            control.ok_or_else(|| SunSpecError::MissingModel { wanted: "704, 124 or 123".to_owned() })?;
        let rated = if let Some(info) = map.find(702).copied() {
            let w = need(&read_decoded(&mut client, &info).await?, "WMaxRtg")?;
            unit_of(702, "WMaxRtg", w.abs(), Watts::try_new)?
        } else if let Some(info) = map.find(120).copied() {
            let w = need(&read_decoded(&mut client, &info).await?, "WRtg")?;
            unit_of(120, "WRtg", w.abs(), Watts::try_new)?
        } else {
            return Err(SunSpecError::MissingModel { wanted: "702 or 120 (rating)".to_owned() });
        };
        Ok(Self {
            settings121: map.find(121).copied(),
            dc714: map.find(714).copied(),
            client,
            map,
            measurement,
            control,
            rated,
            revert_timer,
            armed_secs: None,
        })
    }

    /// The discovered register map.
    #[must_use]
    pub const fn map(&self) -> &SunSpecMap {
        &self.map
    }

    /// The control model in use.
    #[must_use]
    pub const fn control_model(&self) -> ControlModel {
        self.control.0
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

    /// Give the client back.
    pub fn into_client(self) -> C {
        self.client
    }

    /// Connect to or disconnect from the grid (cease to energise). Uses model 703 `ES` (enter
    /// service enabled/disabled) when the device has it, else model 123 `Conn`, with
    /// `Conn_RvrtTms` as the revert timer when `revert` is given (the device reconnects by itself
    /// after it; floor to whole seconds, at least 1 s). `MissingModel` if neither exists.
    ///
    /// # Errors
    ///
    /// [`SunSpecError::MissingModel`] without model 703 or 123; a link, exception or out-of-range error from
    /// the read or write.
    pub async fn set_connected(&mut self, connect: bool, revert: Option<Millis>) -> Result<(), SunSpecError> {
        let value = if connect { 1.0 } else { 0.0 };
        if let Some(info) = self.map.find(703).copied() {
            let d = read_decoded(&mut self.client, &info).await?;
            return write_point(&mut self.client, &info, &d, "ES", value).await;
        }
        let info = *self.map.find(123).ok_or_else(|| SunSpecError::MissingModel {
            wanted: "703 or 123 (connect/disconnect)".to_owned(),
        })?;
        let d = read_decoded(&mut self.client, &info).await?;
        if let Some(t) = revert {
            write_point(&mut self.client, &info, &d, "Conn_RvrtTms", f64::from(revert_secs(t))).await?;
        }
        write_point(&mut self.client, &info, &d, "Conn", value).await
    }

    /// Whether the device is connected (703 `ES` enabled, else 123 `Conn` = CONNECT); `None`
    /// when the device has neither point.
    ///
    /// # Errors
    ///
    /// A link, exception or decode error reading model 703 or 123.
    pub async fn connected(&mut self) -> Result<Option<bool>, SunSpecError> {
        for (id, point) in [(703, "ES"), (123, "Conn")] {
            if let Some(info) = self.map.find(id).copied() {
                let d = read_decoded(&mut self.client, &info).await?;
                if let Some(v) = d.raw(point) {
                    return Ok(Some(v != 0));
                }
            }
        }
        Ok(None)
    }

    /// Set the storage minimum reserve (124 `MinRsvPct`, % of `WChaMax`): the inverter keeps this
    /// much energy for backup whatever the set-point. `MissingModel` without model 124.
    ///
    /// # Errors
    ///
    /// [`SunSpecError::MissingModel`] without model 124; a link, exception or out-of-range error from the
    /// read or write.
    pub async fn set_min_reserve(&mut self, reserve: ems_core::Percent) -> Result<(), SunSpecError> {
        let info = *self
            .map
            .find(124)
            .ok_or_else(|| SunSpecError::MissingModel { wanted: "124 (storage controls)".to_owned() })?;
        let d = read_decoded(&mut self.client, &info).await?;
        write_point(&mut self.client, &info, &d, "MinRsvPct", f64::from(reserve.get())).await
    }

    /// The power base of the 123 export limit: 121 `WMax`, else the rating.
    async fn wmax(&mut self) -> Result<f64, SunSpecError> {
        if let Some(info) = self.settings121 {
            if let Some(w) = read_decoded(&mut self.client, &info).await?.number("WMax") {
                if w > 0.0 {
                    return Ok(w);
                }
            }
        }
        Ok(f64::from(self.rated.get()))
    }

    async fn control_block(&mut self) -> Result<DecodedModel, SunSpecError> {
        let info = self.control.1;
        read_decoded(&mut self.client, &info).await
    }

    fn settings_from(&self, d: &DecodedModel, base: f64) -> Result<InverterSettings, SunSpecError> {
        let secs = |name: &str| d.number(name).filter(|s| *s > 0.0);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // seconds from a ≤32-bit register
        let to_ms = |s: f64| Some(Millis::from_secs(s as u64));
        let (control, (point, setpoint), revert) = match self.control.0 {
            ControlModel::DerWSet => {
                let on = d.raw("WSetEna") == Some(1);
                let sp = if on { need(d, "WSet")? } else { 0.0 };
                (on, ("WSet", sp), secs("WSetRvrtTms"))
            }
            ControlModel::Storage => {
                let on = d.raw("StorCtl_Mod").is_some_and(|m| m & 3 == 3);
                let sp =
                    if on { (need(d, "OutWRte")? - need(d, "InWRte")?) / 2.0 * base / 100.0 } else { 0.0 };
                (on, ("OutWRte/InWRte", sp), secs("InOutWRte_RvrtTms"))
            }
            ControlModel::ExportLimit => {
                let on = d.raw("WMaxLim_Ena") == Some(1);
                let sp = if on { need(d, "WMaxLimPct")? * base / 100.0 } else { base };
                (on, ("WMaxLimPct", sp), secs("WMaxLimPct_RvrtTms"))
            }
        };
        Ok(InverterSettings {
            control: if control { ControlSource::Remote } else { ControlSource::Local },
            setpoint: unit_of(d.id, point, setpoint, Watts::try_new)?,
            revert_timeout: revert.and_then(to_ms),
        })
    }

    async fn base(&mut self, d: &DecodedModel) -> Result<f64, SunSpecError> {
        match self.control.0 {
            ControlModel::DerWSet => Ok(f64::from(self.rated.get())),
            ControlModel::Storage => {
                let w = need(d, "WChaMax")?;
                if w > 0.0 {
                    Ok(w)
                } else {
                    Err(SunSpecError::OutOfRange {
                        model: 124,
                        point: "WChaMax".to_owned(),
                        value: w,
                        reason: "must be > 0",
                    })
                }
            }
            ControlModel::ExportLimit => self.wmax().await,
        }
    }

    /// Write the set-point registers only (no enable).
    async fn write_value(&mut self, d: &DecodedModel, power: Watts) -> Result<(), SunSpecError> {
        let info = self.control.1;
        let p = f64::from(power.get());
        if !p.is_finite() {
            return Err(SunSpecError::OutOfRange {
                model: info.id,
                point: "set-point".to_owned(),
                value: p,
                reason: "not finite",
            });
        }
        match self.control.0 {
            ControlModel::DerWSet => write_point(&mut self.client, &info, d, "WSet", p).await,
            ControlModel::Storage => {
                let base = self.base(d).await?;
                let pct = p / base * 100.0;
                if pct.abs() > 100.0 {
                    return Err(SunSpecError::OutOfRange {
                        model: 124,
                        point: "OutWRte".to_owned(),
                        value: p,
                        reason: "beyond WChaMax",
                    });
                }
                write_point(&mut self.client, &info, d, "OutWRte", pct).await?;
                write_point(&mut self.client, &info, d, "InWRte", -pct).await
            }
            ControlModel::ExportLimit => {
                let base = self.base(d).await?;
                let pct = p / base * 100.0;
                if !(0.0..=100.0).contains(&pct) {
                    return Err(SunSpecError::OutOfRange {
                        model: 123,
                        point: "WMaxLimPct".to_owned(),
                        value: p,
                        reason: "export limit only: 0 ..= WMax",
                    });
                }
                write_point(&mut self.client, &info, d, "WMaxLimPct", pct).await
            }
        }
    }

    fn revert_point(&self) -> &'static str {
        match self.control.0 {
            ControlModel::DerWSet => "WSetRvrtTms",
            ControlModel::Storage => "InOutWRte_RvrtTms",
            ControlModel::ExportLimit => "WMaxLimPct_RvrtTms",
        }
    }

    async fn read_inner(&mut self) -> Result<InverterReading, SunSpecError> {
        let info = self.measurement;
        // Measurement, DC-link and control models in as few requests as their layout allows.
        let mut wanted = vec![info, self.control.1];
        if let Some(dci) = self.dc714 {
            wanted.push(dci);
        }
        let mut blocks = read_models(&mut self.client, &wanted).await?.into_iter();
        let (Some(m), Some(control)) = (blocks.next(), blocks.next()) else {
            return Err(SunSpecError::MissingModel {
                wanted: format!("{} and {}", info.id, self.control.1.id),
            });
        };
        let dc714 = blocks.next();
        let active_power = need(&m, "W")?;
        let state = if info.id == 701 {
            match m.get("InvSt").and_then(|v| {
                if let PointValue::Enum { symbol, .. } = v {
                    *symbol
                } else {
                    None
                }
            }) {
                Some("RUNNING" | "THROTTLED") => InverterState::Running,
                Some("OFF" | "SLEEPING" | "STARTING" | "SHUTTING_DOWN" | "STANDBY") => InverterState::Standby,
                _ => InverterState::Fault,
            }
        } else {
            match m.get("St").and_then(
                |v| {
                    if let PointValue::Enum { symbol, .. } = v {
                        *symbol
                    } else {
                        None
                    }
                },
            ) {
                Some("MPPT" | "THROTTLED") => InverterState::Running,
                Some("OFF" | "SLEEPING" | "STARTING" | "SHUTTING_DOWN" | "STANDBY") => InverterState::Standby,
                _ => InverterState::Fault,
            }
        };
        let (tmp_point, temperature) = ["TmpSnk", "TmpCab", "TmpTrns", "TmpOt", "TmpSw", "TmpAmb"]
            .iter()
            .find_map(|n| m.number(n).map(|t| (*n, t)))
            .ok_or_else(|| SunSpecError::MissingPoint {
                model: info.id,
                point: "TmpSnk/TmpCab/…".to_owned(),
            })?;
        let (dc_model, dc_point, dc) = match dc714.and_then(|d| d.number("Prt[1].DCV")) {
            Some(v) => (714, "Prt[1].DCV", v),
            None => (info.id, "DCV", m.number("DCV").unwrap_or(0.0)),
        };
        let d = control;
        let base = self.base(&d).await?;
        let settings = self.settings_from(&d, base)?;
        let setpoint = match (self.control.0, settings.control) {
            (ControlModel::ExportLimit, _) | (_, ControlSource::Remote) => settings.setpoint,
            (_, ControlSource::Local) => Watts::ZERO,
        };
        Ok(InverterReading {
            active_power: unit_of(info.id, "W", active_power, Watts::try_new)?,
            setpoint,
            state,
            temperature: unit_of(info.id, tmp_point, temperature, Celsius::try_new)?,
            rated_power: self.rated,
            dc_link_voltage: unit_of(dc_model, dc_point, dc, Volts::try_new)?,
        })
    }
}

impl<C: RegisterClient> Inverter for SunSpecInverter<C> {
    type Error = SunSpecError;

    fn capabilities(&self) -> InverterCapabilities {
        InverterCapabilities { revert_timer: self.revert_timer, setpoint_in_flash: false }
    }

    async fn read(&mut self) -> Result<InverterReading, Self::Error> {
        self.read_inner().await
    }

    async fn write_setpoint(&mut self, power: Watts) -> Result<(), Self::Error> {
        let d = self.control_block().await?;
        self.write_value(&d, power).await?;
        if let Some(secs) = self.armed_secs {
            let info = self.control.1;
            #[allow(clippy::cast_precision_loss)] // seconds
            let rp = self.revert_point();
            write_point(&mut self.client, &info, &d, rp, f64::from(secs)).await?;
        }
        Ok(())
    }

    async fn read_settings(&mut self) -> Result<InverterSettings, Self::Error> {
        let d = self.control_block().await?;
        let base = self.base(&d).await?;
        self.settings_from(&d, base)
    }

    async fn write_settings(&mut self, settings: &InverterSettings) -> Result<(), Self::Error> {
        let d = self.control_block().await?;
        let info = self.control.1;
        let remote = settings.control == ControlSource::Remote;
        let secs = settings.revert_timeout.map(revert_secs);
        if self.revert_timer {
            let max = match self.control.0 {
                ControlModel::DerWSet => u32::MAX - 1,
                ControlModel::Storage | ControlModel::ExportLimit => u32::from(u16::MAX - 1),
            };
            let s = secs.unwrap_or(0).min(max);
            let rp = self.revert_point();
            write_point(&mut self.client, &info, &d, rp, f64::from(s)).await?;
            self.armed_secs = secs.map(|x| x.min(max));
        }
        if self.control.0 == ControlModel::DerWSet {
            // Revert to "no set-point" so an expired lease leaves the device to itself.
            if d.get("WSetMod").is_some() {
                write_point(&mut self.client, &info, &d, "WSetMod", 1.0).await?;
            }
            if d.get("WSetRvrt").is_some() {
                write_point(&mut self.client, &info, &d, "WSetRvrt", 0.0).await?;
            }
            if d.get("WSetEnaRvrt").is_some() {
                write_point(&mut self.client, &info, &d, "WSetEnaRvrt", 0.0).await?;
            }
        }
        self.write_value(&d, settings.setpoint).await?;
        let (name, value) = match self.control.0 {
            ControlModel::DerWSet => ("WSetEna", if remote { 1.0 } else { 0.0 }),
            ControlModel::Storage => ("StorCtl_Mod", if remote { 3.0 } else { 0.0 }),
            ControlModel::ExportLimit => ("WMaxLim_Ena", if remote { 1.0 } else { 0.0 }),
        };
        write_point(&mut self.client, &info, &d, name, value).await
    }
}
