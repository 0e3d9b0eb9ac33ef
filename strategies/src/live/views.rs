//! What the engine shows: the plan against what happened, the forecasts and their errors, the
//! prices, the savings and the daily report. All serialize to JSON (powers as `…_w` numbers in
//! watts, energies in kWh, prices in currency per kWh, SOC as a fraction).

use super::{PriceBasis, ReplanReason};
use crate::tariff::PriceSource;
use crate::units::{Factor, KilowattHours, Money, Price, Ratio};
use ems_core::Watts;
use jiff::civil::Date;
use jiff::Timestamp;

fn ser_w<S: serde::Serializer>(w: &Watts, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(f64::from(w.get()))
}

/// One slot of a plan.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct PlannedSlot {
    /// Start of the slot (on the slot grid; the first slot of a plan may have begun before the
    /// plan was made).
    pub start: Timestamp,
    /// End of the slot.
    pub end: Timestamp,
    /// Import price planned with.
    pub import_price: Price,
    /// Export price planned with.
    pub export_price: Price,
    /// The spot price, where the tariff is spot-indexed and it is known.
    pub spot: Option<Price>,
    /// PV forecast.
    #[serde(rename = "pv_w", serialize_with = "ser_w")]
    pub pv: Watts,
    /// Load forecast.
    #[serde(rename = "load_w", serialize_with = "ser_w")]
    pub load: Watts,
    /// Planned battery power (`+` discharge / `−` charge).
    #[serde(rename = "battery_w", serialize_with = "ser_w")]
    pub battery: Watts,
    /// Planned grid power (`+` import / `−` export).
    #[serde(rename = "grid_w", serialize_with = "ser_w")]
    pub grid: Watts,
    /// Planned SOC at the end of the slot.
    pub soc: Ratio,
    /// The battery does in this slot what self-consumption would do (from the planned SOC):
    /// the slot runs the controller's self-consumption loop (grid target 0), so the battery,
    /// not the grid, absorbs what the forecast missed.
    #[serde(default)]
    pub self_consumption: bool,
}

/// What happened in a slot: means of the observed intervals.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Actual {
    /// Mean battery power.
    #[serde(rename = "battery_w", serialize_with = "ser_w", deserialize_with = "de_w")]
    pub battery: Watts,
    /// Mean grid power.
    #[serde(rename = "grid_w", serialize_with = "ser_w", deserialize_with = "de_w")]
    pub grid: Watts,
    /// Mean PV power.
    #[serde(rename = "pv_w", serialize_with = "ser_w", deserialize_with = "de_w")]
    pub pv: Watts,
    /// Mean load.
    #[serde(rename = "load_w", serialize_with = "ser_w", deserialize_with = "de_w")]
    pub load: Watts,
    /// The last SOC measured in the slot.
    pub soc: Option<Ratio>,
}

fn de_w<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Watts, D::Error> {
    let v: f32 = serde::Deserialize::deserialize(d)?;
    Watts::try_new(v).map_err(|e| serde::de::Error::custom(format!("power {v} W: {e:?}")))
}

/// A slot of the plan view: the plan, and for past slots what happened.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct SlotView {
    /// The plan for the slot (the plan in force when it ended, for past slots).
    #[serde(flatten)]
    pub planned: PlannedSlot,
    /// What happened (past slots with observations).
    pub actual: Option<Actual>,
}

/// The plan, today's past slots included.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PlanView {
    /// When the current plan was made.
    pub created_at: Option<Timestamp>,
    /// When it expires without a re-plan (created + 2 re-plan intervals).
    pub expires_at: Option<Timestamp>,
    /// Why it was made.
    pub reason: Option<ReplanReason>,
    /// Its price basis.
    pub basis: Option<PriceBasis>,
    /// `"ok"`, `"expired"` or `"none"` (no plan, or no plan under self-consumption).
    pub status: &'static str,
    /// Its energy cost over the horizon (from its creation).
    pub total_cost: Option<Money>,
    /// Today's past slots (local day), then the plan's slots.
    pub slots: Vec<SlotView>,
}

