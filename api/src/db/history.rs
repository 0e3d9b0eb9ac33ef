//! Telemetry history: the write buffer, the three tiers, queries and retention.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use super::error::store_err;
use super::options::{HistoryRetention, MaintainReport};
use crate::ports::StoreError;

/// One storage tier of the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Tier {
    /// Every sample.
    Raw,
    /// 1-minute sums and counts.
    Minute,
    /// 15-minute sums and counts.
    Quarter,
}

impl Tier {
    const ALL: [Tier; 3] = [Tier::Raw, Tier::Minute, Tier::Quarter];

    fn name(self) -> &'static str {
        match self {
            Tier::Raw => "raw",
            Tier::Minute => "minute",
            Tier::Quarter => "quarter",
        }
    }

    fn table(self) -> &'static str {
        match self {
            Tier::Raw => "history_raw",
            Tier::Minute => "history_minute",
            Tier::Quarter => "history_quarter",
        }
    }

    fn time_column(self) -> &'static str {
        match self {
            Tier::Raw => "at_ms",
            Tier::Minute | Tier::Quarter => "bucket_ms",
        }
    }

    /// Bucket width in ms; `None` for raw samples.
    fn width_ms(self) -> Option<i64> {
        match self {
            Tier::Raw => None,
            Tier::Minute => Some(60_000),
            Tier::Quarter => Some(900_000),
        }
    }

    fn retention(self, r: &HistoryRetention) -> Duration {
        match self {
            Tier::Raw => r.raw,
            Tier::Minute => r.minute,
            Tier::Quarter => r.quarter,
        }
    }
}

/// Start of the bucket of width `width` (> 0) holding `at` (floor, also before 1970).
fn bucket_start(at: i64, width: i64) -> i64 {
    at.saturating_sub(at.rem_euclid(width))
}

/// A duration in whole ms, saturating at `i64::MAX` (a retention of 292 million years).
pub(super) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A sample waiting in the write buffer.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pending {
    channel_id: i64,
    at_ms: i64,
    value: f64,
}

/// The history half of the connection state: channel ids and the write buffer.
#[derive(Debug, Default)]
pub(super) struct HistoryState {
    /// Channel name -> id; only ids already committed are cached.
    channels: HashMap<String, i64>,
    /// Samples not yet committed.
    pending: Vec<Pending>,
    /// Time of the oldest pending sample.
    first_pending_ms: Option<i64>,
}

impl HistoryState {
    /// Buffer the finite values of one sample; whether the buffer should now be flushed.
    pub(super) fn push(
        &mut self,
        conn: &Connection,
        path: &Path,
        at_ms: i64,
        values: &[(&str, f64)],
        flush_after: Duration,
        max_pending: usize,
    ) -> Result<bool, StoreError> {
        for &(name, value) in values {
            // NaN would become NULL in SQLite and an infinity would poison every mean of its
            // buckets: a non-finite value is a gap, not a sample.
            if !value.is_finite() {
                continue;
            }
            let channel_id = self.channel_id(conn, path, name)?;
            self.pending.push(Pending { channel_id, at_ms, value });
            self.first_pending_ms.get_or_insert(at_ms);
        }
        let Some(first) = self.first_pending_ms else {
            return Ok(false);
        };
        // abs_diff: a clock stepped backwards must not hold the buffer until it is full.
        let span = u128::from(at_ms.abs_diff(first));
        Ok(span >= flush_after.as_millis() || self.pending.len() >= max_pending)
    }

    fn channel_id(&mut self, conn: &Connection, path: &Path, name: &str) -> Result<i64, StoreError> {
        if let Some(&id) = self.channels.get(name) {
            return Ok(id);
        }
        // Its own (autocommit) write, so a cached id is always a committed one.
        conn.prepare_cached("INSERT INTO history_channels (name) VALUES (?1) ON CONFLICT (name) DO NOTHING")
            .and_then(|mut s| s.execute([name]))
            .map_err(|e| store_err(path, "add history channel", e))?;
        let id = lookup_channel(conn, path, name)?
            .ok_or_else(|| store_err(path, "add history channel", format!("{name} vanished")))?;
        self.channels.insert(name.to_owned(), id);
        Ok(id)
    }

