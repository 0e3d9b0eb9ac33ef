//! The TCP listeners, the IP allow-list, the `tokio-modbus` service and the dispatch of control
//! writes through the API router.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Request as HttpRequest, StatusCode};
use axum::Router;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_modbus::server::Service;
use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};
use tower::ServiceExt as _;

use super::control::{Active, Controls, Limits, Target, Writable, WriteError};
use super::fill::{fill_live, fill_static, Identity, Inputs, Scales};
use super::map::{Image, MapError, RegisterMap};
use crate::control_modes::ControlModes;
use crate::model::SiteView;
use crate::state::Clock;
use ems_control::Override;

/// The most registers one read may ask for (function codes 3 and 4).
const MAX_READ: u16 = 125;
/// The most registers one write may carry (function code 16).
const MAX_WRITE: usize = 123;
/// The answer to a control write must come within this (the API's own command timeout is
/// longer, but a control-mode request never waits for the loop).
const DISPATCH_TIMEOUT: Duration = Duration::from_secs(5);

/// An address or network allowed to connect (`192.168.1.10`, `10.0.0.0/8`, `::1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllowedNet {
    /// The network address.
    pub addr: IpAddr,
    /// The prefix length (32 / 128 for one address).
    pub prefix: u8,
}

impl AllowedNet {
    /// Parse `ADDR` or `ADDR/PREFIX`.
    ///
    /// # Errors
    /// A message naming the text when it is not an address or the prefix is too long.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (a, p) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr =
            a.trim().parse().map_err(|_| format!("{text:?} is not an IP address or ADDR/PREFIX"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: prefix must be 0..={max}"))?,
        };
        Ok(Self { addr, prefix })
    }

    /// Whether `ip` lies in this network (an IPv4-mapped IPv6 peer counts as its IPv4 address).
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 @ IpAddr::V4(_) => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// What to serve and to whom (`[modbus_server]` of the site file).
#[derive(Debug, Clone, PartialEq)]
pub struct ModbusServerConfig {
    /// The read-write listener (`None`: none).
    pub listen: Option<SocketAddr>,
    /// The read-only listener: every write gets exception 2 (`None`: none).
    pub read_only_listen: Option<SocketAddr>,
    /// The unit id answered (255 is answered too, the Modbus TCP "no unit" value; other ids
    /// get exception 0x0B).
    pub unit_id: u8,
    /// Who may connect; connections from other addresses are closed at once. Empty: nobody.
    pub allow: Vec<AllowedNet>,
    /// The revert time of a control write that does not set its own (default 60 s).
    pub revert_default: Duration,
    /// The longest revert time a client may set (`…RvrtTms`).
    pub revert_max: Duration,
    /// Which control functions may be written.
    pub writable: Writable,
    /// At most this many connections at once (more are closed at once).
    pub max_connections: usize,
    /// A connection that sends no request for this long is closed (default 60 s; 100 ms ..=
    /// 1 day), so that dead or forgotten SCADA sessions do not hold the connection slots.
    pub idle_timeout: Duration,
    /// Identity and ratings.
    pub identity: Identity,
}

impl Default for ModbusServerConfig {
    fn default() -> Self {
        Self {
            listen: None,
            read_only_listen: None,
            unit_id: 1,
            allow: vec![
                AllowedNet { addr: IpAddr::from([127, 0, 0, 1]), prefix: 32 },
                AllowedNet { addr: IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]), prefix: 128 },
            ],
            revert_default: Duration::from_secs(60),
            revert_max: Duration::from_secs(3600),
            writable: Writable::default(),
            max_connections: 16,
            idle_timeout: Duration::from_secs(60),
            identity: Identity::default(),
        }
    }
}

/// What the server needs of the API.
#[derive(Clone)]
pub struct ServerContext {
    /// The API router (control writes are dispatched through it).
    pub router: Router,
    /// The bearer token control writes carry (a token of the role the site file gives the
    /// server; its name is the audit actor).
    pub token: String,
    /// The site view the loop publishes.
    pub view: watch::Receiver<SiteView>,
    /// The control modes (read back: the mode in effect).
    pub modes: Arc<Mutex<ControlModes>>,
    /// The API's clock (the control modes' time).
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for ServerContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerContext")
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The register map could not be built.
    #[error("register map: {0}")]
    Map(#[from] MapError),
    /// A listener could not be bound.
    #[error("Modbus server: cannot listen on {addr}: {error}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        error: std::io::Error,
    },
    /// The configuration is not usable.
    #[error("Modbus server: {0}")]
    Config(String),
}

