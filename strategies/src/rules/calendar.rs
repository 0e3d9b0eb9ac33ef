//! Public holidays by country, computed (not a table of years): fixed dates, dates relative to
//! Easter Sunday (the Gregorian computus, [`easter_sunday`]) and "n-th weekday of a month" rules.
//!
//! Only **national** holidays are included; regional ones (a German state's Epiphany or
//! Corpus Christi, Whit Monday in some Swiss cantons, …) go into the rule set's
//! `extra_holidays`. One-off holidays decreed for a single year (a coronation, a moved May bank
//! holiday, Germany's Reformation Day in 2017) are not included either.
//!
//! | code | country | holidays |
//! |---|---|---|
//! | `DE` | Germany | New Year, Good Friday, Easter Monday, Labour Day (1 May), Ascension, Whit Monday, Day of German Unity (3 Oct), Christmas Day, St Stephen's Day (26 Dec) |
//! | `AT` | Austria | New Year, Epiphany (6 Jan), Easter Monday, Labour Day, Ascension, Whit Monday, Corpus Christi, Assumption (15 Aug), National Day (26 Oct), All Saints (1 Nov), Immaculate Conception (8 Dec), Christmas Day, St Stephen's Day |
//! | `NL` | Netherlands | New Year, Easter Sunday and Monday, King's Day (27 Apr, 26 Apr when the 27th is a Sunday), Liberation Day (5 May, every year), Ascension, Whit Sunday and Monday, Christmas Day, Second Christmas Day |
//! | `FR` | France | New Year, Easter Monday, Labour Day, Victory in Europe (8 May), Ascension, Whit Monday, Bastille Day (14 Jul), Assumption, All Saints, Armistice (11 Nov), Christmas Day |
//! | `BE` | Belgium | New Year, Easter Monday, Labour Day, Ascension, Whit Monday, National Day (21 Jul), Assumption, All Saints, Armistice, Christmas Day |
//! | `GB` | England & Wales | New Year's Day, Good Friday, Easter Monday, Early May (first Monday of May), Spring (last Monday of May) and Summer (last Monday of August) bank holidays, Christmas Day, Boxing Day; with the substitute weekdays for New Year, Christmas and Boxing Day falling on a weekend |
//! | `DK` | Denmark | New Year, Maundy Thursday, Good Friday, Easter Sunday and Monday, General Prayer Day (until 2023), Ascension, Whit Sunday and Monday, Christmas Day, Second Christmas Day (Constitution Day, 5 Jun, is not a public holiday) |
//! | `SE` | Sweden | New Year, Epiphany, Good Friday, Easter Sunday and Monday, 1 May, Ascension, Whit Sunday, National Day (6 Jun), Midsummer Day (the Saturday 20–26 Jun), All Saints' Day (the Saturday 31 Oct – 6 Nov), Christmas Day, Boxing Day (Midsummer Eve and Christmas Eve are customary days off, not public holidays: add them to `extra_holidays`) |

use super::error::RuleError;
use jiff::civil::{Date, Weekday};
use std::fmt;

/// A country whose national public holidays are built in (module docs list them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Country {
    /// Germany (`DE`).
    De,
    /// Austria (`AT`).
    At,
    /// The Netherlands (`NL`).
    Nl,
    /// France (`FR`).
    Fr,
    /// Belgium (`BE`).
    Be,
    /// England & Wales (`GB`).
    Gb,
    /// Denmark (`DK`).
    Dk,
    /// Sweden (`SE`).
    Se,
}

impl Country {
    /// Every supported country.
    pub const ALL: [Self; 8] =
        [Self::De, Self::At, Self::Nl, Self::Fr, Self::Be, Self::Gb, Self::Dk, Self::Se];

    /// The ISO 3166-1 alpha-2 code.
    #[must_use]
    pub const fn code(self) -> &'static str {
        match self {
            Self::De => "DE",
            Self::At => "AT",
            Self::Nl => "NL",
            Self::Fr => "FR",
            Self::Be => "BE",
            Self::Gb => "GB",
            Self::Dk => "DK",
            Self::Se => "SE",
        }
    }

    /// The country of an ISO 3166-1 alpha-2 code (case-insensitive; `UK` is accepted for `GB`).
    ///
    /// # Errors
    /// [`RuleError`] at `country` naming the code when it is not supported.
    pub fn from_code(code: &str) -> Result<Self, RuleError> {
        let upper = code.to_ascii_uppercase();
        if upper == "UK" {
            return Ok(Self::Gb);
        }
        Self::ALL.into_iter().find(|c| c.code() == upper).ok_or_else(|| {
            RuleError::new(
                "country",
                format!("{code:?}"),
                "unknown country (supported: DE, AT, NL, FR, BE, GB, DK, SE)",
            )
        })
    }

    /// The name of the public holiday on `date`, if it is one.
    #[must_use]
    pub fn holiday(self, date: Date) -> Option<&'static str> {
        let easter = easter_sunday(date.year())?;
        // Days after Easter Sunday (negative: before).
        let e = i64::from(date.since(easter).ok()?.get_days());
        let md = (date.month(), date.day());
        match self {
            Self::De => de(md, e),
            Self::At => at(md, e),
            Self::Nl => nl(date, md, e),
            Self::Fr => fr(md, e),
            Self::Be => be(md, e),
            Self::Gb => gb(date, md, e),
            Self::Dk => dk(date.year(), md, e),
            Self::Se => se(date, md, e),
        }
    }
}

