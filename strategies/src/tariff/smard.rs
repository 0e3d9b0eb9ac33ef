//! Parser for the day-ahead price CSV exported by SMARD.de (Bundesnetzagentur), English layout.
//!
//! The file is `;`-separated UTF-8 (usually with a byte-order mark), one header row, then one row
//! per market time unit (an hour, or a quarter-hour in newer exports):
//!
//! ```text
//! Date;Time of day;Germany/Luxembourg[€/MWh];Denmark 1[€/MWh];…;Germany/Austria/Luxembourg[€/MWh];…
//! Jan 1, 2018;12:00 AM;-;21.8;…;-5.27;…
//! ```
//!
//! `Date` and `Time of day` are **local market time, Europe/Berlin**, on a 12-hour clock. The
//! spring-forward day therefore has 23 hourly rows (no `2:00 AM`) and the fall-back day 25 (two
//! `2:00 AM` rows: the first is CEST, UTC+2, the second CET, UTC+1). Every row is mapped to its
//! UTC instant and the rows must follow each other by exactly one step, so a file that skips or
//! repeats an hour is refused rather than silently shifted. Prices are EUR/MWh (divided by 1000
//! here, giving EUR/kWh); `-` means "no price for this zone then" and becomes an empty slot;
//! thousands separators (`2,325.83`) are accepted.
//!
//! The German bidding zone changed on 2018-10-01 from Germany/Austria/Luxembourg to
//! Germany/Luxembourg; [`parse_smard`] splices the two columns into one German series.
//!
//! Data licence: CC BY 4.0, attribution "Bundesnetzagentur | SMARD.de".

use super::series::{PriceSeries, SeriesError};
use crate::units::Price;
use jiff::civil::{Date, DateTime, Time};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Timestamp};

/// The pseudo zone name [`parse_smard_zone`] accepts for the spliced German series.
pub const GERMANY: &str = "Germany";

/// Header of the German zone from 2018-10-01 (unit suffix removed).
const DE_LU: &str = "Germany/Luxembourg";
/// Header of the German zone until 2018-09-30 (unit suffix removed).
const DE_AT_LU: &str = "Germany/Austria/Luxembourg";
/// Time zone the market quotes its delivery periods in.
const MARKET_TZ: &str = "Europe/Berlin";

/// Where and why a SMARD file was refused: 1-based line and column (column 0 = the whole line).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}, column {column}: {kind}")]
pub struct SmardError {
    /// 1-based line number (the header is line 1).
    pub line: usize,
    /// 1-based `;`-separated column, 0 when the problem concerns the whole line or file.
    pub column: usize,
    /// What is wrong.
    pub kind: SmardErrorKind,
}

/// The ways a SMARD file can be wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SmardErrorKind {
    /// The file has no header row.
    #[error("the file is empty")]
    Empty,
    /// A required column is absent from the header.
    #[error("no column '{wanted}' in the header (found: {found})")]
    MissingColumn {
        /// The column looked for.
        wanted: String,
        /// The header as read.
        found: String,
    },
    /// A row has fewer fields than the header.
    #[error("row has {found} fields, the header has {expected}")]
    FieldCount {
        /// Fields in the header.
        expected: usize,
        /// Fields in this row.
        found: usize,
    },
    /// The `Date` field is not like `Jan 1, 2018`.
    #[error("'{0}' is not a date like 'Jan 1, 2018'")]
    BadDate(String),
    /// The `Time of day` field is not like `12:00 AM`.
    #[error("'{0}' is not a time of day like '12:00 AM'")]
    BadTime(String),
    /// A price field is neither a number nor `-`.
    #[error("'{text}' in column '{header}' is not a price in EUR/MWh or '-'")]
    BadNumber {
        /// The column header.
        header: String,
        /// The field text.
        text: String,
    },
    /// The local time does not exist in Europe/Berlin (inside a spring-forward gap).
    #[error("{0} does not exist in Europe/Berlin (daylight-saving gap)")]
    NonexistentLocalTime(DateTime),
    /// A row is not exactly one step after the previous one.
    #[error("row is at {found} (UTC), expected {expected} (one step after the previous row)")]
    NotConsecutive {
        /// The instant one step after the previous row.
        expected: Timestamp,
        /// The instant of this row.
        found: Timestamp,
    },
    /// Both German columns carry a price, and they differ.
    #[error("both German zone columns carry a price ({a} and {b} EUR/MWh)")]
    GermanConflict {
        /// Germany/Luxembourg.
        a: f64,
        /// Germany/Austria/Luxembourg.
        b: f64,
    },
    /// The first two rows are not a valid step apart, or the series is otherwise unusable.
    #[error("unusable series: {0}")]
    Series(SeriesError),
    /// The file has no data rows.
    #[error("the file has no data rows")]
    NoRows,
    /// The market time zone is unknown to the time-zone database.
    #[error("time zone Europe/Berlin is unavailable: {0}")]
    TimeZone(String),
}

