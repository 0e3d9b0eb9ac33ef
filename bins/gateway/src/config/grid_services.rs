//! `[grid_services]`: the frequency services the site runs (issue #13): the frequency source,
//! the parameter set, the services with their capacities, and the fast path's tick.
//!
//! ```toml
//! [grid_services]
//! parameter_set = "nordic-2025-v1.1"   # or "nordic-2023-v1.0"
//! fast_period_ms = 100                 # 10..=100 (≥ 10 Hz)
//!
//! [grid_services.frequency]
//! source = "modbus"                    # "modbus" | "simulated" ("meter" is refused: see below)
//! endpoint = "modbus-tcp://192.0.2.10:502"
//! unit_id = 1
//! table = "input"                      # "input" | "holding"
//! address = 70                         # 0-based
//! type = "f32"                         # u16 i16 u32 i32 f32
//! word_order = "big"
//! scale = 1.0
//! units = "Hz"                         # "Hz" | "mHz"
//! max_age_ms = 300
//! # signal = "dip"                     # source = "simulated" only: "nominal" | "dip" | "sine"
//!
//! [grid_services.fcr_n]
//! capacity_w = 1000
//! [grid_services.fcr_d_up]
//! capacity_w = 1000
//! [grid_services.ffr]
//! capacity_w = 1000
//! level_hz = 49.5                      # 49.7 | 49.6 | 49.5
//! support = "short"                    # "short" | "long"
//! [grid_services.droop]
//! kind = "lfsm-ou"                     # "lfsm-o" | "lfsm-u" | "lfsm-ou" | "ieee1547"
//! droop_pct = 5                        # 2..=12
//!
//! [grid_services.compliance_log]       # the TSO's log in operation (docs/GRID.md)
//! dir = "svk-log"                      # relative to this file
//! retention_days = 14                  # 14..=3650
//! sanity_tolerance_w = 100             # default 10 % of the summed sold capacities
//! ```
//!
//! `source = "meter"` (the grid meter's frequency, once per EMS cycle) is refused: the fast path
//! needs its own sample every tick; point a `modbus` source at the meter's frequency register.
//! The services act only inside the windows committed through `PUT /api/v1/grid-services`
//! (the grid-code droop, an obligation rather than a sold service, always runs).

use super::errors::{ConfigError, Ctx};
use ems_core::{Millis, Percent, Watts};
use ems_grid::{
    DroopParams, FcrD, FcrDDirection, FcrN, Ffr, FfrLevel, FfrParams, FfrSupport, FrequencyServices, ParamSet,
};
use serde::Deserialize;
use toml::Spanned;

/// The largest capacity one service may be sold with here (10 MW).
const MAX_CAPACITY_W: f64 = 10_000_000.0;

/// `[grid_services]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GridServicesSection {
    /// `nordic-2025-v1.1` (default) or `nordic-2023-v1.0`.
    pub parameter_set: Option<Spanned<String>>,
    /// The fast tick, ms (10..=100, default 100).
    pub fast_period_ms: Option<Spanned<i64>>,
    /// Where the frequency comes from.
    pub frequency: FrequencyEntry,
    /// FCR-N.
    pub fcr_n: Option<CapacityEntry>,
    /// FCR-D upwards.
    pub fcr_d_up: Option<CapacityEntry>,
    /// FCR-D downwards.
    pub fcr_d_down: Option<CapacityEntry>,
    /// FFR.
    pub ffr: Option<FfrEntry>,
    /// The grid-code droop.
    pub droop: Option<DroopEntry>,
    /// The compliance log in operation.
    pub compliance_log: Option<ComplianceLogEntry>,
}

/// `[grid_services.compliance_log]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ComplianceLogEntry {
    /// The directory of the daily files (relative to the site file).
    pub dir: Spanned<String>,
    /// Days kept (14..=3650, default 14).
    pub retention_days: Option<Spanned<i64>>,
    /// The sanity check's tolerance on a 10 s mean, W.
    pub sanity_tolerance_w: Option<Spanned<f64>>,
}

