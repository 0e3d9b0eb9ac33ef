//! Discovery (the `SunS` marker and the model chain) and the installer's scan.

use super::decode::{decode_model, DecodeError, DecodedModel, PointValue};
pub use super::error::BaseProbe;
use super::error::SunSpecError;
use crate::modbus::{LinkError, RegisterAddress, RegisterClient, RegisterKind, MAX_READ_REGISTERS};

/// The `SunS` marker (`0x5375 0x6E53`).
pub const SUNS_MARKER: [u16; 2] = [0x5375, 0x6E53];
/// The base addresses tried, in order (0-based holding-register addresses).
pub const BASE_ADDRESSES: [u16; 3] = [40_000, 0, 50_000];
/// The `ID` of the end marker (its `L` is 0).
pub const END_MODEL_ID: u16 = 0xFFFF;
/// At most this many models are walked (a chain cannot loop, since every step moves forward,
/// but a garbage chain of zero-length models could otherwise be walked 32 768 times).
pub const MAX_MODELS: usize = 256;

/// One model in the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ModelInfo {
    /// Model id.
    pub id: u16,
    /// Address of the model's `ID` register (`L` is at `address + 1`, the data at `address + 2`).
    pub address: RegisterAddress,
    /// `L`: the number of data registers after `ID` and `L`.
    pub length: u16,
}

/// The SunSpec register map of one unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SunSpecMap {
    /// Where the `SunS` marker is.
    pub base_address: RegisterAddress,
    /// The models in chain order.
    pub models: Vec<ModelInfo>,
}

impl SunSpecMap {
    /// The first model with this id.
    #[must_use]
    pub fn find(&self, id: u16) -> Option<&ModelInfo> {
        self.models.iter().find(|m| m.id == id)
    }

    /// The first model (in `ids` order of preference) present.
    #[must_use]
    pub fn find_any(&self, ids: &[u16]) -> Option<&ModelInfo> {
        ids.iter().find_map(|id| self.find(*id))
    }
}

/// Read `count` holding registers from `address` in requests of at most 125 registers.
///
/// # Errors
///
/// [`SunSpecError::Link`] when a request fails or returns the wrong number of registers,
/// [`SunSpecError::Exception`] when the device refuses one, [`SunSpecError::BadChain`] when the range runs
/// past register 65535.
pub async fn read_registers<C: RegisterClient>(
    c: &mut C,
    address: RegisterAddress,
    count: usize,
) -> Result<Vec<u16>, SunSpecError> {
    let mut out = Vec::with_capacity(count);
    let mut done = 0usize;
    while done < count {
        let n = (count - done).min(usize::from(MAX_READ_REGISTERS));
        let at = u16::try_from(done)
            .ok()
            .and_then(|d| address.offset(d))
            .ok_or(SunSpecError::BadChain { address, reason: "read runs past register 65535" })?;
        let n16 = u16::try_from(n).unwrap_or(MAX_READ_REGISTERS);
        match c.read(RegisterKind::Holding, at, n16).await {
            Err(source) => return Err(SunSpecError::Link { address: at, source }),
            Ok(Err(exception)) => return Err(SunSpecError::Exception { address: at, exception }),
            Ok(Ok(v)) if v.len() == n => out.extend_from_slice(&v),
            Ok(Ok(_)) => {
                return Err(SunSpecError::Link {
                    address: at,
                    source: LinkError::Protocol(format!("expected {n} registers")),
                })
            }
        }
        done += n;
    }
    Ok(out)
}

/// Read one model's block (`ID`, `L` and its `L` data registers).
///
/// # Errors
///
/// As [`read_registers`].
pub async fn read_model<C: RegisterClient>(c: &mut C, info: &ModelInfo) -> Result<Vec<u16>, SunSpecError> {
    read_registers(c, info.address, usize::from(info.length) + 2).await
}

