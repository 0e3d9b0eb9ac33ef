//! `TcpClient` against a real `tokio-modbus` TCP server on loopback: reads, writes, exceptions
//! and link faults (server gone, slow server, garbage answers, connection refused) with the
//! supervised reconnect. Every test is bounded by [`bounded`] and uses timeouts of ≤ 200 ms.
// Helpers outside `#[test]` functions unwrap too: a failed setup is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ems_devices::modbus::transport::server::{self, serve_memory, MemoryService};
use ems_devices::modbus::transport::{
    execute, AnyClient, ClientOptions, ModbusEndpoint, ReadPlan, TcpClient, WantedRange,
};
use ems_devices::modbus::{
    LinkError, MemoryRegisters, ModbusException, RegisterAddress, RegisterClient, RegisterKind,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

const MS: fn(u64) -> Duration = Duration::from_millis;

fn options() -> ClientOptions {
    ClientOptions {
        timeout: MS(200),
        connect_timeout: MS(200),
        backoff_initial: MS(50),
        backoff_max: MS(400),
    }
}

/// Runs a test body on a current-thread runtime (the gateway's) and fails it after 5 s.
fn bounded<F: Future<Output = ()>>(body: F) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), body).await.expect("test hung") });
}

fn image() -> Arc<Mutex<MemoryRegisters>> {
    let mut m = MemoryRegisters::default();
    m.put(0, &(0..400).collect::<Vec<u16>>());
    m.input.insert(7, 0x0707);
    m.allow_write(10, 3);
    Arc::new(Mutex::new(m))
}

async fn start(
    regs: Arc<Mutex<MemoryRegisters>>,
    addr: &str,
) -> (SocketAddr, JoinHandle<std::io::Result<()>>) {
    let listener = TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    (addr, tokio::spawn(serve_memory(listener, regs)))
}

async fn stop(server: JoinHandle<std::io::Result<()>>) {
    server.abort();
    let _ = server.await;
}

fn reconnect_wait(e: &LinkError) -> Option<u64> {
    let LinkError::Disconnected(msg) = e else { return None };
    let tail = msg.rsplit("reconnect in ").next()?;
    tail.strip_suffix(" ms")?.parse().ok()
}

#[test]
fn reads_and_writes_go_through_to_the_server() {
    bounded(async {
        let regs = image();
        let (addr, server) = start(regs.clone(), "127.0.0.1:0").await;
        let mut c = TcpClient::new(addr.ip().to_string(), addr.port(), 1, options());
        assert!(!c.is_connected(), "connects lazily");
        assert_eq!(c.read(RegisterKind::Holding, RegisterAddress(100), 3).await, Ok(Ok(vec![100, 101, 102])));
        assert_eq!(c.read(RegisterKind::Input, RegisterAddress(7), 1).await, Ok(Ok(vec![0x0707])));
        assert_eq!(c.write(RegisterAddress(10), &[7, 8, 9]).await, Ok(Ok(())));
        assert_eq!(c.read(RegisterKind::Holding, RegisterAddress(10), 3).await, Ok(Ok(vec![7, 8, 9])));
        assert_eq!(regs.lock().unwrap().holding.get(&11), Some(&8));
        let s = c.stats();
        assert_eq!((s.requests, s.connects, s.failures, s.exceptions), (4, 1, 0, 0));
        stop(server).await;
    });
}

#[test]
fn an_exception_is_the_inner_error_and_keeps_the_connection() {
    bounded(async {
        let (addr, server) = start(image(), "127.0.0.1:0").await;
        let mut c = TcpClient::new(addr.ip().to_string(), addr.port(), 1, options());
        assert_eq!(
            c.read(RegisterKind::Holding, RegisterAddress(399), 2).await,
            Ok(Err(ModbusException::IllegalDataAddress))
        );
        assert_eq!(c.write(RegisterAddress(0), &[1]).await, Ok(Err(ModbusException::IllegalDataAddress)));
        assert_eq!(
            c.read(RegisterKind::Input, RegisterAddress(8), 1).await,
            Ok(Err(ModbusException::IllegalDataAddress))
        );
        assert!(c.is_connected());
        assert_eq!(c.read(RegisterKind::Holding, RegisterAddress(0), 1).await, Ok(Ok(vec![0])));
        // Out-of-range counts are refused locally, as a device would, without a request.
        assert_eq!(
            c.read(RegisterKind::Holding, RegisterAddress(0), 126).await,
            Ok(Err(ModbusException::IllegalDataValue))
        );
        assert_eq!(c.write(RegisterAddress(10), &[]).await, Ok(Err(ModbusException::IllegalDataValue)));
        let s = c.stats();
        assert_eq!((s.requests, s.exceptions, s.connects, s.failures), (4, 3, 1, 0));
        stop(server).await;
    });
}

#[test]
fn connection_refused_at_start_fails_then_backs_off() {
    bounded(async {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap().port()
        };
        let mut c = TcpClient::new("127.0.0.1", port, 1, options());
        let e = c.read(RegisterKind::Holding, RegisterAddress(0), 1).await.unwrap_err();
        assert!(
            matches!(&e, LinkError::Disconnected(m) if m.contains(&format!("connect to modbus-tcp://127.0.0.1:{port} failed"))),
            "{e}"
        );
        assert_eq!(reconnect_wait(&e), Some(50));
        // Within the backoff: fail fast, nothing on the wire.
        let e = c.read(RegisterKind::Holding, RegisterAddress(0), 1).await.unwrap_err();
        assert!(reconnect_wait(&e).is_some_and(|ms| ms <= 50), "{e}");
        assert_eq!(c.stats().fast_fails, 1);
        // The device comes up: the first call after the backoff connects.
        let (_, server) = start(image(), &format!("127.0.0.1:{port}")).await;
        tokio::time::sleep(MS(60)).await;
        assert_eq!(c.read(RegisterKind::Holding, RegisterAddress(5), 1).await, Ok(Ok(vec![5])));
        let s = c.stats();
        assert_eq!((s.connects, s.reconnects, s.failures), (1, 0, 1));
        stop(server).await;
    });
}

