//! How the gateway reads what the loop saw, shared by the status line (`live`) and the API's
//! site view and metrics (`api`): power flows and the labels of device events.

use ems_devices::wrappers::events::{DeviceEvent, SkipReason};

/// The power flows the EMS sees (last values, whatever their quality), not a simulator's truth:
/// the status line and the API's view serve a real site too.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Flows {
    /// SOC, %.
    pub soc: f32,
    /// Battery, W (`+` discharge).
    pub battery: f32,
    /// Grid, W (`+` import).
    pub grid: f32,
    /// PV, W.
    pub pv: f32,
    /// Site load, W: `grid + pv + battery` (design.md §4), never negative.
    pub load: f32,
}

impl Flows {
    pub(crate) fn of(snapshot: &ems_core::Snapshot) -> Self {
        let battery = snapshot.inverter.active_power.last_value().get();
        let grid = snapshot.grid.active_power.last_value().get();
        let pv = snapshot.pv_power.last_value().get();
        Self {
            soc: snapshot.battery.soc.last_value().get(),
            battery,
            grid,
            pv,
            load: (grid + pv + battery).max(0.0),
        }
    }
}

/// Whether a device event is routine housekeeping (lease renewals, writes skipped inside the
/// deadband), which would drown the audit log at a 100 ms cycle.
pub(crate) const fn is_routine(e: &DeviceEvent) -> bool {
    matches!(e, DeviceEvent::LeaseRenewed | DeviceEvent::WriteSkipped { why: SkipReason::Deadband, .. })
}

/// The (device, kind) labels of `ems_device_errors_total` for a failed read or write.
pub(crate) const fn device_error(e: &DeviceEvent) -> Option<(&'static str, &'static str)> {
    use ems_devices::traits::ErrorKind;
    use ems_devices::wrappers::events::Device;
    let (device, kind) = match e {
        DeviceEvent::ReadFailed { device, kind } | DeviceEvent::WriteFailed { device, kind } => {
            (device, kind)
        }
        DeviceEvent::WriteRefused { device, .. } => (device, &ErrorKind::Refused),
        _ => return None,
    };
    let device = match device {
        Device::Bms => "bms",
        Device::Inverter => "inverter",
        Device::Meter => "meter",
        Device::Pv => "pv",
        Device::PrechargeRelay => "precharge_relay",
        Device::MainContactor => "main_contactor",
        Device::EStop => "estop",
    };
    let kind = match kind {
        ErrorKind::Timeout => "timeout",
        ErrorKind::Comm => "comm",
        ErrorKind::Decode => "decode",
        ErrorKind::Refused => "refused",
        ErrorKind::OutOfRange => "out_of_range",
    };
    Some((device, kind))
}
