//! A fleet of simulated gateways on one MQTT broker (issue #14 item 5).
//!
//! Each gateway is a [`SimulatedSite`] with its own seed and a [`Controller`] in the default
//! mode, stepped once per second; after each step it publishes its telemetry batch — the state
//! topics `<prefix>/<site>/state/<channel>` of the gateway's MQTT interface, retained with a
//! message expiry, one message per channel — through its own MQTT 5 connection (`rumqttc`). A
//! monitor subscribed to `<prefix>/+/state/#` counts what arrives and measures the end-to-end
//! latency from the publisher's clock (a `sent_ms` user property) to its own; the broker's CPU is
//! read from `/proc/<pid>/stat`. Gateways start spread over the first second, as a real fleet's
//! clocks are.
//!
//! The broker is a real Mosquitto started by the caller (`testing/tests/fleet_mosquitto.rs`);
//! the figures go to `docs/FLEET.md`.

use ems_control::{Controller, ControllerConfig, Inputs};
use ems_core::{Millis, TransitionRequest};
use ems_devices::sim::{SimSiteConfig, SimulatedSite};
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The channels of one telemetry batch.
pub const CHANNELS: [&str; 6] = [
    "_sum/GridActivePower",
    "_sum/ProductionActivePower",
    "_sum/ConsumptionActivePower",
    "_sum/EssActivePower",
    "_sum/EssSoc",
    "_sum/State",
];

/// What to run.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// Gateways.
    pub gateways: usize,
    /// Seconds of publishing measured (after `warmup`).
    pub seconds: u64,
    /// Seconds of publishing before the measurement starts.
    pub warmup: u64,
    /// The broker's host and port.
    pub broker: (String, u16),
    /// The topic prefix.
    pub prefix: String,
    /// The retained state's message expiry (s).
    pub expiry_s: u32,
    /// The broker's process id, for its CPU time (`None`: not measured).
    pub broker_pid: Option<u32>,
}

/// What was measured.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetReport {
    /// Gateways that ran.
    pub gateways: usize,
    /// Seconds measured.
    pub seconds: f64,
    /// Messages the gateways published in the measured window.
    pub published: u64,
    /// Messages the monitor received in the measured window.
    pub received: u64,
    /// Received messages per second.
    pub messages_per_s: f64,
    /// End-to-end latency percentiles (ms): p50, p99, max.
    pub latency_ms: (f64, f64, f64),
    /// The broker's CPU over the measured window, % of one core.
    pub broker_cpu_pct: Option<f64>,
    /// Publishes the client refused (its queue full or the connection down).
    pub publish_errors: u64,
}

impl FleetReport {
    /// One line for the test log and `docs/FLEET.md`.
    #[must_use]
    pub fn line(&self) -> String {
        let cpu = self.broker_cpu_pct.map_or_else(|| "n/a".to_owned(), |c| format!("{c:.1} %"));
        format!(
            "N={:>5}: {:>8.0} msg/s ({} published, {} received in {:.1} s), latency p50 {:.1} ms p99 {:.1} ms max {:.1} ms, broker CPU {cpu}, publish errors {}",
            self.gateways,
            self.messages_per_s,
            self.published,
            self.received,
            self.seconds,
            self.latency_ms.0,
            self.latency_ms.1,
            self.latency_ms.2,
            self.publish_errors
        )
    }
}

/// The fleet could not run.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// A simulated site could not be built.
    #[error("simulated site {0}: {1}")]
    Site(usize, String),
    /// The monitor could not subscribe.
    #[error("monitor: {0}")]
    Monitor(String),
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The broker's user + system CPU time (clock ticks), from `/proc/<pid>/stat`.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: the fields start after its closing parenthesis.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state (0), …, utime (11), stime (12).
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

#[derive(Debug, Default)]
struct Counters {
    published: AtomicU64,
    errors: AtomicU64,
    received: AtomicU64,
    measuring: std::sync::atomic::AtomicBool,
    latencies: Mutex<Vec<u32>>,
}

/// One gateway's values after a step.
fn batch(site: &SimulatedSite, state: ems_core::State) -> [String; 6] {
    let t = site.truth();
    let w = |x: ems_core::Watts| format!("{:.0}", x.get());
    [
        w(t.grid_power),
        w(t.pv_power),
        w(t.load_power),
        w(t.battery_power),
        format!("{:.1}", t.soc.get()),
        state.to_string(),
    ]
}

