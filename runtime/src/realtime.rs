//! The real-time loop: [`run`] paces [`Runtime::cycle`] against the clock, watches the E-stop
//! between cycles, and carries out the graceful shutdown.

use crate::cycle::{CycleFlags, Runtime};
use crate::fast::GridPath;
use crate::handles::ShutdownRequest;
use crate::hook::{CycleTiming, Hook};
use crate::island::IslandPath;
use crate::site::SiteDevices;
use ems_core::emergency::ShutdownPhase;
use ems_core::persist::StateStore;
use ems_core::{Millis, State};
use ems_devices::io::Interrupt;
use std::time::Duration;
use tokio::time::Instant;

/// How long the release at the end may take.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// Which time the controller runs on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Clock {
    /// A real site: control time is the monotonic wall time since the start, so ramps, feedback
    /// checks and timeouts take as long as they say, whatever the loop's pace.
    Wall,
    /// A simulated site whose physics advance by one cycle per cycle ([`Hook::advance`]):
    /// control time is `cycles × cycle`, paced at `speed` × wall time.
    Simulated {
        /// Speed-up against wall time (> 0).
        speed: f64,
    },
}

/// How [`run`] runs.
#[derive(Debug, Clone, PartialEq)]
pub struct RealtimeOptions {
    /// The control cycle.
    pub cycle: Millis,
    /// The clock.
    pub clock: Clock,
    /// Shut down gracefully after this much control time (`None`: until a signal).
    pub duration: Option<Millis>,
    /// A graceful shutdown that has not completed after this long (wall time on a real site,
    /// control time on a simulated one) forces zero and open.
    pub shutdown_timeout: Duration,
    /// The E-stop input is read at least this often while the loop waits or devices are busy.
    pub estop_tick: Duration,
}

impl Default for RealtimeOptions {
    fn default() -> Self {
        Self {
            cycle: Millis::new(100),
            clock: Clock::Wall,
            duration: None,
            shutdown_timeout: Duration::from_secs(30),
            estop_tick: Duration::from_millis(1),
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// The graceful shutdown completed: zero power and open contactors verified.
    Complete,
    /// The graceful shutdown failed (the controller reports why in its events).
    Failed,
    /// The graceful shutdown did not complete within the timeout; zero and open were forced.
    TimedOut,
    /// A second shutdown request forced zero and open at once.
    Forced,
}

impl core::fmt::Display for RunEnd {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Complete => "Complete",
            Self::Failed => "Failed",
            Self::TimedOut => "TimedOut (zero and open forced)",
            Self::Forced => "Forced (zero and open)",
        })
    }
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSummary {
    /// How it ended.
    pub end: RunEnd,
    /// The final state (persisted).
    pub state: State,
    /// The last control time.
    pub now: Millis,
    /// Cycles run.
    pub cycles: u64,
    /// Whether the release (zero, open, inverter settings restored) succeeded, or why not.
    pub released: Result<(), String>,
    /// Whether the final state could not be persisted, and why.
    pub persist_error: Option<String>,
}

fn scaled(clock: Clock, ms: u64) -> Duration {
    #[allow(clippy::cast_precision_loss)] // milliseconds of a run fit f64 exactly
    let ms_f = ms as f64;
    match clock {
        Clock::Wall => Duration::from_millis(ms),
        Clock::Simulated { speed } => Duration::from_secs_f64(ms_f / 1000.0 / speed),
    }
}

