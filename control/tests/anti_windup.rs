//! Anti-windup of the grid loops' integral trims (issue #10), closed loop through
//! `Controller::step` with a simple plant.
//!
//! The plant: the battery follows the command after a one-cycle transport delay and a
//! first-order lag (τ = 300 ms); the site has a load and PV; the grid meter is exact. Optionally
//! the inverter's power reading is off by a constant (the offset the trim exists for).
//!
//! Every situation in which the battery cannot follow the mode is played while the site has a
//! PV surplus: the controller IDLE before its start, STOPPED by an E-stop until reset and
//! restart, the ramp on its way after a PV step, the envelope (the BMS charge limit) cutting
//! the request, a `LIMIT_CHARGE` override. Afterwards the mode must take the surplus without
//! importing (charge-only allows no import at all), and the trim — read back from the mode's
//! proposal and the snapshot it saw — must not have moved while the battery could not follow.
// Set-up helpers outside `#[test]` functions: a failed set-up should abort the test loudly.
#![allow(clippy::unwrap_used)]

use ems_control::{
    CommandSource, Controller, ControllerConfig, Inputs, ModeSetting, Override, PeakShavingConfig,
    ProposalReason, SelfConsumptionConfig,
};
use ems_core::snapshot::ContactorState;
use ems_core::{ContactorCommand, Measurement, Millis, State, TransitionRequest, Watts};
use ems_safety::testkit::healthy_snapshot;

const CYCLE_MS: u64 = 100;
const AGE: Millis = Millis::new(2_000);

/// What the test asks of one cycle.
#[derive(Clone, Copy, Default)]
struct Cycle {
    load: f32,
    pv: f32,
    request: Option<TransitionRequest>,
    estop: bool,
    ess_override: Option<Override>,
    /// The BMS charge limit (default 5 kW).
    bms_charge_limit: Option<f32>,
}

/// One simulated cycle.
#[derive(Debug, Clone, Copy)]
struct Sample {
    t_s: f32,
    /// True grid power, `+` import.
    grid: f32,
    state: State,
    source: CommandSource,
    /// The mode's trim as implied by its proposal and the snapshot it saw (charge-only from PV
    /// surplus: `proposal = grid + battery − trim` while it charges); `None` when the mode did
    /// not charge from PV surplus in this cycle.
    trim: Option<f32>,
}

struct Plant {
    /// The contactor follows its command within a cycle.
    contactor: ContactorState,
    pending: f32,
    battery: f32,
    /// The inverter reports this much more than it delivers (`−`: reads more charge than it
    /// delivers, so the feed-forward alone charges too much and imports).
    reading_offset: f32,
}

impl Plant {
    fn advance(&mut self, command: f32) {
        // A cycle of a few hundred ms: exact in f32.
        #[allow(clippy::cast_precision_loss)]
        let dt = CYCLE_MS as f32 / 1000.0;
        let alpha = dt / (0.3 + dt);
        self.battery += alpha * (self.pending - self.battery);
        self.pending = command;
    }
}

