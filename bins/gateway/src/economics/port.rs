//! The API's port onto live economics: each endpoint's view computed from the planner's shared
//! state (a short lock the control thread never takes), mapped from the engine's types onto the
//! API's wire DTOs.

use super::shared::{locate, lock, Core, Shared};
use ems_api::economics as api;
use ems_api::economics::{EconomicsPort, PortError, PortErrorKind};
use ems_core::Percent;
use ems_strategies::live::{Period, PriceBasis};
use ems_strategies::prices::{FeedStatus, PricePoint, PushHandle, SourceKind};
use ems_strategies::rules::{RuleEngine, RuleSet};
use ems_strategies::{Price, Ratio};
use jiff::Timestamp;
use serde_json::Value;

/// The port (one per planner).
#[derive(Debug)]
pub(super) struct Port {
    shared: Shared,
    push: Option<PushHandle>,
}

impl Port {
    pub(super) fn new(shared: Shared, push: Option<PushHandle>) -> Self {
        Self { shared, push }
    }
}

/// Site time: the loop's latest tick (the simulated site's calendar runs at its own speed);
/// before the first tick, the clock's start (the wall clock on a real site).
fn now(core: &Core) -> Timestamp {
    core.tick.map_or_else(|| core.clock.at(ems_core::Millis::ZERO), |t| t.at)
}

fn soc_percent(r: Ratio) -> Percent {
    // A fraction of one as a percentage: inside 0..=100 for any valid ratio.
    #[allow(clippy::cast_possible_truncation)]
    let p = (r.get() * 100.0) as f32;
    Percent::saturating(p)
}

fn basis(b: PriceBasis) -> api::PriceBasis {
    match b {
        PriceBasis::Spot { live: true } => api::PriceBasis::Spot,
        PriceBasis::Spot { live: false } => api::PriceBasis::LastGood,
        PriceBasis::Tariff => api::PriceBasis::Tariff,
        PriceBasis::SelfConsumption => api::PriceBasis::SelfConsumption,
    }
}

fn reason(r: ems_strategies::live::ReplanReason) -> api::PlanReason {
    use ems_strategies::live::ReplanReason as R;
    match r {
        R::Start => api::PlanReason::Start,
        R::Interval => api::PlanReason::Interval,
        R::NewPrices => api::PlanReason::NewPrices,
        R::SocOffPlan => api::PlanReason::SocOffPlan,
        R::ModeChange => api::PlanReason::ModeChange,
        R::RuleChange => api::PlanReason::RuleChange,
        R::PriceFallback => api::PlanReason::PriceFallback,
    }
}

fn kind(k: SourceKind) -> api::PriceSourceKind {
    match k {
        SourceKind::File => api::PriceSourceKind::File,
        SourceKind::Awattar => api::PriceSourceKind::Awattar,
        SourceKind::Entsoe => api::PriceSourceKind::Entsoe,
        SourceKind::Push => api::PriceSourceKind::Push,
    }
}

fn status(s: Option<FeedStatus>) -> (api::PriceStatus, Option<api::PriceSourceKind>) {
    match s {
        Some(FeedStatus::Live { kind: k }) => (api::PriceStatus::Live, Some(kind(k))),
        Some(FeedStatus::LastGood { kind: k, .. }) => (api::PriceStatus::LastGood, Some(kind(k))),
        Some(FeedStatus::Exhausted) | None => (api::PriceStatus::Exhausted, None),
    }
}

fn cost(l: &ems_strategies::live::LedgerView) -> api::CostSummary {
    api::CostSummary { cost: l.cost.get(), import_kwh: l.import_kwh.get(), export_kwh: l.export_kwh.get() }
}

/// What drives the battery now, in the operator's words: the source of this cycle's set-point,
/// and an active rule that did not change it (a limit that does not bind now) named beside it.
fn drives(core: &Core, at: Timestamp) -> String {
    let Some(tick) = core.tick else { return "waiting for the control loop".to_owned() };
    let rule = core.decision.as_ref().and_then(|d| d.winner.as_ref());
    let main = match (tick.source, rule) {
        (ems_control::CommandSource::Rule { .. }, Some((name, action))) => {
            return format!("rule '{name}': {action}")
        }
        (ems_control::CommandSource::Plan(r), _) => match core.engine.target(at) {
            Some((battery, _)) => {
                let what = if battery.get() > 0.0 {
                    format!("discharge {:.1} kW", battery.get() / 1000.0)
                } else if battery.get() < 0.0 {
                    format!("charge {:.1} kW", -battery.get() / 1000.0)
                } else {
                    "hold".to_owned()
                };
                format!("plan: {what} ({r})")
            }
            None => format!("plan: {r}"),
        },
        (source, _) => source.to_string(),
    };
    match rule {
        Some((name, action)) => format!("{main}; rule '{name}' ({action}) active, not binding now"),
        None => main,
    }
}

