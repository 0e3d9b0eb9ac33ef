//! The live economics engine: re-planning, forecasts from the site's own meters and the money,
//! on a running site (issue #12).
//!
//! [`LiveEconomics`] is a pure, synchronous state machine that the gateway's planner thread
//! owns. It reads no clock and does no I/O: every call takes the time, and what it learns is
//! handed out as a serializable [`LiveState`] for the caller to store.
//!
//! | call | what happens |
//! |---|---|
//! | [`LiveEconomics::observe`] | one measured interval (grid, PV, battery power, SOC): slot means for the forecasters and the plan view, the three ledgers, the day's energy flows, the forecast errors |
//! | [`LiveEconomics::set_spot`] | live spot prices (or their last good copy) replace the tariff's spot series |
//! | [`LiveEconomics::replan_due`] / [`LiveEconomics::replan`] | when and how to re-plan: interval, SOC off plan, new prices, mode or rule change, price fallback |
//! | [`LiveEconomics::target`] | the current slot's planned battery and grid power for the controller |
//! | views | [`PlanView`], [`ForecastView`], [`PriceSlot`]s, [`SavingsView`], [`DayRow`]s for the REST API |
//! | [`LiveEconomics::take_events`] | basis changes, plans made, failed and expired, for the audit log |
//!
//! # Price basis
//!
//! A plan is priced with spot prices where the tariff is spot-indexed and prices are known
//! ([`PriceBasis::Spot`], live or the last good prices of a failing feed), with the tariff's own
//! fixed or time-of-use prices ([`PriceBasis::Tariff`]), or not at all
//! ([`PriceBasis::SelfConsumption`]: a dynamic import tariff with less than an hour of known
//! spot prices ahead; there is no plan and the configured mode runs). For a dynamic import
//! tariff the horizon is cut to the known spot prices.
//!
//! # Forecasts
//!
//! Load: one profile per day type ([`LoadForecaster`]), learned from the measured slot means
//! (`load = grid + pv + battery`, design.md §4). PV: clear-sky power × the measured ratio
//! ([`PvForecaster`]), or power from an irradiance forecast where one is set
//! ([`LiveEconomics::set_irradiance`], e.g. from [`parse_open_meteo`]). The error of the forecast
//! a plan used for a slot against what happened is tracked over the last 7 days
//! ([`ForecastView::errors`]).
//!
//! # The money
//!
//! Three [`Ledger`]s from the measured energy: the EMS (measured grid power), **no battery**
//! (`grid = load − pv`) and **self-consumption only**: a simulated battery with the planner's
//! capacity, power limits, efficiencies and SOC window, starting at the first measured SOC,
//! charging from PV surplus and discharging into the load, never to or from the grid.
//!
//! [`Ledger`]: crate::accounting::Ledger
//! [`LoadForecaster`]: crate::forecast::LoadForecaster
//! [`PvForecaster`]: crate::forecast::PvForecaster

mod engine;
mod forecasts;
mod money;
mod open_meteo;
mod state;
mod views;

pub use engine::{LiveEconomics, LivePlan};
pub use open_meteo::{parse_open_meteo, OpenMeteoError};
pub use state::{LiveState, STATE_VERSION};
pub use views::{
    Actual, DayRow, ErrorView, ForecastSlot, ForecastView, LedgerView, Period, PlanView, PlannedSlot,
    PriceSlot, SavingsView, SlotView,
};

use crate::forecast::{ForecastError, PvSystem};
use crate::optimizer::{PlanError, Problem};
use crate::tariff::Tariff;
use crate::units::{Factor, Money, Ratio};
use ems_core::Watts;
use jiff::{SignedDuration, Timestamp};
use std::fmt;

/// How long forecast errors are kept (the window of the live nMAE): 7 days.
pub const ERROR_WINDOW: SignedDuration = SignedDuration::from_hours(7 * 24);

