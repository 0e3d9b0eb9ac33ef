//! The local API (`ems-api`) wired to the control loop: the HTTP server runs as a task of the
//! gateway's runtime; the loop publishes the site view, drains the API's commands (E-stop,
//! reset, state requests) into the controller's `Inputs`, applies the active control mode and the
//! due provider schedule as controller inputs (never around the final clamp), reports what a
//! schedule actually got, and writes controller events to the audit log and telemetry to the
//! history.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ems_api::auth::{generate_admin_token, hash_token, RateLimit, Role, TokenConfig, TokenRegistry};
use ems_api::control_modes::{ControlModes, DEFAULT_WATCHDOG};
use ems_api::db::Db;
use ems_api::model::{
    channels, command_channel, view_channel, ApiCommand, ChannelValue, CommandInbox, PendingCommand, Refusal,
    SafetyView, SiteView,
};
use ems_api::ports::{AuditEntry, AuditSink, HistoryStore, MemoryStore, Outcome, ScheduleStore};
use ems_api::rest::{router, ApiState, SystemClock};
use ems_api::schedules::{ProviderKey, ScheduleConfig, ScheduledAction, Schedules};
use ems_control::{Inputs, Output};
use ems_core::{Snapshot, TransitionRequest};
use jiff::Timestamp;
use tokio::sync::watch;

use crate::live::{Flows, LiveError};

/// How the API is started.
#[derive(Debug, Clone)]
pub(crate) struct ApiOptions {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The battery serial numbers provider schedules may name.
    pub serials: Vec<String>,
    /// Device rating for schedules, W.
    pub rating_w: u64,
    /// Providers allowed to submit schedules, with their Ed25519 keys.
    pub providers: Vec<ProviderKey>,
    /// The SQLite database (audit log, history, schedules); in memory when `None`.
    pub database: Option<std::path::PathBuf>,
}

/// How many recent events the safety view carries.
const RECENT_EVENTS: usize = 20;
/// Without a database, telemetry history is recorded at most this often (the in-memory store
/// is bounded); with one, every cycle (the SQLite store batches and downsamples).
const MEMORY_HISTORY_EVERY: Duration = Duration::from_secs(1);

/// The loop's side of the API.
pub(crate) struct LoopApi {
    view: watch::Sender<SiteView>,
    inbox: CommandInbox,
    queue: VecDeque<PendingCommand>,
    in_flight: Option<PendingCommand>,
    reason: String,
    modes: Arc<Mutex<ControlModes>>,
    schedules: Arc<Schedules>,
    running_schedule: Option<String>,
    history: Arc<dyn HistoryStore>,
    audit: Arc<dyn AuditSink>,
    recent: VecDeque<String>,
    last_history: Option<Instant>,
    history_every: Duration,
    db: Option<Arc<Db>>,
    last_maintain: Option<Instant>,
}

impl std::fmt::Debug for LoopApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopApi").field("schedules", &self.schedules).finish_non_exhaustive()
    }
}

fn api_err(what: &str, e: impl std::fmt::Display) -> LiveError {
    LiveError::Devices(format!("API: {what}: {e}"))
}

/// Start the API with a freshly generated admin token, printed once as `admin token: <token>`
/// (the built-in simulated site has no config to hold tokens). Returns the loop's handle.
pub(crate) async fn start_with_generated_admin(opts: &ApiOptions) -> Result<LoopApi, LiveError> {
    let token = generate_admin_token().map_err(|e| api_err("random token", e))?;
    let tokens =
        vec![TokenConfig { name: "admin".to_owned(), role: Role::Admin, sha256_hex: hash_token(&token) }];
    let api = start(opts, &tokens).await?;
    println!("admin token: {token}");
    Ok(api)
}

