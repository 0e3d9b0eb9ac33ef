//! `ems-sim`: the simulated site as fast as possible (`simulate`), scenario files
//! (`simulate --scenario FILE`) and the economics run (`simulate --tariff FILE`), kept out of
//! the production gateway (`ems-gateway` without its `sim` feature links none of it).
#![forbid(unsafe_code)]
// Mirrors the lints the workspace is about to enable in the root `Cargo.toml`; removed from
// here once `[workspace.lints]` carries them.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// The EMS test rig: simulated site, scenarios, economics.
#[derive(Debug, Parser)]
#[command(name = "ems-sim", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the simulated site as fast as possible and print a summary.
    Simulate(ems_sim::SimulateArgs),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Cmd::Simulate(args) => ems_sim::simulate(&args, "ems-sim simulate"),
    }
}
