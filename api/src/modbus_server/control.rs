//! The write path, as pure logic: which registers may be written ([`Writable`]), how a write
//! request is checked and decoded ([`Controls::plan`]), and which control-mode request it turns
//! into ([`Dispatch`], the body of `POST /api/v1/control-modes`). Nothing here does I/O or
//! reads a clock; the server dispatches the request through the API router and commits the
//! planned state only when the API accepted it.
//!
//! # Semantics (model 704 and the vendor model)
//!
//! | function | registers | control mode |
//! |---|---|---|
//! | set active power | `WSetEna`, `WSetMod`, `WSet`, `WSetPct`, `WSetRvrtTms`, `WSetEnaRvrt` | `WSet` ≤ 0 (SunSpec: negative = absorb = charge) → `FORCE_CHARGE {power: −WSet}`; `WSet` > 0 → exception 3 (the control modes have no forced discharge) |
//! | limit active power | `WMaxLimPctEna`, `WMaxLimPct`, `WMaxLimPctRvrtTms`, `WMaxLimPctEnaRvrt` | `LIMIT_DISCHARGE {maxDischargePower: WMaxLimPct % × WMaxRtg}` |
//! | controller heartbeat | vendor `CtrlHb` | none (recorded and echoed) |
//!
//! A write that leaves a function enabled (its `…Ena` written 1, or any of its registers
//! written while it is active) activates its mode with `duration` = the function's revert time
//! (`…RvrtTms`, default the configured revert timer): it ends then unless written again. Writing
//! `…Ena` = 0 deactivates the mode this server activated. One `ess` mode exists: enabling one
//! function replaces the other. `…EnaRvrt` accepts only 0 (DISABLED): after the revert time the
//! function is disabled, nothing else.

use serde_json::{json, Value};

use super::map::{Image, MapPoint, RegisterMap, VENDOR_MODEL_ID};
use ems_devices::modbus::sunspec::model::PointType;

/// The Modbus exception a write gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteError {
    /// Exception 2: a register outside the image or not on the allow-list (or a write that
    /// covers only part of a point).
    IllegalAddress,
    /// Exception 3: a value the point does not accept (or the API refused).
    IllegalValue,
}

/// Which control functions may be written (`writable` in `[modbus_server]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::struct_excessive_bools)] // three independent switches of the allow-list
pub struct Writable {
    /// Model 704 set active power (`WSet…`).
    pub wset: bool,
    /// Model 704 limit active power (`WMaxLimPct…`).
    pub wmax_lim_pct: bool,
    /// The vendor model's controller heartbeat (`CtrlHb`).
    pub heartbeat: bool,
}

impl Default for Writable {
    fn default() -> Self {
        Self { wset: true, wmax_lim_pct: true, heartbeat: true }
    }
}

/// The names `writable` accepts.
pub const WRITABLE_NAMES: [&str; 3] = ["WSet", "WMaxLimPct", "CtrlHb"];

/// The points of the set-active-power function.
pub const WSET_POINTS: [&str; 6] = ["WSetEna", "WSetMod", "WSet", "WSetPct", "WSetRvrtTms", "WSetEnaRvrt"];
/// The points of the limit-active-power function.
pub const WMAXLIM_POINTS: [&str; 4] =
    ["WMaxLimPctEna", "WMaxLimPct", "WMaxLimPctRvrtTms", "WMaxLimPctEnaRvrt"];

impl Writable {
    /// From the names in `writable` (each of [`WRITABLE_NAMES`]).
    ///
    /// # Errors
    /// The first unknown name.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<Self, String> {
        let mut w = Self { wset: false, wmax_lim_pct: false, heartbeat: false };
        for n in names {
            match n.as_ref() {
                "WSet" => w.wset = true,
                "WMaxLimPct" => w.wmax_lim_pct = true,
                "CtrlHb" => w.heartbeat = true,
                other => return Err(other.to_owned()),
            }
        }
        Ok(w)
    }

    /// Whether point `p` may be written.
    #[must_use]
    pub fn allows(&self, p: &MapPoint) -> bool {
        match p.model {
            704 => {
                (self.wset && WSET_POINTS.contains(&p.path.as_str()))
                    || (self.wmax_lim_pct && WMAXLIM_POINTS.contains(&p.path.as_str()))
            }
            VENDOR_MODEL_ID => self.heartbeat && p.path == "CtrlHb",
            _ => false,
        }
    }
}

/// Which function is active now (from the control mode in effect).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Active {
    /// A `FORCE_CHARGE` mode is active (shown as set active power).
    pub wset: bool,
    /// A `LIMIT_DISCHARGE` mode is active (shown as limit active power).
    pub wmax_lim_pct: bool,
}

