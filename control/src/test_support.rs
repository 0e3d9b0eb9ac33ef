//! Shared unit-test fixtures.

use ems_core::{Measurement, Millis, Percent, Snapshot, Watts};

/// A snapshot with good SOC (%), grid power and battery (inverter) power (W), read at 0 and valid
/// for 10 s; everything else unknown.
pub(crate) fn snap(soc: f32, grid: f32, battery: f32) -> Snapshot {
    let mut s = Snapshot::unknown(ems_core::watts!(5000.0));
    let age = Millis::new(10_000);
    s.battery.soc = Measurement::good(Percent::saturating(soc), Millis::ZERO, age);
    s.grid.active_power = Measurement::good(Watts::saturating(grid), Millis::ZERO, age);
    s.inverter.active_power = Measurement::good(Watts::saturating(battery), Millis::ZERO, age);
    s
}
