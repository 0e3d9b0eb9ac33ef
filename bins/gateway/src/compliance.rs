//! The TSO's compliance log in operation (issue #13 item 4), on a thread of its own.
//!
//! The control thread takes one [`OpSample`] after every step of the grid services (each EMS
//! cycle and each fast tick) and hands it over with a `try_send` into a bounded queue: a full
//! queue (a disk that hangs) drops the sample and counts it, and never delays a cycle. The
//! writer thread runs [`OperationRecorder`] (which samples become rows: 1 Hz, 10 Hz from 10 s
//! before to 15 min after an FFR activation) and [`SvkFiles`] (daily files, kept
//! `retention_days`), and publishes its state for `GET /api/v1/grid-services`.
//!
//! Timestamps are the wall clock at the first sample plus the control loop's monotonic time
//! since, so rows are evenly spaced and in order even if the wall clock is stepped (set the
//! gateway's clock by NTP before it starts). On the simulated site they advance with
//! simulated time.

use crate::config::ComplianceWiring;
use crate::live::LiveError;
use ems_api::grid_services::{ComplianceLogLive, SanityLive};
use ems_core::Millis;
use ems_grid::prequal::{OpSample, OperationRecorder, SvkFiles, SvkService};
use jiff::Timestamp;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};

/// Samples the queue holds: 20 s at a 10 ms fast tick.
const QUEUE: usize = 2048;

