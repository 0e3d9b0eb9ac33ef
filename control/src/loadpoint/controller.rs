//! [`Loadpoint`]: one charge point's per-cycle decision (enable, current, phases, reason).
//!
//! Pure and deterministic: no clock (the caller passes `now`), no I/O, no allocation.

use super::config::{Limits, LoadpointConfig, LoadpointConfigError};
use super::types::{ChargeMode, DeciAmps, LoadpointReason, PhaseBlock, Phases, VehicleStatus, PHASE_VOLTS};
use ems_core::{Millis, Watts};

/// What the site and the charger report this cycle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadpointInputs {
    /// The mode the operator chose.
    pub mode: ChargeMode,
    /// The charger's connector status.
    pub status: VehicleStatus,
    /// Site grid power at the connection point (`+` import / `−` export), including the car.
    pub grid_power: Watts,
    /// The car's measured charge power (≥ 0).
    pub charge_power: Watts,
    /// The house battery's power (`+` discharge / `−` charge).
    pub battery_power: Watts,
    /// The phases the charger has switched to the vehicle (read from the charger).
    pub switched_phases: Phases,
    /// The phases the vehicle actually draws on, measured from the phase currents while it
    /// charges (`None` when unknown; then [`Self::switched_phases`] is used). A one-phase car
    /// on a three-phase charger draws a third of the power per ampere.
    pub drawing_phases: Option<Phases>,
}

/// The command for the charger this cycle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadpointOutput {
    /// Charging enabled.
    pub enabled: bool,
    /// The current limit per phase: zero, or inside `min ..= max` of the config.
    pub current: DeciAmps,
    /// The phases to switch to (equal to the input unless a switch completes this cycle; a
    /// change is only ever commanded together with `enabled == false`).
    pub phases: Phases,
    /// Why.
    pub reason: LoadpointReason,
    /// Why a phase switch the surplus asks for does not happen, if so.
    pub phase_block: Option<PhaseBlock>,
    /// The surplus available to the car this cycle (see [`surplus`]).
    pub surplus: Watts,
}

/// The power available to the car: what it draws now plus what the site exports, never the
/// house battery's discharge; the battery's charging power only with
/// `battery_charge_is_surplus`.
///
/// `surplus = charge_power − grid_power − max(battery, 0) [+ max(−battery, 0)]`.
#[must_use]
pub fn surplus(
    charge_power: Watts,
    grid_power: Watts,
    battery_power: Watts,
    battery_charge_is_surplus: bool,
) -> Watts {
    let b = battery_power.get();
    let discharge = b.max(0.0);
    let charge = if battery_charge_is_surplus { (-b).max(0.0) } else { 0.0 };
    Watts::saturating(charge_power.get() - grid_power.get() - discharge + charge)
}

/// A condition first seen at a time (cleared when it goes away).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Timer(Option<Millis>);

impl Timer {
    /// Track `active` at `now`; the time it has lasted (zero when inactive).
    fn track(&mut self, active: bool, now: Millis) -> Option<Millis> {
        if active {
            let since = *self.0.get_or_insert(now);
            Some(now.since(since))
        } else {
            self.0 = None;
            None
        }
    }

    fn reset(&mut self) {
        self.0 = None;
    }
}

/// A phase switch in progress: charging disabled since `since`, the phases change to `to`
/// when the pause is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Switching {
    to: Phases,
    since: Millis,
}

/// One loadpoint's controller.
#[derive(Debug, Clone, PartialEq)]
pub struct Loadpoint {
    config: LoadpointConfig,
    limits: Limits,
    /// Mode `pv`: charging has been started (between the enable and the disable decision).
    charging: bool,
    enable: Timer,
    disable: Timer,
    phase_up: Timer,
    phase_down: Timer,
    switching: Option<Switching>,
    last_switch: Option<Millis>,
    last_mode: ChargeMode,
    /// The current commanded in the previous cycle (0 when disabled).
    last_current: DeciAmps,
    last_raise: Option<Millis>,
}

