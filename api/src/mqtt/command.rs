//! The MQTT command decoder: a message on `<prefix>/<site>/cmd/<command>` (topic, retain flag,
//! MQTT 5 properties, payload) becomes a [`Command`] — the REST request it stands for — or a
//! [`Refusal`] saying why not and whether it can be answered. Pure: no I/O, no clock, never
//! panics on any input (fuzz target `mqtt_command`).
//!
//! Rules (issue #14):
//! - the topic names the command: `control-modes`, `emergency-stop`, `reset`, `schedules`
//!   (the REST endpoints of the same names); anything outside `<prefix>/<site>/cmd/` is ignored;
//! - the payload is the REST body of that endpoint (at most [`crate::rest::BODY_LIMIT`] bytes);
//! - the token is the MQTT 5 user property `authorization` (`Bearer <token>`), given at most once;
//! - a command must carry a response topic (none: refused, not executed, audited; nobody could
//!   learn the outcome) and correlation data (none: refused with a nack on the response topic);
//! - a **retained** command is refused (nack), never executed: a retained set-point would be
//!   replayed to the gateway on every reconnect;
//! - the response topic may not lie inside the site's own topics (`state/`, `cmd/`, `status`,
//!   `events`), start with `$` or hold wildcards: the gateway never publishes where its own
//!   state or commands live. Replies under `<prefix>/<site>/reply/...` are allowed.

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, Request, StatusCode};

/// Longest accepted correlation data, bytes.
pub const MAX_CORRELATION: usize = 256;
/// Longest accepted response topic, bytes.
pub const MAX_RESPONSE_TOPIC: usize = 1024;
/// Longest accepted `authorization` user property, bytes.
pub const MAX_AUTHORIZATION: usize = 1024;

/// What a command does: the REST endpoint it is dispatched to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommandKind {
    /// `cmd/control-modes` → `POST /api/v1/control-modes`.
    ControlModes,
    /// `cmd/emergency-stop` → `POST /api/v1/emergency-stop`.
    EmergencyStop,
    /// `cmd/reset` → `POST /api/v1/reset`.
    Reset,
    /// `cmd/schedules` → `POST /api/v1/schedules`.
    Schedules,
}

impl CommandKind {
    /// Every kind, in the order the docs list them.
    pub const ALL: [Self; 4] = [Self::ControlModes, Self::EmergencyStop, Self::Reset, Self::Schedules];

    /// The last topic level.
    #[must_use]
    pub const fn topic_level(self) -> &'static str {
        match self {
            Self::ControlModes => "control-modes",
            Self::EmergencyStop => "emergency-stop",
            Self::Reset => "reset",
            Self::Schedules => "schedules",
        }
    }

    /// The REST path it is dispatched to (always `POST`).
    #[must_use]
    pub const fn path(self) -> &'static str {
        match self {
            Self::ControlModes => "/api/v1/control-modes",
            Self::EmergencyStop => crate::rest::ESTOP_PATH,
            Self::Reset => "/api/v1/reset",
            Self::Schedules => "/api/v1/schedules",
        }
    }

    fn from_level(level: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.topic_level() == level)
    }
}

/// Where and how to answer a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTo {
    /// The MQTT 5 response topic.
    pub topic: String,
    /// The correlation data, echoed (`None` only in a nack for missing or oversized data).
    pub correlation: Option<Vec<u8>>,
}

/// The parts of an incoming MQTT message the decoder reads.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The retain flag as delivered (the gateway subscribes with "retain as published").
    pub retain: bool,
    /// MQTT 5 response topic.
    pub response_topic: Option<&'a str>,
    /// MQTT 5 correlation data.
    pub correlation: Option<&'a [u8]>,
    /// MQTT 5 user properties.
    pub user_properties: &'a [(String, String)],
    /// The payload.
    pub payload: &'a [u8],
}

/// A decoded command, ready to dispatch through the REST router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// What it does.
    pub kind: CommandKind,
    /// The `authorization` user property (`Bearer <token>`), if given.
    pub authorization: Option<String>,
    /// The REST body.
    pub body: Vec<u8>,
    /// Where the answer goes.
    pub reply: ReplyTo,
}

