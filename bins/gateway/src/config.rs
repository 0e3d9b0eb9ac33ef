//! The site configuration file (`ems-gateway run --config site.toml`, `check-config`).
//!
//! A TOML description of the site: its name and cycle, the safety limits that depend on the
//! installation (grid connection, pack currents, ramp), the operating mode, and the devices with
//! their Modbus endpoints, unit ids and drivers (SunSpec or a register-map profile). Every error
//! names the file, the line, the field and the value; nothing is started until the whole file is
//! valid. See `examples/site.toml` for a complete example.

use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// A configuration error with its place in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, if known.
    pub line: Option<usize>,
    /// The field (dotted path), if known.
    pub field: String,
    /// What is wrong, with the value.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, " line {l}")?;
        }
        if self.field.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteFile {
    /// `[site]`.
    pub site: SiteSection,
    /// `[limits]`.
    #[serde(default)]
    pub limits: LimitsSection,
    /// `[mode]`.
    #[serde(default)]
    pub mode: ModeSection,
    /// `[devices]`.
    pub devices: DevicesSection,
}

/// `[site]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteSection {
    /// A name for logs.
    pub name: String,
    /// Control cycle in ms (default 100).
    #[serde(default = "default_cycle")]
    pub cycle_ms: Spanned<u64>,
    /// Where the state machine is persisted (relative to the config file).
    #[serde(default = "default_state_file")]
    pub state_file: PathBuf,
}

fn default_cycle() -> Spanned<u64> {
    Spanned::new(0..0, 100)
}

fn default_state_file() -> PathBuf {
    PathBuf::from("ems-gateway.state")
}

/// `[limits]`: installation-specific safety limits (everything else uses the LFP defaults of
/// `ems-safety`, see `safety/README.md`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Import limit at the connection point (main fuse or contract), W.
    pub grid_import_limit_w: Option<Spanned<f64>>,
    /// Export cap at the connection point, W.
    pub grid_export_limit_w: Option<Spanned<f64>>,
    /// Pack maximum charge current, A.
    pub pack_max_charge_current_a: Option<Spanned<f64>>,
    /// Pack maximum discharge current, A.
    pub pack_max_discharge_current_a: Option<Spanned<f64>>,
    /// Set-point ramp, W/s.
    pub ramp_w_per_s: Option<Spanned<f64>>,
}

/// `[mode]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModeSection {
    /// `passive`, `charge-only` or `manual`.
    #[serde(default = "default_mode_kind")]
    pub kind: Spanned<String>,
    /// charge-only: `pv-surplus` or `fixed`.
    pub source: Option<Spanned<String>>,
    /// charge-only fixed power, W (≥ 0).
    pub power_w: Option<Spanned<f64>>,
    /// charge-only SOC target, %.
    pub soc_target_pct: Option<Spanned<f64>>,
    /// charge-only: charging may not raise grid import above this, W.
    pub max_grid_import_w: Option<Spanned<f64>>,
    /// manual: the set-point, W (`+` discharge / `−` charge).
    pub setpoint_w: Option<Spanned<f64>>,
}

impl Default for ModeSection {
    fn default() -> Self {
        Self {
            kind: default_mode_kind(),
            source: None,
            power_w: None,
            soc_target_pct: None,
            max_grid_import_w: None,
            setpoint_w: None,
        }
    }
}

fn default_mode_kind() -> Spanned<String> {
    Spanned::new(0..0, "passive".to_owned())
}

/// `[devices]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevicesSection {
    /// The battery inverter / PCS.
    pub inverter: DeviceEntry,
    /// The BMS.
    pub battery: DeviceEntry,
    /// The grid meter.
    pub meter: DeviceEntry,
    /// PV inverter(s), optional.
    pub pv: Option<DeviceEntry>,
    /// Contactor relays.
    pub contactor: ContactorEntry,
    /// The E-stop input.
    pub estop: EStopEntry,
}

