//! `[modbus_server]`: the SunSpec Modbus TCP server for SCADA and other EMSs
//! (`ems_api::modbus_server`) — listeners, unit id, IP allow-list, revert timer, writable
//! control points and the role its control writes carry.

use super::errors::{ConfigError, Ctx};
use ems_api::auth::Role;
use ems_api::modbus_server::{AllowedNet, ModbusServerConfig, Writable};
use serde::Deserialize;
use std::time::Duration;
use toml::Spanned;

/// `[modbus_server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ModbusServerSection {
    /// `HOST:PORT` of the read-write listener (e.g. `0.0.0.0:502`), or `off`.
    pub listen: Spanned<String>,
    /// `HOST:PORT` of a second, read-only listener (every write gets exception 2); absent: none.
    pub read_only_listen: Option<Spanned<String>>,
    /// The Modbus unit id answered (1..=247, default 1; 255 is answered too).
    pub unit_id: Option<Spanned<i64>>,
    /// Addresses or networks allowed to connect (`"192.168.1.20"`, `"10.0.0.0/8"`); default
    /// loopback only. Connections from any other address are closed at once.
    pub allow: Option<Vec<Spanned<String>>>,
    /// Revert timer of a control write that does not set its own, s (1..=3600, default 60).
    pub revert_s: Option<Spanned<i64>>,
    /// The longest revert time a client may write, s (1..=86400, default 3600).
    pub revert_max_s: Option<Spanned<i64>>,
    /// Writable control functions: any of `"WSet"`, `"WMaxLimPct"`, `"CtrlHb"` (default all;
    /// `[]`: nothing writable).
    pub writable: Option<Vec<Spanned<String>>>,
    /// The role of the server's API token, whose rules its control writes follow (default
    /// `operator`).
    pub role: Option<Spanned<String>>,
    /// Model 1 serial number (default the site name).
    pub serial: Option<Spanned<String>>,
    /// Most connections at once (1..=256, default 16).
    pub max_connections: Option<Spanned<i64>>,
    /// A connection without a request for this long is closed, s (1..=86400, default 60).
    pub idle_timeout_s: Option<Spanned<i64>>,
}

/// `[modbus_server]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ModbusServerWiring {
    /// The server's settings (identity ratings are filled in by the gateway).
    pub config: ModbusServerConfig,
    /// The role of its token.
    pub role: Role,
}

fn addr(ctx: &Ctx<'_>, field: &str, v: &Spanned<String>) -> Result<std::net::SocketAddr, ConfigError> {
    v.get_ref()
        .parse()
        .map_err(|_| ctx.err(field, v, format!("'{}' is not HOST:PORT (e.g. 0.0.0.0:502)", v.get_ref())))
}

/// Validate `[modbus_server]` (`site_name`: the default serial). `None` when `listen = "off"`
/// and no read-only listener.
pub(super) fn modbus_server(
    ctx: &Ctx<'_>,
    m: &ModbusServerSection,
    site_name: &str,
) -> Result<Option<ModbusServerWiring>, ConfigError> {
    let listen =
        if m.listen.get_ref() == "off" { None } else { Some(addr(ctx, "modbus_server.listen", &m.listen)?) };
    let read_only_listen =
        m.read_only_listen.as_ref().map(|v| addr(ctx, "modbus_server.read_only_listen", v)).transpose()?;
    if listen.is_none() && read_only_listen.is_none() {
        return Ok(None);
    }
    let int = |field: &str, v: &Option<Spanned<i64>>, min: u64, max: u64, default: u64, unit: &str| {
        v.as_ref().map_or(Ok(default), |v| ctx.int(&format!("modbus_server.{field}"), v, min, max, unit))
    };
    let unit_id = u8::try_from(int("unit_id", &m.unit_id, 1, 247, 1, "")?).unwrap_or(1);
    let revert_max_s = int("revert_max_s", &m.revert_max_s, 1, 86_400, 3600, " s")?;
    let revert_s = int("revert_s", &m.revert_s, 1, revert_max_s.min(3600), 60, " s")?;
    let max_connections = int("max_connections", &m.max_connections, 1, 256, 16, "")?;
    let idle_timeout_s = int("idle_timeout_s", &m.idle_timeout_s, 1, 86_400, 60, " s")?;
    let defaults = ModbusServerConfig::default();
    let allow = match &m.allow {
        None => defaults.allow.clone(),
        Some(list) => list
            .iter()
            .map(|v| AllowedNet::parse(v.get_ref()).map_err(|e| ctx.err("modbus_server.allow", v, e)))
            .collect::<Result<Vec<_>, _>>()?,
    };
    let writable = match &m.writable {
        None => Writable::default(),
        Some(list) => {
            for v in list {
                if !ems_api::modbus_server::WRITABLE_NAMES.contains(&v.get_ref().as_str()) {
                    return Err(ctx.err(
                        "modbus_server.writable",
                        v,
                        format!("unknown control '{}' (expected WSet, WMaxLimPct or CtrlHb)", v.get_ref()),
                    ));
                }
            }
            let names: Vec<&str> = list.iter().map(|v| v.get_ref().as_str()).collect();
            Writable::from_names(&names).unwrap_or_default()
        }
    };
    let role = match &m.role {
        None => Role::Operator,
        Some(v) => match v.get_ref().as_str() {
            "viewer" => Role::Viewer,
            "operator" => Role::Operator,
            "admin" => Role::Admin,
            other => {
                return Err(ctx.err(
                    "modbus_server.role",
                    v,
                    format!("'{other}' is not viewer, operator or admin"),
                ))
            }
        },
    };
    let mut identity = defaults.identity.clone();
    identity.serial = m.serial.as_ref().map_or_else(|| site_name.to_owned(), |s| s.get_ref().clone());
    Ok(Some(ModbusServerWiring {
        config: ModbusServerConfig {
            listen,
            read_only_listen,
            unit_id,
            allow,
            revert_default: Duration::from_secs(revert_s),
            revert_max: Duration::from_secs(revert_max_s),
            writable,
            max_connections: usize::try_from(max_connections).unwrap_or(16),
            idle_timeout: Duration::from_secs(idle_timeout_s),
            identity,
        },
        role,
    }))
}

