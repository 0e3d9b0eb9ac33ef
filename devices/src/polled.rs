//! [`Polled`]: a device read at most once per interval, whose reused reading keeps the time it
//! was actually read.

use crate::traits::{Bms, BmsReading, Meter, MeterReading, PvInverter, PvReading};
use ems_core::Millis;
use std::time::{Duration, Instant};

/// A device read at most every `every`: between polls the last good reading is reused, so a slow
/// bus (RS-485 at 9600 baud) is not asked every control cycle. A failed read is not cached: the
/// next cycle tries again, and the signals go stale through their maximum age as usual.
///
/// A reused reading is **not** fresh: [`Polled`] reports its age (`reading_age` of the device
/// traits), and the caller stamps the signal with the time the value was actually read, so a
/// value goes stale `max_age` after it was read, not `every + max_age` after (which would be up
/// to twice the bound).
#[derive(Debug)]
pub struct Polled<D, R> {
    inner: D,
    every: Option<Duration>,
    last: Option<(Instant, R)>,
    age: Millis,
}

impl<D, R: Copy> Polled<D, R> {
    /// Wrap `inner`, read at most every `poll_ms` (`None`: on every call).
    #[must_use]
    pub fn new(inner: D, poll_ms: Option<u64>) -> Self {
        Self { inner, every: poll_ms.map(Duration::from_millis), last: None, age: Millis::ZERO }
    }

    /// The wrapped device.
    #[must_use]
    pub const fn inner(&self) -> &D {
        &self.inner
    }

    /// The wrapped device, mutably.
    pub fn inner_mut(&mut self) -> &mut D {
        &mut self.inner
    }

    fn cached(&mut self) -> Option<R> {
        match (self.every, &self.last) {
            (Some(every), Some((at, r))) if at.elapsed() < every => {
                let ms = u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX);
                self.age = Millis::new(ms);
                Some(*r)
            }
            _ => None,
        }
    }

    /// Keep `r`, which was already `inner_age` old when the inner device returned it (a device
    /// with its own buffer, such as a P1 meter): the age carries on from there, never restarts.
    fn store(&mut self, r: R, inner_age: Millis) -> R {
        let now = Instant::now();
        let read_at = now.checked_sub(Duration::from_millis(inner_age.get())).unwrap_or(now);
        self.last = Some((read_at, r));
        self.age = inner_age;
        r
    }
}

impl<D: Meter> Meter for Polled<D, MeterReading> {
    type Error = D::Error;
    async fn read(&mut self) -> Result<MeterReading, D::Error> {
        if let Some(r) = self.cached() {
            return Ok(r);
        }
        let r = self.inner.read().await?;
        let age = self.inner.reading_age();
        Ok(self.store(r, age))
    }
    fn reading_age(&self) -> Millis {
        self.age
    }
}

impl<D: Bms> Bms for Polled<D, BmsReading> {
    type Error = D::Error;
    async fn read(&mut self) -> Result<BmsReading, D::Error> {
        if let Some(r) = self.cached() {
            return Ok(r);
        }
        let r = self.inner.read().await?;
        let age = self.inner.reading_age();
        Ok(self.store(r, age))
    }
    async fn reset_alarms(&mut self) -> Result<(), D::Error> {
        self.last = None;
        self.inner.reset_alarms().await
    }
    fn reading_age(&self) -> Millis {
        self.age
    }
}

impl<D: PvInverter> PvInverter for Polled<D, PvReading> {
    type Error = D::Error;
    async fn read(&mut self) -> Result<PvReading, D::Error> {
        if let Some(r) = self.cached() {
            return Ok(r);
        }
        let r = self.inner.read().await?;
        let age = self.inner.reading_age();
        Ok(self.store(r, age))
    }
    fn reading_age(&self) -> Millis {
        self.age
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests
mod tests {
    use super::*;
    use crate::traits::{DeviceError, ErrorKind};

    #[derive(Debug, Default)]
    struct CountingMeter {
        reads: u32,
        fail: bool,
        /// The age of the reading it returns (a device with its own buffer, like a P1 meter).
        age: Millis,
    }

    #[derive(Debug)]
    struct Down;

    impl DeviceError for Down {
        fn kind(&self) -> ErrorKind {
            ErrorKind::Timeout
        }
    }

    impl Meter for CountingMeter {
        type Error = Down;
        async fn read(&mut self) -> Result<MeterReading, Down> {
            self.reads += 1;
            if self.fail {
                return Err(Down);
            }
            Ok(MeterReading {
                active_power: ems_core::watts!(100.0),
                voltage: ems_core::volts!(230.0),
                frequency: Some(ems_core::hertz!(50.0)),
            })
        }
        fn reading_age(&self) -> Millis {
            self.age
        }
    }

    fn block_on<F: core::future::Future>(f: F) -> F::Output {
        pollster::block_on(f)
    }

    #[test]
    fn polled_devices_are_read_once_per_interval_and_failures_are_not_cached() {
        let mut m = Polled::new(CountingMeter::default(), Some(60));
        block_on(m.read()).unwrap();
        block_on(m.read()).unwrap();
        assert_eq!(m.inner.reads, 1, "second read within the interval comes from the cache");
        std::thread::sleep(Duration::from_millis(70));
        block_on(m.read()).unwrap();
        assert_eq!(m.inner.reads, 2);
        std::thread::sleep(Duration::from_millis(70));
        m.inner.fail = true;
        assert!(block_on(m.read()).is_err());
        assert!(block_on(m.read()).is_err(), "a failure is not cached");
        assert_eq!(m.inner.reads, 4);
        let mut every_cycle = Polled::new(CountingMeter::default(), None);
        block_on(every_cycle.read()).unwrap();
        block_on(every_cycle.read()).unwrap();
        assert_eq!(every_cycle.inner.reads, 2);
    }

    /// The bug: a reused reading was handed out as if just read, so its signal went stale only
    /// `every + max_age` after the device was read. The age it reports must be the time since
    /// the real read.
    #[test]
    fn a_reused_reading_reports_the_age_of_the_real_read() {
        let mut m = Polled::new(CountingMeter::default(), Some(500));
        block_on(m.read()).unwrap();
        assert_eq!(m.reading_age(), Millis::ZERO, "a fresh read is fresh");
        std::thread::sleep(Duration::from_millis(120));
        block_on(m.read()).unwrap();
        assert_eq!(m.inner.reads, 1, "reused");
        let age = m.reading_age().get();
        assert!((120..500).contains(&age), "the reused reading is {age} ms old, not fresh");
    }

    /// A device that buffers (a P1 meter hands out its last telegram with its age): the cache
    /// carries that age on instead of restarting it at zero.
    #[test]
    fn an_inner_reading_age_is_carried_on() {
        let inner = CountingMeter { age: Millis::new(300), ..CountingMeter::default() };
        let mut m = Polled::new(inner, None);
        block_on(m.read()).unwrap();
        assert_eq!(m.reading_age(), Millis::new(300));
        let inner = CountingMeter { age: Millis::new(300), ..CountingMeter::default() };
        let mut m = Polled::new(inner, Some(1000));
        block_on(m.read()).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        block_on(m.read()).unwrap();
        assert_eq!(m.inner.reads, 1, "reused");
        assert!(m.reading_age().get() >= 350, "{:?}", m.reading_age());
    }
}
