//! [`Calendar`]: where the simulated clock stands in its year.

use ems_core::Millis;

/// Where the simulated clock stands in its (non-leap, local standard time) year. Weekdays are
/// those of 2025 (1 January a Wednesday) and continue across year ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Calendar {
    /// Day of the year, 1..=365.
    pub day_of_year: u16,
    /// Month, 1..=12.
    pub month: u8,
    /// Day of the month, 1..=31.
    pub day_of_month: u8,
    /// Weekday, 0 = Monday … 6 = Sunday.
    pub weekday: u8,
    /// Time since local midnight.
    pub time_of_day: Millis,
}

/// Milliseconds per day.
pub const DAY_MS: u64 = 86_400_000;
/// Days in the simulation year.
pub const YEAR_DAYS: u64 = 365;

impl Calendar {
    /// The calendar for `clock` milliseconds after 1 January 00:00 of the first simulated year.
    #[must_use]
    pub fn at(clock: Millis) -> Self {
        let day_total = clock.get() / DAY_MS;
        let mut cal = Self::for_day(day_total);
        cal.time_of_day = Millis::new(clock.get() % DAY_MS);
        cal
    }

    pub(crate) fn for_day(day_total: u64) -> Self {
        // Both remainders are < 365 and < 7, so they fit the narrow types.
        let doy0 = u16::try_from(day_total % YEAR_DAYS).unwrap_or(0);
        let weekday = u8::try_from((day_total + 2) % 7).unwrap_or(0);
        let m0 = crate::data::MONTH_START_DAY[..12].iter().rposition(|&d| d <= doy0).unwrap_or(0);
        let day_of_month = u8::try_from(doy0 - crate::data::MONTH_START_DAY[m0] + 1).unwrap_or(1);
        Self {
            day_of_year: doy0 + 1,
            month: u8::try_from(m0 + 1).unwrap_or(1),
            day_of_month,
            weekday,
            time_of_day: Millis::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_of_2025() {
        let c = Calendar::at(Millis::ZERO);
        assert_eq!((c.day_of_year, c.month, c.day_of_month, c.weekday), (1, 1, 1, 2));
        let june1 = Calendar::at(Millis::new(151 * DAY_MS + 3_600_000));
        assert_eq!((june1.month, june1.day_of_month, june1.weekday), (6, 1, 6)); // a Sunday
        assert_eq!(june1.time_of_day, Millis::new(3_600_000));
        let dec31 = Calendar::at(Millis::new(364 * DAY_MS));
        assert_eq!((dec31.month, dec31.day_of_month), (12, 31));
        let next = Calendar::at(Millis::new(365 * DAY_MS));
        assert_eq!((next.day_of_year, next.weekday), (1, 3)); // 2026-01-01 is a Thursday
    }
}