/// `[grid_services.compliance_log]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ComplianceWiring {
    /// The directory.
    pub dir: std::path::PathBuf,
    /// Days kept.
    pub retention_days: u16,
    /// The sanity check's tolerance, W.
    pub tolerance_w: f64,
}

/// `[grid_services.frequency]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FrequencyEntry {
    /// `modbus`, `meter` or `simulated`.
    pub source: Spanned<String>,
    /// Modbus endpoint (`modbus` only).
    pub endpoint: Option<Spanned<String>>,
    /// Modbus unit id (default 1).
    pub unit_id: Option<Spanned<i64>>,
    /// `input` (default) or `holding`.
    pub table: Option<Spanned<String>>,
    /// 0-based register address.
    pub address: Option<Spanned<i64>>,
    /// `u16`, `i16`, `u32`, `i32`, `f32`.
    #[serde(rename = "type")]
    pub value_type: Option<Spanned<String>>,
    /// `big` (default) or `little`.
    pub word_order: Option<Spanned<String>>,
    /// Multiplier on the raw value (default 1).
    pub scale: Option<Spanned<f64>>,
    /// `Hz` (default) or `mHz`.
    pub units: Option<Spanned<String>>,
    /// Maximum age of a sample, ms (10..=5000, default 300).
    pub max_age_ms: Option<Spanned<i64>>,
    /// The simulated source's built-in signal (`nominal`, `dip`, `sine`; default `nominal`).
    pub signal: Option<Spanned<String>>,
}

/// A service sold with a capacity.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CapacityEntry {
    /// The capacity C, W.
    pub capacity_w: Spanned<f64>,
}

/// `[grid_services.ffr]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FfrEntry {
    /// The capacity C, W.
    pub capacity_w: Spanned<f64>,
    /// 49.7, 49.6 or 49.5.
    pub level_hz: Spanned<f64>,
    /// `short` (default) or `long`.
    pub support: Option<Spanned<String>>,
}

/// `[grid_services.droop]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DroopEntry {
    /// `lfsm-o`, `lfsm-u`, `lfsm-ou`, `ieee1547`.
    pub kind: Spanned<String>,
    /// Droop, % (2..=12, default 5).
    pub droop_pct: Option<Spanned<f64>>,
}

/// Where the services' frequency comes from, validated.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FrequencyWiring {
    /// A Modbus register, read every fast tick.
    Modbus {
        /// The endpoint URL.
        endpoint: String,
        /// The unit id.
        unit_id: u8,
        /// The register.
        register: ems_devices::frequency::FrequencyRegister,
    },
    /// The simulated source (the simulated site, tests) with its built-in signal.
    Simulated(SimSignal),
}

/// The built-in signals of the simulated frequency source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SimSignal {
    /// 50.00 Hz.
    Nominal,
    /// Every 300 s: 50.00 Hz for 60 s, down to 49.90 Hz in 1 s, held 119 s, back in 1 s.
    Dip,
    /// 50 Hz ± 0.1 Hz, period 60 s.
    Sine,
    /// Every 300 s: 50.00 Hz for 60 s, then a step to 49.45 Hz (below every FFR activation
    /// level) held 10 s, then 50.00 Hz.
    FfrDip,
}

/// The services as configured: what [`ems_grid::FrequencyServices`] is built from (again
/// whenever the committed capacities change).
#[derive(Debug, Clone)]
pub(crate) struct ServicesSpec {
    /// The parameter set.
    pub params: ParamSet,
    /// FCR-N's configured capacity.
    pub fcr_n: Option<Watts>,
    /// FCR-D up's.
    pub fcr_d_up: Option<Watts>,
    /// FCR-D down's.
    pub fcr_d_down: Option<Watts>,
    /// FFR's, with its level and support class.
    pub ffr: Option<(Watts, FfrParams)>,
    /// The grid-code droop (not committed: always on when configured).
    pub droop: Option<ems_grid::Droop>,
    /// Operator words per sold service, in the order fcr-n, fcr-d-up, fcr-d-down, ffr.
    pub details: [Option<String>; 4],
}