/// Runs `mode` for `seconds`; `script(t_s)` says what happens in each cycle. Boot completes in
/// the first cycle; the controller is started only when the script asks.
fn simulate(
    mode: ModeSetting,
    reading_offset: f32,
    seconds: u64,
    script: impl Fn(f32) -> Cycle,
) -> Vec<Sample> {
    let mut c = Controller::new(ControllerConfig { mode, ..ControllerConfig::default() }).unwrap();
    let mut plant = Plant { contactor: ContactorState::Open, pending: 0.0, battery: 0.0, reading_offset };
    let mut command = 0.0f32;
    let mut out = Vec::new();
    for k in 0..seconds * 1000 / CYCLE_MS {
        let now = k * CYCLE_MS;
        // Test times stay far below 2^24 ms: exact in f32.
        #[allow(clippy::cast_precision_loss)]
        let t_s = now as f32 / 1000.0;
        let cy = script(t_s);
        plant.advance(command);
        let grid = cy.load - cy.pv - plant.battery;
        let t = Millis::new(now);
        let mut s = healthy_snapshot(t);
        let reading = plant.battery + plant.reading_offset;
        s.grid.active_power = Measurement::good(Watts::saturating(grid), t, AGE);
        s.inverter.active_power = Measurement::good(Watts::saturating(reading), t, AGE);
        s.pv_power = Measurement::good(Watts::saturating(cy.pv), t, AGE);
        // The BMS measures the pack current the battery draws (with a little sensor dither): a
        // BMS reading that stays bit-identical while the inverter moves power is treated as
        // frozen by the safety monitor.
        #[allow(clippy::cast_precision_loss)] // a small dither index
        let dither = 0.01 * (k % 7) as f32;
        s.battery.pack_current =
            Measurement::good(ems_core::Amps::saturating(plant.battery / 52.8 + dither), t, AGE);
        s.contactor = Measurement::good(plant.contactor, t, AGE);
        s.battery.bms_charge_limit =
            Measurement::good(Watts::saturating(cy.bms_charge_limit.unwrap_or(5000.0)), t, AGE);
        let request = if k == 0 { Some(TransitionRequest::BootComplete) } else { cy.request };
        let reason = if request == Some(TransitionRequest::Reset) { "test: E-stop released" } else { "" };
        let o = c.step(
            now,
            &s,
            &Inputs {
                request,
                reason,
                emergency_stop: cy.estop,
                ess_override: cy.ess_override,
                ..Inputs::default()
            },
        );
        command = o.command.setpoint().get();
        plant.contactor = match o.command.contactor() {
            ContactorCommand::Open => ContactorState::Open,
            ContactorCommand::Close => ContactorState::Closed,
            ContactorCommand::Hold => plant.contactor,
        };
        if plant.contactor == ContactorState::Open {
            command = 0.0;
        }
        let trim = (o.state == State::Running && o.proposal.reason == ProposalReason::PvSurplus)
            .then(|| grid + reading - o.proposal.setpoint.get());
        out.push(Sample { t_s, grid, state: o.state, source: o.source, trim });
    }
    out
}

fn charge_only() -> ModeSetting {
    ControllerConfig::default().mode
}

/// Largest grid import (W) in `[from, to)` s.
fn max_import(samples: &[Sample], from: f32, to: f32) -> f32 {
    samples.iter().filter(|s| s.t_s >= from && s.t_s < to).map(|s| s.grid).fold(0.0, f32::max)
}

/// Largest |trim| (W) in `[from, to)` s.
fn max_trim(samples: &[Sample], from: f32, to: f32) -> f32 {
    samples
        .iter()
        .filter(|s| s.t_s >= from && s.t_s < to)
        .filter_map(|s| s.trim)
        .map(f32::abs)
        .fold(0.0, f32::max)
}

/// 3.2 kW of PV surplus.
const SUNNY: Cycle = Cycle {
    load: 800.0,
    pv: 4000.0,
    request: None,
    estop: false,
    ess_override: None,
    bms_charge_limit: None,
};

/// Import allowed in the tests (the plant is exact: any import is the loop's own overshoot).
const MAX_IMPORT_W: f32 = 20.0;

fn start_at(t: f32, at: f32) -> Option<TransitionRequest> {
    ((t - at).abs() < 0.05).then_some(TransitionRequest::Start)
}

#[test]
fn charge_only_does_not_wind_up_while_idle_and_does_not_import_after_the_start() {
    // 60 s IDLE exporting 3.2 kW, then started.
    let samples = simulate(charge_only(), 0.0, 120, |t| Cycle { request: start_at(t, 60.0), ..SUNNY });
    assert!(samples.iter().filter(|s| s.t_s > 60.1).all(|s| s.state == State::Running));
    let import = max_import(&samples, 60.0, 120.0);
    let trim = max_trim(&samples, 60.0, 120.0);
    println!("start after 60 s IDLE: max import {import:.1} W, max |trim| {trim:.1} W");
    assert!(trim <= 5.0, "the trim wound up while IDLE or ramping: {trim} W");
    assert!(import <= MAX_IMPORT_W, "imported {import} W after the start");
    // And the surplus is taken: the grid settles at zero.
    assert!(samples.iter().filter(|s| s.t_s > 70.0).all(|s| s.grid.abs() < 5.0));
}

