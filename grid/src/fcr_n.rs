//! FCR-N: a linear response over 49.9–50.1 Hz around 50.0 Hz, ±100 % of the sold capacity C,
//! no deadband and no artificial delay, added on top of the baseline
//! ([`ems_control::GridAction::Add`]); with LER energy management (NEM, AEM) when the
//! reservoir is known.

use crate::continuity::Continuity;
use crate::error::ParamError;
use crate::ler::{EnergyManagement, EnergyView, LerConfig};
use crate::math;
use crate::params::{check_capacity, ParamSet};
use crate::status::{Activation, AemState, LerStatus, NemState, Response, ServiceKind, ServiceStatus};
use ems_control::{GridRequest, GridService, Reserve};
use ems_core::{Hertz, Millis, Snapshot, Watts};
use ems_safety::Envelope;

/// The FCR-N response as a share of C at `f` around `f_ref`: `(f_ref − f) / full_deviation`,
/// clamped to `−1..=1` (`+` = discharge, for a low frequency).
#[must_use]
pub fn fcr_n_share(f: Hertz, f_ref: Hertz, params: &ParamSet) -> f32 {
    let full = params.fcr_n_full_deviation.get();
    if !full.is_finite() || full <= 0.0 {
        return 0.0;
    }
    ((f_ref.get() - f.get()) / full).clamp(-1.0, 1.0)
}

/// An FCR-N service of capacity C.
#[derive(Debug, Clone)]
pub struct FcrN {
    capacity: Watts,
    params: ParamSet,
    ler: Option<LerConfig>,
    energy: EnergyManagement,
    clock: Continuity,
    response: Watts,
    delta: Watts,
    status: ServiceStatus,
}

impl FcrN {
    /// FCR-N of `capacity` under `params`, without a reservoir (no NEM/AEM, no endurance);
    /// add one with [`Self::with_ler`].
    ///
    /// # Errors
    /// [`ParamError`] for a capacity that is not > 0 W or an invalid parameter set.
    pub fn try_new(capacity: Watts, params: ParamSet) -> Result<Self, ParamError> {
        check_capacity("FCR-N", "capacity", capacity)?;
        params.validate()?;
        Ok(Self {
            capacity,
            params,
            ler: None,
            energy: EnergyManagement::new(&params),
            clock: Continuity::default(),
            response: Watts::ZERO,
            delta: Watts::ZERO,
            status: ServiceStatus::inactive(ServiceKind::FcrN),
        })
    }

    /// The same service managing `ler` (used when it runs alone as a [`GridService`]; inside
    /// [`crate::FrequencyServices`] the combined reservoir is used).
    #[must_use]
    pub fn with_ler(self, ler: LerConfig) -> Self {
        Self { ler: Some(ler), ..self }
    }

    /// The sold capacity C.
    #[must_use]
    pub const fn capacity(&self) -> Watts {
        self.capacity
    }

    /// The parameter set.
    #[must_use]
    pub const fn params(&self) -> &ParamSet {
        &self.params
    }

    /// The last status.
    #[must_use]
    pub const fn status(&self) -> ServiceStatus {
        self.status
    }

    /// The reservation: `(1 + NEM offset)·C` of power each way and `C · fcr_n_energy_time`
    /// of energy each way (issue #13: ±1.34·C and 1 h·C with the 2025 set).
    #[must_use]
    pub fn reserve(&self) -> Reserve {
        let power = self.capacity.scale(self.params.fcr_n_power_factor());
        let energy = math::energy_for(self.capacity, self.params.fcr_n_energy_time);
        Reserve { charge: power, discharge: power, energy_for_discharge: energy, energy_for_charge: energy }
    }

    /// The largest |Δ| this service can request: `(1 + NEM offset)·C`.
    #[must_use]
    pub fn max_delta(&self) -> Watts {
        self.capacity.scale(self.params.fcr_n_power_factor())
    }

