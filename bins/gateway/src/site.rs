//! `ems-gateway run --config site.toml`: a real site — Modbus devices through the SunSpec or
//! register-map profile drivers, contactor relays and the E-stop on Linux GPIO — behind the same
//! device safety layer and control loop as the simulated site.

use crate::config::{self, ContactorWiring, DeviceEntry, EStopWiring, IoModule, SiteConfig};
use crate::live::{load_controller, run_gateway, Connected, Connecting, Launch, LiveError};
use crate::store::FileStore;
use ems_core::{Millis, Watts};
use ems_devices::estop::{open_linux_estop, LinuxEStop};
use ems_devices::gpio::{open_linux_relay, LinuxRelay};
use ems_devices::io::{DeviceSet, DeviceSetConfig};
use ems_devices::modbus::io::{ModbusEStop, ModbusRelay};
use ems_devices::modbus::profile::{Profile, ProfileDevice, ProfileDeviceError};
use ems_devices::modbus::sunspec::{SunSpecBattery, SunSpecError, SunSpecInverter};
use ems_devices::modbus::transport::{AnyClient, ClientOptions, ModbusEndpoint};
use ems_devices::modbus::RegisterAddress;
use ems_devices::p1::{P1Endpoint, P1Meter, P1MeterError, P1MeterOptions};
use ems_devices::traits::{
    Bms, BmsReading, DeviceError, EStopInput, ErrorKind, Inverter, InverterCapabilities, InverterReading,
    InverterSettings, Meter, MeterReading, PvInverter, PvReading, Relay,
};
use ems_devices::Polled;
use ems_runtime::{Clock, RealtimeOptions};
use std::time::Duration;

/// A driver error of either kind of driver.
#[derive(Debug)]
pub(crate) enum AnyDriverError {
    /// From a SunSpec driver.
    SunSpec(SunSpecError),
    /// From a register-map profile driver.
    Profile(ProfileDeviceError),
}

impl DeviceError for AnyDriverError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::SunSpec(e) => e.kind(),
            Self::Profile(e) => e.kind(),
        }
    }
}

/// The battery inverter: SunSpec or a profile.
#[derive(Debug)]
pub(crate) enum AnyInverter {
    /// SunSpec models 701–704 / 10x, 120–124.
    SunSpec(Box<SunSpecInverter<AnyClient>>),
    /// A register-map profile.
    Profile(Box<ProfileDevice<AnyClient>>),
}

impl Inverter for AnyInverter {
    type Error = AnyDriverError;
    fn capabilities(&self) -> InverterCapabilities {
        match self {
            Self::SunSpec(d) => d.capabilities(),
            Self::Profile(d) => Inverter::capabilities(d.as_ref()),
        }
    }
    async fn read(&mut self) -> Result<InverterReading, AnyDriverError> {
        match self {
            Self::SunSpec(d) => d.read().await.map_err(AnyDriverError::SunSpec),
            Self::Profile(d) => Inverter::read(d.as_mut()).await.map_err(AnyDriverError::Profile),
        }
    }
    async fn write_setpoint(&mut self, power: Watts) -> Result<(), AnyDriverError> {
        match self {
            Self::SunSpec(d) => d.write_setpoint(power).await.map_err(AnyDriverError::SunSpec),
            Self::Profile(d) => d.write_setpoint(power).await.map_err(AnyDriverError::Profile),
        }
    }
    async fn read_settings(&mut self) -> Result<InverterSettings, AnyDriverError> {
        match self {
            Self::SunSpec(d) => d.read_settings().await.map_err(AnyDriverError::SunSpec),
            Self::Profile(d) => d.read_settings().await.map_err(AnyDriverError::Profile),
        }
    }
    async fn write_settings(&mut self, settings: &InverterSettings) -> Result<(), AnyDriverError> {
        match self {
            Self::SunSpec(d) => d.write_settings(settings).await.map_err(AnyDriverError::SunSpec),
            Self::Profile(d) => d.write_settings(settings).await.map_err(AnyDriverError::Profile),
        }
    }
}

/// The BMS: SunSpec 802 or a profile.
#[derive(Debug)]
pub(crate) enum AnyBms {
    /// SunSpec model 802 (+ 713).
    SunSpec(Box<SunSpecBattery<AnyClient>>),
    /// A register-map profile.
    Profile(Box<ProfileDevice<AnyClient>>),
}

