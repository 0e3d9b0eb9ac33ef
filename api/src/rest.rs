//! The REST/JSON API (axum), version 1, under `/api/v1`, plus `GET /metrics`.
//!
//! Every endpoint except `GET /api/v1/openapi.json` needs `Authorization: Bearer <token>`
//! (401 without or with an unknown token, 403 for a role without access, 429 with
//! `Retry-After` when the token's or the client address's rate limit is exhausted); roles in
//! [`crate::auth`]. `GET /metrics` is public when [`crate::state::ApiConfig::metrics_public`] says so.
//!
//! **The E-stop** (`POST /api/v1/emergency-stop`) is never rate-limited (neither per token
//! nor per address), ignores its body and content type, and goes through
//! [`crate::ports::EmergencyStopPort`], not the command queue: nothing queued ahead of it can
//! delay it. It still needs an operator or admin token.
//!
//! There is no CORS layer: browsers on other origins cannot call it. Bodies are limited to
//! [`BODY_LIMIT`] bytes (413) and must be `Content-Type: application/json` (415); a JSON key
//! given twice is refused (400 naming the key). Every error is JSON `{"error": "...",
//! "field": "..."}` with a 4xx status (503 when the control loop or the store is unavailable),
//! including axum's own rejections (the `guard` middleware rewrites any non-JSON error
//! body); bad input never causes a 500 or a panic. Every change and every refusal of a known
//! token is audited; refusals before authentication (401, 429) are counted in [`Metrics`] and
//! sampled into the audit log (at most one row per kind every
//! [`crate::state::ApiConfig::refusal_audit_every`], saying how many were not written), so a flood cannot
//! fill the disk.
//!
//! The routes are listed in [`ROUTES`]; [`openapi`] builds the OpenAPI 3.1 document from the
//! same table with every operation's parameters, body schema and status codes (tests check it
//! against the router in both directions, and `tests/openapi_conformance.rs` generates
//! requests from it).

use crate::auth::{Access, AuthError, Principal};
use crate::control_modes::{Change, ControlModes};
use crate::economics_routes;
use crate::input::{self, FieldError};
use crate::metrics::RefusalKind;
use crate::model::{ApiCommand, LinkError};
use crate::ports::{AuditQuery, Outcome};
use crate::state::ApiState;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ems_core::TransitionRequest;
use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

/// Largest accepted request body, bytes.
pub const BODY_LIMIT: usize = 64 * 1024;

/// Longest history window one query may cover.
pub const MAX_HISTORY_SPAN: SignedDuration = SignedDuration::from_hours(31 * 24);

/// Longest accepted request target (path and query), bytes; longer answers 414 (JSON).
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// Most request header bytes (names, values) and fields; more answers 431 (JSON). The
/// server (`crate::server`) sets hyper's own limits higher, so these answer first.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// See [`MAX_HEADER_BYTES`].
pub const MAX_HEADER_FIELDS: usize = 64;

/// The E-stop path: exempt from rate limits and from the content-type rule.
pub const ESTOP_PATH: &str = "/api/v1/emergency-stop";

/// One route: method, path (axum/OpenAPI template syntax), who may call it, and a summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteInfo {
    /// `GET`, `POST`, `PUT` or `DELETE`.
    pub method: &'static str,
    /// The path, e.g. `/api/v1/schedules/{id}`.
    pub path: &'static str,
    /// Roles allowed (`-` = no token needed).
    pub roles: &'static str,
    /// What it does.
    pub summary: &'static str,
}

