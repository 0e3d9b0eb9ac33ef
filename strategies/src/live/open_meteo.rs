//! A parser for irradiance forecasts in the Open-Meteo JSON shape (fetching is the caller's).
//!
//! The fields read: `hourly.time` (ISO local date-times `"2026-03-29T02:00"` in the zone named
//! by `timezone`, or in UTC for `"GMT"`/`"UTC"`; with an unknown zone name the fixed
//! `utc_offset_seconds`; or Unix seconds with `timeformat=unixtime`) and
//! `hourly.shortwave_radiation` (W/m², `null` for a missing value). Open-Meteo gives
//! `shortwave_radiation` as the mean over the **preceding** hour, so the value labelled `T` is
//! returned as the mean over `[T − 1 h, T)`, keyed by its start `T − 1 h`.

use crate::units::WattsPerSquareMetre;
use jiff::civil::DateTime;
use jiff::tz::{self, TimeZone};
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

/// An Open-Meteo document could not be used; names the field and the value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("open-meteo: {field} = {value}: {expected}")]
pub struct OpenMeteoError {
    /// The field, e.g. `hourly.time[3]`.
    pub field: String,
    /// The rejected value (shortened).
    pub value: String,
    /// What was expected.
    pub expected: &'static str,
}

fn err(field: impl Into<String>, value: impl ToString, expected: &'static str) -> OpenMeteoError {
    let mut value = value.to_string();
    if value.len() > 80 {
        let cut = (0..=80).rev().find(|i| value.is_char_boundary(*i)).unwrap_or(0);
        value.truncate(cut);
        value.push('…');
    }
    OpenMeteoError { field: field.into(), value, expected }
}

fn zone(doc: &Value) -> Result<TimeZone, OpenMeteoError> {
    let name = doc.get("timezone").and_then(Value::as_str);
    if let Some(name) = name {
        if name.eq_ignore_ascii_case("GMT") || name.eq_ignore_ascii_case("UTC") {
            return Ok(TimeZone::UTC);
        }
        if let Ok(tz) = TimeZone::get(name) {
            return Ok(tz);
        }
    }
    match doc.get("utc_offset_seconds") {
        None | Some(Value::Null) if name.is_none() => Ok(TimeZone::UTC),
        Some(v) => {
            let secs = v
                .as_i64()
                .and_then(|s| i32::try_from(s).ok())
                .ok_or_else(|| err("utc_offset_seconds", v, "whole seconds"))?;
            let offset = tz::Offset::from_seconds(secs)
                .map_err(|_| err("utc_offset_seconds", secs, "an offset within ±25 h"))?;
            Ok(TimeZone::fixed(offset))
        }
        None => Err(err(
            "timezone",
            name.unwrap_or_default(),
            "a known IANA zone name, or a utc_offset_seconds field",
        )),
    }
}

