//! The whole simulated site: battery + BMS, inverter, DC power path (pre-charge and main
//! relays, DC link), PV, household load, grid meter and E-stop, stepped together, with fault
//! injection and energy counters.

use super::battery::{SimBattery, SimPack};
use super::calendar::{Calendar, DAY_MS, YEAR_DAYS};
use super::parts::{EStopButton, InverterModel, PowerPath, PvArray, SimGridMeter, SimLoad};
use super::physics::StepCoeffs;
use crate::data::{self, DataError};
use crate::traits::ControlSource;
use ems_core::event::Signal;
use ems_core::snapshot::{
    BmsAlarms, ContactorState, EStopInput, InverterState, ESTOP_MAX_AGE, FAST_MAX_AGE, SLOW_MAX_AGE,
};
use ems_core::{
    Amps, Celsius, ContactorCommand, Measurement, Millis, Percent, Snapshot, Volts, WattHours, Watts,
};

/// Longest internal sub-step: `advance` splits longer intervals so the explicit parts of the
/// models (ramp, coulomb counting limits) stay accurate. Sub-steps also end at the inverter's
/// own deadlines (revert timer, delayed set-point), so those act at their exact instant.
const MAX_SUBSTEP_MS: u64 = 1_000;

/// Where the battery and inverter stand, thermally.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Ambient {
    /// Installed indoors at a constant temperature.
    Indoor(Celsius),
    /// Installed outdoors: the TMY3 dry-bulb temperature of the simulated hour.
    Outdoor,
}

/// Configuration of a [`SimulatedSite`]. `Default` gives a 10 kWh / 5 kW battery, 6 kWp PV and a
/// 4000 kWh/a household starting on 1 June at midnight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimSiteConfig {
    /// Battery usable capacity at nominal voltage (default 10 kWh).
    pub battery_capacity: WattHours,
    /// Inverter rating, both directions (default 5 kW).
    pub inverter_rating: Watts,
    /// Inverter ramp rate in watts per second (default 10 kW/s).
    pub inverter_ramp_per_s: Watts,
    /// Inverter one-way efficiency, AC vs DC (default 96 %).
    pub inverter_efficiency: Percent,
    /// PV peak power (default 6 kWp).
    pub pv_peak: Watts,
    /// PV system efficiency (default 90 %).
    pub pv_system_efficiency: Percent,
    /// Annual household consumption (default 4000 kWh).
    pub annual_load: WattHours,
    /// Standard deviation of the multiplicative load noise (default 10 %).
    pub load_noise: Percent,
    /// Day of the (non-leap) year at start, 1..=365 (default 152 = 1 June).
    pub start_day_of_year: u16,
    /// Local standard time of day at start (default midnight).
    pub start_time_of_day: Millis,
    /// Seed of the noise generator (default 1): same seed, same run.
    pub seed: u64,
    /// Ambient of battery and inverter (default indoor 20 °C).
    pub ambient: Ambient,
    /// Initial state of charge (default 50 %).
    pub initial_soc: Percent,
    /// Small seeded noise on grid voltage and frequency (default on).
    pub grid_noise: bool,
    /// The inverter stores set-points in non-volatile memory, as reported by
    /// `Inverter::capabilities` (default false).
    pub inverter_setpoint_in_flash: bool,
    /// The pack's chemistry and cells in series (default 16 LFP cells, 51.2 V).
    pub pack: SimPack,
}

impl Default for SimSiteConfig {
    fn default() -> Self {
        Self {
            battery_capacity: ems_core::watt_hours!(10_000.0),
            inverter_rating: ems_core::watts!(5_000.0),
            inverter_ramp_per_s: ems_core::watts!(10_000.0),
            inverter_efficiency: ems_core::percent!(96.0),
            pv_peak: ems_core::watts!(6_000.0),
            pv_system_efficiency: ems_core::percent!(90.0),
            annual_load: ems_core::watt_hours!(4_000_000.0),
            load_noise: ems_core::percent!(10.0),
            start_day_of_year: 152,
            start_time_of_day: Millis::ZERO,
            seed: 1,
            ambient: Ambient::Indoor(ems_core::celsius!(20.0)),
            initial_soc: ems_core::percent!(50.0),
            grid_noise: true,
            inverter_setpoint_in_flash: false,
            pack: SimPack::default(),
        }
    }
}

