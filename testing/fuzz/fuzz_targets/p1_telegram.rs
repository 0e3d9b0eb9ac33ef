//! Fuzz target: the P1 telegram parser and the streaming framer
//! (`ems_devices::p1::{parse_telegram, Framer}`) must never panic on any bytes; a telegram they
//! accept has a matching CRC and a finite net power, and feeding the same bytes in two pieces
//! gives the same telegrams as in one.
#![no_main]

use ems_devices::p1::{crc::crc16_arc, parse_telegram, Framer};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(t) = parse_telegram(data) {
        let bang = data.iter().position(|&b| b == b'!').unwrap_or(0);
        assert_eq!(crc16_arc(&data[..=bang]), t.crc);
        if let Some(p) = t.net_power() {
            assert!(p.get().is_finite());
        }
    }
    let mut whole = Vec::new();
    Framer::new().feed(data, |r| whole.push(r));
    let mut split = Vec::new();
    let mut f = Framer::new();
    let mid = data.len() / 2;
    f.feed(&data[..mid], |r| split.push(r));
    f.feed(&data[mid..], |r| split.push(r));
    assert_eq!(whole, split);
});
