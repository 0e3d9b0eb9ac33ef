//! The tariff vocabulary: prices with their origin, import and export pricing, demand charges
//! and the [`Tariff`] itself. Kept apart from the file format (`config`) so that the format
//! may use these types without the parent module using the format back.

use super::invalid::InvalidField;
use super::series::PriceSeries;
use super::smard::SmardError;
use super::tou::{Calendar, DayType, TouSchedule};
use crate::units::{Money, Price};
use ems_core::Watts;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use std::path::PathBuf;
use std::sync::Arc;

/// Length of a demand-charge (metering) interval in seconds: 15 minutes.
pub const DEMAND_INTERVAL_S: i64 = 900;

/// A tariff file could not be used. Every variant names the tariff file.
#[derive(Debug, thiserror::Error)]
pub enum TariffError {
    /// The tariff file could not be read.
    #[error("{path}: cannot read the tariff file: {source}")]
    Read {
        /// The tariff file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not valid TOML, a missing field, a wrong type or an unknown field: names the file, the
    /// line (and column) and the field's path.
    #[error("{0}")]
    Syntax(ems_tomlfile::SpannedError),
    /// A field has a value that does not make a valid tariff: names the file, the line, the
    /// field's path (as in [`InvalidField`]) and the value.
    #[error("{0}")]
    Invalid(ems_tomlfile::SpannedError),
    /// The spot-price file named by the tariff could not be read.
    #[error("{path}: cannot read the price file {file}: {source}")]
    PriceFileRead {
        /// The tariff file.
        path: PathBuf,
        /// The price file (resolved).
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The spot-price file named by the tariff is not a valid SMARD file.
    #[error("{path}: price file {file}: {source}")]
    PriceFile {
        /// The tariff file.
        path: PathBuf,
        /// The price file (resolved).
        file: PathBuf,
        /// Where and why.
        source: SmardError,
    },
}

/// Where a quoted price came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PriceSource {
    /// A fixed price.
    Fixed,
    /// A time-of-use window or base price.
    TimeOfUse,
    /// Computed from a known spot price.
    Spot,
    /// The spot price was unknown; the configured fallback was used.
    Fallback,
}

/// A price with its origin.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Quote {
    /// Currency per kWh.
    pub price: Price,
    /// Where it came from.
    pub source: PriceSource,
}

fn check_spot_grid(spot: &PriceSeries) -> Result<(), InvalidField> {
    let step = spot.step().as_secs();
    if step % DEMAND_INTERVAL_S != 0 || spot.start().as_second().rem_euclid(DEMAND_INTERVAL_S) != 0 {
        return Err(InvalidField::new(
            "spot",
            format!("start {}, step {} s", spot.start(), step),
            "spot slots must be whole quarter-hours starting on a quarter-hour",
        ));
    }
    Ok(())
}

fn check_vat(vat_percent: f64) -> Result<(), InvalidField> {
    if (0.0..=100.0).contains(&vat_percent) {
        Ok(())
    } else {
        Err(InvalidField::new("vat_percent", vat_percent, "VAT must be within 0..=100 %"))
    }
}

fn check_price(field: &str, p: Price) -> Result<(), InvalidField> {
    if p.per_kwh().is_finite() {
        Ok(())
    } else {
        Err(InvalidField::new(field, p.per_kwh(), "not a finite price"))
    }
}

/// Dynamic import pricing: `(spot + grid_fees + levies) × (1 + vat_percent / 100)`.
#[derive(Debug, Clone, PartialEq)]
pub struct DynamicImport {
    spot: Arc<PriceSeries>,
    grid_fees: Price,
    levies: Price,
    vat_percent: f64,
    fallback: Price,
}

impl DynamicImport {
    /// Dynamic pricing on `spot`. `fallback` is the all-in price charged when the spot price is
    /// unknown (outside the series or an empty slot); it is not run through the formula. The
    /// series must be on the quarter-hour grid; VAT within 0..=100 %.
    ///
    /// # Errors
    /// [`InvalidField`] for a series off the quarter-hour grid or VAT outside 0..=100 %.
    pub fn new(
        spot: Arc<PriceSeries>,
        grid_fees: Price,
        levies: Price,
        vat_percent: f64,
        fallback: Price,
    ) -> Result<Self, InvalidField> {
        check_spot_grid(&spot)?;
        check_price("grid_fees_per_kwh", grid_fees)?;
        check_price("levies_per_kwh", levies)?;
        check_price("fallback_per_kwh", fallback)?;
        check_vat(vat_percent)?;
        Ok(Self { spot, grid_fees, levies, vat_percent, fallback })
    }

