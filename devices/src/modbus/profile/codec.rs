//! Decoding registers into values, encoding values into registers, and the read plan.

use std::collections::BTreeMap;

use ems_core::snapshot::{BmsAlarm, BmsAlarms, InverterState};

use super::{EnumValue, Profile, Quantity, Register, Sign, Signal, ValueType, WordOrder};
use crate::modbus::{RegisterAddress, RegisterKind, MAX_READ_REGISTERS};
use crate::traits::ControlSource;

/// A register block could not be turned into a value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// A register the profile needs is not in the image.
    #[error("{signal}: register {address} was not read")]
    Missing {
        /// The signal.
        signal: Signal,
        /// The missing register (0-based).
        address: RegisterAddress,
    },
    /// The scale-factor register holds an exponent outside −10..=10.
    #[error("{signal}: scale factor 10^{exponent} is out of range")]
    ScaleFactor {
        /// The signal.
        signal: Signal,
        /// The exponent read.
        exponent: i16,
    },
    /// The scaled value is not a finite number.
    #[error("{signal}: raw value {raw} does not scale to a finite number")]
    NotFinite {
        /// The signal.
        signal: Signal,
        /// The raw value.
        raw: f64,
    },
    /// A code with no `enum` entry where the driver cannot choose a safe meaning.
    #[error("{signal}: raw value {raw} is not in the profile's enum")]
    UnknownCode {
        /// The signal.
        signal: Signal,
        /// The raw value.
        raw: i64,
    },
}

/// A value could not be written into the register's type.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EncodeError {
    /// The value, after unit, sign, offset and scale, does not fit the register type.
    #[error("{signal}: {value} (raw {raw}) does not fit a {value_type:?} register")]
    OutOfRange {
        /// The signal.
        signal: Signal,
        /// The value in EMS units.
        value: f64,
        /// The raw value it maps to.
        raw: f64,
        /// The register type.
        value_type: ValueType,
    },
    /// The register is not writable, or is a code without the requested meaning.
    #[error("{signal}: not writable with this value")]
    NotWritable {
        /// The signal.
        signal: Signal,
    },
}

/// One decoded value, in EMS units and sign convention.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    /// A number in the EMS unit (W, V, A, Hz, °C, %, ms).
    Number(f64),
    /// An inverter state (unknown codes decode to [`InverterState::Fault`]).
    State(InverterState),
    /// Who controls the set-point.
    Control(ControlSource),
    /// BMS alarms (set bits without a mapping decode to [`BmsAlarm::Internal`]).
    Alarms(BmsAlarms),
    /// BMS ready.
    Ready(bool),
}

/// The decoded values of one profile: `None` = the device reports "not available" (NaN, the
/// vendor's not-available code).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Values {
    entries: Vec<(Signal, Option<Value>)>,
}

impl Values {
    /// The value of `signal`: `None` if unmapped, not read, or not available.
    #[must_use]
    pub fn get(&self, signal: Signal) -> Option<Value> {
        self.entries.iter().find(|(s, _)| *s == signal).and_then(|(_, v)| *v)
    }

    /// The number of `signal`, if it is a number.
    #[must_use]
    pub fn number(&self, signal: Signal) -> Option<f64> {
        match self.get(signal) {
            Some(Value::Number(x)) => Some(x),
            _ => None,
        }
    }

    /// Whether `signal` was decoded (possibly as "not available").
    #[must_use]
    pub fn contains(&self, signal: Signal) -> bool {
        self.entries.iter().any(|(s, _)| *s == signal)
    }

    /// Every decoded signal.
    pub fn iter(&self) -> impl Iterator<Item = &(Signal, Option<Value>)> {
        self.entries.iter()
    }
}

/// Registers read from one device, by table and 0-based address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegisterImage {
    holding: BTreeMap<u16, u16>,
    input: BTreeMap<u16, u16>,
}

