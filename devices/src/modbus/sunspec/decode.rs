//! Decoding a model's register block into typed point values.
//!
//! A block starts at the model's `ID` register (`[ID, L, data…]`). [`decode_model`] places the
//! points from the definition ([`super::model`]) and decodes each one:
//!
//! * **Word order** is big-endian: the first register of a 32/64-bit value is the most
//!   significant word.
//! * **Not implemented** values are *absent* (left out), never numbers: 0x8000 for `int16` and
//!   `sunssf`, 0xFFFF for `uint16`/`enum16`/`bitfield16`/`acc16`/`count`, all ones for the
//!   unsigned/enum/bitfield/acc 32- and 64-bit types, 0x80000000 (0x8000…0) for `int32`
//!   (`int64`), an all-zero string, NaN floats, a zero IP address.
//! * **Scale factors**: a point with `sf` is reported as `raw × 10^sf`, `sf` read from its
//!   `sunssf` point in the same group instance or a parent. A scale factor that is not
//!   implemented (0x8000) makes the points it scales absent; one outside `-10..=10` is a
//!   [`DecodeError`] (a garbage exponent would turn a valid reading into nonsense). Zero is fine.
//! * **Real-device deviations**: a block whose `L` is shorter than the definition decodes the
//!   points that fit (the rest are absent); a longer one has its extra registers ignored; a block
//!   shorter than its own `L` (a truncated read) decodes what is there. Repeating-group counts
//!   that are not implemented count as 0; counts larger than the block stop at the block's end.
//!
//! Repeating groups are named with 1-based indexes: `Crv[1].Pt[2].V`; a non-repeating nested
//! group adds its name: `PFWInj.PF`. `ID`, `L` and `pad` points are not reported.

use super::model::{self, ModelDef, PlacedScaleFactor, PointDef, PointType};

/// A register block that cannot be decoded; names the model, the point and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The block does not even hold `ID` and `L`.
    #[error("SunSpec model {model}: block of {len} registers lacks the ID and L registers")]
    TooShort {
        /// Model id.
        model: u16,
        /// Registers given.
        len: usize,
    },
    /// The `ID` register does not hold the expected model id.
    #[error("SunSpec model {expected}: point ID holds {found}")]
    WrongId {
        /// Model expected.
        expected: u16,
        /// Value found.
        found: u16,
    },
    /// No definition for this model id.
    #[error("SunSpec model {model}: no definition")]
    UnknownModel {
        /// Model id.
        model: u16,
    },
    /// A scale factor outside `-10..=10`.
    #[error("SunSpec model {model}, point {point}: scale factor {sf} outside -10..=10")]
    ScaleFactorOutOfRange {
        /// Model id.
        model: u16,
        /// The scaled point (path).
        point: String,
        /// The exponent read.
        sf: i16,
    },
}

/// A decoded point value (absent points are not represented at all).
#[derive(Debug, Clone, PartialEq)]
pub enum PointValue {
    /// An unscaled integer (`uint*`, `int*`, `acc*`, `count`), with the definition's units.
    Integer {
        /// The value.
        value: i128,
        /// Units (`Secs`, `W`, …) if the definition has them.
        units: Option<&'static str>,
    },
    /// A scaled value: `raw × 10^sf`.
    Scaled {
        /// The value in `units`.
        value: f64,
        /// Units if the definition has them.
        units: Option<&'static str>,
    },
    /// A `float32`/`float64` value.
    Float {
        /// The value.
        value: f64,
        /// Units if the definition has them.
        units: Option<&'static str>,
    },
    /// A `sunssf` scale-factor exponent.
    ScaleFactor(i16),
    /// A string (trailing NULs and spaces removed).
    Text(String),
    /// An enum value with its symbol name when the definition has one.
    Enum {
        /// Raw value.
        value: u32,
        /// Symbol name.
        symbol: Option<&'static str>,
    },
    /// A bitfield: raw bits and the names of the set bits the definition names.
    Bitfield {
        /// Raw bits.
        bits: u64,
        /// Names of the set bits in bit order (`"bit17"` for a bit the definition does not name,
        /// so nothing set is hidden).
        symbols: Vec<String>,
    },
    /// An address (`ipaddr`, `ipv6addr`, `eui48`) in its usual text form.
    Address(String),
}

