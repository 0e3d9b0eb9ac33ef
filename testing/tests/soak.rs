//! The random-fault soak (issue #3): every fault kind — physical, device-level and gateway
//! crash/restart — injected at random over the run; zero hard-limit, invariant and lease
//! violations, with the battery cycled daily (`Duty::DAILY_CYCLE`). 7 simulated days by default;
//! `EMS_SOAK_DAYS=30` runs the phase-1 criterion.

use ems_testing::faults::{random_fault, FaultPlan, RANDOM_KINDS};
use ems_testing::{run, Duty, RunOptions};

fn soak_days() -> u32 {
    std::env::var("EMS_SOAK_DAYS").ok().and_then(|v| v.parse().ok()).unwrap_or(7)
}

#[test]
fn random_fault_soak_has_zero_violations() {
    let days = soak_days();
    let seed = std::env::var("EMS_SOAK_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(11);
    let mut opts = RunOptions::days(days, seed);
    opts.faults = FaultPlan::Random;
    // Work the whole battery every day (charge from surplus, discharge at night), so the soak
    // crosses the SOC window and the low-side limits, not only a full battery at rest.
    opts.duty = Duty::DAILY_CYCLE;
    let report = run(&opts).unwrap();
    assert_eq!(report.hard_limit_violations, 0, "{report}");
    assert_eq!(report.invariant_violations, 0, "{report}");
    assert_eq!(report.lease_violations, 0, "{report}");
    assert_eq!(report.violation_count, 0, "{report}");
    if days >= 4 {
        for k in 0..RANDOM_KINDS {
            let kind = random_fault(k, 0).0.kind_name();
            assert!(report.faults_by_kind.contains_key(kind), "{kind} never injected: {report}");
        }
    }
    assert!(report.recoveries > 0, "{report}");
    assert!(report.gateway_restarts > 0 || days < 4, "{report}");
    // About 9 kWh charged and 9 kWh discharged per day on the 10 kWh pack.
    assert!(report.energy_throughput_kwh > 10.0 * f64::from(days), "{report}");
    assert!(report.extremes.soc_pct.min < 10.0 && report.extremes.soc_pct.max > 90.0, "{report}");
    eprintln!("{report}");
    let json: serde_json::Value = serde_json::from_str(&report.to_json().unwrap()).unwrap();
    for key in [
        "hard_limit_violations",
        "invariant_violations",
        "lease_violations",
        "recoveries",
        "energy_throughput_kwh",
        "time_in_state_s",
        "trips",
        "faults_by_kind",
        "device_events",
        "device_trips",
    ] {
        assert!(json.get(key).is_some(), "missing {key}");
    }
}

/// Parse `EMS_SOAK_SEEDS`: comma-separated seeds and inclusive ranges, e.g. `1-20,111`.
fn parse_seeds(spec: &str) -> Result<Vec<u64>, String> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("EMS_SOAK_SEEDS: '{part}' is not a seed or a range a-b");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u64, u64) =
                    (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?);
                if a > b {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().map_err(|_| bad())?),
        }
    }
    if out.is_empty() {
        return Err("EMS_SOAK_SEEDS: no seed given".to_owned());
    }
    Ok(out)
}

#[test]
fn seeds_parse_as_lists_and_ranges() {
    assert_eq!(parse_seeds("1-3,111"), Ok(vec![1, 2, 3, 111]));
    assert_eq!(parse_seeds(" 7 "), Ok(vec![7]));
    assert!(parse_seeds("3-1").is_err());
    assert!(parse_seeds("x").is_err());
    assert!(parse_seeds("").is_err());
}

/// The year soak (issue #10): random faults on many seeds, each with zero hard-limit,
/// invariant and lease violations and at most 2 % of the time in ERROR. By default a bounded
/// version for CI (seeds 111 and 1, 4 days each); `EMS_SOAK_DAYS=365 EMS_SOAK_SEEDS=1-20,111`
/// is the nightly criterion (`scripts/soak` runs it in release mode), `EMS_SOAK_JOBS` runs that
/// many seeds at once. Prints one line per seed: violations, % of the time in ERROR, final
/// state.
#[test]
fn year_soak_many_seeds() {
    let days = std::env::var("EMS_SOAK_DAYS").ok().and_then(|v| v.parse().ok()).unwrap_or(4u32);
    let seeds = parse_seeds(&std::env::var("EMS_SOAK_SEEDS").unwrap_or_else(|_| "111,1".to_owned())).unwrap();
    let jobs = std::env::var("EMS_SOAK_JOBS").ok().and_then(|v| v.parse().ok()).unwrap_or(1usize).max(1);
    let run_seed = |seed: u64| {
        let mut opts = RunOptions::days(days, seed);
        opts.faults = FaultPlan::Random;
        opts.duty = Duty::DAILY_CYCLE;
        run(&opts).unwrap()
    };
    let mut reports = Vec::new();
    for chunk in seeds.chunks(jobs) {
        let done: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = chunk.iter().map(|&seed| s.spawn(move || run_seed(seed))).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for r in done {
            eprintln!(
                "seed {:>5}  days {days:>3}  hard {:>3}  invariant {:>3}  lease {:>3}  ERROR {:>6.3} %  final {:<8} wall {:>6.1} s",
                r.seed,
                r.hard_limit_violations,
                r.invariant_violations,
                r.lease_violations,
                100.0 * r.share_in(ems_core::State::Error),
                r.final_state,
                r.wall_seconds
            );
            reports.push(r);
        }
    }
    let mut failed = Vec::new();
    for r in &reports {
        let error_pct = 100.0 * r.share_in(ems_core::State::Error);
        if r.violation_count > 0 || error_pct > 2.0 {
            failed.push(format!(
                "seed {}: {} violations ({} hard, {} invariant, {} lease), {error_pct:.3} % in ERROR, first: {:?}",
                r.seed,
                r.violation_count,
                r.hard_limit_violations,
                r.invariant_violations,
                r.lease_violations,
                r.violations.first()
            ));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
