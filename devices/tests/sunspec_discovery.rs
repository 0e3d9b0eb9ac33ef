//! SunSpec discovery, chain walking and the installer's scan over in-memory register images.
#![allow(clippy::unwrap_used, clippy::panic)]

use ems_devices::modbus::sunspec::discovery::{discover_at, BaseProbe};
use ems_devices::modbus::sunspec::{discover, scan, PointValue, SunSpecError, SunSpecImage};
use ems_devices::modbus::{
    LinkError, MemoryRegisters, ModbusException, RegisterAddress, RegisterClient, RegisterKind,
};
use ems_devices::traits::{DeviceError, ErrorKind};
use pollster::block_on;

/// Fails every request touching `[from, to)` with a link timeout.
struct DeadRange {
    inner: MemoryRegisters,
    from: u16,
    to: u16,
}

impl RegisterClient for DeadRange {
    async fn read(
        &mut self,
        kind: RegisterKind,
        address: RegisterAddress,
        count: u16,
    ) -> Result<Result<Vec<u16>, ModbusException>, LinkError> {
        if address.0 >= self.from && address.0 < self.to {
            return Err(LinkError::Timeout(1000));
        }
        self.inner.read(kind, address, count).await
    }
    async fn write(
        &mut self,
        address: RegisterAddress,
        values: &[u16],
    ) -> Result<Result<(), ModbusException>, LinkError> {
        self.inner.write(address, values).await
    }
}

fn inverter_image(base: u16) -> SunSpecImage {
    let mut img = SunSpecImage::new(RegisterAddress(base));
    img.add_model(1).unwrap().add_model(103).unwrap().add_model(120).unwrap();
    img.set_text(1, "Mn", "ACME").unwrap().set_text(1, "SN", "SN-0001").unwrap();
    img.set(103, "V_SF", -1.0).unwrap().set(103, "PhVphA", 230.1).unwrap();
    img.set(103, "W_SF", 0.0).unwrap().set(103, "W", -2500.0).unwrap();
    img.set_symbol(103, "St", "MPPT").unwrap();
    img
}

#[test]
fn discovery_at_each_base_address() {
    for base in [40_000u16, 0, 50_000] {
        let mut regs = inverter_image(base).finish();
        let map = block_on(discover(&mut regs)).unwrap();
        assert_eq!(map.base_address, RegisterAddress(base));
        let ids: Vec<(u16, u16, u16)> = map.models.iter().map(|m| (m.id, m.address.0, m.length)).collect();
        assert_eq!(ids, vec![(1, base + 2, 66), (103, base + 70, 50), (120, base + 122, 26)]);
    }
}

