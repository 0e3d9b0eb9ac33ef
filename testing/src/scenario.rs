//! Scenario files: a TOML timeline of faults on top of the simulated site, with the safe
//! reaction each scenario must prove.
//!
//! ```toml
//! name = "H3 cell over-temperature"
//! hazard = "H3"
//! description = "Abnormal heating of the pack; safety derates, then trips."
//! duration = "6h"          # 500ms, 90s, 10m, 6h, 2d, or combined: 1h30m
//! step = "1s"              # optional (default 1 s)
//! seed = 1                 # optional (default 1)
//! operator = true          # optional: the automated operator resets/acknowledges (default true)
//!
//! [site]                   # optional overrides of the simulated site
//! start_day = 152          # 1..=365
//! start_hour = 10          # 0..=23
//! initial_soc = 50         # %
//! ambient = 20             # °C indoors
//! pv_peak = 6000           # W
//! battery_capacity = 10000 # Wh
//! annual_load = 4000       # kWh
//!
//! [[fault]]
//! at = "1h"
//! kind = "cell_heating"    # see FaultSpec for every kind and its parameters
//! watts = 1500
//! for = "2h"               # optional: cleared after this
//!
//! [[expect]]               # checked by the runner
//! after = "1h"             # window start (default 0)
//! by = "3h"                # window end (default: the end of the run)
//! always = false           # true: every condition holds in every cycle of the window
//! state = "ERROR"          # the controller's state
//! trip = "Cell temperature trip"  # a transition to ERROR with this trip reason (substring)
//! event = "E-stop"         # any event whose text contains this
//! command_zero = true      # battery set-point exactly 0 W
//! contactor_open = true    # the physical main contact is open (simulator truth)
//! inverter_local = true    # the inverter is back under its own control at 0 W (lease reverted)
//! ```
//!
//! Every run also requires zero hard-limit violations, zero invariant violations and zero lease
//! violations; expectations add what the *safe reaction* is. Errors name the file, the field and
//! the value: `scenarios/h3.toml line 12: fault[2].at: '1x' is not a duration`.

use crate::faulty::{DeviceFault, Field};
use ems_core::event::Signal;
use ems_core::snapshot::BmsAlarm;
use ems_core::{Millis, State, Volts, Watts};
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// A device a device-level fault is injected into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeviceId {
    /// The BMS.
    Bms,
    /// The battery inverter.
    Inverter,
    /// The grid meter.
    Meter,
    /// The PV inverter.
    Pv,
    /// The pre-charge relay.
    PrechargeRelay,
    /// The main contactor.
    MainRelay,
    /// The E-stop input.
    EStop,
}

impl DeviceId {
    /// Every device.
    pub const ALL: [Self; 7] = [
        Self::Bms,
        Self::Inverter,
        Self::Meter,
        Self::Pv,
        Self::PrechargeRelay,
        Self::MainRelay,
        Self::EStop,
    ];

    /// The name used in scenario files.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Bms => "bms",
            Self::Inverter => "inverter",
            Self::Meter => "meter",
            Self::Pv => "pv",
            Self::PrechargeRelay => "precharge_relay",
            Self::MainRelay => "main_relay",
            Self::EStop => "estop",
        }
    }

    /// Parse [`Self::name`].
    #[must_use]
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == s)
    }

    /// Whether the device is a relay (the only kind a weld applies to).
    #[must_use]
    pub const fn is_relay(self) -> bool {
        matches!(self, Self::PrechargeRelay | Self::MainRelay)
    }
}

