//! A simulated EV and charger (feature `sim`).
//!
//! Physics: the vehicle draws `min(limit, on-board charger limit)` per phase on
//! `min(charger phases, vehicle phases)` phases, power = phases × 230 V × current, until its
//! battery is full; a limit below the charger's minimum current (6 A) stops charging. Time is
//! advanced by the caller ([`SimEvse::advance`]), so tests are deterministic.

use super::types::{DeciAmps, EvseCapabilities, EvseReading, EvseStatus, Phases, NOMINAL_PHASE_VOLTS};
use super::Evse;
use crate::traits::{DeviceError, ErrorKind};
use ems_core::{Amps, Millis, Percent, WattHours, Watts};

/// A simulated vehicle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimEv {
    /// Usable battery capacity.
    pub capacity: WattHours,
    /// State of charge.
    pub soc: Percent,
    /// The on-board charger's maximum current per phase.
    pub onboard_max: DeciAmps,
    /// Phases the on-board charger uses (1 or 3).
    pub onboard_phases: Phases,
    /// When the driver wants to leave (monotonic time), if known.
    pub departure: Option<Millis>,
}

/// A fault to inject into the simulated charger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SimEvseFault {
    /// A limit of 0 A (or below the minimum) is accepted and read back, but the vehicle keeps
    /// charging at the current it had (a known charger firmware fault).
    IgnoresZero,
    /// The charger reads back a limit but does not apply it (keeps the previous one).
    IgnoresLimit,
    /// The link is down: every read and write fails with a communication error.
    Offline,
}

/// The simulated charger's error (only from injected faults).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SimEvseError {
    /// The injected [`SimEvseFault::Offline`].
    #[error("simulated charger offline")]
    Offline,
    /// Phase switching requested on a charger without it.
    #[error("simulated charger cannot switch phases")]
    NoPhaseSwitching,
}

impl DeviceError for SimEvseError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Offline => ErrorKind::Comm,
            Self::NoPhaseSwitching => ErrorKind::Refused,
        }
    }
}

/// A simulated charger with an optional vehicle plugged in.
#[derive(Debug, Clone)]
pub struct SimEvse {
    caps: EvseCapabilities,
    ev: Option<SimEv>,
    enabled: bool,
    limit: DeciAmps,
    applied: DeciAmps,
    phases: Phases,
    drawn: DeciAmps,
    session: WattHours,
    fault: Option<SimEvseFault>,
}

impl SimEvse {
    /// A charger with these capabilities, no vehicle, enabled, limit 0 A, three phases.
    #[must_use]
    pub fn new(caps: EvseCapabilities) -> Self {
        Self {
            caps,
            ev: None,
            enabled: true,
            limit: DeciAmps::ZERO,
            applied: DeciAmps::ZERO,
            phases: Phases::Three,
            drawn: DeciAmps::ZERO,
            session: WattHours::ZERO,
            fault: None,
        }
    }

    /// Plug a vehicle in (a new session starts).
    pub fn plug(&mut self, ev: SimEv) {
        self.ev = Some(ev);
        self.session = WattHours::ZERO;
    }

    /// Unplug the vehicle; returns it with its final state of charge.
    pub fn unplug(&mut self) -> Option<SimEv> {
        self.drawn = DeciAmps::ZERO;
        self.session = WattHours::ZERO;
        self.ev.take()
    }

    /// The plugged vehicle.
    #[must_use]
    pub const fn ev(&self) -> Option<&SimEv> {
        self.ev.as_ref()
    }

    /// Inject a fault (`None` clears it).
    pub fn set_fault(&mut self, fault: Option<SimEvseFault>) {
        self.fault = fault;
    }

    fn active_phases(&self, ev: &SimEv) -> u8 {
        self.phases.count().min(ev.onboard_phases.count())
    }

    /// The current the vehicle would draw now per phase.
    fn target_current(&self) -> DeciAmps {
        let Some(ev) = self.ev.as_ref() else { return DeciAmps::ZERO };
        if ev.soc.get() >= 100.0 {
            return DeciAmps::ZERO;
        }
        // Disabling opens the charger's contactor: that stops even a faulty charger.
        if !self.enabled {
            return DeciAmps::ZERO;
        }
        if self.applied < self.caps.min_current {
            return if self.fault == Some(SimEvseFault::IgnoresZero) { self.drawn } else { DeciAmps::ZERO };
        }
        self.applied.min(ev.onboard_max).min(self.caps.max_current)
    }

    /// The power the vehicle draws now.
    #[must_use]
    pub fn power(&self) -> Watts {
        let Some(ev) = self.ev.as_ref() else { return Watts::ZERO };
        Watts::saturating(f32::from(self.active_phases(ev)) * NOMINAL_PHASE_VOLTS * self.drawn.as_f32())
    }

    /// Advance the physics by `dt`: apply the limit, draw power, integrate energy and SOC.
    pub fn advance(&mut self, dt: Millis) {
        self.drawn = self.target_current();
        let power = self.power();
        let energy = power.energy_over(dt);
        self.session += energy;
        if let Some(ev) = self.ev.as_mut() {
            let cap = ev.capacity.get();
            if cap > 0.0 {
                let soc = ev.soc.get() + energy.get() / cap * 100.0;
                ev.soc = Percent::saturating(soc);
            }
        }
    }

    fn status(&self) -> EvseStatus {
        match (&self.ev, self.drawn.is_zero()) {
            (None, _) => EvseStatus::Unplugged,
            (Some(_), true) => EvseStatus::Plugged,
            (Some(_), false) => EvseStatus::Charging,
        }
    }

    fn online(&self) -> Result<(), SimEvseError> {
        if self.fault == Some(SimEvseFault::Offline) {
            Err(SimEvseError::Offline)
        } else {
            Ok(())
        }
    }
}

impl Evse for SimEvse {
    type Error = SimEvseError;

    fn capabilities(&self) -> EvseCapabilities {
        self.caps
    }

    async fn read(&mut self) -> Result<EvseReading, SimEvseError> {
        self.online()?;
        let amps = self.drawn.as_amps();
        let n = self.ev.as_ref().map_or(0, |ev| self.active_phases(ev));
        let current = [
            if n >= 1 { amps } else { Amps::ZERO },
            if n >= 3 { amps } else { Amps::ZERO },
            if n >= 3 { amps } else { Amps::ZERO },
        ];
        Ok(EvseReading {
            status: self.status(),
            phases: self.phases,
            current,
            power: self.power(),
            session_energy: self.session,
            applied_limit: self.limit,
            enabled: self.enabled,
        })
    }

    async fn set_enabled(&mut self, enabled: bool) -> Result<(), SimEvseError> {
        self.online()?;
        self.enabled = enabled;
        Ok(())
    }

    async fn set_current_limit(&mut self, limit: DeciAmps) -> Result<(), SimEvseError> {
        self.online()?;
        self.limit = limit;
        if self.fault != Some(SimEvseFault::IgnoresLimit) {
            self.applied = limit;
        }
        Ok(())
    }

    async fn set_phases(&mut self, phases: Phases) -> Result<(), SimEvseError> {
        self.online()?;
        if !self.caps.phase_switching && phases != self.phases {
            return Err(SimEvseError::NoPhaseSwitching);
        }
        self.phases = phases;
        Ok(())
    }
}
