//! The MQTT client (`rumqttc`, MQTT 5) as tasks of the API's tokio runtime, never of the control
//! thread:
//! - `telemetry` reads the loop's site view (a `watch` channel: the loop only replaces a value)
//!   and queues state messages and safety events in the [`Outbox`];
//!   — and, while the broker is unreachable, one batch of every channel per publish period
//!   into the outage [`HistoryBuffer`] (the database);
//! - `sender` moves the outbox into the client, only while connected and subscribed, so that a
//!   broker outage fills the bounded outbox (dropping the oldest telemetry), not the client;
//! - `resend` sends the outage buffer on `<prefix>/<site>/history` after a reconnection
//!   ([`super::resend`]);
//! - `events` polls the connection: reconnects with back-off, subscribes and publishes the
//!   birth message on every connection, decodes incoming commands;
//! - `commands` dispatches decoded commands one at a time through the REST router; the E-stop is
//!   dispatched at once on its own task, never behind other commands.

use super::buffer::HistoryBuffer;
use super::command::{decode, Command, CommandError, CommandKind, Incoming, ReplyTo};
use super::config::MqttConfig;
use super::outbox::{Class, Message, Outbox};
use super::resend::{Ready, Resend};
use super::status::{snapshot, Counters, MqttStats, MqttStatus, Probe};
use super::topics::{discovery, history_entry, telemetry, SafetyDiff, Topics};
use crate::db::Db;
use crate::model::SiteView;
use crate::ports::{AuditEntry, Outcome};
use crate::start::LoopAudit;
use axum::http::StatusCode;
use axum::Router;
use rumqttc::v5::mqttbytes::v5::{Filter, LastWill, Packet, Publish, PublishProperties, RetainForwardRule};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use rumqttc::Outgoing;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tower::ServiceExt;

/// Commands (E-stop aside) that may wait for the one dispatching before new ones are refused
/// with 503.
pub const COMMAND_QUEUE: usize = 16;
/// Answers that may wait for the broker.
pub const REPLY_QUEUE: usize = 256;
/// Requests the MQTT client itself buffers (the outbox holds the rest).
const CLIENT_CHANNEL: usize = 16;
/// Largest MQTT packet the gateway accepts (a command's REST body plus properties).
const MAX_PACKET: u32 = 128 * 1024;
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// What the MQTT link is connected to.
pub struct MqttLinks {
    /// The REST router (`ServerConfig::assemble`): commands go through it.
    pub router: Router,
    /// The loop's site view.
    pub view: watch::Receiver<SiteView>,
    /// Where MQTT-level refusals are audited (those the router never sees).
    pub audit: Option<LoopAudit>,
    /// The database for the outage buffer (`mqtt_outbox`; memory without one).
    pub db: Option<Arc<Db>>,
    /// Where `GET /api/v1/mqtt` reads the link's counters (`None`: not served).
    pub status: Option<Arc<MqttStatus>>,
}

impl std::fmt::Debug for MqttLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttLinks").field("audit", &self.audit.is_some()).finish_non_exhaustive()
    }
}

/// Why the link could not start.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    /// A bad setting.
    #[error(transparent)]
    Config(#[from] super::config::MqttConfigError),
    /// A TLS file could not be read.
    #[error("mqtt TLS file {}: {error}", path.display())]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        error: std::io::Error,
    },
}

/// The running MQTT link. Dropping it leaves it running for as long as the runtime runs;
/// [`Mqtt::stop`] publishes `offline` and disconnects.
#[derive(Debug)]
pub struct Mqtt {
    stop: watch::Sender<bool>,
    events: JoinHandle<()>,
    others: Vec<JoinHandle<()>>,
    counters: Arc<Counters>,
    outbox: Arc<Outbox>,
    buffer: Arc<HistoryBuffer>,
}

/// What the tasks share.
struct Shared {
    topics: Topics,
    router: Router,
    outbox: Arc<Outbox>,
    buffer: Arc<HistoryBuffer>,
    counters: Arc<Counters>,
    audit: Option<LoopAudit>,
}

