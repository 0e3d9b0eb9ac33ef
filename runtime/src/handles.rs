//! Handles other threads hold to reach the loop without ever blocking it: the software E-stop
//! and the shutdown request. Both are lock-free on the loop's side (an atomic flag and a
//! [`Notify`]); the mutex behind the E-stop's waiters is held for a push or a drain only.

use ems_core::State;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, Notify};

/// How many callers may wait for the answer to a software E-stop at once; a press beyond that
/// still stops the site, only its caller gets no timing back.
const MAX_WAITERS: usize = 1024;

/// The answer to a software E-stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EStopDone {
    /// The state after the cycle that latched the stop (`STOPPED`).
    pub state: State,
    /// From the press to the zero-power and contactor-open commands issued.
    pub took: Duration,
}

/// The presses one cycle answers together: those that came before the loop took them.
#[derive(Debug, Default)]
struct Batch {
    waiters: Vec<oneshot::Sender<EStopDone>>,
    pressed_at: Option<Instant>,
    took: Option<Duration>,
}

#[derive(Debug, Default)]
struct TriggerInner {
    pending: AtomicBool,
    notify: Notify,
    /// Presses not yet taken by the loop.
    current: Mutex<Batch>,
    /// Presses taken for the cycle in progress, answered after its step.
    taken: Mutex<Option<Batch>>,
}

/// The software E-stop (API, operator page, MQTT): pressing it wakes the loop at once, which
/// commands zero and open through the fast path, latches STOPPED in the next cycle and then
/// answers every caller with the time it took. Never rate-limited, never queued behind other
/// commands, accepted in every phase including a graceful shutdown. A press that comes while a
/// cycle answers earlier ones is answered by the next cycle, after its own fast path.
#[derive(Debug, Clone, Default)]
pub struct EStopTrigger(Arc<TriggerInner>);

impl EStopTrigger {
    /// A new trigger.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        // Plain data: a panic elsewhere while holding the lock leaves it consistent.
        m.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Press it. The receiver resolves once the loop issued zero and latched STOPPED (it is
    /// dropped without an answer only when more than 1024 callers wait at once, or the loop is
    /// gone).
    pub fn press(&self) -> oneshot::Receiver<EStopDone> {
        let (tx, rx) = oneshot::channel();
        {
            let mut b = Self::lock(&self.0.current);
            b.pressed_at.get_or_insert_with(Instant::now);
            if b.waiters.len() < MAX_WAITERS {
                b.waiters.push(tx);
            }
        }
        self.0.pending.store(true, Ordering::SeqCst);
        self.0.notify.notify_one();
        rx
    }

    /// Whether a press waits for the loop.
    #[must_use]
    pub fn is_pending(&self) -> bool {
        self.0.pending.load(Ordering::SeqCst)
    }

    /// Resolves when a press is pending (at once if one is).
    pub async fn pressed(&self) {
        loop {
            if self.is_pending() {
                return;
            }
            self.0.notify.notified().await;
        }
    }

    /// Resolves when a press is pending whose fast path has not run yet (what interrupts
    /// device I/O: once zero and open were commanded for it, the I/O may finish).
    pub async fn needs_fast_path(&self) {
        loop {
            if self.is_pending() && Self::lock(&self.0.current).took.is_none() {
                return;
            }
            self.0.notify.notified().await;
        }
    }

    /// The loop: whether the fast path already ran for the presses at hand (the pending ones,
    /// or, after [`Self::take`], the taken ones). It runs once per press, wherever the loop
    /// was when the press came.
    #[must_use]
    pub fn fast_path_taken(&self) -> bool {
        if self.is_pending() {
            Self::lock(&self.0.current).took.is_some()
        } else {
            Self::lock(&self.0.taken).as_ref().is_some_and(|b| b.took.is_some())
        }
    }

    /// The loop: the fast path ran now for the presses at hand; returns the time since the
    /// first of them.
    pub fn fast_path_done(&self) -> Duration {
        let mut taken = Self::lock(&self.0.taken);
        let mut current = Self::lock(&self.0.current);
        let batch = match taken.as_mut() {
            Some(b) if b.took.is_none() && !self.is_pending() => b,
            _ => &mut *current,
        };
        let since = batch.pressed_at.map_or(Duration::ZERO, |t| t.elapsed());
        batch.took.get_or_insert(since);
        since
    }

    /// The loop: take the pending presses for this cycle's inputs (`true` if there were any);
    /// they are answered by [`Self::answer`] after the step.
    pub fn take(&self) -> bool {
        let mut taken = Self::lock(&self.0.taken);
        let mut current = Self::lock(&self.0.current);
        if !self.0.pending.swap(false, Ordering::SeqCst) {
            return false;
        }
        let batch = std::mem::take(&mut *current);
        match taken.as_mut() {
            // Not answered yet (a cycle abandoned before its step): answer them together.
            Some(t) => {
                t.waiters.extend(batch.waiters);
                t.took = t.took.or(batch.took);
            }
            None => *taken = Some(batch),
        }
        true
    }

    /// The loop: answer every caller of the taken presses (after the cycle that latched the
    /// stop).
    pub fn answer(&self, state: State) {
        let Some(batch) = Self::lock(&self.0.taken).take() else { return };
        let took = batch.took.unwrap_or_else(|| batch.pressed_at.map_or(Duration::ZERO, |t| t.elapsed()));
        for w in batch.waiters {
            // A caller that stopped waiting is no concern of the loop.
            let _ = w.send(EStopDone { state, took });
        }
    }
}

#[derive(Debug, Default)]
struct ShutdownInner {
    count: AtomicU32,
    notify: Notify,
}

/// Graceful-shutdown requests (SIGINT, SIGTERM, a caller's own): the first starts the graceful
/// shutdown, a second forces zero and open at once.
#[derive(Debug, Clone, Default)]
pub struct ShutdownRequest(Arc<ShutdownInner>);

impl ShutdownRequest {
    /// No request yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// One more request.
    pub fn request(&self) {
        self.0.count.fetch_add(1, Ordering::SeqCst);
        self.0.notify.notify_one();
    }

