//! Shared test harness: the router over in-memory stores, a mock clock, a fake control loop.
// Test code: a failed unwrap or panic is a failed test with its message; a helper that one
// test binary does not call is dead code there.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use ed25519_dalek::{Signer, SigningKey};
use ems_api::auth::{hash_token, RateLimit, Role, TokenConfig};
use ems_api::control_modes::ControlModes;
use ems_api::metrics::Metrics;
use ems_api::model::{ApiCommand, CommandInbox, Refusal, SiteView};
use ems_api::ports::MemoryStore;
use ems_api::schedules::{canonical_string, Operation, ProviderKey, ScheduleConfig, Schedules};
use ems_api::start::{Assembled, EStopRoute, ServerConfig, Storage, Tokens};
use ems_api::state::Clock;
use ems_core::{State, TransitionRequest};
use http_body_util::BodyExt;
use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tower::ServiceExt;

pub(crate) const VIEWER: &str = "tok-viewer";
pub(crate) const OPERATOR: &str = "tok-operator";
pub(crate) const PROVIDER: &str = "tok-provider";
pub(crate) const ADMIN: &str = "tok-admin";
pub(crate) const SN: &str = "BAT-0001";

/// A clock the test moves by hand.
#[derive(Debug)]
pub(crate) struct MockClock(pub Mutex<Timestamp>);

impl MockClock {
    pub(crate) fn advance(&self, secs: i64) {
        let mut t = self.0.lock().unwrap();
        *t = t.checked_add(SignedDuration::from_secs(secs)).unwrap();
    }
    pub(crate) fn get(&self) -> Timestamp {
        *self.0.lock().unwrap()
    }
}

impl Clock for MockClock {
    fn now(&self) -> Timestamp {
        self.get()
    }
}

pub(crate) fn t0() -> Timestamp {
    "2026-05-01T12:00:00Z".parse().unwrap()
}

pub(crate) fn provider_key() -> SigningKey {
    SigningKey::from_bytes(&[7u8; 32])
}

pub(crate) fn schedule_config() -> ScheduleConfig {
    ScheduleConfig {
        serials: vec![SN.to_owned()],
        max_charge_w: 5000,
        max_discharge_w: 4000,
        ..ScheduleConfig::default()
    }
}

pub(crate) fn provider_keys() -> Vec<ProviderKey> {
    vec![ProviderKey {
        name: "acme".into(),
        public_key_hex: hex::encode(provider_key().verifying_key().to_bytes()),
    }]
}

/// A signed schedule request body.
pub(crate) fn signed(
    sn: &str,
    time: &str,
    op: &str,
    power: u64,
    provider: &str,
    nonce: &str,
    key: &SigningKey,
) -> Value {
    let operation = if op == "CHARGE" { Operation::Charge } else { Operation::Discharge };
    let msg = canonical_string(sn, time, operation, power, provider, nonce);
    let sig = key.sign(msg.as_bytes());
    json!({
        "sn": sn, "executionTime": time, "operation": op, "power": power,
        "provider": provider, "nonce": nonce,
        "auth": {"sign": {"signature": hex::encode(sig.to_bytes())}}
    })
}

pub(crate) struct Harness {
    pub router: Router,
    pub store: Arc<MemoryStore>,
    pub clock: Arc<MockClock>,
    pub view: watch::Sender<SiteView>,
    pub modes: Arc<Mutex<ControlModes>>,
    pub schedules: Arc<Schedules>,
    pub state: Arc<Mutex<State>>,
    pub metrics: Arc<Metrics>,
}

/// A fake control loop: a five-state table good enough to answer commands.
pub(crate) async fn fake_loop(mut inbox: CommandInbox, state: Arc<Mutex<State>>) {
    while let Some(cmd) = inbox.next().await {
        let mut s = state.lock().unwrap();
        let result = match (cmd.command().clone(), *s) {
            (ApiCommand::EmergencyStop { .. }, _) => Ok(State::Stopped),
            (ApiCommand::Reset { .. }, State::Stopped) => Ok(State::Idle),
            (ApiCommand::Request { request: TransitionRequest::Start, .. }, State::Idle) => {
                Ok(State::Running)
            }
            (ApiCommand::Request { request: TransitionRequest::Stop, .. }, State::Running) => Ok(State::Idle),
            (ApiCommand::Request { request: TransitionRequest::Acknowledge, .. }, State::Error) => {
                Ok(State::Idle)
            }
            (ApiCommand::Reset { .. }, st) => {
                Err(Refusal { state: st, reason: format!("request 'reset' is not valid in state {st}") })
            }
            (ApiCommand::Request { request, .. }, st) => {
                Err(Refusal { state: st, reason: format!("request '{request}' is not valid in state {st}") })
            }
            (ApiCommand::SetMode { .. }, st) => Ok(st),
            // The island sequence is never in SAFE STOP here: a black start is taken, a reset
            // refused (as the gateway's loop answers).
            (ApiCommand::Island { action: ems_api::island::IslandAction::BlackStart, .. }, st) => Ok(st),
            (ApiCommand::Island { action: ems_api::island::IslandAction::Reset, .. }, st) => Err(Refusal {
                state: st,
                reason: "the island sequence is not in SAFE STOP: nothing to reset".into(),
            }),
        };
        if let Ok(next) = result {
            *s = next;
        }
        drop(s);
        cmd.answer(result);
    }
}