impl RegisterImage {
    /// An empty image.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Store a block read from `address` on (words beyond the end of the table are dropped).
    pub fn insert(&mut self, kind: RegisterKind, address: RegisterAddress, words: &[u16]) {
        let table = match kind {
            RegisterKind::Holding => &mut self.holding,
            RegisterKind::Input => &mut self.input,
        };
        for (i, w) in words.iter().enumerate() {
            if let Some(a) = u16::try_from(i).ok().and_then(|i| address.0.checked_add(i)) {
                table.insert(a, *w);
            }
        }
    }

    /// The register at `address`, if read.
    #[must_use]
    pub fn get(&self, kind: RegisterKind, address: u16) -> Option<u16> {
        match kind {
            RegisterKind::Holding => self.holding.get(&address).copied(),
            RegisterKind::Input => self.input.get(&address).copied(),
        }
    }

    /// An image holding every register of the profile's read plan, filled from `words`
    /// (cycled; zeros if empty). For tests and fuzzing.
    #[must_use]
    pub fn filled(profile: &Profile, words: &[u16]) -> Self {
        let mut image = Self::new();
        let mut n = 0usize;
        for req in read_plan(profile) {
            for i in 0..req.count {
                let w = if words.is_empty() { 0 } else { words.get(n % words.len()).copied().unwrap_or(0) };
                n = n.wrapping_add(1);
                if let Some(a) = req.address.offset(i) {
                    image.insert(req.kind, a, &[w]);
                }
            }
        }
        image
    }
}

/// One read request of the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReadRequest {
    /// The table.
    pub kind: RegisterKind,
    /// The first register (0-based).
    pub address: RegisterAddress,
    /// How many registers (1..=125).
    pub count: u16,
}

/// The fewest read requests that cover every readable register of the profile (and the
/// scale-factor registers they use): per table, sorted by address, blocks merged when the gap
/// between them is at most the profile's `max_gap` and the result stays ≤ 125 registers.
#[must_use]
pub fn read_plan(profile: &Profile) -> Vec<ReadRequest> {
    let mut spans: Vec<(u8, u32, u32)> = Vec::new();
    let key = |k: RegisterKind| match k {
        RegisterKind::Holding => 0u8,
        RegisterKind::Input => 1u8,
    };
    for r in profile.registers().iter().filter(|r| r.read) {
        spans.push((key(r.table), u32::from(r.address.0), r.end()));
        if let Some(sf) = r.scale_register {
            spans.push((key(r.table), u32::from(sf.0), u32::from(sf.0) + 1));
        }
    }
    spans.sort_unstable();
    let gap = u32::from(profile.max_gap());
    let max = u32::from(MAX_READ_REGISTERS);
    let mut merged: Vec<(u8, u32, u32)> = Vec::new();
    for (k, start, end) in spans {
        match merged.last_mut() {
            Some((lk, ls, le))
                if *lk == k && start <= le.saturating_add(gap) && end.max(*le) - *ls <= max =>
            {
                *le = (*le).max(end);
            }
            _ => merged.push((k, start, end)),
        }
    }
    merged
        .into_iter()
        .filter_map(|(k, s, e)| {
            Some(ReadRequest {
                kind: if k == 0 { RegisterKind::Holding } else { RegisterKind::Input },
                address: RegisterAddress(u16::try_from(s).ok()?),
                count: u16::try_from(e.checked_sub(s)?).ok()?,
            })
        })
        .collect()
}

