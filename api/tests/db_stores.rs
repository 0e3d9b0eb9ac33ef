//! `ems_api::db::Db`: round trips of the three stores, the append-only audit log, reopening,
//! errors, history downsampling and retention.
// Test code: a failed unwrap or panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ems_api::db::{Db, DbOptions, HistoryRetention, MaintainReport, Retention, SCHEMA_VERSION};
use ems_api::ports::{AuditEntry, AuditSink, HistoryPoint, HistoryStore, Outcome, ScheduleStore};
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use std::time::Duration;

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn entry(actor: &str, action: &str, outcome: Outcome, detail: &str) -> AuditEntry {
    AuditEntry {
        seq: 0,
        at: t("2026-03-01T12:00:00.25Z"),
        actor: actor.into(),
        action: action.into(),
        outcome,
        detail: detail.into(),
    }
}

fn temp_db() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path().join("ems.db")).unwrap();
    (dir, db)
}

fn secs(s: i64) -> SignedDuration {
    SignedDuration::from_secs(s)
}

#[test]
fn audit_round_trip() {
    let (_dir, db) = temp_db();
    let a = entry("ops-laptop (operator)", "POST /api/v1/emergency-stop", Outcome::Ok, "button");
    let b = entry("provider:acme", "schedule.submit", Outcome::Refused, "replayed nonce «n1»");
    let c = entry("controller", "state RUNNING -> STOPPED", Outcome::Failed, "");
    assert_eq!(db.append(&a).unwrap(), 1);
    assert_eq!(db.append(&b).unwrap(), 2);
    assert_eq!(db.append(&c).unwrap(), 3);
    let recent = db.recent(10).unwrap();
    assert_eq!(
        recent,
        vec![AuditEntry { seq: 3, ..c.clone() }, AuditEntry { seq: 2, ..b }, AuditEntry { seq: 1, ..a }]
    );
    assert_eq!(db.recent(1).unwrap(), vec![AuditEntry { seq: 3, ..c }]);
    assert!(db.recent(0).unwrap().is_empty());
}

#[test]
fn audit_update_and_delete_are_refused_by_triggers() {
    let (dir, db) = temp_db();
    db.append(&entry("a", "x", Outcome::Ok, "original")).unwrap();
    let raw = rusqlite::Connection::open(dir.path().join("ems.db")).unwrap();
    let upd = raw.execute("UPDATE audit SET detail = 'forged' WHERE seq = 1", []).unwrap_err();
    assert!(upd.to_string().contains("append-only"), "{upd}");
    let del = raw.execute("DELETE FROM audit", []).unwrap_err();
    assert!(del.to_string().contains("append-only"), "{del}");
    let replace = raw
        .execute(
            "INSERT OR REPLACE INTO audit (seq, at, actor, action, outcome, detail)
             VALUES (1, '2026-01-01T00:00:00Z', 'x', 'x', 'ok', 'forged')",
            [],
        )
        .unwrap_err();
    assert!(replace.to_string().contains("append-only"), "{replace}");
    let bad_outcome = raw.execute(
        "INSERT INTO audit (at, actor, action, outcome, detail) VALUES ('2026-01-01T00:00:00Z', 'x', 'x', 'maybe', '')",
        [],
    );
    assert!(bad_outcome.is_err());
    drop(raw);
    assert_eq!(db.recent(5).unwrap()[0].detail, "original");
    assert_eq!(db.recent(5).unwrap().len(), 1);
}

