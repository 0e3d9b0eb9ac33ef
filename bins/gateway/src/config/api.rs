//! `[api]`: the local REST API — listen address, database, tokens, providers and the server's
//! limits.

use super::errors::{ConfigError, Ctx};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// `[api]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApiSection {
    /// `HOST:PORT` to listen on (default `127.0.0.1:8080`: loopback only), or `off`.
    #[serde(default = "default_api_listen")]
    pub listen: Spanned<String>,
    /// SQLite database for the audit log, history and schedules (relative to this file);
    /// in memory (lost at restart) when absent.
    pub database: Option<Spanned<String>>,
    /// Battery serial numbers provider schedules may name.
    #[serde(default)]
    pub battery_serials: Vec<Spanned<String>>,
    /// The largest power a provider schedule may ask for, W (default 0: none).
    pub schedule_max_power_w: Option<Spanned<f64>>,
    /// API tokens (`[[api.tokens]]`).
    #[serde(default)]
    pub tokens: Vec<ApiTokenEntry>,
    /// Schedule providers (`[[api.providers]]`).
    #[serde(default)]
    pub providers: Vec<ApiProviderEntry>,
    /// Most connections served at once (1..=65535, default 256); further clients wait.
    pub max_connections: Option<Spanned<i64>>,
    /// A client must send its request headers within this many seconds (1..=300, default 5).
    pub header_read_timeout_s: Option<Spanned<i64>>,
    /// An idle keep-alive connection is closed after this many seconds (1..=3600, default 60).
    pub idle_timeout_s: Option<Spanned<i64>>,
    /// `/metrics` without a token (default false: a viewer token is required).
    pub metrics_public: Option<Spanned<bool>>,
    /// Audit entries older than this are deleted, days (1..=36500, default 365).
    pub audit_max_age_days: Option<Spanned<i64>>,
    /// The audit log keeps at most this many entries, the oldest go first
    /// (1000..=1000000000, default 1000000).
    pub audit_max_rows: Option<Spanned<i64>>,
    /// Telemetry history older than this is deleted, days (1..=36500, default 730: the 15-minute
    /// means; the finer tiers keep their shorter defaults, capped at this).
    pub history_max_age_days: Option<Spanned<i64>>,
    /// Requests per minute per token (1..=60000, default 300: 5 per second, bursts of 20).
    pub rate_limit_per_minute: Option<Spanned<i64>>,
    /// Requests per minute per client address, with or without a valid token (1..=600000,
    /// default 600).
    pub ip_rate_limit_per_minute: Option<Spanned<i64>>,
}

fn default_api_listen() -> Spanned<String> {
    Spanned::new(0..0, "127.0.0.1:8080".to_owned())
}

/// `[[api.tokens]]`: `ems-gateway new-token --name N --role R` prints one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApiTokenEntry {
    /// Who holds it (audit log).
    pub name: Spanned<String>,
    /// `viewer`, `operator`, `provider` or `admin`.
    pub role: Spanned<String>,
    /// SHA-256 of the token, 64 hex digits (the token itself is never stored).
    pub sha256: Spanned<String>,
}

/// `[[api.providers]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApiProviderEntry {
    /// The provider's name, as it signs its requests.
    pub name: Spanned<String>,
    /// Its Ed25519 public key, 64 hex digits.
    pub public_key_hex: Spanned<String>,
}

/// `[api]`, validated.
#[derive(Debug, Clone)]
pub(crate) struct ApiWiring {
    /// Where to listen.
    pub listen: std::net::SocketAddr,
    /// The database file, resolved.
    pub database: Option<PathBuf>,
    /// Serials.
    pub serials: Vec<String>,
    /// Largest schedule power, W.
    pub schedule_max_power_w: u64,
    /// Tokens.
    pub tokens: Vec<ems_api::auth::TokenConfig>,
    /// Providers.
    pub providers: Vec<ems_api::schedules::ProviderKey>,
    /// `max_connections`: most connections served at once (1..=65535).
    pub max_connections: usize,
    /// `header_read_timeout_s`: time a client has to send its request headers.
    pub header_read_timeout: Duration,
    /// `idle_timeout_s`: an idle keep-alive connection is closed after this.
    pub idle_timeout: Duration,
    /// `metrics_public`: `/metrics` is served without a token.
    pub metrics_public: bool,
    /// `audit_max_age_days`: audit entries older than this are deleted.
    pub audit_max_age: Duration,
    /// `audit_max_rows`: the audit log keeps at most this many entries.
    pub audit_max_rows: u64,
    /// `history_max_age_days`: telemetry history older than this is deleted.
    pub history_max_age: Duration,
    /// `rate_limit_per_minute`: requests per minute per token.
    pub rate_limit_per_minute: u32,
    /// `ip_rate_limit_per_minute`: requests per minute per client address.
    pub ip_rate_limit_per_minute: u32,
}

