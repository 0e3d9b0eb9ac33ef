//! `[economics]`: live economics on the site — the tariff, the price sources, the site's
//! location and PV array (for the clear-sky PV forecast, sunset and the calendar), re-planning
//! interval, horizon and degradation cost. The same section comes from the site file (`run
//! --config`) or, for the built-in simulated site, from `--economics FILE`.
//!
//! The planner's battery model is derived from the site's own limits and is never wider than the
//! safety envelope's static limits: the SOC window lies inside the SOC warning levels, the
//! powers are at most the pack's current limits at nominal voltage and the grid connection's.

use super::errors::{ConfigError, Ctx};
use ems_core::{WattHours, Watts};
use ems_strategies::optimizer::Problem;
use ems_strategies::prices::{PriceFeed, SourceConfig};
use ems_strategies::tariff::Tariff;
use ems_strategies::{Price, Ratio};
use jiff::tz::TimeZone;
use jiff::SignedDuration;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// `[economics]` (the keys of issue #12 are an interface; more may be added).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EconomicsSection {
    /// The tariff file (the `ems-strategies` tariff TOML), relative to this file.
    pub tariff: Spanned<String>,
    /// The site's latitude, degrees north (−90..=90).
    pub latitude: Spanned<f64>,
    /// The site's longitude, degrees east (−180..=180).
    pub longitude: Spanned<f64>,
    /// PV peak power (DC), W (0..=10 MW; 0 or absent: no PV).
    pub pv_peak_w: Option<Spanned<f64>>,
    /// PV azimuth, degrees clockwise from north (180 = south; default 180).
    pub pv_azimuth_deg: Option<Spanned<f64>>,
    /// PV tilt from horizontal, degrees (0..=90; default 30).
    pub pv_tilt_deg: Option<Spanned<f64>>,
    /// Re-plan every this many minutes (1..=240; default 15).
    pub replan_minutes: Option<Spanned<i64>>,
    /// Planning horizon, hours (1..=168; default 36).
    pub horizon_hours: Option<Spanned<i64>>,
    /// Battery wear, currency per kWh of AC throughput (0..=10; default 0).
    pub degradation_cost: Option<Spanned<f64>>,
    /// The site's IANA time zone for the calendar (default: `[site] time_zone`, else the
    /// tariff's).
    pub time_zone: Option<Spanned<String>>,
    /// Re-plan when the measured SOC is this many percentage points off the plan (1..=100;
    /// default 10).
    pub soc_off_plan_percent: Option<Spanned<f64>>,
    /// A plan is acted on only when it beats plain self-consumption on its own forecast by at
    /// least this, in the tariff's currency over the horizon (-1000..=1000; default 0.03;
    /// negative: act on every plan).
    pub plan_margin: Option<Spanned<f64>>,
    /// The plan uses the PV forecast × this (0..=2; default 0.85, a cautious quantile).
    pub pv_factor: Option<Spanned<f64>>,
    /// The plan uses the load forecast × this (0..=3; default 1.05).
    pub load_factor: Option<Spanned<f64>>,
    /// An irradiance forecast in the Open-Meteo JSON shape (`hourly.time`,
    /// `hourly.shortwave_radiation`), fetched every hour; optional.
    pub irradiance_url: Option<Spanned<String>>,
    /// The operator rules file, relative to this file; optional (rules may also be set over the
    /// API).
    pub rules: Option<Spanned<String>>,
    /// The price sources, in order of preference (`[[economics.prices]]`).
    #[serde(default)]
    pub prices: Vec<Spanned<SourceConfig>>,
}

/// A file holding only `[economics]` (`ems-gateway --economics FILE` on the simulated site).
#[cfg(feature = "sim")]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct EconomicsFile {
    economics: EconomicsSection,
}

/// What the site's limits say about the battery, for the planner's model.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatteryLimits {
    /// Usable capacity.
    pub capacity: Option<WattHours>,
    /// Largest charge power the envelope's static limits allow.
    pub max_charge: Watts,
    /// Largest discharge power the envelope's static limits allow.
    pub max_discharge: Watts,
    /// SOC below which the safety monitor warns (the plan stays above it).
    pub soc_low_warn: f64,
    /// SOC above which the safety monitor warns (the plan stays below it).
    pub soc_high_warn: f64,
    /// Grid import limit, if any.
    pub grid_import: Option<Watts>,
    /// Grid export limit, if any.
    pub grid_export: Option<Watts>,
}