struct Core {
    image: Image,
    controls: Controls,
    ctrl_hb_at: Option<Instant>,
}

struct Shared {
    map: &'static RegisterMap,
    core: Mutex<Core>,
    writes: tokio::sync::Mutex<()>,
    ctx: ServerContext,
    config: ModbusServerConfig,
    limits: Limits,
    started: Instant,
    connections: AtomicUsize,
}

impl Shared {
    fn core(&self) -> std::sync::MutexGuard<'_, Core> {
        // Plain data; a panic while holding it leaves registers, not broken invariants.
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn active_mode(&self) -> Option<crate::control_modes::ActiveMode> {
        let now = self.ctx.clock.now();
        let modes = self.ctx.modes.lock().unwrap_or_else(PoisonError::into_inner);
        modes.active(now).copied()
    }

    /// Refresh the live registers from the view and the mode in effect.
    fn refresh(&self, core: &mut Core) {
        let view = self.ctx.view.borrow().clone();
        let active = self.active_mode();
        let Core { image, controls, ctrl_hb_at } = core;
        let inputs = Inputs {
            view: &view,
            active: active.as_ref(),
            controls,
            limits: &self.limits,
            revert_default_s: secs(self.config.revert_default),
            capacity_wh: self.config.identity.capacity_wh,
            uptime_s: self.started.elapsed().as_secs(),
            ctrl_hb_age_s: ctrl_hb_at.map(|t| t.elapsed().as_secs()),
            now: self.ctx.clock.now(),
        };
        fill_live(self.map, image, &inputs);
    }

    fn active(&self) -> Active {
        match self.active_mode().map(|m| m.mode) {
            Some(Override::ForceCharge { .. }) => Active { wset: true, wmax_lim_pct: false },
            Some(Override::LimitDischarge { .. }) => Active { wset: false, wmax_lim_pct: true },
            Some(Override::NoDischarge | Override::LimitCharge { .. }) | None => Active::default(),
        }
    }
}

fn secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