    /// The import price for a given spot price (also for a forecast spot price).
    #[must_use]
    pub fn price_for_spot(&self, spot: Price) -> Price {
        let net = spot.per_kwh() + self.grid_fees.per_kwh() + self.levies.per_kwh();
        Price::new(net * (1.0 + self.vat_percent / 100.0))
    }

    /// The spot series.
    #[must_use]
    pub fn spot(&self) -> &Arc<PriceSeries> {
        &self.spot
    }

    /// Grid fees per kWh (net of VAT).
    #[must_use]
    pub fn grid_fees(&self) -> Price {
        self.grid_fees
    }

    /// Other levies and taxes per kWh (net of VAT).
    #[must_use]
    pub fn levies(&self) -> Price {
        self.levies
    }

    /// VAT in percent.
    #[must_use]
    pub fn vat_percent(&self) -> f64 {
        self.vat_percent
    }

    /// The all-in price charged when the spot price is unknown.
    #[must_use]
    pub fn fallback(&self) -> Price {
        self.fallback
    }
}

/// Spot-indexed export pricing: `max(spot × factor + offset, floor)`.
#[derive(Debug, Clone, PartialEq)]
pub struct SpotExport {
    spot: Arc<PriceSeries>,
    factor: f64,
    offset: Price,
    floor: Option<Price>,
    fallback: Price,
}

impl SpotExport {
    /// Spot export pricing; `fallback` is paid as is when the spot price is unknown. A `floor`
    /// of zero keeps negative spot prices from making export cost money.
    ///
    /// # Errors
    /// [`InvalidField`] for a series off the quarter-hour grid.
    pub fn new(
        spot: Arc<PriceSeries>,
        factor: f64,
        offset: Price,
        floor: Option<Price>,
        fallback: Price,
    ) -> Result<Self, InvalidField> {
        check_spot_grid(&spot)?;
        if !factor.is_finite() {
            return Err(InvalidField::new("factor", factor, "not a finite number"));
        }
        check_price("offset_per_kwh", offset)?;
        if let Some(f) = floor {
            check_price("floor_per_kwh", f)?;
        }
        check_price("fallback_per_kwh", fallback)?;
        Ok(Self { spot, factor, offset, floor, fallback })
    }

    /// The export price for a given spot price.
    #[must_use]
    pub fn price_for_spot(&self, spot: Price) -> Price {
        let p = spot.per_kwh() * self.factor + self.offset.per_kwh();
        Price::new(self.floor.map_or(p, |f| p.max(f.per_kwh())))
    }

    /// The spot series.
    #[must_use]
    pub fn spot(&self) -> &Arc<PriceSeries> {
        &self.spot
    }

    /// The price paid when the spot price is unknown.
    #[must_use]
    pub fn fallback(&self) -> Price {
        self.fallback
    }
}

/// How imported energy is priced.
#[derive(Debug, Clone, PartialEq)]
pub enum ImportPricing {
    /// One all-in price.
    Fixed(Price),
    /// Time-of-use windows (all-in prices).
    TimeOfUse(TouSchedule),
    /// Spot plus fees and levies, plus VAT.
    Dynamic(DynamicImport),
}

/// How exported energy is paid.
#[derive(Debug, Clone, PartialEq)]
pub enum ExportPricing {
    /// One price.
    Fixed(Price),
    /// Indexed to the spot price.
    Spot(SpotExport),
}

/// Which quarter-hours count for the demand peak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DemandBasis {
    /// Every quarter-hour of the month.
    MonthlyPeak,
    /// Only quarter-hours inside time-of-use windows marked `peak`.
    PeakWindows,
}

/// A demand charge: currency per kW of the month's peak 15-min average import.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DemandCharge {
    per_kw: f64,
    basis: DemandBasis,
}

impl DemandCharge {
    /// `per_kw` in currency per kW per month (finite, ≥ 0).
    ///
    /// # Errors
    /// [`InvalidField`] when `per_kw` is negative or not finite.
    pub fn new(per_kw: f64, basis: DemandBasis) -> Result<Self, InvalidField> {
        if per_kw.is_finite() && per_kw >= 0.0 {
            Ok(Self { per_kw, basis })
        } else {
            Err(InvalidField::new("per_kw", per_kw, "must be a finite rate ≥ 0 (currency per kW per month)"))
        }
    }

