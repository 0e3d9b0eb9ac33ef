//! The aWATTar source against a local HTTP server: the request it sends, success, HTTP 500,
//! timeout, connection refused, and the feed's last-good / exhausted / live cycle.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns: a failure should fail the test loudly

mod prices_support;

use ems_strategies::prices::{
    parse_awattar, AwattarSource, FeedEvent, FeedStatus, PriceError, PriceFeed, PriceSource, SourceKind,
};
use jiff::{SignedDuration, Timestamp};
use prices_support::{query_param, refused_base, Reply, TestServer};
use std::time::Duration;

const SAMPLE: &str = include_str!("data/prices/awattar_marketdata.json");

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn short(source: AwattarSource) -> AwattarSource {
    source.with_timeouts(Duration::from_millis(500), Duration::from_millis(300))
}

/// Hourly prices for `hours` hours from `start`, as aWATTar answers.
fn hourly(start: &str, hours: i64, eur_per_mwh: f64) -> String {
    let start = ts(start).as_millisecond();
    let entries: Vec<String> = (0..hours)
        .map(|h| {
            format!(
                r#"{{"start_timestamp":{},"end_timestamp":{},"marketprice":{eur_per_mwh},"unit":"Eur/MWh"}}"#,
                start + h * 3_600_000,
                start + (h + 1) * 3_600_000
            )
        })
        .collect();
    format!(r#"{{"object":"list","data":[{}]}}"#, entries.join(","))
}

#[test]
fn the_recorded_sample_gives_hourly_then_quarter_hourly_points() {
    let points = parse_awattar(SAMPLE).unwrap();
    assert_eq!(points.len(), 24 + 96);
    let (hours, quarters) = points.split_at(24);
    assert!(hours.iter().all(|p| p.length() == SignedDuration::from_hours(1)));
    assert!(quarters.iter().all(|p| p.length() == SignedDuration::from_mins(15)));
    assert_eq!(hours[0].start, ts("2025-09-30T22:00:00Z"));
    assert_eq!(quarters[0].start, hours[23].end);
    assert!((hours[0].price.per_kwh() - 0.056_02).abs() < 1e-12); // 56.02 EUR/MWh
                                                                  // The sample's negative quarter-hours around midday.
    let negative: Vec<Timestamp> =
        quarters.iter().filter(|p| p.price.per_kwh() < 0.0).map(|p| p.start).collect();
    assert_eq!(negative.first(), Some(&ts("2025-10-02T10:30:00Z")));
    assert_eq!(negative.len(), 4);
}

#[test]
fn sends_the_documented_request_and_parses_the_answer() {
    let server = TestServer::start(Reply::Ok(SAMPLE.to_owned()));
    let mut source = short(AwattarSource::new(format!("{}/", server.base)));
    let now = ts("2025-10-01T10:40:00Z");
    let points = source.fetch(now).unwrap();
    assert_eq!(points.len(), 24 + 96);

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let target = &requests[0];
    assert!(target.starts_with("/v1/marketdata?"), "{target}");
    assert_eq!(
        query_param(target, "start"),
        Some(ts("2025-10-01T10:00:00Z").as_millisecond().to_string().as_str())
    );
    assert_eq!(
        query_param(target, "end"),
        Some(ts("2025-10-03T10:00:00Z").as_millisecond().to_string().as_str())
    );
}

#[test]
fn http_500_timeout_and_refused_are_errors_naming_kind_and_url() {
    let now = ts("2025-10-01T10:40:00Z");
    let server = TestServer::start(Reply::Status(500, "internal error".to_owned()));
    let mut source = short(AwattarSource::new(server.base.clone()));
    match source.fetch(now).unwrap_err() {
        PriceError::Status { kind, origin, status, detail } => {
            assert_eq!((kind, status, detail.as_str()), (SourceKind::Awattar, 500, "internal error"));
            assert!(origin.starts_with(&format!("{}/v1/marketdata?start=", server.base)), "{origin}");
        }
        other => panic!("expected a status error, got {other:?}"),
    }

    server.set(Reply::Hang);
    let e = source.fetch(now).unwrap_err();
    assert!(matches!(&e, PriceError::Timeout { kind: SourceKind::Awattar, .. }), "{e:?}");
    assert!(e.to_string().starts_with(&format!("awattar source {}/v1/marketdata", server.base)), "{e}");

    let base = refused_base();
    let e = short(AwattarSource::new(base.clone())).fetch(now).unwrap_err();
    assert!(
        matches!(&e, PriceError::Transport { kind: SourceKind::Awattar, origin, .. } if origin.starts_with(&base)),
        "{e:?}"
    );

    // https to a plain-HTTP server: the TLS client is set up (its crypto provider found) and
    // the handshake fails as a transport error, not a panic.
    let tls_base = server.base.replace("http://", "https://");
    let e = short(AwattarSource::new(tls_base.clone())).fetch(now).unwrap_err();
    assert!(matches!(&e, PriceError::Transport { origin, .. } if origin.starts_with(&tls_base)), "{e:?}");

    server.set(Reply::Ok("<html>maintenance</html>".to_owned()));
    let e = source.fetch(now).unwrap_err();
    assert!(matches!(&e, PriceError::Decode { kind: SourceKind::Awattar, .. }), "{e:?}");
}

#[test]
fn the_feed_keeps_last_good_prices_until_they_run_out_then_recovers() {
    let server = TestServer::start(Reply::Ok(SAMPLE.to_owned()));
    let mut feed = PriceFeed::new();
    feed.add(Box::new(short(AwattarSource::new(server.base.clone()))), SignedDuration::from_hours(1));

    // Live on the recorded sample.
    let t0 = ts("2025-10-01T10:40:00Z");
    let events = feed.poll(t0);
    assert_eq!(
        events,
        vec![
            FeedEvent::Updated {
                kind: SourceKind::Awattar,
                points: 24 + 96 - 12, // the hours before 10:00 have ended
                first: Some(ts("2025-10-01T10:00:00Z")),
                last: Some(ts("2025-10-02T22:00:00Z")),
            },
            FeedEvent::StatusChanged {
                from: FeedStatus::Exhausted,
                to: FeedStatus::Live { kind: SourceKind::Awattar }
            },
        ]
    );

    // The server fails: the sample's prices stay in use.
    server.set(Reply::Status(500, String::new()));
    let t1 = ts("2025-10-01T11:40:00Z");
    let events = feed.poll(t1);
    assert!(
        matches!(&events[0], FeedEvent::Failed { kind: SourceKind::Awattar, error } if error.contains("HTTP status 500"))
    );
    let last_good = FeedStatus::LastGood { kind: SourceKind::Awattar, failing_since: t1 };
    assert_eq!(
        events[1],
        FeedEvent::StatusChanged { from: FeedStatus::Live { kind: SourceKind::Awattar }, to: last_good }
    );
    assert_eq!(feed.status(t1), last_good);
    let noon = feed.series(t1).unwrap().get(ts("2025-10-02T12:00:00Z")).unwrap().per_kwh();
    assert!((noon - 0.094_37).abs() < 1e-12, "{noon}"); // 94.37 EUR/MWh in the sample
    assert_eq!(feed.sources()[0].covered_until, Some(ts("2025-10-02T22:00:00Z")));

    // Still failing after the prices ran out: exhausted.
    let t2 = ts("2025-10-02T22:30:00Z");
    let events = feed.poll(t2);
    assert!(matches!(events[0], FeedEvent::Failed { .. }));
    assert_eq!(events[1], FeedEvent::StatusChanged { from: last_good, to: FeedStatus::Exhausted });
    assert!(feed.points(t2).is_empty());
    assert!(feed.series(t2).is_none());

    // The server is back: live again at the next retry (the second failure waits 2 min).
    server.set(Reply::Ok(hourly("2025-10-02T22:00:00Z", 24, 80.0)));
    assert!(feed.poll(ts("2025-10-02T22:31:00Z")).is_empty());
    let t3 = ts("2025-10-02T22:32:00Z");
    let events = feed.poll(t3);
    assert!(matches!(events[0], FeedEvent::Updated { points: 24, .. }));
    assert_eq!(
        events[1],
        FeedEvent::StatusChanged {
            from: FeedStatus::Exhausted,
            to: FeedStatus::Live { kind: SourceKind::Awattar }
        }
    );
    let report = &feed.sources()[0];
    assert_eq!((report.last_ok, report.last_error.as_deref(), report.failing_since), (Some(t3), None, None));
    assert_eq!(server.requests().len(), 4);
}