impl Mqtt {
    /// Start the link on the current tokio runtime (the API's). The broker need not be up: the
    /// link connects, and reconnects, in the background.
    ///
    /// # Errors
    /// [`MqttError`] for an invalid configuration or an unreadable TLS file.
    pub fn start(config: &MqttConfig, links: MqttLinks) -> Result<Self, MqttError> {
        config.validate()?;
        let topics = Topics::new(config.root());
        let options = options(config, &topics, false)?;
        let resend = Resend {
            options: self::options(config, &topics, true)?,
            topic: topics.history(),
            buffer: Arc::new(HistoryBuffer::new(links.db, config.buffer_rows)),
            slice_rows: config.slice_rows,
            jitter: config.resend_jitter,
        };
        let buffer = resend.buffer.clone();
        let (client, eventloop) = AsyncClient::new(options, CLIENT_CHANNEL);
        let outbox = Arc::new(Outbox::new(config.queue, REPLY_QUEUE));
        let counters = Arc::new(Counters::default());
        if let Some(s) = &links.status {
            let probe = Probe { counters: counters.clone(), outbox: outbox.clone(), buffer: buffer.clone() };
            s.fill(probe);
        }
        let shared = Arc::new(Shared {
            topics,
            router: links.router,
            outbox: outbox.clone(),
            buffer: buffer.clone(),
            counters: counters.clone(),
            audit: links.audit,
        });
        let (stop, stopped) = watch::channel(false);
        let (ready_tx, ready) = watch::channel(Ready::default());
        let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
        let others = vec![
            tokio::spawn(run_telemetry(
                links.view,
                shared.clone(),
                config.publish_every,
                config.expiry,
                ready.clone(),
                stopped.clone(),
            )),
            tokio::spawn(super::resend::run(resend, ready.clone(), stopped.clone())),
            tokio::spawn(run_sender(client.clone(), outbox.clone(), ready, stopped.clone())),
            tokio::spawn(run_commands(cmd_rx, shared.clone())),
        ];
        let on_connect = OnConnect {
            client,
            topics: shared.topics.clone(),
            discovery: config.home_assistant.then(|| discovery(&shared.topics, &config.site)),
            ready: ready_tx,
        };
        let events = tokio::spawn(run_events(eventloop, on_connect, shared, cmd_tx, stopped));
        Ok(Self { stop, events, others, counters, outbox, buffer })
    }

    /// The counters now.
    #[must_use]
    pub fn stats(&self) -> MqttStats {
        snapshot(&self.counters, &self.outbox, &self.buffer)
    }

    /// Publish `offline` (retained), disconnect cleanly (the broker then does not send the last
    /// will), and end the tasks; waits at most `within`.
    pub async fn stop(self, within: Duration) {
        let _ = self.stop.send(true);
        let mut events = self.events;
        if tokio::time::timeout(within, &mut events).await.is_err() {
            events.abort();
        }
        for t in self.others {
            t.abort();
        }
    }

    /// End the tasks at once, without `offline` and without a DISCONNECT: the broker sees a
    /// dropped connection, as after a crash, and publishes the last will. For tests.
    pub fn abort(self) {
        self.events.abort();
        for t in self.others {
            t.abort();
        }
    }
}

/// The options of the main connection, or (`history`) of the resend's own connection: client
/// id `<client id>-history`, no last will (its end says nothing about the site).
fn options(config: &MqttConfig, topics: &Topics, history: bool) -> Result<MqttOptions, MqttError> {
    let id = if history { format!("{}-history", config.client_id) } else { config.client_id.clone() };
    let mut o = MqttOptions::new(id, config.broker.host.clone(), config.broker.port);
    o.set_keep_alive(config.keepalive);
    o.set_clean_start(true);
    o.set_max_packet_size(Some(MAX_PACKET));
    if !history {
        o.set_last_will(LastWill::new(topics.status(), "offline", QoS::AtLeastOnce, true, None));
    }
    if let Some(tls) = &config.tls {
        let read = |path: &std::path::Path| {
            std::fs::read(path).map_err(|error| MqttError::File { path: path.to_path_buf(), error })
        };
        let ca = read(&tls.ca)?;
        let client = match &tls.client {
            Some((cert, key)) => Some((read(cert)?, read(key)?)),
            None => None,
        };
        o.set_transport(rumqttc::Transport::tls(ca, client, None));
    }
    Ok(o)
}

