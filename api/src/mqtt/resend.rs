//! The resend of the outage buffer: once the link is connected and announced again, wait a
//! random delay of up to `resend_jitter` (a fleet coming back after a broker outage does not
//! resend all at once), then publish the gap oldest first on `<prefix>/<site>/history`, one
//! slice at a time at QoS 1, each as `{"bufferedData": [batch, …]}` with the batches' own
//! timestamps; not retained, so the live retained state is never overwritten by old values.
//!
//! The resend has its own short-lived MQTT connection (client id `<client id>-history`, no
//! last will): with a single publish in flight on it, a PUBACK names that slice without doubt,
//! and a slice leaves the buffer only then. A slice the broker did not acknowledge (the
//! connection dropped) is resent whole later: delivery is at least once, a consumer may see a
//! batch twice (same `timestamp`) but never misses one within the buffer's bound.

use super::buffer::HistoryBuffer;
use jiff::Timestamp;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use rumqttc::Outgoing;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The longest wait for the broker's answer (CONNACK, PUBACK) during a resend.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// How often an idle resend task looks at the buffer while the link is up.
const IDLE_POLL: Duration = Duration::from_millis(500);

/// The main connection's generation (bumped on every connect and every loss) and whether it is
/// subscribed and announced (only then do the sender and the resend publish).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ready {
    /// The connection's generation.
    pub generation: u64,
    /// Subscribed and announced.
    pub ready: bool,
}

/// What the resend task needs.
#[derive(Debug)]
pub struct Resend {
    /// The history connection's options (own client id, no last will).
    pub options: MqttOptions,
    /// `<prefix>/<site>/history`.
    pub topic: String,
    /// The buffer.
    pub buffer: Arc<HistoryBuffer>,
    /// Batches per slice.
    pub slice_rows: usize,
    /// The largest random delay before a resend starts.
    pub jitter: Duration,
}

/// Why one resend attempt ended early.
#[derive(Debug, thiserror::Error)]
enum ResendError {
    #[error("broker: {0}")]
    Connection(#[from] rumqttc::v5::ConnectionError),
    #[error("client: {0}")]
    Client(#[from] rumqttc::v5::ClientError),
    #[error("no answer from the broker within {0:?}")]
    Timeout(Duration),
    #[error("buffer: {0}")]
    Buffer(String),
}

/// A fraction in [0, 1) from the system's random source (0.5 if it fails).
fn random_fraction() -> f64 {
    let mut b = [0u8; 4];
    if getrandom::fill(&mut b).is_err() {
        return 0.5;
    }
    f64::from(u32::from_le_bytes(b)) / (f64::from(u32::MAX) + 1.0)
}

/// Run until `stop`: resend the buffer after every reconnection that finds it non-empty.
pub async fn run(r: Resend, mut ready: watch::Receiver<Ready>, mut stop: watch::Receiver<bool>) {
    let mut failures = 0u32;
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = ready.wait_for(|r| r.ready) => {}
        }
        if r.buffer.is_empty() {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                () = tokio::time::sleep(IDLE_POLL) => continue,
            }
        }
        let delay = r.jitter.mul_f64(random_fraction());
        r.buffer.set_resend_from(Timestamp::now().checked_add(delay).ok());
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(delay) => {}
        }
        let outcome = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            o = attempt(&r) => o,
        };
        r.buffer.set_resend_from(None);
        match outcome {
            Ok(()) => failures = 0,
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::warn!("mqtt: resending the outage buffer stopped ({e}); trying again later");
                let wait = Duration::from_secs(1).saturating_mul(1 << failures.min(5));
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// Poll `el` until `want` matches an event.
async fn until(el: &mut EventLoop, want: impl Fn(&Event) -> bool) -> Result<(), ResendError> {
    let wait = async {
        loop {
            let e = el.poll().await?;
            if want(&e) {
                return Ok::<(), ResendError>(());
            }
        }
    };
    tokio::time::timeout(ANSWER_WITHIN, wait).await.map_err(|_| ResendError::Timeout(ANSWER_WITHIN))?
}

/// One connection: every slice, each acknowledged before the next, then a clean DISCONNECT.
async fn attempt(r: &Resend) -> Result<(), ResendError> {
    let (client, mut el) = AsyncClient::new(r.options.clone(), 4);
    until(&mut el, |e| matches!(e, Event::Incoming(Packet::ConnAck(_)))).await?;
    tracing::info!("mqtt: resending {} buffered batches on {}", r.buffer.stats().buffered, r.topic);
    while let Some(slice) = r.buffer.slice(r.slice_rows).map_err(ResendError::Buffer)? {
        client.publish(r.topic.clone(), QoS::AtLeastOnce, false, slice.payload()).await?;
        // The only publish in flight on this connection: this PUBACK is the slice's.
        until(&mut el, |e| matches!(e, Event::Incoming(Packet::PubAck(_)))).await?;
        r.buffer.confirm(&slice).map_err(ResendError::Buffer)?;
    }
    client.disconnect().await?;
    let _ = until(&mut el, |e| matches!(e, Event::Outgoing(Outgoing::Disconnect))).await;
    Ok(())
}
