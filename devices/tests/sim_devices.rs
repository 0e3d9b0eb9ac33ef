//! The simulated site through its device handles: relays and DC link, inverter control and
//! revert timer, read-back, the device faults, the BMS alarm reset and the E-stop pin.
// Helpers outside `#[test]` functions unwrap too: a failed setup is a failed test.
#![allow(clippy::unwrap_used)]

use embedded_hal::digital::InputPin;
use ems_core::event::Signal;
use ems_core::snapshot::{BmsAlarm, BmsAlarms, ContactorState, EStopInput, InverterState};
use ems_core::{ContactorCommand, Millis, Watts};
use ems_devices::estop::{ActiveLevel, HalEStop};
use ems_devices::sim::{SharedSite, SimDevices, SimFault, SimSiteConfig, SimulatedSite};
use ems_devices::traits::{
    Bms, ControlSource, DeviceError, EStopInput as _, ErrorKind, Inverter, InverterCapabilities,
    InverterSettings, Relay,
};
use pollster::block_on;

const SEC: Millis = Millis::new(1000);

fn shared(config: SimSiteConfig) -> (SharedSite, SimDevices) {
    let s = SharedSite::new(SimulatedSite::new(config).unwrap());
    let d = s.devices();
    (s, d)
}

fn advance(s: &SharedSite, dt: Millis) {
    s.with_mut(|site| site.advance(dt));
}

fn remote(setpoint: f32, revert: Option<u64>) -> InverterSettings {
    InverterSettings {
        control: ControlSource::Remote,
        setpoint: Watts::saturating(setpoint),
        revert_timeout: revert.map(Millis::new),
    }
}

/// Pre-charge properly through the relays, then close main and open pre-charge.
fn connect(s: &SharedSite, d: &mut SimDevices) {
    block_on(async {
        d.precharge_relay.set(true).await.unwrap();
        advance(s, SEC);
        d.main_relay.set(true).await.unwrap();
        d.precharge_relay.set(false).await.unwrap();
        advance(s, Millis::new(10));
        assert!(d.main_relay.feedback().await.unwrap());
    });
}

#[test]
fn shared_handles_all_see_the_same_site() {
    let (s, mut d) = shared(SimSiteConfig::default());
    let other = s.clone();
    let mut second = other.devices();
    block_on(async {
        d.precharge_relay.set(true).await.unwrap();
        advance(&other, SEC);
        assert!(second.precharge_relay.feedback().await.unwrap());
        assert!(d.precharge_relay.feedback().await.unwrap());
        assert_eq!(s.borrow().truth().contactor, ContactorState::Precharging);
        other.with_mut(|site| site.inject(SimFault::EStopPressed));
        assert_eq!(d.estop.read().await.unwrap(), EStopInput::Pressed);
        assert_eq!(second.estop.read().await.unwrap(), EStopInput::Pressed);
        let a = d.bms.read().await.unwrap();
        let b = second.bms.read().await.unwrap();
        assert_eq!(a, b);
        assert_eq!(a.pack_voltage, s.with(SimulatedSite::truth).pack_voltage);
    });
}

#[test]
fn dc_link_precharges_in_half_a_second_and_no_power_flows_before_main_closes() {
    let (s, mut d) = shared(SimSiteConfig::default());
    block_on(async {
        d.inverter.write_settings(&remote(2000.0, None)).await.unwrap();
        d.precharge_relay.set(true).await.unwrap();
        let pack = s.borrow().truth().pack_voltage.get();
        let mut reached = None;
        for i in 1..=10 {
            advance(&s, Millis::new(50));
            let t = s.borrow().truth();
            assert_eq!(t.battery_power, Watts::ZERO, "no power through the pre-charge path");
            assert_eq!(t.contactor, ContactorState::Precharging);
            if reached.is_none() && t.dc_link_voltage.get() >= 0.95 * pack {
                reached = Some(i * 50);
            }
        }
        let at = reached.unwrap();
        assert!((400..=500).contains(&at), "95 % after {at} ms");
        let v = d.inverter.read().await.unwrap().dc_link_voltage.get();
        assert!(v > 0.96 * pack && v <= pack, "{v} vs {pack}");
        d.main_relay.set(true).await.unwrap();
        d.precharge_relay.set(false).await.unwrap();
        advance(&s, SEC);
        let t = s.borrow().truth();
        assert_eq!(t.inrush_events, 0, "no inrush after a proper pre-charge");
        assert_eq!(t.contactor, ContactorState::Closed);
        assert!((t.battery_power.get() - 2000.0).abs() < 1.0);
        assert!(s.borrow().snapshot(Millis::ZERO).precharge_done.last_value());
    });
}

