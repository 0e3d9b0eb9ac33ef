//! `ems-sim`: the command-line front of the test rig (`ems-testing`): the simulated site run as
//! fast as possible, scenario files and the economics run.
//!
//! [`SimulateArgs`] are the flags of `simulate` and [`simulate`] runs them; the `ems-sim` binary
//! and `ems-gateway simulate` (the gateway's default `sim` feature) share both, so the two
//! commands take the same flags and print the same reports. A production gateway built without
//! that feature links none of this.
#![forbid(unsafe_code)]
// Mirrors the lints the workspace is about to enable in the root `Cargo.toml`; removed from
// here once `[workspace.lints]` carries them.

use clap::ValueEnum;
use ems_testing::faults::FaultPlan;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The flags of `simulate`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// Simulated days (required unless --scenario is given; a scenario has its own duration).
    #[arg(long, required_unless_present = "scenario")]
    pub days: Option<u32>,
    /// Seed for the site's noise and the fault plan.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Report format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub report: ReportFormat,
    /// Fault injection plan: none, standard or random.
    #[arg(long, default_value = "none")]
    pub faults: String,
    /// Control and physics step in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub step_ms: u64,
    /// What the battery is asked to do: charge-only (the configured charge-only mode all day)
    /// or daily-cycle (charge from PV surplus 06:00-17:00, discharge 3 kW at night, so the
    /// whole SOC window and the low-side limits are exercised). Default: daily-cycle with
    /// --faults random (the soak), charge-only otherwise.
    #[arg(long)]
    pub duty: Option<String>,
    /// Run a scenario file (TOML timeline of faults with expectations) instead of --days.
    #[arg(long, conflicts_with_all = ["days", "faults"])]
    pub scenario: Option<PathBuf>,
    /// Economics: bill the site under this tariff file (examples/tariffs/*.toml) and compare
    /// the EMS (day-ahead plan re-planned every 15 min) with a no-battery and a
    /// self-consumption-only baseline, per month (the reference home of docs/ECONOMICS.md).
    #[arg(long, conflicts_with_all = ["scenario", "faults", "duty", "step_ms"])]
    pub tariff: Option<PathBuf>,
    /// Economics: the day of the year to start on (1 = 1 January).
    #[arg(long, default_value_t = 1, requires = "tariff")]
    pub start_day: u16,
    /// Economics: PV peak power of the simulated home, kWp.
    #[arg(long, default_value_t = 3.0, requires = "tariff")]
    pub pv_kwp: f64,
    /// Economics: usable battery capacity, kWh.
    #[arg(long, default_value_t = 10.0, requires = "tariff")]
    pub battery_kwh: f64,
    /// Economics: annual household consumption, kWh.
    #[arg(long, default_value_t = 4000.0, requires = "tariff")]
    pub annual_load_kwh: f64,
    /// Economics: the planner's battery wear cost per kWh of AC throughput (charge +
    /// discharge); it keeps the plan from cycling for margins thinner than the wear.
    #[arg(long, requires = "tariff")]
    pub degradation_cost: Option<f64>,
    /// Economics, for diagnosis: give the EMS run's planner the truth instead of a forecast:
    /// none, all, or a comma-separated list of pv, load, prices. The perfect-foresight case
    /// (everything true) is always reported beside it.
    #[arg(long, default_value = "none", requires = "tariff")]
    pub foresight: String,
    /// Economics, for diagnosis: re-plan every this many quarter-hours (1..=96); in between
    /// the next slot of the last plan runs.
    #[arg(long, default_value_t = 1, requires = "tariff")]
    pub replan_every: u32,
    /// Economics, for diagnosis: the longest planning horizon in hours (default 48; the
    /// shortest is 24 h, or this if it is shorter).
    #[arg(long, requires = "tariff")]
    pub horizon_hours: Option<f64>,
    /// Economics: the least saving over self-consumption (currency per plan horizon, by the
    /// plan's own forecast) for which the EMS acts on a plan; below it the slot runs
    /// self-consumption (default 0.03). Negative: act on every plan.
    #[arg(long, requires = "tariff", allow_negative_numbers = true)]
    pub plan_margin: Option<f64>,
    /// Economics: the plan uses the PV forecast × this (a cautious quantile; default 0.85).
    #[arg(long, requires = "tariff")]
    pub pv_factor: Option<f64>,
    /// Economics: the plan uses the load forecast × this (default 1.05).
    #[arg(long, requires = "tariff")]
    pub load_factor: Option<f64>,
    /// Economics: plan against scenarios of the forecasters' own past errors (the expected
    /// cost), `on` or `off` (default off).
    #[arg(long, requires = "tariff", value_name = "on|off", value_parser = on_off)]
    pub scenarios: Option<bool>,
    /// Economics: what energy left in the battery at the end of a plan's horizon is worth to
    /// the plan: `off` (nothing above the final SOC) or a quantile `0..=1` of the horizon's
    /// import prices, × the discharge efficiency (default off; docs/ECONOMICS.md step 6).
    #[arg(long, requires = "tariff", value_name = "off|QUANTILE", value_parser = end_value)]
    pub end_value: Option<EndValueArg>,
    /// Economics: the end value holds for as much stored energy as the forecast deficit
    /// (load − PV) of the horizon's last this many hours needs (default 24).
    #[arg(long, requires = "tariff")]
    pub end_value_hours: Option<f64>,
    /// Economics: the end value's price is further × this (default 1; with `--end-value 0`
    /// and 0.95, the charge efficiency, stored energy is worth less than it saves in any hour).
    #[arg(long, requires = "tariff")]
    pub end_value_scale: Option<f64>,
    /// Economics: skip the perfect-foresight case (faster diagnosis runs).
    #[arg(long, requires = "tariff")]
    pub no_perfect_foresight: bool,
}

