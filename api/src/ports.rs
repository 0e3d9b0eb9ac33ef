//! The seams between the HTTP side of the API and its persistence: the audit log, the telemetry
//! history and the schedule store. The REST/GraphQL code only sees these traits; the SQLite
//! implementation (`db`) and the in-memory one here (tests, the gateway without a database)
//! implement them.

use jiff::{SignedDuration, Timestamp};
use std::sync::Mutex;

/// A persistence error (the database could not be written or read).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("store: {0}")]
pub struct StoreError(pub String);

/// How an audited action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Done.
    Ok,
    /// Refused (validation, authorization, state machine, replay, ...).
    Refused,
    /// Accepted but failed while being carried out.
    Failed,
}

/// One audit record: who did what, with which result. Append-only from the API's side.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AuditEntry {
    /// Sequence number assigned by the log (0 before it is appended).
    pub seq: u64,
    /// When (UTC).
    pub at: Timestamp,
    /// Who: a token's name and role (`"ops-laptop (operator)"`), `"controller"`, `"provider:NAME"`.
    pub actor: String,
    /// What: `"POST /api/v1/emergency-stop"`, `"state RUNNING -> STOPPED"`, `"schedule.submit"`.
    pub action: String,
    /// The result.
    pub outcome: Outcome,
    /// Details: the reason given, the refusal's message, the values.
    pub detail: String,
}

/// The audit log.
pub trait AuditSink: Send + Sync {
    /// Append an entry (its `seq` is ignored) and return the sequence number it got. Durable
    /// when this returns.
    ///
    /// # Errors
    /// [`StoreError`] if it could not be written.
    fn append(&self, entry: &AuditEntry) -> Result<u64, StoreError>;
    /// The newest `n` entries, newest first.
    ///
    /// # Errors
    /// [`StoreError`] if it could not be read.
    fn recent(&self, n: usize) -> Result<Vec<AuditEntry>, StoreError>;
    /// One page of entries matching `q`, newest first (see [`AuditQuery`]).
    ///
    /// # Errors
    /// [`StoreError`] if it could not be read.
    fn query_audit(&self, q: &AuditQuery) -> Result<AuditPage, StoreError>;
}

impl std::fmt::Debug for dyn AuditSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dyn AuditSink")
    }
}

impl std::fmt::Debug for dyn HistoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dyn HistoryStore")
    }
}

/// The largest page [`AuditSink::query_audit`] returns.
pub const MAX_AUDIT_PAGE: usize = 1000;

/// Which audit entries to read: filters combined with AND, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditQuery {
    /// At most this many (clamped to `1..=`[`MAX_AUDIT_PAGE`]).
    pub limit: usize,
    /// Only entries with a sequence number below this (the cursor of the previous page).
    pub before: Option<u64>,
    /// Only entries at or after this time.
    pub from: Option<Timestamp>,
    /// Only entries before this time.
    pub to: Option<Timestamp>,
    /// `ok`, `refused` or `failed`: entries with that outcome; anything else: entries whose
    /// action starts with it (`POST /api/v1/emergency-stop`, `state`, `schedule.`).
    pub kind: Option<String>,
    /// Entries whose actor starts with this (`ops` matches `ops (operator)`).
    pub actor: Option<String>,
}

impl AuditQuery {
    /// The page size actually used.
    #[must_use]
    pub fn page_size(&self) -> usize {
        self.limit.clamp(1, MAX_AUDIT_PAGE)
    }

    /// The outcome `kind` names, if it names one.
    #[must_use]
    pub fn outcome(&self) -> Option<Outcome> {
        match self.kind.as_deref() {
            Some("ok") => Some(Outcome::Ok),
            Some("refused") => Some(Outcome::Refused),
            Some("failed") => Some(Outcome::Failed),
            _ => None,
        }
    }

    /// Whether `e` matches every filter (the reference semantics; the SQLite store does the
    /// same in SQL).
    #[must_use]
    pub fn matches(&self, e: &AuditEntry) -> bool {
        self.before.is_none_or(|b| e.seq < b)
            && self.from.is_none_or(|f| e.at >= f)
            && self.to.is_none_or(|t| e.at < t)
            && self.actor.as_deref().is_none_or(|a| e.actor.starts_with(a))
            && match (self.outcome(), self.kind.as_deref()) {
                (Some(o), _) => e.outcome == o,
                (None, Some(prefix)) => e.action.starts_with(prefix),
                (None, None) => true,
            }
    }
}

/// One page of audit entries.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AuditPage {
    /// Newest first.
    pub entries: Vec<AuditEntry>,
    /// The `before` of the next page, `None` when this is the last.
    pub next: Option<u64>,
}

impl AuditPage {
    /// A page of `entries` (newest first, at most `size + 1` read): the extra one only tells
    /// that there is a next page.
    #[must_use]
    pub fn from_overfetch(mut entries: Vec<AuditEntry>, size: usize) -> Self {
        let more = entries.len() > size;
        entries.truncate(size);
        let next = if more { entries.last().map(|e| e.seq) } else { None };
        Self { entries, next }
    }
}

