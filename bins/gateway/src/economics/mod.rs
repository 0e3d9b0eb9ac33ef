//! Live economics in the running gateway (`[economics]`, or `--economics FILE` on the simulated
//! site): prices from the configured sources, forecasts learned from the site's own meters,
//! re-planning, operator rules, the cost ledger — all on the **planner thread**, never on the
//! control thread. The two talk through bounded channels:
//!
//! - control → planner ([`ToPlanner`]): a tick every second (site time, SOC, powers, the
//!   set-point's source) and 1-minute measurement means; sent with `try_send`, a full channel
//!   drops the message and counts it;
//! - planner → control ([`ToLoop`]): a new plan (its slots and expiry) and the winning rule;
//!   read with `try_recv` before each step ([`hook::LoopEconomics`]).
//!
//! The API reads views (plan, forecast, prices, savings, report, rules) from the planner's state
//! behind a mutex the control thread never takes (`port`).

pub(crate) mod hook;
mod messages;
mod planner;
mod port;
mod shared;

pub(crate) use hook::LoopEconomics;
pub(crate) use messages::SiteClock;
pub(crate) use planner::{EconomicsStart, Planner};
