//! Price forecast: the published day-ahead prices, plus a fallback for the unknown tail.

use super::pv::intervals;
use crate::tariff::PriceSeries;
use crate::units::Price;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan};

/// How far back the fallbacks look for prices at the same local time of day, in days.
const LOOKBACK_DAYS: i64 = 14;

/// How unknown prices are filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PriceFallback {
    /// The price at the same local time of day on the latest earlier day that has one
    /// (typically "tomorrow = today" before the next auction results are out).
    SameTimeLastKnownDay,
    /// The mean of the prices at the same local time of day on the 7 latest earlier days that
    /// have one (smooths out one unusual day; keeps the daily shape).
    SevenDayMean,
}

/// Fills a horizon with prices: known spot prices where published, a [`PriceFallback`] for the
/// rest. Lookbacks step by calendar days in the site time zone, so "the same time of day"
/// stays the same local hour across daylight-saving changes. If nothing at all is found within
/// 14 days back, the configured default price is used.
#[derive(Debug, Clone)]
pub struct PriceForecaster {
    tz: TimeZone,
    method: PriceFallback,
    default: Price,
}

impl PriceForecaster {
    /// A forecaster in the market's time zone (`Europe/Berlin` for EPEX day-ahead DE).
    #[must_use]
    pub fn new(tz: TimeZone, method: PriceFallback, default: Price) -> Self {
        Self { tz, method, default }
    }

    /// The fallback method.
    #[must_use]
    pub fn method(&self) -> PriceFallback {
        self.method
    }

    /// Spot price at `at`: known if `known` has it, else the fallback. The boolean says whether
    /// the price was known.
    #[must_use]
    pub fn price_at(&self, known: &PriceSeries, at: Timestamp) -> (Price, bool) {
        if let Some(p) = known.get(at) {
            return (p, true);
        }
        let zoned = at.to_zoned(self.tz.clone());
        let wanted = match self.method {
            PriceFallback::SameTimeLastKnownDay => 1,
            PriceFallback::SevenDayMean => 7,
        };
        let mut sum = 0.0;
        let mut found = 0_u32;
        for k in 1..=LOOKBACK_DAYS {
            let Ok(earlier) = zoned.checked_sub(k.days()) else { break };
            if let Some(p) = known.get(earlier.timestamp()) {
                sum += p.per_kwh();
                found += 1;
                if found == wanted {
                    break;
                }
            }
        }
        if found == 0 {
            (self.default, false)
        } else {
            (Price::new(sum / f64::from(found)), false)
        }
    }

    /// Spot prices for `n` intervals of `step` from `start` (each taken at the interval's
    /// start; day-ahead prices are constant over their slot).
    #[must_use]
    pub fn forecast(
        &self,
        known: &PriceSeries,
        start: Timestamp,
        step: SignedDuration,
        n: usize,
    ) -> Vec<Price> {
        intervals(start, step, n).map(|t| self.price_at(known, t).0).collect()
    }
}
