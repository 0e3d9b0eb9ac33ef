//! Reference data embedded at compile time and parsed once into compact tables.
//!
//! * `data/723170TYA.CSV`: NREL TMY3 typical meteorological year for Greensboro NC (pvlib,
//!   BSD-3-Clause): 8760 hourly rows, of which we keep GHI (W/m²) and dry-bulb temperature (°C).
//! * `data/bdew_h25.csv`: BDEW H25 household standard load profile (demandlib, MIT): 96
//!   quarter-hours × 12 months × 3 day types, kWh per 15 min for 1,000,000 kWh/a.
//!
//! The program never reads files at run time: the text is embedded with `include_str!` and parsed
//! on first use ([`tmy3_greensboro`], [`bdew_h25`]); the result (or the error) is cached for the
//! life of the process. Parsers return a [`DataError`] that names the file, line and column.

use ems_core::{Celsius, WattHours, Watts};
use std::sync::OnceLock;

/// Hours in the (non-leap) simulation year.
pub const HOURS_PER_YEAR: usize = 8760;
/// Quarter-hours per day in a BDEW profile.
pub const QUARTERS_PER_DAY: usize = 96;
/// Value columns in a BDEW profile: 12 months × 3 day types.
pub const BDEW_COLUMNS: usize = 36;

/// Cumulative days before each month in a non-leap year.
pub(crate) const MONTH_START_DAY: [u16; 13] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334, 365];

const TMY3_NAME: &str = "723170TYA.CSV";
const TMY3_TEXT: &str = include_str!("../data/723170TYA.CSV");
const BDEW_H25_NAME: &str = "bdew_h25.csv";
const BDEW_H25_TEXT: &str = include_str!("../data/bdew_h25.csv");

/// A data file that could not be parsed: which file, where (1-based line and CSV column) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file} line {line} column {column}: {problem}")]
pub struct DataError {
    /// File name (as embedded).
    pub file: &'static str,
    /// 1-based line number.
    pub line: usize,
    /// 1-based CSV column (0 when the problem concerns the whole line or file).
    pub column: usize,
    /// What is wrong.
    pub problem: String,
}

fn err(file: &'static str, line: usize, column: usize, problem: impl Into<String>) -> DataError {
    DataError { file, line, column, problem: problem.into() }
}

/// Hourly weather for one continuous year: global horizontal irradiance and air temperature.
///
/// Index `h` holds the hour that *ends* at `h + 1` hours after 1 January 00:00 local standard
/// time (the TMY3 convention); rows are re-stamped to one year whatever their source year.
#[derive(Debug, Clone, PartialEq)]
pub struct WeatherYear {
    ghi: Vec<f32>,
    dry_bulb: Vec<f32>,
}

impl WeatherYear {
    /// Number of hourly rows.
    #[must_use]
    pub fn hours(&self) -> usize {
        self.ghi.len()
    }

    /// Mean global horizontal irradiance of hour `hour` (wrapping), in W/m² (per square metre,
    /// carried in [`Watts`]).
    #[must_use]
    pub fn ghi(&self, hour: usize) -> Watts {
        Watts::saturating(self.ghi.get(hour % self.ghi.len().max(1)).copied().unwrap_or(0.0))
    }

    /// Dry-bulb air temperature of hour `hour` (wrapping).
    #[must_use]
    pub fn dry_bulb(&self, hour: usize) -> Celsius {
        Celsius::saturating(self.dry_bulb.get(hour % self.dry_bulb.len().max(1)).copied().unwrap_or(0.0))
    }

    /// Annual irradiation on a horizontal square metre (Wh per m², carried in [`WattHours`]).
    #[must_use]
    pub fn annual_ghi(&self) -> WattHours {
        WattHours::saturating(crate::narrow::f32_of(self.ghi.iter().map(|&g| f64::from(g)).sum::<f64>()))
    }

    #[cfg(any(test, feature = "sim"))]
    pub(crate) fn raw_ghi(&self) -> &[f32] {
        &self.ghi
    }

    #[cfg(any(test, feature = "sim"))]
    pub(crate) fn raw_dry_bulb(&self) -> &[f32] {
        &self.dry_bulb
    }
}

