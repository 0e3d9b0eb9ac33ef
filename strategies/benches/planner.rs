//! Planner speed on real data (design.md §8: 96 × 15 min ≤ 5 ms, 672 × 15 min ≤ 50 ms).
//!
//! The week Mon 2018-04-30 .. Sun 2018-05-06 in 15-minute steps, site-local time Europe/Berlin
//! (CEST, UTC+2), built from files in the repository:
//!
//! * **Prices:** `strategies/tests/data/smard_week_2018-04-30.csv`, hourly German day-ahead
//!   prices (SMARD, Bundesnetzagentur | SMARD.de, CC BY 4.0); import = (spot/1000 + 0.20) × 1.19,
//!   export 0.08 per kWh. Each hour's price holds for its four quarter-hours. The week has 20
//!   negative-price hours (1 May).
//! * **PV:** GHI of the TMY3 file `devices/data/723170TYA.CSV` (Greensboro NC, NREL via pvlib)
//!   for the same calendar days, read as site-local clock hours (the solar timing is
//!   approximate), hourly means placed at mid-hour and interpolated linearly to quarter-hour
//!   midpoints; `PV_W = GHI / 1000 × 5000 W × 0.85` (5 kWp, 85 % performance ratio).
//! * **Load:** BDEW H25 standard load profile `devices/data/bdew_h25.csv` (month column, day type
//!   SA / FT (Sunday and the 1 May holiday) / WT), kWh per quarter-hour for 1e6 kWh/a scaled to
//!   4000 kWh/a with the BDEW dynamisation factor, `W = kWh × 4 × 1000`.
//!
//! The inputs go through `parse_csv` once (outside the timing); the default battery
//! (`Problem::default()`: 10 kWh, 5 kW, η 0.95/0.95, SOC 10–90 %, start and end 50 %) is planned.
//! The 96-step day is 1 May (negative prices, a holiday).

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use ems_strategies::optimizer::{parse_csv, plan, Problem, Step};
use ems_strategies::Price;

const STEPS: usize = 672;

fn read(rel: &str) -> Result<String, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))
}

fn num(s: &str, what: &str) -> Result<f64, String> {
    s.trim().parse().map_err(|_| format!("{what}: {s:?} is not a number"))
}

/// Hourly (timestamp, import, export) from the SMARD fixture.
fn prices() -> Result<Vec<(String, f64, f64)>, String> {
    let text = read("tests/data/smard_week_2018-04-30.csv")?;
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')).skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let [ts, _spot, imp, exp] = f[..] else {
            return Err(format!("price fixture: bad line {line:?}"));
        };
        out.push((ts.to_owned(), num(imp, "import")?, num(exp, "export")?));
    }
    if out.len() * 4 != STEPS {
        return Err(format!("price fixture: {} hours, expected {}", out.len(), STEPS / 4));
    }
    Ok(out)
}

/// Hourly GHI (W/m²) for the 7 days 04/30 .. 05/06, hour-ending 01:00 .. 24:00.
fn ghi() -> Result<Vec<f64>, String> {
    let text = read("../devices/data/723170TYA.CSV")?;
    let mut lines = text.lines().skip(1);
    let header: Vec<&str> = lines.next().ok_or("TMY3: no header")?.split(',').collect();
    let col = header.iter().position(|h| *h == "GHI (W/m^2)").ok_or("TMY3: no GHI column")?;
    let days = ["04/30", "05/01", "05/02", "05/03", "05/04", "05/05", "05/06"];
    let mut out = Vec::new();
    for day in days {
        for line in text.lines().filter(|l| l.starts_with(day)) {
            let f: Vec<&str> = line.split(',').collect();
            out.push(num(f.get(col).ok_or("TMY3: short row")?, "GHI")?);
        }
    }
    if out.len() != 7 * 24 {
        return Err(format!("TMY3: {} hours for the week", out.len()));
    }
    Ok(out)
}

