//! The island parts of the simulated site: a grid that can fail and return (and come back out
//! of its window), a grid-tie breaker with read-back and fault modes, an inverter that is
//! grid-following or grid-forming (with a soft start, droop and synchronisation), switchable
//! load circuits with relay read-back and a battery energy store — composed into
//! [`SimIsland`], stepped with [`SimIsland::step`].
//!
//! The models are deliberately simple, and they keep the quantities that the island sequence
//! must get right honest:
//!
//! * the bus is live only when the breaker is closed onto a live grid or the inverter forms it;
//! * a grid-following inverter without a grid stops (anti-islanding), so its power is zero;
//! * closing the breaker with both sides live and out of synchronism (|Δφ| > 20° or |Δf| >
//!   0.3 Hz) is counted as an **out-of-phase close** — a hard violation for the test runner —
//!   and so is a grid-forming inverter connected to a live grid for longer than the 300 ms
//!   hand-over to grid-following after a close (**forming onto the grid**);
//! * an island load above the inverter's rating (or with an empty battery) collapses the bus
//!   and the inverter trips (`overload_trips`).
//!
//! Numbers (all **Assumption**, for a 230 V / 50 Hz LV site): breaker operating time 60 ms,
//! inverter mode switch 200 ms, soft start 1 s, droop 0.5 Hz at rated power, synchronising at
//! up to 0.2 Hz of frequency offset (the phase closes at ≤ 72°/s), overload trip after 1 s.

use ems_core::snapshot::{GridMode, GridTie, FAST_MAX_AGE, SLOW_MAX_AGE};
use ems_core::{Hertz, Measurement, Millis, Percent, Snapshot, Volts, WattHours, Watts};

/// Nominal voltage of the simulated LV grid.
pub const SIM_UN: f32 = 230.0;
/// Nominal frequency.
pub const SIM_FN: f32 = 50.0;
/// Breaker operating time.
pub const BREAKER_OPERATING_MS: u64 = 60;
/// Inverter mode-switch time.
pub const MODE_SWITCH_MS: u64 = 200;
/// After a synchronised close the inverter may stay grid-forming in parallel with the grid
/// this long (its mode switch to grid-following); longer counts as forming onto the grid.
pub const HANDOVER_MS: u64 = 300;
/// Grid-forming soft start (voltage ramp 0 → Un).
pub const SOFT_START_MS: u64 = 1_000;
/// Droop: frequency drop at rated power.
pub const DROOP_HZ: f32 = 0.5;
/// Largest frequency offset the inverter uses to close the phase while synchronising.
pub const SYNC_OFFSET_HZ: f32 = 0.2;
/// Frequency offset of an inverter that cannot synchronise.
pub const SYNC_FAULT_OFFSET_HZ: f32 = 0.5;
/// Overload duration before the inverter trips.
pub const OVERLOAD_TRIP_MS: u64 = 1_000;
/// Out-of-phase limit counted as a violation.
pub const MAX_CLOSE_PHASE_DEG: f32 = 20.0;
/// Out-of-frequency limit counted as a violation.
pub const MAX_CLOSE_DF_HZ: f32 = 0.3;

/// What the grid does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GridCondition {
    /// Nominal voltage and frequency.
    Normal,
    /// Gone: no voltage, no frequency.
    Lost,
    /// Live but at this voltage and frequency (possibly outside the enter-service window).
    Disturbed {
        /// Voltage.
        voltage: Volts,
        /// Frequency.
        frequency: Hertz,
    },
    /// Falling or rising frequency (a RoCoF event) from nominal at `hz_per_s`, limited to
    /// 45..=55 Hz.
    FrequencyRamp {
        /// Rate, Hz per second (negative: falling).
        hz_per_s: f32,
        /// When it started.
        since: Millis,
    },
}

/// A grid supply that fails and returns.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimGridSupply {
    condition: GridCondition,
    /// Phase of the grid voltage, degrees (free-running at the grid frequency vs 50 Hz).
    phase: f64,
}

impl Default for SimGridSupply {
    fn default() -> Self {
        Self { condition: GridCondition::Normal, phase: 0.0 }
    }
}

impl SimGridSupply {
    /// Set the condition.
    pub fn set(&mut self, condition: GridCondition) {
        self.condition = condition;
    }

