//! The optimizer input CSV (design.md §7):
//!
//! ```text
//! timestamp,pv_w,load_w,import_price,export_price
//! 2024-06-01T00:00:00Z,0,412.5,0.31,0.08
//! 2024-06-01T00:15:00Z,0,398.0,0.30,0.08
//! ```
//!
//! * The header is required and must name exactly these five columns in this order; spaces
//!   around names and values are tolerated, as are a UTF-8 byte-order mark, `\r\n` line ends and
//!   blank lines (which still count for line numbers).
//! * `timestamp`: RFC 3339 with an offset (`Z` or `+00:00`; another offset is accepted and
//!   converted, since it names the same instant), strictly increasing.
//! * `pv_w`, `load_w`: watts, finite, `≥ 0`. Prices: currency per kWh, finite, any sign.
//! * Each row is one step from its timestamp to the next row's. The last row has no successor:
//!   it takes the previous step's duration. A file therefore needs at least two data rows; one
//!   row cannot tell how long its step is, and guessing would silently scale its energy.
//!
//! Every error names the 1-based line, the column and the offending text.

use core::fmt;

use ems_core::Watts;
use jiff::{SignedDuration, Timestamp};

use super::Step;
use crate::units::Price;

/// The five column names, in order.
pub const COLUMNS: [&str; 5] = ["timestamp", "pv_w", "load_w", "import_price", "export_price"];

/// Why a CSV was refused. `line` is 1-based and counts every line of the text, blank ones
/// included.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CsvError {
    /// No non-blank line at all.
    #[error("the CSV is empty: expected the header '{}' and at least two rows", COLUMNS.join(","))]
    Empty,
    /// The first non-blank line is not the expected header.
    #[error("line {line}: expected the header '{}', found '{found}'", COLUMNS.join(","))]
    Header {
        /// Line of the offending header.
        line: usize,
        /// What was there (trimmed).
        found: String,
    },
    /// A data row has the wrong number of fields.
    #[error("line {line}: expected 5 columns ({}), found {found}", COLUMNS.join(","))]
    ColumnCount {
        /// Line of the row.
        line: usize,
        /// Number of fields found.
        found: usize,
    },
    /// A field could not be used.
    #[error("line {line}, column '{column}': \"{value}\" {problem}")]
    Value {
        /// Line of the row.
        line: usize,
        /// Column name, as in the header.
        column: &'static str,
        /// The field as written (trimmed).
        value: String,
        /// What is wrong with it.
        problem: ValueProblem,
    },
    /// A timestamp is not after the previous row's.
    #[error(
        "line {line}, column 'timestamp': \"{value}\" is not after the previous row's {previous} \
         (line {previous_line}); timestamps must strictly increase"
    )]
    NotIncreasing {
        /// Line of the row.
        line: usize,
        /// The timestamp as written.
        value: String,
        /// The previous row's timestamp.
        previous: Timestamp,
        /// The previous row's line.
        previous_line: usize,
    },
    /// Fewer than two data rows.
    #[error(
        "only {rows} data row(s): at least two are needed, because each step lasts until the \
         next row's timestamp (the last row takes the previous step's duration)"
    )]
    TooFewRows {
        /// Data rows found.
        rows: usize,
    },
}

/// What is wrong with a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueProblem {
    /// Not a timestamp in RFC 3339 with an offset.
    NotTimestamp,
    /// Not a number at all.
    NotNumber,
    /// NaN or infinite.
    NotFinite,
    /// A power below zero where only `≥ 0` makes sense.
    Negative,
    /// Beyond the physical range of a power (±100 MW).
    OutOfRange,
}

impl fmt::Display for ValueProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotTimestamp => "is not an RFC 3339 timestamp with offset (e.g. 2024-06-01T00:00:00Z)",
            Self::NotNumber => "is not a number",
            Self::NotFinite => "is not a finite number",
            Self::Negative => "is negative; this column must be >= 0 W",
            Self::OutOfRange => "is outside the physical range of a power (±100 MW)",
        })
    }
}

struct Row {
    line: usize,
    at: Timestamp,
    pv: Watts,
    load: Watts,
    import: Price,
    export: Price,
}

fn value_err(line: usize, column: &'static str, value: &str, problem: ValueProblem) -> CsvError {
    CsvError::Value { line, column, value: value.to_owned(), problem }
}

fn number(line: usize, column: &'static str, s: &str) -> Result<f64, CsvError> {
    let v: f64 = s.parse().map_err(|_| value_err(line, column, s, ValueProblem::NotNumber))?;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(value_err(line, column, s, ValueProblem::NotFinite))
    }
}

fn power(line: usize, column: &'static str, s: &str) -> Result<Watts, CsvError> {
    let v = number(line, column, s)?;
    if v < 0.0 {
        return Err(value_err(line, column, s, ValueProblem::Negative));
    }
    // Rounding to f32 is the precision of `Watts`; an overflow to ±inf is refused by `try_new`.
    #[allow(clippy::cast_possible_truncation)] // see the line above
    let w = v as f32;
    Watts::try_new(w).map_err(|_| value_err(line, column, s, ValueProblem::OutOfRange))
}

