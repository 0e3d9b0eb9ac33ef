//! The OpenAPI document against the server, driven by the document itself: for every
//! operation, requests are generated from its parameters and request-body schema (valid ones,
//! and mutated ones: a required field missing, an extra property, a wrong type, a duplicate
//! key, a wrong content type, no token, a role not allowed) and sent through the router. Each
//! answer's status must be one the document lists for that operation; a valid request must not
//! be refused as malformed (400/413/415/422) unless the operation is marked
//! `x-semantic-checks`; a mutated one must not be accepted (2xx).
// Test code: a failed unwrap or panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod rest_support;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use ems_api::rest::openapi;
use http_body_util::BodyExt;
use proptest::prelude::*;
use rest_support::*;
use serde_json::{json, Map, Value};
use tower::ServiceExt;

/// A small deterministic generator seeded by proptest (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    fn chance(&mut self) -> bool {
        self.next() & 1 == 1
    }
    fn word(&mut self, min: u64, max: u64) -> String {
        let len = min + self.below(max.saturating_sub(min) + 1);
        (0..len).map(|_| char::from(b'a' + u8::try_from(self.below(26)).unwrap())).collect()
    }
    fn hex(&mut self, len: usize) -> String {
        (0..len).map(|_| char::from_digit(u32::try_from(self.below(16)).unwrap(), 16).unwrap()).collect()
    }
}

/// A string matching `pattern`: the patterns the document uses. An unknown one fails the test,
/// so a new pattern is noticed here.
fn string_for_pattern(pattern: &str, schema: &Value, rng: &mut Rng) -> String {
    if let Some(Value::String(e)) = schema.get("example") {
        return e.clone();
    }
    match pattern {
        "\\S" => rng.word(1, 20),
        "^([01][0-9]|2[0-3]):[0-5][0-9]$" => format!("{:02}:{:02}", rng.below(24), rng.below(60)),
        "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$" => {
            format!("2026-05-01T{:02}:{:02}:00Z", 12 + rng.below(10), rng.below(60))
        }
        "^[A-Za-z0-9_-]{8,128}$" => rng.word(8, 24),
        "^[0-9a-f]{128}$" => rng.hex(128),
        other => panic!("no generator for pattern {other:?}"),
    }
}

fn number_bounds(schema: &Value) -> (f64, f64) {
    let min = schema.get("minimum").and_then(Value::as_f64);
    let max = schema.get("maximum").and_then(Value::as_f64);
    match (min, max) {
        (Some(a), Some(b)) => (a, b),
        (Some(a), None) => (a, a + 1000.0),
        (None, Some(b)) => (b - 1000.0, b),
        (None, None) => (0.0, 1000.0),
    }
}

/// Whether an optional property is generated: not those whose validity depends on the time
/// of the request or on another field (a `format`, or a choice of types).
fn simple(schema: &Value) -> bool {
    schema.get("format").is_none() && !schema.get("type").is_some_and(Value::is_array)
}

/// A value valid for `schema`.
fn generate(schema: &Value, rng: &mut Rng) -> Value {
    if let Some(Value::Array(variants)) = schema.get("oneOf") {
        let i = usize::try_from(rng.below(variants.len() as u64)).unwrap();
        return generate(&variants[i], rng);
    }
    if let Some(c) = schema.get("const") {
        return c.clone();
    }
    if let Some(Value::Array(options)) = schema.get("enum") {
        return options[usize::try_from(rng.below(options.len() as u64)).unwrap()].clone();
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("null") => Value::Null,
        Some("boolean") => Value::Bool(rng.chance()),
        Some("integer") => {
            let (a, b) = number_bounds(schema);
            // f64 to i64 has no `TryFrom`: integer bounds of the spec, whole numbers far inside i64.
            #[allow(clippy::cast_possible_truncation)]
            let (a, b) = (a as i64, b as i64);
            json!(a + i64::try_from(rng.below(u64::try_from(b - a).unwrap() + 1)).unwrap())
        }
        Some("number") => {
            let (a, b) = number_bounds(schema);
            let f = f64::from(u32::try_from(rng.below(1001)).unwrap()) / 1000.0;
            json!((a + (b - a) * f).round())
        }
        Some("string") => match schema.get("pattern").and_then(Value::as_str) {
            Some(p) => Value::String(string_for_pattern(p, schema, rng)),
            None => {
                let min = schema.get("minLength").and_then(Value::as_u64).unwrap_or(1);
                let max = schema.get("maxLength").and_then(Value::as_u64).unwrap_or(20).min(20);
                Value::String(rng.word(min, max))
            }
        },
        Some("array") => {
            let max = schema.get("maxItems").and_then(Value::as_u64).unwrap_or(3).min(3);
            let n = rng.below(max + 1);
            Value::Array((0..n).map(|_| generate(&schema["items"], rng)).collect())
        }
        Some("object") => {
            let required: Vec<&str> = schema
                .get("required")
                .and_then(Value::as_array)
                .map_or_else(Vec::new, |r| r.iter().filter_map(Value::as_str).collect());
            let mut out = Map::new();
            if let Some(Value::Object(props)) = schema.get("properties") {
                for (k, s) in props {
                    if required.contains(&k.as_str()) || (simple(s) && rng.chance()) {
                        out.insert(k.clone(), generate(s, rng));
                    }
                }
            }
            Value::Object(out)
        }
        _ => Value::String(rng.word(1, 8)),
    }
}

