//! [`SafeBms`]: validation of every BMS reading, comm-loss fallback and a rate-limited alarm
//! reset.
//!
//! Each [`SafeBms::poll`] reads once. The reading is checked (cell min ≤ max, pack voltage
//! consistent with the cell voltages, SOC jumps, stuck sensors); a rejected field is reported as
//! `Invalid` with an event naming the field and the value, the others are stored as good with
//! the read time. A read that fails on a dead link (`Timeout`, `Comm`) stores nothing, so the
//! signals go stale through their maximum age (then the safety layer takes the worst case); a
//! read the BMS answered with no usable reading (`Refused`, `Decode`, `OutOfRange` — an
//! exception, garbage, a SOC of 250 %) marks every BMS signal invalid at once. After [`SafeBmsConfig::comm_loss_fallback`] without a good read, [`SafeBms::fill`]
//! reports the BMS charge and discharge limits as a *good zero* — zero allowed power — and every
//! other BMS signal as invalid.

use super::events::{Device, DeviceEvent, DeviceEvents, FieldValue, Rejection};
use super::rate::RateLimiter;
use super::{check_positive_ms, ConfigError, WrapperError};
use crate::traits::{Bms, BmsReading, DeviceError};
use ems_core::snapshot::{BatterySignals, SLOW_MAX_AGE};
use ems_core::{Amps, Celsius, Measurement, Millis, Percent, Watts};

/// [`SafeBms`] settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SafeBmsConfig {
    /// Cells in series (default 16).
    pub cells_in_series: u16,
    /// Pack-vs-cells plausibility tolerance (default 3 %). The pack voltage must lie between
    /// `((n−1)·cell_min + cell_max)·(1−tol)` and `((n−1)·cell_max + cell_min)·(1+tol)` — the
    /// bounds of a sum of `n` cells whose lowest is `cell_min` and highest `cell_max`.
    pub plausibility_tolerance: Percent,
    /// Largest SOC change per second accepted (default 1 %/s); at least one second's worth is
    /// always allowed, so a register that steps by whole percent is not rejected at 10 Hz.
    pub max_soc_rate_per_s: Percent,
    /// Largest cell-temperature change per second accepted (default 2 °C/s; a thermal runaway
    /// of a whole pack rises by a few °C per minute, a +40 °C step between two reads is a
    /// sensor or bus fault). At least one second's worth is always allowed.
    pub max_cell_temp_rate_per_s: Celsius,
    /// A cell voltage or temperature unchanged to the last bit for longer than this while
    /// current flows is marked invalid (default 10 min).
    pub stuck_after: Millis,
    /// "Current flows" for stuck detection: |pack current| above this (default 5 A).
    pub stuck_min_current: Amps,
    /// Apply the stuck-sensor check to the cell temperatures (default true). Turn it off only
    /// for a BMS that reports no measured cell temperature (the driver substitutes a constant,
    /// e.g. SunSpec 802 without 803/804): the BMS's own temperature alarms are then the only
    /// thermal protection (docs/SAFETY.md H32).
    pub stuck_check_temperatures: bool,
    /// Without a good read for this long, the limits fall back to a good zero (default 5 s).
    pub comm_loss_fallback: Millis,
    /// Minimum interval between alarm resets (default 60 s).
    pub reset_min_interval: Millis,
    /// Alarm resets allowed per [`Self::reset_window`] (default 10).
    pub reset_budget: u16,
    /// The rolling window of the reset budget (default 1 h).
    pub reset_window: Millis,
}

impl Default for SafeBmsConfig {
    fn default() -> Self {
        Self {
            cells_in_series: 16,
            plausibility_tolerance: ems_core::percent!(3.0),
            max_soc_rate_per_s: ems_core::percent!(1.0),
            max_cell_temp_rate_per_s: ems_core::celsius!(2.0),
            stuck_after: Millis::from_secs(600),
            stuck_min_current: ems_core::amps!(5.0),
            stuck_check_temperatures: true,
            comm_loss_fallback: Millis::from_secs(5),
            reset_min_interval: Millis::from_secs(60),
            reset_budget: 10,
            reset_window: Millis::from_secs(3600),
        }
    }
}

