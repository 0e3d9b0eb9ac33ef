//! The price basis: a dynamic tariff's horizon is cut to the known spot prices, no spot means
//! no plan, a time-of-use tariff plans with its own prices, and every change is an event.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns: a failure should fail the test loudly

mod live_support;

use ems_strategies::live::{LiveEvent, PriceBasis, ReplanReason, SpotStatus};
use ems_strategies::tariff::PriceSource;
use live_support::{dynamic, engine, local, minutes, ratio, series, tou};

fn bases(events: &[LiveEvent]) -> Vec<(Option<PriceBasis>, PriceBasis)> {
    events
        .iter()
        .filter_map(|e| match e {
            LiveEvent::BasisChanged { from, to, .. } => Some((*from, *to)),
            _ => None,
        })
        .collect()
}

#[test]
fn spot_for_three_hours_cuts_the_horizon_and_its_loss_stops_planning() {
    let mut live = engine(dynamic());
    let now = local("2026-06-03T10:00");
    // Nothing known: no plan.
    assert_eq!(live.price_basis(now), PriceBasis::SelfConsumption);
    let plan = live.replan(now, ratio(0.5)).unwrap();
    assert!(plan.slots.is_empty());
    assert_eq!(live.target(now), None);
    assert_eq!(live.plan_view(now).status, "none");
    assert_eq!(live.import_price(now), None, "the fallback is not a market price");

    // Spot for the next 3 hours, cheap then dear.
    let prices: Vec<Option<f64>> = (0..12).map(|i| Some(if i < 4 { 0.0 } else { 0.30 })).collect();
    live.set_spot(Some(series(now, &prices)), SpotStatus::Live).unwrap();
    assert_eq!(live.replan_due(now, Some(ratio(0.5))), Some(ReplanReason::NewPrices));
    // From an empty battery: the load of the dear hours is cheaper bought now and stored.
    let plan = live.replan(now, ratio(0.1)).unwrap();
    assert_eq!(plan.basis, PriceBasis::Spot { live: true });
    assert_eq!(plan.reason, ReplanReason::NewPrices);
    assert_eq!(plan.slots.len(), 12, "the horizon ends with the known prices");
    assert_eq!(plan.slots.last().unwrap().end, now + minutes(180));
    assert_eq!(plan.slots[0].spot.map(|p| p.per_kwh()), Some(0.0));
    assert!((plan.slots[0].import_price.per_kwh() - 0.119).abs() < 1e-12, "(0 + 0.10) × 1.19");
    let b: Vec<f32> = plan.slots.iter().map(|s| s.battery.get()).collect();
    assert!(
        b[..4].iter().all(|b| *b <= 0.0) && b[..4].iter().any(|b| *b < 0.0),
        "charges while it is cheap: {b:?}"
    );
    assert!(plan.slots[4..].iter().all(|s| s.battery.get() > 0.0), "covers the dear load");
    assert!(live.target(now).is_some());
    assert!((live.import_price(now).unwrap().per_kwh() - 0.119).abs() < 1e-12);
    let prices_view = live.prices_view(now);
    assert_eq!(prices_view[0].import_source, PriceSource::Spot);
    assert_eq!(prices_view[12].import_source, PriceSource::Fallback);
    assert_eq!(prices_view[12].spot, None);

    // The same prices, but the source fails: last good.
    live.set_spot(Some(series(now, &prices)), SpotStatus::LastGood).unwrap();
    let t = now + minutes(5);
    assert_eq!(live.replan_due(t, None), Some(ReplanReason::PriceFallback));
    let plan = live.replan(t, ratio(0.2)).unwrap();
    assert_eq!(plan.basis, PriceBasis::Spot { live: false });
    assert_eq!(plan.basis.as_str(), "last_good");

    // Less than an hour of known prices left: no plan, the configured mode runs.
    let late = now + minutes(125);
    assert_eq!(live.price_basis(late), PriceBasis::SelfConsumption);
    assert_eq!(live.replan_due(late, Some(ratio(0.5))), Some(ReplanReason::PriceFallback));
    let plan = live.replan(late, ratio(0.5)).unwrap();
    assert_eq!(plan.basis, PriceBasis::SelfConsumption);
    assert_eq!(live.target(late), None);

    // The feed has nothing at all.
    live.set_spot(None, SpotStatus::Live).unwrap();
    assert_eq!(live.price_basis(now), PriceBasis::SelfConsumption);

    let events = live.take_events(late);
    assert_eq!(
        bases(&events),
        vec![
            (None, PriceBasis::SelfConsumption),
            (Some(PriceBasis::SelfConsumption), PriceBasis::Spot { live: true }),
            (Some(PriceBasis::Spot { live: true }), PriceBasis::Spot { live: false }),
            (Some(PriceBasis::Spot { live: false }), PriceBasis::SelfConsumption),
        ]
    );
    let replans = events.iter().filter(|e| matches!(e, LiveEvent::Replanned { .. })).count();
    assert_eq!(replans, 4);
    assert_eq!(
        events[0].to_string(),
        "price basis self_consumption",
        "events read as the operator's language"
    );
}

#[test]
fn a_gap_in_the_spot_prices_cuts_the_horizon_there() {
    let mut live = engine(dynamic());
    let now = local("2026-06-03T10:00");
    let mut prices = vec![Some(0.1); 16];
    prices[6] = None;
    live.set_spot(Some(series(now, &prices)), SpotStatus::Live).unwrap();
    let plan = live.replan(now, ratio(0.5)).unwrap();
    assert_eq!(plan.slots.len(), 6);
    assert_eq!(plan.slots.last().unwrap().end, now + minutes(90));
    // Within the first hour of a gap (only 4 slots = 1 h known from 10:30 on): still a plan.
    assert_eq!(live.price_basis(now + minutes(30)), PriceBasis::Spot { live: true });
    assert_eq!(live.price_basis(now + minutes(31)), PriceBasis::SelfConsumption);
}

#[test]
fn a_time_of_use_tariff_plans_with_its_own_prices() {
    let mut live = engine(tou());
    let now = local("2026-06-03T10:00");
    let plan = live.replan(now, ratio(0.5)).unwrap();
    assert_eq!(plan.basis, PriceBasis::Tariff);
    assert_eq!(plan.slots.len(), 144, "36 h");
    // Spot prices do not matter to a tariff that is not spot-indexed.
    live.set_spot(Some(series(now, &[Some(0.5); 8])), SpotStatus::Live).unwrap();
    assert_eq!(live.replan_due(now + minutes(1), None), None);
    assert_eq!(live.price_basis(now), PriceBasis::Tariff);
    assert_eq!(live.import_price(now).map(|p| p.per_kwh()), Some(0.30));
    assert_eq!(bases(&live.take_events(now)), vec![(None, PriceBasis::Tariff)]);
}

#[test]
fn a_spot_series_off_the_quarter_hour_grid_is_refused() {
    let mut live = engine(dynamic());
    let odd = series(local("2026-06-03T10:05"), &[Some(0.1); 4]);
    let e = live.set_spot(Some(odd), SpotStatus::Live).unwrap_err();
    assert!(e.to_string().contains("spot"), "{e}");
    assert_eq!(live.price_basis(local("2026-06-03T10:10")), PriceBasis::SelfConsumption);
}