    /// Commit every buffered sample and its bucket sums in one transaction; how many samples.
    /// On failure the batch is dropped (memory stays bounded) and the error returned.
    pub(super) fn flush(&mut self, conn: &mut Connection, path: &Path) -> Result<usize, StoreError> {
        if self.pending.is_empty() {
            return Ok(0);
        }
        let batch = std::mem::take(&mut self.pending);
        self.first_pending_ms = None;
        let err = |e: rusqlite::Error| store_err(path, "write history", e);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err)?;
        // Summed per bucket in memory first: one upsert per channel and bucket, not per sample.
        let mut sums: BTreeMap<(Tier, i64, i64), (f64, i64)> = BTreeMap::new();
        {
            // A duplicate (channel, time) keeps the first value; the bucket sums only count
            // samples that were really inserted, so tiers never disagree.
            let mut raw = tx
                .prepare_cached(
                    "INSERT INTO history_raw (channel_id, at_ms, value) VALUES (?1, ?2, ?3)
                     ON CONFLICT DO NOTHING",
                )
                .map_err(err)?;
            for p in &batch {
                if raw.execute((p.channel_id, p.at_ms, p.value)).map_err(err)? == 1 {
                    for tier in [Tier::Minute, Tier::Quarter] {
                        if let Some(w) = tier.width_ms() {
                            let s = sums.entry((tier, p.channel_id, bucket_start(p.at_ms, w))).or_default();
                            s.0 += p.value;
                            s.1 = s.1.saturating_add(1);
                        }
                    }
                }
            }
            for ((tier, channel_id, bucket), (sum, n)) in sums {
                let sql = format!(
                    "INSERT INTO {} (channel_id, bucket_ms, value_sum, samples) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (channel_id, bucket_ms) DO UPDATE
                     SET value_sum = value_sum + excluded.value_sum, samples = samples + excluded.samples",
                    tier.table()
                );
                tx.prepare_cached(&sql)
                    .and_then(|mut s| s.execute((channel_id, bucket, sum, n)))
                    .map_err(err)?;
            }
        }
        tx.commit().map_err(err)?;
        Ok(batch.len())
    }
}

fn lookup_channel(conn: &Connection, path: &Path, name: &str) -> Result<Option<i64>, StoreError> {
    conn.prepare_cached("SELECT id FROM history_channels WHERE name = ?1")
        .and_then(|mut s| s.query_row([name], |r| r.get(0)).optional())
        .map_err(|e| store_err(path, "look up history channel", e))
}

/// Per tier, the time before which retention has deleted rows (`None`: never pruned).
fn pruned_before(conn: &Connection, path: &Path, tier: Tier) -> Result<Option<i64>, StoreError> {
    conn.prepare_cached("SELECT before_ms FROM history_pruned WHERE tier = ?1")
        .and_then(|mut s| s.query_row([tier.name()], |r| r.get(0)).optional())
        .map_err(|e| store_err(path, "read history retention state", e))
}

/// The tier a query reads. Preference: the coarsest tier that still holds `from` and gives the
/// same answer as the raw samples (its buckets tile `[from, to)` and each query bucket);
/// otherwise the finest tier that holds `from` (stored buckets are then assigned by their
/// start, an approximation); if none holds `from`, the one pruned least far back.
fn choose_tier(pruned: &[(Tier, Option<i64>)], from: i64, to: i64, res: Option<i64>) -> Tier {
    let covers = |before: Option<i64>| before.is_none_or(|b| from >= b);
    let exact = |t: Tier| match t.width_ms() {
        None => true,
        Some(w) => res.is_some_and(|r| r % w == 0 && from.rem_euclid(w) == 0 && to.rem_euclid(w) == 0),
    };
    let coarsest_exact = pruned.iter().rev().find(|(t, b)| covers(*b) && exact(*t));
    let finest = pruned.iter().find(|(_, b)| covers(*b));
    coarsest_exact
        .or(finest)
        .or_else(|| pruned.iter().min_by_key(|(_, b)| b.unwrap_or(i64::MIN)))
        .map_or(Tier::Raw, |(t, _)| *t)
}