#[test]
fn discovery_failures_name_the_addresses() {
    // Nothing there: three exceptions.
    let mut empty = MemoryRegisters::default();
    let e = block_on(discover(&mut empty)).unwrap_err();
    match &e {
        SunSpecError::NotFound { attempts } => {
            let addrs: Vec<u16> = attempts.iter().map(|(a, _)| a.0).collect();
            assert_eq!(addrs, vec![40_000, 0, 50_000]);
            assert!(attempts
                .iter()
                .all(|(_, p)| *p == BaseProbe::Exception(ModbusException::IllegalDataAddress)));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(e.kind(), ErrorKind::Refused);
    assert!(e.to_string().contains("at 40000") && e.to_string().contains("at 50000"));
    // Wrong marker at 40000, link dead at 0, the real one at 50000.
    let mut regs = inverter_image(50_000).finish();
    regs.put(40_000, &[0x1234, 0x5678]);
    let mut dead = DeadRange { inner: regs, from: 0, to: 1 };
    let map = block_on(discover(&mut dead)).unwrap();
    assert_eq!(map.base_address, RegisterAddress(50_000));
    // Link dead everywhere → a timeout kind.
    let mut dead = DeadRange { inner: MemoryRegisters::default(), from: 0, to: u16::MAX };
    assert_eq!(block_on(discover(&mut dead)).unwrap_err().kind(), ErrorKind::Timeout);
    // discover_at checks the marker.
    let mut regs = inverter_image(40_000).finish();
    assert!(block_on(discover_at(&mut regs, RegisterAddress(0))).is_err());
    assert_eq!(block_on(discover_at(&mut regs, RegisterAddress(40_000))).unwrap().models.len(), 3);
}

#[test]
fn chain_walk_handles_long_models_and_corrupt_chains() {
    // 701 is 153 registers long: more than one request.
    let mut img = SunSpecImage::new(RegisterAddress(40_000));
    img.add_model(1).unwrap().add_model(701).unwrap().add_model(802).unwrap();
    img.set(701, "W_SF", 0.0).unwrap().set(701, "W", 4000.0).unwrap();
    img.set_text(701, "MnAlrmInfo", "tail of a long model").unwrap();
    let mut regs = img.finish();
    let before = regs.requests;
    let scanned = block_on(scan(&mut regs)).unwrap();
    let m701 = scanned.models.iter().find(|m| m.id == 701).unwrap();
    assert_eq!(m701.length, 153);
    assert_eq!(m701.point("W"), Some(&PointValue::Scaled { value: 4000.0, units: Some("W") }));
    assert_eq!(m701.point("MnAlrmInfo"), Some(&PointValue::Text("tail of a long model".to_owned())));
    // marker + first header + 1 (model 1) + 2 (701) + 1 (802) requests.
    assert_eq!(regs.requests - before, 6);

    // A chain running past 65535.
    let mut regs = MemoryRegisters::default();
    regs.put(50_000, &[0x5375, 0x6E53, 1, 20_000]);
    regs.put(40_000, &[0, 0]);
    let e = block_on(discover(&mut regs)).unwrap_err();
    assert!(matches!(e, SunSpecError::BadChain { address: RegisterAddress(50_002), .. }), "{e}");
    assert_eq!(e.kind(), ErrorKind::Decode);
    // No end marker: the chain ends at the exception.
    let mut regs = MemoryRegisters::default();
    regs.put(40_000, &[0x5375, 0x6E53, 64_500, 2, 7, 8]);
    let map = block_on(discover(&mut regs)).unwrap();
    assert_eq!(map.models.len(), 1);
    let s = block_on(scan(&mut regs)).unwrap();
    assert_eq!(s.models.len(), 1);
    assert!(s.models[0].decode_error.is_some());
    // A marker followed by the end marker: no models.
    let mut regs = SunSpecImage::new(RegisterAddress(0)).finish();
    assert!(block_on(discover(&mut regs)).unwrap().models.is_empty());
}

#[test]
fn scan_round_trips_the_image_and_renders_the_issue_json() {
    let mut regs = inverter_image(40_000).finish();
    let s = block_on(scan(&mut regs)).unwrap();
    let j = s.to_json();
    assert_eq!(j["base_address"], 40_000);
    assert_eq!(j["models"][0]["id"], 1);
    assert_eq!(j["models"][0]["address"], 40_002);
    assert_eq!(j["models"][0]["length"], 66);
    assert_eq!(j["models"][0]["points"]["Mn"], "ACME");
    assert_eq!(j["models"][0]["points"]["SN"], "SN-0001");
    assert_eq!(j["models"][1]["points"]["PhVphA"], serde_json::json!({"value": 230.1, "units": "V"}));
    assert_eq!(j["models"][1]["points"]["W"], serde_json::json!({"value": -2500.0, "units": "W"}));
    assert_eq!(j["models"][1]["points"]["St"], "MPPT");
    // Absent points are left out.
    assert!(j["models"][1]["points"].get("AphB").is_none());
    assert!(j["models"][0]["points"].get("Md").is_none());
}

#[test]
fn swapped_model_order_and_unknown_models_scan() {
    let mut img = SunSpecImage::new(RegisterAddress(40_000));
    img.add_model(103).unwrap().add_raw_model(64_001, &[1, 2, 3]);
    img.add_model(1).unwrap();
    img.set_text(1, "Mn", "X").unwrap();
    let mut regs = img.finish();
    let s = block_on(scan(&mut regs)).unwrap();
    let ids: Vec<u16> = s.models.iter().map(|m| m.id).collect();
    assert_eq!(ids, vec![103, 64_001, 1]);
    assert!(s.models[1].decode_error.is_some());
    assert_eq!(s.models[2].point("Mn"), Some(&PointValue::Text("X".to_owned())));
    assert!(s.to_json()["models"][1]["error"].is_string());
}

#[test]
fn read_models_reads_contiguous_blocks_with_as_few_requests_as_possible() {
    use ems_devices::modbus::sunspec::discovery::read_models;
    let mut img =
        ems_devices::modbus::sunspec::SunSpecImage::new(ems_devices::modbus::RegisterAddress(40_000));
    img.add_model(1).unwrap().add_model(701).unwrap().add_model(702).unwrap().add_model(704).unwrap();
    img.add_model_with_counts(714, &[("NPrt", 1)]).unwrap();
    img.set(701, "W_SF", 0.0).unwrap().set(701, "W", 1234.0).unwrap();
    let mut regs = img.finish();
    let map = pollster::block_on(ems_devices::modbus::sunspec::discover(&mut regs)).unwrap();
    let wanted: Vec<_> = [701u16, 704, 714].iter().map(|id| *map.find(*id).unwrap()).collect();
    let span: usize = {
        let first = wanted[0].address.0 as usize;
        let last = wanted[2].address.0 as usize + wanted[2].length as usize + 2;
        last - first
    };
    let before = regs.requests;
    let models = pollster::block_on(read_models(&mut regs, &wanted)).unwrap();
    let used = regs.requests - before;
    // One contiguous span (702 bridged), read in ceil(span / 125) requests.
    assert_eq!(usize::try_from(used).unwrap(), span.div_ceil(125), "span {span}");
    assert_eq!(models.len(), 3);
    assert_eq!(models[0].id, 701);
    assert_eq!(models[0].number("W"), Some(1234.0));
    assert_eq!((models[1].id, models[2].id), (704, 714));
}