/// Start the API with the configured tokens (`run --config`).
pub(crate) async fn start(opts: &ApiOptions, tokens: &[TokenConfig]) -> Result<LoopApi, LiveError> {
    let registry = TokenRegistry::new(tokens, RateLimit::default()).map_err(|e| api_err("tokens", e))?;
    let mut db_handle = None;
    let (audit, history, schedule_store): (
        Arc<dyn AuditSink>,
        Arc<dyn HistoryStore>,
        Arc<dyn ScheduleStore>,
    ) = match &opts.database {
        Some(path) => {
            let db = Arc::new(Db::open(path).map_err(|e| api_err("database", e))?);
            let check = db.integrity_check().map_err(|e| api_err("database", e))?;
            if check != "ok" {
                return Err(api_err(
                    &format!("database {}", path.display()),
                    format!("integrity check: {check}"),
                ));
            }
            db_handle = Some(db.clone());
            (db.clone(), db.clone(), db)
        }
        None => {
            let m = Arc::new(MemoryStore::default());
            (m.clone(), m.clone(), m)
        }
    };
    let cfg = ScheduleConfig {
        serials: opts.serials.clone(),
        max_charge_w: opts.rating_w,
        max_discharge_w: opts.rating_w,
        ..ScheduleConfig::default()
    };
    let schedules = Arc::new(
        Schedules::load(cfg, &opts.providers, schedule_store, audit.clone())
            .map_err(|e| api_err("schedules", e))?,
    );
    #[allow(clippy::cast_precision_loss)] // a rating in W
    let modes = Arc::new(Mutex::new(ControlModes::new(DEFAULT_WATCHDOG, opts.rating_w as f64)));
    let (view_tx, view_rx) = view_channel();
    let (client, inbox) = command_channel(16, Duration::from_secs(5));
    let state = ApiState {
        tokens: Arc::new(registry),
        view: view_rx,
        commands: client,
        modes: modes.clone(),
        schedules: schedules.clone(),
        history: history.clone(),
        audit: audit.clone(),
        clock: Arc::new(SystemClock),
    };
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|e| api_err(&format!("cannot listen on {}", opts.listen), e))?;
    let addr = listener.local_addr().map_err(|e| api_err("local address", e))?;
    let app = router(state);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("API server stopped: {e}");
        }
    });
    println!("API on http://{addr}/api/v1 (OpenAPI: http://{addr}/api/v1/openapi.json)");
    let api = LoopApi {
        view: view_tx,
        inbox,
        queue: VecDeque::new(),
        in_flight: None,
        reason: String::new(),
        modes,
        schedules,
        running_schedule: None,
        history,
        audit,
        recent: VecDeque::new(),
        last_history: None,
        history_every: if db_handle.is_some() { Duration::ZERO } else { MEMORY_HISTORY_EVERY },
        db: db_handle,
        last_maintain: None,
    };
    Ok(api)
}

impl LoopApi {
    fn modes(&self) -> std::sync::MutexGuard<'_, ControlModes> {
        // Plain data: a panic elsewhere while holding the lock leaves it consistent.
        self.modes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn audit(&self, actor: &str, action: String, outcome: Outcome, detail: String) {
        let e = AuditEntry { seq: 0, at: Timestamp::now(), actor: actor.to_owned(), action, outcome, detail };
        if let Err(err) = self.audit.append(&e) {
            tracing::error!("audit log write failed: {err}");
        }
    }

    /// Before `Controller::step`: at most one API state command this cycle (only when the loop
    /// itself has none), the active control mode and the due schedule. The operator's reason
    /// for a reset is kept in `self` and returned by [`Self::reason`].
    pub(crate) fn fill(&mut self, inputs: &mut Inputs<'_>, loop_has_request: bool) {
        while let Some(p) = self.inbox.try_next() {
            self.queue.push_back(p);
        }
        if self.in_flight.is_none() {
            let take = match self.queue.front().map(PendingCommand::command) {
                Some(ApiCommand::EmergencyStop { .. }) => true,
                Some(_) => !loop_has_request,
                None => false,
            };
            if take {
                self.in_flight = self.queue.pop_front();
            }
        }
        match self.in_flight.as_ref().map(PendingCommand::command) {
            Some(ApiCommand::EmergencyStop { .. }) => inputs.emergency_stop = true,
            Some(ApiCommand::Reset { reason, .. }) => {
                self.reason.clone_from(reason);
                inputs.request = Some(TransitionRequest::Reset);
            }
            Some(ApiCommand::Request { request, .. }) => inputs.request = Some(*request),
            None => {}
        }
        let now = Timestamp::now();
        let (expired, operator) = {
            let mut modes = self.modes();
            (modes.expire(now), modes.active_override(now))
        };
        if let Some(m) = expired {
            self.audit("controller", "control mode expired".to_owned(), Outcome::Ok, format!("{m:?}"));
        }
        inputs.ess_override = operator;
        self.running_schedule = None;
        if let Some((id, action)) = self.schedules.due_action(now) {
            match action {
                // An operator's control mode takes precedence over a provider's CHARGE.
                ScheduledAction::Override(o) if operator.is_none() => {
                    inputs.ess_override = Some(o);
                    self.running_schedule = Some(id);
                }
                ScheduledAction::Override(_) => {}
                ScheduledAction::Plan(p) => {
                    inputs.plan = Some(p);
                    self.running_schedule = Some(id);
                }
            }
        }
    }

