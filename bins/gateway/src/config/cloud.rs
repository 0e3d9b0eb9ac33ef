//! `[cloud]`: the cloud link (issue #14 items 3 and 4; `ems_api::cloud`).
//!
//! ```toml
//! [cloud]
//! url = "https://cloud.example/push"   # http:// or https://
//! key = "device-key"                   # optional
//! key_in = "header"                    # "header" (X-Device-Key) | "query" (?key=)
//! period_s = 15                        # 1..=3600
//! timeout_s = 10                       # (0, 4 × period]
//! buffer_rows = 20000                  # 10..=1000000 outbox entries
//! slice_rows = 100                     # 1..=1000 entries per resend request
//! resend_jitter_s = 60                 # 0..=3600: random delay before the resend starts
//! ```
//!
//! What the cloud asks for goes through the REST API's rules, so `[cloud]` needs `[api]`.

use super::errors::{ConfigError, Ctx};
use ems_api::cloud::{CloudConfig, KeyIn};
use serde::Deserialize;
use std::time::Duration;
use toml::Spanned;

/// `[cloud]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CloudSection {
    /// The push URL.
    pub url: Spanned<String>,
    /// The device key.
    pub key: Option<Spanned<String>>,
    /// `header` or `query`.
    pub key_in: Option<Spanned<String>>,
    /// Push period, s.
    pub period_s: Option<Spanned<f64>>,
    /// One request's timeout, s.
    pub timeout_s: Option<Spanned<f64>>,
    /// The outbox's bound.
    pub buffer_rows: Option<Spanned<i64>>,
    /// Entries per resend request.
    pub slice_rows: Option<Spanned<i64>>,
    /// The largest random delay before the resend, s.
    pub resend_jitter_s: Option<Spanned<f64>>,
}

pub(super) fn cloud(ctx: &Ctx<'_>, c: &CloudSection) -> Result<CloudConfig, ConfigError> {
    let mut cfg = CloudConfig::new(c.url.get_ref().trim());
    if !(cfg.url.starts_with("http://") || cfg.url.starts_with("https://")) || cfg.url.len() < 10 {
        return Err(ctx.err(
            "cloud.url",
            &c.url,
            format!("'{}' is not an http:// or https:// URL", c.url.get_ref()),
        ));
    }
    if let Some(k) = &c.key {
        if k.get_ref().is_empty() {
            return Err(ctx.err(
                "cloud.key",
                k,
                "an empty key (leave `key` out if the cloud needs none)".into(),
            ));
        }
        cfg.key = Some(k.get_ref().clone());
    }
    if let Some(v) = &c.key_in {
        cfg.key_in = match v.get_ref().as_str() {
            "header" => KeyIn::Header,
            "query" => KeyIn::Query,
            other => {
                return Err(ctx.err("cloud.key_in", v, format!("'{other}' is not one of header, query")))
            }
        };
    }
    if let Some(p) = ctx.opt("cloud.period_s", c.period_s.as_ref(), 1.0, 3600.0, "s")? {
        cfg.period = Duration::from_secs_f64(p);
    }
    if let Some(v) = &c.timeout_s {
        let max = 4.0 * cfg.period.as_secs_f64();
        let t = ctx.number("cloud.timeout_s", v, 0.1, max, "s")?;
        cfg.timeout = Duration::from_secs_f64(t);
    }
    if let Some(v) = &c.buffer_rows {
        cfg.buffer_rows =
            usize::try_from(ctx.int("cloud.buffer_rows", v, 10, 1_000_000, "")?).unwrap_or(usize::MAX);
    }
    if let Some(v) = &c.slice_rows {
        cfg.slice_rows = usize::try_from(ctx.int("cloud.slice_rows", v, 1, 1000, "")?).unwrap_or(1000);
    }
    if let Some(j) = ctx.opt("cloud.resend_jitter_s", c.resend_jitter_s.as_ref(), 0.0, 3600.0, "s")? {
        cfg.resend_jitter = Duration::from_secs_f64(j);
    }
    cfg.validate().map_err(|m| ctx.err_at_path("cloud", m))?;
    Ok(cfg)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code
mod tests {
    use crate::config::parse;
    use std::path::Path;

    fn site(section: &str) -> String {
        let profile = concat!(env!("CARGO_MANIFEST_DIR"), "/../../devices/profiles/eastron-sdm630.toml");
        let base = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/site.toml"))
            .unwrap()
            .replace("../devices/profiles/eastron-sdm630.toml", profile);
        format!("{base}\n{section}")
    }

    const API: &str = "[api]\nlisten = \"127.0.0.1:8080\"\n[[api.tokens]]\nname = \"ops\"\nrole = \"operator\"\nsha256 = \"1d1e0f590d004fb7e08f456946aeac2f8035a23649d852a319291c45aa4a7410\"\n";

    #[test]
    fn a_cloud_section_is_read_and_bad_values_are_named() {
        let good =
            "[cloud]\nurl = \"http://127.0.0.1:9000/push\"\nkey = \"k\"\nkey_in = \"query\"\nperiod_s = 30\n";
        let e = parse(Path::new("site.toml"), &site(good)).unwrap_err().to_string();
        assert!(e.contains("[cloud] needs [api]"), "{e}");
        let c = parse(Path::new("site.toml"), &site(&format!("{API}{good}"))).unwrap().cloud.unwrap();
        assert_eq!(c.period.as_secs(), 30);
        assert_eq!(c.key.as_deref(), Some("k"));
        for (from, to, want) in [
            (
                "http://127.0.0.1:9000/push",
                "ftp://x",
                "cloud.url: 'ftp://x' is not an http:// or https:// URL",
            ),
            ("period_s = 30", "period_s = 0.2", "cloud.period_s: 0.2 s is outside 1..=3600 s"),
            ("key_in = \"query\"", "key_in = \"body\"", "cloud.key_in: 'body' is not one of header, query"),
        ] {
            let text = site(&format!("{API}{}", good.replace(from, to)));
            let e = parse(Path::new("site.toml"), &text).unwrap_err().to_string();
            assert!(e.contains(want), "{e}\nwanted: {want}");
        }
    }
}
