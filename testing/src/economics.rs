//! The economics of a simulated site over days to a year (issue #5): the whole control stack
//! at 1 s resolution — the simulated site through the device safety layer, the real
//! `Controller` with its envelope and final clamp — with the day-ahead planner of
//! `ems-strategies` re-planning every 15 minutes from the measured SOC and forecasts, and the
//! cost of the result under a tariff, against two baselines:
//!
//! * **no battery**: the same site without a battery, i.e. the grid carries `load − pv` (taken
//!   from the simulator's truth of the EMS run, second by second, so both see the same weather
//!   and load);
//! * **self-consumption only**: a second full run in which the battery only follows zero grid
//!   exchange (the `SelfConsumption` mode, no plan).
//!
//! # The EMS run
//!
//! The controller's default mode is self-consumption (10 % reserve). At every quarter-hour the
//! [`CycleHook`] builds the planning horizon from forecasts — PV: clear-sky × measured ratio
//! ([`PvForecaster`]); load: day-type profiles learned by exponential smoothing
//! ([`LoadForecaster`], cold start from a flat 4000 kWh/a); prices: the tariff where day-ahead
//! prices are published (until the end of today, or of tomorrow from 13:00 on), the same time of
//! the last published day beyond — plans with [`replan`] from the SOC the BMS reports (outside
//! the window too), and hands the first slot to the controller as a [`PlanTarget`]. The
//! controller's arbitration runs a slot planned at zero grid exchange with its self-consumption
//! loop (so forecast errors go to the battery, not the grid) and holds the planned battery power
//! otherwise; the envelope and the final clamp have the last word as always, and the harness
//! checks the safety invariant and the hard limits on the simulator's truth every cycle.
//!
//! # Time bases (a documented simplification)
//!
//! The simulator has one local clock without daylight saving: day-of-year and time of day. Its
//! PV is Greensboro's TMY3 year by local standard time (UTC−5) and its load the German BDEW H25
//! profile by local time with the calendar of 2025 (1 January a Wednesday). The market is German
//! (SMARD 2018, Europe/Berlin). The simulated clock is mapped to instants by fixed offsets:
//!
//! | use | instant of simulated clock `c` |
//! |---|---|
//! | prices, tariff, ledgers | `2018-01-01T00:00+01:00 + c` (CET; in summer the sim's noon is 13:00 CEST) |
//! | PV forecast (sun position) | `2018-01-01T00:00−05:00 + c` (Greensboro standard time) |
//! | load forecast (day types) | `2025-01-01T00:00+01:00 + c` (the weekdays of the simulated load) |
//!
//! So the site sees Greensboro's sun and Germany's market hours, both by its local clock.

use std::time::Instant;

use ems_control::{ControllerConfig, ModeSetting, PlanTarget, SelfConsumptionConfig};
use ems_core::{Millis, Snapshot, Watts};
use ems_devices::sim::{SimSiteConfig, SimulatedSite};
use ems_strategies::accounting::{Ledger, LedgerError, PeriodSavings, Savings, Totals};
use ems_strategies::forecast::{
    error_scenarios, ForecastErrors, LoadForecaster, LoadProfile, PvCorrection, PvForecaster, PvSystem,
};
use ems_strategies::optimizer::{
    acted_on, replan, self_consumption_steps, EndValue, Plan, PlanStatus, Problem, Scenarios, Step,
};
use ems_strategies::tariff::{Calendar, ImportPricing, Tariff};
use ems_strategies::{Factor, Money, Price};
use jiff::tz::{self, TimeZone};
use jiff::{SignedDuration, Timestamp};

use crate::harness::{run_with_hook, CycleHook, HarnessError, HookInputs, RunOptions};

/// Milliseconds in a day.
const DAY: u64 = 86_400_000;
/// Planning slot and re-planning period.
const SLOT: u64 = 900_000;
/// Export price added per slot of lead time to break ties (see [`PlanHook::steps`]); at most
/// 0.002 per kWh over a 48 h horizon.
const TIE_BREAK_PER_SLOT: f64 = 1e-5;

/// The default [`EconomicsOptions::plan_margin`], currency units per plan horizon.
pub const DEFAULT_PLAN_MARGIN: f64 = 0.03;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct EconomicsOptions {
    /// Simulated days (1..=365).
    pub days: u32,
    /// Day of the year to start on (1 = 1 January).
    pub start_day: u16,
    /// Seed of the site's noise.
    pub seed: u64,
    /// The tariff all three cases are billed under.
    pub tariff: Tariff,
    /// The simulated site (battery, inverter, PV, load).
    pub site: SimSiteConfig,
    /// The planner's battery and grid model.
    pub planner: Problem,
    /// Shortest planning horizon (longer when more day-ahead prices are known).
    pub min_horizon: Millis,
    /// Longest planning horizon (default 48 h).
    pub max_horizon: Millis,
    /// Re-plan every this many quarter-hours (default 1); in between, the controller runs the
    /// next slot of the last plan.
    pub replan_slots: u32,
    /// What the EMS run's planner is told the truth about (default: nothing, it forecasts).
    /// For diagnosis: which forecast costs how much.
    pub foresight: Foresight,
    /// Also run the perfect-foresight case (default true).
    pub perfect_foresight: bool,
    /// The least saving over self-consumption, over the horizon and by the plan's own
    /// forecast, for which a plan is acted on; below it the slot runs self-consumption (see
    /// [`PlanHook::gate`]). Negative: every plan is acted on.
    pub plan_margin: Money,
    /// The PV forecast the plan uses is the forecaster's × this (default
    /// [`DEFAULT_PV_FACTOR`]): a cautious quantile rather than the expected value, because too
    /// little stored energy costs the dear import price while too much costs only conversion
    /// losses. Not applied to the truth of the foresight runs.
    pub pv_factor: Factor,
    /// The load forecast the plan uses is the forecaster's × this (default
    /// [`DEFAULT_LOAD_FACTOR`]), for the same reason. Not applied to the truth.
    pub load_factor: Factor,
    /// Plan against scenarios of the forecasters' own past errors (the expected cost; see
    /// [`ems_strategies::optimizer::Scenarios`]) instead of the point forecast alone (default
    /// [`DEFAULT_SCENARIOS`]). Not applied to what the foresight runs know.
    pub scenarios: bool,
    /// Value the energy left in the battery at the end of each plan's horizon (see
    /// [`ems_strategies::optimizer::EndValue`]) at this quantile of the horizon's import prices
    /// × the discharge efficiency × [`Self::end_value_scale`] (default
    /// [`DEFAULT_END_VALUE_QUANTILE`], `None`: worth nothing above the final SOC; measured in
    /// `docs/ECONOMICS.md`, step 6, and not the default).
    pub end_value_quantile: Option<f64>,
    /// Up to how much stored energy has that value: what the site's deficit (load − PV, the
    /// plan's forecast) over the last this many hours of the horizon needs (default
    /// [`DEFAULT_END_VALUE_HOURS`]).
    pub end_value_hours: f64,
    /// The end value's price is further × this (default [`DEFAULT_END_VALUE_SCALE`]): with
    /// quantile 0 and the charge efficiency, stored energy is worth less than it saves in any
    /// hour of the horizon and less than recharging it costs, so the value only keeps the plan
    /// from selling the battery at the export price at the horizon's end.
    pub end_value_scale: f64,
}

