//! The set of frequency services a site has sold, run as ONE [`GridService`]: each service
//! answers, the Δs are summed, and the reservations are summed too (the services may be
//! activated at once, so each keeps its own headroom and energy: the union of obligations).
//!
//! The reservoir is shared: FCR-N sees the site's energy *without* what FCR-D and FFR keep
//! (FCR-N never uses FCR-D's), FCR-D and FFR see all of it.

use crate::droop::Droop;
use crate::fcr_d::FcrD;
use crate::fcr_n::FcrN;
use crate::ffr::Ffr;
use crate::ler::LerConfig;
use crate::status::ServiceStatus;
use ems_control::{GridAction, GridRequest, GridService, Reserve};
use ems_core::{Hertz, Millis, Percent, Snapshot, Watts};
use ems_safety::Envelope;

/// Every service's last status and the combined answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServicesStatus {
    /// FCR-N, if sold.
    pub fcr_n: Option<ServiceStatus>,
    /// FCR-D up, if sold.
    pub fcr_d_up: Option<ServiceStatus>,
    /// FCR-D down, if sold.
    pub fcr_d_down: Option<ServiceStatus>,
    /// FFR, if sold.
    pub ffr: Option<ServiceStatus>,
    /// The grid-code droop, if configured.
    pub droop: Option<ServiceStatus>,
    /// The summed Δ (`+` discharge).
    pub delta: Watts,
    /// The summed reservation of the engaged services.
    pub reserve: Reserve,
    /// Whether any service is engaged (`false`: the set returns `None`).
    pub engaged: bool,
}

/// The sum of two reservations (magnitudes).
#[must_use]
pub fn add_reserves(a: Reserve, b: Reserve) -> Reserve {
    Reserve {
        charge: a.charge.abs() + b.charge.abs(),
        discharge: a.discharge.abs() + b.discharge.abs(),
        energy_for_discharge: a.energy_for_discharge.abs() + b.energy_for_discharge.abs(),
        energy_for_charge: a.energy_for_charge.abs() + b.energy_for_charge.abs(),
    }
}

/// The services of one site as one [`GridService`].
#[derive(Debug, Clone)]
pub struct FrequencyServices {
    fcr_n: Option<FcrN>,
    fcr_d_up: Option<FcrD>,
    fcr_d_down: Option<FcrD>,
    ffr: Option<Ffr>,
    droop: Option<Droop>,
    ler: Option<LerConfig>,
    status: ServicesStatus,
}

impl FrequencyServices {
    /// No service yet, sharing the reservoir `ler` (`None`: no energy management, no
    /// endurance).
    #[must_use]
    pub const fn new(ler: Option<LerConfig>) -> Self {
        Self {
            fcr_n: None,
            fcr_d_up: None,
            fcr_d_down: None,
            ffr: None,
            droop: None,
            ler,
            status: ServicesStatus {
                fcr_n: None,
                fcr_d_up: None,
                fcr_d_down: None,
                ffr: None,
                droop: None,
                delta: Watts::ZERO,
                reserve: Reserve::NONE,
                engaged: false,
            },
        }
    }

    /// With FCR-N.
    #[must_use]
    pub fn with_fcr_n(self, service: FcrN) -> Self {
        Self { fcr_n: Some(service), ..self }
    }

    /// With FCR-D (up or down, by its direction; a second one of the same direction replaces
    /// the first).
    #[must_use]
    pub fn with_fcr_d(self, service: FcrD) -> Self {
        match service.direction() {
            crate::fcr_d::FcrDDirection::Up => Self { fcr_d_up: Some(service), ..self },
            crate::fcr_d::FcrDDirection::Down => Self { fcr_d_down: Some(service), ..self },
        }
    }

    /// With FFR.
    #[must_use]
    pub fn with_ffr(self, service: Ffr) -> Self {
        Self { ffr: Some(service), ..self }
    }

    /// With a grid-code droop (LFSM-O/U, IEEE 1547).
    #[must_use]
    pub fn with_droop(self, service: Droop) -> Self {
        Self { droop: Some(service), ..self }
    }

    /// The last combined status.
    #[must_use]
    pub const fn status(&self) -> ServicesStatus {
        self.status
    }

