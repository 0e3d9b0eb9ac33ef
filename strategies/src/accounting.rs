//! Cost accounting: a [`Ledger`] of grid energy and money per local day and month, and a
//! [`Savings`] comparison of the EMS against two baselines.
//!
//! The ledger is fed grid power samples (`+` import, `−` export, design.md §4) with their
//! duration. Each sample is split at quarter-hour boundaries of UTC (which are quarter-hour
//! boundaries of local time in every zone whose offset is a multiple of 15 minutes, i.e. all
//! current zones). Within a quarter-hour:
//! - prices are those the tariff quotes at the start of the quarter-hour (tariff slots lie on
//!   the quarter-hour grid, so this is exact);
//! - imported and exported energy are accumulated separately (a bidirectional meter has two
//!   registers; export never offsets import);
//! - the quarter-hour's **average import** is its imported energy divided by 15 minutes; time
//!   not covered by samples counts as zero import. The day's and month's peak is the largest of
//!   these; the demand peak uses only the quarter-hours the tariff counts
//!   ([`Tariff::counts_for_demand`]).
//!
//! The month's demand charge is the tariff rate × the month's demand peak; the fixed monthly fee
//! is charged in full for every month with at least one sample (partial months are not
//! pro-rated). Days and months are local to the ledger's time zone.
#![warn(missing_docs)]

use crate::tariff::Tariff;
use crate::units::{serialize_kw, watts_from_f64, KilowattHours, Money};
use ems_core::Watts;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use std::collections::BTreeMap;
use std::fmt;

const QUARTER_NS: i128 = 900 * 1_000_000_000;
/// The longest single sample accepted: 31 days.
const MAX_DT_S: f64 = 31.0 * 86_400.0;
/// Samples may overlap the previous one by this much (rounding of `dt_s` to nanoseconds).
const OVERLAP_TOLERANCE_NS: i128 = 1_000_000;

/// A sample the ledger refuses.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LedgerError {
    /// The duration is negative, NaN, infinite or longer than 31 days.
    #[error("sample duration {dt_s} s is not within 0..=31 days")]
    BadDuration {
        /// The rejected duration in seconds.
        dt_s: f64,
    },
    /// The sample starts before the end of the previous one.
    #[error("sample at {at} starts before the end of the previous sample ({previous_end})")]
    OutOfOrder {
        /// Start of the refused sample.
        at: Timestamp,
        /// End of the previous sample.
        previous_end: Timestamp,
    },
    /// The sample reaches beyond the representable time range.
    #[error("sample at {at} lasting {dt_s} s ends beyond the representable time range")]
    TimeRange {
        /// Start of the refused sample.
        at: Timestamp,
        /// Its duration.
        dt_s: f64,
    },
}

/// A calendar month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct YearMonth {
    /// Year.
    pub year: i16,
    /// Month 1..=12.
    pub month: i8,
}

impl YearMonth {
    /// The month of `date`.
    #[must_use]
    pub fn of(date: Date) -> Self {
        Self { year: date.year(), month: date.month() }
    }
}

impl fmt::Display for YearMonth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl serde::Serialize for YearMonth {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Running sums of one day or month.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Sums {
    import_wh: f64,
    export_wh: f64,
    cost: f64,
    revenue: f64,
    peak_w: f64,
    demand_peak_w: f64,
}

impl Sums {
    fn add(&mut self, q: &Quarter) {
        self.import_wh += q.import_wh;
        self.export_wh += q.export_wh;
        self.cost += q.cost;
        self.revenue += q.revenue;
        let avg_w = q.import_wh * 4.0;
        self.peak_w = self.peak_w.max(avg_w);
        if q.counts_for_demand {
            self.demand_peak_w = self.demand_peak_w.max(avg_w);
        }
    }
}

/// The quarter-hour being accumulated, with everything the tariff says about it.
#[derive(Debug, Clone, Copy)]
struct Quarter {
    /// Index of the quarter-hour since the epoch (UTC).
    index: i128,
    date: Date,
    import_price: f64,
    export_price: f64,
    counts_for_demand: bool,
    import_wh: f64,
    export_wh: f64,
    cost: f64,
    revenue: f64,
}

/// Energy and money of one local day.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct DaySummary {
    /// The local date.
    pub date: Date,
    /// Energy imported.
    pub import_kwh: KilowattHours,
    /// Energy exported.
    pub export_kwh: KilowattHours,
    /// Cost of the imported energy.
    pub energy_cost: Money,
    /// Payment for the exported energy.
    pub export_revenue: Money,
    /// `energy_cost − export_revenue`.
    pub net_energy_cost: Money,
    /// Highest 15-min average import of the day (JSON: `peak_import_kw`, in kW).
    #[serde(rename = "peak_import_kw", serialize_with = "serialize_kw")]
    pub peak_import: Watts,
}

