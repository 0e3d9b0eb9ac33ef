//! The gateway's grid services (issue #13): the configured `[grid_services]` run through the
//! runtime's fast path ([`ems_runtime::FastPath`]) — the frequency source (a Modbus register,
//! or the simulated source of the built-in site), the services gated by the commitments of
//! `PUT /api/v1/grid-services`, and their status published for `GET`.
//!
//! * **Only inside a committed window**: [`CommittedServices`] runs, each step, exactly the
//!   services committed at this moment, with the committed capacities. When the committed set
//!   changes (a window opens or closes, a new `PUT`), the set is built anew: a service starts
//!   from zero when its window opens, as after a gap in the calls. The grid-code droop is an
//!   obligation, not a sold service: it runs whenever it is configured.
//! * **Never blocks the control thread**: the commitments are read with a `try_lock` only when
//!   their version changed; the status (a `Copy` struct) is published with a `try_lock` (a busy
//!   lock skips one publication). The API converts it to JSON on its own threads.

use crate::compliance::{ComplianceLog, ComplianceStatus};
#[cfg(feature = "sim")]
use crate::config::SimSignal;
use crate::config::{FrequencyWiring, GridServicesWiring, ServicesSpec};
use crate::economics::SiteClock;
use crate::live::LiveError;
use ems_api::grid_services::{
    in_force, Commitment, ConfiguredService, GridServices, GridStatusSource, LiveServices, Service,
    ServiceLive,
};
use ems_control::{GridRequest, GridService, Output};
use ems_core::{Hertz, Millis, Percent, Snapshot, State, Watts};
use ems_devices::frequency::{FrequencyInput, FrequencyInputConfig, FrequencySource, ModbusFrequency};
use ems_devices::modbus::transport::{AnyClient, ClientOptions, ModbusEndpoint};
use ems_devices::traits::{DeviceError, ErrorKind};
use ems_grid::prequal::{nem_aem_codes, OpSample, SvkService, SvkServiceRow};
use ems_grid::{Activation, AemState, FrequencyServices, LerConfig, NemState, ServiceStatus, ServicesStatus};
use ems_runtime::fast::{FastPath, FastPathConfig, GridPath};
use ems_safety::Envelope;
use jiff::Timestamp;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

/// One publication of the control thread.
#[derive(Debug, Clone, Copy)]
struct Published {
    status: ServicesStatus,
    state: State,
    frequency: Option<Hertz>,
    at: Timestamp,
}

/// The services' status as the control thread last published it, and the compliance log's
/// as its writer thread did.
#[derive(Debug, Default)]
pub(crate) struct LiveStatus {
    published: Mutex<Option<Published>>,
    compliance: OnceLock<Arc<ComplianceStatus>>,
}

impl LiveStatus {
    fn publish(&self, p: Published) {
        // Never wait: a reader holding the lock costs one publication, not a late cycle.
        if let Ok(mut g) = self.published.try_lock() {
            *g = Some(p);
        }
    }
}

fn nem_name(n: NemState) -> &'static str {
    match n {
        NemState::Off => "off",
        NemState::Charging => "charging",
        NemState::Discharging => "discharging",
    }
}

fn aem_name(a: AemState) -> &'static str {
    match a {
        AemState::Off => "off",
        AemState::SavingUp => "saving-up",
        AemState::SavingDown => "saving-down",
    }
}

/// A service with a good frequency, neither recovering nor without frequency.
fn ready(s: &ServiceStatus) -> bool {
    s.frequency.is_some()
        && match s.activation {
            Activation::Armed | Activation::Active | Activation::Deactivating => true,
            Activation::Inactive | Activation::Recovering { .. } | Activation::FrequencyLost => false,
        }
}

