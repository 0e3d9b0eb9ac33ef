//! Closed-loop tests of the grid-following modes through `Controller::step` in RUNNING.
//!
//! A small plant model stands in for the site: the battery follows the command after a
//! one-cycle transport delay and a first-order lag (τ = 300 ms, or none); the site has a load
//! and PV that step and dip; the grid meter and the inverter's power reading carry noise;
//! optionally the meter is read one cycle later than the inverter (with a battery without lag,
//! the case that makes a plain feed-forward oscillate). Each disturbance must settle within a few seconds, with a bounded
//! overshoot and no sustained oscillation afterwards.
// Set-up helpers outside `#[test]` functions: a failed set-up should abort the test loudly.
#![allow(clippy::unwrap_used)]

use ems_control::{
    CapSlot, CapSlots, Controller, ControllerConfig, Inputs, ModeSetting, Override, PeakShavingConfig,
    PlanTarget, SelfConsumptionConfig,
};
use ems_core::{Measurement, Millis, State, TransitionRequest, Watts};
use ems_safety::testkit::healthy_snapshot;

const CYCLE_MS: u64 = 100;

/// Deterministic uniform noise in `-1..1` (xorshift), so failures reproduce.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        // 24 random bits into f32's 24-bit mantissa: exact.
        #[allow(clippy::cast_precision_loss)]
        let u = (self.0 >> 40) as f32 / (1u64 << 24) as f32;
        2.0 * u - 1.0
    }
}

#[derive(Clone, Copy)]
struct PlantOptions {
    meter_noise_w: f32,
    inverter_noise_w: f32,
    /// The grid meter value is one cycle older than the inverter reading.
    meter_skew: bool,
    /// Time constant of the battery's first-order lag after the one-cycle transport delay
    /// (0 = the battery reaches the command one cycle later).
    lag_tau_s: f32,
}

struct Plant {
    opts: PlantOptions,
    noise: Noise,
    /// Command waiting one cycle (transport delay).
    pending: f32,
    battery: f32,
    last_grid: f32,
}

impl Plant {
    fn new(opts: PlantOptions) -> Self {
        Self { opts, noise: Noise(0x9E37_79B9_7F4A_7C15), pending: 0.0, battery: 0.0, last_grid: 0.0 }
    }

    /// Advance one cycle with the command of the previous cycle; returns the true grid power.
    fn advance(&mut self, command: f32, load: f32, pv: f32) -> f32 {
        // A cycle of a few hundred ms: exact in f32.
        #[allow(clippy::cast_precision_loss)]
        let dt = CYCLE_MS as f32 / 1000.0;
        let alpha = dt / (self.opts.lag_tau_s + dt);
        self.battery += alpha * (self.pending - self.battery);
        self.pending = command;
        load - pv - self.battery
    }

    /// The snapshot the controller sees at `now` for a true grid power `grid`.
    fn snapshot(&mut self, now: u64, grid: f32, pv: f32) -> ems_core::Snapshot {
        let t = Millis::new(now);
        let mut s = healthy_snapshot(t);
        let age = Millis::new(2_000);
        let read_grid = if self.opts.meter_skew { self.last_grid } else { grid };
        self.last_grid = grid;
        let g = read_grid + self.opts.meter_noise_w * self.noise.next();
        let b = self.battery + self.opts.inverter_noise_w * self.noise.next();
        s.grid.active_power = Measurement::good(Watts::saturating(g), t, age);
        s.inverter.active_power = Measurement::good(Watts::saturating(b), t, age);
        // The BMS measures the pack current the battery draws (with a little sensor dither, off
        // the noise stream): a BMS reading that stays bit-identical while the inverter moves
        // power is treated as frozen by the safety monitor (issue #10).
        #[allow(clippy::cast_precision_loss)] // a small dither index
        let dither = 0.01 * (now / CYCLE_MS % 7) as f32;
        s.battery.pack_current =
            Measurement::good(ems_core::Amps::saturating(self.battery / 52.8 + dither), t, age);
        s.pv_power = Measurement::good(Watts::saturating(pv), t, age);
        s
    }
}

