//! The site configuration file (`ems-gateway run --config site.toml`, `check-config`).
//!
//! A TOML description of the site: its name and cycle, the safety limits that depend on the
//! installation (grid connection, pack currents, ramp), the battery pack (chemistry, cells in
//! series, capacity and any overridden cell limit), the operating mode, and the devices with
//! their Modbus endpoints, unit ids and drivers (SunSpec or a register-map profile). Every error
//! names the file, the line, the field and the value; nothing is started until the whole file is
//! valid. See `examples/site.toml` for a complete example.
//!
//! One module per section: `site`, `limits`, `battery`, `mode`, `devices`, `wiring` (contactor
//! and E-stop), `api`; `errors` places each error in the file.

mod api;
mod battery;
mod cloud;
mod devices;
mod economics;
mod entries;
mod errors;
mod grid_services;
mod island;
mod island_site;
mod limits;
mod modbus_server;
mod mode;
mod mqtt;
mod paths;
mod site;
mod wiring;

// The types of every section keep their public path (`config::ApiTokenEntry`, ...) whether or not
// this binary names them.
#[allow(unused_imports)] // kept for the section types' paths, see above
pub(crate) use api::{rate_limit, ApiProviderEntry, ApiSection, ApiTokenEntry, ApiWiring};
#[allow(unused_imports)] // kept for the section types' paths, see above
pub(crate) use battery::{BatterySection, Chemistry, Origin, PackLimits, Preset, Setting};
#[cfg(feature = "sim")]
pub(crate) use economics::load_file as load_economics_file;
pub(crate) use economics::{BatteryLimits, EconomicsSection, EconomicsWiring};
#[allow(unused_imports)] // kept for the section types' paths, see above
pub(crate) use entries::{ContactorEntry, EStopEntry};
pub(crate) use entries::{DeviceEntry, DevicesSection};
pub(crate) use errors::ConfigError;
#[cfg(feature = "sim")]
pub(crate) use grid_services::{load_file as load_grid_services_file, SimSignal};
#[allow(unused_imports)] // kept for the section types' paths, see above
pub(crate) use grid_services::{
    ComplianceWiring, FrequencyWiring, GridServicesSection, GridServicesWiring, ServicesSpec,
};
#[cfg(feature = "sim")]
pub(crate) use island::load_file as load_island_file;
pub(crate) use island::IslandWiring;
pub(crate) use limits::LimitsSection;
#[allow(unused_imports)] // kept for the section types' paths, see above
pub(crate) use modbus_server::{ModbusServerSection, ModbusServerWiring};
#[allow(unused_imports)] // kept for the section types' paths, see above
pub(crate) use mode::{CapSlotEntry, ModeSection};
pub(crate) use paths::resolve;
#[allow(unused_imports)] // kept for the section types' paths, see above
pub(crate) use site::{SiteSection, DEFAULT_SHUTDOWN_TIMEOUT};
#[allow(unused_imports)] // kept for the section types' paths, see above
pub(crate) use wiring::{ContactorWiring, EStopWiring, IoModule};

use errors::Ctx;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SiteFile {
    /// `[site]`.
    pub site: SiteSection,
    /// `[limits]`.
    #[serde(default)]
    pub limits: LimitsSection,
    /// `[battery]`: the pack (absent: 16 LFP cells in series, the `ems-safety` defaults).
    pub battery: Option<BatterySection>,
    /// `[mode]`.
    #[serde(default)]
    pub mode: ModeSection,
    /// `[devices]`.
    pub devices: DevicesSection,
    /// `[api]`: the local REST API (absent: no API).
    pub api: Option<ApiSection>,
    /// `[economics]`: live economics (absent: no planning, the mode alone).
    pub economics: Option<EconomicsSection>,
    /// `[grid_services]`: frequency services (absent: none).
    pub grid_services: Option<GridServicesSection>,
    /// `[cloud]`: the cloud link (absent: none).
    pub cloud: Option<cloud::CloudSection>,
    /// `[modbus_server]`: the SunSpec Modbus server for SCADA (absent: none).
    pub modbus_server: Option<ModbusServerSection>,
    /// `[mqtt]`: the MQTT link (absent: none).
    pub mqtt: Option<mqtt::MqttSection>,
    /// `[island]`: island detection, backup transfer and black start on the site's own
    /// breaker, inverter and load relays (absent: none).
    pub island: Option<island::IslandSection>,
}

