//! The simulation summary: energy flows, min/max of every safety quantity, limit events,
//! trips, time per state and violations. Text for people, JSON for scripts.

use crate::checker::{Checker, Violation};
use crate::options::{device_event_kind, hard_limits, HardLimits, RunOptions};
use ems_control::Output;
use ems_core::event::EventKind;
use ems_core::{Millis, State};
use ems_devices::sim::{EnergyCounters, SiteTruth};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Minimum and maximum of one quantity over the run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MinMax {
    /// Smallest value seen.
    pub min: f32,
    /// Largest value seen.
    pub max: f32,
}

impl Default for MinMax {
    fn default() -> Self {
        Self { min: f32::INFINITY, max: f32::NEG_INFINITY }
    }
}

impl MinMax {
    fn observe(&mut self, v: f32) {
        if v < self.min {
            self.min = v;
        }
        if v > self.max {
            self.max = v;
        }
    }
}

/// Extremes of every safety quantity (physical truth of the simulator).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Extremes {
    /// SOC (%).
    pub soc_pct: MinMax,
    /// Lowest cell voltage (V).
    pub cell_voltage_min_v: MinMax,
    /// Highest cell voltage (V).
    pub cell_voltage_max_v: MinMax,
    /// Lowest cell temperature (°C).
    pub cell_temp_min_c: MinMax,
    /// Highest cell temperature (°C).
    pub cell_temp_max_c: MinMax,
    /// Pack current (A, + discharge).
    pub pack_current_a: MinMax,
    /// Inverter temperature (°C).
    pub inverter_temp_c: MinMax,
    /// Battery AC power (W, + discharge).
    pub battery_power_w: MinMax,
    /// Grid power (W, + import).
    pub grid_power_w: MinMax,
}

/// Counters collected while running.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Extremes.
    pub extremes: Extremes,
    /// Limit level changes: "Cell over-temperature ALARM" → count.
    pub limit_events: BTreeMap<String, u64>,
    /// Trips by reason.
    pub trips: BTreeMap<String, u64>,
    /// State transitions "FROM -> TO" → count.
    pub transitions: BTreeMap<String, u64>,
    /// Milliseconds spent per state.
    pub time_in_state_ms: BTreeMap<String, u64>,
    /// Commands changed by the final clamp, by binding constraint (edges only).
    pub limited_by: BTreeMap<String, u64>,
    /// Requests refused.
    pub refused_requests: u64,
    /// Events dropped because a cycle's buffer was full.
    pub dropped_events: u64,
    /// Faults injected.
    pub faults_injected: u64,
    /// Faults injected by kind (`comm_loss`, `cell_heating`, `gateway_crash`, …).
    pub faults_by_kind: BTreeMap<String, u64>,
    /// Returns to RUNNING after ERROR, STOPPED or a gateway crash.
    pub recoveries: u64,
    /// Gateway crashes (each followed by a restart from the persisted state).
    pub gateway_restarts: u64,
    /// Device-layer events by kind (`setpoint_not_applied`, `reading_rejected`, …).
    pub device_events: BTreeMap<String, u64>,
    /// Device events dropped because a cycle's buffer was full.
    pub dropped_device_events: u64,
    /// Device faults passed to the controller (`Inputs::device_trips`), by reason.
    pub device_trips: BTreeMap<String, u64>,
    /// Whether the run ended with a graceful release of the device layer that succeeded.
    pub released: bool,
    /// Whether the inverter was under local control at the end (after the release).
    pub final_inverter_local: bool,
    /// Whether the site went through ERROR/STOPPED/a crash since it last ran.
    pub(crate) was_down: bool,
}

