//! The rules engine end to end: the format (TOML and JSON, errors naming path and value,
//! round trip), triggers, day types, DST days, latches (`until` time, duration, sunset, SOC),
//! the actions that depend on the SOC, and conflicts.
// Test code: a failed unwrap or panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ems_control::Override;
use ems_core::{Percent, WattHours, Watts};
use ems_strategies::rules::sun::sunset;
use ems_strategies::rules::{DayType, Location, Outcome, RuleContext, RuleEngine, RuleSet};
use ems_strategies::Price;
use jiff::civil::date;
use jiff::{SignedDuration, Timestamp};
use serde_json::json;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn engine(toml: &str) -> RuleEngine {
    RuleEngine::new(RuleSet::from_toml(toml).unwrap()).unwrap()
}

fn ctx(at: &str) -> RuleContext {
    RuleContext::at(ts(at))
}

fn with_soc(at: &str, soc: f32) -> RuleContext {
    RuleContext { soc: Some(Percent::try_new(soc).unwrap()), ..ctx(at) }
}

fn w(x: f32) -> Watts {
    Watts::try_new(x).unwrap()
}

fn winner(e: &mut RuleEngine, c: &RuleContext) -> Option<String> {
    e.evaluate(c).winner.map(|(n, _)| n)
}

const HEADER: &str = "country = \"DE\"\ntime_zone = \"Europe/Berlin\"\nlatitude = 52.52\nlongitude = 13.40\n";

#[test]
fn the_example_file_parses_and_round_trips_through_json() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/rules.toml")).unwrap();
    let set = RuleSet::from_toml(&text).unwrap();
    assert!(set.rules().len() >= 4);
    let j = set.to_json();
    assert_eq!(RuleSet::from_json(&j).unwrap(), set);
    assert_eq!(RuleSet::from_json_str(&j.to_string()).unwrap(), set);
    assert!(RuleEngine::new(set).is_ok());
}

#[test]
fn toml_and_json_describe_the_same_set() {
    let toml = format!(
        "{HEADER}extra_holidays = [2026-12-24]\n[[rules]]\nname = \"a\"\npriority = 3\n[rules.when]\ndays = [\"working\", \"sat\"]\nfrom = \"22:00\"\nto = \"06:00\"\nprice_below = 0.1\nsoc_below = 90\n[rules.action]\nmode = \"CHARGE_TO\"\nsoc = 80\nby = \"07:00\"\n[rules.until]\ntime = \"07:00\"\n"
    );
    let json = json!({
        "country": "DE", "time_zone": "Europe/Berlin", "latitude": 52.52, "longitude": 13.40,
        "extra_holidays": ["2026-12-24"],
        "rules": [{"name": "a", "priority": 3,
            "when": {"days": ["working", "sat"], "from": "22:00", "to": "06:00", "price_below": 0.1, "soc_below": 90},
            "action": {"mode": "CHARGE_TO", "soc": 80, "by": "07:00"},
            "until": {"time": "07:00"}}]
    });
    let a = RuleSet::from_toml(&toml).unwrap();
    assert_eq!(a, RuleSet::from_json(&json).unwrap());
    assert!(a.rules()[0].enabled);
    assert_eq!(RuleSet::from_json(&a.to_json()).unwrap(), a);
}

