//! The feed: merging 15- and 60-minute points of several sources into `points()` and the
//! 15-minute `series()`, status with a failing preferred source, push validation through the
//! configured handle, and a property test of the merge.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns: a failure should fail the test loudly

use ems_strategies::prices::{
    validate_points, FeedStatus, PointError, PriceError, PriceFeed, PricePoint, PriceSource, SourceConfig,
    SourceKind,
};
use ems_strategies::Price;
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use std::path::Path;
use std::sync::{Arc, Mutex};

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn p(start: &str, end: &str, price: f64) -> PricePoint {
    PricePoint::new(ts(start), ts(end), Price::new(price))
}

/// A source answering what the test put into its shared slot.
#[derive(Debug, Clone)]
struct Scripted {
    kind: SourceKind,
    answer: Arc<Mutex<Result<Vec<PricePoint>, PriceError>>>,
}

impl Scripted {
    fn new(kind: SourceKind, points: Vec<PricePoint>) -> Self {
        Self { kind, answer: Arc::new(Mutex::new(Ok(points))) }
    }

    fn fail(&self) {
        *self.answer.lock().unwrap() = Err(PriceError::Transport {
            kind: self.kind,
            origin: "http://test".into(),
            cause: "down".into(),
        });
    }
}

impl PriceSource for Scripted {
    fn kind(&self) -> SourceKind {
        self.kind
    }
    fn fetch(&mut self, _now: Timestamp) -> Result<Vec<PricePoint>, PriceError> {
        self.answer.lock().unwrap().clone()
    }
}

fn push_feed_with(fallback: &Scripted) -> PriceFeed {
    let config: SourceConfig = toml::from_str("kind = \"push\"").unwrap();
    let mut feed = PriceFeed::from_configs(&[config], Path::new(".")).unwrap();
    feed.add(Box::new(fallback.clone()), SignedDuration::ZERO);
    feed
}

#[test]
fn mixed_quarter_and_hour_points_become_a_quarter_hour_series() {
    // Hourly day-ahead prices with a gap at 12:00–14:00, and pushed quarter-hours preferred.
    let hourly = Scripted::new(
        SourceKind::Entsoe,
        vec![
            p("2025-10-02T10:00:00Z", "2025-10-02T11:00:00Z", 0.20),
            p("2025-10-02T11:00:00Z", "2025-10-02T12:00:00Z", 0.21),
            p("2025-10-02T14:00:00Z", "2025-10-02T15:00:00Z", 0.40),
        ],
    );
    let mut feed = push_feed_with(&hourly);
    let push = feed.push_handle().unwrap();
    let pushed = [
        p("2025-10-02T10:00:00Z", "2025-10-02T10:15:00Z", 0.30),
        p("2025-10-02T10:15:00Z", "2025-10-02T10:30:00Z", 0.31),
        p("2025-10-02T13:00:00Z", "2025-10-02T13:15:00Z", 0.50),
    ];
    assert_eq!(push.push(&pushed), Ok(3));

    let now = ts("2025-10-02T10:20:00Z");
    feed.poll(now);
    assert_eq!(feed.status(now), FeedStatus::Live { kind: SourceKind::Push });
    let points = feed.points(now);
    assert_eq!(
        points,
        vec![
            p("2025-10-02T10:15:00Z", "2025-10-02T10:30:00Z", 0.31),
            p("2025-10-02T10:30:00Z", "2025-10-02T11:00:00Z", 0.20),
            p("2025-10-02T11:00:00Z", "2025-10-02T12:00:00Z", 0.21),
            p("2025-10-02T13:00:00Z", "2025-10-02T13:15:00Z", 0.50),
            p("2025-10-02T14:00:00Z", "2025-10-02T15:00:00Z", 0.40),
        ]
    );

    let series = feed.series(now).unwrap();
    assert_eq!(
        (series.start(), series.end(), series.step()),
        (ts("2025-10-02T10:15:00Z"), ts("2025-10-02T15:00:00Z"), SignedDuration::from_mins(15))
    );
    let values: Vec<Option<f64>> = series.values().iter().map(|v| v.map(Price::per_kwh)).collect();
    let none = None;
    assert_eq!(
        values,
        vec![
            Some(0.31),
            Some(0.20),
            Some(0.20),
            Some(0.21),
            Some(0.21),
            Some(0.21),
            Some(0.21),
            none,
            none,
            none,
            none,
            Some(0.50),
            none,
            none,
            none,
            Some(0.40),
            Some(0.40),
            Some(0.40),
            Some(0.40),
        ]
    );
}

