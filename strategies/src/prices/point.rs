//! One market price over one delivery interval, and the rules a list of them must keep.

use crate::units::Price;
use jiff::{SignedDuration, Timestamp};

/// Length of the finest day-ahead product (since 1 October 2025 in the European coupling).
pub const QUARTER_HOUR: SignedDuration = SignedDuration::from_mins(15);

/// Longest accepted point: one day. A longer "slot" is almost always a gap in the data (a file
/// row followed by the next day's), which should show as missing prices, not as a stale one.
pub const MAX_POINT_LENGTH: SignedDuration = SignedDuration::from_hours(24);

const QUARTER_S: i64 = 900;

/// The spot (market) price for the delivery interval `[start, end)`, in currency per kWh.
///
/// Fees, levies, VAT and export prices are not part of it; they come from the tariff
/// ([`crate::tariff::Tariff`]). A valid point starts on a UTC quarter-hour and lasts a whole
/// number of quarter-hours, at most [`MAX_POINT_LENGTH`]: 15-, 30- and 60-minute products (and
/// 15/60 mixed in one horizon) all fit, and every point maps exactly onto the 15-minute grid of
/// [`crate::tariff::PriceSeries`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PricePoint {
    /// Start of delivery (inclusive, UTC instant).
    pub start: Timestamp,
    /// End of delivery (exclusive, UTC instant).
    pub end: Timestamp,
    /// Spot price in currency per kWh (may be negative).
    pub price: Price,
}

impl PricePoint {
    /// A point; not validated (see [`validate_points`]).
    #[must_use]
    pub const fn new(start: Timestamp, end: Timestamp, price: Price) -> Self {
        Self { start, end, price }
    }

    /// `end - start`.
    #[must_use]
    pub fn length(&self) -> SignedDuration {
        self.end.duration_since(self.start)
    }

    /// Whether `at` lies in `[start, end)`.
    #[must_use]
    pub fn covers(&self, at: Timestamp) -> bool {
        self.start <= at && at < self.end
    }

    /// Whether the two intervals share any instant.
    #[must_use]
    pub fn overlaps(&self, other: &Self) -> bool {
        self.start < other.end && other.start < self.end
    }
}

/// A list of price points broke one of the rules of [`validate_points`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PointError {
    /// No points at all where some were required.
    #[error("no price points")]
    Empty,
    /// More points than the receiver accepts.
    #[error("{count} price points, at most {max} accepted")]
    TooMany {
        /// Points given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// `end <= start`.
    #[error("point {index} ({start} .. {end}): the end is not after the start")]
    EndNotAfterStart {
        /// Index of the point.
        index: usize,
        /// Its start.
        start: Timestamp,
        /// Its end.
        end: Timestamp,
    },
    /// The start is not on a UTC quarter-hour.
    #[error("point {index} ({start} .. {end}): the start is not on a quarter-hour")]
    NotOnQuarterHour {
        /// Index of the point.
        index: usize,
        /// Its start.
        start: Timestamp,
        /// Its end.
        end: Timestamp,
    },
    /// The length is not a whole number of quarter-hours, or longer than a day.
    #[error(
        "point {index} ({start} .. {end}): lasts {seconds} s, not a whole number of quarter-hours up to 24 h"
    )]
    BadLength {
        /// Index of the point.
        index: usize,
        /// Its start.
        start: Timestamp,
        /// Its end.
        end: Timestamp,
        /// Its length in seconds.
        seconds: i64,
    },
    /// The price is NaN or infinite.
    #[error("point {index} ({start} .. {end}): price {value} is not finite")]
    NotFinite {
        /// Index of the point.
        index: usize,
        /// Its start.
        start: Timestamp,
        /// Its end.
        end: Timestamp,
        /// The rejected price per kWh.
        value: f64,
    },
    /// The point begins before the previous one ends (overlap or wrong order).
    #[error(
        "point {index} ({start} .. {end}) overlaps or precedes point {previous} ({previous_start} .. {previous_end})"
    )]
    Overlap {
        /// Index of the point.
        index: usize,
        /// Its start.
        start: Timestamp,
        /// Its end.
        end: Timestamp,
        /// Index of the point before it.
        previous: usize,
        /// Start of the point before it.
        previous_start: Timestamp,
        /// End of the point before it.
        previous_end: Timestamp,
    },
}

/// Check one point on its own (everything but the order), naming it by `index`.
///
/// # Errors
/// [`PointError`] for an end not after the start, a start off the quarter-hour grid, a length
/// that is not a whole number of quarter-hours up to a day, or a price that is not finite.
pub fn validate_point(index: usize, p: &PricePoint) -> Result<(), PointError> {
    let (start, end) = (p.start, p.end);
    if end <= start {
        return Err(PointError::EndNotAfterStart { index, start, end });
    }
    if start.as_second().rem_euclid(QUARTER_S) != 0 || start.subsec_nanosecond() != 0 {
        return Err(PointError::NotOnQuarterHour { index, start, end });
    }
    let length = p.length();
    if length.subsec_nanos() != 0 || length.as_secs() % QUARTER_S != 0 || length > MAX_POINT_LENGTH {
        return Err(PointError::BadLength { index, start, end, seconds: length.as_secs() });
    }
    if !p.price.per_kwh().is_finite() {
        return Err(PointError::NotFinite { index, start, end, value: p.price.per_kwh() });
    }
    Ok(())
}