impl ServicesSpec {
    /// The services with the capacities `committed` (fcr-n, fcr-d-up, fcr-d-down, ffr; `None`:
    /// not committed now, not run), the droop, sharing the reservoir `ler`. A capacity the
    /// service refuses leaves that service out (logged; the API never lets one through).
    pub(crate) fn build(
        &self,
        committed: [Option<Watts>; 4],
        ler: Option<ems_grid::LerConfig>,
    ) -> FrequencyServices {
        let mut s = FrequencyServices::new(ler);
        let warn =
            |what: &str, e: ems_grid::ParamError| tracing::error!(target: "audit", "{what} not run: {e}");
        if let (Some(_), Some(c)) = (self.fcr_n, committed[0]) {
            match FcrN::try_new(c, self.params) {
                Ok(x) => s = s.with_fcr_n(x),
                Err(e) => warn("FCR-N", e),
            }
        }
        for (cfg, c, dir, what) in [
            (self.fcr_d_up, committed[1], FcrDDirection::Up, "FCR-D up"),
            (self.fcr_d_down, committed[2], FcrDDirection::Down, "FCR-D down"),
        ] {
            if let (Some(_), Some(c)) = (cfg, c) {
                match FcrD::try_new(dir, c, self.params) {
                    Ok(x) => s = s.with_fcr_d(x),
                    Err(e) => warn(what, e),
                }
            }
        }
        if let (Some((_, p)), Some(c)) = (self.ffr, committed[3]) {
            match Ffr::try_new(c, p) {
                Ok(x) => s = s.with_ffr(x),
                Err(e) => warn("FFR", e),
            }
        }
        if let Some(d) = &self.droop {
            s = s.with_droop(d.clone());
        }
        s
    }

    /// The configured capacities (fcr-n, fcr-d-up, fcr-d-down, ffr).
    pub(crate) fn capacities(&self) -> [Option<Watts>; 4] {
        [self.fcr_n, self.fcr_d_up, self.fcr_d_down, self.ffr.map(|(c, _)| c)]
    }
}

/// `[grid_services]`, validated.
#[derive(Debug, Clone)]
pub(crate) struct GridServicesWiring {
    /// The parameter set's name.
    pub parameter_set: &'static str,
    /// The services as configured.
    pub spec: ServicesSpec,
    /// The frequency source.
    pub frequency: FrequencyWiring,
    /// The sample's maximum age.
    pub max_age: Millis,
    /// The fast tick.
    pub fast_period: Millis,
    /// What was sold, for `check-config` and the API (`FCR-N 1000 W`, …).
    pub summary: Vec<String>,
    /// The compliance log in operation, if configured.
    pub compliance: Option<ComplianceWiring>,
}

/// A file holding only `[grid_services]` (`--grid-services FILE` of the simulated site).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GridServicesFile {
    grid_services: GridServicesSection,
}

/// Read and validate a `--grid-services FILE`.
///
/// # Errors
/// [`ConfigError`] naming the file, line, field and value.
#[cfg_attr(not(feature = "sim"), allow(dead_code))] // only the simulated site takes the flag
pub(crate) fn load_file(path: &std::path::Path) -> Result<GridServicesWiring, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| ConfigError::new(path, format!("cannot read: {e}")))?;
    let ctx = Ctx::new(ems_tomlfile::Source::new(path, &text));
    let file: GridServicesFile = ctx.src.decode(&["grid_services"])?;
    grid_services(&ctx, &file.grid_services)
}

