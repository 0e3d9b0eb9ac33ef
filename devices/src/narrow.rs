//! The few numeric conversions `From` cannot express, each with the reason it is right, so the
//! rest of the crate converts without `as`.

/// An `f64` computed value as the `f32` the unit newtypes carry: rounds to nearest, and a value
/// beyond `f32` becomes ±infinity, which the units' `saturating`/`try_new` clamp or refuse.
#[allow(clippy::cast_possible_truncation)] // narrowing is the point; see above
pub(crate) fn f32_of(x: f64) -> f32 {
    x as f32
}

/// A count or index as `f64`: exact below 2^53, far beyond any table, queue or register count.
#[allow(clippy::cast_precision_loss)] // exact for every value this crate counts (< 2^53)
#[cfg(feature = "sim")] // only the simulated devices' tables need it
pub(crate) fn f64_of_usize(n: usize) -> f64 {
    n as f64
}

/// Milliseconds (or another `u64` quantity) as `f64`: exact below 2^53 (285 000 years of ms).
#[allow(clippy::cast_precision_loss)] // exact below 2^53, see above
pub(crate) fn f64_of_u64(n: u64) -> f64 {
    n as f64
}