#[cfg(test)]
mod tests {
    // Test code: a failed unwrap is a failed test with its message.
    #![allow(clippy::unwrap_used)]
    use crate::config::{parse, ConfigError, SiteConfig};
    use std::path::Path;

    fn with(extra: &str) -> Result<SiteConfig, ConfigError> {
        let profile = concat!(env!("CARGO_MANIFEST_DIR"), "/../../devices/profiles/eastron-sdm630.toml");
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/site.toml"))
            .unwrap()
            .replace("../devices/profiles/eastron-sdm630.toml", profile);
        parse(Path::new("/site/site.toml"), &format!("{text}\n[api]\nlisten = \"127.0.0.1:8080\"\n[[api.tokens]]\nname = \"ops\"\nrole = \"operator\"\nsha256 = \"{}\"\n{extra}", "ab".repeat(32)))
    }

    #[test]
    fn the_server_needs_the_api() {
        let profile = concat!(env!("CARGO_MANIFEST_DIR"), "/../../devices/profiles/eastron-sdm630.toml");
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/site.toml"))
            .unwrap()
            .replace("../devices/profiles/eastron-sdm630.toml", profile);
        let e = parse(
            Path::new("/site/site.toml"),
            &format!("{text}\n[modbus_server]\nlisten = \"0.0.0.0:502\"\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("needs the API"), "{e}");
    }

    #[test]
    fn a_full_section_is_read_and_bad_values_name_their_field() {
        let c = with(
            "[modbus_server]\nlisten = \"0.0.0.0:502\"\nread_only_listen = \"0.0.0.0:1502\"\nunit_id = 3\nallow = [\"10.0.0.0/8\"]\nrevert_s = 30\nwritable = [\"WSet\"]\nrole = \"admin\"\nidle_timeout_s = 120\n",
        );
        let m = c.unwrap().modbus_server.unwrap();
        assert_eq!(m.config.unit_id, 3);
        assert_eq!(m.config.revert_default.as_secs(), 30);
        assert_eq!(m.config.idle_timeout.as_secs(), 120);
        assert!(m.config.writable.wset && !m.config.writable.wmax_lim_pct && !m.config.writable.heartbeat);
        assert_eq!(m.role, ems_api::auth::Role::Admin);
        for (bad, field) in [
            ("listen = \"0.0.0.0:502\"\nunit_id = 300", "modbus_server.unit_id"),
            ("listen = \"nowhere\"", "modbus_server.listen"),
            ("listen = \"0.0.0.0:502\"\nallow = [\"scada\"]", "modbus_server.allow"),
            ("listen = \"0.0.0.0:502\"\nwritable = [\"WMax\"]", "modbus_server.writable"),
            ("listen = \"0.0.0.0:502\"\nrevert_s = 0", "modbus_server.revert_s"),
            ("listen = \"0.0.0.0:502\"\nrole = \"provider\"", "modbus_server.role"),
            ("listen = \"0.0.0.0:502\"\nidle_timeout_s = 0", "modbus_server.idle_timeout_s"),
        ] {
            let e = with(&format!("[modbus_server]\n{bad}\n")).unwrap_err().to_string();
            assert!(e.contains(field), "{bad}: {e}");
        }
    }
}
