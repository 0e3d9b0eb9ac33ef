//! A loadpoint on the simulated site: the loadpoint controller (`ems_control::loadpoint`)
//! drives the simulated EV and charger (`ems_devices::evse::sim`) through the safety wrapper
//! `SafeEvse`, on the simulated site's real PV (TMY3 irradiance) and household load (BDEW H25).
//!
//! The car is a load behind the site's grid meter: the meter the loadpoint reads is the site's
//! grid power plus the car's power. The house battery stays under the inverter's local control
//! (idle) in this loop, so every watt the car draws comes from PV or the grid, and the test can
//! attribute grid import to the car. This loop is the shell for the tests; the gateway's
//! `ems-runtime` loop does not run loadpoints yet.

use ems_control::loadpoint::{
    ChargeMode, DeciAmps as LpAmps, Loadpoint, LoadpointConfig, LoadpointConfigError, LoadpointInputs,
    LoadpointReason, PhaseBlock, Phases as LpPhases, VehicleStatus,
};
use ems_core::{Millis, Watts};
use ems_devices::evse::sim::{SimEv, SimEvse};
use ems_devices::evse::{
    DeciAmps, EvseCapabilities, EvseReading, EvseStatus, Phases, SafeEvse, SafeEvseConfig,
};
use ems_devices::sim::{SimError, SimSiteConfig, SimulatedSite};
use pollster::block_on;

/// What to simulate.
#[derive(Debug, Clone, Copy)]
pub struct LoadpointDayOptions {
    /// The site (PV, load, calendar); its battery stays idle.
    pub site: SimSiteConfig,
    /// The charger's capabilities.
    pub charger: EvseCapabilities,
    /// The charger's safety wrapper.
    pub evse: SafeEvseConfig,
    /// The vehicle, plugged in at the start.
    pub vehicle: SimEv,
    /// The phases the charger has switched at the start.
    pub initial_phases: Phases,
    /// The loadpoint.
    pub loadpoint: LoadpointConfig,
    /// The charge mode.
    pub mode: ChargeMode,
    /// The control cycle.
    pub step: Millis,
    /// How long.
    pub duration: Millis,
}

/// One cycle's record.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Time since start.
    pub t: Millis,
    /// Grid power at the meter, car included (`+` import).
    pub grid: Watts,
    /// The car's power.
    pub car: Watts,
    /// PV production.
    pub pv: Watts,
    /// The surplus the loadpoint saw.
    pub surplus: Watts,
    /// Charging enabled by the loadpoint.
    pub enabled: bool,
    /// The commanded current.
    pub current: LpAmps,
    /// The phases the charger reported.
    pub phases: Phases,
    /// The loadpoint's reason.
    pub reason: LoadpointReason,
    /// A blocked phase switch.
    pub phase_block: Option<PhaseBlock>,
}

/// The result of a run.
#[derive(Debug, Clone)]
pub struct LoadpointDay {
    /// One sample per cycle.
    pub samples: Vec<Sample>,
    /// Changes of the phases the charger reported.
    pub phase_switches: u32,
    /// Energy the car charged (Wh).
    pub car_energy_wh: f64,
    /// Commands or reads the wrapper refused or that failed.
    pub command_errors: u32,
}

