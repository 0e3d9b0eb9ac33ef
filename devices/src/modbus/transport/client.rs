//! Supervised `tokio-modbus` clients: lazy connect, per-request timeout, reconnect with
//! exponential backoff, connection statistics.

use core::fmt;
use std::time::Duration;

use tokio::time::Instant;
use tokio_modbus::client::{Context, Reader, Writer};
use tokio_modbus::slave::SlaveContext;
use tokio_modbus::Slave;

use super::endpoint::{ModbusEndpoint, Parity, SerialSettings, StopBits};
use crate::modbus::{
    LinkError, ModbusException, RegisterAddress, RegisterClient, RegisterKind, MAX_READ_REGISTERS,
    MAX_WRITE_REGISTERS,
};

/// Timing of a supervised connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientOptions {
    /// How long one request may take before it fails with [`LinkError::Timeout`] (default 1 s).
    pub timeout: Duration,
    /// How long opening the connection may take (default 3 s).
    pub connect_timeout: Duration,
    /// The wait after the first link error before the next connect attempt (default 100 ms).
    pub backoff_initial: Duration,
    /// The longest wait between connect attempts; the wait doubles up to this (default 30 s).
    pub backoff_max: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(3),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
        }
    }
}

/// Counters of one supervised connection since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionStats {
    /// Requests sent on the wire (reads and writes).
    pub requests: u64,
    /// Requests the device answered with an exception (the link is fine).
    pub exceptions: u64,
    /// Link errors: failed connects, timeouts, I/O and protocol errors.
    pub failures: u64,
    /// The part of `failures` that were request timeouts.
    pub timeouts: u64,
    /// Successful connects.
    pub connects: u64,
    /// Successful connects after the first one.
    pub reconnects: u64,
    /// Calls refused without touching the device because the reconnect backoff had not elapsed.
    pub fast_fails: u64,
    /// Requests abandoned in flight by their caller (the connection was renewed after each).
    pub cancelled: u64,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn link_error(e: tokio_modbus::Error) -> LinkError {
    match e {
        tokio_modbus::Error::Transport(io) => LinkError::Io(io.to_string()),
        tokio_modbus::Error::Protocol(p) => LinkError::Protocol(p.to_string()),
    }
}

/// The connection state machine shared by [`TcpClient`] and [`RtuClient`].
struct Supervisor {
    endpoint: ModbusEndpoint,
    unit: u8,
    options: ClientOptions,
    ctx: Option<Context>,
    /// A request was started and never settled: its future was dropped (the E-stop watch
    /// abandons device I/O in flight). Its answer may still arrive, so the connection is
    /// closed before the next request rather than read out of step.
    in_flight: bool,
    /// No connect attempt before this instant (set after every link error).
    retry_at: Option<Instant>,
    next_delay: Duration,
    stats: ConnectionStats,
}

