//! The money, live: three ledgers from the measured energy (the EMS, no battery,
//! self-consumption only) and the day's energy flows.

use super::views::{DayRow, LedgerView, Period, SavingsView};
use super::LiveError;
use crate::accounting::{Ledger, LedgerState, YearMonth};
use crate::optimizer::Problem;
use crate::tariff::Tariff;
use crate::units::{KilowattHours, Money, Ratio};
use ems_core::Watts;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use std::collections::BTreeMap;

const QUARTER_NS: i128 = 900 * 1_000_000_000;

/// Energy of one local day, Wh, and the quarter-hours observed.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub(super) struct Flows {
    import_wh: f64,
    export_wh: f64,
    pv_wh: f64,
    load_wh: f64,
    charge_wh: f64,
    discharge_wh: f64,
    quarter_hours: u32,
    /// The last quarter-hour counted (index since the epoch).
    last_quarter: Option<i64>,
}

/// The simulated self-consumption battery.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Battery {
    capacity_wh: f64,
    min_wh: f64,
    max_wh: f64,
    charge_max_w: f64,
    discharge_max_w: f64,
    eff_charge: f64,
    eff_discharge: f64,
}

impl Battery {
    fn of(p: &Problem) -> Self {
        let capacity_wh = f64::from(p.capacity_wh.get());
        Self {
            capacity_wh,
            min_wh: p.soc_min.get() * capacity_wh,
            max_wh: p.soc_max.get() * capacity_wh,
            charge_max_w: f64::from(p.charge_max_w.get()),
            discharge_max_w: f64::from(p.discharge_max_w.get()),
            eff_charge: p.eff_charge.get(),
            eff_discharge: p.eff_discharge.get(),
        }
    }

