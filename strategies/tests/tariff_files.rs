//! Tariff files: the shipped examples, daylight-saving days, holidays, demand charges and the
//! errors a wrong file gets.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns: a failure should fail the test loudly

use ems_strategies::tariff::{DemandBasis, PriceSource, Tariff, TariffError};
use ems_strategies::{Money, Price};
use jiff::Timestamp;
use std::path::{Path, PathBuf};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/tariffs").join(name)
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn close(a: Price, b: f64) -> bool {
    (a.per_kwh() - b).abs() < 1e-12
}

fn parse(text: &str) -> Result<Tariff, TariffError> {
    Tariff::from_toml(text, Path::new("/nowhere/test.toml"))
}

#[test]
fn dynamic_example_loads_relative_price_file() {
    let t = Tariff::load(example("dynamic.toml")).unwrap();
    assert_eq!(t.time_zone().iana_name(), Some("Europe/Berlin"));
    // 2018-01-01 07:00 CET (06:00 UTC): spot -76.01 EUR/MWh, the year's minimum.
    let q = t.import_quote(ts("2018-01-01T06:00:00Z"));
    assert_eq!(q.source, PriceSource::Spot);
    assert!(close(q.price, (-0.07601 + 0.20) * 1.19), "{}", q.price);
    assert!(q.price.per_kwh() > 0.0);
    // Fall-back day: the two 02:00 local hours have different prices (41.62 then 41.59).
    assert!(close(t.import_price(ts("2018-10-28T00:30:00Z")), (0.04162 + 0.20) * 1.19));
    assert!(close(t.import_price(ts("2018-10-28T01:30:00Z")), (0.04159 + 0.20) * 1.19));
    // Outside the series: the documented all-in fallback.
    let q = t.import_quote(ts("2019-06-01T12:00:00Z"));
    assert_eq!(q, ems_strategies::tariff::Quote { price: Price::new(0.30), source: PriceSource::Fallback });
    assert!(close(t.export_price(ts("2018-06-01T12:00:00Z")), 0.08));
    assert!(t.demand_charge().is_none());
    // The fallback is about the year's mean of the formula.
    let spot_mean = t.spot_series().unwrap().mean().unwrap().per_kwh();
    let mean = (spot_mean + 0.20) * 1.19;
    assert!((mean - 0.30).abs() < 0.015, "mean import price {mean}");
    // Planning with a forecast spot price goes through the same formula.
    assert!(close(t.import_price_for_spot(ts("2019-06-01T12:00:00Z"), Price::new(0.05)), 0.25 * 1.19));
}

#[test]
fn tou_example_dst_and_holidays() {
    let t = Tariff::load(example("tou.toml")).unwrap();
    assert_eq!(t.monthly_fee(), Money::new(9.90));
    // Ordinary winter weekday (Tue 2018-01-16, CET = UTC+1): peak 17:00-21:00 local.
    assert!(close(t.import_price(ts("2018-01-16T15:45:00Z")), 0.25)); // 16:45 local
    assert!(close(t.import_price(ts("2018-01-16T16:00:00Z")), 0.40)); // 17:00 local
    assert!(close(t.import_price(ts("2018-01-16T19:59:59Z")), 0.40)); // 20:59:59 local
    assert!(close(t.import_price(ts("2018-01-16T20:00:00Z")), 0.25)); // 21:00 local
                                                                      // Monday 2018-03-26, the first weekday after spring-forward (CEST = UTC+2): still 17:00 local.
    assert!(close(t.import_price(ts("2018-03-26T14:45:00Z")), 0.25)); // 16:45 local
    assert!(close(t.import_price(ts("2018-03-26T15:00:00Z")), 0.40)); // 17:00 local
    assert!(close(t.import_price(ts("2018-03-26T19:00:00Z")), 0.25)); // 21:00 local
                                                                      // Friday before and Monday after fall-back (2018-10-26 CEST, 2018-10-29 CET).
    assert!(close(t.import_price(ts("2018-10-26T15:00:00Z")), 0.40));
    assert!(close(t.import_price(ts("2018-10-26T19:00:00Z")), 0.25));
    assert!(close(t.import_price(ts("2018-10-29T15:00:00Z")), 0.25)); // 16:00 CET
    assert!(close(t.import_price(ts("2018-10-29T16:00:00Z")), 0.40)); // 17:00 CET
                                                                      // Weekend: off-peak all day.
    assert!(close(t.import_price(ts("2018-01-20T17:00:00Z")), 0.25));
    // Holidays on weekdays: Good Friday, Wednesday 2018-10-03.
    assert!(close(t.import_price(ts("2018-03-30T17:00:00Z")), 0.25));
    assert!(close(t.import_price(ts("2018-10-03T16:00:00Z")), 0.25));
    // The day after is an ordinary Thursday.
    assert!(close(t.import_price(ts("2018-10-04T16:00:00Z")), 0.40));
    assert!(t.calendar().is_holiday(jiff::civil::date(2018, 12, 25)));
}

