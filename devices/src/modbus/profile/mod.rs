//! Register-map profiles: TOML descriptions of non-SunSpec devices and the generic driver that
//! reads any of them.
//!
//! A profile names, for each signal the EMS knows for a device kind (meter, inverter, BMS, PV),
//! the register that holds it: address, table (function code), type, word order, scale, unit
//! and sign convention. [`Profile::from_toml_str`] validates the whole file up front; every
//! error names the file, the TOML line, the field and the value. [`decode`] turns registers
//! into typed values (a raw block is *parsed*, never trusted), [`encode`] turns a set-point into
//! raw registers, and [`ProfileDevice`] implements the device traits over any
//! [`RegisterClient`](super::RegisterClient).
//!
//! The format is documented field by field in `devices/profiles/README.md`; the shipped
//! profiles are embedded in [`SHIPPED_PROFILES`].
//!
//! **Invariant:** after [`Profile::from_toml_str`] succeeded, decoding any register block with
//! that profile never panics (property-tested over the shipped profiles, fuzzed by
//! [`fuzz_entry`]).

use core::fmt;
use std::collections::BTreeMap;

use ems_core::snapshot::{BmsAlarm, InverterState};
use serde::Deserialize;
use toml::Spanned;

use super::{RegisterAddress, RegisterKind};
use crate::traits::ControlSource;

mod codec;
mod driver;

pub use codec::{
    decode, decode_register, encode, encode_enum, read_plan, DecodeError, EncodeError, ReadRequest,
    RegisterImage, Value, Values,
};
pub use driver::{ProfileDevice, ProfileDeviceError};

/// The profiles shipped in `devices/profiles/`, embedded at compile time: (file name, text).
pub const SHIPPED_PROFILES: &[(&str, &str)] = &[
    ("eastron-sdm630.toml", include_str!("../../../profiles/eastron-sdm630.toml")),
    ("sma-sunny-island.toml", include_str!("../../../profiles/sma-sunny-island.toml")),
];

/// Which device trait a profile serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceKind {
    /// Grid meter ([`crate::traits::Meter`]).
    Meter,
    /// Battery inverter / PCS ([`crate::traits::Inverter`]).
    Inverter,
    /// Battery management system ([`crate::traits::Bms`]).
    Bms,
    /// PV inverter ([`crate::traits::PvInverter`]).
    Pv,
}

impl DeviceKind {
    const ALL: [Self; 4] = [Self::Meter, Self::Inverter, Self::Bms, Self::Pv];

    /// The name used in profile files.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Meter => "meter",
            Self::Inverter => "inverter",
            Self::Bms => "bms",
            Self::Pv => "pv",
        }
    }
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The order of the 16-bit words of a multi-register value (bytes inside a word are always
/// big-endian, as Modbus transmits them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WordOrder {
    /// High word first (at the lower address): "big", Modbus' own convention.
    Big,
    /// Low word first: "little" (sometimes called word-swapped).
    Little,
}

/// The type of the value in the registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueType {
    /// Unsigned 16 bit, one register.
    U16,
    /// Signed 16 bit (two's complement), one register.
    I16,
    /// Unsigned 32 bit, two registers.
    U32,
    /// Signed 32 bit, two registers.
    I32,
    /// Unsigned 64 bit, four registers.
    U64,
    /// Signed 64 bit, four registers.
    I64,
    /// IEEE-754 single precision, two registers.
    F32,
}

impl ValueType {
    const ALL: [Self; 7] = [Self::U16, Self::I16, Self::U32, Self::I32, Self::U64, Self::I64, Self::F32];

    /// The name used in profile files.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::U16 => "u16",
            Self::I16 => "i16",
            Self::U32 => "u32",
            Self::I32 => "i32",
            Self::U64 => "u64",
            Self::I64 => "i64",
            Self::F32 => "f32",
        }
    }

    /// How many registers the value occupies.
    #[must_use]
    pub const fn words(self) -> u16 {
        match self {
            Self::U16 | Self::I16 => 1,
            Self::U32 | Self::I32 | Self::F32 => 2,
            Self::U64 | Self::I64 => 4,
        }
    }
}

/// How the device's sign convention maps onto design.md §4 (grid `+` import / `−` export,
/// battery `+` discharge / `−` charge, PV ≥ 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sign {
    /// The device already uses the EMS convention.
    Normal,
    /// The device uses the opposite sign: values are negated on read and on write.
    Invert,
}

/// The physical quantity of a signal, which fixes the units a profile may declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quantity {
    /// Power, in W.
    Power,
    /// Voltage, in V.
    Voltage,
    /// Current, in A.
    Current,
    /// Frequency, in Hz.
    Frequency,
    /// Temperature, in °C.
    Temperature,
    /// Percentage.
    Percent,
    /// A duration, in ms.
    Duration,
    /// A state or command code, mapped with `enum`.
    Code,
    /// A bit field, mapped with `bits`.
    Bits,
}

