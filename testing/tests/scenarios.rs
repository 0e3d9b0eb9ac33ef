//! Runs every scenario file in `testing/scenarios/` and asserts its expectations (the safe
//! reaction: state, trip reason, zero command, contactor, inverter reverted) and zero hard-limit,
//! invariant and lease violations.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions: a failure should abort loudly
use ems_testing::{run_scenario, Scenario};
use std::path::PathBuf;

fn scenario_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_scenario_file_proves_its_safe_reaction() {
    let files = scenario_files();
    assert!(files.len() >= 20, "only {} scenario files", files.len());
    let mut failed = Vec::new();
    for file in &files {
        let s = Scenario::from_file(file).unwrap();
        assert!(!s.expects.is_empty(), "{}: no expectations", file.display());
        let r = run_scenario(&s).unwrap();
        if !r.passed {
            failed.push(format!("{}:\n  {}", file.display(), r.failures().join("\n  ")));
        }
    }
    assert!(failed.is_empty(), "{} scenario(s) failed:\n{}", failed.len(), failed.join("\n"));
}

#[test]
fn every_hazard_with_a_scenario_is_listed_in_the_readme() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    for file in scenario_files() {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        assert!(readme.contains(&name), "{name} missing from scenarios/README.md");
    }
}