#[test]
fn status_prefers_live_sources_and_falls_back_to_last_good() {
    let preferred =
        Scripted::new(SourceKind::Entsoe, vec![p("2025-10-02T10:00:00Z", "2025-10-02T12:00:00Z", 0.2)]);
    let second =
        Scripted::new(SourceKind::Awattar, vec![p("2025-10-02T10:00:00Z", "2025-10-02T11:00:00Z", 0.3)]);
    let mut feed = PriceFeed::new();
    feed.add(Box::new(preferred.clone()), SignedDuration::ZERO);
    feed.add(Box::new(second.clone()), SignedDuration::ZERO);
    let t0 = ts("2025-10-02T10:00:00Z");
    feed.poll(t0);
    assert_eq!(feed.status(t0), FeedStatus::Live { kind: SourceKind::Entsoe });

    preferred.fail();
    let t1 = ts("2025-10-02T10:30:00Z");
    feed.poll(t1);
    // The preferred source's last good price still leads the horizon ...
    assert_eq!(feed.points(t1)[0].price.per_kwh(), 0.2);
    // ... but the status says which source is fresh.
    assert_eq!(feed.status(t1), FeedStatus::Live { kind: SourceKind::Awattar });
    let t2 = ts("2025-10-02T11:30:00Z");
    feed.poll(t2);
    assert_eq!(feed.status(t2), FeedStatus::LastGood { kind: SourceKind::Entsoe, failing_since: t1 });
    assert_eq!(feed.status(t2).as_str(), "last_good");
    let reports = feed.sources();
    assert_eq!(reports.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>(), vec!["entsoe", "awattar"]);
    assert_eq!((reports[0].points, reports[0].covered_until), (1, Some(ts("2025-10-02T12:00:00Z"))));
    assert_eq!((reports[1].points, reports[1].covered_until), (0, None));
    assert!(reports[0].last_error.as_deref().unwrap().contains("entsoe source http://test"));
    let t3 = ts("2025-10-02T12:00:00Z");
    feed.poll(t3);
    assert_eq!(feed.status(t3), FeedStatus::Exhausted);
    assert!(feed.series(t3).is_none());
}

