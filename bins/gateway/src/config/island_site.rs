//! The island devices of a **real site** (`[island.breaker]`, `[island.inverter_mode]` and a
//! `relay` per `[[island.loads]]` circuit in the site file): the grid-tie breaker, the
//! inverter's grid-mode registers and the load-shedding relays on Modbus, in the register
//! layout of `ems_devices::island::modbus` (a command is one holding register, a contact one bit
//! of a register, a measurement one 16-bit register with a scale).
//!
//! ```toml
//! [island.breaker]
//! endpoint = "modbus-tcp://192.168.1.40:502"
//! unit = 1                      # default 1
//! timeout_ms = 500              # default 500
//! command_register = 0          # written open_value to open, close_value to close
//! open_value = 0
//! close_value = 1
//! position = { table = "input", register = 0, bit = 0 }   # auxiliary contact, set = closed
//!
//! [island.inverter_mode]
//! endpoint = "modbus-tcp://192.168.1.41:502"
//! rating_w = 5000               # the inverter's grid-forming rating
//! command_register = 10
//! mode = { table = "holding", register = 11 }              # the mode it is in
//! values = { off = 0, grid_following = 1, grid_forming = 2, synchronise = 3 }   # default
//! fault = { table = "holding", register = 12, bit = 0 }    # optional
//! grid_voltage = { table = "holding", register = 13, scale = 0.1 }   # optional measurements:
//! grid_frequency = { table = "holding", register = 14, scale = 0.01 } # bus_voltage,
//! # bus_frequency, grid_voltage, grid_frequency, phase_difference (signed = true)
//! ac_power = { table = "holding", register = 18, scale = 1, signed = true }   # required
//!
//! [[island.loads]]
//! name = "fridge"
//! priority = 0
//! nominal_w = 300
//! relay = { coil_register = 20, feedback = { table = "holding", register = 21, bit = 0 } }
//! # a relay is on the breaker's module unless it names its own endpoint / unit / timeout_ms
//! ```

use super::errors::ConfigError;
use super::wiring::IoModule;
use ems_core::Watts;
use ems_devices::island::{GridModeRegisters, GridModeValues, ScaledRegister};
use ems_devices::modbus::io::IoPoint;
use ems_devices::modbus::transport::ModbusEndpoint;
use ems_devices::modbus::{RegisterAddress, RegisterKind};
use serde::Deserialize;
use std::path::Path;

/// `[island.breaker]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BreakerEntry {
    endpoint: String,
    unit: Option<u8>,
    timeout_ms: Option<u64>,
    command_register: u16,
    open_value: u16,
    close_value: u16,
    position: PointEntry,
}

/// `[island.inverter_mode]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GridModeEntry {
    endpoint: String,
    unit: Option<u8>,
    timeout_ms: Option<u64>,
    rating_w: f64,
    command_register: u16,
    mode: RegisterEntry,
    values: Option<ValuesEntry>,
    fault: Option<PointEntry>,
    bus_voltage: Option<ScaledEntry>,
    bus_frequency: Option<ScaledEntry>,
    grid_voltage: Option<ScaledEntry>,
    grid_frequency: Option<ScaledEntry>,
    phase_difference: Option<ScaledEntry>,
    ac_power: Option<ScaledEntry>,
}