impl fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Supervisor")
            .field("endpoint", &self.endpoint)
            .field("unit", &self.unit)
            .field("connected", &self.ctx.is_some())
            .field("retry_at", &self.retry_at)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Supervisor {
    fn new(endpoint: ModbusEndpoint, unit: u8, options: ClientOptions) -> Self {
        Self {
            endpoint,
            unit,
            options,
            ctx: None,
            in_flight: false,
            retry_at: None,
            next_delay: options.backoff_initial,
            stats: ConnectionStats::default(),
        }
    }

    async fn open(&self) -> Result<Context, String> {
        match &self.endpoint {
            ModbusEndpoint::Tcp { host, port } => {
                let addrs =
                    tokio::net::lookup_host((host.as_str(), *port)).await.map_err(|e| e.to_string())?;
                let mut last = format!("{host} resolved to no address");
                for addr in addrs {
                    match tokio_modbus::client::tcp::connect_slave(addr, Slave(self.unit)).await {
                        Ok(ctx) => return Ok(ctx),
                        Err(e) => last = e.to_string(),
                    }
                }
                Err(last)
            }
            ModbusEndpoint::Rtu(s) => {
                let stream =
                    tokio_serial::SerialStream::open(&serial_builder(s)).map_err(|e| e.to_string())?;
                Ok(tokio_modbus::client::rtu::attach_slave(stream, Slave(self.unit)))
            }
        }
    }

    /// Schedules the next connect attempt and returns the wait in ms.
    fn back_off(&mut self) -> u64 {
        let d = self.next_delay;
        self.retry_at = Some(Instant::now() + d);
        self.next_delay = d.saturating_mul(2).min(self.options.backoff_max).max(self.options.backoff_initial);
        millis(d)
    }

    async fn connected(&mut self) -> Result<&mut Context, LinkError> {
        if std::mem::take(&mut self.in_flight) {
            // Not a link failure: no backoff, just a fresh connection.
            self.ctx = None;
            self.stats.cancelled += 1;
        }
        if self.ctx.is_none() {
            if let Some(at) = self.retry_at {
                let now = Instant::now();
                if now < at {
                    self.stats.fast_fails += 1;
                    return Err(LinkError::Disconnected(format!("reconnect in {} ms", millis(at - now))));
                }
            }
            let why = match tokio::time::timeout(self.options.connect_timeout, self.open()).await {
                Ok(Ok(ctx)) => {
                    if self.stats.connects > 0 {
                        self.stats.reconnects += 1;
                    }
                    self.stats.connects += 1;
                    self.retry_at = None;
                    self.ctx = Some(ctx);
                    None
                }
                Ok(Err(e)) => Some(e),
                Err(_) => Some(format!("timed out after {} ms", millis(self.options.connect_timeout))),
            };
            if let Some(why) = why {
                self.stats.failures += 1;
                let wait = self.back_off();
                return Err(LinkError::Disconnected(format!(
                    "connect to {} failed: {why}; reconnect in {wait} ms",
                    self.endpoint
                )));
            }
        }
        self.ctx.as_mut().ok_or_else(|| LinkError::Disconnected("not connected".into()))
    }

    /// Books the outcome of one request: an exception keeps the connection, a link error drops
    /// it and starts the backoff.
    fn settle<T>(
        &mut self,
        outcome: Result<tokio_modbus::Result<T>, tokio::time::error::Elapsed>,
    ) -> Result<Result<T, ModbusException>, LinkError> {
        let result = match outcome {
            Ok(Ok(Ok(v))) => Ok(Ok(v)),
            Ok(Ok(Err(code))) => {
                self.stats.exceptions += 1;
                Ok(Err(ModbusException::from_code(u8::from(code))))
            }
            Ok(Err(e)) => Err(link_error(e)),
            Err(_) => {
                self.stats.timeouts += 1;
                Err(LinkError::Timeout(millis(self.options.timeout)))
            }
        };
        if result.is_ok() {
            self.next_delay = self.options.backoff_initial;
        } else {
            self.fail();
        }
        result
    }

    fn fail(&mut self) {
        // Dropping the context closes the socket or port; a late answer to a timed-out request
        // can then never be taken for the answer to the next one.
        self.ctx = None;
        self.stats.failures += 1;
        self.back_off();
    }

    async fn read(
        &mut self,
        kind: RegisterKind,
        address: RegisterAddress,
        count: u16,
    ) -> Result<Result<Vec<u16>, ModbusException>, LinkError> {
        if count == 0 || count > MAX_READ_REGISTERS {
            return Ok(Err(ModbusException::IllegalDataValue));
        }
        let timeout = self.options.timeout;
        self.connected().await?;
        self.in_flight = true;
        let ctx = self.ctx.as_mut().ok_or_else(|| LinkError::Disconnected("not connected".into()))?;
        let outcome = match kind {
            RegisterKind::Holding => {
                tokio::time::timeout(timeout, ctx.read_holding_registers(address.0, count)).await
            }
            RegisterKind::Input => {
                tokio::time::timeout(timeout, ctx.read_input_registers(address.0, count)).await
            }
        };
        self.in_flight = false;
        self.stats.requests += 1;
        match self.settle(outcome)? {
            Ok(values) if values.len() != usize::from(count) => {
                self.fail();
                Err(LinkError::Protocol(format!(
                    "asked for {count} registers at {address}, got {}",
                    values.len()
                )))
            }
            other => Ok(other),
        }
    }

    async fn write(
        &mut self,
        address: RegisterAddress,
        values: &[u16],
    ) -> Result<Result<(), ModbusException>, LinkError> {
        if values.is_empty() || values.len() > usize::from(MAX_WRITE_REGISTERS) {
            return Ok(Err(ModbusException::IllegalDataValue));
        }
        let timeout = self.options.timeout;
        self.connected().await?;
        self.in_flight = true;
        let ctx = self.ctx.as_mut().ok_or_else(|| LinkError::Disconnected("not connected".into()))?;
        let outcome = tokio::time::timeout(timeout, ctx.write_multiple_registers(address.0, values)).await;
        self.in_flight = false;
        self.stats.requests += 1;
        self.settle(outcome)
    }

    async fn read_coil(
        &mut self,
        address: RegisterAddress,
    ) -> Result<Result<bool, ModbusException>, LinkError> {
        let timeout = self.options.timeout;
        self.connected().await?;
        self.in_flight = true;
        let ctx = self.ctx.as_mut().ok_or_else(|| LinkError::Disconnected("not connected".into()))?;
        let outcome = tokio::time::timeout(timeout, ctx.read_coils(address.0, 1)).await;
        self.in_flight = false;
        self.stats.requests += 1;
        match self.settle(outcome)? {
            Ok(bits) => match bits.first() {
                Some(b) => Ok(Ok(*b)),
                None => {
                    self.fail();
                    Err(LinkError::Protocol(format!("asked for 1 coil at {address}, got none")))
                }
            },
            Err(e) => Ok(Err(e)),
        }
    }

    async fn write_coil(
        &mut self,
        address: RegisterAddress,
        on: bool,
    ) -> Result<Result<(), ModbusException>, LinkError> {
        let timeout = self.options.timeout;
        self.connected().await?;
        self.in_flight = true;
        let ctx = self.ctx.as_mut().ok_or_else(|| LinkError::Disconnected("not connected".into()))?;
        let outcome = tokio::time::timeout(timeout, ctx.write_single_coil(address.0, on)).await;
        self.in_flight = false;
        self.stats.requests += 1;
        self.settle(outcome)
    }

    fn set_unit(&mut self, unit: u8) {
        self.unit = unit;
        if let Some(ctx) = self.ctx.as_mut() {
            ctx.set_slave(Slave(unit));
        }
    }

    fn disconnect(&mut self) {
        self.ctx = None;
        self.retry_at = None;
    }
}

