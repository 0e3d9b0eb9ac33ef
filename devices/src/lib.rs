//! `ems-devices`: the device layer of the EMS.
//!
//! * [`traits`]: the device traits (`Bms`, `Inverter`, `Meter`, `PvInverter`, `Relay`,
//!   `EStopInput`) that Modbus drivers and simulated devices implement, with the shared
//!   [`traits::ErrorKind`].
//! * [`wrappers`]: the device safety layer — BMS reading validation and comm-loss fallback,
//!   inverter set-point validation, ramp, write budget, read-back verification and control
//!   lease, contactor pre-charge sequencing with weld detection, rate limiting, device events.
//! * [`io`]: [`io::DeviceSet`], one control cycle of reads and writes through the wrappers, with
//!   the E-stop fast path.
//! * [`estop`]: E-stop inputs through `embedded-hal` digital pins (Linux GPIO behind the
//!   `linux-gpio` feature); [`gpio`]: relays (coil output + feedback input) the same way.
//! * `sim` (feature `sim`, off by default): simulated devices with physics (LFP pack + BMS,
//!   inverter, relays and DC link, PV from TMY3 irradiance, BDEW household load, grid meter,
//!   E-stop) composed into `sim::SimulatedSite`, with per-device handles, fault injection and
//!   energy counters. The test rig, the benches and the gateway's simulated site enable it; a
//!   production gateway does not link it.
//! * [`polled`]: [`polled::Polled`], a device read at most once per interval whose reused
//!   reading keeps its own age.
//! * [`frequency`]: the grid-frequency source of the grid services' fast path
//!   (`FrequencySource`, the Modbus register driver, the `FrequencyInput` wrapper with quality
//!   and maximum age; the simulated source behind `sim`).
//! * [`island`]: the island devices (grid-tie breaker, the inverter's grid mode, load relays)
//!   with their Modbus drivers, the read-back wrapper `IslandDevices` and the simulated handles
//!   over the island plant behind `sim`.
//! * [`evse`]: EV chargers — the `Evse` trait, the `SafeEvse` wrapper (circuit limits, read-back,
//!   lease with fallback current, write budget), the OCPP 1.6J central system whose charge points
//!   implement `Evse`, and the simulated EV and charger behind `sim`.
//! * [`p1`]: P1 smart meters (DSMR 4/5, ESMR 5): the CRC-checked telegram parser and the P1
//!   port (TCP dongle or serial) as a grid meter.
//! * [`identify`]: device recognition for `ems-gateway scan` (shipped profiles' identification
//!   registers and plausible readings, the Phoenix charge controller).
//! * [`data`]: the reference data embedded at compile time and their parsers.
//!
//! * [`modbus`]: the Modbus seam (`RegisterClient`), `tokio-modbus` transports, SunSpec and
//!   register-map profile drivers.
#![forbid(unsafe_code)]

pub mod data;
pub mod estop;
pub mod evse;
pub mod frequency;
pub mod gpio;
pub mod identify;
pub mod io;
pub mod island;
pub mod modbus;
mod narrow;
pub mod p1;
pub mod polled;
#[cfg(feature = "sim")]
pub mod sim;
pub mod traits;
pub mod wrappers;

pub use polled::Polled;
#[cfg(feature = "sim")]
pub use sim::{SimError, SimFault, SimSiteConfig, SimulatedSite, SiteTruth};