/// The control thread's side.
#[derive(Debug)]
pub(crate) struct ComplianceLog {
    tx: Option<SyncSender<OpSample>>,
    dropped: Arc<AtomicU64>,
    anchor: Option<i64>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Drop for ComplianceLog {
    /// Close the queue and wait for the writer to write the last 10 s it held.
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// The API's side: the writer's last published state.
#[derive(Debug)]
pub(crate) struct ComplianceStatus(Mutex<ComplianceLogLive>);

impl ComplianceStatus {
    /// The state now.
    pub(crate) fn get(&self) -> ComplianceLogLive {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

fn ms_to_timestamp(ms: i64) -> Option<Timestamp> {
    Timestamp::from_millisecond(ms).ok()
}

impl ComplianceLog {
    /// Open the directory (pruning files past the retention) and start the writer thread.
    /// `services`: the sold services, the log's columns in this order; `ler`: `Cap_*` columns.
    ///
    /// # Errors
    /// [`LiveError::Devices`] naming the directory when it cannot be created or read, or the
    /// thread cannot start.
    pub(crate) fn start(
        w: &ComplianceWiring,
        services: &[SvkService],
        ler: bool,
    ) -> Result<(Self, Arc<ComplianceStatus>), LiveError> {
        let dir = w.dir.display().to_string();
        let fail =
            |e: std::io::Error| LiveError::Devices(format!("grid_services.compliance_log.dir {dir}: {e}"));
        let files = SvkFiles::open(&w.dir, services, ler, w.retention_days).map_err(fail)?;
        let now_ms = Timestamp::now().as_millisecond();
        let pruned = files.prune(now_ms).map_err(fail)?;
        if pruned > 0 {
            tracing::info!(target: "audit", "compliance log: {pruned} file(s) older than {} days deleted", w.retention_days);
        }
        let status = Arc::new(ComplianceStatus(Mutex::new(ComplianceLogLive {
            dir: dir.clone(),
            file: None,
            retention_days: w.retention_days,
            rows_written: 0,
            samples_dropped: 0,
            ffr_activations: 0,
            high_rate_until: None,
            sanity: SanityLive {
                tolerance_w: w.tolerance_w,
                windows: 0,
                windows_over: 0,
                worst_w: 0.0,
                last_over_at: None,
                last_over_w: None,
            },
            error: None,
        })));
        let (tx, rx) = sync_channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            rx,
            files,
            recorder: OperationRecorder::new(w.tolerance_w),
            status: status.clone(),
            dropped: dropped.clone(),
            rows: Vec::new(),
            last: None,
            errors: 0,
        };
        let writer = std::thread::Builder::new()
            .name("svk-log".into())
            .spawn(move || writer.run())
            .map_err(|e| LiveError::Devices(format!("compliance log thread: {e}")))?;
        println!(
            "compliance log: {dir} (1 Hz; 10 Hz around FFR activations; kept {} days)",
            w.retention_days
        );
        Ok((Self { tx: Some(tx), dropped, anchor: None, writer: Some(writer) }, status))
    }

    /// The Unix time of control time `now` (the anchor is taken at the first call).
    pub(crate) fn unix_ms(&mut self, now: Millis) -> i64 {
        let mono = i64::try_from(now.get()).unwrap_or(i64::MAX);
        let anchor =
            *self.anchor.get_or_insert_with(|| Timestamp::now().as_millisecond().saturating_sub(mono));
        anchor.saturating_add(mono)
    }

    /// Hand one sample to the writer; never waits.
    pub(crate) fn record(&self, s: OpSample) {
        let sent = match &self.tx {
            Some(tx) => match tx.try_send(s) {
                Ok(()) => true,
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
            },
            None => false,
        };
        if !sent {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

struct Writer {
    rx: Receiver<OpSample>,
    files: SvkFiles,
    recorder: OperationRecorder,
    status: Arc<ComplianceStatus>,
    dropped: Arc<AtomicU64>,
    rows: Vec<OpSample>,
    last: Option<i64>,
    errors: u64,
}

impl Writer {
    fn run(mut self) {
        while let Ok(first) = self.rx.recv() {
            self.take(first);
            while let Ok(s) = self.rx.try_recv() {
                self.take(s);
            }
            let flushed = self.files.flush().map_err(|e| e.to_string());
            self.publish(flushed.err());
        }
        // The queue closed (shutdown): the samples still held are written too.
        self.rows.clear();
        self.recorder.finish(&mut self.rows);
        self.write_rows();
        let flushed = self.files.flush().map_err(|e| e.to_string());
        self.publish(flushed.err());
    }

    fn take(&mut self, s: OpSample) {
        self.rows.clear();
        self.last = Some(s.unix_ms);
        self.recorder.push(s, &mut self.rows);
        self.write_rows();
    }

    fn write_rows(&mut self) {
        for r in &self.rows {
            if let Err(e) = self.files.write(r) {
                self.errors = self.errors.saturating_add(1);
                // The first error and then every 1000th: a full disk must not flood the log.
                if self.errors % 1000 == 1 {
                    tracing::error!(target: "audit", "compliance log: row not written ({} so far): {e}", self.errors);
                }
                let mut g = self.status.0.lock().unwrap_or_else(PoisonError::into_inner);
                g.error = Some(e.to_string());
            }
        }
    }

    fn publish(&self, flush_error: Option<String>) {
        let last = self.last;
        let sanity = self.recorder.sanity();
        let mut g = self.status.0.lock().unwrap_or_else(PoisonError::into_inner);
        g.file = self.files.current().map(|p| p.display().to_string());
        g.rows_written = self.files.rows();
        g.samples_dropped = self.dropped.load(Ordering::Relaxed);
        g.ffr_activations = self.recorder.activations();
        g.high_rate_until = last.and_then(|t| self.recorder.high_rate_until(t)).and_then(ms_to_timestamp);
        g.sanity.windows = sanity.windows;
        g.sanity.windows_over = sanity.windows_over;
        g.sanity.worst_w = sanity.worst_w;
        g.sanity.last_over_at = sanity.last_over.and_then(|(t, _)| ms_to_timestamp(t));
        g.sanity.last_over_w = sanity.last_over.map(|(_, w)| w);
        if flush_error.is_some() {
            g.error = flush_error;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code
mod tests {
    use super::*;

    fn sample(unix_ms: i64) -> OpSample {
        OpSample {
            unix_ms,
            power_w: 0.0,
            frequency_hz: 50.0,
            services: [None; 4],
            nem: 0,
            aem: 0,
            pmin_w: 0.0,
            pmax_w: 0.0,
            cap_wh: None,
            ffr_active: false,
            requested_w: 0.0,
            checked: false,
        }
    }

    /// A writer that does not drain (a hung disk): the control thread's `record` returns at
    /// once and counts what it could not hand over.
    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let (tx, rx) = sync_channel(2);
        let log =
            ComplianceLog { tx: Some(tx), dropped: Arc::new(AtomicU64::new(0)), anchor: None, writer: None };
        for t in 0..5 {
            log.record(sample(t));
        }
        assert_eq!(log.dropped.load(Ordering::Relaxed), 3);
        assert_eq!(rx.try_iter().count(), 2);
    }

    #[test]
    fn timestamps_follow_control_time_from_the_first_sample() {
        let mut log =
            ComplianceLog { tx: None, dropped: Arc::new(AtomicU64::new(0)), anchor: None, writer: None };
        let a = log.unix_ms(Millis::new(5_000));
        let b = log.unix_ms(Millis::new(5_100));
        assert_eq!(b - a, 100);
        assert!((a - Timestamp::now().as_millisecond()).abs() < 60_000);
    }
}
