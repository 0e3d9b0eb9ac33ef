//! `[mode]`: the operating mode (passive, charge-only, manual, self-consumption, peak shaving
//! with its `[[mode.slots]]`).

use super::errors::{ConfigError, Ctx};
use super::limits::watts;
use ems_control::{
    CapSlot, CapSlots, ChargeOnlyConfig, ChargeSource, ModeSetting, PeakShavingConfig, SelfConsumptionConfig,
    MAX_CAP_SLOTS,
};
use ems_core::Percent;
use serde::Deserialize;
use toml::Spanned;

/// `[mode]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ModeSection {
    /// `passive`, `charge-only`, `manual`, `self-consumption` or `peak-shaving`.
    #[serde(default = "default_mode_kind")]
    pub kind: Spanned<String>,
    /// charge-only: `pv-surplus` or `fixed`.
    pub source: Option<Spanned<String>>,
    /// charge-only fixed power, W (≥ 0).
    pub power_w: Option<Spanned<f64>>,
    /// charge-only SOC target, %.
    pub soc_target_pct: Option<Spanned<f64>>,
    /// charge-only: charging may not raise grid import above this, W.
    pub max_grid_import_w: Option<Spanned<f64>>,
    /// manual: the set-point, W (`+` discharge / `−` charge).
    pub setpoint_w: Option<Spanned<f64>>,
    /// self-consumption: the grid power to hold, W (default 0 = zero export and import).
    pub grid_setpoint_w: Option<Spanned<f64>>,
    /// self-consumption and peak-shaving: no discharge (outside peaks) at or below this SOC, %.
    pub reserve_soc_pct: Option<Spanned<f64>>,
    /// self-consumption: largest charge power the mode asks for, W.
    pub max_charge_w: Option<Spanned<f64>>,
    /// self-consumption: largest discharge power the mode asks for, W.
    pub max_discharge_w: Option<Spanned<f64>>,
    /// peak-shaving: import cap, W.
    pub import_cap_w: Option<Spanned<f64>>,
    /// peak-shaving: export cap (magnitude), W.
    pub export_cap_w: Option<Spanned<f64>>,
    /// peak-shaving: recharge only while import (battery idle) is below this, W.
    pub recharge_below_w: Option<Spanned<f64>>,
    /// peak-shaving: largest recharge power, W.
    pub max_recharge_w: Option<Spanned<f64>>,
    /// peak-shaving: recharge toward this SOC, %.
    pub target_soc_pct: Option<Spanned<f64>>,
    /// peak-shaving: caps by local time of day (`[[mode.slots]] start = "17:00"`, `import_cap_w`,
    /// `export_cap_w`), in the order of the day, at most 8.
    #[serde(default)]
    pub slots: Vec<CapSlotEntry>,
}

/// One `[[mode.slots]]` of peak shaving.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CapSlotEntry {
    /// Local time the slot starts, `HH:MM`.
    pub start: Spanned<String>,
    /// Import cap from then on, W.
    pub import_cap_w: Spanned<f64>,
    /// Export cap from then on, W.
    pub export_cap_w: Spanned<f64>,
}

impl Default for ModeSection {
    fn default() -> Self {
        Self {
            kind: default_mode_kind(),
            source: None,
            power_w: None,
            soc_target_pct: None,
            max_grid_import_w: None,
            setpoint_w: None,
            grid_setpoint_w: None,
            reserve_soc_pct: None,
            max_charge_w: None,
            max_discharge_w: None,
            import_cap_w: None,
            export_cap_w: None,
            recharge_below_w: None,
            max_recharge_w: None,
            target_soc_pct: None,
            slots: Vec::new(),
        }
    }
}

fn default_mode_kind() -> Spanned<String> {
    Spanned::new(0..0, "passive".to_owned())
}

