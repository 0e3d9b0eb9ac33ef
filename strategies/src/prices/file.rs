//! The `file` source: a CSV of spot prices that another program (or the operator) keeps up to date.

use super::error::{ParseError, PriceError};
use super::point::{add, validate_points, PointError, PricePoint};
use super::{PriceSource, SourceKind};
use crate::units::Price;
use jiff::{SignedDuration, Timestamp};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Header the file must start with.
pub const CSV_HEADER: &str = "timestamp,price";

/// Length of the only row of a one-row file.
const SINGLE_ROW_LENGTH: SignedDuration = SignedDuration::from_hours(1);

/// Reads spot prices from a CSV file (see [`parse_price_csv`] for the format), again only when
/// the file's modification time or length changed; otherwise the points read last are returned.
#[derive(Debug, Clone)]
pub struct FileSource {
    path: PathBuf,
    cache: Option<(Stamp, Vec<PricePoint>)>,
}

/// What identifies one version of the file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

impl FileSource {
    /// A source reading `path` (not opened until the first fetch).
    #[must_use]
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into(), cache: None }
    }

    /// The file read.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, cause: impl ToString) -> PriceError {
        PriceError::Read {
            kind: SourceKind::File,
            origin: self.path.display().to_string(),
            cause: cause.to_string(),
        }
    }
}

impl PriceSource for FileSource {
    fn kind(&self) -> SourceKind {
        SourceKind::File
    }

    /// # Errors
    /// [`PriceError::Read`] when the file cannot be read, [`PriceError::Decode`] (naming line,
    /// column and value) when it is not a valid price CSV.
    fn fetch(&mut self, _now: Timestamp) -> Result<Vec<PricePoint>, PriceError> {
        let meta = std::fs::metadata(&self.path).map_err(|e| self.error(e))?;
        let stamp = Stamp { modified: meta.modified().ok(), len: meta.len() };
        if let Some((cached, points)) = &self.cache {
            if *cached == stamp {
                return Ok(points.clone());
            }
        }
        let text = std::fs::read_to_string(&self.path).map_err(|e| self.error(e))?;
        let points = parse_price_csv(&text).map_err(|error| PriceError::Decode {
            kind: SourceKind::File,
            origin: self.path.display().to_string(),
            error,
        })?;
        self.cache = Some((stamp, points.clone()));
        Ok(points)
    }
}

/// Parse a price CSV:
///
/// ```text
/// timestamp,price
/// 2025-10-01T22:00:00Z,0.0912
/// 2025-10-01T23:00:00Z,0.0855
/// ```
///
/// The header `timestamp,price` is required. Each row is an RFC 3339 instant (`Z` or an offset;
/// it is the instant that counts, so daylight-saving days need no special care) and the spot
/// price in currency per kWh. A row's slot runs from its timestamp to the next row's; the last
/// row's slot is as long as the one before it, and the only row of a one-row file lasts one
/// hour. Blank lines are skipped. The slots must follow the rules of [`validate_points`]
/// (quarter-hour grid, up to a day long — so a gap of more than a day between rows is refused).
///
/// # Errors
/// [`ParseError::Csv`] naming the 1-based line, column and value of the first problem.
pub fn parse_price_csv(text: &str) -> Result<Vec<PricePoint>, ParseError> {
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())).filter(|(_, l)| !l.is_empty());
    match lines.next() {
        Some((_, header)) if header.trim_start_matches('\u{feff}') == CSV_HEADER => {}
        Some((line, header)) => {
            return Err(csv(line, 0, header, format!("the header must be '{CSV_HEADER}'")));
        }
        None => return Err(csv(1, 0, "", format!("empty file, the header must be '{CSV_HEADER}'"))),
    }
    let mut rows: Vec<(usize, Timestamp, Price)> = Vec::new();
    for (line, text) in lines {
        let mut cells = text.split(',');
        let (Some(t), Some(p), None) = (cells.next(), cells.next(), cells.next()) else {
            return Err(csv(line, 0, text, "expected two fields: timestamp,price".to_owned()));
        };
        let (t, p) = (t.trim(), p.trim());
        let at: Timestamp =
            t.parse().map_err(|e| csv(line, 1, t, format!("not an RFC 3339 instant with offset: {e}")))?;
        let value: f64 = p.parse().map_err(|_| csv(line, 2, p, "not a number".to_owned()))?;
        let price =
            Price::checked("price", value).map_err(|_| csv(line, 2, p, "not a finite price".to_owned()))?;
        rows.push((line, at, price));
    }
    let mut points = Vec::with_capacity(rows.len());
    for (i, &(_, start, price)) in rows.iter().enumerate() {
        let end = match (rows.get(i + 1), i.checked_sub(1).and_then(|j| rows.get(j))) {
            (Some(&(_, next, _)), _) => next,
            (None, Some(&(_, previous, _))) => add(start, start.duration_since(previous)),
            (None, None) => add(start, SINGLE_ROW_LENGTH),
        };
        points.push(PricePoint::new(start, end, price));
    }
    validate_points(&points).map_err(|e| {
        let index = point_index(&e);
        let (line, value) = rows.get(index).map_or((0, String::new()), |(l, t, _)| (*l, t.to_string()));
        csv(line, 1, &value, e.to_string())
    })?;
    Ok(points)
}