/// Decode every readable register of `profile` from `image`.
///
/// # Errors
/// The first [`DecodeError`]: a register not in the image, a scale factor out of range, a
/// value that does not scale to a finite number, a control code without an `enum` entry.
pub fn decode(profile: &Profile, image: &RegisterImage) -> Result<Values, DecodeError> {
    let mut entries = Vec::with_capacity(profile.registers().len());
    for r in profile.registers().iter().filter(|r| r.read) {
        let mut words = [0u16; 4];
        let n = usize::from(r.value_type.words());
        for (i, w) in words.iter_mut().take(n).enumerate() {
            let a = u16::try_from(i).ok().and_then(|i| r.address.offset(i));
            *w = a
                .and_then(|a| image.get(r.table, a.0))
                .ok_or(DecodeError::Missing { signal: r.signal, address: a.unwrap_or(r.address) })?;
        }
        let sf = match r.scale_register {
            Some(a) => {
                Some(image.get(r.table, a.0).ok_or(DecodeError::Missing { signal: r.signal, address: a })?)
            }
            None => None,
        };
        let v = decode_register(r, words.get(..n).unwrap_or(&[]), sf)?;
        entries.push((r.signal, v));
    }
    Ok(Values { entries })
}

enum Raw {
    Int(i128),
    Float(f32),
}

fn raw_bits(r: &Register, words: &[u16]) -> Option<u64> {
    let n = usize::from(r.value_type.words());
    let words = words.get(..n)?;
    let mut bits = 0u64;
    let mut push = |w: u16| bits = (bits << 16) | u64::from(w);
    match r.word_order {
        WordOrder::Big => words.iter().copied().for_each(&mut push),
        WordOrder::Little => words.iter().rev().copied().for_each(&mut push),
    }
    Some(bits)
}

// Truncating and wrapping casts are the point here: `bits` holds exactly the type's width, and
// a signed type is that bit pattern read as two's complement.
#[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
fn raw_value(t: ValueType, bits: u64) -> Raw {
    match t {
        ValueType::U16 => Raw::Int(i128::from(bits as u16)),
        ValueType::I16 => Raw::Int(i128::from(bits as u16 as i16)),
        ValueType::U32 => Raw::Int(i128::from(bits as u32)),
        ValueType::I32 => Raw::Int(i128::from(bits as u32 as i32)),
        ValueType::U64 => Raw::Int(i128::from(bits)),
        ValueType::I64 => Raw::Int(i128::from(bits as i64)),
        ValueType::F32 => Raw::Float(f32::from_bits(bits as u32)),
    }
}

fn width_mask(t: ValueType) -> u64 {
    match t.words() {
        1 => 0xFFFF,
        2 => 0xFFFF_FFFF,
        _ => u64::MAX,
    }
}

/// Decode one register from its words (`words.len()` = the type's register count) and, if the
/// register has a `scale_register`, the raw exponent. `Ok(None)` = not available (NaN or an
/// `absent` code).
///
/// Numbers: `((raw × scale × 10^exponent) + offset) × unit factor`, negated for
/// `sign = "invert"`.
///
/// # Errors
/// Too few words ([`DecodeError::Missing`]), an exponent outside −10..=10, a non-finite result,
/// a `control_enable` code without an `enum` entry.
pub fn decode_register(
    r: &Register,
    words: &[u16],
    scale_exponent: Option<u16>,
) -> Result<Option<Value>, DecodeError> {
    let bits = raw_bits(r, words).ok_or(DecodeError::Missing { signal: r.signal, address: r.address })?;
    let mask = width_mask(r.value_type);
    // `absent` codes are compared as bit patterns of the register's width (so -1 and 0xFFFF
    // are the same code for a 16-bit register).
    if r.absent.iter().any(|a| bits_of(*a) & mask == bits & mask) {
        return Ok(None);
    }
    let raw = raw_value(r.value_type, bits);
    match r.signal.quantity() {
        Quantity::Code | Quantity::Bits => {
            let Raw::Int(code) = raw else {
                return Ok(None);
            };
            Ok(Some(decode_code(r, code)?))
        }
        _ => {
            let x = match raw {
                Raw::Int(i) => int_as_f64(i),
                Raw::Float(f) if !f.is_finite() => return Ok(None),
                Raw::Float(f) => f64::from(f),
            };
            let mut factor = r.scale;
            if let Some(e) = scale_exponent {
                // SunSpec marks an unimplemented scale factor with 0x8000.
                if e == 0x8000 {
                    return Ok(None);
                }
                let e = i16::from_be_bytes(e.to_be_bytes());
                if !(-10..=10).contains(&e) {
                    return Err(DecodeError::ScaleFactor { signal: r.signal, exponent: e });
                }
                factor *= 10f64.powi(i32::from(e));
            }
            let mut v = (x * factor + r.offset) * r.unit_factor;
            if r.sign == Sign::Invert {
                v = -v;
            }
            if !v.is_finite() {
                return Err(DecodeError::NotFinite { signal: r.signal, raw: x });
            }
            // Normalise -0.0 so that readings compare equal to zero.
            Ok(Some(Value::Number(if v == 0.0 { 0.0 } else { v })))
        }
    }
}

