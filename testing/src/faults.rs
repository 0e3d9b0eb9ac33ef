//! Seeded fault plans and the automated operator.
//!
//! A fault plan is a time-ordered list of injections into the simulated site. The automated
//! operator stands in for a person at the site: after an E-stop is released it resets with a
//! reason, after a trip it acknowledges once the fault is gone, and it starts the system again.

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
}

impl FaultPlan {
    /// Parse `none` / `standard`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Self::None),
            "standard" => Ok(Self::Standard),
            other => Err(format!("--faults: '{other}' is not one of none, standard")),
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

/// Build the schedule for `days` simulated days.
#[must_use]
pub fn schedule(plan: FaultPlan, days: u32, seed: u64) -> Vec<Scheduled> {
    let mut out = Vec::new();
    if plan == FaultPlan::None {
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
            out.push(Scheduled { at: t, fault: SimFault::CellHeating { watts: Watts::new(1200.0) } });
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
    fn parse_names_the_flag() {
        assert_eq!(FaultPlan::parse("standard"), Ok(FaultPlan::Standard));
        assert!(FaultPlan::parse("lots").unwrap_err().contains("--faults"));
    }
}
