//! The bounded telemetry buffer shared by the cloud link (`cloud_outbox`) and the MQTT link
//! (`mqtt_outbox`): what a link could not deliver, kept oldest first — in the database when the
//! gateway has one (kept across restarts), in memory otherwise — until it is resent. When full,
//! the two oldest entries are merged into one (channel values averaged by their sample counts):
//! the oldest telemetry loses resolution first and nothing is dropped outright.
//!
//! An entry is a JSON object `{"timestamp", "until"?, "samples", "currentData": {channel:
//! value}, ...}`; other keys of the newer entry (the cloud's `activeControlModes`) are kept on a
//! merge.

use crate::db::{Db, OutboxTable};
use serde_json::{json, Map, Value};
use std::collections::VecDeque;
use std::sync::Arc;

/// One entry: telemetry that did not reach its destination (or several, merged).
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    /// Database row (0 in memory).
    pub seq: i64,
    /// The entry as it is resent: `timestamp`, `until`, `samples`, `currentData`,
    /// `activeControlModes`.
    pub json: Value,
}

/// The bounded outbox.
#[derive(Debug)]
pub struct Outbox {
    db: Option<Arc<Db>>,
    table: OutboxTable,
    memory: VecDeque<OutboxEntry>,
    bound: usize,
}

fn samples(v: &Value) -> f64 {
    v.get("samples").and_then(Value::as_f64).unwrap_or(1.0).max(1.0)
}

/// Merge `b` (newer) into `a` (older): channel values averaged by sample counts; `timestamp`
/// from `a`, `until` from `b`, the newer modes.
#[must_use]
pub fn merge_entries(a: &Value, b: &Value) -> Value {
    let (na, nb) = (samples(a), samples(b));
    let empty = Map::new();
    let ca = a.get("currentData").and_then(Value::as_object).unwrap_or(&empty);
    let cb = b.get("currentData").and_then(Value::as_object).unwrap_or(&empty);
    let mut data = Map::new();
    for (k, va) in ca {
        let merged = match (va.as_f64(), cb.get(k).and_then(Value::as_f64)) {
            (Some(x), Some(y)) => json!((x * na + y * nb) / (na + nb)),
            (Some(_), None) => va.clone(),
            (None, _) => cb.get(k).cloned().unwrap_or_else(|| va.clone()),
        };
        data.insert(k.clone(), merged);
    }
    for (k, vb) in cb {
        data.entry(k.clone()).or_insert_with(|| vb.clone());
    }
    let mut out = json!({
        "timestamp": a.get("timestamp").cloned().unwrap_or(Value::Null),
        "until": b.get("until").or_else(|| b.get("timestamp")).cloned().unwrap_or(Value::Null),
        "samples": na + nb,
        "currentData": data,
    });
    if let (Some(o), Some(modes)) = (out.as_object_mut(), b.get("activeControlModes")) {
        o.insert("activeControlModes".to_owned(), modes.clone());
    }
    out
}

impl Outbox {
    /// The outbox in `table` of `db` (kept across restarts) or in memory, holding at most
    /// `bound` entries.
    #[must_use]
    pub fn new(db: Option<Arc<Db>>, table: OutboxTable, bound: usize) -> Self {
        Self { db, table, memory: VecDeque::new(), bound: bound.max(2) }
    }

    /// The bound in entries.
    #[must_use]
    pub const fn bound(&self) -> usize {
        self.bound
    }

    /// Entries held.
    ///
    /// # Errors
    /// The database's error.
    pub fn len(&self) -> Result<usize, String> {
        match &self.db {
            Some(db) => db.outbox_len(self.table).map_err(|e| e.to_string()),
            None => Ok(self.memory.len()),
        }
    }

    /// Whether nothing is held.
    ///
    /// # Errors
    /// The database's error.
    pub fn is_empty(&self) -> Result<bool, String> {
        self.len().map(|n| n == 0)
    }

    /// Add an entry; when over the bound, merge the two oldest. How many merges it took.
    ///
    /// # Errors
    /// The database's error (the entry is then lost, and counted by the caller).
    pub fn push(&mut self, entry: Value) -> Result<u64, String> {
        let mut merges = 0;
        match &self.db {
            Some(db) => {
                db.outbox_push(self.table, &entry.to_string()).map_err(|e| e.to_string())?;
                while db.outbox_len(self.table).map_err(|e| e.to_string())? > self.bound {
                    let two = db.outbox_oldest(self.table, 2).map_err(|e| e.to_string())?;
                    let [(sa, ja), (sb, jb)] = two.as_slice() else { break };
                    let a: Value = serde_json::from_str(ja).unwrap_or(Value::Null);
                    let b: Value = serde_json::from_str(jb).unwrap_or(Value::Null);
                    db.outbox_replace_two(self.table, *sa, *sb, &merge_entries(&a, &b).to_string())
                        .map_err(|e| e.to_string())?;
                    merges += 1;
                }
            }
            None => {
                self.memory.push_back(OutboxEntry { seq: 0, json: entry });
                while self.memory.len() > self.bound {
                    let (Some(a), Some(b)) = (self.memory.pop_front(), self.memory.pop_front()) else {
                        break;
                    };
                    self.memory.push_front(OutboxEntry { seq: 0, json: merge_entries(&a.json, &b.json) });
                    merges += 1;
                }
            }
        }
        Ok(merges)
    }