/// The default [`EconomicsOptions::end_value_scale`].
pub const DEFAULT_END_VALUE_SCALE: f64 = 1.0;

/// The default [`EconomicsOptions::end_value_quantile`].
pub const DEFAULT_END_VALUE_QUANTILE: Option<f64> = None;
/// The default [`EconomicsOptions::end_value_hours`].
pub const DEFAULT_END_VALUE_HOURS: f64 = 24.0;

/// The default [`EconomicsOptions::scenarios`].
pub const DEFAULT_SCENARIOS: bool = false;
/// Lead time at which the forecasts' errors are learned: 12 h, the lead of the night's
/// decisions about the next day.
const ERROR_LEAD_SLOTS: usize = 48;
/// The spread of the scenarios is complete after this lead time.
const SCENARIO_RAMP: SignedDuration = SignedDuration::from_hours(3);

/// The default [`EconomicsOptions::pv_factor`].
pub const DEFAULT_PV_FACTOR: f64 = 0.85;
/// The default [`EconomicsOptions::load_factor`].
pub const DEFAULT_LOAD_FACTOR: f64 = 1.05;

/// Which inputs the planner takes from the simulated site's truth instead of a forecast. The
/// truth of a quarter-hour is its mean PV and load in the self-consumption run, which sees the
/// same weather and load as every other run of the same seed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Foresight {
    /// True PV.
    pub pv: bool,
    /// True load.
    pub load: bool,
    /// All prices of the horizon known (no day-ahead publication limit, no price forecast).
    pub prices: bool,
}

impl Foresight {
    /// Everything true: the perfect-foresight case.
    pub const PERFECT: Self = Self { pv: true, load: true, prices: true };

    /// Parses `none`, `all` or a comma-separated list of `pv`, `load`, `prices`.
    ///
    /// # Errors
    /// [`EconomicsError::Options`] naming the unknown item.
    pub fn parse(text: &str) -> Result<Self, EconomicsError> {
        let mut f = Self::default();
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            match item {
                "none" => {}
                "all" => f = Self::PERFECT,
                "pv" => f.pv = true,
                "load" => f.load = true,
                "prices" => f.prices = true,
                other => {
                    return Err(EconomicsError::Options(format!(
                        "--foresight = {other}: must be none, all, pv, load or prices"
                    )))
                }
            }
        }
        Ok(f)
    }

    fn any(self) -> bool {
        self.pv || self.load || self.prices
    }
}

impl std::fmt::Display for Foresight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = [(self.pv, "pv"), (self.load, "load"), (self.prices, "prices")]
            .into_iter()
            .filter_map(|(on, n)| on.then_some(n))
            .collect();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join(","))
        }
    }
}