/// A running server: its listeners' addresses; dropping it stops them.
#[derive(Debug)]
pub struct ModbusServer {
    listen: Option<SocketAddr>,
    read_only: Option<SocketAddr>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for ModbusServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl ModbusServer {
    /// Bind the listeners and serve on the current tokio runtime.
    ///
    /// # Errors
    /// [`StartError`].
    pub async fn start(config: ModbusServerConfig, ctx: ServerContext) -> Result<Self, StartError> {
        let map = RegisterMap::get()?;
        if !(config.identity.rating_w.is_finite() && config.identity.rating_w > 0.0) {
            return Err(StartError::Config(format!(
                "rating_w must be > 0 W, got {}",
                config.identity.rating_w
            )));
        }
        if config.revert_default.is_zero() || config.revert_default > config.revert_max {
            return Err(StartError::Config(format!(
                "revert_default must be 1 s ..= revert_max ({} s), got {} s",
                config.revert_max.as_secs(),
                config.revert_default.as_secs()
            )));
        }
        if config.idle_timeout < Duration::from_millis(100)
            || config.idle_timeout > Duration::from_secs(86_400)
        {
            return Err(StartError::Config(format!(
                "idle_timeout must be 0.1 s ..= 86400 s, got {} s",
                config.idle_timeout.as_secs_f64()
            )));
        }
        let scales = Scales::for_site(&config.identity);
        let mut image = Image::new(map);
        fill_static(map, &mut image, &config.identity, scales, config.unit_id);
        let limits = Limits { rating_w: config.identity.rating_w, revert_max_s: secs(config.revert_max) };
        let shared = Arc::new(Shared {
            map,
            core: Mutex::new(Core {
                image,
                controls: Controls::new(secs(config.revert_default)),
                ctrl_hb_at: None,
            }),
            writes: tokio::sync::Mutex::new(()),
            ctx,
            limits,
            started: Instant::now(),
            connections: AtomicUsize::new(0),
            config,
        });
        let mut out = Self { listen: None, read_only: None, tasks: Vec::new() };
        for (addr, read_only) in [(shared.config.listen, false), (shared.config.read_only_listen, true)] {
            let Some(addr) = addr else { continue };
            let listener =
                TcpListener::bind(addr).await.map_err(|error| StartError::Listen { addr, error })?;
            let bound = listener.local_addr().map_err(|error| StartError::Listen { addr, error })?;
            if read_only {
                out.read_only = Some(bound);
            } else {
                out.listen = Some(bound);
            }
            tracing::info!(%bound, read_only, "SunSpec Modbus server listening");
            out.tasks.push(tokio::spawn(serve(listener, shared.clone(), read_only)));
        }
        Ok(out)
    }

    /// The read-write listener's address.
    #[must_use]
    pub const fn addr(&self) -> Option<SocketAddr> {
        self.listen
    }

    /// The read-only listener's address.
    #[must_use]
    pub const fn read_only_addr(&self) -> Option<SocketAddr> {
        self.read_only
    }
}

/// A connection's stream, counted while it lives, closed when idle: no byte from the client and
/// no answer to it for `idle_timeout` ends the read with `TimedOut`, and tokio-modbus then
/// closes the connection. A request in progress (a control write waiting for the API) is not
/// idle: its answer restarts the timer.
struct Counted {
    stream: TcpStream,
    shared: Arc<Shared>,
    peer: SocketAddr,
    idle: Pin<Box<tokio::time::Sleep>>,
}

impl Counted {
    fn touch(&mut self) {
        let at = tokio::time::Instant::now() + self.shared.config.idle_timeout;
        self.idle.as_mut().reset(at);
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.shared.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                self.touch();
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                if self.idle.as_mut().poll(cx).is_ready() {
                    tracing::info!(peer = %self.peer, "Modbus connection closed: idle");
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "idle Modbus connection",
                    )));
                }
                Poll::Pending
            }
            other => other,
        }
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>, read_only: bool) {
    let server = tokio_modbus::server::tcp::Server::new(listener);
    let on_connected = |stream: TcpStream, peer: SocketAddr| {
        let shared = shared.clone();
        async move {
            if !shared.config.allow.iter().any(|n| n.contains(peer.ip())) {
                tracing::warn!(%peer, "Modbus connection refused: address not on the allow-list");
                return Ok(None);
            }
            if shared.connections.fetch_add(1, Ordering::Relaxed) >= shared.config.max_connections {
                shared.connections.fetch_sub(1, Ordering::Relaxed);
                tracing::warn!(%peer, "Modbus connection refused: connection limit reached");
                return Ok(None);
            }
            let conn = Connection { shared: shared.clone(), peer, read_only };
            let idle = Box::pin(tokio::time::sleep(shared.config.idle_timeout));
            Ok(Some((conn, Counted { stream, shared, peer, idle })))
        }
    };
    // A connection that sends garbage is closed by tokio-modbus; nothing else to do.
    if let Err(e) = server.serve(&on_connected, |_e: std::io::Error| {}).await {
        tracing::error!("Modbus server stopped: {e}");
    }
}

/// One client connection.
#[derive(Clone)]
struct Connection {
    shared: Arc<Shared>,
    peer: SocketAddr,
    read_only: bool,
}

type Answer = Result<Response, ExceptionCode>;

impl Service for Connection {
    type Request = SlaveRequest<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = Pin<Box<dyn Future<Output = Answer> + Send>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.answer(req).await })
    }
}

impl Connection {
    async fn answer(&self, req: SlaveRequest<'static>) -> Answer {
        let unit = self.shared.config.unit_id;
        if req.slave != unit && req.slave != 255 {
            return Err(ExceptionCode::GatewayTargetDevice);
        }
        match req.request {
            Request::ReadHoldingRegisters(address, n) => {
                self.read(address, n).map(Response::ReadHoldingRegisters)
            }
            // FC 4 mirrors FC 3: clients that read measurements as input registers find the
            // same SunSpec image at the same addresses.
            Request::ReadInputRegisters(address, n) => {
                self.read(address, n).map(Response::ReadInputRegisters)
            }
            Request::WriteSingleRegister(address, value) => {
                self.write(address, &[value]).await.map(|()| Response::WriteSingleRegister(address, value))
            }
            Request::WriteMultipleRegisters(address, values) => {
                if values.is_empty() || values.len() > MAX_WRITE {
                    return Err(ExceptionCode::IllegalDataValue);
                }
                let n = u16::try_from(values.len()).map_err(|_| ExceptionCode::IllegalDataValue)?;
                self.write(address, &values).await.map(|()| Response::WriteMultipleRegisters(address, n))
            }
            _ => Err(ExceptionCode::IllegalFunction),
        }
    }

