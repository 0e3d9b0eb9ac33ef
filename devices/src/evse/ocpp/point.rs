//! One charge point's state as the central system sees it, and [`OcppEvse`], the handle that
//! drives it through the [`Evse`] trait.

use super::hub::{lock, Hub};
use super::messages::{
    sampled_in_base_unit, ChargingProfile, ChargingSchedule, ChargingSchedulePeriod, CompositeScheduleConf,
    MeterValuesReq, StatusConf,
};
use crate::evse::events::EvseEvent;
use crate::evse::types::{DeciAmps, EvseCapabilities, EvseReading, EvseStatus, Phases, NOMINAL_PHASE_VOLTS};
use crate::evse::Evse;
use crate::traits::{DeviceError, ErrorKind};
use ems_core::{Amps, Millis, WattHours, Watts};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{mpsc, oneshot};

/// Profile ids the central system uses (one of each per charge point).
pub(crate) const PROFILE_STATION_MAX: i32 = 1;
pub(crate) const PROFILE_FALLBACK: i32 = 2;
const PROFILE_DEFAULT: i32 = 3;
const PROFILE_TX: i32 = 4;

/// Why an OCPP operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OcppError {
    /// The charge point is not connected.
    #[error("charge point offline")]
    Offline,
    /// No answer within the call timeout.
    #[error("no answer from the charge point in time")]
    Timeout,
    /// The command queue of the connection is full.
    #[error("command queue full")]
    Busy,
    /// The charge point answered with a CALLERROR.
    #[error("charge point answered {code}: {description}")]
    CallError {
        /// OCPP error code.
        code: String,
        /// Description.
        description: String,
    },
    /// The charge point answered with a status other than `Accepted`.
    #[error("charge point answered {0}")]
    Rejected(String),
    /// An answer that does not decode.
    #[error("undecodable answer: {0}")]
    Decode(String),
    /// The composite schedule does not show the commanded limit.
    #[error("limit {commanded} not applied (composite schedule: {reported:?})")]
    NotApplied {
        /// Commanded.
        commanded: DeciAmps,
        /// In the composite schedule.
        reported: Option<DeciAmps>,
    },
    /// Phase switching is not supported over OCPP 1.6 here.
    #[error("phase switching is not supported")]
    NoPhaseSwitching,
    /// No transaction to stop.
    #[error("no transaction in progress")]
    NoTransaction,
}

impl DeviceError for OcppError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Offline | Self::Busy => ErrorKind::Comm,
            Self::Timeout => ErrorKind::Timeout,
            Self::CallError { .. }
            | Self::Rejected(_)
            | Self::NotApplied { .. }
            | Self::NoPhaseSwitching
            | Self::NoTransaction => ErrorKind::Refused,
            Self::Decode(_) => ErrorKind::Decode,
        }
    }
}

/// A call from the central system to the charge point, queued to its connection task.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) action: &'static str,
    pub(crate) payload: Value,
    pub(crate) reply: Option<oneshot::Sender<Result<Value, OcppError>>>,
}

/// What the central system knows about one charge point.
#[derive(Debug, Clone, Default)]
pub struct PointState {
    /// Connected now.
    pub online: bool,
    /// BootNotification accepted.
    pub booted: bool,
    /// Vendor and model from the BootNotification.
    pub vendor_model: Option<(String, String)>,
    /// Serial number from the BootNotification (`chargePointSerialNumber`), if sent.
    pub serial: Option<String>,
    /// Firmware version from the BootNotification, if sent.
    pub firmware: Option<String>,
    /// Connector 1's OCPP status string (`Available`, `Charging`, …).
    pub connector_status: Option<String>,
    /// The transaction in progress.
    pub transaction: Option<i32>,
    /// Meter start of the transaction (Wh).
    pub meter_start: Option<f64>,
    /// Last energy register (Wh).
    pub energy_register: Option<f64>,
    /// Last active power (W).
    pub power: Option<f64>,
    /// Last current per phase (A).
    pub current: [f64; 3],
    /// The limit last commanded, and when.
    pub commanded: Option<(DeciAmps, Millis)>,
    /// The limit the composite schedule confirmed.
    pub verified: Option<DeciAmps>,
    /// The zero-current fault was reported for the present 0 A command.
    pub zero_ignored: bool,
    /// Heartbeats received.
    pub heartbeats: u64,
    /// MeterValues received.
    pub meter_values: u64,
    /// Whether the fallback profiles were accepted after the last boot.
    pub fallback_installed: bool,
}

