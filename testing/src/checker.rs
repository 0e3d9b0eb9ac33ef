//! The invariant checker: every cycle, the command against the envelope, the ramp and the
//! state, and the simulator's physical truth against the hard (trip) limits.

use ems_control::Output;
use ems_core::{Millis, State, Watts};
use ems_devices::sim::SiteTruth;
use ems_safety::SafetyConfig;
use serde::Serialize;

/// How many violations are kept in full (all are counted).
pub const KEPT_VIOLATIONS: usize = 100;

/// Tolerance for float comparisons of set-points (W).
const EPS_W: f32 = 1e-3;

/// What was violated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ViolationKind {
    /// Command outside the envelope of the same snapshot.
    OutsideEnvelope,
    /// Command moved away from zero faster than the ramp rate.
    RampExceeded,
    /// Non-zero command outside RUNNING.
    PowerOutsideRunning,
    /// A cell above the over-voltage trip level.
    CellOverVoltage,
    /// A cell below the under-voltage trip level.
    CellUnderVoltage,
    /// A cell above the over-temperature trip level.
    CellOverTemperature,
    /// Charging while a cell is below the charge temperature floor (0 °C interlock).
    ChargingBelowFreezing,
    /// Pack current above the trip level.
    OverCurrent,
    /// The main relay closed onto a DC link far from the pack voltage (no pre-charge).
    Inrush,
    /// The inverter stayed under EMS control (`Remote`) after its lease expired.
    LeaseExpired,
    /// The set-point the device layer actually wrote to the inverter lay outside the envelope
    /// of that cycle.
    WrittenOutsideEnvelope,
}

impl ViolationKind {
    /// Whether this is a hard-limit violation of the physical truth (else: the invariant on
    /// the command, or the lease).
    #[must_use]
    pub const fn is_hard_limit(self) -> bool {
        match self {
            Self::CellOverVoltage
            | Self::CellUnderVoltage
            | Self::CellOverTemperature
            | Self::ChargingBelowFreezing
            | Self::OverCurrent
            | Self::Inrush => true,
            Self::OutsideEnvelope
            | Self::RampExceeded
            | Self::PowerOutsideRunning
            | Self::LeaseExpired
            | Self::WrittenOutsideEnvelope => false,
        }
    }
}

/// One violation.
#[derive(Debug, Clone, Serialize)]
pub struct Violation {
    /// Simulated time (ms since start).
    pub at_ms: u64,
    /// What.
    pub kind: ViolationKind,
    /// Human-readable detail with the values.
    pub detail: String,
}

/// Checks each cycle.
#[derive(Debug, Clone)]
pub struct Checker {
    ramp_per_s: Watts,
    cell_v_trip_high: f32,
    cell_v_trip_low: f32,
    cell_t_trip_high: f32,
    charge_temp_floor: f32,
    current_trip: f32,
    previous: Watts,
    previous_at: Option<Millis>,
    /// All violations counted.
    pub count: u64,
    /// Hard-limit violations of the physical truth (incl. inrush).
    pub hard_limit_count: u64,
    /// Violations of the invariant on the command (envelope, ramp, power outside RUNNING).
    pub invariant_count: u64,
    /// Cycles with the inverter under EMS control after the lease expired.
    pub lease_count: u64,
    inrush_seen: u32,
    /// The first [`KEPT_VIOLATIONS`].
    pub kept: Vec<Violation>,
}

impl Checker {
    /// A checker using the hard limits of `safety` and the controller's ramp rate.
    #[must_use]
    pub fn new(safety: &SafetyConfig, ramp_per_s: Watts) -> Self {
        let limits = crate::options::hard_limits(safety);
        Self {
            ramp_per_s,
            cell_v_trip_high: limits.cell_v_high,
            cell_v_trip_low: limits.cell_v_low,
            cell_t_trip_high: limits.cell_t_high,
            charge_temp_floor: limits.charge_temp_floor,
            current_trip: limits.current,
            previous: Watts::ZERO,
            previous_at: None,
            count: 0,
            hard_limit_count: 0,
            invariant_count: 0,
            lease_count: 0,
            inrush_seen: 0,
            kept: Vec::new(),
        }
    }

    /// Record a violation found by the caller (e.g. the lease check of the harness).
    pub fn record(&mut self, at: Millis, kind: ViolationKind, detail: String) {
        self.count += 1;
        if kind == ViolationKind::LeaseExpired {
            self.lease_count += 1;
        } else if kind.is_hard_limit() {
            self.hard_limit_count += 1;
        } else {
            self.invariant_count += 1;
        }
        if self.kept.len() < KEPT_VIOLATIONS {
            self.kept.push(Violation { at_ms: at.get(), kind, detail });
        }
    }

    /// Forget the previous command (a restarted controller starts from zero, like the devices'
    /// own revert): the ramp is checked from the next command on.
    pub fn reset_ramp(&mut self) {
        self.previous = Watts::ZERO;
        self.previous_at = None;
    }

