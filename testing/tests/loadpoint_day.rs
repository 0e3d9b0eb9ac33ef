//! Loadpoints on the simulated site (issue #15 item 2): the loadpoint controller drives the
//! simulated EV and charger through `SafeEvse`, with the site's real PV (TMY3 Greensboro,
//! `devices/data`) and household load (BDEW H25). The house battery is idle in this loop, so
//! any grid import while the car charges is the car's.
//!
//! * a sunny day in `pv` mode charges from surplus only: the grid import attributable to the
//!   car (`min(mean car power, mean grid import)` per 10 s window) stays ≤ 50 W in every
//!   window, with at most 4 phase switches;
//! * a cloudy passage stops charging after the disable delay and restarts after the enable
//!   delay;
//! * `now` charges at the maximum, `off` never charges;
//! * a vehicle that cannot switch phases keeps them all day.

#![allow(clippy::unwrap_used)] // helpers of the tests fail loudly
use ems_control::loadpoint::{ChargeMode, LoadpointConfig, LoadpointReason};
use ems_core::{Millis, Percent, WattHours};
use ems_devices::evse::sim::SimEv;
use ems_devices::evse::{DeciAmps, EvseCapabilities, Phases, SafeEvseConfig};
use ems_devices::sim::SimSiteConfig;
use ems_testing::loadpoint_day::{run_loadpoint_day, LoadpointDay, LoadpointDayOptions};

/// Day of year of the sunny day: a clear day in the TMY3 year.
const SUNNY_DAY: u16 = 130;
/// Day of year with a cloudy passage around midday.
const CLOUDY_DAY: u16 = 166;

fn a(x: f32) -> DeciAmps {
    DeciAmps::try_from_amps(x).unwrap()
}

fn options(day: u16, mode: ChargeMode, vehicle_can_switch: bool) -> LoadpointDayOptions {
    LoadpointDayOptions {
        site: SimSiteConfig { start_day_of_year: day, ..SimSiteConfig::default() },
        charger: EvseCapabilities { min_current: a(6.0), max_current: a(16.0), phase_switching: true },
        evse: SafeEvseConfig::default(),
        vehicle: SimEv {
            capacity: WattHours::try_new(60_000.0).unwrap(),
            soc: Percent::try_new(20.0).unwrap(),
            onboard_max: a(16.0),
            onboard_phases: Phases::Three,
            departure: None,
        },
        initial_phases: Phases::Three,
        loadpoint: LoadpointConfig {
            // Stop before the car imports: at dusk the PV falls by up to ~50 W a minute, so the
            // 3 min disable delay starts while 250 W are still exported (evcc's negative
            // disable threshold), and a start needs 250 W above the minimum (hysteresis).
            disable_threshold: ems_core::watts!(-250.0),
            enable_threshold: ems_core::watts!(250.0),
            charger_can_switch_phases: true,
            vehicle_can_switch_phases: vehicle_can_switch,
            ..LoadpointConfig::default()
        },
        mode,
        step: Millis::from_secs(1),
        duration: Millis::from_secs(24 * 3600),
    }
}

