//! Island scenario files: a TOML timeline of grid and breaker events on the simulated island
//! plant (`ems_devices::sim::island`) beside the simulated site, run in closed loop **through
//! the one control loop** ([`ems_runtime::Runtime::cycle`] with its island path: the island
//! devices of `ems-devices`, the island sequence of `ems-grid`, the controller bounded by it),
//! with expectations the runner checks. [`IslandSite`] is that loop for tests of their own.
//!
//! The format follows the site scenarios (`scenario.rs`): the same header, durations,
//! `[[fault]]` timeline and `[[expect]]` windows, plus an `[island]` table that marks the file as
//! an island scenario and describes the plant, and `[[load]]` circuits.
//!
//! ```toml
//! name = "Island: grid loss"
//! hazard = "I1"
//! description = "…"
//! duration = "10m"
//! step = "100ms"              # optional (default 100 ms; at most 100 ms)
//!
//! [island]
//! start = "connected"         # or "blackout"
//! rated_w = 5000              # inverter rating (grid-forming)
//! battery_wh = 10000
//! initial_soc = 80            # %
//! auto_black_start = "30s"    # optional
//!
//! [[load]]                    # in relay order; priority 0 = critical
//! name = "fridge"
//! priority = 0
//! watts = 300
//!
//! [[fault]]
//! at = "2m"
//! kind = "grid_loss"          # grid_loss | grid_return | grid_disturbed (volts, hz) |
//!                             # grid_rocof (hz_per_s) | breaker_fails_to_open |
//!                             # breaker_fails_to_close | breaker_ok | breaker_readback_lost |
//!                             # inverter_cannot_form | inverter_cannot_sync | inverter_ok |
//!                             # black_start | operator_reset | soc (percent)
//! for = "5m"                  # optional: grid_* return to normal, readback comes back
//!
//! [[expect]]
//! after = "2m"
//! by = "2m5s"
//! always = false              # true: in every cycle of the window
//! state = "ISLANDED"          # the sequence's grid state
//! breaker = "open"            # the breaker contact (plant truth)
//! inverter = "grid-forming"   # off | grid-following | grid-forming (plant read-back)
//! loads_on = ["fridge"]       # relays closed (plant truth)
//! loads_off = ["ev charger"]
//! stop = "failed to open"     # the safe-stop reason contains this
//! event = "grid lost"         # some event in the window contains this
//! no_close = true             # no close command in the window
//! power_limit_max = 600       # the reconnection ramp's limit is at most this (W)
//! ```
//!
//! Every run also requires zero out-of-phase closes and zero time of a grid-forming inverter
//! connected to a live grid (plant truth), zero inverter overload trips, every close command
//! issued with every close condition true, and in every cycle a battery set-point of zero
//! while set-points are not allowed and at most the reconnection ramp's limit after a close
//! (the controller runs a manual discharge of half the rating to show it).

use crate::scenario::parse_duration;
use ems_control::{Controller, ControllerConfig, ModeSetting};
use ems_core::persist::MemoryStore;
use ems_core::snapshot::GridTie;
use ems_core::{Hertz, Millis, Percent, State, TransitionRequest, Volts, WattHours, Watts};
use ems_devices::io::{DeviceSet, DeviceSetConfig};
use ems_devices::island::{
    IslandDeviceConfig, IslandDevices, SharedIsland, SimIslandBreaker, SimIslandInverter, SimIslandRelay,
};
use ems_devices::sim::island::{BreakerFault, GridCondition, IslandViolations, SimInverterMode, SimIsland};
use ems_devices::sim::{
    SharedSite, SimBms, SimEStopPin, SimInverter, SimMeter, SimPv, SimRelay, SimSiteConfig, SimulatedSite,
};
use ems_grid::island::{BreakerCommand, IslandOutput, IslandSequencer, IslandSettings, LoadCircuit};
use ems_runtime::{CycleFlags, IslandLoop, IslandRequest, IslandStatus, NoGridPath, Runtime};
use serde::Deserialize;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::path::Path;

/// Errors name the file, the field and the value (as the site scenarios do).
pub type IslandScenarioError = ems_tomlfile::SpannedError;