impl SafeBmsConfig {
    /// Check every field; the error names the field and the value.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the first field out of its range and its value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.cells_in_series == 0 || self.cells_in_series > 1000 {
            return Err(ConfigError::new(
                "cells_in_series",
                f64::from(self.cells_in_series),
                "must be 1..=1000",
            ));
        }
        let tol = self.plausibility_tolerance.get();
        if !(tol > 0.0 && tol <= 50.0) {
            return Err(ConfigError::new(
                "plausibility_tolerance",
                f64::from(tol),
                "must be > 0 % and ≤ 50 %",
            ));
        }
        if self.max_cell_temp_rate_per_s.get() <= 0.0 {
            return Err(ConfigError::new(
                "max_cell_temp_rate_per_s",
                f64::from(self.max_cell_temp_rate_per_s.get()),
                "must be > 0 °C/s",
            ));
        }
        if self.max_soc_rate_per_s.get() <= 0.0 {
            return Err(ConfigError::new(
                "max_soc_rate_per_s",
                f64::from(self.max_soc_rate_per_s.get()),
                "must be > 0 %/s",
            ));
        }
        check_positive_ms("stuck_after", self.stuck_after)?;
        if self.stuck_min_current.get() < 0.0 {
            return Err(ConfigError::new(
                "stuck_min_current",
                f64::from(self.stuck_min_current.get()),
                "must be ≥ 0 A",
            ));
        }
        check_positive_ms("comm_loss_fallback", self.comm_loss_fallback)?;
        self.reset_limiter().map(|_| ())
    }

    fn reset_limiter(&self) -> Result<RateLimiter, ConfigError> {
        RateLimiter::new(self.reset_min_interval, self.reset_budget, self.reset_window).map_err(|e| {
            ConfigError::new(
                match e.field {
                    "budget" => "reset_budget",
                    "window" => "reset_window",
                    _ => "reset_min_interval",
                },
                e.value,
                e.requirement,
            )
        })
    }
}

/// Stuck-sensor tracking for one signal.
#[derive(Debug, Clone, Copy, Default)]
struct StuckTracker {
    bits: Option<u32>,
    /// Unchanged under load since.
    since: Option<Millis>,
    stuck: bool,
}

impl StuckTracker {
    /// Feed a value; returns `Some(duration)` while the signal counts as stuck.
    fn feed(&mut self, bits: u32, under_load: bool, now: Millis, after: Millis) -> Option<Millis> {
        if self.bits != Some(bits) {
            self.bits = Some(bits);
            self.since = None;
            self.stuck = false;
            return None;
        }
        if !under_load {
            // At rest an unchanged reading is normal; the clock restarts under load.
            self.since = None;
            return if self.stuck { Some(Millis::ZERO) } else { None };
        }
        let since = *self.since.get_or_insert(now);
        let d = now.since(since);
        if d > after {
            self.stuck = true;
        }
        self.stuck.then_some(d)
    }
}

/// A BMS behind validation, stale handling and comm-loss fallback.
#[derive(Debug)]
pub struct SafeBms<B> {
    bms: B,
    config: SafeBmsConfig,
    signals: BatterySignals,
    started: Option<Millis>,
    last_good: Option<Millis>,
    read_failing: bool,
    comm_lost: bool,
    last_soc: Option<(Percent, Millis)>,
    last_temps: Option<(Celsius, Celsius, Millis)>,
    stuck: [StuckTracker; 4],
    stuck_reported: [bool; 4],
    reset_limiter: RateLimiter,
}

const STUCK_FIELDS: [&str; 4] = ["cell_voltage_min", "cell_voltage_max", "cell_temp_min", "cell_temp_max"];

