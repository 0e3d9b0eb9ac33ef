//! One test run: the signal → the simulated meter → a [`Snapshot`] → the real
//! [`Controller::step_with`] with the service under test → the simulated inverter, every
//! control cycle, recording what the evaluation and the logs need.

use crate::prequal::profile::Profile;
use crate::prequal::signal::{Sequence, SequenceKind, ServiceUnderTest};
use crate::prequal::sim::{Inverter, Meter, UnitModel};
use crate::{
    FcrD, FcrN, Ffr, FfrLevel, FfrParams, FfrSupport, FrequencyServices, LerConfig, ParamError, ParamSet,
};
use ems_control::{Controller, ControllerConfig, Inputs, ModeSetting};
use ems_core::snapshot::{
    BatterySignals, BmsAlarms, ContactorState, EStopInput, GridMode, GridSignals, InverterSignals,
    InverterState, ESTOP_MAX_AGE, FAST_MAX_AGE, SLOW_MAX_AGE,
};
use ems_core::{
    Amps, Hertz, Measurement, Millis, Percent, Snapshot, State, TransitionRequest, UnitError, Volts, Watts,
};
use ems_safety::SafetyConfig;

/// The simulated pack's DC voltage (V): a commercial battery string.
pub const PACK_VOLTAGE_V: f64 = 800.0;
/// The LER SOC window the services manage (%): 10–90 %, inside the safety monitor's default
/// SOC alarms (5 % / 95 %) and warnings (10 % / 95 %).
pub const LER_SOC_WINDOW: (f64, f64) = (10.0, 90.0);
/// When the test signal starts, in controller time (ms): after BOOT → IDLE → RUNNING.
const T0_MS: u64 = 1_000;

/// The frequency a run injects: a built-in sequence or a profile file.
// One signal per run, built once: boxing the inline sequence would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    /// A built-in sequence.
    Sequence(Sequence),
    /// A `--profile` file.
    Profile(Profile),
}

impl Signal {
    /// The frequency at `t` s.
    #[must_use]
    pub fn frequency_at(&self, t: f64) -> f64 {
        match self {
            Self::Sequence(s) => s.frequency_at(t),
            Self::Profile(p) => p.frequency_at(t),
        }
    }

    /// The length (s).
    #[must_use]
    pub fn duration_s(&self) -> f64 {
        match self {
            Self::Sequence(s) => s.duration_s(),
            Self::Profile(p) => p.duration_s(),
        }
    }

    /// What it tests.
    #[must_use]
    pub fn kind(&self) -> SequenceKind {
        match self {
            Self::Sequence(s) => s.kind,
            Self::Profile(_) => SequenceKind::Profile,
        }
    }

    /// Its name (`profile` for a file).
    #[must_use]
    pub fn name(&self) -> &str {
        match self {
            Self::Sequence(s) => s.name,
            Self::Profile(_) => "profile",
        }
    }
}

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunConfig {
    /// The service under test.
    pub service: ServiceUnderTest,
    /// The sold capacity C (W).
    pub capacity_w: f64,
    /// Measurement noise σ (mHz) added to the frequency before the meter's filter.
    pub noise_mhz: f64,
    /// The noise seed.
    pub seed: u64,
    /// The simulated unit.
    pub model: UnitModel,
    /// The FCR parameter set.
    pub params: ParamSet,
    /// The FFR level for a profile run (a sequence brings its own).
    pub ffr_level: FfrLevel,
    /// The initial SOC (%); `None`: the sequence's (50 % for a profile).
    pub initial_soc: Option<f64>,
}

impl RunConfig {
    /// A run of `service` at `capacity_w` with the default unit, the 2025 v1.1 set, no noise.
    #[must_use]
    pub fn new(service: ServiceUnderTest, capacity_w: f64) -> Self {
        Self {
            service,
            capacity_w,
            noise_mhz: 0.0,
            seed: 1,
            model: UnitModel::default(),
            params: ParamSet::nordic_2025_v1_1(),
            ffr_level: FfrLevel::Hz49_7,
            initial_soc: None,
        }
    }
}

