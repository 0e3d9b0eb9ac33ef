//! The body of `POST /api/v1/site-mode`: the site file's `[mode]` section as JSON, so that an
//! operator can copy values from the file. The key names are the file's (snake_case), with
//! `mode` in place of the file's `kind`:
//!
//! | `mode` | fields (W, %; all optional unless marked) |
//! |---|---|
//! | `passive` | none |
//! | `manual` | `setpoint_w` (required, `+` discharge / `−` charge, ±1e7) |
//! | `charge-only` | `source` (`pv-surplus` default, `fixed`), `power_w` (required with `fixed`, 0..=1e7), `soc_target_pct` (0..=100, default 95), `max_grid_import_w` (0..=1e7, default 0) |
//! | `self-consumption` | `grid_setpoint_w` (±1e7, default 0), `reserve_soc_pct` (default 10), `max_charge_w`, `max_discharge_w` (0..=1e7) |
//! | `peak-shaving` | `import_cap_w` (required, 0..=1e7), `export_cap_w`, `recharge_below_w` (±1e7), `max_recharge_w`, `reserve_soc_pct`, `target_soc_pct`, `slots`: up to 8 `{start: "HH:MM", import_cap_w, export_cap_w}` |
//!
//! A field that does not belong to the chosen mode is refused (a misspelt or misplaced field
//! must not be ignored), as is every value outside its range; the cross-field rules are
//! those of [`ModeSetting::validate`] (reserve at or below target, slots in order, ...).

use crate::input::{self, FieldError};
use ems_control::{
    CapSlot, CapSlots, ChargeOnlyConfig, ChargeSource, ModeSetting, PeakShavingConfig, SelfConsumptionConfig,
    MAX_CAP_SLOTS,
};
use ems_core::{Percent, Watts};
use serde_json::{Map, Value};

/// The mode names, as in the site file.
pub const MODES: [&str; 5] = ["passive", "manual", "charge-only", "self-consumption", "peak-shaving"];

/// Largest power magnitude accepted, W (as the site file).
const MAX_W: f64 = 1e7;

fn number(
    o: &Map<String, Value>,
    parent: &str,
    key: &str,
    min: f64,
    max: f64,
    unit: &str,
) -> Result<f64, FieldError> {
    let x = input::req_number(o, parent, key)?;
    if !(min..=max).contains(&x) {
        return Err(FieldError::new(
            input::path(parent, key),
            format!("must be {min}..={max} {unit}, got {x}"),
        ));
    }
    Ok(x)
}

fn opt_number(
    o: &Map<String, Value>,
    parent: &str,
    key: &str,
    min: f64,
    max: f64,
    unit: &str,
) -> Result<Option<f64>, FieldError> {
    if o.contains_key(key) {
        number(o, parent, key, min, max, unit).map(Some)
    } else {
        Ok(None)
    }
}

#[allow(clippy::cast_possible_truncation)] // range-checked to ±1e7 W and 0..=100 % first
fn watts(field: &str, x: f64) -> Result<Watts, FieldError> {
    Watts::try_new(x as f32).map_err(|e| FieldError::new(field, e.to_string()))
}

#[allow(clippy::cast_possible_truncation)] // range-checked to 0..=100 first
fn percent(field: &str, x: f64) -> Result<Percent, FieldError> {
    Percent::try_new(x as f32).map_err(|e| FieldError::new(field, e.to_string()))
}

