//! The handlers of the economics endpoints (`/api/v1/plan`, `/forecast`, `/prices`, `/savings`,
//! `/report`, `/rules`, `/economics`): authorize, parse, ask the [`EconomicsPort`], answer in
//! JSON (or CSV). The port, the DTOs and the parsing live in [`crate::economics`].

use crate::auth::Access;
use crate::economics::*;
use crate::error::{ApiError, ApiResult};
use crate::input;
use crate::ports::Outcome;
use crate::state::ApiState;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

// ---- Handlers ---------------------------------------------------------------------------------

fn port(s: &ApiState) -> Result<&Arc<dyn EconomicsPort>, ApiError> {
    s.economics.as_ref().ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, NOT_CONFIGURED))
}

fn query_map(
    q: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Result<BTreeMap<String, String>, ApiError> {
    q.map(|Query(m)| m)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("query: {}", e.body_text())))
}

/// `GET /api/v1/plan`.
pub(crate) async fn plan_get(State(s): State<ApiState>, headers: HeaderMap) -> ApiResult {
    s.authorize(&headers, Access::Read, "GET /api/v1/plan")?;
    Ok(Json(port(&s)?.plan()).into_response())
}

/// `GET /api/v1/forecast`.
pub(crate) async fn forecast_get(State(s): State<ApiState>, headers: HeaderMap) -> ApiResult {
    s.authorize(&headers, Access::Read, "GET /api/v1/forecast")?;
    Ok(Json(port(&s)?.forecast()).into_response())
}

/// `GET /api/v1/prices`.
pub(crate) async fn prices_get(State(s): State<ApiState>, headers: HeaderMap) -> ApiResult {
    s.authorize(&headers, Access::Read, "GET /api/v1/prices")?;
    Ok(Json(port(&s)?.prices()).into_response())
}

/// `POST /api/v1/prices` (provider, admin).
pub(crate) async fn prices_post(
    State(s): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    const ACTION: &str = "POST /api/v1/prices";
    // Pushing prices is a provider's job, like submitting a schedule: the same roles.
    let p = s.authorize(&headers, Access::ScheduleSubmit, ACTION)?;
    let actor = p.actor();
    let port = port(&s)?.clone();
    let o = s.body_object(body, &actor, ACTION)?;
    let prices = parse_pushed_prices(&o).map_err(|e| s.refuse(&actor, ACTION, ApiError::field(e)))?;
    let span = match (prices.first(), prices.last()) {
        (Some(first), Some(last)) => format!(" ({} .. {})", first.start, last.end),
        _ => String::new(),
    };
    let n = prices.len();
    match port.push_prices(&actor, prices) {
        Ok(accepted) => {
            s.audit(&actor, ACTION, Outcome::Ok, format!("{accepted} of {n} price points accepted{span}"));
            Ok(Json(json!({ "accepted": accepted })).into_response())
        }
        Err(e) => Err(s.refuse(&actor, ACTION, e.into())),
    }
}

/// `GET /api/v1/savings`.
pub(crate) async fn savings_get(
    State(s): State<ApiState>,
    headers: HeaderMap,
    q: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> ApiResult {
    const ACTION: &str = "GET /api/v1/savings";
    let p = s.authorize(&headers, Access::Read, ACTION)?;
    let q = query_map(q).map_err(|e| s.refuse(&p.actor(), ACTION, e))?;
    let period = input::only_keys_str(&q, &["period"])
        .and_then(|()| q.get("period").map_or(Ok(SavingsPeriod::Day), |raw| SavingsPeriod::parse(raw)))
        .map_err(|e| s.refuse(&p.actor(), ACTION, ApiError::field(e)))?;
    let view = port(&s)?.savings(period).map_err(ApiError::from)?;
    Ok(Json(view).into_response())
}

/// `GET /api/v1/report`.
pub(crate) async fn report_get(
    State(s): State<ApiState>,
    headers: HeaderMap,
    q: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> ApiResult {
    const ACTION: &str = "GET /api/v1/report";
    let p = s.authorize(&headers, Access::Read, ACTION)?;
    let q = query_map(q).map_err(|e| s.refuse(&p.actor(), ACTION, e))?;
    let (month, format) =
        parse_report_query(&q).map_err(|e| s.refuse(&p.actor(), ACTION, ApiError::field(e)))?;
    let report = port(&s)?.report(month).map_err(ApiError::from)?;
    Ok(match format {
        ReportFormat::Json => {
            Json(json!({ "month": month.to_string(), "currency": report.currency, "days": report.days }))
                .into_response()
        }
        ReportFormat::Csv => {
            let disposition = format!("attachment; filename=\"ems-report-{month}.csv\"");
            (
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                    (header::CONTENT_DISPOSITION, disposition),
                ],
                report_csv(&report),
            )
                .into_response()
        }
    })
}

/// `GET /api/v1/rules`.
pub(crate) async fn rules_get(State(s): State<ApiState>, headers: HeaderMap) -> ApiResult {
    s.authorize(&headers, Access::Read, "GET /api/v1/rules")?;
    let RulesView { mut set, decision } = port(&s)?.rules();
    set.insert("decision".into(), json!(decision));
    Ok(Json(Value::Object(set)).into_response())
}

/// `PUT /api/v1/rules` (operator, admin).
pub(crate) async fn rules_put(
    State(s): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    const ACTION: &str = "PUT /api/v1/rules";
    let p = s.authorize(&headers, Access::Operate, ACTION)?;
    let actor = p.actor();
    let port = port(&s)?.clone();
    let mut o = s.body_object(body, &actor, ACTION)?;
    // A body read from `GET` may carry the decision back: it is not part of the set.
    o.remove("decision");
    let count = o.get("rules").and_then(Value::as_array).map_or(0, Vec::len);
    match port.put_rules(&actor, Value::Object(o)) {
        Ok(stored) => {
            s.audit(&actor, ACTION, Outcome::Ok, format!("rule set stored ({count} rules)"));
            Ok(Json(stored).into_response())
        }
        Err(e) => Err(s.refuse(&actor, ACTION, e.into())),
    }
}

/// `GET /api/v1/economics`.
pub(crate) async fn summary_get(State(s): State<ApiState>, headers: HeaderMap) -> ApiResult {
    s.authorize(&headers, Access::Read, "GET /api/v1/economics")?;
    Ok(Json(port(&s)?.summary()).into_response())
}
