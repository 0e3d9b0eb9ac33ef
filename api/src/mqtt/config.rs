//! What the MQTT link needs to know: the broker's URL, the topic prefix and site id, TLS files,
//! keep-alive, the outbox bound, the publish period, the message expiry of retained state and
//! the outage buffer (bound, slice size, resend delay).
//! Every value is checked by [`MqttConfig::validate`]; an error names the key and the value.

use std::path::PathBuf;
use std::time::Duration;

/// The broker's address, from `mqtt://HOST[:PORT]` (plain TCP, default port 1883) or
/// `mqtts://HOST[:PORT]` (TLS, default port 8883).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// `true` for `mqtts://`.
    pub tls: bool,
    /// Host name or IP address (IPv6 in brackets in the URL, without them here).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl BrokerUrl {
    /// Parse `mqtt://HOST[:PORT]` or `mqtts://HOST[:PORT]` (nothing after the port).
    ///
    /// # Errors
    /// [`MqttConfigError`] naming `url` and the value.
    pub fn parse(url: &str) -> Result<Self, MqttConfigError> {
        let bad = |why: &str| MqttConfigError::new("url", url, why);
        let (tls, rest) = if let Some(r) = url.strip_prefix("mqtts://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("mqtt://") {
            (false, r)
        } else {
            return Err(bad("must start with mqtt:// or mqtts://"));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
            return Err(bad("must be mqtt://HOST:PORT or mqtts://HOST:PORT (no path, query or user)"));
        }
        let default_port = if tls { 8883 } else { 1883 };
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '[' in the host"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(bad("unexpected text after the IPv6 address")),
            };
            (host, port)
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            None => default_port,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => return Err(bad("the port must be 1..=65535")),
            },
        };
        Ok(Self { tls, host: host.to_owned(), port })
    }
}

impl std::fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// PEM files for `mqtts://`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA certificate(s) the broker's certificate must chain to.
    pub ca: PathBuf,
    /// The client certificate and its private key (PKCS#8, RSA or SEC1), for brokers that
    /// require client certificates; `None` to connect without one.
    pub client: Option<(PathBuf, PathBuf)>,
}

/// The MQTT link's settings (`[mqtt]` of the site file; `--mqtt` on the simulated site).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttConfig {
    /// The broker.
    pub broker: BrokerUrl,
    /// The first topic level(s), e.g. `ems` (no wildcards, no empty level, no leading `$`).
    pub prefix: String,
    /// The site id, one topic level, e.g. `sim`.
    pub site: String,
    /// The MQTT client id (default `ems-<site>`).
    pub client_id: String,
    /// CA and client certificate for `mqtts://` (required there, refused for `mqtt://`).
    pub tls: Option<TlsFiles>,
    /// MQTT keep-alive (5 s ..= 3600 s; default 30 s): how soon the broker notices a dead
    /// gateway and publishes its last will.
    pub keepalive: Duration,
    /// Telemetry messages that may wait for the broker (16 ..= 100 000; default 1024); older
    /// ones are dropped first (and counted). Safety events and command answers have their own
    /// queues and are never dropped for telemetry.
    pub queue: usize,
    /// How often every channel is published (100 ms ..= 1 h; default 5 s). State changes and
    /// events are published as soon as the loop publishes them.
    pub publish_every: Duration,
    /// MQTT 5 message expiry of the retained state messages (≥ the publish period, ≤ 1 day;
    /// default 3 × the publish period): a gateway that stops publishing leaves no stale value
    /// in the broker for longer than this.
    pub expiry: Duration,
    /// Publish Home Assistant MQTT discovery (device-based schema) for the site's sensors.
    pub home_assistant: bool,
    /// Telemetry batches kept while the broker is unreachable (10 ..= 1 000 000; default
    /// 20 000, 28 h at the default period), in the database when the gateway has one; when
    /// full the two oldest are merged (averaged), nothing is dropped outright.
    pub buffer_rows: usize,
    /// Batches per resent slice on `<prefix>/<site>/history` (1 ..= 1000; default 100; a
    /// slice also stops at 64 KiB of JSON).
    pub slice_rows: usize,
    /// The largest random delay before the gap is resent after a reconnection (0 ..= 3600 s;
    /// default 60 s): a fleet coming back does not resend all at once.
    pub resend_jitter: Duration,
}

/// How many times the publish period a retained value lives by default.
pub const DEFAULT_EXPIRY_PERIODS: u32 = 3;

