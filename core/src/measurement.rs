//! A measured value with its timestamp, maximum age and quality.

use crate::units::Millis;
use core::fmt;

/// How far a measurement may be trusted.
///
/// Safety treats [`Quality::Stale`] and [`Quality::Invalid`] as the worst case for that signal,
/// never as the last good value forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quality {
    /// Read recently and passed validation.
    Good,
    /// Older than its maximum age.
    Stale,
    /// Never read, failed to decode, or failed validation.
    Invalid,
}

impl fmt::Display for Quality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Good => "GOOD",
            Self::Stale => "STALE",
            Self::Invalid => "INVALID",
        })
    }
}

/// One signal: value, when it was taken (monotonic ms), how old it may get, and its quality as
/// set by the reader. Use [`Measurement::quality_at`] to get the quality at a given time: a
/// `Good` reading becomes `Stale` once it is older than `max_age`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measurement<T> {
    value: T,
    taken_at: Millis,
    max_age: Millis,
    quality: Quality,
}

impl<T: Copy> Measurement<T> {
    /// A good reading taken at `taken_at`, trusted for `max_age`.
    #[must_use]
    pub const fn good(value: T, taken_at: Millis, max_age: Millis) -> Self {
        Self { value, taken_at, max_age, quality: Quality::Good }
    }

    /// A reading that is known to be unusable (read failure, decode failure, never read). The
    /// `placeholder` value is kept only so the type stays `Copy`; [`Self::value_at`] never
    /// returns it.
    #[must_use]
    pub const fn invalid(placeholder: T, max_age: Millis) -> Self {
        Self { value: placeholder, taken_at: Millis::ZERO, max_age, quality: Quality::Invalid }
    }

    /// Replace the value with a fresh good reading.
    pub fn update(&mut self, value: T, now: Millis) {
        self.value = value;
        self.taken_at = now;
        self.quality = Quality::Good;
    }

    /// Mark the signal invalid (keeps the old value for diagnostics only).
    pub fn invalidate(&mut self) {
        self.quality = Quality::Invalid;
    }

    /// The quality at `now`: `Invalid` stays invalid; a good reading older than `max_age` is
    /// `Stale`.
    #[must_use]
    pub fn quality_at(&self, now: Millis) -> Quality {
        match self.quality {
            Quality::Invalid => Quality::Invalid,
            Quality::Stale => Quality::Stale,
            Quality::Good => {
                if now.since(self.taken_at) > self.max_age {
                    Quality::Stale
                } else {
                    Quality::Good
                }
            }
        }
    }

    /// The value if it is good at `now`, otherwise `None` (callers then assume the worst case).
    #[must_use]
    pub fn value_at(&self, now: Millis) -> Option<T> {
        match self.quality_at(now) {
            Quality::Good => Some(self.value),
            Quality::Stale | Quality::Invalid => None,
        }
    }

    /// The last stored value regardless of quality: for display and diagnostics only.
    #[must_use]
    pub const fn last_value(&self) -> T {
        self.value
    }

    /// When the value was taken.
    #[must_use]
    pub const fn taken_at(&self) -> Millis {
        self.taken_at
    }

    /// Maximum age before the value is stale.
    #[must_use]
    pub const fn max_age(&self) -> Millis {
        self.max_age
    }

    /// The quality as stored, without ageing.
    #[must_use]
    pub const fn stored_quality(&self) -> Quality {
        self.quality
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::Celsius;

    #[test]
    fn good_turns_stale_after_max_age() {
        let m = Measurement::good(crate::celsius!(25.0), Millis::new(1000), Millis::new(500));
        assert_eq!(m.quality_at(Millis::new(1500)), Quality::Good);
        assert_eq!(m.quality_at(Millis::new(1501)), Quality::Stale);
        assert_eq!(m.value_at(Millis::new(1501)), None);
        assert_eq!(m.value_at(Millis::new(1200)), Some(crate::celsius!(25.0)));
    }

    #[test]
    fn invalid_never_yields_a_value() {
        let mut m = Measurement::invalid(Celsius::ZERO, Millis::new(500));
        assert_eq!(m.value_at(Millis::ZERO), None);
        m.update(crate::celsius!(20.0), Millis::new(10));
        assert_eq!(m.value_at(Millis::new(10)), Some(crate::celsius!(20.0)));
        m.invalidate();
        assert_eq!(m.quality_at(Millis::new(10)), Quality::Invalid);
    }
}