#[test]
fn errors_name_the_path_and_the_value() {
    let rule = |body: &str| format!("[[rules]]\nname = \"r\"\npriority = 1\n{body}");
    let cases = [
        (
            rule("[rules.when]\nform = \"17:00\"\n[rules.action]\nmode = \"NO_DISCHARGE\"\n"),
            "rules[0].when.form",
            "\"17:00\"",
        ),
        (
            rule("[rules.when]\nfrom = \"25:00\"\nto = \"21:00\"\n[rules.action]\nmode = \"NO_DISCHARGE\"\n"),
            "rules[0].when.from",
            "\"25:00\"",
        ),
        (rule("[rules.action]\nmode = \"DISCHARGE_ALL\"\n"), "rules[0].action.mode", "\"DISCHARGE_ALL\""),
        (
            rule("[rules.action]\nmode = \"LIMIT_CHARGE\"\nmaxChargePower = -5\n"),
            "rules[0].action.maxChargePower",
            "-5",
        ),
        (
            rule("[rules.action]\nmode = \"LIMIT_CHARGE\"\npower = 5\nmaxChargePower = 5\n"),
            "rules[0].action.power",
            "5",
        ),
        (rule("[rules.action]\nmode = \"SOC_RESERVE\"\nsoc = 120\n"), "rules[0].action.soc", "120"),
        (
            rule("[rules.action]\nmode = \"NO_DISCHARGE\"\n[rules.until]\nsunset = false\n"),
            "rules[0].until.sunset",
            "false",
        ),
        (
            rule("[rules.action]\nmode = \"NO_DISCHARGE\"\n[rules.until]\nduration_minutes = 0\n"),
            "rules[0].until.duration_minutes",
            "0",
        ),
        (
            rule("[rules.when]\ndays = [\"someday\"]\n[rules.action]\nmode = \"NO_DISCHARGE\"\n"),
            "rules[0].when.days[0]",
            "\"someday\"",
        ),
        ("country = \"XX\"\n".to_owned(), "country", "\"XX\""),
        ("time_zone = \"Mars/Olympus\"\n".to_owned(), "time_zone", "\"Mars/Olympus\""),
        ("latitude = 95.0\nlongitude = 0.0\n".to_owned(), "latitude", "95"),
        ("extra_holidays = [\"24.12.2026\"]\n".to_owned(), "extra_holidays[0]", "\"24.12.2026\""),
    ];
    for (text, path, value) in cases {
        let e = RuleSet::from_toml(&text).unwrap_err();
        assert_eq!((e.path.as_str(), e.value.as_str()), (path, value), "{e}");
        assert!(e.to_string().starts_with(&format!("{path} = {value}: ")), "{e}");
    }
    // Two `until` keys, a duplicate name, a missing action, a half window.
    let e = RuleSet::from_toml(&rule(
        "[rules.action]\nmode = \"NO_DISCHARGE\"\n[rules.until]\nsoc = 5\ntime = \"06:00\"\n",
    ))
    .unwrap_err();
    assert_eq!(e.path, "rules[0].until");
    let dup = "[[rules]]\nname = \"x\"\npriority = 1\naction = { mode = \"NO_DISCHARGE\" }\n";
    let e = RuleSet::from_toml(&format!("{dup}{dup}")).unwrap_err();
    assert_eq!((e.path.as_str(), e.value.as_str()), ("rules[1].name", "\"x\""));
    let e = RuleSet::from_toml("[[rules]]\nname = \"x\"\npriority = 1\n").unwrap_err();
    assert_eq!(e.path, "rules[0].action");
    let e = RuleSet::from_json(&json!({"rules": [{"name": "x", "priority": 1, "when": {"from": "10:00"},
        "action": {"mode": "NO_DISCHARGE"}}]}))
    .unwrap_err();
    assert_eq!(e.path, "rules[0].when.to");
    let e = RuleSet::from_json(
        &json!({"rules": [{"name": " ", "priority": 1, "action": {"mode": "NO_DISCHARGE"}}]}),
    )
    .unwrap_err();
    assert_eq!(e.path, "rules[0].name");
    // A syntax error has no path but says where.
    let e = RuleSet::from_toml("rules = [").unwrap_err();
    assert!(e.path.is_empty() && e.to_string().contains("line"), "{e}");
    // `until.sunset` needs a location.
    let set =
        RuleSet::from_toml(&rule("[rules.action]\nmode = \"NO_DISCHARGE\"\n[rules.until]\nsunset = true\n"))
            .unwrap();
    assert_eq!(RuleEngine::new(set).unwrap_err().path, "rules[0].until.sunset");
}

