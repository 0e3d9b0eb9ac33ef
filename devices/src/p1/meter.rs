//! [`P1Meter`]: a DSMR 4/5 smart meter's P1 port as a grid [`Meter`].
//!
//! The meter pushes a telegram every second (DSMR 5; every 10 s on DSMR 4). `read` never waits
//! for one: it takes whatever bytes the link already holds, frames and checks them, and answers
//! with the newest valid telegram **with its age** ([`Meter::reading_age`]), so the snapshot
//! stamps the grid power with the time the telegram arrived. When no valid telegram arrived for
//! `max_age` (link down, meter silent, every telegram corrupt) `read` fails with
//! [`P1MeterError::Stale`] (kind `Timeout`): the grid power goes stale, never 0 W. Corrupt
//! telegrams are skipped and counted ([`P1Stats`]), never taken for a reading.
//!
//! The link is (re)connected in the background (a spawned TCP connect; a serial port opens at
//! once), so a dead dongle never delays a control cycle.

use super::endpoint::P1Endpoint;
use super::error::{P1Error, P1MeterError};
use super::framer::Framer;
use super::telegram::Telegram;
use crate::modbus::transport::{Parity, SerialSettings};
use crate::traits::{Meter, MeterReading};
use ems_core::Millis;
use futures_util::FutureExt;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::task::JoinHandle;

type Link = Box<dyn AsyncRead + Unpin + Send>;

/// At most this many reads of [`READ_CHUNK`] bytes per `read` call: a flooding link cannot hold
/// the control cycle (the rest is read next cycle).
const MAX_READS_PER_CALL: usize = 32;
const READ_CHUNK: usize = 1024;

/// Settings of a [`P1Meter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct P1MeterOptions {
    /// Oldest telegram still given as a reading (default 5000 ms: five DSMR 5 telegrams).
    pub max_age: Millis,
    /// TCP connect timeout (default 2 s).
    pub connect_timeout: Duration,
    /// Wait between connection attempts (default 1 s).
    pub reconnect_every: Duration,
}

impl Default for P1MeterOptions {
    fn default() -> Self {
        Self {
            max_age: Millis::new(5000),
            connect_timeout: Duration::from_secs(2),
            reconnect_every: Duration::from_secs(1),
        }
    }
}

/// Counters of a [`P1Meter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct P1Stats {
    /// Valid telegrams taken as readings.
    pub telegrams: u64,
    /// Telegrams rejected (CRC mismatch, truncated, too long, malformed, bad value).
    pub rejected: u64,
    /// Valid telegrams that carry no usable reading (no total power or no voltage).
    pub unusable: u64,
    /// Bytes skipped between telegrams.
    pub skipped_bytes: u64,
    /// Successful connections.
    pub connects: u64,
    /// Failed connection attempts.
    pub connect_failures: u64,
    /// Links lost (closed by the peer or a read error).
    pub disconnects: u64,
}

/// A P1 port read as a grid [`Meter`] (see the module doc).
#[derive(Debug)]
pub struct P1Meter {
    endpoint: P1Endpoint,
    options: P1MeterOptions,
    link: LinkState,
    framer: Framer,
    last: Option<(Instant, MeterReading)>,
    last_telegram: Option<Telegram>,
    last_error: Option<String>,
    started: Instant,
    age: Millis,
    stats: P1Stats,
}

enum LinkState {
    Down { retry_at: Instant },
    Connecting(JoinHandle<std::io::Result<Link>>),
    Up(Link),
}

impl core::fmt::Debug for LinkState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Down { .. } => f.write_str("Down"),
            Self::Connecting(_) => f.write_str("Connecting"),
            Self::Up(_) => f.write_str("Up"),
        }
    }
}

impl P1Meter {
    /// A meter at `endpoint`; the first connection is attempted on the first `read` (which
    /// needs a tokio runtime).
    #[must_use]
    pub fn new(endpoint: P1Endpoint, options: P1MeterOptions) -> Self {
        let now = Instant::now();
        Self {
            endpoint,
            options,
            link: LinkState::Down { retry_at: now },
            framer: Framer::new(),
            last: None,
            last_telegram: None,
            last_error: None,
            started: now,
            age: Millis::ZERO,
            stats: P1Stats::default(),
        }
    }

    /// The counters.
    #[must_use]
    pub fn stats(&self) -> P1Stats {
        P1Stats { skipped_bytes: self.framer.skipped_bytes(), ..self.stats }
    }

    /// The newest valid telegram (all its decoded objects: energy registers, phases, tariff).
    #[must_use]
    pub const fn last_telegram(&self) -> Option<&Telegram> {
        self.last_telegram.as_ref()
    }

    /// The last connection or telegram problem.
    #[must_use]
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// The endpoint.
    #[must_use]
    pub const fn endpoint(&self) -> &P1Endpoint {
        &self.endpoint
    }

    /// Connect if due, then take every byte the link already holds (never waits).
    fn pump(&mut self) {
        self.advance_link();
        let mut buf = [0u8; READ_CHUNK];
        for _ in 0..MAX_READS_PER_CALL {
            let LinkState::Up(link) = &mut self.link else { return };
            match link.read(&mut buf).now_or_never() {
                None => return,
                Some(Ok(0)) => return self.lost("link closed by the P1 device".to_owned()),
                Some(Ok(n)) => self.ingest(buf.get(..n).unwrap_or_default()),
                Some(Err(e)) => return self.lost(format!("read: {e}")),
            }
        }
    }

