//! Provider schedules: signatures, refusals (each audited), replay protection, persistence,
//! execution mapping.
// Test code: a failed unwrap or panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod rest_support;

use ed25519_dalek::SigningKey;
use ems_api::ports::{AuditSink, MemoryStore, Outcome, ScheduleStore};
use ems_api::schedules::{canonical_string, Operation, ScheduleErrorKind, ScheduledAction, Schedules};
use ems_control::ProviderOperation;
use ems_core::Watts;
use jiff::{SignedDuration, Timestamp};
use rest_support::{provider_key, provider_keys, schedule_config, signed, t0, SN};
use serde_json::{json, Map, Value};
use std::sync::Arc;

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

fn at(secs: i64) -> Timestamp {
    t0().checked_add(SignedDuration::from_secs(secs)).unwrap()
}

fn setup() -> (Arc<MemoryStore>, Schedules) {
    let store = Arc::new(MemoryStore::default());
    let s = Schedules::load(schedule_config(), &provider_keys(), store.clone(), store.clone()).unwrap();
    (store, s)
}

#[test]
fn canonical_string_is_documented_form() {
    assert_eq!(
        canonical_string("BAT-0001", "2026-05-01T12:00:00Z", Operation::Charge, 3000, "acme", "5f2a9c01d3"),
        "ems-schedule-v1|BAT-0001|2026-05-01T12:00:00Z|CHARGE|3000|acme|5f2a9c01d3"
    );
}

#[test]
fn accepted_schedule_is_persisted_audited_and_reloaded() {
    let (store, s) = setup();
    let body = signed(SN, "2026-05-01T12:00:30Z", "DISCHARGE", 4000, "acme", "abcdefgh", &provider_key());
    let acc = s.submit(&obj(body), "acme-cloud (provider)", t0()).unwrap();
    assert!(acc.success);
    assert!(acc.schedule_id.starts_with("sch-"));
    assert_eq!(store.load_all().unwrap().len(), 1);
    let last = store.recent(1).unwrap().remove(0);
    assert_eq!(last.outcome, Outcome::Ok);
    assert_eq!(last.action, "schedule.submit");
    assert!(last.detail.contains("DISCHARGE 4000 W"));
    let again = Schedules::load(schedule_config(), &provider_keys(), store.clone(), store.clone()).unwrap();
    assert_eq!(again.get(&acc.schedule_id), s.get(&acc.schedule_id));
}

#[test]
fn execution_window_and_mapping() {
    let (_store, s) = setup();
    let charge = s
        .submit(
            &obj(signed(SN, "2026-05-01T12:10:00Z", "CHARGE", 2000, "acme", "nonce-aaa", &provider_key())),
            "p",
            t0(),
        )
        .unwrap();
    let dis = s
        .submit(
            &obj(signed(SN, "2026-05-01T12:20:00Z", "DISCHARGE", 1500, "acme", "nonce-bbb", &provider_key())),
            "p",
            t0(),
        )
        .unwrap();
    assert!(s.due(at(599)).is_none());
    let (id, a) = s.due_action(at(600)).unwrap();
    assert_eq!(id, charge.schedule_id);
    assert_eq!(
        a,
        ScheduledAction {
            operation: ProviderOperation::Charge,
            power: ems_core::watts!(2000.0),
            may_export: true
        }
    );
    // The later schedule takes over when it starts, before the first one's slot ends.
    let (id, a) = s.due_action(at(1200)).unwrap();
    assert_eq!(id, dis.schedule_id);
    assert_eq!(
        a,
        ScheduledAction {
            operation: ProviderOperation::Discharge,
            power: ems_core::watts!(1500.0),
            may_export: true
        }
    );
    // 15-minute slot.
    assert!(s.due(at(1200 + 899)).is_some());
    assert!(s.due(at(1200 + 900)).is_none());
    assert_eq!(
        s.get(&dis.schedule_id).unwrap().action(false),
        ScheduledAction {
            operation: ProviderOperation::Discharge,
            power: ems_core::watts!(1500.0),
            may_export: false
        }
    );
}

