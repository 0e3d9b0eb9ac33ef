//! Operational metrics in the Prometheus text format (`GET /metrics`).
//!
//! The control thread calls [`Metrics::observe_cycle`] every cycle, so recording is a handful
//! of relaxed atomic additions: no allocation, no lock. Only the keyed counters (device errors
//! by device and kind, API answers by status code) sit behind a `Mutex`; they are touched on
//! rare events (a device error) or on the HTTP side, and each critical section is one map
//! update. A poisoned lock is recovered: the data are plain counters.
//!
//! Durations are kept as integer nanoseconds (a `u64` holds 584 years), so sums never lose
//! precision to floating point; [`Metrics::render`] converts to seconds.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Upper bounds (seconds) of the histogram buckets; `+Inf` is implicit.
pub const BUCKETS_S: [f64; 7] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0];

/// The same bounds in nanoseconds, for the hot path.
const BUCKETS_NS: [u64; 7] =
    [1_000_000, 5_000_000, 10_000_000, 50_000_000, 100_000_000, 500_000_000, 1_000_000_000];

/// The state names `ems_state` reports, in this order.
pub const STATES: [&str; 5] = ["BOOT", "IDLE", "RUNNING", "ERROR", "STOPPED"];

/// At most this many distinct `(device, kind)` pairs are kept; further pairs are counted under
/// `device="other"` so a misbehaving driver with changing names cannot grow memory.
const MAX_DEVICE_SERIES: usize = 256;

/// A cumulative histogram with fixed buckets and a separately tracked maximum.
#[derive(Debug, Default)]
struct Histogram {
    /// Per bucket (not cumulative; summed on render), plus one for `+Inf`.
    buckets: [AtomicU64; 8],
    count: AtomicU64,
    sum_ns: AtomicU64,
    max_ns: AtomicU64,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let ns = nanos(d);
        let i = BUCKETS_NS.iter().position(|b| ns <= *b).unwrap_or(BUCKETS_NS.len());
        if let Some(b) = self.buckets.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        // Saturation after 584 years of summed duration is acceptable; wrapping is not.
        let _ =
            self.sum_ns.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| Some(s.saturating_add(ns)));
        self.max_ns.fetch_max(ns, Ordering::Relaxed);
    }

    fn cumulative(&self) -> [u64; 8] {
        let mut out = [0u64; 8];
        let mut acc = 0u64;
        for (o, b) in out.iter_mut().zip(&self.buckets) {
            acc = acc.saturating_add(b.load(Ordering::Relaxed));
            *o = acc;
        }
        out
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let cum = self.cumulative();
        for (le, n) in BUCKETS_S.iter().zip(cum.iter()) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {n}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", cum[7]);
        #[allow(clippy::cast_precision_loss)] // nanoseconds to seconds for display
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {}", self.count.load(Ordering::Relaxed));
    }
}

/// A refusal before authentication, whose audit rows are sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// No bearer token (401; counted as unauthenticated).
    Missing,
    /// An unknown token (401; counted as unauthenticated).
    Invalid,
    /// A rate limit, per token or per address (429).
    RateLimited,
}

impl RefusalKind {
    fn index(self) -> usize {
        match self {
            Self::Missing => 0,
            Self::Invalid => 1,
            Self::RateLimited => 2,
        }
    }
}

/// The last audit row written for one kind of unauthenticated request.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    last_row: Option<Instant>,
    suppressed: u64,
}

