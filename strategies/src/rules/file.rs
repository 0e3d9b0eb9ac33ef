//! The rule-set format: a TOML file and the same structure as JSON (the API's `GET/PUT
//! /api/v1/rules` body). Both go through one validating reader of the JSON form (TOML is
//! converted first; a TOML date becomes its `YYYY-MM-DD` string), so the two cannot drift apart.
//!
//! ```toml
//! country = "DE"              # public holidays of this country, optional
//! time_zone = "Europe/Berlin" # optional; the gateway passes the site's zone
//! latitude = 52.52            # optional, both or neither; needed by `until.sunset`
//! longitude = 13.40
//! extra_holidays = [2026-12-24]
//!
//! [[rules]]
//! name = "no discharge in the evening peak"   # unique, non-empty
//! priority = 10                               # higher wins
//! enabled = true                              # optional, default true
//! [rules.when]                 # all given triggers must hold; none: always
//! days = ["working"]           # working, weekend, holiday, mon … sun
//! from = "17:00"               # local window [from, to); to < from wraps midnight
//! to = "21:00"
//! price_above = 0.30           # or price_below (currency/kWh)
//! soc_above = 20.0             # or soc_below (%)
//! pv_surplus_above_w = 1500    # PV − load, W
//! grid_import_above_w = 4000   # W
//! [rules.action]
//! mode = "NO_DISCHARGE"        # LIMIT_CHARGE {maxChargePower}, LIMIT_DISCHARGE {maxDischargePower},
//!                              # FORCE_CHARGE {power}, SOC_RESERVE {soc}, CHARGE_TO {soc, by}
//! [rules.until]                # optional, exactly one of time | duration_minutes | sunset | soc
//! sunset = true
//! ```
//!
//! Unknown keys are refused (a misspelt trigger would otherwise be an always-true one); every
//! error names the path (`rules[2].when.from`) and the value. In JSON an optional key may also
//! be `null`. [`RuleSet::to_json`] writes only the keys that are set and round-trips.

use super::calendar::{Calendar, Country};
use super::error::RuleError;
use super::sun::Location;
use crate::units::Price;
use ems_control::Override;
use ems_core::{Percent, Watts};
use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use serde_json::{json, Map, Value};

/// The longest `until.duration_minutes`: a week.
pub const MAX_UNTIL_MINUTES: i64 = 7 * 24 * 60;

/// A validated rule set.
#[derive(Debug, Clone)]
pub struct RuleSet {
    calendar: Calendar,
    time_zone: Option<TimeZone>,
    location: Option<Location>,
    rules: Vec<Rule>,
}

impl PartialEq for RuleSet {
    fn eq(&self, other: &Self) -> bool {
        self.calendar == other.calendar
            && self.time_zone.as_ref().map(TimeZone::iana_name)
                == other.time_zone.as_ref().map(TimeZone::iana_name)
            && self.location == other.location
            && self.rules == other.rules
    }
}

/// One rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Unique, non-empty; every decision names it.
    pub name: String,
    /// Higher wins.
    pub priority: i32,
    /// A disabled rule never fires.
    pub enabled: bool,
    /// The triggers (all must hold).
    pub when: When,
    /// What the rule does while it is active.
    pub action: Action,
    /// What ends an active rule (latched), if anything.
    pub until: Option<Until>,
}

/// The triggers of a rule; each `None` (or an empty `days`) is not checked.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct When {
    /// Any of these day kinds (empty: every day).
    pub days: Vec<DaySpec>,
    /// A local wall-clock window.
    pub window: Option<Window>,
    /// The current import price is above this.
    pub price_above: Option<Price>,
    /// The current import price is below this.
    pub price_below: Option<Price>,
    /// The SOC is above this.
    pub soc_above: Option<Percent>,
    /// The SOC is below this.
    pub soc_below: Option<Percent>,
    /// PV − load is above this.
    pub pv_surplus_above: Option<Watts>,
    /// Grid import is above this.
    pub grid_import_above: Option<Watts>,
}

/// A local wall-clock window `[from, to)`; `to < from` wraps midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Start (inclusive).
    pub from: Time,
    /// End (exclusive).
    pub to: Time,
}