/// One simulated cycle: time, true grid, command, target grid.
#[derive(Debug, Clone, Copy)]
struct Sample {
    t_s: f32,
    grid: f32,
    command: f32,
    requested: f32,
}

/// Runs `seconds` of closed loop. `profile(t_s) -> (load, pv)`; `inputs(t_s)` adds the
/// per-cycle inputs (plan, override, minute).
fn simulate(
    mode: ModeSetting,
    opts: PlantOptions,
    seconds: u64,
    profile: impl Fn(f32) -> (f32, f32),
    inputs: impl Fn(f32) -> Inputs<'static>,
) -> Vec<Sample> {
    let mut c = Controller::new(ControllerConfig { mode, ..ControllerConfig::default() }).unwrap();
    let mut plant = Plant::new(opts);
    let mut command = 0.0f32;
    let mut out = Vec::new();
    let cycles = seconds * 1000 / CYCLE_MS;
    for k in 0..cycles {
        let now = k * CYCLE_MS;
        // Test times stay far below 2^24 ms: exact in f32.
        #[allow(clippy::cast_precision_loss)]
        let t_s = now as f32 / 1000.0;
        let (load, pv) = profile(t_s);
        let grid = plant.advance(command, load, pv);
        let snap = plant.snapshot(now, grid, pv);
        let request = match k {
            0 => Some(TransitionRequest::BootComplete),
            1 => Some(TransitionRequest::Start),
            _ => None,
        };
        let o = c.step(now, &snap, &Inputs { request, ..inputs(t_s) });
        if k > 1 {
            assert_eq!(o.state, State::Running, "left RUNNING at {t_s} s: {:?}", o.events);
        }
        command = o.command.setpoint().get();
        out.push(Sample { t_s, grid, command, requested: o.requested.get() });
    }
    out
}

/// Response to one disturbance, measured on the grid error `grid − target` from `start` for
/// `window` seconds; the disturbance ends at `end` (a step: `end == start`).
#[derive(Debug)]
struct Response {
    /// Seconds from `end` until the error stays inside the band.
    settle_s: f32,
    /// Largest error of the sign opposite to the initial disturbance, after it.
    overshoot_w: f32,
    /// Sign reversals of the error beyond ±`osc_band` once settled.
    reversals_after_settling: usize,
}

fn response(samples: &[Sample], target: f32, start: f32, end: f32, window: f32, band: f32) -> Response {
    let osc_band = band;
    let win: Vec<&Sample> = samples.iter().filter(|s| s.t_s >= start && s.t_s < start + window).collect();
    let err = |s: &Sample| s.grid - target;
    // Direction of the disturbance: sign of the largest error in the window.
    let peak = win.iter().map(|s| err(s)).fold(0.0f32, |a, e| if e.abs() > a.abs() { e } else { a });
    let overshoot_w = win.iter().map(|s| -err(s) * peak.signum()).fold(0.0f32, f32::max);
    let last_out = win.iter().rposition(|s| err(s).abs() > band);
    let settle_t = last_out.and_then(|i| win.get(i + 1)).map_or(start, |s| s.t_s);
    let mut reversals = 0;
    let mut side = 0i8;
    for s in win.iter().filter(|s| s.t_s >= settle_t) {
        let e = err(s);
        let now_side = if e > osc_band {
            1
        } else if e < -osc_band {
            -1
        } else {
            0
        };
        if now_side != 0 && side != 0 && now_side != side {
            reversals += 1;
        }
        if now_side != 0 {
            side = now_side;
        }
    }
    Response { settle_s: settle_t - end, overshoot_w, reversals_after_settling: reversals }
}

const NOISY: PlantOptions =
    PlantOptions { meter_noise_w: 40.0, inverter_noise_w: 20.0, meter_skew: false, lag_tau_s: 0.3 };
