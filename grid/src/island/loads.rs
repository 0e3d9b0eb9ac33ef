//! The switchable load circuits of the island bus, their priorities and the relay positions as
//! a bit set (a leaf module apart from the settings' error type).

use super::settings::{SettingValue, SettingsError};
use core::fmt;
use ems_core::Watts;
use heapless::Vec;

/// The most load circuits a site may have.
pub const MAX_LOADS: usize = 16;

/// One load circuit behind a relay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadCircuit {
    /// A short name for events (`"fridge"`, `"heat pump"`).
    pub name: &'static str,
    /// 0 = critical (restored first, shed last); larger = less important.
    pub priority: u8,
    /// The power the circuit may draw when energised (its planning value, used for headroom).
    pub nominal: Watts,
}

/// Which circuits are on (bit `i` = circuit `i` of the [`LoadTable`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct LoadMask(u16);

impl LoadMask {
    /// Every circuit off.
    pub const NONE: Self = Self(0);

    /// From raw bits.
    #[must_use]
    pub const fn from_bits(bits: u16) -> Self {
        Self(bits)
    }

    /// The raw bits.
    #[must_use]
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// Whether circuit `i` is on (false for `i ≥ 16`).
    #[must_use]
    pub fn contains(self, i: usize) -> bool {
        u32::try_from(i).ok().and_then(|s| 1_u16.checked_shl(s)).is_some_and(|b| self.0 & b != 0)
    }

    /// The same set with circuit `i` on or off (`i ≥ 16` changes nothing).
    #[must_use]
    pub fn with(self, i: usize, on: bool) -> Self {
        match u32::try_from(i).ok().and_then(|s| 1_u16.checked_shl(s)) {
            Some(b) if on => Self(self.0 | b),
            Some(b) => Self(self.0 & !b),
            None => self,
        }
    }

    /// Number of circuits on.
    #[must_use]
    pub const fn count(self) -> u32 {
        self.0.count_ones()
    }
}

impl fmt::Display for LoadMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#06x}", self.0)
    }
}

/// The load circuits, validated.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LoadTable {
    loads: Vec<LoadCircuit, MAX_LOADS>,
}

impl LoadTable {
    /// A table of `loads` (at most [`MAX_LOADS`], each nominal power ≥ 0).
    ///
    /// # Errors
    /// [`SettingsError`] for too many circuits (`loads`) or a negative nominal power
    /// (`loads[].nominal`).
    pub fn try_new(loads: &[LoadCircuit]) -> Result<Self, SettingsError> {
        let mut v = Vec::new();
        for l in loads {
            if l.nominal < Watts::ZERO {
                return Err(SettingsError::new(
                    "loads[].nominal",
                    SettingValue::Watts(l.nominal),
                    "must be >= 0 W",
                ));
            }
            v.push(*l).map_err(|_| {
                SettingsError::new("loads", SettingValue::Count(loads.len()), "at most 16 circuits")
            })?;
        }
        Ok(Self { loads: v })
    }

    /// The circuits in table order.
    #[must_use]
    pub fn circuits(&self) -> &[LoadCircuit] {
        &self.loads
    }

    /// Every circuit on.
    #[must_use]
    pub fn all(&self) -> LoadMask {
        (0..self.loads.len()).fold(LoadMask::NONE, |m, i| m.with(i, true))
    }

    /// The next circuit to restore: the off circuit of lowest priority number (first in table
    /// order among equals) that `eligible` accepts.
    #[must_use]
    pub fn next_to_restore(&self, on: LoadMask, eligible: impl Fn(&LoadCircuit) -> bool) -> Option<usize> {
        self.loads
            .iter()
            .enumerate()
            .filter(|(i, l)| !on.contains(*i) && eligible(l))
            .min_by_key(|(i, l)| (l.priority, *i))
            .map(|(i, _)| i)
    }

    /// The next circuit to shed: the on circuit of highest priority number (last in table order
    /// among equals), if any is `eligible`.
    #[must_use]
    pub fn next_to_shed(&self, on: LoadMask, eligible: impl Fn(&LoadCircuit) -> bool) -> Option<usize> {
        self.loads
            .iter()
            .enumerate()
            .filter(|(i, l)| on.contains(*i) && eligible(l))
            .max_by_key(|(i, l)| (l.priority, *i))
            .map(|(i, _)| i)
    }

    /// The planned power of the circuits in `on`.
    #[must_use]
    pub fn nominal_of(&self, on: LoadMask) -> Watts {
        self.loads
            .iter()
            .enumerate()
            .filter(|(i, _)| on.contains(*i))
            .fold(Watts::ZERO, |s, (_, l)| s + l.nominal)
    }

    /// Circuit `i`'s name (`"?"` outside the table).
    #[must_use]
    pub fn name(&self, i: usize) -> &'static str {
        self.loads.get(i).map_or("?", |l| l.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> LoadTable {
        LoadTable::try_new(&[
            LoadCircuit { name: "ev", priority: 3, nominal: ems_core::watts!(3000.0) },
            LoadCircuit { name: "fridge", priority: 0, nominal: ems_core::watts!(200.0) },
            LoadCircuit { name: "heat", priority: 1, nominal: ems_core::watts!(1500.0) },
            LoadCircuit { name: "lights", priority: 0, nominal: ems_core::watts!(100.0) },
        ])
        .unwrap()
    }

    #[test]
    fn restore_by_priority_then_table_order_and_shed_in_reverse() {
        let t = table();
        let mut on = LoadMask::NONE;
        let mut order = [0usize; 4];
        for slot in &mut order {
            let i = t.next_to_restore(on, |_| true).unwrap();
            *slot = i;
            on = on.with(i, true);
        }
        assert_eq!(order, [1, 3, 2, 0]);
        assert_eq!(on, t.all());
        assert_eq!(t.next_to_shed(on, |_| true), Some(0));
        assert_eq!(t.next_to_shed(on.with(0, false), |_| true), Some(2));
        assert_eq!(t.next_to_shed(on.with(0, false).with(2, false), |_| true), Some(3));
        assert!((t.nominal_of(on).get() - 4800.0).abs() < 0.1);
    }

    #[test]
    fn too_many_or_negative_circuits_are_refused() {
        let l = LoadCircuit { name: "x", priority: 0, nominal: ems_core::watts!(1.0) };
        assert!(LoadTable::try_new(&[l; 17]).is_err());
        let neg = LoadCircuit { nominal: ems_core::watts!(-1.0), ..l };
        assert_eq!(LoadTable::try_new(&[neg]).unwrap_err().field, "loads[].nominal");
        assert!(!LoadMask::NONE.with(20, true).contains(20));
    }
}
