//! SunSpec definitions and decoding: every point type, scale factors, not-implemented values,
//! word order, wrong model lengths, and never panicking on garbage.
// Register fixtures are 16-bit patterns: signed and wider test values are written into them
// bit for bit, which is what these casts mean.
#![allow(clippy::cast_sign_loss, clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
// Test code: a failed unwrap or panic is the test failing.
#![allow(clippy::unwrap_used, clippy::panic)]

use ems_devices::modbus::sunspec::decode::{
    decode_block, decode_model, encode_point, DecodeError, PointValue,
};
use ems_devices::modbus::sunspec::fuzz_entry;
use ems_devices::modbus::sunspec::model::{self, PointType};
use proptest::prelude::*;

/// A block for model `id` with every point not implemented (from the image builder).
fn blank(id: u16) -> Vec<u16> {
    let mut img = ems_devices::modbus::sunspec::SunSpecImage::new(ems_devices::modbus::RegisterAddress(0));
    img.add_model(id).unwrap();
    let regs = img.registers().to_vec();
    regs[2..].to_vec()
}

fn put(block: &mut [u16], id: u16, name: &str, regs: &[u16]) {
    let off = model::model(id).unwrap().point_offset(name).unwrap();
    block[off..off + regs.len()].copy_from_slice(regs);
}

#[test]
fn every_json_file_is_embedded_and_parses() {
    assert!(model::definition_errors().is_empty(), "{:?}", model::definition_errors());
    let mut ids = model::supported_models();
    ids.sort_unstable();
    assert_eq!(
        ids,
        vec![1, 101, 102, 103, 120, 121, 122, 123, 124, 701, 702, 703, 704, 705, 713, 714, 715, 802]
    );
    // Model 1 is 66 registers long, its first data point Mn at offset 2 and 16 registers.
    let m1 = model::model(1).unwrap();
    assert_eq!(m1.nominal_length(), 66);
    assert_eq!(m1.point_offset("Mn"), Some(2));
    assert_eq!(m1.point("Mn").map(|p| (p.ty, p.size)), Some((PointType::String, 16)));
}

#[test]
fn a_blank_block_has_no_points() {
    for id in model::supported_models() {
        let d = decode_model(id, &blank(id)).unwrap();
        // Only count points (set to 1 by the builder) may show up.
        for p in &d.points {
            assert!(matches!(p.value, PointValue::Integer { .. }), "model {id}: {} = {:?}", p.path, p.value);
        }
    }
}

#[test]
fn inverter_103_decodes_with_scale_factors() {
    let mut b = blank(103);
    put(&mut b, 103, "A", &[123]);
    put(&mut b, 103, "A_SF", &[0xFFFE]); // -2
    put(&mut b, 103, "PhVphA", &[2301]);
    put(&mut b, 103, "V_SF", &[0xFFFF]); // -1
    put(&mut b, 103, "W", &[(-1500i16) as u16]);
    put(&mut b, 103, "W_SF", &[0]);
    put(&mut b, 103, "Hz", &[5001]);
    put(&mut b, 103, "Hz_SF", &[0x8000]); // not implemented → Hz absent
    put(&mut b, 103, "WH", &[0x0001, 0x0002]); // acc32, big-endian words
    put(&mut b, 103, "WH_SF", &[3]);
    put(&mut b, 103, "St", &[4]);
    put(&mut b, 103, "Evt1", &[0x0000, 0x0005]);
    let d = decode_model(103, &b).unwrap();
    assert_eq!(d.number("A"), Some(1.23));
    assert_eq!(d.get("PhVphA"), Some(&PointValue::Scaled { value: 230.1, units: Some("V") }));
    assert_eq!(d.number("W"), Some(-1500.0));
    assert_eq!(d.get("Hz"), None);
    assert_eq!(d.number("WH"), Some(65_538_000.0));
    assert_eq!(d.get("St"), Some(&PointValue::Enum { value: 4, symbol: Some("MPPT") }));
    match d.get("Evt1") {
        Some(PointValue::Bitfield { bits: 5, symbols }) => assert_eq!(symbols.len(), 2),
        other => panic!("{other:?}"),
    }
    assert_eq!(d.get("W_SF"), Some(&PointValue::ScaleFactor(0)));
    assert_eq!(d.get("V_SF"), Some(&PointValue::ScaleFactor(-1)));
    // Unimplemented points are absent, not numbers.
    assert_eq!(d.get("AphB"), None);
    assert_eq!(d.get("TmpCab"), None);
}

