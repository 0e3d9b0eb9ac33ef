//! The outbox between what the gateway wants to say and the MQTT client: three queues, taken in
//! order of importance — safety (state changes, events, birth; never dropped), answers to
//! commands (bounded: the newest are refused when full, each refusal counted), telemetry
//! (bounded: a newer value of a topic already waiting replaces it; when full the oldest is
//! dropped, counted). Pushing never blocks and never waits for the broker: the producers are
//! tasks fed from the loop's site view, and the loop itself only replaces that view.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How important a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Birth, state changes, safety events: never dropped.
    Safety,
    /// Answers to commands.
    Reply,
    /// Periodic values: the oldest go first when the queue is full.
    Telemetry,
}

/// One message to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The topic.
    pub topic: String,
    /// The payload.
    pub payload: Vec<u8>,
    /// Retained.
    pub retain: bool,
    /// QoS 1 (`true`) or 0.
    pub at_least_once: bool,
    /// MQTT 5 message expiry, counted from when it was queued: a message that waited longer
    /// is not sent at all, and one sent late carries what is left of it.
    pub expiry: Option<Duration>,
    /// MQTT 5 correlation data (answers).
    pub correlation: Option<Vec<u8>>,
    /// MQTT 5 content type.
    pub content_type: Option<&'static str>,
    /// When it was queued.
    pub queued: Instant,
}

impl Message {
    /// A QoS 1 message without properties, queued now.
    #[must_use]
    pub fn new(topic: String, payload: Vec<u8>, retain: bool) -> Self {
        Self {
            topic,
            payload,
            retain,
            at_least_once: true,
            expiry: None,
            correlation: None,
            content_type: None,
            queued: Instant::now(),
        }
    }

    /// The expiry left at `now`, whole seconds rounded up; `Some(None)` without an expiry,
    /// `None` when it has expired (do not send).
    #[must_use]
    pub fn remaining_expiry(&self, now: Instant) -> Option<Option<u32>> {
        let Some(e) = self.expiry else { return Some(None) };
        let left = e.checked_sub(now.saturating_duration_since(self.queued))?;
        if left.is_zero() {
            return None;
        }
        let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        Some(Some(u32::try_from(secs).unwrap_or(u32::MAX)))
    }
}

/// Counters of what the outbox dropped.
#[derive(Debug, Default)]
pub struct OutboxStats {
    /// Telemetry dropped because the queue was full (oldest first).
    pub telemetry_dropped: AtomicU64,
    /// Telemetry replaced in the queue by a newer value of the same topic.
    pub telemetry_superseded: AtomicU64,
    /// Answers refused because their queue was full.
    pub replies_dropped: AtomicU64,
    /// Messages not sent because their expiry passed while they waited.
    pub expired: AtomicU64,
}

#[derive(Debug, Default)]
struct Queues {
    safety: VecDeque<Message>,
    replies: VecDeque<Message>,
    telemetry: VecDeque<Message>,
}

/// The outbox.
#[derive(Debug)]
pub struct Outbox {
    queues: Mutex<Queues>,
    telemetry_cap: usize,
    reply_cap: usize,
    ready: Notify,
    stats: OutboxStats,
}

impl Outbox {
    /// An outbox holding at most `telemetry_cap` telemetry messages and `reply_cap` answers
    /// (each at least 1).
    #[must_use]
    pub fn new(telemetry_cap: usize, reply_cap: usize) -> Self {
        Self {
            queues: Mutex::new(Queues::default()),
            telemetry_cap: telemetry_cap.max(1),
            reply_cap: reply_cap.max(1),
            ready: Notify::new(),
            stats: OutboxStats::default(),
        }
    }

    fn queues(&self) -> std::sync::MutexGuard<'_, Queues> {
        // Plain queues: a panic while holding the lock leaves them usable.
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queue `m` as `class`; never blocks. `false` when it was refused (a full answer queue).
    pub fn push(&self, class: Class, m: Message) -> bool {
        let accepted = {
            let mut q = self.queues();
            match class {
                Class::Safety => {
                    q.safety.push_back(m);
                    true
                }
                Class::Reply => {
                    if q.replies.len() >= self.reply_cap {
                        self.stats.replies_dropped.fetch_add(1, Ordering::Relaxed);
                        false
                    } else {
                        q.replies.push_back(m);
                        true
                    }
                }
                Class::Telemetry => {
                    if let Some(old) = q.telemetry.iter_mut().find(|o| o.topic == m.topic) {
                        *old = m;
                        self.stats.telemetry_superseded.fetch_add(1, Ordering::Relaxed);
                    } else {
                        if q.telemetry.len() >= self.telemetry_cap {
                            q.telemetry.pop_front();
                            self.stats.telemetry_dropped.fetch_add(1, Ordering::Relaxed);
                        }
                        q.telemetry.push_back(m);
                    }
                    true
                }
            }
        };
        if accepted {
            self.ready.notify_one();
        }
        accepted
    }