/// `HH:MM` (00:00..=23:59) → minute of day.
fn parse_hhmm(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

// Narrowing the validated f64 percentages to the f32 unit type.
#[allow(clippy::cast_possible_truncation)]
fn pct(x: f64) -> Percent {
    Percent::saturating(x as f32)
}

/// `[mode]`, validated (with the mode's own cross-field rules).
pub(super) fn mode(ctx: &Ctx<'_>, m: &ModeSection) -> Result<ModeSetting, ConfigError> {
    let mode = match m.kind.get_ref().as_str() {
        "passive" => ModeSetting::Passive,
        "manual" => {
            let Some(sp) = &m.setpoint_w else {
                return Err(ctx.err(
                    "mode.setpoint_w",
                    &m.kind,
                    "is required with kind = \"manual\"".to_owned(),
                ));
            };
            ModeSetting::Manual { setpoint: watts(ctx.number("mode.setpoint_w", sp, -1e7, 1e7, "W")?) }
        }
        "charge-only" => charge_only(ctx, m)?,
        "self-consumption" => self_consumption(ctx, m)?,
        "peak-shaving" => peak_shaving(ctx, m)?,
        other => {
            return Err(ctx.err(
                "mode.kind",
                &m.kind,
                format!(
                    "'{other}' is not one of passive, charge-only, manual, self-consumption, peak-shaving"
                ),
            ));
        }
    };
    // Cross-field rules of the mode (reserve above target, slots out of order, ...).
    mode.validate().map_err(|e| ctx.err("mode", &m.kind, e.to_string()))?;
    Ok(mode)
}

fn charge_only(ctx: &Ctx<'_>, m: &ModeSection) -> Result<ModeSetting, ConfigError> {
    let source = match m.source.as_ref().map(|s| (s, s.get_ref().as_str())) {
        None | Some((_, "pv-surplus")) => ChargeSource::PvSurplus,
        Some((_, "fixed")) => {
            let Some(p) = &m.power_w else {
                return Err(ctx.err(
                    "mode.power_w",
                    &m.kind,
                    "is required with source = \"fixed\"".to_owned(),
                ));
            };
            ChargeSource::Fixed(watts(ctx.number("mode.power_w", p, 0.0, 1e7, "W")?))
        }
        Some((s, other)) => {
            return Err(ctx.err("mode.source", s, format!("'{other}' is not one of pv-surplus, fixed")));
        }
    };
    let soc = ctx.opt("mode.soc_target_pct", m.soc_target_pct.as_ref(), 0.0, 100.0, "%")?.unwrap_or(95.0);
    let max_import =
        ctx.opt("mode.max_grid_import_w", m.max_grid_import_w.as_ref(), 0.0, 1e7, "W")?.unwrap_or(0.0);
    Ok(ModeSetting::ChargeOnly(ChargeOnlyConfig {
        source,
        soc_target: pct(soc),
        max_grid_import: watts(max_import),
    }))
}

fn self_consumption(ctx: &Ctx<'_>, m: &ModeSection) -> Result<ModeSetting, ConfigError> {
    let d = SelfConsumptionConfig::default();
    let grid = ctx.opt("mode.grid_setpoint_w", m.grid_setpoint_w.as_ref(), -1e7, 1e7, "W")?;
    let reserve = ctx.opt("mode.reserve_soc_pct", m.reserve_soc_pct.as_ref(), 0.0, 100.0, "%")?;
    let max_c = ctx.opt("mode.max_charge_w", m.max_charge_w.as_ref(), 0.0, 1e7, "W")?;
    let max_d = ctx.opt("mode.max_discharge_w", m.max_discharge_w.as_ref(), 0.0, 1e7, "W")?;
    Ok(ModeSetting::SelfConsumption(SelfConsumptionConfig {
        grid_setpoint: grid.map_or(d.grid_setpoint, watts),
        reserve_soc: reserve.map_or(d.reserve_soc, pct),
        max_charge: max_c.map(watts),
        max_discharge: max_d.map(watts),
    }))
}

fn peak_shaving(ctx: &Ctx<'_>, m: &ModeSection) -> Result<ModeSetting, ConfigError> {
    let d = PeakShavingConfig::default();
    let Some(import_cap) = &m.import_cap_w else {
        return Err(ctx.err(
            "mode.import_cap_w",
            &m.kind,
            "is required with kind = \"peak-shaving\"".to_owned(),
        ));
    };
    let import_cap = ctx.number("mode.import_cap_w", import_cap, 0.0, 1e7, "W")?;
    let export_cap = ctx.opt("mode.export_cap_w", m.export_cap_w.as_ref(), 0.0, 1e7, "W")?;
    let recharge = ctx.opt("mode.recharge_below_w", m.recharge_below_w.as_ref(), -1e7, 1e7, "W")?;
    let max_recharge = ctx.opt("mode.max_recharge_w", m.max_recharge_w.as_ref(), 0.0, 1e7, "W")?;
    let reserve = ctx.opt("mode.reserve_soc_pct", m.reserve_soc_pct.as_ref(), 0.0, 100.0, "%")?;
    let target = ctx.opt("mode.target_soc_pct", m.target_soc_pct.as_ref(), 0.0, 100.0, "%")?;
    let mut slots = CapSlots::new();
    for (i, e) in m.slots.iter().enumerate() {
        let field = |f: &str| format!("mode.slots[{i}].{f}");
        let start_minute = parse_hhmm(e.start.get_ref()).ok_or_else(|| {
            ctx.err(&field("start"), &e.start, format!("'{}' is not a time HH:MM", e.start.get_ref()))
        })?;
        let slot = CapSlot {
            start_minute,
            import_cap: watts(ctx.number(&field("import_cap_w"), &e.import_cap_w, 0.0, 1e7, "W")?),
            export_cap: watts(ctx.number(&field("export_cap_w"), &e.export_cap_w, 0.0, 1e7, "W")?),
        };
        slots
            .try_push(slot)
            .map_err(|_| ctx.err(&field("start"), &e.start, format!("more than {MAX_CAP_SLOTS} slots")))?;
    }
    Ok(ModeSetting::PeakShaving(PeakShavingConfig {
        import_cap: watts(import_cap),
        export_cap: export_cap.map_or(d.export_cap, watts),
        recharge_below: recharge.map_or(d.recharge_below, watts),
        max_recharge: max_recharge.map(watts),
        reserve_soc: reserve.map_or(d.reserve_soc, pct),
        target_soc: target.map_or(d.target_soc, pct),
        slots,
    }))
}

#[cfg(test)]
mod tests {
    use crate::config::{parse, ConfigError, SiteConfig};
    use ems_control::ModeSetting;
    use std::path::Path;

    fn example() -> String {
        let profile = concat!(env!("CARGO_MANIFEST_DIR"), "/../../devices/profiles/eastron-sdm630.toml");
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/site.toml"))
            .unwrap()
            .replace("../devices/profiles/eastron-sdm630.toml", profile)
    }

    /// The example site with its `[mode]` section replaced.
    fn with_mode(mode: &str) -> Result<SiteConfig, ConfigError> {
        let text = example();
        let start = text.find("[mode]").unwrap();
        let end = text.find("[devices.inverter]").unwrap();
        parse(Path::new("site.toml"), &format!("{}{mode}\n{}", &text[..start], &text[end..]))
    }

    #[test]
    fn self_consumption_and_peak_shaving_are_configurable() {
        let c =
            with_mode("[mode]\nkind = \"self-consumption\"\nreserve_soc_pct = 20\ngrid_setpoint_w = 50\n")
                .unwrap();
        let ModeSetting::SelfConsumption(sc) = c.controller.mode else { panic!("{:?}", c.controller.mode) };
        assert_eq!((sc.reserve_soc.get(), sc.grid_setpoint.get()), (20.0, 50.0));
        assert_eq!(with_mode("").unwrap().controller.mode, ModeSetting::Passive);
        let c = with_mode(
            r#"[mode]
kind = "peak-shaving"
import_cap_w = 8000
reserve_soc_pct = 30
target_soc_pct = 90

[[mode.slots]]
start = "00:00"
import_cap_w = 11000
export_cap_w = 10000

[[mode.slots]]
start = "17:00"
import_cap_w = 6000
export_cap_w = 10000
"#,
        )
        .unwrap();
        let ModeSetting::PeakShaving(ps) = c.controller.mode else { panic!("{:?}", c.controller.mode) };
        assert_eq!(ps.import_cap.get(), 8000.0);
        assert_eq!(ps.slots.as_slice().len(), 2);
        assert_eq!(ps.slots.as_slice()[1].start_minute, 17 * 60);
        let text = example().replace("[site]\n", "[site]\ntime_zone = \"Europe/Berlin\"\n");
        assert!(parse(Path::new("site.toml"), &text).unwrap().time_zone.is_some());
    }

    #[test]
    fn mode_and_time_zone_errors_name_the_field_and_value() {
        let err = |mode: &str| with_mode(mode).unwrap_err().to_string();
        let e = err("[mode]\nkind = \"peak-shaving\"\n");
        assert!(e.contains("mode.import_cap_w") && e.contains("required"), "{e}");
        let e = err("[mode]\nkind = \"peak-shaving\"\nimport_cap_w = 5000\n[[mode.slots]]\nstart = \"25:00\"\nimport_cap_w = 1\nexport_cap_w = 1\n");
        assert!(e.contains("mode.slots[0].start") && e.contains("25:00"), "{e}");
        let e = err("[mode]\nkind = \"peak-shaving\"\nimport_cap_w = 5000\nreserve_soc_pct = 95\ntarget_soc_pct = 90\n");
        assert!(e.contains("mode") && e.contains("95"), "{e}");
        let e = err("[mode]\nkind = \"self-consumption\"\nreserve_soc_pct = 120\n");
        assert!(e.contains("mode.reserve_soc_pct") && e.contains("120"), "{e}");
        let text = example().replace("[site]\n", "[site]\ntime_zone = \"Mars/Olympus\"\n");
        let e = parse(Path::new("site.toml"), &text).unwrap_err().to_string();
        assert!(e.contains("site.time_zone") && e.contains("Mars/Olympus"), "{e}");
    }
}
