//! Fuzz target: the decisions, not only the decoders (issue 11 item 8). Arbitrary sequences of
//! snapshots (every signal with any value, NaN/±inf/out-of-range turned into units through
//! `saturating` the way broken upstream arithmetic could, good/stale/invalid, timestamps in the
//! past and the future), requests, E-stops, shutdowns, mode settings of every kind (valid or
//! not), device trips, overrides (valid or not), plan slots, provider schedules, local minutes,
//! grid-service requests (fixed ones of any shape, or the real `ems-grid` frequency services —
//! FCR-N, FCR-D up/down, FFR, LFSM droop with LER management — on the fuzzed frequency) and
//! time steps of 0..=5000 ms drive `Controller::step_with`; after
//! every cycle the invariant of design.md §6 is checked (the proptest version is
//! control/tests/invariant.rs). A violation panics with the rule's name.
//!
//! Encoding: a zero byte means "as before / healthy", so short inputs already reach RUNNING
//! and the fuzzer spends its mutations on the decisions.
#![no_main]

use ems_control::{
    CapSlot, CapSlots, ChargeOnlyConfig, ChargeSource, CommandSource, Controller, ControllerConfig,
    FixedRequest, GridAction, GridRequest, Inputs, ModeSetting, Output, Override, PeakShavingConfig,
    PlanTarget, ProviderOperation, ProviderTarget, RampRate, Reserve, SelfConsumptionConfig, MAX_CAP_SLOTS,
};
use ems_core::snapshot::{BmsAlarms, ContactorState, EStopInput, InverterState};
use ems_core::{
    Amps, Celsius, ContactorCommand, Hertz, Measurement, Millis, Percent, Snapshot, State, TransitionRequest,
    TripReason, Volts, WattHours, Watts,
};
use ems_grid::params::{DroopParams, FfrLevel, FfrParams, FfrSupport, ParamSet};
use ems_grid::{Droop, FcrD, FcrN, Ffr, FrequencyServices, LerConfig};
use libfuzzer_sys::arbitrary::{Result, Unstructured};

const MAX_CYCLES: usize = 400;
const MAX_AGE: Millis = Millis::new(2_000);

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    // Running out of bytes ends the sequence; the checks already ran on every cycle.
    let _ = run(&mut u);
});

/// Any f32: 0 keeps `prev`, most bytes a value in `lo..hi`, some the classic specials, some
/// any bit pattern.
fn raw(u: &mut Unstructured, prev: f32, lo: f32, hi: f32) -> Result<f32> {
    const SPECIAL: [f32; 16] = [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        1e30,
        -1e30,
        0.0,
        -0.0,
        f32::MIN_POSITIVE,
        f32::MAX,
        f32::MIN,
        1.0e8,
        -1.0e8,
        1.0e-40,
        -1.0,
        1.0,
        f32::EPSILON,
    ];
    let sel: u8 = u.arbitrary()?;
    Ok(match sel {
        0..=127 => prev,
        128..=223 => {
            let frac = f32::from(u.arbitrary::<u16>()?) / f32::from(u16::MAX);
            lo + (hi - lo) * frac
        }
        224..=239 => SPECIAL[usize::from(sel - 224)],
        240..=247 => [lo, hi, lo - 1.0, hi + 1.0, lo * 10.0, hi * 10.0, -hi, -lo][usize::from(sel - 240)],
        248..=255 => f32::from_bits(u.arbitrary()?),
    })
}

fn watts(u: &mut Unstructured, lo: f32, hi: f32) -> Result<Watts> {
    let mid = (lo + hi) / 2.0;
    Ok(Watts::saturating(raw(u, mid, lo, hi)?))
}

fn opt_watts(u: &mut Unstructured, lo: f32, hi: f32) -> Result<Option<Watts>> {
    Ok(if u.arbitrary::<bool>()? { Some(watts(u, lo, hi)?) } else { None })
}