impl Window {
    /// Whether local time `t` lies in the window.
    #[must_use]
    pub fn contains(&self, t: Time) -> bool {
        if self.from <= self.to {
            self.from <= t && t < self.to
        } else {
            t >= self.from || t < self.to
        }
    }

    /// Whether `t` lies in the part of a wrapping window after midnight.
    #[must_use]
    pub fn after_midnight(&self, t: Time) -> bool {
        self.to < self.from && t < self.to
    }
}

/// A kind of day in `when.days`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DaySpec {
    /// Monday to Friday and not a holiday.
    Working,
    /// Saturday or Sunday.
    Weekend,
    /// A public or extra holiday.
    Holiday,
    /// That day of the week.
    Day(Weekday),
}

const WEEKDAYS: [(&str, Weekday); 7] = [
    ("mon", Weekday::Monday),
    ("tue", Weekday::Tuesday),
    ("wed", Weekday::Wednesday),
    ("thu", Weekday::Thursday),
    ("fri", Weekday::Friday),
    ("sat", Weekday::Saturday),
    ("sun", Weekday::Sunday),
];

impl DaySpec {
    /// The name in the file.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Working => "working",
            Self::Weekend => "weekend",
            Self::Holiday => "holiday",
            Self::Day(w) => WEEKDAYS.iter().find(|(_, d)| *d == w).map_or("?", |(n, _)| n),
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "working" => Some(Self::Working),
            "weekend" => Some(Self::Weekend),
            "holiday" => Some(Self::Holiday),
            other => WEEKDAYS.iter().find(|(n, _)| *n == other).map(|(_, w)| Self::Day(*w)),
        }
    }

    /// Whether `date` is such a day in `calendar`.
    #[must_use]
    pub fn matches(self, date: Date, calendar: &Calendar) -> bool {
        match self {
            Self::Working => calendar.is_working_day(date),
            Self::Weekend => Calendar::is_weekend(date),
            Self::Holiday => calendar.holiday(date).is_some(),
            Self::Day(w) => date.weekday() == w,
        }
    }
}

/// What a rule does (module docs of [`super`] for `SOC_RESERVE` and `CHARGE_TO`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action {
    /// `NO_DISCHARGE`.
    NoDischarge,
    /// `LIMIT_CHARGE {maxChargePower}`.
    LimitCharge {
        /// Largest charge power (≥ 0).
        max_charge_power: Watts,
    },
    /// `LIMIT_DISCHARGE {maxDischargePower}`.
    LimitDischarge {
        /// Largest discharge power (≥ 0).
        max_discharge_power: Watts,
    },
    /// `FORCE_CHARGE {power}`.
    ForceCharge {
        /// Charge power (≥ 0).
        power: Watts,
    },
    /// `SOC_RESERVE {soc}`: no discharge at or below this SOC.
    SocReserve {
        /// The reserve.
        soc: Percent,
    },
    /// `CHARGE_TO {soc, by}`: reach this SOC by this local time.
    ChargeTo {
        /// The target SOC.
        soc: Percent,
        /// The local wall-clock deadline.
        by: Time,
    },
}

impl Action {
    /// The API name (`NO_DISCHARGE`, …).
    #[must_use]
    pub const fn mode(&self) -> &'static str {
        match self {
            Self::NoDischarge => "NO_DISCHARGE",
            Self::LimitCharge { .. } => "LIMIT_CHARGE",
            Self::LimitDischarge { .. } => "LIMIT_DISCHARGE",
            Self::ForceCharge { .. } => "FORCE_CHARGE",
            Self::SocReserve { .. } => "SOC_RESERVE",
            Self::ChargeTo { .. } => "CHARGE_TO",
        }
    }

    /// Whether `until.soc` ends it when the SOC rises to the target (`FORCE_CHARGE`,
    /// `LIMIT_CHARGE`, `CHARGE_TO`) rather than when it falls to it (the others).
    #[must_use]
    pub const fn charges(&self) -> bool {
        matches!(self, Self::ForceCharge { .. } | Self::LimitCharge { .. } | Self::ChargeTo { .. })
    }

    /// The JSON form (`{"mode": "LIMIT_CHARGE", "maxChargePower": 1000.0}`).
    #[must_use]
    pub fn to_json(&self) -> Value {
        let mode = self.mode();
        match *self {
            Self::NoDischarge => json!({ "mode": mode }),
            Self::LimitCharge { max_charge_power } => {
                json!({ "mode": mode, "maxChargePower": f64::from(max_charge_power.get()) })
            }
            Self::LimitDischarge { max_discharge_power } => {
                json!({ "mode": mode, "maxDischargePower": f64::from(max_discharge_power.get()) })
            }
            Self::ForceCharge { power } => json!({ "mode": mode, "power": f64::from(power.get()) }),
            Self::SocReserve { soc } => json!({ "mode": mode, "soc": f64::from(soc.get()) }),
            Self::ChargeTo { soc, by } => {
                json!({ "mode": mode, "soc": f64::from(soc.get()), "by": hhmm(by) })
            }
        }
    }
}