/// Whether a scenario text is an island scenario (it has an `[island]` table).
#[must_use]
pub fn is_island_scenario(text: &str) -> bool {
    text.lines().any(|l| l.trim() == "[island]")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    name: String,
    hazard: Option<String>,
    description: Option<String>,
    duration: String,
    step: Option<String>,
    island: RawIsland,
    #[serde(default, rename = "load")]
    loads: Vec<RawLoad>,
    #[serde(default, rename = "fault")]
    faults: Vec<RawFault>,
    #[serde(default, rename = "expect")]
    expects: Vec<RawExpect>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIsland {
    start: String,
    rated_w: f32,
    battery_wh: f32,
    initial_soc: f32,
    auto_black_start: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLoad {
    name: String,
    priority: u8,
    watts: f32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFault {
    at: String,
    kind: String,
    #[serde(rename = "for")]
    for_: Option<String>,
    volts: Option<f32>,
    hz: Option<f32>,
    hz_per_s: Option<f32>,
    percent: Option<f32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    after: Option<String>,
    by: Option<String>,
    always: Option<bool>,
    state: Option<String>,
    breaker: Option<String>,
    inverter: Option<String>,
    loads_on: Option<Vec<String>>,
    loads_off: Option<Vec<String>>,
    stop: Option<String>,
    event: Option<String>,
    no_close: Option<bool>,
    power_limit_max: Option<f32>,
}

/// What a timeline entry does to the plant or the operator.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum IslandFault {
    /// The grid goes away.
    GridLoss,
    /// The grid comes back (nominal).
    GridReturn,
    /// The grid is live at this voltage and frequency.
    GridDisturbed(Volts, Hertz),
    /// The grid frequency ramps at this rate (Hz/s).
    GridRocof(f32),
    /// The breaker sticks closed.
    BreakerFailsToOpen,
    /// The breaker sticks open.
    BreakerFailsToClose,
    /// The breaker works again.
    BreakerOk,
    /// The breaker read-back is lost.
    BreakerReadbackLost,
    /// The inverter refuses grid-forming.
    InverterCannotForm,
    /// The inverter does not synchronise.
    InverterCannotSync,
    /// The inverter works again.
    InverterOk,
    /// The operator asks for a black start.
    BlackStart,
    /// The operator resets a safe stop.
    OperatorReset,
    /// The battery is set to this SOC.
    Soc(Percent),
}

/// One timeline entry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimedIslandFault {
    /// When.
    pub at: Millis,
    /// Undone after this long (grid and read-back faults).
    pub for_: Option<Millis>,
    /// What.
    pub fault: IslandFault,
}

/// One expectation window.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IslandExpect {
    /// Window start.
    pub after: Millis,
    /// Window end (`None`: end of the run).
    pub by: Option<Millis>,
    /// Every cycle of the window (else: at least one).
    pub always: bool,
    /// Grid state name.
    pub state: Option<String>,
    /// Breaker contact `open` / `closed`.
    pub breaker: Option<GridTie>,
    /// Inverter mode `off` / `grid-following` / `grid-forming`.
    pub inverter: Option<SimInverterMode>,
    /// Circuits on.
    pub loads_on: Vec<usize>,
    /// Circuits off.
    pub loads_off: Vec<usize>,
    /// Safe-stop reason contains.
    pub stop: Option<String>,
    /// Some event in the window contains.
    pub event: Option<String>,
    /// No close command in the window.
    pub no_close: bool,
    /// Reconnection ramp limit at most this.
    pub power_limit_max: Option<Watts>,
}

/// A parsed island scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct IslandScenario {
    /// Name.
    pub name: String,
    /// Hazard id (`I1`…).
    pub hazard: Option<String>,
    /// What it proves.
    pub description: Option<String>,
    /// Run length.
    pub duration: Millis,
    /// Cycle.
    pub step: Millis,
    /// Breaker at start.
    pub start: GridTie,
    /// Inverter rating.
    pub rated: Watts,
    /// Battery.
    pub battery: WattHours,
    /// Initial SOC.
    pub soc: Percent,
    /// Automatic black start after this.
    pub auto_black_start: Option<Millis>,
    /// Circuits.
    pub loads: Vec<(String, u8, Watts)>,
    /// Timeline.
    pub faults: Vec<TimedIslandFault>,
    /// Expectations.
    pub expects: Vec<IslandExpect>,
}

struct Ctx<'a> {
    src: ems_tomlfile::Source<'a>,
}

impl Ctx<'_> {
    fn err(&self, field: &str, message: impl std::fmt::Display) -> IslandScenarioError {
        self.src.at_path(field, message.to_string())
    }

    fn duration(&self, field: &str, s: &str) -> Result<Millis, IslandScenarioError> {
        parse_duration(s)
            .ok_or_else(|| self.err(field, format_args!("'{s}' is not a duration (e.g. 500ms, 90s, 10m)")))
    }

    fn opt_duration(&self, field: &str, s: Option<&String>) -> Result<Option<Millis>, IslandScenarioError> {
        s.map(|s| self.duration(field, s)).transpose()
    }
}