/// Read and decode several models of one device with as few requests as possible: models are
/// read as contiguous blocks, and a block also spans the other models lying between two wanted
/// ones when that does not cost an extra request (every register inside the chain exists, so a
/// bridged gap never draws an exception). Results come back in the order of `infos`.
///
/// # Errors
///
/// As [`read_registers`] for the reads; [`SunSpecError::Decode`] when a block does not decode;
/// [`SunSpecError::BadChain`] when a model is listed twice.
pub async fn read_models<C: RegisterClient>(
    c: &mut C,
    infos: &[ModelInfo],
) -> Result<Vec<DecodedModel>, SunSpecError> {
    let span = |i: &ModelInfo| usize::from(i.length) + 2;
    let requests = |len: usize| len.div_ceil(usize::from(MAX_READ_REGISTERS));
    let mut order: Vec<&ModelInfo> = infos.iter().collect();
    order.sort_by_key(|i| i.address);
    // (start, length in registers, members)
    let mut blocks: Vec<(RegisterAddress, usize, Vec<ModelInfo>)> = Vec::new();
    for info in order {
        let start = usize::from(info.address.0);
        if let Some((b_start, b_len, members)) = blocks.last_mut() {
            let end = usize::from(b_start.0) + *b_len;
            if start >= end {
                let merged = start - end + span(info) + *b_len;
                if requests(merged) <= requests(*b_len) + requests(span(info)) {
                    *b_len = merged;
                    members.push(*info);
                    continue;
                }
            }
        }
        blocks.push((info.address, span(info), vec![*info]));
    }
    let mut decoded: Vec<(RegisterAddress, DecodedModel)> = Vec::with_capacity(infos.len());
    for (start, len, members) in blocks {
        let regs = read_registers(c, start, len).await?;
        for m in members {
            let off = usize::from(m.address.0.saturating_sub(start.0));
            let block = regs.get(off..off + span(&m)).ok_or(SunSpecError::BadChain {
                address: m.address,
                reason: "model outside the block read for it",
            })?;
            decoded.push((m.address, decode_model(m.id, block)?));
        }
    }
    infos
        .iter()
        .map(|i| {
            decoded
                .iter()
                .position(|(a, _)| *a == i.address)
                .map(|p| decoded.swap_remove(p).1)
                .ok_or(SunSpecError::BadChain { address: i.address, reason: "model listed twice" })
        })
        .collect()
}

/// Find the `SunS` marker at 40000, then 0, then 50000 and walk the model chain. An exception
/// or a link error at a candidate base address moves on to the next one;
/// [`SunSpecError::NotFound`] lists what happened at each.
///
/// # Errors
///
/// [`SunSpecError::NotFound`] when no base address holds the marker; [`SunSpecError::BadChain`] or a link
/// error while walking the chain.
pub async fn discover<C: RegisterClient>(c: &mut C) -> Result<SunSpecMap, SunSpecError> {
    let base = find_base(c).await?;
    let (map, _) = walk(c, base, false).await?;
    Ok(map)
}

/// Walk the chain behind the marker at `base` (the marker is checked).
///
/// # Errors
///
/// [`SunSpecError::NotFound`] when `base` does not hold the marker; [`SunSpecError::BadChain`] or a link
/// error while walking the chain.
pub async fn discover_at<C: RegisterClient>(
    c: &mut C,
    base: RegisterAddress,
) -> Result<SunSpecMap, SunSpecError> {
    let marker = read_registers(c, base, 2).await?;
    if marker != SUNS_MARKER {
        return Err(SunSpecError::NotFound {
            attempts: vec![(
                base,
                BaseProbe::NoMarker([
                    marker.first().copied().unwrap_or(0),
                    marker.get(1).copied().unwrap_or(0),
                ]),
            )],
        });
    }
    let (map, _) = walk(c, base, false).await?;
    Ok(map)
}

async fn find_base<C: RegisterClient>(c: &mut C) -> Result<RegisterAddress, SunSpecError> {
    let mut attempts = Vec::new();
    for base in BASE_ADDRESSES.map(RegisterAddress) {
        let probe = match c.read(RegisterKind::Holding, base, 2).await {
            Err(e) => BaseProbe::Link(e),
            Ok(Err(e)) => BaseProbe::Exception(e),
            Ok(Ok(v)) if v == SUNS_MARKER => return Ok(base),
            Ok(Ok(v)) => {
                BaseProbe::NoMarker([v.first().copied().unwrap_or(0), v.get(1).copied().unwrap_or(0)])
            }
        };
        attempts.push((base, probe));
    }
    Err(SunSpecError::NotFound { attempts })
}

/// Walk the chain. With `bodies`, every model's block is read together with the next model's
/// header (one request per model of up to 121 registers); without, only the headers are read.
/// The chain ends at the end marker (`ID` 0xFFFF), or — tolerated — at a header that answers
/// with an exception (a device without an end marker).
async fn walk<C: RegisterClient>(
    c: &mut C,
    base: RegisterAddress,
    bodies: bool,
) -> Result<(SunSpecMap, Vec<Vec<u16>>), SunSpecError> {
    let mut models = Vec::new();
    let mut blocks = Vec::new();
    let mut addr = u32::from(base.0) + 2;
    let mut header = match read_at(c, addr, 2).await {
        Ok(h) => Some(h),
        Err(SunSpecError::Exception { .. }) => None,
        Err(e) => return Err(e),
    };
    while let Some([id, length]) = header.as_deref().and_then(|h| <[u16; 2]>::try_from(h).ok()) {
        let address = RegisterAddress(u16::try_from(addr).unwrap_or(u16::MAX));
        if id == END_MODEL_ID {
            break;
        }
        if models.len() >= MAX_MODELS {
            return Err(SunSpecError::BadChain { address, reason: "more than 256 models" });
        }
        let end = addr + 2 + u32::from(length);
        if end > 0x1_0000 {
            return Err(SunSpecError::BadChain { address, reason: "model runs past register 65535" });
        }
        models.push(ModelInfo { id, address, length });
        let next_header_fits = end + 2 <= 0x1_0000;
        header = if bodies {
            let with_header = if next_header_fits { u32::from(length) + 2 } else { u32::from(length) };
            match read_at(c, addr + 2, with_header).await {
                Ok(mut regs) => {
                    let next =
                        if next_header_fits { regs.split_off(usize::from(length)) } else { Vec::new() };
                    let mut block = vec![id, length];
                    block.extend(regs);
                    blocks.push(block);
                    (next.len() == 2).then_some(next)
                }
                Err(SunSpecError::Exception { .. }) if next_header_fits => {
                    // Perhaps no end marker: read the body alone; the chain ends here.
                    let regs = read_at(c, addr + 2, u32::from(length)).await?;
                    let mut block = vec![id, length];
                    block.extend(regs);
                    blocks.push(block);
                    None
                }
                Err(e) => return Err(e),
            }
        } else if next_header_fits {
            match read_at(c, end, 2).await {
                Ok(h) => Some(h),
                Err(SunSpecError::Exception { .. }) => None,
                Err(e) => return Err(e),
            }
        } else {
            None
        };
        addr = end;
    }
    Ok((SunSpecMap { base_address: base, models }, blocks))
}

