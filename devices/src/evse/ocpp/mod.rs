//! The OCPP 1.6J central system: a WebSocket server (tokio-tungstenite) that charge points
//! connect to as `ws://HOST:PORT/<id>` with the `ocpp1.6` subprotocol.
//!
//! * [`messages`]: frames and the payloads used, as our own serde types.
//! * [`server`]: [`server::CentralSystem`] — the accept loop and one task per connection
//!   (bounded queues, frame size bound, message-rate bound, CALLERROR for malformed messages).
//! * [`point`]: the per-charge-point state and [`point::OcppEvse`], the handle that implements
//!   [`crate::evse::Evse`]: a current limit becomes a `SetChargingProfile` (TxDefaultProfile, or
//!   TxProfile during a transaction) with a duration of one lease, verified by
//!   `GetCompositeSchedule`; after boot each charge point gets a station-maximum
//!   `ChargePointMaxProfile` and a fallback `TxDefaultProfile` at stack level 0, which is what
//!   applies once the EMS stops renewing (link loss).

pub mod messages;
pub mod point;
pub mod server;

pub use point::{OcppError, OcppEvse};
pub use server::{CentralSystem, CentralSystemConfig};

use std::time::{SystemTime, UNIX_EPOCH};

/// The WebSocket subprotocol of OCPP 1.6J.
pub const SUBPROTOCOL: &str = "ocpp1.6";

/// Now as an RFC 3339 UTC timestamp with milliseconds (`2026-12-05T19:04:01.250Z`), for OCPP
/// messages (a profile's start to the millisecond, so a lease of a few seconds is exact).
#[must_use]
pub fn rfc3339_now() -> String {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let s = rfc3339(d.as_secs());
    format!("{}.{:03}Z", s.trim_end_matches('Z'), d.subsec_millis())
}

/// Seconds since the Unix epoch as an RFC 3339 UTC timestamp.
#[must_use]
pub fn rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, (rem % 3600) / 60, rem % 60)
}

/// Howard Hinnant's days-to-civil algorithm for days since 1970-01-01 (non-negative).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_497_441), "2026-12-05T19:04:01Z");
    }
}
