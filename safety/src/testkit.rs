//! Test helpers (feature `testkit`): a healthy snapshot to start tests from.

use ems_core::snapshot::{
    BatterySignals, BmsAlarms, ContactorState, EStopInput, GridMode, GridSignals, InverterSignals,
    InverterState, ESTOP_MAX_AGE, FAST_MAX_AGE, SLOW_MAX_AGE,
};
use ems_core::{Amps, Measurement, Millis, Snapshot, Watts};

/// Rated power of the inverter in [`healthy_snapshot`]: 5 kW.
pub const HEALTHY_RATED_POWER: Watts = ems_core::watts!(5_000.0);

/// A snapshot of a healthy, idle site with every signal good at `now`: 16-cell LFP pack at
/// 50 % SOC, cells 3.29–3.31 V and 24–26 °C, BMS limits 5 kW each way, no alarm, BMS ready;
/// inverter running at 0 W (rated 5 kW, 35 °C); grid importing 500 W at 230 V / 50 Hz; no PV;
/// contactor closed, pre-charge done, E-stop released.
///
/// [`crate::SafetyMonitor::evaluate`] gives the full 5 kW both ways for it with the default
/// configuration.
#[must_use]
pub fn healthy_snapshot(now: Millis) -> Snapshot {
    let fast = |v| Measurement::good(v, now, FAST_MAX_AGE);
    Snapshot {
        battery: BatterySignals {
            soc: Measurement::good(ems_core::percent!(50.0), now, SLOW_MAX_AGE),
            pack_voltage: fast(ems_core::volts!(52.8)),
            pack_current: Measurement::good(Amps::ZERO, now, FAST_MAX_AGE),
            cell_voltage_min: fast(ems_core::volts!(3.29)),
            cell_voltage_max: fast(ems_core::volts!(3.31)),
            cell_temp_min: Measurement::good(ems_core::celsius!(24.0), now, SLOW_MAX_AGE),
            cell_temp_max: Measurement::good(ems_core::celsius!(26.0), now, SLOW_MAX_AGE),
            bms_charge_limit: Measurement::good(ems_core::watts!(5_000.0), now, SLOW_MAX_AGE),
            bms_discharge_limit: Measurement::good(ems_core::watts!(5_000.0), now, SLOW_MAX_AGE),
            bms_alarms: Measurement::good(BmsAlarms::NONE, now, SLOW_MAX_AGE),
            bms_ready: Measurement::good(true, now, SLOW_MAX_AGE),
        },
        inverter: InverterSignals {
            active_power: Measurement::good(Watts::ZERO, now, FAST_MAX_AGE),
            state: Measurement::good(InverterState::Running, now, SLOW_MAX_AGE),
            rated_power: HEALTHY_RATED_POWER,
            temperature: Measurement::good(ems_core::celsius!(35.0), now, SLOW_MAX_AGE),
            grid_mode: Measurement::good(GridMode::GridFollowing, now, SLOW_MAX_AGE),
        },
        grid: GridSignals {
            active_power: Measurement::good(ems_core::watts!(500.0), now, FAST_MAX_AGE),
            voltage: Measurement::good(ems_core::volts!(230.0), now, FAST_MAX_AGE),
            frequency: Measurement::good(ems_core::hertz!(50.0), now, FAST_MAX_AGE),
            tie: None,
        },
        pv_power: Measurement::good(Watts::ZERO, now, FAST_MAX_AGE),
        contactor: Measurement::good(ContactorState::Closed, now, FAST_MAX_AGE),
        precharge_done: Measurement::good(true, now, FAST_MAX_AGE),
        estop: Measurement::good(EStopInput::Released, now, ESTOP_MAX_AGE),
    }
}

/// `s` with every good signal re-read at `now` (same values, fresh timestamps): for
/// driving a monitor through time.
#[must_use]
pub fn refreshed(mut s: Snapshot, now: Millis) -> Snapshot {
    fn touch<T: Copy>(m: &mut Measurement<T>, now: Millis) {
        if m.stored_quality() == ems_core::Quality::Good {
            let v = m.last_value();
            m.update(v, now);
        }
    }
    let b = &mut s.battery;
    touch(&mut b.soc, now);
    touch(&mut b.pack_voltage, now);
    touch(&mut b.pack_current, now);
    touch(&mut b.cell_voltage_min, now);
    touch(&mut b.cell_voltage_max, now);
    touch(&mut b.cell_temp_min, now);
    touch(&mut b.cell_temp_max, now);
    touch(&mut b.bms_charge_limit, now);
    touch(&mut b.bms_discharge_limit, now);
    touch(&mut b.bms_alarms, now);
    touch(&mut b.bms_ready, now);
    touch(&mut s.inverter.active_power, now);
    touch(&mut s.inverter.state, now);
    touch(&mut s.inverter.temperature, now);
    touch(&mut s.grid.active_power, now);
    touch(&mut s.grid.voltage, now);
    touch(&mut s.grid.frequency, now);
    touch(&mut s.pv_power, now);
    touch(&mut s.contactor, now);
    touch(&mut s.precharge_done, now);
    touch(&mut s.estop, now);
    s
}