const TOU_DEMAND: &str = r#"
time_zone = "Europe/Berlin"
holidays = ["2018-12-24"]
[import]
kind = "time-of-use"
[import.weekday]
base_per_kwh = 0.20
slots = [ { from = "00:00", to = "06:00", price_per_kwh = 0.15 },
          { from = "17:00", to = "21:00", price_per_kwh = 0.40, peak = true } ]
[import.weekend]
base_per_kwh = 0.18
[import.holiday]
base_per_kwh = 0.17
[export]
kind = "spot"
factor = 0.9
floor_per_kwh = 0.0
fallback_per_kwh = 0.05
[spot]
start = "2018-12-24T00:00:00+01:00"
step_minutes = 15
prices_per_mwh = [40.0, -20.0]
[demand_charge]
per_kw = 10.0
basis = "peak-windows"
"#;

#[test]
fn holiday_schedule_spot_export_and_peak_window_demand() {
    let t = parse(TOU_DEMAND).unwrap();
    // Monday 2018-12-24 is a listed holiday: the holiday schedule applies all day.
    assert!(close(t.import_price(ts("2018-12-24T16:00:00Z")), 0.17));
    assert!(!t.counts_for_demand(ts("2018-12-24T16:00:00Z")));
    // Tuesday 2018-12-25 is not listed here: an ordinary weekday.
    assert!(close(t.import_price(ts("2018-12-25T02:00:00Z")), 0.15));
    assert!(close(t.import_price(ts("2018-12-25T16:00:00Z")), 0.40));
    assert!(t.counts_for_demand(ts("2018-12-25T16:00:00Z")));
    assert!(!t.counts_for_demand(ts("2018-12-25T20:00:00Z")));
    // Export: 0.9 x spot, floored at zero, fallback outside the two quarter-hours.
    assert!(close(t.export_price(ts("2018-12-23T23:10:00Z")), 0.036));
    assert!(close(t.export_price(ts("2018-12-23T23:20:00Z")), 0.0));
    assert_eq!(t.export_quote(ts("2018-12-23T23:30:00Z")).source, PriceSource::Fallback);
    let d = t.demand_charge().unwrap();
    assert_eq!(d.basis(), DemandBasis::PeakWindows);
    assert_eq!(d.charge(ems_core::watts!(4500.0)), Money::new(45.0));
}