const SKEWED: PlantOptions = PlantOptions { meter_skew: true, ..NOISY };
/// A battery without lag and a meter read a cycle late: a plain feed-forward from the meter
/// balance has its poles on the unit circle here (`c[k] = L + c[k−1] − c[k−2]`).
const FAST_SKEWED: PlantOptions = PlantOptions { meter_skew: true, lag_tau_s: 0.0, ..NOISY };

/// Load steps of several kW and a PV cloud from 4 kW to 0.5 kW in 2 s.
fn site(t: f32) -> (f32, f32) {
    let load = match t {
        t if t < 20.0 => 800.0,
        t if t < 35.0 => 3800.0,
        t if t < 50.0 => 6500.0,
        _ => 800.0,
    };
    let pv = match t {
        t if t < 65.0 => 4000.0,
        t if t < 67.0 => 4000.0 - 3500.0 * (t - 65.0) / 2.0,
        t if t < 72.0 => 500.0,
        t if t < 74.0 => 500.0 + 3500.0 * (t - 72.0) / 2.0,
        _ => 4000.0,
    };
    (load, pv)
}

/// The ramp limit of `ControllerConfig::default()`, W/s.
const RAMP_W_PER_S: f32 = 2500.0;
/// Settling allowance on top of the time the ramp needs: transport delay, battery lag, the
/// loop's filter and the band.
const SETTLE_MARGIN_S: f32 = 1.5;
/// Overshoot allowed: one ramp step (2500 W/s × 100 ms: with a late meter the balance is off
/// by the battery's last move while it ramps) plus the meter noise.
const MAX_OVERSHOOT_W: f32 = 300.0;
/// Settled = the true grid error stays within this band (the meter noise is ±40 W).
const BAND_W: f32 = 150.0;

/// A disturbance of [`site`].
struct Disturbance {
    what: &'static str,
    start: f32,
    /// When the disturbance is complete (a step: `start`).
    end: f32,
    /// Observation window from `start` (until the next disturbance).
    window: f32,
    /// How far the battery must move, W (for the ramp's share of the settling time).
    battery_move: f32,
}

const DISTURBANCES: [Disturbance; 5] = [
    Disturbance { what: "load +3 kW", start: 20.0, end: 20.0, window: 15.0, battery_move: 3000.0 },
    Disturbance { what: "load +2.7 kW", start: 35.0, end: 35.0, window: 15.0, battery_move: 2700.0 },
    Disturbance { what: "load -5.7 kW", start: 50.0, end: 50.0, window: 15.0, battery_move: 5700.0 },
    // PV falls at 1750 W/s, slower than the ramp: the battery keeps up, settle from the end.
    Disturbance {
        what: "cloud 4 kW -> 0.5 kW in 2 s",
        start: 65.0,
        end: 67.0,
        window: 7.0,
        battery_move: 0.0,
    },
    Disturbance { what: "cloud clears in 2 s", start: 72.0, end: 74.0, window: 16.0, battery_move: 0.0 },
];

fn check_self_consumption(opts: PlantOptions, what: &str) {
    let mode = ModeSetting::SelfConsumption(SelfConsumptionConfig::default());
    let samples = simulate(mode, opts, 90, site, |_| Inputs::default());
    for d in DISTURBANCES {
        let r = response(&samples, 0.0, d.start, d.end, d.window, BAND_W);
        let allowed = d.battery_move / RAMP_W_PER_S + SETTLE_MARGIN_S;
        println!("{what}: {}: {r:?} (allowed {allowed:.1} s)", d.what);
        assert!(r.settle_s <= allowed, "{what}: {}: settles in {} s > {allowed} s", d.what, r.settle_s);
        assert!(r.overshoot_w <= MAX_OVERSHOOT_W, "{what}: {}: overshoot {} W", d.what, r.overshoot_w);
        assert!(r.reversals_after_settling <= 1, "{what}: {}: oscillates {r:?}", d.what);
    }
    // Steady state before the first step: 3.2 kW surplus absorbed, grid near zero.
    let steady: Vec<f32> = samples.iter().filter(|s| s.t_s > 10.0 && s.t_s < 20.0).map(|s| s.grid).collect();
    // A few hundred samples: exact in f32.
    #[allow(clippy::cast_precision_loss)]
    let mean = steady.iter().sum::<f32>() / steady.len() as f32;
    assert!(mean.abs() < 20.0, "{what}: steady mean grid {mean} W");
    assert!(steady.iter().all(|g| g.abs() < 150.0), "{what}: steady grid beyond 150 W");
}

