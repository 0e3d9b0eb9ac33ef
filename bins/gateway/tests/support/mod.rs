//! Shared by the tests that talk to a running gateway: start the built-in simulated site with
//! the API on a free port, and read the API address and the generated admin token from its
//! output.
// Test code: a failed unwrap or panic is a failed test with its message; a helper that one
// test binary does not call is dead code there.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};

/// A running gateway; killed when dropped.
pub(crate) struct Gateway {
    child: Child,
    /// `HOST:PORT` of the API.
    pub addr: String,
    /// The admin token it printed.
    pub token: String,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start the simulated site at `--speed 5` with the API on a free port.
pub(crate) fn start(state: &std::path::Path) -> Gateway {
    start_with(state, &[])
}

/// [`start`] with extra command-line arguments.
pub(crate) fn start_with(state: &std::path::Path, extra: &[&str]) -> Gateway {
    let state = state.to_str().unwrap();
    let mut args = vec!["--speed", "5", "--duration", "600"];
    args.extend_from_slice(extra);
    spawn(&args, state)
}

/// The simulated site with `args` (speed, duration and the rest; the API on a free port and
/// `state` as the state file are added), once it printed its API address and admin token.
pub(crate) fn spawn(args: &[&str], state: &str) -> Gateway {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ems-gateway"))
        .args(args)
        .args(["--api-listen", "127.0.0.1:0", "--state-file", state])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut addr, mut token) = (None, None);
    while addr.is_none() || token.is_none() {
        let line = lines.next().expect("gateway output ended").unwrap();
        if let Some(rest) = line.strip_prefix("API on http://") {
            addr = rest.split('/').next().map(str::to_owned);
        }
        if let Some(t) = line.strip_prefix("admin token: ") {
            token = Some(t.trim().to_owned());
        }
    }
    // Keep draining stdout so the gateway never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Gateway { child, addr: addr.unwrap(), token: token.unwrap() }
}

impl Gateway {
    /// Wait for the gateway to end by itself (its `--duration`), at most `limit`; its status.
    pub(crate) fn wait(&mut self, limit: std::time::Duration) -> std::process::ExitStatus {
        let until = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(std::time::Instant::now() < until, "the gateway did not end within {limit:?}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// Whether it is still running.
    pub(crate) fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

/// One HTTP/1.1 request to the gateway's API (with its admin token when `auth`): the status
/// and the JSON body (`Null` when it is not JSON).
pub(crate) fn http(
    g: &Gateway,
    method: &str,
    path: &str,
    body: Option<&str>,
    auth: bool,
) -> (u16, serde_json::Value) {
    let mut s = std::net::TcpStream::connect(&g.addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let body = body.unwrap_or("");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", g.addr);
    if auth {
        req.push_str(&format!("Authorization: Bearer {}\r\n", g.token));
    }
    if !body.is_empty() {
        req.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status: u16 = raw.split(' ').nth(1).unwrap().parse().unwrap();
    let (head, payload) = raw.split_once("\r\n\r\n").unwrap();
    let payload = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(payload)
    } else {
        payload.to_owned()
    };
    (status, serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null))
}

/// The body of a chunked answer.
fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

/// A channel's value in `/api/v1/current-data` (or any key, depth-first).
pub(crate) fn find<'a>(v: &'a serde_json::Value, key: &str) -> Option<&'a serde_json::Value> {
    match v {
        serde_json::Value::Object(m) => {
            m.get(key).map(|x| x.get("value").unwrap_or(x)).or_else(|| m.values().find_map(|x| find(x, key)))
        }
        serde_json::Value::Array(a) => a.iter().find_map(|x| find(x, key)),
        _ => None,
    }
}
