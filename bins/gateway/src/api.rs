//! The local API (`ems-api`) wired to the control loop: the HTTP server runs on the gateway's
//! API runtime (never on the control thread); the loop publishes the site view, drains the API's commands (E-stop,
//! reset, state requests) into the controller's `Inputs`, applies the active control mode and the
//! due provider schedule as controller inputs (never around the final clamp), reports what a
//! schedule actually got, and writes controller events to the audit log and telemetry to the
//! history — every store write through a bounded queue to the writer thread.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ems_api::auth::{RateLimit, TokenConfig};
use ems_api::control_modes::ControlModes;
use ems_api::db::{Db, DbOptions, Retention};
use ems_api::metrics::Metrics;
use ems_api::model::{
    channels, ApiCommand, ChannelValue, CommandInbox, DevicesView, LinkError, PendingCommand, Refusal,
    SafetyView, SiteView,
};
use ems_api::ports::{AuditEntry, EStopAck, EmergencyStopPort, HistoryStore, Outcome};
use ems_api::schedules::{ProviderKey, ScheduleConfig, Schedules};
use ems_api::server::ServerLimits;
use ems_api::start::{EStopRoute, LoopAudit, LoopHandles, Server, ServerConfig, Storage, Tokens};
use ems_api::state::ApiConfig;
use ems_control::{Inputs, Output};
use ems_core::{Snapshot, TransitionRequest, Watts};
use ems_devices::wrappers::events::DeviceEvent;
use ems_runtime::EStopTrigger;
use jiff::Timestamp;
use tokio::sync::watch;

use crate::error::LiveError;
use crate::view::{device_error, is_routine, Flows};

/// How the API is started.
#[derive(Debug, Clone)]
pub(crate) struct ApiStart {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The battery serial numbers provider schedules may name.
    pub serials: Vec<String>,
    /// Device rating for schedules, W.
    pub rating_w: u64,
    /// The battery's energy, Wh, if known (the Modbus server's models 713 and 802).
    pub capacity_wh: Option<f64>,
    /// Providers allowed to submit schedules, with their Ed25519 keys.
    pub providers: Vec<ProviderKey>,
    /// The SQLite database (audit log, history, schedules); in memory when `None`.
    pub database: Option<std::path::PathBuf>,
    /// The configured tokens; `None` generates an admin token and prints it once (the built-in
    /// simulated site has no config to hold tokens).
    pub tokens: Option<Vec<TokenConfig>>,
    /// Connection and request limits.
    pub limits: ApiLimits,
    /// Live economics behind the economics endpoints (`None`: they answer 404).
    pub economics: Option<Arc<dyn ems_api::economics::EconomicsPort>>,
    /// The grid-service commitments behind `/api/v1/grid-services` (`None`: 404).
    pub grid_services: Option<Arc<ems_api::grid_services::GridServices>>,
    /// The cloud link (`None`: none).
    pub cloud: Option<ems_api::cloud::CloudConfig>,
    /// The island view behind `/api/v1/island` (`None`: 404).
    pub island: Option<Arc<ems_api::island::IslandBoard>>,
    /// The SunSpec Modbus server (`[modbus_server]`, `--modbus-server`), if any.
    pub modbus: Option<crate::config::ModbusServerWiring>,
    /// The MQTT link (`[mqtt]`, `--mqtt`; `None`: none).
    pub mqtt: Option<ems_api::mqtt::MqttConfig>,
}

/// Limits of the HTTP server and the stores (`[api]` in the site file).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ApiLimits {
    /// Connections, header-read, idle and request timeouts.
    pub server: ServerLimits,
    /// Requests per token.
    pub token_rate: RateLimit,
    /// Requests per client address.
    pub address_rate: RateLimit,
    /// `GET /metrics` without a token.
    pub metrics_public: bool,
    /// Audit and history retention of the database.
    pub retention: Retention,
    /// How many routine audit entries and history samples may wait for their writer before
    /// new ones are dropped (and counted).
    pub write_queue: usize,
}

