//! `ems-gateway`: the reference gateway binary.
//!
//! With no arguments it runs the built-in simulated site in real time: BOOT → IDLE → RUNNING in
//! charge-only mode, a status line every second, Ctrl-C for a graceful shutdown with the state
//! persisted. `simulate` runs the same control core against the simulated site as fast as
//! possible and prints a summary (the `ems-sim` crate's, shared with the `ems-sim` binary).
//!
//! Both need the simulated devices and the test rig, behind the default `sim` feature; a
//! production build (`--no-default-features`) links neither and runs real sites only
//! (`run --config FILE`).
#![forbid(unsafe_code)]

mod api;
mod compliance;
mod config;
mod economics;
mod error;
mod grid_services;
mod grid_test;
mod island;
mod live;
mod optimize;
mod rules_cmd;
mod scan;
#[cfg(feature = "sim")]
mod simsite;
mod site;
mod store;
mod view;

use clap::{Parser, Subcommand};
use live::LiveArgs;
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

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Find what is at an endpoint and print a suggested site-file stanza for each device
    /// recognised: a SunSpec device (its model chain as JSON, as before), the shipped
    /// register-map profiles and the Phoenix charge controller, a P1 smart meter
    /// (`p1-tcp://…`), and with `--ocpp-listen HOST:PORT` the OCPP charge points that boot.
    Scan(scan::ScanArgs),
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
    /// Operator rules: `rules check FILE --at TIMESTAMP` prints which rules fire and which wins.
    Rules(rules_cmd::RulesArgs),
    /// Grid-service prequalification: run a test sequence against the simulated unit, write the
    /// response CSV (and the TSO log) and evaluate every requirement.
    GridTest(grid_test::GridTestArgs),
    /// Run the simulated site as fast as possible and print a summary (the same as `ems-sim
    /// simulate`).
    #[cfg(feature = "sim")]
    Simulate(ems_sim::SimulateArgs),
    /// Not in this build: `ems-sim simulate` has the simulator.
    #[cfg(not(feature = "sim"))]
    #[command(hide = true)]
    Simulate {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
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
        Some(Cmd::Scan(args)) => scan::run(&args),
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
        Some(Cmd::Rules(args)) => rules_cmd::run(&args),
        Some(Cmd::GridTest(args)) => grid_test::run_cli(&args),
        #[cfg(feature = "sim")]
        Some(Cmd::Simulate(args)) => ems_sim::simulate(&args, "ems-gateway simulate"),
        #[cfg(not(feature = "sim"))]
        Some(Cmd::Simulate { .. }) => {
            eprintln!(
                "ems-gateway simulate: this build has no simulator (built without the `sim` feature); use `ems-sim simulate`"
            );
            ExitCode::FAILURE
        }
        None => simulated_site(&cli.live),
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
            for line in c.pack.describe() {
                println!("{line}");
            }
            println!("graceful shutdown: zero and open forced after {} s", c.shutdown_timeout.get() / 1000);
            if let Some(g) = &c.grid_services {
                println!(
                    "grid services ({}): {}; fast path every {} ms, frequency max age {} ms",
                    g.parameter_set,
                    g.summary.join(", "),
                    g.fast_period.get(),
                    g.max_age.get()
                );
            }
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
            match &c.economics {
                Some(e) => {
                    let p = &e.problem;
                    let sources: Vec<&str> = e.prices.iter().map(|s| s.kind.as_str()).collect();
                    println!(
                        "economics: tariff '{}' ({}), prices from {}, re-plan every {} min over {} h, planner battery {:.0} Wh, charge {:.0} W / discharge {:.0} W, SOC {:.0}-{:.0} %, rules {}, a plan acted on when it beats self-consumption by {:.2} (PV forecast × {:.2}, load × {:.2})",
                        e.tariff.name(),
                        e.time_zone.iana_name().unwrap_or("fixed offset"),
                        if sources.is_empty() { "the tariff alone".to_owned() } else { sources.join(", ") },
                        e.replan.as_mins(),
                        e.horizon.as_hours(),
                        p.capacity_wh.get(),
                        p.charge_max_w.get(),
                        p.discharge_max_w.get(),
                        p.soc_min.get() * 100.0,
                        p.soc_max.get() * 100.0,
                        e.rules.as_ref().map_or_else(|| "over the API only".to_owned(), |r| r.display().to_string()),
                        e.plan_margin.get(),
                        e.pv_factor.get(),
                        e.load_factor.get(),
                    );
                }
                None => println!("economics: off (no [economics]: the mode alone)"),
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ems-gateway check-config: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The default command: the built-in simulated site in real time.
#[cfg(feature = "sim")]
fn simulated_site(args: &LiveArgs) -> ExitCode {
    init_tracing();
    match simsite::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ems-gateway: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A production build has no simulated site to run.
#[cfg(not(feature = "sim"))]
fn simulated_site(_: &LiveArgs) -> ExitCode {
    eprintln!(
        "ems-gateway: this build has no simulated site (built without the `sim` feature); use `ems-gateway run --config FILE`"
    );
    ExitCode::FAILURE
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
