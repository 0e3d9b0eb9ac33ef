//! What the gateway publishes, as messages: the topics of a site, the state messages made from
//! the loop's [`SiteView`], the safety events found between two views, and the Home Assistant
//! discovery document. No I/O here; `link` sends them.

use super::outbox::Message;
use crate::model::{channels, ChannelValue, SiteView};
use serde_json::{json, Value};
use std::time::Duration;

/// The topics of one site (`<prefix>/<site>/...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    root: String,
}

impl Topics {
    /// The topics under `root` (`<prefix>/<site>`).
    #[must_use]
    pub const fn new(root: String) -> Self {
        Self { root }
    }

    /// `<prefix>/<site>`.
    #[must_use]
    pub fn root(&self) -> &str {
        &self.root
    }

    /// `<prefix>/<site>/status`: `online` (birth, retained) / `offline` (last will, retained).
    #[must_use]
    pub fn status(&self) -> String {
        format!("{}/status", self.root)
    }

    /// `<prefix>/<site>/state/<channel address>`, e.g. `ems/sim/state/_sum/GridActivePower`.
    #[must_use]
    pub fn state(&self, channel: &str) -> String {
        format!("{}/state/{channel}", self.root)
    }

    /// `<prefix>/<site>/events`: safety events (not retained).
    #[must_use]
    pub fn events(&self) -> String {
        format!("{}/events", self.root)
    }

    /// `<prefix>/<site>/history`: telemetry taken during a broker outage, resent in slices
    /// after it (not retained: it never replaces the live state).
    #[must_use]
    pub fn history(&self) -> String {
        format!("{}/history", self.root)
    }

    /// The command subscription, `<prefix>/<site>/cmd/+`.
    #[must_use]
    pub fn commands(&self) -> String {
        format!("{}/cmd/+", self.root)
    }
}

/// A channel's payload: a number as JSON writes it (`-1234.5`), a text as itself (`RUNNING`).
#[must_use]
pub fn channel_payload(v: &ChannelValue) -> Vec<u8> {
    match v {
        ChannelValue::Number(n) => Value::from(*n).to_string().into_bytes(),
        ChannelValue::Text(t) => t.clone().into_bytes(),
    }
}

/// A retained state message with its expiry.
#[must_use]
pub fn state_message(topics: &Topics, channel: &str, v: &ChannelValue, expiry: Duration) -> Message {
    let mut m = Message::new(topics.state(channel), channel_payload(v), true);
    m.expiry = Some(expiry);
    // Telemetry at QoS 0: a lost sample is replaced by the next; the expiry bounds its life.
    m.at_least_once = false;
    m
}

/// Every channel of `view` (none before the loop's first cycle).
#[must_use]
pub fn telemetry(topics: &Topics, view: &SiteView, expiry: Duration) -> Vec<Message> {
    if view.at.is_none() {
        return Vec::new();
    }
    view.channels.iter().map(|(c, v)| state_message(topics, c, v, expiry)).collect()
}

/// One batch for the outage buffer: `{"timestamp": <the view's time>, "samples": 1,
/// "currentData": {channel: value}}` (`None` before the loop's first cycle).
#[must_use]
pub fn history_entry(view: &SiteView) -> Option<Value> {
    let at = view.at?;
    let data: serde_json::Map<String, Value> =
        view.channels.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    Some(json!({ "timestamp": at.to_string(), "samples": 1, "currentData": data }))
}

/// Finds what changed between two views that must never be lost: the state, and events the
/// loop added to `recent_events`.
#[derive(Debug, Default)]
pub struct SafetyDiff {
    state: Option<String>,
    events: Vec<String>,
}

impl SafetyDiff {
    /// The safety messages for `view` since the last call: the state channel (retained, QoS 1,
    /// with expiry) when the state changed, one event message per new event line.
    pub fn messages(&mut self, topics: &Topics, view: &SiteView, expiry: Duration) -> Vec<Message> {
        let mut out = Vec::new();
        if view.at.is_none() {
            return out;
        }
        let state = &view.safety.state;
        if !state.is_empty() && self.state.as_ref() != Some(state) {
            let v = view
                .channels
                .get(channels::STATE)
                .cloned()
                .unwrap_or_else(|| ChannelValue::Text(state.clone()));
            let mut m = state_message(topics, channels::STATE, &v, expiry);
            m.at_least_once = true;
            out.push(m);
            self.state = Some(state.clone());
        }
        for line in view.safety.recent_events.iter().filter(|l| !self.events.contains(l)) {
            let payload = json!({ "state": state, "event": line }).to_string().into_bytes();
            let mut m = Message::new(topics.events(), payload, false);
            m.content_type = Some("application/json");
            out.push(m);
        }
        self.events.clone_from(&view.safety.recent_events);
        out
    }
}

