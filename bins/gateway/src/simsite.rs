//! The default command: the built-in simulated site in real time, driven exactly like
//! hardware — through the device safety wrappers and the embedded-hal E-stop adapter — by the
//! same loop (`ems-runtime`) as a real site. Its physics advance in control time, one cycle per
//! cycle, paced at `--speed`.

use crate::live::{load_controller, run_gateway, Connecting, Launch, LiveArgs, LiveError, Physics};
use crate::store::FileStore;
use ems_control::ControllerConfig;
use ems_core::Millis;
use ems_devices::estop::{ActiveLevel, HalEStop};
use ems_devices::io::{DeviceSet, DeviceSetConfig};
use ems_devices::sim::{SharedSite, SimSiteConfig, SimulatedSite};
use ems_runtime::{Clock, RealtimeOptions};
use std::time::Duration;

/// How long a graceful shutdown of the simulated site may take (simulated time).
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(60);

/// The simulated site's physics for the loop.
struct SimPhysics(SharedSite);

impl Physics for SimPhysics {
    fn advance(&mut self, step: Millis) {
        self.0.borrow_mut().advance(step);
    }
    fn local_minute(&self) -> Option<u16> {
        let ms = self.0.borrow().calendar().time_of_day.get();
        u16::try_from(ms / 60_000).ok()
    }
}

/// Run until Ctrl-C/SIGTERM or `--duration`, then shut down gracefully and persist.
pub(crate) fn run(args: &LiveArgs) -> Result<(), LiveError> {
    let listen = check_args(args)?;
    let modbus = sim_modbus(args.modbus_server.as_deref(), listen.is_some())?;
    let mqtt = mqtt_config(args.mqtt.as_deref(), listen.is_some())?;
    let mut store = FileStore::new(&args.state_file);
    let defaults = SimSiteConfig::default();
    let config = controller_config(args.cycle_ms, &defaults);
    let controller = load_controller(&mut store, config.clone(), args.reset_reason.is_some())?;
    let economics = match &args.economics {
        Some(path) => Some(crate::config::load_economics_file(path, None, &sim_battery(&defaults, &config))?),
        None => None,
    };
    let grid =
        crate::grid_services::sim_start(args.grid_services.as_deref(), &config, defaults.battery_capacity)?;
    let island = crate::island::sim::start(args.island.as_deref(), &defaults)?;
    let calendar = match &economics {
        Some(e) => SimCalendar::today(&e.time_zone, args.start_day, args.start_hour)?,
        None => SimCalendar::fixed(args.start_day.unwrap_or(152), args.start_hour.unwrap_or(10)),
    };
    let site_config = SimSiteConfig {
        seed: args.seed,
        start_day_of_year: calendar.day_of_year,
        start_time_of_day: calendar.time_of_day,
        ..defaults
    };
    // Validated here, built again on the control thread (the simulated devices are not Send).
    let rating_w = {
        let site = SimulatedSite::new(site_config).map_err(|e| LiveError::Site(e.to_string()))?;
        // A rating of a few kW; the conversion saturates for anything absurd.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let w = site.config().inverter_rating.get().max(0.0) as u64;
        w
    };
    banner(args);
    let cloud = sim_cloud(args, listen.is_some())?;
    let api = listen.map(|listen| crate::api::ApiStart {
        listen,
        serials: vec!["sim-bms-1".to_owned()],
        rating_w,
        providers: Vec::new(),
        database: args.api_db.clone(),
        tokens: None,
        limits: crate::api::ApiLimits::default(),
        economics: None,
        grid_services: None,
        cloud: cloud.clone(),
        island: island.as_ref().map(|_| ems_api::island::IslandBoard::new()),
        capacity_wh: Some(f64::from(defaults.battery_capacity.get())),
        modbus,
        mqtt,
    });
    let launch = Launch {
        controller,
        store,
        realtime: RealtimeOptions {
            cycle: Millis::new(args.cycle_ms),
            clock: Clock::Simulated { speed: args.speed },
            duration: args.duration.map(|s| Millis::new(secs_to_ms(s))),
            shutdown_timeout: SHUTDOWN_TIMEOUT,
            ..RealtimeOptions::default()
        },
        reset_reason: args.reset_reason.clone(),
        time_zone: economics.as_ref().map(|e| e.time_zone.clone()),
        grid,
        island,
        site_island: None,
        api,
        economics: economics.map(|wiring| crate::economics::EconomicsStart {
            wiring,
            clock: crate::economics::SiteClock::Simulated { start: calendar.start },
            state_file: args.state_file.clone(),
        }),
    };
    run_gateway(launch, move |c: Connecting| async move {
        let connected = (|| {
            let site = SimulatedSite::new(site_config).map_err(|e| LiveError::Site(e.to_string()))?;
            let shared = SharedSite::new(site);
            let d = shared.devices();
            let devices = DeviceSet::new(
                d.bms,
                d.inverter,
                d.meter,
                d.pv,
                d.precharge_relay,
                d.main_relay,
                HalEStop::new(d.estop, ActiveLevel::Low),
                DeviceSetConfig::default(),
            )
            .map_err(|e| LiveError::Devices(e.to_string()))?;
            let physics: Box<dyn Physics> = Box::new(SimPhysics(shared));
            Ok((devices, Some(physics)))
        })();
        (connected, c)
    })
}

