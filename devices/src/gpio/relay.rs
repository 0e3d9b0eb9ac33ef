//! [`GpioRelay`]: the relay driver over any `embedded-hal` pins.

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