impl Stats {
    /// Account one controller output that holds for `step`.
    pub fn observe_output(&mut self, out: &Output, step: Millis) {
        *self.time_in_state_ms.entry(out.state.as_str().to_owned()).or_default() += step.get();
        self.dropped_events += u64::from(out.events.dropped());
        if out.refused.is_some() {
            self.refused_requests += 1;
        }
        for e in &out.events {
            match e.kind {
                EventKind::LimitLevel { quantity, level, .. } => {
                    *self.limit_events.entry(format!("{quantity} {level}")).or_default() += 1;
                }
                EventKind::StateChanged { from, to, cause } => {
                    *self.transitions.entry(format!("{from} -> {to}")).or_default() += 1;
                    match to {
                        State::Error | State::Stopped => self.was_down = true,
                        State::Running if self.was_down => {
                            self.was_down = false;
                            self.recoveries += 1;
                        }
                        State::Running | State::Boot | State::Idle => {}
                    }
                    if let ems_core::event::Cause::Trip(t) = cause {
                        *self.trips.entry(t.to_string()).or_default() += 1;
                    }
                }
                EventKind::CommandLimited { by, .. } => {
                    *self.limited_by.entry(by.to_string()).or_default() += 1;
                }
                EventKind::TrendWarning { quantity, .. } => {
                    *self.limit_events.entry(format!("{quantity} TREND")).or_default() += 1;
                }
                EventKind::EStopPressed
                | EventKind::EStopReleased
                | EventKind::ShutdownStarted
                | EventKind::ShutdownComplete
                | EventKind::RequestRefused { .. } => {}
            }
        }
    }

    /// Account one cycle's device events.
    pub fn observe_device_events(&mut self, events: &ems_devices::wrappers::DeviceEvents) {
        self.dropped_device_events += u64::from(events.dropped());
        for e in events {
            let kind = device_event_kind(&e.event);
            if let Some(n) = self.device_events.get_mut(kind) {
                *n += 1;
            } else {
                self.device_events.insert(kind.to_owned(), 1);
            }
        }
    }

    /// Account the device faults passed to the controller in one cycle (rare: formats).
    pub fn observe_device_trips(&mut self, trips: &[ems_core::TripReason]) {
        for t in trips {
            *self.device_trips.entry(t.to_string()).or_default() += 1;
        }
    }

    /// Account the physical truth after a step.
    pub fn observe_truth(&mut self, t: &SiteTruth) {
        let x = &mut self.extremes;
        x.soc_pct.observe(t.soc.get());
        x.cell_voltage_min_v.observe(t.cell_voltage_min.get());
        x.cell_voltage_max_v.observe(t.cell_voltage_max.get());
        x.cell_temp_min_c.observe(t.cell_temp_min.get());
        x.cell_temp_max_c.observe(t.cell_temp_max.get());
        x.pack_current_a.observe(t.pack_current.get());
        x.inverter_temp_c.observe(t.inverter_temp.get());
        x.battery_power_w.observe(t.battery_power.get());
        x.grid_power_w.observe(t.grid_power.get());
    }
}

/// Energy flows in kWh.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EnergyKwh {
    /// PV production.
    pub pv: f64,
    /// Household load.
    pub load: f64,
    /// Imported from the grid.
    pub grid_import: f64,
    /// Exported to the grid.
    pub grid_export: f64,
    /// Into the battery (AC side).
    pub battery_charge: f64,
    /// Out of the battery (AC side).
    pub battery_discharge: f64,
}

/// The summary of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Seed used.
    pub seed: u64,
    /// Simulated seconds.
    pub simulated_seconds: f64,
    /// Wall-clock seconds the run took.
    pub wall_seconds: f64,
    /// Simulated seconds per wall second.
    pub speed: f64,
    /// Step in ms.
    pub step_ms: u64,
    /// State at the end.
    pub final_state: String,
    /// Energy flows.
    pub energy_kwh: EnergyKwh,
    /// Extremes of every safety quantity.
    pub extremes: Extremes,
    /// The hard limits checked.
    pub hard_limits: HardLimits,
    /// Limit level changes by quantity and level.
    pub limit_events: BTreeMap<String, u64>,
    /// Trips by reason.
    pub trips: BTreeMap<String, u64>,
    /// State transitions.
    pub transitions: BTreeMap<String, u64>,
    /// Time per state (s).
    pub time_in_state_s: BTreeMap<String, f64>,
    /// Commands limited by the final clamp, by constraint.
    pub limited_by: BTreeMap<String, u64>,
    /// Faults injected.
    pub faults_injected: u64,
    /// Requests refused.
    pub refused_requests: u64,
    /// Events dropped for lack of buffer space.
    pub dropped_events: u64,
    /// Faults injected by kind.
    pub faults_by_kind: BTreeMap<String, u64>,
    /// Hard-limit violations of the physical truth (cell voltage, temperature, current,
    /// charging below freezing, inrush). Must be 0.
    pub hard_limit_violations: u64,
    /// Violations of the invariant on the command (outside the envelope, ramp, power outside
    /// RUNNING). Must be 0.
    pub invariant_violations: u64,
    /// Cycles in which the inverter was under EMS control although its lease had expired.
    /// Must be 0.
    pub lease_violations: u64,
    /// Returns to RUNNING after ERROR, STOPPED or a gateway crash.
    pub recoveries: u64,
    /// Gateway crashes with restart from the persisted state.
    pub gateway_restarts: u64,
    /// Battery energy throughput, charge + discharge (AC side).
    pub energy_throughput_kwh: f64,
    /// Device-layer events by kind.
    pub device_events: BTreeMap<String, u64>,
    /// Device events dropped for lack of buffer space.
    pub dropped_device_events: u64,
    /// Device faults passed to the controller (`Inputs::device_trips`), by reason.
    pub device_trips: BTreeMap<String, u64>,
    /// The run ended with a graceful release of the device layer that succeeded.
    pub released: bool,
    /// The inverter was back under local control at the end (after the release).
    pub final_inverter_local: bool,
    /// Number of violations (hard limits, the safety invariant and the lease).
    pub violation_count: u64,
    /// The first violations in full.
    pub violations: Vec<Violation>,
}