/// The FFR parameters a run sells at `level`: the short support class, held for its 5 s
/// **plus** the level's activation time (so the *power* is held ≥ 5 s after full activation,
/// on an inverter with a dead time), deactivating at 18 %/s (inside the rule's 20 %/s).
#[must_use]
pub fn ffr_params(level: FfrLevel) -> FfrParams {
    FfrParams::nordic(level, FfrSupport::Short)
}

/// The FFR level of an activation frequency (49.7 / 49.6 / 49.5 Hz, nearest).
#[must_use]
pub fn ffr_level_of(level_hz: f64) -> FfrLevel {
    if level_hz > 49.65 {
        FfrLevel::Hz49_7
    } else if level_hz > 49.55 {
        FfrLevel::Hz49_6
    } else {
        FfrLevel::Hz49_5
    }
}

/// One control cycle of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Time since the signal started (s).
    pub t_s: f64,
    /// The injected (true) frequency (Hz).
    pub frequency_hz: f64,
    /// The meter's filtered, noisy frequency the controller saw (Hz).
    pub measured_hz: f64,
    /// The controller's command (W, `+` discharge).
    pub setpoint_w: f64,
    /// The simulated AC power (W, `+` discharge).
    pub power_w: f64,
    /// The SOC (0..=1).
    pub soc: f64,
    /// The service's activated power, its Δ (W).
    pub activated_w: f64,
    /// Whether the service is engaged (a good frequency, available).
    pub available: bool,
    /// NEM: −1 charging offset, 0 off, +1 discharging offset.
    pub nem: i8,
    /// AEM: −1 saving down-regulation room, 0 off, +1 saving up-regulation energy.
    pub aem: i8,
    /// The envelope's charge limit as a signed power (W, ≤ 0).
    pub pmin_w: f64,
    /// The envelope's discharge limit (W, ≥ 0).
    pub pmax_w: f64,
    /// The controller was RUNNING.
    pub running: bool,
}

/// A finished run.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// What was run.
    pub config: RunConfig,
    /// The unit's rated power (W).
    pub rated_w: f64,
    /// The battery's energy (Wh).
    pub energy_wh: f64,
    /// The FFR parameters used (FFR runs).
    pub ffr: Option<FfrParams>,
    /// Every cycle.
    pub samples: Vec<Sample>,
}

impl Run {
    /// The remaining FCR endurance up (min) at SOC `soc` (0..=1): energy above the LER
    /// window's bottom over C.
    #[must_use]
    pub fn endurance_up_min(&self, soc: f64) -> f64 {
        (soc * 100.0 - LER_SOC_WINDOW.0).max(0.0) / 100.0 * self.energy_wh / self.config.capacity_w * 60.0
    }
}