fn capacity(ctx: &Ctx<'_>, field: &str, v: &Spanned<f64>) -> Result<Watts, ConfigError> {
    let w = *v.get_ref();
    if !w.is_finite() || w <= 0.0 || w > MAX_CAPACITY_W {
        return Err(ctx.err(field, v, format!("{w} W is outside (0, {MAX_CAPACITY_W}] W")));
    }
    #[allow(clippy::cast_possible_truncation)] // ≤ 10 MW fits f32
    Watts::try_new(w as f32).map_err(|e| ctx.err(field, v, e.to_string()))
}

fn choice<T: Copy>(
    ctx: &Ctx<'_>,
    field: &str,
    v: Option<&Spanned<String>>,
    options: &[(&str, T)],
    default: T,
) -> Result<T, ConfigError> {
    let Some(v) = v else { return Ok(default) };
    options.iter().find(|(n, _)| *n == v.get_ref().as_str()).map(|(_, t)| *t).ok_or_else(|| {
        let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
        ctx.err(field, v, format!("'{}' is not one of {}", v.get_ref(), names.join(", ")))
    })
}

pub(super) fn grid_services(
    ctx: &Ctx<'_>,
    g: &GridServicesSection,
) -> Result<GridServicesWiring, ConfigError> {
    let sets = [("nordic-2025-v1.1", 0u8), ("nordic-2023-v1.0", 1)];
    let which = choice(ctx, "grid_services.parameter_set", g.parameter_set.as_ref(), &sets, 0)?;
    let (parameter_set, params) = if which == 0 {
        ("nordic-2025-v1.1", ParamSet::nordic_2025_v1_1())
    } else {
        ("nordic-2023-v1.0", ParamSet::nordic_2023_v1_0())
    };
    let fast_period = match &g.fast_period_ms {
        Some(v) => Millis::new(ctx.int("grid_services.fast_period_ms", v, 10, 100, " ms")?),
        None => Millis::new(100),
    };
    let (frequency, max_age) = frequency(ctx, &g.frequency)?;
    let mut services = FrequencyServices::new(None);
    let mut summary = Vec::new();
    let mut spec = ServicesSpec {
        params,
        fcr_n: None,
        fcr_d_up: None,
        fcr_d_down: None,
        ffr: None,
        droop: None,
        details: [None, None, None, None],
    };
    let grid_err = |field: &str, e: ems_grid::ParamError| ctx.err_at_path(field, e.to_string());
    if let Some(e) = &g.fcr_n {
        let c = capacity(ctx, "grid_services.fcr_n.capacity_w", &e.capacity_w)?;
        services =
            services.with_fcr_n(FcrN::try_new(c, params).map_err(|e| grid_err("grid_services.fcr_n", e))?);
        summary.push(format!("FCR-N {c:.0}"));
        spec.fcr_n = Some(c);
        spec.details[0] = summary.last().cloned();
    }
    for (entry, dir, name, field, i) in [
        (&g.fcr_d_up, FcrDDirection::Up, "FCR-D up", "grid_services.fcr_d_up", 1),
        (&g.fcr_d_down, FcrDDirection::Down, "FCR-D down", "grid_services.fcr_d_down", 2),
    ] {
        if let Some(e) = entry {
            let c = capacity(ctx, &format!("{field}.capacity_w"), &e.capacity_w)?;
            services = services.with_fcr_d(FcrD::try_new(dir, c, params).map_err(|e| grid_err(field, e))?);
            summary.push(format!("{name} {c:.0}"));
            if i == 1 {
                spec.fcr_d_up = Some(c);
            } else {
                spec.fcr_d_down = Some(c);
            }
            spec.details[i] = summary.last().cloned();
        }
    }
    if let Some(e) = &g.ffr {
        let c = capacity(ctx, "grid_services.ffr.capacity_w", &e.capacity_w)?;
        let l = *e.level_hz.get_ref();
        let level = [(49.7, FfrLevel::Hz49_7), (49.6, FfrLevel::Hz49_6), (49.5, FfrLevel::Hz49_5)]
            .into_iter()
            .find(|(hz, _)| (l - hz).abs() < 1e-6)
            .map(|(_, lv)| lv)
            .ok_or_else(|| {
                ctx.err(
                    "grid_services.ffr.level_hz",
                    &e.level_hz,
                    format!("{l} Hz is not one of 49.7, 49.6, 49.5"),
                )
            })?;
        let support = choice(
            ctx,
            "grid_services.ffr.support",
            e.support.as_ref(),
            &[("short", FfrSupport::Short), ("long", FfrSupport::Long)],
            FfrSupport::Short,
        )?;
        let ffr_params = FfrParams::nordic(level, support);
        let ffr = Ffr::try_new(c, ffr_params).map_err(|e| grid_err("grid_services.ffr", e))?;
        spec.ffr = Some((c, ffr_params));
        services = services.with_ffr(ffr);
        summary.push(format!(
            "FFR {c:.0} at {l} Hz ({})",
            if support == FfrSupport::Short { "short" } else { "long" }
        ));
        spec.details[3] = summary.last().cloned();
    }
    if let Some(d) = &g.droop {
        let kinds = [
            ("lfsm-o", DroopParams::lfsm_o()),
            ("lfsm-u", DroopParams::lfsm_u()),
            ("lfsm-ou", DroopParams::lfsm_ou()),
            ("ieee1547", DroopParams::ieee1547_60hz()),
        ];
        let mut p = choice(ctx, "grid_services.droop.kind", Some(&d.kind), &kinds, DroopParams::lfsm_ou())?;
        if let Some(v) = &d.droop_pct {
            let pct = ctx.number("grid_services.droop.droop_pct", v, 2.0, 12.0, "%")?;
            #[allow(clippy::cast_possible_truncation)] // 2..=12
            let pct = Percent::try_new(pct as f32)
                .map_err(|e| ctx.err("grid_services.droop.droop_pct", v, e.to_string()))?;
            p = p.with_droop(pct).map_err(|e| ctx.err("grid_services.droop.droop_pct", v, e.to_string()))?;
        }
        let droop = ems_grid::Droop::try_new(p).map_err(|e| grid_err("grid_services.droop", e))?;
        spec.droop = Some(droop.clone());
        services = services.with_droop(droop);
        summary.push(format!("{} {}", p.name, p.droop));
    }
    if summary.is_empty() {
        return Err(ctx.err_at_path(
            "grid_services",
            "no service configured: add [grid_services.fcr_n], .fcr_d_up, .fcr_d_down, .ffr or .droop".into(),
        ));
    }
    // Built once whole to let each service check its numbers here; run per commitment.
    let _ = services;
    let compliance = g.compliance_log.as_ref().map(|c| compliance_log(ctx, c, &spec)).transpose()?;
    Ok(GridServicesWiring { parameter_set, spec, frequency, max_age, fast_period, summary, compliance })
}

