//! The site configuration file (`ems-gateway run --config site.toml`, `check-config`).
//!
//! A TOML description of the site: its name and cycle, the safety limits that depend on the
//! installation (grid connection, pack currents, ramp), the operating mode, and the devices with
//! their Modbus endpoints, unit ids and drivers (SunSpec or a register-map profile). Every error
//! names the file, the line, the field and the value; nothing is started until the whole file is
//! valid. See `examples/site.toml` for a complete example.

use ems_devices::estop::ActiveLevel;
use ems_devices::modbus::io::IoPoint;
use ems_devices::modbus::transport::ModbusEndpoint;
use ems_devices::modbus::{RegisterAddress, RegisterKind};
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;
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
    /// `[api]`: the local REST API (absent: no API).
    pub api: Option<ApiSection>,
}

/// `[api]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// `HOST:PORT` to listen on (default `127.0.0.1:8080`: loopback only), or `off`.
    #[serde(default = "default_api_listen")]
    pub listen: Spanned<String>,
    /// SQLite database for the audit log, history and schedules (relative to this file);
    /// in memory (lost at restart) when absent.
    pub database: Option<Spanned<String>>,
    /// Battery serial numbers provider schedules may name.
    #[serde(default)]
    pub battery_serials: Vec<Spanned<String>>,
    /// The largest power a provider schedule may ask for, W (default 0: none).
    pub schedule_max_power_w: Option<Spanned<f64>>,
    /// API tokens (`[[api.tokens]]`).
    #[serde(default)]
    pub tokens: Vec<ApiTokenEntry>,
    /// Schedule providers (`[[api.providers]]`).
    #[serde(default)]
    pub providers: Vec<ApiProviderEntry>,
    /// Most connections served at once (1..=65535, default 256); further clients wait.
    pub max_connections: Option<Spanned<i64>>,
    /// A client must send its request headers within this many seconds (1..=300, default 5).
    pub header_read_timeout_s: Option<Spanned<i64>>,
    /// An idle keep-alive connection is closed after this many seconds (1..=3600, default 60).
    pub idle_timeout_s: Option<Spanned<i64>>,
    /// `/metrics` without a token (default false: a viewer token is required).
    pub metrics_public: Option<Spanned<bool>>,
    /// Audit entries older than this are deleted, days (1..=36500, default 365).
    pub audit_max_age_days: Option<Spanned<i64>>,
    /// The audit log keeps at most this many entries, the oldest go first
    /// (1000..=1000000000, default 1000000).
    pub audit_max_rows: Option<Spanned<i64>>,
    /// Telemetry history older than this is deleted, days (1..=36500, default 730: the 15-minute
    /// means; the finer tiers keep their shorter defaults, capped at this).
    pub history_max_age_days: Option<Spanned<i64>>,
    /// Requests per minute per token (1..=60000, default 300: 5 per second, bursts of 20).
    pub rate_limit_per_minute: Option<Spanned<i64>>,
    /// Requests per minute per client address, with or without a valid token (1..=600000,
    /// default 600).
    pub ip_rate_limit_per_minute: Option<Spanned<i64>>,
}

fn default_api_listen() -> Spanned<String> {
    Spanned::new(0..0, "127.0.0.1:8080".to_owned())
}

/// `[[api.tokens]]`: `ems-gateway new-token --name N --role R` prints one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiTokenEntry {
    /// Who holds it (audit log).
    pub name: Spanned<String>,
    /// `viewer`, `operator`, `provider` or `admin`.
    pub role: Spanned<String>,
    /// SHA-256 of the token, 64 hex digits (the token itself is never stored).
    pub sha256: Spanned<String>,
}

/// `[[api.providers]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiProviderEntry {
    /// The provider's name, as it signs its requests.
    pub name: Spanned<String>,
    /// Its Ed25519 public key, 64 hex digits.
    pub public_key_hex: Spanned<String>,
}

/// `[api]`, validated.
#[derive(Debug, Clone)]
pub struct ApiWiring {
    /// Where to listen.
    pub listen: std::net::SocketAddr,
    /// The database file, resolved.
    pub database: Option<PathBuf>,
    /// Serials.
    pub serials: Vec<String>,
    /// Largest schedule power, W.
    pub schedule_max_power_w: u64,
    /// Tokens.
    pub tokens: Vec<ems_api::auth::TokenConfig>,
    /// Providers.
    pub providers: Vec<ems_api::schedules::ProviderKey>,
    /// `max_connections`: most connections served at once (1..=65535).
    pub max_connections: usize,
    /// `header_read_timeout_s`: time a client has to send its request headers.
    pub header_read_timeout: Duration,
    /// `idle_timeout_s`: an idle keep-alive connection is closed after this.
    pub idle_timeout: Duration,
    /// `metrics_public`: `/metrics` is served without a token.
    pub metrics_public: bool,
    /// `audit_max_age_days`: audit entries older than this are deleted.
    pub audit_max_age: Duration,
    /// `audit_max_rows`: the audit log keeps at most this many entries.
    pub audit_max_rows: u64,
    /// `history_max_age_days`: telemetry history older than this is deleted.
    pub history_max_age: Duration,
    /// `rate_limit_per_minute`: requests per minute per token.
    pub rate_limit_per_minute: u32,
    /// `ip_rate_limit_per_minute`: requests per minute per client address.
    pub ip_rate_limit_per_minute: u32,
}

impl ApiWiring {
    /// Defaults of the keys above, for an API configured without them.
    pub const DEFAULT_MAX_CONNECTIONS: usize = 256;
    /// Default `header_read_timeout_s`.
    pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
    /// Default `idle_timeout_s`.
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
    /// Default `audit_max_age_days` (365).
    pub const DEFAULT_AUDIT_MAX_AGE: Duration = Duration::from_secs(365 * DAY_S);
    /// Default `audit_max_rows`.
    pub const DEFAULT_AUDIT_MAX_ROWS: u64 = 1_000_000;
    /// Default `history_max_age_days` (730: what the database keeps of its 15-minute means).
    pub const DEFAULT_HISTORY_MAX_AGE: Duration = Duration::from_secs(730 * DAY_S);
    /// Default `rate_limit_per_minute` (`RateLimit::default()`: 5 per second).
    pub const DEFAULT_RATE_LIMIT_PER_MINUTE: u32 = 300;
    /// Default `ip_rate_limit_per_minute`.
    pub const DEFAULT_IP_RATE_LIMIT_PER_MINUTE: u32 = 600;
}

const DAY_S: u64 = 86_400;

