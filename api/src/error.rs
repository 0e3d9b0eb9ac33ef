//! The API's JSON error response, shared by every handler module (kept apart from `rest` so
//! that handler modules need not import the router that imports them).

use crate::input::FieldError;
use crate::schedules::{ScheduleError, ScheduleErrorKind};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// A JSON error response.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Message.
    pub error: String,
    /// The field at fault, if any.
    pub field: Option<String>,
    /// Extra members merged into the body (e.g. `state`, `reason`).
    pub extra: Option<Value>,
    /// `Retry-After` seconds (429).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, error: impl Into<String>) -> Self {
        Self { status, error: error.into(), field: None, extra: None, retry_after: None }
    }

    pub(crate) fn field(e: FieldError) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error: if e.field.is_empty() { e.message } else { format!("{}: {}", e.field, e.message) },
            field: Some(e.field).filter(|f| !f.is_empty()),
            extra: None,
            retry_after: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.error });
        if let Value::Object(o) = &mut body {
            if let Some(f) = self.field {
                o.insert("field".into(), Value::String(f));
            }
            if let Some(Value::Object(extra)) = self.extra {
                o.extend(extra);
            }
        }
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

impl From<ScheduleError> for ApiError {
    fn from(e: ScheduleError) -> Self {
        let status = match e.kind {
            ScheduleErrorKind::Invalid => StatusCode::BAD_REQUEST,
            ScheduleErrorKind::Unauthorized => StatusCode::FORBIDDEN,
            ScheduleErrorKind::Replay => StatusCode::CONFLICT,
            ScheduleErrorKind::NotFound => StatusCode::NOT_FOUND,
            ScheduleErrorKind::Store => StatusCode::SERVICE_UNAVAILABLE,
        };
        Self {
            status,
            error: if e.field.is_empty() { e.message } else { format!("{}: {}", e.field, e.message) },
            field: Some(e.field).filter(|f| !f.is_empty()),
            extra: None,
            retry_after: None,
        }
    }
}

pub(crate) type ApiResult = Result<Response, ApiError>;
