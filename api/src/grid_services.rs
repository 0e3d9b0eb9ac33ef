//! Grid-service commitments (issue #13 item 5): which frequency services the site is committed
//! to, with which capacity and in which time windows, and what the services do now.
//!
//! * [`GridServices`] holds the configured services (from the site's `[grid_services]`), the
//!   commitments (validated here: known and configured service, capacity never above the
//!   configured one, `from` < `until`, no overlapping windows of one service) and persists them
//!   whole in the database's `documents` table under [`DOCUMENT_KEY`], so a restart keeps them.
//! * The control thread reads the commitments without blocking
//!   ([`GridServices::try_commitments_since`]: a `try_lock` and an `Arc` clone, no allocation)
//!   and publishes the services' live status through a [`GridStatusSource`], which the API
//!   reads only when asked (`GET`).
//!
//! A service acts only inside a committed window: outside, the gateway runs it not at all.

use crate::db::Db;
use crate::economics::{PortError, PortErrorKind};
use crate::input::{self, FieldError};
use ems_core::{Hertz, Watts};
use jiff::Timestamp;
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// The `documents` key of the stored commitments.
pub const DOCUMENT_KEY: &str = "grid_services.commitments";

/// The answer of every grid-services endpoint on a site without `[grid_services]` (404).
pub const NOT_CONFIGURED: &str = "grid services are not configured on this site (no [grid_services] section)";

/// At most this many commitments in one `PUT` (four services, a day of 15-minute blocks each
/// would be 384; a day of hourly blocks each is 96).
pub const MAX_COMMITMENTS: usize = 400;

fn ser_watts<S: Serializer>(w: &Watts, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f32(w.get())
}

fn ser_opt_hertz<S: Serializer>(h: &Option<Hertz>, s: S) -> Result<S::Ok, S::Error> {
    match h {
        Some(h) => s.serialize_f32(h.get()),
        None => s.serialize_none(),
    }
}

/// The JSON schema of the `PUT` body (for the OpenAPI document).
#[must_use]
pub fn commitments_schema() -> Value {
    let names: Vec<&str> = Service::ALL.iter().map(|s| s.name()).collect();
    serde_json::json!({
        "type": "object", "additionalProperties": false, "required": ["commitments"],
        "properties": { "commitments": { "type": "array", "maxItems": MAX_COMMITMENTS, "items": {
            "type": "object", "additionalProperties": false,
            "required": ["service", "capacity_w", "from", "until"],
            "properties": {
                "service": { "enum": names },
                "capacity_w": { "type": "number", "exclusiveMinimum": 0 },
                "from": { "type": "string", "format": "date-time" },
                "until": { "type": "string", "format": "date-time" }
            }
        } } }
    })
}

/// A service the site can be committed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Service {
    /// FCR-N.
    #[serde(rename = "fcr-n")]
    FcrN,
    /// FCR-D upwards.
    #[serde(rename = "fcr-d-up")]
    FcrDUp,
    /// FCR-D downwards.
    #[serde(rename = "fcr-d-down")]
    FcrDDown,
    /// Fast frequency reserve.
    #[serde(rename = "ffr")]
    Ffr,
}

impl Service {
    /// Every service, in the order the API lists them.
    pub const ALL: [Self; 4] = [Self::FcrN, Self::FcrDUp, Self::FcrDDown, Self::Ffr];

    /// The API name (`fcr-n`, `fcr-d-up`, `fcr-d-down`, `ffr`).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::FcrN => "fcr-n",
            Self::FcrDUp => "fcr-d-up",
            Self::FcrDDown => "fcr-d-down",
            Self::Ffr => "ffr",
        }
    }

    /// The service named `s`.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.name() == s)
    }
}

/// A service as configured in the site file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfiguredService {
    /// Which service.
    pub service: Service,
    /// The configured (largest sellable) capacity, W.
    #[serde(serialize_with = "ser_watts")]
    pub capacity_w: Watts,
    /// The configuration in operator words (`FFR 1500 W at 49.6 Hz (long)`).
    pub detail: String,
}

/// One commitment: `service` with `capacity_w` from `from` (inclusive) until `until`
/// (exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Commitment {
    /// Which service.
    pub service: Service,
    /// The committed capacity C, W (> 0, ≤ the configured capacity).
    #[serde(serialize_with = "ser_watts")]
    pub capacity_w: Watts,
    /// Start (UTC, RFC 3339).
    pub from: Timestamp,
    /// End (UTC, RFC 3339, exclusive).
    pub until: Timestamp,
}

