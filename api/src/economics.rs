//! Live economics on the API (issue #12): the day's plan against what happened, the forecast
//! with its error, the prices and where they come from, the savings, the monthly report, the
//! operator rules and a one-line summary of what drives the battery now.
//!
//! `ems-api` does not depend on `ems-strategies`: it talks to the economics engine through the
//! [`EconomicsPort`] defined here, and the gateway implements it (the pattern of
//! [`crate::ports::EmergencyStopPort`]). Every method is synchronous and cheap: the gateway
//! answers from a snapshot behind a mutex, never from the control thread. A server without a
//! port ([`crate::state::ApiState::economics`] is `None`) answers every economics endpoint with
//! 404 [`NOT_CONFIGURED`].
//!
//! The DTOs here are the wire format (serde, `snake_case` keys as the endpoints document them).
//! Powers and the state of charge are [`Watts`] and [`Percent`]; prices (currency per kWh),
//! money (currency) and energies (kWh) are plain numbers named by their key, because their unit
//! types live in `ems-strategies`, which this crate must not depend on.

use crate::error::ApiError;
use crate::input::{self, FieldError};
use axum::http::StatusCode;
use ems_core::{Percent, Watts};
use jiff::civil::Date;
use jiff::Timestamp;
use serde::{Serialize, Serializer};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// The error text of every economics endpoint on a site without an `[economics]` section.
pub const NOT_CONFIGURED: &str = "economics is not configured on this site (no [economics] section)";

/// The CSV header of `GET /api/v1/report?format=csv`.
pub const REPORT_CSV_HEADER: &str = "date,import_kwh,export_kwh,pv_kwh,load_kwh,battery_charge_kwh,battery_discharge_kwh,cost,cost_no_battery,cost_self_consumption,saving_vs_no_battery,saving_vs_self_consumption";

/// The most price points one `POST /api/v1/prices` may carry (a week of 15-minute prices
/// fits; the body limit of 64 KiB is reached first anyway).
pub const MAX_PUSHED_PRICES: usize = 2000;

// ---- Serialization helpers ----------------------------------------------------------------

fn ser_watts<S: Serializer>(w: &Watts, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f32(w.get())
}

fn ser_opt_watts<S: Serializer>(w: &Option<Watts>, s: S) -> Result<S::Ok, S::Error> {
    match w {
        Some(w) => s.serialize_f32(w.get()),
        None => s.serialize_none(),
    }
}

fn ser_percent<S: Serializer>(p: &Percent, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f32(p.get())
}

// ---- DTOs -----------------------------------------------------------------------------------

/// Whether a plan is in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanStatus {
    /// A plan is in force.
    Ok,
    /// The last plan ran past its end and no new one was made.
    Expired,
    /// No plan was made yet.
    None,
}

/// Why the current plan was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanReason {
    /// The first plan after start.
    Start,
    /// The regular re-planning interval.
    Interval,
    /// New prices arrived.
    NewPrices,
    /// The state of charge left the plan's band.
    SocOffPlan,
    /// The operating mode changed.
    ModeChange,
    /// The operator rules changed.
    RuleChange,
    /// The price source failed and a fallback basis took over.
    PriceFallback,
}

/// What the plan's prices are based on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PriceBasis {
    /// Live spot prices.
    Spot,
    /// The last good spot prices (the source is failing).
    LastGood,
    /// The configured tariff (no spot prices).
    Tariff,
    /// No prices at all: plain self-consumption.
    SelfConsumption,
}

/// The state of the spot price feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PriceStatus {
    /// Fresh prices from the source.
    Live,
    /// The source fails; the last good prices still cover now.
    LastGood,
    /// No price covers now any more.
    Exhausted,
}

/// A kind of price source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PriceSourceKind {
    /// aWATTar.
    Awattar,
    /// ENTSO-E transparency platform.
    Entsoe,
    /// A local file.
    File,
    /// Pushed through `POST /api/v1/prices`.
    Push,
}

/// What actually happened in a past plan slot.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SlotActual {
    /// Mean battery power, W (+ discharge / − charge).
    #[serde(serialize_with = "ser_watts")]
    pub battery_w: Watts,
    /// Mean grid power, W (+ import / − export).
    #[serde(serialize_with = "ser_watts")]
    pub grid_w: Watts,
    /// State of charge at the slot's end.
    #[serde(serialize_with = "ser_percent")]
    pub soc_percent: Percent,
}