/// What the phase logic decided for this cycle.
enum PhaseStep {
    /// Go on with these phases.
    Keep(Option<PhaseBlock>),
    /// A switch is in progress (or started now): the output is fixed.
    Output(LoadpointOutput),
}

impl Loadpoint {
    /// A loadpoint with `config`.
    ///
    /// # Errors
    /// [`LoadpointConfigError`] naming the first field that is not acceptable and its value.
    pub fn new(config: LoadpointConfig) -> Result<Self, LoadpointConfigError> {
        let limits = config.validate()?;
        Ok(Self {
            config,
            limits,
            charging: false,
            enable: Timer::default(),
            disable: Timer::default(),
            phase_up: Timer::default(),
            phase_down: Timer::default(),
            switching: None,
            last_switch: None,
            last_mode: ChargeMode::Off,
            last_current: DeciAmps::ZERO,
            last_raise: None,
        })
    }

    /// The configuration.
    #[must_use]
    pub const fn config(&self) -> &LoadpointConfig {
        &self.config
    }

    /// The validated current limits.
    #[must_use]
    pub const fn limits(&self) -> Limits {
        self.limits
    }

    /// When the phases last changed, if ever.
    #[must_use]
    pub const fn last_phase_switch(&self) -> Option<Millis> {
        self.last_switch
    }

    fn reset_timers(&mut self) {
        self.charging = false;
        self.enable.reset();
        self.disable.reset();
        self.phase_up.reset();
        self.phase_down.reset();
        self.switching = None;
    }

    fn min_power(&self, phases: Phases) -> Watts {
        self.limits.min.power(phases)
    }

    /// The current that uses `surplus` on `phases`, rounded down to 0.1 A and bounded to
    /// `min ..= max`.
    fn surplus_current(&self, surplus: Watts, phases: Phases) -> DeciAmps {
        let usable = surplus.get() - self.config.residual_power.get();
        let amps = usable / (PHASE_VOLTS * f32::from(phases.count()));
        let raw = DeciAmps::from_amps_floor(amps.max(0.0)).unwrap_or(DeciAmps::MAX);
        raw.clamp(self.limits.min, self.limits.max)
    }

    /// The current that follows `surplus` from the previous cycle's, with a dead band: lowered
    /// at once when the car would import (to leave the residual power), raised only when the
    /// surplus covers one more 0.1 A step plus the residual power and the raise interval has
    /// passed since the last raise. The first current after a stop is not a raise.
    fn follow(&mut self, now: Millis, surplus: Watts, phases: Phases) -> DeciAmps {
        let target = self.surplus_current(surplus, phases);
        let prev = self.last_current;
        if prev.is_zero() {
            self.last_raise = Some(now);
            return target;
        }
        if target < prev {
            return if surplus < prev.power(phases) { target } else { prev };
        }
        if target > prev && self.last_raise.is_none_or(|t| now.since(t) >= self.config.raise_interval) {
            self.last_raise = Some(now);
            return target;
        }
        prev
    }

    /// One cycle at `now`.
    #[must_use]
    pub fn step(&mut self, now: Millis, inputs: &LoadpointInputs) -> LoadpointOutput {
        let out = self.decide(now, inputs);
        self.last_current = out.current;
        out
    }