/// A physical fault of the simulated site (maps onto the simulator's `SimFault`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PhysicalFault {
    /// Someone presses the E-stop (released after `for`, if given).
    EStopPress,
    /// The E-stop is released.
    EStopRelease,
    /// Extra heat into the pack: an over-temperature ramp (a few hundred W … 1.5 kW) or a
    /// runaway-like rise (several kW).
    CellHeating(Watts),
    /// The BMS raises this alarm.
    BmsAlarm(BmsAlarm),
    /// The inverter faults.
    InverterFault,
    /// The signal is lost at the sensor (the device answering for it times out).
    SensorDropout(Signal),
    /// One cell drifts above the others.
    CellImbalance(Volts),
    /// The main contact welds (simulator: stays closed, feedback closed).
    ContactorWeld,
    /// The main contact does not close when energised.
    ContactorStuckOpen,
    /// The pre-charge resistor is open: the DC link never charges.
    PrechargeResistorOpen,
    /// The inverter accepts set-points and applies none (read-back stays old).
    InverterIgnoresSetpoint,
    /// The inverter applies each set-point only after this delay.
    InverterDelay(Millis),
    /// Runaway-like internal heat: starts at the given watts and doubles every `doubling`.
    CellRunaway {
        /// Heat at injection.
        initial: Watts,
        /// Doubling time.
        doubling: Millis,
    },
}

/// What a timeline entry does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FaultSpec {
    /// A physical fault in the simulated site.
    Physical(PhysicalFault),
    /// A device-level fault through `Faulty<D>`.
    Device(DeviceId, DeviceFault),
    /// The gateway process dies without a graceful shutdown and restarts after `down`,
    /// restoring the controller from the persisted state.
    GatewayCrash {
        /// How long the gateway stays down.
        down: Millis,
    },
    /// The automated operator does nothing (no reset, acknowledge or start) for `for`.
    OperatorAway,
}

impl FaultSpec {
    /// The kind's name as used in scenario files and report keys.
    #[must_use]
    pub const fn kind_name(&self) -> &'static str {
        match self {
            Self::Physical(p) => match p {
                PhysicalFault::EStopPress => "estop",
                PhysicalFault::EStopRelease => "estop_release",
                PhysicalFault::CellHeating(_) => "cell_heating",
                PhysicalFault::BmsAlarm(_) => "bms_alarm",
                PhysicalFault::InverterFault => "inverter_fault",
                PhysicalFault::SensorDropout(_) => "sensor_dropout",
                PhysicalFault::CellImbalance(_) => "cell_imbalance",
                PhysicalFault::ContactorWeld => "contactor_weld",
                PhysicalFault::ContactorStuckOpen => "contactor_stuck_open",
                PhysicalFault::PrechargeResistorOpen => "precharge_resistor_open",
                PhysicalFault::InverterIgnoresSetpoint => "inverter_ignores_setpoint",
                PhysicalFault::InverterDelay(_) => "inverter_delay",
                PhysicalFault::CellRunaway { .. } => "cell_runaway",
            },
            Self::Device(_, f) => f.name(),
            Self::GatewayCrash { .. } => "gateway_crash",
            Self::OperatorAway => "operator_away",
        }
    }
}

/// One entry of the timeline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimedFault {
    /// When (simulated time since the start of the run).
    pub at: Millis,
    /// Cleared after this long (`None`: stays, or is instantaneous).
    pub for_: Option<Millis>,
    /// What.
    pub fault: FaultSpec,
}

/// A condition the run must meet.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Expectation {
    /// Index in the file (`expect[i]`), for messages.
    pub index: usize,
    /// Window start.
    pub after: Millis,
    /// Window end (`None`: the end of the run).
    pub by: Option<Millis>,
    /// Whether the conditions must hold in every cycle of the window (else: in at least one).
    pub always: bool,
    /// The controller state.
    pub state: Option<State>,
    /// A trip (transition to ERROR) whose reason contains this text, in the window.
    pub trip: Option<String>,
    /// Any event whose text contains this, in the window.
    pub event: Option<String>,
    /// Whether the battery set-point is exactly zero.
    pub command_zero: Option<bool>,
    /// Whether the physical main contact is open.
    pub contactor_open: Option<bool>,
    /// Whether the inverter runs on its own control (`Local`) at 0 W — the lease reverted it.
    pub inverter_local: Option<bool>,
}