impl Bms for AnyBms {
    type Error = AnyDriverError;
    async fn read(&mut self) -> Result<BmsReading, AnyDriverError> {
        match self {
            Self::SunSpec(d) => d.read().await.map_err(AnyDriverError::SunSpec),
            Self::Profile(d) => Bms::read(d.as_mut()).await.map_err(AnyDriverError::Profile),
        }
    }
    async fn reset_alarms(&mut self) -> Result<(), AnyDriverError> {
        match self {
            Self::SunSpec(d) => d.reset_alarms().await.map_err(AnyDriverError::SunSpec),
            Self::Profile(d) => d.reset_alarms().await.map_err(AnyDriverError::Profile),
        }
    }
}

/// The grid meter: a register-map profile (the shipped SunSpec models contain no meter model)
/// or a DSMR smart meter's P1 port.
#[derive(Debug)]
pub(crate) enum AnyMeter {
    /// A register-map profile.
    Profile(Box<ProfileDevice<AnyClient>>),
    /// A P1 port (TCP dongle or serial).
    P1(Box<P1Meter>),
}

/// An error of either meter driver.
#[derive(Debug)]
pub(crate) enum AnyMeterError {
    /// From the profile driver.
    Profile(ProfileDeviceError),
    /// From the P1 meter.
    P1(P1MeterError),
}

impl DeviceError for AnyMeterError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Profile(e) => e.kind(),
            Self::P1(e) => e.kind(),
        }
    }
}

impl Meter for AnyMeter {
    type Error = AnyMeterError;
    async fn read(&mut self) -> Result<MeterReading, AnyMeterError> {
        match self {
            Self::Profile(d) => Meter::read(d.as_mut()).await.map_err(AnyMeterError::Profile),
            Self::P1(m) => m.read().await.map_err(AnyMeterError::P1),
        }
    }
    fn reading_age(&self) -> Millis {
        match self {
            Self::Profile(d) => Meter::reading_age(d.as_ref()),
            // The telegram's own age: the snapshot stamps it when it arrived, not now.
            Self::P1(m) => m.reading_age(),
        }
    }
}

/// The meter of `[devices.meter]`.
fn meter(cfg: &SiteConfig, e: &DeviceEntry) -> Result<AnyMeter, LiveError> {
    if e.driver.get_ref() == "p1" {
        let endpoint: P1Endpoint =
            e.endpoint.get_ref().parse().map_err(|err| site_err("devices.meter", err))?;
        let mut options = P1MeterOptions {
            connect_timeout: Duration::from_millis(*e.timeout_ms.get_ref()),
            ..P1MeterOptions::default()
        };
        if let Some(m) = &e.max_age_ms {
            options.max_age = Millis::new(*m.get_ref());
        }
        return Ok(AnyMeter::P1(Box::new(P1Meter::new(endpoint, options))));
    }
    Ok(AnyMeter::Profile(Box::new(ProfileDevice::new(
        client("devices.meter", e)?,
        profile(cfg, "devices.meter", e)?,
    ))))
}

/// PV: a profile, or none on the site (production then reads 0 W).
#[derive(Debug)]
pub(crate) enum AnyPv {
    /// A register-map profile.
    Profile(Box<ProfileDevice<AnyClient>>),
    /// No PV inverter is configured.
    None,
}

impl PvInverter for AnyPv {
    type Error = ProfileDeviceError;
    async fn read(&mut self) -> Result<PvReading, ProfileDeviceError> {
        match self {
            Self::Profile(d) => PvInverter::read(d.as_mut()).await,
            Self::None => Ok(PvReading { active_power: Watts::ZERO }),
        }
    }
}

fn poll_ms(e: &DeviceEntry) -> Option<u64> {
    e.poll_ms.as_ref().map(|p| *p.get_ref())
}

fn site_err(what: &str, e: impl std::fmt::Display) -> LiveError {
    LiveError::Devices(format!("{what}: {e}"))
}

fn client(name: &str, e: &DeviceEntry) -> Result<AnyClient, LiveError> {
    let ep: ModbusEndpoint = e.endpoint.get_ref().parse().map_err(|err| site_err(name, err))?;
    let timeout = Duration::from_millis(*e.timeout_ms.get_ref());
    let options = ClientOptions { timeout, ..ClientOptions::default() };
    Ok(AnyClient::new(&ep, *e.unit.get_ref(), options))
}

