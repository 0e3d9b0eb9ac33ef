//! The generic profile driver end to end over in-memory register images.
// Register fixtures are 16-bit patterns: signed and wider test values are written into them
// bit for bit, which is what these casts mean.
#![allow(clippy::cast_sign_loss, clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
// Helpers outside `#[test]` functions build fixtures; a broken fixture should fail loudly.
#![allow(clippy::unwrap_used, clippy::panic)]

use ems_core::snapshot::{BmsAlarm, InverterState};
use ems_core::{Millis, Watts};
use ems_devices::modbus::profile::{Profile, ProfileDevice, ProfileDeviceError};
use ems_devices::modbus::{
    LinkError, MemoryRegisters, ModbusException, RegisterAddress, RegisterClient, RegisterKind,
};
use ems_devices::traits::{
    Bms, ControlSource, DeviceError, ErrorKind, Inverter, InverterSettings, Meter, PvInverter,
};
use pollster::block_on;

fn f32_words(x: f32) -> [u16; 2] {
    let b = x.to_bits();
    [(b >> 16) as u16, b as u16]
}

fn i32_words(x: i32) -> [u16; 2] {
    let b = x as u32;
    [(b >> 16) as u16, b as u16]
}

fn sdm630_image(power: f32) -> MemoryRegisters {
    let mut m = MemoryRegisters::default();
    for a in 0..80u16 {
        m.input.insert(a, 0);
    }
    for (a, v) in [(0x00, 230.5f32), (0x34, power), (0x46, 49.98)] {
        let w = f32_words(v);
        m.input.insert(a, w[0]);
        m.input.insert(a + 1, w[1]);
    }
    m
}

fn meter() -> ProfileDevice<MemoryRegisters> {
    let p = Profile::shipped("eastron-sdm630.toml").unwrap().unwrap();
    ProfileDevice::new(sdm630_image(-1234.5), p)
}

#[test]
fn sdm630_reads_in_one_request() {
    let mut dev = meter();
    let r = block_on(Meter::read(&mut dev)).unwrap();
    assert_eq!(r.active_power.get(), -1234.5);
    assert_eq!(r.voltage.get(), 230.5);
    assert!((r.frequency.unwrap().get() - 49.98).abs() < 1e-4);
    assert_eq!(dev.client().requests, 1, "the minimal number of requests");
    assert_eq!(dev.plan().len(), 1);
}

#[test]
fn nan_from_the_meter_is_not_a_reading() {
    let mut dev = meter();
    let w = f32_words(f32::NAN);
    dev.client_mut().input.insert(0x34, w[0]);
    dev.client_mut().input.insert(0x35, w[1]);
    let e = block_on(Meter::read(&mut dev)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Decode);
    assert!(e.to_string().contains("active_power: not available"), "{e}");
}

#[test]
fn calling_the_trait_of_another_kind_is_refused() {
    let mut dev = meter();
    let e = block_on(Inverter::read(&mut dev)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Refused);
    assert_eq!(e.to_string(), "profile profiles/eastron-sdm630.toml is a meter profile, used as a inverter");
    assert!(matches!(block_on(Bms::read(&mut dev)), Err(ProfileDeviceError::WrongDevice { .. })));
    assert!(matches!(block_on(PvInverter::read(&mut dev)), Err(ProfileDeviceError::WrongDevice { .. })));
    assert_eq!(dev.client().requests, 0, "nothing is sent for a wrong call");
}

fn sunny_island() -> ProfileDevice<MemoryRegisters> {
    let mut m = MemoryRegisters::default();
    m.put(30201, &[0, 307]);
    m.put(30231, &[0, 6000]);
    m.put(30775, &i32_words(-2000));
    m.allow_write(40149, 4);
    ProfileDevice::new(m, Profile::shipped("sma-sunny-island.toml").unwrap().unwrap())
}