/// Why a message is not a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// Not under `<prefix>/<site>/cmd/`: ignored (the gateway does not subscribe there).
    #[error("topic {0:?} is outside this site's command topics")]
    OutsideSite(String),
    /// No such command.
    #[error("unknown command {0:?}: one of control-modes, emergency-stop, reset, schedules")]
    UnknownCommand(String),
    /// No response topic: refused and audited, not answered, not executed.
    #[error("no MQTT 5 response topic: the command is refused (its outcome could not be reported)")]
    NoResponseTopic,
    /// A response topic the gateway will not publish to.
    #[error("response topic {topic:?} refused: {why}")]
    BadResponseTopic {
        /// The topic (cut to 200 bytes).
        topic: String,
        /// Why.
        why: &'static str,
    },
    /// No correlation data.
    #[error("no MQTT 5 correlation data: every command must carry one")]
    NoCorrelation,
    /// Correlation data too long.
    #[error("correlation data of {0} bytes, at most {MAX_CORRELATION}")]
    CorrelationTooLong(usize),
    /// Retained: refused, never executed.
    #[error("retained command refused: commands must be published with retain = false (a retained command would be replayed on every reconnect)")]
    Retained,
    /// `authorization` given more than once.
    #[error("user property authorization given {0} times, at most once")]
    AmbiguousAuthorization(usize),
    /// `authorization` not usable as an HTTP header value.
    #[error("user property authorization: not a printable value of at most {MAX_AUTHORIZATION} bytes")]
    BadAuthorization,
    /// Payload too large.
    #[error("payload of {0} bytes, at most {max} bytes", max = crate::rest::BODY_LIMIT)]
    PayloadTooLarge(usize),
}

impl CommandError {
    /// The HTTP status the nack carries.
    #[must_use]
    pub const fn status(&self) -> StatusCode {
        match self {
            Self::UnknownCommand(_) | Self::OutsideSite(_) => StatusCode::NOT_FOUND,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NoResponseTopic
            | Self::BadResponseTopic { .. }
            | Self::NoCorrelation
            | Self::CorrelationTooLong(_)
            | Self::Retained
            | Self::AmbiguousAuthorization(_)
            | Self::BadAuthorization => StatusCode::BAD_REQUEST,
        }
    }

    /// The MQTT part at fault (`field` of the nack's error body).
    #[must_use]
    pub const fn field(&self) -> &'static str {
        match self {
            Self::OutsideSite(_) | Self::UnknownCommand(_) => "topic",
            Self::NoResponseTopic | Self::BadResponseTopic { .. } => "response_topic",
            Self::NoCorrelation | Self::CorrelationTooLong(_) => "correlation_data",
            Self::Retained => "retain",
            Self::AmbiguousAuthorization(_) | Self::BadAuthorization => "authorization",
            Self::PayloadTooLarge(_) => "payload",
        }
    }
}

/// A message that is not executed: why, and where to say so (`None`: it cannot be answered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Why.
    pub error: CommandError,
    /// Where the nack goes, if anywhere.
    pub reply: Option<ReplyTo>,
}

