//! [`Hub`]: what the connection tasks and the charge point handles share — the configuration,
//! the event log, the clock and the transaction counter.

use super::config::CentralSystemConfig;
use crate::evse::events::{EvseEvent, EvseEventLog};
use ems_core::Millis;
use std::sync::atomic::AtomicI32;
use std::sync::{Mutex, MutexGuard, PoisonError};
use tokio::time::Instant;

/// Shared by every task and handle of one central system.
#[derive(Debug)]
pub(crate) struct Hub {
    pub(crate) config: CentralSystemConfig,
    pub(crate) events: Mutex<EvseEventLog>,
    pub(crate) start: Instant,
    pub(crate) next_tx: AtomicI32,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave these plain data structs half-updated in a
    // way that matters more than losing the charge point; keep serving.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Hub {
    pub(crate) fn new(config: CentralSystemConfig) -> Self {
        Self {
            config,
            events: Mutex::new(EvseEventLog::default()),
            start: Instant::now(),
            next_tx: AtomicI32::new(1),
        }
    }

    pub(crate) fn now(&self) -> Millis {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        Millis::new(ms)
    }

    pub(crate) fn event(&self, e: EvseEvent) {
        let now = self.now();
        lock(&self.events).push(now, e);
    }
}