#[test]
fn triggers_and_missing_inputs() {
    let mut e = engine(&format!(
        "{HEADER}[[rules]]\nname = \"cheap\"\npriority = 1\nwhen = {{ price_below = 0.10, soc_below = 90 }}\naction = {{ mode = \"FORCE_CHARGE\", power = 3000 }}\n\
         [[rules]]\nname = \"surplus\"\npriority = 1\nwhen = {{ pv_surplus_above_w = 1500 }}\naction = {{ mode = \"LIMIT_DISCHARGE\", maxDischargePower = 0 }}\n\
         [[rules]]\nname = \"peak\"\npriority = 1\nwhen = {{ grid_import_above_w = 4000 }}\naction = {{ mode = \"LIMIT_CHARGE\", maxChargePower = 0 }}\n"
    ));
    let at = "2026-05-05T10:00:00Z";
    // No price, no SOC: the price and SOC triggers do not hold.
    let d = e.evaluate(&ctx(at));
    assert!(d.winner.is_none() && d.fired.is_empty());
    assert!(
        matches!(&d.reasons[0].outcome, Outcome::NotFired { why } if why.contains("price_below")),
        "{:?}",
        d.reasons[0]
    );
    let cheap = RuleContext { price: Some(Price::new(0.05)), ..with_soc(at, 50.0) };
    let d = e.evaluate(&cheap);
    assert_eq!(d.winner, Some(("cheap".to_owned(), Override::ForceCharge { power: w(3000.0) })));
    assert_eq!(d.winner_id, Some(0));
    assert_eq!(d.rule_target().map(|t| t.id), Some(0));
    // The SOC trigger fails at 95 %.
    let full = RuleContext { price: Some(Price::new(0.05)), ..with_soc(at, 95.0) };
    assert!(e.evaluate(&full).winner.is_none());
    // Grid import (+) above 4 kW; PV surplus above 1.5 kW.
    let importing = RuleContext { grid_import: w(4500.0), ..ctx(at) };
    assert_eq!(winner(&mut e, &importing).as_deref(), Some("peak"));
    let exporting = RuleContext { grid_import: w(-4500.0), pv_surplus: w(2000.0), ..ctx(at) };
    assert_eq!(winner(&mut e, &exporting).as_deref(), Some("surplus"));
}

#[test]
fn working_days_weekends_holidays_and_wrapping_windows() {
    let mut e = engine(&format!(
        "{HEADER}[[rules]]\nname = \"evening\"\npriority = 1\nwhen = {{ days = [\"working\"], from = \"17:00\", to = \"21:00\" }}\naction = {{ mode = \"NO_DISCHARGE\" }}\n\
         [[rules]]\nname = \"night\"\npriority = 1\nwhen = {{ days = [\"fri\"], from = \"22:00\", to = \"06:00\" }}\naction = {{ mode = \"LIMIT_DISCHARGE\", maxDischargePower = 100 }}\n\
         [[rules]]\nname = \"holiday\"\npriority = 1\nwhen = {{ days = [\"holiday\", \"weekend\"] }}\naction = {{ mode = \"LIMIT_CHARGE\", maxChargePower = 100 }}\n"
    ));
    // Tue 5 May 2026, 18:00 CEST = 16:00Z: working day, in the window.
    assert_eq!(winner(&mut e, &ctx("2026-05-05T16:00:00Z")).as_deref(), Some("evening"));
    assert_eq!(e.evaluate(&ctx("2026-05-05T16:00:00Z")).day, DayType::Working);
    // 21:00 CEST is outside [17:00, 21:00).
    assert_eq!(winner(&mut e, &ctx("2026-05-05T19:00:00Z")), None);
    // Ascension Day (Thu 14 May 2026): a holiday, not a working day.
    let d = e.evaluate(&ctx("2026-05-14T16:00:00Z"));
    assert_eq!(d.winner.map(|w| w.0).as_deref(), Some("holiday"));
    assert_eq!(d.day, DayType::Holiday("Ascension Day".to_owned()));
    assert!(matches!(&d.reasons[0].outcome, Outcome::NotFired { why } if why.starts_with("days:")));
    // Friday 22:00–06:00: Saturday 03:00 CEST belongs to Friday's window.
    let d = e.evaluate(&ctx("2026-05-09T01:00:00Z"));
    assert_eq!(d.fired, vec!["night".to_owned(), "holiday".to_owned()]);
    // Saturday 22:30 CEST is in the window's hours but not on a Friday.
    let d = e.evaluate(&ctx("2026-05-09T20:30:00Z"));
    assert_eq!(d.fired, vec!["holiday".to_owned()]);
}