/// The JSON form of a controller override (the same keys as a rule action).
#[must_use]
pub fn override_json(o: &Override) -> Value {
    let a = match *o {
        Override::NoDischarge => Action::NoDischarge,
        Override::LimitCharge { max_charge_power } => Action::LimitCharge { max_charge_power },
        Override::LimitDischarge { max_discharge_power } => Action::LimitDischarge { max_discharge_power },
        Override::ForceCharge { power } => Action::ForceCharge { power },
    };
    a.to_json()
}

/// What ends a latched rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Until {
    /// The next occurrence of this local wall-clock time after firing.
    Time(Time),
    /// This many minutes after firing (1 ..= a week).
    Duration {
        /// Minutes.
        minutes: i64,
    },
    /// The next sunset at the site after firing.
    Sunset,
    /// The measured SOC reached this (direction: [`Action::charges`]).
    Soc(Percent),
}

impl Until {
    fn to_json(self) -> Value {
        match self {
            Self::Time(t) => json!({ "time": hhmm(t) }),
            Self::Duration { minutes } => json!({ "duration_minutes": minutes }),
            Self::Sunset => json!({ "sunset": true }),
            Self::Soc(p) => json!({ "soc": f64::from(p.get()) }),
        }
    }
}

/// `HH:MM`.
#[must_use]
pub fn hhmm(t: Time) -> String {
    format!("{:02}:{:02}", t.hour(), t.minute())
}

fn path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

fn only_keys(o: &Map<String, Value>, parent: &str, allowed: &[&str]) -> Result<(), RuleError> {
    match o.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(RuleError::new(
            path(parent, k),
            &o[k.as_str()],
            format!("unknown key (expected one of: {})", allowed.join(", ")),
        )),
        None => Ok(()),
    }
}

/// The value at `key`, `None` when absent or `null`.
fn get<'a>(o: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    o.get(key).filter(|v| !v.is_null())
}

fn object<'a>(v: &'a Value, at: &str) -> Result<&'a Map<String, Value>, RuleError> {
    v.as_object().ok_or_else(|| RuleError::new(at, v, "must be a table/object"))
}

fn string<'a>(v: &'a Value, at: &str) -> Result<&'a str, RuleError> {
    v.as_str().ok_or_else(|| RuleError::new(at, v, "must be a string"))
}

fn number(v: &Value, at: &str) -> Result<f64, RuleError> {
    v.as_f64().filter(|x| x.is_finite()).ok_or_else(|| RuleError::new(at, v, "must be a number"))
}

fn percent(v: &Value, at: &str) -> Result<Percent, RuleError> {
    let x = number(v, at)?;
    // f64 → f32 has no `TryFrom`; anything outside 0..=100 is refused below either way.
    #[allow(clippy::cast_possible_truncation)]
    let p = x as f32;
    if !(0.0..=100.0).contains(&x) {
        return Err(RuleError::new(at, v, "must be a percentage 0..=100"));
    }
    Percent::try_new(p).map_err(|e| RuleError::new(at, v, e.to_string()))
}

fn power(v: &Value, at: &str) -> Result<Watts, RuleError> {
    let x = number(v, at)?;
    if x < 0.0 {
        return Err(RuleError::new(at, v, "must be >= 0 W (a magnitude)"));
    }
    // f64 → f32 has no `TryFrom`: out of range becomes inf and `try_new` refuses it.
    #[allow(clippy::cast_possible_truncation)]
    let w = x as f32;
    Watts::try_new(w).map_err(|e| RuleError::new(at, v, e.to_string()))
}

