//! The gateway's run: the control loop of `ems-runtime` on its own thread, the local API on
//! another runtime, signals forwarded as shutdown requests. What the gateway adds to every
//! cycle — the start-up sequence, the API bridge, the status line, the audit trail, the
//! simulated site's physics — is one [`GatewayHook`]; the loop itself is `ems-runtime`'s.

use crate::api::LoopApi;
pub(crate) use crate::error::LiveError;
use crate::store::{FileStore, StoreError};
use crate::view::{is_routine, Flows};
use ems_control::{Controller, ControllerConfig, Inputs, Output};
use ems_core::{Millis, State, TransitionRequest};
use ems_devices::io::ApplyReport;
use ems_devices::wrappers::events::DeviceEvents;
use ems_runtime::marker::RunMarker;
use ems_runtime::{
    realtime, Context, CycleTiming, EStopTrigger, Hook, RealtimeOptions, Runtime, ShutdownRequest,
    SiteDevices,
};
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Options of the real-time run (the default command).
#[derive(Debug, clap::Args)]
pub(crate) struct LiveArgs {
    /// Run N times faster than real time.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) speed: f64,
    /// Stop (gracefully) after this many simulated seconds; runs until Ctrl-C if not given.
    #[arg(long)]
    pub(crate) duration: Option<f64>,
    /// Control cycle period in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub(crate) cycle_ms: u64,
    /// Where the state machine is persisted.
    #[arg(long, default_value = "ems-gateway.state")]
    pub(crate) state_file: PathBuf,
    /// Seed for the simulated site.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Local time of day (hour, 0-23) at which the simulated site starts; default 10 so that a
    /// first run shows the battery taking PV surplus (with `--economics`: the current hour in the
    /// site's time zone, so that live prices line up).
    #[arg(long)]
    pub(crate) start_hour: Option<u8>,
    /// Simulated day of the year to start on (1 = 1 January; default 152 = 1 June; with
    /// `--economics`: today in the site's time zone).
    #[arg(long)]
    pub(crate) start_day: Option<u16>,
    /// Live economics on the simulated site: a TOML file with an `[economics]` table, the same
    /// section as in a site file (tariff, price sources, location, PV, re-planning). The
    /// simulated calendar then starts at the current date and time in the site's time zone.
    #[arg(long)]
    pub(crate) economics: Option<PathBuf>,
    /// Grid services on the simulated site: a TOML file with a `[grid_services]` table (the
    /// same section as in a site file) whose frequency `source = "simulated"`, with a built-in
    /// `signal` (`nominal`, `dip`, `sine`). The services act only inside windows committed
    /// through `PUT /api/v1/grid-services`.
    #[arg(long)]
    pub(crate) grid_services: Option<PathBuf>,
    /// Island operation on the simulated site: a TOML file with an `[island]` table (load
    /// circuits with priorities, a grid outage schedule `outages = [{at_s, for_s}]`, optional
    /// settings), see `examples/island/sim.toml`. Watch it on `GET /api/v1/island`.
    #[arg(long)]
    pub(crate) island: Option<PathBuf>,
    /// Operator reason for a manual reset (STOPPED) or acknowledge (ERROR) at start-up, when the
    /// persisted state needs one.
    #[arg(long)]
    pub(crate) reset_reason: Option<String>,
    /// Where the local REST API listens (`HOST:PORT`; port 0 picks a free one), or `off`. An
    /// admin token is generated at start and printed once as `admin token: <token>`.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub(crate) api_listen: Option<String>,
    /// SQLite database for the API's audit log, telemetry history and schedules (kept across
    /// restarts); in memory when not given.
    #[arg(long)]
    pub(crate) api_db: Option<PathBuf>,
    /// Push the site's data to a cloud (`http://HOST:PORT/PATH`) every 15 s (simulated) and take
    /// the control modes its answers carry; buffered while it is unreachable and resent when
    /// it is back (the `[cloud]` link of a site file, with its defaults).
    #[arg(long)]
    pub(crate) cloud_url: Option<String>,
    /// Serve the simulated site as a SunSpec device over Modbus TCP on `HOST:PORT` (the
    /// listener of `[modbus_server]`; `SunS` at register address 40000), or `off`. Connections
    /// are accepted from loopback only unless HOST is not a loopback address. Control writes
    /// (model 704 `WSet…`, `WMaxLimPct…`) become control modes through the API and revert
    /// after 60 s unless written again.
    #[arg(long)]
    pub(crate) modbus_server: Option<String>,
    /// Publish the site to an MQTT broker and take commands from it (`mqtt://HOST:PORT`), with
    /// topic prefix `ems` and site id `sim`: `ems/sim/status`, `ems/sim/state/<channel>`,
    /// `ems/sim/events`, `ems/sim/cmd/{control-modes,emergency-stop,reset,schedules}` (MQTT 5;
    /// the token as user property `authorization`; see the README). Needs the API.
    #[arg(long, value_name = "URL")]
    pub(crate) mqtt: Option<String>,
}