#[test]
fn windows_are_local_wall_clock_time_on_dst_days() {
    let mut e = engine(&format!(
        "{HEADER}[[rules]]\nname = \"evening\"\npriority = 1\nwhen = {{ from = \"17:00\", to = \"21:00\" }}\naction = {{ mode = \"NO_DISCHARGE\" }}\n\
         [[rules]]\nname = \"gap\"\npriority = 0\nwhen = {{ from = \"02:00\", to = \"04:00\", days = [\"sun\"] }}\naction = {{ mode = \"LIMIT_CHARGE\", maxChargePower = 1 }}\n"
    ));
    // 29 March 2026 (23 h day, CEST from 02:00 CET): 17:00 CEST = 15:00Z.
    assert_eq!(winner(&mut e, &ctx("2026-03-29T14:59:00Z")), None);
    assert_eq!(winner(&mut e, &ctx("2026-03-29T15:00:00Z")).as_deref(), Some("evening"));
    assert_eq!(winner(&mut e, &ctx("2026-03-29T18:59:00Z")).as_deref(), Some("evening"));
    assert_eq!(winner(&mut e, &ctx("2026-03-29T19:00:00Z")), None);
    // 25 October 2026 (25 h day, CET from 03:00 CEST): 17:00 CET = 16:00Z.
    assert_eq!(winner(&mut e, &ctx("2026-10-25T15:59:00Z")), None);
    assert_eq!(winner(&mut e, &ctx("2026-10-25T16:00:00Z")).as_deref(), Some("evening"));
    assert_eq!(winner(&mut e, &ctx("2026-10-25T19:59:00Z")).as_deref(), Some("evening"));
    assert_eq!(winner(&mut e, &ctx("2026-10-25T20:00:00Z")), None);
    // A window over the skipped hour (02:00–03:00 does not exist on 29 March): it holds from
    // 03:00 CEST (01:00Z) to 04:00 CEST.
    assert_eq!(winner(&mut e, &ctx("2026-03-29T00:59:00Z")), None);
    assert_eq!(winner(&mut e, &ctx("2026-03-29T01:00:00Z")).as_deref(), Some("gap"));
    assert_eq!(winner(&mut e, &ctx("2026-03-29T02:00:00Z")), None);
    // On the 25 h day the window sees 02:00–03:00 twice: 3 hours in all.
    assert_eq!(winner(&mut e, &ctx("2026-10-24T23:59:00Z")), None);
    assert_eq!(winner(&mut e, &ctx("2026-10-25T00:00:00Z")).as_deref(), Some("gap"));
    assert_eq!(winner(&mut e, &ctx("2026-10-25T02:59:00Z")).as_deref(), Some("gap"));
    assert_eq!(winner(&mut e, &ctx("2026-10-25T03:00:00Z")), None);
}

#[test]
fn until_time_latches_across_a_dst_change_and_rearms_only_after_the_triggers_drop() {
    let mut e = engine(&format!(
        "{HEADER}[[rules]]\nname = \"n\"\npriority = 1\nwhen = {{ from = \"22:00\", to = \"23:00\" }}\naction = {{ mode = \"NO_DISCHARGE\" }}\nuntil = {{ time = \"06:00\" }}\n"
    ));
    // Fires Sat 28 March 22:30 CET (21:30Z); ends at 06:00 CEST on 29 March = 04:00Z.
    let d = e.evaluate(&ctx("2026-03-28T21:30:00Z"));
    assert_eq!(d.winner.as_ref().map(|w| w.0.as_str()), Some("n"));
    assert!(d.reasons[0].latched.as_deref().unwrap().contains("2026-03-29T04:00:00Z"), "{:?}", d.reasons[0]);
    // The window has ended; the latch holds.
    assert_eq!(winner(&mut e, &ctx("2026-03-29T03:59:00Z")).as_deref(), Some("n"));
    assert_eq!(winner(&mut e, &ctx("2026-03-29T04:00:00Z")), None);
    // Fires again the next evening.
    assert_eq!(winner(&mut e, &ctx("2026-03-29T20:10:00Z")).as_deref(), Some("n"));
}