/// The token bucket for `n` requests per minute (`rate_limit_per_minute`,
/// `ip_rate_limit_per_minute`): refilled at that rate, bursts of a quarter minute's worth (20 at
/// the default 300 per minute, today's `RateLimit::default()`), at least 1.
#[must_use]
pub fn rate_limit(per_minute: u32) -> ems_api::auth::RateLimit {
    let n = f64::from(per_minute);
    ems_api::auth::RateLimit { burst: (n / 15.0).max(1.0), per_second: n / 60.0 }
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
    /// The site's IANA time zone (e.g. `Europe/Berlin`) for local times of day (peak-shaving
    /// slots); the system's zone if not given.
    pub time_zone: Option<Spanned<String>>,
    /// How long a graceful shutdown may take before zero power and open contactors are forced,
    /// s (1..=3600, default 30).
    pub shutdown_timeout_s: Option<Spanned<i64>>,
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
    /// `passive`, `charge-only`, `manual`, `self-consumption` or `peak-shaving`.
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
    /// self-consumption: the grid power to hold, W (default 0 = zero export and import).
    pub grid_setpoint_w: Option<Spanned<f64>>,
    /// self-consumption and peak-shaving: no discharge (outside peaks) at or below this SOC, %.
    pub reserve_soc_pct: Option<Spanned<f64>>,
    /// self-consumption: largest charge power the mode asks for, W.
    pub max_charge_w: Option<Spanned<f64>>,
    /// self-consumption: largest discharge power the mode asks for, W.
    pub max_discharge_w: Option<Spanned<f64>>,
    /// peak-shaving: import cap, W.
    pub import_cap_w: Option<Spanned<f64>>,
    /// peak-shaving: export cap (magnitude), W.
    pub export_cap_w: Option<Spanned<f64>>,
    /// peak-shaving: recharge only while import (battery idle) is below this, W.
    pub recharge_below_w: Option<Spanned<f64>>,
    /// peak-shaving: largest recharge power, W.
    pub max_recharge_w: Option<Spanned<f64>>,
    /// peak-shaving: recharge toward this SOC, %.
    pub target_soc_pct: Option<Spanned<f64>>,
    /// peak-shaving: caps by local time of day (`[[mode.slots]] start = "17:00"`, `import_cap_w`,
    /// `export_cap_w`), in the order of the day, at most 8.
    #[serde(default)]
    pub slots: Vec<CapSlotEntry>,
}

/// One `[[mode.slots]]` of peak shaving.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapSlotEntry {
    /// Local time the slot starts, `HH:MM`.
    pub start: Spanned<String>,
    /// Import cap from then on, W.
    pub import_cap_w: Spanned<f64>,
    /// Export cap from then on, W.
    pub export_cap_w: Spanned<f64>,
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
            grid_setpoint_w: None,
            reserve_soc_pct: None,
            max_charge_w: None,
            max_discharge_w: None,
            import_cap_w: None,
            export_cap_w: None,
            recharge_below_w: None,
            max_recharge_w: None,
            target_soc_pct: None,
            slots: Vec::new(),
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

/// The contactor relays: on Linux GPIO lines (`kind = "linux-gpio"`) or on a Modbus I/O module
/// (`kind = "modbus"`; coils are holding registers written 1/0, feedback contacts are bits of a
/// register, see `ems_devices::modbus::io`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactorEntry {
    /// `linux-gpio` or `modbus`.
    pub kind: Spanned<String>,
    /// linux-gpio: GPIO chip, e.g. `/dev/gpiochip0`.
    pub chip: Option<Spanned<String>>,
    /// linux-gpio: pre-charge relay coil output line.
    pub precharge_line: Option<Spanned<u32>>,
    /// linux-gpio: pre-charge relay feedback input line.
    pub precharge_feedback_line: Option<Spanned<u32>>,
    /// linux-gpio: main contactor coil output line.
    pub main_line: Option<Spanned<u32>>,
    /// linux-gpio: main contactor auxiliary feedback input line.
    pub main_feedback_line: Option<Spanned<u32>>,
    /// modbus: the I/O module's endpoint URL.
    pub endpoint: Option<Spanned<String>>,
    /// modbus: unit id (default 1).
    pub unit: Option<Spanned<u8>>,
    /// modbus: request timeout, ms (default 500).
    pub timeout_ms: Option<Spanned<u64>>,
    /// modbus: holding register (0-based) of the pre-charge relay coil.
    pub precharge_coil: Option<Spanned<u16>>,
    /// modbus: holding register (0-based) of the main contactor coil.
    pub main_coil: Option<Spanned<u16>>,
    /// modbus: the register (0-based) holding both feedback bits.
    pub feedback_register: Option<Spanned<u16>>,
    /// modbus: `input` (default, function code 4) or `holding` (3).
    pub feedback_table: Option<Spanned<String>>,
    /// modbus: bit (0–15) set while the pre-charge relay is closed.
    pub precharge_feedback_bit: Option<Spanned<u8>>,
    /// modbus: bit (0–15) set while the main contactor is closed.
    pub main_feedback_bit: Option<Spanned<u8>>,
}

/// The E-stop input: a Linux GPIO line or a bit of a Modbus I/O module's register.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EStopEntry {
    /// `linux-gpio` or `modbus`.
    pub kind: Spanned<String>,
    /// linux-gpio: GPIO chip.
    pub chip: Option<Spanned<String>>,
    /// linux-gpio: input line.
    pub line: Option<Spanned<u32>>,
    /// `low` (default: normally-closed loop pulled high / bit set while closed, pressed = low)
    /// or `high`.
    #[serde(default = "default_active")]
    pub active: Spanned<String>,
    /// modbus: the I/O module's endpoint URL.
    pub endpoint: Option<Spanned<String>>,
    /// modbus: unit id (default 1).
    pub unit: Option<Spanned<u8>>,
    /// modbus: request timeout, ms (default 500).
    pub timeout_ms: Option<Spanned<u64>>,
    /// modbus: the register (0-based) with the E-stop bit.
    pub register: Option<Spanned<u16>>,
    /// modbus: `input` (default) or `holding`.
    pub table: Option<Spanned<String>>,
    /// modbus: the bit (0–15).
    pub bit: Option<Spanned<u8>>,
    /// modbus: read the module at most this often, ms (default 20, 5..=200); the gateway watches
    /// the E-stop between cycles and would otherwise read it every millisecond.
    pub poll_ms: Option<Spanned<u64>>,
}

fn default_active() -> Spanned<String> {
    Spanned::new(0..0, "low".to_owned())
}

/// A Modbus I/O module connection, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoModule {
    /// Endpoint URL.
    pub endpoint: String,
    /// Unit id.
    pub unit: u8,
    /// Request timeout, ms.
    pub timeout_ms: u64,
}

/// How the contactor relays are wired, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContactorWiring {
    /// Linux GPIO lines.
    Gpio {
        /// Chip.
        chip: String,
        /// Pre-charge coil line.
        precharge_line: u32,
        /// Pre-charge feedback line.
        precharge_feedback_line: u32,
        /// Main coil line.
        main_line: u32,
        /// Main feedback line.
        main_feedback_line: u32,
    },
    /// A Modbus I/O module.
    Modbus {
        /// The module.
        module: IoModule,
        /// Pre-charge coil register.
        precharge_coil: u16,
        /// Main coil register.
        main_coil: u16,
        /// Pre-charge feedback bit.
        precharge_feedback: IoPoint,
        /// Main feedback bit.
        main_feedback: IoPoint,
    },
}

/// How the E-stop loop is wired, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EStopWiring {
    /// A Linux GPIO line.
    Gpio {
        /// Chip.
        chip: String,
        /// Line.
        line: u32,
        /// The level that means pressed.
        active: ActiveLevel,
    },
    /// A Modbus I/O module.
    Modbus {
        /// The module.
        module: IoModule,
        /// The E-stop bit.
        input: IoPoint,
        /// The bit level that means pressed.
        active: ActiveLevel,
        /// Minimum interval between reads, ms.
        poll_ms: u64,
    },
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
}

