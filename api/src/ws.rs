//! The live WebSocket `GET /api/v1/live`: the latest site view pushed as it changes, at most
//! [`MAX_RATE_HZ`] times a second.
//!
//! # Authentication
//!
//! Browsers cannot set an `Authorization` header on a WebSocket, so the token may come in any
//! of three ways (first match wins):
//!
//! 1. the query parameter `?token=<token>` (beware: URLs end up in logs and browser history);
//! 2. an `Authorization: Bearer <token>` header on the upgrade request (non-browser clients);
//! 3. the first text message `{"token": "<token>"}` (recommended for browsers), which may also
//!    carry the first `"subscribe"`. It must arrive within [`AUTH_TIMEOUT`].
//!
//! The role rules are those of `GET /api/v1/current-data`: viewer, operator and admin may read
//! (a provider may not). A refusal is audited (a missing or unknown token, or an exhausted
//! rate limit, sampled: at most one row per kind every 10 s, see `ApiConfig`), sent as `{"error": "..."}` and the socket is
//! closed with code 1008 (policy violation; 1013 "try again later" when the token's rate limit
//! is exhausted) and the error as the close reason. The token is charged one request of its
//! rate limit per connection, not per pushed update. There is no `Origin` check: nothing is
//! authenticated by cookie, so a page on another origin gains nothing without a token.
//!
//! # Messages
//!
//! Client → server (JSON text, only these keys):
//!
//! - `{"token": "..."}`: authentication (ignored once authenticated);
//! - `{"subscribe": ["_sum/EssSoc", "_sum/GridActivePower"]}`: which channels to receive (1 to
//!   64 channel addresses `component/Channel`, plus optionally `"safety"` for the safety view);
//!   `[]` or `["*"]` means every channel plus the safety view. A new `subscribe` replaces the
//!   previous one.
//!
//! Server → client:
//!
//! - `{"authenticated": true, "actor": "ops (operator)"}` once authenticated;
//! - `{"subscribed": ["..."]}` (`["*"]` for all) after each accepted `subscribe`;
//! - updates `{"at": "<RFC 3339>"|null, "channels": {...}, "safety": {...}}`: one right after
//!   each `subscribe`, then whenever the loop published a new view, coalesced to at most
//!   [`MAX_RATE_HZ`] a second (intermediate views are skipped, the newest is sent). With an
//!   explicit channel list, `channels` holds exactly those addresses (`null` for one the loop
//!   does not publish) and `safety` is present only if `"safety"` was listed;
//! - `{"error": "...", "field": "..."}` for a malformed message (not JSON, not an object,
//!   unknown key, bad `subscribe`, binary frame); the connection stays open.
//!
//! When the control loop stops publishing, the socket is closed with code 1011.

use crate::auth::{Access, AuthError, Principal};
use crate::input::FieldError;
use crate::metrics::RefusalKind;
use crate::model::SiteView;
use crate::ports::{AuditEntry, Outcome};
use crate::state::ApiState;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::time::MissedTickBehavior;

/// The most updates one connection receives per second.
pub const MAX_RATE_HZ: u64 = 10;

/// How long an unauthenticated connection may wait before sending its token.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest accepted client message, bytes.
pub const MAX_MESSAGE: usize = 16 * 1024;

/// Most channel addresses in one `subscribe`.
pub const MAX_CHANNELS: usize = 64;

const ACTION: &str = "GET /api/v1/live";

/// Close code: policy violation (authentication refused).
const CLOSE_POLICY: u16 = 1008;
/// Close code: try again later (rate limited).
const CLOSE_TRY_LATER: u16 = 1013;
/// Close code: internal error (the control loop is gone).
const CLOSE_INTERNAL: u16 = 1011;

/// What a connection receives.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Subscription {
    /// Every channel and the safety view.
    All,
    /// These channels, and the safety view if `safety`.
    Some { channels: BTreeSet<String>, safety: bool },
}

