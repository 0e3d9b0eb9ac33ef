//! The real-time run against the built-in simulated site.

#[cfg(not(feature = "sim"))]
use crate::no_sim::SharedSite;
use crate::store::{FileStore, StoreError};
#[cfg(feature = "sim")]
use crate::LiveArgs;
use ems_control::{Controller, ControllerConfig, Inputs, Output};
use ems_core::emergency::ShutdownPhase;
use ems_core::persist::StateStore;
use ems_core::{Millis, State, TransitionRequest};
use ems_devices::estop::{ActiveLevel, HalEStop};
use ems_devices::io::{DeviceSet, DeviceSetConfig};
#[cfg(feature = "sim")]
use ems_devices::sim::{SharedSite, SimSiteConfig, SimulatedSite};
use ems_devices::traits::{Bms, EStopInput, Inverter, Meter, PvInverter, Relay};
use ems_devices::wrappers::events::{DeviceEvent, DeviceEvents, SkipReason};
use std::time::Duration;
use tokio::time::Instant;

/// Why the live run could not run.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// A command-line value is invalid.
    #[error("{flag} = {value}: {why}")]
    Arg {
        /// The flag.
        flag: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        why: &'static str,
    },
    /// The state file.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The site.
    #[error("simulated site: {0}")]
    Site(String),
    /// The controller.
    #[error("controller: {0}")]
    Controller(#[from] ems_control::ConfigError),
    /// The device layer.
    #[error("device layer: {0}")]
    Devices(String),
    /// The runtime.
    #[error("runtime: {0}")]
    Runtime(std::io::Error),
}

/// How long a graceful shutdown may take (simulated) before the gateway gives up waiting.
const SHUTDOWN_WAIT: Millis = Millis::new(60_000);

/// Run until Ctrl-C or `--duration`, then shut down gracefully and persist.
#[cfg(feature = "sim")]
pub fn run(args: &LiveArgs) -> Result<(), LiveError> {
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
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(LiveError::Runtime)?;
    runtime.block_on(run_async(args))
}

#[cfg(feature = "sim")]
async fn run_async(args: &LiveArgs) -> Result<(), LiveError> {
    let mut store = FileStore::new(&args.state_file);
    let config = ControllerConfig { cycle: Millis::new(args.cycle_ms), ..ControllerConfig::default() };
    let controller = load_controller(&mut store, config, args.reset_reason.is_some())?;
    if args.start_hour > 23 {
        return Err(LiveError::Arg {
            flag: "--start-hour",
            value: args.start_hour.to_string(),
            why: "must be 0-23",
        });
    }
    let site_config = SimSiteConfig {
        seed: args.seed,
        start_day_of_year: args.start_day,
        start_time_of_day: Millis::new(u64::from(args.start_hour) * 3_600_000),
        ..SimSiteConfig::default()
    };
    let site = SimulatedSite::new(site_config).map_err(|e| LiveError::Site(e.to_string()))?;
    let shared = SharedSite::new(site);
    let d = shared.devices();
    // The simulated site is driven exactly like hardware: through the device safety wrappers
    // (BMS validation, inverter lease/ramp/read-back, contactor pre-charge sequencing) and the
    // embedded-hal E-stop adapter.
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
    println!(
        "ems-gateway: simulated site (10 kWh LFP battery, 5 kW inverter, 6 kWp PV, household load), cycle {} ms, speed {}x; Ctrl-C stops gracefully",
        args.cycle_ms, args.speed
    );
    let opts = LoopOptions {
        cycle: Millis::new(args.cycle_ms),
        speed: args.speed,
        duration: args.duration.map(|s| Millis::new(secs_to_ms(s))),
        reset_reason: args.reset_reason.clone(),
        time_zone: None,
    };
    let mut api = match args.api_listen.as_deref() {
        None | Some("off") => None,
        Some(listen) => {
            let listen = listen.parse().map_err(|_| LiveError::Arg {
                flag: "--api-listen",
                value: listen.to_owned(),
                why: "must be HOST:PORT (e.g. 127.0.0.1:8080) or off",
            })?;
            let opts = crate::api::ApiOptions {
                listen,
                serials: vec!["sim-bms-1".to_owned()],
                rating_w: u64::from(site_rating_w(&shared)),
                providers: Vec::new(),
                database: args.api_db.clone(),
            };
            Some(crate::api::start_with_generated_admin(&opts).await?)
        }
    };
    drive(devices, controller, store, &opts, Some(&shared), api.as_mut()).await
}