fn service_live(name: &str, s: &ServiceStatus, running: bool) -> ServiceLive {
    let ready = running && ready(s);
    #[allow(clippy::cast_precision_loss)] // endurance in ms, far below 2^52
    let secs = |m: Option<Millis>| m.map(|m| m.get() as f64 / 1000.0);
    ServiceLive {
        service: name.to_owned(),
        activation: s.activation.to_string(),
        delta_w: s.delta,
        endurance_up_s: secs(s.ler.endurance_up),
        endurance_down_s: secs(s.ler.endurance_down),
        nem: nem_name(s.ler.nem).to_owned(),
        aem: aem_name(s.ler.aem).to_owned(),
        alert_state: s.ler.alert_state,
        ready,
    }
}

impl GridStatusSource for LiveStatus {
    fn live(&self) -> Option<LiveServices> {
        let p = (*self.published.lock().unwrap_or_else(PoisonError::into_inner))?;
        let running = p.state == State::Running;
        let st = &p.status;
        let services = [
            ("fcr-n", st.fcr_n),
            ("fcr-d-up", st.fcr_d_up),
            ("fcr-d-down", st.fcr_d_down),
            ("ffr", st.ffr),
            ("droop", st.droop),
        ]
        .iter()
        .filter_map(|(n, s)| s.as_ref().map(|s| service_live(n, s, running)))
        .collect();
        Some(LiveServices {
            at: p.at,
            state: p.state.to_string(),
            frequency_hz: p.frequency,
            delta_w: st.delta,
            engaged: st.engaged,
            services,
            compliance_log: self.compliance.get().map(|c| c.get()),
        })
    }
}

/// The configured services as the API lists them.
fn configured(spec: &ServicesSpec) -> Vec<ConfiguredService> {
    Service::ALL
        .into_iter()
        .zip(spec.capacities())
        .zip(spec.details.iter())
        .filter_map(|((service, c), d)| {
            c.map(|capacity_w| ConfiguredService {
                service,
                capacity_w,
                detail: d.clone().unwrap_or_default(),
            })
        })
        .collect()
}

/// What the control thread needs to build the grid path (`Send`: built there, since the
/// simulated source is not).
#[derive(Debug)]
pub(crate) struct GridStart {
    wiring: GridServicesWiring,
    port: Arc<GridServices>,
    live: Arc<LiveStatus>,
    clock: SiteClock,
    ler: Option<LerConfig>,
}

impl GridStart {
    /// From the validated section; `clock` maps control time to site time (the windows);
    /// `ler` is the shared reservoir (battery capacity and SOC window), `None` if unknown
    /// (then no energy management and no endurance).
    pub(crate) fn new(wiring: GridServicesWiring, clock: SiteClock, ler: Option<LerConfig>) -> Self {
        let live = Arc::new(LiveStatus::default());
        let status: Arc<dyn GridStatusSource> = live.clone();
        let port = Arc::new(GridServices::new(wiring.parameter_set, configured(&wiring.spec), status));
        Self { wiring, port, live, clock, ler }
    }

    /// The API's side.
    pub(crate) fn port(&self) -> Arc<GridServices> {
        self.port.clone()
    }

