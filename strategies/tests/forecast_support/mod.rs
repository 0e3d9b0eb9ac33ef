//! Day-ahead forecast errors on real data, shared by `tests/forecast_error.rs` and
//! `examples/forecast_error.rs` (included there with `#[path]`).
//!
//! - PV: NREL TMY3 Greensboro NC (`devices/data/723170TYA.CSV`), a 5 kWp array tilted 30°
//!   facing south at 36.1 N, 79.95 W. "Actual" PV is the same array model driven by the file's
//!   measured/modelled hourly GHI, DNI and DHI (isotropic transposition at mid-hour, 14 %
//!   losses). The TMY3 rows are re-stamped to 2018 in local standard time (UTC−5).
//! - Load: BDEW H25 (`devices/data/bdew_h25.csv`) with the dynamisation factor, scaled to
//!   4000 kWh/a, as 15-min means for 2018 in Europe/Berlin with the nationwide holidays.
//! - Prices: SMARD day-ahead 2018, German zone (`strategies/data/smard_day_ahead_2018.csv`).
//!
//! Every forecast for day D is made with data up to the end of day D−1 only.

use ems_core::Watts;
use ems_strategies::forecast::{
    error_metrics, Irradiance, LoadForecaster, LoadProfile, Normalisation, PriceFallback, PriceForecaster,
    PvCorrection, PvForecaster, PvSystem,
};
use ems_strategies::tariff::{parse_smard, Calendar, PriceSeries};
use ems_strategies::{Price, WattsPerSquareMetre};
use jiff::civil::{date, Date};
use jiff::tz::{Offset, TimeZone};
use jiff::{SignedDuration, Timestamp, ToSpan};

/// TMY3 Greensboro (pvlib, BSD-3-Clause).
pub(crate) const TMY3_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../devices/data/723170TYA.CSV");
/// BDEW H25 (demandlib, MIT).
pub(crate) const BDEW_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../devices/data/bdew_h25.csv");
/// SMARD day-ahead 2018 (Bundesnetzagentur | SMARD.de, CC BY 4.0).
pub(crate) const SMARD_2018_PATH: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/data/smard_day_ahead_2018.csv");

/// PV array of the benchmark.
pub(crate) const PV_KWP: f32 = 5.0;
/// Annual household consumption of the benchmark, kWh.
pub(crate) const LOAD_KWH_PER_YEAR: f64 = 4000.0;
/// Smoothing factor of the load forecaster.
pub(crate) const LOAD_ALPHA: f64 = 0.2;

/// The nine nationwide German public holidays of 2018.
pub(crate) fn holidays_de_2018() -> Calendar {
    Calendar::new([
        date(2018, 1, 1),
        date(2018, 3, 30),
        date(2018, 4, 2),
        date(2018, 5, 1),
        date(2018, 5, 10),
        date(2018, 5, 21),
        date(2018, 10, 3),
        date(2018, 12, 25),
        date(2018, 12, 26),
    ])
}

/// One printed line: a forecast, its errors and the unit of MAE.
#[derive(Debug, Clone)]
pub(crate) struct Line {
    /// What was forecast, and how.
    pub name: String,
    /// The errors.
    pub metrics: Scores,
    /// Unit of MAE (and of the normaliser).
    pub unit: &'static str,
}

impl std::fmt::Display for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = &self.metrics;
        let norm = match m.capacity {
            None => "mean |actual|".to_owned(),
            Some(c) => format!("capacity {c:.0} {}", self.unit),
        };
        let nmae = m.nmae.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.3}"));
        write!(
            f,
            "{:<58} n={:>6}  MAE={:>8.2} {:<7} nMAE={:>6} (by {norm}; bias {:+.2})",
            self.name, m.n, m.mae, self.unit, nmae, m.bias
        )
    }
}

fn read(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))
}

/// The metrics of one line, in the line's display unit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scores {
    /// Number of pairs compared.
    pub n: usize,
    /// Mean absolute error.
    pub mae: f64,
    /// Mean error.
    pub bias: f64,
    /// Mean of the actual values.
    #[allow(dead_code)] // read by tests/forecast_error.rs, not by the example sharing this module
    pub mean_actual: f64,
    /// Normalised MAE.
    pub nmae: Option<f64>,
    /// The capacity MAE was normalised by, if not the mean of the actuals.
    pub capacity: Option<f64>,
}

fn w(v: &[f64]) -> Vec<Watts> {
    #[allow(clippy::cast_possible_truncation)] // test data in W, far inside f32
    v.iter().map(|&x| Watts::saturating(x as f32)).collect()
}