impl Default for ApiLimits {
    fn default() -> Self {
        Self {
            server: ServerLimits::default(),
            token_rate: crate::config::rate_limit(crate::config::ApiWiring::DEFAULT_RATE_LIMIT_PER_MINUTE),
            address_rate: crate::config::rate_limit(
                crate::config::ApiWiring::DEFAULT_IP_RATE_LIMIT_PER_MINUTE,
            ),
            metrics_public: false,
            retention: Retention::default(),
            write_queue: 4096,
        }
    }
}

impl ApiLimits {
    /// From `[api]` of the site file.
    pub(crate) fn from_wiring(a: &crate::config::ApiWiring) -> Self {
        let mut retention = Retention {
            audit_max_age: Some(a.audit_max_age),
            audit_max_rows: a.audit_max_rows,
            ..Retention::default()
        };
        let h = &mut retention.history;
        h.quarter = a.history_max_age;
        h.minute = h.minute.min(a.history_max_age);
        h.raw = h.raw.min(a.history_max_age);
        Self {
            server: ServerLimits {
                max_connections: a.max_connections,
                header_read_timeout: a.header_read_timeout,
                idle_timeout: a.idle_timeout,
                ..ServerLimits::default()
            },
            token_rate: crate::config::rate_limit(a.rate_limit_per_minute),
            address_rate: crate::config::rate_limit(a.ip_rate_limit_per_minute),
            metrics_public: a.metrics_public,
            retention,
            write_queue: Self::default().write_queue,
        }
    }
}

/// The software E-stop of the API: the loop's trigger, answered once zero was issued.
#[derive(Debug, Clone)]
struct TriggerPort(EStopTrigger);

impl EmergencyStopPort for TriggerPort {
    fn press(
        &self,
        actor: &str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<EStopAck, LinkError>> + Send + '_>> {
        tracing::warn!(target: "audit", "software E-stop pressed by {actor}");
        let answer = self.0.press();
        Box::pin(async move {
            match tokio::time::timeout(Duration::from_secs(5), answer).await {
                Ok(Ok(done)) => Ok(EStopAck { state: done.state, took: done.took }),
                Ok(Err(_)) => Err(LinkError::Closed),
                Err(_) => Err(LinkError::Timeout),
            }
        })
    }
}

/// How many recent events the safety view carries.
const RECENT_EVENTS: usize = 20;
/// Without a database, telemetry history is recorded at most this often (the in-memory store
/// is bounded); with one, every cycle (the SQLite store batches and downsamples).
const MEMORY_HISTORY_EVERY: Duration = Duration::from_secs(1);
/// How often the database's retention runs.
const MAINTAIN_EVERY: Duration = Duration::from_secs(3600);

/// A job for the writer thread.
type Job = Box<dyn FnOnce() + Send>;

/// The writer for the control thread's other store work (schedule execution reports, the
/// database's retention), so that SQLite and its fsyncs never run on the control thread. The
/// queue is bounded: a full queue drops the write (counted); these are all repeated or
/// recomputed later. (Audit entries and history samples have their own queues in `ems-api`.)
struct Writer {
    tx: std::sync::mpsc::SyncSender<Job>,
    depth: Arc<std::sync::atomic::AtomicUsize>,
    dropped: u64,
}

