//! Write-behind queues in front of the audit log and the history store, so that a caller (the
//! control thread above all) never waits for SQLite's fsync.
//!
//! [`QueuedAudit`] and [`QueuedHistory`] each own one writer thread (`std::thread`, not a tokio
//! task: the control thread has no runtime, and a blocking fsync must not occupy a runtime
//! worker). Callers only take a short `Mutex` to push onto a `VecDeque` and notify a
//! `Condvar`; the lock is never held across a write to the inner store.
//!
//! # Audit: what may be dropped
//! One FIFO keeps every entry in the order it was appended, so the log is written in order.
//! - **Safety entries** ([`QueuedAudit::append_safety`], and [`AuditSink::append`]): state
//!   changes, E-stop, reset, refused commands. **Never dropped.** They are not bounded by the
//!   queue: their rate is bounded upstream (operator actions are rate-limited per token and per
//!   address, state changes by the state machine), and dropping one would lose the very record
//!   the audit log exists for. If the writer stalls, memory grows by a few hundred bytes per
//!   such entry; [`QueuedAudit::depth`] (exported as `ems_audit_queue_depth`) shows it.
//! - **Routine entries** ([`QueuedAudit::append_routine`]): telemetry-like records. At most
//!   `routine_capacity` wait; a further one is dropped and counted ([`QueuedAudit::dropped`]).
//!
//! # Shutdown
//! [`QueuedAudit::flush`] waits (bounded) until everything appended before the call is
//! written; dropping the queue drains it completely and joins the writer thread.
//!
//! # Sequence numbers
//! [`AuditSink::append`] on a `QueuedAudit` returns `Ok(0)`: the sequence number is assigned
//! by the inner sink when the writer gets to the entry. It is durable only after that, not
//! when `append` returns (the point of the queue). Reads ([`AuditSink::recent`],
//! [`AuditSink::query_audit`]) go to the inner sink and see entries once they are written.

use crate::metrics::Metrics;
use crate::ports::{AuditEntry, AuditPage, AuditQuery, AuditSink, HistoryPoint, HistoryStore, StoreError};
use jiff::{SignedDuration, Timestamp};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Default bound of waiting routine audit entries.
pub const DEFAULT_ROUTINE_CAPACITY: usize = 4096;

/// Default bound of waiting history samples (one sample = one `record` call).
pub const DEFAULT_HISTORY_CAPACITY: usize = 3600;

/// The queue shared between callers and the writer thread.
#[derive(Debug)]
struct Shared<T> {
    state: Mutex<QueueState<T>>,
    /// Signalled when an item arrives or shutdown is asked (writer waits on it).
    work: Condvar,
    /// Signalled when an item has been written (flush waits on it).
    done: Condvar,
    dropped: AtomicU64,
    failed: AtomicU64,
}

#[derive(Debug)]
struct QueueState<T> {
    items: VecDeque<T>,
    /// Items ever accepted / ever finished (written or failed); `flush` waits for the latter
    /// to reach the former.
    accepted: u64,
    finished: u64,
    shutdown: bool,
}