fn state_names() -> [&'static str; 9] {
    [
        "STARTING",
        "CONNECTED",
        "TRANSFERRING",
        "ISLANDED",
        "BLACK START",
        "RESYNCHRONISING",
        "RECONNECTING",
        "BLACKOUT",
        "SAFE STOP",
    ]
}

impl IslandScenario {
    /// Read and parse a file.
    ///
    /// # Errors
    /// [`IslandScenarioError`] naming the file, the field and the value.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, IslandScenarioError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| IslandScenarioError::new(path, format!("cannot read: {e}")))?;
        Self::parse_named(&text, &path.display().to_string())
    }

    /// Parse scenario text (`source` names it in errors).
    ///
    /// # Errors
    /// [`IslandScenarioError`] naming the source, the field and the value.
    pub fn parse_named(text: &str, source: &str) -> Result<Self, IslandScenarioError> {
        let cx = Ctx { src: ems_tomlfile::Source::new(Path::new(source), text) };
        let raw: Raw = cx.src.decode(&["island"])?;
        let duration = cx.duration("duration", &raw.duration)?;
        let step = match &raw.step {
            Some(s) => cx.duration("step", s)?,
            None => Millis::new(100),
        };
        if step == Millis::ZERO || step > Millis::new(100) {
            return Err(cx.err(
                "step",
                format_args!("'{}' must be between 1 ms and 100 ms", raw.step.unwrap_or_default()),
            ));
        }
        let start = match raw.island.start.as_str() {
            "connected" => GridTie::Closed,
            "blackout" => GridTie::Open,
            other => {
                return Err(cx.err("island.start", format_args!("'{other}' is not connected or blackout")))
            }
        };
        let rated = Watts::try_new(raw.island.rated_w)
            .ok()
            .filter(|w| *w > Watts::ZERO)
            .ok_or_else(|| cx.err("island.rated_w", format_args!("{} must be > 0 W", raw.island.rated_w)))?;
        let battery =
            WattHours::try_new(raw.island.battery_wh).ok().filter(|w| *w > WattHours::ZERO).ok_or_else(
                || cx.err("island.battery_wh", format_args!("{} must be > 0 Wh", raw.island.battery_wh)),
            )?;
        let soc = Percent::try_new(raw.island.initial_soc).map_err(|_| {
            cx.err("island.initial_soc", format_args!("{} must be 0..=100 %", raw.island.initial_soc))
        })?;
        let auto_black_start =
            cx.opt_duration("island.auto_black_start", raw.island.auto_black_start.as_ref())?;
        let mut loads = Vec::new();
        for (i, l) in raw.loads.iter().enumerate() {
            let w = Watts::try_new(l.watts).ok().filter(|w| *w >= Watts::ZERO).ok_or_else(|| {
                cx.err(&format!("load[{i}].watts"), format_args!("{} must be >= 0 W", l.watts))
            })?;
            loads.push((l.name.clone(), l.priority, w));
        }
        if loads.len() > ems_grid::island::MAX_LOADS {
            return Err(cx.err("load", format_args!("{} circuits, at most 16", loads.len())));
        }
        let mut faults = Vec::new();
        for (i, f) in raw.faults.iter().enumerate() {
            faults.push(Self::fault(&cx, i, f)?);
        }
        let mut expects = Vec::new();
        for (i, e) in raw.expects.iter().enumerate() {
            expects.push(Self::expect(&cx, i, e, &loads)?);
        }
        Ok(Self {
            name: raw.name,
            hazard: raw.hazard,
            description: raw.description,
            duration,
            step,
            start,
            rated,
            battery,
            soc,
            auto_black_start,
            loads,
            faults,
            expects,
        })
    }

    fn fault(cx: &Ctx<'_>, i: usize, f: &RawFault) -> Result<TimedIslandFault, IslandScenarioError> {
        let field = |k: &str| format!("fault[{i}].{k}");
        let at = cx.duration(&field("at"), &f.at)?;
        let for_ = cx.opt_duration(&field("for"), f.for_.as_ref())?;
        let need = |v: Option<f32>, k: &str| {
            v.ok_or_else(|| cx.err(&field(k), format_args!("required for kind '{}'", f.kind)))
        };
        let fault = match f.kind.as_str() {
            "grid_loss" => IslandFault::GridLoss,
            "grid_return" => IslandFault::GridReturn,
            "grid_disturbed" => {
                let v = need(f.volts, "volts")?;
                let hz = need(f.hz, "hz")?;
                IslandFault::GridDisturbed(
                    Volts::try_new(v)
                        .map_err(|_| cx.err(&field("volts"), format_args!("{v} is not a voltage")))?,
                    Hertz::try_new(hz)
                        .map_err(|_| cx.err(&field("hz"), format_args!("{hz} is not a frequency")))?,
                )
            }
            "grid_rocof" => IslandFault::GridRocof(need(f.hz_per_s, "hz_per_s")?),
            "breaker_fails_to_open" => IslandFault::BreakerFailsToOpen,
            "breaker_fails_to_close" => IslandFault::BreakerFailsToClose,
            "breaker_ok" => IslandFault::BreakerOk,
            "breaker_readback_lost" => IslandFault::BreakerReadbackLost,
            "inverter_cannot_form" => IslandFault::InverterCannotForm,
            "inverter_cannot_sync" => IslandFault::InverterCannotSync,
            "inverter_ok" => IslandFault::InverterOk,
            "black_start" => IslandFault::BlackStart,
            "operator_reset" => IslandFault::OperatorReset,
            "soc" => {
                let p = need(f.percent, "percent")?;
                IslandFault::Soc(
                    Percent::try_new(p)
                        .map_err(|_| cx.err(&field("percent"), format_args!("{p} must be 0..=100 %")))?,
                )
            }
            other => {
                return Err(cx.err(&field("kind"), format_args!("'{other}' is not an island fault kind")))
            }
        };
        Ok(TimedIslandFault { at, for_, fault })
    }

    fn expect(
        cx: &Ctx<'_>,
        i: usize,
        e: &RawExpect,
        loads: &[(String, u8, Watts)],
    ) -> Result<IslandExpect, IslandScenarioError> {
        let field = |k: &str| format!("expect[{i}].{k}");
        let names = |v: &Option<Vec<String>>, k: &str| -> Result<Vec<usize>, IslandScenarioError> {
            v.iter()
                .flatten()
                .map(|n| {
                    loads
                        .iter()
                        .position(|l| &l.0 == n)
                        .ok_or_else(|| cx.err(&field(k), format_args!("'{n}' is not a [[load]] name")))
                })
                .collect()
        };
        if let Some(s) = &e.state {
            if !state_names().contains(&s.as_str()) {
                return Err(cx.err(
                    &field("state"),
                    format_args!("'{s}' is not a grid state ({})", state_names().join(", ")),
                ));
            }
        }
        let breaker = match e.breaker.as_deref() {
            None => None,
            Some("open") => Some(GridTie::Open),
            Some("closed") => Some(GridTie::Closed),
            Some(o) => return Err(cx.err(&field("breaker"), format_args!("'{o}' is not open or closed"))),
        };
        let inverter = match e.inverter.as_deref() {
            None => None,
            Some("off") => Some(SimInverterMode::Off),
            Some("grid-following") => Some(SimInverterMode::GridFollowing),
            Some("grid-forming") => Some(SimInverterMode::GridForming),
            Some(o) => {
                return Err(cx.err(
                    &field("inverter"),
                    format_args!("'{o}' is not off, grid-following or grid-forming"),
                ))
            }
        };
        Ok(IslandExpect {
            after: cx.opt_duration(&field("after"), e.after.as_ref())?.unwrap_or(Millis::ZERO),
            by: cx.opt_duration(&field("by"), e.by.as_ref())?,
            always: e.always.unwrap_or(false),
            state: e.state.clone(),
            breaker,
            inverter,
            loads_on: names(&e.loads_on, "loads_on")?,
            loads_off: names(&e.loads_off, "loads_off")?,
            stop: e.stop.clone(),
            event: e.event.clone(),
            no_close: e.no_close.unwrap_or(false),
            power_limit_max: e.power_limit_max.map(Watts::saturating),
        })
    }
}