impl<B: Bms> SafeBms<B> {
    /// Wrap `bms`; the config is validated.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `config` does not validate ([`SafeBmsConfig::validate`]) or its reset limits are
    /// invalid.
    pub fn new(bms: B, config: SafeBmsConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let reset_limiter = config.reset_limiter()?;
        Ok(Self {
            bms,
            config,
            signals: ems_core::Snapshot::unknown(Watts::ZERO).battery,
            started: None,
            last_good: None,
            read_failing: false,
            comm_lost: false,
            last_soc: None,
            last_temps: None,
            stuck: [StuckTracker::default(); 4],
            stuck_reported: [false; 4],
            reset_limiter,
        })
    }

    /// The configuration.
    #[must_use]
    pub const fn config(&self) -> &SafeBmsConfig {
        &self.config
    }

    /// The wrapped device.
    #[must_use]
    pub const fn device(&self) -> &B {
        &self.bms
    }

    /// The wrapped device, mutably: bypasses the wrapper's checks, so only for tests (private
    /// feature `_test-access`, never enabled by a production build).
    #[cfg(feature = "_test-access")]
    pub fn device_mut(&mut self) -> &mut B {
        &mut self.bms
    }

    /// Unwrap (private feature `_test-access`).
    #[cfg(feature = "_test-access")]
    pub fn into_inner(self) -> B {
        self.bms
    }

    /// When the last reading that passed the transport (good or partially rejected) was taken.
    #[must_use]
    pub const fn last_good_read(&self) -> Option<Millis> {
        self.last_good
    }

    /// Whether the comm-loss fallback (zero allowed power) is active at `now`.
    #[must_use]
    pub fn fallback_active(&self, now: Millis) -> bool {
        match (self.last_good, self.started) {
            (Some(t), _) | (None, Some(t)) => now.since(t) > self.config.comm_loss_fallback,
            (None, None) => false,
        }
    }

    /// Read the BMS once and validate the reading.
    pub async fn poll(&mut self, now: Millis, events: &mut DeviceEvents) {
        self.started.get_or_insert(now);
        match self.bms.read().await {
            Ok(r) => {
                if self.read_failing || self.comm_lost {
                    events.push(now, DeviceEvent::CommRestored { device: Device::Bms });
                }
                self.read_failing = false;
                self.comm_lost = false;
                // A reading reused by a caching wrapper keeps the time it was read.
                let at = now.since(self.bms.reading_age());
                self.last_good = Some(at);
                self.accept(at, &r, events);
            }
            Err(e) => {
                if !self.read_failing {
                    events.push(now, DeviceEvent::ReadFailed { device: Device::Bms, kind: e.kind() });
                }
                self.read_failing = true;
                if !e.kind().is_link() {
                    // The BMS answered, but with no usable reading (a refusal, garbage, a SOC of
                    // 250 %): no signal keeps its last value.
                    self.invalidate_all();
                }
                if !self.comm_lost && self.fallback_active(now) {
                    self.comm_lost = true;
                    let after = now.since(self.last_good.or(self.started).unwrap_or(now));
                    events.push(now, DeviceEvent::CommLost { device: Device::Bms, after });
                }
            }
        }
    }

    fn invalidate_all(&mut self) {
        let s = &mut self.signals;
        s.soc.invalidate();
        s.pack_voltage.invalidate();
        s.pack_current.invalidate();
        s.cell_voltage_min.invalidate();
        s.cell_voltage_max.invalidate();
        s.cell_temp_min.invalidate();
        s.cell_temp_max.invalidate();
        s.bms_charge_limit.invalidate();
        s.bms_discharge_limit.invalidate();
        s.bms_alarms.invalidate();
        s.bms_ready.invalidate();
    }