impl<T> Shared<T> {
    fn new() -> Self {
        Self {
            state: Mutex::new(QueueState {
                items: VecDeque::new(),
                accepted: 0,
                finished: 0,
                shutdown: false,
            }),
            work: Condvar::new(),
            done: Condvar::new(),
            dropped: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, QueueState<T>> {
        // The queue is plain data; a panic in another caller cannot leave it inconsistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wait until everything accepted before the call is finished, at most `timeout`; whether
    /// it was.
    fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock();
        let target = st.accepted;
        while st.finished < target {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            st = self.done.wait_timeout(st, left).unwrap_or_else(PoisonError::into_inner).0;
        }
        true
    }

    /// The writer loop: take one item at a time (the lock is released while writing) until
    /// shutdown is asked and the queue is empty.
    fn run(&self, mut write: impl FnMut(T) -> Result<(), StoreError>, what: &str) {
        loop {
            let item = {
                let mut st = self.lock();
                loop {
                    if let Some(item) = st.items.pop_front() {
                        break item;
                    }
                    if st.shutdown {
                        return;
                    }
                    st = self.work.wait(st).unwrap_or_else(PoisonError::into_inner);
                }
            };
            if let Err(e) = write(item) {
                self.failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "{what}: write failed, entry lost");
            }
            let mut st = self.lock();
            st.finished = st.finished.saturating_add(1);
            drop(st);
            self.done.notify_all();
        }
    }

    fn stop(&self, thread: &mut Option<JoinHandle<()>>) {
        self.lock().shutdown = true;
        self.work.notify_all();
        if let Some(t) = thread.take() {
            if t.join().is_err() {
                tracing::error!("queue writer thread panicked");
            }
        }
    }
}

/// An audit entry waiting, with its class.
#[derive(Debug)]
struct Queued {
    entry: AuditEntry,
    safety: bool,
}

/// The audit log behind a write-behind queue (see the module docs).
#[derive(Debug)]
pub struct QueuedAudit {
    inner: Arc<dyn AuditSink>,
    shared: Arc<Shared<Queued>>,
    routine_waiting: Arc<AtomicU64>,
    routine_capacity: usize,
    metrics: Option<Arc<Metrics>>,
    thread: Option<JoinHandle<()>>,
}

impl QueuedAudit {
    /// Start the writer thread in front of `inner`, keeping at most `routine_capacity`
    /// routine entries waiting. With `metrics`, `ems_audit_queue_depth` and
    /// `ems_audit_dropped_total` follow the queue.
    ///
    /// # Errors
    /// The OS could not start the thread.
    pub fn new(
        inner: Arc<dyn AuditSink>,
        routine_capacity: usize,
        metrics: Option<Arc<Metrics>>,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared::<Queued>::new());
        let routine_waiting = Arc::new(AtomicU64::new(0));
        let thread = {
            let (shared, inner, waiting, metrics) =
                (shared.clone(), inner.clone(), routine_waiting.clone(), metrics.clone());
            std::thread::Builder::new().name("audit-writer".into()).spawn(move || {
                shared.run(
                    |q: Queued| {
                        if !q.safety {
                            waiting.fetch_sub(1, Ordering::Relaxed);
                        }
                        let r = inner.append(&q.entry).map(|_| ());
                        if let Some(m) = &metrics {
                            m.set_audit_queue_depth(len(&shared));
                        }
                        r
                    },
                    "audit queue",
                );
            })?
        };
        Ok(Self { inner, shared, routine_waiting, routine_capacity, metrics, thread: Some(thread) })
    }

    fn push(&self, entry: &AuditEntry, safety: bool) {
        let mut st = self.shared.lock();
        st.items.push_back(Queued { entry: entry.clone(), safety });
        st.accepted = st.accepted.saturating_add(1);
        let depth = u64::try_from(st.items.len()).unwrap_or(u64::MAX);
        drop(st);
        self.shared.work.notify_one();
        if let Some(m) = &self.metrics {
            m.set_audit_queue_depth(depth);
        }
    }

    /// Queue a safety entry (state change, E-stop, reset, refused command). Never dropped,
    /// never blocks on the store.
    pub fn append_safety(&self, entry: &AuditEntry) {
        self.push(entry, true);
    }

    /// Queue a routine entry; `false` (and counted in [`QueuedAudit::dropped`]) when
    /// `routine_capacity` routine entries are already waiting.
    pub fn append_routine(&self, entry: &AuditEntry) -> bool {
        let cap = u64::try_from(self.routine_capacity).unwrap_or(u64::MAX);
        let reserved = self
            .routine_waiting
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < cap).then(|| n.saturating_add(1)))
            .is_ok();
        if !reserved {
            let d = self.shared.dropped.fetch_add(1, Ordering::Relaxed).saturating_add(1);
            if let Some(m) = &self.metrics {
                m.set_audit_dropped(d);
            }
            return false;
        }
        self.push(entry, false);
        true
    }

    /// Entries waiting to be written.
    #[must_use]
    pub fn depth(&self) -> u64 {
        len(&self.shared)
    }

    /// Routine entries dropped because the queue was full.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Entries the inner sink refused (logged; lost).
    #[must_use]
    pub fn failed(&self) -> u64 {
        self.shared.failed.load(Ordering::Relaxed)
    }

    /// Wait until every entry appended before this call is written (or failed), at most
    /// `timeout`; whether it was.
    pub fn flush(&self, timeout: Duration) -> bool {
        self.shared.flush(timeout)
    }
}

fn len<T>(shared: &Shared<T>) -> u64 {
    u64::try_from(shared.lock().items.len()).unwrap_or(u64::MAX)
}

