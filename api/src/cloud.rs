//! The cloud link (issue #14 items 3 and 4): the gateway pushes its current data to a cloud EMS
//! in the shape of the clever-PV push API proposed on the OpenEMS forum, takes the control modes
//! (and provider schedules) the answer carries, and keeps working — and keeping the telemetry —
//! while the cloud is away.
//!
//! * **Push:** every `period` (default 15 s) a `POST` to the configured URL with
//!   `{"timestamp", "currentData": {channel: value}, "availableControlModes",
//!   "activeControlModes"}` (the channel addresses of `GET /api/v1/current-data`, the documents of
//!   `GET /api/v1/control-modes`). The device key travels in the `X-Device-Key` header, or as
//!   the `key` query parameter (`key_in = "query"`).
//! * **Answer:** an empty body or `{}` changes nothing. `activateControlModes` is handed to
//!   `POST /api/v1/control-modes` and `schedules` (a list of signed provider schedules) to
//!   `POST /api/v1/schedules`, **in-process through the REST router** with the link's own
//!   operator token: the same validation, clamp, watchdog (a mode not refreshed within 60 s
//!   expires), `until` and audit as any REST caller, under the actor name `cloud`.
//! * **Offline:** a push that fails (no connection, timeout, a status other than 2xx) goes to
//!   the outbox — the database when the gateway has one (`cloud_outbox`, kept across
//!   restarts), memory otherwise — bounded by `buffer_rows`; when full, the two oldest entries
//!   are merged into one (channel values averaged by their sample counts), so the oldest
//!   telemetry loses resolution first and nothing is dropped outright. The loop, the stored
//!   schedules, rules, plan and modes run on regardless: the link only reads and proposes.
//! * **Sync:** after the first successful push the outbox is resent oldest first in slices of
//!   `slice_rows` as `{"bufferedData": [entry, …]}`, starting after a random delay of up to
//!   `resend_jitter` (a fleet coming back does not hit its cloud at once); an entry leaves the
//!   outbox only when its slice was accepted.
//! * **Rate:** never more than 180 requests per minute, pushes and resends together; a push
//!   without room in the minute goes to the outbox like a failed one.
//!
//! Time: on a real site everything runs on the wall clock; the simulated site passes its
//! `speed`, and periods, delays and the rate limit are then in simulated time.

use crate::auth::Role;
use crate::control_modes::ControlModes;
use crate::db::{Db, OutboxTable};
use crate::model::SiteView;
pub use crate::telemetry_buffer::{merge_entries, Outbox, OutboxEntry};
use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use jiff::Timestamp;
use serde_json::{json, Map, Value};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::watch;
use tower::ServiceExt;

/// Requests per minute the link never exceeds.
pub const MAX_REQUESTS_PER_MINUTE: usize = 180;
/// The role of the link's own token.
pub const CLOUD_ROLE: Role = Role::Operator;
/// The audit actor of what the cloud asks for.
pub const CLOUD_ACTOR: &str = "cloud";
/// The error of `GET /api/v1/cloud` on a gateway without a cloud link (404).
pub const NOT_CONFIGURED: &str = "no cloud link: the site file has no [cloud]";

/// Where the device key travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyIn {
    /// `X-Device-Key: <key>`.
    Header,
    /// `?key=<key>` on the URL.
    Query,
}

/// The link's settings (`[cloud]` in the site file).
#[derive(Debug, Clone, PartialEq)]
pub struct CloudConfig {
    /// `http://…` or `https://…`.
    pub url: String,
    /// The device key, if the cloud wants one.
    pub key: Option<String>,
    /// Where the key travels.
    pub key_in: KeyIn,
    /// Push period (default 15 s).
    pub period: Duration,
    /// One request's timeout (default 10 s).
    pub timeout: Duration,
    /// The outbox's bound in entries (default 20,000: 3.5 days at 15 s).
    pub buffer_rows: usize,
    /// Entries per resend request (default 100).
    pub slice_rows: usize,
    /// The largest random delay before the resend starts (default 60 s).
    pub resend_jitter: Duration,
    /// Simulated time per wall time (1 on a real site).
    pub speed: f64,
}