#[test]
fn until_duration_and_soc() {
    let mut e = engine(&format!(
        "{HEADER}[[rules]]\nname = \"boost\"\npriority = 1\nwhen = {{ price_below = 0.0 }}\naction = {{ mode = \"FORCE_CHARGE\", power = 2000 }}\nuntil = {{ duration_minutes = 90 }}\n\
         [[rules]]\nname = \"fill\"\npriority = 0\nwhen = {{ soc_below = 30 }}\naction = {{ mode = \"FORCE_CHARGE\", power = 1000 }}\nuntil = {{ soc = 60 }}\n"
    ));
    let t0 = ts("2026-05-05T10:00:00Z");
    let at = |min: i64| t0.checked_add(SignedDuration::from_mins(min)).unwrap();
    let negative = |min: i64| RuleContext {
        price: Some(Price::new(-0.02)),
        soc: Some(Percent::try_new(70.0).unwrap()),
        ..RuleContext::at(at(min))
    };
    let normal = |min: i64| RuleContext {
        price: Some(Price::new(0.2)),
        soc: Some(Percent::try_new(70.0).unwrap()),
        ..RuleContext::at(at(min))
    };
    assert_eq!(winner(&mut e, &negative(0)).as_deref(), Some("boost"));
    assert_eq!(winner(&mut e, &normal(89)).as_deref(), Some("boost"));
    assert_eq!(winner(&mut e, &normal(90)), None);
    // Still negative after the duration ended: waits for the trigger to drop first.
    let mut e2 = e.clone();
    let d = e2.evaluate(&negative(0));
    assert!(d.winner.is_some());
    let d = e2.evaluate(&negative(95));
    assert!(d.winner.is_none(), "{:?}", d.reasons);
    assert!(matches!(&d.reasons[0].outcome, Outcome::NotFired { why } if why.contains("until-condition")));
    assert!(e2.evaluate(&normal(100)).winner.is_none());
    assert!(e2.evaluate(&negative(101)).winner.is_some());
    // SOC: a charging action ends when the SOC rises to the target, whatever the trigger does.
    let soc = |min: i64, s: f32| RuleContext {
        price: Some(Price::new(0.2)),
        soc: Some(Percent::try_new(s).unwrap()),
        ..RuleContext::at(at(min))
    };
    assert_eq!(winner(&mut e, &soc(200, 25.0)).as_deref(), Some("fill"));
    assert_eq!(winner(&mut e, &soc(210, 45.0)).as_deref(), Some("fill"));
    // Unknown SOC: the latch holds.
    assert_eq!(winner(&mut e, &RuleContext::at(at(215))).as_deref(), Some("fill"));
    assert_eq!(winner(&mut e, &soc(220, 60.0)), None);
}

#[test]
fn until_sunset_ends_at_the_sites_sunset_or_at_midnight_in_polar_night() {
    let berlin = Location::try_new(52.52, 13.40).unwrap();
    let mut e = engine(&format!(
        "{HEADER}[[rules]]\nname = \"keep\"\npriority = 1\nwhen = {{ from = \"12:00\", to = \"13:00\" }}\naction = {{ mode = \"SOC_RESERVE\", soc = 50 }}\nuntil = {{ sunset = true }}\n"
    ));
    let set = sunset(date(2026, 6, 21), berlin).unwrap();
    // Fires at 12:30 CEST with the SOC at the reserve.
    assert!(e.evaluate(&with_soc("2026-06-21T10:30:00Z", 50.0)).winner.is_some());
    // Still active in the evening (window over), SOC above the reserve: active, no effect.
    let d = e.evaluate(&with_soc("2026-06-21T17:00:00Z", 60.0));
    assert!(d.winner.is_none());
    assert_eq!(d.fired, vec!["keep".to_owned()]);
    assert!(matches!(&d.reasons[0].outcome, Outcome::NoEffect { why } if why.contains("above the reserve")));
    let before = set.checked_sub(SignedDuration::from_secs(1)).unwrap();
    assert!(e
        .evaluate(&RuleContext { soc: Some(Percent::try_new(40.0).unwrap()), ..RuleContext::at(before) })
        .winner
        .is_some());
    let d = e.evaluate(&RuleContext { soc: Some(Percent::try_new(40.0).unwrap()), ..RuleContext::at(set) });
    assert!(d.winner.is_none() && d.fired.is_empty(), "{:?}", d.reasons);
    // Tromsø in polar night: no sunset, the latch ends at local midnight.
    let mut polar = engine(
        "time_zone = \"Europe/Oslo\"\nlatitude = 69.65\nlongitude = 18.96\n[[rules]]\nname = \"p\"\npriority = 1\nwhen = { from = \"12:00\", to = \"13:00\" }\naction = { mode = \"NO_DISCHARGE\" }\nuntil = { sunset = true }\n",
    );
    assert!(polar.evaluate(&ctx("2026-12-21T11:30:00Z")).winner.is_some());
    assert!(polar.evaluate(&ctx("2026-12-21T22:59:00Z")).winner.is_some());
    assert!(polar.evaluate(&ctx("2026-12-21T23:00:00Z")).winner.is_none());
}