impl Quantity {
    /// The units a profile may declare for this quantity, with the factor to the EMS unit.
    #[must_use]
    pub const fn units(self) -> &'static [(&'static str, f64)] {
        match self {
            Self::Power => &[("W", 1.0), ("kW", 1000.0)],
            Self::Voltage => &[("V", 1.0), ("mV", 0.001), ("kV", 1000.0)],
            Self::Current => &[("A", 1.0), ("mA", 0.001)],
            Self::Frequency => &[("Hz", 1.0), ("mHz", 0.001)],
            Self::Temperature => &[("°C", 1.0), ("degC", 1.0)],
            Self::Percent => &[("%", 1.0)],
            Self::Duration => &[("ms", 1.0), ("s", 1000.0), ("min", 60_000.0)],
            Self::Code | Self::Bits => &[],
        }
    }
}

/// Whether a signal is read, written, or a setting (written, optionally read back).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Read from the device.
    Read,
    /// Written to the device.
    Write,
    /// Written, and read back when the register is readable.
    Setting,
}

macro_rules! signals {
    ($($(#[$doc:meta])* $v:ident = $name:literal, $q:ident, $dir:ident, [$($k:ident),+];)+) => {
        /// A signal the EMS knows. Which device kinds use it, its quantity and its direction are
        /// fixed here; a profile only says where it lives.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Signal {
            $($(#[$doc])* $v,)+
        }

        impl Signal {
            /// Every signal.
            pub const ALL: &'static [Self] = &[$(Self::$v,)+];

            /// The name used in profile files.
            #[must_use]
            pub const fn name(self) -> &'static str {
                match self { $(Self::$v => $name,)+ }
            }

            /// The quantity (and so the accepted units).
            #[must_use]
            pub const fn quantity(self) -> Quantity {
                match self { $(Self::$v => Quantity::$q,)+ }
            }

            /// Read, write or setting.
            #[must_use]
            pub const fn direction(self) -> Direction {
                match self { $(Self::$v => Direction::$dir,)+ }
            }

            /// Whether `kind` devices use this signal.
            #[must_use]
            pub fn belongs_to(self, kind: DeviceKind) -> bool {
                match self { $(Self::$v => [$(DeviceKind::$k),+].contains(&kind),)+ }
            }
        }
    };
}

signals! {
    /// Active power, W (meter: `+` import; inverter: `+` discharge; PV: ≥ 0).
    ActivePower = "active_power", Power, Read, [Meter, Inverter, Pv];
    /// Grid voltage, V.
    Voltage = "voltage", Voltage, Read, [Meter];
    /// Grid frequency, Hz.
    Frequency = "frequency", Frequency, Read, [Meter];
    /// The active-power set-point the inverter applies (read back), W.
    Setpoint = "setpoint", Power, Read, [Inverter];
    /// Inverter operating state (`enum` to standby / running / fault).
    State = "state", Code, Read, [Inverter];
    /// Inverter heat-sink temperature, °C.
    Temperature = "temperature", Temperature, Read, [Inverter];
    /// Inverter nameplate rating, W.
    RatedPower = "rated_power", Power, Read, [Inverter];
    /// DC-link voltage, V.
    DcLinkVoltage = "dc_link_voltage", Voltage, Read, [Inverter];
    /// Where the active-power set-point is written, W.
    SetpointWrite = "setpoint_write", Power, Write, [Inverter];
    /// Who controls the set-point (`enum` to remote / local).
    ControlEnable = "control_enable", Code, Setting, [Inverter];
    /// The device's revert (communication-loss) timer.
    RevertTimeout = "revert_timeout", Duration, Setting, [Inverter];
    /// State of charge, %.
    Soc = "soc", Percent, Read, [Bms];
    /// Pack voltage, V.
    PackVoltage = "pack_voltage", Voltage, Read, [Bms];
    /// Pack current, A, `+` discharge.
    PackCurrent = "pack_current", Current, Read, [Bms];
    /// Lowest cell voltage, V.
    CellVoltageMin = "cell_voltage_min", Voltage, Read, [Bms];
    /// Highest cell voltage, V.
    CellVoltageMax = "cell_voltage_max", Voltage, Read, [Bms];
    /// Lowest cell temperature, °C.
    CellTempMin = "cell_temp_min", Temperature, Read, [Bms];
    /// Highest cell temperature, °C.
    CellTempMax = "cell_temp_max", Temperature, Read, [Bms];
    /// Charge power limit (magnitude), W.
    ChargeLimit = "charge_limit", Power, Read, [Bms];
    /// Discharge power limit (magnitude), W.
    DischargeLimit = "discharge_limit", Power, Read, [Bms];
    /// Charge current limit (magnitude), A; converted to W with the pack voltage.
    ChargeCurrentLimit = "charge_current_limit", Current, Read, [Bms];
    /// Discharge current limit (magnitude), A; converted to W with the pack voltage.
    DischargeCurrentLimit = "discharge_current_limit", Current, Read, [Bms];
    /// Alarm bits (`bits` maps bit numbers to alarms).
    Alarms = "alarms", Bits, Read, [Bms];
    /// Ready flag (`enum` to ready / not_ready, or non-zero = ready).
    Ready = "ready", Code, Read, [Bms];
    /// Where an alarm reset is written (`enum` names the `reset` value).
    AlarmReset = "alarm_reset", Code, Write, [Bms];
}

impl Signal {
    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|s| s.name() == name)
    }

    /// The `enum` names this signal accepts (empty: no `enum` allowed).
    #[must_use]
    pub const fn enum_names(self) -> &'static [&'static str] {
        match self {
            Self::State => &["standby", "running", "fault"],
            Self::ControlEnable => &["remote", "local"],
            Self::Ready => &["ready", "not_ready"],
            Self::AlarmReset => &["reset"],
            _ => &[],
        }
    }

    /// Whether a profile of `kind` must map this signal.
    #[must_use]
    pub fn required_for(self, kind: DeviceKind) -> bool {
        match kind {
            DeviceKind::Meter => matches!(self, Self::ActivePower | Self::Voltage | Self::Frequency),
            DeviceKind::Inverter => matches!(self, Self::ActivePower | Self::State | Self::SetpointWrite),
            DeviceKind::Pv => matches!(self, Self::ActivePower),
            DeviceKind::Bms => matches!(
                self,
                Self::Soc
                    | Self::PackVoltage
                    | Self::PackCurrent
                    | Self::CellVoltageMin
                    | Self::CellVoltageMax
                    | Self::CellTempMin
                    | Self::CellTempMax
            ),
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What an `enum` entry maps a raw value to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EnumValue {
    /// An inverter state.
    State(InverterState),
    /// A control source.
    Control(ControlSource),
    /// BMS ready (`true`) or not ready.
    Ready(bool),
    /// The alarm-reset command.
    Reset,
}

impl EnumValue {
    fn from_name(signal: Signal, name: &str) -> Option<Self> {
        Some(match (signal, name) {
            (Signal::State, "standby") => Self::State(InverterState::Standby),
            (Signal::State, "running") => Self::State(InverterState::Running),
            (Signal::State, "fault") => Self::State(InverterState::Fault),
            (Signal::ControlEnable, "remote") => Self::Control(ControlSource::Remote),
            (Signal::ControlEnable, "local") => Self::Control(ControlSource::Local),
            (Signal::Ready, "ready") => Self::Ready(true),
            (Signal::Ready, "not_ready") => Self::Ready(false),
            (Signal::AlarmReset, "reset") => Self::Reset,
            _ => return None,
        })
    }
}

const ALARM_NAMES: [(&str, BmsAlarm); 7] = [
    ("cell_over_voltage", BmsAlarm::CellOverVoltage),
    ("cell_under_voltage", BmsAlarm::CellUnderVoltage),
    ("over_temperature", BmsAlarm::OverTemperature),
    ("under_temperature", BmsAlarm::UnderTemperature),
    ("over_current", BmsAlarm::OverCurrent),
    ("insulation", BmsAlarm::Insulation),
    ("internal", BmsAlarm::Internal),
];

/// One validated register entry. Addresses are wire (0-based PDU) addresses, whatever the
/// file's `address_base`.
#[derive(Debug, Clone, PartialEq)]
pub struct Register {
    /// The signal it carries.
    pub signal: Signal,
    /// The table: holding (function 3 / 16) or input (function 4).
    pub table: RegisterKind,
    /// The first register, 0-based.
    pub address: RegisterAddress,
    /// Readable (function 3 or 4, or `access = "rw"`).
    pub read: bool,
    /// Writable (function 16, or `access = "rw"`/`"w"` on a holding register).
    pub write: bool,
    /// The value type.
    pub value_type: ValueType,
    /// Word order of multi-register values.
    pub word_order: WordOrder,
    /// Multiplier applied to the raw value.
    pub scale: f64,
    /// A register (same table, 0-based) holding a power-of-ten exponent (i16) applied on top
    /// of `scale`, SunSpec style.
    pub scale_register: Option<RegisterAddress>,
    /// Added after scaling, in the declared unit.
    pub offset: f64,
    /// The declared unit.
    pub unit: &'static str,
    /// Factor from the declared unit to the EMS unit (kW → W: 1000).
    pub unit_factor: f64,
    /// Sign convention.
    pub sign: Sign,
    /// `enum`: raw value → meaning, sorted by raw value.
    pub enum_map: Vec<(i64, EnumValue)>,
    /// `bits`: bit number → alarm.
    pub bits: Vec<(u8, BmsAlarm)>,
    /// Raw values that mean "not available" (compared with the raw bit pattern).
    pub absent: Vec<i64>,
    /// The line of the entry in the file.
    pub line: usize,
}

impl Register {
    /// One past the last register.
    #[must_use]
    pub fn end(&self) -> u32 {
        u32::from(self.address.0) + u32::from(self.value_type.words())
    }
}

/// A validated register-map profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    name: String,
    manufacturer: String,
    model: String,
    source: String,
    device: DeviceKind,
    max_gap: u16,
    setpoint_in_flash: bool,
    registers: Vec<Register>,
}

/// A profile that failed to load: names the file, the line, the field and the value
/// (`profiles/x.toml line 11: register[0].type = 'u33': is not one of u16, …`).
pub type ProfileError = ems_tomlfile::SpannedError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    manufacturer: Spanned<String>,
    model: Spanned<String>,
    source: Spanned<String>,
    device: Spanned<String>,
    word_order: Option<Spanned<String>>,
    address_base: Spanned<i64>,
    max_gap: Option<Spanned<i64>>,
    setpoint_in_flash: Option<Spanned<bool>>,
    #[allow(dead_code)] // Free text for people; kept so `deny_unknown_fields` accepts it.
    notes: Option<String>,
    #[serde(default)]
    register: Vec<Spanned<RawRegister>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegister {
    signal: Spanned<String>,
    address: Spanned<i64>,
    function: Spanned<i64>,
    access: Option<Spanned<String>>,
    #[serde(rename = "type")]
    value_type: Spanned<String>,
    word_order: Option<Spanned<String>>,
    scale: Option<Spanned<f64>>,
    scale_register: Option<Spanned<i64>>,
    offset: Option<Spanned<f64>>,
    unit: Option<Spanned<String>>,
    sign: Option<Spanned<String>>,
    #[serde(rename = "enum")]
    enum_map: Option<Spanned<BTreeMap<String, String>>>,
    bits: Option<Spanned<BTreeMap<String, String>>>,
    absent: Option<Spanned<Vec<i64>>>,
    #[allow(dead_code)] // Free text for people; kept so `deny_unknown_fields` accepts it.
    note: Option<String>,
}

struct Ctx<'a> {
    src: ems_tomlfile::Source<'a>,
}