/// Default `[site] shutdown_timeout_s`.
pub const DEFAULT_SHUTDOWN_TIMEOUT: ems_core::Millis = ems_core::Millis::new(30_000);

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

    /// An error at `v`'s line, or without a line if the value is absent.
    fn err_opt<T>(&self, field: &str, v: Option<&Spanned<T>>, message: String) -> ConfigError {
        ConfigError {
            file: self.file.to_path_buf(),
            line: v.and_then(|v| self.line_of(&v.span())),
            field: field.to_owned(),
            message,
        }
    }

    /// An integer setting in `min..=max` (`unit` follows the value, e.g. `" s"`).
    fn int(&self, field: &str, v: &Spanned<i64>, min: u64, max: u64, unit: &str) -> Result<u64, ConfigError> {
        let x = *v.get_ref();
        match u64::try_from(x) {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(self.err(field, v, format!("{x}{unit} is outside {min}..={max}{unit}"))),
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
    let content: SiteFile = serde_path_to_error::deserialize(toml::Deserializer::new(text))
        .map_err(|e| decode_error(&ctx, &e))?;
    let controller = validate(&ctx, &content)?;
    let contactor = contactor_wiring(&ctx, &content.devices.contactor)?;
    let estop = estop_wiring(&ctx, &content.devices.estop)?;
    wiring_conflicts(&ctx, &content.devices, &contactor, &estop)?;
    let shutdown_timeout = match &content.site.shutdown_timeout_s {
        Some(v) => ems_core::Millis::from_secs(ctx.int("site.shutdown_timeout_s", v, 1, 3600, " s")?),
        None => DEFAULT_SHUTDOWN_TIMEOUT,
    };
    let time_zone = match &content.site.time_zone {
        Some(tz) => Some(jiff::tz::TimeZone::get(tz.get_ref()).map_err(|e| {
            ctx.err("site.time_zone", tz, format!("'{}' is not a known time zone: {e}", tz.get_ref()))
        })?),
        None => None,
    };
    let api = match &content.api {
        Some(a) => api_wiring(&ctx, path, a)?,
        None => None,
    };
    Ok(SiteConfig {
        file: path.to_path_buf(),
        content,
        controller,
        contactor,
        estop,
        time_zone,
        api,
        shutdown_timeout,
    })
}

/// A TOML or type error, with the full path of the field (`devices.battery.poll_ms`) and the
/// value in words an installer reads (`expected an integer, got "fast"`).
fn decode_error(ctx: &Ctx<'_>, e: &serde_path_to_error::Error<toml::de::Error>) -> ConfigError {
    use serde_path_to_error::Segment;
    let inner = e.inner();
    let mut field = String::new();
    for segment in e.path().iter() {
        match segment {
            // `Spanned` is a struct with private keys (`$__serde_spanned_private_value`) inside
            // the toml deserializer.
            Segment::Map { key } if key.starts_with("$__") => {}
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !field.is_empty() {
                    field.push('.');
                }
                field.push_str(key);
            }
            Segment::Seq { index } => field.push_str(&format!("[{index}]")),
            Segment::Unknown => {}
        }
    }
    let raw = inner.message().trim();
    let (field, message) = match raw.strip_prefix("missing field `").and_then(|r| r.strip_suffix('`')) {
        Some(key) => {
            let full = if field.is_empty() { key.to_owned() } else { format!("{field}.{key}") };
            if SECTIONS.contains(&full.as_str()) {
                (String::new(), format!("missing section [{full}]"))
            } else {
                (full, "missing (required)".to_owned())
            }
        }
        None => match raw.strip_prefix("unknown field `").and_then(|r| r.split_once('`')) {
            // The path ends with the unknown key itself; name the table it is in.
            Some((key, _)) => {
                let table = field.strip_suffix(key).unwrap_or(&field).trim_end_matches('.').to_owned();
                (table, raw.to_owned())
            }
            None => (field, friendly(raw)),
        },
    };
    ConfigError {
        file: ctx.file.to_path_buf(),
        line: inner.span().and_then(|s| ctx.line_of(&s)),
        field,
        message,
    }
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

/// serde's `invalid type: string "fast", expected u64` → `expected an integer, got "fast"`.
fn friendly(message: &str) -> String {
    let (rest, range) = if let Some(r) = message.strip_prefix("invalid type: ") {
        (r, false)
    } else if let Some(r) = message.strip_prefix("invalid value: ") {
        (r, true)
    } else {
        return message.to_owned();
    };
    let Some((got, expected)) = rest.rsplit_once(", expected ") else {
        return message.to_owned();
    };
    let expected = match (expected, range) {
        ("u8", true) => "an integer 0..=255",
        ("u16", true) => "an integer 0..=65535",
        ("u32", true) => "an integer 0..=4294967295",
        ("u64" | "usize", true) => "an integer >= 0",
        ("u8" | "u16" | "u32" | "u64" | "usize" | "i8" | "i16" | "i32" | "i64", _) => "an integer",
        ("f32" | "f64", _) => "a number",
        ("a boolean", _) => "true or false",
        ("a sequence", _) => "an array",
        (e, _) if e.starts_with("struct ") || e == "a map" => "a table",
        (e, _) => e,
    };
    let got = if let Some(s) = got.strip_prefix("string ") {
        s.to_owned()
    } else if let Some(v) = ["integer `", "floating point `", "boolean `"]
        .iter()
        .find_map(|p| got.strip_prefix(p).and_then(|v| v.strip_suffix('`')))
    {
        v.to_owned()
    } else {
        match got {
            "map" => "a table".to_owned(),
            "sequence" => "an array".to_owned(),
            other => other.to_owned(),
        }
    };
    format!("expected {expected}, got {got}")
}

fn validate(ctx: &Ctx<'_>, c: &SiteFile) -> Result<ems_control::ControllerConfig, ConfigError> {
    use ems_control::{
        CapSlot, CapSlots, ChargeOnlyConfig, ChargeSource, ControllerConfig, ModeSetting, PeakShavingConfig,
        RampRate, SelfConsumptionConfig, MAX_CAP_SLOTS,
    };
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
    let w = |x: f64| Watts::saturating(x as f32);
    #[allow(clippy::cast_possible_truncation)]
    let a = |x: f64| Amps::saturating(x as f32);
    #[allow(clippy::cast_possible_truncation)]
    let pct = |x: f64| Percent::saturating(x as f32);
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
            let soc_target = Percent::saturating(soc as f32);
            ModeSetting::ChargeOnly(ChargeOnlyConfig { source, soc_target, max_grid_import: w(max_import) })
        }
        "self-consumption" => {
            let d = SelfConsumptionConfig::default();
            let grid = opt("mode.grid_setpoint_w", &m.grid_setpoint_w, -1e7, 1e7, "W")?;
            let reserve = opt("mode.reserve_soc_pct", &m.reserve_soc_pct, 0.0, 100.0, "%")?;
            let max_c = opt("mode.max_charge_w", &m.max_charge_w, 0.0, 1e7, "W")?;
            let max_d = opt("mode.max_discharge_w", &m.max_discharge_w, 0.0, 1e7, "W")?;
            ModeSetting::SelfConsumption(SelfConsumptionConfig {
                grid_setpoint: grid.map_or(d.grid_setpoint, w),
                reserve_soc: reserve.map_or(d.reserve_soc, pct),
                max_charge: max_c.map(w),
                max_discharge: max_d.map(w),
            })
        }
        "peak-shaving" => {
            let d = PeakShavingConfig::default();
            let Some(import_cap) = &m.import_cap_w else {
                return Err(ctx.err(
                    "mode.import_cap_w",
                    &m.kind,
                    "is required with kind = \"peak-shaving\"".to_owned(),
                ));
            };
            let import_cap = ctx.number("mode.import_cap_w", import_cap, 0.0, 1e7, "W")?;
            let export_cap = opt("mode.export_cap_w", &m.export_cap_w, 0.0, 1e7, "W")?;
            let recharge = opt("mode.recharge_below_w", &m.recharge_below_w, -1e7, 1e7, "W")?;
            let max_recharge = opt("mode.max_recharge_w", &m.max_recharge_w, 0.0, 1e7, "W")?;
            let reserve = opt("mode.reserve_soc_pct", &m.reserve_soc_pct, 0.0, 100.0, "%")?;
            let target = opt("mode.target_soc_pct", &m.target_soc_pct, 0.0, 100.0, "%")?;
            let mut slots = CapSlots::new();
            for (i, e) in m.slots.iter().enumerate() {
                let field = |f: &str| format!("mode.slots[{i}].{f}");
                let start_minute = parse_hhmm(e.start.get_ref()).ok_or_else(|| {
                    ctx.err(&field("start"), &e.start, format!("'{}' is not a time HH:MM", e.start.get_ref()))
                })?;
                let slot = CapSlot {
                    start_minute,
                    import_cap: w(ctx.number(&field("import_cap_w"), &e.import_cap_w, 0.0, 1e7, "W")?),
                    export_cap: w(ctx.number(&field("export_cap_w"), &e.export_cap_w, 0.0, 1e7, "W")?),
                };
                slots.try_push(slot).map_err(|_| {
                    ctx.err(&field("start"), &e.start, format!("more than {MAX_CAP_SLOTS} slots"))
                })?;
            }
            ModeSetting::PeakShaving(PeakShavingConfig {
                import_cap: w(import_cap),
                export_cap: export_cap.map_or(d.export_cap, w),
                recharge_below: recharge.map_or(d.recharge_below, w),
                max_recharge: max_recharge.map(w),
                reserve_soc: reserve.map_or(d.reserve_soc, pct),
                target_soc: target.map_or(d.target_soc, pct),
                slots,
            })
        }
        other => {
            return Err(ctx.err(
                "mode.kind",
                &m.kind,
                format!(
                    "'{other}' is not one of passive, charge-only, manual, self-consumption, peak-shaving"
                ),
            ));
        }
    };
    // Cross-field rules of the mode (reserve above target, slots out of order, ...).
    mode.validate().map_err(|e| ctx.err("mode", &m.kind, e.to_string()))?;

    let d = &c.devices;
    let mut entries =
        vec![("devices.inverter", &d.inverter), ("devices.battery", &d.battery), ("devices.meter", &d.meter)];
    if let Some(pv) = &d.pv {
        entries.push(("devices.pv", pv));
    }
    for (name, e) in entries {
        validate_device(ctx, name, e)?;
    }

    let mut controller = ControllerConfig { safety, mode, cycle: Millis::new(cycle), ..defaults };
    if let Some(r) = ramp {
        controller.ramp = RampRate::per_second(w(r));
    }
    Ok(controller)
}

