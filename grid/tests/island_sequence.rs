//! The grid↔island sequence, transition by transition, against the small plant of
//! `island_rig`: transfer, breaker failing to open and to close, the inverter failing to form,
//! load restoration and shedding by priority, black start, resynchronisation (and its failure),
//! reconnection delay and ramp.

// Test helpers outside #[test] functions unwrap (a failure should abort loudly) and turn small
// exact step counts and millisecond offsets into f32.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::cast_precision_loss)]

mod island_rig;

use ems_core::snapshot::GridTie;
use ems_core::{Millis, Watts};
use ems_grid::island::{
    BlackoutReason, BreakerCommand, GridState, InverterCommand, IslandEvent, LoadMask, ShedCause, StopReason,
};
use island_rig::{dead_grid, healthy_grid, Rig, RATED};

fn connected() -> Rig {
    let mut r = Rig::new(GridTie::Closed);
    let o = r.step(100);
    assert_eq!(o.state, GridState::Connected);
    assert_eq!(o.inverter, InverterCommand::GridFollowing);
    assert!(o.setpoints_allowed);
    r.run(100, 700_000); // past the start ramp and a full 10-min mean
    r
}

fn islanded() -> Rig {
    let mut r = connected();
    r.grid = dead_grid();
    r.run_until(100, 10_000, |o| o.state == GridState::Islanded).expect("islanded");
    r
}

fn events(r: &Rig) -> Vec<(Millis, IslandEvent)> {
    r.log.iter().flat_map(|(t, o)| o.events.iter().map(move |e| (*t, *e))).collect()
}

fn restored_order(r: &Rig, after: Millis) -> Vec<(Millis, usize)> {
    events(r)
        .into_iter()
        .filter(|(t, _)| *t >= after)
        .filter_map(|(t, e)| match e {
            IslandEvent::LoadRestored { index } => Some((t, index)),
            _ => None,
        })
        .collect()
}

#[test]
fn grid_loss_transfers_opens_verifies_forms_and_restores_critical_loads_first() {
    let mut r = connected();
    let lost_at = r.now;
    r.grid = dead_grid();
    // U<< trips 300 ms after the first sample that sees the dead grid (100 ms cycles): the
    // breaker is commanded open, the inverter off, the loads off.
    let o = r.run_until(100, 1_000, |o| o.state == GridState::Transferring).unwrap();
    assert_eq!(r.now.since(lost_at), Millis::new(400));
    assert_eq!(
        (o.breaker, o.inverter, o.loads),
        (BreakerCommand::Open, InverterCommand::Off, LoadMask::NONE)
    );
    assert!(!o.setpoints_allowed);
    assert!(o.events.iter().any(|e| matches!(e, IslandEvent::GridLost(_))));
    // Read back open → grid-forming → bus in window → islanded.
    let o = r.step(100);
    assert_eq!((o.state, o.inverter), (GridState::Transferring, InverterCommand::GridForming));
    let o = r.step(100);
    assert_eq!(o.state, GridState::Islanded);
    let islanded_at = r.now;
    r.run(100, 60_000);
    // Loads by priority (0: fridge, lights; 1: sockets; 2: heat pump), 5 s apart; the 3.7 kW EV
    // charger is above the 50 % max step and stays off.
    let order = restored_order(&r, islanded_at);
    let idx: Vec<usize> = order.iter().map(|x| x.1).collect();
    assert_eq!(idx, vec![1, 3, 4, 2]);
    for w in order.windows(2) {
        assert!(w[1].0.since(w[0].0) >= Millis::new(5_000));
    }
    assert!(order[0].0.since(islanded_at) >= Millis::new(1_000), "bus settle time first");
    assert!(!r.relays.contains(0));
}

#[test]
fn breaker_failing_to_open_ends_in_safe_stop_with_the_inverter_off() {
    let mut r = connected();
    r.breaker_stuck = true;
    r.grid = dead_grid();
    let t = r.run_until(100, 2_000, |o| o.state == GridState::Transferring).unwrap();
    assert_eq!(t.breaker, BreakerCommand::Open);
    let start = r.now;
    let o = r.run_until(100, 5_000, |o| o.state == GridState::SafeStop).unwrap();
    assert_eq!(r.now.since(start), Millis::new(2_000));
    assert_eq!(o.stop, Some(StopReason::BreakerFailedToOpen));
    assert_eq!(
        (o.breaker, o.inverter, o.loads),
        (BreakerCommand::Open, InverterCommand::Off, LoadMask::NONE)
    );
    // Never grid-forming while the breaker may be closed.
    assert!(r.log.iter().all(|(_, o)| o.inverter != InverterCommand::GridForming));
    // Latched: the grid returns, nothing closes; the reset sees the breaker still closed.
    r.grid = healthy_grid();
    r.run(1_000, 120_000);
    assert_eq!(r.seq.state(), GridState::SafeStop);
    assert!(r.seq.reset(r.now));
    let o = r.step(100);
    assert_eq!(o.stop, Some(StopReason::BreakerClosedUnexpectedly));
}