    fn advance_link(&mut self) {
        match &mut self.link {
            LinkState::Down { retry_at } if Instant::now() >= *retry_at => {
                self.link = match &self.endpoint {
                    P1Endpoint::Tcp { host, port } => {
                        let addr = format!("{host}:{port}");
                        let timeout = self.options.connect_timeout;
                        LinkState::Connecting(tokio::spawn(async move {
                            let s = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr))
                                .await
                                .map_err(|_| {
                                    std::io::Error::other(format!("connect timed out after {timeout:?}"))
                                })??;
                            Ok(Box::new(s) as Link)
                        }))
                    }
                    P1Endpoint::Serial(s) => match open_serial(s) {
                        Ok(link) => {
                            self.stats.connects += 1;
                            LinkState::Up(link)
                        }
                        Err(e) => {
                            self.stats.connect_failures += 1;
                            self.last_error = Some(format!("open {}: {e}", s.path));
                            LinkState::Down { retry_at: Instant::now() + self.options.reconnect_every }
                        }
                    },
                };
            }
            LinkState::Connecting(h) if h.is_finished() => {
                let r = h.now_or_never();
                self.link = match r {
                    Some(Ok(Ok(link))) => {
                        self.stats.connects += 1;
                        LinkState::Up(link)
                    }
                    other => {
                        let why = match other {
                            Some(Ok(Err(e))) => e.to_string(),
                            Some(Err(e)) => e.to_string(),
                            _ => "connect task did not finish".to_owned(),
                        };
                        self.stats.connect_failures += 1;
                        self.last_error = Some(format!("connect to {}: {why}", self.endpoint));
                        LinkState::Down { retry_at: Instant::now() + self.options.reconnect_every }
                    }
                };
            }
            LinkState::Down { .. } | LinkState::Connecting(_) | LinkState::Up(_) => {}
        }
    }

    fn lost(&mut self, why: String) {
        self.stats.disconnects += 1;
        self.last_error = Some(why);
        // The tail of a telegram cut by the lost link never comes.
        self.framer.reset();
        self.link = LinkState::Down { retry_at: Instant::now() + self.options.reconnect_every };
    }

    fn ingest(&mut self, bytes: &[u8]) {
        let mut results: Vec<Result<Telegram, P1Error>> = Vec::new();
        self.framer.feed(bytes, |r| results.push(r));
        for r in results {
            match r {
                Ok(t) => match reading_of(&t) {
                    Ok(reading) => {
                        self.stats.telegrams += 1;
                        self.last = Some((Instant::now(), reading));
                        self.last_telegram = Some(t);
                    }
                    Err(reason) => {
                        self.stats.unusable += 1;
                        self.last_error = Some(reason);
                    }
                },
                Err(e) => {
                    self.stats.rejected += 1;
                    self.last_error = Some(e.to_string());
                }
            }
        }
    }
}

/// The grid-meter reading of a valid telegram: net power (import − export) and the L1 voltage;
/// DSMR carries no frequency.
///
/// # Errors
/// What the telegram lacks, naming the OBIS codes.
pub fn reading_of(t: &Telegram) -> Result<MeterReading, String> {
    let active_power = t.net_power().ok_or_else(|| {
        "telegram carries no total power (1-0:1.7.0 and 1-0:2.7.0 are both needed)".to_owned()
    })?;
    let voltage = t
        .phases
        .iter()
        .find_map(|p| p.voltage)
        .ok_or_else(|| "telegram carries no voltage (1-0:32.7.0, 52.7.0 or 72.7.0)".to_owned())?;
    Ok(MeterReading { active_power, voltage, frequency: None })
}

fn open_serial(s: &SerialSettings) -> Result<Link, String> {
    let parity = match s.parity {
        Parity::None => tokio_serial::Parity::None,
        Parity::Even => tokio_serial::Parity::Even,
        Parity::Odd => tokio_serial::Parity::Odd,
    };
    let data_bits =
        if s.data_bits == 7 { tokio_serial::DataBits::Seven } else { tokio_serial::DataBits::Eight };
    let builder = tokio_serial::new(&s.path, s.baud).parity(parity).data_bits(data_bits);
    let stream = tokio_serial::SerialStream::open(&builder).map_err(|e| e.to_string())?;
    Ok(Box::new(stream))
}

fn millis_since(at: Instant) -> u64 {
    u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl Meter for P1Meter {
    type Error = P1MeterError;

    async fn read(&mut self) -> Result<MeterReading, P1MeterError> {
        self.pump();
        let max = self.options.max_age.get();
        match self.last {
            Some((at, r)) if millis_since(at) <= max => {
                self.age = Millis::new(millis_since(at));
                Ok(r)
            }
            last => Err(P1MeterError::Stale {
                endpoint: self.endpoint.to_string(),
                age_ms: millis_since(last.map_or(self.started, |(at, _)| at)),
                max_age_ms: max,
                last_error: self.last_error.clone(),
            }),
        }
    }

    fn reading_age(&self) -> Millis {
        self.age
    }
}