impl CloudConfig {
    /// Defaults for `url`.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            key: None,
            key_in: KeyIn::Header,
            period: Duration::from_secs(15),
            timeout: Duration::from_secs(10),
            buffer_rows: 20_000,
            slice_rows: 100,
            resend_jitter: Duration::from_secs(60),
            speed: 1.0,
        }
    }

    /// Check every field; the error names the field and the value.
    ///
    /// # Errors
    /// A message `field: value …`.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(format!("cloud.url: '{}' is not an http:// or https:// URL", self.url));
        }
        // 180 per minute with the resend in the gaps: a push at most every second.
        if self.period < Duration::from_secs(1) || self.period > Duration::from_secs(3600) {
            return Err(format!("cloud.period_s: {} s is outside 1..=3600 s", self.period.as_secs_f64()));
        }
        if self.timeout.is_zero() || self.timeout > self.period.max(Duration::from_secs(1)) * 4 {
            return Err(format!(
                "cloud.timeout_s: {} s is outside (0, 4 × period]",
                self.timeout.as_secs_f64()
            ));
        }
        if !(10..=1_000_000).contains(&self.buffer_rows) {
            return Err(format!("cloud.buffer_rows: {} is outside 10..=1000000", self.buffer_rows));
        }
        if !(1..=1000).contains(&self.slice_rows) {
            return Err(format!("cloud.slice_rows: {} is outside 1..=1000", self.slice_rows));
        }
        if !self.speed.is_finite() || self.speed <= 0.0 {
            return Err(format!("cloud speed: {} is not a positive number", self.speed));
        }
        Ok(())
    }
}

/// The link's state (`GET /api/v1/cloud`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CloudStatus {
    /// The cloud's URL (without the key).
    pub url: String,
    /// The last push reached the cloud.
    pub online: bool,
    /// When the cloud last accepted a push.
    pub last_success: Option<Timestamp>,
    /// The last failure.
    pub last_error: Option<String>,
    /// Pushes accepted.
    pub pushes_ok: u64,
    /// Pushes that failed (and went to the outbox).
    pub pushes_failed: u64,
    /// Entries in the outbox now.
    pub buffered: u64,
    /// The outbox's bound.
    pub buffer_rows: u64,
    /// Entries merged into older ones because the outbox was full (resolution lost, nothing
    /// dropped).
    pub merged: u64,
    /// Entries that could not be stored at all (the database failed).
    pub dropped: u64,
    /// Entries resent after an outage and accepted.
    pub resent: u64,
    /// When the resend of the outbox may start (the random delay after reconnecting).
    pub resend_from: Option<Timestamp>,
    /// Control-mode activations the cloud asked for (accepted or refused by the REST rules).
    pub activations: u64,
    /// Provider schedules the cloud sent.
    pub schedules: u64,
}

/// Shared between the link and `GET /api/v1/cloud`.
#[derive(Debug)]
pub struct CloudShared(Mutex<CloudStatus>);

impl CloudShared {
    /// The state now.
    #[must_use]
    pub fn get(&self) -> CloudStatus {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn update(&self, f: impl FnOnce(&mut CloudStatus)) {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

/// What the link needs of the gateway.
pub struct CloudParts {
    /// The site view the loop publishes.
    pub view: watch::Receiver<SiteView>,
    /// The control modes (for `availableControlModes` / `activeControlModes`).
    pub modes: Arc<Mutex<ControlModes>>,
    /// The REST router (what the cloud asks for goes through it).
    pub router: Router,
    /// The link's own bearer token (role [`CLOUD_ROLE`], name [`CLOUD_ACTOR`]).
    pub token: String,
    /// The database for the outbox (memory without one).
    pub db: Option<Arc<Db>>,
    /// Where `GET /api/v1/cloud` reads the state.
    pub status: Arc<CloudShared>,
}

impl core::fmt::Debug for CloudParts {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CloudParts").finish_non_exhaustive()
    }
}

/// A new shared state for `config`.
#[must_use]
pub fn shared(config: &CloudConfig) -> Arc<CloudShared> {
    Arc::new(CloudShared(Mutex::new(CloudStatus {
        url: config.url.clone(),
        online: false,
        last_success: None,
        last_error: None,
        pushes_ok: 0,
        pushes_failed: 0,
        buffered: 0,
        buffer_rows: u64::try_from(config.buffer_rows).unwrap_or(u64::MAX),
        merged: 0,
        dropped: 0,
        resent: 0,
        resend_from: None,
        activations: 0,
        schedules: 0,
    })))
}

/// The push document of this moment.
fn document(view: &SiteView, modes: &Mutex<ControlModes>, now: Timestamp) -> Value {
    let data: Map<String, Value> = view.channels.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    let m = modes.lock().unwrap_or_else(PoisonError::into_inner);
    json!({
        "timestamp": view.at.unwrap_or(now).to_string(),
        "currentData": data,
        "availableControlModes": m.available_json(),
        "activeControlModes": m.active_json(now),
    })
}

/// Requests in the last minute of (site) time.
#[derive(Debug, Default)]
struct RateWindow(VecDeque<f64>);

impl RateWindow {
    /// Take one request at site time `t` (s) if the last minute has room.
    fn take(&mut self, t: f64) -> bool {
        while self.0.front().is_some_and(|x| t - x >= 60.0) {
            self.0.pop_front();
        }
        if self.0.len() >= MAX_REQUESTS_PER_MINUTE {
            return false;
        }
        self.0.push_back(t);
        true
    }
}

/// The HTTP side, blocking (`ureq` on a blocking thread, as the price feeds use it).
#[derive(Debug, Clone)]
struct Http {
    agent: ureq::Agent,
    url: String,
    key: Option<String>,
    key_in: KeyIn,
}

impl Http {
    fn new(c: &CloudConfig) -> Self {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(c.timeout))
            .http_status_as_error(false)
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .unversioned_rustls_crypto_provider(Arc::new(
                        rustls::crypto::aws_lc_rs::default_provider(),
                    ))
                    .build(),
            )
            .build();
        Self {
            agent: ureq::Agent::new_with_config(config),
            url: c.url.clone(),
            key: c.key.clone(),
            key_in: c.key_in,
        }
    }