/// Why an economics run could not be done.
#[derive(Debug, thiserror::Error)]
pub enum EconomicsError {
    /// A setting is out of range.
    #[error("{0}")]
    Options(String),
    /// The harness refused the run.
    #[error(transparent)]
    Harness(#[from] HarnessError),
    /// The cost ledger refused a sample (a bug: samples are in order).
    #[error("cost ledger: {0}")]
    Ledger(#[from] LedgerError),
    /// A forecaster could not be built.
    #[error("forecast: {0}")]
    Forecast(String),
}

impl EconomicsOptions {
    /// The reference home of `docs/ECONOMICS.md`: 10 kWh LFP battery behind a 5 kW inverter,
    /// 3 kWp PV (horizontal, Greensboro TMY3: about 4,100 kWh a year, what 4 kWp give in
    /// Germany), 4000 kWh/a household load (BDEW H25), starting on 1 January, under `tariff`.
    #[must_use]
    pub fn reference_home(tariff: Tariff, days: u32, seed: u64) -> Self {
        let site = SimSiteConfig {
            pv_peak: ems_core::watts!(3000.0),
            start_day_of_year: 1,
            start_time_of_day: Millis::ZERO,
            seed,
            initial_soc: ems_core::percent!(50.0),
            ..SimSiteConfig::default()
        };
        let planner = Problem {
            capacity_wh: site.battery_capacity,
            // A little under the inverter rating: the envelope derates near full and empty.
            charge_max_w: ems_core::watts!(4500.0),
            discharge_max_w: ems_core::watts!(4500.0),
            eff_charge: ems_strategies::ratio!(0.95),
            eff_discharge: ems_strategies::ratio!(0.95),
            // The window self-consumption uses too: down to its 10 % reserve (the safety
            // monitor warns at 10 %, alarms at 5 %), up to 95 % (charging derates above 90 %).
            soc_min: ems_strategies::ratio!(0.11),
            soc_max: ems_strategies::ratio!(0.95),
            soc_init: ems_strategies::ratio!(0.5),
            soc_final: ems_strategies::ratio!(0.11),
            ..Problem::default()
        };
        Self {
            days,
            start_day: 1,
            seed,
            tariff,
            site,
            planner,
            min_horizon: Millis::new(DAY),
            max_horizon: Millis::new(2 * DAY),
            replan_slots: 1,
            foresight: Foresight::default(),
            perfect_foresight: true,
            plan_margin: Money::new(DEFAULT_PLAN_MARGIN),
            pv_factor: Factor::saturating(DEFAULT_PV_FACTOR),
            load_factor: Factor::saturating(DEFAULT_LOAD_FACTOR),
            scenarios: DEFAULT_SCENARIOS,
            end_value_quantile: DEFAULT_END_VALUE_QUANTILE,
            end_value_hours: DEFAULT_END_VALUE_HOURS,
            end_value_scale: DEFAULT_END_VALUE_SCALE,
        }
    }

    fn validate(&self) -> Result<(), EconomicsError> {
        if !(1..=365).contains(&self.days) {
            return Err(EconomicsError::Options(format!("--days = {} must be 1..=365", self.days)));
        }
        if !(1..=365).contains(&self.start_day) {
            return Err(EconomicsError::Options(format!("--start-day = {} must be 1..=365", self.start_day)));
        }
        if !(1..=96).contains(&self.replan_slots) {
            return Err(EconomicsError::Options(format!(
                "--replan-slots = {} must be 1..=96",
                self.replan_slots
            )));
        }
        let (lo, hi) = (self.min_horizon.get(), self.max_horizon.get());
        if !(SLOT..=7 * DAY).contains(&hi) || lo > 7 * DAY {
            return Err(EconomicsError::Options(format!(
                "horizon {} ms to {} ms: the longest must be 15 min to 7 days",
                lo, hi
            )));
        }
        self.planner.validate().map_err(|e| EconomicsError::Options(e.to_string()))
    }
}

/// The three costs, per month and in total, and what the run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EconomicsReport {
    /// The tariff's name.
    pub tariff: String,
    /// Its currency.
    pub currency: String,
    /// Simulated days.
    pub days: u32,
    /// First simulated day of the year.
    pub start_day: u16,
    /// Seed.
    pub seed: u64,
    /// EMS against both baselines, per month and in total.
    pub savings: Savings,
    /// The EMS run's energy and cost totals.
    pub ems: Totals,
    /// No battery.
    pub no_battery: Totals,
    /// Self-consumption only.
    pub self_consumption: Totals,
    /// Plans made (one per quarter-hour).
    pub plans: u64,
    /// Plans whose status was `feasible_relaxed` (SOC outside the window, …).
    pub plans_relaxed: u64,
    /// Plans that failed (the controller then ran its default mode for that slot).
    pub plan_errors: u64,
    /// Plans not acted on because they did not beat self-consumption by the margin (the slot
    /// ran self-consumption).
    pub plans_gated: u64,
    /// Mean and largest planning time, ms.
    pub plan_ms_mean: f64,
    /// Largest planning time, ms.
    pub plan_ms_max: f64,
    /// Mean planning horizon, slots.
    pub horizon_slots_mean: f64,
    /// Safety checks of both runs: hard-limit, invariant and lease violations (0 expected).
    pub violations: u64,
    /// The battery in the EMS run.
    pub ems_battery: BatteryFlows,
    /// The battery in the self-consumption run.
    pub self_consumption_battery: BatteryFlows,
    /// Wall time of the EMS run (simulation + planning), s.
    pub ems_wall_s: f64,
    /// Wall time of the self-consumption run, s.
    pub self_consumption_wall_s: f64,
    /// Wall time of the whole command (both runs in parallel), s.
    pub wall_s: f64,
    /// What the EMS run's planner was told the truth about (`none` normally; see
    /// [`Foresight`]).
    pub ems_foresight: String,
    /// The perfect-foresight case: the same control loop and planner given the true PV, load
    /// and prices; `null` when not run.
    pub perfect_foresight: Option<PerfectForesightReport>,
}

/// The perfect-foresight case beside the EMS and the baselines.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PerfectForesightReport {
    /// Per month, then the whole run.
    pub months: Vec<ForesightPeriod>,
    /// The whole run.
    pub total: ForesightPeriod,
    /// The perfect-foresight run's energy and cost totals.
    pub totals: Totals,
    /// Its battery.
    pub battery: BatteryFlows,
    /// Plans made.
    pub plans: u64,
    /// Plans not acted on (as [`EconomicsReport::plans_gated`]).
    pub plans_gated: u64,
    /// Wall time of the run, s.
    pub wall_s: f64,
}

/// One period's costs of the four cases and how much of the perfect-foresight saving over
/// self-consumption the EMS captured.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ForesightPeriod {
    /// `YYYY-MM` or `total`.
    pub period: String,
    /// Cost with perfect foresight.
    pub perfect_foresight: Money,
    /// Cost with the EMS.
    pub ems: Money,
    /// Cost with self-consumption only.
    pub self_consumption: Money,
    /// Cost without a battery.
    pub no_battery: Money,
    /// `self_consumption − perfect_foresight`: the most a plan could add over
    /// self-consumption (with this control loop).
    pub pf_vs_self_consumption: Money,
    /// `self_consumption − ems`.
    pub ems_vs_self_consumption: Money,
    /// `(self_consumption − ems) / (self_consumption − perfect_foresight)`: the share of the
    /// reachable saving the EMS captured; `null` when perfect foresight saves less than
    /// [`CAPTURE_MIN_SAVING`] (a ratio of two noise-sized numbers would mislead).
    pub capture: Option<f64>,
}

/// The smallest perfect-foresight saving over self-consumption (currency units) for which a
/// capture ratio is stated.
pub const CAPTURE_MIN_SAVING: f64 = 0.05;

impl ForesightPeriod {
    fn new(ems: &PeriodSavings, pf: Money) -> Self {
        let sc = ems.self_consumption;
        let reachable = sc - pf;
        let got = sc - ems.ems;
        Self {
            period: ems.period.clone(),
            perfect_foresight: pf,
            ems: ems.ems,
            self_consumption: sc,
            no_battery: ems.no_battery,
            pf_vs_self_consumption: reachable,
            ems_vs_self_consumption: got,
            capture: (reachable.get() >= CAPTURE_MIN_SAVING).then(|| got.get() / reachable.get()),
        }
    }
}

impl std::fmt::Display for PerfectForesightReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "perfect foresight (true PV, load and prices; same loop): cost, and the share of its saving over self-consumption the EMS captured"
        )?;
        writeln!(
            f,
            "{:<8} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8}",
            "period", "PF", "EMS", "self-cons", "no batt", "PF vs SC", "EMS vs SC", "capture"
        )?;
        for p in self.months.iter().chain(core::iter::once(&self.total)) {
            let capture = p.capture.map_or_else(|| "n/a".to_owned(), |c| format!("{:.1} %", c * 100.0));
            writeln!(
                f,
                "{:<8} {:>10.2} {:>10.2} {:>10.2} {:>10.2} {:>10.2} {:>10.2} {:>8}",
                p.period,
                p.perfect_foresight.get(),
                p.ems.get(),
                p.self_consumption.get(),
                p.no_battery.get(),
                p.pf_vs_self_consumption.get(),
                p.ems_vs_self_consumption.get(),
                capture
            )?;
        }
        writeln!(f, "PF:               {}", self.totals)?;
        writeln!(
            f,
            "battery (PF): throughput {:.1} kWh, charged from the grid {:.1} kWh, discharged into the grid {:.1} kWh",
            self.battery.throughput_kwh, self.battery.from_grid_kwh, self.battery.to_grid_kwh
        )
    }
}