    /// The condition.
    #[must_use]
    pub fn condition(&self) -> GridCondition {
        self.condition
    }

    /// Whether the grid is live.
    #[must_use]
    pub fn live(&self) -> bool {
        !matches!(self.condition, GridCondition::Lost)
    }

    /// Voltage as the meter reads it (0 V when the grid is gone: a meter still measures a dead
    /// line; `None` is kept for a meter that cannot read).
    #[must_use]
    pub fn voltage(&self) -> Option<Volts> {
        match self.condition {
            GridCondition::Normal | GridCondition::FrequencyRamp { .. } => Some(Volts::saturating(SIM_UN)),
            GridCondition::Lost => Some(Volts::ZERO),
            GridCondition::Disturbed { voltage, .. } => Some(voltage),
        }
    }

    /// Frequency at `now`.
    #[must_use]
    pub fn frequency(&self, now: Millis) -> Option<Hertz> {
        match self.condition {
            GridCondition::Normal => Some(Hertz::saturating(SIM_FN)),
            GridCondition::Lost => None,
            GridCondition::Disturbed { frequency, .. } => Some(frequency),
            GridCondition::FrequencyRamp { hz_per_s, since } => {
                let f = (SIM_FN + hz_per_s * now.since(since).as_secs_f32()).clamp(45.0, 55.0);
                Some(Hertz::saturating(f))
            }
        }
    }
}

/// A fault of the breaker mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BreakerFault {
    /// Works.
    #[default]
    None,
    /// Stays closed when told to open (welded contacts, failed trip coil).
    FailsToOpen,
    /// Stays open when told to close.
    FailsToClose,
}

/// What the breaker is told (an operation; it latches).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimBreakerCommand {
    /// Leave it.
    Hold,
    /// Open.
    Open,
    /// Close.
    Close,
}

/// The grid-tie breaker: operates after [`BREAKER_OPERATING_MS`], its read-back is its contact.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimBreaker {
    position: GridTie,
    pending: Option<(GridTie, u64)>,
    fault: BreakerFault,
    /// The read-back is lost (reads as not good).
    pub readback_lost: bool,
}

impl SimBreaker {
    /// A breaker in `position`.
    #[must_use]
    pub fn new(position: GridTie) -> Self {
        Self { position, pending: None, fault: BreakerFault::None, readback_lost: false }
    }

    /// The contact position (truth).
    #[must_use]
    pub fn position(&self) -> GridTie {
        self.position
    }

    /// The read-back (`None` when lost).
    #[must_use]
    pub fn readback(&self) -> Option<GridTie> {
        (!self.readback_lost).then_some(self.position)
    }

    /// Set a mechanism fault.
    pub fn set_fault(&mut self, fault: BreakerFault) {
        self.fault = fault;
    }
}

/// The inverter's mode as commanded to the simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimInverterMode {
    /// Not switching.
    Off,
    /// Grid-following.
    GridFollowing,
    /// Grid-forming at nominal.
    GridForming,
    /// Grid-forming, steering onto the grid's frequency and phase.
    Synchronise,
}

/// The battery inverter's AC side in island terms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimFormingInverter {
    rating: Watts,
    mode: SimInverterMode,
    target: SimInverterMode,
    switch_at: Option<u64>,
    forming_since: Option<u64>,
    overload_since: Option<u64>,
    phase: f64,
    frequency: f32,
    /// Refuses grid-forming (stays off when told to form).
    pub cannot_form: bool,
    /// Does not synchronise: told to, it runs [`SYNC_FAULT_OFFSET_HZ`] above the grid (a
    /// governor fault), so Δf stays outside any synchro-check.
    pub cannot_sync: bool,
    /// Tripped (overload or injected); cleared by a command to `Off`.
    pub faulted: bool,
}

impl SimFormingInverter {
    /// An inverter of `rating`, off.
    #[must_use]
    pub fn new(rating: Watts) -> Self {
        Self {
            rating,
            mode: SimInverterMode::Off,
            target: SimInverterMode::Off,
            switch_at: None,
            forming_since: None,
            overload_since: None,
            phase: 90.0,
            frequency: SIM_FN,
            cannot_form: false,
            cannot_sync: false,
            faulted: false,
        }
    }

