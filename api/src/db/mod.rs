//! SQLite persistence: [`Db`] implements [`AuditSink`], [`HistoryStore`] and [`ScheduleStore`]
//! on one database file.
//!
//! # Why SQLite through `rusqlite` (feature `bundled`)
//! SQLite is compiled into the binary, so the gateway needs no system library and every build
//! runs the same SQLite version. One file, transactional, and in WAL mode readers (the REST
//! side, a backup, `sqlite3` on the console) never block the writer nor see a half-written
//! transaction.
//!
//! # Connection settings
//! `journal_mode=WAL` (opening fails if the file system cannot do WAL), `synchronous=FULL`
//! (every commit fsyncs the WAL before it returns, so a committed transaction survives a
//! power cut, not only a crash of the process; NORMAL would only promise the latter),
//! `foreign_keys=ON`, `busy_timeout` 5 s (another process holding the write lock is waited
//! for, not an error).
//!
//! # Schema (version [`SCHEMA_VERSION`], migrations in `schema.rs`, applied on open)
//! | table | columns | notes |
//! |---|---|---|
//! | `schema_migrations` | `version`, `applied_at` | one row per applied migration; a file from a newer build is refused |
//! | `audit` | `seq INTEGER PRIMARY KEY AUTOINCREMENT`, `at` (RFC 3339, UTC), `actor`, `action`, `outcome` (`ok`/`refused`/`failed`), `detail` | triggers `audit_no_update`/`audit_no_delete`/`audit_no_replace` `RAISE(ABORT)` on any UPDATE, DELETE, or insert over an existing `seq` (`INSERT OR REPLACE`) |
//! | `history_channels` | `id`, `name` (unique) | channel names are stored once |
//! | `history_raw` | `channel_id`, `at_ms`, `value` | key `(channel_id, at_ms)`; a duplicate keeps the first value |
//! | `history_minute`, `history_quarter` | `channel_id`, `bucket_ms`, `value_sum`, `samples` | 1-min and 15-min buckets, kept as sum and count so coarser means stay exact |
//! | `history_pruned` | `tier`, `before_ms` | how far back retention has cut each tier |
//! | `schedules` | `id`, `json` | opaque JSON documents |
//! | `nonces` | `provider`, `nonce`, `at_ms` | key `(provider, nonce)`; [`Db::prune_nonces`] forgets old ones |
//! | `documents` | `key`, `json`, `saved_at` | named JSON documents replaced whole ([`Db::put_document`]): the live economics' learned state |
//! | `cloud_outbox`, `mqtt_outbox` | `seq`, `json` | telemetry the cloud link / the MQTT link could not deliver, oldest first ([`OutboxTable`], `crate::telemetry_buffer`) |
//!
//! Times in the history and nonce tables are integer milliseconds since 1970 (UTC), floored:
//! sub-millisecond precision is not kept.
//!
//! # Durability per table
//! - **audit**: every [`AuditSink::append`] is its own committed (fsynced) transaction: when it
//!   returns the entry survives a crash and a power cut. The log is append-only: there is no
//!   update or delete API and the triggers refuse both even to a buggy caller with raw SQL.
//!   Retention ([`Retention`]: by age, 365 days, and by row count, 1,000,000, applied by
//!   [`Db::maintain`]) is the only deletion: since schema version 2 the delete trigger refuses
//!   any DELETE of a row above `audit_prune_gate.upto_seq`, which is 0 except inside
//!   `maintain`'s own transaction (which opens it to the cut, deletes, closes it and records a
//!   row `audit.retention` saying what it deleted). A buggy `DELETE` elsewhere is still refused.
//!   The triggers protect against bugs, not against someone with write access to the file (who
//!   can drop them, or open the gate).
//! - **schedules, nonces**: each call is its own committed transaction, durable on return.
//! - **history**: [`HistoryStore::record`] buffers samples in memory and commits them in one
//!   transaction (a prepared statement per row, one upsert per bucket) once the buffered
//!   samples span [`DbOptions::history_flush_after`] (1 s by default, measured on the
//!   samples' own timestamps) or [`DbOptions::history_max_pending`] values are waiting. A
//!   power cut or crash loses at most the samples of that window; the database itself stays
//!   consistent (a batch and its bucket sums commit together or not at all). [`Db::flush`],
//!   [`Db::maintain`], every query and dropping the `Db` commit the buffer too. If a flush fails,
//!   its batch is dropped (memory stays bounded) and the error is returned. Non-finite values
//!   are not stored (a gap).
//!
//! # History retention ([`HistoryRetention`] in [`Retention`], applied by [`Db::maintain`])
//! Raw samples 2 days, 1-minute buckets 30 days, 15-minute buckets 2 years by default. The
//! caller owns time: nothing is deleted until it calls `maintain(now)` (e.g. once a minute).
//! Each run deletes in one transaction under the lock, so it should run regularly: a first run
//! over a long backlog blocks the other calls while it deletes.
//! [`HistoryStore::query`] reads the coarsest tier that still covers `from` and gives the same
//! answer as the raw samples would, else the finest tier that covers `from`.
//!
//! # Threads
//! `Db` is `Send + Sync`: one connection behind a `Mutex`. Calls are serialized, which is what
//! SQLite does with writers anyway. A poisoned lock is recovered: a panic inside a call leaves
//! at worst an uncommitted transaction, which SQLite rolls back, and a lost history batch.