/// Energy and money of one local month, including demand charge and fixed fee.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct MonthSummary {
    /// The month.
    pub month: YearMonth,
    /// Energy imported.
    pub import_kwh: KilowattHours,
    /// Energy exported.
    pub export_kwh: KilowattHours,
    /// Cost of the imported energy.
    pub energy_cost: Money,
    /// Payment for the exported energy.
    pub export_revenue: Money,
    /// Highest 15-min average import of the month (JSON: `peak_import_kw`, in kW).
    #[serde(rename = "peak_import_kw", serialize_with = "serialize_kw")]
    pub peak_import: Watts,
    /// Highest 15-min average import among the quarter-hours the demand charge counts
    /// (0 without a demand charge; JSON: `demand_peak_kw`, in kW).
    #[serde(rename = "demand_peak_kw", serialize_with = "serialize_kw")]
    pub demand_peak: Watts,
    /// The month's demand charge.
    pub demand_charge: Money,
    /// The fixed monthly fee.
    pub fixed_fee: Money,
    /// `energy_cost − export_revenue + demand_charge + fixed_fee`.
    pub total_cost: Money,
}

/// Sums over every recorded month.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Totals {
    /// First local date with a sample.
    pub first_day: Option<Date>,
    /// Last local date with a sample.
    pub last_day: Option<Date>,
    /// Number of months with samples.
    pub months: usize,
    /// Energy imported.
    pub import_kwh: KilowattHours,
    /// Energy exported.
    pub export_kwh: KilowattHours,
    /// Cost of the imported energy.
    pub energy_cost: Money,
    /// Payment for the exported energy.
    pub export_revenue: Money,
    /// Sum of the monthly demand charges.
    pub demand_charges: Money,
    /// Sum of the monthly fixed fees.
    pub fixed_fees: Money,
    /// Highest 15-min average import overall (JSON: `peak_import_kw`, in kW).
    #[serde(rename = "peak_import_kw", serialize_with = "serialize_kw")]
    pub peak_import: Watts,
    /// `energy_cost − export_revenue + demand_charges + fixed_fees`.
    pub total_cost: Money,
}

/// Accumulates grid energy and its cost per local day and month under one tariff.
#[derive(Debug, Clone)]
pub struct Ledger {
    tariff: Tariff,
    tz: TimeZone,
    days: BTreeMap<Date, Sums>,
    months: BTreeMap<YearMonth, Sums>,
    current: Option<Quarter>,
    last_end_ns: Option<i128>,
}

impl Ledger {
    /// An empty ledger that prices energy with `tariff` and groups days and months in `tz`
    /// (normally the tariff's own time zone, `tariff.time_zone().clone()`).
    #[must_use]
    pub fn new(tariff: Tariff, tz: TimeZone) -> Self {
        Self { tariff, tz, days: BTreeMap::new(), months: BTreeMap::new(), current: None, last_end_ns: None }
    }

    /// The tariff.
    #[must_use]
    pub fn tariff(&self) -> &Tariff {
        &self.tariff
    }