/// One slot of the plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanSlot {
    /// Start (UTC).
    pub start: Timestamp,
    /// End (UTC, exclusive).
    pub end: Timestamp,
    /// All-in import price, currency per kWh.
    pub import_price: f64,
    /// All-in export price (feed-in), currency per kWh.
    pub export_price: f64,
    /// The spot (market) price, currency per kWh, when the basis has one.
    pub spot_price: Option<f64>,
    /// Forecast PV, W.
    #[serde(serialize_with = "ser_watts")]
    pub pv_w: Watts,
    /// Forecast load, W.
    #[serde(serialize_with = "ser_watts")]
    pub load_w: Watts,
    /// Planned battery power, W (+ discharge / − charge).
    #[serde(serialize_with = "ser_watts")]
    pub battery_w: Watts,
    /// Planned grid power, W (+ import / − export).
    #[serde(serialize_with = "ser_watts")]
    pub grid_w: Watts,
    /// Planned state of charge at the slot's end.
    #[serde(serialize_with = "ser_percent")]
    pub soc_percent: Percent,
    /// The slot runs the controller's self-consumption loop (the plan's battery power is what
    /// self-consumption would do; the battery absorbs what the forecast missed).
    pub self_consumption: bool,
    /// What happened (past slots), `None` for future slots.
    pub actual: Option<SlotActual>,
}

/// `GET /api/v1/plan`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanView {
    /// Whether a plan is in force.
    pub status: PlanStatus,
    /// When the plan was made.
    pub created_at: Option<Timestamp>,
    /// When it runs out.
    pub expires_at: Option<Timestamp>,
    /// Why it was made.
    pub reason: Option<PlanReason>,
    /// What its prices are based on.
    pub price_basis: PriceBasis,
    /// Whether the plan is acted on: `false` when it does not beat plain self-consumption on
    /// its own forecast by the configured margin (`[economics] plan_margin`); the configured
    /// mode then runs.
    pub acted_on: bool,
    /// ISO 4217 code (`EUR`).
    pub currency: String,
    /// The slots, in time order (today's and the plan's horizon).
    pub slots: Vec<PlanSlot>,
}

/// One slot of the forecast, with what was measured once it is past.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ForecastSlot {
    /// Start (UTC).
    pub start: Timestamp,
    /// End (UTC, exclusive).
    pub end: Timestamp,
    /// Forecast PV, W.
    #[serde(serialize_with = "ser_watts")]
    pub pv_w: Watts,
    /// Forecast load, W.
    #[serde(serialize_with = "ser_watts")]
    pub load_w: Watts,
    /// Measured mean PV, W (past slots).
    #[serde(serialize_with = "ser_opt_watts")]
    pub pv_actual_w: Option<Watts>,
    /// Measured mean load, W (past slots).
    #[serde(serialize_with = "ser_opt_watts")]
    pub load_actual_w: Option<Watts>,
}

/// The forecast's live error over a trailing window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ForecastErrors {
    /// Normalized mean absolute error of PV (ratio, 0.1 = 10 %), `None` without samples.
    pub pv_nmae: Option<f64>,
    /// Normalized mean absolute error of the load.
    pub load_nmae: Option<f64>,
    /// The window the errors cover, hours.
    pub window_hours: f64,
    /// Slots compared.
    pub samples: u64,
}

/// `GET /api/v1/forecast`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForecastView {
    /// The slots, in time order.
    pub slots: Vec<ForecastSlot>,
    /// The live error.
    pub errors: ForecastErrors,
    /// Measured over forecast PV today (the forecast's correction factor), if known.
    pub pv_ratio: Option<f64>,
}

/// One price interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PricePoint {
    /// Start (UTC).
    pub start: Timestamp,
    /// End (UTC, exclusive).
    pub end: Timestamp,
    /// Spot (market) price, currency per kWh.
    pub price: f64,
    /// All-in import price (spot plus the tariff's fees and taxes), currency per kWh.
    pub import_price: f64,
    /// All-in export price, currency per kWh.
    pub export_price: f64,
}

/// The health of one configured price source.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PriceSourceView {
    /// Which source.
    pub kind: PriceSourceKind,
    /// Its last successful fetch (or push).
    pub last_ok: Option<Timestamp>,
    /// Its last error, in operator language.
    pub last_error: Option<String>,
    /// Points it holds.
    pub points: u64,
    /// Until when its points reach.
    pub covered_until: Option<Timestamp>,
}

/// `GET /api/v1/prices`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PricesView {
    /// The source the current prices come from, if any.
    pub source: Option<PriceSourceKind>,
    /// The feed's state.
    pub status: PriceStatus,
    /// What the plan's prices are based on.
    pub basis: PriceBasis,
    /// ISO 4217 code.
    pub currency: String,
    /// The known prices, in time order.
    pub prices: Vec<PricePoint>,
    /// Every configured source.
    pub sources: Vec<PriceSourceView>,
}

/// One price point of `POST /api/v1/prices`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PushedPrice {
    /// Start (UTC).
    pub start: Timestamp,
    /// End (UTC, exclusive; after `start`).
    pub end: Timestamp,
    /// Spot price, currency per kWh (finite; may be negative).
    pub price: f64,
}