#[test]
fn soc_reserve_and_charge_to() {
    let mut e = engine(&format!(
        "{HEADER}[[rules]]\nname = \"reserve\"\npriority = 1\naction = {{ mode = \"SOC_RESERVE\", soc = 30 }}\n\
         [[rules]]\nname = \"morning\"\npriority = 0\naction = {{ mode = \"CHARGE_TO\", soc = 80, by = \"07:00\" }}\n"
    ));
    let full = |at: &str, soc: f32, max: f32| RuleContext {
        capacity: Some(WattHours::try_new(10_000.0).unwrap()),
        max_charge: w(max),
        ..with_soc(at, soc)
    };
    // 04:00 CEST = 02:00Z, SOC 50 % of 10 kWh → 3 kWh in 3 h = 1 kW.
    let d = e.evaluate(&full("2026-05-05T02:00:00Z", 50.0, 5000.0));
    assert_eq!(d.winner, Some(("morning".to_owned(), Override::ForceCharge { power: w(1000.0) })));
    assert!(matches!(&d.reasons[0].outcome, Outcome::NoEffect { .. }));
    // Capped at the maximum charge power.
    let d = e.evaluate(&full("2026-05-05T02:00:00Z", 50.0, 500.0));
    assert_eq!(d.winner.unwrap().1, Override::ForceCharge { power: w(500.0) });
    // Past 07:00 or at the target: no effect.
    let d = e.evaluate(&full("2026-05-05T05:00:00Z", 50.0, 5000.0));
    assert!(matches!(&d.reasons[1].outcome, Outcome::NoEffect { why } if why.contains("past 07:00")));
    let d = e.evaluate(&full("2026-05-05T02:00:00Z", 80.0, 5000.0));
    assert!(matches!(&d.reasons[1].outcome, Outcome::NoEffect { why } if why.contains("reached")));
    // No capacity: no effect.
    let d = e.evaluate(&with_soc("2026-05-05T02:00:00Z", 50.0));
    assert!(matches!(&d.reasons[1].outcome, Outcome::NoEffect { why } if why.contains("capacity")));
    // The reserve: NO_DISCHARGE at or below 30 %, and with the SOC unknown.
    let d = e.evaluate(&full("2026-05-05T05:00:00Z", 30.0, 5000.0));
    assert_eq!(d.winner, Some(("reserve".to_owned(), Override::NoDischarge)));
    let d = e.evaluate(&ctx("2026-05-05T05:00:00Z"));
    assert_eq!(d.winner, Some(("reserve".to_owned(), Override::NoDischarge)));
}

