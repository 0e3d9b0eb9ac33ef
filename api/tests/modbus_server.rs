//! The SunSpec Modbus server's listeners over real TCP, with hand-built Modbus TCP frames (no
//! Modbus library on the client side): the `SunS` marker at 40000, a control write through the
//! router into the control modes, the read-only listener refusing writes, the IP allow-list
//! closing a connection from another address, an idle connection closed while a busy one is
//! not, function code 4 mirroring 3, and the register map in docs/MODBUS_SERVER.md matching
//! the layout.
// Test code: a failed unwrap or panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use ems_api::auth::{hash_token, Role, TokenConfig};
use ems_api::modbus_server::{
    AllowedNet, ModbusServer, ModbusServerConfig, RegisterMap, ServerContext, Writable,
};
use ems_api::start::{Assembled, EStopRoute, ServerConfig, Tokens};
use ems_api::state::SystemClock;

const TOKEN: &str = "modbus-test-token";

/// One request PDU → the response PDU (function code first).
fn transact(s: &mut TcpStream, unit: u8, pdu: &[u8]) -> Vec<u8> {
    let len = u16::try_from(pdu.len() + 1).unwrap();
    let mut adu = vec![0, 7, 0, 0];
    adu.extend_from_slice(&len.to_be_bytes());
    adu.push(unit);
    adu.extend_from_slice(pdu);
    s.write_all(&adu).unwrap();
    let mut head = [0u8; 7];
    s.read_exact(&mut head).unwrap();
    let n = usize::from(u16::from_be_bytes([head[4], head[5]])) - 1;
    let mut body = vec![0u8; n];
    s.read_exact(&mut body).unwrap();
    body
}

fn read(s: &mut TcpStream, address: u16, n: u16) -> Vec<u16> {
    let mut pdu = vec![3];
    pdu.extend_from_slice(&address.to_be_bytes());
    pdu.extend_from_slice(&n.to_be_bytes());
    let r = transact(s, 1, &pdu);
    assert_eq!(r[0], 3, "exception {r:?}");
    r[2..].chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect()
}

fn write(s: &mut TcpStream, address: u16, value: u16) -> Vec<u8> {
    let mut pdu = vec![6];
    pdu.extend_from_slice(&address.to_be_bytes());
    pdu.extend_from_slice(&value.to_be_bytes());
    transact(s, 1, &pdu)
}

async fn start(allow: &str) -> (ModbusServer, Arc<std::sync::Mutex<ems_api::control_modes::ControlModes>>) {
    start_idle(allow, Duration::from_secs(60)).await
}

async fn start_idle(
    allow: &str,
    idle_timeout: Duration,
) -> (ModbusServer, Arc<std::sync::Mutex<ems_api::control_modes::ControlModes>>) {
    let tokens = vec![TokenConfig {
        name: "modbus-server".into(),
        role: Role::Operator,
        sha256_hex: hash_token(TOKEN),
    }];
    let config = ServerConfig {
        tokens: Tokens::Configured(tokens),
        override_max: ems_core::watts!(5000.0),
        write_queue: None,
        ..ServerConfig::default()
    };
    let Assembled { router, handles } = config.assemble(EStopRoute::CommandQueue).unwrap();
    let modes = handles.modes.clone();
    let ctx = ServerContext {
        router,
        token: TOKEN.to_owned(),
        view: handles.view.subscribe(),
        modes: handles.modes.clone(),
        clock: Arc::new(SystemClock),
    };
    // The loop's side stays alive for the test's duration.
    std::mem::forget(handles);
    let config = ModbusServerConfig {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        read_only_listen: Some("127.0.0.1:0".parse().unwrap()),
        allow: vec![AllowedNet::parse(allow).unwrap()],
        writable: Writable::default(),
        idle_timeout,
        ..ModbusServerConfig::default()
    };
    (ModbusServer::start(config, ctx).await.unwrap(), modes)
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_go_through_the_api_and_the_read_only_listener_refuses_them() {
    let (server, modes) = start("127.0.0.1").await;
    let rw = server.addr().unwrap();
    let ro = server.read_only_addr().unwrap();
    let map = RegisterMap::get().unwrap();
    let ena = map.point(704, "WSetEna").unwrap().address;
    let wmax = map.point(702, "WMax").unwrap().address;
    tokio::task::spawn_blocking(move || {
        let mut s = connect(rw);
        assert_eq!(read(&mut s, 40_000, 4), [0x5375, 0x6e53, 1, 66]);
        // WSetEna = 1 with the staged 0 W: FORCE_CHARGE 0 W for the default 60 s.
        let [hi, lo] = ena.to_be_bytes();
        assert_eq!(write(&mut s, ena, 1), [6, hi, lo, 0, 1]);
        assert_eq!(read(&mut s, ena, 1), [1]);
        // Outside the allow-list.
        assert_eq!(write(&mut s, wmax, 1), [0x86, 2]);
        // The read-only listener reads but refuses every write.
        let mut r = connect(ro);
        assert_eq!(read(&mut r, ena, 1), [1]);
        assert_eq!(write(&mut r, ena, 0), [0x86, 2]);
        // Disabling on the read-write listener deactivates the mode.
        assert_eq!(write(&mut s, ena, 0)[0], 6);
        assert_eq!(read(&mut s, ena, 1), [0]);
    })
    .await
    .unwrap();
    let now = jiff::Timestamp::now();
    assert!(modes.lock().unwrap().active(now).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_from_outside_the_allow_list_is_closed() {
    let (server, _modes) = start("127.0.0.2").await;
    let rw = server.addr().unwrap();
    tokio::task::spawn_blocking(move || {
        // We connect from 127.0.0.1: accepted by the kernel, closed by the server unanswered.
        let mut s = connect(rw);
        let _ = s.write_all(&[0, 1, 0, 0, 0, 6, 1, 3, 0x9c, 0x40, 0, 2]);
        let mut buf = [0u8; 16];
        let n = s.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "expected the connection closed, got {:?}", &buf[..n]);
    })
    .await
    .unwrap();
}

/// Whether the server closed `s` (a read answers end-of-file or a reset, not a timeout).
fn closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 16];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
    }
}

