//! The EMS is the sole close authority: for any sequence of measurements, read-backs, faults,
//! black-start requests and resets, the breaker is never commanded closed while any close
//! condition is false. The conditions are recomputed here by an independent oracle (its own
//! enter-service timer, its own synchro-check), not read from the sequencer.

// Test helpers outside #[test] functions unwrap (a failure should abort loudly) and turn small
// exact step counts and millisecond offsets into f32.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::cast_precision_loss)]

use ems_core::snapshot::GridTie;
use ems_core::{Hertz, Millis, Percent, Volts, Watts};
use ems_grid::island::{
    BreakerCommand, Degrees, GridState, InverterCommand, InverterMode, IslandInputs, IslandSequencer,
    IslandSettings, LoadCircuit, LoadMask, Side,
};
use proptest::prelude::*;

const UN: f32 = 230.0;

fn side(v: Option<f32>, f: Option<f32>) -> Side {
    Side { voltage: v.map(|v| Volts::try_new(v).unwrap()), frequency: f.map(|f| Hertz::try_new(f).unwrap()) }
}

fn grid_strategy() -> impl Strategy<Value = (Option<f32>, Option<f32>)> {
    prop_oneof![
        4 => Just((Some(UN), Some(50.0))),
        1 => Just((Some(195.5), Some(49.9))),
        1 => Just((Some(253.0), Some(50.1))),
        1 => Just((Some(195.4), Some(50.0))),
        1 => Just((Some(UN), Some(50.2))),
        1 => Just((Some(0.0), None)),
        1 => Just((None, None)),
        1 => Just((Some(UN), None)),
        1 => (150.0f32..300.0, 47.0f32..53.0).prop_map(|(v, f)| (Some(v), Some(f))),
    ]
}

fn bus_strategy() -> impl Strategy<Value = Option<(Option<f32>, Option<f32>)>> {
    prop_oneof![
        3 => Just(None), // follow the plant
        1 => Just(Some((Some(UN), Some(50.0)))),
        1 => Just(Some((Some(UN), Some(50.4)))),
        1 => Just(Some((Some(0.0), None))),
        1 => Just(Some((Some(20.0), Some(50.0)))),
        1 => Just(Some((None, None))),
        1 => Just(Some((Some(200.0), Some(50.0)))),
    ]
}

#[derive(Debug, Clone)]
struct Segment {
    grid: (Option<f32>, Option<f32>),
    bus: Option<(Option<f32>, Option<f32>)>,
    phase: Option<Option<f32>>,
    breaker: Option<Option<GridTie>>,
    inverter: Option<Option<InverterMode>>,
    fault: bool,
    available: f32,
    soc: Option<f32>,
    action: u8,
    dt: u64,
    repeat: u16,
}

fn segment() -> impl Strategy<Value = Segment> {
    (
        grid_strategy(),
        bus_strategy(),
        prop_oneof![3 => Just(None), 1 => prop_oneof![Just(None), (-180.0f32..180.0).prop_map(Some)].prop_map(Some)],
        prop_oneof![
            3 => Just(None),
            1 => prop_oneof![Just(None), Just(Some(GridTie::Open)), Just(Some(GridTie::Closed))].prop_map(Some)
        ],
        prop_oneof![
            3 => Just(None),
            1 => prop_oneof![
                Just(None),
                Just(Some(InverterMode::Off)),
                Just(Some(InverterMode::GridForming)),
                Just(Some(InverterMode::GridFollowing))
            ]
            .prop_map(Some)
        ],
        prop::bool::weighted(0.1),
        prop_oneof![Just(0.0f32), Just(5000.0f32), 0.0f32..6000.0],
        prop_oneof![Just(None), (0.0f32..100.0).prop_map(Some)],
        0u8..10,
        prop_oneof![Just(100u64), Just(1000u64), 50u64..5000],
        1u16..120,
    )
        .prop_map(|(grid, bus, phase, breaker, inverter, fault, available, soc, action, dt, repeat)| Segment {
            grid,
            bus,
            phase,
            breaker,
            inverter,
            fault,
            available,
            soc,
            action,
            dt,
            repeat,
        })
}

/// The oracle's own enter-service timer.
#[derive(Default)]
struct Oracle {
    inside_since: Option<u64>,
}

impl Oracle {
    fn inside(g: &Side) -> bool {
        matches!((g.voltage, g.frequency), (Some(v), Some(f))
            if (195.5..=253.0).contains(&v.get()) && (49.9..=50.1).contains(&f.get()))
    }

    fn update(&mut self, now: u64, g: &Side) -> bool {
        if Self::inside(g) {
            let s = *self.inside_since.get_or_insert(now);
            now - s >= 60_000
        } else {
            self.inside_since = None;
            false
        }
    }
}

