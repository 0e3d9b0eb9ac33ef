//! Forecasts from the site's own meters: the load and PV forecasters, an optional irradiance
//! forecast, and the error of the forecasts the plans used against what happened.

use super::views::{ErrorView, ForecastSlot};
use crate::forecast::{error_metrics, LoadForecaster, Normalisation, PvForecaster};
use crate::units::{watts_from_f64, WattsPerSquareMetre};
use ems_core::Watts;
use jiff::{SignedDuration, Timestamp};
use std::collections::{BTreeMap, VecDeque};

use super::ERROR_WINDOW;

/// One slot whose forecast (as planned with) and outcome are both known, in W.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub(super) struct ErrorPair {
    pub(super) start: Timestamp,
    pub(super) pv_forecast: f32,
    pub(super) pv_actual: f32,
    pub(super) load_forecast: f32,
    pub(super) load_actual: f32,
}

/// An irradiance forecast value: mean GHI over `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct IrradianceSlot {
    start: Timestamp,
    end: Timestamp,
    ghi: WattsPerSquareMetre,
}

#[derive(Debug, Clone)]
pub(super) struct Forecasts {
    pub(super) load: LoadForecaster,
    pub(super) pv: PvForecaster,
    irradiance: Vec<IrradianceSlot>,
    /// Slot start → (PV, load) forecast of the latest plan that covered the slot.
    planned: BTreeMap<Timestamp, (Watts, Watts)>,
    pub(super) errors: VecDeque<ErrorPair>,
}

impl Forecasts {
    pub(super) fn new(load: LoadForecaster, pv: PvForecaster) -> Self {
        Self { load, pv, irradiance: Vec::new(), planned: BTreeMap::new(), errors: VecDeque::new() }
    }

    /// Replace the irradiance forecast: `(start, mean GHI)` points, each holding until the next
    /// point (the last one for the spacing of the last two, or one hour if there is one point).
    pub(super) fn set_irradiance(&mut self, mut points: Vec<(Timestamp, WattsPerSquareMetre)>) {
        points.sort_by_key(|(t, _)| *t);
        points.dedup_by_key(|(t, _)| *t);
        let last_step = match points.as_slice() {
            [.., (a, _), (b, _)] => b.duration_since(*a),
            _ => SignedDuration::from_hours(1),
        };
        self.irradiance = points
            .iter()
            .enumerate()
            .map(|(i, (start, ghi))| {
                let end = points
                    .get(i + 1)
                    .map_or_else(|| start.checked_add(last_step).unwrap_or(*start), |(next, _)| *next);
                IrradianceSlot { start: *start, end, ghi: *ghi }
            })
            .collect();
    }

    fn ghi_at(&self, at: Timestamp) -> Option<WattsPerSquareMetre> {
        let i = self.irradiance.partition_point(|s| s.end <= at);
        self.irradiance.get(i).filter(|s| s.start <= at).map(|s| s.ghi)
    }

    /// PV forecast of the slot `[start, start + len)` and its source.
    pub(super) fn pv_slot(&self, start: Timestamp, len: SignedDuration) -> (Watts, &'static str) {
        let mid = start.checked_add(len / 2).unwrap_or(start);
        match self.ghi_at(mid) {
            Some(ghi) => (
                self.pv.from_ghi_forecast(start, len, &[ghi.get()]).first().copied().unwrap_or(Watts::ZERO),
                "irradiance",
            ),
            None => {
                (self.pv.forecast(start, len, 1).first().copied().unwrap_or(Watts::ZERO), "measured_ratio")
            }
        }
    }

    /// Forecast slots `starts` (each of length `len`).
    pub(super) fn slots(&self, starts: &[Timestamp], len: SignedDuration) -> Vec<ForecastSlot> {
        starts
            .iter()
            .map(|&start| {
                let (pv, pv_source) = self.pv_slot(start, len);
                let load = self.load.forecast(start, len, 1).first().copied().unwrap_or(Watts::ZERO);
                ForecastSlot {
                    start,
                    end: start.checked_add(len).unwrap_or(start),
                    pv,
                    pv_clear_sky: self.pv.system().clear_sky_mean(start, len),
                    pv_source,
                    load,
                }
            })
            .collect()
    }

    /// Remember what a plan made at `now` forecast for its slots.
    pub(super) fn remember(&mut self, now: Timestamp, slots: &[ForecastSlot]) {
        let first = slots.first().map_or(now, |s| s.start);
        // Slots before this plan keep the forecast they were planned with until they are
        // observed, for a day at most (without observations nothing would remove them).
        let oldest = now.checked_sub(SignedDuration::from_hours(24)).unwrap_or(now);
        self.planned.retain(|t, _| *t < first && *t >= oldest);
        for s in slots {
            self.planned.insert(s.start, (s.pv, s.load));
        }
    }

    /// A slot is over: learn from its means (when it was covered well enough) and score the
    /// forecast that was planned with.
    pub(super) fn finish_slot(
        &mut self,
        start: Timestamp,
        len: SignedDuration,
        pv: Watts,
        load: Watts,
        learn: bool,
    ) {
        if learn {
            self.load.observe(start, load);
            self.pv.observe(start, len, pv.max(Watts::ZERO));
            if let Some((pv_f, load_f)) = self.planned.get(&start).copied() {
                self.errors.push_back(ErrorPair {
                    start,
                    pv_forecast: pv_f.get(),
                    pv_actual: pv.get().max(0.0),
                    load_forecast: load_f.get(),
                    load_actual: load.get().max(0.0),
                });
            }
        }
        self.planned.retain(|t, _| *t > start);
        let oldest = start.checked_sub(ERROR_WINDOW).unwrap_or(start);
        while self.errors.front().is_some_and(|e| e.start < oldest) {
            self.errors.pop_front();
        }
    }

    /// nMAE and friends of PV (normalised by the peak power) and load (by the mean load).
    pub(super) fn error_views(&self) -> Vec<ErrorView> {
        let w = |v: f32| Watts::saturating(v);
        let pv_f: Vec<Watts> = self.errors.iter().map(|e| w(e.pv_forecast)).collect();
        let pv_a: Vec<Watts> = self.errors.iter().map(|e| w(e.pv_actual)).collect();
        let load_f: Vec<Watts> = self.errors.iter().map(|e| w(e.load_forecast)).collect();
        let load_a: Vec<Watts> = self.errors.iter().map(|e| w(e.load_actual)).collect();
        let capacity = self.pv.system().capacity();
        let pv = error_metrics(&pv_f, &pv_a, Normalisation::Capacity(capacity));
        let load = error_metrics(&load_f, &load_a, Normalisation::MeanAbsActual);
        [("pv", pv), ("load", load)]
            .into_iter()
            .filter_map(|(quantity, m)| {
                m.ok().map(|m| ErrorView { quantity, n: m.n, mae: m.mae, bias: m.bias, nmae: m.nmae })
            })
            .collect()
    }
}

/// Mean of `wh` over `hours` as power (zero for no time).
pub(super) fn mean_w(wh: f64, hours: f64) -> Watts {
    if hours > 0.0 {
        watts_from_f64(wh / hours)
    } else {
        Watts::ZERO
    }
}