/// Overrides of the simulated site.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SiteOverrides {
    /// Day of the year (1..=365).
    pub start_day: Option<u16>,
    /// Hour of the day (0..=23).
    pub start_hour: Option<u8>,
    /// Initial SOC (%).
    pub initial_soc: Option<f32>,
    /// Indoor ambient (°C).
    pub ambient: Option<f32>,
    /// PV peak (W).
    pub pv_peak: Option<f32>,
    /// Battery capacity (Wh).
    pub battery_capacity: Option<f32>,
    /// Annual household consumption (kWh).
    pub annual_load: Option<f32>,
}

/// A parsed and validated scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Where it came from (for messages), `None` for inline text.
    pub path: Option<PathBuf>,
    /// Title.
    pub name: String,
    /// The hazard row of docs/SAFETY.md it proves (`H3`), if any.
    pub hazard: Option<String>,
    /// Free text.
    pub description: String,
    /// Simulated duration.
    pub duration: Millis,
    /// Control and physics step.
    pub step: Millis,
    /// Seed of the site's noise.
    pub seed: u64,
    /// Whether the automated operator acts.
    pub operator: bool,
    /// Site overrides.
    pub site: SiteOverrides,
    /// The timeline, sorted by time.
    pub faults: Vec<TimedFault>,
    /// What must happen.
    pub expects: Vec<Expectation>,
}

/// A scenario that could not be read or is invalid: names the file, the line, the field and
/// the value (`scenarios/h3.toml line 7: fault[1].at: '1x' is not a duration …`).
pub type ScenarioError = ems_tomlfile::SpannedError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: String,
    hazard: Option<String>,
    description: Option<String>,
    duration: String,
    step: Option<String>,
    seed: Option<u64>,
    operator: Option<bool>,
    #[serde(default)]
    site: RawSite,
    #[serde(default, rename = "fault")]
    faults: Vec<RawFault>,
    #[serde(default, rename = "expect")]
    expects: Vec<RawExpect>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSite {
    start_day: Option<i64>,
    start_hour: Option<i64>,
    initial_soc: Option<f64>,
    ambient: Option<f64>,
    pv_peak: Option<f64>,
    battery_capacity: Option<f64>,
    annual_load: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFault {
    at: String,
    kind: String,
    device: Option<String>,
    #[serde(rename = "for")]
    for_: Option<String>,
    watts: Option<f64>,
    volts: Option<f64>,
    alarm: Option<String>,
    signal: Option<String>,
    field: Option<String>,
    delay: Option<String>,
    doubling: Option<String>,
    down: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    after: Option<String>,
    by: Option<String>,
    always: Option<bool>,
    state: Option<String>,
    trip: Option<String>,
    event: Option<String>,
    command_zero: Option<bool>,
    contactor_open: Option<bool>,
    inverter_local: Option<bool>,
}

/// Parse a duration: one or more `<number><unit>` with unit `ms`, `s`, `m`, `h` or `d`
/// (`90s`, `1h30m`, `500ms`). A bare number is refused (the unit is never guessed).
pub fn parse_duration(s: &str) -> Option<Millis> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit_ms, len) = if rest.starts_with("ms") {
            (1, 2)
        } else if rest.starts_with('s') {
            (1_000, 1)
        } else if rest.starts_with('m') {
            (60_000, 1)
        } else if rest.starts_with('h') {
            (3_600_000, 1)
        } else if rest.starts_with('d') {
            (86_400_000, 1)
        } else {
            return None;
        };
        rest = &rest[len..];
        total = total.checked_add(n.checked_mul(unit_ms)?)?;
    }
    Some(Millis::new(total))
}

/// `CellTemperature` → `cell_temperature`.
fn snake(debug_name: &str) -> String {
    let mut out = String::with_capacity(debug_name.len() + 4);
    for (i, c) in debug_name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The scenario-file name of a signal (`cell_temperature`).
#[must_use]
pub fn signal_name(s: Signal) -> String {
    snake(&format!("{s:?}"))
}

/// The scenario-file name of a BMS alarm (`over_temperature`).
#[must_use]
pub fn alarm_name(a: BmsAlarm) -> String {
    snake(&format!("{a:?}"))
}

fn one_of<T: Copy>(all: &[T], name: impl Fn(T) -> String) -> String {
    all.iter().map(|t| name(*t)).collect::<Vec<_>>().join(", ")
}

struct Ctx<'a> {
    src: ems_tomlfile::Source<'a>,
}

