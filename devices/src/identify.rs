//! Device recognition for `ems-gateway scan`: which shipped driver fits the Modbus device at
//! one endpoint and unit.
//!
//! Each shipped register-map profile is tried: its identification registers where its source
//! names any (see [`IDENT_REGISTERS`]), then one read of its own signals through the profile
//! driver, whose values must be plausible for the device kind (a meter's voltage 80..=300 V and
//! frequency 45..=65 Hz; an inverter's rating above zero …). The Phoenix Contact EM-CP-PP-ETH
//! charge controller is recognised by its IEC 61851 state letter and its current-limit register.
//!
//! Recognition is a **suggestion** for the installer, never a configuration: a device that
//! merely answers plausibly at the addresses of another is possible, which is why every result
//! says what it was recognised by. Nothing is written to any device.

use crate::evse::phoenix::{REG_MAX_CURRENT, REG_STATUS};
use crate::modbus::profile::{DeviceKind, Profile, ProfileDevice, SHIPPED_PROFILES};
use crate::modbus::{RegisterAddress, RegisterClient, RegisterKind};
use crate::traits::{Bms, Inverter, Meter, PvInverter};

/// One identification block of a shipped profile: registers the profile's source documents as
/// identifying the device, with the fields in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdentRegisters {
    /// The shipped profile (file name).
    pub profile: &'static str,
    /// Table of the block.
    pub kind: RegisterKind,
    /// First register (0-based wire address).
    pub address: u16,
    /// Number of registers.
    pub count: u16,
    /// Fields: (name, offset in the block, u32 big-endian). A field reading 0 or 0xFFFFFFFF
    /// (SMA's "not available" for U32) means the device is not this one.
    pub fields: &'static [(&'static str, u16)],
    /// Where the registers come from.
    pub source: &'static str,
}

/// The identification registers of the shipped profiles that have documented ones.
///
/// The Eastron SDM630 profile's source (OpenEMS `MeterEastronSdm630Impl`) reads no
/// identification register, so that meter is recognised by its measurements alone.
pub const IDENT_REGISTERS: &[IdentRegisters] = &[IdentRegisters {
    profile: "sma-sunny-island.toml",
    kind: RegisterKind::Holding,
    address: 30051,
    count: 10,
    fields: &[("device_class", 0), ("device_type", 2), ("serial_number", 6), ("software_package", 8)],
    source: "OpenEMS io.openems.edge.sma/src/io/openems/edge/sma/ess/sunnyisland/EssSmaSunnyIslandImpl.java \
             (FC3 task at 30051: DEVICE_CLASS 30051, DEVICE_TYPE 30053, SERIAL_NUMBER 30057, \
             SOFTWARE_PACKAGE 30059, unsigned doublewords)",
}];

/// What a recognised device is for in the site file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `[devices.meter]`.
    Meter,
    /// `[devices.inverter]`.
    Inverter,
    /// `[devices.battery]`.
    Bms,
    /// `[devices.pv]`.
    Pv,
    /// An EV charger.
    Evse,
}

impl Role {
    /// The site-file table of the role (`devices.meter`, …).
    #[must_use]
    pub const fn table(self) -> &'static str {
        match self {
            Self::Meter => "devices.meter",
            Self::Inverter => "devices.inverter",
            Self::Bms => "devices.battery",
            Self::Pv => "devices.pv",
            Self::Evse => "evse",
        }
    }

    const fn of(kind: DeviceKind) -> Self {
        match kind {
            DeviceKind::Meter => Self::Meter,
            DeviceKind::Inverter => Self::Inverter,
            DeviceKind::Bms => Self::Bms,
            DeviceKind::Pv => Self::Pv,
        }
    }
}

/// A device a shipped driver recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recognised {
    /// What it is for.
    pub role: Role,
    /// Manufacturer.
    pub manufacturer: String,
    /// Model (family).
    pub model: String,
    /// The shipped profile (file name) to use, for profile devices.
    pub profile: Option<&'static str>,
    /// What was read (identification fields and the plausible values), as (name, value).
    pub details: Vec<(String, String)>,
    /// What the recognition rests on.
    pub by: String,
}

/// Try every shipped profile and the Phoenix charge controller on `client` (one unit).
/// Returns the client (the profile driver takes it by value) and what was recognised.
pub async fn identify<C: RegisterClient>(mut client: C) -> (C, Vec<Recognised>) {
    let mut found = Vec::new();
    for (file, _) in SHIPPED_PROFILES {
        let Some(Ok(profile)) = Profile::shipped(file) else { continue };
        let (c, r) = try_profile(client, file, profile).await;
        client = c;
        found.extend(r);
    }
    if let Some(r) = try_phoenix(&mut client).await {
        found.push(r);
    }
    (client, found)
}

fn u32_at(words: &[u16], offset: u16) -> Option<u32> {
    let i = usize::from(offset);
    Some(u32::from(*words.get(i)?) << 16 | u32::from(*words.get(i + 1)?))
}

async fn ident_fields<C: RegisterClient>(
    client: &mut C,
    id: &IdentRegisters,
) -> Option<Vec<(String, String)>> {
    let words = client.read(id.kind, RegisterAddress(id.address), id.count).await.ok()?.ok()?;
    let mut out = Vec::new();
    for (name, offset) in id.fields {
        let v = u32_at(&words, *offset)?;
        if v == 0 || v == u32::MAX {
            return None;
        }
        out.push(((*name).to_owned(), v.to_string()));
    }
    Some(out)
}

