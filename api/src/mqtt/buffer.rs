//! The outage buffer (issue #14 item 4): telemetry batches taken while the broker is
//! unreachable, kept in the gateway's database (`mqtt_outbox`; memory without one) by the
//! storage the cloud link uses ([`crate::telemetry_buffer::Outbox`]): bounded, the two oldest
//! batches merged (averaged) when full, so that the oldest lose resolution first and nothing
//! is dropped outright. After a reconnection the gap is resent oldest first in slices
//! ([`super::resend`]); a slice leaves the buffer only once the broker acknowledged it.

use crate::db::{Db, OutboxTable};
use crate::telemetry_buffer::Outbox;
use jiff::Timestamp;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// The largest JSON text of one resent slice (a slice holds at least one batch).
pub const SLICE_BYTES: usize = 64 * 1024;

/// A slice of the buffer being resent.
#[derive(Debug, Clone, PartialEq)]
pub struct Slice {
    /// The batches, oldest first.
    pub entries: Vec<Value>,
    /// The database row of the last one (0 in memory).
    last_seq: i64,
    /// Merges done when the slice was read: a merge while it is in flight changes what the
    /// rows hold, and the slice is then resent instead of removed.
    epoch: u64,
}

impl Slice {
    /// The message payload: `{"bufferedData": [batch, …]}` (the cloud link's resend shape).
    #[must_use]
    pub fn payload(&self) -> Vec<u8> {
        json!({ "bufferedData": self.entries }).to_string().into_bytes()
    }
}

/// The buffer and its counters, shared by the telemetry task (fills it while the broker is
/// away), the resend task (drains it) and the status (`GET /api/v1/mqtt`).
#[derive(Debug)]
pub struct HistoryBuffer {
    outbox: Mutex<Outbox>,
    bound: u64,
    buffered: AtomicU64,
    taken: AtomicU64,
    merged: AtomicU64,
    dropped: AtomicU64,
    resent: AtomicU64,
    slices: AtomicU64,
    resend_from: Mutex<Option<Timestamp>>,
}

/// The buffer's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferStats {
    /// Batches held now.
    pub buffered: u64,
    /// The bound.
    pub buffer_rows: u64,
    /// Batches taken into the buffer (one per publish period while the broker was away).
    pub taken: u64,
    /// Batches merged into older ones because the buffer was full (resolution lost).
    pub merged: u64,
    /// Batches that could not be stored at all (the database failed).
    pub dropped: u64,
    /// Batches resent and acknowledged by the broker.
    pub resent: u64,
    /// Slices resent and acknowledged.
    pub slices: u64,
}

impl HistoryBuffer {
    /// A buffer in `db` (kept across restarts) or in memory, bounded by `bound` batches.
    #[must_use]
    pub fn new(db: Option<Arc<Db>>, bound: usize) -> Self {
        let outbox = Outbox::new(db, OutboxTable::Mqtt, bound);
        let held = outbox.len().map_or(0, |n| u64::try_from(n).unwrap_or(u64::MAX));
        Self {
            bound: u64::try_from(outbox.bound()).unwrap_or(u64::MAX),
            outbox: Mutex::new(outbox),
            buffered: AtomicU64::new(held),
            taken: AtomicU64::new(0),
            merged: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            resent: AtomicU64::new(0),
            slices: AtomicU64::new(0),
            resend_from: Mutex::new(None),
        }
    }

    fn outbox(&self) -> std::sync::MutexGuard<'_, Outbox> {
        // The outbox's state is the database's (or a plain queue): usable after a panic.
        self.outbox.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn count(&self, o: &Outbox) {
        if let Ok(n) = o.len() {
            self.buffered.store(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
        }
    }

    /// Keep one batch (merging the two oldest when full; a database failure is counted in
    /// `dropped`).
    pub fn push(&self, entry: Value) {
        let mut o = self.outbox();
        self.taken.fetch_add(1, Ordering::Relaxed);
        match o.push(entry) {
            Ok(m) => {
                self.merged.fetch_add(m, Ordering::Relaxed);
            }
            Err(e) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("mqtt: outage buffer: {e}");
            }
        }
        self.count(&o);
    }

    /// The oldest batches, at most `rows` and [`SLICE_BYTES`] of JSON (at least one);
    /// `None` when the buffer is empty.
    ///
    /// # Errors
    /// The database's error.
    pub fn slice(&self, rows: usize) -> Result<Option<Slice>, String> {
        let o = self.outbox();
        let all = o.oldest(rows.max(1))?;
        let mut bytes = 0usize;
        let mut last_seq = 0;
        let mut entries = Vec::new();
        for e in all {
            let len = e.json.to_string().len();
            if !entries.is_empty() && bytes.saturating_add(len) > SLICE_BYTES {
                break;
            }
            bytes = bytes.saturating_add(len);
            last_seq = e.seq;
            entries.push(e.json);
        }
        if entries.is_empty() {
            return Ok(None);
        }
        Ok(Some(Slice { entries, last_seq, epoch: self.merged.load(Ordering::Relaxed) }))
    }

