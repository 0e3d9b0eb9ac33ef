//! Relays on Linux character-device GPIO lines (feature `linux-gpio`).

use super::relay::GpioRelay;
use crate::estop::{ActiveLevel, GpioError};
use linux_embedded_hal::gpio_cdev::{Chip, LineRequestFlags};
use linux_embedded_hal::CdevPin;

/// Open a relay on Linux character-device GPIO: `coil_line` as an output (initially
/// de-energised), `feedback_line` as an input, both active high. Errors name the chip and the
/// line.
///
/// # Errors
///
/// [`GpioError`] naming the chip and line when the chip cannot be opened or a line cannot be requested
/// (absent, or held by another process).
pub fn open_linux_relay(
    chip: &str,
    coil_line: u32,
    feedback_line: u32,
) -> Result<GpioRelay<CdevPin, CdevPin>, GpioError> {
    let mut c =
        Chip::new(chip).map_err(|source| GpioError { chip: chip.to_owned(), line: coil_line, source })?;
    let err = |line| move |source| GpioError { chip: chip.to_owned(), line, source };
    let coil = c
        .get_line(coil_line)
        .map_err(err(coil_line))?
        .request(LineRequestFlags::OUTPUT, 0, "ems-relay-coil")
        .map_err(err(coil_line))?;
    let fb = c
        .get_line(feedback_line)
        .map_err(err(feedback_line))?
        .request(LineRequestFlags::INPUT, 0, "ems-relay-feedback")
        .map_err(err(feedback_line))?;
    let coil = CdevPin::new(coil).map_err(err(coil_line))?;
    let fb = CdevPin::new(fb).map_err(err(feedback_line))?;
    Ok(GpioRelay::new(coil, fb, ActiveLevel::High, ActiveLevel::High))
}
