//! Fuzz target: the scenario TOML (`ems_testing::Scenario::parse_named`) returns Ok or Err for
//! any text and never panics; an accepted scenario also turns into run options or a typed error.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(scenario) = ems_testing::Scenario::parse_named(text, "fuzz.toml") {
        let _ = ems_testing::harness::scenario_options(&scenario);
    }
});
