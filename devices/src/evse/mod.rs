//! EV chargers (EVSE): the [`Evse`] device trait, its vocabulary ([`types`]), the safety wrapper
//! [`safe::SafeEvse`], the OCPP 1.6J central system ([`ocpp`]) whose charge points implement
//! [`Evse`], the Phoenix Contact EM-CP-PP-ETH Modbus driver ([`phoenix`]), and (feature `sim`) a simulated EV and charger ([`sim`]).
//!
//! A later loadpoint drives any of them the same way: read the status and meter, command a
//! current limit in 0.1 A steps through [`safe::SafeEvse`], which clamps it to the circuit,
//! verifies it was applied and falls back to a safe current when it is no longer renewed.

pub mod events;
pub mod ocpp;
pub mod phoenix;
pub mod safe;
#[cfg(feature = "sim")]
pub mod sim;
pub mod types;

pub use events::EvseEvent;
pub use safe::{SafeEvse, SafeEvseConfig};
pub use types::{DeciAmps, DeciAmpsError, EvseCapabilities, EvseReading, EvseStatus, Phases};

use crate::traits::DeviceError;

/// An EV charger (one connector).
///
/// As the other device traits (`crate::traits`): every method is fallible, the driver's error
/// maps onto the shared `ErrorKind`, and the futures carry no `Send` bound.
#[allow(async_fn_in_trait)]
pub trait Evse {
    /// The driver's error.
    type Error: DeviceError;
    /// What the charge point supports.
    fn capabilities(&self) -> EvseCapabilities;
    /// Read status, phases, currents, power, session energy and the applied limit.
    async fn read(&mut self) -> Result<EvseReading, Self::Error>;
    /// Enable or disable charging (a disabled charge point draws no current whatever the limit).
    async fn set_enabled(&mut self, enabled: bool) -> Result<(), Self::Error>;
    /// Set the current limit per phase; below the minimum current the vehicle stops charging.
    async fn set_current_limit(&mut self, limit: DeciAmps) -> Result<(), Self::Error>;
    /// Switch the phases (refused with `ErrorKind::Refused` without phase switching).
    async fn set_phases(&mut self, phases: Phases) -> Result<(), Self::Error>;
}
