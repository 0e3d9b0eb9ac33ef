//! The fleet on a real Mosquitto (issue #14 item 5): N simulated gateways publish one telemetry
//! batch per second each; the test prints messages per second, end-to-end latency and the
//! broker's CPU, and checks that nothing is refused and (almost) everything arrives.
//!
//! Needs `EMS_MOSQUITTO` (the broker binary; `scripts/test` installs Debian's `mosquitto`);
//! skips with a message without it. Sizes: `EMS_FLEET_SIZES` (default `10,100`; the figures in
//! `docs/FLEET.md` come from `EMS_FLEET_SIZES=10,100,1000`), seconds each: `EMS_FLEET_SECONDS`
//! (default 5).
// Test code: a failed unwrap or panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ems_testing::fleet::{run_fleet, FleetConfig, CHANNELS};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_broker(bin: &str, dir: &std::path::Path) -> (Broker, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\n"),
    )
    .unwrap();
    let child =
        Command::new(bin).arg("-c").arg(&conf).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let broker = Broker(child);
    let end = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "mosquitto did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    (broker, port)
}

#[test]
fn a_fleet_of_simulated_gateways_on_one_mosquitto() {
    let Ok(bin) = std::env::var("EMS_MOSQUITTO") else {
        eprintln!("skipped: EMS_MOSQUITTO is not set (scripts/test installs mosquitto and sets it)");
        return;
    };
    let sizes: Vec<usize> = std::env::var("EMS_FLEET_SIZES")
        .unwrap_or_else(|_| "10,100".into())
        .split(',')
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let seconds: u64 = std::env::var("EMS_FLEET_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let dir = tempfile::tempdir().unwrap();
    for n in sizes {
        let (broker, port) = start_broker(&bin, dir.path());
        let report = run_fleet(FleetConfig {
            gateways: n,
            seconds,
            warmup: 3,
            broker: ("127.0.0.1".into(), port),
            prefix: "ems".into(),
            expiry_s: 10,
            broker_pid: Some(broker.0.id()),
        })
        .unwrap();
        println!("fleet {}", report.line());
        assert_eq!(report.publish_errors, 0, "{}", report.line());
        // The broker delivers what was published (give or take the messages in flight at the
        // window's edges). Whether the publishers kept up with one batch a second depends on
        // this machine (a debug build on two busy cores may not): printed, not asserted.
        #[allow(clippy::cast_precision_loss)] // small counts
        let (published, received) = (report.published as f64, report.received as f64);
        assert!(received >= 0.95 * published, "the broker lost messages: {}", report.line());
        assert!(published > 0.0, "{}", report.line());
        #[allow(clippy::cast_precision_loss)]
        let nominal = (n * CHANNELS.len()) as f64 * report.seconds;
        println!("fleet N={n}: publishers kept {:.0} % of one batch per second", 100.0 * published / nominal);
        assert!(report.latency_ms.1.is_finite(), "{}", report.line());
        drop(broker);
    }
}
