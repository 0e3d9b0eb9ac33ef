//! `ems_api::server::serve` on a real listener: idle connections cannot lock out the E-stop,
//! slow or idle connections are closed, the E-stop is never rate-limited, and the per-address
//! limit applies to everything else.
// Test code: a failed unwrap or panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod rest_support;

use ems_api::server::{serve, ServerLimits};
use rest_support::*;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start(h: &Harness, limits: ServerLimits) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = h.router.clone();
    tokio::spawn(async move { serve(listener, app, limits, std::future::pending()).await.unwrap() });
    addr
}

/// One HTTP/1.1 request on a fresh connection; status and JSON body.
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let auth = token.map(|t| format!("authorization: Bearer {t}\r\n")).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: x\r\n{auth}content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status: u16 = text.split(' ').nth(1).unwrap_or("0").parse().unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Whether the server closed `s` (EOF or reset) within `wait`.
async fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    let mut b = [0u8; 64];
    matches!(tokio::time::timeout(wait, s.read(&mut b)).await, Ok(Ok(0) | Err(_)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eleven_hundred_idle_connections_do_not_block_the_estop() {
    let h = harness();
    // Timeouts long enough that nothing is closed by them during the test: only the eviction
    // of idle connections can make room.
    let limits = ServerLimits {
        max_connections: 256,
        header_read_timeout: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(60),
        request_timeout: Duration::from_secs(5),
    };
    let addr = start(&h, limits).await;
    let mut idle = Vec::new();
    for _ in 0..1100 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    // Half-sent request heads count as idle too (slowloris).
    for s in idle.iter_mut().take(50) {
        s.write_all(b"GET /api/v1/safety HTTP/1.1\r\nhost: x\r\n").await.unwrap();
    }
    let t = Instant::now();
    let (status, body) = request(addr, "POST", "/api/v1/emergency-stop", Some(OPERATOR), "").await;
    let took = t.elapsed();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "STOPPED");
    assert!(body["tookMs"].as_f64().unwrap() >= 0.0);
    assert!(took < Duration::from_secs(2), "{took:?}");
    println!("E-stop answered in {took:?} with 1,100 idle connections open");
    // And a normal request as well.
    let (status, _) = request(addr, "GET", "/api/v1/safety", Some(VIEWER), "").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn idle_and_slow_connections_are_closed_after_the_header_read_timeout() {
    let h = harness();
    let limits = ServerLimits {
        max_connections: 16,
        header_read_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(800),
        request_timeout: Duration::from_secs(5),
    };
    let addr = start(&h, limits).await;
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /api/v1/safety HTTP/1.1\r\n").await.unwrap();
    assert!(closed_within(&mut silent, Duration::from_secs(2)).await, "silent connection not closed");
    assert!(closed_within(&mut slow, Duration::from_secs(2)).await, "slow head not closed");

    // A keep-alive connection after a complete request: kept for the idle timeout, then closed.
    let mut ka = TcpStream::connect(addr).await.unwrap();
    ka.write_all(
        format!("GET /api/v1/safety HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {VIEWER}\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = [0u8; 4096];
    let n = ka.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let t = Instant::now();
    assert!(closed_within(&mut ka, Duration::from_secs(3)).await, "idle keep-alive not closed");
    assert!(
        t.elapsed() >= Duration::from_millis(500),
        "closed after {:?}, before the idle timeout",
        t.elapsed()
    );
}

#[tokio::test]
async fn busy_server_answers_503_json() {
    let h = harness();
    let limits = ServerLimits { max_connections: 1, ..ServerLimits::default() };
    let addr = start(&h, limits).await;
    // One WebSocket holds the only slot (it is never evicted).
    let (_ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/api/v1/live")).await.unwrap();
    let (status, body) = request(addr, "GET", "/api/v1/safety", Some(VIEWER), "").await;
    assert_eq!(status, 503);
    assert!(body["error"].as_str().unwrap().contains("too many connections"), "{body}");
}

#[tokio::test]
async fn estop_is_never_rate_limited_but_everything_else_is() {
    let h = harness_with(ems_api::auth::RateLimit { burst: 3.0, per_second: 0.01 }, true);
    let addr = start(&h, ServerLimits::default()).await;
    for i in 0..25 {
        let (status, body) = request(addr, "POST", "/api/v1/emergency-stop", Some(OPERATOR), "").await;
        assert_eq!(status, 200, "E-stop {i}: {body}");
    }
    for _ in 0..3 {
        assert_eq!(request(addr, "GET", "/api/v1/safety", Some(OPERATOR), "").await.0, 200);
    }
    let (status, body) = request(addr, "GET", "/api/v1/safety", Some(OPERATOR), "").await;
    assert_eq!(status, 429, "{body}");
    // Still no token needed for a viewer's 429 to be JSON, and the E-stop still works.
    assert!(body["error"].is_string());
    assert_eq!(request(addr, "POST", "/api/v1/emergency-stop", Some(OPERATOR), "").await.0, 200);
    // A viewer may not press it; its refusals are rate-limited (each 403 is an audit row).
    for _ in 0..3 {
        assert_eq!(request(addr, "POST", "/api/v1/emergency-stop", Some(VIEWER), "").await.0, 403);
    }
    assert_eq!(request(addr, "POST", "/api/v1/emergency-stop", Some(VIEWER), "").await.0, 429);
}

#[tokio::test]
async fn per_address_limit_applies_to_anonymous_floods_and_rows_are_sampled() {
    let h = harness();
    let addr = start(&h, ServerLimits::default()).await;
    let mut codes = std::collections::BTreeMap::new();
    for _ in 0..100 {
        let (status, body) = request(addr, "GET", "/api/v1/safety", None, "").await;
        assert!(body["error"].is_string());
        *codes.entry(status).or_insert(0) += 1;
    }
    // The default address limit allows a burst of 60 (plus what refills at 20/s meanwhile).
    let (unauth, limited) = (codes.get(&401).copied().unwrap_or(0), codes.get(&429).copied().unwrap_or(0));
    assert!(unauth >= 60 && limited >= 20 && unauth + limited == 100, "{codes:?}");
    // One audit row per kind, not one per request.
    let rows = h.audit().into_iter().filter(|e| e.actor == "anonymous").count();
    assert_eq!(rows, 2, "{:?}", h.audit());
    assert_eq!(h.metrics.unauthenticated(), unauth);
    // The E-stop is exempt from the address limit too.
    assert_eq!(request(addr, "POST", "/api/v1/emergency-stop", Some(OPERATOR), "").await.0, 200);
}

/// Send raw bytes, read the whole answer.
async fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test]
async fn oversized_heads_are_refused_in_json_by_the_router_not_by_hyper() {
    let h = harness();
    let addr = start(&h, ServerLimits::default()).await;
    let long_uri = format!(
        "GET /api/v1/safety?x={} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        "a".repeat(10_000)
    );
    let many: String = (0..80).map(|i| format!("x-h{i}: v\r\n")).collect();
    let many = format!("GET /api/v1/safety HTTP/1.1\r\nhost: x\r\n{many}connection: close\r\n\r\n");
    let big = format!(
        "GET /api/v1/safety HTTP/1.1\r\nhost: x\r\nx-big: {}\r\nconnection: close\r\n\r\n",
        "v".repeat(20_000)
    );
    for (what, req, code) in
        [("long URI", long_uri, "414"), ("80 headers", many, "431"), ("20 KB header", big, "431")]
    {
        let answer = raw_exchange(addr, req.as_bytes()).await;
        assert!(answer.starts_with(&format!("HTTP/1.1 {code}")), "{what}: {answer}");
        assert!(answer.contains("application/json") && answer.contains("\"error\""), "{what}: {answer}");
    }
    // What hyper answers itself (documented): an unparsable request line, with an empty body.
    let answer = raw_exchange(addr, b"NOT HTTP AT ALL\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
}

#[tokio::test]
async fn what_hyper_refuses_before_the_router_is_answered_in_json_too() {
    let h = harness();
    let addr = start(&h, ServerLimits::default()).await;
    let huge_uri = format!(
        "GET /api/v1/safety?x={} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        "a".repeat(100_000)
    );
    let many: String = (0..300).map(|i| format!("x-h{i}: v\r\n")).collect();
    let too_many = format!("GET /api/v1/safety HTTP/1.1\r\nhost: x\r\n{many}connection: close\r\n\r\n");
    for (what, req) in [
        ("unparsable request line", "NOT HTTP AT ALL\r\n\r\n".to_owned()),
        ("100 KB request target", huge_uri),
        ("300 header fields", too_many),
    ] {
        let answer = raw_exchange(addr, req.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 4"), "{what}: {answer}");
        assert!(answer.contains("application/json") && answer.contains("\"error\""), "{what}: {answer}");
    }
    // A normal request on a fresh connection is still answered by the router.
    assert_eq!(request(addr, "GET", "/api/v1/safety", Some(VIEWER), "").await.0, 200);
}

#[tokio::test]
async fn shutdown_stops_accepting_and_returns() {
    let h = harness();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, h.router.clone(), ServerLimits::default(), async {
        let _ = rx.await;
    }));
    assert_eq!(request(addr, "GET", "/api/v1/safety", Some(VIEWER), "").await.0, 200);
    tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(2), server).await.unwrap().unwrap().unwrap();
    // The listener is closed with the server.
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn server_start_serves_every_route_and_stops() {
    use ems_api::start::{EStopRoute, Server, ServerConfig, Tokens};
    let tokens = vec![ems_api::auth::TokenConfig {
        name: "root".into(),
        role: ems_api::auth::Role::Admin,
        sha256_hex: ems_api::auth::hash_token(ADMIN),
    }];
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tokens: Tokens::Configured(tokens),
        schedules: schedule_config(),
        ..ServerConfig::default()
    };
    let (server, handles) = Server::start(config, EStopRoute::CommandQueue).await.unwrap();
    assert!(handles.generated_admin_token.is_none());
    let addr = server.addr();
    assert_eq!(request(addr, "GET", "/api/v1/openapi.json", None, "").await.0, 200);
    assert_eq!(request(addr, "GET", "/api/v1/safety", Some(ADMIN), "").await.0, 200);
    assert_eq!(request(addr, "GET", "/api/v1/safety", None, "").await.0, 401);
    tokio::time::timeout(Duration::from_secs(2), server.stop()).await.unwrap().unwrap();
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn server_start_generates_an_admin_token_when_asked() {
    use ems_api::start::{EStopRoute, Server, ServerConfig};
    let config = ServerConfig { listen: "127.0.0.1:0".parse().unwrap(), ..ServerConfig::default() };
    let (server, handles) = Server::start(config, EStopRoute::CommandQueue).await.unwrap();
    let token = handles.generated_admin_token.clone().unwrap();
    assert_eq!(request(server.addr(), "GET", "/api/v1/safety", Some(&token), "").await.0, 200);
    server.stop().await.unwrap();
}
