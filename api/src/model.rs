//! What the control loop and the API share: the latest [`SiteView`] the loop publishes each
//! cycle (a `tokio::sync::watch` channel: readers always see the newest, never block the loop),
//! and the command channel the loop drains each cycle ([`CommandInbox::try_next`]), each
//! command answered through a oneshot so `POST /state` can report a refusal.
//!
//! The loop owns the state machine; the API never changes state itself, it only asks.

use ems_core::{State, TransitionRequest};
use jiff::Timestamp;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// OpenEMS-style channel addresses the loop publishes (more may be present).
pub mod channels {
    /// Grid power, W (`+` import / `−` export).
    pub const GRID_ACTIVE_POWER: &str = "_sum/GridActivePower";
    /// PV production, W (≥ 0).
    pub const PRODUCTION_ACTIVE_POWER: &str = "_sum/ProductionActivePower";
    /// Battery state of charge, %.
    pub const ESS_SOC: &str = "_sum/EssSoc";
    /// Battery power, W (`+` discharge / `−` charge).
    pub const ESS_ACTIVE_POWER: &str = "_sum/EssActivePower";
    /// Site consumption, W.
    pub const CONSUMPTION_ACTIVE_POWER: &str = "_sum/ConsumptionActivePower";
    /// The state name (`RUNNING`, ...).
    pub const STATE: &str = "_sum/State";
    /// The battery power commanded after the final clamp, W (`+` discharge / `−` charge).
    pub const ESS_COMMANDED_POWER: &str = "ess0/DebugSetActivePower";
    /// Which layer set the command (`ems_control::CommandSource`'s text: `mode: …`,
    /// `override FORCE_CHARGE`, `grid service FCR-N`, …).
    pub const COMMAND_SOURCE: &str = "ctrl/CommandSource";
}

/// One channel's value: a number or a text (the state name).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum ChannelValue {
    /// A numeric value (W, %, ...).
    Number(f64),
    /// A textual value.
    Text(String),
}

/// The safety part of the view.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SafetyView {
    /// The state name (`BOOT`, `IDLE`, `RUNNING`, `ERROR`, `STOPPED`).
    pub state: String,
    /// The envelope's largest charge power, W (≥ 0).
    pub max_charge_w: f64,
    /// The envelope's largest discharge power, W (≥ 0).
    pub max_discharge_w: f64,
    /// Which constraints bound the charge limit (operator language).
    pub charge_limited_by: Vec<String>,
    /// Which constraints bound the discharge limit.
    pub discharge_limited_by: Vec<String>,
    /// Latched faults.
    pub latched_faults: Vec<String>,
    /// Recent events, newest last.
    pub recent_events: Vec<String>,
    /// The operating mode the loop runs (`passive`, `self-consumption (grid +0 W, ...)`);
    /// empty before the loop published one.
    pub mode: String,
}

/// Whether the loop has heard from every device it needs.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DevicesView {
    /// Every device answered; control runs.
    pub ready: bool,
    /// What is missing, in the operator's language (`"battery: no answer since start-up"`), or
    /// empty.
    pub detail: String,
}

/// The latest state of the site as the loop last published it. Before the loop's first cycle
/// it is the default: `at: None`, no channels, state empty, devices not ready; every endpoint
/// answers with it.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct SiteView {
    /// When the loop published it (`None` before the first cycle).
    pub at: Option<Timestamp>,
    /// Channel values by OpenEMS address.
    pub channels: BTreeMap<String, ChannelValue>,
    /// Safety state and envelope.
    pub safety: SafetyView,
    /// Whether the devices answered yet; `GET /api/v1/safety` and the live view's `safety`
    /// carry it too (as `devices`), from here: the loop sets it once.
    pub devices: DevicesView,
}

/// A command from the API to the loop.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiCommand {
    /// Software emergency stop.
    EmergencyStop {
        /// Who (audit actor).
        actor: String,
    },
    /// Manual reset after an E-stop (STOPPED → IDLE).
    Reset {
        /// Who.
        actor: String,
        /// The operator's reason (non-empty).
        reason: String,
    },
    /// Any other state-machine request (start, stop, acknowledge).
    Request {
        /// Who.
        actor: String,
        /// The request.
        request: TransitionRequest,
    },
    /// Switch the operating mode (the site file's `[mode]`) at run time; validated by the API
    /// with [`ems_control::ModeSetting::validate`]. The loop answers with the state it is in.
    SetMode {
        /// Who.
        actor: String,
        /// The new mode.
        mode: ems_control::ModeSetting,
    },
    /// An operator action on the island sequence (black start, reset of a safe stop); the loop
    /// answers with the controller's state, or a refusal (a reset outside SAFE STOP).
    Island {
        /// Who.
        actor: String,
        /// What.
        action: crate::island::IslandAction,
        /// The operator's reason (non-empty; audited).
        reason: String,
    },
}