/// A validated configuration, ready to build the site from.
#[derive(Debug, Clone)]
pub(crate) struct SiteConfig {
    /// The file it came from.
    pub file: PathBuf,
    /// The parsed content.
    pub content: SiteFile,
    /// The controller configuration derived from `[limits]`, `[battery]` and `[mode]`.
    pub controller: ems_control::ControllerConfig,
    /// `[battery]`: the pack's effective limits and where each came from.
    pub pack: PackLimits,
    /// `[devices.contactor]`, validated.
    pub contactor: ContactorWiring,
    /// `[devices.estop]`, validated.
    pub estop: EStopWiring,
    /// `[site] time_zone`, resolved.
    pub time_zone: Option<jiff::tz::TimeZone>,
    /// `[api]`, validated (`None`: no API).
    pub api: Option<ApiWiring>,
    /// `[site] shutdown_timeout_s`: how long a graceful shutdown may take before zero power and
    /// open contactors are forced.
    pub shutdown_timeout: ems_core::Millis,
    /// `[economics]`, validated (`None`: no live economics).
    pub economics: Option<EconomicsWiring>,
    /// `[grid_services]`, validated (`None`: no grid service).
    pub grid_services: Option<GridServicesWiring>,
    /// `[cloud]`, validated (`None`: no cloud link).
    pub cloud: Option<ems_api::cloud::CloudConfig>,
    /// `[modbus_server]`, validated (`None`: none).
    pub modbus_server: Option<ModbusServerWiring>,
    /// `[mqtt]`, validated (`None`: no MQTT).
    pub mqtt: Option<ems_api::mqtt::MqttConfig>,
    /// `[island]`, validated, with its devices (`None`: no island operation).
    pub island: Option<IslandWiring>,
}

/// The required tables: a missing one is a missing section, not a missing value.
const SECTIONS: [&str; 7] = [
    "site",
    "devices",
    "devices.inverter",
    "devices.battery",
    "devices.meter",
    "devices.contactor",
    "devices.estop",
];

/// Read and validate a configuration file.
///
/// # Errors
/// The file cannot be read, or any error of [`parse`].
pub(crate) fn load(path: &Path) -> Result<SiteConfig, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| ConfigError::new(path, format!("cannot read: {e}")))?;
    parse(path, &text)
}