impl Ctx<'_> {
    /// An error about `field` (a dotted path), at the line the file sets it.
    fn err(&self, field: &str, message: impl fmt::Display) -> ScenarioError {
        self.src.at_path(field, message.to_string())
    }

    fn duration(&self, field: &str, s: &str) -> Result<Millis, ScenarioError> {
        parse_duration(s).ok_or_else(|| {
            self.err(field, format_args!("'{s}' is not a duration (e.g. 500ms, 90s, 10m, 6h, 2d, 1h30m)"))
        })
    }

    fn opt_duration(&self, field: &str, s: Option<&String>) -> Result<Option<Millis>, ScenarioError> {
        s.map(|s| self.duration(field, s)).transpose()
    }

    fn finite(&self, field: &str, v: f64, lo: f64, hi: f64) -> Result<f32, ScenarioError> {
        if v.is_finite() && (lo..=hi).contains(&v) {
            // Range-checked above, well inside f32.
            #[allow(clippy::cast_possible_truncation)]
            Ok(v as f32)
        } else {
            Err(self.err(field, format_args!("{v} is outside {lo}..={hi}")))
        }
    }
}

impl Scenario {
    /// Read and validate a scenario file.
    ///
    /// # Errors
    /// [`ScenarioError`] naming the file, the field and the value.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ScenarioError> {
        let path = path.as_ref();
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ScenarioError::new(path, format!("cannot read: {e}")))?;
        let mut s = Self::parse_named(&text, &source)?;
        s.path = Some(path.to_owned());
        Ok(s)
    }

    /// Parse scenario text (`source` names it in errors).
    ///
    /// # Errors
    /// [`ScenarioError`] naming the source, the field and the value.
    pub fn parse_named(text: &str, source: &str) -> Result<Self, ScenarioError> {
        let cx = Ctx { src: ems_tomlfile::Source::new(Path::new(source), text) };
        let raw: RawScenario = cx.src.decode(&[])?;
        let duration = cx.duration("duration", &raw.duration)?;
        if duration == Millis::ZERO {
            return Err(cx.err("duration", "must be longer than 0"));
        }
        let step = match &raw.step {
            Some(s) => cx.duration("step", s)?,
            None => Millis::new(1_000),
        };
        if step == Millis::ZERO || step > Millis::new(60_000) {
            let raw = raw.step.as_deref().unwrap_or_default();
            return Err(cx.err("step", format_args!("'{raw}' must be between 1 ms and 60 s")));
        }
        let site = parse_site(&cx, &raw.site)?;
        let mut faults = Vec::with_capacity(raw.faults.len());
        for (i, f) in raw.faults.iter().enumerate() {
            let tf = parse_fault(&cx, i, f)?;
            if tf.at >= duration {
                return Err(cx.err(
                    &format!("fault[{i}].at"),
                    format_args!("'{}' is not before the end of the run", f.at),
                ));
            }
            faults.push(tf);
        }
        faults.sort_by_key(|f| f.at);
        let mut expects = Vec::with_capacity(raw.expects.len());
        for (i, e) in raw.expects.iter().enumerate() {
            expects.push(parse_expect(&cx, i, e, duration)?);
        }
        if raw.name.trim().is_empty() {
            return Err(cx.err("name", "must not be empty"));
        }
        Ok(Self {
            path: None,
            name: raw.name,
            hazard: raw.hazard,
            description: raw.description.unwrap_or_default(),
            duration,
            step,
            seed: raw.seed.unwrap_or(1),
            operator: raw.operator.unwrap_or(true),
            site,
            faults,
            expects,
        })
    }

    /// The name to show: file stem or title.
    #[must_use]
    pub fn label(&self) -> String {
        self.path
            .as_ref()
            .and_then(|p| p.file_name())
            .map_or_else(|| self.name.clone(), |f| f.to_string_lossy().into_owned())
    }
}