#[test]
fn sunny_island_reads_writes_and_keeps_failures_apart() {
    let mut dev = sunny_island();
    assert!(!dev.capabilities().revert_timer);
    let r = block_on(Inverter::read(&mut dev)).unwrap();
    assert_eq!(r.active_power.get(), -2000.0);
    assert_eq!(r.state, InverterState::Running);
    assert_eq!(r.rated_power.get(), 6000.0);
    assert_eq!(r.setpoint, Watts::ZERO, "nothing written yet");
    assert_eq!(r.dc_link_voltage.get(), 0.0, "documented default");
    assert_eq!(r.temperature.get(), 25.0, "documented default");
    assert_eq!(dev.plan().len(), 3);

    // Set-point: −1500 W (charge) as a big-endian i32 at 40149.
    block_on(dev.write_setpoint(ems_core::watts!(-1500.0))).unwrap();
    assert_eq!(dev.client().holding.get(&40149), Some(&0xFFFF));
    assert_eq!(dev.client().holding.get(&40150), Some(&0xFA24));
    assert_eq!(block_on(Inverter::read(&mut dev)).unwrap().setpoint.get(), -1500.0);

    // Taking control writes START (802), handing back STOP (803).
    let take =
        InverterSettings { control: ControlSource::Remote, setpoint: Watts::ZERO, revert_timeout: None };
    block_on(dev.write_settings(&take)).unwrap();
    assert_eq!((dev.client().holding.get(&40151), dev.client().holding.get(&40152)), (Some(&0), Some(&802)));
    assert_eq!(block_on(dev.read_settings()).unwrap(), take);
    let give = InverterSettings { control: ControlSource::Local, ..take };
    block_on(dev.write_settings(&give)).unwrap();
    assert_eq!(dev.client().holding.get(&40152), Some(&803));
    // No revert timer in this profile: asking for one is refused, not ignored.
    let timed = InverterSettings { revert_timeout: Some(Millis::from_secs(60)), ..take };
    assert_eq!(block_on(dev.write_settings(&timed)).unwrap_err().kind(), ErrorKind::Refused);

    // Unknown state codes are faults; the not-available power code is an error, not 0 W.
    dev.client_mut().put(30201, &[0, 999]);
    assert_eq!(block_on(Inverter::read(&mut dev)).unwrap().state, InverterState::Fault);
    dev.client_mut().put(30775, &[0x8000, 0]);
    assert_eq!(block_on(Inverter::read(&mut dev)).unwrap_err().kind(), ErrorKind::Decode);

    // An exception is a refusal, with the address.
    dev.client_mut().holding.remove(&30232);
    let e = block_on(Inverter::read(&mut dev)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Refused);
    assert_eq!(
        e,
        ProfileDeviceError::Exception {
            address: RegisterAddress(30231),
            exception: ModbusException::IllegalDataAddress
        }
    );
    // A refused write too.
    dev.client_mut().writable.clear();
    assert_eq!(block_on(dev.write_setpoint(Watts::ZERO)).unwrap_err().kind(), ErrorKind::Refused);
}

/// A link that never answers.
struct Dead(LinkError);

impl RegisterClient for Dead {
    async fn read(
        &mut self,
        _: RegisterKind,
        _: RegisterAddress,
        _: u16,
    ) -> Result<Result<Vec<u16>, ModbusException>, LinkError> {
        Err(self.0.clone())
    }
    async fn write(
        &mut self,
        _: RegisterAddress,
        _: &[u16],
    ) -> Result<Result<(), ModbusException>, LinkError> {
        Err(self.0.clone())
    }
}

#[test]
fn link_failures_are_timeouts_or_comm_errors() {
    let p = Profile::shipped("sma-sunny-island.toml").unwrap().unwrap();
    let mut dev = ProfileDevice::new(Dead(LinkError::Timeout(500)), p.clone());
    assert_eq!(block_on(Inverter::read(&mut dev)).unwrap_err().kind(), ErrorKind::Timeout);
    assert_eq!(block_on(dev.write_setpoint(Watts::ZERO)).unwrap_err().kind(), ErrorKind::Timeout);
    let mut dev = ProfileDevice::new(Dead(LinkError::Io("reset".into())), p);
    assert_eq!(block_on(Inverter::read(&mut dev)).unwrap_err().kind(), ErrorKind::Comm);
}

const SMALL_INVERTER: &str = r#"manufacturer = "Test"
model = "i16 inverter"
source = "unit test"
device = "inverter"
address_base = 40001

[[register]]
signal = "active_power"
address = 40001
function = 3
type = "i16"
unit = "kW"
scale = 0.01
sign = "invert"

[[register]]
signal = "state"
address = 40002
function = 3
type = "u16"
enum = { 0 = "standby", 1 = "running", 2 = "fault" }

[[register]]
signal = "setpoint"
address = 40003
function = 3
type = "i16"
unit = "W"
scale = 10
sign = "invert"

[[register]]
signal = "setpoint_write"
address = 40003
function = 16
type = "i16"
unit = "W"
scale = 10
sign = "invert"

[[register]]
signal = "revert_timeout"
address = 40004
function = 3
access = "rw"
type = "u16"
unit = "s"

[[register]]
signal = "control_enable"
address = 40005
function = 3
access = "rw"
type = "u16"
enum = { 1 = "remote", 0 = "local" }

[[register]]
signal = "dc_link_voltage"
address = 40006
function = 3
type = "u16"
unit = "V"
scale = 0.1
"#;