impl Commitment {
    /// Whether `now` lies in the window.
    #[must_use]
    pub fn covers(&self, now: Timestamp) -> bool {
        self.from <= now && now < self.until
    }
}

/// The commitment of `service` in force at `now`, if any.
#[must_use]
pub fn in_force(commitments: &[Commitment], service: Service, now: Timestamp) -> Option<Commitment> {
    commitments.iter().find(|c| c.service == service && c.covers(now)).copied()
}

/// One service's live status, as the control thread last published it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceLive {
    /// `fcr-n`, `fcr-d-up`, `fcr-d-down`, `ffr` or `droop`.
    pub service: String,
    /// `INACTIVE`, `ARMED`, `ACTIVE`, `DEACTIVATING`, `RECOVERING until …`, `FREQUENCY LOST`.
    pub activation: String,
    /// The Δ it requests (`+` discharge), W.
    #[serde(serialize_with = "ser_watts")]
    pub delta_w: Watts,
    /// Seconds of full activation left upwards (discharging); `null` unknown (no good SOC).
    pub endurance_up_s: Option<f64>,
    /// The same downwards (charging).
    pub endurance_down_s: Option<f64>,
    /// NEM: `off`, `charging`, `discharging` (FCR-N).
    pub nem: String,
    /// AEM: `off`, `saving-up`, `saving-down` (FCR-N).
    pub aem: String,
    /// The alert state (frequency outside 50 ± 0.1 Hz for 5 min).
    pub alert_state: bool,
    /// Ready to respond: the controller RUNNING, a good frequency, and the service neither
    /// recovering nor without frequency.
    pub ready: bool,
}

/// What the control thread last published.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiveServices {
    /// When it was published.
    pub at: Timestamp,
    /// The controller's state (`RUNNING`, …).
    pub state: String,
    /// The frequency the services used (`null`: stale or invalid).
    #[serde(serialize_with = "ser_opt_hertz")]
    pub frequency_hz: Option<Hertz>,
    /// The summed Δ (`+` discharge), W.
    #[serde(serialize_with = "ser_watts")]
    pub delta_w: Watts,
    /// Whether any service is engaged.
    pub engaged: bool,
    /// The services that ran (committed now, and the grid-code droop).
    pub services: Vec<ServiceLive>,
    /// The compliance log in operation (`null`: not configured).
    pub compliance_log: Option<ComplianceLogLive>,
}

/// The compliance log's state (`GET /api/v1/grid-services` → `live.compliance_log`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComplianceLogLive {
    /// The directory of the daily files.
    pub dir: String,
    /// The file rows go to now (`null` before the first row).
    pub file: Option<String>,
    /// Days the files are kept.
    pub retention_days: u16,
    /// Rows written since the start.
    pub rows_written: u64,
    /// Samples the control thread could not hand over (the writer's queue was full).
    pub samples_dropped: u64,
    /// FFR activations seen (each opens 10 Hz rows from 10 s before to 15 min after).
    pub ffr_activations: u64,
    /// The end of the open 10 Hz window (`null`: 1 Hz now).
    pub high_rate_until: Option<Timestamp>,
    /// The sanity check: active power minus the activated services against the baseline.
    pub sanity: SanityLive,
    /// The last write error (`null`: none).
    pub error: Option<String>,
}

/// The sanity check over 10 s windows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SanityLive {
    /// The tolerance on a window's mean residual, W.
    pub tolerance_w: f64,
    /// Windows checked (RUNNING with a service committed).
    pub windows: u64,
    /// Windows whose mean |residual| exceeded the tolerance.
    pub windows_over: u64,
    /// The largest mean |residual|, W.
    pub worst_w: f64,
    /// Start of the last window over the tolerance.
    pub last_over_at: Option<Timestamp>,
    /// Its mean residual (`+`: the unit delivered more than asked), W.
    pub last_over_w: Option<f64>,
}

/// Where `GET` reads the live status (the gateway: a snapshot the control thread publishes).
pub trait GridStatusSource: Send + Sync {
    /// The last published status (`None` before the first step).
    fn live(&self) -> Option<LiveServices>;
}

