//! Control modes (design.md §7, the OpenEMS control-mode proposal for cloud EMS integration):
//! what a caller may `activate` per component, what is `active`, and the watchdog that drops a
//! mode nobody refreshes.
//!
//! Pure logic: every function that depends on time takes `now` (UTC); nothing here reads a
//! clock, so tests drive it with a mock clock. The control loop calls
//! [`ControlModes::active_override`] every cycle and puts the result into
//! `ems_control::Inputs::ess_override`; the controller validates it again and the envelope and
//! final clamp bound whatever it asks for.
//!
//! # Request (`POST /api/v1/control-modes`)
//!
//! The body is either `{"activateControlModes": {...components...}}` or the components object
//! itself. One component exists: `ess`.
//!
//! | body | effect |
//! | --- | --- |
//! | `{}` | nothing changes (and nothing is refreshed) |
//! | `{"ess": null}` | deactivate the `ess` mode |
//! | `{"ess": {"mode": "NO_DISCHARGE"}}` | never discharge |
//! | `{"ess": {"mode": "LIMIT_CHARGE", "maxChargePower": 1000}}` | charge at most 1000 W |
//! | `{"ess": {"mode": "LIMIT_DISCHARGE", "maxDischargePower": 1000}}` | discharge at most 1000 W |
//! | `{"ess": {"mode": "FORCE_CHARGE", "power": 1000}}` | charge at 1000 W (envelope permitting) |
//!
//! Powers are JSON numbers in watts, `0 ..= max_power_w` (a string such as `"NaN"` is refused).
//! Unknown fields are refused, so a misspelt limit is never silently ignored.
//!
//! # Lifetime
//!
//! By default a mode lives for the **watchdog** period ([`DEFAULT_WATCHDOG`], 60 s) after its
//! last activation; sending the same (or another) mode again refreshes it. A caller that wants
//! "fire and forget" adds **one** of:
//!
//! | `until` / `duration` | ends |
//! | --- | --- |
//! | `"until": "2026-05-01T12:00:00Z"` | at that RFC 3339 time (with offset; must be in the future) |
//! | `"until": "sunset"` | at the next sunset at the site after the activation ([`SunsetSource`], injected by the gateway; without one, or in polar day or night, the request is refused naming `ess.until`) |
//! | `"until": {"soc": 80}` | when the measured SOC ([`ControlModes::set_soc`]) reaches 80 %: `≥` for `FORCE_CHARGE` and `LIMIT_CHARGE`, `≤` for `NO_DISCHARGE` and `LIMIT_DISCHARGE`; while the SOC is unknown the mode stays; at the latest after [`MAX_HOLD`] |
//! | `"duration": 900` or `"duration": "PT15M"` | after that many seconds, or that ISO 8601 duration (`"PT1H30M"`; as parsed by `jiff`, which also accepts its "friendly" form `"15m"`, `"15 minutes"`) |
//!
//! Any of them replaces the watchdog; the hold may not exceed [`MAX_HOLD`] (7 days).

use crate::input::{self, FieldError};
use ems_control::{Override, OverrideKind};
use ems_core::{Percent, Watts};
use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Map, Value};
use std::fmt;
use std::sync::Arc;

/// Where `"until": "sunset"` learns the next sunset at the site (the API layer knows no
/// location; the gateway injects the solar calculation of `ems-strategies`). Any
/// `Fn(Timestamp) -> Option<Timestamp>` closure is one.
pub trait SunsetSource: Send + Sync {
    /// The first sunset at the site strictly after `after`; `None` in polar day or night.
    fn next_sunset(&self, after: Timestamp) -> Option<Timestamp>;
}

impl<F: Fn(Timestamp) -> Option<Timestamp> + Send + Sync> SunsetSource for F {
    fn next_sunset(&self, after: Timestamp) -> Option<Timestamp> {
        self(after)
    }
}

#[derive(Clone)]
struct Sunsets(Arc<dyn SunsetSource>);

impl fmt::Debug for Sunsets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SunsetSource")
    }
}

/// How long an activation lives without a refresh (the OpenEMS proposal's 60 s).
pub const DEFAULT_WATCHDOG: SignedDuration = SignedDuration::from_secs(60);

/// The longest `until`/`duration` accepted.
pub const MAX_HOLD: SignedDuration = SignedDuration::from_secs(7 * 24 * 3600);

/// The components that accept control modes.
pub const COMPONENTS: [&str; 1] = ["ess"];