fn parse_site(cx: &Ctx<'_>, s: &RawSite) -> Result<SiteOverrides, ScenarioError> {
    let start_day = s
        .start_day
        .map(|d| {
            u16::try_from(d)
                .ok()
                .filter(|d| (1..=365).contains(d))
                .ok_or_else(|| cx.err("site.start_day", format_args!("{d} is outside 1..=365")))
        })
        .transpose()?;
    let start_hour = s
        .start_hour
        .map(|h| {
            u8::try_from(h)
                .ok()
                .filter(|h| *h < 24)
                .ok_or_else(|| cx.err("site.start_hour", format_args!("{h} is outside 0..=23")))
        })
        .transpose()?;
    Ok(SiteOverrides {
        start_day,
        start_hour,
        initial_soc: s.initial_soc.map(|v| cx.finite("site.initial_soc", v, 0.0, 100.0)).transpose()?,
        ambient: s.ambient.map(|v| cx.finite("site.ambient", v, -40.0, 60.0)).transpose()?,
        pv_peak: s.pv_peak.map(|v| cx.finite("site.pv_peak", v, 0.0, 1.0e7)).transpose()?,
        battery_capacity: s
            .battery_capacity
            .map(|v| cx.finite("site.battery_capacity", v, 100.0, 1.0e7))
            .transpose()?,
        annual_load: s.annual_load.map(|v| cx.finite("site.annual_load", v, 0.0, 1.0e7)).transpose()?,
    })
}

fn parse_fault(cx: &Ctx<'_>, i: usize, f: &RawFault) -> Result<TimedFault, ScenarioError> {
    let field = |name: &str| format!("fault[{i}].{name}");
    let at = cx.duration(&field("at"), &f.at)?;
    let for_ = cx.opt_duration(&field("for"), f.for_.as_ref())?;
    let need = |v: Option<f64>, name: &str, lo: f64, hi: f64| -> Result<f32, ScenarioError> {
        let v = v.ok_or_else(|| cx.err(&field(name), format_args!("is required for kind '{}'", f.kind)))?;
        cx.finite(&field(name), v, lo, hi)
    };
    let physical = |p| Ok(FaultSpec::Physical(p));
    let fault = match f.kind.as_str() {
        "estop" => physical(PhysicalFault::EStopPress),
        "estop_release" => physical(PhysicalFault::EStopRelease),
        "cell_heating" => {
            physical(PhysicalFault::CellHeating(Watts::saturating(need(f.watts, "watts", 0.0, 1.0e6)?)))
        }
        "bms_alarm" => {
            let name = f.alarm.as_deref().unwrap_or("internal");
            let alarm = BmsAlarm::ALL.into_iter().find(|a| alarm_name(*a) == name).ok_or_else(|| {
                cx.err(
                    &field("alarm"),
                    format_args!("'{name}' is not one of {}", one_of(&BmsAlarm::ALL, alarm_name)),
                )
            })?;
            physical(PhysicalFault::BmsAlarm(alarm))
        }
        "inverter_fault" => physical(PhysicalFault::InverterFault),
        "sensor_dropout" => {
            let name = f
                .signal
                .as_deref()
                .ok_or_else(|| cx.err(&field("signal"), "is required for kind 'sensor_dropout'"))?;
            let signal = Signal::ALL.into_iter().find(|s| signal_name(*s) == name).ok_or_else(|| {
                cx.err(
                    &field("signal"),
                    format_args!("'{name}' is not one of {}", one_of(&Signal::ALL, signal_name)),
                )
            })?;
            if for_.is_none() {
                return Err(cx.err(&field("for"), "is required for kind 'sensor_dropout'"));
            }
            physical(PhysicalFault::SensorDropout(signal))
        }
        "cell_imbalance" => {
            physical(PhysicalFault::CellImbalance(Volts::saturating(need(f.volts, "volts", 0.0, 2.0)?)))
        }
        "contactor_weld" => physical(PhysicalFault::ContactorWeld),
        "contactor_stuck_open" => physical(PhysicalFault::ContactorStuckOpen),
        "precharge_resistor_open" => physical(PhysicalFault::PrechargeResistorOpen),
        "inverter_ignores_setpoint" => physical(PhysicalFault::InverterIgnoresSetpoint),
        "inverter_delay" => {
            let d = f
                .delay
                .as_ref()
                .ok_or_else(|| cx.err(&field("delay"), "is required for kind 'inverter_delay'"))?;
            physical(PhysicalFault::InverterDelay(cx.duration(&field("delay"), d)?))
        }
        "cell_runaway" => {
            let initial = Watts::saturating(need(f.watts, "watts", 0.0, 1.0e6)?);
            let d = f
                .doubling
                .as_ref()
                .ok_or_else(|| cx.err(&field("doubling"), "is required for kind 'cell_runaway'"))?;
            let doubling = cx.duration(&field("doubling"), d)?;
            if doubling == Millis::ZERO {
                return Err(cx.err(&field("doubling"), format_args!("'{d}' must be longer than 0")));
            }
            physical(PhysicalFault::CellRunaway { initial, doubling })
        }
        "gateway_crash" => {
            let down = cx.opt_duration(&field("down"), f.down.as_ref())?.unwrap_or(Millis::new(30_000));
            Ok(FaultSpec::GatewayCrash { down })
        }
        "operator_away" => {
            if for_.is_none() {
                return Err(cx.err(&field("for"), "is required for kind 'operator_away'"));
            }
            Ok(FaultSpec::OperatorAway)
        }
        kind => parse_device_fault(cx, i, f, kind),
    }?;
    Ok(TimedFault { at, for_, fault })
}

