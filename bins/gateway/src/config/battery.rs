//! `[battery]`: the pack — chemistry preset, cells in series, strings in parallel, capacity —
//! and the cell limits the safety envelope enforces for it.
//!
//! Without a `[battery]` section the pack is the one `ems-safety`'s defaults describe (16 LFP
//! cells in series, 100 A each way), so site files written before this section still mean what
//! they meant.

use super::errors::{ConfigError, Ctx};
use ems_core::{Amps, Celsius, Percent, Volts, WattHours};
use ems_safety::{DeratingCurve, SafetyConfig};
use serde::Deserialize;
use std::fmt;
use toml::Spanned;

/// `[battery]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatterySection {
    /// `lfp` (default), `nmc` or `lto`: the preset cell window and temperature limits.
    pub chemistry: Option<Spanned<String>>,
    /// Cells in series (1..=1000, default 16); the pack window is the cell window × this.
    pub cells_in_series: Option<Spanned<i64>>,
    /// Strings of cells in parallel (1..=100, default 1).
    pub strings_in_parallel: Option<Spanned<i64>>,
    /// Usable capacity, Wh; with it the default pack currents follow the preset's C-rates.
    pub capacity_wh: Option<Spanned<f64>>,
    /// Highest cell voltage, V: the trip level (alarm 0.05 V, warning 0.10 V below it).
    pub cell_max_v: Option<Spanned<f64>>,
    /// Lowest cell voltage, V: the trip level (alarm 0.30 V, warning 0.40 V above it).
    pub cell_min_v: Option<Spanned<f64>>,
    /// No charging below this cell temperature, °C (the alarm of the low-temperature limit).
    pub charge_temp_min_c: Option<Spanned<f64>>,
    /// Charging is derated to zero at this cell temperature, °C.
    pub charge_temp_max_c: Option<Spanned<f64>>,
    /// Trip below this cell temperature, °C (discharge derates to zero there).
    pub discharge_temp_min_c: Option<Spanned<f64>>,
    /// Trip above this cell temperature, °C (alarm 5 °C, warning 10 °C below it).
    pub cell_temp_max_c: Option<Spanned<f64>>,
}

/// A cell chemistry with its preset limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chemistry {
    /// Lithium iron phosphate (LiFePO₄).
    Lfp,
    /// Lithium nickel manganese cobalt oxide.
    Nmc,
    /// Lithium titanate.
    Lto,
}

impl Chemistry {
    const ALL: [Self; 3] = [Self::Lfp, Self::Nmc, Self::Lto];

    /// The name in the site file.
    #[must_use]
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Self::Lfp => "lfp",
            Self::Nmc => "nmc",
            Self::Lto => "lto",
        }
    }

    /// The preset limits (typical datasheet values, see [`Preset`]).
    #[must_use]
    pub(crate) const fn preset(self) -> Preset {
        match self {
            // Exactly the defaults of `ems-safety` (`LimitConfig::for_site`, `DeratingConfig`),
            // which sit inside the windows of common 280 Ah prismatic LFP cells (CATL, EVE
            // LF280K datasheets: 2.5–3.65 V, charge 0–55 °C, discharge −20–60 °C, nominal 3.2 V,
            // 0.5 C standard / 1 C continuous).
            Self::Lfp => Preset {
                nominal_v: 3.2,
                cell_max_v: 3.65,
                cell_min_v: 2.50,
                charge_temp_min_c: 0.0,
                charge_temp_max_c: 50.0,
                discharge_temp_min_c: -20.0,
                cell_temp_max_c: 55.0,
                charge_c_rate: 1.0,
                discharge_c_rate: 1.0,
            },
            // Stationary and automotive NMC cells (Samsung SDI 94 Ah, LG E63 datasheets):
            // charge to 4.2 V, cut-off 2.7 V, nominal 3.65 V; charge 0–45 °C, discharge
            // −20–60 °C; storage modules rate them 0.5 C charge / 1 C discharge continuous.
            Self::Nmc => Preset {
                nominal_v: 3.65,
                cell_max_v: 4.20,
                cell_min_v: 2.70,
                charge_temp_min_c: 0.0,
                charge_temp_max_c: 45.0,
                discharge_temp_min_c: -20.0,
                cell_temp_max_c: 60.0,
                charge_c_rate: 0.5,
                discharge_c_rate: 1.0,
            },
            // Toshiba SCiB 20 Ah (LTO) datasheet: 1.5–2.7 V, nominal 2.3 V, operation −30–55 °C;
            // charging below −20 °C only at a small fraction of C, so the preset starts
            // charging at −20 °C; 4 C and more are allowed, the preset takes 2 C each way.
            Self::Lto => Preset {
                nominal_v: 2.3,
                cell_max_v: 2.70,
                cell_min_v: 1.50,
                charge_temp_min_c: -20.0,
                charge_temp_max_c: 50.0,
                discharge_temp_min_c: -30.0,
                cell_temp_max_c: 55.0,
                charge_c_rate: 2.0,
                discharge_c_rate: 2.0,
            },
        }
    }
}