    /// What the sold services keep from every source below them, summed: the reservation a
    /// planner must plan around (power each way and energy each way).
    #[must_use]
    pub fn reserve(&self) -> Reserve {
        let mut r = self.fcr_n.as_ref().map_or(Reserve::NONE, FcrN::reserve);
        for d in [self.fcr_d_up.as_ref(), self.fcr_d_down.as_ref()].into_iter().flatten() {
            r = add_reserves(r, d.reserve());
        }
        if let Some(f) = self.ffr.as_ref() {
            r = add_reserves(r, f.reserve());
        }
        r
    }

    /// The largest |Δ| the set can request: FCR-N's `(1 + NEM offset)·C` plus every other
    /// capacity (and 2·P_ref of a droop for the inverter rating `rated`).
    #[must_use]
    pub fn max_delta(&self, rated: Watts) -> Watts {
        let mut sum = self.fcr_n.as_ref().map_or(Watts::ZERO, FcrN::max_delta);
        sum += self.fcr_d_up.as_ref().map_or(Watts::ZERO, FcrD::capacity);
        sum += self.fcr_d_down.as_ref().map_or(Watts::ZERO, FcrD::capacity);
        sum += self.ffr.as_ref().map_or(Watts::ZERO, Ffr::capacity);
        sum += self
            .droop
            .as_ref()
            .map_or(Watts::ZERO, |d| d.reference(rated).scale(crate::droop::DROOP_MAX_DELTA_FACTOR));
        sum
    }

    /// One call with the frequency (if good now), the SOC (if good now) and the inverter
    /// rating (the droop's P_ref).
    pub fn respond(
        &mut self,
        now: Millis,
        frequency: Option<Hertz>,
        soc: Option<Percent>,
        rated: Watts,
    ) -> ServicesStatus {
        let view = self.ler.and_then(|l| l.view(soc));
        let kept = [
            self.fcr_d_up.as_ref().map(FcrD::reserve),
            self.fcr_d_down.as_ref().map(FcrD::reserve),
            self.ffr.as_ref().map(Ffr::reserve),
        ]
        .into_iter()
        .flatten()
        .fold(Reserve::NONE, add_reserves);
        let fcr_n_view = view.map(|v| v.less(kept.energy_for_discharge, kept.energy_for_charge));

        let n = self.fcr_n.as_mut().map(|s| s.respond(now, frequency, fcr_n_view));
        let du = self.fcr_d_up.as_mut().map(|s| s.respond(now, frequency, view));
        let dd = self.fcr_d_down.as_mut().map(|s| s.respond(now, frequency, view));
        let ffr = self.ffr.as_mut().map(|s| s.respond(now, frequency, view));
        let droop = self.droop.as_mut().map(|s| {
            let p_ref = s.reference(rated);
            s.respond(now, frequency, p_ref)
        });
        let answers = [n, du, dd, ffr, droop];
        let engaged = answers.iter().flatten().filter(|r| r.engaged);
        let delta = engaged.clone().fold(Watts::ZERO, |acc, r| acc + r.delta);
        let reserve = engaged.clone().fold(Reserve::NONE, |acc, r| add_reserves(acc, r.reserve));
        self.status = ServicesStatus {
            fcr_n: n.map(|r| r.status),
            fcr_d_up: du.map(|r| r.status),
            fcr_d_down: dd.map(|r| r.status),
            ffr: ffr.map(|r| r.status),
            droop: droop.map(|r| r.status),
            delta,
            reserve,
            engaged: engaged.count() > 0,
        };
        self.status
    }
}

impl GridService for FrequencyServices {
    fn name(&self) -> &'static str {
        "frequency services"
    }

    fn request(&mut self, now: Millis, snapshot: &Snapshot, _envelope: &Envelope) -> Option<GridRequest> {
        let r = self.respond(
            now,
            snapshot.grid.frequency.value_at(now),
            snapshot.battery.soc.value_at(now),
            snapshot.inverter.rated_power,
        );
        if !r.engaged {
            return None;
        }
        let action = if r.delta == Watts::ZERO { GridAction::Idle } else { GridAction::Add(r.delta) };
        Some(GridRequest { action, reserve: r.reserve, ramp: None })
    }
}