/// The answer of `GET /api/v1/grid-services`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GridServicesView {
    /// The parameter set (`nordic-2025-v1.1`).
    pub parameter_set: String,
    /// What the site file configures.
    pub configured: Vec<ConfiguredService>,
    /// Every stored commitment.
    pub commitments: Vec<Commitment>,
    /// The services committed now (the only ones that may act).
    pub active: Vec<Service>,
    /// The live status (`null` before the control thread published one).
    pub live: Option<LiveServices>,
}

/// The configured services, the commitments and their persistence.
pub struct GridServices {
    parameter_set: String,
    configured: Vec<ConfiguredService>,
    commitments: Mutex<Arc<Vec<Commitment>>>,
    version: AtomicU64,
    db: OnceLock<Arc<Db>>,
    status: Arc<dyn GridStatusSource>,
}

impl std::fmt::Debug for GridServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GridServices")
            .field("parameter_set", &self.parameter_set)
            .field("configured", &self.configured)
            .finish_non_exhaustive()
    }
}

impl GridServices {
    /// No commitments yet.
    #[must_use]
    pub fn new(
        parameter_set: impl Into<String>,
        configured: Vec<ConfiguredService>,
        status: Arc<dyn GridStatusSource>,
    ) -> Self {
        Self {
            parameter_set: parameter_set.into(),
            configured,
            commitments: Mutex::new(Arc::new(Vec::new())),
            version: AtomicU64::new(1),
            db: OnceLock::new(),
            status,
        }
    }

    /// The configured services.
    #[must_use]
    pub fn configured(&self) -> &[ConfiguredService] {
        &self.configured
    }

    /// Persist to `db` from now on, and load what it holds. A stored commitment that the
    /// current configuration no longer allows (service removed, capacity lowered) is dropped
    /// with a warning; the count of kept ones is returned.
    ///
    /// # Errors
    /// A database already attached, or the stored document unreadable.
    pub fn attach_db(&self, db: Arc<Db>) -> Result<usize, String> {
        let stored = db.document(DOCUMENT_KEY).map_err(|e| e.to_string())?;
        if self.db.set(db).is_err() {
            return Err("a database is already attached".into());
        }
        let Some(json) = stored else { return Ok(0) };
        let value: Value = serde_json::from_str(&json).map_err(|e| format!("{DOCUMENT_KEY}: {e}"))?;
        let Some(list) = value.get("commitments").and_then(Value::as_array) else {
            return Err(format!("{DOCUMENT_KEY}: no commitments array"));
        };
        let mut kept = Vec::new();
        for (i, item) in list.iter().enumerate() {
            match self.parse_one(i, item) {
                Ok(c) => kept.push(c),
                Err(e) => tracing::warn!(target: "audit", "stored grid-service commitment dropped: {e}"),
            }
        }
        let n = kept.len();
        self.replace(kept);
        Ok(n)
    }

