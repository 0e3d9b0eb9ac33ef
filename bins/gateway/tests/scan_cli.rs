//! `ems-gateway scan` beyond SunSpec: a shipped profile recognised on a local Modbus server, a
//! P1 smart meter on a local TCP "dongle", and an OCPP charge point's BootNotification, each
//! with its suggested site-file stanza.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use ems_devices::modbus::transport::server::serve_memory;
use ems_devices::modbus::MemoryRegisters;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

fn scan(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ems-gateway"))
        .arg("scan")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn json_of(o: &Output) -> Value {
    assert!(o.status.success(), "stderr: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// A runtime on its own thread, for the servers the scanned "devices" run on.
fn background() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap()
}

fn f32_words(x: f32) -> [u16; 2] {
    let b = x.to_bits();
    [u16::try_from(b >> 16).unwrap(), u16::try_from(b & 0xFFFF).unwrap()]
}

#[test]
fn a_shipped_meter_profile_is_recognised_with_a_stanza_that_check_config_accepts() {
    let rt = background();
    // Eastron SDM630 input registers 30001.. (address 0..): voltage, total power, frequency.
    let mut regs = MemoryRegisters::default();
    for a in 0..80 {
        regs.input.insert(a, 0);
    }
    for (addr, x) in [(0u16, 231.5f32), (52, -1200.0), (70, 49.98)] {
        let [hi, lo] = f32_words(x);
        regs.input.insert(addr, hi);
        regs.input.insert(addr + 1, lo);
    }
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let port = listener.local_addr().unwrap().port();
    rt.spawn(serve_memory(listener, Arc::new(Mutex::new(regs))));
    let endpoint = format!("modbus-tcp://127.0.0.1:{port}");
    let o = scan(&[&endpoint, "--timeout-ms", "300"]);
    let v = json_of(&o);
    let rec = v["recognised"].as_array().unwrap();
    assert_eq!(rec.len(), 1, "{v:#}");
    let r = &rec[0];
    assert_eq!((r["role"].as_str(), r["manufacturer"].as_str()), (Some("devices.meter"), Some("Eastron")));
    assert_eq!(r["profile"], "eastron-sdm630.toml");
    assert_eq!(r["details"]["voltage"], "231.5 V");
    assert!(v["sunspec_error"].is_string(), "no SunSpec marker here: {v:#}");
    let stanza = r["stanza"].as_str().unwrap();
    assert!(stanza.contains("[devices.meter]") && stanza.contains("driver = \"profile\""), "{stanza}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("[devices.meter]"));

    // The stanza, with the profile path fixed up, makes a site file check-config accepts.
    let site =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/site.toml")).unwrap();
    let start = site.find("[devices.meter]").unwrap();
    let end = start + site[start + 1..].find("\n[").unwrap() + 1;
    let profiles = concat!(env!("CARGO_MANIFEST_DIR"), "/../../devices/profiles/");
    let ours = stanza.replace(
        "profile = \"eastron-sdm630.toml\"",
        &format!("profile = \"{profiles}eastron-sdm630.toml\""),
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("site.toml");
    std::fs::write(&file, format!("{}{}\n{}", &site[..start], ours, &site[end..])).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_ems-gateway")).arg("check-config").arg(&file).output().unwrap();
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stderr),
        std::fs::read_to_string(&file).unwrap()
    );
}

#[test]
fn nothing_recognised_is_an_error_naming_what_was_tried() {
    let rt = background();
    let mut regs = MemoryRegisters::default();
    regs.put(0, &[1, 2, 3]);
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let port = listener.local_addr().unwrap().port();
    rt.spawn(serve_memory(listener, Arc::new(Mutex::new(regs))));
    let o = scan(&[&format!("modbus-tcp://127.0.0.1:{port}"), "--timeout-ms", "300"]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("no SunSpec device") && e.contains("no shipped profile"), "{e}");
}

#[test]
fn a_p1_meter_on_a_tcp_dongle_is_recognised() {
    let rt = background();
    let telegram = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../devices/tests/data/p1/dsmr50_dsmr_parser.txt"
    ))
    .unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let port = listener.local_addr().unwrap().port();
    rt.spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let t = telegram.clone();
            tokio::spawn(async move {
                // Garbage first, then one telegram a second, as a meter sends them.
                let _ = sock.write_all(b"\x00\x7fnoise").await;
                while sock.write_all(&t).await.is_ok() {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            });
        }
    });
    let v = json_of(&scan(&[&format!("p1-tcp://127.0.0.1:{port}"), "--seconds", "10"]));
    let r = &v["recognised"][0];
    assert_eq!(r["manufacturer"], "ISk");
    assert_eq!(r["details"]["equipment_id"], "K8EG004046395507");
    let stanza = r["stanza"].as_str().unwrap();
    assert!(stanza.contains("[devices.meter]") && stanza.contains("driver = \"p1\""), "{stanza}");
    assert!(stanza.contains(&format!("endpoint = \"p1-tcp://127.0.0.1:{port}\"")), "{stanza}");
}

#[test]
fn an_ocpp_boot_notification_is_reported_and_nothing_is_sent_to_the_charger() {
    let rt = background();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(env!("CARGO_BIN_EXE_ems-gateway"))
        .args(["scan", "--ocpp-listen", &format!("127.0.0.1:{port}"), "--seconds", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let extra = rt.block_on(async move {
        // The scan binds after start-up: retry the connection for a while.
        let mut ws = None;
        for _ in 0..100 {
            let mut req = format!("ws://127.0.0.1:{port}/CP-7").into_client_request().unwrap();
            req.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static("ocpp1.6"));
            if let Ok((s, _)) = tokio_tungstenite::connect_async(req).await {
                ws = Some(s);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut ws = ws.expect("the scan listens");
        let boot = json!([2, "b1", "BootNotification", {
            "chargePointVendor": "ACME", "chargePointModel": "Wallbox X1",
            "chargePointSerialNumber": "SN-42", "firmwareVersion": "1.2.3"
        }]);
        ws.send(Message::text(boot.to_string())).await.unwrap();
        // The boot answer, then nothing else (no profiles) until the scan ends.
        let mut frames = Vec::new();
        while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            if let Message::Text(t) = m {
                frames.push(serde_json::from_str::<Value>(&t).unwrap());
            }
        }
        frames
    });
    assert_eq!(extra.len(), 1, "only the BootNotification answer: {extra:?}");
    assert_eq!(extra[0][0], 3);
    assert_eq!(extra[0][2]["status"], "Accepted");
    let v = json_of(&child.wait_with_output().unwrap());
    let r = &v["recognised"][0];
    assert_eq!((r["manufacturer"].as_str(), r["model"].as_str()), (Some("ACME"), Some("Wallbox X1")));
    assert_eq!(r["details"]["serial_number"], "SN-42");
    assert_eq!(r["details"]["firmware"], "1.2.3");
    assert!(r["stanza"].as_str().unwrap().contains("CP-7"));
}
