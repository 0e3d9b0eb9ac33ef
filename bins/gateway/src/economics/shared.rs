//! The state the planner thread and the API's port share, behind one mutex the control thread
//! never takes.

use super::messages::{SiteClock, Tick};
use crate::config::EconomicsWiring;
use ems_strategies::live::LiveEconomics;
use ems_strategies::prices::FeedStatus;
use ems_strategies::rules::{Decision, RuleEngine, RuleSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// What the planner thread and the API share (the API locks it only to read a view or to
/// store rules; the planner locks it for one step at a time, never during a price fetch).
#[derive(Debug)]
pub(super) struct Core {
    pub(super) engine: LiveEconomics,
    pub(super) feed: FeedView,
    pub(super) rules: Option<RuleEngine>,
    /// The stored rule set as JSON (what `GET /api/v1/rules` shows).
    pub(super) rules_json: serde_json::Value,
    pub(super) decision: Option<Decision>,
    /// The latest site time and measurements from the loop.
    pub(super) tick: Option<Tick>,
    pub(super) wiring: EconomicsWiring,
    /// A changed rule set waits here for the planner (it re-plans and re-evaluates).
    pub(super) rules_changed: bool,
    /// How site time follows control time (the views' time before the loop's first tick).
    pub(super) clock: SiteClock,
    /// The inverter rating the planner's battery model is capped at (none reported yet: the
    /// site file's limits alone).
    pub(super) rating: Option<ems_core::Watts>,
}

/// The feed as the API sees it: copied after every poll.
#[derive(Debug, Clone, Default)]
pub(super) struct FeedView {
    pub(super) status: Option<FeedStatus>,
    pub(super) sources: Vec<ems_strategies::prices::SourceReport>,
}

pub(super) type Shared = Arc<Mutex<Core>>;

pub(super) fn lock(shared: &Shared) -> MutexGuard<'_, Core> {
    // Plain data: a panic elsewhere while holding the lock leaves it usable.
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The site's zone and location win over the rule file's own.
pub(super) fn locate(mut set: RuleSet, w: &EconomicsWiring) -> RuleSet {
    set.set_time_zone(w.time_zone.clone());
    if let Ok(l) = ems_strategies::rules::Location::try_new(w.latitude, w.longitude) {
        set.set_location(l);
    }
    set
}