    /// The mode it operates in (read-back); `Synchronise` reads as grid-forming.
    #[must_use]
    pub fn mode(&self) -> SimInverterMode {
        match self.mode {
            SimInverterMode::Synchronise => SimInverterMode::GridForming,
            m => m,
        }
    }

    fn forming(&self) -> bool {
        matches!(self.mode, SimInverterMode::GridForming | SimInverterMode::Synchronise) && !self.faulted
    }
}

/// One load circuit behind a relay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimLoadCircuit {
    /// Name.
    pub name: &'static str,
    /// Power drawn when energised and the bus is live.
    pub power: Watts,
    /// Relay closed.
    pub on: bool,
    /// The relay is stuck (does not follow its command).
    pub stuck: bool,
}

/// The most circuits the simulator holds.
pub const SIM_MAX_LOADS: usize = 16;

/// What the island plant measures, for the sequence's inputs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IslandReadings {
    /// Grid-side voltage.
    pub grid_voltage: Option<Volts>,
    /// Grid-side frequency.
    pub grid_frequency: Option<Hertz>,
    /// Bus voltage (0 V when dead).
    pub bus_voltage: Volts,
    /// Bus frequency (`None` when dead).
    pub bus_frequency: Option<Hertz>,
    /// Bus phase minus grid phase, degrees in -180..=180 (`None` unless both are live).
    pub phase_difference: Option<f32>,
    /// Breaker read-back.
    pub breaker: Option<GridTie>,
    /// Inverter mode read-back.
    pub inverter: SimInverterMode,
    /// Inverter faulted.
    pub inverter_fault: bool,
    /// Relay read-back, bit `i` = circuit `i`.
    pub relays: u16,
    /// Inverter AC output (`+` discharge).
    pub inverter_power: Watts,
    /// Discharge power the battery can give (0 when empty).
    pub available: Watts,
    /// State of charge.
    pub soc: Percent,
}

/// Hard violations counted by the plant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IslandViolations {
    /// Breaker closed with both sides live and out of synchronism.
    pub out_of_phase_closes: u32,
    /// Milliseconds a grid-forming inverter was connected to a live grid beyond the
    /// [`HANDOVER_MS`] after a close.
    pub forming_onto_grid_ms: u64,
    /// Inverter trips on island overload.
    pub overload_trips: u32,
}

/// The island plant.
#[derive(Debug, Clone)]
pub struct SimIsland {
    /// The grid.
    pub grid: SimGridSupply,
    /// The grid-tie breaker.
    pub breaker: SimBreaker,
    /// The battery inverter.
    pub inverter: SimFormingInverter,
    loads: heapless::Vec<SimLoadCircuit, SIM_MAX_LOADS>,
    capacity: WattHours,
    stored_wh: f64,
    now: u64,
    parallel_since: Option<u64>,
    violations: IslandViolations,
    inverter_power: f32,
}

fn wrap_deg(d: f64) -> f64 {
    let mut x = d % 360.0;
    if x > 180.0 {
        x -= 360.0;
    } else if x < -180.0 {
        x += 360.0;
    }
    x
}

