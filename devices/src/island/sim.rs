//! The island devices of the simulated island plant ([`SimIsland`]): one handle per device,
//! sharing the plant (`Rc<RefCell>`, borrowed for one synchronous call at a time, never across
//! an `.await` — the rule of [`crate::sim::SharedSite`]).

use super::{
    GridModeCommand, GridModeInverter, GridModeReading, GridTieBreaker, InverterGridMode, PhaseAngle,
};
use crate::sim::island::{SimBreakerCommand, SimInverterMode, SimIsland};
use crate::sim::SimDeviceError;
use crate::traits::Relay;
use core::cell::RefCell;
use ems_core::snapshot::GridTie;
use std::rc::Rc;

/// A [`SimIsland`] shared between whoever steps it (the test, the simulated site's hook) and
/// its device handles.
#[derive(Debug, Clone)]
pub struct SharedIsland(Rc<RefCell<SimIsland>>);

impl SharedIsland {
    /// Share `plant`.
    #[must_use]
    pub fn new(plant: SimIsland) -> Self {
        Self(Rc::new(RefCell::new(plant)))
    }

    /// Read the plant.
    pub fn with<T>(&self, f: impl FnOnce(&SimIsland) -> T) -> T {
        f(&self.0.borrow())
    }

    /// Change the plant (step it, inject a fault).
    pub fn with_mut<T>(&self, f: impl FnOnce(&mut SimIsland) -> T) -> T {
        f(&mut self.0.borrow_mut())
    }

    /// The breaker's handle.
    #[must_use]
    pub fn breaker(&self) -> SimIslandBreaker {
        SimIslandBreaker(self.clone())
    }

    /// The inverter's grid-mode handle.
    #[must_use]
    pub fn inverter(&self) -> SimIslandInverter {
        SimIslandInverter(self.clone())
    }

    /// One relay handle per load circuit, in order.
    #[must_use]
    pub fn relays(&self) -> Vec<SimIslandRelay> {
        let n = self.with(|p| p.loads().len());
        (0..n).map(|i| SimIslandRelay(self.clone(), i)).collect()
    }
}

/// The simulated grid-tie breaker. A lost read-back answers a timeout.
#[derive(Debug, Clone)]
pub struct SimIslandBreaker(SharedIsland);

impl GridTieBreaker for SimIslandBreaker {
    type Error = SimDeviceError;

    async fn position(&mut self) -> Result<GridTie, SimDeviceError> {
        self.0.with(|p| p.readings().breaker).ok_or(SimDeviceError::Refused("breaker read-back lost"))
    }

    async fn open(&mut self) -> Result<(), SimDeviceError> {
        self.0.with_mut(|p| p.command_breaker(SimBreakerCommand::Open));
        Ok(())
    }

    async fn close(&mut self) -> Result<(), SimDeviceError> {
        self.0.with_mut(|p| p.command_breaker(SimBreakerCommand::Close));
        Ok(())
    }
}

/// The simulated inverter's grid-mode control; it measures both sides of the breaker.
#[derive(Debug, Clone)]
pub struct SimIslandInverter(SharedIsland);

impl GridModeInverter for SimIslandInverter {
    type Error = SimDeviceError;

    async fn read(&mut self) -> Result<GridModeReading, SimDeviceError> {
        let r = self.0.with(SimIsland::readings);
        let mode = match r.inverter {
            SimInverterMode::Off => InverterGridMode::Off,
            SimInverterMode::GridFollowing => InverterGridMode::GridFollowing,
            SimInverterMode::GridForming | SimInverterMode::Synchronise => InverterGridMode::GridForming,
        };
        Ok(GridModeReading {
            mode,
            fault: r.inverter_fault,
            bus_voltage: Some(r.bus_voltage),
            bus_frequency: r.bus_frequency,
            grid_voltage: r.grid_voltage,
            // A dead grid reads 0 V and no frequency: the sequence must see the loss, so the
            // meter's (unaware) frequency must not stand in for it.
            grid_frequency: r.grid_frequency,
            phase_difference: r.phase_difference.and_then(|d| PhaseAngle::try_new(d).ok()),
            ac_power: Some(r.inverter_power),
            available: Some(r.available),
        })
    }

    async fn set_mode(&mut self, mode: GridModeCommand) -> Result<(), SimDeviceError> {
        let m = match mode {
            GridModeCommand::Off => SimInverterMode::Off,
            GridModeCommand::GridFollowing => SimInverterMode::GridFollowing,
            GridModeCommand::GridForming => SimInverterMode::GridForming,
            GridModeCommand::Synchronise => SimInverterMode::Synchronise,
        };
        self.0.with_mut(|p| p.command_mode(m));
        Ok(())
    }
}

/// One simulated load relay (its feedback is the contact: a stuck relay reads where it is).
#[derive(Debug, Clone)]
pub struct SimIslandRelay(SharedIsland, usize);

impl Relay for SimIslandRelay {
    type Error = SimDeviceError;

    async fn set(&mut self, closed: bool) -> Result<(), SimDeviceError> {
        let i = self.1;
        self.0.with_mut(|p| p.set_relay(i, closed));
        Ok(())
    }

    async fn feedback(&mut self) -> Result<bool, SimDeviceError> {
        let i = self.1;
        Ok(self.0.with(|p| p.loads().get(i).is_some_and(|l| l.on)))
    }
}
