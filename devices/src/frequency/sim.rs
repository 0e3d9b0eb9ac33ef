//! [`SimFrequency`]: a simulated frequency source for the simulated site and tests — a value
//! set by hand, a replayed profile (linear between points, held after the last) or a function
//! of time, with injectable failures. The handle and the device share one state on the control
//! thread (`Rc<RefCell>`, like the other simulated devices).

use super::FrequencySource;
use crate::traits::{DeviceError, ErrorKind};
use ems_core::{Hertz, Millis};
use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;

/// What the simulated source measures.
pub enum SimFrequencySignal {
    /// A constant.
    Fixed(Hertz),
    /// `(time, frequency)` points, sorted by time: linear between points, the first before the
    /// first point, the last after the last.
    Profile(Vec<(Millis, Hertz)>),
    /// A function of time.
    Function(Box<dyn Fn(Millis) -> Hertz>),
}

impl fmt::Debug for SimFrequencySignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fixed(h) => write!(f, "Fixed({h})"),
            Self::Profile(p) => write!(f, "Profile({} points)", p.len()),
            Self::Function(_) => f.write_str("Function"),
        }
    }
}

impl SimFrequencySignal {
    fn at(&self, t: Millis) -> Hertz {
        match self {
            Self::Fixed(h) => *h,
            Self::Function(f) => f(t),
            Self::Profile(points) => profile_at(points, t),
        }
    }
}

fn profile_at(points: &[(Millis, Hertz)], t: Millis) -> Hertz {
    let Some(&(_, first)) = points.first() else { return ems_core::hertz!(50.0) };
    let mut prev = (Millis::ZERO, first);
    for &(pt, pf) in points {
        if t <= pt {
            let span = pt.since(prev.0).get();
            if span == 0 {
                return pf;
            }
            #[allow(clippy::cast_precision_loss)] // milliseconds of a test profile
            let x = t.since(prev.0).get() as f32 / span as f32;
            return Hertz::saturating(prev.1.get() + (pf.get() - prev.1.get()) * x);
        }
        prev = (pt, pf);
    }
    prev.1
}

#[derive(Debug)]
struct State {
    signal: SimFrequencySignal,
    now: Millis,
    fault: Option<ErrorKind>,
    age: Millis,
    reads: u64,
}

/// A failure injected into a [`SimFrequency`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("simulated frequency source: {0}")]
pub struct SimFrequencyError(pub ErrorKind);

impl DeviceError for SimFrequencyError {
    fn kind(&self) -> ErrorKind {
        self.0
    }
}

/// The simulated frequency source (the device side).
#[derive(Debug, Clone)]
pub struct SimFrequency {
    state: Rc<RefCell<State>>,
}

/// The test's or the simulator's side of a [`SimFrequency`].
#[derive(Debug, Clone)]
pub struct SimFrequencyHandle {
    state: Rc<RefCell<State>>,
}

impl SimFrequency {
    /// A source measuring `signal`, and its handle.
    #[must_use]
    pub fn new(signal: SimFrequencySignal) -> (Self, SimFrequencyHandle) {
        let state = Rc::new(RefCell::new(State {
            signal,
            now: Millis::ZERO,
            fault: None,
            age: Millis::ZERO,
            reads: 0,
        }));
        (Self { state: state.clone() }, SimFrequencyHandle { state })
    }
}

impl SimFrequencyHandle {
    /// The simulated time (a profile or a function is evaluated at it).
    pub fn set_time(&self, now: Millis) {
        self.state.borrow_mut().now = now;
    }

    /// Measure `signal` from now on.
    pub fn set_signal(&self, signal: SimFrequencySignal) {
        self.state.borrow_mut().signal = signal;
    }

    /// Measure a constant from now on.
    pub fn set(&self, f: Hertz) {
        self.set_signal(SimFrequencySignal::Fixed(f));
    }

    /// Fail every read with `kind` (`None`: heal).
    pub fn fail(&self, kind: Option<ErrorKind>) {
        self.state.borrow_mut().fault = kind;
    }

    /// Report readings as already `age` old (a device that averages or caches).
    pub fn set_age(&self, age: Millis) {
        self.state.borrow_mut().age = age;
    }

    /// What the source would read at its current time.
    #[must_use]
    pub fn value(&self) -> Hertz {
        let s = self.state.borrow();
        s.signal.at(s.now)
    }

    /// Reads so far (failed ones included).
    #[must_use]
    pub fn reads(&self) -> u64 {
        self.state.borrow().reads
    }
}

impl FrequencySource for SimFrequency {
    type Error = SimFrequencyError;

    async fn read(&mut self) -> Result<Hertz, SimFrequencyError> {
        let mut s = self.state.borrow_mut();
        s.reads = s.reads.saturating_add(1);
        if let Some(k) = s.fault {
            return Err(SimFrequencyError(k));
        }
        Ok(s.signal.at(s.now))
    }

    fn reading_age(&self) -> Millis {
        self.state.borrow().age
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hz(v: f32) -> Hertz {
        Hertz::try_new(v).unwrap()
    }

    #[test]
    fn profile_interpolates_and_holds() {
        let (mut s, h) = SimFrequency::new(SimFrequencySignal::Profile(vec![
            (Millis::new(1_000), hz(50.0)),
            (Millis::new(2_000), hz(49.0)),
        ]));
        for (t, want) in [(0, 50.0), (1_000, 50.0), (1_500, 49.5), (2_000, 49.0), (9_000, 49.0)] {
            h.set_time(Millis::new(t));
            let got = pollster::block_on(s.read()).unwrap().get();
            assert!((got - want).abs() < 1e-4, "t {t}: {got} vs {want}");
        }
        h.fail(Some(ErrorKind::Timeout));
        assert_eq!(pollster::block_on(s.read()), Err(SimFrequencyError(ErrorKind::Timeout)));
        assert_eq!(h.reads(), 6);
    }

    #[test]
    fn function_of_time() {
        let (mut s, h) = SimFrequency::new(SimFrequencySignal::Function(Box::new(|t: Millis| {
            if t < Millis::new(500) {
                hz(50.0)
            } else {
                hz(49.4)
            }
        })));
        h.set_time(Millis::new(600));
        assert_eq!(pollster::block_on(s.read()).unwrap(), hz(49.4));
        assert_eq!(h.value(), hz(49.4));
    }
}