/// The simulated inverter's rating, W.
#[cfg(feature = "sim")]
fn site_rating_w(site: &SharedSite) -> u32 {
    // A rating of a few kW; the conversion saturates for anything absurd.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let w = site.with(|s| s.config().inverter_rating.get().max(0.0)) as u32;
    w
}

/// The controller from the persisted state (STOPPED and ERROR survive a reboot; an unreadable
/// state file starts STOPPED).
pub(crate) fn load_controller(
    store: &mut FileStore,
    config: ControllerConfig,
    have_reset_reason: bool,
) -> Result<Controller, LiveError> {
    let controller = match store.load() {
        Ok(Some(p)) => {
            tracing::info!(file = %store.path().display(), state = %p.state, "restored persisted state");
            Controller::restore(config, &p)?
        }
        Ok(None) => Controller::new(config)?,
        Err(e @ StoreError::Corrupt { .. }) => {
            // Unknown history: start as if an E-stop had been latched, so a person looks first.
            tracing::error!("{e}; starting in STOPPED, a manual reset (--reset-reason) is required");
            let p = ems_core::persist::PersistedState { state: State::Stopped, latched: heapless_empty() };
            Controller::restore(config, &p)?
        }
        Err(e) => return Err(e.into()),
    };
    if matches!(controller.state(), State::Stopped | State::Error) && !have_reset_reason {
        tracing::warn!(
            "restored {}: the site stays without power until an operator resets (run with --reset-reason \"...\")",
            controller.state()
        );
    }
    Ok(controller)
}

/// How the control loop runs.
#[derive(Debug, Clone)]
pub(crate) struct LoopOptions {
    /// Control cycle.
    pub cycle: Millis,
    /// Speed-up against wall time (1 for real devices).
    pub speed: f64,
    /// Stop (gracefully) after this long; run until Ctrl-C if `None`.
    pub duration: Option<Millis>,
    /// Operator reason for a reset/acknowledge at start-up.
    pub reset_reason: Option<String>,
    /// The site's time zone for the local time of day (peak-shaving cap slots); the system's
    /// zone when `None`. A simulated site uses its own calendar instead.
    pub time_zone: Option<jiff::tz::TimeZone>,
}

/// The local minute of day for the controller: the simulator's calendar, or the wall clock in
/// the site's time zone (DST-correct through the tz database).
fn local_minute(physics: Option<&SharedSite>, tz: Option<&jiff::tz::TimeZone>) -> Option<u16> {
    if let Some(site) = physics {
        let ms = site.borrow().calendar().time_of_day.get();
        return u16::try_from(ms / 60_000).ok();
    }
    let now = jiff::Timestamp::now();
    let zoned = match tz {
        Some(tz) => now.to_zoned(tz.clone()),
        None => now.to_zoned(jiff::tz::TimeZone::system()),
    };
    let minute = i32::from(zoned.hour()) * 60 + i32::from(zoned.minute());
    u16::try_from(minute).ok()
}