#[test]
fn pushes_are_validated_and_named() {
    let feed = push_feed_with(&Scripted::new(SourceKind::File, vec![]));
    let push = feed.push_handle().unwrap();
    let err = |points: &[PricePoint]| match push.push(points).unwrap_err() {
        PriceError::Invalid { kind: SourceKind::Push, error } => error,
        other => panic!("expected an invalid push, got {other:?}"),
    };
    assert_eq!(err(&[]), PointError::Empty);
    let e = err(&[
        p("2025-10-02T10:00:00Z", "2025-10-02T11:00:00Z", 0.1),
        p("2025-10-02T10:45:00Z", "2025-10-02T11:00:00Z", 0.1),
    ]);
    assert!(matches!(e, PointError::Overlap { index: 1, previous: 0, .. }));
    assert_eq!(
        e.to_string(),
        "point 1 (2025-10-02T10:45:00Z .. 2025-10-02T11:00:00Z) overlaps or precedes point 0 (2025-10-02T10:00:00Z .. 2025-10-02T11:00:00Z)"
    );
    assert!(matches!(
        err(&[p("2025-10-02T10:07:00Z", "2025-10-02T10:22:00Z", 0.1)]),
        PointError::NotOnQuarterHour { index: 0, .. }
    ));
    assert!(matches!(
        err(&[p("2025-10-02T10:00:00Z", "2025-10-02T10:20:00Z", 0.1)]),
        PointError::BadLength { .. }
    ));
    assert!(matches!(
        err(&[p("2025-10-02T10:00:00Z", "2025-10-02T09:00:00Z", 0.1)]),
        PointError::EndNotAfterStart { .. }
    ));
    let nan =
        PricePoint::new(ts("2025-10-02T10:00:00Z"), ts("2025-10-02T10:15:00Z"), Price::new(f64::INFINITY));
    assert!(matches!(err(&[nan]), PointError::NotFinite { .. }));
    let many: Vec<PricePoint> = (0..2001)
        .map(|i| {
            let start = ts("2025-10-02T00:00:00Z") + SignedDuration::from_mins(15 * i);
            PricePoint::new(start, start + SignedDuration::from_mins(15), Price::new(0.1))
        })
        .collect();
    assert!(matches!(err(&many), PointError::TooMany { count: 2001, max: 2000 }));
    assert!(push.points().is_empty());
}

/// Valid points from `base`: each after a gap of 0–3 quarter-hours, 1, 2 or 4 quarter-hours long.
fn points_strategy(base: Timestamp) -> impl Strategy<Value = Vec<PricePoint>> {
    prop::collection::vec((0_i64..4, prop::sample::select(vec![1_i64, 2, 4]), -500_i32..500), 0..30).prop_map(
        move |specs| {
            let mut at = base;
            specs
                .into_iter()
                .map(|(gap, len, milli)| {
                    let start = at + SignedDuration::from_mins(15 * gap);
                    at = start + SignedDuration::from_mins(15 * len);
                    PricePoint::new(start, at, Price::new(f64::from(milli) / 1000.0))
                })
                .collect()
        },
    )
}

fn price_at(points: &[PricePoint], t: Timestamp) -> Option<Price> {
    points.iter().find(|p| p.covers(t)).map(|p| p.price)
}

proptest! {
    #[test]
    fn merged_points_are_sorted_non_overlapping_and_first_source_wins(
        a in points_strategy(ts("2025-10-02T00:00:00Z")),
        b in points_strategy(ts("2025-10-02T00:00:00Z")),
        now_quarters in 0_i64..40,
        now_offset_s in 0_i64..900,
    ) {
        prop_assert!(validate_points(&a).is_ok() && validate_points(&b).is_ok());
        let mut feed = PriceFeed::new();
        feed.add(Box::new(Scripted::new(SourceKind::Push, a.clone())), SignedDuration::ZERO);
        feed.add(Box::new(Scripted::new(SourceKind::File, b.clone())), SignedDuration::ZERO);
        let now = ts("2025-10-02T00:00:00Z") + SignedDuration::from_secs(now_quarters * 900 + now_offset_s);
        feed.poll(now);
        let merged = feed.points(now);
        prop_assert!(validate_points(&merged).is_ok(), "{:?}", validate_points(&merged));
        prop_assert!(merged.iter().all(|p| p.end > now));
        let series = feed.series(now);
        // Every quarter from now's on: the first source that covers it sets the price.
        let first_quarter = ts("2025-10-02T00:00:00Z") + SignedDuration::from_secs(now_quarters * 900);
        for q in 0..200 {
            let t = first_quarter + SignedDuration::from_mins(15 * q);
            let expected = price_at(&a, t).or_else(|| price_at(&b, t));
            prop_assert_eq!(price_at(&merged, t), expected, "at {}", t);
            prop_assert_eq!(series.as_ref().and_then(|s| s.get(t)), expected, "series at {}", t);
        }
        prop_assert_eq!(series.is_none(), merged.is_empty());
    }
}