/// The object schema a generated body came from (the `oneOf` variant it matches by `const`s).
fn object_variant<'a>(schema: &'a Value, body: &Value) -> Option<&'a Value> {
    if let Some(Value::Array(variants)) = schema.get("oneOf") {
        return variants.iter().find_map(|v| {
            let v = object_variant(v, body)?;
            let props = v.get("properties")?.as_object()?;
            let consts_match =
                props.iter().all(|(k, s)| s.get("const").is_none_or(|c| body.get(k) == Some(c)));
            let keys_known = body.as_object()?.keys().all(|k| props.contains_key(k));
            (consts_match && keys_known).then_some(v)
        });
    }
    (schema.get("type").and_then(Value::as_str) == Some("object")).then_some(schema)
}

/// Whether `v` matches `schema` (the subset of JSON Schema the document uses; patterns and
/// formats are not checked, so a mutant is only ever judged on structure and types).
fn matches(schema: &Value, v: &Value) -> bool {
    if let Some(Value::Array(variants)) = schema.get("oneOf") {
        return variants.iter().filter(|s| matches(s, v)).count() == 1;
    }
    if let Some(c) = schema.get("const") {
        return c == v;
    }
    if let Some(Value::Array(options)) = schema.get("enum") {
        return options.contains(v);
    }
    let type_ok = |t: &str| match t {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "integer" => v.is_u64() || v.is_i64(),
        "number" => v.is_number(),
        "string" => v.is_string(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        _ => true,
    };
    match schema.get("type") {
        Some(Value::String(t)) if !type_ok(t) => return false,
        Some(Value::Array(ts)) if !ts.iter().filter_map(Value::as_str).any(type_ok) => return false,
        _ => {}
    }
    if let Some(x) = v.as_f64() {
        if schema.get("minimum").and_then(Value::as_f64).is_some_and(|m| x < m)
            || schema.get("maximum").and_then(Value::as_f64).is_some_and(|m| x > m)
        {
            return false;
        }
    }
    if let Some(o) = v.as_object() {
        let props = schema.get("properties").and_then(Value::as_object);
        let required = schema.get("required").and_then(Value::as_array).cloned().unwrap_or_default();
        if required.iter().filter_map(Value::as_str).any(|k| !o.contains_key(k)) {
            return false;
        }
        for (k, x) in o {
            match props.and_then(|p| p.get(k)) {
                Some(s) if !matches(s, x) => return false,
                None if schema["additionalProperties"] == false => return false,
                _ => {}
            }
        }
    }
    if let (Some(a), Some(items)) = (v.as_array(), schema.get("items")) {
        if a.iter().any(|x| !matches(items, x)) {
            return false;
        }
    }
    true
}

/// A value of another JSON type than `schema` allows.
fn wrong_type(schema: &Value) -> Value {
    match schema.get("type").and_then(Value::as_str) {
        Some("string") => json!(12345),
        Some("number" | "integer") => json!("12"),
        Some("object") => json!("x"),
        Some("array") => json!({"x": 1}),
        _ => json!([1, 2]),
    }
}

fn token_of(role: &str) -> &'static str {
    match role {
        "viewer" => VIEWER,
        "operator" => OPERATOR,
        "provider" => PROVIDER,
        "admin" => ADMIN,
        other => panic!("unknown role {other}"),
    }
}

struct Op {
    method: Method,
    path: String,
    op: Value,
}

fn operations(doc: &Value) -> Vec<Op> {
    let mut out = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (m, op) in ops.as_object().unwrap() {
            out.push(Op { method: m.to_uppercase().parse().unwrap(), path: path.clone(), op: op.clone() });
        }
    }
    out
}

