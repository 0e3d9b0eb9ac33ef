//! `ems-devices`: the device layer of the EMS.
//!
//! * [`traits`]: the device traits (`Bms`, `Inverter`, `Meter`, `PvSource`, `Contactor`,
//!   `EStopInput`) that Modbus drivers and simulated devices implement, with the shared
//!   [`traits::ErrorKind`].
//! * [`sim`]: simulated devices with physics (LFP pack + BMS, inverter, contactor, PV from TMY3
//!   irradiance, BDEW household load, grid meter, E-stop) composed into
//!   [`sim::SimulatedSite`], with fault injection and energy counters.
//! * [`data`]: the reference data embedded at compile time and their parsers.
//!
//! Later: safety wrappers and Modbus/SunSpec drivers.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod data;
pub mod estop;
pub mod io;
pub mod sim;
pub mod traits;
pub mod wrappers;

pub use sim::{SimError, SimFault, SimSiteConfig, SimulatedSite, SiteTruth};
