//! Settings and reports of the store, shared by [`super`] and its history part.

use std::time::Duration;

/// How long each history tier is kept (see [`Db::maintain`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryRetention {
    /// Raw samples (default 2 days).
    pub raw: Duration,
    /// 1-minute means (default 30 days).
    pub minute: Duration,
    /// 15-minute means (default 2 years, 730 days).
    pub quarter: Duration,
}

const DAY: Duration = Duration::from_secs(86_400);

impl Default for HistoryRetention {
    fn default() -> Self {
        Self { raw: DAY.saturating_mul(2), minute: DAY.saturating_mul(30), quarter: DAY.saturating_mul(730) }
    }
}

/// What [`Db::maintain`] keeps: history tiers by age, the audit log by age **and** row count.
///
/// The audit log gets a row cap as well because its growth is driven from outside (every
/// refused request may leave a row); the history's growth is bounded by the tier ages times
/// the sample rate, which the loop controls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Audit rows older than this are deleted (`None` = kept whatever their age). Default
    /// 365 days.
    pub audit_max_age: Option<Duration>,
    /// At most this many audit rows are kept (the oldest go first). Default 1,000,000.
    pub audit_max_rows: u64,
    /// History tiers by age.
    pub history: HistoryRetention,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            audit_max_age: Some(DAY.saturating_mul(365)),
            audit_max_rows: 1_000_000,
            history: HistoryRetention::default(),
        }
    }
}

/// Settings of a [`Db`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbOptions {
    /// Retention of history and audit.
    pub retention: Retention,
    /// Commit buffered history once the buffered samples span this much time (their own
    /// timestamps). The bound on telemetry lost by a power cut. Zero: every `record` commits.
    pub history_flush_after: Duration,
    /// Commit buffered history once this many values wait, whatever their span.
    pub history_max_pending: usize,
}

impl Default for DbOptions {
    fn default() -> Self {
        Self {
            retention: Retention::default(),
            history_flush_after: Duration::from_secs(1),
            history_max_pending: 4096,
        }
    }
}

/// Rows deleted by one [`Db::maintain`], per history tier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaintainReport {
    /// Raw samples deleted.
    pub raw: usize,
    /// 1-minute buckets deleted.
    pub minute: usize,
    /// 15-minute buckets deleted.
    pub quarter: usize,
    /// Audit rows deleted.
    pub audit: usize,
}