/// Why a site could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimError {
    /// A configuration field is out of range.
    #[error("invalid simulation config: {field} = {value} ({expected})")]
    InvalidConfig {
        /// The field name in [`SimSiteConfig`].
        field: &'static str,
        /// The rejected value, formatted with its unit.
        value: String,
        /// What is accepted.
        expected: &'static str,
    },
    /// The embedded reference data did not parse.
    #[error("embedded data: {0}")]
    Data(#[from] DataError),
}

fn check(
    ok: bool,
    field: &'static str,
    value: impl core::fmt::Display,
    expected: &'static str,
) -> Result<(), SimError> {
    if ok {
        Ok(())
    } else {
        Err(SimError::InvalidConfig { field, value: value.to_string(), expected })
    }
}

impl SimSiteConfig {
    /// Check every field.
    ///
    /// # Errors
    /// [`SimError::InvalidConfig`] naming the first bad field and its value.
    pub fn validate(&self) -> Result<(), SimError> {
        let cap = self.battery_capacity.get();
        check((100.0..=10.0e6).contains(&cap), "battery_capacity", self.battery_capacity, "100 Wh..=10 MWh")?;
        let cells = self.pack.cells_in_series;
        check((1..=1000).contains(&cells), "pack.cells_in_series", cells, "1..=1000")?;
        let r = self.inverter_rating.get();
        check((100.0..=10.0e6).contains(&r), "inverter_rating", self.inverter_rating, "100 W..=10 MW")?;
        check(
            self.inverter_ramp_per_s.get() > 0.0,
            "inverter_ramp_per_s",
            self.inverter_ramp_per_s,
            "> 0 W/s",
        )?;
        let eff = self.inverter_efficiency.get();
        check((50.0..=100.0).contains(&eff), "inverter_efficiency", self.inverter_efficiency, "50..=100 %")?;
        check(self.pv_peak.get() >= 0.0, "pv_peak", self.pv_peak, ">= 0 W")?;
        check(self.pv_peak.get() <= 10.0e6, "pv_peak", self.pv_peak, "<= 10 MW")?;
        let pe = self.pv_system_efficiency.get();
        check(pe > 0.0, "pv_system_efficiency", self.pv_system_efficiency, "> 0 %")?;
        let al = self.annual_load.get();
        check((0.0..=1.0e10).contains(&al), "annual_load", self.annual_load, "0..=10 GWh")?;
        check(self.load_noise.get() <= 50.0, "load_noise", self.load_noise, "0..=50 %")?;
        check(
            (1..=365).contains(&self.start_day_of_year),
            "start_day_of_year",
            self.start_day_of_year,
            "1..=365",
        )?;
        check(
            self.start_time_of_day.get() < DAY_MS,
            "start_time_of_day",
            self.start_time_of_day,
            "< 86400000 ms",
        )?;
        if let Ambient::Indoor(t) = self.ambient {
            check((-40.0..=60.0).contains(&t.get()), "ambient", t, "-40..=60 °C indoors")?;
        }
        Ok(())
    }
}

