//! Control modes: what the battery *should* do, before safety has its say.
//!
//! A mode proposes a set-point; it never commands one. Every proposal goes through the
//! arbitration ([`crate::arbitration`]: grid services, overrides and the plan rank above the
//! mode) and then the final clamp ([`crate::clamp`]), so a buggy mode cannot leave the envelope.
//!
//! | mode | what it proposes |
//! |---|---|
//! | [`ModeSetting::Passive`] | zero |
//! | [`ModeSetting::ChargeOnly`] | charge from PV surplus or at a fixed power, never discharge |
//! | [`ModeSetting::Manual`] | a fixed set-point in either direction (force / fixed power) |
//! | [`ModeSetting::SelfConsumption`] | follow a grid set-point (zero export / import), keep an SOC reserve ([`crate::self_consumption`]) |
//! | [`ModeSetting::PeakShaving`] | hold import and export under caps, recharge in between ([`crate::peak_shaving`]) |

use crate::peak_shaving::{PeakShaving, PeakShavingConfig};
use crate::pid::{Pid, PidGains};
use crate::proposal::CommandSource;
pub use crate::proposal::{Feedback, ModeError, Proposal, ProposalReason};
use crate::self_consumption::{SelfConsumption, SelfConsumptionConfig};
use crate::tracking::{battery_at, Follow, TRIM_ERROR_LIMIT};
use core::fmt;
use ems_core::{Millis, Percent, Snapshot, Watts};

/// Where charge-only mode takes its charging power from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ChargeSource {
    /// Only PV surplus that would otherwise be exported.
    PvSurplus,
    /// Up to a fixed power (from PV and, within the grid import limit, from the grid).
    Fixed(Watts),
}

/// Settings of charge-only mode.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChargeOnlyConfig {
    /// Where the energy comes from.
    pub source: ChargeSource,
    /// Stop charging at this SOC; resume 1 percentage point below it.
    pub soc_target: Percent,
    /// Charging may not raise grid import above this (≥ 0).
    pub max_grid_import: Watts,
}

impl Default for ChargeOnlyConfig {
    fn default() -> Self {
        Self {
            source: ChargeSource::PvSurplus,
            soc_target: ems_core::percent!(95.0),
            max_grid_import: Watts::ZERO,
        }
    }
}

impl ChargeOnlyConfig {
    /// Check the settings.
    ///
    /// # Errors
    /// [`ModeError`] when the fixed power or the import limit is negative.
    pub fn validate(&self) -> Result<(), ModeError> {
        if let ChargeSource::Fixed(p) = self.source {
            if p < Watts::ZERO {
                return Err(ModeError::NegativePower(p));
            }
        }
        if self.max_grid_import < Watts::ZERO {
            return Err(ModeError::NegativeImportLimit(self.max_grid_import));
        }
        Ok(())
    }
}

/// Which mode is selected.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ModeSetting {
    /// Observe only; always zero.
    Passive,
    /// Charge only, never discharge.
    ChargeOnly(ChargeOnlyConfig),
    /// Hold a fixed battery set-point (`+` discharge / `−` charge), e.g. for commissioning or a
    /// capacity test. Like every mode it only proposes: the envelope, the ramp and the state
    /// machine still decide what is commanded (a discharge stops at the SOC-low alarm, a charge
    /// at the SOC-high alarm).
    ///
    /// This is also the **force / fixed power** mode: there is no separate `ForcePower`
    /// variant. (A temporary forced charge from an API caller is an override instead, see
    /// [`crate::Override::ForceCharge`].)
    Manual {
        /// The set-point to hold.
        setpoint: Watts,
    },
    /// Self-consumption / zero export: follow a grid set-point with the battery, keeping an SOC
    /// reserve ([`crate::self_consumption`]).
    SelfConsumption(SelfConsumptionConfig),
    /// Peak shaving: hold import and export under (time-slotted) caps, recharge toward a
    /// target SOC in between ([`crate::peak_shaving`]).
    PeakShaving(PeakShavingConfig),
}