impl EconomicsPort for Port {
    fn plan(&self) -> api::PlanView {
        let core = lock(&self.shared);
        let at = now(&core);
        let v = core.engine.plan_view(at);
        let status = match v.status {
            "ok" => api::PlanStatus::Ok,
            "expired" => api::PlanStatus::Expired,
            _ => api::PlanStatus::None,
        };
        api::PlanView {
            status,
            created_at: v.created_at,
            expires_at: v.expires_at,
            reason: v.reason.map(reason),
            price_basis: basis(v.basis.unwrap_or_else(|| core.engine.price_basis(at))),
            acted_on: core.engine.plan().is_some_and(|p| p.acted_on),
            currency: core.engine.tariff().currency().to_owned(),
            slots: v
                .slots
                .iter()
                .map(|s| api::PlanSlot {
                    start: s.planned.start,
                    end: s.planned.end,
                    import_price: s.planned.import_price.per_kwh(),
                    export_price: s.planned.export_price.per_kwh(),
                    spot_price: s.planned.spot.map(Price::per_kwh),
                    pv_w: s.planned.pv,
                    load_w: s.planned.load,
                    battery_w: s.planned.battery,
                    grid_w: s.planned.grid,
                    soc_percent: soc_percent(s.planned.soc),
                    self_consumption: s.planned.self_consumption,
                    actual: s.actual.map(|a| api::SlotActual {
                        battery_w: a.battery,
                        grid_w: a.grid,
                        soc_percent: a.soc.map_or(Percent::ZERO, soc_percent),
                    }),
                })
                .collect(),
        }
    }

    fn forecast(&self) -> api::ForecastView {
        let core = lock(&self.shared);
        let at = now(&core);
        let f = core.engine.forecast_view(at);
        let plan = core.engine.plan_view(at);
        let actual =
            |start: Timestamp| plan.slots.iter().find(|s| s.planned.start == start).and_then(|s| s.actual);
        let nmae = |q: &str| f.errors.iter().find(|e| e.quantity == q).and_then(|e| e.nmae).map(|n| n.get());
        let samples = f.errors.iter().map(|e| e.n).max().unwrap_or(0);
        api::ForecastView {
            slots: f
                .slots
                .iter()
                .map(|s| api::ForecastSlot {
                    start: s.start,
                    end: s.end,
                    pv_w: s.pv,
                    load_w: s.load,
                    pv_actual_w: actual(s.start).map(|a| a.pv),
                    load_actual_w: actual(s.start).map(|a| a.load),
                })
                .collect(),
            errors: api::ForecastErrors {
                pv_nmae: nmae("pv"),
                load_nmae: nmae("load"),
                window_hours: ems_strategies::live::ERROR_WINDOW.as_secs_f64() / 3600.0,
                samples: u64::try_from(samples).unwrap_or(u64::MAX),
            },
            pv_ratio: Some(f.pv_recent_ratio.unwrap_or(f.pv_long_run_ratio).get()),
        }
    }

    fn prices(&self) -> api::PricesView {
        let core = lock(&self.shared);
        let at = now(&core);
        let (status, source) = status(core.feed.status);
        api::PricesView {
            source,
            status,
            basis: basis(core.engine.price_basis(at)),
            currency: core.engine.tariff().currency().to_owned(),
            // The prices in use, quarter-hour by quarter-hour: the spot price and the all-in
            // import and export prices the tariff makes of it (the tariff's own price where
            // there is no spot price).
            prices: core
                .engine
                .prices_view(at)
                .iter()
                .map(|p| api::PricePoint {
                    start: p.start,
                    end: p.end,
                    price: p.spot.unwrap_or(p.import).per_kwh(),
                    import_price: p.import.per_kwh(),
                    export_price: p.export.per_kwh(),
                })
                .collect(),
            sources: core
                .feed
                .sources
                .iter()
                .map(|s| api::PriceSourceView {
                    kind: kind(s.kind),
                    last_ok: s.last_ok,
                    last_error: s.last_error.clone(),
                    points: u64::try_from(s.points).unwrap_or(u64::MAX),
                    covered_until: s.covered_until,
                })
                .collect(),
        }
    }

    fn push_prices(&self, actor: &str, prices: Vec<api::PushedPrice>) -> Result<usize, PortError> {
        let Some(push) = &self.push else {
            return Err(PortError::new(
                PortErrorKind::NotFound,
                "prices",
                "no push price source is configured ([[economics.prices]] kind = \"push\")",
            ));
        };
        let mut points = Vec::with_capacity(prices.len());
        for (i, p) in prices.iter().enumerate() {
            let price = Price::checked("price", p.price).map_err(|_| {
                PortError::new(
                    PortErrorKind::Invalid,
                    format!("prices[{i}].price"),
                    format!("{} is not a finite price", p.price),
                )
            })?;
            points.push(PricePoint { start: p.start, end: p.end, price });
        }
        let n = push
            .push(&points)
            .map_err(|e| PortError::new(PortErrorKind::Conflict, "prices", e.to_string()))?;
        tracing::info!(target: "audit", "economics: {actor} pushed {n} prices");
        Ok(n)
    }

