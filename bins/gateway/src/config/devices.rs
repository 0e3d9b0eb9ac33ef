//! `[devices]`: the inverter, battery (BMS), meter and PV on Modbus with their drivers
//! (SunSpec or a register-map profile), or the meter on a P1 port (`driver = "p1"`).

use super::entries::{DeviceEntry, DevicesSection};
use super::errors::{ConfigError, Ctx};
use super::paths::{endpoint, resolve};

/// Every Modbus device of `[devices]`, validated (profiles are loaded and checked too).
pub(super) fn devices(ctx: &Ctx<'_>, d: &DevicesSection) -> Result<(), ConfigError> {
    let mut entries =
        vec![("devices.inverter", &d.inverter), ("devices.battery", &d.battery), ("devices.meter", &d.meter)];
    if let Some(pv) = &d.pv {
        entries.push(("devices.pv", pv));
    }
    for (name, e) in entries {
        validate_device(ctx, name, e)?;
    }
    Ok(())
}

fn validate_device(ctx: &Ctx<'_>, name: &str, e: &DeviceEntry) -> Result<(), ConfigError> {
    if e.driver.get_ref() == "p1" {
        return validate_p1(ctx, name, e);
    }
    if let Some(m) = &e.max_age_ms {
        return Err(ctx.err(
            &format!("{name}.max_age_ms"),
            m,
            "is only used with driver = \"p1\"".to_owned(),
        ));
    }
    endpoint(ctx, &format!("{name}.endpoint"), &e.endpoint)?;
    let unit = *e.unit.get_ref();
    if unit > 247 {
        return Err(ctx.err(&format!("{name}.unit"), &e.unit, format!("{unit} is outside 0..=247")));
    }
    match (e.driver.get_ref().as_str(), &e.profile) {
        ("sunspec", None) => {}
        ("sunspec", Some(p)) => {
            return Err(ctx.err(
                &format!("{name}.profile"),
                p,
                "is only used with driver = \"profile\"".to_owned(),
            ));
        }
        ("profile", Some(p)) => {
            let path = resolve(ctx.file(), p.get_ref());
            if !path.is_file() {
                return Err(ctx.err(
                    &format!("{name}.profile"),
                    p,
                    format!("'{}' does not exist", path.display()),
                ));
            }
            // The profile is validated too; its own error names its file, line, field and value.
            let profile = ems_devices::modbus::profile::Profile::load(&path)
                .map_err(|e| ctx.err(&format!("{name}.profile"), p, format!("invalid profile: {e}")))?;
            let expected = match name {
                "devices.inverter" => "inverter",
                "devices.battery" => "bms",
                "devices.meter" => "meter",
                _ => "pv",
            };
            let kind = format!("{:?}", profile.device()).to_lowercase();
            if kind != expected {
                return Err(ctx.err(
                    &format!("{name}.profile"),
                    p,
                    format!("'{}' describes a {kind}, not a {expected}", path.display()),
                ));
            }
        }
        ("profile", None) => {
            return Err(ctx.err(
                &format!("{name}.profile"),
                &e.driver,
                "is required with driver = \"profile\"".to_owned(),
            ));
        }
        (other, _) => {
            return Err(ctx.err(
                &format!("{name}.driver"),
                &e.driver,
                format!("'{other}' is not one of sunspec, profile, p1"),
            ));
        }
    }
    if let Some(t) = &e.assumed_cell_temp_c {
        if name != "devices.battery" || e.driver.get_ref() != "sunspec" {
            return Err(ctx.err(
                &format!("{name}.assumed_cell_temp_c"),
                t,
                "is only used with [devices.battery] driver = \"sunspec\"".to_owned(),
            ));
        }
        ctx.number(&format!("{name}.assumed_cell_temp_c"), t, -20.0, 45.0, "°C")?;
    }
    if name == "devices.meter" && e.driver.get_ref() == "sunspec" {
        return Err(ctx.err(
            "devices.meter.driver",
            &e.driver,
            "'sunspec' is not supported for meters (no SunSpec meter model is shipped); use driver = \"profile\""
                .to_owned(),
        ));
    }
    if let Some(p) = &e.poll_ms {
        let x = *p.get_ref();
        if name == "devices.inverter" {
            return Err(ctx.err(
                "devices.inverter.poll_ms",
                p,
                "the inverter is read every control cycle (its read-back verifies each set-point); remove poll_ms"
                    .to_owned(),
            ));
        }
        if !(50..=2000).contains(&x) {
            return Err(ctx.err(&format!("{name}.poll_ms"), p, format!("{x} ms is outside 50..=2000 ms")));
        }
    }
    let t = *e.timeout_ms.get_ref();
    if !(10..=60_000).contains(&t) {
        return Err(ctx.err(
            &format!("{name}.timeout_ms"),
            &e.timeout_ms,
            format!("{t} ms is outside 10..=60000 ms"),
        ));
    }
    Ok(())
}

