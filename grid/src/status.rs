//! What every service reports each call, for audit and logging: small `Copy` structs, no
//! allocation (a leaf module).

use core::fmt;
use ems_core::{Hertz, Millis, Watts};

/// Which service a status belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceKind {
    /// FCR-N (normal operation, symmetric).
    FcrN,
    /// FCR-D upwards (under-frequency: discharge more / charge less).
    FcrDUp,
    /// FCR-D downwards (over-frequency: charge more / discharge less).
    FcrDDown,
    /// Fast frequency reserve (under-frequency).
    Ffr,
    /// A grid-code droop (LFSM-O/U, IEEE 1547).
    Droop,
}

impl ServiceKind {
    /// The name used in reasons and audit (`"FCR-N"`).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::FcrN => "FCR-N",
            Self::FcrDUp => "FCR-D up",
            Self::FcrDDown => "FCR-D down",
            Self::Ffr => "FFR",
            Self::Droop => "droop",
        }
    }
}

/// Where a service stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Activation {
    /// Not called yet, or restarted after a gap in the calls (the controller was not RUNNING).
    Inactive,
    /// Ready, frequency inside the band where it gives no response.
    Armed,
    /// Responding to the frequency.
    Active,
    /// Falling back at a bounded rate (FCR-D after the nadir, FFR after its support).
    Deactivating,
    /// FFR after an activation: not ready again before this time (and the re-arm condition).
    Recovering {
        /// The earliest time the service can be armed again.
        ready_at: Millis,
    },
    /// The frequency is stale or invalid: the response falls to zero at the stale
    /// deactivation rate, then the service reports itself inactive (never frozen).
    FrequencyLost,
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inactive => f.write_str("INACTIVE"),
            Self::Armed => f.write_str("ARMED"),
            Self::Active => f.write_str("ACTIVE"),
            Self::Deactivating => f.write_str("DEACTIVATING"),
            Self::Recovering { ready_at } => write!(f, "RECOVERING until {ready_at}"),
            Self::FrequencyLost => f.write_str("FREQUENCY LOST"),
        }
    }
}

/// Normal-state energy management (NEM) of FCR-N.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum NemState {
    /// No offset.
    #[default]
    Off,
    /// The up-regulation energy runs low: the set-point is offset toward charging.
    Charging,
    /// The down-regulation room runs low: the set-point is offset toward discharging.
    Discharging,
}

/// Alert-state energy management (AEM) of FCR-N.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AemState {
    /// Not in AEM.
    #[default]
    Off,
    /// Alert state, up-regulation energy low: f_ref moved down.
    SavingUp,
    /// Alert state, down-regulation room low: f_ref moved up.
    SavingDown,
}

/// The limited-energy-reservoir view of one service.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LerStatus {
    /// Minutes (as [`Millis`]) of full activation left upwards (discharging); `None` without
    /// a good SOC or for a service that never regulates upwards.
    pub endurance_up: Option<Millis>,
    /// The same downwards (charging).
    pub endurance_down: Option<Millis>,
    /// NEM state (FCR-N only).
    pub nem: NemState,
    /// AEM state (FCR-N only).
    pub aem: AemState,
    /// The NEM set-point offset included in [`ServiceStatus::delta`] (`+` discharge).
    pub nem_offset: Watts,
    /// The rolling mean of the FCR-N response over the NEM window (FCR-N only).
    pub mean_response: Watts,
    /// Whether the frequency has been outside the alert band for the alert delay.
    pub alert_state: bool,
}

/// One service's report of one call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServiceStatus {
    /// Which service.
    pub kind: ServiceKind,
    /// Where it stands.
    pub activation: Activation,
    /// The Δ requested this call (`+` discharge), NEM offset included.
    pub delta: Watts,
    /// The frequency it used (`None`: stale or invalid).
    pub frequency: Option<Hertz>,
    /// Reservoir view (endurance, NEM, AEM).
    pub ler: LerStatus,
}

impl ServiceStatus {
    /// The status of a service that has not been called yet.
    #[must_use]
    pub const fn inactive(kind: ServiceKind) -> Self {
        Self {
            kind,
            activation: Activation::Inactive,
            delta: Watts::ZERO,
            frequency: None,
            ler: LerStatus {
                endurance_up: None,
                endurance_down: None,
                nem: NemState::Off,
                aem: AemState::Off,
                nem_offset: Watts::ZERO,
                mean_response: Watts::ZERO,
                alert_state: false,
            },
        }
    }
}

impl fmt::Display for ServiceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} Δ {:+.0}", self.kind.name(), self.activation, self.delta)
    }
}

/// One service's answer to one call: its Δ, its reservation and its status. What
/// [`ems_control::GridService::request`] returns is derived from it
/// ([`Response::to_request`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Response {
    /// The Δ on top of the baseline (`+` discharge).
    pub delta: Watts,
    /// Power and energy kept from the sources below.
    pub reserve: ems_control::Reserve,
    /// The report for audit.
    pub status: ServiceStatus,
    /// Whether the service is engaged at all (`false`: not called yet, or its frequency was
    /// lost and its response has fallen back to zero — it then returns `None`).
    pub engaged: bool,
}

impl Response {
    /// The request for the controller: `None` when not engaged, [`ems_control::GridAction::Idle`]
    /// (reserve held, nothing moved) at a Δ of exactly zero, otherwise
    /// [`ems_control::GridAction::Add`]. No own ramp: the services shape their own response
    /// (including every deactivation limit), so the command follows it without delay.
    #[must_use]
    pub fn to_request(&self) -> Option<ems_control::GridRequest> {
        if !self.engaged {
            return None;
        }
        let action = if self.delta == Watts::ZERO {
            ems_control::GridAction::Idle
        } else {
            ems_control::GridAction::Add(self.delta)
        };
        Some(ems_control::GridRequest { action, reserve: self.reserve, ramp: None })
    }
}
