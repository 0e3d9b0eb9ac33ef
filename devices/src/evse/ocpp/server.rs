//! [`CentralSystem`]: the accept loop and one task per charge point connection.
//!
//! Every connection runs in its own task with its own bounded command queue, so a slow or
//! malicious charge point cannot block another one. Frames over `max_frame_bytes` are refused
//! by the WebSocket layer (the connection is closed), more than `max_messages_per_second`
//! messages in one second close the connection, and every malformed message is answered with a
//! CALLERROR (`FormationViolation`, `ProtocolError`, `NotImplemented`) until `max_malformed` of
//! them close the connection.

use super::config::CentralSystemConfig;
use super::hub::{lock, Hub};
use super::messages::{rfc3339_now, SUBPROTOCOL};
use super::messages::{
    AuthorizeReq, BootNotificationReq, Frame, FrameError, MeterValuesReq, StartTransactionReq,
    StatusNotificationReq, StopTransactionReq,
};
use super::point::OcppError;
use super::point::{OcppEvse, Point, Request};
use crate::evse::events::EvseEvent;
use ems_core::Millis;
use futures_util::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::server::{
    ErrorResponse, Request as HsRequest, Response as HsResponse,
};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// What the accept loop and the connection tasks share beyond the [`Hub`].
#[derive(Debug)]
struct Shared {
    hub: Arc<Hub>,
    points: Mutex<HashMap<String, Arc<Point>>>,
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
    closers: Mutex<HashMap<String, Arc<Notify>>>,
}

/// The OCPP 1.6J central system.
#[derive(Debug)]
pub struct CentralSystem {
    shared: Arc<Shared>,
    addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl Drop for CentralSystem {
    fn drop(&mut self) {
        self.accept.abort();
        for t in lock(&self.shared.tasks).drain(..) {
            t.abort();
        }
    }
}

impl CentralSystem {
    /// Bind `addr` and start accepting charge points (on the current tokio runtime).
    ///
    /// # Errors
    /// `std::io::Error` when the address cannot be bound; an invalid config is
    /// `ErrorKind::InvalidInput` with the [`ConfigError`] text.
    pub async fn bind(addr: SocketAddr, config: CentralSystemConfig) -> std::io::Result<Self> {
        config
            .validate()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            hub: Arc::new(Hub::new(config)),
            points: Mutex::new(HashMap::new()),
            tasks: Mutex::new(Vec::new()),
            closers: Mutex::new(HashMap::new()),
        });
        let s = Arc::clone(&shared);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _peer)) = listener.accept().await else { continue };
                let s2 = Arc::clone(&s);
                let task = tokio::spawn(async move { serve(s2, stream).await });
                let mut tasks = lock(&s.tasks);
                tasks.retain(|t| !t.is_finished());
                tasks.push(task.abort_handle());
            }
        });
        Ok(Self { shared, addr, accept })
    }

    /// The address it listens on.
    #[must_use]
    pub const fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The charge point `id`, if it ever connected.
    #[must_use]
    pub fn charge_point(&self, id: &str) -> Option<OcppEvse> {
        let point = lock(&self.shared.points).get(id).cloned()?;
        Some(OcppEvse { point, shared: Arc::clone(&self.shared.hub) })
    }

    /// The ids of the known charge points, sorted.
    #[must_use]
    pub fn ids(&self) -> Vec<String> {
        let mut v: Vec<String> = lock(&self.shared.points).keys().cloned().collect();
        v.sort();
        v
    }

    /// Take the buffered events.
    pub fn drain_events(&self) -> Vec<(Millis, EvseEvent)> {
        lock(&self.shared.hub.events).drain()
    }

    /// Close the connection of charge point `id` (the link is lost as far as it can tell).
    pub fn disconnect(&self, id: &str) {
        if let Some(n) = lock(&self.shared.closers).get(id) {
            n.notify_one();
        }
    }

    /// Monotonic time since the central system started.
    #[must_use]
    pub fn now(&self) -> Millis {
        self.shared.hub.now()
    }
}

/// Accept only `/<id>` with a sane id and the `ocpp1.6` subprotocol.
// The error type is fixed by tungstenite's `Callback` trait.
#[allow(clippy::result_large_err)]
fn check_handshake(
    req: &HsRequest,
    mut resp: HsResponse,
    id_out: &mut Option<String>,
) -> Result<HsResponse, ErrorResponse> {
    let refuse = |code: StatusCode, why: &str| {
        let mut r = ErrorResponse::new(Some(why.to_owned()));
        *r.status_mut() = code;
        r
    };
    let path = req.uri().path();
    let id = path.strip_prefix('/').unwrap_or_default();
    let id_ok = !id.is_empty()
        && id.len() <= 48
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    if !id_ok {
        return Err(refuse(StatusCode::NOT_FOUND, "expected /<charge point id>"));
    }
    let offered = req
        .headers()
        .get_all("Sec-WebSocket-Protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == SUBPROTOCOL);
    if !offered {
        return Err(refuse(StatusCode::BAD_REQUEST, "subprotocol ocpp1.6 required"));
    }
    resp.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static(SUBPROTOCOL));
    *id_out = Some(id.to_owned());
    Ok(resp)
}