struct OnConnect {
    client: AsyncClient,
    topics: Topics,
    discovery: Option<Message>,
    ready: watch::Sender<Ready>,
}

impl OnConnect {
    fn set(&self, generation: u64, ready: bool) {
        self.ready.send_replace(Ready { generation, ready });
    }

    /// Subscribe to the commands, publish the birth (and discovery), then let the sender go.
    fn connected(&self, generation: u64) {
        self.set(generation, false);
        let client = self.client.clone();
        let filter = Filter {
            path: self.topics.commands(),
            qos: QoS::AtLeastOnce,
            nolocal: true,
            // A retained command must arrive marked retained, to be refused.
            preserve_retain: true,
            // A command retained in the broker is never delivered to the gateway at all.
            retain_forward_rule: RetainForwardRule::Never,
        };
        let status = self.topics.status();
        let discovery = self.discovery.clone();
        let ready = self.ready.clone();
        tokio::spawn(async move {
            let birth = async {
                client.subscribe_many([filter]).await?;
                client.publish(status, QoS::AtLeastOnce, true, "online").await?;
                if let Some(d) = discovery {
                    let p = props(&d, None);
                    client.publish_with_properties(d.topic, QoS::AtLeastOnce, true, d.payload, p).await?;
                }
                Ok::<(), rumqttc::v5::ClientError>(())
            };
            if birth.await.is_ok() {
                ready.send_if_modified(|r| {
                    let mine = r.generation == generation;
                    if mine {
                        r.ready = true;
                    }
                    mine
                });
            }
        });
    }
}

fn props(m: &Message, expiry: Option<u32>) -> PublishProperties {
    PublishProperties {
        message_expiry_interval: expiry,
        correlation_data: m.correlation.clone().map(Into::into),
        content_type: m.content_type.map(str::to_owned),
        ..PublishProperties::default()
    }
}

async fn run_events(
    mut eventloop: EventLoop,
    on_connect: OnConnect,
    shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
    mut stop: watch::Receiver<bool>,
) {
    let mut generation = 0u64;
    let mut failures = 0u32;
    let c = &shared.counters;
    loop {
        let event = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            e = eventloop.poll() => e,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                generation += 1;
                failures = 0;
                c.connections.fetch_add(1, Ordering::Relaxed);
                c.connected.store(true, Ordering::Relaxed);
                tracing::info!("mqtt: connected to the broker as {}", shared.topics.root());
                on_connect.connected(generation);
            }
            Ok(Event::Incoming(Packet::Publish(p))) => shared.incoming(&p, &commands),
            Ok(_) => {}
            Err(e) => {
                generation += 1;
                on_connect.set(generation, false);
                c.connect_failures.fetch_add(1, Ordering::Relaxed);
                if c.connected.swap(false, Ordering::Relaxed) || failures == 0 {
                    tracing::warn!("mqtt: broker unreachable ({e}); retrying with back-off");
                }
                failures = failures.saturating_add(1);
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => break,
                    () = tokio::time::sleep(backoff(failures)) => {}
                }
            }
        }
    }
    if c.connected.load(Ordering::Relaxed) {
        goodbye(&mut eventloop, &on_connect.client, &shared.topics).await;
    }
    c.connected.store(false, Ordering::Relaxed);
}

