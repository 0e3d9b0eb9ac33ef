//! LFP battery pack with its BMS: coulomb counting, OCV curve, internal resistance, cell spread,
//! first-order thermal model, BMS limits and alarms.

use super::physics::{ramp_down, ramp_up, StepCoeffs, THERMAL_TAU_S};
use ems_core::snapshot::{BmsAlarm, BmsAlarms};
use ems_core::{Amps, Celsius, Percent, Volts, WattHours, Watts};

/// Cells in series (16s LFP: 51.2 V nominal).
pub const CELLS_IN_SERIES: u32 = 16;
/// Nominal cell voltage of LFP, used to convert the configured capacity to ampere-hours.
pub const CELL_NOMINAL_VOLTAGE: Volts = ems_core::volts!(3.2);
/// Cell internal resistance at 25 °C in ohms (0.5 mΩ: 50 mV sag at 100 A).
const CELL_R_25C: f64 = 0.5e-3;
/// Thermal mass per kWh of pack (≈ 9 kg/kWh × 1000 J/(kg·K)).
const HEAT_CAPACITY_J_PER_K_PER_KWH: f64 = 9_000.0;
/// The weakest and strongest cells sit this far (fraction of capacity) below/above the average.
const CELL_SOC_SPREAD: f64 = 0.003;
/// The coolest / warmest cell relative to the lumped pack temperature.
const CELL_TEMP_BELOW: f64 = 0.6;
const CELL_TEMP_ABOVE: f64 = 0.9;

/// LFP open-circuit voltage per cell over SOC (%), piecewise linear.
pub const OCV_KNOTS: [(f32, f32); 16] = [
    (0.0, 2.50),
    (2.0, 2.90),
    (5.0, 3.10),
    (10.0, 3.20),
    (20.0, 3.25),
    (30.0, 3.27),
    (40.0, 3.285),
    (50.0, 3.29),
    (60.0, 3.30),
    (70.0, 3.31),
    (80.0, 3.32),
    (90.0, 3.33),
    (95.0, 3.36),
    (97.0, 3.40),
    (99.0, 3.50),
    (100.0, 3.65),
];

/// NMC open-circuit voltage per cell over SOC (%), piecewise linear (typical of NMC 811/622
/// cells: 3.0 V empty, a gentle slope through the middle, 4.18 V full).
pub const NMC_OCV_KNOTS: [(f32, f32); 13] = [
    (0.0, 3.00),
    (5.0, 3.45),
    (10.0, 3.55),
    (20.0, 3.62),
    (30.0, 3.66),
    (40.0, 3.70),
    (50.0, 3.75),
    (60.0, 3.82),
    (70.0, 3.90),
    (80.0, 3.98),
    (90.0, 4.06),
    (95.0, 4.10),
    (100.0, 4.18),
];

/// The cell chemistry of a simulated pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SimChemistry {
    /// LFP: [`OCV_KNOTS`], 3.2 V nominal, BMS alarms at 3.65 V / 2.50 V.
    #[default]
    Lfp,
    /// NMC: [`NMC_OCV_KNOTS`], 3.65 V nominal, BMS alarms at 4.20 V / 2.70 V.
    Nmc,
}

/// The size and chemistry of a simulated pack (default: 16 LFP cells in series, 51.2 V).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimPack {
    /// The chemistry.
    pub chemistry: SimChemistry,
    /// Cells in series (1..=1000).
    pub cells_in_series: u16,
}

impl Default for SimPack {
    fn default() -> Self {
        Self { chemistry: SimChemistry::Lfp, cells_in_series: 16 }
    }
}

/// What a chemistry changes in the model: OCV curve, nominal voltage and the BMS's cell-voltage
/// alarm thresholds (set / clear with hysteresis).
struct CellModel {
    knots: &'static [(f32, f32)],
    nominal_v: f64,
    ov_set: f64,
    ov_clear: f64,
    uv_set: f64,
    uv_clear: f64,
}