/// Every served route.
pub const ROUTES: &[RouteInfo] = &[
    RouteInfo { method: "GET", path: "/api/v1/openapi.json", roles: "-", summary: "This OpenAPI 3.1 document." },
    RouteInfo { method: "GET", path: "/api/v1/current-data", roles: "viewer, operator, admin", summary: "Latest value of every channel, or of `?channels=a,b`." },
    RouteInfo { method: "GET", path: "/api/v1/history", roles: "viewer, operator, admin", summary: "Channel history: `from`, `to` (RFC 3339), `channels` (comma list), `resolution` (seconds, 0 = raw)." },
    RouteInfo { method: "GET", path: "/api/v1/live", roles: "viewer, operator, admin", summary: "WebSocket (send `Connection: Upgrade`, `Upgrade: websocket`; 101 Switching Protocols): live site view (its `safety` carries `devices`) pushed at most 10 times a second. Token as `?token=`, `Authorization: Bearer` or the first message `{\"token\": \"...\"}`; then `{\"subscribe\": [\"_sum/EssSoc\", ...]}` (`[]` or `[\"*\"]` = all channels and the safety view); updates `{at, channels, safety}`; malformed messages answer `{error}`; auth failure closes with code 1008 and the reason. Without an upgrade: 400/426." },
    RouteInfo { method: "GET", path: "/api/v1/safety", roles: "viewer, operator, admin", summary: "State, envelope limits with reasons (`limitExplanations` maps a reason that is only a number, `interlock #3`, to its operator text), latched faults, recent events, `mode`, and `devices: {ready, detail}` (not ready: the loop waits for its devices; the page shows \"waiting for devices\"). Answers before the loop's first cycle too (`timestamp` null)." },
    RouteInfo { method: "POST", path: "/api/v1/emergency-stop", roles: "operator, admin", summary: "Software emergency stop (body ignored, any content type). Never rate-limited for a token that may press it (a viewer's or provider's refusals are); goes to the loop outside the command queue. Answers `{state: \"STOPPED\", tookMs}` once the zero-power command has been issued; 503 if not confirmed." },
    RouteInfo { method: "POST", path: "/api/v1/reset", roles: "operator, admin", summary: "Manual reset after an E-stop: `{\"reason\": \"...\"}` (non-empty)." },
    RouteInfo { method: "POST", path: "/api/v1/state", roles: "operator, admin", summary: "`{\"request\": \"start\"|\"stop\"|\"acknowledge\"}`; 409 `{state, reason}` when the state machine refuses. An `acknowledge` also resets a resettable BMS alarm (the gateway does that)." },
    RouteInfo { method: "GET", path: "/api/v1/site-mode", roles: "viewer, operator, admin", summary: "The operating mode the loop runs: `{mode, timestamp}` (`mode` empty before the loop's first cycle)." },
    RouteInfo { method: "POST", path: "/api/v1/site-mode", roles: "operator, admin", summary: "Switch the operating mode at run time: the site file's `[mode]` section as JSON with `mode` for `kind`, e.g. `{\"mode\": \"self-consumption\", \"reserve_soc_pct\": 20}`; modes `passive`, `manual`, `charge-only`, `self-consumption`, `peak-shaving`. Audited; answers `{state, mode}`." },
    RouteInfo { method: "GET", path: "/api/v1/audit", roles: "operator, admin", summary: "The audit log, newest first: `{entries: [{seq, at, actor, action, outcome, detail}], next}`. `limit` (1..=1000, default 100), `before` (a `seq`: the previous page's `next`; `next` is null on the last page), `from`/`to` (RFC 3339), `kind` (`ok`, `refused` or `failed` match the outcome; anything else is an action prefix such as `POST /api/v1/emergency-stop`, `state` or `schedule.`), `actor` (prefix)." },
    RouteInfo { method: "GET", path: "/metrics", roles: "viewer, operator, admin", summary: "Prometheus text format: cycle duration and lateness, E-stop to zero power, state, device errors, API answers by code, unauthenticated requests, audit queue depth and drops. Public (no token) when the gateway is configured so." },
    RouteInfo { method: "GET", path: "/api/v1/control-modes", roles: "viewer, operator, admin", summary: "`availableControlModes` and `activeControlModes`." },
    RouteInfo { method: "POST", path: "/api/v1/control-modes", roles: "operator, admin", summary: "Activate control modes: `{\"ess\": {\"mode\": \"LIMIT_CHARGE\", \"maxChargePower\": 1000}}` or `{\"activateControlModes\": {...}}`; `{\"ess\": null}` deactivates; `{}` changes nothing; 60 s watchdog unless `until` (RFC 3339, `\"sunset\"` or `{\"soc\": 80}`) or `duration` (seconds or ISO 8601 like `PT15M`)." },
    RouteInfo { method: "POST", path: "/api/v1/schedules", roles: "provider, admin", summary: "Submit a signed provider schedule. Ed25519 signature (128 hex digits in `auth.sign.signature`) over the UTF-8 of `ems-schedule-v1|<sn>|<executionTime>|<operation>|<power>|<provider>|<nonce>`, fields exactly as sent (`executionTime` as `YYYY-MM-DDTHH:MM:SSZ`, `power` an integer of watts)." },
    RouteInfo { method: "POST", path: "/api/v1/graphql", roles: "provider, admin", summary: "GraphQL: `mutation { ems { battery { schedule(sn, executionTime, operation, power, provider, nonce, auth: {sign: {signature}}) { scheduleId success } } } }` (same rules as POST /api/v1/schedules)." },
    RouteInfo { method: "GET", path: "/api/v1/schedules", roles: "viewer, operator, provider, admin", summary: "Every stored schedule (past, active and future), each with `appliedW` and `limitedBy`." },
    RouteInfo { method: "GET", path: "/api/v1/schedules/{id}", roles: "viewer, operator, provider, admin", summary: "One schedule, with `appliedW` and `limitedBy`." },
    RouteInfo { method: "DELETE", path: "/api/v1/schedules/{id}", roles: "operator, provider, admin", summary: "Delete a schedule." },
    RouteInfo { method: "GET", path: "/api/v1/whoami", roles: "viewer, operator, admin", summary: "The caller's token: `{name, role}` (the operator page hides what the role may not do)." },
    RouteInfo { method: "GET", path: "/api/v1/economics", roles: "viewer, operator, admin", summary: "What drives the battery now and why (`drives`, e.g. `rule 'evening peak': NO_DISCHARGE`), the price basis and status, any fallback, the active rule. 404 when economics is not configured (as every economics endpoint)." },
    RouteInfo { method: "GET", path: "/api/v1/plan", roles: "viewer, operator, admin", summary: "The plan in force (`status` ok/expired/none, `reason` it was made, `price_basis`, `acted_on`: whether it beats self-consumption by the margin and drives the battery) with its slots: prices, forecast PV and load, planned battery, grid and SOC, `self_consumption` (the slot runs the self-consumption loop), and `actual` for past slots (null for future ones). Signs: grid + import / - export, battery + discharge / - charge." },
    RouteInfo { method: "GET", path: "/api/v1/forecast", roles: "viewer, operator, admin", summary: "PV and load forecast per slot with the measured values of past slots, the live normalized mean absolute error (`errors`) and the PV correction ratio." },
    RouteInfo { method: "GET", path: "/api/v1/prices", roles: "viewer, operator, admin", summary: "Known prices (`price` = spot per kWh, `import_price`/`export_price` = all-in tariff prices), the feed's `status` (live/last_good/exhausted), the plan's `basis`, and every configured source's health." },
    RouteInfo { method: "POST", path: "/api/v1/prices", roles: "provider, admin", summary: "Push spot prices: `{\"prices\": [{\"start\", \"end\", \"price\"}]}` (RFC 3339, currency per kWh). `import_price`/`export_price` are accepted and ignored, so a GET's `prices` can be posted back; other keys are refused. Answers `{accepted}`; 404 without a push source, 409 for points overlapping each other or stored ones (`field` names the point, e.g. `prices[3].start`). Audited." },
    RouteInfo { method: "GET", path: "/api/v1/savings", roles: "viewer, operator, admin", summary: "Cost of the current `period` (day, month or year; default day, site time zone) with the EMS against no battery and plain self-consumption, with the savings." },
    RouteInfo { method: "GET", path: "/api/v1/report", roles: "viewer, operator, admin", summary: "One row per local day of `month` (YYYY-MM): energies (kWh), costs and savings. `format=json` (default) or `csv` (`text/csv`, header `date,import_kwh,export_kwh,pv_kwh,load_kwh,battery_charge_kwh,battery_discharge_kwh,cost,cost_no_battery,cost_self_consumption,saving_vs_no_battery,saving_vs_self_consumption`)." },
    RouteInfo { method: "GET", path: "/api/v1/rules", roles: "viewer, operator, admin", summary: "The operator rule set `{country?, rules}` and the current `decision`: `{winner, action, fired}`." },
    RouteInfo { method: "PUT", path: "/api/v1/rules", roles: "operator, admin", summary: "Replace the operator rule set (a `decision` member, as GET shows it, is ignored). The rules engine validates it: 400 naming the path (`rules[0].when.from`) and the value, and the stored set stays. Answers the stored set. Audited." },
    RouteInfo { method: "GET", path: "/api/v1/grid-services", roles: "viewer, operator, admin", summary: "The frequency services: `parameter_set`, `configured` (service, `capacity_w`, detail), the stored `commitments`, `active` (the services committed now: only these act) and `live` (published by the control loop: `state`, `frequency_hz`, summed `delta_w` (+ discharge), per service `activation`, `delta_w`, `endurance_up_s`/`endurance_down_s`, `nem`, `aem`, `alert_state`, `ready`). 404 without `[grid_services]`." },
    RouteInfo { method: "GET", path: "/api/v1/mqtt", roles: "viewer, operator, admin", summary: "The MQTT link: `connected`, `connections`, `connect_failures`, `commands`, `refused`, `ignored`, `telemetry_dropped`, `telemetry_superseded`, `replies_dropped`, `expired`, and its outage buffer: `buffered` (batches held now), `buffer_rows` (its bound), `buffer_taken`, `buffer_merged` (merged into older ones when full), `buffer_dropped` (not stored: database failure), `resent`, `resent_slices` (acknowledged on `<prefix>/<site>/history`), `resend_from`. 404 without `[mqtt]`." },
    RouteInfo { method: "GET", path: "/api/v1/cloud", roles: "viewer, operator, admin", summary: "The cloud link: `url`, `online`, `last_success`, `last_error`, `pushes_ok`, `pushes_failed`, `buffered` (outbox entries now), `buffer_rows` (its bound), `merged` (entries merged into older ones when full), `dropped`, `resent`, `resend_from`, `activations`, `schedules`. 404 without `[cloud]`." },
    RouteInfo { method: "PUT", path: "/api/v1/grid-services", roles: "operator, provider, admin", summary: "Replace the commitments: `{\"commitments\": [{\"service\": \"fcr-n\"|\"fcr-d-up\"|\"fcr-d-down\"|\"ffr\", \"capacity_w\", \"from\", \"until\"}]}` (RFC 3339; `[]` clears). 400 naming the field and value for an unknown or unconfigured service, a capacity <= 0 or above the configured one, `until` not after `from`, overlapping windows of one service. Persisted (kept across restarts). Answers the view as GET. Audited." },
    RouteInfo { method: "GET", path: "/api/v1/island", roles: "viewer, operator, admin", summary: "Island operation as the control loop last stepped it: `grid_state` (CONNECTED, TRANSFERRING, ISLANDED, BLACK START, RESYNCHRONISING, RECONNECTING, BLACKOUT, SAFE STOP, STARTING), `breaker` (read back) and `breaker_command`, `inverter_mode` and `inverter_command`, `close_conditions` (`grid_healthy`, `no_trip`, `breaker_open`, `synchronised`, `authorised`, `all`, `first_false`), `detection` (`trip`, `measured`, `rocof_hz_per_s`, `mean_voltage_v`, `grid_healthy_for_s`), `loads` (`name`, `priority`, `nominal_w`, `commanded`, `on`), `stop_reason`, `setpoints_allowed`, `power_limit_w` (the 10 % Pn/min reconnection ramp), `setpoint_bound`, `available_w`, `estop`, `recent_events`. 404 without an island." },
    RouteInfo { method: "POST", path: "/api/v1/island/black-start", roles: "operator, admin", summary: "Ask for a black start from BLACKOUT: `{\"reason\": \"...\"}` (non-empty, at most 500 bytes). Goes to the loop through the command queue; taken when the breaker reads open, the battery can supply and the grid is not healthy. Answers `{accepted, state, grid_state}`. 404 without an island. Audited." },
    RouteInfo { method: "POST", path: "/api/v1/island/reset", roles: "operator, admin", summary: "Reset a SAFE STOP of the island sequence (back to BLACKOUT): `{\"reason\": \"...\"}`. 409 outside SAFE STOP. 404 without an island. Audited." },
];