#[test]
fn inverter_not_forming_ends_in_safe_stop() {
    let mut r = connected();
    r.inverter_refuses_forming = true;
    r.grid = dead_grid();
    let o = r.run_until(100, 10_000, |o| o.state == GridState::SafeStop).unwrap();
    assert_eq!(o.stop, Some(StopReason::InverterDidNotForm));
    assert_eq!((o.breaker, o.inverter), (BreakerCommand::Open, InverterCommand::Off));
}

#[test]
fn reconnection_waits_60_s_synchronises_closes_and_ramps_10_percent_per_minute() {
    let mut r = islanded();
    r.run(100, 30_000);
    let back = r.now;
    r.grid = healthy_grid();
    let o = r.run_until(100, 120_000, |o| o.state == GridState::Resynchronising).unwrap();
    assert!(r.now.since(back) >= Millis::new(60_000), "after {}", r.now.since(back));
    assert_eq!(o.inverter, InverterCommand::Synchronise);
    let o = r.run_until(100, 10_000, |o| o.breaker == BreakerCommand::Close).unwrap();
    assert!(o.close.all());
    assert_eq!(o.state, GridState::Reconnecting);
    let o = r.run_until(100, 1_000, |o| o.state == GridState::Connected).unwrap();
    let closed = r.now;
    assert_eq!(o.inverter, InverterCommand::GridFollowing);
    assert_eq!(o.loads.bits(), 0b1_1111);
    // 10 % Pn/min: 500 W after one minute, 2.5 kW after five, no limit after ten.
    r.run(100, 60_000);
    let lim = r.last.as_ref().unwrap().power_limit.unwrap();
    assert!((lim.get() - 500.0).abs() < 5.0, "{lim}");
    r.run(100, 240_000);
    let lim = r.last.as_ref().unwrap().power_limit.unwrap();
    assert!((lim.get() - 2_500.0).abs() < 5.0, "{lim}");
    r.run(100, 300_000);
    assert_eq!(r.last.as_ref().unwrap().power_limit, None);
    assert!(r.now.since(closed) >= Millis::new(600_000));
}

#[test]
fn a_grid_outside_the_enter_service_window_is_never_reconnected() {
    let mut r = islanded();
    // 50.15 Hz: inside every protection stage, outside the 49.9–50.1 Hz enter-service window.
    r.grid =
        ems_grid::island::Side { voltage: Some(island_rig::UN), frequency: Some(ems_core::hertz!(50.15)) };
    r.run(500, 900_000);
    assert!(r.log.iter().all(|(_, o)| o.breaker != BreakerCommand::Close));
    assert_eq!(r.seq.state(), GridState::Islanded);
    // Low voltage too (0.84 Un).
    r.grid = ems_grid::island::Side {
        voltage: Some(ems_core::volts!(193.0)),
        frequency: Some(ems_core::hertz!(50.0)),
    };
    r.run(500, 300_000);
    assert!(r.log.iter().all(|(_, o)| o.breaker != BreakerCommand::Close));
}

#[test]
fn failed_synchronisation_times_out_and_restarts_the_delay() {
    let mut r = islanded();
    r.inverter_cannot_sync = true; // phase stays 90° apart
    r.grid = healthy_grid();
    r.run_until(100, 120_000, |o| o.state == GridState::Resynchronising).unwrap();
    let o = r.run_until(100, 120_000, |o| o.events.contains(&IslandEvent::SyncFailed)).unwrap();
    assert_eq!(o.state, GridState::Islanded);
    assert_eq!(o.grid_healthy_for, Millis::ZERO);
    r.run(100, 200_000);
    assert!(r.log.iter().all(|(_, o)| o.breaker != BreakerCommand::Close));
}

#[test]
fn breaker_failing_to_close_ends_in_safe_stop() {
    let mut r = islanded();
    r.breaker_stuck = true;
    r.grid = healthy_grid();
    let o = r.run_until(100, 200_000, |o| o.state == GridState::SafeStop).unwrap();
    assert_eq!(o.stop, Some(StopReason::BreakerFailedToClose));
    assert_eq!((o.breaker, o.inverter), (BreakerCommand::Open, InverterCommand::Off));
    assert!(r.seq.reset(r.now));
    assert_eq!(r.seq.state(), GridState::Blackout);
}