#[test]
fn charge_only_does_not_import_after_estop_reset_and_restart() {
    let samples = simulate(charge_only(), 0.0, 150, |t| {
        let request = match t {
            t if (t - 1.0).abs() < 0.05 => Some(TransitionRequest::Start),
            t if (t - 80.0).abs() < 0.05 => Some(TransitionRequest::Reset),
            t => start_at(t, 90.0),
        };
        Cycle { request, estop: (30.0..30.15).contains(&t), ..SUNNY }
    });
    assert!(samples.iter().filter(|s| s.t_s > 31.0 && s.t_s < 80.0).all(|s| s.state == State::Stopped));
    assert!(samples.iter().filter(|s| s.t_s > 90.1).all(|s| s.state == State::Running));
    let import = max_import(&samples, 30.0, 150.0);
    let trim = max_trim(&samples, 90.0, 150.0);
    println!("E-stop, reset, restart: max import {import:.1} W, max |trim| {trim:.1} W");
    assert!(trim <= 5.0, "the trim wound up while STOPPED/IDLE: {trim} W");
    assert!(import <= MAX_IMPORT_W, "imported {import} W after the restart");
}

#[test]
fn charge_only_does_not_wind_up_while_the_ramp_is_on_its_way() {
    // Started in a 1 kW surplus; the PV jumps by 4 kW at 30 s: the ramp (2.5 kW/s) needs 1.6 s.
    let samples = simulate(charge_only(), 0.0, 90, |t| Cycle {
        request: start_at(t, 1.0),
        pv: if t < 30.0 { 1800.0 } else { 5800.0 },
        ..SUNNY
    });
    let import = max_import(&samples, 30.0, 90.0);
    let trim = max_trim(&samples, 29.0, 90.0);
    println!("PV step under the ramp: max import {import:.1} W, max |trim| {trim:.1} W");
    assert!(trim <= 5.0, "the trim wound up while the ramp was on its way: {trim} W");
    assert!(import <= MAX_IMPORT_W, "imported {import} W after the ramp");
}

#[test]
fn charge_only_does_not_wind_up_while_the_envelope_cuts_the_request() {
    // The BMS allows only 1 kW of charge from 10 s to 60 s; 2.2 kW are exported meanwhile.
    let samples = simulate(charge_only(), 0.0, 120, |t| Cycle {
        request: start_at(t, 1.0),
        bms_charge_limit: (10.0..60.0).contains(&t).then_some(1000.0),
        ..SUNNY
    });
    let import = max_import(&samples, 10.0, 120.0);
    let trim = max_trim(&samples, 10.0, 120.0);
    println!("BMS charge limit 1 kW for 50 s: max import {import:.1} W, max |trim| {trim:.1} W");
    assert!(trim <= 5.0, "the trim wound up while the envelope cut the request: {trim} W");
    assert!(import <= MAX_IMPORT_W, "imported {import} W after the limit was lifted");
}

#[test]
fn charge_only_does_not_import_after_a_limit_charge_override_expires() {
    let limit = Override::LimitCharge { max_charge_power: ems_core::watts!(500.0) };
    let samples = simulate(charge_only(), 0.0, 120, |t| Cycle {
        request: start_at(t, 1.0),
        ess_override: (10.0..60.0).contains(&t).then_some(limit),
        ..SUNNY
    });
    assert!(samples
        .iter()
        .filter(|s| s.t_s > 10.0 && s.t_s < 60.0)
        .all(|s| s.source == CommandSource::Override(ems_control::OverrideKind::LimitCharge)));
    let import = max_import(&samples, 10.0, 120.0);
    let trim = max_trim(&samples, 10.0, 120.0);
    println!("LIMIT_CHARGE 500 W for 50 s: max import {import:.1} W, max |trim| {trim:.1} W");
    assert!(trim <= 5.0, "the trim wound up under the override: {trim} W");
    assert!(import <= MAX_IMPORT_W, "imported {import} W after the override expired");
}

