//! [`SafeEvse`]: the safety wrapper every EV charger is driven through.
//!
//! * Limits from the site's main fuse and the charger's circuit (validated config, errors name
//!   the field and the value); every command is clamped to `0` or `min ..= max`: a request below
//!   the minimum charging current becomes 0 A (stop), never the minimum.
//! * Read-back: the limit the device reports applying must match the written one within the
//!   tolerance after the verification window, and the measured phase currents must not exceed it
//!   (a vehicle that keeps charging at 0 A is reported as [`EvseEvent::ZeroIgnored`]); a
//!   charger that does not obey is disabled and the fault latched.
//! * Lease: each command is valid for `lease`; when the controller stops renewing it, the wrapper
//!   writes the fallback current. A charger with its own fallback (the OCPP fallback profile) keeps
//!   it when the link itself is lost.
//! * Write budget: raises are rate-limited like the inverter's set-points; a decrease is always
//!   written (and counted).
//! * Phases: [`SafeEvse::set_phases`] only while charging was disabled through the wrapper
//!   ([`SafeEvse::set_enabled`]); a loadpoint sequences disable → pause → phases → enable.

use super::events::{EvseClampedBy, EvseEvent, EvseEventLog};
use super::types::{DeciAmps, EvseReading, Phases};
use super::Evse;
use crate::traits::{DeviceError, ErrorKind};
use crate::wrappers::{ConfigError, RateLimiter};
use ems_core::{Amps, Millis};

/// The wrapper's configuration (unvalidated; [`SafeEvse::new`] validates it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SafeEvseConfig {
    /// The site's main fuse per phase (an absolute bound for the charger).
    pub fuse_limit: Amps,
    /// The charger circuit's breaker rating per phase.
    pub circuit_limit: Amps,
    /// The smallest current at which charging is allowed (IEC 61851: 6 A).
    pub min_current: Amps,
    /// The largest current the EMS may command.
    pub max_current: Amps,
    /// Read-back and measurement tolerance.
    pub tolerance: Amps,
    /// How long a mismatch may last before it is a fault (the vehicle's ramp time).
    pub verify_window: Millis,
    /// How long one command stays valid without renewal.
    pub lease: Millis,
    /// The current written when the lease expires (0 A or inside `min ..= max`).
    pub fallback_current: Amps,
    /// Minimum interval between raises.
    pub write_min_interval: Millis,
    /// Raises per rolling window.
    pub write_budget: u16,
    /// The rolling window of the budget.
    pub write_window: Millis,
}

impl Default for SafeEvseConfig {
    /// A 16 A circuit behind a 25 A main fuse: 6 ..= 16 A, 1 A tolerance, 10 s verification,
    /// 60 s lease, 6 A fallback, one raise per 5 s and at most 60 per hour.
    fn default() -> Self {
        Self {
            fuse_limit: ems_core::amps!(25.0),
            circuit_limit: ems_core::amps!(16.0),
            min_current: ems_core::amps!(6.0),
            max_current: ems_core::amps!(16.0),
            tolerance: ems_core::amps!(1.0),
            verify_window: Millis::from_secs(10),
            lease: Millis::from_secs(60),
            fallback_current: ems_core::amps!(6.0),
            write_min_interval: Millis::from_secs(5),
            write_budget: 60,
            write_window: Millis::from_secs(3600),
        }
    }
}

/// Why a command did not reach the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EvseCommandError {
    /// The device failed (mapped onto the shared vocabulary).
    #[error("EV charger error: {0}")]
    Device(ErrorKind),
    /// A phase switch was asked for while charging is not disabled through this wrapper (a
    /// switch must go disable → pause → phases; the loadpoint controller sequences it).
    #[error("phase switch to {to:?} refused: charging must be disabled first")]
    PhaseSwitchWhileEnabled {
        /// The phases asked for.
        to: Phases,
    },
}

/// A latched fault of the charger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EvseFault {
    /// It reads back another limit than the one written.
    LimitNotApplied,
    /// It keeps charging at 0 A.
    ZeroIgnored,
    /// It draws more than the limit.
    OverCurrent,
}

fn amps_f64(a: Amps) -> f64 {
    f64::from(a.get())
}

fn deci(field: &'static str, a: Amps) -> Result<DeciAmps, ConfigError> {
    DeciAmps::try_from_amps(a.get()).map_err(|_| ConfigError::new(field, amps_f64(a), "must be 0 ..= 800 A"))
}