    fn accept(&mut self, now: Millis, r: &BmsReading, events: &mut DeviceEvents) {
        let s = &mut self.signals;
        let reject = |events: &mut DeviceEvents, field, value, why| {
            events.push(now, DeviceEvent::ReadingRejected { device: Device::Bms, field, value, why });
        };

        // Fields without cross-checks.
        s.pack_current.update(r.pack_current, now);
        s.bms_charge_limit.update(r.charge_limit.abs(), now);
        s.bms_discharge_limit.update(r.discharge_limit.abs(), now);
        s.bms_alarms.update(r.alarms, now);
        s.bms_ready.update(r.ready, now);

        // Cell voltages: order, then the pack-vs-cells sum.
        let mut volts_ok = true;
        if r.cell_voltage_min > r.cell_voltage_max {
            volts_ok = false;
            reject(
                events,
                "cell_voltage_min",
                FieldValue::Volts(r.cell_voltage_min),
                Rejection::MinAboveMax { max: FieldValue::Volts(r.cell_voltage_max) },
            );
        }
        let pack_ok = if volts_ok { self.pack_plausible(r, events, now) } else { false };
        let s = &mut self.signals;
        if volts_ok && pack_ok {
            s.cell_voltage_min.update(r.cell_voltage_min, now);
            s.cell_voltage_max.update(r.cell_voltage_max, now);
            s.pack_voltage.update(r.pack_voltage, now);
        } else {
            s.cell_voltage_min.invalidate();
            s.cell_voltage_max.invalidate();
            s.pack_voltage.invalidate();
        }

        if r.cell_temp_min > r.cell_temp_max {
            reject(
                events,
                "cell_temp_min",
                FieldValue::Celsius(r.cell_temp_min),
                Rejection::MinAboveMax { max: FieldValue::Celsius(r.cell_temp_max) },
            );
            s.cell_temp_min.invalidate();
            s.cell_temp_max.invalidate();
        } else if let Some((field, value, from, over)) = self.temp_jump(r, now) {
            reject(
                events,
                field,
                FieldValue::Celsius(value),
                Rejection::Jump { from: FieldValue::Celsius(from), over },
            );
            let s = &mut self.signals;
            s.cell_temp_min.invalidate();
            s.cell_temp_max.invalidate();
        } else {
            self.last_temps = Some((r.cell_temp_min, r.cell_temp_max, now));
            let s = &mut self.signals;
            s.cell_temp_min.update(r.cell_temp_min, now);
            s.cell_temp_max.update(r.cell_temp_max, now);
        }

        // SOC jump, measured against the last accepted SOC.
        let soc_ok = match self.last_soc {
            None => true,
            Some((prev, at)) => {
                let dt = now.since(at).max(Millis::from_secs(1));
                let allowed = self.config.max_soc_rate_per_s.get() * dt.as_secs_f32();
                let jump = (r.soc.get() - prev.get()).abs();
                if jump > allowed {
                    reject(
                        events,
                        "soc",
                        FieldValue::Percent(r.soc),
                        Rejection::Jump { from: FieldValue::Percent(prev), over: now.since(at) },
                    );
                    false
                } else {
                    true
                }
            }
        };
        if soc_ok {
            self.last_soc = Some((r.soc, now));
            self.signals.soc.update(r.soc, now);
        } else {
            self.signals.soc.invalidate();
        }

        // Stuck sensors.
        let under_load = r.pack_current.abs() > self.config.stuck_min_current;
        let values = [
            (r.cell_voltage_min.get(), FieldValue::Volts(r.cell_voltage_min)),
            (r.cell_voltage_max.get(), FieldValue::Volts(r.cell_voltage_max)),
            (r.cell_temp_min.get(), FieldValue::Celsius(r.cell_temp_min)),
            (r.cell_temp_max.get(), FieldValue::Celsius(r.cell_temp_max)),
        ];
        for (i, (raw, value)) in values.into_iter().enumerate() {
            // Indices 2 and 3 are the cell temperatures.
            if i >= 2 && !self.config.stuck_check_temperatures {
                continue;
            }
            let stuck = self.stuck[i].feed(raw.to_bits(), under_load, now, self.config.stuck_after);
            match stuck {
                Some(d) => {
                    if !self.stuck_reported[i] {
                        self.stuck_reported[i] = true;
                        reject(events, STUCK_FIELDS[i], value, Rejection::Stuck { for_: d });
                    }
                    let s = &mut self.signals;
                    match i {
                        0 => s.cell_voltage_min.invalidate(),
                        1 => s.cell_voltage_max.invalidate(),
                        2 => s.cell_temp_min.invalidate(),
                        _ => s.cell_temp_max.invalidate(),
                    }
                }
                None => self.stuck_reported[i] = false,
            }
        }
    }