fn hm(t: Millis) -> String {
    let s = t.get() / 1000;
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

fn summary(day: &LoadpointDay) -> String {
    let starts: Vec<String> = day.starts().into_iter().map(hm).collect();
    let stops: Vec<String> = day.stops().into_iter().map(hm).collect();
    format!(
        "car {:.1} kWh, {} phase switches, starts {starts:?}, stops {stops:?}, errors {}",
        day.car_energy_wh / 1000.0,
        day.phase_switches,
        day.command_errors
    )
}

#[test]
fn a_sunny_day_in_pv_mode_charges_from_surplus_only() {
    let day = run_loadpoint_day(&options(SUNNY_DAY, ChargeMode::Pv, true)).unwrap();
    let (at, worst) = day.worst_car_import(10);
    println!("sunny day {SUNNY_DAY}: {}; worst car import {worst:.1} W at {}", summary(&day), hm(at));
    assert!(day.car_energy_wh > 10_000.0, "the car charged from the sun: {}", summary(&day));
    assert!(worst <= 50.0, "car-caused import {worst:.1} W (10 s mean) at {}: {}", hm(at), summary(&day));
    assert!(day.phase_switches <= 4, "{}", summary(&day));
    assert!(day.phase_switches >= 1, "the day used both phase counts: {}", summary(&day));
    assert_eq!(day.command_errors, 0, "{}", summary(&day));
}

/// The time the reason has been `kind` without interruption up to (not including) `i`.
fn lasted(day: &LoadpointDay, i: usize, kind: fn(&LoadpointReason) -> bool) -> Millis {
    let end = day.samples[i].t;
    let mut j = i;
    while j > 0 && kind(&day.samples[j - 1].reason) {
        j -= 1;
    }
    end.since(day.samples[j].t)
}

#[test]
fn a_cloudy_passage_stops_and_restarts_charging_with_the_delays() {
    let day = run_loadpoint_day(&options(CLOUDY_DAY, ChargeMode::Pv, true)).unwrap();
    println!("cloudy day {CLOUDY_DAY}: {}", summary(&day));
    let mut cloud_stops = 0;
    for (i, s) in day.samples.iter().enumerate().skip(1) {
        let prev = &day.samples[i - 1];
        if prev.enabled && !s.enabled {
            // Every stop for lack of surplus comes after the full disable delay.
            if matches!(s.reason, LoadpointReason::WaitingForSurplus { .. }) {
                let d = lasted(&day, i, |r| matches!(r, LoadpointReason::DisableDelay { .. }));
                assert!(d >= Millis::from_secs(179), "stopped after {d} of deficit at {}", hm(s.t));
                // The cloud of day 166 passes between about 8:40 and 10:00 (TMY3 Greensboro).
                let h = s.t.get() / 3_600_000;
                if (8..10).contains(&h) {
                    cloud_stops += 1;
                }
            }
        }
        if !prev.enabled && s.enabled && matches!(s.reason, LoadpointReason::PvSurplus { .. }) {
            let phase_switched = matches!(prev.reason, LoadpointReason::PhaseSwitched { .. });
            if !phase_switched {
                let d = lasted(&day, i, |r| matches!(r, LoadpointReason::EnableDelay { .. }));
                assert!(d >= Millis::from_secs(59), "started after {d} of surplus at {}", hm(s.t));
            }
        }
    }
    assert!(cloud_stops >= 1, "the cloud stopped charging: {}", summary(&day));
    let cloud_restarts = day.starts().iter().filter(|t| (9..11).contains(&(t.get() / 3_600_000))).count();
    assert!(cloud_restarts >= 1, "charging restarted after the cloud: {}", summary(&day));
}

#[test]
fn now_charges_at_the_maximum_and_off_never_charges() {
    let mut opts = options(SUNNY_DAY, ChargeMode::Now, true);
    opts.duration = Millis::from_secs(3600);
    let now = run_loadpoint_day(&opts).unwrap();
    // After the switch to three phases (2 min pause) the car draws 16 A on three phases at night.
    let late = &now.samples[600..];
    assert!(late.iter().all(|s| s.current.tenths() == 160 && s.enabled), "{}", summary(&now));
    assert!(late.iter().all(|s| (s.car.get() - 3.0 * 230.0 * 16.0).abs() < 1.0), "{}", summary(&now));
    opts.mode = ChargeMode::Off;
    opts.duration = Millis::from_secs(24 * 3600);
    let off = run_loadpoint_day(&opts).unwrap();
    assert!(off.samples.iter().all(|s| s.car.get() == 0.0 && !s.enabled), "{}", summary(&off));
    assert_eq!(off.phase_switches, 0);
}

#[test]
fn a_vehicle_that_cannot_switch_keeps_its_phases_all_day() {
    let mut opts = options(SUNNY_DAY, ChargeMode::Pv, false);
    // The charger was left on one phase; the surplus would ask for three around noon.
    opts.initial_phases = Phases::One;
    let day = run_loadpoint_day(&opts).unwrap();
    println!("no switching: {}", summary(&day));
    assert_eq!(day.phase_switches, 0, "{}", summary(&day));
    assert!(day.samples.iter().all(|s| s.phases == Phases::One), "{}", summary(&day));
    assert!(day.car_energy_wh > 10_000.0, "{}", summary(&day));
    let (at, worst) = day.worst_car_import(10);
    assert!(worst <= 50.0, "car-caused import {worst:.1} W at {}: {}", hm(at), summary(&day));
}

/// Prints, per day of the year, the PV energy and the largest drop of the 10-minute PV mean
/// between 9:00 and 16:00 (how the sunny and the cloudy day were chosen).
#[test]
#[ignore = "prints a table, asserts nothing (how the test days were chosen); run: cargo test -p ems-testing --test loadpoint_day scan_days -- --ignored --nocapture"]
fn scan_days() {
    use ems_devices::sim::SimulatedSite;
    for day in 1..=365u16 {
        let mut site =
            SimulatedSite::new(SimSiteConfig { start_day_of_year: day, ..SimSiteConfig::default() }).unwrap();
        let mut kwh = 0.0;
        let mut means = Vec::new();
        let mut acc = 0.0;
        for m in 0..1440 {
            site.advance(Millis::from_secs(60));
            let pv = f64::from(site.truth().pv_power.get());
            kwh += pv / 60_000.0;
            acc += pv;
            if m % 10 == 9 {
                means.push(acc / 10.0);
                acc = 0.0;
            }
        }
        let mid = &means[54..96];
        let peak = mid.iter().cloned().fold(0.0, f64::max);
        let min = mid.iter().cloned().fold(f64::MAX, f64::min);
        let mut rough = 0.0;
        for w in mid.windows(2) {
            rough += (w[1] - w[0]).abs();
        }
        println!("day {day:3}: {kwh:5.1} kWh peak {peak:5.0} min(9-16h) {min:5.0} rough {rough:6.0}");
    }
}

/// Prints the 10-minute PV means of the day in `EMS_LP_DAY` (exploration).
#[test]
#[ignore = "prints one day's PV, asserts nothing; run: EMS_LP_DAY=166 cargo test -p ems-testing --test loadpoint_day print_day -- --ignored --nocapture"]
fn print_day() {
    use ems_devices::sim::SimulatedSite;
    let day: u16 = std::env::var("EMS_LP_DAY").ok().and_then(|v| v.parse().ok()).unwrap_or(CLOUDY_DAY);
    let mut site =
        SimulatedSite::new(SimSiteConfig { start_day_of_year: day, ..SimSiteConfig::default() }).unwrap();
    let mut line = String::new();
    for m in 0..1440u32 {
        site.advance(Millis::from_secs(60));
        if m % 20 == 0 && (360..1200).contains(&m) {
            line.push_str(&format!("{:02}:{:02} {:4.0} ", m / 60, m % 60, site.truth().pv_power.get()));
        }
    }
    println!("day {day}: {line}");
}
