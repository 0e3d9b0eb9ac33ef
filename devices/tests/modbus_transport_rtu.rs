//! `RtuClient` over a pseudo-terminal pair (`tokio_serial::SerialStream::pair`, pure Rust, no
//! `socat`): a `tokio-modbus` RTU server on the master side, the client opening the slave side by
//! its path, as it would open `/dev/ttyUSB0`.
// Helpers outside `#[test]` functions unwrap too: a failed setup is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(unix)]

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ems_devices::modbus::transport::server::MemoryService;
use ems_devices::modbus::transport::{AnyClient, ClientOptions, ModbusEndpoint, RtuClient, SerialSettings};
use ems_devices::modbus::{
    LinkError, MemoryRegisters, ModbusException, RegisterAddress, RegisterClient, RegisterKind,
};
use tokio_serial::{SerialPort, SerialStream};

fn bounded<F: Future<Output = ()>>(body: F) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), body).await.expect("test hung") });
}

fn options() -> ClientOptions {
    ClientOptions {
        timeout: Duration::from_millis(300),
        connect_timeout: Duration::from_millis(300),
        ..ClientOptions::default()
    }
}

/// Starts an RTU server on a new pty pair; returns the slave path and a plain handle on the
/// slave side, which must stay open (closing the last slave fd makes the master side read EIO).
/// The plain `File` holds no `flock`, so the client can open the port exclusively, as it does a
/// real serial device; the `SerialStream` of the pair holds one and is dropped.
fn rtu_server(regs: Arc<Mutex<MemoryRegisters>>, delay: Duration) -> (String, std::fs::File) {
    let (master, slave) = SerialStream::pair().unwrap();
    let path = slave.name().unwrap();
    let keep_open = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
    drop(slave);
    let server = tokio_modbus::server::rtu::Server::new(master);
    tokio::spawn(server.serve_forever(MemoryService::new(regs).with_delay(delay)));
    (path, keep_open)
}

fn image() -> Arc<Mutex<MemoryRegisters>> {
    let mut m = MemoryRegisters::default();
    m.put(40_000, &[0x5375, 0x6e53, 1, 66]);
    m.input.insert(3, 42);
    m.allow_write(40_002, 2);
    Arc::new(Mutex::new(m))
}

#[test]
fn rtu_reads_writes_and_exceptions_over_a_pty() {
    bounded(async {
        let regs = image();
        let (path, _slave) = rtu_server(regs.clone(), Duration::ZERO);
        let mut c = RtuClient::new(SerialSettings::new(path, 115_200), 7, options());
        assert_eq!(
            c.read(RegisterKind::Holding, RegisterAddress(40_000), 4).await,
            Ok(Ok(vec![0x5375, 0x6e53, 1, 66]))
        );
        assert_eq!(c.read(RegisterKind::Input, RegisterAddress(3), 1).await, Ok(Ok(vec![42])));
        assert_eq!(c.write(RegisterAddress(40_002), &[9, 10]).await, Ok(Ok(())));
        assert_eq!(regs.lock().unwrap().holding.get(&40_003), Some(&10));
        assert_eq!(
            c.read(RegisterKind::Holding, RegisterAddress(40_004), 1).await,
            Ok(Err(ModbusException::IllegalDataAddress))
        );
        assert_eq!(
            c.write(RegisterAddress(40_000), &[1]).await,
            Ok(Err(ModbusException::IllegalDataAddress))
        );
        assert!(c.is_connected(), "exceptions keep the port open");
        let s = c.stats();
        assert_eq!((s.requests, s.exceptions, s.connects, s.failures), (5, 2, 1, 0));
    });
}

#[test]
fn rtu_endpoint_url_selects_the_rtu_client_and_a_silent_device_times_out() {
    bounded(async {
        let (path, _slave) = rtu_server(image(), Duration::from_millis(1000));
        let endpoint: ModbusEndpoint = format!("modbus-rtu://{path}?baud=9600&parity=N").parse().unwrap();
        let mut c =
            AnyClient::new(&endpoint, 1, ClientOptions { timeout: Duration::from_millis(100), ..options() });
        assert!(matches!(c, AnyClient::Rtu(_)));
        assert_eq!(c.read(RegisterKind::Input, RegisterAddress(3), 1).await, Err(LinkError::Timeout(100)));
        assert!(!c.is_connected());
    });
}

#[test]
fn a_missing_serial_device_is_a_disconnected_link() {
    bounded(async {
        let mut c = RtuClient::new(SerialSettings::new("/dev/does-not-exist-ems", 9600), 1, options());
        let e = c.read(RegisterKind::Holding, RegisterAddress(0), 1).await.unwrap_err();
        assert!(matches!(&e, LinkError::Disconnected(m) if m.contains("/dev/does-not-exist-ems")), "{e}");
    });
}