impl fmt::Display for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Easter Sunday of a Gregorian year (the anonymous Gregorian algorithm, "Meeus/Jones/Butcher").
/// `None` only for years jiff cannot represent.
#[must_use]
pub fn easter_sunday(year: i16) -> Option<Date> {
    let y = i32::from(year);
    let a = y.rem_euclid(19);
    let b = y.div_euclid(100);
    let c = y.rem_euclid(100);
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15).rem_euclid(30);
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k).rem_euclid(7);
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    Date::new(year, i8::try_from(month).ok()?, i8::try_from(day).ok()?).ok()
}

type Md = (i8, i8);

fn de(md: Md, e: i64) -> Option<&'static str> {
    Some(match (md, e) {
        ((1, 1), _) => "New Year's Day",
        (_, -2) => "Good Friday",
        (_, 1) => "Easter Monday",
        ((5, 1), _) => "Labour Day",
        (_, 39) => "Ascension Day",
        (_, 50) => "Whit Monday",
        ((10, 3), _) => "Day of German Unity",
        ((12, 25), _) => "Christmas Day",
        ((12, 26), _) => "St Stephen's Day",
        _ => return None,
    })
}

fn at(md: Md, e: i64) -> Option<&'static str> {
    Some(match (md, e) {
        ((1, 1), _) => "New Year's Day",
        ((1, 6), _) => "Epiphany",
        (_, 1) => "Easter Monday",
        ((5, 1), _) => "Labour Day",
        (_, 39) => "Ascension Day",
        (_, 50) => "Whit Monday",
        (_, 60) => "Corpus Christi",
        ((8, 15), _) => "Assumption Day",
        ((10, 26), _) => "National Day",
        ((11, 1), _) => "All Saints' Day",
        ((12, 8), _) => "Immaculate Conception",
        ((12, 25), _) => "Christmas Day",
        ((12, 26), _) => "St Stephen's Day",
        _ => return None,
    })
}

fn nl(date: Date, md: Md, e: i64) -> Option<&'static str> {
    // King's Day moves to the 26th when the 27th is a Sunday.
    let kings_day = match md {
        (4, 27) => date.weekday() != Weekday::Sunday,
        (4, 26) => date.weekday() == Weekday::Saturday,
        _ => false,
    };
    if kings_day {
        return Some("King's Day");
    }
    Some(match (md, e) {
        ((1, 1), _) => "New Year's Day",
        (_, 0) => "Easter Sunday",
        (_, 1) => "Easter Monday",
        ((5, 5), _) => "Liberation Day",
        (_, 39) => "Ascension Day",
        (_, 49) => "Whit Sunday",
        (_, 50) => "Whit Monday",
        ((12, 25), _) => "Christmas Day",
        ((12, 26), _) => "Second Christmas Day",
        _ => return None,
    })
}

fn fr(md: Md, e: i64) -> Option<&'static str> {
    Some(match (md, e) {
        ((1, 1), _) => "New Year's Day",
        (_, 1) => "Easter Monday",
        ((5, 1), _) => "Labour Day",
        ((5, 8), _) => "Victory in Europe Day",
        (_, 39) => "Ascension Day",
        (_, 50) => "Whit Monday",
        ((7, 14), _) => "Bastille Day",
        ((8, 15), _) => "Assumption Day",
        ((11, 1), _) => "All Saints' Day",
        ((11, 11), _) => "Armistice Day",
        ((12, 25), _) => "Christmas Day",
        _ => return None,
    })
}

fn be(md: Md, e: i64) -> Option<&'static str> {
    Some(match (md, e) {
        ((1, 1), _) => "New Year's Day",
        (_, 1) => "Easter Monday",
        ((5, 1), _) => "Labour Day",
        (_, 39) => "Ascension Day",
        (_, 50) => "Whit Monday",
        ((7, 21), _) => "National Day",
        ((8, 15), _) => "Assumption Day",
        ((11, 1), _) => "All Saints' Day",
        ((11, 11), _) => "Armistice Day",
        ((12, 25), _) => "Christmas Day",
        _ => return None,
    })
}