mod error;
mod history;
mod options;
mod schema;

use jiff::{SignedDuration, Timestamp};
use rusqlite::{Connection, OptionalExtension};
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::ports::{
    AuditEntry, AuditPage, AuditQuery, AuditSink, HistoryPoint, HistoryStore, Outcome, ScheduleStore,
    StoreError,
};
use error::store_err;
use history::HistoryState;
pub use options::{DbOptions, HistoryRetention, MaintainReport, Retention};
pub use schema::SCHEMA_VERSION;

/// The SQLite store (see the module documentation for schema and guarantees).
#[derive(Debug)]
pub struct Db {
    path: PathBuf,
    options: DbOptions,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    conn: Connection,
    history: HistoryState,
}

/// A timestamp as whole ms since 1970, floored.
fn ms_of(path: &Path, at: Timestamp) -> Result<i64, StoreError> {
    i64::try_from(at.as_nanosecond().div_euclid(1_000_000))
        .map_err(|_| store_err(path, "convert time", format!("{at} out of range")))
}

fn ts_from_ms(path: &Path, ms: i64) -> Result<Timestamp, StoreError> {
    Timestamp::from_millisecond(ms).map_err(|e| store_err(path, "convert time", e))
}

fn outcome_to_str(o: Outcome) -> &'static str {
    match o {
        Outcome::Ok => "ok",
        Outcome::Refused => "refused",
        Outcome::Failed => "failed",
    }
}

fn outcome_from_str(s: &str) -> Option<Outcome> {
    match s {
        "ok" => Some(Outcome::Ok),
        "refused" => Some(Outcome::Refused),
        "failed" => Some(Outcome::Failed),
        _ => None,
    }
}

