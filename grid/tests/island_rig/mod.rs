//! A tiny plant for the island sequence tests: a breaker, an inverter and load relays that
//! follow their commands (unless a fault is set), a bus that the inverter forms, a grid whose
//! voltage and frequency the test sets.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use ems_core::snapshot::GridTie;
use ems_core::{Hertz, Millis, Percent, Volts, Watts};
use ems_grid::island::{
    BreakerCommand, Degrees, InverterCommand, InverterMode, IslandInputs, IslandOutput, IslandSequencer,
    IslandSettings, LoadCircuit, LoadMask, Side,
};

pub(crate) const UN: Volts = ems_core::volts!(230.0);
pub(crate) const RATED: Watts = ems_core::watts!(5000.0);

pub(crate) fn loads() -> [LoadCircuit; 5] {
    [
        LoadCircuit { name: "ev charger", priority: 3, nominal: ems_core::watts!(3700.0) },
        LoadCircuit { name: "fridge", priority: 0, nominal: ems_core::watts!(300.0) },
        LoadCircuit { name: "heat pump", priority: 2, nominal: ems_core::watts!(1500.0) },
        LoadCircuit { name: "lights", priority: 0, nominal: ems_core::watts!(200.0) },
        LoadCircuit { name: "sockets", priority: 1, nominal: ems_core::watts!(800.0) },
    ]
}

pub(crate) fn settings() -> IslandSettings {
    IslandSettings::en50549_vde4105(UN)
}

#[derive(Debug)]
pub(crate) struct Rig {
    pub(crate) seq: IslandSequencer,
    pub(crate) now: Millis,
    pub(crate) grid: Side,
    pub(crate) breaker: GridTie,
    pub(crate) breaker_stuck: bool,
    pub(crate) inverter: InverterMode,
    pub(crate) inverter_refuses_forming: bool,
    pub(crate) inverter_cannot_sync: bool,
    pub(crate) inverter_fault: bool,
    pub(crate) phase: f32,
    pub(crate) relays: LoadMask,
    pub(crate) available: Watts,
    pub(crate) soc: Option<Percent>,
    pub(crate) last: Option<IslandOutput>,
    pub(crate) log: Vec<(Millis, IslandOutput)>,
}

pub(crate) fn healthy_grid() -> Side {
    Side { voltage: Some(UN), frequency: Some(ems_core::hertz!(50.0)) }
}

pub(crate) fn dead_grid() -> Side {
    Side { voltage: Some(Volts::ZERO), frequency: None }
}

impl Rig {
    pub(crate) fn new(breaker: GridTie) -> Self {
        let all = LoadMask::from_bits(0b1_1111);
        Self {
            seq: IslandSequencer::try_new(settings(), RATED, &loads()).unwrap(),
            now: Millis::ZERO,
            grid: healthy_grid(),
            breaker,
            breaker_stuck: false,
            inverter: InverterMode::Off,
            inverter_refuses_forming: false,
            inverter_cannot_sync: false,
            inverter_fault: false,
            phase: 90.0,
            relays: if breaker == GridTie::Closed { all } else { LoadMask::NONE },
            available: RATED,
            soc: Some(ems_core::percent!(80.0)),
            last: None,
            log: Vec::new(),
        }
    }

    pub(crate) fn bus(&self) -> Side {
        match (self.breaker, self.inverter) {
            (GridTie::Closed, _) => self.grid,
            (GridTie::Open, InverterMode::GridForming) => {
                Side { voltage: Some(UN), frequency: Some(self.bus_frequency()) }
            }
            (GridTie::Open, InverterMode::Off | InverterMode::GridFollowing) => {
                Side { voltage: Some(Volts::ZERO), frequency: None }
            }
        }
    }

    fn bus_frequency(&self) -> Hertz {
        let syncing = self.last.as_ref().is_some_and(|o| o.inverter == InverterCommand::Synchronise);
        match (syncing && !self.inverter_cannot_sync, self.grid.frequency) {
            (true, Some(f)) => f,
            _ => ems_core::hertz!(50.0),
        }
    }

    pub(crate) fn island_load(&self) -> Watts {
        if self.breaker == GridTie::Open && self.inverter == InverterMode::GridForming {
            loads()
                .iter()
                .enumerate()
                .filter(|(i, _)| self.relays.contains(*i))
                .fold(Watts::ZERO, |s, (_, l)| s + l.nominal)
        } else {
            Watts::ZERO
        }
    }

    pub(crate) fn inputs(&self) -> IslandInputs {
        let bus = self.bus();
        let phase = match (self.breaker, bus.voltage, self.grid.voltage) {
            (GridTie::Closed, _, _) => Some(Degrees::ZERO),
            (GridTie::Open, Some(b), Some(g))
                if b > ems_core::volts!(100.0) && g > ems_core::volts!(100.0) =>
            {
                Some(Degrees::try_new(self.phase).unwrap())
            }
            _ => None,
        };
        IslandInputs {
            grid: self.grid,
            bus,
            phase_difference: phase,
            breaker: Some(self.breaker),
            inverter: Some(self.inverter),
            inverter_fault: self.inverter_fault,
            loads: Some(self.relays),
            island_load: Some(self.island_load()),
            available: self.available,
            soc: self.soc,
        }
    }

    /// One cycle of `dt`: the sequence sees the plant, then the plant follows the commands.
    pub(crate) fn step(&mut self, dt_ms: u64) -> IslandOutput {
        self.now = self.now.plus(Millis::new(dt_ms));
        let out = self.seq.step(self.now, &self.inputs());
        if !self.breaker_stuck {
            match out.breaker {
                BreakerCommand::Open => self.breaker = GridTie::Open,
                BreakerCommand::Close => self.breaker = GridTie::Closed,
                BreakerCommand::Hold => {}
            }
        }
        self.inverter = match out.inverter {
            InverterCommand::Off => InverterMode::Off,
            InverterCommand::GridFollowing => InverterMode::GridFollowing,
            InverterCommand::GridForming | InverterCommand::Synchronise if self.inverter_refuses_forming => {
                InverterMode::Off
            }
            InverterCommand::GridForming | InverterCommand::Synchronise => InverterMode::GridForming,
        };
        if out.inverter == InverterCommand::Synchronise && !self.inverter_cannot_sync {
            self.phase = (self.phase * 0.5).min(self.phase - 1.0).max(0.0);
        }
        self.relays = out.loads;
        self.last = Some(out.clone());
        self.log.push((self.now, out.clone()));
        out
    }

    /// Step `dt_ms` until `pred` holds or `max_ms` passed; returns the output that satisfied it.
    pub(crate) fn run_until(
        &mut self,
        dt_ms: u64,
        max_ms: u64,
        pred: impl Fn(&IslandOutput) -> bool,
    ) -> Option<IslandOutput> {
        let end = self.now.plus(Millis::new(max_ms));
        while self.now < end {
            let o = self.step(dt_ms);
            if pred(&o) {
                return Some(o);
            }
        }
        None
    }

    pub(crate) fn run(&mut self, dt_ms: u64, ms: u64) {
        let end = self.now.plus(Millis::new(ms));
        while self.now < end {
            self.step(dt_ms);
        }
    }
}