impl Writer {
    fn spawn(capacity: usize) -> Result<Self, LiveError> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(capacity.max(1));
        let depth = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let d = depth.clone();
        std::thread::Builder::new()
            .name("ems-writer".to_owned())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    job();
                    d.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                }
            })
            .map_err(LiveError::Runtime)?;
        Ok(Self { tx, depth, dropped: 0 })
    }

    fn try_send(&self, job: Job) -> Result<(), Job> {
        self.depth.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.tx.try_send(job).map_err(|e| {
            self.depth.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            match e {
                std::sync::mpsc::TrySendError::Full(j) | std::sync::mpsc::TrySendError::Disconnected(j) => j,
            }
        })
    }

    /// A write that may be dropped when the writer is behind.
    fn routine(&mut self, job: Job) {
        if self.try_send(job).is_err() {
            self.dropped += 1;
        }
    }

    fn depth(&self) -> usize {
        self.depth.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Wait (bounded) until the writer has done everything queued: at the end of a run.
    fn drain(&mut self, within: Duration) {
        let until = Instant::now() + within;
        while (self.depth() > 0) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

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
    recent: VecDeque<String>,
    last_history: Option<Instant>,
    history_every: Duration,
    db: Option<Arc<Db>>,
    last_maintain: Option<Instant>,
    writer: Writer,
    audit: LoopAudit,
    metrics: Arc<Metrics>,
    mode: Option<(ems_control::ModeSetting, String)>,
    island: Option<Arc<ems_api::island::IslandBoard>>,
    island_outcome: Option<ems_runtime::IslandRequestOutcome>,
    /// The SunSpec Modbus server: kept alive with the loop's API (dropping it stops it).
    _modbus: Option<ems_api::modbus_server::ModbusServer>,
    mqtt: Option<ems_api::mqtt::Mqtt>,
}

impl std::fmt::Debug for LoopApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopApi").field("schedules", &self.schedules).finish_non_exhaustive()
    }
}

/// Start the API on the current (API) runtime: the HTTP server as its task, and the loop's
/// handle returned for the control thread. With `tokens: None` an admin token is generated
/// and printed once as `admin token: <token>`.
pub(crate) async fn start(opts: ApiStart, trigger: EStopTrigger) -> Result<LoopApi, LiveError> {
    #[allow(clippy::cast_precision_loss)] // a rating in W
    let override_max = Watts::saturating(opts.rating_w as f32);
    let (cloud, internal_tokens) = cloud_prep(opts.cloud)?;
    // The Modbus server's control writes go through the router with a token of their own
    // (named `modbus-server`, the audit actor), made here and never shown.
    let (tokens, modbus_token, admin_token) = modbus_tokens(opts.tokens, opts.modbus.as_ref())?;
    let mqtt_status = opts.mqtt.as_ref().map(|_| ems_api::mqtt::MqttStatus::new());
    let config = ServerConfig {
        listen: opts.listen,
        tokens,
        token_rate: opts.limits.token_rate,
        address_rate: opts.limits.address_rate,
        schedules: ScheduleConfig {
            serials: opts.serials,
            max_charge_w: opts.rating_w,
            max_discharge_w: opts.rating_w,
            ..ScheduleConfig::default()
        },
        providers: opts.providers,
        override_max,
        storage: match opts.database {
            Some(path) => Storage::Database {
                path,
                options: DbOptions { retention: opts.limits.retention, ..DbOptions::default() },
            },
            None => Storage::Memory,
        },
        write_queue: Some(opts.limits.write_queue),
        api: ApiConfig { metrics_public: opts.limits.metrics_public, ..ApiConfig::default() },
        limits: opts.limits.server,
        economics: opts.economics,
        grid_services: opts.grid_services,
        cloud: cloud.as_ref().map(|(_, _, s)| s.clone()),
        mqtt: mqtt_status.clone(),
        internal_tokens,
        island: opts.island.clone(),
        ..ServerConfig::default()
    };
    let (listen, limits) = (config.listen, config.limits);
    let ems_api::start::Assembled { router, handles } = config
        .assemble(EStopRoute::Port(Arc::new(TriggerPort(trigger))))
        .map_err(|e| LiveError::Devices(format!("API: {e}")))?;
    // The MQTT link dispatches its commands through the same router: one code path.
    let mqtt = match &opts.mqtt {
        Some(m) => {
            let links = ems_api::mqtt::MqttLinks {
                router: router.clone(),
                view: handles.view.subscribe(),
                audit: Some(handles.audit.clone()),
                db: handles.db.clone(),
                status: mqtt_status,
            };
            let link =
                ems_api::mqtt::Mqtt::start(m, links).map_err(|e| LiveError::Devices(format!("MQTT: {e}")))?;
            println!("MQTT to {} as {}/{} (status, state/..., events, cmd/...)", m.broker, m.prefix, m.site);
            Some(link)
        }
        None => None,
    };
    let server =
        Server::serve(router, listen, limits).await.map_err(|e| LiveError::Devices(format!("API: {e}")))?;
    let addr = server.addr();
    println!("API on http://{addr}/api/v1 (OpenAPI: http://{addr}/api/v1/openapi.json)");
    let LoopHandles { view, commands, modes, schedules, history, audit, db, metrics, generated_admin_token } =
        handles;
    if let Some((config, token, status)) = cloud {
        println!("cloud link: {} every {:?}", config.url, config.period);
        let parts = ems_api::cloud::CloudParts {
            view: view.subscribe(),
            modes: modes.clone(),
            router: server.router(),
            token,
            db: db.clone(),
            status,
        };
        tokio::spawn(ems_api::cloud::run(config, parts));
    }
    let modbus =
        start_modbus(opts.modbus, modbus_token, (opts.rating_w, opts.capacity_wh), &server, &view, &modes)
            .await?;
    let api = LoopApi {
        view,
        inbox: commands,
        queue: VecDeque::new(),
        in_flight: None,
        reason: String::new(),
        modes,
        schedules,
        running_schedule: None,
        history,
        recent: VecDeque::new(),
        last_history: None,
        history_every: if db.is_some() { Duration::ZERO } else { MEMORY_HISTORY_EVERY },
        db,
        last_maintain: None,
        writer: Writer::spawn(opts.limits.write_queue)?,
        audit,
        metrics,
        mode: None,
        island: opts.island,
        island_outcome: None,
        _modbus: modbus,
        mqtt,
    };
    if let Some(token) = generated_admin_token.or(admin_token) {
        println!("admin token: {token}");
    }
    Ok(api)
}

