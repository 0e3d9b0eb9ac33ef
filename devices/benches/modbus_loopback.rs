//! One full read cycle of three blocks (2 × 125 + 60 registers = 3 requests) through the
//! supervised `TcpClient` and the read planner to the in-memory test server on loopback, on a
//! current-thread runtime as in the gateway. Needs `[[bench]] name = "modbus_loopback"
//! harness = false` in `devices/Cargo.toml`.
#![allow(missing_docs)]
// `criterion_main!` generates an undocumented `pub fn main`
// A benchmark has nobody to report an error to: failing setup aborts the run.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use criterion::{criterion_group, criterion_main, Criterion};
use ems_devices::modbus::transport::server::serve_memory;
use ems_devices::modbus::transport::{execute, ClientOptions, ReadPlan, TcpClient, WantedRange};
use ems_devices::modbus::{MemoryRegisters, RegisterAddress, RegisterKind};

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut image = MemoryRegisters::default();
    image.put(0, &(0..400).collect::<Vec<u16>>());
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = rt.spawn(serve_memory(listener, Arc::new(Mutex::new(image))));
    let mut client = TcpClient::new(addr.ip().to_string(), addr.port(), 1, ClientOptions::default());
    let plan = ReadPlan::new(
        vec![
            WantedRange::new(0, RegisterKind::Holding, RegisterAddress(0), 125),
            WantedRange::new(1, RegisterKind::Holding, RegisterAddress(125), 125),
            WantedRange::new(2, RegisterKind::Holding, RegisterAddress(300), 60),
        ],
        0,
    )
    .unwrap();
    assert_eq!(plan.requests().len(), 3);
    c.bench_function("modbus_tcp_loopback_read_310_registers_3_requests", |b| {
        b.iter(|| rt.block_on(execute(&plan, &mut client)).unwrap());
    });
    server.abort();
}

criterion_group!(benches, bench);
criterion_main!(benches);