impl PointValue {
    /// The value as a number (integers, scaled values, floats, scale factors, enum values).
    #[must_use]
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            // register values are at most 64 bits; f64 is the scan's number type
            #[allow(clippy::cast_precision_loss)]
            Self::Integer { value, .. } => Some(*value as f64),
            Self::Scaled { value, .. } | Self::Float { value, .. } => Some(*value),
            Self::ScaleFactor(v) => Some(f64::from(*v)),
            Self::Enum { value, .. } => Some(f64::from(*value)),
            Self::Bitfield { .. } | Self::Text(_) | Self::Address(_) => None,
        }
    }

    /// The raw integer of an enum, bitfield or integer point.
    #[must_use]
    pub fn as_raw(&self) -> Option<u64> {
        match self {
            Self::Integer { value, .. } => u64::try_from(*value).ok(),
            Self::Enum { value, .. } => Some(u64::from(*value)),
            Self::Bitfield { bits, .. } => Some(*bits),
            Self::ScaleFactor(_)
            | Self::Scaled { .. }
            | Self::Float { .. }
            | Self::Text(_)
            | Self::Address(_) => None,
        }
    }

    /// The units, if any.
    #[must_use]
    pub const fn units(&self) -> Option<&'static str> {
        match self {
            Self::Integer { units, .. } | Self::Scaled { units, .. } | Self::Float { units, .. } => *units,
            Self::ScaleFactor(_)
            | Self::Text(_)
            | Self::Enum { .. }
            | Self::Bitfield { .. }
            | Self::Address(_) => None,
        }
    }

    /// The JSON form used by the scan output: a number with units is `{"value": 230.1, "units":
    /// "V"}`, a number without units is a bare number, a string is a string, an enum is its
    /// symbol name (its number if the definition has no name for it), a bitfield is the array of
    /// its set bits' names (`"bit17"` for unnamed bits), a scale factor is its exponent.
    #[must_use]
    pub fn as_json_value(&self) -> serde_json::Value {
        use serde_json::Value;
        let number = |v: f64| serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number);
        let with_units = |v: Value, u: Option<&'static str>| match u {
            Some(u) => serde_json::json!({ "value": v, "units": u }),
            None => v,
        };
        match self {
            Self::Integer { value, units } => {
                let v = i64::try_from(*value)
                    .map(Value::from)
                    .or_else(|_| u64::try_from(*value).map(Value::from))
                    .unwrap_or(Value::Null);
                with_units(v, *units)
            }
            Self::Scaled { value, units } | Self::Float { value, units } => {
                with_units(number(*value), *units)
            }
            Self::ScaleFactor(v) => Value::from(*v),
            Self::Text(s) | Self::Address(s) => Value::String(s.clone()),
            Self::Enum { value, symbol } => {
                symbol.map_or_else(|| Value::from(*value), |s| Value::String(s.to_owned()))
            }
            Self::Bitfield { symbols, .. } => {
                Value::Array(symbols.iter().map(|s| Value::String(s.clone())).collect())
            }
        }
    }
}

/// One decoded (implemented) point.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedPoint {
    /// Path (`W`, `Crv[1].Pt[2].V`).
    pub path: String,
    /// Value.
    pub value: PointValue,
}

/// A decoded model instance.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedModel {
    /// Model id.
    pub id: u16,
    /// `L` as read from the block.
    pub length: u16,
    /// The implemented points in register order.
    pub points: Vec<DecodedPoint>,
}

impl DecodedModel {
    /// A point by path.
    #[must_use]
    pub fn get(&self, path: &str) -> Option<&PointValue> {
        self.points.iter().find(|p| p.path == path).map(|p| &p.value)
    }

    /// A point's numeric value by path ([`PointValue::as_f64`]).
    #[must_use]
    pub fn number(&self, path: &str) -> Option<f64> {
        self.get(path).and_then(PointValue::as_f64)
    }

    /// A point's raw integer by path ([`PointValue::as_raw`]).
    #[must_use]
    pub fn raw(&self, path: &str) -> Option<u64> {
        self.get(path).and_then(PointValue::as_raw)
    }
}

