//! The MQTT command decoder (issue #14): arbitrary topic, retain flag, response topic,
//! correlation data, user properties and payload. Must never panic; whatever is accepted is
//! not retained, lies under the site's command topics, and builds a REST request.
#![no_main]

use ems_api::mqtt::command::{decode, Incoming};
use libfuzzer_sys::fuzz_target;

// Splits the input at 0xFF bytes into: topic, response topic, correlation, property key,
// property value, payload; the first byte's low bits choose retain and which parts are absent.
fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else { return };
    let mut parts = rest.splitn(6, |b| *b == 0xFF);
    let mut next = || parts.next().unwrap_or_default();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let (topic, response, correlation, key, value, payload) = (next(), next(), next(), next(), next(), next());
    let topic = if flags & 8 == 0 { format!("ems/sim/cmd/{}", text(topic)) } else { text(topic) };
    let response = text(response);
    let props = vec![(text(key), text(value))];
    let m = Incoming {
        topic: &topic,
        retain: flags & 1 != 0,
        response_topic: (flags & 2 == 0).then_some(response.as_str()),
        correlation: (flags & 4 == 0).then_some(correlation),
        user_properties: &props,
        payload,
    };
    if let Ok(cmd) = decode("ems/sim", &m) {
        assert!(!m.retain, "a retained command was accepted");
        assert!(topic.starts_with("ems/sim/cmd/"), "accepted outside the prefix: {topic}");
        assert!(!cmd.reply.topic.starts_with("ems/sim/cmd/"), "answers into the command topics");
        assert!(cmd.to_request().is_ok());
    }
});
