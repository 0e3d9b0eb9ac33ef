//! The blocking HTTP GET shared by the web price sources.

use super::error::PriceError;
use super::SourceKind;
use std::sync::Arc;
use std::time::Duration;

/// Default limit for connecting (TCP + TLS).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default limit for each read from the server.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read; a day-ahead document for two days is a few tens of kB.
const BODY_LIMIT: u64 = 4 * 1024 * 1024;
/// How much of an error answer's body is quoted in [`PriceError::Status`].
const DETAIL_CHARS: usize = 200;

/// A small blocking client: one `ureq` agent with connect and read timeouts, HTTP statuses
/// handled here rather than as client errors.
#[derive(Debug, Clone)]
pub(crate) struct Http {
    agent: ureq::Agent,
}

impl Http {
    pub(crate) fn new(connect: Duration, read: Duration) -> Self {
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(connect))
            .timeout_per_read(Some(read))
            .timeout_recv_response(Some(read))
            // A server that trickles one byte per `read` would otherwise hold the planner thread.
            .timeout_per_call(Some(connect.saturating_add(read.saturating_mul(3))))
            .http_status_as_error(false)
            .user_agent(concat!("ems-strategies/", env!("CARGO_PKG_VERSION")))
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .unversioned_rustls_crypto_provider(Arc::new(
                        rustls::crypto::aws_lc_rs::default_provider(),
                    ))
                    .build(),
            )
            .build();
        Self { agent: ureq::Agent::new_with_config(config) }
    }

    /// GET `url` and return the body of a 200 answer. `shown` is the URL as errors show it (the
    /// token removed); `secret`, if given, is scrubbed from every error text, in case the client
    /// or the server echoes it.
    pub(crate) fn get(
        &self,
        kind: SourceKind,
        url: &str,
        shown: &str,
        secret: Option<&str>,
    ) -> Result<String, PriceError> {
        let scrub = |text: String| scrub(text, url, shown, secret);
        let mut answer = self.agent.get(url).call().map_err(|e| client_error(kind, shown, &e, scrub))?;
        let status = answer.status().as_u16();
        let body = answer.body_mut().with_config().limit(BODY_LIMIT).read_to_string();
        if status != 200 {
            let detail = body.map(|b| b.trim().chars().take(DETAIL_CHARS).collect()).unwrap_or_default();
            return Err(PriceError::Status { kind, origin: shown.to_owned(), status, detail: scrub(detail) });
        }
        body.map_err(|e| client_error(kind, shown, &e, scrub))
    }
}

fn scrub(text: String, url: &str, shown: &str, secret: Option<&str>) -> String {
    let text = if url.is_empty() { text } else { text.replace(url, shown) };
    match secret {
        Some(s) if !s.is_empty() => text.replace(s, "<redacted>"),
        _ => text,
    }
}

fn client_error(
    kind: SourceKind,
    shown: &str,
    e: &ureq::Error,
    scrub: impl Fn(String) -> String,
) -> PriceError {
    let origin = shown.to_owned();
    let cause = scrub(e.to_string());
    let timed_out = matches!(e, ureq::Error::Timeout(_))
        || matches!(e, ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut);
    if timed_out {
        PriceError::Timeout { kind, origin, cause }
    } else {
        PriceError::Transport { kind, origin, cause }
    }
}

/// GET `url` with the default timeouts and return the body of a 200 answer, or the error in
/// words. For other documents the planner thread fetches (the irradiance forecast), with the
/// same client and limits as the price sources.
///
/// # Errors
/// The transport failed, timed out, or the server answered with another status.
pub fn get_text(url: &str) -> Result<String, String> {
    Http::new(CONNECT_TIMEOUT, READ_TIMEOUT).get(SourceKind::File, url, url, None).map_err(|e| match e {
        PriceError::Status { status, detail, .. } => format!("HTTP {status}: {detail}"),
        other => other.to_string(),
    })
}