/// Expected `(month, day, hour-ending)` of the 0-based hourly row `k` in a non-leap year.
fn expected_stamp(k: usize) -> (usize, usize, usize) {
    let day0 = k / 24;
    let month0 = MONTH_START_DAY.iter().rposition(|&d| usize::from(d) <= day0).unwrap_or(0).min(11);
    let day = day0 - usize::from(MONTH_START_DAY[month0]) + 1;
    (month0 + 1, day, k % 24 + 1)
}

fn parse_num(
    file: &'static str,
    line: usize,
    column: usize,
    field: &str,
    what: &str,
) -> Result<f32, DataError> {
    let v: f32 = field
        .trim()
        .parse()
        .map_err(|_| err(file, line, column, format!("cannot parse {what} {field:?} as a number")))?;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(err(file, line, column, format!("{what} {field:?} is not finite")))
    }
}

fn parse_u(file: &'static str, line: usize, column: usize, field: &str) -> Result<usize, DataError> {
    field.trim().parse().map_err(|_| err(file, line, column, format!("cannot parse {field:?} as an integer")))
}

/// Parse a TMY3 CSV (line 1 metadata, line 2 header, then hourly rows starting 1 January
/// 01:00). Every row must be the next consecutive hour of a non-leap year (the source year is
/// ignored, so the rows are re-stamped to one continuous year). GHI must lie in 0..=1500 W/m²,
/// the dry-bulb temperature in −70..=70 °C. The row count is not checked here (see
/// [`tmy3_greensboro`]), so small fixtures parse.
///
/// # Errors
/// [`DataError`] naming the line and column of the first problem.
pub fn parse_tmy3(file: &'static str, text: &str) -> Result<WeatherYear, DataError> {
    let mut lines = text.lines().map(|l| l.trim_end_matches('\r')).enumerate();
    match lines.next() {
        Some((_, meta)) if !meta.trim().is_empty() => {}
        _ => return Err(err(file, 1, 0, "missing metadata line")),
    }
    let header = match lines.next() {
        Some((_, h)) => h,
        None => return Err(err(file, 2, 0, "missing header line")),
    };
    let find = |name: &str| -> Result<usize, DataError> {
        header
            .split(',')
            .position(|c| c.trim() == name)
            .ok_or_else(|| err(file, 2, 0, format!("header has no column {name:?}")))
    };
    let (c_date, c_time, c_ghi, c_temp) =
        (find("Date (MM/DD/YYYY)")?, find("Time (HH:MM)")?, find("GHI (W/m^2)")?, find("Dry-bulb (C)")?);
    let needed = c_date.max(c_time).max(c_ghi).max(c_temp);
    let mut ghi = Vec::with_capacity(HOURS_PER_YEAR);
    let mut dry_bulb = Vec::with_capacity(HOURS_PER_YEAR);
    let mut fields: Vec<&str> = Vec::with_capacity(80);
    for (idx, line) in lines {
        let ln = idx + 1;
        if line.trim().is_empty() {
            continue;
        }
        let k = ghi.len();
        if k >= HOURS_PER_YEAR {
            return Err(err(file, ln, 0, format!("more than {HOURS_PER_YEAR} hourly rows")));
        }
        fields.clear();
        fields.extend(line.split(','));
        if fields.len() <= needed {
            return Err(err(
                file,
                ln,
                fields.len() + 1,
                format!("row has {} columns, need {}", fields.len(), needed + 1),
            ));
        }
        let (em, ed, eh) = expected_stamp(k);
        let date = fields[c_date];
        let mut parts = date.split('/');
        let (m, d) = match (parts.next(), parts.next(), parts.next()) {
            (Some(m), Some(d), Some(_y)) => {
                (parse_u(file, ln, c_date + 1, m)?, parse_u(file, ln, c_date + 1, d)?)
            }
            _ => return Err(err(file, ln, c_date + 1, format!("date {date:?} is not MM/DD/YYYY"))),
        };
        let time = fields[c_time];
        let hour = match time.split_once(':') {
            Some((h, "00")) => parse_u(file, ln, c_time + 1, h)?,
            _ => return Err(err(file, ln, c_time + 1, format!("time {time:?} is not HH:00"))),
        };
        if (m, d) != (em, ed) {
            return Err(err(
                file,
                ln,
                c_date + 1,
                format!("date {date:?} out of sequence: expected {em:02}/{ed:02} for hourly row {}", k + 1),
            ));
        }
        if hour != eh {
            return Err(err(
                file,
                ln,
                c_time + 1,
                format!("time {time:?} out of sequence: expected {eh:02}:00"),
            ));
        }
        let g = parse_num(file, ln, c_ghi + 1, fields[c_ghi], "GHI")?;
        if !(0.0..=1500.0).contains(&g) {
            return Err(err(file, ln, c_ghi + 1, format!("GHI {g} W/m² outside 0..=1500")));
        }
        let t = parse_num(file, ln, c_temp + 1, fields[c_temp], "dry-bulb temperature")?;
        if !(-70.0..=70.0).contains(&t) {
            return Err(err(file, ln, c_temp + 1, format!("dry-bulb temperature {t} °C outside -70..=70")));
        }
        ghi.push(g);
        dry_bulb.push(t);
    }
    Ok(WeatherYear { ghi, dry_bulb })
}