impl SimChemistry {
    const fn model(self) -> CellModel {
        match self {
            Self::Lfp => CellModel {
                knots: &OCV_KNOTS,
                nominal_v: 3.2,
                ov_set: 3.65,
                ov_clear: 3.60,
                uv_set: 2.50,
                uv_clear: 2.70,
            },
            Self::Nmc => CellModel {
                knots: &NMC_OCV_KNOTS,
                nominal_v: 3.65,
                ov_set: 4.20,
                ov_clear: 4.15,
                uv_set: 2.70,
                uv_clear: 2.90,
            },
        }
    }
}
const OT_SET: f64 = 60.0;
const OT_CLEAR: f64 = 55.0;
const UT_SET: f64 = -20.0;
const UT_CLEAR: f64 = -15.0;
const OC_FACTOR: f64 = 1.5;
/// Charge current (fraction of C) the BMS still allows under its cell under-voltage protection.
const UV_RECOVERY_C: f64 = 0.05;
/// The pack model's temperature ceiling (the top of the `Celsius` range).
const MAX_TEMP_C: f64 = 1000.0;
/// Ceiling of the injected runaway heat, so the doubling never overflows (≈ 11 K/s into a
/// 10 kWh pack).
const RUNAWAY_MAX_W: f64 = 1.0e6;

/// Open-circuit voltage of one LFP cell at `soc` (piecewise linear over [`OCV_KNOTS`]).
#[must_use]
pub fn ocv_cell(soc: Percent) -> Volts {
    ocv_on(&OCV_KNOTS, soc)
}

fn ocv_on(knots: &[(f32, f32)], soc: Percent) -> Volts {
    let s = soc.get();
    let Some((&first, rest)) = knots.split_first() else { return Volts::ZERO };
    let mut prev = first;
    for &(ks, kv) in rest {
        if s <= ks {
            let f = (s - prev.0) / (ks - prev.0);
            return Volts::saturating(prev.1 + f * (kv - prev.1));
        }
        prev = (ks, kv);
    }
    Volts::saturating(prev.1)
}

/// OCV look-up table with 0.5 % resolution; every knot lies on the grid, so linear interpolation
/// in it reproduces the curve exactly.
const LUT_STEPS: usize = 200;

fn build_lut(knots: &[(f32, f32)]) -> [f64; LUT_STEPS + 1] {
    let mut lut = [0.0; LUT_STEPS + 1];
    for (i, v) in lut.iter_mut().enumerate() {
        #[allow(clippy::cast_precision_loss)] // i ≤ 200
        let soc = i as f32 * 100.0 / LUT_STEPS as f32;
        *v = f64::from(ocv_on(knots, Percent::saturating(soc)).get());
    }
    lut
}

/// The battery pack, its BMS and its physical state. Stepped by
/// [`SimulatedSite`](super::SimulatedSite).
#[derive(Debug, Clone)]
pub struct SimBattery {
    cells: f64,
    nominal_v: f64,
    thresholds: [f64; 4],
    capacity_ah: f64,
    charge_ah: f64,
    max_current: f64,
    conductance: f64,
    lut: [f64; LUT_STEPS + 1],
    temp: f64,
    current: f64,
    pack_voltage: f64,
    cell_v_min: f64,
    cell_v_max: f64,
    pub(crate) extra_heat_w: f64,
    pub(crate) runaway_w: f64,
    pub(crate) runaway_doubling_s: f64,
    pub(crate) imbalance_v: f64,
    pub(crate) injected_alarms: BmsAlarms,
    own_alarms: BmsAlarms,
    charge_limit: f64,
    discharge_limit: f64,
}

impl SimBattery {
    /// A pack of `capacity` at `initial_soc`, at temperature `temp`. The BMS allows 1 C
    /// (capacity in Ah) continuous current.
    #[must_use]
    pub fn new(capacity: WattHours, initial_soc: Percent, temp: Celsius) -> Self {
        Self::with_pack(SimPack::default(), capacity, initial_soc, temp)
    }