    fn decide(&mut self, now: Millis, inputs: &LoadpointInputs) -> LoadpointOutput {
        let surplus = surplus(
            inputs.charge_power,
            inputs.grid_power,
            inputs.battery_power,
            self.config.battery_charge_is_surplus,
        );
        if inputs.mode != self.last_mode {
            self.reset_timers();
            self.last_mode = inputs.mode;
        }
        let off = |reason| LoadpointOutput {
            enabled: false,
            current: DeciAmps::ZERO,
            phases: inputs.switched_phases,
            reason,
            phase_block: None,
            surplus,
        };
        let stop = match inputs.status {
            VehicleStatus::Unplugged => Some(LoadpointReason::NoVehicle),
            VehicleStatus::Fault => Some(LoadpointReason::ChargerFault),
            VehicleStatus::Plugged | VehicleStatus::Charging => match inputs.mode {
                ChargeMode::Off => Some(LoadpointReason::ModeOff),
                ChargeMode::Now | ChargeMode::MinPv | ChargeMode::Pv => None,
            },
        };
        if let Some(reason) = stop {
            self.reset_timers();
            return off(reason);
        }
        let block = match self.phases(now, inputs, surplus) {
            PhaseStep::Output(out) => return out,
            PhaseStep::Keep(block) => block,
        };
        let phases = inputs.drawing_phases.map_or(inputs.switched_phases, |d| {
            if d.count() < inputs.switched_phases.count() {
                d
            } else {
                inputs.switched_phases
            }
        });
        let (enabled, current, reason) = match inputs.mode {
            ChargeMode::Now => (true, self.limits.max, LoadpointReason::Now { current: self.limits.max }),
            ChargeMode::MinPv => {
                let current = self.follow(now, surplus, phases);
                let reason = if surplus < self.min_power(phases) {
                    LoadpointReason::MinPvMinimum { surplus, current }
                } else {
                    LoadpointReason::PvSurplus { surplus, current }
                };
                (true, current, reason)
            }
            ChargeMode::Pv => self.pv(now, surplus, phases),
            // Handled above; repeated so that the match stays exhaustive without a wildcard.
            ChargeMode::Off => (false, DeciAmps::ZERO, LoadpointReason::ModeOff),
        };
        LoadpointOutput {
            enabled,
            current: if enabled { current } else { DeciAmps::ZERO },
            phases: inputs.switched_phases,
            reason,
            phase_block: block,
            surplus,
        }
    }

    /// Mode `pv`: start after the enable delay, follow the surplus, stop after the disable delay.
    fn pv(&mut self, now: Millis, surplus: Watts, phases: Phases) -> (bool, DeciAmps, LoadpointReason) {
        let min_power = self.min_power(phases);
        if self.charging {
            self.enable.reset();
            let deficit = surplus.get() < min_power.get() - self.config.disable_threshold.get();
            let current = self.follow(now, surplus, phases);
            match self.disable.track(deficit, now) {
                Some(lasted) if lasted >= self.config.disable_delay => {
                    self.charging = false;
                    self.disable.reset();
                    (false, DeciAmps::ZERO, LoadpointReason::WaitingForSurplus { surplus, needed: min_power })
                }
                Some(lasted) => (
                    true,
                    current,
                    LoadpointReason::DisableDelay {
                        surplus,
                        needed: min_power,
                        remaining: self.config.disable_delay.since(lasted),
                    },
                ),
                None => (true, current, LoadpointReason::PvSurplus { surplus, current }),
            }
        } else {
            self.disable.reset();
            let needed = Watts::saturating(min_power.get() + self.config.enable_threshold.get());
            match self.enable.track(surplus >= needed, now) {
                Some(lasted) if lasted >= self.config.enable_delay => {
                    self.charging = true;
                    self.enable.reset();
                    let current = self.follow(now, surplus, phases);
                    (true, current, LoadpointReason::PvSurplus { surplus, current })
                }
                Some(lasted) => (
                    false,
                    DeciAmps::ZERO,
                    LoadpointReason::EnableDelay { remaining: self.config.enable_delay.since(lasted) },
                ),
                None => (false, DeciAmps::ZERO, LoadpointReason::WaitingForSurplus { surplus, needed }),
            }
        }
    }

