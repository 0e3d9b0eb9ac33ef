//! `ems-strategies`: layer 5, economics (design.md §2). Runs outside the control cycle (std, may
//! allocate) and hands the controller a plan; it never commands a device. Every plan still goes
//! through the safety envelope and the final clamp in `ems-control`.
//!
//! | module | holds |
//! |---|---|
//! | [`optimizer`] | the exact day-ahead / rolling-horizon planner and the optimizer CSV input |
//! | [`tariff`] | fixed, time-of-use and dynamic tariffs, export prices, demand charges, fees, VAT |
//! | [`prices`] | spot-price sources (file, aWATTar, ENTSO-E, push) and the feed that merges them for the planner |
//! | [`forecast`] | PV, load and price forecasts with their error metrics |
//! | [`units`] | `Price` (currency per kWh), `Money`, and the `f64` units `Ratio`, `Factor`, `KilowattHours`, `Degrees`, `WattsPerSquareMetre` |
//! | [`accounting`] | cost and savings per day and month against the baselines |
//! | [`rules`] | operator rules: the rule-set format (TOML/JSON), the rules engine and its conflict rule, public-holiday calendars, sunrise/sunset |
//! | [`live`] | the live engine of a running site: re-planning, forecasts from its meters, the three ledgers, the views |
#![forbid(unsafe_code)]
// Mirrors the lints the workspace is about to enable in the root `Cargo.toml`; removed from
// here once `[workspace.lints]` carries them.

pub mod accounting;
pub mod forecast;
pub mod live;
pub mod optimizer;
pub mod prices;
pub mod rules;
pub mod tariff;
pub mod units;

pub use units::{
    Degrees, Factor, KilowattHours, Money, Price, PriceError, RangeError, Ratio, WattsPerSquareMetre,
};
