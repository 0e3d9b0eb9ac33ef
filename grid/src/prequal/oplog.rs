//! The compliance log **in operation** (issue #13 item 4): the TSO's CSV ([`super::svk`]) at
//! 1 Hz, at 10 Hz from 10 s before to 15 min after an FFR activation, one file per UTC day,
//! kept [`MIN_RETENTION_DAYS`] days, with the sanity check "active power minus the activated
//! services stays at the baseline" over 10 s windows.
//!
//! Two parts, both free of threads and clocks so that tests drive them by hand:
//!
//! * [`OperationRecorder`] decides which samples become rows. It is fed every sample the
//!   control thread produced (one per fast tick, 10–100 ms apart) and holds the last 10 s at
//!   100 ms resolution before it decides: a sample from 10 s before an FFR activation to
//!   15 min after it (a new activation extends the window) is written at 100 ms, any other one
//!   at 1 s. Rows therefore leave 10 s late and always in time order. It also keeps the sanity
//!   check.
//! * [`SvkFiles`] writes the rows into `DIR/svk_YYYYMMDDThhmmss.csv` (the time of the file's
//!   first row), a new file at every UTC midnight and at every start (a restart never appends
//!   to a file whose columns may differ), and deletes files whose day is older than the
//!   retention.
//!
//! The gateway runs both on a writer thread of their own, fed through a bounded queue, so the
//! control thread never waits for a disk (`bins/gateway/src/compliance.rs`).

use super::svk::{format_datetime, SvkLogWriter, SvkRow, SvkService, SvkServiceRow};
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};

/// Row period in normal operation (ms): ≥ 1 Hz.
pub const OPERATION_PERIOD_MS: i64 = 1000;
/// Row period around an FFR activation (ms): 10 Hz.
pub const HIGH_RATE_PERIOD_MS: i64 = 100;
/// How far before an FFR activation the high-rate rows reach (ms).
pub const PRE_TRIGGER_MS: i64 = 10_000;
/// How long after an FFR activation the high-rate rows last (ms).
pub const POST_TRIGGER_MS: i64 = 15 * 60_000;
/// The sanity check's window (ms): long enough to average out the unit's own dynamics.
pub const SANITY_WINDOW_MS: i64 = 10_000;
/// The TSO's retention: the log is kept at least this many days.
pub const MIN_RETENTION_DAYS: u16 = 14;
const DAY_MS: i64 = 86_400_000;

const fn slot(t: i64, period: i64) -> i64 {
    t.div_euclid(period)
}

/// One sample of the running site, as the control thread takes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpSample {
    /// Milliseconds since the Unix epoch (UTC).
    pub unix_ms: i64,
    /// `InsAcPow`: the measured AC power (W, `+` discharge); `NaN` when not measured.
    pub power_w: f64,
    /// `GridFreq` (Hz); `NaN` when the frequency is stale or invalid (written empty).
    pub frequency_hz: f64,
    /// Per service, in [`SvkService::ALL`] order (`None`: not configured, no columns).
    pub services: [Option<SvkServiceRow>; 4],
    /// `NEM`: −1 / 0 / +1.
    pub nem: i8,
    /// `AEM`: −1 / 0 / +1.
    pub aem: i8,
    /// `Pmin` (W): the envelope's charge limit, negative.
    pub pmin_w: f64,
    /// `Pmax` (W): the envelope's discharge limit.
    pub pmax_w: f64,
    /// `Cap_Up`, `Cap_Down` (Wh), for a limited energy reservoir.
    pub cap_wh: Option<(f64, f64)>,
    /// FFR is activated in this sample (its rising edge triggers the high-rate window).
    pub ffr_active: bool,
    /// The set-point arbitration asked for, services included (W, `+` discharge): the power
    /// the unit should deliver. The sanity check's residual is `InsAcPow − Σ Activated_* −
    /// (requested − Σ Activated_*)`.
    pub requested_w: f64,
    /// The sample counts for the sanity check: the EMS is RUNNING and at least one service is
    /// committed.
    pub checked: bool,
}

/// The sanity check's state.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Sanity {
    /// Windows evaluated (at least half of their samples checked).
    pub windows: u64,
    /// Windows whose mean |residual| exceeded the tolerance.
    pub windows_over: u64,
    /// The largest mean |residual| of a window (W).
    pub worst_w: f64,
    /// The last window over the tolerance: its start (Unix ms) and mean residual (W).
    pub last_over: Option<(i64, f64)>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Window {
    index: i64,
    sum: f64,
    checked: u32,
    samples: u32,
}

