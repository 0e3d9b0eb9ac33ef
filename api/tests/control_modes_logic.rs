//! Control modes as pure logic with a mock clock: activation, validation, watchdog, `until`.
// Test code: a failed unwrap or panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ems_api::control_modes::{Change, ControlModes, Expiry, DEFAULT_WATCHDOG};
use ems_control::Override;
use ems_core::Watts;
use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Map, Value};

fn t0() -> Timestamp {
    "2026-05-01T12:00:00Z".parse().unwrap()
}

fn at(secs: i64) -> Timestamp {
    t0().checked_add(SignedDuration::from_secs(secs)).unwrap()
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

fn modes() -> ControlModes {
    ControlModes::new(DEFAULT_WATCHDOG, 10_000.0)
}

#[test]
fn each_mode_maps_to_its_override() {
    let cases = [
        (json!({"ess": {"mode": "NO_DISCHARGE"}}), Override::NoDischarge),
        (
            json!({"ess": {"mode": "LIMIT_CHARGE", "maxChargePower": 1000}}),
            Override::LimitCharge { max_charge_power: ems_core::watts!(1000.0) },
        ),
        (
            json!({"ess": {"mode": "LIMIT_DISCHARGE", "maxDischargePower": 250.5}}),
            Override::LimitDischarge { max_discharge_power: ems_core::watts!(250.5) },
        ),
        (json!({"ess": {"mode": "FORCE_CHARGE", "power": 0}}), Override::ForceCharge { power: Watts::ZERO }),
        (
            json!({"activateControlModes": {"ess": {"mode": "FORCE_CHARGE", "power": 3000}}}),
            Override::ForceCharge { power: ems_core::watts!(3000.0) },
        ),
    ];
    for (body, want) in cases {
        let mut m = modes();
        let c = m.activate(&obj(body.clone()), t0()).unwrap();
        assert!(matches!(c, Change::Activated(a) if a.mode == want), "{body}");
        assert_eq!(m.active_override(t0()), Some(want));
    }
}

#[test]
fn empty_request_changes_nothing_and_null_deactivates() {
    let mut m = modes();
    assert_eq!(m.activate(&obj(json!({})), t0()).unwrap(), Change::Unchanged);
    assert_eq!(m.active_override(t0()), None);
    m.activate(&obj(json!({"ess": {"mode": "NO_DISCHARGE"}})), t0()).unwrap();
    assert_eq!(m.activate(&obj(json!({})), at(30)).unwrap(), Change::Unchanged);
    // `{}` does not refresh: the watchdog still runs from t0.
    assert_eq!(m.active_override(at(59)), Some(Override::NoDischarge));
    assert_eq!(m.active_override(at(60)), None);
    m.activate(&obj(json!({"ess": {"mode": "NO_DISCHARGE"}})), t0()).unwrap();
    assert_eq!(
        m.activate(&obj(json!({"ess": null})), at(1)).unwrap(),
        Change::Deactivated(Some(Override::NoDischarge))
    );
    assert_eq!(m.active_override(at(1)), None);
    assert_eq!(m.active_json(at(1)), json!({"ess": null}));
}

#[test]
fn watchdog_expires_unless_refreshed() {
    let mut m = modes();
    let body = obj(json!({"ess": {"mode": "LIMIT_CHARGE", "maxChargePower": 500}}));
    m.activate(&body, t0()).unwrap();
    assert_eq!(m.active(t0()).unwrap().expiry, Expiry::Watchdog);
    assert!(m.active_override(at(59)).is_some());
    let c = m.activate(&body, at(50)).unwrap();
    assert!(matches!(c, Change::Refreshed(_)));
    assert!(m.active_override(at(109)).is_some());
    assert!(m.active_override(at(110)).is_none());
    assert!(m.expire(at(109)).is_none());
    let expired = m.expire(at(110)).unwrap();
    assert_eq!(expired.mode, Override::LimitCharge { max_charge_power: ems_core::watts!(500.0) });
    assert!(m.expire(at(111)).is_none());
}

#[test]
fn until_and_duration_replace_the_watchdog() {
    let mut m = modes();
    // 14:00+02:00 is 12:00Z = now: not in the future.
    let e = m
        .activate(&obj(json!({"ess": {"mode": "NO_DISCHARGE", "until": "2026-05-01T14:00:00+02:00"}})), t0());
    assert_eq!(e.unwrap_err().field, "ess.until");
    m.activate(&obj(json!({"ess": {"mode": "NO_DISCHARGE", "until": "2026-05-01T15:00:00+02:00"}})), t0())
        .unwrap();
    assert!(m.active_override(at(3599)).is_some());
    assert!(m.active_override(at(3600)).is_none());
    let mut m = modes();
    m.activate(&obj(json!({"ess": {"mode": "NO_DISCHARGE", "until": "2026-05-01T13:00:00Z"}})), t0())
        .unwrap();
    assert_eq!(m.active(t0()).unwrap().expiry, Expiry::Until);
    assert!(m.active_override(at(3599)).is_some());
    assert!(m.active_override(at(3600)).is_none());

    let mut m = modes();
    m.activate(&obj(json!({"ess": {"mode": "NO_DISCHARGE", "duration": 900}})), t0()).unwrap();
    assert!(m.active_override(at(899)).is_some());
    assert!(m.active_override(at(900)).is_none());

    let mut m = modes();
    m.activate(&obj(json!({"ess": {"mode": "NO_DISCHARGE", "duration": "PT15M"}})), t0()).unwrap();
    assert!(m.active_override(at(899)).is_some());
    assert!(m.active_override(at(900)).is_none());
    let j = m.active_json(t0());
    assert_eq!(j["ess"]["expiry"], "until");
    assert_eq!(j["ess"]["expiresAt"], "2026-05-01T12:15:00Z");
}

fn refused(body: Value) -> (String, String) {
    let mut m = modes();
    m.activate(&obj(json!({"ess": {"mode": "NO_DISCHARGE"}})), t0()).unwrap();
    let e = m.activate(&obj(body.clone()), t0()).expect_err(&body.to_string());
    // A refused request changes nothing.
    assert_eq!(m.active_override(t0()), Some(Override::NoDischarge), "{body}");
    (e.field, e.message)
}

#[test]
fn validation_names_the_field_and_value() {
    let cases = [
        (json!({"ess": {"mode": "LIMIT_CHARGE", "maxChargePower": -1}}), "ess.maxChargePower", "-1"),
        (json!({"ess": {"mode": "LIMIT_CHARGE", "maxChargePower": "NaN"}}), "ess.maxChargePower", "NaN"),
        (json!({"ess": {"mode": "LIMIT_CHARGE", "maxChargePower": "1000"}}), "ess.maxChargePower", "1000"),
        (json!({"ess": {"mode": "LIMIT_CHARGE", "maxChargePower": 1e30}}), "ess.maxChargePower", "<= 10000"),
        (json!({"ess": {"mode": "LIMIT_CHARGE"}}), "ess.maxChargePower", "missing"),
        (json!({"ess": {"mode": "LIMIT_DISCHARGE", "maxDischargePower": -5}}), "ess.maxDischargePower", "-5"),
        (json!({"ess": {"mode": "FORCE_CHARGE", "power": 20000}}), "ess.power", "20000"),
        (json!({"ess": {"mode": "FORCE_CHARGE", "power": null}}), "ess.power", "missing"),
        (json!({"ess": {"mode": "TURBO"}}), "ess.mode", "TURBO"),
        (json!({"ess": {"mode": 3}}), "ess.mode", "3"),
        (json!({"ess": {}}), "ess.mode", "missing"),
        (json!({"ess": "NO_DISCHARGE"}), "ess", "NO_DISCHARGE"),
        (json!({"evcs0": null}), "evcs0", "unknown"),
        (json!({"ess": {"mode": "LIMIT_CHARGE", "power": 5}}), "ess.maxChargePower", "missing"),
        (json!({"ess": {"mode": "NO_DISCHARGE", "power": 5}}), "ess.power", "unknown"),
        (
            json!({"ess": {"mode": "NO_DISCHARGE", "until": "2026-05-01T11:00:00Z"}}),
            "ess.until",
            "not in the future",
        ),
        (json!({"ess": {"mode": "NO_DISCHARGE", "until": "tomorrow"}}), "ess.until", "tomorrow"),
        (json!({"ess": {"mode": "NO_DISCHARGE", "until": "2027-05-01T11:00:00Z"}}), "ess.until", "ahead"),
        (json!({"ess": {"mode": "NO_DISCHARGE", "duration": -1}}), "ess.duration", "-1"),
        (json!({"ess": {"mode": "NO_DISCHARGE", "duration": 0}}), "ess.duration", "0"),
        (json!({"ess": {"mode": "NO_DISCHARGE", "duration": "fifteen"}}), "ess.duration", "fifteen"),
        (
            json!({"ess": {"mode": "NO_DISCHARGE", "duration": 5, "until": "2026-05-01T13:00:00Z"}}),
            "ess.duration",
            "not both",
        ),
        (json!({"activateControlModes": 5}), "activateControlModes", "5"),
        (json!({"activateControlModes": {"ess": null}, "ess": null}), "ess", "unknown"),
    ];
    for (body, field, needle) in cases {
        let (f, msg) = refused(body.clone());
        assert_eq!(f, field, "{body}: {msg}");
        assert!(msg.contains(needle), "{body}: message {msg:?} lacks {needle:?}");
    }
}

#[test]
fn available_lists_every_mode() {
    let a = modes().available_json();
    let names: Vec<&str> = a["ess"].as_array().unwrap().iter().map(|m| m["mode"].as_str().unwrap()).collect();
    assert_eq!(names, ["NO_DISCHARGE", "LIMIT_CHARGE", "LIMIT_DISCHARGE", "FORCE_CHARGE"]);
    assert_eq!(a["watchdogSeconds"], 60);
}

#[test]
fn switching_modes_activates_the_new_one() {
    let mut m = modes();
    m.activate(&obj(json!({"ess": {"mode": "NO_DISCHARGE"}})), t0()).unwrap();
    let c = m.activate(&obj(json!({"ess": {"mode": "FORCE_CHARGE", "power": 100}})), at(10)).unwrap();
    assert!(matches!(c, Change::Activated(_)));
    assert_eq!(m.active_override(at(69)), Some(Override::ForceCharge { power: ems_core::watts!(100.0) }));
}

#[test]
fn until_sunset_needs_a_sunset_source_and_ends_at_the_next_sunset() {
    let body = json!({"ess": {"mode": "NO_DISCHARGE", "until": "sunset"}});
    let mut m = modes();
    let e = m.activate(&obj(body.clone()), t0()).unwrap_err();
    assert_eq!(e.field, "ess.until");
    assert!(e.message.contains("location"), "{}", e.message);
    assert_eq!(m.active_override(t0()), None);
    // A source: sunset 7 h after each query (a stand-in for the site's solar calculation).
    let mut m =
        modes().with_sunset_source(|after: Timestamp| after.checked_add(SignedDuration::from_hours(7)).ok());
    let Change::Activated(a) = m.activate(&obj(body.clone()), t0()).unwrap() else { panic!("not activated") };
    assert_eq!(a.expiry, Expiry::Sunset);
    assert_eq!(a.expires_at, at(7 * 3600));
    assert!(m.active_override(at(7 * 3600 - 1)).is_some());
    assert!(m.active_override(at(7 * 3600)).is_none());
    assert_eq!(m.active_json(t0())["ess"]["expiry"], "sunset");
    // Polar day or night: no sunset, refused.
    let mut m = modes().with_sunset_source(|_: Timestamp| None);
    let e = m.activate(&obj(body), t0()).unwrap_err();
    assert_eq!(e.field, "ess.until");
    assert!(e.message.contains("polar"), "{}", e.message);
}

#[test]
fn until_soc_ends_when_the_measured_soc_reaches_the_target_in_the_modes_direction() {
    let pct = |x: f32| Some(ems_core::Percent::try_new(x).unwrap());
    // FORCE_CHARGE until 80 %: ends at >= 80 %.
    let mut m = modes();
    m.set_soc(pct(50.0));
    let body = json!({"ess": {"mode": "FORCE_CHARGE", "power": 2000, "until": {"soc": 80}}});
    let Change::Activated(a) = m.activate(&obj(body), t0()).unwrap() else { panic!("not activated") };
    assert_eq!((a.expiry, a.until_soc), (Expiry::Soc, pct(80.0)));
    assert_eq!(m.active_json(t0())["ess"]["untilSoc"], 80.0);
    // Long after the watchdog period it is still active.
    assert!(m.active_override(at(3600)).is_some());
    m.set_soc(pct(79.9));
    assert!(m.expire(at(3600)).is_none());
    // Unknown SOC: it stays.
    m.set_soc(None);
    assert!(m.active_override(at(3600)).is_some());
    m.set_soc(pct(80.0));
    assert!(m.active_override(at(3601)).is_none());
    let ended = m.expire(at(3601)).unwrap();
    assert_eq!(ended.expiry, Expiry::Soc);
    assert!(m.expire(at(3602)).is_none());
    // NO_DISCHARGE until 30 %: ends at <= 30 % (the other direction).
    let mut m = modes();
    m.set_soc(pct(60.0));
    let body = json!({"ess": {"mode": "NO_DISCHARGE", "until": {"soc": 30}}});
    m.activate(&obj(body), t0()).unwrap();
    m.set_soc(pct(90.0));
    assert!(m.active_override(at(10)).is_some());
    m.set_soc(pct(30.0));
    assert!(m.active_override(at(10)).is_none());
    // A target that is never reached still ends after the longest hold.
    let mut m = modes();
    m.activate(
        &obj(json!({"ess": {"mode": "LIMIT_CHARGE", "maxChargePower": 100, "until": {"soc": 100}}})),
        t0(),
    )
    .unwrap();
    let week = ems_api::control_modes::MAX_HOLD.as_secs();
    assert!(m.active_override(at(week - 1)).is_some());
    assert!(m.active_override(at(week)).is_none());
}

#[test]
fn bad_until_values_name_the_field() {
    let mut m = modes();
    for (until, field) in [
        (json!({"soc": 120}), "ess.until.soc"),
        (json!({"soc": "full"}), "ess.until.soc"),
        (json!({}), "ess.until.soc"),
        (json!({"soc": 50, "time": "06:00"}), "ess.until.time"),
        (json!(42), "ess.until"),
        (json!("tomorrow"), "ess.until"),
    ] {
        let body = json!({"ess": {"mode": "NO_DISCHARGE", "until": until}});
        let e = m.activate(&obj(body), t0()).unwrap_err();
        assert_eq!(e.field, field, "{until}: {}", e.message);
    }
    assert_eq!(m.active_override(t0()), None);
}