fn point_index(e: &PointError) -> usize {
    match e {
        PointError::Empty | PointError::TooMany { .. } => 0,
        PointError::EndNotAfterStart { index, .. }
        | PointError::NotOnQuarterHour { index, .. }
        | PointError::BadLength { index, .. }
        | PointError::NotFinite { index, .. }
        | PointError::Overlap { index, .. } => *index,
    }
}

fn csv(line: usize, column: usize, value: &str, problem: String) -> ParseError {
    ParseError::Csv { line, column, value: value.to_owned(), problem }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn rows_last_until_the_next_row() {
        let text = "timestamp,price\n2025-10-01T22:00:00Z,0.10\n2025-10-01T23:00:00Z,0.20\n\
                    2025-10-01T23:15:00Z,-0.01\n2025-10-01T23:30:00+00:00,0.05\n";
        let points = parse_price_csv(text).unwrap();
        let spans: Vec<_> = points.iter().map(|p| (p.start, p.end, p.price.per_kwh())).collect();
        assert_eq!(
            spans,
            vec![
                (ts("2025-10-01T22:00:00Z"), ts("2025-10-01T23:00:00Z"), 0.10),
                (ts("2025-10-01T23:00:00Z"), ts("2025-10-01T23:15:00Z"), 0.20),
                (ts("2025-10-01T23:15:00Z"), ts("2025-10-01T23:30:00Z"), -0.01),
                // The last row as long as the one before it.
                (ts("2025-10-01T23:30:00Z"), ts("2025-10-01T23:45:00Z"), 0.05),
            ]
        );
    }

    #[test]
    fn a_single_row_lasts_an_hour_and_a_header_alone_is_empty() {
        let one = parse_price_csv("timestamp,price\n2025-10-01T22:00:00Z,0.1\n").unwrap();
        assert_eq!(one[0].end, ts("2025-10-01T23:00:00Z"));
        assert_eq!(parse_price_csv("\u{feff}timestamp,price\n").unwrap(), vec![]);
    }

    #[test]
    fn errors_name_line_column_and_value() {
        let e = parse_price_csv("time,price\n").unwrap_err();
        assert!(matches!(e, ParseError::Csv { line: 1, column: 0, .. }), "{e}");
        let e =
            parse_price_csv("timestamp,price\n2025-10-01T22:00:00Z,0.1\n2025-10-01 23:00,0.2\n").unwrap_err();
        assert!(
            matches!(&e, ParseError::Csv { line: 3, column: 1, value, .. } if value == "2025-10-01 23:00"),
            "{e}"
        );
        let e = parse_price_csv("timestamp,price\n\n2025-10-01T22:00:00Z,abc\n").unwrap_err();
        assert!(matches!(&e, ParseError::Csv { line: 3, column: 2, value, .. } if value == "abc"), "{e}");
        let e = parse_price_csv("timestamp,price\n2025-10-01T22:00:00Z,NaN\n").unwrap_err();
        assert!(matches!(&e, ParseError::Csv { line: 2, column: 2, .. }), "{e}");
        let e = parse_price_csv("timestamp,price\n2025-10-01T22:00:00Z,0.1,9\n").unwrap_err();
        assert!(matches!(&e, ParseError::Csv { line: 2, column: 0, .. }), "{e}");
        // Rows out of order: the second row's slot would end before it starts.
        let e = parse_price_csv("timestamp,price\n2025-10-01T23:00:00Z,0.1\n2025-10-01T22:00:00Z,0.2\n")
            .unwrap_err();
        assert!(matches!(&e, ParseError::Csv { line: 2, column: 1, .. }), "{e}");
        // Ten minutes apart: not a whole quarter-hour.
        let e = parse_price_csv("timestamp,price\n2025-10-01T22:00:00Z,0.1\n2025-10-01T22:10:00Z,0.2\n")
            .unwrap_err();
        assert!(e.to_string().contains("line 2, column 1: '2025-10-01T22:00:00Z'"), "{e}");
    }
}
