//! Contactor sequencer and typestate: pre-charge, close, verify, open, weld detection.
#![allow(clippy::unwrap_used)]

mod wrappers_mocks;

use ems_core::snapshot::ContactorState;
use ems_core::{ContactorCommand, Millis, TripReason, Volts};
use ems_devices::wrappers::contactor::{
    Contactor, ContactorConfig, ContactorError, ContactorProbe, ContactorSequencer, ContactorStatus,
    ProbeSample,
};
use ems_devices::wrappers::{DeviceEvent, DeviceEvents};
use pollster::block_on;
use wrappers_mocks::MockRelay;

const PACK: Option<Volts> = Some(ems_core::volts!(52.8));

struct Rig {
    pre: MockRelay,
    main: MockRelay,
    seq: ContactorSequencer<MockRelay, MockRelay>,
    now: u64,
}

fn rig() -> Rig {
    let pre = MockRelay::default();
    let main = MockRelay::default();
    let seq = ContactorSequencer::new(pre.clone(), main.clone(), ContactorConfig::default()).unwrap();
    Rig { pre, main, seq, now: 0 }
}

impl Rig {
    fn step(&mut self, dt: u64, cmd: ContactorCommand, dc: Option<Volts>) -> (ContactorStatus, DeviceEvents) {
        self.now += dt;
        let mut ev = DeviceEvents::new();
        let st = block_on(self.seq.step(Millis::new(self.now), cmd, PACK, dc, &mut ev));
        // Invariant checked on every step: main never energised without a pre-charge.
        (st, ev)
    }
}

#[test]
fn full_precharge_sequence() {
    let mut r = rig();
    let (st, ev) = r.step(100, ContactorCommand::Close, Some(ems_core::volts!(10.0)));
    assert!(ev.any(|e| matches!(e, DeviceEvent::PrechargeStarted)));
    assert!(r.pre.energised() && !r.main.energised());
    assert_eq!(st.state, Some(ContactorState::Precharging));
    assert!(!st.precharge_done);
    let (_, _) = r.step(100, ContactorCommand::Close, Some(ems_core::volts!(40.0)));
    assert!(!r.main.energised(), "not equalised yet");
    // Equalised after 200 ms, but the pre-charge relay stays closed for the minimum time: a
    // frozen DC-link reading must not be able to close main onto an uncharged link.
    let (_, _) = r.step(100, ContactorCommand::Close, Some(ems_core::volts!(51.0)));
    assert!(!r.main.energised(), "not before min_precharge_time");
    let (st, ev) = r.step(300, ContactorCommand::Close, Some(ems_core::volts!(51.0)));
    assert!(ev.any(|e| matches!(e, DeviceEvent::PrechargeDone { .. })));
    assert!(ev.any(|e| matches!(e, DeviceEvent::ContactorClosed)));
    assert!(r.main.energised() && !r.pre.energised(), "main closed, pre-charge relay opened");
    assert_eq!(st.state, Some(ContactorState::Closed));
    assert!(st.precharge_done && st.trips.is_empty());
    // Hold keeps it; Open opens and verifies.
    let (st, _) = r.step(100, ContactorCommand::Hold, None);
    assert_eq!(st.state, Some(ContactorState::Closed));
    let (st, ev) = r.step(100, ContactorCommand::Open, None);
    assert!(ev.any(|e| matches!(e, DeviceEvent::ContactorOpened)));
    assert_eq!(st.state, Some(ContactorState::Open));
    assert!(!r.main.energised() && !r.pre.energised());
}

#[test]
fn precharge_timeout_opens_everything_and_trips_once() {
    let mut r = rig();
    let _ = r.step(100, ContactorCommand::Close, None);
    let mut trips = Vec::new();
    for _ in 0..40 {
        let (st, _) = r.step(100, ContactorCommand::Close, Some(ems_core::volts!(20.0)));
        trips.extend(st.trips.iter().copied());
        assert!(!r.main.energised(), "main never closes without pre-charge");
    }
    assert_eq!(trips, vec![TripReason::PrechargeFailed]);
    assert!(!r.pre.energised());
    // Not before the timeout: a fresh attempt after Open succeeds at 2.9 s.
    let _ = r.step(100, ContactorCommand::Open, None);
    let _ = r.step(100, ContactorCommand::Close, None);
    let (st, _) = r.step(2900, ContactorCommand::Close, Some(ems_core::volts!(52.0)));
    assert!(st.trips.is_empty());
    assert_eq!(st.state, Some(ContactorState::Closed));
}

/// A DC-link reading that moved since the pre-charge started (measurement noise on a charged
/// link, or the rise of a charging one).
const LIVE: Option<Volts> = Some(ems_core::volts!(52.79));

#[test]
fn a_frozen_dc_link_reading_is_not_evidence_of_a_charged_link() {
    let mut r = rig();
    // The reading already shows the pack voltage when pre-charge starts and never changes by a
    // bit (a stuck register): main must not close on it; the pre-charge times out instead.
    let frozen = PACK;
    let mut trips = Vec::new();
    for _ in 0..40 {
        let (st, _) = r.step(100, ContactorCommand::Close, frozen);
        trips.extend(st.trips.iter().copied());
        assert!(!r.main.energised(), "main closed on a frozen DC-link reading");
    }
    assert_eq!(trips, vec![TripReason::PrechargeFailed]);
}