    /// The oldest `n` entries.
    ///
    /// # Errors
    /// The database's error.
    pub fn oldest(&self, n: usize) -> Result<Vec<OutboxEntry>, String> {
        match &self.db {
            Some(db) => Ok(db
                .outbox_oldest(self.table, n)
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|(seq, j)| OutboxEntry { seq, json: serde_json::from_str(&j).unwrap_or(Value::Null) })
                .collect()),
            None => Ok(self.memory.iter().take(n).cloned().collect()),
        }
    }

    /// Remove the oldest `n` entries (a slice the cloud accepted: `last_seq` its last row).
    ///
    /// # Errors
    /// The database's error.
    pub fn remove_oldest(&mut self, n: usize, last_seq: i64) -> Result<(), String> {
        match &self.db {
            Some(db) => db.outbox_delete_through(self.table, last_seq).map_err(|e| e.to_string()),
            None => {
                self.memory.drain(..n.min(self.memory.len()));
                Ok(())
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code
mod tests {
    use super::*;

    fn entry(t: &str, p: f64) -> Value {
        json!({ "timestamp": t, "samples": 1, "currentData": { "_sum/GridActivePower": p, "_sum/State": "RUNNING" } })
    }

    #[test]
    fn a_full_outbox_merges_the_oldest_instead_of_dropping() {
        let mut o = Outbox::new(None, OutboxTable::Mqtt, 3);
        let mut merges = 0;
        for (i, p) in [100.0, 200.0, 300.0, 400.0, 500.0].into_iter().enumerate() {
            merges += o.push(entry(&format!("t{i}"), p)).unwrap();
        }
        assert_eq!(o.len().unwrap(), 3);
        assert_eq!(merges, 2);
        let all = o.oldest(10).unwrap();
        // t0+t1 merged, then with t2: 3 samples averaging 200 W, from t0 until t2.
        assert_eq!(all[0].json["samples"], 3.0);
        assert_eq!(all[0].json["timestamp"], "t0");
        assert_eq!(all[0].json["until"], "t2");
        assert!((all[0].json["currentData"]["_sum/GridActivePower"].as_f64().unwrap() - 200.0).abs() < 1e-9);
        assert_eq!(all[0].json["currentData"]["_sum/State"], "RUNNING");
        assert_eq!(all[2].json["timestamp"], "t4");
    }

    #[test]
    fn the_database_outbox_keeps_order_bound_and_merges() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(dir.path().join("db.sqlite")).unwrap());
        let mut o = Outbox::new(Some(db.clone()), OutboxTable::Cloud, 3);
        for (i, p) in [100.0, 200.0, 300.0, 400.0].into_iter().enumerate() {
            o.push(entry(&format!("t{i}"), p)).unwrap();
        }
        assert_eq!(o.len().unwrap(), 3);
        let all = o.oldest(2).unwrap();
        assert_eq!(all[0].json["samples"], 2.0);
        assert_eq!(all[1].json["timestamp"], "t2");
        o.remove_oldest(2, all[1].seq).unwrap();
        // Kept across a reopen.
        drop(o);
        let o = Outbox::new(Some(db), OutboxTable::Cloud, 3);
        let rest = o.oldest(10).unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].json["timestamp"], "t3");
    }

    #[test]
    fn the_two_tables_are_kept_apart() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(dir.path().join("db.sqlite")).unwrap());
        let mut cloud = Outbox::new(Some(db.clone()), OutboxTable::Cloud, 10);
        let mut mqtt = Outbox::new(Some(db), OutboxTable::Mqtt, 10);
        cloud.push(entry("c", 1.0)).unwrap();
        mqtt.push(entry("m1", 1.0)).unwrap();
        mqtt.push(entry("m2", 1.0)).unwrap();
        assert_eq!((cloud.len().unwrap(), mqtt.len().unwrap()), (1, 2));
        let m = mqtt.oldest(10).unwrap();
        mqtt.remove_oldest(2, m[1].seq).unwrap();
        assert_eq!((cloud.len().unwrap(), mqtt.len().unwrap()), (1, 0));
        // An entry without control modes gets none on a merge.
        assert!(merge_entries(&entry("a", 1.0), &entry("b", 3.0)).get("activeControlModes").is_none());
    }
}