/// How a report is printed: `text` (a human-readable summary) or `json`.
// clap would print variant doc comments as per-value help, changing `simulate --help`.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
}

/// Run `simulate` with `args`: a scenario file, the economics run (`--tariff`) or the simulated
/// site for `--days`. The report goes to stdout, errors to stderr prefixed with `command` (e.g.
/// `ems-sim simulate`).
///
/// Exit code: success; 1 for invalid flags, an unreadable file or a failed run; 2 when the run
/// counted a safety violation or a scenario expectation failed.
#[must_use]
pub fn simulate(args: &SimulateArgs, command: &str) -> ExitCode {
    if let Some(path) = &args.scenario {
        return scenario(path, args.report, command);
    }
    let days = args.days.unwrap_or(0);
    if let Some(tariff) = &args.tariff {
        let home = Home {
            start_day: args.start_day,
            pv_kwp: args.pv_kwp,
            battery_kwh: args.battery_kwh,
            annual_load_kwh: args.annual_load_kwh,
            degradation_cost: args.degradation_cost,
            foresight: ems_testing::economics::Foresight::default(),
            replan_every: args.replan_every,
            horizon_hours: args.horizon_hours,
            perfect_foresight: !args.no_perfect_foresight,
            plan_margin: args.plan_margin,
            pv_factor: args.pv_factor,
            load_factor: args.load_factor,
            scenarios: args.scenarios,
            end_value: args.end_value.map(|e| e.0),
            end_value_hours: args.end_value_hours,
            end_value_scale: args.end_value_scale,
        };
        let foresight = match ems_testing::economics::Foresight::parse(&args.foresight) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("{command}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let home = Home { foresight, ..home };
        return economics(days, args.seed, args.report, tariff, home, command);
    }
    site(days, args, command)
}

fn scenario(path: &Path, format: ReportFormat, command: &str) -> ExitCode {
    // An island scenario (an `[island]` table) runs the island plant and sequence instead.
    if std::fs::read_to_string(path).is_ok_and(|t| ems_testing::island_scenario::is_island_scenario(&t)) {
        return match ems_testing::island_scenario::run_island_scenario_file(path) {
            Ok(r) if print_report(format, &r.to_text(), || r.to_json(), command) => {
                if r.passed {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(2)
                }
            }
            Ok(_) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("{command}: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match ems_testing::run_scenario_file(path) {
        Ok(r) => {
            if !print_report(format, &r, || r.to_json(), command) {
                return ExitCode::FAILURE;
            }
            if r.passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            }
        }
        Err(e) => {
            eprintln!("{command}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn site(days: u32, args: &SimulateArgs, command: &str) -> ExitCode {
    if days == 0 {
        eprintln!("{command}: --days must be at least 1 (got 0)");
        return ExitCode::FAILURE;
    }
    let plan = match FaultPlan::parse(&args.faults) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{command}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let duty = match args.duty.as_deref() {
        Some(d) => match ems_testing::Duty::parse(d) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("{command}: {e}");
                return ExitCode::FAILURE;
            }
        },
        None if plan == FaultPlan::Random => ems_testing::Duty::DAILY_CYCLE,
        None => ems_testing::Duty::Configured,
    };
    let mut opts = ems_testing::RunOptions::days(days, args.seed);
    opts.faults = plan;
    opts.duty = duty;
    opts.step = ems_core::Millis::new(args.step_ms);
    match ems_testing::run(&opts) {
        Ok(report) => finish(args.report, &report, report.violation_count, || report.to_json(), command),
        Err(e) => {
            eprintln!("{command}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Print a simulation report; exit 2 if it counted any safety violation.
fn finish(
    format: ReportFormat,
    report: &impl std::fmt::Display,
    violations: u64,
    json: impl FnOnce() -> Result<String, serde_json::Error>,
    command: &str,
) -> ExitCode {
    if !print_report(format, report, json, command) {
        return ExitCode::FAILURE;
    }
    if violations == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

/// The simulated home of `simulate --tariff`.
#[derive(Debug, Clone, Copy)]
struct Home {
    start_day: u16,
    pv_kwp: f64,
    battery_kwh: f64,
    annual_load_kwh: f64,
    degradation_cost: Option<f64>,
    foresight: ems_testing::economics::Foresight,
    replan_every: u32,
    horizon_hours: Option<f64>,
    perfect_foresight: bool,
    plan_margin: Option<f64>,
    pv_factor: Option<f64>,
    load_factor: Option<f64>,
    scenarios: Option<bool>,
    end_value: Option<Option<f64>>,
    end_value_hours: Option<f64>,
    end_value_scale: Option<f64>,
}

/// `--end-value`: `off`, or the quantile of the horizon's import prices.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EndValueArg(pub Option<f64>);

fn end_value(s: &str) -> Result<EndValueArg, String> {
    if s == "off" {
        return Ok(EndValueArg(None));
    }
    match s.parse::<f64>() {
        Ok(q) if (0.0..=1.0).contains(&q) => Ok(EndValueArg(Some(q))),
        _ => Err(format!("{s:?} must be off or a quantile 0..=1")),
    }
}

/// `on` / `off` for a switch flag.
fn on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        other => Err(format!("{other:?} must be on or off")),
    }
}

impl Home {
    fn apply(self, opts: &mut ems_testing::economics::EconomicsOptions) -> Result<(), String> {
        let check = |flag: &str, v: f64, lo: f64, hi: f64| {
            if v.is_finite() && (lo..=hi).contains(&v) {
                Ok(v)
            } else {
                Err(format!("--{flag} = {v} must be {lo}..={hi}"))
            }
        };
        let pv = check("pv-kwp", self.pv_kwp, 0.0, 100.0)?;
        let bat = check("battery-kwh", self.battery_kwh, 1.0, 200.0)?;
        let load = check("annual-load-kwh", self.annual_load_kwh, 100.0, 200_000.0)?;
        // Narrowing to the f32 unit types: the ranges above keep the values exact enough.
        #[allow(clippy::cast_possible_truncation)]
        let f = |x: f64| (x * 1000.0) as f32;
        opts.site.pv_peak = ems_core::Watts::saturating(f(pv));
        opts.site.battery_capacity = ems_core::WattHours::saturating(f(bat));
        opts.planner.capacity_wh = opts.site.battery_capacity;
        opts.site.annual_load = ems_core::WattHours::saturating(f(load));
        opts.start_day = self.start_day;
        if let Some(c) = self.degradation_cost {
            let c = check("degradation-cost", c, 0.0, 10.0)?;
            opts.planner.degradation_cost = ems_strategies::Price::new(c);
        }
        opts.foresight = self.foresight;
        opts.perfect_foresight = self.perfect_foresight;
        if let Some(m) = self.plan_margin {
            let m = check("plan-margin", m, -1.0e6, 1.0e6)?;
            opts.plan_margin = ems_strategies::Money::new(m);
        }
        if let Some(f) = self.pv_factor {
            opts.pv_factor = ems_strategies::Factor::saturating(check("pv-factor", f, 0.0, 2.0)?);
        }
        if let Some(f) = self.load_factor {
            opts.load_factor = ems_strategies::Factor::saturating(check("load-factor", f, 0.0, 3.0)?);
        }
        if let Some(on) = self.scenarios {
            opts.scenarios = on;
        }
        if let Some(q) = self.end_value {
            opts.end_value_quantile = q;
        }
        if let Some(h) = self.end_value_hours {
            opts.end_value_hours = check("end-value-hours", h, 0.0, 168.0)?;
        }
        if let Some(f) = self.end_value_scale {
            opts.end_value_scale = check("end-value-scale", f, 0.0, 2.0)?;
        }
        if !(1..=96).contains(&self.replan_every) {
            return Err(format!("--replan-every = {} must be 1..=96", self.replan_every));
        }
        opts.replan_slots = self.replan_every;
        if let Some(h) = self.horizon_hours {
            let h = check("horizon-hours", h, 0.25, 168.0)?;
            // 0.25..=168 h in ms is far inside u64.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let ms = (h * 3_600_000.0).round() as u64;
            opts.max_horizon = ems_core::Millis::new(ms);
        }
        Ok(())
    }
}

fn economics(
    days: u32,
    seed: u64,
    format: ReportFormat,
    tariff: &Path,
    home: Home,
    command: &str,
) -> ExitCode {
    let tariff = match ems_strategies::tariff::Tariff::load(tariff) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{command}: --tariff {}: {e}", tariff.display());
            return ExitCode::FAILURE;
        }
    };
    let mut opts = ems_testing::economics::EconomicsOptions::reference_home(tariff, days, seed);
    if let Err(e) = home.apply(&mut opts) {
        eprintln!("{command}: {e}");
        return ExitCode::FAILURE;
    }
    match ems_testing::economics::run_economics(&opts) {
        Ok(report) => {
            finish(format, &report, report.violations, || serde_json::to_string_pretty(&report), command)
        }
        Err(e) => {
            eprintln!("{command}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Print a report; a closed pipe (`| head`) ends the output quietly instead of panicking.
fn out(text: &str) {
    use std::io::Write as _;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// Print a report as text or JSON; `false` if it could not be encoded.
fn print_report(
    format: ReportFormat,
    text: &impl std::fmt::Display,
    json: impl FnOnce() -> Result<String, serde_json::Error>,
    command: &str,
) -> bool {
    match format {
        ReportFormat::Text => out(&text.to_string()),
        ReportFormat::Json => match json() {
            Ok(j) => out(&format!("{j}\n")),
            Err(e) => {
                eprintln!("{command}: cannot encode report: {e}");
                return false;
            }
        },
    }
    true
}