async fn read_at<C: RegisterClient>(c: &mut C, addr: u32, count: u32) -> Result<Vec<u16>, SunSpecError> {
    let address = RegisterAddress(u16::try_from(addr).map_err(|_| SunSpecError::BadChain {
        address: RegisterAddress(u16::MAX),
        reason: "model chain runs past register 65535",
    })?);
    if count == 0 {
        return Ok(Vec::new());
    }
    read_registers(c, address, usize::try_from(count).unwrap_or(usize::MAX)).await
}

/// One model in the scan output.
#[derive(Debug, Clone, PartialEq)]
pub struct ScannedModel {
    /// Model id.
    pub id: u16,
    /// Address of the model's `ID` register (40002 for the first model behind a marker at 40000).
    pub address: RegisterAddress,
    /// `L`.
    pub length: u16,
    /// The implemented points in register order (absent points are left out; repeating groups
    /// are named `Crv[1].Pt[2].V`, see [`super::decode`]).
    pub points: Vec<(String, PointValue)>,
    /// Why the block could not be decoded (unknown model, scale factor out of range); the points
    /// are then empty.
    pub decode_error: Option<DecodeError>,
}

impl ScannedModel {
    /// A point by name/path.
    #[must_use]
    pub fn point(&self, name: &str) -> Option<&PointValue> {
        self.points.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// The points as a JSON object (`name → PointValue::as_json_value`), in register order.
    #[must_use]
    pub fn points_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        for (name, value) in &self.points {
            map.insert(name.clone(), value.as_json_value());
        }
        serde_json::Value::Object(map)
    }
}

/// The result of [`scan`].
#[derive(Debug, Clone, PartialEq)]
pub struct ScanResult {
    /// Where the `SunS` marker is.
    pub base_address: RegisterAddress,
    /// Every model in chain order.
    pub models: Vec<ScannedModel>,
}

impl ScanResult {
    /// The scan as JSON, in the shape of issue #4:
    /// `{"base_address": 40000, "models": [{"id": 1, "address": 40002, "length": 66, "points":
    /// {"Mn": "…", …}}]}`. Point values follow [`PointValue::as_json_value`] (a number with units
    /// is `{"value": 230.1, "units": "V"}`); a model that could not be decoded has `"error"`.
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        let models: Vec<serde_json::Value> = self
            .models
            .iter()
            .map(|m| {
                let mut o = serde_json::json!({
                    "id": m.id,
                    "address": m.address.0,
                    "length": m.length,
                    "points": m.points_json(),
                });
                if let (Some(e), Some(obj)) = (&m.decode_error, o.as_object_mut()) {
                    obj.insert("error".to_owned(), serde_json::Value::String(e.to_string()));
                }
                o
            })
            .collect();
        serde_json::json!({ "base_address": self.base_address.0, "models": models })
    }
}

/// Discover and decode every model: the installer's `ems-gateway scan`. Each model costs one
/// request when it is at most 123 registers long (its block and the next model's header are
/// read together).
///
/// # Errors
///
/// As [`discover`]; [`SunSpecError::Decode`] when a model's block does not decode.
pub async fn scan<C: RegisterClient>(c: &mut C) -> Result<ScanResult, SunSpecError> {
    let base = find_base(c).await?;
    let (map, blocks) = walk(c, base, true).await?;
    let models = map
        .models
        .iter()
        .zip(blocks)
        .map(|(info, block)| match decode_model(info.id, &block) {
            Ok(d) => ScannedModel {
                id: info.id,
                address: info.address,
                length: info.length,
                points: d.points.into_iter().map(|p| (p.path, p.value)).collect(),
                decode_error: None,
            },
            Err(e) => ScannedModel {
                id: info.id,
                address: info.address,
                length: info.length,
                points: Vec::new(),
                decode_error: Some(e),
            },
        })
        .collect();
    Ok(ScanResult { base_address: map.base_address, models })
}