/// Register the point, or `None` when the table is full.
fn register(shared: &Shared, id: &str) -> Option<Arc<Point>> {
    let mut points = lock(&shared.points);
    if let Some(p) = points.get(id) {
        return Some(Arc::clone(p));
    }
    if points.len() >= shared.hub.config.max_charge_points {
        return None;
    }
    let p = Arc::new(Point::new(id.to_owned()));
    points.insert(id.to_owned(), Arc::clone(&p));
    Some(p)
}

async fn serve(shared: Arc<Shared>, stream: TcpStream) {
    let cfg = &shared.hub.config;
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(cfg.max_frame_bytes))
        .max_frame_size(Some(cfg.max_frame_bytes));
    let mut id: Option<String> = None;
    // The error type is fixed by tungstenite's `Callback` trait.
    #[allow(clippy::result_large_err)]
    let hs = tokio_tungstenite::accept_hdr_async_with_config(
        stream,
        |req: &HsRequest, resp: HsResponse| check_handshake(req, resp, &mut id),
        Some(ws_config),
    );
    let ws = match tokio::time::timeout(cfg.handshake_timeout, hs).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            shared.hub.event(EvseEvent::OcppRefused {
                id: id.unwrap_or_default(),
                reason: format!("handshake: {e}"),
            });
            return;
        }
        Err(_) => {
            shared.hub.event(EvseEvent::OcppRefused {
                id: id.unwrap_or_default(),
                reason: "handshake timeout".to_owned(),
            });
            return;
        }
    };
    let Some(id) = id else { return };
    let Some(point) = register(&shared, &id) else {
        shared.hub.event(EvseEvent::OcppRefused { id, reason: "too many charge points".to_owned() });
        return;
    };
    Connection::run(shared, point, ws).await;
}

/// A call in flight from the central system.
struct Pending {
    id: String,
    deadline: Instant,
    reply: Option<oneshot::Sender<Result<Value, OcppError>>>,
}

struct Connection {
    hub: Arc<Hub>,
    point: Arc<Point>,
    ws: WebSocketStream<TcpStream>,
    internal: VecDeque<Request>,
    pending: Option<Pending>,
    next_id: u64,
    window_start: Instant,
    window_count: u32,
    malformed: u32,
}

enum Flow {
    Continue,
    Close(String),
}

impl Connection {
    async fn run(shared: Arc<Shared>, point: Arc<Point>, ws: WebSocketStream<TcpStream>) {
        let (tx, mut rx) = mpsc::channel(shared.hub.config.queue_depth);
        let closer = Arc::new(Notify::new());
        // A new connection replaces an old one of the same id (a reconnecting charge point).
        if let Some(old) = lock(&shared.closers).insert(point.id.clone(), Arc::clone(&closer)) {
            old.notify_one();
        }
        let generation = {
            let mut g = lock(&point.generation);
            *g = g.wrapping_add(1);
            *g
        };
        *lock(&point.sender) = Some(tx);
        point.state().online = true;
        shared.hub.event(EvseEvent::OcppConnected { id: point.id.clone() });
        let silence = shared.hub.config.offline_after;
        let mut conn = Self {
            hub: Arc::clone(&shared.hub),
            point: Arc::clone(&point),
            ws,
            internal: VecDeque::new(),
            pending: None,
            next_id: 0,
            window_start: Instant::now(),
            window_count: 0,
            malformed: 0,
        };
        // Silence counts from the last frame received, whatever the central system sent since.
        let mut last_rx = Instant::now();
        let reason = loop {
            let deadline = conn.pending.as_ref().map(|p| p.deadline);
            let idle = conn.pending.is_none();
            let flow = tokio::select! {
                msg = conn.ws.next() => match msg {
                    None => Flow::Close("closed".to_owned()),
                    Some(Err(e)) => Flow::Close(format!("link error: {e}")),
                    Some(Ok(m)) => {
                        last_rx = Instant::now();
                        conn.on_message(m).await
                    }
                },
                () = tokio::time::sleep_until(last_rx + silence) => {
                    Flow::Close(format!("silent for {:.1} s", silence.as_secs_f32()))
                },
                req = rx.recv(), if idle && conn.internal.is_empty() => match req {
                    Some(r) => conn.send_call(r).await,
                    None => Flow::Close("handle closed".to_owned()),
                },
                () = async {}, if idle && !conn.internal.is_empty() => {
                    match conn.internal.pop_front() {
                        Some(r) => conn.send_call(r).await,
                        None => Flow::Continue,
                    }
                },
                () = sleep_until_opt(deadline) => {
                    if let Some(p) = conn.pending.take() {
                        if let Some(reply) = p.reply { let _ = reply.send(Err(OcppError::Timeout)); }
                    }
                    Flow::Continue
                },
                () = closer.notified() => Flow::Close("disconnected by the central system".to_owned()),
            };
            if let Flow::Close(r) = flow {
                break r;
            }
        };
        let _ = conn.ws.close(None).await;
        if let Some(p) = conn.pending.take() {
            if let Some(reply) = p.reply {
                let _ = reply.send(Err(OcppError::Offline));
            }
        }
        // Only the newest connection of this id marks it offline.
        if *lock(&point.generation) == generation {
            *lock(&point.sender) = None;
            point.state().online = false;
            lock(&shared.closers).remove(&point.id);
            shared.hub.event(EvseEvent::OcppOffline { id: point.id.clone(), reason });
        }
    }