/// The control loop over any device set: read → `Controller::step` → apply, every cycle, the
/// E-stop polled every millisecond in between, Ctrl-C or the duration → graceful shutdown,
/// persistence on every state change, and `release` at the end. `physics` is the simulated
/// site to advance between cycles (`None` on real hardware).
pub(crate) async fn drive<B, I, M, P, PR, MR, E>(
    mut devices: DeviceSet<B, I, M, P, PR, MR, E>,
    mut controller: Controller,
    mut store: FileStore,
    opts: &LoopOptions,
    physics: Option<&SharedSite>,
    mut api: Option<&mut crate::api::LoopApi>,
) -> Result<(), LiveError>
where
    B: Bms,
    I: Inverter,
    M: Meter,
    P: PvInverter,
    PR: Relay,
    MR: Relay,
    E: EStopInput,
{
    let cycle = opts.cycle;
    let mut snapshot = ems_core::Snapshot::unknown(ems_core::Watts::ZERO);
    let mut dev_events = DeviceEvents::new();
    let mut device_trips: heapless::Vec<ems_core::TripReason, 4> = heapless::Vec::new();
    let mut now = Millis::ZERO;
    let started = Instant::now();
    let mut next_status = started;
    let mut starting = true;
    let mut reset_pending = opts.reset_reason.clone();
    let mut shutdown_at: Option<Millis> = None;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut ctrl_c_seen = false;

    loop {
        devices.read(now, &mut snapshot, &mut dev_events).await;
        let mut inputs = Inputs {
            device_trips: &device_trips,
            local_minute: local_minute(physics, opts.time_zone.as_ref()),
            ..Inputs::default()
        };
        let wants_shutdown =
            shutdown_at.is_none() && (ctrl_c_seen || opts.duration.is_some_and(|d| now >= d));
        if wants_shutdown {
            inputs.shutdown = true;
            shutdown_at = Some(now);
            tracing::info!("graceful shutdown requested");
        } else if shutdown_at.is_none() {
            inputs.request = startup_request(&controller, &mut starting, &mut reset_pending);
        }
        if let Some(r) =
            inputs.request.filter(|r| matches!(r, TransitionRequest::Reset | TransitionRequest::Acknowledge))
        {
            inputs.reason = opts.reset_reason.as_deref().unwrap_or("");
            tracing::info!(target: "audit", request = %r, reason = inputs.reason, "operator request");
        }
        // The local API: its state commands (only when the loop has none of its own this
        // cycle; an E-stop always), the active control mode and the due schedule.
        if shutdown_at.is_none() {
            if let Some(a) = api.as_deref_mut() {
                let loop_has_request = inputs.request.is_some();
                a.fill(&mut inputs, loop_has_request);
            }
        }
        if let Some(a) = api.as_deref() {
            if inputs.request == Some(TransitionRequest::Reset) && !a.reason().is_empty() {
                inputs.reason = a.reason();
            }
        }
        let out = controller.step(now.get(), &snapshot, &inputs);
        if let Some(a) = api.as_deref_mut() {
            a.after(&out, &snapshot, now, controller.latched());
        }
        let report = devices
            .apply(
                now,
                &out.command,
                out.envelope.max_charge(),
                out.envelope.max_discharge(),
                &mut dev_events,
            )
            .await;
        device_trips = report.trips;
        audit(&out);
        audit_devices(&mut dev_events);
        if out.state_changed() {
            if let Err(e) = store.save(&controller.persisted()) {
                tracing::error!("{e}");
            }
        }

        if Instant::now() >= next_status {
            print_status(now, &out, &snapshot);
            next_status += Duration::from_secs(1);
        }
        if let Some(at) = shutdown_at {
            let done = matches!(out.shutdown, ShutdownPhase::Complete | ShutdownPhase::Failed);
            if done || now.since(at) > SHUTDOWN_WAIT {
                print_status(now, &out, &snapshot);
                println!("shutdown: {:?}, state {}", out.shutdown, out.state);
                break;
            }
        }

        if let Some(site) = physics {
            site.borrow_mut().advance(cycle);
        }
        now = now.plus(cycle);
        // Pace: `now` is due at wall time `started + now / speed`. While waiting, poll the E-stop
        // every millisecond: its fast path zeroes the inverter and opens the contactors at once,
        // and the next cycle (started immediately) latches STOPPED.
        #[allow(clippy::cast_precision_loss)] // milliseconds fit f64 exactly
        let due = started + Duration::from_secs_f64(now.get() as f64 / 1000.0 / opts.speed);
        // Only a new press cuts the wait short; while the E-stop stays pressed the fast path
        // keeps re-commanding zero and open, and the cycles keep their pace.
        let mut held = snapshot.estop.last_value() == ems_core::snapshot::EStopInput::Pressed;
        loop {
            let tick = (Instant::now() + Duration::from_millis(1)).min(due);
            tokio::select! {
                _ = tokio::time::sleep_until(tick) => {}
                r = &mut ctrl_c, if !ctrl_c_seen => {
                    if r.is_ok() {
                        ctrl_c_seen = true;
                        println!("Ctrl-C: shutting down gracefully (ramp to zero, open contactors, verify)");
                    }
                }
            }
            if Instant::now() >= due || ctrl_c_seen {
                break;
            }
            let pressed = devices.check_estop(now, &mut dev_events).await;
            if pressed && !held {
                audit_devices(&mut dev_events);
                break;
            }
            held = pressed;
        }
    }
    store.save(&controller.persisted())?;
    println!("state {} persisted to {}", controller.state(), store.path().display());
    // End of control: zero, contactors open, the inverter's own settings restored.
    match devices.release(now, &mut dev_events).await {
        Ok(()) => println!("control released: inverter settings restored"),
        Err(e) => tracing::error!(target: "audit", "release failed: {e}"),
    }
    audit_devices(&mut dev_events);
    Ok(())
}

fn heapless_empty() -> heapless::Vec<ems_core::TripReason, { ems_core::state::MAX_LATCHED }> {
    heapless::Vec::new()
}