/// The controller from the persisted state (STOPPED and ERROR survive a reboot; an unreadable
/// state file starts STOPPED).
pub(crate) fn load_controller(
    store: &mut FileStore,
    config: ControllerConfig,
    have_reset_reason: bool,
) -> Result<Controller, LiveError> {
    use ems_core::persist::StateStore;
    let controller = match store.load() {
        Ok(Some(p)) => {
            tracing::info!(file = %store.path().display(), state = %p.state, "restored persisted state");
            Controller::restore(config, &p)?
        }
        Ok(None) => Controller::new(config)?,
        Err(e @ StoreError::Corrupt { .. }) => {
            // Unknown history: start as if an E-stop had been latched, so a person looks first.
            tracing::error!("{e}; starting in STOPPED, a manual reset (--reset-reason) is required");
            let p =
                ems_core::persist::PersistedState { state: State::Stopped, latched: heapless::Vec::new() };
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

/// The physics of a simulated site, advanced by the loop (`None` on real hardware).
pub(crate) trait Physics {
    /// Advance by one cycle.
    fn advance(&mut self, step: Millis);
    /// The simulated calendar's local minute of day.
    fn local_minute(&self) -> Option<u16>;
}

/// Everything a gateway run needs besides its devices.
pub(crate) struct Launch {
    /// The controller, restored from the state file.
    pub controller: Controller,
    /// The state file.
    pub store: FileStore,
    /// Pacing, duration, shutdown timeout.
    pub realtime: RealtimeOptions,
    /// Operator reason for a reset/acknowledge at start-up.
    pub reset_reason: Option<String>,
    /// The site's time zone for the local time of day (the system's when `None`).
    pub time_zone: Option<jiff::tz::TimeZone>,
    /// The API, if any.
    pub api: Option<crate::api::ApiStart>,
    /// Live economics, if configured.
    pub economics: Option<crate::economics::EconomicsStart>,
    /// Grid services, if configured.
    pub grid: Option<crate::grid_services::GridStart>,
    /// Island operation on the simulated site, if asked for (`--island`).
    #[cfg(feature = "sim")]
    pub island: Option<crate::island::sim::IslandStart>,
    /// Island operation on a real site's Modbus devices (`[island]` in the site file).
    pub site_island: Option<crate::config::IslandWiring>,
}

/// What the control thread hands the device connector: the API (to show "waiting for devices"
/// with its cause) and the shutdown request (to give up waiting). The connector returns both.
pub(crate) struct Connecting {
    /// The loop's side of the API.
    pub api: Option<LoopApi>,
    /// Shutdown requests.
    pub shutdown: ShutdownRequest,
}

impl Connecting {
    /// Report that the devices are not reachable yet, and why.
    pub(crate) fn waiting(&mut self, cause: &str) {
        tracing::error!("waiting for devices: {cause}");
        if let Some(api) = &mut self.api {
            api.publish_waiting(cause);
        }
    }
}

/// The devices of a run, with the simulated site's physics when there is one.
pub(crate) type Connected<D> = (D, Option<Box<dyn Physics>>);

/// Run the gateway: the API first (so that the page answers while devices are unreachable),
/// then the control thread, which connects the devices with `connect`, runs the loop of
/// `ems-runtime` until a signal or the duration, shuts down gracefully, persists and releases.
pub(crate) fn run_gateway<D, F, Fut>(launch: Launch, connect: F) -> Result<(), LiveError>
where
    D: SiteDevices + 'static,
    F: FnOnce(Connecting) -> Fut + Send + 'static,
    Fut: Future<Output = (Result<Connected<D>, LiveError>, Connecting)>,
{
    // The API and the signal handlers run here; the control loop never does.
    let api_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("ems-api")
        .enable_all()
        .build()
        .map_err(LiveError::Runtime)?;
    let shutdown = ShutdownRequest::new();
    let trigger = EStopTrigger::new();
    let signals = shutdown.clone();
    api_runtime.spawn(async move {
        if let Err(e) = signals.forward_signals().await {
            tracing::error!("signal handlers: {e}");
        }
    });
    #[cfg(feature = "sim")]
    let island = launch.island.clone();
    #[cfg(not(feature = "sim"))]
    let island = None;
    let site_island = launch.site_island.clone();
    let Launch {
        controller, store, realtime: opts, reset_reason, time_zone, mut api, economics, grid, ..
    } = launch;
    if let (Some(a), Some(g)) = (&mut api, &grid) {
        a.grid_services = Some(g.port());
    }
    // The planner's shared state first: the API serves its views from the start.
    let planner = economics.map(crate::economics::Planner::new).transpose()?;
    if let (Some(a), Some(p)) = (&mut api, &planner) {
        a.economics = Some(p.port());
    }
    let mut api = match api {
        Some(a) => Some(api_runtime.block_on(crate::api::start(a, trigger.clone()))?),
        None => None,
    };
    let mqtt = api.as_mut().and_then(LoopApi::take_mqtt);
    // Stored commitments survive a restart: load them before the loop runs.
    if let (Some(g), Some((_, Some(db)))) = (&grid, api.as_ref().map(LoopApi::economics_handles)) {
        match g.port().attach_db(db) {
            Ok(n) => tracing::info!(target: "audit", "grid services: {n} stored commitments loaded"),
            Err(e) => tracing::error!(target: "audit", "grid services: stored commitments not loaded: {e}"),
        }
    }
    // Then its thread, with the API's audit log and database (persistence of what it learned).
    let (loop_economics, planner_thread) = match planner {
        Some(p) => {
            if let Some(a) = &api {
                a.set_sunsets(p.sunsets());
            }
            let (audit, db) = api.as_ref().map_or((None, None), LoopApi::economics_handles);
            let (l, t) = p.spawn(audit, db)?;
            (Some(l), Some(t))
        }
        None => (None, None),
    };
    let marker_path = marker_path(store.path());
    let thread_shutdown = shutdown.clone();
    let handle = ems_runtime::thread::spawn_control(move || async move {
        let (marker, unclean) = match RunMarker::begin(&marker_path) {
            Ok((m, unclean)) => (Some(m), unclean),
            Err(e) => {
                tracing::error!("run marker {}: {e}", marker_path.display());
                (None, false)
            }
        };
        let (connected, back) = connect(Connecting { api, shutdown: thread_shutdown.clone() }).await;
        let mut hook = GatewayHook::new(back.api, reset_reason, time_zone);
        hook.economics = loop_economics;
        if unclean {
            hook.unclean_shutdown(&marker_path);
        }
        let (devices, physics) = match connected {
            Ok(c) => c,
            Err(e) => {
                // Never in control: nothing to shut down, so this end is a clean one.
                if let Some(m) = marker {
                    if let Err(err) = m.finish() {
                        tracing::error!("run marker: {err}");
                    }
                }
                return Err(e);
            }
        };
        hook.physics = physics;
        let island = match &site_island {
            Some(w) => crate::island::GatewayIsland::Modbus(Box::new(
                crate::island::build_modbus(w).map_err(|e| LiveError::Site(format!("[island]: {e}")))?,
            )),
            None => island_path(island, &mut hook)?,
        };
        let mut rt = Runtime::new(devices, controller, store).with_island_path(island);
        rt.watch_estop(opts.estop_tick, trigger);
        match grid.map(crate::grid_services::GridStart::build).transpose() {
            Ok(Some(g)) => drive(rt.with_grid_path(g), &mut hook, &opts, &thread_shutdown).await,
            Ok(None) => drive(rt, &mut hook, &opts, &thread_shutdown).await,
            Err(e) => {
                tracing::error!("{e}");
                drive(rt, &mut hook, &opts, &thread_shutdown).await;
            }
        }
        if let Some(m) = marker {
            if let Err(e) = m.finish() {
                tracing::error!("run marker: {e}");
            }
        }
        Ok::<(), LiveError>(())
    })
    .map_err(LiveError::Runtime)?;
    let result = match handle.join() {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(LiveError::Runtime(e)),
        Err(_) => Err(LiveError::Runtime(std::io::Error::other("the control thread panicked"))),
    };
    // The control thread has ended (its end of the channels is gone): the planner persists
    // what it learned and stops.
    if let Some(t) = planner_thread {
        t.finish();
    }
    // `offline` and a clean disconnect (a crash leaves that to the broker's last will).
    if let Some(m) = mqtt {
        api_runtime.block_on(m.stop(Duration::from_secs(2)));
    }
    api_runtime.shutdown_timeout(Duration::from_secs(2));
    result
}

/// The island path of the run (built on the control thread: the simulated plant is not Send).
#[cfg(feature = "sim")]
fn island_path(
    start: Option<crate::island::sim::IslandStart>,
    hook: &mut GatewayHook,
) -> Result<crate::island::GatewayIsland, LiveError> {
    match start.map(crate::island::sim::IslandStart::build).transpose() {
        Ok(Some((path, plant))) => {
            hook.island_physics = Some(plant);
            Ok(crate::island::GatewayIsland::Sim(Box::new(path)))
        }
        Ok(None) => Ok(crate::island::GatewayIsland::None),
        Err(e) => Err(LiveError::Site(format!("[island]: {e}"))),
    }
}

#[cfg(not(feature = "sim"))]
fn island_path(
    _start: Option<()>,
    _hook: &mut GatewayHook,
) -> Result<crate::island::GatewayIsland, LiveError> {
    Ok(crate::island::GatewayIsland::None)
}

/// Run the loop until it ends, then report, persist and release.
async fn drive<D: SiteDevices, G: ems_runtime::GridPath>(
    mut rt: Runtime<D, FileStore, G, crate::island::GatewayIsland>,
    hook: &mut GatewayHook,
    opts: &RealtimeOptions,
    shutdown: &ShutdownRequest,
) {
    let summary = realtime::run(&mut rt, hook, opts, shutdown).await;
    hook.final_status();
    println!("shutdown: {}, state {}", summary.end, summary.state);
    if let Some(e) = &summary.persist_error {
        tracing::error!("{e}");
    } else {
        println!("state {} persisted to {}", summary.state, rt.store().path().display());
    }
    match &summary.released {
        Ok(()) => println!("control released: inverter settings restored"),
        Err(e) => tracing::error!(target: "audit", "release failed: {e}"),
    }
    hook.device_events(rt.events());
    hook.finish(&summary);
}

/// `<state file>.running`.
fn marker_path(state: &std::path::Path) -> PathBuf {
    crate::store::with_suffix(state, ".running")
}

/// The gateway's part in every cycle.
pub(crate) struct GatewayHook {
    api: Option<LoopApi>,
    economics: Option<crate::economics::LoopEconomics>,
    physics: Option<Box<dyn Physics>>,
    #[cfg(feature = "sim")]
    island_physics: Option<crate::island::sim::IslandPhysics>,
    time_zone: Option<jiff::tz::TimeZone>,
    starting: bool,
    reset_pending: Option<String>,
    reset_reason: String,
    next_status: Instant,
    last: Option<(Millis, Output, ems_core::Snapshot)>,
}

impl GatewayHook {
    fn new(
        api: Option<LoopApi>,
        reset_reason: Option<String>,
        time_zone: Option<jiff::tz::TimeZone>,
    ) -> Self {
        Self {
            api,
            economics: None,
            physics: None,
            #[cfg(feature = "sim")]
            island_physics: None,
            time_zone,
            starting: true,
            reset_pending: reset_reason.clone(),
            reset_reason: reset_reason.unwrap_or_default(),
            next_status: Instant::now(),
            last: None,
        }
    }

    fn unclean_shutdown(&mut self, marker: &std::path::Path) {
        let text = format!(
            "unclean shutdown detected: the previous run ended without its graceful shutdown ({} was left behind)",
            marker.display()
        );
        tracing::warn!(target: "audit", "{text}");
        if let Some(api) = &mut self.api {
            api.audit_safety("gateway", "unclean shutdown detected", &text);
        }
    }

    fn final_status(&mut self) {
        if let Some((now, out, snapshot)) = &self.last {
            print_status(*now, out, snapshot);
        }
    }

    fn device_events(&mut self, events: &DeviceEvents) {
        audit_devices(events);
        if let Some(api) = &mut self.api {
            api.device_events(events);
        }
    }

    fn finish(&mut self, summary: &ems_runtime::RunSummary) {
        if let Some(api) = &mut self.api {
            api.finish(summary);
        }
    }

    /// The local minute of day: the simulator's calendar, or the wall clock in the site's time
    /// zone (DST-correct through the tz database).
    fn local_minute(&self) -> Option<u16> {
        if let Some(p) = &self.physics {
            return p.local_minute();
        }
        let now = jiff::Timestamp::now();
        let zoned = match &self.time_zone {
            Some(tz) => now.to_zoned(tz.clone()),
            None => now.to_zoned(jiff::tz::TimeZone::system()),
        };
        let minute = i32::from(zoned.hour()) * 60 + i32::from(zoned.minute());
        u16::try_from(minute).ok()
    }
}

impl Hook for GatewayHook {
    fn inputs<'a>(&'a mut self, cx: &Context<'_>, inputs: &mut Inputs<'a>) {
        inputs.local_minute = self.local_minute();
        let Self { api, economics, starting, reset_pending, reset_reason, .. } = self;
        if !cx.shutting_down {
            inputs.request = startup_request(cx.state, starting, reset_pending);
        }
        let reason: &'a String = reset_reason;
        if let Some(r) =
            inputs.request.filter(|r| matches!(r, TransitionRequest::Reset | TransitionRequest::Acknowledge))
        {
            inputs.reason = reason;
            tracing::info!(target: "audit", request = %r, reason = inputs.reason, "operator request");
        }
        // The plan's current slot and the winning operator rule (`arbitrate` ranks them).
        if let Some(e) = economics.as_mut().filter(|_| !cx.shutting_down) {
            e.fill(cx.now, inputs);
        }
        // The local API: its state commands (only when the gateway has none of its own this
        // cycle), the active control mode, the site mode and the due schedule. The software
        // E-stop does not come this way: it wakes the loop through its trigger.
        if let Some(a) = api {
            let loop_has_request = inputs.request.is_some();
            a.fill(inputs, loop_has_request, cx.shutting_down);
        }
    }

    fn stepped(&mut self, cx: &Context<'_>, out: &Output) {
        audit(out);
        if let Some(e) = &mut self.economics {
            e.observe(cx.now, cx.snapshot, out, cx.mode);
        }
        if let Some(a) = &mut self.api {
            a.after(out, cx.snapshot, cx.now, cx.latched, cx.mode);
            if let Some(island) = cx.island {
                a.publish_island(island);
            }
        }
        if Instant::now() >= self.next_status {
            print_status(cx.now, out, cx.snapshot);
            self.next_status += Duration::from_secs(1);
            if self.next_status < Instant::now() {
                self.next_status = Instant::now() + Duration::from_secs(1);
            }
        }
    }

    fn applied(&mut self, cx: &Context<'_>, out: &Output, _: Option<&ApplyReport>, events: &DeviceEvents) {
        self.device_events(events);
        self.last = Some((cx.now, out.clone(), *cx.snapshot));
    }

    fn advance(&mut self, _next: Millis, step: Millis) {
        if let Some(p) = &mut self.physics {
            p.advance(step);
        }
        #[cfg(feature = "sim")]
        if let Some(p) = &mut self.island_physics {
            p.advance(step);
        }
    }

    fn island_request(&mut self) -> Option<ems_runtime::IslandRequest> {
        let r = self.api.as_mut().and_then(crate::api::LoopApi::island_request);
        if let Some(r) = &r {
            tracing::info!(target: "audit", "operator island request: {r:?}");
        }
        r
    }

    fn island_answer(
        &mut self,
        _request: &ems_runtime::IslandRequest,
        outcome: ems_runtime::IslandRequestOutcome,
    ) {
        if let Some(a) = &mut self.api {
            a.island_answer(outcome);
        }
    }

    fn timing(&mut self, timing: CycleTiming) {
        if let Some(a) = &self.api {
            a.timing(timing);
        }
    }

    fn estop_fast_path(&mut self, took: Duration, software: bool) {
        tracing::info!(target: "audit", "E-stop fast path: zero and open commanded {took:?} after the {}", if software { "software E-stop" } else { "input's edge" });
        if let Some(a) = &self.api {
            a.estop_fast_path(took);
        }
    }
}

/// The start-up sequence a newcomer expects: BOOT → IDLE → RUNNING, and a reset/acknowledge
/// first if the persisted state needs one and the operator gave a reason.
fn startup_request(
    state: State,
    starting: &mut bool,
    reset_pending: &mut Option<String>,
) -> Option<TransitionRequest> {
    match state {
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

fn audit_devices(events: &DeviceEvents) {
    for e in events.iter() {
        if is_routine(&e.event) {
            tracing::debug!(target: "audit", "device: {}", e.event);
        } else {
            tracing::info!(target: "audit", "device: {}", e.event);
        }
    }
    if events.dropped() > 0 {
        tracing::warn!(target: "audit", "{} device events dropped", events.dropped());
    }
}

pub(crate) fn print_status(now: Millis, out: &Output, snapshot: &ems_core::Snapshot) {
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