/// One Modbus device.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceEntry {
    /// `modbus-tcp://HOST:PORT` or `modbus-rtu:///dev/ttyX?baud=9600`.
    pub endpoint: Spanned<String>,
    /// Modbus unit id (default 1).
    #[serde(default = "default_unit")]
    pub unit: Spanned<u8>,
    /// `sunspec` or `profile`.
    pub driver: Spanned<String>,
    /// With `driver = "profile"`: the profile file (relative to the config file).
    pub profile: Option<Spanned<String>>,
    /// Poll interval, ms (default: every control cycle). Meter, battery and PV only, at most
    /// 2000 ms (the maximum age of their fast signals); between polls the last reading is reused.
    /// The inverter is read every cycle: its read-back verifies every set-point write.
    pub poll_ms: Option<Spanned<u64>>,
    /// Request timeout, ms (default 500).
    #[serde(default = "default_timeout")]
    pub timeout_ms: Spanned<u64>,
    /// Battery with `driver = "sunspec"` only: SunSpec model 802 carries no cell temperatures
    /// (they are in models 803/804, not supported yet). Setting this reports the given constant
    /// instead and turns off the stuck-sensor check on temperatures: the BMS's own temperature
    /// alarms (802 `Evt1`) are then the only thermal protection (docs/SAFETY.md H32). Without
    /// it an 802 battery reports no temperature and the envelope stays at zero.
    pub assumed_cell_temp_c: Option<Spanned<f64>>,
}

fn default_unit() -> Spanned<u8> {
    Spanned::new(0..0, 1)
}
fn default_timeout() -> Spanned<u64> {
    Spanned::new(0..0, 500)
}

/// The contactor relays on Linux GPIO lines.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactorEntry {
    /// `linux-gpio`.
    pub kind: Spanned<String>,
    /// GPIO chip, e.g. `/dev/gpiochip0`.
    pub chip: Spanned<String>,
    /// Pre-charge relay coil output line.
    pub precharge_line: Spanned<u32>,
    /// Pre-charge relay feedback input line.
    pub precharge_feedback_line: Spanned<u32>,
    /// Main contactor coil output line.
    pub main_line: Spanned<u32>,
    /// Main contactor auxiliary feedback input line.
    pub main_feedback_line: Spanned<u32>,
}

/// The E-stop input.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EStopEntry {
    /// `linux-gpio`.
    pub kind: Spanned<String>,
    /// GPIO chip.
    pub chip: Spanned<String>,
    /// Input line.
    pub line: Spanned<u32>,
    /// `low` (default: normally-closed loop pulled high, pressed = low) or `high`.
    #[serde(default = "default_active")]
    pub active: Spanned<String>,
}

fn default_active() -> Spanned<String> {
    Spanned::new(0..0, "low".to_owned())
}

/// A validated configuration, ready to build the site from.
#[derive(Debug, Clone)]
pub struct SiteConfig {
    /// The file it came from.
    pub file: PathBuf,
    /// The parsed content.
    pub content: SiteFile,
    /// The controller configuration derived from `[limits]` and `[mode]`.
    pub controller: ems_control::ControllerConfig,
}

struct Ctx<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Ctx<'_> {
    fn line_of(&self, span: &std::ops::Range<usize>) -> Option<usize> {
        if span.start == 0 && span.end == 0 {
            return None;
        }
        Some(self.text.get(..span.start).map_or(1, |t| t.matches('\n').count() + 1))
    }

    fn err<T>(&self, field: &str, value: &Spanned<T>, message: String) -> ConfigError {
        ConfigError {
            file: self.file.to_path_buf(),
            line: self.line_of(&value.span()),
            field: field.to_owned(),
            message,
        }
    }

    fn number(
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
}

/// Read and validate a configuration file.
pub fn load(path: &Path) -> Result<SiteConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        line: None,
        field: String::new(),
        message: format!("cannot read: {e}"),
    })?;
    parse(path, &text)
}

/// Parse and validate configuration text (`path` names it in errors and anchors relative paths).
pub fn parse(path: &Path, text: &str) -> Result<SiteConfig, ConfigError> {
    let ctx = Ctx { file: path, text };
    let content: SiteFile = toml::from_str(text).map_err(|e| {
        let line = e.span().and_then(|s| ctx.line_of(&s));
        ConfigError {
            file: path.to_path_buf(),
            line,
            field: String::new(),
            message: e.message().trim().to_owned(),
        }
    })?;
    let controller = validate(&ctx, &content)?;
    Ok(SiteConfig { file: path.to_path_buf(), content, controller })
}