    /// A pack of `pack`'s chemistry and cells in series; otherwise as [`Self::new`].
    #[must_use]
    pub fn with_pack(pack: SimPack, capacity: WattHours, initial_soc: Percent, temp: Celsius) -> Self {
        let model = pack.chemistry.model();
        let cells = f64::from(pack.cells_in_series.max(1));
        let kwh = f64::from(capacity.get()) / 1000.0;
        let capacity_ah = f64::from(capacity.get()) / (cells * model.nominal_v);
        let heat_capacity = kwh * HEAT_CAPACITY_J_PER_K_PER_KWH;
        let mut b = Self {
            cells,
            nominal_v: model.nominal_v,
            thresholds: [model.ov_set, model.ov_clear, model.uv_set, model.uv_clear],
            capacity_ah,
            charge_ah: capacity_ah * f64::from(initial_soc.fraction()),
            max_current: capacity_ah,
            conductance: heat_capacity / THERMAL_TAU_S,
            lut: build_lut(model.knots),
            temp: f64::from(temp.get()),
            current: 0.0,
            pack_voltage: 0.0,
            cell_v_min: 0.0,
            cell_v_max: 0.0,
            extra_heat_w: 0.0,
            runaway_w: 0.0,
            runaway_doubling_s: 1.0,
            imbalance_v: 0.0,
            injected_alarms: BmsAlarms::NONE,
            own_alarms: BmsAlarms::NONE,
            charge_limit: 0.0,
            discharge_limit: 0.0,
        };
        b.update_voltages(0.0, b.pack_resistance());
        b.update_bms();
        b
    }

    fn ocv(&self, soc: f64) -> f64 {
        let x = soc.clamp(0.0, 1.0) * crate::narrow::f64_of_usize(LUT_STEPS);
        // x is in 0..=200, so the truncating cast is the floor and in range.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let i = (x as usize).min(LUT_STEPS - 1);
        let f = x - crate::narrow::f64_of_usize(i);
        self.lut[i] + f * (self.lut[i + 1] - self.lut[i])
    }

    /// Pack resistance: cells in series, rising when cold (×2 at −42 °C and below).
    fn pack_resistance(&self) -> f64 {
        let cold = (25.0 - self.temp).max(0.0);
        self.cells * CELL_R_25C * (1.0 + 0.015 * cold).min(2.0)
    }

    fn soc_fraction(&self) -> f64 {
        self.charge_ah / self.capacity_ah
    }

    /// Move the pack by one sub-step: the inverter asks for `p_dc` (W, `+` discharge) and gets
    /// what the cells can physically deliver; returns the DC power actually delivered.
    pub(crate) fn step(&mut self, p_dc: f64, ambient: f64, k: &StepCoeffs) -> f64 {
        let ocv = self.cells * self.ocv(self.soc_fraction());
        let r = self.pack_resistance();
        // P = (OCV − I·R)·I  →  I = (OCV − √(OCV² − 4·R·P)) / (2R); past the maximum power point
        // the pack delivers what it can.
        let disc = ocv * ocv - 4.0 * r * p_dc;
        let mut i = if disc > 0.0 { (ocv - disc.sqrt()) / (2.0 * r) } else { ocv / (2.0 * r) };
        // No charge beyond full nor discharge beyond empty: the current goes to zero there.
        let max_dis = self.charge_ah / k.dt_h;
        let max_chg = (self.capacity_ah - self.charge_ah) / k.dt_h;
        i = i.clamp(-max_chg, max_dis);
        self.charge_ah = (self.charge_ah - i * k.dt_h).clamp(0.0, self.capacity_ah);
        self.current = i;

        let heat = i * i * r + self.extra_heat_w + self.runaway_w;
        if self.runaway_w > 0.0 {
            // Only while a runaway is injected: one exp2 per sub-step.
            self.runaway_w = (self.runaway_w * (k.dt_s / self.runaway_doubling_s).exp2()).min(RUNAWAY_MAX_W);
        }
        let target = ambient + heat / self.conductance;
        // Capped where `Celsius` ends (a pack at 1000 °C has burnt out).
        self.temp = (target + (self.temp - target) * k.battery_decay).min(MAX_TEMP_C);

        self.update_voltages(i, r);
        self.update_bms();
        self.pack_voltage * i
    }

    fn update_voltages(&mut self, i: f64, r: f64) {
        let soc = self.soc_fraction();
        let sag = i * r / self.cells;
        self.pack_voltage = self.cells * self.ocv(soc) - i * r;
        self.cell_v_min = self.ocv(soc - CELL_SOC_SPREAD) - sag;
        self.cell_v_max = self.ocv(soc + CELL_SOC_SPREAD) - sag + self.imbalance_v;
    }