fn compliance_log(
    ctx: &Ctx<'_>,
    c: &ComplianceLogEntry,
    spec: &ServicesSpec,
) -> Result<ComplianceWiring, ConfigError> {
    if c.dir.get_ref().trim().is_empty() {
        return Err(ctx.err("grid_services.compliance_log.dir", &c.dir, "an empty directory name".into()));
    }
    let min = u64::from(ems_grid::prequal::oplog::MIN_RETENTION_DAYS);
    let retention_days = match &c.retention_days {
        Some(v) => {
            u16::try_from(ctx.int("grid_services.compliance_log.retention_days", v, min, 3650, " days")?)
                .unwrap_or(u16::MAX)
        }
        None => ems_grid::prequal::oplog::MIN_RETENTION_DAYS,
    };
    let sold: f64 = spec.capacities().iter().flatten().map(|w| f64::from(w.get())).sum();
    // Assumption: 10 % of what was sold (the TSO gives no number for operation); at least
    // 10 W so that a site with only the droop configured still has a usable check.
    let tolerance_w = match &c.sanity_tolerance_w {
        Some(v) => {
            ctx.number("grid_services.compliance_log.sanity_tolerance_w", v, 1.0, MAX_CAPACITY_W, "W")?
        }
        None => (0.1 * sold).max(10.0),
    };
    Ok(ComplianceWiring {
        dir: super::paths::resolve(ctx.file(), c.dir.get_ref()),
        retention_days,
        tolerance_w,
    })
}

