//! Device-trait access to a [`SimulatedSite`]: one owned handle per device, sharing the site.
//!
//! [`SharedSite`] wraps the site in `Rc<RefCell<…>>`; [`SharedSite::devices`] hands out one
//! handle per device ([`SimDevices`]), each holding an `Rc` clone, so a device layer can own
//! all of them at once while the harness keeps stepping the physics through the same
//! `SharedSite`.
//!
//! **Borrowing rule:** every handle method and every [`SharedSite`] helper borrows the site for
//! the duration of one synchronous call only. No borrow is held across an `.await` (the async
//! methods never await) nor nested, so the `RefCell` can never be found already borrowed —
//! unless a caller keeps the guard of [`SharedSite::borrow`] / [`SharedSite::borrow_mut`] alive
//! while calling a handle. Prefer [`SharedSite::with`] / [`SharedSite::with_mut`], whose
//! closures cannot leak the guard.
//!
//! Errors ([`SimDeviceError`]): a read, or a write to the inverter or the BMS, of a device with
//! any of its signals under [`SimFault::SensorDropout`](super::SimFault::SensorDropout) fails
//! with [`ErrorKind::Timeout`] (the link is down; relay coils are local outputs and keep
//! working, their feedback reads time out); a set-point beyond the rating fails with
//! [`ErrorKind::OutOfRange`]; a write to a faulted inverter, or a set-point written while the
//! inverter is under [`ControlSource::Local`] control, fails with [`ErrorKind::Refused`].
//! Handle calls never allocate.

use super::site::SimulatedSite;
use crate::traits::{
    Bms, BmsReading, ControlSource, DeviceError, EStopInput, ErrorKind, Inverter, InverterCapabilities,
    InverterReading, InverterSettings, Meter, MeterReading, PvInverter, PvReading, Relay,
};
use core::cell::{Ref, RefCell, RefMut};
use ems_core::event::Signal;
use ems_core::snapshot::InverterState;
use ems_core::Watts;
use std::rc::Rc;

/// Error of a simulated device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SimDeviceError {
    /// The signal is under an injected dropout: the device does not answer.
    #[error("{0} does not answer (injected dropout)")]
    Dropout(Signal),
    /// The device is in a state that refuses the request.
    #[error("refused: {0}")]
    Refused(&'static str),
    /// A set-point outside the device rating.
    #[error("set-point outside the rating")]
    OutOfRange,
}

impl DeviceError for SimDeviceError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Dropout(_) => ErrorKind::Timeout,
            Self::Refused(_) => ErrorKind::Refused,
            Self::OutOfRange => ErrorKind::OutOfRange,
        }
    }
}

impl embedded_hal::digital::Error for SimDeviceError {
    fn kind(&self) -> embedded_hal::digital::ErrorKind {
        embedded_hal::digital::ErrorKind::Other
    }
}

fn answer(site: &SimulatedSite, signals: &[Signal]) -> Result<(), SimDeviceError> {
    match signals.iter().find(|s| site.dropped(**s)) {
        Some(s) => Err(SimDeviceError::Dropout(*s)),
        None => Ok(()),
    }
}

type Site = Rc<RefCell<SimulatedSite>>;

/// A [`SimulatedSite`] shared between the harness (which steps the physics and reads the
/// truth) and the device handles (see the module documentation for the borrowing rule).
#[derive(Debug, Clone)]
pub struct SharedSite(Site);

impl SharedSite {
    /// Share `site`.
    #[must_use]
    pub fn new(site: SimulatedSite) -> Self {
        Self(Rc::new(RefCell::new(site)))
    }

    /// One handle per device, all on this site.
    #[must_use]
    pub fn devices(&self) -> SimDevices {
        SimDevices {
            bms: self.bms(),
            inverter: self.inverter(),
            meter: self.meter(),
            pv: self.pv(),
            precharge_relay: self.relay(RelayRole::Precharge),
            main_relay: self.relay(RelayRole::Main),
            estop: self.estop(),
        }
    }

    /// The BMS.
    #[must_use]
    pub fn bms(&self) -> SimBms {
        SimBms(Rc::clone(&self.0))
    }

    /// The battery inverter.
    #[must_use]
    pub fn inverter(&self) -> SimInverter {
        SimInverter(Rc::clone(&self.0))
    }

    /// The grid meter.
    #[must_use]
    pub fn meter(&self) -> SimMeter {
        SimMeter(Rc::clone(&self.0))
    }

    /// The PV inverter.
    #[must_use]
    pub fn pv(&self) -> SimPv {
        SimPv(Rc::clone(&self.0))
    }

    /// One of the two relays.
    #[must_use]
    pub fn relay(&self, role: RelayRole) -> SimRelay {
        SimRelay { site: Rc::clone(&self.0), role }
    }

    /// The E-stop input pin.
    #[must_use]
    pub fn estop(&self) -> SimEStopPin {
        SimEStopPin(Rc::clone(&self.0))
    }