fn price(line: usize, column: &'static str, s: &str) -> Result<Price, CsvError> {
    let v = number(line, column, s)?;
    Price::checked(column, v).map_err(|_| value_err(line, column, s, ValueProblem::NotFinite))
}

/// Parses the optimizer input CSV into steps (see the module docs for the format).
///
/// # Errors
/// [`CsvError`] naming the line, column and value of the first problem found.
pub fn parse_csv(text: &str) -> Result<Vec<Step>, CsvError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())).filter(|(_, l)| !l.is_empty());
    let Some((hline, header)) = lines.next() else {
        return Err(CsvError::Empty);
    };
    let names: Vec<&str> = header.split(',').map(str::trim).collect();
    if names != COLUMNS {
        return Err(CsvError::Header { line: hline, found: header.to_owned() });
    }
    let mut rows: Vec<Row> = Vec::new();
    for (line, l) in lines {
        let fields: Vec<&str> = l.split(',').map(str::trim).collect();
        let [ts, pv, load, imp, exp] = fields[..] else {
            return Err(CsvError::ColumnCount { line, found: fields.len() });
        };
        let at: Timestamp =
            ts.parse().map_err(|_| value_err(line, COLUMNS[0], ts, ValueProblem::NotTimestamp))?;
        if let Some(prev) = rows.last() {
            if at <= prev.at {
                return Err(CsvError::NotIncreasing {
                    line,
                    value: ts.to_owned(),
                    previous: prev.at,
                    previous_line: prev.line,
                });
            }
        }
        rows.push(Row {
            line,
            at,
            pv: power(line, COLUMNS[1], pv)?,
            load: power(line, COLUMNS[2], load)?,
            import: price(line, COLUMNS[3], imp)?,
            export: price(line, COLUMNS[4], exp)?,
        });
    }
    if rows.len() < 2 {
        return Err(CsvError::TooFewRows { rows: rows.len() });
    }
    let mut steps = Vec::with_capacity(rows.len());
    let mut last = SignedDuration::ZERO;
    for (i, r) in rows.iter().enumerate() {
        let duration = match rows.get(i + 1) {
            Some(next) => next.at.duration_since(r.at),
            None => last,
        };
        last = duration;
        steps.push(Step {
            start: r.at,
            duration,
            pv: r.pv,
            load: r.load,
            import_price: r.import,
            export_price: r.export,
        });
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "timestamp,pv_w,load_w,import_price,export_price";

    fn csv(rows: &[&str]) -> String {
        let mut s = String::from(HEADER);
        for r in rows {
            s.push('\n');
            s.push_str(r);
        }
        s
    }

    fn err(text: &str) -> String {
        parse_csv(text).unwrap_err().to_string()
    }

    #[test]
    fn parses_rows_and_durations() {
        let text = csv(&[
            "2024-06-01T00:00:00Z, 0, 400.5, 0.30, 0.08",
            "2024-06-01T00:15:00Z,10,400,-0.01,0.08",
            "2024-06-01T01:15:00+00:00,20,400,0.3,0.1",
        ]);
        let steps = parse_csv(&text).unwrap();
        assert_eq!(steps.len(), 3);
        assert_eq!(steps[0].duration, SignedDuration::from_mins(15));
        assert_eq!(steps[1].duration, SignedDuration::from_mins(60));
        assert_eq!(steps[2].duration, SignedDuration::from_mins(60), "last row takes the previous duration");
        assert_eq!(steps[0].load.get(), 400.5);
        assert_eq!(steps[1].import_price.per_kwh(), -0.01);
        assert_eq!(steps[2].start, "2024-06-01T01:15:00Z".parse::<Timestamp>().unwrap());
    }

    #[test]
    fn tolerates_bom_crlf_blank_lines_and_spaces_in_header() {
        let text = "\u{feff} timestamp , pv_w,load_w , import_price,export_price\r\n\r\n\
                    2024-06-01T00:00:00Z,0,1,0.3,0.08\r\n2024-06-01T00:15:00Z,0,1,0.3,0.08\r\n\n";
        assert_eq!(parse_csv(text).unwrap().len(), 2);
    }

    #[test]
    fn empty_file() {
        assert_eq!(parse_csv(""), Err(CsvError::Empty));
        assert_eq!(parse_csv(" \n\n"), Err(CsvError::Empty));
        assert!(err("").contains("empty"));
    }

    #[test]
    fn missing_or_wrong_header() {
        let e = err("2024-06-01T00:00:00Z,0,1,0.3,0.08\n2024-06-01T00:15:00Z,0,1,0.3,0.08");
        assert!(e.starts_with("line 1: expected the header"), "{e}");
        let e = err("\ntimestamp,pv,load_w,import_price,export_price\n");
        assert!(e.starts_with("line 2: expected the header"), "{e}");
        assert!(e.contains("found 'timestamp,pv,load_w"), "{e}");
        let e = err("timestamp,pv_w,load_w,import_price\n");
        assert!(e.contains("expected the header"), "{e}");
    }

    #[test]
    fn wrong_column_count() {
        let e = err(&csv(&["2024-06-01T00:00:00Z,0,1,0.3,0.08", "2024-06-01T00:15:00Z,0,1,0.3"]));
        assert_eq!(
            e,
            "line 3: expected 5 columns (timestamp,pv_w,load_w,import_price,export_price), found 4"
        );
        let e = err(&csv(&["2024-06-01T00:00:00Z,0,1,0.3,0.08,7"]));
        assert!(e.starts_with("line 2: expected 5 columns"), "{e}");
    }

    #[test]
    fn bad_timestamp() {
        for bad in ["2024-06-01 00:00", "2024-06-01T00:00:00", "yesterday", ""] {
            let e = err(&csv(&[&format!("{bad},0,1,0.3,0.08"), "2024-06-01T00:15:00Z,0,1,0.3,0.08"]));
            assert!(
                e.starts_with(&format!("line 2, column 'timestamp': \"{bad}\" is not an RFC 3339")),
                "{e}"
            );
        }
    }

    #[test]
    fn timestamps_must_increase() {
        let e = err(&csv(&[
            "2024-06-01T00:00:00Z,0,1,0.3,0.08",
            "2024-06-01T00:15:00Z,0,1,0.3,0.08",
            "2024-06-01T00:15:00Z,0,1,0.3,0.08",
        ]));
        assert!(e.starts_with("line 4, column 'timestamp': \"2024-06-01T00:15:00Z\" is not after"), "{e}");
        assert!(e.contains("(line 3)"), "{e}");
        let e = err(&csv(&["2024-06-01T00:15:00Z,0,1,0.3,0.08", "2024-06-01T00:00:00Z,0,1,0.3,0.08"]));
        assert!(e.starts_with("line 3, column 'timestamp'"), "{e}");
    }

    #[test]
    fn not_a_number_names_line_column_and_value() {
        let mut rows = vec!["2024-06-01T00:00:00Z,0,1,0.3,0.08"; 5];
        rows.push("2024-06-01T01:15:00Z,0,abc,0.3,0.08");
        let mut text = csv(&rows);
        // Make the timestamps increase.
        text =
            text.lines()
                .enumerate()
                .map(|(i, l)| {
                    if i == 0 {
                        l.to_owned()
                    } else {
                        l.replacen("00:00:00Z", &format!("00:{:02}:00Z", i), 1)
                    }
                })
                .collect::<Vec<_>>()
                .join("\n");
        assert_eq!(err(&text), "line 7, column 'load_w': \"abc\" is not a number");
    }

    #[test]
    fn nan_and_infinity_are_refused() {
        for (col, row) in [
            ("pv_w", "2024-06-01T00:00:00Z,NaN,1,0.3,0.08"),
            ("load_w", "2024-06-01T00:00:00Z,0,inf,0.3,0.08"),
            ("import_price", "2024-06-01T00:00:00Z,0,1,-inf,0.08"),
            ("export_price", "2024-06-01T00:00:00Z,0,1,0.3,nan"),
        ] {
            let e = err(&csv(&[row, "2024-06-01T00:15:00Z,0,1,0.3,0.08"]));
            assert!(e.starts_with(&format!("line 2, column '{col}'")), "{e}");
            assert!(e.ends_with("is not a finite number"), "{e}");
        }
    }

    #[test]
    fn negative_and_huge_powers_are_refused() {
        let e = err(&csv(&["2024-06-01T00:00:00Z,-5,1,0.3,0.08", "2024-06-01T00:15:00Z,0,1,0.3,0.08"]));
        assert_eq!(e, "line 2, column 'pv_w': \"-5\" is negative; this column must be >= 0 W");
        let e = err(&csv(&["2024-06-01T00:00:00Z,0,1,0.3,0.08", "2024-06-01T00:15:00Z,0,-0.1,0.3,0.08"]));
        assert!(e.starts_with("line 3, column 'load_w': \"-0.1\" is negative"), "{e}");
        let e = err(&csv(&["2024-06-01T00:00:00Z,0,1e9,0.3,0.08", "2024-06-01T00:15:00Z,0,1,0.3,0.08"]));
        assert!(e.contains("outside the physical range"), "{e}");
    }

    #[test]
    fn too_few_rows() {
        assert_eq!(parse_csv(HEADER), Err(CsvError::TooFewRows { rows: 0 }));
        let e = err(&csv(&["2024-06-01T00:00:00Z,0,1,0.3,0.08"]));
        assert!(e.starts_with("only 1 data row(s): at least two are needed"), "{e}");
    }
}