/// The period of `GET /api/v1/savings`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SavingsPeriod {
    /// Today (the site's local day).
    Day,
    /// This month.
    Month,
    /// This year.
    Year,
}

impl SavingsPeriod {
    /// Parse `day`, `month` or `year`.
    ///
    /// # Errors
    /// [`FieldError`] naming `period` and the value.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        match raw {
            "day" => Ok(Self::Day),
            "month" => Ok(Self::Month),
            "year" => Ok(Self::Year),
            other => Err(FieldError::new("period", format!("must be day, month or year, got {other:?}"))),
        }
    }
}

/// Cost and energy of one way of running the site.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CostSummary {
    /// Net cost (import cost minus export revenue), currency.
    pub cost: f64,
    /// Energy imported, kWh.
    pub import_kwh: f64,
    /// Energy exported, kWh.
    pub export_kwh: f64,
}

/// `GET /api/v1/savings`: the EMS against two counterfactuals on the same measured PV and load.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SavingsView {
    /// The period.
    pub period: SavingsPeriod,
    /// Its first local day.
    pub start: Date,
    /// ISO 4217 code.
    pub currency: String,
    /// What the site cost with the EMS.
    pub ems: CostSummary,
    /// What it would have cost without a battery.
    pub no_battery: CostSummary,
    /// What it would have cost with plain self-consumption.
    pub self_consumption: CostSummary,
    /// `no_battery.cost − ems.cost`, currency.
    pub saving_vs_no_battery: f64,
    /// `self_consumption.cost − ems.cost`, currency.
    pub saving_vs_self_consumption: f64,
}

/// A calendar month of the report (`YYYY-MM`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReportMonth {
    /// Its first day.
    pub first_day: Date,
}

impl ReportMonth {
    /// Parse `YYYY-MM` (year 1900..=9999).
    ///
    /// # Errors
    /// [`FieldError`] naming `month` and the value.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let bad = || FieldError::new("month", format!("must be YYYY-MM (e.g. 2026-05), got {raw:?}"));
        let (y, m) = raw.split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || m.len() != 2 || !y.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let year: i16 = y.parse().map_err(|_| bad())?;
        let month: i8 = m.parse().map_err(|_| bad())?;
        if year < 1900 {
            return Err(bad());
        }
        Date::new(year, month, 1).map(|first_day| Self { first_day }).map_err(|_| bad())
    }
}

impl std::fmt::Display for ReportMonth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.first_day.year(), self.first_day.month())
    }
}

/// One local day of the monthly report (energies kWh, money in the report's currency).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DayRow {
    /// The local day.
    pub date: Date,
    /// Imported.
    pub import_kwh: f64,
    /// Exported.
    pub export_kwh: f64,
    /// PV produced.
    pub pv_kwh: f64,
    /// Consumed.
    pub load_kwh: f64,
    /// Into the battery.
    pub battery_charge_kwh: f64,
    /// Out of the battery.
    pub battery_discharge_kwh: f64,
    /// Net cost with the EMS.
    pub cost: f64,
    /// Net cost without a battery.
    pub cost_no_battery: f64,
    /// Net cost with plain self-consumption.
    pub cost_self_consumption: f64,
    /// `cost_no_battery − cost`.
    pub saving_vs_no_battery: f64,
    /// `cost_self_consumption − cost`.
    pub saving_vs_self_consumption: f64,
}

impl DayRow {
    /// The row in the order of [`REPORT_CSV_HEADER`].
    #[must_use]
    pub fn csv_line(&self) -> String {
        let n = [
            self.import_kwh,
            self.export_kwh,
            self.pv_kwh,
            self.load_kwh,
            self.battery_charge_kwh,
            self.battery_discharge_kwh,
            self.cost,
            self.cost_no_battery,
            self.cost_self_consumption,
            self.saving_vs_no_battery,
            self.saving_vs_self_consumption,
        ];
        let mut line = self.date.to_string();
        for x in n {
            line.push(',');
            // Energies to the Wh, money to a hundredth of a cent: a spreadsheet sums them.
            line.push_str(&format!("{x:.4}"));
        }
        line
    }
}

/// `GET /api/v1/report` (the handler adds `month`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MonthReport {
    /// ISO 4217 code.
    pub currency: String,
    /// One row per local day with data, in order.
    pub days: Vec<DayRow>,
}

/// Which operator rule decides now.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct RuleDecision {
    /// The rule that wins (highest priority of those that fire).
    pub winner: Option<String>,
    /// Its action (`NO_DISCHARGE`, `FORCE_CHARGE 2000 W`, ...).
    pub action: Option<String>,
    /// Every rule whose conditions hold now.
    pub fired: Vec<String>,
}

