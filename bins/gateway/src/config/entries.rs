//! The serde shapes of `[devices]`: the Modbus devices, the contactor relays and the E-stop, as
//! written in the file (validated by `devices` and `wiring`, which both read them).

use serde::Deserialize;
use toml::Spanned;

/// `[devices]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DevicesSection {
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

/// One Modbus device (or, for the meter, a P1 port with `driver = "p1"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeviceEntry {
    /// `modbus-tcp://HOST:PORT` or `modbus-rtu:///dev/ttyX?baud=9600`; with `driver = "p1"`:
    /// `p1-tcp://HOST:PORT` (or `HOST:PORT`) or `p1-serial:///dev/ttyX[?baud=115200]`.
    pub endpoint: Spanned<String>,
    /// Modbus unit id (default 1).
    #[serde(default = "default_unit")]
    pub unit: Spanned<u8>,
    /// `sunspec`, `profile`, or `p1` (meter only: a DSMR 4/5 smart meter's P1 port).
    pub driver: Spanned<String>,
    /// With `driver = "profile"`: the profile file (relative to the config file).
    pub profile: Option<Spanned<String>>,
    /// Poll interval, ms (default: every control cycle). Meter, battery and PV only, at most
    /// 2000 ms (the maximum age of their fast signals); between polls the last reading is reused.
    /// The inverter is read every cycle: its read-back verifies every set-point write.
    pub poll_ms: Option<Spanned<u64>>,
    /// Request timeout, ms (default 500); with `driver = "p1"`: the connect timeout.
    #[serde(default = "default_timeout")]
    pub timeout_ms: Spanned<u64>,
    /// `driver = "p1"` only: the oldest telegram still taken as a reading, ms (default 5000,
    /// 1000..=30000). Older, the grid power is stale (never 0 W).
    pub max_age_ms: Option<Spanned<u64>>,
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
pub(crate) struct ContactorEntry {
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
pub(crate) struct EStopEntry {
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