fn profile(cfg: &SiteConfig, name: &str, e: &DeviceEntry) -> Result<Profile, LiveError> {
    let Some(p) = &e.profile else {
        return Err(site_err(name, "driver = \"profile\" needs a profile"));
    };
    Profile::load(&config::resolve(&cfg.file, p.get_ref())).map_err(|err| site_err(name, err))
}

/// The Modbus side of a site: drivers connected and SunSpec models discovered.
struct ModbusDevices {
    inverter: AnyInverter,
    bms: AnyBms,
    meter: AnyMeter,
    pv: AnyPv,
    config: DeviceSetConfig,
}

/// Connect the Modbus devices (SunSpec discovery happens here, so an unreachable device fails
/// this step; the caller retries).
async fn connect_modbus(cfg: &SiteConfig) -> Result<ModbusDevices, LiveError> {
    let d = &cfg.content.devices;
    let inverter = match d.inverter.driver.get_ref().as_str() {
        "sunspec" => AnyInverter::SunSpec(Box::new(
            SunSpecInverter::new(client("devices.inverter", &d.inverter)?).await.map_err(|e| {
                site_err(&format!("devices.inverter at {}", d.inverter.endpoint.get_ref()), e)
            })?,
        )),
        _ => AnyInverter::Profile(Box::new(ProfileDevice::new(
            client("devices.inverter", &d.inverter)?,
            profile(cfg, "devices.inverter", &d.inverter)?,
        ))),
    };
    let mut config = DeviceSetConfig::default();
    // The BMS wrapper checks the pack voltage against the sum of the cells: it must know how
    // many there are (`[battery] cells_in_series`).
    config.bms.cells_in_series = cfg.pack.cells_in_series;
    let bms = match d.battery.driver.get_ref().as_str() {
        "sunspec" => {
            let mut b = SunSpecBattery::new(client("devices.battery", &d.battery)?)
                .await
                .map_err(|e| site_err(&format!("devices.battery at {}", d.battery.endpoint.get_ref()), e))?;
            if let Some(t) = &d.battery.assumed_cell_temp_c {
                // Validated to -20..=45 °C by the config.
                #[allow(clippy::cast_possible_truncation)]
                let celsius = ems_core::Celsius::saturating(*t.get_ref() as f32);
                b = b.with_assumed_cell_temperature(celsius);
                config.bms.stuck_check_temperatures = false;
            }
            AnyBms::SunSpec(Box::new(b))
        }
        _ => AnyBms::Profile(Box::new(ProfileDevice::new(
            client("devices.battery", &d.battery)?,
            profile(cfg, "devices.battery", &d.battery)?,
        ))),
    };
    let meter = meter(cfg, &d.meter)?;
    let pv = match &d.pv {
        Some(e) => AnyPv::Profile(Box::new(ProfileDevice::new(
            client("devices.pv", e)?,
            profile(cfg, "devices.pv", e)?,
        ))),
        None => AnyPv::None,
    };
    Ok(ModbusDevices { inverter, bms, meter, pv, config })
}

/// A relay on a GPIO line or on a Modbus I/O module.
pub(crate) enum AnyRelay {
    /// Linux GPIO.
    Gpio(LinuxRelay),
    /// Modbus I/O module.
    Modbus(ModbusRelay<AnyClient>),
}

/// An E-stop loop on a GPIO line or on a Modbus I/O module.
pub(crate) enum AnyEStop {
    /// Linux GPIO.
    Gpio(LinuxEStop),
    /// Modbus I/O module.
    Modbus(ModbusEStop<AnyClient>),
}

impl std::fmt::Debug for AnyRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Gpio(_) => f.write_str("AnyRelay::Gpio"),
            Self::Modbus(r) => f.debug_tuple("AnyRelay::Modbus").field(r).finish(),
        }
    }
}

impl std::fmt::Debug for AnyEStop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Gpio(_) => f.write_str("AnyEStop::Gpio"),
            Self::Modbus(e) => f.debug_tuple("AnyEStop::Modbus").field(e).finish(),
        }
    }
}

/// An I/O error of either wiring, with its kind kept.
#[derive(Debug)]
pub(crate) struct WiringError {
    kind: ErrorKind,
    message: String,
}