impl fmt::Display for Chemistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The limits a chemistry brings (cell values; the pack's follow from cells in series).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Preset {
    /// Nominal cell voltage, V (capacity in Wh → Ah).
    pub nominal_v: f64,
    /// Highest cell voltage (trip), V.
    pub cell_max_v: f64,
    /// Lowest cell voltage (trip), V.
    pub cell_min_v: f64,
    /// No charging below, °C.
    pub charge_temp_min_c: f64,
    /// Charging derated to zero at, °C.
    pub charge_temp_max_c: f64,
    /// Trip below, °C.
    pub discharge_temp_min_c: f64,
    /// Trip above, °C.
    pub cell_temp_max_c: f64,
    /// Continuous charge current as a fraction of the capacity in Ah (1/h).
    pub charge_c_rate: f64,
    /// Continuous discharge current as a fraction of the capacity in Ah (1/h).
    pub discharge_c_rate: f64,
}

/// Where an effective limit came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The chemistry preset.
    Preset(Chemistry),
    /// The site file's key (e.g. `battery.cell_max_v`).
    Override(&'static str),
    /// The preset's C-rate × the capacity.
    CRate(Chemistry),
    /// The built-in default (no `[battery]` capacity, no `[limits]` current).
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Preset(c) => write!(f, "preset {c}"),
            Self::Override(key) => write!(f, "override {key}"),
            Self::CRate(c) => write!(f, "preset {c} C-rate × capacity"),
            Self::Default => f.write_str("default"),
        }
    }
}

/// A value and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Setting<T> {
    /// The effective value.
    pub value: T,
    /// Its origin.
    pub origin: Origin,
}

/// The pack's effective limits.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PackLimits {
    /// Whether the site file has a `[battery]` section.
    pub described: bool,
    /// The chemistry.
    pub chemistry: Chemistry,
    /// Cells in series.
    pub cells_in_series: u16,
    /// Strings in parallel.
    pub strings_in_parallel: u16,
    /// Usable capacity, if given.
    pub capacity: Option<WattHours>,
    /// Highest cell voltage (trip).
    pub cell_max: Setting<Volts>,
    /// Lowest cell voltage (trip).
    pub cell_min: Setting<Volts>,
    /// No charging below.
    pub charge_temp_min: Setting<Celsius>,
    /// Charging derated to zero at.
    pub charge_temp_max: Setting<Celsius>,
    /// Trip below.
    pub discharge_temp_min: Setting<Celsius>,
    /// Trip above.
    pub cell_temp_max: Setting<Celsius>,
    /// Pack maximum charge current.
    pub charge_current: Setting<Amps>,
    /// Pack maximum discharge current.
    pub discharge_current: Setting<Amps>,
}

/// The alarm and warning levels below the highest cell voltage, and the hysteresis, V (the
/// margins of the LFP defaults, kept for every chemistry).
const CELL_HIGH_ALARM_BELOW: f32 = 0.05;
const CELL_HIGH_WARN_BELOW: f32 = 0.10;
const CELL_HIGH_HYSTERESIS: f32 = 0.05;
/// Charging tapers from full power this far below the highest cell voltage to zero at its alarm.
const CELL_HIGH_TAPER: f32 = 0.20;
const CELL_LOW_ALARM_ABOVE: f32 = 0.30;
const CELL_LOW_WARN_ABOVE: f32 = 0.40;
const CELL_LOW_HYSTERESIS: f32 = 0.10;
/// Discharging tapers from zero at the low alarm to full power this far above it.
const CELL_LOW_TAPER: f32 = 0.20;
/// The highest pack voltage accepted: the low-voltage limit for DC (EU 2014/35/EU).
const PACK_MAX_V: f64 = 1500.0;