/// A measurement of `v` at `now` with a fuzzed quality: good (most), stale, invalid, or good
/// with a timestamp in the past or in the future.
fn meas<T: Copy>(u: &mut Unstructured, v: T, now: u64) -> Result<Measurement<T>> {
    let sel: u8 = u.arbitrary()?;
    Ok(match sel {
        0..=223 => Measurement::good(v, Millis::new(now), MAX_AGE),
        224..=239 => Measurement::good(v, Millis::new(now.saturating_sub(10_000)), MAX_AGE),
        240..=247 => Measurement::invalid(v, MAX_AGE),
        248..=251 => {
            Measurement::good(v, Millis::new(now.saturating_sub(u64::from(u.arbitrary::<u16>()?))), MAX_AGE)
        }
        252..=255 => {
            Measurement::good(v, Millis::new(now.saturating_add(u64::from(u.arbitrary::<u16>()?))), MAX_AGE)
        }
    })
}

/// The analogue signals, persisted between cycles (slow physical values barely move on a
/// healthy site; a jump every cycle would only exercise the trend trip).
struct Signals {
    v: [f32; 15],
}

/// (nominal, lo, hi) of each analogue signal.
const RANGES: [(f32, f32, f32); 15] = [
    (50.0, 0.0, 100.0),        // soc
    (52.8, 40.0, 60.0),        // pack V
    (0.0, -150.0, 150.0),      // pack A
    (3.3, 2.4, 3.7),           // cell V min
    (3.3, 2.4, 3.7),           // cell V max
    (24.0, -25.0, 65.0),       // cell T min
    (25.0, -25.0, 65.0),       // cell T max
    (5000.0, -1000.0, 8000.0), // BMS charge limit
    (5000.0, -1000.0, 8000.0), // BMS discharge limit
    (0.0, -6000.0, 6000.0),    // inverter P
    (35.0, 0.0, 100.0),        // inverter T
    (0.0, -20000.0, 20000.0),  // grid P
    (230.0, 180.0, 260.0),     // grid V
    (50.0, 47.0, 52.0),        // grid f
    (0.0, 0.0, 8000.0),        // PV
];

fn snapshot(
    u: &mut Unstructured,
    sig: &mut Signals,
    now: u64,
    last: ContactorCommand,
    rated: Watts,
) -> Result<Snapshot> {
    for (v, (_, lo, hi)) in sig.v.iter_mut().zip(RANGES) {
        *v = raw(u, *v, lo, hi)?;
    }
    let f = sig.v;
    let mut s = Snapshot::unknown(rated);
    s.battery.soc = meas(u, Percent::saturating(f[0]), now)?;
    s.battery.pack_voltage = meas(u, Volts::saturating(f[1]), now)?;
    s.battery.pack_current = meas(u, Amps::saturating(f[2]), now)?;
    s.battery.cell_voltage_min = meas(u, Volts::saturating(f[3]), now)?;
    s.battery.cell_voltage_max = meas(u, Volts::saturating(f[4]), now)?;
    s.battery.cell_temp_min = meas(u, Celsius::saturating(f[5]), now)?;
    s.battery.cell_temp_max = meas(u, Celsius::saturating(f[6]), now)?;
    s.battery.bms_charge_limit = meas(u, Watts::saturating(f[7]), now)?;
    s.battery.bms_discharge_limit = meas(u, Watts::saturating(f[8]), now)?;
    s.inverter.active_power = meas(u, Watts::saturating(f[9]), now)?;
    s.inverter.temperature = meas(u, Celsius::saturating(f[10]), now)?;
    s.grid.active_power = meas(u, Watts::saturating(f[11]), now)?;
    s.grid.voltage = meas(u, Volts::saturating(f[12]), now)?;
    s.grid.frequency = meas(u, Hertz::saturating(f[13]), now)?;
    s.pv_power = meas(u, Watts::saturating(f[14]), now)?;

    let alarms = match u.arbitrary::<u8>()? {
        0..=239 => 0,
        _ => u.arbitrary::<u16>()?,
    };
    s.battery.bms_alarms = meas(u, BmsAlarms::from_bits(alarms), now)?;
    let ready = u.arbitrary::<u8>()? < 248;
    s.battery.bms_ready = meas(u, ready, now)?;
    let inv = match u.arbitrary::<u8>()? {
        0..=247 => InverterState::Running,
        248..=251 => InverterState::Standby,
        _ => InverterState::Fault,
    };
    s.inverter.state = meas(u, inv, now)?;
    // Mostly a healthy contactor that follows the last command; sometimes any reading.
    let contactor = match u.arbitrary::<u8>()? {
        0..=239 => match last {
            ContactorCommand::Open => ContactorState::Open,
            ContactorCommand::Close | ContactorCommand::Hold => ContactorState::Closed,
        },
        240..=245 => ContactorState::Open,
        246..=250 => ContactorState::Precharging,
        _ => ContactorState::Closed,
    };
    s.contactor = meas(u, contactor, now)?;
    let precharge = u.arbitrary::<u8>()? < 248;
    s.precharge_done = meas(u, precharge, now)?;
    let estop = if u.arbitrary::<u8>()? < 250 { EStopInput::Released } else { EStopInput::Pressed };
    s.estop = meas(u, estop, now)?;
    Ok(s)
}

