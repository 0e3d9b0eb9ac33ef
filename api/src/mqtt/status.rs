//! The MQTT link's counters and the status behind `GET /api/v1/mqtt` (a leaf: the REST state
//! holds it without knowing the link).

use super::buffer::{BufferStats, HistoryBuffer};
use super::outbox::Outbox;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// The error of `GET /api/v1/mqtt` on a gateway without an MQTT link (404).
pub const NOT_CONFIGURED: &str = "no MQTT link: the site file has no [mqtt]";

/// Counters of the link.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) connected: AtomicBool,
    pub(super) connections: AtomicU64,
    pub(super) connect_failures: AtomicU64,
    pub(super) commands: AtomicU64,
    pub(super) refused: AtomicU64,
    pub(super) ignored: AtomicU64,
}

/// A snapshot of the link's counters (`GET /api/v1/mqtt`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MqttStats {
    /// Connected now.
    pub connected: bool,
    /// Connections made (1 + reconnections).
    pub connections: u64,
    /// Failed connection attempts and lost connections.
    pub connect_failures: u64,
    /// Commands dispatched to the router.
    pub commands: u64,
    /// Commands refused before the router (retained, no response topic, ...).
    pub refused: u64,
    /// Messages outside the site's command topics, ignored.
    pub ignored: u64,
    /// Telemetry dropped by the outbox (oldest first).
    pub telemetry_dropped: u64,
    /// Telemetry replaced by a newer value of its topic while waiting.
    pub telemetry_superseded: u64,
    /// Answers dropped (answer queue full).
    pub replies_dropped: u64,
    /// Messages not sent because their expiry passed while they waited.
    pub expired: u64,
    /// Outage buffer: batches held now (waiting to be resent on `<prefix>/<site>/history`).
    pub buffered: u64,
    /// Outage buffer: its bound in batches.
    pub buffer_rows: u64,
    /// Outage buffer: batches taken while the broker was unreachable.
    pub buffer_taken: u64,
    /// Outage buffer: batches merged into older ones because it was full (resolution lost,
    /// nothing dropped).
    pub buffer_merged: u64,
    /// Outage buffer: batches that could not be stored (the database failed).
    pub buffer_dropped: u64,
    /// Outage buffer: batches resent and acknowledged by the broker.
    pub resent: u64,
    /// Outage buffer: slices resent and acknowledged.
    pub resent_slices: u64,
    /// When the resend may start (the random delay after a reconnection), while one waits.
    pub resend_from: Option<jiff::Timestamp>,
}

/// The link's counters for `GET /api/v1/mqtt`: made before the link (the router needs it),
/// filled when the link starts.
#[derive(Debug, Default)]
pub struct MqttStatus(OnceLock<Probe>);

#[derive(Debug)]
pub(super) struct Probe {
    pub(super) counters: Arc<Counters>,
    pub(super) outbox: Arc<Outbox>,
    pub(super) buffer: Arc<HistoryBuffer>,
}

impl MqttStatus {
    /// An empty status (the link not started yet).
    #[must_use]
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Fill the status (a status given to a second link keeps showing the first).
    pub(super) fn fill(&self, probe: Probe) {
        let _ = self.0.set(probe);
    }

    /// The counters now; `None` before the link started.
    #[must_use]
    pub fn get(&self) -> Option<MqttStats> {
        self.0.get().map(|p| snapshot(&p.counters, &p.outbox, &p.buffer))
    }
}

pub(super) fn snapshot(c: &Counters, outbox: &Outbox, buffer: &HistoryBuffer) -> MqttStats {
    let o = outbox.stats();
    let BufferStats { buffered, buffer_rows, taken, merged, dropped, resent, slices } = buffer.stats();
    MqttStats {
        connected: c.connected.load(Ordering::Relaxed),
        connections: c.connections.load(Ordering::Relaxed),
        connect_failures: c.connect_failures.load(Ordering::Relaxed),
        commands: c.commands.load(Ordering::Relaxed),
        refused: c.refused.load(Ordering::Relaxed),
        ignored: c.ignored.load(Ordering::Relaxed),
        telemetry_dropped: o.telemetry_dropped.load(Ordering::Relaxed),
        telemetry_superseded: o.telemetry_superseded.load(Ordering::Relaxed),
        replies_dropped: o.replies_dropped.load(Ordering::Relaxed),
        expired: o.expired.load(Ordering::Relaxed),
        buffered,
        buffer_rows,
        buffer_taken: taken,
        buffer_merged: merged,
        buffer_dropped: dropped,
        resent,
        resent_slices: slices,
        resend_from: buffer.resend_from(),
    }
}