#[test]
fn schedules_and_nonces_round_trip() {
    let (_dir, db) = temp_db();
    db.save("s2", r#"{"power":-5000}"#).unwrap();
    db.save("s1", r#"{"power":1000}"#).unwrap();
    db.save("s1", r#"{"power":2000}"#).unwrap();
    assert_eq!(
        db.load_all().unwrap(),
        vec![("s1".into(), r#"{"power":2000}"#.into()), ("s2".into(), r#"{"power":-5000}"#.into())]
    );
    assert!(db.delete("s2").unwrap());
    assert!(!db.delete("s2").unwrap());
    assert_eq!(db.load_all().unwrap().len(), 1);

    let at = t("2026-03-01T00:00:00Z");
    assert!(db.claim_nonce("acme", "n1", at).unwrap());
    assert!(!db.claim_nonce("acme", "n1", at).unwrap());
    assert!(db.claim_nonce("other", "n1", at).unwrap());
    assert!(db.claim_nonce("acme", "n2", at.checked_add(secs(3600)).unwrap()).unwrap());
    assert_eq!(db.prune_nonces(at.checked_add(secs(1)).unwrap()).unwrap(), 2);
    assert!(db.claim_nonce("acme", "n1", at).unwrap(), "pruned nonce is forgotten");
    assert!(!db.claim_nonce("acme", "n2", at).unwrap(), "newer nonce is kept");
}

#[test]
fn reopen_after_drop_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ems.db");
    let at = t("2026-03-01T00:00:00Z");
    {
        let db = Db::open(&path).unwrap();
        db.append(&entry("a", "x", Outcome::Ok, "kept")).unwrap();
        db.save("s1", "{}").unwrap();
        db.claim_nonce("p", "n", at).unwrap();
        // Buffered, not yet flushed: dropping the Db must commit it.
        db.record(at, &[("_sum/EssSoc", 55.5), ("_sum/GridActivePower", -1200.0)]).unwrap();
    }
    let db = Db::open(&path).unwrap();
    assert_eq!(db.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(db.integrity_check().unwrap(), "ok");
    assert_eq!(db.recent(10).unwrap()[0].detail, "kept");
    assert_eq!(db.append(&entry("a", "y", Outcome::Ok, "")).unwrap(), 2);
    assert_eq!(db.load_all().unwrap(), vec![("s1".into(), "{}".into())]);
    assert!(!db.claim_nonce("p", "n", at).unwrap(), "nonce survives a restart");
    let q = db
        .query(
            at,
            at.checked_add(secs(1)).unwrap(),
            &["_sum/GridActivePower", "_sum/EssSoc"],
            SignedDuration::ZERO,
        )
        .unwrap();
    assert_eq!(
        q,
        vec![
            HistoryPoint { at, channel: "_sum/EssSoc".into(), value: 55.5 },
            HistoryPoint { at, channel: "_sum/GridActivePower".into(), value: -1200.0 },
        ]
    );
}

#[test]
fn bad_path_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir").join("ems.db");
    let e = Db::open(&missing).unwrap_err();
    assert!(e.0.contains(&missing.display().to_string()), "{e}");
    assert!(e.0.contains("open"), "{e}");

    let garbage = dir.path().join("not-a-db.db");
    std::fs::write(&garbage, vec![0x5a; 8192]).unwrap();
    let e = Db::open(&garbage).unwrap_err();
    assert!(e.0.contains(&garbage.display().to_string()), "{e}");
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ems.db");
    drop(Db::open(&path).unwrap());
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute("INSERT INTO schema_migrations (version) VALUES (?1)", [SCHEMA_VERSION + 1]).unwrap();
    drop(raw);
    let e = Db::open(&path).unwrap_err();
    assert!(e.0.contains("version"), "{e}");
}

#[test]
fn db_is_shared_between_threads() {
    let (_dir, db) = temp_db();
    std::thread::scope(|s| {
        for i in 0..4 {
            let db = &db;
            s.spawn(move || {
                for j in 0..10 {
                    db.append(&entry(&format!("t{i}"), &format!("a{j}"), Outcome::Ok, "")).unwrap();
                }
            });
        }
    });
    let all = db.recent(100).unwrap();
    assert_eq!(all.len(), 40);
    assert!(all.windows(2).all(|w| w[0].seq == w[1].seq + 1));
}

/// 10 Hz samples of two channels over `[start, start + minutes)`: `a` = the minute index,
/// `b` = the second within the minute.
fn record_minutes(db: &Db, start: Timestamp, minutes: i64) {
    for m in 0..minutes {
        for tenth in 0..600 {
            let at = start.checked_add(SignedDuration::from_millis(m * 60_000 + tenth * 100)).unwrap();
            let sec = f64::from(u32::try_from(tenth / 10).unwrap());
            db.record(at, &[("a", f64::from(u32::try_from(m).unwrap())), ("b", sec)]).unwrap();
        }
    }
}

#[test]
fn history_raw_and_bucket_means() {
    let (_dir, db) = temp_db();
    let start = t("2026-03-01T00:00:00Z");
    record_minutes(&db, start, 30);
    let end = start.checked_add(secs(1800)).unwrap();

    let raw =
        db.query(start, start.checked_add(secs(1)).unwrap(), &["b", "a"], SignedDuration::ZERO).unwrap();
    assert_eq!(raw.len(), 20);
    assert_eq!(raw[0], HistoryPoint { at: start, channel: "a".into(), value: 0.0 });
    assert_eq!(raw[1].channel, "b");
    assert!(raw.windows(2).all(|w| (w[0].at, &w[0].channel) < (w[1].at, &w[1].channel)));

    // Minute means: a = minute index, b = mean of 0..60 = 29.5.
    let per_min = db.query(start, end, &["a", "b", "unknown"], secs(60)).unwrap();
    assert_eq!(per_min.len(), 60);
    for (i, pair) in per_min.chunks(2).enumerate() {
        let at = start.checked_add(secs(60 * i64::try_from(i).unwrap())).unwrap();
        assert_eq!(
            pair[0],
            HistoryPoint { at, channel: "a".into(), value: f64::from(u32::try_from(i).unwrap()) }
        );
        assert_eq!(pair[1], HistoryPoint { at, channel: "b".into(), value: 29.5 });
    }
    // 15-minute means (read from the quarter tier): a = mean of 0..15 and 15..30.
    let per_quarter = db.query(start, end, &["a"], secs(900)).unwrap();
    assert_eq!(per_quarter.iter().map(|p| p.value).collect::<Vec<_>>(), vec![7.0, 22.0]);
    // A resolution no tier is aligned to is averaged from the raw samples.
    let odd = db.query(start.checked_add(secs(30)).unwrap(), end, &["b"], secs(90)).unwrap();
    assert_eq!(odd.len(), 20);
    // 00:00:30-00:02:00: 30 s of b = 30..59 and 60 s of b = 0..59.
    assert!((odd[0].value - 34.5).abs() < 1e-9, "{odd:?}");
    assert!(db.query(end, start, &["a"], secs(60)).unwrap().is_empty());
}

#[test]
fn history_skips_non_finite_values_and_duplicates() {
    let (_dir, db) = temp_db();
    let at = t("2026-03-01T00:00:00Z");
    db.record(at, &[("a", f64::NAN), ("b", f64::INFINITY), ("c", 1.0)]).unwrap();
    db.record(at, &[("c", 99.0)]).unwrap();
    db.flush().unwrap();
    let q = db.query(at, at.checked_add(secs(60)).unwrap(), &["a", "b", "c"], secs(60)).unwrap();
    assert_eq!(q, vec![HistoryPoint { at, channel: "c".into(), value: 1.0 }]);
}

#[test]
fn history_flushes_on_time_span_and_row_count() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ems.db");
    let db = Db::open(&path).unwrap();
    let reader = rusqlite::Connection::open(&path).unwrap();
    let count = || reader.query_row("SELECT COUNT(*) FROM history_raw", [], |r| r.get::<_, i64>(0)).unwrap();
    let start = t("2026-03-01T00:00:00Z");
    for i in 0..10 {
        db.record(start.checked_add(SignedDuration::from_millis(i * 100)).unwrap(), &[("a", 1.0)]).unwrap();
    }
    assert_eq!(count(), 0, "0.9 s of samples stay buffered");
    db.record(start.checked_add(secs(1)).unwrap(), &[("a", 1.0)]).unwrap();
    assert_eq!(count(), 11, "a 1 s span commits");

    let opts = DbOptions {
        history_flush_after: Duration::from_secs(3600),
        history_max_pending: 5,
        ..DbOptions::default()
    };
    let db2 = Db::open_with(dir.path().join("other.db"), opts).unwrap();
    for i in 0..4 {
        db2.record(start.checked_add(secs(i)).unwrap(), &[("a", 1.0)]).unwrap();
    }
    assert_eq!(db2.flush().unwrap(), 4);
    assert_eq!(db2.flush().unwrap(), 0);
}

#[test]
fn history_retention_and_tier_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let retention = HistoryRetention {
        raw: Duration::from_secs(2 * 86_400),
        minute: Duration::from_secs(30 * 86_400),
        quarter: Duration::from_secs(730 * 86_400),
    };
    assert_eq!(retention, HistoryRetention::default());
    let db = Db::open_with(
        dir.path().join("ems.db"),
        DbOptions {
            retention: Retention { history: retention, ..Retention::default() },
            ..DbOptions::default()
        },
    )
    .unwrap();
    let now = t("2026-03-10T00:00:00Z");
    let ago = |s: i64| now.checked_sub(secs(s)).unwrap();
    // Samples 3 years, 40 days, 10 days and 1 hour ago: 30 min each at 10 Hz.
    for s in [3 * 365 * 86_400, 40 * 86_400, 10 * 86_400, 3600] {
        record_minutes(&db, ago(s), 30);
    }
    let report = db.maintain(now).unwrap();
    // Raw: all but the last hour's 2 × 18 000; minute: 3 years and 40 days (2 × 2 × 30);
    // quarter: 3 years (2 × 2).
    assert_eq!(report, MaintainReport { raw: 3 * 36_000, minute: 120, quarter: 4, audit: 0 });
    assert_eq!(db.maintain(now).unwrap(), MaintainReport::default());

    // The last hour: raw samples are still there.
    assert_eq!(db.query(ago(3600), ago(3599), &["a"], SignedDuration::ZERO).unwrap().len(), 10);
    // 10 days ago, stored samples: raw is gone, the 1-minute buckets answer.
    let ten = db.query(ago(10 * 86_400), ago(10 * 86_400 - 1800), &["a"], SignedDuration::ZERO).unwrap();
    assert_eq!(ten.len(), 30);
    assert_eq!(ten[3], HistoryPoint { at: ago(10 * 86_400 - 180), channel: "a".into(), value: 3.0 });
    // ... and an unaligned resolution is approximated from them.
    let ten_odd = db.query(ago(10 * 86_400), ago(10 * 86_400 - 1800), &["a"], secs(150)).unwrap();
    assert_eq!(ten_odd.len(), 12);
    assert!((ten_odd[0].value - 1.0).abs() < 1e-9, "{ten_odd:?}");
    // 40 days ago: only the 15-minute buckets are left.
    let forty = db.query(ago(40 * 86_400), ago(40 * 86_400 - 1800), &["a", "b"], secs(1800)).unwrap();
    assert_eq!(forty.iter().map(|p| p.value).collect::<Vec<_>>(), vec![14.5, 29.5]);
    // 3 years ago: gone from every tier.
    assert!(db
        .query(ago(3 * 365 * 86_400), ago(3 * 365 * 86_400 - 1800), &["a"], secs(60))
        .unwrap()
        .is_empty());
    assert_eq!(db.integrity_check().unwrap(), "ok");
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![Just(Outcome::Ok), Just(Outcome::Refused), Just(Outcome::Failed)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Any sequence of appends reads back in order, with seq increasing by one from 1.
    #[test]
    fn appends_read_back_in_order(
        entries in prop::collection::vec(("\\PC{0,12}", "\\PC{0,24}", outcome(), "\\PC{0,40}", 0i64..4_000_000_000_000), 0..25)
    ) {
        let (_dir, db) = temp_db();
        let mut expected = Vec::new();
        for (i, (actor, action, outcome, detail, ms)) in entries.iter().enumerate() {
            let at = Timestamp::from_millisecond(*ms).unwrap();
            let e = AuditEntry { seq: 999, at, actor: actor.clone(), action: action.clone(), outcome: *outcome, detail: detail.clone() };
            let seq = db.append(&e).unwrap();
            prop_assert_eq!(seq, u64::try_from(i).unwrap() + 1);
            expected.push(AuditEntry { seq, ..e });
        }
        let mut back = db.recent(usize::MAX).unwrap();
        back.reverse();
        prop_assert_eq!(back, expected);
    }
}

fn entry_at(at: &str, actor: &str, action: &str, outcome: Outcome) -> AuditEntry {
    AuditEntry { at: t(at), ..entry(actor, action, outcome, "") }
}

#[test]
fn audit_retention_by_age_and_rows_and_the_gate_stays_closed() {
    let dir = tempfile::tempdir().unwrap();
    let retention = Retention {
        audit_max_age: Some(Duration::from_secs(30 * 86_400)),
        audit_max_rows: 5,
        ..Retention::default()
    };
    assert_eq!(Retention::default().audit_max_rows, 1_000_000);
    assert_eq!(Retention::default().audit_max_age, Some(Duration::from_secs(365 * 86_400)));
    let db =
        Db::open_with(dir.path().join("ems.db"), DbOptions { retention, ..DbOptions::default() }).unwrap();
    // Two rows older than 30 days, then eight recent ones.
    db.append(&entry_at("2026-01-01T00:00:00Z", "a", "old", Outcome::Ok)).unwrap();
    db.append(&entry_at("2026-01-02T00:00:00Z", "a", "old", Outcome::Ok)).unwrap();
    for i in 0..8 {
        db.append(&entry_at(&format!("2026-03-0{}T00:00:00Z", i + 1), "a", "new", Outcome::Ok)).unwrap();
    }
    let report = db.maintain(t("2026-03-10T00:00:00Z")).unwrap();
    // The row cap (5) cuts deeper than the age here: 10 - 5 = 5 deleted.
    assert_eq!(report.audit, 5);
    let left = db.recent(100).unwrap();
    // Five kept plus the row that records the pruning.
    assert_eq!(left.len(), 6);
    assert_eq!(left[0].action, "audit.retention");
    assert!(left[0].detail.contains("deleted 5 rows up to seq 5"), "{}", left[0].detail);
    assert!(left.iter().skip(1).all(|e| e.action == "new"));
    // Outside `maintain`, DELETE is still refused: the gate was closed again.
    let raw = rusqlite::Connection::open(dir.path().join("ems.db")).unwrap();
    let del = raw.execute("DELETE FROM audit WHERE seq = 6", []).unwrap_err();
    assert!(del.to_string().contains("append-only"), "{del}");
    let gate: i64 = raw.query_row("SELECT upto_seq FROM audit_prune_gate", [], |r| r.get(0)).unwrap();
    assert_eq!(gate, 0);
    // A second run has nothing to delete beyond the cap of 5 (6 rows now: one goes).
    assert_eq!(db.maintain(t("2026-03-10T00:00:00Z")).unwrap().audit, 1);
}

#[test]
fn audit_retention_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let retention =
        Retention { audit_max_age: Some(Duration::from_secs(30 * 86_400)), ..Retention::default() };
    let db =
        Db::open_with(dir.path().join("ems.db"), DbOptions { retention, ..DbOptions::default() }).unwrap();
    db.append(&entry_at("2026-01-01T00:00:00Z", "a", "old", Outcome::Ok)).unwrap();
    db.append(&entry_at("2026-03-05T00:00:00Z", "a", "new", Outcome::Ok)).unwrap();
    assert_eq!(db.maintain(t("2026-03-10T00:00:00Z")).unwrap().audit, 1);
    assert_eq!(db.maintain(t("2026-03-10T00:00:00Z")).unwrap().audit, 0);
    let none = Retention { audit_max_age: None, ..Retention::default() };
    let db2 = Db::open_with(dir.path().join("b.db"), DbOptions { retention: none, ..DbOptions::default() })
        .unwrap();
    db2.append(&entry_at("2000-01-01T00:00:00Z", "a", "old", Outcome::Ok)).unwrap();
    assert_eq!(db2.maintain(t("2026-03-10T00:00:00Z")).unwrap().audit, 0);
}

#[test]
fn audit_query_pages_and_filters_like_memory() {
    use ems_api::ports::{AuditQuery, MemoryStore};
    let (_dir, db) = temp_db();
    let mem = MemoryStore::default();
    for i in 0..30u32 {
        let outcome = if i % 3 == 0 { Outcome::Refused } else { Outcome::Ok };
        let actor = if i % 2 == 0 { "ops (operator)" } else { "root (admin)" };
        let action = if i % 5 == 0 { "POST /api/v1/emergency-stop" } else { "state IDLE -> RUNNING" };
        let e = entry_at(&format!("2026-03-01T12:{i:02}:00Z"), actor, action, outcome);
        db.append(&e).unwrap();
        mem.append(&e).unwrap();
    }
    let queries = [
        AuditQuery { limit: 7, ..AuditQuery::default() },
        AuditQuery { limit: 7, before: Some(20), ..AuditQuery::default() },
        AuditQuery { limit: 100, kind: Some("refused".into()), ..AuditQuery::default() },
        AuditQuery {
            limit: 3,
            kind: Some("POST /api/v1/emergency".into()),
            actor: Some("ops".into()),
            ..AuditQuery::default()
        },
        AuditQuery {
            limit: 100,
            from: Some(t("2026-03-01T12:05:00Z")),
            to: Some(t("2026-03-01T12:10:00Z")),
            ..AuditQuery::default()
        },
        AuditQuery { limit: 100, actor: Some("%".into()), ..AuditQuery::default() },
    ];
    for q in &queries {
        let a = db.query_audit(q).unwrap();
        let b = mem.query_audit(q).unwrap();
        assert_eq!(a, b, "{q:?}");
    }
    let page = db.query_audit(&queries[0]).unwrap();
    assert_eq!(page.entries.len(), 7);
    assert_eq!(page.next, Some(24));
    assert_eq!(db.query_audit(&queries[4]).unwrap().entries.len(), 5);
    assert!(db.query_audit(&queries[5]).unwrap().entries.is_empty(), "% is literal");
}

#[test]
fn documents_are_replaced_whole_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ems.db");
    let now = jiff::Timestamp::from_second(1_780_000_000).unwrap();
    {
        let db = Db::open(&path).unwrap();
        assert_eq!(db.document("economics").unwrap(), None);
        db.put_document("economics", r#"{"version":1}"#, now).unwrap();
        db.put_document("economics", r#"{"version":2}"#, now).unwrap();
        db.put_document("other", "[]", now).unwrap();
    }
    let db = Db::open(&path).unwrap();
    assert_eq!(db.document("economics").unwrap().as_deref(), Some(r#"{"version":2}"#));
    assert_eq!(db.document("other").unwrap().as_deref(), Some("[]"));
}