    /// Open the frequency source and build the path (on the control thread).
    pub(crate) fn build(self) -> Result<GatewayGrid, LiveError> {
        let w = &self.wiring;
        let config = FastPathConfig { period: w.fast_period, io_budget: None };
        let io_budget = Duration::from_millis(w.fast_period.get() / 2);
        #[cfg(feature = "sim")]
        let mut sim = None;
        let source = match &w.frequency {
            FrequencyWiring::Modbus { endpoint, unit_id, register } => {
                let ep: ModbusEndpoint = endpoint.parse().map_err(|e| {
                    LiveError::Devices(format!("grid_services.frequency.endpoint {endpoint}: {e}"))
                })?;
                let options = ClientOptions { timeout: io_budget, ..ClientOptions::default() };
                AnyFrequency::Modbus(Box::new(ModbusFrequency::new(
                    AnyClient::new(&ep, *unit_id, options),
                    register.clone(),
                )))
            }
            #[cfg(feature = "sim")]
            FrequencyWiring::Simulated(signal) => {
                let (source, handle) = ems_devices::frequency::SimFrequency::new(sim_signal(*signal));
                sim = Some(handle);
                AnyFrequency::Sim(source)
            }
            #[cfg(not(feature = "sim"))]
            FrequencyWiring::Simulated(_) => {
                return Err(LiveError::Devices(
                    "grid_services.frequency: source = \"simulated\" needs a build with the sim feature"
                        .into(),
                ))
            }
        };
        let input = FrequencyInput::new(
            source,
            FrequencyInputConfig { max_age: w.max_age, ..FrequencyInputConfig::default() },
        )
        .map_err(|e| LiveError::Devices(format!("grid_services.frequency: {e}")))?;
        let services = CommittedServices {
            running: FrequencyServices::new(self.ler),
            spec: w.spec.clone(),
            ler: self.ler,
            committed: [None; 4],
            port: self.port.clone(),
            seen: 0,
            commitments: Arc::new(Vec::new()),
            clock: self.clock,
        };
        let path = FastPath::new(input, services, config)
            .map_err(|e| LiveError::Devices(format!("grid_services.fast_period_ms: {e}")))?;
        let log = match &w.compliance {
            Some(c) => {
                let columns: Vec<SvkService> = SvkService::ALL
                    .into_iter()
                    .zip(w.spec.capacities())
                    .filter_map(|(s, c)| c.map(|_| s))
                    .collect();
                let (log, status) = ComplianceLog::start(c, &columns, self.ler.is_some())?;
                let _ = self.live.compliance.set(status);
                Some(log)
            }
            None => None,
        };
        println!(
            "grid services: {} ({}), fast tick {} ms",
            w.summary.join(", "),
            w.parameter_set,
            w.fast_period.get()
        );
        Ok(GatewayGrid {
            path,
            live: self.live,
            log,
            ler: self.ler,
            measured: (None, None),
            #[cfg(feature = "sim")]
            sim,
        })
    }
}

/// The simulated site's grid services from `--grid-services FILE` (its frequency source must
/// be `simulated`), sharing the simulated battery of `capacity` within the safety limits' SOC
/// warning levels. Windows are in wall-clock time, as the API (and its caller) sees them, at
/// any `--speed`.
#[cfg(feature = "sim")]
pub(crate) fn sim_start(
    file: Option<&std::path::Path>,
    config: &ems_control::ControllerConfig,
    capacity: ems_core::WattHours,
) -> Result<Option<GridStart>, LiveError> {
    let Some(path) = file else { return Ok(None) };
    let w = crate::config::load_grid_services_file(path)?;
    if !matches!(w.frequency, FrequencyWiring::Simulated(_)) {
        return Err(LiveError::Arg {
            flag: "--grid-services",
            value: path.display().to_string(),
            why: "the simulated site measures its own frequency: [grid_services.frequency] source must be \"simulated\"",
        });
    }
    let limits = &config.safety.limits;
    let ler = LerConfig::try_new(capacity, limits.soc_low.warn, limits.soc_high.warn)
        .map_err(|e| tracing::warn!("grid services: no energy management: {e}"))
        .ok();
    Ok(Some(GridStart::new(w, SiteClock::Wall, ler)))
}