fn parse_hhmm(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 || !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

/// Parse a site-mode body (see the module docs).
///
/// # Errors
/// [`FieldError`] naming the field and the value.
pub fn parse(o: &Map<String, Value>) -> Result<ModeSetting, FieldError> {
    let mode = input::req_str(o, "", "mode")?;
    let allowed: &[&str] = match mode {
        "passive" => &["mode"],
        "manual" => &["mode", "setpoint_w"],
        "charge-only" => &["mode", "source", "power_w", "soc_target_pct", "max_grid_import_w"],
        "self-consumption" => {
            &["mode", "grid_setpoint_w", "reserve_soc_pct", "max_charge_w", "max_discharge_w"]
        }
        "peak-shaving" => &[
            "mode",
            "import_cap_w",
            "export_cap_w",
            "recharge_below_w",
            "max_recharge_w",
            "reserve_soc_pct",
            "target_soc_pct",
            "slots",
        ],
        other => {
            return Err(FieldError::new(
                "mode",
                format!("must be one of {MODES:?}, got {}", input::show(&Value::String(other.to_owned()))),
            ))
        }
    };
    input::only_keys(o, "", allowed)?;
    let setting = match mode {
        "manual" => ModeSetting::Manual {
            setpoint: watts("setpoint_w", number(o, "", "setpoint_w", -MAX_W, MAX_W, "W")?)?,
        },
        "charge-only" => {
            let source = match o.get("source") {
                None => ChargeSource::PvSurplus,
                Some(Value::String(s)) if s == "pv-surplus" => ChargeSource::PvSurplus,
                Some(Value::String(s)) if s == "fixed" => {
                    ChargeSource::Fixed(watts("power_w", number(o, "", "power_w", 0.0, MAX_W, "W")?)?)
                }
                Some(other) => {
                    return Err(FieldError::new(
                        "source",
                        format!("must be \"pv-surplus\" or \"fixed\", got {}", input::show(other)),
                    ))
                }
            };
            if matches!(source, ChargeSource::PvSurplus) && o.contains_key("power_w") {
                return Err(FieldError::new("power_w", "only with source = \"fixed\""));
            }
            let soc = opt_number(o, "", "soc_target_pct", 0.0, 100.0, "%")?.unwrap_or(95.0);
            let import = opt_number(o, "", "max_grid_import_w", 0.0, MAX_W, "W")?.unwrap_or(0.0);
            ModeSetting::ChargeOnly(ChargeOnlyConfig {
                source,
                soc_target: percent("soc_target_pct", soc)?,
                max_grid_import: watts("max_grid_import_w", import)?,
            })
        }
        "self-consumption" => {
            let d = SelfConsumptionConfig::default();
            let grid = opt_number(o, "", "grid_setpoint_w", -MAX_W, MAX_W, "W")?;
            let reserve = opt_number(o, "", "reserve_soc_pct", 0.0, 100.0, "%")?;
            let max_c = opt_number(o, "", "max_charge_w", 0.0, MAX_W, "W")?;
            let max_d = opt_number(o, "", "max_discharge_w", 0.0, MAX_W, "W")?;
            ModeSetting::SelfConsumption(SelfConsumptionConfig {
                grid_setpoint: grid.map_or(Ok(d.grid_setpoint), |x| watts("grid_setpoint_w", x))?,
                reserve_soc: reserve.map_or(Ok(d.reserve_soc), |x| percent("reserve_soc_pct", x))?,
                max_charge: max_c.map(|x| watts("max_charge_w", x)).transpose()?,
                max_discharge: max_d.map(|x| watts("max_discharge_w", x)).transpose()?,
            })
        }
        "peak-shaving" => {
            let d = PeakShavingConfig::default();
            let import_cap = watts("import_cap_w", number(o, "", "import_cap_w", 0.0, MAX_W, "W")?)?;
            let export_cap = opt_number(o, "", "export_cap_w", 0.0, MAX_W, "W")?;
            let recharge = opt_number(o, "", "recharge_below_w", -MAX_W, MAX_W, "W")?;
            let max_recharge = opt_number(o, "", "max_recharge_w", 0.0, MAX_W, "W")?;
            let reserve = opt_number(o, "", "reserve_soc_pct", 0.0, 100.0, "%")?;
            let target = opt_number(o, "", "target_soc_pct", 0.0, 100.0, "%")?;
            let slots = match o.get("slots") {
                None => CapSlots::new(),
                Some(Value::Array(items)) => slots(items)?,
                Some(other) => {
                    return Err(FieldError::new(
                        "slots",
                        format!("must be an array, got {}", input::show(other)),
                    ))
                }
            };
            ModeSetting::PeakShaving(PeakShavingConfig {
                import_cap,
                export_cap: export_cap.map_or(Ok(d.export_cap), |x| watts("export_cap_w", x))?,
                recharge_below: recharge.map_or(Ok(d.recharge_below), |x| watts("recharge_below_w", x))?,
                max_recharge: max_recharge.map(|x| watts("max_recharge_w", x)).transpose()?,
                reserve_soc: reserve.map_or(Ok(d.reserve_soc), |x| percent("reserve_soc_pct", x))?,
                target_soc: target.map_or(Ok(d.target_soc), |x| percent("target_soc_pct", x))?,
                slots,
            })
        }
        _ => ModeSetting::Passive,
    };
    setting.validate().map_err(|e| FieldError::new("mode", e.to_string()))?;
    Ok(setting)
}

fn slots(items: &[Value]) -> Result<CapSlots, FieldError> {
    if items.len() > MAX_CAP_SLOTS {
        return Err(FieldError::new("slots", format!("at most {MAX_CAP_SLOTS} slots, got {}", items.len())));
    }
    let mut out = CapSlots::new();
    for (i, item) in items.iter().enumerate() {
        let parent = format!("slots[{i}]");
        let Value::Object(s) = item else {
            return Err(FieldError::new(parent, format!("must be an object, got {}", input::show(item))));
        };
        input::only_keys(s, &parent, &["start", "import_cap_w", "export_cap_w"])?;
        let start = input::req_str(s, &parent, "start")?;
        let start_minute = parse_hhmm(start).ok_or_else(|| {
            FieldError::new(input::path(&parent, "start"), format!("must be a time HH:MM, got {start:?}"))
        })?;
        let slot = CapSlot {
            start_minute,
            import_cap: watts(
                &input::path(&parent, "import_cap_w"),
                number(s, &parent, "import_cap_w", 0.0, MAX_W, "W")?,
            )?,
            export_cap: watts(
                &input::path(&parent, "export_cap_w"),
                number(s, &parent, "export_cap_w", 0.0, MAX_W, "W")?,
            )?,
        };
        out.try_push(slot).map_err(|e| FieldError::new("slots", e.to_string()))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    // Test code: a failed unwrap or panic is a failed test with its message.
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use serde_json::json;

    fn p(v: Value) -> Result<ModeSetting, FieldError> {
        let Value::Object(o) = v else { panic!() };
        parse(&o)
    }

    #[test]
    fn every_mode_parses_and_extras_are_refused() {
        assert_eq!(p(json!({"mode": "passive"})).unwrap(), ModeSetting::Passive);
        assert!(matches!(
            p(json!({"mode": "manual", "setpoint_w": -500})).unwrap(),
            ModeSetting::Manual { .. }
        ));
        let ModeSetting::SelfConsumption(sc) =
            p(json!({"mode": "self-consumption", "reserve_soc_pct": 20, "grid_setpoint_w": 50})).unwrap()
        else {
            panic!()
        };
        assert_eq!(sc.reserve_soc, ems_core::percent!(20.0));
        assert!(matches!(
            p(json!({"mode": "charge-only", "source": "fixed", "power_w": 1000})).unwrap(),
            ModeSetting::ChargeOnly(ChargeOnlyConfig { source: ChargeSource::Fixed(_), .. })
        ));
        let ps = p(json!({"mode": "peak-shaving", "import_cap_w": 5000,
            "slots": [{"start": "17:00", "import_cap_w": 3000, "export_cap_w": 2000}]}))
        .unwrap();
        assert!(matches!(ps, ModeSetting::PeakShaving(c) if c.slots.len() == 1));
        assert_eq!(p(json!({"mode": "passive", "setpoint_w": 1})).unwrap_err().field, "setpoint_w");
        assert_eq!(p(json!({"mode": "manual"})).unwrap_err().field, "setpoint_w");
        assert_eq!(p(json!({"mode": "turbo"})).unwrap_err().field, "mode");
        assert_eq!(p(json!({"mode": "manual", "setpoint_w": 1e9})).unwrap_err().field, "setpoint_w");
        assert_eq!(
            p(json!({"mode": "peak-shaving", "import_cap_w": 1, "slots": [{"start": "25:00", "import_cap_w": 1, "export_cap_w": 1}]}))
                .unwrap_err()
                .field,
            "slots[0].start"
        );
        assert_eq!(p(json!({"mode": "charge-only", "power_w": 5})).unwrap_err().field, "power_w");
    }
}
