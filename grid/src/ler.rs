//! Limited energy reservoirs (LER): how much energy a service may still use each way, its
//! endurance, and FCR-N's normal-state (NEM) and alert-state (AEM) energy management.
//!
//! The reservations themselves (power and energy each service keeps from the sources below
//! it) are built by each service as an [`ems_control::Reserve`]; this module holds the
//! accounting they share.

use crate::error::{ParamError, ParamValue};
use crate::math;
use crate::params::ParamSet;
use crate::status::{AemState, NemState};
use ems_core::{Hertz, Millis, Percent, WattHours, Watts};

/// The battery as an energy reservoir: usable capacity and the SOC window the safety
/// envelope allows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LerConfig {
    /// Usable energy capacity at 100 % SOC.
    pub capacity: WattHours,
    /// The SOC below which the battery may not discharge (the envelope's window).
    pub soc_min: Percent,
    /// The SOC above which the battery may not charge.
    pub soc_max: Percent,
}

impl LerConfig {
    /// A reservoir of `capacity` used between `soc_min` and `soc_max`.
    ///
    /// # Errors
    /// [`ParamError`] when the capacity is not > 0 Wh or the window is empty.
    pub fn try_new(capacity: WattHours, soc_min: Percent, soc_max: Percent) -> Result<Self, ParamError> {
        if capacity <= WattHours::ZERO {
            return Err(ParamError::new(
                "LER",
                "capacity",
                ParamValue::WattHours(capacity),
                "must be > 0 Wh",
            ));
        }
        if soc_max <= soc_min {
            return Err(ParamError::new("LER", "soc_max", ParamValue::Percent(soc_max), "must be > soc_min"));
        }
        Ok(Self { capacity, soc_min, soc_max })
    }

    /// The energy usable each way at `soc` (`None` without a good SOC: the reservoir is
    /// unknown, and no energy management acts on a guess).
    #[must_use]
    pub fn view(&self, soc: Option<Percent>) -> Option<EnergyView> {
        let soc = soc?;
        let up = self.capacity.scale((soc.get() - self.soc_min.get()) / 100.0).max(WattHours::ZERO);
        let down = self.capacity.scale((self.soc_max.get() - soc.get()) / 100.0).max(WattHours::ZERO);
        Some(EnergyView { up, down })
    }
}

/// Energy a service may still use now: `up` for discharging (up-regulation), `down` room for
/// charging (down-regulation). Both ≥ 0.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct EnergyView {
    /// Energy above the SOC floor.
    pub up: WattHours,
    /// Room below the SOC ceiling.
    pub down: WattHours,
}

impl EnergyView {
    /// This view without energy kept for other services (never below zero): FCR-N never uses
    /// FCR-D's (or FFR's) reservation.
    #[must_use]
    pub fn less(self, up: WattHours, down: WattHours) -> Self {
        Self {
            up: (self.up - up.abs()).max(WattHours::ZERO),
            down: (self.down - down.abs()).max(WattHours::ZERO),
        }
    }

    /// Endurance of full activation at `capacity`: (up, down).
    #[must_use]
    pub fn endurance(self, capacity: Watts) -> (Option<Millis>, Option<Millis>) {
        (math::endurance(self.up, capacity), math::endurance(self.down, capacity))
    }
}

/// How many bins the rolling mean keeps (the window is split into `BINS − 4` bins, so a full
/// window plus the bin being filled always fits).
const BINS: usize = 64;
const BINS_PER_WINDOW: u64 = 60;

#[derive(Debug, Clone, Copy, PartialEq)]
struct Bin {
    start: Millis,
    /// Σ response × dt, in W·s (private math).
    energy_ws: f32,
    duration: Millis,
}

/// A rolling mean over a time window with variable sample spacing, in fixed memory: the
/// window is cut into bins of `window / 60`.
#[derive(Debug, Clone)]
pub(crate) struct RollingMean {
    bins: heapless::Deque<Bin, BINS>,
    window: Millis,
    width: Millis,
}