impl Ctx<'_> {
    fn line(&self, offset: usize) -> usize {
        self.src.position(offset).0
    }

    fn err<T>(
        &self,
        at: &Spanned<T>,
        field: &str,
        value: impl fmt::Display,
        message: impl Into<String>,
    ) -> ProfileError {
        let e = self.src.at(field, at, message);
        let value = value.to_string();
        if value.is_empty() {
            e
        } else {
            e.with_value(format!("'{value}'"))
        }
    }
}

fn one_of(names: impl IntoIterator<Item = &'static str>) -> String {
    let v: Vec<&str> = names.into_iter().collect();
    format!("is not one of {}", v.join(", "))
}

fn parse_word_order(ctx: &Ctx<'_>, s: &Spanned<String>, field: &str) -> Result<WordOrder, ProfileError> {
    match s.get_ref().as_str() {
        "big" => Ok(WordOrder::Big),
        "little" => Ok(WordOrder::Little),
        other => Err(ctx.err(s, field, other, one_of(["big", "little"]))),
    }
}

fn parse_raw_key(key: &str) -> Option<i64> {
    let k = key.trim();
    let (neg, digits) = match k.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, k),
    };
    let v = match digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
        Some(hex) => i64::from_str_radix(hex, 16).ok()?,
        None => digits.parse::<i64>().ok()?,
    };
    if neg {
        v.checked_neg()
    } else {
        Some(v)
    }
}

