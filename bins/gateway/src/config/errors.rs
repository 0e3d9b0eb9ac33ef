//! Errors of the site file: every one names the file, the line, the field and the value
//! (through `ems-tomlfile`, shared with the profile, tariff and scenario loaders).

use ems_tomlfile::{Source, Spanned};

/// A configuration error with its place in the file (`site.toml line 6:
/// limits.grid_import_limit_w: -5 W is outside 0..=10000000 W`).
pub(crate) type ConfigError = ems_tomlfile::SpannedError;

/// The file being validated: places each error at the line of its value.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ctx<'a> {
    pub(super) src: Source<'a>,
}

impl<'a> Ctx<'a> {
    pub(super) const fn new(src: Source<'a>) -> Self {
        Self { src }
    }

    /// The file name (relative paths in it are resolved against its folder).
    pub(super) const fn file(&self) -> &'a std::path::Path {
        self.src.file()
    }

    /// An error at `value`'s line (none for a default value that is not in the file).
    pub(super) fn err<T>(&self, field: &str, value: &Spanned<T>, message: String) -> ConfigError {
        self.src.at(field, value, message)
    }

    /// An error at `v`'s line, or without a line if the value is absent.
    pub(super) fn err_opt<T>(&self, field: &str, v: Option<&Spanned<T>>, message: String) -> ConfigError {
        self.src.at_opt(field, v, message)
    }

    /// An error about a field without a value of its own (a cross-field rule), at the line of the
    /// table the file sets it in.
    pub(super) fn err_at_path(&self, field: &str, message: String) -> ConfigError {
        self.src.at_path(field, message)
    }

    /// An integer setting in `min..=max` (`unit` follows the value, e.g. `" s"`).
    pub(super) fn int(
        &self,
        field: &str,
        v: &Spanned<i64>,
        min: u64,
        max: u64,
        unit: &str,
    ) -> Result<u64, ConfigError> {
        let x = *v.get_ref();
        match u64::try_from(x) {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(self.err(field, v, format!("{x}{unit} is outside {min}..={max}{unit}"))),
        }
    }

    /// A finite number in `min..=max`.
    pub(super) fn number(
        &self,
        field: &str,
        v: &Spanned<f64>,
        min: f64,
        max: f64,
        unit: &str,
    ) -> Result<f64, ConfigError> {
        let x = *v.get_ref();
        if !x.is_finite() || x < min || x > max {
            return Err(self.err(field, v, format!("{x} {unit} is outside {min}..={max} {unit}")));
        }
        Ok(x)
    }

    /// An optional number in `min..=max`.
    pub(super) fn opt(
        &self,
        field: &str,
        v: Option<&Spanned<f64>>,
        min: f64,
        max: f64,
        unit: &str,
    ) -> Result<Option<f64>, ConfigError> {
        v.map(|v| self.number(field, v, min, max, unit)).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn numbers_and_integers_outside_their_range_name_field_line_and_value() {
        let text = "[limits]\nramp_w_per_s = -1\n";
        let ctx = Ctx::new(Source::new(Path::new("site.toml"), text));
        let v = Spanned::new(26..28, -1.0);
        let e = ctx.number("limits.ramp_w_per_s", &v, 1.0, 1e7, "W/s").unwrap_err();
        assert_eq!(
            e.to_string(),
            "site.toml line 2: limits.ramp_w_per_s: -1 W/s is outside 1..=10000000 W/s"
        );
        let n = Spanned::new(0..0, 0_i64);
        let e = ctx.int("site.shutdown_timeout_s", &n, 1, 3600, " s").unwrap_err();
        assert_eq!(e.to_string(), "site.toml: site.shutdown_timeout_s: 0 s is outside 1..=3600 s");
        assert_eq!(ctx.opt("x", None, 0.0, 1.0, "W").unwrap(), None);
    }
}
