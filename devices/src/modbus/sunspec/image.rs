//! [`SunSpecImage`]: build a SunSpec register image (the server side of tests and simulated
//! SunSpec devices) from the model definitions.
//!
//! ```
//! use ems_devices::modbus::sunspec::SunSpecImage;
//! use ems_devices::modbus::RegisterAddress;
//! # fn main() -> Result<(), ems_devices::modbus::sunspec::SunSpecError> {
//! let mut img = SunSpecImage::new(RegisterAddress(40_000));
//! img.add_model(1)?.add_model(103)?;
//! img.set_text(1, "Mn", "ACME")?.set(103, "W_SF", 0.0)?.set(103, "W", 1500.0)?;
//! let regs = img.finish();
//! assert_eq!(regs.holding.get(&40_000), Some(&0x5375));
//! # Ok(()) }
//! ```

use super::decode::{encode_point, not_implemented};
use super::discovery::{END_MODEL_ID, SUNS_MARKER};
use super::error::SunSpecError;
use super::model::{self, Access, GroupCount, GroupDef, ModelDef, PlacedPoint, PlacedScaleFactor, PointType};
use crate::modbus::{MemoryRegisters, RegisterAddress};

#[derive(Debug, Clone)]
struct Placed {
    id: u16,
    /// Index of the `ID` register in `regs`.
    start: usize,
    def: Option<&'static ModelDef>,
}

/// A SunSpec register image under construction: the `SunS` marker at the base address, the
/// models added in order, then (at [`Self::finish`]) the end marker.
#[derive(Debug, Clone)]
pub struct SunSpecImage {
    base: RegisterAddress,
    regs: Vec<u16>,
    models: Vec<Placed>,
    writable: Vec<(usize, usize)>,
}

impl SunSpecImage {
    /// A new image with the `SunS` marker at `base`.
    #[must_use]
    pub fn new(base: RegisterAddress) -> Self {
        Self { base, regs: SUNS_MARKER.to_vec(), models: Vec::new(), writable: Vec::new() }
    }

    /// Add model `id` laid out from its definition, every point not implemented, every
    /// repeating group once.
    ///
    /// # Errors
    ///
    /// As [`Self::add_model_with_counts`].
    pub fn add_model(&mut self, id: u16) -> Result<&mut Self, SunSpecError> {
        self.add_model_with_counts(id, &[])
    }

    /// Add model `id` with the repeating-group counts given by count-point name (`("NCrv", 2)`,
    /// `("NPt", 4)`; a count point not named is 1). Read-write points become writable.
    ///
    /// # Errors
    ///
    /// [`SunSpecError::MissingModel`] for a model without a definition; [`SunSpecError::BadChain`] when the
    /// image would run past register 65535.
    pub fn add_model_with_counts(
        &mut self,
        id: u16,
        counts: &[(&str, u16)],
    ) -> Result<&mut Self, SunSpecError> {
        let def = model::model(id).ok_or_else(|| SunSpecError::MissingModel { wanted: id.to_string() })?;
        let mut count_points: Vec<(usize, u16)> = Vec::new();
        let mut count_at = |at: usize, name: &str| {
            let n = counts.iter().find(|(c, _)| *c == name).map_or(1, |(_, n)| *n);
            count_points.push((at, n));
            usize::from(n)
        };
        let placed = def.layout(usize::from(u16::MAX), &mut count_at);
        let total = placed.iter().map(|p| p.offset + usize::from(p.def.size)).max().unwrap_or(2);
        let length = u16::try_from(total.saturating_sub(2))
            .map_err(|_| SunSpecError::BadChain { address: self.base, reason: "model longer than 65535" })?;
        let start = self.regs.len();
        self.regs.resize(start + total, 0);
        for p in &placed {
            let v = not_implemented(p.def);
            if let Some(dst) = self.regs.get_mut(start + p.offset..start + p.offset + v.len()) {
                dst.copy_from_slice(&v);
            }
            if p.def.access == Access::ReadWrite {
                self.writable.push((start + p.offset, usize::from(p.def.size)));
            }
        }
        for (at, n) in count_points {
            if let Some(r) = self.regs.get_mut(start + at) {
                *r = n;
            }
        }
        if let Some(r) = self.regs.get_mut(start) {
            *r = id;
        }
        if let Some(r) = self.regs.get_mut(start + 1) {
            *r = length;
        }
        self.models.push(Placed { id, start, def: Some(def) });
        Ok(self)
    }

