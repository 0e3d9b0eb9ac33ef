//! End to end over real Modbus TCP on loopback (issue #4): the simulated site behind
//! [`SunSpecSite`] (SunSpec inverter and battery, SDM630 meter), the real drivers
//! (`SunSpecInverter`, `SunSpecBattery`, `ProfileDevice`) over `TcpClient`s, the `DeviceSet` with
//! every safety wrapper, and the `Controller` in charge-only mode. Relays, PV and the E-stop
//! stay direct simulated devices (they are not Modbus devices on this site).
//!
//! Everything runs on one current-thread tokio runtime (the device futures are not `Send`, and
//! the simulator is `Rc<RefCell<…>>`); the server is a task of the same runtime and answers
//! while the client awaits. No real-time pacing: 1 s simulated steps as fast as the loopback
//! round trips allow.
// Test code: a failed unwrap or panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ems_control::{Controller, ControllerConfig, Inputs, Output};
use ems_core::{Millis, Snapshot, State, TransitionRequest, TripReason, Watts};
use ems_devices::io::DeviceSet;
use ems_devices::modbus::profile::ProfileDevice;
use ems_devices::modbus::sunspec::SunSpecInverter;
use ems_devices::modbus::transport::{ClientOptions, TcpClient};
use ems_devices::sim::{SharedSite, SimEStopPin, SimPv, SimRelay, SimSiteConfig, SimulatedSite};
use ems_devices::traits::{ControlSource, Inverter};
use ems_devices::wrappers::DeviceEvents;
use ems_testing::checker::{Checker, ViolationKind};
use ems_testing::harness::LEASE;
use ems_testing::sunspec_site::{
    connect_device_set, ServerHandle, SunSpecBatteryWithTemperature, SunSpecSite, INVERTER_UNIT,
};

const STEP: Millis = Millis::new(1000);

type Devices = DeviceSet<
    SunSpecBatteryWithTemperature<TcpClient>,
    SunSpecInverter<TcpClient>,
    ProfileDevice<TcpClient>,
    SimPv,
    SimRelay,
    SimRelay,
    SimEStopPin,
>;

