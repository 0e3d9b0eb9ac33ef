//! The island path through the one control loop: the simulated site with the island plant,
//! driven by `ems_runtime::Runtime::cycle` (not the sequence alone). Simulated time, 100 ms
//! cycles; every test runs in well under a second of wall time per simulated minute.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use ems_control::ModeSetting;
use ems_core::event::{Constraint, GridTieLimit};
use ems_core::snapshot::GridTie;
use ems_core::{Millis, State, Watts};
use ems_devices::sim::island::{BreakerFault, GridCondition, SimInverterMode};
use ems_grid::island::{BreakerCommand, GridState, IslandSettings};
use ems_runtime::IslandRequest;
use ems_testing::island_scenario::{IslandCycle, IslandSite, IslandSiteConfig};

const RATED: f32 = 5000.0;
const DISCHARGE: f32 = 2500.0;

fn loads() -> Vec<(String, u8, Watts)> {
    [
        ("fridge", 0, 300.0),
        ("lights", 0, 200.0),
        ("sockets", 1, 800.0),
        ("heat pump", 2, 1500.0),
        ("ev charger", 3, 3700.0),
    ]
    .iter()
    .map(|(n, p, w)| ((*n).to_owned(), *p, Watts::try_new(*w).unwrap()))
    .collect()
}

fn site(start: GridTie) -> IslandSite {
    IslandSite::new(&IslandSiteConfig {
        rated: Watts::try_new(RATED).unwrap(),
        battery: ems_core::watt_hours!(10_000.0),
        soc: ems_core::percent!(80.0),
        start,
        loads: loads(),
        settings: IslandSettings::en50549_vde4105(ems_core::volts!(230.0)),
        mode: ModeSetting::Manual { setpoint: Watts::try_new(DISCHARGE).unwrap() },
        step: Millis::new(100),
    })
    .unwrap()
}

/// Run until `until` (control time), checking the bound in every cycle; returns the cycles.
fn run(s: &mut IslandSite, until: Millis) -> Vec<(Millis, IslandCycle)> {
    let mut out = Vec::new();
    while s.now() < until {
        let at = s.now();
        let c = s.cycle();
        let sp = c.output.command.setpoint();
        let island = c.island.as_ref().unwrap();
        if !island.setpoints_allowed {
            assert_eq!(sp, Watts::ZERO, "{at}: set-point {sp} in {}", island.state);
        }
        if let Some(limit) = island.power_limit {
            assert!(sp.abs() <= limit, "{at}: set-point {sp} above the ramp's {limit}");
        }
        if island.breaker == BreakerCommand::Close {
            assert!(island.close.all(), "{at}: close with {:?}", island.close);
        }
        out.push((at, c));
    }
    out
}

fn state(c: &IslandCycle) -> GridState {
    c.status.state
}

#[test]
fn grid_loss_opens_and_verifies_the_breaker_forms_the_island_zeroes_the_setpoint_and_restores_by_priority() {
    let mut s = site(GridTie::Closed);
    let before = run(&mut s, Millis::from_secs(30));
    let (_, last) = before.last().unwrap();
    assert_eq!(last.output.state, State::Running);
    assert_eq!(state(last), GridState::Connected);
    // Entering service at start-up ramps too (10 % Pn/min): 250 W after 30 s.
    let sp = last.output.command.setpoint();
    assert!(sp > Watts::ZERO && sp <= ems_core::watts!(251.0), "{sp}");
    assert_eq!(last.output.binding, Some(Constraint::GridTie(GridTieLimit::ReconnectionRamp)));

    s.plant.with_mut(|p| p.grid.set(GridCondition::Lost));
    let after = run(&mut s, Millis::from_secs(120));
    // The breaker is verified open before the inverter forms (no back-feed onto the grid).
    let first_forming = after
        .iter()
        .position(|(_, c)| c.status.inverter == Some(ems_devices::island::InverterGridMode::GridForming))
        .expect("the inverter forms");
    let (_, c) = &after[first_forming];
    assert_eq!(c.status.breaker, Some(GridTie::Open), "forming only after the read-back shows open");
    let islanded = after.iter().position(|(_, c)| state(c) == GridState::Islanded).unwrap();
    let (at, c) = &after[islanded];
    assert!(at.get() < 33_000, "islanded at {at}");
    assert_eq!(c.output.command.setpoint(), Watts::ZERO);
    assert_eq!(c.output.binding, Some(Constraint::GridTie(GridTieLimit::Islanded)));
    assert!(c.output.envelope.discharge_reasons().contains(&Constraint::GridTie(GridTieLimit::Islanded)));
    // Transfer: zero with its own reason.
    assert!(after
        .iter()
        .any(|(_, c)| c.output.binding == Some(Constraint::GridTie(GridTieLimit::Transferring))));
    // Loads restored by priority, one at a time; the EV charger (above the max step) stays off.
    let restored: Vec<String> = after
        .iter()
        .flat_map(|(_, c)| c.status.events.iter().filter(|e| e.contains("restored")).cloned())
        .collect();
    let order: Vec<&str> = restored.iter().map(|e| e.rsplit(": ").next().unwrap()).collect();
    assert_eq!(order, ["fridge", "lights", "sockets", "heat pump"], "{restored:?}");
    let (_, end) = after.last().unwrap();
    assert_eq!(state(end), GridState::Islanded);
    assert!(end.status.loads.iter().take(4).all(|l| l.on == Some(true)));
    assert_eq!(end.status.loads[4].on, Some(false));
    assert!(s.plant.with(|p| p.breaker.position()) == GridTie::Open);
    // The loop recorded the island's events for the audit log.
    assert!(end.status.recent.iter().any(|(_, e)| e.contains("grid lost: U<< under-voltage")));
}

