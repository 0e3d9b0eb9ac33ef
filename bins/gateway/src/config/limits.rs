//! `[limits]`: the installation's grid connection, pack currents and ramp, turned (with the
//! pack of `[battery]`) into the safety configuration.

use super::battery::{pack_limits, BatterySection, PackLimits};
use super::errors::{ConfigError, Ctx};
use ems_core::Watts;
use serde::Deserialize;
use toml::Spanned;

/// `[limits]`: installation-specific safety limits (everything else uses the LFP defaults of
/// `ems-safety`, see `safety/README.md`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitsSection {
    /// Import limit at the connection point (main fuse or contract), W.
    pub grid_import_limit_w: Option<Spanned<f64>>,
    /// Export cap at the connection point, W.
    pub grid_export_limit_w: Option<Spanned<f64>>,
    /// Pack maximum charge current, A.
    pub pack_max_charge_current_a: Option<Spanned<f64>>,
    /// Pack maximum discharge current, A.
    pub pack_max_discharge_current_a: Option<Spanned<f64>>,
    /// Set-point ramp, W/s.
    pub ramp_w_per_s: Option<Spanned<f64>>,
}

/// The validated `[limits]` and `[battery]`: the safety configuration, the pack's effective
/// limits and the ramp (`None`: the controller's default).
pub(super) struct Limits {
    pub(super) safety: ems_safety::SafetyConfig,
    pub(super) pack: PackLimits,
    pub(super) ramp: Option<Watts>,
}

// Narrowing the validated f64 values to the f32 unit types: the ranges keep them exact enough.
#[allow(clippy::cast_possible_truncation)]
pub(super) fn watts(x: f64) -> Watts {
    Watts::saturating(x as f32)
}

/// `[limits]` with the pack of `[battery]` (absent: the LFP 16s defaults).
pub(super) fn limits(
    ctx: &Ctx<'_>,
    l: &LimitsSection,
    battery: Option<&BatterySection>,
) -> Result<Limits, ConfigError> {
    let import = ctx.opt("limits.grid_import_limit_w", l.grid_import_limit_w.as_ref(), 0.0, 1e7, "W")?;
    let export = ctx.opt("limits.grid_export_limit_w", l.grid_export_limit_w.as_ref(), 0.0, 1e7, "W")?;
    let charge_a =
        ctx.opt("limits.pack_max_charge_current_a", l.pack_max_charge_current_a.as_ref(), 1.0, 5000.0, "A")?;
    let discharge_a = ctx.opt(
        "limits.pack_max_discharge_current_a",
        l.pack_max_discharge_current_a.as_ref(),
        1.0,
        5000.0,
        "A",
    )?;
    let ramp = ctx.opt("limits.ramp_w_per_s", l.ramp_w_per_s.as_ref(), 1.0, 1e7, "W/s")?;
    let pack = pack_limits(ctx, battery, charge_a, discharge_a)?;
    let defaults = ems_safety::SafetyConfig::default();
    let safety = pack
        .apply(
            import.map(watts).or(defaults.grid_import_limit),
            export.map(watts).or(defaults.grid_export_limit),
        )
        .map_err(|e| ctx.err_at_path(if battery.is_some() { "battery" } else { "limits" }, e.to_string()))?;
    safety.validate().map_err(|e| ctx.err_at_path("limits", e.to_string()))?;
    Ok(Limits { safety, pack, ramp: ramp.map(watts) })
}