fn validate(ctx: &Ctx<'_>, c: &SiteFile) -> Result<ems_control::ControllerConfig, ConfigError> {
    use ems_control::{ChargeOnlyConfig, ChargeSource, ControllerConfig, ModeSetting, RampRate};
    use ems_core::{Amps, Millis, Percent, Watts};

    let cycle = *c.site.cycle_ms.get_ref();
    if !(10..=10_000).contains(&cycle) {
        return Err(ctx.err(
            "site.cycle_ms",
            &c.site.cycle_ms,
            format!("{cycle} ms is outside 10..=10000 ms"),
        ));
    }
    let l = &c.limits;
    let opt = |field: &str,
               v: &Option<Spanned<f64>>,
               min: f64,
               max: f64,
               unit: &str|
     -> Result<Option<f64>, ConfigError> {
        v.as_ref().map(|v| ctx.number(field, v, min, max, unit)).transpose()
    };
    let import = opt("limits.grid_import_limit_w", &l.grid_import_limit_w, 0.0, 1e7, "W")?;
    let export = opt("limits.grid_export_limit_w", &l.grid_export_limit_w, 0.0, 1e7, "W")?;
    let charge_a = opt("limits.pack_max_charge_current_a", &l.pack_max_charge_current_a, 1.0, 5000.0, "A")?;
    let discharge_a =
        opt("limits.pack_max_discharge_current_a", &l.pack_max_discharge_current_a, 1.0, 5000.0, "A")?;
    let ramp = opt("limits.ramp_w_per_s", &l.ramp_w_per_s, 1.0, 1e7, "W/s")?;
    let defaults = ControllerConfig::default();
    // Narrowing f64 config values to the f32 unit types: the ranges above keep them exact enough.
    #[allow(clippy::cast_possible_truncation)]
    let w = |x: f64| Watts::new(x as f32);
    #[allow(clippy::cast_possible_truncation)]
    let a = |x: f64| Amps::new(x as f32);
    let safety = ems_safety::SafetyConfig::for_site(
        a(charge_a.unwrap_or(100.0)),
        a(discharge_a.unwrap_or(100.0)),
        import.map(w).or(defaults.safety.grid_import_limit),
        export.map(w).or(defaults.safety.grid_export_limit),
    );
    safety.validate().map_err(|e| ConfigError {
        file: ctx.file.to_path_buf(),
        line: None,
        field: "limits".to_owned(),
        message: e.to_string(),
    })?;

    let m = &c.mode;
    let kind = m.kind.get_ref().as_str();
    let mode = match kind {
        "passive" => ModeSetting::Passive,
        "manual" => {
            let Some(sp) = &m.setpoint_w else {
                return Err(ctx.err(
                    "mode.setpoint_w",
                    &m.kind,
                    "is required with kind = \"manual\"".to_owned(),
                ));
            };
            ModeSetting::Manual { setpoint: w(ctx.number("mode.setpoint_w", sp, -1e7, 1e7, "W")?) }
        }
        "charge-only" => {
            let source = match m.source.as_ref().map(|s| (s, s.get_ref().as_str())) {
                None | Some((_, "pv-surplus")) => ChargeSource::PvSurplus,
                Some((_, "fixed")) => {
                    let Some(p) = &m.power_w else {
                        return Err(ctx.err(
                            "mode.power_w",
                            &m.kind,
                            "is required with source = \"fixed\"".to_owned(),
                        ));
                    };
                    ChargeSource::Fixed(w(ctx.number("mode.power_w", p, 0.0, 1e7, "W")?))
                }
                Some((s, other)) => {
                    return Err(ctx.err(
                        "mode.source",
                        s,
                        format!("'{other}' is not one of pv-surplus, fixed"),
                    ));
                }
            };
            let soc = opt("mode.soc_target_pct", &m.soc_target_pct, 0.0, 100.0, "%")?.unwrap_or(95.0);
            let max_import =
                opt("mode.max_grid_import_w", &m.max_grid_import_w, 0.0, 1e7, "W")?.unwrap_or(0.0);
            #[allow(clippy::cast_possible_truncation)]
            let soc_target = Percent::new(soc as f32);
            ModeSetting::ChargeOnly(ChargeOnlyConfig { source, soc_target, max_grid_import: w(max_import) })
        }
        other => {
            return Err(ctx.err(
                "mode.kind",
                &m.kind,
                format!("'{other}' is not one of passive, charge-only, manual"),
            ));
        }
    };

    let d = &c.devices;
    let mut entries =
        vec![("devices.inverter", &d.inverter), ("devices.battery", &d.battery), ("devices.meter", &d.meter)];
    if let Some(pv) = &d.pv {
        entries.push(("devices.pv", pv));
    }
    for (name, e) in entries {
        validate_device(ctx, name, e)?;
    }
    for (field, kind) in
        [("devices.contactor.kind", &d.contactor.kind), ("devices.estop.kind", &d.estop.kind)]
    {
        if kind.get_ref() != "linux-gpio" {
            return Err(ctx.err(field, kind, format!("'{}' is not one of linux-gpio", kind.get_ref())));
        }
    }
    let active = d.estop.active.get_ref().as_str();
    if active != "low" && active != "high" {
        return Err(ctx.err(
            "devices.estop.active",
            &d.estop.active,
            format!("'{active}' is not one of low, high"),
        ));
    }

    let mut controller = ControllerConfig { safety, mode, cycle: Millis::new(cycle), ..defaults };
    if let Some(r) = ramp {
        controller.ramp = RampRate::per_second(w(r));
    }
    Ok(controller)
}

