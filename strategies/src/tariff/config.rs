//! The tariff TOML format (serde mirror of the tariff types, validated into them).
//!
//! Unknown fields are refused everywhere. Prices are in currency per kWh unless the field name
//! says otherwise (`prices_per_mwh`).

use super::{
    parse_smard_zone, Calendar, DaySchedule, DemandBasis, DemandCharge, DynamicImport, ExportPricing,
    ImportPricing, InvalidField, PriceSeries, SeriesError, SpotExport, Tariff, TariffError, TimeOfDay,
    TouSchedule, TouSlot, GERMANY,
};
use crate::units::{Money, Price};
use ems_tomlfile::Source;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TariffFile {
    name: Option<String>,
    currency: Option<String>,
    time_zone: String,
    #[serde(default)]
    holidays: Vec<toml::Value>,
    spot: Option<SpotFile>,
    import: ImportFile,
    export: ExportFile,
    demand_charge: Option<DemandFile>,
    fees: Option<FeesFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpotFile {
    /// `live = true`: no prices in the file; a running site's price feed (`[economics]` of the
    /// gateway) supplies them, and until it does every slot is unknown (the fallback prices).
    live: Option<bool>,
    /// A SMARD CSV file, relative to the tariff file.
    file: Option<String>,
    /// Zone column of the SMARD file (default: the spliced German series).
    zone: Option<String>,
    /// Inline series: start instant (RFC 3339 with offset).
    start: Option<String>,
    /// Inline series: minutes per slot.
    step_minutes: Option<u32>,
    prices_per_kwh: Option<Vec<f64>>,
    prices_per_mwh: Option<Vec<f64>>,
}

/// `[import]`: one flat table so that every error points at its key; which fields apply
/// depends on `kind` and is checked in [`build`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportFile {
    kind: ImportKind,
    price_per_kwh: Option<f64>,
    weekday: Option<DayFile>,
    weekend: Option<DayFile>,
    holiday: Option<DayFile>,
    grid_fees_per_kwh: Option<f64>,
    levies_per_kwh: Option<f64>,
    vat_percent: Option<f64>,
    fallback_per_kwh: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum ImportKind {
    Fixed,
    TimeOfUse,
    Dynamic,
}

impl ImportKind {
    fn name(self) -> &'static str {
        match self {
            Self::Fixed => "fixed",
            Self::TimeOfUse => "time-of-use",
            Self::Dynamic => "dynamic",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DayFile {
    base_per_kwh: f64,
    #[serde(default)]
    slots: Vec<SlotFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SlotFile {
    from: String,
    to: String,
    price_per_kwh: f64,
    #[serde(default)]
    peak: bool,
}

/// `[export]`, flat like `[import]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportFile {
    kind: ExportKind,
    price_per_kwh: Option<f64>,
    factor: Option<f64>,
    offset_per_kwh: Option<f64>,
    floor_per_kwh: Option<f64>,
    fallback_per_kwh: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum ExportKind {
    Fixed,
    Spot,
}

impl ExportKind {
    fn name(self) -> &'static str {
        match self {
            Self::Fixed => "fixed",
            Self::Spot => "spot",
        }
    }
}

/// The value of a field that `kind` requires.
fn required<T>(v: Option<T>, field: &str, kind: &str) -> Result<T, InvalidField> {
    v.ok_or_else(|| InvalidField::new(field, "(missing)", format!("required for kind = \"{kind}\"")))
}

/// Refuse fields that `kind` does not use (they would be silently ignored otherwise).
fn unused(fields: &[(&str, bool)], kind: &str) -> Result<(), InvalidField> {
    match fields.iter().find(|(_, present)| *present) {
        Some((field, _)) => {
            Err(InvalidField::new(*field, "(given)", format!("does not apply to kind = \"{kind}\"")))
        }
        None => Ok(()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DemandFile {
    per_kw: f64,
    #[serde(default = "monthly_peak")]
    basis: DemandBasis,
}

fn monthly_peak() -> DemandBasis {
    DemandBasis::MonthlyPeak
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FeesFile {
    monthly: f64,
}

fn price(field: &str, v: f64) -> Result<Price, InvalidField> {
    if v.is_finite() {
        Ok(Price::new(v))
    } else {
        Err(InvalidField::new(field, v, "not a finite price"))
    }
}

pub(super) fn parse(text: &str, path: &Path) -> Result<Tariff, TariffError> {
    let src = Source::new(path, text);
    let file: TariffFile = src.decode(&[]).map_err(TariffError::Syntax)?;
    build(file, src)
}

/// A refused value at the line the file sets its field (`(missing)`, `(given)` and `(table)` are
/// not values, the message says what is wrong).
fn invalid_at(src: Source<'_>, f: InvalidField) -> TariffError {
    let e = src.at_path(&f.field, f.reason);
    TariffError::Invalid(if f.value.starts_with('(') { e } else { e.with_value(f.value) })
}

fn build(file: TariffFile, src: Source<'_>) -> Result<Tariff, TariffError> {
    let invalid = |source: InvalidField| invalid_at(src, source);
    let tz = TimeZone::get(&file.time_zone).map_err(|e| {
        invalid(InvalidField::new(
            "time_zone",
            format!("\"{}\"", file.time_zone),
            format!("unknown time zone ({e})"),
        ))
    })?;
    let holidays = file
        .holidays
        .iter()
        .enumerate()
        .map(|(i, v)| holiday(v).map_err(|e| e.within(&format!("holidays[{i}]"))))
        .collect::<Result<Vec<_>, _>>()
        .map_err(invalid)?;

    // The spot series is loaded only if something uses it, but a `[spot]` table that nothing
    // uses is most likely a mistake and is refused.
    let uses_spot = file.import.kind == ImportKind::Dynamic || file.export.kind == ExportKind::Spot;
    let spot = match (&file.spot, uses_spot) {
        (Some(s), true) => Some(Arc::new(spot_series(s, src)?)),
        (None, false) => None,
        (Some(_), false) => {
            return Err(invalid(InvalidField::new(
                "spot",
                "(table)",
                "given, but neither import kind = \"dynamic\" nor export kind = \"spot\" uses it",
            )))
        }
        (None, true) => {
            return Err(invalid(InvalidField::new(
                "spot",
                "(missing)",
                "import kind = \"dynamic\" or export kind = \"spot\" needs a [spot] table",
            )))
        }
    };
    let import = import_pricing(file.import, spot.as_ref()).map_err(|e| invalid(e.within("import")))?;
    let export = export_pricing(file.export, spot.as_ref()).map_err(|e| invalid(e.within("export")))?;

    let mut tariff = Tariff::new(tz, import, export).with_calendar(Calendar::new(holidays));
    if let Some(name) = file.name {
        tariff = tariff.with_name(name);
    }
    if let Some(currency) = file.currency {
        tariff = tariff.with_currency(currency);
    }
    if let Some(fees) = file.fees {
        if !(fees.monthly.is_finite() && fees.monthly >= 0.0) {
            return Err(invalid(InvalidField::new(
                "fees.monthly",
                fees.monthly,
                "must be a finite amount ≥ 0",
            )));
        }
        tariff = tariff.with_monthly_fee(Money::new(fees.monthly));
    }
    if let Some(d) = file.demand_charge {
        let charge = DemandCharge::new(d.per_kw, d.basis).map_err(|e| invalid(e.within("demand_charge")))?;
        tariff = tariff.with_demand_charge(charge).map_err(invalid)?;
    }
    Ok(tariff)
}

fn need_spot(spot: Option<&Arc<PriceSeries>>) -> Result<Arc<PriceSeries>, InvalidField> {
    spot.cloned().ok_or_else(|| InvalidField::new("spot", "(missing)", "a [spot] table is needed"))
}

fn import_pricing(f: ImportFile, spot: Option<&Arc<PriceSeries>>) -> Result<ImportPricing, InvalidField> {
    let kind = f.kind.name();
    match f.kind {
        ImportKind::Fixed => {
            unused(
                &[
                    ("weekday", f.weekday.is_some()),
                    ("weekend", f.weekend.is_some()),
                    ("holiday", f.holiday.is_some()),
                    ("grid_fees_per_kwh", f.grid_fees_per_kwh.is_some()),
                    ("levies_per_kwh", f.levies_per_kwh.is_some()),
                    ("vat_percent", f.vat_percent.is_some()),
                    ("fallback_per_kwh", f.fallback_per_kwh.is_some()),
                ],
                kind,
            )?;
            Ok(ImportPricing::Fixed(price(
                "price_per_kwh",
                required(f.price_per_kwh, "price_per_kwh", kind)?,
            )?))
        }
        ImportKind::TimeOfUse => {
            unused(
                &[
                    ("price_per_kwh", f.price_per_kwh.is_some()),
                    ("grid_fees_per_kwh", f.grid_fees_per_kwh.is_some()),
                    ("levies_per_kwh", f.levies_per_kwh.is_some()),
                    ("vat_percent", f.vat_percent.is_some()),
                    ("fallback_per_kwh", f.fallback_per_kwh.is_some()),
                ],
                kind,
            )?;
            let weekday =
                day_schedule(required(f.weekday, "weekday", kind)?).map_err(|e| e.within("weekday"))?;
            let weekend =
                day_schedule(required(f.weekend, "weekend", kind)?).map_err(|e| e.within("weekend"))?;
            let holiday = f.holiday.map(day_schedule).transpose().map_err(|e| e.within("holiday"))?;
            Ok(ImportPricing::TimeOfUse(TouSchedule::new(weekday, weekend, holiday)))
        }
        ImportKind::Dynamic => {
            unused(
                &[
                    ("price_per_kwh", f.price_per_kwh.is_some()),
                    ("weekday", f.weekday.is_some()),
                    ("weekend", f.weekend.is_some()),
                    ("holiday", f.holiday.is_some()),
                ],
                kind,
            )?;
            Ok(ImportPricing::Dynamic(DynamicImport::new(
                need_spot(spot)?,
                price("grid_fees_per_kwh", required(f.grid_fees_per_kwh, "grid_fees_per_kwh", kind)?)?,
                price("levies_per_kwh", f.levies_per_kwh.unwrap_or(0.0))?,
                f.vat_percent.unwrap_or(0.0),
                price("fallback_per_kwh", required(f.fallback_per_kwh, "fallback_per_kwh", kind)?)?,
            )?))
        }
    }
}

fn export_pricing(f: ExportFile, spot: Option<&Arc<PriceSeries>>) -> Result<ExportPricing, InvalidField> {
    let kind = f.kind.name();
    match f.kind {
        ExportKind::Fixed => {
            unused(
                &[
                    ("factor", f.factor.is_some()),
                    ("offset_per_kwh", f.offset_per_kwh.is_some()),
                    ("floor_per_kwh", f.floor_per_kwh.is_some()),
                    ("fallback_per_kwh", f.fallback_per_kwh.is_some()),
                ],
                kind,
            )?;
            Ok(ExportPricing::Fixed(price(
                "price_per_kwh",
                required(f.price_per_kwh, "price_per_kwh", kind)?,
            )?))
        }
        ExportKind::Spot => {
            unused(&[("price_per_kwh", f.price_per_kwh.is_some())], kind)?;
            Ok(ExportPricing::Spot(SpotExport::new(
                need_spot(spot)?,
                f.factor.unwrap_or(1.0),
                price("offset_per_kwh", f.offset_per_kwh.unwrap_or(0.0))?,
                f.floor_per_kwh.map(|v| price("floor_per_kwh", v)).transpose()?,
                price("fallback_per_kwh", required(f.fallback_per_kwh, "fallback_per_kwh", kind)?)?,
            )?))
        }
    }
}

/// A holiday: a TOML local date (`2018-12-25`) or a string `"2018-12-25"`.
fn holiday(v: &toml::Value) -> Result<Date, InvalidField> {
    let text = match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Datetime(d) if d.date.is_some() && d.time.is_none() && d.offset.is_none() => {
            d.to_string()
        }
        other => return Err(InvalidField::new("", other, "not a date YYYY-MM-DD")),
    };
    text.parse::<Date>()
        .map_err(|e| InvalidField::new("", format!("\"{text}\""), format!("not a date YYYY-MM-DD ({e})")))
}

fn day_schedule(day: DayFile) -> Result<DaySchedule, InvalidField> {
    let base = price("base_per_kwh", day.base_per_kwh)?;
    let slots = day
        .slots
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let at = |field: &str| format!("slots[{i}].{field}");
            Ok(TouSlot {
                from: TimeOfDay::parse(&s.from).map_err(|e| e.within(&at("from")))?,
                to: TimeOfDay::parse(&s.to).map_err(|e| e.within(&at("to")))?,
                price: price(&at("price_per_kwh"), s.price_per_kwh)?,
                peak: s.peak,
            })
        })
        .collect::<Result<Vec<_>, InvalidField>>()?;
    DaySchedule::new(base, slots)
}

fn spot_series(s: &SpotFile, src: Source<'_>) -> Result<PriceSeries, TariffError> {
    let path = src.file();
    let invalid = |source: InvalidField| invalid_at(src, source.within("spot"));
    let inline = s.start.is_some()
        || s.step_minutes.is_some()
        || s.prices_per_kwh.is_some()
        || s.prices_per_mwh.is_some();
    if s.live == Some(true) {
        if s.file.is_some() || inline || s.zone.is_some() {
            return Err(invalid(InvalidField::new(
                "live",
                "true",
                "live prices come from the site's price feed: give no file, zone or inline series with it",
            )));
        }
        // One unknown quarter-hour: every lookup falls back until the feed replaces the series.
        return PriceSeries::new(Timestamp::UNIX_EPOCH, SignedDuration::from_mins(15), vec![None])
            .map_err(|e| invalid(InvalidField::new("live", "true", e.to_string())));
    }
    match (&s.file, inline) {
        (Some(file), false) => {
            let resolved = path.parent().unwrap_or_else(|| Path::new("")).join(file);
            let text = std::fs::read_to_string(&resolved).map_err(|source| TariffError::PriceFileRead {
                path: path.to_owned(),
                file: resolved.clone(),
                source,
            })?;
            let zone = s.zone.as_deref().unwrap_or(GERMANY);
            parse_smard_zone(&text, zone).map_err(|source| TariffError::PriceFile {
                path: path.to_owned(),
                file: resolved,
                source,
            })
        }
        (None, true) => {
            if s.zone.is_some() {
                return Err(invalid(InvalidField::new("zone", "(given)", "only applies to a SMARD 'file'")));
            }
            let start_text = s.start.as_deref().ok_or_else(|| {
                invalid(InvalidField::new(
                    "start",
                    "(missing)",
                    "an inline series needs start, step_minutes and prices",
                ))
            })?;
            let start: Timestamp = start_text.parse().map_err(|e| {
                invalid(InvalidField::new(
                    "start",
                    format!("\"{start_text}\""),
                    format!("not an RFC 3339 instant ({e})"),
                ))
            })?;
            let step_minutes = s.step_minutes.ok_or_else(|| {
                invalid(InvalidField::new("step_minutes", "(missing)", "an inline series needs step_minutes"))
            })?;
            let (values, scale, field) = match (&s.prices_per_kwh, &s.prices_per_mwh) {
                (Some(v), None) => (v, 1.0, "prices_per_kwh"),
                (None, Some(v)) => (v, 1.0e-3, "prices_per_mwh"),
                (Some(_), Some(_)) | (None, None) => {
                    return Err(invalid(InvalidField::new(
                        "prices_per_kwh",
                        "(see prices_per_mwh)",
                        "give exactly one of prices_per_kwh and prices_per_mwh",
                    )))
                }
            };
            let values = values
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    price(&format!("{field}[{i}]"), *v).map(|p| Some(Price::new(p.per_kwh() * scale)))
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(invalid)?;
            let step = SignedDuration::from_mins(i64::from(step_minutes));
            PriceSeries::new(start, step, values).map_err(|e| {
                let field = match e {
                    SeriesError::BadStep { .. } => "step_minutes",
                    SeriesError::Empty | SeriesError::NotFinite { .. } | SeriesError::NotUniform { .. } => {
                        field
                    }
                    SeriesError::OutOfRange => "start",
                };
                invalid(InvalidField::new(
                    field,
                    if field == "step_minutes" { step_minutes.to_string() } else { "[…]".to_owned() },
                    e.to_string(),
                ))
            })
        }
        (Some(_), true) => Err(invalid(InvalidField::new(
            "file",
            format!("\"{}\"", s.file.as_deref().unwrap_or_default()),
            "give either a SMARD 'file' or an inline series (start, step_minutes, prices), not both",
        ))),
        (None, false) => Err(invalid(InvalidField::new(
            "file",
            "(missing)",
            "give a SMARD 'file' or an inline series (start, step_minutes, prices)",
        ))),
    }
}
