//! OCPP 1.6J frames and the payloads of the messages the central system uses, as serde types of
//! our own (docs/ARCHITECTURE.md says why not `rust-ocpp`).
//!
//! A frame is a JSON array: CALL `[2, id, action, payload]`, CALLRESULT `[3, id, payload]`,
//! CALLERROR `[4, id, code, description, details]`. [`Frame::parse`] checks the structure and
//! returns a [`FrameError`] carrying the OCPP error code to answer with.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::{SystemTime, UNIX_EPOCH};

/// The WebSocket subprotocol of OCPP 1.6J.
pub const SUBPROTOCOL: &str = "ocpp1.6";

/// Now as an RFC 3339 UTC timestamp with milliseconds (`2026-12-05T19:04:01.250Z`), for OCPP
/// messages (a profile's start to the millisecond, so a lease of a few seconds is exact).
#[must_use]
pub fn rfc3339_now() -> String {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let s = rfc3339(d.as_secs());
    format!("{}.{:03}Z", s.trim_end_matches('Z'), d.subsec_millis())
}

/// Seconds since the Unix epoch as an RFC 3339 UTC timestamp.
#[must_use]
pub fn rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, (rem % 3600) / 60, rem % 60)
}

/// Howard Hinnant's days-to-civil algorithm for days since 1970-01-01 (non-negative).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The longest message id accepted (OCPP-J: at most 36 characters).
pub const MAX_MESSAGE_ID: usize = 36;

/// One parsed frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// A request.
    Call {
        /// Message id.
        id: String,
        /// Action name.
        action: String,
        /// Payload object.
        payload: Value,
    },
    /// A response.
    CallResult {
        /// Message id of the request.
        id: String,
        /// Payload object.
        payload: Value,
    },
    /// An error response.
    CallError {
        /// Message id of the request.
        id: String,
        /// Error code.
        code: String,
        /// Description.
        description: String,
    },
}

/// A frame that is not acceptable, with the id to answer to (if one could be read) and the
/// OCPP error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {description}")]
pub struct FrameError {
    /// The message id, `"-1"` when none could be read.
    pub id: String,
    /// `FormationViolation`, `ProtocolError`, …
    pub code: &'static str,
    /// What was wrong.
    pub description: String,
}

fn formation(id: &str, description: impl Into<String>) -> FrameError {
    FrameError { id: id.to_owned(), code: "FormationViolation", description: description.into() }
}

impl Frame {
    /// Parse a text frame.
    ///
    /// # Errors
    /// [`FrameError`] with `FormationViolation` for anything that is not a well-formed frame.
    pub fn parse(text: &str) -> Result<Self, FrameError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| formation("-1", format!("not JSON: {e}")))?;
        let Value::Array(items) = value else {
            return Err(formation("-1", "a frame must be a JSON array"));
        };
        let id = match items.get(1) {
            Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_MESSAGE_ID => s.clone(),
            Some(Value::String(s)) => {
                return Err(formation("-1", format!("message id of {} characters", s.len())))
            }
            _ => return Err(formation("-1", "element 2 (message id) must be a string")),
        };
        let kind = items.first().and_then(Value::as_u64);
        match (kind, items.len()) {
            (Some(2), 4) => {
                let Some(Value::String(action)) = items.get(2) else {
                    return Err(formation(&id, "element 3 (action) must be a string"));
                };
                let payload = items.get(3).cloned().unwrap_or(Value::Null);
                if !payload.is_object() {
                    return Err(formation(&id, "payload must be an object"));
                }
                Ok(Self::Call { id, action: action.clone(), payload })
            }
            (Some(3), 3) => {
                let payload = items.get(2).cloned().unwrap_or(Value::Null);
                if !payload.is_object() {
                    return Err(formation(&id, "payload must be an object"));
                }
                Ok(Self::CallResult { id, payload })
            }
            (Some(4), 5) => {
                let code = items.get(2).and_then(Value::as_str).unwrap_or_default().to_owned();
                let description = items.get(3).and_then(Value::as_str).unwrap_or_default().to_owned();
                Ok(Self::CallError { id, code, description })
            }
            (Some(k @ 2..=4), n) => Err(formation(&id, format!("message type {k} with {n} elements"))),
            _ => Err(FrameError {
                id,
                code: "ProtocolError",
                description: "message type must be 2, 3 or 4".to_owned(),
            }),
        }
    }

    /// Serialize to text.
    #[must_use]
    pub fn to_text(&self) -> String {
        let v = match self {
            Self::Call { id, action, payload } => serde_json::json!([2, id, action, payload]),
            Self::CallResult { id, payload } => serde_json::json!([3, id, payload]),
            Self::CallError { id, code, description } => serde_json::json!([4, id, code, description, {}]),
        };
        v.to_string()
    }
}

