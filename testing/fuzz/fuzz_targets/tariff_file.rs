//! Fuzz target: the tariff TOML (`ems_strategies::tariff::Tariff::from_toml`) returns Ok or Err
//! for any text and never panics. The path names a directory that does not exist, so a relative
//! spot-price file is refused rather than read.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let path = std::path::Path::new("/nonexistent-fuzz-dir/tariff.toml");
    let _ = ems_strategies::tariff::Tariff::from_toml(text, path);
});