fn price(v: &Value, at: &str) -> Result<Price, RuleError> {
    let x = number(v, at)?;
    Price::checked("price", x).map_err(|e| RuleError::new(at, v, e.to_string()))
}

/// Parse a local wall-clock `HH:MM`.
fn time(v: &Value, at: &str) -> Result<Time, RuleError> {
    let s = string(v, at)?;
    let bad = || RuleError::new(at, v, "must be a local time \"HH:MM\" (00:00 ..= 23:59)");
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: i8 = h.parse().map_err(|_| bad())?;
    let m: i8 = m.parse().map_err(|_| bad())?;
    Time::new(h, m, 0, 0).map_err(|_| bad())
}

impl RuleSet {
    /// A rule set from TOML text (the file).
    ///
    /// # Errors
    /// [`RuleError`] for a syntax error (no path; the message says the line) or an invalid
    /// field (its path and value).
    pub fn from_toml(text: &str) -> Result<Self, RuleError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| RuleError::new("", "", e.to_string()))?;
        Self::from_json(&toml_to_json(toml::Value::Table(table)))
    }

    /// A rule set from JSON text (the API's body).
    ///
    /// # Errors
    /// As [`Self::from_json`]; a syntax error has no path.
    pub fn from_json_str(text: &str) -> Result<Self, RuleError> {
        let v: Value = serde_json::from_str(text).map_err(|e| RuleError::new("", "", e.to_string()))?;
        Self::from_json(&v)
    }

    /// A rule set from its JSON form.
    ///
    /// # Errors
    /// [`RuleError`] naming the path and the value of the first invalid field.
    pub fn from_json(v: &Value) -> Result<Self, RuleError> {
        let o = object(v, "")?;
        only_keys(o, "", &["country", "time_zone", "latitude", "longitude", "extra_holidays", "rules"])?;
        let country = match get(o, "country") {
            Some(c) => Some(
                Country::from_code(string(c, "country")?)
                    .map_err(|e| RuleError { value: c.to_string(), ..e })?,
            ),
            None => None,
        };
        let time_zone = match get(o, "time_zone") {
            Some(z) => {
                let name = string(z, "time_zone")?;
                Some(
                    TimeZone::get(name)
                        .map_err(|e| RuleError::new("time_zone", z, format!("unknown time zone: {e}")))?,
                )
            }
            None => None,
        };
        let location = match (get(o, "latitude"), get(o, "longitude")) {
            (None, None) => None,
            (Some(lat), Some(lon)) => {
                let (la, lo) = (number(lat, "latitude")?, number(lon, "longitude")?);
                Some(Location::try_new(la, lo)?)
            }
            (Some(v), None) => {
                return Err(RuleError::new("longitude", "", format!("missing (latitude = {v} given)")))
            }
            (None, Some(v)) => {
                return Err(RuleError::new("latitude", "", format!("missing (longitude = {v} given)")))
            }
        };
        let mut extra = Vec::new();
        if let Some(list) = get(o, "extra_holidays") {
            let items = list
                .as_array()
                .ok_or_else(|| RuleError::new("extra_holidays", list, "must be a list of dates"))?;
            for (i, d) in items.iter().enumerate() {
                let at = format!("extra_holidays[{i}]");
                let s = string(d, &at)?;
                extra.push(
                    s.parse::<Date>().map_err(|_| RuleError::new(&at, d, "must be a date YYYY-MM-DD"))?,
                );
            }
        }
        let mut rules: Vec<Rule> = Vec::new();
        if let Some(list) = get(o, "rules") {
            let items =
                list.as_array().ok_or_else(|| RuleError::new("rules", list, "must be a list of rules"))?;
            for (i, r) in items.iter().enumerate() {
                let at = format!("rules[{i}]");
                let rule = parse_rule(r, &at)?;
                if rules.iter().any(|x| x.name == rule.name) {
                    return Err(RuleError::new(
                        path(&at, "name"),
                        Value::String(rule.name),
                        "duplicate rule name",
                    ));
                }
                rules.push(rule);
            }
        }
        if rules.len() > usize::from(u16::MAX) {
            return Err(RuleError::new("rules", rules.len(), "too many rules (at most 65535)"));
        }
        Ok(Self { calendar: Calendar::new(country, extra), time_zone, location, rules })
    }

    /// The JSON form; [`Self::from_json`] reads it back to an equal set.
    #[must_use]
    pub fn to_json(&self) -> Value {
        let mut o = Map::new();
        if let Some(c) = self.calendar.country() {
            o.insert("country".into(), json!(c.code()));
        }
        if let Some(name) = self.time_zone.as_ref().and_then(TimeZone::iana_name) {
            o.insert("time_zone".into(), json!(name));
        }
        if let Some(l) = self.location {
            o.insert("latitude".into(), json!(l.latitude().get()));
            o.insert("longitude".into(), json!(l.longitude().get()));
        }
        if !self.calendar.extra().is_empty() {
            let days: Vec<Value> = self.calendar.extra().iter().map(|d| json!(d.to_string())).collect();
            o.insert("extra_holidays".into(), Value::Array(days));
        }
        o.insert("rules".into(), Value::Array(self.rules.iter().map(Rule::to_json).collect()));
        Value::Object(o)
    }

    /// The rules, in file order (a rule's index is its id for the controller).
    #[must_use]
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The calendar (country and extra holidays).
    #[must_use]
    pub const fn calendar(&self) -> &Calendar {
        &self.calendar
    }

    /// The time zone of the file, if any.
    #[must_use]
    pub const fn time_zone(&self) -> Option<&TimeZone> {
        self.time_zone.as_ref()
    }

    /// The location of the file, if any.
    #[must_use]
    pub const fn location(&self) -> Option<Location> {
        self.location
    }

    /// Use the site's time zone (the gateway passes its own; the file's is a default).
    pub fn set_time_zone(&mut self, tz: TimeZone) {
        self.time_zone = Some(tz);
    }

    /// Use the site's location (the gateway passes its own; the file's is a default).
    pub fn set_location(&mut self, location: Location) {
        self.location = Some(location);
    }
}

