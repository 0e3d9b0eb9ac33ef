//! [`LiveEconomics`]: the engine the gateway's planner thread owns.

use super::forecasts::{mean_w, Forecasts};
use super::money::Books;
use super::state::{LiveState, STATE_VERSION};
use super::views::{
    Actual, DayRow, ForecastSlot, ForecastView, Period, PlanView, PlannedSlot, PriceSlot, SavingsView,
    SlotView,
};
use super::{LiveConfig, LiveError, LiveEvent, Measured, PriceBasis, ReplanReason, SpotStatus};
use crate::accounting::YearMonth;
use crate::forecast::{LoadForecaster, LoadProfile, PvCorrection, PvForecaster};
use crate::optimizer::{plan_with_demand_steps, DemandObjective, DemandPrice, PlanStatus, Problem, Step};
use crate::tariff::{ImportPricing, PriceSeries, Tariff};
use crate::units::{watts_from_f64, Factor, Money, Price, Ratio, WattsPerSquareMetre};
use ems_core::Watts;
use jiff::{SignedDuration, Timestamp};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Smoothing factor of the load profiles: a slot's value moves 20 % toward each observation.
const LOAD_ALPHA: f64 = 0.2;
/// A slot teaches the forecasters only if at least half of it was observed.
const MIN_COVERAGE: f64 = 0.5;
/// Shortest useful horizon of known spot prices.
const MIN_SPOT_HORIZON: SignedDuration = SignedDuration::from_hours(1);
/// Slot actuals and past planned slots are kept this long (today's local day at least).
const KEEP: SignedDuration = SignedDuration::from_hours(48);

/// A plan made by [`LiveEconomics::replan`].
#[derive(Debug, Clone, PartialEq)]
pub struct LivePlan {
    /// When it was made.
    pub created_at: Timestamp,
    /// Why.
    pub reason: ReplanReason,
    /// What it is priced with; under [`PriceBasis::SelfConsumption`] it has no slots.
    pub basis: PriceBasis,
    /// The measured SOC it started from.
    pub soc_start: Ratio,
    /// The slots, the first one containing `created_at` (it starts on the slot grid; the plan
    /// covers it from `created_at` on).
    pub slots: Vec<PlannedSlot>,
    /// Energy cost over the horizon.
    pub total_cost: Money,
    /// Whether the planner had to relax a constraint.
    pub status: PlanStatus,
    /// Whether the plan is acted on: it beats self-consumption on its own forecast by
    /// [`LiveConfig::plan_margin`]. When not, [`LiveEconomics::target`] is `None` and the
    /// configured mode runs.
    pub acted_on: bool,
}

impl LivePlan {
    fn slot_at(&self, now: Timestamp) -> Option<(usize, &PlannedSlot)> {
        self.slots.iter().enumerate().find(|(_, s)| s.start <= now && now < s.end)
    }
}

/// A slot being accumulated from observations.
#[derive(Debug, Clone, Copy, PartialEq)]
struct SlotAcc {
    start: Timestamp,
    hours: f64,
    grid_wh: f64,
    pv_wh: f64,
    battery_wh: f64,
    soc: Option<Ratio>,
}

/// The live economics engine (see the module docs).
#[derive(Debug, Clone)]
pub struct LiveEconomics {
    cfg: LiveConfig,
    /// The tariff with the live spot prices, if any.
    tariff: Tariff,
    spot: Option<(Arc<PriceSeries>, SpotStatus)>,
    forecasts: Forecasts,
    books: Books,
    acc: Option<SlotAcc>,
    actuals: BTreeMap<Timestamp, Actual>,
    history: BTreeMap<Timestamp, PlannedSlot>,
    plan: Option<LivePlan>,
    basis: Option<PriceBasis>,
    pending: Option<ReplanReason>,
    expiry_reported: bool,
    /// When planning last failed (retried after one re-plan interval, not every call).
    failed_at: Option<Timestamp>,
    events: Vec<LiveEvent>,
    last_end: Option<Timestamp>,
}

fn cfg_err(field: &'static str, value: impl ToString, expected: &'static str) -> LiveError {
    LiveError::Config { field, value: value.to_string(), expected }
}

fn state_err(field: &'static str, value: impl ToString, expected: &'static str) -> LiveError {
    LiveError::State { field, value: value.to_string(), expected }
}