/// A load circuit's relay as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RelayEntry {
    endpoint: Option<String>,
    unit: Option<u8>,
    timeout_ms: Option<u64>,
    coil_register: u16,
    feedback: PointEntry,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PointEntry {
    table: Option<String>,
    register: u16,
    bit: u8,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterEntry {
    table: Option<String>,
    register: u16,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScaledEntry {
    table: Option<String>,
    register: u16,
    scale: f64,
    #[serde(default)]
    signed: bool,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
struct ValuesEntry {
    off: u16,
    grid_following: u16,
    grid_forming: u16,
    synchronise: u16,
}

/// The island devices of a real site, validated.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct IslandModbusWiring {
    /// The inverter's grid-forming rating.
    pub rating: Watts,
    /// The breaker's module.
    pub breaker_module: IoModule,
    /// Its command register and the values that open and close it.
    pub breaker_command: (RegisterAddress, u16, u16),
    /// Its auxiliary contact (set = closed).
    pub breaker_position: IoPoint,
    /// The inverter's connection.
    pub inverter_module: IoModule,
    /// Its grid-mode registers.
    pub inverter: GridModeRegisters,
    /// One relay per load circuit, in the load table's order: module, coil, feedback.
    pub relays: Vec<(IoModule, RegisterAddress, IoPoint)>,
}

fn err(path: &Path, field: &str, value: impl std::fmt::Display, why: &str) -> ConfigError {
    ConfigError::new(path, format!("field '{field}' = {value} {why}"))
}

fn module(
    path: &Path,
    section: &str,
    endpoint: &str,
    unit: Option<u8>,
    timeout_ms: Option<u64>,
) -> Result<IoModule, ConfigError> {
    endpoint.parse::<ModbusEndpoint>().map_err(|e| {
        err(
            path,
            &format!("{section}.endpoint"),
            format!("\"{endpoint}\""),
            &format!("is not a Modbus endpoint: {e}"),
        )
    })?;
    let unit = unit.unwrap_or(1);
    if unit > 247 {
        return Err(err(path, &format!("{section}.unit"), unit, "is outside 0..=247"));
    }
    let timeout_ms = timeout_ms.unwrap_or(500);
    if !(10..=60_000).contains(&timeout_ms) {
        return Err(err(path, &format!("{section}.timeout_ms"), timeout_ms, "is outside 10..=60000 ms"));
    }
    Ok(IoModule { endpoint: endpoint.to_owned(), unit, timeout_ms })
}

fn table(
    path: &Path,
    field: &str,
    t: Option<&String>,
    default: RegisterKind,
) -> Result<RegisterKind, ConfigError> {
    match t.map(String::as_str) {
        None => Ok(default),
        Some("input") => Ok(RegisterKind::Input),
        Some("holding") => Ok(RegisterKind::Holding),
        Some(other) => Err(err(path, field, format!("\"{other}\""), "is not one of input, holding")),
    }
}

fn point(path: &Path, field: &str, p: &PointEntry) -> Result<IoPoint, ConfigError> {
    let kind = table(path, &format!("{field}.table"), p.table.as_ref(), RegisterKind::Input)?;
    IoPoint::new(kind, RegisterAddress(p.register), p.bit)
        .map_err(|_| err(path, &format!("{field}.bit"), p.bit, "is outside 0..=15"))
}

fn scaled(path: &Path, field: &str, s: Option<&ScaledEntry>) -> Result<Option<ScaledRegister>, ConfigError> {
    let Some(s) = s else { return Ok(None) };
    let table = table(path, &format!("{field}.table"), s.table.as_ref(), RegisterKind::Holding)?;
    if !s.scale.is_finite() || s.scale == 0.0 || s.scale.abs() > 1.0e4 {
        return Err(err(path, &format!("{field}.scale"), s.scale, "must be a non-zero factor within ±10000"));
    }
    #[allow(clippy::cast_possible_truncation)] // validated within ±1e4
    let scale = s.scale as f32;
    Ok(Some(ScaledRegister { table, address: RegisterAddress(s.register), signed: s.signed, scale }))
}

/// Validate the island devices of a real site; `relays` are the loads' relay entries in the
/// load table's order (each required).
///
/// # Errors
/// [`ConfigError`] naming the file, the field and the value.
pub(crate) fn island_modbus(
    path: &Path,
    breaker: &BreakerEntry,
    inverter: &GridModeEntry,
    relays: &[(String, Option<&RelayEntry>)],
) -> Result<IslandModbusWiring, ConfigError> {
    const B: &str = "island.breaker";
    const V: &str = "island.inverter_mode";
    let breaker_module = module(path, B, &breaker.endpoint, breaker.unit, breaker.timeout_ms)?;
    if breaker.open_value == breaker.close_value {
        return Err(err(
            path,
            &format!("{B}.close_value"),
            breaker.close_value,
            "must differ from open_value",
        ));
    }
    let breaker_position = point(path, &format!("{B}.position"), &breaker.position)?;
    let inverter_module = module(path, V, &inverter.endpoint, inverter.unit, inverter.timeout_ms)?;
    if !inverter.rating_w.is_finite() || !(1.0..=1.0e7).contains(&inverter.rating_w) {
        return Err(err(path, &format!("{V}.rating_w"), inverter.rating_w, "must be within 1..=10000000 W"));
    }
    #[allow(clippy::cast_possible_truncation)] // validated within 1..=1e7
    let rating = Watts::saturating(inverter.rating_w as f32);
    let mode_table =
        table(path, &format!("{V}.mode.table"), inverter.mode.table.as_ref(), RegisterKind::Holding)?;
    let mut regs = GridModeRegisters::new(
        RegisterAddress(inverter.command_register),
        (mode_table, RegisterAddress(inverter.mode.register)),
    );
    if let Some(v) = inverter.values {
        let all = [v.off, v.grid_following, v.grid_forming, v.synchronise];
        if all.iter().enumerate().any(|(i, a)| all.iter().skip(i + 1).any(|b| a == b)) {
            return Err(err(
                path,
                &format!("{V}.values"),
                format!(
                    "{{ off = {}, grid_following = {}, grid_forming = {}, synchronise = {} }}",
                    v.off, v.grid_following, v.grid_forming, v.synchronise
                ),
                "must be four different values",
            ));
        }
        regs.values = GridModeValues {
            off: v.off,
            grid_following: v.grid_following,
            grid_forming: v.grid_forming,
            synchronise: v.synchronise,
        };
    }
    regs.fault = inverter.fault.as_ref().map(|f| point(path, &format!("{V}.fault"), f)).transpose()?;
    regs.bus_voltage = scaled(path, &format!("{V}.bus_voltage"), inverter.bus_voltage.as_ref())?;
    regs.bus_frequency = scaled(path, &format!("{V}.bus_frequency"), inverter.bus_frequency.as_ref())?;
    regs.grid_voltage = scaled(path, &format!("{V}.grid_voltage"), inverter.grid_voltage.as_ref())?;
    regs.grid_frequency = scaled(path, &format!("{V}.grid_frequency"), inverter.grid_frequency.as_ref())?;
    regs.phase_difference =
        scaled(path, &format!("{V}.phase_difference"), inverter.phase_difference.as_ref())?;
    regs.ac_power = scaled(path, &format!("{V}.ac_power"), inverter.ac_power.as_ref())?;
    if regs.ac_power.is_none() {
        // The island's load is what the sequence restores circuits against: without it no
        // circuit would ever come back on the island.
        return Err(ConfigError::new(
            path,
            format!("field '{V}.ac_power' is required on a real site: the inverter's AC power register (the island's load, against which circuits are restored)"),
        ));
    }
    let mut out = Vec::new();
    for (i, (name, relay)) in relays.iter().enumerate() {
        let field = format!("island.loads[{i}].relay");
        let Some(r) = relay else {
            return Err(ConfigError::new(
                path,
                format!("field '{field}' is required on a real site (circuit \"{name}\": its load-shedding relay)"),
            ));
        };
        // On the breaker's module unless it names its own; validated like every module.
        let m = module(
            path,
            &field,
            r.endpoint.as_deref().unwrap_or(&breaker_module.endpoint),
            Some(r.unit.unwrap_or(breaker_module.unit)),
            Some(r.timeout_ms.unwrap_or(breaker_module.timeout_ms)),
        )?;
        let feedback = point(path, &format!("{field}.feedback"), &r.feedback)?;
        out.push((m, RegisterAddress(r.coil_register), feedback));
    }
    // Two commands on one register of one module (the breaker's and a relay's, the inverter's
    // mode and a relay's, two relays on one coil) would drive each other: refused.
    let mut coils: Vec<(String, &IoModule, u16)> = vec![
        ("island.breaker.command_register".to_owned(), &breaker_module, breaker.command_register),
        ("island.inverter_mode.command_register".to_owned(), &inverter_module, inverter.command_register),
    ];
    for (i, (m, coil, _)) in out.iter().enumerate() {
        coils.push((format!("island.loads[{i}].relay.coil_register"), m, coil.0));
    }
    for (i, (field, m, reg)) in coils.iter().enumerate() {
        if coils.iter().take(i).any(|(_, m2, r2)| m2.endpoint == m.endpoint && m2.unit == m.unit && r2 == reg)
        {
            return Err(err(
                path,
                field,
                reg,
                "is already used by another island command on the same module",
            ));
        }
    }
    Ok(IslandModbusWiring {
        rating,
        breaker_module,
        breaker_command: (RegisterAddress(breaker.command_register), breaker.open_value, breaker.close_value),
        breaker_position,
        inverter_module,
        inverter: regs,
        relays: out,
    })
}
