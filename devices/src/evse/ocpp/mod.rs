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

pub mod config;
mod hub;
pub mod messages;
pub mod point;
pub mod server;

pub use config::CentralSystemConfig;
pub use messages::{rfc3339, rfc3339_now, SUBPROTOCOL};
pub use point::{OcppError, OcppEvse};
pub use server::CentralSystem;

#[cfg(test)]
mod tests {
    use super::messages::rfc3339;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_497_441), "2026-12-05T19:04:01Z");
    }
}