/// What an operation takes and answers, beyond [`RouteInfo`].
struct OpSpec {
    /// Query and path parameters (OpenAPI parameter objects).
    params: Vec<Value>,
    /// The JSON request body's schema (`None`: no body is read).
    body: Option<Value>,
    /// Status codes besides those every operation shares (see [`openapi`]).
    codes: &'static [u16],
    /// Whether a request that matches the schema may still be refused with 400 for reasons
    /// a schema cannot state (a signature, a site's serial numbers, cross-field rules).
    semantic: bool,
}

fn time_param(name: &str, required: bool, what: &str) -> Value {
    json!({ "name": name, "in": "query", "required": required, "description": what,
            "schema": { "type": "string", "format": "date-time" } })
}

fn power(what: &str) -> Value {
    json!({ "type": "number", "minimum": 0, "description": format!("{what}, W (at most the site's rating)") })
}

fn watts_schema(min: f64, max: f64) -> Value {
    json!({ "type": "number", "minimum": min, "maximum": max })
}

/// `POST /api/v1/site-mode` bodies, one per mode (see [`crate::site_mode`]).
fn site_mode_schema() -> Value {
    let pct = json!({ "type": "number", "minimum": 0, "maximum": 100 });
    let w = watts_schema(0.0, 1e7);
    let sw = watts_schema(-1e7, 1e7);
    let variant = crate::schema::mode_variant;
    json!({ "oneOf": [
        variant("passive", &[], json!({})),
        variant("manual", &["setpoint_w"], json!({ "setpoint_w": sw })),
        variant("charge-only", &[], json!({ "source": { "const": "pv-surplus" }, "soc_target_pct": pct, "max_grid_import_w": w })),
        variant("charge-only", &["source", "power_w"], json!({ "source": { "const": "fixed" }, "power_w": w, "soc_target_pct": pct, "max_grid_import_w": w })),
        variant("self-consumption", &[], json!({ "grid_setpoint_w": sw, "reserve_soc_pct": pct, "max_charge_w": w, "max_discharge_w": w })),
        variant("peak-shaving", &["import_cap_w"], json!({
            "import_cap_w": w, "export_cap_w": w, "recharge_below_w": sw, "max_recharge_w": w,
            "reserve_soc_pct": pct, "target_soc_pct": pct,
            "slots": { "type": "array", "maxItems": 8, "items": {
                "type": "object", "additionalProperties": false, "required": ["start", "import_cap_w", "export_cap_w"],
                "properties": { "start": { "type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$" }, "import_cap_w": w, "export_cap_w": w } } }
        })),
    ], "description": "The site file's `[mode]` section (`mode` in place of `kind`). Cross-field rules (reserve at or below target, slots in order of the day) are checked too (400, field `mode`)." })
}

fn ess_mode_schema() -> Value {
    let life = json!({
        "until": { "type": ["string", "object"], "description": "Hold until an RFC 3339 time (future, at most 7 days ahead), `\"sunset\"` (the next sunset at the site; refused without a configured location) or `{\"soc\": 80}` (the measured SOC reaches it: >= for FORCE_CHARGE/LIMIT_CHARGE, <= for the others)." },
        "duration": { "type": ["number", "string"], "description": "Seconds (> 0) or ISO 8601 like `PT15M`; at most 24 h." }
    });
    let variant = |mode: &str, field: Option<&str>| {
        let mut props = json!({ "mode": { "const": mode } });
        let mut required = vec!["mode".to_owned()];
        if let Value::Object(o) = &mut props {
            if let Some(f) = field {
                o.insert(f.to_owned(), power(f));
                required.push(f.to_owned());
            }
            if let Value::Object(l) = life.clone() {
                o.extend(l);
            }
        }
        json!({ "type": "object", "additionalProperties": false, "required": required, "properties": props })
    };
    json!({ "oneOf": [
        variant("NO_DISCHARGE", None),
        variant("LIMIT_CHARGE", Some("maxChargePower")),
        variant("LIMIT_DISCHARGE", Some("maxDischargePower")),
        variant("FORCE_CHARGE", Some("power")),
        { "type": "null", "description": "Deactivate." }
    ] })
}

/// Reads of parts a site may not have (404 then).
const OPTIONAL_GETS: &[&str] = &[
    "/api/v1/plan",
    "/api/v1/forecast",
    "/api/v1/prices",
    "/api/v1/rules",
    "/api/v1/economics",
    "/api/v1/grid-services",
    "/api/v1/cloud",
    "/api/v1/mqtt",
    "/api/v1/island",
];