impl Rule {
    fn to_json(&self) -> Value {
        let mut o = Map::new();
        o.insert("name".into(), json!(self.name));
        o.insert("priority".into(), json!(self.priority));
        o.insert("enabled".into(), json!(self.enabled));
        o.insert("when".into(), self.when.to_json());
        o.insert("action".into(), self.action.to_json());
        if let Some(u) = self.until {
            o.insert("until".into(), u.to_json());
        }
        Value::Object(o)
    }
}

impl When {
    fn to_json(&self) -> Value {
        let mut o = Map::new();
        if !self.days.is_empty() {
            o.insert("days".into(), Value::Array(self.days.iter().map(|d| json!(d.name())).collect()));
        }
        if let Some(w) = self.window {
            o.insert("from".into(), json!(hhmm(w.from)));
            o.insert("to".into(), json!(hhmm(w.to)));
        }
        let mut put = |k: &str, v: Option<f64>| {
            if let Some(v) = v {
                o.insert(k.into(), json!(v));
            }
        };
        put("price_above", self.price_above.map(Price::per_kwh));
        put("price_below", self.price_below.map(Price::per_kwh));
        put("soc_above", self.soc_above.map(|p| f64::from(p.get())));
        put("soc_below", self.soc_below.map(|p| f64::from(p.get())));
        put("pv_surplus_above_w", self.pv_surplus_above.map(|w| f64::from(w.get())));
        put("grid_import_above_w", self.grid_import_above.map(|w| f64::from(w.get())));
        Value::Object(o)
    }
}

