//! `ems-gateway rules check FILE --at TIMESTAMP [measurements]`: which operator rules fire at an
//! instant and which one wins (the rules engine of `ems-strategies`, evaluated once, with no
//! latch history). Prints the local date's day type, one line per rule and `winner: NAME
//! (ACTION)` or `winner: none`; `--json` prints the decision as JSON. A file that cannot be used
//! exits with 2 and the error naming the field and the value.

use ems_core::{Percent, WattHours, Watts};
use ems_strategies::rules::{Location, Outcome, RuleContext, RuleEngine, RuleSet};
use ems_strategies::Price;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use std::path::PathBuf;
use std::process::ExitCode;

/// `rules` subcommands.
#[derive(Debug, clap::Args)]
pub(crate) struct RulesArgs {
    #[command(subcommand)]
    command: RulesCmd,
}

#[derive(Debug, clap::Subcommand)]
enum RulesCmd {
    /// Evaluate a rules file at an instant: which rules fire, which one wins and why.
    Check(CheckArgs),
}

/// The flags of `rules check` (file values are defaults for location and time zone).
#[derive(Debug, clap::Args)]
struct CheckArgs {
    /// The rules file (TOML, see examples/rules.toml).
    file: PathBuf,
    /// The instant, RFC 3339 with an offset (`2026-05-05T18:30:00+02:00`).
    #[arg(long)]
    at: String,
    /// The current import price, currency per kWh.
    #[arg(long, allow_negative_numbers = true)]
    price: Option<f64>,
    /// The battery's SOC, percent.
    #[arg(long)]
    soc: Option<f32>,
    /// PV − load, W (`+` surplus).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pv_surplus_w: f32,
    /// Grid power, W (`+` import / `−` export).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    grid_import_w: f32,
    /// The battery's usable capacity, Wh (for CHARGE_TO).
    #[arg(long)]
    capacity_wh: Option<f32>,
    /// The largest charge power, W (caps CHARGE_TO).
    #[arg(long, default_value_t = 5000.0)]
    max_charge_w: f32,
    /// The site's latitude (overrides the file's).
    #[arg(long, allow_negative_numbers = true)]
    latitude: Option<f64>,
    /// The site's longitude (overrides the file's).
    #[arg(long, allow_negative_numbers = true)]
    longitude: Option<f64>,
    /// The site's IANA time zone (overrides the file's; UTC when neither gives one).
    #[arg(long)]
    time_zone: Option<String>,
    /// Print the decision as JSON.
    #[arg(long)]
    json: bool,
}

/// Run `rules …`; exit 2 for a file or a flag that cannot be used.
pub(crate) fn run(args: &RulesArgs) -> ExitCode {
    match &args.command {
        RulesCmd::Check(c) => match check(c) {
            Ok(text) => {
                use std::io::Write as _;
                // A closed pipe (`| head`) is not an error of the check.
                let _ = std::io::stdout().lock().write_all(text.as_bytes());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ems-gateway rules check: {e}");
                ExitCode::from(2)
            }
        },
    }
}

fn flag<T, E: std::fmt::Display>(
    name: &str,
    v: impl std::fmt::Display,
    r: Result<T, E>,
) -> Result<T, String> {
    r.map_err(|e| format!("--{name} = {v}: {e}"))
}

fn context(c: &CheckArgs, at: Timestamp) -> Result<RuleContext, String> {
    let price = c.price.map(|p| flag("price", p, Price::checked("price", p))).transpose()?;
    let soc = c.soc.map(|s| flag("soc", s, Percent::try_new(s))).transpose()?;
    let capacity = c.capacity_wh.map(|x| flag("capacity-wh", x, WattHours::try_new(x))).transpose()?;
    Ok(RuleContext {
        at,
        price,
        soc,
        pv_surplus: flag("pv-surplus-w", c.pv_surplus_w, Watts::try_new(c.pv_surplus_w))?,
        grid_import: flag("grid-import-w", c.grid_import_w, Watts::try_new(c.grid_import_w))?,
        capacity,
        max_charge: flag("max-charge-w", c.max_charge_w, Watts::try_new(c.max_charge_w))?,
    })
}

fn check(c: &CheckArgs) -> Result<String, String> {
    let at: Timestamp = flag("at", &c.at, c.at.parse::<Timestamp>())?;
    let ctx = context(c, at)?;
    let file = c.file.display();
    let text = std::fs::read_to_string(&c.file).map_err(|e| format!("{file}: {e}"))?;
    let mut set = RuleSet::from_toml(&text).map_err(|e| format!("{file}: {e}"))?;
    if let Some(z) = &c.time_zone {
        set.set_time_zone(flag("time-zone", z, TimeZone::get(z))?);
    }
    match (c.latitude, c.longitude) {
        (Some(lat), Some(lon)) => {
            set.set_location(Location::try_new(lat, lon).map_err(|e| format!("--{e}"))?)
        }
        (None, None) => {}
        _ => return Err("--latitude and --longitude go together".to_owned()),
    }
    let mut engine = RuleEngine::new(set).map_err(|e| format!("{file}: {e}"))?;
    let d = engine.evaluate(&ctx);
    if c.json {
        return Ok(format!("{}\n", d.to_json()));
    }
    let zone = engine.time_zone().iana_name().unwrap_or("UTC");
    let mut out = format!(
        "local time: {} ({zone})\nday: {} {}, {}\n",
        d.local.strftime("%Y-%m-%d %H:%M %Z"),
        d.local.date(),
        d.local.strftime("%A"),
        d.day
    );
    for r in &d.reasons {
        let latched = r.latched.as_ref().map_or_else(String::new, |l| format!(" [latched {l}]"));
        let line = match &r.outcome {
            Outcome::Disabled => "not fired (disabled)".to_owned(),
            Outcome::NotFired { why } => format!("not fired ({why})"),
            Outcome::NoEffect { why } => format!("fires, no effect ({why})"),
            Outcome::Won { action } => format!("fires, wins: {action}"),
            Outcome::Lost { action, to, why } => format!("fires ({action}), loses to \"{to}\": {why}"),
        };
        out.push_str(&format!("rule {} \"{}\": {line}{latched}\n", r.index, r.name));
    }
    match &d.winner {
        Some((name, action)) => out.push_str(&format!("winner: {name} ({action})\n")),
        None => out.push_str("winner: none\n"),
    }
    Ok(out)
}