fn validate_device(ctx: &Ctx<'_>, name: &str, e: &DeviceEntry) -> Result<(), ConfigError> {
    endpoint(ctx, &format!("{name}.endpoint"), &e.endpoint)?;
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

fn hex64(ctx: &Ctx<'_>, field: &str, v: &Spanned<String>) -> Result<String, ConfigError> {
    let h = v.get_ref().trim();
    if h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(h.to_ascii_lowercase())
    } else {
        Err(ctx.err(field, v, format!("'{h}' is not 64 hex digits")))
    }
}

fn api_wiring(ctx: &Ctx<'_>, path: &Path, a: &ApiSection) -> Result<Option<ApiWiring>, ConfigError> {
    use ems_api::auth::{Role, TokenConfig};
    let listen = a.listen.get_ref();
    if listen == "off" {
        return Ok(None);
    }
    let listen = listen_addr(ctx, &a.listen)?;
    let int = |field: &str, v: &Option<Spanned<i64>>, min: u64, max: u64, default: u64, unit: &str| {
        v.as_ref().map_or(Ok(default), |v| ctx.int(&format!("api.{field}"), v, min, max, unit))
    };
    let days = |d: Duration| d.as_secs() / DAY_S;
    let max_connections =
        int("max_connections", &a.max_connections, 1, 65_535, ApiWiring::DEFAULT_MAX_CONNECTIONS as u64, "")?;
    let header_read_timeout = int(
        "header_read_timeout_s",
        &a.header_read_timeout_s,
        1,
        300,
        ApiWiring::DEFAULT_HEADER_READ_TIMEOUT.as_secs(),
        " s",
    )?;
    let idle_timeout =
        int("idle_timeout_s", &a.idle_timeout_s, 1, 3600, ApiWiring::DEFAULT_IDLE_TIMEOUT.as_secs(), " s")?;
    let audit_max_age_days = int(
        "audit_max_age_days",
        &a.audit_max_age_days,
        1,
        36_500,
        days(ApiWiring::DEFAULT_AUDIT_MAX_AGE),
        " days",
    )?;
    let audit_max_rows =
        int("audit_max_rows", &a.audit_max_rows, 1000, 1_000_000_000, ApiWiring::DEFAULT_AUDIT_MAX_ROWS, "")?;
    let history_max_age_days = int(
        "history_max_age_days",
        &a.history_max_age_days,
        1,
        36_500,
        days(ApiWiring::DEFAULT_HISTORY_MAX_AGE),
        " days",
    )?;
    let per_token = int(
        "rate_limit_per_minute",
        &a.rate_limit_per_minute,
        1,
        60_000,
        ApiWiring::DEFAULT_RATE_LIMIT_PER_MINUTE.into(),
        "",
    )?;
    let per_ip = int(
        "ip_rate_limit_per_minute",
        &a.ip_rate_limit_per_minute,
        1,
        600_000,
        ApiWiring::DEFAULT_IP_RATE_LIMIT_PER_MINUTE.into(),
        "",
    )?;
    let mut tokens = Vec::with_capacity(a.tokens.len());
    for (i, t) in a.tokens.iter().enumerate() {
        let role = match t.role.get_ref().as_str() {
            "viewer" => Role::Viewer,
            "operator" => Role::Operator,
            "provider" => Role::Provider,
            "admin" => Role::Admin,
            other => {
                return Err(ctx.err(
                    &format!("api.tokens[{i}].role"),
                    &t.role,
                    format!("'{other}' is not one of viewer, operator, provider, admin"),
                ))
            }
        };
        let sha256_hex = hex64(ctx, &format!("api.tokens[{i}].sha256"), &t.sha256)?;
        tokens.push(TokenConfig { name: t.name.get_ref().clone(), role, sha256_hex });
    }
    if tokens.is_empty() {
        return Err(ctx.err(
            "api.tokens",
            &a.listen,
            "no [[api.tokens]]: the API would refuse every call; add one (ems-gateway new-token) or set listen = \"off\""
                .to_owned(),
        ));
    }
    ems_api::auth::TokenRegistry::new(&tokens, rate_limit(u32::try_from(per_token).unwrap_or(u32::MAX)))
        .map_err(|e| ctx.err("api.tokens", &a.listen, e.to_string()))?;
    let mut providers = Vec::with_capacity(a.providers.len());
    for (i, p) in a.providers.iter().enumerate() {
        let public_key_hex = hex64(ctx, &format!("api.providers[{i}].public_key_hex"), &p.public_key_hex)?;
        providers.push(ems_api::schedules::ProviderKey { name: p.name.get_ref().clone(), public_key_hex });
    }
    let power = match &a.schedule_max_power_w {
        Some(v) => ctx.number("api.schedule_max_power_w", v, 0.0, 1e7, "W")?,
        None => 0.0,
    };
    // Validated to 0..=1e7 just above.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let schedule_max_power_w = power as u64;
    Ok(Some(ApiWiring {
        listen,
        database: a.database.as_ref().map(|d| resolve(path, d.get_ref())),
        serials: a.battery_serials.iter().map(|s| s.get_ref().clone()).collect(),
        schedule_max_power_w,
        tokens,
        providers,
        // The ranges above keep every value far inside usize and u32.
        max_connections: usize::try_from(max_connections).unwrap_or(ApiWiring::DEFAULT_MAX_CONNECTIONS),
        header_read_timeout: Duration::from_secs(header_read_timeout),
        idle_timeout: Duration::from_secs(idle_timeout),
        metrics_public: a.metrics_public.as_ref().is_some_and(|m| *m.get_ref()),
        audit_max_age: Duration::from_secs(audit_max_age_days * DAY_S),
        audit_max_rows,
        history_max_age: Duration::from_secs(history_max_age_days * DAY_S),
        rate_limit_per_minute: u32::try_from(per_token).unwrap_or(u32::MAX),
        ip_rate_limit_per_minute: u32::try_from(per_ip).unwrap_or(u32::MAX),
    }))
}

