//! The grid-service seam: [`GridService`] is called inside [`crate::Controller::step_with`] with
//! this cycle's snapshot and envelope; implementations (FCR-N, FCR-D, FFR, droop) live in
//! `ems-grid`, above this crate (the seam's shape follows embedded-hal: the trait in the lower
//! crate, which calls it with what only it knows).
//!
//! A service answers with a [`GridRequest`]:
//!
//! * an [`GridAction`]: **replace** the set-point, **add** a Δ to the baseline that the sources
//!   below it (operator override, provider schedule, plan, mode) propose, or **idle** (hold the
//!   reserve, move nothing — a service armed at nominal frequency);
//! * a [`Reserve`]: charge and discharge headroom (W) and energy (Wh) kept for the service. The
//!   reserve narrows the envelope that every lower-priority source sees, so the baseline never
//!   spends what the service sold; the service itself sees the full envelope;
//! * its own ramp ([`GridRequest::ramp`]): while a service acts, the command obeys this ramp
//!   instead of the site's comfort ramp, and the command's [`crate::CommandClass::GridService`]
//!   tells the device wrapper to skip its deadband and flash-write budget.
//!
//! What a service can never do: leave the envelope or the device rating (the final clamp and
//! the wrapper still bound it), act outside RUNNING (it is not called then), or delay the
//! emergency path (the E-stop is handled before it).
//!
//! The trait is `no_std` and allocation-free: implementations keep their state in fixed-size
//! fields and must not block.

use crate::ramp::RampRate;
use core::fmt;
use ems_core::{Millis, Percent, Snapshot, WattHours, Watts};
use ems_safety::Envelope;

/// What a grid service does with the set-point this cycle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GridAction {
    /// Hold the reserve, change nothing.
    Idle,
    /// The set-point is this value (`+` discharge / `−` charge), whatever the sources below say.
    Replace(Watts),
    /// Add this Δ to the baseline proposed by the sources below (a droop or FCR response on top
    /// of the energy-management schedule).
    Add(Watts),
}

/// Headroom and energy a service keeps for itself. All values are magnitudes (≥ 0; a negative
/// value counts as zero).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Reserve {
    /// Charge power the sources below may not use.
    pub charge: Watts,
    /// Discharge power the sources below may not use.
    pub discharge: Watts,
    /// Energy kept in the battery for discharging (up-regulation): below it, the sources below
    /// may not discharge.
    pub energy_for_discharge: WattHours,
    /// Room kept in the battery for charging (down-regulation): above `capacity − this`, the
    /// sources below may not charge.
    pub energy_for_charge: WattHours,
}

impl Reserve {
    /// No reserve.
    pub const NONE: Self = Self {
        charge: Watts::ZERO,
        discharge: Watts::ZERO,
        energy_for_discharge: WattHours::ZERO,
        energy_for_charge: WattHours::ZERO,
    };

    /// Whether anything is reserved.
    #[must_use]
    pub fn any(&self) -> bool {
        *self != Self::NONE
    }

    /// The envelope the sources below the service see: `envelope` narrowed by this reserve.
    /// An energy reserve needs the battery's usable `capacity` and a good SOC; without either,
    /// the whole direction is kept for the service (the conservative reading).
    #[must_use]
    pub fn narrow(&self, envelope: &Envelope, capacity: Option<WattHours>, soc: Option<Percent>) -> Envelope {
        let mut e = envelope.clone();
        let reason = ems_core::event::Constraint::GridServiceReserve;
        if self.charge.abs() > Watts::ZERO {
            e.limit_charge((envelope.max_charge() - self.charge.abs()).max(Watts::ZERO), reason);
        }
        if self.discharge.abs() > Watts::ZERO {
            e.limit_discharge((envelope.max_discharge() - self.discharge.abs()).max(Watts::ZERO), reason);
        }
        let stored = match (capacity, soc) {
            (Some(c), Some(s)) if c > WattHours::ZERO => Some((c, c.scale(s.fraction()))),
            _ => None,
        };
        if self.energy_for_discharge.abs() > WattHours::ZERO {
            match stored {
                Some((_, now)) if now > self.energy_for_discharge.abs() => {}
                _ => e.limit_discharge(Watts::ZERO, reason),
            }
        }
        if self.energy_for_charge.abs() > WattHours::ZERO {
            match stored {
                Some((c, now)) if c - now > self.energy_for_charge.abs() => {}
                _ => e.limit_charge(Watts::ZERO, reason),
            }
        }
        e
    }
}

/// A grid service's answer for one cycle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GridRequest {
    /// Replace, add or idle.
    pub action: GridAction,
    /// Headroom and energy kept from the sources below.
    pub reserve: Reserve,
    /// The ramp of the service's response; `None`: as fast as the device allows (a fast
    /// frequency response). Applies to the whole command while the service acts.
    pub ramp: Option<RampRate>,
}

impl GridRequest {
    /// Whether the request moves the set-point (anything but [`GridAction::Idle`], and an
    /// [`GridAction::Add`] of exactly zero counts as idle).
    #[must_use]
    pub fn acts(&self) -> bool {
        match self.action {
            GridAction::Idle => false,
            GridAction::Add(d) => d != Watts::ZERO,
            GridAction::Replace(_) => true,
        }
    }
}

/// A grid service, called once per [`crate::Controller::step_with`] while RUNNING, after the
/// safety envelope and before arbitration. Outside RUNNING it is not called; an implementation
/// sees the gap in `now` and must treat itself as not delivering.
pub trait GridService {
    /// A short name for reasons and audit (`"FCR-N"`, `"FFR"`).
    fn name(&self) -> &'static str;

    /// This cycle's request, or `None` when the service is not active (not sold, disabled, or
    /// its measurement is stale — a stale frequency must deactivate, never freeze).
    fn request(&mut self, now: Millis, snapshot: &Snapshot, envelope: &Envelope) -> Option<GridRequest>;
}

/// No grid service: what [`crate::Controller::step`] uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoGridService;

impl GridService for NoGridService {
    fn name(&self) -> &'static str {
        "none"
    }

    fn request(&mut self, _now: Millis, _snapshot: &Snapshot, _envelope: &Envelope) -> Option<GridRequest> {
        None
    }
}

/// A fixed request, every cycle: for tests, fuzzing and the simulator's scripted scenarios.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FixedRequest {
    /// The name reported.
    pub name: &'static str,
    /// The request returned every cycle (`None`: inactive).
    pub request: Option<GridRequest>,
}

impl GridService for FixedRequest {
    fn name(&self) -> &'static str {
        self.name
    }

    fn request(&mut self, _now: Millis, _snapshot: &Snapshot, _envelope: &Envelope) -> Option<GridRequest> {
        self.request
    }
}

impl fmt::Display for GridAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Idle => f.write_str("idle"),
            Self::Replace(w) => write!(f, "replace {w:+.0}"),
            Self::Add(w) => write!(f, "add {w:+.0}"),
        }
    }
}