/// What a planned write asks of the API.
#[derive(Debug, Clone, PartialEq)]
pub enum Dispatch {
    /// `POST /api/v1/control-modes` with this body.
    Activate(Value),
    /// `POST /api/v1/control-modes` with `{"ess": null}`.
    Deactivate,
}

impl Dispatch {
    /// The request body.
    #[must_use]
    pub fn body(&self) -> Value {
        match self {
            Self::Activate(v) => v.clone(),
            Self::Deactivate => json!({ "ess": null }),
        }
    }
}

/// The staged (written, volatile) control values. Nothing is persisted.
#[derive(Debug, Clone, PartialEq)]
pub struct Controls {
    /// `WSetMod`: 0 = percent of `WMaxRtg`, 1 = watts.
    pub wset_mod: u16,
    /// `WSet`, W (SunSpec sign: + inject/discharge).
    pub wset_w: f64,
    /// `WSetPct`, %.
    pub wset_pct: f64,
    /// `WSetRvrtTms`, s.
    pub wset_rvrt_s: u32,
    /// `WMaxLimPct`, %.
    pub wmax_lim_pct: f64,
    /// `WMaxLimPctRvrtTms`, s.
    pub wmax_lim_rvrt_s: u32,
    /// The vendor `CtrlHb` as last written.
    pub ctrl_hb: Option<u16>,
    /// Which function this server enabled last (to deactivate only its own mode).
    pub ours: Option<Function>,
}

/// A control function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// Set active power.
    WSet,
    /// Limit active power.
    WMaxLimPct,
}

/// The limits a write is checked against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// `WMaxRtg`, W (> 0): 100 % of the percent points.
    pub rating_w: f64,
    /// The longest revert time accepted, s (≥ 1).
    pub revert_max_s: u32,
}

/// What a write is checked against: the map, the image (its scale factors), the allow-list
/// and the limits.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The register map.
    pub map: &'a RegisterMap,
    /// The image (scale factors).
    pub image: &'a Image,
    /// The allow-list.
    pub writable: &'a Writable,
    /// Ratings and revert limits.
    pub limits: &'a Limits,
}

/// The outcome of a planned write: the state to commit once the API accepted the dispatch,
/// and the dispatch (`None`: staging only, or the heartbeat).
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    /// The controls after the write.
    pub next: Controls,
    /// The control-mode request, if the write changes a function that is (or becomes) enabled.
    pub dispatch: Option<Dispatch>,
    /// Whether the write touched the controller heartbeat.
    pub heartbeat: bool,
}

impl Controls {
    /// The staged defaults: 0 W in watts mode, 100 % limit, `revert_s` revert times.
    #[must_use]
    pub const fn new(revert_s: u32) -> Self {
        Self {
            wset_mod: 1,
            wset_w: 0.0,
            wset_pct: 0.0,
            wset_rvrt_s: revert_s,
            wmax_lim_pct: 100.0,
            wmax_lim_rvrt_s: revert_s,
            ctrl_hb: None,
            ours: None,
        }
    }