impl ModeSetting {
    /// Check the settings of the selected mode.
    ///
    /// # Errors
    /// [`ModeError`] naming the field and the value of the first invalid setting.
    pub fn validate(&self) -> Result<(), ModeError> {
        match self {
            Self::Passive | Self::Manual { .. } => Ok(()),
            Self::ChargeOnly(c) => c.validate(),
            Self::SelfConsumption(c) => c.validate(),
            Self::PeakShaving(c) => c.validate(),
        }
    }

    /// The SOC reserve this mode keeps, if it has one. A day-ahead plan executed on top of the
    /// mode respects it too (see [`crate::arbitration`]).
    #[must_use]
    pub const fn reserve_soc(&self) -> Option<Percent> {
        match self {
            Self::Passive | Self::ChargeOnly(_) | Self::Manual { .. } => None,
            Self::SelfConsumption(c) => Some(c.reserve_soc),
            Self::PeakShaving(c) => Some(c.reserve_soc),
        }
    }
}

impl fmt::Display for ModeSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Passive => f.write_str("passive"),
            Self::Manual { setpoint } => write!(f, "manual ({setpoint:+.0})"),
            Self::ChargeOnly(ChargeOnlyConfig { source: ChargeSource::PvSurplus, .. }) => {
                f.write_str("charge-only (PV surplus)")
            }
            Self::ChargeOnly(ChargeOnlyConfig { source: ChargeSource::Fixed(p), .. }) => {
                write!(f, "charge-only ({p:.0})")
            }
            Self::SelfConsumption(c) => {
                write!(f, "self-consumption (grid {:+.0}, reserve {:.0})", c.grid_setpoint, c.reserve_soc)
            }
            Self::PeakShaving(c) => write!(f, "{c}"),
        }
    }
}

/// The running mode with its internal state (PID, hysteresis).
#[derive(Debug, Clone, PartialEq)]
pub struct Mode {
    setting: ModeSetting,
    trim: Pid,
    /// The previous PV-surplus proposal was not the trim loop's own (cut at zero by "never
    /// discharge", or zero for another reason): do not integrate on its result.
    trim_hold: bool,
    soc_reached: bool,
    last: Option<Millis>,
    /// The previous proposal (anti-windup: was it commanded as proposed?).
    last_proposal: Option<Watts>,
    self_consumption: SelfConsumption,
    peak_shaving: PeakShaving,
}

/// Feed-forward from the meter balance does the work (it settles in one cycle when meter and
/// inverter agree); this integral-only trim removes the steady offset left when they do not
/// (CT error, auxiliary loads between meter and inverter). No proportional part: the balance
/// already reacts to every step, a P term would only double-count it while the ramp lags.
const TRIM_LIMIT: Watts = ems_core::watts!(500.0);

/// Checked at compile time; the fallback arm is unreachable for these constants.
const TRIM_GAINS: PidGains = match PidGains::try_new(0.0, 0.02, 0.0) {
    Ok(g) => g,
    Err(_) => PidGains::ZERO,
};

fn trim_pid() -> Pid {
    Pid::new(TRIM_GAINS, -TRIM_LIMIT, TRIM_LIMIT)
}

impl Mode {
    /// A mode in the given setting. Invalid settings are refused.
    ///
    /// # Errors
    /// [`ModeError`] naming the field and the value of an invalid setting.
    pub fn new(setting: ModeSetting) -> Result<Self, ModeError> {
        setting.validate()?;
        Ok(Self {
            setting,
            trim: trim_pid(),
            trim_hold: true,
            soc_reached: false,
            last: None,
            last_proposal: None,
            self_consumption: SelfConsumption::default(),
            peak_shaving: PeakShaving::default(),
        })
    }

    /// The setting.
    #[must_use]
    pub const fn setting(&self) -> ModeSetting {
        self.setting
    }

    /// Propose a set-point for this cycle without knowing the local time of day (peak shaving
    /// then uses its default caps).
    #[must_use]
    pub fn propose(&mut self, now: Millis, snapshot: &Snapshot) -> Proposal {
        self.propose_at(now, snapshot, None)
    }

