//! `[devices.contactor]` and `[devices.estop]`: relays and the E-stop loop on Linux GPIO lines or
//! a Modbus I/O module, and the check that no line or bit has two roles.

use super::entries::{ContactorEntry, DevicesSection, EStopEntry};
use super::errors::{ConfigError, Ctx};
use ems_devices::estop::ActiveLevel;
use ems_devices::modbus::io::IoPoint;
use ems_devices::modbus::transport::ModbusEndpoint;
use ems_devices::modbus::{RegisterAddress, RegisterKind};
use toml::Spanned;

/// A Modbus I/O module connection, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IoModule {
    /// Endpoint URL.
    pub endpoint: String,
    /// Unit id.
    pub unit: u8,
    /// Request timeout, ms.
    pub timeout_ms: u64,
}

impl IoModule {
    /// A client of the module, connected lazily (its requests fail until it answers).
    ///
    /// # Errors
    /// The endpoint is not a Modbus endpoint (validated when the file was read).
    pub(crate) fn client(&self) -> Result<ems_devices::modbus::transport::AnyClient, String> {
        let ep: ModbusEndpoint = self.endpoint.parse().map_err(|e| format!("{e}"))?;
        let options = ems_devices::modbus::transport::ClientOptions {
            timeout: std::time::Duration::from_millis(self.timeout_ms),
            ..ems_devices::modbus::transport::ClientOptions::default()
        };
        Ok(ems_devices::modbus::transport::AnyClient::new(&ep, self.unit, options))
    }
}

/// How the contactor relays are wired, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ContactorWiring {
    /// Linux GPIO lines.
    Gpio {
        /// Chip.
        chip: String,
        /// Pre-charge coil line.
        precharge_line: u32,
        /// Pre-charge feedback line.
        precharge_feedback_line: u32,
        /// Main coil line.
        main_line: u32,
        /// Main feedback line.
        main_feedback_line: u32,
    },
    /// A Modbus I/O module.
    Modbus {
        /// The module.
        module: IoModule,
        /// Pre-charge coil register.
        precharge_coil: u16,
        /// Main coil register.
        main_coil: u16,
        /// Pre-charge feedback bit.
        precharge_feedback: IoPoint,
        /// Main feedback bit.
        main_feedback: IoPoint,
    },
}

/// How the E-stop loop is wired, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EStopWiring {
    /// A Linux GPIO line.
    Gpio {
        /// Chip.
        chip: String,
        /// Line.
        line: u32,
        /// The level that means pressed.
        active: ActiveLevel,
    },
    /// A Modbus I/O module.
    Modbus {
        /// The module.
        module: IoModule,
        /// The E-stop bit.
        input: IoPoint,
        /// The bit level that means pressed.
        active: ActiveLevel,
        /// Minimum interval between reads, ms.
        poll_ms: u64,
    },
}

/// A required field of one `kind`: missing → an error at the `kind` line.
fn required<'a, T>(
    ctx: &Ctx<'_>,
    section: &str,
    kind: &Spanned<String>,
    name: &str,
    v: &'a Option<Spanned<T>>,
) -> Result<&'a T, ConfigError> {
    v.as_ref().map(Spanned::get_ref).ok_or_else(|| {
        ctx.err(&format!("{section}.{name}"), kind, format!("is required with kind = \"{}\"", kind.get_ref()))
    })
}

/// A field that belongs to the other `kind`: present → an error naming it.
fn refused<T>(
    ctx: &Ctx<'_>,
    section: &str,
    kind: &Spanned<String>,
    name: &str,
    v: &Option<Spanned<T>>,
) -> Result<(), ConfigError> {
    match v {
        Some(v) => Err(ctx.err(
            &format!("{section}.{name}"),
            v,
            format!("is not used with kind = \"{}\"", kind.get_ref()),
        )),
        None => Ok(()),
    }
}