fn frequency(ctx: &Ctx<'_>, f: &FrequencyEntry) -> Result<(FrequencyWiring, Millis), ConfigError> {
    use ems_devices::modbus::profile::{ValueType, WordOrder};
    use ems_devices::modbus::{RegisterAddress, RegisterKind};
    let max_age = match &f.max_age_ms {
        Some(v) => Millis::new(ctx.int("grid_services.frequency.max_age_ms", v, 10, 5000, " ms")?),
        None => ems_devices::frequency::DEFAULT_FREQUENCY_MAX_AGE,
    };
    let kinds = [("modbus", 0u8), ("meter", 1), ("simulated", 2)];
    let kind = choice(ctx, "grid_services.frequency.source", Some(&f.source), &kinds, 0)?;
    if kind == 1 {
        return Err(ctx.err(
            "grid_services.frequency.source",
            &f.source,
            "'meter' is not supported: the fast path needs its own sample every tick, and the meter is read once per cycle; use source = \"modbus\" with the meter's frequency register (endpoint, address, type, scale)".into(),
        ));
    }
    let signals = [
        ("nominal", SimSignal::Nominal),
        ("dip", SimSignal::Dip),
        ("sine", SimSignal::Sine),
        ("ffr-dip", SimSignal::FfrDip),
    ];
    if kind == 2 {
        let signal =
            choice(ctx, "grid_services.frequency.signal", f.signal.as_ref(), &signals, SimSignal::Nominal)?;
        return Ok((FrequencyWiring::Simulated(signal), max_age));
    }
    if let Some(s) = &f.signal {
        return Err(ctx.err(
            "grid_services.frequency.signal",
            s,
            format!("'{}' applies to source = \"simulated\" only", s.get_ref()),
        ));
    }
    let need = |field: &str| {
        ctx.err_at_path(
            &format!("grid_services.frequency.{field}"),
            "required for source = \"modbus\"".into(),
        )
    };
    let endpoint = f.endpoint.as_ref().ok_or_else(|| need("endpoint"))?;
    let _ = super::paths::endpoint(ctx, "grid_services.frequency.endpoint", endpoint)?;
    let address = f.address.as_ref().ok_or_else(|| need("address"))?;
    let address = ctx.int("grid_services.frequency.address", address, 0, 65_535, "")?;
    let unit_id = match &f.unit_id {
        Some(v) => ctx.int("grid_services.frequency.unit_id", v, 0, 247, "")?,
        None => 1,
    };
    let table = choice(
        ctx,
        "grid_services.frequency.table",
        f.table.as_ref(),
        &[("input", RegisterKind::Input), ("holding", RegisterKind::Holding)],
        RegisterKind::Input,
    )?;
    let types = [
        ("u16", ValueType::U16),
        ("i16", ValueType::I16),
        ("u32", ValueType::U32),
        ("i32", ValueType::I32),
        ("f32", ValueType::F32),
    ];
    let value_type =
        choice(ctx, "grid_services.frequency.type", f.value_type.as_ref(), &types, ValueType::U16)?;
    let word_order = choice(
        ctx,
        "grid_services.frequency.word_order",
        f.word_order.as_ref(),
        &[("big", WordOrder::Big), ("little", WordOrder::Little)],
        WordOrder::Big,
    )?;
    let scale = match &f.scale {
        Some(v) => {
            let s = *v.get_ref();
            if !s.is_finite() || s <= 0.0 {
                return Err(ctx.err(
                    "grid_services.frequency.scale",
                    v,
                    format!("{s} must be a finite number > 0"),
                ));
            }
            s
        }
        None => 1.0,
    };
    let unit_factor =
        choice(ctx, "grid_services.frequency.units", f.units.as_ref(), &[("Hz", 1.0), ("mHz", 0.001)], 1.0)?;
    let mut register = ems_devices::frequency::FrequencyRegister::new(
        table,
        RegisterAddress(u16::try_from(address).unwrap_or(u16::MAX)),
        value_type,
    );
    register.word_order = word_order;
    register.scale = scale;
    register.unit_factor = unit_factor;
    Ok((
        FrequencyWiring::Modbus {
            endpoint: endpoint.get_ref().clone(),
            unit_id: u8::try_from(unit_id).unwrap_or(1),
            register,
        },
        max_age,
    ))
}

