//! Public holidays of every supported country against published dates, and day types.
// Test code: a failed unwrap or panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ems_strategies::rules::calendar::{easter_sunday, Calendar, Country, DayType, EXTRA_HOLIDAY};
use jiff::civil::{date, Date};

fn holidays(c: Country, year: i16) -> Vec<Date> {
    let mut d = date(year, 1, 1);
    let mut out = Vec::new();
    while d.year() == year {
        if c.holiday(d).is_some() {
            out.push(d);
        }
        d = d.tomorrow().unwrap();
    }
    out
}

fn dates(list: &[(i8, i8)], year: i16) -> Vec<Date> {
    list.iter().map(|&(m, d)| date(year, m, d)).collect()
}

#[test]
fn each_country_has_exactly_its_published_holidays_in_2026() {
    // Easter Sunday 2026 is 5 April.
    assert_eq!(easter_sunday(2026), Some(date(2026, 4, 5)));
    let cases: [(Country, &[(i8, i8)]); 8] = [
        (Country::De, &[(1, 1), (4, 3), (4, 6), (5, 1), (5, 14), (5, 25), (10, 3), (12, 25), (12, 26)]),
        (
            Country::At,
            &[
                (1, 1),
                (1, 6),
                (4, 6),
                (5, 1),
                (5, 14),
                (5, 25),
                (6, 4),
                (8, 15),
                (10, 26),
                (11, 1),
                (12, 8),
                (12, 25),
                (12, 26),
            ],
        ),
        (
            Country::Nl,
            &[(1, 1), (4, 5), (4, 6), (4, 27), (5, 5), (5, 14), (5, 24), (5, 25), (12, 25), (12, 26)],
        ),
        (
            Country::Fr,
            &[
                (1, 1),
                (4, 6),
                (5, 1),
                (5, 8),
                (5, 14),
                (5, 25),
                (7, 14),
                (8, 15),
                (11, 1),
                (11, 11),
                (12, 25),
            ],
        ),
        (
            Country::Be,
            &[(1, 1), (4, 6), (5, 1), (5, 14), (5, 25), (7, 21), (8, 15), (11, 1), (11, 11), (12, 25)],
        ),
        // 26 Dec 2026 is a Saturday: Boxing Day's substitute is Monday 28 Dec.
        (Country::Gb, &[(1, 1), (4, 3), (4, 6), (5, 4), (5, 25), (8, 31), (12, 25), (12, 26), (12, 28)]),
        (
            Country::Dk,
            &[(1, 1), (4, 2), (4, 3), (4, 5), (4, 6), (5, 14), (5, 24), (5, 25), (12, 25), (12, 26)],
        ),
        // Midsummer Day: Sat 20 June; All Saints' Day: Sat 31 October.
        (
            Country::Se,
            &[
                (1, 1),
                (1, 6),
                (4, 3),
                (4, 5),
                (4, 6),
                (5, 1),
                (5, 14),
                (5, 24),
                (6, 6),
                (6, 20),
                (10, 31),
                (12, 25),
                (12, 26),
            ],
        ),
    ];
    for (c, want) in cases {
        assert_eq!(holidays(c, 2026), dates(want, 2026), "{c}");
    }
}

#[test]
fn rules_that_move_with_the_year() {
    // King's Day 2025: the 27th is a Sunday, so Saturday the 26th.
    assert_eq!(Country::Nl.holiday(date(2025, 4, 26)), Some("King's Day"));
    assert_eq!(Country::Nl.holiday(date(2025, 4, 27)), None);
    // Denmark's General Prayer Day: 5 May 2023, abolished from 2024 (26 April 2024).
    assert_eq!(Country::Dk.holiday(date(2023, 5, 5)), Some("General Prayer Day"));
    assert_eq!(Country::Dk.holiday(date(2024, 4, 26)), None);
    // Easter-based dates in another year: Easter 2025 is 20 April.
    assert_eq!(Country::De.holiday(date(2025, 4, 18)), Some("Good Friday"));
    assert_eq!(Country::De.holiday(date(2025, 5, 29)), Some("Ascension Day"));
    assert_eq!(Country::De.holiday(date(2025, 6, 9)), Some("Whit Monday"));
}

#[test]
fn day_types_with_extra_holidays() {
    let cal = Calendar::new(Some(Country::De), [date(2026, 12, 24)]);
    assert_eq!(cal.day_type(date(2026, 12, 23)), DayType::Working);
    assert_eq!(cal.day_type(date(2026, 12, 24)), DayType::Holiday(EXTRA_HOLIDAY.to_owned()));
    assert_eq!(cal.day_type(date(2026, 12, 25)), DayType::Holiday("Christmas Day".to_owned()));
    assert_eq!(cal.day_type(date(2026, 12, 27)), DayType::Weekend);
    // A holiday on a Saturday is a holiday for the day type, and a weekend day too.
    let sat = date(2026, 12, 26);
    assert_eq!(cal.day_type(sat), DayType::Holiday("St Stephen's Day".to_owned()));
    assert!(Calendar::is_weekend(sat));
    assert!(!cal.is_working_day(date(2026, 10, 2 + 1)));
    assert!(cal.is_working_day(date(2026, 10, 2)));
    // Without a country only the extra dates are holidays.
    let none = Calendar::new(None, []);
    assert_eq!(none.day_type(date(2026, 12, 25)), DayType::Working);
    assert_eq!(DayType::Holiday("Whit Monday".into()).to_string(), "holiday (Whit Monday)");
}
