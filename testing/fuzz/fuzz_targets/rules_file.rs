//! Fuzz target: an operator rule set, as a TOML file (`RuleSet::from_toml`) and as the JSON body
//! of `PUT /api/v1/rules` (`RuleSet::from_json_str`), returns Ok or Err for any text and never
//! panics; a set that parses round-trips through its JSON form and evaluates at any instant.
#![no_main]

use ems_strategies::rules::{RuleContext, RuleEngine, RuleSet};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for set in [RuleSet::from_toml(text), RuleSet::from_json_str(text)].into_iter().flatten() {
        let again = RuleSet::from_json(&set.to_json());
        assert!(again.is_ok(), "a valid set's JSON form is refused: {again:?}");
        if let Ok(mut engine) = RuleEngine::new(set) {
            let seconds = i64::from(data.len() as u32) * 7919 % 4_000_000_000;
            if let Ok(at) = jiff::Timestamp::from_second(seconds) {
                let _ = engine.evaluate(&RuleContext::at(at));
            }
        }
    }
});