fn request(u: &mut Unstructured) -> Result<Option<TransitionRequest>> {
    Ok(match u.arbitrary::<u8>()? {
        0..=199 => None,
        200..=214 => Some(TransitionRequest::BootComplete),
        215..=234 => Some(TransitionRequest::Start),
        235..=241 => Some(TransitionRequest::Stop),
        242..=248 => Some(TransitionRequest::Acknowledge),
        _ => Some(TransitionRequest::Reset),
    })
}

fn cap_slots(u: &mut Unstructured) -> Result<CapSlots> {
    let n = u.int_in_range(0..=MAX_CAP_SLOTS + 1)?;
    let mut slots = Vec::with_capacity(n);
    for _ in 0..n {
        slots.push(CapSlot {
            start_minute: u.arbitrary()?,
            import_cap: watts(u, -500.0, 15000.0)?,
            export_cap: watts(u, -500.0, 15000.0)?,
        });
    }
    // Mostly ordered slots (valid), sometimes as decoded (often refused).
    if u.arbitrary::<bool>()? {
        slots.sort_by_key(|s| s.start_minute);
        slots.dedup_by_key(|s| s.start_minute);
    }
    Ok(CapSlots::from_slice(&slots).unwrap_or_default())
}

fn mode(u: &mut Unstructured) -> Result<Option<ModeSetting>> {
    Ok(Some(match u.arbitrary::<u8>()? {
        0..=219 => return Ok(None),
        220..=224 => ModeSetting::Passive,
        225..=229 => ModeSetting::Manual { setpoint: watts(u, -20000.0, 20000.0)? },
        230..=234 => ModeSetting::ChargeOnly(ChargeOnlyConfig {
            source: if u.arbitrary::<bool>()? {
                ChargeSource::PvSurplus
            } else {
                ChargeSource::Fixed(watts(u, -1000.0, 9000.0)?)
            },
            soc_target: Percent::saturating(raw(u, 95.0, 0.0, 100.0)?),
            max_grid_import: watts(u, -100.0, 20000.0)?,
        }),
        235..=244 => ModeSetting::SelfConsumption(SelfConsumptionConfig {
            grid_setpoint: watts(u, -3000.0, 3000.0)?,
            reserve_soc: Percent::saturating(raw(u, 10.0, 0.0, 100.0)?),
            max_charge: opt_watts(u, -500.0, 8000.0)?,
            max_discharge: opt_watts(u, -500.0, 8000.0)?,
        }),
        _ => ModeSetting::PeakShaving(PeakShavingConfig {
            import_cap: watts(u, -500.0, 15000.0)?,
            export_cap: watts(u, -500.0, 15000.0)?,
            recharge_below: watts(u, -5000.0, 15000.0)?,
            max_recharge: opt_watts(u, -500.0, 8000.0)?,
            reserve_soc: Percent::saturating(raw(u, 20.0, 0.0, 100.0)?),
            target_soc: Percent::saturating(raw(u, 80.0, 0.0, 100.0)?),
            slots: cap_slots(u)?,
        }),
    }))
}