    /// POST `body`; the answer's body on a 2xx, else a message.
    fn post(&self, body: &str) -> Result<String, String> {
        let url = match (&self.key, self.key_in) {
            (Some(k), KeyIn::Query) => {
                let sep = if self.url.contains('?') { '&' } else { '?' };
                format!("{}{sep}key={}", self.url, urlencode(k))
            }
            _ => self.url.clone(),
        };
        let mut req = self.agent.post(&url).header("content-type", "application/json");
        if let (Some(k), KeyIn::Header) = (&self.key, self.key_in) {
            req = req.header("x-device-key", k);
        }
        let mut resp = req.send(body).map_err(|e| e.to_string())?;
        let status = resp.status();
        let text =
            resp.body_mut().with_config().limit(1 << 20).read_to_string().map_err(|e| e.to_string())?;
        if status.is_success() {
            Ok(text)
        } else {
            Err(format!("HTTP {}", status.as_u16()))
        }
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn post(http: &Http, body: String) -> Result<String, String> {
    let http = http.clone();
    tokio::task::spawn_blocking(move || http.post(&body)).await.map_err(|e| e.to_string())?
}

/// Hand `body` to the REST router as the link's own operator; (status, answer).
async fn dispatch(router: &Router, token: &str, path: &str, body: &Value) -> (StatusCode, String) {
    let req = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()));
    let Ok(req) = req else { return (StatusCode::INTERNAL_SERVER_ERROR, "request".into()) };
    match router.clone().oneshot(req).await {
        Ok(resp) => {
            let status = resp.status();
            let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap_or_default();
            (status, String::from_utf8_lossy(&bytes).into_owned())
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Act on the cloud's answer to a push.
async fn answer(parts: &CloudParts, text: &str) {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return;
    }
    let Ok(Value::Object(a)) = serde_json::from_str::<Value>(trimmed) else {
        tracing::warn!(target: "audit", "cloud: answer is not a JSON object: ignored");
        return;
    };
    if let Some(modes) = a.get("activateControlModes") {
        let body = json!({ "activateControlModes": modes });
        let (status, reply) = dispatch(&parts.router, &parts.token, "/api/v1/control-modes", &body).await;
        parts.status.update(|s| s.activations = s.activations.saturating_add(1));
        if !status.is_success() {
            tracing::warn!(target: "audit", "cloud: activateControlModes refused ({status}): {reply}");
        }
    }
    if let Some(list) = a.get("schedules").and_then(Value::as_array) {
        for sched in list {
            let (status, reply) = dispatch(&parts.router, &parts.token, "/api/v1/schedules", sched).await;
            parts.status.update(|s| s.schedules = s.schedules.saturating_add(1));
            if !status.is_success() {
                tracing::warn!(target: "audit", "cloud: schedule refused ({status}): {reply}");
            }
        }
    }
}

fn random_fraction() -> f64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        return 0.5;
    }
    // 53 random bits as a fraction in [0, 1).
    #[allow(clippy::cast_precision_loss)]
    let x = (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64;
    x
}

/// Run the link until the runtime stops: spawn it with `tokio::spawn`.
pub async fn run(config: CloudConfig, parts: CloudParts) {
    let http = Http::new(&config);
    let mut outbox = Outbox::new(parts.db.clone(), OutboxTable::Cloud, config.buffer_rows);
    let started = tokio::time::Instant::now();
    let site_s = |at: tokio::time::Instant| at.duration_since(started).as_secs_f64() * config.speed;
    let wall = |d: Duration| d.div_f64(config.speed);
    let mut rate = RateWindow::default();
    let mut resend_at: Option<f64> = None;
    let mut tick = tokio::time::interval(wall(config.period));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let buffered = |o: &Outbox| o.len().map_or(0, |n| u64::try_from(n).unwrap_or(u64::MAX));
    parts.status.update(|s| s.buffered = buffered(&outbox));
    loop {
        tick.tick().await;
        let now_site = site_s(tokio::time::Instant::now());
        let now = Timestamp::now();
        let doc = {
            let view = parts.view.borrow();
            // Nothing to report before the loop's first cycle.
            if view.at.is_none() {
                continue;
            }
            document(&view, &parts.modes, now)
        };
        let entry = json!({
            "timestamp": doc["timestamp"],
            "samples": 1,
            "currentData": doc["currentData"],
            "activeControlModes": doc["activeControlModes"],
        });
        if !rate.take(now_site) {
            // No room in this minute: kept for the resend, not lost.
            let pushed = outbox.push(entry);
            parts.status.update(|s| match pushed {
                Ok(m) => s.merged = s.merged.saturating_add(m),
                Err(_) => s.dropped = s.dropped.saturating_add(1),
            });
            continue;
        }
        match post(&http, doc.to_string()).await {
            Ok(text) => {
                parts.status.update(|s| {
                    s.online = true;
                    s.last_success = Some(now);
                    s.pushes_ok = s.pushes_ok.saturating_add(1);
                });
                answer(&parts, &text).await;
                if resend_at.is_none() && !outbox.is_empty().unwrap_or(true) {
                    let delay = config.resend_jitter.as_secs_f64() * random_fraction();
                    resend_at = Some(now_site + delay);
                    let from =
                        now.checked_add(jiff::SignedDuration::from_secs_f64(delay / config.speed)).ok();
                    parts.status.update(|s| s.resend_from = from);
                }
            }
            Err(e) => {
                let pushed = outbox.push(entry);
                parts.status.update(|s| {
                    if s.online || s.last_error.as_deref() != Some(e.as_str()) {
                        tracing::warn!(target: "audit", "cloud: push failed, buffering: {e}");
                    }
                    s.online = false;
                    s.last_error = Some(e);
                    s.pushes_failed = s.pushes_failed.saturating_add(1);
                    match pushed {
                        Ok(m) => s.merged = s.merged.saturating_add(m),
                        Err(_) => s.dropped = s.dropped.saturating_add(1),
                    }
                });
                resend_at = None;
            }
        }
        if resend_at.is_some_and(|at| now_site >= at) {
            let done = resend(&config, &http, &mut outbox, &mut rate, now_site, &parts.status).await;
            if done {
                resend_at = None;
                parts.status.update(|s| s.resend_from = None);
            }
        }
        parts.status.update(|s| s.buffered = buffered(&outbox));
    }
}

/// Resend slices while the rate allows (at most a period's share); whether the outbox is empty.
async fn resend(
    config: &CloudConfig,
    http: &Http,
    outbox: &mut Outbox,
    rate: &mut RateWindow,
    now_site: f64,
    status: &CloudShared,
) -> bool {
    // Keep room for the pushes: a slice at most every other second of the period.
    let budget = (config.period.as_secs() / 2).clamp(1, 30);
    for _ in 0..budget {
        let slice = match outbox.oldest(config.slice_rows) {
            Ok(s) if !s.is_empty() => s,
            Ok(_) => return true,
            Err(e) => {
                status.update(|s| s.last_error = Some(e));
                return false;
            }
        };
        if !rate.take(now_site) {
            return false;
        }
        let body = json!({ "bufferedData": slice.iter().map(|e| e.json.clone()).collect::<Vec<_>>() });
        match post(http, body.to_string()).await {
            Ok(_) => {
                let last = slice.last().map_or(0, |e| e.seq);
                if let Err(e) = outbox.remove_oldest(slice.len(), last) {
                    status.update(|s| s.last_error = Some(e));
                    return false;
                }
                status
                    .update(|s| s.resent = s.resent.saturating_add(u64::try_from(slice.len()).unwrap_or(0)));
            }
            Err(e) => {
                status.update(|s| s.last_error = Some(e));
                return false;
            }
        }
    }
    outbox.is_empty().unwrap_or(false)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code
mod tests {
    use super::*;

    #[test]
    fn never_more_than_180_requests_a_minute() {
        let mut r = RateWindow::default();
        let taken = (0..400).filter(|i| r.take(f64::from(*i) * 0.1)).count();
        assert_eq!(taken, 180, "40 s of a request every 100 ms");
        assert!(r.take(60.0), "a minute later there is room again");
    }

    #[test]
    fn settings_outside_their_range_name_the_field_and_value() {
        let mut c = CloudConfig::new("ftp://x");
        assert!(c.validate().unwrap_err().contains("cloud.url: 'ftp://x'"));
        c.url = "http://127.0.0.1:9/push".into();
        assert!(c.validate().is_ok());
        c.period = Duration::from_millis(200);
        assert!(c.validate().unwrap_err().contains("cloud.period_s: 0.2 s"));
    }
}
