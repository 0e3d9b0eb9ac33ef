//! [`CentralSystemConfig`]: the central system's settings, validated before it binds.

use crate::evse::types::{DeciAmps, Phases};
use crate::wrappers::ConfigError;
use ems_core::{Millis, Watts};
use std::time::Duration;

/// The central system's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct CentralSystemConfig {
    /// How many charge points may be known at once (connections beyond are refused).
    pub max_charge_points: usize,
    /// The largest WebSocket frame and message accepted, in bytes.
    pub max_frame_bytes: usize,
    /// Heartbeat interval sent in BootNotification.conf (s).
    pub heartbeat_interval_secs: u32,
    /// A charge point that sends nothing for this long is disconnected and reported offline
    /// (default: two heartbeat intervals plus 10 s).
    pub offline_after: Duration,
    /// How long a call waits for the charge point's answer.
    pub call_timeout: Duration,
    /// How long the WebSocket handshake may take.
    pub handshake_timeout: Duration,
    /// More messages than this within one second close the connection.
    pub max_messages_per_second: u32,
    /// More malformed messages than this (per connection) close it.
    pub max_malformed: u32,
    /// Depth of each charge point's command queue.
    pub queue_depth: usize,
    /// Duration of each limit profile (s): the lease; when not renewed, the fallback applies.
    pub lease_secs: u32,
    /// The fallback current (TxDefaultProfile at stack level 0).
    pub fallback_current: DeciAmps,
    /// The station maximum (ChargePointMaxProfile).
    pub station_max: DeciAmps,
    /// The minimum charging current (reported in the capabilities).
    pub min_current: DeciAmps,
    /// The phases the charge points are wired with.
    pub phases: Phases,
    /// How long after a 0 A command the meter values may still show power.
    pub zero_grace: Millis,
    /// Power above which a charge point at 0 A is still charging.
    pub zero_power_threshold: Watts,
    /// Id tags accepted by Authorize/StartTransaction (`None`: any).
    pub id_tags: Option<Vec<String>>,
    /// Send the station-maximum and fallback profiles after each BootNotification (default
    /// `true`). `false` only listens: `ems-gateway scan --ocpp-listen` must change nothing on a
    /// charger it merely identifies.
    pub install_fallback: bool,
}

impl Default for CentralSystemConfig {
    fn default() -> Self {
        Self {
            max_charge_points: 32,
            max_frame_bytes: 64 * 1024,
            heartbeat_interval_secs: 300,
            offline_after: Duration::from_secs(610),
            call_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            max_messages_per_second: 20,
            max_malformed: 10,
            queue_depth: 8,
            lease_secs: 60,
            fallback_current: DeciAmps::from_tenths(60).unwrap_or(DeciAmps::ZERO),
            station_max: DeciAmps::from_tenths(160).unwrap_or(DeciAmps::ZERO),
            min_current: DeciAmps::from_tenths(60).unwrap_or(DeciAmps::ZERO),
            phases: Phases::Three,
            zero_grace: Millis::from_secs(10),
            zero_power_threshold: ems_core::watts!(100.0),
            id_tags: None,
            install_fallback: true,
        }
    }
}

fn usize_f64(v: usize) -> f64 {
    // Only for error messages.
    #[allow(clippy::cast_precision_loss)]
    let x = v as f64;
    x
}

impl CentralSystemConfig {
    /// Check every field.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first field that is not acceptable and its value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=10_000).contains(&self.max_charge_points) {
            return Err(ConfigError::new(
                "max_charge_points",
                usize_f64(self.max_charge_points),
                "must be 1..=10000",
            ));
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.max_frame_bytes) {
            return Err(ConfigError::new(
                "max_frame_bytes",
                usize_f64(self.max_frame_bytes),
                "must be 1 KiB ..= 16 MiB",
            ));
        }
        if self.heartbeat_interval_secs == 0 {
            return Err(ConfigError::new("heartbeat_interval_secs", 0.0, "must be > 0 s"));
        }
        if self.offline_after.is_zero() {
            return Err(ConfigError::new("offline_after", 0.0, "must be > 0"));
        }
        if self.call_timeout.is_zero() || self.handshake_timeout.is_zero() {
            return Err(ConfigError::new(
                "call_timeout",
                0.0,
                "call_timeout and handshake_timeout must be > 0",
            ));
        }
        if self.max_messages_per_second == 0 {
            return Err(ConfigError::new("max_messages_per_second", 0.0, "must be > 0"));
        }
        if !(1..=1024).contains(&self.queue_depth) {
            return Err(ConfigError::new("queue_depth", usize_f64(self.queue_depth), "must be 1..=1024"));
        }
        if self.lease_secs == 0 {
            return Err(ConfigError::new("lease_secs", 0.0, "must be > 0 s"));
        }
        if self.min_current.is_zero() || self.min_current > self.station_max {
            return Err(ConfigError::new(
                "min_current",
                f64::from(self.min_current.as_f32()),
                "must be > 0 A and not above station_max",
            ));
        }
        let fb = self.fallback_current;
        if !fb.is_zero() && !(self.min_current..=self.station_max).contains(&fb) {
            return Err(ConfigError::new(
                "fallback_current",
                f64::from(fb.as_f32()),
                "must be 0 A or inside min_current ..= station_max",
            ));
        }
        if self.zero_power_threshold.get() <= 0.0 {
            return Err(ConfigError::new(
                "zero_power_threshold",
                f64::from(self.zero_power_threshold.get()),
                "must be > 0 W",
            ));
        }
        Ok(())
    }
}