#[test]
fn not_implemented_values_of_every_type_are_absent() {
    // 701 has int16, uint16, uint32, uint64, enum16, bitfield32, string.
    let b = blank(701);
    let d = decode_model(701, &b).unwrap();
    assert!(d.points.is_empty(), "{:?}", d.points);
    // int32 0x80000000 in 704 WSet; set its SF so only the sentinel makes it absent.
    let mut b = blank(704);
    put(&mut b, 704, "WSet_SF", &[0]);
    put(&mut b, 704, "WSet", &[0x8000, 0x0000]);
    assert_eq!(decode_model(704, &b).unwrap().get("WSet"), None);
    put(&mut b, 704, "WSet", &[0xFFFF, 0xFC18]); // -1000
    assert_eq!(decode_model(704, &b).unwrap().number("WSet"), Some(-1000.0));
}

#[test]
fn every_point_type_decodes() {
    let mut b = blank(701);
    put(&mut b, 701, "W_SF", &[0]);
    put(&mut b, 701, "Hz_SF", &[0xFFFE]);
    put(&mut b, 701, "TotWh_SF", &[0]);
    put(&mut b, 701, "W", &[0xFFFF]); // int16 -1
    put(&mut b, 701, "Hz", &[0x0000, 5000]); // uint32 → 50.00
    put(&mut b, 701, "TotWhInj", &[0, 0, 1, 0]); // uint64 → 65536
    put(&mut b, 701, "InvSt", &[3]);
    put(&mut b, 701, "Alrm", &[0x0000, 0x0001]);
    let text: Vec<u16> = b"OVERTEMP".chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
    put(&mut b, 701, "MnAlrmInfo", &text);
    let d = decode_model(701, &b).unwrap();
    assert_eq!(d.number("W"), Some(-1.0));
    assert_eq!(d.number("Hz"), Some(50.0));
    assert_eq!(d.number("TotWhInj"), Some(65_536.0));
    assert_eq!(d.get("InvSt"), Some(&PointValue::Enum { value: 3, symbol: Some("RUNNING") }));
    assert!(matches!(d.get("Alrm"), Some(PointValue::Bitfield { bits: 1, .. })));
    assert_eq!(d.get("MnAlrmInfo"), Some(&PointValue::Text("OVERTEMP".to_owned())));
    // bitfield16 in 124, acc64 in 122, enum32-free; pad never reported; sunssf seen above.
    let mut b = blank(124);
    put(&mut b, 124, "StorCtl_Mod", &[3]);
    let d = decode_model(124, &b).unwrap();
    assert_eq!(
        d.get("StorCtl_Mod"),
        Some(&PointValue::Bitfield { bits: 3, symbols: vec!["CHARGE".to_owned(), "DiSCHARGE".to_owned()] })
    );
    let mut b = blank(1);
    put(&mut b, 1, "Pad", &[0x8000]);
    put(&mut b, 1, "DA", &[7]);
    let d = decode_model(1, &b).unwrap();
    assert_eq!(d.get("Pad"), None);
    assert_eq!(d.number("DA"), Some(7.0));
    assert!(model::model(122).unwrap().group.points.iter().any(|p| p.ty == PointType::Acc64));
    let mut b = blank(122);
    put(&mut b, 122, "ActWh", &[0, 0, 0, 42]);
    assert_eq!(decode_model(122, &b).unwrap().number("ActWh"), Some(42.0));
}