/// Scores of power series (W); `capacity` in W normalises, else the mean of the actuals.
fn metrics(f: &[f64], a: &[f64], capacity: Option<f64>) -> Result<Scores, String> {
    let norm = capacity.map_or(Normalisation::MeanAbsActual, |c| Normalisation::Capacity(w(&[c])[0]));
    let m = error_metrics(&w(f), &w(a), norm).map_err(|e| e.to_string())?;
    let g = |x: Watts| f64::from(x.get());
    Ok(Scores {
        n: m.n,
        mae: g(m.mae),
        bias: g(m.bias),
        mean_actual: g(m.mean_actual),
        nmae: m.nmae.map(|r| r.get()),
        capacity,
    })
}

/// Scores of price series in EUR/MWh.
fn price_metrics(f: &[f64], a: &[f64]) -> Result<Scores, String> {
    let p = |v: &[f64]| -> Vec<Price> { v.iter().map(|&x| Price::new(x / 1000.0)).collect() };
    let m = error_metrics(&p(f), &p(a), Normalisation::MeanAbsActual).map_err(|e| e.to_string())?;
    let g = |x: Price| x.per_kwh() * 1000.0;
    Ok(Scores {
        n: m.n,
        mae: g(m.mae),
        bias: g(m.bias),
        mean_actual: g(m.mean_actual),
        nmae: m.nmae.map(|r| r.get()),
        capacity: None,
    })
}

/// Hourly means of one TMY3 year: index `h` is the hour ending `h + 1` local standard time.
pub(crate) struct Tmy3 {
    /// (GHI, DNI, DHI) in W/m².
    pub hours: Vec<Irradiance>,
}

/// Read a TMY3 file: line 1 metadata, line 2 header, 8760 consecutive hourly rows.
pub(crate) fn read_tmy3(text: &str) -> Result<Tmy3, String> {
    let mut lines = text.lines().enumerate();
    lines.next().ok_or("TMY3: empty")?;
    let (_, header) = lines.next().ok_or("TMY3: no header")?;
    let cols: Vec<&str> = header.split(',').collect();
    let col = |name: &str| cols.iter().position(|c| *c == name).ok_or(format!("TMY3: no column {name}"));
    let (ghi_c, dni_c, dhi_c) = (col("GHI (W/m^2)")?, col("DNI (W/m^2)")?, col("DHI (W/m^2)")?);
    let mut hours = Vec::with_capacity(8760);
    let mut expected = date(2018, 1, 1).at(1, 0, 0, 0);
    for (i, line) in lines {
        let f: Vec<&str> = line.split(',').collect();
        let num = |c: usize| -> Result<f64, String> {
            f.get(c).and_then(|s| s.trim().parse::<f64>().ok()).ok_or(format!(
                "TMY3 line {} column {}: not a number",
                i + 1,
                c + 1
            ))
        };
        // Check the stamp (month/day and hour ending) against the running hour, ignoring the year.
        let stamp_ok = match (f.first(), f.get(1)) {
            (Some(d), Some(t)) => {
                let (exp_date, exp_hour) = if expected.hour() == 0 {
                    (expected.date().yesterday().map_err(|e| e.to_string())?, 24)
                } else {
                    (expected.date(), expected.hour())
                };
                d.starts_with(&format!("{:02}/{:02}/", exp_date.month(), exp_date.day()))
                    && *t == format!("{exp_hour:02}:00")
            }
            _ => false,
        };
        if !stamp_ok {
            return Err(format!("TMY3 line {}: expected the hour ending {expected}", i + 1));
        }
        let irr = |c| num(c).and_then(|v| WattsPerSquareMetre::try_new(v).map_err(|e| e.to_string()));
        hours.push(Irradiance { ghi: irr(ghi_c)?, dni: irr(dni_c)?, dhi: irr(dhi_c)? });
        expected = expected.checked_add(1.hour()).map_err(|e| e.to_string())?;
    }
    if hours.len() != 8760 {
        return Err(format!("TMY3: {} hourly rows, expected 8760", hours.len()));
    }
    Ok(Tmy3 { hours })
}

/// BDEW profile table: `[month 0..12][day type: 0 SA, 1 FT, 2 WT][quarter-hour 0..96]`, kWh per
/// quarter-hour for 1,000,000 kWh/a.
pub(crate) struct Bdew {
    /// The table.
    pub values: Vec<[Vec<f64>; 3]>,
}