    fn update_bms(&mut self) {
        let (t_min, t_max) = (self.temp - CELL_TEMP_BELOW, self.temp + CELL_TEMP_ABOVE);
        let [ov_set, ov_clear, uv_set, uv_clear] = self.thresholds;
        let mut a = BmsAlarms::NONE;
        let had = |x: BmsAlarm| self.own_alarms.contains(x);
        if self.cell_v_max > ov_set || (had(BmsAlarm::CellOverVoltage) && self.cell_v_max > ov_clear) {
            a = a.with(BmsAlarm::CellOverVoltage);
        }
        if self.cell_v_min < uv_set || (had(BmsAlarm::CellUnderVoltage) && self.cell_v_min < uv_clear) {
            a = a.with(BmsAlarm::CellUnderVoltage);
        }
        if t_max > OT_SET || (had(BmsAlarm::OverTemperature) && t_max > OT_CLEAR) {
            a = a.with(BmsAlarm::OverTemperature);
        }
        if t_min < UT_SET || (had(BmsAlarm::UnderTemperature) && t_min < UT_CLEAR) {
            a = a.with(BmsAlarm::UnderTemperature);
        }
        if self.current.abs() > OC_FACTOR * self.max_current {
            a = a.with(BmsAlarm::OverCurrent);
        }
        self.own_alarms = a;

        let soc = self.soc_fraction();
        let base = self.max_current * self.cells * self.ocv(soc);
        if self.alarms() == BmsAlarms::NONE.with(BmsAlarm::CellUnderVoltage) {
            // A real BMS's cell under-voltage protection disables discharge and keeps charge
            // enabled at a reduced current (a pack it shut off for good could never be brought
            // back): 0.05 C, within the EMS's own recovery bound.
            self.charge_limit = base * UV_RECOVERY_C * ramp_up(self.temp - CELL_TEMP_BELOW, 0.0, 10.0);
            self.discharge_limit = 0.0;
            return;
        }
        if self.alarms().any() {
            self.charge_limit = 0.0;
            self.discharge_limit = 0.0;
            return;
        }
        let chg = ramp_down(soc, 0.90, 0.995) * ramp_up(t_min, 0.0, 10.0) * ramp_down(t_max, 45.0, 55.0);
        let dis = ramp_up(soc, 0.03, 0.10) * ramp_up(t_min, -20.0, -10.0) * ramp_down(t_max, 50.0, 60.0);
        self.charge_limit = base * chg;
        self.discharge_limit = base * dis;
    }

    /// True state of charge.
    #[must_use]
    pub fn soc(&self) -> Percent {
        Percent::from_fraction(crate::narrow::f32_of(self.soc_fraction()))
    }

    /// Usable capacity (at the nominal voltage).
    #[must_use]
    pub fn capacity(&self) -> WattHours {
        WattHours::saturating(crate::narrow::f32_of(self.capacity_ah * self.cells * self.nominal_v))
    }

    /// Pack terminal voltage.
    #[must_use]
    pub fn pack_voltage(&self) -> Volts {
        Volts::saturating(crate::narrow::f32_of(self.pack_voltage))
    }

    /// Pack current, `+` discharge / `−` charge.
    #[must_use]
    pub fn current(&self) -> Amps {
        Amps::saturating(crate::narrow::f32_of(self.current))
    }

    /// Lowest cell voltage.
    #[must_use]
    pub fn cell_voltage_min(&self) -> Volts {
        Volts::saturating(crate::narrow::f32_of(self.cell_v_min))
    }

    /// Highest cell voltage.
    #[must_use]
    pub fn cell_voltage_max(&self) -> Volts {
        Volts::saturating(crate::narrow::f32_of(self.cell_v_max))
    }

    /// Lumped pack temperature.
    #[must_use]
    pub fn temperature(&self) -> Celsius {
        Celsius::saturating(crate::narrow::f32_of(self.temp))
    }

