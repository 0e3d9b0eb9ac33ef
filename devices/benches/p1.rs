//! P1: parsing one recorded DSMR 5 telegram (CRC check and every object), and framing the same
//! telegram from a byte stream in 64-byte chunks (what `P1Meter` does per read).
#![allow(clippy::unwrap_used, missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ems_devices::p1::{parse_telegram, Framer};

fn bench(c: &mut Criterion) {
    let t =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/p1/dsmr50_dsmr_parser.txt")).unwrap();
    assert!(parse_telegram(&t).is_ok());
    c.bench_function("p1_parse_dsmr50_telegram", |b| b.iter(|| parse_telegram(black_box(&t)).unwrap()));
    c.bench_function("p1_frame_and_parse_64_byte_chunks", |b| {
        b.iter(|| {
            let mut f = Framer::new();
            let mut n = 0;
            for chunk in black_box(&t).chunks(64) {
                f.feed(chunk, |r| n += usize::from(r.is_ok()));
            }
            assert_eq!(n, 1);
        });
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
