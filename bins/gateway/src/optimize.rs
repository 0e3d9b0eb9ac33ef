//! `ems-gateway optimize --input day.csv [battery and grid flags]`: the exact day-ahead planner
//! of `ems-strategies` on the optimizer CSV of design.md §7
//! (`timestamp,pv_w,load_w,import_price,export_price`), printing the plan as JSON:
//! `{"total_cost", "battery_w": [...], "soc": [...], "grid_w": [...], "solve_time_s", "status"}`.

use ems_core::{WattHours, Watts};
use ems_strategies::optimizer::{parse_csv, plan, Problem};
use ems_strategies::{Price, Ratio};
use std::path::PathBuf;

/// The flags of `optimize` (names and defaults are the interface of issue #5).
#[derive(Debug, clap::Args)]
pub(crate) struct OptimizeArgs {
    /// The input CSV: `timestamp,pv_w,load_w,import_price,export_price` (RFC 3339 UTC, W, per kWh).
    #[arg(long)]
    pub input: PathBuf,
    /// Usable battery capacity, Wh.
    #[arg(long, default_value_t = 10_000.0)]
    pub capacity_wh: f64,
    /// Largest AC charge power, W.
    #[arg(long, default_value_t = 5000.0)]
    pub charge_max_w: f64,
    /// Largest AC discharge power, W.
    #[arg(long, default_value_t = 5000.0)]
    pub discharge_max_w: f64,
    /// Charge efficiency (AC → stored), 0 < η ≤ 1.
    #[arg(long, default_value_t = 0.95)]
    pub eff_charge: f64,
    /// Discharge efficiency (stored → AC), 0 < η ≤ 1.
    #[arg(long, default_value_t = 0.95)]
    pub eff_discharge: f64,
    /// Lowest SOC (fraction) at the end of any step.
    #[arg(long, default_value_t = 0.1)]
    pub soc_min: f64,
    /// Highest SOC (fraction) at the end of any step.
    #[arg(long, default_value_t = 0.9)]
    pub soc_max: f64,
    /// SOC (fraction) at the start; may lie outside the window (the plan returns into it).
    #[arg(long, default_value_t = 0.5)]
    pub soc_init: f64,
    /// Least SOC (fraction) at the end of the horizon.
    #[arg(long, default_value_t = 0.5)]
    pub soc_final: f64,
    /// Grid import limit, W.
    #[arg(long, default_value_t = 20_000.0)]
    pub grid_import_max_w: f64,
    /// Grid export limit, W.
    #[arg(long, default_value_t = 20_000.0)]
    pub grid_export_max_w: f64,
    /// The battery may not discharge into the grid (only into the site's own load).
    #[arg(long)]
    pub no_battery_export: bool,
    /// Cost per kWh of battery AC throughput (charge plus discharge), for degradation.
    #[arg(long, default_value_t = 0.0)]
    pub degradation_cost: f64,
}

fn watts(flag: &str, v: f64) -> Result<Watts, String> {
    // Out-of-f32-range values become ±inf and are refused by `try_new` like NaN.
    #[allow(clippy::cast_possible_truncation)]
    Watts::try_new(v as f32).map_err(|e| format!("--{flag} = {v}: {e}"))
}

fn ratio(flag: &str, v: f64, expected: &str) -> Result<Ratio, String> {
    Ratio::try_new(v).map_err(|_| format!("--{flag} = {v}: must be {expected}"))
}

impl OptimizeArgs {
    /// The planning problem; a flag that is not a number in range is named with its value.
    ///
    /// # Errors
    /// A message naming the flag and the value.
    pub(crate) fn problem(&self) -> Result<Problem, String> {
        // f64 to f32 has no `TryFrom`: out of range becomes ±inf and is refused by `try_new`.
        #[allow(clippy::cast_possible_truncation)]
        let capacity = self.capacity_wh as f32;
        let capacity_wh =
            WattHours::try_new(capacity).map_err(|e| format!("--capacity-wh = {}: {e}", self.capacity_wh))?;
        let p = Problem {
            capacity_wh,
            charge_max_w: watts("charge-max-w", self.charge_max_w)?,
            discharge_max_w: watts("discharge-max-w", self.discharge_max_w)?,
            eff_charge: ratio("eff-charge", self.eff_charge, "in (0, 1]")?,
            eff_discharge: ratio("eff-discharge", self.eff_discharge, "in (0, 1]")?,
            soc_min: ratio("soc-min", self.soc_min, "in [0, 1]")?,
            soc_max: ratio("soc-max", self.soc_max, "in [soc-min, 1]")?,
            soc_init: ratio("soc-init", self.soc_init, "in [0, 1]")?,
            soc_final: ratio("soc-final", self.soc_final, "in [0, soc-max]")?,
            grid_import_max_w: watts("grid-import-max-w", self.grid_import_max_w)?,
            grid_export_max_w: watts("grid-export-max-w", self.grid_export_max_w)?,
            no_battery_export: self.no_battery_export,
            degradation_cost: Price::checked("degradation-cost", self.degradation_cost)
                .map_err(|e| format!("--{e}"))?,
            ..Problem::default()
        };
        p.validate().map_err(|e| e.to_string())?;
        Ok(p)
    }
}

/// Run `optimize`: the plan as JSON, or an error naming the file, line and column, or the flag.
///
/// # Errors
/// The message to print.
pub(crate) fn run(args: &OptimizeArgs) -> Result<String, String> {
    let problem = args.problem()?;
    let text = std::fs::read_to_string(&args.input)
        .map_err(|e| format!("{}: cannot read: {e}", args.input.display()))?;
    let steps = parse_csv(&text).map_err(|e| format!("{}: {e}", args.input.display()))?;
    let plan = plan(&problem, &steps).map_err(|e| format!("{}: {e}", args.input.display()))?;
    serde_json::to_string(&plan).map_err(|e| format!("cannot encode the plan: {e}"))
}