/// The metrics of one gateway (see the module docs). Share it as `Arc<Metrics>`.
#[derive(Debug, Default)]
pub struct Metrics {
    cycle: Histogram,
    lateness: Histogram,
    estop: Histogram,
    /// Index into [`STATES`], `usize::MAX` before the first `set_state`.
    state: AtomicUsize,
    state_known: AtomicBool,
    device_errors: Mutex<BTreeMap<(String, String), u64>>,
    api_requests: Mutex<BTreeMap<u16, u64>>,
    audit_queue_depth: AtomicU64,
    audit_dropped: AtomicU64,
    unauthenticated: AtomicU64,
    samples: Mutex<[Sample; 3]>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Escape a label value (backslash, quote, newline) as the text format requires.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl Metrics {
    /// No observations yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// One control cycle: how long its work took and how late it started. Lock-free.
    pub fn observe_cycle(&self, duration: Duration, lateness: Duration) {
        self.cycle.observe(duration);
        self.lateness.observe(lateness);
    }

    /// Time from an E-stop request to the zero-power command.
    pub fn observe_estop_to_zero(&self, took: Duration) {
        self.estop.observe(took);
    }

    /// The current state (`BOOT`, `IDLE`, `RUNNING`, `ERROR`, `STOPPED`); another name is
    /// ignored (logged) so a typo cannot make every state gauge 0 silently.
    pub fn set_state(&self, state: &str) {
        match STATES.iter().position(|s| *s == state) {
            Some(i) => {
                self.state.store(i, Ordering::Relaxed);
                self.state_known.store(true, Ordering::Relaxed);
            }
            None => tracing::warn!(state, "metrics: unknown state name ignored"),
        }
    }

    /// One error of `device` of `kind` (`timeout`, `comm`, `decode`, ...).
    pub fn device_error(&self, device: &str, kind: &str) {
        let mut m = lock(&self.device_errors);
        let key = (device.to_owned(), kind.to_owned());
        if m.len() >= MAX_DEVICE_SERIES && !m.contains_key(&key) {
            *m.entry(("other".to_owned(), kind.to_owned())).or_insert(0) += 1;
            return;
        }
        let n = m.entry(key).or_insert(0);
        *n = n.saturating_add(1);
    }

    /// One API answer with status `code`.
    pub fn api_request(&self, code: u16) {
        let mut m = lock(&self.api_requests);
        let n = m.entry(code).or_insert(0);
        *n = n.saturating_add(1);
    }

    /// Entries waiting in the audit queue.
    pub fn set_audit_queue_depth(&self, depth: u64) {
        self.audit_queue_depth.store(depth, Ordering::Relaxed);
    }

    /// Audit entries dropped so far (routine entries of a full queue).
    pub fn set_audit_dropped(&self, dropped: u64) {
        self.audit_dropped.store(dropped, Ordering::Relaxed);
    }

    /// Unauthenticated requests (401) counted so far.
    #[must_use]
    pub fn unauthenticated(&self) -> u64 {
        self.unauthenticated.load(Ordering::Relaxed)
    }

    /// Count one refusal of `kind` at `now` (missing and invalid tokens in
    /// `ems_api_unauthenticated_total`), and decide whether it gets an audit row:
    /// `Some(suppressed)` (how many of this kind were not written since the last row) at most
    /// once per `every`, else `None`. One row per request would let anyone who reaches the
    /// port fill the disk with fsynced rows.
    pub fn note_refusal(&self, kind: RefusalKind, now: Instant, every: Duration) -> Option<u64> {
        match kind {
            RefusalKind::Missing | RefusalKind::Invalid => {
                self.unauthenticated.fetch_add(1, Ordering::Relaxed);
            }
            RefusalKind::RateLimited => {}
        }
        let mut samples = lock(&self.samples);
        let s = samples.get_mut(kind.index())?;
        let due = s.last_row.is_none_or(|t| now.saturating_duration_since(t) >= every);
        if due {
            let suppressed = s.suppressed;
            *s = Sample { last_row: Some(now), suppressed: 0 };
            Some(suppressed)
        } else {
            s.suppressed = s.suppressed.saturating_add(1);
            None
        }
    }

    /// Cycle lateness so far: `(count, upper bound of the bucket holding the 99th percentile
    /// (`None` = above the largest bucket, or no observations), max)`.
    #[must_use]
    pub fn lateness_summary(&self) -> (u64, Option<Duration>, Duration) {
        let cum = self.lateness.cumulative();
        let count = cum[7];
        let max = Duration::from_nanos(self.lateness.max_ns.load(Ordering::Relaxed));
        if count == 0 {
            return (0, None, max);
        }
        // The smallest bucket holding at least 99 % of the observations (rank rounded up).
        let rank = count.saturating_mul(99).div_ceil(100);
        let p99 = cum
            .iter()
            .zip(BUCKETS_NS.iter())
            .find(|(c, _)| **c >= rank)
            .map(|(_, b)| Duration::from_nanos(*b));
        (count, p99, max)
    }

    /// Everything in the Prometheus text exposition format (version 0.0.4).
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        self.cycle.render(&mut out, "ems_cycle_duration_seconds", "Time the control cycle's work took.");
        self.lateness.render(&mut out, "ems_cycle_lateness_seconds", "How late each control cycle started.");
        // The histogram's buckets hide the worst case; an operator asks for it by name.
        let max_s = Duration::from_nanos(self.lateness.max_ns.load(Ordering::Relaxed)).as_secs_f64();
        let _ = writeln!(
            out,
            "# HELP ems_cycle_lateness_max_seconds The largest lateness of a control cycle since the start.\n# TYPE ems_cycle_lateness_max_seconds gauge\nems_cycle_lateness_max_seconds {max_s}"
        );
        self.estop.render(
            &mut out,
            "ems_estop_to_zero_seconds",
            "Time from an emergency-stop request to the zero-power command.",
        );
        out.push_str(
            "# HELP ems_state The state of the state machine (1 = current).\n# TYPE ems_state gauge\n",
        );
        let known = self.state_known.load(Ordering::Relaxed);
        let current = self.state.load(Ordering::Relaxed);
        for (i, s) in STATES.iter().enumerate() {
            let _ = writeln!(out, "ems_state{{state=\"{s}\"}} {}", u8::from(known && i == current));
        }
        out.push_str("# HELP ems_device_errors_total Device errors by device and kind.\n# TYPE ems_device_errors_total counter\n");
        for ((d, k), n) in lock(&self.device_errors).iter() {
            let _ =
                writeln!(out, "ems_device_errors_total{{device=\"{}\",kind=\"{}\"}} {n}", label(d), label(k));
        }
        out.push_str("# HELP ems_api_requests_total API answers by HTTP status code.\n# TYPE ems_api_requests_total counter\n");
        for (code, n) in lock(&self.api_requests).iter() {
            let _ = writeln!(out, "ems_api_requests_total{{code=\"{code}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP ems_api_unauthenticated_total Requests refused for a missing or unknown token.\n# TYPE ems_api_unauthenticated_total counter\nems_api_unauthenticated_total {}",
            self.unauthenticated()
        );
        let _ = writeln!(
            out,
            "# HELP ems_audit_queue_depth Audit entries waiting to be written.\n# TYPE ems_audit_queue_depth gauge\nems_audit_queue_depth {}",
            self.audit_queue_depth.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP ems_audit_dropped_total Routine audit entries dropped (queue full).\n# TYPE ems_audit_dropped_total counter\nems_audit_dropped_total {}",
            self.audit_dropped.load(Ordering::Relaxed)
        );
        out
    }
}

#[cfg(test)]
mod tests {
    // Test code: a failed unwrap or panic is a failed test with its message.
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_rendered() {
        let m = Metrics::new();
        m.observe_cycle(Duration::from_micros(500), Duration::from_millis(2));
        m.observe_cycle(Duration::from_millis(20), Duration::from_secs(2));
        let text = m.render();
        assert!(text.contains("# TYPE ems_cycle_duration_seconds histogram"), "{text}");
        assert!(text.contains("ems_cycle_duration_seconds_bucket{le=\"0.001\"} 1"), "{text}");
        assert!(text.contains("ems_cycle_duration_seconds_bucket{le=\"0.05\"} 2"), "{text}");
        assert!(text.contains("ems_cycle_duration_seconds_bucket{le=\"+Inf\"} 2"), "{text}");
        assert!(text.contains("ems_cycle_duration_seconds_count 2"), "{text}");
        assert!(text.contains("ems_cycle_lateness_seconds_bucket{le=\"1\"} 1"), "{text}");
        assert!(text.contains("ems_estop_to_zero_seconds_count 0"), "{text}");
        let (n, p99, max) = m.lateness_summary();
        assert_eq!((n, p99, max), (2, None, Duration::from_secs(2)));
    }

