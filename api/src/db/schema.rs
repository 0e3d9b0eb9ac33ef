//! The schema and its migrations. Migration `i` (0-based) brings the database to version `i + 1`;
//! a released migration is never edited, a change is a new one appended to [`MIGRATIONS`].

use rusqlite::{Connection, TransactionBehavior};
use std::path::Path;

use super::error::store_err;
use crate::ports::StoreError;

/// Version 1: audit log, telemetry history (raw + 1-minute + 15-minute tiers), schedules, nonces.
const V1: &str = r"
CREATE TABLE audit (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    at      TEXT    NOT NULL,
    actor   TEXT    NOT NULL,
    action  TEXT    NOT NULL,
    outcome TEXT    NOT NULL CHECK (outcome IN ('ok', 'refused', 'failed')),
    detail  TEXT    NOT NULL
);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit log is append-only: UPDATE refused');
END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit log is append-only: DELETE refused');
END;
-- INSERT OR REPLACE deletes the old row without firing DELETE triggers (recursive_triggers is
-- off by default): refuse any insert that names an existing seq.
CREATE TRIGGER audit_no_replace BEFORE INSERT ON audit
WHEN EXISTS (SELECT 1 FROM audit WHERE seq = NEW.seq)
BEGIN
    SELECT RAISE(ABORT, 'audit log is append-only: REPLACE refused');
END;

CREATE TABLE history_channels (
    id   INTEGER PRIMARY KEY,
    name TEXT    NOT NULL UNIQUE
);
CREATE TABLE history_raw (
    channel_id INTEGER NOT NULL REFERENCES history_channels (id),
    at_ms      INTEGER NOT NULL,
    value      REAL    NOT NULL,
    PRIMARY KEY (channel_id, at_ms)
) WITHOUT ROWID;
CREATE TABLE history_minute (
    channel_id INTEGER NOT NULL REFERENCES history_channels (id),
    bucket_ms  INTEGER NOT NULL,
    value_sum  REAL    NOT NULL,
    samples    INTEGER NOT NULL CHECK (samples > 0),
    PRIMARY KEY (channel_id, bucket_ms)
) WITHOUT ROWID;
CREATE TABLE history_quarter (
    channel_id INTEGER NOT NULL REFERENCES history_channels (id),
    bucket_ms  INTEGER NOT NULL,
    value_sum  REAL    NOT NULL,
    samples    INTEGER NOT NULL CHECK (samples > 0),
    PRIMARY KEY (channel_id, bucket_ms)
) WITHOUT ROWID;
-- Per tier, the time before which retention has deleted rows; no row = never pruned.
CREATE TABLE history_pruned (
    tier      TEXT    PRIMARY KEY,
    before_ms INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE schedules (
    id   TEXT PRIMARY KEY,
    json TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE nonces (
    provider TEXT    NOT NULL,
    nonce    TEXT    NOT NULL,
    at_ms    INTEGER NOT NULL,
    PRIMARY KEY (provider, nonce)
) WITHOUT ROWID;
CREATE INDEX nonces_by_time ON nonces (at_ms);
";

/// Version 2: audit retention. The delete trigger only lets through rows at or below the gate,
/// which `Db::maintain` opens inside its own transaction and closes again.
const V2: &str = r"
CREATE TABLE audit_prune_gate (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    upto_seq INTEGER NOT NULL
);
INSERT INTO audit_prune_gate (id, upto_seq) VALUES (1, 0);
DROP TRIGGER audit_no_delete;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
WHEN OLD.seq > (SELECT upto_seq FROM audit_prune_gate WHERE id = 1)
BEGIN
    SELECT RAISE(ABORT, 'audit log is append-only: DELETE refused');
END;
CREATE INDEX audit_by_time ON audit (at);
";

/// Version 3: named documents that must survive a restart (the live economics' learned load
/// profiles, PV ratio, forecast errors and cost ledgers), one JSON text per key, replaced whole.
const V3: &str = r"
CREATE TABLE documents (
    key      TEXT PRIMARY KEY,
    json     TEXT NOT NULL,
    saved_at TEXT NOT NULL
) WITHOUT ROWID;
";

/// Version 4: the cloud link's outbox (issue #14): pushes that did not reach the cloud, oldest
/// first, resent after it comes back (`crate::cloud`).
const V4: &str = r"
CREATE TABLE cloud_outbox (
    seq  INTEGER PRIMARY KEY AUTOINCREMENT,
    json TEXT NOT NULL
);
";

/// Version 5: the MQTT link's telemetry buffer (issue #14 item 4): telemetry batches taken
/// while the broker was unreachable, oldest first, resent on `<prefix>/<site>/history` after it
/// comes back (`crate::mqtt::buffer`). Same shape as `cloud_outbox`, kept apart so that each
/// link drains only its own gap.
const V5: &str = r"
CREATE TABLE mqtt_outbox (
    seq  INTEGER PRIMARY KEY AUTOINCREMENT,
    json TEXT NOT NULL
);
";

/// Every migration, oldest first.
const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5];

/// The schema version this build creates and understands.
pub const SCHEMA_VERSION: u32 = 5;

const _: () = assert!(MIGRATIONS.len() == SCHEMA_VERSION as usize);

/// Bring the database to [`SCHEMA_VERSION`]; refuse a database written by a newer build.
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<u32, StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    INTEGER PRIMARY KEY,
             applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
         );",
    )
    .map_err(|e| store_err(path, "create schema_migrations", e))?;
    loop {
        // IMMEDIATE: two processes opening a fresh file must not both apply the same migration.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| store_err(path, "begin migration", e))?;
        let current: i64 = tx
            .query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| r.get(0))
            .map_err(|e| store_err(path, "read schema version", e))?;
        let current = u32::try_from(current)
            .map_err(|_| store_err(path, "read schema version", format!("invalid version {current}")))?;
        if current > SCHEMA_VERSION {
            return Err(store_err(
                path,
                "check schema version",
                format!("database is at version {current}, this build knows up to {SCHEMA_VERSION}"),
            ));
        }
        let Some(sql) = usize::try_from(current).ok().and_then(|i| MIGRATIONS.get(i)) else {
            return Ok(current);
        };
        let next = current.saturating_add(1);
        tx.execute_batch(sql).map_err(|e| store_err(path, &format!("migrate to version {next}"), e))?;
        tx.execute("INSERT INTO schema_migrations (version) VALUES (?1)", [next])
            .map_err(|e| store_err(path, &format!("record version {next}"), e))?;
        tx.commit().map_err(|e| store_err(path, &format!("commit version {next}"), e))?;
    }
}