fn kwh(wh: ems_core::WattHours) -> f64 {
    f64::from(wh.get()) / 1000.0
}

impl Report {
    /// Share of the simulated time spent in `state` (`"ERROR"`, …), 0..=1.
    #[must_use]
    pub fn share_in(&self, state: State) -> f64 {
        let t = self.time_in_state_s.get(state.as_str()).copied().unwrap_or(0.0);
        if self.simulated_seconds > 0.0 {
            t / self.simulated_seconds
        } else {
            0.0
        }
    }

    /// Assemble the report.
    #[must_use]
    pub fn new(
        opts: &RunOptions,
        stats: Stats,
        checker: Checker,
        energy: EnergyCounters,
        simulated: Millis,
        wall: Duration,
        final_state: State,
    ) -> Self {
        // u64 ms to f64 is exact below 2^53 ms (285,000 years).
        #[allow(clippy::cast_precision_loss)]
        let simulated_seconds = simulated.get() as f64 / 1000.0;
        let wall_seconds = wall.as_secs_f64();
        // The same: milliseconds in a state, exact below 2^53.
        #[allow(clippy::cast_precision_loss)]
        let time_in_state_s =
            stats.time_in_state_ms.iter().map(|(k, v)| (k.clone(), *v as f64 / 1000.0)).collect();
        Self {
            seed: opts.seed,
            simulated_seconds,
            wall_seconds,
            speed: if wall_seconds > 0.0 { simulated_seconds / wall_seconds } else { f64::INFINITY },
            step_ms: opts.step.get(),
            final_state: final_state.to_string(),
            energy_kwh: EnergyKwh {
                pv: kwh(energy.pv_produced),
                load: kwh(energy.load_consumed),
                grid_import: kwh(energy.grid_import),
                grid_export: kwh(energy.grid_export),
                battery_charge: kwh(energy.battery_charge),
                battery_discharge: kwh(energy.battery_discharge),
            },
            extremes: stats.extremes,
            hard_limits: hard_limits(&opts.controller.safety),
            limit_events: stats.limit_events,
            trips: stats.trips,
            transitions: stats.transitions,
            time_in_state_s,
            limited_by: stats.limited_by,
            faults_injected: stats.faults_injected,
            faults_by_kind: stats.faults_by_kind,
            hard_limit_violations: checker.hard_limit_count,
            invariant_violations: checker.invariant_count,
            lease_violations: checker.lease_count,
            recoveries: stats.recoveries,
            gateway_restarts: stats.gateway_restarts,
            energy_throughput_kwh: kwh(energy.battery_charge) + kwh(energy.battery_discharge),
            refused_requests: stats.refused_requests,
            dropped_events: stats.dropped_events,
            device_events: stats.device_events,
            dropped_device_events: stats.dropped_device_events,
            device_trips: stats.device_trips,
            released: stats.released,
            final_inverter_local: stats.final_inverter_local,
            violation_count: checker.count,
            violations: checker.kept,
        }
    }

    /// The report as pretty JSON.
    ///
    /// # Errors
    /// The `serde_json` error should serialization fail (it does not for these field types).
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self)
    }
}

