//! The configured price sources as one feed for the planner thread.

use super::config::SourceConfig;
use super::error::{ConfigError, PriceError};
use super::point::{add, floor_quarter, validate_points, PricePoint, QUARTER_HOUR};
use super::push::PushHandle;
use super::{PriceSource, SourceKind};
use crate::tariff::PriceSeries;
use crate::units::Price;
use jiff::{SignedDuration, Timestamp};
use std::path::Path;

/// Waits after the 1st, 2nd, … failure in a row (the last repeats), in minutes — or in refresh
/// intervals for a source refreshed more often than once a minute.
pub const BACKOFF_MINUTES: [i64; 5] = [1, 2, 5, 10, 15];

/// The unit of [`BACKOFF_MINUTES`] for a source refreshed every `refresh`.
fn backoff_unit(refresh: SignedDuration) -> SignedDuration {
    let minute = SignedDuration::from_mins(1);
    if refresh > SignedDuration::ZERO && refresh < minute {
        refresh
    } else {
        minute
    }
}

/// How fresh the price for `now` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum FeedStatus {
    /// The first source (in configured order) that has a price for `now` among those whose last
    /// fetch succeeded.
    Live {
        /// That source.
        kind: SourceKind,
    },
    /// Only sources whose last fetch failed have a price for `now`: their last good prices are
    /// in use.
    LastGood {
        /// The first such source.
        kind: SourceKind,
        /// When its failures began.
        failing_since: Timestamp,
    },
    /// No source has a price for `now`.
    Exhausted,
}

impl FeedStatus {
    /// `"live"`, `"last_good"` or `"exhausted"`.
    #[must_use]
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Live { .. } => "live",
            Self::LastGood { .. } => "last_good",
            Self::Exhausted => "exhausted",
        }
    }
}

impl std::fmt::Display for FeedStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Live { kind } => write!(f, "live ({kind})"),
            Self::LastGood { kind, failing_since } => {
                write!(f, "last good ({kind}, failing since {failing_since})")
            }
            Self::Exhausted => f.write_str("exhausted"),
        }
    }
}

/// Something the audit log should record, from [`PriceFeed::poll`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum FeedEvent {
    /// A fetch succeeded with points different from those held before.
    Updated {
        /// The source.
        kind: SourceKind,
        /// Number of points now held.
        points: usize,
        /// Start of the first point.
        first: Option<Timestamp>,
        /// End of the last point.
        last: Option<Timestamp>,
    },
    /// A fetch failed; the source's last good points are kept.
    Failed {
        /// The source.
        kind: SourceKind,
        /// The error text (never contains a token).
        error: String,
    },
    /// [`PriceFeed::status`] changed.
    StatusChanged {
        /// Before this poll.
        from: FeedStatus,
        /// After it.
        to: FeedStatus,
    },
}

/// The state of one source, from [`PriceFeed::sources`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SourceReport {
    /// The source.
    pub kind: SourceKind,
    /// When its last successful fetch was.
    pub last_ok: Option<Timestamp>,
    /// The error of its last fetch, if that failed.
    pub last_error: Option<String>,
    /// When the current run of failures began.
    pub failing_since: Option<Timestamp>,
    /// Points held (those not yet ended at the last poll).
    pub points: usize,
    /// End of the last point held.
    pub covered_until: Option<Timestamp>,
    /// When it is fetched next.
    pub next_fetch: Option<Timestamp>,
}

#[derive(Debug)]
struct Entry {
    source: Box<dyn PriceSource>,
    refresh: SignedDuration,
    /// `None` = at the next poll.
    next_fetch: Option<Timestamp>,
    failures: usize,
    failing_since: Option<Timestamp>,
    last_ok: Option<Timestamp>,
    last_error: Option<String>,
    points: Vec<PricePoint>,
}

impl Entry {
    fn covering(&self, now: Timestamp) -> bool {
        self.points.iter().any(|p| p.covers(now))
    }
}

/// The price sources in configured order (first = preferred), fetched when due and merged.
///
/// Pure apart from the sources' fetches: every method takes `now`, so tests drive time by hand.
/// A source is fetched at the first poll, then every refresh interval after a success; after a
/// failure it is retried after 1, 2, 5, 10, then every 15 minutes ([`BACKOFF_MINUTES`]; as many
/// refresh intervals for a source refreshed more often than once a minute) and
/// its last good points stay in use until they end. A successful fetch replaces the source's
/// points (an `Updated` event only when they changed, so a file checked every poll does not
/// flood the audit log).
#[derive(Debug, Default)]
pub struct PriceFeed {
    entries: Vec<Entry>,
    push: Option<PushHandle>,
    status: Option<FeedStatus>,
}