/// Decode `block` (starting at the `ID` register) as model `id`.
///
/// # Errors
///
/// [`DecodeError::UnknownModel`] for a model without a definition; otherwise as [`decode_with`].
pub fn decode_model(id: u16, block: &[u16]) -> Result<DecodedModel, DecodeError> {
    let def = model::model(id).ok_or(DecodeError::UnknownModel { model: id })?;
    decode_with(def, block)
}

/// Decode `block` (starting at the `ID` register) as the model its `ID` register names.
///
/// # Errors
///
/// [`DecodeError::TooShort`] for an empty block; otherwise as [`decode_model`].
pub fn decode_block(block: &[u16]) -> Result<DecodedModel, DecodeError> {
    let id = *block.first().ok_or(DecodeError::TooShort { model: 0, len: 0 })?;
    decode_model(id, block)
}

/// Decode with an explicit definition.
///
/// # Errors
///
/// [`DecodeError`] when the block lacks `ID` and `L`, its `ID` is not the definition's model, or a scale
/// factor lies outside `-10..=10`.
pub fn decode_with(def: &'static ModelDef, block: &[u16]) -> Result<DecodedModel, DecodeError> {
    let (Some(&found), Some(&length)) = (block.first(), block.get(1)) else {
        return Err(DecodeError::TooShort { model: def.id, len: block.len() });
    };
    if found != def.id {
        return Err(DecodeError::WrongId { expected: def.id, found });
    }
    let limit = block.len().min(usize::from(length) + 2);
    let mut count_at = |at: usize, _: &str| match block.get(at) {
        Some(&v) if at < limit && v != 0xFFFF => usize::from(v),
        _ => 0,
    };
    let placed = def.layout(limit, &mut count_at);
    let mut points = Vec::with_capacity(placed.len());
    for p in placed {
        if matches!(p.def.ty, PointType::Pad) || (p.offset < 2 && (p.def.name == "ID" || p.def.name == "L")) {
            continue;
        }
        let end = p.offset + usize::from(p.def.size);
        if end > limit {
            continue;
        }
        let Some(regs) = block.get(p.offset..end) else { continue };
        let sf = match p.sf {
            PlacedScaleFactor::None => None,
            PlacedScaleFactor::Fixed(v) => Some(Some(v)),
            PlacedScaleFactor::Missing => Some(None),
            PlacedScaleFactor::At(at) => Some(match block.get(at) {
                Some(&raw) if at < limit && raw != 0x8000 => Some(i16::from_be_bytes(raw.to_be_bytes())),
                _ => None,
            }),
        };
        let sf = match sf {
            None => None,
            Some(None) => continue, // scale factor not implemented: the point is absent
            Some(Some(v)) if (-10..=10).contains(&v) => Some(v),
            Some(Some(v)) => {
                return Err(DecodeError::ScaleFactorOutOfRange { model: def.id, point: p.path, sf: v })
            }
        };
        if let Some(value) = decode_point(p.def, regs, sf) {
            points.push(DecodedPoint { path: p.path, value });
        }
    }
    Ok(DecodedModel { id: def.id, length, points })
}

fn word(regs: &[u16]) -> u64 {
    regs.iter().fold(0u64, |acc, r| (acc << 16) | u64::from(*r))
}

/// `raw × 10^sf`, dividing for negative exponents so 2301 with sf −1 is exactly 230.1.
#[must_use]
pub fn apply_scale(raw: i128, sf: i16) -> f64 {
    #[allow(clippy::cast_precision_loss)] // register integers are at most 64 bits
    let v = raw as f64;
    let p = 10f64.powi(i32::from(sf.unsigned_abs()));
    if sf < 0 {
        v / p
    } else {
        v * p
    }
}

