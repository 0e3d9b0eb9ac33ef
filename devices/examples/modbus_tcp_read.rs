//! Read holding registers from a Modbus TCP device through the supervised `TcpClient`.
//!
//! ```text
//! cargo run -p ems-devices --example modbus_tcp_read -- modbus-tcp://192.168.1.20:502 1 40000 4
//! cargo run -p ems-devices --example modbus_tcp_read            # loopback demo + timing
//! ```
//!
//! Arguments: endpoint URL, unit id (default 1), 0-based address (default 40000), count
//! (default 2; more than 125 are split by the read planner). Without a URL the example starts
//! the in-memory test server on loopback and times full reads of three blocks (2 × 125 + 60
//! registers).

use std::error::Error;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ems_devices::modbus::transport::server::serve_memory;
use ems_devices::modbus::transport::{
    execute, AnyClient, ClientOptions, ModbusEndpoint, ReadPlan, WantedRange,
};
use ems_devices::modbus::{MemoryRegisters, RegisterAddress, RegisterKind};

fn main() -> Result<(), Box<dyn Error>> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(run())
}

async fn run() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = ClientOptions { timeout: Duration::from_millis(1000), ..ClientOptions::default() };
    let Some(url) = args.first() else { return loopback_demo(options).await };
    let endpoint: ModbusEndpoint = url.parse()?;
    let unit: u8 = args.get(1).map_or(Ok(1), |s| s.parse())?;
    let address: u16 = args.get(2).map_or(Ok(40_000), |s| s.parse())?;
    let count: u16 = args.get(3).map_or(Ok(2), |s| s.parse())?;

    let mut client = AnyClient::new(&endpoint, unit, options);
    let plan =
        ReadPlan::new(vec![WantedRange::new((), RegisterKind::Holding, RegisterAddress(address), count)], 0)?;
    let result = execute(&plan, &mut client).await?;
    match result.ranges.first() {
        Some(((), Ok(values))) => {
            for (i, v) in values.iter().enumerate() {
                println!("{:>5}  0x{v:04X}  {v}", usize::from(address) + i);
            }
        }
        Some(((), Err(exception))) => println!("refused: {exception}"),
        None => {}
    }
    println!("{endpoint} unit {unit}: {result}; {:?}", client.stats());
    Ok(())
}

async fn loopback_demo(options: ClientOptions) -> Result<(), Box<dyn Error>> {
    let mut image = MemoryRegisters::default();
    image.put(0, &(0..400).collect::<Vec<u16>>());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(serve_memory(listener, Arc::new(Mutex::new(image))));

    let endpoint: ModbusEndpoint = format!("modbus-tcp://{addr}").parse()?;
    let mut client = AnyClient::new(&endpoint, 1, options);
    let plan = ReadPlan::new(
        vec![
            WantedRange::new("block A", RegisterKind::Holding, RegisterAddress(0), 125),
            WantedRange::new("block B", RegisterKind::Holding, RegisterAddress(125), 125),
            WantedRange::new("block C", RegisterKind::Holding, RegisterAddress(300), 60),
        ],
        0,
    )?;
    // Warm up: connect.
    execute(&plan, &mut client).await?;
    let cycles: u32 = 2000;
    let t0 = Instant::now();
    let mut round_trips = 0;
    for _ in 0..cycles {
        round_trips += execute(&plan, &mut client).await?.round_trips;
    }
    let per_cycle = t0.elapsed() / cycles;
    println!(
        "{endpoint}: {} requests/cycle ({round_trips} round trips in {cycles} cycles), {per_cycle:?} per cycle of 310 registers",
        plan.requests().len()
    );
    println!("{:?}", client.stats());
    server.abort();
    Ok(())
}
