//! The file source: the recorded daylight-saving-day CSVs, re-reading only on change, and its
//! errors.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns: a failure should fail the test loudly

use ems_strategies::prices::{
    FeedStatus, FileSource, ParseError, PriceError, PriceFeed, PriceSource, SourceKind,
};
use jiff::{SignedDuration, Timestamp};
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn sample(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/prices").join(name)
}

/// A fresh directory for one test.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ems-prices-{test}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_fall_back_day_has_25_distinct_hours() {
    let points =
        FileSource::new(sample("file_fall_back_2025-10-26.csv")).fetch(ts("2025-10-26T00:00:00Z")).unwrap();
    assert_eq!(points.len(), 25);
    assert!(points.iter().all(|p| p.length() == SignedDuration::from_hours(1)));
    assert_eq!(points[0].start, ts("2025-10-25T22:00:00Z")); // 00:00 CEST
                                                             // The two local 02:00 rows (+02:00, then +01:00) are the instants 00:00Z and 01:00Z.
    assert_eq!((points[2].start, points[3].start), (ts("2025-10-26T00:00:00Z"), ts("2025-10-26T01:00:00Z")));
    assert_eq!(points[24].end, ts("2025-10-26T23:00:00Z")); // 00:00 CET on the 27th
}

#[test]
fn the_spring_forward_day_has_23_hours() {
    let points = FileSource::new(sample("file_spring_forward_2026-03-29.csv"))
        .fetch(ts("2026-03-29T00:00:00Z"))
        .unwrap();
    assert_eq!(points.len(), 23);
    assert!(points.iter().all(|p| p.length() == SignedDuration::from_hours(1)));
    // 01:00 CET is followed by 03:00 CEST: one hour later, no gap.
    assert_eq!((points[1].start, points[2].start), (ts("2026-03-29T00:00:00Z"), ts("2026-03-29T01:00:00Z")));
    assert_eq!(points[22].end, ts("2026-03-29T22:00:00Z"));
}

#[test]
fn the_file_is_read_again_only_when_it_changes() {
    let dir = scratch("reread");
    let path = dir.join("prices.csv");
    let now = ts("2025-10-02T10:00:00Z");
    fs::write(&path, "timestamp,price\n2025-10-02T10:00:00Z,0.10\n2025-10-02T11:00:00Z,0.20\n").unwrap();
    let mut source = FileSource::new(&path);
    let first = source.fetch(now).unwrap();
    assert_eq!(first.iter().map(|p| p.price.per_kwh()).collect::<Vec<_>>(), vec![0.10, 0.20]);

    // Same length, same modification time: the cached points are returned, the file not read.
    let stamp = fs::metadata(&path).unwrap().modified().unwrap();
    fs::write(&path, "timestamp,price\n2025-10-02T10:00:00Z,0.90\n2025-10-02T11:00:00Z,0.20\n").unwrap();
    fs::File::options().write(true).open(&path).unwrap().set_modified(stamp).unwrap();
    assert_eq!(source.fetch(now).unwrap(), first);

    // Changed: read again (a 15-minute row appended, so the last hour becomes a quarter).
    fs::write(
        &path,
        "timestamp,price\n2025-10-02T10:00:00Z,0.90\n2025-10-02T11:00:00Z,0.20\n2025-10-02T11:15:00Z,0.30\n",
    )
    .unwrap();
    fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(stamp + Duration::from_secs(5))
        .unwrap();
    let second = source.fetch(now).unwrap();
    let got: Vec<_> = second.iter().map(|p| (p.length().as_mins(), p.price.per_kwh())).collect();
    assert_eq!(got, vec![(60, 0.90), (15, 0.20), (15, 0.30)]);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_broken_file_is_an_error_and_the_feed_keeps_the_last_good_prices() {
    let dir = scratch("broken");
    let path = dir.join("prices.csv");
    fs::write(&path, "timestamp,price\n2025-10-02T10:00:00Z,0.10\n2025-10-02T11:00:00Z,0.20\n").unwrap();
    let mut feed = PriceFeed::new();
    feed.add(Box::new(FileSource::new(&path)), SignedDuration::ZERO);
    let t0 = ts("2025-10-02T10:30:00Z");
    feed.poll(t0);
    assert_eq!(feed.status(t0), FeedStatus::Live { kind: SourceKind::File });

    fs::write(&path, "timestamp,price\n2025-10-02T10:00:00Z,0.10\n2025-10-02T11:00:00Z,zero\n").unwrap();
    fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    let mut source = FileSource::new(&path);
    match source.fetch(t0).unwrap_err() {
        PriceError::Decode {
            kind: SourceKind::File,
            origin,
            error: ParseError::Csv { line, column, value, .. },
        } => {
            assert_eq!((line, column, value.as_str()), (3, 2, "zero"));
            assert!(origin.ends_with("prices.csv"), "{origin}");
        }
        other => panic!("expected a CSV error, got {other:?}"),
    }
    let t1 = ts("2025-10-02T10:40:00Z");
    feed.poll(t1);
    assert_eq!(feed.status(t1), FeedStatus::LastGood { kind: SourceKind::File, failing_since: t1 });
    assert_eq!(feed.points(t1).len(), 2);
    assert!(feed.sources()[0].last_error.as_deref().unwrap().contains("line 3, column 2: 'zero'"));

    fs::remove_file(&path).unwrap();
    let e = FileSource::new(&path).fetch(t1).unwrap_err();
    assert!(matches!(e, PriceError::Read { kind: SourceKind::File, .. }), "{e:?}");
    fs::remove_dir_all(&dir).unwrap();
}