/// An injectable fault, for tests and soak runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SimFault {
    /// Press the E-stop.
    EStopPressed,
    /// Release the E-stop.
    EStopReleased,
    /// Extra heat into the pack (a failing cell, a blocked fan), until cleared.
    CellHeating {
        /// Heat flow.
        watts: Watts,
    },
    /// The BMS reports these alarms (in addition to its own), until cleared; it is not ready.
    BmsAlarm(BmsAlarms),
    /// The inverter faults: zero power, state `Fault`, until cleared.
    InverterFault,
    /// The reading of `signal` is lost for `for_`: `fill_snapshot` marks it invalid and the
    /// device handle that reads it times out. The physics are unaffected.
    SensorDropout {
        /// Which signal.
        signal: Signal,
        /// For how long (simulated time from now).
        for_: Millis,
    },
    /// One cell drifts `volts` above the others (physically: it shows in the truth too).
    CellImbalance {
        /// Extra voltage of the highest cell.
        volts: Volts,
    },
    /// The main contact welds: once closed (or if closed now) it stays closed, and its
    /// feedback says closed, when the coil is de-energised.
    ContactorWeld,
    /// The main contact does not close when its coil is energised (feedback stays open).
    ContactorStuckOpen,
    /// The pre-charge resistor is open: the DC link does not charge through the pre-charge
    /// relay (it keeps bleeding down).
    PrechargeResistorOpen,
    /// The inverter accepts set-point writes and applies none: the read-back set-point stays
    /// at the old value.
    InverterIgnoresSetpoint,
    /// The inverter applies each written set-point only `by` after the write (writes queue,
    /// up to [`DELAY_QUEUE`](super::DELAY_QUEUE)).
    InverterDelay {
        /// Delay between a write and its effect.
        by: Millis,
    },
    /// Internal heat in the pack that starts at `initial_watts` and doubles every `doubling`
    /// (capped at 1 MW): a runaway-like temperature rise, until cleared.
    CellRunaway {
        /// Heat flow at injection.
        initial_watts: Watts,
        /// Doubling time of the heat flow (at least 1 ms).
        doubling: Millis,
    },
    /// Clear every injected fault, including a pressed E-stop.
    Clear,
}

/// True physical values, for checking violations (not what the sensors report).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SiteTruth {
    /// State of charge.
    pub soc: Percent,
    /// Pack terminal voltage.
    pub pack_voltage: Volts,
    /// Pack current, `+` discharge.
    pub pack_current: Amps,
    /// Lowest cell voltage.
    pub cell_voltage_min: Volts,
    /// Highest cell voltage.
    pub cell_voltage_max: Volts,
    /// Coolest cell.
    pub cell_temp_min: Celsius,
    /// Warmest cell.
    pub cell_temp_max: Celsius,
    /// Battery inverter AC power, `+` discharge / `−` charge.
    pub battery_power: Watts,
    /// Battery DC power, `+` discharge.
    pub battery_dc_power: Watts,
    /// Grid power, `+` import / `−` export.
    pub grid_power: Watts,
    /// PV production.
    pub pv_power: Watts,
    /// Household load.
    pub load_power: Watts,
    /// Inverter heat-sink temperature.
    pub inverter_temp: Celsius,
    /// Inverter state.
    pub inverter_state: InverterState,
    /// Contactor state from the relay contacts (not the coils).
    pub contactor: ContactorState,
    /// Pre-charge relay contact closed.
    pub precharge_relay: bool,
    /// Main relay contact closed.
    pub main_relay: bool,
    /// DC-link voltage.
    pub dc_link_voltage: Volts,
    /// Closings of the main relay onto a DC link more than 10 % away from the pack voltage
    /// (a hard-limit violation for the test harness).
    pub inrush_events: u32,
    /// Who controls the inverter set-point.
    pub control: ControlSource,
    /// The set-point the inverter applies (0 W under local control).
    pub inverter_setpoint: Watts,
    /// Set-point writes that reached the inverter through its device handle.
    pub setpoint_writes: u64,
    /// Settings writes that reached the inverter through its device handle.
    pub settings_writes: u64,
    /// BMS alarm resets received through its device handle.
    pub bms_alarm_resets: u32,
    /// E-stop input.
    pub estop: EStopInput,
    /// BMS charge limit as the BMS computes it.
    pub bms_charge_limit: Watts,
    /// BMS discharge limit as the BMS computes it.
    pub bms_discharge_limit: Watts,
    /// BMS alarms (own and injected).
    pub bms_alarms: BmsAlarms,
}

