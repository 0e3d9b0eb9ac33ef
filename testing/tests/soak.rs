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