fn banner(args: &LiveArgs) {
    println!(
        "ems-gateway: simulated site (10 kWh LFP battery, 5 kW inverter, 6 kWp PV, household load), cycle {} ms, speed {}x; Ctrl-C (or SIGTERM) stops gracefully",
        args.cycle_ms, args.speed
    );
    if let Some(path) = &args.island {
        println!("island operation from {}: GET /api/v1/island", path.display());
    }
}

/// Where the simulated calendar starts.
struct SimCalendar {
    day_of_year: u16,
    time_of_day: Millis,
    /// The same moment as a UTC instant (for live economics).
    start: jiff::Timestamp,
}

impl SimCalendar {
    /// A fixed day of the year and hour (no live economics: the instant is only nominal, in
    /// the current year, UTC).
    fn fixed(day_of_year: u16, hour: u8) -> Self {
        let time_of_day = Millis::new(u64::from(hour) * 3_600_000);
        let start = jiff::Timestamp::now()
            .to_zoned(jiff::tz::TimeZone::UTC)
            .date()
            .first_of_year()
            .checked_add(jiff::Span::new().days(i64::from(day_of_year).saturating_sub(1)))
            .and_then(|d| d.at(i8::try_from(hour).unwrap_or(0), 0, 0, 0).to_zoned(jiff::tz::TimeZone::UTC))
            .map_or(jiff::Timestamp::UNIX_EPOCH, |z| z.timestamp());
        Self { day_of_year, time_of_day, start }
    }

    /// Today (or `day` of this year) at the current time (or `hour`) in the site's zone, so that
    /// live prices line up with the simulated sun and load.
    fn today(tz: &jiff::tz::TimeZone, day: Option<u16>, hour: Option<u8>) -> Result<Self, LiveError> {
        let now = jiff::Timestamp::now().to_zoned(tz.clone());
        let date = match day {
            Some(d) => now
                .date()
                .first_of_year()
                .checked_add(jiff::Span::new().days(i64::from(d).saturating_sub(1)))
                .map_err(|e| LiveError::Arg {
                    flag: "--start-day",
                    value: format!("{d}: {e}"),
                    why: "must be a day of this year",
                })?,
            None => now.date(),
        };
        let time = match hour {
            Some(h) => jiff::civil::Time::new(i8::try_from(h).unwrap_or(0), 0, 0, 0).map_err(|e| {
                LiveError::Arg { flag: "--start-hour", value: format!("{h}: {e}"), why: "must be 0-23" }
            })?,
            None => now.time(),
        };
        let zoned = date.to_datetime(time).to_zoned(tz.clone()).map_err(|e| LiveError::Arg {
            flag: "--start-hour",
            value: format!("{date} {time}: {e}"),
            why: "must be a valid local time in the site's zone",
        })?;
        let seconds =
            i64::from(time.hour()) * 3600 + i64::from(time.minute()) * 60 + i64::from(time.second());
        Ok(Self {
            day_of_year: u16::try_from(date.day_of_year()).unwrap_or(1).min(365),
            time_of_day: Millis::from_secs(u64::try_from(seconds).unwrap_or(0)),
            start: zoned.timestamp(),
        })
    }
}

/// The controller of the simulated site: the cycle, and the battery's capacity (a grid
/// service's energy reserve becomes an SOC bound through it; without it the controller keeps
/// the whole direction for the service).
/// `--mqtt URL`: the broker of `[mqtt]` with prefix `ems` and site id `sim`.
fn mqtt_config(url: Option<&str>, have_api: bool) -> Result<Option<ems_api::mqtt::MqttConfig>, LiveError> {
    let Some(url) = url else { return Ok(None) };
    if !have_api {
        return Err(LiveError::Arg {
            flag: "--mqtt",
            value: url.to_owned(),
            why: "needs the API (its commands go through it): drop --api-listen off",
        });
    }
    let config = ems_api::mqtt::MqttConfig::new(url, "ems", "sim").and_then(|c| c.validate().map(|()| c));
    config.map(Some).map_err(|_| LiveError::Arg {
        flag: "--mqtt",
        value: url.to_owned(),
        why: "must be mqtt://HOST:PORT",
    })
}

