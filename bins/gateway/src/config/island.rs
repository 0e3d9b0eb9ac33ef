//! `[island]`: island detection, backup transfer and black start on the **built-in simulated
//! site** (`ems-gateway --island FILE`, see `examples/island/sim.toml`).
//!
//! ```toml
//! [island]
//! auto_black_start_s = 30          # optional: black start on its own after a blackout
//! un_v = 230                       # optional: nominal voltage (default 230 V)
//! enter_service_delay_s = 60       # optional: grid in the enter-service window this long
//! ramp_pct_per_min = 10            # optional: reconnection ramp, % of the rating per minute
//! outages = [{ at_s = 60, for_s = 120 }]   # the simulated grid fails and returns
//!
//! [[island.loads]]                 # in relay order; priority 0 = critical
//! name = "fridge"
//! priority = 0
//! nominal_w = 300
//! ```
//!
//! The settings start from `IslandSettings::en50549_vde4105(un_v)` and are validated by
//! `ems-grid` (errors name the field and the value). The same section in a **site file**
//! (`run --config`) drives real devices: `[island.breaker]`, `[island.inverter_mode]` and a
//! `relay` per circuit are then required and `outages` is refused (see [`super::island_site`]);
//! in a `--island FILE` for the simulated site they are refused (its plant has its own).

use super::errors::ConfigError;
use super::island_site::{island_modbus, BreakerEntry, GridModeEntry, IslandModbusWiring, RelayEntry};
use ems_core::{Millis, Percent, Volts, Watts};
use ems_grid::island::{IslandSettings, LoadCircuit, MAX_LOADS};
use serde::Deserialize;

#[cfg_attr(not(feature = "sim"), allow(dead_code))] // read by `--island FILE` (simulated site)
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct IslandFile {
    island: IslandSection,
}

/// `[island]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IslandSection {
    auto_black_start_s: Option<f64>,
    un_v: Option<f64>,
    enter_service_delay_s: Option<f64>,
    ramp_pct_per_min: Option<f64>,
    #[serde(default)]
    outages: Vec<OutageEntry>,
    #[serde(default)]
    loads: Vec<LoadEntry>,
    /// A real site's grid-tie breaker.
    breaker: Option<BreakerEntry>,
    /// A real site's inverter grid-mode registers.
    inverter_mode: Option<GridModeEntry>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutageEntry {
    at_s: f64,
    for_s: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoadEntry {
    name: String,
    priority: u8,
    nominal_w: f64,
    /// A real site's load-shedding relay of this circuit.
    relay: Option<RelayEntry>,
}

/// A validated `[island]` for the simulated site.
#[derive(Debug, Clone)]
pub(crate) struct IslandWiring {
    /// The sequence's settings.
    pub settings: IslandSettings,
    /// The circuits `(name, priority, nominal)`, in relay order.
    pub loads: Vec<(String, u8, Watts)>,
    /// Grid outages `(from, until)` in simulated time.
    #[cfg_attr(not(feature = "sim"), allow(dead_code))] // the simulated site's schedule
    pub outages: Vec<(Millis, Millis)>,
    /// A real site's island devices (`None` on the simulated site).
    pub devices: Option<IslandModbusWiring>,
}

fn seconds(path: &std::path::Path, field: &str, v: f64) -> Result<Millis, ConfigError> {
    if !v.is_finite() || !(0.0..=1.0e7).contains(&v) {
        return Err(ConfigError::new(path, format!("field '{field}' = {v} must be seconds in 0..=10000000")));
    }
    // Validated finite, ≥ 0 and ≤ 1e7 s: the product fits u64.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(Millis::new((v * 1000.0).round() as u64))
}

fn value_f32(path: &std::path::Path, field: &str, v: f64, lo: f64, hi: f64) -> Result<f32, ConfigError> {
    if !v.is_finite() || !(lo..=hi).contains(&v) {
        return Err(ConfigError::new(path, format!("field '{field}' = {v} must be within {lo}..={hi}")));
    }
    #[allow(clippy::cast_possible_truncation)] // validated within a small range
    Ok(v as f32)
}

#[cfg_attr(not(feature = "sim"), allow(dead_code))] // `--island FILE` is the simulated site's
/// Read and validate a `--island FILE`.
///
/// # Errors
/// [`ConfigError`] naming the file, the field and the value.
pub(crate) fn load_file(path: &std::path::Path) -> Result<IslandWiring, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| ConfigError::new(path, format!("cannot read: {e}")))?;
    let src = ems_tomlfile::Source::new(path, &text);
    let file: IslandFile = src.decode(&["island"])?;
    island(path, &file.island, Plant::Simulated)
}