impl MqttConfig {
    /// Default keep-alive.
    pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(30);
    /// Default telemetry queue bound.
    pub const DEFAULT_QUEUE: usize = 1024;
    /// Default publish period.
    pub const DEFAULT_PUBLISH_EVERY: Duration = Duration::from_secs(5);
    /// Default bound of the outage buffer.
    pub const DEFAULT_BUFFER_ROWS: usize = 20_000;
    /// Default batches per resent slice.
    pub const DEFAULT_SLICE_ROWS: usize = 100;
    /// Default largest random delay before the resend.
    pub const DEFAULT_RESEND_JITTER: Duration = Duration::from_secs(60);

    /// A configuration with the defaults: client id `ems-<site>`, no TLS files, keep-alive
    /// 30 s, queue 1024, publish every 5 s, expiry 15 s, no Home Assistant discovery.
    ///
    /// # Errors
    /// [`MqttConfigError`] for a bad URL, prefix or site id.
    pub fn new(url: &str, prefix: &str, site: &str) -> Result<Self, MqttConfigError> {
        let c = Self {
            broker: BrokerUrl::parse(url)?,
            prefix: prefix.to_owned(),
            site: site.to_owned(),
            client_id: format!("ems-{site}"),
            tls: None,
            keepalive: Self::DEFAULT_KEEPALIVE,
            queue: Self::DEFAULT_QUEUE,
            publish_every: Self::DEFAULT_PUBLISH_EVERY,
            expiry: Self::DEFAULT_PUBLISH_EVERY * DEFAULT_EXPIRY_PERIODS,
            home_assistant: false,
            buffer_rows: Self::DEFAULT_BUFFER_ROWS,
            slice_rows: Self::DEFAULT_SLICE_ROWS,
            resend_jitter: Self::DEFAULT_RESEND_JITTER,
        };
        if c.broker.tls {
            // `validate` would ask for the CA; the caller adds it next.
            c.validate_names()?;
            return Ok(c);
        }
        c.validate()?;
        Ok(c)
    }

    /// `<prefix>/<site>`: the root of every topic of this site.
    #[must_use]
    pub fn root(&self) -> String {
        format!("{}/{}", self.prefix, self.site)
    }

    fn validate_names(&self) -> Result<(), MqttConfigError> {
        let p = &self.prefix;
        if p.is_empty() || p.starts_with('$') || p.split('/').any(str::is_empty) || has_wildcard_or_nul(p) {
            return Err(MqttConfigError::new(
                "prefix",
                p,
                "must be one or more non-empty topic levels without +, #, NUL or a leading $",
            ));
        }
        let s = &self.site;
        if s.is_empty() || s.contains('/') || has_wildcard_or_nul(s) {
            return Err(MqttConfigError::new(
                "site",
                s,
                "must be one non-empty topic level without /, +, # or NUL",
            ));
        }
        let id = &self.client_id;
        if id.is_empty() || id.len() > 128 || id.contains('\0') {
            return Err(MqttConfigError::new("client_id", id, "must be 1..=128 bytes without NUL"));
        }
        Ok(())
    }

    /// Check every value.
    ///
    /// # Errors
    /// The first bad value, named with its key.
    pub fn validate(&self) -> Result<(), MqttConfigError> {
        self.validate_names()?;
        match (&self.tls, self.broker.tls) {
            (None, true) => {
                return Err(MqttConfigError::new(
                    "ca_file",
                    &self.broker.to_string(),
                    "mqtts:// needs ca_file (the CA the broker's certificate chains to)",
                ))
            }
            (Some(_), false) => {
                return Err(MqttConfigError::new(
                    "ca_file",
                    &self.broker.to_string(),
                    "TLS files are given but the URL is mqtt:// (use mqtts://)",
                ))
            }
            _ => {}
        }
        let secs = |d: Duration| format!("{} s", d.as_secs_f64());
        if !(Duration::from_secs(5)..=Duration::from_secs(3600)).contains(&self.keepalive) {
            return Err(MqttConfigError::new("keepalive_s", &secs(self.keepalive), "must be 5..=3600 s"));
        }
        if !(16..=100_000).contains(&self.queue) {
            return Err(MqttConfigError::new("queue", &self.queue.to_string(), "must be 16..=100000"));
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&self.publish_every) {
            return Err(MqttConfigError::new(
                "publish_every_s",
                &secs(self.publish_every),
                "must be 0.1..=3600 s",
            ));
        }
        if self.expiry < self.publish_every
            || self.expiry > Duration::from_secs(86_400)
            || self.expiry_secs() == 0
        {
            return Err(MqttConfigError::new(
                "expiry_s",
                &secs(self.expiry),
                "must be at least the publish period, at least 1 s and at most 86400 s",
            ));
        }
        if !(10..=1_000_000).contains(&self.buffer_rows) {
            return Err(MqttConfigError::new(
                "buffer_rows",
                &self.buffer_rows.to_string(),
                "must be 10..=1000000",
            ));
        }
        if !(1..=1000).contains(&self.slice_rows) {
            return Err(MqttConfigError::new("slice_rows", &self.slice_rows.to_string(), "must be 1..=1000"));
        }
        if self.resend_jitter > Duration::from_secs(3600) {
            return Err(MqttConfigError::new(
                "resend_jitter_s",
                &secs(self.resend_jitter),
                "must be 0..=3600 s",
            ));
        }
        Ok(())
    }