fn decode_point(def: &'static PointDef, regs: &[u16], sf: Option<i16>) -> Option<PointValue> {
    let units = def.units.as_deref();
    let n = regs.len();
    let bits = u32::try_from(n * 16).unwrap_or(64).min(64);
    let all_ones = if bits >= 64 { u64::MAX } else { (1u64 << bits) - 1 };
    let raw = word(regs);
    let integer = |value: i128| {
        Some(match sf {
            Some(sf) => PointValue::Scaled { value: apply_scale(value, sf), units },
            None => PointValue::Integer { value, units },
        })
    };
    match def.ty {
        PointType::Uint16
        | PointType::Uint32
        | PointType::Uint64
        | PointType::Acc16
        | PointType::Acc32
        | PointType::Acc64
        | PointType::Count => {
            if raw == all_ones {
                None
            } else {
                integer(i128::from(raw))
            }
        }
        PointType::Int16 | PointType::Int32 | PointType::Int64 => {
            let sign = 1u64 << (bits - 1);
            if raw == sign {
                return None;
            }
            let value = if raw & sign != 0 { i128::from(raw) - (1i128 << bits) } else { i128::from(raw) };
            integer(value)
        }
        PointType::Sunssf => {
            let r = u16::try_from(raw).ok()?;
            if r == 0x8000 {
                None
            } else {
                Some(PointValue::ScaleFactor(i16::from_be_bytes(r.to_be_bytes())))
            }
        }
        PointType::Enum16 | PointType::Enum32 => {
            if raw == all_ones {
                return None;
            }
            let value = u32::try_from(raw).ok()?;
            let symbol = def.symbols.iter().find(|s| s.value == raw).map(|s| s.name.as_str());
            Some(PointValue::Enum { value, symbol })
        }
        PointType::Bitfield16 | PointType::Bitfield32 | PointType::Bitfield64 => {
            if raw == all_ones {
                return None;
            }
            let mut symbols = Vec::new();
            for bit in 0..bits {
                if raw & (1u64 << bit) != 0 {
                    match def.symbols.iter().find(|s| s.value == u64::from(bit)) {
                        Some(s) => symbols.push(s.name.clone()),
                        None => symbols.push(format!("bit{bit}")),
                    }
                }
            }
            Some(PointValue::Bitfield { bits: raw, symbols })
        }
        PointType::String => {
            let bytes: Vec<u8> = regs.iter().flat_map(|r| r.to_be_bytes()).collect();
            let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
            let s = String::from_utf8_lossy(bytes.get(..end).unwrap_or(&[])).trim_end().to_owned();
            if s.is_empty() {
                None
            } else {
                Some(PointValue::Text(s))
            }
        }
        PointType::Pad => None,
        PointType::Float32 => {
            let v = f64::from(f32::from_bits(u32::try_from(raw).ok()?));
            if v.is_nan() {
                None
            } else {
                Some(PointValue::Float { value: v, units })
            }
        }
        PointType::Float64 => {
            let v = f64::from_bits(raw);
            if v.is_nan() {
                None
            } else {
                Some(PointValue::Float { value: v, units })
            }
        }
        PointType::Ipaddr => {
            if raw == 0 {
                return None;
            }
            let b = u32::try_from(raw).ok()?.to_be_bytes();
            Some(PointValue::Address(format!("{}.{}.{}.{}", b[0], b[1], b[2], b[3])))
        }
        PointType::Ipv6addr => {
            if regs.iter().all(|r| *r == 0) {
                return None;
            }
            let parts: Vec<String> = regs.iter().map(|r| format!("{r:x}")).collect();
            Some(PointValue::Address(parts.join(":")))
        }
        PointType::Eui48 => {
            let mac = raw & 0xFFFF_FFFF_FFFF;
            if mac == 0 || mac == 0xFFFF_FFFF_FFFF {
                return None;
            }
            let b = mac.to_be_bytes();
            Some(PointValue::Address(format!(
                "{:02X}:{:02X}:{:02X}:{:02X}:{:02X}:{:02X}",
                b[2], b[3], b[4], b[5], b[6], b[7]
            )))
        }
    }
}