impl PackLimits {
    /// Highest pack voltage: highest cell voltage × cells in series.
    #[must_use]
    pub(crate) fn pack_max(&self) -> Volts {
        Volts::saturating(self.cell_max.value.get() * f32::from(self.cells_in_series))
    }

    /// Lowest pack voltage: lowest cell voltage × cells in series.
    #[must_use]
    pub(crate) fn pack_min(&self) -> Volts {
        Volts::saturating(self.cell_min.value.get() * f32::from(self.cells_in_series))
    }

    /// The safety configuration for this pack and the grid limits: the pack currents, and —
    /// for a pack the site file describes — its cell-voltage and temperature limits and the
    /// derating curves that follow from them. Without `[battery]` these are the `ems-safety`
    /// defaults, unchanged.
    ///
    /// # Errors
    /// A derating curve that these limits cannot form (unreachable for limits that
    /// [`pack_limits`] accepted); names the curve.
    pub(crate) fn apply(
        &self,
        grid_import_limit: Option<ems_core::Watts>,
        grid_export_limit: Option<ems_core::Watts>,
    ) -> Result<SafetyConfig, ems_safety::ConfigError> {
        let mut s = SafetyConfig::for_site(
            self.charge_current.value,
            self.discharge_current.value,
            grid_import_limit,
            grid_export_limit,
        );
        if !self.described {
            return Ok(s);
        }
        let v = |x: f32| Volts::saturating(x);
        let c = |x: f32| Celsius::saturating(x);
        let (vmax, vmin) = (self.cell_max.value.get(), self.cell_min.value.get());
        let high = &mut s.limits.cell_voltage_high;
        high.trip = Some(v(vmax));
        high.alarm = v(vmax - CELL_HIGH_ALARM_BELOW);
        high.warn = v(vmax - CELL_HIGH_WARN_BELOW);
        high.hysteresis = v(CELL_HIGH_HYSTERESIS);
        let low = &mut s.limits.cell_voltage_low;
        low.trip = Some(v(vmin));
        low.alarm = v(vmin + CELL_LOW_ALARM_ABOVE);
        low.warn = v(vmin + CELL_LOW_WARN_ABOVE);
        low.hysteresis = v(CELL_LOW_HYSTERESIS);
        let (tmax, cmin, cmax, dmin) = (
            self.cell_temp_max.value.get(),
            self.charge_temp_min.value.get(),
            self.charge_temp_max.value.get(),
            self.discharge_temp_min.value.get(),
        );
        let hot = &mut s.limits.cell_temp_high;
        hot.trip = Some(c(tmax));
        hot.alarm = c(tmax - 5.0);
        hot.warn = c(tmax - 10.0);
        let cold = &mut s.limits.cell_temp_low;
        cold.trip = Some(c(dmin));
        cold.alarm = c(cmin);
        cold.warn = c(cmin + 5.0);
        let (zero, full) = (Percent::ZERO, Percent::MAX);
        let d = &mut s.derating;
        d.charge_vs_temperature = DeratingCurve::new(
            &[(c(cmin), zero), (c(cmin + 10.0), full), (c(cmax - 10.0), full), (c(cmax), zero)],
            "derating.charge_vs_temperature",
        )?;
        d.discharge_vs_temperature = DeratingCurve::new(
            &[(c(dmin), zero), (c(dmin + 10.0), full), (c(tmax - 10.0), full), (c(tmax), zero)],
            "derating.discharge_vs_temperature",
        )?;
        d.charge_vs_cell_voltage = DeratingCurve::new(
            &[(v(vmax - CELL_HIGH_TAPER), full), (v(vmax - CELL_HIGH_ALARM_BELOW), zero)],
            "derating.charge_vs_cell_voltage",
        )?;
        d.discharge_vs_cell_voltage = DeratingCurve::new(
            &[
                (v(vmin + CELL_LOW_ALARM_ABOVE), zero),
                (v(vmin + CELL_LOW_ALARM_ABOVE + CELL_LOW_TAPER), full),
            ],
            "derating.discharge_vs_cell_voltage",
        )?;
        Ok(s)
    }