/// Whose devices an `[island]` drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plant {
    /// The simulated site's plant (`--island FILE`).
    Simulated,
    /// A real site's Modbus devices (`[island]` in the site file).
    Site,
}

/// Validate the `[island]` of a site file.
///
/// # Errors
/// [`ConfigError`] naming the file, the field and the value.
pub(crate) fn site_island(path: &std::path::Path, s: &IslandSection) -> Result<IslandWiring, ConfigError> {
    island(path, s, Plant::Site)
}

fn island(path: &std::path::Path, s: &IslandSection, plant: Plant) -> Result<IslandWiring, ConfigError> {
    let sim_only = |field: &str| {
        ConfigError::new(
            path,
            format!("field '{field}' is only for the simulated site (--island FILE); a real site's grid fails by itself"),
        )
    };
    let site_only = |field: &str| {
        ConfigError::new(
            path,
            format!("field '{field}' is only for a real site (run --config); the simulated site has its own plant"),
        )
    };
    if plant == Plant::Site && !s.outages.is_empty() {
        return Err(sim_only("island.outages"));
    }
    if plant == Plant::Simulated {
        if s.breaker.is_some() {
            return Err(site_only("island.breaker"));
        }
        if s.inverter_mode.is_some() {
            return Err(site_only("island.inverter_mode"));
        }
        if let Some(i) = s.loads.iter().position(|l| l.relay.is_some()) {
            return Err(site_only(&format!("island.loads[{i}].relay")));
        }
    }
    let un = match s.un_v {
        Some(v) => value_f32(path, "island.un_v", v, 100.0, 500.0)?,
        None => 230.0,
    };
    let mut settings = IslandSettings::en50549_vde4105(
        Volts::try_new(un).map_err(|e| ConfigError::new(path, e.to_string()))?,
    );
    settings.sequence.auto_black_start =
        s.auto_black_start_s.map(|v| seconds(path, "island.auto_black_start_s", v)).transpose()?;
    if let Some(v) = s.enter_service_delay_s {
        settings.enter_service.delay = seconds(path, "island.enter_service_delay_s", v)?;
    }
    if let Some(v) = s.ramp_pct_per_min {
        let p = value_f32(path, "island.ramp_pct_per_min", v, 0.1, 100.0)?;
        settings.enter_service.ramp_per_min = Percent::try_new(p)
            .map_err(|e| ConfigError::new(path, format!("field 'island.ramp_pct_per_min': {e}")))?;
    }
    settings.validate().map_err(|e| ConfigError::new(path, format!("[island]: {e}")))?;
    if s.loads.is_empty() {
        return Err(ConfigError::new(
            path,
            "field 'island.loads': at least one [[island.loads]] circuit".to_owned(),
        ));
    }
    if s.loads.len() > MAX_LOADS {
        return Err(ConfigError::new(
            path,
            format!("field 'island.loads': {} circuits, at most {MAX_LOADS}", s.loads.len()),
        ));
    }
    let mut loads = Vec::new();
    for (i, l) in s.loads.iter().enumerate() {
        let w = value_f32(path, &format!("island.loads[{i}].nominal_w"), l.nominal_w, 0.0, 1.0e6)?;
        if l.name.trim().is_empty() {
            return Err(ConfigError::new(
                path,
                format!("field 'island.loads[{i}].name' = \"\" must not be empty"),
            ));
        }
        if loads.iter().any(|(n, _, _): &(String, u8, Watts)| n == &l.name) {
            return Err(ConfigError::new(
                path,
                format!("field 'island.loads[{i}].name' = \"{}\" is used twice", l.name),
            ));
        }
        loads.push((l.name.clone(), l.priority, Watts::saturating(w)));
    }
    // The load table's own checks (priorities, count), with a rating that only must be > 0.
    let circuits: Vec<LoadCircuit> =
        loads.iter().map(|(_, p, w)| LoadCircuit { name: "circuit", priority: *p, nominal: *w }).collect();
    ems_grid::island::LoadTable::try_new(&circuits)
        .map_err(|e| ConfigError::new(path, format!("[[island.loads]]: {e}")))?;
    let mut outages = Vec::new();
    for (i, o) in s.outages.iter().enumerate() {
        let at = seconds(path, &format!("island.outages[{i}].at_s"), o.at_s)?;
        let len = seconds(path, &format!("island.outages[{i}].for_s"), o.for_s)?;
        if len == Millis::ZERO {
            return Err(ConfigError::new(
                path,
                format!("field 'island.outages[{i}].for_s' = {} must be > 0", o.for_s),
            ));
        }
        outages.push((at, at.plus(len)));
    }
    let devices = match plant {
        Plant::Simulated => None,
        Plant::Site => {
            let breaker = s.breaker.as_ref().ok_or_else(|| {
                ConfigError::new(
                    path,
                    "field 'island.breaker' is required on a real site: [island.breaker]".to_owned(),
                )
            })?;
            let inverter = s.inverter_mode.as_ref().ok_or_else(|| {
                ConfigError::new(
                    path,
                    "field 'island.inverter_mode' is required on a real site: [island.inverter_mode]"
                        .to_owned(),
                )
            })?;
            let relays: Vec<(String, Option<&RelayEntry>)> =
                s.loads.iter().map(|l| (l.name.clone(), l.relay.as_ref())).collect();
            Some(island_modbus(path, breaker, inverter, &relays)?)
        }
    };
    Ok(IslandWiring { settings, loads, outages, devices })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<IslandWiring, ConfigError> {
        let path = std::path::Path::new("island.toml");
        let file: IslandFile = ems_tomlfile::Source::new(path, text).decode(&["island"])?;
        island(path, &file.island, Plant::Simulated)
    }

    #[test]
    fn the_example_parses() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/island/sim.toml"))
                .unwrap();
        let w = parse(&text).unwrap();
        assert_eq!(w.outages, vec![(Millis::from_secs(60), Millis::from_secs(180))]);
        assert_eq!(w.loads.len(), 5);
    }

    #[test]
    fn errors_name_the_field_and_the_value() {
        let e = parse(
            "[island]\nramp_pct_per_min = 500\n[[island.loads]]\nname = \"a\"\npriority = 0\nnominal_w = 1\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("island.ramp_pct_per_min") && e.contains("500"), "{e}");
        let e = parse("[island]\noutages = [{at_s = 1, for_s = 0}]\n[[island.loads]]\nname = \"a\"\npriority = 0\nnominal_w = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("island.outages[0].for_s"), "{e}");
        let e = parse("[island]\n").unwrap_err().to_string();
        assert!(e.contains("island.loads"), "{e}");
        let e = parse("[island]\n[[island.loads]]\nname = \"a\"\npriority = 0\nnominal_w = -1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("island.loads[0].nominal_w") && e.contains("-1"), "{e}");
    }

    const SITE: &str = r#"
[island]
enter_service_delay_s = 5
[island.breaker]
endpoint = "modbus-tcp://127.0.0.1:1502"
command_register = 0
open_value = 0
close_value = 1
position = { table = "holding", register = 1, bit = 0 }
[island.inverter_mode]
endpoint = "modbus-tcp://127.0.0.1:1502"
rating_w = 5000
command_register = 10
mode = { register = 11 }
ac_power = { register = 18, scale = 1, signed = true }
[[island.loads]]
name = "fridge"
priority = 0
nominal_w = 300
relay = { coil_register = 20, feedback = { table = "holding", register = 21, bit = 0 } }
"#;

    fn parse_site(text: &str) -> Result<IslandWiring, ConfigError> {
        let path = std::path::Path::new("site.toml");
        let file: IslandFile = ems_tomlfile::Source::new(path, text).decode(&["island"])?;
        site_island(path, &file.island)
    }

    #[test]
    fn a_real_site_island_names_its_devices() {
        let w = parse_site(SITE).unwrap();
        let d = w.devices.unwrap();
        assert_eq!(d.rating, Watts::saturating(5000.0));
        assert_eq!(d.relays.len(), 1);
        assert_eq!(d.relays[0].0.endpoint, "modbus-tcp://127.0.0.1:1502");
        assert!(d.inverter.ac_power.is_some());
        // The simulated site refuses the device sections, a real site the outage schedule.
        let e = parse(SITE).unwrap_err().to_string();
        assert!(e.contains("island.breaker") && e.contains("real site"), "{e}");
        let e = parse_site(&SITE.replace("enter_service_delay_s = 5", "outages = [{ at_s = 1, for_s = 2 }]"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("island.outages") && e.contains("simulated"), "{e}");
    }

    #[test]
    fn a_real_site_island_refuses_missing_or_bad_devices_naming_the_field() {
        let cases = [
            (SITE.replace("rating_w = 5000", "rating_w = -3"), "island.inverter_mode.rating_w", "-3"),
            (SITE.replace("ac_power = { register = 18, scale = 1, signed = true }\n", ""), "island.inverter_mode.ac_power", "required"),
            (SITE.replace("close_value = 1", "close_value = 0"), "island.breaker.close_value", "0"),
            (SITE.replace("bit = 0 }\n[island.inverter_mode]", "bit = 16 }\n[island.inverter_mode]"), "island.breaker.position.bit", "16"),
            (SITE.replace("mode = { register = 11 }", "mode = { table = \"coil\", register = 11 }"), "island.inverter_mode.mode.table", "coil"),
            (SITE.replace("coil_register = 20", "coil_register = 0"), "island.loads[0].relay.coil_register", "0"),
            (SITE.replace("coil_register = 20", "coil_register = 10"), "island.loads[0].relay.coil_register", "10"),
            (SITE.replace("coil_register = 20,", "coil_register = 20, timeout_ms = 5,"), "island.loads[0].relay.timeout_ms", "5"),
            (SITE.replace("relay = { coil_register = 20, feedback = { table = \"holding\", register = 21, bit = 0 } }\n", ""), "island.loads[0].relay", "required"),
            (SITE.replace("endpoint = \"modbus-tcp://127.0.0.1:1502\"\nrating_w", "endpoint = \"http://x\"\nrating_w"), "island.inverter_mode.endpoint", "http://x"),
        ];
        for (text, field, value) in cases {
            let e = parse_site(&text).unwrap_err().to_string();
            assert!(e.contains(field) && e.contains(value), "{field}: {e}");
        }
        let no_inverter = SITE.split("[island.inverter_mode]").next().unwrap().to_owned()
            + "[[island.loads]]\nname = \"a\"\npriority = 0\nnominal_w = 1\nrelay = { coil_register = 20, feedback = { register = 21, bit = 0 } }\n";
        let e = parse_site(&no_inverter).unwrap_err().to_string();
        assert!(e.contains("island.inverter_mode") && e.contains("required"), "{e}");
    }
}
