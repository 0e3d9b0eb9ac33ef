//! The compliance log in the TSO's CSV format: `DateTime` (`YYYYMMDDThhmmss.fff`, UTC),
//! `InsAcPow`, `GridFreq`, per service `ContStatus_*`, `Activated_*`, `ResSize_*`, then `NEM`,
//! `AEM`, `Pmin`, `Pmax`, and for a limited energy reservoir `Cap_Up`, `Cap_Down`; CRLF line
//! endings. Powers in MW, energies in MWh, frequency in Hz (see `docs/GRID.md`).
//!
//! [`SvkLogWriter`] writes rows to any [`std::io::Write`]; the test tool writes one row per
//! control cycle (20 Hz); [`super::oplog`] writes the operation log with it.

use std::io::{self, Write};

/// A service's column suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SvkService {
    /// `_FCRN`.
    FcrN,
    /// `_FCRDUp`.
    FcrDUp,
    /// `_FCRDDown`.
    FcrDDown,
    /// `_FFR`.
    Ffr,
}

impl SvkService {
    /// Every service, in column order.
    pub const ALL: [Self; 4] = [Self::FcrN, Self::FcrDUp, Self::FcrDDown, Self::Ffr];

    /// The position in [`Self::ALL`].
    #[must_use]
    pub const fn index(self) -> usize {
        match self {
            Self::FcrN => 0,
            Self::FcrDUp => 1,
            Self::FcrDDown => 2,
            Self::Ffr => 3,
        }
    }

    /// The suffix after the `_`.
    #[must_use]
    pub const fn suffix(self) -> &'static str {
        match self {
            Self::FcrN => "FCRN",
            Self::FcrDUp => "FCRDUp",
            Self::FcrDDown => "FCRDDown",
            Self::Ffr => "FFR",
        }
    }
}

/// One service's columns in a row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SvkServiceRow {
    /// `ContStatus_*`: 1 available and controlling, 0 not.
    pub available: bool,
    /// `Activated_*`: the activated power (W, `+` discharge).
    pub activated_w: f64,
    /// `ResSize_*`: the sold capacity (W).
    pub reserve_w: f64,
}

/// One row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SvkRow<'a> {
    /// Milliseconds since the Unix epoch (UTC).
    pub unix_ms: i64,
    /// `InsAcPow`: the measured AC power (W, `+` discharge).
    pub power_w: f64,
    /// `GridFreq` (Hz).
    pub frequency_hz: f64,
    /// The services, in the order given to [`SvkLogWriter::new`].
    pub services: &'a [SvkServiceRow],
    /// `NEM`: −1 / 0 / +1.
    pub nem: i8,
    /// `AEM`: −1 / 0 / +1.
    pub aem: i8,
    /// `Pmin` (W).
    pub pmin_w: f64,
    /// `Pmax` (W).
    pub pmax_w: f64,
    /// `Cap_Up`, `Cap_Down`: the reservoir's energy each way (Wh), for an LER.
    pub cap_wh: Option<(f64, f64)>,
}

/// Format `unix_ms` as `YYYYMMDDThhmmss.fff` (UTC, proleptic Gregorian).
// Civil-date arithmetic on a day count (|days| < 2^37 for any i64 ms): no overflow.
#[allow(clippy::arithmetic_side_effects)]
#[must_use]
pub fn format_datetime(unix_ms: i64) -> String {
    let days = unix_ms.div_euclid(86_400_000);
    let ms_of_day = unix_ms.rem_euclid(86_400_000);
    // Civil from days (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, rest) = (ms_of_day / 3_600_000, ms_of_day % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (s, ms) = (rest / 1000, rest % 1000);
    format!("{year:04}{month:02}{day:02}T{h:02}{m:02}{s:02}.{ms:03}")
}

/// Writes the compliance log.
#[derive(Debug)]
pub struct SvkLogWriter<W: Write> {
    out: W,
    services: usize,
    ler: bool,
}