fn err(line: usize, column: usize, kind: SmardErrorKind) -> SmardError {
    SmardError { line, column, kind }
}

/// Which columns make up the wanted series.
enum Wanted {
    /// One named zone.
    One(usize),
    /// Germany: Germany/Luxembourg, else Germany/Austria/Luxembourg.
    Germany(Option<usize>, Option<usize>),
}

/// Parse the German day-ahead series (Germany/Austria/Luxembourg until 2018-09-30, then
/// Germany/Luxembourg; whichever of the two columns the file has). Prices become EUR/kWh.
///
/// # Errors
/// [`SmardError`] naming the line and column of the first problem.
pub fn parse_smard(text: &str) -> Result<PriceSeries, SmardError> {
    parse_smard_zone(text, GERMANY)
}

/// Parse one zone's series: `zone` is a column header without its unit suffix (`"France"`,
/// `"Germany/Luxembourg"`, …) or [`GERMANY`] for the spliced German series.
///
/// # Errors
/// [`SmardError`] naming the line and column of the first problem (or an unknown zone).
pub fn parse_smard_zone(text: &str, zone: &str) -> Result<PriceSeries, SmardError> {
    let tz = TimeZone::get(MARKET_TZ).map_err(|e| err(0, 0, SmardErrorKind::TimeZone(e.to_string())))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.strip_suffix('\r').unwrap_or(l)));
    let (_, header_line) = lines.next().ok_or(err(1, 0, SmardErrorKind::Empty))?;
    let headers: Vec<&str> = header_line.split(';').map(str::trim).collect();
    let zone_name = |h: &str| h.split_once('[').map_or(h, |(name, _)| name).trim().to_owned();
    let names: Vec<String> = headers.iter().map(|h| zone_name(h)).collect();
    let find = |wanted: &str| names.iter().position(|n| n == wanted);
    let missing = |wanted: &str| {
        err(1, 0, SmardErrorKind::MissingColumn { wanted: wanted.to_owned(), found: header_line.to_owned() })
    };
    let date_col = find("Date").ok_or_else(|| missing("Date"))?;
    let time_col = find("Time of day").ok_or_else(|| missing("Time of day"))?;
    let wanted = if zone == GERMANY {
        match (find(DE_LU), find(DE_AT_LU)) {
            (None, None) => return Err(missing(DE_LU)),
            (a, b) => Wanted::Germany(a, b),
        }
    } else {
        Wanted::One(find(zone).ok_or_else(|| missing(zone))?)
    };

    let mut start: Option<Timestamp> = None;
    let mut prev: Option<Timestamp> = None;
    let mut step: Option<SignedDuration> = None;
    let mut values = Vec::new();
    let mut first_data_line = 2;
    for (line_no, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(';').map(str::trim).collect();
        if fields.len() < headers.len() {
            return Err(err(
                line_no,
                0,
                SmardErrorKind::FieldCount { expected: headers.len(), found: fields.len() },
            ));
        }
        let field = |c: usize| fields.get(c).copied().unwrap_or_default();
        let date = parse_date(field(date_col))
            .ok_or_else(|| err(line_no, date_col + 1, SmardErrorKind::BadDate(field(date_col).to_owned())))?;
        let time = parse_time(field(time_col))
            .ok_or_else(|| err(line_no, time_col + 1, SmardErrorKind::BadTime(field(time_col).to_owned())))?;
        let at = to_utc(&tz, date.to_datetime(time), prev).map_err(|k| err(line_no, time_col + 1, k))?;
        match (prev, step) {
            (None, _) => {
                start = Some(at);
                first_data_line = line_no;
            }
            (Some(p), None) => step = Some(at.duration_since(p)),
            (Some(p), Some(s)) => {
                let expected = p.checked_add(s).unwrap_or(Timestamp::MAX);
                if at != expected {
                    return Err(err(
                        line_no,
                        time_col + 1,
                        SmardErrorKind::NotConsecutive { expected, found: at },
                    ));
                }
            }
        }
        prev = Some(at);
        let price = |c: usize| {
            parse_price(field(c)).map_err(|()| {
                err(
                    line_no,
                    c + 1,
                    SmardErrorKind::BadNumber {
                        header: headers.get(c).copied().unwrap_or_default().to_owned(),
                        text: field(c).to_owned(),
                    },
                )
            })
        };
        let value = match wanted {
            Wanted::One(c) => price(c)?,
            Wanted::Germany(a, b) => {
                let a_val = a.map(&price).transpose()?.flatten();
                let b_val = b.map(&price).transpose()?.flatten();
                match (a_val, b_val) {
                    (Some(x), Some(y)) if x != y => {
                        return Err(err(line_no, 0, SmardErrorKind::GermanConflict { a: x, b: y }))
                    }
                    (Some(x), _) | (None, Some(x)) => Some(x),
                    (None, None) => None,
                }
            }
        };
        values.push(value.map(|eur_per_mwh| Price::new(eur_per_mwh / 1000.0)));
    }
    let start = start.ok_or(err(2, 0, SmardErrorKind::NoRows))?;
    let step = step.unwrap_or(SignedDuration::from_hours(1));
    PriceSeries::new(start, step, values)
        .map_err(|e| err(first_data_line + 1, time_col + 1, SmardErrorKind::Series(e)))
}