    /// Check and decode a write of `values` at `address` against `t` (allow-list, scale
    /// factors, limits) with the functions `active` now.
    ///
    /// # Errors
    /// [`WriteError::IllegalAddress`] when a register is outside the map, not writable, or a
    /// point is covered only in part; [`WriteError::IllegalValue`] for an empty write or a value
    /// a point does not accept. Nothing changes on an error.
    pub fn plan(
        &self,
        t: &Target<'_>,
        active: Active,
        address: u16,
        values: &[u16],
    ) -> Result<Planned, WriteError> {
        let Target { map, image, writable, limits } = *t;
        if values.is_empty() {
            return Err(WriteError::IllegalValue);
        }
        let mut next = self.clone();
        let mut touched = (false, false, false);
        let mut ena: (Option<bool>, Option<bool>) = (None, None);
        let end = u32::from(address) + u32::try_from(values.len()).map_err(|_| WriteError::IllegalValue)?;
        let mut at = u32::from(address);
        while at < end {
            let a = u16::try_from(at).map_err(|_| WriteError::IllegalAddress)?;
            let p = map.point_at(a).ok_or(WriteError::IllegalAddress)?;
            if !writable.allows(p) || p.address != a || p.range().end > end {
                return Err(WriteError::IllegalAddress);
            }
            let off = usize::try_from(at - u32::from(address)).map_err(|_| WriteError::IllegalAddress)?;
            let raw = values.get(off..off + usize::from(p.def.size)).ok_or(WriteError::IllegalAddress)?;
            let value = decode(p, raw, image.exponent(p))?;
            match (p.model, p.path.as_str()) {
                (704, "WSetEna") => ena.0 = Some(bool_value(value)?),
                (704, "WSetMod") => next.wset_mod = mode_value(value)?,
                (704, "WSet") => next.wset_w = value,
                (704, "WSetPct") => next.wset_pct = percent(value, -100.0)?,
                (704, "WSetRvrtTms") => next.wset_rvrt_s = revert(value, limits)?,
                (704, "WMaxLimPctEna") => ena.1 = Some(bool_value(value)?),
                (704, "WMaxLimPct") => next.wmax_lim_pct = percent(value, 0.0)?,
                (704, "WMaxLimPctRvrtTms") => next.wmax_lim_rvrt_s = revert(value, limits)?,
                (704, "WSetEnaRvrt" | "WMaxLimPctEnaRvrt") => {
                    // After the revert time the function is disabled: nothing else is offered.
                    if bool_value(value)? {
                        return Err(WriteError::IllegalValue);
                    }
                }
                (VENDOR_MODEL_ID, "CtrlHb") => {
                    next.ctrl_hb = raw.first().copied();
                    touched.2 = true;
                }
                _ => return Err(WriteError::IllegalAddress),
            }
            if p.model == 704 {
                if WSET_POINTS.contains(&p.path.as_str()) {
                    touched.0 = true;
                } else {
                    touched.1 = true;
                }
            }
            at = p.range().end;
        }
        let wset_on = ena.0.unwrap_or(active.wset && touched.0);
        let wmax_on = ena.1.unwrap_or(active.wmax_lim_pct && touched.1);
        let dispatch = if touched.1 && wmax_on && !(touched.0 && wset_on) {
            next.ours = Some(Function::WMaxLimPct);
            Some(Dispatch::Activate(next.wmax_body(limits)?))
        } else if touched.0 && wset_on {
            next.ours = Some(Function::WSet);
            Some(Dispatch::Activate(next.wset_body(limits)?))
        } else if (ena.0 == Some(false) && self.ours == Some(Function::WSet) && active.wset)
            || (ena.1 == Some(false) && self.ours == Some(Function::WMaxLimPct) && active.wmax_lim_pct)
        {
            next.ours = None;
            Some(Dispatch::Deactivate)
        } else {
            None
        };
        Ok(Planned { next, dispatch, heartbeat: touched.2 })
    }

    /// The set-active-power request in watts (SunSpec sign: + inject/discharge).
    #[must_use]
    pub fn wset_watts(&self, limits: &Limits) -> f64 {
        if self.wset_mod == 0 {
            self.wset_pct / 100.0 * limits.rating_w
        } else {
            self.wset_w
        }
    }

    fn wset_body(&self, limits: &Limits) -> Result<Value, WriteError> {
        let w = self.wset_watts(limits);
        if !w.is_finite() || w > 0.0 {
            // No control mode forces a discharge.
            return Err(WriteError::IllegalValue);
        }
        Ok(json!({ "ess": { "mode": "FORCE_CHARGE", "power": -w, "duration": self.wset_rvrt_s } }))
    }

    fn wmax_body(&self, limits: &Limits) -> Result<Value, WriteError> {
        let w = self.wmax_lim_pct / 100.0 * limits.rating_w;
        if !w.is_finite() || w < 0.0 {
            return Err(WriteError::IllegalValue);
        }
        Ok(
            json!({ "ess": { "mode": "LIMIT_DISCHARGE", "maxDischargePower": w, "duration": self.wmax_lim_rvrt_s } }),
        )
    }
}

fn bool_value(v: f64) -> Result<bool, WriteError> {
    mode_value(v).map(|m| m == 1)
}

fn mode_value(v: f64) -> Result<u16, WriteError> {
    if v == 0.0 {
        Ok(0)
    } else if (v - 1.0).abs() < f64::EPSILON {
        Ok(1)
    } else {
        Err(WriteError::IllegalValue)
    }
}

fn percent(v: f64, min: f64) -> Result<f64, WriteError> {
    if (min..=100.0).contains(&v) {
        Ok(v)
    } else {
        Err(WriteError::IllegalValue)
    }
}

fn revert(v: f64, limits: &Limits) -> Result<u32, WriteError> {
    // 0 would mean "never revert": every control write must expire.
    if v >= 1.0 && v <= f64::from(limits.revert_max_s) {
        // Range-checked above: an integer register value.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Ok(v as u32)
    } else {
        Err(WriteError::IllegalValue)
    }
}

