//! Simulated devices with physics, composed into a [`SimulatedSite`].
//!
//! The physics are stepped through [`SimulatedSite`]; the device layer reaches them through
//! [`SharedSite::devices`], one handle per device ([`SimBms`], [`SimInverter`], [`SimMeter`],
//! [`SimPv`], two [`SimRelay`]s and the [`SimEStopPin`]), each implementing its trait from
//! [`crate::traits`] (the E-stop pin implements `embedded_hal::digital::InputPin`).
//!
//! The models are deliberately simple but physically consistent (energy balance holds every
//! step, the battery cannot leave 0..=100 % SOC) and cheap: one `advance(1 s)` plus
//! `fill_snapshot` costs well under a microsecond, with no allocation. See `devices/README.md`
//! for the equations and parameters.

pub mod battery;
mod calendar;
mod handles;
pub mod island;
pub mod parts;
mod physics;
mod site;

pub use battery::{
    ocv_cell, SimBattery, SimChemistry, SimPack, CELLS_IN_SERIES, CELL_NOMINAL_VOLTAGE, NMC_OCV_KNOTS,
    OCV_KNOTS,
};
pub use calendar::{Calendar, DAY_MS, YEAR_DAYS};
pub use handles::{
    RelayRole, SharedSite, SimBms, SimDeviceError, SimDevices, SimEStopPin, SimInverter, SimMeter, SimPv,
    SimRelay,
};
pub use parts::{
    dynamisation, EStopButton, InverterModel, PowerPath, PvArray, SimGridMeter, SimLoad, DC_LINK_BLEED_TAU,
    DELAY_QUEUE, INRUSH_THRESHOLD, PRECHARGED_WITHIN, PRECHARGE_TAU,
};
pub use site::{Ambient, EnergyCounters, SimError, SimFault, SimSiteConfig, SimulatedSite, SiteTruth};
