//! `ModbusEndpoint`: the connection URLs the gateway accepts.
//!
//! * `modbus-tcp://HOST:PORT` (port 502 if omitted; IPv6 hosts in brackets: `[::1]:502`).
//! * `modbus-rtu:///dev/ttyUSB0?baud=9600[&parity=N|E|O][&stop_bits=1|2][&data_bits=5|6|7|8]`
//!   (`baud` is required, because a wrong baud rate shows up only as silent timeouts; the
//!   others default to 8N1).
//!
//! The unit (slave) id is not part of the URL: one TCP gateway or serial bus serves many units.

use core::fmt;
use core::str::FromStr;

/// The Modbus TCP port used when a `modbus-tcp://` URL names none.
pub const DEFAULT_TCP_PORT: u16 = 502;

/// Where a Modbus device is reached.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ModbusEndpoint {
    /// Modbus TCP.
    Tcp {
        /// Host name or IP address (IPv6 without brackets).
        host: String,
        /// TCP port.
        port: u16,
    },
    /// Modbus RTU over a serial line.
    Rtu(SerialSettings),
}

/// Serial-line settings of a Modbus RTU endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SerialSettings {
    /// The device path, e.g. `/dev/ttyUSB0`.
    pub path: String,
    /// Baud rate.
    pub baud: u32,
    /// Parity.
    pub parity: Parity,
    /// Stop bits.
    pub stop_bits: StopBits,
    /// Data bits (5..=8; Modbus RTU uses 8).
    pub data_bits: u8,
}

impl SerialSettings {
    /// 8N1 at `baud` on `path`.
    #[must_use]
    pub fn new(path: impl Into<String>, baud: u32) -> Self {
        Self { path: path.into(), baud, parity: Parity::None, stop_bits: StopBits::One, data_bits: 8 }
    }
}

/// Serial parity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Parity {
    /// `N`.
    None,
    /// `E`.
    Even,
    /// `O`.
    Odd,
}

/// Serial stop bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StopBits {
    /// One stop bit.
    One,
    /// Two stop bits.
    Two,
}

/// A URL that is not a valid Modbus endpoint; names the URL, the part that is wrong and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Modbus endpoint \"{url}\": {part}: {reason}")]
pub struct EndpointError {
    /// The whole URL as given.
    pub url: String,
    /// The part that is wrong (`scheme`, `host`, `port`, `path`, `baud`, `parity`, …).
    pub part: String,
    /// Why.
    pub reason: String,
}

impl FromStr for ModbusEndpoint {
    type Err = EndpointError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let err =
            |part: &str, reason: String| EndpointError { url: url.to_owned(), part: part.to_owned(), reason };
        if let Some(rest) = url.strip_prefix("modbus-tcp://") {
            parse_tcp(rest).map_err(|(part, reason)| err(part, reason))
        } else if let Some(rest) = url.strip_prefix("modbus-rtu://") {
            parse_rtu(rest).map_err(|(part, reason)| err(part, reason))
        } else {
            let scheme = url.split_once("://").map_or(url, |(s, _)| s);
            Err(err("scheme", format!("\"{scheme}\" is not modbus-tcp:// or modbus-rtu://")))
        }
    }
}

type PartError = (&'static str, String);

fn parse_tcp(rest: &str) -> Result<ModbusEndpoint, PartError> {
    if rest.contains('?') {
        return Err(("query", "modbus-tcp:// takes no parameters (the unit id is given separately)".into()));
    }
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains('/') {
        return Err(("path", format!("\"{authority}\" has a path; expected HOST:PORT")));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) =
            v6.split_once(']').ok_or(("host", "IPv6 address without closing ']'".to_owned()))?;
        match after {
            "" => (host, None),
            p => {
                (host, Some(p.strip_prefix(':').ok_or(("port", format!("\"{p}\" after the IPv6 address")))?))
            }
        }
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(("host", "empty".into()));
    }
    if host.chars().any(|c| c.is_whitespace() || c == '@' || c == '[' || c == ']')
        || (host.contains(':') && !authority.starts_with('['))
    {
        return Err(("host", format!("\"{host}\" is not a host name or address")));
    }
    let port = match port {
        None => DEFAULT_TCP_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(0) => return Err(("port", "0 is not a usable port".into())),
            Ok(p) => p,
            Err(_) => return Err(("port", format!("\"{p}\" is not a number in 1..=65535"))),
        },
    };
    Ok(ModbusEndpoint::Tcp { host: host.to_owned(), port })
}