/// A device fault (`comm_loss`, `stuck`, `relay_weld`, ...) on the device named by `device`;
/// an unknown kind is refused here with the list of every kind.
fn parse_device_fault(cx: &Ctx<'_>, i: usize, f: &RawFault, kind: &str) -> Result<FaultSpec, ScenarioError> {
    let field = |name: &str| format!("fault[{i}].{name}");
    let fault = match kind {
        "comm_loss" => DeviceFault::CommLoss,
        "timeout" => DeviceFault::Timeout,
        "frozen" => DeviceFault::Frozen,
        "garbage" => DeviceFault::Garbage,
        "out_of_range" => DeviceFault::OutOfRange,
        "spike" => DeviceFault::Spike,
        "stuck" => {
            let name = f.field.as_deref().unwrap_or("primary");
            DeviceFault::Stuck(Field::from_name(name).ok_or_else(|| {
                cx.err(
                    &field("field"),
                    format_args!("'{name}' is not one of {}", one_of(&Field::ALL, |f| f.name().to_owned())),
                )
            })?)
        }
        "ignore_commands" => DeviceFault::IgnoreCommands,
        "delay" => {
            let d =
                f.delay.as_ref().ok_or_else(|| cx.err(&field("delay"), "is required for kind 'delay'"))?;
            DeviceFault::Delay(cx.duration(&field("delay"), d)?)
        }
        "relay_weld" => DeviceFault::RelayWeld,
        other => {
            return Err(cx.err(
                &field("kind"),
                format_args!(
                    "'{other}' is not one of estop, estop_release, cell_heating, cell_runaway, bms_alarm, \
                     inverter_fault, sensor_dropout, cell_imbalance, contactor_weld, contactor_stuck_open, \
                     precharge_resistor_open, inverter_ignores_setpoint, inverter_delay, gateway_crash, \
                     operator_away, comm_loss, timeout, frozen, garbage, out_of_range, spike, stuck, \
                     ignore_commands, delay, relay_weld"
                ),
            ))
        }
    };
    let name = f
        .device
        .as_deref()
        .ok_or_else(|| cx.err(&field("device"), format_args!("is required for kind '{kind}'")))?;
    let device = DeviceId::from_name(name).ok_or_else(|| {
        cx.err(
            &field("device"),
            format_args!("'{name}' is not one of {}", one_of(&DeviceId::ALL, |d| d.name().to_owned())),
        )
    })?;
    if fault == DeviceFault::RelayWeld && !device.is_relay() {
        return Err(cx.err(
            &field("device"),
            format_args!("'{name}' is not a relay (relay_weld needs precharge_relay or main_relay)"),
        ));
    }
    Ok(FaultSpec::Device(device, fault))
}

