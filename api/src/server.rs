//! The HTTP server: our own accept loop over hyper's HTTP/1 connection, because
//! `axum::serve` has no connection limit and no header-read or idle timeout, so 1,100 idle
//! connections could keep the E-stop from being heard.
//!
//! # Limits ([`ServerLimits`])
//! - **Connections**: at most `max_connections` (default 256) at once. When a new connection
//!   arrives at the limit, the **oldest connection with no request in progress** (idle, or
//!   still sending its request head) is closed to make room: an attacker holding idle
//!   connections cannot lock out a client that actually sends a request, such as the E-stop.
//!   Only if every connection has a request in progress (or is an open WebSocket) is the new
//!   one refused: it gets a fixed `503` with a JSON body (`Retry-After: 1`, `Connection:
//!   close`), written without reading its request, and is closed. A WebSocket is not evicted
//!   (it is authenticated within 10 s or closed by `crate::ws`) and holds its slot until it
//!   ends.
//! - **Header read**: a connection must deliver a complete request head within
//!   `header_read_timeout` (default 5 s) of its accept, and later heads within the same time of
//!   their first byte; else it is closed.
//! - **Idle**: a keep-alive connection with no request for `idle_timeout` (default 60 s) is
//!   closed.
//! - **Request**: a request not answered within `request_timeout` (default 30 s) gets `503`
//!   JSON; this covers a client that sends its body slowly, too.
//!
//! hyper's own header limits (100 fields, ~400 KiB) are raised above the router's
//! ([`crate::rest::MAX_HEADER_FIELDS`], [`crate::rest::MAX_HEADER_BYTES`],
//! [`crate::rest::MAX_URI_BYTES`]) so that the router answers those refusals in JSON. What
//! hyper still refuses by itself before the router sees a request — a head it cannot parse
//! (400), a request target over 64 KiB (414), a head over its buffer (431) — it answers with an
//! empty body; the connection's writer replaces that answer with the same `{"error": ...}` JSON
//! (`json_for_hyper_error`: an error status written while no request of the router awaits its
//! response) and closes the connection.
//!
//! Each request gets the peer address as `axum::extract::ConnectInfo<SocketAddr>` (the
//! per-address rate limit in [`crate::rest`]). WebSocket upgrades work (`with_upgrades`).
//! Only HTTP/1.1 (and 1.0) is served; see the manifest for why not HTTP/2.

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tower::ServiceExt;

/// The server's limits (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Most connections at once (≥ 1). Default 256.
    pub max_connections: usize,
    /// Time to deliver a request head. Default 5 s.
    pub header_read_timeout: Duration,
    /// Time a keep-alive connection may sit without a request. Default 60 s.
    pub idle_timeout: Duration,
    /// Time to answer one request. Default 30 s.
    pub request_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_connections: 256,
            header_read_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// hyper's limits, above the router's so that the router answers first (in JSON).
const HYPER_MAX_HEADERS: usize = 256;

/// "No head started" in [`Conn::head_started`].
const NONE: u64 = u64::MAX;

/// The answer to a connection over the limit.
const BUSY: &str = "{\"error\":\"too many connections; retry in a moment\"}";

/// One connection's bookkeeping, shared by its task, its I/O wrapper and its requests.
#[derive(Debug)]
struct Conn {
    id: u64,
    in_flight: AtomicUsize,
    upgraded: AtomicBool,
    served: AtomicU64,
    /// Requests handed to the router (each is answered by one response head).
    dispatched: AtomicU64,
    /// ms since [`Registry::base`]: the accept, or the end of the last response.
    idle_since: AtomicU64,
    /// ms since [`Registry::base`] of the first byte of a request head not yet complete.
    head_started: AtomicU64,
    close: Notify,
}

#[derive(Debug)]
struct Registry {
    base: Instant,
    conns: Mutex<BTreeMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
}

