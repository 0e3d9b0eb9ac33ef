//! E-stop inputs through embedded-hal 1.0 digital pins.
//!
//! [`HalEStop`] turns any `embedded_hal::digital::InputPin` into an [`EStopInput`] device: the
//! same adapter serves a microcontroller pin, a Linux GPIO line (feature `linux-gpio`,
//! [`open_linux_estop`]) and the simulated site ([`SimEStopPin`](crate::sim::SimEStopPin)).
//!
//! The usual wiring is a normally-closed loop pulled high: a pressed button (or a broken wire)
//! opens the loop, the pin reads low, and the input reports `Pressed`. That is
//! [`ActiveLevel::Low`], the default; [`ActiveLevel::High`] serves inputs that go high on an
//! emergency. A pin error is reported as [`ErrorKind::Comm`]: the caller treats an unreadable
//! input as unknown (the safety layer counts it as pressed after its maximum age).

use crate::traits::{DeviceError, EStopInput, ErrorKind};
use embedded_hal::digital::InputPin;
use ems_core::snapshot::EStopInput as Reading;

/// The pin level that means "E-stop pressed".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ActiveLevel {
    /// Pressed when the pin reads low: a normally-closed loop pulled high (the default).
    #[default]
    Low,
    /// Pressed when the pin reads high.
    High,
}

/// A pin error while reading the E-stop input; `kind()` is [`ErrorKind::Comm`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("E-stop input pin unreadable: {0:?}")]
pub struct PinError<E>(pub E);

impl<E: core::fmt::Debug> DeviceError for PinError<E> {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Comm
    }
}

/// An E-stop input on a digital pin (see the module documentation).
#[derive(Debug)]
pub struct HalEStop<P> {
    pin: P,
    active: ActiveLevel,
}

impl<P: InputPin> HalEStop<P> {
    /// Read the E-stop from `pin`, pressed at the `active` level.
    #[must_use]
    pub fn new(pin: P, active: ActiveLevel) -> Self {
        Self { pin, active }
    }

    /// The level that means pressed.
    #[must_use]
    pub fn active_level(&self) -> ActiveLevel {
        self.active
    }

    /// Give the pin back.
    #[must_use]
    pub fn into_inner(self) -> P {
        self.pin
    }

    /// Read the pin once, synchronously.
    ///
    /// # Errors
    /// [`PinError`] with the pin's error.
    pub fn read_now(&mut self) -> Result<Reading, PinError<P::Error>> {
        let high = self.pin.is_high().map_err(PinError)?;
        let pressed = match self.active {
            ActiveLevel::Low => !high,
            ActiveLevel::High => high,
        };
        Ok(if pressed { Reading::Pressed } else { Reading::Released })
    }
}

impl<P: InputPin> EStopInput for HalEStop<P> {
    type Error = PinError<P::Error>;

    async fn read(&mut self) -> Result<Reading, Self::Error> {
        self.read_now()
    }
}

#[cfg(feature = "linux-gpio")]
pub use linux::{open_linux_estop, GpioError};

/// The E-stop on a Linux GPIO line (what [`open_linux_estop`] returns).
#[cfg(feature = "linux-gpio")]
pub type LinuxEStop = HalEStop<linux_embedded_hal::CdevPin>;

/// The E-stop on a Linux GPIO character device (`/dev/gpiochipN`), through
/// `linux-embedded-hal`'s `CdevPin`.
#[cfg(feature = "linux-gpio")]
mod linux {
    use super::{ActiveLevel, HalEStop};
    use linux_embedded_hal::gpio_cdev::{Chip, LineRequestFlags};
    use linux_embedded_hal::CdevPin;

    /// The GPIO line could not be opened.
    #[derive(Debug, thiserror::Error)]
    #[error("cannot open E-stop input {chip} line {line}: {source}")]
    pub struct GpioError {
        /// The chip path, as given.
        pub chip: String,
        /// The line offset on the chip.
        pub line: u32,
        /// What the kernel interface said.
        #[source]
        pub source: linux_embedded_hal::gpio_cdev::Error,
    }

    /// Open line `line` of the GPIO chip at `chip` (e.g. `/dev/gpiochip0`) as an input and read
    /// the E-stop from it, pressed at the `active` level (the kernel line is requested
    /// active-high, so `active` alone decides the polarity).
    ///
    /// # Errors
    /// [`GpioError`] naming the chip path and line if the chip cannot be opened or the line
    /// cannot be requested.
    pub fn open_linux_estop(
        chip: &str,
        line: u32,
        active: ActiveLevel,
    ) -> Result<HalEStop<CdevPin>, GpioError> {
        let err = |source| GpioError { chip: chip.to_owned(), line, source };
        let mut c = Chip::new(chip).map_err(err)?;
        let handle =
            c.get_line(line).map_err(err)?.request(LineRequestFlags::INPUT, 0, "ems-estop").map_err(err)?;
        let pin = CdevPin::new(handle).map_err(err)?;
        Ok(HalEStop::new(pin, active))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pin that reads a fixed level or fails.
    #[derive(Debug)]
    struct MockPin(Result<bool, MockError>);

    #[derive(Debug, Clone, Copy, PartialEq)]
    struct MockError;

    impl embedded_hal::digital::Error for MockError {
        fn kind(&self) -> embedded_hal::digital::ErrorKind {
            embedded_hal::digital::ErrorKind::Other
        }
    }

    impl embedded_hal::digital::ErrorType for MockPin {
        type Error = MockError;
    }

    impl InputPin for MockPin {
        fn is_high(&mut self) -> Result<bool, MockError> {
            self.0
        }
        fn is_low(&mut self) -> Result<bool, MockError> {
            self.0.map(|h| !h)
        }
    }

    fn read<P: InputPin>(e: &mut HalEStop<P>) -> Result<Reading, PinError<P::Error>> {
        pollster::block_on(EStopInput::read(e))
    }

    #[test]
    fn active_low_is_the_default_and_reads_a_broken_loop_as_pressed() {
        assert_eq!(ActiveLevel::default(), ActiveLevel::Low);
        assert_eq!(read(&mut HalEStop::new(MockPin(Ok(true)), ActiveLevel::Low)), Ok(Reading::Released));
        assert_eq!(read(&mut HalEStop::new(MockPin(Ok(false)), ActiveLevel::Low)), Ok(Reading::Pressed));
    }

    #[test]
    fn active_high_inverts() {
        let mut e = HalEStop::new(MockPin(Ok(true)), ActiveLevel::High);
        assert_eq!(e.active_level(), ActiveLevel::High);
        assert_eq!(read(&mut e), Ok(Reading::Pressed));
        assert_eq!(read(&mut HalEStop::new(MockPin(Ok(false)), ActiveLevel::High)), Ok(Reading::Released));
        assert!(e.into_inner().0.is_ok());
    }

    #[test]
    fn pin_error_is_a_comm_error() {
        let e = read(&mut HalEStop::new(MockPin(Err(MockError)), ActiveLevel::Low)).unwrap_err();
        assert_eq!(e, PinError(MockError));
        assert_eq!(e.kind(), ErrorKind::Comm);
        assert!(e.to_string().contains("unreadable"), "{e}");
    }
}