impl std::fmt::Display for EconomicsReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "economics: {} days from day {} (seed {}), tariff '{}' ({}), 1 s control, re-planning every 15 min",
            self.days, self.start_day, self.seed, self.tariff, self.currency
        )?;
        writeln!(f, "{}", self.savings)?;
        writeln!(f, "EMS:              {}", self.ems)?;
        writeln!(f, "no battery:       {}", self.no_battery)?;
        writeln!(f, "self-consumption: {}", self.self_consumption)?;
        for (name, b) in [("EMS", &self.ems_battery), ("self-consumption", &self.self_consumption_battery)] {
            writeln!(
                f,
                "battery ({name}): throughput {:.1} kWh, charged from the grid {:.1} kWh, discharged into the grid {:.1} kWh",
                b.throughput_kwh, b.from_grid_kwh, b.to_grid_kwh
            )?;
        }
        writeln!(
            f,
            "plans: {} ({} relaxed, {} failed, {} not acted on: no better than self-consumption by the margin), {:.1} slots on average, {:.3} ms mean / {:.3} ms max",
            self.plans,
            self.plans_relaxed,
            self.plan_errors,
            self.plans_gated,
            self.horizon_slots_mean,
            self.plan_ms_mean,
            self.plan_ms_max
        )?;
        if self.ems_foresight != "none" {
            writeln!(f, "EMS planner told the truth about: {}", self.ems_foresight)?;
        }
        if let Some(pf) = &self.perfect_foresight {
            write!(f, "{pf}")?;
        }
        writeln!(f, "safety violations (all runs): {}", self.violations)?;
        writeln!(
            f,
            "wall time: {:.1} s (EMS run {:.1} s, self-consumption run {:.1} s)",
            self.wall_s, self.ems_wall_s, self.self_consumption_wall_s
        )
    }
}

/// The fixed-offset time bases of the module docs.
#[derive(Debug, Clone, Copy)]
struct Clocks {
    /// Simulated clock (ms since 1 January 00:00) at harness time 0.
    offset: u64,
    price: Timestamp,
    pv: Timestamp,
    load: Timestamp,
}

impl Clocks {
    fn new(offset: u64) -> Self {
        let at = |s: &str| s.parse::<Timestamp>().unwrap_or(Timestamp::UNIX_EPOCH);
        Self {
            offset,
            price: at("2017-12-31T23:00:00Z"),
            pv: at("2018-01-01T05:00:00Z"),
            load: at("2024-12-31T23:00:00Z"),
        }
    }

    /// The simulated clock at harness time `now`.
    fn clock(&self, now: Millis) -> u64 {
        self.offset + now.get()
    }

    fn shift(base: Timestamp, clock: u64) -> Timestamp {
        let ms = i64::try_from(clock).unwrap_or(i64::MAX);
        base.checked_add(SignedDuration::from_millis(ms)).unwrap_or(Timestamp::MAX)
    }

    fn price_ts(&self, clock: u64) -> Timestamp {
        Self::shift(self.price, clock)
    }
    fn pv_ts(&self, clock: u64) -> Timestamp {
        Self::shift(self.pv, clock)
    }
    fn load_ts(&self, clock: u64) -> Timestamp {
        Self::shift(self.load, clock)
    }
}

fn secs(step: Millis) -> f64 {
    #[allow(clippy::cast_precision_loss)] // a control step in ms
    let s = step.get() as f64 / 1000.0;
    s
}

/// What the battery did, from the simulator's truth (kWh): throughput, and how much of it
/// crossed the grid connection — charged from the grid, or discharged into it.
#[derive(Debug, Default, Clone, Copy, PartialEq, serde::Serialize)]
pub struct BatteryFlows {
    /// AC throughput, charge + discharge.
    pub throughput_kwh: f64,
    /// Charged while the site imported (the smaller of the two), i.e. from the grid.
    pub from_grid_kwh: f64,
    /// Discharged while the site exported (the smaller of the two), i.e. into the grid.
    pub to_grid_kwh: f64,
}

impl BatteryFlows {
    fn observe(&mut self, battery: Watts, grid: Watts, dt_s: f64) {
        let (b, g) = (f64::from(battery.get()), f64::from(grid.get()));
        let h = dt_s / 3600.0 / 1000.0;
        self.throughput_kwh += b.abs() * h;
        if b < 0.0 && g > 0.0 {
            self.from_grid_kwh += (-b).min(g) * h;
        }
        if b > 0.0 && g < 0.0 {
            self.to_grid_kwh += b.min(-g) * h;
        }
    }
}

/// Energy of the current quarter-hour, for the forecasters.
#[derive(Debug, Default, Clone, Copy)]
struct SlotEnergy {
    pv_wh: f64,
    load_wh: f64,
    seconds: f64,
}

impl SlotEnergy {
    fn add(&mut self, pv: Watts, load: Watts, dt_s: f64) {
        self.pv_wh += f64::from(pv.get()) * dt_s / 3600.0;
        self.load_wh += f64::from(load.get()) * dt_s / 3600.0;
        self.seconds += dt_s;
    }

    /// Mean PV and load, when the slot saw any time.
    fn mean(&self) -> Option<(Watts, Watts)> {
        if self.seconds <= 0.0 {
            return None;
        }
        let hours = self.seconds / 3600.0;
        #[allow(clippy::cast_possible_truncation)] // watts
        let w = |wh: f64| Watts::saturating((wh / hours) as f32);
        Some((w(self.pv_wh), w(self.load_wh)))
    }
}

/// The true mean PV and load of every quarter-hour of a run, by slot from the run's start,
/// recorded by the self-consumption run (every run of a seed sees the same weather and load:
/// the simulator's noise does not depend on what the battery does).
#[derive(Debug, Default, Clone)]
struct Truth {
    pv: Vec<Watts>,
    load: Vec<Watts>,
}

/// The last plan and how many slots ago it was made (for re-planning less often than every
/// slot).
#[derive(Debug, Clone, Default)]
struct LastPlan {
    battery_w: Vec<f64>,
    grid_w: Vec<f64>,
    /// Per slot: the planned battery power is what self-consumption would do from the
    /// planned SOC (a full battery exporting, an empty one importing, the deficit or surplus
    /// covered exactly): the slot is handed over as a self-consumption slot.
    self_consumption: Vec<bool>,
    age: usize,
}

impl LastPlan {
    fn new(problem: &Problem, soc: ems_strategies::Ratio, steps: &[Step], plan: Plan) -> Self {
        let p = Problem { soc_init: soc, ..*problem };
        let self_consumption = self_consumption_steps(&p, steps, &plan);
        Self { battery_w: plan.battery_w, grid_w: plan.grid_w, self_consumption, age: 0 }
    }
}