#[test]
fn grid_return_resynchronises_closes_only_with_every_condition_and_ramps_10_percent_per_minute() {
    let mut s = site(GridTie::Closed);
    let _ = run(&mut s, Millis::from_secs(20));
    s.plant.with_mut(|p| p.grid.set(GridCondition::Lost));
    let _ = run(&mut s, Millis::from_secs(60));
    s.plant.with_mut(|p| p.grid.set(GridCondition::Normal));
    let back = run(&mut s, Millis::from_secs(60 + 60 + 30 + 400));
    // Not before 60 s inside the enter-service window.
    let first_close =
        back.iter().find(|(_, c)| c.island.as_ref().unwrap().breaker == BreakerCommand::Close).unwrap();
    assert!(first_close.0.get() >= 120_000, "closed at {} before the 60 s delay", first_close.0);
    assert!(back.iter().any(|(_, c)| state(c) == GridState::Resynchronising));
    let connected = back
        .iter()
        .position(|(at, c)| at.get() > 120_000 && state(c) == GridState::Connected)
        .expect("reconnected");
    let closed_at = back[connected].0;
    // The ramp: never above 10 % Pn per minute since the close, and it binds.
    let mut bound_seen = false;
    for (at, c) in &back[connected..] {
        let minutes = at.since(closed_at).as_secs_f32() / 60.0;
        let ramp = RATED * 0.10 * (minutes + 0.01);
        let sp = c.output.command.setpoint().get();
        assert!(sp <= ramp + 1.0, "{at}: {sp} W above the 10 %/min ramp ({ramp} W)");
        bound_seen |= c.output.binding == Some(Constraint::GridTie(GridTieLimit::ReconnectionRamp));
    }
    assert!(bound_seen, "the reconnection ramp was never the binding constraint");
    let (_, end) = back.last().unwrap();
    assert_eq!(
        end.output.command.setpoint(),
        Watts::try_new(DISCHARGE).unwrap(),
        "back at the mode's set-point"
    );
    assert_eq!(s.plant.with(|p| p.violations().out_of_phase_closes), 0);
    assert_eq!(s.plant.with(|p| p.violations().forming_onto_grid_ms), 0);
    assert_eq!(s.plant.with(|p| p.readings().inverter), SimInverterMode::GridFollowing);
}

#[test]
fn black_start_energises_from_the_battery_then_loads_one_by_one() {
    let mut s = site(GridTie::Open);
    s.plant.with_mut(|p| p.grid.set(GridCondition::Lost));
    let dark = run(&mut s, Millis::from_secs(30));
    assert!(dark.iter().skip(20).all(|(_, c)| state(c) == GridState::Blackout));
    assert_eq!(dark.last().unwrap().1.output.state, State::Running);
    let envelope = &dark.last().unwrap().1.output.envelope;
    assert!(envelope.discharge_reasons().contains(&Constraint::GridTie(GridTieLimit::NoSupply)));
    assert_eq!(envelope.max_discharge(), Watts::ZERO);
    s.requests.push_back(IslandRequest::BlackStart { reason: "test: site dark".into() });
    let lit = run(&mut s, Millis::from_secs(90));
    assert!(lit.iter().any(|(_, c)| state(c) == GridState::BlackStart));
    let islanded = lit.iter().find(|(_, c)| state(c) == GridState::Islanded).unwrap().0;
    assert!(islanded.get() < 33_000, "islanded at {islanded}");
    let restores: Vec<(Millis, String)> = lit
        .iter()
        .flat_map(|(at, c)| {
            c.status.events.iter().filter(|e| e.contains("restored")).map(move |e| (*at, e.clone()))
        })
        .collect();
    assert_eq!(restores.len(), 4, "{restores:?}");
    for w in restores.windows(2) {
        assert!(w[1].0.since(w[0].0) >= Millis::from_secs(5), "loads 5 s apart: {restores:?}");
    }
    assert!(lit
        .last()
        .unwrap()
        .1
        .status
        .recent
        .iter()
        .any(|(_, e)| e.contains("black start requested by operator")));
}