    /// The most important waiting message, if any.
    pub fn pop(&self) -> Option<Message> {
        let mut q = self.queues();
        q.safety.pop_front().or_else(|| q.replies.pop_front()).or_else(|| q.telemetry.pop_front())
    }

    /// Wait for the next message.
    pub async fn next(&self) -> Message {
        loop {
            if let Some(m) = self.pop() {
                return m;
            }
            self.ready.notified().await;
        }
    }

    /// Messages waiting: (safety, answers, telemetry).
    #[must_use]
    pub fn depth(&self) -> (usize, usize, usize) {
        let q = self.queues();
        (q.safety.len(), q.replies.len(), q.telemetry.len())
    }

    /// What was dropped so far.
    #[must_use]
    pub const fn stats(&self) -> &OutboxStats {
        &self.stats
    }

    /// Count a message that expired before it could be sent.
    pub fn count_expired(&self) {
        self.stats.expired.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(topic: &str, n: u8) -> Message {
        Message::new(topic.to_owned(), vec![n], true)
    }

    #[test]
    fn safety_first_then_answers_then_telemetry() {
        let o = Outbox::new(4, 4);
        o.push(Class::Telemetry, m("t", 1));
        o.push(Class::Reply, m("r", 2));
        o.push(Class::Safety, m("s", 3));
        let order: Vec<String> = std::iter::from_fn(|| o.pop()).map(|m| m.topic).collect();
        assert_eq!(order, ["s", "r", "t"]);
    }

    #[test]
    fn telemetry_drops_oldest_and_keeps_the_newest_value_per_topic() {
        let o = Outbox::new(2, 1);
        o.push(Class::Telemetry, m("a", 1));
        o.push(Class::Telemetry, m("a", 2));
        o.push(Class::Telemetry, m("b", 3));
        o.push(Class::Telemetry, m("c", 4));
        let left: Vec<(String, u8)> =
            std::iter::from_fn(|| o.pop()).map(|m| (m.topic, m.payload[0])).collect();
        assert_eq!(left, [("b".to_owned(), 3), ("c".to_owned(), 4)]);
        assert_eq!(o.stats().telemetry_dropped.load(Ordering::Relaxed), 1);
        assert_eq!(o.stats().telemetry_superseded.load(Ordering::Relaxed), 1);
        assert!(o.push(Class::Reply, m("r", 1)));
        assert!(!o.push(Class::Reply, m("r", 2)));
        assert_eq!(o.stats().replies_dropped.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn expiry_counts_from_queueing() {
        let mut msg = m("a", 1);
        msg.expiry = Some(Duration::from_secs(10));
        assert_eq!(msg.remaining_expiry(msg.queued), Some(Some(10)));
        assert_eq!(msg.remaining_expiry(msg.queued + Duration::from_millis(2500)), Some(Some(8)));
        assert_eq!(msg.remaining_expiry(msg.queued + Duration::from_secs(10)), None);
        assert_eq!(m("b", 1).remaining_expiry(Instant::now()), Some(None));
    }

    proptest::proptest! {
        /// Whatever the mix, no safety message is ever lost and telemetry stays bounded.
        #[test]
        fn safety_is_never_dropped(ops in proptest::collection::vec((0u8..3, 0u8..8), 0..300), cap in 1usize..8) {
            let o = Outbox::new(cap, cap);
            let mut safety = 0usize;
            for (class, topic) in ops {
                let class = match class { 0 => Class::Safety, 1 => Class::Reply, _ => Class::Telemetry };
                if class == Class::Safety { safety += 1; }
                o.push(class, m(&topic.to_string(), topic));
                let (_, r, t) = o.depth();
                proptest::prop_assert!(t <= cap && r <= cap);
            }
            proptest::prop_assert_eq!(o.depth().0, safety);
        }
    }
}
