//! P1 smart meters: recorded DSMR 4.2 / 5.0 / ESMR 5 telegrams (tests/data/p1, sources in
//! SOURCES.md), corrupt variants (flipped byte, truncated, no `!`, bad value), arbitrary bytes,
//! and the `P1Meter` against a local TCP "dongle" that plays the telegrams.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use ems_core::{Millis, Volts, WattHours, Watts};
use ems_devices::p1::{parse_telegram, Framer, P1Endpoint, P1Error, P1Meter, P1MeterOptions, Telegram};
use ems_devices::traits::{DeviceError, ErrorKind, Meter};
use proptest::prelude::*;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

fn data(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/data/p1/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

const V50: &str = "dsmr50_dsmr_parser.txt";
const V42: &str = "dsmr42_kaifa_dsmr_parser.txt";
const SAGEMCOM: &str = "esmr50_sagemcom_t210dr_dsmr_parser.txt";

fn w(x: f32) -> Watts {
    Watts::try_new(x).unwrap()
}

#[test]
fn dsmr50_recorded_telegram() {
    let t = parse_telegram(&data(V50)).unwrap();
    assert_eq!(t.header, "ISk5\\2MT382-1000");
    assert_eq!(t.manufacturer(), "ISk");
    assert_eq!(t.version.as_deref(), Some("50"));
    assert_eq!(t.crc, 0x6EEE);
    let ts = t.timestamp.unwrap();
    assert_eq!(
        (ts.year, ts.month, ts.day, ts.hour, ts.minute, ts.second, ts.dst),
        (2017, 1, 2, 19, 20, 2, false)
    );
    assert_eq!(t.equipment_id.as_deref(), Some("K8EG004046395507"));
    assert_eq!(t.tariff, Some(2));
    assert_eq!(t.power_import, Some(w(244.0)));
    assert_eq!(t.power_export, Some(w(0.0)));
    assert_eq!(t.net_power(), Some(w(244.0)));
    assert_eq!(t.energy_import[0], Some(WattHours::try_new(4426.0).unwrap()));
    assert_eq!(t.energy_export[0], Some(WattHours::try_new(2444.0).unwrap()));
    assert_eq!(t.phases[0].voltage, Some(Volts::try_new(230.0).unwrap()));
    assert_eq!(t.phases[2].voltage, Some(Volts::try_new(229.0).unwrap()));
    assert_eq!(t.phases[2].current.unwrap().get(), 0.86);
    assert_eq!(t.phases[2].import, Some(w(142.0)));
    assert_eq!(t.phases[1].export, Some(w(0.0)));
    let r = ems_devices::p1::reading_of(&t).unwrap();
    assert_eq!((r.active_power, r.voltage, r.frequency), (w(244.0), Volts::try_new(230.0).unwrap(), None));
}

#[test]
fn dsmr42_and_esmr_recorded_telegrams() {
    let t = parse_telegram(&data(V42)).unwrap();
    assert_eq!(t.manufacturer(), "KFM");
    assert_eq!(t.net_power(), Some(w(2027.0)));
    assert_eq!(t.phases[1].import, Some(w(1247.0)));
    assert_eq!(t.phases[1].current.unwrap().get(), 6.0);
    assert_eq!(t.timestamp.unwrap().year, 2016);
    // Without a voltage line a telegram cannot be a grid-meter reading: refused, never a guess.
    let e = ems_devices::p1::reading_of(&t).unwrap_err();
    assert!(e.contains("1-0:32.7.0"), "{e}");

    // ESMR 5 (Sagemcom T210-D, Luxembourg): W and Wh units, summer time flag.
    let t = parse_telegram(&data(SAGEMCOM)).unwrap();
    assert_eq!(t.manufacturer(), "EST");
    assert_eq!(t.net_power(), Some(w(286.0)));
    assert_eq!(t.energy_import[1], Some(WattHours::try_new(1_528_646.0).unwrap()));
    assert!(t.timestamp.unwrap().dst);
}

#[test]
fn a_flipped_byte_is_a_crc_mismatch_with_both_values() {
    let mut bytes = data(V50);
    // "1-0:1.7.0(00.244*kW)" → "00.944": a plausible reading that only the CRC catches.
    let at = bytes.windows(6).position(|x| x == b"00.244").unwrap() + 3;
    bytes[at] = b'9';
    let e = parse_telegram(&bytes).unwrap_err();
    let P1Error::CrcMismatch { expected, computed } = e else { panic!("{e:?}") };
    assert_eq!(expected, 0x6EEE);
    assert_ne!(computed, expected);
    let msg = e.to_string();
    assert!(msg.contains("6EEE") && msg.contains(&format!("{computed:04X}")), "{msg}");
}

#[test]
fn truncated_unterminated_and_bad_value_telegrams() {
    let full = data(V50);
    let bang = full.iter().position(|&b| b == b'!').unwrap();
    // Cut in the middle: no `!`.
    assert_eq!(parse_telegram(&full[..bang / 2]), Err(P1Error::NoEnd));
    // Cut inside the CRC.
    assert!(matches!(parse_telegram(&full[..bang + 3]), Err(P1Error::BadCrcField { .. })));
    // A truncated telegram followed by a good one in a stream: reported, the good one taken.
    let mut stream = full[..bang / 2].to_vec();
    stream.extend_from_slice(&full);
    let mut out = Vec::new();
    Framer::new().feed(&stream, |r| out.push(r));
    assert!(matches!(out.as_slice(), [Err(P1Error::Truncated { .. }), Ok(_)]), "{out:?}");
    // A bad value with a valid CRC (a meter bug or a forged frame): the line is named.
    let text = String::from_utf8(full[..=bang].to_vec()).unwrap().replace("(0230.0*V)", "(0230.0*kV)");
    let crc = ems_devices::p1::crc::crc16_arc(text.as_bytes());
    let e = parse_telegram(format!("{text}{crc:04X}\r\n").as_bytes()).unwrap_err().to_string();
    assert!(e.contains("1-0:32.7.0(0230.0*kV)") && e.contains("not V"), "{e}");
}

#[test]
fn all_recorded_telegrams_in_one_stream_with_garbage() {
    let mut stream = b"\x00\xff garbage".to_vec();
    for name in [V50, V42, SAGEMCOM] {
        stream.extend_from_slice(&data(name));
        stream.extend_from_slice(b"xx");
    }
    let mut out: Vec<Result<Telegram, P1Error>> = Vec::new();
    let mut f = Framer::new();
    for chunk in stream.chunks(7) {
        f.feed(chunk, |r| out.push(r));
    }
    assert_eq!(out.len(), 3);
    assert!(out.iter().all(Result::is_ok), "{out:?}");
    assert_eq!(f.skipped_bytes(), 10 + 6);
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = parse_telegram(&bytes);
        Framer::new().feed(&bytes, |_| {});
    }

    #[test]
    fn mutated_recorded_telegrams_never_panic(pos in 0usize..2000, byte in any::<u8>(), cut in 0usize..2000) {
        let mut t = data(V50);
        let n = t.len();
        t[pos % n] = byte;
        t.truncate(cut % (n + 1));
        if let Ok(parsed) = parse_telegram(&t) {
            // Accepted only when the content still gives the carried CRC.
            prop_assert_eq!(parsed.crc, 0x6EEE);
        }
        Framer::new().feed(&t, |_| {});
    }
}