    /// The effective limits, one line each, with where each came from (`check-config`).
    #[must_use]
    pub(crate) fn describe(&self) -> Vec<String> {
        let origin = |o: &Origin| o.to_string();
        let mut out = vec![format!(
            "battery: {} {}s{}p{}{}",
            self.chemistry,
            self.cells_in_series,
            self.strings_in_parallel,
            self.capacity.map_or_else(String::new, |c| format!(", {} Wh", c.get())),
            if self.described { "" } else { " (no [battery] section: the LFP 16s defaults)" },
        )];
        out.push(format!(
            "  cell window {:.2}..={:.2} V ({} / {}), pack window {:.1}..={:.1} V (cells × {})",
            self.cell_min.value.get(),
            self.cell_max.value.get(),
            origin(&self.cell_min.origin),
            origin(&self.cell_max.origin),
            self.pack_min().get(),
            self.pack_max().get(),
            self.cells_in_series,
        ));
        for (what, s) in [
            ("charging from", &self.charge_temp_min),
            ("charging derated to zero at", &self.charge_temp_max),
            ("trip below", &self.discharge_temp_min),
            ("trip above", &self.cell_temp_max),
        ] {
            out.push(format!("  cell temperature: {what} {} °C ({})", s.value.get(), origin(&s.origin)));
        }
        for (what, s) in [("charge", &self.charge_current), ("discharge", &self.discharge_current)] {
            out.push(format!("  pack {what} current ≤ {} A ({})", s.value.get(), origin(&s.origin)));
        }
        out
    }
}

// Narrowing the validated f64 values to the f32 unit types: the ranges keep them exact enough.
#[allow(clippy::cast_possible_truncation)]
fn f32_of(x: f64) -> f32 {
    x as f32
}

/// One overridable limit: the file's value if given (checked against `min..=max`), else the
/// preset's.
fn limit(
    ctx: &Ctx<'_>,
    key: &'static str,
    v: Option<&Spanned<f64>>,
    preset: (Chemistry, f64),
    (min, max, unit): (f64, f64, &str),
) -> Result<(f64, Origin), ConfigError> {
    match v {
        Some(v) => Ok((ctx.number(key, v, min, max, unit)?, Origin::Override(key))),
        None => Ok((preset.1, Origin::Preset(preset.0))),
    }
}

/// An integer key in `1..=max`, or its default.
fn count(
    ctx: &Ctx<'_>,
    key: &str,
    v: Option<&Spanned<i64>>,
    max: u16,
    default: u16,
) -> Result<u16, ConfigError> {
    let Some(v) = v else { return Ok(default) };
    let x = *v.get_ref();
    u16::try_from(x)
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| ctx.err(key, v, format!("must be 1..={max}")).with_value(x))
}

