//! The ENTSO-E source: the recorded A44 and acknowledgement documents, and the source against a
//! local HTTP server (request, success, HTTP 500, acknowledgement, timeout, connection refused,
//! the token never shown, and the feed's last-good / exhausted / live cycle).
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns: a failure should fail the test loudly

mod prices_support;

use ems_strategies::prices::{
    parse_entsoe, EntsoeSource, FeedEvent, FeedStatus, ParseError, PriceError, PriceFeed, PriceSource,
    SourceConfig, SourceKind, Token,
};
use jiff::{SignedDuration, Timestamp};
use prices_support::{query_param, refused_base, Reply, TestServer};
use std::path::Path;
use std::time::Duration;

const A44: &str = include_str!("data/prices/entsoe_a44.xml");
const ACK: &str = include_str!("data/prices/entsoe_acknowledgement.xml");
const ZONE: &str = "10Y1001A1001A82H";
const SECRET: &str = "tok-5ecret-0123456789";

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

fn source(base: &str) -> EntsoeSource {
    EntsoeSource::new(format!("{base}/api"), ZONE, Token::new(SECRET))
        .with_timeouts(Duration::from_millis(500), Duration::from_millis(300))
}

#[test]
fn the_recorded_a44_document_gives_hourly_then_quarter_hourly_points() {
    let points = parse_entsoe(A44).unwrap();
    assert_eq!(points.len(), 24 + 96);
    let (hours, quarters) = points.split_at(24);
    assert!(hours.iter().all(|p| p.length() == SignedDuration::from_hours(1)));
    assert!(quarters.iter().all(|p| p.length() == SignedDuration::from_mins(15)));
    assert_eq!(hours[0].start, ts("2025-09-30T22:00:00Z"));
    assert_eq!(quarters[0].start, ts("2025-10-01T22:00:00Z"));
    assert_eq!(quarters[95].end, ts("2025-10-02T22:00:00Z"));
    assert!(close(hours[0].price.per_kwh(), 0.056_02));
    // A03: position 5 and the last hour were omitted and repeat the position before them.
    assert!(close(hours[4].price.per_kwh(), 0.059_02));
    assert!(close(hours[23].price.per_kwh(), 0.064_15));
    // Quarter positions 42 and 43 were omitted and repeat 41.
    for q in &quarters[40..43] {
        assert!(close(q.price.per_kwh(), 0.101_99), "{q:?}");
    }
    // Sequence 1 (SDAC); the sample's sequence-2 series (EXAA) would read 0.102_37.
    assert!(close(quarters[43].price.per_kwh(), 0.099_22));
    assert!(close(quarters[95].price.per_kwh(), 0.056_99));
}

#[test]
fn an_acknowledgement_is_an_error_with_its_reason() {
    let e = parse_entsoe(ACK).unwrap_err();
    match &e {
        ParseError::Acknowledgement { reason } => {
            assert!(reason.starts_with("No matching data found for Data item Day-ahead Prices"), "{reason}");
        }
        other => panic!("expected an acknowledgement, got {other:?}"),
    }
    assert!(matches!(parse_entsoe("<a><b></a>"), Err(ParseError::Syntax { .. })));
}

#[test]
fn a01_gaps_stay_gaps_and_bad_fields_are_named() {
    let doc = |resolution: &str, positions: &str| {
        format!(
            "<Publication_MarketDocument xmlns=\"urn:x\"><TimeSeries><curveType>A01</curveType><Period>\
             <timeInterval><start>2025-10-01T22:00Z</start><end>2025-10-01T23:00Z</end></timeInterval>\
             <resolution>{resolution}</resolution>{positions}</Period></TimeSeries></Publication_MarketDocument>"
        )
    };
    let pt = |pos: u32, price: &str| {
        format!("<Point><position>{pos}</position><price.amount>{price}</price.amount></Point>")
    };
    let points = parse_entsoe(&doc("PT15M", &format!("{}{}", pt(1, "10"), pt(3, "30")))).unwrap();
    assert_eq!(
        points.iter().map(|p| p.start).collect::<Vec<_>>(),
        vec![ts("2025-10-01T22:00:00Z"), ts("2025-10-01T22:30:00Z")]
    );
    let e = parse_entsoe(&doc("PT5M", &pt(1, "10"))).unwrap_err();
    assert!(
        matches!(&e, ParseError::Value { field, value, .. } if field == "resolution" && value == "PT5M"),
        "{e}"
    );
    let e = parse_entsoe(&doc("PT15M", &pt(5, "10"))).unwrap_err();
    assert!(
        matches!(&e, ParseError::Value { field, value, .. } if field == "position" && value == "5"),
        "{e}"
    );
    let e = parse_entsoe(&doc("PT15M", &pt(1, "ten"))).unwrap_err();
    assert!(
        matches!(&e, ParseError::Value { field, value, .. } if field == "price.amount" && value == "ten"),
        "{e}"
    );
}

