//! Day-ahead forecast errors on the real data (the same computation as
//! `examples/forecast_error.rs`), with sanity bounds.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns: a failure should fail the test loudly

#[path = "forecast_support/mod.rs"]
mod forecast_support;

use forecast_support::{load_lines, price_lines, pv_lines, Line};

fn nmae(lines: &[Line], i: usize) -> f64 {
    lines[i].metrics.nmae.unwrap()
}

#[test]
fn pv_day_ahead() {
    let lines = pv_lines().unwrap();
    for l in &lines {
        println!("{l}");
    }
    assert_eq!(lines[0].metrics.n, 364 * 24);
    for i in 0..lines.len() {
        assert!(nmae(&lines, i) < 1.0, "{}", lines[i]);
    }
    // By capacity over daylight hours: a clear-sky forecast of a humid site is good to ~10-20 %.
    assert!(nmae(&lines, 1) < 0.25, "{}", lines[1]);
    // The measurement-corrected forecast beats plain clear-sky, a fixed ratio and persistence,
    // and is nearly unbiased.
    for baseline in 2..=4 {
        assert!(nmae(&lines, 1) < nmae(&lines, baseline), "{}\n{}", lines[1], lines[baseline]);
    }
    assert!(lines[1].metrics.bias.abs() < 0.01 * 5000.0, "{}", lines[1]);
    // Plausible yield: 1300-1600 kWh/kWp for a south-facing 30° array in North Carolina.
    let kwh_per_kwp = lines[0].metrics.mean_actual * 8736.0 / 1000.0 / 5.0;
    assert!((1300.0..1600.0).contains(&kwh_per_kwp), "{kwh_per_kwp} kWh/kWp");
}

#[test]
fn load_day_ahead() {
    let lines = load_lines().unwrap();
    for l in &lines {
        println!("{l}");
    }
    assert_eq!(lines[0].metrics.n, 365 * 96, "23- and 25-hour days included");
    assert!(nmae(&lines, 0) < 1.0);
    // Mean of the BDEW year at 4000 kWh/a (the dynamised H25 sums to ~995 kWh per 1000).
    let mean_w = lines[0].metrics.mean_actual;
    assert!((440.0..470.0).contains(&mean_w), "mean load {mean_w} W");
    // Learned profiles beat the flat (even hindsight) mean and yesterday's load.
    assert!(nmae(&lines, 0) < nmae(&lines, 1), "{}\n{}", lines[0], lines[1]);
    assert!(nmae(&lines, 0) < nmae(&lines, 2), "{}\n{}", lines[0], lines[2]);
}

#[test]
fn price_day_ahead() {
    let lines = price_lines().unwrap();
    for l in &lines {
        println!("{l}");
    }
    assert_eq!(lines[0].metrics.n, 8760 - 24, "every hour from 2 January on");
    for i in 0..lines.len() {
        assert!(nmae(&lines, i) < 1.0, "{}", lines[i]);
    }
    // Yesterday's prices carry the daily shape: better than the flat mean.
    assert!(nmae(&lines, 0) < nmae(&lines, 2), "{}\n{}", lines[0], lines[2]);
}