fn parse_expect(
    cx: &Ctx<'_>,
    i: usize,
    e: &RawExpect,
    duration: Millis,
) -> Result<Expectation, ScenarioError> {
    let field = |name: &str| format!("expect[{i}].{name}");
    let after = cx.opt_duration(&field("after"), e.after.as_ref())?.unwrap_or(Millis::ZERO);
    let by = cx.opt_duration(&field("by"), e.by.as_ref())?;
    if let Some(b) = by {
        if b < after {
            let raw = e.by.as_deref().unwrap_or_default();
            return Err(cx.err(&field("by"), format_args!("'{raw}' is before 'after' ({after})")));
        }
        if b > duration {
            let raw = e.by.as_deref().unwrap_or_default();
            return Err(
                cx.err(&field("by"), format_args!("'{raw}' is after the end of the run ({duration})"))
            );
        }
    }
    let state = e
        .state
        .as_deref()
        .map(|s| {
            State::from_name(s).ok_or_else(|| {
                cx.err(
                    &field("state"),
                    format_args!("'{s}' is not one of BOOT, IDLE, RUNNING, ERROR, STOPPED"),
                )
            })
        })
        .transpose()?;
    let x = Expectation {
        index: i,
        after,
        by,
        always: e.always.unwrap_or(false),
        state,
        trip: e.trip.clone(),
        event: e.event.clone(),
        command_zero: e.command_zero,
        contactor_open: e.contactor_open,
        inverter_local: e.inverter_local,
    };
    if x.state.is_none()
        && x.trip.is_none()
        && x.event.is_none()
        && x.command_zero.is_none()
        && x.contactor_open.is_none()
        && x.inverter_local.is_none()
    {
        return Err(cx.err(
            &format!("expect[{i}]"),
            "names no condition (state, trip, event, command_zero, contactor_open, inverter_local)",
        ));
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "H3 cell over-temperature"
hazard = "H3"
duration = "6h"
[site]
start_hour = 10
[[fault]]
at = "2h"
kind = "comm_loss"
device = "bms"
for = "1m"
[[fault]]
at = "1h"
kind = "cell_heating"
watts = 1500
for = "2h"
[[fault]]
at = "3h"
kind = "stuck"
device = "bms"
field = "cell_temperature"
[[fault]]
at = "4h"
kind = "delay"
device = "inverter"
delay = "5s"
[[expect]]
by = "3h"
state = "ERROR"
trip = "Cell temperature trip"
"#;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Some(Millis::new(90_000)));
        assert_eq!(parse_duration("1h30m"), Some(Millis::new(5_400_000)));
        assert_eq!(parse_duration("500ms"), Some(Millis::new(500)));
        assert_eq!(parse_duration("2d"), Some(Millis::new(172_800_000)));
        for bad in ["", "1x", "90", "s", "1.5h", "-1s", "99999999999999999999d"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn parses_a_scenario_sorted_by_time() {
        let s = Scenario::parse_named(GOOD, "h3.toml").unwrap();
        assert_eq!(s.duration, Millis::new(6 * 3_600_000));
        assert_eq!(s.step, Millis::new(1_000));
        assert!(s.operator);
        assert_eq!(s.site.start_hour, Some(10));
        assert_eq!(
            s.faults[0].fault,
            FaultSpec::Physical(PhysicalFault::CellHeating(ems_core::watts!(1500.0)))
        );
        assert_eq!(s.faults[1].fault, FaultSpec::Device(DeviceId::Bms, DeviceFault::CommLoss));
        assert_eq!(s.faults[1].for_, Some(Millis::new(60_000)));
        assert_eq!(
            s.faults[2].fault,
            FaultSpec::Device(DeviceId::Bms, DeviceFault::Stuck(Field::CellTemperature))
        );
        assert_eq!(
            s.faults[3].fault,
            FaultSpec::Device(DeviceId::Inverter, DeviceFault::Delay(Millis::new(5_000)))
        );
        assert_eq!(s.expects[0].state, Some(State::Error));
        assert_eq!(s.expects[0].by, Some(Millis::new(3 * 3_600_000)));
    }

    fn err(text: &str) -> String {
        Scenario::parse_named(text, "scenarios/x.toml").unwrap_err().to_string()
    }

    #[test]
    fn errors_name_file_field_and_value() {
        let base = "name = \"x\"\nduration = \"1h\"\n";
        let e = err(&format!(
            "{base}[[fault]]\nat = \"1m\"\nkind = \"estop\"\n[[fault]]\nat = \"1x\"\nkind = \"estop\"\n"
        ));
        assert_eq!(
            e,
            "scenarios/x.toml line 7: fault[1].at: '1x' is not a duration (e.g. 500ms, 90s, 10m, 6h, 2d, 1h30m)"
        );
        let e = err(&format!("{base}[[fault]]\nat = \"1m\"\nkind = \"comm_loss\"\ndevice = \"toaster\"\n"));
        assert!(
            e.starts_with("scenarios/x.toml line 6: fault[0].device: 'toaster' is not one of bms,"),
            "{e}"
        );
        let e = err(&format!("{base}[[fault]]\nat = \"1m\"\nkind = \"melt\"\n"));
        assert!(e.contains("fault[0].kind: 'melt' is not one of"), "{e}");
        let e = err(&format!("{base}[[fault]]\nat = \"1m\"\nkind = \"relay_weld\"\ndevice = \"bms\"\n"));
        assert!(e.contains("fault[0].device: 'bms' is not a relay"), "{e}");
        let e = err(&format!("{base}[[expect]]\nstate = \"PARK\"\n"));
        assert!(e.contains("expect[0].state: 'PARK' is not one of"), "{e}");
        let e = err(&format!("{base}[[expect]]\nby = \"2h\"\nstate = \"IDLE\"\n"));
        assert!(e.contains("expect[0].by: '2h"), "{e}");
        let e = err(&format!("{base}[[expect]]\nby = \"20m\"\n"));
        assert!(e.contains("expect[0]: names no condition"), "{e}");
        let e = err(&format!("{base}[site]\nstart_day = 400\n"));
        assert!(e.contains("site.start_day: 400 is outside 1..=365"), "{e}");
        let e = err(&format!(
            "{base}[[fault]]\nat = \"1m\"\nkind = \"sensor_dropout\"\nsignal = \"cell_temp\"\nfor = \"1s\"\n"
        ));
        assert!(e.contains("fault[0].signal: 'cell_temp' is not one of soc,"), "{e}");
        let e = err(&format!("{base}[[fault]]\nat = \"2h\"\nkind = \"estop\"\n"));
        assert!(e.contains("fault[0].at: '2h' is not before the end"), "{e}");
        // Unknown keys and TOML syntax errors name the file and the line too.
        let e = err(&format!("{base}colour = 3\n"));
        assert!(e.starts_with("scenarios/x.toml line 3") && e.contains("colour"), "{e}");
        let e = err("name = \"x\"\n");
        assert!(e.contains("duration"), "{e}");
    }

    #[test]
    fn names_of_signals_and_alarms() {
        assert_eq!(signal_name(Signal::CellTemperature), "cell_temperature");
        assert_eq!(signal_name(Signal::EStop), "e_stop");
        assert_eq!(alarm_name(BmsAlarm::OverTemperature), "over_temperature");
    }
}