fn validate_device(ctx: &Ctx<'_>, name: &str, e: &DeviceEntry) -> Result<(), ConfigError> {
    let ep = e.endpoint.get_ref();
    if !(ep.starts_with("modbus-tcp://") || ep.starts_with("modbus-rtu://")) {
        return Err(ctx.err(
            &format!("{name}.endpoint"),
            &e.endpoint,
            format!("'{ep}' is not a modbus-tcp://HOST:PORT or modbus-rtu:///dev/ttyX?baud=N URL"),
        ));
    }
    let unit = *e.unit.get_ref();
    if unit > 247 {
        return Err(ctx.err(&format!("{name}.unit"), &e.unit, format!("{unit} is outside 0..=247")));
    }
    match (e.driver.get_ref().as_str(), &e.profile) {
        ("sunspec", None) => {}
        ("sunspec", Some(p)) => {
            return Err(ctx.err(
                &format!("{name}.profile"),
                p,
                "is only used with driver = \"profile\"".to_owned(),
            ));
        }
        ("profile", Some(p)) => {
            let path = resolve(ctx.file, p.get_ref());
            if !path.is_file() {
                return Err(ctx.err(
                    &format!("{name}.profile"),
                    p,
                    format!("'{}' does not exist", path.display()),
                ));
            }
            // The profile is validated too; its own error names its file, line, field and value.
            let profile = ems_devices::modbus::profile::Profile::load(&path)
                .map_err(|e| ctx.err(&format!("{name}.profile"), p, format!("invalid profile: {e}")))?;
            let expected = match name {
                "devices.inverter" => "inverter",
                "devices.battery" => "bms",
                "devices.meter" => "meter",
                _ => "pv",
            };
            let kind = format!("{:?}", profile.device()).to_lowercase();
            if kind != expected {
                return Err(ctx.err(
                    &format!("{name}.profile"),
                    p,
                    format!("'{}' describes a {kind}, not a {expected}", path.display()),
                ));
            }
        }
        ("profile", None) => {
            return Err(ctx.err(
                &format!("{name}.profile"),
                &e.driver,
                "is required with driver = \"profile\"".to_owned(),
            ));
        }
        (other, _) => {
            return Err(ctx.err(
                &format!("{name}.driver"),
                &e.driver,
                format!("'{other}' is not one of sunspec, profile"),
            ));
        }
    }
    if let Some(t) = &e.assumed_cell_temp_c {
        if name != "devices.battery" || e.driver.get_ref() != "sunspec" {
            return Err(ctx.err(
                &format!("{name}.assumed_cell_temp_c"),
                t,
                "is only used with [devices.battery] driver = \"sunspec\"".to_owned(),
            ));
        }
        ctx.number(&format!("{name}.assumed_cell_temp_c"), t, -20.0, 45.0, "°C")?;
    }
    if name == "devices.meter" && e.driver.get_ref() == "sunspec" {
        return Err(ctx.err(
            "devices.meter.driver",
            &e.driver,
            "'sunspec' is not supported for meters (no SunSpec meter model is shipped); use driver = \"profile\""
                .to_owned(),
        ));
    }
    if let Some(p) = &e.poll_ms {
        let x = *p.get_ref();
        if name == "devices.inverter" {
            return Err(ctx.err(
                "devices.inverter.poll_ms",
                p,
                "the inverter is read every control cycle (its read-back verifies each set-point); remove poll_ms"
                    .to_owned(),
            ));
        }
        if !(50..=2000).contains(&x) {
            return Err(ctx.err(&format!("{name}.poll_ms"), p, format!("{x} ms is outside 50..=2000 ms")));
        }
    }
    let t = *e.timeout_ms.get_ref();
    if !(10..=60_000).contains(&t) {
        return Err(ctx.err(
            &format!("{name}.timeout_ms"),
            &e.timeout_ms,
            format!("{t} ms is outside 10..=60000 ms"),
        ));
    }
    Ok(())
}