/// Energy counters since start, for summaries.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct EnergyCounters {
    /// PV energy produced.
    pub pv_produced: WattHours,
    /// Household energy consumed.
    pub load_consumed: WattHours,
    /// Energy imported from the grid.
    pub grid_import: WattHours,
    /// Energy exported to the grid.
    pub grid_export: WattHours,
    /// AC energy into the battery inverter (charging).
    pub battery_charge: WattHours,
    /// AC energy out of the battery inverter (discharging).
    pub battery_discharge: WattHours,
}

#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    pv: f64,
    load: f64,
    import: f64,
    export: f64,
    charge: f64,
    discharge: f64,
}

/// The simulated site. Build with [`SimulatedSite::new`], then per cycle: [`Self::apply`] the
/// controller's command, [`Self::advance`] the physics, [`Self::fill_snapshot`] for the next
/// cycle.
///
/// [`Self::apply`] is a convenience *ideal device layer*: it takes remote control of the
/// inverter, writes the set-point and sequences the pre-charge and main relays itself. Real
/// control goes through one device handle per device (wrap the site in a
/// [`SharedSite`](super::SharedSite) and call [`SharedSite::devices`](super::SharedSite::devices));
/// driving a relay through its handle switches the automatic sequence off until the next
/// `apply`.
#[derive(Debug, Clone)]
pub struct SimulatedSite {
    config: SimSiteConfig,
    pub(crate) battery: SimBattery,
    pub(crate) inverter: InverterModel,
    pub(crate) path: PowerPath,
    pub(crate) pv: PvArray,
    pub(crate) load: SimLoad,
    pub(crate) grid: SimGridMeter,
    pub(crate) estop: EStopButton,
    rng: fastrand::Rng,
    setpoint: f64,
    pub(crate) contactor_cmd: Option<bool>,
    pub(crate) setpoint_writes: u64,
    pub(crate) settings_writes: u64,
    pub(crate) bms_alarm_resets: u32,
    start_ms: u64,
    elapsed_ms: u64,
    coeffs: StepCoeffs,
    cal_day: u64,
    cal: Calendar,
    dropout_until: [u64; Signal::ALL.len()],
    dropout_latest: u64,
    counters: Counters,
}

pub(crate) const fn signal_index(s: Signal) -> usize {
    match s {
        Signal::Soc => 0,
        Signal::PackVoltage => 1,
        Signal::PackCurrent => 2,
        Signal::CellVoltage => 3,
        Signal::CellTemperature => 4,
        Signal::BmsLimits => 5,
        Signal::BmsAlarms => 6,
        Signal::BmsReady => 7,
        Signal::InverterPower => 8,
        Signal::InverterState => 9,
        Signal::InverterTemperature => 10,
        Signal::GridPower => 11,
        Signal::GridVoltageFrequency => 12,
        Signal::PvPower => 13,
        Signal::Contactor => 14,
        Signal::Precharge => 15,
        Signal::EStop => 16,
    }
}

fn invalidate(s: &mut Snapshot, signal: Signal) {
    match signal {
        Signal::Soc => s.battery.soc.invalidate(),
        Signal::PackVoltage => s.battery.pack_voltage.invalidate(),
        Signal::PackCurrent => s.battery.pack_current.invalidate(),
        Signal::CellVoltage => {
            s.battery.cell_voltage_min.invalidate();
            s.battery.cell_voltage_max.invalidate();
        }
        Signal::CellTemperature => {
            s.battery.cell_temp_min.invalidate();
            s.battery.cell_temp_max.invalidate();
        }
        Signal::BmsLimits => {
            s.battery.bms_charge_limit.invalidate();
            s.battery.bms_discharge_limit.invalidate();
        }
        Signal::BmsAlarms => s.battery.bms_alarms.invalidate(),
        Signal::BmsReady => s.battery.bms_ready.invalidate(),
        Signal::InverterPower => s.inverter.active_power.invalidate(),
        Signal::InverterState => s.inverter.state.invalidate(),
        Signal::InverterTemperature => s.inverter.temperature.invalidate(),
        Signal::GridPower => s.grid.active_power.invalidate(),
        Signal::GridVoltageFrequency => {
            s.grid.voltage.invalidate();
            s.grid.frequency.invalidate();
        }
        Signal::PvPower => s.pv_power.invalidate(),
        Signal::Contactor => s.contactor.invalidate(),
        Signal::Precharge => s.precharge_done.invalidate(),
        Signal::EStop => s.estop.invalidate(),
    }
}

