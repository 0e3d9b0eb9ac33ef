//! Device-trait access to a [`SimulatedSite`] through small borrowing handles.
//!
//! Reading handles borrow the site shared (`site.bms()`), writing handles borrow it mutably
//! (`site.inverter()`, `site.contactor()`). A read of a device with any signal under
//! [`SimFault::SensorDropout`](super::SimFault::SensorDropout) fails with
//! [`ErrorKind::Timeout`]; a set-point beyond the rating is refused with
//! [`ErrorKind::OutOfRange`]; any write to a faulted inverter with [`ErrorKind::Refused`].

use super::site::SimulatedSite;
use crate::traits::{
    Bms, BmsReading, Contactor, ContactorReading, DeviceError, EStopInput, ErrorKind, Inverter,
    InverterReading, Meter, MeterReading, PvSource,
};
use ems_core::event::Signal;
use ems_core::snapshot::InverterState;
use ems_core::Watts;

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

fn answer(site: &SimulatedSite, signals: &[Signal]) -> Result<(), SimDeviceError> {
    match signals.iter().find(|s| site.dropped(**s)) {
        Some(s) => Err(SimDeviceError::Dropout(*s)),
        None => Ok(()),
    }
}

/// The simulated BMS, as a [`Bms`].
#[derive(Debug, Clone, Copy)]
pub struct SimBmsHandle<'a>(&'a SimulatedSite);
/// The simulated inverter, as an [`Inverter`].
#[derive(Debug)]
pub struct SimInverterHandle<'a>(&'a mut SimulatedSite);
/// The simulated grid meter, as a [`Meter`].
#[derive(Debug, Clone, Copy)]
pub struct SimMeterHandle<'a>(&'a SimulatedSite);
/// The simulated PV, as a [`PvSource`].
#[derive(Debug, Clone, Copy)]
pub struct SimPvHandle<'a>(&'a SimulatedSite);
/// The simulated contactor, as a [`Contactor`].
#[derive(Debug)]
pub struct SimContactorHandle<'a>(&'a mut SimulatedSite);
/// The simulated E-stop input, as an [`EStopInput`].
#[derive(Debug, Clone, Copy)]
pub struct SimEStopHandle<'a>(&'a SimulatedSite);

impl SimulatedSite {
    /// The BMS as a device.
    #[must_use]
    pub fn bms(&self) -> SimBmsHandle<'_> {
        SimBmsHandle(self)
    }

    /// The battery inverter as a device (writes go to the set-point of the next interval).
    pub fn inverter(&mut self) -> SimInverterHandle<'_> {
        SimInverterHandle(self)
    }

    /// The grid meter as a device.
    #[must_use]
    pub fn meter(&self) -> SimMeterHandle<'_> {
        SimMeterHandle(self)
    }

    /// The PV as a device.
    #[must_use]
    pub fn pv(&self) -> SimPvHandle<'_> {
        SimPvHandle(self)
    }

    /// The contactor as a device.
    pub fn contactor(&mut self) -> SimContactorHandle<'_> {
        SimContactorHandle(self)
    }

    /// The E-stop input as a device.
    #[must_use]
    pub fn estop(&self) -> SimEStopHandle<'_> {
        SimEStopHandle(self)
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

impl Bms for SimBmsHandle<'_> {
    type Error = SimDeviceError;

    async fn read(&mut self) -> Result<BmsReading, SimDeviceError> {
        answer(self.0, &BMS_SIGNALS)?;
        let b = &self.0.battery;
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
}

impl Inverter for SimInverterHandle<'_> {
    type Error = SimDeviceError;

    async fn read(&mut self) -> Result<InverterReading, SimDeviceError> {
        answer(self.0, &[Signal::InverterPower, Signal::InverterState, Signal::InverterTemperature])?;
        let inv = &self.0.inverter;
        Ok(InverterReading {
            active_power: inv.power(),
            state: inv.state(),
            temperature: inv.temperature(),
            rated_power: inv.rating(),
        })
    }

    async fn write_setpoint(&mut self, power: Watts) -> Result<(), SimDeviceError> {
        if self.0.inverter.faulted || matches!(self.0.inverter.state(), InverterState::Fault) {
            return Err(SimDeviceError::Refused("inverter in fault"));
        }
        if power.abs() > self.0.inverter.rating() {
            return Err(SimDeviceError::OutOfRange);
        }
        self.0.setpoint = f64::from(power.get());
        Ok(())
    }
}

impl Meter for SimMeterHandle<'_> {
    type Error = SimDeviceError;

    async fn read(&mut self) -> Result<MeterReading, SimDeviceError> {
        answer(self.0, &[Signal::GridPower, Signal::GridVoltageFrequency])?;
        let g = &self.0.grid;
        Ok(MeterReading { active_power: g.power(), voltage: g.voltage(), frequency: g.frequency() })
    }
}

impl PvSource for SimPvHandle<'_> {
    type Error = SimDeviceError;

    async fn read(&mut self) -> Result<Watts, SimDeviceError> {
        answer(self.0, &[Signal::PvPower])?;
        Ok(self.0.pv.power())
    }
}

impl Contactor for SimContactorHandle<'_> {
    type Error = SimDeviceError;

    async fn read(&mut self) -> Result<ContactorReading, SimDeviceError> {
        answer(self.0, &[Signal::Contactor, Signal::Precharge])?;
        let c = &self.0.contactor;
        Ok(ContactorReading { state: c.state(), precharge_done: c.precharge_done() })
    }

    async fn open(&mut self) -> Result<(), SimDeviceError> {
        self.0.contactor_cmd = Some(false);
        self.0.contactor.command(Some(false));
        Ok(())
    }

    async fn close(&mut self) -> Result<(), SimDeviceError> {
        self.0.contactor_cmd = Some(true);
        Ok(())
    }
}

impl EStopInput for SimEStopHandle<'_> {
    type Error = SimDeviceError;

    async fn read(&mut self) -> Result<ems_core::snapshot::EStopInput, SimDeviceError> {
        answer(self.0, &[Signal::EStop])?;
        Ok(self.0.estop.state())
    }
}
