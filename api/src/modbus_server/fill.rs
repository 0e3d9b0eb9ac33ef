//! The image's values: identity and ratings (fixed at start), the site view the loop publishes,
//! the control mode in effect and the staged control values.
//!
//! # Signs and units
//!
//! Ours: battery `+` discharge / `−` charge. SunSpec 701/704: `W` `+` = generation/injection,
//! `−` = absorption, so a discharging battery is `+` in both and no sign changes; a
//! `FORCE_CHARGE {power: P}` reads back as `WSet = −P`. Model 802 `W` (DC, "to/from the
//! battery bank") carries the same sign (`+` discharge). Scale factors are chosen once at start
//! from the ratings ([`Scales::for_site`]) so that the largest value fits the point's type.

use ems_core::snapshot::BmsAlarm;
use ems_core::TripReason;

use super::control::{Controls, Limits};
use super::map::{Image, RegisterMap, VENDOR_MODEL_ID};
use crate::control_modes::ActiveMode;
use crate::model::{channels, ChannelValue, SiteView};
use ems_control::Override;
use jiff::Timestamp;

/// What the device says about itself (model 1) and its ratings (702, 713, 802).
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// Model 1 `Mn`.
    pub manufacturer: String,
    /// Model 1 `Md`.
    pub model: String,
    /// Model 1 `SN`.
    pub serial: String,
    /// Model 1 `Vr`.
    pub version: String,
    /// The inverter's rating, W (702 `WMaxRtg`, `WChaRteMaxRtg`, `WDisChaRteMaxRtg`; 100 % of
    /// the percent controls).
    pub rating_w: f64,
    /// The battery's energy, Wh (713 and 802 `WHRtg`), if known.
    pub capacity_wh: Option<f64>,
}

impl Default for Identity {
    fn default() -> Self {
        Self {
            manufacturer: "ems-rs".to_owned(),
            model: "ems-gateway".to_owned(),
            serial: "unknown".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            rating_w: 5000.0,
            capacity_wh: None,
        }
    }
}

/// The scale-factor exponents, fixed for the server's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scales {
    /// Power (`W_SF`, `WSet_SF`, `WChaDisChaMax_SF`).
    pub w: i16,
    /// Energy (`WH_SF`, `WHRtg_SF`).
    pub wh: i16,
    /// Percentages (`Pct_SF`, `SoC_SF`, `WSetPct_SF`, `WMaxLimPct_SF`): −1, tenths of a percent.
    pub pct: i16,
}

/// The smallest exponent ≥ 0 with which `max` fits in `limit` raw counts.
fn exponent_for(max: f64, limit: f64) -> i16 {
    let mut e = 0i16;
    let mut scaled = max.abs();
    while scaled > limit && e < 10 {
        scaled /= 10.0;
        e += 1;
    }
    e
}

impl Scales {
    /// Exponents for a site: power up to 2 × the rating in an `int16`, energy in a `uint16`.
    #[must_use]
    pub fn for_site(identity: &Identity) -> Self {
        Self {
            w: exponent_for(identity.rating_w * 2.0, 32_767.0),
            wh: exponent_for(identity.capacity_wh.unwrap_or(0.0), 65_534.0),
            pct: -1,
        }
    }
}

/// What the vendor model's `CmdSrc` says for a command source (its `Display`, as the gateway
/// publishes it on `ctrl/CommandSource`).
#[must_use]
pub fn command_source_code(text: &str) -> Option<u16> {
    let prefixes: [(&str, u16); 7] = [
        ("not RUNNING", 0),
        ("mode:", 1),
        ("plan:", 2),
        ("provider schedule", 3),
        ("rule #", 4),
        ("override", 5),
        ("grid service", 6),
    ];
    prefixes.iter().find(|(p, _)| text.starts_with(p)).map(|(_, c)| *c)
}