/// The validated limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvseLimits {
    /// Lowest non-zero current.
    pub min: DeciAmps,
    /// Highest current.
    pub max: DeciAmps,
    /// Fallback current.
    pub fallback: DeciAmps,
    /// Tolerance.
    pub tolerance: DeciAmps,
}

impl SafeEvseConfig {
    /// Validate against the device's capabilities.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first field that is not acceptable and its value.
    pub fn validate(&self, caps: &super::EvseCapabilities) -> Result<EvseLimits, ConfigError> {
        let fuse = deci("fuse_limit", self.fuse_limit)?;
        let circuit = deci("circuit_limit", self.circuit_limit)?;
        if fuse.is_zero() {
            return Err(ConfigError::new("fuse_limit", amps_f64(self.fuse_limit), "must be > 0 A"));
        }
        if circuit.is_zero() {
            return Err(ConfigError::new("circuit_limit", amps_f64(self.circuit_limit), "must be > 0 A"));
        }
        let min = deci("min_current", self.min_current)?;
        let max = deci("max_current", self.max_current)?;
        if min.is_zero() {
            return Err(ConfigError::new("min_current", amps_f64(self.min_current), "must be > 0 A"));
        }
        if max > circuit {
            return Err(ConfigError::new(
                "max_current",
                amps_f64(self.max_current),
                "must not exceed circuit_limit",
            ));
        }
        if max > fuse {
            return Err(ConfigError::new(
                "max_current",
                amps_f64(self.max_current),
                "must not exceed fuse_limit",
            ));
        }
        let min = min.max(caps.min_current);
        let max = max.min(caps.max_current);
        if min > max {
            return Err(ConfigError::new(
                "min_current",
                amps_f64(self.min_current),
                "must not exceed max_current and the charger's rated maximum",
            ));
        }
        let tolerance = deci("tolerance", self.tolerance)?;
        if tolerance.is_zero() {
            return Err(ConfigError::new("tolerance", amps_f64(self.tolerance), "must be > 0 A"));
        }
        let fallback = deci("fallback_current", self.fallback_current)?;
        if !fallback.is_zero() && !(min..=max).contains(&fallback) {
            return Err(ConfigError::new(
                "fallback_current",
                amps_f64(self.fallback_current),
                "must be 0 A or inside min_current ..= max_current",
            ));
        }
        crate::wrappers::check_positive_ms("verify_window", self.verify_window)?;
        crate::wrappers::check_positive_ms("lease", self.lease)?;
        Ok(EvseLimits { min, max, fallback, tolerance })
    }
}

/// A mismatch first seen at a time (cleared when it disappears).
#[derive(Debug, Clone, Copy, Default)]
struct Since(Option<Millis>);

impl Since {
    /// Track `active` at `now`; true once it has lasted `window`.
    fn track(&mut self, active: bool, now: Millis, window: Millis) -> bool {
        if !active {
            self.0 = None;
            return false;
        }
        let first = *self.0.get_or_insert(now);
        now.since(first) >= window
    }
}

/// The safety wrapper around an [`Evse`].
#[derive(Debug)]
pub struct SafeEvse<E> {
    device: E,
    config: SafeEvseConfig,
    limits: EvseLimits,
    budget: RateLimiter,
    written: Option<DeciAmps>,
    written_at: Millis,
    lease_until: Option<Millis>,
    in_fallback: bool,
    last_good_read: Option<Millis>,
    comm_lost: bool,
    readback: Since,
    overcurrent: Since,
    fault: Option<EvseFault>,
    last_clamp: Option<EvseClampedBy>,
    events: EvseEventLog,
    /// The last enable state written through the wrapper (`None` before the first write).
    enabled: Option<bool>,
}

impl<E: Evse> SafeEvse<E> {
    /// Wrap `device` with `config` (validated against the device's capabilities).
    ///
    /// # Errors
    /// [`ConfigError`] naming the field and value that is not acceptable.
    pub fn new(device: E, config: SafeEvseConfig) -> Result<Self, ConfigError> {
        let limits = config.validate(&device.capabilities())?;
        let budget = RateLimiter::new(config.write_min_interval, config.write_budget, config.write_window)?;
        Ok(Self {
            device,
            config,
            limits,
            budget,
            written: None,
            written_at: Millis::ZERO,
            lease_until: None,
            in_fallback: false,
            last_good_read: None,
            comm_lost: false,
            readback: Since::default(),
            overcurrent: Since::default(),
            fault: None,
            last_clamp: None,
            events: EvseEventLog::default(),
            enabled: None,
        })
    }