    /// Coolest cell.
    #[must_use]
    pub fn cell_temp_min(&self) -> Celsius {
        Celsius::saturating(crate::narrow::f32_of(self.temp - CELL_TEMP_BELOW))
    }

    /// Warmest cell.
    #[must_use]
    pub fn cell_temp_max(&self) -> Celsius {
        Celsius::saturating(crate::narrow::f32_of(self.temp + CELL_TEMP_ABOVE))
    }

    /// BMS charge power limit (magnitude).
    #[must_use]
    pub fn charge_limit(&self) -> Watts {
        // An injected alarm zeroes the limits at once, as the BMS's own alarms do.
        if self.injected_alarms.any() {
            return Watts::ZERO;
        }
        Watts::saturating(crate::narrow::f32_of(self.charge_limit))
    }

    /// BMS discharge power limit (magnitude).
    #[must_use]
    pub fn discharge_limit(&self) -> Watts {
        if self.injected_alarms.any() {
            return Watts::ZERO;
        }
        Watts::saturating(crate::narrow::f32_of(self.discharge_limit))
    }

    /// Alarms the BMS reports: its own threshold crossings plus injected ones.
    #[must_use]
    pub fn alarms(&self) -> BmsAlarms {
        BmsAlarms::from_bits(self.own_alarms.bits() | self.injected_alarms.bits())
    }

    /// The BMS's alarm reset: clears the injected (latched) alarms whose cause is gone, i.e.
    /// every injected alarm that the pack's own measurements do not raise right now.
    pub(crate) fn reset_alarms(&mut self) {
        self.injected_alarms = BmsAlarms::from_bits(self.injected_alarms.bits() & self.own_alarms.bits());
    }

