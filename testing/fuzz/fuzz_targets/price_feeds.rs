//! Fuzz target: what a price server or a price file sends — the aWATTar JSON, the ENTSO-E A44
//! XML and the `timestamp,price` CSV — returns Ok or Err for any bytes and never panics; what is
//! accepted passes the feed's own point validation.
#![no_main]

use ems_strategies::prices::{parse_awattar, parse_entsoe, parse_price_csv, validate_points};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for parsed in [parse_awattar(text), parse_entsoe(text), parse_price_csv(text)] {
        if let Ok(points) = parsed {
            if !points.is_empty() {
                let _ = validate_points(&points);
            }
        }
    }
});
