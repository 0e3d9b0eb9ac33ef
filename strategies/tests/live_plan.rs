//! The live engine on a simulated day under a time-of-use tariff: the plan charges before the
//! peak and `target` follows its slots; plans expire; `replan_due` fires when it should.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns: a failure should fail the test loudly

mod live_support;

use ems_strategies::live::{LiveEvent, PriceBasis, ReplanReason};
use live_support::{engine, local, minutes, ratio, tou, Site};

#[test]
fn a_simulated_day_charges_before_the_peak_and_follows_the_slots() {
    let mut live = engine(tou());
    let mut site = Site::new(0.5);
    let start = local("2026-06-03T00:00");
    let mut reasons = Vec::new();
    let (mut night_charge_wh, mut peak_discharge_wh, mut peak_import_wh) = (0.0, 0.0, 0.0);
    for k in 0..24 * 60 {
        let now = start + minutes(k);
        if let Some(why) = live.replan_due(now, Some(ratio(site.soc))) {
            let plan = live.replan(now, ratio(site.soc)).unwrap();
            assert_eq!(plan.basis, PriceBasis::Tariff);
            assert_eq!(plan.slots.first().unwrap().start, now - minutes(k % 15));
            reasons.push(why);
        }
        let (battery, grid) = live.target(now).expect("a plan is in force all day");
        // The target is the plan slot containing now (a self-consumption slot with grid 0: the
        // controller's self-consumption loop runs it).
        let plan = live.plan().unwrap();
        assert!(plan.acted_on, "a 0.45 peak over a cheap night beats self-consumption");
        let slot = plan.slots.iter().find(|s| s.start <= now && now < s.end).unwrap();
        let grid_target = if slot.self_consumption { ems_core::Watts::ZERO } else { slot.grid };
        assert_eq!((battery, grid), (slot.battery, grid_target));
        let b = battery.get();
        let minute_h = 1.0 / 60.0;
        let local_hour = k / 60;
        if local_hour < 6 && b < 0.0 {
            night_charge_wh += f64::from(-b) * minute_h;
        }
        if (17..21).contains(&local_hour) {
            peak_discharge_wh += f64::from(b.max(0.0)) * minute_h;
            peak_import_wh += f64::from((site.load - b).max(0.0)) * minute_h;
        }
        site.minute(&mut live, now, b);
    }
    assert_eq!(reasons.first(), Some(&ReplanReason::Start));
    assert!(reasons[1..].iter().all(|r| *r == ReplanReason::Interval), "{reasons:?}");
    assert_eq!(reasons.len(), 96, "one plan per quarter-hour");
    // From 50 % at midnight the cheap night fills the battery (to 90 %: ~4 kWh AC) …
    assert!(night_charge_wh > 3500.0, "charged {night_charge_wh} Wh at night");
    // … and the 0.45 peak runs from the battery, not the grid: 4 h of the cautious load
    // forecast (500 W × the default load factor 1.05).
    assert!((peak_discharge_wh - 2100.0).abs() < 1.0, "discharged {peak_discharge_wh} Wh in the peak");
    assert!(peak_import_wh < 1.0, "imported {peak_import_wh} Wh in the peak");
    // The day's plan is in the view against what happened.
    let view = live.plan_view(start + minutes(24 * 60 - 1));
    let today: Vec<_> = view.slots.iter().filter(|s| s.planned.start >= start).collect();
    assert!(today.len() >= 96, "{} slots", today.len());
    let done = today.iter().filter(|s| s.actual.is_some()).count();
    assert_eq!(done, 96, "every slot of the day (the last one ended with the last minute) has its actuals");
    for s in today.iter().filter(|s| s.actual.is_some()) {
        let a = s.actual.unwrap();
        assert!((a.battery.get() - s.planned.battery.get()).abs() < 1.0, "{s:?}");
        assert!((a.load.get() - 500.0).abs() < 0.01);
    }
}

#[test]
fn a_plan_expires_after_two_intervals_without_a_replan() {
    let mut live = engine(tou());
    let t0 = local("2026-06-03T10:00");
    live.replan(t0, ratio(0.5)).unwrap();
    assert_eq!(live.plan_view(t0).status, "ok");
    let last = t0 + minutes(30) - jiff::SignedDuration::from_secs(1);
    assert!(live.target(last).is_some());
    assert!(live.take_events(last).iter().all(|e| !matches!(e, LiveEvent::PlanExpired { .. })));
    let expired = t0 + minutes(30);
    assert_eq!(live.target(expired), None);
    assert_eq!(live.plan_view(expired).status, "expired");
    assert_eq!(live.plan_view(expired).expires_at, Some(expired));
    let events = live.take_events(expired);
    assert_eq!(events, vec![LiveEvent::PlanExpired { at: expired, created_at: t0 }]);
    assert!(live.take_events(expired + minutes(5)).is_empty(), "reported once");
    // A new plan is in force again.
    live.replan(expired, ratio(0.5)).unwrap();
    assert!(live.target(expired).is_some());
}