/// BDEW day type (column group within a month).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DayType {
    /// `SA`: Saturday.
    Saturday,
    /// `FT`: Sunday or public holiday.
    Sunday,
    /// `WT`: working day, Monday to Friday.
    Workday,
}

impl DayType {
    /// Offset of this day type within a month's three columns (file order SA, FT, WT).
    #[must_use]
    pub const fn offset(self) -> usize {
        match self {
            Self::Saturday => 0,
            Self::Sunday => 1,
            Self::Workday => 2,
        }
    }

    const fn code(self) -> &'static str {
        match self {
            Self::Saturday => "SA",
            Self::Sunday => "FT",
            Self::Workday => "WT",
        }
    }
}

const MONTH_NAMES: [&str; 12] = [
    "Januar",
    "Februar",
    "März",
    "April",
    "Mai",
    "Juni",
    "Juli",
    "August",
    "September",
    "Oktober",
    "November",
    "Dezember",
];
const DAY_TYPES: [DayType; 3] = [DayType::Saturday, DayType::Sunday, DayType::Workday];

/// A BDEW standard load profile: 96 quarter-hours × 36 columns (month-major, then SA/FT/WT), in
/// kWh per quarter-hour for a normalised consumption of 1,000,000 kWh/a, before dynamisation.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadProfile {
    values: Vec<[f32; BDEW_COLUMNS]>,
}

impl LoadProfile {
    /// Energy in quarter-hour `quarter` (0..96, wrapping) for `month` (1..=12, clamped) and
    /// `day`, for 1,000,000 kWh/a (the raw table value, converted from kWh to Wh).
    #[must_use]
    pub fn energy(&self, quarter: usize, month: u8, day: DayType) -> WattHours {
        WattHours::saturating(self.raw(quarter % QUARTERS_PER_DAY, Self::column(month, day)) * 1000.0)
    }

    /// Sum of one day's 96 raw values (kWh per day at 1,000,000 kWh/a), as in the data README.
    #[must_use]
    pub fn daily_sum(&self, month: u8, day: DayType) -> WattHours {
        let col = Self::column(month, day);
        let kwh: f32 = (0..QUARTERS_PER_DAY).map(|q| self.raw(q, col)).sum();
        WattHours::saturating(kwh * 1000.0)
    }

    pub(crate) fn column(month: u8, day: DayType) -> usize {
        usize::from(month.clamp(1, 12) - 1) * 3 + day.offset()
    }

    pub(crate) fn raw(&self, quarter: usize, column: usize) -> f32 {
        self.values.get(quarter).and_then(|row| row.get(column)).copied().unwrap_or(0.0)
    }
}