fn parse_rtu(rest: &str) -> Result<ModbusEndpoint, PartError> {
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if !path.starts_with('/') || path.len() < 2 {
        return Err((
            "path",
            format!("\"{path}\" is not an absolute device path (modbus-rtu:///dev/ttyUSB0)"),
        ));
    }
    let (mut baud, mut parity, mut stop_bits, mut data_bits) = (None, None, None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').ok_or(("query", format!("\"{pair}\" is not key=value")))?;
        let dup = |seen: bool| if seen { Err(("query", format!("\"{key}\" given twice"))) } else { Ok(()) };
        match key {
            "baud" => {
                dup(baud.is_some())?;
                baud = Some(match value.parse::<u32>() {
                    Ok(b) if b > 0 => b,
                    _ => return Err(("baud", format!("\"{value}\" is not a positive number"))),
                });
            }
            "parity" => {
                dup(parity.is_some())?;
                parity = Some(match value {
                    "N" | "n" => Parity::None,
                    "E" | "e" => Parity::Even,
                    "O" | "o" => Parity::Odd,
                    _ => return Err(("parity", format!("\"{value}\" is not N, E or O"))),
                });
            }
            "stop_bits" => {
                dup(stop_bits.is_some())?;
                stop_bits = Some(match value {
                    "1" => StopBits::One,
                    "2" => StopBits::Two,
                    _ => return Err(("stop_bits", format!("\"{value}\" is not 1 or 2"))),
                });
            }
            "data_bits" => {
                dup(data_bits.is_some())?;
                data_bits = Some(match value.parse::<u8>() {
                    Ok(d @ 5..=8) => d,
                    _ => return Err(("data_bits", format!("\"{value}\" is not 5, 6, 7 or 8"))),
                });
            }
            _ => {
                return Err((
                    "query",
                    format!("unknown parameter \"{key}\" (baud, parity, stop_bits, data_bits)"),
                ))
            }
        }
    }
    let baud = baud.ok_or(("baud", "missing (add ?baud=9600 or the device's rate)".to_owned()))?;
    Ok(ModbusEndpoint::Rtu(SerialSettings {
        path: path.to_owned(),
        baud,
        parity: parity.unwrap_or(Parity::None),
        stop_bits: stop_bits.unwrap_or(StopBits::One),
        data_bits: data_bits.unwrap_or(8),
    }))
}

impl fmt::Display for ModbusEndpoint {
    /// The canonical URL; parsing it gives the same endpoint back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp { host, port } if host.contains(':') => write!(f, "modbus-tcp://[{host}]:{port}"),
            Self::Tcp { host, port } => write!(f, "modbus-tcp://{host}:{port}"),
            Self::Rtu(s) => {
                let parity = match s.parity {
                    Parity::None => 'N',
                    Parity::Even => 'E',
                    Parity::Odd => 'O',
                };
                let stop = match s.stop_bits {
                    StopBits::One => 1,
                    StopBits::Two => 2,
                };
                write!(
                    f,
                    "modbus-rtu://{}?baud={}&parity={parity}&stop_bits={stop}&data_bits={}",
                    s.path, s.baud, s.data_bits
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ModbusEndpoint, EndpointError> {
        s.parse()
    }

    #[test]
    fn tcp_urls_parse() {
        assert_eq!(
            parse("modbus-tcp://192.168.1.10:1502"),
            Ok(ModbusEndpoint::Tcp { host: "192.168.1.10".into(), port: 1502 })
        );
        assert_eq!(
            parse("modbus-tcp://inverter.local"),
            Ok(ModbusEndpoint::Tcp { host: "inverter.local".into(), port: 502 })
        );
        assert_eq!(
            parse("modbus-tcp://[::1]:5020/"),
            Ok(ModbusEndpoint::Tcp { host: "::1".into(), port: 5020 })
        );
    }

    #[test]
    fn rtu_urls_parse_with_defaults() {
        let e = parse("modbus-rtu:///dev/ttyUSB0?baud=9600").unwrap();
        assert_eq!(e, ModbusEndpoint::Rtu(SerialSettings::new("/dev/ttyUSB0", 9600)));
        let e = parse("modbus-rtu:///dev/ttyS1?baud=19200&parity=E&stop_bits=2&data_bits=8").unwrap();
        let ModbusEndpoint::Rtu(s) = e else { panic!("not rtu") };
        assert_eq!((s.baud, s.parity, s.stop_bits, s.data_bits), (19200, Parity::Even, StopBits::Two, 8));
    }

    #[test]
    fn errors_name_the_url_and_the_part() {
        let cases = [
            ("http://x:502", "scheme"),
            ("modbus-tcp://:502", "host"),
            ("modbus-tcp://host:70000", "port"),
            ("modbus-tcp://host:0", "port"),
            ("modbus-tcp://host:502/x", "path"),
            ("modbus-tcp://host:502?unit=1", "query"),
            ("modbus-tcp://a:b:c", "port"),
            ("modbus-rtu://dev/tty?baud=9600", "path"),
            ("modbus-rtu:///dev/tty", "baud"),
            ("modbus-rtu:///dev/tty?baud=fast", "baud"),
            ("modbus-rtu:///dev/tty?baud=9600&parity=X", "parity"),
            ("modbus-rtu:///dev/tty?baud=9600&stop_bits=3", "stop_bits"),
            ("modbus-rtu:///dev/tty?baud=9600&data_bits=9", "data_bits"),
            ("modbus-rtu:///dev/tty?baud=9600&speed=1", "query"),
            ("modbus-rtu:///dev/tty?baud=9600&baud=19200", "query"),
        ];
        for (url, part) in cases {
            let e = parse(url).unwrap_err();
            assert_eq!(e.part, part, "{url}: {e}");
            assert!(e.to_string().contains(url), "{e}");
        }
    }

    #[test]
    fn display_round_trips() {
        for url in [
            "modbus-tcp://10.0.0.1:502",
            "modbus-tcp://[fe80::1]:502",
            "modbus-rtu:///dev/ttyUSB0?baud=9600&parity=O&stop_bits=2&data_bits=7",
        ] {
            let e = parse(url).unwrap();
            assert_eq!(e.to_string(), url);
            assert_eq!(parse(&e.to_string()), Ok(e));
        }
    }
}