pub(crate) fn harness() -> Harness {
    harness_with(RateLimit { burst: 10_000.0, per_second: 1000.0 }, true)
}

/// `with_loop = false`: the command inbox is dropped (the loop is gone).
pub(crate) fn harness_with(limit: RateLimit, with_loop: bool) -> Harness {
    harness_full(limit, with_loop, None)
}

/// [`harness_with`] with an economics port behind the economics endpoints.
pub(crate) fn harness_full(
    limit: RateLimit,
    with_loop: bool,
    economics: Option<Arc<dyn ems_api::economics::EconomicsPort>>,
) -> Harness {
    harness_grid(limit, with_loop, economics, None)
}

/// [`harness_full`] with grid-service commitments behind `/api/v1/grid-services`.
pub(crate) fn harness_grid(
    limit: RateLimit,
    with_loop: bool,
    economics: Option<Arc<dyn ems_api::economics::EconomicsPort>>,
    grid_services: Option<Arc<ems_api::grid_services::GridServices>>,
) -> Harness {
    harness_island(limit, with_loop, economics, grid_services, None)
}

/// [`harness_grid`] with an island board behind `/api/v1/island`.
#[allow(dead_code)] // used by the island API test only
pub(crate) fn harness_island(
    limit: RateLimit,
    with_loop: bool,
    economics: Option<Arc<dyn ems_api::economics::EconomicsPort>>,
    grid_services: Option<Arc<ems_api::grid_services::GridServices>>,
    island: Option<Arc<ems_api::island::IslandBoard>>,
) -> Harness {
    let tokens = [
        ("viewer", Role::Viewer, VIEWER),
        ("ops", Role::Operator, OPERATOR),
        ("acme-cloud", Role::Provider, PROVIDER),
        ("root", Role::Admin, ADMIN),
    ]
    .map(|(n, r, t)| TokenConfig { name: n.into(), role: r, sha256_hex: hash_token(t) });
    let store = Arc::new(MemoryStore::default());
    let clock = Arc::new(MockClock(Mutex::new(t0())));
    let config = ServerConfig {
        tokens: Tokens::Configured(tokens.to_vec()),
        token_rate: limit,
        schedules: schedule_config(),
        providers: provider_keys(),
        override_max: ems_core::watts!(10000.0),
        storage: Storage::Stores { audit: store.clone(), history: store.clone(), schedules: store.clone() },
        // The tests read the store right after a request: no write-behind queue.
        write_queue: None,
        command_queue: 8,
        command_timeout: Duration::from_secs(2),
        clock: clock.clone(),
        economics,
        grid_services,
        island,
        ..ServerConfig::default()
    };
    let Assembled { router, handles } = config.assemble(EStopRoute::CommandQueue).unwrap();
    let state = Arc::new(Mutex::new(State::Idle));
    if with_loop {
        tokio::spawn(fake_loop(handles.commands, state.clone()));
    } else {
        drop(handles.commands);
    }
    Harness {
        router,
        store,
        clock,
        view: handles.view,
        modes: handles.modes,
        schedules: handles.schedules,
        state,
        metrics: handles.metrics,
    }
}

pub(crate) struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub json: Value,
}

impl Harness {
    pub(crate) async fn raw(&self, method: Method, path: &str, token: Option<&str>, body: Vec<u8>) -> Reply {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req.header("content-type", "application/json").body(Body::from(body)).unwrap();
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let json = if bytes.is_empty() {
            Value::Null
        } else if headers.get("content-type").is_some_and(|v| v.to_str().unwrap().starts_with("text/plain")) {
            // `GET /metrics`: Prometheus text.
            Value::String(String::from_utf8(bytes.to_vec()).unwrap())
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("non-JSON body ({e}): {bytes:?}"))
        };
        Reply { status, headers, json }
    }

    pub(crate) async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.raw(Method::GET, path, token, Vec::new()).await
    }

    pub(crate) async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Reply {
        self.raw(Method::POST, path, token, body.to_string().into_bytes()).await
    }

    pub(crate) async fn delete(&self, path: &str, token: Option<&str>) -> Reply {
        self.raw(Method::DELETE, path, token, Vec::new()).await
    }

    pub(crate) fn audit(&self) -> Vec<ems_api::ports::AuditEntry> {
        use ems_api::ports::AuditSink;
        self.store.recent(10_000).unwrap()
    }
}