impl DeviceError for WiringError {
    fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl std::fmt::Display for WiringError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

fn wiring<E: DeviceError>(e: E) -> WiringError {
    WiringError { kind: e.kind(), message: format!("{e:?}") }
}

impl Relay for AnyRelay {
    type Error = WiringError;

    async fn set(&mut self, closed: bool) -> Result<(), WiringError> {
        match self {
            Self::Gpio(r) => r.set(closed).await.map_err(wiring),
            Self::Modbus(r) => r.set(closed).await.map_err(wiring),
        }
    }

    async fn feedback(&mut self) -> Result<bool, WiringError> {
        match self {
            Self::Gpio(r) => r.feedback().await.map_err(wiring),
            Self::Modbus(r) => r.feedback().await.map_err(wiring),
        }
    }
}

impl EStopInput for AnyEStop {
    type Error = WiringError;

    async fn read(&mut self) -> Result<ems_core::snapshot::EStopInput, WiringError> {
        match self {
            Self::Gpio(e) => e.read().await.map_err(wiring),
            Self::Modbus(e) => e.read().await.map_err(wiring),
        }
    }
}

fn io_client(module: &IoModule) -> Result<AnyClient, LiveError> {
    module.client().map_err(|err| site_err("I/O module", err))
}

/// The pre-charge relay and the main contactor. A GPIO line that cannot be opened is an error;
/// a Modbus I/O module is connected lazily (its reads fail until it answers, which the device
/// layer reports and the safety layer treats as open contactors and a pressed E-stop).
fn open_relays(wiring: &ContactorWiring) -> Result<(AnyRelay, AnyRelay), LiveError> {
    match wiring {
        ContactorWiring::Gpio {
            chip,
            precharge_line,
            precharge_feedback_line,
            main_line,
            main_feedback_line,
        } => {
            let precharge = open_linux_relay(chip, *precharge_line, *precharge_feedback_line)
                .map_err(|e| site_err("devices.contactor (pre-charge relay)", e))?;
            let main = open_linux_relay(chip, *main_line, *main_feedback_line)
                .map_err(|e| site_err("devices.contactor (main contactor)", e))?;
            Ok((AnyRelay::Gpio(precharge), AnyRelay::Gpio(main)))
        }
        ContactorWiring::Modbus { module, precharge_coil, main_coil, precharge_feedback, main_feedback } => {
            Ok((
                AnyRelay::Modbus(ModbusRelay::new(
                    io_client(module)?,
                    RegisterAddress(*precharge_coil),
                    *precharge_feedback,
                )),
                AnyRelay::Modbus(ModbusRelay::new(
                    io_client(module)?,
                    RegisterAddress(*main_coil),
                    *main_feedback,
                )),
            ))
        }
    }
}

fn open_estop(wiring: &EStopWiring) -> Result<AnyEStop, LiveError> {
    match wiring {
        EStopWiring::Gpio { chip, line, active } => Ok(AnyEStop::Gpio(
            open_linux_estop(chip, *line, *active).map_err(|e| site_err("devices.estop", e))?,
        )),
        EStopWiring::Modbus { module, input, active, poll_ms } => Ok(AnyEStop::Modbus(ModbusEStop::new(
            io_client(module)?,
            *input,
            *active,
            Duration::from_millis(*poll_ms),
        ))),
    }
}

/// The reservoir the grid services share: the pack's capacity (`[battery] capacity_wh`) and
/// the SOC window of the safety limits' warning levels; `None` without a capacity (no energy
/// management, no endurance).
fn site_ler(cfg: &SiteConfig) -> Option<ems_grid::LerConfig> {
    let limits = &cfg.controller.safety.limits;
    let ler = ems_grid::LerConfig::try_new(cfg.pack.capacity?, limits.soc_low.warn, limits.soc_high.warn);
    ler.map_err(|e| tracing::warn!("grid services: no energy management: {e}")).ok()
}

/// How long to wait between attempts to reach the Modbus devices at start-up.
const CONNECT_RETRY: Duration = Duration::from_secs(5);

/// Run a configured site until a signal (or `duration`), then shut down gracefully. The API
/// starts first; unreachable Modbus devices at start-up are retried every 5 s while the API
/// and the page show "waiting for devices" with the cause (the site stays without power
/// meanwhile); a GPIO line that cannot be opened is a configuration error and ends the run.
pub(crate) fn run(
    cfg: &SiteConfig,
    duration: Option<Millis>,
    reset_reason: Option<String>,
) -> Result<(), LiveError> {
    let mut store =
        FileStore::new(config::resolve(&cfg.file, &cfg.content.site.state_file.to_string_lossy()));
    let state_file = store.path().to_path_buf();
    let controller = load_controller(&mut store, cfg.controller.clone(), reset_reason.is_some())?;
    println!(
        "ems-gateway: site '{}' from {}, cycle {} ms, mode {}; Ctrl-C (or SIGTERM) stops gracefully",
        cfg.content.site.name,
        cfg.file.display(),
        cfg.controller.cycle.get(),
        cfg.controller.mode
    );
    let api = cfg.api.as_ref().map(|a| crate::api::ApiStart {
        listen: a.listen,
        serials: a.serials.clone(),
        rating_w: a.schedule_max_power_w,
        providers: a.providers.clone(),
        database: a.database.clone(),
        tokens: Some(a.tokens.clone()),
        limits: crate::api::ApiLimits::from_wiring(a),
        economics: None,
        grid_services: None,
        cloud: cfg.cloud.clone(),
        island: cfg.island.as_ref().map(|_| ems_api::island::IslandBoard::new()),
        capacity_wh: cfg.pack.capacity.map(|c| f64::from(c.get())),
        modbus: cfg.modbus_server.clone(),
        mqtt: cfg.mqtt.clone(),
    });
    let launch = Launch {
        controller,
        store,
        realtime: RealtimeOptions {
            cycle: cfg.controller.cycle,
            clock: Clock::Wall,
            duration,
            shutdown_timeout: Duration::from_millis(cfg.shutdown_timeout.get()),
            ..RealtimeOptions::default()
        },
        reset_reason,
        time_zone: cfg.time_zone.clone(),
        grid: cfg.grid_services.clone().map(|w| {
            let ler = site_ler(cfg);
            crate::grid_services::GridStart::new(w, crate::economics::SiteClock::Wall, ler)
        }),
        economics: cfg.economics.clone().map(|wiring| crate::economics::EconomicsStart {
            wiring,
            clock: crate::economics::SiteClock::Wall,
            state_file: state_file.clone(),
        }),
        api,
        #[cfg(feature = "sim")]
        island: None,
        site_island: cfg.island.clone(),
    };
    let cfg = cfg.clone();
    run_gateway(launch, move |mut c: Connecting| async move {
        let connected = connect(&cfg, duration, &mut c).await;
        (connected, c)
    })
}

/// Reach the devices (retrying Modbus every 5 s until a shutdown request or the duration) and
/// build the device layer.
async fn connect(
    cfg: &SiteConfig,
    duration: Option<Millis>,
    c: &mut Connecting,
) -> Result<Connected<SiteDeviceSet>, LiveError> {
    let started = tokio::time::Instant::now();
    let give_up = duration.map(|d| started + Duration::from_millis(d.get()));
    let m = loop {
        match connect_modbus(cfg).await {
            Ok(m) => break m,
            Err(e) => {
                c.waiting(&format!("{e}; retrying in {} s", CONNECT_RETRY.as_secs()));
                let wake = tokio::time::Instant::now() + CONNECT_RETRY;
                if give_up.is_some_and(|g| g <= wake) {
                    return Err(e);
                }
                let seen = c.shutdown.count();
                tokio::select! {
                    () = tokio::time::sleep_until(wake) => {}
                    () = c.shutdown.beyond(seen) => return Err(LiveError::NeverConnected(e.to_string())),
                }
            }
        }
    };
    let d = &cfg.content.devices;
    let (precharge, main) = open_relays(&cfg.contactor)?;
    let estop = open_estop(&cfg.estop)?;
    let devices = DeviceSet::new(
        Polled::new(m.bms, poll_ms(&d.battery)),
        m.inverter,
        Polled::new(m.meter, poll_ms(&d.meter)),
        Polled::new(m.pv, d.pv.as_ref().and_then(poll_ms)),
        precharge,
        main,
        estop,
        m.config,
    )
    .map_err(|e| site_err("device layer", e))?;
    Ok((devices, None))
}

/// The device layer of a configured site.
type SiteDeviceSet = DeviceSet<
    Polled<AnyBms, BmsReading>,
    AnyInverter,
    Polled<AnyMeter, MeterReading>,
    Polled<AnyPv, PvReading>,
    AnyRelay,
    AnyRelay,
    AnyEStop,
>;
