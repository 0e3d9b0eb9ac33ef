//! Fuzz target: `ems_devices::modbus::sunspec::fuzz_entry` must never panic on any input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ems_devices::modbus::sunspec::fuzz_entry(data);
});
