//! The `tokio-modbus` transports: the only module that knows `tokio-modbus`.
//!
//! * [`TcpClient`], [`RtuClient`] and [`AnyClient`]: [`RegisterClient`](crate::modbus::RegisterClient)
//!   implementations with a unit id, a per-request timeout and a supervised connection (lazy
//!   connect; on a link error the connection is dropped and re-opened on a later call after an
//!   exponential backoff, during which calls fail fast; [`ConnectionStats`]). The two levels of
//!   failure are kept exactly: `tokio-modbus`'s transport/protocol errors and timeouts become
//!   [`LinkError`](crate::modbus::LinkError), its exception codes become
//!   [`ModbusException`](crate::modbus::ModbusException) inside `Ok`.
//! * [`ModbusEndpoint`]: the `modbus-tcp://HOST:PORT` and `modbus-rtu:///dev/tty…?baud=…` URLs.
//! * [`batch`]: [`ReadPlan`] and [`execute`], merging wanted ranges into ≤ 125-register reads.
//! * [`poll`]: [`Poller`], per-device poll intervals.
//! * [`server`]: a Modbus TCP server over a shared `MemoryRegisters` — a **test and simulation
//!   utility** for loopback tests and simulated devices.

pub mod batch;
mod client;
pub mod endpoint;
pub mod poll;
pub mod server;

pub use batch::{execute, BatchResult, PlanError, ReadPlan, ReadRequest, WantedRange};
pub use client::{AnyClient, ClientOptions, ConnectionStats, RtuClient, TcpClient};
pub use endpoint::{EndpointError, ModbusEndpoint, Parity, SerialSettings, StopBits, DEFAULT_TCP_PORT};
pub use poll::Poller;