#[test]
fn a_breaker_that_fails_to_open_ends_in_safe_stop_with_the_inverter_off() {
    let mut s = site(GridTie::Closed);
    let _ = run(&mut s, Millis::from_secs(20));
    s.plant.with_mut(|p| {
        p.breaker.set_fault(BreakerFault::FailsToOpen);
        p.grid.set(GridCondition::Lost);
    });
    let after = run(&mut s, Millis::from_secs(40));
    let (_, end) = after.last().unwrap();
    assert_eq!(state(end), GridState::SafeStop);
    assert!(end.status.stop.unwrap().to_string().contains("failed to open"));
    assert_eq!(end.output.command.setpoint(), Watts::ZERO);
    assert_eq!(end.output.binding, Some(Constraint::GridTie(GridTieLimit::NoSupply)));
    assert_eq!(s.plant.with(|p| p.readings().inverter), SimInverterMode::Off);
    assert!(after.iter().all(|(_, c)| c.island.as_ref().unwrap().breaker != BreakerCommand::Close));
    assert_eq!(s.plant.with(|p| p.violations().forming_onto_grid_ms), 0);
    // A reset through the loop (the operator's request) with the breaker still stuck closed:
    // the sequence takes it, sees a closed breaker it did not close and stops again — never a
    // close, never forming.
    s.requests.push_back(IslandRequest::Reset { reason: "test: breaker inspected".into() });
    let after = run(&mut s, Millis::from_secs(45));
    let (_, end) = after.last().unwrap();
    assert!(end
        .status
        .recent
        .iter()
        .any(|(_, e)| e.contains("safe stop reset by operator: test: breaker inspected")));
    assert_eq!(state(end), GridState::SafeStop);
    assert!(end.status.stop.unwrap().to_string().contains("without an EMS command"), "{:?}", end.status.stop);
    assert_eq!(s.plant.with(|p| p.readings().inverter), SimInverterMode::Off);
}

#[test]
fn an_estop_while_islanded_deenergises_the_island_and_never_closes() {
    let mut s = site(GridTie::Closed);
    let _ = run(&mut s, Millis::from_secs(10));
    s.plant.with_mut(|p| p.grid.set(GridCondition::Lost));
    let _ = run(&mut s, Millis::from_secs(40));
    assert_eq!(s.plant.with(|p| p.readings().inverter), SimInverterMode::GridForming);
    s.estop = true;
    // The grid comes back during the stop: still no close.
    s.plant.with_mut(|p| p.grid.set(GridCondition::Normal));
    let stopped = run(&mut s, Millis::from_secs(40 + 150));
    let (_, end) = stopped.last().unwrap();
    assert_eq!(end.output.state, State::Stopped);
    assert!(end.status.estop);
    assert_eq!(s.plant.with(|p| p.readings().inverter), SimInverterMode::Off);
    assert_eq!(s.plant.with(|p| p.readings().relays), 0, "every load relay open");
    assert_eq!(s.plant.with(|p| p.breaker.position()), GridTie::Open, "never closed during the E-stop");
    assert!(end.status.recent.iter().any(|(_, e)| e.contains("E-stop: island de-energised")));
}

#[test]
fn an_estop_on_the_grid_leaves_the_breaker_and_the_loads_alone() {
    let mut s = site(GridTie::Closed);
    let _ = run(&mut s, Millis::from_secs(10));
    s.estop = true;
    let stopped = run(&mut s, Millis::from_secs(20));
    let (_, end) = stopped.last().unwrap();
    assert_eq!(end.output.state, State::Stopped);
    assert_eq!(end.output.command.setpoint(), Watts::ZERO);
    assert_eq!(s.plant.with(|p| p.breaker.position()), GridTie::Closed);
    assert_eq!(s.plant.with(|p| p.readings().relays), 0b1_1111, "loads stay on the grid");
    assert_eq!(state(end), GridState::Connected);
}

#[test]
fn a_stale_breaker_readback_while_islanded_ends_in_safe_stop() {
    let mut s = site(GridTie::Closed);
    let _ = run(&mut s, Millis::from_secs(10));
    s.plant.with_mut(|p| p.grid.set(GridCondition::Lost));
    let _ = run(&mut s, Millis::from_secs(30));
    s.plant.with_mut(|p| p.breaker.readback_lost = true);
    let after = run(&mut s, Millis::from_secs(40));
    let (_, end) = after.last().unwrap();
    assert_eq!(state(end), GridState::SafeStop);
    assert!(end.status.stop.unwrap().to_string().contains("read-back lost"));
    assert_eq!(s.plant.with(|p| p.readings().inverter), SimInverterMode::Off);
}