impl RollingMean {
    pub(crate) fn new(window: Millis) -> Self {
        let width = Millis::new((window.get() / BINS_PER_WINDOW).max(1));
        Self { bins: heapless::Deque::new(), window, width }
    }

    pub(crate) fn clear(&mut self) {
        self.bins.clear();
    }

    /// Record `value` held for `dt` up to `now`.
    pub(crate) fn record(&mut self, now: Millis, value: Watts, dt: Millis) {
        if dt == Millis::ZERO {
            return;
        }
        let start_new = self.bins.back().is_none_or(|b| now.since(b.start) >= self.width);
        if start_new {
            if self.bins.is_full() {
                let _ = self.bins.pop_front();
            }
            // Cannot fail: a slot was freed above when full.
            let _ = self.bins.push_back(Bin { start: now, energy_ws: 0.0, duration: Millis::ZERO });
        }
        if let Some(b) = self.bins.back_mut() {
            b.energy_ws += value.get() * dt.as_secs_f32();
            b.duration = b.duration.plus(dt);
        }
        let horizon = now.since(self.window);
        while self.bins.front().is_some_and(|b| b.start.plus(self.width) <= horizon) {
            let _ = self.bins.pop_front();
        }
    }

    /// The mean over the window (zero before anything was recorded).
    pub(crate) fn mean(&self) -> Watts {
        let (e, d) = self
            .bins
            .iter()
            .fold((0.0_f32, 0.0_f32), |(e, d), b| (e + b.energy_ws, d + b.duration.as_secs_f32()));
        if d > 0.0 {
            Watts::saturating(e / d)
        } else {
            Watts::ZERO
        }
    }
}

/// FCR-N's NEM and AEM, updated once per call.
#[derive(Debug, Clone)]
pub(crate) struct EnergyManagement {
    mean: RollingMean,
    nem: NemState,
    aem: AemState,
    outside_since: Option<Millis>,
}

/// What the energy management decided for one call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Decision {
    pub(crate) nem: NemState,
    pub(crate) aem: AemState,
    pub(crate) alert: bool,
    /// The reference frequency FCR-N works around this call.
    pub(crate) f_ref: Hertz,
}

fn below(e: Option<Millis>, limit: Millis) -> bool {
    e.is_some_and(|e| e < limit)
}

fn at_or_above(e: Option<Millis>, limit: Millis) -> bool {
    e.is_none_or(|e| e >= limit)
}

impl EnergyManagement {
    pub(crate) fn new(params: &ParamSet) -> Self {
        Self {
            mean: RollingMean::new(params.nem_window),
            nem: NemState::Off,
            aem: AemState::Off,
            outside_since: None,
        }
    }

    /// Back to the start (after a gap in the calls, or a lost frequency).
    pub(crate) fn reset(&mut self) {
        self.mean.clear();
        self.nem = NemState::Off;
        self.aem = AemState::Off;
        self.outside_since = None;
    }

    /// The rolling mean of the FCR-N response.
    pub(crate) fn mean(&self) -> Watts {
        self.mean.mean()
    }

    /// Record the response held over the last `dt`.
    pub(crate) fn record(&mut self, now: Millis, response: Watts, dt: Millis) {
        self.mean.record(now, response, dt);
    }

    /// Update NEM and AEM from the frequency and the FCR-N endurance each way (`None`: no
    /// good SOC — both switch off, nothing acts on a guess).
    pub(crate) fn update(
        &mut self,
        now: Millis,
        f: Hertz,
        endurance: (Option<Millis>, Option<Millis>),
        p: &ParamSet,
    ) -> Decision {
        let deviation = math::magnitude(f.get() - p.nominal.get());
        if deviation > p.aem_alert_band.get() {
            let _ = self.outside_since.get_or_insert(now);
        } else {
            self.outside_since = None;
        }
        let alert = self.outside_since.is_some_and(|t| now.since(t) >= p.aem_alert_delay);
        let (up, down) = endurance;
        if up.is_none() && down.is_none() {
            self.nem = NemState::Off;
            self.aem = AemState::Off;
        } else {
            self.update_nem(up, down, p);
            self.update_aem(up, down, alert, p);
        }
        let f_ref = match self.aem {
            AemState::Off => p.nominal,
            AemState::SavingUp => p.nominal - p.aem_fref_shift,
            AemState::SavingDown => p.nominal + p.aem_fref_shift,
        };
        Decision { nem: self.nem, aem: self.aem, alert, f_ref }
    }

