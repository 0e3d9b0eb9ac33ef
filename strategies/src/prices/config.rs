//! One `[[economics.prices]]` entry of the site configuration.

use super::awattar::{AwattarSource, AWATTAR_DEFAULT_URL};
use super::entsoe::{EntsoeSource, Token, ENTSOE_DEFAULT_URL, ENTSOE_TOKEN_ENV};
use super::error::ConfigError;
use super::file::FileSource;
use super::push::PushHandle;
use super::{PriceSource, SourceKind};
use jiff::SignedDuration;
use std::path::{Path, PathBuf};

/// Refresh interval of the web sources when none is configured.
pub const DEFAULT_REFRESH_MINUTES: u32 = 60;

/// Longest accepted refresh interval: a day (day-ahead prices change daily).
const MAX_REFRESH_MINUTES: u32 = 1_440;

/// One price source as configured:
///
/// ```toml
/// [[economics.prices]]          # first entry = preferred source
/// kind = "entsoe"               # "awattar" | "entsoe" | "file" | "push"
/// zone = "10Y1001A1001A82H"     # entsoe: bidding-zone EIC code (required)
/// token_env = "ENTSOE_TOKEN"    # entsoe: variable holding the token (default), or token = "…"
/// # url = "https://web-api.tp.entsoe.eu/api"   # awattar / entsoe base URL (defaults shown
/// #                                            #   in `AWATTAR_DEFAULT_URL`, `ENTSOE_DEFAULT_URL`)
/// refresh_minutes = 60          # awattar / entsoe default 60; file default 0 = every poll
///
/// [[economics.prices]]
/// kind = "file"
/// path = "prices.csv"           # relative to the configuration's directory
/// ```
///
/// Unknown fields are refused by serde; fields that do not apply to the `kind` are refused by
/// [`SourceConfig::build`], naming the field.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Which source.
    pub kind: SourceKind,
    /// Base URL (awattar, entsoe).
    #[serde(default)]
    pub url: Option<String>,
    /// CSV file (file); relative paths are resolved against the builder's base directory.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// The ENTSO-E security token itself (entsoe). Prefer `token_env`: a token in a file is
    /// easily leaked.
    #[serde(default)]
    pub token: Option<Token>,
    /// Name of the environment variable holding the ENTSO-E token (entsoe; default
    /// `ENTSOE_TOKEN`).
    #[serde(default)]
    pub token_env: Option<String>,
    /// Bidding-zone EIC code (entsoe, required).
    #[serde(default)]
    pub zone: Option<String>,
    /// Minutes between fetches (awattar, entsoe: default 60; file: default 0, every poll).
    #[serde(default)]
    pub refresh_minutes: Option<u32>,
    /// Seconds between fetches, instead of `refresh_minutes` (1..=86400): for a fast local feed
    /// (and the tests). After a failure the retries then come after 1, 2, 5, 10, 15 times this
    /// interval instead of as many minutes.
    #[serde(default)]
    pub refresh_seconds: Option<u32>,
}

impl SourceConfig {
    /// Build the source. `base_dir` resolves a relative `path`; `push` is the feed's one push
    /// handle, which a `push` entry reads. An entsoe token is looked up now (from `token`, else
    /// the variable named by `token_env`).
    ///
    /// # Errors
    /// [`ConfigError`] naming the field and value: a required field missing (`zone`, `path`, the
    /// token), a field that does not apply to the kind, a URL that is not http(s), a zone that
    /// is not a 16-character EIC code, a refresh interval outside 1..=1440 minutes (0 allowed
    /// for file), an unset or empty token variable.
    pub fn build(&self, base_dir: &Path, push: &PushHandle) -> Result<Box<dyn PriceSource>, ConfigError> {
        self.check_fields()?;
        self.refresh()?;
        match self.kind {
            SourceKind::File => {
                let path = self.path.as_ref().ok_or_else(|| missing("path", self.kind))?;
                Ok(Box::new(FileSource::new(base_dir.join(path))))
            }
            SourceKind::Awattar => Ok(Box::new(AwattarSource::new(self.url(AWATTAR_DEFAULT_URL)?))),
            SourceKind::Entsoe => {
                let zone = self.zone.as_deref().ok_or_else(|| missing("zone", self.kind))?;
                let eic = zone.len() == 16
                    && zone.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-');
                if !eic {
                    return Err(ConfigError::new(
                        "zone",
                        format!("\"{zone}\" is not a 16-character EIC code"),
                    ));
                }
                let url = self.url(ENTSOE_DEFAULT_URL)?;
                if url.starts_with("http://") && !is_loopback(&url) {
                    return Err(ConfigError::new(
                        "url",
                        format!("\"{url}\": the token would travel in clear text; use https://"),
                    ));
                }
                Ok(Box::new(EntsoeSource::new(url, zone, self.token()?)))
            }
            SourceKind::Push => Ok(Box::new(push.source())),
        }
    }

