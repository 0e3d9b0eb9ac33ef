//! GraphQL: the Sourceful `ems.battery.schedule` mutation over `POST /api/v1/graphql`.
// Test code: a failed unwrap or panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod rest_support;

use axum::http::{Method, StatusCode};
use ems_api::ports::Outcome;
use rest_support::*;
use serde_json::{json, Value};

fn mutation(body: &Value) -> Value {
    let q = format!(
        r#"mutation {{ ems {{ battery {{ schedule(sn: {}, executionTime: {}, operation: {}, power: {}, provider: {}, nonce: {}, auth: {{ sign: {{ signature: {} }} }}) {{ scheduleId success }} }} }} }}"#,
        body["sn"],
        body["executionTime"],
        body["operation"],
        body["power"],
        body["provider"],
        body["nonce"],
        body["auth"]["sign"]["signature"]
    );
    json!({ "query": q })
}

#[tokio::test]
async fn schedule_mutation_accepts_and_refuses_like_rest() {
    let h = harness();
    let body = signed(SN, "2026-05-01T12:05:00Z", "CHARGE", 3000, "acme", "gql-nonce-1", &provider_key());
    let r = h.post("/api/v1/graphql", Some(PROVIDER), &mutation(&body)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let res = &r.json["data"]["ems"]["battery"]["schedule"];
    assert_eq!(res["success"], true, "{}", r.json);
    let id = res["scheduleId"].as_str().unwrap();
    assert!(h.schedules.get(id).is_some());
    // Replay through GraphQL, after REST or GraphQL: refused with field and code.
    let r = h.post("/api/v1/graphql", Some(ADMIN), &mutation(&body)).await;
    assert_eq!(r.json["errors"][0]["extensions"]["code"], "REPLAY", "{}", r.json);
    assert_eq!(r.json["errors"][0]["extensions"]["field"], "nonce");
    let mut tampered = body.clone();
    tampered["power"] = json!(10);
    tampered["nonce"] = json!("gql-nonce-2");
    let r = h.post("/api/v1/graphql", Some(PROVIDER), &mutation(&tampered)).await;
    assert_eq!(r.json["errors"][0]["extensions"]["code"], "UNAUTHORIZED");
    assert_eq!(r.json["errors"][0]["extensions"]["field"], "auth.sign.signature");
    let mut negative = body.clone();
    negative["power"] = json!(-5);
    let r = h.post("/api/v1/graphql", Some(PROVIDER), &mutation(&negative)).await;
    assert_eq!(r.json["errors"][0]["extensions"]["field"], "power", "{}", r.json);
    let audit = h.audit();
    assert_eq!(audit.iter().filter(|e| e.action == "schedule.submit" && e.outcome == Outcome::Ok).count(), 1);
    assert!(
        audit.iter().filter(|e| e.action == "schedule.submit" && e.outcome == Outcome::Refused).count() >= 3
    );
}

#[tokio::test]
async fn graphql_roles_and_malformed_requests() {
    let h = harness();
    let body =
        mutation(&signed(SN, "2026-05-01T12:05:00Z", "CHARGE", 1, "acme", "gql-nonce-3", &provider_key()));
    for t in [VIEWER, OPERATOR] {
        assert_eq!(h.post("/api/v1/graphql", Some(t), &body).await.status, StatusCode::FORBIDDEN);
    }
    assert_eq!(h.post("/api/v1/graphql", None, &body).await.status, StatusCode::UNAUTHORIZED);
    let r = h.raw(Method::POST, "/api/v1/graphql", Some(PROVIDER), b"{".to_vec()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json["error"].is_string());
    // A syntax error in the query is a GraphQL error, not a crash.
    let r = h.post("/api/v1/graphql", Some(PROVIDER), &json!({"query": "mutation { ems { "})).await;
    assert!(r.json["errors"].is_array());
    // Missing nonce: this API's refusal naming the field.
    let r = h
        .post(
            "/api/v1/graphql",
            Some(PROVIDER),
            &json!({"query": r#"mutation { ems { battery { schedule(sn: "BAT-0001", executionTime: "2026-05-01T12:05:00Z", operation: "CHARGE", power: 1, provider: "acme", auth: { sign: { signature: "00" } }) { scheduleId success } } } }"#}),
        )
        .await;
    assert_eq!(r.json["errors"][0]["extensions"]["field"], "nonce", "{}", r.json);
}
