//! Fake devices for the runtime's tests and its E-stop benchmark: a site whose inverter link
//! can hang (never answers), relays and an E-stop input that record *when* they were
//! commanded, and an E-stop input that signals its edge (as an interrupt-driven input does).
#![allow(dead_code)] // shared by the tests and the bench; each uses a part
#![allow(clippy::unwrap_used)] // test support: a poisoned lock is a failed test

use ems_core::snapshot::{BmsAlarms, EStopInput as Reading, InverterState};
use ems_core::{Volts, Watts};
use ems_devices::io::{DeviceSet, DeviceSetConfig};
use ems_devices::traits::{
    Bms, BmsReading, ControlSource, DeviceError, EStopInput, ErrorKind, Inverter, InverterCapabilities,
    InverterReading, InverterSettings, Meter, MeterReading, PvInverter, PvReading, Relay,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The fakes' error.
#[derive(Debug)]
pub(crate) struct FakeError;

impl DeviceError for FakeError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Timeout
    }
}

/// What the fakes record, shared with the test.
#[derive(Debug, Default)]
pub(crate) struct Probe {
    /// The inverter link never answers (reads and writes pend forever).
    pub hung: AtomicBool,
    /// When a zero set-point was last sent to the inverter.
    pub zero_sent: Mutex<Option<Instant>>,
    /// When the main contactor was last commanded open.
    pub main_opened: Mutex<Option<Instant>>,
    /// When the pre-charge relay was last commanded open.
    pub precharge_opened: Mutex<Option<Instant>>,
    /// The E-stop loop is pressed.
    pub estop: AtomicBool,
    /// Signalled on every change of the E-stop loop.
    pub estop_edge: Notify,
    /// The relays' coil states (pre-charge, main).
    pub coils: Mutex<(bool, bool)>,
    /// The last set-point the inverter accepted.
    pub setpoint: Mutex<f32>,
    /// How many reads of the E-stop found it released.
    pub released_reads: std::sync::atomic::AtomicU64,
    /// Every set-point written, with when.
    pub writes: Mutex<Vec<(Instant, f32)>>,
}

impl Probe {
    /// Press (`true`) or release the E-stop.
    pub(crate) fn set_estop(&self, pressed: bool) {
        self.estop.store(pressed, Ordering::SeqCst);
        self.estop_edge.notify_one();
    }

    /// Forget the recorded instants.
    pub(crate) fn clear(&self) {
        *self.zero_sent.lock().unwrap() = None;
        *self.main_opened.lock().unwrap() = None;
        *self.precharge_opened.lock().unwrap() = None;
    }

    /// When both zero and the open commands have been issued after `since`: the later of them.
    pub(crate) fn all_issued_after(&self, since: Instant) -> Option<Instant> {
        let z = (*self.zero_sent.lock().unwrap()).filter(|t| *t >= since)?;
        let m = (*self.main_opened.lock().unwrap()).filter(|t| *t >= since)?;
        let p = (*self.precharge_opened.lock().unwrap()).filter(|t| *t >= since)?;
        Some(z.max(m).max(p))
    }
}

/// A BMS reporting a healthy pack.
#[derive(Debug)]
pub(crate) struct FakeBms;

impl Bms for FakeBms {
    type Error = FakeError;
    async fn read(&mut self) -> Result<BmsReading, FakeError> {
        Ok(BmsReading {
            soc: ems_core::percent!(50.0),
            pack_voltage: ems_core::volts!(52.9),
            pack_current: ems_core::amps!(0.0),
            cell_voltage_min: ems_core::volts!(3.30),
            cell_voltage_max: ems_core::volts!(3.31),
            cell_temp_min: ems_core::celsius!(25.0),
            cell_temp_max: ems_core::celsius!(25.3),
            charge_limit: ems_core::watts!(5000.0),
            discharge_limit: ems_core::watts!(5000.0),
            alarms: BmsAlarms::NONE,
            ready: true,
        })
    }
    async fn reset_alarms(&mut self) -> Result<(), FakeError> {
        Ok(())
    }
}

/// An inverter whose link may hang.
#[derive(Debug)]
pub(crate) struct FakeInverter(pub Arc<Probe>, pub u32);

impl FakeInverter {
    async fn link(&self) {
        if self.0.hung.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
    }
}