/// `HH:MM` (00:00..=23:59) → minute of day.
fn parse_hhmm(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

/// A required field of one `kind`: missing → an error at the `kind` line.
fn required<'a, T>(
    ctx: &Ctx<'_>,
    section: &str,
    kind: &Spanned<String>,
    name: &str,
    v: &'a Option<Spanned<T>>,
) -> Result<&'a T, ConfigError> {
    v.as_ref().map(Spanned::get_ref).ok_or_else(|| {
        ctx.err(&format!("{section}.{name}"), kind, format!("is required with kind = \"{}\"", kind.get_ref()))
    })
}

/// A field that belongs to the other `kind`: present → an error naming it.
fn refused<T>(
    ctx: &Ctx<'_>,
    section: &str,
    kind: &Spanned<String>,
    name: &str,
    v: &Option<Spanned<T>>,
) -> Result<(), ConfigError> {
    match v {
        Some(v) => Err(ctx.err(
            &format!("{section}.{name}"),
            v,
            format!("is not used with kind = \"{}\"", kind.get_ref()),
        )),
        None => Ok(()),
    }
}

/// A Modbus endpoint URL; a TCP port outside 1..=65535 is named with its value.
fn endpoint(ctx: &Ctx<'_>, field: &str, v: &Spanned<String>) -> Result<ModbusEndpoint, ConfigError> {
    let url = v.get_ref();
    url.parse::<ModbusEndpoint>().map_err(|e| {
        let message = match tcp_port(url) {
            Some(port) if e.part == "port" => format!("port {port} is outside 1..=65535 ('{url}')"),
            _ if e.part == "scheme" => {
                format!("'{url}' is not a modbus-tcp://HOST:PORT or modbus-rtu:///dev/ttyX?baud=N URL")
            }
            _ => format!("'{url}': {}: {}", e.part, e.reason),
        };
        ctx.err(field, v, message)
    })
}

/// The port text of a `modbus-tcp://HOST:PORT` URL, if it has one.
fn tcp_port(url: &str) -> Option<&str> {
    let authority = url.strip_prefix("modbus-tcp://")?.split(['/', '?']).next()?;
    match authority.strip_prefix('[') {
        Some(v6) => v6.split_once(']')?.1.strip_prefix(':'),
        None => authority.rsplit_once(':').map(|(_, p)| p),
    }
}

/// `HOST:PORT` of `[api] listen`: a port outside 1..=65535 is named with its value.
fn listen_addr(ctx: &Ctx<'_>, v: &Spanned<String>) -> Result<std::net::SocketAddr, ConfigError> {
    let listen = v.get_ref();
    if let Some((_, port)) = listen.rsplit_once(':') {
        if let Ok(p) = port.parse::<u64>() {
            if !(1..=65_535).contains(&p) {
                return Err(ctx.err("api.listen", v, format!("port {p} is outside 1..=65535 ('{listen}')")));
            }
        }
    }
    listen.parse().map_err(|_| {
        ctx.err("api.listen", v, format!("'{listen}' is not HOST:PORT (e.g. 127.0.0.1:8080) or off"))
    })
}

fn io_module(
    ctx: &Ctx<'_>,
    section: &str,
    endpoint: &Spanned<String>,
    unit: Option<&Spanned<u8>>,
    timeout: Option<&Spanned<u64>>,
) -> Result<IoModule, ConfigError> {
    let ep = endpoint.get_ref();
    self::endpoint(ctx, &format!("{section}.endpoint"), endpoint)?;
    let unit_id = unit.map_or(1, |u| *u.get_ref());
    if let Some(u) = unit.filter(|_| unit_id > 247) {
        return Err(ctx.err(&format!("{section}.unit"), u, format!("{unit_id} is outside 0..=247")));
    }
    let timeout_ms = timeout.map_or(500, |t| *t.get_ref());
    if let Some(t) = timeout.filter(|_| !(10..=60_000).contains(&timeout_ms)) {
        return Err(ctx.err(
            &format!("{section}.timeout_ms"),
            t,
            format!("{timeout_ms} ms is outside 10..=60000 ms"),
        ));
    }
    Ok(IoModule { endpoint: ep.clone(), unit: unit_id, timeout_ms })
}

fn io_point(
    ctx: &Ctx<'_>,
    section: &str,
    table: Option<&Spanned<String>>,
    table_field: &str,
    register: u16,
    bit: &Spanned<u8>,
    bit_field: &str,
) -> Result<IoPoint, ConfigError> {
    let kind = match table.map(|t| (t, t.get_ref().as_str())) {
        None | Some((_, "input")) => RegisterKind::Input,
        Some((_, "holding")) => RegisterKind::Holding,
        Some((t, other)) => {
            return Err(ctx.err(
                &format!("{section}.{table_field}"),
                t,
                format!("'{other}' is not one of input, holding"),
            ))
        }
    };
    IoPoint::new(kind, RegisterAddress(register), *bit.get_ref()).map_err(|_| {
        ctx.err(&format!("{section}.{bit_field}"), bit, format!("{} is outside 0..=15", bit.get_ref()))
    })
}