fn in_sync_or_dead(i: &IslandInputs) -> bool {
    let dead = i.inverter == Some(InverterMode::Off) && i.bus.voltage.is_some_and(|v| v.get() < 23.0);
    let sync = match (i.grid.voltage, i.grid.frequency, i.bus.voltage, i.bus.frequency, i.phase_difference) {
        (Some(gv), Some(gf), Some(bv), Some(bf), Some(p)) => {
            (gf.get() - bf.get()).abs() <= 0.3 + 1e-4
                && (gv.get() - bv.get()).abs() <= 23.0 + 1e-3
                && p.get().abs() <= 20.0
        }
        _ => false,
    };
    dead || sync
}

fn loads() -> [LoadCircuit; 3] {
    [
        LoadCircuit { name: "a", priority: 0, nominal: ems_core::watts!(500.0) },
        LoadCircuit { name: "b", priority: 1, nominal: ems_core::watts!(1000.0) },
        LoadCircuit { name: "c", priority: 2, nominal: ems_core::watts!(2000.0) },
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_breaker_is_never_commanded_closed_with_a_condition_false(
        start_closed in any::<bool>(),
        segments in prop::collection::vec(segment(), 1..40),
    ) {
        let settings = IslandSettings::en50549_vde4105(Volts::try_new(UN).unwrap());
        let mut seq = IslandSequencer::try_new(settings, ems_core::watts!(5000.0), &loads()).unwrap();
        let mut oracle = Oracle::default();
        let mut breaker = if start_closed { GridTie::Closed } else { GridTie::Open };
        let mut inverter = InverterMode::Off;
        let mut relays = LoadMask::NONE;
        let mut now = 0u64;
        let mut last_open: Option<u64> = None;
        for s in &segments {
            match s.action {
                0 => seq.request_black_start(),
                1 => { seq.reset(Millis::new(now)); }
                _ => {}
            }
            for _ in 0..s.repeat {
                now += s.dt;
                let grid = side(s.grid.0, s.grid.1);
                let breaker_in = s.breaker.unwrap_or(Some(breaker));
                let inverter_in = s.inverter.unwrap_or(Some(inverter));
                let bus = match s.bus {
                    Some((v, f)) => side(v, f),
                    None => match (breaker, inverter) {
                        (GridTie::Closed, _) => grid,
                        (GridTie::Open, InverterMode::GridForming) => side(Some(UN), grid.frequency.map(|f| f.get()).or(Some(50.0))),
                        (GridTie::Open, _) => side(Some(0.0), None),
                    },
                };
                let phase = match s.phase {
                    Some(p) => p.map(|p| Degrees::try_new(p).unwrap()),
                    None => Some(Degrees::ZERO),
                };
                let inputs = IslandInputs {
                    grid,
                    bus,
                    phase_difference: phase,
                    breaker: breaker_in,
                    inverter: inverter_in,
                    inverter_fault: s.fault,
                    loads: Some(relays),
                    island_load: Some(Watts::ZERO),
                    available: Watts::try_new(s.available).unwrap(),
                    soc: s.soc.map(|x| Percent::try_new(x).unwrap()),
                };
                let healthy = oracle.update(now, &grid);
                let out = seq.step(Millis::new(now), &inputs);
                if out.breaker == BreakerCommand::Close {
                    prop_assert!(healthy, "close with the grid not healthy for 60 s at {now}");
                    prop_assert_eq!(breaker_in, Some(GridTie::Open), "close without a verified open breaker");
                    prop_assert!(in_sync_or_dead(&inputs), "close neither synchronised nor onto a dead bus: {:?}", inputs);
                    prop_assert!(!s.fault, "close with an inverter fault");
                    prop_assert!(out.state != GridState::SafeStop);
                    prop_assert!(out.detection.trip.is_none());
                    prop_assert!(out.close.all());
                }
                // The plant follows.
                match out.breaker {
                    BreakerCommand::Open => breaker = GridTie::Open,
                    BreakerCommand::Close => breaker = GridTie::Closed,
                    BreakerCommand::Hold => {}
                }
                inverter = match out.inverter {
                    InverterCommand::Off => InverterMode::Off,
                    InverterCommand::GridFollowing => InverterMode::GridFollowing,
                    InverterCommand::GridForming | InverterCommand::Synchronise => InverterMode::GridForming,
                };
                // Never grid-forming onto a breaker that reads closed, nor longer than the 2 s
                // verify time without a good open read-back.
                if breaker_in == Some(GridTie::Open) {
                    last_open = Some(now);
                }
                if out.inverter == InverterCommand::GridForming || out.inverter == InverterCommand::Synchronise {
                    prop_assert!(breaker_in != Some(GridTie::Closed), "forming onto a closed breaker");
                    prop_assert!(last_open.is_some_and(|t| now - t < 2_000 + s.dt), "forming without an open read-back");
                }
                relays = out.loads;
            }
        }
    }
}