/// What the engine is configured with. [`LiveConfig::new`] fills the defaults.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// The site's tariff (fees, VAT, export, demand charge, time-of-use); days and months are
    /// counted in its time zone.
    pub tariff: Tariff,
    /// The PV array (location, orientation, peak power).
    pub pv: PvSystem,
    /// The battery model of the planner (derived from the site's safety limits by the caller).
    /// Its `soc_init` is replaced by the measured SOC at every plan. The simulated
    /// self-consumption battery has the same capacity, limits, efficiencies and SOC window and
    /// starts at the first measured SOC (at `soc_init` if the first interval has none).
    pub problem: Problem,
    /// Mean site load before anything is learned (a flat profile; e.g. annual kWh / 8760 h).
    pub load_default: Watts,
    /// Re-plan at least this often (default 15 min). A plan expires after two intervals.
    pub replan_every: SignedDuration,
    /// Planning horizon (default 36 h; cut to the known spot prices for dynamic tariffs).
    pub horizon: SignedDuration,
    /// Re-plan when the measured SOC is further than this from the planned SOC (default 0.10).
    pub soc_off_plan: Ratio,
    /// Plan slot: 15, 30 or 60 min (default 15 min).
    pub slot: SignedDuration,
    /// A plan is acted on only when it beats plain self-consumption on its own forecast, over
    /// the horizon, by at least this (default 0.03 in the tariff's currency; negative: act on
    /// every plan). Otherwise the configured mode runs.
    pub plan_margin: Money,
    /// The plan uses the PV forecast × this (default 0.85): a cautious quantile, because too
    /// little stored energy costs the dear import price while too much costs only conversion
    /// losses (`docs/ECONOMICS.md`, step 4). The forecast shown is the forecaster's own.
    pub pv_factor: Factor,
    /// The plan uses the load forecast × this (default 1.05), for the same reason.
    pub load_factor: Factor,
}

impl LiveConfig {
    /// A configuration with the defaults: re-plan every 15 min, 36 h horizon, 0.10 SOC
    /// deviation, 15-min slots, 500 W default load, and the plan execution measured in
    /// `docs/ECONOMICS.md` (margin 0.03, PV × 0.85, load × 1.05).
    #[must_use]
    pub fn new(tariff: Tariff, pv: PvSystem, problem: Problem) -> Self {
        Self {
            tariff,
            pv,
            problem,
            load_default: ems_core::watts!(500.0),
            replan_every: SignedDuration::from_mins(15),
            horizon: SignedDuration::from_hours(36),
            soc_off_plan: crate::ratio!(0.10),
            slot: SignedDuration::from_mins(15),
            plan_margin: Money::new(0.03),
            pv_factor: crate::factor!(0.85),
            load_factor: crate::factor!(1.05),
        }
    }
}

/// One measured interval. Signs (design.md §4): grid `+` import / `−` export, battery `+`
/// discharge / `−` charge, PV `≥ 0`; the site load is `grid + pv + battery`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    /// Mean grid power over the interval.
    pub grid: Watts,
    /// Mean PV power over the interval.
    pub pv: Watts,
    /// Mean battery power over the interval.
    pub battery: Watts,
    /// SOC at the end of the interval, if known.
    pub soc: Option<Ratio>,
}

/// Whether spot prices handed to [`LiveEconomics::set_spot`] are live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpotStatus {
    /// Fresh from a working source.
    Live,
    /// The last good prices of a source that currently fails.
    LastGood,
}

/// Why a plan was (or is to be) made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplanReason {
    /// No plan yet (start-up, or after a restart).
    Start,
    /// The re-plan interval has passed.
    Interval,
    /// New prices arrived.
    NewPrices,
    /// The measured SOC left the planned SOC by more than the configured deviation.
    SocOffPlan,
    /// The operator changed the mode.
    ModeChange,
    /// An operator rule changed.
    RuleChange,
    /// The prices the plan was based on are no longer available (the basis changed).
    PriceFallback,
}

impl ReplanReason {
    /// The snake_case name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Interval => "interval",
            Self::NewPrices => "new_prices",
            Self::SocOffPlan => "soc_off_plan",
            Self::ModeChange => "mode_change",
            Self::RuleChange => "rule_change",
            Self::PriceFallback => "price_fallback",
        }
    }
}