#[test]
fn a_stopped_server_is_a_link_error_then_reconnect_with_growing_backoff() {
    bounded(async {
        let regs = image();
        let (addr, server) = start(regs.clone(), "127.0.0.1:0").await;
        let mut c = TcpClient::new(addr.ip().to_string(), addr.port(), 1, options());
        assert_eq!(c.read(RegisterKind::Holding, RegisterAddress(1), 1).await, Ok(Ok(vec![1])));
        stop(server).await;

        let e = c.read(RegisterKind::Holding, RegisterAddress(1), 1).await.unwrap_err();
        assert!(matches!(e, LinkError::Io(_) | LinkError::Protocol(_)), "{e}");
        assert!(!c.is_connected());
        let e = c.read(RegisterKind::Holding, RegisterAddress(1), 1).await.unwrap_err();
        assert!(reconnect_wait(&e).is_some_and(|ms| ms <= 50), "fails fast: {e}");
        // The connect attempt after the first backoff is refused and doubles the wait.
        tokio::time::sleep(MS(60)).await;
        let e = c.read(RegisterKind::Holding, RegisterAddress(1), 1).await.unwrap_err();
        assert_eq!(reconnect_wait(&e), Some(100), "{e}");

        let (_, server) = start(regs, &addr.to_string()).await;
        tokio::time::sleep(MS(110)).await;
        assert_eq!(c.read(RegisterKind::Holding, RegisterAddress(2), 1).await, Ok(Ok(vec![2])));
        let s = c.stats();
        assert_eq!((s.connects, s.reconnects, s.failures, s.fast_fails), (2, 1, 2, 1));
        stop(server).await;
    });
}

#[test]
fn a_slow_server_times_out_and_the_connection_is_dropped() {
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(server::serve(listener, MemoryService::new(image()).with_delay(MS(500))));
        let mut c = TcpClient::new(
            addr.ip().to_string(),
            addr.port(),
            1,
            ClientOptions { timeout: MS(100), ..options() },
        );
        let t0 = std::time::Instant::now();
        assert_eq!(c.read(RegisterKind::Holding, RegisterAddress(0), 1).await, Err(LinkError::Timeout(100)));
        assert!(t0.elapsed() < MS(400), "took {:?}", t0.elapsed());
        assert!(!c.is_connected(), "a late answer must not be taken for the next one");
        let s = c.stats();
        assert_eq!((s.timeouts, s.failures), (1, 1));
        stop(server).await;
    });
}

#[test]
fn garbage_bytes_are_a_link_error_and_the_client_reconnects() {
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let junk = tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 260];
                    while s.read(&mut buf).await.is_ok_and(|n| n > 0) {
                        // Wrong transaction id, protocol id 0xBEEF: not a Modbus TCP answer.
                        let _ = s
                            .write_all(&[0xde, 0xad, 0xbe, 0xef, 0x00, 0x05, 0x01, 0x03, 0x02, 0x00, 0x01])
                            .await;
                    }
                });
            }
        });
        let mut c = TcpClient::new(addr.ip().to_string(), addr.port(), 1, options());
        let e = c.read(RegisterKind::Holding, RegisterAddress(0), 1).await.unwrap_err();
        assert!(matches!(e, LinkError::Io(_) | LinkError::Protocol(_)), "{e}");
        assert!(!c.is_connected());
        tokio::time::sleep(MS(60)).await;
        let e = c.read(RegisterKind::Holding, RegisterAddress(0), 1).await.unwrap_err();
        assert!(matches!(e, LinkError::Io(_) | LinkError::Protocol(_)), "{e}");
        let s = c.stats();
        assert_eq!((s.connects, s.reconnects, s.failures), (2, 1, 2));
        junk.abort();
    });
}

#[test]
fn an_endpoint_url_and_a_read_plan_read_each_block_in_one_round_trip() {
    bounded(async {
        let regs = image();
        let (addr, server) = start(regs.clone(), "127.0.0.1:0").await;
        let endpoint: ModbusEndpoint = format!("modbus-tcp://{addr}").parse().unwrap();
        let mut c = AnyClient::new(&endpoint, 1, options());
        let plan = ReadPlan::new(
            vec![
                WantedRange::new("a", RegisterKind::Holding, RegisterAddress(0), 125),
                WantedRange::new("b", RegisterKind::Holding, RegisterAddress(125), 125),
                WantedRange::new("c", RegisterKind::Holding, RegisterAddress(300), 60),
                WantedRange::new("missing", RegisterKind::Input, RegisterAddress(9), 1),
            ],
            0,
        )
        .unwrap();
        let before = regs.lock().unwrap().requests;
        let r = execute(&plan, &mut c).await.unwrap();
        assert_eq!(r.round_trips, 4);
        assert_eq!(regs.lock().unwrap().requests - before, 4);
        assert_eq!(r.get(&"b"), Some(&Ok((125..250).collect())));
        assert_eq!(r.get(&"c"), Some(&Ok((300..360).collect())));
        assert_eq!(r.get(&"missing"), Some(&Err(ModbusException::IllegalDataAddress)));
        assert_eq!(c.stats().requests, 4);
        stop(server).await;
    });
}