#[test]
fn record_execution_persists_only_changes() {
    let (store, s) = setup();
    let acc = s
        .submit(
            &obj(signed(SN, "2026-05-01T12:00:00Z", "CHARGE", 2000, "acme", "nonce-ccc", &provider_key())),
            "p",
            t0(),
        )
        .unwrap();
    s.record_execution(&acc.schedule_id, ems_core::watts!(-1800.0), Some("SOC derating")).unwrap();
    let stored: Value = serde_json::from_str(&store.load_all().unwrap()[0].1).unwrap();
    assert_eq!(stored["appliedW"], -1800.0);
    assert_eq!(stored["limitedBy"], "SOC derating");
    s.record_execution(&acc.schedule_id, ems_core::watts!(-1800.4), Some("SOC derating")).unwrap();
    assert_eq!(s.get(&acc.schedule_id).unwrap().applied_w, Some(-1800.0));
    s.record_execution(&acc.schedule_id, ems_core::watts!(-2000.0), None).unwrap();
    assert_eq!(s.get(&acc.schedule_id).unwrap().limited_by, None);
    s.record_execution("sch-unknown", Watts::ZERO, None).unwrap();
}

#[test]
fn replay_is_refused_even_after_a_restart() {
    let (store, s) = setup();
    let body = obj(signed(SN, "2026-05-01T12:00:00Z", "CHARGE", 100, "acme", "nonce-ddd", &provider_key()));
    s.submit(&body, "p", t0()).unwrap();
    let e = s.submit(&body, "p", t0()).unwrap_err();
    assert_eq!((e.kind, e.field.as_str()), (ScheduleErrorKind::Replay, "nonce"));
    let again = Schedules::load(schedule_config(), &provider_keys(), store.clone(), store.clone()).unwrap();
    let e = again.submit(&body, "p", at(30)).unwrap_err();
    assert_eq!(e.kind, ScheduleErrorKind::Replay);
    // Once its time is past the tolerance, even a forgotten nonce would not help a replay.
    let fresh = Arc::new(MemoryStore::default());
    let amnesiac = Schedules::load(schedule_config(), &provider_keys(), fresh.clone(), fresh).unwrap();
    let e = amnesiac.submit(&body, "p", at(61)).unwrap_err();
    assert_eq!(e.field, "executionTime");
    let last = store.recent(1).unwrap().remove(0);
    assert_eq!(last.outcome, Outcome::Refused);
    assert!(last.detail.contains("replay"));
}