/// The EMS run's hook: plans, feeds the plan to the controller, keeps the ledgers.
struct PlanHook {
    clocks: Clocks,
    tariff: Tariff,
    dynamic: bool,
    problem: Problem,
    min_horizon: u64,
    max_horizon: u64,
    replan_slots: usize,
    foresight: Foresight,
    truth: std::sync::Arc<Truth>,
    last_plan: Option<LastPlan>,
    pv: PvForecaster,
    load: LoadForecaster,
    target: Option<PlanTarget>,
    next_plan: Option<u64>,
    slot: SlotEnergy,
    ems: Ledger,
    no_battery: Ledger,
    error: Option<LedgerError>,
    plans: u64,
    relaxed: u64,
    failed: u64,
    gated: u64,
    margin: f64,
    pv_factor: f64,
    load_factor: f64,
    plan_s: f64,
    plan_s_max: f64,
    horizon_slots: u64,
    flows: BatteryFlows,
    /// Plan against the forecasters' error scenarios.
    scenarios: bool,
    end_value_quantile: Option<f64>,
    end_value_hours: f64,
    end_value_scale: f64,
    pv_errors: ForecastErrors,
    load_errors: ForecastErrors,
    /// Forecasts made `ERROR_LEAD_SLOTS` ahead, awaiting their slot's measurement:
    /// (slot start, PV, load), oldest first.
    pending: std::collections::VecDeque<(u64, Watts, Watts)>,
}

impl PlanHook {
    fn new(
        opts: &EconomicsOptions,
        clocks: Clocks,
        foresight: Foresight,
        truth: std::sync::Arc<Truth>,
    ) -> Result<Self, EconomicsError> {
        let forecast = |e: ems_strategies::forecast::ForecastError| EconomicsError::Forecast(e.to_string());
        // The simulated array: horizontal, kWp × system efficiency, at Greensboro.
        let kwp = opts.site.pv_peak;
        let losses = 1.0 - f64::from(opts.site.pv_system_efficiency.fraction());
        let system = PvSystem::new(36.1, -79.95, 0.0, 180.0, kwp)
            .and_then(|s| s.with_losses(losses))
            .map_err(forecast)?;
        let pv = PvForecaster::new(system, PvCorrection::default()).map_err(forecast)?;
        #[allow(clippy::cast_possible_truncation)] // a household's mean load in W
        let mean = (f64::from(opts.site.annual_load.get()) / 8760.0) as f32;
        let cet = TimeZone::fixed(tz::offset(1));
        let load = LoadForecaster::new(
            LoadProfile::flat(96, Watts::saturating(mean)).map_err(forecast)?,
            0.2,
            cet.clone(),
            Calendar::default(),
        )
        .map_err(forecast)?;
        let tariff_tz = opts.tariff.time_zone().clone();
        Ok(Self {
            clocks,
            dynamic: matches!(opts.tariff.import(), ImportPricing::Dynamic(_)),
            tariff: opts.tariff.clone(),
            problem: opts.planner,
            min_horizon: opts.min_horizon.get().min(opts.max_horizon.get()),
            max_horizon: opts.max_horizon.get(),
            replan_slots: usize::try_from(opts.replan_slots).unwrap_or(1).max(1),
            foresight,
            truth,
            last_plan: None,
            pv,
            load,
            target: None,
            next_plan: None,
            slot: SlotEnergy::default(),
            ems: Ledger::new(opts.tariff.clone(), tariff_tz.clone()),
            no_battery: Ledger::new(opts.tariff.clone(), tariff_tz),
            error: None,
            plans: 0,
            relaxed: 0,
            failed: 0,
            gated: 0,
            margin: opts.plan_margin.get(),
            pv_factor: opts.pv_factor.get(),
            load_factor: opts.load_factor.get(),
            plan_s: 0.0,
            plan_s_max: 0.0,
            horizon_slots: 0,
            flows: BatteryFlows::default(),
            scenarios: opts.scenarios,
            end_value_quantile: opts.end_value_quantile,
            end_value_hours: opts.end_value_hours,
            end_value_scale: opts.end_value_scale,
            // Two weeks of daylight quarter-hours of at least 5 % of the peak; a week of load.
            pv_errors: ForecastErrors::new(14 * 48, Watts::saturating(kwp.get() * 0.05)),
            load_errors: ForecastErrors::new(7 * 96, Watts::saturating(50.0)),
            pending: std::collections::VecDeque::new(),
        })
    }

    /// Day-ahead prices are published at 13:00 for the next day: known until the end of today,
    /// or of tomorrow from 13:00 on. Non-dynamic tariffs are known for ever.
    fn known_until(&self, clock: u64) -> u64 {
        if !self.dynamic {
            return u64::MAX;
        }
        let midnight = clock - clock % DAY;
        if clock % DAY >= 13 * 3_600_000 {
            midnight + 2 * DAY
        } else {
            midnight + DAY
        }
    }

    /// The horizon's steps from the quarter-hour starting at `clock`.
    fn steps(&mut self, clock: u64) -> Vec<Step> {
        let known = if self.foresight.prices { u64::MAX } else { self.known_until(clock) };
        let end = known.min(clock + self.max_horizon).max(clock + self.min_horizon);
        let n = usize::try_from((end - clock).div_ceil(SLOT)).unwrap_or(96);
        let step = SignedDuration::from_millis(i64::try_from(SLOT).unwrap_or(900_000));
        let mut pv = self.pv.forecast(self.clocks.pv_ts(clock), step, n);
        let mut load = self.load.forecast(self.clocks.load_ts(clock), step, n);
        if let (Some(&p), Some(&l)) = (pv.get(ERROR_LEAD_SLOTS), load.get(ERROR_LEAD_SLOTS)) {
            let at = clock + SLOT * ERROR_LEAD_SLOTS as u64;
            if self.pending.back().is_none_or(|b| b.0 < at) {
                self.pending.push_back((at, p, l));
            }
        }
        // The truth where the diagnosis asks for it and the run has it (not beyond its end).
        let first = usize::try_from((clock - self.clocks.offset) / SLOT).unwrap_or(usize::MAX);
        #[allow(clippy::cast_possible_truncation)] // factors near 1 on watts
        let (pv_f, load_f) = (self.pv_factor as f32, self.load_factor as f32);
        for (k, (p, l)) in pv.iter_mut().zip(load.iter_mut()).enumerate() {
            let i = first.saturating_add(k);
            *p = match (self.foresight.pv, self.truth.pv.get(i)) {
                (true, Some(&t)) => t,
                _ => Watts::saturating(p.get() * pv_f),
            };
            *l = match (self.foresight.load, self.truth.load.get(i)) {
                (true, Some(&t)) => t,
                _ => Watts::saturating(l.get() * load_f),
            };
        }
        #[allow(clippy::cast_precision_loss)] // k < 200
        (0..n)
            .map(|k| {
                let c = clock + SLOT * u64::try_from(k).unwrap_or(0);
                // Beyond the published prices: the same time of the last published day.
                let priced = if c < known { c } else { c - (c - known) / DAY * DAY - DAY };
                let at = self.clocks.price_ts(priced);
                Step {
                    start: self.clocks.price_ts(c),
                    duration: step,
                    pv: pv.get(k).copied().unwrap_or(Watts::ZERO),
                    load: load.get(k).copied().unwrap_or(Watts::ZERO),
                    import_price: self.tariff.import_price(at),
                    // Tie-break toward charging early: a kWh exported later is worth a hair
                    // more, so among plans of equal cost the battery takes the PV surplus as soon
                    // as it comes (as self-consumption does) instead of at the last moment, where
                    // a forecast error would leave it short.
                    export_price: Price::new(
                        self.tariff.export_price(at).per_kwh() + TIE_BREAK_PER_SLOT * k as f64,
                    ),
                }
            })
            .collect()
    }

