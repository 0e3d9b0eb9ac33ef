//! Grid-frequency measurement for the grid services' fast path (issue #13 item 3).
//!
//! * [`FrequencySource`]: the device trait — one read of the grid frequency. Implementations:
//!   [`ModbusFrequency`] (a meter or measurement device's frequency register over any
//!   [`crate::modbus::RegisterClient`], in the register-map style of the profiles: table,
//!   0-based address, value type, word order, scale, unit, `absent` codes) and, behind the
//!   `sim` feature, `SimFrequency` (a value set by hand, a replayed profile or a function of
//!   time, with injectable faults).
//! * [`FrequencyInput`]: the safety wrapper. It keeps the source's own quality and maximum
//!   age: a reading outside the plausible range is `Invalid` at once, a failed read brings no
//!   new value (the last one goes `Stale` through its maximum age) — so a stale sample is never
//!   used ([`ems_core::Measurement::value_at`] returns `None`), and the grid services, which
//!   see it through the snapshot, deactivate at their bounded rate instead of freezing.

mod modbus;
#[cfg(feature = "sim")]
mod sim;

pub use modbus::{FrequencyRegister, ModbusFrequency, ModbusFrequencyError};
#[cfg(feature = "sim")]
pub use sim::{SimFrequency, SimFrequencyHandle, SimFrequencySignal};

use crate::traits::{DeviceError, ErrorKind};
use ems_core::{Hertz, Measurement, Millis};

/// Default maximum age of a frequency sample: 300 ms. **Assumption** (not given by the issue):
/// three fast ticks at 10 Hz, well inside FFR's fastest class (0.7 s), so one lost read does
/// not drop a service but a dead link deactivates it within a third of a second.
pub const DEFAULT_FREQUENCY_MAX_AGE: Millis = Millis::new(300);

/// A grid-frequency measurement device.
#[allow(async_fn_in_trait)] // driven on the control thread; no Send bound wanted
pub trait FrequencySource {
    /// The driver's error.
    type Error: DeviceError;
    /// Read the grid frequency now.
    async fn read(&mut self) -> Result<Hertz, Self::Error>;
    /// How old the value returned by the last successful `read` already was (a device that
    /// averages or caches); zero (the default) for a fresh measurement. The wrapper stamps the
    /// sample with `now − age`, so a reused value is never made fresh.
    fn reading_age(&self) -> Millis {
        Millis::ZERO
    }
}

/// Settings of a [`FrequencyInput`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrequencyInputConfig {
    /// A sample older than this is stale and not used.
    pub max_age: Millis,
    /// Lowest plausible frequency (below: the reading is invalid).
    pub min: Hertz,
    /// Highest plausible frequency (above: the reading is invalid).
    pub max: Hertz,
}

impl Default for FrequencyInputConfig {
    /// 300 ms, 45–65 Hz (the meter validation's range).
    fn default() -> Self {
        Self { max_age: DEFAULT_FREQUENCY_MAX_AGE, min: ems_core::hertz!(45.0), max: ems_core::hertz!(65.0) }
    }
}

/// Invalid [`FrequencyInputConfig`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FrequencyConfigError {
    /// `max_age` is zero.
    #[error("max_age = 0 ms must be > 0")]
    ZeroMaxAge,
    /// `min` is not below `max`.
    #[error("min = {min} must be below max = {max}")]
    Range {
        /// The lower bound given.
        min: Hertz,
        /// The upper bound given.
        max: Hertz,
    },
}

/// What became of one poll of a [`FrequencyInput`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrequencyPoll {
    /// A plausible value was read.
    Good,
    /// The read failed (its kind); the last sample ages toward stale.
    Failed(ErrorKind),
    /// The value was outside the plausible range: the measurement is invalid now.
    Implausible,
}

/// The safety wrapper of a [`FrequencySource`]: the measurement with its own quality and
/// maximum age.
#[derive(Debug)]
pub struct FrequencyInput<F> {
    source: F,
    config: FrequencyInputConfig,
    measurement: Measurement<Hertz>,
    failing: Option<ErrorKind>,
    reads: u64,
    failures: u64,
}

impl<F: FrequencySource> FrequencyInput<F> {
    /// Wrap `source`.
    ///
    /// # Errors
    /// [`FrequencyConfigError`] naming the field and value.
    pub fn new(source: F, config: FrequencyInputConfig) -> Result<Self, FrequencyConfigError> {
        if config.max_age == Millis::ZERO {
            return Err(FrequencyConfigError::ZeroMaxAge);
        }
        if config.min >= config.max {
            return Err(FrequencyConfigError::Range { min: config.min, max: config.max });
        }
        Ok(Self {
            source,
            measurement: Measurement::invalid(Hertz::ZERO, config.max_age),
            config,
            failing: None,
            reads: 0,
            failures: 0,
        })
    }

