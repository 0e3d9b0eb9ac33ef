//! `[mqtt]`: the MQTT link (issue #14) — broker URL, topic prefix and site id, client id, TLS
//! files, keep-alive, outbox bound, publish period, message expiry, Home Assistant discovery,
//! and the outage buffer (`buffer_rows`, `slice_rows`, `resend_jitter_s`).
//! The values are checked by `ems_api::mqtt::MqttConfig::validate`; errors are placed at the
//! line of the key they name.

use super::errors::{ConfigError, Ctx};
use ems_api::mqtt::{MqttConfig, MqttConfigError, TlsFiles};
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;
use toml::Spanned;

/// `[mqtt]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MqttSection {
    /// `mqtt://HOST[:PORT]` or `mqtts://HOST[:PORT]`.
    pub url: Spanned<String>,
    /// First topic level(s) (default `ems`).
    pub prefix: Option<Spanned<String>>,
    /// The site id, one topic level (default: `[site] name` with every character that is not
    /// a letter, digit, `-` or `_` replaced by `_`).
    pub site_id: Option<Spanned<String>>,
    /// MQTT client id (default `ems-<site id>`).
    pub client_id: Option<Spanned<String>>,
    /// `mqtts://`: the CA certificate (PEM, relative to this file).
    pub ca_file: Option<Spanned<String>>,
    /// `mqtts://`: a client certificate (PEM), with `key_file`.
    pub cert_file: Option<Spanned<String>>,
    /// `mqtts://`: the client certificate's private key (PEM).
    pub key_file: Option<Spanned<String>>,
    /// Keep-alive, s (5..=3600, default 30).
    pub keepalive_s: Option<Spanned<i64>>,
    /// Telemetry messages that may wait for the broker (16..=100000, default 1024).
    pub queue: Option<Spanned<i64>>,
    /// Publish period of every channel, s (0.1..=3600, default 5).
    pub publish_every_s: Option<Spanned<f64>>,
    /// Message expiry of the retained state, s (≥ the period, ≤ 86400; default 3 × period).
    pub expiry_s: Option<Spanned<f64>>,
    /// Home Assistant MQTT discovery (default false).
    pub home_assistant: Option<Spanned<bool>>,
    /// Telemetry batches kept during a broker outage (10..=1000000, default 20000).
    pub buffer_rows: Option<Spanned<i64>>,
    /// Batches per resent slice on `<prefix>/<site>/history` (1..=1000, default 100).
    pub slice_rows: Option<Spanned<i64>>,
    /// Largest random delay before the resend after a reconnection, s (0..=3600, default 60).
    pub resend_jitter_s: Option<Spanned<f64>>,
}