/// Parse a BDEW profile CSV as shipped by demandlib: header row of month names (each three
/// times), header row `[kWh],SA,FT,WT,…`, then exactly 96 rows `HH:MM-HH:MM,v1,…,v36` with
/// non-negative values.
///
/// # Errors
/// [`DataError`] naming the line and column of the first problem.
pub fn parse_bdew(file: &'static str, text: &str) -> Result<LoadProfile, DataError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines =
        text.lines().map(|l| l.trim_end_matches('\r')).enumerate().filter(|(_, l)| !l.trim().is_empty());
    let Some((i1, months)) = lines.next() else {
        return Err(err(file, 1, 0, "missing month header line"));
    };
    let months: Vec<&str> = months.split(',').collect();
    if months.len() != BDEW_COLUMNS + 1 {
        return Err(err(file, i1 + 1, 0, format!("month header has {} columns, expected 37", months.len())));
    }
    for (c, name) in months.iter().enumerate().skip(1) {
        let expected = MONTH_NAMES[(c - 1) / 3];
        if name.trim() != expected {
            return Err(err(file, i1 + 1, c + 1, format!("expected month {expected:?}, found {name:?}")));
        }
    }
    let Some((i2, types)) = lines.next() else {
        return Err(err(file, 2, 0, "missing day-type header line"));
    };
    let types: Vec<&str> = types.split(',').collect();
    if types.len() != BDEW_COLUMNS + 1 {
        return Err(err(
            file,
            i2 + 1,
            0,
            format!("day-type header has {} columns, expected 37", types.len()),
        ));
    }
    for (c, t) in types.iter().enumerate().skip(1) {
        let expected = DAY_TYPES[(c - 1) % 3].code();
        if t.trim() != expected {
            return Err(err(file, i2 + 1, c + 1, format!("expected day type {expected:?}, found {t:?}")));
        }
    }
    let mut values = Vec::with_capacity(QUARTERS_PER_DAY);
    let mut last_line = i2 + 1;
    for (idx, line) in lines {
        let ln = idx + 1;
        last_line = ln;
        let q = values.len();
        if q >= QUARTERS_PER_DAY {
            return Err(err(file, ln, 0, "more than 96 quarter-hour rows"));
        }
        let mut fields = line.split(',');
        let label = fields.next().unwrap_or("");
        let start = format!("{:02}:{:02}-", q / 4, (q % 4) * 15);
        if !label.starts_with(&start) {
            return Err(err(file, ln, 1, format!("interval {label:?} out of sequence: expected {start}…")));
        }
        let mut row = [0.0_f32; BDEW_COLUMNS];
        let mut n = 0;
        for (c, field) in fields.enumerate() {
            if c >= BDEW_COLUMNS {
                return Err(err(file, ln, c + 2, "more than 36 value columns"));
            }
            let v = parse_num(file, ln, c + 2, field, "value")?;
            if v < 0.0 {
                return Err(err(file, ln, c + 2, format!("negative energy {v}")));
            }
            row[c] = v;
            n = c + 1;
        }
        if n != BDEW_COLUMNS {
            return Err(err(file, ln, n + 2, format!("row has {n} values, expected 36")));
        }
        values.push(row);
    }
    if values.len() != QUARTERS_PER_DAY {
        return Err(err(
            file,
            last_line,
            0,
            format!("found {} quarter-hour rows, expected 96", values.len()),
        ));
    }
    Ok(LoadProfile { values })
}

static TMY3: OnceLock<Result<WeatherYear, DataError>> = OnceLock::new();
static H25: OnceLock<Result<LoadProfile, DataError>> = OnceLock::new();

