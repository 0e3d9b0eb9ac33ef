//! Provider schedules (design.md §7, the Sourceful EMS shape): a registered provider asks the
//! site to charge or discharge its battery at a given power from a given time.
//!
//! # Request
//!
//! ```json
//! {"sn": "BAT-0001", "executionTime": "2026-05-01T12:00:00Z", "operation": "CHARGE",
//!  "power": 3000, "provider": "acme", "nonce": "5f2a9c01d3",
//!  "auth": {"sign": {"signature": "<128 hex digits>"}}}
//! ```
//!
//! - `sn`: a battery serial number of this site ([`ScheduleConfig::serials`]).
//! - `executionTime`: UTC, **exactly** `YYYY-MM-DDTHH:MM:SSZ` (whole seconds, `Z`); it may lie
//!   at most [`ScheduleConfig::past_tolerance`] (60 s) in the past and at most
//!   [`ScheduleConfig::max_ahead`] in the future.
//! - `operation`: `CHARGE` or `DISCHARGE`.
//! - `power`: watts as a JSON **integer** (no fraction, no exponent), `0 ..=` the device rating
//!   for that direction.
//! - `provider`: a name registered with a public key ([`ProviderKey`]).
//! - `nonce`: 8–128 characters of `[A-Za-z0-9_-]`, never reused by that provider.
//! - `auth.sign.signature`: an Ed25519 signature (RFC 8032, verified strictly), as 128 **hex**
//!   digits, over the canonical string below.
//!
//! # The canonical signed string
//!
//! The UTF-8 bytes of
//!
//! ```text
//! ems-schedule-v1|<sn>|<executionTime>|<operation>|<power>|<provider>|<nonce>
//! ```
//!
//! with each field exactly as sent (they are already canonical: `executionTime` in the one
//! accepted form, `power` as a decimal integer without sign or leading zeros, i.e. the JSON
//! integer's digits). No field may contain `|` or a control character, so the string is
//! unambiguous. Example: `ems-schedule-v1|BAT-0001|2026-05-01T12:00:00Z|CHARGE|3000|acme|5f2a9c01d3`.
//! See [`canonical_string`].
//!
//! # Refusals
//!
//! Each is audited (`schedule.submit`, outcome `refused`, with the reason): malformed fields,
//! unknown provider, missing or bad signature, replayed nonce (checked **after** the signature,
//! so nobody can burn another provider's nonces), execution time too old (so a replay is refused
//! even once its nonce was forgotten) or too far ahead, unknown `sn`, power outside the rating.
//!
//! # Execution
//!
//! A schedule is active in `[executionTime, executionTime + slot)` ([`ScheduleConfig::slot`],
//! 15 min by default). [`Schedules::due`] picks the active schedule with the latest
//! `executionTime` (ties: the later submission). [`Schedule::action`] maps it to a controller
//! input:
//!
//! Both operations become an `ems_control::ProviderTarget` (into `Inputs::provider`); who wins
//! against an operator's control mode, the plan and the mode is decided by the controller's
//! `arbitrate` alone (an operator override applies on top of a provider schedule). With
//! [`ScheduleConfig::discharge_may_export`] (default) a `DISCHARGE` may export; without it the
//! battery discharges at most into the site's own load.
//!
//! Neither bypasses safety: the loop feeds them as inputs, the controller's final clamp bounds
//! them by the envelope, the ramp limit and the state (zero outside RUNNING). The loop reports
//! what was actually applied with [`Schedules::record_execution`]; `GET` shows it as
//! `appliedW` and `limitedBy`.

use crate::input::{self, FieldError};
use crate::ports::{AuditEntry, AuditSink, Outcome, ScheduleStore, StoreError};
use ed25519_dalek::{Signature, VerifyingKey};
use ems_control::{ProviderOperation, ProviderTarget};
use ems_core::Watts;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The domain-separation prefix of the canonical string.
pub const CANONICAL_PREFIX: &str = "ems-schedule-v1";

/// A provider's registered key (serde: `{"name": "acme", "public_key_hex": "<64 hex>"}`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProviderKey {
    /// The provider's name (the request's `provider`).
    pub name: String,
    /// Its Ed25519 public key, 32 bytes as 64 hex digits.
    pub public_key_hex: String,
}