    #[test]
    fn state_device_errors_and_codes() {
        let m = Metrics::new();
        let text = m.render();
        assert!(text.contains("ems_state{state=\"BOOT\"} 0"));
        m.set_state("RUNNING");
        m.set_state("nonsense");
        m.device_error("inverter", "timeout");
        m.device_error("inverter", "timeout");
        m.device_error("bms\"x", "decode");
        m.api_request(200);
        m.api_request(429);
        m.set_audit_queue_depth(3);
        m.set_audit_dropped(7);
        let text = m.render();
        assert!(text.contains("ems_state{state=\"RUNNING\"} 1"), "{text}");
        assert!(text.contains("ems_state{state=\"IDLE\"} 0"), "{text}");
        assert!(text.contains("ems_device_errors_total{device=\"inverter\",kind=\"timeout\"} 2"), "{text}");
        assert!(text.contains("ems_device_errors_total{device=\"bms\\\"x\",kind=\"decode\"} 1"), "{text}");
        assert!(text.contains("ems_api_requests_total{code=\"429\"} 1"), "{text}");
        assert!(text.contains("ems_audit_queue_depth 3"), "{text}");
        assert!(text.contains("ems_audit_dropped_total 7"), "{text}");
    }

    #[test]
    fn unauthenticated_rows_are_sampled() {
        let m = Metrics::new();
        let t0 = Instant::now();
        let every = Duration::from_secs(10);
        assert_eq!(m.note_refusal(RefusalKind::Missing, t0, every), Some(0));
        for _ in 0..5 {
            assert_eq!(m.note_refusal(RefusalKind::Missing, t0, every), None);
        }
        // Another kind has its own sampling.
        assert_eq!(m.note_refusal(RefusalKind::Invalid, t0, every), Some(0));
        assert_eq!(m.note_refusal(RefusalKind::Missing, t0 + every, every), Some(5));
        assert_eq!(m.unauthenticated(), 8);
        assert!(m.render().contains("ems_api_unauthenticated_total 8"));
    }

    #[test]
    fn p99_bucket() {
        let m = Metrics::new();
        for _ in 0..99 {
            m.observe_cycle(Duration::ZERO, Duration::from_micros(100));
        }
        m.observe_cycle(Duration::ZERO, Duration::from_millis(30));
        let (n, p99, max) = m.lateness_summary();
        assert_eq!(n, 100);
        assert_eq!(p99, Some(Duration::from_millis(1)));
        assert_eq!(max, Duration::from_millis(30));
    }
}