    /// The BMS is ready when it reports no alarm other than its own cell under-voltage
    /// protection (which forbids discharge but keeps the pack available for a recovery charge).
    #[must_use]
    pub fn ready(&self) -> bool {
        self.alarms().bits() & !BmsAlarms::NONE.with(BmsAlarm::CellUnderVoltage).bits() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ems_core::Millis;

    fn k(dt_ms: u64) -> StepCoeffs {
        StepCoeffs::new(Millis::new(dt_ms))
    }

    #[test]
    fn ocv_curve_is_monotone_and_shaped_like_lfp() {
        let mut last = 0.0;
        for i in 0..=1000u16 {
            let v = ocv_cell(Percent::saturating(f32::from(i) / 10.0)).get();
            assert!(v > last, "OCV not strictly increasing at {i}");
            last = v;
        }
        assert_eq!(ocv_cell(Percent::ZERO).get(), 2.5);
        assert_eq!(ocv_cell(Percent::MAX).get(), 3.65);
        let mid = ocv_cell(ems_core::percent!(50.0)).get();
        assert!((3.25..=3.33).contains(&mid));
        let b = SimBattery::new(
            ems_core::watt_hours!(10_000.0),
            ems_core::percent!(50.0),
            ems_core::celsius!(20.0),
        );
        for i in 0..=200 {
            let s = f64::from(i) / 200.0;
            let want = f64::from(ocv_cell(Percent::from_fraction(crate::narrow::f32_of(s))).get());
            assert!((b.ocv(s) - want).abs() < 1e-4);
        }
    }

    #[test]
    fn soc_integrates_charge() {
        let mut b = SimBattery::new(
            ems_core::watt_hours!(10_000.0),
            ems_core::percent!(20.0),
            ems_core::celsius!(20.0),
        );
        let c = k(1000);
        for _ in 0..3600 {
            b.step(-4800.0, 20.0, &c); // 5 kW AC at 96 %
        }
        let gained = b.soc().get() - 20.0;
        assert!((44.0..=49.0).contains(&gained), "gained {gained} %");
    }

    #[test]
    fn cell_voltage_sags_on_discharge_and_rises_on_charge() {
        let mut b = SimBattery::new(
            ems_core::watt_hours!(10_000.0),
            ems_core::percent!(50.0),
            ems_core::celsius!(25.0),
        );
        let rest = b.cell_voltage_min().get();
        b.step(5000.0, 25.0, &k(100));
        let dis = b.cell_voltage_min().get();
        assert!(rest - dis > 0.04 && rest - dis < 0.06, "sag {}", rest - dis);
        assert!(b.current().get() > 90.0);
        b.step(-5000.0, 25.0, &k(100));
        assert!(b.cell_voltage_min().get() > rest + 0.04);
        assert!(b.cell_voltage_max().get() > b.cell_voltage_min().get());
        assert!(b.cell_temp_max().get() > b.cell_temp_min().get());
    }

    #[test]
    fn heats_under_current_and_relaxes_to_ambient() {
        let mut b = SimBattery::new(
            ems_core::watt_hours!(10_000.0),
            ems_core::percent!(90.0),
            ems_core::celsius!(20.0),
        );
        let c = k(1000);
        for _ in 0..3000 {
            b.step(9000.0, 20.0, &c);
        }
        let hot = b.temperature().get();
        assert!(hot > 21.5, "{hot}");
        for _ in 0..(6 * 3600) {
            b.step(0.0, 20.0, &c);
        }
        assert!((b.temperature().get() - 20.0).abs() < 0.05);
    }

    #[test]
    fn bms_tapers_near_full_and_empty_and_when_cold() {
        let at = |soc: f32, t: f32| {
            SimBattery::new(ems_core::watt_hours!(10_000.0), Percent::saturating(soc), Celsius::saturating(t))
        };
        let mid = at(50.0, 25.0);
        assert!(mid.charge_limit().get() > 9000.0 && mid.discharge_limit().get() > 9000.0);
        assert!(at(95.0, 25.0).charge_limit().get() < 0.6 * mid.charge_limit().get());
        assert_eq!(at(100.0, 25.0).charge_limit(), Watts::ZERO);
        assert_eq!(at(2.0, 25.0).discharge_limit(), Watts::ZERO);
        assert!(at(5.0, 25.0).discharge_limit().get() < 0.5 * mid.discharge_limit().get());
        assert_eq!(at(50.0, -2.0).charge_limit(), Watts::ZERO);
        assert!(at(50.0, 52.0).charge_limit().get() < 0.5 * mid.charge_limit().get());
    }

    #[test]
    fn under_its_own_under_voltage_protection_the_bms_allows_a_small_charge_only() {
        let c = k(1000);
        let mut b = SimBattery::new(
            ems_core::watt_hours!(10_000.0),
            ems_core::percent!(0.5),
            ems_core::celsius!(20.0),
        );
        for _ in 0..60 {
            b.step(3000.0, 20.0, &c);
        }
        assert_eq!(b.alarms(), BmsAlarms::NONE.with(BmsAlarm::CellUnderVoltage));
        assert!(b.ready(), "discharge protection, still available for a recovery charge");
        assert_eq!(b.discharge_limit(), Watts::ZERO);
        let chg = b.charge_limit().get();
        // 0.05 C of 195 Ah at about 40 V.
        assert!((300.0..=500.0).contains(&chg), "{chg}");
        // An injected alarm (a BMS fault) still zeroes both.
        b.injected_alarms = BmsAlarms::NONE.with(BmsAlarm::Internal);
        assert_eq!(b.charge_limit(), Watts::ZERO);
        assert!(!b.ready());
    }

    #[test]
    fn refuses_to_pass_full_or_empty() {
        let c = k(1000);
        let mut b = SimBattery::new(
            ems_core::watt_hours!(10_000.0),
            ems_core::percent!(99.9),
            ems_core::celsius!(20.0),
        );
        for _ in 0..100 {
            b.step(-5000.0, 20.0, &c);
        }
        assert_eq!(b.soc(), Percent::MAX);
        let p = b.step(-5000.0, 20.0, &c);
        assert_eq!(p, 0.0);
        assert_eq!(b.current(), Amps::ZERO);
        let mut b = SimBattery::new(
            ems_core::watt_hours!(10_000.0),
            ems_core::percent!(0.1),
            ems_core::celsius!(20.0),
        );
        for _ in 0..100 {
            b.step(5000.0, 20.0, &c);
        }
        assert_eq!(b.soc(), Percent::ZERO);
        assert_eq!(b.step(5000.0, 20.0, &c), 0.0);
        assert!(b.alarms().contains(BmsAlarm::CellUnderVoltage));
    }
}
