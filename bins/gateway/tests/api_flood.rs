//! Issue #10's acceptance criterion for the local API under a flood: the simulated site with
//! the API and a SQLite audit log (`--api-db`), 1,100 idle TCP connections (more than the
//! server's limit of 256; they are evicted or closed at the header-read timeout), then 4,000
//! requests from 16 clients, each a thread on its own loopback address 127.0.0.2–17 (2,000
//! without a token or with a garbage one, 2,000 with the
//! admin token). While the flood runs, the software E-stop must be answered 200 `STOPPED`
//! (it is exempt from every rate limit and may evict an idle connection), the control loop
//! must keep cycling (its cycle count keeps growing in `GET /metrics`), and the audit log must
//! grow by a bounded number of rows (refusals before authentication are sampled, a repeated
//! control mode is a refresh, not a change).
//!
//! Timing figures (E-stop latency, cycle lateness p99, ...) are printed, not asserted: the
//! machines that run the tests are noisy; the benchmark checks timing.
// Test code: a failed unwrap or panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod support;

use support::Gateway;

/// Idle connections the test tries to hold.
const IDLE_WANTED: usize = 1_100;
/// Client threads of the flood.
const THREADS: usize = 16;
/// Requests per thread (half anonymous, half with the admin token): 16 × 250 = 4,000.
const PER_THREAD: usize = 250;
/// The flood gives up (and reports how many it did not send) after this long.
const FLOOD_BUDGET: Duration = Duration::from_secs(75);
/// Read and write timeout of one request.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// A request that got no HTTP answer: why.
type Failure = String;

/// One HTTP/1.1 request on its own connection (`Connection: close`): the status and the
/// (de-chunked) body, or why there was no answer.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Result<(u16, String), Failure> {
    request_from(None, addr, method, path, token, body)
}

/// [`request`] from the loopback address `from` (`127.0.0.x`: Linux routes all of 127/8 to the
/// loopback interface), so that each flood client is its own client address.
fn request_from(
    from: Option<std::net::Ipv4Addr>,
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Result<(u16, String), Failure> {
    let mut s = match from {
        None => {
            TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| class("connect", &e))?
        }
        Some(ip) => {
            let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                .map_err(|e| class("socket", &e))?;
            sock.bind(&SocketAddr::from((ip, 0)).into()).map_err(|e| class("bind", &e))?;
            sock.connect_timeout(&addr.into(), Duration::from_secs(5)).map_err(|e| class("connect", &e))?;
            TcpStream::from(sock)
        }
    };
    s.set_read_timeout(Some(IO_TIMEOUT)).map_err(|e| class("setup", &e))?;
    s.set_write_timeout(Some(IO_TIMEOUT)).map_err(|e| class("setup", &e))?;
    let _ = s.set_nodelay(true);
    let body = body.unwrap_or("");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if !body.is_empty() {
        req.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    // A server at its limit answers 503 without reading: a failed write may still have an
    // answer to read.
    let wrote = s.write_all(req.as_bytes());
    let mut raw = Vec::new();
    let read = s.read_to_end(&mut raw);
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let status =
        raw.strip_prefix("HTTP/1.").and_then(|r| r.split(' ').nth(1)).and_then(|c| c.parse::<u16>().ok());
    let Some(status) = status else {
        return Err(match (wrote, read) {
            (Err(e), _) => class("write", &e),
            (_, Err(e)) => class("read", &e),
            _ if raw.is_empty() => "closed without an answer".to_owned(),
            _ => "unparsable answer".to_owned(),
        });
    };
    let (head, payload) = raw.split_once("\r\n\r\n").unwrap_or((raw.as_str(), ""));
    let payload = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(payload)
    } else {
        payload.to_owned()
    };
    Ok((status, payload))
}

fn class(stage: &str, e: &std::io::Error) -> Failure {
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => format!("{stage}: timeout"),
        kind => format!("{stage}: {kind:?}"),
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest.get(n + 2..).unwrap_or("");
    }
    out
}