fn serial_builder(s: &SerialSettings) -> tokio_serial::SerialPortBuilder {
    let parity = match s.parity {
        Parity::None => tokio_serial::Parity::None,
        Parity::Even => tokio_serial::Parity::Even,
        Parity::Odd => tokio_serial::Parity::Odd,
    };
    let stop_bits = match s.stop_bits {
        StopBits::One => tokio_serial::StopBits::One,
        StopBits::Two => tokio_serial::StopBits::Two,
    };
    let data_bits = match s.data_bits {
        5 => tokio_serial::DataBits::Five,
        6 => tokio_serial::DataBits::Six,
        7 => tokio_serial::DataBits::Seven,
        _ => tokio_serial::DataBits::Eight,
    };
    tokio_serial::new(s.path.as_str(), s.baud).parity(parity).stop_bits(stop_bits).data_bits(data_bits)
}

macro_rules! supervised_client {
    ($name:ident) => {
        impl $name {
            /// Counters since construction.
            #[must_use]
            pub fn stats(&self) -> ConnectionStats {
                self.0.stats
            }

            /// Whether a connection is open now (it opens lazily on the first call).
            #[must_use]
            pub fn is_connected(&self) -> bool {
                self.0.ctx.is_some()
            }

            /// The endpoint this client talks to.
            #[must_use]
            pub fn endpoint(&self) -> &ModbusEndpoint {
                &self.0.endpoint
            }

            /// The unit (slave) id requests go to.
            #[must_use]
            pub fn unit(&self) -> u8 {
                self.0.unit
            }

            /// Address another unit behind the same connection (a TCP gateway or an RTU bus).
            pub fn set_unit(&mut self, unit: u8) {
                self.0.set_unit(unit);
            }

            /// Close the connection; the next call connects again at once (no backoff).
            pub fn disconnect(&mut self) {
                self.0.disconnect();
            }
        }

        impl RegisterClient for $name {
            /// Reads on the wire. A `count` outside 1..=125 is answered locally with
            /// `IllegalDataValue`, as a device would, without a request.
            async fn read(
                &mut self,
                kind: RegisterKind,
                address: RegisterAddress,
                count: u16,
            ) -> Result<Result<Vec<u16>, ModbusException>, LinkError> {
                self.0.read(kind, address, count).await
            }

            /// Function code 16. An empty or over-long (> 123) `values` is answered locally with
            /// `IllegalDataValue`, as a device would, without a request.
            async fn write(
                &mut self,
                address: RegisterAddress,
                values: &[u16],
            ) -> Result<Result<(), ModbusException>, LinkError> {
                self.0.write(address, values).await
            }

            /// Function code 1, one coil.
            async fn read_coil(
                &mut self,
                address: RegisterAddress,
            ) -> Result<Result<bool, ModbusException>, LinkError> {
                self.0.read_coil(address).await
            }

            /// Function code 5.
            async fn write_coil(
                &mut self,
                address: RegisterAddress,
                on: bool,
            ) -> Result<Result<(), ModbusException>, LinkError> {
                self.0.write_coil(address, on).await
            }
        }
    };
}

