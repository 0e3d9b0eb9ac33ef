//! One way to start the API: [`ServerConfig`] says what to serve, [`Server::start`] assembles
//! the stores, tokens, schedules and control modes, binds the listener and serves the router on
//! the current tokio runtime; the [`LoopHandles`] it returns are the control loop's side (the
//! view to publish, the command inbox, the shared modes and schedules, the audit writer).
//! [`ServerConfig::assemble`] does the same without a listener, for tests that call the router
//! directly.

use crate::audit_queue::{QueuedAudit, QueuedHistory};
use crate::auth::{
    generate_admin_token, hash_token, RateLimit, Role, TokenConfig, TokenConfigError, TokenRegistry,
    DEFAULT_ADDRESS_LIMIT,
};
use crate::control_modes::{ControlModes, DEFAULT_WATCHDOG};
use crate::db::{Db, DbOptions};
use crate::economics::EconomicsPort;
use crate::metrics::Metrics;
use crate::model::{command_channel, view_channel, CommandInbox, SiteView};
use crate::ports::{
    AuditEntry, AuditSink, CommandQueueEStop, EmergencyStopPort, HistoryStore, MemoryStore, ScheduleStore,
    StoreError,
};
use crate::rest::router;
use crate::schedules::{KeyError, ProviderKey, ScheduleConfig, Schedules};
use crate::server::{serve, ServerLimits};
use crate::state::{ApiConfig, ApiState, Clock, SystemClock};
use axum::Router;
use ems_core::Watts;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, watch};

/// Who may call the API.
#[derive(Debug, Clone)]
pub enum Tokens {
    /// These tokens (from the site file).
    Configured(Vec<TokenConfig>),
    /// One admin token generated at start; [`LoopHandles::generated_admin_token`] holds it for
    /// the caller to show once (the built-in simulated site has no file to hold tokens).
    GenerateAdmin,
}

/// How the software E-stop reaches the loop.
#[derive(Clone)]
pub enum EStopRoute {
    /// Through this port, outside the command queue (nothing queued can delay it).
    Port(Arc<dyn EmergencyStopPort>),
    /// As a command through the queue ([`CommandQueueEStop`]; tests and loops without a port).
    CommandQueue,
}

impl std::fmt::Debug for EStopRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Port(_) => "Port",
            Self::CommandQueue => "CommandQueue",
        })
    }
}

/// Where the audit log, the telemetry history and the schedules are kept.
#[derive(Clone)]
pub enum Storage {
    /// In memory (lost at exit).
    Memory,
    /// A SQLite database, integrity-checked on open.
    Database {
        /// The file.
        path: PathBuf,
        /// Retention and history batching.
        options: DbOptions,
    },
    /// Stores the caller keeps a handle to (tests inspect them).
    Stores {
        /// The audit log.
        audit: Arc<dyn AuditSink>,
        /// Telemetry history.
        history: Arc<dyn HistoryStore>,
        /// Provider schedules.
        schedules: Arc<dyn ScheduleStore>,
    },
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Memory => f.write_str("Memory"),
            Self::Database { path, options } => {
                f.debug_struct("Database").field("path", path).field("options", options).finish()
            }
            Self::Stores { .. } => f.write_str("Stores"),
        }
    }
}