impl Db {
    /// Open (or create) the database at `path` with [`DbOptions::default`].
    ///
    /// # Errors
    /// [`StoreError`] naming the file if it cannot be opened, is not a database, cannot use WAL,
    /// or was written by a newer schema version.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, DbOptions::default())
    }

    /// Open (or create) the database at `path`, apply the connection settings and migrate the
    /// schema to [`SCHEMA_VERSION`].
    ///
    /// # Errors
    /// As [`Db::open`].
    pub fn open_with(path: impl AsRef<Path>, options: DbOptions) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let mut conn = Connection::open(&path).map_err(|e| store_err(&path, "open", e))?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(|e| store_err(&path, "set busy timeout", e))?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(|e| store_err(&path, "enable WAL", e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(store_err(&path, "enable WAL", format!("journal mode is {mode}")));
        }
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
            .map_err(|e| store_err(&path, "set pragmas", e))?;
        schema::migrate(&mut conn, &path)?;
        Ok(Self { path, options, inner: Mutex::new(Inner { conn, history: HistoryState::default() }) })
    }

    /// The database file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The settings this `Db` was opened with.
    #[must_use]
    pub fn options(&self) -> &DbOptions {
        &self.options
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn err(&self, op: &str, e: impl Display) -> StoreError {
        store_err(&self.path, op, e)
    }

    /// The schema version of the open file.
    ///
    /// # Errors
    /// [`StoreError`] if it cannot be read.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        let inner = self.lock();
        let v: i64 = inner
            .conn
            .query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| r.get(0))
            .map_err(|e| self.err("read schema version", e))?;
        u32::try_from(v).map_err(|e| self.err("read schema version", e))
    }

    /// SQLite's `PRAGMA integrity_check`: `"ok"` for an intact file, else its findings, one per
    /// line (e.g. for a check at start-up).
    ///
    /// # Errors
    /// [`StoreError`] if the check cannot run.
    pub fn integrity_check(&self) -> Result<String, StoreError> {
        let inner = self.lock();
        let err = |e| self.err("integrity check", e);
        let mut stmt = inner.conn.prepare("PRAGMA integrity_check").map_err(err)?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(err)?;
        let lines: Vec<String> = rows.collect::<Result<_, _>>().map_err(err)?;
        Ok(lines.join("\n"))
    }

    /// Commit the buffered history samples now; how many values were committed.
    ///
    /// # Errors
    /// [`StoreError`] if they could not be written (they are then dropped).
    pub fn flush(&self) -> Result<usize, StoreError> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        inner.history.flush(&mut inner.conn, &self.path)
    }

    /// Commit buffered history, then apply [`DbOptions::retention`] as of `now`: delete raw
    /// samples and buckets older than their tier's retention (buckets whole), and audit rows
    /// older than [`Retention::audit_max_age`] or beyond [`Retention::audit_max_rows`]. A
    /// pruning of the audit log leaves a row saying how many rows up to which `seq` it deleted.
    /// Nonces are pruned by [`Db::prune_nonces`].
    ///
    /// # Errors
    /// [`StoreError`] if the database could not be written.
    pub fn maintain(&self, now: Timestamp) -> Result<MaintainReport, StoreError> {
        let now_ms = ms_of(&self.path, now)?;
        let mut guard = self.lock();
        let inner = &mut *guard;
        inner.history.flush(&mut inner.conn, &self.path)?;
        let mut report =
            history::apply_retention(&mut inner.conn, &self.path, now_ms, &self.options.retention.history)?;
        report.audit = self.prune_audit(&mut inner.conn, now)?;
        Ok(report)
    }

    /// The audit part of [`Db::maintain`]: one transaction that opens the delete gate up to the
    /// cut, deletes, closes the gate and records what it did.
    fn prune_audit(&self, conn: &mut Connection, now: Timestamp) -> Result<usize, StoreError> {
        let r = &self.options.retention;
        let err = |e: rusqlite::Error| self.err("apply audit retention", e);
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(err)?;
        let mut cut: i64 = 0;
        if let Some(age) = r.audit_max_age {
            let age = SignedDuration::try_from(age).unwrap_or(SignedDuration::MAX);
            if let Ok(before) = now.checked_sub(age) {
                // `at` is RFC 3339 text in UTC, so text order is time order (to the second:
                // a fractional part sorts before `Z`, an error of under one second).
                let by_age: Option<i64> = tx
                    .query_row("SELECT MAX(seq) FROM audit WHERE at < ?1", [before.to_string()], |row| {
                        row.get(0)
                    })
                    .map_err(err)?;
                cut = cut.max(by_age.unwrap_or(0));
            }
        }
        let keep = i64::try_from(r.audit_max_rows).unwrap_or(i64::MAX);
        let by_rows: Option<i64> = tx
            .query_row("SELECT seq FROM audit ORDER BY seq DESC LIMIT 1 OFFSET ?1", [keep], |row| row.get(0))
            .optional()
            .map_err(err)?;
        cut = cut.max(by_rows.unwrap_or(0));
        if cut <= 0 {
            return Ok(0);
        }
        tx.execute("UPDATE audit_prune_gate SET upto_seq = ?1 WHERE id = 1", [cut]).map_err(err)?;
        let deleted = tx.execute("DELETE FROM audit WHERE seq <= ?1", [cut]).map_err(err)?;
        tx.execute("UPDATE audit_prune_gate SET upto_seq = 0 WHERE id = 1", []).map_err(err)?;
        tx.execute(
            "INSERT INTO audit (at, actor, action, outcome, detail) VALUES (?1, 'store', 'audit.retention', 'ok', ?2)",
            (now.to_string(), format!("deleted {deleted} rows up to seq {cut} (max age {:?}, max rows {})", r.audit_max_age, r.audit_max_rows)),
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(deleted)
    }

    /// Forget nonces seen before `older_than` (older schedules must be refused by their
    /// timestamp instead); how many were deleted.
    ///
    /// # Errors
    /// [`StoreError`] if the database could not be written.
    pub fn prune_nonces(&self, older_than: Timestamp) -> Result<usize, StoreError> {
        let ms = ms_of(&self.path, older_than)?;
        let inner = self.lock();
        inner
            .conn
            .prepare_cached("DELETE FROM nonces WHERE at_ms < ?1")
            .and_then(|mut s| s.execute([ms]))
            .map_err(|e| self.err("prune nonces", e))
    }
}