/// One charge point (shared by its connection task and its handles).
#[derive(Debug)]
pub(crate) struct Point {
    pub(crate) id: String,
    state: Mutex<PointState>,
    pub(crate) sender: Mutex<Option<mpsc::Sender<Request>>>,
    pub(crate) generation: Mutex<u64>,
}

impl Point {
    pub(crate) fn new(id: String) -> Self {
        Self {
            id,
            state: Mutex::new(PointState::default()),
            sender: Mutex::new(None),
            generation: Mutex::new(0),
        }
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, PointState> {
        lock(&self.state)
    }

    /// Apply a MeterValues.req; returns the power when 0 A is in force past the grace time and
    /// the meter still shows charging (reported once per 0 A command).
    pub(crate) fn meter_values(&self, req: &MeterValuesReq, now: Millis, shared: &Hub) -> Option<Watts> {
        let mut st = self.state();
        st.meter_values = st.meter_values.saturating_add(1);
        let mut phase_current = [None::<f64>; 3];
        let mut power = None;
        for mv in &req.meter_value {
            for s in &mv.sampled_value {
                let Some(v) = sampled_in_base_unit(s) else { continue };
                match s.measurand.as_deref().unwrap_or("Energy.Active.Import.Register") {
                    "Energy.Active.Import.Register" => st.energy_register = Some(v),
                    "Power.Active.Import" => power = Some(power.unwrap_or(0.0) + v),
                    "Current.Import" => {
                        let idx = match s.phase.as_deref() {
                            Some("L2" | "L2-N") => 1,
                            Some("L3" | "L3-N") => 2,
                            _ => 0,
                        };
                        if let Some(slot) = phase_current.get_mut(idx) {
                            *slot = Some(v);
                        }
                    }
                    _ => {}
                }
            }
        }
        if phase_current.iter().any(Option::is_some) {
            st.current = phase_current.map(|c| c.unwrap_or(0.0));
        }
        let power = power.unwrap_or_else(|| st.current.iter().sum::<f64>() * f64::from(NOMINAL_PHASE_VOLTS));
        st.power = Some(power);
        let cfg = &shared.config;
        match st.commanded {
            Some((limit, at))
                if limit.is_zero()
                    && now.since(at) >= cfg.zero_grace
                    && power > f64::from(cfg.zero_power_threshold.get())
                    && !st.zero_ignored =>
            {
                st.zero_ignored = true;
                // f64 → f32 for a metered power: any charge point's power fits.
                #[allow(clippy::cast_possible_truncation)]
                let w = Watts::saturating(power as f32);
                Some(w)
            }
            _ => None,
        }
    }
}

/// A connected (or known) charge point, driven through [`Evse`].
#[derive(Debug, Clone)]
pub struct OcppEvse {
    pub(crate) point: Arc<Point>,
    pub(crate) shared: Arc<Hub>,
}

fn status_from_ocpp(s: Option<&str>) -> EvseStatus {
    match s {
        Some("Charging") => EvseStatus::Charging,
        Some("Preparing" | "SuspendedEV" | "SuspendedEVSE" | "Finishing" | "Reserved") => EvseStatus::Plugged,
        Some("Available") | None => EvseStatus::Unplugged,
        Some(_) => EvseStatus::Fault,
    }
}

pub(crate) fn status_from_ocpp_pub(s: Option<&str>) -> EvseStatus {
    status_from_ocpp(s)
}

fn amps(v: f64) -> Amps {
    // f64 → f32 for a metered current; the unit saturates to its physical range.
    #[allow(clippy::cast_possible_truncation)]
    let a = Amps::saturating(v as f32);
    a
}

impl OcppEvse {
    /// The charge point id.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.point.id
    }

    /// A copy of the state the central system holds.
    #[must_use]
    pub fn state(&self) -> PointState {
        self.point.state().clone()
    }

    /// Whether it is connected.
    #[must_use]
    pub fn is_online(&self) -> bool {
        self.point.state().online
    }

    /// Whether 0 A was found ignored (charging power in the meter values) for the present command.
    #[must_use]
    pub fn zero_ignored(&self) -> bool {
        self.point.state().zero_ignored
    }

