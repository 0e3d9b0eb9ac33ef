//! The ledger: a hand-computed day, a demand-charge month, daylight-saving days, savings.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns: a failure should fail the test loudly

use ems_core::Watts;
use ems_strategies::accounting::{Ledger, LedgerError, Savings};
use ems_strategies::tariff::{
    Calendar, DaySchedule, DemandBasis, DemandCharge, ExportPricing, ImportPricing, Tariff, TimeOfDay,
    TouSchedule, TouSlot,
};
use ems_strategies::{Money, Price};
use jiff::civil::{date, DateTime};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;

fn berlin() -> TimeZone {
    TimeZone::get("Europe/Berlin").unwrap()
}

/// Instant of a Berlin local time.
fn local(dt: DateTime) -> Timestamp {
    dt.to_zoned(berlin()).unwrap().timestamp()
}

fn tou() -> Tariff {
    let peak = TouSlot {
        from: TimeOfDay::new(17, 0).unwrap(),
        to: TimeOfDay::new(21, 0).unwrap(),
        price: Price::new(0.40),
        peak: true,
    };
    let schedule = TouSchedule::new(
        DaySchedule::new(Price::new(0.25), vec![peak]).unwrap(),
        DaySchedule::flat(Price::new(0.25)),
        None,
    );
    Tariff::new(berlin(), ImportPricing::TimeOfUse(schedule), ExportPricing::Fixed(Price::new(0.08)))
        .with_calendar(Calendar::new([date(2018, 2, 14)]))
}

/// Record `power` from local `from` for `minutes`, in samples of `step_s` seconds.
fn run(ledger: &mut Ledger, from: DateTime, minutes: i64, power_w: f32, step_s: i64) {
    let mut t = local(from);
    let end = t.checked_add(SignedDuration::from_mins(minutes)).unwrap();
    while t < end {
        ledger.record(t, Watts::saturating(power_w), f64::from(i32::try_from(step_s).unwrap())).unwrap();
        t = t.checked_add(SignedDuration::from_secs(step_s)).unwrap();
    }
}