/// `GET path` with the admin token, retried (bounded) while rate-limited or refused, until a
/// 200; its body.
fn get_ok(g: &Gateway, addr: SocketAddr, path: &str, within: Duration) -> String {
    let until = Instant::now() + within;
    loop {
        let last = match request(addr, "GET", path, Some(&g.token), None) {
            Ok((200, body)) => return body,
            Ok((code, body)) => format!("{code} {body}"),
            Err(e) => e,
        };
        assert!(Instant::now() < until, "GET {path}: no 200 within {within:?}; last: {last}");
        // 5 requests a second per token, 20 per address.
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn wait_for_state(g: &Gateway, addr: SocketAddr, want: &str, within: Duration) {
    let until = Instant::now() + within;
    loop {
        let body = get_ok(g, addr, "/api/v1/safety", within);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
        let state = v["state"].as_str().unwrap_or("?").to_owned();
        if state == want {
            return;
        }
        assert!(Instant::now() < until, "the gateway was not {want} within {within:?}: state {state}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The soft limit of open files of this process (`/proc/self/limits`), if readable.
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// A histogram of the Prometheus text: `(upper bound, cumulative count)` per bucket (`+Inf`
/// as infinity), and `_count`.
#[derive(Debug, Clone, PartialEq)]
struct Histogram {
    buckets: Vec<(f64, u64)>,
    count: u64,
}

impl Histogram {
    fn parse(text: &str, name: &str) -> Option<Self> {
        let prefix = format!("{name}_bucket{{le=\"");
        let mut buckets = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix(&prefix) {
                let (le, n) = rest.split_once("\"} ")?;
                let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
                buckets.push((le, n.trim().parse().ok()?));
            }
        }
        let count = scalar(text, &format!("{name}_count"))?;
        if buckets.is_empty() {
            return None;
        }
        // f64 to u64 has no `TryFrom`: a Prometheus counter, a whole number ≥ 0 written as a float.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let count = count as u64;
        Some(Self { buckets, count })
    }

    /// Observations since `before` (same buckets).
    fn since(&self, before: &Self) -> Self {
        let buckets = self
            .buckets
            .iter()
            .zip(&before.buckets)
            .map(|((le, n), (_, m))| (*le, n.saturating_sub(*m)))
            .collect();
        Self { buckets, count: self.count.saturating_sub(before.count) }
    }

    /// The smallest bucket bound whose cumulative count is at least 99 % of `_count` (rank
    /// rounded up); `None` without observations.
    fn p99(&self) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = self.count.saturating_mul(99).div_ceil(100);
        self.buckets.iter().find(|(_, n)| *n >= rank).map(|(le, _)| *le)
    }
}

fn show_bound(b: Option<f64>) -> String {
    match b {
        None => "n/a (no observations)".to_owned(),
        Some(s) if s.is_infinite() => "> 1 s (above the largest bucket)".to_owned(),
        Some(s) => format!("<= {} ms", s * 1000.0),
    }
}

/// The value of an unlabelled sample `name`.
fn scalar(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// `(code, count)` of `ems_api_requests_total{code="..."}`.
fn api_codes(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("ems_api_requests_total{code=\"")?;
            let (code, n) = rest.split_once("\"} ")?;
            Some((code.to_owned(), n.trim().parse().ok()?))
        })
        .collect()
}

/// Rows in the audit log and the highest sequence number.
fn audit_rows(db: &Path) -> (usize, u64) {
    let db = ems_api::db::Db::open(db).unwrap();
    let rows = ems_api::ports::AuditSink::recent(&db, 1_000_000).unwrap();
    (rows.len(), rows.first().map_or(0, |e| e.seq))
}

/// [`audit_rows`] once it has not changed for a second (the writer thread caught up),
/// bounded by `within` (then the last reading).
fn audit_rows_settled(db: &Path, within: Duration) -> (usize, u64) {
    let until = Instant::now() + within;
    let mut last = audit_rows(db);
    let mut stable_since = Instant::now();
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(200));
        let now = audit_rows(db);
        if now == last {
            if stable_since.elapsed() >= Duration::from_secs(1) {
                return now;
            }
        } else {
            last = now;
            stable_since = Instant::now();
        }
    }
    println!("audit log still changing after {within:?}; using the last count");
    last
}

fn file_size(p: &Path) -> String {
    std::fs::metadata(p).map_or_else(|_| "absent".to_owned(), |m| format!("{} bytes", m.len()))
}

