//! Day-ahead forecast errors on real data: PV (TMY3 Greensboro, 5 kWp), household load (BDEW
//! H25, 4000 kWh/a, 2018) and day-ahead prices (SMARD 2018, German zone), each with simple
//! baselines.
//!
//! ```text
//! cargo run -p ems-strategies --example forecast_error --release
//! ```
//!
//! nMAE is normalised by capacity for PV and by the mean absolute actual value for load and
//! prices. Caveat: the BDEW profile is a smooth average of many households, so the load error
//! here is far lower than for one real household. Price data: Bundesnetzagentur | SMARD.de
//! (CC BY 4.0).

#[path = "../tests/forecast_support/mod.rs"]
mod forecast_support;

use std::process::ExitCode;

fn main() -> ExitCode {
    let started = std::time::Instant::now();
    let mut ok = true;
    for (what, lines) in [
        ("PV", forecast_support::pv_lines()),
        ("load", forecast_support::load_lines()),
        ("prices", forecast_support::price_lines()),
    ] {
        match lines {
            Ok(lines) => {
                for l in lines {
                    println!("{l}");
                }
            }
            Err(e) => {
                eprintln!("{what}: {e}");
                ok = false;
            }
        }
    }
    println!("(computed in {:.2} s)", started.elapsed().as_secs_f64());
    println!(
        "Notes: PV nMAE is normalised by the 5 kWp capacity, load and prices by the mean absolute actual.\n\
         The BDEW H25 profile is a smooth average over many households, so the load error above is far\n\
         lower than for one real household. PV actuals: NREL TMY3 Greensboro NC through the same array\n\
         model. Price data: Bundesnetzagentur | SMARD.de (CC BY 4.0)."
    );
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
