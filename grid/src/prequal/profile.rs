//! A frequency profile from a CSV file (`time_s,frequency_hz`, header required, any rate,
//! times strictly increasing): linear interpolation between rows, the first value before the
//! first row and the last value after the last.

/// Why a profile was refused: the line (1-based), the column and the value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProfileError {
    /// The header is not `time_s,frequency_hz`.
    #[error("line 1: header {found:?}, expected \"time_s,frequency_hz\"")]
    Header {
        /// What the first line held.
        found: String,
    },
    /// A row without two columns.
    #[error("line {line}: {found} column(s), expected 2 (time_s,frequency_hz)")]
    Columns {
        /// The line.
        line: usize,
        /// How many columns it had.
        found: usize,
    },
    /// A value that is not a number, or out of range.
    #[error("line {line}, column {column}: {value:?} {reason}")]
    Value {
        /// The line.
        line: usize,
        /// `time_s` or `frequency_hz`.
        column: &'static str,
        /// The text found.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No data row.
    #[error("no data rows after the header")]
    Empty,
}

/// A frequency profile: `(time_s, frequency_hz)` points, times strictly increasing.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    points: Vec<(f64, f64)>,
}

impl Profile {
    /// Parse the CSV text.
    ///
    /// # Errors
    /// [`ProfileError`] naming the line, the column and the value.
    pub fn parse(text: &str) -> Result<Self, ProfileError> {
        let mut lines = text.lines().enumerate();
        let header = lines.next().map(|(_, l)| l.trim()).unwrap_or_default();
        let cols: Vec<&str> = header.split(',').map(str::trim).collect();
        if cols != ["time_s", "frequency_hz"] {
            return Err(ProfileError::Header { found: header.to_owned() });
        }
        let mut points: Vec<(f64, f64)> = Vec::new();
        for (i, raw) in lines {
            let line = i.saturating_add(1);
            let l = raw.trim();
            if l.is_empty() {
                continue;
            }
            let cells: Vec<&str> = l.split(',').map(str::trim).collect();
            let [t, f] = cells.as_slice() else {
                return Err(ProfileError::Columns { line, found: cells.len() });
            };
            let bad = |column, value: &str, reason| ProfileError::Value {
                line,
                column,
                value: value.to_owned(),
                reason,
            };
            let time: f64 = t.parse().map_err(|_| bad("time_s", t, "is not a number"))?;
            if !time.is_finite() || time < 0.0 {
                return Err(bad("time_s", t, "must be a finite time >= 0 s"));
            }
            if let Some(&(prev, _)) = points.last() {
                if time <= prev {
                    return Err(bad("time_s", t, "must be greater than the previous row's time"));
                }
            }
            let hz: f64 = f.parse().map_err(|_| bad("frequency_hz", f, "is not a number"))?;
            if !hz.is_finite() || !(40.0..=70.0).contains(&hz) {
                return Err(bad("frequency_hz", f, "must be within 40..=70 Hz"));
            }
            points.push((time, hz));
        }
        if points.is_empty() {
            return Err(ProfileError::Empty);
        }
        Ok(Self { points })
    }

    /// The points.
    #[must_use]
    pub fn points(&self) -> &[(f64, f64)] {
        &self.points
    }

    /// The time of the last row (s).
    #[must_use]
    pub fn duration_s(&self) -> f64 {
        self.points.last().map_or(0.0, |p| p.0)
    }

    /// The frequency at `t` (linear between rows).
    #[must_use]
    pub fn frequency_at(&self, t: f64) -> f64 {
        let i = self.points.partition_point(|p| p.0 <= t);
        match (i.checked_sub(1).and_then(|j| self.points.get(j)), self.points.get(i)) {
            (Some(&(t0, f0)), Some(&(t1, f1))) => f0 + (f1 - f0) * (t - t0) / (t1 - t0),
            (Some(&(_, f0)), None) => f0,
            (None, Some(&(_, f1))) => f1,
            (None, None) => 50.0,
        }
    }
}
