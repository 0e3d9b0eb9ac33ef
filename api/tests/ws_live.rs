//! The live WebSocket `/api/v1/live` over a real TCP socket (`ems_api::server::serve` on
//! 127.0.0.1:0, so upgrades through our accept loop are covered; client `tokio-tungstenite`)
//! against the fake control loop of `rest_support`.
// Test code: a failed unwrap or panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod rest_support;

use axum::http::StatusCode;
use ems_api::model::{ChannelValue, SafetyView, SiteView};
use ems_api::ports::Outcome;
use futures_util::{SinkExt, StreamExt};
use rest_support::*;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const WAIT: Duration = Duration::from_secs(5);

async fn serve(h: &Harness) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = h.router.clone();
    tokio::spawn(async move {
        let limits = ems_api::server::ServerLimits::default();
        ems_api::server::serve(listener, app, limits, std::future::pending()).await.unwrap();
    });
    addr
}

async fn connect(addr: SocketAddr, query: &str) -> Ws {
    let (ws, resp) = connect_async(format!("ws://{addr}/api/v1/live{query}")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    ws
}

/// The next frame that is not a ping/pong.
async fn next(ws: &mut Ws) -> Message {
    loop {
        let m = tokio::time::timeout(WAIT, ws.next()).await.expect("no message in time");
        match m.expect("stream ended").expect("socket error") {
            Message::Ping(_) | Message::Pong(_) => {}
            other => return other,
        }
    }
}

async fn next_json(ws: &mut Ws) -> Value {
    match next(ws).await {
        Message::Text(t) => serde_json::from_str(t.as_str()).unwrap(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

async fn send(ws: &mut Ws, v: &Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// The close frame's code and reason (the next message must be the close).
async fn expect_close(ws: &mut Ws) -> (u16, String) {
    match next(ws).await {
        Message::Close(Some(f)) => (u16::from(f.code), f.reason.as_str().to_owned()),
        other => panic!("expected a close frame, got {other:?}"),
    }
}

fn view(soc: f64, state: &str) -> SiteView {
    SiteView {
        at: Some(t0()),
        channels: [
            ("_sum/EssSoc".to_owned(), ChannelValue::Number(soc)),
            ("_sum/GridActivePower".to_owned(), ChannelValue::Number(-1200.0)),
            ("_sum/State".to_owned(), ChannelValue::Text(state.to_owned())),
        ]
        .into_iter()
        .collect(),
        safety: SafetyView { state: state.to_owned(), max_charge_w: 3000.0, ..SafetyView::default() },
        ..SiteView::default()
    }
}

#[tokio::test]
async fn refuses_without_a_valid_token_and_closes_with_a_reason() {
    let h = harness();
    let addr = serve(&h).await;

    // No token at all: the first message must carry one.
    let mut ws = connect(addr, "").await;
    send(&mut ws, &json!({"subscribe": ["*"]})).await;
    let err = next_json(&mut ws).await;
    assert!(err["error"].as_str().unwrap().contains("missing token"), "{err}");
    let (code, reason) = expect_close(&mut ws).await;
    assert_eq!(code, 1008);
    assert!(reason.contains("missing token"), "{reason}");

    // An unknown token in the query.
    let mut ws = connect(addr, "?token=nope").await;
    assert!(next_json(&mut ws).await["error"].as_str().unwrap().contains("invalid token"));
    let (code, reason) = expect_close(&mut ws).await;
    assert_eq!((code, reason.as_str()), (1008, "invalid token"));

    // An unknown token in the first message.
    let mut ws = connect(addr, "").await;
    send(&mut ws, &json!({"token": "nope"})).await;
    assert!(next_json(&mut ws).await["error"].is_string());
    assert_eq!(expect_close(&mut ws).await, (1008, "invalid token".to_owned()));

    // A provider may not read (same rule as GET /api/v1/current-data).
    let mut ws = connect(addr, &format!("?token={PROVIDER}")).await;
    assert!(next_json(&mut ws).await["error"].is_string());
    let (code, reason) = expect_close(&mut ws).await;
    assert_eq!(code, 1008);
    assert!(reason.contains("role 'provider'"), "{reason}");

    // Not JSON instead of the token: refused, closed.
    let mut ws = connect(addr, "").await;
    ws.send(Message::Text("hello".into())).await.unwrap();
    assert!(next_json(&mut ws).await["error"].is_string());
    assert_eq!(expect_close(&mut ws).await.0, 1008);

    let refused = h
        .audit()
        .into_iter()
        .filter(|e| e.action == "GET /api/v1/live" && e.outcome == Outcome::Refused)
        .count();
    // The two unknown tokens are sampled into one row (at most one per 10 s); the provider's
    // refusal names a token holder and is audited each time.
    assert_eq!(refused, 2, "invalid (sampled) and provider are audited");
    assert_eq!(h.metrics.unauthenticated(), 2);
}

#[tokio::test]
async fn a_plain_get_without_upgrade_is_a_json_4xx() {
    let h = harness();
    let r = h.get("/api/v1/live", Some(VIEWER)).await;
    assert!(r.status.is_client_error() && r.status != StatusCode::NOT_FOUND, "{}", r.status);
    assert!(r.json["error"].as_str().unwrap().contains("WebSocket"), "{}", r.json);
}

#[tokio::test]
async fn subscribed_client_receives_the_published_views() {
    let h = harness();
    let addr = serve(&h).await;
    let mut ws = connect(addr, &format!("?token={VIEWER}")).await;
    let hello = next_json(&mut ws).await;
    assert_eq!(hello, json!({"authenticated": true, "actor": "viewer (viewer)"}));

    // A channel list: only those channels (null when not published), no safety.
    send(&mut ws, &json!({"subscribe": ["_sum/EssSoc", "meter0/Nope"]})).await;
    assert_eq!(next_json(&mut ws).await, json!({"subscribed": ["_sum/EssSoc", "meter0/Nope"]}));
    let first = next_json(&mut ws).await;
    assert_eq!(first, json!({"at": null, "channels": {"_sum/EssSoc": null, "meter0/Nope": null}}));
    h.view.send_replace(view(55.5, "RUNNING"));
    let u = next_json(&mut ws).await;
    assert_eq!(u["at"], json!(t0().to_string()));
    assert_eq!(u["channels"], json!({"_sum/EssSoc": 55.5, "meter0/Nope": null}));
    assert!(u.get("safety").is_none(), "{u}");

    // "safety" adds the safety view; ["*"] is everything.
    send(&mut ws, &json!({"subscribe": ["_sum/EssSoc", "safety"]})).await;
    assert_eq!(next_json(&mut ws).await["subscribed"], json!(["_sum/EssSoc", "safety"]));
    let u = next_json(&mut ws).await;
    assert_eq!(u["safety"]["state"], "RUNNING");
    assert_eq!(u["safety"]["maxChargeW"], 3000.0);

    // Token and subscription in the first message (the browser way).
    let mut ws2 = connect(addr, "").await;
    send(&mut ws2, &json!({"token": OPERATOR, "subscribe": ["*"]})).await;
    assert_eq!(next_json(&mut ws2).await["actor"], "ops (operator)");
    assert_eq!(next_json(&mut ws2).await, json!({"subscribed": ["*"]}));
    let u = next_json(&mut ws2).await;
    assert_eq!(u["channels"]["_sum/State"], "RUNNING");
    assert_eq!(u["channels"]["_sum/GridActivePower"], -1200.0);
    assert_eq!(u["safety"]["state"], "RUNNING");
    h.view.send_replace(view(12.0, "STOPPED"));
    let u = next_json(&mut ws2).await;
    assert_eq!(u["safety"]["state"], "STOPPED");
    assert_eq!(u["channels"]["_sum/EssSoc"], 12.0);
    // The first client got it too.
    assert_eq!(next_json(&mut ws).await["channels"]["_sum/EssSoc"], 12.0);
}

#[tokio::test]
async fn updates_are_coalesced_to_at_most_10_hz() {
    let h = harness();
    let addr = serve(&h).await;
    let mut ws = connect(addr, &format!("?token={ADMIN}")).await;
    next_json(&mut ws).await;
    send(&mut ws, &json!({"subscribe": ["_sum/EssSoc"]})).await;
    next_json(&mut ws).await; // subscribed
    next_json(&mut ws).await; // the current view

    const PUBLISHED: u32 = 200; // 2 s at 100 Hz
    let tx = h.view.clone();
    let publisher = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        for i in 1..=PUBLISHED {
            tick.tick().await;
            tx.send_replace(view(f64::from(i), "RUNNING"));
        }
    });
    let start = Instant::now();
    let mut received = Vec::new();
    loop {
        let u = next_json(&mut ws).await;
        let soc = u["channels"]["_sum/EssSoc"].as_f64().unwrap();
        received.push((start.elapsed(), soc));
        if soc >= f64::from(PUBLISHED) {
            break;
        }
    }
    publisher.await.unwrap();
    let elapsed = start.elapsed();
    let n = received.len();
    // At most one update per 100 ms (+1 for the edges), and the newest value always arrives.
    let allowed = usize::try_from(elapsed.as_millis() / 100).unwrap() + 2;
    assert!(n <= allowed, "{n} updates in {elapsed:?} (allowed {allowed}): {received:?}");
    assert!(n >= 5, "too few updates: {received:?}");
    assert!(received.windows(2).all(|w| w[0].1 < w[1].1), "values go forward: {received:?}");
    // Nothing more is pending after the last publish.
    let extra = tokio::time::timeout(Duration::from_millis(300), ws.next()).await;
    assert!(extra.is_err(), "unexpected extra message {extra:?}");
}

#[tokio::test]
async fn malformed_messages_get_a_json_error_and_the_connection_stays_open() {
    let h = harness();
    let addr = serve(&h).await;
    let mut ws = connect(addr, &format!("?token={VIEWER}")).await;
    next_json(&mut ws).await;

    ws.send(Message::Text("{not json".into())).await.unwrap();
    let e = next_json(&mut ws).await;
    assert!(e["error"].as_str().unwrap().starts_with("not JSON"), "{e}");

    send(&mut ws, &json!([1, 2])).await;
    assert!(next_json(&mut ws).await["error"].as_str().unwrap().contains("JSON object"));

    send(&mut ws, &json!({"subscribe": 5})).await;
    assert_eq!(next_json(&mut ws).await["field"], "subscribe");

    send(&mut ws, &json!({"subscribe": ["no-slash"]})).await;
    assert_eq!(next_json(&mut ws).await["field"], "subscribe");

    let many: Vec<String> = (0..100).map(|i| format!("c/{i}")).collect();
    send(&mut ws, &json!({ "subscribe": many })).await;
    assert_eq!(next_json(&mut ws).await["field"], "subscribe");

    send(&mut ws, &json!({"unsubscribe": true})).await;
    assert_eq!(next_json(&mut ws).await["field"], "unsubscribe");

    ws.send(Message::Binary(vec![1u8, 2, 3].into())).await.unwrap();
    assert!(next_json(&mut ws).await["error"].as_str().unwrap().contains("binary"));

    // The connection still works.
    send(&mut ws, &json!({"subscribe": []})).await;
    assert_eq!(next_json(&mut ws).await, json!({"subscribed": ["*"]}));
    assert!(next_json(&mut ws).await["channels"].is_object());
}