fn near(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

fn kw(w: ems_core::Watts) -> f64 {
    f64::from(w.get()) / 1000.0
}

#[test]
fn hand_computed_day() {
    let t = tou();
    let day = date(2018, 1, 16); // a Tuesday
    let mut l = Ledger::new(t.clone(), t.time_zone().clone());
    // 3 kW export from 12:00 to 13:00 local in 10-s samples: 3 kWh at 0.08 = 0.24.
    run(&mut l, day.at(12, 0, 0, 0), 60, -3000.0, 10);
    // 2 kW import from 16:00 to 18:00 in 1-min samples: 2 kWh off-peak at 0.25 and 2 kWh in
    // the 17-21 peak at 0.40 = 1.30.
    run(&mut l, day.at(16, 0, 0, 0), 120, 2000.0, 60);
    let days = l.days();
    assert_eq!(days.len(), 1);
    let d = days[0];
    assert_eq!(d.date, day);
    assert!(near(d.import_kwh.get(), 4.0) && near(d.export_kwh.get(), 3.0), "{d}");
    assert!(near(d.energy_cost.get(), 1.30), "{d}");
    assert!(near(d.export_revenue.get(), 0.24), "{d}");
    assert!(near(d.net_energy_cost.get(), 1.06), "{d}");
    assert!(near(kw(d.peak_import), 2.0), "{d}");
    // One sample across midnight is split between the two days.
    let mut l3 = Ledger::new(t.clone(), t.time_zone().clone());
    l3.record(local(day.at(23, 0, 0, 0)), ems_core::watts!(1000.0), 7200.0).unwrap();
    let days = l3.days();
    assert_eq!(days.len(), 2);
    assert!(near(days[0].import_kwh.get(), 1.0) && near(days[1].import_kwh.get(), 1.0));
    assert_eq!(days[1].date, date(2018, 1, 17));
}

#[test]
fn demand_charge_month() {
    let base = tou().with_monthly_fee(Money::new(9.90));
    for (basis, expected_peak) in [(DemandBasis::PeakWindows, 10.5), (DemandBasis::MonthlyPeak, 12.0)] {
        let t = base.clone().with_demand_charge(DemandCharge::new(10.0, basis).unwrap()).unwrap();
        let mut l = Ledger::new(t.clone(), t.time_zone().clone());
        // February 2018: 1 kW all month in 5-minute samples, with spikes.
        let start = local(date(2018, 2, 1).at(0, 0, 0, 0));
        let end = local(date(2018, 3, 1).at(0, 0, 0, 0));
        let spikes: [(DateTime, i64, f32); 4] = [
            // Tue 6 Feb, 03:00-03:15: 12 kW (outside the peak window).
            (date(2018, 2, 6).at(3, 0, 0, 0), 15, 12_000.0),
            // Wed 7 Feb, 18:30-18:37:30: 20 kW, quarter average (20·7.5 + 1·7.5)/15 = 10.5 kW.
            (date(2018, 2, 7).at(18, 30, 0, 0), 0, 20_000.0),
            // Thu 8 Feb, 19:10-19:20: 18 kW across a quarter boundary: 6.67 kW in each quarter.
            (date(2018, 2, 8).at(19, 10, 0, 0), 10, 18_000.0),
            // Wed 14 Feb (a listed holiday), 18:00-18:15: 15 kW, no peak window that day.
            (date(2018, 2, 14).at(18, 0, 0, 0), 15, 15_000.0),
        ];
        let mut t_now = start;
        let spike_at = |t: Timestamp| {
            spikes.iter().find_map(|(from, mins, p)| {
                let s = local(*from);
                let len = if *mins == 0 {
                    SignedDuration::from_secs(450)
                } else {
                    SignedDuration::from_mins(*mins)
                };
                (t >= s && t < s.checked_add(len).unwrap()).then_some(*p)
            })
        };
        while t_now < end {
            let p = spike_at(t_now).unwrap_or(1000.0);
            l.record(t_now, Watts::saturating(p), 150.0).unwrap();
            t_now = t_now.checked_add(SignedDuration::from_secs(150)).unwrap();
        }
        let months = l.months();
        assert_eq!(months.len(), 1);
        let m = months[0];
        assert_eq!(m.month.to_string(), "2018-02");
        assert!(near(kw(m.peak_import), 15.0), "{m}");
        // With peak windows the holiday spike and the night spike do not count.
        let peak = if basis == DemandBasis::PeakWindows { expected_peak } else { 15.0 };
        assert!(near(kw(m.demand_peak), peak), "{basis:?}: {m}");
        assert!(near(m.demand_charge.get(), peak * 10.0), "{m}");
        assert_eq!(m.fixed_fee, Money::new(9.90));
        assert!(near(m.total_cost.get(), m.energy_cost.get() - m.export_revenue.get() + peak * 10.0 + 9.90));
        // Energy: 28 days × 24 kWh plus the spikes' extra energy.
        let extra = 11.0 * 0.25 + 19.0 * 0.125 + 17.0 * (10.0 / 60.0) + 14.0 * 0.25;
        assert!(near(m.import_kwh.get(), 28.0 * 24.0 + extra), "{}", m.import_kwh.get());
        let total = l.total();
        assert!(near(total.total_cost.get(), m.total_cost.get()));
        assert_eq!(total.months, 1);
    }
}

#[test]
fn dst_days_sum_to_23_and_25_hours() {
    let t = Tariff::fixed(berlin(), Price::new(0.30), Price::new(0.08));
    for (day, hours) in [(date(2018, 3, 25), 23.0), (date(2018, 10, 28), 25.0), (date(2018, 10, 29), 24.0)] {
        let mut l = Ledger::new(t.clone(), berlin());
        let start = local(day.at(0, 0, 0, 0));
        let end = local(day.tomorrow().unwrap().at(0, 0, 0, 0));
        let mut now = start;
        while now < end {
            l.record(now, ems_core::watts!(1000.0), 900.0).unwrap();
            now = now.checked_add(SignedDuration::from_secs(900)).unwrap();
        }
        let days = l.days();
        assert_eq!(days.len(), 1, "{day}");
        assert!(near(days[0].import_kwh.get(), hours), "{day}: {}", days[0]);
        assert!(near(days[0].energy_cost.get(), hours * 0.30));
        let m = l.months()[0];
        assert!(near(m.import_kwh.get(), hours));
    }
}

#[test]
fn dst_day_under_tou_keeps_the_local_peak() {
    // Monday after spring-forward: 1 kW all day, 4 h of it in the local 17-21 peak.
    let t = tou();
    let mut l = Ledger::new(t.clone(), berlin());
    run(&mut l, date(2018, 3, 26).at(0, 0, 0, 0), 24 * 60, 1000.0, 300);
    let d = l.days()[0];
    assert!(near(d.import_kwh.get(), 24.0));
    assert!(near(d.energy_cost.get(), 20.0 * 0.25 + 4.0 * 0.40), "{d}");
}

#[test]
fn refuses_bad_samples() {
    let t = Tariff::fixed(berlin(), Price::new(0.30), Price::new(0.08));
    let mut l = Ledger::new(t, berlin());
    let t0: Timestamp = "2018-05-01T00:00:00Z".parse().unwrap();
    assert!(matches!(l.record(t0, ems_core::watts!(1.0), f64::NAN), Err(LedgerError::BadDuration { .. })));
    assert!(matches!(l.record(t0, ems_core::watts!(1.0), -1.0), Err(LedgerError::BadDuration { .. })));
    l.record(t0, ems_core::watts!(1.0), 60.0).unwrap();
    let early: Timestamp = "2018-05-01T00:00:30Z".parse().unwrap();
    assert!(matches!(l.record(early, ems_core::watts!(1.0), 60.0), Err(LedgerError::OutOfOrder { .. })));
    // Back-to-back and after a gap is fine.
    l.record("2018-05-01T00:01:00Z".parse().unwrap(), ems_core::watts!(1.0), 60.0).unwrap();
    l.record("2018-05-01T03:00:00Z".parse().unwrap(), ems_core::watts!(1.0), 60.0).unwrap();
}

#[test]
fn savings_per_month_year_and_total() {
    let t = Tariff::fixed(berlin(), Price::new(0.30), Price::new(0.10)).with_monthly_fee(Money::new(5.0));
    let ledger = |import_w: f32, export_w: f32| {
        let mut l = Ledger::new(t.clone(), berlin());
        for (y, m) in [(2018, 12), (2019, 1)] {
            let at = local(date(y, m, 10).at(12, 0, 0, 0));
            l.record(at, Watts::saturating(import_w), 3600.0 * 10.0).unwrap();
            let at = local(date(y, m, 11).at(12, 0, 0, 0));
            l.record(at, Watts::saturating(-export_w), 3600.0 * 10.0).unwrap();
        }
        l
    };
    let ems = ledger(1000.0, 500.0); // 10 kWh · 0.30 − 5 kWh · 0.10 + 5 = 7.5 per month
    let none = ledger(2000.0, 0.0); // 20 kWh · 0.30 + 5 = 11 per month
    let own = ledger(1500.0, 1000.0); // 4.5 − 1 + 5 = 8.5 per month
    let s = Savings::compare(&ems, &none, &own);
    assert_eq!(s.months.len(), 2);
    assert_eq!(s.years.len(), 2);
    let m = &s.months[0];
    assert_eq!(m.period, "2018-12");
    assert!(near(m.ems.get(), 7.5) && near(m.no_battery.get(), 11.0) && near(m.self_consumption.get(), 8.5));
    assert!(near(m.vs_no_battery.amount.get(), 3.5));
    assert!(near(m.vs_no_battery.percent.unwrap(), 3.5 / 11.0 * 100.0));
    assert!(near(m.vs_self_consumption.percent.unwrap(), 1.0 / 8.5 * 100.0));
    assert_eq!(s.years[1].period, "2019");
    assert!(near(s.total.ems.get(), 15.0) && near(s.total.vs_no_battery.amount.get(), 7.0));
    // A baseline with a net revenue has no meaningful percentage.
    let rich = ledger(0.0, 200_000.0);
    let s2 = Savings::compare(&ems, &rich, &own);
    assert_eq!(s2.total.vs_no_battery.percent, None);
    // Summaries serialise (the gateway prints JSON; TOML is used here to stay within the
    // crate's dependencies) and print as text.
    let value = toml::Value::try_from(&s).unwrap();
    assert!(value.get("months").is_some());
    let day_value = toml::Value::try_from(ems.days()[0]).unwrap();
    assert_eq!(day_value.get("date").and_then(|d| d.as_str()), Some("2018-12-10"));
    let month_value = toml::Value::try_from(ems.months()[0]).unwrap();
    assert_eq!(month_value.get("month").and_then(|d| d.as_str()), Some("2018-12"));
    let text = s.to_string();
    assert!(text.contains("2018-12") && text.contains("total") && text.contains('%'), "{text}");
    assert_eq!(ems.total().first_day, Some(date(2018, 12, 10)));
    assert_eq!(ems.total().last_day, Some(date(2019, 1, 11)));
}

proptest! {
    /// Splitting a sample into pieces changes nothing (energy, money and peaks), whatever the
    /// split points: the ledger's own quarter-hour split is exact.
    #[test]
    fn splitting_a_sample_changes_nothing(
        start_s in 0_i64..86_400 * 3,
        cuts in proptest::collection::vec(1_u32..4000, 1..12),
        power in -8000.0_f32..8000.0,
    ) {
        let t = tou();
        let t0 = local(date(2018, 3, 24).at(0, 0, 0, 0)).checked_add(SignedDuration::from_secs(start_s)).unwrap();
        let total: u32 = cuts.iter().sum();
        let mut whole = Ledger::new(t.clone(), berlin());
        whole.record(t0, Watts::saturating(power), f64::from(total)).unwrap();
        let mut parts = Ledger::new(t.clone(), berlin());
        let mut now = t0;
        for c in &cuts {
            parts.record(now, Watts::saturating(power), f64::from(*c)).unwrap();
            now = now.checked_add(SignedDuration::from_secs(i64::from(*c))).unwrap();
        }
        let (a, b) = (whole.days(), parts.days());
        prop_assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            prop_assert!((x.import_kwh.get() - y.import_kwh.get()).abs() < 1e-9);
            prop_assert!((x.export_kwh.get() - y.export_kwh.get()).abs() < 1e-9);
            prop_assert!((x.energy_cost.get() - y.energy_cost.get()).abs() < 1e-9);
            prop_assert!((x.export_revenue.get() - y.export_revenue.get()).abs() < 1e-9);
            // Peaks are `Watts` (f32): equal to f32 rounding.
            prop_assert!((kw(x.peak_import) - kw(y.peak_import)).abs() < 1e-6 * (1.0 + kw(x.peak_import)));
        }
    }
}