fn contactor_wiring(ctx: &Ctx<'_>, c: &ContactorEntry) -> Result<ContactorWiring, ConfigError> {
    const S: &str = "devices.contactor";
    let k = &c.kind;
    match k.get_ref().as_str() {
        "linux-gpio" => {
            for (name, v) in [("endpoint", &c.endpoint), ("feedback_table", &c.feedback_table)] {
                refused(ctx, S, k, name, v)?;
            }
            refused(ctx, S, k, "unit", &c.unit)?;
            refused(ctx, S, k, "timeout_ms", &c.timeout_ms)?;
            for (name, v) in [
                ("precharge_coil", &c.precharge_coil),
                ("main_coil", &c.main_coil),
                ("feedback_register", &c.feedback_register),
            ] {
                refused(ctx, S, k, name, v)?;
            }
            refused(ctx, S, k, "precharge_feedback_bit", &c.precharge_feedback_bit)?;
            refused(ctx, S, k, "main_feedback_bit", &c.main_feedback_bit)?;
            Ok(ContactorWiring::Gpio {
                chip: required(ctx, S, k, "chip", &c.chip)?.clone(),
                precharge_line: *required(ctx, S, k, "precharge_line", &c.precharge_line)?,
                precharge_feedback_line: *required(
                    ctx,
                    S,
                    k,
                    "precharge_feedback_line",
                    &c.precharge_feedback_line,
                )?,
                main_line: *required(ctx, S, k, "main_line", &c.main_line)?,
                main_feedback_line: *required(ctx, S, k, "main_feedback_line", &c.main_feedback_line)?,
            })
        }
        "modbus" => {
            refused(ctx, S, k, "chip", &c.chip)?;
            for (name, v) in [
                ("precharge_line", &c.precharge_line),
                ("precharge_feedback_line", &c.precharge_feedback_line),
                ("main_line", &c.main_line),
                ("main_feedback_line", &c.main_feedback_line),
            ] {
                refused(ctx, S, k, name, v)?;
            }
            let Some(endpoint) = &c.endpoint else {
                return Err(ctx.err(
                    &format!("{S}.endpoint"),
                    k,
                    "is required with kind = \"modbus\"".to_owned(),
                ));
            };
            let module = io_module(ctx, S, endpoint, c.unit.as_ref(), c.timeout_ms.as_ref())?;
            let precharge_coil = *required(ctx, S, k, "precharge_coil", &c.precharge_coil)?;
            let main_coil = *required(ctx, S, k, "main_coil", &c.main_coil)?;
            if precharge_coil == main_coil {
                if let Some(m) = &c.main_coil {
                    return Err(ctx.err(
                        &format!("{S}.main_coil"),
                        m,
                        format!("{main_coil} is the pre-charge coil's register too"),
                    ));
                }
            }
            let register = *required(ctx, S, k, "feedback_register", &c.feedback_register)?;
            let point = |bit: &Option<Spanned<u8>>, name: &str| -> Result<IoPoint, ConfigError> {
                let Some(b) = bit else {
                    return Err(ctx.err(
                        &format!("{S}.{name}"),
                        k,
                        "is required with kind = \"modbus\"".to_owned(),
                    ));
                };
                io_point(ctx, S, c.feedback_table.as_ref(), "feedback_table", register, b, name)
            };
            let precharge_feedback = point(&c.precharge_feedback_bit, "precharge_feedback_bit")?;
            let main_feedback = point(&c.main_feedback_bit, "main_feedback_bit")?;
            if precharge_feedback == main_feedback {
                if let Some(b) = &c.main_feedback_bit {
                    return Err(ctx.err(
                        &format!("{S}.main_feedback_bit"),
                        b,
                        format!("{} is the pre-charge feedback bit too", b.get_ref()),
                    ));
                }
            }
            Ok(ContactorWiring::Modbus {
                module,
                precharge_coil,
                main_coil,
                precharge_feedback,
                main_feedback,
            })
        }
        other => Err(ctx.err(&format!("{S}.kind"), k, format!("'{other}' is not one of linux-gpio, modbus"))),
    }
}