/// Read a BDEW 2025 profile CSV (two header rows, 96 quarter-hour rows, 36 value columns).
pub(crate) fn read_bdew(text: &str) -> Result<Bdew, String> {
    let mut lines = text.lines();
    lines.next().ok_or("BDEW: empty")?;
    let kinds: Vec<&str> = lines.next().ok_or("BDEW: no day-type row")?.split(',').skip(1).collect();
    if kinds.len() != 36 || kinds.chunks(3).any(|c| c != ["SA", "FT", "WT"]) {
        return Err(format!("BDEW: unexpected day-type header {kinds:?}"));
    }
    let mut values: Vec<[Vec<f64>; 3]> = (0..12).map(|_| [Vec::new(), Vec::new(), Vec::new()]).collect();
    for (q, line) in lines.enumerate() {
        let fields: Vec<&str> = line.split(',').collect();
        for (c, v) in fields.iter().skip(1).enumerate() {
            let v: f64 =
                v.trim().parse().map_err(|_| format!("BDEW line {} column {}: {v:?}", q + 3, c + 2))?;
            let month = values.get_mut(c / 3).ok_or("BDEW: too many columns")?;
            month.get_mut(c % 3).ok_or("BDEW: column")?.push(v);
        }
    }
    if values.iter().any(|m| m.iter().any(|d| d.len() != 96)) {
        return Err("BDEW: expected 96 quarter-hours per column".to_owned());
    }
    Ok(Bdew { values })
}

/// BDEW dynamisation factor for day of year `t` (1-based).
pub(crate) fn dynamisation(t: f64) -> f64 {
    -3.92e-10 * t.powi(4) + 3.2e-7 * t.powi(3) - 7.02e-5 * t.powi(2) + 2.1e-3 * t + 1.24
}

/// Mean load (W) of the BDEW household in the quarter-hour starting at `at`.
fn bdew_power(b: &Bdew, tz: &TimeZone, cal: &Calendar, at: Timestamp) -> f64 {
    let dt = tz.to_datetime(at);
    let day = dt.date();
    let kind = if cal.is_holiday(day) || day.weekday() == jiff::civil::Weekday::Sunday {
        1
    } else if day.weekday() == jiff::civil::Weekday::Saturday {
        0
    } else {
        2
    };
    let q = usize::try_from(i32::from(dt.hour()) * 4 + i32::from(dt.minute()) / 15).unwrap_or(0);
    let month = usize::try_from(dt.month() - 1).unwrap_or(0);
    let kwh = b.values.get(month).and_then(|m| m[kind].get(q)).copied().unwrap_or(0.0);
    kwh * dynamisation(f64::from(day.day_of_year())) * LOAD_KWH_PER_YEAR / 1.0e6 * 4.0 * 1000.0
}

/// UTC instants of local midnights of every day of `year` in `tz`, plus the next 1 January.
fn midnights(tz: &TimeZone, year: i16) -> Result<Vec<(Date, Timestamp)>, String> {
    let mut out = Vec::new();
    let mut d = date(year, 1, 1);
    loop {
        let t = d.at(0, 0, 0, 0).to_zoned(tz.clone()).map_err(|e| e.to_string())?.timestamp();
        out.push((d, t));
        if d.year() != year {
            return Ok(out);
        }
        d = d.tomorrow().map_err(|e| e.to_string())?;
    }
}

/// PV day-ahead errors: corrected clear-sky forecast and baselines.
pub(crate) fn pv_lines() -> Result<Vec<Line>, String> {
    pv_lines_with(PvCorrection::default())
}

