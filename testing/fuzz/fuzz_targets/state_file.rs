//! Fuzz target: the persisted state decoder (`ems_core::persist::PersistedState::decode`) returns
//! Ok or Err for any line and never panics; an accepted line encodes to a line that decodes to
//! the same state (the encoder's output is the canonical form).
#![no_main]

use ems_core::persist::PersistedState;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else { return };
    if let Ok(state) = PersistedState::decode(line) {
        let encoded = state.encode();
        let again = PersistedState::decode(&encoded);
        assert_eq!(again.as_ref(), Ok(&state), "round trip of {line:?} via {encoded:?}");
    }
});
