//! Operator schedules and rules (issue #12): "no discharge in the evening peak on working days",
//! "charge to 80 % by 07:00 when the price is below 0.10", "keep a 30 % reserve until sunset".
//!
//! | module | holds |
//! |---|---|
//! | [`file`] | the format: [`RuleSet`] from TOML or JSON (the API's body) and back to JSON, validated, every error naming the path and the value |
//! | [`engine`] | [`RuleEngine`]: which rules fire, their latches (`until`), the conflict rule, the [`Decision`] that names the winner and why each other rule lost |
//! | [`calendar`] | working days, weekends and computed public holidays of DE, AT, NL, FR, BE, GB, DK, SE |
//! | [`sun`] | NOAA sunrise/sunset for `until: sunset` |
//!
//! # Where rules rank
//!
//! The engine runs off the control thread (it allocates a little and is cheap enough for every
//! second) and hands its winner to the controller as `ems_control::Inputs::rule`
//! ([`Decision::rule_target`]). `ems_control::arbitrate` ranks it: below a live operator override,
//! above provider schedules, the plan and the default mode (design.md §3). Whatever a rule asks
//! goes through the envelope and the final clamp like every other proposal: a rule can never
//! widen what safety allows.
//!
//! # Semantics
//!
//! - A rule **fires** when all of its triggers hold (an empty `when` always holds). Time
//!   windows, day types and `until` times are local wall-clock times of the site's time zone
//!   (the rule set's `time_zone`, UTC when none is given): a 17:00–21:00 window is 17:00–21:00
//!   on the 23 h and 25 h days of a daylight-saving change too, and a window over the skipped
//!   hour simply starts when the clock shows a time inside it. A window whose `to` lies before
//!   its `from` wraps midnight; its hours after midnight belong to the **previous** day for the
//!   `days` check (a Friday 22:00–06:00 window on working days still holds at Saturday 03:00).
//!   A trigger on a missing input (no price, no SOC) does not hold.
//! - Without `until`, a rule is active while its triggers hold. With `until`, it **latches**
//!   when its triggers hold and stays active until the until-condition is met, even if the
//!   triggers stop holding: `time` — the next occurrence of that local wall-clock time after
//!   firing; `duration_minutes`; `sunset` — the next sunset at the site after firing (polar day
//!   or night: the end of the local day); `soc` — the measured SOC reached the target: `≥` for
//!   the charging actions `FORCE_CHARGE`, `LIMIT_CHARGE` and `CHARGE_TO`, `≤` for the others
//!   (while the SOC is unknown the latch holds). After its until-condition ended it, a rule
//!   fires again only once its triggers have stopped holding and hold again (otherwise a
//!   `duration_minutes` with a still-true trigger would never end). An until-condition that
//!   already holds when the triggers do (FORCE_CHARGE until 80 % at 85 %) does not fire.
//! - Actions become an `ems_control::Override`: `NO_DISCHARGE`, `LIMIT_CHARGE`,
//!   `LIMIT_DISCHARGE` and `FORCE_CHARGE` directly. `SOC_RESERVE {soc}` is `NO_DISCHARGE`
//!   while the SOC is at or below `soc` (and while the SOC is unknown: a reserve that cannot be
//!   checked is not spent), otherwise it has no effect. `CHARGE_TO {soc, by}` is `FORCE_CHARGE`
//!   at the remaining energy divided by the time left until `by` (local time, today), capped at
//!   the maximum charge power; it has no effect once the SOC is reached, past `by` (until the
//!   next day) and without a known SOC or capacity.
//! - **Conflicts:** among the active rules whose action has an effect, the highest `priority`
//!   wins. Among equal priorities the **more restrictive** action wins: the one that allows the
//!   smaller discharge (`NO_DISCHARGE` and `FORCE_CHARGE` allow none), then the one that does
//!   not force power over one that does (a limit only stops a flow, a forced charge buys
//!   energy: `NO_DISCHARGE` beats `FORCE_CHARGE`), then the one that allows the smaller charge
//!   (of two `FORCE_CHARGE`s the smaller power); a tie left over goes to the rule earlier in
//!   the file. Only the winner reaches the controller; the [`Decision`] says for every other
//!   rule why it did not fire or why it lost.

pub mod calendar;
pub mod engine;
mod error;
pub mod file;
pub mod sun;

pub use calendar::{Calendar, Country, DayType};
pub use engine::{Decision, Outcome, RuleContext, RuleEngine, RuleReport};
pub use error::RuleError;
pub use file::{Action, DaySpec, Rule, RuleSet, Until, When, Window};
pub use sun::Location;