impl SimIsland {
    /// A plant with an inverter of `rating`, a battery of `capacity` at `soc`, the breaker in
    /// `breaker` and these circuits (at most [`SIM_MAX_LOADS`]; more are ignored), each on
    /// when the breaker starts closed.
    #[must_use]
    pub fn new(
        rating: Watts,
        capacity: WattHours,
        soc: Percent,
        breaker: GridTie,
        loads: &[(&'static str, Watts)],
    ) -> Self {
        let mut v = heapless::Vec::new();
        for (name, power) in loads {
            // At most SIM_MAX_LOADS circuits; the documented behaviour is to ignore the rest.
            let _ =
                v.push(SimLoadCircuit { name, power: *power, on: breaker == GridTie::Closed, stuck: false });
        }
        let mut inverter = SimFormingInverter::new(rating);
        if breaker == GridTie::Closed {
            inverter.mode = SimInverterMode::GridFollowing;
            inverter.target = SimInverterMode::GridFollowing;
        }
        Self {
            grid: SimGridSupply::default(),
            breaker: SimBreaker::new(breaker),
            inverter,
            loads: v,
            capacity,
            stored_wh: f64::from(capacity.get()) * f64::from(soc.fraction()),
            now: 0,
            parallel_since: None,
            violations: IslandViolations::default(),
            inverter_power: 0.0,
        }
    }

    /// The circuits.
    #[must_use]
    pub fn loads(&self) -> &[SimLoadCircuit] {
        &self.loads
    }

    /// Make circuit `i`'s relay stuck (or free it).
    pub fn set_relay_stuck(&mut self, i: usize, stuck: bool) {
        if let Some(l) = self.loads.get_mut(i) {
            l.stuck = stuck;
        }
    }

    /// Drain or fill the battery to `soc`.
    pub fn set_soc(&mut self, soc: Percent) {
        self.stored_wh = f64::from(self.capacity.get()) * f64::from(soc.fraction());
    }

    /// Violations so far.
    #[must_use]
    pub fn violations(&self) -> IslandViolations {
        self.violations
    }

    /// Simulated time since start.
    #[must_use]
    pub fn elapsed(&self) -> Millis {
        Millis::new(self.now)
    }

    /// Take this cycle's commands: the breaker operation, the inverter mode and the relay
    /// positions (bit `i` = circuit `i`).
    pub fn command(&mut self, breaker: SimBreakerCommand, mode: SimInverterMode, relays: u16) {
        self.command_breaker(breaker);
        self.command_mode(mode);
        for i in 0..self.loads.len() {
            let on =
                u32::try_from(i).ok().and_then(|s| 1_u16.checked_shl(s)).is_some_and(|bit| relays & bit != 0);
            self.set_relay(i, on);
        }
    }

    /// Operate the breaker (it latches; a fault may block it).
    pub fn command_breaker(&mut self, breaker: SimBreakerCommand) {
        let b = &mut self.breaker;
        let want = match breaker {
            SimBreakerCommand::Hold => None,
            SimBreakerCommand::Open => Some(GridTie::Open),
            SimBreakerCommand::Close => Some(GridTie::Closed),
        };
        if let Some(w) = want {
            let blocked = matches!(
                (w, b.fault),
                (GridTie::Open, BreakerFault::FailsToOpen) | (GridTie::Closed, BreakerFault::FailsToClose)
            );
            if w != b.position && !blocked && b.pending.is_none() {
                b.pending = Some((w, self.now.saturating_add(BREAKER_OPERATING_MS)));
            }
        }
    }

    /// Command the inverter's mode.
    pub fn command_mode(&mut self, mode: SimInverterMode) {
        let inv = &mut self.inverter;
        if mode == SimInverterMode::Off {
            inv.faulted = false;
        }
        let same_family = matches!(
            (inv.mode, mode),
            (
                SimInverterMode::GridForming | SimInverterMode::Synchronise,
                SimInverterMode::GridForming | SimInverterMode::Synchronise
            )
        );
        if same_family {
            inv.mode = mode;
            inv.target = mode;
        } else if mode != inv.target {
            inv.target = mode;
            inv.switch_at = Some(self.now.saturating_add(MODE_SWITCH_MS));
        }
    }

    /// Set relay `i` (a stuck relay does not follow; an unknown index does nothing).
    pub fn set_relay(&mut self, i: usize, on: bool) {
        if let Some(l) = self.loads.get_mut(i) {
            if !l.stuck {
                l.on = on;
            }
        }
    }

    fn bus_live_from_grid(&self) -> bool {
        self.breaker.position == GridTie::Closed && self.grid.live()
    }

    fn demand(&self) -> f32 {
        self.loads.iter().filter(|l| l.on).map(|l| l.power.get()).sum()
    }

    /// Advance by `dt` (call with steps ≤ 100 ms for the 60 ms breaker to act on time).
    pub fn step(&mut self, dt: Millis) {
        let h = dt.get();
        self.now = self.now.saturating_add(h);
        let now = self.now;
        // Breaker operation completes.
        if let Some((to, at)) = self.breaker.pending {
            if now >= at {
                self.breaker.pending = None;
                if to == GridTie::Closed {
                    self.count_close(now);
                }
                self.breaker.position = to;
            }
        }
        self.step_inverter(now, h);
        // Energy and power.
        let demand = self.demand();
        let forming = self.inverter.forming() && self.breaker.position == GridTie::Open;
        let soft = self.soft_start_fraction(now);
        self.inverter_power = if forming { demand * soft } else { 0.0 };
        let stored = self.stored_wh - f64::from(self.inverter_power) * crate::narrow::f64_of_u64(h) / 3.6e6;
        self.stored_wh = stored.clamp(0.0, f64::from(self.capacity.get()));
        if forming && (demand > self.inverter.rating.get() || self.stored_wh <= 0.0) {
            let since = *self.inverter.overload_since.get_or_insert(now);
            if now.saturating_sub(since) >= OVERLOAD_TRIP_MS {
                self.inverter.faulted = true;
                self.inverter.overload_since = None;
                self.violations.overload_trips = self.violations.overload_trips.saturating_add(1);
            }
        } else {
            self.inverter.overload_since = None;
        }
        if self.inverter.forming() && self.bus_live_from_grid() {
            let since = *self.parallel_since.get_or_insert(now.saturating_sub(h));
            if now.saturating_sub(since) > HANDOVER_MS {
                self.violations.forming_onto_grid_ms = self.violations.forming_onto_grid_ms.saturating_add(h);
            }
        } else {
            self.parallel_since = None;
        }
        // Phases.
        let gf = f64::from(self.grid.frequency(Millis::new(now)).map_or(SIM_FN, |f| f.get()));
        let secs = crate::narrow::f64_of_u64(h) / 1000.0;
        self.grid.phase = wrap_deg(self.grid.phase + 360.0 * (gf - f64::from(SIM_FN)) * secs);
        self.inverter.phase = wrap_deg(
            self.inverter.phase + 360.0 * (f64::from(self.inverter.frequency) - f64::from(SIM_FN)) * secs,
        );
    }

    fn step_inverter(&mut self, now: u64, _h: u64) {
        let grid_f = self.grid.frequency(Millis::new(now)).map(|f| f.get());
        let inv = &mut self.inverter;
        if let Some(at) = inv.switch_at {
            if now >= at {
                inv.switch_at = None;
                inv.mode = match inv.target {
                    SimInverterMode::GridForming | SimInverterMode::Synchronise if inv.cannot_form => {
                        SimInverterMode::Off
                    }
                    m => m,
                };
                if matches!(inv.mode, SimInverterMode::GridForming | SimInverterMode::Synchronise) {
                    inv.forming_since = Some(now);
                    inv.frequency = SIM_FN;
                }
            }
        }
        if !matches!(inv.mode, SimInverterMode::GridForming | SimInverterMode::Synchronise) {
            inv.forming_since = None;
        }
        let rating = inv.rating.get().max(1.0);
        let droop = DROOP_HZ * self.inverter_power / rating;
        let inv = &mut self.inverter;
        inv.frequency = match (inv.mode, grid_f) {
            (SimInverterMode::Synchronise, Some(gf)) if !inv.cannot_sync => {
                // Steer the phase difference to zero: a frequency offset proportional to it.
                let dphi = wrap_deg(inv.phase - self.grid.phase);
                #[allow(clippy::cast_possible_truncation)]
                let offset = (-(dphi as f32) / 90.0 * SYNC_OFFSET_HZ).clamp(-SYNC_OFFSET_HZ, SYNC_OFFSET_HZ);
                gf + offset
            }
            (SimInverterMode::Synchronise, Some(gf)) => gf + SYNC_FAULT_OFFSET_HZ,
            _ => SIM_FN - droop,
        };
    }

    fn soft_start_fraction(&self, now: u64) -> f32 {
        match self.inverter.forming_since {
            Some(s) => {
                let el = now.saturating_sub(s).min(SOFT_START_MS);
                crate::narrow::f32_of(
                    crate::narrow::f64_of_u64(el) / crate::narrow::f64_of_u64(SOFT_START_MS),
                )
            }
            None => 0.0,
        }
    }

    fn count_close(&mut self, now: u64) {
        let grid_live = self.grid.live();
        let bus_live = self.inverter.forming() && self.soft_start_fraction(now) > 0.1;
        if grid_live && bus_live {
            let dphi = wrap_deg(self.inverter.phase - self.grid.phase).abs();
            let gf = self.grid.frequency(Millis::new(now)).map_or(SIM_FN, |f| f.get());
            let df = (gf - self.inverter.frequency).abs();
            if dphi > f64::from(MAX_CLOSE_PHASE_DEG) || df > MAX_CLOSE_DF_HZ {
                self.violations.out_of_phase_closes = self.violations.out_of_phase_closes.saturating_add(1);
            }
        }
    }

    /// Overlay the island signals on a snapshot (after `SimulatedSite::fill_snapshot`): the
    /// grid-side voltage and frequency (invalid while the grid is gone), the breaker read-back
    /// as `grid.tie` (invalid when lost) and the inverter's grid mode (`Off` reads as
    /// grid-following: it cannot hold an island). So the safety interlock "no power in an
    /// island without a grid-forming inverter" sees the simulated island.
    pub fn fill_snapshot(&self, snapshot: &mut Snapshot, now: Millis) {
        let r = self.readings();
        let f = FAST_MAX_AGE;
        snapshot.grid.voltage =
            r.grid_voltage.map_or(Measurement::invalid(Volts::ZERO, f), |v| Measurement::good(v, now, f));
        snapshot.grid.frequency =
            r.grid_frequency.map_or(Measurement::invalid(Hertz::ZERO, f), |v| Measurement::good(v, now, f));
        snapshot.grid.tie =
            Some(r.breaker.map_or(Measurement::invalid(GridTie::Open, f), |t| Measurement::good(t, now, f)));
        let mode = match r.inverter {
            SimInverterMode::GridForming | SimInverterMode::Synchronise if !r.inverter_fault => {
                GridMode::GridForming
            }
            SimInverterMode::GridForming
            | SimInverterMode::Synchronise
            | SimInverterMode::Off
            | SimInverterMode::GridFollowing => GridMode::GridFollowing,
        };
        snapshot.inverter.grid_mode = Measurement::good(mode, now, SLOW_MAX_AGE);
    }

    /// What the plant measures now.
    #[must_use]
    pub fn readings(&self) -> IslandReadings {
        let now = Millis::new(self.now);
        let grid_v = self.grid.voltage();
        let grid_f = self.grid.frequency(now);
        let forming_bus = self.inverter.forming() && self.breaker.position == GridTie::Open;
        let overloaded = self.inverter.overload_since.is_some();
        let (bus_v, bus_f) = if self.bus_live_from_grid() {
            (grid_v.unwrap_or(Volts::ZERO), grid_f)
        } else if forming_bus {
            let sag = if overloaded { 0.8 } else { 1.0 };
            (
                Volts::saturating(SIM_UN * self.soft_start_fraction(self.now) * sag),
                Some(Hertz::saturating(self.inverter.frequency)),
            )
        } else {
            (Volts::ZERO, None)
        };
        let phase = match (self.grid.live(), forming_bus, self.breaker.position) {
            (true, _, GridTie::Closed) => Some(0.0),
            // Narrowing an angle in -180..=180 to f32 loses nothing that matters.
            #[allow(clippy::cast_possible_truncation)]
            (true, true, GridTie::Open) => Some(wrap_deg(self.inverter.phase - self.grid.phase) as f32),
            _ => None,
        };
        let relays = self
            .loads
            .iter()
            .enumerate()
            .filter(|(_, l)| l.on)
            .filter_map(|(i, _)| u32::try_from(i).ok().and_then(|s| 1_u16.checked_shl(s)))
            .fold(0_u16, |m, b| m | b);
        let available = if self.stored_wh > 0.0 { self.inverter.rating } else { Watts::ZERO };
        IslandReadings {
            grid_voltage: grid_v,
            grid_frequency: grid_f,
            bus_voltage: bus_v,
            bus_frequency: bus_f,
            phase_difference: phase,
            breaker: self.breaker.readback(),
            inverter: self.inverter.mode(),
            inverter_fault: self.inverter.faulted,
            relays,
            inverter_power: Watts::saturating(self.inverter_power),
            available,
            soc: Percent::from_fraction(crate::narrow::f32_of(
                self.stored_wh / f64::from(self.capacity.get().max(1.0)),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plant() -> SimIsland {
        SimIsland::new(
            ems_core::watts!(5000.0),
            ems_core::watt_hours!(10_000.0),
            ems_core::percent!(50.0),
            GridTie::Closed,
            &[("fridge", ems_core::watts!(300.0)), ("ev", ems_core::watts!(6000.0))],
        )
    }

    #[test]
    fn breaker_operates_after_its_time_and_faults_block_it() {
        let mut p = plant();
        p.command(SimBreakerCommand::Open, SimInverterMode::Off, 0);
        p.step(Millis::new(50));
        assert_eq!(p.readings().breaker, Some(GridTie::Closed));
        p.step(Millis::new(10));
        assert_eq!(p.readings().breaker, Some(GridTie::Open));
        p.breaker.set_fault(BreakerFault::FailsToClose);
        p.command(SimBreakerCommand::Close, SimInverterMode::Off, 0);
        p.step(Millis::new(500));
        assert_eq!(p.breaker.position(), GridTie::Open);
    }

    #[test]
    fn forming_soft_starts_and_overload_trips() {
        let mut p = plant();
        p.grid.set(GridCondition::Lost);
        p.command(SimBreakerCommand::Open, SimInverterMode::GridForming, 0);
        p.step(Millis::new(100));
        p.command(SimBreakerCommand::Hold, SimInverterMode::GridForming, 0);
        p.step(Millis::new(100));
        assert_eq!(p.readings().inverter, SimInverterMode::GridForming);
        for _ in 0..12 {
            p.step(Millis::new(100));
        }
        let r = p.readings();
        assert!((r.bus_voltage.get() - SIM_UN).abs() < 0.1);
        assert_eq!(r.phase_difference, None, "no grid, no phase difference");
        p.command(SimBreakerCommand::Hold, SimInverterMode::GridForming, 0b11);
        for _ in 0..11 {
            p.step(Millis::new(100));
        }
        assert!(p.readings().inverter_fault);
        assert_eq!(p.violations().overload_trips, 1);
    }

    #[test]
    fn the_snapshot_shows_the_island() {
        let mut p = plant();
        let mut s = Snapshot::unknown(ems_core::watts!(5000.0));
        p.fill_snapshot(&mut s, Millis::ZERO);
        assert!(!s.islanded(Millis::ZERO));
        p.grid.set(GridCondition::Lost);
        p.command(SimBreakerCommand::Open, SimInverterMode::Off, 0);
        p.step(Millis::new(100));
        p.fill_snapshot(&mut s, Millis::new(100));
        assert!(s.islanded(Millis::new(100)));
        assert_eq!(s.grid.frequency.value_at(Millis::new(100)), None);
        assert_eq!(s.inverter.grid_mode.value_at(Millis::new(100)), Some(GridMode::GridFollowing));
    }

    #[test]
    fn closing_out_of_phase_is_counted() {
        let mut p = plant();
        p.grid.set(GridCondition::Lost);
        p.command(SimBreakerCommand::Open, SimInverterMode::GridForming, 0);
        for _ in 0..20 {
            p.step(Millis::new(100));
        }
        p.grid.set(GridCondition::Normal);
        p.step(Millis::new(100));
        assert!(p.readings().phase_difference.is_some_and(|d| d.abs() > 20.0));
        p.command(SimBreakerCommand::Close, SimInverterMode::GridForming, 0);
        p.step(Millis::new(100));
        assert_eq!(p.violations().out_of_phase_closes, 1);
        assert_eq!(p.violations().forming_onto_grid_ms, 0, "within the hand-over");
        for _ in 0..5 {
            p.step(Millis::new(100));
        }
        assert!(p.violations().forming_onto_grid_ms > 0);
    }

    #[test]
    fn synchronising_closes_the_phase() {
        let mut p = plant();
        p.grid.set(GridCondition::Lost);
        p.command(SimBreakerCommand::Open, SimInverterMode::GridForming, 0);
        for _ in 0..20 {
            p.step(Millis::new(100));
        }
        p.grid.set(GridCondition::Normal);
        p.command(SimBreakerCommand::Hold, SimInverterMode::Synchronise, 0);
        for _ in 0..200 {
            p.step(Millis::new(100));
        }
        let d = p.readings().phase_difference.unwrap();
        assert!(d.abs() < 5.0, "{d}");
    }
}
