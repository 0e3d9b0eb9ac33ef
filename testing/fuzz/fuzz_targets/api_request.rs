//! Request decoding of the local API (issue #6): arbitrary bytes as a JSON body into the control
//! mode and the schedule decoders. Must never panic; every refusal is a typed error.
#![no_main]

use std::sync::Arc;

use ems_api::control_modes::{ControlModes, DEFAULT_WATCHDOG};
use ems_api::ports::MemoryStore;
use ems_api::schedules::{ScheduleConfig, Schedules};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(serde_json::Value::Object(body)) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(now) = "2026-05-01T12:00:00Z".parse::<jiff::Timestamp>() else { return };
    let mut modes = ControlModes::new(DEFAULT_WATCHDOG, 5000.0);
    if modes.activate(&body, now).is_ok() {
        // Whatever was accepted must validate as a controller input.
        if let Some(o) = modes.active_override(now) {
            assert!(o.validate().is_ok(), "accepted an invalid override: {o:?}");
        }
    }
    let store = Arc::new(MemoryStore::default());
    let cfg = ScheduleConfig {
        serials: vec!["BAT-1".to_owned()],
        max_charge_w: 5000,
        max_discharge_w: 5000,
        ..ScheduleConfig::default()
    };
    if let Ok(schedules) = Schedules::load(cfg, &[], store.clone(), store) {
        let _ = schedules.submit(&body, "fuzz", now);
    }
});