/// `GET /api/v1/rules`.
#[derive(Debug, Clone, PartialEq)]
pub struct RulesView {
    /// The stored rule set as JSON (`{"country"?, "rules": [...]}`; the rules engine owns its
    /// format).
    pub set: Map<String, Value>,
    /// The current decision.
    pub decision: RuleDecision,
}

/// `GET /api/v1/economics`: what the operator page shows at a glance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EconomicsSummary {
    /// What the plan's prices are based on.
    pub price_basis: PriceBasis,
    /// The spot price feed's state.
    pub price_status: PriceStatus,
    /// What drives the battery now and why, in operator language (`rule 'evening peak':
    /// NO_DISCHARGE`, `plan slot 14:15–14:30: charge 2.0 kW`, `mode: self-consumption`).
    pub drives: String,
    /// The fallback in force, if any (`spot prices failing since 13:02: using the last good
    /// prices`).
    pub fallback: Option<String>,
    /// The operator rule in force, if any.
    pub active_rule: Option<String>,
}

/// How the port refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortErrorKind {
    /// Invalid input (400).
    Invalid,
    /// Conflicts with what is stored (409), e.g. overlapping price points.
    Conflict,
    /// Not available on this site (404), e.g. no push price source configured.
    NotFound,
    /// The engine could not answer (503).
    Unavailable,
}

impl PortErrorKind {
    /// The HTTP status.
    #[must_use]
    pub const fn status(self) -> StatusCode {
        match self {
            Self::Invalid => StatusCode::BAD_REQUEST,
            Self::Conflict => StatusCode::CONFLICT,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// A refusal by the economics engine: the field (a path such as `prices[3].end` or
/// `rules[0].when.from`) and what is wrong, with the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PortError {
    /// Which HTTP status.
    pub kind: PortErrorKind,
    /// The field at fault (empty: the whole request).
    pub field: String,
    /// What is wrong, with the value.
    pub message: String,
}

impl PortError {
    /// A refusal of `field`.
    #[must_use]
    pub fn new(kind: PortErrorKind, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { kind, field: field.into(), message: message.into() }
    }
}

impl From<PortError> for ApiError {
    fn from(e: PortError) -> Self {
        let field = Some(e.field.clone()).filter(|f| !f.is_empty());
        let error = if e.field.is_empty() { e.message } else { format!("{}: {}", e.field, e.message) };
        ApiError { field, ..ApiError::new(e.kind.status(), error) }
    }
}

/// The economics engine as the API sees it. The gateway implements it over its live
/// economics; every method answers from a snapshot (cheap, never blocks on the control
/// thread). `actor` is the audit actor of the caller (`"ops (operator)"`).
pub trait EconomicsPort: Send + Sync {
    /// The plan in force with today's actuals.
    fn plan(&self) -> PlanView;
    /// The forecast with actuals and its live error.
    fn forecast(&self) -> ForecastView;
    /// The prices and their sources.
    fn prices(&self) -> PricesView;
    /// Store pushed spot prices; how many were accepted.
    ///
    /// # Errors
    /// [`PortError`]: no push source configured ([`PortErrorKind::NotFound`]), overlapping or
    /// out-of-order points ([`PortErrorKind::Conflict`], field `prices[i].start`), values out
    /// of range ([`PortErrorKind::Invalid`]).
    fn push_prices(&self, actor: &str, prices: Vec<PushedPrice>) -> Result<usize, PortError>;
    /// Savings over `period` (the current one, in the site's time zone).
    ///
    /// # Errors
    /// [`PortError`] if the accounting cannot be read.
    fn savings(&self, period: SavingsPeriod) -> Result<SavingsView, PortError>;
    /// One row per local day of `month`.
    ///
    /// # Errors
    /// [`PortError`] if the month is not available or the accounting cannot be read.
    fn report(&self, month: ReportMonth) -> Result<MonthReport, PortError>;
    /// The stored rule set and the current decision.
    fn rules(&self) -> RulesView;
    /// Validate and store a rule set (JSON as `GET` shows it, without `decision`); answers the
    /// stored set. A refused set leaves the stored one unchanged.
    ///
    /// # Errors
    /// [`PortError`] naming the path (`rules[0].when.from`) and the value.
    fn put_rules(&self, actor: &str, rules: Value) -> Result<Value, PortError>;
    /// What drives the battery now.
    fn summary(&self) -> EconomicsSummary;
}

impl std::fmt::Debug for dyn EconomicsPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dyn EconomicsPort")
    }
}

// ---- Request parsing -------------------------------------------------------------------------

fn req_time(o: &Map<String, Value>, parent: &str, key: &str) -> Result<Timestamp, FieldError> {
    let raw = input::req_str(o, parent, key)?;
    raw.parse()
        .map_err(|e| FieldError::new(input::path(parent, key), format!("not an RFC 3339 time {raw:?}: {e}")))
}