/// `[economics]`, validated.
#[derive(Debug, Clone)]
pub(crate) struct EconomicsWiring {
    /// The tariff.
    pub tariff: Tariff,
    /// The site's time zone.
    pub time_zone: TimeZone,
    /// Latitude, degrees north.
    pub latitude: f64,
    /// Longitude, degrees east.
    pub longitude: f64,
    /// PV peak power.
    pub pv_peak: Watts,
    /// PV azimuth, degrees.
    pub pv_azimuth: f64,
    /// PV tilt, degrees.
    pub pv_tilt: f64,
    /// Re-planning interval.
    pub replan: SignedDuration,
    /// Planning horizon.
    pub horizon: SignedDuration,
    /// The planner's battery model (its `soc_init` is replaced by the measured SOC).
    pub problem: Problem,
    /// Re-plan when the SOC is this far off the plan.
    pub soc_off_plan: Ratio,
    /// Plan execution: the margin over self-consumption and the cautious forecast factors.
    pub plan_margin: ems_strategies::Money,
    /// The PV forecast factor of the plan.
    pub pv_factor: ems_strategies::Factor,
    /// The load forecast factor of the plan.
    pub load_factor: ems_strategies::Factor,
    /// Open-Meteo irradiance forecast URL.
    pub irradiance_url: Option<String>,
    /// The rules file, resolved.
    pub rules: Option<PathBuf>,
    /// `[[economics.prices]]`, in order of preference, validated.
    pub prices: Vec<SourceConfig>,
    /// Where relative paths of the price sources are resolved.
    pub base_dir: PathBuf,
}

/// Read `--economics FILE`: a file with an `[economics]` table only.
#[cfg(feature = "sim")]
///
/// # Errors
/// The file cannot be read or any error of [`economics`], naming file, line, field and value.
pub(crate) fn load_file(
    path: &Path,
    site_tz: Option<&TimeZone>,
    battery: &BatteryLimits,
) -> Result<EconomicsWiring, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| ConfigError::new(path, format!("cannot read: {e}")))?;
    let ctx = Ctx::new(ems_tomlfile::Source::new(path, &text));
    let file: EconomicsFile = ctx.src.decode(&["economics"])?;
    economics(&ctx, &file.economics, site_tz, battery)
}

fn resolve(ctx: &Ctx<'_>, p: &str) -> PathBuf {
    super::paths::resolve(ctx.file(), p)
}