    fn plan(&mut self, clock: u64, snapshot: &Snapshot, now: Millis) {
        let Some(soc) = snapshot.battery.soc.value_at(now) else {
            // No SOC: no plan for this slot; the default mode runs.
            self.target = None;
            self.last_plan = None;
            self.failed += 1;
            return;
        };
        let steps = self.steps(clock);
        let started = Instant::now();
        let soc = ems_strategies::Ratio::saturating(f64::from(soc.fraction()));
        let problem =
            Problem { scenarios: self.error_scenarios(), end_value: self.end_value(&steps), ..self.problem };
        let result = replan(&problem, soc, &steps);
        let took = started.elapsed().as_secs_f64();
        self.plans += 1;
        self.plan_s += took;
        self.plan_s_max = self.plan_s_max.max(took);
        self.horizon_slots += u64::try_from(steps.len()).unwrap_or(0);
        match result {
            Ok(p) => {
                if p.status == PlanStatus::FeasibleRelaxed {
                    self.relaxed += 1;
                }
                if self.gate(&problem, soc, &steps, &p) {
                    let last = LastPlan::new(&self.problem, soc, &steps, p);
                    self.target = Self::target_of(&last);
                    self.last_plan = Some(last);
                } else {
                    self.gated += 1;
                    self.target = None;
                    self.last_plan = None;
                }
            }
            Err(_) => {
                self.failed += 1;
                self.target = None;
                self.last_plan = None;
            }
        }
    }

    /// Whether the plan is worth acting on: its cost over the horizon beats plain
    /// self-consumption on the same forecast by at least the margin. The energy each leaves in
    /// the battery at the end is valued at the horizon's mean import price × the discharge
    /// efficiency (it would serve the load after the horizon), so a plan does not look better
    /// merely by emptying the battery at the end. Self-consumption is feasible for the planner,
    /// so only a thin or end-of-horizon gain is gated: acting on it risks more through forecast
    /// errors and conversion losses than it promises.
    fn gate(&self, problem: &Problem, soc: ems_strategies::Ratio, steps: &[Step], plan: &Plan) -> bool {
        acted_on(&Problem { soc_init: soc, ..*problem }, steps, plan, Money::new(self.margin))
    }

    /// What stored energy at the end of the horizon is worth to the plan: the
    /// `end_value_quantile` of the horizon's import prices × the discharge efficiency, up to what
    /// the forecast deficit (load − PV) of the horizon's last `end_value_hours` needs from the
    /// battery. The same rule for the EMS and the perfect-foresight case (each on its own
    /// steps).
    fn end_value(&self, steps: &[Step]) -> Option<EndValue> {
        let q = self.end_value_quantile?;
        let mut prices: Vec<f64> = steps.iter().map(|s| s.import_price.per_kwh()).collect();
        prices.sort_by(f64::total_cmp);
        #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        // q in [0, 1], a horizon of a few hundred steps
        let at = ((prices.len().saturating_sub(1)) as f64 * q).round() as usize;
        let price =
            prices.get(at).copied()?.max(0.0) * self.problem.eff_discharge.get() * self.end_value_scale;
        let mut need = 0.0;
        let mut hours = 0.0;
        for s in steps.iter().rev() {
            if hours >= self.end_value_hours {
                break;
            }
            need += f64::from((s.load.get() - s.pv.get()).max(0.0)) * s.hours();
            hours += s.hours();
        }
        #[allow(clippy::cast_possible_truncation)] // watt-hours of a household battery
        let up_to = ems_core::WattHours::saturating((need / self.problem.eff_discharge.get()) as f32);
        Some(EndValue { price: Price::new(price), up_to })
    }

    /// The scenarios the plan is made against: the quantiles of the forecasters' errors at
    /// 12 h lead, 5 of PV × 3 of load, once each has a day's worth; none for an input the run
    /// is told the truth of.
    fn error_scenarios(&self) -> Option<Scenarios> {
        /// A day's worth of quarter-hours.
        const MIN_ERRORS: usize = 96;
        let ready = |e: &ForecastErrors, known: bool| known || e.len() >= MIN_ERRORS;
        if !self.scenarios
            || (self.foresight.pv && self.foresight.load)
            || !ready(&self.pv_errors, self.foresight.pv)
            || !ready(&self.load_errors, self.foresight.load)
        {
            return None;
        }
        let mut certain = ForecastErrors::new(1, Watts::ZERO);
        certain.record(Watts::saturating(1.0), Watts::saturating(1.0));
        let (pv, pv_bins) = if self.foresight.pv { (&certain, 1) } else { (&self.pv_errors, 5) };
        let (load, load_bins) = if self.foresight.load { (&certain, 1) } else { (&self.load_errors, 3) };
        error_scenarios(pv, load, (pv_bins, load_bins), 1, SCENARIO_RAMP).ok().flatten()
    }

    /// The controller's target for the slot `plan.age` slots after the plan was made.
    fn target_of(plan: &LastPlan) -> Option<PlanTarget> {
        #[allow(clippy::cast_possible_truncation)] // watts
        let w = |x: &f64| Watts::saturating(*x as f32);
        let battery = plan.battery_w.get(plan.age).map(w)?;
        let grid = plan.grid_w.get(plan.age).map(w)?;
        if plan.self_consumption.get(plan.age).copied().unwrap_or(false) {
            // Grid 0: the controller's self-consumption loop runs the slot and the battery
            // absorbs what the forecast missed, second by second.
            return Some(PlanTarget { battery, grid: Watts::ZERO });
        }
        Some(PlanTarget { battery, grid })
    }