    /// The phase logic: finish a switch in progress, or decide whether to start one.
    fn phases(&mut self, now: Millis, inputs: &LoadpointInputs, surplus: Watts) -> PhaseStep {
        let current = inputs.switched_phases;
        if let Some(sw) = self.switching {
            let paused = now.since(sw.since);
            let out = |phases, reason| LoadpointOutput {
                enabled: false,
                current: DeciAmps::ZERO,
                phases,
                reason,
                phase_block: None,
                surplus,
            };
            if paused < self.config.phase_switch_pause {
                let remaining = self.config.phase_switch_pause.since(paused);
                return PhaseStep::Output(out(
                    current,
                    LoadpointReason::PhaseSwitchPause { to: sw.to, remaining },
                ));
            }
            self.switching = None;
            self.last_switch = Some(now);
            // The car starts again at the new phases at once if the surplus suffices there; a
            // stop needs the disable delay anew.
            self.disable.reset();
            return PhaseStep::Output(out(sw.to, LoadpointReason::PhaseSwitched { to: sw.to }));
        }
        if !self.config.charger_can_switch_phases {
            return PhaseStep::Keep(None);
        }
        let wanted = match inputs.mode {
            ChargeMode::Now => Some(Phases::Three),
            ChargeMode::MinPv | ChargeMode::Pv => self.wanted_by_surplus(now, current, surplus),
            ChargeMode::Off => None,
        };
        let Some(to) = wanted.filter(|&to| to != current) else {
            return PhaseStep::Keep(None);
        };
        // Interlock: a vehicle not known to switch safely keeps its phases while plugged in.
        if !self.config.vehicle_can_switch_phases {
            return PhaseStep::Keep(Some(PhaseBlock::VehicleCannotSwitch));
        }
        if let Some(last) = self.last_switch {
            let since = now.since(last);
            if since < self.config.phase_dwell {
                return PhaseStep::Keep(Some(PhaseBlock::Dwell {
                    remaining: self.config.phase_dwell.since(since),
                }));
            }
        }
        self.switching = Some(Switching { to, since: now });
        if to == Phases::Three && inputs.mode == ChargeMode::Pv {
            // The switch up needed the surplus for the three-phase minimum over the enable
            // delay, which is more than the start needs: start right after the pause.
            self.charging = true;
        }
        self.phase_up.reset();
        self.phase_down.reset();
        PhaseStep::Output(LoadpointOutput {
            enabled: false,
            current: DeciAmps::ZERO,
            phases: current,
            reason: LoadpointReason::PhaseSwitchPause { to, remaining: self.config.phase_switch_pause },
            phase_block: None,
            surplus,
        })
    }

