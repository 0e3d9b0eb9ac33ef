//! Cross-checks between independent sensors: a BMS whose readings stop moving while the
//! inverter measures power flowing into or out of the pack is frozen (issue #10).
//!
//! A BMS link that keeps answering with the last register contents (a hung BMS firmware, a
//! gateway or protocol converter that caches, a Modbus proxy serving stale registers) looks
//! *fresh* to the device layer: every read succeeds and carries a new timestamp, so quality
//! stays `Good`. Nothing in the values is out of range either. The only evidence is physical:
//! power flowing through the pack changes its charge, its current and its cell voltages, so a
//! reading that stays bit-identical while the inverter — an independent sensor — measures
//! hundreds of watts cannot be a live measurement.
//!
//! [`FrozenBmsDetector`] accumulates the time the BMS fingerprint (SOC, pack voltage and
//! current, min/max cell voltage and temperature) has not changed *while the inverter reports
//! at least [`MOVING_POWER`]*; past [`FrozenConfig::after`] the BMS readings are treated as
//! unavailable (worst case: both directions zero, main contactor may not close). The
//! accumulated time does not grow at rest, so a pack at rest with a noise-free BMS (the
//! simulator's) is never suspected.
//!
//! Clearing: as soon as any field moves. A pack at rest with a noise-free BMS may never move
//! again, so the suspicion is also lifted after [`FrozenConfig::rest_clear`] with the inverter
//! at rest; the frozen fingerprint is remembered, and the first cycle under load that shows the
//! same fingerprint again re-suspects at once (a leak of one cycle, not of `after`).

use ems_core::{Millis, Snapshot, Watts};

/// Inverter power (magnitude) above which the pack must visibly change within
/// [`FrozenConfig::after`]: well above an inverter's idle consumption and measurement noise.
pub const MOVING_POWER: Watts = ems_core::watts!(200.0);

/// Timing of the frozen-BMS detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrozenConfig {
    /// Under load for this long with a bit-identical BMS reading: frozen. At 5 kW on a 10 kWh
    /// pack 30 s moves 0.4 % of SOC, well inside the SOC-low alarm margin.
    pub after: Millis,
    /// With the inverter at rest for this long the suspicion is lifted (the remembered
    /// fingerprint re-suspects at once under load).
    pub rest_clear: Millis,
}

impl Default for FrozenConfig {
    fn default() -> Self {
        Self { after: Millis::from_secs(30), rest_clear: Millis::from_secs(120) }
    }
}

/// Bit patterns of the BMS's analog fields.
type Fingerprint = [u32; 7];

fn fingerprint(s: &Snapshot, now: Millis) -> Option<Fingerprint> {
    let b = &s.battery;
    Some([
        b.soc.value_at(now)?.get().to_bits(),
        b.pack_voltage.value_at(now)?.get().to_bits(),
        b.pack_current.value_at(now)?.get().to_bits(),
        b.cell_voltage_min.value_at(now)?.get().to_bits(),
        b.cell_voltage_max.value_at(now)?.get().to_bits(),
        b.cell_temp_min.value_at(now)?.get().to_bits(),
        b.cell_temp_max.value_at(now)?.get().to_bits(),
    ])
}

/// The frozen-BMS detector (state lives here; one call per cycle).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrozenBmsDetector {
    config: FrozenConfig,
    last: Option<Fingerprint>,
    last_at: Option<Millis>,
    loaded_unchanged: Millis,
    at_rest_since: Option<Millis>,
    frozen: bool,
    /// The fingerprint that was found frozen (re-suspected at once under load).
    suspect: Option<Fingerprint>,
}

impl FrozenBmsDetector {
    /// A detector with no history.
    #[must_use]
    pub const fn new(config: FrozenConfig) -> Self {
        Self {
            config,
            last: None,
            last_at: None,
            loaded_unchanged: Millis::ZERO,
            at_rest_since: None,
            frozen: false,
            suspect: None,
        }
    }

    /// Whether the BMS readings are currently considered frozen.
    #[must_use]
    pub const fn frozen(&self) -> bool {
        self.frozen
    }