/// Decides which samples become rows, and keeps the sanity check.
#[derive(Debug, Clone)]
pub struct OperationRecorder {
    /// The last 10 s, one sample per 100 ms slot, not yet decided.
    pending: VecDeque<OpSample>,
    last_sample: Option<i64>,
    last_written: Option<i64>,
    /// The 10 Hz window: from 10 s before the first activation to 15 min after the last.
    high: Option<(i64, i64)>,
    ffr_was_active: bool,
    activations: u64,
    out_of_order: u64,
    tolerance_w: f64,
    window: Window,
    sanity: Sanity,
}

impl OperationRecorder {
    /// A recorder whose sanity check flags a 10 s window whose mean residual exceeds
    /// `tolerance_w` (W).
    #[must_use]
    pub fn new(tolerance_w: f64) -> Self {
        Self {
            pending: VecDeque::new(),
            last_sample: None,
            last_written: None,
            high: None,
            ffr_was_active: false,
            activations: 0,
            out_of_order: 0,
            tolerance_w: tolerance_w.abs(),
            window: Window { index: i64::MIN, ..Window::default() },
            sanity: Sanity::default(),
        }
    }

    /// Take one sample; push the rows it releases (in time order) onto `rows`. A sample not
    /// later than the previous one is ignored (and counted).
    ///
    /// Rows leave with a delay of [`PRE_TRIGGER_MS`]: whether a sample is written at 10 Hz
    /// depends on an FFR activation up to 10 s after it, and a file is written in time order.
    pub fn push(&mut self, s: OpSample, rows: &mut Vec<OpSample>) {
        if self.last_sample.is_some_and(|l| s.unix_ms <= l) {
            self.out_of_order = self.out_of_order.saturating_add(1);
            return;
        }
        self.last_sample = Some(s.unix_ms);
        self.check(&s);
        if s.ffr_active && !self.ffr_was_active {
            self.activations = self.activations.saturating_add(1);
            let from = s.unix_ms.saturating_sub(PRE_TRIGGER_MS);
            let until = s.unix_ms.saturating_add(POST_TRIGGER_MS);
            // Every sample before `from` has left already: an older window that ends before it
            // has nothing more to decide.
            self.high = Some(match self.high {
                Some((f, u)) if u >= from => (f, until),
                _ => (from, until),
            });
        }
        self.ffr_was_active = s.ffr_active;
        if self
            .pending
            .back()
            .is_none_or(|b| slot(b.unix_ms, HIGH_RATE_PERIOD_MS) < slot(s.unix_ms, HIGH_RATE_PERIOD_MS))
        {
            self.pending.push_back(s);
        }
        let oldest = s.unix_ms.saturating_sub(PRE_TRIGGER_MS);
        while let Some(f) = self.pending.front().copied().filter(|f| f.unix_ms < oldest) {
            self.pending.pop_front();
            self.release(f, rows);
        }
    }

    /// Release every sample still held (at shutdown).
    pub fn finish(&mut self, rows: &mut Vec<OpSample>) {
        while let Some(f) = self.pending.pop_front() {
            self.release(f, rows);
        }
    }

    fn release(&mut self, f: OpSample, rows: &mut Vec<OpSample>) {
        let high = self.high.is_some_and(|(from, until)| (from..=until).contains(&f.unix_ms));
        let period = if high { HIGH_RATE_PERIOD_MS } else { OPERATION_PERIOD_MS };
        if self.last_written.is_none_or(|l| slot(l, period) < slot(f.unix_ms, period)) {
            rows.push(f);
            self.last_written = Some(f.unix_ms);
        }
    }

    fn check(&mut self, s: &OpSample) {
        let index = s.unix_ms.div_euclid(SANITY_WINDOW_MS);
        if index != self.window.index {
            self.close_window();
            self.window = Window { index, ..Window::default() };
        }
        self.window.samples = self.window.samples.saturating_add(1);
        // The residual: what the unit delivers beyond the baseline and the activated
        // services. `InsAcPow − Σ Activated − baseline` with `baseline = requested − Σ
        // Activated` is `InsAcPow − requested`.
        let residual = s.power_w - s.requested_w;
        if s.checked && residual.is_finite() {
            self.window.checked = self.window.checked.saturating_add(1);
            self.window.sum += residual;
        }
    }

    fn close_window(&mut self) {
        let w = self.window;
        if w.checked == 0 || w.checked.saturating_mul(2) < w.samples {
            return;
        }
        let mean = w.sum / f64::from(w.checked);
        self.sanity.windows = self.sanity.windows.saturating_add(1);
        self.sanity.worst_w = self.sanity.worst_w.max(mean.abs());
        if mean.abs() > self.tolerance_w {
            self.sanity.windows_over = self.sanity.windows_over.saturating_add(1);
            self.sanity.last_over = Some((w.index.saturating_mul(SANITY_WINDOW_MS), mean));
        }
    }