    /// How often the source is fetched: `refresh_minutes`, else 60 min for the web sources and
    /// zero (every poll) for file and push.
    ///
    /// # Errors
    /// [`ConfigError`] for `refresh_minutes` outside 1..=1440 (0 is allowed for file).
    pub fn refresh(&self) -> Result<SignedDuration, ConfigError> {
        if let Some(seconds) = self.refresh_seconds {
            if self.refresh_minutes.is_some() {
                return Err(ConfigError::new("refresh_seconds", format!("{seconds}: give refresh_minutes or refresh_seconds, not both")));
            }
            if !(1..=MAX_REFRESH_MINUTES * 60).contains(&seconds) {
                return Err(ConfigError::new("refresh_seconds", format!("{seconds} is outside 1..={}", MAX_REFRESH_MINUTES * 60)));
            }
            return Ok(SignedDuration::from_secs(i64::from(seconds)));
        }
        let default = match self.kind {
            SourceKind::Awattar | SourceKind::Entsoe => DEFAULT_REFRESH_MINUTES,
            SourceKind::File | SourceKind::Push => 0,
        };
        let minutes = self.refresh_minutes.unwrap_or(default);
        let lowest = u32::from(self.kind != SourceKind::File || self.refresh_minutes.is_none());
        if self.refresh_minutes.is_some() && !(lowest..=MAX_REFRESH_MINUTES).contains(&minutes) {
            return Err(ConfigError::new(
                "refresh_minutes",
                format!("{minutes} is outside {lowest}..={MAX_REFRESH_MINUTES}"),
            ));
        }
        Ok(SignedDuration::from_mins(i64::from(minutes)))
    }

    fn check_fields(&self) -> Result<(), ConfigError> {
        let k = self.kind;
        let web = matches!(k, SourceKind::Awattar | SourceKind::Entsoe);
        let given = [
            ("url", self.url.is_some(), web),
            ("path", self.path.is_some(), k == SourceKind::File),
            ("token", self.token.is_some(), k == SourceKind::Entsoe),
            ("token_env", self.token_env.is_some(), k == SourceKind::Entsoe),
            ("zone", self.zone.is_some(), k == SourceKind::Entsoe),
            ("refresh_minutes", self.refresh_minutes.is_some(), k != SourceKind::Push),
            ("refresh_seconds", self.refresh_seconds.is_some(), k != SourceKind::Push),
        ];
        for (field, present, applies) in given {
            if present && !applies {
                return Err(ConfigError::new(field, format!("does not apply to kind = \"{k}\"")));
            }
        }
        if self.token.is_some() && self.token_env.is_some() {
            return Err(ConfigError::new("token_env", "give either token or token_env, not both"));
        }
        Ok(())
    }

    fn url(&self, default: &str) -> Result<String, ConfigError> {
        let url = self.url.as_deref().unwrap_or(default);
        if url.starts_with("https://") || url.starts_with("http://") {
            Ok(url.to_owned())
        } else {
            Err(ConfigError::new("url", format!("\"{url}\" is not an http:// or https:// URL")))
        }
    }

    fn token(&self) -> Result<Token, ConfigError> {
        if let Some(token) = &self.token {
            if token.expose().trim().is_empty() {
                return Err(ConfigError::new("token", "is empty"));
            }
            return Ok(token.clone());
        }
        let var = self.token_env.as_deref().unwrap_or(ENTSOE_TOKEN_ENV);
        match std::env::var(var) {
            Ok(t) if !t.trim().is_empty() => Ok(Token::new(t.trim())),
            Ok(_) => Err(ConfigError::new("token_env", format!("the variable {var} is empty"))),
            Err(_) => Err(ConfigError::new(
                "token_env",
                format!("the variable {var} is not set (and no token given)"),
            )),
        }
    }
}

