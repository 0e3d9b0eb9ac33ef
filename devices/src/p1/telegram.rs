//! One DSMR 4/5 (and ESMR 5: Belgian e-MUCS, Luxembourg Smarty) P1 telegram: raw bytes are
//! *parsed* into a [`Telegram`] only after the frame and its CRC check out.
//!
//! ```text
//! /ISk5\2MT382-1000          header (identification), then an empty line
//! 1-0:1.7.0(00.244*kW)       one COSEM object per line: OBIS code, value(s) in brackets
//! …
//! !6EEE                      trailer: `!` and the CRC-16/ARC (4 hex digits) over `/`..=`!`
//! ```
//!
//! Only the objects a grid meter needs are decoded (power, per-phase power, voltage, current,
//! energy registers, timestamp, equipment id, tariff, version); other lines (gas, event logs,
//! text messages) are checked for shape and skipped. Every known value is validated: a bad
//! number or unit is an error naming the line, never a zero.

use super::crc::crc16_arc;
use super::error::P1Error;
use ems_core::{Amps, Volts, WattHours, Watts};

/// The largest telegram accepted (bytes from `/` through the CRC). DSMR 5 telegrams are about
/// 1 KiB; a 1024-character text message (hex-encoded: 2048) and a few M-Bus devices still fit.
pub const MAX_TELEGRAM_LEN: usize = 8 * 1024;

/// The P1 timestamp `0-0:1.0.0(YYMMDDhhmmssX)`: local time of the meter, `X` = `S` (summer,
/// daylight-saving time) or `W` (winter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct P1Timestamp {
    /// Year (2000..=2099).
    pub year: u16,
    /// Month 1..=12.
    pub month: u8,
    /// Day 1..=31.
    pub day: u8,
    /// Hour 0..=23.
    pub hour: u8,
    /// Minute 0..=59.
    pub minute: u8,
    /// Second 0..=59.
    pub second: u8,
    /// `true` for `S` (daylight-saving time in force), `false` for `W`.
    pub dst: bool,
}

/// One phase's instantaneous values (each `None` when the telegram does not carry it).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PhaseValues {
    /// Active power imported on this phase (`1-0:21/41/61.7.0`), ≥ 0.
    pub import: Option<Watts>,
    /// Active power exported on this phase (`1-0:22/42/62.7.0`), ≥ 0.
    pub export: Option<Watts>,
    /// Voltage (`1-0:32/52/72.7.0`).
    pub voltage: Option<Volts>,
    /// Current magnitude (`1-0:31/51/71.7.0`).
    pub current: Option<Amps>,
}

/// A parsed, CRC-checked P1 telegram.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Telegram {
    /// The header line without the leading `/` (manufacturer flag and meter type, e.g.
    /// `ISk5\2MT382-1000`): the first three letters name the manufacturer.
    pub header: String,
    /// P1 version (`1-3:0.2.8`, e.g. `50`), or the Belgian version (`0-0:96.1.4`).
    pub version: Option<String>,
    /// Timestamp of the telegram (`0-0:1.0.0`).
    pub timestamp: Option<P1Timestamp>,
    /// Equipment identifier (`0-0:96.1.1`), decoded from hex when it is hex-encoded ASCII.
    pub equipment_id: Option<String>,
    /// Tariff indicator (`0-0:96.14.0`).
    pub tariff: Option<u16>,
    /// Total active power imported (`1-0:1.7.0`), ≥ 0.
    pub power_import: Option<Watts>,
    /// Total active power exported (`1-0:2.7.0`), ≥ 0.
    pub power_export: Option<Watts>,
    /// L1, L2, L3.
    pub phases: [PhaseValues; 3],
    /// Energy imported, tariff 1 and 2 (`1-0:1.8.1`, `1-0:1.8.2`).
    pub energy_import: [Option<WattHours>; 2],
    /// Energy exported, tariff 1 and 2 (`1-0:2.8.1`, `1-0:2.8.2`).
    pub energy_export: [Option<WattHours>; 2],
    /// The CRC the telegram carried (and that matched).
    pub crc: u16,
}

impl Telegram {
    /// Net grid power, `+` import / `−` export (design.md §4): import − export from the totals
    /// `1-0:1.7.0`/`1-0:2.7.0`; `None` if either is missing.
    #[must_use]
    pub fn net_power(&self) -> Option<Watts> {
        let (i, e) = (self.power_import?, self.power_export?);
        Watts::try_new(i.get() - e.get()).ok()
    }

    /// The manufacturer flag: the three letters after `/` (e.g. `ISk` Iskra, `KFM` Kaifa).
    #[must_use]
    pub fn manufacturer(&self) -> &str {
        self.header.get(..3).unwrap_or(&self.header)
    }
}