impl Profile {
    /// Parse and validate a profile. `source_name` (usually the file path) prefixes every error.
    ///
    /// # Errors
    /// A [`ProfileError`] naming the line, the field and the value: TOML syntax, unknown or
    /// missing fields, unknown names (device, signal, type, word order, unit, sign, access),
    /// addresses outside the table, a signal of another device kind, duplicate signals,
    /// overlapping registers, a unit that does not fit the signal, a read signal without read
    /// access or a write signal without write access, missing required signals.
    pub fn from_toml_str(text: &str, source_name: &str) -> Result<Self, ProfileError> {
        let ctx = Ctx { src: ems_tomlfile::Source::new(std::path::Path::new(source_name), text) };
        let raw: RawProfile = ctx.src.decode(&[])?;

        let device =
            DeviceKind::ALL.into_iter().find(|k| k.name() == raw.device.get_ref()).ok_or_else(|| {
                ctx.err(
                    &raw.device,
                    "device",
                    raw.device.get_ref(),
                    one_of(DeviceKind::ALL.map(DeviceKind::name)),
                )
            })?;
        let word_order = match &raw.word_order {
            Some(w) => parse_word_order(&ctx, w, "word_order")?,
            None => WordOrder::Big,
        };
        let base = *raw.address_base.get_ref();
        if ![0, 1, 30_001, 40_001].contains(&base) {
            return Err(ctx.err(&raw.address_base, "address_base", base, "is not one of 0, 1, 30001, 40001"));
        }
        let max_gap = match &raw.max_gap {
            Some(g) => u16::try_from(*g.get_ref())
                .ok()
                .filter(|g| *g < super::MAX_READ_REGISTERS)
                .ok_or_else(|| ctx.err(g, "max_gap", g.get_ref(), "is not in 0..=124"))?,
            None => 0,
        };
        for (field, s) in
            [("manufacturer", &raw.manufacturer), ("model", &raw.model), ("source", &raw.source)]
        {
            if s.get_ref().trim().is_empty() {
                return Err(ctx.err(s, field, "", "must not be empty"));
            }
        }

        let mut registers: Vec<Register> = Vec::with_capacity(raw.register.len());
        for (i, entry) in raw.register.iter().enumerate() {
            let reg = parse_register(
                &ctx,
                i,
                entry.get_ref(),
                ctx.line(entry.span().start),
                device,
                base,
                word_order,
            )?;
            let f = |name: &str| format!("register[{i}].{name}");
            if let Some(prev) = registers.iter().find(|r| r.signal == reg.signal) {
                return Err(ctx.err(
                    &entry.get_ref().signal,
                    &f("signal"),
                    reg.signal,
                    format!("is mapped twice (first on line {})", prev.line),
                ));
            }
            if let Some(prev) = registers.iter().find(|r| overlaps(r, &reg)) {
                return Err(ctx.err(
                    &entry.get_ref().address,
                    &f("address"),
                    entry.get_ref().address.get_ref(),
                    format!("overlaps register '{}' on line {}", prev.signal, prev.line),
                ));
            }
            registers.push(reg);
        }
        check_signals(&ctx, &raw.device, device, &registers)?;

        Ok(Self {
            name: source_name.to_owned(),
            manufacturer: raw.manufacturer.into_inner(),
            model: raw.model.into_inner(),
            source: raw.source.into_inner(),
            device,
            max_gap,
            setpoint_in_flash: raw.setpoint_in_flash.is_some_and(|s| *s.get_ref()),
            registers,
        })
    }

