//! A rate limiter: a minimum interval between actions plus a budget of actions per rolling
//! window, tracked without allocation in a fixed ring of timestamps.

use super::{check_positive_ms, ms_f64, ConfigError};
use core::fmt;
use ems_core::Millis;

/// The largest budget a [`RateLimiter`] can track (its ring of timestamps has this many slots).
pub const MAX_BUDGET: usize = 512;

/// Which limit refused the action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateLimit {
    /// Too soon after the previous action.
    MinInterval,
    /// The budget for the rolling window is used up.
    Budget,
}

/// An action refused by a [`RateLimiter`], with the earliest time it will be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[error("rate-limited ({limit}): next allowed at {next_allowed}")]
pub struct RateLimited {
    /// The monotonic time from which the action is allowed again.
    pub next_allowed: Millis,
    /// Which limit refused it.
    pub limit: RateLimit,
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::MinInterval => "minimum interval",
            Self::Budget => "budget used up",
        })
    }
}

/// Minimum interval plus at most `budget` actions in any rolling `window`.
///
/// The window is exact (not a token bucket, which would allow up to twice the budget in one
/// window after a quiet period): the timestamps of the actions inside the window are kept in a
/// fixed ring of [`MAX_BUDGET`] slots.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    min_interval: Millis,
    budget: usize,
    window: Millis,
    stamps: heapless::Deque<Millis, MAX_BUDGET>,
    last: Option<Millis>,
}

impl RateLimiter {
    /// A limiter allowing one action per `min_interval` and `budget` actions per rolling
    /// `window`. `budget` must be 1..=[`MAX_BUDGET`] and `window` > 0.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `budget` is outside 1..=[`MAX_BUDGET`], `window` is zero, or `min_interval`
    /// exceeds `window`.
    pub fn new(min_interval: Millis, budget: u16, window: Millis) -> Result<Self, ConfigError> {
        let budget_usize = usize::from(budget);
        if budget == 0 || budget_usize > MAX_BUDGET {
            return Err(ConfigError::new("budget", f64::from(budget), "must be 1..=512 actions per window"));
        }
        check_positive_ms("window", window)?;
        if min_interval > window {
            return Err(ConfigError::new("min_interval", ms_f64(min_interval), "must not exceed the window"));
        }
        Ok(Self { min_interval, budget: budget_usize, window, stamps: heapless::Deque::new(), last: None })
    }

    /// A limiter that never refuses (devices without a write budget).
    #[must_use]
    pub const fn unlimited() -> Self {
        Self {
            min_interval: Millis::ZERO,
            budget: usize::MAX,
            window: Millis::ZERO,
            stamps: heapless::Deque::new(),
            last: None,
        }
    }

    /// Whether this limiter never refuses.
    #[must_use]
    pub const fn is_unlimited(&self) -> bool {
        self.budget == usize::MAX
    }

    fn expire(&mut self, now: Millis) {
        while let Some(front) = self.stamps.front() {
            if now.since(*front) >= self.window {
                self.stamps.pop_front();
            } else {
                break;
            }
        }
    }

    /// Whether an action at `now` would be allowed, without taking it.
    ///
    /// # Errors
    ///
    /// [`RateLimited`] with the time of the next allowed action when the minimum interval or the budget would
    /// be exceeded.
    pub fn check(&mut self, now: Millis) -> Result<(), RateLimited> {
        if self.is_unlimited() {
            return Ok(());
        }
        self.expire(now);
        if let Some(last) = self.last {
            if now.since(last) < self.min_interval {
                return Err(RateLimited {
                    next_allowed: last.plus(self.min_interval),
                    limit: RateLimit::MinInterval,
                });
            }
        }
        if self.stamps.len() >= self.budget {
            let oldest = self.stamps.front().copied().unwrap_or(now);
            return Err(RateLimited { next_allowed: oldest.plus(self.window), limit: RateLimit::Budget });
        }
        Ok(())
    }

    /// Take one action at `now` if allowed; otherwise say when the next one will be.
    ///
    /// # Errors
    ///
    /// As [`Self::check`]; nothing is taken then.
    pub fn try_acquire(&mut self, now: Millis) -> Result<(), RateLimited> {
        self.check(now)?;
        self.record(now);
        Ok(())
    }

    /// Record an action that had to happen regardless of the limit (a move toward zero power):
    /// it still counts against the budget. If the ring is full, the oldest stamp is dropped.
    pub fn record(&mut self, now: Millis) {
        if self.is_unlimited() {
            return;
        }
        self.expire(now);
        if self.stamps.is_full() {
            self.stamps.pop_front();
        }
        // Cannot fail: a slot was freed above if the ring was full.
        let _ = self.stamps.push_back(now);
        self.last = Some(now);
    }

    /// Give back the newest action (one the device refused: it did not happen). The minimum
    /// interval then counts from the action before it.
    pub fn refund(&mut self) {
        if self.is_unlimited() {
            return;
        }
        self.stamps.pop_back();
        self.last = self.stamps.back().copied();
    }

    /// Actions still allowed in the current window at `now` (ignoring the minimum interval).
    pub fn remaining(&mut self, now: Millis) -> usize {
        if self.is_unlimited() {
            return usize::MAX;
        }
        self.expire(now);
        self.budget.saturating_sub(self.stamps.len())
    }
}