impl Drop for QueuedAudit {
    /// Drains the queue completely, then joins the writer.
    fn drop(&mut self) {
        self.shared.stop(&mut self.thread);
    }
}

impl AuditSink for QueuedAudit {
    /// Queues `entry` as a safety entry and returns `Ok(0)` (see the module docs).
    fn append(&self, entry: &AuditEntry) -> Result<u64, StoreError> {
        self.append_safety(entry);
        Ok(0)
    }

    fn recent(&self, n: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.inner.recent(n)
    }

    fn query_audit(&self, q: &AuditQuery) -> Result<AuditPage, StoreError> {
        self.inner.query_audit(q)
    }
}

/// One `record` call waiting.
#[derive(Debug)]
struct Sample {
    at: Timestamp,
    values: Vec<(String, f64)>,
}

/// The history store behind a bounded write-behind queue: [`HistoryStore::record`] never
/// waits for the store. When `capacity` samples are waiting, the **oldest** is dropped and
/// counted (the newest telemetry is the most useful after a stall).
#[derive(Debug)]
pub struct QueuedHistory {
    inner: Arc<dyn HistoryStore>,
    shared: Arc<Shared<Sample>>,
    capacity: usize,
    thread: Option<JoinHandle<()>>,
}

impl QueuedHistory {
    /// Start the writer thread in front of `inner`, keeping at most `capacity` (≥ 1) samples.
    ///
    /// # Errors
    /// The OS could not start the thread.
    pub fn new(inner: Arc<dyn HistoryStore>, capacity: usize) -> std::io::Result<Self> {
        let shared = Arc::new(Shared::<Sample>::new());
        let thread = {
            let (shared, inner) = (shared.clone(), inner.clone());
            std::thread::Builder::new().name("history-writer".into()).spawn(move || {
                shared.run(
                    |s: Sample| {
                        let values: Vec<(&str, f64)> =
                            s.values.iter().map(|(c, v)| (c.as_str(), *v)).collect();
                        inner.record(s.at, &values)
                    },
                    "history queue",
                );
            })?
        };
        Ok(Self { inner, shared, capacity: capacity.max(1), thread: Some(thread) })
    }

    /// Samples waiting to be written.
    #[must_use]
    pub fn depth(&self) -> u64 {
        len(&self.shared)
    }

    /// Samples dropped because the queue was full.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Wait until every sample recorded before this call is written, at most `timeout`;
    /// whether it was.
    pub fn flush(&self, timeout: Duration) -> bool {
        self.shared.flush(timeout)
    }
}

impl Drop for QueuedHistory {
    /// Drains the queue completely, then joins the writer.
    fn drop(&mut self) {
        self.shared.stop(&mut self.thread);
    }
}

impl HistoryStore for QueuedHistory {
    /// Queues the sample; always `Ok` (the store's errors are logged by the writer).
    fn record(&self, at: Timestamp, values: &[(&str, f64)]) -> Result<(), StoreError> {
        let sample = Sample { at, values: values.iter().map(|(c, v)| ((*c).to_owned(), *v)).collect() };
        let mut st = self.shared.lock();
        if st.items.len() >= self.capacity && st.items.pop_front().is_some() {
            // The dropped one counts as finished, or a flush would wait for it forever.
            st.finished = st.finished.saturating_add(1);
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
        st.items.push_back(sample);
        st.accepted = st.accepted.saturating_add(1);
        drop(st);
        self.shared.work.notify_one();
        Ok(())
    }

    fn query(
        &self,
        from: Timestamp,
        to: Timestamp,
        channels: &[&str],
        resolution: SignedDuration,
    ) -> Result<Vec<HistoryPoint>, StoreError> {
        self.inner.query(from, to, channels, resolution)
    }
}

#[cfg(test)]
mod tests {
    // Test code: a failed unwrap or panic is a failed test with its message.
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::ports::{MemoryStore, Outcome};

    /// A sink that sleeps on every write.
    struct Slow {
        inner: MemoryStore,
        delay: Duration,
    }

    impl AuditSink for Slow {
        fn append(&self, entry: &AuditEntry) -> Result<u64, StoreError> {
            std::thread::sleep(self.delay);
            self.inner.append(entry)
        }
        fn recent(&self, n: usize) -> Result<Vec<AuditEntry>, StoreError> {
            self.inner.recent(n)
        }
        fn query_audit(&self, q: &AuditQuery) -> Result<AuditPage, StoreError> {
            self.inner.query_audit(q)
        }
    }

