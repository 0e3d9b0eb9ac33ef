//! The register map of the SunSpec server: the `SunS` marker at [`BASE_ADDRESS`], then models
//! 1, 701, 702, 704, 713, 802 and the vendor model [`VENDOR_MODEL_ID`], then the end model
//! (`0xFFFF`, length 0). Every model is laid out from its JSON definition
//! (`ems_devices::modbus::sunspec::model`; the vendor model from `api/data/sunspec/`): no
//! register offset is typed by hand.
//!
//! **Addresses are 0-based PDU addresses**: the marker is at address 40000, which vendor
//! documents call holding register "40001".

use std::sync::OnceLock;

use ems_devices::modbus::sunspec::decode::{encode_point, not_implemented};
use ems_devices::modbus::sunspec::model::{self, ModelDef, PlacedScaleFactor, PointDef, PointType};

/// The address (0-based) of the `SunS` marker.
pub const BASE_ADDRESS: u16 = 40_000;
/// The vendor model's id (vendor range 64000–65535; not registered with the SunSpec Alliance).
pub const VENDOR_MODEL_ID: u16 = 64_900;
/// The models served, in register order.
pub const MODEL_IDS: [u16; 7] = [1, 701, 702, 704, 713, 802, VENDOR_MODEL_ID];
/// `SunS` as two registers.
pub const SUNS: [u16; 2] = [0x5375, 0x6e53];
/// The id of the end model.
pub const END_MODEL_ID: u16 = 0xFFFF;

const VENDOR_JSON: &str = include_str!("../../data/sunspec/model_64900.json");

/// Why the map could not be built (a unit test asserts it can).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    /// A model definition is missing or does not parse.
    #[error("SunSpec model {id}: {reason}")]
    Definition {
        /// The model.
        id: u16,
        /// Why.
        reason: String,
    },
    /// The models do not fit below address 65535.
    #[error("the register map does not fit below address 65535")]
    TooLong,
}

/// Where a point's scale factor comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Not scaled.
    None,
    /// A fixed exponent.
    Fixed(i16),
    /// The `sunssf` register at this address.
    At(u16),
}

/// One point of the map.
#[derive(Debug, Clone)]
pub struct MapPoint {
    /// The model it belongs to.
    pub model: u16,
    /// Its path in the model (`WSet`, `PFWInj.PF`).
    pub path: String,
    /// Its definition.
    pub def: &'static PointDef,
    /// The address of its first register.
    pub address: u16,
    /// Where its scale factor is.
    pub scale: Scale,
}

impl MapPoint {
    /// The addresses it covers.
    #[must_use]
    pub fn range(&self) -> std::ops::Range<u32> {
        u32::from(self.address)..u32::from(self.address) + u32::from(self.def.size)
    }
}

/// One model of the map.
#[derive(Debug, Clone)]
pub struct MapModel {
    /// Model id.
    pub id: u16,
    /// The address of its `ID` register.
    pub address: u16,
    /// Its length `L` (registers after `ID` and `L`).
    pub length: u16,
    /// Its points in register order (`ID` and `L` included).
    pub points: Vec<MapPoint>,
}

/// The register map.
#[derive(Debug, Clone)]
pub struct RegisterMap {
    /// The models in register order.
    pub models: Vec<MapModel>,
    /// The address of the end model's `ID` register.
    pub end: u16,
}

fn vendor_def() -> Result<&'static ModelDef, MapError> {
    static DEF: OnceLock<Result<ModelDef, String>> = OnceLock::new();
    DEF.get_or_init(|| model::parse_definition(VENDOR_JSON))
        .as_ref()
        .map_err(|reason| MapError::Definition { id: VENDOR_MODEL_ID, reason: reason.clone() })
}

/// The definition of a served model.
///
/// # Errors
/// [`MapError::Definition`] when it is missing or does not parse.
pub fn definition(id: u16) -> Result<&'static ModelDef, MapError> {
    if id == VENDOR_MODEL_ID {
        return vendor_def();
    }
    model::model(id).ok_or_else(|| MapError::Definition { id, reason: "no embedded definition".into() })
}