#[test]
fn conflicts_resolve_by_priority_then_restrictiveness_and_name_the_winner() {
    let mut e = engine(&format!(
        "{HEADER}[[rules]]\nname = \"force\"\npriority = 5\naction = {{ mode = \"FORCE_CHARGE\", power = 2000 }}\n\
         [[rules]]\nname = \"hold\"\npriority = 5\naction = {{ mode = \"NO_DISCHARGE\" }}\n\
         [[rules]]\nname = \"limit 500\"\npriority = 2\naction = {{ mode = \"LIMIT_DISCHARGE\", maxDischargePower = 500 }}\n\
         [[rules]]\nname = \"limit 1000\"\npriority = 2\naction = {{ mode = \"LIMIT_DISCHARGE\", maxDischargePower = 1000 }}\n\
         [[rules]]\nname = \"off\"\npriority = 99\nenabled = false\naction = {{ mode = \"NO_DISCHARGE\" }}\n"
    ));
    let d = e.evaluate(&ctx("2026-05-05T10:00:00Z"));
    // Equal priority: NO_DISCHARGE is more restrictive than FORCE_CHARGE (both allow no
    // discharge; a limit beats a forced charge).
    assert_eq!(d.winner, Some(("hold".to_owned(), Override::NoDischarge)));
    assert_eq!(d.rule_target().map(|t| t.id), Some(1));
    assert_eq!(d.fired.len(), 4);
    match &d.reasons[0].outcome {
        Outcome::Lost { to, why, .. } => {
            assert_eq!(to, "hold");
            assert!(why.contains("more restrictive"), "{why}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(&d.reasons[2].outcome, Outcome::Lost { why, .. } if why.contains("priority 2 < 5")));
    assert_eq!(d.reasons[4].outcome, Outcome::Disabled);
    // Without the priority-5 rules: the smaller discharge limit wins whatever the order.
    let mut e = engine(&format!(
        "{HEADER}[[rules]]\nname = \"limit 1000\"\npriority = 2\naction = {{ mode = \"LIMIT_DISCHARGE\", maxDischargePower = 1000 }}\n\
         [[rules]]\nname = \"limit 500\"\npriority = 2\naction = {{ mode = \"LIMIT_DISCHARGE\", maxDischargePower = 500 }}\n\
         [[rules]]\nname = \"charge cap\"\npriority = 2\naction = {{ mode = \"LIMIT_CHARGE\", maxChargePower = 0 }}\n"
    ));
    let d = e.evaluate(&ctx("2026-05-05T10:00:00Z"));
    let j = d.to_json();
    assert_eq!(j["winner"]["name"], "limit 500");
    assert_eq!(j["winner"]["id"], 1);
    assert_eq!(j["winner"]["action"], json!({"mode": "LIMIT_DISCHARGE", "maxDischargePower": 500.0}));
    assert_eq!(j["rules"][0]["outcome"], "lost");
    assert_eq!(j["day"], "working");
    assert_eq!(d.winner.map(|w| w.0).as_deref(), Some("limit 500"));
}

#[test]
fn replacing_the_set_keeps_the_latches_of_unchanged_rules() {
    let keep = "[[rules]]\nname = \"keep\"\npriority = 1\nwhen = { from = \"10:00\", to = \"11:00\" }\naction = { mode = \"NO_DISCHARGE\" }\nuntil = { time = \"18:00\" }\n";
    let other = "[[rules]]\nname = \"other\"\npriority = 0\nwhen = { from = \"10:00\", to = \"11:00\" }\naction = { mode = \"LIMIT_CHARGE\", maxChargePower = 10 }\nuntil = { time = \"18:00\" }\n";
    let mut e = engine(&format!("{HEADER}{keep}{other}"));
    // 10:30 CEST: both latch until 18:00.
    assert_eq!(e.evaluate(&ctx("2026-05-05T08:30:00Z")).fired.len(), 2);
    // Replace: "keep" unchanged (moved to index 1), "other" changed, a new rule added.
    let changed = other.replace("maxChargePower = 10", "maxChargePower = 20");
    let new = RuleSet::from_toml(&format!("{HEADER}{changed}{keep}")).unwrap();
    e.replace(new).unwrap();
    let d = e.evaluate(&ctx("2026-05-05T12:00:00Z"));
    assert_eq!(d.fired, vec!["keep".to_owned()]);
    assert_eq!(d.winner_id, Some(1));
    // A set that cannot run (sunset without a location) is refused and the old one stays.
    let bad = RuleSet::from_toml(
        "[[rules]]\nname = \"s\"\npriority = 1\naction = { mode = \"NO_DISCHARGE\" }\nuntil = { sunset = true }\n",
    )
    .unwrap();
    assert!(e.replace(bad).is_err());
    assert_eq!(e.rules().rules().len(), 2);
}