    impl HistoryStore for Slow {
        fn record(&self, at: Timestamp, values: &[(&str, f64)]) -> Result<(), StoreError> {
            std::thread::sleep(self.delay);
            self.inner.record(at, values)
        }
        fn query(
            &self,
            from: Timestamp,
            to: Timestamp,
            channels: &[&str],
            resolution: SignedDuration,
        ) -> Result<Vec<HistoryPoint>, StoreError> {
            self.inner.query(from, to, channels, resolution)
        }
    }

    fn entry(action: &str) -> AuditEntry {
        AuditEntry {
            seq: 0,
            at: "2026-01-01T00:00:00Z".parse().unwrap(),
            actor: "t".into(),
            action: action.into(),
            outcome: Outcome::Ok,
            detail: String::new(),
        }
    }

    #[test]
    fn slow_sink_does_not_block_and_full_queue_drops_only_routine() {
        let slow = Arc::new(Slow { inner: MemoryStore::default(), delay: Duration::from_millis(20) });
        let metrics = Arc::new(Metrics::new());
        let q = QueuedAudit::new(slow.clone(), 3, Some(metrics.clone())).unwrap();
        let t = Instant::now();
        let mut accepted = 0;
        for i in 0..10 {
            if q.append_routine(&entry(&format!("r{i}"))) {
                accepted += 1;
            }
            q.append_safety(&entry(&format!("s{i}")));
        }
        // 20 appends against a 20 ms sink: the caller did not wait for it.
        assert!(t.elapsed() < Duration::from_millis(100), "{:?}", t.elapsed());
        assert!((3..10).contains(&accepted), "{accepted}");
        assert_eq!(q.dropped(), 10 - accepted);
        assert!(q.depth() > 0);
        assert!(q.flush(Duration::from_secs(10)));
        assert_eq!(q.depth(), 0);
        let written: Vec<String> = slow.recent(100).unwrap().into_iter().rev().map(|e| e.action).collect();
        // Every safety entry, in order, interleaved in the order appended.
        let safety: Vec<&String> = written.iter().filter(|a| a.starts_with('s')).collect();
        assert_eq!(safety.len(), 10);
        for (i, s) in safety.iter().enumerate() {
            assert_eq!(**s, format!("s{i}"));
        }
        assert_eq!(written.len(), 10 + usize::try_from(accepted).unwrap());
        assert_eq!(written[0], "r0");
        assert_eq!(written[1], "s0");
        assert!(metrics.render().contains(&format!("ems_audit_dropped_total {}", 10 - accepted)));
    }

    #[test]
    fn drop_drains_everything() {
        let slow = Arc::new(Slow { inner: MemoryStore::default(), delay: Duration::from_millis(2) });
        {
            let q = QueuedAudit::new(slow.clone(), 100, None).unwrap();
            for i in 0..30 {
                q.append(&entry(&format!("e{i}"))).unwrap();
            }
        }
        let all = slow.recent(100).unwrap();
        assert_eq!(all.len(), 30);
        assert_eq!(all[0].action, "e29");
    }

    #[test]
    fn history_never_blocks_and_drops_oldest() {
        let slow = Arc::new(Slow { inner: MemoryStore::default(), delay: Duration::from_millis(30) });
        let q = QueuedHistory::new(slow.clone(), 2).unwrap();
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let start = Instant::now();
        for i in 0..10 {
            let at = t0.checked_add(SignedDuration::from_secs(i)).unwrap();
            q.record(at, &[("_sum/EssSoc", f64::from(i32::try_from(i).unwrap()))]).unwrap();
        }
        assert!(start.elapsed() < Duration::from_millis(100));
        assert!(q.dropped() >= 6, "{}", q.dropped());
        assert!(q.flush(Duration::from_secs(5)));
        let pts = q
            .query(
                t0,
                t0.checked_add(SignedDuration::from_secs(60)).unwrap(),
                &["_sum/EssSoc"],
                SignedDuration::ZERO,
            )
            .unwrap();
        // The newest sample always survives.
        assert_eq!(pts.last().map(|p| p.value), Some(9.0));
        assert_eq!(pts.len() as u64 + q.dropped(), 10);
    }
}
