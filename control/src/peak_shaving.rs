//! Peak shaving: keep grid import under a cap and export under an export cap.
//!
//! Every cycle the mode looks at the grid power the site would have with the battery idle
//! (`grid + battery`, design.md §4 signs) and the caps of the current time slot:
//!
//! | idle-battery grid flow | the battery | reason |
//! |---|---|---|
//! | above the import cap | discharges so that import = cap (it may use the SOC reserve: that is what the reserve is kept for) | [`ProposalReason::PeakShaving`] |
//! | export beyond the export cap | charges so that export = export cap (whatever the SOC target says; the envelope stops it at the SOC-high alarm) | [`ProposalReason::ExportCap`] |
//! | below `min(import cap, recharge_below)` and SOC below the target | recharges, only as much as keeps import ≤ `min(import cap, recharge_below)`, at most `max_recharge` | [`ProposalReason::Recharge`] |
//! | otherwise | idles | [`ProposalReason::WithinCaps`] / [`ProposalReason::SocTargetReached`] |
//!
//! **Demand-charge awareness.** `reserve_soc` is energy kept for the peaks: outside a peak the
//! mode itself never discharges at all, and a day-ahead plan executed on top of this mode (see
//! [`crate::arbitration`]) does not discharge below the reserve; only a peak may use it. The
//! battery recharges toward `target_soc` (≥ the reserve) whenever import is low enough, and
//! stops one percentage point of hysteresis later so it does not chatter at the target.
//!
//! **Time slots.** Up to [`MAX_CAP_SLOTS`] slots `(start_minute, import_cap, export_cap)` give
//! other caps by local time of day (e.g. a tighter import cap in the tariff's peak window). A
//! slot runs from its start to the next slot's start; the last slot wraps past midnight until
//! the first one. The shell supplies the local minute of day
//! ([`crate::Inputs::local_minute`], computed in the site's time zone so daylight-saving changes
//! shift nothing); while it is `None` (or out of range) the default caps apply.
//!
//! The grid is followed with the same feed-forward, filter and trim as self-consumption, so a
//! load step above the cap is shaved in the time the ramp allows, without overshoot.

use crate::proposal::{ModeError, Proposal, ProposalReason};
use crate::tracking::{Follow, GridTracker, Track, RESERVE_HYSTERESIS};
use core::fmt;
use ems_core::{Millis, Percent, Snapshot, Watts};

/// Capacity of [`CapSlots`].
pub const MAX_CAP_SLOTS: usize = 8;
/// Minutes in a day: a valid minute of day is `0..MINUTES_PER_DAY`.
pub const MINUTES_PER_DAY: u16 = 1440;

/// Caps from a local time of day on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CapSlot {
    /// Local minute of day the slot starts at (`0..1440`).
    pub start_minute: u16,
    /// Import cap (≥ 0).
    pub import_cap: Watts,
    /// Export cap, as a magnitude (≥ 0).
    pub export_cap: Watts,
}

impl CapSlot {
    const EMPTY: Self = Self { start_minute: 0, import_cap: Watts::ZERO, export_cap: Watts::ZERO };
}

/// The slot list is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("peak-shaving: field 'slots' holds at most {MAX_CAP_SLOTS} slots")]
pub struct CapSlotsFull;

/// Up to [`MAX_CAP_SLOTS`] cap slots, ordered by start minute. A fixed array rather than a
/// `heapless::Vec` so that the mode settings stay `Copy` (a `heapless::Vec` is not).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CapSlots {
    slots: [CapSlot; MAX_CAP_SLOTS],
    len: u8,
}

impl Default for CapSlots {
    fn default() -> Self {
        Self::new()
    }
}

impl CapSlots {
    /// No slots: the default caps apply all day.
    #[must_use]
    pub const fn new() -> Self {
        Self { slots: [CapSlot::EMPTY; MAX_CAP_SLOTS], len: 0 }
    }

    /// Slots from a slice (at most [`MAX_CAP_SLOTS`]). Order and values are checked by
    /// [`PeakShavingConfig::validate`].
    ///
    /// # Errors
    /// [`CapSlotsFull`] when more than [`MAX_CAP_SLOTS`] slots are given.
    pub fn from_slice(slots: &[CapSlot]) -> Result<Self, CapSlotsFull> {
        let mut s = Self::new();
        for slot in slots {
            s.try_push(*slot)?;
        }
        Ok(s)
    }