/// `offline` and a clean DISCONNECT, polling the connection until the DISCONNECT is out.
async fn goodbye(eventloop: &mut EventLoop, client: &AsyncClient, topics: &Topics) {
    let client = client.clone();
    let status = topics.status();
    tokio::spawn(async move {
        let _ = client.publish(status, QoS::AtLeastOnce, true, "offline").await;
        let _ = client.disconnect().await;
    });
    loop {
        match eventloop.poll().await {
            Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

/// 0.5 s, 1 s, 2 s, ... up to [`MAX_BACKOFF`], each with up to 25 % random extra, so that a
/// fleet reconnecting after a broker restart does not arrive all at once.
fn backoff(failures: u32) -> Duration {
    let base =
        Duration::from_millis(500).saturating_mul(1 << failures.saturating_sub(1).min(5)).min(MAX_BACKOFF);
    let mut b = [0u8; 1];
    let jitter = if getrandom::fill(&mut b).is_ok() { u32::from(b[0]) } else { 0 };
    base + base / 4 * jitter / 255
}

impl Shared {
    fn incoming(self: &Arc<Self>, p: &Publish, commands: &mpsc::Sender<Command>) {
        let topic = String::from_utf8_lossy(&p.topic);
        let props = p.properties.as_ref();
        let m = Incoming {
            topic: &topic,
            retain: p.retain,
            response_topic: props.and_then(|p| p.response_topic.as_deref()),
            correlation: props.and_then(|p| p.correlation_data.as_deref()),
            user_properties: props.map_or(&[], |p| p.user_properties.as_slice()),
            payload: &p.payload,
        };
        match decode(self.topics.root(), &m) {
            Ok(cmd) if cmd.kind == CommandKind::EmergencyStop => {
                let me = Arc::clone(self);
                tokio::spawn(async move { me.dispatch(cmd).await });
            }
            Ok(cmd) => {
                if let Err(e) = commands.try_send(cmd) {
                    let cmd = match e {
                        mpsc::error::TrySendError::Full(c) | mpsc::error::TrySendError::Closed(c) => c,
                    };
                    let why = "the gateway is busy with other MQTT commands; retry later";
                    self.refused(&topic, why);
                    self.reply(&cmd.reply, StatusCode::SERVICE_UNAVAILABLE, json!({ "error": why }));
                }
            }
            Err(r) if matches!(r.error, CommandError::OutsideSite(_)) => {
                self.counters.ignored.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("mqtt: ignored {}", r.error);
            }
            Err(r) => {
                self.refused(&topic, &r.error.to_string());
                if let Some(reply) = &r.reply {
                    let body = json!({ "error": r.error.to_string(), "field": r.error.field() });
                    self.reply(reply, r.error.status(), body);
                }
            }
        }
    }

    /// Audit a command refused before the router (flood-safe: a routine entry, dropped and
    /// counted when the audit writer is behind).
    fn refused(&self, topic: &str, why: &str) {
        self.counters.refused.fetch_add(1, Ordering::Relaxed);
        tracing::info!(target: "audit", "mqtt: {topic}: {why}");
        if let Some(a) = &self.audit {
            let mut action = format!("mqtt {topic}");
            if action.len() > 200 {
                let mut cut = 197;
                while !action.is_char_boundary(cut) {
                    cut -= 1;
                }
                action.truncate(cut);
                action.push_str("...");
            }
            let entry = AuditEntry {
                seq: 0,
                at: jiff::Timestamp::now(),
                actor: "mqtt".to_owned(),
                action,
                outcome: Outcome::Refused,
                detail: why.to_owned(),
            };
            let _ = a.append_routine(&entry);
        }
    }

    fn reply(&self, to: &ReplyTo, status: StatusCode, body: Value) {
        let mut m = Message::new(to.topic.clone(), answer(status, body).to_string().into_bytes(), false);
        m.correlation.clone_from(&to.correlation);
        m.content_type = Some("application/json");
        let _ = self.outbox.push(Class::Reply, m);
    }

    /// Through the REST router: roles, validation, audit, watchdog and `until` are the REST
    /// API's own.
    async fn dispatch(&self, cmd: Command) {
        self.counters.commands.fetch_add(1, Ordering::Relaxed);
        let (status, body) = match cmd.to_request() {
            Ok(req) => call(self.router.clone(), req).await,
            Err(e) => (StatusCode::BAD_REQUEST, json!({ "error": e.to_string() })),
        };
        self.reply(&cmd.reply, status, body);
    }
}

/// The ack or nack: `{"ok": <2xx>, "status": <HTTP status>, "body": <REST answer or error>}`.
#[must_use]
pub fn answer(status: StatusCode, body: Value) -> Value {
    json!({ "ok": status.is_success(), "status": status.as_u16(), "body": body })
}

async fn call(router: Router, req: axum::http::Request<axum::body::Body>) -> (StatusCode, Value) {
    let resp = match router.oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let status = resp.status();
    let body = match axum::body::to_bytes(resp.into_body(), 1 << 20).await {
        Ok(b) if b.is_empty() => Value::Null,
        Ok(b) => serde_json::from_slice(&b)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&b).into_owned())),
        Err(e) => json!({ "error": format!("answer unreadable: {e}") }),
    };
    (status, body)
}