/// Parse the body of `POST /api/v1/prices`: `{"prices": [{"start", "end", "price"}, ...]}`;
/// `import_price` and `export_price` are accepted (numbers or null) and ignored, so that the
/// `prices` of a `GET` can be posted back; any other key is refused.
///
/// # Errors
/// [`FieldError`] naming the field (`prices[3].end`) and the value.
pub fn parse_pushed_prices(o: &Map<String, Value>) -> Result<Vec<PushedPrice>, FieldError> {
    input::only_keys(o, "", &["prices"])?;
    let list = match o.get("prices") {
        Some(Value::Array(a)) => a,
        None | Some(Value::Null) => return Err(FieldError::new("prices", "missing (an array is required)")),
        Some(other) => {
            return Err(FieldError::new("prices", format!("must be an array, got {}", input::show(other))))
        }
    };
    if list.is_empty() || list.len() > MAX_PUSHED_PRICES {
        return Err(FieldError::new(
            "prices",
            format!("give 1..={MAX_PUSHED_PRICES} price points, got {}", list.len()),
        ));
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let parent = format!("prices[{i}]");
        let Value::Object(p) = item else {
            return Err(FieldError::new(parent, format!("must be an object, got {}", input::show(item))));
        };
        input::only_keys(p, &parent, &["start", "end", "price", "import_price", "export_price"])?;
        let start = req_time(p, &parent, "start")?;
        let end = req_time(p, &parent, "end")?;
        if end <= start {
            return Err(FieldError::new(
                input::path(&parent, "end"),
                format!("must be after start ({start}), got {end}"),
            ));
        }
        let price = input::req_number(p, &parent, "price")?;
        for ignored in ["import_price", "export_price"] {
            match p.get(ignored) {
                None | Some(Value::Null) => {}
                Some(Value::Number(_)) => {
                    input::req_number(p, &parent, ignored)?;
                }
                Some(other) => {
                    return Err(FieldError::new(
                        input::path(&parent, ignored),
                        format!("must be a number (it is ignored), got {}", input::show(other)),
                    ))
                }
            }
        }
        out.push(PushedPrice { start, end, price });
    }
    Ok(out)
}

/// The format of `GET /api/v1/report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReportFormat {
    Json,
    Csv,
}

pub(crate) fn parse_report_query(
    q: &BTreeMap<String, String>,
) -> Result<(ReportMonth, ReportFormat), FieldError> {
    input::only_keys_str(q, &["month", "format"])?;
    let month = ReportMonth::parse(
        q.get("month").ok_or_else(|| FieldError::new("month", "missing (YYYY-MM is required)"))?,
    )?;
    let format = match q.get("format").map(String::as_str) {
        None | Some("json") => ReportFormat::Json,
        Some("csv") => ReportFormat::Csv,
        Some(other) => return Err(FieldError::new("format", format!("must be csv or json, got {other:?}"))),
    };
    Ok((month, format))
}

/// The report as CSV: [`REPORT_CSV_HEADER`], then one line per day (`\n` line ends).
#[must_use]
pub fn report_csv(report: &MonthReport) -> String {
    let mut out = String::from(REPORT_CSV_HEADER);
    out.push('\n');
    for d in &report.days {
        out.push_str(&d.csv_line());
        out.push('\n');
    }
    out
}

// ---- OpenAPI ----------------------------------------------------------------------------------

/// An object schema whose every property is required and no other is allowed.
fn closed(props: Value) -> Value {
    let required: Vec<String> = props.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
    json!({ "type": "object", "additionalProperties": false, "required": required, "properties": props })
}

fn time() -> Value {
    json!({ "type": "string", "format": "date-time" })
}

fn time_or_null() -> Value {
    json!({ "type": ["string", "null"], "format": "date-time" })
}

fn number() -> Value {
    json!({ "type": "number" })
}

fn number_or_null() -> Value {
    json!({ "type": ["number", "null"] })
}

fn basis() -> Value {
    json!({ "enum": ["spot", "last_good", "tariff", "self_consumption"] })
}

fn source_kind() -> Value {
    json!({ "enum": ["awattar", "entsoe", "file", "push"] })
}

fn cost_summary() -> Value {
    closed(json!({ "cost": number(), "import_kwh": number(), "export_kwh": number() }))
}