/// One slot of the forecast view.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ForecastSlot {
    /// Start.
    pub start: Timestamp,
    /// End.
    pub end: Timestamp,
    /// PV forecast.
    #[serde(rename = "pv_w", serialize_with = "ser_w")]
    pub pv: Watts,
    /// PV under a clear sky.
    #[serde(rename = "pv_clear_sky_w", serialize_with = "ser_w")]
    pub pv_clear_sky: Watts,
    /// `"irradiance"` (from the irradiance forecast) or `"measured_ratio"` (clear sky × ratio).
    pub pv_source: &'static str,
    /// Load forecast.
    #[serde(rename = "load_w", serialize_with = "ser_w")]
    pub load: Watts,
}

/// Error of the forecasts the plans used, against what happened.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ErrorView {
    /// `"pv"` or `"load"`.
    pub quantity: &'static str,
    /// Slots compared.
    pub n: usize,
    /// Mean absolute error.
    #[serde(rename = "mae_w", serialize_with = "ser_w")]
    pub mae: Watts,
    /// Mean error (forecast − actual).
    #[serde(rename = "bias_w", serialize_with = "ser_w")]
    pub bias: Watts,
    /// MAE over the PV peak power (PV) or the mean actual load (load).
    pub nmae: Option<Factor>,
}

/// The forecasts over the horizon and their tracked errors.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ForecastView {
    /// The time the forecast is for.
    pub made_at: Timestamp,
    /// The smoothed daily ratio of measured to clear-sky PV.
    pub pv_long_run_ratio: Factor,
    /// The ratio over the last hours of daylight, if any.
    pub pv_recent_ratio: Option<Factor>,
    /// Slots over the horizon.
    pub slots: Vec<ForecastSlot>,
    /// Errors over the last 7 days (empty until a slot was forecast and observed).
    pub errors: Vec<ErrorView>,
}

/// Prices of one slot.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct PriceSlot {
    /// Start.
    pub start: Timestamp,
    /// End.
    pub end: Timestamp,
    /// The spot price, where the tariff is spot-indexed and it is known.
    pub spot: Option<Price>,
    /// Import price (all-in).
    pub import: Price,
    /// Where the import price came from.
    pub import_source: PriceSource,
    /// Export price.
    pub export: Price,
    /// Where the export price came from.
    pub export_source: PriceSource,
}

/// A calendar period in the tariff's time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    /// The local day.
    Day,
    /// The local month.
    Month,
    /// The calendar year.
    Year,
}

/// Cost and energy of one case in a period.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct LedgerView {
    /// Net cost (days: energy − export revenue; months and years also demand charges and fees).
    pub cost: Money,
    /// Energy imported.
    pub import_kwh: KilowattHours,
    /// Energy exported.
    pub export_kwh: KilowattHours,
}

/// The EMS against both baselines in one period.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SavingsView {
    /// Which period.
    pub period: Period,
    /// Its first local date.
    pub start: Date,
    /// `YYYY-MM-DD`, `YYYY-MM` or `YYYY`.
    pub label: String,
    /// The tariff's currency.
    pub currency: String,
    /// With the EMS (measured).
    pub ems: LedgerView,
    /// Without a battery (`grid = load − pv`).
    pub no_battery: LedgerView,
    /// With a battery that only maximises self-consumption (simulated).
    pub self_consumption: LedgerView,
    /// `no_battery.cost − ems.cost`.
    pub saving_vs_no_battery: Money,
    /// `self_consumption.cost − ems.cost`.
    pub saving_vs_self_consumption: Money,
}

/// One local day of the monthly report.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct DayRow {
    /// The local date.
    pub date: Date,
    /// Quarter-hours with observations (96; 92 or 100 on daylight-saving days).
    pub quarter_hours: u32,
    /// Energy imported.
    pub import_kwh: KilowattHours,
    /// Energy exported.
    pub export_kwh: KilowattHours,
    /// PV energy.
    pub pv_kwh: KilowattHours,
    /// Load energy.
    pub load_kwh: KilowattHours,
    /// Energy charged into the battery (AC).
    pub battery_charge_kwh: KilowattHours,
    /// Energy discharged from the battery (AC).
    pub battery_discharge_kwh: KilowattHours,
    /// Net energy cost with the EMS.
    pub cost_ems: Money,
    /// Net energy cost without a battery.
    pub cost_no_battery: Money,
    /// Net energy cost with self-consumption only.
    pub cost_self_consumption: Money,
    /// `cost_no_battery − cost_ems`.
    pub saving_vs_no_battery: Money,
    /// `cost_self_consumption − cost_ems`.
    pub saving_vs_self_consumption: Money,
}