/// Parse one telegram: `bytes` run from the `/` through the four CRC digits (a trailing CR LF
/// is allowed). The CRC is checked before any value is looked at.
///
/// # Errors
/// [`P1Error`] naming what is wrong: too long, no `/`, no `!`, a missing or malformed CRC, a CRC
/// mismatch (both values), a line that is no COSEM object, or a bad value (the line).
pub fn parse_telegram(bytes: &[u8]) -> Result<Telegram, P1Error> {
    if bytes.len() > MAX_TELEGRAM_LEN {
        return Err(P1Error::TooLong { len: bytes.len(), max: MAX_TELEGRAM_LEN });
    }
    if bytes.first() != Some(&b'/') {
        return Err(P1Error::NoStart);
    }
    let bang = bytes.iter().position(|&b| b == b'!').ok_or(P1Error::NoEnd)?;
    let (body, trailer) = bytes.split_at(bang + 1);
    let crc_text = trailer.strip_suffix(b"\r\n").or_else(|| trailer.strip_suffix(b"\n")).unwrap_or(trailer);
    let expected = parse_crc(crc_text)?;
    let computed = crc16_arc(body);
    if expected != computed {
        return Err(P1Error::CrcMismatch { expected, computed });
    }
    // The CRC matched; now the text must be ASCII (DSMR encodes everything else as hex).
    let text = core::str::from_utf8(body.get(..bang).unwrap_or_default())
        .ok()
        .filter(|t| t.is_ascii())
        .ok_or(P1Error::NotAscii)?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let header = lines.next().and_then(|h| h.strip_prefix('/')).unwrap_or_default();
    if header.len() < 5 || header.chars().any(|c| c.is_ascii_control()) {
        return Err(P1Error::BadHeader { header: header.to_owned() });
    }
    let mut t = Telegram { header: header.to_owned(), crc: computed, ..Telegram::default() };
    for (i, line) in lines.enumerate() {
        if line.is_empty() {
            continue;
        }
        object(&mut t, line).map_err(|reason| P1Error::BadLine {
            line_no: i + 2,
            line: clip(line),
            reason,
        })?;
    }
    Ok(t)
}

fn parse_crc(text: &[u8]) -> Result<u16, P1Error> {
    let shown = || String::from_utf8_lossy(text.get(..text.len().min(16)).unwrap_or_default()).into_owned();
    if text.is_empty() {
        return Err(P1Error::MissingCrc);
    }
    if text.len() != 4 || !text.iter().all(u8::is_ascii_hexdigit) {
        return Err(P1Error::BadCrcField { text: shown() });
    }
    let s = core::str::from_utf8(text).map_err(|_| P1Error::BadCrcField { text: shown() })?;
    u16::from_str_radix(s, 16).map_err(|_| P1Error::BadCrcField { text: shown() })
}

/// At most 120 characters of a line for an error message (a hostile line can be 8 KiB).
fn clip(line: &str) -> String {
    let mut end = line.len().min(120);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    line.get(..end).unwrap_or_default().to_owned()
}

/// The OBIS code without a trailing `*255` and the bracketed values of one line.
fn split_line(line: &str) -> Result<(&str, Vec<&str>), String> {
    if line.starts_with('(') {
        // A continuation line (DSMR 3 gas reading): values only.
        return Ok(("", values(line)?));
    }
    let open = line.find('(').ok_or_else(|| "no '(' after the OBIS code".to_owned())?;
    let (code, rest) = line.split_at(open);
    let code = code.split_once('*').map_or(code, |(c, _)| c);
    if !obis_shape(code) {
        return Err(format!("'{code}' is not an OBIS code"));
    }
    Ok((code, values(rest)?))
}

fn obis_shape(code: &str) -> bool {
    // A-B:C.D.E with decimal fields.
    let Some((ab, cde)) = code.split_once(':') else { return false };
    let Some((a, b)) = ab.split_once('-') else { return false };
    let parts: Vec<&str> = cde.split('.').collect();
    let num = |s: &str| !s.is_empty() && s.len() <= 3 && s.bytes().all(|c| c.is_ascii_digit());
    num(a) && num(b) && parts.len() == 3 && parts.iter().all(|p| num(p))
}

fn values(mut rest: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    while !rest.is_empty() {
        let inner = rest.strip_prefix('(').ok_or_else(|| format!("unexpected '{}'", clip(rest)))?;
        let close = inner.find(')').ok_or_else(|| "a '(' is not closed".to_owned())?;
        let (v, after) = inner.split_at(close);
        out.push(v);
        rest = after.get(1..).unwrap_or_default();
    }
    Ok(out)
}

