//! Where the file points to: paths relative to the config file and Modbus endpoint URLs, shared by
//! the sections that name a file or a device.

use super::errors::{ConfigError, Ctx};
use ems_devices::modbus::transport::ModbusEndpoint;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// A path from the config file, relative to the file's folder.
#[must_use]
pub(crate) fn resolve(config_file: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        config_file.parent().unwrap_or_else(|| Path::new(".")).join(p)
    }
}

/// A Modbus endpoint URL; a TCP port outside 1..=65535 is named with its value.
pub(super) fn endpoint(
    ctx: &Ctx<'_>,
    field: &str,
    v: &Spanned<String>,
) -> Result<ModbusEndpoint, ConfigError> {
    let url = v.get_ref();
    url.parse::<ModbusEndpoint>().map_err(|e| {
        let message = match tcp_port(url) {
            Some(port) if e.part == "port" => format!("port {port} is outside 1..=65535 ('{url}')"),
            _ if e.part == "scheme" => {
                format!("'{url}' is not a modbus-tcp://HOST:PORT or modbus-rtu:///dev/ttyX?baud=N URL")
            }
            _ => format!("'{url}': {}: {}", e.part, e.reason),
        };
        ctx.err(field, v, message)
    })
}

/// The port text of a `modbus-tcp://HOST:PORT` URL, if it has one.
fn tcp_port(url: &str) -> Option<&str> {
    let authority = url.strip_prefix("modbus-tcp://")?.split(['/', '?']).next()?;
    match authority.strip_prefix('[') {
        Some(v6) => v6.split_once(']')?.1.strip_prefix(':'),
        None => authority.rsplit_once(':').map(|(_, p)| p),
    }
}