    /// Feed one cycle; returns [`Self::frozen`].
    pub fn update(&mut self, s: &Snapshot, now: Millis) -> bool {
        let dt = self.last_at.map_or(Millis::ZERO, |t| now.since(t));
        self.last_at = Some(now);
        let Some(fp) = fingerprint(s, now) else {
            // Unavailable BMS signals are handled as such by the monitor; keep the verdict.
            self.loaded_unchanged = Millis::ZERO;
            return self.frozen;
        };
        // Unknown inverter power is neither load nor rest: with the inverter signal lost both
        // directions are zero anyway, and an inverter powered from the DC bus reports nothing
        // before the contactor closes (suspecting then would keep it open for good).
        let Some(power) = s.inverter.active_power.value_at(now) else {
            self.last = Some(fp);
            self.at_rest_since = None;
            return self.frozen;
        };
        let loaded = power.abs() >= MOVING_POWER;
        if self.last != Some(fp) {
            self.last = Some(fp);
            self.loaded_unchanged = Millis::ZERO;
            if self.suspect != Some(fp) {
                self.frozen = false;
                self.suspect = None;
            } else if loaded {
                self.frozen = true;
            }
        } else if loaded {
            self.loaded_unchanged = self.loaded_unchanged.plus(dt);
            if self.loaded_unchanged >= self.config.after || self.suspect == Some(fp) {
                self.frozen = true;
                self.suspect = Some(fp);
            }
        }
        if loaded {
            self.at_rest_since = None;
        } else {
            let since = *self.at_rest_since.get_or_insert(now);
            if self.frozen && now.since(since) >= self.config.rest_clear {
                self.frozen = false;
                self.loaded_unchanged = Millis::ZERO;
            }
        }
        self.frozen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ems_core::{Amps, Percent};

    fn snap(now: Millis, soc: f32, inverter: f32) -> Snapshot {
        snap_i(now, soc, inverter, inverter / 50.0)
    }

    fn snap_i(now: Millis, soc: f32, inverter: f32, current: f32) -> Snapshot {
        let mut s = Snapshot::unknown(ems_core::watts!(5000.0));
        let b = &mut s.battery;
        b.soc.update(Percent::saturating(soc), now);
        b.pack_voltage.update(ems_core::volts!(50.0), now);
        b.pack_current.update(Amps::saturating(current), now);
        b.cell_voltage_min.update(ems_core::volts!(3.1), now);
        b.cell_voltage_max.update(ems_core::volts!(3.12), now);
        b.cell_temp_min.update(ems_core::celsius!(20.0), now);
        b.cell_temp_max.update(ems_core::celsius!(21.0), now);
        s.inverter.active_power.update(Watts::saturating(inverter), now);
        s
    }

    #[test]
    fn a_reading_that_stops_moving_under_load_is_frozen_and_clears_when_it_moves() {
        let mut d = FrozenBmsDetector::new(FrozenConfig::default());
        let mut soc = 50.0;
        for t in 0..100 {
            soc -= 0.01;
            assert!(!d.update(&snap(Millis::from_secs(t), soc, 3000.0), Millis::from_secs(t)));
        }
        // Frozen: the same values while the inverter still measures 3 kW.
        for t in 100..129 {
            assert!(!d.update(&snap(Millis::from_secs(t), soc, 3000.0), Millis::from_secs(t)), "{t}");
        }
        assert!(d.update(&snap(Millis::from_secs(130), soc, 3000.0), Millis::from_secs(130)));
        // The reading moves again: live.
        assert!(!d.update(&snap(Millis::from_secs(131), soc - 0.3, 3000.0), Millis::from_secs(131)));
    }

    #[test]
    fn a_pack_at_rest_is_never_suspected() {
        let mut d = FrozenBmsDetector::new(FrozenConfig::default());
        for t in 0..3600 {
            assert!(!d.update(&snap(Millis::from_secs(t), 40.0, 0.0), Millis::from_secs(t)));
        }
    }

    #[test]
    fn rest_lifts_the_suspicion_and_the_same_frozen_reading_under_load_resuspects_at_once() {
        let mut d = FrozenBmsDetector::new(FrozenConfig::default());
        let mut t = 0;
        let mut step = |d: &mut FrozenBmsDetector, p: f32| {
            t += 1;
            // The frozen reading keeps the current it had when it froze.
            d.update(&snap_i(Millis::from_secs(t), 30.0, p, 60.0), Millis::from_secs(t))
        };
        for _ in 0..40 {
            step(&mut d, 3000.0);
        }
        assert!(d.frozen());
        // The EMS zeroed the command: the inverter rests; the BMS reading never moves.
        for _ in 0..121 {
            step(&mut d, 0.0);
        }
        assert!(!d.frozen());
        assert!(step(&mut d, 500.0), "same frozen reading under load: suspected at once");
    }

    #[test]
    fn unknown_inverter_power_is_not_load() {
        let mut d = FrozenBmsDetector::new(FrozenConfig::default());
        for t in 0..400 {
            let now = Millis::from_secs(t);
            let mut s = snap(now, 30.0, 0.0);
            s.inverter.active_power.invalidate();
            assert!(!d.update(&s, now));
        }
    }
}