fn io_module(
    ctx: &Ctx<'_>,
    section: &str,
    endpoint: &Spanned<String>,
    unit: Option<&Spanned<u8>>,
    timeout: Option<&Spanned<u64>>,
) -> Result<IoModule, ConfigError> {
    let ep = endpoint.get_ref();
    super::paths::endpoint(ctx, &format!("{section}.endpoint"), endpoint)?;
    let unit_id = unit.map_or(1, |u| *u.get_ref());
    if let Some(u) = unit.filter(|_| unit_id > 247) {
        return Err(ctx.err(&format!("{section}.unit"), u, format!("{unit_id} is outside 0..=247")));
    }
    let timeout_ms = timeout.map_or(500, |t| *t.get_ref());
    if let Some(t) = timeout.filter(|_| !(10..=60_000).contains(&timeout_ms)) {
        return Err(ctx.err(
            &format!("{section}.timeout_ms"),
            t,
            format!("{timeout_ms} ms is outside 10..=60000 ms"),
        ));
    }
    Ok(IoModule { endpoint: ep.clone(), unit: unit_id, timeout_ms })
}

fn io_point(
    ctx: &Ctx<'_>,
    section: &str,
    table: Option<&Spanned<String>>,
    table_field: &str,
    register: u16,
    bit: &Spanned<u8>,
    bit_field: &str,
) -> Result<IoPoint, ConfigError> {
    let kind = match table.map(|t| (t, t.get_ref().as_str())) {
        None | Some((_, "input")) => RegisterKind::Input,
        Some((_, "holding")) => RegisterKind::Holding,
        Some((t, other)) => {
            return Err(ctx.err(
                &format!("{section}.{table_field}"),
                t,
                format!("'{other}' is not one of input, holding"),
            ))
        }
    };
    IoPoint::new(kind, RegisterAddress(register), *bit.get_ref()).map_err(|_| {
        ctx.err(&format!("{section}.{bit_field}"), bit, format!("{} is outside 0..=15", bit.get_ref()))
    })
}

pub(super) fn contactor_wiring(ctx: &Ctx<'_>, c: &ContactorEntry) -> Result<ContactorWiring, ConfigError> {
    const S: &str = "devices.contactor";
    let k = &c.kind;
    match k.get_ref().as_str() {
        "linux-gpio" => {
            for (name, v) in [("endpoint", &c.endpoint), ("feedback_table", &c.feedback_table)] {
                refused(ctx, S, k, name, v)?;
            }
            refused(ctx, S, k, "unit", &c.unit)?;
            refused(ctx, S, k, "timeout_ms", &c.timeout_ms)?;
            for (name, v) in [
                ("precharge_coil", &c.precharge_coil),
                ("main_coil", &c.main_coil),
                ("feedback_register", &c.feedback_register),
            ] {
                refused(ctx, S, k, name, v)?;
            }
            refused(ctx, S, k, "precharge_feedback_bit", &c.precharge_feedback_bit)?;
            refused(ctx, S, k, "main_feedback_bit", &c.main_feedback_bit)?;
            Ok(ContactorWiring::Gpio {
                chip: required(ctx, S, k, "chip", &c.chip)?.clone(),
                precharge_line: *required(ctx, S, k, "precharge_line", &c.precharge_line)?,
                precharge_feedback_line: *required(
                    ctx,
                    S,
                    k,
                    "precharge_feedback_line",
                    &c.precharge_feedback_line,
                )?,
                main_line: *required(ctx, S, k, "main_line", &c.main_line)?,
                main_feedback_line: *required(ctx, S, k, "main_feedback_line", &c.main_feedback_line)?,
            })
        }
        "modbus" => {
            refused(ctx, S, k, "chip", &c.chip)?;
            for (name, v) in [
                ("precharge_line", &c.precharge_line),
                ("precharge_feedback_line", &c.precharge_feedback_line),
                ("main_line", &c.main_line),
                ("main_feedback_line", &c.main_feedback_line),
            ] {
                refused(ctx, S, k, name, v)?;
            }
            let Some(endpoint) = &c.endpoint else {
                return Err(ctx.err(
                    &format!("{S}.endpoint"),
                    k,
                    "is required with kind = \"modbus\"".to_owned(),
                ));
            };
            let module = io_module(ctx, S, endpoint, c.unit.as_ref(), c.timeout_ms.as_ref())?;
            let precharge_coil = *required(ctx, S, k, "precharge_coil", &c.precharge_coil)?;
            let main_coil = *required(ctx, S, k, "main_coil", &c.main_coil)?;
            if precharge_coil == main_coil {
                if let Some(m) = &c.main_coil {
                    return Err(ctx.err(
                        &format!("{S}.main_coil"),
                        m,
                        format!("{main_coil} is the pre-charge coil's register too"),
                    ));
                }
            }
            let register = *required(ctx, S, k, "feedback_register", &c.feedback_register)?;
            let point = |bit: &Option<Spanned<u8>>, name: &str| -> Result<IoPoint, ConfigError> {
                let Some(b) = bit else {
                    return Err(ctx.err(
                        &format!("{S}.{name}"),
                        k,
                        "is required with kind = \"modbus\"".to_owned(),
                    ));
                };
                io_point(ctx, S, c.feedback_table.as_ref(), "feedback_table", register, b, name)
            };
            let precharge_feedback = point(&c.precharge_feedback_bit, "precharge_feedback_bit")?;
            let main_feedback = point(&c.main_feedback_bit, "main_feedback_bit")?;
            if precharge_feedback == main_feedback {
                if let Some(b) = &c.main_feedback_bit {
                    return Err(ctx.err(
                        &format!("{S}.main_feedback_bit"),
                        b,
                        format!("{} is the pre-charge feedback bit too", b.get_ref()),
                    ));
                }
            }
            Ok(ContactorWiring::Modbus {
                module,
                precharge_coil,
                main_coil,
                precharge_feedback,
                main_feedback,
            })
        }
        other => Err(ctx.err(&format!("{S}.kind"), k, format!("'{other}' is not one of linux-gpio, modbus"))),
    }
}