#[test]
fn closing_main_on_an_uncharged_dc_link_is_an_inrush() {
    let (s, mut d) = shared(SimSiteConfig::default());
    block_on(async {
        d.main_relay.set(true).await.unwrap();
        advance(&s, Millis::new(10));
        assert_eq!(s.borrow().truth().inrush_events, 1);
        // After opening, the link bleeds down with τ = 2 s: reclosing at once is fine, after
        // 1 s it is not (e^-0.5 ≈ 0.61).
        d.main_relay.set(false).await.unwrap();
        advance(&s, Millis::new(10));
        d.main_relay.set(true).await.unwrap();
        advance(&s, Millis::new(10));
        assert_eq!(s.borrow().truth().inrush_events, 1);
        d.main_relay.set(false).await.unwrap();
        advance(&s, SEC);
        let t = s.borrow().truth();
        let ratio = t.dc_link_voltage.get() / t.pack_voltage.get();
        assert!((ratio - (-0.5_f32).exp()).abs() < 0.02, "{ratio}");
        d.main_relay.set(true).await.unwrap();
        advance(&s, Millis::new(10));
        assert_eq!(s.borrow().truth().inrush_events, 2);
    });
}

#[test]
fn relay_feedback_follows_the_coil_at_the_next_advance() {
    let (s, mut d) = shared(SimSiteConfig::default());
    block_on(async {
        d.precharge_relay.set(true).await.unwrap();
        assert!(!d.precharge_relay.feedback().await.unwrap());
        advance(&s, Millis::new(20));
        assert!(d.precharge_relay.feedback().await.unwrap());
        s.with_mut(|site| site.inject(SimFault::SensorDropout { signal: Signal::Precharge, for_: SEC }));
        assert_eq!(d.precharge_relay.feedback().await.unwrap_err().kind(), ErrorKind::Timeout);
        assert!(!d.main_relay.feedback().await.unwrap());
        s.with_mut(|site| site.inject(SimFault::SensorDropout { signal: Signal::Contactor, for_: SEC }));
        assert_eq!(d.main_relay.feedback().await.unwrap_err().kind(), ErrorKind::Timeout);
        d.main_relay.set(true).await.unwrap(); // coils are local outputs: still driven
    });
}

#[test]
fn a_relay_write_switches_the_automatic_sequence_off() {
    let (s, mut d) = shared(SimSiteConfig::default());
    s.with_mut(|site| {
        site.apply(Watts::ZERO, ContactorCommand::Close);
        site.advance(SEC);
    });
    block_on(d.precharge_relay.set(false)).unwrap();
    advance(&s, SEC);
    advance(&s, SEC);
    assert_eq!(s.borrow().truth().contactor, ContactorState::Open, "the sequence no longer closes");
    assert_eq!(s.borrow().command().1, ContactorCommand::Hold);
}