    /// Read and validate a profile file.
    ///
    /// # Errors
    /// The file cannot be read (no line), or any error of [`Self::from_toml_str`].
    pub fn load(path: &std::path::Path) -> Result<Self, ProfileError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ProfileError::new(path, format!("cannot be read: {e}")))?;
        Self::from_toml_str(&text, &name)
    }

    /// A shipped profile by file name (see [`SHIPPED_PROFILES`]).
    ///
    /// # Errors
    /// `None` if there is no such shipped profile; otherwise its validation result.
    #[must_use]
    pub fn shipped(file: &str) -> Option<Result<Self, ProfileError>> {
        SHIPPED_PROFILES
            .iter()
            .find(|(n, _)| *n == file)
            .map(|(n, text)| Self::from_toml_str(text, &format!("profiles/{n}")))
    }

    /// The source name given when loading (the file path).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The manufacturer.
    #[must_use]
    pub fn manufacturer(&self) -> &str {
        &self.manufacturer
    }

    /// The model (family).
    #[must_use]
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Where the register map comes from.
    #[must_use]
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The device kind.
    #[must_use]
    pub const fn device(&self) -> DeviceKind {
        self.device
    }

    /// Unused registers a read request may bridge to merge two blocks.
    #[must_use]
    pub const fn max_gap(&self) -> u16 {
        self.max_gap
    }

    /// Whether the device stores set-points in non-volatile memory.
    #[must_use]
    pub const fn setpoint_in_flash(&self) -> bool {
        self.setpoint_in_flash
    }

    /// The validated registers, in file order.
    #[must_use]
    pub fn registers(&self) -> &[Register] {
        &self.registers
    }

    /// The register carrying `signal`, if mapped.
    #[must_use]
    pub fn register(&self, signal: Signal) -> Option<&Register> {
        self.registers.iter().find(|r| r.signal == signal)
    }
}

fn overlaps(a: &Register, b: &Register) -> bool {
    if a.table != b.table || u32::from(a.address.0) >= b.end() || u32::from(b.address.0) >= a.end() {
        return false;
    }
    // A read-back and a write of the same value may share a register (the stored set-point).
    let same_value = a.address == b.address && a.value_type == b.value_type && a.word_order == b.word_order;
    let disjoint_access = !(a.read && b.read || a.write && b.write);
    !(same_value && disjoint_access)
}

/// One `[[register]]` entry, validated (`i` is its index, `line` its line in the file).
fn parse_register(
    ctx: &Ctx<'_>,
    i: usize,
    r: &RawRegister,
    line: usize,
    device: DeviceKind,
    base: i64,
    default_order: WordOrder,
) -> Result<Register, ProfileError> {
    let (signal, value_type) = signal_and_type(ctx, i, r, device)?;
    let (table, read, write, function) = access(ctx, i, r, signal)?;
    let (address, word_order) = address(ctx, i, r, (table, function, base), value_type, default_order)?;
    let (scale, offset, scale_register) = scaling(ctx, i, r, write, base)?;
    let (unit, unit_factor, sign) = unit_and_sign(ctx, i, r, signal, value_type)?;
    let enum_map = enum_map(ctx, i, r, signal, write)?;
    let bits = bits(ctx, i, r, signal, value_type)?;
    let absent = r.absent.as_ref().map(|a| a.get_ref().clone()).unwrap_or_default();

    Ok(Register {
        signal,
        table,
        address: RegisterAddress(address),
        read,
        write,
        value_type,
        word_order,
        scale,
        scale_register,
        offset,
        unit,
        unit_factor,
        sign,
        enum_map,
        bits,
        absent,
        line,
    })
}

/// A register number of the file → the 0-based wire address, for `address_base`.
fn to_wire(a: i64, base: i64) -> Option<u16> {
    a.checked_sub(base).and_then(|a| u16::try_from(a).ok())
}

