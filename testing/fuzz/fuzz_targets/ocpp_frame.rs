//! Fuzz target: the OCPP central system's frame parser (`ems_devices::evse::ocpp::messages`)
//! must never panic, every parsed frame must survive a round trip, and a CALL's payload must
//! decode into the request types without panicking.
#![no_main]

use ems_devices::evse::ocpp::messages::{
    BootNotificationReq, Frame, MeterValuesReq, StartTransactionReq, StatusNotificationReq, StopTransactionReq,
};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = core::str::from_utf8(data) else { return };
    let Ok(frame) = Frame::parse(text) else { return };
    assert_eq!(Frame::parse(&frame.to_text()).ok(), Some(frame.clone()));
    if let Frame::Call { payload, .. } = frame {
        let _ = serde_json::from_value::<BootNotificationReq>(payload.clone());
        let _ = serde_json::from_value::<StatusNotificationReq>(payload.clone());
        let _ = serde_json::from_value::<MeterValuesReq>(payload.clone());
        let _ = serde_json::from_value::<StartTransactionReq>(payload.clone());
        let _ = serde_json::from_value::<StopTransactionReq>(payload);
    }
});
