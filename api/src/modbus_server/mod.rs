//! The SunSpec Modbus TCP server for SCADA and other EMSs (issue #14, item 2).
//!
//! The site is served as a SunSpec device: the `SunS` marker at holding-register address
//! **40000 (0-based PDU address; "40001" in the 1-based convention of vendor documents)**, then
//! models 1 (common), 701 (DER AC measurement), 702 (DER capacity), 704 (DER controls), 713
//! (storage capacity), 802 (battery), the vendor model 64900 (EMS state, active limits, the
//! command and its source, latched faults, heartbeats) and the end model. The layout comes
//! from the official JSON definitions ([`map`]); values from the site view the loop publishes
//! and the control mode in effect ([`fill`]).
//!
//! Writes ([`control`]) are accepted only for an allow-list of control points, are volatile and
//! expire with a revert timer; each is translated into the REST control-mode request
//! (`POST /api/v1/control-modes` with a `duration`) and dispatched **through the API router**
//! in-process with the server's own bearer token, so that roles, validation, rate limits,
//! audit and the watchdog are the REST API's; the controller's final clamp bounds what it asks
//! for like any control mode. What was applied is read back into model 704. Anything else gets
//! exception 2 (illegal address) or 3 (illegal value); a read-only listener refuses every
//! write (exception 2); connections from addresses outside the allow-list are closed at once.
//!
//! The server runs on the API's tokio runtime; it never touches the control thread: it reads
//! the `watch` view and takes the control modes' mutex for a few microseconds, as the REST
//! handlers do.

pub mod control;
pub mod fill;
#[cfg(any(test, feature = "_fuzz"))]
pub mod fuzz;
pub mod map;
mod server;

pub use control::{Writable, WRITABLE_NAMES};
pub use fill::Identity;
pub use map::{RegisterMap, BASE_ADDRESS, VENDOR_MODEL_ID};
pub use server::{AllowedNet, ModbusServer, ModbusServerConfig, ServerContext, StartError};