    /// Add a model block as given (`ID` = `id`, `L` = `data.len()`, then `data`): for unknown
    /// models and hand-made quirky blocks.
    pub fn add_raw_model(&mut self, id: u16, data: &[u16]) -> &mut Self {
        let start = self.regs.len();
        self.regs.push(id);
        self.regs.push(u16::try_from(data.len()).unwrap_or(u16::MAX));
        self.regs.extend_from_slice(data);
        self.models.push(Placed { id, start, def: model::model(id) });
        self
    }

    /// The address of the `ID` register of the first model `id` added.
    #[must_use]
    pub fn model_address(&self, id: u16) -> Option<RegisterAddress> {
        let m = self.models.iter().find(|m| m.id == id)?;
        u16::try_from(m.start).ok().and_then(|s| self.base.offset(s))
    }

    /// The registers so far, from the marker on.
    #[must_use]
    pub fn registers(&self) -> &[u16] {
        &self.regs
    }

    fn locate(
        &self,
        model_id: u16,
        path: &str,
    ) -> Result<(usize, PlacedPoint<'static>, Option<i16>), SunSpecError> {
        let missing = || SunSpecError::MissingPoint { model: model_id, point: path.to_owned() };
        let m = self
            .models
            .iter()
            .find(|m| m.id == model_id)
            .ok_or_else(|| SunSpecError::MissingModel { wanted: model_id.to_string() })?;
        let def = m.def.ok_or_else(missing)?;
        let block = self.regs.get(m.start..).unwrap_or(&[]);
        let limit = block.get(1).map_or(0, |l| usize::from(*l) + 2).min(block.len());
        let mut count_at =
            |at: usize, _: &str| block.get(at).map_or(0, |v| if *v == 0xFFFF { 0 } else { usize::from(*v) });
        let placed =
            def.layout(limit, &mut count_at).into_iter().find(|p| p.path == path).ok_or_else(missing)?;
        let sf = match placed.sf {
            PlacedScaleFactor::At(at) => match block.get(at) {
                Some(&raw) if raw != 0x8000 => Some(i16::from_ne_bytes(raw.to_ne_bytes())),
                _ => {
                    return Err(SunSpecError::MissingPoint {
                        model: model_id,
                        point: format!("scale factor of {path}"),
                    })
                }
            },
            PlacedScaleFactor::Fixed(v) => Some(v),
            PlacedScaleFactor::None => None,
            PlacedScaleFactor::Missing => {
                return Err(SunSpecError::MissingPoint {
                    model: model_id,
                    point: format!("scale factor of {path}"),
                })
            }
        };
        Ok((m.start, placed, sf))
    }

    /// Set a point to `value` in its units (a scaled point is converted with its scale factor,
    /// which must be set first; a `sunssf` point takes the exponent; enums and bitfields take
    /// their raw value).
    ///
    /// # Errors
    ///
    /// [`SunSpecError::MissingModel`] / [`SunSpecError::MissingPoint`] when the model or point (or its scale
    /// factor) is not in the image; [`SunSpecError::OutOfRange`] when the value is not representable by the
    /// point's type and scale factor.
    pub fn set(&mut self, model_id: u16, path: &str, value: f64) -> Result<&mut Self, SunSpecError> {
        let (start, p, sf) = self.locate(model_id, path)?;
        let sf = if p.def.ty == PointType::Sunssf { None } else { sf };
        let regs = encode_point(p.def, sf, value).ok_or_else(|| SunSpecError::OutOfRange {
            model: model_id,
            point: path.to_owned(),
            value,
            reason: "not representable by the point's type and scale factor",
        })?;
        self.write_at(start + p.offset, &regs);
        Ok(self)
    }