fn op_spec(method: &str, path: &str) -> OpSpec {
    let none = |codes| OpSpec { params: vec![], body: None, codes, semantic: false };
    let obj = |required: &[&str], props: Value| json!({ "type": "object", "additionalProperties": false, "required": required, "properties": props });
    let id = json!({ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } });
    match (method, path) {
        ("GET", "/api/v1/current-data") => OpSpec {
            params: vec![json!({ "name": "channels", "in": "query", "required": false,
                "description": "1 to 64 comma-separated channel addresses `component/Channel`.",
                "schema": { "type": "string", "pattern": "^[^,/]+/[^,]+(,[^,/]+/[^,]+)*$", "example": "_sum/EssSoc,_sum/GridActivePower" } })],
            ..none(&[200, 400])
        },
        ("GET", "/api/v1/history") => OpSpec {
            params: vec![
                time_param("from", true, "Start (inclusive)."),
                time_param("to", true, "End (exclusive); after `from`, at most 31 days later."),
                json!({ "name": "channels", "in": "query", "required": true, "description": "1 to 64 comma-separated channel addresses.",
                        "schema": { "type": "string", "pattern": "^[^,/]+/[^,]+(,[^,/]+/[^,]+)*$", "example": "_sum/EssSoc" } }),
                json!({ "name": "resolution", "in": "query", "required": false, "description": "Bucket width, whole seconds; 0 = stored samples.",
                        "schema": { "type": "integer", "minimum": 0, "maximum": 86400 } }),
            ],
            ..none(&[200, 400])
        },
        ("GET", "/api/v1/live") => OpSpec { semantic: true, ..none(&[101, 400, 426]) },
        // 429 only for a token that may not press it (see `authorize`).
        ("POST", "/api/v1/emergency-stop") => none(&[200, 429]),
        ("POST", "/api/v1/reset") => OpSpec {
            body: Some(obj(
                &["reason"],
                json!({ "reason": { "type": "string", "minLength": 1, "maxLength": 500, "pattern": "\\S" } }),
            )),
            ..none(&[200, 400, 409, 413])
        },
        ("POST", "/api/v1/state") => OpSpec {
            body: Some(obj(&["request"], json!({ "request": { "enum": ["start", "stop", "acknowledge"] } }))),
            ..none(&[200, 400, 409, 413])
        },
        ("POST", "/api/v1/control-modes") => OpSpec {
            body: Some(json!({ "oneOf": [
                obj(&[], json!({ "ess": ess_mode_schema() })),
                obj(&["activateControlModes"], json!({ "activateControlModes": obj(&[], json!({ "ess": ess_mode_schema() })) })),
            ] })),
            ..none(&[200, 400, 413])
        },
        ("POST", "/api/v1/schedules") => OpSpec {
            body: Some(obj(
                &["sn", "executionTime", "operation", "power", "provider", "nonce", "auth"],
                json!({
                    "sn": { "type": "string", "minLength": 1, "maxLength": 128 },
                    "executionTime": { "type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$" },
                    "operation": { "enum": ["CHARGE", "DISCHARGE"] },
                    "power": { "type": "integer", "minimum": 0 },
                    "provider": { "type": "string", "minLength": 1, "maxLength": 128 },
                    "nonce": { "type": "string", "pattern": "^[A-Za-z0-9_-]{8,128}$" },
                    "auth": obj(&["sign"], json!({ "sign": obj(&["signature"], json!({ "signature": { "type": "string", "pattern": "^[0-9a-f]{128}$" } })) }))
                }),
            )),
            semantic: true,
            ..none(&[200, 400, 409, 413])
        },
        ("POST", "/api/v1/graphql") => OpSpec {
            body: Some(obj(
                &["query"],
                json!({
                    "query": { "type": "string" },
                    "variables": { "type": "object" },
                    "operationName": { "type": "string" },
                    "extensions": { "type": "object" }
                }),
            )),
            ..none(&[200, 400, 413])
        },
        ("GET", "/api/v1/schedules/{id}") => OpSpec { params: vec![id], ..none(&[200, 404]) },
        ("DELETE", "/api/v1/schedules/{id}") => OpSpec { params: vec![id], ..none(&[200, 404]) },
        ("GET", "/api/v1/audit") => OpSpec {
            params: vec![
                json!({ "name": "limit", "in": "query", "required": false, "description": "Page size, default 100.", "schema": { "type": "integer", "minimum": 1, "maximum": 1000 } }),
                json!({ "name": "before", "in": "query", "required": false, "description": "Only entries with a smaller `seq` (the previous page's `next`).", "schema": { "type": "integer", "minimum": 1 } }),
                time_param("from", false, "Only entries at or after this time."),
                time_param("to", false, "Only entries before this time (after `from`)."),
                json!({ "name": "kind", "in": "query", "required": false, "description": "`ok`, `refused` or `failed`: that outcome; anything else: entries whose action starts with it (`POST /api/v1/emergency-stop`, `state`, `schedule.`).", "schema": { "type": "string", "minLength": 1, "maxLength": 200 } }),
                json!({ "name": "actor", "in": "query", "required": false, "description": "Entries whose actor starts with this (`ops` matches `ops (operator)`).", "schema": { "type": "string", "minLength": 1, "maxLength": 200 } }),
            ],
            ..none(&[200, 400])
        },
        ("GET", "/api/v1/savings") => OpSpec {
            params: vec![
                json!({ "name": "period", "in": "query", "required": false, "description": "The current day (default), month or year, in the site's time zone.",
                                 "schema": { "enum": ["day", "month", "year"] } }),
            ],
            ..none(&[200, 400, 404])
        },
        ("GET", "/api/v1/report") => OpSpec {
            params: vec![
                json!({ "name": "month", "in": "query", "required": true, "description": "The month, YYYY-MM.",
                        "schema": { "type": "string", "pattern": "^[0-9]{4}-(0[1-9]|1[0-2])$", "example": "2026-05" } }),
                json!({ "name": "format", "in": "query", "required": false, "description": "`json` (default) or `csv`.",
                        "schema": { "enum": ["json", "csv"] } }),
            ],
            ..none(&[200, 400, 404])
        },
        ("GET", p) if OPTIONAL_GETS.contains(&p) => none(&[200, 404]),
        ("POST", "/api/v1/prices") => OpSpec {
            body: Some(crate::economics::pushed_prices_schema()),
            semantic: true,
            ..none(&[200, 400, 404, 409, 413])
        },
        ("PUT", "/api/v1/grid-services") => grid_services_put_spec(),
        ("POST", "/api/v1/island/black-start" | "/api/v1/island/reset") => island_action_spec(),
        ("PUT", "/api/v1/rules") => OpSpec {
            body: Some(crate::economics::rule_set_schema()),
            semantic: true,
            ..none(&[200, 400, 404, 409, 413])
        },
        ("POST", "/api/v1/site-mode") => {
            OpSpec { body: Some(site_mode_schema()), semantic: true, ..none(&[200, 400, 409, 413]) }
        }
        _ => none(&[200]),
    }
}

/// `POST /api/v1/island/black-start` and `/reset`: `{"reason"}` (kept out of [`op_spec`]).
fn island_action_spec() -> OpSpec {
    OpSpec {
        body: Some(json!({ "type": "object", "required": ["reason"], "additionalProperties": false,
                           "properties": { "reason": { "type": "string", "minLength": 1, "maxLength": 500 } } })),
        semantic: true,
        params: vec![],
        codes: &[200, 400, 404, 409, 413, 503],
    }
}

/// `PUT /api/v1/grid-services`: its body schema and answers (kept out of [`op_spec`]).
fn grid_services_put_spec() -> OpSpec {
    OpSpec {
        body: Some(crate::grid_services::commitments_schema()),
        semantic: true,
        params: vec![],
        codes: &[200, 400, 404, 413, 503],
    }
}

fn status_description(code: u16) -> &'static str {
    match code {
        101 => "Switching Protocols: the WebSocket is open.",
        200 => "OK.",
        400 => "Malformed or invalid input; `field` names it.",
        401 => "Missing or unknown bearer token.",
        403 => "The token's role may not do this (or, for schedules, the signature or provider is refused).",
        404 => "No such item; for the economics endpoints: economics is not configured on this site (no [economics] section), or (POST /api/v1/prices) no push price source is.",
        409 => "Refused by the state machine (`state`, `reason`), a replayed schedule, or (economics) a conflict with what is stored, e.g. overlapping price points.",
        413 => "Body over 64 KiB.",
        414 => "Request target over 8 KiB.",
        415 => "A body was sent without `Content-Type: application/json`.",
        426 => "The connection cannot be upgraded to a WebSocket.",
        429 => "Rate limit of the token or of the client address exhausted; see `Retry-After`.",
        431 => "Request headers over 64 fields or 16 KiB.",
        503 => "The control loop or the store is unavailable, the server is at its connection limit, or the request took longer than the request timeout.",
        _ => "See the summary.",
    }
}