/// Decode a message received by the site `root` (`<prefix>/<site>`).
///
/// # Errors
/// A [`Refusal`]: the error and, when the message names a usable response topic, where to nack.
pub fn decode(root: &str, m: &Incoming<'_>) -> Result<Command, Refusal> {
    let refuse = |error, reply| Err(Refusal { error, reply });
    let level = m.topic.strip_prefix(root).and_then(|t| t.strip_prefix("/cmd/")).filter(|_| !root.is_empty());
    let Some(level) = level else {
        return refuse(CommandError::OutsideSite(cut(m.topic)), None);
    };
    let Some(topic) = m.response_topic else {
        return refuse(CommandError::NoResponseTopic, None);
    };
    if let Err(why) = check_response_topic(root, topic) {
        return refuse(CommandError::BadResponseTopic { topic: cut(topic), why }, None);
    }
    let correlation = match m.correlation {
        None => {
            return refuse(
                CommandError::NoCorrelation,
                Some(ReplyTo { topic: topic.to_owned(), correlation: None }),
            )
        }
        Some(c) if c.len() > MAX_CORRELATION => {
            let reply = Some(ReplyTo { topic: topic.to_owned(), correlation: None });
            return refuse(CommandError::CorrelationTooLong(c.len()), reply);
        }
        Some(c) => c.to_vec(),
    };
    let reply = ReplyTo { topic: topic.to_owned(), correlation: Some(correlation) };
    let Some(kind) = CommandKind::from_level(level) else {
        return refuse(CommandError::UnknownCommand(cut(level)), Some(reply));
    };
    if m.retain {
        return refuse(CommandError::Retained, Some(reply));
    }
    let mut auth = m.user_properties.iter().filter(|(k, _)| k.eq_ignore_ascii_case("authorization"));
    let authorization = match (auth.next(), auth.count()) {
        (None, _) => None,
        (Some((_, v)), 0) => {
            if v.len() > MAX_AUTHORIZATION || HeaderValue::from_str(v).is_err() {
                return refuse(CommandError::BadAuthorization, Some(reply));
            }
            Some(v.clone())
        }
        (Some(_), more) => return refuse(CommandError::AmbiguousAuthorization(more + 1), Some(reply)),
    };
    if m.payload.len() > crate::rest::BODY_LIMIT {
        return refuse(CommandError::PayloadTooLarge(m.payload.len()), Some(reply));
    }
    Ok(Command { kind, authorization, body: m.payload.to_vec(), reply })
}

/// Where the gateway may answer: a topic name (no wildcards, not `$...`, no NUL, 1..=1024
/// bytes) outside the site's own state, command, status and event topics.
fn check_response_topic(root: &str, topic: &str) -> Result<(), &'static str> {
    if topic.is_empty() || topic.len() > MAX_RESPONSE_TOPIC {
        return Err("must be 1..=1024 bytes");
    }
    if topic.contains(['+', '#', '\0']) {
        return Err("must not contain +, # or NUL");
    }
    if topic.starts_with('$') {
        return Err("must not start with $");
    }
    if let Some(rest) = topic.strip_prefix(root).and_then(|r| r.strip_prefix('/')) {
        if !rest.starts_with("reply/") {
            return Err(
                "inside this site's own topics (use <prefix>/<site>/reply/... or a topic of your own)",
            );
        }
    } else if topic == root {
        return Err("is this site's root topic");
    }
    Ok(())
}