fn map_lines(f: &mut fmt::Formatter<'_>, title: &str, map: &BTreeMap<String, u64>) -> fmt::Result {
    if map.is_empty() {
        return writeln!(f, "{title}: none");
    }
    writeln!(f, "{title}:")?;
    for (k, v) in map {
        writeln!(f, "  {k:<44} {v:>8}")?;
    }
    Ok(())
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.energy_kwh;
        writeln!(
            f,
            "simulated {:.0} s ({:.2} days) in {:.3} s wall: {:.0} simulated s per wall s (step {} ms, seed {})",
            self.simulated_seconds,
            self.simulated_seconds / 86_400.0,
            self.wall_seconds,
            self.speed,
            self.step_ms,
            self.seed
        )?;
        writeln!(f, "final state: {}", self.final_state)?;
        writeln!(f, "energy (kWh): pv {:.2}  load {:.2}  grid import {:.2}  grid export {:.2}  battery charge {:.2}  battery discharge {:.2}",
            e.pv, e.load, e.grid_import, e.grid_export, e.battery_charge, e.battery_discharge)?;
        let x = &self.extremes;
        let h = &self.hard_limits;
        writeln!(f, "safety quantities (min .. max, physical truth):")?;
        writeln!(f, "  SOC                 {:>8.2} .. {:>8.2} %", x.soc_pct.min, x.soc_pct.max)?;
        writeln!(
            f,
            "  cell voltage min    {:>8.3} .. {:>8.3} V   (trip below {:.3} V)",
            x.cell_voltage_min_v.min, x.cell_voltage_min_v.max, h.cell_v_low
        )?;
        writeln!(
            f,
            "  cell voltage max    {:>8.3} .. {:>8.3} V   (trip above {:.3} V)",
            x.cell_voltage_max_v.min, x.cell_voltage_max_v.max, h.cell_v_high
        )?;
        writeln!(
            f,
            "  cell temp min       {:>8.1} .. {:>8.1} °C  (no charge below {:.1} °C)",
            x.cell_temp_min_c.min, x.cell_temp_min_c.max, h.charge_temp_floor
        )?;
        writeln!(
            f,
            "  cell temp max       {:>8.1} .. {:>8.1} °C  (trip above {:.1} °C)",
            x.cell_temp_max_c.min, x.cell_temp_max_c.max, h.cell_t_high
        )?;
        writeln!(
            f,
            "  pack current        {:>8.1} .. {:>8.1} A   (trip above {:.1} A)",
            x.pack_current_a.min, x.pack_current_a.max, h.current
        )?;
        writeln!(
            f,
            "  inverter temp       {:>8.1} .. {:>8.1} °C",
            x.inverter_temp_c.min, x.inverter_temp_c.max
        )?;
        writeln!(
            f,
            "  battery power       {:>8.0} .. {:>8.0} W",
            x.battery_power_w.min, x.battery_power_w.max
        )?;
        writeln!(f, "  grid power          {:>8.0} .. {:>8.0} W", x.grid_power_w.min, x.grid_power_w.max)?;
        map_lines(f, "limit events", &self.limit_events)?;
        map_lines(f, "trips", &self.trips)?;
        map_lines(f, "state transitions", &self.transitions)?;
        writeln!(f, "time in state (s):")?;
        for (k, v) in &self.time_in_state_s {
            writeln!(f, "  {k:<44} {v:>8.0}")?;
        }
        map_lines(f, "commands limited by", &self.limited_by)?;
        writeln!(
            f,
            "faults injected: {}  refused requests: {}  dropped events: {}",
            self.faults_injected, self.refused_requests, self.dropped_events
        )?;
        map_lines(f, "faults injected by kind", &self.faults_by_kind)?;
        map_lines(f, "device events", &self.device_events)?;
        map_lines(f, "device trips", &self.device_trips)?;
        writeln!(
            f,
            "dropped device events: {}  released: {}  inverter local at the end: {}",
            self.dropped_device_events, self.released, self.final_inverter_local
        )?;
        writeln!(
            f,
            "recoveries: {}  gateway restarts: {}  battery throughput: {:.2} kWh",
            self.recoveries, self.gateway_restarts, self.energy_throughput_kwh
        )?;
        writeln!(
            f,
            "hard_limit_violations: {}  invariant_violations: {}  lease_violations: {}",
            self.hard_limit_violations, self.invariant_violations, self.lease_violations
        )?;
        writeln!(f, "violations: {}", self.violation_count)?;
        for v in &self.violations {
            writeln!(f, "  at {} ms: {:?}: {}", v.at_ms, v.kind, v.detail)?;
        }
        Ok(())
    }
}
