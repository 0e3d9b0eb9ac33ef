//! Tariffs: what a kWh imported or exported costs or earns at a given instant, plus demand
//! charges and fixed fees.
//!
//! A [`Tariff`] answers [`Tariff::import_price`] and [`Tariff::export_price`] for any UTC
//! [`Timestamp`]; local-time rules (time-of-use windows, holidays, months for demand charges) are
//! evaluated in the tariff's time zone, so a 17:00–21:00 peak stays 17:00–21:00 local on
//! daylight-saving days (design.md §4).
//!
//! Import pricing is one of
//! - **fixed**: one all-in price per kWh;
//! - **time-of-use**: windows of local wall-clock time with separate weekday / weekend / holiday
//!   schedules ([`TouSchedule`]); prices are all-in;
//! - **dynamic**: `(spot + grid fees + levies) × (1 + VAT)` from a day-ahead [`PriceSeries`]
//!   (hourly or 15-min); outside the series (or in an empty slot) a configured all-in
//!   **fallback** price is charged, and [`Tariff::import_quote`] says so.
//!
//! Export pricing is fixed, or `max(spot × factor + offset, floor)` with a fallback. Export
//! prices are taken as stated (no VAT is added).
//!
//! A [`DemandCharge`] bills currency per kW of the month's highest 15-min average import, either
//! over all quarter-hours or only those inside time-of-use peak windows. A fixed monthly fee is
//! optional.
//!
//! # Tariff files
//!
//! TOML, read with [`Tariff::load`]. Unknown fields, fields that do not apply to the chosen
//! `kind` and invalid values are refused with the file, the field path and the value. Prices are
//! in currency per kWh; relative paths are relative to the tariff file. Examples with their
//! assumptions: `examples/tariffs/dynamic.toml`, `examples/tariffs/tou.toml`.
//!
//! ```toml
//! name = "My tariff"              # optional
//! currency = "EUR"                # optional, informative (default EUR)
//! time_zone = "Europe/Berlin"     # IANA name; all local-time rules use it
//! holidays = [2018-12-25, "2018-12-26"]   # TOML dates or strings, optional
//!
//! [import]                        # exactly one kind:
//! kind = "fixed"                  # price_per_kwh
//! # kind = "time-of-use"          # [import.weekday], [import.weekend], optional [import.holiday]
//! #                               #   each: base_per_kwh, slots = [{ from = "17:00", to = "21:00",
//! #                               #   price_per_kwh = 0.40, peak = true }], quarter-hour times,
//! #                               #   "24:00" = end of day, no overlaps, none across midnight
//! # kind = "dynamic"              # grid_fees_per_kwh, levies_per_kwh (0), vat_percent (0),
//! #                               #   fallback_per_kwh (all-in, used where the spot is unknown)
//! price_per_kwh = 0.30
//!
//! [export]
//! kind = "fixed"                  # price_per_kwh
//! # kind = "spot"                 # factor (1), offset_per_kwh (0), floor_per_kwh (none),
//! #                               #   fallback_per_kwh
//! price_per_kwh = 0.08
//!
//! # [spot]                        # needed by import "dynamic" / export "spot", refused otherwise
//! # file = "prices.csv"           # a SMARD CSV (see `parse_smard`); zone = "Germany" (default)
//! #                               #   or a column name such as "France"
//! # or inline: start = "2024-01-01T00:00:00+01:00", step_minutes = 15 (or 60),
//! #            prices_per_kwh = [...] or prices_per_mwh = [...]
//!
//! # [demand_charge]               # optional
//! # per_kw = 12.0                 # currency per kW of the month's peak 15-min average import
//! # basis = "monthly-peak"        # or "peak-windows": only time-of-use slots with peak = true
//!
//! # [fees]                        # optional
//! # monthly = 9.90
//! ```
//!
//! All slot boundaries (time-of-use windows, spot steps) lie on the quarter-hour grid, so a
//! price is constant within every metering quarter-hour; [`crate::accounting`] relies on this.

mod config;
mod invalid;
mod series;
mod smard;
mod tou;
mod types;

pub use invalid::InvalidField;
pub use series::{PriceSeries, SeriesError};
pub use smard::{parse_smard, parse_smard_zone, SmardError, SmardErrorKind, GERMANY};
pub use tou::{Calendar, DaySchedule, DayType, TimeOfDay, TouSchedule, TouSlot};
pub use types::{
    DemandBasis, DemandCharge, DynamicImport, ExportPricing, ImportPricing, PriceSource, Quote, SpotExport,
    Tariff, TariffError, DEMAND_INTERVAL_S,
};

use std::path::Path;

impl Tariff {
    /// Read a tariff TOML file. Relative paths inside it (the spot-price file) are resolved
    /// against the directory of `path`.
    ///
    /// # Errors
    /// [`TariffError`] when the file cannot be read or is invalid (see [`Tariff::from_toml`]).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, TariffError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|source| TariffError::Read { path: path.to_owned(), source })?;
        Self::from_toml(&text, path)
    }

    /// Parse tariff TOML `text`. `path` names the file in errors and its directory resolves
    /// relative price-file paths; it is not read.
    ///
    /// # Errors
    /// [`TariffError`] naming the file, the field and the value of the first problem.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, TariffError> {
        config::parse(text, path)
    }
}
