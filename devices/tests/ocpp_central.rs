//! The OCPP central system against a raw WebSocket client (no Python): handshake checks,
//! CALLERRORs for malformed messages, the frame size bound, message floods, and a silent
//! charge point that does not block another one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use ems_devices::evse::ocpp::{CentralSystem, CentralSystemConfig};
use ems_devices::evse::{DeciAmps, Evse, EvseEvent};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn bind(cfg: CentralSystemConfig) -> CentralSystem {
    CentralSystem::bind("127.0.0.1:0".parse().unwrap(), cfg).await.unwrap()
}

async fn connect(cs: &CentralSystem, path: &str, subprotocol: Option<&str>) -> Result<Ws, String> {
    let mut req = format!("ws://{}{path}", cs.local_addr()).into_client_request().unwrap();
    if let Some(p) = subprotocol {
        req.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_str(p).unwrap());
    }
    tokio_tungstenite::connect_async(req).await.map(|(ws, _)| ws).map_err(|e| e.to_string())
}

async fn recv(ws: &mut Ws) -> Option<Value> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await.ok()?? {
            Ok(Message::Text(t)) => return Some(serde_json::from_str(&t).unwrap()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

async fn send(ws: &mut Ws, v: &Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

async fn boot(ws: &mut Ws) {
    send(
        ws,
        &json!([2, "b1", "BootNotification", {"chargePointVendor": "raw", "chargePointModel": "client"}]),
    )
    .await;
    let conf = recv(ws).await.unwrap();
    assert_eq!(conf[0], 3);
    assert_eq!(conf[2]["status"], "Accepted");
}

#[tokio::test]
async fn handshake_requires_an_id_and_the_ocpp16_subprotocol() {
    let cs = bind(CentralSystemConfig::default()).await;
    assert!(connect(&cs, "/cp1", None).await.is_err(), "no subprotocol");
    assert!(connect(&cs, "/cp1", Some("ocpp2.0.1")).await.is_err(), "wrong subprotocol");
    assert!(connect(&cs, "/", Some("ocpp1.6")).await.is_err(), "no id");
    assert!(connect(&cs, "/a/b", Some("ocpp1.6")).await.is_err(), "bad id");
    let ws = connect(&cs, "/cp1", Some("ocpp2.0.1, ocpp1.6")).await.unwrap();
    drop(ws);
    assert_eq!(cs.ids(), vec!["cp1".to_owned()]);
}

#[tokio::test]
async fn malformed_messages_get_call_errors() {
    let cs = bind(CentralSystemConfig::default()).await;
    let mut ws = connect(&cs, "/cp1", Some("ocpp1.6")).await.unwrap();
    ws.send(Message::text("{not json")).await.unwrap();
    let e = recv(&mut ws).await.unwrap();
    assert_eq!(e, json!([4, "-1", "FormationViolation", e[3].clone(), {}]));
    send(&mut ws, &json!({"a": 1})).await;
    assert_eq!(recv(&mut ws).await.unwrap()[2], "FormationViolation");
    send(&mut ws, &json!([2, "m1", "BootNotification", {"chargePointVendor": 5}])).await;
    let e = recv(&mut ws).await.unwrap();
    assert_eq!((e[1].as_str(), e[2].as_str()), (Some("m1"), Some("FormationViolation")), "{e}");
    send(&mut ws, &json!([2, "m2", "FlyToTheMoon", {}])).await;
    let e = recv(&mut ws).await.unwrap();
    assert_eq!((e[1].as_str(), e[2].as_str()), (Some("m2"), Some("NotImplemented")));
    send(&mut ws, &json!([7, "m3", "Heartbeat", {}])).await;
    assert_eq!(recv(&mut ws).await.unwrap()[2], "ProtocolError");
    // Still served after all that.
    send(&mut ws, &json!([2, "h1", "Heartbeat", {}])).await;
    let h = recv(&mut ws).await.unwrap();
    assert_eq!(h[0], 3);
    assert!(h[2]["currentTime"].as_str().unwrap().ends_with('Z'));
    let events = cs.drain_events();
    assert_eq!(events.iter().filter(|(_, e)| matches!(e, EvseEvent::OcppCallError { .. })).count(), 5);
}

#[tokio::test]
async fn too_many_malformed_messages_close_the_connection() {
    let cfg = CentralSystemConfig { max_malformed: 3, ..CentralSystemConfig::default() };
    let cs = bind(cfg).await;
    let mut ws = connect(&cs, "/cp1", Some("ocpp1.6")).await.unwrap();
    for _ in 0..4 {
        ws.send(Message::text("garbage")).await.unwrap();
    }
    let mut answers = 0;
    while recv(&mut ws).await.is_some() {
        answers += 1;
    }
    assert_eq!(answers, 4, "four CALLERRORs, then closed");
}

#[tokio::test]
async fn an_oversized_frame_is_refused() {
    let cfg = CentralSystemConfig { max_frame_bytes: 4096, ..CentralSystemConfig::default() };
    let cs = bind(cfg).await;
    let mut ws = connect(&cs, "/big", Some("ocpp1.6")).await.unwrap();
    let big = format!("[2,\"x\",\"DataTransfer\",{{\"vendorId\":\"{}\"}}]", "a".repeat(10_000));
    let _ = ws.send(Message::text(big)).await;
    assert!(recv(&mut ws).await.is_none(), "connection closed");
    for _ in 0..50 {
        if !cs.charge_point("big").unwrap().is_online() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("still online");
}

#[tokio::test]
async fn a_message_flood_closes_the_connection() {
    let cfg = CentralSystemConfig { max_messages_per_second: 5, ..CentralSystemConfig::default() };
    let cs = bind(cfg).await;
    let mut ws = connect(&cs, "/flood", Some("ocpp1.6")).await.unwrap();
    for i in 0..20 {
        if ws.send(Message::text(json!([2, format!("h{i}"), "Heartbeat", {}]).to_string())).await.is_err() {
            break;
        }
    }
    let mut answers = 0;
    while recv(&mut ws).await.is_some() {
        answers += 1;
    }
    assert!(answers <= 5, "{answers}");
    let events = cs.drain_events();
    assert!(events
        .iter()
        .any(|(_, e)| matches!(e, EvseEvent::OcppRefused { reason, .. } if reason == "message flood")));
}

#[tokio::test]
async fn too_many_charge_points_are_refused() {
    let cfg = CentralSystemConfig { max_charge_points: 1, ..CentralSystemConfig::default() };
    let cs = bind(cfg).await;
    let mut a = connect(&cs, "/a", Some("ocpp1.6")).await.unwrap();
    boot(&mut a).await;
    let mut b = connect(&cs, "/b", Some("ocpp1.6")).await.unwrap();
    assert!(recv(&mut b).await.is_none(), "second charge point closed at once");
    assert_eq!(cs.ids(), vec!["a".to_owned()]);
}

#[tokio::test]
async fn a_silent_charge_point_does_not_block_another() {
    let cfg =
        CentralSystemConfig { call_timeout: Duration::from_millis(500), ..CentralSystemConfig::default() };
    let cs = bind(cfg).await;
    // `slow` boots, then never answers the central system's calls (the fallback profiles).
    let mut slow = connect(&cs, "/slow", Some("ocpp1.6")).await.unwrap();
    boot(&mut slow).await;
    let call = recv(&mut slow).await.unwrap();
    assert_eq!((call[0].as_i64(), call[2].as_str()), (Some(2), Some("SetChargingProfile")));
    assert_eq!(call[3]["csChargingProfiles"]["chargingProfilePurpose"], "ChargePointMaxProfile");
    // `fast` is served meanwhile and answers its calls.
    let mut fast = connect(&cs, "/fast", Some("ocpp1.6")).await.unwrap();
    boot(&mut fast).await;
    for _ in 0..2 {
        let c = recv(&mut fast).await.unwrap();
        assert_eq!(c[2], "SetChargingProfile");
        send(&mut fast, &json!([3, c[1].clone(), {"status": "Accepted"}])).await;
    }
    let fast_cp = cs.charge_point("fast").unwrap();
    for _ in 0..50 {
        if fast_cp.state().fallback_installed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(fast_cp.state().fallback_installed);
    // A limit command to the silent one times out instead of hanging.
    let mut slow_cp = cs.charge_point("slow").unwrap();
    let t = tokio::time::Instant::now();
    let r = slow_cp.set_current_limit(DeciAmps::from_tenths(100).unwrap()).await;
    assert!(r.is_err());
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_rejected_profile_is_reported_as_not_applied() {
    let cs = bind(CentralSystemConfig::default()).await;
    let mut ws = connect(&cs, "/rej", Some("ocpp1.6")).await.unwrap();
    boot(&mut ws).await;
    for _ in 0..2 {
        let c = recv(&mut ws).await.unwrap();
        send(&mut ws, &json!([3, c[1].clone(), {"status": "Accepted"}])).await;
    }
    let mut cp = cs.charge_point("rej").unwrap();
    let task = tokio::spawn(async move { cp.set_current_limit(DeciAmps::from_tenths(100).unwrap()).await });
    let c = recv(&mut ws).await.unwrap();
    assert_eq!(c[2], "SetChargingProfile");
    assert_eq!(c[3]["csChargingProfiles"]["chargingProfilePurpose"], "TxDefaultProfile");
    assert_eq!(c[3]["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"], 10.0);
    send(&mut ws, &json!([3, c[1].clone(), {"status": "Accepted"}])).await;
    // The composite schedule says 6 A: the profile is not in force.
    let c = recv(&mut ws).await.unwrap();
    assert_eq!(c[2], "GetCompositeSchedule");
    let schedule =
        json!({"chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 6.0}]});
    send(
        &mut ws,
        &json!([3, c[1].clone(), {"status": "Accepted", "connectorId": 1, "chargingSchedule": schedule}]),
    )
    .await;
    assert!(task.await.unwrap().is_err());
    let events = cs.drain_events();
    assert!(
        events.iter().any(|(_, e)| matches!(e,
        EvseEvent::OcppProfileNotApplied { reported: Some(r), .. } if r.tenths() == 60)),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_silent_charge_point_is_taken_offline() {
    let cfg =
        CentralSystemConfig { offline_after: Duration::from_millis(300), ..CentralSystemConfig::default() };
    let cs = bind(cfg).await;
    let mut ws = connect(&cs, "/quiet", Some("ocpp1.6")).await.unwrap();
    boot(&mut ws).await;
    assert!(cs.charge_point("quiet").unwrap().is_online());
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut cp = cs.charge_point("quiet").unwrap();
    assert!(!cp.is_online());
    assert!(cp.read().await.is_err());
    let events = cs.drain_events();
    assert!(
        events
            .iter()
            .any(|(_, e)| matches!(e, EvseEvent::OcppOffline { reason, .. } if reason.starts_with("silent"))),
        "{events:?}"
    );
}

#[test]
fn config_errors_name_the_field() {
    let bad = [
        (CentralSystemConfig { max_frame_bytes: 10, ..CentralSystemConfig::default() }, "max_frame_bytes"),
        (CentralSystemConfig { lease_secs: 0, ..CentralSystemConfig::default() }, "lease_secs"),
        (
            CentralSystemConfig {
                fallback_current: DeciAmps::from_tenths(30).unwrap(),
                ..CentralSystemConfig::default()
            },
            "fallback_current",
        ),
        (
            CentralSystemConfig { offline_after: Duration::ZERO, ..CentralSystemConfig::default() },
            "offline_after",
        ),
        (CentralSystemConfig { queue_depth: 0, ..CentralSystemConfig::default() }, "queue_depth"),
    ];
    for (cfg, field) in bad {
        let e = cfg.validate().unwrap_err();
        assert_eq!(e.field, field, "{e}");
    }
    assert!(CentralSystemConfig::default().validate().is_ok());
}
