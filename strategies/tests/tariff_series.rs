//! `PriceSeries`: lookups, truncation and construction errors.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns: a failure should fail the test loudly

use ems_strategies::tariff::{PriceSeries, SeriesError};
use ems_strategies::Price;
use jiff::{SignedDuration, Timestamp};

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

#[test]
fn lookups_and_truncation() {
    let q = SignedDuration::from_mins(15);
    let s = PriceSeries::new(
        ts("2024-01-01T00:00:00Z"),
        q,
        vec![Some(Price::new(0.1)), None, Some(Price::new(0.3))],
    )
    .unwrap();
    assert_eq!(s.end(), ts("2024-01-01T00:45:00Z"));
    assert_eq!(s.get(ts("2023-12-31T23:59:59Z")), None);
    assert_eq!(s.get(ts("2024-01-01T00:14:59.999Z")), Some(Price::new(0.1)));
    assert_eq!(s.get(ts("2024-01-01T00:15:00Z")), None, "empty slot");
    assert_eq!(s.get(ts("2024-01-01T00:30:00Z")), Some(Price::new(0.3)));
    assert_eq!(s.get(ts("2024-01-01T00:45:00Z")), None, "end is exclusive");
    assert_eq!(s.known_len(), 2);
    assert_eq!(s.mean(), Some(Price::new(0.2)));
    assert_eq!(s.truncated(ts("2024-01-01T00:30:00Z")).unwrap().len(), 2);
    assert_eq!(s.truncated(ts("2024-01-01T00:31:00Z")).unwrap().len(), 3);
    assert_eq!(s.truncated(ts("2030-01-01T00:00:00Z")).unwrap().len(), 3);
    assert!(s.truncated(ts("2024-01-01T00:00:00Z")).is_none());
}

#[test]
fn construction_errors() {
    let t = ts("2024-01-01T00:00:00Z");
    assert_eq!(PriceSeries::new(t, SignedDuration::from_mins(15), vec![]), Err(SeriesError::Empty));
    assert!(matches!(
        PriceSeries::new(t, SignedDuration::from_mins(7), vec![Some(Price::ZERO)]),
        Err(SeriesError::BadStep { .. })
    ));
    assert!(matches!(
        PriceSeries::new(t, SignedDuration::from_hours(1), vec![Some(Price::new(f64::NAN))]),
        Err(SeriesError::NotFinite { index: 0, .. })
    ));
    let pts = [
        (t, Price::ZERO),
        (ts("2024-01-01T01:00:00Z"), Price::ZERO),
        (ts("2024-01-01T03:00:00Z"), Price::ZERO),
    ];
    assert!(matches!(PriceSeries::from_points(&pts), Err(SeriesError::NotUniform { index: 2, .. })));
    let s = PriceSeries::from_points(&pts[..2]).unwrap();
    assert_eq!(s.step(), SignedDuration::from_hours(1));
}