/// The effective pack limits of `[battery]` (absent: the LFP 16s defaults) and the pack
/// currents of `[limits]` (`charge_a`, `discharge_a`, already validated).
pub(super) fn pack_limits(
    ctx: &Ctx<'_>,
    b: Option<&BatterySection>,
    charge_a: Option<f64>,
    discharge_a: Option<f64>,
) -> Result<PackLimits, ConfigError> {
    let section = b.cloned().unwrap_or_default();
    let chemistry = match &section.chemistry {
        None => Chemistry::Lfp,
        Some(c) => Chemistry::ALL.into_iter().find(|x| x.name() == c.get_ref()).ok_or_else(|| {
            ctx.err("battery.chemistry", c, "is not one of lfp, nmc, lto".to_owned())
                .with_value(format!("\"{}\"", c.get_ref()))
        })?,
    };
    let p = chemistry.preset();
    let cells = count(ctx, "battery.cells_in_series", section.cells_in_series.as_ref(), 1000, 16)?;
    let strings = count(ctx, "battery.strings_in_parallel", section.strings_in_parallel.as_ref(), 100, 1)?;
    let capacity = ctx.opt("battery.capacity_wh", section.capacity_wh.as_ref(), 100.0, 1e8, "Wh")?;
    let volts = (0.5, 5.0, "V");
    let temps = (-60.0, 100.0, "°C");
    let at = |x: f64| (chemistry, x);
    let vmax = limit(ctx, "battery.cell_max_v", section.cell_max_v.as_ref(), at(p.cell_max_v), volts)?;
    let vmin = limit(ctx, "battery.cell_min_v", section.cell_min_v.as_ref(), at(p.cell_min_v), volts)?;
    let cmin = limit(
        ctx,
        "battery.charge_temp_min_c",
        section.charge_temp_min_c.as_ref(),
        at(p.charge_temp_min_c),
        temps,
    )?;
    let cmax = limit(
        ctx,
        "battery.charge_temp_max_c",
        section.charge_temp_max_c.as_ref(),
        at(p.charge_temp_max_c),
        temps,
    )?;
    let dmin = limit(
        ctx,
        "battery.discharge_temp_min_c",
        section.discharge_temp_min_c.as_ref(),
        at(p.discharge_temp_min_c),
        temps,
    )?;
    let tmax = limit(
        ctx,
        "battery.cell_temp_max_c",
        section.cell_temp_max_c.as_ref(),
        at(p.cell_temp_max_c),
        temps,
    )?;
    check_order(ctx, &section, [vmax.0, vmin.0, cmin.0, cmax.0, dmin.0, tmax.0], cells)?;
    let ah = capacity.map(|wh| wh / (p.nominal_v * f64::from(cells)));
    let current = |given: Option<f64>, key: &'static str, c_rate: f64| match (given, ah) {
        (Some(a), _) => (a, Origin::Override(key)),
        (None, Some(ah)) => ((ah * c_rate).clamp(1.0, 5000.0), Origin::CRate(chemistry)),
        (None, None) => (f64::from(ems_safety::limits::DEFAULT_PACK_MAX_CURRENT.get()), Origin::Default),
    };
    let charge = current(charge_a, "limits.pack_max_charge_current_a", p.charge_c_rate);
    let discharge = current(discharge_a, "limits.pack_max_discharge_current_a", p.discharge_c_rate);
    let volts = |(x, origin): (f64, Origin)| Setting { value: Volts::saturating(f32_of(x)), origin };
    let celsius = |(x, origin): (f64, Origin)| Setting { value: Celsius::saturating(f32_of(x)), origin };
    let amps = |(x, origin): (f64, Origin)| Setting { value: Amps::saturating(f32_of(x)), origin };
    Ok(PackLimits {
        described: b.is_some(),
        chemistry,
        cells_in_series: cells,
        strings_in_parallel: strings,
        capacity: capacity.map(|c| WattHours::saturating(f32_of(c))),
        cell_max: volts(vmax),
        cell_min: volts(vmin),
        charge_temp_min: celsius(cmin),
        charge_temp_max: celsius(cmax),
        discharge_temp_min: celsius(dmin),
        cell_temp_max: celsius(tmax),
        charge_current: amps(charge),
        discharge_current: amps(discharge),
    })
}