#[cfg(feature = "sim")]
fn sim_signal(s: SimSignal) -> ems_devices::frequency::SimFrequencySignal {
    use ems_devices::frequency::SimFrequencySignal;
    let hz = |f: f32| Hertz::saturating(f);
    match s {
        SimSignal::Nominal => SimFrequencySignal::Fixed(hz(50.0)),
        SimSignal::Dip => SimFrequencySignal::Function(Box::new(move |t: Millis| {
            #[allow(clippy::cast_precision_loss)] // ms within a 300 s period
            let s = (t.get() % 300_000) as f32 / 1000.0;
            let f = if s < 60.0 {
                50.0
            } else if s < 61.0 {
                50.0 - 0.1 * (s - 60.0)
            } else if s < 180.0 {
                49.9
            } else if s < 181.0 {
                49.9 + 0.1 * (s - 180.0)
            } else {
                50.0
            };
            hz(f)
        })),
        SimSignal::FfrDip => SimFrequencySignal::Function(Box::new(move |t: Millis| {
            let s = t.get() % 300_000;
            hz(if (60_000..70_000).contains(&s) { 49.45 } else { 50.0 })
        })),
        SimSignal::Sine => SimFrequencySignal::Function(Box::new(move |t: Millis| {
            #[allow(clippy::cast_precision_loss)] // ms within a 60 s period
            let s = (t.get() % 60_000) as f32 / 1000.0;
            hz(50.0 + 0.1 * (s / 60.0 * core::f32::consts::TAU).sin())
        })),
    }
}

/// A frequency source of either kind.
#[derive(Debug)]
pub(crate) enum AnyFrequency {
    /// A Modbus register.
    Modbus(Box<ModbusFrequency<AnyClient>>),
    /// The simulated source.
    #[cfg(feature = "sim")]
    Sim(ems_devices::frequency::SimFrequency),
}

/// A frequency source's error, its kind kept.
#[derive(Debug)]
pub(crate) struct FrequencyError(ErrorKind);

impl DeviceError for FrequencyError {
    fn kind(&self) -> ErrorKind {
        self.0
    }
}

impl FrequencySource for AnyFrequency {
    type Error = FrequencyError;

    async fn read(&mut self) -> Result<Hertz, FrequencyError> {
        match self {
            Self::Modbus(m) => m.read().await.map_err(|e| FrequencyError(e.kind())),
            #[cfg(feature = "sim")]
            Self::Sim(s) => s.read().await.map_err(|e| FrequencyError(e.kind())),
        }
    }

    fn reading_age(&self) -> Millis {
        match self {
            Self::Modbus(m) => m.reading_age(),
            #[cfg(feature = "sim")]
            Self::Sim(s) => s.reading_age(),
        }
    }
}

/// The configured services, run only as committed.
#[derive(Debug)]
pub(crate) struct CommittedServices {
    running: FrequencyServices,
    spec: ServicesSpec,
    ler: Option<LerConfig>,
    /// The capacities committed now (fcr-n, fcr-d-up, fcr-d-down, ffr).
    pub(crate) committed: [Option<Watts>; 4],
    port: Arc<GridServices>,
    seen: u64,
    commitments: Arc<Vec<Commitment>>,
    clock: SiteClock,
}

impl CommittedServices {
    /// The running set's last status.
    pub(crate) const fn status(&self) -> ServicesStatus {
        self.running.status()
    }
}

impl GridService for CommittedServices {
    fn name(&self) -> &'static str {
        "frequency services"
    }

    fn request(&mut self, now: Millis, snapshot: &Snapshot, envelope: &Envelope) -> Option<GridRequest> {
        if let Some((version, list)) = self.port.try_commitments_since(self.seen) {
            self.seen = version;
            self.commitments = list;
        }
        let at = self.clock.at(now);
        let committed = Service::ALL.map(|s| in_force(&self.commitments, s, at).map(|c| c.capacity_w));
        if committed != self.committed {
            let names: Vec<String> = Service::ALL
                .iter()
                .zip(committed)
                .filter_map(|(s, c)| c.map(|c| format!("{} {:.0} W", s.name(), c.get())))
                .collect();
            tracing::info!(
                target: "audit",
                "grid services committed now: {}",
                if names.is_empty() { "none".to_owned() } else { names.join(", ") }
            );
            self.running = self.spec.build(committed, self.ler);
            self.committed = committed;
        }
        self.running.request(now, snapshot, envelope)
    }
}