/// One input or output with two roles: the relay coils, their feedback contacts and the E-stop
/// each need their own GPIO line (on the same chip) or register bit (on the same Modbus module).
/// A shared one would read a relay's own command back as its feedback, or an open relay as a
/// pressed (or never pressed) E-stop.
pub(super) fn wiring_conflicts(
    ctx: &Ctx<'_>,
    d: &DevicesSection,
    contactor: &ContactorWiring,
    estop: &EStopWiring,
) -> Result<(), ConfigError> {
    const S: &str = "devices.contactor";
    let c = &d.contactor;
    match contactor {
        ContactorWiring::Gpio {
            chip,
            precharge_line,
            precharge_feedback_line,
            main_line,
            main_feedback_line,
        } => {
            // In the order of a wiring diagram: outputs, then inputs; each line is checked
            // against the ones before it, so the error names the later field.
            let roles = [
                (
                    "precharge_line",
                    "the pre-charge relay's coil line",
                    *precharge_line,
                    c.precharge_line.as_ref(),
                ),
                ("main_line", "the main contactor's coil line", *main_line, c.main_line.as_ref()),
                (
                    "precharge_feedback_line",
                    "the pre-charge relay's feedback line",
                    *precharge_feedback_line,
                    c.precharge_feedback_line.as_ref(),
                ),
                (
                    "main_feedback_line",
                    "the main contactor's feedback line",
                    *main_feedback_line,
                    c.main_feedback_line.as_ref(),
                ),
            ];
            for (i, (name, _, line, v)) in roles.iter().enumerate() {
                if let Some((_, what, _, _)) = roles.iter().take(i).find(|r| r.2 == *line) {
                    return Err(ctx.err_opt(&format!("{S}.{name}"), *v, format!("{line} is {what} too")));
                }
            }
            if let EStopWiring::Gpio { chip: estop_chip, line, .. } = estop {
                if same_chip(chip, estop_chip) {
                    if let Some((_, what, _, _)) = roles.iter().find(|r| r.2 == *line) {
                        return Err(ctx.err_opt(
                            "devices.estop.line",
                            d.estop.line.as_ref(),
                            format!("{line} on {estop_chip} is {what} too"),
                        ));
                    }
                }
            }
        }
        ContactorWiring::Modbus { module, precharge_coil, main_coil, precharge_feedback, main_feedback } => {
            let coil = |p: &IoPoint| match p.kind {
                RegisterKind::Holding if p.address.0 == *precharge_coil => {
                    Some("the pre-charge relay's coil register")
                }
                RegisterKind::Holding if p.address.0 == *main_coil => {
                    Some("the main contactor's coil register")
                }
                RegisterKind::Holding | RegisterKind::Input => None,
            };
            for p in [precharge_feedback, main_feedback] {
                if let Some(what) = coil(p) {
                    return Err(ctx.err_opt(
                        &format!("{S}.feedback_register"),
                        c.feedback_register.as_ref(),
                        format!("holding register {} is {what} too", p.address.0),
                    ));
                }
            }
            if let EStopWiring::Modbus { module: estop_module, input, .. } = estop {
                if same_module(module, estop_module) {
                    let feedback = if input == precharge_feedback {
                        Some("the pre-charge relay's feedback bit")
                    } else if input == main_feedback {
                        Some("the main contactor's feedback bit")
                    } else {
                        None
                    };
                    if let Some(what) = feedback {
                        return Err(ctx.err_opt(
                            "devices.estop.bit",
                            d.estop.bit.as_ref(),
                            format!("bit {} of register {} is {what} too", input.bit, input.address.0),
                        ));
                    }
                    if let Some(what) = coil(input) {
                        return Err(ctx.err_opt(
                            "devices.estop.register",
                            d.estop.register.as_ref(),
                            format!("holding register {} is {what} too", input.address.0),
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// `/dev/gpiochip0` and `gpiochip0` are the same chip.
fn same_chip(a: &str, b: &str) -> bool {
    let name = |c: &str| c.trim().trim_start_matches("/dev/").to_owned();
    name(a) == name(b)
}

/// The same I/O module: the same endpoint (however written) and unit id.
fn same_module(a: &IoModule, b: &IoModule) -> bool {
    a.unit == b.unit
        && match (a.endpoint.parse::<ModbusEndpoint>(), b.endpoint.parse::<ModbusEndpoint>()) {
            (Ok(x), Ok(y)) => x == y,
            _ => a.endpoint == b.endpoint,
        }
}

pub(super) fn estop_wiring(ctx: &Ctx<'_>, e: &EStopEntry) -> Result<EStopWiring, ConfigError> {
    const S: &str = "devices.estop";
    let k = &e.kind;
    let active = match e.active.get_ref().as_str() {
        "low" => ActiveLevel::Low,
        "high" => ActiveLevel::High,
        other => {
            return Err(ctx.err(
                &format!("{S}.active"),
                &e.active,
                format!("'{other}' is not one of low, high"),
            ))
        }
    };
    match k.get_ref().as_str() {
        "linux-gpio" => {
            refused(ctx, S, k, "endpoint", &e.endpoint)?;
            refused(ctx, S, k, "table", &e.table)?;
            refused(ctx, S, k, "unit", &e.unit)?;
            refused(ctx, S, k, "timeout_ms", &e.timeout_ms)?;
            refused(ctx, S, k, "poll_ms", &e.poll_ms)?;
            refused(ctx, S, k, "register", &e.register)?;
            refused(ctx, S, k, "bit", &e.bit)?;
            Ok(EStopWiring::Gpio {
                chip: required(ctx, S, k, "chip", &e.chip)?.clone(),
                line: *required(ctx, S, k, "line", &e.line)?,
                active,
            })
        }
        "modbus" => {
            refused(ctx, S, k, "chip", &e.chip)?;
            refused(ctx, S, k, "line", &e.line)?;
            let Some(endpoint) = &e.endpoint else {
                return Err(ctx.err(
                    &format!("{S}.endpoint"),
                    k,
                    "is required with kind = \"modbus\"".to_owned(),
                ));
            };
            let module = io_module(ctx, S, endpoint, e.unit.as_ref(), e.timeout_ms.as_ref())?;
            let register = *required(ctx, S, k, "register", &e.register)?;
            let Some(bit) = &e.bit else {
                return Err(ctx.err(&format!("{S}.bit"), k, "is required with kind = \"modbus\"".to_owned()));
            };
            let input = io_point(ctx, S, e.table.as_ref(), "table", register, bit, "bit")?;
            let poll_ms = e.poll_ms.as_ref().map_or(20, |p| *p.get_ref());
            if let Some(p) = e.poll_ms.as_ref().filter(|_| !(5..=200).contains(&poll_ms)) {
                return Err(ctx.err(
                    &format!("{S}.poll_ms"),
                    p,
                    format!("{poll_ms} ms is outside 5..=200 ms"),
                ));
            }
            Ok(EStopWiring::Modbus { module, input, active, poll_ms })
        }
        other => Err(ctx.err(&format!("{S}.kind"), k, format!("'{other}' is not one of linux-gpio, modbus"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;
    use std::path::Path;

    fn base() -> String {
        let profile = concat!(env!("CARGO_MANIFEST_DIR"), "/../../devices/profiles/eastron-sdm630.toml");
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/site.toml"))
            .unwrap()
            .replace("../devices/profiles/eastron-sdm630.toml", profile);
        let at = text.find("[devices.contactor]").unwrap();
        format!(
            "{}{}",
            &text[..at],
            r#"[devices.contactor]
kind = "modbus"
endpoint = "modbus-tcp://192.168.1.60:502"
unit = 4
precharge_coil = 0
main_coil = 1
feedback_register = 0
precharge_feedback_bit = 0
main_feedback_bit = 1

[devices.estop]
kind = "modbus"
endpoint = "modbus-tcp://192.168.1.60:502"
unit = 4
register = 0
bit = 2
"#
        )
    }

    #[test]
    fn modbus_io_wiring_parses() {
        let c = parse(Path::new("site.toml"), &base()).unwrap();
        let ContactorWiring::Modbus { module, main_coil, main_feedback, .. } = c.contactor else {
            panic!("{:?}", c.contactor)
        };
        assert_eq!((module.unit, module.timeout_ms, main_coil), (4, 500, 1));
        assert_eq!((main_feedback.kind, main_feedback.bit), (RegisterKind::Input, 1));
        let EStopWiring::Modbus { input, active, poll_ms, .. } = c.estop else { panic!("{:?}", c.estop) };
        assert_eq!((input.bit, active, poll_ms), (2, ActiveLevel::Low, 20));
    }

    #[test]
    fn modbus_io_errors_name_field_and_value() {
        let check = |from: &str, to: &str, want: &[&str]| {
            let text = base().replacen(from, to, 1);
            let e = parse(Path::new("site.toml"), &text).unwrap_err().to_string();
            for w in want {
                assert!(e.contains(w), "{from} -> {to}: {e}");
            }
        };
        check("bit = 2", "bit = 16", &["devices.estop.bit", "16 is outside 0..=15", "line"]);
        check(
            "main_feedback_bit = 1",
            "main_feedback_bit = 0",
            &["devices.contactor.main_feedback_bit", "0"],
        );
        check("main_coil = 1", "main_coil = 0", &["devices.contactor.main_coil", "pre-charge"]);
        check(
            "precharge_coil = 0\n",
            "",
            &["devices.contactor.precharge_coil", "is required with kind = \"modbus\""],
        );
        check(
            "kind = \"modbus\"",
            "kind = \"can\"",
            &["devices.contactor.kind", "'can' is not one of linux-gpio, modbus"],
        );
        check(
            "unit = 4\nregister",
            "unit = 4\nchip = \"/dev/gpiochip0\"\nregister",
            &["devices.estop.chip", "is not used with kind = \"modbus\""],
        );
        check(
            "register = 0\nbit = 2",
            "register = 0\nbit = 2\npoll_ms = 1",
            &["devices.estop.poll_ms", "1 ms is outside 5..=200 ms"],
        );
        check(
            "endpoint = \"modbus-tcp://192.168.1.60:502\"\nunit = 4\nregister",
            "endpoint = \"tcp://x\"\nunit = 4\nregister",
            &["devices.estop.endpoint", "tcp://x"],
        );
    }
}