/// What ends an active mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// The watchdog: it ends unless refreshed.
    Watchdog,
    /// An explicit `until` time or `duration` given by the caller.
    Until,
    /// `"until": "sunset"`: the next sunset after the activation.
    Sunset,
    /// `"until": {"soc": …}`: the measured SOC reached [`ActiveMode::until_soc`] (or
    /// [`MAX_HOLD`] passed).
    Soc,
}

impl Expiry {
    /// The name used in the API (`watchdog`, `until`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Watchdog => "watchdog",
            Self::Until => "until",
            Self::Sunset => "sunset",
            Self::Soc => "soc",
        }
    }
}

/// The mode active on a component.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ActiveMode {
    /// The override handed to the controller.
    pub mode: Override,
    /// When it was last activated or refreshed.
    pub refreshed_at: Timestamp,
    /// When it ends (exclusive: at this instant it is no longer active).
    pub expires_at: Timestamp,
    /// Why it ends then.
    pub expiry: Expiry,
    /// With [`Expiry::Soc`]: the SOC that ends it (`≥` for `FORCE_CHARGE`/`LIMIT_CHARGE`, `≤`
    /// for the others, [`ActiveMode::soc_reached`]).
    pub until_soc: Option<Percent>,
}

impl ActiveMode {
    /// Whether `soc` ends this mode: at or above [`Self::until_soc`] for the charging modes
    /// (`FORCE_CHARGE`, `LIMIT_CHARGE`), at or below it for the others. `false` without a SOC
    /// target or an unknown SOC.
    #[must_use]
    pub fn soc_reached(&self, soc: Option<Percent>) -> bool {
        match (self.until_soc, soc) {
            (Some(target), Some(s)) => match self.mode {
                Override::ForceCharge { .. } | Override::LimitCharge { .. } => s >= target,
                Override::NoDischarge | Override::LimitDischarge { .. } => s <= target,
            },
            _ => false,
        }
    }
}

/// What an activation request did to one component.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Change {
    /// Nothing (an empty request).
    Unchanged,
    /// A mode was activated (none active, or a different one before).
    Activated(ActiveMode),
    /// The same mode was activated again: its lifetime was renewed.
    Refreshed(ActiveMode),
    /// The mode was deactivated (`null`); the previous one, if any.
    Deactivated(Option<Override>),
}

/// The control-mode state of the site.
#[derive(Debug, Clone)]
pub struct ControlModes {
    ess: Option<ActiveMode>,
    watchdog: SignedDuration,
    max_power_w: f64,
    sunsets: Option<Sunsets>,
    soc: Option<Percent>,
}

impl Default for ControlModes {
    fn default() -> Self {
        Self::new(DEFAULT_WATCHDOG, 1.0e8)
    }
}

/// The API name of an override kind.
#[must_use]
pub fn mode_name(kind: OverrideKind) -> &'static str {
    match kind {
        OverrideKind::NoDischarge => "NO_DISCHARGE",
        OverrideKind::LimitCharge => "LIMIT_CHARGE",
        OverrideKind::LimitDischarge => "LIMIT_DISCHARGE",
        OverrideKind::ForceCharge => "FORCE_CHARGE",
    }
}

/// The JSON form of an override (`{"mode": "LIMIT_CHARGE", "maxChargePower": 1000.0}`).
#[must_use]
pub fn override_json(o: &Override) -> Value {
    let name = mode_name(o.kind());
    match *o {
        Override::NoDischarge => json!({ "mode": name }),
        Override::LimitCharge { max_charge_power } => {
            json!({ "mode": name, "maxChargePower": f64::from(max_charge_power.get()) })
        }
        Override::LimitDischarge { max_discharge_power } => {
            json!({ "mode": name, "maxDischargePower": f64::from(max_discharge_power.get()) })
        }
        Override::ForceCharge { power } => json!({ "mode": name, "power": f64::from(power.get()) }),
    }
}

fn watts(field: &str, x: f64) -> Result<Watts, FieldError> {
    // `x` was range-checked (0 ..= max_power_w <= 1e8) by `req_power`, so the f32 conversion
    // only rounds; `try_new` still refuses anything non-finite or out of range.
    #[allow(clippy::cast_possible_truncation)]
    let w = x as f32;
    Watts::try_new(w).map_err(|e| FieldError::new(field, format!("{e}")))
}

