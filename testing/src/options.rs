//! What a harness run is asked to do and what it is held to: the vocabulary shared by
//! [`crate::harness`], [`crate::checker`] and [`crate::report`] (so none of them imports another
//! that imports it back).

use crate::faults::FaultPlan;
use ems_control::{ControllerConfig, ModeSetting};
use ems_core::{Millis, Watts};
use ems_devices::sim::SimSiteConfig;
use ems_devices::wrappers::DeviceEvent;
use ems_safety::SafetyConfig;
use serde::Serialize;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Simulated duration.
    pub duration: Millis,
    /// Control and physics step (1 s by default: design.md's simulation-speed target is at
    /// 1 s resolution).
    pub step: Millis,
    /// Seed for the site's noise and the fault plan.
    pub seed: u64,
    /// Faults to inject.
    pub faults: FaultPlan,
    /// Whether the automated operator resets, acknowledges and restarts.
    pub operator: bool,
    /// The site.
    pub site: SimSiteConfig,
    /// The controller.
    pub controller: ControllerConfig,
    /// What the site is asked to do over the day.
    pub duty: Duty,
}

/// What the site is asked to do while it runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Duty {
    /// The controller's configured mode all the time (charge-only by default: the battery fills
    /// from PV surplus and then holds).
    Configured,
    /// A daily cycle that works the whole battery: charge-only from PV surplus from 06:00 to
    /// 17:00 local time, then a manual discharge at `discharge` until 06:00 — every night the
    /// SOC-low alarm, the discharge derating and the cell under-voltage limits are reached.
    DailyCycle {
        /// Discharge power in the evening and night (magnitude).
        discharge: Watts,
    },
}

impl Duty {
    /// The daily cycle with a 3 kW evening discharge.
    pub const DAILY_CYCLE: Self = Self::DailyCycle { discharge: ems_core::watts!(3000.0) };

    /// Parse `configured` / `daily-cycle`.
    ///
    /// # Errors
    /// A message naming the flag and the value.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "configured" | "charge-only" => Ok(Self::Configured),
            "daily-cycle" => Ok(Self::DAILY_CYCLE),
            other => Err(format!("--duty: '{other}' is not one of charge-only, daily-cycle")),
        }
    }

    /// The mode this duty wants at `time_of_day`, if it sets one.
    #[must_use]
    pub fn mode_at(self, time_of_day: Millis, configured: ModeSetting) -> ModeSetting {
        match self {
            Self::Configured => configured,
            Self::DailyCycle { discharge } => {
                let h = time_of_day.get() / 3_600_000;
                if (6..17).contains(&h) {
                    configured
                } else {
                    ModeSetting::Manual { setpoint: discharge.abs() }
                }
            }
        }
    }
}

impl RunOptions {
    /// `days` of simulated operation with default site and controller.
    #[must_use]
    pub fn days(days: u32, seed: u64) -> Self {
        Self {
            duration: Millis::new(u64::from(days) * 86_400_000),
            step: Millis::new(1000),
            seed,
            faults: FaultPlan::None,
            operator: true,
            site: SimSiteConfig { seed, ..SimSiteConfig::default() },
            controller: ControllerConfig::default(),
            duty: Duty::Configured,
        }
    }
}

/// The hard (trip-level) limits the checker holds the physical truth to.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HardLimits {
    /// Cell over-voltage trip (V).
    pub cell_v_high: f32,
    /// Cell under-voltage trip (V).
    pub cell_v_low: f32,
    /// Cell over-temperature trip (°C).
    pub cell_t_high: f32,
    /// No charging below this cell temperature (°C).
    pub charge_temp_floor: f32,
    /// Pack current trip (A, magnitude).
    pub current: f32,
}

/// The hard limits of a safety configuration.
#[must_use]
pub fn hard_limits(safety: &SafetyConfig) -> HardLimits {
    let l = &safety.limits;
    // A quantity without a trip level is held to its alarm level.
    HardLimits {
        cell_v_high: l.cell_voltage_high.trip.unwrap_or(l.cell_voltage_high.alarm).get(),
        cell_v_low: l.cell_voltage_low.trip.unwrap_or(l.cell_voltage_low.alarm).get(),
        cell_t_high: l.cell_temp_high.trip.unwrap_or(l.cell_temp_high.alarm).get(),
        // The cell under-temperature alarm is the level at which charging must have stopped.
        charge_temp_floor: l.cell_temp_low.alarm.get(),
        current: l
            .charge_current
            .trip
            .unwrap_or(l.charge_current.alarm)
            .max(l.discharge_current.trip.unwrap_or(l.discharge_current.alarm))
            .get(),
    }
}

/// Snake-case name of a device event's kind (report key of `device_events`).
pub const fn device_event_kind(e: &DeviceEvent) -> &'static str {
    match e {
        DeviceEvent::ReadingRejected { .. } => "reading_rejected",
        DeviceEvent::ReadFailed { .. } => "read_failed",
        DeviceEvent::CommLost { .. } => "comm_lost",
        DeviceEvent::CommRestored { .. } => "comm_restored",
        DeviceEvent::WriteFailed { .. } => "write_failed",
        DeviceEvent::WriteRefused { .. } => "write_refused",
        DeviceEvent::SetpointClamped { .. } => "setpoint_clamped",
        DeviceEvent::WriteSkipped { .. } => "write_skipped",
        DeviceEvent::SetpointNotApplied { .. } => "setpoint_not_applied",
        DeviceEvent::LeaseTaken { .. } => "lease_taken",
        DeviceEvent::LeaseRenewed => "lease_renewed",
        DeviceEvent::LeaseLost => "lease_lost",
        DeviceEvent::LeaseReleased { .. } => "lease_released",
        DeviceEvent::PrechargeStarted => "precharge_started",
        DeviceEvent::PrechargeDone { .. } => "precharge_done",
        DeviceEvent::PrechargeFailed { .. } => "precharge_failed",
        DeviceEvent::ContactorClosed => "contactor_closed",
        DeviceEvent::ContactorOpened => "contactor_opened",
        DeviceEvent::ContactorWelded => "contactor_welded",
        DeviceEvent::ContactorFailedToClose => "contactor_failed_to_close",
        DeviceEvent::EStopFastPath { .. } => "estop_fast_path",
    }
}
