//! The SMARD day-ahead files in `strategies/data/`: row counts, daylight-saving days, values.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns: a failure should fail the test loudly

use ems_strategies::tariff::{parse_smard, parse_smard_zone, PriceSeries};
use ems_strategies::Price;
use jiff::civil::date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

const Y2015: &str = include_str!("../data/smard_day_ahead_2015.csv");
const Y2018: &str = include_str!("../data/smard_day_ahead_2018.csv");

fn berlin() -> TimeZone {
    TimeZone::get("Europe/Berlin").unwrap()
}

/// The slots whose start lies on local date `day` in Berlin.
fn local_day(s: &PriceSeries, y: i16, m: i8, d: i8) -> Vec<(Timestamp, Option<Price>)> {
    let tz = berlin();
    s.iter().filter(|(t, _)| tz.to_datetime(*t).date() == date(y, m, d)).collect()
}

#[test]
fn row_counts_and_span() {
    let s = parse_smard(Y2018).unwrap();
    assert_eq!(s.len(), 8760);
    assert_eq!(s.known_len(), 8760, "DE/AT/LU 6551 h + DE/LU 2209 h");
    assert_eq!(s.step(), SignedDuration::from_hours(1));
    // 2018-01-01 00:00 CET is 2017-12-31 23:00 UTC; the year ends 2018-12-31 23:00 UTC.
    assert_eq!(s.start(), "2017-12-31T23:00:00Z".parse::<Timestamp>().unwrap());
    assert_eq!(s.end(), "2018-12-31T23:00:00Z".parse::<Timestamp>().unwrap());

    let s15 = parse_smard(Y2015).unwrap();
    assert_eq!(s15.len(), 8760);
    assert_eq!(s15.known_len(), 8664, "the German zone has no prices for 1-4 January 2015");
    assert_eq!(s15.get("2015-01-04T12:00:00Z".parse().unwrap()), None);
    assert!(s15.get("2015-01-05T12:00:00Z".parse().unwrap()).is_some());
}

#[test]
fn daylight_saving_days_2018() {
    let s = parse_smard(Y2018).unwrap();
    let spring = local_day(&s, 2018, 3, 25);
    assert_eq!(spring.len(), 23);
    let fall = local_day(&s, 2018, 10, 28);
    assert_eq!(fall.len(), 25);
    for day in [&spring, &fall] {
        for pair in day.windows(2) {
            assert_eq!(
                pair[1].0.duration_since(pair[0].0),
                SignedDuration::from_hours(1),
                "consecutive UTC hours"
            );
        }
    }
    // Spring: 01:00 CET = 00:00 UTC, then 03:00 CEST = 01:00 UTC.
    assert_eq!(spring[1].0, "2018-03-25T00:00:00Z".parse::<Timestamp>().unwrap());
    assert_eq!(spring[2].0, "2018-03-25T01:00:00Z".parse::<Timestamp>().unwrap());
    assert_eq!(spring[2].1, Some(Price::new(0.03785)), "the 3:00 AM row");
    // Fall: the first 2:00 AM row is CEST (00:00 UTC), the second CET (01:00 UTC).
    assert_eq!(fall[2].0, "2018-10-28T00:00:00Z".parse::<Timestamp>().unwrap());
    assert_eq!(fall[2].1, Some(Price::new(0.04162)));
    assert_eq!(fall[3].0, "2018-10-28T01:00:00Z".parse::<Timestamp>().unwrap());
    assert_eq!(fall[3].1, Some(Price::new(0.04159)));
    assert_eq!(fall[24].1, Some(Price::new(0.02793)), "11:00 PM row");
    // Every other day has 24 hours.
    let tz = berlin();
    let mut per_day = std::collections::BTreeMap::new();
    for (t, _) in s.iter() {
        *per_day.entry(tz.to_datetime(t).date()).or_insert(0) += 1;
    }
    assert_eq!(per_day.len(), 365);
    for (d, n) in per_day {
        let expected = if d == date(2018, 3, 25) {
            23
        } else if d == date(2018, 10, 28) {
            25
        } else {
            24
        };
        assert_eq!(n, expected, "{d}");
    }
}

#[test]
fn daylight_saving_days_2015() {
    let s = parse_smard(Y2015).unwrap();
    assert_eq!(local_day(&s, 2015, 3, 29).len(), 23);
    assert_eq!(local_day(&s, 2015, 10, 25).len(), 25);
}

#[test]
fn zone_split_and_values_2018() {
    let s = parse_smard(Y2018).unwrap();
    // Sep 30 11:00 PM is the last DE/AT/LU hour (60.87), Oct 1 12:00 AM the first DE/LU (59.53).
    assert_eq!(s.get("2018-09-30T21:00:00Z".parse().unwrap()), Some(Price::new(0.06087)));
    assert_eq!(s.get("2018-09-30T22:00:00Z".parse().unwrap()), Some(Price::new(0.05953)));
    let min = s.min().unwrap().per_kwh() * 1000.0;
    let max = s.max().unwrap().per_kwh() * 1000.0;
    assert!((min - -76.01).abs() < 1e-9, "min {min} EUR/MWh");
    assert!((max - 128.26).abs() < 1e-9, "max {max} EUR/MWh");
    let negative = s.values().iter().flatten().filter(|p| p.per_kwh() < 0.0).count();
    assert!(negative > 100, "{negative} negative hours");
    let mean = s.mean().unwrap().per_kwh() * 1000.0;
    assert!((40.0..50.0).contains(&mean), "mean {mean} EUR/MWh");
}

#[test]
fn other_zones_and_missing_columns() {
    let fr = parse_smard_zone(Y2018, "France").unwrap();
    assert_eq!(fr.known_len(), 8760);
    let at = parse_smard_zone(Y2018, "Austria").unwrap();
    assert_eq!(at.known_len(), 2209, "Austria has its own zone from 2018-10-01");
    let e = parse_smard_zone(Y2018, "Atlantis").unwrap_err();
    assert_eq!((e.line, e.column), (1, 0));
    assert!(e.to_string().contains("Atlantis"), "{e}");
}

#[test]
fn errors_name_line_and_column() {
    // Corrupt the price of line 7204 (the second 2:00 AM on Oct 28) in the real file.
    let mut lines: Vec<String> = Y2018.lines().map(str::to_owned).collect();
    lines[7203] = lines[7203].replacen("41.59", "4x.59", 1);
    let e = parse_smard(&lines.join("\n")).unwrap_err();
    assert_eq!((e.line, e.column), (7204, 3), "{e}");
    // Drop the first 2:00 AM row: the remaining one is taken as CEST and 3:00 AM is then an
    // hour too late: the file is refused, not shifted.
    let mut lines: Vec<String> = Y2018.lines().map(str::to_owned).collect();
    lines.remove(7202);
    let e = parse_smard(&lines.join("\n")).unwrap_err();
    assert_eq!(e.line, 7204, "{e}");
    // An hour removed elsewhere.
    let mut lines: Vec<String> = Y2018.lines().map(str::to_owned).collect();
    lines.remove(100);
    let e = parse_smard(&lines.join("\n")).unwrap_err();
    assert_eq!((e.line, e.column), (101, 2), "{e}");
}