impl Db {
    /// Store `json` under `key`, replacing what was there, in one transaction: a crash leaves
    /// either the old or the new document, never a mix.
    ///
    /// # Errors
    /// [`StoreError`] if the database could not be written.
    pub fn put_document(&self, key: &str, json: &str, now: Timestamp) -> Result<(), StoreError> {
        let inner = self.lock();
        inner
            .conn
            .prepare_cached(
                "INSERT INTO documents (key, json, saved_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET json = excluded.json, saved_at = excluded.saved_at",
            )
            .and_then(|mut s| s.execute((key, json, now.to_string())))
            .map(|_| ())
            .map_err(|e| self.err(&format!("save document {key}"), e))
    }

    /// The document stored under `key`, if any.
    ///
    /// # Errors
    /// [`StoreError`] if the database could not be read.
    pub fn document(&self, key: &str) -> Result<Option<String>, StoreError> {
        let inner = self.lock();
        let mut stmt = inner
            .conn
            .prepare_cached("SELECT json FROM documents WHERE key = ?1")
            .map_err(|e| self.err(&format!("read document {key}"), e))?;
        let mut rows = stmt.query([key]).map_err(|e| self.err(&format!("read document {key}"), e))?;
        match rows.next().map_err(|e| self.err(&format!("read document {key}"), e))? {
            Some(row) => row.get(0).map(Some).map_err(|e| self.err(&format!("read document {key}"), e)),
            None => Ok(None),
        }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let inner = self.inner.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = inner.history.flush(&mut inner.conn, &self.path) {
            tracing::warn!(error = %e, "history samples lost on close");
        }
    }
}

impl AuditSink for Db {
    fn append(&self, entry: &AuditEntry) -> Result<u64, StoreError> {
        let inner = self.lock();
        // One autocommit statement: its own transaction, fsynced before `execute` returns.
        let seq: i64 = inner
            .conn
            .prepare_cached(
                "INSERT INTO audit (at, actor, action, outcome, detail) VALUES (?1, ?2, ?3, ?4, ?5)
                 RETURNING seq",
            )
            .and_then(|mut s| {
                s.query_row(
                    (
                        entry.at.to_string(),
                        &entry.actor,
                        &entry.action,
                        outcome_to_str(entry.outcome),
                        &entry.detail,
                    ),
                    |r| r.get(0),
                )
            })
            .map_err(|e| self.err("append audit entry", e))?;
        u64::try_from(seq).map_err(|e| self.err("append audit entry", e))
    }

    fn recent(&self, n: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let limit = i64::try_from(n).unwrap_or(i64::MAX);
        self.read_audit(
            "SELECT seq, at, actor, action, outcome, detail FROM audit ORDER BY seq DESC LIMIT ?1",
            &[&limit],
        )
    }