#[test]
fn sends_the_documented_request_with_the_token() {
    let server = TestServer::start(Reply::Ok(A44.to_owned()));
    let points = source(&server.base).fetch(ts("2025-10-01T13:05:00Z")).unwrap();
    assert_eq!(points.len(), 120);
    let target = &server.requests()[0];
    assert!(target.starts_with("/api?"), "{target}");
    for (name, value) in [
        ("securityToken", SECRET),
        ("documentType", "A44"),
        ("in_Domain", ZONE),
        ("out_Domain", ZONE),
        ("periodStart", "202510010000"),
        ("periodEnd", "202510030000"),
    ] {
        assert_eq!(query_param(target, name), Some(value), "{name} in {target}");
    }
}

#[test]
fn failures_name_the_url_but_never_the_token() {
    let now = ts("2025-10-01T13:05:00Z");
    // A server that echoes the query in its error page.
    let server = TestServer::start(Reply::Status(401, format!("Unauthorized: securityToken={SECRET}")));
    let mut s = source(&server.base);
    let e = s.fetch(now).unwrap_err();
    assert!(matches!(&e, PriceError::Status { kind: SourceKind::Entsoe, status: 401, .. }), "{e:?}");
    let text = format!("{e} {e:?}");
    assert!(text.contains(&format!("{}/api?documentType=A44&in_Domain={ZONE}", server.base)), "{text}");
    assert!(!text.contains(SECRET), "{text}");

    server.set(Reply::Status(500, String::new()));
    assert!(matches!(s.fetch(now), Err(PriceError::Status { status: 500, .. })));

    server.set(Reply::Ok(ACK.to_owned()));
    let e = s.fetch(now).unwrap_err();
    assert!(
        matches!(
            &e,
            PriceError::Decode { kind: SourceKind::Entsoe, error: ParseError::Acknowledgement { .. }, .. }
        ),
        "{e:?}"
    );

    server.set(Reply::Hang);
    let e = s.fetch(now).unwrap_err();
    assert!(matches!(&e, PriceError::Timeout { kind: SourceKind::Entsoe, .. }), "{e:?}");
    assert!(!format!("{e} {e:?}").contains(SECRET));

    let e = source(&refused_base()).fetch(now).unwrap_err();
    assert!(matches!(&e, PriceError::Transport { kind: SourceKind::Entsoe, .. }), "{e:?}");
    assert!(!format!("{e} {e:?}").contains(SECRET));
    assert!(!format!("{s:?}").contains(SECRET));
}

#[test]
fn the_feed_from_config_keeps_last_good_prices_then_recovers() {
    let server = TestServer::start(Reply::Ok(A44.to_owned()));
    let config: SourceConfig = toml::from_str(&format!(
        "kind = \"entsoe\"\nurl = \"{}/api\"\nzone = \"{ZONE}\"\ntoken = \"{SECRET}\"\nrefresh_minutes = 30",
        server.base
    ))
    .unwrap();
    let mut feed = PriceFeed::from_configs(&[config], Path::new(".")).unwrap();
    assert!(feed.push_handle().is_none());
    let live = FeedStatus::Live { kind: SourceKind::Entsoe };

    let t0 = ts("2025-10-01T13:05:00Z");
    let events = feed.poll(t0);
    assert!(matches!(events[0], FeedEvent::Updated { kind: SourceKind::Entsoe, .. }));
    assert_eq!(events[1], FeedEvent::StatusChanged { from: FeedStatus::Exhausted, to: live });

    server.set(Reply::Ok(ACK.to_owned()));
    assert!(feed.poll(ts("2025-10-01T13:34:00Z")).is_empty()); // not due yet (30 min)
    let t1 = ts("2025-10-01T13:35:00Z");
    let events = feed.poll(t1);
    assert!(
        matches!(&events[0], FeedEvent::Failed { error, .. } if error.contains("No matching data found"))
    );
    let last_good = FeedStatus::LastGood { kind: SourceKind::Entsoe, failing_since: t1 };
    assert_eq!(events[1], FeedEvent::StatusChanged { from: live, to: last_good });
    // Tomorrow's quarter-hours are still planned with.
    let series = feed.series(t1).unwrap();
    assert_eq!(series.end(), ts("2025-10-02T22:00:00Z"));
    assert_eq!(series.known_len(), series.len());

    let t2 = ts("2025-10-02T22:00:00Z");
    let events = feed.poll(t2);
    assert_eq!(events[1], FeedEvent::StatusChanged { from: last_good, to: FeedStatus::Exhausted });

    // The next day's document: the recorded one moved by a day (latest instant first).
    let next_day = A44
        .replace("2025-10-02T22:00Z", "2025-10-03T22:00Z")
        .replace("2025-10-01T22:00Z", "2025-10-02T22:00Z")
        .replace("2025-09-30T22:00Z", "2025-10-01T22:00Z");
    server.set(Reply::Ok(next_day));
    let t3 = ts("2025-10-02T22:02:00Z");
    let events = feed.poll(t3);
    assert!(matches!(events[0], FeedEvent::Updated { .. }), "{events:?}");
    assert_eq!(events[1], FeedEvent::StatusChanged { from: FeedStatus::Exhausted, to: live });
    for event in feed.poll(ts("2025-10-03T00:00:00Z")) {
        assert!(!format!("{event:?}").contains(SECRET));
    }
}
