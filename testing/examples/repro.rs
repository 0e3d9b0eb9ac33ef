//! Scratch: reproduce a random-fault year for one seed and print the fault timeline near the
//! first violation.
use ems_testing::faults::{random_timeline, FaultPlan};
use ems_testing::{run, Duty, RunOptions};

fn main() {
    let mut args = std::env::args().skip(1);
    let seed: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(111);
    let days: u32 = args.next().and_then(|s| s.parse().ok()).unwrap_or(365);
    let mut opts = RunOptions::days(days, seed);
    opts.faults = FaultPlan::Random;
    opts.duty = Duty::DAILY_CYCLE;
    let report = run(&opts).unwrap();
    println!("{report}");
    for v in report.violations.iter().take(5) {
        println!("{v:?}");
        let t = v.at_ms;
        for f in random_timeline(opts.duration, seed) {
            if f.at.get() + 3 * 86_400_000 > t && f.at.get() < t + 3_600_000 {
                println!("  fault at {:.3} d (+{:?}): {:?}", f.at.get() as f64 / 86_400_000.0, f.for_, f.fault);
            }
        }
    }
}