    /// Propose a set-point for this cycle; `local_minute` (0..1440, site time zone) selects
    /// the time-slotted caps of peak shaving.
    ///
    /// For a caller that commands every proposal as it is. A caller with a ramp, a clamp or
    /// overrides in between uses [`Self::propose_with`], or the integrators cannot know when
    /// the battery was not following (they still hold while the battery's reading is away from
    /// the proposal).
    #[must_use]
    pub fn propose_at(&mut self, now: Millis, snapshot: &Snapshot, local_minute: Option<u16>) -> Proposal {
        self.propose_with(now, snapshot, local_minute, None)
    }

    /// [`Self::propose_at`] knowing what the controller did with the previous cycle's
    /// set-point ([`Feedback`]): the integral trims of the grid loops (charge-only from PV
    /// surplus, self-consumption, peak shaving) integrate only on the result of a proposal that
    /// was commanded as proposed and hold otherwise, outside RUNNING too.
    #[must_use]
    pub fn propose_with(
        &mut self,
        now: Millis,
        snapshot: &Snapshot,
        local_minute: Option<u16>,
        feedback: Option<Feedback>,
    ) -> Proposal {
        let dt = self.last.map_or(Millis::ZERO, |l| now.since(l));
        self.last = Some(now);
        let follow = Feedback::follow(feedback, self.last_proposal, |s| matches!(s, CommandSource::Mode(_)));
        let proposal = match self.setting {
            ModeSetting::Passive => Proposal { setpoint: Watts::ZERO, reason: ProposalReason::Passive },
            ModeSetting::Manual { setpoint } => Proposal { setpoint, reason: ProposalReason::Manual },
            ModeSetting::ChargeOnly(cfg) => self.charge_only(cfg, now, dt, snapshot, follow),
            ModeSetting::SelfConsumption(cfg) => {
                self.self_consumption.propose(&cfg, Some(cfg.reserve_soc), now, dt, snapshot, follow)
            }
            ModeSetting::PeakShaving(cfg) => {
                self.peak_shaving.propose(&cfg, local_minute, now, dt, snapshot, follow)
            }
        };
        self.last_proposal = Some(proposal.setpoint);
        proposal
    }