    /// Re-plan at `slot_start` when due, else run the next slot of the last plan.
    fn next_slot(&mut self, slot_start: u64, snapshot: &Snapshot, now: Millis) {
        if let Some(last) = self.last_plan.as_mut() {
            last.age += 1;
            if last.age < self.replan_slots && last.age < last.battery_w.len() {
                self.target = Self::target_of(last);
                return;
            }
        }
        self.plan(slot_start, snapshot, now);
    }
}

impl CycleHook for PlanHook {
    fn inputs(&mut self, now: Millis, snapshot: &Snapshot) -> HookInputs {
        let clock = self.clocks.clock(now);
        let due = self.next_plan.is_none_or(|t| clock >= t);
        if due {
            let slot_start = clock - clock % SLOT;
            self.next_slot(slot_start, snapshot, now);
            self.next_plan = Some(slot_start + SLOT);
        }
        HookInputs { plan: self.target, ess_override: None }
    }

    fn observe(&mut self, now: Millis, step: Millis, site: &SimulatedSite) {
        let t = site.truth();
        let start = self.clocks.clock(now).saturating_sub(step.get());
        let at = self.clocks.price_ts(start);
        let dt = secs(step);
        let no_battery = Watts::saturating(t.load_power.get() - t.pv_power.get());
        for r in [self.ems.record(at, t.grid_power, dt), self.no_battery.record(at, no_battery, dt)] {
            if let Err(e) = r {
                self.error.get_or_insert(e);
            }
        }
        self.flows.observe(t.battery_power, t.grid_power, dt);
        self.slot.add(t.pv_power, t.load_power, dt);
        let end = self.clocks.clock(now);
        if end % SLOT == 0 {
            if let Some((pv, load)) = self.slot.mean() {
                let slot_start = end - SLOT;
                let step_len = SignedDuration::from_millis(i64::try_from(SLOT).unwrap_or(900_000));
                self.pv.observe(self.clocks.pv_ts(slot_start), step_len, pv);
                self.load.observe(self.clocks.load_ts(slot_start), load);
                while self.pending.front().is_some_and(|f| f.0 < slot_start) {
                    self.pending.pop_front();
                }
                if let Some((_, pv_f, load_f)) = self.pending.front().copied().filter(|f| f.0 == slot_start) {
                    self.pending.pop_front();
                    self.pv_errors.record(pv_f, pv);
                    self.load_errors.record(load_f, load);
                }
            }
            self.slot = SlotEnergy::default();
        }
    }
}

/// The baseline's hook: the ledger, and the truth of every quarter-hour for the foresight
/// runs.
struct LedgerHook {
    clocks: Clocks,
    ledger: Ledger,
    error: Option<LedgerError>,
    flows: BatteryFlows,
    slot: SlotEnergy,
    truth: Truth,
}

impl CycleHook for LedgerHook {
    fn inputs(&mut self, _: Millis, _: &Snapshot) -> HookInputs {
        HookInputs::default()
    }

    fn observe(&mut self, now: Millis, step: Millis, site: &SimulatedSite) {
        let t = site.truth();
        let start = self.clocks.clock(now).saturating_sub(step.get());
        if let Err(e) = self.ledger.record(self.clocks.price_ts(start), t.grid_power, secs(step)) {
            self.error.get_or_insert(e);
        }
        self.flows.observe(t.battery_power, t.grid_power, secs(step));
        self.slot.add(t.pv_power, t.load_power, secs(step));
        if self.clocks.clock(now) % SLOT == 0 {
            if let Some((pv, load)) = self.slot.mean() {
                self.truth.pv.push(pv);
                self.truth.load.push(load);
            }
            self.slot = SlotEnergy::default();
        }
    }
}

fn run_options(opts: &EconomicsOptions) -> RunOptions {
    let mut run = RunOptions::days(opts.days, opts.seed);
    run.site =
        SimSiteConfig { start_day_of_year: opts.start_day, start_time_of_day: Millis::ZERO, ..opts.site };
    run.controller = ControllerConfig {
        mode: ModeSetting::SelfConsumption(SelfConsumptionConfig::default()),
        ..ControllerConfig::default()
    };
    run
}

/// A run's harness report and wall time, s.
type Timed = Result<(crate::report::Report, f64), EconomicsError>;

fn timed(run: &RunOptions, hook: &mut dyn CycleHook) -> Timed {
    let t = Instant::now();
    let (r, _) = run_with_hook(run, &[], &[], hook)?;
    Ok((r, t.elapsed().as_secs_f64()))
}

/// Runs `a`, and `b` beside it on a second thread.
fn in_parallel(
    run: &RunOptions,
    a: &mut (dyn CycleHook + Send),
    b: Option<&mut (dyn CycleHook + Send)>,
) -> (Timed, Option<Timed>) {
    std::thread::scope(|s| {
        let other = b.map(|h| s.spawn(move || timed(run, h)));
        let first = timed(run, a);
        let second = other.map(|j| {
            j.join().unwrap_or_else(|_| Err(EconomicsError::Options("a simulation run panicked".to_owned())))
        });
        (first, second)
    })
}

fn missing() -> EconomicsError {
    EconomicsError::Options("a simulation run did not report".to_owned())
}

