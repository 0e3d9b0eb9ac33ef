//! The test-signal generator: each built-in sequence's shape at its corner times, and the
//! profile reader (interpolation, errors naming line, column and value).
// Test code: a failed unwrap or panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::panic)]

use ems_grid::prequal::signal::{
    builtin, names, sine_periods, SequenceKind, ServiceUnderTest, FCR_D_RAMP_HZ_PER_S,
};
use ems_grid::prequal::{Profile, ProfileError};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn every_listed_name_is_built_in_and_starts_at_its_start_frequency() {
    for service in ServiceUnderTest::ALL {
        let list = names(service);
        assert!(list.len() >= 4, "{service}: {list:?}");
        for name in list {
            let s = builtin(service, name).unwrap_or_else(|| panic!("{service} {name}"));
            assert_eq!(s.name, name);
            assert!(s.duration_s() > 0.0);
            assert!(close(s.frequency_at(0.0), s.start_hz), "{name}");
            // Every frequency stays inside the test band.
            let mut t = 0.0;
            while t <= s.duration_s() {
                let f = s.frequency_at(t);
                assert!((49.0..=51.0).contains(&f), "{name} at {t}: {f}");
                t += 0.5;
            }
        }
    }
    assert!(builtin(ServiceUnderTest::Ffr, "fcr-n-steps").is_none());
    assert!(builtin(ServiceUnderTest::FcrN, "fcr-d-up-ramp").is_none());
}

#[test]
fn fcr_n_steps_hold_each_level_between_the_corner_times() {
    let s = builtin(ServiceUnderTest::FcrN, "fcr-n-steps").unwrap();
    assert_eq!(s.kind, SequenceKind::Steps);
    for (t, f) in [
        (0.0, 50.0),
        (29.99, 50.0),
        (30.0, 49.9),
        (89.99, 49.9),
        (90.0, 50.0),
        (150.0, 50.1),
        (210.0, 50.0),
        (270.0, 49.95),
        (330.0, 50.05),
        (390.0, 50.0),
    ] {
        assert!(close(s.frequency_at(t), f), "at {t}: {}", s.frequency_at(t));
    }
    assert!(close(s.duration_s(), 450.0));
}

#[test]
fn fcr_d_ramps_run_at_0_24_hz_per_second_between_49_9_and_49_5() {
    let up = builtin(ServiceUnderTest::FcrDUp, "fcr-d-up-ramp").unwrap();
    // 20 s at 50, 30 s at 49.9, then the ramp.
    assert!(close(up.frequency_at(49.99), 49.9));
    assert!(close(up.frequency_at(50.0 + 1.0), 49.9 - FCR_D_RAMP_HZ_PER_S));
    let ramp_end = 50.0 + 0.4 / FCR_D_RAMP_HZ_PER_S;
    assert!((up.frequency_at(ramp_end) - 49.5).abs() < 1e-6);
    assert!(close(up.frequency_at(ramp_end + 30.0), 49.5));
    let down = builtin(ServiceUnderTest::FcrDDown, "fcr-d-down-ramp").unwrap();
    assert!(close(down.frequency_at(51.0), 50.1 + FCR_D_RAMP_HZ_PER_S));
    assert!(close(down.frequency_at(ramp_end + 30.0), 50.5));
}

#[test]
fn sines_peak_at_a_quarter_period_with_0_1_hz_and_run_whole_periods() {
    let s = builtin(ServiceUnderTest::FcrN, "sine-60s").unwrap();
    // 20 s hold, then sin starting upward.
    assert!(close(s.frequency_at(20.0), 50.0));
    assert!((s.frequency_at(20.0 + 15.0) - 50.1).abs() < 1e-9);
    assert!((s.frequency_at(20.0 + 45.0) - 49.9).abs() < 1e-9);
    assert!(close(s.duration_s(), 20.0 + 60.0 * f64::from(sine_periods(60)) + 10.0));
    let d = builtin(ServiceUnderTest::FcrDUp, "sine-10s").unwrap();
    assert!((d.frequency_at(20.0 + 2.5) - 49.8).abs() < 1e-9, "FCR-D up sines centre on 49.7 Hz");
    assert!(builtin(ServiceUnderTest::FcrDUp, "sine-300s").is_none(), "FCR-D periods stop at 70 s");
}

#[test]
fn ffr_steps_go_0_15_hz_below_their_level_and_endurance_can_be_shortened() {
    for (name, level) in [("ffr-step-49.7", 49.7), ("ffr-step-49.6", 49.6), ("ffr-step-49.5", 49.5)] {
        let s = builtin(ServiceUnderTest::Ffr, name).unwrap();
        assert_eq!(s.kind, SequenceKind::Ffr { level_hz: level });
        assert!(close(s.frequency_at(9.99), 50.0));
        assert!((s.frequency_at(10.0) - (level - 0.15)).abs() < 1e-9);
        assert!(close(s.frequency_at(30.0), 50.0));
    }
    let ramp = builtin(ServiceUnderTest::Ffr, "ffr-ramp").unwrap();
    assert!((ramp.frequency_at(11.0) - 49.5).abs() < 1e-9, "0.5 Hz/s from 50 Hz at 10 s");
    let full = builtin(ServiceUnderTest::FcrN, "fcr-n-endurance").unwrap();
    assert!(close(full.duration_s(), 30.0 + 3600.0 + 60.0 + 3600.0 + 60.0));
    let short = full.with_long_holds(300.0, 60.0);
    assert!(close(short.duration_s(), 30.0 + 60.0 + 60.0 + 60.0 + 60.0));
    assert!(close(short.frequency_at(31.0), 49.9));
}

#[test]
fn a_profile_is_interpolated_and_held_at_its_ends() {
    let p = Profile::parse("time_s,frequency_hz\n0,50.0\n10,49.9\n10.5,49.9\n20,50.1\n").unwrap();
    assert!(close(p.frequency_at(-1.0), 50.0));
    assert!((p.frequency_at(5.0) - 49.95).abs() < 1e-9);
    assert!((p.frequency_at(15.25) - 50.0).abs() < 1e-9);
    assert!(close(p.frequency_at(99.0), 50.1));
    assert!(close(p.duration_s(), 20.0));
}

#[test]
fn profile_errors_name_the_line_the_column_and_the_value() {
    let e = Profile::parse("t,f\n0,50\n").unwrap_err();
    assert!(matches!(e, ProfileError::Header { .. }), "{e}");
    let e = Profile::parse("time_s,frequency_hz\n0,50\n1,fifty\n").unwrap_err();
    assert_eq!(
        e,
        ProfileError::Value {
            line: 3,
            column: "frequency_hz",
            value: "fifty".into(),
            reason: "is not a number"
        }
    );
    assert!(e.to_string().contains("line 3, column frequency_hz: \"fifty\""), "{e}");
    let e = Profile::parse("time_s,frequency_hz\n0,50\n0,50\n").unwrap_err();
    assert!(matches!(e, ProfileError::Value { line: 3, column: "time_s", .. }), "{e}");
    let e = Profile::parse("time_s,frequency_hz\n0,50\n1,80\n").unwrap_err();
    assert!(matches!(e, ProfileError::Value { line: 3, column: "frequency_hz", .. }), "{e}");
    let e = Profile::parse("time_s,frequency_hz\n0,50,1\n").unwrap_err();
    assert_eq!(e, ProfileError::Columns { line: 2, found: 3 });
    assert_eq!(Profile::parse("time_s,frequency_hz\n").unwrap_err(), ProfileError::Empty);
}