#[test]
fn word_order_is_big_endian() {
    let mut b = blank(704);
    put(&mut b, 704, "WSet_SF", &[0]);
    put(&mut b, 704, "WSet", &[0x0001, 0x0000]);
    assert_eq!(decode_model(704, &b).unwrap().number("WSet"), Some(65_536.0));
    put(&mut b, 704, "WSet", &[0x0000, 0x0001]);
    assert_eq!(decode_model(704, &b).unwrap().number("WSet"), Some(1.0));
    // Encoding writes the high word first.
    let def = model::model(704).unwrap().point("WSet").unwrap();
    assert_eq!(encode_point(def, Some(0), 65_537.0), Some(vec![1, 1]));
    assert_eq!(encode_point(def, Some(1), -20.0), Some(vec![0xFFFF, 0xFFFE]));
}

#[test]
fn scale_factor_limits() {
    let mut b = blank(103);
    put(&mut b, 103, "W", &[15]);
    put(&mut b, 103, "W_SF", &[2]);
    assert_eq!(decode_model(103, &b).unwrap().number("W"), Some(1500.0));
    put(&mut b, 103, "W_SF", &[(-3i16) as u16]);
    assert_eq!(decode_model(103, &b).unwrap().number("W"), Some(0.015));
    put(&mut b, 103, "W_SF", &[0]);
    assert_eq!(decode_model(103, &b).unwrap().number("W"), Some(15.0));
    put(&mut b, 103, "W_SF", &[0x8000]);
    assert_eq!(decode_model(103, &b).unwrap().number("W"), None);
    put(&mut b, 103, "W_SF", &[11]);
    let e = decode_model(103, &b).unwrap_err();
    assert_eq!(e, DecodeError::ScaleFactorOutOfRange { model: 103, point: "W".to_owned(), sf: 11 });
    assert!(e.to_string().contains("model 103") && e.to_string().contains("point W"));
}

#[test]
fn wrong_lengths_are_tolerated() {
    let mut b = blank(103);
    put(&mut b, 103, "A", &[10]);
    put(&mut b, 103, "A_SF", &[0]);
    put(&mut b, 103, "St", &[4]);
    // Shorter L: only the points inside L decode.
    let mut short = b.clone();
    short[1] = 10;
    let d = decode_model(103, &short).unwrap();
    assert_eq!(d.number("A"), Some(10.0));
    assert_eq!(d.get("St"), None);
    // Longer L with extra registers: ignored.
    let mut long = b.clone();
    long[1] = 60;
    long.extend_from_slice(&[1; 10]);
    assert_eq!(decode_model(103, &long).unwrap().number("St"), Some(4.0));
    // A truncated block (fewer registers than L) decodes what is there.
    assert_eq!(decode_model(103, &b[..20]).unwrap().number("A"), Some(10.0));
    // Wrong ID / too short / unknown.
    assert_eq!(decode_model(101, &b), Err(DecodeError::WrongId { expected: 101, found: 103 }));
    assert_eq!(decode_model(103, &b[..1]), Err(DecodeError::TooShort { model: 103, len: 1 }));
    assert_eq!(decode_block(&[64_000, 0]), Err(DecodeError::UnknownModel { model: 64_000 }));
}