/// Site facts and policy for schedules.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleConfig {
    /// The site's battery serial numbers.
    pub serials: Vec<String>,
    /// Device rating: largest charge power, W.
    pub max_charge_w: u64,
    /// Device rating: largest discharge power, W.
    pub max_discharge_w: u64,
    /// How far in the past `executionTime` may be.
    pub past_tolerance: SignedDuration,
    /// How far in the future `executionTime` may be.
    pub max_ahead: SignedDuration,
    /// How long a schedule stays active after its `executionTime`.
    pub slot: SignedDuration,
    /// Whether a `DISCHARGE` may export (see the module docs).
    pub discharge_may_export: bool,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            serials: Vec::new(),
            max_charge_w: 0,
            max_discharge_w: 0,
            past_tolerance: SignedDuration::from_secs(60),
            max_ahead: SignedDuration::from_hours(7 * 24),
            slot: SignedDuration::from_mins(15),
            discharge_may_export: true,
        }
    }
}

/// `CHARGE` or `DISCHARGE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Operation {
    /// Charge the battery.
    Charge,
    /// Discharge the battery.
    Discharge,
}

impl Operation {
    /// `CHARGE` / `DISCHARGE`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Charge => "CHARGE",
            Self::Discharge => "DISCHARGE",
        }
    }
}

/// An accepted schedule (the JSON persisted in the store and returned by `GET`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    /// Its id (`sch-` + 24 hex digits).
    pub schedule_id: String,
    /// Battery serial.
    pub sn: String,
    /// Start (UTC).
    pub execution_time: Timestamp,
    /// End (exclusive): `execution_time + slot`.
    pub end_time: Timestamp,
    /// Direction.
    pub operation: Operation,
    /// Requested power magnitude, W.
    pub power: u64,
    /// The provider.
    pub provider: String,
    /// Its nonce.
    pub nonce: String,
    /// When it was accepted.
    pub submitted_at: Timestamp,
    /// Who submitted it (the token's audit actor).
    pub submitted_by: String,
    /// Battery power actually applied in its last executed cycle (`+` discharge / `−` charge),
    /// W; `None` until it ran.
    pub applied_w: Option<f64>,
    /// What limited it then (envelope constraint, state, operator mode), if anything.
    pub limited_by: Option<String>,
}

/// What a due schedule asks of the controller this cycle: `Inputs::provider`.
pub type ScheduledAction = ProviderTarget;

fn watts_u64(w: u64) -> Watts {
    // Ratings and powers are at most 1e8 W (checked where they enter), which f32 represents
    // to within rounding; the `Watts` constructor clamps anything non-finite to zero.
    #[allow(clippy::cast_precision_loss)]
    let f = w as f32;
    Watts::saturating(f)
}

impl Schedule {
    /// The controller input for this schedule (module docs: "Execution").
    #[must_use]
    pub fn action(&self, discharge_may_export: bool) -> ScheduledAction {
        let operation = match self.operation {
            Operation::Charge => ProviderOperation::Charge,
            Operation::Discharge => ProviderOperation::Discharge,
        };
        ProviderTarget { operation, power: watts_u64(self.power), may_export: discharge_may_export }
    }

    fn is_active(&self, now: Timestamp) -> bool {
        self.execution_time <= now && now < self.end_time
    }
}

/// Which kind of refusal (the REST layer maps it to a status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleErrorKind {
    /// A field is malformed or out of range (400/422).
    Invalid,
    /// Unknown provider, missing or bad signature (403).
    Unauthorized,
    /// The nonce was already used (409).
    Replay,
    /// No such schedule (404).
    NotFound,
    /// The store failed (503).
    Store,
}

/// A refused or failed schedule operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ScheduleError {
    /// Which kind.
    pub kind: ScheduleErrorKind,
    /// The field at fault (may be empty).
    pub field: String,
    /// Why.
    pub message: String,
}

impl ScheduleError {
    fn new(kind: ScheduleErrorKind, field: &str, message: impl Into<String>) -> Self {
        Self { kind, field: field.to_owned(), message: message.into() }
    }
}