async fn gateway(
    i: usize,
    cfg: Arc<FleetConfig>,
    counters: Arc<Counters>,
    stop: Instant,
) -> Result<(), FleetError> {
    let site_config =
        SimSiteConfig { seed: u64::try_from(i).unwrap_or(0).wrapping_add(1), ..SimSiteConfig::default() };
    let mut site = SimulatedSite::new(site_config).map_err(|e| FleetError::Site(i, e.to_string()))?;
    let mut controller =
        Controller::new(ControllerConfig::default()).map_err(|e| FleetError::Site(i, e.to_string()))?;
    let id = format!("gw{i:05}");
    let mut opts = MqttOptions::new(id.clone(), cfg.broker.0.clone(), cfg.broker.1);
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut events) = AsyncClient::new(opts, 64);
    tokio::spawn(async move {
        // Drive the connection; a broken one is retried by the next poll.
        loop {
            if events.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });
    // Spread over the first second, as a fleet's clocks are.
    let offset = u64::try_from(i.wrapping_mul(7919) % 1000).unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(offset)).await;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut now = 0_u64;
    let topics: Vec<String> = CHANNELS.iter().map(|c| format!("{}/{id}/state/{c}", cfg.prefix)).collect();
    while Instant::now() < stop {
        tick.tick().await;
        now += 1000;
        let request = match now {
            1000 => Some(TransitionRequest::BootComplete),
            2000 => Some(TransitionRequest::Start),
            _ => None,
        };
        let snap = site.snapshot(Millis::new(now));
        let out = controller.step(now, &snap, &Inputs { request, reason: "fleet", ..Inputs::default() });
        site.apply(out.command.setpoint(), out.command.contactor());
        site.advance(Millis::new(1000));
        let values = batch(&site, out.state);
        let sent = unix_ms().to_string();
        for (topic, value) in topics.iter().zip(values) {
            let props = PublishProperties {
                message_expiry_interval: Some(cfg.expiry_s),
                user_properties: vec![("sent_ms".to_owned(), sent.clone())],
                ..PublishProperties::default()
            };
            let measuring = counters.measuring.load(Ordering::Relaxed);
            match client.try_publish_with_properties(topic.clone(), QoS::AtMostOnce, true, value, props) {
                Ok(()) if measuring => {
                    counters.published.fetch_add(1, Ordering::Relaxed);
                }
                Ok(()) => {}
                Err(_) => {
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
    let _ = client.disconnect().await;
    Ok(())
}

async fn monitor(cfg: Arc<FleetConfig>, counters: Arc<Counters>) -> Result<AsyncClient, FleetError> {
    let mut opts = MqttOptions::new("fleet-monitor", cfg.broker.0.clone(), cfg.broker.1);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_max_packet_size(Some(1 << 20));
    let (client, mut events) = AsyncClient::new(opts, 1024);
    client
        .subscribe(format!("{}/+/state/#", cfg.prefix), QoS::AtMostOnce)
        .await
        .map_err(|e| FleetError::Monitor(e.to_string()))?;
    tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    // Retained messages replayed on subscribing are not part of the flow.
                    if p.retain || !counters.measuring.load(Ordering::Relaxed) {
                        continue;
                    }
                    counters.received.fetch_add(1, Ordering::Relaxed);
                    let sent = p.properties.as_ref().and_then(|pr| {
                        pr.user_properties
                            .iter()
                            .find(|(k, _)| k == "sent_ms")
                            .and_then(|(_, v)| v.parse::<u64>().ok())
                    });
                    if let Some(sent) = sent {
                        let lat = u32::try_from(unix_ms().saturating_sub(sent)).unwrap_or(u32::MAX);
                        counters.latencies.lock().unwrap_or_else(PoisonError::into_inner).push(lat);
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    Ok(client)
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted.get(i).map_or(f64::NAN, |x| f64::from(*x))
}

/// Run the fleet on a multi-threaded runtime of its own; blocks until done.
///
/// # Errors
/// [`FleetError`] when a site or the monitor cannot start.
pub fn run_fleet(config: FleetConfig) -> Result<FleetReport, FleetError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| FleetError::Monitor(e.to_string()))?;
    rt.block_on(run(config))
}

async fn run(config: FleetConfig) -> Result<FleetReport, FleetError> {
    let cfg = Arc::new(config);
    let counters = Arc::new(Counters::default());
    let _monitor = monitor(cfg.clone(), counters.clone()).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stop = Instant::now() + Duration::from_secs(cfg.warmup + cfg.seconds + 1);
    let tasks: Vec<_> =
        (0..cfg.gateways).map(|i| tokio::spawn(gateway(i, cfg.clone(), counters.clone(), stop))).collect();
    tokio::time::sleep(Duration::from_secs(cfg.warmup)).await;
    let cpu0 = cfg.broker_pid.and_then(cpu_ticks);
    let t0 = Instant::now();
    counters.measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(cfg.seconds)).await;
    counters.measuring.store(false, Ordering::Relaxed);
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu1 = cfg.broker_pid.and_then(cpu_ticks);
    for t in tasks {
        match t.await {
            Ok(r) => r?,
            Err(e) => return Err(FleetError::Monitor(e.to_string())),
        }
    }
    // Messages in flight at the end of the window still count as received.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut lat = std::mem::take(&mut *counters.latencies.lock().unwrap_or_else(PoisonError::into_inner));
    lat.sort_unstable();
    let received = counters.received.load(Ordering::Relaxed);
    #[allow(clippy::cast_precision_loss)] // counts far below 2^52
    let rate = received as f64 / elapsed;
    #[allow(clippy::cast_precision_loss)] // clock ticks
    let cpu = match (cpu0, cpu1) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / 100.0 / elapsed * 100.0),
        _ => None,
    };
    Ok(FleetReport {
        gateways: cfg.gateways,
        seconds: elapsed,
        published: counters.published.load(Ordering::Relaxed),
        received,
        messages_per_s: rate,
        latency_ms: (
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            lat.last().map_or(f64::NAN, |x| f64::from(*x)),
        ),
        broker_cpu_pct: cpu,
        publish_errors: counters.errors.load(Ordering::Relaxed),
    })
}