    /// The commitments now.
    #[must_use]
    pub fn commitments(&self) -> Arc<Vec<Commitment>> {
        self.commitments.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// For the control thread: the commitments and their version if they changed since
    /// `seen`, without ever waiting (a busy lock answers `None`: ask again next time).
    #[must_use]
    pub fn try_commitments_since(&self, seen: u64) -> Option<(u64, Arc<Vec<Commitment>>)> {
        if self.version.load(Ordering::Acquire) == seen {
            return None;
        }
        let guard = self.commitments.try_lock().ok()?;
        Some((self.version.load(Ordering::Acquire), guard.clone()))
    }

    fn replace(&self, list: Vec<Commitment>) {
        let mut guard = self.commitments.lock().unwrap_or_else(PoisonError::into_inner);
        *guard = Arc::new(list);
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    fn parse_one(&self, i: usize, item: &Value) -> Result<Commitment, FieldError> {
        let parent = format!("commitments[{i}]");
        let Value::Object(o) = item else {
            return Err(FieldError::new(parent, format!("must be an object, got {}", input::show(item))));
        };
        input::only_keys(o, &parent, &["service", "capacity_w", "from", "until"])?;
        let name = input::req_str(o, &parent, "service")?;
        let service = Service::parse(name).ok_or_else(|| {
            let names: Vec<&str> = Service::ALL.iter().map(|s| s.name()).collect();
            FieldError::new(
                input::path(&parent, "service"),
                format!("unknown service '{name}' (one of {})", names.join(", ")),
            )
        })?;
        let configured = self.configured.iter().find(|c| c.service == service).ok_or_else(|| {
            FieldError::new(
                input::path(&parent, "service"),
                format!("'{name}' is not configured on this site ([grid_services] has no such service)"),
            )
        })?;
        let max = f64::from(configured.capacity_w.get());
        let w = input::req_number(o, &parent, "capacity_w")?;
        let field = input::path(&parent, "capacity_w");
        if w <= 0.0 {
            return Err(FieldError::new(field, format!("must be > 0 W, got {w}")));
        }
        if w > max {
            return Err(FieldError::new(
                field,
                format!("{w} W is above the configured capacity of {name} ({max} W)"),
            ));
        }
        #[allow(clippy::cast_possible_truncation)] // ≤ the configured capacity (≤ 10 MW)
        let capacity_w = Watts::try_new(w as f32).map_err(|e| FieldError::new(field, e.to_string()))?;
        let time = |key: &str| -> Result<Timestamp, FieldError> {
            let raw = input::req_str(o, &parent, key)?;
            raw.parse::<Timestamp>().map_err(|e| {
                FieldError::new(
                    input::path(&parent, key),
                    format!("'{raw}' is not an RFC 3339 time with an offset: {e}"),
                )
            })
        };
        let from = time("from")?;
        let until = time("until")?;
        if until <= from {
            return Err(FieldError::new(
                input::path(&parent, "until"),
                format!("{until} is not after from ({from})"),
            ));
        }
        Ok(Commitment { service, capacity_w, from, until })
    }

    /// Validate a `PUT` body: `{"commitments": [{"service", "capacity_w", "from", "until"}]}`.
    ///
    /// # Errors
    /// [`FieldError`] naming the field (`commitments[2].capacity_w`) and the value.
    pub fn parse(&self, body: &Map<String, Value>) -> Result<Vec<Commitment>, FieldError> {
        input::only_keys(body, "", &["commitments"])?;
        let list = match body.get("commitments") {
            Some(Value::Array(a)) => a,
            None | Some(Value::Null) => {
                return Err(FieldError::new("commitments", "missing (an array is required; [] clears)"))
            }
            Some(other) => {
                return Err(FieldError::new(
                    "commitments",
                    format!("must be an array, got {}", input::show(other)),
                ))
            }
        };
        if list.len() > MAX_COMMITMENTS {
            return Err(FieldError::new(
                "commitments",
                format!("{} commitments, at most {MAX_COMMITMENTS}", list.len()),
            ));
        }
        let mut out: Vec<Commitment> = Vec::with_capacity(list.len());
        for (i, item) in list.iter().enumerate() {
            let c = self.parse_one(i, item)?;
            if let Some(j) =
                out.iter().position(|o| o.service == c.service && o.from < c.until && c.from < o.until)
            {
                return Err(FieldError::new(
                    format!("commitments[{i}].from"),
                    format!(
                        "{} {}..{} overlaps commitments[{j}] ({}..{})",
                        c.service.name(),
                        c.from,
                        c.until,
                        out[j].from,
                        out[j].until
                    ),
                ));
            }
            out.push(c);
        }
        out.sort_by_key(|c| (c.from, c.service));
        Ok(out)
    }

    /// Store `list` (persisted first: a failed write changes nothing).
    ///
    /// # Errors
    /// [`PortError`] (503) if the database could not be written.
    pub fn put(&self, list: Vec<Commitment>, now: Timestamp) -> Result<(), PortError> {
        if let Some(db) = self.db.get() {
            let json = serde_json::json!({ "commitments": list }).to_string();
            db.put_document(DOCUMENT_KEY, &json, now)
                .map_err(|e| PortError::new(PortErrorKind::Unavailable, "", e.to_string()))?;
        }
        self.replace(list);
        Ok(())
    }

    /// The view at `now`.
    #[must_use]
    pub fn view(&self, now: Timestamp) -> GridServicesView {
        let commitments = self.commitments();
        let active = Service::ALL.into_iter().filter(|s| in_force(&commitments, *s, now).is_some()).collect();
        GridServicesView {
            parameter_set: self.parameter_set.clone(),
            configured: self.configured.clone(),
            commitments: commitments.as_ref().clone(),
            active,
            live: self.status.live(),
        }
    }
}