fn cut(s: &str) -> String {
    let mut end = s.len().min(200);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

impl Command {
    /// The REST request it stands for: `POST <path>` with `Authorization` (when given) and, when
    /// the payload is not empty, `Content-Type: application/json`.
    ///
    /// # Errors
    /// Never for a decoded command (the header was checked); the `http` builder's error
    /// otherwise.
    pub fn to_request(&self) -> Result<Request<Body>, axum::http::Error> {
        let mut b = Request::builder().method(Method::POST).uri(self.kind.path());
        if let Some(a) = &self.authorization {
            b = b.header(header::AUTHORIZATION, a.as_str());
        }
        if !self.body.is_empty() {
            b = b.header(header::CONTENT_TYPE, "application/json");
        }
        b.body(Body::from(self.body.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg<'a>(topic: &'a str, props: &'a [(String, String)]) -> Incoming<'a> {
        Incoming {
            topic,
            retain: false,
            response_topic: Some("client/1/answers"),
            correlation: Some(b"c-1"),
            user_properties: props,
            payload: br#"{"reason":"checked"}"#,
        }
    }

    fn auth() -> Vec<(String, String)> {
        vec![("authorization".to_owned(), "Bearer abc".to_owned())]
    }

    #[test]
    fn each_command_topic_decodes_to_its_endpoint() {
        let props = auth();
        for kind in CommandKind::ALL {
            let topic = format!("ems/sim/cmd/{}", kind.topic_level());
            let c = decode("ems/sim", &msg(&topic, &props)).unwrap();
            assert_eq!(c.kind, kind);
            assert_eq!(c.authorization.as_deref(), Some("Bearer abc"));
            assert_eq!(c.reply.correlation.as_deref(), Some(&b"c-1"[..]));
            let r = c.to_request().unwrap();
            assert_eq!((r.method(), r.uri().path()), (&Method::POST, kind.path()));
            assert_eq!(r.headers()[header::AUTHORIZATION], "Bearer abc");
        }
    }

    #[test]
    fn refusals_say_why_and_where_to_answer() {
        let props = auth();
        let err = |m: Incoming<'_>| decode("ems/sim", &m).unwrap_err();
        let r = err(msg("other/sim/cmd/reset", &props));
        assert_eq!((r.error.field(), r.reply), ("topic", None));
        let r = err(msg("ems/sim/cmd/turbo", &props));
        assert_eq!(r.error.status(), StatusCode::NOT_FOUND);
        assert!(r.reply.is_some());
        let r = err(Incoming { retain: true, ..msg("ems/sim/cmd/reset", &props) });
        assert_eq!(
            (r.error.clone(), r.reply.unwrap().correlation.unwrap()),
            (CommandError::Retained, b"c-1".to_vec())
        );
        let r = err(Incoming { response_topic: None, ..msg("ems/sim/cmd/reset", &props) });
        assert_eq!((r.error, r.reply), (CommandError::NoResponseTopic, None));
        for bad in
            ["ems/sim/cmd/reset", "ems/sim/state/x", "ems/sim/status", "ems/sim", "$SYS/x", "a/+/b", ""]
        {
            let r = err(Incoming { response_topic: Some(bad), ..msg("ems/sim/cmd/reset", &props) });
            assert!(matches!(r.error, CommandError::BadResponseTopic { .. }), "{bad}: {:?}", r.error);
            assert_eq!(r.reply, None);
        }
        assert!(decode(
            "ems/sim",
            &Incoming { response_topic: Some("ems/sim/reply/me"), ..msg("ems/sim/cmd/reset", &props) }
        )
        .is_ok());
        let r = err(Incoming { correlation: None, ..msg("ems/sim/cmd/reset", &props) });
        assert_eq!((r.error, r.reply.unwrap().correlation), (CommandError::NoCorrelation, None));
        let two = [auth(), auth()].concat();
        assert_eq!(err(msg("ems/sim/cmd/reset", &two)).error, CommandError::AmbiguousAuthorization(2));
        let nl = vec![("authorization".to_owned(), "Bearer a\nb".to_owned())];
        assert_eq!(err(msg("ems/sim/cmd/reset", &nl)).error, CommandError::BadAuthorization);
        let big = vec![b' '; crate::rest::BODY_LIMIT + 1];
        let r = err(Incoming { payload: &big, ..msg("ems/sim/cmd/reset", &props) });
        assert_eq!(r.error.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn no_token_is_left_to_the_router() {
        let c = decode("ems/sim", &msg("ems/sim/cmd/emergency-stop", &[])).unwrap();
        assert_eq!(c.authorization, None);
        assert!(!c.to_request().unwrap().headers().contains_key(header::AUTHORIZATION));
    }

    proptest::proptest! {
        #[test]
        fn decoding_never_panics(topic in ".{0,40}", level in "[a-z-]{0,16}", retain: bool,
                                 rt in proptest::option::of(".{0,30}"), corr in proptest::option::of(proptest::collection::vec(0u8.., 0..300)),
                                 k in "[A-Za-z]{0,14}", v in ".{0,30}", payload in proptest::collection::vec(0u8.., 0..64)) {
            let props = vec![(k, v)];
            for t in [topic.clone(), format!("ems/sim/cmd/{level}")] {
                let m = Incoming { topic: &t, retain, response_topic: rt.as_deref(), correlation: corr.as_deref(), user_properties: &props, payload: &payload };
                if let Ok(c) = decode("ems/sim", &m) {
                    proptest::prop_assert!(!retain);
                    proptest::prop_assert!(c.to_request().is_ok());
                }
            }
        }
    }
}