impl SimulatedSite {
    /// Build a site; the battery and inverter start at the ambient temperature, both relays
    /// open with the DC link discharged, the inverter in standby under local control with a
    /// zero set-point. Signals are computed for the start instant.
    ///
    /// # Errors
    /// [`SimError::InvalidConfig`] for a bad field, [`SimError::Data`] if the embedded data do not
    /// parse.
    pub fn new(config: SimSiteConfig) -> Result<Self, SimError> {
        config.validate()?;
        let weather = data::tmy3_greensboro()?;
        let profile = data::bdew_h25()?;
        let start_ms = u64::from(config.start_day_of_year - 1) * DAY_MS + config.start_time_of_day.get();
        let mut pv = PvArray::new(config.pv_peak, config.pv_system_efficiency, weather);
        pv.step(crate::narrow::f64_of_u64(start_ms) / 3.6e6);
        let ambient = match config.ambient {
            Ambient::Indoor(t) => t,
            Ambient::Outdoor => pv.air_temperature(),
        };
        let cal_day = start_ms / DAY_MS;
        let battery =
            SimBattery::with_pack(config.pack, config.battery_capacity, config.initial_soc, ambient);
        let path = PowerPath::new(battery.pack_voltage());
        let mut site = Self {
            battery,
            inverter: InverterModel::new(
                config.inverter_rating,
                config.inverter_ramp_per_s,
                config.inverter_efficiency,
                ambient,
            ),
            path,
            pv,
            load: SimLoad::new(config.annual_load, config.load_noise, profile),
            grid: SimGridMeter::new(config.grid_noise),
            estop: EStopButton::default(),
            rng: fastrand::Rng::with_seed(config.seed),
            setpoint: 0.0,
            contactor_cmd: None,
            setpoint_writes: 0,
            settings_writes: 0,
            bms_alarm_resets: 0,
            start_ms,
            elapsed_ms: 0,
            coeffs: StepCoeffs::new(Millis::new(MAX_SUBSTEP_MS)),
            cal_day,
            cal: Calendar::for_day(cal_day),
            dropout_until: [0; Signal::ALL.len()],
            dropout_latest: 0,
            counters: Counters::default(),
            config,
        };
        site.cal.time_of_day = Millis::new(start_ms % DAY_MS);
        let k = site.coeffs;
        site.load.step(&site.cal, cal_day, &mut site.rng, &k);
        site.grid.step(
            f64::from(site.load.power().get()),
            f64::from(site.pv.power().get()),
            0.0,
            &mut site.rng,
            &k,
        );
        Ok(site)
    }

    /// The configuration the site was built with.
    #[must_use]
    pub fn config(&self) -> &SimSiteConfig {
        &self.config
    }

    /// The ideal device layer: take the command for the next interval. The inverter is put
    /// under remote control (its revert timer left as it is) and the AC set-point (`+`
    /// discharge), clamped to the rating, is written to it — through the injected inverter
    /// faults, but not counted in [`SiteTruth::setpoint_writes`]. `Open` de-energises both
    /// relays at the start of the next sub-step; `Close` runs the pre-charge sequence every
    /// sub-step (pre-charge relay until the DC link is within 5 % of the pack voltage, then
    /// the main relay and the pre-charge relay off); `Hold` leaves the coils as they are.
    ///
    /// Real control goes through the device handles of a [`SharedSite`](super::SharedSite).
    /// (The plant takes a set-point and a contactor command as a device would receive them;
    /// it is the physics, not the EMS, so it does not take the EMS's `Command`.)
    pub fn apply(&mut self, setpoint: Watts, contactor: ContactorCommand) {
        let rating = f64::from(self.inverter.rating().get());
        self.setpoint = f64::from(setpoint.get()).clamp(-rating, rating);
        self.inverter.take_control();
        self.inverter.write(self.setpoint, self.elapsed_ms);
        self.contactor_cmd = match contactor {
            ContactorCommand::Open => Some(false),
            ContactorCommand::Close => Some(true),
            ContactorCommand::Hold => None,
        };
    }