fn device_trips(u: &mut Unstructured) -> Result<Vec<TripReason>> {
    const KINDS: [TripReason; 7] = [
        TripReason::SetpointNotApplied,
        TripReason::PrechargeFailed,
        TripReason::ContactorWelded,
        TripReason::ContactorFailedToClose,
        TripReason::InverterFault,
        TripReason::ContactorMismatch,
        TripReason::ShutdownFailed,
    ];
    let mut trips = Vec::new();
    while u.arbitrary::<u8>()? >= 250 {
        trips.push(KINDS[u.choose_index(KINDS.len())?]);
    }
    Ok(trips)
}

/// A held input: 0..=127 keeps the previous value, 128..=191 clears it, above decodes a new one.
fn hold<T: Copy>(
    u: &mut Unstructured,
    prev: Option<T>,
    new: impl FnOnce(&mut Unstructured) -> Result<T>,
) -> Result<Option<T>> {
    Ok(match u.arbitrary::<u8>()? {
        0..=127 => prev,
        128..=191 => None,
        _ => Some(new(u)?),
    })
}

fn an_override(u: &mut Unstructured) -> Result<Override> {
    Ok(match u.int_in_range(0u8..=3)? {
        0 => Override::NoDischarge,
        1 => Override::LimitCharge { max_charge_power: watts(u, -500.0, 8000.0)? },
        2 => Override::LimitDischarge { max_discharge_power: watts(u, -500.0, 8000.0)? },
        _ => Override::ForceCharge { power: watts(u, -500.0, 8000.0)? },
    })
}

fn a_plan(u: &mut Unstructured) -> Result<PlanTarget> {
    let battery = watts(u, -8000.0, 8000.0)?;
    let grid = if u.arbitrary::<bool>()? { Watts::ZERO } else { watts(u, -20000.0, 20000.0)? };
    Ok(PlanTarget { battery, grid })
}

fn a_provider(u: &mut Unstructured) -> Result<ProviderTarget> {
    let operation =
        if u.arbitrary::<bool>()? { ProviderOperation::Charge } else { ProviderOperation::Discharge };
    Ok(ProviderTarget { operation, power: watts(u, -500.0, 20000.0)?, may_export: u.arbitrary()? })
}

fn a_grid_request(u: &mut Unstructured) -> Result<GridRequest> {
    let action = match u.int_in_range(0u8..=2)? {
        0 => GridAction::Idle,
        1 => GridAction::Replace(watts(u, -20000.0, 20000.0)?),
        _ => GridAction::Add(watts(u, -8000.0, 8000.0)?),
    };
    let reserve = if u.arbitrary::<bool>()? {
        Reserve::NONE
    } else {
        Reserve {
            charge: watts(u, -1000.0, 8000.0)?,
            discharge: watts(u, -1000.0, 8000.0)?,
            energy_for_discharge: WattHours::saturating(raw(u, 0.0, -1000.0, 20000.0)?),
            energy_for_charge: WattHours::saturating(raw(u, 0.0, -1000.0, 20000.0)?),
        }
    };
    let ramp =
        if u.arbitrary::<bool>()? { None } else { Some(RampRate::per_second(watts(u, -1000.0, 100_000.0)?)) };
    Ok(GridRequest { action, reserve, ramp })
}

/// The inputs that stay until changed (an override, a plan slot, a schedule, a grid service).
#[derive(Default, Clone, Copy)]
struct Held {
    ess_override: Option<Override>,
    plan: Option<PlanTarget>,
    provider: Option<ProviderTarget>,
    grid: Option<GridRequest>,
    local_minute: Option<u16>,
}

