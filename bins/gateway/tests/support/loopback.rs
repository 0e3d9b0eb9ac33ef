//! The loopback Modbus site of the gateway's end-to-end tests: a site file for
//! `ems-gateway run --config` against `SunSpecSite` (SunSpec inverter unit 1, battery unit 2,
//! SDM630 meter unit 3, relays and E-stop on the I/O module unit 4), and a driver that advances
//! the simulated physics in wall time while the gateway runs as a separate process.
// Test code: a failed unwrap or panic is a failed test with its message; a helper that one
// test binary does not call is dead code there.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ems_core::Millis;
use ems_devices::sim::{SharedSite, SimSiteConfig, SimulatedSite};
use ems_testing::sunspec_site::{
    SunSpecSite, IO_ESTOP_BIT, IO_INPUTS, IO_MAIN_COIL, IO_MAIN_FEEDBACK_BIT, IO_PRECHARGE_COIL,
    IO_PRECHARGE_FEEDBACK_BIT, IO_UNIT,
};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub(crate) const PROFILE: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../devices/profiles/eastron-sdm630.toml");

/// The API token of the site file (its SHA-256 is in `[[api.tokens]]`).
pub(crate) const TOKEN: &str = "loopback-test-token-0123456789abcdef";

/// A site file for the loopback site served on `port`, with `mode` as the `[mode]` table's body.
pub(crate) fn site_file(port: u16, mode: &str) -> String {
    let ep = format!("modbus-tcp://127.0.0.1:{port}");
    // The site file takes ports 1..=65535 only: a free one picked now.
    let api_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let hash = ems_api::auth::hash_token(TOKEN);
    format!(
        r#"[site]
name = "loopback site"
cycle_ms = 100
state_file = "gateway.state"

[limits]
grid_import_limit_w = 17250
grid_export_limit_w = 10000

[mode]
{mode}

[devices.inverter]
endpoint = "{ep}"
unit = 1
driver = "sunspec"
timeout_ms = 300

[devices.battery]
endpoint = "{ep}"
unit = 2
driver = "sunspec"
timeout_ms = 300
assumed_cell_temp_c = 25

[devices.meter]
endpoint = "{ep}"
unit = 3
driver = "profile"
profile = "{PROFILE}"
timeout_ms = 300

[devices.contactor]
kind = "modbus"
endpoint = "{ep}"
unit = {IO_UNIT}
timeout_ms = 300
precharge_coil = {IO_PRECHARGE_COIL}
main_coil = {IO_MAIN_COIL}
feedback_register = {IO_INPUTS}
precharge_feedback_bit = {IO_PRECHARGE_FEEDBACK_BIT}
main_feedback_bit = {IO_MAIN_FEEDBACK_BIT}

[devices.estop]
kind = "modbus"
endpoint = "{ep}"
unit = {IO_UNIT}
timeout_ms = 300
register = {IO_INPUTS}
bit = {IO_ESTOP_BIT}
active = "low"
poll_ms = 10

[api]
listen = "127.0.0.1:{api_port}"
database = "ems.db"
battery_serials = ["sim-bms-1"]
schedule_max_power_w = 5000

[[api.tokens]]
name = "test"
role = "admin"
sha256 = "{hash}"
"#
    )
}

/// A June noon: some PV, a household load, the battery at mid SOC.
pub(crate) fn june_noon() -> SharedSite {
    let config = SimSiteConfig {
        start_day_of_year: 172,
        start_time_of_day: Millis::from_secs(12 * 3600),
        seed: 9,
        ..SimSiteConfig::default()
    };
    SharedSite::new(SimulatedSite::new(config).unwrap())
}

/// The served June-noon site and a site file for it in `dir` (`site.toml`, `[mode]` body
/// `mode`): the site, its Modbus server image, the server (stops when dropped) and the file.
pub(crate) async fn serve_site(
    dir: &std::path::Path,
    mode: &str,
) -> (SharedSite, SunSpecSite, ems_testing::sunspec_site::ServerHandle, std::path::PathBuf) {
    let site = june_noon();
    let served = SunSpecSite::new(site.clone()).unwrap();
    let server = served.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let config = dir.join("site.toml");
    std::fs::write(&config, site_file(server.local_addr().port(), mode)).unwrap();
    (site, served, server, config)
}

/// The manual 2 kW discharge of the end-to-end tests, as a `[mode]` body.
pub(crate) const MANUAL_2KW: &str = "kind = \"manual\"\nsetpoint_w = 2000";

/// Start `ems-gateway run --config <config> <extra>` with stdout piped (stderr dropped).
pub(crate) fn spawn_gateway(config: &std::path::Path, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ems-gateway"))
        .args(["run", "--config"])
        .arg(config)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Advance the physics in 100 ms wall-time steps and sync the register images until the
/// gateway exits (or `limit` passes: the gateway is killed and the test fails). `each` sees the
/// elapsed time and the site after every step.
pub(crate) async fn drive(
    site: &SharedSite,
    served: &mut SunSpecSite,
    child: &mut Child,
    limit: Duration,
    mut each: impl FnMut(Duration, &SharedSite, &mut Child),
) -> ExitStatus {
    let started = Instant::now();
    let mut last = started;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = Instant::now();
        let dt = Millis::new(u64::try_from((now - last).as_millis()).unwrap());
        last = now;
        site.with_mut(|s| s.advance(dt));
        served.sync();
        each(started.elapsed(), site, child);
        if let Some(status) = child.try_wait().unwrap() {
            // One more sync so the release's writes reach the simulated inverter.
            served.sync();
            return status;
        }
        if started.elapsed() > limit {
            child.kill().unwrap();
            panic!("the gateway did not end within {limit:?}");
        }
    }
}