impl Registry {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    /// Register a new connection, evicting the oldest one without a request in progress when
    /// at `max`; `None` when every connection is busy.
    fn admit(&self, max: usize) -> Option<Arc<Conn>> {
        // Plain map of handles; a panic elsewhere cannot leave it inconsistent.
        let mut conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
        if conns.len() >= max.max(1) {
            let victim = conns
                .values()
                .find(|c| c.in_flight.load(Ordering::Acquire) == 0 && !c.upgraded.load(Ordering::Acquire))
                .map(|c| c.id);
            let evicted = victim.and_then(|id| conns.remove(&id))?;
            // `notify_one` stores a permit: the task sees it even if not waiting right now.
            evicted.close.notify_one();
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            id,
            in_flight: AtomicUsize::new(0),
            upgraded: AtomicBool::new(false),
            served: AtomicU64::new(0),
            dispatched: AtomicU64::new(0),
            idle_since: AtomicU64::new(self.now_ms()),
            head_started: AtomicU64::new(NONE),
            close: Notify::new(),
        });
        conns.insert(id, conn.clone());
        Some(conn)
    }

    fn release(&self, id: u64) {
        self.conns.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
    }

    /// Whether `c` has outlived its header-read or idle timeout.
    fn expired(&self, c: &Conn, limits: &ServerLimits) -> bool {
        if c.in_flight.load(Ordering::Acquire) > 0 || c.upgraded.load(Ordering::Acquire) {
            return false;
        }
        let now = self.now_ms();
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(NONE);
        let head = c.head_started.load(Ordering::Acquire);
        if head != NONE {
            return now.saturating_sub(head) > ms(limits.header_read_timeout);
        }
        let idle = now.saturating_sub(c.idle_since.load(Ordering::Acquire));
        if c.served.load(Ordering::Acquire) == 0 {
            idle > ms(limits.header_read_timeout)
        } else {
            idle > ms(limits.idle_timeout)
        }
    }
}

/// The TCP stream, noting when a request head starts, and releasing the connection's slot
/// when dropped (after a WebSocket upgrade that is when the WebSocket ends).
struct Tracked {
    inner: TcpStream,
    conn: Arc<Conn>,
    registry: Arc<Registry>,
    /// Response heads (not `100 Continue`) written so far.
    heads: u64,
    /// A JSON answer replacing hyper's own, not yet written out.
    pending: Vec<u8>,
}