/// A supervised Modbus TCP client for one unit.
///
/// Connects lazily on the first call. Each request has [`ClientOptions::timeout`]; a link error
/// (timeout, I/O, malformed answer) drops the connection, and the next connect is attempted no
/// earlier than the backoff (100 ms doubling to 30 s by default) — calls made before then fail at
/// once with [`LinkError::Disconnected`] ("reconnect in N ms") instead of hammering the device.
/// An exception answer keeps the connection and resets the backoff.
#[derive(Debug)]
pub struct TcpClient(Supervisor);

impl TcpClient {
    /// A client for `unit` at `host:port`; does not connect yet.
    #[must_use]
    pub fn new(host: impl Into<String>, port: u16, unit: u8, options: ClientOptions) -> Self {
        Self(Supervisor::new(ModbusEndpoint::Tcp { host: host.into(), port }, unit, options))
    }
}

supervised_client!(TcpClient);

/// A supervised Modbus RTU client for one unit on a serial line: the same supervision as
/// [`TcpClient`]; "connect" opens the serial device.
///
/// One `RtuClient` owns the port: for several units on one bus use [`RtuClient::set_unit`]
/// between requests rather than a second client on the same device.
#[derive(Debug)]
pub struct RtuClient(Supervisor);

impl RtuClient {
    /// A client for `unit` on the serial line `settings`; does not open the port yet.
    #[must_use]
    pub fn new(settings: SerialSettings, unit: u8, options: ClientOptions) -> Self {
        Self(Supervisor::new(ModbusEndpoint::Rtu(settings), unit, options))
    }
}

supervised_client!(RtuClient);

/// A TCP or RTU client chosen by the endpoint URL ([`RegisterClient`] uses native `async fn`,
/// so it is not dyn-compatible; this enum takes the place of a `Box<dyn …>`).
#[derive(Debug)]
pub enum AnyClient {
    /// Modbus TCP.
    Tcp(TcpClient),
    /// Modbus RTU.
    Rtu(RtuClient),
}

impl AnyClient {
    /// The client for `endpoint` and `unit`; does not connect yet.
    #[must_use]
    pub fn new(endpoint: &ModbusEndpoint, unit: u8, options: ClientOptions) -> Self {
        match endpoint {
            ModbusEndpoint::Tcp { host, port } => {
                Self::Tcp(TcpClient::new(host.clone(), *port, unit, options))
            }
            ModbusEndpoint::Rtu(s) => Self::Rtu(RtuClient::new(s.clone(), unit, options)),
        }
    }

    /// Counters since construction.
    #[must_use]
    pub fn stats(&self) -> ConnectionStats {
        match self {
            Self::Tcp(c) => c.stats(),
            Self::Rtu(c) => c.stats(),
        }
    }

    /// Whether a connection is open now.
    #[must_use]
    pub fn is_connected(&self) -> bool {
        match self {
            Self::Tcp(c) => c.is_connected(),
            Self::Rtu(c) => c.is_connected(),
        }
    }

    /// The endpoint this client talks to.
    #[must_use]
    pub fn endpoint(&self) -> &ModbusEndpoint {
        match self {
            Self::Tcp(c) => c.endpoint(),
            Self::Rtu(c) => c.endpoint(),
        }
    }

    /// Address another unit behind the same connection.
    pub fn set_unit(&mut self, unit: u8) {
        match self {
            Self::Tcp(c) => c.set_unit(unit),
            Self::Rtu(c) => c.set_unit(unit),
        }
    }
}

impl RegisterClient for AnyClient {
    async fn read(
        &mut self,
        kind: RegisterKind,
        address: RegisterAddress,
        count: u16,
    ) -> Result<Result<Vec<u16>, ModbusException>, LinkError> {
        match self {
            Self::Tcp(c) => c.read(kind, address, count).await,
            Self::Rtu(c) => c.read(kind, address, count).await,
        }
    }

    async fn write(
        &mut self,
        address: RegisterAddress,
        values: &[u16],
    ) -> Result<Result<(), ModbusException>, LinkError> {
        match self {
            Self::Tcp(c) => c.write(address, values).await,
            Self::Rtu(c) => c.write(address, values).await,
        }
    }

    async fn read_coil(
        &mut self,
        address: RegisterAddress,
    ) -> Result<Result<bool, ModbusException>, LinkError> {
        match self {
            Self::Tcp(c) => c.read_coil(address).await,
            Self::Rtu(c) => c.read_coil(address).await,
        }
    }

    async fn write_coil(
        &mut self,
        address: RegisterAddress,
        on: bool,
    ) -> Result<Result<(), ModbusException>, LinkError> {
        match self {
            Self::Tcp(c) => c.write_coil(address, on).await,
            Self::Rtu(c) => c.write_coil(address, on).await,
        }
    }
}