#[cfg(test)]
mod tests {
    use crate::config::parse;
    use std::path::Path;

    fn example(section: &str) -> String {
        let profile = concat!(env!("CARGO_MANIFEST_DIR"), "/../../devices/profiles/eastron-sdm630.toml");
        let base = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/site.toml"))
            .unwrap()
            .replace("../devices/profiles/eastron-sdm630.toml", profile);
        format!("{base}\n{section}")
    }

    const GOOD: &str = r#"
[grid_services]
fast_period_ms = 50

[grid_services.frequency]
source = "modbus"
endpoint = "modbus-tcp://127.0.0.1:1502"
address = 70
type = "u16"
scale = 0.01

[grid_services.fcr_n]
capacity_w = 1000

[grid_services.fcr_d_up]
capacity_w = 2000

[grid_services.ffr]
capacity_w = 1500
level_hz = 49.6
support = "long"

[grid_services.droop]
kind = "lfsm-ou"
droop_pct = 4

[grid_services.compliance_log]
dir = "svk"
"#;

    #[test]
    fn a_full_section_is_read_with_its_defaults() {
        let c = parse(Path::new("site.toml"), &example(GOOD)).unwrap();
        let g = c.grid_services.unwrap();
        assert_eq!(g.parameter_set, "nordic-2025-v1.1");
        assert_eq!(g.fast_period.get(), 50);
        assert_eq!(g.max_age.get(), 300);
        assert_eq!(
            g.summary,
            ["FCR-N 1000 W", "FCR-D up 2000 W", "FFR 1500 W at 49.6 Hz (long)", "LFSM-O/U 4.0 %"]
        );
        assert!(matches!(g.frequency, super::FrequencyWiring::Modbus { unit_id: 1, .. }));
        let log = g.compliance.unwrap();
        assert_eq!(log.dir, Path::new("svk"), "relative to the site file's folder");
        assert_eq!(log.retention_days, 14);
        assert!((log.tolerance_w - 450.0).abs() < 1e-9, "10 % of 4.5 kW sold: {}", log.tolerance_w);
        let old = GOOD.replace("fast_period_ms = 50", "parameter_set = \"nordic-2023-v1.0\"");
        let g = parse(Path::new("site.toml"), &example(&old)).unwrap().grid_services.unwrap();
        assert_eq!(g.parameter_set, "nordic-2023-v1.0");
        assert_eq!(g.fast_period.get(), 100);
    }

    fn err(section: &str) -> String {
        parse(Path::new("site.toml"), &example(section)).unwrap_err().to_string()
    }

    #[test]
    fn sold_services_need_the_battery_capacity() {
        let text = example(GOOD).replace("capacity_wh = 10240", "");
        assert!(!text.contains("capacity_wh = 10240"));
        let e = parse(Path::new("site.toml"), &text).unwrap_err().to_string();
        assert!(e.contains("battery.capacity_wh") && e.contains("[grid_services]"), "{e}");
    }