/// The embedded Greensboro TMY3 year (exactly 8760 hours), parsed on first use.
///
/// # Errors
/// The cached [`DataError`] if the embedded file does not parse or has the wrong row count.
pub fn tmy3_greensboro() -> Result<&'static WeatherYear, DataError> {
    TMY3.get_or_init(|| {
        let year = parse_tmy3(TMY3_NAME, TMY3_TEXT)?;
        if year.hours() == HOURS_PER_YEAR {
            Ok(year)
        } else {
            Err(err(
                TMY3_NAME,
                year.hours() + 3,
                0,
                format!("expected 8760 hourly rows, found {}", year.hours()),
            ))
        }
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// The embedded BDEW H25 household profile, parsed on first use.
///
/// # Errors
/// The cached [`DataError`] if the embedded file does not parse.
pub fn bdew_h25() -> Result<&'static LoadProfile, DataError> {
    H25.get_or_init(|| parse_bdew(BDEW_H25_NAME, BDEW_H25_TEXT)).as_ref().map_err(Clone::clone)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TMY_FIXTURE: &str = "723170,\"X\",NC,-5.0,36.1,-79.95,273\n\
Date (MM/DD/YYYY),Time (HH:MM),GHI (W/m^2),Dry-bulb (C)\n\
01/01/1988,01:00,0,10.0\n\
01/01/1988,02:00,5,9.5\n";

    #[test]
    fn tmy3_fixture_parses() {
        let y = parse_tmy3("fixture", TMY_FIXTURE).unwrap();
        assert_eq!(y.hours(), 2);
        assert_eq!(y.ghi(1), ems_core::watts!(5.0));
        assert_eq!(y.dry_bulb(0), ems_core::celsius!(10.0));
    }

    #[test]
    fn tmy3_errors_name_line_and_column() {
        let bad = TMY_FIXTURE.replace("02:00,5,", "02:00,x5,");
        let e = parse_tmy3("fixture", &bad).unwrap_err();
        assert_eq!((e.line, e.column), (4, 3), "{e}");
        assert!(e.to_string().contains("line 4 column 3"), "{e}");

        let gap = TMY_FIXTURE.replace("02:00", "03:00");
        let e = parse_tmy3("fixture", &gap).unwrap_err();
        assert_eq!((e.line, e.column), (4, 2), "{e}");

        let hot = TMY_FIXTURE.replace("9.5", "99.5");
        let e = parse_tmy3("fixture", &hot).unwrap_err();
        assert_eq!((e.line, e.column), (4, 4), "{e}");

        let no_col = TMY_FIXTURE.replace("GHI (W/m^2)", "GHI");
        let e = parse_tmy3("fixture", &no_col).unwrap_err();
        assert_eq!(e.line, 2);
    }

    #[test]
    fn embedded_tmy3_has_a_full_year() {
        let y = tmy3_greensboro().unwrap();
        assert_eq!(y.hours(), 8760);
        let kwh = y.annual_ghi().get() / 1000.0;
        assert!((kwh - 1566.0).abs() < 2.0, "annual GHI {kwh} kWh/m²");
        let peak = y.raw_ghi().iter().copied().fold(0.0_f32, f32::max);
        assert_eq!(peak, 1013.0);
        let (lo, hi) = y.raw_dry_bulb().iter().fold((f32::MAX, f32::MIN), |(a, b), &t| (a.min(t), b.max(t)));
        assert!((lo + 16.7).abs() < 0.05 && (hi - 35.6).abs() < 0.05, "{lo} {hi}");
    }

    fn bdew_fixture() -> String {
        let mut s = String::from(",");
        let months: Vec<String> =
            MONTH_NAMES.iter().flat_map(|m| [m.to_string(), m.to_string(), m.to_string()]).collect();
        s.push_str(&months.join(","));
        s.push_str("\n[kWh]");
        for _ in 0..12 {
            s.push_str(",SA,FT,WT");
        }
        s.push('\n');
        for q in 0..96 {
            s.push_str(&format!("{:02}:{:02}-xx", q / 4, (q % 4) * 15));
            for c in 0..36u16 {
                s.push_str(&format!(",{}", f32::from(c) + 0.5));
            }
            s.push('\n');
        }
        s
    }

    #[test]
    fn bdew_fixture_parses_and_errors_point_at_the_cell() {
        let text = bdew_fixture();
        let p = parse_bdew("fixture", &text).unwrap();
        assert_eq!(p.energy(0, 1, DayType::Workday), ems_core::watt_hours!(2500.0));
        assert_eq!(p.energy(5, 12, DayType::Saturday), ems_core::watt_hours!(33_500.0));

        let bad = text.replacen(",3.5,", ",-3.5,", 1);
        let e = parse_bdew("fixture", &bad).unwrap_err();
        assert_eq!((e.line, e.column), (3, 5), "{e}");

        let bad = text.replacen("FT", "XX", 1);
        let e = parse_bdew("fixture", &bad).unwrap_err();
        assert_eq!((e.line, e.column), (2, 3), "{e}");

        let short: String = text.lines().take(50).map(|l| format!("{l}\n")).collect();
        let e = parse_bdew("fixture", &short).unwrap_err();
        assert!(e.problem.contains("48 quarter-hour rows"), "{e}");
    }

    #[test]
    fn embedded_h25_matches_the_readme_quick_facts() {
        let p = bdew_h25().unwrap();
        let jan = p.daily_sum(1, DayType::Workday).get() / 1000.0;
        let jun = p.daily_sum(6, DayType::Workday).get() / 1000.0;
        assert!((jan - 2476.0).abs() < 1.0, "January WT {jan}");
        assert!((jun - 2773.0).abs() < 1.0, "June WT {jun}");
    }
}
