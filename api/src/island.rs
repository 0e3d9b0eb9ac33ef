//! Island operation on the API (issue #13 item 6): `GET /api/v1/island` and the operator
//! actions `POST /api/v1/island/black-start` and `POST /api/v1/island/reset`.
//!
//! The wire format is this module's DTOs ([`IslandView`]), not `ems-grid`'s types: the loop
//! (the gateway) translates the island path's status into them each cycle and publishes them on
//! an [`IslandBoard`]. The actions go to the loop through the bounded command channel
//! (`ApiCommand::Island`), need the operator role and a JSON body `{"reason": "..."}`, and are
//! audited with their reason and outcome. Without an island (`None` board) every endpoint
//! answers 404. This module is a leaf (the DTOs); the handlers are in `island_routes`.

use std::sync::{Arc, Mutex, PoisonError};

/// The 404 text without an island.
pub const NOT_CONFIGURED: &str = "island operation is not configured on this site";

/// An operator action on the island sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IslandAction {
    /// Black start from BLACKOUT.
    BlackStart,
    /// Reset a SAFE STOP.
    Reset,
}

impl IslandAction {
    /// `black-start` / `reset`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::BlackStart => "black-start",
            Self::Reset => "reset",
        }
    }
}

/// The close conditions (all must hold for the breaker to be commanded closed).
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct CloseConditionsView {
    /// Grid inside the enter-service window for the whole delay.
    pub grid_healthy: bool,
    /// No protection stage tripped.
    pub no_trip: bool,
    /// Breaker read back open.
    pub breaker_open: bool,
    /// Synchronised, or a dead bus.
    pub synchronised: bool,
    /// Not in a safe stop, no inverter fault.
    pub authorised: bool,
    /// Every condition.
    pub all: bool,
    /// The first false condition in words.
    pub first_false: Option<String>,
}

/// The detector's view of the grid side.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct DetectionView {
    /// The tripped stage (`"U<< under-voltage"`), if any.
    pub trip: Option<String>,
    /// Voltage and frequency were good in the last sample.
    pub measured: bool,
    /// Rate of change of frequency, Hz/s.
    pub rocof_hz_per_s: Option<f32>,
    /// The 10-minute mean voltage, V.
    pub mean_voltage_v: Option<f32>,
    /// How long the grid has been inside the enter-service window, s.
    pub grid_healthy_for_s: f32,
}

/// One load circuit.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct IslandLoadView {
    /// Name.
    pub name: String,
    /// Restore priority (0 = critical).
    pub priority: u8,
    /// Nominal power, W.
    pub nominal_w: f32,
    /// Commanded on.
    pub commanded: bool,
    /// Read back on (`null`: feedback not good).
    pub on: Option<bool>,
}

/// One island event.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct IslandEventView {
    /// Control time, s.
    pub at_s: f32,
    /// What happened.
    pub text: String,
}

/// `GET /api/v1/island`.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct IslandView {
    /// The loop has stepped the island sequence at least once.
    pub live: bool,
    /// Control time of the last step, s.
    pub at_s: f32,
    /// `CONNECTED`, `TRANSFERRING`, `ISLANDED`, `BLACK START`, `RESYNCHRONISING`,
    /// `RECONNECTING`, `BLACKOUT`, `SAFE STOP` or `STARTING`.
    pub grid_state: String,
    /// Breaker read-back `open` / `closed` (`null`: not good).
    pub breaker: Option<String>,
    /// The last breaker command (`hold`, `open`, `close`).
    pub breaker_command: String,
    /// Inverter mode read back (`off`, `grid-following`, `grid-forming`; `null`: not good).
    pub inverter_mode: Option<String>,
    /// The inverter mode commanded.
    pub inverter_command: String,
    /// The close conditions.
    pub close_conditions: CloseConditionsView,
    /// Detection.
    pub detection: DetectionView,
    /// The circuits.
    pub loads: Vec<IslandLoadView>,
    /// The latched safe-stop reason.
    pub stop_reason: Option<String>,
    /// Battery set-points allowed (connected).
    pub setpoints_allowed: bool,
    /// The reconnection ramp's limit, W (`null`: none).
    pub power_limit_w: Option<f32>,
    /// The bound on the battery set-point and its reason (`"islanded: …"`).
    pub setpoint_bound: Option<String>,
    /// Discharge power available to the island, W.
    pub available_w: f32,
    /// An E-stop holds the island down.
    pub estop: bool,
    /// The last events, oldest first.
    pub recent_events: Vec<IslandEventView>,
}

/// Where the loop publishes the island view (shared with the API).
#[derive(Debug, Default)]
pub struct IslandBoard(Mutex<IslandView>);

impl IslandBoard {
    /// An empty board (`live: false` until the loop publishes).
    #[must_use]
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The loop publishes.
    pub fn publish(&self, view: IslandView) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = view;
    }

    /// The last published view.
    #[must_use]
    pub fn view(&self) -> IslandView {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}