    fn savings(&self, period: api::SavingsPeriod) -> Result<api::SavingsView, PortError> {
        let core = lock(&self.shared);
        let p = match period {
            api::SavingsPeriod::Day => Period::Day,
            api::SavingsPeriod::Month => Period::Month,
            api::SavingsPeriod::Year => Period::Year,
        };
        let s = core.engine.savings(p, now(&core));
        Ok(api::SavingsView {
            period,
            start: s.start,
            currency: s.currency.clone(),
            ems: cost(&s.ems),
            no_battery: cost(&s.no_battery),
            self_consumption: cost(&s.self_consumption),
            saving_vs_no_battery: s.saving_vs_no_battery.get(),
            saving_vs_self_consumption: s.saving_vs_self_consumption.get(),
        })
    }

    fn report(&self, month: api::ReportMonth) -> Result<api::MonthReport, PortError> {
        let core = lock(&self.shared);
        let ym = ems_strategies::accounting::YearMonth::of(month.first_day);
        let days = core
            .engine
            .report(ym)
            .iter()
            .map(|d| api::DayRow {
                date: d.date,
                import_kwh: d.import_kwh.get(),
                export_kwh: d.export_kwh.get(),
                pv_kwh: d.pv_kwh.get(),
                load_kwh: d.load_kwh.get(),
                battery_charge_kwh: d.battery_charge_kwh.get(),
                battery_discharge_kwh: d.battery_discharge_kwh.get(),
                cost: d.cost_ems.get(),
                cost_no_battery: d.cost_no_battery.get(),
                cost_self_consumption: d.cost_self_consumption.get(),
                saving_vs_no_battery: d.saving_vs_no_battery.get(),
                saving_vs_self_consumption: d.saving_vs_self_consumption.get(),
            })
            .collect();
        Ok(api::MonthReport { currency: core.engine.tariff().currency().to_owned(), days })
    }

    fn rules(&self) -> api::RulesView {
        let core = lock(&self.shared);
        let set = match &core.rules_json {
            Value::Object(m) => m.clone(),
            _ => serde_json::Map::new(),
        };
        let decision =
            core.decision.as_ref().map_or_else(api::RuleDecision::default, |d| api::RuleDecision {
                winner: d.winner.as_ref().map(|(n, _)| n.clone()),
                action: d.winner.as_ref().map(|(_, o)| o.to_string()),
                fired: d.fired.clone(),
            });
        api::RulesView { set, decision }
    }

    fn put_rules(&self, actor: &str, rules: Value) -> Result<Value, PortError> {
        let set = RuleSet::from_json(&rules)
            .map_err(|e| PortError::new(PortErrorKind::Invalid, e.path.clone(), e.to_string()))?;
        let mut core = lock(&self.shared);
        let set = locate(set, &core.wiring);
        let json = set.to_json();
        // A rule that did not change keeps its latch (an `until` in progress goes on).
        match core.rules.as_mut() {
            Some(engine) => engine.replace(set),
            None => RuleEngine::new(set).map(|e| core.rules = Some(e)),
        }
        .map_err(|e| PortError::new(PortErrorKind::Invalid, e.path.clone(), e.to_string()))?;
        core.rules_json = json.clone();
        core.rules_changed = true;
        let names: Vec<String> = json
            .get("rules")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter().filter_map(|r| r.get("name").and_then(Value::as_str).map(str::to_owned)).collect()
            })
            .unwrap_or_default();
        tracing::info!(target: "audit", "economics: {actor} stored {} rules: {}", names.len(), names.join(", "));
        Ok(json)
    }

    fn summary(&self) -> api::EconomicsSummary {
        let core = lock(&self.shared);
        let at = now(&core);
        let b = core.engine.price_basis(at);
        let (price_status, _) = status(core.feed.status);
        // A fallback only where spot prices are what the tariff bills by: a time-of-use or fixed
        // tariff plans on its own prices as a matter of course.
        let uses_spot = core.wiring.tariff.spot_series().is_some();
        let fallback = match b {
            PriceBasis::Spot { live: false } => {
                Some("the price source fails: planning with its last good prices".to_owned())
            }
            PriceBasis::Tariff if uses_spot => {
                Some("no spot price: planning with the tariff's own prices".to_owned())
            }
            PriceBasis::SelfConsumption => {
                Some("no usable price: no plan, the configured mode runs".to_owned())
            }
            PriceBasis::Spot { live: true } | PriceBasis::Tariff => None,
        };
        api::EconomicsSummary {
            price_basis: basis(b),
            price_status,
            drives: drives(&core, at),
            fallback,
            active_rule: core.decision.as_ref().and_then(|d| d.winner.as_ref().map(|(n, _)| n.clone())),
        }
    }
}