/// The vendor model's `Flt` bits for the latched faults (their `Display`, as in
/// [`crate::model::SafetyView::latched_faults`]).
#[must_use]
pub fn fault_bits(faults: &[String]) -> u32 {
    let fixed: [(TripReason, u32); 8] = [
        (TripReason::InverterFault, 3),
        (TripReason::ContactorMismatch, 5),
        (TripReason::ShutdownFailed, 6),
        (TripReason::SetpointNotApplied, 7),
        (TripReason::PrechargeFailed, 8),
        (TripReason::ContactorWelded, 9),
        (TripReason::ContactorFailedToClose, 10),
        (TripReason::InverterFault, 3),
    ];
    let mut bits = 0u32;
    for f in faults {
        let bit = if let Some((_, b)) = fixed.iter().find(|(r, _)| r.to_string() == *f) {
            *b
        } else if BmsAlarm::ALL.iter().any(|a| a.to_string() == *f) {
            2
        } else if f.ends_with(" runaway predicted") {
            1
        } else if f.ends_with(" trip") {
            0
        } else if f.ends_with(" lost") {
            4
        } else {
            31
        };
        bits |= 1 << bit;
    }
    bits
}

fn number(view: &SiteView, channel: &str) -> Option<f64> {
    match view.channels.get(channel) {
        Some(ChannelValue::Number(x)) if x.is_finite() => Some(*x),
        _ => None,
    }
}

/// The state code of the vendor model's `St`.
fn state_code(state: &str) -> Option<f64> {
    Some(match state {
        "BOOT" => 0.0,
        "IDLE" => 1.0,
        "RUNNING" => 2.0,
        "ERROR" => 3.0,
        "STOPPED" => 4.0,
        _ => return None,
    })
}

/// Everything that goes into one refresh.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// The site view.
    pub view: &'a SiteView,
    /// The control mode in effect (`None`: none).
    pub active: Option<&'a ActiveMode>,
    /// The staged control values.
    pub controls: &'a Controls,
    /// Ratings for the percent points and the revert limits.
    pub limits: &'a Limits,
    /// The default revert time, s.
    pub revert_default_s: u32,
    /// The battery's energy, Wh, if known.
    pub capacity_wh: Option<f64>,
    /// Seconds since the server started (the heartbeat).
    pub uptime_s: u64,
    /// Seconds since the controller heartbeat was written (`None`: never).
    pub ctrl_hb_age_s: Option<u64>,
    /// Now (remaining revert times).
    pub now: Timestamp,
}

/// Fill the static part: identity, ratings, scale factors. Called once.
pub fn fill_static(map: &RegisterMap, img: &mut Image, id: &Identity, scales: Scales, unit_id: u8) {
    let mut set = |model: u16, path: &str, v: Option<f64>| {
        if let Some(p) = map.point(model, path) {
            img.set(p, v);
        }
    };
    let w = Some(f64::from(scales.w));
    let pct = Some(f64::from(scales.pct));
    let wh = Some(f64::from(scales.wh));
    for (m, p) in [(701, "W_SF"), (702, "W_SF"), (704, "WSet_SF"), (802, "WChaDisChaMax_SF"), (802, "W_SF")] {
        set(m, p, w);
    }
    set(VENDOR_MODEL_ID, "W_SF", w);
    for (m, p) in [(704, "WSetPct_SF"), (704, "WMaxLimPct_SF"), (713, "Pct_SF"), (802, "SoC_SF")] {
        set(m, p, pct);
    }
    for (m, p) in [(713, "WH_SF"), (802, "WHRtg_SF")] {
        set(m, p, wh);
    }
    set(1, "DA", Some(f64::from(unit_id)));
    for p in ["WMaxRtg", "WChaRteMaxRtg", "WDisChaRteMaxRtg", "WMax", "WChaRteMax", "WDisChaRteMax"] {
        set(702, p, Some(id.rating_w));
    }
    set(713, "WHRtg", id.capacity_wh);
    set(802, "WHRtg", id.capacity_wh);
    set(802, "LocRemCtl", Some(0.0)); // REMOTE: the EMS controls the battery.
    set(802, "Typ", Some(0.0)); // NOT APPLICABLE_UNKNOWN: the chemistry is not configured.
    set(704, "WSetEnaRvrt", Some(0.0));
    set(704, "WMaxLimPctEnaRvrt", Some(0.0));
    let text =
        [(1, "Mn", &id.manufacturer), (1, "Md", &id.model), (1, "SN", &id.serial), (1, "Vr", &id.version)];
    for (m, p, t) in text {
        if let Some(p) = map.point(m, p) {
            img.set_text(p, t);
        }
    }
    if let Some(p) = map.point(1, "Opt") {
        img.set_text(p, "SunSpec server");
    }
}