    /// The time zone days and months are counted in.
    #[must_use]
    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    /// Record grid power `grid` (`+` import, `−` export) held for `dt_s` seconds from `at`.
    /// Samples must come in time order (gaps are allowed and count as no energy).
    ///
    /// # Errors
    /// [`LedgerError`] for a duration outside `0..=31` days, a sample that starts before the end
    /// of the previous one, or one that ends beyond the representable time range.
    pub fn record(&mut self, at: Timestamp, grid: Watts, dt_s: f64) -> Result<(), LedgerError> {
        if !(dt_s.is_finite() && (0.0..=MAX_DT_S).contains(&dt_s)) {
            return Err(LedgerError::BadDuration { dt_s });
        }
        let start = at.as_nanosecond();
        if let Some(prev) = self.last_end_ns {
            if start + OVERLAP_TOLERANCE_NS < prev {
                let previous_end = Timestamp::from_nanosecond(prev).unwrap_or(Timestamp::MAX);
                return Err(LedgerError::OutOfOrder { at, previous_end });
            }
        }
        #[allow(clippy::cast_possible_truncation)] // dt ≤ 31 days: far inside i128, exact to the ns
        let dt_ns = (dt_s * 1e9).round() as i128;
        let end = start + dt_ns;
        if Timestamp::from_nanosecond(end).is_err() {
            return Err(LedgerError::TimeRange { at, dt_s });
        }
        let power = f64::from(grid.get());
        let mut t = start;
        while t < end {
            let index = t.div_euclid(QUARTER_NS);
            let piece_end = end.min((index + 1) * QUARTER_NS);
            #[allow(clippy::cast_precision_loss)] // a piece is ≤ 15 min = 9e11 ns < 2^53: exact
            let hours = (piece_end - t) as f64 / 3.6e12;
            let q = self.quarter(index);
            let wh = power * hours;
            if wh > 0.0 {
                q.import_wh += wh;
                q.cost += wh / 1000.0 * q.import_price;
            } else {
                q.export_wh -= wh;
                q.revenue -= wh / 1000.0 * q.export_price;
            }
            t = piece_end;
        }
        self.last_end_ns = Some(self.last_end_ns.map_or(end, |p| p.max(end)));
        Ok(())
    }

    /// The accumulator of quarter-hour `index`, closing the previous one if it differs.
    fn quarter(&mut self, index: i128) -> &mut Quarter {
        if self.current.is_some_and(|q| q.index != index) {
            if let Some(done) = self.current.take() {
                Self::close(&mut self.days, &mut self.months, &done);
            }
        }
        let tariff = &self.tariff;
        let tz = &self.tz;
        self.current.get_or_insert_with(|| {
            let at = Timestamp::from_nanosecond(index * QUARTER_NS).unwrap_or(Timestamp::UNIX_EPOCH);
            Quarter {
                index,
                date: tz.to_datetime(at).date(),
                import_price: tariff.import_price(at).per_kwh(),
                export_price: tariff.export_price(at).per_kwh(),
                counts_for_demand: tariff.counts_for_demand(at),
                import_wh: 0.0,
                export_wh: 0.0,
                cost: 0.0,
                revenue: 0.0,
            }
        })
    }

    fn close(days: &mut BTreeMap<Date, Sums>, months: &mut BTreeMap<YearMonth, Sums>, q: &Quarter) {
        days.entry(q.date).or_default().add(q);
        months.entry(YearMonth::of(q.date)).or_default().add(q);
    }

    /// Day and month sums including the quarter-hour still open.
    fn snapshot(&self) -> (BTreeMap<Date, Sums>, BTreeMap<YearMonth, Sums>) {
        let mut days = self.days.clone();
        let mut months = self.months.clone();
        if let Some(q) = &self.current {
            Self::close(&mut days, &mut months, q);
        }
        (days, months)
    }

    /// Every local day with samples, in order.
    #[must_use]
    pub fn days(&self) -> Vec<DaySummary> {
        let (days, _) = self.snapshot();
        days.into_iter()
            .map(|(date, s)| DaySummary {
                date,
                import_kwh: KilowattHours::from_wh(s.import_wh),
                export_kwh: KilowattHours::from_wh(s.export_wh),
                energy_cost: Money::new(s.cost),
                export_revenue: Money::new(s.revenue),
                net_energy_cost: Money::new(s.cost - s.revenue),
                peak_import: watts_from_f64(s.peak_w),
            })
            .collect()
    }