impl PriceFeed {
    /// A feed without sources.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A feed of the configured entries in order. A `push` entry's handle is offered by
    /// [`Self::push_handle`]; at most one `push` entry is allowed.
    ///
    /// # Errors
    /// The first entry's [`ConfigError`], naming its index, the field and the value.
    pub fn from_configs(configs: &[SourceConfig], base_dir: &Path) -> Result<Self, ConfigError> {
        let handle = PushHandle::new();
        let mut feed = Self::new();
        for (i, config) in configs.iter().enumerate() {
            if config.kind == SourceKind::Push && feed.push.is_some() {
                return Err(ConfigError::new("kind", "\"push\" a second time: one push source at most").at(i));
            }
            let source = config.build(base_dir, &handle).map_err(|e| e.at(i))?;
            feed.add(source, config.refresh().map_err(|e| e.at(i))?);
            if config.kind == SourceKind::Push {
                feed.push = Some(handle.clone());
            }
        }
        Ok(feed)
    }

    /// Append a source (after those added so far, so with a lower preference), fetched every
    /// `refresh` (zero or negative: at every poll).
    pub fn add(&mut self, source: Box<dyn PriceSource>, refresh: SignedDuration) {
        self.entries.push(Entry {
            source,
            refresh: refresh.max(SignedDuration::ZERO),
            next_fetch: None,
            failures: 0,
            failing_since: None,
            last_ok: None,
            last_error: None,
            points: Vec::new(),
        });
    }

    /// Append a push source reading `handle`, which [`Self::push_handle`] then returns.
    pub fn add_push(&mut self, handle: PushHandle) {
        self.add(Box::new(handle.source()), SignedDuration::ZERO);
        self.push = Some(handle);
    }

    /// The handle the API pushes prices into, if a push source is configured.
    #[must_use]
    pub fn push_handle(&self) -> Option<PushHandle> {
        self.push.clone()
    }

    /// The earliest time a source is due (`Timestamp::MIN`, i.e. at once, if one has never been
    /// fetched); `None` without sources. Callers may sleep until then, or simply poll every
    /// minute.
    #[must_use]
    pub fn next_poll(&self) -> Option<Timestamp> {
        self.entries.iter().map(|e| e.next_fetch.unwrap_or(Timestamp::MIN)).min()
    }

    /// Fetch every source that is due at `now`, drop points that have ended, and report what
    /// changed.
    pub fn poll(&mut self, now: Timestamp) -> Vec<FeedEvent> {
        let mut events = Vec::new();
        for entry in &mut self.entries {
            let kind = entry.source.kind();
            if entry.next_fetch.is_none_or(|due| due <= now) {
                // Points from any `PriceSource` implementation are checked where they enter.
                let fetched = entry.source.fetch(now).and_then(|points| match validate_points(&points) {
                    Ok(()) => Ok(points),
                    Err(error) => Err(PriceError::Invalid { kind, error }),
                });
                match fetched {
                    Ok(mut points) => {
                        points.retain(|p| p.end > now);
                        entry.failures = 0;
                        entry.failing_since = None;
                        entry.last_error = None;
                        entry.last_ok = Some(now);
                        entry.next_fetch = Some(add(now, entry.refresh));
                        if points != entry.points {
                            events.push(FeedEvent::Updated {
                                kind,
                                points: points.len(),
                                first: points.first().map(|p| p.start),
                                last: points.last().map(|p| p.end),
                            });
                            entry.points = points;
                        }
                    }
                    Err(e) => {
                        let wait = BACKOFF_MINUTES
                            .get(entry.failures)
                            .or(BACKOFF_MINUTES.last())
                            .copied()
                            .unwrap_or(1);
                        entry.failures = entry.failures.saturating_add(1);
                        entry.failing_since.get_or_insert(now);
                        let wait = backoff_unit(entry.refresh).checked_mul(i32::try_from(wait).unwrap_or(15));
                        entry.next_fetch = Some(add(now, wait.unwrap_or(SignedDuration::from_mins(15))));
                        let error = e.to_string();
                        entry.last_error = Some(error.clone());
                        events.push(FeedEvent::Failed { kind, error });
                    }
                }
            }
            entry.points.retain(|p| p.end > now);
        }
        let to = self.status(now);
        let from = self.status.replace(to).unwrap_or(FeedStatus::Exhausted);
        if from != to {
            events.push(FeedEvent::StatusChanged { from, to });
        }
        events
    }