    fn query_audit(&self, q: &AuditQuery) -> Result<AuditPage, StoreError> {
        let size = q.page_size();
        let limit = i64::try_from(size.saturating_add(1)).unwrap_or(i64::MAX);
        let before = q.before.map_or(i64::MAX, |b| i64::try_from(b).unwrap_or(i64::MAX));
        let from = q.from.map(|t| t.to_string());
        let to = q.to.map(|t| t.to_string());
        let outcome = q.outcome().map(outcome_to_str);
        let action_prefix = if outcome.is_some() { None } else { q.kind.clone() };
        // Prefixes compared with substr, not LIKE: `%` and `_` in a filter are literal.
        let rows = self.read_audit(
            "SELECT seq, at, actor, action, outcome, detail FROM audit
             WHERE seq < ?1
               AND (?2 IS NULL OR at >= ?2)
               AND (?3 IS NULL OR at < ?3)
               AND (?4 IS NULL OR outcome = ?4)
               AND (?5 IS NULL OR substr(action, 1, length(?5)) = ?5)
               AND (?6 IS NULL OR substr(actor, 1, length(?6)) = ?6)
             ORDER BY seq DESC LIMIT ?7",
            &[&before, &from, &to, &outcome, &action_prefix, &q.actor, &limit],
        )?;
        // Text comparison of `at` is exact to the second; refine with the parsed times.
        let rows = rows.into_iter().filter(|e| q.matches(e)).collect();
        Ok(AuditPage::from_overfetch(rows, size))
    }
}

impl Db {
    fn read_audit(&self, sql: &str, params: &[&dyn rusqlite::ToSql]) -> Result<Vec<AuditEntry>, StoreError> {
        let inner = self.lock();
        let err = |e| self.err("read audit log", e);
        let mut stmt = inner.conn.prepare_cached(sql).map_err(err)?;
        let rows = stmt
            .query_map(params, |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                ))
            })
            .map_err(err)?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, at, actor, action, outcome, detail) = row.map_err(err)?;
            let seq = u64::try_from(seq).map_err(|e| self.err("read audit log", e))?;
            let at: Timestamp =
                at.parse().map_err(|e| self.err("read audit log", format!("seq {seq}: time {at:?}: {e}")))?;
            let outcome = outcome_from_str(&outcome)
                .ok_or_else(|| self.err("read audit log", format!("seq {seq}: outcome {outcome:?}")))?;
            out.push(AuditEntry { seq, at, actor, action, outcome, detail });
        }
        Ok(out)
    }
}

impl HistoryStore for Db {
    fn record(&self, at: Timestamp, values: &[(&str, f64)]) -> Result<(), StoreError> {
        let at_ms = ms_of(&self.path, at)?;
        let mut guard = self.lock();
        let inner = &mut *guard;
        let due = inner.history.push(
            &inner.conn,
            &self.path,
            at_ms,
            values,
            self.options.history_flush_after,
            self.options.history_max_pending,
        )?;
        if due {
            inner.history.flush(&mut inner.conn, &self.path)?;
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
        let from = ms_of(&self.path, from)?;
        let to = ms_of(&self.path, to)?;
        // Sub-millisecond resolutions become 1 ms: the stored precision.
        let res = (resolution.is_positive())
            .then(|| i64::try_from(resolution.as_millis()).unwrap_or(i64::MAX).max(1));
        let mut guard = self.lock();
        let inner = &mut *guard;
        inner.history.flush(&mut inner.conn, &self.path)?;
        history::query(&inner.conn, &self.path, from, to, channels, res)?
            .into_iter()
            .map(|(ms, channel, value)| Ok(HistoryPoint { at: ts_from_ms(&self.path, ms)?, channel, value }))
            .collect()
    }
}

impl ScheduleStore for Db {
    fn save(&self, id: &str, json: &str) -> Result<(), StoreError> {
        let inner = self.lock();
        inner
            .conn
            .prepare_cached(
                "INSERT INTO schedules (id, json) VALUES (?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET json = excluded.json",
            )
            .and_then(|mut s| s.execute((id, json)))
            .map_err(|e| self.err("save schedule", e))?;
        Ok(())
    }

    fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let inner = self.lock();
        let n = inner
            .conn
            .prepare_cached("DELETE FROM schedules WHERE id = ?1")
            .and_then(|mut s| s.execute([id]))
            .map_err(|e| self.err("delete schedule", e))?;
        Ok(n > 0)
    }

    fn load_all(&self) -> Result<Vec<(String, String)>, StoreError> {
        let inner = self.lock();
        let err = |e| self.err("load schedules", e);
        let mut stmt =
            inner.conn.prepare_cached("SELECT id, json FROM schedules ORDER BY id").map_err(err)?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(err)?;
        rows.collect::<Result<_, _>>().map_err(err)
    }