/// Check a list of points: each valid on its own ([`validate_point`]), in ascending order and
/// without overlaps (a point may start exactly where the previous one ends; gaps are allowed).
///
/// # Errors
/// The first [`PointError`] found, naming the point's index and timestamps.
pub fn validate_points(points: &[PricePoint]) -> Result<(), PointError> {
    for (index, p) in points.iter().enumerate() {
        validate_point(index, p)?;
        if let Some(previous) = index.checked_sub(1) {
            if let Some(q) = points.get(previous) {
                if p.start < q.end {
                    return Err(PointError::Overlap {
                        index,
                        start: p.start,
                        end: p.end,
                        previous,
                        previous_start: q.start,
                        previous_end: q.end,
                    });
                }
            }
        }
    }
    Ok(())
}

/// `t + d`, saturating at the ends of the representable range.
pub(crate) fn add(t: Timestamp, d: SignedDuration) -> Timestamp {
    t.checked_add(d).unwrap_or(if d.is_negative() { Timestamp::MIN } else { Timestamp::MAX })
}

/// The start of the `step_s`-second slot of the UTC grid that contains `t`.
pub(crate) fn floor_to(t: Timestamp, step_s: i64) -> Timestamp {
    let s = t.as_second();
    let floored = s.saturating_sub(s.rem_euclid(step_s.max(1)));
    Timestamp::from_second(floored).unwrap_or(Timestamp::MIN)
}

/// The start of the quarter-hour containing `t`.
pub(crate) fn floor_quarter(t: Timestamp) -> Timestamp {
    floor_to(t, QUARTER_S)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn p(start: &str, end: &str, price: f64) -> PricePoint {
        PricePoint::new(ts(start), ts(end), Price::new(price))
    }

    #[test]
    fn mixed_lengths_in_order_are_valid() {
        let points = [
            p("2025-10-01T22:00:00Z", "2025-10-01T23:00:00Z", 0.1),
            p("2025-10-01T23:00:00Z", "2025-10-01T23:15:00Z", 0.2),
            p("2025-10-01T23:30:00Z", "2025-10-02T00:00:00Z", 0.3),
        ];
        assert_eq!(validate_points(&points), Ok(()));
    }

    #[test]
    fn each_rule_names_the_point() {
        let bad_end = [p("2025-10-01T22:00:00Z", "2025-10-01T22:00:00Z", 0.1)];
        assert!(matches!(validate_points(&bad_end), Err(PointError::EndNotAfterStart { index: 0, .. })));
        let off_grid = [p("2025-10-01T22:05:00Z", "2025-10-01T22:20:00Z", 0.1)];
        assert!(matches!(validate_points(&off_grid), Err(PointError::NotOnQuarterHour { index: 0, .. })));
        let odd = [p("2025-10-01T22:00:00Z", "2025-10-01T22:20:00Z", 0.1)];
        assert!(matches!(validate_points(&odd), Err(PointError::BadLength { seconds: 1200, .. })));
        let long = [p("2025-10-01T00:00:00Z", "2025-10-02T00:15:00Z", 0.1)];
        assert!(matches!(validate_points(&long), Err(PointError::BadLength { .. })));
        let nan = [p("2025-10-01T22:00:00Z", "2025-10-01T22:15:00Z", f64::NAN)];
        assert!(matches!(validate_points(&nan), Err(PointError::NotFinite { index: 0, .. })));
    }

    #[test]
    fn overlap_names_both_points() {
        let points = [
            p("2025-10-01T22:00:00Z", "2025-10-01T23:00:00Z", 0.1),
            p("2025-10-01T22:45:00Z", "2025-10-01T23:00:00Z", 0.2),
        ];
        let err = validate_points(&points).unwrap_err();
        assert_eq!(
            err,
            PointError::Overlap {
                index: 1,
                start: ts("2025-10-01T22:45:00Z"),
                end: ts("2025-10-01T23:00:00Z"),
                previous: 0,
                previous_start: ts("2025-10-01T22:00:00Z"),
                previous_end: ts("2025-10-01T23:00:00Z"),
            }
        );
        assert!(err.to_string().contains("point 1 (2025-10-01T22:45:00Z"), "{err}");
    }

    #[test]
    fn floors_to_the_grid() {
        assert_eq!(floor_quarter(ts("2025-10-01T22:14:59Z")), ts("2025-10-01T22:00:00Z"));
        assert_eq!(floor_quarter(ts("1969-12-31T23:59:00Z")), ts("1969-12-31T23:45:00Z"));
        assert_eq!(floor_to(ts("2025-10-01T22:59:00Z"), 3600), ts("2025-10-01T22:00:00Z"));
    }
}