    /// Set an enum point by symbol name (`"RUNNING"`).
    ///
    /// # Errors
    ///
    /// [`SunSpecError::MissingPoint`] when the point or the symbol does not exist; otherwise as
    /// [`Self::set`].
    pub fn set_symbol(&mut self, model_id: u16, path: &str, symbol: &str) -> Result<&mut Self, SunSpecError> {
        let (_, p, _) = self.locate(model_id, path)?;
        let v = p.def.symbol_value(symbol).ok_or_else(|| SunSpecError::MissingPoint {
            model: model_id,
            point: format!("{path} symbol {symbol}"),
        })?;
        #[allow(clippy::cast_precision_loss)] // symbol values are small
        self.set(model_id, path, v as f64)
    }

    /// Set a point's registers as given (any pattern, including not-implemented values).
    ///
    /// # Errors
    ///
    /// [`SunSpecError::MissingModel`] / [`SunSpecError::MissingPoint`] when the model or point is not in the
    /// image (`raw` longer than the point is cut to its size).
    pub fn set_raw(&mut self, model_id: u16, path: &str, raw: &[u16]) -> Result<&mut Self, SunSpecError> {
        let (start, p, _) = self.locate(model_id, path).or_else(|e| match e {
            // A raw write does not need the scale factor.
            SunSpecError::MissingPoint { point, .. } if point.starts_with("scale factor of") => {
                self.locate_unscaled(model_id, path)
            }
            other => Err(other),
        })?;
        let n = raw.len().min(usize::from(p.def.size));
        self.write_at(start + p.offset, raw.get(..n).unwrap_or(&[]));
        Ok(self)
    }

    fn locate_unscaled(
        &self,
        model_id: u16,
        path: &str,
    ) -> Result<(usize, PlacedPoint<'static>, Option<i16>), SunSpecError> {
        let missing = || SunSpecError::MissingPoint { model: model_id, point: path.to_owned() };
        let m = self.models.iter().find(|m| m.id == model_id).ok_or_else(missing)?;
        let def = m.def.ok_or_else(missing)?;
        let block = self.regs.get(m.start..).unwrap_or(&[]);
        let limit = block.get(1).map_or(0, |l| usize::from(*l) + 2).min(block.len());
        let mut count_at =
            |at: usize, _: &str| block.get(at).map_or(0, |v| if *v == 0xFFFF { 0 } else { usize::from(*v) });
        let placed =
            def.layout(limit, &mut count_at).into_iter().find(|p| p.path == path).ok_or_else(missing)?;
        Ok((m.start, placed, None))
    }

    /// Set a string point (ASCII, NUL padded, truncated to the point's size).
    ///
    /// # Errors
    ///
    /// [`SunSpecError::MissingModel`] / [`SunSpecError::MissingPoint`] when the model or point is not in the
    /// image.
    pub fn set_text(&mut self, model_id: u16, path: &str, text: &str) -> Result<&mut Self, SunSpecError> {
        let (start, p, _) = self.locate_unscaled(model_id, path)?;
        let n = usize::from(p.def.size);
        let mut bytes: Vec<u8> = text.bytes().take(n * 2).collect();
        bytes.resize(n * 2, 0);
        let regs: Vec<u16> = bytes.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
        self.write_at(start + p.offset, &regs);
        Ok(self)
    }

    fn write_at(&mut self, at: usize, regs: &[u16]) {
        if let Some(dst) = self.regs.get_mut(at..at + regs.len()) {
            dst.copy_from_slice(regs);
        }
    }

    /// Append the end marker and produce the register image (read-write points writable).
    #[must_use]
    pub fn finish(mut self) -> MemoryRegisters {
        self.regs.push(END_MODEL_ID);
        self.regs.push(0);
        let mut m = MemoryRegisters::default();
        m.put(self.base.0, &self.regs);
        for (at, n) in self.writable {
            if let (Ok(at), Ok(n)) = (u16::try_from(at), u16::try_from(n)) {
                if let Some(a) = self.base.0.checked_add(at) {
                    m.allow_write(a, n);
                }
            }
        }
        m
    }
}

/// Whether a group (or a nested one) repeats; used by docs/tests.
#[must_use]
pub fn has_repeating_groups(g: &GroupDef) -> bool {
    g.groups.iter().any(|s| !matches!(s.count, GroupCount::One) || has_repeating_groups(s))
}