/// BootNotification.req (the fields used).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BootNotificationReq {
    /// Vendor.
    pub charge_point_vendor: String,
    /// Model.
    pub charge_point_model: String,
    /// Serial number.
    #[serde(default)]
    pub charge_point_serial_number: Option<String>,
    /// Firmware.
    #[serde(default)]
    pub firmware_version: Option<String>,
}

/// StatusNotification.req.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusNotificationReq {
    /// Connector (0 = the whole charge point).
    pub connector_id: u32,
    /// Error code (`NoError`, …).
    pub error_code: String,
    /// Status (`Available`, `Preparing`, `Charging`, …).
    pub status: String,
}

/// One sampled value.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SampledValue {
    /// The value as a decimal string.
    pub value: String,
    /// Measurand (default `Energy.Active.Import.Register`).
    #[serde(default)]
    pub measurand: Option<String>,
    /// Phase (`L1`, `L2`, `L3`, …).
    #[serde(default)]
    pub phase: Option<String>,
    /// Unit (`Wh`, `kWh`, `W`, `kW`, `A`).
    #[serde(default)]
    pub unit: Option<String>,
}

/// One meter value.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeterValue {
    /// Timestamp.
    pub timestamp: String,
    /// Samples.
    pub sampled_value: Vec<SampledValue>,
}

/// MeterValues.req.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeterValuesReq {
    /// Connector.
    pub connector_id: u32,
    /// Transaction.
    #[serde(default)]
    pub transaction_id: Option<i32>,
    /// Values.
    pub meter_value: Vec<MeterValue>,
}

/// StartTransaction.req.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartTransactionReq {
    /// Connector.
    pub connector_id: u32,
    /// Id tag.
    pub id_tag: String,
    /// Meter start in Wh.
    pub meter_start: i64,
    /// Timestamp.
    pub timestamp: String,
}

/// StopTransaction.req.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StopTransactionReq {
    /// Transaction.
    pub transaction_id: i32,
    /// Meter stop in Wh.
    pub meter_stop: i64,
    /// Timestamp.
    pub timestamp: String,
}

/// Authorize.req.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizeReq {
    /// Id tag.
    pub id_tag: String,
}

/// The `status` of a simple confirmation (`Accepted`, `Rejected`, …).
#[derive(Debug, Clone, Deserialize)]
pub struct StatusConf {
    /// Status.
    pub status: String,
}

/// GetCompositeSchedule.conf.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompositeScheduleConf {
    /// `Accepted` / `Rejected`.
    pub status: String,
    /// The schedule.
    #[serde(default)]
    pub charging_schedule: Option<ChargingSchedule>,
}

/// A charging schedule period.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChargingSchedulePeriod {
    /// Seconds from the schedule start.
    pub start_period: i64,
    /// Limit (A or W per the schedule's unit).
    pub limit: f64,
    /// Phases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number_phases: Option<u8>,
}

