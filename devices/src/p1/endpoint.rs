//! `P1Endpoint`: where a P1 port is reached.
//!
//! * `p1-tcp://HOST:PORT` or a bare `HOST:PORT`: a TCP P1 dongle or a ser2net bridge that
//!   forwards the raw telegrams.
//! * `p1-serial:///dev/ttyUSB0[?baud=115200][&parity=N|E][&data_bits=7|8]`: the P1 port on a
//!   serial adapter (DSMR 4/5: 115200 8N1, the defaults).

use crate::modbus::transport::{Parity, SerialSettings, StopBits};
use core::fmt;
use core::str::FromStr;

/// Where a P1 meter is read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum P1Endpoint {
    /// A TCP P1 dongle / serial bridge.
    Tcp {
        /// Host name or IP address.
        host: String,
        /// TCP port.
        port: u16,
    },
    /// A serial port.
    Serial(SerialSettings),
}

/// A P1 endpoint URL that cannot be used; names the URL, the part and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid P1 endpoint \"{url}\": {part}: {reason}")]
pub struct P1EndpointError {
    /// The URL as given.
    pub url: String,
    /// The wrong part (`host`, `port`, `path`, `baud`, …).
    pub part: &'static str,
    /// Why.
    pub reason: String,
}

impl FromStr for P1Endpoint {
    type Err = P1EndpointError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let err = |part, reason: String| P1EndpointError { url: url.to_owned(), part, reason };
        if let Some(rest) = url.strip_prefix("p1-serial://") {
            let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
            if !path.starts_with('/') {
                return Err(err("path", format!("'{path}' is not an absolute device path")));
            }
            let mut s = SerialSettings::new(path, 115_200);
            for kv in query.split('&').filter(|kv| !kv.is_empty()) {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                match k {
                    "baud" => {
                        s.baud =
                            v.parse().ok().filter(|b| (300..=4_000_000).contains(b)).ok_or_else(|| {
                                err("baud", format!("'{v}' is not a baud rate in 300..=4000000"))
                            })?;
                    }
                    "parity" => {
                        s.parity = match v {
                            "N" => Parity::None,
                            "E" => Parity::Even,
                            "O" => Parity::Odd,
                            _ => return Err(err("parity", format!("'{v}' is not N, E or O"))),
                        };
                    }
                    "data_bits" => {
                        s.data_bits = match v {
                            "7" => 7,
                            "8" => 8,
                            _ => return Err(err("data_bits", format!("'{v}' is not 7 or 8"))),
                        };
                    }
                    other => return Err(err("query", format!("unknown parameter '{other}'"))),
                }
            }
            s.stop_bits = StopBits::One;
            return Ok(Self::Serial(s));
        }
        let hostport = url.strip_prefix("p1-tcp://").unwrap_or(url);
        if hostport.contains("://") {
            return Err(err("scheme", "use p1-tcp://HOST:PORT, HOST:PORT or p1-serial:///dev/…".to_owned()));
        }
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h.trim_start_matches('[').trim_end_matches(']'), p),
            None => return Err(err("port", format!("'{hostport}' names no port (HOST:PORT)"))),
        };
        if host.is_empty() || host.contains(['/', ' ']) {
            return Err(err("host", format!("'{host}' is not a host name or address")));
        }
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| err("port", format!("'{port}' is not a port in 1..=65535")))?;
        Ok(Self::Tcp { host: host.to_owned(), port })
    }
}

impl fmt::Display for P1Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp { host, port } if host.contains(':') => write!(f, "p1-tcp://[{host}]:{port}"),
            Self::Tcp { host, port } => write!(f, "p1-tcp://{host}:{port}"),
            Self::Serial(s) => write!(f, "p1-serial://{}?baud={}", s.path, s.baud),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(
            "10.0.0.5:8088".parse::<P1Endpoint>().unwrap(),
            P1Endpoint::Tcp { host: "10.0.0.5".into(), port: 8088 }
        );
        assert_eq!(
            "p1-tcp://[::1]:23".parse::<P1Endpoint>().unwrap(),
            P1Endpoint::Tcp { host: "::1".into(), port: 23 }
        );
        let P1Endpoint::Serial(s) = "p1-serial:///dev/ttyUSB0".parse::<P1Endpoint>().unwrap() else {
            panic!("serial expected")
        };
        assert_eq!((s.path.as_str(), s.baud, s.data_bits), ("/dev/ttyUSB0", 115_200, 8));
        for (bad, part) in [
            ("meter", "port"),
            ("host:0", "port"),
            ("modbus-tcp://h:1", "scheme"),
            ("p1-serial://ttyUSB0", "path"),
            ("p1-serial:///dev/x?baud=fast", "baud"),
        ] {
            let e = bad.parse::<P1Endpoint>().unwrap_err();
            assert_eq!(e.part, part, "{bad}: {e}");
            assert!(e.to_string().contains(bad), "{e}");
        }
    }
}