    fn claim_nonce(&self, provider: &str, nonce: &str, at: Timestamp) -> Result<bool, StoreError> {
        let ms = ms_of(&self.path, at)?;
        let inner = self.lock();
        let n = inner
            .conn
            .prepare_cached(
                "INSERT INTO nonces (provider, nonce, at_ms) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            )
            .and_then(|mut s| s.execute((provider, nonce, ms)))
            .map_err(|e| self.err("claim nonce", e))?;
        Ok(n == 1)
    }
}

/// Shows that `Db` can be shared between threads (a compile-time check).
const _: fn() = || {
    fn shared<T: Send + Sync>() {}
    shared::<Db>();
};

impl Db {
    /// Append an entry to an outbox.
    ///
    /// # Errors
    /// [`StoreError`] if the database could not be written.
    pub fn outbox_push(&self, table: OutboxTable, json: &str) -> Result<(), StoreError> {
        let inner = self.lock();
        let t = table.name();
        inner
            .conn
            .prepare_cached(&format!("INSERT INTO {t} (json) VALUES (?1)"))
            .and_then(|mut s| s.execute([json]))
            .map(|_| ())
            .map_err(|e| self.err(&format!("append to {t}"), e))
    }

    /// Entries in an outbox.
    ///
    /// # Errors
    /// [`StoreError`] if the database could not be read.
    pub fn outbox_len(&self, table: OutboxTable) -> Result<usize, StoreError> {
        let inner = self.lock();
        let t = table.name();
        let n: i64 = inner
            .conn
            .query_row(&format!("SELECT COUNT(*) FROM {t}"), [], |r| r.get(0))
            .map_err(|e| self.err(&format!("count {t}"), e))?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// The oldest `n` entries of an outbox: `(seq, json)`.
    ///
    /// # Errors
    /// [`StoreError`] if the database could not be read.
    pub fn outbox_oldest(&self, table: OutboxTable, n: usize) -> Result<Vec<(i64, String)>, StoreError> {
        let inner = self.lock();
        let t = table.name();
        let what = format!("read {t}");
        let mut stmt = inner
            .conn
            .prepare_cached(&format!("SELECT seq, json FROM {t} ORDER BY seq LIMIT ?1"))
            .map_err(|e| self.err(&what, e))?;
        let rows = stmt
            .query_map([i64::try_from(n).unwrap_or(i64::MAX)], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.err(&what, e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(&what, e))
    }

    /// Replace entries `a` and `b` of an outbox by `json` (kept at `a`'s place), in one
    /// transaction.
    ///
    /// # Errors
    /// [`StoreError`] if the database could not be written.
    pub fn outbox_replace_two(
        &self,
        table: OutboxTable,
        a: i64,
        b: i64,
        json: &str,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let t = table.name();
        let what = format!("merge {t} entries");
        let tx = inner.conn.transaction().map_err(|e| self.err(&what, e))?;
        tx.execute(&format!("UPDATE {t} SET json = ?1 WHERE seq = ?2"), (json, a))
            .and_then(|_| tx.execute(&format!("DELETE FROM {t} WHERE seq = ?1"), [b]))
            .map_err(|e| self.err(&what, e))?;
        tx.commit().map_err(|e| self.err(&what, e))
    }

    /// Delete every entry of an outbox up to and including `seq` (a resent slice that was
    /// accepted).
    ///
    /// # Errors
    /// [`StoreError`] if the database could not be written.
    pub fn outbox_delete_through(&self, table: OutboxTable, seq: i64) -> Result<(), StoreError> {
        let inner = self.lock();
        let t = table.name();
        inner
            .conn
            .execute(&format!("DELETE FROM {t} WHERE seq <= ?1"), [seq])
            .map(|_| ())
            .map_err(|e| self.err(&format!("trim {t}"), e))
    }
}

/// The outbox tables: telemetry a link could not deliver, kept until it is resent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxTable {
    /// `cloud_outbox`: the cloud link's pushes (`crate::cloud`).
    Cloud,
    /// `mqtt_outbox`: the MQTT link's telemetry taken during a broker outage (`crate::mqtt`).
    Mqtt,
}

impl OutboxTable {
    /// The table's name (a constant: never built from input).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Cloud => "cloud_outbox",
            Self::Mqtt => "mqtt_outbox",
        }
    }
}