    /// The broker acknowledged `slice`: remove it. `false` (nothing removed; it is resent)
    /// when the buffer merged batches while the slice was in flight.
    ///
    /// # Errors
    /// The database's error.
    pub fn confirm(&self, slice: &Slice) -> Result<bool, String> {
        let mut o = self.outbox();
        if self.merged.load(Ordering::Relaxed) != slice.epoch {
            return Ok(false);
        }
        o.remove_oldest(slice.entries.len(), slice.last_seq)?;
        let n = u64::try_from(slice.entries.len()).unwrap_or(u64::MAX);
        self.resent.fetch_add(n, Ordering::Relaxed);
        self.slices.fetch_add(1, Ordering::Relaxed);
        self.count(&o);
        Ok(true)
    }

    /// Whether nothing is held (a database error counts as "something": try again later).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.outbox().is_empty().unwrap_or(false)
    }

    /// When the resend may start (the random delay after a reconnection), while one waits.
    #[must_use]
    pub fn resend_from(&self) -> Option<Timestamp> {
        *self.resend_from.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn set_resend_from(&self, at: Option<Timestamp>) {
        *self.resend_from.lock().unwrap_or_else(PoisonError::into_inner) = at;
    }

    /// The counters now.
    #[must_use]
    pub fn stats(&self) -> BufferStats {
        BufferStats {
            buffered: self.buffered.load(Ordering::Relaxed),
            buffer_rows: self.bound,
            taken: self.taken.load(Ordering::Relaxed),
            merged: self.merged.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            resent: self.resent.load(Ordering::Relaxed),
            slices: self.slices.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code
mod tests {
    use super::*;

    fn batch(i: u32) -> Value {
        json!({ "timestamp": format!("t{i:03}"), "samples": 1, "currentData": { "_sum/EssSoc": f64::from(i) } })
    }

    #[test]
    fn slices_leave_only_when_confirmed_and_keep_their_order() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(dir.path().join("db.sqlite")).unwrap());
        let b = HistoryBuffer::new(Some(db.clone()), 100);
        for i in 0..25 {
            b.push(batch(i));
        }
        let mut seen = Vec::new();
        let first = b.slice(10).unwrap().unwrap();
        // Not confirmed (the broker never acknowledged it): read again, the same slice.
        assert_eq!(b.slice(10).unwrap().unwrap(), first);
        while let Some(s) = b.slice(10).unwrap() {
            assert!(b.confirm(&s).unwrap());
            seen.extend(s.entries.iter().map(|e| e["timestamp"].as_str().unwrap().to_owned()));
        }
        let want: Vec<String> = (0..25).map(|i| format!("t{i:03}")).collect();
        assert_eq!(seen, want);
        let s = b.stats();
        assert_eq!((s.buffered, s.taken, s.resent, s.slices, s.merged), (0, 25, 25, 3, 0));
        // Survives a reopen.
        b.push(batch(99));
        drop(b);
        assert_eq!(HistoryBuffer::new(Some(db), 100).stats().buffered, 1);
    }

    #[test]
    fn a_full_buffer_merges_and_a_merge_in_flight_keeps_the_slice() {
        let b = HistoryBuffer::new(None, 10);
        for i in 0..15 {
            b.push(batch(i));
        }
        let s = b.stats();
        assert_eq!((s.buffered, s.buffer_rows, s.merged, s.dropped), (10, 10, 5, 0));
        let slice = b.slice(3).unwrap().unwrap();
        assert_eq!(slice.entries[0]["samples"], 6.0, "the oldest six merged into one");
        b.push(batch(15));
        assert!(!b.confirm(&slice).unwrap(), "merged meanwhile: resent, not removed");
        assert_eq!(b.stats().buffered, 10);
    }

    #[test]
    fn a_slice_stops_at_its_byte_bound_but_holds_one_batch() {
        let b = HistoryBuffer::new(None, 100);
        let big = "x".repeat(SLICE_BYTES / 3);
        for i in 0..5 {
            b.push(json!({ "timestamp": i, "samples": 1, "currentData": { "t": big } }));
        }
        assert_eq!(b.slice(100).unwrap().unwrap().entries.len(), 2);
        let b = HistoryBuffer::new(None, 100);
        b.push(json!({ "timestamp": 0, "samples": 1, "currentData": { "t": "y".repeat(SLICE_BYTES * 2) } }));
        assert_eq!(b.slice(100).unwrap().unwrap().entries.len(), 1);
    }
}