    /// Send a call and wait for the answer's payload.
    ///
    /// # Errors
    /// [`OcppError`] when offline, the queue is full, no answer comes in time, or a CALLERROR.
    pub async fn call(&self, action: &'static str, payload: Value) -> Result<Value, OcppError> {
        let sender = lock(&self.point.sender).clone().ok_or(OcppError::Offline)?;
        let (tx, rx) = oneshot::channel();
        sender.try_send(Request { action, payload, reply: Some(tx) }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => OcppError::Busy,
            mpsc::error::TrySendError::Closed(_) => OcppError::Offline,
        })?;
        // The connection task answers every request (timeout included); allow it one more
        // timeout for the requests queued ahead of this one.
        let wait = self.shared.config.call_timeout.saturating_mul(2);
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(OcppError::Offline),
            Err(_) => Err(OcppError::Timeout),
        }
    }

    async fn call_status(&self, action: &'static str, payload: Value) -> Result<(), OcppError> {
        let v = self.call(action, payload).await?;
        let conf: StatusConf = serde_json::from_value(v).map_err(|e| OcppError::Decode(e.to_string()))?;
        if conf.status == "Accepted" {
            Ok(())
        } else {
            Err(OcppError::Rejected(conf.status))
        }
    }

    /// RemoteStartTransaction on connector 1.
    ///
    /// # Errors
    /// [`OcppError`] when not accepted.
    pub async fn remote_start(&self, id_tag: &str) -> Result<(), OcppError> {
        self.call_status("RemoteStartTransaction", json!({"connectorId": 1, "idTag": id_tag})).await
    }

    /// RemoteStopTransaction of the transaction in progress.
    ///
    /// # Errors
    /// [`OcppError`] when there is none or it is not accepted.
    pub async fn remote_stop(&self) -> Result<(), OcppError> {
        let tx = self.point.state().transaction.ok_or(OcppError::NoTransaction)?;
        self.call_status("RemoteStopTransaction", json!({"transactionId": tx})).await
    }

    /// The limit in the composite schedule of connector 1 now (`None` when the charge point
    /// has no schedule).
    ///
    /// # Errors
    /// [`OcppError`] when the call fails or the answer does not decode.
    pub async fn composite_limit(&self) -> Result<Option<DeciAmps>, OcppError> {
        let v = self
            .call("GetCompositeSchedule", json!({"connectorId": 1, "duration": 60, "chargingRateUnit": "A"}))
            .await?;
        let conf: CompositeScheduleConf =
            serde_json::from_value(v).map_err(|e| OcppError::Decode(e.to_string()))?;
        if conf.status != "Accepted" {
            return Ok(None);
        }
        let Some(schedule) = conf.charging_schedule else { return Ok(None) };
        if schedule.charging_rate_unit != "A" {
            return Err(OcppError::Decode(format!("chargingRateUnit {}", schedule.charging_rate_unit)));
        }
        let first = schedule.charging_schedule_period.iter().min_by_key(|p| p.start_period);
        match first {
            None => Ok(None),
            Some(p) => {
                // f64 → f32 for a limit in amperes (validated just below).
                #[allow(clippy::cast_possible_truncation)]
                let a = p.limit as f32;
                DeciAmps::try_from_amps(a).map(Some).map_err(|e| OcppError::Decode(e.to_string()))
            }
        }
    }

    fn profile(
        &self,
        id: i32,
        purpose: &'static str,
        stack: u32,
        tx: Option<i32>,
        limit: DeciAmps,
        duration: Option<i64>,
    ) -> ChargingProfile {
        ChargingProfile {
            charging_profile_id: id,
            transaction_id: tx,
            stack_level: stack,
            charging_profile_purpose: purpose,
            charging_profile_kind: "Absolute",
            charging_schedule: ChargingSchedule {
                duration,
                start_schedule: Some(super::messages::rfc3339_now()),
                charging_rate_unit: "A".to_owned(),
                charging_schedule_period: vec![ChargingSchedulePeriod {
                    start_period: 0,
                    // From tenths, so the JSON carries 6.3, not 6.300000190734863 (the schema wants a
                    // multiple of 0.1).
                    limit: f64::from(limit.tenths()) / 10.0,
                    number_phases: Some(self.shared.config.phases.count()),
                }],
            },
        }
    }

    async fn set_profile(&self, connector: u32, profile: &ChargingProfile) -> Result<(), OcppError> {
        let payload = json!({"connectorId": connector, "csChargingProfiles": profile});
        self.call_status("SetChargingProfile", payload).await
    }

    /// Install the station maximum (`ChargePointMaxProfile` on connector 0) and the fallback
    /// (`TxDefaultProfile` at stack level 0 without a duration): what applies when the EMS stops
    /// renewing its limits.
    ///
    /// # Errors
    /// [`OcppError`] when either is not accepted.
    pub async fn install_fallback(&self) -> Result<(), OcppError> {
        let cfg = &self.shared.config;
        let max = self.profile(PROFILE_STATION_MAX, "ChargePointMaxProfile", 0, None, cfg.station_max, None);
        self.set_profile(0, &max).await?;
        let fb = self.profile(PROFILE_FALLBACK, "TxDefaultProfile", 0, None, cfg.fallback_current, None);
        self.set_profile(1, &fb).await?;
        self.point.state().fallback_installed = true;
        Ok(())
    }

    fn now(&self) -> Millis {
        self.shared.now()
    }
}