    /// Append a slot; a full list is an error, not a panic.
    ///
    /// # Errors
    /// [`CapSlotsFull`] when the list already holds [`MAX_CAP_SLOTS`] slots.
    pub fn try_push(&mut self, slot: CapSlot) -> Result<(), CapSlotsFull> {
        let i = usize::from(self.len);
        let cell = self.slots.get_mut(i).ok_or(CapSlotsFull)?;
        *cell = slot;
        self.len = self.len.saturating_add(1);
        Ok(())
    }

    /// The slots in order.
    #[must_use]
    pub fn as_slice(&self) -> &[CapSlot] {
        self.slots.get(..usize::from(self.len)).unwrap_or(&[])
    }

    /// Number of slots.
    #[must_use]
    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The slot in force at `minute` (local minute of day): the last one starting at or before
    /// it, or — before the first start — the last slot of the day (it runs past midnight).
    /// `None` without slots or for a minute outside `0..1440`.
    #[must_use]
    pub fn active(&self, minute: u16) -> Option<&CapSlot> {
        if minute >= MINUTES_PER_DAY {
            return None;
        }
        let slots = self.as_slice();
        slots.iter().rev().find(|s| s.start_minute <= minute).or_else(|| slots.last())
    }
}

/// Settings of peak-shaving mode.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeakShavingConfig {
    /// Import cap when no slot applies (≥ 0).
    pub import_cap: Watts,
    /// Export cap when no slot applies, as a magnitude (≥ 0).
    pub export_cap: Watts,
    /// Recharge only while import (battery idle) is below this; recharging never raises import
    /// above `min(import cap, recharge_below)`. May be negative: "recharge only from export".
    pub recharge_below: Watts,
    /// Largest recharge power (magnitude, ≥ 0); `None` = only the headroom and the envelope.
    /// Does not limit charging to hold the export cap.
    pub max_recharge: Option<Watts>,
    /// SOC kept for peaks: outside a peak nothing discharges below it (see the module docs).
    pub reserve_soc: Percent,
    /// Recharge toward this SOC (≥ `reserve_soc`).
    pub target_soc: Percent,
    /// Caps by local time of day.
    pub slots: CapSlots,
}

impl Default for PeakShavingConfig {
    /// Placeholders to be replaced per site: caps 10 kW each way, recharge below 5 kW import,
    /// reserve 30 %, target 90 %, no slots.
    fn default() -> Self {
        Self {
            import_cap: ems_core::watts!(10_000.0),
            export_cap: ems_core::watts!(10_000.0),
            recharge_below: ems_core::watts!(5_000.0),
            max_recharge: None,
            reserve_soc: ems_core::percent!(30.0),
            target_soc: ems_core::percent!(90.0),
            slots: CapSlots::new(),
        }
    }
}

impl PeakShavingConfig {
    /// Check the settings, naming the field and the value on failure.
    ///
    /// # Errors
    /// [`ModeError`] for a negative cap or power, a reserve above the target, or slots out of the day or out of order.
    pub fn validate(&self) -> Result<(), ModeError> {
        const MODE: &str = "peak-shaving";
        let magnitudes = [
            ("import_cap", Some(self.import_cap)),
            ("export_cap", Some(self.export_cap)),
            ("max_recharge", self.max_recharge),
        ];
        for (field, value) in magnitudes {
            if let Some(v) = value {
                if v < Watts::ZERO {
                    return Err(ModeError::NegativeLimit { mode: MODE, field, value: v });
                }
            }
        }
        if self.reserve_soc > self.target_soc {
            return Err(ModeError::ReserveAboveTarget { reserve: self.reserve_soc, target: self.target_soc });
        }
        let mut previous: Option<u16> = None;
        for (index, slot) in self.slots.as_slice().iter().enumerate() {
            if slot.start_minute >= MINUTES_PER_DAY {
                return Err(ModeError::SlotStart { index, value: slot.start_minute });
            }
            if let Some(p) = previous {
                if slot.start_minute <= p {
                    return Err(ModeError::SlotOrder { index, value: slot.start_minute, previous: p });
                }
            }
            previous = Some(slot.start_minute);
            for (field, value) in [("import_cap", slot.import_cap), ("export_cap", slot.export_cap)] {
                if value < Watts::ZERO {
                    return Err(ModeError::SlotLimit { index, field, value });
                }
            }
        }
        Ok(())
    }

