//! The Phoenix Contact EM-CP-PP-ETH driver over real Modbus TCP against the in-repo loopback
//! server (a register image laid out as evcc's `charger/phoenix-em-eth.go` names it), and
//! through `SafeEvse`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use ems_core::Millis;
use ems_devices::evse::phoenix::{
    PhoenixEmCpPpEth, COIL_ENABLE, REG_CURRENTS, REG_ENERGY, REG_MAX_CURRENT, REG_POWER, REG_STATUS,
};
use ems_devices::evse::{DeciAmps, Evse, EvseStatus, Phases, SafeEvse, SafeEvseConfig};
use ems_devices::modbus::transport::server::serve_memory;
use ems_devices::modbus::transport::{ClientOptions, TcpClient};
use ems_devices::modbus::MemoryRegisters;
use ems_devices::traits::{DeviceError, ErrorKind};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

fn u32_low_first(v: u32) -> [u16; 2] {
    [u16::try_from(v & 0xFFFF).unwrap(), u16::try_from(v >> 16).unwrap()]
}

/// A controller in state `letter`, 16 A allowed, enabled, drawing `ma` mA per phase.
fn image(letter: u8, ma: u32, energy_centi_kwh: u32) -> MemoryRegisters {
    let mut m = MemoryRegisters::default();
    m.input.insert(REG_STATUS, u16::from(letter));
    for r in REG_CURRENTS {
        let [lo, hi] = u32_low_first(ma);
        m.input.insert(r, lo);
        m.input.insert(r + 1, hi);
    }
    let [lo, hi] = u32_low_first(3 * 230 * ma / 1000 / 10);
    m.input.insert(REG_POWER, lo);
    m.input.insert(REG_POWER + 1, hi);
    let [lo, hi] = u32_low_first(energy_centi_kwh);
    m.input.insert(REG_ENERGY, lo);
    m.input.insert(REG_ENERGY + 1, hi);
    m.put(REG_MAX_CURRENT, &[16]);
    m.allow_write(REG_MAX_CURRENT, 1);
    m.coils.insert(COIL_ENABLE, true);
    m
}

fn a(x: f32) -> DeciAmps {
    DeciAmps::try_from_amps(x).unwrap()
}

async fn driver(regs: Arc<Mutex<MemoryRegisters>>) -> PhoenixEmCpPpEth<TcpClient> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(serve_memory(listener, regs));
    let options = ClientOptions {
        timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_millis(500),
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_millis(400),
    };
    PhoenixEmCpPpEth::new(TcpClient::new("127.0.0.1", port, 180, options), a(16.0), Phases::Three, true)
}

#[tokio::test]
async fn reads_status_currents_power_and_session_energy() {
    let regs = Arc::new(Mutex::new(image(b'C', 10_000, 1234)));
    let mut evse = driver(Arc::clone(&regs)).await;
    let r = evse.read().await.unwrap();
    assert_eq!(r.status, EvseStatus::Charging);
    assert!(r.current.iter().all(|c| (c.get() - 10.0).abs() < 1e-3), "{r:?}");
    assert!((r.power.get() - 6900.0).abs() < 10.0, "{r:?}");
    assert_eq!(r.applied_limit, a(16.0));
    assert_eq!(r.session_energy.get(), 0.0, "the session starts at the first plugged reading");
    // 1.5 kWh later.
    {
        let mut m = regs.lock().unwrap();
        let [lo, hi] = u32_low_first(1384);
        m.input.insert(REG_ENERGY, lo);
        m.input.insert(REG_ENERGY + 1, hi);
    }
    assert!((evse.read().await.unwrap().session_energy.get() - 1500.0).abs() < 0.5);
    for (letter, status) in
        [(b'A', EvseStatus::Unplugged), (b'B', EvseStatus::Plugged), (b'F', EvseStatus::Fault)]
    {
        regs.lock().unwrap().input.insert(REG_STATUS, u16::from(letter));
        assert_eq!(evse.read().await.unwrap().status, status);
    }
    regs.lock().unwrap().input.insert(REG_STATUS, 0x3F);
    assert_eq!(evse.read().await.unwrap_err().kind(), ErrorKind::Decode);
}

#[tokio::test]
async fn limits_are_whole_amps_and_zero_switches_charging_off() {
    let regs = Arc::new(Mutex::new(image(b'C', 0, 0)));
    let mut evse = driver(Arc::clone(&regs)).await;
    evse.set_current_limit(a(10.7)).await.unwrap();
    assert_eq!(regs.lock().unwrap().holding[&REG_MAX_CURRENT], 10, "rounded down to whole amperes");
    assert!(regs.lock().unwrap().coils[&COIL_ENABLE]);
    assert_eq!(evse.read().await.unwrap().applied_limit, a(10.0));
    evse.set_current_limit(DeciAmps::ZERO).await.unwrap();
    assert!(!regs.lock().unwrap().coils[&COIL_ENABLE], "0 A = charging off (coil 400)");
    assert_eq!(evse.read().await.unwrap().applied_limit, DeciAmps::ZERO);
    assert_eq!(evse.set_current_limit(a(4.0)).await.unwrap_err().kind(), ErrorKind::OutOfRange);
    evse.set_current_limit(a(6.0)).await.unwrap();
    evse.set_enabled(false).await.unwrap();
    assert!(!regs.lock().unwrap().coils[&COIL_ENABLE]);
    assert_eq!(evse.set_phases(Phases::One).await.unwrap_err().kind(), ErrorKind::Refused);
}

#[tokio::test]
async fn through_safe_evse_a_zero_ignoring_controller_is_detected() {
    // The coil is switched off but the meter still shows 16 A on every phase.
    let regs = Arc::new(Mutex::new(image(b'C', 16_000, 0)));
    let evse = driver(Arc::clone(&regs)).await;
    let cfg = SafeEvseConfig { verify_window: Millis::new(1000), ..SafeEvseConfig::default() };
    let mut safe = SafeEvse::new(evse, cfg).unwrap();
    safe.command(Millis::new(0), a(16.0)).await.unwrap();
    safe.poll(Millis::new(100)).await.unwrap();
    assert_eq!(safe.command(Millis::new(200), DeciAmps::ZERO).await.unwrap(), DeciAmps::ZERO);
    safe.poll(Millis::new(300)).await.unwrap();
    safe.poll(Millis::new(1400)).await.unwrap();
    assert_eq!(safe.fault(), Some(ems_devices::evse::safe::EvseFault::ZeroIgnored));
    assert!(!regs.lock().unwrap().coils[&COIL_ENABLE]);
}

#[tokio::test]
async fn a_dead_link_is_a_comm_error() {
    let options = ClientOptions {
        timeout: Duration::from_millis(200),
        connect_timeout: Duration::from_millis(200),
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_millis(400),
    };
    let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    let mut evse =
        PhoenixEmCpPpEth::new(TcpClient::new("127.0.0.1", port, 180, options), a(16.0), Phases::Three, true);
    let e = evse.read().await.unwrap_err();
    assert!(e.kind().is_link(), "{e}");
}