impl ApiWiring {
    /// Defaults of the keys above, for an API configured without them.
    pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 256;
    /// Default `header_read_timeout_s`.
    pub(crate) const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
    /// Default `idle_timeout_s`.
    pub(crate) const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
    /// Default `audit_max_age_days` (365).
    pub(crate) const DEFAULT_AUDIT_MAX_AGE: Duration = Duration::from_secs(365 * DAY_S);
    /// Default `audit_max_rows`.
    pub(crate) const DEFAULT_AUDIT_MAX_ROWS: u64 = 1_000_000;
    /// Default `history_max_age_days` (730: what the database keeps of its 15-minute means).
    pub(crate) const DEFAULT_HISTORY_MAX_AGE: Duration = Duration::from_secs(730 * DAY_S);
    /// Default `rate_limit_per_minute` (`RateLimit::default()`: 5 per second).
    pub(crate) const DEFAULT_RATE_LIMIT_PER_MINUTE: u32 = 300;
    /// Default `ip_rate_limit_per_minute`.
    pub(crate) const DEFAULT_IP_RATE_LIMIT_PER_MINUTE: u32 = 600;
}

const DAY_S: u64 = 86_400;

/// The token bucket for `n` requests per minute (`rate_limit_per_minute`,
/// `ip_rate_limit_per_minute`): refilled at that rate, bursts of a quarter minute's worth (20 at
/// the default 300 per minute, today's `RateLimit::default()`), at least 1.
#[must_use]
pub(crate) fn rate_limit(per_minute: u32) -> ems_api::auth::RateLimit {
    let n = f64::from(per_minute);
    ems_api::auth::RateLimit { burst: (n / 15.0).max(1.0), per_second: n / 60.0 }
}

fn hex64(ctx: &Ctx<'_>, field: &str, v: &Spanned<String>) -> Result<String, ConfigError> {
    let h = v.get_ref().trim();
    if h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(h.to_ascii_lowercase())
    } else {
        Err(ctx.err(field, v, format!("'{h}' is not 64 hex digits")))
    }
}