    /// The sanity check over the windows closed so far.
    #[must_use]
    pub const fn sanity(&self) -> Sanity {
        self.sanity
    }

    /// The end of the current high-rate window (Unix ms), if one is open at `unix_ms`.
    #[must_use]
    pub fn high_rate_until(&self, unix_ms: i64) -> Option<i64> {
        self.high.map(|(_, u)| u).filter(|u| unix_ms <= *u)
    }

    /// FFR activations seen.
    #[must_use]
    pub const fn activations(&self) -> u64 {
        self.activations
    }

    /// Samples ignored because they were not later than the previous one.
    #[must_use]
    pub const fn out_of_order(&self) -> u64 {
        self.out_of_order
    }
}

/// The UTC day (`YYYYMMDD`) of `unix_ms`.
fn day_of(unix_ms: i64) -> String {
    let s = format_datetime(unix_ms);
    s.get(..8).unwrap_or(&s).to_owned()
}

struct Current {
    day: String,
    path: PathBuf,
    log: SvkLogWriter<BufWriter<File>>,
}

impl core::fmt::Debug for Current {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Current").field("day", &self.day).field("path", &self.path).finish_non_exhaustive()
    }
}

/// The log files of one directory.
#[derive(Debug)]
pub struct SvkFiles {
    dir: PathBuf,
    services: Vec<SvkService>,
    ler: bool,
    retention_days: u16,
    current: Option<Current>,
    rows: u64,
}

/// A file name of this log (`svk_YYYYMMDDThhmmss.csv`) and its day.
fn file_day(name: &str) -> Option<&str> {
    let rest = name.strip_prefix("svk_")?.strip_suffix(".csv")?;
    let day = rest.get(..8)?;
    (rest.len() >= 8 && day.bytes().all(|b| b.is_ascii_digit())).then_some(day)
}