#[test]
fn charge_only_trim_still_removes_an_offset_and_keeps_it_through_an_override() {
    // The inverter reads 80 W more charge than it delivers: the feed-forward alone charges
    // 80 W too much and imports 80 W. The trim must learn −80 W while the mode is in charge,
    // hold it under the override and not have to learn it again afterwards.
    let limit = Override::LimitCharge { max_charge_power: ems_core::watts!(500.0) };
    let samples = simulate(charge_only(), -80.0, 400, |t| Cycle {
        request: start_at(t, 1.0),
        ess_override: (300.0..330.0).contains(&t).then_some(limit),
        ..SUNNY
    });
    let at = |t: f32| samples.iter().find(|s| (s.t_s - t).abs() < 0.05).and_then(|s| s.trim).unwrap();
    let learnt = at(299.0);
    let steady: f32 =
        samples.iter().filter(|s| s.t_s > 280.0 && s.t_s < 300.0).map(|s| s.grid.abs()).fold(0.0, f32::max);
    println!("offset 80 W: trim {learnt:.1} W, steady |grid| ≤ {steady:.1} W");
    assert!((learnt + 80.0).abs() < 5.0, "trim {learnt} W, expected about -80 W");
    assert!(steady < 5.0, "steady grid {steady} W");
    // Held under the override (the proposal is not commanded), and still right afterwards.
    let moved = samples
        .iter()
        .filter(|s| s.t_s > 299.0 && s.t_s < 331.0)
        .filter_map(|s| s.trim)
        .map(|x| (x - learnt).abs())
        .fold(0.0, f32::max);
    println!("offset 80 W: the trim moved by {moved:.2} W under LIMIT_CHARGE");
    assert!(moved < 1.0, "the trim moved by {moved} W under the override");
    let import = max_import(&samples, 330.0, 400.0);
    println!("offset 80 W, after LIMIT_CHARGE: max import {import:.1} W");
    assert!(import <= MAX_IMPORT_W, "imported {import} W after the override expired");
}

/// The grid-following modes (self-consumption, peak shaving's export cap) with an inverter
/// reading offset of 60 W that the trim has learnt: no overshoot above the target after an
/// override expires, nor after an E-stop, reset and restart (the trim is held outside RUNNING,
/// so the offset need not be learnt again).
#[test]
fn grid_following_modes_do_not_overshoot_after_an_override_or_a_restart() {
    let peak = PeakShavingConfig {
        import_cap: ems_core::watts!(5000.0),
        export_cap: ems_core::watts!(500.0),
        recharge_below: ems_core::watts!(-10_000.0),
        ..PeakShavingConfig::default()
    };
    // Peak shaving holds the export at its cap: the target is −500 W.
    let modes = [
        ("self-consumption", ModeSetting::SelfConsumption(SelfConsumptionConfig::default()), 0.0),
        ("peak shaving (export cap)", ModeSetting::PeakShaving(peak), -500.0),
    ];
    let limit = Override::LimitCharge { max_charge_power: ems_core::watts!(500.0) };
    for (name, mode, target) in modes {
        let samples = simulate(mode, -60.0, 260, |t| {
            let request = match t {
                t if (t - 1.0).abs() < 0.05 => Some(TransitionRequest::Start),
                t if (t - 150.0).abs() < 0.05 => Some(TransitionRequest::Reset),
                t => start_at(t, 160.0),
            };
            Cycle {
                request,
                ess_override: (60.0..100.0).contains(&t).then_some(limit),
                estop: (120.0..120.15).contains(&t),
                ..SUNNY
            }
        });
        let over = |from: f32, to: f32| {
            samples
                .iter()
                .filter(|s| s.t_s >= from && s.t_s < to)
                .map(|s| s.grid - target)
                .fold(0.0, f32::max)
        };
        let after_override = over(100.0, 120.0);
        let after_restart = over(160.0, 260.0);
        println!("{name}: above target after the override {after_override:.1} W, after the restart {after_restart:.1} W");
        assert!(
            after_override <= MAX_IMPORT_W,
            "{name}: {after_override} W above the target after the override"
        );
        assert!(
            after_restart <= MAX_IMPORT_W,
            "{name}: {after_restart} W above the target after the restart"
        );
    }
}