    /// The reason of the reset in flight (empty otherwise).
    pub(crate) fn reason(&self) -> &str {
        &self.reason
    }

    /// After `Controller::step`: answer the command in flight, report the schedule's applied
    /// power, audit the controller's events, publish the view and record history.
    pub(crate) fn after(
        &mut self,
        out: &Output,
        snapshot: &Snapshot,
        now_ms: ems_core::Millis,
        latched: &[ems_core::TripReason],
    ) {
        if let Some(p) = self.in_flight.take() {
            let result = match (p.command(), &out.refused) {
                (ApiCommand::EmergencyStop { .. }, _) | (_, None) => Ok(out.state),
                (_, Some(e)) => Err(Refusal { state: out.state, reason: e.to_string() }),
            };
            p.answer(result);
            self.reason.clear();
        }
        if let Some(id) = &self.running_schedule {
            let limited = out.binding.map(|b| b.to_string());
            if let Err(e) =
                self.schedules.record_execution(id, out.command.battery_setpoint, limited.as_deref())
            {
                tracing::error!("schedule {id}: {e}");
            }
        }
        for e in &out.events {
            let text = e.kind.to_string();
            self.audit("controller", text.clone(), Outcome::Ok, String::new());
            if self.recent.len() == RECENT_EVENTS {
                self.recent.pop_front();
            }
            self.recent.push_back(format!("[{:.1} s] {text}", now_ms.as_secs_f32()));
        }
        if out.source_changed {
            self.audit("controller", format!("set-point source: {}", out.source), Outcome::Ok, String::new());
        }
        self.publish(out, snapshot, latched);
    }

    fn publish(&mut self, out: &Output, s: &Snapshot, latched: &[ems_core::TripReason]) {
        let f = Flows::of(s);
        let numbers = [
            (channels::GRID_ACTIVE_POWER, f64::from(f.grid)),
            (channels::PRODUCTION_ACTIVE_POWER, f64::from(f.pv)),
            (channels::ESS_SOC, f64::from(f.soc)),
            (channels::ESS_ACTIVE_POWER, f64::from(f.battery)),
            (channels::CONSUMPTION_ACTIVE_POWER, f64::from(f.load)),
        ];
        let mut view = SiteView { at: Some(Timestamp::now()), ..SiteView::default() };
        for (c, v) in numbers {
            view.channels.insert(c.to_owned(), ChannelValue::Number(v));
        }
        view.channels.insert(channels::STATE.to_owned(), ChannelValue::Text(out.state.to_string()));
        let env = &out.envelope;
        view.safety = SafetyView {
            state: out.state.to_string(),
            max_charge_w: f64::from(env.max_charge().get()),
            max_discharge_w: f64::from(env.max_discharge().get()),
            charge_limited_by: env.charge_reasons().iter().map(ToString::to_string).collect(),
            discharge_limited_by: env.discharge_reasons().iter().map(ToString::to_string).collect(),
            latched_faults: latched.iter().map(ToString::to_string).collect(),
            recent_events: self.recent.iter().cloned().collect(),
        };
        self.view.send_replace(view);
        if self.last_history.is_none_or(|t| t.elapsed() >= self.history_every) {
            self.last_history = Some(Instant::now());
            if let Err(e) = self.history.record(Timestamp::now(), &numbers) {
                tracing::error!("history: {e}");
            }
        }
        // Retention of the database's history, once an hour.
        if let Some(db) = &self.db {
            if self.last_maintain.is_none_or(|t| t.elapsed() >= Duration::from_secs(3600)) {
                self.last_maintain = Some(Instant::now());
                if let Err(e) = db.maintain(Timestamp::now()) {
                    tracing::error!("history retention: {e}");
                }
            }
        }
    }
}