impl ControlModes {
    /// Control modes with watchdog period `watchdog` (a non-positive one is replaced by
    /// [`DEFAULT_WATCHDOG`]) and powers accepted up to `max_power_w` watts (clamped to the
    /// physical range of [`Watts`]; a non-finite or negative value means that range).
    #[must_use]
    pub fn new(watchdog: SignedDuration, max_power_w: f64) -> Self {
        let watchdog = if watchdog.is_positive() { watchdog } else { DEFAULT_WATCHDOG };
        let max_power_w =
            if max_power_w.is_finite() && max_power_w >= 0.0 { max_power_w.min(1.0e8) } else { 1.0e8 };
        Self { ess: None, watchdog, max_power_w, sunsets: None, soc: None }
    }

    /// Accept `"until": "sunset"`, with the site's sunsets from `source`.
    #[must_use]
    pub fn with_sunset_source(mut self, source: impl SunsetSource + 'static) -> Self {
        self.set_sunset_source(source);
        self
    }

    /// Accept `"until": "sunset"`, with the site's sunsets from `source`.
    pub fn set_sunset_source(&mut self, source: impl SunsetSource + 'static) {
        self.sunsets = Some(Sunsets(Arc::new(source)));
    }

    /// The measured SOC (the control loop sets it every cycle, before [`Self::expire`] and
    /// [`Self::active_override`]); ends a mode activated with `"until": {"soc": …}`. `None`:
    /// unknown (such a mode stays).
    pub fn set_soc(&mut self, soc: Option<Percent>) {
        self.soc = soc;
    }

    /// The `availableControlModes` document: per component, each mode and its parameters.
    #[must_use]
    pub fn available_json(&self) -> Value {
        json!({
            "ess": [
                { "mode": "NO_DISCHARGE", "parameters": {} },
                { "mode": "LIMIT_CHARGE", "parameters": { "maxChargePower": { "unit": "W", "min": 0, "max": self.max_power_w } } },
                { "mode": "LIMIT_DISCHARGE", "parameters": { "maxDischargePower": { "unit": "W", "min": 0, "max": self.max_power_w } } },
                { "mode": "FORCE_CHARGE", "parameters": { "power": { "unit": "W", "min": 0, "max": self.max_power_w } } }
            ],
            "watchdogSeconds": self.watchdog.as_secs(),
            "maxHoldSeconds": MAX_HOLD.as_secs()
        })
    }

    /// The mode active on `ess` at `now` (an expired one is not returned, even before
    /// [`Self::expire`] removed it).
    #[must_use]
    pub fn active(&self, now: Timestamp) -> Option<&ActiveMode> {
        self.ess.as_ref().filter(|m| now < m.expires_at && !m.soc_reached(self.soc))
    }

    /// The override the control loop feeds into `Inputs::ess_override` in the cycle at `now`.
    #[must_use]
    pub fn active_override(&self, now: Timestamp) -> Option<Override> {
        self.active(now).map(|m| m.mode)
    }

    /// Remove an expired mode (its time has come or its SOC target is reached, with the SOC
    /// of [`Self::set_soc`]) and return it (so the caller can audit the watchdog/expiry).
    pub fn expire(&mut self, now: Timestamp) -> Option<ActiveMode> {
        match self.ess {
            Some(m) if now >= m.expires_at || m.soc_reached(self.soc) => self.ess.take(),
            Some(_) | None => None,
        }
    }

    /// The `activeControlModes` document at `now`: `{"ess": null}` or
    /// `{"ess": {"mode": ..., parameters..., "expiresAt": ..., "expiry":
    /// "watchdog"|"until"|"sunset"|"soc"}}` (with `"untilSoc"` for `"soc"`).
    #[must_use]
    pub fn active_json(&self, now: Timestamp) -> Value {
        let ess = match self.active(now) {
            None => Value::Null,
            Some(m) => {
                let mut v = override_json(&m.mode);
                if let Value::Object(o) = &mut v {
                    o.insert("expiresAt".into(), Value::String(m.expires_at.to_string()));
                    o.insert("expiry".into(), Value::String(m.expiry.as_str().into()));
                    if let Some(soc) = m.until_soc {
                        o.insert("untilSoc".into(), json!(f64::from(soc.get())));
                    }
                }
                v
            }
        };
        json!({ "ess": ess })
    }