fn parse_rule(v: &Value, at: &str) -> Result<Rule, RuleError> {
    let o = object(v, at)?;
    only_keys(o, at, &["name", "priority", "enabled", "when", "action", "until"])?;
    let name_at = path(at, "name");
    let name_v = get(o, "name").ok_or_else(|| RuleError::new(&name_at, "", "missing"))?;
    let name = string(name_v, &name_at)?.trim().to_owned();
    if name.is_empty() {
        return Err(RuleError::new(name_at, name_v, "must not be empty"));
    }
    let prio_at = path(at, "priority");
    let priority = match get(o, "priority") {
        Some(p) => p
            .as_i64()
            .and_then(|x| i32::try_from(x).ok())
            .ok_or_else(|| RuleError::new(&prio_at, p, "must be an integer"))?,
        None => return Err(RuleError::new(prio_at, "", "missing")),
    };
    let en_at = path(at, "enabled");
    let enabled = match get(o, "enabled") {
        Some(b) => b.as_bool().ok_or_else(|| RuleError::new(&en_at, b, "must be true or false"))?,
        None => true,
    };
    let when = match get(o, "when") {
        Some(w) => parse_when(w, &path(at, "when"))?,
        None => When::default(),
    };
    let act_at = path(at, "action");
    let action =
        parse_action(get(o, "action").ok_or_else(|| RuleError::new(&act_at, "", "missing"))?, &act_at)?;
    let until = match get(o, "until") {
        Some(u) => Some(parse_until(u, &path(at, "until"))?),
        None => None,
    };
    Ok(Rule { name, priority, enabled, when, action, until })
}

fn parse_when(v: &Value, at: &str) -> Result<When, RuleError> {
    let o = object(v, at)?;
    only_keys(
        o,
        at,
        &[
            "days",
            "from",
            "to",
            "price_above",
            "price_below",
            "soc_above",
            "soc_below",
            "pv_surplus_above_w",
            "grid_import_above_w",
        ],
    )?;
    let mut w = When::default();
    if let Some(days) = get(o, "days") {
        let dat = path(at, "days");
        let items = days.as_array().ok_or_else(|| RuleError::new(&dat, days, "must be a list"))?;
        for (i, d) in items.iter().enumerate() {
            let iat = format!("{dat}[{i}]");
            let s = string(d, &iat)?;
            w.days.push(DaySpec::parse(s).ok_or_else(|| {
                RuleError::new(
                    &iat,
                    d,
                    "unknown day (working, weekend, holiday, mon, tue, wed, thu, fri, sat, sun)",
                )
            })?);
        }
    }
    w.window = match (get(o, "from"), get(o, "to")) {
        (None, None) => None,
        (Some(f), Some(t)) => {
            let (fat, tat) = (path(at, "from"), path(at, "to"));
            let window = Window { from: time(f, &fat)?, to: time(t, &tat)? };
            if window.from == window.to {
                return Err(RuleError::new(tat, t, "must differ from 'from' (an empty window)"));
            }
            Some(window)
        }
        (Some(f), None) => {
            return Err(RuleError::new(path(at, "to"), "", format!("missing (from = {f} given)")))
        }
        (None, Some(t)) => {
            return Err(RuleError::new(path(at, "from"), "", format!("missing (to = {t} given)")))
        }
    };
    let opt = |key: &str| get(o, key).map(|v| (v, path(at, key)));
    w.price_above = opt("price_above").map(|(v, p)| price(v, &p)).transpose()?;
    w.price_below = opt("price_below").map(|(v, p)| price(v, &p)).transpose()?;
    w.soc_above = opt("soc_above").map(|(v, p)| percent(v, &p)).transpose()?;
    w.soc_below = opt("soc_below").map(|(v, p)| percent(v, &p)).transpose()?;
    w.pv_surplus_above = opt("pv_surplus_above_w").map(|(v, p)| signed_power(v, &p)).transpose()?;
    w.grid_import_above = opt("grid_import_above_w").map(|(v, p)| signed_power(v, &p)).transpose()?;
    Ok(w)
}

/// A power threshold (may be negative: "grid import above −500 W" means "exporting less").
fn signed_power(v: &Value, at: &str) -> Result<Watts, RuleError> {
    let x = number(v, at)?;
    // f64 → f32 has no `TryFrom`: out of range becomes inf and `try_new` refuses it.
    #[allow(clippy::cast_possible_truncation)]
    let w = x as f32;
    Watts::try_new(w).map_err(|e| RuleError::new(at, v, e.to_string()))
}