/// The `GET /api/v1/live` handler: upgrades to a WebSocket (see the module docs).
pub async fn live(
    State(s): State<ApiState>,
    headers: HeaderMap,
    query: Result<Query<BTreeMap<String, String>>, axum::extract::rejection::QueryRejection>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(rej) => {
            let status = rej.status();
            let status = if status.is_client_error() { status } else { StatusCode::BAD_REQUEST };
            return (
                status,
                Json(json!({ "error": format!("a WebSocket upgrade is required: {}", rej.body_text()) })),
            )
                .into_response();
        }
    };
    let token = query.ok().and_then(|Query(q)| q.get("token").cloned()).or_else(|| {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|h| h.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim().to_owned())
    });
    ws.max_message_size(MAX_MESSAGE).max_frame_size(MAX_MESSAGE).on_upgrade(move |socket| async move {
        Connection::new(s, socket).run(token).await;
    })
}

fn error_msg(error: &str, field: Option<&str>) -> Message {
    let mut v = json!({ "error": error });
    if let (Value::Object(o), Some(f)) = (&mut v, field) {
        o.insert("field".into(), Value::String(f.to_owned()));
    }
    Message::Text(Utf8Bytes::from(v.to_string()))
}

fn field_error(e: &FieldError) -> Message {
    let text = if e.field.is_empty() { e.message.clone() } else { format!("{}: {}", e.field, e.message) };
    error_msg(&text, Some(e.field.as_str()).filter(|f| !f.is_empty()))
}

/// One client message, parsed.
#[derive(Debug, Default)]
struct ClientMessage {
    token: Option<String>,
    subscribe: Option<Subscription>,
}

fn parse_message(text: &str) -> Result<ClientMessage, FieldError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| FieldError::new("", format!("not JSON: {e}")))?;
    let Value::Object(o) = value else {
        return Err(FieldError::new("", "expected a JSON object like {\"subscribe\": [\"*\"]}"));
    };
    if let Some(k) = o.keys().find(|k| *k != "token" && *k != "subscribe") {
        return Err(FieldError::new(k.clone(), "unknown key (expected token or subscribe)"));
    }
    let token = match o.get("token") {
        None => None,
        Some(Value::String(t)) => Some(t.clone()),
        Some(_) => return Err(FieldError::new("token", "must be a string")),
    };
    let subscribe = o.get("subscribe").map(parse_subscription).transpose()?;
    Ok(ClientMessage { token, subscribe })
}

fn parse_subscription(v: &Value) -> Result<Subscription, FieldError> {
    let Value::Array(items) = v else {
        return Err(FieldError::new("subscribe", "must be an array of channel addresses"));
    };
    if items.len() > MAX_CHANNELS + 1 {
        return Err(FieldError::new(
            "subscribe",
            format!("at most {MAX_CHANNELS} channel addresses, got {}", items.len()),
        ));
    }
    let mut channels = BTreeSet::new();
    let mut safety = false;
    for item in items {
        match item {
            Value::String(c) if c == "*" => return Ok(Subscription::All),
            Value::String(c) if c == "safety" => safety = true,
            Value::String(c) if c.len() <= 128 && c.contains('/') => {
                channels.insert(c.clone());
            }
            other => {
                return Err(FieldError::new(
                    "subscribe",
                    format!("not a channel address (component/Channel), \"safety\" or \"*\": {other}"),
                ))
            }
        }
    }
    if channels.is_empty() && !safety {
        return Ok(Subscription::All);
    }
    if channels.len() > MAX_CHANNELS {
        return Err(FieldError::new(
            "subscribe",
            format!("at most {MAX_CHANNELS} channel addresses, got {}", channels.len()),
        ));
    }
    Ok(Subscription::Some { channels, safety })
}

