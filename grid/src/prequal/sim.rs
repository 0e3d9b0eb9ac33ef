//! The simulated unit under test: a frequency meter (first-order filter, optional Gaussian
//! noise) and a battery inverter (dead time, then a ramp-limited move to the set-point, SOC
//! integration). Deterministic for a given seed.

/// The simulated inverter's and meter's numbers (see `docs/GRID.md`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UnitModel {
    /// Control cycle (s): how often the controller steps (20 Hz).
    pub cycle_s: f64,
    /// Time from a command to the inverter starting to move (s): 0.2 s.
    pub dead_time_s: f64,
    /// The inverter's fastest power change, in rated power per second: 4 (0 → rated in 0.25 s).
    pub ramp_rated_per_s: f64,
    /// Rated power as a multiple of the sold capacity C: 1.5 (FCR-N needs 1.34·C with the NEM
    /// offset of the 2025 set).
    pub rated_per_capacity: f64,
    /// Battery energy in hours of C: 4 h (FCR-N keeps 1 h·C each way).
    pub energy_hours: f64,
    /// The frequency meter's first-order filter time constant (s): 0.05 s.
    pub filter_tau_s: f64,
}

impl Default for UnitModel {
    fn default() -> Self {
        Self {
            cycle_s: 0.05,
            dead_time_s: 0.2,
            ramp_rated_per_s: 4.0,
            rated_per_capacity: 1.5,
            energy_hours: 4.0,
            filter_tau_s: 0.05,
        }
    }
}

/// A seeded Gaussian noise source (xorshift64* and Box–Muller).
#[derive(Debug, Clone)]
pub struct Noise {
    state: u64,
}

impl Noise {
    /// A source seeded with `seed` (0 is replaced by 1).
    #[must_use]
    pub const fn new(seed: u64) -> Self {
        Self { state: if seed == 0 { 1 } else { seed } }
    }

    // The top 53 bits of a u64 are exact in an f64 mantissa.
    #[allow(clippy::cast_precision_loss)]
    fn uniform(&mut self) -> f64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let x = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D);
        ((x >> 11) as f64 + 0.5) / 9_007_199_254_740_992.0
    }

    /// One standard-normal sample.
    pub fn standard(&mut self) -> f64 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (core::f64::consts::TAU * u2).cos()
    }
}

/// The frequency meter: `true frequency + noise`, through a first-order filter.
#[derive(Debug, Clone)]
pub struct Meter {
    sigma_hz: f64,
    alpha: f64,
    noise: Noise,
    value: Option<f64>,
}

impl Meter {
    /// A meter with noise `sigma_hz`, filter `tau_s`, sampled every `dt_s`.
    #[must_use]
    pub fn new(sigma_hz: f64, tau_s: f64, dt_s: f64, seed: u64) -> Self {
        let alpha = if tau_s > 0.0 { dt_s / (tau_s + dt_s) } else { 1.0 };
        Self { sigma_hz: sigma_hz.max(0.0), alpha, noise: Noise::new(seed), value: None }
    }

    /// One sample of the true frequency `hz`; returns the filtered measurement.
    pub fn sample(&mut self, hz: f64) -> f64 {
        let raw = hz + self.sigma_hz * self.noise.standard();
        let v = match self.value {
            Some(v) => v + self.alpha * (raw - v),
            None => raw,
        };
        self.value = Some(v);
        v
    }
}

/// The inverter and battery: the set-point reaches the power stage after the dead time, the
/// AC power then moves toward it no faster than the ramp; the SOC integrates the power
/// (lossless; `+` discharge lowers it).
#[derive(Debug, Clone)]
pub struct Inverter {
    queue: std::collections::VecDeque<f64>,
    delay_steps: usize,
    max_step_w: f64,
    power_w: f64,
    energy_wh: f64,
    soc: f64,
    dt_s: f64,
}

impl Inverter {
    /// An inverter of `rated_w` with a battery of `energy_wh` at `soc` (0..=1), under `model`.
    #[must_use]
    pub fn new(model: &UnitModel, rated_w: f64, energy_wh: f64, soc: f64) -> Self {
        let steps = (model.dead_time_s / model.cycle_s).round();
        // A dead time of a few cycles: small, non-negative, integral.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let delay_steps = if steps.is_finite() && steps > 0.0 { steps as usize } else { 0 };
        Self {
            queue: core::iter::repeat_n(0.0, delay_steps).collect(),
            delay_steps,
            max_step_w: model.ramp_rated_per_s * rated_w * model.cycle_s,
            power_w: 0.0,
            energy_wh: energy_wh.max(1.0),
            soc: soc.clamp(0.0, 1.0),
            dt_s: model.cycle_s,
        }
    }

    /// One cycle with the new `setpoint_w`: returns the AC power over this cycle (W).
    pub fn step(&mut self, setpoint_w: f64) -> f64 {
        self.queue.push_back(setpoint_w);
        let target =
            if self.queue.len() > self.delay_steps { self.queue.pop_front().unwrap_or(0.0) } else { 0.0 };
        let d = (target - self.power_w).clamp(-self.max_step_w, self.max_step_w);
        self.power_w += d;
        self.soc = (self.soc - self.power_w * self.dt_s / 3600.0 / self.energy_wh).clamp(0.0, 1.0);
        self.power_w
    }

    /// The AC power now (W, `+` discharge).
    #[must_use]
    pub const fn power_w(&self) -> f64 {
        self.power_w
    }

    /// The SOC now (0..=1).
    #[must_use]
    pub const fn soc(&self) -> f64 {
        self.soc
    }
}