    /// How fresh the price for `now` is (see [`FeedStatus`]).
    #[must_use]
    pub fn status(&self, now: Timestamp) -> FeedStatus {
        if let Some(e) = self.entries.iter().find(|e| e.failing_since.is_none() && e.covering(now)) {
            return FeedStatus::Live { kind: e.source.kind() };
        }
        self.entries
            .iter()
            .find_map(|e| {
                e.failing_since
                    .filter(|_| e.covering(now))
                    .map(|failing_since| FeedStatus::LastGood { kind: e.source.kind(), failing_since })
            })
            .unwrap_or(FeedStatus::Exhausted)
    }

    /// The merged horizon from the slot containing `now` on: each instant is priced by the first
    /// source (in configured order) that covers it; a point of a later source that is partly
    /// covered by an earlier one keeps its uncovered parts. Sorted, non-overlapping, 15- and
    /// 60-minute points mixed as the sources gave them.
    #[must_use]
    pub fn points(&self, now: Timestamp) -> Vec<PricePoint> {
        let mut merged: Vec<PricePoint> = Vec::new();
        for entry in &self.entries {
            for p in entry.points.iter().filter(|p| p.end > now) {
                for piece in uncovered(&merged, p) {
                    let at = merged.partition_point(|m| m.start < piece.start);
                    merged.insert(at, piece);
                }
            }
        }
        merged.retain(|p| p.end > now);
        merged
    }

    /// [`Self::points`] on the uniform 15-minute grid the planner consumes: from the quarter-hour
    /// containing `now` (or the first point's start, if later) to the last point's end; a
    /// longer point's price repeats over its quarters, uncovered quarters are `None`. `None`
    /// when no source has a price from `now` on.
    #[must_use]
    pub fn series(&self, now: Timestamp) -> Option<PriceSeries> {
        let points = self.points(now);
        let first = points.first()?;
        let last = points.last()?;
        let start = first.start.max(floor_quarter(now));
        let quarters = last.end.duration_since(start).as_secs() / QUARTER_HOUR.as_secs();
        let mut values: Vec<Option<Price>> = vec![None; usize::try_from(quarters).ok()?];
        let mut next = points.iter().peekable();
        for (i, slot) in values.iter_mut().enumerate() {
            let at = add(start, SignedDuration::from_secs(i64::try_from(i).ok()?.saturating_mul(900)));
            while next.peek().is_some_and(|p| p.end <= at) {
                next.next();
            }
            *slot = next.peek().filter(|p| p.covers(at)).map(|p| p.price);
        }
        PriceSeries::new(start, QUARTER_HOUR, values).ok()
    }

    /// Per source, in configured order: last success, last error, points held, coverage.
    #[must_use]
    pub fn sources(&self) -> Vec<SourceReport> {
        self.entries
            .iter()
            .map(|e| SourceReport {
                kind: e.source.kind(),
                last_ok: e.last_ok,
                last_error: e.last_error.clone(),
                failing_since: e.failing_since,
                points: e.points.len(),
                covered_until: e.points.iter().map(|p| p.end).max(),
                next_fetch: e.next_fetch,
            })
            .collect()
    }
}