/// The OpenAPI 3.1 document of [`ROUTES`]: for every operation its parameters, its request
/// body schema (`additionalProperties: false` wherever extra fields are refused) and every
/// status code it can answer. Every operation can also answer 414, 431 and 503; every one
/// except the E-stop 415 (a body that is not JSON) and 429 (the per-address limit); every one
/// that needs a token 401, 403 and 429. A method a path does not serve answers 405, an unknown
/// path 404 (both JSON). `x-roles` lists the roles allowed.
#[must_use]
pub fn openapi() -> Value {
    let mut paths: BTreeMap<&str, serde_json::Map<String, Value>> = BTreeMap::new();
    let error = json!({ "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } });
    for r in ROUTES {
        let spec = op_spec(r.method, r.path);
        let estop = r.path == ESTOP_PATH;
        let tokened = r.roles != "-" && r.path != "/api/v1/live";
        let mut codes: Vec<u16> = spec.codes.to_vec();
        codes.extend([414, 431, 503]);
        if !estop {
            codes.extend([415, 429]);
        }
        if tokened {
            codes.extend([401, 403, 429]);
        }
        codes.sort_unstable();
        codes.dedup();
        let mut responses = serde_json::Map::new();
        for c in codes {
            let content = match c {
                101 => Value::Null,
                200 if r.path == "/metrics" => json!({ "text/plain": { "schema": { "type": "string" } } }),
                200 => {
                    let schema = crate::economics::response_schema(r.method, r.path)
                        .unwrap_or_else(|| json!({ "type": "object" }));
                    let mut content = json!({ "application/json": { "schema": schema } });
                    if let (Value::Object(o), "/api/v1/report") = (&mut content, r.path) {
                        o.insert(
                            "text/csv".into(),
                            json!({ "schema": { "type": "string", "description": crate::economics::REPORT_CSV_HEADER } }),
                        );
                    }
                    content
                }
                _ => error.clone(),
            };
            let mut resp = json!({ "description": status_description(c) });
            if let (Value::Object(o), false) = (&mut resp, content.is_null()) {
                o.insert("content".into(), content);
            }
            responses.insert(c.to_string(), resp);
        }
        let roles: Vec<&str> =
            if r.roles == "-" { vec![] } else { r.roles.split(", ").map(str::trim).collect() };
        let mut op = json!({
            "summary": r.summary,
            "description": format!("Roles: {}.", r.roles),
            "x-roles": roles,
            "responses": responses,
        });
        if let Value::Object(o) = &mut op {
            if tokened {
                let security = if r.path == "/metrics" {
                    json!([{ "bearer": [] }, {}])
                } else {
                    json!([{ "bearer": [] }])
                };
                o.insert("security".into(), security);
            }
            if spec.semantic {
                o.insert("x-semantic-checks".into(), Value::Bool(true));
            }
            if !spec.params.is_empty() {
                o.insert("parameters".into(), Value::Array(spec.params));
            }
            if let Some(schema) = spec.body {
                o.insert(
                    "requestBody".into(),
                    json!({ "required": true, "content": { "application/json": { "schema": schema } } }),
                );
            } else if estop {
                o.insert(
                    "requestBody".into(),
                    json!({ "required": false, "description": "Ignored, whatever its type: a stop must not fail on its body.",
                            "content": { "*/*": { "schema": {} } } }),
                );
            }
        }
        paths.entry(r.path).or_default().insert(r.method.to_ascii_lowercase(), op);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "EMS API",
            "version": "1",
            "description": "Energy management system API. Signs: grid + import / - export; battery + discharge / - charge. Errors are JSON {error, field}. Every request with a body needs `Content-Type: application/json` (except the E-stop); JSON bodies with a key twice are refused (400). Rate limits per token and per client address apply to everything except the E-stop. Provider schedule signature: Ed25519 over the UTF-8 of `ems-schedule-v1|<sn>|<executionTime>|<operation>|<power>|<provider>|<nonce>`. An operation marked `x-semantic-checks` may refuse a request that matches its schema for reasons a schema cannot state (signatures, the site's serial numbers, cross-field rules)."
        },
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": { "Error": { "type": "object", "required": ["error"], "properties": { "error": { "type": "string" }, "field": { "type": "string" } } } }
        }
    })
}

pub use crate::error::ApiError;
pub(crate) use crate::error::ApiResult;

impl ApiState {
    /// Authenticate and authorize; a 403 is audited, a 401 or 429 is sampled into the audit
    /// log by the middleware ([`guard`]), which sees every one of them.
    pub(crate) fn authorize(
        &self,
        headers: &HeaderMap,
        access: Access,
        action: &str,
    ) -> Result<Principal, ApiError> {
        let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let result = if access == Access::EmergencyStop {
            match self.tokens.identify(auth) {
                Ok(p) if p.role.allows(access) => Ok(p),
                // Only a token that may press the E-stop is exempt from its rate limit; any
                // other would otherwise write audited 403s as fast as it can send them.
                Ok(_) => self.tokens.authenticate(auth, Instant::now()),
                Err(e) => Err(e),
            }
        } else {
            self.tokens.authenticate(auth, Instant::now())
        };
        match result {
            Ok(p) if p.role.allows(access) => Ok(p),
            Ok(p) => {
                let msg = format!("role '{}' may not call {action}", p.role.as_str());
                self.audit(&p.actor(), action, Outcome::Refused, msg.clone());
                Err(ApiError::new(StatusCode::FORBIDDEN, msg))
            }
            Err(e) => {
                let mut err = ApiError::new(
                    match e {
                        AuthError::Missing | AuthError::Invalid => StatusCode::UNAUTHORIZED,
                        AuthError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
                    },
                    e.to_string(),
                );
                if let AuthError::RateLimited { retry_after_secs } = e {
                    err.retry_after = Some(retry_after_secs);
                }
                Err(err)
            }
        }
    }

    pub(crate) fn body_object(
        &self,
        body: Result<Bytes, BytesRejection>,
        actor: &str,
        action: &str,
    ) -> Result<serde_json::Map<String, Value>, ApiError> {
        let parsed = match body {
            Ok(b) => input::parse_object(&b).map_err(ApiError::field),
            Err(rej) => {
                let status = rej.status();
                let status = if status.is_client_error() { status } else { StatusCode::BAD_REQUEST };
                Err(ApiError::new(status, format!("body: {}", rej.body_text())))
            }
        };
        parsed.inspect_err(|e| self.audit(actor, action, Outcome::Refused, e.error.clone()))
    }

    pub(crate) fn refuse(&self, actor: &str, action: &str, e: ApiError) -> ApiError {
        self.audit(actor, action, Outcome::Refused, e.error.clone());
        e
    }

    async fn command(&self, actor: &str, action: &str, cmd: ApiCommand) -> ApiResult {
        let state = self.command_state(actor, action, cmd).await?;
        Ok(Json(json!({ "state": state.as_str() })).into_response())
    }

    /// Send `cmd` to the loop, audit the outcome; the state after it.
    pub(crate) async fn command_state(
        &self,
        actor: &str,
        action: &str,
        cmd: ApiCommand,
    ) -> Result<ems_core::State, ApiError> {
        match self.commands.send(cmd).await {
            Ok(Ok(state)) => {
                self.audit(actor, action, Outcome::Ok, format!("state now {state}"));
                Ok(state)
            }
            Ok(Err(refusal)) => {
                self.audit(
                    actor,
                    action,
                    Outcome::Refused,
                    format!("{} (state {})", refusal.reason, refusal.state),
                );
                Err(ApiError {
                    status: StatusCode::CONFLICT,
                    error: refusal.reason.clone(),
                    field: None,
                    extra: Some(json!({ "state": refusal.state.as_str(), "reason": refusal.reason })),
                    retry_after: None,
                })
            }
            Err(e) => {
                self.audit(actor, action, Outcome::Failed, e.to_string());
                let mut err = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
                if matches!(e, LinkError::Busy) {
                    err.retry_after = Some(1);
                }
                Err(err)
            }
        }
    }
}