impl From<FieldError> for ScheduleError {
    fn from(e: FieldError) -> Self {
        Self { kind: ScheduleErrorKind::Invalid, field: e.field, message: e.message }
    }
}

impl From<StoreError> for ScheduleError {
    fn from(e: StoreError) -> Self {
        Self::new(ScheduleErrorKind::Store, "", e.to_string())
    }
}

/// A key configuration error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("provider key '{name}': {message}")]
pub struct KeyError {
    /// The provider.
    pub name: String,
    /// What is wrong.
    pub message: String,
}

/// The answer to an accepted submission (`{"scheduleId": ..., "success": true}`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    /// The new schedule's id.
    pub schedule_id: String,
    /// Always `true`.
    pub success: bool,
}

/// The canonical string a provider signs (module docs), from already-validated fields.
#[must_use]
pub fn canonical_string(
    sn: &str,
    execution_time: &str,
    operation: Operation,
    power: u64,
    provider: &str,
    nonce: &str,
) -> String {
    format!("{CANONICAL_PREFIX}|{sn}|{execution_time}|{}|{power}|{provider}|{nonce}", operation.as_str())
}

/// `t` in the one accepted `executionTime` form, `YYYY-MM-DDTHH:MM:SSZ`.
#[must_use]
pub fn canonical_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The provider schedules of the site: validation, signatures, replay protection, storage.
pub struct Schedules {
    cfg: ScheduleConfig,
    keys: BTreeMap<String, VerifyingKey>,
    store: Arc<dyn ScheduleStore>,
    audit: Arc<dyn AuditSink>,
    items: Mutex<BTreeMap<String, Schedule>>,
}

impl std::fmt::Debug for Schedules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schedules")
            .field("cfg", &self.cfg)
            .field("providers", &self.keys.keys())
            .finish_non_exhaustive()
    }
}

const ACTION_SUBMIT: &str = "schedule.submit";
const ACTION_DELETE: &str = "schedule.delete";

fn text_field<'a>(o: &'a Map<String, Value>, key: &str, max_len: usize) -> Result<&'a str, FieldError> {
    let s = input::req_str(o, "", key)?;
    if s.is_empty() || s.len() > max_len {
        return Err(FieldError::new(key, format!("must be 1..={max_len} bytes, got {} bytes", s.len())));
    }
    if s.contains('|') || s.chars().any(char::is_control) {
        return Err(FieldError::new(key, format!("must not contain '|' or control characters: {s:?}")));
    }
    Ok(s)
}

/// `operation`: `CHARGE` or `DISCHARGE`.
fn operation_field(body: &Map<String, Value>) -> Result<Operation, ScheduleError> {
    match input::req_str(body, "", "operation")? {
        "CHARGE" => Ok(Operation::Charge),
        "DISCHARGE" => Ok(Operation::Discharge),
        other => Err(ScheduleError::new(
            ScheduleErrorKind::Invalid,
            "operation",
            format!("must be CHARGE or DISCHARGE, got {}", input::show(&Value::String(other.to_owned()))),
        )),
    }
}

/// `power`: a non-negative JSON integer of watts.
fn power_field(body: &Map<String, Value>) -> Result<u64, ScheduleError> {
    use ScheduleErrorKind::Invalid;
    match body.get("power") {
        None | Some(Value::Null) => {
            Err(ScheduleError::new(Invalid, "power", "missing (an integer of watts is required)"))
        }
        Some(Value::Number(n)) => n.as_u64().ok_or_else(|| {
            ScheduleError::new(Invalid, "power", format!("must be a non-negative integer of watts, got {n}"))
        }),
        Some(other) => Err(ScheduleError::new(
            Invalid,
            "power",
            format!("must be a JSON integer of watts, got {}", input::show(other)),
        )),
    }
}

/// `nonce`: 8..=128 characters of `[A-Za-z0-9_-]`.
fn nonce_field(body: &Map<String, Value>) -> Result<&str, ScheduleError> {
    let nonce = input::req_str(body, "", "nonce")?;
    if (8..=128).contains(&nonce.len())
        && nonce.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        Ok(nonce)
    } else {
        Err(ScheduleError::new(
            ScheduleErrorKind::Invalid,
            "nonce",
            format!(
                "must be 8..=128 characters of [A-Za-z0-9_-], got {}",
                input::show(&Value::String(nonce.to_owned()))
            ),
        ))
    }
}