#[test]
fn scaled_inverted_kw_registers_round_trip_and_out_of_range_is_reported() {
    let p = Profile::from_toml_str(SMALL_INVERTER, "small.toml").unwrap_or_else(|e| panic!("{e}"));
    let mut m = MemoryRegisters::default();
    m.put(0, &[(-150i16) as u16, 1, 0, 0, 0, 7995]);
    m.allow_write(2, 4);
    let mut dev = ProfileDevice::new(m, p);
    assert!(dev.capabilities().revert_timer);
    assert_eq!(dev.plan().len(), 1, "six adjacent holding registers");
    let r = block_on(Inverter::read(&mut dev)).unwrap();
    assert_eq!(r.active_power.get(), 1500.0, "−1.50 kW in the device's convention = 1500 W discharge");
    assert!((r.dc_link_voltage.get() - 799.5).abs() < 1e-3);

    block_on(dev.write_setpoint(ems_core::watts!(2500.0))).unwrap();
    assert_eq!(dev.client().holding.get(&2), Some(&((-250i16) as u16)));
    assert_eq!(
        block_on(Inverter::read(&mut dev)).unwrap().setpoint.get(),
        2500.0,
        "read back from the device"
    );

    let e = block_on(dev.write_setpoint(ems_core::watts!(400_000.0))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutOfRange, "{e}");

    let take = InverterSettings {
        control: ControlSource::Remote,
        setpoint: Watts::ZERO,
        revert_timeout: Some(Millis::from_secs(30)),
    };
    block_on(dev.write_settings(&take)).unwrap();
    assert_eq!((dev.client().holding.get(&3), dev.client().holding.get(&4)), (Some(&30), Some(&1)));
    assert_eq!(block_on(dev.read_settings()).unwrap(), take);
}

const BMS: &str = r#"manufacturer = "Test"
model = "BMS"
source = "unit test"
device = "bms"
address_base = 0

[[register]]
signal = "soc"
address = 0
function = 4
type = "u16"
unit = "%"
[[register]]
signal = "pack_voltage"
address = 1
function = 4
type = "u16"
unit = "V"
scale = 0.1
[[register]]
signal = "pack_current"
address = 2
function = 4
type = "i16"
unit = "A"
scale = 0.1
sign = "invert"
[[register]]
signal = "cell_voltage_min"
address = 3
function = 4
type = "u16"
unit = "mV"
[[register]]
signal = "cell_voltage_max"
address = 4
function = 4
type = "u16"
unit = "mV"
[[register]]
signal = "cell_temp_min"
address = 5
function = 4
type = "i16"
unit = "°C"
[[register]]
signal = "cell_temp_max"
address = 6
function = 4
type = "i16"
unit = "°C"
[[register]]
signal = "charge_current_limit"
address = 7
function = 4
type = "u16"
unit = "A"
[[register]]
signal = "discharge_limit"
address = 8
function = 4
type = "u16"
unit = "kW"
scale = 0.1
[[register]]
signal = "alarms"
address = 9
function = 4
type = "u16"
bits = { 0 = "cell_over_voltage", 3 = "over_temperature" }
[[register]]
signal = "alarm_reset"
address = 100
function = 16
type = "u16"
enum = { 1 = "reset" }
"#;

#[test]
fn bms_profile_converts_units_limits_and_alarms() {
    let p = Profile::from_toml_str(BMS, "bms.toml").unwrap_or_else(|e| panic!("{e}"));
    let mut m = MemoryRegisters::default();
    m.input.extend((0..10u16).zip([
        55,
        512,
        (-200i16) as u16,
        3301,
        3350,
        (-5i16) as u16,
        31,
        100,
        50,
        0b1001_0000_1000,
    ]));
    m.allow_write(100, 1);
    let mut dev = ProfileDevice::new(m, p);
    let r = block_on(Bms::read(&mut dev)).unwrap();
    assert_eq!(r.soc.get(), 55.0);
    assert!(
        (r.pack_current.get() - 20.0).abs() < 1e-4,
        "−20 A in the device's sign = 20 A discharge: {}",
        r.pack_current
    );
    assert!((r.cell_voltage_min.get() - 3.301).abs() < 1e-5);
    assert_eq!(r.cell_temp_min.get(), -5.0);
    assert!((r.charge_limit.get() - 5120.0).abs() < 0.1, "100 A × 51.2 V");
    assert_eq!(r.discharge_limit.get(), 5000.0);
    assert!(r.alarms.contains(BmsAlarm::OverTemperature));
    assert!(!r.alarms.contains(BmsAlarm::CellOverVoltage));
    assert!(r.alarms.contains(BmsAlarm::Internal), "bits 7 and 11 are not named: still alarms");
    assert!(!r.ready, "no ready register: ready only without alarms");
    block_on(dev.reset_alarms()).unwrap();
    assert_eq!(dev.client().holding.get(&100), Some(&1));
}

#[test]
fn a_register_value_outside_its_unit_is_out_of_range_naming_the_register() {
    // 2500 V from the meter's voltage register: not a voltage the unit accepts.
    let mut dev =
        ProfileDevice::new(sdm630_image(100.0), Profile::shipped("eastron-sdm630.toml").unwrap().unwrap());
    let w = f32_words(2500.0);
    dev.client_mut().input.insert(0x00, w[0]);
    dev.client_mut().input.insert(0x01, w[1]);
    let e = block_on(Meter::read(&mut dev)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutOfRange);
    assert_eq!(e.to_string(), "register voltage: voltage: 2500 V is outside the physical range 0..=2000");
}
