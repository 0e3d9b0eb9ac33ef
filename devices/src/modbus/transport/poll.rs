//! `Poller`: per-device poll intervals without drift or jitter.
//!
//! The poller reads no clock: the caller passes `now` (monotonic [`Millis`]) and asks which
//! devices are [`Poller::due`], polls them, and reports each with [`Poller::polled`]. The next due
//! time advances by whole intervals from the previous one (not from `now`), so a device polled
//! every 1000 ms stays on its grid; when the caller falls behind by more than one interval the
//! missed slots are skipped rather than fired in a burst.
//!
//! Staleness is **not** tracked here: every value read is stored by the caller as a
//! `ems_core::Measurement` with its read timestamp and max age, so a device that stops
//! answering turns its signals stale through `Measurement::value_at(now)` regardless of how the
//! polling goes.

use core::num::NonZeroU64;

use ems_core::Millis;

/// One scheduled device.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry<K> {
    key: K,
    interval: NonZeroU64,
    next_due: Millis,
}

/// Poll schedule for devices identified by `K`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poller<K> {
    entries: Vec<Entry<K>>,
}

impl<K> Default for Poller<K> {
    fn default() -> Self {
        Self { entries: Vec::new() }
    }
}

impl<K: PartialEq> Poller<K> {
    /// An empty schedule.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Schedule `key` every `interval_ms`, first due at `first_due`. Replaces an existing entry
    /// with the same key.
    pub fn add(&mut self, key: K, interval_ms: NonZeroU64, first_due: Millis) {
        self.entries.retain(|e| e.key != key);
        self.entries.push(Entry { key, interval: interval_ms, next_due: first_due });
    }

    /// The devices whose poll is due at `now`, in the order they were added.
    pub fn due(&self, now: Millis) -> impl Iterator<Item = &K> + '_ {
        self.entries.iter().filter(move |e| e.next_due <= now).map(|e| &e.key)
    }

    /// Whether `key` is due at `now` (`false` for an unknown key).
    #[must_use]
    pub fn is_due(&self, key: &K, now: Millis) -> bool {
        self.entries.iter().any(|e| &e.key == key && e.next_due <= now)
    }

    /// Record that `key` was polled at `now` (successfully or not: a failed poll is retried on
    /// the next slot, not at once). The next due time is the first slot of the grid after `now`.
    pub fn polled(&mut self, key: &K, now: Millis) {
        for e in self.entries.iter_mut().filter(|e| &e.key == key) {
            let interval = e.interval.get();
            let behind = now.since(e.next_due).get();
            // Whole intervals to advance: at least one, and enough to land after `now`.
            let steps = behind / interval + 1;
            e.next_due = e.next_due.plus(Millis::new(steps.saturating_mul(interval)));
        }
    }

    /// When the next poll is due (the earliest due time), `None` if nothing is scheduled.
    #[must_use]
    pub fn next_deadline(&self) -> Option<Millis> {
        self.entries.iter().map(|e| e.next_due).min()
    }

    /// The next due time of `key`.
    #[must_use]
    pub fn next_due(&self, key: &K) -> Option<Millis> {
        self.entries.iter().find(|e| &e.key == key).map(|e| e.next_due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nz(n: u64) -> NonZeroU64 {
        NonZeroU64::new(n).unwrap()
    }

    #[test]
    fn devices_are_due_on_their_own_grid() {
        let mut p = Poller::new();
        p.add("bms", nz(1000), Millis::ZERO);
        p.add("meter", nz(250), Millis::ZERO);
        assert_eq!(p.due(Millis::ZERO).count(), 2);
        p.polled(&"bms", Millis::new(30));
        p.polled(&"meter", Millis::new(40));
        assert_eq!(p.next_due(&"bms"), Some(Millis::new(1000)), "no drift from a late poll");
        assert_eq!(p.next_deadline(), Some(Millis::new(250)));
        assert_eq!(p.due(Millis::new(249)).count(), 0);
        assert_eq!(p.due(Millis::new(250)).copied().collect::<Vec<_>>(), vec!["meter"]);
        assert!(p.is_due(&"meter", Millis::new(260)));
        assert!(!p.is_due(&"bms", Millis::new(260)));
    }

    #[test]
    fn missed_slots_are_skipped_not_burst() {
        let mut p = Poller::new();
        p.add(1u8, nz(100), Millis::new(0));
        p.polled(&1, Millis::new(1050));
        assert_eq!(p.next_due(&1), Some(Millis::new(1100)));
        p.polled(&1, Millis::new(1100));
        assert_eq!(p.next_due(&1), Some(Millis::new(1200)));
    }
}