    /// Every local month with samples, in order.
    #[must_use]
    pub fn months(&self) -> Vec<MonthSummary> {
        let (_, months) = self.snapshot();
        let fee = self.tariff.monthly_fee();
        months
            .into_iter()
            .map(|(month, s)| {
                let demand_peak = if self.tariff.demand_charge().is_some() {
                    watts_from_f64(s.demand_peak_w)
                } else {
                    Watts::ZERO
                };
                let demand_charge =
                    self.tariff.demand_charge().map_or(Money::ZERO, |d| d.charge(demand_peak));
                MonthSummary {
                    month,
                    import_kwh: KilowattHours::from_wh(s.import_wh),
                    export_kwh: KilowattHours::from_wh(s.export_wh),
                    energy_cost: Money::new(s.cost),
                    export_revenue: Money::new(s.revenue),
                    peak_import: watts_from_f64(s.peak_w),
                    demand_peak,
                    demand_charge,
                    fixed_fee: fee,
                    total_cost: Money::new(s.cost - s.revenue) + demand_charge + fee,
                }
            })
            .collect()
    }

    /// Sums over all months.
    #[must_use]
    pub fn total(&self) -> Totals {
        let days = self.days();
        let months = self.months();
        let mut t = Totals {
            first_day: days.first().map(|d| d.date),
            last_day: days.last().map(|d| d.date),
            months: months.len(),
            import_kwh: KilowattHours::ZERO,
            export_kwh: KilowattHours::ZERO,
            energy_cost: Money::ZERO,
            export_revenue: Money::ZERO,
            demand_charges: Money::ZERO,
            fixed_fees: Money::ZERO,
            peak_import: Watts::ZERO,
            total_cost: Money::ZERO,
        };
        for m in &months {
            t.import_kwh += m.import_kwh;
            t.export_kwh += m.export_kwh;
            t.energy_cost += m.energy_cost;
            t.export_revenue += m.export_revenue;
            t.demand_charges += m.demand_charge;
            t.fixed_fees += m.fixed_fee;
            t.peak_import = t.peak_import.max(m.peak_import);
            t.total_cost += m.total_cost;
        }
        t
    }
}

impl fmt::Display for DaySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}  import {:8.2} kWh  export {:8.2} kWh  cost {:9.2}  revenue {:9.2}  net {:9.2}  peak {:6.2} kW",
            self.date,
            self.import_kwh.get(),
            self.export_kwh.get(),
            self.energy_cost.get(),
            self.export_revenue.get(),
            self.net_energy_cost.get(),
            f64::from(self.peak_import.get()) / 1000.0
        )
    }
}

impl fmt::Display for MonthSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}  import {:9.1} kWh  export {:9.1} kWh  energy {:9.2}  revenue {:9.2}  demand {:8.2} ({:.2} kW)  fee {:7.2}  total {:9.2}",
            self.month,
            self.import_kwh.get(),
            self.export_kwh.get(),
            self.energy_cost.get(),
            self.export_revenue.get(),
            self.demand_charge.get(),
            f64::from(self.demand_peak.get()) / 1000.0,
            self.fixed_fee.get(),
            self.total_cost.get()
        )
    }
}

impl fmt::Display for Totals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let day = |d: Option<Date>| d.map_or_else(|| "-".to_owned(), |d| d.to_string());
        write!(
            f,
            "{} .. {} ({} months)  import {:.1} kWh  export {:.1} kWh  energy {:.2}  revenue {:.2}  demand {:.2}  fees {:.2}  total {:.2}",
            day(self.first_day),
            day(self.last_day),
            self.months,
            self.import_kwh.get(),
            self.export_kwh.get(),
            self.energy_cost.get(),
            self.export_revenue.get(),
            self.demand_charges.get(),
            self.fixed_fees.get(),
            self.total_cost.get()
        )
    }
}

/// A saving against one baseline.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Saving {
    /// `baseline − ems` (positive = the EMS is cheaper).
    pub amount: Money,
    /// `amount / baseline × 100`; `None` when the baseline cost is not positive (a percentage
    /// of a net revenue would mislead).
    pub percent: Option<f64>,
}

