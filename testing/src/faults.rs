//! Seeded fault plans and the automated operator.
//!
//! A fault plan is a time-ordered list of injections into the simulated site. The automated
//! operator stands in for a person at the site: after an E-stop is released it resets with a
//! reason, after a trip it acknowledges once the fault is gone, and it starts the system again.

use crate::faulty::{DeviceFault, Field};
use crate::scenario::{DeviceId, FaultSpec, PhysicalFault, TimedFault};
use ems_core::event::Signal;
use ems_core::snapshot::{BmsAlarm, BmsAlarms};
use ems_core::{Millis, Watts};
use ems_devices::sim::SimFault;

/// Which faults to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FaultPlan {
    /// No faults.
    #[default]
    None,
    /// A seeded mix per simulated day: E-stop presses, sensor drop-outs, a BMS alarm, an
    /// inverter fault and abnormal cell heating (each cleared after a while).
    Standard,
    /// Seeded random injections of every fault kind — physical (simulator), device-level
    /// (`Faulty<D>`) and gateway crash/restart — at random times with random durations,
    /// [`RANDOM_PER_DAY`] per simulated day, each cleared afterwards. See [`random_timeline`].
    Random,
}

impl FaultPlan {
    /// Parse `none` / `standard` / `random`.
    ///
    /// # Errors
    /// Any other text, with a message naming it and the accepted values.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Self::None),
            "standard" => Ok(Self::Standard),
            "random" => Ok(Self::Random),
            other => Err(format!("--faults: '{other}' is not one of none, standard, random")),
        }
    }
}

/// One scheduled injection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scheduled {
    /// When (simulated ms since start).
    pub at: Millis,
    /// What.
    pub fault: SimFault,
}

/// A small deterministic generator (SplitMix64) so a plan depends only on its seed.
#[derive(Debug, Clone)]
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const DAY_MS: u64 = 86_400_000;

/// Injections per simulated day of [`FaultPlan::Random`].
pub const RANDOM_PER_DAY: u64 = 8;

/// Number of distinct kinds [`random_fault`] chooses from.
pub const RANDOM_KINDS: usize = 25;

const SIGNALS: [Signal; 17] = Signal::ALL;

