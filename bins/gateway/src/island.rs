//! Island operation in the gateway: the island path of the loop (`ems_runtime::IslandLoop`) on
//! a real site's Modbus breaker, inverter grid-mode registers and load relays (`[island]` in the
//! site file) or on the built-in simulated site (`--island FILE`), and the translation of its
//! status into the API's view (`ems_api::island::IslandView`, DTOs: the API does not speak
//! `ems-grid`).

use ems_api::island::{CloseConditionsView, DetectionView, IslandEventView, IslandLoadView, IslandView};
use ems_control::GridTieBound;
use ems_core::snapshot::GridTie;
use ems_core::{Millis, Snapshot, State};
use ems_devices::modbus::transport::AnyClient;
use ems_grid::island::{BreakerCommand, InverterCommand};
use ems_runtime::{IslandPath, IslandRequest, IslandRequestOutcome, IslandStatus};

/// The island path over a real site's Modbus devices.
pub(crate) type ModbusIslandLoop = ems_runtime::IslandLoop<
    ems_devices::island::ModbusBreaker<AnyClient>,
    ems_devices::island::ModbusGridMode<AnyClient>,
    ems_devices::modbus::io::ModbusRelay<AnyClient>,
>;

/// Build the island path of a real site from its validated `[island]` (its devices are
/// connected lazily: until they answer, the sequence sees no read-back and holds).
///
/// # Errors
/// A text naming what the sequence or the device layer refused, or `[island]` without devices.
pub(crate) fn build_modbus(wiring: &crate::config::IslandWiring) -> Result<ModbusIslandLoop, String> {
    use ems_devices::island::{IslandDeviceConfig, IslandDevices, ModbusBreaker, ModbusGridMode};
    use ems_grid::island::{IslandSequencer, LoadCircuit};
    let d = wiring.devices.as_ref().ok_or_else(|| "[island] has no devices".to_owned())?;
    let circuits: Vec<LoadCircuit> = wiring
        .loads
        .iter()
        .map(|(_, p, n)| LoadCircuit { name: "circuit", priority: *p, nominal: *n })
        .collect();
    let seq = IslandSequencer::try_new(wiring.settings, d.rating, &circuits).map_err(|e| e.to_string())?;
    let (command, open, close) = d.breaker_command;
    let breaker = ModbusBreaker::new(d.breaker_module.client()?, command, open, close, d.breaker_position);
    let inverter = ModbusGridMode::new(d.inverter_module.client()?, d.inverter.clone());
    let relays = d
        .relays
        .iter()
        .map(|(m, coil, feedback)| {
            Ok(ems_devices::modbus::io::ModbusRelay::new(m.client()?, *coil, *feedback))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let devices = IslandDevices::new(breaker, inverter, relays, IslandDeviceConfig::default())
        .map_err(|e| e.to_string())?;
    let names = wiring.loads.iter().map(|l| l.0.clone()).collect();
    Ok(ems_runtime::IslandLoop::new(devices, seq, d.rating, names))
}

/// The island path of a gateway run: none, a real site's, or the simulated site's.
#[derive(Debug)]
pub(crate) enum GatewayIsland {
    /// No island.
    None,
    /// A real site's Modbus devices.
    Modbus(Box<ModbusIslandLoop>),
    /// The simulated island plant beside the simulated site.
    #[cfg(feature = "sim")]
    Sim(Box<sim::SimIslandLoop>),
}

impl IslandPath for GatewayIsland {
    async fn read(&mut self, now: Millis, snapshot: &mut Snapshot) {
        match self {
            Self::None => {}
            Self::Modbus(l) => l.read(now, snapshot).await,
            #[cfg(feature = "sim")]
            Self::Sim(l) => l.read(now, snapshot).await,
        }
    }
    fn request(&mut self, now: Millis, request: &IslandRequest) -> IslandRequestOutcome {
        match self {
            Self::None => IslandRequestOutcome::NoIsland,
            Self::Modbus(l) => l.request(now, request),
            #[cfg(feature = "sim")]
            Self::Sim(l) => l.request(now, request),
        }
    }
    fn step(&mut self, now: Millis, snapshot: &Snapshot, state: State) -> Option<GridTieBound> {
        match self {
            Self::None => None,
            Self::Modbus(l) => l.step(now, snapshot, state),
            #[cfg(feature = "sim")]
            Self::Sim(l) => l.step(now, snapshot, state),
        }
    }
    async fn apply(&mut self, now: Millis, stop: bool) {
        match self {
            Self::None => {}
            Self::Modbus(l) => l.apply(now, stop).await,
            #[cfg(feature = "sim")]
            Self::Sim(l) => l.apply(now, stop).await,
        }
    }
    fn status(&self) -> Option<&IslandStatus> {
        match self {
            Self::None => None,
            Self::Modbus(l) => l.status(),
            #[cfg(feature = "sim")]
            Self::Sim(l) => l.status(),
        }
    }
}

/// The API's view of the island path's status.
pub(crate) fn view(s: &IslandStatus) -> IslandView {
    let c = &s.close;
    IslandView {
        live: true,
        at_s: s.at.as_secs_f32(),
        grid_state: s.state.to_string(),
        breaker: s.breaker.map(|b| match b {
            GridTie::Open => "open".to_owned(),
            GridTie::Closed => "closed".to_owned(),
        }),
        breaker_command: match s.breaker_command {
            BreakerCommand::Hold => "hold",
            BreakerCommand::Open => "open",
            BreakerCommand::Close => "close",
        }
        .to_owned(),
        inverter_mode: s.inverter.map(|m| m.to_string()),
        inverter_command: match s.inverter_command {
            InverterCommand::Off => "off",
            InverterCommand::GridFollowing => "grid-following",
            InverterCommand::GridForming => "grid-forming",
            InverterCommand::Synchronise => "synchronise",
        }
        .to_owned(),
        close_conditions: CloseConditionsView {
            grid_healthy: c.grid_healthy,
            no_trip: c.no_trip,
            breaker_open: c.breaker_open,
            synchronised: c.synchronised,
            authorised: c.authorised,
            all: c.all(),
            first_false: c.first_false().map(str::to_owned),
        },
        detection: DetectionView {
            trip: s.detection.trip.map(|t| t.to_string()),
            measured: s.detection.measured,
            rocof_hz_per_s: s.detection.rocof,
            mean_voltage_v: s.detection.mean_voltage.map(|v| v.get()),
            grid_healthy_for_s: s.grid_healthy_for.as_secs_f32(),
        },
        loads: s
            .loads
            .iter()
            .map(|l| IslandLoadView {
                name: l.name.clone(),
                priority: l.priority,
                nominal_w: l.nominal.get(),
                commanded: l.commanded,
                on: l.on,
            })
            .collect(),
        stop_reason: s.stop.map(|r| r.to_string()),
        setpoints_allowed: s.setpoints_allowed,
        power_limit_w: s.power_limit.map(|w| w.get()),
        setpoint_bound: s.bound.map(|b| format!("{} ({:.0} W)", b.reason, b.limit.get())),
        available_w: s.available.get(),
        estop: s.estop,
        recent_events: s
            .recent
            .iter()
            .map(|(at, text)| IslandEventView { at_s: at.as_secs_f32(), text: text.clone() })
            .collect(),
    }
}

#[cfg(feature = "sim")]
pub(crate) mod sim {
    //! The simulated island plant of `--island FILE`.

    use crate::config::IslandWiring;
    use ems_core::snapshot::GridTie;
    use ems_core::{Millis, Percent, WattHours, Watts};
    use ems_devices::island::{
        IslandDeviceConfig, IslandDevices, SharedIsland, SimIslandBreaker, SimIslandInverter, SimIslandRelay,
    };
    use ems_devices::sim::island::{GridCondition, SimIsland};
    use ems_grid::island::{IslandSequencer, LoadCircuit};
    use ems_runtime::IslandLoop;

    /// The island path over the simulated plant.
    pub(crate) type SimIslandLoop = IslandLoop<SimIslandBreaker, SimIslandInverter, SimIslandRelay>;

    /// What the control thread builds the island from (plain data: it crosses threads).
    #[derive(Debug, Clone)]
    pub(crate) struct IslandStart {
        /// The validated `[island]`.
        pub wiring: IslandWiring,
        /// The simulated inverter's rating (it forms the island).
        pub rating: Watts,
        /// The simulated battery.
        pub capacity: WattHours,
        /// Its SOC at start.
        pub soc: Percent,
    }

    /// The plant's physics: the outage schedule and its step.
    pub(crate) struct IslandPhysics {
        plant: SharedIsland,
        outages: Vec<(Millis, Millis)>,
        now: Millis,
    }

    impl IslandPhysics {
        /// Advance the plant by `step` (the grid fails and returns on the schedule).
        pub(crate) fn advance(&mut self, step: Millis) {
            let now = self.now;
            let out = self.outages.iter().any(|(from, until)| now >= *from && now < *until);
            self.plant.with_mut(|p| {
                let lost = matches!(p.grid.condition(), GridCondition::Lost);
                if out && !lost {
                    tracing::warn!(target: "audit", "simulated grid outage begins");
                    p.grid.set(GridCondition::Lost);
                } else if !out && lost {
                    tracing::info!(target: "audit", "simulated grid returns");
                    p.grid.set(GridCondition::Normal);
                }
                p.step(step);
            });
            self.now = now.plus(step);
        }
    }

    /// The island of `--island FILE` on the simulated site `site`.
    ///
    /// # Errors
    /// The file's [`crate::config::ConfigError`].
    pub(crate) fn start(
        file: Option<&std::path::Path>,
        site: &ems_devices::sim::SimSiteConfig,
    ) -> Result<Option<IslandStart>, crate::error::LiveError> {
        let Some(path) = file else { return Ok(None) };
        Ok(Some(IslandStart {
            wiring: crate::config::load_island_file(path)?,
            rating: site.inverter_rating,
            capacity: site.battery_capacity,
            soc: site.initial_soc,
        }))
    }

    impl IslandStart {
        /// Build the plant and the island path (on the control thread: the plant is not Send).
        ///
        /// # Errors
        /// A text naming what the sequence or the device layer refused.
        pub(crate) fn build(self) -> Result<(SimIslandLoop, IslandPhysics), String> {
            let w = self.wiring;
            let circuits: Vec<LoadCircuit> = w
                .loads
                .iter()
                .map(|(_, p, n)| LoadCircuit { name: "circuit", priority: *p, nominal: *n })
                .collect();
            let seq =
                IslandSequencer::try_new(w.settings, self.rating, &circuits).map_err(|e| e.to_string())?;
            let plant_loads: Vec<(&'static str, Watts)> =
                circuits.iter().map(|c| (c.name, c.nominal)).collect();
            let plant = SharedIsland::new(SimIsland::new(
                self.rating,
                self.capacity,
                self.soc,
                GridTie::Closed,
                &plant_loads,
            ));
            let devices = IslandDevices::new(
                plant.breaker(),
                plant.inverter(),
                plant.relays(),
                IslandDeviceConfig::default(),
            )
            .map_err(|e| e.to_string())?;
            let names = w.loads.iter().map(|l| l.0.clone()).collect();
            let path = IslandLoop::new(devices, seq, self.rating, names);
            Ok((path, IslandPhysics { plant, outages: w.outages, now: Millis::ZERO }))
        }
    }
}