#[test]
fn inverter_starts_local_and_refuses_setpoints_until_taken_over() {
    let (s, mut d) = shared(SimSiteConfig::default());
    connect(&s, &mut d);
    block_on(async {
        assert_eq!(
            d.inverter.capabilities(),
            InverterCapabilities { revert_timer: true, setpoint_in_flash: false }
        );
        let st = d.inverter.read_settings().await.unwrap();
        assert_eq!(
            st,
            InverterSettings { control: ControlSource::Local, setpoint: Watts::ZERO, revert_timeout: None }
        );
        let e = d.inverter.write_setpoint(ems_core::watts!(1000.0)).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Refused);
        assert_eq!(s.borrow().truth().setpoint_writes, 0);
        d.inverter.write_settings(&remote(0.0, Some(5_000))).await.unwrap();
        assert_eq!(d.inverter.read_settings().await.unwrap(), remote(0.0, Some(5_000)));
        d.inverter.write_setpoint(ems_core::watts!(1000.0)).await.unwrap();
        advance(&s, SEC);
        let r = d.inverter.read().await.unwrap();
        assert_eq!(r.setpoint, ems_core::watts!(1000.0));
        assert!((r.active_power.get() - 1000.0).abs() < 1.0);
        let t = s.borrow().truth();
        assert_eq!((t.setpoint_writes, t.settings_writes, t.control), (1, 1, ControlSource::Remote));
        assert_eq!(t.inverter_setpoint, ems_core::watts!(1000.0));
        // Local control is the safe default: 0 W even with the main relay closed.
        d.inverter
            .write_settings(&InverterSettings { control: ControlSource::Local, ..remote(1000.0, None) })
            .await
            .unwrap();
        advance(&s, SEC);
        let r = d.inverter.read().await.unwrap();
        assert_eq!(r.setpoint, Watts::ZERO);
        assert_eq!(r.active_power, Watts::ZERO);
        assert_eq!(
            d.inverter.read_settings().await.unwrap().setpoint,
            ems_core::watts!(1000.0),
            "register kept"
        );
        assert_eq!(
            d.inverter.write_settings(&remote(0.0, Some(0))).await.unwrap_err().kind(),
            ErrorKind::OutOfRange
        );
        assert_eq!(
            d.inverter.write_settings(&remote(9000.0, None)).await.unwrap_err().kind(),
            ErrorKind::OutOfRange
        );
    });
    let flash = SharedSite::new(
        SimulatedSite::new(SimSiteConfig { inverter_setpoint_in_flash: true, ..SimSiteConfig::default() })
            .unwrap(),
    );
    assert!(flash.inverter().capabilities().setpoint_in_flash);
}

#[test]
fn revert_timer_falls_back_to_local_and_zero_after_the_timeout_and_not_before() {
    let (s, mut d) = shared(SimSiteConfig::default());
    connect(&s, &mut d);
    block_on(async {
        d.inverter.write_settings(&remote(0.0, Some(5_000))).await.unwrap();
        d.inverter.write_setpoint(ems_core::watts!(3000.0)).await.unwrap();
        // Writes restart the timer: 4 s, write, 4 s — still remote after 8 s.
        advance(&s, Millis::new(4_000));
        d.inverter.write_setpoint(ems_core::watts!(3000.0)).await.unwrap();
        advance(&s, Millis::new(4_000));
        assert_eq!(s.borrow().truth().control, ControlSource::Remote);
        assert!((s.borrow().truth().battery_power.get() - 3000.0).abs() < 1.0);
        // A settings write restarts it too.
        d.inverter.write_settings(&remote(3000.0, Some(5_000))).await.unwrap();
        advance(&s, Millis::new(4_999));
        assert_eq!(s.borrow().truth().control, ControlSource::Remote, "not before the timeout");
        advance(&s, Millis::new(1));
        let t = s.borrow().truth();
        assert_eq!(t.control, ControlSource::Local, "at the timeout");
        assert_eq!(t.inverter_setpoint, Watts::ZERO);
        advance(&s, SEC);
        assert_eq!(s.borrow().truth().battery_power, Watts::ZERO);
        let st = d.inverter.read_settings().await.unwrap();
        assert_eq!((st.control, st.setpoint), (ControlSource::Local, Watts::ZERO));
        assert_eq!(
            d.inverter.write_setpoint(ems_core::watts!(100.0)).await.unwrap_err().kind(),
            ErrorKind::Refused
        );
    });
    // Without a timer, remote control stays.
    let (s, mut d) = shared(SimSiteConfig::default());
    block_on(d.inverter.write_settings(&remote(0.0, None))).unwrap();
    advance(&s, Millis::new(3_600_000));
    assert_eq!(s.borrow().truth().control, ControlSource::Remote);
}