/// Values of `channels` in `[from, to)` as `(ms, channel, value)`, ordered by time then channel.
pub(super) fn query(
    conn: &Connection,
    path: &Path,
    from: i64,
    to: i64,
    channels: &[&str],
    res: Option<i64>,
) -> Result<Vec<(i64, String, f64)>, StoreError> {
    if to <= from {
        return Ok(Vec::new());
    }
    let mut pruned = Vec::with_capacity(Tier::ALL.len());
    for t in Tier::ALL {
        pruned.push((t, pruned_before(conn, path, t)?));
    }
    let tier = choose_tier(&pruned, from, to, res);
    let (table, col) = (tier.table(), tier.time_column());
    let value = match tier {
        Tier::Raw => "value",
        Tier::Minute | Tier::Quarter => "value_sum / samples",
    };
    let mean = match tier {
        Tier::Raw => "AVG(value)",
        Tier::Minute | Tier::Quarter => "SUM(value_sum) / SUM(samples)",
    };
    // Both statements take the same four parameters (rusqlite refuses unused ones); the
    // resolution is NULL for stored samples.
    let sql = match res {
        None => format!(
            "SELECT {col}, {value} FROM {table}
             WHERE channel_id = ?1 AND {col} >= ?2 AND {col} < ?3 AND ?4 IS NULL ORDER BY {col}"
        ),
        // `{col} - ?2` is never negative here, so integer division is the floor.
        Some(_) => format!(
            "SELECT ?2 + (({col} - ?2) / ?4) * ?4 AS start, {mean} FROM {table}
             WHERE channel_id = ?1 AND {col} >= ?2 AND {col} < ?3 GROUP BY start ORDER BY start"
        ),
    };
    let mut names: Vec<&str> = channels.to_vec();
    names.sort_unstable();
    names.dedup();
    let mut out = Vec::new();
    let err = |e: rusqlite::Error| store_err(path, "query history", e);
    let mut stmt = conn.prepare_cached(&sql).map_err(err)?;
    for name in names {
        let Some(id) = lookup_channel(conn, path, name)? else {
            continue;
        };
        let rows = stmt
            .query_map((id, from, to, res), |r| Ok((r.get::<_, i64>(0)?, r.get::<_, f64>(1)?)))
            .map_err(err)?;
        for row in rows {
            let (at, v) = row.map_err(err)?;
            out.push((at, name.to_owned(), v));
        }
    }
    out.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    Ok(out)
}

/// Apply `retention` at `now_ms` in one transaction.
pub(super) fn apply_retention(
    conn: &mut Connection,
    path: &Path,
    now_ms: i64,
    retention: &HistoryRetention,
) -> Result<MaintainReport, StoreError> {
    let err = |e: rusqlite::Error| store_err(path, "apply history retention", e);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err)?;
    let ids: Vec<i64> = {
        let mut s = tx.prepare_cached("SELECT id FROM history_channels").map_err(err)?;
        let rows = s.query_map([], |r| r.get(0)).map_err(err)?;
        rows.collect::<Result<_, _>>().map_err(err)?
    };
    let mut report = MaintainReport::default();
    for tier in Tier::ALL {
        let cutoff = now_ms.saturating_sub(duration_ms(tier.retention(retention)));
        // A bucket is kept whole or deleted whole; the tier then still holds every time from
        // the start of the bucket that contains the cutoff.
        let cutoff = tier.width_ms().map_or(cutoff, |w| bucket_start(cutoff, w));
        let sql =
            format!("DELETE FROM {} WHERE channel_id = ?1 AND {} < ?2", tier.table(), tier.time_column());
        let mut deleted = 0usize;
        {
            // Per channel so the delete walks the primary key instead of the whole table.
            let mut del = tx.prepare_cached(&sql).map_err(err)?;
            for &id in &ids {
                deleted = deleted.saturating_add(del.execute((id, cutoff)).map_err(err)?);
            }
        }
        tx.prepare_cached(
            "INSERT INTO history_pruned (tier, before_ms) VALUES (?1, ?2)
             ON CONFLICT (tier) DO UPDATE SET before_ms = max(before_ms, excluded.before_ms)",
        )
        .and_then(|mut s| s.execute((tier.name(), cutoff)))
        .map_err(err)?;
        match tier {
            Tier::Raw => report.raw = deleted,
            Tier::Minute => report.minute = deleted,
            Tier::Quarter => report.quarter = deleted,
        }
    }
    tx.commit().map_err(err)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_start_floors_before_1970() {
        assert_eq!(bucket_start(59_999, 60_000), 0);
        assert_eq!(bucket_start(60_000, 60_000), 60_000);
        assert_eq!(bucket_start(-1, 60_000), -60_000);
    }

    #[test]
    fn tier_choice() {
        let none = [(Tier::Raw, None), (Tier::Minute, None), (Tier::Quarter, None)];
        assert_eq!(choose_tier(&none, 0, 3_600_000, None), Tier::Raw);
        assert_eq!(choose_tier(&none, 0, 3_600_000, Some(900_000)), Tier::Quarter);
        assert_eq!(choose_tier(&none, 0, 3_600_000, Some(300_000)), Tier::Minute);
        assert_eq!(choose_tier(&none, 1, 3_600_000, Some(300_000)), Tier::Raw);
        let raw_gone = [(Tier::Raw, Some(10_000_000)), (Tier::Minute, None), (Tier::Quarter, None)];
        assert_eq!(choose_tier(&raw_gone, 0, 3_600_000, None), Tier::Minute);
        assert_eq!(choose_tier(&raw_gone, 1, 3_600_000, Some(1_000)), Tier::Minute);
        let all_gone = [(Tier::Raw, Some(30)), (Tier::Minute, Some(20)), (Tier::Quarter, Some(25))];
        assert_eq!(choose_tier(&all_gone, 0, 100, None), Tier::Minute);
    }
}
