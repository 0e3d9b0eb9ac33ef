//! `ems-gateway grid-test`: run a grid service's prequalification sequence (or a frequency
//! profile) against the simulated battery and inverter, through the real controller; write
//! `response.csv` (`time_s,frequency_hz,setpoint_w,power_w,soc`) and, with `--svk-log DIR`, the
//! TSO's compliance log; evaluate every requirement and print a pass/fail table (`--report
//! json`: `{"pass", "checks": [{"name", "pass", "value", "limit", "margin"}]}`). Exit 0 when
//! every check passes, 1 when one fails, 2 when the run cannot start.

use ems_grid::prequal::{
    builtin, evaluate, names, run, svk, Profile, Report, Run, RunConfig, ServiceUnderTest, Signal,
    SvkLogWriter, SvkRow, SvkService, SvkServiceRow,
};
use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The flags of `grid-test`.
#[derive(Debug, clap::Args)]
pub(crate) struct GridTestArgs {
    /// fcr-n, fcr-d-up, fcr-d-down or ffr.
    #[arg(long)]
    service: String,
    /// The sold capacity C, W.
    #[arg(long)]
    capacity_w: f64,
    /// A frequency profile, CSV `time_s,frequency_hz` (any rate, interpolated).
    #[arg(long, conflicts_with = "sequence", required_unless_present_any = ["sequence", "list"])]
    profile: Option<PathBuf>,
    /// A built-in sequence (`--list` prints them).
    #[arg(long)]
    sequence: Option<String>,
    /// Print the built-in sequences of the service and exit.
    #[arg(long)]
    list: bool,
    /// Where the response CSV goes.
    #[arg(long, required_unless_present = "list")]
    out: Option<PathBuf>,
    /// Also write the TSO compliance log into this directory.
    #[arg(long)]
    svk_log: Option<PathBuf>,
    /// text or json.
    #[arg(long, default_value = "text")]
    report: String,
    /// Gaussian noise on the measured frequency, σ in mHz.
    #[arg(long, default_value_t = 0.0)]
    noise_mhz: f64,
    /// The noise seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Shorten the endurance holds (those longer than 5 min) to this many seconds; the full
    /// test program's length without it.
    #[arg(long)]
    endurance_s: Option<f64>,
    /// The initial SOC, % (default: the sequence's).
    #[arg(long)]
    soc: Option<f64>,
}

fn usage(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("ems-gateway grid-test: {e}");
    ExitCode::from(2)
}

fn signal(args: &GridTestArgs, service: ServiceUnderTest) -> Result<Signal, String> {
    if let Some(path) = &args.profile {
        let text = std::fs::read_to_string(path).map_err(|e| format!("--profile {}: {e}", path.display()))?;
        return Profile::parse(&text)
            .map(Signal::Profile)
            .map_err(|e| format!("--profile {}: {e}", path.display()));
    }
    let name = args.sequence.as_deref().unwrap_or_default();
    let mut seq = builtin(service, name).ok_or_else(|| {
        let known: Vec<&str> = names(service).into_iter().collect();
        format!("--sequence {name:?}: not a {service} sequence; expected one of {}", known.join(", "))
    })?;
    if let Some(s) = args.endurance_s {
        if !s.is_finite() || s < 10.0 {
            return Err(format!("--endurance-s {s}: must be a finite time >= 10 s"));
        }
        seq = seq.with_long_holds(300.0, s);
    }
    Ok(Signal::Sequence(seq))
}