/// The flags' values checked; where the API listens (`None`: off).
fn check_args(args: &LiveArgs) -> Result<Option<std::net::SocketAddr>, LiveError> {
    if !(args.speed.is_finite() && args.speed > 0.0) {
        return Err(LiveError::Arg {
            flag: "--speed",
            value: args.speed.to_string(),
            why: "must be a number > 0",
        });
    }
    if let Some(d) = args.duration {
        if !(d.is_finite() && d >= 0.0) {
            return Err(LiveError::Arg {
                flag: "--duration",
                value: d.to_string(),
                why: "must be seconds >= 0",
            });
        }
    }
    if args.cycle_ms == 0 || args.cycle_ms > 10_000 {
        return Err(LiveError::Arg {
            flag: "--cycle-ms",
            value: args.cycle_ms.to_string(),
            why: "must be between 1 and 10000",
        });
    }
    if let Some(h) = args.start_hour.filter(|h| *h > 23) {
        return Err(LiveError::Arg { flag: "--start-hour", value: h.to_string(), why: "must be 0-23" });
    }
    if let Some(d) = args.start_day.filter(|d| !(1..=365).contains(d)) {
        return Err(LiveError::Arg { flag: "--start-day", value: d.to_string(), why: "must be 1-365" });
    }
    let listen = match args.api_listen.as_deref() {
        None | Some("off") => None,
        Some(listen) => Some(listen.parse().map_err(|_| LiveError::Arg {
            flag: "--api-listen",
            value: listen.to_owned(),
            why: "must be HOST:PORT (e.g. 127.0.0.1:8080) or off",
        })?),
    };
    Ok(listen)
}

/// `--cloud-url`: the cloud link with its defaults, in simulated time.
fn sim_cloud(args: &LiveArgs, api: bool) -> Result<Option<ems_api::cloud::CloudConfig>, LiveError> {
    let Some(url) = &args.cloud_url else { return Ok(None) };
    let mut c = ems_api::cloud::CloudConfig::new(url.as_str());
    c.speed = args.speed;
    c.validate().map_err(|why| LiveError::Devices(format!("--cloud-url: {why}")))?;
    if !api {
        return Err(LiveError::Devices(
            "--cloud-url needs the API (--api-listen): what the cloud asks for goes through its rules".into(),
        ));
    }
    Ok(Some(c))
}

fn controller_config(cycle_ms: u64, site: &SimSiteConfig) -> ControllerConfig {
    ControllerConfig {
        cycle: Millis::new(cycle_ms),
        capacity: Some(site.battery_capacity),
        ..ControllerConfig::default()
    }
}

/// The simulated battery as the planner's model sees it: its capacity, a little under the
/// inverter's rating (the envelope derates near full and empty), the safety monitor's SOC
/// warning levels.
fn sim_battery(site: &SimSiteConfig, config: &ControllerConfig) -> crate::config::BatteryLimits {
    let rating = site.inverter_rating.scale(0.9);
    crate::config::BatteryLimits {
        capacity: Some(site.battery_capacity),
        max_charge: rating,
        max_discharge: rating,
        soc_low_warn: f64::from(config.safety.limits.soc_low.warn.get()),
        soc_high_warn: f64::from(config.safety.limits.soc_high.warn.get()),
        grid_import: config.safety.grid_import_limit,
        grid_export: config.safety.grid_export_limit,
    }
}

/// `--modbus-server HOST:PORT`: the listener of `[modbus_server]` with its defaults (unit id 1,
/// loopback-only allow-list unless the host is not loopback: then any address, as the flag is
/// for trying the server on a LAN; revert timer 60 s; every control writable; operator role;
/// serial `sim`).
fn sim_modbus(flag: Option<&str>, api: bool) -> Result<Option<crate::config::ModbusServerWiring>, LiveError> {
    let text = match flag {
        None | Some("off") => return Ok(None),
        Some(t) => t,
    };
    if !api {
        return Err(LiveError::Arg {
            flag: "--modbus-server",
            value: text.to_owned(),
            why: "needs the API (its control writes go through it): drop --api-listen off",
        });
    }
    let listen: std::net::SocketAddr = text.parse().map_err(|_| LiveError::Arg {
        flag: "--modbus-server",
        value: text.to_owned(),
        why: "must be HOST:PORT (e.g. 127.0.0.1:5020) or off",
    })?;
    let mut config =
        ems_api::modbus_server::ModbusServerConfig { listen: Some(listen), ..Default::default() };
    if !listen.ip().is_loopback() {
        config.allow = vec![
            ems_api::modbus_server::AllowedNet { addr: std::net::IpAddr::from([0, 0, 0, 0]), prefix: 0 },
            ems_api::modbus_server::AllowedNet { addr: std::net::IpAddr::from([0u16; 8]), prefix: 0 },
        ];
    }
    config.identity.serial = "sim".to_owned();
    Ok(Some(crate::config::ModbusServerWiring { config, role: ems_api::auth::Role::Operator }))
}

fn secs_to_ms(s: f64) -> u64 {
    // Validated finite and >= 0 by the caller; `as` saturates for huge values.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let ms = (s * 1000.0).round() as u64;
    ms
}