#[test]
fn self_consumption_settles_load_steps_and_clouds_without_oscillation() {
    check_self_consumption(NOISY, "noisy meter");
}

#[test]
fn self_consumption_stays_stable_when_the_meter_is_read_a_cycle_late() {
    check_self_consumption(SKEWED, "meter one cycle late");
}

#[test]
fn self_consumption_stays_stable_with_a_fast_battery_and_a_late_meter() {
    check_self_consumption(FAST_SKEWED, "no lag, meter one cycle late");
}

#[test]
fn self_consumption_recovers_from_saturation_without_windup() {
    // 9 kW of load for 20 s: the battery saturates at 5 kW (inverter rating). When the load
    // falls back the loop must settle at once, not unwind an integrator.
    let mode = ModeSetting::SelfConsumption(SelfConsumptionConfig::default());
    let profile = |t: f32| (if (10.0..30.0).contains(&t) { 9000.0 } else { 1500.0 }, 0.0);
    let samples = simulate(mode, NOISY, 45, profile, |_| Inputs::default());
    let during = samples.iter().filter(|s| s.t_s > 15.0 && s.t_s < 30.0);
    assert!(during.clone().all(|s| s.command <= 5000.0 + 1e-3));
    let r = response(&samples, 0.0, 30.0, 30.0, 12.0, BAND_W);
    println!("recovery: {r:?}");
    assert!(
        r.settle_s <= 3.0 && r.overshoot_w <= MAX_OVERSHOOT_W && r.reversals_after_settling <= 1,
        "{r:?}"
    );
}

#[test]
fn peak_shaving_holds_the_cap_through_load_steps() {
    let cfg = PeakShavingConfig {
        import_cap: ems_core::watts!(3000.0),
        export_cap: ems_core::watts!(2000.0),
        recharge_below: ems_core::watts!(1000.0),
        max_recharge: Some(ems_core::watts!(1000.0)),
        reserve_soc: ems_core::percent!(20.0),
        target_soc: ems_core::percent!(90.0),
        slots: CapSlots::new(),
    };
    // No PV; load 2 kW, a 6.5 kW peak from 10 s to 30 s, 4 kW from 30 s to 45 s.
    let profile = |t: f32| {
        let load = match t {
            t if t < 10.0 => 2000.0,
            t if t < 30.0 => 6500.0,
            t if t < 45.0 => 4000.0,
            _ => 2000.0,
        };
        (load, 0.0)
    };
    let samples = simulate(ModeSetting::PeakShaving(cfg), SKEWED, 60, profile, |_| Inputs::default());
    for (start, name) in [(10.0, "peak 6.5 kW"), (30.0, "peak 4 kW")] {
        let r = response(&samples, 3000.0, start, start, 10.0, BAND_W);
        println!("peak shaving: {name}: {r:?}");
        assert!(
            r.settle_s <= 3.0 && r.overshoot_w <= MAX_OVERSHOOT_W && r.reversals_after_settling <= 1,
            "{name}: {r:?}"
        );
    }
    // Below the cap and above the recharge threshold (2 kW, threshold 1 kW): idle.
    let idle = samples.iter().filter(|s| s.t_s > 50.0);
    assert!(idle.clone().all(|s| s.command == 0.0), "peak shaving moved the battery under the cap");
    // Time slots: a tighter cap from 08:00 shaves the same 2 kW load.
    let slots = CapSlots::from_slice(&[
        CapSlot {
            start_minute: 0,
            import_cap: ems_core::watts!(3000.0),
            export_cap: ems_core::watts!(2000.0),
        },
        CapSlot {
            start_minute: 8 * 60,
            import_cap: ems_core::watts!(1500.0),
            export_cap: ems_core::watts!(2000.0),
        },
    ])
    .unwrap();
    let cfg = PeakShavingConfig { slots, ..cfg };
    let minute = |t: f32| Inputs {
        local_minute: Some(if t < 10.0 { 7 * 60 + 59 } else { 8 * 60 }),
        ..Inputs::default()
    };
    let samples = simulate(ModeSetting::PeakShaving(cfg), NOISY, 25, |_| (2000.0, 0.0), minute);
    let r = response(&samples, 1500.0, 10.0, 10.0, 15.0, BAND_W);
    println!("peak shaving: slot change: {r:?}");
    assert!(r.settle_s <= 3.0 && r.reversals_after_settling <= 1, "{r:?}");
}