fn config(u: &mut Unstructured) -> Result<ControllerConfig> {
    let mut config = ControllerConfig::default();
    if u.arbitrary::<u8>()? >= 192 {
        config.capacity = Some(WattHours::saturating(raw(u, 10_000.0, -1000.0, 50_000.0)?));
    }
    if u.arbitrary::<u8>()? >= 224 {
        config.ramp = RampRate::per_second(watts(u, -1000.0, 100_000.0)?);
    }
    Ok(config)
}

/// Every frequency service of `ems-grid` as one set, sized from fuzzed capacities (`None` when
/// the numbers are refused, which the services' own tests cover).
fn frequency_services(u: &mut Unstructured, capacity: Option<WattHours>) -> Result<Option<FrequencyServices>> {
    let c = |u: &mut Unstructured| -> Result<Watts> { watts(u, 0.0, 6000.0) };
    let params = if u.arbitrary::<bool>()? { ParamSet::nordic_2025_v1_1() } else { ParamSet::nordic_2023_v1_0() };
    let ler = capacity.and_then(|cap| LerConfig::try_new(cap, ems_core::percent!(5.0), ems_core::percent!(95.0)).ok());
    let level = [FfrLevel::Hz49_7, FfrLevel::Hz49_6, FfrLevel::Hz49_5][u.choose_index(3)?];
    let support = if u.arbitrary::<bool>()? { FfrSupport::Short } else { FfrSupport::Long };
    let (Ok(n), Ok(up), Ok(down), Ok(ffr), Ok(droop)) = (
        FcrN::try_new(c(u)?, params),
        FcrD::up(c(u)?, params),
        FcrD::down(c(u)?, params),
        Ffr::try_new(c(u)?, FfrParams::nordic(level, support)),
        Droop::try_new(DroopParams::lfsm_ou()),
    ) else {
        return Ok(None);
    };
    Ok(Some(
        FrequencyServices::new(ler).with_fcr_n(n).with_fcr_d(up).with_fcr_d(down).with_ffr(ffr).with_droop(droop),
    ))
}

/// The real services' reserve, seen from the outside: what the sources below them asked for
/// (the request minus the service's Δ) stays inside the envelope narrowed by their reserve.
fn check_reserve(out: &Output, capacity: Option<WattHours>, soc: Option<Percent>) {
    let Some(g) = out.grid else { return };
    let r = g.reserve;
    assert!(
        r.charge.get() >= 0.0 && r.discharge.get() >= 0.0 && r.energy_for_charge.get() >= 0.0 && r.energy_for_discharge.get() >= 0.0,
        "rule 'services: reserve >= 0': {r:?}"
    );
    if out.state != State::Running {
        return;
    }
    let baseline = match g.action {
        GridAction::Add(d) => out.requested - d,
        GridAction::Idle => out.requested,
        GridAction::Replace(_) => return,
    };
    let narrowed = r.narrow(&out.envelope, capacity, soc);
    let tol = Watts::saturating(0.5);
    assert!(
        baseline <= narrowed.max_discharge() + tol && -baseline <= narrowed.max_charge() + tol,
        "rule 'services: baseline keeps the reserve': {baseline}"
    );
}