/// H122: a connection that sends no request for `idle_timeout` is closed (its slot freed); one
/// that keeps asking is served for many times that long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_and_a_busy_one_is_not() {
    let (server, _modes) = start_idle("127.0.0.1", Duration::from_millis(500)).await;
    let rw = server.addr().unwrap();
    tokio::task::spawn_blocking(move || {
        let mut idle = connect(rw);
        let mut busy = connect(rw);
        assert_eq!(read(&mut idle, 40_000, 2), [0x5375, 0x6e53]);
        // 3 s of a request every 200 ms: six idle timeouts, never idle.
        for _ in 0..15 {
            assert_eq!(read(&mut busy, 40_000, 2), [0x5375, 0x6e53]);
            std::thread::sleep(Duration::from_millis(200));
        }
        assert!(closed(&mut idle), "the idle connection is closed");
        assert_eq!(read(&mut busy, 40_000, 2), [0x5375, 0x6e53], "the busy one still served");
        // A connection that never sends anything is closed too.
        let mut silent = connect(rw);
        std::thread::sleep(Duration::from_millis(900));
        assert!(closed(&mut silent));
    })
    .await
    .unwrap();
}

/// Function code 4 (read input registers) answers the same image as 3, with the same
/// exceptions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_registers_mirror_the_holding_registers() {
    let (server, _modes) = start("127.0.0.1").await;
    let ro = server.read_only_addr().unwrap();
    tokio::task::spawn_blocking(move || {
        let mut s = connect(ro);
        let holding = read(&mut s, 40_000, 70);
        let r = transact(&mut s, 1, &[4, 0x9c, 0x40, 0, 70]);
        assert_eq!((r[0], usize::from(r[1])), (4, 140), "{r:?}");
        let input: Vec<u16> = r[2..].chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
        assert_eq!(input, holding);
        // Outside the map: exception 2; more than 125 registers: exception 3.
        assert_eq!(transact(&mut s, 1, &[4, 0, 0, 0, 1]), [0x84, 2]);
        assert_eq!(transact(&mut s, 1, &[4, 0x9c, 0x40, 0, 126]), [0x84, 3]);
    })
    .await
    .unwrap();
}

#[test]
fn the_register_map_in_the_docs_matches_the_layout() {
    let map = RegisterMap::get().unwrap();
    let w = Writable::default();
    let table = map.markdown_table(&|p| w.allows(p));
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/MODBUS_SERVER.md")).unwrap();
    if !doc.contains(&table) {
        let out = std::env::temp_dir().join("MODBUS_SERVER.table.md");
        std::fs::write(&out, &table).unwrap();
        panic!(
            "docs/MODBUS_SERVER.md does not contain the current register map; the generated table is in {}",
            out.display()
        );
    }
}