impl RegisterMap {
    /// The map (built once).
    ///
    /// # Errors
    /// [`MapError`] when a definition is missing or the map does not fit.
    pub fn get() -> Result<&'static Self, MapError> {
        static MAP: OnceLock<Result<RegisterMap, MapError>> = OnceLock::new();
        MAP.get_or_init(Self::build).as_ref().map_err(Clone::clone)
    }

    fn build() -> Result<Self, MapError> {
        let mut address = u32::from(BASE_ADDRESS) + 2;
        let mut models = Vec::with_capacity(MODEL_IDS.len());
        for id in MODEL_IDS {
            let def = definition(id)?;
            // Every served model has only non-repeating groups: one instance each.
            let placed = def.layout(usize::from(u16::MAX), &mut |_, _| 1);
            let total = placed.iter().map(|p| p.offset + usize::from(p.def.size)).max().unwrap_or(2);
            let at = u16::try_from(address).map_err(|_| MapError::TooLong)?;
            let length = u16::try_from(total.saturating_sub(2)).map_err(|_| MapError::TooLong)?;
            let reg = |offset: usize| {
                u16::try_from(u32::from(at) + u32::try_from(offset).map_err(|_| MapError::TooLong)?)
                    .map_err(|_| MapError::TooLong)
            };
            let mut points = Vec::with_capacity(placed.len());
            for p in &placed {
                let scale = match p.sf {
                    PlacedScaleFactor::None | PlacedScaleFactor::Missing => Scale::None,
                    PlacedScaleFactor::Fixed(v) => Scale::Fixed(v),
                    PlacedScaleFactor::At(o) => Scale::At(reg(o)?),
                };
                points.push(MapPoint {
                    model: id,
                    path: p.path.clone(),
                    def: p.def,
                    address: reg(p.offset)?,
                    scale,
                });
            }
            models.push(MapModel { id, address: at, length, points });
            address += u32::try_from(total).map_err(|_| MapError::TooLong)?;
        }
        // The end model's two registers must fit too.
        let end = u16::try_from(address).ok().filter(|e| *e < u16::MAX).ok_or(MapError::TooLong)?;
        Ok(Self { models, end })
    }

    /// Registers from [`BASE_ADDRESS`] through the end model.
    #[must_use]
    pub fn len(&self) -> usize {
        usize::from(self.end - BASE_ADDRESS) + 2
    }

    /// Never empty (the marker and the end model at least).
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        false
    }

    /// A served model.
    #[must_use]
    pub fn model(&self, id: u16) -> Option<&MapModel> {
        self.models.iter().find(|m| m.id == id)
    }

    /// A point by model and path.
    #[must_use]
    pub fn point(&self, model: u16, path: &str) -> Option<&MapPoint> {
        self.model(model)?.points.iter().find(|p| p.path == path)
    }

    /// The point that covers `address`, if any (the marker and the end model are no point).
    #[must_use]
    pub fn point_at(&self, address: u16) -> Option<&MapPoint> {
        let a = u32::from(address);
        let m = self.models.iter().rev().find(|m| m.address <= address)?;
        m.points.iter().find(|p| p.range().contains(&a))
    }

    /// The image with the marker, every model's `ID` and `L`, every point not implemented and
    /// the end model.
    #[must_use]
    pub fn blank(&self) -> Vec<u16> {
        let mut regs = vec![0u16; self.len()];
        let mut put = |address: u16, values: &[u16]| {
            let at = usize::from(address - BASE_ADDRESS);
            if let Some(dst) = regs.get_mut(at..at + values.len()) {
                dst.copy_from_slice(values);
            }
        };
        put(BASE_ADDRESS, &SUNS);
        for m in &self.models {
            for p in &m.points {
                put(p.address, &not_implemented(p.def));
            }
            put(m.address, &[m.id, m.length]);
        }
        put(self.end, &[END_MODEL_ID, 0]);
        regs
    }

    /// The register map as a Markdown table (`| address | model | point | type | units | access |`),
    /// for the docs (a test checks the docs against it).
    #[must_use]
    pub fn markdown_table(&self, writable: &dyn Fn(&MapPoint) -> bool) -> String {
        let mut out = String::from(
            "| address (0-based) | register (1-based) | model | point | type | size | scale factor | units | write |\n|---|---|---|---|---|---|---|---|---|\n",
        );
        out.push_str(&format!(
            "| {BASE_ADDRESS} | {} | — | `SunS` marker | string | 2 | | | |\n",
            u32::from(BASE_ADDRESS) + 1
        ));
        for m in &self.models {
            for p in &m.points {
                let ty = format!("{:?}", p.def.ty).to_lowercase();
                let sf = match p.scale {
                    Scale::None => String::new(),
                    Scale::Fixed(v) => v.to_string(),
                    Scale::At(a) => self.point_at(a).map(|s| format!("`{}`", s.path)).unwrap_or_default(),
                };
                out.push_str(&format!(
                    "| {} | {} | {} | `{}` | {ty} | {} | {sf} | {} | {} |\n",
                    p.address,
                    u32::from(p.address) + 1,
                    m.id,
                    p.path,
                    p.def.size,
                    p.def.units.as_deref().unwrap_or(""),
                    if writable(p) { "yes" } else { "" },
                ));
            }
        }
        out.push_str(&format!(
            "| {} | {} | end | `ID` = 0xFFFF, `L` = 0 | uint16 | 2 | | | |\n",
            self.end,
            u32::from(self.end) + 1
        ));
        out
    }
}