fn is_weekend(d: Date) -> bool {
    matches!(d.weekday(), Weekday::Saturday | Weekday::Sunday)
}

fn gb(date: Date, md: Md, e: i64) -> Option<&'static str> {
    let wd = date.weekday();
    let (month, day) = md;
    match e {
        -2 => return Some("Good Friday"),
        1 => return Some("Easter Monday"),
        _ => {}
    }
    if wd == Weekday::Monday {
        // The first Monday of May, the last Mondays of May and August.
        let last = day > date.days_in_month() - 7;
        match (month, day <= 7, last) {
            (5, true, _) => return Some("Early May bank holiday"),
            (5, _, true) => return Some("Spring bank holiday"),
            (8, _, true) => return Some("Summer bank holiday"),
            _ => {}
        }
    }
    // New Year's Day, or the Monday after when it falls on a weekend (2 or 3 January).
    match md {
        (1, 1) => return Some("New Year's Day"),
        (1, 2 | 3) if wd == Weekday::Monday => return Some("New Year's Day (substitute day)"),
        (12, 25) => return Some("Christmas Day"),
        (12, 26) => return Some("Boxing Day"),
        _ => {}
    }
    // Christmas and Boxing Day on a weekend: the next weekdays that are not holidays already
    // (25 Sat → Mon 27 and Tue 28; 25 Sun → Tue 27 for Christmas; 26 Sat → Mon 28).
    if month == 12 && (day == 27 || day == 28) && !is_weekend(date) {
        let christmas = date.with().day(25).build().ok()?;
        let boxing = date.with().day(26).build().ok()?;
        let substitutes = u8::from(is_weekend(christmas)) + u8::from(is_weekend(boxing));
        // The substitutes are the first `substitutes` weekdays after the 26th.
        let mut rank = 0u8;
        let mut d = boxing;
        while d < date {
            d = d.tomorrow().ok()?;
            if !is_weekend(d) {
                rank += 1;
            }
        }
        if rank >= 1 && rank <= substitutes {
            return Some("Christmas/Boxing Day (substitute day)");
        }
    }
    None
}

fn dk(year: i16, md: Md, e: i64) -> Option<&'static str> {
    Some(match (md, e) {
        ((1, 1), _) => "New Year's Day",
        (_, -3) => "Maundy Thursday",
        (_, -2) => "Good Friday",
        (_, 0) => "Easter Sunday",
        (_, 1) => "Easter Monday",
        // Abolished from 2024 by law.
        (_, 26) if year <= 2023 => "General Prayer Day",
        (_, 39) => "Ascension Day",
        (_, 49) => "Whit Sunday",
        (_, 50) => "Whit Monday",
        ((12, 25), _) => "Christmas Day",
        ((12, 26), _) => "Second Christmas Day",
        _ => return None,
    })
}

fn se(date: Date, md: Md, e: i64) -> Option<&'static str> {
    if date.weekday() == Weekday::Saturday {
        match md {
            (6, 20..=26) => return Some("Midsummer Day"),
            (10, 31) | (11, 1..=6) => return Some("All Saints' Day"),
            _ => {}
        }
    }
    Some(match (md, e) {
        ((1, 1), _) => "New Year's Day",
        ((1, 6), _) => "Epiphany",
        (_, -2) => "Good Friday",
        (_, 0) => "Easter Sunday",
        (_, 1) => "Easter Monday",
        ((5, 1), _) => "May Day",
        (_, 39) => "Ascension Day",
        (_, 49) => "Whit Sunday",
        ((6, 6), _) => "National Day",
        ((12, 25), _) => "Christmas Day",
        ((12, 26), _) => "Boxing Day",
        _ => return None,
    })
}

/// What kind of day a local date is, for rules and for the operator (`rules check`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DayType {
    /// Monday to Friday and not a holiday.
    Working,
    /// Saturday or Sunday and not a holiday.
    Weekend,
    /// A public holiday of the country or an extra holiday of the rule set (whatever the day of
    /// the week), with its name.
    Holiday(String),
}

impl fmt::Display for DayType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Working => f.write_str("working day"),
            Self::Weekend => f.write_str("weekend"),
            Self::Holiday(name) => write!(f, "holiday ({name})"),
        }
    }
}

/// A site's calendar: the country's public holidays plus extra local dates.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Calendar {
    country: Option<Country>,
    extra: Vec<Date>,
}

/// The name given to an `extra_holidays` date.
pub const EXTRA_HOLIDAY: &str = "extra holiday";