    async fn send_text(&mut self, text: String) -> Flow {
        match self.ws.send(Message::text(text)).await {
            Ok(()) => Flow::Continue,
            Err(e) => Flow::Close(format!("send failed: {e}")),
        }
    }

    async fn send_call(&mut self, req: Request) -> Flow {
        self.next_id = self.next_id.wrapping_add(1);
        let id = format!("cs-{}", self.next_id);
        let frame = Frame::Call { id: id.clone(), action: req.action.to_owned(), payload: req.payload };
        self.pending =
            Some(Pending { id, deadline: Instant::now() + self.hub.config.call_timeout, reply: req.reply });
        self.send_text(frame.to_text()).await
    }

    fn flood(&mut self) -> bool {
        let now = Instant::now();
        if now.duration_since(self.window_start) >= Duration::from_secs(1) {
            self.window_start = now;
            self.window_count = 0;
        }
        self.window_count = self.window_count.saturating_add(1);
        self.window_count > self.hub.config.max_messages_per_second
    }

    async fn on_message(&mut self, msg: Message) -> Flow {
        let text = match msg {
            Message::Text(t) => t.to_string(),
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => return Flow::Continue,
            Message::Close(_) => return Flow::Close("closed by the charge point".to_owned()),
            Message::Binary(_) => {
                return self
                    .call_error(FrameError {
                        id: "-1".to_owned(),
                        code: "FormationViolation",
                        description: "binary frames are not OCPP-J".to_owned(),
                    })
                    .await
            }
        };
        if self.flood() {
            let reason = "message flood".to_owned();
            self.hub.event(EvseEvent::OcppRefused { id: self.point.id.clone(), reason: reason.clone() });
            return Flow::Close(reason);
        }
        match Frame::parse(&text) {
            Err(e) => self.call_error(e).await,
            Ok(Frame::Call { id, action, payload }) => match self.handle_call(&action, payload) {
                Ok(conf) => {
                    let flow = self.send_text(Frame::CallResult { id, payload: conf }.to_text()).await;
                    self.after_call(&action);
                    flow
                }
                Err((code, description)) => self.call_error(FrameError { id, code, description }).await,
            },
            Ok(Frame::CallResult { id, payload }) => {
                self.answer(&id, Ok(payload));
                Flow::Continue
            }
            Ok(Frame::CallError { id, code, description }) => {
                self.answer(&id, Err(OcppError::CallError { code, description }));
                Flow::Continue
            }
        }
    }

    fn answer(&mut self, id: &str, result: Result<Value, OcppError>) {
        if self.pending.as_ref().is_some_and(|p| p.id == id) {
            if let Some(reply) = self.pending.take().and_then(|p| p.reply) {
                let _ = reply.send(result);
            }
        }
    }

    async fn call_error(&mut self, e: FrameError) -> Flow {
        self.malformed = self.malformed.saturating_add(1);
        self.hub.event(EvseEvent::OcppCallError { id: self.point.id.clone(), code: e.code });
        let flow = self
            .send_text(
                Frame::CallError { id: e.id, code: e.code.to_owned(), description: e.description }.to_text(),
            )
            .await;
        if self.malformed > self.hub.config.max_malformed {
            let reason = "too many malformed messages".to_owned();
            self.hub.event(EvseEvent::OcppRefused { id: self.point.id.clone(), reason: reason.clone() });
            return Flow::Close(reason);
        }
        flow
    }