    #[test]
    fn errors_name_file_line_field_and_value() {
        for (from, to, want) in [
            (
                "fast_period_ms = 50",
                "fast_period_ms = 250",
                "grid_services.fast_period_ms: 250 ms is outside 10..=100 ms",
            ),
            (
                "capacity_w = 1000",
                "capacity_w = -5",
                "grid_services.fcr_n.capacity_w: -5 W is outside (0, 10000000] W",
            ),
            (
                "level_hz = 49.6",
                "level_hz = 49.8",
                "grid_services.ffr.level_hz: 49.8 Hz is not one of 49.7, 49.6, 49.5",
            ),
            (
                "support = \"long\"",
                "support = \"medium\"",
                "grid_services.ffr.support: 'medium' is not one of short, long",
            ),
            ("droop_pct = 4", "droop_pct = 20", "grid_services.droop.droop_pct: 20 % is outside 2..=12 %"),
            (
                "type = \"u16\"",
                "type = \"u8\"",
                "grid_services.frequency.type: 'u8' is not one of u16, i16, u32, i32, f32",
            ),
            (
                "source = \"modbus\"",
                "source = \"radio\"",
                "grid_services.frequency.source: 'radio' is not one of modbus, meter, simulated",
            ),
            (
                "address = 70",
                "address = 70000",
                "grid_services.frequency.address: 70000 is outside 0..=65535",
            ),
            (
                "dir = \"svk\"",
                "dir = \"svk\"\nretention_days = 7",
                "grid_services.compliance_log.retention_days: 7 days is outside 14..=3650 days",
            ),
            (
                "dir = \"svk\"",
                "dir = \"svk\"\nsanity_tolerance_w = -1",
                "grid_services.compliance_log.sanity_tolerance_w: -1 W is outside 1..=10000000 W",
            ),
            ("dir = \"svk\"", "dir = \" \"", "grid_services.compliance_log.dir: an empty directory name"),
        ] {
            let text = GOOD.replace(from, to);
            assert_ne!(text, GOOD, "{from}");
            let e = err(&text);
            assert!(e.starts_with("site.toml line "), "{e}");
            assert!(e.contains(want), "{e}\nwanted: {want}");
        }
        let e = err(&GOOD
            .replace("parameter_set", "x")
            .replace("[grid_services]\n", "[grid_services]\nparameter_set = \"nordic-2030\"\n"));
        assert!(
            e.contains(
                "grid_services.parameter_set: 'nordic-2030' is not one of nordic-2025-v1.1, nordic-2023-v1.0"
            ),
            "{e}"
        );
        let e = err(&GOOD.replace("endpoint = \"modbus-tcp://127.0.0.1:1502\"\n", ""));
        assert!(e.contains("grid_services.frequency.endpoint") && e.contains("required"), "{e}");
        let e = err("[grid_services]\n[grid_services.frequency]\nsource = \"simulated\"\n");
        assert!(e.contains("grid_services") && e.contains("no service configured"), "{e}");
        let e = err(&GOOD.replace("source = \"modbus\"", "source = \"meter\""));
        assert!(e.contains("grid_services.frequency.source: 'meter' is not supported"), "{e}");
        let e = err(&GOOD.replace("source = \"modbus\"", "source = \"modbus\"\nsignal = \"dip\""));
        assert!(e.contains("grid_services.frequency.signal: 'dip' applies to source"), "{e}");
        let sim = "[grid_services]\n[grid_services.frequency]\nsource = \"simulated\"\nsignal = \"dip\"\n[grid_services.fcr_n]\ncapacity_w = 800\n";
        let g = parse(Path::new("site.toml"), &example(sim)).unwrap().grid_services.unwrap();
        assert_eq!(g.frequency, super::FrequencyWiring::Simulated(super::SimSignal::Dip));
        assert_eq!(g.spec.capacities()[0].map(ems_core::Watts::get), Some(800.0));
        let e = err(&sim.replace("\"dip\"", "\"square\""));
        assert!(
            e.contains("grid_services.frequency.signal: 'square' is not one of nominal, dip, sine"),
            "{e}"
        );
    }
}