/// `Jan 1, 2018`.
fn parse_date(text: &str) -> Option<Date> {
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let (month_day, year) = text.split_once(',')?;
    let (month, day) = month_day.trim().split_once(' ')?;
    let month = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(month.trim()))?;
    let month = i8::try_from(month + 1).ok()?;
    let day: i8 = day.trim().parse().ok()?;
    let year: i16 = year.trim().parse().ok()?;
    Date::new(year, month, day).ok()
}

/// `12:00 AM` … `11:45 PM`.
fn parse_time(text: &str) -> Option<Time> {
    let (clock, meridiem) = text.trim().split_once(' ')?;
    let (hour, minute) = clock.split_once(':')?;
    let hour: i8 = hour.parse().ok()?;
    let minute: i8 = minute.parse().ok()?;
    if !(1..=12).contains(&hour) {
        return None;
    }
    let hour = match meridiem.trim() {
        m if m.eq_ignore_ascii_case("AM") => hour % 12,
        m if m.eq_ignore_ascii_case("PM") => hour % 12 + 12,
        _ => return None,
    };
    Time::new(hour, minute, 0, 0).ok()
}

/// Local market time → UTC. In the repeated hour of a fall-back day the earlier instant (summer
/// time) is taken unless the previous row already reached it, in which case this is the second
/// pass through that hour (standard time).
fn to_utc(tz: &TimeZone, dt: DateTime, prev: Option<Timestamp>) -> Result<Timestamp, SmardErrorKind> {
    let instant = |offset: jiff::tz::Offset| {
        offset.to_timestamp(dt).map_err(|_| SmardErrorKind::NonexistentLocalTime(dt))
    };
    match tz.to_ambiguous_timestamp(dt).offset() {
        AmbiguousOffset::Unambiguous { offset } => instant(offset),
        AmbiguousOffset::Gap { .. } => Err(SmardErrorKind::NonexistentLocalTime(dt)),
        AmbiguousOffset::Fold { before, after } => {
            let first = instant(before)?;
            match prev {
                Some(p) if p >= first => instant(after),
                _ => Ok(first),
            }
        }
    }
}