/// Why a run could not start.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RunError {
    /// `--capacity-w` is not a positive finite power.
    #[error("capacity_w = {0} W must be a finite power > 0 W")]
    Capacity(f64),
    /// `--noise-mhz` is not a finite σ ≥ 0.
    #[error("noise_mhz = {0} must be a finite sigma >= 0 mHz")]
    Noise(f64),
    /// The initial SOC is outside 0..=100 %.
    #[error("initial_soc = {0} % must be within 0..=100 %")]
    Soc(f64),
    /// A service refused its parameters.
    #[error("service: {0}")]
    Service(#[from] ParamError),
    /// A value did not fit its unit.
    #[error("unit: {0}")]
    Unit(#[from] UnitError),
    /// The controller refused its configuration.
    #[error("controller: {0}")]
    Controller(#[from] ems_control::ConfigError),
    /// The controller did not reach RUNNING before the test.
    #[error("the controller is {0:?} after start-up, not RUNNING")]
    NotRunning(State),
}

// f64 simulation values into the f32 unit types: narrowing is the point (W, Hz, %).
#[allow(clippy::cast_possible_truncation)]
const fn f32_of(x: f64) -> f32 {
    x as f32
}

fn snapshot(now: Millis, f_hz: f64, soc: f64, power_w: f64, rated_w: f64) -> Result<Snapshot, UnitError> {
    fn at<T: Copy>(v: T, now: Millis, age: Millis) -> Measurement<T> {
        Measurement::good(v, now, age)
    }
    macro_rules! fast {
        ($v:expr) => {
            at($v, now, FAST_MAX_AGE)
        };
    }
    macro_rules! slow {
        ($v:expr) => {
            at($v, now, SLOW_MAX_AGE)
        };
    }
    let rated = Watts::try_new(f32_of(rated_w))?;
    Ok(Snapshot {
        battery: BatterySignals {
            soc: slow!(Percent::try_new(f32_of((soc * 100.0).clamp(0.0, 100.0)))?),
            pack_voltage: fast!(Volts::try_new(f32_of(PACK_VOLTAGE_V))?),
            pack_current: fast!(Amps::try_new(f32_of(power_w / PACK_VOLTAGE_V))?),
            cell_voltage_min: fast!(ems_core::volts!(3.29)),
            cell_voltage_max: fast!(ems_core::volts!(3.31)),
            cell_temp_min: slow!(ems_core::celsius!(24.0)),
            cell_temp_max: slow!(ems_core::celsius!(26.0)),
            bms_charge_limit: slow!(rated),
            bms_discharge_limit: slow!(rated),
            bms_alarms: slow!(BmsAlarms::NONE),
            bms_ready: slow!(true),
        },
        inverter: InverterSignals {
            active_power: fast!(Watts::try_new(f32_of(power_w))?),
            state: slow!(InverterState::Running),
            rated_power: rated,
            temperature: slow!(ems_core::celsius!(35.0)),
            grid_mode: slow!(GridMode::GridFollowing),
        },
        grid: GridSignals {
            // A battery-only connection: the grid takes what the battery gives.
            active_power: fast!(Watts::try_new(f32_of(-power_w))?),
            voltage: fast!(ems_core::volts!(230.0)),
            frequency: fast!(Hertz::try_new(f32_of(f_hz))?),
            tie: None,
        },
        pv_power: fast!(Watts::ZERO),
        contactor: fast!(ContactorState::Closed),
        precharge_done: fast!(true),
        estop: Measurement::good(EStopInput::Released, now, ESTOP_MAX_AGE),
    })
}

fn services(
    config: &RunConfig,
    signal: &Signal,
    energy_wh: f64,
) -> Result<(FrequencyServices, Option<FfrParams>), RunError> {
    let c = Watts::try_new(f32_of(config.capacity_w))?;
    let ler = LerConfig::try_new(
        ems_core::WattHours::try_new(f32_of(energy_wh))?,
        Percent::try_new(f32_of(LER_SOC_WINDOW.0))?,
        Percent::try_new(f32_of(LER_SOC_WINDOW.1))?,
    )?;
    let set = FrequencyServices::new(Some(ler));
    Ok(match config.service {
        ServiceUnderTest::FcrN => (set.with_fcr_n(FcrN::try_new(c, config.params)?), None),
        ServiceUnderTest::FcrDUp => (set.with_fcr_d(FcrD::up(c, config.params)?), None),
        ServiceUnderTest::FcrDDown => (set.with_fcr_d(FcrD::down(c, config.params)?), None),
        ServiceUnderTest::Ffr => {
            let level = match signal.kind() {
                SequenceKind::Ffr { level_hz } => ffr_level_of(level_hz),
                SequenceKind::Steps
                | SequenceKind::Endurance
                | SequenceKind::FcrDRamp
                | SequenceKind::Sine
                | SequenceKind::LerNem
                | SequenceKind::LerAem
                | SequenceKind::Profile => config.ffr_level,
            };
            let p = ffr_params(level);
            (set.with_ffr(Ffr::try_new(c, p)?), Some(p))
        }
    })
}

fn controller(rated_w: f64, energy_wh: f64, cycle: Millis) -> Result<Controller, RunError> {
    // Pack currents with 10 % headroom over the rating, so the inverter rating binds first.
    let amps = Amps::try_new(f32_of(rated_w / PACK_VOLTAGE_V * 1.1))?;
    let mut safety = SafetyConfig::for_site(amps, amps, None, None);
    // The simulated BMS reports constant limits by design; the frozen-reading cross-check is
    // for real BMSs.
    safety.frozen_bms = None;
    let config = ControllerConfig {
        safety,
        mode: ModeSetting::Passive,
        cycle,
        capacity: Some(ems_core::WattHours::try_new(f32_of(energy_wh))?),
        ..ControllerConfig::default()
    };
    Ok(Controller::new(config)?)
}

/// Run `signal` against the simulated unit, through the real controller.
///
/// # Errors
/// [`RunError`] for a capacity, noise or SOC out of range, parameters a service refuses, or a
/// controller that does not reach RUNNING.
pub fn run(config: &RunConfig, signal: &Signal) -> Result<Run, RunError> {
    let c = config.capacity_w;
    if !c.is_finite() || c <= 0.0 {
        return Err(RunError::Capacity(c));
    }
    if !config.noise_mhz.is_finite() || config.noise_mhz < 0.0 {
        return Err(RunError::Noise(config.noise_mhz));
    }
    let soc0 = config.initial_soc.unwrap_or(match signal {
        Signal::Sequence(s) => s.initial_soc,
        Signal::Profile(_) => 50.0,
    });
    if !soc0.is_finite() || !(0.0..=100.0).contains(&soc0) {
        return Err(RunError::Soc(soc0));
    }
    let m = config.model;
    let rated_w = c * m.rated_per_capacity;
    let energy_wh = c * m.energy_hours;
    let (mut set, ffr) = services(config, signal, energy_wh)?;
    // The cycle in whole ms (20 Hz: 50 ms).
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let cycle_ms = (m.cycle_s * 1000.0).round().max(1.0) as u64;
    let mut ctl = controller(rated_w, energy_wh, Millis::new(cycle_ms))?;
    let mut meter = Meter::new(config.noise_mhz / 1000.0, m.filter_tau_s, m.cycle_s, config.seed);
    let mut inverter = Inverter::new(&m, rated_w, energy_wh, soc0 / 100.0);
    let f0 = signal.frequency_at(0.0);
    for (i, request) in [TransitionRequest::BootComplete, TransitionRequest::Start].into_iter().enumerate() {
        let now = Millis::new(100_u64.saturating_mul(u64::try_from(i).unwrap_or(0).saturating_add(1)));
        let snap = snapshot(now, f0, inverter.soc(), 0.0, rated_w)?;
        let _ = ctl.step_with(
            now.get(),
            &snap,
            &Inputs { request: Some(request), ..Inputs::default() },
            &mut set,
        );
    }
    if ctl.state() != State::Running {
        return Err(RunError::NotRunning(ctl.state()));
    }
    let duration = signal.duration_s();
    let dt = f64::from(u32::try_from(cycle_ms).unwrap_or(50)) / 1000.0;
    // Whole cycles over the signal (and its last instant).
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let steps = (duration / dt).floor().max(0.0) as u64;
    let mut samples = Vec::with_capacity(usize::try_from(steps.saturating_add(1)).unwrap_or(0));
    for k in 0..=steps {
        // k·dt is exact enough for any run length (< 2^53 ms).
        #[allow(clippy::cast_precision_loss)]
        let t = k as f64 * dt;
        let now = Millis::new(T0_MS.saturating_add(k.saturating_mul(cycle_ms)));
        let f = signal.frequency_at(t);
        let fm = meter.sample(f);
        let snap = snapshot(now, fm, inverter.soc(), inverter.power_w(), rated_w)?;
        let out = ctl.step_with(now.get(), &snap, &Inputs::default(), &mut set);
        let setpoint = f64::from(out.command.setpoint().get());
        let power = inverter.step(setpoint);
        let status = set.status();
        let mine = match config.service {
            ServiceUnderTest::FcrN => status.fcr_n,
            ServiceUnderTest::FcrDUp => status.fcr_d_up,
            ServiceUnderTest::FcrDDown => status.fcr_d_down,
            ServiceUnderTest::Ffr => status.ffr,
        };
        let (nem, aem) = mine.map_or((0, 0), |s| crate::prequal::svk::nem_aem_codes(&s.ler));
        samples.push(Sample {
            t_s: t,
            frequency_hz: f,
            measured_hz: fm,
            setpoint_w: setpoint,
            power_w: power,
            soc: inverter.soc(),
            activated_w: mine.map_or(0.0, |s| f64::from(s.delta.get())),
            available: mine.is_some_and(|s| s.frequency.is_some()) && out.state == State::Running,
            nem,
            aem,
            pmin_w: -f64::from(out.envelope.max_charge().get()),
            pmax_w: f64::from(out.envelope.max_discharge().get()),
            running: out.state == State::Running,
        });
    }
    Ok(Run { config: config.clone(), rated_w, energy_wh, ffr, samples })
}