/// The schema of a `200` answer of an economics endpoint (`None`: not an economics path).
pub(crate) fn response_schema(method: &str, path: &str) -> Option<Value> {
    let currency = json!({ "type": "string", "minLength": 3, "maxLength": 3 });
    let soc = json!({ "type": "number", "minimum": 0, "maximum": 100 });
    Some(match (method, path) {
        ("GET", "/api/v1/plan") => closed(json!({
            "status": { "enum": ["ok", "expired", "none"] },
            "created_at": time_or_null(),
            "expires_at": time_or_null(),
            "reason": { "enum": ["start", "interval", "new_prices", "soc_off_plan", "mode_change", "rule_change", "price_fallback", null] },
            "price_basis": basis(),
            "acted_on": { "type": "boolean" },
            "currency": currency,
            "slots": { "type": "array", "items": closed(json!({
                "start": time(), "end": time(), "import_price": number(), "export_price": number(),
                "spot_price": number_or_null(), "pv_w": number(), "load_w": number(),
                "battery_w": number(), "grid_w": number(), "soc_percent": soc,
                "self_consumption": { "type": "boolean" },
                "actual": { "oneOf": [
                    { "type": "null" },
                    closed(json!({ "battery_w": number(), "grid_w": number(), "soc_percent": soc })),
                ] }
            })) }
        })),
        ("GET", "/api/v1/forecast") => closed(json!({
            "slots": { "type": "array", "items": closed(json!({
                "start": time(), "end": time(), "pv_w": number(), "load_w": number(),
                "pv_actual_w": number_or_null(), "load_actual_w": number_or_null()
            })) },
            "errors": closed(json!({
                "pv_nmae": number_or_null(), "load_nmae": number_or_null(),
                "window_hours": number(), "samples": { "type": "integer", "minimum": 0 }
            })),
            "pv_ratio": number_or_null()
        })),
        ("GET", "/api/v1/prices") => closed(json!({
            "source": { "enum": ["awattar", "entsoe", "file", "push", null] },
            "status": { "enum": ["live", "last_good", "exhausted"] },
            "basis": basis(),
            "currency": currency,
            "prices": { "type": "array", "items": closed(json!({
                "start": time(), "end": time(), "price": number(), "import_price": number(), "export_price": number()
            })) },
            "sources": { "type": "array", "items": closed(json!({
                "kind": source_kind(), "last_ok": time_or_null(),
                "last_error": { "type": ["string", "null"] },
                "points": { "type": "integer", "minimum": 0 }, "covered_until": time_or_null()
            })) }
        })),
        ("POST", "/api/v1/prices") => closed(json!({ "accepted": { "type": "integer", "minimum": 0 } })),
        ("GET", "/api/v1/savings") => closed(json!({
            "period": { "enum": ["day", "month", "year"] },
            "start": { "type": "string", "format": "date" },
            "currency": currency,
            "ems": cost_summary(), "no_battery": cost_summary(), "self_consumption": cost_summary(),
            "saving_vs_no_battery": number(), "saving_vs_self_consumption": number()
        })),
        ("GET", "/api/v1/report") => {
            let mut row = serde_json::Map::new();
            for k in REPORT_CSV_HEADER.split(',') {
                let s = if k == "date" { json!({ "type": "string", "format": "date" }) } else { number() };
                row.insert(k.to_owned(), s);
            }
            closed(json!({
                "month": { "type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$" },
                "currency": currency,
                "days": { "type": "array", "items": closed(Value::Object(row)) }
            }))
        }
        ("GET", "/api/v1/rules") => {
            let mut s = rule_set_schema();
            if let Some(Value::Object(p)) = s.get_mut("properties") {
                p.insert(
                    "decision".into(),
                    closed(json!({
                        "winner": { "type": ["string", "null"] },
                        "action": { "type": ["string", "null"] },
                        "fired": { "type": "array", "items": { "type": "string" } }
                    })),
                );
            }
            if let Value::Object(o) = &mut s {
                o.insert("required".into(), json!(["rules", "decision"]));
            }
            s
        }
        ("PUT", "/api/v1/rules") => rule_set_schema(),
        ("GET", "/api/v1/economics") => closed(json!({
            "price_basis": basis(),
            "price_status": { "enum": ["live", "last_good", "exhausted"] },
            "drives": { "type": "string" },
            "fallback": { "type": ["string", "null"] },
            "active_rule": { "type": ["string", "null"] }
        })),
        _ => return None,
    })
}

/// The body of `POST /api/v1/prices`.
pub(crate) fn pushed_prices_schema() -> Value {
    let point = json!({
        "type": "object", "additionalProperties": false, "required": ["start", "end", "price"],
        "properties": {
            "start": time(), "end": { "type": "string", "format": "date-time", "description": "After `start`." },
            "price": { "type": "number", "description": "Spot price, currency per kWh (may be negative)." },
            "import_price": { "type": ["number", "null"], "description": "Accepted and ignored (so that a GET's `prices` can be posted back)." },
            "export_price": { "type": ["number", "null"], "description": "Accepted and ignored." }
        }
    });
    json!({
        "type": "object", "additionalProperties": false, "required": ["prices"],
        "properties": { "prices": { "type": "array", "minItems": 1, "maxItems": MAX_PUSHED_PRICES, "items": point } }
    })
}