fn parse_action(v: &Value, at: &str) -> Result<Action, RuleError> {
    let o = object(v, at)?;
    let mode_at = path(at, "mode");
    let mode_v = get(o, "mode").ok_or_else(|| RuleError::new(&mode_at, "", "missing"))?;
    let req = |key: &str| get(o, key).ok_or_else(|| RuleError::new(path(at, key), "", "missing"));
    let (action, keys): (Action, &[&str]) = match string(mode_v, &mode_at)? {
        "NO_DISCHARGE" => (Action::NoDischarge, &["mode"]),
        "LIMIT_CHARGE" => {
            let max_charge_power = power(req("maxChargePower")?, &path(at, "maxChargePower"))?;
            (Action::LimitCharge { max_charge_power }, &["mode", "maxChargePower"])
        }
        "LIMIT_DISCHARGE" => {
            let max_discharge_power = power(req("maxDischargePower")?, &path(at, "maxDischargePower"))?;
            (Action::LimitDischarge { max_discharge_power }, &["mode", "maxDischargePower"])
        }
        "FORCE_CHARGE" => {
            let power = power(req("power")?, &path(at, "power"))?;
            (Action::ForceCharge { power }, &["mode", "power"])
        }
        "SOC_RESERVE" => {
            let soc = percent(req("soc")?, &path(at, "soc"))?;
            (Action::SocReserve { soc }, &["mode", "soc"])
        }
        "CHARGE_TO" => {
            let soc = percent(req("soc")?, &path(at, "soc"))?;
            let by = time(req("by")?, &path(at, "by"))?;
            (Action::ChargeTo { soc, by }, &["mode", "soc", "by"])
        }
        _ => {
            return Err(RuleError::new(
                mode_at,
                mode_v,
                "unknown mode (NO_DISCHARGE, LIMIT_CHARGE, LIMIT_DISCHARGE, FORCE_CHARGE, SOC_RESERVE, CHARGE_TO)",
            ))
        }
    };
    only_keys(o, at, keys)?;
    Ok(action)
}

fn parse_until(v: &Value, at: &str) -> Result<Until, RuleError> {
    let o = object(v, at)?;
    only_keys(o, at, &["time", "duration_minutes", "sunset", "soc"])?;
    let given: Vec<(&String, &Value)> = o.iter().filter(|(_, v)| !v.is_null()).collect();
    let [(key, v)] = given.as_slice() else {
        return Err(RuleError::new(at, v, "must have exactly one of: time, duration_minutes, sunset, soc"));
    };
    let kat = path(at, key);
    Ok(match key.as_str() {
        "time" => Until::Time(time(v, &kat)?),
        "duration_minutes" => {
            let minutes = v.as_i64().filter(|m| (1..=MAX_UNTIL_MINUTES).contains(m)).ok_or_else(|| {
                RuleError::new(&kat, v, format!("must be an integer 1..={MAX_UNTIL_MINUTES}"))
            })?;
            Until::Duration { minutes }
        }
        "sunset" => match v.as_bool() {
            Some(true) => Until::Sunset,
            _ => return Err(RuleError::new(kat, v, "must be true (leave `until` out for no end)")),
        },
        _ => Until::Soc(percent(v, &kat)?),
    })
}

/// TOML → the JSON form (a TOML date or time becomes its string).
fn toml_to_json(v: toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::from(i),
        toml::Value::Float(f) => {
            serde_json::Number::from_f64(f).map_or_else(|| Value::String(f.to_string()), Value::Number)
        }
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.into_iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => Value::Object(t.into_iter().map(|(k, v)| (k, toml_to_json(v))).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_wrap_midnight() {
        let w = Window { from: Time::constant(22, 0, 0, 0), to: Time::constant(6, 0, 0, 0) };
        assert!(w.contains(Time::constant(23, 0, 0, 0)));
        assert!(w.contains(Time::constant(5, 59, 0, 0)));
        assert!(!w.contains(Time::constant(6, 0, 0, 0)));
        assert!(w.after_midnight(Time::constant(1, 0, 0, 0)));
        assert!(!w.after_midnight(Time::constant(23, 0, 0, 0)));
    }

    #[test]
    fn times_are_hh_mm() {
        assert_eq!(time(&json!("07:05"), "x").unwrap(), Time::constant(7, 5, 0, 0));
        for bad in ["7:05", "24:00", "12:60", "noon", "12:00:00"] {
            let e = time(&json!(bad), "rules[0].when.from").unwrap_err();
            assert_eq!(e.path, "rules[0].when.from");
            assert_eq!(e.value, format!("\"{bad}\""));
        }
    }
}
