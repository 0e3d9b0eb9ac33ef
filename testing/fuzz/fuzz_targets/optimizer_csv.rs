//! Fuzz target: the optimizer input CSV (`timestamp,pv_w,load_w,import_price,export_price`,
//! `ems_strategies::optimizer::parse_csv`) returns Ok or Err and never panics; accepted steps
//! satisfy the documented invariants (PV and load ≥ 0, finite prices, positive durations).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(steps) = ems_strategies::optimizer::parse_csv(text) {
        for s in &steps {
            assert!(s.pv.get() >= 0.0 && s.load.get() >= 0.0, "negative power accepted: {s:?}");
            assert!(s.duration.is_positive(), "non-positive step accepted: {s:?}");
            assert!(s.import_price.per_kwh().is_finite() && s.export_price.per_kwh().is_finite(), "{s:?}");
        }
    }
});