fn target(op: &Op, rng: &mut Rng) -> String {
    let mut path = op.path.replace("{id}", &format!("sch-{}", rng.word(3, 10)));
    let mut query = Vec::new();
    for p in op.op.get("parameters").and_then(Value::as_array).into_iter().flatten() {
        if p["in"] != "query" {
            continue;
        }
        let name = p["name"].as_str().unwrap();
        if p["required"] != true && !rng.chance() {
            continue;
        }
        let value = if p["schema"]["format"] == "date-time" {
            // `from` before `to`, within the 31 days a history window may span.
            let hour = if name == "from" { rng.below(10) } else { 12 + rng.below(10) };
            format!("2026-05-01T{hour:02}:00:00Z")
        } else {
            match generate(&p["schema"], rng) {
                Value::String(s) => s,
                other => other.to_string(),
            }
        };
        query.push(format!("{name}={value}"));
    }
    if !query.is_empty() {
        path = format!("{path}?{}", query.join("&"));
    }
    path
}

async fn send(
    h: &Harness,
    method: &Method,
    uri: &str,
    token: Option<&str>,
    ctype: &str,
    body: String,
) -> (StatusCode, String) {
    let mut req = Request::builder().method(method.clone()).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if method == Method::GET && uri.ends_with("/live") {
        req = req
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
    }
    if !body.is_empty() {
        req = req.header("content-type", ctype);
    }
    let resp = h.router.clone().oneshot(req.body(Body::from(body)).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn documented(op: &Op, status: StatusCode) -> bool {
    op.op["responses"].get(status.as_str()).is_some()
}

/// Bodies that must be refused: a required field missing or of the wrong type, an extra
/// property, a duplicate key, not JSON, not an object.
fn mutants(schema: &Value, valid: &Value, valid_text: &str, rng: &mut Rng) -> Vec<(&'static str, String)> {
    let mut mutants: Vec<(&'static str, String)> = Vec::new();
    if let Some(variant) = object_variant(schema, valid) {
        let obj = valid.as_object().unwrap();
        let required: Vec<&str> =
            variant["required"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        if !required.is_empty() {
            let k = required[usize::try_from(rng.below(required.len() as u64)).unwrap()];
            let mut m = obj.clone();
            m.remove(k);
            mutants.push(("missing required field", Value::Object(m).to_string()));
            let mut m = obj.clone();
            m.insert(k.to_owned(), wrong_type(&variant["properties"][k]));
            mutants.push(("wrong type", Value::Object(m).to_string()));
        }
        if variant["additionalProperties"] == false {
            let mut m = obj.clone();
            m.insert("zzExtra".into(), json!(1));
            mutants.push(("extra property", Value::Object(m).to_string()));
        }
        if let Some((k, v)) = obj.iter().next() {
            let dup = format!("{{\"{k}\": {v}, {}", &valid_text[1..]);
            mutants.push(("duplicate key", dup));
        }
    }
    mutants.push(("not JSON", "{\"a\":".to_owned()));
    mutants.push(("not an object", "[1,2]".to_owned()));
    mutants
}

/// Run every kind of request against every operation once, with `seed`.
async fn conformance(seed: u64) {
    let doc = openapi();
    let h = harness();
    let mut rng = Rng(seed);
    for op in operations(&doc) {
        let name = format!("{} {}", op.method, op.path);
        let roles: Vec<&str> =
            op.op["x-roles"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        let semantic = op.op["x-semantic-checks"] == true;
        let token =
            roles.get(usize::try_from(rng.below(roles.len() as u64)).unwrap_or(0)).map(|r| token_of(r));
        let schema = op.op["requestBody"]["content"]["application/json"]["schema"].clone();
        let has_schema = !schema.is_null();
        let valid = if has_schema { generate(&schema, &mut rng) } else { Value::Null };
        assert!(
            !has_schema || matches(&schema, &valid),
            "{name}: generated {valid} does not match its schema"
        );
        let valid_text = if has_schema { valid.to_string() } else { String::new() };

        // A valid request.
        let uri = target(&op, &mut rng);
        let (status, body) = send(&h, &op.method, &uri, token, "application/json", valid_text.clone()).await;
        assert!(documented(&op, status), "{name} valid {uri} {valid}: {status} not documented; {body}");
        let malformed = [400, 413, 415, 422].contains(&status.as_u16());
        assert!(semantic || !malformed, "{name} valid {uri} {valid}: refused {status}: {body}");
        // With an allowed role; only a semantic refusal (a schedule's signature) may be 403.
        assert!(status != StatusCode::UNAUTHORIZED, "{name}: {status} {body}");
        assert!(semantic || status != StatusCode::FORBIDDEN, "{name}: {status} {body}");

        // Mutated bodies.
        if has_schema {
            let mutants = mutants(&schema, &valid, &valid_text, &mut rng);
            for (what, text) in mutants {
                // A mutant that still matches the schema (another `oneOf` variant) is valid.
                if serde_json::from_str::<Value>(&text).is_ok_and(|v| matches(&schema, &v))
                    && what != "duplicate key"
                {
                    continue;
                }
                let (status, body) =
                    send(&h, &op.method, &uri, token, "application/json", text.clone()).await;
                assert!(documented(&op, status), "{name} {what} {text}: {status} not documented; {body}");
                assert!(!status.is_success(), "{name} {what} {text}: accepted ({status}): {body}");
                let v: Value =
                    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{name} {what}: {e}: {body}"));
                assert!(v["error"].is_string(), "{name} {what}: {body}");
            }
        }

        // A query parameter of the wrong type (an integer or a time that is neither).
        for p in op.op.get("parameters").and_then(Value::as_array).into_iter().flatten() {
            let typed = p["schema"]["type"] == "integer" || p["schema"]["format"] == "date-time";
            if p["in"] != "query" || !typed {
                continue;
            }
            let name = p["name"].as_str().unwrap();
            // Replace the parameter if the valid request had it, else add it.
            let base: String = uri
                .split_once('?')
                .map(|(path, q)| {
                    let kept: Vec<&str> =
                        q.split('&').filter(|kv| !kv.starts_with(&format!("{name}="))).collect();
                    if kept.is_empty() {
                        path.to_owned()
                    } else {
                        format!("{path}?{}", kept.join("&"))
                    }
                })
                .unwrap_or_else(|| uri.clone());
            let sep = if base.contains('?') { '&' } else { '?' };
            let bad = format!("{base}{sep}{name}=not-a-{}", rng.word(1, 5));
            let (status, body) =
                send(&h, &op.method, &bad, token, "application/json", valid_text.clone()).await;
            assert!(documented(&op, status), "{name} wrong {bad}: {status} not documented; {body}");
            assert_eq!(status, StatusCode::BAD_REQUEST, "{name} {bad}: {body}");
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["field"], name, "{name} {bad}: {body}");
        }

        // A body with the wrong content type.
        if op.path != "/api/v1/emergency-stop" {
            let text = if has_schema { valid_text.clone() } else { "hello".to_owned() };
            let (status, body) = send(&h, &op.method, &uri, token, "text/plain", text).await;
            assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{name}: {body}");
            assert!(documented(&op, status), "{name}: 415 not documented");
        }

        // No token, and a role that may not.
        let security = op.op.get("security").and_then(Value::as_array);
        let token_required =
            security.is_some_and(|s| !s.iter().any(|x| x.as_object().is_some_and(Map::is_empty)));
        if token_required {
            let (status, body) =
                send(&h, &op.method, &uri, None, "application/json", valid_text.clone()).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{name} without token: {body}");
            assert!(documented(&op, status), "{name}: 401 not documented");
            let (status, _) =
                send(&h, &op.method, &uri, Some("not-a-token"), "application/json", valid_text.clone()).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{name} unknown token");
            for role in ["viewer", "operator", "provider", "admin"] {
                if roles.contains(&role) {
                    continue;
                }
                let (status, body) =
                    send(&h, &op.method, &uri, Some(token_of(role)), "application/json", valid_text.clone())
                        .await;
                assert_eq!(status, StatusCode::FORBIDDEN, "{name} as {role}: {body}");
                assert!(documented(&op, status), "{name}: 403 not documented");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn every_operation_answers_only_documented_statuses(seed in any::<u64>()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(conformance(seed));
    }
}

#[test]
fn every_operation_lists_its_error_codes() {
    let doc = openapi();
    for op in operations(&doc) {
        let codes: Vec<&String> = op.op["responses"].as_object().unwrap().keys().collect();
        for c in ["414", "431", "503"] {
            assert!(codes.iter().any(|k| *k == c), "{} {}: {c} missing", op.method, op.path);
        }
        if op.op["requestBody"]["content"]["application/json"].is_object() {
            for c in ["400", "413", "415"] {
                assert!(codes.iter().any(|k| *k == c), "{} {}: {c} missing", op.method, op.path);
            }
        }
    }
    assert!(doc["paths"]["/api/v1/live"]["get"]["responses"]["101"].is_object());
    for p in ["/metrics", "/api/v1/audit", "/api/v1/site-mode"] {
        assert!(doc["paths"][p].is_object(), "{p}");
    }
}