/// One cycle as the runner saw it.
#[derive(Debug, Clone)]
struct Row {
    at: Millis,
    state: String,
    breaker: GridTie,
    inverter: SimInverterMode,
    relays: u16,
    stop: Option<String>,
    events: Vec<String>,
    close: bool,
    power_limit: Option<Watts>,
}

/// The result of one island scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct IslandScenarioReport {
    /// Scenario name.
    pub name: String,
    /// Every expectation held and no violation.
    pub passed: bool,
    /// Why not, one line each.
    pub failures: Vec<String>,
    /// The plant's violation counters.
    pub violations: IslandViolations,
    /// Close commands issued.
    pub closes: u32,
    /// The state at the end.
    pub final_state: String,
    /// Every event with its time (`12.300 s grid state CONNECTED -> TRANSFERRING`).
    pub events: Vec<String>,
}

impl IslandScenarioReport {
    /// The report as JSON: `{"name", "passed", "failures", "closes", "final_state",
    /// "violations": {"out_of_phase_closes", "forming_onto_grid_ms", "overload_trips"}, "events"}`.
    ///
    /// # Errors
    /// A `serde_json` error (not expected for these plain values).
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        let v = &self.violations;
        serde_json::to_string_pretty(&serde_json::json!({
            "name": self.name,
            "passed": self.passed,
            "failures": self.failures,
            "closes": self.closes,
            "final_state": self.final_state,
            "violations": {
                "out_of_phase_closes": v.out_of_phase_closes,
                "forming_onto_grid_ms": v.forming_onto_grid_ms,
                "overload_trips": v.overload_trips,
            },
            "events": self.events,
        }))
    }

    /// The report as text.
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "island scenario: {}", self.name);
        for e in &self.events {
            let _ = writeln!(s, "  {e}");
        }
        let v = &self.violations;
        let _ = writeln!(
            s,
            "final state {}, closes {}, out-of-phase closes {}, forming onto grid {} ms, overload trips {}",
            self.final_state, self.closes, v.out_of_phase_closes, v.forming_onto_grid_ms, v.overload_trips
        );
        let _ = writeln!(s, "{}", if self.passed { "PASS" } else { "FAIL" });
        for f in &self.failures {
            let _ = writeln!(s, "  {f}");
        }
        s
    }
}