/// The router of the REST API. Serve it with [`crate::server::serve`] (connection limit,
/// timeouts, the peer address for the per-address rate limit); `axum::serve` works too but
/// has none of these.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/metrics", get(metrics_get))
        .route("/api/v1/audit", get(audit_get))
        .route("/api/v1/site-mode", get(site_mode_get).post(site_mode_post))
        .route("/api/v1/openapi.json", get(openapi_doc))
        .route("/api/v1/current-data", get(current_data))
        .route("/api/v1/history", get(history))
        .route("/api/v1/safety", get(safety))
        .route("/api/v1/live", get(crate::ws::live))
        .route("/", get(crate::dashboard::index))
        .route("/app.js", get(crate::dashboard::app_js))
        .route("/style.css", get(crate::dashboard::style_css))
        .route("/api/v1/emergency-stop", post(emergency_stop))
        .route("/api/v1/reset", post(reset))
        .route("/api/v1/state", post(state_request))
        .route("/api/v1/control-modes", get(control_modes_get).post(control_modes_post))
        .route("/api/v1/schedules", post(schedules_post).get(schedules_list))
        .route("/api/v1/schedules/{id}", get(schedules_get).delete(schedules_delete))
        .route("/api/v1/graphql", post(graphql_post))
        .route("/api/v1/whoami", get(whoami))
        .route("/api/v1/economics", get(economics_routes::summary_get))
        .route("/api/v1/plan", get(economics_routes::plan_get))
        .route("/api/v1/forecast", get(economics_routes::forecast_get))
        .route("/api/v1/prices", get(economics_routes::prices_get).post(economics_routes::prices_post))
        .route("/api/v1/savings", get(economics_routes::savings_get))
        .route("/api/v1/report", get(economics_routes::report_get))
        .route("/api/v1/rules", get(economics_routes::rules_get).put(economics_routes::rules_put))
        .route("/api/v1/cloud", get(cloud_get))
        .route("/api/v1/mqtt", get(mqtt_get))
        .route(
            "/api/v1/grid-services",
            get(crate::grid_services_routes::grid_services_get)
                .put(crate::grid_services_routes::grid_services_put),
        )
        .route("/api/v1/island", get(crate::island_routes::island_get))
        .route("/api/v1/island/black-start", post(crate::island_routes::black_start_post))
        .route("/api/v1/island/reset", post(crate::island_routes::reset_post))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// Whether a `Content-Type` value is JSON (`application/json`, any parameters, any case).
fn is_json(v: Option<&HeaderValue>) -> bool {
    v.and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// Whether the request carries a body (a non-zero `Content-Length`, or chunked).
fn has_body(headers: &HeaderMap) -> bool {
    if headers.contains_key(header::TRANSFER_ENCODING) {
        return true;
    }
    headers.get(header::CONTENT_LENGTH).is_some_and(|v| v.to_str().ok().map(str::trim) != Some("0"))
}

/// The middleware around every route, in this order:
/// 1. request target over [`MAX_URI_BYTES`] → 414, headers over [`MAX_HEADER_BYTES`] /
///    [`MAX_HEADER_FIELDS`] → 431;
/// 2. the per-address rate limit (429 + `Retry-After`) when the server supplied the peer
///    address (`ConnectInfo`), except for the E-stop;
/// 3. a request with a body must say `Content-Type: application/json` (415), except the
///    E-stop, whose body is ignored: a stop must not fail on a header;
/// 4. afterwards: any error answer that is not JSON yet (axum's own rejections) is turned into
///    `{"error": "..."}`; 401 and 429 answers are counted and sampled into the audit log; every
///    answer is counted in `ems_api_requests_total`.
async fn guard(State(s): State<ApiState>, req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    let had_token = req.headers().contains_key(header::AUTHORIZATION);
    // The path is the caller's text: keep what goes into the audit log short.
    let mut action = format!("{} {}", req.method(), req.uri().path());
    if action.len() > 200 {
        let mut cut = 197;
        while !action.is_char_boundary(cut) {
            cut -= 1;
        }
        action.truncate(cut);
        action.push_str("...");
    }
    let resp = match precheck(&s, &req, peer) {
        Err(e) => e.into_response(),
        Ok(()) => next.run(req).await,
    };
    let resp = json_error_body(resp).await;
    let status = resp.status();
    match status {
        StatusCode::UNAUTHORIZED => {
            let (kind, detail) = if had_token {
                (RefusalKind::Invalid, "invalid token")
            } else {
                (RefusalKind::Missing, "missing bearer token")
            };
            s.audit_sampled(kind, &action, detail, peer);
        }
        StatusCode::TOO_MANY_REQUESTS => {
            s.audit_sampled(RefusalKind::RateLimited, &action, "rate limited", peer)
        }
        _ => {}
    }
    s.metrics.api_request(status.as_u16());
    resp
}

fn precheck(s: &ApiState, req: &Request, peer: Option<SocketAddr>) -> Result<(), ApiError> {
    let uri_len = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if uri_len > MAX_URI_BYTES {
        return Err(ApiError::new(
            StatusCode::URI_TOO_LONG,
            format!("request target: {uri_len} bytes, at most {MAX_URI_BYTES}"),
        ));
    }
    let headers = req.headers();
    let header_bytes: usize = headers.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    if header_bytes > MAX_HEADER_BYTES || headers.len() > MAX_HEADER_FIELDS {
        return Err(ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "headers: {} fields, {header_bytes} bytes; at most {MAX_HEADER_FIELDS} fields, {MAX_HEADER_BYTES} bytes",
                headers.len()
            ),
        ));
    }
    let estop = req.uri().path() == ESTOP_PATH;
    if let (Some(peer), false) = (peer, estop) {
        if let Err(AuthError::RateLimited { retry_after_secs }) =
            s.tokens.charge_address(peer.ip(), Instant::now())
        {
            return Err(ApiError {
                retry_after: Some(retry_after_secs),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!("rate limit of address {} exceeded; retry after {retry_after_secs} s", peer.ip()),
                )
            });
        }
    }
    // The headers say whether a body comes; the size hint covers bodies built in-process
    // (tests, `oneshot`), which carry no `Content-Length`.
    let body_hint = axum::body::HttpBody::size_hint(req.body()).upper() != Some(0);
    if !estop && (has_body(headers) || body_hint) && !is_json(headers.get(header::CONTENT_TYPE)) {
        let got = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("none");
        return Err(ApiError {
            field: Some("Content-Type".into()),
            ..ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "Content-Type: a body must be application/json, got {}",
                    input::show(&Value::String(got.to_owned()))
                ),
            )
        });
    }
    Ok(())
}

/// An error answer (4xx, 5xx) whose body is not JSON becomes `{"error": "<its text>"}`.
async fn json_error_body(resp: Response) -> Response {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error())
        || is_json(resp.headers().get(header::CONTENT_TYPE))
    {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    // axum's rejection texts are short; a longer body is cut rather than buffered.
    let text = match axum::body::to_bytes(body, 4096).await {
        Ok(b) if !b.is_empty() => String::from_utf8_lossy(&b).into_owned(),
        _ => status.canonical_reason().unwrap_or("error").to_owned(),
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    let mut fixed = ApiError::new(status, text).into_response();
    for (k, v) in &parts.headers {
        if k != header::CONTENT_TYPE {
            fixed.headers_mut().insert(k.clone(), v.clone());
        }
    }
    fixed
}

async fn metrics_get(State(s): State<ApiState>, headers: HeaderMap) -> ApiResult {
    if !s.config.metrics_public {
        s.authorize(&headers, Access::Read, "GET /metrics")?;
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], s.metrics.render())
        .into_response())
}

fn parse_audit_query(q: &BTreeMap<String, String>) -> Result<AuditQuery, FieldError> {
    input::only_keys_str(q, &["limit", "before", "from", "to", "kind", "actor"])?;
    let limit = match q.get("limit") {
        None => 100,
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if (1..=crate::ports::MAX_AUDIT_PAGE).contains(&n) => n,
            _ => {
                return Err(FieldError::new("limit", format!("must be a whole number 1..=1000, got {raw:?}")))
            }
        },
    };
    let before = match q.get("before") {
        None => None,
        Some(raw) => Some(raw.parse::<u64>().ok().filter(|b| *b >= 1).ok_or_else(|| {
            FieldError::new("before", format!("must be a sequence number >= 1, got {raw:?}"))
        })?),
    };
    let from = q.contains_key("from").then(|| parse_time(q, "from")).transpose()?;
    let to = q.contains_key("to").then(|| parse_time(q, "to")).transpose()?;
    if let (Some(f), Some(t)) = (from, to) {
        if t <= f {
            return Err(FieldError::new("to", format!("must be after 'from' ({f}), got {t}")));
        }
    }
    let text = |k: &str| -> Result<Option<String>, FieldError> {
        match q.get(k) {
            None => Ok(None),
            Some(v) if v.is_empty() || v.len() > 200 => {
                Err(FieldError::new(k, format!("must be 1..=200 bytes, got {} bytes", v.len())))
            }
            Some(v) => Ok(Some(v.clone())),
        }
    };
    Ok(AuditQuery { limit, before, from, to, kind: text("kind")?, actor: text("actor")? })
}

