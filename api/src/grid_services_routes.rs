//! The handlers of `GET`/`PUT /api/v1/grid-services`: authorize, parse, ask
//! [`GridServices`], answer in JSON; the writes and their refusals are audited.

use crate::auth::Access;
use crate::error::{ApiError, ApiResult};
use crate::grid_services::{GridServices, NOT_CONFIGURED};
use crate::ports::Outcome;
use crate::state::ApiState;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use std::sync::Arc;

fn port(s: &ApiState) -> Result<&Arc<GridServices>, ApiError> {
    s.grid_services.as_ref().ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, NOT_CONFIGURED))
}

/// `GET /api/v1/grid-services`.
pub(crate) async fn grid_services_get(State(s): State<ApiState>, headers: HeaderMap) -> ApiResult {
    s.authorize(&headers, Access::Read, "GET /api/v1/grid-services")?;
    Ok(Json(port(&s)?.view(s.clock.now())).into_response())
}

/// `PUT /api/v1/grid-services` (operator, provider, admin).
pub(crate) async fn grid_services_put(
    State(s): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    const ACTION: &str = "PUT /api/v1/grid-services";
    let p = s.authorize(&headers, Access::GridCommit, ACTION)?;
    let actor = p.actor();
    let port = port(&s)?.clone();
    let o = s.body_object(body, &actor, ACTION)?;
    let list = port.parse(&o).map_err(|e| s.refuse(&actor, ACTION, ApiError::field(e)))?;
    let detail = if list.is_empty() {
        "commitments cleared".to_owned()
    } else {
        let items: Vec<String> = list
            .iter()
            .map(|c| format!("{} {:.0} W {}..{}", c.service.name(), c.capacity_w.get(), c.from, c.until))
            .collect();
        format!("{} commitments stored: {}", list.len(), items.join("; "))
    };
    let now = s.clock.now();
    match port.put(list, now) {
        Ok(()) => {
            s.audit(&actor, ACTION, Outcome::Ok, detail);
            Ok(Json(port.view(now)).into_response())
        }
        Err(e) => Err(s.refuse(&actor, ACTION, e.into())),
    }
}