/// The safety view as sent: with `devices` (kept once, in [`SiteView::devices`]).
fn safety_json(view: &SiteView) -> Value {
    let mut v = json!(view.safety);
    if let Value::Object(o) = &mut v {
        o.insert("devices".into(), json!(view.devices));
        o.insert("limitExplanations".into(), json!(crate::model::explain_limits(&view.safety)));
    }
    v
}

fn update(view: &SiteView, sub: &Subscription) -> Value {
    let at = view.at.map(|t| t.to_string());
    match sub {
        Subscription::All => json!({ "at": at, "channels": view.channels, "safety": safety_json(view) }),
        Subscription::Some { channels, safety } => {
            let values: Map<String, Value> = channels
                .iter()
                .map(|c| (c.clone(), view.channels.get(c).map_or(Value::Null, |v| json!(v))))
                .collect();
            let mut v = json!({ "at": at, "channels": values });
            if let (Value::Object(o), true) = (&mut v, *safety) {
                o.insert("safety".into(), safety_json(view));
            }
            v
        }
    }
}

fn subscribed_msg(sub: &Subscription) -> Message {
    let list: Vec<String> = match sub {
        Subscription::All => vec!["*".to_owned()],
        Subscription::Some { channels, safety } => {
            let mut l: Vec<String> = channels.iter().cloned().collect();
            if *safety {
                l.push("safety".to_owned());
            }
            l
        }
    };
    Message::Text(Utf8Bytes::from(json!({ "subscribed": list }).to_string()))
}

/// Why the connection ends.
enum End {
    /// The client left or the socket failed: nothing more to send.
    Gone,
    /// Close with this code and reason.
    Close(u16, String),
}

struct Connection {
    s: ApiState,
    socket: WebSocket,
}

impl Connection {
    fn new(s: ApiState, socket: WebSocket) -> Self {
        Self { s, socket }
    }

    fn audit(&self, actor: &str, outcome: Outcome, detail: String) {
        let entry = AuditEntry {
            seq: 0,
            at: self.s.clock.now(),
            actor: actor.to_owned(),
            action: ACTION.to_owned(),
            outcome,
            detail,
        };
        if let Err(e) = self.s.audit.append(&entry) {
            tracing::error!(error = %e, action = ACTION, "audit log write failed");
        }
    }

    /// Send one message; `Err` when the client is gone.
    async fn send(&mut self, msg: Message) -> Result<(), End> {
        self.socket.send(msg).await.map_err(|_| End::Gone)
    }

    async fn run(mut self, token: Option<String>) {
        let end = self.serve(token).await;
        if let End::Close(code, reason) = end {
            // Close reasons are limited to 123 bytes.
            let mut reason = reason;
            while reason.len() > 123 {
                reason.pop();
            }
            let frame = CloseFrame { code, reason: Utf8Bytes::from(reason) };
            // The client may already be gone; nothing else to do then.
            let _ = self.socket.send(Message::Close(Some(frame))).await;
        }
    }

    fn authorize(&self, token: &str) -> Result<Principal, End> {
        let header = format!("Bearer {token}");
        match self.s.tokens.authenticate(Some(&header), std::time::Instant::now()) {
            Ok(p) if p.role.allows(Access::Read) => Ok(p),
            Ok(p) => {
                let msg = format!("role '{}' may not call {ACTION}", p.role.as_str());
                self.audit(&p.actor(), Outcome::Refused, msg.clone());
                Err(End::Close(CLOSE_POLICY, msg))
            }
            Err(e) => {
                let kind = match e {
                    AuthError::Missing => RefusalKind::Missing,
                    AuthError::Invalid => RefusalKind::Invalid,
                    AuthError::RateLimited { .. } => RefusalKind::RateLimited,
                };
                self.s.audit_sampled(kind, ACTION, &e.to_string(), None);
                let code =
                    if matches!(e, AuthError::RateLimited { .. }) { CLOSE_TRY_LATER } else { CLOSE_POLICY };
                Err(End::Close(code, e.to_string()))
            }
        }
    }