impl fmt::Display for ReplanReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a plan is priced with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum PriceBasis {
    /// Spot prices: from a live feed (`live`), or the last good prices of a failing source.
    Spot {
        /// Whether the prices are live.
        live: bool,
    },
    /// The tariff's own fixed or time-of-use prices (no spot price is known or needed).
    Tariff,
    /// No usable price: no plan, the configured mode runs.
    SelfConsumption,
}

impl PriceBasis {
    /// `"spot"`, `"last_good"`, `"tariff"` or `"self_consumption"`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Spot { live: true } => "spot",
            Self::Spot { live: false } => "last_good",
            Self::Tariff => "tariff",
            Self::SelfConsumption => "self_consumption",
        }
    }
}

impl fmt::Display for PriceBasis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something the gateway should audit.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum LiveEvent {
    /// The price basis of the plans changed (`from` is `None` for the first plan).
    BasisChanged {
        /// When (the time of the plan that noticed it).
        at: Timestamp,
        /// The previous basis.
        from: Option<PriceBasis>,
        /// The new basis.
        to: PriceBasis,
    },
    /// A plan was made (with no slots under [`PriceBasis::SelfConsumption`]).
    Replanned {
        /// When.
        at: Timestamp,
        /// Why.
        reason: ReplanReason,
        /// Its price basis.
        basis: PriceBasis,
        /// Number of slots.
        slots: usize,
        /// Its energy cost over the horizon.
        cost: Money,
    },
    /// Planning failed; there is no plan until the next success.
    PlanFailed {
        /// When.
        at: Timestamp,
        /// Why a plan was being made.
        reason: ReplanReason,
        /// The planner's error.
        error: String,
    },
    /// The plan was not renewed for two intervals; the configured mode takes over.
    PlanExpired {
        /// When this was noticed.
        at: Timestamp,
        /// When the plan was made.
        created_at: Timestamp,
    },
}

impl fmt::Display for LiveEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BasisChanged { from, to, .. } => match from {
                Some(from) => write!(f, "price basis changed from {from} to {to}"),
                None => write!(f, "price basis {to}"),
            },
            Self::Replanned { reason, basis, slots, cost, .. } => {
                write!(f, "re-planned ({reason}) on {basis}: {slots} slots, cost {:.2}", cost.get())
            }
            Self::PlanFailed { reason, error, .. } => write!(f, "planning ({reason}) failed: {error}"),
            Self::PlanExpired { created_at, .. } => write!(f, "the plan made at {created_at} expired"),
        }
    }
}

/// The engine refused a configuration, an input or a state.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LiveError {
    /// A configuration value is out of range.
    #[error("live economics: {field} = {value}: {expected}")]
    Config {
        /// The field.
        field: &'static str,
        /// The rejected value.
        value: String,
        /// What is valid.
        expected: &'static str,
    },
    /// A measured interval is unusable (named field and value).
    #[error("measurement at {at}: {field} = {value}: {expected}")]
    Measurement {
        /// Start of the interval.
        at: Timestamp,
        /// The field.
        field: &'static str,
        /// The rejected value.
        value: String,
        /// What is valid.
        expected: &'static str,
    },
    /// A forecaster could not be built.
    #[error("live economics: forecaster: {0}")]
    Forecast(#[from] ForecastError),
    /// The planner refused the problem.
    #[error("live economics: planner: {0}")]
    Plan(#[from] PlanError),
    /// A stored state of another version.
    #[error("live economics state version {found} is not the supported version {expected}")]
    StateVersion {
        /// The stored version.
        found: u32,
        /// The version this build reads.
        expected: u32,
    },
    /// A stored state does not fit the configuration.
    #[error("live economics state: {field} = {value}: {expected}")]
    State {
        /// The field.
        field: &'static str,
        /// The rejected value.
        value: String,
        /// What is valid.
        expected: &'static str,
    },
}
