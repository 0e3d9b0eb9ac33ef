//! What the router and its handlers share: [`ApiState`], its settings ([`ApiConfig`]) and the
//! clock. Its own module so that the REST handlers (`rest`) and the WebSocket (`ws`) both use
//! it without importing each other.

use crate::auth::TokenRegistry;
use crate::control_modes::ControlModes;
use crate::economics::EconomicsPort;
use crate::metrics::{Metrics, RefusalKind};
use crate::model::{CommandClient, SiteView};
use crate::ports::{AuditEntry, AuditSink, EmergencyStopPort, HistoryStore, Outcome};
use crate::schedules::Schedules;
use jiff::Timestamp;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// A source of UTC time (a mock in tests).
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// Settings of the API that are not about the site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// `GET /metrics` without a token (e.g. for a Prometheus on the LAN). Default `false`:
    /// viewer and above.
    pub metrics_public: bool,
    /// At most one audit row per this interval for each kind of refused-before-authentication
    /// request (missing token, unknown token, rate limited); the row says how many were not
    /// written since the last. Default 10 s.
    pub refusal_audit_every: Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self { metrics_public: false, refusal_audit_every: Duration::from_secs(10) }
    }
}

/// Everything the router needs.
#[derive(Clone)]
pub struct ApiState {
    /// Tokens and rate limits.
    pub tokens: Arc<TokenRegistry>,
    /// The latest site view the loop published.
    pub view: watch::Receiver<SiteView>,
    /// Commands to the loop.
    pub commands: CommandClient,
    /// Control modes (shared with the loop, which reads `active_override` each cycle).
    pub modes: Arc<Mutex<ControlModes>>,
    /// Provider schedules (shared with the loop).
    pub schedules: Arc<Schedules>,
    /// Telemetry history.
    pub history: Arc<dyn HistoryStore>,
    /// The audit log.
    pub audit: Arc<dyn AuditSink>,
    /// UTC time.
    pub clock: Arc<dyn Clock>,
    /// The software E-stop (not through `commands`: nothing queued may delay it).
    pub estop: Arc<dyn EmergencyStopPort>,
    /// Metrics (`GET /metrics`); the API counts its answers and refusals here.
    pub metrics: Arc<Metrics>,
    /// Settings.
    pub config: ApiConfig,
    /// The economics engine (plan, prices, rules, savings); `None` on a site without an
    /// `[economics]` section: the economics endpoints answer 404 then.
    pub economics: Option<Arc<dyn EconomicsPort>>,
    /// The grid-service commitments (`None`: no `[grid_services]`, the endpoints answer 404).
    pub grid_services: Option<Arc<crate::grid_services::GridServices>>,
    /// The cloud link's state (`None`: no `[cloud]`, `GET /api/v1/cloud` answers 404).
    pub cloud: Option<Arc<crate::cloud::CloudShared>>,
    /// The MQTT link's counters (`None`: no `[mqtt]`, `GET /api/v1/mqtt` answers 404).
    pub mqtt: Option<Arc<crate::mqtt::status::MqttStatus>>,
    /// The island view the loop publishes (`None`: no island, the endpoints answer 404).
    pub island: Option<Arc<crate::island::IslandBoard>>,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState").field("schedules", &self.schedules).finish_non_exhaustive()
    }
}

impl ApiState {
    pub(crate) fn audit(&self, actor: &str, action: &str, outcome: Outcome, detail: impl Into<String>) {
        let entry = AuditEntry {
            seq: 0,
            at: self.clock.now(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            outcome,
            detail: detail.into(),
        };
        if let Err(e) = self.audit.append(&entry) {
            // Never block a (safety) command on the audit log; make the failure loud instead.
            tracing::error!(error = %e, action, "audit log write failed");
        }
    }

    /// Count a refusal of `kind` and write an audit row for it only if the sampling allows
    /// (see [`ApiConfig::refusal_audit_every`]); the caller's address is in the detail when
    /// known.
    pub(crate) fn audit_sampled(
        &self,
        kind: RefusalKind,
        action: &str,
        detail: &str,
        peer: Option<SocketAddr>,
    ) {
        let Some(suppressed) =
            self.metrics.note_refusal(kind, Instant::now(), self.config.refusal_audit_every)
        else {
            return;
        };
        let from = peer.map(|p| format!(" from {}", p.ip())).unwrap_or_default();
        self.audit(
            "anonymous",
            action,
            Outcome::Refused,
            format!("{detail}{from}; {suppressed} similar refusals since the last such row were not written"),
        );
    }
}