    /// Wait for the first message (the token), within [`AUTH_TIMEOUT`].
    async fn first_message(&mut self) -> Result<ClientMessage, End> {
        let missing = || {
            End::Close(
                CLOSE_POLICY,
                "missing token: send {\"token\": \"...\"} first or use ?token=".to_owned(),
            )
        };
        loop {
            let msg = match tokio::time::timeout(AUTH_TIMEOUT, self.socket.recv()).await {
                Err(_) => return Err(missing()),
                Ok(None | Some(Err(_))) => return Err(End::Gone),
                Ok(Some(Ok(m))) => m,
            };
            match msg {
                Message::Text(t) => {
                    return match parse_message(t.as_str()) {
                        Ok(m) if m.token.is_some() => Ok(m),
                        Ok(_) => Err(missing()),
                        Err(e) => {
                            Err(End::Close(CLOSE_POLICY, format!("authentication expected: {}", e.message)))
                        }
                    };
                }
                Message::Binary(_) => return Err(missing()),
                Message::Close(_) => return Err(End::Gone),
                Message::Ping(_) | Message::Pong(_) => {}
            }
        }
    }

    async fn refuse(&mut self, end: End) -> End {
        if let End::Close(_, reason) = &end {
            let msg = error_msg(reason, None);
            if self.send(msg).await.is_err() {
                return End::Gone;
            }
        }
        end
    }

    async fn serve(&mut self, token: Option<String>) -> End {
        let (token, mut pending_sub) = match token {
            Some(t) => (t, None),
            None => match self.first_message().await {
                Ok(m) => (m.token.unwrap_or_default(), m.subscribe),
                Err(end) => return self.refuse(end).await,
            },
        };
        let principal = match self.authorize(&token) {
            Ok(p) => p,
            Err(end) => return self.refuse(end).await,
        };
        let hello = json!({ "authenticated": true, "actor": principal.actor() }).to_string();
        if let Err(end) = self.send(Message::Text(Utf8Bytes::from(hello))).await {
            return end;
        }
        let mut view = self.s.view.clone();
        let mut sub: Option<Subscription> = None;
        // A change (or a new subscription) not yet pushed.
        let mut dirty = false;
        // `Delay`: consecutive ticks are at least one period apart, whatever happens between.
        let mut tick = tokio::time::interval(Duration::from_millis(1000 / MAX_RATE_HZ));
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            if let Some(new) = pending_sub.take() {
                if let Err(end) = self.send(subscribed_msg(&new)).await {
                    return end;
                }
                sub = Some(new);
                dirty = true;
            }
            tokio::select! {
                msg = self.socket.recv() => {
                    let msg = match msg {
                        None | Some(Err(_)) => return End::Gone,
                        Some(Ok(m)) => m,
                    };
                    let reply = match msg {
                        Message::Text(t) => match parse_message(t.as_str()) {
                            Ok(m) => {
                                pending_sub = m.subscribe;
                                None
                            }
                            Err(e) => Some(field_error(&e)),
                        },
                        Message::Binary(_) => Some(error_msg("binary messages are not supported; send JSON text", None)),
                        Message::Close(_) => return End::Gone,
                        Message::Ping(_) | Message::Pong(_) => None,
                    };
                    if let Some(r) = reply {
                        if let Err(end) = self.send(r).await {
                            return end;
                        }
                    }
                }
                changed = view.changed(), if sub.is_some() && !dirty => {
                    if changed.is_err() {
                        return End::Close(CLOSE_INTERNAL, "the control loop is not running".to_owned());
                    }
                    dirty = true;
                }
                _ = tick.tick(), if dirty => {
                    if let Some(sub) = &sub {
                        let body = update(&view.borrow_and_update(), sub).to_string();
                        if let Err(end) = self.send(Message::Text(Utf8Bytes::from(body))).await {
                            return end;
                        }
                    }
                    dirty = false;
                }
            }
        }
    }
}