/// `[mqtt]`, validated. `site_name`: `[site] name`, the default site id.
pub(super) fn mqtt(
    ctx: &Ctx<'_>,
    path: &Path,
    m: &MqttSection,
    site_name: &str,
) -> Result<MqttConfig, ConfigError> {
    let site = m.site_id.as_ref().map_or_else(
        || {
            site_name
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
                .collect()
        },
        |s| s.get_ref().clone(),
    );
    let prefix = m.prefix.as_ref().map_or_else(|| "ems".to_owned(), |p| p.get_ref().clone());
    let placed = |e: MqttConfigError| {
        let v = match e.key {
            "url" => Some(&m.url),
            "prefix" => m.prefix.as_ref(),
            "site" => m.site_id.as_ref(),
            "client_id" => m.client_id.as_ref(),
            "ca_file" => m.ca_file.as_ref().or(Some(&m.url)),
            _ => None,
        };
        let field = if e.key == "site" { "mqtt.site_id".to_owned() } else { format!("mqtt.{}", e.key) };
        match v {
            Some(v) => ctx.err(&field, v, format!("{:?} {}", e.value, e.why)),
            None => ctx.err_at_path(&field, format!("{:?} {}", e.value, e.why)),
        }
    };
    let mut c = MqttConfig::new(m.url.get_ref(), &prefix, &site).map_err(placed)?;
    if let Some(id) = &m.client_id {
        c.client_id.clone_from(id.get_ref());
    }
    let file = |v: &Spanned<String>| super::paths::resolve(path, v.get_ref());
    c.tls = match (&m.ca_file, &m.cert_file, &m.key_file) {
        (None, None, None) => None,
        (Some(ca), cert, key) => {
            let client = match (cert, key) {
                (Some(c), Some(k)) => Some((file(c), file(k))),
                (None, None) => None,
                (Some(c), None) => {
                    return Err(ctx.err("mqtt.key_file", c, "cert_file needs key_file".to_owned()))
                }
                (None, Some(k)) => {
                    return Err(ctx.err("mqtt.cert_file", k, "key_file needs cert_file".to_owned()))
                }
            };
            Some(TlsFiles { ca: file(ca), client })
        }
        (None, Some(v), _) | (None, None, Some(v)) => {
            return Err(ctx.err(
                "mqtt.ca_file",
                v,
                "a client certificate needs ca_file (and mqtts://)".to_owned(),
            ))
        }
    };
    if let Some(v) = &m.keepalive_s {
        c.keepalive = Duration::from_secs(ctx.int("mqtt.keepalive_s", v, 5, 3600, " s")?);
    }
    if let Some(v) = &m.queue {
        // 16..=100000 fits any usize.
        c.queue =
            usize::try_from(ctx.int("mqtt.queue", v, 16, 100_000, "")?).unwrap_or(MqttConfig::DEFAULT_QUEUE);
    }
    if let Some(v) = &m.publish_every_s {
        c.publish_every = Duration::from_secs_f64(ctx.number("mqtt.publish_every_s", v, 0.1, 3600.0, "s")?);
        c.expiry = c.publish_every * ems_api::mqtt::config::DEFAULT_EXPIRY_PERIODS;
    }
    if let Some(v) = &m.expiry_s {
        c.expiry = Duration::from_secs_f64(ctx.number("mqtt.expiry_s", v, 1.0, 86_400.0, "s")?);
        if c.expiry < c.publish_every {
            return Err(ctx.err(
                "mqtt.expiry_s",
                v,
                format!("{} s is shorter than publish_every_s", v.get_ref()),
            ));
        }
    }
    c.home_assistant = m.home_assistant.as_ref().is_some_and(|h| *h.get_ref());
    if let Some(v) = &m.buffer_rows {
        // 10..=1000000 fits any usize.
        c.buffer_rows = usize::try_from(ctx.int("mqtt.buffer_rows", v, 10, 1_000_000, "")?)
            .unwrap_or(MqttConfig::DEFAULT_BUFFER_ROWS);
    }
    if let Some(v) = &m.slice_rows {
        c.slice_rows = usize::try_from(ctx.int("mqtt.slice_rows", v, 1, 1000, "")?)
            .unwrap_or(MqttConfig::DEFAULT_SLICE_ROWS);
    }
    if let Some(v) = &m.resend_jitter_s {
        c.resend_jitter = Duration::from_secs_f64(ctx.number("mqtt.resend_jitter_s", v, 0.0, 3600.0, "s")?);
    }
    c.validate().map_err(placed)?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use crate::config::{parse, ConfigError, SiteConfig};
    use std::path::Path;

    fn with(extra: &str) -> Result<SiteConfig, ConfigError> {
        let profile = concat!(env!("CARGO_MANIFEST_DIR"), "/../../devices/profiles/eastron-sdm630.toml");
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/site.toml"))
            .unwrap()
            .replace("../devices/profiles/eastron-sdm630.toml", profile);
        let api = "[api]\n[[api.tokens]]\nname = \"ops\"\nrole = \"operator\"\nsha256 = \"1d1e0f590d004fb7e08f456946aeac2f8035a23649d852a319291c45aa4a7410\"\n";
        let api = if extra.is_empty() || text.contains("\n[api]") { "" } else { api };
        parse(Path::new("/site/site.toml"), &format!("{text}\n{api}{extra}"))
    }

    #[test]
    fn mqtt_section_parses_with_defaults_and_tls_files() {
        let c = with("[mqtt]\nurl = \"mqtt://127.0.0.1:1883\"\n").unwrap().mqtt.unwrap();
        assert_eq!((c.prefix.as_str(), c.broker.port, c.expiry.as_secs()), ("ems", 1883, 15));
        assert!(!c.site.is_empty() && !c.site.contains(' '));
        let c = with("[mqtt]\nurl = \"mqtts://broker:8883\"\nprefix = \"fleet/eu\"\nsite_id = \"s1\"\nca_file = \"ca.pem\"\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\npublish_every_s = 1\nexpiry_s = 10\nhome_assistant = true\nbuffer_rows = 500\nslice_rows = 20\nresend_jitter_s = 2.5\n")
            .unwrap()
            .mqtt
            .unwrap();
        assert_eq!(c.root(), "fleet/eu/s1");
        assert_eq!(c.tls.unwrap().ca, Path::new("/site/ca.pem"));
        assert_eq!((c.expiry.as_secs(), c.home_assistant), (10, true));
        assert_eq!((c.buffer_rows, c.slice_rows, c.resend_jitter.as_millis()), (500, 20, 2500));
        assert!(with("").unwrap().mqtt.is_none());
    }

    #[test]
    fn mqtt_errors_name_the_key_and_value() {
        let err = |s: &str| with(s).unwrap_err().to_string();
        let e = err("[mqtt]\nurl = \"http://x\"\n");
        assert!(e.contains("mqtt.url") && e.contains("http://x") && e.contains("line"), "{e}");
        let e = err("[mqtt]\nurl = \"mqtts://x\"\n");
        assert!(e.contains("mqtt.ca_file"), "{e}");
        let e = err("[mqtt]\nurl = \"mqtt://x\"\nsite_id = \"a/b\"\n");
        assert!(e.contains("mqtt.site_id") && e.contains("a/b"), "{e}");
        let e = err("[mqtt]\nurl = \"mqtt://x\"\npublish_every_s = 10\nexpiry_s = 5\n");
        assert!(e.contains("mqtt.expiry_s"), "{e}");
        let e = err("[mqtt]\nurl = \"mqtt://x\"\nqueue = 2\n");
        assert!(e.contains("mqtt.queue") && e.contains('2'), "{e}");
        let e = err("[mqtt]\nurl = \"mqtt://x\"\nbuffer_rows = 3\n");
        assert!(e.contains("mqtt.buffer_rows") && e.contains('3'), "{e}");
        let e = err("[mqtt]\nurl = \"mqtt://x\"\nresend_jitter_s = 7200\n");
        assert!(e.contains("mqtt.resend_jitter_s") && e.contains("7200"), "{e}");
    }
}