/// A sensor offered to Home Assistant: channel, component key, name, device class, unit.
type HaSensor = (&'static str, &'static str, &'static str, Option<&'static str>, Option<&'static str>);

/// The sensors offered to Home Assistant.
const HA_SENSORS: [HaSensor; 6] = [
    (channels::GRID_ACTIVE_POWER, "grid_power", "Grid power", Some("power"), Some("W")),
    (channels::PRODUCTION_ACTIVE_POWER, "pv_power", "PV power", Some("power"), Some("W")),
    (channels::ESS_ACTIVE_POWER, "battery_power", "Battery power", Some("power"), Some("W")),
    (channels::ESS_SOC, "battery_soc", "Battery state of charge", Some("battery"), Some("%")),
    (channels::CONSUMPTION_ACTIVE_POWER, "consumption", "Consumption", Some("power"), Some("W")),
    (channels::STATE, "state", "EMS state", None, None),
];

/// `homeassistant/device/<prefix>_<site>/config`.
#[must_use]
pub fn discovery_topic(topics: &Topics) -> String {
    let id: String = topics.root().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    format!("homeassistant/device/{id}/config")
}

/// Home Assistant MQTT discovery, device-based schema: one device (the site) with its sensors,
/// available while `status` is `online`. Retained, no expiry (Home Assistant reads it at start).
///
/// No command components: a command needs the MQTT 5 user property `authorization`, which a
/// Home Assistant button cannot send, and a control without a token would bypass the roles.
#[must_use]
pub fn discovery(topics: &Topics, site: &str) -> Message {
    let id = discovery_topic(topics)
        .trim_start_matches("homeassistant/device/")
        .trim_end_matches("/config")
        .to_owned();
    let mut cmps = serde_json::Map::new();
    for (channel, key, name, class, unit) in HA_SENSORS {
        let mut c = json!({ "p": "sensor", "name": name, "state_topic": topics.state(channel), "unique_id": format!("{id}_{key}") });
        if let Value::Object(o) = &mut c {
            if let Some(class) = class {
                o.insert("device_class".into(), json!(class));
                o.insert("state_class".into(), json!("measurement"));
            }
            if let Some(unit) = unit {
                o.insert("unit_of_measurement".into(), json!(unit));
            }
        }
        cmps.insert(key.to_owned(), c);
    }
    let doc = json!({
        "device": { "identifiers": [id], "name": format!("EMS {site}"), "manufacturer": "ems", "model": "ems-gateway",
                    "sw_version": env!("CARGO_PKG_VERSION") },
        "origin": { "name": "ems-gateway", "sw_version": env!("CARGO_PKG_VERSION") },
        "availability_topic": topics.status(),
        "payload_available": "online",
        "payload_not_available": "offline",
        "components": cmps,
    });
    let mut m = Message::new(discovery_topic(topics), doc.to_string().into_bytes(), true);
    m.content_type = Some("application/json");
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;

    fn view(state: &str, events: &[&str]) -> SiteView {
        let mut v = SiteView { at: Some(Timestamp::UNIX_EPOCH), ..SiteView::default() };
        v.channels.insert(channels::GRID_ACTIVE_POWER.to_owned(), ChannelValue::Number(-1200.5));
        v.channels.insert(channels::STATE.to_owned(), ChannelValue::Text(state.to_owned()));
        v.safety.state = state.to_owned();
        v.safety.recent_events = events.iter().map(|&e| e.to_owned()).collect();
        v
    }

    #[test]
    fn telemetry_is_retained_with_expiry_on_channel_topics() {
        let t = Topics::new("ems/sim".to_owned());
        let ms = telemetry(&t, &view("RUNNING", &[]), Duration::from_secs(15));
        let grid = ms.iter().find(|m| m.topic == "ems/sim/state/_sum/GridActivePower").unwrap();
        assert_eq!(
            (grid.payload.as_slice(), grid.retain, grid.expiry),
            (&b"-1200.5"[..], true, Some(Duration::from_secs(15)))
        );
        assert!(ms.iter().any(|m| m.topic == "ems/sim/state/_sum/State" && m.payload == b"RUNNING"));
        assert!(telemetry(&t, &SiteView::default(), Duration::from_secs(15)).is_empty());
    }

    #[test]
    fn state_changes_and_new_events_are_found_once() {
        let t = Topics::new("ems/sim".to_owned());
        let mut d = SafetyDiff::default();
        let e = Duration::from_secs(15);
        assert_eq!(d.messages(&t, &view("IDLE", &["a"]), e).len(), 2);
        assert!(d.messages(&t, &view("IDLE", &["a"]), e).is_empty());
        let ms = d.messages(&t, &view("STOPPED", &["a", "b"]), e);
        assert_eq!(ms.len(), 2);
        assert_eq!(ms[0].payload, b"STOPPED");
        assert!(ms[0].at_least_once);
        assert_eq!(ms[1].topic, "ems/sim/events");
        assert!(!ms[1].retain);
    }

    #[test]
    fn discovery_names_the_status_and_state_topics() {
        let t = Topics::new("ems/sim".to_owned());
        let m = discovery(&t, "sim");
        assert_eq!(m.topic, "homeassistant/device/ems_sim/config");
        let doc: Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(doc["availability_topic"], "ems/sim/status");
        assert_eq!(doc["components"]["grid_power"]["state_topic"], "ems/sim/state/_sum/GridActivePower");
        assert_eq!(doc["components"]["grid_power"]["p"], "sensor");
    }
}
