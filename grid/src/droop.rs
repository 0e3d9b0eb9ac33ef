//! Grid-code frequency droop: LFSM-O / LFSM-U (EN 50549-1, VDE-AR-N 4105) and the IEEE
//! 1547-2018 frequency-droop for 60 Hz sites. The Δ is added on top of the baseline, so a
//! storage that discharges turns to charging when the over-frequency asks for more than its
//! discharge (the final clamp and the envelope still bound the result).

use crate::continuity::Continuity;
use crate::error::ParamError;
use crate::math;
use crate::params::{DroopParams, PowerReference};
use crate::status::{Activation, LerStatus, Response, ServiceKind, ServiceStatus};
use ems_control::{GridRequest, GridService, Reserve};
use ems_core::{Hertz, Millis, Percent, Snapshot, Watts};
use ems_safety::Envelope;

/// The largest |Δ| of a droop, as a multiple of P_ref: from full discharge to full charge.
pub const DROOP_MAX_DELTA_FACTOR: f32 = 2.0;

/// **Assumption:** a lost frequency takes the droop response back to zero at 20 % of P_ref per
/// second (as the FCR parameter sets do).
const STALE_RATE: Percent = ems_core::percent!(20.0);
/// **Assumption:** a call gap over 2 s restarts the droop from zero.
const MAX_CALL_GAP: Millis = Millis::from_secs(2);

/// The droop Δ at `f` for `p_ref` (`+` discharge), bounded to ±2·P_ref.
#[must_use]
pub fn droop_delta(params: &DroopParams, f: Hertz, p_ref: Watts) -> Watts {
    let per_hz = 1.0 / (params.nominal.get() * params.droop.fraction());
    let share = match (params.over_start, params.under_start) {
        (Some(o), _) if f > o => -(f.get() - o.get()) * per_hz,
        (_, Some(u)) if f < u => (u.get() - f.get()) * per_hz,
        _ => 0.0,
    };
    let share =
        if share.is_finite() { share.clamp(-DROOP_MAX_DELTA_FACTOR, DROOP_MAX_DELTA_FACTOR) } else { 0.0 };
    p_ref.abs().scale(share)
}

/// A droop service (no reservation: it is a grid-code obligation inside the available power,
/// not a sold capacity).
#[derive(Debug, Clone, PartialEq)]
pub struct Droop {
    params: DroopParams,
    clock: Continuity,
    delta: Watts,
    status: ServiceStatus,
}

impl Droop {
    /// A droop with `params`.
    ///
    /// # Errors
    /// [`ParamError`] when the characteristic is invalid (droop outside 2–12 %, …).
    pub fn try_new(params: DroopParams) -> Result<Self, ParamError> {
        params.validate()?;
        Ok(Self {
            params,
            clock: Continuity::default(),
            delta: Watts::ZERO,
            status: ServiceStatus::inactive(ServiceKind::Droop),
        })
    }

    /// The characteristic.
    #[must_use]
    pub const fn params(&self) -> &DroopParams {
        &self.params
    }

    /// The last status.
    #[must_use]
    pub const fn status(&self) -> ServiceStatus {
        self.status
    }

    /// P_ref for a site whose inverter is rated `rated`.
    #[must_use]
    pub fn reference(&self, rated: Watts) -> Watts {
        match self.params.reference {
            PowerReference::InverterRating => rated.abs(),
            PowerReference::Fixed(p) => p.abs(),
        }
    }

    /// One call: `frequency` if good now, `p_ref` from [`Self::reference`].
    pub fn respond(&mut self, now: Millis, frequency: Option<Hertz>, p_ref: Watts) -> Response {
        let dt = if let Some(dt) = self.clock.tick(now, MAX_CALL_GAP) {
            dt
        } else {
            self.delta = Watts::ZERO;
            Millis::ZERO
        };
        let (activation, engaged) = match frequency {
            Some(f) => {
                self.delta = droop_delta(&self.params, f, p_ref);
                (if self.delta == Watts::ZERO { Activation::Armed } else { Activation::Active }, true)
            }
            None => {
                self.delta = math::fall_to_zero(self.delta, math::rate_step(STALE_RATE, p_ref, dt));
                (Activation::FrequencyLost, self.delta != Watts::ZERO)
            }
        };
        self.status = ServiceStatus {
            kind: ServiceKind::Droop,
            activation,
            delta: self.delta,
            frequency,
            ler: LerStatus::default(),
        };
        Response { delta: self.delta, reserve: Reserve::NONE, status: self.status, engaged }
    }
}

impl GridService for Droop {
    fn name(&self) -> &'static str {
        self.params.name
    }

    fn request(&mut self, now: Millis, snapshot: &Snapshot, _envelope: &Envelope) -> Option<GridRequest> {
        let p_ref = self.reference(snapshot.inverter.rated_power);
        self.respond(now, snapshot.grid.frequency.value_at(now), p_ref).to_request()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hz(v: f32) -> Hertz {
        Hertz::try_new(v).unwrap()
    }

    #[test]
    fn lfsm_o_and_u_corner_points() {
        let p_ref = ems_core::watts!(10_000.0);
        let o = DroopParams::lfsm_o();
        assert_eq!(droop_delta(&o, hz(50.2), p_ref), Watts::ZERO);
        assert_eq!(droop_delta(&o, hz(49.0), p_ref), Watts::ZERO, "LFSM-O alone ignores low f");
        // 5 % droop at 50 Hz: 40 % of P_ref per Hz.
        assert!((droop_delta(&o, hz(50.7), p_ref).get() + 2000.0).abs() < 1.0);
        assert!((droop_delta(&o, hz(52.7), p_ref).get() + 10_000.0).abs() < 1.0);
        assert!((droop_delta(&o, hz(60.0), p_ref).get() + 20_000.0).abs() < 1.0, "bounded to 2·P_ref");
        let u = DroopParams::lfsm_u();
        assert_eq!(droop_delta(&u, hz(49.8), p_ref), Watts::ZERO);
        assert!((droop_delta(&u, hz(49.3), p_ref).get() - 2000.0).abs() < 1.0);
        let steep = DroopParams::lfsm_o().with_droop(ems_core::percent!(2.0)).unwrap();
        assert!((droop_delta(&steep, hz(50.7), p_ref).get() + 5000.0).abs() < 1.0);
    }

    #[test]
    fn ieee_1547_deadband_and_slope() {
        let p = DroopParams::ieee1547_60hz();
        let p_ref = ems_core::watts!(6000.0);
        assert_eq!(droop_delta(&p, hz(60.03), p_ref), Watts::ZERO);
        assert_eq!(droop_delta(&p, hz(59.97), p_ref), Watts::ZERO);
        // k 5 % at 60 Hz: 1/3 of P_ref per Hz beyond the 36 mHz deadband.
        assert!((droop_delta(&p, hz(60.336), p_ref).get() + 600.0).abs() < 1.0);
        assert!((droop_delta(&p, hz(59.664), p_ref).get() - 600.0).abs() < 1.0);
    }

    #[test]
    fn storage_turns_from_discharge_to_charge() {
        // Baseline discharging 3 kW; at 51.5 Hz LFSM-O asks −5.2 kW: the sum charges.
        let mut d = Droop::try_new(DroopParams::lfsm_o()).unwrap();
        let r = d.respond(Millis::new(0), Some(hz(51.5)), ems_core::watts!(10_000.0));
        let command = ems_core::watts!(3000.0) + r.delta;
        assert!(command < Watts::ZERO, "{command}");
    }
}
