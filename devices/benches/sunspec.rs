//! SunSpec: decoding a full model block (103, 802, 701) and a full discovery / scan over an
//! in-memory register image.
#![allow(clippy::unwrap_used, missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ems_devices::modbus::sunspec::{decode_model, discover, scan, SunSpecImage};
use ems_devices::modbus::RegisterAddress;

fn block(id: u16, set: &[(&str, f64)]) -> Vec<u16> {
    let mut img = SunSpecImage::new(RegisterAddress(0));
    img.add_model(id).unwrap();
    for (n, v) in set {
        img.set(id, n, *v).unwrap();
    }
    img.registers()[2..].to_vec()
}

fn bench(c: &mut Criterion) {
    let b103 = block(
        103,
        &[
            ("A_SF", -2.0),
            ("A", 12.5),
            ("V_SF", -1.0),
            ("PhVphA", 230.1),
            ("W_SF", 0.0),
            ("W", 1500.0),
            ("St", 4.0),
        ],
    );
    let b802 = block(802, &[("SoC_SF", 0.0), ("SoC", 50.0), ("V_SF", -1.0), ("V", 512.0), ("State", 3.0)]);
    let b701 = block(701, &[("W_SF", 0.0), ("W", 1500.0), ("InvSt", 3.0)]);
    c.bench_function("sunspec_decode_103", |b| b.iter(|| decode_model(103, black_box(&b103))));
    c.bench_function("sunspec_decode_802", |b| b.iter(|| decode_model(802, black_box(&b802))));
    c.bench_function("sunspec_decode_701", |b| b.iter(|| decode_model(701, black_box(&b701))));

    let mut img = SunSpecImage::new(RegisterAddress(40_000));
    for id in [1, 701, 702, 704, 713, 802] {
        img.add_model(id).unwrap();
    }
    let regs = img.finish();
    c.bench_function("sunspec_discover_6_models", |b| {
        b.iter(|| {
            let mut r = regs.clone();
            pollster::block_on(discover(&mut r)).unwrap()
        });
    });
    c.bench_function("sunspec_scan_6_models", |b| {
        b.iter(|| {
            let mut r = regs.clone();
            pollster::block_on(scan(&mut r)).unwrap()
        });
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