    /// Borrow the site (for `truth`, `snapshot`, `energy`). Drop the guard before calling a
    /// device handle.
    #[must_use]
    pub fn borrow(&self) -> Ref<'_, SimulatedSite> {
        self.0.borrow()
    }

    /// Borrow the site mutably (for `advance`, `inject`, `apply`). Drop the guard before
    /// calling a device handle.
    #[must_use]
    pub fn borrow_mut(&self) -> RefMut<'_, SimulatedSite> {
        self.0.borrow_mut()
    }

    /// Run `f` on the site; the borrow ends with `f`.
    pub fn with<R>(&self, f: impl FnOnce(&SimulatedSite) -> R) -> R {
        f(&self.0.borrow())
    }

    /// Run `f` on the site mutably; the borrow ends with `f`.
    pub fn with_mut<R>(&self, f: impl FnOnce(&mut SimulatedSite) -> R) -> R {
        f(&mut self.0.borrow_mut())
    }
}

/// Every device of a simulated site, each an owned handle (see [`SharedSite::devices`]).
#[derive(Debug)]
pub struct SimDevices {
    /// The BMS.
    pub bms: SimBms,
    /// The battery inverter.
    pub inverter: SimInverter,
    /// The grid meter.
    pub meter: SimMeter,
    /// The PV inverter.
    pub pv: SimPv,
    /// The pre-charge relay (through the pre-charge resistor).
    pub precharge_relay: SimRelay,
    /// The main DC relay.
    pub main_relay: SimRelay,
    /// The E-stop input pin (wrap it in [`HalEStop`](crate::estop::HalEStop), or read it as an
    /// [`EStopInput`] directly).
    pub estop: SimEStopPin,
}

/// The simulated BMS, as a [`Bms`].
#[derive(Debug, Clone)]
pub struct SimBms(Site);
/// The simulated battery inverter, as an [`Inverter`].
#[derive(Debug, Clone)]
pub struct SimInverter(Site);
/// The simulated grid meter, as a [`Meter`].
#[derive(Debug, Clone)]
pub struct SimMeter(Site);
/// The simulated PV inverter, as a [`PvInverter`].
#[derive(Debug, Clone)]
pub struct SimPv(Site);
/// The simulated E-stop input: a digital pin (`embedded_hal::digital::InputPin`) of a
/// normally-closed loop pulled high — high while released, low while pressed — and an
/// [`EStopInput`].
#[derive(Debug, Clone)]
pub struct SimEStopPin(Site);

/// Which relay a [`SimRelay`] drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RelayRole {
    /// The pre-charge relay, in series with the pre-charge resistor. Its feedback read times
    /// out under a dropout of [`Signal::Precharge`].
    Precharge,
    /// The main DC relay. Its feedback read times out under a dropout of
    /// [`Signal::Contactor`].
    Main,
}

/// A simulated relay with an auxiliary feedback contact, as a [`Relay`]. The contact follows
/// the coil at the start of the next sub-step (`advance`), unless a fault holds it.
#[derive(Debug, Clone)]
pub struct SimRelay {
    site: Site,
    role: RelayRole,
}

impl SimRelay {
    /// Which relay this is.
    #[must_use]
    pub fn role(&self) -> RelayRole {
        self.role
    }
}

const BMS_SIGNALS: [Signal; 8] = [
    Signal::Soc,
    Signal::PackVoltage,
    Signal::PackCurrent,
    Signal::CellVoltage,
    Signal::CellTemperature,
    Signal::BmsLimits,
    Signal::BmsAlarms,
    Signal::BmsReady,
];

const INVERTER_SIGNALS: [Signal; 3] =
    [Signal::InverterPower, Signal::InverterState, Signal::InverterTemperature];

impl Bms for SimBms {
    type Error = SimDeviceError;

    async fn read(&mut self) -> Result<BmsReading, SimDeviceError> {
        let site = self.0.borrow();
        answer(&site, &BMS_SIGNALS)?;
        let b = &site.battery;
        Ok(BmsReading {
            soc: b.soc(),
            pack_voltage: b.pack_voltage(),
            pack_current: b.current(),
            cell_voltage_min: b.cell_voltage_min(),
            cell_voltage_max: b.cell_voltage_max(),
            cell_temp_min: b.cell_temp_min(),
            cell_temp_max: b.cell_temp_max(),
            charge_limit: b.charge_limit(),
            discharge_limit: b.discharge_limit(),
            alarms: b.alarms(),
            ready: b.ready(),
        })
    }

    async fn reset_alarms(&mut self) -> Result<(), SimDeviceError> {
        let mut site = self.0.borrow_mut();
        answer(&site, &BMS_SIGNALS)?;
        site.bms_alarm_resets = site.bms_alarm_resets.saturating_add(1);
        site.battery.reset_alarms();
        Ok(())
    }
}

fn check_write(site: &SimulatedSite, power: Watts) -> Result<(), SimDeviceError> {
    answer(site, &INVERTER_SIGNALS)?;
    if site.inverter.faulted || matches!(site.inverter.state(), InverterState::Fault) {
        return Err(SimDeviceError::Refused("inverter in fault"));
    }
    if power.abs() > site.inverter.rating() {
        return Err(SimDeviceError::OutOfRange);
    }
    Ok(())
}