    /// A cell temperature that moved faster than the configured rate since the last accepted
    /// reading: (field, new value, previous value, elapsed).
    fn temp_jump(&self, r: &BmsReading, now: Millis) -> Option<(&'static str, Celsius, Celsius, Millis)> {
        let (min_prev, max_prev, at) = self.last_temps?;
        let dt = now.since(at).max(Millis::from_secs(1));
        let allowed = self.config.max_cell_temp_rate_per_s.get() * dt.as_secs_f32();
        if (r.cell_temp_max.get() - max_prev.get()).abs() > allowed {
            return Some(("cell_temp_max", r.cell_temp_max, max_prev, now.since(at)));
        }
        if (r.cell_temp_min.get() - min_prev.get()).abs() > allowed {
            return Some(("cell_temp_min", r.cell_temp_min, min_prev, now.since(at)));
        }
        None
    }

    fn pack_plausible(&self, r: &BmsReading, events: &mut DeviceEvents, now: Millis) -> bool {
        let n = f32::from(self.config.cells_in_series);
        let tol = self.config.plausibility_tolerance.fraction();
        let vmin = r.cell_voltage_min.get();
        let vmax = r.cell_voltage_max.get();
        let pack = r.pack_voltage.get();
        let lower = ((n - 1.0) * vmin + vmax) * (1.0 - tol);
        let upper = ((n - 1.0) * vmax + vmin) * (1.0 + tol);
        if (lower..=upper).contains(&pack) {
            return true;
        }
        // Name the cell reading furthest from the pack average as the suspect.
        let avg = pack / n;
        let (field, value) = if (vmax - avg).abs() >= (avg - vmin).abs() {
            ("cell_voltage_max", r.cell_voltage_max)
        } else {
            ("cell_voltage_min", r.cell_voltage_min)
        };
        events.push(
            now,
            DeviceEvent::ReadingRejected {
                device: Device::Bms,
                field,
                value: FieldValue::Volts(value),
                why: Rejection::PackMismatch { pack: r.pack_voltage, cells: self.config.cells_in_series },
            },
        );
        false
    }

    /// Write the BMS signals for `now` into `battery`: good values carry their read time (and go
    /// stale through their maximum age), rejected values are invalid, and after the comm-loss
    /// time the limits are a good zero and everything else is invalid.
    pub fn fill(&self, now: Millis, battery: &mut BatterySignals) {
        if self.fallback_active(now) {
            let mut s = ems_core::Snapshot::unknown(Watts::ZERO).battery;
            s.bms_charge_limit = Measurement::good(Watts::ZERO, now, SLOW_MAX_AGE);
            s.bms_discharge_limit = Measurement::good(Watts::ZERO, now, SLOW_MAX_AGE);
            *battery = s;
        } else {
            *battery = self.signals;
        }
    }

    /// Ask the BMS to clear latched alarms, at most once per `reset_min_interval` and
    /// `reset_budget` times per `reset_window`.
    /// A refused attempt (rate limit) does not count against the budget; a device error does.
    ///
    /// # Errors
    ///
    /// [`WrapperError`] when the rate limit refuses the attempt, or the BMS fails to take the reset.
    pub async fn reset_alarms(&mut self, now: Millis) -> Result<(), WrapperError> {
        self.reset_limiter.try_acquire(now)?;
        self.bms.reset_alarms().await.map_err(|e| WrapperError::device(&e))
    }
}