/// The shutdown timeout in wall time (a simulated site's is control time, scaled).
fn scaled_timeout(opts: &RealtimeOptions) -> Duration {
    let ms = u64::try_from(opts.shutdown_timeout.as_millis()).unwrap_or(u64::MAX);
    scaled(opts.clock, ms)
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Run the loop until the duration ends or a shutdown is requested, carry out the graceful
/// shutdown, persist and release. Needs a runtime with [`Runtime::watch_estop`] set and a
/// tokio runtime with its timer; meant for the control thread ([`crate::thread`]).
///
/// Pacing: cycle `k` is due at `start + k × cycle` (scaled by the speed on a simulated site).
/// A cycle that starts late reports its lateness ([`Hook::timing`]); on a real site, slots
/// missed by more than a cycle are skipped rather than run back to back. A new E-stop press
/// (input or software) cuts the wait short and the next cycle starts at once; a shutdown
/// request does not (the shutdown proceeds at the cycle's pace, in wall time on a real site),
/// except a second one, which forces zero and open at once.
pub async fn run<D, S, G, I, H>(
    rt: &mut Runtime<D, S, G, I>,
    hook: &mut H,
    opts: &RealtimeOptions,
    shutdown: &ShutdownRequest,
) -> RunSummary
where
    D: SiteDevices,
    S: StateStore,
    G: GridPath,
    I: IslandPath,
    H: Hook + ?Sized,
{
    let cycle_ms = opts.cycle.get().max(1);
    let start = Instant::now();
    let mut k: u64 = 0;
    let mut cycles: u64 = 0;
    let mut shutdown_since: Option<(Millis, Instant)> = None;
    let mut now: Millis;
    let end = loop {
        let due = start + scaled(opts.clock, k.saturating_mul(cycle_ms));
        let began = Instant::now();
        let lateness = began.saturating_duration_since(due);
        now = match opts.clock {
            Clock::Wall => Millis::new(elapsed_ms(start)),
            Clock::Simulated { .. } => Millis::new(k.saturating_mul(cycle_ms)),
        };
        let requests = shutdown.count();
        if requests >= 2 {
            let _ = rt.force_zero_open(now).await;
            break RunEnd::Forced;
        }
        if let Some((at_ms, at)) = shutdown_since {
            let waited = match opts.clock {
                Clock::Wall => at.elapsed(),
                Clock::Simulated { .. } => Duration::from_millis(now.since(at_ms).get()),
            };
            if waited >= opts.shutdown_timeout {
                tracing::error!(target: "audit", "graceful shutdown not complete after {waited:?}: forcing zero and open");
                let _ = rt.force_zero_open(now).await;
                break RunEnd::TimedOut;
            }
        }
        let begin_shutdown =
            shutdown_since.is_none() && (requests >= 1 || opts.duration.is_some_and(|d| now >= d));
        if begin_shutdown {
            shutdown_since = Some((now, Instant::now()));
            tracing::info!(target: "audit", "graceful shutdown requested");
        }
        let flags = CycleFlags { shutdown: begin_shutdown, emergency_stop: false };
        // A hung device must not hold up a forced end either: a second request, or the
        // shutdown timeout, abandons the cycle in flight.
        let timeout_at = shutdown_since.map(|(_, at)| at + scaled_timeout(opts));
        let forced = async {
            tokio::select! {
                () = shutdown.beyond(1) => RunEnd::Forced,
                () = sleep_until_opt(timeout_at) => RunEnd::TimedOut,
            }
        };
        let r = tokio::select! {
            biased;
            r = rt.cycle(now, flags, hook) => r,
            end = forced => {
                tracing::error!(target: "audit", "{end}: abandoning the cycle in flight");
                let _ = rt.force_zero_open(now).await;
                break end;
            }
        };
        cycles += 1;
        hook.timing(CycleTiming { duration: began.elapsed(), lateness });
        if shutdown_since.is_some() {
            match r.output.shutdown {
                ShutdownPhase::Complete => break RunEnd::Complete,
                ShutdownPhase::Failed => break RunEnd::Failed,
                ShutdownPhase::Inactive
                | ShutdownPhase::RampingDown { .. }
                | ShutdownPhase::OpeningContactors { .. } => {}
            }
        }
        k += 1;
        if let Clock::Simulated { .. } = opts.clock {
            hook.advance(Millis::new(k.saturating_mul(cycle_ms)), Millis::new(cycle_ms));
        } else {
            let slots = elapsed_ms(start) / cycle_ms;
            if k <= slots {
                // Overrun: the missed slots are skipped, not run back to back; the overrun
                // shows in this cycle's duration, and the next cycle starts on its own slot.
                k = slots + 1;
            }
        }
        wait_between(rt, hook, opts, (start, now, k.saturating_mul(cycle_ms)), shutdown).await;
    };
    let persist_error = rt.persist().err().map(|e| e.to_string());
    // A hung link must not keep the process from ending: the release is bounded (the
    // contactors were commanded open before it; the inverter's own revert timer covers the rest).
    let released = match tokio::time::timeout(RELEASE_TIMEOUT, rt.release(now)).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {RELEASE_TIMEOUT:?}")),
    };
    RunSummary { end, state: rt.controller().state(), now, cycles, released, persist_error }
}

/// Between two cycles: wait until the next cycle at control time `next_ms` with the E-stop
/// watched, running the grid services' fast ticks on their slots ([`crate::fast`]); a new
/// E-stop press, an interrupted tick or a second shutdown request ends the wait at once.
async fn wait_between<D, S, G, I, H>(
    rt: &mut Runtime<D, S, G, I>,
    hook: &mut H,
    opts: &RealtimeOptions,
    (start, now, next_ms): (Instant, Millis, u64),
    shutdown: &ShutdownRequest,
) where
    D: SiteDevices,
    S: StateStore,
    G: GridPath,
    I: IslandPath,
    H: Hook + ?Sized,
{
    let deadline = start + scaled(opts.clock, next_ms);
    // The grid services' fast ticks between this cycle and the next (crate::fast): each
    // on its own slot after this cycle's start, missed slots skipped on a real site.
    let fast_ms = rt.fast_period().map(|p| p.get().max(1));
    let cycle_at = now.get();
    let mut j: u64 = 1;
    let mut seen = shutdown.count();
    loop {
        let tick_ms = fast_ms.map(|p| cycle_at.saturating_add(j.saturating_mul(p))).filter(|t| *t < next_ms);
        let until = tick_ms.map_or(deadline, |t| start + scaled(opts.clock, t));
        tokio::select! {
            i = rt.wait(now, until, hook) => {
                let Some(t) = tick_ms else { break };
                if i != Interrupt::None {
                    break;
                }
                let tick_now = match opts.clock {
                    Clock::Wall => Millis::new(elapsed_ms(start)),
                    Clock::Simulated { .. } => Millis::new(t),
                };
                let tick = rt.fast_tick(tick_now, hook).await;
                if tick.is_some_and(|f| f.interrupt != Interrupt::None) {
                    break;
                }
                j += 1;
                if let (Clock::Wall, Some(p)) = (opts.clock, fast_ms) {
                    // Overrun: the missed fast slots are skipped, not run back to back.
                    let slot = elapsed_ms(start).saturating_sub(cycle_at) / p;
                    j = j.max(slot + 1);
                }
            }
            () = shutdown.beyond(seen) => {
                seen = shutdown.count();
                if seen >= 2 {
                    break;
                }
            }
        }
    }
}