    /// Currency per kW per month.
    #[must_use]
    pub fn per_kw(&self) -> f64 {
        self.per_kw
    }

    /// Which quarter-hours count.
    #[must_use]
    pub fn basis(&self) -> DemandBasis {
        self.basis
    }

    /// The month's charge for a peak (negative peaks count as zero).
    #[must_use]
    pub fn charge(&self, peak: Watts) -> Money {
        Money::new(self.per_kw * f64::from(peak.get().max(0.0)) / 1000.0)
    }
}

/// A complete tariff in a time zone. Cheap to clone (spot series are shared).
#[derive(Debug, Clone)]
pub struct Tariff {
    name: String,
    currency: String,
    tz: TimeZone,
    calendar: Calendar,
    import: ImportPricing,
    export: ExportPricing,
    demand: Option<DemandCharge>,
    monthly_fee: Money,
}

impl Tariff {
    /// A tariff with no demand charge, no monthly fee, no holidays, named "tariff", in EUR.
    #[must_use]
    pub fn new(tz: TimeZone, import: ImportPricing, export: ExportPricing) -> Self {
        Self {
            name: "tariff".to_owned(),
            currency: "EUR".to_owned(),
            tz,
            calendar: Calendar::default(),
            import,
            export,
            demand: None,
            monthly_fee: Money::ZERO,
        }
    }

    /// Fixed import and export prices.
    #[must_use]
    pub fn fixed(tz: TimeZone, import: Price, export: Price) -> Self {
        Self::new(tz, ImportPricing::Fixed(import), ExportPricing::Fixed(export))
    }

    /// Set the name.
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Set the currency code (informative; all amounts are in it).
    #[must_use]
    pub fn with_currency(mut self, currency: impl Into<String>) -> Self {
        self.currency = currency.into();
        self
    }

    /// Set the holiday calendar.
    #[must_use]
    pub fn with_calendar(mut self, calendar: Calendar) -> Self {
        self.calendar = calendar;
        self
    }

    /// Set a fixed fee charged for every month with any recorded energy.
    #[must_use]
    pub fn with_monthly_fee(mut self, fee: Money) -> Self {
        self.monthly_fee = fee;
        self
    }

    /// Add a demand charge. A [`DemandBasis::PeakWindows`] charge needs time-of-use import
    /// pricing with at least one peak window.
    ///
    /// # Errors
    /// [`InvalidField`] for a peak-window charge without time-of-use import pricing with a peak window.
    pub fn with_demand_charge(mut self, charge: DemandCharge) -> Result<Self, InvalidField> {
        if charge.basis == DemandBasis::PeakWindows {
            let has_windows = match &self.import {
                ImportPricing::TimeOfUse(t) => t.has_peak_windows(),
                ImportPricing::Fixed(_) | ImportPricing::Dynamic(_) => false,
            };
            if !has_windows {
                return Err(InvalidField::new(
                    "demand_charge.basis",
                    "\"peak-windows\"",
                    "needs time-of-use import pricing with at least one window marked peak = true",
                ));
            }
        }
        self.demand = Some(charge);
        Ok(self)
    }

    /// The name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The currency code.
    #[must_use]
    pub fn currency(&self) -> &str {
        &self.currency
    }

    /// The site time zone local-time rules are evaluated in.
    #[must_use]
    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    /// The holiday calendar.
    #[must_use]
    pub fn calendar(&self) -> &Calendar {
        &self.calendar
    }

    /// Import pricing.
    #[must_use]
    pub fn import(&self) -> &ImportPricing {
        &self.import
    }

    /// Export pricing.
    #[must_use]
    pub fn export(&self) -> &ExportPricing {
        &self.export
    }

    /// The demand charge, if any.
    #[must_use]
    pub fn demand_charge(&self) -> Option<&DemandCharge> {
        self.demand.as_ref()
    }

    /// The fixed monthly fee (zero if none).
    #[must_use]
    pub fn monthly_fee(&self) -> Money {
        self.monthly_fee
    }

    /// Local day type and minute of day at `at`.
    fn local(&self, at: Timestamp) -> (DayType, u16) {
        let dt = self.tz.to_datetime(at);
        let minute = u16::try_from(i32::from(dt.hour()) * 60 + i32::from(dt.minute())).unwrap_or_default();
        (self.calendar.day_type(dt.date()), minute)
    }