/// [`pv_lines`] with given correction settings.
pub(crate) fn pv_lines_with(cfg: PvCorrection) -> Result<Vec<Line>, String> {
    let tmy = read_tmy3(&read(TMY3_PATH)?)?;
    let system =
        PvSystem::new(36.1, -79.95, 30.0, 180.0, Watts::from_kw(PV_KWP)).map_err(|e| e.to_string())?;
    let mut fc = PvForecaster::new(system, cfg).map_err(|e| e.to_string())?;
    let lst = Offset::constant(-5);
    let year_start = date(2018, 1, 1)
        .at(0, 0, 0, 0)
        .to_zoned(TimeZone::fixed(lst))
        .map_err(|e| e.to_string())?
        .timestamp();
    let hour = SignedDuration::from_hours(1);
    let start_of = |h: usize| -> Result<Timestamp, String> {
        let h = i64::try_from(h).map_err(|e| e.to_string())?;
        year_start.checked_add(SignedDuration::from_hours(h)).map_err(|e| e.to_string())
    };
    let mut actual = Vec::with_capacity(8760);
    for (h, irr) in tmy.hours.iter().enumerate() {
        let mid = start_of(h)?.checked_add(SignedDuration::from_mins(30)).map_err(|e| e.to_string())?;
        actual.push(f64::from(system.power(mid, *irr).get()));
    }
    let (mut f_corr, mut f_clear, mut f_fixed, mut f_persist, mut a_all) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut daylight = Vec::new();
    // Day 0 only feeds the forecaster (there is nothing to forecast it from).
    for h in 0..24 {
        // f64 to f32 has no `From`: measured PV powers in W, far inside f32.
        #[allow(clippy::cast_possible_truncation)]
        fc.observe(start_of(h)?, hour, Watts::saturating(actual.get(h).copied().unwrap_or(0.0) as f32));
    }
    for day in 1..365 {
        let first = day * 24;
        let t0 = start_of(first)?;
        let forecast = fc.forecast(t0, hour, 24);
        for k in 0..24 {
            let h = first + k;
            let t = start_of(h)?;
            let clear = f64::from(system.clear_sky_mean(t, hour).get());
            let a = actual.get(h).copied().unwrap_or(0.0);
            f_corr.push(forecast.get(k).map_or(0.0, |w| f64::from(w.get())));
            f_clear.push(clear);
            f_fixed.push(clear * PvCorrection::default().initial_ratio.get());
            f_persist.push(actual.get(h - 24).copied().unwrap_or(0.0));
            a_all.push(a);
            daylight.push(clear > 0.0 || a > 0.0);
        }
        // The day's measurements arrive after the forecast was made.
        for k in 0..24 {
            let h = first + k;
            // f64 to f32 has no `From`: measured PV powers in W, far inside f32.
            #[allow(clippy::cast_possible_truncation)]
            fc.observe(start_of(h)?, hour, Watts::saturating(actual.get(h).copied().unwrap_or(0.0) as f32));
        }
    }
    let cap = Some(f64::from(PV_KWP) * 1000.0);
    let pick =
        |v: &[f64]| -> Vec<f64> { v.iter().zip(&daylight).filter(|(_, d)| **d).map(|(x, _)| *x).collect() };
    Ok(vec![
        Line {
            name: "PV day-ahead: clear-sky x measured ratio (all hours)".into(),
            metrics: metrics(&f_corr, &a_all, cap)?,
            unit: "W",
        },
        Line {
            name: "PV day-ahead: clear-sky x measured ratio (daylight hours)".into(),
            metrics: metrics(&pick(&f_corr), &pick(&a_all), cap)?,
            unit: "W",
        },
        Line {
            name: "  baseline: clear-sky, no correction (daylight hours)".into(),
            metrics: metrics(&pick(&f_clear), &pick(&a_all), cap)?,
            unit: "W",
        },
        Line {
            name: "  baseline: clear-sky x fixed 0.75 (daylight hours)".into(),
            metrics: metrics(&pick(&f_fixed), &pick(&a_all), cap)?,
            unit: "W",
        },
        Line {
            name: "  baseline: persistence, yesterday's PV (daylight hours)".into(),
            metrics: metrics(&pick(&f_persist), &pick(&a_all), cap)?,
            unit: "W",
        },
    ])
}

