//! The shared physics of the simulated parts: step coefficients, the time constants they are
//! computed from, noise and ramps. Its own module so the parts and the battery can use it without
//! importing their parent.

use ems_core::Millis;

/// Thermal time constant of the pack towards ambient.
pub(crate) const THERMAL_TAU_S: f64 = 1_800.0;
/// Heat-sink thermal mass and conductance: 35 K rise at 200 W of losses, τ ≈ 9 min.
const INV_HEAT_CAPACITY: f64 = 3_000.0;
pub(crate) const INV_CONDUCTANCE: f64 = 200.0 / 35.0;
pub(crate) const INV_TAU_S: f64 = INV_HEAT_CAPACITY / INV_CONDUCTANCE;
/// Time constant of the DC link charging through the pre-charge resistor (≈ 95 % after 0.45 s).
pub const PRECHARGE_TAU: Millis = Millis::new(150);
/// Time constant of the DC link discharging (bleeder resistor) with both relays open.
pub const DC_LINK_BLEED_TAU: Millis = Millis::new(2_000);

/// Time constant of the load noise (AR(1) correlation time).
const LOAD_NOISE_TAU_S: f64 = 300.0;
/// Time constant of the grid voltage/frequency noise.
const GRID_NOISE_TAU_S: f64 = 60.0;

/// Everything that depends only on the step length, computed once per distinct `dt` so the hot
/// path has no `exp()`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StepCoeffs {
    pub(crate) dt_ms: u64,
    pub(crate) dt_s: f64,
    pub(crate) dt_h: f64,
    pub(crate) battery_decay: f64,
    pub(crate) inverter_decay: f64,
    pub(crate) precharge_decay: f64,
    pub(crate) bleed_decay: f64,
    pub(crate) noise_phi: f64,
    pub(crate) noise_innovation: f64,
    pub(crate) grid_phi: f64,
    pub(crate) grid_innovation: f64,
}

impl StepCoeffs {
    pub(crate) fn new(dt: Millis) -> Self {
        let dt_s = f64::from(u32::try_from(dt.get()).unwrap_or(u32::MAX)) / 1000.0;
        let noise_phi = (-dt_s / LOAD_NOISE_TAU_S).exp();
        let grid_phi = (-dt_s / GRID_NOISE_TAU_S).exp();
        Self {
            dt_ms: dt.get(),
            dt_s,
            dt_h: dt_s / 3600.0,
            battery_decay: (-dt_s / THERMAL_TAU_S).exp(),
            inverter_decay: (-dt_s / INV_TAU_S).exp(),
            precharge_decay: (-dt_s / ms_to_s(PRECHARGE_TAU)).exp(),
            bleed_decay: (-dt_s / ms_to_s(DC_LINK_BLEED_TAU)).exp(),
            noise_phi,
            noise_innovation: (1.0 - noise_phi * noise_phi).sqrt(),
            grid_phi,
            grid_innovation: (1.0 - grid_phi * grid_phi).sqrt(),
        }
    }
}

fn ms_to_s(t: Millis) -> f64 {
    f64::from(u32::try_from(t.get()).unwrap_or(u32::MAX)) / 1000.0
}

/// An approximately standard-normal sample (Irwin–Hall sum of four uniforms, rescaled): cheap
/// and deterministic per seed; the tails are bounded at ±3.46 σ, which suits noise on a load.
pub(crate) fn normal(rng: &mut fastrand::Rng) -> f64 {
    let s = rng.f32() + rng.f32() + rng.f32() + rng.f32();
    f64::from(s - 2.0) * 3.0_f64.sqrt()
}

/// 0 at or below `lo`, 1 at or above `hi`, linear in between.
pub(crate) fn ramp_up(x: f64, lo: f64, hi: f64) -> f64 {
    ((x - lo) / (hi - lo)).clamp(0.0, 1.0)
}

/// 1 at or below `lo`, 0 at or above `hi`, linear in between.
pub(crate) fn ramp_down(x: f64, lo: f64, hi: f64) -> f64 {
    1.0 - ramp_up(x, lo, hi)
}