/// Short timeouts and backoff: loopback answers in microseconds, and the fault test should not
/// wait seconds of wall time for a reconnect.
fn options() -> ClientOptions {
    ClientOptions {
        timeout: Duration::from_millis(300),
        connect_timeout: Duration::from_millis(300),
        backoff_initial: Duration::from_millis(2),
        backoff_max: Duration::from_millis(20),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// A June day, 10:00.
fn site_config() -> SimSiteConfig {
    SimSiteConfig {
        start_day_of_year: 172,
        start_time_of_day: Millis::from_secs(10 * 3600),
        seed: 4,
        ..SimSiteConfig::default()
    }
}

/// The whole loop: site + server + client-side device layer + controller + checks.
struct Rig {
    site: SharedSite,
    server_site: SunSpecSite,
    server: Option<ServerHandle>,
    addr: SocketAddr,
    devices: Devices,
    controller: Controller,
    checker: Checker,
    snapshot: Snapshot,
    events: DeviceEvents,
    trips: Vec<TripReason>,
    now: Millis,
    last_write: Millis,
    writes_seen: u64,
    last_request: Option<Millis>,
}

impl Rig {
    async fn new() -> Self {
        let site = SharedSite::new(SimulatedSite::new(site_config()).unwrap());
        let server_site = SunSpecSite::new(site.clone()).unwrap();
        let server = server_site.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = server.local_addr();
        let mut devices = connect_device_set(&site, addr.port(), options()).await.unwrap();
        assert!(devices.inverter().device().capabilities().revert_timer, "704 WSetRvrtTms is implemented");
        let config = ControllerConfig::default();
        let checker = Checker::new(&config.safety, config.ramp.watts_per_second());
        Self {
            site,
            server_site,
            server: Some(server),
            addr,
            devices,
            controller: Controller::new(config).unwrap(),
            checker,
            snapshot: Snapshot::unknown(Watts::ZERO),
            events: DeviceEvents::new(),
            trips: Vec::new(),
            now: Millis::ZERO,
            last_write: Millis::ZERO,
            writes_seen: 0,
            last_request: None,
        }
    }

    /// The automated operator: boot, start, acknowledge after a fault (at most every 10 s).
    fn request(&mut self) -> Option<(TransitionRequest, &'static str)> {
        let due = self.last_request.is_none_or(|t| self.now.since(t) >= Millis::from_secs(10));
        let r = match self.controller.state() {
            State::Boot => Some((TransitionRequest::BootComplete, "")),
            State::Idle if due => Some((TransitionRequest::Start, "")),
            State::Error if due => Some((TransitionRequest::Acknowledge, "e2e: fault cleared")),
            _ => None,
        };
        if r.is_some_and(|r| r.0 != TransitionRequest::BootComplete) {
            self.last_request = Some(self.now);
        }
        r
    }

    /// One control cycle over Modbus, then the physics step and the checks.
    async fn cycle(&mut self) -> Output {
        self.server_site.sync();
        self.events.clear();
        self.devices.read(self.now, &mut self.snapshot, &mut self.events).await;
        let request = self.request();
        let inputs = Inputs {
            request: request.map(|r| r.0),
            reason: request.map_or("", |r| r.1),
            device_trips: &self.trips,
            ..Inputs::default()
        };
        let out = self.controller.step(self.now.get(), &self.snapshot, &inputs);
        self.checker.check_output(self.now, &out);
        let (max_charge, max_discharge) = (out.envelope.max_charge(), out.envelope.max_discharge());
        let applied = self.devices.apply(self.now, &out.command, &mut self.events).await;
        self.trips.clear();
        self.trips.extend_from_slice(&applied.trips);
        if let Some(w) = applied.inverter.written {
            self.checker.check_written(self.now, w, max_charge, max_discharge);
        }
        self.server_site.sync();
        self.advance();
        out
    }

    /// The EMS hangs: the site runs on and the server keeps its images in sync, but no client
    /// call is made.
    fn hang(&mut self) {
        self.server_site.sync();
        self.advance();
    }

    fn advance(&mut self) {
        let cycle_start = self.now;
        self.site.borrow_mut().advance(STEP);
        self.now = self.now.plus(STEP);
        let truth = self.site.borrow().truth();
        let writes = truth.setpoint_writes.saturating_add(truth.settings_writes);
        if writes != self.writes_seen {
            self.writes_seen = writes;
            self.last_write = cycle_start;
        }
        self.checker.check_truth(self.now, &truth);
        if truth.control == ControlSource::Remote && self.now.since(self.last_write) > LEASE.plus(STEP) {
            self.checker.record(
                self.now,
                ViolationKind::LeaseExpired,
                format!(
                    "inverter under remote control {} after the last write",
                    self.now.since(self.last_write)
                ),
            );
        }
    }

    fn assert_no_violations(&self) {
        assert_eq!(self.checker.count, 0, "violations: {:#?}", self.checker.kept);
        assert_eq!(self.server_site.encode_errors(), 0);
    }

    /// The inverter's settings as a fresh driver reads them over Modbus.
    async fn settings_over_modbus(&self) -> ems_devices::traits::InverterSettings {
        let c = TcpClient::new("127.0.0.1", self.addr.port(), INVERTER_UNIT, options());
        let mut inv = SunSpecInverter::new(c).await.unwrap();
        inv.read_settings().await.unwrap()
    }
}

#[test]
fn the_site_runs_end_to_end_over_modbus_and_the_lease_holds() {
    let started = Instant::now();
    runtime().block_on(async {
        let mut rig = Rig::new().await;
        let original = rig.settings_over_modbus().await;
        assert_eq!(original.control, ControlSource::Local);
        let requests_before = rig.server_site.requests();

        // 15 simulated minutes from 10:00 on a June day.
        let mut charging_cycles = 0u32;
        let mut min_setpoint = Watts::ZERO;
        for i in 0..900u32 {
            let out = rig.cycle().await;
            let truth = rig.site.borrow().truth();
            if i >= 120 {
                assert_eq!(out.state, State::Running, "at {} s", rig.now.get() / 1000);
                if truth.battery_power < Watts::ZERO {
                    charging_cycles += 1;
                }
            }
            min_setpoint = min_setpoint.min(truth.inverter_setpoint);
            if std::env::var_os("E2E_TRACE").is_some() && i % 30 == 0 {
                println!(
                    "{:4} s {:?} pv {:.0} load {:.0} grid {:.0} bat {:.0} sp {:.0} cmd {:.0} env -{:.0}/+{:.0} {:?} trips {:?} ev {:?}",
                    i, out.state, truth.pv_power.get(), truth.load_power.get(), truth.grid_power.get(),
                    truth.battery_power.get(), truth.inverter_setpoint.get(), out.command.setpoint().get(),
                    out.envelope.max_charge().get(), out.envelope.max_discharge().get(), truth.control, rig.trips,
                    rig.events.iter().map(|e| e.event.to_string()).collect::<Vec<_>>()
                );
            }
        }
        let cycles_requests = rig.server_site.requests() - requests_before;
        let truth = rig.site.borrow().truth();
        println!(
            "15 min over Modbus: {} requests ({:.1}/cycle), SOC {:.1} %, battery {:.0} W, set-point {:.0} W, wall {:?}",
            cycles_requests,
            f64::from(u32::try_from(cycles_requests).unwrap()) / 900.0,
            truth.soc.get(),
            truth.battery_power.get(),
            truth.inverter_setpoint.get(),
            started.elapsed()
        );
        assert!(charging_cycles > 700, "charging in {charging_cycles} of 780 cycles");
        assert!(truth.battery_power < Watts::ZERO, "charging from PV surplus at the end");
        // The set-point reached the simulated inverter through 704 WSet (the server is the
        // only thing that writes to it).
        assert_eq!(truth.control, ControlSource::Remote);
        assert!(min_setpoint < ems_core::watts!(-500.0), "set-point {min_setpoint:?}");
        assert!(truth.setpoint_writes > 0 && truth.settings_writes > 0);
        let stats = rig.devices.inverter().device().client().stats();
        assert_eq!((stats.failures, stats.exceptions, stats.reconnects), (0, 0, 0), "{stats:?}");
        rig.assert_no_violations();

        // The EMS hangs for 15 s: the inverter's own revert timer (armed through WSetRvrtTms)
        // hands it back to local control at 0 W, and the image shows it.
        for _ in 0..15 {
            rig.hang();
        }
        let truth = rig.site.borrow().truth();
        assert_eq!(truth.control, ControlSource::Local);
        assert_eq!(truth.inverter_setpoint, Watts::ZERO);
        let s = rig.settings_over_modbus().await;
        assert_eq!((s.control, s.setpoint), (ControlSource::Local, Watts::ZERO), "WSetEna 0 after the revert");
        rig.assert_no_violations();

        // The EMS comes back: it sees the lost lease, takes control again and charges.
        rig.checker.reset_ramp();
        for _ in 0..60 {
            rig.cycle().await;
        }
        let truth = rig.site.borrow().truth();
        assert_eq!(truth.control, ControlSource::Remote);
        assert!(truth.battery_power < Watts::ZERO);
        rig.assert_no_violations();

        // A graceful end restores the settings found at take-over (WSetEna 0).
        rig.events.clear();
        rig.devices.release(rig.now, &mut rig.events).await.unwrap();
        rig.server_site.sync();
        let truth = rig.site.borrow().truth();
        assert_eq!(truth.control, ControlSource::Local);
        let s = rig.settings_over_modbus().await;
        assert_eq!(s, original, "release restores the original settings");
        let regs = rig.server_site.inverter_registers();
        let ena = rig.server_site.inverter_wsetena_address();
        assert_eq!(regs.holding.get(&ena), Some(&0), "WSetEna register");
        rig.assert_no_violations();
    });
    assert!(started.elapsed() < Duration::from_secs(60), "took {:?}", started.elapsed());
}

#[test]
fn a_dead_server_zeroes_the_command_and_the_site_recovers_after_a_restart() {
    runtime().block_on(async {
        let mut rig = Rig::new().await;
        for _ in 0..180 {
            rig.cycle().await;
        }
        assert_eq!(rig.controller.state(), State::Running);
        assert!(rig.site.borrow().truth().battery_power < Watts::ZERO);

        // The server goes away: every connection is closed, reads fail.
        drop(rig.server.take());
        let down_at = rig.now;
        let mut zero_at = None;
        for _ in 0..30 {
            let out = rig.cycle().await;
            if zero_at.is_none() && out.command.setpoint() == Watts::ZERO {
                zero_at = Some(rig.now);
            }
            if let Some(z) = zero_at {
                assert_eq!(out.command.setpoint(), Watts::ZERO, "stays zero while down (since {z})");
            }
        }
        let zero_at = zero_at.expect("the command went to zero");
        assert!(
            zero_at.since(down_at) <= ems_core::snapshot::FAST_MAX_AGE.plus(STEP).plus(STEP),
            "zero after {} (max age {})",
            zero_at.since(down_at),
            ems_core::snapshot::FAST_MAX_AGE
        );
        // Nobody renewed the lease: the inverter reverted by itself.
        let truth = rig.site.borrow().truth();
        assert_eq!((truth.control, truth.inverter_setpoint), (ControlSource::Local, Watts::ZERO));
        let stats = rig.devices.inverter().device().client().stats();
        assert!(stats.failures > 0, "{stats:?}");
        rig.assert_no_violations();

        // The server comes back on the same address: the clients reconnect after their backoff
        // and the site runs again.
        rig.server = Some(rig.server_site.serve(rig.addr).await.unwrap());
        let mut back = None;
        for i in 0..300 {
            // A little wall time per cycle so the (wall-clock) reconnect backoff can elapse.
            tokio::time::sleep(Duration::from_millis(1)).await;
            let out = rig.cycle().await;
            if out.state == State::Running
                && out.command.setpoint() < Watts::ZERO
                && rig.site.borrow().truth().battery_power < Watts::ZERO
            {
                back = Some(i);
                break;
            }
        }
        let back = back.expect("running and charging again after the restart");
        let stats = rig.devices.inverter().device().client().stats();
        assert!(stats.reconnects >= 1, "{stats:?}");
        let meter_stats = rig.devices.meter().client().stats();
        assert!(meter_stats.reconnects >= 1, "{meter_stats:?}");
        println!("charging again {back} s after the restart; inverter client {stats:?}");
        assert_eq!(rig.site.borrow().truth().control, ControlSource::Remote);
        rig.assert_no_violations();
    });
}