    /// `(import cap, export cap)` in force at the local minute of day (`None` = unknown: the
    /// default caps).
    #[must_use]
    pub fn caps_at(&self, local_minute: Option<u16>) -> (Watts, Watts) {
        match local_minute.and_then(|m| self.slots.active(m)) {
            Some(slot) => (slot.import_cap, slot.export_cap),
            None => (self.import_cap, self.export_cap),
        }
    }
}

impl fmt::Display for PeakShavingConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "peak shaving (import <= {:.0}, export <= {:.0}", self.import_cap, self.export_cap)?;
        match self.slots.len() {
            0 => f.write_str(")"),
            n => write!(f, ", {n} time slots)"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Regime {
    Idle,
    Peak,
    Export,
    Recharge,
}

/// The running loop of peak shaving.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PeakShaving {
    tracker: GridTracker,
    target_reached: bool,
    regime: Regime,
}

impl Default for PeakShaving {
    fn default() -> Self {
        Self { tracker: GridTracker::default(), target_reached: false, regime: Regime::Idle }
    }
}

impl PeakShaving {
    /// One cycle; `follow` says what became of the previous proposal (anti-windup of the trim,
    /// see `tracking`).
    pub(crate) fn propose(
        &mut self,
        cfg: &PeakShavingConfig,
        local_minute: Option<u16>,
        now: Millis,
        dt: Millis,
        s: &Snapshot,
        follow: Follow,
    ) -> Proposal {
        let (Some(grid), Some(battery)) =
            (s.grid.active_power.value_at(now), s.inverter.active_power.value_at(now))
        else {
            self.tracker.reset();
            self.regime = Regime::Idle;
            return Proposal { setpoint: Watts::ZERO, reason: ProposalReason::SignalUnavailable };
        };
        match s.battery.soc.value_at(now) {
            Some(soc) if soc >= cfg.target_soc => self.target_reached = true,
            Some(soc) if soc.get() < cfg.target_soc.get() - RESERVE_HYSTERESIS => self.target_reached = false,
            Some(_) => {}
            // Without the SOC, do not recharge (peaks and the export cap do not need it).
            None => self.target_reached = true,
        }
        let (import_cap, export_cap) = cfg.caps_at(local_minute);
        let idle = grid + battery;
        let recharge_limit = import_cap.min(cfg.recharge_below);
        let max_recharge = cfg.max_recharge.unwrap_or(Watts::MAX);
        let export_charge = (-export_cap - idle).max(Watts::ZERO);
        let recharge_charge = if self.target_reached {
            Watts::ZERO
        } else {
            (recharge_limit - idle).max(Watts::ZERO).min(max_recharge)
        };
        let regime = if idle > import_cap {
            Regime::Peak
        } else if export_charge > Watts::ZERO && export_charge >= recharge_charge {
            Regime::Export
        } else if recharge_charge > Watts::ZERO {
            Regime::Recharge
        } else {
            Regime::Idle
        };
        if regime != self.regime {
            // The trim belongs to one target; a new regime starts without it.
            self.tracker.reset_trim();
            self.regime = regime;
        }
        let track = |target, lo, hi| Track { target, grid, battery, dt, lo, hi, follow };
        let (setpoint, reason) = match regime {
            Regime::Peak => (
                self.tracker.track(track(import_cap, Watts::ZERO, Watts::MAX)).0,
                ProposalReason::PeakShaving,
            ),
            Regime::Export => (
                self.tracker.track(track(-export_cap, -Watts::MAX, Watts::ZERO)).0,
                ProposalReason::ExportCap,
            ),
            Regime::Recharge => (
                self.tracker.track(track(recharge_limit, -max_recharge, Watts::ZERO)).0,
                ProposalReason::Recharge,
            ),
            Regime::Idle => {
                self.tracker.idle();
                let full = self.target_reached && idle < recharge_limit;
                let reason = if full { ProposalReason::SocTargetReached } else { ProposalReason::WithinCaps };
                (Watts::ZERO, reason)
            }
        };
        Proposal { setpoint, reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_support::snap;

    fn cfg() -> PeakShavingConfig {
        PeakShavingConfig {
            import_cap: ems_core::watts!(4000.0),
            export_cap: ems_core::watts!(3000.0),
            recharge_below: ems_core::watts!(2500.0),
            max_recharge: None,
            reserve_soc: ems_core::percent!(30.0),
            target_soc: ems_core::percent!(80.0),
            slots: CapSlots::new(),
        }
    }

    fn once(c: &PeakShavingConfig, minute: Option<u16>, s: &Snapshot) -> Proposal {
        PeakShaving::default().propose(c, minute, Millis::ZERO, Millis::new(100), s, Follow::Commanded)
    }

    #[test]
    fn discharges_the_part_above_the_import_cap() {
        // Import 6 kW with the battery idle: shave 2 kW.
        let p = once(&cfg(), None, &snap(50.0, 6000.0, 0.0));
        assert_eq!((p.setpoint, p.reason), (ems_core::watts!(2000.0), ProposalReason::PeakShaving));
        // Already discharging 1 kW, grid still 5 kW: the peak is 6 kW → 2 kW in total.
        assert_eq!(once(&cfg(), None, &snap(50.0, 5000.0, 1000.0)).setpoint, ems_core::watts!(2000.0));
    }

    #[test]
    fn a_peak_may_use_the_reserve_but_nothing_else_discharges() {
        // SOC below the reserve, peak: the reserve is for this.
        assert_eq!(once(&cfg(), None, &snap(10.0, 6000.0, 0.0)).setpoint, ems_core::watts!(2000.0));
        // Anything under the cap, any SOC: never a discharge.
        for soc in [10.0, 29.0, 50.0, 85.0, 100.0] {
            for grid in [-8000.0, -3000.0, 0.0, 2000.0, 3999.0, 4000.0] {
                let p = once(&cfg(), None, &snap(soc, grid, 0.0));
                assert!(p.setpoint <= Watts::ZERO, "soc {soc} grid {grid}: {}", p.setpoint);
            }
        }
    }

    #[test]
    fn absorbs_export_beyond_the_export_cap_even_at_target() {
        let p = once(&cfg(), None, &snap(95.0, -5000.0, 0.0));
        assert_eq!((p.setpoint, p.reason), (ems_core::watts!(-2000.0), ProposalReason::ExportCap));
    }

    #[test]
    fn recharges_only_within_the_headroom_and_toward_the_target() {
        // Import 1 kW, threshold 2.5 kW: recharge 1.5 kW so import stays ≤ 2.5 kW.
        let p = once(&cfg(), None, &snap(50.0, 1000.0, 0.0));
        assert_eq!((p.setpoint, p.reason), (ems_core::watts!(-1500.0), ProposalReason::Recharge));
        // Import 3 kW (above the threshold, below the cap): idle.
        let p = once(&cfg(), None, &snap(50.0, 3000.0, 0.0));
        assert_eq!((p.setpoint, p.reason), (Watts::ZERO, ProposalReason::WithinCaps));
        // With a recharge limit.
        let c = PeakShavingConfig { max_recharge: Some(ems_core::watts!(500.0)), ..cfg() };
        assert_eq!(once(&c, None, &snap(50.0, 1000.0, 0.0)).setpoint, ems_core::watts!(-500.0));
        // The threshold above the cap: the cap wins.
        let c = PeakShavingConfig { recharge_below: ems_core::watts!(9000.0), ..cfg() };
        assert_eq!(once(&c, None, &snap(50.0, 1000.0, 0.0)).setpoint, ems_core::watts!(-3000.0));
        // Target reached: idle, with hysteresis.
        let mut m = PeakShaving::default();
        let c = cfg();
        let p =
            m.propose(&c, None, Millis::ZERO, Millis::new(100), &snap(80.0, 1000.0, 0.0), Follow::Commanded);
        assert_eq!((p.setpoint, p.reason), (Watts::ZERO, ProposalReason::SocTargetReached));
        let p =
            m.propose(&c, None, Millis::ZERO, Millis::new(100), &snap(79.5, 1000.0, 0.0), Follow::Commanded);
        assert_eq!(p.setpoint, Watts::ZERO);
        let p =
            m.propose(&c, None, Millis::ZERO, Millis::new(100), &snap(78.9, 1000.0, 0.0), Follow::Commanded);
        assert!(p.setpoint < Watts::ZERO);
    }

    #[test]
    fn time_slots_select_the_caps_and_wrap_past_midnight() {
        let slots = CapSlots::from_slice(&[
            CapSlot {
                start_minute: 7 * 60,
                import_cap: ems_core::watts!(2000.0),
                export_cap: ems_core::watts!(1000.0),
            },
            CapSlot {
                start_minute: 22 * 60,
                import_cap: ems_core::watts!(8000.0),
                export_cap: ems_core::watts!(5000.0),
            },
        ])
        .unwrap();
        let c = PeakShavingConfig { slots, ..cfg() };
        assert!(c.validate().is_ok());
        assert_eq!(c.caps_at(None), (ems_core::watts!(4000.0), ems_core::watts!(3000.0)));
        assert_eq!(c.caps_at(Some(8 * 60)), (ems_core::watts!(2000.0), ems_core::watts!(1000.0)));
        assert_eq!(c.caps_at(Some(23 * 60)), (ems_core::watts!(8000.0), ems_core::watts!(5000.0)));
        assert_eq!(c.caps_at(Some(3 * 60)), (ems_core::watts!(8000.0), ems_core::watts!(5000.0)));
        assert_eq!(c.caps_at(Some(1440)), (ems_core::watts!(4000.0), ems_core::watts!(3000.0)));
        // 3 kW import at 08:00 is a peak (cap 2 kW); at 23:00 it is not.
        assert_eq!(once(&c, Some(8 * 60), &snap(50.0, 3000.0, 0.0)).setpoint, ems_core::watts!(1000.0));
        assert!(once(&c, Some(23 * 60), &snap(50.0, 3000.0, 0.0)).setpoint <= Watts::ZERO);
    }

    #[test]
    fn slot_list_is_bounded() {
        let slot = CapSlot { start_minute: 0, import_cap: Watts::ZERO, export_cap: Watts::ZERO };
        let mut s = CapSlots::new();
        for _ in 0..MAX_CAP_SLOTS {
            s.try_push(slot).unwrap();
        }
        assert_eq!(s.try_push(slot), Err(CapSlotsFull));
        assert_eq!(s.len(), MAX_CAP_SLOTS);
    }

    #[test]
    fn invalid_settings_name_the_field_and_value() {
        let c = PeakShavingConfig { import_cap: ems_core::watts!(-10.0), ..cfg() };
        assert!(c.validate().unwrap_err().to_string().contains("'import_cap' = -10"));
        let c = PeakShavingConfig { reserve_soc: ems_core::percent!(90.0), ..cfg() };
        assert!(c.validate().unwrap_err().to_string().contains("'reserve_soc'"));
        let bad =
            |slots: &[CapSlot]| PeakShavingConfig { slots: CapSlots::from_slice(slots).unwrap(), ..cfg() };
        let s = |m: u16, i: f32| CapSlot {
            start_minute: m,
            import_cap: Watts::saturating(i),
            export_cap: Watts::ZERO,
        };
        let e = bad(&[s(1440, 0.0)]).validate().unwrap_err().to_string();
        assert!(e.contains("slots[0].start_minute") && e.contains("1440"), "{e}");
        let e = bad(&[s(60, 0.0), s(60, 0.0)]).validate().unwrap_err().to_string();
        assert!(e.contains("slots[1].start_minute"), "{e}");
        let e = bad(&[s(60, -5.0)]).validate().unwrap_err().to_string();
        assert!(e.contains("slots[0].import_cap") && e.contains("-5"), "{e}");
    }

    #[test]
    fn lost_meter_proposes_zero() {
        let mut s = snap(50.0, 6000.0, 0.0);
        s.inverter.active_power.invalidate();
        assert_eq!(once(&cfg(), None, &s).reason, ProposalReason::SignalUnavailable);
    }
}