pub(super) fn api_wiring(
    ctx: &Ctx<'_>,
    path: &Path,
    a: &ApiSection,
) -> Result<Option<ApiWiring>, ConfigError> {
    let listen = a.listen.get_ref();
    if listen == "off" {
        return Ok(None);
    }
    let listen = listen_addr(ctx, &a.listen)?;
    let int = |field: &str, v: &Option<Spanned<i64>>, min: u64, max: u64, default: u64, unit: &str| {
        v.as_ref().map_or(Ok(default), |v| ctx.int(&format!("api.{field}"), v, min, max, unit))
    };
    let days = |d: Duration| d.as_secs() / DAY_S;
    let max_connections =
        int("max_connections", &a.max_connections, 1, 65_535, ApiWiring::DEFAULT_MAX_CONNECTIONS as u64, "")?;
    let header_read_timeout = int(
        "header_read_timeout_s",
        &a.header_read_timeout_s,
        1,
        300,
        ApiWiring::DEFAULT_HEADER_READ_TIMEOUT.as_secs(),
        " s",
    )?;
    let idle_timeout =
        int("idle_timeout_s", &a.idle_timeout_s, 1, 3600, ApiWiring::DEFAULT_IDLE_TIMEOUT.as_secs(), " s")?;
    let audit_max_age_days = int(
        "audit_max_age_days",
        &a.audit_max_age_days,
        1,
        36_500,
        days(ApiWiring::DEFAULT_AUDIT_MAX_AGE),
        " days",
    )?;
    let audit_max_rows =
        int("audit_max_rows", &a.audit_max_rows, 1000, 1_000_000_000, ApiWiring::DEFAULT_AUDIT_MAX_ROWS, "")?;
    let history_max_age_days = int(
        "history_max_age_days",
        &a.history_max_age_days,
        1,
        36_500,
        days(ApiWiring::DEFAULT_HISTORY_MAX_AGE),
        " days",
    )?;
    let per_token = int(
        "rate_limit_per_minute",
        &a.rate_limit_per_minute,
        1,
        60_000,
        ApiWiring::DEFAULT_RATE_LIMIT_PER_MINUTE.into(),
        "",
    )?;
    let per_ip = int(
        "ip_rate_limit_per_minute",
        &a.ip_rate_limit_per_minute,
        1,
        600_000,
        ApiWiring::DEFAULT_IP_RATE_LIMIT_PER_MINUTE.into(),
        "",
    )?;
    let tokens = tokens(ctx, a)?;
    ems_api::auth::TokenRegistry::new(&tokens, rate_limit(u32::try_from(per_token).unwrap_or(u32::MAX)))
        .map_err(|e| ctx.err("api.tokens", &a.listen, e.to_string()))?;
    let mut providers = Vec::with_capacity(a.providers.len());
    for (i, p) in a.providers.iter().enumerate() {
        let public_key_hex = hex64(ctx, &format!("api.providers[{i}].public_key_hex"), &p.public_key_hex)?;
        providers.push(ems_api::schedules::ProviderKey { name: p.name.get_ref().clone(), public_key_hex });
    }
    let power = match &a.schedule_max_power_w {
        Some(v) => ctx.number("api.schedule_max_power_w", v, 0.0, 1e7, "W")?,
        None => 0.0,
    };
    // Validated to 0..=1e7 just above.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let schedule_max_power_w = power as u64;
    Ok(Some(ApiWiring {
        listen,
        database: a.database.as_ref().map(|d| super::paths::resolve(path, d.get_ref())),
        serials: a.battery_serials.iter().map(|s| s.get_ref().clone()).collect(),
        schedule_max_power_w,
        tokens,
        providers,
        // The ranges above keep every value far inside usize and u32.
        max_connections: usize::try_from(max_connections).unwrap_or(ApiWiring::DEFAULT_MAX_CONNECTIONS),
        header_read_timeout: Duration::from_secs(header_read_timeout),
        idle_timeout: Duration::from_secs(idle_timeout),
        metrics_public: a.metrics_public.as_ref().is_some_and(|m| *m.get_ref()),
        audit_max_age: Duration::from_secs(audit_max_age_days * DAY_S),
        audit_max_rows,
        history_max_age: Duration::from_secs(history_max_age_days * DAY_S),
        rate_limit_per_minute: u32::try_from(per_token).unwrap_or(u32::MAX),
        ip_rate_limit_per_minute: u32::try_from(per_ip).unwrap_or(u32::MAX),
    }))
}

/// `[[api.tokens]]`, validated; at least one.
fn tokens(ctx: &Ctx<'_>, a: &ApiSection) -> Result<Vec<ems_api::auth::TokenConfig>, ConfigError> {
    use ems_api::auth::{Role, TokenConfig};
    let mut tokens = Vec::with_capacity(a.tokens.len());
    for (i, t) in a.tokens.iter().enumerate() {
        let role = match t.role.get_ref().as_str() {
            "viewer" => Role::Viewer,
            "operator" => Role::Operator,
            "provider" => Role::Provider,
            "admin" => Role::Admin,
            other => {
                return Err(ctx.err(
                    &format!("api.tokens[{i}].role"),
                    &t.role,
                    format!("'{other}' is not one of viewer, operator, provider, admin"),
                ))
            }
        };
        let sha256_hex = hex64(ctx, &format!("api.tokens[{i}].sha256"), &t.sha256)?;
        tokens.push(TokenConfig { name: t.name.get_ref().clone(), role, sha256_hex });
    }
    if tokens.is_empty() {
        return Err(ctx.err(
            "api.tokens",
            &a.listen,
            "no [[api.tokens]]: the API would refuse every call; add one (ems-gateway new-token) or set listen = \"off\""
                .to_owned(),
        ));
    }
    Ok(tokens)
}