fn validate(cfg: &LiveConfig) -> Result<usize, LiveError> {
    cfg.problem.validate().map_err(|e| cfg_err("problem", e, "a valid battery model"))?;
    let slot_s = cfg.slot.as_secs();
    if cfg.slot.subsec_nanos() != 0 || ![900, 1800, 3600].contains(&slot_s) {
        return Err(cfg_err("slot", format!("{slot_s} s"), "15, 30 or 60 minutes"));
    }
    let every = cfg.replan_every;
    if every < SignedDuration::from_mins(1) || every > SignedDuration::from_hours(24) {
        return Err(cfg_err("replan_every", format!("{} s", every.as_secs()), "1 min..=24 h"));
    }
    if cfg.horizon < SignedDuration::from_hours(1) || cfg.horizon > SignedDuration::from_hours(7 * 24) {
        return Err(cfg_err("horizon", format!("{} s", cfg.horizon.as_secs()), "1 h..=7 days"));
    }
    if cfg.soc_off_plan <= Ratio::ZERO {
        return Err(cfg_err("soc_off_plan", cfg.soc_off_plan, "a fraction > 0"));
    }
    if !cfg.plan_margin.get().is_finite() {
        return Err(cfg_err("plan_margin", cfg.plan_margin.get(), "a finite amount"));
    }
    if cfg.pv_factor.get() > 2.0 {
        return Err(cfg_err("pv_factor", cfg.pv_factor, "0..=2"));
    }
    if cfg.load_factor.get() > 3.0 {
        return Err(cfg_err("load_factor", cfg.load_factor, "0..=3"));
    }
    if cfg.load_default < Watts::ZERO {
        return Err(cfg_err("load_default", cfg.load_default.get(), ">= 0 W"));
    }
    usize::try_from(86_400 / slot_s).map_err(|_| cfg_err("slot", slot_s, "15, 30 or 60 minutes"))
}