impl Saving {
    fn new(ems: Money, baseline: Money) -> Self {
        let amount = baseline - ems;
        let percent = (baseline.get() > 0.0).then(|| amount.get() / baseline.get() * 100.0);
        Self { amount, percent }
    }
}

impl fmt::Display for Saving {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.percent {
            Some(p) => write!(f, "{:9.2} ({:6.1} %)", self.amount.get(), p),
            None => write!(f, "{:9.2} (   n/a  )", self.amount.get()),
        }
    }
}

/// Total costs (energy − export revenue + demand charge + fees) of one period in the three
/// ledgers, and the savings of the EMS against each baseline.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PeriodSavings {
    /// `YYYY-MM-DD`, `YYYY-MM`, `YYYY` or `total`.
    pub period: String,
    /// Cost with the EMS.
    pub ems: Money,
    /// Cost of the baseline without a battery.
    pub no_battery: Money,
    /// Cost of the baseline whose battery only maximises self-consumption.
    pub self_consumption: Money,
    /// Saving against no battery.
    pub vs_no_battery: Saving,
    /// Saving against self-consumption only.
    pub vs_self_consumption: Saving,
}

impl PeriodSavings {
    fn new(period: String, ems: Money, no_battery: Money, self_consumption: Money) -> Self {
        Self {
            period,
            ems,
            no_battery,
            self_consumption,
            vs_no_battery: Saving::new(ems, no_battery),
            vs_self_consumption: Saving::new(ems, self_consumption),
        }
    }
}

/// The EMS against a no-battery baseline and a self-consumption-only baseline, per month, per
/// year and in total. A month missing from a ledger counts as zero cost there.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Savings {
    /// Per local day: net energy cost only (`energy − export revenue`); demand charges and
    /// fees are monthly and appear in [`Self::months`].
    pub days: Vec<PeriodSavings>,
    /// Per local month.
    pub months: Vec<PeriodSavings>,
    /// Per calendar year.
    pub years: Vec<PeriodSavings>,
    /// All months.
    pub total: PeriodSavings,
}

impl Savings {
    /// Compare three ledgers (normally under the same tariff and time zone).
    #[must_use]
    pub fn compare(ems: &Ledger, no_battery: &Ledger, self_consumption: &Ledger) -> Self {
        let mut daily: BTreeMap<Date, [Money; 3]> = BTreeMap::new();
        for (i, ledger) in [ems, no_battery, self_consumption].into_iter().enumerate() {
            for d in ledger.days() {
                if let Some(slot) = daily.entry(d.date).or_insert([Money::ZERO; 3]).get_mut(i) {
                    *slot = d.net_energy_cost;
                }
            }
        }
        let days =
            daily.into_iter().map(|(d, [e, n, s])| PeriodSavings::new(d.to_string(), e, n, s)).collect();
        let mut costs: BTreeMap<YearMonth, [Money; 3]> = BTreeMap::new();
        for (i, ledger) in [ems, no_battery, self_consumption].into_iter().enumerate() {
            for m in ledger.months() {
                if let Some(slot) = costs.entry(m.month).or_insert([Money::ZERO; 3]).get_mut(i) {
                    *slot = m.total_cost;
                }
            }
        }
        let mut years: BTreeMap<i16, [Money; 3]> = BTreeMap::new();
        let mut total = [Money::ZERO; 3];
        let mut months = Vec::with_capacity(costs.len());
        for (month, [e, n, s]) in costs {
            months.push(PeriodSavings::new(month.to_string(), e, n, s));
            let y = years.entry(month.year).or_insert([Money::ZERO; 3]);
            for (acc, v) in y.iter_mut().zip([e, n, s]) {
                *acc += v;
            }
            for (acc, v) in total.iter_mut().zip([e, n, s]) {
                *acc += v;
            }
        }
        let years =
            years.into_iter().map(|(y, [e, n, s])| PeriodSavings::new(y.to_string(), e, n, s)).collect();
        let [e, n, s] = total;
        Self { days, months, years, total: PeriodSavings::new("total".to_owned(), e, n, s) }
    }
}