/// The value of the written registers in the point's units; the not-implemented pattern and
/// a scaled point whose factor is not implemented are illegal values.
fn decode(p: &MapPoint, raw: &[u16], exponent: Option<i16>) -> Result<f64, WriteError> {
    let scaled = matches!(p.scale, super::map::Scale::At(_) | super::map::Scale::Fixed(_));
    if scaled && exponent.is_none() {
        return Err(WriteError::IllegalValue);
    }
    let v: f64 = match (p.def.ty, raw) {
        (PointType::Uint16 | PointType::Enum16, [r]) if *r != 0xFFFF => f64::from(*r),
        (PointType::Int16, [r]) if *r != 0x8000 => f64::from(i16::from_ne_bytes(r.to_ne_bytes())),
        (PointType::Uint32, [h, l]) => {
            let x = (u32::from(*h) << 16) | u32::from(*l);
            if x == u32::MAX {
                return Err(WriteError::IllegalValue);
            }
            f64::from(x)
        }
        (PointType::Int32, [h, l]) => {
            let x = (u32::from(*h) << 16) | u32::from(*l);
            if x == 0x8000_0000 {
                return Err(WriteError::IllegalValue);
            }
            f64::from(i32::from_ne_bytes(x.to_ne_bytes()))
        }
        _ => return Err(WriteError::IllegalValue),
    };
    Ok(match exponent {
        Some(e) => v * 10f64.powi(i32::from(e)),
        None => v,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modbus_server::map::Image;

    fn setup() -> (&'static RegisterMap, Image) {
        let map = RegisterMap::get().unwrap();
        let mut img = Image::new(map);
        for (name, sf) in [("WSet_SF", 0.0), ("WSetPct_SF", -1.0), ("WMaxLimPct_SF", -1.0)] {
            img.set(map.point(704, name).unwrap(), Some(sf));
        }
        (map, img)
    }

    const LIMITS: Limits = Limits { rating_w: 5000.0, revert_max_s: 3600 };

    #[test]
    fn a_wset_write_then_enable_becomes_force_charge_with_the_revert_time() {
        let (map, img) = setup();
        let c = Controls::new(60);
        let w = map.point(704, "WSet").unwrap();
        let neg = (-2000i32).to_be_bytes();
        let regs = [u16::from_be_bytes([neg[0], neg[1]]), u16::from_be_bytes([neg[2], neg[3]])];
        let p = c
            .plan(
                &Target { map, image: &img, writable: &Writable::default(), limits: &LIMITS },
                Active::default(),
                w.address,
                &regs,
            )
            .unwrap();
        assert_eq!(p.dispatch, None, "staged until enabled");
        let ena = map.point(704, "WSetEna").unwrap();
        let p2 = p
            .next
            .plan(
                &Target { map, image: &img, writable: &Writable::default(), limits: &LIMITS },
                Active::default(),
                ena.address,
                &[1],
            )
            .unwrap();
        assert_eq!(
            p2.dispatch,
            Some(Dispatch::Activate(
                json!({"ess": {"mode": "FORCE_CHARGE", "power": 2000.0, "duration": 60}})
            ))
        );
    }

    #[test]
    fn writes_outside_the_allow_list_or_with_bad_values_are_refused() {
        let (map, img) = setup();
        let c = Controls::new(60);
        let wr = Writable::default();
        let t = Target { map, image: &img, writable: &wr, limits: &LIMITS };
        let a = Active::default();
        let wmax = map.point(702, "WMax").unwrap();
        assert_eq!(c.plan(&t, a, wmax.address, &[1]), Err(WriteError::IllegalAddress));
        let w = map.point(704, "WSet").unwrap();
        assert_eq!(c.plan(&t, a, w.address + 1, &[1]), Err(WriteError::IllegalAddress));
        let ena = map.point(704, "WSetEna").unwrap();
        assert_eq!(c.plan(&t, a, ena.address, &[2]), Err(WriteError::IllegalValue));
        let tms = map.point(704, "WSetRvrtTms").unwrap();
        assert_eq!(c.plan(&t, a, tms.address, &[0, 0]), Err(WriteError::IllegalValue));
        // A positive set-point (forced discharge) has no control mode.
        let pos = [0u16, 100];
        let p = c.plan(&t, a, w.address, &pos).unwrap();
        assert_eq!(p.next.plan(&t, a, ena.address, &[1]), Err(WriteError::IllegalValue));
        let none = Writable::from_names::<&str>(&[]).unwrap();
        assert_eq!(
            c.plan(&Target { writable: &none, ..t }, a, ena.address, &[1]),
            Err(WriteError::IllegalAddress)
        );
    }
}