    /// Advance the physics by `dt`, in sub-steps of at most 1 s. Any `dt` works; steps of a
    /// constant length take the fast path (the per-`dt` coefficients are cached).
    pub fn advance(&mut self, dt: Millis) {
        let mut remaining = dt.get();
        while remaining > 0 {
            let mut h = remaining.min(MAX_SUBSTEP_MS);
            if let Some(at) = self.inverter.next_event() {
                if at > self.elapsed_ms {
                    h = h.min(at - self.elapsed_ms);
                }
            }
            self.substep(h);
            remaining -= h;
        }
    }

    fn substep(&mut self, h: u64) {
        if self.coeffs.dt_ms != h {
            self.coeffs = StepCoeffs::new(Millis::new(h));
        }
        let k = self.coeffs;
        if let Some(close) = self.contactor_cmd {
            self.path.sequence(close);
        }
        self.path.update_contacts(f64::from(self.battery.pack_voltage().get()));
        let connected = self.path.connected();

        self.elapsed_ms = self.elapsed_ms.saturating_add(h);
        let clock = self.start_ms.saturating_add(self.elapsed_ms);
        let day = clock / DAY_MS;
        let ms_of_day = clock % DAY_MS;
        if day != self.cal_day {
            self.cal_day = day;
            self.cal = Calendar::for_day(day);
        }
        self.cal.time_of_day = Millis::new(ms_of_day);
        let ms_of_year = (day % YEAR_DAYS) * DAY_MS + ms_of_day;

        self.pv.step(crate::narrow::f64_of_u64(ms_of_year) / 3.6e6);
        let ambient = match self.config.ambient {
            Ambient::Indoor(t) => f64::from(t.get()),
            Ambient::Outdoor => f64::from(self.pv.air_temperature().get()),
        };
        self.inverter.step(connected, &mut self.battery, ambient, &k);
        self.inverter.tick(self.elapsed_ms);
        self.load.step(&self.cal, day, &mut self.rng, &k);
        let (load, pv, bat) = (
            f64::from(self.load.power().get()),
            f64::from(self.pv.power().get()),
            f64::from(self.inverter.power().get()),
        );
        self.grid.step(load, pv, bat, &mut self.rng, &k);
        self.path.step(f64::from(self.battery.pack_voltage().get()), &k);

        let c = &mut self.counters;
        let grid = load - pv - bat;
        c.pv += pv * k.dt_h;
        c.load += load * k.dt_h;
        if grid > 0.0 {
            c.import += grid * k.dt_h;
        } else {
            c.export -= grid * k.dt_h;
        }
        if bat > 0.0 {
            c.discharge += bat * k.dt_h;
        } else {
            c.charge -= bat * k.dt_h;
        }
    }