/// Run `grid-test`.
pub(crate) fn run_cli(args: &GridTestArgs) -> ExitCode {
    let service = match args.service.parse::<ServiceUnderTest>() {
        Ok(s) => s,
        Err(e) => return usage(e),
    };
    if args.list {
        for n in names(service) {
            println!("{n}");
        }
        return ExitCode::SUCCESS;
    }
    if args.report != "text" && args.report != "json" {
        return usage(format!("--report {:?}: expected text or json", args.report));
    }
    let signal = match signal(args, service) {
        Ok(s) => s,
        Err(e) => return usage(e),
    };
    let config = RunConfig {
        noise_mhz: args.noise_mhz,
        seed: args.seed,
        initial_soc: args.soc,
        ..RunConfig::new(service, args.capacity_w)
    };
    let result = match run(&config, &signal) {
        Ok(r) => r,
        Err(e) => return usage(e),
    };
    let Some(out) = &args.out else { return usage("--out is required") };
    if let Err(e) = write_response(out, &result) {
        return usage(format!("--out {}: {e}", out.display()));
    }
    if let Some(dir) = &args.svk_log {
        match write_svk(dir, &result, signal.name()) {
            Ok(path) => eprintln!("svk log: {}", path.display()),
            Err(e) => return usage(format!("--svk-log {}: {e}", dir.display())),
        }
    }
    let report = evaluate(&result, &signal);
    let text = if args.report == "json" { json(&report) } else { table(&report, service, signal.name()) };
    println!("{text}");
    if report.pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn write_response(path: &Path, r: &Run) -> std::io::Result<()> {
    let mut w = BufWriter::new(std::fs::File::create(path)?);
    w.write_all(b"time_s,frequency_hz,setpoint_w,power_w,soc\n")?;
    for s in &r.samples {
        writeln!(w, "{:.3},{:.5},{:.1},{:.1},{:.5}", s.t_s, s.frequency_hz, s.setpoint_w, s.power_w, s.soc)?;
    }
    w.flush()
}

fn write_svk(dir: &Path, r: &Run, sequence: &str) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let start_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0));
    let service = match r.config.service {
        ServiceUnderTest::FcrN => SvkService::FcrN,
        ServiceUnderTest::FcrDUp => SvkService::FcrDUp,
        ServiceUnderTest::FcrDDown => SvkService::FcrDDown,
        ServiceUnderTest::Ffr => SvkService::Ffr,
    };
    let stamp = svk::format_datetime(start_ms);
    let name = format!("{}_{}_{}.csv", r.config.service, sequence, stamp.get(..15).unwrap_or(&stamp));
    let path = dir.join(name);
    let file = BufWriter::new(std::fs::File::create(&path)?);
    let mut log = SvkLogWriter::new(file, &[service], true)?;
    let (lo, hi) = ems_grid::prequal::run::LER_SOC_WINDOW;
    for s in &r.samples {
        // Milliseconds of a run (< 2^53): exact.
        #[allow(clippy::cast_possible_truncation)]
        let t_ms = (s.t_s * 1000.0).round() as i64;
        let row = SvkServiceRow {
            available: s.available,
            activated_w: s.activated_w,
            reserve_w: r.config.capacity_w,
        };
        let soc = s.soc * 100.0;
        log.write(&SvkRow {
            unix_ms: start_ms.saturating_add(t_ms),
            power_w: s.power_w,
            frequency_hz: s.measured_hz,
            services: &[row],
            nem: s.nem,
            aem: s.aem,
            pmin_w: s.pmin_w,
            pmax_w: s.pmax_w,
            cap_wh: Some((
                (soc - lo).max(0.0) / 100.0 * r.energy_wh,
                (hi - soc).max(0.0) / 100.0 * r.energy_wh,
            )),
        })?;
    }
    log.finish()?;
    Ok(path)
}

fn json(report: &Report) -> String {
    let checks: Vec<serde_json::Value> = report
        .checks
        .iter()
        .map(|c| {
            let num = |x: f64| if x.is_finite() { serde_json::json!(x) } else { serde_json::Value::Null };
            serde_json::json!({
                "name": c.name,
                "pass": c.pass,
                "value": num(c.value),
                "limit": num(c.limit),
                "margin": num(c.margin),
            })
        })
        .collect();
    serde_json::json!({ "pass": report.pass, "checks": checks }).to_string()
}

fn table(report: &Report, service: ServiceUnderTest, sequence: &str) -> String {
    let mut s = format!("grid-test {service} {sequence}\n");
    let width = report.checks.iter().map(|c| c.name.len()).max().unwrap_or(10);
    let _ = writeln!(
        s,
        "{:<4}  {:<width$}  {:>12}  {:>12}  {:>12}  unit",
        "", "check", "value", "limit", "margin"
    );
    for c in &report.checks {
        let _ = writeln!(
            s,
            "{:<4}  {:<width$}  {:>12.4}  {:>12.4}  {:>12.4}  {}",
            if c.pass { "PASS" } else { "FAIL" },
            c.name,
            c.value,
            c.limit,
            c.margin,
            c.unit
        );
    }
    let failed = report.checks.iter().filter(|c| !c.pass).count();
    let _ = write!(
        s,
        "{}: {} checks, {failed} failed",
        if report.pass { "PASS" } else { "FAIL" },
        report.checks.len()
    );
    s
}