#[test]
fn repeating_and_nested_groups() {
    let mut img = ems_devices::modbus::sunspec::SunSpecImage::new(ems_devices::modbus::RegisterAddress(0));
    img.add_model_with_counts(705, &[("NCrv", 2), ("NPt", 3)]).unwrap();
    img.set(705, "V_SF", -1.0).unwrap();
    img.set(705, "DeptRef_SF", 0.0).unwrap();
    img.set(705, "Crv[2].Pt[3].V", 105.5).unwrap();
    img.set(705, "Crv[1].Pt[1].Var", -30.0).unwrap();
    let block = img.registers()[2..].to_vec();
    let d = decode_model(705, &block).unwrap();
    assert_eq!(d.number("Crv[2].Pt[3].V"), Some(105.5));
    assert_eq!(d.number("Crv[1].Pt[1].Var"), Some(-30.0));
    assert_eq!(d.number("NCrv"), Some(2.0));
    // L = 13 fixed + 2 × (10 + 3 × 2) = 45.
    assert_eq!(block[1], 45);
    // A count that claims more curves than fit stops at the block's end.
    let mut lie = block.clone();
    let ncrv = model::model(705).unwrap().point_offset("NCrv").unwrap();
    lie[ncrv] = 60_000;
    let d = decode_model(705, &lie).unwrap();
    assert!(d.points.len() < 100);
    // 714 ports.
    let mut img = ems_devices::modbus::sunspec::SunSpecImage::new(ems_devices::modbus::RegisterAddress(0));
    img.add_model_with_counts(714, &[("NPrt", 2)]).unwrap();
    img.set(714, "DCV_SF", 0.0).unwrap();
    img.set(714, "Prt[2].DCV", 750.0).unwrap();
    img.set_text(714, "Prt[1].IDStr", "string A").unwrap();
    let d = decode_model(714, &img.registers()[2..]).unwrap();
    assert_eq!(d.number("Prt[2].DCV"), Some(750.0));
    assert_eq!(d.get("Prt[1].IDStr"), Some(&PointValue::Text("string A".to_owned())));
    // Non-repeating nested groups (704 sync groups) are named by group.
    assert!(model::model(704).unwrap().layout(1000, &mut |_, _| 1).iter().any(|p| p.path == "PFWInj.PF"));
}

#[test]
fn json_values_have_units() {
    let v = PointValue::Scaled { value: 230.1, units: Some("V") };
    assert_eq!(v.as_json_value(), serde_json::json!({"value": 230.1, "units": "V"}));
    assert_eq!(
        PointValue::Enum { value: 4, symbol: Some("MPPT") }.as_json_value(),
        serde_json::json!("MPPT")
    );
    assert_eq!(PointValue::Enum { value: 40, symbol: None }.as_json_value(), serde_json::json!(40));
    assert_eq!(PointValue::Integer { value: 7, units: None }.as_json_value(), serde_json::json!(7));
    let mut b = blank(802);
    put(&mut b, 802, "Evt1", &[0x0010, 0x0002]);
    let d = decode_model(802, &b).unwrap();
    assert_eq!(
        d.get("Evt1").unwrap().as_json_value(),
        serde_json::json!(["OVER_TEMP_ALARM", "CONTACTOR_ERROR"])
    );
    put(&mut b, 802, "Evt1", &[0x8000, 0x0001]);
    let d = decode_model(802, &b).unwrap();
    assert_eq!(d.get("Evt1").unwrap().as_json_value(), serde_json::json!(["COMMUNICATION_ERROR", "bit31"]));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decoding_random_blocks_never_panics(pick in 0usize..18, body in proptest::collection::vec(any::<u16>(), 0..300), len in any::<Option<u16>>()) {
        let ids = model::supported_models();
        let id = ids[pick % ids.len()];
        let mut block = vec![id, len.unwrap_or(u16::try_from(body.len()).unwrap_or(0))];
        block.extend(body);
        let _ = decode_model(id, &block);
        let _ = decode_block(&block);
    }

    #[test]
    fn fuzz_entry_never_panics(data in proptest::collection::vec(any::<u8>(), 0..700)) {
        fuzz_entry(&data);
    }

    #[test]
    fn encode_then_decode_round_trips(raw in -32_767i32..=32_767, sf in -4i16..=4) {
        let def = model::model(103).unwrap().point("W").unwrap();
        let value = ems_devices::modbus::sunspec::decode::apply_scale(i128::from(raw), sf);
        let regs = encode_point(def, Some(sf), value).unwrap();
        prop_assert_eq!(regs, vec![(raw as i16) as u16]);
    }
}