/// A run that could not start.
#[derive(Debug, thiserror::Error)]
pub enum LoadpointDayError {
    /// The site config is invalid.
    #[error("site: {0}")]
    Site(#[from] SimError),
    /// The loadpoint config is invalid.
    #[error("{0}")]
    Loadpoint(#[from] LoadpointConfigError),
    /// The charger wrapper config is invalid.
    #[error("charger: {0}")]
    Evse(#[from] ems_devices::wrappers::ConfigError),
    /// A zero step.
    #[error("field 'step' = {0} must be > 0 ms")]
    Step(Millis),
}

fn status(s: EvseStatus) -> VehicleStatus {
    match s {
        EvseStatus::Unplugged => VehicleStatus::Unplugged,
        EvseStatus::Plugged => VehicleStatus::Plugged,
        EvseStatus::Charging => VehicleStatus::Charging,
        EvseStatus::Fault => VehicleStatus::Fault,
    }
}

fn to_lp(p: Phases) -> LpPhases {
    match p {
        Phases::One => LpPhases::One,
        Phases::Three => LpPhases::Three,
    }
}

fn from_lp(p: LpPhases) -> Phases {
    match p {
        LpPhases::One => Phases::One,
        LpPhases::Three => Phases::Three,
    }
}

/// The phases the vehicle draws on, from the measured phase currents (above 1 A).
fn drawing(r: &EvseReading) -> Option<LpPhases> {
    match r.current.iter().filter(|a| a.get() > 1.0).count() {
        0 => None,
        1 | 2 => Some(LpPhases::One),
        _ => Some(LpPhases::Three),
    }
}

/// Run a loadpoint on the simulated site.
///
/// # Errors
/// [`LoadpointDayError`] when a config is invalid.
pub fn run_loadpoint_day(opts: &LoadpointDayOptions) -> Result<LoadpointDay, LoadpointDayError> {
    if opts.step == Millis::ZERO {
        return Err(LoadpointDayError::Step(opts.step));
    }
    let mut site = SimulatedSite::new(opts.site)?;
    let mut charger = SimEvse::new(opts.charger);
    charger.plug(opts.vehicle);
    // The charger starts on the given phases (a fresh charger may switch while disabled).
    let _ = block_on(ems_devices::evse::Evse::set_phases(&mut charger, opts.initial_phases));
    let mut evse = SafeEvse::new(charger, opts.evse)?;
    let mut lp = Loadpoint::new(opts.loadpoint)?;
    let cycles = opts.duration.get() / opts.step.get();
    let mut samples = Vec::with_capacity(usize::try_from(cycles).unwrap_or(0));
    let mut enabled_written: Option<bool> = None;
    let mut last_phases: Option<Phases> = None;
    let mut day =
        LoadpointDay { samples: Vec::new(), phase_switches: 0, car_energy_wh: 0.0, command_errors: 0 };
    let mut now = Millis::ZERO;
    for _ in 0..cycles {
        now = now.plus(opts.step);
        site.advance(opts.step);
        evse.device_mut().advance(opts.step);
        let reading = match block_on(evse.poll(now)) {
            Ok(r) => r,
            Err(_) => {
                day.command_errors += 1;
                continue;
            }
        };
        if last_phases.is_some_and(|p| p != reading.phases) {
            day.phase_switches += 1;
        }
        last_phases = Some(reading.phases);
        let truth = site.truth();
        let grid = truth.grid_power + reading.power;
        let out = lp.step(
            now,
            &LoadpointInputs {
                mode: opts.mode,
                status: status(reading.status),
                grid_power: grid,
                charge_power: reading.power,
                battery_power: truth.battery_power,
                switched_phases: to_lp(reading.phases),
                drawing_phases: drawing(&reading),
            },
        );
        // Apply in order: disable, phases, enable, current.
        let phases = from_lp(out.phases);
        if (!out.enabled || phases != reading.phases) && enabled_written != Some(false) {
            day.command_errors += u32::from(block_on(evse.set_enabled(false)).is_err());
            enabled_written = Some(false);
        }
        if phases != reading.phases {
            day.command_errors += u32::from(block_on(evse.set_phases(phases)).is_err());
        }
        if out.enabled && enabled_written != Some(true) {
            day.command_errors += u32::from(block_on(evse.set_enabled(true)).is_err());
            enabled_written = Some(true);
        }
        let limit = DeciAmps::from_tenths(out.current.tenths()).unwrap_or(DeciAmps::ZERO);
        day.command_errors += u32::from(block_on(evse.command(now, limit)).is_err());
        day.car_energy_wh += f64::from(reading.power.energy_over(opts.step).get());
        samples.push(Sample {
            t: now,
            grid,
            car: reading.power,
            pv: truth.pv_power,
            surplus: out.surplus,
            enabled: out.enabled,
            current: out.current,
            phases: reading.phases,
            reason: out.reason,
            phase_block: out.phase_block,
        });
    }
    day.samples = samples;
    Ok(day)
}

impl LoadpointDay {
    /// The largest grid import attributable to the car over consecutive windows of `window`
    /// samples: `min(mean car power, mean grid import)` per window.
    #[must_use]
    pub fn worst_car_import(&self, window: usize) -> (Millis, f64) {
        let mut worst = (Millis::ZERO, 0.0);
        for chunk in self.samples.chunks(window.max(1)) {
            #[allow(clippy::cast_precision_loss)] // a window has at most a few thousand samples
            let n = chunk.len() as f64;
            let car = chunk.iter().map(|s| f64::from(s.car.get())).sum::<f64>() / n;
            let import = chunk.iter().map(|s| f64::from(s.grid.get().max(0.0))).sum::<f64>() / n;
            let caused = car.min(import);
            if caused > worst.1 {
                worst = (chunk.first().map_or(Millis::ZERO, |s| s.t), caused);
            }
        }
        worst
    }

    /// Times at which charging started (the car's power rose from zero).
    #[must_use]
    pub fn starts(&self) -> Vec<Millis> {
        self.samples
            .windows(2)
            .filter(|w| w[0].car == Watts::ZERO && w[1].car > Watts::ZERO)
            .map(|w| w[1].t)
            .collect()
    }

    /// Times at which charging stopped (the car's power fell to zero).
    #[must_use]
    pub fn stops(&self) -> Vec<Millis> {
        self.samples
            .windows(2)
            .filter(|w| w[0].car > Watts::ZERO && w[1].car == Watts::ZERO)
            .map(|w| w[1].t)
            .collect()
    }
}
