//! Relays on digital pins: a coil output and an auxiliary feedback input, through
//! `embedded-hal` 1.0, so the same driver serves a microcontroller and a Linux gateway (feature
//! `linux-gpio`, [`open_linux_relay`]).

use crate::estop::{ActiveLevel, PinError};
use crate::traits::Relay;
use embedded_hal::digital::{InputPin, OutputPin};

/// A relay whose coil is driven by `coil` and whose auxiliary contact is read on `feedback`.
#[derive(Debug)]
pub struct GpioRelay<O, I> {
    coil: O,
    feedback: I,
    coil_active: ActiveLevel,
    feedback_active: ActiveLevel,
}

/// A coil or feedback pin error (both map to `ErrorKind::Comm`).
#[derive(Debug)]
pub enum GpioRelayError<OE, IE> {
    /// Driving the coil failed.
    Coil(PinError<OE>),
    /// Reading the feedback failed.
    Feedback(PinError<IE>),
}

impl<OE: core::fmt::Debug, IE: core::fmt::Debug> crate::traits::DeviceError for GpioRelayError<OE, IE> {
    fn kind(&self) -> crate::traits::ErrorKind {
        crate::traits::ErrorKind::Comm
    }
}

impl<O: OutputPin, I: InputPin> GpioRelay<O, I> {
    /// A relay; `coil_active` is the level that energises the coil, `feedback_active` the level
    /// the feedback input shows while the main contact is closed.
    pub fn new(coil: O, feedback: I, coil_active: ActiveLevel, feedback_active: ActiveLevel) -> Self {
        Self { coil, feedback, coil_active, feedback_active }
    }
}

impl<O: OutputPin, I: InputPin> Relay for GpioRelay<O, I> {
    type Error = GpioRelayError<O::Error, I::Error>;

    async fn set(&mut self, closed: bool) -> Result<(), Self::Error> {
        let high = match self.coil_active {
            ActiveLevel::High => closed,
            ActiveLevel::Low => !closed,
        };
        let r = if high { self.coil.set_high() } else { self.coil.set_low() };
        r.map_err(|e| GpioRelayError::Coil(PinError(e)))
    }

    async fn feedback(&mut self) -> Result<bool, Self::Error> {
        let high = self.feedback.is_high().map_err(|e| GpioRelayError::Feedback(PinError(e)))?;
        Ok(match self.feedback_active {
            ActiveLevel::High => high,
            ActiveLevel::Low => !high,
        })
    }
}

#[cfg(feature = "linux-gpio")]
pub use linux::open_linux_relay;

/// A relay on two Linux GPIO lines (what [`open_linux_relay`] returns).
#[cfg(feature = "linux-gpio")]
pub type LinuxRelay = GpioRelay<linux_embedded_hal::CdevPin, linux_embedded_hal::CdevPin>;

#[cfg(feature = "linux-gpio")]
mod linux {
    use super::GpioRelay;
    use crate::estop::{ActiveLevel, GpioError};
    use linux_embedded_hal::gpio_cdev::{Chip, LineRequestFlags};
    use linux_embedded_hal::CdevPin;

    /// Open a relay on Linux character-device GPIO: `coil_line` as an output (initially
    /// de-energised), `feedback_line` as an input, both active high. Errors name the chip and the
    /// line.
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    #[derive(Debug, Clone, Copy, PartialEq)]
    struct E;
    impl embedded_hal::digital::Error for E {
        fn kind(&self) -> embedded_hal::digital::ErrorKind {
            embedded_hal::digital::ErrorKind::Other
        }
    }

    /// An output pin wired straight to an input pin (the coil closes the contact at once).
    #[derive(Debug, Clone)]
    struct Wire(Rc<Cell<bool>>);
    impl embedded_hal::digital::ErrorType for Wire {
        type Error = E;
    }
    impl OutputPin for Wire {
        fn set_low(&mut self) -> Result<(), E> {
            self.0.set(false);
            Ok(())
        }
        fn set_high(&mut self) -> Result<(), E> {
            self.0.set(true);
            Ok(())
        }
    }
    impl InputPin for Wire {
        fn is_high(&mut self) -> Result<bool, E> {
            Ok(self.0.get())
        }
        fn is_low(&mut self) -> Result<bool, E> {
            Ok(!self.0.get())
        }
    }

    #[test]
    fn coil_and_feedback_follow_their_active_levels() {
        let w = Wire(Rc::new(Cell::new(false)));
        let mut r = GpioRelay::new(w.clone(), w.clone(), ActiveLevel::High, ActiveLevel::High);
        pollster::block_on(r.set(true)).unwrap();
        assert!(w.0.get());
        assert!(pollster::block_on(r.feedback()).unwrap());
        let w = Wire(Rc::new(Cell::new(true)));
        let mut r = GpioRelay::new(w.clone(), w.clone(), ActiveLevel::Low, ActiveLevel::Low);
        pollster::block_on(r.set(true)).unwrap();
        assert!(!w.0.get(), "active-low coil is energised by a low output");
        assert!(pollster::block_on(r.feedback()).unwrap());
    }
}