    /// The price of a kWh imported at `at`.
    #[must_use]
    pub fn import_price(&self, at: Timestamp) -> Price {
        self.import_quote(at).price
    }

    /// The import price at `at` and where it came from.
    #[must_use]
    pub fn import_quote(&self, at: Timestamp) -> Quote {
        match &self.import {
            ImportPricing::Fixed(p) => Quote { price: *p, source: PriceSource::Fixed },
            ImportPricing::TimeOfUse(t) => {
                let (day, minute) = self.local(at);
                Quote { price: t.for_day(day).price_at(minute), source: PriceSource::TimeOfUse }
            }
            ImportPricing::Dynamic(d) => match d.spot.get(at) {
                Some(spot) => Quote { price: d.price_for_spot(spot), source: PriceSource::Spot },
                None => Quote { price: d.fallback, source: PriceSource::Fallback },
            },
        }
    }

    /// The import price at `at` if the spot price were `spot` (for planning with forecast spot
    /// prices); fixed and time-of-use pricing ignore `spot`.
    #[must_use]
    pub fn import_price_for_spot(&self, at: Timestamp, spot: Price) -> Price {
        match &self.import {
            ImportPricing::Dynamic(d) => d.price_for_spot(spot),
            ImportPricing::Fixed(_) | ImportPricing::TimeOfUse(_) => self.import_price(at),
        }
    }

    /// The payment for a kWh exported at `at`.
    #[must_use]
    pub fn export_price(&self, at: Timestamp) -> Price {
        self.export_quote(at).price
    }

    /// The export price at `at` and where it came from.
    #[must_use]
    pub fn export_quote(&self, at: Timestamp) -> Quote {
        match &self.export {
            ExportPricing::Fixed(p) => Quote { price: *p, source: PriceSource::Fixed },
            ExportPricing::Spot(s) => match s.spot.get(at) {
                Some(spot) => Quote { price: s.price_for_spot(spot), source: PriceSource::Spot },
                None => Quote { price: s.fallback, source: PriceSource::Fallback },
            },
        }
    }

    /// The export price at `at` if the spot price were `spot`; fixed export ignores `spot`.
    #[must_use]
    pub fn export_price_for_spot(&self, at: Timestamp, spot: Price) -> Price {
        match &self.export {
            ExportPricing::Spot(s) => s.price_for_spot(spot),
            ExportPricing::Fixed(_) => self.export_price(at),
        }
    }

    /// Whether import in the quarter-hour containing `at` counts for the demand peak (always
    /// `false` without a demand charge).
    #[must_use]
    pub fn counts_for_demand(&self, at: Timestamp) -> bool {
        match (&self.demand, &self.import) {
            (None, _) => false,
            (Some(d), _) if d.basis == DemandBasis::MonthlyPeak => true,
            (Some(_), ImportPricing::TimeOfUse(t)) => {
                let (day, minute) = self.local(at);
                t.for_day(day).is_peak(minute)
            }
            (Some(_), ImportPricing::Fixed(_) | ImportPricing::Dynamic(_)) => false,
        }
    }

    /// The spot series this tariff uses (import first, then export), if any.
    #[must_use]
    pub fn spot_series(&self) -> Option<&Arc<PriceSeries>> {
        match (&self.import, &self.export) {
            (ImportPricing::Dynamic(d), _) => Some(&d.spot),
            (_, ExportPricing::Spot(s)) => Some(&s.spot),
            (ImportPricing::Fixed(_) | ImportPricing::TimeOfUse(_), ExportPricing::Fixed(_)) => None,
        }
    }
}

impl Tariff {
    /// The same tariff pricing its spot-indexed parts (dynamic import, spot export) with
    /// `spot`, e.g. live day-ahead prices from a price feed instead of the file's series. A
    /// tariff without spot-indexed parts is returned unchanged.
    ///
    /// # Errors
    /// [`InvalidField`] (`spot`) for a series off the quarter-hour grid.
    pub fn with_spot(mut self, spot: Arc<PriceSeries>) -> Result<Self, InvalidField> {
        check_spot_grid(&spot)?;
        if let ImportPricing::Dynamic(d) = &mut self.import {
            d.spot = Arc::clone(&spot);
        }
        if let ExportPricing::Spot(s) = &mut self.export {
            s.spot = spot;
        }
        Ok(self)
    }
}