async fn audit_get(
    State(s): State<ApiState>,
    headers: HeaderMap,
    q: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> ApiResult {
    const ACTION: &str = "GET /api/v1/audit";
    let p = s.authorize(&headers, Access::AuditRead, ACTION)?;
    let q = query_map(q).map_err(|e| s.refuse(&p.actor(), ACTION, e))?;
    let query = parse_audit_query(&q).map_err(|e| s.refuse(&p.actor(), ACTION, ApiError::field(e)))?;
    let audit = s.audit.clone();
    // SQLite reads block; keep them off the async workers.
    let page = tokio::task::spawn_blocking(move || audit.query_audit(&query))
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("audit query failed: {e}")))?
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let entries: Vec<Value> = page
        .entries
        .iter()
        .map(|e| {
            json!({ "seq": e.seq, "at": e.at.to_string(), "actor": e.actor, "action": e.action,
                    "outcome": e.outcome, "detail": e.detail })
        })
        .collect();
    Ok(Json(json!({ "entries": entries, "next": page.next })).into_response())
}

async fn site_mode_get(State(s): State<ApiState>, headers: HeaderMap) -> ApiResult {
    s.authorize(&headers, Access::Read, "GET /api/v1/site-mode")?;
    let view = s.view.borrow().clone();
    Ok(Json(json!({ "mode": view.safety.mode, "timestamp": view.at.map(|t| t.to_string()) })).into_response())
}

async fn site_mode_post(
    State(s): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    const ACTION: &str = "POST /api/v1/site-mode";
    let p = s.authorize(&headers, Access::Operate, ACTION)?;
    let actor = p.actor();
    let o = s.body_object(body, &actor, ACTION)?;
    let mode = crate::site_mode::parse(&o).map_err(|e| s.refuse(&actor, ACTION, ApiError::field(e)))?;
    let action = format!("{ACTION} {mode}");
    let state = s.command_state(&actor, &action, ApiCommand::SetMode { actor: actor.clone(), mode }).await?;
    Ok(Json(json!({ "state": state.as_str(), "mode": mode.to_string() })).into_response())
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such endpoint (see /api/v1/openapi.json)")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this endpoint (see /api/v1/openapi.json)",
    )
}

async fn openapi_doc() -> Json<Value> {
    Json(openapi())
}

fn query_map(
    q: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Result<BTreeMap<String, String>, ApiError> {
    q.map(|Query(m)| m)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("query: {}", e.body_text())))
}

fn channel_list(raw: &str) -> Result<Vec<&str>, FieldError> {
    let list: Vec<&str> = raw.split(',').map(str::trim).filter(|c| !c.is_empty()).collect();
    if list.is_empty() || list.len() > 64 {
        return Err(FieldError::new(
            "channels",
            format!("give 1..=64 comma-separated channel addresses, got {}", list.len()),
        ));
    }
    if let Some(bad) = list.iter().find(|c| c.len() > 128 || !c.contains('/')) {
        return Err(FieldError::new(
            "channels",
            format!("not a channel address (component/Channel): {bad:?}"),
        ));
    }
    Ok(list)
}

/// `GET /api/v1/mqtt`.
async fn mqtt_get(State(s): State<ApiState>, headers: HeaderMap) -> ApiResult {
    s.authorize(&headers, Access::Read, "GET /api/v1/mqtt")?;
    let stats = s
        .mqtt
        .as_ref()
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, crate::mqtt::status::NOT_CONFIGURED))?
        .get()
        // The gateway starts the link before it serves: not seen outside tests.
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "the MQTT link has not started"))?;
    Ok(Json(stats).into_response())
}

/// `GET /api/v1/cloud`.
async fn cloud_get(State(s): State<ApiState>, headers: HeaderMap) -> ApiResult {
    s.authorize(&headers, Access::Read, "GET /api/v1/cloud")?;
    let c =
        s.cloud.as_ref().ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, crate::cloud::NOT_CONFIGURED))?;
    Ok(Json(c.get()).into_response())
}

async fn current_data(
    State(s): State<ApiState>,
    headers: HeaderMap,
    q: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> ApiResult {
    const ACTION: &str = "GET /api/v1/current-data";
    let p = s.authorize(&headers, Access::Read, ACTION)?;
    let q = query_map(q).map_err(|e| s.refuse(&p.actor(), ACTION, e))?;
    let view = s.view.borrow().clone();
    let channels: serde_json::Map<String, Value> = match q.get("channels") {
        None => view.channels.iter().map(|(k, v)| (k.clone(), json!(v))).collect(),
        Some(raw) => {
            let list = channel_list(raw).map_err(|e| s.refuse(&p.actor(), ACTION, ApiError::field(e)))?;
            list.iter()
                .map(|c| ((*c).to_owned(), view.channels.get(*c).map_or(Value::Null, |v| json!(v))))
                .collect()
        }
    };
    Ok(Json(json!({ "timestamp": view.at.map(|t| t.to_string()), "channels": channels })).into_response())
}

fn parse_time(q: &BTreeMap<String, String>, key: &str) -> Result<Timestamp, FieldError> {
    let raw = q.get(key).ok_or_else(|| FieldError::new(key, "missing (an RFC 3339 time is required)"))?;
    raw.parse().map_err(|e| FieldError::new(key, format!("not an RFC 3339 time {raw:?}: {e}")))
}

async fn history(
    State(s): State<ApiState>,
    headers: HeaderMap,
    q: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> ApiResult {
    const ACTION: &str = "GET /api/v1/history";
    let p = s.authorize(&headers, Access::Read, ACTION)?;
    let actor = p.actor();
    let q = query_map(q).map_err(|e| s.refuse(&actor, ACTION, e))?;
    let parsed = (|| {
        let from = parse_time(&q, "from")?;
        let to = parse_time(&q, "to")?;
        if to <= from {
            return Err(FieldError::new("to", format!("must be after 'from' ({from}), got {to}")));
        }
        if to.duration_since(from) > MAX_HISTORY_SPAN {
            return Err(FieldError::new(
                "to",
                format!("the window may span at most {} days", MAX_HISTORY_SPAN.as_hours() / 24),
            ));
        }
        let channels = channel_list(q.get("channels").map_or("", String::as_str))?;
        let resolution = match q.get("resolution") {
            None => SignedDuration::ZERO,
            Some(r) => {
                let secs: u32 = r.parse().map_err(|_| {
                    FieldError::new("resolution", format!("must be whole seconds 0..=86400, got {r:?}"))
                })?;
                if secs > 86_400 {
                    return Err(FieldError::new(
                        "resolution",
                        format!("must be whole seconds 0..=86400, got {secs}"),
                    ));
                }
                SignedDuration::from_secs(i64::from(secs))
            }
        };
        Ok((from, to, channels, resolution))
    })();
    let (from, to, channels, resolution) =
        parsed.map_err(|e| s.refuse(&actor, ACTION, ApiError::field(e)))?;
    let points = s
        .history
        .query(from, to, &channels, resolution)
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok(Json(json!({ "from": from.to_string(), "to": to.to_string(), "resolutionSeconds": resolution.as_secs(), "points": points }))
        .into_response())
}

async fn safety(State(s): State<ApiState>, headers: HeaderMap) -> ApiResult {
    s.authorize(&headers, Access::Read, "GET /api/v1/safety")?;
    let view = s.view.borrow().clone();
    let mut body = json!(view.safety);
    if let Value::Object(o) = &mut body {
        o.insert("timestamp".into(), json!(view.at.map(|t| t.to_string())));
        o.insert("devices".into(), json!(view.devices));
        o.insert("limitExplanations".into(), json!(crate::model::explain_limits(&view.safety)));
    }
    Ok(Json(body).into_response())
}

async fn whoami(State(s): State<ApiState>, headers: HeaderMap) -> ApiResult {
    let p = s.authorize(&headers, Access::Read, "GET /api/v1/whoami")?;
    Ok(Json(json!({ "name": p.name, "role": p.role.as_str() })).into_response())
}

async fn emergency_stop(State(s): State<ApiState>, headers: HeaderMap) -> ApiResult {
    const ACTION: &str = "POST /api/v1/emergency-stop";
    let p = s.authorize(&headers, Access::EmergencyStop, ACTION)?;
    let actor = p.actor();
    match s.estop.press(&actor).await {
        Ok(ack) if ack.state == ems_core::State::Stopped => {
            let took_ms = ack.took.as_secs_f64() * 1000.0;
            s.audit(
                &actor,
                ACTION,
                Outcome::Ok,
                format!("state now {}, zero power after {took_ms:.1} ms", ack.state),
            );
            Ok(Json(json!({ "state": ack.state.as_str(), "tookMs": took_ms })).into_response())
        }
        Ok(ack) => {
            let msg = format!("the E-stop was not confirmed: the state is {}", ack.state);
            s.audit(&actor, ACTION, Outcome::Failed, msg.clone());
            Err(ApiError {
                extra: Some(json!({ "state": ack.state.as_str() })),
                ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, msg)
            })
        }
        Err(e) => {
            s.audit(&actor, ACTION, Outcome::Failed, e.to_string());
            Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))
        }
    }
}

