//! Time-of-use schedules: prices by local time of day, with weekday / weekend / holiday calendars.

use super::InvalidField;
use crate::units::Price;
use jiff::civil::{Date, Weekday};
use std::collections::BTreeSet;
use std::fmt;

/// Minutes in a day.
const DAY_MIN: u16 = 1440;
/// Slot boundaries sit on this grid: prices are settled per metering quarter-hour, and the ledger
/// relies on a price being constant within each quarter-hour.
pub(crate) const GRID_MIN: u16 = 15;

/// A local wall-clock time of day from `00:00` to `24:00` (the end of the day), on the
/// quarter-hour grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeOfDay(u16);

impl TimeOfDay {
    /// Midnight at the start of the day.
    pub const MIDNIGHT: Self = Self(0);
    /// Midnight at the end of the day.
    pub const END_OF_DAY: Self = Self(DAY_MIN);

    /// `hour:minute`; `None` unless `00:00 ≤ t ≤ 24:00` and the minute is 0, 15, 30 or 45.
    #[must_use]
    pub fn new(hour: u8, minute: u8) -> Option<Self> {
        let m = u16::from(hour) * 60 + u16::from(minute);
        (minute < 60 && m <= DAY_MIN && m % GRID_MIN == 0).then_some(Self(m))
    }

    /// Parse `"HH:MM"` (`"24:00"` allowed as the end of the day).
    ///
    /// # Errors
    /// [`InvalidField`] when the text is not `HH:MM` on the quarter-hour grid within a day.
    pub fn parse(text: &str) -> Result<Self, InvalidField> {
        let bad = || {
            InvalidField::new(
                "",
                format!("\"{text}\""),
                "not a time of day HH:MM on a quarter-hour, 00:00..=24:00",
            )
        };
        let (h, m) = text.trim().split_once(':').ok_or_else(bad)?;
        if h.is_empty() || h.len() > 2 || m.len() != 2 {
            return Err(bad());
        }
        let h: u8 = h.parse().map_err(|_| bad())?;
        let m: u8 = m.parse().map_err(|_| bad())?;
        Self::new(h, m).ok_or_else(bad)
    }

    /// Minutes since local midnight.
    #[must_use]
    pub const fn minutes(self) -> u16 {
        self.0
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

/// Which calendar of a time-of-use tariff applies on a date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DayType {
    /// Monday to Friday, not a holiday.
    Weekday,
    /// Saturday or Sunday, not a holiday.
    Weekend,
    /// A date listed as a holiday (whatever the day of the week).
    Holiday,
}

/// The site's public holidays. Holidays are configured as a plain list of dates (no rules are
/// built in: holidays differ by state and change by law).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Calendar {
    holidays: BTreeSet<Date>,
}

impl Calendar {
    /// A calendar with these holidays.
    #[must_use]
    pub fn new(holidays: impl IntoIterator<Item = Date>) -> Self {
        Self { holidays: holidays.into_iter().collect() }
    }

    /// Whether `date` is a listed holiday.
    #[must_use]
    pub fn is_holiday(&self, date: Date) -> bool {
        self.holidays.contains(&date)
    }

    /// The tariff day type of `date`: holiday first, then Saturday/Sunday, else weekday.
    #[must_use]
    pub fn day_type(&self, date: Date) -> DayType {
        if self.is_holiday(date) {
            DayType::Holiday
        } else {
            match date.weekday() {
                Weekday::Saturday | Weekday::Sunday => DayType::Weekend,
                Weekday::Monday
                | Weekday::Tuesday
                | Weekday::Wednesday
                | Weekday::Thursday
                | Weekday::Friday => DayType::Weekday,
            }
        }
    }

    /// The listed holidays in order.
    pub fn holidays(&self) -> impl Iterator<Item = Date> + '_ {
        self.holidays.iter().copied()
    }
}

/// One priced window of a day, `[from, to)` in local wall-clock time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TouSlot {
    /// Start (inclusive).
    pub from: TimeOfDay,
    /// End (exclusive); `24:00` for the end of the day.
    pub to: TimeOfDay,
    /// Price inside the window.
    pub price: Price,
    /// Whether the window is a peak window (it counts for a peak-window demand charge).
    pub peak: bool,
}

/// The prices of one day type: a base price and non-overlapping windows that override it.
#[derive(Debug, Clone, PartialEq)]
pub struct DaySchedule {
    base: Price,
    slots: Vec<TouSlot>,
}