impl LiveEconomics {
    /// An engine for `cfg`, continuing from `restored` (a [`LiveState`] from [`Self::state`])
    /// or starting fresh.
    ///
    /// # Errors
    /// [`LiveError::Config`] naming an invalid setting (slot not 15/30/60 min, re-plan interval
    /// outside 1 min..=24 h, horizon outside 1 h..=7 days, a zero SOC deviation, an invalid
    /// battery model), [`LiveError::Forecast`] for an invalid PV system, and
    /// [`LiveError::StateVersion`] / [`LiveError::State`] for a state of another version or one
    /// that does not fit (another slot length).
    pub fn new(cfg: LiveConfig, restored: Option<LiveState>) -> Result<Self, LiveError> {
        let slots_per_day = validate(&cfg)?;
        let tz = cfg.tariff.time_zone().clone();
        let calendar = cfg.tariff.calendar().clone();
        let profile = match &restored {
            Some(s) => restore_profile(s, slots_per_day)?,
            None => LoadProfile::flat(slots_per_day, cfg.load_default)?,
        };
        let load = LoadForecaster::new(profile, LOAD_ALPHA, tz, calendar)?;
        let mut pv = PvForecaster::new(cfg.pv, PvCorrection::default())?;
        let mut forecasts;
        let books;
        let mut actuals = BTreeMap::new();
        let mut last_end = None;
        match restored {
            Some(s) => {
                if s.version != STATE_VERSION {
                    return Err(LiveError::StateVersion { found: s.version, expected: STATE_VERSION });
                }
                pv = pv.with_learned(s.pv);
                forecasts = Forecasts::new(load, pv);
                forecasts.errors = s.errors.into_iter().collect();
                books = Books::restore(
                    &cfg.tariff,
                    &cfg.problem,
                    [s.ledger_ems, s.ledger_no_battery, s.ledger_self_consumption],
                    s.sc_stored_wh,
                    s.flows.into_iter().collect(),
                );
                actuals = s.actuals.into_iter().collect();
                last_end = s.last_end;
            }
            None => {
                forecasts = Forecasts::new(load, pv);
                books = Books::new(&cfg.tariff, &cfg.problem);
            }
        }
        Ok(Self {
            tariff: cfg.tariff.clone(),
            cfg,
            spot: None,
            forecasts,
            books,
            acc: None,
            actuals,
            history: BTreeMap::new(),
            plan: None,
            basis: None,
            pending: None,
            expiry_reported: false,
            failed_at: None,
            events: Vec::new(),
            last_end,
        })
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &LiveConfig {
        &self.cfg
    }

    /// The tariff in use: the configured one with the live spot prices, if any.
    #[must_use]
    pub fn tariff(&self) -> &Tariff {
        &self.tariff
    }

    /// The load forecaster (its learned profile).
    #[must_use]
    pub fn load_forecaster(&self) -> &LoadForecaster {
        &self.forecasts.load
    }

    /// The PV forecaster (its learned ratio).
    #[must_use]
    pub fn pv_forecaster(&self) -> &PvForecaster {
        &self.forecasts.pv
    }

    /// The current plan, if any (also an expired one).
    #[must_use]
    pub fn plan(&self) -> Option<&LivePlan> {
        self.plan.as_ref()
    }

    /// The three ledgers: EMS, no battery, self-consumption only.
    #[must_use]
    pub fn ledgers(&self) -> [&crate::accounting::Ledger; 3] {
        [&self.books.ems, &self.books.no_battery, &self.books.self_consumption]
    }

    /// The tariff's demand charge as the planner sees it at `now`: its rate, the highest import
    /// the EMS ledger has counted this local month, and the month's end.
    fn demand_objective(&self, now: Timestamp) -> Option<DemandObjective> {
        let charge = self.tariff.demand_charge()?;
        let per_kw = DemandPrice::try_new(charge.per_kw()).ok()?;
        let date = now.to_zoned(self.tariff.time_zone().clone()).date();
        let month = YearMonth::of(date);
        let peak_so_far = self
            .books
            .ems
            .months()
            .into_iter()
            .find(|m| m.month == month)
            .map_or(Watts::ZERO, |m| m.peak_import.max(Watts::ZERO));
        let until = date
            .first_of_month()
            .checked_add(jiff::Span::new().months(1))
            .ok()
            .and_then(|d| d.to_zoned(self.tariff.time_zone().clone()).ok())
            .map(|z| z.timestamp());
        Some(DemandObjective { per_kw, peak_so_far, until })
    }

    fn slot_start(&self, at: Timestamp) -> Timestamp {
        let s = self.cfg.slot.as_secs();
        Timestamp::from_second(at.as_second().div_euclid(s) * s).unwrap_or(at)
    }

    fn expires_at(&self, plan: &LivePlan) -> Timestamp {
        let twice = self.cfg.replan_every.checked_mul(2).unwrap_or(self.cfg.replan_every);
        plan.created_at.checked_add(twice).unwrap_or(Timestamp::MAX)
    }

    fn check_expiry(&mut self, now: Timestamp) {
        if let Some(plan) = &self.plan {
            if !self.expiry_reported
                && plan.basis != PriceBasis::SelfConsumption
                && now >= self.expires_at(plan)
            {
                self.events.push(LiveEvent::PlanExpired { at: now, created_at: plan.created_at });
                self.expiry_reported = true;
            }
        }
    }

    /// Record one measured interval `[at, at + dt)` (the gateway sends 1-minute means; any
    /// `dt` up to 15 min works). Feeds the ledgers, the daily flows, the slot means (for the
    /// forecasters, the forecast errors and the plan view). A negative PV reading (inverter
    /// standby) is booked as measured but teaches the PV forecaster zero.
    ///
    /// # Errors
    /// [`LiveError::Measurement`] for `dt` outside `(0, 15 min]` or an interval that starts
    /// before the end of the previous one (e.g. repeated after a restart); nothing is recorded.
    pub fn observe(&mut self, at: Timestamp, dt: SignedDuration, m: &Measured) -> Result<(), LiveError> {
        if dt <= SignedDuration::ZERO || dt > SignedDuration::from_mins(15) {
            return Err(LiveError::Measurement {
                at,
                field: "dt",
                value: format!("{} s", dt.as_secs_f64()),
                expected: "more than 0 and at most 15 min",
            });
        }
        let end = at.checked_add(dt).map_err(|_| LiveError::Measurement {
            at,
            field: "at",
            value: at.to_string(),
            expected: "inside the representable time range",
        })?;
        if let Some(last) = self.last_end {
            if at.checked_add(SignedDuration::from_millis(1)).unwrap_or(at) < last {
                return Err(LiveError::Measurement {
                    at,
                    field: "at",
                    value: at.to_string(),
                    expected: "not before the end of the previous interval",
                });
            }
        }
        self.check_expiry(at);
        self.books.record(at, dt.as_secs_f64(), m.grid, m.pv, m.battery, m.soc)?;
        self.last_end = Some(end);
        let mut t = at;
        while t < end {
            let slot = self.slot_start(t);
            let slot_end = slot.checked_add(self.cfg.slot).unwrap_or(end);
            let piece_end = end.min(slot_end);
            if self.acc.is_some_and(|a| a.start != slot) {
                self.finish_slot();
            }
            let h = piece_end.duration_since(t).as_secs_f64() / 3600.0;
            let acc = self.acc.get_or_insert(SlotAcc {
                start: slot,
                hours: 0.0,
                grid_wh: 0.0,
                pv_wh: 0.0,
                battery_wh: 0.0,
                soc: None,
            });
            acc.hours += h;
            acc.grid_wh += f64::from(m.grid.get()) * h;
            acc.pv_wh += f64::from(m.pv.get()) * h;
            acc.battery_wh += f64::from(m.battery.get()) * h;
            if piece_end == end && m.soc.is_some() {
                acc.soc = m.soc;
            }
            if piece_end == slot_end {
                self.finish_slot();
            }
            t = piece_end;
        }
        Ok(())
    }

    fn finish_slot(&mut self) {
        let Some(a) = self.acc.take() else { return };
        let grid = mean_w(a.grid_wh, a.hours);
        let pv = mean_w(a.pv_wh, a.hours);
        let battery = mean_w(a.battery_wh, a.hours);
        let load = mean_w(a.grid_wh + a.pv_wh + a.battery_wh, a.hours);
        let slot_h = self.cfg.slot.as_secs_f64() / 3600.0;
        let learn = a.hours >= MIN_COVERAGE * slot_h;
        self.forecasts.finish_slot(a.start, self.cfg.slot, pv, load, learn);
        self.actuals.insert(a.start, Actual { battery, grid, pv, load, soc: a.soc });
        let oldest = a.start.checked_sub(KEEP).unwrap_or(a.start);
        self.actuals.retain(|t, _| *t >= oldest);
        self.history.retain(|t, _| *t >= oldest);
    }

    /// Live spot prices from the price feed (a series on the quarter-hour grid; `None` slots
    /// are unknown) and whether they are live or the last good ones; `None` = the feed has
    /// nothing (the tariff file's own series, if any, is used). A change requests a re-plan:
    /// [`ReplanReason::NewPrices`] for live prices, [`ReplanReason::PriceFallback`] for last
    /// good ones or none. Later quarter-hours of the ledgers are priced with them.
    ///
    /// # Errors
    /// [`LiveError::Config`] (`spot`) for a series off the quarter-hour grid; nothing changes.
    pub fn set_spot(&mut self, spot: Option<PriceSeries>, live: SpotStatus) -> Result<(), LiveError> {
        let new = spot.map(|s| (Arc::new(s), live));
        if new == self.spot {
            return Ok(());
        }
        let tariff = match &new {
            Some((s, _)) => self
                .cfg
                .tariff
                .clone()
                .with_spot(Arc::clone(s))
                .map_err(|e| cfg_err("spot", e.value.clone(), "a series on the quarter-hour grid"))?,
            None => self.cfg.tariff.clone(),
        };
        self.spot = new;
        if self.tariff.spot_series().is_some() {
            let reason = match self.spot {
                Some((_, SpotStatus::Live)) => ReplanReason::NewPrices,
                Some((_, SpotStatus::LastGood)) | None => ReplanReason::PriceFallback,
            };
            self.pending.get_or_insert(reason);
        }
        self.books.set_tariff(&tariff);
        self.tariff = tariff;
        Ok(())
    }

    /// An irradiance forecast (`(start, mean GHI)` points, e.g. from [`super::parse_open_meteo`])
    /// replaces the clear-sky × ratio PV forecast where it has values. Does not by itself
    /// request a re-plan.
    pub fn set_irradiance(&mut self, points: Vec<(Timestamp, WattsPerSquareMetre)>) {
        self.forecasts.set_irradiance(points);
    }

    /// Ask for a re-plan (mode or rule change, new prices); [`Self::replan_due`] returns the
    /// first reason asked for until the next plan.
    pub fn request_replan(&mut self, why: ReplanReason) {
        self.pending.get_or_insert(why);
    }

    /// The end of the run of known spot prices from `now` on, and whether they are live.
    fn spot_until(&self, now: Timestamp) -> Option<(Timestamp, bool)> {
        let series = self.tariff.spot_series()?;
        let live = !matches!(self.spot, Some((_, SpotStatus::LastGood)));
        let first = series.index_of(now)?;
        let known = series.values().get(first..)?.iter().take_while(|v| v.is_some()).count();
        (known > 0).then(|| (series.slot_start(first + known), live))
    }

    /// What a plan made at `now` is priced with, and where a dynamic tariff's horizon ends.
    fn basis_at(&self, now: Timestamp) -> (PriceBasis, Option<Timestamp>) {
        let known = self.spot_until(now).filter(|(end, _)| end.duration_since(now) >= MIN_SPOT_HORIZON);
        let dynamic = matches!(self.tariff.import(), ImportPricing::Dynamic(_));
        match (known, dynamic) {
            (Some((end, live)), true) => (PriceBasis::Spot { live }, Some(end)),
            (None, true) => (PriceBasis::SelfConsumption, None),
            (Some((_, live)), false) => (PriceBasis::Spot { live }, None),
            (None, false) => (PriceBasis::Tariff, None),
        }
    }

    /// What a plan made now would be priced with.
    #[must_use]
    pub fn price_basis(&self, now: Timestamp) -> PriceBasis {
        self.basis_at(now).0
    }

    /// The planned SOC at `now` (linear within the slot), if the plan covers `now`.
    fn planned_soc(&self, plan: &LivePlan, now: Timestamp) -> Option<Ratio> {
        let (i, s) = plan.slot_at(now)?;
        let from = if i == 0 { plan.soc_start } else { plan.slots.get(i - 1)?.soc };
        let begin = if i == 0 { plan.created_at } else { s.start };
        let len = s.end.duration_since(begin).as_secs_f64();
        let f = if len > 0.0 { (now.duration_since(begin).as_secs_f64() / len).clamp(0.0, 1.0) } else { 1.0 };
        Some(Ratio::saturating(from.get() + (s.soc.get() - from.get()) * f))
    }

    /// Whether to re-plan now, and why: a requested reason first, then no plan yet
    /// ([`ReplanReason::Start`]; after a failed plan only once a re-plan interval has passed), a changed price basis ([`ReplanReason::PriceFallback`]), the
    /// interval ([`ReplanReason::Interval`]) and a measured SOC off the plan by more than the
    /// configured deviation ([`ReplanReason::SocOffPlan`]).
    #[must_use]
    pub fn replan_due(&self, now: Timestamp, soc: Option<Ratio>) -> Option<ReplanReason> {
        if let Some(p) = self.pending {
            return Some(p);
        }
        let every = self.cfg.replan_every;
        let Some(plan) = &self.plan else {
            let retry = self.failed_at.is_none_or(|t| now >= t.checked_add(every).unwrap_or(Timestamp::MAX));
            return retry.then_some(ReplanReason::Start);
        };
        if self.basis_at(now).0 != plan.basis {
            return Some(ReplanReason::PriceFallback);
        }
        if now >= plan.created_at.checked_add(every).unwrap_or(Timestamp::MAX) {
            return Some(ReplanReason::Interval);
        }
        let planned = self.planned_soc(plan, now)?;
        let off = (soc?.get() - planned.get()).abs();
        (off > self.cfg.soc_off_plan.get()).then_some(ReplanReason::SocOffPlan)
    }

    /// Grid slot starts from the slot containing `now` until `end`.
    fn slot_starts(&self, now: Timestamp, end: Timestamp) -> Vec<Timestamp> {
        let mut out = Vec::new();
        let mut t = self.slot_start(now);
        while t < end {
            out.push(t);
            match t.checked_add(self.cfg.slot) {
                Ok(next) => t = next,
                Err(_) => break,
            }
        }
        out
    }

    /// Mean import and export price over `[start, end)` (quarter-hour prices; a tariff's
    /// prices are constant within each quarter-hour).
    fn slot_prices(&self, start: Timestamp, end: Timestamp) -> (Price, Price) {
        let (mut imp, mut exp, mut n) = (0.0, 0.0, 0.0);
        let mut t = start;
        while t < end {
            imp += self.tariff.import_price(t).per_kwh();
            exp += self.tariff.export_price(t).per_kwh();
            n += 1.0;
            t = t.checked_add(SignedDuration::from_mins(15)).unwrap_or(end);
        }
        if n > 0.0 {
            (Price::new(imp / n), Price::new(exp / n))
        } else {
            (self.tariff.import_price(start), self.tariff.export_price(start))
        }
    }

    fn spot_at(&self, at: Timestamp) -> Option<Price> {
        self.tariff.spot_series().and_then(|s| s.get(at))
    }

    /// Make a plan from `now` with the measured `soc`: decide the price basis (a change is
    /// recorded as [`LiveEvent::BasisChanged`]), forecast PV and load over the horizon, price
    /// it, and plan the battery. Under [`PriceBasis::SelfConsumption`] the plan has no slots and
    /// [`Self::target`] returns `None`. The reason recorded is the pending requested one, else
    /// what [`Self::replan_due`] says, else [`ReplanReason::Interval`].
    ///
    /// # Errors
    /// [`LiveError::Plan`] when the planner refuses (there is then no plan, and a
    /// [`LiveEvent::PlanFailed`] is recorded).
    pub fn replan(&mut self, now: Timestamp, soc: Ratio) -> Result<&LivePlan, LiveError> {
        let reason = self.replan_due(now, Some(soc)).unwrap_or(ReplanReason::Interval);
        self.pending = None;
        self.failed_at = None;
        self.expiry_reported = false;
        let (basis, cut) = self.basis_at(now);
        if self.basis != Some(basis) {
            self.events.push(LiveEvent::BasisChanged { at: now, from: self.basis, to: basis });
            self.basis = Some(basis);
        }
        if let Some(old) = self.plan.take() {
            for s in old.slots.into_iter().filter(|s| s.start < now) {
                self.history.insert(s.start, s);
            }
            let oldest = now.checked_sub(KEEP).unwrap_or(now);
            self.history.retain(|t, _| *t >= oldest);
        }
        let horizon_end = now.checked_add(self.cfg.horizon).unwrap_or(Timestamp::MAX);
        let end = cut.map_or(horizon_end, |c| c.min(horizon_end));
        let starts = self.slot_starts(now, end);
        let forecast = self.forecasts.slots(&starts, self.cfg.slot);
        self.forecasts.remember(now, &forecast);
        if basis == PriceBasis::SelfConsumption {
            let plan = LivePlan {
                created_at: now,
                reason,
                basis,
                soc_start: soc,
                slots: Vec::new(),
                total_cost: Money::ZERO,
                status: PlanStatus::Optimal,
                acted_on: false,
            };
            self.events.push(LiveEvent::Replanned { at: now, reason, basis, slots: 0, cost: Money::ZERO });
            return Ok(self.plan.insert(plan));
        }
        let steps = self.steps(now, end, &forecast);
        // A demand charge is part of the objective: the month's peak so far is what a plan must
        // not raise without paying for it; only the steps the tariff counts (its peak windows).
        let problem =
            Problem { soc_init: soc, demand_charge: self.demand_objective(now), ..self.cfg.problem };
        let counts: Vec<bool> = steps.iter().map(|s| self.tariff.counts_for_demand(s.start)).collect();
        match plan_with_demand_steps(&problem, &steps, &counts) {
            Ok(p) => {
                let acted_on = crate::optimizer::acted_on(&problem, &steps, &p, self.cfg.plan_margin);
                let sc_steps = crate::optimizer::self_consumption_steps(&problem, &steps, &p);
                let slots: Vec<PlannedSlot> = forecast
                    .iter()
                    .zip(&steps)
                    .enumerate()
                    .map(|(i, (f, step))| PlannedSlot {
                        start: f.start,
                        end: step.end(),
                        import_price: step.import_price,
                        export_price: step.export_price,
                        spot: self.spot_at(f.start),
                        pv: f.pv,
                        load: f.load,
                        battery: watts_from_f64(p.battery_w.get(i).copied().unwrap_or(0.0)),
                        grid: watts_from_f64(p.grid_w.get(i).copied().unwrap_or(0.0)),
                        soc: Ratio::saturating(p.soc.get(i).copied().unwrap_or(soc.get())),
                        self_consumption: sc_steps.get(i).copied().unwrap_or(false),
                    })
                    .collect();
                self.events.push(LiveEvent::Replanned {
                    at: now,
                    reason,
                    basis,
                    slots: slots.len(),
                    cost: p.total_cost,
                });
                let plan = LivePlan {
                    created_at: now,
                    reason,
                    basis,
                    soc_start: soc,
                    slots,
                    total_cost: p.total_cost,
                    status: p.status,
                    acted_on,
                };
                Ok(self.plan.insert(plan))
            }
            Err(e) => {
                self.failed_at = Some(now);
                self.events.push(LiveEvent::PlanFailed { at: now, reason, error: e.to_string() });
                Err(e.into())
            }
        }
    }

    /// The planner's steps: the first one from `now`, the last one to `end`.
    fn steps(&self, now: Timestamp, end: Timestamp, forecast: &[ForecastSlot]) -> Vec<Step> {
        forecast
            .iter()
            .filter_map(|f| {
                let start = f.start.max(now);
                let stop = f.end.min(end);
                (start < stop).then(|| {
                    let (import_price, export_price) = self.slot_prices(f.start, f.end);
                    Step {
                        start,
                        duration: stop.duration_since(start),
                        // The cautious forecast (see `LiveConfig::pv_factor`).
                        pv: scaled(f.pv, self.cfg.pv_factor),
                        load: scaled(f.load, self.cfg.load_factor),
                        import_price,
                        export_price,
                    }
                })
            })
            .collect()
    }

    fn live_plan(&self, now: Timestamp) -> Option<&LivePlan> {
        self.plan.as_ref().filter(|p| {
            p.basis != PriceBasis::SelfConsumption
                && p.acted_on
                && p.created_at <= now
                && now < self.expires_at(p)
        })
    }

    /// The current slot's planned battery and grid power: `None` without a plan, under
    /// self-consumption, for a plan not acted on, once the plan is older than two re-plan
    /// intervals, or outside it. A self-consumption slot has grid 0 (the controller's
    /// self-consumption loop runs it).
    #[must_use]
    pub fn target(&self, now: Timestamp) -> Option<(Watts, Watts)> {
        let (_, s) = self.live_plan(now)?.slot_at(now)?;
        Some((s.battery, if s.self_consumption { Watts::ZERO } else { s.grid }))
    }

    /// The import price at `now` (for price triggers of operator rules); `None` for a dynamic
    /// tariff whose spot price at `now` is unknown (its fallback is not a market price).
    #[must_use]
    pub fn import_price(&self, now: Timestamp) -> Option<Price> {
        let q = self.tariff.import_quote(now);
        match (self.tariff.import(), q.source) {
            (ImportPricing::Dynamic(_), crate::tariff::PriceSource::Fallback) => None,
            _ => Some(q.price),
        }
    }

    /// The plan with today's past slots (local day) and what happened in them.
    #[must_use]
    pub fn plan_view(&self, now: Timestamp) -> PlanView {
        let today = now.to_zoned(self.tariff.time_zone().clone());
        let midnight = today.start_of_day().map_or(now, |z| z.timestamp());
        let first_planned = self.plan.as_ref().and_then(|p| p.slots.first()).map(|s| s.start);
        let actual = |start: Timestamp| self.actuals.get(&start).copied();
        let mut slots: Vec<SlotView> = self
            .history
            .range(midnight..)
            .filter(|(t, _)| first_planned.is_none_or(|f| **t < f))
            .map(|(_, s)| SlotView { planned: *s, actual: actual(s.start) })
            .collect();
        if let Some(p) = &self.plan {
            slots.extend(p.slots.iter().map(|s| SlotView { planned: *s, actual: actual(s.start) }));
        }
        let status = match &self.plan {
            None => "none",
            Some(p) if p.basis == PriceBasis::SelfConsumption => "none",
            Some(p) if now >= self.expires_at(p) => "expired",
            Some(_) => "ok",
        };
        PlanView {
            created_at: self.plan.as_ref().map(|p| p.created_at),
            expires_at: self.plan.as_ref().map(|p| self.expires_at(p)),
            reason: self.plan.as_ref().map(|p| p.reason),
            basis: self.plan.as_ref().map(|p| p.basis),
            status,
            total_cost: self.plan.as_ref().map(|p| p.total_cost),
            slots,
        }
    }

    /// PV and load forecasts over the horizon from `now`, and the forecast errors.
    #[must_use]
    pub fn forecast_view(&self, now: Timestamp) -> ForecastView {
        let end = now.checked_add(self.cfg.horizon).unwrap_or(Timestamp::MAX);
        let starts = self.slot_starts(now, end);
        ForecastView {
            made_at: now,
            pv_long_run_ratio: Factor::saturating(self.forecasts.pv.long_run_ratio()),
            pv_recent_ratio: self.forecasts.pv.recent_ratio().map(Factor::saturating),
            slots: self.forecasts.slots(&starts, self.cfg.slot),
            errors: self.forecasts.error_views(),
        }
    }

    /// Import and export prices per slot over the horizon from `now`.
    #[must_use]
    pub fn prices_view(&self, now: Timestamp) -> Vec<PriceSlot> {
        let end = now.checked_add(self.cfg.horizon).unwrap_or(Timestamp::MAX);
        self.slot_starts(now, end)
            .into_iter()
            .map(|start| {
                let (imp, exp) = (self.tariff.import_quote(start), self.tariff.export_quote(start));
                PriceSlot {
                    start,
                    end: start.checked_add(self.cfg.slot).unwrap_or(start),
                    spot: self.spot_at(start),
                    import: imp.price,
                    import_source: imp.source,
                    export: exp.price,
                    export_source: exp.source,
                }
            })
            .collect()
    }

    /// The EMS against both baselines in the local day, month or year containing `now`.
    #[must_use]
    pub fn savings(&self, period: Period, now: Timestamp) -> SavingsView {
        self.books.savings(period, now)
    }

    /// One row per local day of `month` with observations: energy flows and costs.
    #[must_use]
    pub fn report(&self, month: YearMonth) -> Vec<DayRow> {
        self.books.report(month)
    }

    /// The events since the last call (basis changes, plans, failures, expiry as of `now`).
    pub fn take_events(&mut self, now: Timestamp) -> Vec<LiveEvent> {
        self.check_expiry(now);
        std::mem::take(&mut self.events)
    }

    /// The learned state, for the caller to store.
    #[must_use]
    pub fn state(&self) -> LiveState {
        let profile = self.forecasts.load.profile();
        let day = |d| profile.day(d).iter().map(|w: &Watts| w.get()).collect::<Vec<f32>>();
        use crate::forecast::LoadDayType as D;
        LiveState {
            version: STATE_VERSION,
            load_slots_per_day: profile.slots_per_day(),
            load_profile: [day(D::Working), day(D::Saturday), day(D::SundayOrHoliday)],
            pv: self.forecasts.pv.learned(),
            errors: self.forecasts.errors.iter().copied().collect(),
            ledger_ems: self.books.ems.state(),
            ledger_no_battery: self.books.no_battery.state(),
            ledger_self_consumption: self.books.self_consumption.state(),
            sc_stored_wh: self.books.sc_stored_wh,
            flows: self.books.flows.iter().map(|(d, f)| (*d, *f)).collect(),
            actuals: self.actuals.iter().map(|(t, a)| (*t, *a)).collect(),
            last_end: self.last_end,
        }
    }
}

/// `w × f`, for the cautious forecasts.
fn scaled(w: Watts, f: crate::units::Factor) -> Watts {
    #[allow(clippy::cast_possible_truncation)] // a factor near 1 on watts
    Watts::saturating(w.get() * f.get() as f32)
}

fn restore_profile(s: &LiveState, slots_per_day: usize) -> Result<LoadProfile, LiveError> {
    if s.load_slots_per_day != slots_per_day {
        return Err(state_err(
            "load_slots_per_day",
            s.load_slots_per_day,
            "the slots per day of the configured slot",
        ));
    }
    let watts = |v: &Vec<f32>| -> Result<Vec<Watts>, LiveError> {
        v.iter()
            .map(|&x| Watts::try_new(x).map_err(|_| state_err("load_profile", x, "finite powers")))
            .collect()
    };
    let [w, sa, su] = &s.load_profile;
    LoadProfile::new(watts(w)?, watts(sa)?, watts(su)?)
        .map_err(|e| state_err("load_profile", e, "one value per slot for each day type"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forecast::PvSystem;
    use crate::optimizer::Problem;
    use jiff::tz::TimeZone;

    fn engine() -> LiveEconomics {
        let tariff = Tariff::fixed(TimeZone::UTC, Price::new(0.3), Price::new(0.1));
        let pv = PvSystem::new(50.0, 10.0, 30.0, 180.0, Watts::ZERO).unwrap();
        LiveEconomics::new(LiveConfig::new(tariff, pv, Problem::default()), None).unwrap()
    }

    #[test]
    fn the_engine_moves_into_the_planner_thread() {
        fn send<T: Send + 'static>(_: &T) {}
        send(&engine());
    }

    #[test]
    fn a_failed_plan_is_retried_after_an_interval_not_every_call() {
        let mut live = engine();
        let t: Timestamp = "2026-06-03T10:00:00Z".parse().unwrap();
        assert_eq!(live.replan_due(t, None), Some(ReplanReason::Start));
        live.failed_at = Some(t);
        assert_eq!(live.replan_due(t + SignedDuration::from_mins(14), None), None);
        assert_eq!(live.replan_due(t + SignedDuration::from_mins(15), None), Some(ReplanReason::Start));
        live.request_replan(ReplanReason::RuleChange);
        assert_eq!(live.replan_due(t, None), Some(ReplanReason::RuleChange), "a request is served at once");
        live.replan(t, crate::ratio!(0.5)).unwrap();
        assert_eq!(live.failed_at, None);
    }

    #[test]
    fn slots_lie_on_the_utc_grid_and_the_first_observation_sets_the_baseline_battery() {
        let mut live = engine();
        let t: Timestamp = "2026-06-03T10:07:30Z".parse().unwrap();
        assert_eq!(live.slot_start(t).to_string(), "2026-06-03T10:00:00Z");
        let m = Measured {
            grid: ems_core::watts!(100.0),
            pv: Watts::ZERO,
            battery: Watts::ZERO,
            soc: Some(crate::ratio!(0.3)),
        };
        // 10:07:30 + 10 min crosses the slot boundary: two slots, the first one finished.
        live.observe(t, SignedDuration::from_mins(10), &m).unwrap();
        assert_eq!(live.actuals.len(), 1);
        assert_eq!(live.acc.map(|a| a.start.to_string()), Some("2026-06-03T10:15:00Z".to_owned()));
        let stored = live.books.sc_stored_wh.unwrap();
        assert!((stored - (0.3 * 10_000.0 - 100.0 / 0.95 * 10.0 / 60.0)).abs() < 1e-9, "{stored}");
    }
}