async fn run_commands(mut rx: mpsc::Receiver<Command>, shared: Arc<Shared>) {
    while let Some(cmd) = rx.recv().await {
        shared.dispatch(cmd).await;
    }
}

async fn run_sender(
    client: AsyncClient,
    outbox: Arc<Outbox>,
    mut ready: watch::Receiver<Ready>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let m = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            m = async {
                // Only while connected and announced: during an outage the bounded outbox
                // fills (and drops the oldest telemetry), not the client's channel.
                let _ = ready.wait_for(|r| r.ready).await;
                outbox.next().await
            } => m,
        };
        let Some(expiry) = m.remaining_expiry(Instant::now()) else {
            outbox.count_expired();
            continue;
        };
        let qos = if m.at_least_once { QoS::AtLeastOnce } else { QoS::AtMostOnce };
        let p = props(&m, expiry);
        if client.publish_with_properties(m.topic, qos, m.retain, m.payload, p).await.is_err() {
            return;
        }
    }
}

async fn run_telemetry(
    mut view: watch::Receiver<SiteView>,
    shared: Arc<Shared>,
    every: Duration,
    expiry: Duration,
    ready: watch::Receiver<Ready>,
    mut stop: watch::Receiver<bool>,
) {
    let mut diff = SafetyDiff::default();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let t = &shared.topics;
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tick.tick() => {
                let v = view.borrow().clone();
                for m in diff.messages(t, &v, expiry) {
                    shared.outbox.push(Class::Safety, m);
                }
                for m in telemetry(t, &v, expiry) {
                    shared.outbox.push(Class::Telemetry, m);
                }
                // The broker is away: the batch is kept for the resend on `history` (the live
                // retained state above is only the newest value per topic).
                if !ready.borrow().ready {
                    if let Some(entry) = history_entry(&v) {
                        shared.buffer.push(entry);
                    }
                }
            }
            changed = view.changed() => {
                if changed.is_err() {
                    // The loop has ended: nothing more to publish.
                    return;
                }
                let v = view.borrow_and_update().clone();
                for m in diff.messages(t, &v, expiry) {
                    shared.outbox.push(Class::Safety, m);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_bound_with_bounded_jitter() {
        assert!(backoff(1) >= Duration::from_millis(500) && backoff(1) <= Duration::from_millis(625));
        assert!(backoff(3) >= Duration::from_secs(2));
        for n in [6, 10, 1000] {
            assert!(backoff(n) >= MAX_BACKOFF && backoff(n) <= MAX_BACKOFF * 5 / 4);
        }
    }

    #[test]
    fn answers_carry_ok_status_and_body() {
        let a = answer(StatusCode::CONFLICT, json!({ "error": "no" }));
        assert_eq!(a, json!({ "ok": false, "status": 409, "body": { "error": "no" } }));
        assert_eq!(answer(StatusCode::OK, Value::Null)["ok"], true);
    }
}