    fn read(&self, address: u16, n: u16) -> Result<Vec<u16>, ExceptionCode> {
        if n == 0 || n > MAX_READ {
            return Err(ExceptionCode::IllegalDataValue);
        }
        let mut core = self.shared.core();
        self.shared.refresh(&mut core);
        core.image.read(address, n).map(<[u16]>::to_vec).ok_or(ExceptionCode::IllegalDataAddress)
    }

    async fn write(&self, address: u16, values: &[u16]) -> Result<(), ExceptionCode> {
        if self.read_only {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        let shared = &self.shared;
        // One write at a time: the plan, the API's answer and the commit belong together.
        let _one = shared.writes.lock().await;
        let active = shared.active();
        let planned = {
            let core = shared.core();
            let target = Target {
                map: shared.map,
                image: &core.image,
                writable: &shared.config.writable,
                limits: &shared.limits,
            };
            core.controls.plan(&target, active, address, values)
        }
        .map_err(|e| match e {
            WriteError::IllegalAddress => ExceptionCode::IllegalDataAddress,
            WriteError::IllegalValue => ExceptionCode::IllegalDataValue,
        })?;
        if let Some(d) = &planned.dispatch {
            self.dispatch(&d.body()).await?;
        }
        let mut core = shared.core();
        core.controls = planned.next;
        if planned.heartbeat {
            core.ctrl_hb_at = Some(Instant::now());
        }
        shared.refresh(&mut core);
        Ok(())
    }

    /// `POST /api/v1/control-modes` through the router, as the server's token, from the
    /// client's address (the API's per-address rate limit applies to it).
    async fn dispatch(&self, body: &Value) -> Result<(), ExceptionCode> {
        let ctx = &self.shared.ctx;
        let req = HttpRequest::builder()
            .method("POST")
            .uri("/api/v1/control-modes")
            .header(header::AUTHORIZATION, format!("Bearer {}", ctx.token))
            .header(header::CONTENT_TYPE, "application/json")
            .extension(ConnectInfo(self.peer))
            .body(Body::from(body.to_string()))
            .map_err(|_| ExceptionCode::ServerDeviceFailure)?;
        let resp = tokio::time::timeout(DISPATCH_TIMEOUT, ctx.router.clone().oneshot(req))
            .await
            .map_err(|_| ExceptionCode::ServerDeviceBusy)?
            .map_err(|_| ExceptionCode::ServerDeviceFailure)?;
        let status = resp.status();
        if status.is_success() {
            tracing::info!(peer = %self.peer, %body, "Modbus control write applied");
            return Ok(());
        }
        let detail = axum::body::to_bytes(resp.into_body(), 16 * 1024).await.unwrap_or_default();
        tracing::warn!(
            peer = %self.peer, %body, %status, answer = %String::from_utf8_lossy(&detail),
            "Modbus control write refused by the API"
        );
        Err(match status {
            StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY | StatusCode::CONFLICT => {
                ExceptionCode::IllegalDataValue
            }
            StatusCode::TOO_MANY_REQUESTS => ExceptionCode::ServerDeviceBusy,
            _ => ExceptionCode::ServerDeviceFailure,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list_entries_match_addresses_and_networks() {
        let one = AllowedNet::parse("127.0.0.2").unwrap();
        assert!(one.contains("127.0.0.2".parse().unwrap()));
        assert!(!one.contains("127.0.0.1".parse().unwrap()));
        let net = AllowedNet::parse("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(AllowedNet::parse("0.0.0.0/0").unwrap().contains("192.0.2.1".parse().unwrap()));
        assert!(AllowedNet::parse("10.0.0.0/33").is_err());
        assert!(AllowedNet::parse("scada").is_err());
    }
}