/// Encode `value` (in the point's units, already scaled) into the point's registers with the
/// exponent `sf` (`None` for an unscaled point): `raw = round(value / 10^sf)`, big-endian word
/// order. `None` if the value is not finite, not representable by the type, or would collide
/// with the type's not-implemented value. Strings, pads and addresses are not encoded here.
#[must_use]
pub fn encode_point(def: &PointDef, sf: Option<i16>, value: f64) -> Option<Vec<u16>> {
    if !value.is_finite() {
        return None;
    }
    let size = usize::from(def.size);
    let scaled = match sf {
        Some(sf) if sf < 0 => value * 10f64.powi(i32::from(sf.unsigned_abs())),
        Some(sf) => value / 10f64.powi(i32::from(sf)),
        None => value,
    };
    let words = |raw: u64, n: usize| -> Vec<u16> {
        (0..n)
            .rev()
            .map(|i| {
                u16::try_from(
                    u32::try_from(16 * i).ok().and_then(|sh| raw.checked_shr(sh)).unwrap_or(0) & 0xFFFF,
                )
                .unwrap_or(0)
            })
            .collect()
    };
    let bits = u32::try_from(size * 16).unwrap_or(64).min(64);
    let max_unsigned: f64 = match bits {
        16 => 65_534.0,
        32 => 4_294_967_294.0,
        _ => 9_007_199_254_740_992.0, // 2^53: exact in f64
    };
    match def.ty {
        PointType::Uint16
        | PointType::Uint32
        | PointType::Uint64
        | PointType::Acc16
        | PointType::Acc32
        | PointType::Acc64
        | PointType::Count
        | PointType::Enum16
        | PointType::Enum32
        | PointType::Bitfield16
        | PointType::Bitfield32
        | PointType::Bitfield64 => {
            let r = scaled.round();
            if !(0.0..=max_unsigned).contains(&r) {
                return None;
            }
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // range checked above
            let raw = r as u64;
            Some(words(raw, size))
        }
        PointType::Int16 | PointType::Int32 | PointType::Int64 => {
            let r = scaled.round();
            let max: f64 = match bits {
                16 => 32_767.0,
                32 => 2_147_483_647.0,
                _ => 9_007_199_254_740_992.0,
            };
            if !(-max..=max).contains(&r) {
                return None;
            }
            #[allow(clippy::cast_possible_truncation)] // range checked above
            let raw = r as i64;
            let mask = if bits >= 64 { u64::MAX } else { (1u64 << bits) - 1 };
            Some(words(u64::from_ne_bytes(raw.to_ne_bytes()) & mask, size))
        }
        PointType::Sunssf => {
            let r = value.round();
            if !(-10.0..=10.0).contains(&r) {
                return None;
            }
            #[allow(clippy::cast_possible_truncation)] // range checked above
            let raw = r as i16;
            Some(vec![u16::from_ne_bytes(raw.to_ne_bytes())])
        }
        PointType::Float32 => {
            #[allow(clippy::cast_possible_truncation)] // float32 points hold f32 by definition
            let f = scaled as f32;
            Some(words(u64::from(f.to_bits()), 2))
        }
        PointType::Float64 => Some(words(scaled.to_bits(), 4)),
        PointType::String | PointType::Pad | PointType::Ipaddr | PointType::Ipv6addr | PointType::Eui48 => {
            None
        }
    }
}

/// The not-implemented register pattern of a point (what a device that lacks it answers).
#[must_use]
pub fn not_implemented(def: &PointDef) -> Vec<u16> {
    let n = usize::from(def.size);
    let mut v = match def.ty {
        PointType::Int16 | PointType::Int32 | PointType::Int64 | PointType::Sunssf | PointType::Pad => {
            let mut v = vec![0u16; n];
            if let Some(f) = v.first_mut() {
                *f = 0x8000;
            }
            v
        }
        PointType::String | PointType::Ipaddr | PointType::Ipv6addr => vec![0u16; n],
        PointType::Float32 | PointType::Float64 => {
            let mut v = vec![0u16; n];
            if let Some(f) = v.first_mut() {
                *f = 0x7FF8;
            }
            if def.ty == PointType::Float32 {
                if let Some(f) = v.first_mut() {
                    *f = 0x7FC0;
                }
            }
            v
        }
        PointType::Uint16
        | PointType::Uint32
        | PointType::Uint64
        | PointType::Acc16
        | PointType::Acc32
        | PointType::Acc64
        | PointType::Count
        | PointType::Enum16
        | PointType::Enum32
        | PointType::Bitfield16
        | PointType::Bitfield32
        | PointType::Bitfield64
        | PointType::Eui48 => vec![0xFFFFu16; n],
    };
    v.truncate(n);
    v
}