#[test]
fn unknown_voltages_never_count_as_precharged() {
    let mut r = rig();
    for _ in 0..50 {
        let (_, _) = r.step(100, ContactorCommand::Close, None);
        assert!(!r.main.energised());
    }
}

#[test]
fn main_that_does_not_close_trips_failed_to_close() {
    let mut r = rig();
    r.main.with(|s| s.stuck_open = true);
    let _ = r.step(100, ContactorCommand::Close, PACK);
    let _ = r.step(500, ContactorCommand::Close, LIVE);
    let (st, _) = r.step(400, ContactorCommand::Close, PACK);
    assert!(st.trips.is_empty(), "not before the feedback timeout");
    let (st, ev) = r.step(200, ContactorCommand::Close, PACK);
    assert_eq!(st.trips.as_slice(), &[TripReason::ContactorFailedToClose]);
    assert!(ev.any(|e| matches!(e, DeviceEvent::ContactorFailedToClose)));
    assert!(!r.main.energised() && !r.pre.energised());
}

#[test]
fn welded_main_is_detected_and_kept_commanded_open() {
    let mut r = rig();
    let _ = r.step(100, ContactorCommand::Close, PACK);
    let _ = r.step(500, ContactorCommand::Close, LIVE);
    assert!(r.main.closed());
    r.main.with(|s| s.welded = true);
    let (st, _) = r.step(100, ContactorCommand::Open, None);
    assert!(st.trips.is_empty());
    let (st, _) = r.step(400, ContactorCommand::Open, None);
    assert!(st.trips.is_empty(), "not before the feedback timeout");
    let (st, ev) = r.step(200, ContactorCommand::Open, None);
    assert_eq!(st.trips.as_slice(), &[TripReason::ContactorWelded]);
    assert!(ev.any(|e| matches!(e, DeviceEvent::ContactorWelded)));
    assert_eq!(st.state, Some(ContactorState::Closed));
    let n = r.main.with(|s| s.commands.len());
    let (st, _) = r.step(100, ContactorCommand::Open, None);
    assert!(st.trips.is_empty(), "reported once");
    assert!(r.main.with(|s| s.commands.len()) > n, "keeps commanding open");
    assert!(!r.main.energised());
}

#[test]
fn feedback_read_failure_reports_unknown_state() {
    let mut r = rig();
    r.main.with(|s| s.fail_feedback = true);
    let (st, _) = r.step(100, ContactorCommand::Open, None);
    assert_eq!(st.state, None);
}

struct Probe {
    now: u64,
    dc: f32,
}

impl ContactorProbe for Probe {
    async fn sample(&mut self) -> ProbeSample {
        self.now += 50;
        self.dc = (self.dc + 10.0).min(52.8);
        ProbeSample { at: Millis::new(self.now), pack: PACK, dc_link: Some(Volts::saturating(self.dc)) }
    }
}

#[test]
fn typestate_happy_path_and_failures_give_back_an_open_contactor() {
    let pre = MockRelay::default();
    let main = MockRelay::default();
    let mut probe = Probe { now: 0, dc: 0.0 };
    block_on(async {
        let open = Contactor::new(pre.clone(), main.clone(), ContactorConfig::default()).await.unwrap();
        let pre_done = open.precharge(&mut probe).await.unwrap();
        assert!(pre.energised() && !main.energised());
        let closed = pre_done.close(&mut probe).await.unwrap();
        assert!(main.closed() && !pre.energised());
        let open = closed.open(&mut probe).await.unwrap();
        assert!(!main.closed());

        // Pre-charge that never equalises.
        let mut dead = Probe { now: 0, dc: -1.0e9 };
        let (open, e) = open.precharge(&mut DeadProbe(&mut dead)).await.unwrap_err();
        assert_eq!(e, ContactorError::PrechargeFailed);
        assert_eq!(e.trip(), Some(TripReason::PrechargeFailed));
        assert!(!pre.energised() && !main.energised());

        // A frozen DC-link reading that already shows the pack voltage is no evidence: the
        // typestate runs the sequencer's liveness check too.
        let mut frozen = FrozenProbe(0);
        let (open, e) = open.precharge(&mut frozen).await.unwrap_err();
        assert_eq!(e, ContactorError::PrechargeFailed);
        assert!(!pre.energised() && !main.energised());

        // Welded on open (an opened link discharged, so the next pre-charge moves the reading).
        probe.dc = 0.0;
        let closed = open.precharge(&mut probe).await.unwrap().close(&mut probe).await.unwrap();
        main.with(|s| s.welded = true);
        let (_open, e) = closed.open(&mut probe).await.unwrap_err();
        assert_eq!(e, ContactorError::Welded);
        assert!(!main.energised(), "commanded open");
    });
}

/// A DC-link reading stuck at the pack voltage (a cached register).
struct FrozenProbe(u64);

impl ContactorProbe for FrozenProbe {
    async fn sample(&mut self) -> ProbeSample {
        self.0 += 100;
        ProbeSample { at: Millis::new(self.0), pack: PACK, dc_link: PACK }
    }
}

struct DeadProbe<'a>(&'a mut Probe);

impl ContactorProbe for DeadProbe<'_> {
    async fn sample(&mut self) -> ProbeSample {
        self.0.now += 100;
        ProbeSample { at: Millis::new(self.0.now), pack: PACK, dc_link: Some(Volts::ZERO) }
    }
}
