//! The safety envelope: how much the battery may charge and discharge right now, and why.
//!
//! An [`Envelope`] starts at the inverter rating and is only ever *narrowed*
//! ([`Envelope::limit_charge`], [`Envelope::limit_discharge`], [`Envelope::forbid_contactor_close`]),
//! so adding a constraint can never widen it (design.md §6: the envelope is monotone). Each
//! direction keeps the constraints that bound it: the one that set the current limit first,
//! followed by any others at the same or a lower value.

use ems_core::event::Constraint;
use ems_core::{TripReason, Watts};

/// How many reasons each direction keeps.
pub const MAX_REASONS: usize = 8;
/// How many trip conditions one evaluation reports.
pub const MAX_TRIPS: usize = 8;

/// The constraints that bound one direction, most recent binding constraint last.
pub type Reasons = heapless::Vec<Constraint, MAX_REASONS>;

/// Allowed battery power for one snapshot.
///
/// Limits are magnitudes (≥ 0): the battery set-point `p` (`+` discharge / `−` charge) is
/// allowed iff `-max_charge ≤ p ≤ max_discharge`.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    max_charge: Watts,
    max_discharge: Watts,
    charge_reasons: Reasons,
    discharge_reasons: Reasons,
    contactor_close_allowed: bool,
    contactor_reasons: Reasons,
    trips: heapless::Vec<TripReason, MAX_TRIPS>,
}

impl Envelope {
    /// The widest envelope: `rating` in both directions (negative ratings count as zero).
    #[must_use]
    pub fn new(rating: Watts) -> Self {
        let r = rating.max(Watts::ZERO);
        let mut e = Self {
            max_charge: r,
            max_discharge: r,
            charge_reasons: Reasons::new(),
            discharge_reasons: Reasons::new(),
            contactor_close_allowed: true,
            contactor_reasons: Reasons::new(),
            trips: heapless::Vec::new(),
        };
        e.limit_charge(r, Constraint::InverterRating);
        e.limit_discharge(r, Constraint::InverterRating);
        e
    }

    /// An envelope that allows nothing, for one reason.
    #[must_use]
    pub fn zero(reason: Constraint) -> Self {
        let mut e = Self::new(Watts::ZERO);
        e.charge_reasons.clear();
        e.discharge_reasons.clear();
        e.limit_both(Watts::ZERO, reason);
        e.forbid_contactor_close(reason);
        e
    }

    /// Allowed charge power (magnitude).
    #[must_use]
    pub const fn max_charge(&self) -> Watts {
        self.max_charge
    }

    /// Allowed discharge power (magnitude).
    #[must_use]
    pub const fn max_discharge(&self) -> Watts {
        self.max_discharge
    }

    /// Constraints bounding charge power, the binding one last.
    #[must_use]
    pub fn charge_reasons(&self) -> &[Constraint] {
        &self.charge_reasons
    }

    /// Constraints bounding discharge power, the binding one last.
    #[must_use]
    pub fn discharge_reasons(&self) -> &[Constraint] {
        &self.discharge_reasons
    }

    /// The constraint that sets the charge limit.
    #[must_use]
    pub fn charge_binding(&self) -> Option<Constraint> {
        self.charge_reasons.last().copied()
    }

    /// The constraint that sets the discharge limit.
    #[must_use]
    pub fn discharge_binding(&self) -> Option<Constraint> {
        self.discharge_reasons.last().copied()
    }

    /// Whether the main contactor may be closed.
    #[must_use]
    pub const fn contactor_close_allowed(&self) -> bool {
        self.contactor_close_allowed
    }

    /// Why the contactor may not be closed.
    #[must_use]
    pub fn contactor_reasons(&self) -> &[Constraint] {
        &self.contactor_reasons
    }

    /// Trip conditions found in this evaluation (the controller latches them).
    #[must_use]
    pub fn trips(&self) -> &[TripReason] {
        &self.trips
    }

    /// Narrow the charge limit to `limit` (magnitude; negatives count as zero) because of
    /// `reason`. Never widens.
    pub fn limit_charge(&mut self, limit: Watts, reason: Constraint) {
        narrow(&mut self.max_charge, &mut self.charge_reasons, limit, reason);
    }

    /// Narrow the discharge limit.
    pub fn limit_discharge(&mut self, limit: Watts, reason: Constraint) {
        narrow(&mut self.max_discharge, &mut self.discharge_reasons, limit, reason);
    }

    /// Narrow both directions.
    pub fn limit_both(&mut self, limit: Watts, reason: Constraint) {
        self.limit_charge(limit, reason);
        self.limit_discharge(limit, reason);
    }

    /// Forbid closing the main contactor.
    pub fn forbid_contactor_close(&mut self, reason: Constraint) {
        self.contactor_close_allowed = false;
        push_reason(&mut self.contactor_reasons, reason);
    }

    /// Record a trip condition (duplicates are ignored; overflow keeps the first ones).
    pub fn add_trip(&mut self, reason: TripReason) {
        if !self.trips.contains(&reason) {
            let _ = self.trips.push(reason);
        }
    }