#[test]
fn replan_due_fires_on_interval_soc_off_plan_and_requests() {
    let mut live = engine(tou());
    let t0 = local("2026-06-03T10:00");
    assert_eq!(live.replan_due(t0, Some(ratio(0.5))), Some(ReplanReason::Start));
    let plan = live.replan(t0, ratio(0.5)).unwrap().clone();
    let t = t0 + minutes(7);
    // On the plan: the SOC interpolated within the first slot.
    let s0 = &plan.slots[0];
    let on_plan = 0.5 + (s0.soc.get() - 0.5) * 7.0 / 15.0;
    assert_eq!(live.replan_due(t, Some(ratio(on_plan))), None);
    assert_eq!(live.replan_due(t, None), None);
    assert_eq!(live.replan_due(t, Some(ratio(on_plan + 0.09))), None);
    assert_eq!(live.replan_due(t, Some(ratio(on_plan + 0.11))), Some(ReplanReason::SocOffPlan));
    assert_eq!(live.replan_due(t, Some(ratio(on_plan - 0.11))), Some(ReplanReason::SocOffPlan));
    assert_eq!(live.replan_due(t0 + minutes(15), Some(ratio(on_plan))), Some(ReplanReason::Interval));
    live.request_replan(ReplanReason::ModeChange);
    live.request_replan(ReplanReason::RuleChange);
    assert_eq!(live.replan_due(t, Some(ratio(on_plan))), Some(ReplanReason::ModeChange));
    let plan = live.replan(t, ratio(on_plan)).unwrap();
    assert_eq!(plan.reason, ReplanReason::ModeChange);
    assert_eq!(live.replan_due(t, Some(ratio(on_plan))), None, "the request was served");
    assert_eq!(ReplanReason::SocOffPlan.as_str(), "soc_off_plan");
    assert_eq!(ReplanReason::PriceFallback.to_string(), "price_fallback");
}

#[test]
fn the_horizon_and_the_first_slot() {
    let mut live = engine(tou());
    let now = local("2026-06-03T10:05");
    let plan = live.replan(now, ratio(0.5)).unwrap();
    // 36 h from 10:05: the slot 10:00–10:15 (planned from 10:05) … the one ending at 22:05 +1 d.
    assert_eq!(plan.slots.len(), 145);
    assert_eq!(plan.slots[0].start, local("2026-06-03T10:00"));
    assert_eq!(plan.slots.last().unwrap().end, local("2026-06-04T22:05"));
    assert_eq!(plan.slots[0].import_price.per_kwh(), 0.30);
    let peak = plan.slots.iter().find(|s| s.start == local("2026-06-03T17:00")).unwrap();
    assert_eq!(peak.import_price.per_kwh(), 0.45);
    assert_eq!(peak.spot, None);
}

#[test]
fn the_views_and_events_serialize_for_the_api() {
    let mut live = engine(tou());
    let now = local("2026-06-03T10:00");
    live.replan(now, ratio(0.5)).unwrap();
    let view = serde_json::to_value(live.plan_view(now)).unwrap();
    assert_eq!(view["status"], "ok");
    assert_eq!(view["reason"], "start");
    assert_eq!(view["basis"]["kind"], "tariff");
    let slot = &view["slots"][0];
    for key in [
        "start",
        "end",
        "import_price",
        "export_price",
        "spot",
        "pv_w",
        "load_w",
        "battery_w",
        "grid_w",
        "soc",
    ] {
        assert!(slot.get(key).is_some(), "{key} in {slot}");
    }
    assert_eq!(slot["import_price"], 0.30);
    assert_eq!(slot["actual"], serde_json::Value::Null);
    let events = serde_json::to_value(live.take_events(now)).unwrap();
    assert_eq!(events[0]["event"], "basis_changed");
    assert_eq!(events[1]["event"], "replanned");
    assert_eq!(events[1]["reason"], "start");
    let prices = serde_json::to_value(live.prices_view(now)).unwrap();
    assert_eq!(prices[0]["import_source"], "time-of-use");
    let savings = serde_json::to_value(live.savings(ems_strategies::live::Period::Day, now)).unwrap();
    assert_eq!(savings["period"], "day");
    assert_eq!(savings["ems"]["cost"], 0.0);
}

#[test]
fn a_plan_that_does_not_beat_self_consumption_by_the_margin_is_not_acted_on() {
    // A flat 0.30 import price: nothing a plan does beats plain self-consumption, so the plan
    // is made (and shown) but not acted on, and the configured mode runs.
    let flat = live_support::flat(0.30);
    let mut live = engine(flat.clone());
    let t0 = local("2026-06-03T10:00");
    let plan = live.replan(t0, ratio(0.5)).unwrap();
    assert!(!plan.acted_on, "{plan:?}");
    assert_eq!(live.target(t0), None);
    // A negative margin acts on every plan.
    let mut cfg = live.config().clone();
    cfg.plan_margin = ems_strategies::Money::new(-1.0);
    let mut live = ems_strategies::live::LiveEconomics::new(cfg, None).unwrap();
    assert!(live.replan(t0, ratio(0.5)).unwrap().acted_on);
    assert!(live.target(t0).is_some());
}