/// A charging schedule.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChargingSchedule {
    /// Seconds the schedule lasts (none: until replaced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<i64>,
    /// Start (RFC 3339), for absolute schedules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_schedule: Option<String>,
    /// `A` or `W`.
    pub charging_rate_unit: String,
    /// Periods.
    pub charging_schedule_period: Vec<ChargingSchedulePeriod>,
}

/// A charging profile (SetChargingProfile's `csChargingProfiles`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChargingProfile {
    /// Id.
    pub charging_profile_id: i32,
    /// Transaction (TxProfile only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<i32>,
    /// Stack level.
    pub stack_level: u32,
    /// `ChargePointMaxProfile`, `TxDefaultProfile`, `TxProfile`.
    pub charging_profile_purpose: &'static str,
    /// `Absolute`, `Relative`.
    pub charging_profile_kind: &'static str,
    /// The schedule.
    pub charging_schedule: ChargingSchedule,
}

/// Parse a decimal sampled value with its unit into the base unit (W, Wh, A); `None` when it
/// is not a finite number.
#[must_use]
pub fn sampled_in_base_unit(s: &SampledValue) -> Option<f64> {
    let v: f64 = s.value.trim().parse().ok()?;
    if !v.is_finite() {
        return None;
    }
    let k = matches!(s.unit.as_deref(), Some("kW" | "kWh"));
    Some(if k { v * 1000.0 } else { v })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly
    use super::{sampled_in_base_unit, Frame, SampledValue};

    #[test]
    fn frames_round_trip() {
        let call = Frame::parse(
            r#"[2,"19223201","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]"#,
        )
        .unwrap();
        assert!(
            matches!(&call, Frame::Call { id, action, .. } if id == "19223201" && action == "BootNotification")
        );
        assert_eq!(Frame::parse(&call.to_text()).unwrap(), call);
        let res = Frame::parse(r#"[3,"a",{"status":"Accepted"}]"#).unwrap();
        assert_eq!(Frame::parse(&res.to_text()).unwrap(), res);
        let err = Frame::parse(r#"[4,"a","NotImplemented","no",{}]"#).unwrap();
        assert!(matches!(err, Frame::CallError { code, .. } if code == "NotImplemented"));
    }

    #[test]
    fn malformed_frames_name_the_code_and_the_id() {
        let cases = [
            ("nope", "-1", "FormationViolation"),
            ("{}", "-1", "FormationViolation"),
            ("[2]", "-1", "FormationViolation"),
            (r#"[2,5,"Heartbeat",{}]"#, "-1", "FormationViolation"),
            (r#"[2,"x","Heartbeat"]"#, "x", "FormationViolation"),
            (r#"[2,"x","Heartbeat",[]]"#, "x", "FormationViolation"),
            (r#"[2,"x",7,{}]"#, "x", "FormationViolation"),
            (r#"[9,"x","Heartbeat",{}]"#, "x", "ProtocolError"),
        ];
        for (text, id, code) in cases {
            let e = Frame::parse(text).unwrap_err();
            assert_eq!((e.id.as_str(), e.code), (id, code), "{text}");
        }
        let long = format!(r#"[2,"{}","Heartbeat",{{}}]"#, "i".repeat(37));
        assert_eq!(Frame::parse(&long).unwrap_err().code, "FormationViolation");
    }

    #[test]
    fn sampled_values_convert_units_and_refuse_garbage() {
        let s = |v: &str, unit: Option<&str>| SampledValue {
            value: v.to_owned(),
            measurand: None,
            phase: None,
            unit: unit.map(str::to_owned),
        };
        assert_eq!(sampled_in_base_unit(&s("1.5", Some("kW"))), Some(1500.0));
        assert_eq!(sampled_in_base_unit(&s("12", Some("Wh"))), Some(12.0));
        assert_eq!(sampled_in_base_unit(&s("NaN", None)), None);
        assert_eq!(sampled_in_base_unit(&s("abc", None)), None);
    }
}