/// `signal` (known, and one of this device kind's) and `type`.
fn signal_and_type(
    ctx: &Ctx<'_>,
    i: usize,
    r: &RawRegister,
    device: DeviceKind,
) -> Result<(Signal, ValueType), ProfileError> {
    let f = |name: &str| format!("register[{i}].{name}");
    let signal = Signal::from_name(r.signal.get_ref()).ok_or_else(|| {
        ctx.err(&r.signal, &f("signal"), r.signal.get_ref(), one_of(Signal::ALL.iter().map(|s| s.name())))
    })?;
    if !signal.belongs_to(device) {
        let names: Vec<&str> =
            Signal::ALL.iter().filter(|s| s.belongs_to(device)).map(|s| s.name()).collect();
        return Err(ctx.err(
            &r.signal,
            &f("signal"),
            signal,
            format!("is not a {device} signal (one of {})", names.join(", ")),
        ));
    }
    let value_type =
        ValueType::ALL.into_iter().find(|t| t.name() == r.value_type.get_ref()).ok_or_else(|| {
            ctx.err(
                &r.value_type,
                &f("type"),
                r.value_type.get_ref(),
                one_of(ValueType::ALL.map(ValueType::name)),
            )
        })?;

    Ok((signal, value_type))
}

/// `function` and `access`: the table, read and write access (checked against the signal's
/// direction) and the function code.
fn access(
    ctx: &Ctx<'_>,
    i: usize,
    r: &RawRegister,
    signal: Signal,
) -> Result<(RegisterKind, bool, bool, i64), ProfileError> {
    let f = |name: &str| format!("register[{i}].{name}");
    let function = *r.function.get_ref();
    let table = match function {
        3 | 16 => RegisterKind::Holding,
        4 => RegisterKind::Input,
        other => {
            return Err(ctx.err(
                &r.function,
                &f("function"),
                other,
                "is not one of 3 (holding), 4 (input), 16 (write-only holding)",
            ))
        }
    };
    let (read, write) = match (&r.access, function) {
        (None, 16) => (false, true),
        (None, _) => (true, false),
        (Some(a), _) => {
            let rw = match a.get_ref().as_str() {
                "r" => (true, false),
                "w" => (false, true),
                "rw" => (true, true),
                other => return Err(ctx.err(a, &f("access"), other, one_of(["r", "w", "rw"]))),
            };
            match (function, rw) {
                (4, (_, true)) => {
                    return Err(ctx.err(
                        a,
                        &f("access"),
                        a.get_ref(),
                        "input registers (function 4) cannot be written",
                    ))
                }
                (16, (true, _)) => {
                    return Err(ctx.err(
                        a,
                        &f("access"),
                        a.get_ref(),
                        "function 16 is write-only; use function 3 with access = \"rw\"",
                    ))
                }
                _ => rw,
            }
        }
    };
    match signal.direction() {
        Direction::Read if !read => {
            return Err(ctx.err(&r.function, &f("function"), function, format!("'{signal}' is read, but this register is not readable")))
        }
        Direction::Write | Direction::Setting if !write => {
            return Err(ctx.err(
                &r.function,
                &f("function"),
                function,
                format!("'{signal}' is written, but this register has no write access (function 16 or access = \"rw\")"),
            ))
        }
        _ => {}
    }

    Ok((table, read, write, function))
}

/// `address` (inside the table of `address_base`, room for the type) and `word_order`.
fn address(
    ctx: &Ctx<'_>,
    i: usize,
    r: &RawRegister,
    (table, function, base): (RegisterKind, i64, i64),
    value_type: ValueType,
    default_order: WordOrder,
) -> Result<(u16, WordOrder), ProfileError> {
    let f = |name: &str| format!("register[{i}].{name}");
    let raw_addr = *r.address.get_ref();
    match base {
        30_001 if table != RegisterKind::Input => {
            return Err(ctx.err(
                &r.function,
                &f("function"),
                function,
                "address_base 30001 (input register numbers) needs function 4",
            ))
        }
        40_001 if table != RegisterKind::Holding => {
            return Err(ctx.err(
                &r.function,
                &f("function"),
                function,
                "address_base 40001 (holding register numbers) needs function 3 or 16",
            ))
        }
        _ => {}
    }
    let address = to_wire(raw_addr, base).ok_or_else(|| {
        ctx.err(
            &r.address,
            &f("address"),
            raw_addr,
            format!("is not a register of this table for address_base {base} ({base}..={})", base + 65_535),
        )
    })?;
    if u32::from(address) + u32::from(value_type.words()) > 65_536 {
        return Err(ctx.err(
            &r.address,
            &f("address"),
            raw_addr,
            format!("a {} does not fit below the end of the table", value_type.name()),
        ));
    }
    let word_order = match &r.word_order {
        Some(w) => parse_word_order(ctx, w, &f("word_order"))?,
        None => default_order,
    };

    Ok((address, word_order))
}

/// `scale`, `offset` and `scale_register`.
fn scaling(
    ctx: &Ctx<'_>,
    i: usize,
    r: &RawRegister,
    write: bool,
    base: i64,
) -> Result<(f64, f64, Option<RegisterAddress>), ProfileError> {
    let f = |name: &str| format!("register[{i}].{name}");
    let scale = match &r.scale {
        Some(s) if !s.get_ref().is_finite() || *s.get_ref() == 0.0 => {
            return Err(ctx.err(s, &f("scale"), s.get_ref(), "must be a finite, non-zero number"))
        }
        Some(s) => *s.get_ref(),
        None => 1.0,
    };
    let offset = match &r.offset {
        Some(o) if !o.get_ref().is_finite() => {
            return Err(ctx.err(o, &f("offset"), o.get_ref(), "must be a finite number"))
        }
        Some(o) => *o.get_ref(),
        None => 0.0,
    };
    let scale_register = match &r.scale_register {
        Some(s) if write => {
            return Err(ctx.err(
                s,
                &f("scale_register"),
                s.get_ref(),
                "is not supported on written registers; use scale",
            ))
        }
        Some(s) => Some(RegisterAddress(to_wire(*s.get_ref(), base).ok_or_else(|| {
            ctx.err(s, &f("scale_register"), s.get_ref(), "is not a register of this table")
        })?)),
        None => None,
    };

    Ok((scale, offset, scale_register))
}