impl Calendar {
    /// A calendar of `country`'s public holidays (none without a country) and `extra` dates.
    #[must_use]
    pub fn new(country: Option<Country>, extra: impl IntoIterator<Item = Date>) -> Self {
        let mut extra: Vec<Date> = extra.into_iter().collect();
        extra.sort_unstable();
        extra.dedup();
        Self { country, extra }
    }

    /// The country, if any.
    #[must_use]
    pub const fn country(&self) -> Option<Country> {
        self.country
    }

    /// The extra holidays, sorted.
    #[must_use]
    pub fn extra(&self) -> &[Date] {
        &self.extra
    }

    /// The holiday's name on `date` (a country's holiday first, then [`EXTRA_HOLIDAY`]).
    #[must_use]
    pub fn holiday(&self, date: Date) -> Option<&'static str> {
        self.country
            .and_then(|c| c.holiday(date))
            .or_else(|| self.extra.binary_search(&date).is_ok().then_some(EXTRA_HOLIDAY))
    }

    /// The day type of `date`: a holiday wins over the weekend.
    #[must_use]
    pub fn day_type(&self, date: Date) -> DayType {
        match self.holiday(date) {
            Some(name) => DayType::Holiday(name.to_owned()),
            None if is_weekend(date) => DayType::Weekend,
            None => DayType::Working,
        }
    }

    /// Monday to Friday and not a holiday.
    #[must_use]
    pub fn is_working_day(&self, date: Date) -> bool {
        !is_weekend(date) && self.holiday(date).is_none()
    }

    /// Saturday or Sunday (holiday or not).
    #[must_use]
    pub fn is_weekend(date: Date) -> bool {
        is_weekend(date)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn easter_matches_published_dates() {
        // Published Western Easter dates.
        for (y, m, d) in [
            (2000, 4, 23),
            (2008, 3, 23),
            (2011, 4, 24),
            (2019, 4, 21),
            (2024, 3, 31),
            (2025, 4, 20),
            (2026, 4, 5),
            (2038, 4, 25),
        ] {
            assert_eq!(easter_sunday(y), Some(date(y, m, d)), "{y}");
        }
    }

    #[test]
    fn german_holidays_2026() {
        let de = Country::De;
        assert_eq!(de.holiday(date(2026, 4, 3)), Some("Good Friday"));
        assert_eq!(de.holiday(date(2026, 4, 6)), Some("Easter Monday"));
        assert_eq!(de.holiday(date(2026, 5, 14)), Some("Ascension Day"));
        assert_eq!(de.holiday(date(2026, 5, 25)), Some("Whit Monday"));
        assert_eq!(de.holiday(date(2026, 10, 3)), Some("Day of German Unity"));
        assert_eq!(de.holiday(date(2026, 4, 5)), None, "Easter Sunday is no statutory holiday in DE");
        assert_eq!(de.holiday(date(2026, 6, 4)), None, "Corpus Christi is regional in DE");
        assert_eq!(Country::At.holiday(date(2026, 6, 4)), Some("Corpus Christi"));
    }

    #[test]
    fn england_substitute_days() {
        let gb = Country::Gb;
        // 2021: 25 Dec Sat, 26 Sun → Mon 27 and Tue 28.
        assert!(gb.holiday(date(2021, 12, 27)).is_some());
        assert!(gb.holiday(date(2021, 12, 28)).is_some());
        // 2022: 25 Dec Sun, 26 Mon → Tue 27 only.
        assert!(gb.holiday(date(2022, 12, 27)).is_some());
        assert!(gb.holiday(date(2022, 12, 28)).is_none());
        // 2020: 26 Dec Sat → Mon 28.
        assert!(gb.holiday(date(2020, 12, 28)).is_some());
        assert!(gb.holiday(date(2020, 12, 29)).is_none());
        // 2023: 1 Jan Sun → Mon 2 Jan.
        assert!(gb.holiday(date(2023, 1, 2)).is_some());
        assert!(gb.holiday(date(2024, 1, 2)).is_none());
        // 2026 bank holidays: 4 May, 25 May, 31 Aug.
        assert_eq!(gb.holiday(date(2026, 5, 4)), Some("Early May bank holiday"));
        assert_eq!(gb.holiday(date(2026, 5, 25)), Some("Spring bank holiday"));
        assert_eq!(gb.holiday(date(2026, 8, 31)), Some("Summer bank holiday"));
        assert_eq!(gb.holiday(date(2026, 8, 24)), None);
    }

    #[test]
    fn unknown_country_names_the_value() {
        let e = Country::from_code("XX").unwrap_err();
        assert_eq!(e.path, "country");
        assert!(e.to_string().contains("\"XX\""), "{e}");
        assert_eq!(Country::from_code("de").unwrap(), Country::De);
    }
}