/// A register image over the map (index 0 = [`BASE_ADDRESS`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The registers.
    pub regs: Vec<u16>,
}

impl Image {
    /// The blank image of `map`.
    #[must_use]
    pub fn new(map: &RegisterMap) -> Self {
        Self { regs: map.blank() }
    }

    /// The registers at `address`, `n` of them, if all are in the image.
    #[must_use]
    pub fn read(&self, address: u16, n: u16) -> Option<&[u16]> {
        let at = usize::from(address.checked_sub(BASE_ADDRESS)?);
        self.regs.get(at..at.checked_add(usize::from(n))?)
    }

    fn put(&mut self, address: u16, values: &[u16]) {
        let at = usize::from(address.saturating_sub(BASE_ADDRESS));
        if let Some(dst) = self.regs.get_mut(at..at + values.len()) {
            dst.copy_from_slice(values);
        }
    }

    /// The scale-factor exponent in effect for `p` (`None`: unscaled or its factor is not
    /// implemented).
    #[must_use]
    pub fn exponent(&self, p: &MapPoint) -> Option<i16> {
        match p.scale {
            Scale::None => None,
            Scale::Fixed(v) => Some(v),
            Scale::At(a) => self
                .read(a, 1)
                .and_then(|r| r.first().copied())
                .filter(|r| *r != 0x8000)
                .map(|r| i16::from_ne_bytes(r.to_ne_bytes())),
        }
    }

    /// Set `p` to `value` in its units (scaled with its factor, which must be set first; a
    /// `sunssf` point takes the exponent). A value the point cannot hold (or `None`) sets it
    /// to "not implemented".
    pub fn set(&mut self, p: &MapPoint, value: Option<f64>) {
        let sf = if p.def.ty == PointType::Sunssf { None } else { self.exponent(p) };
        let scaled_ok = p.def.ty == PointType::Sunssf || !matches!(p.scale, Scale::At(_)) || sf.is_some();
        let regs = value.filter(|_| scaled_ok).and_then(|v| encode_point(p.def, sf, v));
        match regs {
            Some(r) => self.put(p.address, &r),
            None => self.put(p.address, &not_implemented(p.def)),
        }
    }

    /// Set a string point (ASCII, NUL padded, cut to the point's size).
    pub fn set_text(&mut self, p: &MapPoint, text: &str) {
        let n = usize::from(p.def.size);
        let mut bytes: Vec<u8> = text.bytes().filter(u8::is_ascii).take(n * 2).collect();
        bytes.resize(n * 2, 0);
        let regs: Vec<u16> = bytes.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
        self.put(p.address, &regs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_map_builds_from_the_definitions_and_chains_to_the_end_model() {
        let map = RegisterMap::get().unwrap();
        let img = Image::new(map);
        assert_eq!(img.read(BASE_ADDRESS, 2), Some(&SUNS[..]));
        // Walk the chain as a client does: ID, L, skip L.
        let mut at = BASE_ADDRESS + 2;
        let mut seen = Vec::new();
        loop {
            let r = img.read(at, 2).unwrap();
            if r[0] == END_MODEL_ID {
                assert_eq!(r[1], 0);
                break;
            }
            seen.push(r[0]);
            at += 2 + r[1];
        }
        assert_eq!(seen, MODEL_IDS);
        assert_eq!(map.model(1).unwrap().length, 66);
        assert_eq!(map.model(704).unwrap().length, 65);
        assert_eq!(map.model(802).unwrap().length, 62);
        assert_eq!(map.model(1).unwrap().address, BASE_ADDRESS + 2);
    }

    #[test]
    fn scaled_points_round_trip_through_their_scale_factor() {
        let map = RegisterMap::get().unwrap();
        let mut img = Image::new(map);
        let w = map.point(701, "W").unwrap();
        img.set(w, Some(1234.0));
        assert_eq!(img.read(w.address, 1), Some(&[0x8000][..]), "no factor yet: not implemented");
        img.set(map.point(701, "W_SF").unwrap(), Some(1.0));
        img.set(w, Some(-1234.0));
        assert_eq!(img.read(w.address, 1).unwrap()[0].cast_signed(), -123);
        assert_eq!(map.point_at(w.address).unwrap().path, "W");
    }
}