/// Refresh the live part from `inputs`.
pub fn fill_live(map: &RegisterMap, img: &mut Image, i: &Inputs<'_>) {
    let mut set = |model: u16, path: &str, v: Option<f64>| {
        if let Some(p) = map.point(model, path) {
            img.set(p, v);
        }
    };
    let view = i.view;
    let state = view.safety.state.as_str();
    let battery = number(view, channels::ESS_ACTIVE_POWER);
    let soc = number(view, channels::ESS_SOC);
    let published = view.at.is_some();
    // 701: the storage system's AC side.
    set(701, "W", battery);
    set(701, "St", published.then_some(if state == "RUNNING" { 1.0 } else { 0.0 }));
    let inv = match state {
        "RUNNING" => Some(3.0),
        "IDLE" => Some(7.0),
        "BOOT" => Some(2.0),
        "ERROR" => Some(6.0),
        "STOPPED" => Some(0.0),
        _ => None,
    };
    set(701, "InvSt", inv);
    // 713: storage capacity.
    set(713, "SoC", soc);
    // SoH is not known: WHAvail = WHRtg × SoC (SoH taken as 100 %).
    set(713, "WHAvail", soc.zip(i.capacity_wh).map(|(s, c)| s / 100.0 * c));
    let faulted = !view.safety.latched_faults.is_empty() || state == "ERROR" || state == "STOPPED";
    let sta = if !published {
        None
    } else if faulted {
        Some(2.0)
    } else if view.safety.charge_limited_by.is_empty() && view.safety.discharge_limited_by.is_empty() {
        Some(0.0)
    } else {
        Some(1.0)
    };
    set(713, "Sta", sta);
    // 802: battery.
    set(802, "SoC", soc);
    set(802, "W", battery);
    let limits = published.then_some((view.safety.max_charge_w, view.safety.max_discharge_w));
    set(802, "WChaRteMax", limits.map(|l| l.0));
    set(802, "WDisChaRteMax", limits.map(|l| l.1));
    set(802, "Hb", Some(f64::from(u16::try_from(i.uptime_s % 65_536).unwrap_or(0))));
    let bstate = match state {
        "RUNNING" => Some(3.0),
        "IDLE" => Some(4.0),
        "BOOT" => Some(2.0),
        "ERROR" => Some(99.0),
        "STOPPED" => Some(1.0),
        _ => None,
    };
    set(802, "State", bstate);
    let cha = battery.zip(soc).map(|(w, s)| {
        if w < -1.0 {
            4.0
        } else if w > 1.0 {
            3.0
        } else if s >= 99.5 {
            5.0
        } else if s <= 0.5 {
            2.0
        } else {
            6.0
        }
    });
    set(802, "ChaSt", cha);
    // The vendor model.
    let v = VENDOR_MODEL_ID;
    set(v, "St", state_code(state));
    set(v, "DevRdy", Some(if view.devices.ready { 1.0 } else { 0.0 }));
    set(v, "WChaLim", limits.map(|l| l.0));
    set(v, "WDisChaLim", limits.map(|l| l.1));
    set(v, "WCmd", number(view, channels::ESS_COMMANDED_POWER));
    let src = match view.channels.get(channels::COMMAND_SOURCE) {
        Some(ChannelValue::Text(t)) => command_source_code(t).map(f64::from),
        _ => None,
    };
    set(v, "CmdSrc", src);
    let faults = &view.safety.latched_faults;
    #[allow(clippy::cast_precision_loss)] // a handful of faults
    set(v, "FltCnt", Some(faults.len().min(65_534) as f64));
    set(v, "Flt", Some(f64::from(fault_bits(faults))));
    set(v, "Hb", Some(f64::from(u16::try_from(i.uptime_s % 65_536).unwrap_or(0))));
    set(v, "CtrlHb", i.controls.ctrl_hb.map(f64::from));
    #[allow(clippy::cast_precision_loss)] // clamped to 65534
    set(v, "CtrlHbAge", Some(i.ctrl_hb_age_s.map_or(65_535.0, |s| s.min(65_534) as f64)));
    set(v, "RvrtTms", Some(f64::from(i.revert_default_s)));
    fill_controls(map, img, i);
}