/// The SunSpec Modbus server of `[modbus_server]`, if configured (its token made by
/// [`modbus_tokens`]).
async fn start_modbus(
    modbus: Option<crate::config::ModbusServerWiring>,
    token: Option<String>,
    (rating_w, capacity_wh): (u64, Option<f64>),
    server: &Server,
    view: &tokio::sync::watch::Sender<ems_api::model::SiteView>,
    modes: &Arc<std::sync::Mutex<ems_api::control_modes::ControlModes>>,
) -> Result<Option<ems_api::modbus_server::ModbusServer>, LiveError> {
    Ok(match (modbus, token) {
        (Some(m), Some(token)) => {
            let mut config = m.config;
            #[allow(clippy::cast_precision_loss)] // a rating in W
            let rating = rating_w as f64;
            config.identity.rating_w = rating.max(1.0);
            config.identity.capacity_wh = capacity_wh;
            let ctx = ems_api::modbus_server::ServerContext {
                router: server.router(),
                token,
                view: view.subscribe(),
                modes: modes.clone(),
                clock: Arc::new(ems_api::state::SystemClock),
            };
            let s = ems_api::modbus_server::ModbusServer::start(config, ctx)
                .await
                .map_err(|e| LiveError::Devices(e.to_string()))?;
            if let Some(a) = s.addr() {
                println!("SunSpec Modbus server on {a} (SunS at register address 40000)");
            }
            if let Some(a) = s.read_only_addr() {
                println!("SunSpec Modbus server (read-only) on {a}");
            }
            Some(s)
        }
        _ => None,
    })
}

type CloudPrep = Option<(ems_api::cloud::CloudConfig, String, Arc<ems_api::cloud::CloudShared>)>;