/// The zero-power command was issued (the E-stop's answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EStopAck {
    /// The state after the E-stop (`STOPPED`).
    pub state: ems_core::State,
    /// From the request to the zero-power command.
    pub took: std::time::Duration,
}

/// The software E-stop, outside the command queue so that nothing queued ahead of it, and no
/// rate limit, can delay it. The gateway supplies the real one (it wakes the control thread).
pub trait EmergencyStopPort: Send + Sync {
    /// Press the software E-stop; resolves once the zero-power command has been issued.
    fn press(
        &self,
        actor: &str,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<EStopAck, crate::model::LinkError>> + Send + '_>,
    >;
}

impl std::fmt::Debug for dyn EmergencyStopPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dyn EmergencyStopPort")
    }
}

/// An [`EmergencyStopPort`] that sends `ApiCommand::EmergencyStop` through the command queue
/// (tests; a loop that has no separate E-stop path). It shares the queue with other commands,
/// so a full queue answers [`crate::model::LinkError::Busy`]: the gateway should supply a
/// dedicated path instead.
#[derive(Debug, Clone)]
pub struct CommandQueueEStop(pub crate::model::CommandClient);

impl EmergencyStopPort for CommandQueueEStop {
    fn press(
        &self,
        actor: &str,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<EStopAck, crate::model::LinkError>> + Send + '_>,
    > {
        let actor = actor.to_owned();
        Box::pin(async move {
            let start = std::time::Instant::now();
            let answer = self.0.send(crate::model::ApiCommand::EmergencyStop { actor }).await?;
            // The state machine accepts an E-stop in every state; a refusal still reports
            // the state it stayed in, and the handler refuses to call that a stop.
            let state = match answer {
                Ok(s) => s,
                Err(refusal) => refusal.state,
            };
            Ok(EStopAck { state, took: start.elapsed() })
        })
    }
}

/// One value of one telemetry channel at one time.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HistoryPoint {
    /// When (UTC); for a downsampled bucket, the bucket's start.
    pub at: Timestamp,
    /// OpenEMS-style channel address, e.g. `_sum/GridActivePower`.
    pub channel: String,
    /// The value (for a bucket: the mean).
    pub value: f64,
}

/// Telemetry history.
pub trait HistoryStore: Send + Sync {
    /// Record one sample of several channels.
    ///
    /// # Errors
    /// [`StoreError`] if it could not be written.
    fn record(&self, at: Timestamp, values: &[(&str, f64)]) -> Result<(), StoreError>;
    /// Values of `channels` in `[from, to)`, averaged into buckets of `resolution` (a zero
    /// resolution returns the stored samples), ordered by time then channel.
    ///
    /// # Errors
    /// [`StoreError`] if it could not be read.
    fn query(
        &self,
        from: Timestamp,
        to: Timestamp,
        channels: &[&str],
        resolution: SignedDuration,
    ) -> Result<Vec<HistoryPoint>, StoreError>;
}

/// Persistence of provider schedules (as opaque JSON documents) and of the nonces already used
/// (replay protection survives a restart).
pub trait ScheduleStore: Send + Sync {
    /// Insert or replace schedule `id`.
    ///
    /// # Errors
    /// [`StoreError`] if it could not be written.
    fn save(&self, id: &str, json: &str) -> Result<(), StoreError>;
    /// Delete schedule `id`; whether it existed.
    ///
    /// # Errors
    /// [`StoreError`] if it could not be written.
    fn delete(&self, id: &str) -> Result<bool, StoreError>;
    /// Every stored schedule as `(id, json)`.
    ///
    /// # Errors
    /// [`StoreError`] if it could not be read.
    fn load_all(&self) -> Result<Vec<(String, String)>, StoreError>;
    /// Remember `nonce` of `provider` (seen at `at`); `false` if it was already known (a replay).
    ///
    /// # Errors
    /// [`StoreError`] if it could not be written.
    fn claim_nonce(&self, provider: &str, nonce: &str, at: Timestamp) -> Result<bool, StoreError>;
}

/// The most history points a [`MemoryStore`] keeps (the oldest go first): about 4.6 hours of
/// six channels at 1 Hz. A site that needs more history uses the SQLite store.
pub const MEMORY_HISTORY_POINTS: usize = 100_000;

/// The most audit entries a [`MemoryStore`] keeps (the oldest go first, their sequence numbers
/// stay unique). A site that needs the whole audit trail uses the SQLite store.
pub const MEMORY_AUDIT_ENTRIES: usize = 100_000;

/// An in-memory implementation of the three stores (tests; a gateway without a database file).
/// History and audit are bounded ([`MEMORY_HISTORY_POINTS`], [`MEMORY_AUDIT_ENTRIES`]).
#[derive(Debug, Default)]
pub struct MemoryStore {
    audit: Mutex<std::collections::VecDeque<AuditEntry>>,
    next_seq: Mutex<u64>,
    history: Mutex<std::collections::VecDeque<HistoryPoint>>,
    schedules: Mutex<std::collections::BTreeMap<String, String>>,
    nonces: Mutex<std::collections::BTreeSet<(String, String)>>,
}