fn run(u: &mut Unstructured) -> Result<()> {
    let rated = match u.arbitrary::<u8>()? {
        0..=239 => ems_core::watts!(5000.0),
        sel => [Watts::ZERO, ems_core::watts!(1.0), ems_core::watts!(100000.0)][usize::from(sel % 3)],
    };
    let config = config(u)?;
    let capacity = config.capacity;
    let Ok(mut c) = Controller::new(config) else { return Ok(()) };
    let mut real = if u.arbitrary::<u8>()? >= 192 { frequency_services(u, capacity)? } else { None };
    let mut sig = Signals { v: RANGES.map(|(nominal, _, _)| nominal) };
    let mut held = Held { local_minute: Some(600), ..Held::default() };
    let mut now = 0u64;
    let mut prev: Option<(u64, Watts)> = None;
    for _ in 0..MAX_CYCLES {
        if u.is_empty() {
            break;
        }
        now += match u.arbitrary::<u8>()? {
            0..=191 => 100,
            _ => u64::from(u.arbitrary::<u16>()? % 5001),
        };
        let snap = snapshot(u, &mut sig, now, c.last_command().contactor(), rated)?;
        let request = request(u)?;
        let reason = if u.arbitrary::<u8>()? < 250 { "fuzz" } else { "" };
        let estop = u.arbitrary::<u8>()? >= 252;
        let shutdown = u.arbitrary::<u8>()? >= 252;
        let set_mode = mode(u)?;
        let trips = device_trips(u)?;
        held = Held {
            ess_override: hold(u, held.ess_override, an_override)?,
            plan: hold(u, held.plan, a_plan)?,
            provider: hold(u, held.provider, a_provider)?,
            grid: hold(u, held.grid, a_grid_request)?,
            local_minute: match u.arbitrary::<u8>()? {
                0..=191 => held.local_minute,
                192..=199 => None,
                200..=247 => Some(u.int_in_range(0..=1439)?),
                _ => Some(u.arbitrary()?),
            },
        };
        let inputs = Inputs {
            request,
            reason,
            emergency_stop: estop,
            shutdown,
            set_mode,
            device_trips: &trips,
            local_minute: held.local_minute,
            ess_override: held.ess_override,
            plan: held.plan,
            provider: held.provider,
            rule: None,
            grid_tie: None,
        };
        let soc = snap.battery.soc.value_at(Millis::new(now));
        let out = if let Some(services) = real.as_mut() {
            let out = c.step_with(now, &snap, &inputs, services);
            check_reserve(&out, capacity, soc);
            out
        } else {
            let mut service = FixedRequest { name: "fuzz", request: held.grid };
            let out = c.step_with(now, &snap, &inputs, &mut service);
            check_arbitration(&held, &out, capacity, soc);
            out
        };
        check_invariant(&snap, &inputs, &out, now, prev);
        prev = Some((now, out.command.setpoint()));
    }
    Ok(())
}

/// design.md §6 on one cycle; `prev`: the previous cycle's time and command.
fn check_invariant(snap: &Snapshot, inputs: &Inputs<'_>, out: &Output, now: u64, prev: Option<(u64, Watts)>) {
    let t = Millis::new(now);
    let cmd = out.command.setpoint();
    let env = &out.envelope;
    assert!(cmd.get().is_finite(), "rule 'finite': command {cmd}");
    assert!(
        env.contains(cmd),
        "rule 'inside envelope': {cmd} outside -{}..{}",
        env.max_charge(),
        env.max_discharge()
    );
    assert_eq!(
        out.command.bounds(),
        (env.max_charge(), env.max_discharge()),
        "rule 'command bounds = envelope'"
    );
    assert!(
        cmd.abs() <= snap.inverter.rated_power,
        "rule 'inverter rating': {cmd} > {}",
        snap.inverter.rated_power
    );
    if cmd > Watts::ZERO {
        match snap.battery.bms_discharge_limit.value_at(t) {
            Some(lim) => assert!(cmd <= lim.max(Watts::ZERO), "rule 'BMS discharge limit': {cmd} > {lim}"),
            None => panic!("rule 'BMS limit unknown → zero': discharging {cmd}"),
        }
    }
    if cmd < Watts::ZERO {
        match snap.battery.bms_charge_limit.value_at(t) {
            Some(lim) => {
                assert!(-cmd <= lim.max(Watts::ZERO), "rule 'BMS charge limit': {cmd} beyond -{lim}")
            }
            None => panic!("rule 'BMS limit unknown → zero': charging {cmd}"),
        }
    }
    if out.state != State::Running {
        assert_eq!(cmd, Watts::ZERO, "rule 'zero outside RUNNING' ({})", out.state);
    }
    if !inputs.device_trips.is_empty() {
        assert!(
            matches!(out.state, State::Error | State::Stopped),
            "rule 'device trip stops': left {}",
            out.state
        );
    }
    if snap.estop.value_at(t) == Some(EStopInput::Pressed) || inputs.emergency_stop {
        assert_eq!(cmd, Watts::ZERO, "rule 'E-stop → zero'");
        assert_eq!(out.command.contactor(), ContactorCommand::Open, "rule 'E-stop → contactor open'");
        assert_eq!(out.state, State::Stopped, "rule 'E-stop → STOPPED'");
    }
    if let Some((prev_now, prev_cmd)) = prev {
        let dt = Millis::new(now - prev_now);
        // This cycle's ramp: the site's, or the grid service's own (`None`: a step).
        let max_step = out.command.ramp().map_or(f32::INFINITY, |r| r.max_step(dt).get() + 1e-3);
        let (p, c) = (prev_cmd.get(), cmd.get());
        let toward_zero = if p >= 0.0 { c >= 0.0 && c <= p + 1e-3 } else { c <= 0.0 && c >= p - 1e-3 };
        assert!(
            (c - p).abs() <= max_step || toward_zero,
            "rule 'ramp': {prev_cmd} -> {cmd} in {dt} (ramp {:?})",
            out.command.ramp()
        );
    }
}