/// Parse and validate configuration text (`path` names it in errors and anchors relative paths).
///
/// # Errors
/// The first problem in the file, naming its line, field and value.
pub(crate) fn parse(path: &Path, text: &str) -> Result<SiteConfig, ConfigError> {
    let ctx = Ctx::new(ems_tomlfile::Source::new(path, text));
    let content: SiteFile = ctx.src.decode(&SECTIONS)?;
    let site = site::site(&ctx, &content.site)?;
    let limits = limits::limits(&ctx, &content.limits, content.battery.as_ref())?;
    let mode = mode::mode(&ctx, &content.mode)?;
    devices::devices(&ctx, &content.devices)?;
    let contactor = wiring::contactor_wiring(&ctx, &content.devices.contactor)?;
    let estop = wiring::estop_wiring(&ctx, &content.devices.estop)?;
    wiring::wiring_conflicts(&ctx, &content.devices, &contactor, &estop)?;
    let api = match &content.api {
        Some(a) => api::api_wiring(&ctx, path, a)?,
        None => None,
    };
    let mut economics = match &content.economics {
        Some(e) => Some(economics::economics(&ctx, e, site.time_zone.as_ref(), &battery_limits(&limits))?),
        None => None,
    };
    let grid_services =
        content.grid_services.as_ref().map(|g| grid_services::grid_services(&ctx, g)).transpose()?;
    let modbus_server = match &content.modbus_server {
        Some(m) => modbus_server::modbus_server(&ctx, m, &content.site.name)?,
        None => None,
    };
    if let (Some(m), None) =
        (content.modbus_server.as_ref().filter(|_| modbus_server.is_some()), api.as_ref())
    {
        // Its control writes go through the API's router (roles, validation, audit).
        return Err(ctx.err(
            "modbus_server.listen",
            &m.listen,
            "[modbus_server] needs the API: add an [api] section (its listen may be 127.0.0.1)".to_owned(),
        ));
    }
    let mqtt = content.mqtt.as_ref().map(|m| mqtt::mqtt(&ctx, path, m, &content.site.name)).transpose()?;
    if mqtt.is_some() && api.is_none() {
        // Its commands go through the API's router (roles, validation, audit).
        return Err(ctx.err_at_path("mqtt.url", "[mqtt] needs the API: add [api] with its tokens".to_owned()));
    }
    // The services' energy reservations are SOC bounds through the capacity; without it the
    // controller would keep both directions whole for them and the site could do nothing else.
    if let (Some(g), None) = (grid_services.as_ref(), limits.pack.capacity) {
        let s = &g.spec;
        if s.fcr_n.is_some() || s.fcr_d_up.is_some() || s.fcr_d_down.is_some() || s.ffr.is_some() {
            return Err(ctx.err_at_path(
                "battery.capacity_wh",
                "[grid_services] with FCR or FFR needs the battery's usable capacity for their energy \
                 reservations: set [battery] capacity_wh"
                    .to_owned(),
            ));
        }
    }
    // The plan plans around what the services reserve, at their configured (largest)
    // capacities: a commitment can never exceed them.
    if let (Some(e), Some(g)) = (economics.as_mut(), grid_services.as_ref()) {
        let s = &g.spec;
        let all = [s.fcr_n, s.fcr_d_up, s.fcr_d_down, s.ffr.map(|f| f.0)];
        economics::reserve_for_grid_services(&mut e.problem, s.build(all, None).reserve());
    }
    let cloud = content.cloud.as_ref().map(|c| cloud::cloud(&ctx, c)).transpose()?;
    if cloud.is_some() && api.is_none() {
        return Err(ctx.err_at_path(
            "cloud",
            "[cloud] needs [api]: what the cloud asks for goes through the REST API's rules".to_owned(),
        ));
    }
    let island = content.island.as_ref().map(|s| island::site_island(path, s)).transpose()?;
    let mut controller = ems_control::ControllerConfig {
        safety: limits.safety,
        mode,
        cycle: site.cycle,
        // A grid service's energy reserve becomes an SOC bound through the pack's capacity.
        capacity: limits.pack.capacity,
        ..ems_control::ControllerConfig::default()
    };
    if let Some(r) = limits.ramp {
        controller.ramp = ems_control::RampRate::per_second(r);
    }
    Ok(SiteConfig {
        file: path.to_path_buf(),
        content,
        controller,
        pack: limits.pack,
        contactor,
        estop,
        time_zone: site.time_zone,
        api,
        shutdown_timeout: site.shutdown_timeout,
        economics,
        grid_services,
        cloud,
        modbus_server,
        mqtt,
        island,
    })
}

/// What the validated limits say about the battery, for the planner's model.
fn battery_limits(l: &limits::Limits) -> BatteryLimits {
    let nominal = l.pack.chemistry.preset().nominal_v * f64::from(l.pack.cells_in_series);
    let power = |a: ems_core::Amps| limits::watts(f64::from(a.get()) * nominal);
    BatteryLimits {
        capacity: l.pack.capacity,
        max_charge: power(l.safety.pack_max_charge_current),
        max_discharge: power(l.safety.pack_max_discharge_current),
        soc_low_warn: f64::from(l.safety.limits.soc_low.warn.get()),
        soc_high_warn: f64::from(l.safety.limits.soc_high.warn.get()),
        grid_import: l.safety.grid_import_limit,
        grid_export: l.safety.grid_export_limit,
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
        assert_eq!(c.controller.safety.grid_import_limit, Some(ems_core::watts!(11000.0)));
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