/// `driver = "p1"`: a DSMR smart meter's P1 port (the grid meter only).
fn validate_p1(ctx: &Ctx<'_>, name: &str, e: &DeviceEntry) -> Result<(), ConfigError> {
    if name != "devices.meter" {
        return Err(ctx.err(
            &format!("{name}.driver"),
            &e.driver,
            "'p1' is only for [devices.meter] (a P1 port is a smart meter's)".to_owned(),
        ));
    }
    p1_endpoint(ctx, &e.endpoint)?;
    if let Some(p) = &e.profile {
        return Err(ctx.err("devices.meter.profile", p, "is only used with driver = \"profile\"".to_owned()));
    }
    if let Some(p) = &e.poll_ms {
        return Err(ctx.err(
            "devices.meter.poll_ms",
            p,
            "a P1 meter pushes its telegrams; remove poll_ms (max_age_ms bounds their age)".to_owned(),
        ));
    }
    if e.unit.span() != (0..0) {
        return Err(ctx.err(
            "devices.meter.unit",
            &e.unit,
            "a P1 port has no unit id; remove unit".to_owned(),
        ));
    }
    if let Some(m) = &e.max_age_ms {
        let x = *m.get_ref();
        if !(1000..=30_000).contains(&x) {
            return Err(ctx.err("devices.meter.max_age_ms", m, format!("{x} ms is outside 1000..=30000 ms")));
        }
    }
    let t = *e.timeout_ms.get_ref();
    if !(10..=60_000).contains(&t) {
        return Err(ctx.err(
            "devices.meter.timeout_ms",
            &e.timeout_ms,
            format!("{t} ms is outside 10..=60000 ms"),
        ));
    }
    Ok(())
}

/// The P1 endpoint: `p1-tcp://HOST:PORT`, `HOST:PORT` or `p1-serial:///dev/ttyX[?baud=N]`.
fn p1_endpoint(ctx: &Ctx<'_>, v: &toml::Spanned<String>) -> Result<ems_devices::p1::P1Endpoint, ConfigError> {
    v.get_ref().parse().map_err(|e: ems_devices::p1::P1EndpointError| {
        ctx.err("devices.meter.endpoint", v, format!("'{}': {}: {}", e.url, e.part, e.reason))
    })
}

#[cfg(test)]
mod tests {
    use crate::config::parse;
    use std::path::Path;

