//! `ems-gateway run --config` with the grid meter on a P1 port: the loopback Modbus site of
//! `modbus_site.rs`, but `[devices.meter] driver = "p1"` pointing at a TCP "P1 dongle" in this
//! process that sends a CRC-valid DSMR 5 telegram every 200 ms (1.234 kW import). The status
//! line shows that grid power: the telegram reached the snapshot through the site file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use std::io::Read;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

#[path = "support/loopback.rs"]
mod loopback;

fn telegram() -> Vec<u8> {
    let body = "/ISk5\\2MT382-1000\r\n\r\n1-3:0.2.8(50)\r\n0-0:96.1.1(4B384547303034303436333935353037)\r\n\
                1-0:1.7.0(01.234*kW)\r\n1-0:2.7.0(00.000*kW)\r\n1-0:32.7.0(230.0*V)\r\n!";
    let crc = ems_devices::p1::crc::crc16_arc(body.as_bytes());
    format!("{body}{crc:04X}\r\n").into_bytes()
}

#[test]
fn a_site_with_a_p1_grid_meter_runs_and_shows_its_grid_power() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (stdout, status) = runtime.block_on(async {
        let (site, mut served, server, config_path) =
            loopback::serve_site(dir.path(), loopback::MANUAL_2KW).await;
        let dongle = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = dongle.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = dongle.accept().await {
                tokio::spawn(async move {
                    while sock.write_all(&telegram()).await.is_ok() {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                });
            }
        });
        // Swap the profile meter for the P1 meter.
        let text = std::fs::read_to_string(&config_path).unwrap();
        let start = text.find("[devices.meter]").unwrap();
        let end = start + text[start + 1..].find("\n[").unwrap() + 1;
        let p1 = format!(
            "[devices.meter]\nendpoint = \"p1-tcp://127.0.0.1:{port}\"\ndriver = \"p1\"\nmax_age_ms = 2000\n"
        );
        std::fs::write(&config_path, format!("{}{p1}{}", &text[..start], &text[end..])).unwrap();
        let mut child = loopback::spawn_gateway(&config_path, &["--duration", "6"]);
        let status =
            loopback::drive(&site, &mut served, &mut child, Duration::from_secs(60), |_, _, _| {}).await;
        let mut stdout = String::new();
        child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
        drop(server);
        (stdout, status)
    });
    assert!(status.success(), "gateway failed: {status}\n{stdout}");
    assert!(stdout.contains("RUNNING"), "never RUNNING:\n{stdout}");
    assert!(stdout.contains("grid  +1234 W"), "the P1 grid power is not in the status line:\n{stdout}");
}
