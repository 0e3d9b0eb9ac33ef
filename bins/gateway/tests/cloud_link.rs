//! The cloud link through the running gateway (issue #14 items 3, 4 and 6): a local HTTP server
//! plays the cloud. Online, it receives `currentData` with the channel addresses and the control
//! modes, and its answer's `activateControlModes` is applied through the REST rules (audited as
//! `cloud`). Then it goes away for an hour of simulated time: the site keeps running on the mode
//! it holds, pushes go to the outbox. It comes back: the gap is resent in `bufferedData` slices,
//! and nothing inside the buffer's bound is lost — one entry per failed push, in order.
// Test code: a failed unwrap or panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{http, spawn};

/// The cloud: records every POST body, answers the first push with a control mode.
struct Cloud {
    bodies: Arc<Mutex<Vec<(String, serde_json::Value)>>>,
    up: Arc<AtomicBool>,
    port: u16,
}

fn serve_one(mut s: TcpStream, bodies: &Mutex<Vec<(String, serde_json::Value)>>) {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let target = line.split(' ').nth(1).unwrap_or("").to_owned();
    let mut len = 0;
    let mut key = None;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (name, value) = h.split_once(':').unwrap();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => len = value.trim().parse().unwrap(),
            "x-device-key" => key = Some(value.trim().to_owned()),
            _ => {}
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let mut b = bodies.lock().unwrap();
    let answer = if b.is_empty() && v.get("currentData").is_some() {
        r#"{"activateControlModes": {"ess": {"mode": "NO_DISCHARGE", "duration": 7200}}}"#
    } else {
        ""
    };
    b.push((format!("{target} key={key:?}"), v));
    drop(b);
    let _ =
        write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}", answer.len());
}

impl Cloud {
    fn start() -> Self {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let cloud = Self { bodies: Arc::default(), up: Arc::new(AtomicBool::new(true)), port };
        let (bodies, up) = (cloud.bodies.clone(), cloud.up.clone());
        std::thread::spawn(move || {
            let mut listener = Some(l);
            loop {
                match (&listener, up.load(Ordering::SeqCst)) {
                    (Some(l), true) => {
                        l.set_nonblocking(true).unwrap();
                        match l.accept() {
                            Ok((s, _)) => {
                                s.set_nonblocking(false).unwrap();
                                serve_one(s, &bodies);
                            }
                            Err(_) => std::thread::sleep(Duration::from_millis(5)),
                        }
                    }
                    // Gone: the port refuses connections.
                    (Some(_), false) => listener = None,
                    (None, true) => listener = Some(TcpListener::bind(("127.0.0.1", port)).unwrap()),
                    (None, false) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        cloud
    }

    fn pushes(&self) -> usize {
        self.bodies.lock().unwrap().iter().filter(|(_, v)| v.get("currentData").is_some()).count()
    }
}

fn until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < end, "{what}: never");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn ts(v: &serde_json::Value) -> jiff::Timestamp {
    v.as_str().unwrap().parse().unwrap()
}

#[test]
fn the_cloud_link_pushes_applies_modes_buffers_an_hour_offline_and_resends_the_gap() {
    let cloud = Cloud::start();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let db = dir.path().join("ems.db");
    let url = format!("http://127.0.0.1:{}/push", cloud.port);
    // 240× real time: an hour of simulated time in 15 s; a push every 15 simulated seconds.
    let g = spawn(
        &[
            "--speed",
            "240",
            "--cycle-ms",
            "1000",
            "--duration",
            "14400",
            "--cloud-url",
            &url,
            "--api-db",
            db.to_str().unwrap(),
        ],
        state.to_str().unwrap(),
    );
    let status = || http(&g, "GET", "/api/v1/cloud", None, true).1;

    // Online: pushes with the channel addresses and the modes; the first answer's mode applied.
    until("three pushes", Duration::from_secs(20), || cloud.pushes() >= 3);
    {
        let b = cloud.bodies.lock().unwrap();
        let (target, first) = &b[0];
        assert!(target.starts_with("/push "), "{target}");
        assert!(first["currentData"]["_sum/EssSoc"].is_number(), "{first}");
        assert!(first["availableControlModes"]["ess"].is_array(), "{first}");
        assert!(first["timestamp"].is_string(), "{first}");
    }
    until("NO_DISCHARGE from the cloud", Duration::from_secs(10), || {
        http(&g, "GET", "/api/v1/control-modes", None, true).1["activeControlModes"]["ess"]["mode"]
            == "NO_DISCHARGE"
    });
    let (code, audit) = http(&g, "GET", "/api/v1/audit?limit=200", None, true);
    assert_eq!(code, 200, "{audit}");
    assert!(
        audit.to_string().contains("\"actor\":\"cloud (operator)\""),
        "the activation audited as the cloud: {audit}"
    );
    let s = status();
    assert_eq!(s["online"], true, "{s}");
    assert_eq!(s["activations"], 1, "{s}");

    // An hour of simulated time without the cloud.
    cloud.up.store(false, Ordering::SeqCst);
    let before = cloud.pushes();
    until("an hour offline", Duration::from_secs(40), || status()["buffered"].as_u64().unwrap_or(0) >= 240);
    let s = status();
    assert_eq!(s["online"], false, "{s}");
    assert_eq!(s["merged"], 0, "{s}");
    assert_eq!(s["dropped"], 0, "{s}");
    assert!(s["last_error"].is_string(), "{s}");
    // The site ran on what it holds: the mode is still active.
    let m = http(&g, "GET", "/api/v1/control-modes", None, true).1;
    assert_eq!(m["activeControlModes"]["ess"]["mode"], "NO_DISCHARGE", "{m}");

    // Back: the gap is resent.
    cloud.up.store(true, Ordering::SeqCst);
    until("the outbox resent", Duration::from_secs(40), || {
        let s = status();
        s["online"] == true && s["buffered"] == 0 && s["resent"].as_u64().unwrap_or(0) > 0
    });
    let s = status();
    let failed = s["pushes_failed"].as_u64().unwrap();
    assert_eq!(s["resent"].as_u64().unwrap(), failed, "every failed push resent: {s}");
    let b = cloud.bodies.lock().unwrap();
    let resent: Vec<&serde_json::Value> =
        b.iter().filter_map(|(_, v)| v["bufferedData"].as_array()).flatten().collect();
    assert_eq!(resent.len() as u64, failed);
    assert!(resent.len() >= 240, "an hour at 15 s: {}", resent.len());
    let times: Vec<jiff::Timestamp> = resent.iter().map(|e| ts(&e["timestamp"])).collect();
    assert!(times.windows(2).all(|w| w[1] > w[0]), "in order, no duplicate");
    let span = times.last().unwrap().duration_since(*times.first().unwrap());
    // The simulated site stamps its view with the wall clock (as `GET /api/v1/current-data`
    // does): the simulated hour at 240× spans 15 s of it.
    assert!(span.as_millis() >= 14_000, "the gap covers the hour: {span:?}");
    assert!(resent.iter().all(|e| e["samples"] == 1 && e["currentData"]["_sum/EssSoc"].is_number()));
    assert!(b.len() > before, "pushes again");
}