impl SvkFiles {
    /// The log in `dir` (created if missing) with the columns of `services` (in this order;
    /// `Cap_*` when `ler`), keeping `retention_days` (at least [`MIN_RETENTION_DAYS`]).
    ///
    /// # Errors
    /// `InvalidInput` naming the value when the retention is shorter than the TSO's; the
    /// directory's I/O error.
    pub fn open(dir: &Path, services: &[SvkService], ler: bool, retention_days: u16) -> io::Result<Self> {
        if retention_days < MIN_RETENTION_DAYS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("retention_days = {retention_days}: the TSO requires at least {MIN_RETENTION_DAYS}"),
            ));
        }
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            services: services.to_vec(),
            ler,
            retention_days,
            current: None,
            rows: 0,
        })
    }

    /// Write one row, starting a new file at the first row and at every UTC midnight (and
    /// then deleting files past the retention).
    ///
    /// # Errors
    /// The file's I/O error.
    pub fn write(&mut self, s: &OpSample) -> io::Result<()> {
        let day = day_of(s.unix_ms);
        if self.current.as_ref().is_none_or(|c| c.day != day) {
            if let Some(c) = self.current.take() {
                c.log.finish()?;
            }
            let stamp = format_datetime(s.unix_ms);
            let path = self.dir.join(format!("svk_{}.csv", stamp.get(..15).unwrap_or(&stamp)));
            let file = BufWriter::new(File::create(&path)?);
            let log = SvkLogWriter::new(file, &self.services, self.ler)?;
            self.current = Some(Current { day, path, log });
            self.prune(s.unix_ms)?;
        }
        let services: Vec<SvkServiceRow> = self
            .services
            .iter()
            .map(|k| {
                s.services.get(k.index()).copied().flatten().unwrap_or(SvkServiceRow {
                    available: false,
                    activated_w: 0.0,
                    reserve_w: 0.0,
                })
            })
            .collect();
        let row = SvkRow {
            unix_ms: s.unix_ms,
            power_w: s.power_w,
            frequency_hz: s.frequency_hz,
            services: &services,
            nem: s.nem,
            aem: s.aem,
            pmin_w: s.pmin_w,
            pmax_w: s.pmax_w,
            cap_wh: s.cap_wh,
        };
        if let Some(c) = self.current.as_mut() {
            c.log.write(&row)?;
            self.rows = self.rows.saturating_add(1);
        }
        Ok(())
    }

    /// Flush the current file.
    ///
    /// # Errors
    /// The file's I/O error.
    pub fn flush(&mut self) -> io::Result<()> {
        match self.current.as_mut() {
            Some(c) => c.log.flush(),
            None => Ok(()),
        }
    }

    /// Delete the files of this log whose UTC day is more than the retention before the day of
    /// `unix_ms`; how many.
    ///
    /// # Errors
    /// The directory's I/O error (a file that cannot be deleted is one).
    pub fn prune(&self, unix_ms: i64) -> io::Result<usize> {
        let cutoff = day_of(unix_ms.saturating_sub(i64::from(self.retention_days).saturating_mul(DAY_MS)));
        let mut deleted = 0_usize;
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(day) = name.to_str().and_then(file_day) else { continue };
            if day < cutoff.as_str() {
                std::fs::remove_file(entry.path())?;
                deleted = deleted.saturating_add(1);
            }
        }
        Ok(deleted)
    }

    /// The file rows go to now.
    #[must_use]
    pub fn current(&self) -> Option<&Path> {
        self.current.as_ref().map(|c| c.path.as_path())
    }

    /// Rows written since [`Self::open`].
    #[must_use]
    pub const fn rows(&self) -> u64 {
        self.rows
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
mod tests {
    use super::*;

    const T0: i64 = 1_764_936_000_000; // 2025-12-05T12:00:00Z

    fn sample(t: i64, ffr: bool) -> OpSample {
        OpSample {
            unix_ms: t,
            power_w: 1000.0,
            frequency_hz: 50.0,
            services: [
                None,
                None,
                None,
                Some(SvkServiceRow {
                    available: true,
                    activated_w: if ffr { 1000.0 } else { 0.0 },
                    reserve_w: 1000.0,
                }),
            ],
            nem: 0,
            aem: 0,
            pmin_w: -5000.0,
            pmax_w: 5000.0,
            cap_wh: Some((1000.0, 2000.0)),
            ffr_active: ffr,
            requested_w: 1000.0,
            checked: true,
        }
    }

    /// Feed `ms` of 50 ms samples from `from`, FFR active on `[on, off)`; the rows' times
    /// (with the held ones when `last`).
    fn feed(r: &mut OperationRecorder, from: i64, ms: i64, ffr: Option<(i64, i64)>, last: bool) -> Vec<i64> {
        let mut rows = Vec::new();
        let mut t = from;
        while t < from + ms {
            let active = ffr.is_some_and(|(on, off)| t >= on && t < off);
            r.push(sample(t, active), &mut rows);
            t += 50;
        }
        if last {
            r.finish(&mut rows);
        }
        rows.iter().map(|s| s.unix_ms).collect()
    }

    #[test]
    fn one_row_per_second_in_operation() {
        let mut r = OperationRecorder::new(100.0);
        let rows = feed(&mut r, T0, 60_000, None, true);
        assert_eq!(rows.len(), 60);
        assert!(rows.windows(2).all(|w| w[1] - w[0] == 1000), "{rows:?}");
    }

    #[test]
    fn ten_hz_from_ten_seconds_before_to_fifteen_minutes_after_an_ffr_activation() {
        let mut r = OperationRecorder::new(100.0);
        let trigger = T0 + 120_000;
        let rows = feed(&mut r, T0, 30 * 60_000, Some((trigger, trigger + 30_000)), true);
        let before: Vec<_> = rows.iter().filter(|t| **t < trigger - PRE_TRIGGER_MS).collect();
        assert!(before.windows(2).all(|w| w[1] - w[0] == 1000), "1 Hz before the window");
        let high: Vec<i64> = rows
            .iter()
            .copied()
            .filter(|t| *t >= trigger - PRE_TRIGGER_MS && *t <= trigger + POST_TRIGGER_MS)
            .collect();
        assert!(high.windows(2).all(|w| w[1] - w[0] == 100), "100 ms through the window");
        assert_eq!(high.first(), Some(&(trigger - PRE_TRIGGER_MS)));
        assert_eq!(high.last(), Some(&(trigger + POST_TRIGGER_MS)));
        let after: Vec<_> = rows.iter().filter(|t| **t > trigger + POST_TRIGGER_MS).collect();
        assert!(after.windows(2).all(|w| w[1] - w[0] == 1000), "back to 1 Hz after");
        assert!(rows.windows(2).all(|w| w[1] > w[0]), "strictly in time order, no duplicate");
        assert_eq!(r.activations(), 1);
    }

    #[test]
    fn a_second_activation_extends_the_high_rate_window() {
        let mut r = OperationRecorder::new(100.0);
        let t1 = T0 + 20_000;
        let mut rows = feed(&mut r, T0, 400_000, Some((t1, t1 + 10_000)), false);
        let t2 = T0 + 400_000 + 100_000;
        rows.extend(feed(&mut r, T0 + 400_000, 20 * 60_000, Some((t2, t2 + 10_000)), true));
        let high_end = t2 + POST_TRIGGER_MS;
        let high: Vec<i64> =
            rows.iter().copied().filter(|t| *t >= t1 - PRE_TRIGGER_MS && *t <= high_end).collect();
        assert!(high.windows(2).all(|w| w[1] - w[0] == 100));
        assert_eq!(r.activations(), 2);
    }

    #[test]
    fn samples_out_of_order_are_ignored() {
        let mut r = OperationRecorder::new(100.0);
        let mut rows = Vec::new();
        r.push(sample(T0, false), &mut rows);
        r.push(sample(T0 - 1, false), &mut rows);
        r.push(sample(T0, false), &mut rows);
        r.finish(&mut rows);
        assert_eq!(rows.len(), 1);
        assert_eq!(r.out_of_order(), 2);
    }

    #[test]
    fn the_sanity_check_flags_a_window_where_the_unit_does_not_deliver() {
        let mut r = OperationRecorder::new(100.0);
        let mut rows = Vec::new();
        for i in 0..600 {
            let t = T0 + i * 50;
            let mut s = sample(t, false);
            // 10–20 s: the unit delivers 300 W less than asked.
            if (10_000..20_000).contains(&(i * 50)) {
                s.power_w -= 300.0;
            }
            r.push(s, &mut rows);
        }
        let s = r.sanity();
        assert_eq!(s.windows, 1 + 1, "two closed windows (the third still open)");
        assert_eq!(s.windows_over, 1);
        assert!((s.worst_w - 300.0).abs() < 1e-9);
        assert_eq!(s.last_over, Some((T0 + 10_000, -300.0)));
    }

    #[test]
    fn unchecked_samples_do_not_count() {
        let mut r = OperationRecorder::new(100.0);
        let mut rows = Vec::new();
        for i in 0..400 {
            let mut s = sample(T0 + i * 50, false);
            s.power_w = 0.0;
            s.checked = false;
            r.push(s, &mut rows);
        }
        assert_eq!(r.sanity(), Sanity::default());
    }

    #[test]
    fn files_rotate_at_utc_midnight_with_crlf_and_old_days_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("svk_20251101T000000.csv");
        std::fs::write(&old, "x").unwrap();
        let kept = dir.path().join("svk_20251122T000000.csv");
        std::fs::write(&kept, "x").unwrap();
        let other = dir.path().join("notes.txt");
        std::fs::write(&other, "x").unwrap();
        let mut f = SvkFiles::open(dir.path(), &[SvkService::FcrN, SvkService::Ffr], true, 14).unwrap();
        let before_midnight = T0 + 12 * 3_600_000 - 1000; // 2025-12-05T23:59:59Z
        f.write(&sample(before_midnight, false)).unwrap();
        let first = f.current().unwrap().to_owned();
        assert!(first.ends_with("svk_20251205T235959.csv"), "{first:?}");
        f.write(&sample(before_midnight + 1000, true)).unwrap();
        let second = f.current().unwrap().to_owned();
        assert!(second.ends_with("svk_20251206T000000.csv"), "{second:?}");
        f.flush().unwrap();
        assert_eq!(f.rows(), 2);
        assert!(!old.exists(), "older than 14 days");
        assert!(kept.exists(), "exactly 14 days before 2025-12-06: kept");
        assert!(other.exists(), "not a log file");
        let text = std::fs::read_to_string(&second).unwrap();
        let mut lines = text.split("\r\n");
        assert_eq!(
            lines.next(),
            Some(
                "DateTime,InsAcPow,GridFreq,ContStatus_FCRN,Activated_FCRN,ResSize_FCRN,\
                 ContStatus_FFR,Activated_FFR,ResSize_FFR,NEM,AEM,Pmin,Pmax,Cap_Up,Cap_Down"
            )
        );
        assert_eq!(
            lines.next(),
            Some("20251206T000000.000,0.001000,50.0000,0,0.000000,0.000000,1,0.001000,0.001000,0,0,-0.005000,0.005000,0.001000,0.002000")
        );
        assert!(!text.replace("\r\n", "").contains('\n'), "CRLF only");
    }

    #[test]
    fn a_retention_below_the_tsos_is_refused_naming_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let e = SvkFiles::open(dir.path(), &[SvkService::FcrN], false, 7).unwrap_err();
        assert!(e.to_string().contains("retention_days = 7"), "{e}");
    }
}