#[test]
fn the_revert_timer_runs_through_a_long_advance_and_a_dropout_blocks_writes() {
    let (s, mut d) = shared(SimSiteConfig::default());
    connect(&s, &mut d);
    block_on(async {
        d.inverter.write_settings(&remote(2000.0, Some(2_500))).await.unwrap();
        s.with_mut(|site| {
            site.inject(SimFault::SensorDropout { signal: Signal::InverterPower, for_: Millis::new(60_000) })
        });
        let e = d.inverter.write_setpoint(ems_core::watts!(2000.0)).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout, "a dead link: the write does not arrive");
        advance(&s, Millis::new(10_000));
        let t = s.borrow().truth();
        assert_eq!(t.control, ControlSource::Local);
        assert_eq!(t.battery_power, Watts::ZERO);
    });
}

#[test]
fn ignored_setpoints_keep_the_old_read_back_and_delayed_ones_lag() {
    let (s, mut d) = shared(SimSiteConfig::default());
    connect(&s, &mut d);
    block_on(async {
        d.inverter.write_settings(&remote(1000.0, None)).await.unwrap();
        advance(&s, SEC);
        s.with_mut(|site| site.inject(SimFault::InverterIgnoresSetpoint));
        d.inverter.write_setpoint(ems_core::watts!(-2000.0)).await.unwrap();
        advance(&s, SEC);
        let r = d.inverter.read().await.unwrap();
        assert_eq!(r.setpoint, ems_core::watts!(1000.0), "read-back stays old");
        assert!((r.active_power.get() - 1000.0).abs() < 1.0);
        assert_eq!(s.borrow().truth().setpoint_writes, 1, "the write was accepted");
        s.with_mut(|site| site.inject(SimFault::Clear));

        s.with_mut(|site| site.inject(SimFault::InverterDelay { by: Millis::new(3_000) }));
        d.inverter.write_setpoint(ems_core::watts!(2000.0)).await.unwrap();
        advance(&s, Millis::new(2_900));
        assert_eq!(d.inverter.read().await.unwrap().setpoint, ems_core::watts!(1000.0), "not yet");
        advance(&s, Millis::new(100));
        assert_eq!(d.inverter.read().await.unwrap().setpoint, ems_core::watts!(2000.0), "after 3 s");
        // Writes queue: each takes effect `by` after it was written.
        d.inverter.write_setpoint(ems_core::watts!(500.0)).await.unwrap();
        advance(&s, SEC);
        d.inverter.write_setpoint(ems_core::watts!(-500.0)).await.unwrap();
        advance(&s, Millis::new(2_000));
        assert_eq!(d.inverter.read().await.unwrap().setpoint, ems_core::watts!(500.0));
        advance(&s, SEC);
        assert_eq!(d.inverter.read().await.unwrap().setpoint, ems_core::watts!(-500.0));
        // Clearing applies what was waiting.
        d.inverter.write_setpoint(ems_core::watts!(700.0)).await.unwrap();
        s.with_mut(|site| site.inject(SimFault::Clear));
        assert_eq!(d.inverter.read().await.unwrap().setpoint, ems_core::watts!(700.0));
    });
}

