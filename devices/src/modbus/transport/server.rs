//! A Modbus server over a shared [`MemoryRegisters`] image.
//!
//! **Test and simulation utility**, not a production server: it serves every unit id the same
//! image and answers requests the way [`MemoryRegisters`] does (unmapped addresses and writes
//! to registers not marked writable answer `IllegalDataAddress`). Used by the transport tests,
//! the end-to-end tests and the simulated SunSpec device; update the image through the shared
//! `Arc<Mutex<_>>` from another task to make values move.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_modbus::server::Service;
use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};

use crate::modbus::{MemoryRegisters, MAX_READ_REGISTERS, MAX_WRITE_REGISTERS};

/// A `tokio-modbus` [`Service`] answering from a shared [`MemoryRegisters`]; usable with the
/// TCP server ([`serve_memory`]) and with `tokio_modbus::server::rtu::Server` (feature
/// `rtu-server`), because its request type converts from both framings.
#[derive(Debug, Clone)]
pub struct MemoryService {
    registers: Arc<Mutex<MemoryRegisters>>,
    delay: Duration,
}

impl MemoryService {
    /// A service answering at once from `registers`.
    #[must_use]
    pub fn new(registers: Arc<Mutex<MemoryRegisters>>) -> Self {
        Self { registers, delay: Duration::ZERO }
    }

    /// Wait `delay` before every answer (a slow device, for timeout tests).
    #[must_use]
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// What one request does to the image. A poisoned lock answers `ServerDeviceFailure`.
fn answer(registers: &Mutex<MemoryRegisters>, request: &Request<'_>) -> Result<Response, ExceptionCode> {
    let mut regs = registers.lock().map_err(|_| ExceptionCode::ServerDeviceFailure)?;
    regs.requests += 1;
    let read = |table: &std::collections::BTreeMap<u16, u16>,
                address: u16,
                count: u16|
     -> Result<Vec<u16>, ExceptionCode> {
        if count == 0 || count > MAX_READ_REGISTERS {
            return Err(ExceptionCode::IllegalDataValue);
        }
        (0..count)
            .map(|i| {
                address
                    .checked_add(i)
                    .and_then(|a| table.get(&a).copied())
                    .ok_or(ExceptionCode::IllegalDataAddress)
            })
            .collect()
    };
    match request {
        Request::ReadHoldingRegisters(a, n) => {
            read(&regs.holding, *a, *n).map(Response::ReadHoldingRegisters)
        }
        Request::ReadInputRegisters(a, n) => read(&regs.input, *a, *n).map(Response::ReadInputRegisters),
        Request::WriteSingleRegister(a, v) => {
            if !regs.writable.contains(a) {
                return Err(ExceptionCode::IllegalDataAddress);
            }
            regs.holding.insert(*a, *v);
            Ok(Response::WriteSingleRegister(*a, *v))
        }
        Request::WriteMultipleRegisters(a, values) => {
            let n = u16::try_from(values.len())
                .ok()
                .filter(|n| (1..=MAX_WRITE_REGISTERS).contains(n))
                .ok_or(ExceptionCode::IllegalDataValue)?;
            let addrs: Vec<u16> = (0..n)
                .map(|i| {
                    a.checked_add(i)
                        .filter(|x| regs.writable.contains(x))
                        .ok_or(ExceptionCode::IllegalDataAddress)
                })
                .collect::<Result<_, _>>()?;
            for (x, v) in addrs.into_iter().zip(values.iter()) {
                regs.holding.insert(x, *v);
            }
            Ok(Response::WriteMultipleRegisters(*a, n))
        }
        Request::ReadCoils(a, n) => {
            if *n == 0 || *n > 2000 {
                return Err(ExceptionCode::IllegalDataValue);
            }
            (0..*n)
                .map(|i| {
                    a.checked_add(i)
                        .and_then(|x| regs.coils.get(&x).copied())
                        .ok_or(ExceptionCode::IllegalDataAddress)
                })
                .collect::<Result<Vec<bool>, _>>()
                .map(Response::ReadCoils)
        }
        Request::WriteSingleCoil(a, on) => match regs.coils.get_mut(a) {
            Some(c) => {
                *c = *on;
                Ok(Response::WriteSingleCoil(*a, *on))
            }
            None => Err(ExceptionCode::IllegalDataAddress),
        },
        _ => Err(ExceptionCode::IllegalFunction),
    }
}

impl Service for MemoryService {
    type Request = SlaveRequest<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = Pin<Box<dyn Future<Output = Result<Response, ExceptionCode>> + Send>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        let result = answer(&self.registers, &req.request);
        let delay = self.delay;
        Box::pin(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            result
        })
    }
}

/// Serve `registers` over Modbus TCP on `listener` until the returned future is dropped (then
/// every open connection is closed too) or accepting fails.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// use std::sync::{Arc, Mutex};
/// use ems_devices::modbus::MemoryRegisters;
/// use ems_devices::modbus::transport::server::serve_memory;
///
/// let mut image = MemoryRegisters::default();
/// image.put(40_000, &[0x5375, 0x6e53]); // "SunS"
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let addr = listener.local_addr()?;
/// let server = tokio::spawn(serve_memory(listener, Arc::new(Mutex::new(image))));
/// // … talk to `addr`; `server.abort()` stops it.
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// As [`serve`].
pub async fn serve_memory(listener: TcpListener, registers: Arc<Mutex<MemoryRegisters>>) -> io::Result<()> {
    serve(listener, MemoryService::new(registers)).await
}

/// Serve a [`MemoryService`] (e.g. one [`MemoryService::with_delay`]) over Modbus TCP on `listener`.
///
/// # Errors
///
/// The I/O error when accepting connections on `listener` fails.
pub async fn serve(listener: TcpListener, service: MemoryService) -> io::Result<()> {
    let server = tokio_modbus::server::tcp::Server::new(listener);
    let on_connected = |stream, _addr| {
        let service = service.clone();
        async move { Ok(Some((service, stream))) }
    };
    // A connection that sends garbage is closed by the server; nothing to report to the owner.
    server.serve(&on_connected, |_err: io::Error| {}).await
}