/// The cloud link calls the REST API in-process as an operator of its own, named `cloud` in
/// the audit log; its token is made here and never leaves the process.
fn cloud_prep(c: Option<ems_api::cloud::CloudConfig>) -> Result<(CloudPrep, Vec<TokenConfig>), LiveError> {
    let Some(c) = c else { return Ok((None, Vec::new())) };
    let token = ems_api::auth::generate_admin_token()
        .map_err(|e| LiveError::Devices(format!("cloud link token: {e}")))?;
    let internal = vec![TokenConfig {
        name: ems_api::cloud::CLOUD_ACTOR.to_owned(),
        role: ems_api::cloud::CLOUD_ROLE,
        sha256_hex: ems_api::auth::hash_token(&token),
    }];
    let status = ems_api::cloud::shared(&c);
    Ok((Some((c, token, status)), internal))
}

/// The API's tokens with the Modbus server's own one added: `(tokens, its token, a generated
/// admin token to print)`. Without a Modbus server: the configured tokens, or one generated
/// admin token (made by `ems-api`).
fn modbus_tokens(
    configured: Option<Vec<TokenConfig>>,
    modbus: Option<&crate::config::ModbusServerWiring>,
) -> Result<(Tokens, Option<String>, Option<String>), LiveError> {
    let Some(m) = modbus else {
        return Ok((configured.map_or(Tokens::GenerateAdmin, Tokens::Configured), None, None));
    };
    let random =
        || ems_api::auth::generate_admin_token().map_err(|e| LiveError::Devices(format!("API token: {e}")));
    let token = random()?;
    let own = TokenConfig {
        name: "modbus-server".to_owned(),
        role: m.role,
        sha256_hex: ems_api::auth::hash_token(&token),
    };
    Ok(match configured {
        Some(mut list) => {
            list.push(own);
            (Tokens::Configured(list), Some(token), None)
        }
        None => {
            let admin = random()?;
            let a = TokenConfig {
                name: "admin".to_owned(),
                role: ems_api::auth::Role::Admin,
                sha256_hex: ems_api::auth::hash_token(&admin),
            };
            (Tokens::Configured(vec![a, own]), Some(token), Some(admin))
        }
    })
}

impl LoopApi {
    /// Before the island step: an operator's island action waiting at the head of the queue
    /// (only when no other command is in flight), as the loop's request.
    pub(crate) fn island_request(&mut self) -> Option<ems_runtime::IslandRequest> {
        while let Some(p) = self.inbox.try_next() {
            self.queue.push_back(p);
        }
        if self.in_flight.is_some()
            || !matches!(self.queue.front().map(PendingCommand::command), Some(ApiCommand::Island { .. }))
        {
            return None;
        }
        self.in_flight = self.queue.pop_front();
        self.island_outcome = None;
        match self.in_flight.as_ref().map(PendingCommand::command) {
            Some(ApiCommand::Island { action, reason, .. }) => Some(match action {
                ems_api::island::IslandAction::BlackStart => {
                    ems_runtime::IslandRequest::BlackStart { reason: reason.clone() }
                }
                ems_api::island::IslandAction::Reset => {
                    ems_runtime::IslandRequest::Reset { reason: reason.clone() }
                }
            }),
            _ => None,
        }
    }

    /// What became of the island request (answered after the step).
    pub(crate) fn island_answer(&mut self, outcome: ems_runtime::IslandRequestOutcome) {
        self.island_outcome = Some(outcome);
    }

    /// Publish the island path's status as the API's view.
    pub(crate) fn publish_island(&self, status: &ems_runtime::IslandStatus) {
        if let Some(b) = &self.island {
            b.publish(crate::island::view(status));
        }
    }

    /// What the planner thread needs of the API: the audit log and the database.
    pub(crate) fn economics_handles(&self) -> (Option<LoopAudit>, Option<Arc<Db>>) {
        (Some(self.audit.clone()), self.db.clone())
    }

    /// The MQTT link, for the caller to stop (publish `offline`, disconnect) after the loop.
    pub(crate) fn take_mqtt(&mut self) -> Option<ems_api::mqtt::Mqtt> {
        self.mqtt.take()
    }

    /// Accept control modes `"until": "sunset"` with the site's sunsets.
    pub(crate) fn set_sunsets(&self, source: impl ems_api::control_modes::SunsetSource + 'static) {
        self.modes().set_sunset_source(source);
    }