#[cfg(feature = "sim")]
fn secs_to_ms(s: f64) -> u64 {
    // Validated finite and >= 0 by the caller; `as` saturates for huge values.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let ms = (s * 1000.0).round() as u64;
    ms
}

/// The start-up sequence a newcomer expects: BOOT → IDLE → RUNNING, and a reset/acknowledge
/// first if the persisted state needs one and the operator gave a reason.
fn startup_request(
    controller: &Controller,
    starting: &mut bool,
    reset_pending: &mut Option<String>,
) -> Option<TransitionRequest> {
    match controller.state() {
        State::Boot => Some(TransitionRequest::BootComplete),
        State::Idle if *starting => Some(TransitionRequest::Start),
        State::Stopped => reset_pending.take().map(|_| TransitionRequest::Reset),
        State::Error => reset_pending.take().map(|_| TransitionRequest::Acknowledge),
        State::Running => {
            *starting = false;
            None
        }
        State::Idle => None,
    }
}

fn audit(out: &Output) {
    for e in &out.events {
        tracing::info!(target: "audit", "{}", e.kind);
    }
    if let Some(r) = &out.refused {
        tracing::warn!(target: "audit", "request refused: {r}");
    }
    if let Some(e) = &out.mode_refused {
        tracing::warn!(target: "audit", "mode change refused: {e}");
    }
    if let Some(e) = &out.override_refused {
        tracing::warn!(target: "audit", "control-mode override refused: {e}");
    }
    if out.source_changed {
        tracing::info!(target: "audit", "set-point source: {}", out.source);
    }
    if out.events.dropped() > 0 {
        tracing::warn!(target: "audit", "{} events dropped this cycle", out.events.dropped());
    }
}

fn audit_devices(events: &mut DeviceEvents) {
    for e in events.iter() {
        // Routine housekeeping (lease renewals, writes skipped inside the deadband) would drown
        // the audit log at a 100 ms cycle; it stays available at debug level.
        match e.event {
            DeviceEvent::LeaseRenewed | DeviceEvent::WriteSkipped { why: SkipReason::Deadband, .. } => {
                tracing::debug!(target: "audit", "device: {}", e.event);
            }
            _ => tracing::info!(target: "audit", "device: {}", e.event),
        }
    }
    if events.dropped() > 0 {
        tracing::warn!(target: "audit", "{} device events dropped", events.dropped());
    }
    events.clear();
}

/// The power flows the EMS sees (last values, whatever their quality), not a simulator's truth:
/// the status line and the API's view serve a real site too.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Flows {
    /// SOC, %.
    pub soc: f32,
    /// Battery, W (`+` discharge).
    pub battery: f32,
    /// Grid, W (`+` import).
    pub grid: f32,
    /// PV, W.
    pub pv: f32,
    /// Site load, W: `grid + pv + battery` (design.md §4), never negative.
    pub load: f32,
}

impl Flows {
    pub(crate) fn of(snapshot: &ems_core::Snapshot) -> Self {
        let battery = snapshot.inverter.active_power.last_value().get();
        let grid = snapshot.grid.active_power.last_value().get();
        let pv = snapshot.pv_power.last_value().get();
        Self {
            soc: snapshot.battery.soc.last_value().get(),
            battery,
            grid,
            pv,
            load: (grid + pv + battery).max(0.0),
        }
    }
}

fn print_status(now: Millis, out: &Output, snapshot: &ems_core::Snapshot) {
    let b = &snapshot.battery;
    let Flows { soc, battery, grid, pv, load } = Flows::of(snapshot);
    let env = &out.envelope;
    let why = |c: Option<ems_core::event::Constraint>| c.map_or_else(|| "-".to_owned(), |c| c.to_string());
    println!(
        "[{:>9.1} s] {:<8} SOC {:>5.1} %  battery {:>+6.0} W  grid {:>+6.0} W  pv {:>5.0} W  load {:>5.0} W  cell {:.3}-{:.3} V {:.1} °C  limits: charge {:.0} W ({}) / discharge {:.0} W ({})",
        now.as_secs_f32(),
        out.state,
        soc,
        battery,
        grid,
        pv,
        load,
        b.cell_voltage_min.last_value().get(),
        b.cell_voltage_max.last_value().get(),
        b.cell_temp_max.last_value().get(),
        env.max_charge().get(),
        why(env.charge_binding()),
        env.max_discharge().get(),
        why(env.discharge_binding()),
    );
}