/// Parse an Open-Meteo forecast: `(start, mean GHI over the hour from start)`, in time order.
/// Slots with a `null` radiation are skipped.
///
/// # Errors
/// [`OpenMeteoError`] for invalid JSON, a missing `hourly.time` or `hourly.shortwave_radiation`,
/// arrays of different lengths, an unreadable time, a radiation that is not a number in
/// `0..=10000`, or times not increasing.
pub fn parse_open_meteo(text: &str) -> Result<Vec<(Timestamp, WattsPerSquareMetre)>, OpenMeteoError> {
    let doc: Value = serde_json::from_str(text).map_err(|e| err("(document)", e, "valid JSON"))?;
    let tz = zone(&doc)?;
    let hourly = doc.get("hourly").ok_or_else(|| err("hourly", "(missing)", "an object"))?;
    let times = hourly
        .get("time")
        .and_then(Value::as_array)
        .ok_or_else(|| err("hourly.time", "(missing)", "an array of times"))?;
    let ghi = hourly
        .get("shortwave_radiation")
        .and_then(Value::as_array)
        .ok_or_else(|| err("hourly.shortwave_radiation", "(missing)", "an array of W/m² values"))?;
    if times.len() != ghi.len() {
        return Err(err(
            "hourly.shortwave_radiation",
            format!("{} values", ghi.len()),
            "as many values as hourly.time",
        ));
    }
    let mut out = Vec::with_capacity(times.len());
    let mut previous: Option<Timestamp> = None;
    for (i, (t, g)) in times.iter().zip(ghi).enumerate() {
        let field = || format!("hourly.time[{i}]");
        let label = match t {
            Value::Number(n) => n
                .as_i64()
                .and_then(|s| Timestamp::from_second(s).ok())
                .ok_or_else(|| err(field(), n, "Unix seconds"))?,
            Value::String(s) => {
                let dt: DateTime =
                    s.parse().map_err(|_| err(field(), s, "an ISO date-time YYYY-MM-DDTHH:MM"))?;
                let amb = tz.to_ambiguous_timestamp(dt);
                // In the repeated hour of a fall-back day the first label is the earlier instant,
                // the second the later one.
                let earlier = amb.earlier().map_err(|_| err(field(), s, "a representable time"))?;
                match previous {
                    Some(p) if earlier <= p => {
                        amb.later().map_err(|_| err(field(), s, "a representable time"))?
                    }
                    _ => earlier,
                }
            }
            other => return Err(err(field(), other, "a time string or Unix seconds")),
        };
        if previous.is_some_and(|p| label <= p) {
            return Err(err(field(), t, "times in increasing order"));
        }
        previous = Some(label);
        let value = match g {
            Value::Null => continue,
            Value::Number(n) => n.as_f64().and_then(|v| WattsPerSquareMetre::try_new(v).ok()),
            _ => None,
        }
        .ok_or_else(|| err(format!("hourly.shortwave_radiation[{i}]"), g, "W/m² in 0..=10000 or null"))?;
        let start = label
            .checked_sub(SignedDuration::from_hours(1))
            .map_err(|_| err(field(), t, "a representable time"))?;
        out.push((start, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of `api.open-meteo.com/v1/forecast?…&hourly=shortwave_radiation&timezone=Europe/Berlin`
    /// (values shortened to the night of the autumn daylight-saving change).
    const BERLIN: &str = r#"{"latitude":52.52,"longitude":13.419998,"generationtime_ms":0.05,
        "utc_offset_seconds":3600,"timezone":"Europe/Berlin","timezone_abbreviation":"GMT+1",
        "elevation":38.0,"hourly_units":{"time":"iso8601","shortwave_radiation":"W/m²"},
        "hourly":{"time":["2026-10-25T01:00","2026-10-25T02:00","2026-10-25T02:00","2026-10-25T03:00",
        "2026-10-25T12:00"],"shortwave_radiation":[0.0,0.0,null,0.0,312.5]}}"#;

    #[test]
    fn local_times_with_a_repeated_hour_become_utc_hour_starts() {
        let v = parse_open_meteo(BERLIN).unwrap();
        let starts: Vec<String> = v.iter().map(|(t, _)| t.to_string()).collect();
        // 01:00 CEST = 23:00Z → start 22:00Z; the first 02:00 is CEST (00:00Z), the second
        // (null, skipped) CET; 03:00 CET = 02:00Z; 12:00 CET = 11:00Z.
        assert_eq!(
            starts,
            ["2026-10-24T22:00:00Z", "2026-10-24T23:00:00Z", "2026-10-25T01:00:00Z", "2026-10-25T10:00:00Z"]
        );
        assert_eq!(v[3].1.get(), 312.5);
    }

    #[test]
    fn utc_unixtime_and_offset_fallback() {
        let utc = r#"{"timezone":"GMT","utc_offset_seconds":0,"hourly":{"time":["2026-06-01T12:00"],"shortwave_radiation":[800]}}"#;
        assert_eq!(parse_open_meteo(utc).unwrap()[0].0.to_string(), "2026-06-01T11:00:00Z");
        let unix = r#"{"hourly":{"time":[1780315200],"shortwave_radiation":[10]}}"#;
        assert_eq!(parse_open_meteo(unix).unwrap()[0].0.as_second(), 1_780_315_200 - 3600);
        let fixed = r#"{"timezone":"Nowhere/Land","utc_offset_seconds":7200,"hourly":{"time":["2026-06-01T12:00"],"shortwave_radiation":[1]}}"#;
        assert_eq!(parse_open_meteo(fixed).unwrap()[0].0.to_string(), "2026-06-01T09:00:00Z");
    }

    #[test]
    fn bad_documents_name_the_field_and_value() {
        let e = parse_open_meteo(r#"{"hourly":{"time":["x"],"shortwave_radiation":[1]}}"#).unwrap_err();
        assert_eq!((e.field.as_str(), e.value.as_str()), ("hourly.time[0]", "x"));
        let e = parse_open_meteo(r#"{"hourly":{"time":["2026-06-01T12:00"],"shortwave_radiation":[-5]}}"#)
            .unwrap_err();
        assert_eq!((e.field.as_str(), e.value.as_str()), ("hourly.shortwave_radiation[0]", "-5"));
        let e = parse_open_meteo(r#"{"hourly":{"time":["2026-06-01T12:00"],"shortwave_radiation":[]}}"#)
            .unwrap_err();
        assert_eq!(e.field, "hourly.shortwave_radiation");
        let e = parse_open_meteo(
            r#"{"hourly":{"time":["2026-06-01T12:00","2026-06-01T11:00"],"shortwave_radiation":[1,2]}}"#,
        )
        .unwrap_err();
        assert_eq!(e.field, "hourly.time[1]");
        assert_eq!(parse_open_meteo("nope").unwrap_err().field, "(document)");
    }
}