/// The `kind`-th fault kind (mod [`RANDOM_KINDS`]) with its parameters and duration drawn from
/// `r` (any 64-bit random number; the parameters use independent bit fields of it). Sized so
/// that the physics stay recoverable: heating at most 1.2 kW (the pack sheds that below the trip
/// level at zero power), a runaway-like rise (doubling every 3–6 min) cleared within 10 minutes, E-stops and alarms for
/// minutes, device faults from seconds to ten minutes, crashes down for up to two minutes.
/// Returns the fault and how long it lasts (`None`: instantaneous or self-timed).
#[must_use]
pub fn random_fault(kind: usize, r: u64) -> (FaultSpec, Option<Millis>) {
    let bits = |shift: u32, n: u64| (r >> shift) % n.max(1);
    let secs = |lo: u64, hi: u64| Millis::new((lo + bits(0, hi - lo + 1)) * 1000);
    let device =
        DeviceId::ALL.get(usize::try_from(bits(40, 7)).unwrap_or(0)).copied().unwrap_or(DeviceId::Bms);
    let relay = if bits(40, 2) == 0 { DeviceId::MainRelay } else { DeviceId::PrechargeRelay };
    let phys = |p| FaultSpec::Physical(p);
    match kind % RANDOM_KINDS {
        0 => (phys(PhysicalFault::EStopPress), Some(secs(60, 600))),
        1 => (
            phys(PhysicalFault::CellHeating(Watts::saturating(
                400.0 + 100.0 * f32::from(u8::try_from(bits(40, 9)).unwrap_or(0)),
            ))),
            Some(secs(1800, 7200)),
        ),
        2 => (
            phys(PhysicalFault::CellRunaway {
                initial: ems_core::watts!(200.0),
                doubling: Millis::new(180_000 + bits(40, 4) * 60_000),
            }),
            Some(secs(300, 600)),
        ),
        3 => {
            let alarm = BmsAlarm::ALL
                .get(usize::try_from(bits(40, 7)).unwrap_or(0))
                .copied()
                .unwrap_or(BmsAlarm::Internal);
            (phys(PhysicalFault::BmsAlarm(alarm)), Some(secs(60, 600)))
        }
        4 => (phys(PhysicalFault::InverterFault), Some(secs(60, 600))),
        5 => {
            let signal =
                SIGNALS.get(usize::try_from(bits(40, 17)).unwrap_or(0)).copied().unwrap_or(Signal::Soc);
            (phys(PhysicalFault::SensorDropout(signal)), Some(secs(1, 60)))
        }
        6 => (
            phys(PhysicalFault::CellImbalance(ems_core::Volts::saturating(
                0.02 + 0.01 * f32::from(u8::try_from(bits(40, 6)).unwrap_or(0)),
            ))),
            Some(secs(600, 3600)),
        ),
        7 => (phys(PhysicalFault::ContactorWeld), Some(secs(60, 600))),
        8 => (phys(PhysicalFault::ContactorStuckOpen), Some(secs(60, 600))),
        9 => (phys(PhysicalFault::PrechargeResistorOpen), Some(secs(60, 600))),
        10 => (phys(PhysicalFault::InverterIgnoresSetpoint), Some(secs(10, 600))),
        11 => {
            (phys(PhysicalFault::InverterDelay(Millis::new(500 + bits(40, 10) * 500))), Some(secs(10, 600)))
        }
        12 => (FaultSpec::GatewayCrash { down: Millis::new((5 + bits(40, 116)) * 1000) }, None),
        13 => (FaultSpec::Device(device, DeviceFault::CommLoss), Some(secs(5, 600))),
        14 => (FaultSpec::Device(device, DeviceFault::Timeout), Some(secs(5, 600))),
        15 => (FaultSpec::Device(device, DeviceFault::Frozen), Some(secs(5, 600))),
        16 => (FaultSpec::Device(device, DeviceFault::Garbage), Some(secs(5, 600))),
        17 => (FaultSpec::Device(device, DeviceFault::OutOfRange), Some(secs(5, 600))),
        18 => (FaultSpec::Device(device, DeviceFault::Spike), Some(secs(5, 60))),
        19 => {
            let field =
                Field::ALL.get(usize::try_from(bits(48, 8)).unwrap_or(0)).copied().unwrap_or(Field::Primary);
            (FaultSpec::Device(device, DeviceFault::Stuck(field)), Some(secs(5, 600)))
        }
        20 => (FaultSpec::Device(device, DeviceFault::IgnoreCommands), Some(secs(5, 600))),
        21 => {
            // Relay coils are wired to local I/O with bounded latency (a hardware requirement in
            // docs/SAFETY.md): a contactor command arriving seconds late can close main onto a
            // discharged DC link after the sequencer has given up, which no software can undo.
            // Delays are injected on the bus devices only.
            let device = match device {
                DeviceId::PrechargeRelay | DeviceId::MainRelay => DeviceId::Inverter,
                other => other,
            };
            (
                FaultSpec::Device(device, DeviceFault::Delay(Millis::new(500 + bits(48, 10) * 500))),
                Some(secs(5, 600)),
            )
        }
        22 => (FaultSpec::Device(relay, DeviceFault::RelayWeld), Some(secs(5, 600))),
        23 => (FaultSpec::Physical(PhysicalFault::EStopRelease), None),
        _ => (FaultSpec::Device(DeviceId::EStop, DeviceFault::CommLoss), Some(secs(1, 30))),
    }
}

/// The timeline of [`FaultPlan::Random`] for `duration`: [`RANDOM_PER_DAY`] injections per
/// simulated day (at least one per run) at uniformly random times, cycling through a seeded
/// shuffle of all [`RANDOM_KINDS`] kinds so that every kind appears once the run is long enough
/// (a 4-day run covers all). Sorted by time.
#[must_use]
pub fn random_timeline(duration: Millis, seed: u64) -> Vec<TimedFault> {
    let mut rng = SplitMix(seed ^ 0x0BAD_5EED_C0FF_EE00);
    let n = (duration.get().saturating_mul(RANDOM_PER_DAY) / DAY_MS).max(1);
    let mut kinds: Vec<usize> = (0..RANDOM_KINDS).collect();
    let mut out = Vec::new();
    for i in 0..n {
        let k = usize::try_from(i % RANDOM_KINDS as u64).unwrap_or(0);
        if k == 0 {
            // Fisher–Yates with the plan's own generator.
            for j in (1..kinds.len()).rev() {
                let m = usize::try_from(rng.below(j as u64 + 1)).unwrap_or(0);
                kinds.swap(j, m);
            }
        }
        // Leave the first minute for the boot sequence.
        let at = Millis::new(60_000 + rng.below(duration.get().saturating_sub(60_000).max(1)));
        let (fault, for_) = random_fault(kinds.get(k).copied().unwrap_or(0), rng.next());
        out.push(TimedFault { at, for_, fault });
    }
    out.sort_by_key(|f| f.at);
    out
}