    /// Apply an activation request (see the module docs) at `now`. Nothing changes unless the
    /// whole request is valid.
    ///
    /// # Errors
    /// [`FieldError`] naming the offending field (`ess.mode`, `ess.maxChargePower`,
    /// `ess.until`, ...) and its value.
    pub fn activate(&mut self, body: &Map<String, Value>, now: Timestamp) -> Result<Change, FieldError> {
        let (components, parent) = match body.get("activateControlModes") {
            Some(Value::Object(inner)) => {
                input::only_keys(body, "", &["activateControlModes"])?;
                (inner, "activateControlModes")
            }
            Some(other) => {
                return Err(FieldError::new(
                    "activateControlModes",
                    format!("must be an object, got {}", input::show(other)),
                ))
            }
            None => (body, ""),
        };
        input::only_keys(components, parent, &COMPONENTS)?;
        let field = input::path(parent, "ess");
        let next = match components.get("ess") {
            None => return Ok(Change::Unchanged),
            Some(Value::Null) => {
                let before = self.active(now).map(|m| m.mode);
                self.ess = None;
                return Ok(Change::Deactivated(before));
            }
            Some(Value::Object(o)) => self.parse_mode(o, &field, now)?,
            Some(other) => {
                return Err(FieldError::new(
                    field,
                    format!("must be an object or null, got {}", input::show(other)),
                ))
            }
        };
        let same = self.active(now).is_some_and(|m| m.mode == next.mode);
        self.ess = Some(next);
        Ok(if same { Change::Refreshed(next) } else { Change::Activated(next) })
    }

    fn parse_mode(
        &self,
        o: &Map<String, Value>,
        parent: &str,
        now: Timestamp,
    ) -> Result<ActiveMode, FieldError> {
        let name = input::req_str(o, parent, "mode")?;
        let mode_field = input::path(parent, "mode");
        let (mode, keys): (Override, &[&str]) = match name {
            "NO_DISCHARGE" => (Override::NoDischarge, &["mode", "until", "duration"]),
            "LIMIT_CHARGE" => {
                let f = input::path(parent, "maxChargePower");
                let w = watts(&f, input::req_power(o, parent, "maxChargePower", self.max_power_w)?)?;
                (Override::LimitCharge { max_charge_power: w }, &["mode", "maxChargePower", "until", "duration"])
            }
            "LIMIT_DISCHARGE" => {
                let f = input::path(parent, "maxDischargePower");
                let w = watts(&f, input::req_power(o, parent, "maxDischargePower", self.max_power_w)?)?;
                (Override::LimitDischarge { max_discharge_power: w }, &["mode", "maxDischargePower", "until", "duration"])
            }
            "FORCE_CHARGE" => {
                let f = input::path(parent, "power");
                let w = watts(&f, input::req_power(o, parent, "power", self.max_power_w)?)?;
                (Override::ForceCharge { power: w }, &["mode", "power", "until", "duration"])
            }
            other => {
                return Err(FieldError::new(
                    mode_field,
                    format!(
                        "unknown mode {:?} (expected NO_DISCHARGE, LIMIT_CHARGE, LIMIT_DISCHARGE or FORCE_CHARGE)",
                        input::show(&Value::String(other.to_owned()))
                    ),
                ))
            }
        };
        input::only_keys(o, parent, keys)?;
        mode.validate().map_err(|e| FieldError::new(mode_field.clone(), e.to_string()))?;
        let (expires_at, expiry, until_soc) = self.lifetime(o, parent, now)?;
        Ok(ActiveMode { mode, refreshed_at: now, expires_at, expiry, until_soc })
    }