fn mw(w: f64) -> f64 {
    w / 1e6
}

/// A value with `decimals`, or an empty cell when it is not finite (not measured).
fn cell(x: f64, decimals: usize) -> String {
    if x.is_finite() {
        format!("{x:.decimals$}")
    } else {
        String::new()
    }
}

/// The log's `NEM` and `AEM` codes of a service's reservoir view: NEM charging −1 /
/// discharging +1; AEM saving up (restoring energy for upward regulation) +1 / saving down −1.
#[must_use]
pub const fn nem_aem_codes(ler: &crate::status::LerStatus) -> (i8, i8) {
    use crate::status::{AemState, NemState};
    let nem = match ler.nem {
        NemState::Off => 0,
        NemState::Charging => -1,
        NemState::Discharging => 1,
    };
    let aem = match ler.aem {
        AemState::Off => 0,
        AemState::SavingUp => 1,
        AemState::SavingDown => -1,
    };
    (nem, aem)
}

impl<W: Write> SvkLogWriter<W> {
    /// A writer for `services` (in this column order), with `Cap_*` columns when `ler`; writes
    /// the header.
    ///
    /// # Errors
    /// The writer's I/O error.
    pub fn new(mut out: W, services: &[SvkService], ler: bool) -> io::Result<Self> {
        let mut header = String::from("DateTime,InsAcPow,GridFreq");
        for s in services {
            let x = s.suffix();
            header.push_str(&format!(",ContStatus_{x},Activated_{x},ResSize_{x}"));
        }
        header.push_str(",NEM,AEM,Pmin,Pmax");
        if ler {
            header.push_str(",Cap_Up,Cap_Down");
        }
        header.push_str("\r\n");
        out.write_all(header.as_bytes())?;
        Ok(Self { out, services: services.len(), ler })
    }

    /// One row. Missing service columns are written empty; `Cap_*` is empty without a value.
    ///
    /// # Errors
    /// The writer's I/O error.
    pub fn write(&mut self, row: &SvkRow<'_>) -> io::Result<()> {
        let mut line = format!(
            "{},{},{}",
            format_datetime(row.unix_ms),
            cell(mw(row.power_w), 6),
            cell(row.frequency_hz, 4)
        );
        for i in 0..self.services {
            match row.services.get(i) {
                Some(s) => line.push_str(&format!(
                    ",{},{:.6},{:.6}",
                    u8::from(s.available),
                    mw(s.activated_w),
                    mw(s.reserve_w)
                )),
                None => line.push_str(",,,"),
            }
        }
        line.push_str(&format!(",{},{},{:.6},{:.6}", row.nem, row.aem, mw(row.pmin_w), mw(row.pmax_w)));
        if self.ler {
            match row.cap_wh {
                Some((up, down)) => line.push_str(&format!(",{:.6},{:.6}", up / 1e6, down / 1e6)),
                None => line.push_str(",,"),
            }
        }
        line.push_str("\r\n");
        self.out.write_all(line.as_bytes())
    }

    /// Flush the writer.
    ///
    /// # Errors
    /// The writer's I/O error.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Flush and hand back the writer.
    ///
    /// # Errors
    /// The writer's I/O error.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// The log's sanity check: the largest `|mean(InsAcPow − Σ Activated_*)|` over consecutive
/// windows of `window` rows (W) — the active power minus the activated services is the
/// baseline (zero in a test), up to the unit's own dynamics, which a window of 10 s averages
/// out. `rows` are `(power_w, sum_activated_w)`.
#[must_use]
pub fn sanity_worst_window(rows: &[(f64, f64)], window: usize) -> f64 {
    rows.chunks(window.max(1))
        .map(|c| {
            let sum: f64 = c.iter().map(|(p, a)| p - a).sum();
            // A chunk length is small.
            #[allow(clippy::cast_precision_loss)]
            let n = c.len() as f64;
            (sum / n).abs()
        })
        .filter(|x| x.is_finite())
        .fold(0.0, f64::max)
}
