//! `ems-gateway scan`: what is at an endpoint, and the site-file stanza to use for it.
//!
//! * A Modbus endpoint: the SunSpec model chain (printed as before: `base_address`, `models`),
//!   then every shipped register-map profile and the Phoenix charge controller
//!   (`ems_devices::identify`).
//! * A P1 port (`p1-tcp://…`, `p1-serial://…`): waits up to `--seconds` for a valid telegram.
//! * `--ocpp-listen HOST:PORT`: listens as an OCPP 1.6J central system for `--seconds` and
//!   reports every charge point's BootNotification (vendor, model, serial, firmware). Listen only:
//!   no charging profile is sent.
//!
//! stdout is one JSON object (the SunSpec fields, if any, and `recognised`: one entry per
//! device with its `stanza`); the stanzas are also printed to stderr for the installer to copy.

use ems_devices::evse::ocpp::{CentralSystem, CentralSystemConfig};
use ems_devices::identify::{identify, Recognised, Role};
use ems_devices::modbus::sunspec::ScanResult;
use ems_devices::modbus::transport::{AnyClient, ClientOptions, ModbusEndpoint};
use ems_devices::p1::{P1Endpoint, P1Meter, P1MeterOptions};
use ems_devices::traits::{DeviceError, Meter};
use serde_json::{json, Map, Value};
use std::process::ExitCode;
use std::time::Duration;

/// `ems-gateway scan` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct ScanArgs {
    /// `modbus-tcp://HOST:PORT`, `modbus-rtu:///dev/ttyX?baud=9600`, or a P1 port
    /// (`p1-tcp://HOST:PORT`, `p1-serial:///dev/ttyX`). Optional with `--ocpp-listen`.
    endpoint: Option<String>,
    /// Modbus unit id.
    #[arg(long, default_value_t = 1)]
    unit: u8,
    /// Request timeout in milliseconds.
    #[arg(long, default_value_t = 1000)]
    timeout_ms: u64,
    /// Listen as an OCPP 1.6J central system on HOST:PORT and report the charge points that
    /// send a BootNotification (listen only: nothing is sent to them but the boot answer).
    #[arg(long)]
    ocpp_listen: Option<String>,
    /// How long to listen for OCPP charge points or to wait for a P1 telegram (1..=3600 s).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

/// One recognised device as JSON, with its stanza.
fn entry(r: &Recognised, stanza: &str) -> Value {
    let details: Map<String, Value> =
        r.details.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
    json!({
        "role": r.role.table(),
        "manufacturer": r.manufacturer,
        "model": r.model,
        "profile": r.profile,
        "by": r.by,
        "details": details,
        "stanza": stanza,
    })
}