/// Decode one COSEM object line into `t`; unknown codes are skipped (their shape was checked).
fn object(t: &mut Telegram, line: &str) -> Result<(), String> {
    let (code, vals) = split_line(line)?;
    let one = || match vals.as_slice() {
        [v] => Ok(*v),
        _ => Err(format!("{code} must carry one value, found {}", vals.len())),
    };
    match code {
        "1-3:0.2.8" | "0-0:96.1.4" => t.version = Some(one()?.to_owned()),
        "0-0:1.0.0" => t.timestamp = Some(timestamp(one()?)?),
        "0-0:96.1.1" => t.equipment_id = Some(equipment_id(one()?)),
        "0-0:96.14.0" => {
            let v = one()?;
            t.tariff = Some(v.parse().map_err(|_| format!("tariff '{v}' is not a number"))?);
        }
        "1-0:1.7.0" => t.power_import = Some(power(one()?)?),
        "1-0:2.7.0" => t.power_export = Some(power(one()?)?),
        "1-0:1.8.1" => t.energy_import[0] = Some(energy(one()?)?),
        "1-0:1.8.2" => t.energy_import[1] = Some(energy(one()?)?),
        "1-0:2.8.1" => t.energy_export[0] = Some(energy(one()?)?),
        "1-0:2.8.2" => t.energy_export[1] = Some(energy(one()?)?),
        _ => phase_object(t, code, &vals)?,
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum PhaseField {
    Import,
    Export,
    Voltage,
    Current,
}

fn phase_object(t: &mut Telegram, code: &str, vals: &[&str]) -> Result<(), String> {
    use PhaseField::{Current, Export, Import, Voltage};
    let Some(field) = code.strip_prefix("1-0:").and_then(|r| r.strip_suffix(".7.0")) else {
        return Ok(());
    };
    let (phase, what) = match field {
        "21" => (0, Import),
        "41" => (1, Import),
        "61" => (2, Import),
        "22" => (0, Export),
        "42" => (1, Export),
        "62" => (2, Export),
        "32" => (0, Voltage),
        "52" => (1, Voltage),
        "72" => (2, Voltage),
        "31" => (0, Current),
        "51" => (1, Current),
        "71" => (2, Current),
        _ => return Ok(()),
    };
    let [v] = vals else {
        return Err(format!("{code} must carry one value, found {}", vals.len()));
    };
    let p = t.phases.get_mut(phase).ok_or_else(|| format!("{code}: no phase {phase}"))?;
    match what {
        Import => p.import = Some(power(v)?),
        Export => p.export = Some(power(v)?),
        Voltage => p.voltage = Some(voltage(v)?),
        Current => p.current = Some(current(v)?),
    }
    Ok(())
}

/// A number with its unit: `01.193*kW` → (1.193, "kW").
fn number(v: &str) -> Result<(f64, &str), String> {
    let (num, unit) = v.split_once('*').ok_or_else(|| format!("'{v}' has no unit"))?;
    let ok = !num.is_empty()
        && num.len() <= 20
        && num.bytes().all(|c| c.is_ascii_digit() || c == b'.')
        && num.bytes().filter(|&c| c == b'.').count() <= 1
        && num.bytes().next().is_some_and(|c| c.is_ascii_digit());
    if !ok {
        return Err(format!("'{num}' is not a decimal number"));
    }
    let x: f64 = num.parse().map_err(|_| format!("'{num}' is not a decimal number"))?;
    Ok((x, unit))
}

fn to_f32(x: f64) -> f32 {
    crate::narrow::f32_of(x)
}

fn power(v: &str) -> Result<Watts, String> {
    let (x, unit) = number(v)?;
    let w = match unit {
        "kW" => x * 1000.0,
        "W" => x,
        other => return Err(format!("power '{v}': unit '{other}' is not kW or W")),
    };
    Watts::try_new(to_f32(w)).map_err(|e| format!("power '{v}': {e}"))
}

fn energy(v: &str) -> Result<WattHours, String> {
    let (x, unit) = number(v)?;
    let wh = match unit {
        "kWh" => x * 1000.0,
        "Wh" => x,
        other => return Err(format!("energy '{v}': unit '{other}' is not kWh or Wh")),
    };
    WattHours::try_new(to_f32(wh)).map_err(|e| format!("energy '{v}': {e}"))
}

fn voltage(v: &str) -> Result<Volts, String> {
    match number(v)? {
        (x, "V") => Volts::try_new(to_f32(x)).map_err(|e| format!("voltage '{v}': {e}")),
        (_, other) => Err(format!("voltage '{v}': unit '{other}' is not V")),
    }
}

fn current(v: &str) -> Result<Amps, String> {
    match number(v)? {
        (x, "A") => Amps::try_new(to_f32(x)).map_err(|e| format!("current '{v}': {e}")),
        (_, other) => Err(format!("current '{v}': unit '{other}' is not A")),
    }
}

fn timestamp(v: &str) -> Result<P1Timestamp, String> {
    let bad = || format!("timestamp '{v}' is not YYMMDDhhmmss followed by S or W");
    let (digits, flag) = v.split_at_checked(12).ok_or_else(bad)?;
    if !digits.bytes().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    let dst = match flag {
        "S" => true,
        "W" => false,
        _ => return Err(bad()),
    };
    let two = |i: usize| -> Result<u8, String> {
        digits.get(i..i + 2).and_then(|s| s.parse().ok()).ok_or_else(bad)
    };
    let ts = P1Timestamp {
        year: 2000 + u16::from(two(0)?),
        month: two(2)?,
        day: two(4)?,
        hour: two(6)?,
        minute: two(8)?,
        second: two(10)?,
        dst,
    };
    let valid = (1..=12).contains(&ts.month)
        && (1..=31).contains(&ts.day)
        && ts.hour <= 23
        && ts.minute <= 59
        && ts.second <= 59;
    if valid {
        Ok(ts)
    } else {
        Err(format!("timestamp '{v}' is not a valid date and time"))
    }
}

/// `0-0:96.1.1` is ASCII encoded as hex on most meters; keep the raw text when it is not.
fn equipment_id(v: &str) -> String {
    if v.len() % 2 == 0 && !v.is_empty() && v.bytes().all(|c| c.is_ascii_hexdigit()) {
        let decoded: Option<String> = (0..v.len())
            .step_by(2)
            .map(|i| v.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
            .map(|b| b.filter(|b| b.is_ascii_graphic() || *b == b' ').map(char::from))
            .collect();
        if let Some(s) = decoded {
            return s;
        }
    }
    v.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal(body: &str) -> Vec<u8> {
        let crc = crc16_arc(body.as_bytes());
        format!("{body}{crc:04X}\r\n").into_bytes()
    }

    #[test]
    fn minimal_telegram_and_signs() {
        let t = parse_telegram(&seal("/XMX5TEST\r\n\r\n1-0:1.7.0(00.100*kW)\r\n1-0:2.7.0(01.500*kW)\r\n!"))
            .unwrap();
        assert_eq!(t.manufacturer(), "XMX");
        assert_eq!(t.net_power(), Some(Watts::try_new(-1400.0).unwrap()));
    }

    #[test]
    fn phase_codes_land_in_the_right_fields() {
        let body =
            "/XMX5TEST\r\n\r\n1-0:21.7.0(00.070*kW)\r\n1-0:22.7.0(00.010*kW)\r\n1-0:32.7.0(230.1*V)\r\n\
                    1-0:31.7.0(001*A)\r\n1-0:72.7.0(229.0*V)\r\n!";
        let t = parse_telegram(&seal(body)).unwrap();
        let l1 = t.phases[0];
        assert_eq!(l1.import, Some(Watts::try_new(70.0).unwrap()));
        assert_eq!(l1.export, Some(Watts::try_new(10.0).unwrap()));
        assert_eq!(l1.voltage, Some(Volts::try_new(230.1).unwrap()));
        assert_eq!(l1.current, Some(Amps::try_new(1.0).unwrap()));
        assert_eq!(t.phases[2].voltage, Some(Volts::try_new(229.0).unwrap()));
    }

    #[test]
    fn bad_values_name_the_line() {
        for (line, why) in [
            ("1-0:1.7.0(-0.1*kW)", "not a decimal number"),
            ("1-0:1.7.0(1.0*MW)", "not kW or W"),
            ("1-0:1.7.0(1.0)", "has no unit"),
            ("1-0:32.7.0(5000*V)", "outside the physical range"),
            ("0-0:1.0.0(171302192002W)", "not a valid date"),
            ("0-0:1.0.0(170102192002X)", "followed by S or W"),
            ("hello", "no '('"),
            ("1-0:1.7.0(1.0*kW", "not closed"),
        ] {
            let e = parse_telegram(&seal(&format!("/XMX5TEST\r\n\r\n{line}\r\n!"))).unwrap_err().to_string();
            assert!(e.contains(line) && e.contains(why), "{line}: {e}");
        }
    }

    #[test]
    fn framing_errors() {
        assert!(matches!(parse_telegram(b"XMX"), Err(P1Error::NoStart)));
        assert!(matches!(parse_telegram(b"/XMX5TEST\r\n"), Err(P1Error::NoEnd)));
        assert!(matches!(parse_telegram(b"/XMX5TEST\r\n!\r\n"), Err(P1Error::MissingCrc)));
        assert!(matches!(parse_telegram(b"/XMX5TEST\r\n!12G4"), Err(P1Error::BadCrcField { .. })));
        let big = vec![b'/'; MAX_TELEGRAM_LEN + 1];
        assert!(matches!(parse_telegram(&big), Err(P1Error::TooLong { .. })));
    }
}