#[test]
fn each_refusal_names_the_field_and_is_audited() {
    let key = provider_key();
    let other = SigningKey::from_bytes(&[9u8; 32]);
    let ok = |time: &str, op: &str, power: u64, nonce: &str| signed(SN, time, op, power, "acme", nonce, &key);
    let mut unsigned = ok("2026-05-01T12:00:00Z", "CHARGE", 100, "nonce-001");
    unsigned.as_object_mut().unwrap().remove("auth");
    let mut tampered = ok("2026-05-01T12:00:00Z", "CHARGE", 100, "nonce-002");
    tampered["power"] = json!(101);
    let mut short_sig = ok("2026-05-01T12:00:00Z", "CHARGE", 100, "nonce-003");
    short_sig["auth"]["sign"]["signature"] = json!("abcd");
    let mut fractional = ok("2026-05-01T12:00:00Z", "CHARGE", 100, "nonce-004");
    fractional["power"] = json!(100.5);
    let mut nan = ok("2026-05-01T12:00:00Z", "CHARGE", 100, "nonce-005");
    nan["power"] = json!("NaN");
    let mut extra = ok("2026-05-01T12:00:00Z", "CHARGE", 100, "nonce-006");
    extra["priority"] = json!(1);
    let mut missing_sn = ok("2026-05-01T12:00:00Z", "CHARGE", 100, "nonce-007");
    missing_sn.as_object_mut().unwrap().remove("sn");
    let cases: Vec<(Value, ScheduleErrorKind, &str)> = vec![
        (unsigned, ScheduleErrorKind::Unauthorized, "auth"),
        (tampered, ScheduleErrorKind::Unauthorized, "auth.sign.signature"),
        (short_sig, ScheduleErrorKind::Unauthorized, "auth.sign.signature"),
        (
            signed(SN, "2026-05-01T12:00:00Z", "CHARGE", 100, "acme", "nonce-008", &other),
            ScheduleErrorKind::Unauthorized,
            "auth.sign.signature",
        ),
        (
            signed(SN, "2026-05-01T12:00:00Z", "CHARGE", 100, "evil", "nonce-009", &other),
            ScheduleErrorKind::Unauthorized,
            "provider",
        ),
        (
            signed("BAT-9999", "2026-05-01T12:00:00Z", "CHARGE", 100, "acme", "nonce-010", &key),
            ScheduleErrorKind::Invalid,
            "sn",
        ),
        (ok("2026-05-01T11:58:59Z", "CHARGE", 100, "nonce-011"), ScheduleErrorKind::Invalid, "executionTime"),
        (ok("2026-06-01T12:00:00Z", "CHARGE", 100, "nonce-012"), ScheduleErrorKind::Invalid, "executionTime"),
        (
            ok("2026-05-01T14:00:00+02:00", "CHARGE", 100, "nonce-013"),
            ScheduleErrorKind::Invalid,
            "executionTime",
        ),
        (
            ok("2026-05-01T12:00:00.5Z", "CHARGE", 100, "nonce-014"),
            ScheduleErrorKind::Invalid,
            "executionTime",
        ),
        (ok("soon", "CHARGE", 100, "nonce-015"), ScheduleErrorKind::Invalid, "executionTime"),
        (ok("2026-05-01T12:00:00Z", "CHARGE", 5001, "nonce-016"), ScheduleErrorKind::Invalid, "power"),
        (ok("2026-05-01T12:00:00Z", "DISCHARGE", 4001, "nonce-017"), ScheduleErrorKind::Invalid, "power"),
        (ok("2026-05-01T12:00:00Z", "HOLD", 100, "nonce-018"), ScheduleErrorKind::Invalid, "operation"),
        (ok("2026-05-01T12:00:00Z", "CHARGE", 100, "short"), ScheduleErrorKind::Invalid, "nonce"),
        (ok("2026-05-01T12:00:00Z", "CHARGE", 100, "has|pipe-0"), ScheduleErrorKind::Invalid, "nonce"),
        (fractional, ScheduleErrorKind::Invalid, "power"),
        (nan, ScheduleErrorKind::Invalid, "power"),
        (extra, ScheduleErrorKind::Invalid, "priority"),
        (missing_sn, ScheduleErrorKind::Invalid, "sn"),
    ];
    let (store, s) = setup();
    let n = cases.len();
    for (body, kind, field) in cases {
        let e = s.submit(&obj(body.clone()), "acme-cloud (provider)", t0()).unwrap_err();
        assert_eq!((e.kind, e.field.as_str()), (kind, field), "{body}: {e}");
    }
    let audit = store.recent(100).unwrap();
    assert_eq!(audit.len(), n);
    assert!(audit.iter().all(|e| e.outcome == Outcome::Refused && e.action == "schedule.submit"));
    assert!(store.load_all().unwrap().is_empty());
    // A refused request did not burn its nonce: the correct request with it still works.
    let good = signed(SN, "2026-05-01T12:00:00Z", "CHARGE", 100, "acme", "nonce-016", &key);
    assert!(s.submit(&obj(good), "p", t0()).is_ok());
}

#[test]
fn delete_is_audited() {
    let (store, s) = setup();
    let acc = s
        .submit(
            &obj(signed(SN, "2026-05-01T12:00:00Z", "CHARGE", 100, "acme", "nonce-eee", &provider_key())),
            "p",
            t0(),
        )
        .unwrap();
    s.delete(&acc.schedule_id, "ops (operator)", t0()).unwrap();
    assert!(s.get(&acc.schedule_id).is_none());
    assert!(store.load_all().unwrap().is_empty());
    assert_eq!(
        s.delete(&acc.schedule_id, "ops (operator)", t0()).unwrap_err().kind,
        ScheduleErrorKind::NotFound
    );
    let log = store.recent(2).unwrap();
    assert_eq!(log[0].outcome, Outcome::Refused);
    assert_eq!(log[1].outcome, Outcome::Ok);
}