/// hyper answers a request it cannot parse (400), a target over its limit (414) or headers over
/// its limits (431) itself, with an empty body, before the router sees anything. `head` is the
/// start of a write; when it is such an answer (an error status while no request the router saw
/// awaits its response), the JSON answer to write instead: `{"error": ...}` like every other
/// refusal, and the connection closed.
fn json_for_hyper_error(head: &[u8], dispatched: u64, heads: u64) -> Option<Vec<u8>> {
    let status = head.strip_prefix(b"HTTP/1.1 ")?.get(..3)?;
    let code: u16 = std::str::from_utf8(status).ok()?.parse().ok()?;
    if !(400..600).contains(&code) || heads < dispatched {
        return None;
    }
    let (reason, why) = match code {
        400 => ("Bad Request", "malformed HTTP request"),
        414 => ("URI Too Long", "request target too long"),
        431 => ("Request Header Fields Too Large", "request header fields too large"),
        _ => (
            StatusCode::from_u16(code).ok()?.canonical_reason().unwrap_or("Error"),
            "the request could not be read",
        ),
    };
    let body = serde_json::json!({ "error": why }).to_string();
    Some(
        format!(
            "HTTP/1.1 {code} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

impl Tracked {
    /// Count a response head at the start of `first`; returns the JSON answer replacing it
    /// when it is hyper's own error answer.
    fn note_write(&mut self, first: &[u8]) -> Option<Vec<u8>> {
        if !first.starts_with(b"HTTP/1.1 ") || first.starts_with(b"HTTP/1.1 100") {
            return None;
        }
        let dispatched = self.conn.dispatched.load(Ordering::Acquire);
        let replacement = json_for_hyper_error(first, dispatched, self.heads);
        self.heads += 1;
        replacement
    }

    /// Write out a pending replacement; `Ready(Ok)` once it is all written.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let n = match Pin::new(&mut self.inner).poll_write(cx, &self.pending) {
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.registry.release(self.conn.id);
    }
}

impl AsyncRead for Tracked {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before
            && this.conn.in_flight.load(Ordering::Acquire) == 0
            && this.conn.head_started.load(Ordering::Acquire) == NONE
        {
            this.conn.head_started.store(this.registry.now_ms(), Ordering::Release);
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.poll_pending(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
        if let Some(json) = this.note_write(buf) {
            // hyper's empty answer is consumed whole and the JSON one written in its place.
            this.pending = json;
            return this.poll_pending(cx).map(|r| r.map(|()| buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.poll_pending(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_flush(cx),
            other => other,
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.poll_pending(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_shutdown(cx),
            other => other,
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| &b[..]);
        if this.pending.is_empty() {
            if let Some(json) = this.note_write(first) {
                this.pending = json;
                let total = bufs.iter().map(|b| b.len()).sum();
                return this.poll_pending(cx).map(|r| r.map(|()| total));
            }
        }
        match this.poll_pending(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_write_vectored(cx, bufs),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

fn timeout_response(limit: Duration) -> Response<Body> {
    let body = serde_json::json!({ "error": format!("the request was not answered within {} s", limit.as_secs_f64()) });
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// Serve `app` on `listener` within `limits` until `shutdown` resolves; then stop accepting,
/// ask every open connection to finish its current request and close, and return.
///
/// # Errors
/// Never at present (accept errors such as "too many open files" are logged and retried after
/// a short pause); the `Result` leaves room for start-up failures.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let registry = Arc::new(Registry {
        base: Instant::now(),
        conns: Mutex::new(BTreeMap::new()),
        next_id: AtomicU64::new(0),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning; the next accept may
                    // succeed once connections close.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Small answers (the E-stop) should not wait for Nagle; failure only costs latency.
        let _ = stream.set_nodelay(true);
        match registry.admit(limits.max_connections) {
            Some(conn) => {
                let io = Tracked {
                    inner: stream,
                    conn: conn.clone(),
                    registry: registry.clone(),
                    heads: 0,
                    pending: Vec::new(),
                };
                tokio::spawn(connection(io, peer, app.clone(), limits, registry.clone(), stop_rx.clone()));
            }
            None => {
                tokio::spawn(refuse(stream));
            }
        }
    }
    // Receivers may all be gone already; nothing to tell then.
    let _ = stop_tx.send(true);
    Ok(())
}

/// Answer a connection over the limit with a fixed 503 and close it.
async fn refuse(mut stream: TcpStream) {
    let msg = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{BUSY}",
        BUSY.len()
    );
    // Best effort within a second; the client may already be gone.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(msg.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
}

async fn connection(
    io: Tracked,
    peer: SocketAddr,
    app: Router,
    limits: ServerLimits,
    registry: Arc<Registry>,
    mut stop: watch::Receiver<bool>,
) {
    let conn = io.conn.clone();
    let svc = {
        let (conn, registry) = (conn.clone(), registry.clone());
        hyper::service::service_fn(move |req: Request<Incoming>| {
            // Counted before the first poll: from here on the connection is busy, not idle.
            conn.in_flight.fetch_add(1, Ordering::AcqRel);
            conn.dispatched.fetch_add(1, Ordering::AcqRel);
            conn.head_started.store(NONE, Ordering::Release);
            let (app, conn, registry) = (app.clone(), conn.clone(), registry.clone());
            async move {
                let mut req = req.map(Body::new);
                req.extensions_mut().insert(ConnectInfo(peer));
                let resp = match tokio::time::timeout(limits.request_timeout, app.oneshot(req)).await {
                    Ok(Ok(r)) => r,
                    Ok(Err(never)) => match never {},
                    Err(_) => timeout_response(limits.request_timeout),
                };
                if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                    conn.upgraded.store(true, Ordering::Release);
                }
                conn.served.fetch_add(1, Ordering::AcqRel);
                conn.idle_since.store(registry.now_ms(), Ordering::Release);
                conn.in_flight.fetch_sub(1, Ordering::AcqRel);
                Ok::<_, Infallible>(resp)
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    // Our watchdog below does the header-read timeout (hyper's needs a timer and does not
    // cover the keep-alive idle time); hyper's header limits sit above the router's.
    builder.header_read_timeout(None).max_headers(HYPER_MAX_HEADERS);
    let c = builder.serve_connection(TokioIo::new(io), svc).with_upgrades();
    tokio::pin!(c);
    let check = (limits.header_read_timeout.min(limits.idle_timeout) / 4)
        .clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut tick = tokio::time::interval(check);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stopping = false;
    loop {
        tokio::select! {
            r = &mut c => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, %peer, "connection ended with an error");
                }
                break;
            }
            () = conn.close.notified() => break,
            _ = tick.tick() => {
                if registry.expired(&conn, &limits) {
                    break;
                }
            }
            changed = stop.changed(), if !stopping => {
                // Shutdown (or the server is gone): finish the current request, then close.
                let _ = changed;
                stopping = true;
                c.as_mut().graceful_shutdown();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    // Test code: a failed unwrap or panic is a failed test with its message.
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn eviction_prefers_the_oldest_idle_connection() {
        let r =
            Registry { base: Instant::now(), conns: Mutex::new(BTreeMap::new()), next_id: AtomicU64::new(0) };
        let a = r.admit(2).unwrap();
        let b = r.admit(2).unwrap();
        a.in_flight.store(1, Ordering::Release);
        let c = r.admit(2).unwrap();
        // `b` (idle) made room; `a` (busy) stays.
        let ids: Vec<u64> = r.conns.lock().unwrap().keys().copied().collect();
        assert_eq!(ids, vec![a.id, c.id]);
        assert_ne!(b.id, c.id);
        c.upgraded.store(true, Ordering::Release);
        assert!(r.admit(2).is_none(), "every connection busy: refused");
    }
}