    /// Write every signal as a good measurement taken at `now` (default max ages from
    /// `ems_core::snapshot`), then mark signals under an active [`SimFault::SensorDropout`]
    /// invalid. Allocation-free.
    pub fn fill_snapshot(&self, snapshot: &mut Snapshot, now: Millis) {
        let (f, s) = (FAST_MAX_AGE, SLOW_MAX_AGE);
        let b = &self.battery;
        let bat = &mut snapshot.battery;
        bat.soc = Measurement::good(b.soc(), now, s);
        bat.pack_voltage = Measurement::good(b.pack_voltage(), now, f);
        bat.pack_current = Measurement::good(b.current(), now, f);
        bat.cell_voltage_min = Measurement::good(b.cell_voltage_min(), now, f);
        bat.cell_voltage_max = Measurement::good(b.cell_voltage_max(), now, f);
        bat.cell_temp_min = Measurement::good(b.cell_temp_min(), now, s);
        bat.cell_temp_max = Measurement::good(b.cell_temp_max(), now, s);
        bat.bms_charge_limit = Measurement::good(b.charge_limit(), now, s);
        bat.bms_discharge_limit = Measurement::good(b.discharge_limit(), now, s);
        bat.bms_alarms = Measurement::good(b.alarms(), now, s);
        bat.bms_ready = Measurement::good(b.ready(), now, s);
        let inv = &mut snapshot.inverter;
        inv.active_power = Measurement::good(self.inverter.power(), now, f);
        inv.state = Measurement::good(self.inverter.state(), now, s);
        inv.rated_power = self.inverter.rating();
        inv.temperature = Measurement::good(self.inverter.temperature(), now, s);
        snapshot.grid.active_power = Measurement::good(self.grid.power(), now, f);
        snapshot.grid.voltage = Measurement::good(self.grid.voltage(), now, f);
        snapshot.grid.frequency = Measurement::good(self.grid.frequency(), now, f);
        snapshot.pv_power = Measurement::good(self.pv.power(), now, f);
        snapshot.contactor = Measurement::good(self.path.state(), now, f);
        snapshot.precharge_done = Measurement::good(self.path.precharge_done(), now, f);
        snapshot.estop = Measurement::good(self.estop.state(), now, ESTOP_MAX_AGE);
        if self.elapsed_ms < self.dropout_latest {
            for sig in Signal::ALL {
                if self.dropped(sig) {
                    invalidate(snapshot, sig);
                }
            }
        }
    }

    /// Whether `signal` is under an active sensor dropout.
    #[must_use]
    pub fn dropped(&self, signal: Signal) -> bool {
        self.elapsed_ms < self.dropout_until[signal_index(signal)]
    }

    /// A fresh snapshot taken at `now` (see [`Self::fill_snapshot`]).
    #[must_use]
    pub fn snapshot(&self, now: Millis) -> Snapshot {
        let mut s = Snapshot::unknown(self.inverter.rating());
        self.fill_snapshot(&mut s, now);
        s
    }

    /// The true physical state.
    #[must_use]
    pub fn truth(&self) -> SiteTruth {
        let b = &self.battery;
        SiteTruth {
            soc: b.soc(),
            pack_voltage: b.pack_voltage(),
            pack_current: b.current(),
            cell_voltage_min: b.cell_voltage_min(),
            cell_voltage_max: b.cell_voltage_max(),
            cell_temp_min: b.cell_temp_min(),
            cell_temp_max: b.cell_temp_max(),
            battery_power: self.inverter.power(),
            battery_dc_power: self.inverter.dc_power(),
            grid_power: self.grid.power(),
            pv_power: self.pv.power(),
            load_power: self.load.power(),
            inverter_temp: self.inverter.temperature(),
            inverter_state: self.inverter.state(),
            contactor: self.path.state(),
            precharge_relay: self.path.precharge_closed(),
            main_relay: self.path.main_closed(),
            dc_link_voltage: self.path.dc_link_voltage(),
            inrush_events: self.path.inrush_events(),
            control: self.inverter.control(),
            inverter_setpoint: self.inverter.setpoint(),
            setpoint_writes: self.setpoint_writes,
            settings_writes: self.settings_writes,
            bms_alarm_resets: self.bms_alarm_resets,
            estop: self.estop.state(),
            bms_charge_limit: b.charge_limit(),
            bms_discharge_limit: b.discharge_limit(),
            bms_alarms: b.alarms(),
        }
    }

