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
    if args.start_hour > 23 {
        return Err(LiveError::Arg {
            flag: "--start-hour",
            value: args.start_hour.to_string(),
            why: "must be 0-23",
        });
    }
    let listen = match args.api_listen.as_deref() {
        None | Some("off") => None,
        Some(listen) => Some(listen.parse().map_err(|_| LiveError::Arg {
            flag: "--api-listen",
            value: listen.to_owned(),
            why: "must be HOST:PORT (e.g. 127.0.0.1:8080) or off",
        })?),
    };
    let mut store = FileStore::new(&args.state_file);
    let config = ControllerConfig { cycle: Millis::new(args.cycle_ms), ..ControllerConfig::default() };
    let controller = load_controller(&mut store, config, args.reset_reason.is_some())?;
    let site_config = SimSiteConfig {
        seed: args.seed,
        start_day_of_year: args.start_day,
        start_time_of_day: Millis::new(u64::from(args.start_hour) * 3_600_000),
        ..SimSiteConfig::default()
    };
    // Validated here, built again on the control thread (the simulated devices are not Send).
    let rating_w = {
        let site = SimulatedSite::new(site_config).map_err(|e| LiveError::Site(e.to_string()))?;
        // A rating of a few kW; the conversion saturates for anything absurd.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let w = site.config().inverter_rating.get().max(0.0) as u64;
        w
    };
    println!(
        "ems-gateway: simulated site (10 kWh LFP battery, 5 kW inverter, 6 kWp PV, household load), cycle {} ms, speed {}x; Ctrl-C (or SIGTERM) stops gracefully",
        args.cycle_ms, args.speed
    );
    let api = listen.map(|listen| crate::api::ApiStart {
        listen,
        serials: vec!["sim-bms-1".to_owned()],
        rating_w,
        providers: Vec::new(),
        database: args.api_db.clone(),
        tokens: None,
        limits: crate::api::ApiLimits::default(),
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
        time_zone: None,
        api,
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

fn secs_to_ms(s: f64) -> u64 {
    // Validated finite and >= 0 by the caller; `as` saturates for huge values.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let ms = (s * 1000.0).round() as u64;
    ms
}