/// Validate `[economics]`.
pub(super) fn economics(
    ctx: &Ctx<'_>,
    e: &EconomicsSection,
    site_tz: Option<&TimeZone>,
    battery: &BatteryLimits,
) -> Result<EconomicsWiring, ConfigError> {
    let tariff_path = resolve(ctx, e.tariff.get_ref());
    let tariff = Tariff::load(&tariff_path)
        .map_err(|err| ctx.err("economics.tariff", &e.tariff, format!("'{}': {err}", e.tariff.get_ref())))?;
    let latitude = ctx.number("economics.latitude", &e.latitude, -90.0, 90.0, "°")?;
    let longitude = ctx.number("economics.longitude", &e.longitude, -180.0, 180.0, "°")?;
    let pv_peak = ctx.opt("economics.pv_peak_w", e.pv_peak_w.as_ref(), 0.0, 1e7, "W")?.unwrap_or(0.0);
    let pv_azimuth =
        ctx.opt("economics.pv_azimuth_deg", e.pv_azimuth_deg.as_ref(), 0.0, 360.0, "°")?.unwrap_or(180.0);
    let pv_tilt = ctx.opt("economics.pv_tilt_deg", e.pv_tilt_deg.as_ref(), 0.0, 90.0, "°")?.unwrap_or(30.0);
    let replan = match &e.replan_minutes {
        Some(v) => ctx.int("economics.replan_minutes", v, 1, 240, " min")?,
        None => 15,
    };
    let horizon = match &e.horizon_hours {
        Some(v) => ctx.int("economics.horizon_hours", v, 1, 168, " h")?,
        None => 36,
    };
    let degradation = ctx
        .opt("economics.degradation_cost", e.degradation_cost.as_ref(), 0.0, 10.0, "per kWh")?
        .unwrap_or(0.0);
    let soc_off = ctx
        .opt("economics.soc_off_plan_percent", e.soc_off_plan_percent.as_ref(), 1.0, 100.0, "%")?
        .unwrap_or(10.0);
    let plan_margin =
        ctx.opt("economics.plan_margin", e.plan_margin.as_ref(), -1000.0, 1000.0, "")?.unwrap_or(0.03);
    let pv_factor = ctx.opt("economics.pv_factor", e.pv_factor.as_ref(), 0.0, 2.0, "")?.unwrap_or(0.85);
    let load_factor = ctx.opt("economics.load_factor", e.load_factor.as_ref(), 0.0, 3.0, "")?.unwrap_or(1.05);
    let time_zone = match &e.time_zone {
        Some(tz) => TimeZone::get(tz.get_ref()).map_err(|err| {
            ctx.err("economics.time_zone", tz, format!("'{}' is not a known time zone: {err}", tz.get_ref()))
        })?,
        None => site_tz.cloned().unwrap_or_else(|| tariff.time_zone().clone()),
    };
    let irradiance_url = match &e.irradiance_url {
        Some(u) if !(u.get_ref().starts_with("http://") || u.get_ref().starts_with("https://")) => {
            return Err(ctx.err(
                "economics.irradiance_url",
                u,
                format!("'{}' is not an http(s) URL", u.get_ref()),
            ));
        }
        Some(u) => Some(u.get_ref().clone()),
        None => None,
    };
    let rules = match &e.rules {
        Some(r) => {
            let p = resolve(ctx, r.get_ref());
            if !p.is_file() {
                return Err(ctx.err("economics.rules", r, format!("'{}' is not a file", p.display())));
            }
            Some(p)
        }
        None => None,
    };
    let problem = planner_model(ctx, battery, degradation)?;
    let base_dir = ctx.file().parent().map_or_else(PathBuf::new, Path::to_path_buf);
    let prices: Vec<SourceConfig> = e.prices.iter().map(|p| p.get_ref().clone()).collect();
    // Building the feed checks every entry as the planner will use it (kinds and their fields,
    // URLs, the ENTSO-E zone and token); nothing is fetched.
    if let Err(err) = PriceFeed::from_configs(&prices, &base_dir) {
        let at = err.entry.and_then(|i| e.prices.get(i));
        return Err(ctx.err_opt(
            &format!("economics.prices[{}].{}", err.entry.unwrap_or(0), err.field),
            at,
            err.problem,
        ));
    }
    #[allow(clippy::cast_possible_wrap)] // bounded above: ≤ 240 min, ≤ 168 h
    let (replan, horizon) =
        (SignedDuration::from_mins(replan as i64), SignedDuration::from_hours(horizon as i64));
    Ok(EconomicsWiring {
        tariff,
        time_zone,
        latitude,
        longitude,
        pv_peak: super::limits::watts(pv_peak),
        pv_azimuth,
        pv_tilt,
        replan,
        horizon,
        problem,
        soc_off_plan: Ratio::try_new(soc_off / 100.0).unwrap_or(ems_strategies::ratio!(0.1)),
        plan_margin: ems_strategies::Money::new(plan_margin),
        pv_factor: ems_strategies::Factor::saturating(pv_factor),
        load_factor: ems_strategies::Factor::saturating(load_factor),
        irradiance_url,
        rules,
        prices,
        base_dir,
    })
}