/// What a timeline entry does: to the plant, or an operator request to the loop.
fn apply(plant: &SharedIsland, requests: &mut VecDeque<IslandRequest>, f: IslandFault) {
    plant.with_mut(|plant| match f {
        IslandFault::GridLoss => plant.grid.set(GridCondition::Lost),
        IslandFault::GridReturn => plant.grid.set(GridCondition::Normal),
        IslandFault::GridDisturbed(voltage, frequency) => {
            plant.grid.set(GridCondition::Disturbed { voltage, frequency });
        }
        IslandFault::GridRocof(hz_per_s) => {
            plant.grid.set(GridCondition::FrequencyRamp { hz_per_s, since: plant.elapsed() });
        }
        IslandFault::BreakerFailsToOpen => plant.breaker.set_fault(BreakerFault::FailsToOpen),
        IslandFault::BreakerFailsToClose => plant.breaker.set_fault(BreakerFault::FailsToClose),
        IslandFault::BreakerOk => plant.breaker.set_fault(BreakerFault::None),
        IslandFault::BreakerReadbackLost => plant.breaker.readback_lost = true,
        IslandFault::InverterCannotForm => plant.inverter.cannot_form = true,
        IslandFault::InverterCannotSync => plant.inverter.cannot_sync = true,
        IslandFault::InverterOk => {
            plant.inverter.cannot_form = false;
            plant.inverter.cannot_sync = false;
        }
        IslandFault::Soc(p) => plant.set_soc(p),
        IslandFault::BlackStart => {
            requests.push_back(IslandRequest::BlackStart { reason: "scenario timeline".into() });
        }
        IslandFault::OperatorReset => {
            requests.push_back(IslandRequest::Reset { reason: "scenario timeline".into() });
        }
    });
}

fn undo(plant: &mut SimIsland, f: IslandFault) {
    match f {
        IslandFault::GridLoss | IslandFault::GridDisturbed(..) | IslandFault::GridRocof(_) => {
            plant.grid.set(GridCondition::Normal);
        }
        IslandFault::BreakerReadbackLost => plant.breaker.readback_lost = false,
        IslandFault::BreakerFailsToOpen | IslandFault::BreakerFailsToClose => {
            plant.breaker.set_fault(BreakerFault::None);
        }
        IslandFault::InverterCannotForm | IslandFault::InverterCannotSync => {
            plant.inverter.cannot_form = false;
            plant.inverter.cannot_sync = false;
        }
        IslandFault::GridReturn
        | IslandFault::BreakerOk
        | IslandFault::InverterOk
        | IslandFault::BlackStart
        | IslandFault::OperatorReset
        | IslandFault::Soc(_) => {}
    }
}

/// The simulated site's devices as the island runs drive them (no fault switches: the island
/// plant carries the island faults).
pub type IslandSiteDevices = DeviceSet<SimBms, SimInverter, SimMeter, SimPv, SimRelay, SimRelay, SimEStopPin>;

/// The island path over the simulated plant.
pub type SimIslandLoop = IslandLoop<SimIslandBreaker, SimIslandInverter, SimIslandRelay>;

/// The loop of an island run: the simulated site, the island plant and the one control loop
/// (`ems_runtime::Runtime`) with its island path — the same loop the gateway runs.
pub type IslandRuntime = Runtime<IslandSiteDevices, MemoryStore, NoGridPath, SimIslandLoop>;

