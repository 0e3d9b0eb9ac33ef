//! Fuzz target: the read batcher (`ReadPlan`) covers every wanted register exactly once with
//! requests of 1..=125 registers, for any list of wanted ranges.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(broken) = ems_devices::modbus::transport::batch::fuzz_entry(data) {
        panic!("read plan invariant broken: {broken}");
    }
});