/// Whether an `http://` URL points at this machine (tests, a local proxy).
fn is_loopback(url: &str) -> bool {
    let authority = url.trim_start_matches("http://").split(['/', '?']).next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    };
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn missing(field: &'static str, kind: SourceKind) -> ConfigError {
    ConfigError::new(field, format!("missing for kind = \"{kind}\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> SourceConfig {
        toml::from_str(toml_text).unwrap()
    }

    fn build_err(toml_text: &str) -> String {
        parse(toml_text).build(Path::new("/site"), &PushHandle::new()).unwrap_err().at(0).to_string()
    }

    #[test]
    fn missing_and_misplaced_fields_are_named() {
        assert_eq!(
            build_err("kind = \"entsoe\"\ntoken = \"t\""),
            "economics.prices[0].zone: missing for kind = \"entsoe\""
        );
        assert_eq!(build_err("kind = \"file\""), "economics.prices[0].path: missing for kind = \"file\"");
        assert_eq!(
            build_err("kind = \"awattar\"\nzone = \"10Y1001A1001A82H\""),
            "economics.prices[0].zone: does not apply to kind = \"awattar\""
        );
        assert_eq!(
            build_err("kind = \"awattar\"\nurl = \"ftp://x\""),
            "economics.prices[0].url: \"ftp://x\" is not an http:// or https:// URL"
        );
        assert_eq!(
            build_err("kind = \"awattar\"\nrefresh_minutes = 0"),
            "economics.prices[0].refresh_minutes: 0 is outside 1..=1440"
        );
        assert!(build_err("kind = \"entsoe\"\nzone = \"DE\"\ntoken = \"t\"").contains("zone: \"DE\" is not"));
        assert_eq!(
            build_err("kind = \"awattar\"\nrefresh_seconds = 0"),
            "economics.prices[0].refresh_seconds: 0 is outside 1..=86400"
        );
        assert!(build_err("kind = \"awattar\"\nrefresh_seconds = 5\nrefresh_minutes = 5").contains("not both"));
        assert_eq!(parse("kind = \"awattar\"\nrefresh_seconds = 5").refresh().unwrap(), SignedDuration::from_secs(5));
        assert_eq!(
            build_err("kind = \"entsoe\"\nzone = \"10Y1001A1001A82H\"\ntoken = \"t\"\nurl = \"http://example.org/api\""),
            "economics.prices[0].url: \"http://example.org/api\": the token would travel in clear text; use https://"
        );
        assert!(is_loopback("http://127.0.0.1:8080/api") && is_loopback("http://localhost/api"));
        assert!(is_loopback("http://[::1]:80/api") && !is_loopback("http://127.example.org/api"));
        assert!(!is_loopback("http://example.org:80/api"));
        assert!(toml::from_str::<SourceConfig>("kind = \"file\"\npaht = \"x\"").is_err());
        assert!(toml::from_str::<SourceConfig>("kind = \"smard\"").is_err());
    }

    #[test]
    fn token_from_an_unset_variable_is_refused_without_leaking() {
        let e = build_err(
            "kind = \"entsoe\"\nzone = \"10Y1001A1001A82H\"\ntoken_env = \"EMS_TEST_TOKEN_THAT_IS_NEVER_SET\"",
        );
        assert_eq!(
            e,
            "economics.prices[0].token_env: the variable EMS_TEST_TOKEN_THAT_IS_NEVER_SET is not set (and no token given)"
        );
        let c = parse("kind = \"entsoe\"\nzone = \"10Y1001A1001A82H\"\ntoken = \"hush\"");
        assert!(!format!("{c:?}").contains("hush"));
        let source = c.build(Path::new("/"), &PushHandle::new()).unwrap();
        assert_eq!(source.kind(), SourceKind::Entsoe);
        assert!(!format!("{source:?}").contains("hush"));
    }

    #[test]
    fn defaults_and_relative_paths() {
        let c = parse("kind = \"file\"\npath = \"p/prices.csv\"");
        assert_eq!(c.refresh().unwrap(), SignedDuration::ZERO);
        let s = c.build(Path::new("/site"), &PushHandle::new()).unwrap();
        assert!(format!("{s:?}").contains("/site/p/prices.csv"));
        assert_eq!(parse("kind = \"awattar\"").refresh().unwrap(), SignedDuration::from_hours(1));
        assert_eq!(
            parse("kind = \"entsoe\"\nrefresh_minutes = 15").refresh().unwrap(),
            SignedDuration::from_mins(15)
        );
    }
}
