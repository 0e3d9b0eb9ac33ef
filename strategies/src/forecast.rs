//! Forecasts for planning: PV, load and prices, and the metrics to judge them.
//!
//! | forecast | method | inputs |
//! |---|---|---|
//! | PV ([`PvForecaster`]) | clear-sky power of the array (Spencer sun position, Haurwitz GHI, Erbs split, isotropic-sky transposition, lumped losses) × a ratio of measured to clear-sky energy: recent hours for the near term, a smoothed daily ratio further ahead; or power from a GHI forecast ([`PvForecaster::from_ghi_forecast`]) | site, array, measured PV |
//! | load ([`LoadForecaster`]) | one profile per day type (working day / Saturday / Sunday-holiday) and local time-of-day slot, learned by exponential smoothing from a default profile | measured load, holidays |
//! | prices ([`PriceForecaster`]) | published day-ahead prices; for the unknown tail the same local hour of the latest known day, or the 7-day mean of that hour ([`PriceFallback`]) | spot series |
//!
//! [`error_metrics`] gives MAE, RMSE, bias and nMAE. nMAE is MAE divided by the mean of the
//! absolute actuals for load and prices, and by the peak power (capacity) for PV: the mean of
//! actual PV includes the nights and would make the same forecast look twice as bad.
//!
//! `strategies/examples/forecast_error.rs` reports these errors on real data (TMY3 Greensboro for
//! PV, BDEW H25 for load, SMARD 2018 for prices). The BDEW profile is itself a smooth average
//! over many households, so the load error there is far lower than for one real household,
//! whose load is dominated by switching appliances.
#![warn(missing_docs)]

mod load;
mod metrics;
mod price;
mod pv;
pub mod solar;
mod spread;

pub use load::{LoadDayType, LoadForecaster, LoadProfile};
pub use metrics::{error_metrics, ErrorMetrics, Normalisation, Scored};
pub use price::{PriceFallback, PriceForecaster};
pub use pv::{PvCorrection, PvForecaster, PvLearned, PvSystem};
pub use solar::Irradiance;
pub use spread::{error_scenarios, ForecastErrors};

/// A forecaster was configured or fed with unusable values.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ForecastError {
    /// A parameter is outside its valid range (or not finite).
    #[error("{field} = {value} is outside {min}..={max}")]
    OutOfRange {
        /// The parameter.
        field: &'static str,
        /// The rejected value.
        value: f64,
        /// Lowest valid value.
        min: f64,
        /// Highest valid value.
        max: f64,
    },
    /// A profile's slot count does not divide a day.
    #[error("{slots} slots per day do not divide 1440 minutes")]
    BadSlots {
        /// The rejected count.
        slots: usize,
    },
    /// Two sequences that must be equally long are not.
    #[error("length {found} does not match the expected {expected}")]
    LengthMismatch {
        /// Expected length.
        expected: usize,
        /// Found length.
        found: usize,
    },
    /// Nothing to compare.
    #[error("no values")]
    Empty,
    /// A value is NaN or infinite.
    #[error("{value} is not a finite value")]
    NotFinite {
        /// The rejected value.
        value: f64,
    },
}