impl DaySchedule {
    /// A day schedule. Windows must have `from < to` and must not overlap (a window that
    /// crosses midnight is written as two windows, `22:00–24:00` and `00:00–06:00`: each
    /// belongs to its own date and so to that date's day type). Errors name the window as
    /// `slots[i]`.
    ///
    /// # Errors
    /// [`InvalidField`] naming `slots[i]` for an empty, overlapping or off-grid window, or a non-finite price.
    pub fn new(base: Price, mut slots: Vec<TouSlot>) -> Result<Self, InvalidField> {
        if !base.per_kwh().is_finite() {
            return Err(InvalidField::new("base_per_kwh", base.per_kwh(), "not a finite price"));
        }
        for (i, s) in slots.iter().enumerate() {
            if s.from >= s.to {
                return Err(InvalidField::new(
                    format!("slots[{i}]"),
                    format!("{}–{}", s.from, s.to),
                    "'from' must be before 'to' (split a window across midnight in two)",
                ));
            }
            if !s.price.per_kwh().is_finite() {
                return Err(InvalidField::new(
                    format!("slots[{i}].price_per_kwh"),
                    s.price.per_kwh(),
                    "not finite",
                ));
            }
        }
        let original = slots.clone();
        slots.sort_by_key(|s| s.from);
        for pair in slots.windows(2) {
            if let [a, b] = pair {
                if b.from < a.to {
                    let i = original.iter().position(|s| s == b).unwrap_or_default();
                    return Err(InvalidField::new(
                        format!("slots[{i}]"),
                        format!("{}–{}", b.from, b.to),
                        format!("overlaps the window {}–{}", a.from, a.to),
                    ));
                }
            }
        }
        Ok(Self { base, slots })
    }

    /// A whole day at one price.
    #[must_use]
    pub fn flat(price: Price) -> Self {
        Self { base: price, slots: Vec::new() }
    }

    /// The price where no window applies.
    #[must_use]
    pub fn base(&self) -> Price {
        self.base
    }

    /// The windows, sorted by start.
    #[must_use]
    pub fn slots(&self) -> &[TouSlot] {
        &self.slots
    }

    fn slot_at(&self, minute_of_day: u16) -> Option<&TouSlot> {
        self.slots.iter().find(|s| s.from.minutes() <= minute_of_day && minute_of_day < s.to.minutes())
    }

    /// The price at `minute_of_day` (0..1440) local time.
    #[must_use]
    pub fn price_at(&self, minute_of_day: u16) -> Price {
        self.slot_at(minute_of_day).map_or(self.base, |s| s.price)
    }

    /// Whether `minute_of_day` lies in a peak window.
    #[must_use]
    pub fn is_peak(&self, minute_of_day: u16) -> bool {
        self.slot_at(minute_of_day).is_some_and(|s| s.peak)
    }
}

/// Time-of-use prices: one [`DaySchedule`] per day type. Slots are looked up by local wall-clock
/// time, so a 17:00–21:00 peak is 17:00–21:00 local on daylight-saving days too.
#[derive(Debug, Clone, PartialEq)]
pub struct TouSchedule {
    weekday: DaySchedule,
    weekend: DaySchedule,
    holiday: Option<DaySchedule>,
}

impl TouSchedule {
    /// A schedule; without a holiday schedule, holidays use the weekend schedule.
    #[must_use]
    pub fn new(weekday: DaySchedule, weekend: DaySchedule, holiday: Option<DaySchedule>) -> Self {
        Self { weekday, weekend, holiday }
    }

    /// The schedule that applies on a day of this type.
    #[must_use]
    pub fn for_day(&self, day: DayType) -> &DaySchedule {
        match day {
            DayType::Weekday => &self.weekday,
            DayType::Weekend => &self.weekend,
            DayType::Holiday => self.holiday.as_ref().unwrap_or(&self.weekend),
        }
    }

    /// Whether any day type has a peak window.
    #[must_use]
    pub fn has_peak_windows(&self) -> bool {
        [Some(&self.weekday), Some(&self.weekend), self.holiday.as_ref()]
            .into_iter()
            .flatten()
            .any(|d| d.slots.iter().any(|s| s.peak))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(from: &str, to: &str, price: f64) -> TouSlot {
        TouSlot {
            from: TimeOfDay::parse(from).unwrap(),
            to: TimeOfDay::parse(to).unwrap(),
            price: Price::new(price),
            peak: true,
        }
    }

    #[test]
    fn times_of_day() {
        assert_eq!(TimeOfDay::parse("17:00").unwrap().minutes(), 1020);
        assert_eq!(TimeOfDay::parse("24:00").unwrap(), TimeOfDay::END_OF_DAY);
        assert!(TimeOfDay::parse("24:15").is_err());
        assert!(TimeOfDay::parse("17:10").is_err());
        assert!(TimeOfDay::parse("7").is_err());
        assert_eq!(TimeOfDay::parse("7:30").unwrap().to_string(), "07:30");
    }

    #[test]
    fn overlapping_and_inverted_windows_are_refused() {
        let e =
            DaySchedule::new(Price::new(0.2), vec![slot("17:00", "21:00", 0.4), slot("20:00", "22:00", 0.5)])
                .unwrap_err();
        assert_eq!(e.field, "slots[1]");
        let e = DaySchedule::new(Price::new(0.2), vec![slot("22:00", "06:00", 0.1)]).unwrap_err();
        assert_eq!(e.field, "slots[0]");
    }

    #[test]
    fn lookup() {
        let d =
            DaySchedule::new(Price::new(0.2), vec![slot("17:00", "21:00", 0.4), slot("00:00", "06:00", 0.1)])
                .unwrap();
        assert_eq!(d.price_at(0), Price::new(0.1));
        assert_eq!(d.price_at(6 * 60), Price::new(0.2));
        assert_eq!(d.price_at(17 * 60), Price::new(0.4));
        assert_eq!(d.price_at(21 * 60 - 1), Price::new(0.4));
        assert_eq!(d.price_at(21 * 60), Price::new(0.2));
    }
}