#[test]
fn overload_sheds_lowest_priority_first_and_low_soc_keeps_only_critical() {
    let mut r = islanded();
    r.run(100, 60_000);
    assert_eq!(r.relays.bits(), 0b1_1110);
    // The battery can only give 1.2 kW: shed heat pump, then sockets, 500 ms apart.
    r.available = ems_core::watts!(1_200.0);
    let from = r.now;
    r.run(100, 3_000);
    let shed: Vec<(Millis, usize, ShedCause)> = events(&r)
        .into_iter()
        .filter(|(t, _)| *t > from)
        .filter_map(|(t, e)| match e {
            IslandEvent::LoadShed { index, cause } => Some((t, index, cause)),
            _ => None,
        })
        .collect();
    assert_eq!(shed.iter().map(|s| s.1).collect::<Vec<_>>(), vec![2, 4]);
    assert!(shed.iter().all(|s| s.2 == ShedCause::Overload));
    assert!(shed[1].0.since(shed[0].0) >= Millis::new(500));
    assert_eq!(r.relays.bits(), 0b0_1010);
    // Low SOC: only priority 0 stays, nothing else comes back.
    r.available = RATED;
    r.soc = Some(ems_core::percent!(15.0));
    r.run(100, 120_000);
    assert_eq!(r.relays.bits(), 0b0_1010);
    // SOC back: sockets and heat pump return after the restore delay, in that order.
    r.soc = Some(ems_core::percent!(60.0));
    let t = r.now;
    r.run(100, 60_000);
    assert_eq!(restored_order(&r, t).iter().map(|x| x.1).collect::<Vec<_>>(), vec![4, 2]);
}

#[test]
fn no_energy_means_blackout_not_a_collapsing_island() {
    let mut r = islanded();
    r.available = Watts::ZERO;
    let o = r.run_until(100, 10_000, |o| o.state == GridState::Blackout).unwrap();
    assert!(o.events.contains(&IslandEvent::Blackout(BlackoutReason::NoEnergy)));
    assert_eq!(
        (o.breaker, o.inverter, o.loads),
        (BreakerCommand::Open, InverterCommand::Off, LoadMask::NONE)
    );
}

#[test]
fn black_start_energises_then_adds_loads_one_by_one() {
    let mut r = Rig::new(GridTie::Open);
    r.grid = dead_grid();
    let o = r.step(100);
    assert_eq!(o.state, GridState::Blackout);
    r.run(100, 5_000);
    assert_eq!(r.seq.state(), GridState::Blackout, "no black start without a request");
    r.seq.request_black_start();
    let o = r.step(100);
    assert_eq!(
        (o.state, o.inverter, o.loads),
        (GridState::BlackStart, InverterCommand::GridForming, LoadMask::NONE)
    );
    let o = r.step(100);
    assert_eq!(o.state, GridState::Islanded);
    let t = r.now;
    r.run(100, 60_000);
    let order = restored_order(&r, t);
    assert_eq!(order.iter().map(|x| x.1).collect::<Vec<_>>(), vec![1, 3, 4, 2]);
    for w in order.windows(2) {
        assert!(w[1].0.since(w[0].0) >= Millis::new(5_000));
    }
}

#[test]
fn black_start_that_does_not_form_stops_safely() {
    let mut r = Rig::new(GridTie::Open);
    r.grid = dead_grid();
    r.inverter_refuses_forming = true;
    r.step(100);
    r.seq.request_black_start();
    let o = r.run_until(100, 10_000, |o| o.state == GridState::SafeStop).unwrap();
    assert_eq!(o.stop, Some(StopReason::BlackStartFailed));
    assert_eq!(o.inverter, InverterCommand::Off);
}

#[test]
fn dead_bus_reconnection_from_blackout() {
    let mut r = Rig::new(GridTie::Open);
    r.grid = healthy_grid();
    r.step(100);
    let o = r.run_until(100, 120_000, |o| o.breaker == BreakerCommand::Close).unwrap();
    assert!(r.now >= Millis::new(60_000));
    assert_eq!(o.inverter, InverterCommand::Off);
    assert!(o.close.synchronised, "dead bus");
    let o = r.run_until(100, 1_000, |o| o.state == GridState::Connected).unwrap();
    assert_eq!(o.power_limit, Some(Watts::ZERO));
}

#[test]
fn a_breaker_closing_by_itself_while_islanded_stops_the_inverter() {
    let mut r = islanded();
    r.breaker = GridTie::Closed;
    let o = r.step(100);
    assert_eq!(o.stop, Some(StopReason::BreakerClosedUnexpectedly));
    assert_eq!(o.inverter, InverterCommand::Off);
}

#[test]
fn breaker_opened_externally_is_a_transfer() {
    let mut r = connected();
    r.breaker = GridTie::Open;
    let o = r.step(100);
    assert!(o.events.contains(&IslandEvent::BreakerOpenedExternally));
    let o = r.run_until(100, 1_000, |o| o.state == GridState::Islanded).unwrap();
    assert_eq!(o.inverter, InverterCommand::GridForming);
}