fn decode_code(r: &Register, code: i128) -> Result<Value, DecodeError> {
    let found = r.enum_map.iter().find(|(raw, _)| i128::from(*raw) == code).map(|(_, v)| *v);
    let code64 = i64::try_from(code).unwrap_or(i64::MAX);
    Ok(match r.signal {
        // An unknown state is reported as a fault: the EMS must not command a device whose
        // state it cannot name.
        Signal::State => match found {
            Some(EnumValue::State(s)) => Value::State(s),
            _ => Value::State(InverterState::Fault),
        },
        Signal::ControlEnable => match found {
            Some(EnumValue::Control(c)) => Value::Control(c),
            _ => return Err(DecodeError::UnknownCode { signal: r.signal, raw: code64 }),
        },
        Signal::Ready => match found {
            Some(EnumValue::Ready(b)) => Value::Ready(b),
            _ if r.enum_map.is_empty() => Value::Ready(code != 0),
            // An unknown code is "not ready".
            _ => Value::Ready(false),
        },
        Signal::Alarms => {
            let bits = low_bits(code);
            let mut alarms = BmsAlarms::NONE;
            if r.bits.is_empty() {
                if bits != 0 {
                    alarms = alarms.with(BmsAlarm::Internal);
                }
            } else {
                let mut known = 0u64;
                for (bit, alarm) in &r.bits {
                    known |= 1u64 << bit;
                    if bits & (1u64 << bit) != 0 {
                        alarms = alarms.with(*alarm);
                    }
                }
                // A set bit the profile does not name is still an alarm.
                if bits & !known != 0 {
                    alarms = alarms.with(BmsAlarm::Internal);
                }
            }
            Value::Alarms(alarms)
        }
        _ => return Err(DecodeError::UnknownCode { signal: r.signal, raw: code64 }),
    })
}

/// Encode `value` (EMS unit and sign) into the register's words: the inverse of
/// [`decode_register`] (sign, unit factor, offset, scale), rounded to the nearest integer for
/// integer types.
///
/// # Errors
/// [`EncodeError::OutOfRange`] if the raw value does not fit the register type (or is not
/// finite); [`EncodeError::NotWritable`] for read-only registers and codes.
pub fn encode(r: &Register, value: f64) -> Result<Vec<u16>, EncodeError> {
    if !r.write || matches!(r.signal.quantity(), Quantity::Code | Quantity::Bits) {
        return Err(EncodeError::NotWritable { signal: r.signal });
    }
    let v = if r.sign == Sign::Invert { -value } else { value };
    let raw = (v / r.unit_factor - r.offset) / r.scale;
    let out_of_range = || EncodeError::OutOfRange { signal: r.signal, value, raw, value_type: r.value_type };
    if !raw.is_finite() {
        return Err(out_of_range());
    }
    let bits: u64 = if r.value_type == ValueType::F32 {
        if raw.abs() > f64::from(f32::MAX) {
            return Err(out_of_range());
        }
        // Range checked just above; f64 → f32 rounds to nearest.
        u64::from(crate::narrow::f32_of(raw).to_bits())
    } else {
        let rounded = raw.round();
        let (lo, hi): (f64, f64) = match r.value_type {
            ValueType::U16 => (0.0, 65_535.0),
            ValueType::I16 => (-32_768.0, 32_767.0),
            ValueType::U32 => (0.0, 4_294_967_295.0),
            ValueType::I32 => (-2_147_483_648.0, 2_147_483_647.0),
            // 2^64 and 2^63 are exact in f64; the bounds are exclusive above.
            ValueType::U64 => (0.0, 18_446_744_073_709_549_568.0),
            ValueType::I64 | ValueType::F32 => (-9_223_372_036_854_775_808.0, 9_223_372_036_854_774_784.0),
        };
        if rounded < lo || rounded > hi {
            return Err(out_of_range());
        }
        bits_of_rounded(rounded)
    };
    Ok(words_of(r, bits))
}