/// A simulated site with an island plant, driven through [`ems_runtime::Runtime::cycle`].
#[derive(Debug)]
pub struct IslandSite {
    /// The site (battery, BMS, inverter, meter, PV, load).
    pub site: SharedSite,
    /// The island plant (grid, breaker, grid-forming inverter, load circuits).
    pub plant: SharedIsland,
    /// The loop.
    pub runtime: IslandRuntime,
    /// Operator requests for the island, taken one per cycle.
    pub requests: VecDeque<IslandRequest>,
    /// The control state wanted: the runner's operator boots and starts the controller.
    pub operator: bool,
    /// A software E-stop on the next cycles while set.
    pub estop: bool,
    step: Millis,
    now: Millis,
}

/// What an [`IslandSite`] is made of.
#[derive(Debug, Clone)]
pub struct IslandSiteConfig {
    /// Inverter rating (grid-forming too).
    pub rated: Watts,
    /// Battery capacity.
    pub battery: WattHours,
    /// Initial SOC.
    pub soc: Percent,
    /// Breaker at start.
    pub start: GridTie,
    /// Circuits `(name, priority, nominal)`, in relay order.
    pub loads: Vec<(String, u8, Watts)>,
    /// The island settings.
    pub settings: IslandSettings,
    /// The controller's mode (a manual set-point shows the island bound on it).
    pub mode: ModeSetting,
    /// The cycle (≤ 100 ms: the breaker acts in 60 ms).
    pub step: Millis,
}

/// What one [`IslandSite::cycle`] saw.
#[derive(Debug, Clone)]
pub struct IslandCycle {
    /// The controller's output.
    pub output: ems_control::Output,
    /// The island path's status after the cycle's step.
    pub status: IslandStatus,
    /// The sequence's output (before the E-stop policy of the apply).
    pub island: Option<IslandOutput>,
}

struct RunnerHook<'a> {
    requests: &'a mut VecDeque<IslandRequest>,
    operator: bool,
}

impl ems_runtime::Hook for RunnerHook<'_> {
    fn inputs<'a>(&'a mut self, cx: &ems_runtime::Context<'_>, inputs: &mut ems_control::Inputs<'a>) {
        if self.operator {
            inputs.request = match cx.state {
                State::Boot => Some(TransitionRequest::BootComplete),
                State::Idle => Some(TransitionRequest::Start),
                State::Running | State::Error | State::Stopped => None,
            };
        }
    }

    fn island_request(&mut self) -> Option<IslandRequest> {
        self.requests.pop_front()
    }
}