impl Inverter for SimInverter {
    type Error = SimDeviceError;

    fn capabilities(&self) -> InverterCapabilities {
        let site = self.0.borrow();
        InverterCapabilities {
            revert_timer: true,
            setpoint_in_flash: site.config().inverter_setpoint_in_flash,
        }
    }

    async fn read(&mut self) -> Result<InverterReading, SimDeviceError> {
        let site = self.0.borrow();
        answer(&site, &INVERTER_SIGNALS)?;
        let inv = &site.inverter;
        Ok(InverterReading {
            active_power: inv.power(),
            setpoint: inv.setpoint(),
            state: inv.state(),
            temperature: inv.temperature(),
            rated_power: inv.rating(),
            dc_link_voltage: site.path.dc_link_voltage(),
        })
    }

    /// Refused while the inverter is under local control: take control with
    /// [`Inverter::write_settings`] first. Restarts the revert timer.
    async fn write_setpoint(&mut self, power: Watts) -> Result<(), SimDeviceError> {
        let mut site = self.0.borrow_mut();
        check_write(&site, power)?;
        if site.inverter.control() == ControlSource::Local {
            return Err(SimDeviceError::Refused("inverter under local control"));
        }
        let now = site.elapsed().get();
        site.setpoint_writes = site.setpoint_writes.saturating_add(1);
        site.inverter.write(f64::from(power.get()), now);
        Ok(())
    }

    async fn read_settings(&mut self) -> Result<InverterSettings, SimDeviceError> {
        let site = self.0.borrow();
        answer(&site, &INVERTER_SIGNALS)?;
        Ok(site.inverter.settings())
    }

    /// A zero `revert_timeout` is out of range. Restarts the revert timer; the set-point in
    /// the settings goes through the injected set-point faults like a set-point write.
    async fn write_settings(&mut self, settings: &InverterSettings) -> Result<(), SimDeviceError> {
        let mut site = self.0.borrow_mut();
        check_write(&site, settings.setpoint)?;
        if settings.revert_timeout.is_some_and(|t| t.get() == 0) {
            return Err(SimDeviceError::OutOfRange);
        }
        let now = site.elapsed().get();
        site.settings_writes = site.settings_writes.saturating_add(1);
        site.inverter.write_settings(settings, now);
        Ok(())
    }
}

impl Meter for SimMeter {
    type Error = SimDeviceError;

    async fn read(&mut self) -> Result<MeterReading, SimDeviceError> {
        let site = self.0.borrow();
        answer(&site, &[Signal::GridPower, Signal::GridVoltageFrequency])?;
        let g = &site.grid;
        Ok(MeterReading { active_power: g.power(), voltage: g.voltage(), frequency: Some(g.frequency()) })
    }
}

impl PvInverter for SimPv {
    type Error = SimDeviceError;

    async fn read(&mut self) -> Result<PvReading, SimDeviceError> {
        let site = self.0.borrow();
        answer(&site, &[Signal::PvPower])?;
        Ok(PvReading { active_power: site.pv.power() })
    }
}

impl Relay for SimRelay {
    type Error = SimDeviceError;

    /// Energise or de-energise the coil; the contact moves at the next sub-step. Switches the
    /// automatic sequence of [`SimulatedSite::apply`] off.
    async fn set(&mut self, closed: bool) -> Result<(), SimDeviceError> {
        let mut site = self.site.borrow_mut();
        site.contactor_cmd = None;
        match self.role {
            RelayRole::Precharge => site.path.precharge_coil = closed,
            RelayRole::Main => site.path.main_coil = closed,
        }
        Ok(())
    }

    async fn feedback(&mut self) -> Result<bool, SimDeviceError> {
        let site = self.site.borrow();
        Ok(match self.role {
            RelayRole::Precharge => {
                answer(&site, &[Signal::Precharge])?;
                site.path.precharge_closed()
            }
            RelayRole::Main => {
                answer(&site, &[Signal::Contactor])?;
                site.path.main_closed()
            }
        })
    }
}

impl SimEStopPin {
    fn released(&self) -> Result<bool, SimDeviceError> {
        let site = self.0.borrow();
        answer(&site, &[Signal::EStop])?;
        Ok(matches!(site.estop.state(), ems_core::snapshot::EStopInput::Released))
    }
}

impl embedded_hal::digital::ErrorType for SimEStopPin {
    type Error = SimDeviceError;
}

impl embedded_hal::digital::InputPin for SimEStopPin {
    fn is_high(&mut self) -> Result<bool, SimDeviceError> {
        self.released()
    }

    fn is_low(&mut self) -> Result<bool, SimDeviceError> {
        self.released().map(|r| !r)
    }
}

impl EStopInput for SimEStopPin {
    type Error = SimDeviceError;

    async fn read(&mut self) -> Result<ems_core::snapshot::EStopInput, SimDeviceError> {
        let site = self.0.borrow();
        answer(&site, &[Signal::EStop])?;
        Ok(site.estop.state())
    }
}