/// The words for a code register (`control_enable`, `alarm_reset`): the raw value the profile
/// maps to `meaning`.
///
/// # Errors
/// [`EncodeError::NotWritable`] if the register is not writable or has no such entry;
/// [`EncodeError::OutOfRange`] if the raw value does not fit the type.
pub fn encode_enum(r: &Register, meaning: EnumValue) -> Result<Vec<u16>, EncodeError> {
    if !r.write {
        return Err(EncodeError::NotWritable { signal: r.signal });
    }
    let raw = r
        .enum_map
        .iter()
        .find(|(_, v)| *v == meaning)
        .map(|(raw, _)| *raw)
        .ok_or(EncodeError::NotWritable { signal: r.signal })?;
    let mask = width_mask(r.value_type);
    let fits = match r.value_type {
        ValueType::U16 => (0..=0xFFFF).contains(&raw),
        ValueType::I16 => (-32_768..=32_767).contains(&raw),
        ValueType::U32 => (0..=0xFFFF_FFFF).contains(&raw),
        ValueType::I32 => (-2_147_483_648..=2_147_483_647).contains(&raw),
        ValueType::U64 => raw >= 0,
        ValueType::I64 | ValueType::F32 => true,
    };
    if !fits {
        return Err(EncodeError::OutOfRange {
            signal: r.signal,
            value: int_as_f64(i128::from(raw)),
            raw: int_as_f64(i128::from(raw)),
            value_type: r.value_type,
        });
    }
    Ok(words_of(r, bits_of(raw) & mask))
}

/// The two's-complement bit pattern of `x`.
fn bits_of(x: i64) -> u64 {
    u64::from_be_bytes(x.to_be_bytes())
}

/// The low 64 bits of a register's integer value (its bit pattern: registers are at most 64 bits).
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // keeping the low bits is the point
fn low_bits(x: i128) -> u64 {
    x as u64
}

/// A register's integer value as `f64`: exact up to 2^53, rounded to nearest beyond (a 64-bit
/// counter loses its last digits, as any float reading would).
#[allow(clippy::cast_precision_loss)] // rounding beyond 2^53 is accepted, see above
fn int_as_f64(x: i128) -> f64 {
    x as f64
}

/// `rounded` (a whole number, already checked to fit the register's type) as its bit pattern;
/// a negative value becomes its two's complement, masked to the register width by the caller.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // in range, checked by the caller
fn bits_of_rounded(rounded: f64) -> u64 {
    if rounded < 0.0 {
        bits_of(rounded as i64)
    } else {
        rounded as u64
    }
}

// The `as u16` keeps the low word on purpose (the shift put the wanted word there).
#[allow(clippy::cast_possible_truncation)]
fn words_of(r: &Register, bits: u64) -> Vec<u16> {
    let n = r.value_type.words();
    // Big-endian word list first, then reversed for little word order.
    let mut words: Vec<u16> = (0..n).rev().map(|i| (bits >> (16 * u32::from(i))) as u16).collect();
    if r.word_order == WordOrder::Little {
        words.reverse();
    }
    words
}