    /// The grid power over `hours` with net load `net_w` (`load − pv`), moving `stored_wh`.
    /// Surplus charges up to `soc_max`, deficit discharges down to `soc_min`, both within the
    /// power limits; nothing to or from the grid.
    fn step(&self, stored_wh: &mut f64, net_w: f64, hours: f64) -> f64 {
        if hours <= 0.0 {
            return net_w;
        }
        if net_w < 0.0 {
            let room_w = ((self.max_wh - *stored_wh) / (self.eff_charge * hours)).max(0.0);
            let charge = (-net_w).min(self.charge_max_w).min(room_w);
            *stored_wh += charge * self.eff_charge * hours;
            net_w + charge
        } else {
            let avail_w = ((*stored_wh - self.min_wh) * self.eff_discharge / hours).max(0.0);
            let discharge = net_w.min(self.discharge_max_w).min(avail_w);
            *stored_wh -= discharge / self.eff_discharge * hours;
            net_w - discharge
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct Books {
    pub(super) ems: Ledger,
    pub(super) no_battery: Ledger,
    pub(super) self_consumption: Ledger,
    /// Energy stored in the simulated self-consumption battery (set at the first observation).
    pub(super) sc_stored_wh: Option<f64>,
    battery: Battery,
    soc_init: Ratio,
    pub(super) flows: BTreeMap<Date, Flows>,
    tz: TimeZone,
    currency: String,
}

fn ledger_err(at: Timestamp, e: &crate::accounting::LedgerError) -> LiveError {
    LiveError::Measurement { at, field: "at", value: at.to_string(), expected: leak_reason(e) }
}

fn leak_reason(e: &crate::accounting::LedgerError) -> &'static str {
    match e {
        crate::accounting::LedgerError::BadDuration { .. } => "a duration the ledger accepts",
        crate::accounting::LedgerError::OutOfOrder { .. } => "after the end of the previous interval",
        crate::accounting::LedgerError::TimeRange { .. } => "inside the representable time range",
    }
}

impl Books {
    pub(super) fn new(tariff: &Tariff, problem: &Problem) -> Self {
        let tz = tariff.time_zone().clone();
        Self {
            ems: Ledger::new(tariff.clone(), tz.clone()),
            no_battery: Ledger::new(tariff.clone(), tz.clone()),
            self_consumption: Ledger::new(tariff.clone(), tz.clone()),
            sc_stored_wh: None,
            battery: Battery::of(problem),
            soc_init: problem.soc_init,
            flows: BTreeMap::new(),
            tz,
            currency: tariff.currency().to_owned(),
        }
    }

    pub(super) fn restore(
        tariff: &Tariff,
        problem: &Problem,
        ledgers: [LedgerState; 3],
        sc_stored_wh: Option<f64>,
        flows: BTreeMap<Date, Flows>,
    ) -> Self {
        let mut b = Self::new(tariff, problem);
        let tz = b.tz.clone();
        let [ems, no_battery, sc] = ledgers;
        b.ems = Ledger::restore(tariff.clone(), tz.clone(), ems);
        b.no_battery = Ledger::restore(tariff.clone(), tz.clone(), no_battery);
        b.self_consumption = Ledger::restore(tariff.clone(), tz, sc);
        b.sc_stored_wh = sc_stored_wh.filter(|v| v.is_finite());
        b.flows = flows;
        b
    }

    pub(super) fn set_tariff(&mut self, tariff: &Tariff) {
        self.ems.set_tariff(tariff.clone());
        self.no_battery.set_tariff(tariff.clone());
        self.self_consumption.set_tariff(tariff.clone());
    }

    /// Book one interval of `hours` from `at` (order and duration already checked).
    pub(super) fn record(
        &mut self,
        at: Timestamp,
        dt_s: f64,
        grid: Watts,
        pv: Watts,
        battery: Watts,
        soc: Option<Ratio>,
    ) -> Result<(), LiveError> {
        let (g, p, b) = (f64::from(grid.get()), f64::from(pv.get()), f64::from(battery.get()));
        let load = g + p + b;
        let net = load - p;
        let hours = dt_s / 3600.0;
        let stored = self
            .sc_stored_wh
            .get_or_insert_with(|| soc.unwrap_or(self.soc_init).get() * self.battery.capacity_wh);
        let sc_grid = self.battery.step(stored, net, hours);
        self.ems.record(at, grid, dt_s).map_err(|e| ledger_err(at, &e))?;
        self.no_battery
            .record(at, crate::units::watts_from_f64(net), dt_s)
            .map_err(|e| ledger_err(at, &e))?;
        self.self_consumption
            .record(at, crate::units::watts_from_f64(sc_grid), dt_s)
            .map_err(|e| ledger_err(at, &e))?;
        // Flows per local day, split at quarter-hours (local midnights lie on them), in ns.
        let start = at.as_nanosecond();
        #[allow(clippy::cast_possible_truncation)] // dt ≤ 15 min checked by the caller: exact in i128
        let end = start + (dt_s * 1e9).round() as i128;
        let mut t = start;
        while t < end {
            let quarter = t.div_euclid(QUARTER_NS);
            let piece_end = end.min((quarter + 1) * QUARTER_NS);
            #[allow(clippy::cast_precision_loss)] // a piece is at most 9e11 ns < 2^53: exact
            let h = (piece_end - t) as f64 / 3.6e12;
            let date = Timestamp::from_nanosecond(t).unwrap_or(at).to_zoned(self.tz.clone()).date();
            let quarter = i64::try_from(quarter).unwrap_or(i64::MAX);
            let f = self.flows.entry(date).or_default();
            f.import_wh += g.max(0.0) * h;
            f.export_wh += (-g).max(0.0) * h;
            f.pv_wh += p * h;
            f.load_wh += load * h;
            f.charge_wh += (-b).max(0.0) * h;
            f.discharge_wh += b.max(0.0) * h;
            if f.last_quarter != Some(quarter) {
                f.quarter_hours += 1;
                f.last_quarter = Some(quarter);
            }
            t = piece_end;
        }
        Ok(())
    }

    pub(super) fn savings(&self, period: Period, now: Timestamp) -> SavingsView {
        let today = now.to_zoned(self.tz.clone()).date();
        let (start, label) = match period {
            Period::Day => (today, today.to_string()),
            Period::Month => (today.first_of_month(), YearMonth::of(today).to_string()),
            Period::Year => (today.first_of_year(), format!("{:04}", today.year())),
        };
        let view = |l: &Ledger| -> LedgerView {
            let mut v = LedgerView {
                cost: Money::ZERO,
                import_kwh: KilowattHours::ZERO,
                export_kwh: KilowattHours::ZERO,
            };
            match period {
                Period::Day => {
                    if let Some(d) = l.days().into_iter().find(|d| d.date == today) {
                        v = LedgerView {
                            cost: d.net_energy_cost,
                            import_kwh: d.import_kwh,
                            export_kwh: d.export_kwh,
                        };
                    }
                }
                Period::Month | Period::Year => {
                    let ym = YearMonth::of(today);
                    for m in l.months() {
                        let hit =
                            if period == Period::Month { m.month == ym } else { m.month.year == ym.year };
                        if hit {
                            v.cost += m.total_cost;
                            v.import_kwh += m.import_kwh;
                            v.export_kwh += m.export_kwh;
                        }
                    }
                }
            }
            v
        };
        let (ems, no_battery, self_consumption) =
            (view(&self.ems), view(&self.no_battery), view(&self.self_consumption));
        SavingsView {
            period,
            start,
            label,
            currency: self.currency.clone(),
            ems,
            no_battery,
            self_consumption,
            saving_vs_no_battery: no_battery.cost - ems.cost,
            saving_vs_self_consumption: self_consumption.cost - ems.cost,
        }
    }

    pub(super) fn report(&self, month: YearMonth) -> Vec<DayRow> {
        let costs = |l: &Ledger| -> BTreeMap<Date, Money> {
            l.days().into_iter().map(|d| (d.date, d.net_energy_cost)).collect()
        };
        let (ems, nb, sc) = (costs(&self.ems), costs(&self.no_battery), costs(&self.self_consumption));
        let kwh = KilowattHours::from_wh;
        self.flows
            .iter()
            .filter(|(d, _)| YearMonth::of(**d) == month)
            .map(|(date, f)| {
                let get = |m: &BTreeMap<Date, Money>| m.get(date).copied().unwrap_or(Money::ZERO);
                let (e, n, s) = (get(&ems), get(&nb), get(&sc));
                DayRow {
                    date: *date,
                    quarter_hours: f.quarter_hours,
                    import_kwh: kwh(f.import_wh),
                    export_kwh: kwh(f.export_wh),
                    pv_kwh: kwh(f.pv_wh),
                    load_kwh: kwh(f.load_wh),
                    battery_charge_kwh: kwh(f.charge_wh),
                    battery_discharge_kwh: kwh(f.discharge_wh),
                    cost_ems: e,
                    cost_no_battery: n,
                    cost_self_consumption: s,
                    saving_vs_no_battery: n - e,
                    saving_vs_self_consumption: s - e,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_self_consumption_battery_stays_in_its_window_and_limits() {
        let p = Problem::default(); // 10 kWh, 5 kW, 0.95/0.95, 10..90 %
        let b = Battery::of(&p);
        let mut stored = 8_900.0;
        // 3 kW surplus for an hour: only 100 Wh of room → 100 / 0.95 W of charge.
        let g = b.step(&mut stored, -3000.0, 1.0);
        assert!((stored - 9000.0).abs() < 1e-9);
        assert!((g - (-3000.0 + 100.0 / 0.95)).abs() < 1e-9);
        // 8 kW deficit: limited to 5 kW.
        let g = b.step(&mut stored, 8000.0, 0.5);
        assert!((g - 3000.0).abs() < 1e-9);
        assert!((stored - (9000.0 - 2500.0 / 0.95)).abs() < 1e-9);
        // Empty down to 10 %: what is left above 1000 Wh, times η.
        stored = 1100.0;
        let g = b.step(&mut stored, 1000.0, 1.0);
        assert!((g - (1000.0 - 95.0)).abs() < 1e-9);
        assert!((stored - 1000.0).abs() < 1e-9);
    }
}
