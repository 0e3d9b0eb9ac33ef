//! The evidence: the transfer-function estimate on a known first-order system, the Nordic
//! criteria, the SvK log's format (CRLF, timestamp) and a run through the real controller.
// Test code: a failed unwrap or panic is a failed test with its message; sample indices are
// small integers, exact in f64.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use ems_grid::prequal::signal::{builtin, ServiceUnderTest};
use ems_grid::prequal::transfer::{ratio, verdict, Complex, SystemParams};
use ems_grid::prequal::{
    evaluate, format_datetime, run, RunConfig, Signal, SvkLogWriter, SvkRow, SvkService, SvkServiceRow,
};
use std::f64::consts::TAU;

#[test]
fn the_estimate_recovers_a_first_order_system_gain_and_phase() {
    // y = K / (1 + sT) applied to x = A sin(ωt): y = K A / √(1+(ωT)²) · sin(ωt − atan(ωT)).
    let (k, tc, a) = (2.0, 4.0, 0.1);
    for period in [10.0, 60.0, 300.0] {
        let w = TAU / period;
        let dt = 0.05;
        let n = (3.0 * period / dt).round() as usize;
        let t: Vec<f64> = (0..n).map(|i| i as f64 * dt).collect();
        let x: Vec<f64> = t.iter().map(|t| 50.0 + a * (w * t).sin()).collect();
        let gain = k / (1.0 + (w * tc).powi(2)).sqrt();
        let phase = -(w * tc).atan();
        let y: Vec<f64> = t.iter().map(|t| 1000.0 + gain * a * (w * t + phase).sin()).collect();
        let h = ratio(&t, &x, &y, period).unwrap();
        assert!((h.abs() - gain).abs() < 1e-3 * gain, "T={period}: |H| {} vs {gain}", h.abs());
        assert!((h.arg() - phase).abs() < 1e-3, "T={period}: arg {} vs {phase}", h.arg());
    }
}

#[test]
fn the_criteria_pass_an_ideal_unit_and_fail_a_slow_one() {
    let sys = SystemParams::nordic(ServiceUnderTest::FcrN).unwrap();
    // G(0) = (600/0.1)·50 / (0.01·42000·50) = 14.29.
    assert!((sys.g(0.0).abs() - 300_000.0 / 21_000.0).abs() < 1e-9);
    let ideal = verdict(&sys, 60.0, Complex::new(1.0, 0.0));
    assert!(ideal.stability_distance > 0.43 && ideal.performance < ideal.performance_limit, "{ideal:?}");
    // A response 120° behind at 60 s: F·G lands near −1.
    let w = TAU / 60.0;
    let g = sys.g(w);
    // Choose F so that F·G = −1 + 0.2 (inside the circle).
    let f = Complex::new(-0.8, 0.0).over(g);
    let slow = verdict(&sys, 60.0, f);
    assert!((slow.stability_distance - 0.2).abs() < 1e-9 && slow.stability_distance < 0.43, "{slow:?}");
    assert!((slow.performance_limit - (1.0 + (70.0 * w).powi(2)).sqrt()).abs() < 1e-9);
}

#[test]
fn the_svk_log_has_its_columns_crlf_and_the_timestamp_format() {
    // 2025-03-01 12:34:56.789 UTC
    let ms = 1_740_832_496_789;
    assert_eq!(format_datetime(ms), "20250301T123456.789");
    assert_eq!(format_datetime(0), "19700101T000000.000");
    assert_eq!(format_datetime(951_782_400_000), "20000229T000000.000", "leap day");
    let mut log = SvkLogWriter::new(Vec::new(), &[SvkService::FcrN], true).unwrap();
    let row = SvkServiceRow { available: true, activated_w: 500_000.0, reserve_w: 1_000_000.0 };
    log.write(&SvkRow {
        unix_ms: ms,
        power_w: 498_000.0,
        frequency_hz: 49.95,
        services: &[row],
        nem: -1,
        aem: 0,
        pmin_w: -1_500_000.0,
        pmax_w: 1_500_000.0,
        cap_wh: Some((1_000_000.0, 2_000_000.0)),
    })
    .unwrap();
    let text = String::from_utf8(log.finish().unwrap()).unwrap();
    assert_eq!(
        text,
        "DateTime,InsAcPow,GridFreq,ContStatus_FCRN,Activated_FCRN,ResSize_FCRN,NEM,AEM,Pmin,Pmax,Cap_Up,Cap_Down\r\n\
         20250301T123456.789,0.498000,49.9500,1,0.500000,1.000000,-1,0,-1.500000,1.500000,1.000000,2.000000\r\n"
    );
    assert!(!text.replace("\r\n", "").contains('\n'), "only CRLF line ends");
}

#[test]
fn a_run_goes_through_the_controller_and_its_evaluation_passes() {
    let seq = builtin(ServiceUnderTest::FcrDUp, "fcr-d-up-ramp").unwrap();
    let signal = Signal::Sequence(seq);
    let config = RunConfig { noise_mhz: 5.0, seed: 7, ..RunConfig::new(ServiceUnderTest::FcrDUp, 10_000.0) };
    let r = run(&config, &signal).unwrap();
    assert!(r.samples.iter().all(|s| s.running));
    // The command is the controller's: never outside the envelope.
    assert!(r.samples.iter().all(|s| s.setpoint_w <= s.pmax_w + 1e-3 && s.setpoint_w >= s.pmin_w - 1e-3));
    let full = r.samples.iter().map(|s| s.power_w).fold(0.0, f64::max);
    assert!((full - 10_000.0).abs() < 200.0, "{full}");
    let report = evaluate(&r, &signal);
    assert!(report.pass, "{:#?}", report.checks.iter().filter(|c| !c.pass).collect::<Vec<_>>());
    assert!(report.checks.iter().any(|c| c.name.contains("dP(7.5 s)")));
    // A unit that ignores the frequency fails the same evaluation.
    let mut dead = r.clone();
    for s in &mut dead.samples {
        s.power_w = 0.0;
    }
    assert!(!evaluate(&dead, &signal).pass);
    assert!(run(&RunConfig::new(ServiceUnderTest::FcrN, -1.0), &signal).is_err());
}