fn error_of(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn errors_name_file_field_and_value() {
    let base = "time_zone = \"Europe/Berlin\"\n[import]\nkind = \"fixed\"\nprice_per_kwh = 0.3\n[export]\nkind = \"fixed\"\nprice_per_kwh = 0.08\n";
    assert!(parse(base).is_ok());
    // Holidays as TOML dates or strings, mixed.
    let t = parse(&format!("holidays = [2018-12-25, \"2018-12-26\"]\n{base}")).unwrap();
    assert_eq!(t.calendar().holidays().count(), 2);
    let e = error_of(&format!("holidays = [2018-12-25T10:00:00]\n{base}"));
    assert!(e.contains("holidays[0]"), "{e}");

    let e = error_of(&base.replace("price_per_kwh = 0.3", "price_per_kwh = 0.3\nprise = 1"));
    assert!(e.contains("/nowhere/test.toml") && e.contains("prise"), "{e}");
    let e = error_of(&format!("colour = \"red\"\n{base}"));
    assert!(e.contains("colour"), "{e}");
    let e = error_of(&base.replace("Europe/Berlin", "Europe/Atlantis"));
    assert!(e.contains("time_zone") && e.contains("Europe/Atlantis"), "{e}");
    // Invalid values name the line where the file sets them (ems-tomlfile).
    assert!(e.contains("test.toml line 1: time_zone = \"Europe/Atlantis\": unknown time zone"), "{e}");
    let e = error_of(&base.replace("price_per_kwh = 0.3", "price_per_kwh = 0.3\nvat_percent = 19"));
    assert!(e.contains("import.vat_percent") && e.contains("does not apply to kind = \"fixed\""), "{e}");
    assert!(e.contains("line 5: import.vat_percent: does not apply"), "{e}");
    let e = error_of(&base.replace("price_per_kwh = 0.3", "price_per_kwh = \"cheap\""));
    assert!(e.contains("line 4") && e.contains("cheap"), "{e}");
    let e = error_of(&base.replace("\"fixed\"\nprice_per_kwh = 0.3", "\"flat\"\nprice_per_kwh = 0.3"));
    assert!(e.contains("flat"), "{e}");

    let tou = TOU_DEMAND.replace("to = \"21:00\"", "to = \"25:00\"");
    let e = error_of(&tou);
    assert!(e.contains("import.weekday.slots[1].to") && e.contains("25:00"), "{e}");
    let tou = TOU_DEMAND.replace("to = \"06:00\"", "to = \"18:00\"");
    let e = error_of(&tou);
    assert!(e.contains("import.weekday.slots[1]") && e.contains("overlaps"), "{e}");
    let tou = TOU_DEMAND.replace("[\"2018-12-24\"]", "[\"2018-12-32\"]");
    let e = error_of(&tou);
    assert!(e.contains("holidays[0]") && e.contains("2018-12-32"), "{e}");
    let tou = TOU_DEMAND.replace("step_minutes = 15", "step_minutes = 10");
    let e = error_of(&tou);
    assert!(e.contains("spot") && e.contains("quarter-hour"), "{e}");

    let e = error_of(
        &base.replace("[export]", "[demand_charge]\nper_kw = 5\nbasis = \"peak-windows\"\n[export]"),
    );
    assert!(e.contains("demand_charge.basis"), "{e}");
    let e = error_of(&base.replace("[export]", "[demand_charge]\nper_kw = -5\n[export]"));
    assert!(e.contains("demand_charge.per_kw") && e.contains("-5"), "{e}");
    let e = error_of(&base.replace(
        "kind = \"fixed\"\nprice_per_kwh = 0.3",
        "kind = \"dynamic\"\ngrid_fees_per_kwh = 0.2\nfallback_per_kwh = 0.3",
    ));
    assert!(e.contains("[spot]"), "{e}");
    let dynamic = base.replace(
        "kind = \"fixed\"\nprice_per_kwh = 0.3",
        "kind = \"dynamic\"\ngrid_fees_per_kwh = 0.2\nvat_percent = 119\nfallback_per_kwh = 0.3",
    ) + "[spot]\nfile = \"prices.csv\"\n";
    let e = error_of(&dynamic);
    assert!(e.contains("/nowhere/prices.csv"), "price file resolved against the tariff's directory: {e}");
}

#[test]
fn bad_price_file_error_names_both_files() {
    let dir = std::env::temp_dir().join(format!("ems-tariff-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("p.csv"),
        "Date;Time of day;Germany/Luxembourg[€/MWh]\nJan 1, 2018;12:00 AM;40\nJan 1, 2018;1:00 AM;4o\n",
    )
    .unwrap();
    let tariff = "time_zone = \"Europe/Berlin\"\n[spot]\nfile = \"p.csv\"\n[import]\nkind = \"dynamic\"\ngrid_fees_per_kwh = 0.2\nfallback_per_kwh = 0.3\n[export]\nkind = \"fixed\"\nprice_per_kwh = 0.0\n";
    std::fs::write(dir.join("t.toml"), tariff).unwrap();
    let e = Tariff::load(dir.join("t.toml")).unwrap_err().to_string();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        e.contains("t.toml") && e.contains("p.csv") && e.contains("line 3, column 3") && e.contains("4o"),
        "{e}"
    );
}

#[test]
fn time_zone_database_is_bundled() {
    // The gateway may run on a box without /usr/share/zoneinfo: the jiff feature
    // `tzdb-bundle-always` embeds the IANA database as a fallback. Check that copy directly,
    // including the 2018 transitions.
    let tz = jiff::tz::TimeZoneDatabase::bundled().get("Europe/Berlin").unwrap();
    let offset = |s: &str| tz.to_offset(ts(s)).seconds();
    assert_eq!(offset("2018-03-25T00:59:59Z"), 3600);
    assert_eq!(offset("2018-03-25T01:00:00Z"), 7200);
    assert_eq!(offset("2018-10-28T00:59:59Z"), 7200);
    assert_eq!(offset("2018-10-28T01:00:00Z"), 3600);
}

#[test]
fn a_live_dynamic_tariff_has_no_prices_until_the_feed_gives_them() {
    let t = Tariff::load(example("dynamic-live.toml")).unwrap();
    let q = t.import_quote(ts("2026-12-05T12:00:00Z"));
    assert_eq!(q, ems_strategies::tariff::Quote { price: Price::new(0.30), source: PriceSource::Fallback });
    // The feed's series replaces the empty one: the formula applies.
    let spot = ems_strategies::tariff::PriceSeries::new(
        ts("2026-12-05T12:00:00Z"),
        jiff::SignedDuration::from_mins(15),
        vec![Some(Price::new(0.10))],
    )
    .unwrap();
    let t = t.with_spot(std::sync::Arc::new(spot)).unwrap();
    assert!(close(t.import_price(ts("2026-12-05T12:05:00Z")), (0.10 + 0.20) * 1.19));
    // `live` with a file (or an inline series) is refused, naming the field.
    let e = parse("name = \"x\"\ncurrency = \"EUR\"\ntime_zone = \"UTC\"\n[spot]\nlive = true\nfile = \"a.csv\"\n[import]\nkind = \"dynamic\"\ngrid_fees_per_kwh = 0.0\nlevies_per_kwh = 0.0\nvat_percent = 0.0\nfallback_per_kwh = 0.3\n[export]\nkind = \"fixed\"\nprice_per_kwh = 0.0\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("spot.live"), "{e}");
}