impl Inverter for FakeInverter {
    type Error = FakeError;
    fn capabilities(&self) -> InverterCapabilities {
        InverterCapabilities { revert_timer: true, setpoint_in_flash: false }
    }
    async fn read(&mut self) -> Result<InverterReading, FakeError> {
        self.link().await;
        self.1 = self.1.wrapping_add(1);
        let p = *self.0.setpoint.lock().unwrap();
        Ok(InverterReading {
            active_power: Watts::saturating(p),
            setpoint: Watts::saturating(p),
            state: InverterState::Running,
            temperature: ems_core::celsius!(35.0),
            rated_power: ems_core::watts!(5000.0),
            // Live DC link (varies), as a real measurement does.
            dc_link_voltage: Volts::saturating(52.9 + if self.1 % 2 == 0 { 0.0 } else { 0.01 }),
        })
    }
    async fn write_setpoint(&mut self, power: Watts) -> Result<(), FakeError> {
        if power == Watts::ZERO {
            *self.0.zero_sent.lock().unwrap() = Some(Instant::now());
        }
        self.link().await;
        *self.0.setpoint.lock().unwrap() = power.get();
        self.0.writes.lock().unwrap().push((Instant::now(), power.get()));
        Ok(())
    }
    async fn read_settings(&mut self) -> Result<InverterSettings, FakeError> {
        self.link().await;
        Ok(InverterSettings { control: ControlSource::Local, setpoint: Watts::ZERO, revert_timeout: None })
    }
    async fn write_settings(&mut self, _: &InverterSettings) -> Result<(), FakeError> {
        self.link().await;
        Ok(())
    }
}

/// A meter reading a constant export (PV surplus elsewhere on the site: charge-only charges).
#[derive(Debug)]
pub(crate) struct FakeMeter;

impl Meter for FakeMeter {
    type Error = FakeError;
    async fn read(&mut self) -> Result<MeterReading, FakeError> {
        Ok(MeterReading {
            active_power: ems_core::watts!(-2000.0),
            voltage: ems_core::volts!(230.0),
            frequency: Some(ems_core::hertz!(50.0)),
        })
    }
}

/// PV producing nothing.
#[derive(Debug)]
pub(crate) struct FakePv;

impl PvInverter for FakePv {
    type Error = FakeError;
    async fn read(&mut self) -> Result<PvReading, FakeError> {
        Ok(PvReading { active_power: Watts::ZERO })
    }
}

/// A relay whose feedback follows its coil; records when it was commanded open.
#[derive(Debug)]
pub(crate) struct FakeRelay(pub Arc<Probe>, pub bool);

impl Relay for FakeRelay {
    type Error = FakeError;
    async fn set(&mut self, closed: bool) -> Result<(), FakeError> {
        let mut coils = self.0.coils.lock().unwrap();
        if self.1 {
            coils.1 = closed;
            if !closed {
                *self.0.main_opened.lock().unwrap() = Some(Instant::now());
            }
        } else {
            coils.0 = closed;
            if !closed {
                *self.0.precharge_opened.lock().unwrap() = Some(Instant::now());
            }
        }
        Ok(())
    }
    async fn feedback(&mut self) -> Result<bool, FakeError> {
        let coils = self.0.coils.lock().unwrap();
        Ok(if self.1 { coils.1 } else { coils.0 })
    }
}

/// An E-stop input that signals its edges (as a GPIO line with edge events does).
#[derive(Debug)]
pub(crate) struct FakeEStop(pub Arc<Probe>);

impl EStopInput for FakeEStop {
    type Error = FakeError;
    async fn read(&mut self) -> Result<Reading, FakeError> {
        if self.0.estop.load(Ordering::SeqCst) {
            Ok(Reading::Pressed)
        } else {
            self.0.released_reads.fetch_add(1, Ordering::SeqCst);
            Ok(Reading::Released)
        }
    }
    async fn changed(&mut self, max: Duration) {
        let _ = tokio::time::timeout(max, self.0.estop_edge.notified()).await;
    }
}

/// The fake site's device layer.
pub(crate) type FakeSet =
    DeviceSet<FakeBms, FakeInverter, FakeMeter, FakePv, FakeRelay, FakeRelay, FakeEStop>;

/// A device layer over the fakes, reporting to `probe`.
pub(crate) fn device_set(probe: &Arc<Probe>) -> FakeSet {
    DeviceSet::new(
        FakeBms,
        FakeInverter(probe.clone(), 0),
        FakeMeter,
        FakePv,
        FakeRelay(probe.clone(), false),
        FakeRelay(probe.clone(), true),
        FakeEStop(probe.clone()),
        DeviceSetConfig::default(),
    )
    .unwrap()
}