/// One sample of the compliance log: the measured power, the frequency, per sold service
/// whether it is committed and ready (`ContStatus_*`), its Δ (`Activated_*`) and committed
/// capacity (`ResSize_*`, 0 outside a window), FCR-N's NEM/AEM, the envelope's limits and the
/// reservoir's energy each way.
fn op_sample(
    unix_ms: i64,
    status: &ServicesStatus,
    committed: [Option<Watts>; 4],
    out: &Output,
    frequency: Option<Hertz>,
    (power, soc): (Option<Watts>, Option<Percent>),
    ler: Option<LerConfig>,
) -> OpSample {
    let running = out.state == State::Running;
    let row = |s: &Option<ServiceStatus>, c: Option<Watts>| SvkServiceRow {
        available: running && c.is_some() && s.as_ref().is_some_and(ready),
        activated_w: s.as_ref().map_or(0.0, |s| f64::from(s.delta.get())),
        reserve_w: c.map_or(0.0, |c| f64::from(c.get())),
    };
    let services = [
        (&status.fcr_n, committed[0]),
        (&status.fcr_d_up, committed[1]),
        (&status.fcr_d_down, committed[2]),
        (&status.ffr, committed[3]),
    ]
    .map(|(s, c)| Some(row(s, c)));
    let (nem, aem) = status.fcr_n.as_ref().map_or((0, 0), |s| nem_aem_codes(&s.ler));
    let cap_wh = ler.and_then(|l| l.view(soc)).map(|v| (f64::from(v.up.get()), f64::from(v.down.get())));
    OpSample {
        unix_ms,
        power_w: power.map_or(f64::NAN, |p| f64::from(p.get())),
        frequency_hz: frequency.map_or(f64::NAN, |f| f64::from(f.get())),
        services,
        nem,
        aem,
        pmin_w: -f64::from(out.envelope.max_charge().get()),
        pmax_w: f64::from(out.envelope.max_discharge().get()),
        cap_wh,
        ffr_active: status.ffr.as_ref().is_some_and(|s| s.activation == Activation::Active),
        requested_w: f64::from(out.requested.get()),
        checked: running && committed.iter().any(Option::is_some),
    }
}

/// The gateway's grid path: the runtime's [`FastPath`] over [`CommittedServices`], feeding
/// the simulated source its time and publishing the status after every step.
#[derive(Debug)]
pub(crate) struct GatewayGrid {
    path: FastPath<AnyFrequency, CommittedServices>,
    live: Arc<LiveStatus>,
    log: Option<ComplianceLog>,
    ler: Option<LerConfig>,
    /// The inverter's AC power and the SOC as the last sample saw them.
    measured: (Option<Watts>, Option<Percent>),
    #[cfg(feature = "sim")]
    sim: Option<ems_devices::frequency::SimFrequencyHandle>,
}

impl GridPath for GatewayGrid {
    type Service = CommittedServices;

    fn period(&self) -> Option<Millis> {
        self.path.period()
    }

    fn io_budget(&self) -> Duration {
        self.path.io_budget()
    }

    async fn sample(&mut self, now: Millis, snapshot: &mut Snapshot) {
        #[cfg(feature = "sim")]
        if let Some(h) = &self.sim {
            h.set_time(now);
        }
        self.path.sample(now, snapshot).await;
        self.measured = (snapshot.inverter.active_power.value_at(now), snapshot.battery.soc.value_at(now));
    }

    fn service(&mut self) -> &mut CommittedServices {
        self.path.service()
    }

    fn stepped(&mut self, now: Millis, out: &Output, fast: bool) {
        self.path.stepped(now, out, fast);
        let status = self.path.grid_service().status();
        let frequency = self.path.input().value_at(now);
        self.live.publish(Published { status, state: out.state, frequency, at: Timestamp::now() });
        if let Some(log) = &mut self.log {
            let unix_ms = log.unix_ms(now);
            let committed = self.path.grid_service().committed;
            let sample = op_sample(unix_ms, &status, committed, out, frequency, self.measured, self.ler);
            log.record(sample);
        }
    }
}