    /// How many requests so far.
    #[must_use]
    pub fn count(&self) -> u32 {
        self.0.count.load(Ordering::SeqCst)
    }

    /// Resolves when the count exceeds `seen`.
    pub async fn beyond(&self, seen: u32) {
        loop {
            if self.count() > seen {
                return;
            }
            self.0.notify.notified().await;
        }
    }

    /// Forward SIGINT and SIGTERM (what Ctrl-C, `systemctl stop` and `docker stop` send) as
    /// requests, for as long as the returned future runs; prints one line per signal.
    ///
    /// # Errors
    /// When the signal handlers cannot be installed.
    pub async fn forward_signals(self) -> std::io::Result<()> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let mut int = signal(SignalKind::interrupt())?;
            let mut term = signal(SignalKind::terminate())?;
            loop {
                let name = tokio::select! {
                    _ = int.recv() => "Ctrl-C (SIGINT)",
                    _ = term.recv() => "SIGTERM",
                };
                self.announce(name);
            }
        }
        #[cfg(not(unix))]
        {
            loop {
                tokio::signal::ctrl_c().await?;
                self.announce("Ctrl-C");
            }
        }
    }

    fn announce(&self, name: &str) {
        self.request();
        if self.count() == 1 {
            println!(
                "{name}: shutting down gracefully (ramp to zero, open contactors, verify); again to force"
            );
        } else {
            println!("{name} again: forcing zero power and open contactors now");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_press_wakes_the_waiter_and_is_answered_with_its_timing() {
        let t = EStopTrigger::new();
        let rx = t.press();
        tokio::time::timeout(Duration::from_secs(1), t.pressed()).await.unwrap();
        assert!(t.take());
        assert!(!t.is_pending());
        let _ = t.fast_path_done();
        t.answer(State::Stopped);
        let done = rx.await.unwrap();
        assert_eq!(done.state, State::Stopped);
        assert!(done.took < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_press_while_a_cycle_answers_earlier_ones_waits_for_its_own_fast_path() {
        let t = EStopTrigger::new();
        let mut first = t.press();
        let _ = t.fast_path_done();
        assert!(t.take());
        // A second press after the loop took the first, before it answered.
        let mut second = t.press();
        assert!(!t.fast_path_taken(), "the second press has had no fast path yet");
        t.answer(State::Stopped);
        assert!(first.try_recv().is_ok(), "the first press is answered");
        assert!(second.try_recv().is_err(), "the second press waits for its own cycle");
        // The next cycle: its own fast path, then its answer.
        let _ = t.fast_path_done();
        assert!(t.fast_path_taken());
        assert!(t.take());
        t.answer(State::Stopped);
        assert!(second.try_recv().is_ok());
    }

    #[tokio::test]
    async fn shutdown_counts_requests() {
        let s = ShutdownRequest::new();
        assert_eq!(s.count(), 0);
        s.request();
        tokio::time::timeout(Duration::from_secs(1), s.beyond(0)).await.unwrap();
        s.request();
        assert_eq!(s.count(), 2);
    }
}
