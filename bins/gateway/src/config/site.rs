//! `[site]`: name, control cycle, state file, time zone and shutdown timeout.

use super::errors::{ConfigError, Ctx};
use serde::Deserialize;
use std::path::PathBuf;
use toml::Spanned;

/// `[site]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SiteSection {
    /// A name for logs.
    pub name: String,
    /// Control cycle in ms (default 100).
    #[serde(default = "default_cycle")]
    pub cycle_ms: Spanned<u64>,
    /// Where the state machine is persisted (relative to the config file).
    #[serde(default = "default_state_file")]
    pub state_file: PathBuf,
    /// The site's IANA time zone (e.g. `Europe/Berlin`) for local times of day (peak-shaving
    /// slots); the system's zone if not given.
    pub time_zone: Option<Spanned<String>>,
    /// How long a graceful shutdown may take before zero power and open contactors are forced,
    /// s (1..=3600, default 30).
    pub shutdown_timeout_s: Option<Spanned<i64>>,
}

fn default_cycle() -> Spanned<u64> {
    Spanned::new(0..0, 100)
}

fn default_state_file() -> PathBuf {
    PathBuf::from("ems-gateway.state")
}

/// Default `[site] shutdown_timeout_s`.
pub(crate) const DEFAULT_SHUTDOWN_TIMEOUT: ems_core::Millis = ems_core::Millis::new(30_000);

/// `[site]`, validated: the cycle, the time zone and the shutdown timeout.
pub(super) struct Site {
    pub(super) cycle: ems_core::Millis,
    pub(super) time_zone: Option<jiff::tz::TimeZone>,
    pub(super) shutdown_timeout: ems_core::Millis,
}

pub(super) fn site(ctx: &Ctx<'_>, s: &SiteSection) -> Result<Site, ConfigError> {
    let cycle = *s.cycle_ms.get_ref();
    if !(10..=10_000).contains(&cycle) {
        return Err(ctx.err("site.cycle_ms", &s.cycle_ms, format!("{cycle} ms is outside 10..=10000 ms")));
    }
    let shutdown_timeout = match &s.shutdown_timeout_s {
        Some(v) => ems_core::Millis::from_secs(ctx.int("site.shutdown_timeout_s", v, 1, 3600, " s")?),
        None => DEFAULT_SHUTDOWN_TIMEOUT,
    };
    let time_zone = match &s.time_zone {
        Some(tz) => Some(jiff::tz::TimeZone::get(tz.get_ref()).map_err(|e| {
            ctx.err("site.time_zone", tz, format!("'{}' is not a known time zone: {e}", tz.get_ref()))
        })?),
        None => None,
    };
    Ok(Site { cycle: ems_core::Millis::new(cycle), time_zone, shutdown_timeout })
}

#[cfg(test)]
mod tests {
    use crate::config::parse;
    use std::path::Path;

    fn example(site: &str) -> String {
        let profile = concat!(env!("CARGO_MANIFEST_DIR"), "/../../devices/profiles/eastron-sdm630.toml");
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/site.toml"))
            .unwrap()
            .replace("../devices/profiles/eastron-sdm630.toml", profile)
            .replace("[site]\n", &format!("[site]\n{site}\n"))
    }

    #[test]
    fn cycle_and_shutdown_timeout_outside_their_range_name_field_and_value() {
        let c = parse(Path::new("site.toml"), &example("shutdown_timeout_s = 90")).unwrap();
        assert_eq!(c.shutdown_timeout.get(), 90_000);
        let e = parse(Path::new("site.toml"), &example("shutdown_timeout_s = 0")).unwrap_err().to_string();
        assert!(e.contains("line 8: site.shutdown_timeout_s: 0 s is outside 1..=3600 s"), "{e}");
        let text = example("").replace("cycle_ms = 100", "cycle_ms = 5");
        let e = parse(Path::new("site.toml"), &text).unwrap_err().to_string();
        assert!(e.contains("site.cycle_ms: 5 ms is outside 10..=10000 ms"), "{e}");
    }
}