/// One input or output with two roles: the relay coils, their feedback contacts and the E-stop
/// each need their own GPIO line (on the same chip) or register bit (on the same Modbus module).
/// A shared one would read a relay's own command back as its feedback, or an open relay as a
/// pressed (or never pressed) E-stop.
fn wiring_conflicts(
    ctx: &Ctx<'_>,
    d: &DevicesSection,
    contactor: &ContactorWiring,
    estop: &EStopWiring,
) -> Result<(), ConfigError> {
    const S: &str = "devices.contactor";
    let c = &d.contactor;
    match contactor {
        ContactorWiring::Gpio {
            chip,
            precharge_line,
            precharge_feedback_line,
            main_line,
            main_feedback_line,
        } => {
            // In the order of a wiring diagram: outputs, then inputs; each line is checked
            // against the ones before it, so the error names the later field.
            let roles = [
                (
                    "precharge_line",
                    "the pre-charge relay's coil line",
                    *precharge_line,
                    c.precharge_line.as_ref(),
                ),
                ("main_line", "the main contactor's coil line", *main_line, c.main_line.as_ref()),
                (
                    "precharge_feedback_line",
                    "the pre-charge relay's feedback line",
                    *precharge_feedback_line,
                    c.precharge_feedback_line.as_ref(),
                ),
                (
                    "main_feedback_line",
                    "the main contactor's feedback line",
                    *main_feedback_line,
                    c.main_feedback_line.as_ref(),
                ),
            ];
            for (i, (name, _, line, v)) in roles.iter().enumerate() {
                if let Some((_, what, _, _)) = roles.iter().take(i).find(|r| r.2 == *line) {
                    return Err(ctx.err_opt(&format!("{S}.{name}"), *v, format!("{line} is {what} too")));
                }
            }
            if let EStopWiring::Gpio { chip: estop_chip, line, .. } = estop {
                if same_chip(chip, estop_chip) {
                    if let Some((_, what, _, _)) = roles.iter().find(|r| r.2 == *line) {
                        return Err(ctx.err_opt(
                            "devices.estop.line",
                            d.estop.line.as_ref(),
                            format!("{line} on {estop_chip} is {what} too"),
                        ));
                    }
                }
            }
        }
        ContactorWiring::Modbus { module, precharge_coil, main_coil, precharge_feedback, main_feedback } => {
            let coil = |p: &IoPoint| match p.kind {
                RegisterKind::Holding if p.address.0 == *precharge_coil => {
                    Some("the pre-charge relay's coil register")
                }
                RegisterKind::Holding if p.address.0 == *main_coil => {
                    Some("the main contactor's coil register")
                }
                RegisterKind::Holding | RegisterKind::Input => None,
            };
            for p in [precharge_feedback, main_feedback] {
                if let Some(what) = coil(p) {
                    return Err(ctx.err_opt(
                        &format!("{S}.feedback_register"),
                        c.feedback_register.as_ref(),
                        format!("holding register {} is {what} too", p.address.0),
                    ));
                }
            }
            if let EStopWiring::Modbus { module: estop_module, input, .. } = estop {
                if same_module(module, estop_module) {
                    let feedback = if input == precharge_feedback {
                        Some("the pre-charge relay's feedback bit")
                    } else if input == main_feedback {
                        Some("the main contactor's feedback bit")
                    } else {
                        None
                    };
                    if let Some(what) = feedback {
                        return Err(ctx.err_opt(
                            "devices.estop.bit",
                            d.estop.bit.as_ref(),
                            format!("bit {} of register {} is {what} too", input.bit, input.address.0),
                        ));
                    }
                    if let Some(what) = coil(input) {
                        return Err(ctx.err_opt(
                            "devices.estop.register",
                            d.estop.register.as_ref(),
                            format!("holding register {} is {what} too", input.address.0),
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// `/dev/gpiochip0` and `gpiochip0` are the same chip.
fn same_chip(a: &str, b: &str) -> bool {
    let name = |c: &str| c.trim().trim_start_matches("/dev/").to_owned();
    name(a) == name(b)
}

/// The same I/O module: the same endpoint (however written) and unit id.
fn same_module(a: &IoModule, b: &IoModule) -> bool {
    a.unit == b.unit
        && match (a.endpoint.parse::<ModbusEndpoint>(), b.endpoint.parse::<ModbusEndpoint>()) {
            (Ok(x), Ok(y)) => x == y,
            _ => a.endpoint == b.endpoint,
        }
}

fn estop_wiring(ctx: &Ctx<'_>, e: &EStopEntry) -> Result<EStopWiring, ConfigError> {
    const S: &str = "devices.estop";
    let k = &e.kind;
    let active = match e.active.get_ref().as_str() {
        "low" => ActiveLevel::Low,
        "high" => ActiveLevel::High,
        other => {
            return Err(ctx.err(
                &format!("{S}.active"),
                &e.active,
                format!("'{other}' is not one of low, high"),
            ))
        }
    };
    match k.get_ref().as_str() {
        "linux-gpio" => {
            refused(ctx, S, k, "endpoint", &e.endpoint)?;
            refused(ctx, S, k, "table", &e.table)?;
            refused(ctx, S, k, "unit", &e.unit)?;
            refused(ctx, S, k, "timeout_ms", &e.timeout_ms)?;
            refused(ctx, S, k, "poll_ms", &e.poll_ms)?;
            refused(ctx, S, k, "register", &e.register)?;
            refused(ctx, S, k, "bit", &e.bit)?;
            Ok(EStopWiring::Gpio {
                chip: required(ctx, S, k, "chip", &e.chip)?.clone(),
                line: *required(ctx, S, k, "line", &e.line)?,
                active,
            })
        }
        "modbus" => {
            refused(ctx, S, k, "chip", &e.chip)?;
            refused(ctx, S, k, "line", &e.line)?;
            let Some(endpoint) = &e.endpoint else {
                return Err(ctx.err(
                    &format!("{S}.endpoint"),
                    k,
                    "is required with kind = \"modbus\"".to_owned(),
                ));
            };
            let module = io_module(ctx, S, endpoint, e.unit.as_ref(), e.timeout_ms.as_ref())?;
            let register = *required(ctx, S, k, "register", &e.register)?;
            let Some(bit) = &e.bit else {
                return Err(ctx.err(&format!("{S}.bit"), k, "is required with kind = \"modbus\"".to_owned()));
            };
            let input = io_point(ctx, S, e.table.as_ref(), "table", register, bit, "bit")?;
            let poll_ms = e.poll_ms.as_ref().map_or(20, |p| *p.get_ref());
            if let Some(p) = e.poll_ms.as_ref().filter(|_| !(5..=200).contains(&poll_ms)) {
                return Err(ctx.err(
                    &format!("{S}.poll_ms"),
                    p,
                    format!("{poll_ms} ms is outside 5..=200 ms"),
                ));
            }
            Ok(EStopWiring::Modbus { module, input, active, poll_ms })
        }
        other => Err(ctx.err(&format!("{S}.kind"), k, format!("'{other}' is not one of linux-gpio, modbus"))),
    }
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

#[cfg(test)]
mod wiring_tests {
    use super::*;

    fn base() -> String {
        let profile = concat!(env!("CARGO_MANIFEST_DIR"), "/../../devices/profiles/eastron-sdm630.toml");
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/site.toml"))
            .unwrap()
            .replace("../devices/profiles/eastron-sdm630.toml", profile);
        let at = text.find("[devices.contactor]").unwrap();
        format!(
            "{}{}",
            &text[..at],
            r#"[devices.contactor]
kind = "modbus"
endpoint = "modbus-tcp://192.168.1.60:502"
unit = 4
precharge_coil = 0
main_coil = 1
feedback_register = 0
precharge_feedback_bit = 0
main_feedback_bit = 1

[devices.estop]
kind = "modbus"
endpoint = "modbus-tcp://192.168.1.60:502"
unit = 4
register = 0
bit = 2
"#
        )
    }

    #[test]
    fn modbus_io_wiring_parses() {
        let c = parse(Path::new("site.toml"), &base()).unwrap();
        let ContactorWiring::Modbus { module, main_coil, main_feedback, .. } = c.contactor else {
            panic!("{:?}", c.contactor)
        };
        assert_eq!((module.unit, module.timeout_ms, main_coil), (4, 500, 1));
        assert_eq!((main_feedback.kind, main_feedback.bit), (RegisterKind::Input, 1));
        let EStopWiring::Modbus { input, active, poll_ms, .. } = c.estop else { panic!("{:?}", c.estop) };
        assert_eq!((input.bit, active, poll_ms), (2, ActiveLevel::Low, 20));
    }

    #[test]
    fn modbus_io_errors_name_field_and_value() {
        let check = |from: &str, to: &str, want: &[&str]| {
            let text = base().replacen(from, to, 1);
            let e = parse(Path::new("site.toml"), &text).unwrap_err().to_string();
            for w in want {
                assert!(e.contains(w), "{from} -> {to}: {e}");
            }
        };
        check("bit = 2", "bit = 16", &["devices.estop.bit", "16 is outside 0..=15", "line"]);
        check(
            "main_feedback_bit = 1",
            "main_feedback_bit = 0",
            &["devices.contactor.main_feedback_bit", "0"],
        );
        check("main_coil = 1", "main_coil = 0", &["devices.contactor.main_coil", "pre-charge"]);
        check(
            "precharge_coil = 0\n",
            "",
            &["devices.contactor.precharge_coil", "is required with kind = \"modbus\""],
        );
        check(
            "kind = \"modbus\"",
            "kind = \"can\"",
            &["devices.contactor.kind", "'can' is not one of linux-gpio, modbus"],
        );
        check(
            "unit = 4\nregister",
            "unit = 4\nchip = \"/dev/gpiochip0\"\nregister",
            &["devices.estop.chip", "is not used with kind = \"modbus\""],
        );
        check(
            "register = 0\nbit = 2",
            "register = 0\nbit = 2\npoll_ms = 1",
            &["devices.estop.poll_ms", "1 ms is outside 5..=200 ms"],
        );
        check(
            "endpoint = \"modbus-tcp://192.168.1.60:502\"\nunit = 4\nregister",
            "endpoint = \"tcp://x\"\nunit = 4\nregister",
            &["devices.estop.endpoint", "tcp://x"],
        );
    }
}

#[cfg(test)]
mod mode_tests {
    use super::*;
    use ems_control::ModeSetting;

    fn example() -> String {
        let profile = concat!(env!("CARGO_MANIFEST_DIR"), "/../../devices/profiles/eastron-sdm630.toml");
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/site.toml"))
            .unwrap()
            .replace("../devices/profiles/eastron-sdm630.toml", profile)
    }

    /// The example site with its `[mode]` section replaced.
    fn with_mode(mode: &str) -> Result<SiteConfig, ConfigError> {
        let text = example();
        let start = text.find("[mode]").unwrap();
        let end = text.find("[devices.inverter]").unwrap();
        parse(Path::new("site.toml"), &format!("{}{mode}\n{}", &text[..start], &text[end..]))
    }

    #[test]
    fn self_consumption_and_peak_shaving_are_configurable() {
        let c =
            with_mode("[mode]\nkind = \"self-consumption\"\nreserve_soc_pct = 20\ngrid_setpoint_w = 50\n")
                .unwrap();
        let ModeSetting::SelfConsumption(sc) = c.controller.mode else { panic!("{:?}", c.controller.mode) };
        assert_eq!((sc.reserve_soc.get(), sc.grid_setpoint.get()), (20.0, 50.0));
        assert_eq!(with_mode("").unwrap().controller.mode, ModeSetting::Passive);
        let c = with_mode(
            r#"[mode]
kind = "peak-shaving"
import_cap_w = 8000
reserve_soc_pct = 30
target_soc_pct = 90

[[mode.slots]]
start = "00:00"
import_cap_w = 11000
export_cap_w = 10000

[[mode.slots]]
start = "17:00"
import_cap_w = 6000
export_cap_w = 10000
"#,
        )
        .unwrap();
        let ModeSetting::PeakShaving(ps) = c.controller.mode else { panic!("{:?}", c.controller.mode) };
        assert_eq!(ps.import_cap.get(), 8000.0);
        assert_eq!(ps.slots.as_slice().len(), 2);
        assert_eq!(ps.slots.as_slice()[1].start_minute, 17 * 60);
        let text = example().replace("[site]\n", "[site]\ntime_zone = \"Europe/Berlin\"\n");
        assert!(parse(Path::new("site.toml"), &text).unwrap().time_zone.is_some());
    }

    #[test]
    fn mode_and_time_zone_errors_name_the_field_and_value() {
        let err = |mode: &str| with_mode(mode).unwrap_err().to_string();
        let e = err("[mode]\nkind = \"peak-shaving\"\n");
        assert!(e.contains("mode.import_cap_w") && e.contains("required"), "{e}");
        let e = err("[mode]\nkind = \"peak-shaving\"\nimport_cap_w = 5000\n[[mode.slots]]\nstart = \"25:00\"\nimport_cap_w = 1\nexport_cap_w = 1\n");
        assert!(e.contains("mode.slots[0].start") && e.contains("25:00"), "{e}");
        let e = err("[mode]\nkind = \"peak-shaving\"\nimport_cap_w = 5000\nreserve_soc_pct = 95\ntarget_soc_pct = 90\n");
        assert!(e.contains("mode") && e.contains("95"), "{e}");
        let e = err("[mode]\nkind = \"self-consumption\"\nreserve_soc_pct = 120\n");
        assert!(e.contains("mode.reserve_soc_pct") && e.contains("120"), "{e}");
        let text = example().replace("[site]\n", "[site]\ntime_zone = \"Mars/Olympus\"\n");
        let e = parse(Path::new("site.toml"), &text).unwrap_err().to_string();
        assert!(e.contains("site.time_zone") && e.contains("Mars/Olympus"), "{e}");
    }
}

#[cfg(test)]
mod api_tests {
    use super::*;

    fn with_api(api: &str) -> Result<SiteConfig, ConfigError> {
        let profile = concat!(env!("CARGO_MANIFEST_DIR"), "/../../devices/profiles/eastron-sdm630.toml");
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/site.toml"))
            .unwrap()
            .replace("../devices/profiles/eastron-sdm630.toml", profile);
        parse(Path::new("/site/site.toml"), &format!("{text}\n{api}"))
    }

    const HASH: &str = "1d1e0f590d004fb7e08f456946aeac2f8035a23649d852a319291c45aa4a7410";

    #[test]
    fn api_section_parses_tokens_providers_and_database() {
        let c = with_api(&format!(
            "[api]\nlisten = \"0.0.0.0:8443\"\ndatabase = \"ems.db\"\nbattery_serials = [\"BAT-1\"]\nschedule_max_power_w = 5000\n\
             [[api.tokens]]\nname = \"ops\"\nrole = \"operator\"\nsha256 = \"{HASH}\"\n\
             [[api.providers]]\nname = \"acme\"\npublic_key_hex = \"{HASH}\"\n"
        ))
        .unwrap();
        let a = c.api.unwrap();
        assert_eq!(a.listen.port(), 8443);
        assert_eq!(a.database.unwrap(), Path::new("/site/ems.db"));
        assert_eq!((a.tokens.len(), a.providers.len(), a.schedule_max_power_w), (1, 1, 5000));
        assert!(with_api("[api]\nlisten = \"off\"\n").unwrap().api.is_none());
        assert!(with_api("").unwrap().api.is_none());
    }

    #[test]
    fn api_errors_name_the_field_and_value() {
        let err = |api: &str| with_api(api).unwrap_err().to_string();
        let e = err("[api]\n");
        assert!(e.contains("api.tokens") && e.contains("new-token"), "{e}");
        let e = err(&format!("[api]\n[[api.tokens]]\nname = \"x\"\nrole = \"god\"\nsha256 = \"{HASH}\"\n"));
        assert!(e.contains("api.tokens[0].role") && e.contains("god"), "{e}");
        let e = err("[api]\n[[api.tokens]]\nname = \"x\"\nrole = \"admin\"\nsha256 = \"abc\"\n");
        assert!(e.contains("api.tokens[0].sha256") && e.contains("abc"), "{e}");
        let e = err(&format!("[api]\nlisten = \"everywhere\"\n[[api.tokens]]\nname = \"x\"\nrole = \"admin\"\nsha256 = \"{HASH}\"\n"));
        assert!(e.contains("api.listen") && e.contains("everywhere"), "{e}");
        let e = err(&format!(
            "[api]\n[[api.tokens]]\nname = \"x\"\nrole = \"admin\"\nsha256 = \"{HASH}\"\n[[api.tokens]]\nname = \"y\"\nrole = \"admin\"\nsha256 = \"{HASH}\"\n"
        ));
        assert!(e.contains("api.tokens") && e.contains("duplicate"), "{e}");
    }
}