#[test]
fn a_welded_main_contact_stays_closed_and_says_so() {
    let (s, mut d) = shared(SimSiteConfig::default());
    connect(&s, &mut d);
    s.with_mut(|site| site.inject(SimFault::ContactorWeld));
    block_on(async {
        d.main_relay.set(false).await.unwrap();
        advance(&s, SEC);
        assert!(d.main_relay.feedback().await.unwrap());
    });
    assert_eq!(s.borrow().truth().contactor, ContactorState::Closed);
    assert_eq!(s.borrow().snapshot(Millis::ZERO).contactor.last_value(), ContactorState::Closed);
    // The ideal device layer cannot open it either.
    s.with_mut(|site| {
        site.apply(Watts::ZERO, ContactorCommand::Open);
        site.advance(SEC);
    });
    assert_eq!(s.borrow().truth().contactor, ContactorState::Closed);
    s.with_mut(|site| {
        site.inject(SimFault::Clear);
        site.advance(SEC);
    });
    assert_eq!(s.borrow().truth().contactor, ContactorState::Open);
}

#[test]
fn a_stuck_open_main_contact_does_not_close() {
    let (s, mut d) = shared(SimSiteConfig::default());
    s.with_mut(|site| site.inject(SimFault::ContactorStuckOpen));
    block_on(async {
        d.inverter.write_settings(&remote(2000.0, None)).await.unwrap();
        d.precharge_relay.set(true).await.unwrap();
        advance(&s, SEC);
        d.main_relay.set(true).await.unwrap();
        advance(&s, SEC);
        assert!(!d.main_relay.feedback().await.unwrap());
    });
    let t = s.borrow().truth();
    assert_eq!(t.contactor, ContactorState::Precharging);
    assert_eq!(t.battery_power, Watts::ZERO);
    assert_eq!(t.inverter_state, InverterState::Standby);
}

#[test]
fn an_open_precharge_resistor_leaves_the_dc_link_uncharged() {
    let (s, mut d) = shared(SimSiteConfig::default());
    s.with_mut(|site| site.inject(SimFault::PrechargeResistorOpen));
    block_on(d.precharge_relay.set(true)).unwrap();
    advance(&s, Millis::new(5_000));
    let t = s.borrow().truth();
    assert_eq!(t.contactor, ContactorState::Precharging);
    assert!(t.dc_link_voltage.get() < 1.0, "{:?}", t.dc_link_voltage);
    assert!(!s.borrow().snapshot(Millis::ZERO).precharge_done.last_value());
    // The ideal sequence never closes main onto it.
    s.with_mut(|site| {
        site.apply(Watts::ZERO, ContactorCommand::Close);
        site.advance(Millis::new(10_000));
    });
    assert_eq!(s.borrow().truth().contactor, ContactorState::Precharging);
    assert_eq!(s.borrow().truth().inrush_events, 0);
    s.with_mut(|site| {
        site.inject(SimFault::Clear);
        site.advance(SEC);
        site.advance(SEC);
    });
    assert_eq!(s.borrow().truth().contactor, ContactorState::Closed);
}

#[test]
fn cell_runaway_heat_doubles() {
    let mut site = SimulatedSite::new(SimSiteConfig::default()).unwrap();
    let t0 = site.truth().cell_temp_max.get();
    site.inject(SimFault::CellRunaway {
        initial_watts: ems_core::watts!(100.0),
        doubling: Millis::new(60_000),
    });
    let mut rise = [0.0_f32; 4];
    let mut last = t0;
    for r in &mut rise {
        for _ in 0..120 {
            site.advance(SEC);
        }
        let t = site.truth().cell_temp_max.get();
        *r = t - last;
        last = t;
    }
    // Each 2-minute window gets ≈ 4× the heat of the one before.
    for w in rise.windows(2) {
        assert!(w[1] > 3.0 * w[0], "{rise:?}");
    }
    for _ in 0..240 {
        site.advance(SEC);
    }
    let t = site.truth();
    assert!(t.cell_temp_max.get() > 100.0, "{:?}", t.cell_temp_max);
    assert!(t.bms_alarms.contains(BmsAlarm::OverTemperature));
    site.inject(SimFault::Clear);
    let hot = site.truth().cell_temp_max.get();
    site.advance(Millis::new(600_000));
    assert!(site.truth().cell_temp_max.get() < hot, "cools once cleared");
}