async fn try_profile<C: RegisterClient>(
    mut client: C,
    file: &'static str,
    profile: Profile,
) -> (C, Option<Recognised>) {
    let mut details = Vec::new();
    let mut by = Vec::new();
    for id in IDENT_REGISTERS.iter().filter(|i| i.profile == file) {
        match ident_fields(&mut client, id).await {
            Some(f) => {
                details.extend(f);
                by.push(format!("identification registers {}..{}", id.address, id.address + id.count - 1));
            }
            None => return (client, None),
        }
    }
    let (manufacturer, model, kind) =
        (profile.manufacturer().to_owned(), profile.model().to_owned(), profile.device());
    let mut dev = ProfileDevice::new(client, profile);
    let plausible = plausible_reading(&mut dev, kind).await;
    let client = dev.into_client();
    match plausible {
        Some(values) => {
            details.extend(values);
            by.push("plausible values in the profile's own registers".to_owned());
            let r = Recognised {
                role: Role::of(kind),
                manufacturer,
                model,
                profile: Some(file),
                details,
                by: by.join(" and "),
            };
            (client, Some(r))
        }
        None => (client, None),
    }
}

/// One read of the profile's signals; `Some(values)` when they are plausible for the kind.
async fn plausible_reading<C: RegisterClient>(
    dev: &mut ProfileDevice<C>,
    kind: DeviceKind,
) -> Option<Vec<(String, String)>> {
    let kv = |k: &str, v: String| (k.to_owned(), v);
    match kind {
        DeviceKind::Meter => {
            let r = Meter::read(dev).await.ok()?;
            let v = r.voltage.get();
            let f = r.frequency.map(ems_core::Hertz::get)?;
            ((80.0..=300.0).contains(&v) && (45.0..=65.0).contains(&f)).then(|| {
                vec![
                    kv("voltage", r.voltage.to_string()),
                    kv("frequency", format!("{f} Hz")),
                    kv("active_power", r.active_power.to_string()),
                ]
            })
        }
        DeviceKind::Inverter => {
            let r = Inverter::read(dev).await.ok()?;
            (r.rated_power.get() > 0.0).then(|| {
                vec![
                    kv("rated_power", r.rated_power.to_string()),
                    kv("active_power", r.active_power.to_string()),
                ]
            })
        }
        DeviceKind::Bms => {
            let r = Bms::read(dev).await.ok()?;
            (r.pack_voltage.get() > 0.0)
                .then(|| vec![kv("soc", r.soc.to_string()), kv("pack_voltage", r.pack_voltage.to_string())])
        }
        DeviceKind::Pv => {
            let r = PvInverter::read(dev).await.ok()?;
            Some(vec![kv("active_power", r.active_power.to_string())])
        }
    }
}

/// The EM-CP-PP-ETH: input register 100 holds an IEC 61851 state letter (A–F) and holding
/// register 300 a current limit in whole amperes (0 or 6..=80 A).
async fn try_phoenix<C: RegisterClient>(client: &mut C) -> Option<Recognised> {
    let status = client.read(RegisterKind::Input, RegisterAddress(REG_STATUS), 1).await.ok()?.ok()?;
    let letter = u8::try_from(status.first()? & 0xFF).ok()?;
    if !(b'A'..=b'F').contains(&letter) {
        return None;
    }
    let max =
        *client.read(RegisterKind::Holding, RegisterAddress(REG_MAX_CURRENT), 1).await.ok()?.ok()?.first()?;
    if !(max == 0 || (6..=80).contains(&max)) {
        return None;
    }
    Some(Recognised {
        role: Role::Evse,
        manufacturer: "Phoenix Contact".to_owned(),
        model: "EM-CP-PP-ETH".to_owned(),
        profile: None,
        details: vec![
            ("iec61851_state".to_owned(), char::from(letter).to_string()),
            ("max_current".to_owned(), format!("{max} A")),
        ],
        by: format!("state letter in input register {REG_STATUS} and current limit in holding register {REG_MAX_CURRENT}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modbus::MemoryRegisters;

    fn f32_words(x: f32) -> [u16; 2] {
        let b = x.to_bits();
        [u16::try_from(b >> 16).unwrap_or(0), u16::try_from(b & 0xFFFF).unwrap_or(0)]
    }

    fn sdm630(voltage: f32, frequency: f32) -> MemoryRegisters {
        let mut m = MemoryRegisters::default();
        for a in 0..80 {
            m.input.insert(a, 0);
        }
        for (a, x) in [(0u16, voltage), (52, 500.0), (70, frequency)] {
            let [hi, lo] = f32_words(x);
            m.input.insert(a, hi);
            m.input.insert(a + 1, lo);
        }
        m
    }

    #[test]
    fn a_meter_is_recognised_by_plausible_values_only() {
        let (_, found) = pollster::block_on(identify(sdm630(230.0, 50.0)));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].role, found[0].profile), (Role::Meter, Some("eastron-sdm630.toml")));
        // 0 V / 0 Hz (an empty image, or another device's registers) is not this meter.
        let (_, found) = pollster::block_on(identify(sdm630(0.0, 0.0)));
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn sma_needs_its_identification_registers_and_phoenix_its_state_letter() {
        let mut m = MemoryRegisters::default();
        // SMA identification block with "not available" serial: not an SMA device.
        m.put(30051, &[0, 8007, 0, 9331, 0, 0, 0xFFFF, 0xFFFF, 0, 1]);
        m.input.insert(REG_STATUS, u16::from(b'B'));
        m.put(REG_MAX_CURRENT, &[16]);
        let (_, found) = pollster::block_on(identify(m.clone()));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].role, found[0].model.as_str()), (Role::Evse, "EM-CP-PP-ETH"));
        m.input.insert(REG_STATUS, u16::from(b'Z'));
        assert!(pollster::block_on(identify(m)).1.is_empty());
    }
}
