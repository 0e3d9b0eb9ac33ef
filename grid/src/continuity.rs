//! The time base of a service: the step since its previous call, or a break when the calls
//! stopped (services are called only while the controller is RUNNING; after a gap a service
//! must not resume an old activation as if it had been delivering).

use ems_core::Millis;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Continuity {
    last: Option<Millis>,
}

impl Continuity {
    /// The time since the previous call, or `None` when the chain is broken: the first call,
    /// a gap longer than `max_gap`, or a clock that went backwards.
    pub(crate) fn tick(&mut self, now: Millis, max_gap: Millis) -> Option<Millis> {
        match self.last.replace(now) {
            Some(prev) if now >= prev && now.since(prev) <= max_gap => Some(now.since(prev)),
            Some(_) | None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_call_gap_and_backwards_clock_break_the_chain() {
        let mut c = Continuity::default();
        let gap = Millis::from_secs(2);
        assert_eq!(c.tick(Millis::new(1000), gap), None);
        assert_eq!(c.tick(Millis::new(1100), gap), Some(Millis::new(100)));
        assert_eq!(c.tick(Millis::new(5000), gap), None);
        assert_eq!(c.tick(Millis::new(4000), gap), None);
        assert_eq!(c.tick(Millis::new(4000), gap), Some(Millis::ZERO));
    }
}
