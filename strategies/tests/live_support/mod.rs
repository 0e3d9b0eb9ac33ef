//! Shared fixtures of the `live_*` tests: tariffs, a PV array, a battery model, and a tiny
//! site driven minute by minute through the engine.
#![allow(dead_code)] // each test file uses a part of the fixtures

use ems_core::Watts;
use ems_strategies::forecast::PvSystem;
use ems_strategies::live::{LiveConfig, LiveEconomics, Measured};
use ems_strategies::optimizer::Problem;
use ems_strategies::tariff::{
    DaySchedule, DynamicImport, ExportPricing, ImportPricing, PriceSeries, Tariff, TimeOfDay, TouSchedule,
    TouSlot,
};
use ems_strategies::{Price, Ratio};
use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use std::sync::Arc;

pub(crate) fn berlin() -> TimeZone {
    TimeZone::get("Europe/Berlin").unwrap()
}

/// Instant of a Berlin local time `"2026-06-03T17:00"`.
pub(crate) fn local(text: &str) -> Timestamp {
    let dt: DateTime = text.parse().unwrap();
    berlin().to_ambiguous_timestamp(dt).compatible().unwrap()
}

pub(crate) fn w(v: f32) -> Watts {
    Watts::try_new(v).unwrap()
}

pub(crate) fn ratio(v: f64) -> Ratio {
    Ratio::try_new(v).unwrap()
}

pub(crate) fn minutes(m: i64) -> SignedDuration {
    SignedDuration::from_mins(m)
}

fn window(from: &str, to: &str, price: f64, peak: bool) -> TouSlot {
    TouSlot {
        from: TimeOfDay::parse(from).unwrap(),
        to: TimeOfDay::parse(to).unwrap(),
        price: Price::new(price),
        peak,
    }
}

/// Every day: 0.10 from 00:00 to 06:00, 0.45 from 17:00 to 21:00 (peak), 0.30 otherwise;
/// export 0.05.
pub(crate) fn tou() -> Tariff {
    let day = DaySchedule::new(
        Price::new(0.30),
        vec![window("00:00", "06:00", 0.10, false), window("17:00", "21:00", 0.45, true)],
    )
    .unwrap();
    Tariff::new(
        berlin(),
        ImportPricing::TimeOfUse(TouSchedule::new(day.clone(), day, None)),
        ExportPricing::Fixed(Price::new(0.05)),
    )
}

/// A 15-min series from `start` with `prices`.
/// A flat import price all day (export 0.05).
#[allow(dead_code)] // not every test file that includes this module uses it
pub(crate) fn flat(price: f64) -> Tariff {
    let day = DaySchedule::new(Price::new(price), Vec::new()).unwrap();
    Tariff::new(
        berlin(),
        ImportPricing::TimeOfUse(TouSchedule::new(day.clone(), day, None)),
        ExportPricing::Fixed(Price::new(0.05)),
    )
}

pub(crate) fn series(start: Timestamp, prices: &[Option<f64>]) -> PriceSeries {
    PriceSeries::new(start, minutes(15), prices.iter().map(|p| p.map(Price::new)).collect()).unwrap()
}

/// Dynamic import: (spot + 0.10) × 1.19, fallback 0.40; export 0.05. Its own spot series lies
/// in 2020, so it knows no price for 2026.
pub(crate) fn dynamic() -> Tariff {
    let old = series("2020-01-01T00:00:00Z".parse().unwrap(), &[Some(0.1); 4]);
    let import =
        DynamicImport::new(Arc::new(old), Price::new(0.10), Price::ZERO, 19.0, Price::new(0.40)).unwrap();
    Tariff::new(berlin(), ImportPricing::Dynamic(import), ExportPricing::Fixed(Price::new(0.05)))
}

/// 3 kWp facing south at Berlin.
pub(crate) fn array() -> PvSystem {
    PvSystem::new(52.5, 13.4, 30.0, 180.0, w(3000.0)).unwrap()
}

/// 10 kWh, 5 kW, 95 % each way, SOC 10..90 %, ending at least at 10 %.
pub(crate) fn battery() -> Problem {
    Problem { soc_final: ratio(0.1), ..Problem::default() }
}

/// An engine for a site without PV (the planner then sees only load and prices).
pub(crate) fn engine(tariff: Tariff) -> LiveEconomics {
    engine_with(tariff, PvSystem::new(52.5, 13.4, 30.0, 180.0, Watts::ZERO).unwrap())
}

pub(crate) fn engine_with(tariff: Tariff, pv: PvSystem) -> LiveEconomics {
    let mut cfg = LiveConfig::new(tariff, pv, battery());
    cfg.load_default = w(500.0);
    LiveEconomics::new(cfg, None).unwrap()
}

/// A site without PV whose battery follows the engine's target (or idles): 500 W load,
/// ideal metering. Steps one minute per call.
#[derive(Debug, Clone)]
pub(crate) struct Site {
    pub(crate) soc: f64,
    pub(crate) load: f32,
    pub(crate) capacity_wh: f64,
}

impl Site {
    pub(crate) fn new(soc: f64) -> Self {
        Self { soc, load: 500.0, capacity_wh: 10_000.0 }
    }

    /// Run the battery at `battery` W for one minute from `now` and report it to `live`.
    pub(crate) fn minute(&mut self, live: &mut LiveEconomics, now: Timestamp, battery: f32) {
        let h = 1.0 / 60.0;
        let b = f64::from(battery);
        let delta = if b >= 0.0 { -b * h / 0.95 } else { -b * h * 0.95 };
        self.soc = (self.soc + delta / self.capacity_wh).clamp(0.0, 1.0);
        let grid = self.load - battery;
        let m = Measured { grid: w(grid), pv: Watts::ZERO, battery: w(battery), soc: Some(ratio(self.soc)) };
        live.observe(now, minutes(1), &m).unwrap();
    }
}
