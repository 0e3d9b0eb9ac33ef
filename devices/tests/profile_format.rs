//! Register-map profiles: loading, validation errors, decoding and encoding.
// Register fixtures are 16-bit patterns: signed and wider test values are written into them
// bit for bit, which is what these casts mean.
#![allow(clippy::cast_sign_loss, clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
// Helpers outside `#[test]` functions build fixtures; a broken fixture should fail loudly.
#![allow(clippy::unwrap_used, clippy::panic)]

use ems_devices::modbus::profile::{
    decode, decode_register, encode, fuzz_entry, read_plan, DeviceKind, Profile, RegisterImage, Signal,
    Value, SHIPPED_PROFILES,
};
use ems_devices::modbus::{RegisterAddress, RegisterKind};
use proptest::prelude::*;

const HEADER: &str = r#"manufacturer = "Test"
model = "T1"
source = "unit test"
device = "meter"
address_base = 0
"#;

fn meter(extra: &str) -> String {
    format!(
        "{HEADER}
[[register]]
signal = \"active_power\"
address = 0
function = 4
type = \"f32\"
unit = \"W\"

[[register]]
signal = \"voltage\"
address = 2
function = 4
type = \"f32\"
unit = \"V\"

[[register]]
signal = \"frequency\"
address = 4
function = 4
type = \"f32\"
unit = \"Hz\"
{extra}"
    )
}

