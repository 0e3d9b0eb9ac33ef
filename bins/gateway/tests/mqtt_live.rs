//! `--mqtt` on the built-in simulated site (issue #14 item 6) against a real Mosquitto: birth and
//! retained state with expiry under `ems/sim`, an E-stop and a reset by MQTT answered with their
//! correlation data, and the last will `offline` when the gateway is killed (SIGKILL, no
//! DISCONNECT); `GET /api/v1/mqtt` with the link's counters. Needs `EMS_MOSQUITTO` (set by `scripts/test`); skipped otherwise.
// Test code: a failed unwrap or panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use rumqttc::v5::mqttbytes::v5::{Filter, Packet, Publish, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn broker(bin: &str, dir: &std::path::Path) -> (Broker, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let conf = dir.join("mosquitto.conf");
    std::fs::write(&conf, format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"))
        .unwrap();
    let child =
        Command::new(bin).arg("-c").arg(&conf).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < until, "mosquitto did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (Broker(child), port)
}

async fn next_on(rx: &mut mpsc::UnboundedReceiver<Publish>, topic: &str, secs: u64) -> Publish {
    let until = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let p = tokio::time::timeout_at(until, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("nothing on {topic}"))
            .unwrap();
        if p.topic == topic.as_bytes() {
            return p;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulated_site_on_mqtt_answers_commands_and_leaves_a_last_will() {
    let Ok(bin) = std::env::var("EMS_MOSQUITTO") else {
        eprintln!("SKIP: EMS_MOSQUITTO is not set (scripts/test installs mosquitto and sets it)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (_broker, port) = broker(&bin, dir.path());
    let mut o = MqttOptions::new("watcher", "127.0.0.1", port);
    o.set_max_packet_size(Some(256 * 1024));
    let (client, mut el) = AsyncClient::new(o, 64);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (sub_tx, mut sub_rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => drop(tx.send(p)),
                Ok(Event::Incoming(Packet::SubAck(_))) => drop(sub_tx.send(())),
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    client
        .subscribe_many([
            Filter::new("ems/sim/#", QoS::AtLeastOnce),
            Filter::new("me/answers", QoS::AtLeastOnce),
        ])
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), sub_rx.recv()).await.unwrap();

    let url = format!("mqtt://127.0.0.1:{port}");
    let state = dir.path().join("gw.state");
    let g =
        tokio::task::spawn_blocking(move || support::start_with(&state, &["--mqtt", &url])).await.unwrap();
    assert_eq!(next_on(&mut rx, "ems/sim/status", 20).await.payload.as_ref(), b"online");
    let p = next_on(&mut rx, "ems/sim/state/_sum/EssSoc", 20).await;
    let expiry = p.properties.as_ref().and_then(|p| p.message_expiry_interval);
    assert!(expiry.is_some_and(|e| e > 0 && e <= 15), "retained with an expiry: {expiry:?}");
    let soc: f64 = std::str::from_utf8(&p.payload).unwrap().parse().unwrap();
    assert!((0.0..=100.0).contains(&soc), "{soc}");

    let command = |topic: &'static str, body: &'static str, corr: &'static [u8]| {
        let props = PublishProperties {
            response_topic: Some("me/answers".to_owned()),
            correlation_data: Some(corr.to_vec().into()),
            user_properties: vec![("authorization".to_owned(), format!("Bearer {}", g.token))],
            ..PublishProperties::default()
        };
        client.publish_with_properties(topic, QoS::AtLeastOnce, false, body.as_bytes().to_vec(), props)
    };
    command("ems/sim/cmd/emergency-stop", "", b"stop-1").await.unwrap();
    let a = next_on(&mut rx, "me/answers", 20).await;
    assert_eq!(
        a.properties.as_ref().and_then(|p| p.correlation_data.clone()).as_deref(),
        Some(&b"stop-1"[..])
    );
    let v: serde_json::Value = serde_json::from_slice(&a.payload).unwrap();
    assert_eq!(
        (v["ok"].clone(), v["status"].clone(), v["body"]["state"].clone()),
        (true.into(), 200.into(), "STOPPED".into()),
        "{v}"
    );
    command("ems/sim/cmd/reset", r#"{"reason": "checked over MQTT"}"#, b"reset-1").await.unwrap();
    let a = next_on(&mut rx, "me/answers", 20).await;
    let v: serde_json::Value = serde_json::from_slice(&a.payload).unwrap();
    assert_eq!((v["ok"].clone(), v["body"]["state"].clone()), (true.into(), "IDLE".into()), "{v}");
    // The link's counters and its outage buffer on the API.
    let (code, st) = tokio::task::block_in_place(|| support::http(&g, "GET", "/api/v1/mqtt", None, true));
    assert_eq!(code, 200, "{st}");
    assert_eq!((st["connected"].clone(), st["buffer_rows"].clone()), (true.into(), 20_000.into()), "{st}");
    for key in ["buffered", "buffer_merged", "buffer_dropped", "resent", "commands", "refused"] {
        assert!(st[key].is_u64(), "{key} in {st}");
    }

    // Killed (SIGKILL): no DISCONNECT, the broker publishes the last will.
    drop(g);
    assert_eq!(next_on(&mut rx, "ems/sim/status", 20).await.payload.as_ref(), b"offline");
    task.abort();
}