    /// Read the source once at control time `now` and update the measurement.
    pub async fn poll(&mut self, now: Millis) -> FrequencyPoll {
        self.reads = self.reads.saturating_add(1);
        match self.source.read().await {
            Ok(f) if f >= self.config.min && f <= self.config.max => {
                self.failing = None;
                self.measurement.update(f, now.since(self.source.reading_age()));
                FrequencyPoll::Good
            }
            Ok(_) => {
                self.failing = None;
                self.measurement.invalidate();
                FrequencyPoll::Implausible
            }
            Err(e) => {
                self.failures = self.failures.saturating_add(1);
                let kind = e.kind();
                self.failing = Some(kind);
                if !kind.is_link() {
                    // An answer that is no usable reading: invalid at once (design.md §4).
                    self.measurement.invalidate();
                }
                FrequencyPoll::Failed(kind)
            }
        }
    }

    /// The measurement (value, time, max age, quality).
    #[must_use]
    pub const fn measurement(&self) -> Measurement<Hertz> {
        self.measurement
    }

    /// The frequency if good at `now` (`None`: never read, stale, invalid).
    #[must_use]
    pub fn value_at(&self, now: Millis) -> Option<Hertz> {
        self.measurement.value_at(now)
    }

    /// The last read's failure, if the source is failing.
    #[must_use]
    pub const fn failing(&self) -> Option<ErrorKind> {
        self.failing
    }

    /// Reads attempted and failed so far.
    #[must_use]
    pub const fn counts(&self) -> (u64, u64) {
        (self.reads, self.failures)
    }

    /// The settings.
    #[must_use]
    pub const fn config(&self) -> &FrequencyInputConfig {
        &self.config
    }

    /// The source.
    pub fn source_mut(&mut self) -> &mut F {
        &mut self.source
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ems_core::Quality;

    #[derive(Debug)]
    struct Script(Vec<Result<Hertz, ErrorKind>>);

    #[derive(Debug)]
    struct E(ErrorKind);
    impl DeviceError for E {
        fn kind(&self) -> ErrorKind {
            self.0
        }
    }

    impl FrequencySource for Script {
        type Error = E;
        async fn read(&mut self) -> Result<Hertz, E> {
            if self.0.is_empty() {
                return Err(E(ErrorKind::Timeout));
            }
            self.0.remove(0).map_err(E)
        }
    }

    fn hz(v: f32) -> Hertz {
        Hertz::try_new(v).unwrap()
    }

    #[test]
    fn config_errors_name_the_field() {
        let e = FrequencyInput::new(
            Script(vec![]),
            FrequencyInputConfig { max_age: Millis::ZERO, ..Default::default() },
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "max_age = 0 ms must be > 0");
        let c = FrequencyInputConfig { min: hz(52.0), max: hz(48.0), ..Default::default() };
        assert!(FrequencyInput::new(Script(vec![]), c).unwrap_err().to_string().contains("min = 52"));
    }

    #[test]
    fn good_then_stale_after_max_age_when_the_link_dies() {
        let mut f = FrequencyInput::new(Script(vec![Ok(hz(49.8))]), FrequencyInputConfig::default()).unwrap();
        assert_eq!(f.value_at(Millis::ZERO), None, "never read: no value");
        assert_eq!(pollster::block_on(f.poll(Millis::new(1_000))), FrequencyPoll::Good);
        assert_eq!(f.value_at(Millis::new(1_000)), Some(hz(49.8)));
        // The next reads time out: the sample is kept until its max age, then never used.
        assert_eq!(pollster::block_on(f.poll(Millis::new(1_100))), FrequencyPoll::Failed(ErrorKind::Timeout));
        assert_eq!(f.value_at(Millis::new(1_300)), Some(hz(49.8)));
        assert_eq!(f.value_at(Millis::new(1_301)), None);
        assert_eq!(f.measurement().quality_at(Millis::new(1_301)), Quality::Stale);
        assert_eq!(f.failing(), Some(ErrorKind::Timeout));
        assert_eq!(f.counts(), (2, 1));
    }

    #[test]
    fn implausible_or_undecodable_readings_invalidate_at_once() {
        let script = Script(vec![Ok(hz(50.0)), Ok(hz(70.0)), Ok(hz(50.0)), Err(ErrorKind::Decode)]);
        let mut f = FrequencyInput::new(script, FrequencyInputConfig::default()).unwrap();
        let _ = pollster::block_on(f.poll(Millis::new(0)));
        assert_eq!(pollster::block_on(f.poll(Millis::new(100))), FrequencyPoll::Implausible);
        assert_eq!(f.value_at(Millis::new(100)), None);
        assert_eq!(f.measurement().quality_at(Millis::new(100)), Quality::Invalid);
        let _ = pollster::block_on(f.poll(Millis::new(200)));
        assert_eq!(f.value_at(Millis::new(200)), Some(hz(50.0)));
        assert_eq!(pollster::block_on(f.poll(Millis::new(300))), FrequencyPoll::Failed(ErrorKind::Decode));
        assert_eq!(f.value_at(Millis::new(300)), None, "a decode error is invalid at once");
    }
}