    /// The validated limits.
    #[must_use]
    pub const fn limits(&self) -> EvseLimits {
        self.limits
    }

    /// The latched fault, if any.
    #[must_use]
    pub const fn fault(&self) -> Option<EvseFault> {
        self.fault
    }

    /// Clear the latched fault (operator acknowledgement) and re-enable the charger.
    ///
    /// # Errors
    /// [`EvseCommandError`] when the enable write fails (the fault stays latched).
    pub async fn acknowledge_fault(&mut self) -> Result<(), EvseCommandError> {
        self.device.set_enabled(true).await.map_err(|e| EvseCommandError::Device(e.kind()))?;
        self.fault = None;
        self.enabled = Some(true);
        Ok(())
    }

    /// Enable or disable charging. Enabling is refused while a fault is latched (the fault is
    /// cleared only by [`Self::acknowledge_fault`]); the disable is always written.
    ///
    /// # Errors
    /// [`EvseCommandError`] when the write fails.
    pub async fn set_enabled(&mut self, enabled: bool) -> Result<(), EvseCommandError> {
        let enabled = enabled && self.fault.is_none();
        self.device.set_enabled(enabled).await.map_err(|e| EvseCommandError::Device(e.kind()))?;
        self.enabled = Some(enabled);
        Ok(())
    }

    /// Switch the phases; only while charging is disabled through this wrapper, so that a
    /// vehicle is never re-energised on other phases while it draws current.
    ///
    /// # Errors
    /// [`EvseCommandError::PhaseSwitchWhileEnabled`] unless the last enable write was a
    /// disable; [`EvseCommandError::Device`] when the device refuses or fails.
    pub async fn set_phases(&mut self, phases: Phases) -> Result<(), EvseCommandError> {
        if self.enabled != Some(false) {
            return Err(EvseCommandError::PhaseSwitchWhileEnabled { to: phases });
        }
        self.device.set_phases(phases).await.map_err(|e| EvseCommandError::Device(e.kind()))
    }

    /// The last limit written, if any.
    #[must_use]
    pub const fn written(&self) -> Option<DeciAmps> {
        self.written
    }

    /// Whether the fallback current is in force (the lease expired).
    #[must_use]
    pub const fn in_fallback(&self) -> bool {
        self.in_fallback
    }

    /// Take the buffered events.
    pub fn drain_events(&mut self) -> Vec<(Millis, EvseEvent)> {
        self.events.drain()
    }

    /// The wrapped device (read-only).
    #[must_use]
    pub const fn device(&self) -> &E {
        &self.device
    }

    /// The wrapped device, for tests and simulations that advance its physics. Commands must go
    /// through the wrapper.
    pub fn device_mut(&mut self) -> &mut E {
        &mut self.device
    }

    /// Clamp a request to `0` or `min ..= max`.
    #[must_use]
    pub fn clamp(&self, requested: DeciAmps) -> (DeciAmps, Option<EvseClampedBy>) {
        if requested.is_zero() {
            (DeciAmps::ZERO, None)
        } else if requested < self.limits.min {
            (DeciAmps::ZERO, Some(EvseClampedBy::BelowMinimum))
        } else if requested > self.limits.max {
            (self.limits.max, Some(EvseClampedBy::Maximum))
        } else {
            (requested, None)
        }
    }

    /// Command a current limit at `now`; renews the lease. Returns the limit the device keeps.
    ///
    /// # Errors
    /// [`EvseCommandError`] when the write fails.
    pub async fn command(&mut self, now: Millis, requested: DeciAmps) -> Result<DeciAmps, EvseCommandError> {
        let (target, by) = self.clamp(requested);
        if by != self.last_clamp {
            if let Some(by) = by {
                self.events.push(now, EvseEvent::Clamped { requested, written: target, by });
            }
            self.last_clamp = by;
        }
        let target = if self.fault.is_some() { DeciAmps::ZERO } else { target };
        self.lease_until = Some(now.plus(self.config.lease));
        self.in_fallback = false;
        let previous = self.written;
        let renew_due = now.since(self.written_at) >= Millis::new(self.config.lease.get() / 2);
        if previous == Some(target) && !renew_due {
            return Ok(target);
        }
        let raise = previous.is_none_or(|p| target > p);
        if raise {
            if let Err(_limited) = self.budget.try_acquire(now) {
                let kept = previous.unwrap_or(DeciAmps::ZERO);
                if previous != Some(target) {
                    self.events.push(now, EvseEvent::WriteSkipped { requested: target, kept });
                }
                return Ok(kept);
            }
        } else {
            self.budget.record(now);
        }
        self.write(now, target).await?;
        Ok(target)
    }