async fn reset(
    State(s): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    const ACTION: &str = "POST /api/v1/reset";
    let p = s.authorize(&headers, Access::Operate, ACTION)?;
    let actor = p.actor();
    let o = s.body_object(body, &actor, ACTION)?;
    let reason = (|| {
        input::only_keys(&o, "", &["reason"])?;
        let r = input::req_str(&o, "", "reason")?.trim();
        if r.is_empty() || r.len() > 500 {
            return Err(FieldError::new("reason", "must be a non-empty text of at most 500 bytes"));
        }
        Ok(r.to_owned())
    })()
    .map_err(|e| s.refuse(&actor, ACTION, ApiError::field(e)))?;
    let action = format!("{ACTION} ({reason})");
    s.command(&actor, &action, ApiCommand::Reset { actor: actor.clone(), reason }).await
}

async fn state_request(
    State(s): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    const ACTION: &str = "POST /api/v1/state";
    let p = s.authorize(&headers, Access::Operate, ACTION)?;
    let actor = p.actor();
    let o = s.body_object(body, &actor, ACTION)?;
    let request = (|| {
        input::only_keys(&o, "", &["request"])?;
        match input::req_str(&o, "", "request")? {
            "start" => Ok(TransitionRequest::Start),
            "stop" => Ok(TransitionRequest::Stop),
            "acknowledge" => Ok(TransitionRequest::Acknowledge),
            "reset" => Err(FieldError::new("request", "use POST /api/v1/reset with a reason")),
            other => Err(FieldError::new(
                "request",
                format!(
                    "must be start, stop or acknowledge, got {}",
                    input::show(&Value::String(other.to_owned()))
                ),
            )),
        }
    })()
    .map_err(|e| s.refuse(&actor, ACTION, ApiError::field(e)))?;
    let action = format!("{ACTION} {request}");
    s.command(&actor, &action, ApiCommand::Request { actor: actor.clone(), request }).await
}

fn modes(s: &ApiState) -> std::sync::MutexGuard<'_, ControlModes> {
    // Plain data; a panic elsewhere while holding the lock cannot leave it half-updated in a
    // way `activate` does not already tolerate (it only replaces the value when valid).
    s.modes.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn control_modes_get(State(s): State<ApiState>, headers: HeaderMap) -> ApiResult {
    s.authorize(&headers, Access::Read, "GET /api/v1/control-modes")?;
    let now = s.clock.now();
    let m = modes(&s);
    Ok(Json(json!({ "availableControlModes": m.available_json(), "activeControlModes": m.active_json(now) }))
        .into_response())
}

async fn control_modes_post(
    State(s): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    const ACTION: &str = "POST /api/v1/control-modes";
    let p = s.authorize(&headers, Access::Operate, ACTION)?;
    let actor = p.actor();
    let o = s.body_object(body, &actor, ACTION)?;
    let now = s.clock.now();
    let (change, active) = {
        let mut m = modes(&s);
        let change = m.activate(&o, now);
        (change, m.active_json(now))
    };
    match change.map_err(|e| s.refuse(&actor, ACTION, ApiError::field(e)))? {
        Change::Unchanged | Change::Refreshed(_) => {}
        Change::Activated(m) => s.audit(
            &actor,
            ACTION,
            Outcome::Ok,
            format!("ess {} until {} ({})", m.mode, m.expires_at, m.expiry.as_str()),
        ),
        Change::Deactivated(before) => s.audit(
            &actor,
            ACTION,
            Outcome::Ok,
            format!("ess deactivated (was {})", before.map_or_else(|| "none".to_owned(), |m| m.to_string())),
        ),
    }
    Ok(Json(json!({ "activeControlModes": active })).into_response())
}

async fn schedules_post(
    State(s): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    const ACTION: &str = "schedule.submit";
    let p = s.authorize(&headers, Access::ScheduleSubmit, "POST /api/v1/schedules")?;
    let actor = p.actor();
    let o = s.body_object(body, &actor, ACTION)?;
    let accepted = s.schedules.submit(&o, &actor, s.clock.now())?;
    Ok(Json(json!(accepted)).into_response())
}

async fn schedules_list(State(s): State<ApiState>, headers: HeaderMap) -> ApiResult {
    s.authorize(&headers, Access::ScheduleRead, "GET /api/v1/schedules")?;
    Ok(Json(json!({ "schedules": s.schedules.list() })).into_response())
}

async fn schedules_get(State(s): State<ApiState>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult {
    s.authorize(&headers, Access::ScheduleRead, "GET /api/v1/schedules/{id}")?;
    match s.schedules.get(&id) {
        Some(sch) => Ok(Json(json!(sch)).into_response()),
        None => Err(ApiError {
            field: Some("id".into()),
            ..ApiError::new(StatusCode::NOT_FOUND, format!("no schedule {id:?}"))
        }),
    }
}

async fn schedules_delete(
    State(s): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let p = s.authorize(&headers, Access::ScheduleDelete, "DELETE /api/v1/schedules/{id}")?;
    s.schedules.delete(&id, &p.actor(), s.clock.now())?;
    Ok(Json(json!({ "scheduleId": id, "deleted": true })).into_response())
}

async fn graphql_post(
    State(s): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    const ACTION: &str = "POST /api/v1/graphql";
    let p = s.authorize(&headers, Access::ScheduleSubmit, ACTION)?;
    let actor = p.actor();
    let o = s.body_object(body, &actor, ACTION)?;
    input::only_keys(&o, "", &["query", "variables", "operationName", "extensions"])
        .and_then(|()| input::req_str(&o, "", "query").map(|_| ()))
        .map_err(|e| s.refuse(&actor, ACTION, ApiError::field(e)))?;
    let request: async_graphql::Request = serde_json::from_value(Value::Object(o)).map_err(|e| {
        s.refuse(
            &actor,
            ACTION,
            ApiError::new(StatusCode::BAD_REQUEST, format!("not a GraphQL JSON request: {e}")),
        )
    })?;
    let ctx = crate::graphql::GqlContext { schedules: s.schedules.clone(), actor, now: s.clock.now() };
    let response = crate::graphql::schema().execute(request.data(ctx)).await;
    Ok(Json(json!(response)).into_response())
}