fn toml_str(s: &str) -> String {
    // A TOML basic string: quotes and backslashes escaped, control characters dropped.
    let mut out = String::from("\"");
    for c in s.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The stanza of a Modbus device recognised by a shipped driver.
fn modbus_stanza(r: &Recognised, endpoint: &str, unit: u8) -> String {
    let head = format!("# {} {} — recognised by {}\n", r.manufacturer, r.model, r.by);
    match (r.role, r.profile) {
        (Role::Evse, _) => format!(
            "{head}# The site file does not configure chargers yet; the driver is ems_devices::evse::phoenix:\n\
             # [[evse]]\n# kind = \"phoenix-em-cp-pp-eth\"\n# endpoint = {}\n# unit = {unit}\n",
            toml_str(endpoint)
        ),
        (role, Some(profile)) => format!(
            "{head}[{}]\nendpoint = {}\nunit = {unit}\ndriver = \"profile\"\n\
             profile = {}   # shipped in devices/profiles/; the path is relative to the site file\n",
            role.table(),
            toml_str(endpoint),
            toml_str(profile)
        ),
        (role, None) => format!("{head}[{}]\nendpoint = {}\nunit = {unit}\n", role.table(), toml_str(endpoint)),
    }
}

/// What the SunSpec model chain says the device is for.
fn sunspec_recognised(scan: &Value, endpoint: &str, unit: u8) -> Vec<Value> {
    let models = scan["models"].as_array().cloned().unwrap_or_default();
    let ids: Vec<u64> = models.iter().filter_map(|m| m["id"].as_u64()).collect();
    let common = models.iter().find(|m| m["id"] == 1).map(|m| m["points"].clone()).unwrap_or(Value::Null);
    let text = |k: &str| common[k].as_str().unwrap_or("?").to_owned();
    let (mn, md, sn) = (text("Mn"), text("Md"), text("SN"));
    let mut out = Vec::new();
    let inverter = ids.iter().any(|id| matches!(id, 101..=103 | 111..=113 | 120..=124 | 701..=704));
    for (present, table, models_named) in [
        (inverter, "devices.inverter", "101–103/111–113/120–124/701–704"),
        (ids.contains(&802), "devices.battery", "802"),
    ] {
        if !present {
            continue;
        }
        let stanza = format!(
            "# {mn} {md} (serial {sn}) — SunSpec models {models_named}\n[{table}]\nendpoint = {}\nunit = {unit}\ndriver = \"sunspec\"\n",
            toml_str(endpoint)
        );
        out.push(json!({
            "role": table,
            "manufacturer": mn,
            "model": md,
            "profile": Value::Null,
            "by": format!("SunSpec common model and models {ids:?}"),
            "details": {"serial_number": sn},
            "stanza": stanza,
        }));
    }
    out
}

async fn scan_modbus(args: &ScanArgs, endpoint: &str) -> Result<Value, String> {
    let ep: ModbusEndpoint = endpoint.parse().map_err(|e| format!("{e}"))?;
    let timeout = Duration::from_millis(args.timeout_ms);
    // One attempt per base address: no reconnect backoff to wait out during a scan.
    let options = ClientOptions { timeout, connect_timeout: timeout, ..ClientOptions::default() };
    let mut client = AnyClient::new(&ep, args.unit, options);
    let sunspec: Result<ScanResult, _> = ems_devices::modbus::sunspec::scan(&mut client).await;
    let mut out = Map::new();
    let mut recognised = Vec::new();
    let sunspec_error = match sunspec {
        Ok(r) => {
            let j = r.to_json();
            recognised.extend(sunspec_recognised(&j, endpoint, args.unit));
            if let Value::Object(m) = j {
                out.extend(m);
            }
            None
        }
        // A dead link answers nothing else either.
        Err(e) if e.kind().is_link() => return Err(format!("{endpoint} unit {}: {e}", args.unit)),
        Err(e) => Some(e.to_string()),
    };
    let (_client, found) = identify(client).await;
    for r in &found {
        recognised.push(entry(r, &modbus_stanza(r, endpoint, args.unit)));
    }
    if recognised.is_empty() && out.is_empty() {
        return Err(format!(
            "{endpoint} unit {}: no SunSpec device ({}) and no shipped profile or charge controller recognised",
            args.unit,
            sunspec_error.unwrap_or_default()
        ));
    }
    if let Some(e) = sunspec_error {
        out.insert("sunspec_error".to_owned(), Value::String(e));
    }
    out.insert("recognised".to_owned(), Value::Array(recognised));
    Ok(Value::Object(out))
}

async fn scan_p1(args: &ScanArgs, endpoint: &str) -> Result<Value, String> {
    let ep: P1Endpoint = endpoint.parse().map_err(|e| format!("{e}"))?;
    let options = P1MeterOptions {
        connect_timeout: Duration::from_millis(args.timeout_ms),
        reconnect_every: Duration::from_millis(500),
        ..P1MeterOptions::default()
    };
    let mut meter = P1Meter::new(ep, options);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.seconds);
    while meter.last_telegram().is_none() && tokio::time::Instant::now() < deadline {
        let _ = meter.read().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let Some(t) = meter.last_telegram() else {
        let why = meter.last_error().unwrap_or("nothing received");
        return Err(format!("{endpoint}: no valid P1 telegram within {} s ({why})", args.seconds));
    };
    let mut details = vec![("header".to_owned(), t.header.clone())];
    for (k, v) in [("equipment_id", &t.equipment_id), ("version", &t.version)] {
        if let Some(v) = v {
            details.push((k.to_owned(), v.clone()));
        }
    }
    if let Some(p) = t.net_power() {
        details.push(("active_power".to_owned(), p.to_string()));
    }
    let usable = ems_devices::p1::reading_of(t);
    let r = Recognised {
        role: Role::Meter,
        manufacturer: t.manufacturer().to_owned(),
        model: t.header.clone(),
        profile: None,
        details,
        by: "a CRC-valid DSMR/ESMR telegram".to_owned(),
    };
    let caveat = match &usable {
        Ok(_) => String::new(),
        Err(why) => format!("# NOTE: not usable as the grid meter: {why}\n"),
    };
    let stanza = format!(
        "# P1 smart meter {} (manufacturer flag {}){}\n{caveat}[devices.meter]\nendpoint = {}\ndriver = \"p1\"\n",
        t.header,
        t.manufacturer(),
        t.equipment_id.as_ref().map(|e| format!(", equipment id {e}")).unwrap_or_default(),
        toml_str(endpoint)
    );
    Ok(json!({ "recognised": [entry(&r, &stanza)] }))
}

async fn listen_ocpp(addr: &str, seconds: u64) -> Result<Vec<Value>, String> {
    let sock: std::net::SocketAddr = addr
        .parse()
        .map_err(|e| format!("--ocpp-listen '{addr}' is not HOST:PORT with an IP address: {e}"))?;
    let config = CentralSystemConfig { install_fallback: false, ..CentralSystemConfig::default() };
    let cs = CentralSystem::bind(sock, config).await.map_err(|e| format!("--ocpp-listen {addr}: {e}"))?;
    eprintln!(
        "ems-gateway scan: OCPP 1.6J charge points may connect to ws://{}/<id> for {seconds} s",
        cs.local_addr()
    );
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let mut out = Vec::new();
    for id in cs.ids() {
        let Some(point) = cs.charge_point(&id) else { continue };
        let st = point.state();
        let Some((vendor, model)) = st.vendor_model.clone() else { continue };
        let serial = st.serial.clone().unwrap_or_else(|| "?".to_owned());
        let stanza = format!(
            "# OCPP 1.6J charge point {} ({vendor} {model}, serial {serial}{}) connected as ws://{}/{id}\n\
             # The site file does not configure chargers yet; the central system is ems_devices::evse::ocpp:\n\
             # [[evse]]\n# kind = \"ocpp\"\n# id = {}\n",
            toml_str(&id),
            st.firmware.as_ref().map(|f| format!(", firmware {f}")).unwrap_or_default(),
            cs.local_addr(),
            toml_str(&id)
        );
        out.push(json!({
            "role": "evse",
            "manufacturer": vendor,
            "model": model,
            "profile": Value::Null,
            "by": "OCPP BootNotification",
            "details": {"id": id, "serial_number": st.serial, "firmware": st.firmware},
            "stanza": stanza,
        }));
    }
    Ok(out)
}

async fn scan(args: &ScanArgs) -> Result<Value, String> {
    let mut out = match args.endpoint.as_deref() {
        Some(e) if e.starts_with("p1-") => scan_p1(args, e).await?,
        Some(e) => scan_modbus(args, e).await?,
        None => json!({ "recognised": [] }),
    };
    if let Some(addr) = &args.ocpp_listen {
        let points = listen_ocpp(addr, args.seconds).await?;
        if let Some(list) = out["recognised"].as_array_mut() {
            list.extend(points);
        }
    }
    Ok(out)
}

/// Run `ems-gateway scan`.
pub(crate) fn run(args: &ScanArgs) -> ExitCode {
    let fail = |msg: String| {
        eprintln!("ems-gateway scan: {msg}");
        ExitCode::FAILURE
    };
    if args.timeout_ms == 0 {
        return fail("--timeout-ms = 0 must be > 0".to_owned());
    }
    if !(1..=3600).contains(&args.seconds) {
        return fail(format!("--seconds = {} is outside 1..=3600", args.seconds));
    }
    if args.endpoint.is_none() && args.ocpp_listen.is_none() {
        return fail("give an endpoint to scan, or --ocpp-listen HOST:PORT".to_owned());
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return fail(format!("runtime: {e}")),
    };
    let result = match runtime.block_on(scan(args)) {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    let stanzas: Vec<&str> =
        result["recognised"].as_array().into_iter().flatten().filter_map(|r| r["stanza"].as_str()).collect();
    if stanzas.is_empty() {
        eprintln!("ems-gateway scan: no device recognised");
    } else {
        eprintln!("ems-gateway scan: suggested site-file stanzas:\n\n{}", stanzas.join("\n"));
    }
    match serde_json::to_string_pretty(&result) {
        Ok(j) => {
            use std::io::Write as _;
            // A closed pipe (`| head`) is not an error of the scan.
            let _ = std::io::stdout().lock().write_all(format!("{j}\n").as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("cannot encode: {e}")),
    }
}
