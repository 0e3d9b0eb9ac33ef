//! What the engine has learned, as one serializable value for the caller to store.

use super::forecasts::ErrorPair;
use super::money::Flows;
use super::views::Actual;
use crate::accounting::LedgerState;
use crate::forecast::PvLearned;
use jiff::civil::Date;
use jiff::Timestamp;

/// The version of [`LiveState`] this build writes and reads.
pub const STATE_VERSION: u32 = 1;

/// The learned state of a [`super::LiveEconomics`]: load profiles, the PV ratio state, the
/// forecast-error window, the three ledgers, the daily energy flows, the simulated
/// self-consumption battery and the last observed instant (so that a restart neither forgets
/// nor counts anything twice). Serialize it (e.g. to JSON) and hand it back to
/// [`super::LiveEconomics::new`]. Opaque apart from its version.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LiveState {
    /// [`STATE_VERSION`] when written.
    pub version: u32,
    pub(super) load_slots_per_day: usize,
    /// Working day, Saturday, Sunday/holiday profiles, W per slot.
    pub(super) load_profile: [Vec<f32>; 3],
    pub(super) pv: PvLearned,
    pub(super) errors: Vec<ErrorPair>,
    pub(super) ledger_ems: LedgerState,
    pub(super) ledger_no_battery: LedgerState,
    pub(super) ledger_self_consumption: LedgerState,
    pub(super) sc_stored_wh: Option<f64>,
    pub(super) flows: Vec<(Date, Flows)>,
    pub(super) actuals: Vec<(Timestamp, Actual)>,
    pub(super) last_end: Option<Timestamp>,
}
