//! The SunSpec Modbus server's write path (issue #14): arbitrary bytes as a sequence of write
//! requests (address, values) against the allow-list, the decoding and the control-mode
//! requests they become. Must never panic; only allow-listed registers ever change
//! (`ems_api::modbus_server::fuzz::fuzz_entry` asserts it).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ems_api::modbus_server::fuzz::fuzz_entry(data);
});