/// The operator rule set (the rules engine owns the format and checks what a schema cannot:
/// a window's times, priorities, actions against the site's ratings).
pub(crate) fn rule_set_schema() -> Value {
    let hhmm = json!({ "type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$" });
    let pct = json!({ "type": "number", "minimum": 0, "maximum": 100 });
    let w = json!({ "type": "number", "minimum": 0, "maximum": 1e7 });
    let price = json!({ "type": "number", "minimum": -10, "maximum": 10 });
    let when = json!({
        "type": "object", "additionalProperties": false,
        "properties": {
            "days": { "type": "array", "maxItems": 10, "items": { "enum": ["working", "weekend", "holiday", "mon", "tue", "wed", "thu", "fri", "sat", "sun"] },
                "description": "`working` (working days of `country`), `weekend`, `holiday`, or weekdays; any of them matches." },
            "from": hhmm, "to": hhmm,
            "price_above": price, "price_below": price,
            "soc_above": pct, "soc_below": pct,
            "pv_surplus_above_w": w, "grid_import_above_w": w
        }
    });
    let action = crate::schema::mode_variant;
    let until = json!({ "oneOf": [
        closed(json!({ "time": hhmm })),
        closed(json!({ "duration_minutes": { "type": "integer", "minimum": 1, "maximum": 10080 } })),
        closed(json!({ "sunset": { "const": true } })),
        closed(json!({ "soc": pct })),
    ] });
    let rule = json!({
        "type": "object", "additionalProperties": false, "required": ["name", "priority", "action"],
        "properties": {
            "name": { "type": "string", "minLength": 1, "maxLength": 64, "description": "Unique in the set." },
            "priority": { "type": "integer", "minimum": -2_147_483_648_i64, "maximum": 2_147_483_647, "description": "Of the rules that fire, the highest wins." },
            "enabled": { "type": "boolean" },
            "when": when,
            "action": { "oneOf": [
                action("NO_DISCHARGE", &[], json!({})),
                action("LIMIT_CHARGE", &["maxChargePower"], json!({ "maxChargePower": w })),
                action("LIMIT_DISCHARGE", &["maxDischargePower"], json!({ "maxDischargePower": w })),
                action("FORCE_CHARGE", &["power"], json!({ "power": w })),
                action("SOC_RESERVE", &["soc"], json!({ "soc": pct })),
                action("CHARGE_TO", &["soc", "by"], json!({ "soc": pct, "by": hhmm })),
            ] },
            "until": until
        }
    });
    json!({
        "type": "object", "additionalProperties": false, "required": [],
        "description": "The operator rule set. `when` and all its keys are optional (a rule without them always fires); the highest `priority` of the rules that fire wins. The rules engine checks what the schema cannot (400 naming the path, e.g. `rules[0].when.from`, and the value); a refused set leaves the stored one unchanged.",
        "properties": {
            "country": { "type": "string", "minLength": 2, "maxLength": 2, "description": "ISO 3166 country for public holidays (`holiday`, `working`)." },
            "time_zone": { "type": "string", "minLength": 1, "maxLength": 64, "description": "IANA zone of `from`/`to`/`until.time` (the gateway passes the site's)." },
            "latitude": { "type": "number", "minimum": -90, "maximum": 90, "description": "With `longitude`: the site, for `until.sunset`." },
            "longitude": { "type": "number", "minimum": -180, "maximum": 180 },
            "extra_holidays": { "type": "array", "items": { "type": "string", "format": "date" } },
            "rules": { "type": "array", "maxItems": 64, "items": rule }
        }
    })
}

