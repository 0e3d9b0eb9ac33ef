//! A tiny HTTP/1.1 server on 127.0.0.1 for the price-source tests: it records each request's
//! target (path and query) and answers with whatever the test set last. Shared by
//! `tests/prices_awattar.rs` and `tests/prices_entsoe.rs`.
// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// What the server answers.
#[derive(Debug, Clone)]
pub(crate) enum Reply {
    /// 200 with this body.
    Ok(String),
    /// This status with this body.
    Status(u16, String),
    /// Read the request, then say nothing for a long while (longer than any client timeout used
    /// in the tests), so the client times out.
    Hang,
}

#[derive(Debug)]
struct State {
    reply: Reply,
    requests: Vec<String>,
}

/// A running server; it lives until the test process ends.
#[derive(Debug, Clone)]
pub(crate) struct TestServer {
    /// `http://127.0.0.1:PORT`.
    pub(crate) base: String,
    state: Arc<Mutex<State>>,
}

impl TestServer {
    pub(crate) fn start(reply: Reply) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State { reply, requests: Vec::new() }));
        let shared = Arc::clone(&state);
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let shared = Arc::clone(&shared);
                thread::spawn(move || answer(stream, &shared));
            }
        });
        Self { base, state }
    }

    pub(crate) fn set(&self, reply: Reply) {
        self.state.lock().unwrap().reply = reply;
    }

    /// Request targets (path + query) received so far, in order.
    pub(crate) fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }
}

fn answer(stream: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    loop {
        let mut header = String::new();
        match reader.read_line(&mut header) {
            Ok(0) | Err(_) => break,
            Ok(_) if header == "\r\n" || header == "\n" => break,
            Ok(_) => {}
        }
    }
    let target = request_line.split_whitespace().nth(1).unwrap_or("").to_owned();
    let reply = {
        let mut s = state.lock().unwrap();
        s.requests.push(target);
        s.reply.clone()
    };
    let (status, body) = match reply {
        Reply::Ok(body) => (200, body),
        Reply::Status(code, body) => (code, body),
        Reply::Hang => {
            thread::sleep(Duration::from_secs(20));
            return;
        }
    };
    let mut stream = stream;
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body.as_bytes());
    let _ = stream.flush();
}

/// An address nobody listens on (bound, then released), for "connection refused".
pub(crate) fn refused_base() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// The value of query parameter `name` in a request target.
pub(crate) fn query_param<'a>(target: &'a str, name: &str) -> Option<&'a str> {
    let (_, query) = target.split_once('?')?;
    query.split('&').find_map(|kv| kv.strip_prefix(name).and_then(|rest| rest.strip_prefix('=')))
}
