//! [`SiteDevices`]: what the loop needs of a site's device layer.

use core::future::Future;
use core::time::Duration;
use ems_control::Command;
use ems_core::{Millis, Snapshot};
use ems_devices::io::{ApplyReport, DeviceSet, Interrupt};
use ems_devices::traits::{Bms, EStopInput, Inverter, Meter, PvInverter, Relay};
use ems_devices::wrappers::{DeviceEvents, WrapperError};

/// A site's devices behind their safety wrappers, as the loop drives them. Implemented for
/// [`DeviceSet`] (every site today); the seam exists so that the loop's signature does not
/// carry seven device types.
#[allow(async_fn_in_trait)] // driven on one thread; no Send bound wanted
pub trait SiteDevices {
    /// Enable the real-time behaviour (bounded fast-path writes on the tokio timer).
    fn set_realtime(&mut self, realtime: bool);
    /// Poll every device (E-stop first) into the snapshot.
    async fn read(&mut self, now: Millis, snapshot: &mut Snapshot, events: &mut DeviceEvents);
    /// Only the E-stop input (its fast path on a press) into the snapshot; whether it is
    /// pressed (the grid services' fast tick reads it first).
    async fn read_estop(&mut self, now: Millis, snapshot: &mut Snapshot, events: &mut DeviceEvents) -> bool;
    /// [`Self::read`] with the E-stop input and the software E-stop watched.
    async fn read_watched<X: Future<Output = ()>>(
        &mut self,
        now: Millis,
        snapshot: &mut Snapshot,
        events: &mut DeviceEvents,
        tick: Duration,
        software: X,
    ) -> Interrupt;
    /// Apply the command (it carries the envelope's bounds it was clamped to).
    async fn apply(&mut self, now: Millis, command: &Command, events: &mut DeviceEvents) -> ApplyReport;
    /// [`Self::apply`] with the E-stop watched; `None` when interrupted.
    async fn apply_watched<X: Future<Output = ()>>(
        &mut self,
        now: Millis,
        command: &Command,
        events: &mut DeviceEvents,
        tick: Duration,
        software: X,
    ) -> (Option<ApplyReport>, Interrupt);
    /// Wait until `deadline` with the E-stop watched.
    async fn wait_watched<X: Future<Output = ()>>(
        &mut self,
        now: Millis,
        events: &mut DeviceEvents,
        tick: Duration,
        deadline: tokio::time::Instant,
        software: X,
    ) -> Interrupt;
    /// Zero and open, in parallel. Returns (zero written, relays opened).
    async fn emergency_now(&mut self, now: Millis, events: &mut DeviceEvents) -> (bool, bool);
    /// Hand the site back: zero, open, the inverter's own settings restored.
    async fn release(&mut self, now: Millis, events: &mut DeviceEvents) -> Result<(), WrapperError>;
    /// Reset a resettable BMS alarm (the wrapper rate-limits it).
    async fn reset_bms_alarms(&mut self, now: Millis) -> Result<(), WrapperError>;
}

impl<B, I, M, P, PR, MR, E> SiteDevices for DeviceSet<B, I, M, P, PR, MR, E>
where
    B: Bms,
    I: Inverter,
    M: Meter,
    P: PvInverter,
    PR: Relay,
    MR: Relay,
    E: EStopInput,
{
    fn set_realtime(&mut self, realtime: bool) {
        Self::set_realtime(self, realtime);
    }
    async fn read(&mut self, now: Millis, snapshot: &mut Snapshot, events: &mut DeviceEvents) {
        Self::read(self, now, snapshot, events).await;
    }
    async fn read_estop(&mut self, now: Millis, snapshot: &mut Snapshot, events: &mut DeviceEvents) -> bool {
        Self::read_estop(self, now, snapshot, events).await
    }
    async fn read_watched<X: Future<Output = ()>>(
        &mut self,
        now: Millis,
        snapshot: &mut Snapshot,
        events: &mut DeviceEvents,
        tick: Duration,
        software: X,
    ) -> Interrupt {
        Self::read_watched(self, now, snapshot, events, tick, software).await
    }
    async fn apply(&mut self, now: Millis, command: &Command, events: &mut DeviceEvents) -> ApplyReport {
        Self::apply(self, now, command, events).await
    }
    async fn apply_watched<X: Future<Output = ()>>(
        &mut self,
        now: Millis,
        command: &Command,
        events: &mut DeviceEvents,
        tick: Duration,
        software: X,
    ) -> (Option<ApplyReport>, Interrupt) {
        Self::apply_watched(self, now, command, events, tick, software).await
    }
    async fn wait_watched<X: Future<Output = ()>>(
        &mut self,
        now: Millis,
        events: &mut DeviceEvents,
        tick: Duration,
        deadline: tokio::time::Instant,
        software: X,
    ) -> Interrupt {
        Self::wait_watched(self, now, events, tick, deadline, software).await
    }
    async fn emergency_now(&mut self, now: Millis, events: &mut DeviceEvents) -> (bool, bool) {
        Self::emergency_now(self, now, events).await
    }
    async fn release(&mut self, now: Millis, events: &mut DeviceEvents) -> Result<(), WrapperError> {
        Self::release(self, now, events).await
    }
    async fn reset_bms_alarms(&mut self, now: Millis) -> Result<(), WrapperError> {
        Self::reset_bms_alarms(self, now).await
    }
}
