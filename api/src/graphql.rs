//! GraphQL (`POST /api/v1/graphql`, provider or admin token): the Sourceful mutation shape,
//! backed by the same [`crate::schedules`] code as `POST /api/v1/schedules` (same validation,
//! signature, replay protection and audit):
//!
//! ```graphql
//! mutation {
//!   ems { battery { schedule(sn: "BAT-0001", executionTime: "2026-05-01T12:00:00Z",
//!       operation: "CHARGE", power: 3000, provider: "acme", nonce: "5f2a9c01d3",
//!       auth: { sign: { signature: "<128 hex digits>" } }) { scheduleId success } } }
//! }
//! ```
//!
//! `nonce` is an addition to the Sourceful shape; it is optional in the schema only so that a
//! request without it gets this API's clear refusal (`field: "nonce"`) instead of a schema
//! error. A refusal is a GraphQL error whose `extensions` carry `field` and `code`
//! (`INVALID`, `UNAUTHORIZED`, `REPLAY`, `NOT_FOUND`, `STORE`).

use crate::schedules::{ScheduleErrorKind, Schedules};
use async_graphql::{Context, EmptySubscription, ErrorExtensions, InputObject, Object, Schema, SimpleObject};
use jiff::Timestamp;
use serde_json::{json, Map, Value};
use std::sync::{Arc, OnceLock};

/// Per-request data the resolvers need.
#[derive(Debug, Clone)]
pub struct GqlContext {
    /// The schedules.
    pub schedules: Arc<Schedules>,
    /// The caller's audit actor.
    pub actor: String,
    /// The request time.
    pub now: Timestamp,
}

/// The query root (GraphQL requires one).
#[derive(Debug, Clone, Copy, Default)]
pub struct QueryRoot;

#[Object]
impl QueryRoot {
    /// The API version.
    async fn version(&self) -> &'static str {
        "1"
    }
}

/// The mutation root.
#[derive(Debug, Clone, Copy, Default)]
pub struct MutationRoot;

#[Object]
impl MutationRoot {
    /// The EMS.
    async fn ems(&self) -> EmsMutation {
        EmsMutation
    }
}

/// `ems { ... }`.
#[derive(Debug, Clone, Copy, Default)]
pub struct EmsMutation;

#[Object]
impl EmsMutation {
    /// The battery.
    async fn battery(&self) -> BatteryMutation {
        BatteryMutation
    }
}

/// `auth: { sign: { signature } }`.
#[derive(Debug, Clone, InputObject)]
pub struct AuthInput {
    /// The signature block.
    pub sign: SignInput,
}

/// `sign: { signature }`.
#[derive(Debug, Clone, InputObject)]
pub struct SignInput {
    /// Ed25519 signature, 128 hex digits, over the canonical string of [`crate::schedules`].
    pub signature: String,
}

/// The answer.
#[derive(Debug, Clone, SimpleObject)]
#[graphql(rename_fields = "camelCase")]
pub struct ScheduleResult {
    /// The new schedule's id.
    pub schedule_id: String,
    /// Always `true` (a refusal is a GraphQL error).
    pub success: bool,
}

/// `battery { schedule(...) }`.
#[derive(Debug, Clone, Copy, Default)]
pub struct BatteryMutation;

fn code(kind: ScheduleErrorKind) -> &'static str {
    match kind {
        ScheduleErrorKind::Invalid => "INVALID",
        ScheduleErrorKind::Unauthorized => "UNAUTHORIZED",
        ScheduleErrorKind::Replay => "REPLAY",
        ScheduleErrorKind::NotFound => "NOT_FOUND",
        ScheduleErrorKind::Store => "STORE",
    }
}

#[Object]
impl BatteryMutation {
    /// Submit a signed provider schedule.
    #[allow(clippy::too_many_arguments)] // the Sourceful mutation's argument list
    async fn schedule(
        &self,
        ctx: &Context<'_>,
        sn: String,
        execution_time: String,
        operation: String,
        power: i64,
        provider: String,
        nonce: Option<String>,
        auth: AuthInput,
    ) -> async_graphql::Result<ScheduleResult> {
        let c = ctx.data::<GqlContext>()?;
        let mut body = Map::new();
        body.insert("sn".into(), Value::String(sn));
        body.insert("executionTime".into(), Value::String(execution_time));
        body.insert("operation".into(), Value::String(operation));
        body.insert("power".into(), json!(power));
        body.insert("provider".into(), Value::String(provider));
        if let Some(n) = nonce {
            body.insert("nonce".into(), Value::String(n));
        }
        body.insert("auth".into(), json!({ "sign": { "signature": auth.sign.signature } }));
        match c.schedules.submit(&body, &c.actor, c.now) {
            Ok(a) => Ok(ScheduleResult { schedule_id: a.schedule_id, success: a.success }),
            Err(e) => Err(async_graphql::Error::new(e.to_string()).extend_with(|_, x| {
                x.set("field", e.field.clone());
                x.set("code", code(e.kind));
            })),
        }
    }
}

/// The schema type.
pub type EmsSchema = Schema<QueryRoot, MutationRoot, EmptySubscription>;

/// The schema (built once), with depth and complexity limits.
pub fn schema() -> &'static EmsSchema {
    static SCHEMA: OnceLock<EmsSchema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        Schema::build(QueryRoot, MutationRoot, EmptySubscription).limit_depth(8).limit_complexity(64).finish()
    })
}
