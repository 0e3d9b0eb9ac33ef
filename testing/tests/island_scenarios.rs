//! Runs every island scenario in `testing/scenarios/island/` (the simulated island plant in
//! closed loop with `ems_grid::island::IslandSequencer`) and asserts its expectations and zero
//! out-of-phase closes, zero grid-forming onto a live grid and zero overload trips.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions: a failure should abort loudly
use ems_testing::island_scenario::{is_island_scenario, run_island_scenario, IslandScenario};
use std::path::PathBuf;

fn files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios").join("island");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_island_scenario_proves_its_reaction() {
    let files = files();
    assert!(files.len() >= 4, "only {} island scenario files", files.len());
    let mut failed = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        assert!(is_island_scenario(&text), "{}: no [island] table", file.display());
        let s = IslandScenario::from_file(file).unwrap();
        assert!(!s.expects.is_empty(), "{}: no expectations", file.display());
        let r = run_island_scenario(&s).unwrap();
        if !r.passed {
            failed.push(format!("{}:\n{}", file.display(), r.to_text()));
        }
    }
    assert!(failed.is_empty(), "{} island scenario(s) failed:\n{}", failed.len(), failed.join("\n"));
}

#[test]
fn every_island_scenario_is_listed_in_the_readme() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios").join("island");
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    for f in files() {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        assert!(readme.contains(&name), "{name} missing from scenarios/island/README.md");
    }
}

#[test]
fn errors_name_file_field_and_value() {
    let base = "name = \"x\"\nduration = \"1m\"\n[island]\nstart = \"connected\"\nrated_w = 5000\nbattery_wh = 10000\ninitial_soc = 50\n";
    let e = IslandScenario::parse_named(
        &format!("{base}[[fault]]\nat = \"1x\"\nkind = \"grid_loss\"\n"),
        "i.toml",
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("i.toml") && msg.contains("fault[0].at") && msg.contains("'1x'"), "{msg}");
    let e =
        IslandScenario::parse_named(&format!("{base}[[fault]]\nat = \"1s\"\nkind = \"meteor\"\n"), "i.toml")
            .unwrap_err();
    assert!(e.to_string().contains("'meteor' is not an island fault kind"), "{e}");
    let e = IslandScenario::parse_named(&format!("{base}[[expect]]\nloads_on = [\"sauna\"]\n"), "i.toml")
        .unwrap_err();
    assert!(e.to_string().contains("'sauna' is not a [[load]] name"), "{e}");
    let e = IslandScenario::parse_named(&base.replace("connected", "floating"), "i.toml").unwrap_err();
    assert!(e.to_string().contains("island.start"), "{e}");
    assert!(!is_island_scenario("name = \"site\"\n[site]\nstart_hour = 10\n"));
}

#[test]
fn a_scenario_that_expects_the_wrong_thing_fails() {
    // The runner is not vacuous: a reconnection expected before the 60 s delay is a failure.
    let text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios/island/i2_grid_return.toml"),
    )
    .unwrap();
    let wrong = format!("{text}\n[[expect]]\nafter = \"5m1s\"\nby = \"5m30s\"\nstate = \"CONNECTED\"\n");
    let r = run_island_scenario(&IslandScenario::parse_named(&wrong, "wrong.toml").unwrap()).unwrap();
    assert!(!r.passed);
    assert_eq!(r.failures.len(), 1, "{:?}", r.failures);
}