    /// One call: `frequency` is the measured frequency if it is good now, `energy` the energy
    /// FCR-N may use each way (already without other services' reservations), `None` when the
    /// SOC is not good or no reservoir is configured.
    pub fn respond(&mut self, now: Millis, frequency: Option<Hertz>, energy: Option<EnergyView>) -> Response {
        let dt = if let Some(dt) = self.clock.tick(now, self.params.max_call_gap) {
            dt
        } else {
            self.energy.reset();
            self.response = Watts::ZERO;
            self.delta = Watts::ZERO;
            Millis::ZERO
        };
        let endurance = energy.map(|v| v.endurance(self.capacity));
        let Some(f) = frequency else {
            return self.lost(dt, endurance);
        };
        self.energy.record(now, self.response, dt);
        let decision = self.energy.update(now, f, endurance.unwrap_or((None, None)), &self.params);
        let mut response = self.capacity.scale(fcr_n_share(f, decision.f_ref, &self.params));
        // A reservoir that is empty in one direction (after the other services' reservations)
        // gives nothing more that way: FCR-N never spends FCR-D's energy.
        if let Some(v) = energy {
            if (response > Watts::ZERO && v.up <= ems_core::WattHours::ZERO)
                || (response < Watts::ZERO && v.down <= ems_core::WattHours::ZERO)
            {
                response = Watts::ZERO;
            }
        }
        let offset_size = self.capacity.scale(self.params.nem_offset.fraction());
        let offset = match (decision.aem, decision.nem) {
            (AemState::Off, NemState::Charging) => -offset_size,
            (AemState::Off, NemState::Discharging) => offset_size,
            (AemState::Off, NemState::Off) | (AemState::SavingUp | AemState::SavingDown, _) => Watts::ZERO,
        };
        self.response = response;
        self.delta = response + offset;
        let activation = if self.delta == Watts::ZERO { Activation::Armed } else { Activation::Active };
        let (endurance_up, endurance_down) = endurance.unwrap_or((None, None));
        self.status = ServiceStatus {
            kind: ServiceKind::FcrN,
            activation,
            delta: self.delta,
            frequency: Some(f),
            ler: LerStatus {
                endurance_up,
                endurance_down,
                nem: decision.nem,
                aem: decision.aem,
                nem_offset: offset,
                mean_response: self.energy.mean(),
                alert_state: decision.alert,
            },
        };
        Response { delta: self.delta, reserve: self.reserve(), status: self.status, engaged: true }
    }

    /// A lost frequency: fall back to zero at the stale rate, then disengage.
    fn lost(&mut self, dt: Millis, endurance: Option<(Option<Millis>, Option<Millis>)>) -> Response {
        self.energy.reset();
        let step = math::rate_step(self.params.stale_deactivation_rate, self.capacity, dt);
        self.delta = math::fall_to_zero(self.delta, step);
        self.response = Watts::ZERO;
        let (endurance_up, endurance_down) = endurance.unwrap_or((None, None));
        self.status = ServiceStatus {
            kind: ServiceKind::FcrN,
            activation: Activation::FrequencyLost,
            delta: self.delta,
            frequency: None,
            ler: LerStatus { endurance_up, endurance_down, ..LerStatus::default() },
        };
        Response {
            delta: self.delta,
            reserve: self.reserve(),
            status: self.status,
            engaged: self.delta != Watts::ZERO,
        }
    }
}

impl GridService for FcrN {
    fn name(&self) -> &'static str {
        ServiceKind::FcrN.name()
    }

    fn request(&mut self, now: Millis, snapshot: &Snapshot, _envelope: &Envelope) -> Option<GridRequest> {
        let energy = self.ler.and_then(|l| l.view(snapshot.battery.soc.value_at(now)));
        self.respond(now, snapshot.grid.frequency.value_at(now), energy).to_request()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hz(v: f32) -> Option<Hertz> {
        Some(Hertz::try_new(v).unwrap())
    }

    fn service() -> FcrN {
        FcrN::try_new(ems_core::watts!(1000.0), ParamSet::nordic_2025_v1_1()).unwrap()
    }

    #[test]
    fn linear_between_49_9_and_50_1_without_deadband() {
        let mut s = service();
        let mut t = 0;
        for (f, want) in [
            (50.0, 0.0),
            (49.9, 1000.0),
            (50.1, -1000.0),
            (49.95, 500.0),
            (50.001, -10.0),
            (49.0, 1000.0),
            (51.0, -1000.0),
        ] {
            t += 100;
            let r = s.respond(Millis::new(t), hz(f), None);
            assert!((r.delta.get() - want).abs() < 0.5, "f {f}: {} != {want}", r.delta);
        }
    }

    #[test]
    fn reserve_is_1_34_c_and_1_h_each_way() {
        let r = service().reserve();
        assert!((r.charge.get() - 1340.0).abs() < 1e-3 && (r.discharge.get() - 1340.0).abs() < 1e-3);
        assert!((r.energy_for_discharge.get() - 1000.0).abs() < 1e-2);
        assert!((r.energy_for_charge.get() - 1000.0).abs() < 1e-2);
        let old = FcrN::try_new(ems_core::watts!(1000.0), ParamSet::nordic_2023_v1_0()).unwrap();
        assert!((old.reserve().charge.get() - 1100.0).abs() < 1e-3);
        assert_eq!(FcrN::try_new(Watts::ZERO, ParamSet::default()).unwrap_err().field, "capacity");
    }

    #[test]
    fn empty_direction_gives_nothing_that_way() {
        let mut s = service();
        let empty_up = EnergyView { up: ems_core::WattHours::ZERO, down: ems_core::watt_hours!(5000.0) };
        let r = s.respond(Millis::new(0), hz(49.9), Some(empty_up));
        assert!(r.delta <= Watts::ZERO, "{}", r.delta);
        // Down-regulation still works, with the NEM charging offset on top (up energy is low).
        let r = s.respond(Millis::new(100), hz(50.1), Some(empty_up));
        assert!((r.delta.get() + 1340.0).abs() < 0.5, "{}", r.delta);
        assert_eq!(r.status.ler.nem, NemState::Charging);
    }
}