impl Evse for OcppEvse {
    type Error = OcppError;

    fn capabilities(&self) -> EvseCapabilities {
        let cfg = &self.shared.config;
        EvseCapabilities {
            min_current: cfg.min_current,
            max_current: cfg.station_max,
            phase_switching: false,
        }
    }

    async fn read(&mut self) -> Result<EvseReading, OcppError> {
        let st = self.point.state();
        if !st.online {
            return Err(OcppError::Offline);
        }
        let energy = match (st.energy_register, st.meter_start, st.transaction) {
            (Some(e), Some(s), Some(_)) => (e - s).max(0.0),
            _ => 0.0,
        };
        // f64 → f32 for metered energy and power; the units saturate to their physical range.
        #[allow(clippy::cast_possible_truncation)]
        let (energy, power) =
            (WattHours::saturating(energy as f32), Watts::saturating(st.power.unwrap_or(0.0) as f32));
        let status = status_from_ocpp(st.connector_status.as_deref());
        let phases = if st.current[1] > 0.5 || st.current[2] > 0.5 {
            Phases::Three
        } else {
            self.shared.config.phases
        };
        Ok(EvseReading {
            status,
            phases,
            current: st.current.map(amps),
            power,
            session_energy: energy,
            applied_limit: st.verified.unwrap_or(DeciAmps::ZERO),
            enabled: st.commanded.is_none_or(|(l, _)| !l.is_zero()),
        })
    }

    async fn set_enabled(&mut self, enabled: bool) -> Result<(), OcppError> {
        if enabled {
            Ok(())
        } else {
            self.set_current_limit(DeciAmps::ZERO).await
        }
    }

    /// A TxProfile during a transaction, else a TxDefaultProfile, at stack level 1 with a
    /// duration of one lease; then `GetCompositeSchedule` must show the limit.
    async fn set_current_limit(&mut self, limit: DeciAmps) -> Result<(), OcppError> {
        let now = self.now();
        let tx = {
            let mut st = self.point.state();
            if st.commanded.map(|(l, _)| l) != Some(limit) {
                st.zero_ignored = false;
                st.commanded = Some((limit, now));
            }
            st.transaction
        };
        let lease = i64::from(self.shared.config.lease_secs);
        let profile = match tx {
            Some(t) => self.profile(PROFILE_TX, "TxProfile", 1, Some(t), limit, Some(lease)),
            None => self.profile(PROFILE_DEFAULT, "TxDefaultProfile", 1, None, limit, Some(lease)),
        };
        let id = self.point.id.clone();
        if let Err(e) = self.set_profile(1, &profile).await {
            self.shared.event(EvseEvent::OcppProfileNotApplied { id, commanded: limit, reported: None });
            return Err(e);
        }
        let reported = self.composite_limit().await?;
        self.point.state().verified = reported;
        if reported == Some(limit) {
            Ok(())
        } else {
            self.shared.event(EvseEvent::OcppProfileNotApplied { id, commanded: limit, reported });
            Err(OcppError::NotApplied { commanded: limit, reported })
        }
    }

    async fn set_phases(&mut self, phases: Phases) -> Result<(), OcppError> {
        if phases == self.shared.config.phases {
            Ok(())
        } else {
            Err(OcppError::NoPhaseSwitching)
        }
    }
}