/// Build the schedule for `days` simulated days.
#[must_use]
pub fn schedule(plan: FaultPlan, days: u32, seed: u64) -> Vec<Scheduled> {
    let mut out = Vec::new();
    if plan != FaultPlan::Standard {
        return out;
    }
    let mut rng = SplitMix(seed ^ 0x5EED_FA17);
    for day in 0..u64::from(days) {
        let base = day * DAY_MS;
        let at = |rng: &mut SplitMix| Millis::new(base + 3_600_000 + rng.below(DAY_MS - 7_200_000));
        // E-stop pressed and released 2–10 minutes later.
        let t = at(&mut rng);
        out.push(Scheduled { at: t, fault: SimFault::EStopPressed });
        out.push(Scheduled {
            at: t.plus(Millis::new(120_000 + rng.below(480_000))),
            fault: SimFault::EStopReleased,
        });
        // A sensor drop-out of 1–60 s on a random safety signal.
        let signals = [
            Signal::CellTemperature,
            Signal::CellVoltage,
            Signal::Soc,
            Signal::GridPower,
            Signal::BmsLimits,
            Signal::Contactor,
            Signal::EStop,
            Signal::InverterPower,
        ];
        let idx = usize::try_from(rng.below(signals.len() as u64)).unwrap_or(0);
        let signal = signals.get(idx).copied().unwrap_or(Signal::CellTemperature);
        out.push(Scheduled {
            at: at(&mut rng),
            fault: SimFault::SensorDropout { signal, for_: Millis::new(1_000 + rng.below(59_000)) },
        });
        // Every other day: a BMS alarm for 5 minutes, or an inverter fault for 5 minutes.
        let t = at(&mut rng);
        let fault = if day % 2 == 0 {
            SimFault::BmsAlarm(BmsAlarms::NONE.with(BmsAlarm::Internal))
        } else {
            SimFault::InverterFault
        };
        out.push(Scheduled { at: t, fault });
        out.push(Scheduled { at: t.plus(Millis::new(300_000)), fault: SimFault::Clear });
        // Every third day: abnormal heating of the pack for two hours (a failing fan or a
        // developing internal fault) that safety must derate or trip on.
        if day % 3 == 1 {
            let t = at(&mut rng);
            out.push(Scheduled { at: t, fault: SimFault::CellHeating { watts: ems_core::watts!(1200.0) } });
            out.push(Scheduled { at: t.plus(Millis::new(7_200_000)), fault: SimFault::Clear });
        }
    }
    out.sort_by_key(|s| s.at);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_is_deterministic_and_sorted() {
        let a = schedule(FaultPlan::Standard, 7, 42);
        let b = schedule(FaultPlan::Standard, 7, 42);
        assert_eq!(a, b);
        assert!(a.windows(2).all(|w| w[0].at <= w[1].at));
        assert!(a.len() >= 7 * 5);
        assert_ne!(a, schedule(FaultPlan::Standard, 7, 43));
        assert!(schedule(FaultPlan::None, 7, 42).is_empty());
    }

    #[test]
    fn random_timeline_is_seeded_sorted_and_covers_every_kind() {
        let d = Millis::new(4 * DAY_MS);
        let a = random_timeline(d, 5);
        assert_eq!(a, random_timeline(d, 5));
        assert_ne!(a, random_timeline(d, 6));
        assert_eq!(a.len(), 32);
        assert!(a.windows(2).all(|w| w[0].at <= w[1].at));
        assert!(a.iter().all(|f| f.at >= Millis::new(60_000) && f.at < d));
        let kinds: std::collections::BTreeSet<&str> = a.iter().map(|f| f.fault.kind_name()).collect();
        for k in 0..RANDOM_KINDS {
            assert!(kinds.contains(random_fault(k, 0).0.kind_name()), "kind {k} missing");
        }
        assert!(random_timeline(Millis::new(3_600_000), 1).len() == 1);
    }

    #[test]
    fn parse_names_the_flag() {
        assert_eq!(FaultPlan::parse("random"), Ok(FaultPlan::Random));
        assert_eq!(FaultPlan::parse("standard"), Ok(FaultPlan::Standard));
        assert!(FaultPlan::parse("lots").unwrap_err().contains("--faults"));
    }
}