    /// The end given by `until` (`None`: no `until`): the time, why it ends then and the SOC
    /// target of `{"soc": …}`.
    fn until(
        &self,
        v: Option<&Value>,
        until_f: &str,
        now: Timestamp,
    ) -> Result<Option<(Timestamp, Expiry, Option<Percent>)>, FieldError> {
        Ok(match v {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s == "sunset" => {
                let Some(source) = &self.sunsets else {
                    return Err(FieldError::new(
                        until_f,
                        "\"sunset\" is not available: the site's location is not configured",
                    ));
                };
                let t = source.0.next_sunset(now).ok_or_else(|| {
                    FieldError::new(
                        until_f,
                        "\"sunset\": the sun does not set at the site (polar day or night)",
                    )
                })?;
                Some((t, Expiry::Sunset, None))
            }
            Some(Value::Object(u)) => {
                input::only_keys(u, until_f, &["soc"])?;
                let soc_f = input::path(until_f, "soc");
                let soc = match u.get("soc") {
                    Some(Value::Number(n)) => n
                        .as_f64()
                        .filter(|x| (0.0..=100.0).contains(x))
                        .and_then(|x| {
                            // Range-checked above: the f32 conversion only rounds.
                            #[allow(clippy::cast_possible_truncation)]
                            Percent::try_new(x as f32).ok()
                        })
                        .ok_or_else(|| {
                            FieldError::new(&soc_f, format!("must be a percentage 0..=100, got {n}"))
                        })?,
                    Some(other) => {
                        return Err(FieldError::new(
                            soc_f,
                            format!("must be a percentage 0..=100, got {}", input::show(other)),
                        ))
                    }
                    None => return Err(FieldError::new(soc_f, "missing (\"until\": {\"soc\": 80})")),
                };
                // A target that is never reached still ends after the longest hold.
                let t = now.checked_add(MAX_HOLD).map_err(|e| FieldError::new(until_f, format!("{e}")))?;
                Some((t, Expiry::Soc, Some(soc)))
            }
            Some(Value::String(s)) => Some((
                s.parse::<Timestamp>()
                    .map_err(|e| FieldError::new(until_f, format!("not an RFC 3339 time {s:?}: {e}")))?,
                Expiry::Until,
                None,
            )),
            Some(other) => {
                return Err(FieldError::new(
                    until_f,
                    format!(
                        "must be an RFC 3339 string, \"sunset\" or {{\"soc\": percent}}, got {}",
                        input::show(other)
                    ),
                ))
            }
        })
    }

    fn lifetime(
        &self,
        o: &Map<String, Value>,
        parent: &str,
        now: Timestamp,
    ) -> Result<(Timestamp, Expiry, Option<Percent>), FieldError> {
        let until_f = input::path(parent, "until");
        let dur_f = input::path(parent, "duration");
        let (until, expiry, until_soc) = match self.until(o.get("until"), &until_f, now)? {
            Some((t, expiry, soc)) => (Some(t), expiry, soc),
            None => (None, Expiry::Until, None),
        };
        let duration = match o.get("duration") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => {
                let secs = n.as_f64().filter(|x| x.is_finite()).unwrap_or(f64::NAN);
                if !(secs > 0.0 && secs <= MAX_HOLD.as_secs_f64()) {
                    return Err(FieldError::new(
                        dur_f,
                        format!("must be > 0 and <= {} seconds, got {n}", MAX_HOLD.as_secs()),
                    ));
                }
                Some(
                    SignedDuration::try_from_secs_f64(secs)
                        .map_err(|e| FieldError::new(&dur_f, format!("{n}: {e}")))?,
                )
            }
            Some(Value::String(s)) => Some(
                s.parse::<SignedDuration>()
                    .map_err(|e| FieldError::new(&dur_f, format!("not an ISO 8601 duration {s:?}: {e}")))?,
            ),
            Some(other) => {
                return Err(FieldError::new(
                    dur_f,
                    format!(
                        "must be seconds (number) or an ISO 8601 duration string, got {}",
                        input::show(other)
                    ),
                ))
            }
        };
        let end = match (until, duration) {
            (None, None) => {
                let end = now.checked_add(self.watchdog).map_err(|e| {
                    FieldError::new(parent, format!("watchdog overflows the time range: {e}"))
                })?;
                return Ok((end, Expiry::Watchdog, None));
            }
            (Some(_), Some(_)) => {
                return Err(FieldError::new(dur_f, "give either 'until' or 'duration', not both"));
            }
            (Some(t), None) => (t, until_f),
            (None, Some(d)) => {
                if !d.is_positive() || d > MAX_HOLD {
                    return Err(FieldError::new(
                        dur_f,
                        format!("must be > 0 and <= {} seconds, got {d}", MAX_HOLD.as_secs()),
                    ));
                }
                let t = now
                    .checked_add(d)
                    .map_err(|e| FieldError::new(&dur_f, format!("overflows the time range: {e}")))?;
                (t, dur_f)
            }
        };
        let (t, field) = end;
        if t <= now {
            return Err(FieldError::new(field, format!("{t} is not in the future (now {now})")));
        }
        if t.duration_since(now) > MAX_HOLD {
            return Err(FieldError::new(field, format!("{t} is more than {} s ahead", MAX_HOLD.as_secs())));
        }
        Ok((t, expiry, until_soc))
    }
}