/// The parts of `p` not covered by `merged` (sorted, non-overlapping), as points with `p`'s price.
fn uncovered(merged: &[PricePoint], p: &PricePoint) -> Vec<PricePoint> {
    let mut pieces = Vec::new();
    let mut from = p.start;
    for m in merged.iter().filter(|m| m.overlaps(p)) {
        if m.start > from {
            pieces.push(PricePoint::new(from, m.start, p.price));
        }
        from = from.max(m.end);
    }
    if from < p.end {
        pieces.push(PricePoint::new(from, p.end, p.price));
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source whose answer the test sets.
    #[derive(Debug)]
    struct Scripted {
        kind: SourceKind,
        answer: Result<Vec<PricePoint>, PriceError>,
        calls: usize,
    }

    impl PriceSource for Scripted {
        fn kind(&self) -> SourceKind {
            self.kind
        }
        fn fetch(&mut self, _now: Timestamp) -> Result<Vec<PricePoint>, PriceError> {
            self.calls += 1;
            self.answer.clone()
        }
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn p(start: &str, end: &str, price: f64) -> PricePoint {
        PricePoint::new(ts(start), ts(end), Price::new(price))
    }

    fn failing() -> Result<Vec<PricePoint>, PriceError> {
        Err(PriceError::Read { kind: SourceKind::File, origin: "x".into(), cause: "gone".into() })
    }

    #[test]
    fn earlier_sources_win_and_later_ones_fill_the_rest() {
        let mut feed = PriceFeed::new();
        let a = vec![p("2025-10-02T10:15:00Z", "2025-10-02T10:30:00Z", 1.0)];
        let b = vec![
            p("2025-10-02T10:00:00Z", "2025-10-02T11:00:00Z", 2.0),
            p("2025-10-02T11:00:00Z", "2025-10-02T12:00:00Z", 3.0),
        ];
        feed.add(
            Box::new(Scripted { kind: SourceKind::Push, answer: Ok(a), calls: 0 }),
            SignedDuration::ZERO,
        );
        feed.add(
            Box::new(Scripted { kind: SourceKind::File, answer: Ok(b), calls: 0 }),
            SignedDuration::ZERO,
        );
        let now = ts("2025-10-02T10:20:00Z");
        feed.poll(now);
        let got: Vec<_> = feed.points(now).iter().map(|q| (q.start, q.end, q.price.per_kwh())).collect();
        assert_eq!(
            got,
            // 10:00–10:15 of b's first hour has ended by `now` and is not part of the horizon.
            vec![
                (ts("2025-10-02T10:15:00Z"), ts("2025-10-02T10:30:00Z"), 1.0),
                (ts("2025-10-02T10:30:00Z"), ts("2025-10-02T11:00:00Z"), 2.0),
                (ts("2025-10-02T11:00:00Z"), ts("2025-10-02T12:00:00Z"), 3.0),
            ]
        );
        assert_eq!(feed.status(now), FeedStatus::Live { kind: SourceKind::Push });
        let series = feed.series(now).unwrap();
        assert_eq!(series.start(), ts("2025-10-02T10:15:00Z"));
        assert_eq!(series.len(), 7);
    }

    #[test]
    fn fetched_every_refresh_interval_and_quiet_when_unchanged() {
        let mut feed = PriceFeed::new();
        let good = vec![p("2025-10-02T10:00:00Z", "2025-10-02T11:00:00Z", 2.0)];
        feed.add(
            Box::new(Scripted { kind: SourceKind::Awattar, answer: Ok(good.clone()), calls: 0 }),
            SignedDuration::from_hours(1),
        );
        let t0 = ts("2025-10-02T09:00:00Z");
        let events = feed.poll(t0);
        // The price starts at 10:00: updated, but still exhausted (as before the first poll).
        assert_eq!(events.len(), 1);
        assert!(matches!(events[0], FeedEvent::Updated { points: 1, .. }));
        // Not due before the refresh interval; the same answer again is no event.
        assert!(feed.poll(ts("2025-10-02T09:30:00Z")).is_empty());
        assert_eq!(feed.poll(ts("2025-10-02T10:00:00Z")).len(), 1); // status exhausted → live
        assert_eq!(feed.status(ts("2025-10-02T10:00:00Z")), FeedStatus::Live { kind: SourceKind::Awattar });
    }

    #[test]
    fn backoff_schedule() {
        let mut feed = PriceFeed::new();
        feed.add(
            Box::new(Scripted { kind: SourceKind::File, answer: failing(), calls: 0 }),
            SignedDuration::ZERO,
        );
        let mut now = ts("2025-10-02T09:00:00Z");
        let mut waits = Vec::new();
        for _ in 0..7 {
            assert!(feed.poll(now).iter().any(|e| matches!(e, FeedEvent::Failed { .. })));
            let next = feed.next_poll().unwrap();
            waits.push(next.duration_since(now).as_mins());
            // A poll before it is due fetches nothing.
            assert!(feed.poll(add(next, SignedDuration::from_secs(-1))).is_empty());
            now = next;
        }
        assert_eq!(waits, vec![1, 2, 5, 10, 15, 15, 15]);
        let report = &feed.sources()[0];
        assert_eq!(report.failing_since, Some(ts("2025-10-02T09:00:00Z")));
        assert_eq!(report.last_error.as_deref(), Some("file source x: cannot read: gone"));
    }

    #[test]
    fn a_source_refreshed_every_few_seconds_backs_off_in_its_own_intervals() {
        let mut feed = PriceFeed::new();
        feed.add(
            Box::new(Scripted { kind: SourceKind::Awattar, answer: failing(), calls: 0 }),
            SignedDuration::from_secs(2),
        );
        let mut now = ts("2025-10-02T09:00:00Z");
        let mut waits = Vec::new();
        for _ in 0..6 {
            let _ = feed.poll(now);
            let next = feed.next_poll().unwrap();
            waits.push(next.duration_since(now).as_secs());
            now = next;
        }
        assert_eq!(waits, vec![2, 4, 10, 20, 30, 30]);
        // An hourly source keeps the minutes.
        assert_eq!(backoff_unit(SignedDuration::from_mins(60)), SignedDuration::from_mins(1));
        assert_eq!(backoff_unit(SignedDuration::ZERO), SignedDuration::from_mins(1));
    }

    #[test]
    fn invalid_points_from_a_source_count_as_a_failed_fetch() {
        let mut feed = PriceFeed::new();
        let overlapping = vec![
            p("2025-10-02T10:00:00Z", "2025-10-02T11:00:00Z", 2.0),
            p("2025-10-02T10:30:00Z", "2025-10-02T11:30:00Z", 3.0),
        ];
        feed.add(
            Box::new(Scripted { kind: SourceKind::Awattar, answer: Ok(overlapping), calls: 0 }),
            SignedDuration::ZERO,
        );
        let now = ts("2025-10-02T10:00:00Z");
        let events = feed.poll(now);
        assert!(
            matches!(&events[0], FeedEvent::Failed { kind: SourceKind::Awattar, error } if error.contains("point 1 (2025-10-02T10:30:00Z")),
            "{events:?}"
        );
        assert!(feed.points(now).is_empty());
        assert_eq!(feed.status(now), FeedStatus::Exhausted);
    }

    #[test]
    fn uncovered_pieces() {
        let merged = [
            p("2025-10-02T10:15:00Z", "2025-10-02T10:30:00Z", 1.0),
            p("2025-10-02T10:45:00Z", "2025-10-02T11:15:00Z", 1.0),
        ];
        let got = uncovered(&merged, &p("2025-10-02T10:00:00Z", "2025-10-02T11:00:00Z", 2.0));
        assert_eq!(
            got,
            vec![
                p("2025-10-02T10:00:00Z", "2025-10-02T10:15:00Z", 2.0),
                p("2025-10-02T10:30:00Z", "2025-10-02T10:45:00Z", 2.0)
            ]
        );
    }

    #[test]
    fn events_and_status_serialize_for_the_api() {
        let e = FeedEvent::StatusChanged {
            from: FeedStatus::Live { kind: SourceKind::Entsoe },
            to: FeedStatus::LastGood { kind: SourceKind::Entsoe, failing_since: ts("2025-10-02T10:00:00Z") },
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"event":"status_changed","from":{"status":"live","kind":"entsoe"},"to":{"status":"last_good","kind":"entsoe","failing_since":"2025-10-02T10:00:00Z"}}"#
        );
        assert_eq!(FeedStatus::Exhausted.as_str(), "exhausted");
        assert_eq!(FeedStatus::Live { kind: SourceKind::File }.as_str(), "live");
    }

    #[test]
    fn the_feed_moves_to_the_planner_thread_and_the_handle_is_shared() {
        fn send<T: Send>() {}
        fn send_sync_clone<T: Send + Sync + Clone>() {}
        send::<PriceFeed>();
        send_sync_clone::<PushHandle>();
    }

    #[test]
    fn config_errors_name_the_entry() {
        let configs: Vec<SourceConfig> = ["kind = \"push\"", "kind = \"awattar\"", "kind = \"push\""]
            .iter()
            .map(|t| toml::from_str(t).unwrap())
            .collect();
        let e = PriceFeed::from_configs(&configs, Path::new(".")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "economics.prices[2].kind: \"push\" a second time: one push source at most"
        );
        let e = PriceFeed::from_configs(
            &configs[1..2]
                .iter()
                .cloned()
                .chain([toml::from_str("kind = \"file\"").unwrap()])
                .collect::<Vec<_>>(),
            Path::new("."),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "economics.prices[1].path: missing for kind = \"file\"");
        let feed = PriceFeed::from_configs(&configs[..2], Path::new(".")).unwrap();
        assert!(feed.push_handle().is_some());
        assert_eq!(feed.sources().len(), 2);
    }
}