#[cfg(test)]
mod tests {
    // Test code: a failed unwrap or panic is a failed test with its message.
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(o) => o,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn pushed_prices_name_the_field_and_value() {
        let ok = parse_pushed_prices(&obj(json!({"prices": [
            {"start": "2026-05-01T00:00:00Z", "end": "2026-05-01T00:15:00Z", "price": -0.01},
            {"start": "2026-05-01T00:15:00Z", "end": "2026-05-01T00:30:00Z", "price": 0.2,
             "import_price": 0.4, "export_price": null}
        ]})))
        .unwrap();
        assert_eq!(ok.len(), 2);
        assert!((ok[0].price + 0.01).abs() < 1e-12);
        let e = parse_pushed_prices(&obj(json!({"prices": [
            {"start": "2026-05-01T00:00:00Z", "end": "2026-05-01T00:15:00Z", "price": 0.1},
            {"start": "2026-05-01T00:15:00Z", "end": "2026-05-01T00:15:00Z", "price": 0.1}
        ]})))
        .unwrap_err();
        assert_eq!(e.field, "prices[1].end");
        assert!(e.message.contains("2026-05-01T00:15:00Z"), "{e}");
        let e = parse_pushed_prices(&obj(json!({"prices": [
            {"start": "yesterday", "end": "2026-05-01T00:15:00Z", "price": 0.1}
        ]})))
        .unwrap_err();
        assert_eq!(e.field, "prices[0].start");
        assert!(e.message.contains("yesterday"), "{e}");
        let e = parse_pushed_prices(&obj(json!({"prices": [
            {"start": "2026-05-01T00:00:00Z", "end": "2026-05-01T00:15:00Z", "price": "0.1"}
        ]})))
        .unwrap_err();
        assert_eq!(e.field, "prices[0].price");
        let e = parse_pushed_prices(&obj(json!({"prices": [
            {"start": "2026-05-01T00:00:00Z", "end": "2026-05-01T00:15:00Z", "price": 0.1, "currency": "EUR"}
        ]})))
        .unwrap_err();
        assert_eq!(e.field, "prices[0].currency");
        assert_eq!(parse_pushed_prices(&obj(json!({"prices": []}))).unwrap_err().field, "prices");
        assert_eq!(parse_pushed_prices(&obj(json!({"points": []}))).unwrap_err().field, "points");
    }

    #[test]
    fn months_and_periods_parse_strictly() {
        assert_eq!(ReportMonth::parse("2026-05").unwrap().to_string(), "2026-05");
        assert_eq!(ReportMonth::parse("2026-12").unwrap().first_day, Date::new(2026, 12, 1).unwrap());
        for bad in ["2026-13", "2026-00", "2026-5", "26-05", "2026/05", "", "0999-01", "+026-05"] {
            let e = ReportMonth::parse(bad).unwrap_err();
            assert_eq!(e.field, "month", "{bad}");
            assert!(e.message.contains(&format!("{bad:?}")), "{e}");
        }
        assert_eq!(SavingsPeriod::parse("month").unwrap(), SavingsPeriod::Month);
        let e = SavingsPeriod::parse("week").unwrap_err();
        assert_eq!((e.field.as_str(), e.message.contains("\"week\"")), ("period", true));
    }

    #[test]
    fn csv_has_the_header_and_one_line_per_day() {
        let day = |d: i8| DayRow {
            date: Date::new(2026, 5, d).unwrap(),
            import_kwh: 10.0,
            export_kwh: 2.5,
            pv_kwh: 20.0,
            load_kwh: 25.0,
            battery_charge_kwh: 5.0,
            battery_discharge_kwh: 4.5,
            cost: 2.0,
            cost_no_battery: 3.0,
            cost_self_consumption: 2.5,
            saving_vs_no_battery: 1.0,
            saving_vs_self_consumption: 0.5,
        };
        let csv = report_csv(&MonthReport { currency: "EUR".into(), days: vec![day(1), day(2)] });
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], REPORT_CSV_HEADER);
        assert_eq!(lines[1].split(',').count(), REPORT_CSV_HEADER.split(',').count());
        assert!(lines[2].starts_with("2026-05-02,10.0000,2.5000,"), "{}", lines[2]);
    }

    #[test]
    fn plan_serializes_with_the_documented_keys() {
        let t: Timestamp = "2026-05-01T12:00:00Z".parse().unwrap();
        let slot = PlanSlot {
            start: t,
            end: t,
            import_price: 0.3,
            export_price: 0.08,
            spot_price: None,
            pv_w: ems_core::watts!(1500.0),
            load_w: ems_core::watts!(500.0),
            battery_w: ems_core::watts!(-1000.0),
            grid_w: Watts::ZERO,
            soc_percent: ems_core::percent!(55.0),
            self_consumption: false,
            actual: Some(SlotActual {
                battery_w: ems_core::watts!(-900.0),
                grid_w: ems_core::watts!(10.0),
                soc_percent: ems_core::percent!(54.0),
            }),
        };
        let v = json!(PlanView {
            status: PlanStatus::Ok,
            created_at: Some(t),
            expires_at: None,
            reason: Some(PlanReason::SocOffPlan),
            price_basis: PriceBasis::LastGood,
            acted_on: true,
            currency: "EUR".into(),
            slots: vec![slot],
        });
        assert_eq!(v["reason"], "soc_off_plan");
        assert_eq!(v["price_basis"], "last_good");
        assert_eq!(v["created_at"], "2026-05-01T12:00:00Z");
        assert_eq!(v["slots"][0]["battery_w"], -1000.0);
        assert_eq!(v["slots"][0]["spot_price"], Value::Null);
        assert_eq!(v["slots"][0]["actual"]["soc_percent"], 54.0);
    }
}