    /// The message expiry interval in whole seconds (MQTT 5 counts seconds), rounded up.
    #[must_use]
    pub fn expiry_secs(&self) -> u32 {
        let s = self.expiry.as_secs() + u64::from(self.expiry.subsec_nanos() > 0);
        u32::try_from(s).unwrap_or(u32::MAX)
    }
}

fn has_wildcard_or_nul(s: &str) -> bool {
    s.contains(['+', '#', '\0'])
}

/// A bad MQTT setting: the key, the value and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("mqtt.{key}: {value:?} {why}")]
pub struct MqttConfigError {
    /// The key (`url`, `prefix`, ...).
    pub key: &'static str,
    /// The value as given.
    pub value: String,
    /// Why it is refused.
    pub why: String,
}

impl MqttConfigError {
    fn new(key: &'static str, value: &str, why: &str) -> Self {
        Self { key, value: value.to_owned(), why: why.to_owned() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_default_ports() {
        let u = BrokerUrl::parse("mqtt://broker.local").unwrap();
        assert_eq!((u.tls, u.host.as_str(), u.port), (false, "broker.local", 1883));
        let u = BrokerUrl::parse("mqtts://10.0.0.1:8884").unwrap();
        assert_eq!((u.tls, u.host.as_str(), u.port), (true, "10.0.0.1", 8884));
        let u = BrokerUrl::parse("mqtt://[::1]:1884").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 1884));
        assert_eq!(u.to_string(), "mqtt://[::1]:1884");
        for bad in
            ["http://x", "mqtt://", "mqtt://h:0", "mqtt://h:99999", "mqtt://u@h", "mqtt://h/x", "mqtt://[::1"]
        {
            let e = BrokerUrl::parse(bad).unwrap_err();
            assert_eq!(e.key, "url", "{bad}");
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    #[test]
    fn names_and_ranges_are_checked() {
        let c = MqttConfig::new("mqtt://127.0.0.1:1883", "ems", "sim").unwrap();
        assert_eq!((c.root().as_str(), c.client_id.as_str(), c.expiry_secs()), ("ems/sim", "ems-sim", 15));
        for (prefix, site, key) in [
            ("", "s", "prefix"),
            ("a//b", "s", "prefix"),
            ("$SYS", "s", "prefix"),
            ("e+", "s", "prefix"),
            ("ems", "a/b", "site"),
            ("ems", "#", "site"),
            ("ems", "", "site"),
        ] {
            assert_eq!(MqttConfig::new("mqtt://h", prefix, site).unwrap_err().key, key, "{prefix} {site}");
        }
        let mut c = MqttConfig::new("mqtt://h", "a/b", "s").unwrap();
        c.expiry = Duration::from_secs(1);
        assert_eq!(c.validate().unwrap_err().key, "expiry_s");
        c.expiry = Duration::from_secs(60);
        c.queue = 3;
        assert_eq!(c.validate().unwrap_err().key, "queue");
        c.queue = 16;
        c.buffer_rows = 5;
        let e = c.validate().unwrap_err();
        assert_eq!((e.key, e.value.as_str()), ("buffer_rows", "5"));
        c.buffer_rows = 10;
        c.slice_rows = 0;
        assert_eq!(c.validate().unwrap_err().key, "slice_rows");
        c.slice_rows = 1;
        c.resend_jitter = Duration::from_secs(3601);
        assert_eq!(c.validate().unwrap_err().key, "resend_jitter_s");
        c.resend_jitter = Duration::ZERO;
        assert!(c.validate().is_ok());
        let c = MqttConfig::new("mqtts://h", "ems", "s").unwrap();
        assert_eq!(c.validate().unwrap_err().key, "ca_file");
    }
}