/// `auth.sign.signature`; an unsigned request is unauthorized, not merely invalid.
fn signature_field(body: &Map<String, Value>) -> Result<&str, ScheduleError> {
    use ScheduleErrorKind::Unauthorized;
    let Some(Value::Object(a)) = body.get("auth") else {
        return Err(ScheduleError::new(Unauthorized, "auth", "missing (unsigned requests are refused)"));
    };
    input::only_keys(a, "auth", &["sign"])?;
    let Some(Value::Object(s)) = a.get("sign") else {
        return Err(ScheduleError::new(Unauthorized, "auth.sign", "missing signature object"));
    };
    input::only_keys(s, "auth.sign", &["signature"])?;
    Ok(input::req_str(s, "auth.sign", "signature")?)
}

impl Schedules {
    /// Schedules for `cfg`, verified with `keys`, persisted in `store`, audited to `audit`;
    /// loads the stored schedules (a stored document that does not parse is skipped with a
    /// warning rather than stopping the site).
    ///
    /// # Errors
    /// [`KeyError`] for a malformed key or duplicate provider; a store read error is reported
    /// as a [`KeyError`] named `store`.
    pub fn load(
        cfg: ScheduleConfig,
        keys: &[ProviderKey],
        store: Arc<dyn ScheduleStore>,
        audit: Arc<dyn AuditSink>,
    ) -> Result<Self, KeyError> {
        let mut map = BTreeMap::new();
        for k in keys {
            let err = |m: &str| KeyError { name: k.name.clone(), message: m.to_owned() };
            let mut b = [0u8; 32];
            hex::decode_to_slice(k.public_key_hex.trim(), &mut b)
                .map_err(|_| err("public_key_hex must be 64 hex digits"))?;
            let vk = VerifyingKey::from_bytes(&b).map_err(|_| err("not a valid Ed25519 public key"))?;
            if map.insert(k.name.clone(), vk).is_some() {
                return Err(err("duplicate provider"));
            }
        }
        let mut items = BTreeMap::new();
        let stored =
            store.load_all().map_err(|e| KeyError { name: "store".into(), message: e.to_string() })?;
        for (id, json) in stored {
            match serde_json::from_str::<Schedule>(&json) {
                Ok(s) => {
                    items.insert(id, s);
                }
                Err(e) => tracing::warn!(schedule = %id, error = %e, "skipping unreadable stored schedule"),
            }
        }
        Ok(Self { cfg, keys: map, store, audit, items: Mutex::new(items) })
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &ScheduleConfig {
        &self.cfg
    }

    fn items(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Schedule>> {
        // The map holds plain data; a panic elsewhere while holding it leaves it consistent.
        self.items.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn audit(&self, actor: &str, action: &str, outcome: Outcome, detail: String, now: Timestamp) {
        let e = AuditEntry {
            seq: 0,
            at: now,
            actor: actor.to_owned(),
            action: action.to_owned(),
            outcome,
            detail,
        };
        if let Err(err) = self.audit.append(&e) {
            tracing::error!(error = %err, action, "audit log write failed");
        }
    }

    /// Validate, verify and store a submission (module docs) from `actor` at `now`. Every
    /// outcome is audited.
    ///
    /// # Errors
    /// [`ScheduleError`] naming the field at fault.
    pub fn submit(
        &self,
        body: &Map<String, Value>,
        actor: &str,
        now: Timestamp,
    ) -> Result<Accepted, ScheduleError> {
        match self.try_submit(body, actor, now) {
            Ok((acc, s)) => {
                self.audit(
                    actor,
                    ACTION_SUBMIT,
                    Outcome::Ok,
                    format!(
                        "{} {} {} W at {} for {} by {}",
                        acc.schedule_id,
                        s.operation.as_str(),
                        s.power,
                        canonical_time(s.execution_time),
                        s.sn,
                        s.provider
                    ),
                    now,
                );
                Ok(acc)
            }
            Err(e) => {
                let provider = body.get("provider").and_then(Value::as_str).map_or_else(String::new, |p| {
                    format!(" (provider {})", input::show(&Value::String(p.to_owned())))
                });
                let outcome =
                    if e.kind == ScheduleErrorKind::Store { Outcome::Failed } else { Outcome::Refused };
                self.audit(actor, ACTION_SUBMIT, outcome, format!("{e}{provider}"), now);
                Err(e)
            }
        }
    }

    /// The execution time lies within the accepted window around `now`.
    fn check_window(
        &self,
        execution_time: Timestamp,
        time_s: &str,
        now: Timestamp,
    ) -> Result<(), ScheduleError> {
        use ScheduleErrorKind::Invalid;
        let oldest = now
            .checked_sub(self.cfg.past_tolerance)
            .map_err(|e| ScheduleError::new(Invalid, "executionTime", e.to_string()))?;
        if execution_time < oldest {
            return Err(ScheduleError::new(
                Invalid,
                "executionTime",
                format!(
                    "{time_s} is in the past (more than {} s before {})",
                    self.cfg.past_tolerance.as_secs(),
                    canonical_time(now)
                ),
            ));
        }
        let newest = now
            .checked_add(self.cfg.max_ahead)
            .map_err(|e| ScheduleError::new(Invalid, "executionTime", e.to_string()))?;
        if execution_time > newest {
            return Err(ScheduleError::new(
                Invalid,
                "executionTime",
                format!("{time_s} is more than {} s ahead", self.cfg.max_ahead.as_secs()),
            ));
        }
        Ok(())
    }

    fn try_submit(
        &self,
        body: &Map<String, Value>,
        actor: &str,
        now: Timestamp,
    ) -> Result<(Accepted, Schedule), ScheduleError> {
        use ScheduleErrorKind::{Invalid, Replay, Unauthorized};
        input::only_keys(
            body,
            "",
            &["sn", "executionTime", "operation", "power", "provider", "nonce", "auth"],
        )?;
        let sn = text_field(body, "sn", 128)?;
        let time_s = input::req_str(body, "", "executionTime")?;
        let execution_time: Timestamp = time_s.parse().map_err(|e| {
            ScheduleError::new(Invalid, "executionTime", format!("not an RFC 3339 time {time_s:?}: {e}"))
        })?;
        if canonical_time(execution_time) != time_s {
            return Err(ScheduleError::new(
                Invalid,
                "executionTime",
                format!("{time_s:?} must be UTC in the form YYYY-MM-DDTHH:MM:SSZ (whole seconds)"),
            ));
        }
        let operation = operation_field(body)?;
        let power = power_field(body)?;
        let provider = text_field(body, "provider", 128)?;
        let nonce = nonce_field(body)?;
        let signature = signature_field(body)?;

        let key = self.keys.get(provider).ok_or_else(|| {
            ScheduleError::new(Unauthorized, "provider", format!("unknown provider {provider:?}"))
        })?;
        let mut sig = [0u8; 64];
        hex::decode_to_slice(signature.trim(), &mut sig).map_err(|_| {
            ScheduleError::new(Unauthorized, "auth.sign.signature", "must be 128 hex digits (Ed25519)")
        })?;
        let canonical = canonical_string(sn, time_s, operation, power, provider, nonce);
        key.verify_strict(canonical.as_bytes(), &Signature::from_bytes(&sig)).map_err(|_| {
            ScheduleError::new(
                Unauthorized,
                "auth.sign.signature",
                "signature does not verify for this provider's key",
            )
        })?;

        if !self.cfg.serials.iter().any(|s| s == sn) {
            return Err(ScheduleError::new(Invalid, "sn", format!("unknown battery serial {sn:?}")));
        }
        self.check_window(execution_time, time_s, now)?;
        let rating = match operation {
            Operation::Charge => self.cfg.max_charge_w,
            Operation::Discharge => self.cfg.max_discharge_w,
        };
        if power > rating {
            return Err(ScheduleError::new(
                Invalid,
                "power",
                format!("{power} W exceeds the device's {} rating of {rating} W", operation.as_str()),
            ));
        }
        let end_time = execution_time
            .checked_add(self.cfg.slot)
            .map_err(|e| ScheduleError::new(Invalid, "executionTime", e.to_string()))?;

        if !self.store.claim_nonce(provider, nonce, now)? {
            return Err(ScheduleError::new(
                Replay,
                "nonce",
                format!("nonce {nonce:?} was already used by {provider}: replay refused"),
            ));
        }
        let digest = hex::encode(Sha256::digest(canonical.as_bytes()));
        let schedule_id = format!("sch-{}", digest.get(..24).unwrap_or(&digest));
        let s = Schedule {
            schedule_id: schedule_id.clone(),
            sn: sn.to_owned(),
            execution_time,
            end_time,
            operation,
            power,
            provider: provider.to_owned(),
            nonce: nonce.to_owned(),
            submitted_at: now,
            submitted_by: actor.to_owned(),
            applied_w: None,
            limited_by: None,
        };
        self.persist(&s)?;
        self.items().insert(schedule_id.clone(), s.clone());
        Ok((Accepted { schedule_id, success: true }, s))
    }

    fn persist(&self, s: &Schedule) -> Result<(), StoreError> {
        let json = serde_json::to_string(s).map_err(|e| StoreError(e.to_string()))?;
        self.store.save(&s.schedule_id, &json)
    }

    /// Schedule `id`.
    #[must_use]
    pub fn get(&self, id: &str) -> Option<Schedule> {
        self.items().get(id).cloned()
    }

    /// Every schedule, by id.
    #[must_use]
    pub fn list(&self) -> Vec<Schedule> {
        self.items().values().cloned().collect()
    }

    /// Delete schedule `id` on behalf of `actor` (audited).
    ///
    /// # Errors
    /// [`ScheduleErrorKind::NotFound`] or [`ScheduleErrorKind::Store`].
    pub fn delete(&self, id: &str, actor: &str, now: Timestamp) -> Result<(), ScheduleError> {
        if !self.items().contains_key(id) {
            self.audit(actor, ACTION_DELETE, Outcome::Refused, format!("{id}: no such schedule"), now);
            return Err(ScheduleError::new(ScheduleErrorKind::NotFound, "id", format!("no schedule {id:?}")));
        }
        if let Err(e) = self.store.delete(id) {
            self.audit(actor, ACTION_DELETE, Outcome::Failed, format!("{id}: {e}"), now);
            return Err(e.into());
        }
        self.items().remove(id);
        self.audit(actor, ACTION_DELETE, Outcome::Ok, id.to_owned(), now);
        Ok(())
    }

    /// The schedule to execute at `now`, if any (module docs: "Execution").
    #[must_use]
    pub fn due(&self, now: Timestamp) -> Option<Schedule> {
        self.items()
            .values()
            .filter(|s| s.is_active(now))
            .max_by(|a, b| {
                (a.execution_time, a.submitted_at, &a.schedule_id).cmp(&(
                    b.execution_time,
                    b.submitted_at,
                    &b.schedule_id,
                ))
            })
            .cloned()
    }

    /// The controller input for the schedule due at `now` (see [`Schedule::action`]).
    #[must_use]
    pub fn due_action(&self, now: Timestamp) -> Option<(String, ScheduledAction)> {
        self.due(now).map(|s| (s.schedule_id.clone(), s.action(self.cfg.discharge_may_export)))
    }

    /// The loop reports what schedule `id` actually got in the last cycle: `applied` battery
    /// power and what limited it. Persisted only when it changed (by ≥ 1 W or another reason),
    /// so a steady schedule does not write every cycle. An unknown id is ignored.
    ///
    /// # Errors
    /// [`StoreError`] if the change could not be persisted (it is kept in memory).
    pub fn record_execution(
        &self,
        id: &str,
        applied: Watts,
        limited_by: Option<&str>,
    ) -> Result<(), StoreError> {
        let updated = {
            let mut items = self.items();
            let Some(s) = items.get_mut(id) else { return Ok(()) };
            let w = f64::from(applied.get());
            let changed =
                s.applied_w.is_none_or(|old| (old - w).abs() >= 1.0) || s.limited_by.as_deref() != limited_by;
            if !changed {
                return Ok(());
            }
            s.applied_w = Some(w);
            s.limited_by = limited_by.map(str::to_owned);
            s.clone()
        };
        self.persist(&updated)
    }
}