    /// Check the controller's output of the cycle at `now`.
    pub fn check_output(&mut self, now: Millis, out: &Output) {
        let cmd = out.command.setpoint();
        if !out.envelope.contains(cmd) {
            self.record(
                now,
                ViolationKind::OutsideEnvelope,
                format!(
                    "command {cmd:.0} outside envelope -{:.0}..+{:.0}",
                    out.envelope.max_charge(),
                    out.envelope.max_discharge()
                ),
            );
        }
        if out.state != State::Running && cmd != Watts::ZERO {
            self.record(
                now,
                ViolationKind::PowerOutsideRunning,
                format!("command {cmd:.0} in {}", out.state),
            );
        }
        if let Some(prev_at) = self.previous_at {
            let dt = now.since(prev_at);
            let max_step = self.ramp_per_s.get() * dt.as_secs_f32() + EPS_W;
            let delta = (cmd - self.previous).get().abs();
            if delta > max_step && !toward_zero(self.previous, cmd) {
                self.record(
                    now,
                    ViolationKind::RampExceeded,
                    format!("command {:.0} -> {cmd:.0} in {dt} (max {max_step:.0} W)", self.previous),
                );
            }
        }
        self.previous = cmd;
        self.previous_at = Some(now);
    }

    /// Check the set-point the device layer wrote to the inverter in the cycle at `now` against
    /// that cycle's envelope (`max_charge`, `max_discharge`: magnitudes).
    pub fn check_written(&mut self, now: Millis, written: Watts, max_charge: Watts, max_discharge: Watts) {
        let w = written.get();
        if w > max_discharge.get().abs() + EPS_W || w < -max_charge.get().abs() - EPS_W {
            self.record(
                now,
                ViolationKind::WrittenOutsideEnvelope,
                format!("wrote {written:.0} outside envelope -{max_charge:.0}..+{max_discharge:.0}"),
            );
        }
    }

    /// Check the simulator's physical truth after advancing to `now`.
    pub fn check_truth(&mut self, now: Millis, t: &SiteTruth) {
        let v_max = t.cell_voltage_max.get();
        let v_min = t.cell_voltage_min.get();
        let t_max = t.cell_temp_max.get();
        let t_min = t.cell_temp_min.get();
        let i = t.pack_current.get();
        if v_max > self.cell_v_trip_high {
            self.record(
                now,
                ViolationKind::CellOverVoltage,
                format!("cell {v_max:.3} V > {:.3} V", self.cell_v_trip_high),
            );
        }
        if v_min < self.cell_v_trip_low {
            self.record(
                now,
                ViolationKind::CellUnderVoltage,
                format!("cell {v_min:.3} V < {:.3} V", self.cell_v_trip_low),
            );
        }
        if t_max > self.cell_t_trip_high {
            self.record(
                now,
                ViolationKind::CellOverTemperature,
                format!("cell {t_max:.1} °C > {:.1} °C", self.cell_t_trip_high),
            );
        }
        // Charging current is negative; a few amps of measurement noise are not a charge.
        if i < -1.0 && t_min < self.charge_temp_floor {
            self.record(
                now,
                ViolationKind::ChargingBelowFreezing,
                format!("charging {:.1} A at {t_min:.1} °C", -i),
            );
        }
        if t.inrush_events > self.inrush_seen {
            let n = t.inrush_events - self.inrush_seen;
            self.inrush_seen = t.inrush_events;
            for _ in 0..n {
                self.record(
                    now,
                    ViolationKind::Inrush,
                    format!(
                        "main relay closed onto DC link {:.1} V, pack {:.1} V",
                        t.dc_link_voltage.get(),
                        t.pack_voltage.get()
                    ),
                );
            }
        }
        if i.abs() > self.current_trip {
            self.record(
                now,
                ViolationKind::OverCurrent,
                format!("{:.1} A > {:.1} A", i.abs(), self.current_trip),
            );
        }
    }
}

/// Whether `next` lies between zero and `prev` (a reduction toward zero, never rate-limited).
#[must_use]
pub fn toward_zero(prev: Watts, next: Watts) -> bool {
    let (p, n) = (prev.get(), next.get());
    if p >= 0.0 {
        (0.0..=p + EPS_W).contains(&n)
    } else {
        (p - EPS_W..=0.0).contains(&n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_setpoint_outside_the_envelope_is_an_invariant_violation() {
        let mut c = Checker::new(&SafetyConfig::default(), ems_core::watts!(2500.0));
        let (charge, discharge) = (ems_core::watts!(3000.0), ems_core::watts!(1000.0));
        c.check_written(Millis::new(1000), ems_core::watts!(-3000.0), charge, discharge);
        c.check_written(Millis::new(2000), ems_core::watts!(1000.0), charge, discharge);
        assert_eq!(c.count, 0);
        c.check_written(Millis::new(3000), ems_core::watts!(-3001.0), charge, discharge);
        c.check_written(Millis::new(4000), ems_core::watts!(1001.0), charge, discharge);
        assert_eq!((c.count, c.invariant_count, c.hard_limit_count), (2, 2, 0));
        assert!(c.kept.iter().all(|v| v.kind == ViolationKind::WrittenOutsideEnvelope));
    }
}