/// `HOST:PORT` of `[api] listen`: a port outside 1..=65535 is named with its value.
fn listen_addr(ctx: &Ctx<'_>, v: &Spanned<String>) -> Result<std::net::SocketAddr, ConfigError> {
    let listen = v.get_ref();
    if let Some((_, port)) = listen.rsplit_once(':') {
        if let Ok(p) = port.parse::<u64>() {
            if !(1..=65_535).contains(&p) {
                return Err(ctx.err("api.listen", v, format!("port {p} is outside 1..=65535 ('{listen}')")));
            }
        }
    }
    listen.parse().map_err(|_| {
        ctx.err("api.listen", v, format!("'{listen}' is not HOST:PORT (e.g. 127.0.0.1:8080) or off"))
    })
}

#[cfg(test)]
mod tests {
    use crate::config::{parse, ConfigError, SiteConfig};
    use std::path::Path;

    fn with_api(api: &str) -> Result<SiteConfig, ConfigError> {
        let profile = concat!(env!("CARGO_MANIFEST_DIR"), "/../../devices/profiles/eastron-sdm630.toml");
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/site.toml"))
            .unwrap()
            .replace("../devices/profiles/eastron-sdm630.toml", profile);
        parse(Path::new("/site/site.toml"), &format!("{text}\n{api}"))
    }

    const HASH: &str = "1d1e0f590d004fb7e08f456946aeac2f8035a23649d852a319291c45aa4a7410";

    #[test]
    fn api_section_parses_tokens_providers_and_database() {
        let c = with_api(&format!(
            "[api]\nlisten = \"0.0.0.0:8443\"\ndatabase = \"ems.db\"\nbattery_serials = [\"BAT-1\"]\nschedule_max_power_w = 5000\n\
             [[api.tokens]]\nname = \"ops\"\nrole = \"operator\"\nsha256 = \"{HASH}\"\n\
             [[api.providers]]\nname = \"acme\"\npublic_key_hex = \"{HASH}\"\n"
        ))
        .unwrap();
        let a = c.api.unwrap();
        assert_eq!(a.listen.port(), 8443);
        assert_eq!(a.database.unwrap(), Path::new("/site/ems.db"));
        assert_eq!((a.tokens.len(), a.providers.len(), a.schedule_max_power_w), (1, 1, 5000));
        assert!(with_api("[api]\nlisten = \"off\"\n").unwrap().api.is_none());
        assert!(with_api("").unwrap().api.is_none());
    }

    #[test]
    fn api_errors_name_the_field_and_value() {
        let err = |api: &str| with_api(api).unwrap_err().to_string();
        let e = err("[api]\n");
        assert!(e.contains("api.tokens") && e.contains("new-token"), "{e}");
        let e = err(&format!("[api]\n[[api.tokens]]\nname = \"x\"\nrole = \"god\"\nsha256 = \"{HASH}\"\n"));
        assert!(e.contains("api.tokens[0].role") && e.contains("god"), "{e}");
        let e = err("[api]\n[[api.tokens]]\nname = \"x\"\nrole = \"admin\"\nsha256 = \"abc\"\n");
        assert!(e.contains("api.tokens[0].sha256") && e.contains("abc"), "{e}");
        let e = err(&format!("[api]\nlisten = \"everywhere\"\n[[api.tokens]]\nname = \"x\"\nrole = \"admin\"\nsha256 = \"{HASH}\"\n"));
        assert!(e.contains("api.listen") && e.contains("everywhere"), "{e}");
        let e = err(&format!(
            "[api]\n[[api.tokens]]\nname = \"x\"\nrole = \"admin\"\nsha256 = \"{HASH}\"\n[[api.tokens]]\nname = \"y\"\nrole = \"admin\"\nsha256 = \"{HASH}\"\n"
        ));
        assert!(e.contains("api.tokens") && e.contains("duplicate"), "{e}");
    }
}