/// A local TCP "P1 dongle": accepts one connection and writes what the test sends it.
async fn dongle() -> (String, tokio::sync::mpsc::UnboundedSender<Vec<u8>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        while let Some(bytes) = rx.recv().await {
            if bytes.is_empty() {
                return; // close the link
            }
            sock.write_all(&bytes).await.unwrap();
        }
    });
    (addr, tx)
}

/// Read the meter until `done` holds (at most 5 s), then once more.
async fn read_until(
    m: &mut P1Meter,
    done: impl Fn(&P1Meter) -> bool,
) -> Result<ems_devices::traits::MeterReading, ems_devices::p1::P1MeterError> {
    for _ in 0..500 {
        let _ = m.read().await;
        if done(m) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(done(m), "condition not reached: {:?}", m.stats());
    m.read().await
}

#[tokio::test]
async fn meter_over_tcp_skips_a_corrupt_telegram_and_goes_stale_never_zero() {
    let (addr, tx) = dongle().await;
    let options = P1MeterOptions {
        max_age: Millis::new(1500),
        reconnect_every: Duration::from_millis(50),
        ..Default::default()
    };
    let mut m = P1Meter::new(addr.parse::<P1Endpoint>().unwrap(), options);
    // Nothing yet: stale (a link-kind error), never 0 W.
    let e = m.read().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);

    let good = data(V50);
    tx.send(good.clone()).unwrap();
    let r = read_until(&mut m, |m| m.stats().telegrams == 1).await.unwrap();
    assert_eq!(r.active_power, w(244.0));
    assert_eq!(m.stats().telegrams, 1);

    // A corrupt telegram (flipped byte): skipped and counted; the reading stays the last good one
    // and ages.
    let mut bad = good.clone();
    let at = bad.windows(6).position(|x| x == b"00.244").unwrap() + 3;
    bad[at] = b'9';
    tx.send(bad).unwrap();
    read_until(&mut m, |m| m.stats().rejected == 1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = m.read().await.unwrap();
    assert_eq!(r.active_power, w(244.0));
    assert!(m.reading_age() >= Millis::new(300), "age {:?}", m.reading_age());
    let s = m.stats();
    assert_eq!((s.telegrams, s.rejected), (1, 1));
    assert!(m.last_error().unwrap().contains("CRC mismatch"), "{:?}", m.last_error());

    // The next good telegram (an export this time) is taken, fresh.
    let text = String::from_utf8(good[..=good.iter().position(|&b| b == b'!').unwrap()].to_vec())
        .unwrap()
        .replace("1-0:1.7.0(00.244*kW)", "1-0:1.7.0(00.000*kW)")
        .replace("1-0:2.7.0(00.000*kW)", "1-0:2.7.0(01.500*kW)");
    let crc = ems_devices::p1::crc::crc16_arc(text.as_bytes());
    tx.send(format!("{text}{crc:04X}\r\n").into_bytes()).unwrap();
    let r = read_until(&mut m, |m| m.stats().telegrams == 2).await.unwrap();
    assert_eq!(r.active_power, w(-1500.0));
    // Fresh again: younger than the 300 ms the previous reading was held.
    assert!(m.reading_age() < Millis::new(300), "age {:?}", m.reading_age());
    assert_eq!(m.stats().telegrams, 2);

    // The dongle goes silent: after max_age the meter is stale, not 0 W.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let e = m.read().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert!(e.to_string().contains("no valid telegram"), "{e}");

    // The link drops: counted, and reconnection is attempted (the test dongle accepts once).
    tx.send(Vec::new()).unwrap();
    let _ = read_until(&mut m, |m| m.stats().disconnects == 1).await;
    assert!(m.stats().connects >= 1);
}

#[tokio::test]
async fn an_unreachable_dongle_reads_stale_without_blocking() {
    // A port nobody listens on.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    drop(l);
    let mut m = P1Meter::new(addr.parse().unwrap(), P1MeterOptions::default());
    for _ in 0..5 {
        assert_eq!(m.read().await.unwrap_err().kind(), ErrorKind::Timeout);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = read_until(&mut m, |m| m.stats().connect_failures >= 1).await;
    assert!(m.last_error().unwrap().contains("connect to"), "{:?}", m.last_error());
}

/// The serial transport over a pseudo-terminal pair (`tokio_serial::SerialStream::pair`): the
/// meter opens the slave by its path, as it would `/dev/ttyUSB0`; the test writes telegrams into
/// the master side.
#[tokio::test]
async fn meter_over_a_serial_port() {
    use ems_devices::modbus::transport::SerialSettings;
    use tokio_serial::SerialPort as _;
    let (mut master, slave) = tokio_serial::SerialStream::pair().unwrap();
    let path = slave.name().unwrap();
    // Keep the slave open without its lock (closing the last slave fd makes the master read EIO).
    let _keep_open = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
    drop(slave);
    let endpoint: P1Endpoint = format!("p1-serial://{path}").parse().unwrap();
    assert_eq!(endpoint, P1Endpoint::Serial(SerialSettings::new(path.clone(), 115_200)));
    let mut m = P1Meter::new(endpoint, P1MeterOptions::default());
    let _ = m.read().await; // opens the port
    assert_eq!(m.stats().connects, 1, "{:?}", m.last_error());
    master.write_all(b"\r\n").await.unwrap();
    master.write_all(&data(V50)).await.unwrap();
    let r = read_until(&mut m, |m| m.stats().telegrams == 1).await.unwrap();
    assert_eq!(r.active_power, w(244.0));
}