/// The state machine refused a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The state it stayed in.
    pub state: State,
    /// Why (operator language, e.g. the `TransitionError`'s message).
    pub reason: String,
}

/// The loop's answer: the state after the command, or a refusal.
pub type CommandResult = Result<State, Refusal>;

/// A command waiting for the loop, with its reply channel.
#[derive(Debug)]
pub struct PendingCommand {
    command: ApiCommand,
    reply: oneshot::Sender<CommandResult>,
}

impl PendingCommand {
    /// The command.
    #[must_use]
    pub fn command(&self) -> &ApiCommand {
        &self.command
    }

    /// Answer it (if the requester stopped waiting, the answer is dropped).
    pub fn answer(self, result: CommandResult) {
        // The HTTP request may have timed out; the loop must not care.
        let _ = self.reply.send(result);
    }
}

/// The API's end of the command channel.
#[derive(Debug, Clone)]
pub struct CommandClient {
    tx: mpsc::Sender<PendingCommand>,
    timeout: Duration,
}

/// The loop's end of the command channel.
#[derive(Debug)]
pub struct CommandInbox {
    rx: mpsc::Receiver<PendingCommand>,
}

/// Why a command could not be delivered or answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The queue is full (the loop is not draining it).
    #[error("the control loop is busy (command queue full)")]
    Busy,
    /// The loop is gone.
    #[error("the control loop is not running")]
    Closed,
    /// No answer within the timeout.
    #[error("the control loop did not answer in time")]
    Timeout,
}

/// A command channel holding at most `capacity` (≥ 1) waiting commands; a requester waits at
/// most `timeout` for the loop's answer.
#[must_use]
pub fn command_channel(capacity: usize, timeout: Duration) -> (CommandClient, CommandInbox) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (CommandClient { tx, timeout }, CommandInbox { rx })
}

/// The view channel: the loop keeps the sender and calls `send_replace` each cycle.
#[must_use]
pub fn view_channel() -> (watch::Sender<SiteView>, watch::Receiver<SiteView>) {
    watch::channel(SiteView::default())
}

impl CommandClient {
    /// Send `command` and wait for the loop's answer.
    ///
    /// # Errors
    /// [`LinkError`] if the loop is busy, gone or does not answer in time.
    pub async fn send(&self, command: ApiCommand) -> Result<CommandResult, LinkError> {
        let (reply, answer) = oneshot::channel();
        self.tx.try_send(PendingCommand { command, reply }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => LinkError::Busy,
            mpsc::error::TrySendError::Closed(_) => LinkError::Closed,
        })?;
        match tokio::time::timeout(self.timeout, answer).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(_)) => Err(LinkError::Closed),
            Err(_) => Err(LinkError::Timeout),
        }
    }
}

impl CommandInbox {
    /// The next waiting command, without blocking (the loop calls this until `None` each
    /// cycle).
    pub fn try_next(&mut self) -> Option<PendingCommand> {
        self.rx.try_recv().ok()
    }

    /// Wait for the next command (`None` when every client is gone); for tests and for a loop
    /// that selects on it.
    pub async fn next(&mut self) -> Option<PendingCommand> {
        self.rx.recv().await
    }
}

/// Operator text for the envelope reasons of `safety` that name an interlock only by its
/// number (`interlock #3`, the `Display` of [`ems_core::event::Constraint::Interlock`]): the
/// rule's text from `ems-safety`'s default table, which the safety monitor runs. Keyed by the
/// reason as it appears in `charge_limited_by` / `discharge_limited_by`.
#[must_use]
pub fn explain_limits(safety: &SafetyView) -> BTreeMap<String, String> {
    safety
        .charge_limited_by
        .iter()
        .chain(&safety.discharge_limited_by)
        .filter_map(|reason| {
            let id: u8 = reason.strip_prefix("interlock #")?.parse().ok()?;
            let rule = ems_safety::interlock::DEFAULT_RULES.iter().find(|r| r.id == id)?;
            Some((reason.clone(), rule.name.to_owned()))
        })
        .collect()
}

/// One line of [`SafetyView::recent_events`] stamped with the site's clock time:
/// `[2026-05-01T12:00:03Z] text` (UTC, whole seconds). The operator page shows the time in the
/// browser's (the site's) local time; a loop that stamps events this way, rather than with the
/// seconds since it started, gives the operator times that match the audit log.
#[must_use]
pub fn event_line(at: Timestamp, text: &str) -> String {
    let at = at.round(jiff::Unit::Second).unwrap_or(at);
    format!("[{at}] {text}")
}