    /// Modes `pv`/`minpv`: three phases once the surplus has covered the three-phase minimum
    /// for the enable delay; one phase once it has stayed below it (minus the tolerance) for the
    /// disable delay.
    fn wanted_by_surplus(&mut self, now: Millis, current: Phases, surplus: Watts) -> Option<Phases> {
        let min3 = self.min_power(Phases::Three).get();
        match current {
            Phases::One => {
                self.phase_down.reset();
                let up = surplus.get() >= min3 + self.config.enable_threshold.get();
                let lasted = self.phase_up.track(up, now)?;
                (lasted >= self.config.enable_delay).then_some(Phases::Three)
            }
            Phases::Three => {
                self.phase_up.reset();
                let down = surplus.get() < min3 - self.config.disable_threshold.get();
                let lasted = self.phase_down.track(down, now)?;
                (lasted >= self.config.disable_delay).then_some(Phases::One)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(x: f32) -> Watts {
        Watts::saturating(x)
    }

    fn inputs(mode: ChargeMode, grid: f32, car: f32) -> LoadpointInputs {
        LoadpointInputs {
            mode,
            status: if car > 0.0 { VehicleStatus::Charging } else { VehicleStatus::Plugged },
            grid_power: w(grid),
            charge_power: w(car),
            battery_power: Watts::ZERO,
            switched_phases: Phases::One,
            drawing_phases: None,
        }
    }

    /// No residual power and no raise interval, so the currents are the plain surplus.
    fn base() -> LoadpointConfig {
        LoadpointConfig {
            residual_power: Watts::ZERO,
            raise_interval: Millis::new(1),
            ..LoadpointConfig::default()
        }
    }

    #[test]
    fn the_current_has_a_dead_band_and_raises_are_spaced() {
        let mut l = lp(LoadpointConfig::default());
        let c = |out: LoadpointOutput| out.current.tenths();
        // (3000 − 100 W residual) / 230 V = 12.6 A.
        assert_eq!(c(l.step(s(0), &inputs(ChargeMode::MinPv, -3_000.0, 0.0))), 126);
        // The car draws 2898 W; 52 W still exported: no change.
        assert_eq!(c(l.step(s(1), &inputs(ChargeMode::MinPv, -52.0, 2_898.0))), 126);
        // 98 W imported: down at once to leave the residual again: (2800 − 100) / 230 = 11.7 A.
        assert_eq!(c(l.step(s(2), &inputs(ChargeMode::MinPv, 98.0, 2_898.0))), 117);
        // More sun 1 s later: the raise waits for the raise interval.
        assert_eq!(c(l.step(s(3), &inputs(ChargeMode::MinPv, -509.0, 2_691.0))), 117);
        assert_eq!(c(l.step(s(9), &inputs(ChargeMode::MinPv, -509.0, 2_691.0))), 117);
        // (3200 − 100) / 230 = 13.4 A, 10 s after the last raise.
        assert_eq!(c(l.step(s(10), &inputs(ChargeMode::MinPv, -509.0, 2_691.0))), 134);
    }

    fn lp(config: LoadpointConfig) -> Loadpoint {
        Loadpoint::new(config).unwrap()
    }

    fn s(secs: u64) -> Millis {
        Millis::from_secs(secs)
    }

    #[test]
    fn off_unplugged_and_fault_never_charge() {
        let mut l = lp(base());
        let out = l.step(s(0), &inputs(ChargeMode::Off, -10_000.0, 0.0));
        assert!(!out.enabled && out.current.is_zero());
        assert_eq!(out.reason.to_string(), "mode off");
        let mut i = inputs(ChargeMode::Now, 0.0, 0.0);
        i.status = VehicleStatus::Unplugged;
        assert_eq!(l.step(s(1), &i).reason, LoadpointReason::NoVehicle);
        i.status = VehicleStatus::Fault;
        let out = l.step(s(2), &i);
        assert!(!out.enabled && out.current.is_zero());
        assert_eq!(out.reason, LoadpointReason::ChargerFault);
    }

    #[test]
    fn now_charges_at_the_maximum_whatever_the_surplus() {
        let mut l = lp(base());
        let out = l.step(s(0), &inputs(ChargeMode::Now, 5_000.0, 0.0));
        assert!(out.enabled);
        assert_eq!(out.current.tenths(), 160);
        assert_eq!(out.reason.to_string(), "now: maximum current 16.0 A");
    }

    #[test]
    fn minpv_charges_at_least_the_minimum_and_more_from_surplus() {
        let mut l = lp(base());
        let out = l.step(s(0), &inputs(ChargeMode::MinPv, 200.0, 0.0));
        assert!(out.enabled);
        assert_eq!(out.current.tenths(), 60);
        // Car draws 1380 W, site exports 920 W: surplus 2300 W = 10 A on one phase.
        let out = l.step(s(1), &inputs(ChargeMode::MinPv, -920.0, 1380.0));
        assert_eq!(out.current.tenths(), 100);
        assert_eq!(out.reason.to_string(), "pv surplus 2.3 kW (10.0 A)");
    }

    #[test]
    fn pv_starts_only_after_the_enable_delay() {
        let mut l = lp(base());
        // 1.5 kW export, minimum on one phase is 1.38 kW.
        let out = l.step(s(0), &inputs(ChargeMode::Pv, -1_500.0, 0.0));
        assert!(!out.enabled);
        assert_eq!(out.reason.to_string(), "waiting for surplus (enable delay 60 s)");
        let out = l.step(s(18), &inputs(ChargeMode::Pv, -1_500.0, 0.0));
        assert_eq!(out.reason.to_string(), "waiting for surplus (enable delay 42 s)");
        // A dip resets the delay.
        let out = l.step(s(30), &inputs(ChargeMode::Pv, -1_000.0, 0.0));
        assert_eq!(out.reason.to_string(), "waiting for surplus (1.0 kW < 1.4 kW minimum)");
        assert!(!l.step(s(31), &inputs(ChargeMode::Pv, -1_500.0, 0.0)).enabled);
        assert!(!l.step(s(90), &inputs(ChargeMode::Pv, -1_500.0, 0.0)).enabled);
        let out = l.step(s(91), &inputs(ChargeMode::Pv, -1_500.0, 0.0));
        assert!(out.enabled);
        assert_eq!(out.current.tenths(), 65, "1500 W / 230 V rounded down");
    }

    #[test]
    fn pv_stops_only_after_the_disable_delay() {
        let mut l = lp(base());
        let _ = l.step(s(0), &inputs(ChargeMode::Pv, -2_000.0, 0.0));
        assert!(l.step(s(60), &inputs(ChargeMode::Pv, -2_000.0, 0.0)).enabled);
        // Cloud: the car draws 1380 W at the minimum and the site imports 500 W.
        let out = l.step(s(100), &inputs(ChargeMode::Pv, 500.0, 1_380.0));
        assert!(out.enabled);
        assert_eq!(out.current.tenths(), 60);
        assert_eq!(out.reason.to_string(), "pv surplus 0.9 kW below 1.4 kW minimum (disable delay 180 s)");
        assert!(l.step(s(279), &inputs(ChargeMode::Pv, 500.0, 1_380.0)).enabled);
        let out = l.step(s(280), &inputs(ChargeMode::Pv, 500.0, 1_380.0));
        assert!(!out.enabled && out.current.is_zero());
        // And it needs the enable delay again to restart.
        assert!(!l.step(s(281), &inputs(ChargeMode::Pv, -2_000.0, 0.0)).enabled);
        assert!(l.step(s(341), &inputs(ChargeMode::Pv, -2_000.0, 0.0)).enabled);
    }

    #[test]
    fn the_battery_discharge_is_never_surplus_and_its_charge_only_with_the_flag() {
        // Grid 0, car 2 kW, battery discharging 2 kW into the car: no surplus at all.
        assert_eq!(surplus(w(2_000.0), Watts::ZERO, w(2_000.0), true), Watts::ZERO);
        assert_eq!(surplus(w(2_000.0), Watts::ZERO, w(2_000.0), false), Watts::ZERO);
        // Battery charging 1 kW while the grid is balanced.
        assert_eq!(surplus(Watts::ZERO, Watts::ZERO, w(-1_000.0), false), Watts::ZERO);
        assert_eq!(surplus(Watts::ZERO, Watts::ZERO, w(-1_000.0), true), w(1_000.0));
        // The car's own draw counts: 1 kW car + 500 W export = 1.5 kW.
        assert_eq!(surplus(w(1_000.0), w(-500.0), Watts::ZERO, false), w(1_500.0));
    }

    #[test]
    fn a_one_phase_car_on_a_three_phase_charger_is_controlled_on_one_phase() {
        let mut l = lp(base());
        let mut i = inputs(ChargeMode::MinPv, -920.0, 1_380.0);
        i.switched_phases = Phases::Three;
        i.drawing_phases = Some(Phases::One);
        assert_eq!(l.step(s(0), &i).current.tenths(), 100);
    }

    fn switching() -> LoadpointConfig {
        LoadpointConfig { charger_can_switch_phases: true, vehicle_can_switch_phases: true, ..base() }
    }

    /// Feed the output phases back as the charger's phases, at a fixed surplus.
    fn run(
        l: &mut Loadpoint,
        from: u64,
        to: u64,
        phases: &mut Phases,
        export: f32,
    ) -> Option<LoadpointOutput> {
        let mut last = None;
        for t in from..=to {
            let mut i = inputs(ChargeMode::Pv, -export, 0.0);
            i.switched_phases = *phases;
            let out = l.step(s(t), &i);
            *phases = out.phases;
            last = Some(out);
        }
        last
    }

    #[test]
    fn phases_switch_up_after_the_delay_through_a_pause() {
        let mut l = lp(switching());
        let mut p = Phases::One;
        // 5 kW surplus: above the three-phase minimum 4.14 kW.
        let out = run(&mut l, 0, 59, &mut p, 5_000.0).unwrap();
        assert_eq!(p, Phases::One);
        assert_eq!(out.reason.to_string(), "waiting for surplus (enable delay 1 s)");
        // The switch up and the start are due together: the switch goes first, and charging
        // starts on three phases right after it.
        let out = run(&mut l, 60, 60, &mut p, 5_000.0).unwrap();
        assert!(!out.enabled && out.current.is_zero());
        assert_eq!(out.reason.to_string(), "phase switch to 3p: charging paused (120 s)");
        let out = run(&mut l, 61, 179, &mut p, 5_000.0).unwrap();
        assert_eq!((p, out.enabled), (Phases::One, false));
        let out = run(&mut l, 180, 180, &mut p, 5_000.0).unwrap();
        assert_eq!((p, out.enabled), (Phases::Three, false));
        assert_eq!(l.last_phase_switch(), Some(s(180)));
        let out = run(&mut l, 181, 181, &mut p, 5_000.0).unwrap();
        assert!(out.enabled);
        assert_eq!(out.current.tenths(), 72, "5000 W / 690 W per A");
    }

    #[test]
    fn the_dwell_time_blocks_a_switch_back() {
        let mut l = lp(switching());
        let mut p = Phases::One;
        let _ = run(&mut l, 0, 181, &mut p, 5_000.0);
        assert_eq!(p, Phases::Three);
        // The surplus falls below the three-phase minimum: down after the disable delay, but
        // not before the dwell time since the switch at 180 s has passed.
        let out = run(&mut l, 182, 400, &mut p, 2_000.0).unwrap();
        assert_eq!(p, Phases::Three);
        assert_eq!(out.phase_block, Some(PhaseBlock::Dwell { remaining: s(780 - 400) }));
        assert_eq!(
            out.phase_block.unwrap().to_string(),
            "phase switch blocked: minimum dwell time (380 s left)"
        );
        let _ = run(&mut l, 401, 1_000, &mut p, 2_000.0);
        assert_eq!(p, Phases::One);
        assert_eq!(l.last_phase_switch(), Some(s(900)));
    }

    #[test]
    fn a_vehicle_that_cannot_switch_keeps_its_phases() {
        let mut l = lp(LoadpointConfig { vehicle_can_switch_phases: false, ..switching() });
        let mut p = Phases::One;
        let out = run(&mut l, 0, 3_600, &mut p, 8_000.0).unwrap();
        assert_eq!(p, Phases::One);
        assert!(out.enabled);
        assert_eq!(out.current.tenths(), 160);
        assert_eq!(out.phase_block.unwrap().to_string(), "phase switch blocked: vehicle cannot switch");
        assert_eq!(out.reason.to_string(), "pv surplus 8.0 kW (16.0 A)");
    }

    #[test]
    fn now_switches_to_three_phases_when_allowed() {
        let mut l = lp(switching());
        let mut i = inputs(ChargeMode::Now, 0.0, 0.0);
        let out = l.step(s(0), &i);
        assert!(!out.enabled);
        i.switched_phases = out.phases;
        let out = l.step(s(120), &i);
        assert_eq!(out.phases, Phases::Three);
        i.switched_phases = out.phases;
        let out = l.step(s(121), &i);
        assert!(out.enabled);
        assert_eq!(out.current.tenths(), 160);
    }
}