    #[test]
    fn assumed_temperature_only_for_a_sunspec_battery_and_no_sunspec_meter() {
        let profile = concat!(env!("CARGO_MANIFEST_DIR"), "/../../devices/profiles/eastron-sdm630.toml");
        let base = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/site.toml"))
            .unwrap()
            .replace("../devices/profiles/eastron-sdm630.toml", profile);
        assert!(parse(Path::new("site.toml"), &base).is_ok());
        let bad = base.replace("assumed_cell_temp_c = 25", "assumed_cell_temp_c = 80");
        let e = parse(Path::new("site.toml"), &bad).unwrap_err().to_string();
        assert!(e.contains("devices.battery.assumed_cell_temp_c") && e.contains("80"), "{e}");
        let bad =
            base.replace("timeout_ms = 500                     # read every control cycle", "poll_ms = 500");
        let e = parse(Path::new("site.toml"), &bad).unwrap_err().to_string();
        assert!(e.contains("devices.inverter.poll_ms") && e.contains("every control cycle"), "{e}");
        let bad = base.replace("poll_ms = 1000", "poll_ms = 5000");
        let e = parse(Path::new("site.toml"), &bad).unwrap_err().to_string();
        assert!(e.contains("devices.meter.poll_ms: 5000 ms is outside 50..=2000 ms"), "{e}");
        let bad = base.replace("driver = \"profile\"\nprofile", "driver = \"sunspec\"\nprofile");
        let e = parse(Path::new("site.toml"), &bad).unwrap_err().to_string();
        assert!(e.contains("devices.meter"), "{e}");
    }

    #[test]
    fn a_p1_meter_and_its_errors_name_field_and_value() {
        let base = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/site.toml"))
            .unwrap();
        let start = base.find("[devices.meter]").unwrap();
        let end = start + base[start + 1..].find("\n[").unwrap() + 1;
        let with = |meter: &str| format!("{}{meter}\n{}", &base[..start], &base[end..]);
        let good = "[devices.meter]\nendpoint = \"p1-tcp://192.168.1.60:8088\"\ndriver = \"p1\"\nmax_age_ms = 3000\n";
        let cfg = parse(Path::new("site.toml"), &with(good)).unwrap();
        assert_eq!(cfg.content.devices.meter.driver.get_ref(), "p1");
        assert!(
            parse(Path::new("site.toml"), &with(&good.replace("p1-tcp://", ""))).is_ok(),
            "bare HOST:PORT"
        );
        let serial = "[devices.meter]\nendpoint = \"p1-serial:///dev/ttyUSB0?baud=9600&parity=E&data_bits=7\"\ndriver = \"p1\"\n";
        assert!(parse(Path::new("site.toml"), &with(serial)).is_ok());
        for (bad, expect) in [
            (good.replace("192.168.1.60:8088", "meter"), "devices.meter.endpoint: 'p1-tcp://meter': port"),
            (good.replace("3000", "100"), "devices.meter.max_age_ms: 100 ms is outside 1000..=30000 ms"),
            (format!("{good}poll_ms = 500\n"), "devices.meter.poll_ms: a P1 meter pushes its telegrams"),
            (format!("{good}unit = 3\n"), "devices.meter.unit: a P1 port has no unit id"),
            (
                format!("{good}profile = \"x.toml\"\n"),
                "devices.meter.profile: is only used with driver = \"profile\"",
            ),
        ] {
            let e = parse(Path::new("site.toml"), &with(&bad)).unwrap_err().to_string();
            assert!(e.contains(expect), "{bad}: {e}");
        }
        // p1 is the meter's only; max_age_ms is p1's only.
        let bad = base.replacen("driver = \"sunspec\"", "driver = \"p1\"", 1);
        let e = parse(Path::new("site.toml"), &bad).unwrap_err().to_string();
        assert!(e.contains("devices.inverter.driver: 'p1' is only for [devices.meter]"), "{e}");
        let profile = concat!(env!("CARGO_MANIFEST_DIR"), "/../../devices/profiles/eastron-sdm630.toml");
        let bad = base
            .replace("../devices/profiles/eastron-sdm630.toml", profile)
            .replace("poll_ms = 1000 ", "max_age_ms = 2000 ");
        let e = parse(Path::new("site.toml"), &bad).unwrap_err().to_string();
        assert!(e.contains("devices.meter.max_age_ms: is only used with driver = \"p1\""), "{e}");
    }
}