/// A path from the config file, relative to the file's folder.
#[must_use]
pub fn resolve(config_file: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        config_file.parent().unwrap_or_else(|| Path::new(".")).join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[site]
name = "test"

[limits]
grid_import_limit_w = 11000

[mode]
kind = "charge-only"

[devices.inverter]
endpoint = "modbus-tcp://127.0.0.1:1502"
driver = "sunspec"

[devices.battery]
endpoint = "modbus-tcp://127.0.0.1:1502"
unit = 2
driver = "sunspec"

[devices.meter]
endpoint = "modbus-rtu:///dev/ttyUSB0?baud=9600"
driver = "profile"
profile = "PROFILE"

[devices.contactor]
kind = "linux-gpio"
chip = "/dev/gpiochip0"
precharge_line = 5
precharge_feedback_line = 6
main_line = 7
main_feedback_line = 8

[devices.estop]
kind = "linux-gpio"
chip = "/dev/gpiochip0"
line = 4
"#;

    fn good() -> String {
        GOOD.replace(
            "PROFILE",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../devices/profiles/eastron-sdm630.toml"),
        )
    }

    #[test]
    fn a_good_file_parses_into_a_controller_config() {
        let c = parse(Path::new("site.toml"), &good()).unwrap();
        assert_eq!(c.controller.safety.grid_import_limit, Some(ems_core::Watts::new(11000.0)));
        assert_eq!(c.content.devices.battery.unit.get_ref(), &2);
    }

    #[test]
    fn errors_name_file_line_field_and_value() {
        let bad = good().replace("grid_import_limit_w = 11000", "grid_import_limit_w = -5");
        let e = parse(Path::new("site.toml"), &bad).unwrap_err().to_string();
        assert_eq!(e, "site.toml line 6: limits.grid_import_limit_w: -5 W is outside 0..=10000000 W");
        let bad = good().replace("kind = \"charge-only\"", "kind = \"turbo\"");
        let e = parse(Path::new("site.toml"), &bad).unwrap_err().to_string();
        assert!(e.contains("line 9") && e.contains("mode.kind") && e.contains("turbo"), "{e}");
        let bad = good().replace("unit = 2", "unit = 2\ncolour = 3");
        let e = parse(Path::new("site.toml"), &bad).unwrap_err().to_string();
        assert!(e.contains("colour") && e.contains("line"), "{e}");
        let bad = GOOD.replace(
            "modbus-tcp://127.0.0.1:1502\"\ndriver = \"sunspec\"\n\n[devices.battery]",
            "http://x\"\ndriver = \"sunspec\"\n\n[devices.battery]",
        );
        let e = parse(Path::new("site.toml"), &bad).unwrap_err().to_string();
        assert!(e.contains("devices.inverter.endpoint") && e.contains("http://x"), "{e}");
    }

    #[test]
    fn profile_driver_needs_an_existing_file() {
        let bad = GOOD.replace("PROFILE", "nope.toml");
        let e = parse(Path::new("/tmp/site.toml"), &bad).unwrap_err().to_string();
        assert!(e.contains("devices.meter.profile") && e.contains("nope.toml"), "{e}");
    }
}

#[cfg(test)]
mod more_tests {
    use super::*;

    #[test]
    fn assumed_temperature_only_for_a_sunspec_battery_and_no_sunspec_meter() {
        let profile = concat!(env!("CARGO_MANIFEST_DIR"), "/../../devices/profiles/eastron-sdm630.toml");
        let base = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/site.toml"))
            .unwrap()
            .replace("../devices/profiles/eastron-sdm630.toml", profile);
        assert!(parse(Path::new("site.toml"), &base).is_ok());
        let bad = base.replace("assumed_cell_temp_c = 25", "assumed_cell_temp_c = 80");
        let e = parse(Path::new("site.toml"), &bad).unwrap_err().to_string();
        assert!(e.contains("devices.battery.assumed_cell_temp_c") && e.contains("80"), "{e}");
        let bad =
            base.replace("timeout_ms = 500                     # read every control cycle", "poll_ms = 500");
        let e = parse(Path::new("site.toml"), &bad).unwrap_err().to_string();
        assert!(e.contains("devices.inverter.poll_ms") && e.contains("every control cycle"), "{e}");
        let bad = base.replace("poll_ms = 1000", "poll_ms = 5000");
        let e = parse(Path::new("site.toml"), &bad).unwrap_err().to_string();
        assert!(e.contains("devices.meter.poll_ms: 5000 ms is outside 50..=2000 ms"), "{e}");
        let bad = base.replace("driver = \"profile\"\nprofile", "driver = \"sunspec\"\nprofile");
        let e = parse(Path::new("site.toml"), &bad).unwrap_err().to_string();
        assert!(e.contains("devices.meter"), "{e}");
    }
}