    /// Inject (or clear) a fault.
    pub fn inject(&mut self, fault: SimFault) {
        match fault {
            SimFault::EStopPressed => self.estop.press(),
            SimFault::EStopReleased => self.estop.release(),
            SimFault::CellHeating { watts } => self.battery.extra_heat_w = f64::from(watts.get()),
            SimFault::BmsAlarm(alarms) => {
                self.battery.injected_alarms =
                    BmsAlarms::from_bits(self.battery.injected_alarms.bits() | alarms.bits());
            }
            SimFault::InverterFault => self.inverter.faulted = true,
            SimFault::SensorDropout { signal, for_ } => {
                let until = self.elapsed_ms.saturating_add(for_.get());
                self.dropout_until[signal_index(signal)] = until;
                self.dropout_latest = self.dropout_latest.max(until);
            }
            SimFault::CellImbalance { volts } => self.battery.imbalance_v = f64::from(volts.get()),
            // One contact cannot be welded shut and stuck open at once: each replaces the other.
            SimFault::ContactorWeld => {
                self.path.welded = true;
                self.path.stuck_open = false;
            }
            SimFault::ContactorStuckOpen => {
                self.path.stuck_open = true;
                self.path.welded = false;
            }
            SimFault::PrechargeResistorOpen => self.path.resistor_open = true,
            SimFault::InverterIgnoresSetpoint => self.inverter.ignores_setpoint = true,
            SimFault::InverterDelay { by } => self.inverter.delay_ms = by.get(),
            SimFault::CellRunaway { initial_watts, doubling } => {
                self.battery.runaway_w = f64::from(initial_watts.get().max(0.0));
                self.battery.runaway_doubling_s = crate::narrow::f64_of_u64(doubling.get().max(1)) / 1000.0;
            }
            SimFault::Clear => {
                self.estop.release();
                self.battery.extra_heat_w = 0.0;
                self.battery.runaway_w = 0.0;
                self.path.welded = false;
                self.path.stuck_open = false;
                self.path.resistor_open = false;
                self.inverter.ignores_setpoint = false;
                self.inverter.clear_delay();
                self.battery.injected_alarms = BmsAlarms::NONE;
                self.battery.imbalance_v = 0.0;
                self.inverter.faulted = false;
                self.dropout_until = [0; Signal::ALL.len()];
                self.dropout_latest = 0;
            }
        }
    }

    /// Simulated time since start.
    #[must_use]
    pub fn elapsed(&self) -> Millis {
        Millis::new(self.elapsed_ms)
    }

    /// Time since 1 January 00:00 local standard time of the current simulated year.
    #[must_use]
    pub fn time_of_year(&self) -> Millis {
        let clock = self.start_ms.saturating_add(self.elapsed_ms);
        Millis::new(clock % (YEAR_DAYS * DAY_MS))
    }

    /// Date, weekday and time of day of the simulated clock.
    #[must_use]
    pub fn calendar(&self) -> Calendar {
        self.cal
    }

    /// Energy counters since start.
    #[must_use]
    pub fn energy(&self) -> EnergyCounters {
        let c = &self.counters;
        let wh = |x: f64| WattHours::saturating(crate::narrow::f32_of(x));
        EnergyCounters {
            pv_produced: wh(c.pv),
            load_consumed: wh(c.load),
            grid_import: wh(c.import),
            grid_export: wh(c.export),
            battery_charge: wh(c.charge),
            battery_discharge: wh(c.discharge),
        }
    }

    /// The noise-free BDEW load (profile × annual consumption × dynamisation) at the current
    /// simulated instant.
    #[must_use]
    pub fn load_profile_power(&self) -> Watts {
        self.load.profile_power(&self.cal)
    }

    /// The last command taken by [`Self::apply`] (`Hold` if none asked to move the contactor),
    /// with the set-point as clamped to the rating.
    #[must_use]
    pub fn command(&self) -> (Watts, ContactorCommand) {
        (
            Watts::saturating(crate::narrow::f32_of(self.setpoint)),
            match self.contactor_cmd {
                Some(true) => ContactorCommand::Close,
                Some(false) => ContactorCommand::Open,
                None => ContactorCommand::Hold,
            },
        )
    }
}