    async fn write(&mut self, now: Millis, target: DeciAmps) -> Result<(), EvseCommandError> {
        match self.device.set_current_limit(target).await {
            Ok(()) => {
                if self.written != Some(target) {
                    self.readback = Since::default();
                    self.overcurrent = Since::default();
                }
                self.written = Some(target);
                self.written_at = now;
                Ok(())
            }
            Err(e) => {
                let kind = e.kind();
                self.events.push(now, EvseEvent::WriteFailed { kind });
                Err(EvseCommandError::Device(kind))
            }
        }
    }

    /// One cycle's read at `now`: enforce the lease, read, verify the read-back and the
    /// measured currents against the written limit.
    ///
    /// # Errors
    /// [`EvseCommandError`] when the read fails.
    pub async fn poll(&mut self, now: Millis) -> Result<EvseReading, EvseCommandError> {
        if let Some(until) = self.lease_until {
            if now >= until && !self.in_fallback {
                self.in_fallback = true;
                let fallback = if self.fault.is_some() { DeciAmps::ZERO } else { self.limits.fallback };
                self.events.push(now, EvseEvent::LeaseExpired { fallback });
                self.budget.record(now);
                // A failed write is reported by `write`; the read below still runs.
                let _ = self.write(now, fallback).await;
            }
        }
        let reading = match self.device.read().await {
            Ok(r) => r,
            Err(e) => {
                let since = self.last_good_read.map_or(Millis::ZERO, |t| now.since(t));
                if !self.comm_lost && since >= self.config.verify_window {
                    self.comm_lost = true;
                    self.events.push(now, EvseEvent::CommLost { after: since });
                }
                return Err(EvseCommandError::Device(e.kind()));
            }
        };
        self.last_good_read = Some(now);
        if self.comm_lost {
            self.comm_lost = false;
            self.events.push(now, EvseEvent::CommRestored);
        }
        self.verify(now, &reading).await;
        Ok(reading)
    }

    async fn verify(&mut self, now: Millis, reading: &EvseReading) {
        let Some(written) = self.written else { return };
        let window = self.config.verify_window;
        let tol = self.limits.tolerance;
        let diff = reading.applied_limit.tenths().abs_diff(written.tenths());
        if self.readback.track(diff > tol.tenths(), now, window) && self.fault.is_none() {
            self.fault = Some(EvseFault::LimitNotApplied);
            self.events.push(
                now,
                EvseEvent::LimitNotApplied { commanded: written, read_back: reading.applied_limit },
            );
        }
        let measured = reading.max_phase_current();
        let allowed = written.as_f32() + tol.as_f32();
        let over = measured.get() > allowed;
        if self.overcurrent.track(over, now, window)
            && !matches!(self.fault, Some(EvseFault::ZeroIgnored | EvseFault::OverCurrent))
        {
            if written.is_zero() {
                self.fault = Some(EvseFault::ZeroIgnored);
                self.events.push(now, EvseEvent::ZeroIgnored { measured });
            } else {
                self.fault = Some(EvseFault::OverCurrent);
                self.events.push(now, EvseEvent::OverCurrent { commanded: written, measured });
            }
            // The charger does not obey its limit: take away its permission to charge at all.
            if self.device.set_enabled(false).await.is_ok() {
                self.enabled = Some(false);
                self.events.push(now, EvseEvent::DisabledAfterFault);
            }
            let _ = self.write(now, DeciAmps::ZERO).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Since;
    use ems_core::Millis;

    #[test]
    fn a_mismatch_counts_only_while_it_lasts() {
        let mut s = Since::default();
        let w = Millis::new(1000);
        assert!(!s.track(true, Millis::new(0), w));
        assert!(!s.track(true, Millis::new(999), w));
        assert!(!s.track(false, Millis::new(1000), w), "cleared");
        assert!(!s.track(true, Millis::new(1500), w));
        assert!(s.track(true, Millis::new(2500), w));
    }
}