fn poisoned<T>(_: T) -> StoreError {
    StoreError("lock poisoned".to_owned())
}

impl AuditSink for MemoryStore {
    fn append(&self, entry: &AuditEntry) -> Result<u64, StoreError> {
        let mut log = self.audit.lock().map_err(poisoned)?;
        let mut next = self.next_seq.lock().map_err(poisoned)?;
        *next = next.saturating_add(1);
        let seq = *next;
        if log.len() >= MEMORY_AUDIT_ENTRIES {
            log.pop_front();
        }
        log.push_back(AuditEntry { seq, ..entry.clone() });
        Ok(seq)
    }

    fn recent(&self, n: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let log = self.audit.lock().map_err(poisoned)?;
        Ok(log.iter().rev().take(n).cloned().collect())
    }

    fn query_audit(&self, q: &AuditQuery) -> Result<AuditPage, StoreError> {
        let log = self.audit.lock().map_err(poisoned)?;
        let size = q.page_size();
        let found = log.iter().rev().filter(|e| q.matches(e)).take(size.saturating_add(1)).cloned().collect();
        Ok(AuditPage::from_overfetch(found, size))
    }
}

impl HistoryStore for MemoryStore {
    fn record(&self, at: Timestamp, values: &[(&str, f64)]) -> Result<(), StoreError> {
        let mut h = self.history.lock().map_err(poisoned)?;
        for (c, v) in values {
            if h.len() >= MEMORY_HISTORY_POINTS {
                h.pop_front();
            }
            h.push_back(HistoryPoint { at, channel: (*c).to_owned(), value: *v });
        }
        Ok(())
    }

    fn query(
        &self,
        from: Timestamp,
        to: Timestamp,
        channels: &[&str],
        resolution: SignedDuration,
    ) -> Result<Vec<HistoryPoint>, StoreError> {
        let h = self.history.lock().map_err(poisoned)?;
        let wanted = h.iter().filter(|p| p.at >= from && p.at < to && channels.contains(&p.channel.as_str()));
        if resolution.is_zero() || resolution.is_negative() {
            return Ok(wanted.cloned().collect());
        }
        let width = resolution.as_nanos();
        let mut buckets: std::collections::BTreeMap<(i128, String), (f64, u32)> =
            std::collections::BTreeMap::new();
        for p in wanted {
            let start =
                p.at.as_nanosecond() - (p.at.as_nanosecond() - from.as_nanosecond()).rem_euclid(width);
            let b = buckets.entry((start, p.channel.clone())).or_insert((0.0, 0));
            b.0 += p.value;
            b.1 += 1;
        }
        Ok(buckets
            .into_iter()
            .filter_map(|((start, channel), (sum, n))| {
                Timestamp::from_nanosecond(start).ok().map(|at| HistoryPoint {
                    at,
                    channel,
                    value: sum / f64::from(n),
                })
            })
            .collect())
    }
}

impl ScheduleStore for MemoryStore {
    fn save(&self, id: &str, json: &str) -> Result<(), StoreError> {
        self.schedules.lock().map_err(poisoned)?.insert(id.to_owned(), json.to_owned());
        Ok(())
    }

    fn delete(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.schedules.lock().map_err(poisoned)?.remove(id).is_some())
    }

    fn load_all(&self) -> Result<Vec<(String, String)>, StoreError> {
        Ok(self.schedules.lock().map_err(poisoned)?.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    fn claim_nonce(&self, provider: &str, nonce: &str, _at: Timestamp) -> Result<bool, StoreError> {
        Ok(self.nonces.lock().map_err(poisoned)?.insert((provider.to_owned(), nonce.to_owned())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_store_round_trips() {
        let m = MemoryStore::default();
        let at: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let e = AuditEntry {
            seq: 0,
            at,
            actor: "a".into(),
            action: "x".into(),
            outcome: Outcome::Ok,
            detail: String::new(),
        };
        assert_eq!(m.append(&e).unwrap(), 1);
        assert_eq!(m.append(&e).unwrap(), 2);
        assert_eq!(m.recent(1).unwrap()[0].seq, 2);
        m.record(at, &[("_sum/EssSoc", 50.0)]).unwrap();
        m.record(at.checked_add(SignedDuration::from_secs(1)).unwrap(), &[("_sum/EssSoc", 52.0)]).unwrap();
        let q = m
            .query(
                at,
                at.checked_add(SignedDuration::from_secs(60)).unwrap(),
                &["_sum/EssSoc"],
                SignedDuration::from_secs(60),
            )
            .unwrap();
        assert_eq!(q.len(), 1);
        assert!((q[0].value - 51.0).abs() < 1e-9);
        assert!(m.claim_nonce("p", "n1", at).unwrap());
        assert!(!m.claim_nonce("p", "n1", at).unwrap());
        m.save("s1", "{}").unwrap();
        assert_eq!(m.load_all().unwrap().len(), 1);
        assert!(m.delete("s1").unwrap());
    }
}