/// Load day-ahead errors: learned day-type profiles and two baselines.
pub(crate) fn load_lines() -> Result<Vec<Line>, String> {
    let bdew = read_bdew(&read(BDEW_PATH)?)?;
    let tz = TimeZone::get("Europe/Berlin").map_err(|e| e.to_string())?;
    let cal = holidays_de_2018();
    // f64 to f32 has no `From`: a household's mean load in W.
    #[allow(clippy::cast_possible_truncation)]
    let mean_w = (LOAD_KWH_PER_YEAR * 1000.0 / 8760.0) as f32;
    let default = LoadProfile::flat(96, Watts::saturating(mean_w)).map_err(|e| e.to_string())?;
    let mut fc =
        LoadForecaster::new(default, LOAD_ALPHA, tz.clone(), cal.clone()).map_err(|e| e.to_string())?;
    let quarter = SignedDuration::from_mins(15);
    let days = midnights(&tz, 2018)?;
    let (mut f_learn, mut f_persist, mut actual) = (Vec::new(), Vec::new(), Vec::new());
    let mut yesterday: Vec<f64> = Vec::new();
    for pair in days.windows(2) {
        let [(_, t0), (_, t1)] = pair else { continue };
        let n = usize::try_from(t1.duration_since(*t0).as_secs() / 900).map_err(|e| e.to_string())?;
        let forecast = fc.forecast(*t0, quarter, n);
        let mut today = Vec::with_capacity(n);
        let mut t = *t0;
        for k in 0..n {
            let a = bdew_power(&bdew, &tz, &cal, t);
            actual.push(a);
            f_learn.push(forecast.get(k).map_or(0.0, |w| f64::from(w.get())));
            // Persistence by local time of day (yesterday's value at the same wall-clock slot).
            let slot = usize::try_from(
                i32::from(tz.to_datetime(t).hour()) * 4 + i32::from(tz.to_datetime(t).minute()) / 15,
            )
            .unwrap_or(0);
            f_persist.push(yesterday.get(slot).copied().unwrap_or(f64::from(mean_w)));
            today.push((slot, a));
            t = t.checked_add(quarter).map_err(|e| e.to_string())?;
        }
        for (k, (_, a)) in today.iter().enumerate() {
            let ti = t0
                .checked_add(quarter.checked_mul(i32::try_from(k).unwrap_or(0)).unwrap_or(quarter))
                .map_err(|e| e.to_string())?;
            // f64 to f32 has no `From`: a measured load in W.
            #[allow(clippy::cast_possible_truncation)]
            fc.observe(ti, Watts::saturating(*a as f32));
        }
        yesterday = vec![f64::from(mean_w); 96];
        for (slot, a) in today {
            if let Some(v) = yesterday.get_mut(slot) {
                *v = a;
            }
        }
    }
    let count = f64::from(u32::try_from(actual.len().max(1)).map_err(|e| e.to_string())?);
    let flat_mean = actual.iter().sum::<f64>() / count;
    let flat = vec![flat_mean; actual.len()];
    let norm = None;
    Ok(vec![
        Line {
            name: format!("load day-ahead: day-type profiles, alpha {LOAD_ALPHA} (15 min)"),
            metrics: metrics(&f_learn, &actual, norm)?,
            unit: "W",
        },
        Line {
            name: "  baseline: flat mean of the year (hindsight)".into(),
            metrics: metrics(&flat, &actual, norm)?,
            unit: "W",
        },
        Line {
            name: "  baseline: persistence, yesterday same time".into(),
            metrics: metrics(&f_persist, &actual, norm)?,
            unit: "W",
        },
    ])
}

/// Price errors predicting day D+1 from prices up to the end of day D.
pub(crate) fn price_lines() -> Result<Vec<Line>, String> {
    let series = parse_smard(&read(SMARD_2018_PATH)?).map_err(|e| e.to_string())?;
    let tz = TimeZone::get("Europe/Berlin").map_err(|e| e.to_string())?;
    let days = midnights(&tz, 2018)?;
    let mut out = Vec::new();
    let mut actual_all = Vec::new();
    let mut flat = Vec::new();
    for (method, label) in [
        (PriceFallback::SameTimeLastKnownDay, "same hour of the last known day"),
        (PriceFallback::SevenDayMean, "7-day mean of the same hour"),
    ] {
        let fc = PriceForecaster::new(tz.clone(), method, Price::new(0.0));
        let (mut f, mut a) = (Vec::new(), Vec::new());
        flat.clear();
        // Day D+1 runs from days[i] to days[i+1]; prices are known up to days[i].
        for pair in days.windows(2).skip(1) {
            let [(_, t0), (_, t1)] = pair else { continue };
            let Some(known) = series.truncated(*t0) else { continue };
            let n = usize::try_from(t1.duration_since(*t0).as_secs() / 3600).map_err(|e| e.to_string())?;
            let forecast = fc.forecast(&known, *t0, SignedDuration::from_hours(1), n);
            let mean_known = known_mean(&known);
            let mut t = *t0;
            for p in forecast {
                if let Some(actual) = series.get(t) {
                    f.push(p.per_kwh() * 1000.0);
                    a.push(actual.per_kwh() * 1000.0);
                    flat.push(mean_known);
                }
                t = t.checked_add(SignedDuration::from_hours(1)).map_err(|e| e.to_string())?;
            }
        }
        out.push(Line {
            name: format!("price D+1 from D: {label}"),
            metrics: price_metrics(&f, &a)?,
            unit: "EUR/MWh",
        });
        actual_all = a;
    }
    out.push(Line {
        name: "  baseline: flat mean of all known prices".into(),
        metrics: price_metrics(&flat, &actual_all)?,
        unit: "EUR/MWh",
    });
    Ok(out)
}

fn known_mean(s: &PriceSeries) -> f64 {
    s.mean().map_or(0.0, |p| p.per_kwh() * 1000.0)
}