fn err(text: &str) -> String {
    match Profile::from_toml_str(text, "profiles/x.toml") {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn every_shipped_profile_loads_and_names_its_source() {
    assert!(SHIPPED_PROFILES.len() >= 2);
    for (name, _) in SHIPPED_PROFILES {
        let p = Profile::shipped(name).unwrap().unwrap_or_else(|e| panic!("{e}"));
        assert!(p.source().len() > 40, "{name}: source too short");
        // The on-disk file is the embedded one.
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles").join(name);
        assert_eq!(Profile::load(&path).unwrap().registers(), p.registers());
    }
    let meter = Profile::shipped("eastron-sdm630.toml").unwrap().unwrap();
    assert_eq!(meter.device(), DeviceKind::Meter);
    let inv = Profile::shipped("sma-sunny-island.toml").unwrap().unwrap();
    assert_eq!(inv.device(), DeviceKind::Inverter);
}

#[test]
fn register_numbers_are_converted_to_wire_addresses() {
    let p = Profile::shipped("eastron-sdm630.toml").unwrap().unwrap();
    let r = p.register(Signal::ActivePower).unwrap();
    assert_eq!((r.table, r.address), (RegisterKind::Input, RegisterAddress(0x34)));
    assert_eq!(p.register(Signal::Frequency).unwrap().address, RegisterAddress(0x46));
    assert_eq!(p.register(Signal::Voltage).unwrap().address, RegisterAddress(0));
    let one_based =
        meter("").replace("address_base = 0", "address_base = 1").replace("address = 0\n", "address = 1\n");
    let one_based =
        one_based.replace("address = 2\n", "address = 3\n").replace("address = 4\n", "address = 5\n");
    let p = Profile::from_toml_str(&one_based, "x").unwrap();
    assert_eq!(p.register(Signal::ActivePower).unwrap().address, RegisterAddress(0));
    assert_eq!(p.register(Signal::Frequency).unwrap().address, RegisterAddress(4));
}

#[test]
fn errors_name_file_line_field_and_value() {
    let bad_type = meter("").replacen("type = \"f32\"", "type = \"u33\"", 1);
    assert_eq!(
        err(&bad_type),
        "profiles/x.toml line 11: register[0].type = 'u33': is not one of u16, i16, u32, i32, u64, i64, f32"
    );

    let e = err(&meter("").replace("unit = \"Hz\"", "unit = \"kW\""));
    assert!(
        e.starts_with("profiles/x.toml line 26: register[2].unit = 'kW': does not fit 'frequency'"),
        "{e}"
    );

    let e = err(&meter("").replace("signal = \"voltage\"", "signal = \"soc\""));
    assert!(
        e.starts_with("profiles/x.toml line 15: register[1].signal = 'soc': is not a meter signal"),
        "{e}"
    );

    let e = err(&meter("").replace("signal = \"voltage\"", "signal = \"volts\""));
    assert!(e.contains("line 15: register[1].signal = 'volts': is not one of active_power, voltage"), "{e}");

    let dup = meter(
        "\n[[register]]\nsignal = \"voltage\"\naddress = 10\nfunction = 4\ntype = \"f32\"\nunit = \"V\"\n",
    );
    let e = err(&dup);
    assert!(e.contains("line 29: register[3].signal = 'voltage': is mapped twice (first on line 14)"), "{e}");

    let e = err(&meter("").replace("address = 2\n", "address = 1\n"));
    assert!(
        e.contains("line 16: register[1].address = '1': overlaps register 'active_power' on line 7"),
        "{e}"
    );

    let e = err(&meter("").replacen("function = 4", "function = 5", 1));
    assert!(
        e.contains("line 10: register[0].function = '5': is not one of 3 (holding), 4 (input), 16"),
        "{e}"
    );

    let e = err(&meter("").replace("address_base = 0", "address_base = 2"));
    assert!(e.contains("line 5: address_base = '2': is not one of 0, 1, 30001, 40001"), "{e}");

    let e = err(&meter("").replacen("address = 0\n", "address = -1\n", 1));
    assert!(e.contains("line 9: register[0].address = '-1': is not a register"), "{e}");

    // A read signal in a write-only register.
    let e = err(&meter("").replacen("function = 4", "function = 16", 1));
    assert!(
        e.contains(
            "line 10: register[0].function = '16': 'active_power' is read, but this register is not readable"
        ),
        "{e}"
    );

    // Unknown fields and TOML syntax errors carry the line too.
    let e = err(&meter("").replacen("unit = \"W\"", "unit = \"W\"\ncolour = \"red\"", 1));
    assert!(e.starts_with("profiles/x.toml line ") && e.contains("unknown field `colour`"), "{e}");
    let e = err("manufacturer = \"x\"\nmodel = [");
    assert!(e.starts_with("profiles/x.toml line 2, column 10: "), "{e}");

    // A missing required signal.
    let full = meter("");
    let no_freq = full.get(..full.find("\n[[register]]\nsignal = \"frequency\"").unwrap()).unwrap();
    let e = err(no_freq);
    assert!(e.contains("line 4: register = 'frequency': is required for a meter profile"), "{e}");
}

#[test]
fn inverter_write_signals_need_write_access() {
    let inv = |setpoint_fn: &str| {
        format!(
            r#"manufacturer = "T"
model = "I"
source = "test"
device = "inverter"
address_base = 0

[[register]]
signal = "active_power"
address = 0
function = 3
type = "i16"
unit = "W"

[[register]]
signal = "state"
address = 1
function = 3
type = "u16"
enum = {{ 1 = "running", 0 = "standby" }}

[[register]]
signal = "setpoint_write"
address = 2
function = {setpoint_fn}
type = "i16"
unit = "W"
"#
        )
    };
    assert!(Profile::from_toml_str(&inv("16"), "x").is_ok());
    let e = err(&inv("3"));
    assert!(e.contains("line 24: register[2].function = '3': 'setpoint_write' is written, but this register has no write access"), "{e}");
    let e = err(&inv("4"));
    assert!(e.contains("no write access"), "{e}");
    // The state needs its enum.
    let e = err(&inv("16").replace("enum = { 1 = \"running\", 0 = \"standby\" }\n", ""));
    assert!(e.contains("register[1].enum: is missing"), "{e}");
    let e = err(&inv("16").replace("\"standby\"", "\"asleep\""));
    assert!(e.contains("register[1].enum.0 = 'asleep': is not one of standby, running, fault"), "{e}");
}

fn one(ty: &str, extra: &str) -> ems_devices::modbus::profile::Register {
    let text = meter("").replacen(
        "type = \"f32\"\nunit = \"W\"",
        &format!("type = \"{ty}\"\nunit = \"W\"\n{extra}"),
        1,
    );
    // Keep the other registers out of the way of 64-bit types.
    let text = text.replace("address = 2\n", "address = 10\n").replace("address = 4\n", "address = 12\n");
    Profile::from_toml_str(&text, "x")
        .unwrap_or_else(|e| panic!("{e}"))
        .register(Signal::ActivePower)
        .unwrap()
        .clone()
}

fn num(r: &ems_devices::modbus::profile::Register, words: &[u16]) -> Option<f64> {
    match decode_register(r, words, None).unwrap() {
        Some(Value::Number(x)) => Some(x),
        None => None,
        other => panic!("{other:?}"),
    }
}

#[test]
fn types_word_orders_scales_and_signs_decode() {
    assert_eq!(num(&one("u16", ""), &[0xFFFF]), Some(65_535.0));
    assert_eq!(num(&one("i16", ""), &[0xFFFF]), Some(-1.0));
    assert_eq!(num(&one("u32", ""), &[0x0001, 0x0002]), Some(65_538.0));
    assert_eq!(num(&one("u32", "word_order = \"little\""), &[0x0002, 0x0001]), Some(65_538.0));
    assert_eq!(num(&one("i32", ""), &[0xFFFF, 0xFFFE]), Some(-2.0));
    assert_eq!(num(&one("i64", ""), &[0xFFFF, 0xFFFF, 0xFFFF, 0xFFFD]), Some(-3.0));
    assert_eq!(num(&one("u64", "word_order = \"little\""), &[5, 0, 0, 0]), Some(5.0));
    // 1234.5 as f32 = 0x449A5000, high word first.
    assert_eq!(num(&one("f32", ""), &[0x449A, 0x5000]), Some(1234.5));
    assert_eq!(num(&one("f32", "word_order = \"little\""), &[0x5000, 0x449A]), Some(1234.5));
    // Scale, offset, unit factor and sign, in that order.
    assert_eq!(num(&one("i16", "scale = 0.1"), &[123]), Some(123.0 * 0.1));
    let kw = one("i16", "scale = 0.1\noffset = 1").clone();
    let kw = ems_devices::modbus::profile::Register { unit: "kW", unit_factor: 1000.0, ..kw };
    assert_eq!(num(&kw, &[20]), Some(3000.0));
    assert_eq!(num(&one("i16", "sign = \"invert\""), &[100]), Some(-100.0));
    // NaN and the vendor's not-available code are absent, not numbers.
    assert_eq!(num(&one("f32", ""), &[0x7FC0, 0x0000]), None);
    assert_eq!(num(&one("f32", ""), &[0x7F80, 0x0000]), None);
    assert_eq!(num(&one("i32", "absent = [0x80000000]"), &[0x8000, 0x0000]), None);
    assert_eq!(num(&one("i16", "absent = [-1]"), &[0xFFFF]), None);
    // A SunSpec-style scale register.
    let sf = one("i16", "scale_register = 20");
    assert_eq!(decode_register(&sf, &[150], Some((-1i16) as u16)).unwrap(), Some(Value::Number(15.0)));
    assert_eq!(decode_register(&sf, &[150], Some(0x8000)).unwrap(), None);
    assert!(decode_register(&sf, &[150], Some(30)).is_err());
}

#[test]
fn encoding_inverts_decoding_and_refuses_what_does_not_fit() {
    let sma = Profile::shipped("sma-sunny-island.toml").unwrap().unwrap();
    let w = sma.register(Signal::SetpointWrite).unwrap();
    assert_eq!(encode(w, -1500.0).unwrap(), vec![0xFFFF, 0xFA24]);
    assert_eq!(encode(w, 70_000.0).unwrap(), vec![0x0001, 0x1170]);
    let mut r = w.clone();
    r.value_type = ems_devices::modbus::profile::ValueType::I16;
    r.scale = 0.1;
    assert!(encode(&r, 4000.0).is_err(), "40000 does not fit an i16");
    assert_eq!(encode(&r, -100.0).unwrap(), vec![(-1000i16) as u16]);
    r.sign = ems_devices::modbus::profile::Sign::Invert;
    assert_eq!(encode(&r, -100.0).unwrap(), vec![1000]);
    r.value_type = ems_devices::modbus::profile::ValueType::U16;
    r.sign = ems_devices::modbus::profile::Sign::Normal;
    assert!(encode(&r, -1.0).is_err(), "negative into u16");
    assert!(encode(&r, f64::NAN).is_err());
    r.value_type = ems_devices::modbus::profile::ValueType::F32;
    r.word_order = ems_devices::modbus::profile::WordOrder::Little;
    r.scale = 1.0;
    assert_eq!(encode(&r, 1234.5).unwrap(), vec![0x5000, 0x449A]);
}

#[test]
fn the_sdm630_is_read_in_one_request() {
    let p = Profile::shipped("eastron-sdm630.toml").unwrap().unwrap();
    let plan = read_plan(&p);
    assert_eq!(plan.len(), 1, "{plan:?}");
    assert_eq!((plan[0].kind, plan[0].address, plan[0].count), (RegisterKind::Input, RegisterAddress(0), 72));
    // Without bridging gaps it takes one request per separate block.
    let tight = meter("").replace("address = 4\n", "address = 40\n");
    let plan = read_plan(&Profile::from_toml_str(&tight, "x").unwrap());
    assert_eq!(plan.len(), 2, "{plan:?}");
    // Adjacent blocks of different tables are never merged, and no request exceeds 125.
    let far = meter("").replace("address = 2\n", "address = 200\n").replace("max_gap", "x");
    let far = far.replace("address_base = 0\n", "address_base = 0\nmax_gap = 124\n");
    for r in read_plan(&Profile::from_toml_str(&far, "x").unwrap()) {
        assert!(r.count <= 125);
    }
}

#[test]
fn fuzz_entry_survives_known_inputs() {
    fuzz_entry(&[]);
    fuzz_entry(&[1]);
    fuzz_entry(&[1, 0, 0x7F, 0xC0, 0, 0]);
    let mut text = vec![0u8];
    text.extend_from_slice(meter("").as_bytes());
    fuzz_entry(&text);
}

proptest! {
    #[test]
    fn decoding_random_blocks_with_shipped_profiles_never_panics(words in proptest::collection::vec(any::<u16>(), 0..200)) {
        for (name, text) in SHIPPED_PROFILES {
            let p = Profile::from_toml_str(text, name).unwrap();
            let image = RegisterImage::filled(&p, &words);
            if let Ok(values) = decode(&p, &image) {
                for (_, v) in values.iter() {
                    if let Some(Value::Number(x)) = v {
                        prop_assert!(x.is_finite());
                    }
                }
            }
        }
    }

    #[test]
    fn fuzz_entry_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        fuzz_entry(&data);
    }

    #[test]
    fn fuzz_entry_never_panics_on_mutated_profiles(pos in 0usize..600, byte in any::<u8>()) {
        let mut text = vec![0u8];
        text.extend_from_slice(SHIPPED_PROFILES[1].1.as_bytes());
        let at = 1 + pos % (text.len() - 1);
        if let Some(b) = text.get_mut(at) {
            *b = byte;
        }
        fuzz_entry(&text);
    }

    #[test]
    fn encode_then_decode_round_trips(w in -30_000i32..30_000) {
        let sma = Profile::shipped("sma-sunny-island.toml").unwrap().unwrap();
        let r = sma.register(Signal::SetpointWrite).unwrap();
        let words = encode(r, f64::from(w)).unwrap();
        let mut rr = r.clone();
        rr.read = true;
        prop_assert_eq!(decode_register(&rr, &words, None).unwrap(), Some(Value::Number(f64::from(w))));
    }
}