/// `unit` (one that fits the signal's quantity, none for a code) and `sign`.
fn unit_and_sign(
    ctx: &Ctx<'_>,
    i: usize,
    r: &RawRegister,
    signal: Signal,
    value_type: ValueType,
) -> Result<(&'static str, f64, Sign), ProfileError> {
    let f = |name: &str| format!("register[{i}].{name}");
    let quantity = signal.quantity();
    let (unit, unit_factor) = match (&r.unit, quantity.units()) {
        (None, []) => ("", 1.0),
        (Some(u), []) => {
            return Err(ctx.err(
                u,
                &f("unit"),
                u.get_ref(),
                format!("'{signal}' is a code and takes no unit"),
            ))
        }
        (None, units) => {
            return Err(ctx.err(
                &r.signal,
                &f("unit"),
                "",
                format!("is missing; '{signal}' needs one of {}", unit_list(units)),
            ))
        }
        (Some(u), units) => units.iter().find(|(n, _)| n == u.get_ref()).copied().ok_or_else(|| {
            ctx.err(
                u,
                &f("unit"),
                u.get_ref(),
                format!("does not fit '{signal}' ({:?}): use one of {}", quantity, unit_list(units)),
            )
        })?,
    };
    if matches!(quantity, Quantity::Code | Quantity::Bits) {
        for (name, present) in [
            ("scale", r.scale.is_some()),
            ("offset", r.offset.is_some()),
            ("scale_register", r.scale_register.is_some()),
        ] {
            if present {
                return Err(ctx.err(
                    &r.signal,
                    &f(name),
                    signal,
                    "is a code: scale, offset and scale_register do not apply",
                ));
            }
        }
        if value_type == ValueType::F32 {
            return Err(ctx.err(
                &r.value_type,
                &f("type"),
                "f32",
                format!("'{signal}' is a code and needs an integer type"),
            ));
        }
    }
    let sign = match &r.sign {
        None => Sign::Normal,
        Some(s) => match s.get_ref().as_str() {
            "normal" => Sign::Normal,
            "invert" => Sign::Invert,
            other => return Err(ctx.err(s, &f("sign"), other, one_of(["normal", "invert"]))),
        },
    };
    if sign == Sign::Invert && matches!(quantity, Quantity::Code | Quantity::Bits) {
        return Err(ctx.err(
            &r.signal,
            &f("sign"),
            "invert",
            format!("'{signal}' is a code and has no sign"),
        ));
    }

    Ok((unit, unit_factor, sign))
}

/// `enum`: raw values → meanings, for the signals that take one.
fn enum_map(
    ctx: &Ctx<'_>,
    i: usize,
    r: &RawRegister,
    signal: Signal,
    write: bool,
) -> Result<Vec<(i64, EnumValue)>, ProfileError> {
    let f = |name: &str| format!("register[{i}].{name}");
    let mut enum_map = Vec::new();
    match (&r.enum_map, signal.enum_names()) {
        (Some(m), []) => {
            return Err(ctx.err(
                m,
                &f("enum"),
                signal,
                "only state, control_enable, ready and alarm_reset take an enum",
            ))
        }
        (Some(m), names) => {
            for (k, v) in m.get_ref() {
                let raw = parse_raw_key(k)
                    .ok_or_else(|| ctx.err(m, &f("enum"), k, "is not an integer raw value"))?;
                let val = EnumValue::from_name(signal, v)
                    .ok_or_else(|| ctx.err(m, &f(&format!("enum.{k}")), v, one_of(names.iter().copied())))?;
                enum_map.push((raw, val));
            }
            enum_map.sort_by_key(|(raw, _)| *raw);
        }
        (None, _) if matches!(signal, Signal::State | Signal::ControlEnable | Signal::AlarmReset) => {
            return Err(ctx.err(
                &r.signal,
                &f("enum"),
                "",
                format!(
                    "is missing; '{signal}' needs raw values mapped to {}",
                    signal.enum_names().join(" / ")
                ),
            ))
        }
        (None, _) => {}
    }
    if signal == Signal::ControlEnable && write {
        for needed in [ControlSource::Remote, ControlSource::Local] {
            if !enum_map.iter().any(|(_, v)| *v == EnumValue::Control(needed)) {
                let name = if needed == ControlSource::Remote { "remote" } else { "local" };
                return Err(ctx.err(
                    &r.signal,
                    &f("enum"),
                    "",
                    format!("has no raw value for '{name}', which the driver writes"),
                ));
            }
        }
    }

    Ok(enum_map)
}