impl fmt::Display for Savings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<8} {:>10} {:>10} {:>10}   {:<21}   {:<21}",
            "period", "EMS", "no batt.", "self-cons.", "saving vs no battery", "saving vs self-cons."
        )?;
        for p in self.months.iter().chain(&self.years).chain(core::iter::once(&self.total)) {
            writeln!(
                f,
                "{:<8} {:>10.2} {:>10.2} {:>10.2}   {}   {}",
                p.period,
                p.ems.get(),
                p.no_battery.get(),
                p.self_consumption.get(),
                p.vs_no_battery,
                p.vs_self_consumption
            )?;
        }
        Ok(())
    }
}

/// The recorded state of a [`Ledger`] (its days and the quarter-hour still open), to persist it
/// across restarts: see [`Ledger::state`] and [`Ledger::restore`]. Months are sums of their
/// days, so they are not stored. Opaque; serializable.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LedgerState {
    /// Per local day: import Wh, export Wh, cost, revenue, peak W, demand peak W.
    days: Vec<(Date, [f64; 6])>,
    /// The open quarter-hour: index since the epoch, local date, import price, export price,
    /// counts for demand, import Wh, export Wh, cost, revenue.
    current: Option<(i64, Date, f64, f64, bool, [f64; 4])>,
    last_end: Option<Timestamp>,
}

impl Ledger {
    /// The recorded state.
    #[must_use]
    pub fn state(&self) -> LedgerState {
        let sums = |s: &Sums| [s.import_wh, s.export_wh, s.cost, s.revenue, s.peak_w, s.demand_peak_w];
        LedgerState {
            days: self.days.iter().map(|(d, s)| (*d, sums(s))).collect(),
            current: self.current.and_then(|q| {
                let index = i64::try_from(q.index).ok()?;
                Some((
                    index,
                    q.date,
                    q.import_price,
                    q.export_price,
                    q.counts_for_demand,
                    [q.import_wh, q.export_wh, q.cost, q.revenue],
                ))
            }),
            last_end: self.last_end_ns.and_then(|ns| Timestamp::from_nanosecond(ns).ok()),
        }
    }

    /// A ledger under `tariff` in `tz` that continues from `state` (from [`Self::state`]).
    /// Samples before the restored end are refused as out of order, so nothing is counted
    /// twice. Days with a non-finite sum are dropped.
    #[must_use]
    pub fn restore(tariff: Tariff, tz: TimeZone, state: LedgerState) -> Self {
        let mut ledger = Self::new(tariff, tz);
        for (date, v) in state.days {
            if v.iter().all(|x| x.is_finite()) {
                let [import_wh, export_wh, cost, revenue, peak_w, demand_peak_w] = v;
                let s = Sums { import_wh, export_wh, cost, revenue, peak_w, demand_peak_w };
                ledger.days.insert(date, s);
                let m = ledger.months.entry(YearMonth::of(date)).or_default();
                m.import_wh += s.import_wh;
                m.export_wh += s.export_wh;
                m.cost += s.cost;
                m.revenue += s.revenue;
                m.peak_w = m.peak_w.max(s.peak_w);
                m.demand_peak_w = m.demand_peak_w.max(s.demand_peak_w);
            }
        }
        ledger.current = state.current.filter(|c| c.5.iter().all(|x| x.is_finite())).map(
            |(
                index,
                date,
                import_price,
                export_price,
                counts_for_demand,
                [import_wh, export_wh, cost, revenue],
            )| {
                Quarter {
                    index: i128::from(index),
                    date,
                    import_price,
                    export_price,
                    counts_for_demand,
                    import_wh,
                    export_wh,
                    cost,
                    revenue,
                }
            },
        );
        ledger.last_end_ns = state.last_end.map(Timestamp::as_nanosecond);
        ledger
    }

    /// Price later quarter-hours with `tariff` (e.g. the same tariff with live spot prices);
    /// quarter-hours already opened keep the prices they were opened with.
    pub fn set_tariff(&mut self, tariff: Tariff) {
        self.tariff = tariff;
    }
}
