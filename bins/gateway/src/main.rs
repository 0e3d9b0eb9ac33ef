//! `ems-gateway`: the reference gateway binary.
//!
//! With no arguments it runs the built-in simulated site in real time: BOOT → IDLE → RUNNING in
//! charge-only mode, a status line every second, Ctrl-C for a graceful shutdown with the state
//! persisted. `simulate` runs the same control core against the simulated site as fast as
//! possible and prints a summary.
#![forbid(unsafe_code)]

mod api;
mod config;
mod live;
mod optimize;
mod site;
mod store;

use clap::{Parser, Subcommand, ValueEnum};
use ems_testing::faults::FaultPlan;
use std::path::PathBuf;
use std::process::ExitCode;

/// Safety-first energy management gateway.
#[derive(Debug, Parser)]
#[command(name = "ems-gateway", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    #[command(flatten)]
    live: LiveArgs,
}

/// Options of the real-time run (the default command).
#[derive(Debug, clap::Args)]
struct LiveArgs {
    /// Run N times faster than real time.
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Stop (gracefully) after this many simulated seconds; runs until Ctrl-C if not given.
    #[arg(long)]
    duration: Option<f64>,
    /// Control cycle period in milliseconds.
    #[arg(long, default_value_t = 100)]
    cycle_ms: u64,
    /// Where the state machine is persisted.
    #[arg(long, default_value = "ems-gateway.state")]
    state_file: PathBuf,
    /// Seed for the simulated site.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Local time of day (hour, 0-23) at which the simulated site starts; 10 so that a first
    /// run shows the battery taking PV surplus.
    #[arg(long, default_value_t = 10)]
    start_hour: u8,
    /// Simulated day of the year to start on (1 = 1 January; default 152 = 1 June).
    #[arg(long, default_value_t = 152)]
    start_day: u16,
    /// Operator reason for a manual reset (STOPPED) or acknowledge (ERROR) at start-up, when the
    /// persisted state needs one.
    #[arg(long)]
    reset_reason: Option<String>,
    /// Where the local REST API listens (`HOST:PORT`; port 0 picks a free one), or `off`. An
    /// admin token is generated at start and printed once as `admin token: <token>`.
    #[arg(long, default_value = "127.0.0.1:8080")]
    api_listen: Option<String>,
    /// SQLite database for the API's audit log, telemetry history and schedules (kept across
    /// restarts); in memory when not given.
    #[arg(long)]
    api_db: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Find a SunSpec device's base address, walk its model chain and print every decoded point as
    /// JSON (what an installer runs first on a new site).
    Scan {
        /// `modbus-tcp://HOST:PORT` or `modbus-rtu:///dev/ttyX?baud=9600`.
        endpoint: String,
        /// Modbus unit id.
        #[arg(long, default_value_t = 1)]
        unit: u8,
        /// Request timeout in milliseconds.
        #[arg(long, default_value_t = 1000)]
        timeout_ms: u64,
    },
    /// Run a real site described by a configuration file (Modbus devices, GPIO relays and E-stop).
    Run {
        /// The site TOML file.
        #[arg(long)]
        config: PathBuf,
        /// Stop (gracefully) after this many seconds; runs until Ctrl-C if not given.
        #[arg(long)]
        duration: Option<u64>,
        /// Operator reason for a manual reset (STOPPED) or acknowledge (ERROR) at start-up.
        #[arg(long)]
        reset_reason: Option<String>,
    },
    /// Generate an API token: prints the token once (give it to its holder) and the
    /// `[[api.tokens]]` entry for the site file, which holds only its SHA-256.
    NewToken {
        /// Who will hold it (appears in the audit log).
        #[arg(long)]
        name: String,
        /// viewer, operator, provider or admin.
        #[arg(long)]
        role: String,
    },
    /// Validate a site configuration file without starting anything.
    CheckConfig {
        /// The site TOML file.
        file: PathBuf,
    },
    /// Plan the battery at least cost over a day (or any horizon) from the optimizer CSV
    /// (`timestamp,pv_w,load_w,import_price,export_price`) and print the plan as JSON.
    Optimize(optimize::OptimizeArgs),
    /// Run the simulated site as fast as possible and print a summary.
    Simulate {
        /// Simulated days (required unless --scenario is given; a scenario has its own duration).
        #[arg(long, required_unless_present = "scenario")]
        days: Option<u32>,
        /// Seed for the site's noise and the fault plan.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Report format.
        #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
        report: ReportFormat,
        /// Fault injection plan: none, standard or random.
        #[arg(long, default_value = "none")]
        faults: String,
        /// Control and physics step in milliseconds.
        #[arg(long, default_value_t = 1000)]
        step_ms: u64,
        /// What the battery is asked to do: charge-only (the configured charge-only mode all day)
        /// or daily-cycle (charge from PV surplus 06:00-17:00, discharge 3 kW at night, so the
        /// whole SOC window and the low-side limits are exercised). Default: daily-cycle with
        /// --faults random (the soak), charge-only otherwise.
        #[arg(long)]
        duty: Option<String>,
        /// Run a scenario file (TOML timeline of faults with expectations) instead of --days.
        #[arg(long, conflicts_with_all = ["days", "faults"])]
        scenario: Option<PathBuf>,
        /// Economics: bill the site under this tariff file (examples/tariffs/*.toml) and compare
        /// the EMS (day-ahead plan re-planned every 15 min) with a no-battery and a
        /// self-consumption-only baseline, per month (the reference home of docs/ECONOMICS.md).
        #[arg(long, conflicts_with_all = ["scenario", "faults", "duty", "step_ms"])]
        tariff: Option<PathBuf>,
        /// Economics: the day of the year to start on (1 = 1 January).
        #[arg(long, default_value_t = 1, requires = "tariff")]
        start_day: u16,
        /// Economics: PV peak power of the simulated home, kWp.
        #[arg(long, default_value_t = 3.0, requires = "tariff")]
        pv_kwp: f64,
        /// Economics: usable battery capacity, kWh.
        #[arg(long, default_value_t = 10.0, requires = "tariff")]
        battery_kwh: f64,
        /// Economics: annual household consumption, kWh.
        #[arg(long, default_value_t = 4000.0, requires = "tariff")]
        annual_load_kwh: f64,
        /// Economics: the planner's battery wear cost per kWh of AC throughput (charge +
        /// discharge); it keeps the plan from cycling for margins thinner than the wear.
        #[arg(long, requires = "tariff")]
        degradation_cost: Option<f64>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ReportFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Cmd::CheckConfig { file }) => check_config(&file),
        Some(Cmd::NewToken { name, role }) => new_token(&name, &role),
        Some(Cmd::Run { config, duration, reset_reason }) => {
            init_tracing();
            let cfg = match config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("ems-gateway run: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match site::run(&cfg, duration.map(ems_core::Millis::from_secs), reset_reason) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("ems-gateway run: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Cmd::Scan { endpoint, unit, timeout_ms }) => scan(&endpoint, unit, timeout_ms),
        Some(Cmd::Optimize(args)) => match optimize::run(&args) {
            Ok(json) => {
                out(&format!("{json}\n"));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ems-gateway optimize: {e}");
                ExitCode::FAILURE
            }
        },
        Some(Cmd::Simulate { scenario: Some(path), report, .. }) => scenario(&path, report),
        Some(Cmd::Simulate {
            days,
            seed,
            report,
            tariff: Some(tariff),
            start_day,
            pv_kwp,
            battery_kwh,
            annual_load_kwh,
            degradation_cost,
            ..
        }) => {
            let home = Home { start_day, pv_kwp, battery_kwh, annual_load_kwh, degradation_cost };
            economics(days.unwrap_or(0), seed, report, &tariff, home)
        }
        Some(Cmd::Simulate {
            days,
            seed,
            report,
            faults,
            step_ms,
            duty,
            scenario: None,
            tariff: None,
            ..
        }) => simulate(days.unwrap_or(0), seed, report, &faults, step_ms, duty.as_deref()),
        None => {
            init_tracing();
            match live::run(&cli.live) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("ems-gateway: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn scan(endpoint: &str, unit: u8, timeout_ms: u64) -> ExitCode {
    use ems_devices::modbus::transport::{AnyClient, ClientOptions, ModbusEndpoint};
    let ep: ModbusEndpoint = match endpoint.parse() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("ems-gateway scan: {e}");
            return ExitCode::FAILURE;
        }
    };
    if timeout_ms == 0 {
        eprintln!("ems-gateway scan: --timeout-ms = 0 must be > 0");
        return ExitCode::FAILURE;
    }
    let timeout = std::time::Duration::from_millis(timeout_ms);
    // One attempt per base address: no reconnect backoff to wait out during a scan.
    let options = ClientOptions { timeout, connect_timeout: timeout, ..ClientOptions::default() };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ems-gateway scan: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let mut client = AnyClient::new(&ep, unit, options);
        ems_devices::modbus::sunspec::scan(&mut client).await
    });
    match result {
        Ok(r) => match serde_json::to_string_pretty(&r.to_json()) {
            Ok(j) => {
                out(&format!("{j}\n"));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ems-gateway scan: cannot encode: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("ems-gateway scan: {endpoint} unit {unit}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn new_token(name: &str, role: &str) -> ExitCode {
    if !["viewer", "operator", "provider", "admin"].contains(&role) {
        eprintln!("ems-gateway new-token: --role = {role} is not one of viewer, operator, provider, admin");
        return ExitCode::FAILURE;
    }
    if name.trim().is_empty() || name.contains(['"', '\\', '\n']) {
        eprintln!("ems-gateway new-token: --name = {name:?} must be a non-empty name without quotes");
        return ExitCode::FAILURE;
    }
    match ems_api::auth::generate_admin_token() {
        Ok(token) => {
            let hash = ems_api::auth::hash_token(&token);
            out(&format!(
                "token: {token}\n# give the token to its holder (it is not stored); put this in the site file:\n[[api.tokens]]\nname = \"{name}\"\nrole = \"{role}\"\nsha256 = \"{hash}\"\n"
            ));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ems-gateway new-token: random source: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(file: &std::path::Path) -> ExitCode {
    match config::load(file) {
        Ok(c) => {
            let d = &c.content.devices;
            println!(
                "{}: ok — site '{}', cycle {} ms, mode {}, inverter {} ({}), battery {} ({}), meter {} ({})",
                file.display(),
                c.content.site.name,
                c.controller.cycle.get(),
                c.controller.mode,
                d.inverter.endpoint.get_ref(),
                d.inverter.driver.get_ref(),
                d.battery.endpoint.get_ref(),
                d.battery.driver.get_ref(),
                d.meter.endpoint.get_ref(),
                d.meter.driver.get_ref(),
            );
            println!("graceful shutdown: zero and open forced after {} s", c.shutdown_timeout.get() / 1000);
            match &c.api {
                Some(a) => println!(
                    "api: {} ({} tokens, {} providers), at most {} connections, headers within {} s, idle {} s, /metrics {}, {} requests/min per token and {} per address, audit log {} days / {} entries, history {} days",
                    a.listen,
                    a.tokens.len(),
                    a.providers.len(),
                    a.max_connections,
                    a.header_read_timeout.as_secs(),
                    a.idle_timeout.as_secs(),
                    if a.metrics_public { "public" } else { "needs a token" },
                    a.rate_limit_per_minute,
                    a.ip_rate_limit_per_minute,
                    a.audit_max_age.as_secs() / 86_400,
                    a.audit_max_rows,
                    a.history_max_age.as_secs() / 86_400,
                ),
                None => println!("api: off"),
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ems-gateway check-config: {e}");
            ExitCode::FAILURE
        }
    }
}

fn scenario(path: &std::path::Path, format: ReportFormat) -> ExitCode {
    match ems_testing::run_scenario_file(path) {
        Ok(r) => {
            if !print_report(format, &r, || r.to_json()) {
                return ExitCode::FAILURE;
            }
            if r.passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            }
        }
        Err(e) => {
            eprintln!("ems-gateway simulate: {e}");
            ExitCode::FAILURE
        }
    }
}

fn simulate(
    days: u32,
    seed: u64,
    format: ReportFormat,
    faults: &str,
    step_ms: u64,
    duty: Option<&str>,
) -> ExitCode {
    if days == 0 {
        eprintln!("ems-gateway simulate: --days must be at least 1 (got 0)");
        return ExitCode::FAILURE;
    }
    let plan = match FaultPlan::parse(faults) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("ems-gateway simulate: {e}");
            return ExitCode::FAILURE;
        }
    };
    let duty = match duty {
        Some(d) => match ems_testing::Duty::parse(d) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("ems-gateway simulate: {e}");
                return ExitCode::FAILURE;
            }
        },
        None if plan == FaultPlan::Random => ems_testing::Duty::DAILY_CYCLE,
        None => ems_testing::Duty::Configured,
    };
    let mut opts = ems_testing::RunOptions::days(days, seed);
    opts.faults = plan;
    opts.duty = duty;
    opts.step = ems_core::Millis::new(step_ms);
    match ems_testing::run(&opts) {
        Ok(report) => finish(format, &report, report.violation_count, || report.to_json()),
        Err(e) => {
            eprintln!("ems-gateway simulate: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Print a simulation report; exit 2 if it counted any safety violation.
fn finish(
    format: ReportFormat,
    report: &impl std::fmt::Display,
    violations: u64,
    json: impl FnOnce() -> Result<String, serde_json::Error>,
) -> ExitCode {
    if !print_report(format, report, json) {
        return ExitCode::FAILURE;
    }
    if violations == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

/// The simulated home of `simulate --tariff`.
#[derive(Debug, Clone, Copy)]
struct Home {
    start_day: u16,
    pv_kwp: f64,
    battery_kwh: f64,
    annual_load_kwh: f64,
    degradation_cost: Option<f64>,
}

impl Home {
    fn apply(self, opts: &mut ems_testing::economics::EconomicsOptions) -> Result<(), String> {
        let check = |flag: &str, v: f64, lo: f64, hi: f64| {
            if v.is_finite() && (lo..=hi).contains(&v) {
                Ok(v)
            } else {
                Err(format!("--{flag} = {v} must be {lo}..={hi}"))
            }
        };
        let pv = check("pv-kwp", self.pv_kwp, 0.0, 100.0)?;
        let bat = check("battery-kwh", self.battery_kwh, 1.0, 200.0)?;
        let load = check("annual-load-kwh", self.annual_load_kwh, 100.0, 200_000.0)?;
        // Narrowing to the f32 unit types: the ranges above keep the values exact enough.
        #[allow(clippy::cast_possible_truncation)]
        let f = |x: f64| (x * 1000.0) as f32;
        opts.site.pv_peak = ems_core::Watts::new(f(pv));
        opts.site.battery_capacity = ems_core::WattHours::new(f(bat));
        opts.planner.capacity_wh = opts.site.battery_capacity;
        opts.site.annual_load = ems_core::WattHours::new(f(load));
        opts.start_day = self.start_day;
        if let Some(c) = self.degradation_cost {
            let c = check("degradation-cost", c, 0.0, 10.0)?;
            opts.planner.degradation_cost = ems_strategies::Price::new(c);
        }
        Ok(())
    }
}

fn economics(days: u32, seed: u64, format: ReportFormat, tariff: &std::path::Path, home: Home) -> ExitCode {
    let tariff = match ems_strategies::tariff::Tariff::load(tariff) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("ems-gateway simulate: --tariff {}: {e}", tariff.display());
            return ExitCode::FAILURE;
        }
    };
    let mut opts = ems_testing::economics::EconomicsOptions::reference_home(tariff, days, seed);
    if let Err(e) = home.apply(&mut opts) {
        eprintln!("ems-gateway simulate: {e}");
        return ExitCode::FAILURE;
    }
    match ems_testing::economics::run_economics(&opts) {
        Ok(report) => finish(format, &report, report.violations, || serde_json::to_string_pretty(&report)),
        Err(e) => {
            eprintln!("ems-gateway simulate: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Print a report; a closed pipe (`| head`) ends the output quietly instead of panicking.
fn out(text: &str) {
    use std::io::Write as _;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

fn init_tracing() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
}

/// Print a report as text or JSON; `false` if it could not be encoded.
fn print_report(
    format: ReportFormat,
    text: &impl std::fmt::Display,
    json: impl FnOnce() -> Result<String, serde_json::Error>,
) -> bool {
    match format {
        ReportFormat::Text => out(&text.to_string()),
        ReportFormat::Json => match json() {
            Ok(j) => out(&format!("{j}\n")),
            Err(e) => {
                eprintln!("ems-gateway simulate: cannot encode report: {e}");
                return false;
            }
        },
    }
    true
}
