//! Forecasts in the live engine: an Open-Meteo irradiance forecast replaces the clear-sky ×
//! ratio PV forecast where it has values; the forecast errors are tracked.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns: a failure should fail the test loudly

mod live_support;

use ems_strategies::live::parse_open_meteo;
use live_support::{array, engine_with, local, minutes, tou};

/// The recorded shape of an Open-Meteo answer (`hourly=shortwave_radiation`,
/// `timezone=Europe/Berlin`): a sunny morning, then overcast.
const SAMPLE: &str = r#"{"latitude":52.52,"longitude":13.419998,"generationtime_ms":0.0381,
 "utc_offset_seconds":7200,"timezone":"Europe/Berlin","timezone_abbreviation":"GMT+2","elevation":38.0,
 "hourly_units":{"time":"iso8601","shortwave_radiation":"W/m²"},
 "hourly":{"time":["2026-06-03T10:00","2026-06-03T11:00","2026-06-03T12:00","2026-06-03T13:00"],
 "shortwave_radiation":[650.0,720.0,90.0,null]}}"#;

#[test]
fn an_irradiance_forecast_drives_the_pv_forecast_where_it_has_values() {
    let mut live = engine_with(tou(), array());
    let now = local("2026-06-03T09:00");
    let before = live.forecast_view(now);
    assert!(before.slots.iter().all(|s| s.pv_source == "measured_ratio"));
    let points = parse_open_meteo(SAMPLE).unwrap();
    assert_eq!(points.len(), 3);
    assert_eq!(points[0].0, local("2026-06-03T09:00"), "the 10:00 value is the mean of 09:00–10:00");
    live.set_irradiance(points);
    let view = live.forecast_view(now);
    let at = |t: &str| view.slots.iter().find(|s| s.start == local(t)).unwrap();
    // 09:00–12:00 from the forecast (the null of 12:00–13:00 ends it), elsewhere clear sky × ratio.
    for t in ["2026-06-03T09:00", "2026-06-03T10:45", "2026-06-03T11:45"] {
        assert_eq!(at(t).pv_source, "irradiance", "{t}");
    }
    assert_eq!(at("2026-06-03T12:00").pv_source, "measured_ratio");
    assert_eq!(at("2026-06-03T13:00").pv_source, "measured_ratio");
    // Overcast 11:00–12:00 gives far less than the sunny hour before, and less than clear sky.
    let (sunny, dull) = (at("2026-06-03T10:00"), at("2026-06-03T11:00"));
    assert!(dull.pv.get() < 0.3 * sunny.pv.get(), "{sunny:?} {dull:?}");
    assert!(dull.pv.get() < dull.pv_clear_sky.get());
    // The plan uses the same forecast.
    let plan = live.replan(now, live_support::ratio(0.5)).unwrap();
    let slot = plan.slots.iter().find(|s| s.start == local("2026-06-03T11:00")).unwrap();
    assert_eq!(slot.pv, dull.pv);
}

#[test]
fn forecast_errors_compare_the_planned_forecast_with_what_happened() {
    let mut live = engine_with(tou(), array());
    let t0 = local("2026-06-03T00:00");
    assert!(live.forecast_view(t0).errors.is_empty());
    // Plan once, then a day of 700 W load (the default profile says 500 W) and no PV at all.
    live.replan(t0, live_support::ratio(0.5)).unwrap();
    for k in 0..24 * 60 {
        let m = ems_strategies::live::Measured {
            grid: live_support::w(700.0),
            pv: ems_core::Watts::ZERO,
            battery: ems_core::Watts::ZERO,
            soc: None,
        };
        live.observe(t0 + minutes(k), minutes(1), &m).unwrap();
    }
    let errors = live.forecast_view(t0 + minutes(24 * 60)).errors;
    let load = errors.iter().find(|e| e.quantity == "load").unwrap();
    assert_eq!(load.n, 96);
    assert!((load.bias.get() + 200.0).abs() < 0.01, "500 W forecast against 700 W: {load:?}");
    assert!((load.nmae.unwrap().get() - 200.0 / 700.0).abs() < 1e-6);
    let pv = errors.iter().find(|e| e.quantity == "pv").unwrap();
    assert!(pv.bias.get() > 0.0 && pv.nmae.unwrap().get() > 0.0, "the sun was forecast: {pv:?}");
}