/// Run the self-consumption baseline, the EMS and (unless turned off) the perfect-foresight
/// case, two at a time in parallel, and bill them all. The self-consumption run records the
/// truth the foresight runs plan with, so it runs first; the EMS runs beside it when it
/// forecasts everything.
///
/// # Errors
/// [`EconomicsError`] for invalid options or a run the harness refuses.
pub fn run_economics(opts: &EconomicsOptions) -> Result<EconomicsReport, EconomicsError> {
    opts.validate()?;
    let started = Instant::now();
    let clocks = Clocks::new((u64::from(opts.start_day) - 1) * DAY);
    let run = run_options(opts);
    let mut sc_hook = LedgerHook {
        clocks,
        ledger: Ledger::new(opts.tariff.clone(), opts.tariff.time_zone().clone()),
        error: None,
        flows: BatteryFlows::default(),
        slot: SlotEnergy::default(),
        truth: Truth::default(),
    };
    // Phase 1: self-consumption, and the EMS beside it unless it needs the truth.
    let early = !opts.foresight.any();
    let mut ems_hook = PlanHook::new(opts, clocks, opts.foresight, std::sync::Arc::default())?;
    let (sc_run, ems_early) =
        in_parallel(&run, &mut sc_hook, early.then_some(&mut ems_hook as &mut (dyn CycleHook + Send)));
    let (sc_report, sc_wall) = sc_run?;
    if let Some(e) = sc_hook.error.take() {
        return Err(e.into());
    }
    let truth = std::sync::Arc::new(std::mem::take(&mut sc_hook.truth));
    // Phase 2: the perfect-foresight case, and the EMS beside it if it was not run yet.
    let mut pf_hook = if opts.perfect_foresight {
        Some(PlanHook::new(opts, clocks, Foresight::PERFECT, truth.clone())?)
    } else {
        None
    };
    if !early {
        ems_hook = PlanHook::new(opts, clocks, opts.foresight, truth)?;
    }
    let (ems_run, pf_run) = match (ems_early, pf_hook.as_mut()) {
        (Some(ems), Some(pf)) => (ems, Some(timed(&run, pf))),
        (Some(ems), None) => (ems, None),
        (None, pf) => {
            let (e, p) = in_parallel(&run, &mut ems_hook, pf.map(|h| h as &mut (dyn CycleHook + Send)));
            (e, p)
        }
    };
    let (ems_report, ems_wall) = ems_run?;
    if let Some(e) = ems_hook.error.take() {
        return Err(e.into());
    }
    let savings = Savings::compare(&ems_hook.ems, &ems_hook.no_battery, &sc_hook.ledger);
    let mut violations = ems_report.violation_count + sc_report.violation_count;
    let perfect_foresight = match (pf_hook.as_mut(), pf_run) {
        (Some(pf), Some(r)) => {
            let (pf_report, pf_wall) = r?;
            if let Some(e) = pf.error.take() {
                return Err(e.into());
            }
            violations += pf_report.violation_count;
            Some(foresight_report(&savings, pf, pf_wall))
        }
        (Some(_), None) => return Err(missing()),
        (None, _) => None,
    };
    #[allow(clippy::cast_precision_loss)] // counts
    let (plan_ms_mean, horizon_slots_mean) = if ems_hook.plans > 0 {
        (
            ems_hook.plan_s / ems_hook.plans as f64 * 1000.0,
            ems_hook.horizon_slots as f64 / ems_hook.plans as f64,
        )
    } else {
        (0.0, 0.0)
    };
    Ok(EconomicsReport {
        tariff: opts.tariff.name().to_owned(),
        currency: opts.tariff.currency().to_owned(),
        days: opts.days,
        start_day: opts.start_day,
        seed: opts.seed,
        ems: ems_hook.ems.total(),
        no_battery: ems_hook.no_battery.total(),
        self_consumption: sc_hook.ledger.total(),
        savings,
        plans: ems_hook.plans,
        plans_relaxed: ems_hook.relaxed,
        plan_errors: ems_hook.failed,
        plans_gated: ems_hook.gated,
        plan_ms_mean,
        plan_ms_max: ems_hook.plan_s_max * 1000.0,
        horizon_slots_mean,
        violations,
        ems_battery: ems_hook.flows,
        self_consumption_battery: sc_hook.flows,
        ems_wall_s: ems_wall,
        self_consumption_wall_s: sc_wall,
        wall_s: started.elapsed().as_secs_f64(),
        ems_foresight: opts.foresight.to_string(),
        perfect_foresight,
    })
}

/// The perfect-foresight run's costs beside the EMS's and the baselines', per month and in
/// total.
fn foresight_report(ems: &Savings, pf: &PlanHook, wall_s: f64) -> PerfectForesightReport {
    let pf_savings = Savings::compare(&pf.ems, &pf.no_battery, &pf.no_battery);
    let cost_of =
        |period: &str| pf_savings.months.iter().find(|m| m.period == period).map_or(Money::ZERO, |m| m.ems);
    PerfectForesightReport {
        months: ems.months.iter().map(|m| ForesightPeriod::new(m, cost_of(&m.period))).collect(),
        total: ForesightPeriod::new(&ems.total, pf_savings.total.ems),
        totals: pf.ems.total(),
        battery: pf.flows,
        plans: pf.plans,
        plans_gated: pf.gated,
        wall_s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foresight_parses_lists_and_names_an_unknown_item() {
        assert_eq!(Foresight::parse("none").unwrap(), Foresight::default());
        assert_eq!(Foresight::parse("all").unwrap(), Foresight::PERFECT);
        let f = Foresight::parse("pv, prices").unwrap();
        assert_eq!(f, Foresight { pv: true, load: false, prices: true });
        assert_eq!(f.to_string(), "pv,prices");
        assert_eq!(Foresight::default().to_string(), "none");
        let e = Foresight::parse("pv,weather").unwrap_err().to_string();
        assert!(e.contains("weather"), "{e}");
    }

    fn period(ems: f64, sc: f64) -> PeriodSavings {
        let s = Savings::compare(
            &Ledger::new(tariff(), TimeZone::UTC),
            &Ledger::new(tariff(), TimeZone::UTC),
            &Ledger::new(tariff(), TimeZone::UTC),
        );
        PeriodSavings { ems: Money::new(ems), self_consumption: Money::new(sc), ..s.total }
    }

    fn tariff() -> Tariff {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/tariffs/tou.toml");
        Tariff::load(std::path::Path::new(path)).unwrap()
    }

    #[test]
    fn capture_is_the_share_of_the_perfect_foresight_saving() {
        // SC 100, PF 90, EMS 92: 8 of the reachable 10 captured.
        let p = ForesightPeriod::new(&period(92.0, 100.0), Money::new(90.0));
        assert!((p.capture.unwrap() - 0.8).abs() < 1e-12);
        assert!((p.pf_vs_self_consumption.get() - 10.0).abs() < 1e-12);
        assert!((p.ems_vs_self_consumption.get() - 8.0).abs() < 1e-12);
        // Nothing reachable: no ratio of two noise-sized numbers.
        let p = ForesightPeriod::new(&period(100.01, 100.0), Money::new(99.99));
        assert_eq!(p.capture, None);
    }

    #[test]
    fn bad_options_are_refused_by_name() {
        let mut o = EconomicsOptions::reference_home(tariff(), 1, 1);
        o.replan_slots = 0;
        assert!(run_economics(&o).unwrap_err().to_string().contains("--replan-slots = 0"));
        let mut o = EconomicsOptions::reference_home(tariff(), 1, 1);
        o.max_horizon = Millis::new(8 * DAY);
        assert!(run_economics(&o).is_err());
    }
}