/// The planner's model narrowed by what sold grid services reserve (issue #13: the plan plans
/// around the reservations): the powers by the reserved headroom, the SOC window by the reserved
/// energy each way (never inverted: an over-reserved window shrinks to its middle).
pub(crate) fn reserve_for_grid_services(problem: &mut Problem, reserve: ems_control::Reserve) {
    let cap = f64::from(problem.capacity_wh.get());
    let less = |w: Watts, r: Watts| (w - r.abs()).max(Watts::ZERO);
    problem.charge_max_w = less(problem.charge_max_w, reserve.charge);
    problem.discharge_max_w = less(problem.discharge_max_w, reserve.discharge);
    if cap > 0.0 {
        let lo = problem.soc_min.get() + f64::from(reserve.energy_for_discharge.abs().get()) / cap;
        let hi = problem.soc_max.get() - f64::from(reserve.energy_for_charge.abs().get()) / cap;
        let (lo, hi) = if lo <= hi {
            (lo, hi)
        } else {
            let mid = (problem.soc_min.get() + problem.soc_max.get()) / 2.0;
            (mid, mid)
        };
        problem.soc_min = Ratio::saturating(lo);
        problem.soc_max = Ratio::saturating(hi);
        problem.soc_init = problem.soc_min;
        problem.soc_final = problem.soc_min;
    }
}

/// The planner's battery model from the site's limits (never wider than the envelope's static
/// limits): the SOC window one point inside the warning levels, the powers at most the pack's
/// and the grid connection's.
fn planner_model(ctx: &Ctx<'_>, b: &BatteryLimits, degradation: f64) -> Result<Problem, ConfigError> {
    let Some(capacity) = b.capacity else {
        return Err(ctx.err_at_path(
            "battery.capacity_wh",
            "[economics] needs the battery's usable capacity: set [battery] capacity_wh".to_owned(),
        ));
    };
    let soc_min = ((b.soc_low_warn + 1.0) / 100.0).clamp(0.0, 1.0);
    let soc_max = ((b.soc_high_warn) / 100.0).clamp(soc_min, 1.0);
    let cap = |w: Watts, grid: Option<Watts>| grid.map_or(w, |g| w.min(g));
    let ratio = |x: f64| Ratio::try_new(x).unwrap_or(Ratio::ZERO);
    Ok(Problem {
        capacity_wh: capacity,
        charge_max_w: cap(b.max_charge, b.grid_import),
        discharge_max_w: cap(b.max_discharge, b.grid_export.map(|e| e + b.max_discharge)),
        soc_min: ratio(soc_min),
        soc_max: ratio(soc_max),
        soc_init: ratio(soc_min),
        soc_final: ratio(soc_min),
        grid_import_max_w: b.grid_import.unwrap_or(ems_core::watts!(1.0e7)),
        grid_export_max_w: b.grid_export.unwrap_or(ems_core::watts!(1.0e7)),
        // Validated finite above.
        degradation_cost: Price::new(degradation),
        ..Problem::default()
    })
}

#[cfg(test)]
mod tests {
    use crate::config::parse;
    use std::path::Path;

    /// The example site file with `[economics]` (its relative paths resolved from `examples/`).
    fn site(economics: &str) -> String {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
        let profile = format!("{root}/devices/profiles/eastron-sdm630.toml");
        let text = std::fs::read_to_string(format!("{root}/examples/site.toml")).unwrap();
        let text = text.replace("../devices/profiles/eastron-sdm630.toml", &profile);
        format!("{text}\n[economics]\ntariff = \"{root}/examples/tariffs/dynamic-live.toml\"\n{economics}")
    }

    fn error(economics: &str) -> String {
        parse(Path::new("site.toml"), &site(economics)).unwrap_err().to_string()
    }

    #[test]
    fn a_valid_section_gives_the_planner_a_model_inside_the_site_limits() {
        let text = site("latitude = 52.52\nlongitude = 13.40\npv_peak_w = 6000\nreplan_minutes = 5\n[[economics.prices]]\nkind = \"awattar\"\n[[economics.prices]]\nkind = \"push\"\n");
        let c = parse(Path::new("site.toml"), &text).unwrap();
        let e = c.economics.unwrap();
        assert_eq!(e.replan, jiff::SignedDuration::from_mins(5));
        assert_eq!(e.horizon, jiff::SignedDuration::from_hours(36));
        assert_eq!(e.prices.len(), 2);
        assert_eq!(e.time_zone.iana_name(), Some("Europe/Berlin"));
        // Inside the SOC warning levels (10 % / 95 % by default) and the pack's static limits.
        let p = e.problem;
        assert!(p.soc_min.get() > 0.10 && p.soc_max.get() <= 0.95, "{p:?}");
        assert_eq!(p.capacity_wh, c.pack.capacity.unwrap());
        let pack_max = c.controller.safety.pack_max_charge_current.get() * 16.0 * 3.2;
        assert!(p.charge_max_w.get() <= pack_max + 1.0, "{p:?}");
    }