    fn modes(&self) -> std::sync::MutexGuard<'_, ControlModes> {
        // Plain data: a panic elsewhere while holding the lock leaves it consistent.
        self.modes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn entry(actor: &str, action: String, outcome: Outcome, detail: String) -> AuditEntry {
        AuditEntry { seq: 0, at: Timestamp::now(), actor: actor.to_owned(), action, outcome, detail }
    }

    /// Audit a safety-relevant entry (state changes, E-stops, resets, refused commands, device
    /// trips): queued for the audit writer, never dropped.
    fn audit_entry_safety(&mut self, e: AuditEntry) {
        self.audit.append_safety(&e);
    }

    /// Audit a routine entry: queued for the audit writer, dropped (and counted) when it is
    /// behind.
    fn audit_entry_routine(&mut self, e: AuditEntry) {
        let _ = self.audit.append_routine(&e);
    }

    /// Audit a safety-relevant action of the gateway itself.
    pub(crate) fn audit_safety(&mut self, actor: &str, action: &str, detail: &str) {
        self.audit_entry_safety(Self::entry(actor, action.to_owned(), Outcome::Ok, detail.to_owned()));
    }

    /// Before `Controller::step`: at most one API state command this cycle (only when the loop
    /// itself has none, and none during a graceful shutdown but an E-stop), the active control
    /// mode and the due schedule.
    pub(crate) fn fill<'a>(
        &'a mut self,
        inputs: &mut Inputs<'a>,
        loop_has_request: bool,
        shutting_down: bool,
    ) {
        while let Some(p) = self.inbox.try_next() {
            self.queue.push_back(p);
        }
        if self.in_flight.is_none() {
            let take = match self.queue.front().map(PendingCommand::command) {
                Some(ApiCommand::EmergencyStop { .. }) => true,
                // Taken by `island_request`, before the island step.
                Some(ApiCommand::Island { .. }) => false,
                Some(_) => !loop_has_request && !shutting_down,
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
            Some(ApiCommand::SetMode { mode, .. }) => inputs.set_mode = Some(*mode),
            Some(ApiCommand::Island { .. }) | None => {}
        }
        if shutting_down {
            return;
        }
        let now = Timestamp::now();
        let (expired, operator) = {
            let mut modes = self.modes();
            (modes.expire(now), modes.active_override(now))
        };
        if let Some(m) = expired {
            self.audit_entry_routine(Self::entry(
                "controller",
                "control mode expired".to_owned(),
                Outcome::Ok,
                format!("{m:?}"),
            ));
        }
        inputs.ess_override = operator;
        self.running_schedule = None;
        if let Some((id, target)) = self.schedules.due_action(now) {
            // Who wins against the operator's control mode is `arbitrate`'s decision, not ours.
            inputs.provider = Some(target);
            self.running_schedule = Some(id);
        }
        if inputs.request == Some(TransitionRequest::Reset) && !self.reason.is_empty() {
            inputs.reason = &self.reason;
        }
    }

    /// After `Controller::step`: answer the command in flight, report the schedule's applied
    /// power, audit the controller's events, publish the view and record history — every store
    /// write through the writer thread.
    pub(crate) fn after(
        &mut self,
        out: &Output,
        snapshot: &Snapshot,
        now_ms: ems_core::Millis,
        latched: &[ems_core::TripReason],
        mode: ems_control::ModeSetting,
    ) {
        if self.mode.as_ref().is_none_or(|(m, _)| *m != mode) {
            self.mode = Some((mode, mode.to_string()));
        }
        // A control mode activated `"until": {"soc": …}` ends on the measured SOC (the next
        // cycle's `fill` expires it).
        self.modes().set_soc(snapshot.battery.soc.value_at(now_ms));
        self.metrics.set_state(out.state.as_str());
        if let Some(p) = self.in_flight.take() {
            let result = match (p.command(), &out.refused, &out.mode_refused) {
                (ApiCommand::SetMode { .. }, _, Some(e)) => {
                    Err(Refusal { state: out.state, reason: e.to_string() })
                }
                (ApiCommand::SetMode { actor, mode }, _, None) => {
                    let (actor, mode) = (actor.clone(), *mode);
                    self.audit_entry_safety(Self::entry(
                        &actor,
                        "site mode".to_owned(),
                        Outcome::Ok,
                        mode.to_string(),
                    ));
                    Ok(out.state)
                }
                (ApiCommand::Island { .. }, _, _) => match self.island_outcome.take() {
                    Some(ems_runtime::IslandRequestOutcome::Accepted) => Ok(out.state),
                    Some(ems_runtime::IslandRequestOutcome::NotInSafeStop) => Err(Refusal {
                        state: out.state,
                        reason: "the island sequence is not in SAFE STOP: nothing to reset".to_owned(),
                    }),
                    Some(ems_runtime::IslandRequestOutcome::NoIsland) | None => Err(Refusal {
                        state: out.state,
                        reason: "island operation is not configured on this site".to_owned(),
                    }),
                },
                (ApiCommand::EmergencyStop { .. }, _, _) | (_, None, _) => Ok(out.state),
                (_, Some(e), _) => Err(Refusal { state: out.state, reason: e.to_string() }),
            };
            p.answer(result);
            self.reason.clear();
        }
        if let Some(id) = self.running_schedule.clone() {
            let limited = out.binding.map(|b| b.to_string());
            let applied = out.command.setpoint();
            let schedules = self.schedules.clone();
            self.writer.routine(Box::new(move || {
                if let Err(e) = schedules.record_execution(&id, applied, limited.as_deref()) {
                    tracing::error!("schedule {id}: {e}");
                }
            }));
        }
        for e in &out.events {
            let text = e.kind.to_string();
            self.audit_entry_safety(Self::entry("controller", text.clone(), Outcome::Ok, String::new()));
            if self.recent.len() == RECENT_EVENTS {
                self.recent.pop_front();
            }
            // Stamped with the site's clock (UTC; the page shows local time), not time since boot.
            self.recent.push_back(ems_api::model::event_line(Timestamp::now(), &text));
        }
        if let Some(r) = &out.refused {
            self.audit_entry_safety(Self::entry(
                "controller",
                "request refused".to_owned(),
                Outcome::Refused,
                r.to_string(),
            ));
        }
        if out.source_changed {
            self.audit_entry_routine(Self::entry(
                "controller",
                format!("set-point source: {}", out.source),
                Outcome::Ok,
                String::new(),
            ));
        }
        self.publish(out, snapshot, latched);
    }

    /// Device events worth an operator's attention (trips, lease losses, refused or failed
    /// writes, lost and restored links) go to the audit log; routine housekeeping does not.
    pub(crate) fn device_events(&mut self, events: &ems_devices::wrappers::DeviceEvents) {
        for e in events.iter() {
            if let Some((device, kind)) = device_error(&e.event) {
                self.metrics.device_error(device, kind);
            }
            if is_routine(&e.event) {
                continue;
            }
            let entry =
                Self::entry("device layer", format!("device: {}", e.event), Outcome::Ok, String::new());
            // Readings rejected, reads failed and set-points clamped or skipped can come every
            // cycle while a device misbehaves: they may be dropped when the writer is behind.
            // Links lost and restored, failed or unapplied writes, lease changes, contactor
            // sequencing and the E-stop fast path never are.
            match e.event {
                DeviceEvent::ReadingRejected { .. }
                | DeviceEvent::ReadFailed { .. }
                | DeviceEvent::SetpointClamped { .. }
                | DeviceEvent::WriteSkipped { .. }
                | DeviceEvent::LeaseRenewed => self.audit_entry_routine(entry),
                DeviceEvent::CommLost { .. }
                | DeviceEvent::CommRestored { .. }
                | DeviceEvent::WriteFailed { .. }
                | DeviceEvent::WriteRefused { .. }
                | DeviceEvent::SetpointNotApplied { .. }
                | DeviceEvent::LeaseTaken { .. }
                | DeviceEvent::LeaseLost
                | DeviceEvent::LeaseReleased { .. }
                | DeviceEvent::PrechargeStarted
                | DeviceEvent::PrechargeDone { .. }
                | DeviceEvent::PrechargeFailed { .. }
                | DeviceEvent::ContactorClosed
                | DeviceEvent::ContactorOpened
                | DeviceEvent::ContactorWelded
                | DeviceEvent::ContactorFailedToClose
                | DeviceEvent::EStopFastPath { .. } => self.audit_entry_safety(entry),
            }
        }
    }

    /// Before the devices answer: the view says so, with the cause.
    pub(crate) fn publish_waiting(&mut self, cause: &str) {
        let text = format!("waiting for devices: {cause}");
        if self.recent.len() == RECENT_EVENTS {
            self.recent.pop_front();
        }
        self.recent.push_back(ems_api::model::event_line(Timestamp::now(), &text));
        let recent: Vec<String> = self.recent.iter().cloned().collect();
        let detail = cause.to_owned();
        self.view.send_modify(|v| {
            v.at = Some(Timestamp::now());
            v.safety.state = "BOOT".to_owned();
            v.safety.recent_events = recent;
            v.devices = DevicesView { ready: false, detail };
        });
    }

    /// The run ended: audit how, and let the writer finish (bounded).
    pub(crate) fn finish(&mut self, summary: &ems_runtime::RunSummary) {
        self.audit_safety("gateway", "shutdown", &format!("{}, state {}", summary.end, summary.state));
        if self.writer.dropped > 0 {
            tracing::warn!(
                "{} routine audit/history writes were dropped (writer behind)",
                self.writer.dropped
            );
        }
        self.writer.drain(Duration::from_secs(5));
    }

    /// A cycle's timing (metrics).
    pub(crate) fn timing(&self, timing: ems_runtime::CycleTiming) {
        self.metrics.observe_cycle(timing.duration, timing.lateness);
    }

    /// The E-stop fast path's time (metrics).
    pub(crate) fn estop_fast_path(&self, took: Duration) {
        self.metrics.observe_estop_to_zero(took);
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
        view.channels.insert(
            channels::ESS_COMMANDED_POWER.to_owned(),
            ChannelValue::Number(f64::from(out.command.setpoint().get())),
        );
        view.channels.insert(channels::COMMAND_SOURCE.to_owned(), ChannelValue::Text(out.source.to_string()));
        let env = &out.envelope;
        view.safety = SafetyView {
            state: out.state.to_string(),
            max_charge_w: f64::from(env.max_charge().get()),
            max_discharge_w: f64::from(env.max_discharge().get()),
            charge_limited_by: env.charge_reasons().iter().map(ToString::to_string).collect(),
            discharge_limited_by: env.discharge_reasons().iter().map(ToString::to_string).collect(),
            latched_faults: latched.iter().map(ToString::to_string).collect(),
            recent_events: self.recent.iter().cloned().collect(),
            mode: self.mode.as_ref().map(|m| m.1.clone()).unwrap_or_default(),
        };
        view.devices = DevicesView { ready: true, detail: String::new() };
        self.view.send_replace(view);
        if self.last_history.is_none_or(|t| t.elapsed() >= self.history_every) {
            self.last_history = Some(Instant::now());
            // Queued for the history writer (never blocks).
            if let Err(e) = self.history.record(Timestamp::now(), &numbers) {
                tracing::error!("history: {e}");
            }
        }
        // Retention of the database's history, once an hour, on the writer.
        if let Some(db) = &self.db {
            if self.last_maintain.is_none_or(|t| t.elapsed() >= MAINTAIN_EVERY) {
                self.last_maintain = Some(Instant::now());
                let db = db.clone();
                self.writer.routine(Box::new(move || {
                    if let Err(e) = db.maintain(Timestamp::now()) {
                        tracing::error!("history retention: {e}");
                    }
                }));
            }
        }
    }
}