#[test]
fn plan_self_consumption_slot_absorbs_forecast_error_and_hold_slot_holds() {
    // The plan expected 1 kW of load covered by the battery (grid 0); the real load steps to
    // 3.5 kW at 10 s. From 25 s the plan holds a 2 kW grid charge.
    let plan = |t: f32| {
        let slot = if t < 25.0 {
            PlanTarget { battery: ems_core::watts!(1000.0), grid: Watts::ZERO }
        } else {
            PlanTarget { battery: ems_core::watts!(-2000.0), grid: ems_core::watts!(3500.0) }
        };
        Inputs { plan: Some(slot), ..Inputs::default() }
    };
    let profile = |t: f32| (if t < 10.0 { 1000.0 } else { 3500.0 }, 0.0);
    let samples = simulate(ModeSetting::Passive, NOISY, 40, profile, plan);
    let r = response(&samples, 0.0, 10.0, 10.0, 12.0, BAND_W);
    println!("plan self-consumption slot: {r:?}");
    assert!(
        r.settle_s <= 3.0 && r.overshoot_w <= MAX_OVERSHOOT_W && r.reversals_after_settling <= 1,
        "{r:?}"
    );
    let hold = samples.iter().filter(|s| s.t_s > 30.0);
    assert!(hold.clone().all(|s| s.command == -2000.0), "hold slot did not hold -2000 W");
}

#[test]
fn no_discharge_override_on_self_consumption_stops_discharging_then_releases() {
    let mode = ModeSetting::SelfConsumption(SelfConsumptionConfig::default());
    let inputs = |t: f32| Inputs {
        ess_override: (10.0..20.0).contains(&t).then_some(Override::NoDischarge),
        ..Inputs::default()
    };
    let samples = simulate(mode, NOISY, 30, |_| (2500.0, 0.0), inputs);
    // The override is not safety: the command ramps down (2.5 kW at 2.5 kW/s), then stays ≤ 0.
    let blocked: Vec<&Sample> = samples.iter().filter(|s| s.t_s >= 10.0 && s.t_s < 20.0).collect();
    assert!(blocked.iter().all(|s| s.requested <= 0.0), "NO_DISCHARGE let a discharge through");
    assert!(blocked.windows(2).all(|w| w[1].command <= w[0].command.max(0.0)), "not monotone");
    assert!(blocked.iter().filter(|s| s.t_s >= 11.1).all(|s| s.command <= 0.0));
    // Released: back to covering the load without windup from the blocked period.
    let r = response(&samples, 0.0, 20.0, 20.0, 10.0, BAND_W);
    println!("override released: {r:?}");
    assert!(
        r.settle_s <= 3.0 && r.overshoot_w <= MAX_OVERSHOOT_W && r.reversals_after_settling <= 1,
        "{r:?}"
    );
}