/// Model 704: the control mode in effect, or the staged values.
fn fill_controls(map: &RegisterMap, img: &mut Image, i: &Inputs<'_>) {
    let mut set = |model: u16, path: &str, v: Option<f64>| {
        if let Some(p) = map.point(model, path) {
            img.set(p, v);
        }
    };
    let c = i.controls;
    let rating = i.limits.rating_w;
    let pct_of = |w: f64| if rating > 0.0 { Some(w / rating * 100.0) } else { None };
    let remaining = |m: &ActiveMode| {
        let s = m.expires_at.duration_since(i.now).as_secs_f64().ceil().max(0.0);
        Some(s)
    };
    let (mut wset_on, mut wmax_on) = (false, false);
    match i.active.map(|m| (m, m.mode)) {
        Some((m, Override::ForceCharge { power })) => {
            wset_on = true;
            let w = -f64::from(power.get());
            set(704, "WSet", Some(w));
            set(704, "WSetPct", pct_of(w));
            set(704, "WSetMod", Some(f64::from(c.wset_mod)));
            set(704, "WSetRvrtRem", remaining(m));
        }
        Some((m, Override::LimitDischarge { max_discharge_power })) => {
            wmax_on = true;
            set(704, "WMaxLimPct", pct_of(f64::from(max_discharge_power.get())));
            set(704, "WMaxLimPctRvrtRem", remaining(m));
        }
        Some((_, Override::NoDischarge | Override::LimitCharge { .. })) | None => {}
    }
    if !wset_on {
        set(704, "WSet", Some(c.wset_w));
        set(704, "WSetPct", Some(c.wset_pct));
        set(704, "WSetMod", Some(f64::from(c.wset_mod)));
        set(704, "WSetRvrtRem", Some(0.0));
    }
    if !wmax_on {
        set(704, "WMaxLimPct", Some(c.wmax_lim_pct));
        set(704, "WMaxLimPctRvrtRem", Some(0.0));
    }
    set(704, "WSetEna", Some(if wset_on { 1.0 } else { 0.0 }));
    set(704, "WMaxLimPctEna", Some(if wmax_on { 1.0 } else { 0.0 }));
    set(704, "WSetRvrtTms", Some(f64::from(c.wset_rvrt_s)));
    set(704, "WMaxLimPctRvrtTms", Some(f64::from(c.wmax_lim_rvrt_s)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use ems_control::{CommandSource, OverrideKind, ProposalReason};

    fn code_of(source: &CommandSource) -> Option<u16> {
        command_source_code(&source.to_string())
    }

    #[test]
    fn every_command_source_has_its_code() {
        let cases = [
            (CommandSource::NotRunning, 0),
            (CommandSource::Mode(ProposalReason::Passive), 1),
            (CommandSource::Plan(ProposalReason::Passive), 2),
            (CommandSource::Rule { kind: OverrideKind::NoDischarge, id: 1 }, 4),
            (CommandSource::Override(OverrideKind::ForceCharge), 5),
            (CommandSource::GridService { name: "FCR-N", added: true }, 6),
            (CommandSource::GridService { name: "FCR-N", added: false }, 6),
        ];
        for (s, code) in cases {
            assert_eq!(code_of(&s), Some(code), "{s}");
        }
    }

    #[test]
    fn latched_faults_map_to_their_bits() {
        let f = |r: TripReason| r.to_string();
        assert_eq!(fault_bits(&[f(TripReason::ContactorWelded)]), 1 << 9);
        assert_eq!(fault_bits(&[f(TripReason::Bms(BmsAlarm::OverTemperature))]), 1 << 2);
        assert_eq!(fault_bits(&["something new".to_owned()]), 1 << 31);
        assert_eq!(fault_bits(&[]), 0);
    }
}
