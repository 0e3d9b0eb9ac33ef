//! Shared fixtures of the integration tests: snapshots with a chosen frequency and SOC, and a
//! deterministic pseudo-noise.
// Each test binary uses a different subset; helpers abort loudly on a bad fixture; the noise
// generator's casts are the usual u64 → f64 mantissa cut and an f64 → f32 narrowing of a small value.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::panic,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation
)]

use ems_control::{GridAction, GridRequest, GridService};
use ems_core::snapshot::{FAST_MAX_AGE, SLOW_MAX_AGE};
use ems_core::{Hertz, Measurement, Millis, Percent, Snapshot, Watts};
use ems_safety::testkit::healthy_snapshot;
use ems_safety::Envelope;

/// A healthy snapshot at `now_ms` with frequency `f` (`None`: invalid) and SOC `soc` %.
pub fn snapshot(now_ms: u64, f: Option<f32>, soc: f32) -> Snapshot {
    let now = Millis::new(now_ms);
    let mut s = healthy_snapshot(now);
    s.grid.frequency = match f {
        Some(f) => Measurement::good(Hertz::try_new(f).unwrap(), now, FAST_MAX_AGE),
        None => Measurement::invalid(Hertz::ZERO, FAST_MAX_AGE),
    };
    s.battery.soc = Measurement::good(Percent::try_new(soc).unwrap(), now, SLOW_MAX_AGE);
    s
}

/// A snapshot whose frequency reading is good but was taken `age_ms` ago (stale once older
/// than 2 s).
pub fn aged(now_ms: u64, f: f32, age_ms: u64, soc: f32) -> Snapshot {
    let mut s = snapshot(now_ms, Some(f), soc);
    s.grid.frequency =
        Measurement::good(Hertz::try_new(f).unwrap(), Millis::new(now_ms - age_ms), FAST_MAX_AGE);
    s
}

/// The envelope the services see (they do not use it; the final clamp does).
pub fn envelope() -> Envelope {
    Envelope::new(ems_core::watts!(100_000.0))
}

/// One call of `service` at `now_ms` with frequency `f` and SOC `soc`.
pub fn call<G: GridService>(service: &mut G, now_ms: u64, f: Option<f32>, soc: f32) -> Option<GridRequest> {
    service.request(Millis::new(now_ms), &snapshot(now_ms, f, soc), &envelope())
}

/// The Δ of a request (`Idle` = 0); panics on `Replace`, which no frequency service uses.
pub fn delta(request: Option<GridRequest>) -> Option<f32> {
    request.map(|r| match r.action {
        GridAction::Idle => 0.0,
        GridAction::Add(d) => d.get(),
        GridAction::Replace(w) => panic!("a frequency service replaced the set-point with {w}"),
    })
}

/// A deterministic Gaussian pseudo-noise (xorshift64* and Box–Muller).
pub struct Noise {
    state: u64,
    sigma: f32,
}

impl Noise {
    pub fn new(seed: u64, sigma: f32) -> Self {
        Self { state: seed.max(1), sigma }
    }

    fn uniform(&mut self) -> f64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let x = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D);
        ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    pub fn sample(&mut self) -> f32 {
        let (u1, u2) = (self.uniform(), self.uniform());
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        (z as f32) * self.sigma
    }
}

pub fn w(v: f32) -> Watts {
    Watts::try_new(v).unwrap()
}