    #[test]
    fn the_plan_plans_around_what_sold_grid_services_reserve() {
        let economics = "latitude = 52.52\nlongitude = 13.40\n[[economics.prices]]\nkind = \"push\"\n";
        let without = parse(Path::new("site.toml"), &site(economics)).unwrap().economics.unwrap().problem;
        // FCR-N 1 kW: (1 + 0.34) kW and 1 kWh each way; FCR-D up 600 W: 600 W and 200 Wh of
        // discharge.
        let services = "[grid_services]\n[grid_services.frequency]\nsource = \"simulated\"\n\
                        [grid_services.fcr_n]\ncapacity_w = 1000\n[grid_services.fcr_d_up]\ncapacity_w = 600\n";
        let text = format!("{}\n{services}", site(economics));
        let with = parse(Path::new("site.toml"), &text).unwrap().economics.unwrap().problem;
        let close = |a: f32, b: f32| (a - b).abs() < 0.5;
        assert!(close(with.charge_max_w.get(), without.charge_max_w.get() - 1340.0), "{with:?}");
        assert!(close(with.discharge_max_w.get(), without.discharge_max_w.get() - 1940.0), "{with:?}");
        let cap = f64::from(with.capacity_wh.get());
        assert!((with.soc_min.get() - (without.soc_min.get() + 1200.0 / cap)).abs() < 1e-6, "{with:?}");
        assert!((with.soc_max.get() - (without.soc_max.get() - 1000.0 / cap)).abs() < 1e-6, "{with:?}");
    }

    #[test]
    fn errors_name_the_field_and_the_value() {
        let e = error("latitude = 95\nlongitude = 13.4\n");
        assert!(e.contains("economics.latitude") && e.contains("95"), "{e}");
        let e = error("latitude = 52\nlongitude = 13.4\nreplan_minutes = 0\n");
        assert!(e.contains("economics.replan_minutes: 0 min is outside 1..=240 min"), "{e}");
        let e = error("latitude = 52\nlongitude = 13.4\nhorizon_hours = 500\n");
        assert!(e.contains("economics.horizon_hours") && e.contains("500"), "{e}");
        let e = error(
            "latitude = 52\nlongitude = 13.4\n[[economics.prices]]\nkind = \"entsoe\"\ntoken = \"t\"\n",
        );
        assert!(e.contains("economics.prices[0].zone") && e.contains("missing"), "{e}");
        let e = error("latitude = 52\nlongitude = 13.4\n[[economics.prices]]\nkind = \"smard\"\n");
        assert!(e.contains("smard"), "{e}");
        let e = error("latitude = 52\nlongitude = 13.4\ncolour = 3\n");
        assert!(e.contains("colour"), "{e}");
        let e = error("latitude = 52\nlongitude = 13.4\ntime_zone = \"Mars/Olympus\"\n");
        assert!(e.contains("economics.time_zone") && e.contains("Mars/Olympus"), "{e}");
        let e = error("latitude = 52\nlongitude = 13.4\nrules = \"nope.toml\"\n");
        assert!(e.contains("economics.rules") && e.contains("nope.toml"), "{e}");
        let bad_tariff =
            site("latitude = 52\nlongitude = 13.4\n").replace("dynamic-live.toml", "missing.toml");
        let e = parse(Path::new("site.toml"), &bad_tariff).unwrap_err().to_string();
        assert!(e.contains("economics.tariff") && e.contains("missing.toml"), "{e}");
    }

    #[test]
    fn economics_needs_the_battery_capacity() {
        let text = site("latitude = 52\nlongitude = 13.4\n");
        let text = text.replace("capacity_wh = 10240", "");
        let e = parse(Path::new("site.toml"), &text).unwrap_err().to_string();
        assert!(e.contains("battery.capacity_wh"), "{e}");
    }
}