#[test]
fn bms_reset_clears_injected_alarms_whose_cause_is_gone() {
    let (s, mut d) = shared(SimSiteConfig::default());
    block_on(async {
        s.with_mut(|site| {
            site.inject(SimFault::CellImbalance { volts: ems_core::volts!(0.5) });
            site.advance(SEC);
            let both = BmsAlarms::NONE.with(BmsAlarm::Insulation).with(BmsAlarm::CellOverVoltage);
            site.inject(SimFault::BmsAlarm(both));
        });
        d.bms.reset_alarms().await.unwrap();
        let a = d.bms.read().await.unwrap().alarms;
        assert!(!a.contains(BmsAlarm::Insulation), "cause gone: cleared");
        assert!(a.contains(BmsAlarm::CellOverVoltage), "cause present: kept");
        s.with_mut(|site| site.inject(SimFault::CellImbalance { volts: ems_core::volts!(0.0) }));
        advance(&s, SEC);
        d.bms.reset_alarms().await.unwrap();
        let r = d.bms.read().await.unwrap();
        assert!(!r.alarms.any() && r.ready, "{:?}", r.alarms);
        assert_eq!(s.borrow().truth().bms_alarm_resets, 2);
        s.with_mut(|site| site.inject(SimFault::SensorDropout { signal: Signal::BmsAlarms, for_: SEC }));
        assert_eq!(d.bms.reset_alarms().await.unwrap_err().kind(), ErrorKind::Timeout);
        assert_eq!(s.borrow().truth().bms_alarm_resets, 2);
    });
}

#[test]
fn sim_estop_pin_goes_through_the_hal_adapter() {
    let (s, d) = shared(SimSiteConfig::default());
    let mut pin = d.estop;
    assert!(pin.is_high().unwrap(), "a released normally-closed loop reads high");
    let mut estop = HalEStop::new(pin.clone(), ActiveLevel::Low);
    block_on(async {
        assert_eq!(estop.read().await.unwrap(), EStopInput::Released);
        s.with_mut(|site| site.inject(SimFault::EStopPressed));
        assert!(pin.is_low().unwrap());
        assert_eq!(estop.read().await.unwrap(), EStopInput::Pressed);
        assert_eq!(pin.read().await.unwrap(), EStopInput::Pressed);
        s.with_mut(|site| site.inject(SimFault::SensorDropout { signal: Signal::EStop, for_: SEC }));
        assert_eq!(estop.read().await.unwrap_err().kind(), ErrorKind::Comm);
        assert_eq!(pin.read().await.unwrap_err().kind(), ErrorKind::Timeout);
        advance(&s, SEC);
        s.with_mut(|site| site.inject(SimFault::EStopReleased));
        assert_eq!(estop.read().await.unwrap(), EStopInput::Released);
    });
}

#[test]
fn clear_undoes_every_new_fault() {
    let (s, mut d) = shared(SimSiteConfig::default());
    connect(&s, &mut d);
    s.with_mut(|site| {
        for f in [
            SimFault::ContactorWeld,
            SimFault::ContactorStuckOpen,
            SimFault::PrechargeResistorOpen,
            SimFault::InverterIgnoresSetpoint,
            SimFault::InverterDelay { by: Millis::new(5_000) },
            SimFault::CellRunaway { initial_watts: ems_core::watts!(1_000.0), doubling: SEC },
        ] {
            site.inject(f);
        }
        site.inject(SimFault::Clear);
    });
    block_on(async {
        d.inverter.write_settings(&remote(1500.0, None)).await.unwrap();
        assert_eq!(d.inverter.read().await.unwrap().setpoint, ems_core::watts!(1500.0), "applied at once");
        d.main_relay.set(false).await.unwrap();
        advance(&s, SEC);
        assert!(!d.main_relay.feedback().await.unwrap(), "not welded");
    });
    let t0 = s.borrow().truth().cell_temp_max.get();
    advance(&s, Millis::new(60_000));
    assert!(s.borrow().truth().cell_temp_max.get() < t0 + 0.5, "no runaway heat");
}