/// The limits must leave room for the levels and curves derived from them.
fn check_order(
    ctx: &Ctx<'_>,
    b: &BatterySection,
    [vmax, vmin, cmin, cmax, dmin, tmax]: [f64; 6],
    cells: u16,
) -> Result<(), ConfigError> {
    let at = |key: &str, v: Option<&Spanned<f64>>, value: f64, message: String| {
        ctx.err_opt(key, v, message).with_value(value)
    };
    let margin = f64::from(CELL_LOW_ALARM_ABOVE + CELL_HIGH_TAPER) + 0.2;
    if vmax - vmin < margin {
        return Err(at(
            "battery.cell_max_v",
            b.cell_max_v.as_ref().or(b.cell_min_v.as_ref()),
            vmax,
            format!("must be at least {margin:.1} V above cell_min_v ({vmin} V)"),
        ));
    }
    let pack = vmax * f64::from(cells);
    if pack > PACK_MAX_V {
        return Err(ctx
            .err_opt(
                "battery.cells_in_series",
                b.cells_in_series.as_ref(),
                format!("gives a pack maximum of {pack:.0} V ({vmax} V × {cells}), above {PACK_MAX_V} V"),
            )
            .with_value(cells));
    }
    if cmax - cmin < 20.0 {
        return Err(at(
            "battery.charge_temp_max_c",
            b.charge_temp_max_c.as_ref().or(b.charge_temp_min_c.as_ref()),
            cmax,
            format!("must be at least 20 °C above charge_temp_min_c ({cmin} °C)"),
        ));
    }
    if tmax < cmax || tmax - dmin < 20.0 || dmin > cmin {
        return Err(at(
            "battery.cell_temp_max_c",
            b.cell_temp_max_c.as_ref().or(b.discharge_temp_min_c.as_ref()),
            tmax,
            format!(
                "needs discharge_temp_min_c ({dmin} °C) ≤ charge_temp_min_c ({cmin} °C), charge_temp_max_c ({cmax} °C) ≤ cell_temp_max_c, and cell_temp_max_c at least 20 °C above discharge_temp_min_c"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::{parse, ConfigError, Origin, SiteConfig};
    use std::path::Path;

    fn with_battery(battery: &str) -> Result<SiteConfig, ConfigError> {
        with_limits(battery, "")
    }

    /// The example site without its pack currents, plus `limits` in `[limits]` and the
    /// `battery` section.
    fn with_limits(battery: &str, limits: &str) -> Result<SiteConfig, ConfigError> {
        let profile = concat!(env!("CARGO_MANIFEST_DIR"), "/../../devices/profiles/eastron-sdm630.toml");
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/site.toml"))
            .unwrap()
            .replace("../devices/profiles/eastron-sdm630.toml", profile)
            .replace("pack_max_charge_current_a = 100\npack_max_discharge_current_a = 100\n", limits);
        let start = text.find("# The battery pack.").unwrap();
        let end = text.find("#   capacity_wh = 20000\n").unwrap() + "#   capacity_wh = 20000\n".len();
        let text = format!("{}{}", &text[..start], &text[end..]);
        parse(Path::new("site.toml"), &format!("{battery}\n{text}"))
    }

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() < 1e-4
    }

    #[test]
    fn without_a_battery_section_the_limits_are_the_lfp_16s_defaults() {
        let c = with_battery("").unwrap();
        let d = ems_safety::SafetyConfig::for_site(
            ems_core::amps!(100.0),
            ems_core::amps!(100.0),
            c.controller.safety.grid_import_limit,
            c.controller.safety.grid_export_limit,
        );
        assert_eq!(c.controller.safety, d);
        assert_eq!((c.pack.cells_in_series, c.pack.described), (16, false));
        // The LFP preset written out derives the same levels and curves.
        let lfp = with_battery("[battery]\nchemistry = \"lfp\"\ncells_in_series = 16\n").unwrap();
        let (a, b) = (&lfp.controller.safety.limits, &d.limits);
        for (x, y) in [
            (a.cell_voltage_high.trip.unwrap().get(), b.cell_voltage_high.trip.unwrap().get()),
            (a.cell_voltage_high.alarm.get(), b.cell_voltage_high.alarm.get()),
            (a.cell_voltage_high.warn.get(), b.cell_voltage_high.warn.get()),
            (a.cell_voltage_low.trip.unwrap().get(), b.cell_voltage_low.trip.unwrap().get()),
            (a.cell_voltage_low.alarm.get(), b.cell_voltage_low.alarm.get()),
            (a.cell_voltage_low.warn.get(), b.cell_voltage_low.warn.get()),
            (a.cell_temp_high.trip.unwrap().get(), b.cell_temp_high.trip.unwrap().get()),
            (a.cell_temp_low.alarm.get(), b.cell_temp_low.alarm.get()),
            (a.cell_temp_low.trip.unwrap().get(), b.cell_temp_low.trip.unwrap().get()),
        ] {
            assert!(close(x, y), "{x} != {y}");
        }
        let (a, b) = (&lfp.controller.safety.derating, &d.derating);
        for (p, q) in [
            (a.charge_vs_temperature.points(), b.charge_vs_temperature.points()),
            (a.discharge_vs_temperature.points(), b.discharge_vs_temperature.points()),
        ] {
            assert!(p.iter().zip(q).all(|(p, q)| close(p.0.get(), q.0.get()) && p.1 == q.1), "{p:?} {q:?}");
        }
        assert!(a
            .charge_vs_cell_voltage
            .points()
            .iter()
            .zip(b.charge_vs_cell_voltage.points())
            .all(|(p, q)| close(p.0.get(), q.0.get())));
    }

    #[test]
    fn a_400_v_nmc_pack_gets_its_own_window_temperatures_and_currents() {
        let c = with_battery(
            "[battery]\nchemistry = \"nmc\"\ncells_in_series = 112\nstrings_in_parallel = 1\ncapacity_wh = 20000\ncell_max_v = 4.15\n",
        )
        .unwrap();
        let p = &c.pack;
        // The controller gets the capacity for grid-service energy reserves.
        assert_eq!(c.controller.capacity, Some(ems_core::watt_hours!(20000.0)));
        assert!(
            close(p.cell_max.value.get(), 4.15)
                && p.cell_max.origin == Origin::Override("battery.cell_max_v")
        );
        assert!(close(p.cell_min.value.get(), 2.70) && p.cell_min.origin.to_string() == "preset nmc");
        assert!(close(p.pack_max().get(), 464.8) && close(p.pack_min().get(), 302.4), "{:?}", p.pack_max());
        // 20 kWh / (3.65 V × 112) = 48.9 Ah: 0.5 C charge, 1 C discharge.
        assert!((p.charge_current.value.get() - 24.46).abs() < 0.01, "{:?}", p.charge_current);
        assert!((p.discharge_current.value.get() - 48.92).abs() < 0.01, "{:?}", p.discharge_current);
        let s = &c.controller.safety;
        assert!(close(s.limits.cell_voltage_high.trip.unwrap().get(), 4.15));
        assert!(close(s.limits.cell_voltage_high.alarm.get(), 4.10));
        assert!(close(s.limits.cell_voltage_low.alarm.get(), 3.00));
        assert!(close(s.limits.cell_temp_high.trip.unwrap().get(), 60.0));
        assert!((s.pack_max_charge_current.get() - 24.46).abs() < 0.01);
        let text = p.describe().join("\n");
        assert!(
            text.contains("pack window 302.4..=464.8 V") && text.contains("override battery.cell_max_v"),
            "{text}"
        );
        // [limits] currents win over the C-rate.
        let c = with_limits(
            "[battery]\nchemistry = \"nmc\"\ncells_in_series = 108\ncapacity_wh = 20000\n",
            "pack_max_charge_current_a = 30\n",
        )
        .unwrap();
        assert!(close(c.pack.charge_current.value.get(), 30.0));
        assert_eq!(c.pack.charge_current.origin, Origin::Override("limits.pack_max_charge_current_a"));
    }

    #[test]
    fn a_48_v_lfp_pack_and_its_errors() {
        let c = with_battery("[battery]\nchemistry = \"lfp\"\ncells_in_series = 16\ncapacity_wh = 10240\n")
            .unwrap();
        assert!(close(c.pack.pack_max().get(), 58.4) && close(c.pack.pack_min().get(), 40.0));
        assert!(close(c.pack.charge_current.value.get(), 200.0), "{:?}", c.pack.charge_current);
        let err = |b: &str| with_battery(b).unwrap_err().to_string();
        let e = err("[battery]\ncells_in_series = 0\n");
        assert_eq!(e, "site.toml line 2: battery.cells_in_series = 0: must be 1..=1000");
        let e = err("[battery]\nchemistry = \"lead\"\n");
        assert!(e.contains("battery.chemistry = \"lead\": is not one of lfp, nmc, lto"), "{e}");
        let e = err("[battery]\nchemistry = \"nmc\"\ncells_in_series = 400\n");
        assert!(e.contains("battery.cells_in_series = 400") && e.contains("1680 V"), "{e}");
        let e = err("[battery]\ncell_max_v = 3.0\n");
        assert!(e.contains("battery.cell_max_v = 3") && e.contains("above cell_min_v"), "{e}");
        let e = err("[battery]\ncharge_temp_min_c = 45\n");
        assert!(e.contains("battery.charge_temp_max_c") && e.contains("charge_temp_min_c (45"), "{e}");
        let e = err("[battery]\ncell_max_v = 9\n");
        assert!(e.contains("battery.cell_max_v: 9 V is outside 0.5..=5 V"), "{e}");
    }
}
