//! MQTT (issue #14): the site's state on retained topics with a message expiry, a birth message
//! and a last will, and commands answered with an ack or a nack — MQTT 5 through `rumqttc`.
//!
//! Topics under `<prefix>/<site>` (e.g. `ems/sim`):
//!
//! | topic | direction | what |
//! |---|---|---|
//! | `status` | out, retained | `online` on every connection (birth), `offline` at a clean stop and as the last will |
//! | `state/<channel address>` | out, retained, expiry | one value per OpenEMS-style channel (`state/_sum/GridActivePower` → `-1200.5`, `state/_sum/State` → `RUNNING`), every publish period; the state also at once when it changes |
//! | `events` | out | safety events as the loop records them, JSON `{"state", "event"}`, QoS 1 |
//! | `history` | out, QoS 1, not retained | after a broker outage, the telemetry taken meanwhile, oldest first in slices `{"bufferedData": [{"timestamp", "until"?, "samples", "currentData": {channel: value}}, …]}` ([`buffer`], [`resend`]) |
//! | `cmd/control-modes`, `cmd/emergency-stop`, `cmd/reset`, `cmd/schedules` | in | the REST body of the endpoint of the same name; token in the user property `authorization` (`Bearer <token>`); response topic and correlation data required; never retained |
//!
//! An answer goes to the command's response topic with its correlation data, as JSON
//! `{"ok": bool, "status": <HTTP status>, "body": <REST answer or error>}`. The command is
//! dispatched through the REST router in-process, so roles, validation, audit, the control
//! modes' watchdog and `until` are the REST API's own code path.
//!
//! Modules: [`config`] (settings), [`command`] (the decoder, pure), [`outbox`] (the bounded,
//! prioritised queue), [`topics`] (messages from the site view, Home Assistant discovery),
//! [`link`] (the client's tasks), [`buffer`] (the outage buffer in the database) and
//! [`resend`] (its resend after a reconnection), [`status`] (the counters of `GET /api/v1/mqtt`).

pub mod buffer;
pub mod command;
pub mod config;
pub mod link;
pub mod outbox;
pub mod resend;
pub mod status;
pub mod topics;

pub use config::{BrokerUrl, MqttConfig, MqttConfigError, TlsFiles};
pub use link::{Mqtt, MqttError, MqttLinks};
pub use status::{MqttStats, MqttStatus, NOT_CONFIGURED};