    /// After answering a BootNotification, queue the fallback profiles.
    fn after_call(&mut self, action: &str) {
        if action == "BootNotification" && self.hub.config.install_fallback {
            let evse = OcppEvse { point: Arc::clone(&self.point), shared: Arc::clone(&self.hub) };
            // The handle's calls go through this very task's queue, so run them from a
            // separate task; the queue delivers them once the reply above is sent.
            tokio::spawn(async move {
                if evse.install_fallback().await.is_err() {
                    evse.shared.event(EvseEvent::OcppProfileNotApplied {
                        id: evse.point.id.clone(),
                        commanded: evse.shared.config.fallback_current,
                        reported: None,
                    });
                }
            });
        }
    }

    fn authorized(&self, tag: &str) -> bool {
        self.hub.config.id_tags.as_ref().is_none_or(|tags| tags.iter().any(|t| t == tag))
    }

    fn handle_call(&mut self, action: &str, payload: Value) -> Result<Value, (&'static str, String)> {
        let id = self.point.id.clone();
        match action {
            "BootNotification" => {
                let req: BootNotificationReq = decode(payload)?;
                {
                    let mut st = self.point.state();
                    st.booted = true;
                    st.fallback_installed = false;
                    st.vendor_model = Some((req.charge_point_vendor.clone(), req.charge_point_model.clone()));
                    st.serial.clone_from(&req.charge_point_serial_number);
                    st.firmware.clone_from(&req.firmware_version);
                }
                self.hub.event(EvseEvent::OcppBooted {
                    id,
                    vendor: req.charge_point_vendor,
                    model: req.charge_point_model,
                });
                Ok(json!({
                    "status": "Accepted",
                    "currentTime": rfc3339_now(),
                    "interval": self.hub.config.heartbeat_interval_secs,
                }))
            }
            "Heartbeat" => {
                let mut st = self.point.state();
                st.heartbeats = st.heartbeats.saturating_add(1);
                Ok(json!({"currentTime": rfc3339_now()}))
            }
            "StatusNotification" => {
                let req: StatusNotificationReq = decode(payload)?;
                if req.connector_id == 1 {
                    self.point.state().connector_status = Some(req.status.clone());
                    let status = super::point::status_from_ocpp_pub(Some(&req.status));
                    self.hub.event(EvseEvent::OcppStatus { id, status });
                }
                Ok(json!({}))
            }
            "MeterValues" => {
                let req: MeterValuesReq = decode(payload)?;
                let now = self.hub.now();
                if let Some(power) = self.point.meter_values(&req, now, &self.hub) {
                    self.hub.event(EvseEvent::OcppZeroIgnored { id, power });
                }
                Ok(json!({}))
            }
            "Authorize" => {
                let req: AuthorizeReq = decode(payload)?;
                let status = if self.authorized(&req.id_tag) { "Accepted" } else { "Invalid" };
                Ok(json!({"idTagInfo": {"status": status}}))
            }
            "StartTransaction" => {
                let req: StartTransactionReq = decode(payload)?;
                if !self.authorized(&req.id_tag) {
                    return Ok(json!({"transactionId": 0, "idTagInfo": {"status": "Invalid"}}));
                }
                let tx = self.hub.next_tx.fetch_add(1, Ordering::Relaxed);
                {
                    let mut st = self.point.state();
                    st.transaction = Some(tx);
                    // i64 Wh → f64: exact below 2^53 Wh.
                    #[allow(clippy::cast_precision_loss)]
                    let start = req.meter_start as f64;
                    st.meter_start = Some(start);
                    st.energy_register = Some(start);
                }
                self.hub.event(EvseEvent::OcppTransactionStarted { id, transaction: tx });
                Ok(json!({"transactionId": tx, "idTagInfo": {"status": "Accepted"}}))
            }
            "StopTransaction" => {
                let req: StopTransactionReq = decode(payload)?;
                {
                    let mut st = self.point.state();
                    if st.transaction == Some(req.transaction_id) {
                        st.transaction = None;
                    }
                    #[allow(clippy::cast_precision_loss)]
                    let stop = req.meter_stop as f64;
                    st.energy_register = Some(stop);
                }
                self.hub.event(EvseEvent::OcppTransactionStopped { id, transaction: req.transaction_id });
                Ok(json!({"idTagInfo": {"status": "Accepted"}}))
            }
            _ => Err(("NotImplemented", format!("action {action} is not supported"))),
        }
    }
}

fn decode<T: DeserializeOwned>(payload: Value) -> Result<T, (&'static str, String)> {
    serde_json::from_value(payload).map_err(|e| ("FormationViolation", e.to_string()))
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
