//! Any pack (issue #11): `ems-gateway run --config` with a `[battery]` section drives a simulated
//! pack of that voltage over Modbus — a 400 V NMC pack (112 cells in series) and a 48 V LFP pack
//! (16 cells) each charge and discharge at the manual set-point — and `check-config` prints the
//! effective limits with where each came from.
// Test code: a failed unwrap or panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read;
use std::time::Duration;

use ems_core::Millis;
use ems_devices::sim::{SharedSite, SimChemistry, SimPack, SimSiteConfig, SimulatedSite};
use ems_testing::sunspec_site::SunSpecSite;

#[path = "support/loopback.rs"]
mod loopback;

const NMC_400V: &str =
    "[battery]\nchemistry = \"nmc\"\ncells_in_series = 112\nstrings_in_parallel = 1\ncapacity_wh = 20000\n";
const LFP_48V: &str = "[battery]\nchemistry = \"lfp\"\ncells_in_series = 16\ncapacity_wh = 10240\n";

fn site(pack: SimPack, capacity_wh: f32) -> SharedSite {
    let config = SimSiteConfig {
        start_day_of_year: 172,
        start_time_of_day: Millis::from_secs(12 * 3600),
        seed: 9,
        pack,
        battery_capacity: ems_core::WattHours::try_new(capacity_wh).unwrap(),
        ..SimSiteConfig::default()
    };
    SharedSite::new(SimulatedSite::new(config).unwrap())
}

/// The loopback site file with `battery` before `[mode]` and the pack currents of `[limits]`
/// left to the pack description.
fn site_file(port: u16, mode: &str, battery: &str) -> String {
    loopback::site_file(port, mode).replacen("[mode]", &format!("{battery}\n[mode]"), 1)
}

/// Run the gateway for 9 s at `setpoint_w`; the battery power seen (max charge as a negative
/// number, max discharge) and the pack voltage range, with the gateway's output.
fn run(pack: SimPack, capacity_wh: f32, battery: &str, setpoint_w: i32) -> (f32, f32, (f32, f32), String) {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let site = site(pack, capacity_wh);
        let mut served = SunSpecSite::new(site.clone()).unwrap();
        let server = served.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let config = dir.path().join("site.toml");
        let mode = format!("kind = \"manual\"\nsetpoint_w = {setpoint_w}");
        std::fs::write(&config, site_file(server.local_addr().port(), &mode, battery)).unwrap();
        let mut child = loopback::spawn_gateway(&config, &["--duration", "9"]);
        let (mut min_p, mut max_p, mut v) = (0.0_f32, 0.0_f32, (f32::MAX, 0.0_f32));
        let status =
            loopback::drive(&site, &mut served, &mut child, Duration::from_secs(60), |_, site, _| {
                let t = site.with(SimulatedSite::truth);
                min_p = min_p.min(t.battery_power.get());
                max_p = max_p.max(t.battery_power.get());
                v = (v.0.min(t.pack_voltage.get()), v.1.max(t.pack_voltage.get()));
            })
            .await;
        let mut stdout = String::new();
        child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
        drop(server);
        assert!(status.success(), "gateway failed: {status}\n{stdout}");
        (min_p, max_p, v, stdout)
    })
}

fn charges_and_discharges(pack: SimPack, capacity_wh: f32, battery: &str, volts: (f32, f32)) {
    let (min_p, _, v, out) = run(pack, capacity_wh, battery, -2000);
    assert!(min_p < -1900.0, "never charged at 2 kW: {min_p} W\n{out}");
    assert!(v.0 > volts.0 && v.1 < volts.1, "pack voltage {v:?} outside {volts:?}");
    let (_, max_p, v, out) = run(pack, capacity_wh, battery, 2000);
    assert!(max_p > 1900.0, "never discharged at 2 kW: {max_p} W\n{out}");
    assert!(v.0 > volts.0 && v.1 < volts.1, "pack voltage {v:?} outside {volts:?}");
}

#[test]
fn a_400_v_nmc_pack_charges_and_discharges() {
    let pack = SimPack { chemistry: SimChemistry::Nmc, cells_in_series: 112 };
    charges_and_discharges(pack, 20_000.0, NMC_400V, (380.0, 450.0));
}

#[test]
fn a_48_v_lfp_pack_charges_and_discharges() {
    charges_and_discharges(SimPack::default(), 10_240.0, LFP_48V, (48.0, 56.0));
}

#[test]
fn check_config_prints_the_effective_pack_limits_and_their_origin() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("site.toml");
    let text = site_file(1502, loopback::MANUAL_2KW, &format!("{NMC_400V}cell_max_v = 4.15\n"));
    std::fs::write(&config, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ems-gateway"))
        .arg("check-config")
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    for want in [
        "battery: nmc 112s1p, 20000 Wh",
        "cell window 2.70..=4.15 V (preset nmc / override battery.cell_max_v), pack window 302.4..=464.8 V",
        "cell temperature: charging from 0 °C (preset nmc)",
        "cell temperature: trip above 60 °C (preset nmc)",
        "pack charge current ≤ 24.4",
        "(preset nmc C-rate × capacity)",
    ] {
        assert!(stdout.contains(want), "missing '{want}':\n{stdout}");
    }
}
