//! The unit's transfer function from a sine test, and the Nordic stability and performance
//! criteria (see `docs/GRID.md`, "Reading of the requirements").
//!
//! * `F(jω)`: the unit's normalised response, `−(P̂ / C) / (f̂ / Δf_full)`, from correlating
//!   the power and the injected frequency with `sin`/`cos` over whole periods. It includes
//!   everything between the injected frequency and the AC power: the meter, the controller
//!   and the inverter. An ideal unit has `F = 1`.
//! * `G(jω)`: the Nordic system seen by the whole FCR volume,
//!   `G(s) = (ΔP_FCR / Δf_FCR) · f0 / (2·E_k·s + K_f·S_n·f0)` — dimensionless, the swing
//!   equation with load damping `K_f` (per Hz) on the system's kinetic energy `E_k`, scaled
//!   by the FCR volume per frequency deviation.
//! * Stability: `|1 + F·G| ≥ 0.43` (the Nyquist curve of `F·G` stays outside the circle of
//!   radius 0.43 around −1).
//! * Performance: `|0.95 · G / (1 + F·G)| ≤ |1 / D|`, `D(s) = 1 / (70·s + 1)`.

use crate::prequal::signal::ServiceUnderTest;

/// A complex number (only what the criteria need).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Complex {
    /// Real part.
    pub re: f64,
    /// Imaginary part.
    pub im: f64,
}

impl Complex {
    /// `re + j·im`.
    #[must_use]
    pub const fn new(re: f64, im: f64) -> Self {
        Self { re, im }
    }

    /// `|z|`.
    #[must_use]
    pub fn abs(self) -> f64 {
        self.re.hypot(self.im)
    }

    /// `arg z` (rad).
    #[must_use]
    pub fn arg(self) -> f64 {
        self.im.atan2(self.re)
    }

    /// `self · o`.
    #[must_use]
    pub fn times(self, o: Self) -> Self {
        Self::new(self.re * o.re - self.im * o.im, self.re * o.im + self.im * o.re)
    }

    /// `self / o` (infinite parts for `o = 0`).
    #[must_use]
    pub fn over(self, o: Self) -> Self {
        let d = o.re * o.re + o.im * o.im;
        Self::new((self.re * o.re + self.im * o.im) / d, (self.im * o.re - self.re * o.im) / d)
    }

    /// `self + o`.
    #[must_use]
    pub fn plus(self, o: Self) -> Self {
        Self::new(self.re + o.re, self.im + o.im)
    }

    /// `k · self`.
    #[must_use]
    pub fn scale(self, k: f64) -> Self {
        Self::new(self.re * k, self.im * k)
    }
}

/// The Nordic system parameters of one product (issue #13, the Nordic FCR requirements).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SystemParams {
    /// The FCR volume ΔP_FCR (MW): FCR-N 600, FCR-D 1450.
    pub volume_mw: f64,
    /// Its frequency deviation Δf_FCR (Hz): FCR-N 0.1, FCR-D 0.4.
    pub deviation_hz: f64,
    /// The system size S_n (MW): FCR-N 42 000, FCR-D 23 000.
    pub size_mw: f64,
    /// The kinetic energy E_k (MWs): FCR-N 190 000, FCR-D 120 000.
    pub kinetic_mws: f64,
    /// The load's frequency dependence K_f (per Hz): 0.01.
    pub k_f: f64,
    /// The nominal frequency f0 (Hz).
    pub f0: f64,
}

impl SystemParams {
    /// The parameters for `service` (`None` for FFR, which has no sine test).
    #[must_use]
    pub const fn nordic(service: ServiceUnderTest) -> Option<Self> {
        match service {
            ServiceUnderTest::FcrN => Some(Self {
                volume_mw: 600.0,
                deviation_hz: 0.1,
                size_mw: 42_000.0,
                kinetic_mws: 190_000.0,
                k_f: 0.01,
                f0: 50.0,
            }),
            ServiceUnderTest::FcrDUp | ServiceUnderTest::FcrDDown => Some(Self {
                volume_mw: 1450.0,
                deviation_hz: 0.4,
                size_mw: 23_000.0,
                kinetic_mws: 120_000.0,
                k_f: 0.01,
                f0: 50.0,
            }),
            ServiceUnderTest::Ffr => None,
        }
    }

    /// `G(jω)`.
    #[must_use]
    pub fn g(&self, omega: f64) -> Complex {
        let gain = self.volume_mw / self.deviation_hz * self.f0;
        Complex::new(gain, 0.0)
            .over(Complex::new(self.k_f * self.size_mw * self.f0, 2.0 * self.kinetic_mws * omega))
    }
}

/// The verdicts at one period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    /// The period (s).
    pub period_s: f64,
    /// `F(jω)` as measured.
    pub f: Complex,
    /// `|1 + F·G|` (stability: ≥ 0.43).
    pub stability_distance: f64,
    /// `|0.95·G / (1 + F·G)|` (performance: ≤ `performance_limit`).
    pub performance: f64,
    /// `|1 / D(jω)| = |70·jω + 1|`.
    pub performance_limit: f64,
}

/// The radius of the stability circle around −1.
pub const STABILITY_RADIUS: f64 = 0.43;

/// The criteria at `period_s` for a measured `f`.
#[must_use]
pub fn verdict(system: &SystemParams, period_s: f64, f: Complex) -> Verdict {
    let omega = core::f64::consts::TAU / period_s;
    let g = system.g(omega);
    let one_plus = Complex::new(1.0, 0.0).plus(f.times(g));
    Verdict {
        period_s,
        f,
        stability_distance: one_plus.abs(),
        performance: g.scale(0.95).over(one_plus).abs(),
        performance_limit: Complex::new(1.0, 70.0 * omega).abs(),
    }
}

/// The complex amplitude ratio `Y/X` at `period_s` of two equally sampled signals, from
/// their correlation with `cos` and `sin` over the samples given (whole periods for an
/// unbiased estimate). `None` without a usable input.
#[must_use]
pub fn ratio(times: &[f64], input: &[f64], output: &[f64], period_s: f64) -> Option<Complex> {
    let omega = core::f64::consts::TAU / period_s;
    let (mut x, mut y) = (Complex::new(0.0, 0.0), Complex::new(0.0, 0.0));
    let n = times.len().min(input.len()).min(output.len());
    #[allow(clippy::cast_precision_loss)] // a sample count
    let len = n as f64;
    if n == 0 {
        return None;
    }
    let mean = |v: &[f64]| v.iter().take(n).sum::<f64>() / len;
    let (mx, my) = (mean(input), mean(output));
    for ((t, a), b) in times.iter().zip(input).zip(output).take(n) {
        let (s, c) = (omega * t).sin_cos();
        // e^{−jωt} = cos − j·sin
        x = x.plus(Complex::new((a - mx) * c, -(a - mx) * s));
        y = y.plus(Complex::new((b - my) * c, -(b - my) * s));
    }
    if x.abs() <= f64::EPSILON {
        return None;
    }
    Some(y.over(x))
}