    fn charge_only(
        &mut self,
        cfg: ChargeOnlyConfig,
        now: Millis,
        dt: Millis,
        s: &Snapshot,
        follow: Follow,
    ) -> Proposal {
        let zero = |reason| Proposal { setpoint: Watts::ZERO, reason };
        // Whether the trim may integrate on this cycle's error (anti-windup, see [`Feedback`]):
        // the previous proposal was the trim loop's own, it was commanded as proposed and the
        // battery got there.
        let integrate = !self.trim_hold
            && follow == Follow::Commanded
            && match (self.last_proposal, s.inverter.active_power.value_at(now)) {
                (Some(p), Some(battery)) => battery_at(battery, p),
                (None, _) | (_, None) => false,
            };
        // Until the PV-surplus branch says otherwise, this cycle's proposal is not the loop's.
        self.trim_hold = true;
        let (Some(soc), Some(grid), Some(battery)) = (
            s.battery.soc.value_at(now),
            s.grid.active_power.value_at(now),
            s.inverter.active_power.value_at(now),
        ) else {
            self.trim.reset();
            return zero(ProposalReason::SignalUnavailable);
        };
        // SOC target with 1 point of hysteresis so the battery does not chatter at the target.
        if soc >= cfg.soc_target {
            self.soc_reached = true;
        } else if soc.get() < cfg.soc_target.get() - 1.0 {
            self.soc_reached = false;
        }
        if self.soc_reached {
            self.trim.reset();
            return zero(ProposalReason::SocTargetReached);
        }
        // Grid power the site would have with the battery idle (`+` import).
        let grid_without_battery = grid + battery;
        // The most the battery may charge without pushing import above the mode's limit.
        let import_headroom = (cfg.max_grid_import - grid_without_battery).max(Watts::ZERO);
        let (charge, reason) = match cfg.source {
            ChargeSource::PvSurplus => {
                // Aim for zero grid exchange; the trim corrects what the balance misses.
                // The trim sees a bounded error, as the grid tracker's does: in the cycle a
                // disturbance arrives (or while the battery's own lag closes the last few
                // hundred watts) the error is the feed-forward's job, not an offset to learn.
                let seen = grid.clamp(-TRIM_ERROR_LIMIT, TRIM_ERROR_LIMIT);
                let trim = self.trim.update_gated(Watts::ZERO, seen, dt, integrate);
                let feed_forward = (-grid_without_battery).max(Watts::ZERO);
                // Exporting (grid < 0) gives a positive trim: charge a little more.
                let wanted = feed_forward + trim;
                // Cut at zero ("never discharge"): the next error is not the trim's to learn.
                self.trim_hold = wanted <= Watts::ZERO;
                let charge = wanted.max(Watts::ZERO);
                if charge == Watts::ZERO {
                    (charge, ProposalReason::NoSurplus)
                } else {
                    (charge, ProposalReason::PvSurplus)
                }
            }
            ChargeSource::Fixed(power) => {
                if power > import_headroom {
                    (import_headroom, ProposalReason::GridImportLimit)
                } else {
                    (power, ProposalReason::FixedPower)
                }
            }
        };
        // Charge-only never discharges: the set-point is ≤ 0 whatever the trim says.
        Proposal { setpoint: (-charge).min(Watts::ZERO), reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_support::snap;

    #[test]
    fn manual_proposes_its_setpoint_in_either_direction() {
        let mut m = Mode::new(ModeSetting::Manual { setpoint: ems_core::watts!(3000.0) }).unwrap();
        let p = m.propose(Millis::ZERO, &snap(50.0, 0.0, 0.0));
        assert_eq!((p.setpoint, p.reason), (ems_core::watts!(3000.0), ProposalReason::Manual));
        let mut m = Mode::new(ModeSetting::Manual { setpoint: ems_core::watts!(-1500.0) }).unwrap();
        assert_eq!(m.propose(Millis::ZERO, &snap(50.0, 0.0, 0.0)).setpoint, ems_core::watts!(-1500.0));
        assert_eq!(
            ModeSetting::Manual { setpoint: ems_core::watts!(-1500.0) }.to_string(),
            "manual (-1500 W)"
        );
    }

    #[test]
    fn passive_always_proposes_zero() {
        let mut m = Mode::new(ModeSetting::Passive).unwrap();
        let p = m.propose(Millis::ZERO, &snap(50.0, -3000.0, 0.0));
        assert_eq!(p.setpoint, Watts::ZERO);
    }

    #[test]
    fn charge_only_takes_pv_surplus() {
        let mut m = Mode::new(ModeSetting::ChargeOnly(ChargeOnlyConfig::default())).unwrap();
        let p = m.propose(Millis::ZERO, &snap(50.0, -2000.0, 0.0));
        assert_eq!(p.setpoint, ems_core::watts!(-2000.0));
        assert_eq!(p.reason, ProposalReason::PvSurplus);
        // Already charging 1500 W and still exporting 500 W → 2000 W total.
        let p = m.propose(Millis::new(1000), &snap(50.0, -500.0, -1500.0));
        assert!((p.setpoint.get() + 2000.0).abs() < 100.0, "{}", p.setpoint);
    }

    #[test]
    fn charge_only_never_discharges() {
        let mut m = Mode::new(ModeSetting::ChargeOnly(ChargeOnlyConfig::default())).unwrap();
        let p = m.propose(Millis::ZERO, &snap(50.0, 3000.0, 0.0));
        assert_eq!(p.setpoint, Watts::ZERO);
        assert_eq!(p.reason, ProposalReason::NoSurplus);
    }

    #[test]
    fn charge_only_stops_at_soc_target_with_hysteresis() {
        let cfg = ChargeOnlyConfig { soc_target: ems_core::percent!(80.0), ..ChargeOnlyConfig::default() };
        let mut m = Mode::new(ModeSetting::ChargeOnly(cfg)).unwrap();
        assert_eq!(
            m.propose(Millis::ZERO, &snap(80.0, -2000.0, 0.0)).reason,
            ProposalReason::SocTargetReached
        );
        assert_eq!(
            m.propose(Millis::ZERO, &snap(79.5, -2000.0, 0.0)).reason,
            ProposalReason::SocTargetReached
        );
        assert_eq!(m.propose(Millis::ZERO, &snap(78.9, -2000.0, 0.0)).reason, ProposalReason::PvSurplus);
    }

    #[test]
    fn fixed_power_respects_grid_import_limit() {
        let cfg = ChargeOnlyConfig {
            source: ChargeSource::Fixed(ems_core::watts!(4000.0)),
            soc_target: ems_core::percent!(100.0),
            max_grid_import: ems_core::watts!(3000.0),
        };
        let mut m = Mode::new(ModeSetting::ChargeOnly(cfg)).unwrap();
        // Load 1000 W, no PV, battery idle → import 1000 W; headroom 2000 W.
        let p = m.propose(Millis::ZERO, &snap(50.0, 1000.0, 0.0));
        assert_eq!(p.setpoint, ems_core::watts!(-2000.0));
        assert_eq!(p.reason, ProposalReason::GridImportLimit);
    }

    #[test]
    fn unavailable_signals_propose_zero() {
        let mut m = Mode::new(ModeSetting::ChargeOnly(ChargeOnlyConfig::default())).unwrap();
        let mut s = snap(50.0, -2000.0, 0.0);
        s.grid.active_power.invalidate();
        assert_eq!(m.propose(Millis::ZERO, &s).reason, ProposalReason::SignalUnavailable);
    }

    #[test]
    fn feedback_says_commanded_only_for_the_layer_s_own_unchanged_proposal() {
        let mine = |s| matches!(s, CommandSource::Mode(_));
        let fb = |commanded: f32, source| Some(Feedback { commanded: Watts::saturating(commanded), source });
        let by_mode = CommandSource::Mode(ProposalReason::PvSurplus);
        let p = Some(ems_core::watts!(-3000.0));
        assert_eq!(Feedback::follow(None, p, mine), Follow::Commanded);
        assert_eq!(Feedback::follow(fb(-3000.4, by_mode), p, mine), Follow::Commanded);
        // Ramping or clamped by the envelope.
        assert_eq!(Feedback::follow(fb(-2500.0, by_mode), p, mine), Follow::Held);
        // An override, or not RUNNING (zero commanded, also when zero was proposed).
        let limit = CommandSource::Override(crate::OverrideKind::LimitCharge);
        assert_eq!(Feedback::follow(fb(-3000.0, limit), p, mine), Follow::Held);
        assert_eq!(
            Feedback::follow(fb(0.0, CommandSource::NotRunning), Some(Watts::ZERO), mine),
            Follow::Held
        );
        // No previous proposal (a new mode).
        assert_eq!(Feedback::follow(fb(-3000.0, by_mode), None, mine), Follow::Held);
    }

    #[test]
    fn charge_only_trim_does_not_integrate_while_not_running() {
        let mut m = Mode::new(ModeSetting::ChargeOnly(ChargeOnlyConfig::default())).unwrap();
        let stopped = Some(Feedback { commanded: Watts::ZERO, source: CommandSource::NotRunning });
        for k in 0..600 {
            let _ = m.propose_with(Millis::new(k * 100), &snap(50.0, -3000.0, 0.0), None, stopped);
        }
        assert_eq!(m.trim.integral(), Watts::ZERO);
    }

    #[test]
    fn invalid_settings_are_refused_naming_the_field() {
        let cfg = ChargeOnlyConfig {
            source: ChargeSource::Fixed(ems_core::watts!(-5.0)),
            ..ChargeOnlyConfig::default()
        };
        let e = Mode::new(ModeSetting::ChargeOnly(cfg)).unwrap_err();
        assert!(e.to_string().contains("'power'"));
    }
}