/// Load in W per quarter-hour of the week.
fn load() -> Result<Vec<f64>, String> {
    let text = read("../devices/data/bdew_h25.csv")?;
    let rows: Vec<Vec<&str>> = text.lines().skip(2).map(|l| l.split(',').collect()).collect();
    if rows.len() != 96 {
        return Err(format!("BDEW: {} rows", rows.len()));
    }
    // (month 1..12, day type 0 = SA, 1 = FT, 2 = WT, day of year) for Mon 30 Apr .. Sun 6 May.
    let days = [(4, 2, 120), (5, 1, 121), (5, 2, 122), (5, 2, 123), (5, 2, 124), (5, 0, 125), (5, 1, 126)];
    let mut out = Vec::with_capacity(STEPS);
    for (month, kind, doy) in days {
        let col = 1 + (month - 1) * 3 + kind;
        let t = f64::from(doy);
        let dynamic = -3.92e-10 * t.powi(4) + 3.2e-7 * t.powi(3) - 7.02e-5 * t.powi(2) + 2.1e-3 * t + 1.24;
        for row in &rows {
            let kwh = num(row.get(col).ok_or("BDEW: short row")?, "BDEW")?;
            out.push(kwh * 4000.0 / 1e6 * dynamic * 4.0 * 1000.0);
        }
    }
    Ok(out)
}

/// The week as optimizer CSV text, parsed.
fn week() -> Result<Vec<Step>, String> {
    let prices = prices()?;
    let ghi = ghi()?;
    let load = load()?;
    let mut text = String::from("timestamp,pv_w,load_w,import_price,export_price\n");
    for k in 0..STEPS {
        let hour = k / 4;
        // Quarter-hour midpoint in hours since the week's start; hourly means sit at h + 0.5.
        let t = (k as f64 + 0.5) / 4.0 - 0.5;
        let i = t.floor().max(0.0);
        let frac = (t - i).clamp(0.0, 1.0);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // 0 ≤ i < 168
        let i = i as usize;
        let g0 = ghi[i.min(ghi.len() - 1)];
        let g1 = ghi[(i + 1).min(ghi.len() - 1)];
        let pv = (g0 + frac * (g1 - g0)) / 1000.0 * 5000.0 * 0.85;
        let (ts, imp, exp) = &prices[hour];
        let start: jiff::Timestamp = ts.parse().map_err(|e| format!("{ts}: {e}"))?;
        let at = start + jiff::SignedDuration::from_mins(15 * (k % 4) as i64);
        writeln!(text, "{at},{pv:.1},{:.1},{imp},{exp}", load[k]).map_err(|e| e.to_string())?;
    }
    parse_csv(&text).map_err(|e| e.to_string())
}

fn bench(c: &mut Criterion) {
    let steps = match week() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot build the benchmark data: {e}");
            std::process::exit(1);
        }
    };
    let problem = Problem::default();
    let day = &steps[96..192];
    for (name, s) in [("day", day), ("week", &steps[..])] {
        match plan(&problem, s) {
            Ok(p) => eprintln!(
                "{name}: {} steps, cost {:.4}, status {:?}, solve {:.3} ms",
                s.len(),
                p.total_cost.get(),
                p.status,
                p.solve_time_s * 1e3
            ),
            Err(e) => eprintln!("{name}: {e}"),
        }
    }
    c.bench_function("plan 96 x 15 min (1 May 2018)", |b| b.iter(|| plan(black_box(&problem), black_box(day))));
    c.bench_function("plan 672 x 15 min (week from 30 Apr 2018)", |b| {
        b.iter(|| plan(black_box(&problem), black_box(&steps)))
    });
    // Stress, not a target: the same week with prices that make the problem non-convex (import
    // lowered by 0.25 so that 1 May goes negative; export alternating 20 % above and below
    // import), so the general envelope path runs instead of the convex merge.
    let stress: Vec<Step> = steps
        .iter()
        .enumerate()
        .map(|(k, s)| {
            let imp = s.import_price.per_kwh() - 0.25;
            let exp = imp * if (k / 8) % 2 == 0 { 1.2 } else { 0.8 };
            Step { import_price: Price::new(imp), export_price: Price::new(exp), ..*s }
        })
        .collect();
    if let Ok(p) = plan(&problem, &stress) {
        eprintln!("stress: cost {:.4}, status {:?}, solve {:.3} ms", p.total_cost.get(), p.status, p.solve_time_s * 1e3);
    }
    c.bench_function("plan 672 x 15 min, non-convex prices (stress)", |b| {
        b.iter(|| plan(black_box(&problem), black_box(&stress)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