/// The arbitration rule, seen from the outside (as in control/tests/invariant.rs).
/// `capacity` and `soc`: what the controller narrows an idle service's energy reserve with.
fn check_arbitration(held: &Held, out: &Output, capacity: Option<WattHours>, soc: Option<Percent>) {
    let req = out.requested;
    assert!(req.get().is_finite(), "rule 'arbitration: finite request': {req}");
    if out.state != State::Running {
        assert_eq!(out.source, CommandSource::NotRunning, "rule 'arbitration: not running'");
        assert_eq!(req, Watts::ZERO, "rule 'arbitration: nothing requested outside RUNNING'");
        return;
    }
    let valid = held.ess_override.filter(|o| o.validate().is_ok());
    assert_eq!(
        out.override_refused.is_some(),
        held.ess_override.is_some() && valid.is_none(),
        "rule 'arbitration: invalid override reported'"
    );
    if let Some(g) = held.grid.filter(GridRequest::acts) {
        assert!(
            matches!(out.source, CommandSource::GridService { .. }),
            "rule 'arbitration: grid service sets the request': source {}",
            out.source
        );
        if let GridAction::Replace(p) = g.action {
            assert_eq!(req, p, "rule 'arbitration: grid Replace'");
        }
        return;
    }
    if let Some(g) = held.grid {
        let narrowed = g.reserve.narrow(&out.envelope, capacity, soc);
        assert!(narrowed.contains(req), "rule 'arbitration: baseline keeps the reserve': {req}");
        assert!(
            !matches!(out.source, CommandSource::GridService { .. }),
            "rule 'arbitration: idle service sets nothing': source {}",
            out.source
        );
        return;
    }
    match valid {
        Some(Override::NoDischarge) => assert!(req <= Watts::ZERO, "rule 'override NoDischarge': {req}"),
        Some(Override::LimitCharge { max_charge_power }) => {
            assert!(req >= -max_charge_power, "rule 'override LimitCharge': {req}");
        }
        Some(Override::LimitDischarge { max_discharge_power }) => {
            assert!(req <= max_discharge_power, "rule 'override LimitDischarge': {req}");
        }
        Some(Override::ForceCharge { power }) => assert_eq!(req, -power, "rule 'override ForceCharge'"),
        None => match (held.provider.is_some(), held.plan.is_some(), out.source) {
            (true, _, CommandSource::Provider(_))
            | (false, true, CommandSource::Plan(_))
            | (false, false, CommandSource::Mode(_)) => {}
            (_, _, other) => panic!("rule 'arbitration: provider > plan > mode': source {other}"),
        },
    }
}