/// A price in EUR/MWh, `-` for none. `Err(())` for anything else (the caller adds the position).
fn parse_price(text: &str) -> Result<Option<f64>, ()> {
    if text == "-" {
        return Ok(None);
    }
    let plain: String = if text.contains(',') {
        // Thousands separators only: groups of exactly three digits after each comma.
        let (int_part, frac) = text.split_once('.').map_or((text, None), |(i, f)| (i, Some(f)));
        let digits = int_part.strip_prefix('-').unwrap_or(int_part);
        let mut groups = digits.split(',');
        let lead_ok = groups.next().is_some_and(|g| (1..=3).contains(&g.len()));
        if !lead_ok || !groups.all(|g| g.len() == 3) {
            return Err(());
        }
        let mut s = int_part.replace(',', "");
        if let Some(f) = frac {
            s.push('.');
            s.push_str(f);
        }
        s
    } else {
        text.to_owned()
    };
    let ok_chars = !plain.is_empty() && plain.chars().all(|c| c.is_ascii_digit() || c == '.' || c == '-');
    match plain.parse::<f64>() {
        Ok(v) if ok_chars && v.is_finite() => Ok(Some(v)),
        _ => Err(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str =
        "\u{feff}Date;Time of day;Germany/Luxembourg[€/MWh];Germany/Austria/Luxembourg[€/MWh]\n";

    #[test]
    fn fall_back_hour_maps_to_two_instants() {
        let text = format!(
            "{HEADER}Oct 28, 2018;1:00 AM;1;-\nOct 28, 2018;2:00 AM;2;-\nOct 28, 2018;2:00 AM;3;-\nOct 28, 2018;3:00 AM;4;-\n"
        );
        let s = parse_smard(&text).unwrap();
        assert_eq!(s.len(), 4);
        assert_eq!(s.start(), "2018-10-27T23:00:00Z".parse::<Timestamp>().unwrap());
        assert_eq!(s.get("2018-10-28T00:30:00Z".parse().unwrap()), Some(Price::new(0.002)));
        assert_eq!(s.get("2018-10-28T01:30:00Z".parse().unwrap()), Some(Price::new(0.003)));
    }

    #[test]
    fn gap_and_skips_are_refused_with_position() {
        let text = format!("{HEADER}Mar 25, 2018;1:00 AM;1;-\nMar 25, 2018;2:00 AM;2;-\n");
        let e = parse_smard(&text).unwrap_err();
        assert_eq!((e.line, e.column), (3, 2));
        let text =
            format!("{HEADER}Jan 1, 2018;1:00 AM;1;-\nJan 1, 2018;2:00 AM;2;-\nJan 1, 2018;4:00 AM;2;-\n");
        let e = parse_smard(&text).unwrap_err();
        assert_eq!((e.line, e.column), (4, 2));
        assert!(matches!(e.kind, SmardErrorKind::NotConsecutive { .. }));
    }

    #[test]
    fn bad_number_names_line_and_column() {
        let text = format!("{HEADER}Jan 1, 2018;1:00 AM;abc;-\n");
        let e = parse_smard(&text).unwrap_err();
        assert_eq!((e.line, e.column), (2, 3));
        assert!(e.to_string().contains("abc"), "{e}");
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_price("-"), Ok(None));
        assert_eq!(parse_price("-76.01"), Ok(Some(-76.01)));
        assert_eq!(parse_price("2,325.83"), Ok(Some(2325.83)));
        assert_eq!(parse_price("1,5"), Err(()));
        assert_eq!(parse_price("1e3"), Err(()));
        assert_eq!(parse_price(""), Err(()));
        assert_eq!(parse_price("NaN"), Err(()));
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("12:00 AM"), Some(Time::new(0, 0, 0, 0).unwrap()));
        assert_eq!(parse_time("12:15 PM"), Some(Time::new(12, 15, 0, 0).unwrap()));
        assert_eq!(parse_time("11:00 PM"), Some(Time::new(23, 0, 0, 0).unwrap()));
        assert_eq!(parse_time("13:00 PM"), None);
        assert_eq!(parse_date("Feb 29, 2018"), None);
        assert_eq!(parse_date("Dec 31, 2018"), Some(Date::new(2018, 12, 31).unwrap()));
    }
}