    /// Intersect with another envelope (monotone: the result is inside both).
    pub fn intersect(&mut self, other: &Self) {
        for r in other.charge_reasons.iter() {
            self.limit_charge(other.max_charge, *r);
        }
        if other.charge_reasons.is_empty() {
            self.limit_charge(other.max_charge, Constraint::InverterRating);
        }
        for r in other.discharge_reasons.iter() {
            self.limit_discharge(other.max_discharge, *r);
        }
        if other.discharge_reasons.is_empty() {
            self.limit_discharge(other.max_discharge, Constraint::InverterRating);
        }
        if !other.contactor_close_allowed {
            for r in other.contactor_reasons.iter() {
                self.forbid_contactor_close(*r);
            }
        }
        for t in other.trips.iter() {
            self.add_trip(*t);
        }
    }

    /// Clamp a battery set-point into the envelope; returns the clamped value and, if it
    /// changed, the binding constraint.
    #[must_use]
    pub fn clamp(&self, setpoint: Watts) -> (Watts, Option<Constraint>) {
        if setpoint > self.max_discharge {
            (self.max_discharge, self.discharge_binding())
        } else if setpoint < -self.max_charge {
            (-self.max_charge, self.charge_binding())
        } else {
            (setpoint, None)
        }
    }

    /// Whether `setpoint` lies inside the envelope.
    #[must_use]
    pub fn contains(&self, setpoint: Watts) -> bool {
        setpoint <= self.max_discharge && setpoint >= -self.max_charge
    }
}

fn narrow(current: &mut Watts, reasons: &mut Reasons, limit: Watts, reason: Constraint) {
    let limit = limit.max(Watts::ZERO);
    if limit < *current {
        *current = limit;
        // The new binding constraint goes last; keep older ones for the explanation.
        push_reason(reasons, reason);
    } else if limit == *current && !reasons.contains(&reason) {
        // Equally binding: record it before the current binding one so `last()` stays stable.
        if reasons.is_full() {
            return;
        }
        let at = reasons.len().saturating_sub(1);
        let _ = reasons.insert(at, reason);
    }
}

fn push_reason(reasons: &mut Reasons, reason: Constraint) {
    if let Some(pos) = reasons.iter().position(|r| *r == reason) {
        reasons.remove(pos);
    }
    if reasons.is_full() {
        reasons.remove(0);
    }
    let _ = reasons.push(reason);
}

#[cfg(test)]
mod tests {
    use super::*;
    use ems_core::Quantity;

    #[test]
    fn narrowing_only_shrinks_and_records_the_binding_reason() {
        let mut e = Envelope::new(ems_core::watts!(5000.0));
        e.limit_charge(ems_core::watts!(3000.0), Constraint::BmsLimit);
        e.limit_charge(ems_core::watts!(4000.0), Constraint::GridImportLimit);
        assert_eq!(e.max_charge(), ems_core::watts!(3000.0));
        assert_eq!(e.charge_binding(), Some(Constraint::BmsLimit));
        e.limit_charge(ems_core::watts!(-10.0), Constraint::Derating(Quantity::CellTempLow));
        assert_eq!(e.max_charge(), Watts::ZERO);
        assert_eq!(e.charge_binding(), Some(Constraint::Derating(Quantity::CellTempLow)));
        assert_eq!(e.max_discharge(), ems_core::watts!(5000.0));
    }

    #[test]
    fn clamp_names_the_binding_constraint() {
        let mut e = Envelope::new(ems_core::watts!(5000.0));
        e.limit_discharge(ems_core::watts!(1000.0), Constraint::Limit(Quantity::SocLow));
        assert_eq!(
            e.clamp(ems_core::watts!(2000.0)),
            (ems_core::watts!(1000.0), Some(Constraint::Limit(Quantity::SocLow)))
        );
        assert_eq!(
            e.clamp(ems_core::watts!(-6000.0)),
            (ems_core::watts!(-5000.0), Some(Constraint::InverterRating))
        );
        assert_eq!(e.clamp(ems_core::watts!(500.0)), (ems_core::watts!(500.0), None));
    }

    #[test]
    fn zero_envelope_allows_nothing() {
        let e = Envelope::zero(Constraint::EmergencyStop);
        assert!(e.contains(Watts::ZERO));
        assert!(!e.contains(ems_core::watts!(1.0)));
        assert!(!e.contains(ems_core::watts!(-1.0)));
        assert!(!e.contactor_close_allowed());
    }

    proptest::proptest! {
        #[test]
        fn envelope_is_monotone(ops in proptest::collection::vec((0u8..3, -1.0e5f32..1.0e5), 0..20)) {
            let mut e = Envelope::new(ems_core::watts!(10_000.0));
            for (dir, w) in ops {
                let (c, d) = (e.max_charge(), e.max_discharge());
                match dir {
                    0 => e.limit_charge(Watts::saturating(w), Constraint::BmsLimit),
                    1 => e.limit_discharge(Watts::saturating(w), Constraint::BmsLimit),
                    _ => e.limit_both(Watts::saturating(w), Constraint::Ramp),
                }
                proptest::prop_assert!(e.max_charge() <= c && e.max_discharge() <= d);
                proptest::prop_assert!(e.max_charge() >= Watts::ZERO && e.max_discharge() >= Watts::ZERO);
            }
        }
    }
}