impl IslandSite {
    /// The site `config` describes.
    ///
    /// # Errors
    /// A text naming what could not be built.
    pub fn new(config: &IslandSiteConfig) -> Result<Self, String> {
        let IslandSiteConfig { rated, battery, soc, start, loads, settings, mode, step } = config.clone();
        let circuits: Vec<LoadCircuit> = loads
            .iter()
            // The sequence's names are `&'static str` (for events); the loop names circuits
            // from `names` instead.
            .map(|(_, p, w)| LoadCircuit { name: "circuit", priority: *p, nominal: *w })
            .collect();
        let seq = IslandSequencer::try_new(settings, rated, &circuits).map_err(|e| e.to_string())?;
        let plant_loads: Vec<(&'static str, Watts)> = circuits.iter().map(|c| (c.name, c.nominal)).collect();
        let plant = SharedIsland::new(SimIsland::new(rated, battery, soc, start, &plant_loads));
        let devices = IslandDevices::new(
            plant.breaker(),
            plant.inverter(),
            plant.relays(),
            IslandDeviceConfig::default(),
        )
        .map_err(|e| e.to_string())?;
        let names = loads.iter().map(|l| l.0.clone()).collect();
        let island = IslandLoop::new(devices, seq, rated, names);
        let site_config = SimSiteConfig {
            inverter_rating: rated,
            battery_capacity: battery,
            initial_soc: soc,
            ..SimSiteConfig::default()
        };
        let site = SharedSite::new(SimulatedSite::new(site_config).map_err(|e| e.to_string())?);
        let d = site.devices();
        let set = DeviceSet::new(
            d.bms,
            d.inverter,
            d.meter,
            d.pv,
            d.precharge_relay,
            d.main_relay,
            d.estop,
            DeviceSetConfig::default(),
        )
        .map_err(|e| format!("device layer: {e}"))?;
        let config = ControllerConfig { cycle: step, mode, ..ControllerConfig::default() };
        let controller = Controller::new(config).map_err(|e| e.to_string())?;
        let runtime = Runtime::new(set, controller, MemoryStore::default()).with_island_path(island);
        Ok(Self {
            site,
            plant,
            runtime,
            requests: VecDeque::new(),
            operator: true,
            estop: false,
            step,
            now: Millis::ZERO,
        })
    }

    /// Control time of the next cycle.
    #[must_use]
    pub const fn now(&self) -> Millis {
        self.now
    }

    /// One cycle through the loop, then the site and the plant advance by one step.
    pub fn cycle(&mut self) -> IslandCycle {
        let mut hook = RunnerHook { requests: &mut self.requests, operator: self.operator };
        let flags = CycleFlags { shutdown: false, emergency_stop: self.estop };
        let r = pollster::block_on(self.runtime.cycle(self.now, flags, &mut hook));
        let status = self.runtime.island_status().cloned();
        let island = self.runtime.island_path().last_output().cloned();
        self.site.borrow_mut().advance(self.step);
        self.plant.with_mut(|p| p.step(self.step));
        self.now = self.now.plus(self.step);
        IslandCycle {
            output: r.output,
            // An IslandLoop always has a status.
            status: status.unwrap_or_else(|| unreachable_status(self.now)),
            island,
        }
    }
}

fn unreachable_status(at: Millis) -> IslandStatus {
    IslandStatus {
        at,
        state: ems_grid::island::GridState::Starting,
        breaker: None,
        breaker_command: BreakerCommand::Hold,
        inverter: None,
        inverter_command: ems_grid::island::InverterCommand::Off,
        close: ems_grid::island::CloseConditions::default(),
        detection: ems_grid::island::Detection {
            trip: None,
            measured: false,
            rocof: None,
            mean_voltage: None,
        },
        grid_healthy_for: Millis::ZERO,
        stop: None,
        setpoints_allowed: false,
        power_limit: None,
        bound: None,
        available: Watts::ZERO,
        loads: Vec::new(),
        estop: false,
        recent: Vec::new(),
        events: Vec::new(),
    }
}

/// The set-point bound the island puts on the controller, checked every cycle of a run: zero
/// whenever set-points are not allowed, at most the reconnection ramp's limit after a close.
fn check_setpoint(c: &IslandCycle) -> Option<String> {
    let sp = c.output.command.setpoint();
    let out = c.island.as_ref()?;
    if !out.setpoints_allowed && sp != Watts::ZERO {
        return Some(format!("set-point {sp} while {} (set-points not allowed)", out.state));
    }
    if let Some(limit) = out.power_limit {
        if sp.abs() > limit {
            return Some(format!("set-point {sp} above the reconnection ramp's {limit}"));
        }
    }
    None
}

/// Run one island scenario through the one control loop ([`IslandSite`]).
///
/// # Errors
/// [`IslandScenarioError`] when the plant or the sequence cannot be built from it (a load
/// table the sequence refuses).
pub fn run_island_scenario(s: &IslandScenario) -> Result<IslandScenarioReport, IslandScenarioError> {
    let mut settings = IslandSettings::en50549_vde4105(ems_core::volts!(230.0));
    settings.sequence.auto_black_start = s.auto_black_start;
    // A discharge of half the rating: the island bound must hold it at zero while islanded and
    // ramp it after a reconnection.
    let mode = ModeSetting::Manual { setpoint: s.rated.scale(0.5) };
    let config = IslandSiteConfig {
        rated: s.rated,
        battery: s.battery,
        soc: s.soc,
        start: s.start,
        loads: s.loads.clone(),
        settings,
        mode,
        step: s.step,
    };
    let mut site = IslandSite::new(&config).map_err(|e| IslandScenarioError::new(Path::new(&s.name), e))?;
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    let mut closes = 0_u32;
    let mut undo_at: Vec<(Millis, IslandFault)> = Vec::new();
    let mut timeline = s.faults.clone();
    timeline.sort_by_key(|f| f.at);
    let mut next = 0;
    while site.now() < s.duration {
        let now = site.now();
        // Undo first: a fault that starts when another ends wins.
        undo_at.retain(|(at, f)| {
            if *at <= now {
                site.plant.with_mut(|p| undo(p, *f));
                false
            } else {
                true
            }
        });
        while let Some(f) = timeline.get(next).filter(|f| f.at <= now) {
            apply(&site.plant, &mut site.requests, f.fault);
            if let Some(d) = f.for_ {
                undo_at.push((f.at.plus(d), f.fault));
            }
            next += 1;
        }
        let c = site.cycle();
        if let Some(out) = &c.island {
            if out.breaker == BreakerCommand::Close {
                closes = closes.saturating_add(1);
                if !out.close.all() {
                    failures.push(format!("{now}: close commanded with a condition false: {:?}", out.close));
                }
            }
        }
        if let Some(msg) = check_setpoint(&c) {
            if failures.len() < 50 {
                failures.push(format!("{now}: {msg}"));
            }
        }
        let (breaker, r) = site.plant.with(|p| (p.breaker.position(), p.readings()));
        rows.push(Row {
            at: site.now(),
            state: c.status.state.to_string(),
            breaker,
            inverter: r.inverter,
            relays: r.relays,
            stop: c.status.stop.map(|x| x.to_string()),
            events: c.status.events.clone(),
            close: c.island.as_ref().is_some_and(|o| o.breaker == BreakerCommand::Close),
            power_limit: c.status.power_limit,
        });
    }
    for (i, e) in s.expects.iter().enumerate() {
        if let Some(msg) = check(e, &rows, &s.duration) {
            failures.push(format!("expect[{i}] ({}..{}): {msg}", e.after, e.by.unwrap_or(s.duration)));
        }
    }
    let v = site.plant.with(SimIsland::violations);
    if v.out_of_phase_closes > 0 {
        failures.push(format!("{} out-of-phase close(s)", v.out_of_phase_closes));
    }
    if v.forming_onto_grid_ms > 0 {
        failures.push(format!("grid-forming onto a live grid for {} ms", v.forming_onto_grid_ms));
    }
    if v.overload_trips > 0 {
        failures.push(format!("{} inverter overload trip(s)", v.overload_trips));
    }
    let events = rows
        .iter()
        .flat_map(|r| r.events.iter().map(move |e| format!("{:>9.3} s {e}", r.at.as_secs_f32())))
        .collect();
    Ok(IslandScenarioReport {
        name: s.name.clone(),
        passed: failures.is_empty(),
        failures,
        violations: v,
        closes,
        final_state: rows.last().map_or_else(String::new, |r| r.state.clone()),
        events,
    })
}

fn holds(e: &IslandExpect, r: &Row) -> Result<(), String> {
    if let Some(s) = &e.state {
        if &r.state != s {
            return Err(format!("state {} (expected {s})", r.state));
        }
    }
    if let Some(b) = e.breaker {
        if r.breaker != b {
            return Err(format!("breaker {:?} (expected {b:?})", r.breaker));
        }
    }
    if let Some(m) = e.inverter {
        if r.inverter != m {
            return Err(format!("inverter {:?} (expected {m:?})", r.inverter));
        }
    }
    let on = |i: usize| {
        u32::try_from(i).ok().and_then(|s| 1_u16.checked_shl(s)).is_some_and(|b| r.relays & b != 0)
    };
    if let Some(i) = e.loads_on.iter().find(|i| !on(**i)) {
        return Err(format!("load {i} off (expected on)"));
    }
    if let Some(i) = e.loads_off.iter().find(|i| on(**i)) {
        return Err(format!("load {i} on (expected off)"));
    }
    if let Some(s) = &e.stop {
        if !r.stop.as_deref().is_some_and(|x| x.contains(s.as_str())) {
            return Err(format!("stop {:?} (expected one containing '{s}')", r.stop));
        }
    }
    if let Some(max) = e.power_limit_max {
        if !r.power_limit.is_some_and(|l| l <= max) {
            return Err(format!("power limit {:?} (expected <= {max})", r.power_limit));
        }
    }
    Ok(())
}

fn check(e: &IslandExpect, rows: &[Row], duration: &Millis) -> Option<String> {
    let by = e.by.unwrap_or(*duration);
    let window: Vec<&Row> = rows.iter().filter(|r| r.at >= e.after && r.at <= by).collect();
    if window.is_empty() {
        return Some("window has no cycle".into());
    }
    if let Some(ev) = &e.event {
        if !window.iter().any(|r| r.events.iter().any(|x| x.contains(ev.as_str()))) {
            return Some(format!("no event containing '{ev}'"));
        }
    }
    if e.no_close {
        if let Some(r) = window.iter().find(|r| r.close) {
            return Some(format!("close commanded at {}", r.at));
        }
    }
    let conditions = e.state.is_some()
        || e.breaker.is_some()
        || e.inverter.is_some()
        || !e.loads_on.is_empty()
        || !e.loads_off.is_empty()
        || e.stop.is_some()
        || e.power_limit_max.is_some();
    if !conditions {
        return None;
    }
    if e.always {
        window.iter().find_map(|r| holds(e, r).err().map(|m| format!("at {}: {m}", r.at)))
    } else if window.iter().any(|r| holds(e, r).is_ok()) {
        None
    } else {
        window.last().and_then(|r| holds(e, r).err()).map(|m| format!("never held; at the end: {m}"))
    }
}

/// Parse and run a file.
///
/// # Errors
/// [`IslandScenarioError`] for a file that does not parse.
pub fn run_island_scenario_file(path: impl AsRef<Path>) -> Result<IslandScenarioReport, IslandScenarioError> {
    run_island_scenario(&IslandScenario::from_file(path)?)
}
