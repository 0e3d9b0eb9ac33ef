//! Shared test fixtures: a healthy snapshot of a 5 kW / 10 kWh LFP site.
#![allow(dead_code)] // each test binary uses a different subset

use ems_core::snapshot::{BmsAlarms, ContactorState, EStopInput, InverterState};
use ems_core::{Amps, Measurement, Millis, Snapshot, Watts};

pub(crate) fn good<T: Copy>(v: T, now: Millis) -> Measurement<T> {
    Measurement::good(v, now, Millis::new(2_000))
}

/// A healthy site at `now`: SOC 50 %, 3.30 V cells at 25 °C, PV surplus of 2 kW, contactor
/// closed, E-stop released.
pub(crate) fn healthy(now: Millis) -> Snapshot {
    let mut s = Snapshot::unknown(ems_core::watts!(5000.0));
    let b = &mut s.battery;
    b.soc = good(ems_core::percent!(50.0), now);
    b.pack_voltage = good(ems_core::volts!(52.8), now);
    b.pack_current = good(Amps::ZERO, now);
    b.cell_voltage_min = good(ems_core::volts!(3.29), now);
    b.cell_voltage_max = good(ems_core::volts!(3.31), now);
    b.cell_temp_min = good(ems_core::celsius!(24.0), now);
    b.cell_temp_max = good(ems_core::celsius!(25.0), now);
    b.bms_charge_limit = good(ems_core::watts!(5000.0), now);
    b.bms_discharge_limit = good(ems_core::watts!(5000.0), now);
    b.bms_alarms = good(BmsAlarms::NONE, now);
    b.bms_ready = good(true, now);
    s.inverter.active_power = good(Watts::ZERO, now);
    s.inverter.state = good(InverterState::Running, now);
    s.inverter.temperature = good(ems_core::celsius!(35.0), now);
    s.grid.active_power = good(ems_core::watts!(-2000.0), now);
    s.grid.voltage = good(ems_core::volts!(230.0), now);
    s.grid.frequency = good(ems_core::hertz!(50.0), now);
    s.pv_power = good(ems_core::watts!(3000.0), now);
    s.contactor = good(ContactorState::Closed, now);
    s.precharge_done = good(true, now);
    s.estop = good(EStopInput::Released, now);
    s
}