/// `bits`: bit numbers → alarms, for `alarms` only.
fn bits(
    ctx: &Ctx<'_>,
    i: usize,
    r: &RawRegister,
    signal: Signal,
    value_type: ValueType,
) -> Result<Vec<(u8, BmsAlarm)>, ProfileError> {
    let f = |name: &str| format!("register[{i}].{name}");
    let mut bits = Vec::new();
    if let Some(m) = &r.bits {
        if signal != Signal::Alarms {
            return Err(ctx.err(m, &f("bits"), signal, "only alarms take bits"));
        }
        let width = 16 * u32::from(value_type.words());
        for (k, v) in m.get_ref() {
            let bit = parse_raw_key(k)
                .and_then(|b| u8::try_from(b).ok())
                .filter(|b| u32::from(*b) < width)
                .ok_or_else(|| ctx.err(m, &f("bits"), k, format!("is not a bit number 0..{width}")))?;
            let alarm = ALARM_NAMES.iter().find(|(n, _)| n == v).map(|(_, a)| *a).ok_or_else(|| {
                ctx.err(m, &f(&format!("bits.{k}")), v, one_of(ALARM_NAMES.map(|(n, _)| n)))
            })?;
            bits.push((bit, alarm));
        }
    }
    Ok(bits)
}

fn unit_list(units: &[(&str, f64)]) -> String {
    units.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}

/// Fuzz entry (feature `_fuzz`, not for production): never panics on any input.
///
/// The first byte chooses the mode: even → the rest is a profile text (lossy UTF-8) that is
/// parsed and, if valid, decoded against an image of zeros and of the same bytes; odd → a
/// shipped profile (chosen by the second byte) decodes the rest as register words, and every
/// decoded number is encoded back through the written registers.
#[cfg(feature = "_fuzz")]
pub fn fuzz_entry(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let words: Vec<u16> = rest
        .chunks(2)
        .map(|c| u16::from_be_bytes([c.first().copied().unwrap_or(0), c.get(1).copied().unwrap_or(0)]))
        .collect();
    if mode % 2 == 0 {
        let text = String::from_utf8_lossy(rest);
        if let Ok(profile) = Profile::from_toml_str(&text, "fuzz.toml") {
            exercise(&profile, &words);
        }
    } else {
        let Some((&pick, rest)) = rest.split_first() else {
            return;
        };
        let n = SHIPPED_PROFILES.len().max(1);
        if let Some((name, text)) = SHIPPED_PROFILES.get(usize::from(pick) % n) {
            if let Ok(profile) = Profile::from_toml_str(text, name) {
                let words: Vec<u16> = rest
                    .chunks(2)
                    .map(|c| {
                        u16::from_be_bytes([c.first().copied().unwrap_or(0), c.get(1).copied().unwrap_or(0)])
                    })
                    .collect();
                exercise(&profile, &words);
            }
        }
    }
}

#[cfg(feature = "_fuzz")]
fn exercise(profile: &Profile, words: &[u16]) {
    let image = RegisterImage::filled(profile, words);
    if let Ok(values) = decode(profile, &image) {
        for r in profile.registers().iter().filter(|r| r.write) {
            for (_, v) in values.iter() {
                if let Some(Value::Number(x)) = v {
                    let _ = encode(r, *x);
                }
            }
        }
    }
    let _ = read_plan(profile);
}

/// The profile maps every signal its device kind needs, and no signal twice in two forms.
fn check_signals(
    ctx: &Ctx<'_>,
    raw_device: &toml::Spanned<String>,
    device: DeviceKind,
    registers: &[Register],
) -> Result<(), ProfileError> {
    let has = |s: Signal| registers.iter().any(|r| r.signal == s);
    for s in Signal::ALL {
        if s.required_for(device) && !has(*s) {
            let alternative = match s {
                Signal::ChargeLimit => Some(Signal::ChargeCurrentLimit),
                Signal::DischargeLimit => Some(Signal::DischargeCurrentLimit),
                _ => None,
            };
            if alternative.is_none_or(|a| !has(a)) {
                return Err(ctx.err(
                    raw_device,
                    "register",
                    s,
                    format!("is required for a {device} profile"),
                ));
            }
        }
    }
    for (w, a) in [
        (Signal::ChargeLimit, Signal::ChargeCurrentLimit),
        (Signal::DischargeLimit, Signal::DischargeCurrentLimit),
    ] {
        if has(w) && has(a) {
            return Err(ctx.err(raw_device, "register", a, format!("conflicts with '{w}': map one of them")));
        }
    }
    if device == DeviceKind::Bms
        && (has(Signal::ChargeCurrentLimit) || has(Signal::DischargeCurrentLimit))
        && !has(Signal::PackVoltage)
    {
        return Err(ctx.err(raw_device, "register", "pack_voltage", "is required to convert current limits"));
    }
    if device == DeviceKind::Bms && !(has(Signal::ChargeLimit) || has(Signal::ChargeCurrentLimit)) {
        return Err(ctx.err(
            raw_device,
            "register",
            "charge_limit",
            "is required for a bms profile (or charge_current_limit)",
        ));
    }
    if device == DeviceKind::Bms && !(has(Signal::DischargeLimit) || has(Signal::DischargeCurrentLimit)) {
        return Err(ctx.err(
            raw_device,
            "register",
            "discharge_limit",
            "is required for a bms profile (or discharge_current_limit)",
        ));
    }
    Ok(())
}
