//! The `push` source: prices set from outside (the gateway's `POST /api/v1/prices`).

use super::error::PriceError;
use super::point::{validate_points, PointError, PricePoint};
use super::{PriceSource, SourceKind};
use jiff::Timestamp;
use std::sync::{Arc, Mutex, PoisonError};

/// Most points one push may carry, and most the handle keeps (a week of quarter-hours is 672):
/// a bound on the memory an API caller can take.
pub const MAX_PUSH_POINTS: usize = 2_000;

/// The shared end of a push source: the API pushes, the planner thread's [`PushSource`] reads.
/// Cloning gives another handle on the same points.
#[derive(Debug, Clone, Default)]
pub struct PushHandle {
    points: Arc<Mutex<Vec<PricePoint>>>,
}

impl PushHandle {
    /// A handle holding no points.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Store `points`, replacing the range they cover (from the first start to the last end):
    /// held points overlapping that range are removed whole, the others are kept. Returns how
    /// many points were accepted. Beyond [`MAX_PUSH_POINTS`] held, the earliest are dropped.
    ///
    /// # Errors
    /// [`PriceError::Invalid`] (nothing stored) for no points, more than [`MAX_PUSH_POINTS`],
    /// or points that break a rule of [`validate_points`] (ascending, non-overlapping, on the
    /// quarter-hour grid, finite prices), naming the point's index and timestamps.
    pub fn push(&self, points: &[PricePoint]) -> Result<usize, PriceError> {
        let invalid = |error| PriceError::Invalid { kind: SourceKind::Push, error };
        let (Some(first), Some(last)) = (points.first(), points.last()) else {
            return Err(invalid(PointError::Empty));
        };
        if points.len() > MAX_PUSH_POINTS {
            return Err(invalid(PointError::TooMany { count: points.len(), max: MAX_PUSH_POINTS }));
        }
        validate_points(points).map_err(invalid)?;
        let range = PricePoint::new(first.start, last.end, first.price);
        let mut held = self.lock();
        held.retain(|p| !p.overlaps(&range));
        held.extend_from_slice(points);
        held.sort_by_key(|p| p.start);
        let excess = held.len().saturating_sub(MAX_PUSH_POINTS);
        held.drain(..excess);
        Ok(points.len())
    }

    /// The points held, in order.
    #[must_use]
    pub fn points(&self) -> Vec<PricePoint> {
        self.lock().clone()
    }

    /// A source reading this handle.
    #[must_use]
    pub fn source(&self) -> PushSource {
        PushSource { handle: self.clone() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<PricePoint>> {
        // The vector is replaced by whole, validated steps; a panic elsewhere while holding the
        // lock cannot leave it half-written, so a poisoned lock still holds valid points.
        self.points.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Reads what was pushed through its [`PushHandle`]; never fails. Points that have ended by
/// `now` are dropped from the handle on each fetch.
#[derive(Debug, Clone)]
pub struct PushSource {
    handle: PushHandle,
}

impl PriceSource for PushSource {
    fn kind(&self) -> SourceKind {
        SourceKind::Push
    }

    fn fetch(&mut self, now: Timestamp) -> Result<Vec<PricePoint>, PriceError> {
        let mut held = self.handle.lock();
        held.retain(|p| p.end > now);
        Ok(held.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::Price;

    fn p(start: &str, end: &str, price: f64) -> PricePoint {
        PricePoint::new(start.parse().unwrap(), end.parse().unwrap(), Price::new(price))
    }

    #[test]
    fn a_push_replaces_the_range_it_covers() {
        let h = PushHandle::new();
        let day = [
            p("2025-10-01T22:00:00Z", "2025-10-01T23:00:00Z", 0.1),
            p("2025-10-01T23:00:00Z", "2025-10-02T00:00:00Z", 0.2),
            p("2025-10-02T00:00:00Z", "2025-10-02T01:00:00Z", 0.3),
        ];
        assert_eq!(h.push(&day), Ok(3));
        let correction = [
            p("2025-10-01T23:00:00Z", "2025-10-01T23:15:00Z", 0.5),
            p("2025-10-01T23:15:00Z", "2025-10-01T23:30:00Z", 0.6),
        ];
        assert_eq!(h.push(&correction), Ok(2));
        let prices: Vec<f64> = h.points().iter().map(|p| p.price.per_kwh()).collect();
        // The hour 23:00–00:00 overlapped the push and went whole; 23:30–00:00 is now a gap.
        assert_eq!(prices, vec![0.1, 0.5, 0.6, 0.3]);

        let mut source = h.source();
        let now = "2025-10-02T00:30:00Z".parse().unwrap();
        assert_eq!(source.fetch(now).unwrap(), vec![day[2]]);
        assert_eq!(h.points(), vec![day[2]]);
    }

    #[test]
    fn invalid_pushes_change_nothing() {
        let h = PushHandle::new();
        assert!(matches!(h.push(&[]), Err(PriceError::Invalid { error: PointError::Empty, .. })));
        let overlap = [
            p("2025-10-01T22:00:00Z", "2025-10-01T23:00:00Z", 0.1),
            p("2025-10-01T22:30:00Z", "2025-10-01T23:30:00Z", 0.2),
        ];
        let e = h.push(&overlap).unwrap_err();
        assert!(matches!(
            e,
            PriceError::Invalid { kind: SourceKind::Push, error: PointError::Overlap { index: 1, .. } }
        ));
        assert!(h.points().is_empty());
    }
}
