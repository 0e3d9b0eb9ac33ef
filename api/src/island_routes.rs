//! The handlers of `GET /api/v1/island`, `POST /api/v1/island/black-start` and
//! `POST /api/v1/island/reset` (see [`crate::island`]).

use crate::auth::Access;
use crate::error::{ApiError, ApiResult};
use crate::input::{self, FieldError};
use crate::island::{IslandAction, IslandBoard, NOT_CONFIGURED};
use crate::model::ApiCommand;
use crate::state::ApiState;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;
use std::sync::Arc;

fn board(s: &ApiState) -> Result<&Arc<IslandBoard>, ApiError> {
    s.island.as_ref().ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, NOT_CONFIGURED))
}

/// `GET /api/v1/island`.
pub(crate) async fn island_get(State(s): State<ApiState>, headers: HeaderMap) -> ApiResult {
    s.authorize(&headers, Access::Read, "GET /api/v1/island")?;
    Ok(Json(board(&s)?.view()).into_response())
}

async fn action(
    s: ApiState,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    what: IslandAction,
) -> ApiResult {
    let path = format!("POST /api/v1/island/{}", what.as_str());
    let p = s.authorize(&headers, Access::Operate, &path)?;
    let actor = p.actor();
    board(&s).map_err(|e| s.refuse(&actor, &path, e))?;
    let o = s.body_object(body, &actor, &path)?;
    let reason = (|| {
        input::only_keys(&o, "", &["reason"])?;
        let r = input::req_str(&o, "", "reason")?.trim();
        if r.is_empty() || r.len() > 500 {
            return Err(FieldError::new("reason", "must be a non-empty text of at most 500 bytes"));
        }
        Ok(r.to_owned())
    })()
    .map_err(|e| s.refuse(&actor, &path, ApiError::field(e)))?;
    let audited = format!("{path} ({reason})");
    let state = s
        .command_state(&actor, &audited, ApiCommand::Island { actor: actor.clone(), action: what, reason })
        .await?;
    let view = board(&s)?.view();
    Ok(Json(json!({ "accepted": true, "state": state.as_str(), "grid_state": view.grid_state }))
        .into_response())
}

/// `POST /api/v1/island/black-start`.
pub(crate) async fn black_start_post(
    State(s): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    action(s, headers, body, IslandAction::BlackStart).await
}

/// `POST /api/v1/island/reset`.
pub(crate) async fn reset_post(
    State(s): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    action(s, headers, body, IslandAction::Reset).await
}