/// Everything [`Server::start`] needs besides the E-stop port. `..ServerConfig::default()`
/// fills what a caller does not set.
#[derive(Clone)]
pub struct ServerConfig {
    /// Where to listen (port 0 picks a free one; see [`Server::addr`]).
    pub listen: SocketAddr,
    /// Who may call.
    pub tokens: Tokens,
    /// Requests per token.
    pub token_rate: RateLimit,
    /// Requests per client address.
    pub address_rate: RateLimit,
    /// The site's serial numbers and ratings for provider schedules.
    pub schedules: ScheduleConfig,
    /// Providers allowed to submit schedules, with their Ed25519 keys.
    pub providers: Vec<ProviderKey>,
    /// The largest power an operator's control mode may ask for.
    pub override_max: Watts,
    /// Where audit, history and schedules are kept.
    pub storage: Storage,
    /// `Some(n)`: audit entries and history samples queue for writer threads (at most `n`
    /// routine ones waiting, the rest dropped and counted; safety entries never), so that neither
    /// the control thread nor a handler waits for the store. `None`: written directly.
    pub write_queue: Option<usize>,
    /// Commands (E-stop aside) that may wait for the loop.
    pub command_queue: usize,
    /// How long a handler waits for the loop's answer to a command.
    pub command_timeout: Duration,
    /// Settings of the router.
    pub api: ApiConfig,
    /// Connection and request limits of the HTTP server.
    pub limits: ServerLimits,
    /// UTC time (a mock in tests).
    pub clock: Arc<dyn Clock>,
    /// The economics engine behind `/api/v1/plan`, `/prices`, `/rules`, ... (default `None`:
    /// those endpoints answer 404, economics not configured).
    pub economics: Option<Arc<dyn EconomicsPort>>,
    /// The grid-service commitments behind `/api/v1/grid-services` (default `None`: 404).
    pub grid_services: Option<Arc<crate::grid_services::GridServices>>,
    /// The cloud link's state behind `GET /api/v1/cloud` (default `None`: 404).
    pub cloud: Option<Arc<crate::cloud::CloudShared>>,
    /// The MQTT link's counters behind `GET /api/v1/mqtt` (default `None`: 404); give the
    /// same status to `MqttLinks::status`.
    pub mqtt: Option<Arc<crate::mqtt::status::MqttStatus>>,
    /// Tokens of the gateway's own clients (the cloud link), added to the configured or
    /// generated ones.
    pub internal_tokens: Vec<TokenConfig>,
    /// The island view behind `/api/v1/island` (default `None`: 404).
    pub island: Option<Arc<crate::island::IslandBoard>>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tokens: Tokens::GenerateAdmin,
            token_rate: RateLimit::default(),
            address_rate: DEFAULT_ADDRESS_LIMIT,
            schedules: ScheduleConfig::default(),
            providers: Vec::new(),
            override_max: Watts::ZERO,
            storage: Storage::Memory,
            write_queue: Some(4096),
            command_queue: 16,
            command_timeout: Duration::from_secs(5),
            api: ApiConfig::default(),
            limits: ServerLimits::default(),
            clock: Arc::new(SystemClock),
            economics: None,
            grid_services: None,
            cloud: None,
            mqtt: None,
            internal_tokens: Vec::new(),
            island: None,
        }
    }
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("listen", &self.listen)
            .field("storage", &self.storage)
            .field("limits", &self.limits)
            .field("economics", &self.economics.is_some())
            .finish_non_exhaustive()
    }
}

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// No random admin token could be made.
    #[error("random token: {0}")]
    RandomToken(#[from] getrandom::Error),
    /// A configured token is invalid.
    #[error("tokens: {0}")]
    Tokens(#[from] TokenConfigError),
    /// The database could not be opened.
    #[error("database: {0}")]
    Database(StoreError),
    /// The database failed its integrity check.
    #[error("database {}: integrity check: {check}", path.display())]
    Integrity {
        /// The file.
        path: PathBuf,
        /// What SQLite reported.
        check: String,
    },
    /// A provider key is invalid, or the stored schedules could not be read.
    #[error("schedules: {0}")]
    Schedules(#[from] KeyError),
    /// A writer thread could not be started.
    #[error("writer thread: {0}")]
    Writer(std::io::Error),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {error}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        error: std::io::Error,
    },
}

/// Where the loop writes its audit entries.
#[derive(Debug, Clone)]
pub enum LoopAudit {
    /// Through the write-behind queue (a server with a [`ServerConfig::write_queue`]).
    Queued(Arc<QueuedAudit>),
    /// Straight to the store.
    Direct(Arc<dyn AuditSink>),
}

impl LoopAudit {
    /// A safety-relevant entry: never dropped.
    pub fn append_safety(&self, entry: &AuditEntry) {
        match self {
            Self::Queued(q) => q.append_safety(entry),
            Self::Direct(sink) => Self::direct(sink, entry),
        }
    }

    /// A routine entry: dropped (and counted) when the queue is full; `false` then.
    pub fn append_routine(&self, entry: &AuditEntry) -> bool {
        match self {
            Self::Queued(q) => q.append_routine(entry),
            Self::Direct(sink) => {
                Self::direct(sink, entry);
                true
            }
        }
    }

    fn direct(sink: &Arc<dyn AuditSink>, entry: &AuditEntry) {
        if let Err(e) = sink.append(entry) {
            tracing::error!(error = %e, action = %entry.action, "audit log write failed");
        }
    }
}

/// The control loop's side of the API.
#[derive(Debug)]
pub struct LoopHandles {
    /// Publish the site view here.
    pub view: watch::Sender<SiteView>,
    /// Commands from the API (state requests, resets, site mode; the E-stop too when the
    /// E-stop port goes through the queue).
    pub commands: CommandInbox,
    /// Control modes (the loop reads `active_override` each cycle).
    pub modes: Arc<Mutex<ControlModes>>,
    /// Provider schedules.
    pub schedules: Arc<Schedules>,
    /// Telemetry history (queued when the server has a write queue).
    pub history: Arc<dyn HistoryStore>,
    /// The audit log.
    pub audit: LoopAudit,
    /// The database, when [`Storage::Database`] (for its retention job).
    pub db: Option<Arc<Db>>,
    /// Metrics the loop adds to (cycle timing, state, device errors).
    pub metrics: Arc<Metrics>,
    /// The admin token made for [`Tokens::GenerateAdmin`], to be shown once.
    pub generated_admin_token: Option<String>,
}

/// The router with its state, not yet served.
#[derive(Debug)]
pub struct Assembled {
    /// The router (every endpoint of `rest`, `ws` and the page).
    pub router: Router,
    /// The loop's side.
    pub handles: LoopHandles,
}

impl ServerConfig {
    /// Build the stores, tokens, schedules and modes and the router over them, without
    /// serving it. `estop`: how the software E-stop reaches the loop.
    ///
    /// # Errors
    /// [`StartError`] but `Listen`.
    pub fn assemble(self, estop: EStopRoute) -> Result<Assembled, StartError> {
        let (mut tokens, generated_admin_token) = match self.tokens {
            Tokens::Configured(t) => (t, None),
            Tokens::GenerateAdmin => {
                let token = generate_admin_token()?;
                let t = TokenConfig {
                    name: "admin".to_owned(),
                    role: Role::Admin,
                    sha256_hex: hash_token(&token),
                };
                (vec![t], Some(token))
            }
        };
        tokens.extend(self.internal_tokens);
        let registry = TokenRegistry::new(&tokens, self.token_rate)?.with_address_limit(self.address_rate);
        let metrics = Arc::new(Metrics::new());
        let (audit, history, schedule_store, db) = open_storage(self.storage)?;
        let (audit, loop_audit, history): (Arc<dyn AuditSink>, LoopAudit, Arc<dyn HistoryStore>) = match self
            .write_queue
        {
            Some(n) => {
                let q =
                    Arc::new(QueuedAudit::new(audit, n, Some(metrics.clone())).map_err(StartError::Writer)?);
                let h = Arc::new(QueuedHistory::new(history, n).map_err(StartError::Writer)?);
                (q.clone(), LoopAudit::Queued(q), h)
            }
            None => (audit.clone(), LoopAudit::Direct(audit), history),
        };
        let schedules =
            Arc::new(Schedules::load(self.schedules, &self.providers, schedule_store, audit.clone())?);
        let modes =
            Arc::new(Mutex::new(ControlModes::new(DEFAULT_WATCHDOG, f64::from(self.override_max.get()))));
        let (view_tx, view_rx) = view_channel();
        let (client, inbox) = command_channel(self.command_queue, self.command_timeout);
        let estop: Arc<dyn EmergencyStopPort> = match estop {
            EStopRoute::Port(port) => port,
            EStopRoute::CommandQueue => Arc::new(CommandQueueEStop(client.clone())),
        };
        let state = ApiState {
            tokens: Arc::new(registry),
            view: view_rx,
            commands: client,
            modes: modes.clone(),
            schedules: schedules.clone(),
            history: history.clone(),
            audit,
            clock: self.clock,
            estop,
            metrics: metrics.clone(),
            config: self.api,
            economics: self.economics,
            grid_services: self.grid_services,
            cloud: self.cloud,
            mqtt: self.mqtt,
            island: self.island,
        };
        let handles = LoopHandles {
            view: view_tx,
            commands: inbox,
            modes,
            schedules,
            history,
            audit: loop_audit,
            db,
            metrics,
            generated_admin_token,
        };
        Ok(Assembled { router: router(state), handles })
    }
}

type Stores = (Arc<dyn AuditSink>, Arc<dyn HistoryStore>, Arc<dyn ScheduleStore>, Option<Arc<Db>>);

fn open_storage(storage: Storage) -> Result<Stores, StartError> {
    match storage {
        Storage::Memory => {
            let m = Arc::new(MemoryStore::default());
            Ok((m.clone(), m.clone(), m, None))
        }
        Storage::Database { path, options } => {
            let db = Arc::new(Db::open_with(&path, options).map_err(StartError::Database)?);
            let check = db.integrity_check().map_err(StartError::Database)?;
            if check != "ok" {
                return Err(StartError::Integrity { path, check });
            }
            Ok((db.clone(), db.clone(), db.clone(), Some(db)))
        }
        Storage::Stores { audit, history, schedules } => Ok((audit, history, schedules, None)),
    }
}

/// The API, served on the tokio runtime it was started on.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    /// A clone of the served router, for in-process callers (the SunSpec Modbus server
    /// dispatches its control writes through it).
    router: Router,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Assemble the API ([`ServerConfig::assemble`]), bind `config.listen` and serve the router
    /// within `config.limits` as a task of the current runtime. Dropping the [`Server`] leaves
    /// it serving for as long as the runtime runs; [`Server::stop`] ends it.
    ///
    /// # Errors
    /// [`StartError`].
    pub async fn start(config: ServerConfig, estop: EStopRoute) -> Result<(Self, LoopHandles), StartError> {
        let (listen, limits) = (config.listen, config.limits);
        let Assembled { router, handles } = config.assemble(estop)?;
        Ok((Self::serve(router, listen, limits).await?, handles))
    }

    /// Serve an assembled router ([`ServerConfig::assemble`]) on `listen` within `limits`, as
    /// [`Server::start`] does; for callers that also hand the router to another front end (the
    /// MQTT link dispatches its commands through it).
    ///
    /// # Errors
    /// [`StartError::Listen`].
    pub async fn serve(router: Router, listen: SocketAddr, limits: ServerLimits) -> Result<Self, StartError> {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|error| StartError::Listen { addr: listen, error })?;
        let addr = listener.local_addr().map_err(|error| StartError::Listen { addr: listen, error })?;
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            // A dropped `Server` (no stop sent) keeps serving.
            if stopped.await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        let served = router.clone();
        let task = tokio::spawn(async move {
            let result = serve(listener, served, limits, shutdown).await;
            if let Err(e) = &result {
                tracing::error!("API server stopped: {e}");
            }
            result
        });
        Ok(Self { addr, stop: Some(stop), task, router })
    }

    /// The address it listens on.
    #[must_use]
    pub const fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The router it serves (same state), for requests made in-process.
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// Stop accepting, let open connections finish their request, and wait for that.
    ///
    /// # Errors
    /// The server's own error, or its task's (a panic) as an I/O error.
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.map_err(std::io::Error::other)?
    }
}