/// One flood thread's tally: answers by kind and status (or failure), and its slowest answer.
#[derive(Debug, Default)]
struct Tally {
    codes: BTreeMap<String, u64>,
    slowest: Duration,
    not_sent: usize,
}

fn flood_thread(
    addr: SocketAddr,
    token: &str,
    thread: usize,
    done: &AtomicUsize,
    deadline: Instant,
) -> Tally {
    let mut t = Tally::default();
    for j in 0..PER_THREAD {
        if Instant::now() >= deadline {
            t.not_sent += PER_THREAD - j;
            break;
        }
        let n = thread * PER_THREAD + j;
        let i = n / 2;
        let (kind, method, path, tok, body) = if n.is_multiple_of(2) {
            // Anonymous: no token, or a garbage one.
            if i.is_multiple_of(2) {
                ("anonymous", "GET", "/api/v1/current-data", None, None)
            } else {
                ("garbage token", "GET", "/api/v1/current-data", Some("not-a-token-0123456789"), None)
            }
        } else {
            match i % 3 {
                0 => ("admin", "GET", "/api/v1/current-data", Some(token), None),
                1 => ("admin", "GET", "/api/v1/safety", Some(token), None),
                _ => (
                    "admin",
                    "POST",
                    "/api/v1/control-modes",
                    Some(token),
                    Some(r#"{"ess": {"mode": "NO_DISCHARGE"}}"#),
                ),
            }
        };
        let started = Instant::now();
        // Each flood thread is its own client: 127.0.0.2, 127.0.0.3, ...
        let from = std::net::Ipv4Addr::new(127, 0, 0, u8::try_from(2 + thread).unwrap_or(255));
        let answer = request_from(Some(from), addr, method, path, tok, body);
        t.slowest = t.slowest.max(started.elapsed());
        let key = match answer {
            Ok((code, _)) => format!("{kind} {code}"),
            Err(e) => format!("{kind} error ({e})"),
        };
        *t.codes.entry(key).or_insert(0) += 1;
        done.fetch_add(1, Ordering::Relaxed);
    }
    t
}

fn histogram_before(metrics: &str, name: &str) -> Histogram {
    Histogram::parse(metrics, name).unwrap_or_else(|| panic!("{name} in /metrics before the flood"))
}

/// The flood threads, each sending its share of requests until `deadline`.
fn start_flood(
    addr: SocketAddr,
    token: &str,
    done: &Arc<AtomicUsize>,
    deadline: Instant,
) -> Vec<std::thread::JoinHandle<Tally>> {
    (0..THREADS)
        .map(|i| {
            let (done, token) = (Arc::clone(done), token.to_owned());
            std::thread::spawn(move || flood_thread(addr, &token, i, &done, deadline))
        })
        .collect()
}

/// The E-stop's answer during the flood: 200, STOPPED, with its `tookMs`.
fn estop_answer(
    estop: Result<(u16, String), Failure>,
    latency: Duration,
) -> (u16, String, serde_json::Value, Option<f64>) {
    let (code, body) =
        estop.unwrap_or_else(|e| panic!("the E-stop got no answer during the flood ({e}) after {latency:?}"));
    assert_eq!(code, 200, "the E-stop during the flood: {code} {body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    assert_eq!(json["state"], "STOPPED", "{body}");
    let took_ms = json["tookMs"].as_f64();
    assert!(took_ms.is_some(), "tookMs in {body}");
    (code, body, json, took_ms)
}

/// What `/metrics` says after the flood.
struct After {
    cycles: Histogram,
    lateness: Histogram,
    estop_to_zero: Histogram,
    dropped: f64,
    queue_depth: f64,
    unauthenticated: f64,
    codes: BTreeMap<String, u64>,
    max_exposed: String,
}

impl After {
    fn parse(metrics: &str) -> Self {
        let histogram = |name: &str| {
            Histogram::parse(metrics, name).unwrap_or_else(|| panic!("{name} in /metrics:\n{metrics}"))
        };
        let scalar = |name: &str| scalar(metrics, name).unwrap_or_else(|| panic!("{name} in /metrics"));
        let codes = api_codes(metrics);
        assert!(!codes.is_empty(), "ems_api_requests_total in /metrics:\n{metrics}");
        let max_exposed = metrics.lines().find(|l| l.starts_with("ems_cycle_lateness_max_seconds "));
        assert!(max_exposed.is_some(), "ems_cycle_lateness_max_seconds in /metrics:\n{metrics}");
        Self {
            cycles: histogram("ems_cycle_duration_seconds"),
            lateness: histogram("ems_cycle_lateness_seconds"),
            estop_to_zero: histogram("ems_estop_to_zero_seconds"),
            dropped: scalar("ems_audit_dropped_total"),
            queue_depth: scalar("ems_audit_queue_depth"),
            unauthenticated: scalar("ems_api_unauthenticated_total"),
            codes,
            max_exposed: max_exposed.unwrap_or("-").to_owned(),
        }
    }
}

impl Tally {
    /// Answers to requests without a valid token (anonymous and garbage ones).
    fn anonymous(&self) -> u64 {
        self.codes
            .iter()
            .filter(|(k, _)| k.starts_with("anonymous") || k.starts_with("garbage"))
            .map(|(_, n)| n)
            .sum()
    }
}

/// Idle connections held open against the server: connected, nothing sent.
struct Idle {
    conns: Vec<TcpStream>,
    started: Instant,
    /// How many, how fast, and the connect errors, for the summary.
    summary: String,
}

impl Idle {
    fn open(addr: SocketAddr) -> Self {
        let fd_limit = open_files_limit();
        let idle_target = fd_limit.map_or(IDLE_WANTED, |l| IDLE_WANTED.min(l.saturating_sub(100)));
        let started = Instant::now();
        let mut idle: Vec<TcpStream> = Vec::with_capacity(idle_target);
        let mut idle_errors: BTreeMap<String, u64> = BTreeMap::new();
        let mut consecutive_errors = 0;
        // Connects slower than 100 ms (a SYN the listener's full backlog dropped is retried after
        // about a second), and the slowest.
        let (mut idle_slow, mut idle_slowest) = (0, Duration::ZERO);
        while idle.len() < idle_target && consecutive_errors < 5 {
            let t = Instant::now();
            let connected = TcpStream::connect_timeout(&addr, Duration::from_secs(5));
            idle_slowest = idle_slowest.max(t.elapsed());
            idle_slow += usize::from(t.elapsed() > Duration::from_millis(100));
            match connected {
                Ok(s) => {
                    consecutive_errors = 0;
                    idle.push(s);
                }
                Err(e) => {
                    consecutive_errors += 1;
                    let key = match e.raw_os_error() {
                        Some(24) => "EMFILE (too many open files)".to_owned(),
                        _ => class("connect", &e),
                    };
                    *idle_errors.entry(key).or_insert(0) += 1;
                }
            }
        }
        let idle_open_took = started.elapsed();
        println!(
            "idle connections: {} of {IDLE_WANTED} wanted (target {idle_target}, open-files limit {fd_limit:?}) in {idle_open_took:?} ({idle_slow} connects over 100 ms, slowest {idle_slowest:?}); connect errors {idle_errors:?}",
            idle.len()
        );
        let summary = format!("open-files soft limit {fd_limit:?}; errors {idle_errors:?}; opened in {idle_open_took:?}, {idle_slow} connects over 100 ms, slowest {idle_slowest:?}");
        Self { conns: idle, started, summary }
    }

    /// Which idle connections the server closed (evicted at the limit, or the header-read
    /// timeout): a read sees the end (or a reset) instead of "would block". Returns (closed,
    /// still open, held).
    fn close(&mut self) -> (usize, usize, usize) {
        let mut idle_closed = 0;
        let mut idle_open = 0;
        let held = self.conns.len();
        for mut s in self.conns.drain(..) {
            s.set_nonblocking(true).unwrap();
            let mut b = [0u8; 1];
            match s.read(&mut b) {
                Err(e) if e.kind() == ErrorKind::WouldBlock => idle_open += 1,
                _ => idle_closed += 1,
            }
        }
        (idle_closed, idle_open, held)
    }
}

/// The flood threads' tallies summed, and how many threads panicked.
fn join_flood(threads: Vec<std::thread::JoinHandle<Tally>>) -> (Tally, usize) {
    let mut tally = Tally::default();
    let mut panicked = 0;
    for t in threads {
        match t.join() {
            Ok(one) => {
                for (k, n) in one.codes {
                    *tally.codes.entry(k).or_insert(0) += n;
                }
                tally.slowest = tally.slowest.max(one.slowest);
                tally.not_sent += one.not_sent;
            }
            Err(_) => panicked += 1,
        }
    }
    (tally, panicked)
}

/// The audit rows after `seq_before`, counted by action, outcome and actor.
fn audit_since(db_path: &Path, seq_before: u64) -> BTreeMap<String, u64> {
    let db = ems_api::db::Db::open(db_path).unwrap();
    let mut by_action: BTreeMap<String, u64> = BTreeMap::new();
    for e in ems_api::ports::AuditSink::recent(&db, 1_000_000).unwrap() {
        if e.seq > seq_before {
            *by_action.entry(format!("{} [{:?}] by {}", e.action, e.outcome, e.actor)).or_insert(0) += 1;
        }
    }
    by_action
}

fn print_files(dir: &Path) {
    println!(
        "files                         ems.db {}, ems.db-wal {}, ems.db-shm {}",
        file_size(&dir.join("ems.db")),
        file_size(&dir.join("ems.db-wal")),
        file_size(&dir.join("ems.db-shm"))
    );
}

#[test]
fn flooding_the_api_neither_blocks_the_estop_nor_the_cycle_nor_fills_the_audit_log() {
    let test_start = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("ems.db");
    let g = support::start_with(&dir.path().join("gw.state"), &["--api-db", db_path.to_str().unwrap()]);
    let addr: SocketAddr = g.addr.parse().unwrap();

    // 1. Running.
    wait_for_state(&g, addr, "RUNNING", Duration::from_secs(60));
    let running_after = test_start.elapsed();

    // 2. The audit log before (once the writer has caught up with the start-up entries).
    let (rows_before, seq_before) = audit_rows_settled(&db_path, Duration::from_secs(15));
    let metrics_before = get_ok(&g, addr, "/metrics", Duration::from_secs(15));
    let window_started = Instant::now();
    let estop_count_before = Histogram::parse(&metrics_before, "ems_estop_to_zero_seconds").map(|h| h.count);
    let cycles_before = histogram_before(&metrics_before, "ems_cycle_duration_seconds");
    let lateness_before = histogram_before(&metrics_before, "ems_cycle_lateness_seconds");

    // 3. Idle connections: connect, send nothing, keep them.
    let mut idle = Idle::open(addr);

    // 4. The flood.
    let done = Arc::new(AtomicUsize::new(0));
    let flood_started = Instant::now();
    let deadline = flood_started + FLOOD_BUDGET;
    let threads = start_flood(addr, &g.token, &done, deadline);

    // 5. The E-stop while the flood runs (after a tenth of it, so the server is busy and at
    // its connection limit with our idle connections).
    let wait_until = Instant::now() + Duration::from_secs(30);
    while done.load(Ordering::Relaxed) < THREADS * PER_THREAD / 10 && Instant::now() < wait_until {
        std::thread::sleep(Duration::from_millis(5));
    }
    let done_at_estop = done.load(Ordering::Relaxed);
    let since_idle = idle.started.elapsed();
    let pressed = Instant::now();
    let estop = request(addr, "POST", "/api/v1/emergency-stop", Some(&g.token), None);
    let estop_latency = pressed.elapsed();
    let flood_running_at_estop = threads.iter().any(|t| !t.is_finished());

    // Join the flood before asserting, so no thread outlives a failure.
    let (tally, panicked) = join_flood(threads);
    let flood_took = flood_started.elapsed();
    assert_eq!(panicked, 0, "a flood thread panicked");

    let (estop_code, estop_body, estop_json, took_ms) = estop_answer(estop, estop_latency);
    println!(
        "E-stop: {estop_code} {estop_body} in {estop_latency:?} (pressed after {done_at_estop} flood answers, {since_idle:?} after the idle connections began; flood still running: {flood_running_at_estop})"
    );

    let (idle_closed, idle_open, idle_held) = idle.close();

    // 6. Metrics after the flood.
    let metrics = get_ok(&g, addr, "/metrics", Duration::from_secs(20));
    let window = window_started.elapsed();
    let After { cycles, lateness, estop_to_zero, dropped, queue_depth, unauthenticated, codes, max_exposed } =
        After::parse(&metrics);
    assert_eq!(
        estop_to_zero.count,
        estop_count_before.unwrap_or(0) + 1,
        "one press, one fast path (counted once):\n{metrics}"
    );
    let during = lateness.since(&lateness_before);
    let cycles_during = cycles.since(&cycles_before);
    assert!(
        cycles.count > cycles_before.count,
        "the control loop did not cycle during the flood: {} cycles before, {} after",
        cycles_before.count,
        cycles.count
    );

    // 7. The audit log after, once the writer has caught up.
    let (rows_after, _) = audit_rows_settled(&db_path, Duration::from_secs(15));
    let added = rows_after.saturating_sub(rows_before);
    let new_rows = audit_since(&db_path, seq_before);

    // 8. The summary.
    let anonymous = tally.anonymous();
    let window_s = window.as_secs_f64();
    println!("==================== api_flood summary ====================");
    println!("RUNNING after                 {running_after:?}");
    println!("idle connections held         {idle_held} of {IDLE_WANTED} ({})", idle.summary);
    println!("idle closed by the server     {idle_closed} (still open {idle_open}) when the flood ended");
    println!(
        "flood                         {} threads, {} requests sent ({} not sent: budget), took {flood_took:?}, slowest answer {:?}",
        THREADS,
        THREADS * PER_THREAD - tally.not_sent,
        tally.not_sent,
        tally.slowest
    );
    for (k, n) in &tally.codes {
        println!("  client saw {k:<40} {n}");
    }
    println!("anonymous requests answered   {anonymous}");
    println!(
        "E-stop                        {estop_code} {} in {:.1} ms wall (tookMs {:.1}); pressed after {done_at_estop} answers, {since_idle:?} after the idle connections",
        estop_json["state"].as_str().unwrap_or("?"),
        estop_latency.as_secs_f64() * 1000.0,
        took_ms.unwrap_or(f64::NAN)
    );
    println!(
        "ems_estop_to_zero_seconds     count {} (before the flood: {estop_count_before:?}; one software press), p99 {}",
        estop_to_zero.count,
        show_bound(estop_to_zero.p99())
    );
    println!(
        "cycles                        {} before, {} after: {} in the {window_s:.2} s between the two /metrics reads (idle connections, flood, E-stop): {:.1}/s (nominal 50/s: 100 ms / speed 5)",
        cycles_before.count,
        cycles.count,
        cycles_during.count,
        {
            let n = f64::from(u32::try_from(cycles_during.count).unwrap());
            n / window_s.max(0.001)
        }
    );
    println!("lateness p99 (whole run)      {} over {} cycles", show_bound(lateness.p99()), lateness.count);
    println!("lateness p99 (window)         {} over {} cycles", show_bound(during.p99()), during.count);
    println!("lateness buckets (window)     {:?}", during.buckets);
    println!("lateness max                  {}", max_exposed);
    println!("cycle duration p99 (run)      {} over {} cycles", show_bound(cycles.p99()), cycles.count);
    println!("cycle duration p99 (window)   {}", show_bound(cycles_during.p99()));
    println!("ems_audit_dropped_total       {dropped}");
    println!("ems_audit_queue_depth         {queue_depth}");
    println!("ems_api_unauthenticated_total {unauthenticated}");
    println!("ems_api_requests_total        {codes:?}");
    println!("audit rows                    {rows_before} before, {rows_after} after: +{added}");
    for (k, n) in &new_rows {
        println!("  new audit rows: {n:>4} × {k}");
    }
    print_files(dir.path());
    println!("test took                     {:?}", test_start.elapsed());
    println!("===========================================================");

    assert!(
        added < 200,
        "the flood added {added} audit rows (bounded: far fewer than the {anonymous} anonymous requests): {new_rows:?}"
    );
    assert!(
        new_rows.keys().any(|k| k.starts_with("POST /api/v1/emergency-stop")),
        "the E-stop is audited: {new_rows:?}"
    );
}