    fn update_nem(&mut self, up: Option<Millis>, down: Option<Millis>, p: &ParamSet) {
        let mean = self.mean.mean();
        self.nem = match self.nem {
            // NEM engages only while the rolling mean still drains that direction (or is
            // neutral): when the grid is already refilling the reservoir, no offset is needed.
            NemState::Off if below(up, p.nem_on_endurance) && mean >= Watts::ZERO => NemState::Charging,
            NemState::Off if below(down, p.nem_on_endurance) && mean <= Watts::ZERO => NemState::Discharging,
            NemState::Off => NemState::Off,
            NemState::Charging if at_or_above(up, p.nem_off_endurance) => NemState::Off,
            NemState::Charging => NemState::Charging,
            NemState::Discharging if at_or_above(down, p.nem_off_endurance) => NemState::Off,
            NemState::Discharging => NemState::Discharging,
        };
    }

    fn update_aem(&mut self, up: Option<Millis>, down: Option<Millis>, alert: bool, p: &ParamSet) {
        self.aem = match self.aem {
            AemState::Off if alert && below(up, p.aem_on_endurance) => AemState::SavingUp,
            AemState::Off if alert && below(down, p.aem_on_endurance) => AemState::SavingDown,
            AemState::Off => AemState::Off,
            AemState::SavingUp if !alert || at_or_above(up, p.aem_off_endurance) => AemState::Off,
            AemState::SavingUp => AemState::SavingUp,
            AemState::SavingDown if !alert || at_or_above(down, p.aem_off_endurance) => AemState::Off,
            AemState::SavingDown => AemState::SavingDown,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_is_the_energy_inside_the_soc_window() {
        let ler = LerConfig::try_new(
            ems_core::watt_hours!(10_000.0),
            ems_core::percent!(10.0),
            ems_core::percent!(90.0),
        )
        .unwrap();
        let v = ler.view(Some(ems_core::percent!(50.0))).unwrap();
        assert!((v.up.get() - 4000.0).abs() < 1e-2 && (v.down.get() - 4000.0).abs() < 1e-2);
        let v = ler.view(Some(ems_core::percent!(5.0))).unwrap();
        assert_eq!(v.up, WattHours::ZERO);
        assert_eq!(ler.view(None), None);
        let less = v.less(ems_core::watt_hours!(1e9), ems_core::watt_hours!(-100.0));
        assert_eq!(less.up, WattHours::ZERO);
        assert!(less.down.get() >= 0.0);
        assert!(LerConfig::try_new(WattHours::ZERO, Percent::ZERO, Percent::MAX).is_err());
        assert_eq!(
            LerConfig::try_new(
                ems_core::watt_hours!(1.0),
                ems_core::percent!(50.0),
                ems_core::percent!(50.0)
            )
            .unwrap_err()
            .field,
            "soc_max"
        );
    }

    #[test]
    fn rolling_mean_forgets_after_the_window() {
        let mut m = RollingMean::new(Millis::from_secs(300));
        let mut t = 0;
        for _ in 0..3000 {
            t += 100;
            m.record(Millis::new(t), ems_core::watts!(1000.0), Millis::new(100));
        }
        assert!((m.mean().get() - 1000.0).abs() < 1.0, "{}", m.mean());
        for _ in 0..3100 {
            t += 100;
            m.record(Millis::new(t), ems_core::watts!(-500.0), Millis::new(100));
        }
        assert!((m.mean().get() + 500.0).abs() < 20.0, "{}", m.mean());
    }
}
