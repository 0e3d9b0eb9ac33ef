//! The economics endpoints (issue #12) over a fake [`EconomicsPort`]: who may call what, the
//! 404 of a site without economics, the 400s naming the parameter or field and the value, the
//! port's own refusals (400/404/409), the CSV report, auditing of the writes, and every answer
//! against the schema the OpenAPI document gives for it.
// Test code: a failed unwrap or panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod rest_support;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use ems_api::economics::{
    CostSummary, DayRow, EconomicsPort, EconomicsSummary, ForecastErrors, ForecastSlot, ForecastView,
    MonthReport, PlanReason, PlanSlot, PlanStatus, PlanView, PortError, PortErrorKind, PriceBasis,
    PricePoint, PriceSourceKind, PriceSourceView, PriceStatus, PricesView, PushedPrice, ReportMonth,
    RuleDecision, RulesView, SavingsPeriod, SavingsView, SlotActual, NOT_CONFIGURED, REPORT_CSV_HEADER,
};
use ems_api::ports::Outcome;
use ems_api::rest::openapi;
use ems_core::{percent, watts, Watts};
use http_body_util::BodyExt;
use jiff::civil::Date;
use jiff::{SignedDuration, Timestamp};
use rest_support::*;
use serde_json::{json, Map, Value};
use std::sync::{Arc, Mutex};
use tower::ServiceExt;

/// A fake economics engine: pushed prices are kept (and refused when they overlap), rule sets
/// are checked for a valid `when.from` and kept, the decision is the first enabled rule.
#[derive(Default)]
struct FakePort {
    pushed: Mutex<Vec<PushedPrice>>,
    rules: Mutex<Map<String, Value>>,
    no_push_source: bool,
    months: Mutex<Vec<ReportMonth>>,
    periods: Mutex<Vec<SavingsPeriod>>,
}

fn at(min: i64) -> Timestamp {
    t0().checked_add(SignedDuration::from_mins(min)).unwrap()
}

fn valid_hhmm(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 5
        && b[2] == b':'
        && s[..2].parse::<u8>().is_ok_and(|h| h < 24)
        && s[3..].parse::<u8>().is_ok_and(|m| m < 60)
}

impl EconomicsPort for FakePort {
    fn plan(&self) -> PlanView {
        let slot = |i: i64, actual: bool| PlanSlot {
            start: at(15 * i),
            end: at(15 * i + 15),
            import_price: 0.30,
            export_price: 0.08,
            spot_price: if i == 0 { None } else { Some(0.12) },
            pv_w: watts!(2000.0),
            load_w: watts!(600.0),
            battery_w: watts!(-1400.0),
            grid_w: Watts::ZERO,
            soc_percent: percent!(52.0),
            self_consumption: i == 0,
            actual: actual.then_some(SlotActual {
                battery_w: watts!(-1300.0),
                grid_w: watts!(-50.0),
                soc_percent: percent!(51.5),
            }),
        };
        PlanView {
            status: PlanStatus::Ok,
            created_at: Some(t0()),
            expires_at: Some(at(24 * 60)),
            reason: Some(PlanReason::NewPrices),
            price_basis: PriceBasis::Spot,
            acted_on: true,
            currency: "EUR".into(),
            slots: vec![slot(0, true), slot(1, false)],
        }
    }

    fn forecast(&self) -> ForecastView {
        ForecastView {
            slots: vec![ForecastSlot {
                start: at(0),
                end: at(15),
                pv_w: watts!(2000.0),
                load_w: watts!(600.0),
                pv_actual_w: Some(watts!(1800.0)),
                load_actual_w: None,
            }],
            errors: ForecastErrors { pv_nmae: Some(0.12), load_nmae: None, window_hours: 24.0, samples: 40 },
            pv_ratio: Some(0.9),
        }
    }

    fn prices(&self) -> PricesView {
        let pushed = self.pushed.lock().unwrap();
        PricesView {
            source: Some(PriceSourceKind::Push),
            status: PriceStatus::LastGood,
            basis: PriceBasis::LastGood,
            currency: "EUR".into(),
            prices: pushed
                .iter()
                .map(|p| PricePoint {
                    start: p.start,
                    end: p.end,
                    price: p.price,
                    import_price: p.price + 0.2,
                    export_price: 0.08,
                })
                .collect(),
            sources: vec![PriceSourceView {
                kind: PriceSourceKind::Push,
                last_ok: Some(t0()),
                last_error: Some("no push for 2 h".into()),
                points: u64::try_from(pushed.len()).unwrap(),
                covered_until: pushed.last().map(|p| p.end),
            }],
        }
    }

    fn push_prices(&self, _actor: &str, prices: Vec<PushedPrice>) -> Result<usize, PortError> {
        if self.no_push_source {
            return Err(PortError::new(PortErrorKind::NotFound, "", "no push price source is configured"));
        }
        let mut stored = self.pushed.lock().unwrap();
        for (i, p) in prices.iter().enumerate() {
            if let Some(old) = stored.iter().find(|o| o.start < p.end && p.start < o.end) {
                return Err(PortError::new(
                    PortErrorKind::Conflict,
                    format!("prices[{i}].start"),
                    format!("{} overlaps the stored point {} .. {}", p.start, old.start, old.end),
                ));
            }
        }
        let n = prices.len();
        stored.extend(prices);
        Ok(n)
    }

    fn savings(&self, period: SavingsPeriod) -> Result<SavingsView, PortError> {
        self.periods.lock().unwrap().push(period);
        let c = |cost| CostSummary { cost, import_kwh: 10.0, export_kwh: 2.0 };
        Ok(SavingsView {
            period,
            start: Date::new(2026, 5, 1).unwrap(),
            currency: "EUR".into(),
            ems: c(1.5),
            no_battery: c(3.0),
            self_consumption: c(2.0),
            saving_vs_no_battery: 1.5,
            saving_vs_self_consumption: 0.5,
        })
    }

    fn report(&self, month: ReportMonth) -> Result<MonthReport, PortError> {
        self.months.lock().unwrap().push(month);
        if month.first_day.year() < 2000 {
            return Err(PortError::new(PortErrorKind::NotFound, "month", format!("no data for {month}")));
        }
        let day = |d: i8| DayRow {
            date: Date::new(month.first_day.year(), month.first_day.month(), d).unwrap(),
            import_kwh: 8.0,
            export_kwh: 3.0,
            pv_kwh: 20.0,
            load_kwh: 24.0,
            battery_charge_kwh: 6.0,
            battery_discharge_kwh: 5.0,
            cost: 1.25,
            cost_no_battery: 2.5,
            cost_self_consumption: 1.75,
            saving_vs_no_battery: 1.25,
            saving_vs_self_consumption: 0.5,
        };
        Ok(MonthReport { currency: "EUR".into(), days: vec![day(1), day(2), day(3)] })
    }

    fn rules(&self) -> RulesView {
        let set = self.rules.lock().unwrap().clone();
        let winner = set
            .get("rules")
            .and_then(Value::as_array)
            .and_then(|r| r.iter().find(|r| r["enabled"] != false))
            .cloned();
        let decision = match winner {
            Some(r) => RuleDecision {
                winner: r["name"].as_str().map(str::to_owned),
                action: r["action"]["mode"].as_str().map(str::to_owned),
                fired: vec![r["name"].as_str().unwrap_or("").to_owned()],
            },
            None => RuleDecision::default(),
        };
        RulesView { set, decision }
    }

    fn put_rules(&self, _actor: &str, rules: Value) -> Result<Value, PortError> {
        let Value::Object(set) = rules else {
            return Err(PortError::new(PortErrorKind::Invalid, "", "not an object"));
        };
        let Some(Value::Array(list)) = set.get("rules") else {
            return Err(PortError::new(PortErrorKind::Invalid, "rules", "missing (an array is required)"));
        };
        for (i, r) in list.iter().enumerate() {
            if let Some(from) = r.pointer("/when/from") {
                if !from.as_str().is_some_and(valid_hhmm) {
                    return Err(PortError::new(
                        PortErrorKind::Invalid,
                        format!("rules[{i}].when.from"),
                        format!("must be HH:MM, got {from}"),
                    ));
                }
            }
        }
        *self.rules.lock().unwrap() = set.clone();
        Ok(Value::Object(set))
    }

    fn summary(&self) -> EconomicsSummary {
        let d = self.rules().decision;
        EconomicsSummary {
            price_basis: PriceBasis::LastGood,
            price_status: PriceStatus::LastGood,
            drives: match (&d.winner, &d.action) {
                (Some(w), Some(a)) => format!("rule '{w}': {a}"),
                _ => "plan slot 12:00–12:15: charge 1.4 kW".into(),
            },
            fallback: Some("spot prices failing: using the last good prices".into()),
            active_rule: d.winner,
        }
    }
}

fn harness_with_port(port: Arc<FakePort>) -> Harness {
    harness_full(ems_api::auth::RateLimit { burst: 10_000.0, per_second: 1000.0 }, true, Some(port))
}

async fn put(h: &Harness, path: &str, token: Option<&str>, body: &Value) -> Reply {
    h.raw(Method::PUT, path, token, body.to_string().into_bytes()).await
}

/// Whether `v` matches `schema` (the JSON Schema subset the document uses), with the path of
/// the first mismatch.
fn check(schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    if let Some(Value::Array(variants)) = schema.get("oneOf") {
        let n = variants.iter().filter(|s| check(s, v, at).is_ok()).count();
        return if n == 1 { Ok(()) } else { Err(format!("{at}: {n} oneOf variants match {v}")) };
    }
    if let Some(Value::Array(options)) = schema.get("enum") {
        return if options.contains(v) { Ok(()) } else { Err(format!("{at}: {v} not in {options:?}")) };
    }
    if let Some(c) = schema.get("const") {
        return if c == v { Ok(()) } else { Err(format!("{at}: {v} is not {c}")) };
    }
    let type_ok = |t: &str| match t {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "integer" => v.is_u64() || v.is_i64(),
        "number" => v.is_number(),
        "string" => v.is_string(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        _ => false,
    };
    let ok = match schema.get("type") {
        Some(Value::String(t)) => type_ok(t),
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).any(type_ok),
        _ => true,
    };
    if !ok {
        return Err(format!("{at}: {v} is not of type {}", schema["type"]));
    }
    if let Some(o) = v.as_object() {
        for k in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
            if !o.contains_key(k.as_str().unwrap()) {
                return Err(format!("{at}: required {k} missing"));
            }
        }
        for (k, x) in o {
            match schema.get("properties").and_then(|p| p.get(k)) {
                Some(s) => check(s, x, &format!("{at}.{k}"))?,
                None if schema["additionalProperties"] == false => {
                    return Err(format!("{at}: {k} is not documented"))
                }
                None => {}
            }
        }
    }
    if let (Some(a), Some(items)) = (v.as_array(), schema.get("items")) {
        for (i, x) in a.iter().enumerate() {
            check(items, x, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

/// The answer matches the 200 schema the OpenAPI document gives for the operation.
fn conforms(method: &str, path: &str, body: &Value) {
    let doc = openapi();
    let schema = &doc["paths"][path][method.to_ascii_lowercase()]["responses"]["200"]["content"]
        ["application/json"]["schema"];
    assert!(schema.is_object(), "{method} {path}: no 200 schema");
    assert_eq!(schema["additionalProperties"], false, "{method} {path}: the answer's keys are closed");
    if let Err(e) = check(schema, body, "$") {
        panic!("{method} {path}: {e}\n{body:#}");
    }
}

const READS: [&str; 7] = [
    "/api/v1/economics",
    "/api/v1/plan",
    "/api/v1/forecast",
    "/api/v1/prices",
    "/api/v1/savings",
    "/api/v1/report?month=2026-05",
    "/api/v1/rules",
];

#[tokio::test]
async fn without_a_port_every_economics_endpoint_is_404_with_the_configuration_hint() {
    let h = harness();
    for path in READS {
        let r = h.get(path, Some(VIEWER)).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {}", r.json);
        assert_eq!(r.json["error"], NOT_CONFIGURED, "{path}");
        assert_eq!(r.json["error"], "economics is not configured on this site (no [economics] section)");
    }
    let body =
        json!({"prices": [{"start": "2026-05-01T12:00:00Z", "end": "2026-05-01T12:15:00Z", "price": 0.1}]});
    let r = h.post("/api/v1/prices", Some(PROVIDER), &body).await;
    assert_eq!((r.status, r.json["error"].as_str()), (StatusCode::NOT_FOUND, Some(NOT_CONFIGURED)));
    let r = put(&h, "/api/v1/rules", Some(OPERATOR), &json!({"rules": []})).await;
    assert_eq!((r.status, r.json["error"].as_str()), (StatusCode::NOT_FOUND, Some(NOT_CONFIGURED)));
    // Authorization still comes first: a viewer may not write even where nothing is configured.
    let r = put(&h, "/api/v1/rules", Some(VIEWER), &json!({"rules": []})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // The rest of the API is unaffected.
    assert_eq!(h.get("/api/v1/safety", Some(VIEWER)).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_viewer_reads_everything_and_each_answer_matches_the_document() {
    let port = Arc::new(FakePort::default());
    let h = harness_with_port(port.clone());
    put(
        &h,
        "/api/v1/rules",
        Some(OPERATOR),
        &json!({"country": "DE", "rules": [
            {"name": "evening peak", "priority": 10, "enabled": true,
             "when": {"days": ["working"], "from": "17:00", "to": "21:00", "price_above": 0.3},
             "action": {"mode": "NO_DISCHARGE"}, "until": {"time": "21:00"}}
        ]}),
    )
    .await;
    let body =
        json!({"prices": [{"start": "2026-05-01T12:00:00Z", "end": "2026-05-01T12:15:00Z", "price": 0.1}]});
    assert_eq!(h.post("/api/v1/prices", Some(PROVIDER), &body).await.status, StatusCode::OK);
    for path in READS {
        let r = h.get(path, Some(VIEWER)).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.json);
        conforms("GET", path.split('?').next().unwrap(), &r.json);
        // Providers push prices; they do not read the site.
        assert_eq!(h.get(path, Some(PROVIDER)).await.status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(h.get(path, None).await.status, StatusCode::UNAUTHORIZED, "{path}");
    }
    let plan = h.get("/api/v1/plan", Some(VIEWER)).await.json;
    assert_eq!(plan["status"], "ok");
    assert_eq!(plan["reason"], "new_prices");
    assert_eq!(plan["price_basis"], "spot");
    assert_eq!(plan["currency"], "EUR");
    assert_eq!(plan["slots"][0]["start"], "2026-05-01T12:00:00Z");
    assert_eq!(plan["slots"][0]["battery_w"], -1400.0);
    assert_eq!(plan["slots"][0]["spot_price"], Value::Null);
    assert_eq!(plan["slots"][0]["actual"]["grid_w"], -50.0);
    assert_eq!(plan["slots"][1]["actual"], Value::Null);
    let f = h.get("/api/v1/forecast", Some(VIEWER)).await.json;
    assert_eq!(f["errors"]["pv_nmae"], 0.12);
    assert_eq!(f["errors"]["load_nmae"], Value::Null);
    assert_eq!(f["errors"]["samples"], 40);
    assert_eq!(f["slots"][0]["pv_actual_w"], 1800.0);
    let p = h.get("/api/v1/prices", Some(VIEWER)).await.json;
    assert_eq!((p["source"].as_str(), p["status"].as_str()), (Some("push"), Some("last_good")));
    assert_eq!(p["prices"][0]["price"], 0.1);
    assert_eq!(p["sources"][0]["points"], 1);
    assert_eq!(p["sources"][0]["covered_until"], "2026-05-01T12:15:00Z");
    let rules = h.get("/api/v1/rules", Some(VIEWER)).await.json;
    assert_eq!(rules["country"], "DE");
    assert_eq!(rules["rules"][0]["name"], "evening peak");
    assert_eq!(
        rules["decision"],
        json!({"winner": "evening peak", "action": "NO_DISCHARGE", "fired": ["evening peak"]})
    );
    let e = h.get("/api/v1/economics", Some(VIEWER)).await.json;
    assert_eq!(e["drives"], "rule 'evening peak': NO_DISCHARGE");
    assert_eq!(e["active_rule"], "evening peak");
    assert_eq!(e["price_status"], "last_good");
    assert!(e["fallback"].as_str().unwrap().contains("last good"));
}

#[tokio::test]
async fn prices_are_pushed_by_a_provider_or_admin_only_and_refusals_name_the_field() {
    let port = Arc::new(FakePort::default());
    let h = harness_with_port(port.clone());
    let point = |a: i64, b: i64, price: f64| json!({"start": at(a).to_string(), "end": at(b).to_string(), "price": price});
    let body = json!({"prices": [point(0, 15, 0.10), point(15, 30, -0.02)]});
    for who in [VIEWER, OPERATOR] {
        let r = h.post("/api/v1/prices", Some(who), &body).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.json);
    }
    assert!(port.pushed.lock().unwrap().is_empty(), "nothing stored by a refused push");
    let r = h.post("/api/v1/prices", Some(PROVIDER), &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json, json!({"accepted": 2}));
    conforms("POST", "/api/v1/prices", &r.json);
    let r = h.post("/api/v1/prices", Some(ADMIN), &json!({"prices": [point(30, 45, 0.3)]})).await;
    assert_eq!(r.json, json!({"accepted": 1}));

    // A GET's prices (with import/export prices) can be posted back; here they overlap: 409
    // from the port, naming the point.
    let got = h.get("/api/v1/prices", Some(VIEWER)).await.json;
    let back = json!({"prices": got["prices"]});
    let r = h.post("/api/v1/prices", Some(PROVIDER), &back).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.json);
    assert_eq!(r.json["field"], "prices[0].start");
    assert!(r.json["error"].as_str().unwrap().contains("overlaps"), "{}", r.json);
    // The same shape, moved a day on, is accepted as a whole.
    let moved: Vec<Value> = got["prices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let shift = |k: &str| {
                let t: Timestamp = p[k].as_str().unwrap().parse().unwrap();
                t.checked_add(SignedDuration::from_hours(24)).unwrap().to_string()
            };
            json!({"start": shift("start"), "end": shift("end"), "price": p["price"],
                   "import_price": p["import_price"], "export_price": p["export_price"]})
        })
        .collect();
    let r = h.post("/api/v1/prices", Some(PROVIDER), &json!({ "prices": moved })).await;
    assert_eq!(r.json, json!({"accepted": 3}), "{}", r.json);

    // Malformed points: 400 naming the field and the value.
    for (body, field, value) in [
        (
            json!({"prices": [point(100, 115, 0.1), point(115, 115, 0.1)]}),
            "prices[1].end",
            "2026-05-01T13:55:00Z",
        ),
        (
            json!({"prices": [{"start": "soon", "end": at(200).to_string(), "price": 0.1}]}),
            "prices[0].start",
            "soon",
        ),
        (
            json!({"prices": [{"start": at(200).to_string(), "end": at(215).to_string(), "price": "0.1"}]}),
            "prices[0].price",
            "0.1",
        ),
        (
            json!({"prices": [{"start": at(200).to_string(), "end": at(215).to_string(), "price": 0.1, "vat": 0.19}]}),
            "prices[0].vat",
            "unknown field",
        ),
        (
            json!({"prices": [{"start": at(200).to_string(), "end": at(215).to_string(), "price": 0.1, "import_price": "x"}]}),
            "prices[0].import_price",
            "\"x\"",
        ),
        (json!({"prices": []}), "prices", "got 0"),
        (json!({"points": []}), "points", "unknown field"),
    ] {
        let r = h.post("/api/v1/prices", Some(PROVIDER), &body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.json);
        assert_eq!(r.json["field"], field, "{body}: {}", r.json);
        assert!(r.json["error"].as_str().unwrap().contains(value), "{body}: {}", r.json);
    }
    assert_eq!(port.pushed.lock().unwrap().len(), 6, "refused pushes stored nothing");

    // Audited: the accepted pushes, the refusals (with their reason) and the 403s.
    let audit = h.audit();
    let pushes: Vec<_> = audit.iter().filter(|e| e.action == "POST /api/v1/prices").collect();
    assert_eq!(pushes.iter().filter(|e| e.outcome == Outcome::Ok).count(), 3);
    assert!(pushes.iter().any(|e| e.outcome == Outcome::Refused && e.detail.contains("prices[0].start")));
    assert!(pushes.iter().any(|e| e.outcome == Outcome::Refused && e.actor == "viewer (viewer)"));
    assert!(pushes.iter().any(|e| e.outcome == Outcome::Ok
        && e.actor == "acme-cloud (provider)"
        && e.detail.contains("2 of 2")));
}

#[tokio::test]
async fn a_site_without_a_push_source_answers_404_from_the_port() {
    let h = harness_with_port(Arc::new(FakePort { no_push_source: true, ..FakePort::default() }));
    let body =
        json!({"prices": [{"start": "2026-05-01T12:00:00Z", "end": "2026-05-01T12:15:00Z", "price": 0.1}]});
    let r = h.post("/api/v1/prices", Some(PROVIDER), &body).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json["error"], "no push price source is configured");
    assert!(h
        .audit()
        .iter()
        .any(|e| e.outcome == Outcome::Refused && e.detail.contains("no push price source")));
}

#[tokio::test]
async fn savings_take_a_period_and_refuse_an_unknown_one() {
    let port = Arc::new(FakePort::default());
    let h = harness_with_port(port.clone());
    let r = h.get("/api/v1/savings", Some(VIEWER)).await;
    assert_eq!(r.json["period"], "day", "default period");
    assert_eq!(r.json["start"], "2026-05-01");
    assert_eq!(r.json["saving_vs_no_battery"], 1.5);
    assert_eq!(r.json["no_battery"]["cost"], 3.0);
    for p in ["month", "year"] {
        let r = h.get(&format!("/api/v1/savings?period={p}"), Some(VIEWER)).await;
        assert_eq!(r.json["period"], p);
    }
    assert_eq!(
        *port.periods.lock().unwrap(),
        [SavingsPeriod::Day, SavingsPeriod::Month, SavingsPeriod::Year]
    );
    let r = h.get("/api/v1/savings?period=week", Some(VIEWER)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json["field"], "period");
    assert!(r.json["error"].as_str().unwrap().contains("\"week\""), "{}", r.json);
    let r = h.get("/api/v1/savings?periode=day", Some(VIEWER)).await;
    assert_eq!((r.status, r.json["field"].as_str()), (StatusCode::BAD_REQUEST, Some("periode")));
    assert_eq!(port.periods.lock().unwrap().len(), 3, "a refused query does not reach the port");
}

async fn get_text(h: &Harness, path: &str, token: &str) -> (StatusCode, String, String) {
    let req = Request::builder()
        .method(Method::GET)
        .uri(path)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let resp = h.router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let ctype =
        resp.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, ctype, String::from_utf8(bytes.to_vec()).unwrap())
}

#[tokio::test]
async fn the_monthly_report_comes_as_json_or_csv_and_refuses_bad_parameters() {
    let port = Arc::new(FakePort::default());
    let h = harness_with_port(port.clone());
    let r = h.get("/api/v1/report?month=2026-04", Some(VIEWER)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["month"], "2026-04");
    assert_eq!(r.json["currency"], "EUR");
    assert_eq!(r.json["days"].as_array().unwrap().len(), 3);
    assert_eq!(r.json["days"][2]["date"], "2026-04-03");
    assert_eq!(r.json["days"][0]["battery_discharge_kwh"], 5.0);
    let explicit = h.get("/api/v1/report?month=2026-04&format=json", Some(VIEWER)).await;
    assert_eq!(explicit.json, r.json);

    let (status, ctype, csv) = get_text(&h, "/api/v1/report?month=2026-04&format=csv", VIEWER).await;
    assert_eq!(status, StatusCode::OK);
    assert!(ctype.starts_with("text/csv"), "{ctype}");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "date,import_kwh,export_kwh,pv_kwh,load_kwh,battery_charge_kwh,battery_discharge_kwh,cost,cost_no_battery,cost_self_consumption,saving_vs_no_battery,saving_vs_self_consumption"
    );
    assert_eq!(lines[0], REPORT_CSV_HEADER);
    assert_eq!(lines.len(), 4);
    let cells: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(cells.len(), 12);
    assert_eq!(cells[0], "2026-04-01");
    assert!((cells[7].parse::<f64>().unwrap() - 1.25).abs() < 1e-9, "cost column: {}", lines[1]);
    // The CSV's rows are the JSON's.
    for (i, k) in REPORT_CSV_HEADER.split(',').enumerate().skip(1) {
        let json_value = r.json["days"][0][k].as_f64().unwrap();
        assert!((cells[i].parse::<f64>().unwrap() - json_value).abs() < 1e-4, "{k}");
    }

    for (q, field, value) in [
        ("month=2026-13", "month", "\"2026-13\""),
        ("month=May", "month", "\"May\""),
        ("", "month", "missing"),
        ("month=2026-05&format=xlsx", "format", "\"xlsx\""),
        ("month=2026-05&fmt=csv", "fmt", "unknown parameter"),
    ] {
        let r = h.get(&format!("/api/v1/report?{q}"), Some(VIEWER)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}: {}", r.json);
        assert_eq!(r.json["field"], field, "{q}");
        assert!(r.json["error"].as_str().unwrap().contains(value), "{q}: {}", r.json);
    }
    // The port's refusal is passed on with its field.
    let r = h.get("/api/v1/report?month=1999-01", Some(VIEWER)).await;
    assert_eq!((r.status, r.json["field"].as_str()), (StatusCode::NOT_FOUND, Some("month")));
    let months: Vec<String> = port.months.lock().unwrap().iter().map(ToString::to_string).collect();
    assert_eq!(months, ["2026-04", "2026-04", "2026-04", "1999-01"]);
}

#[tokio::test]
async fn rules_are_replaced_by_an_operator_and_a_bad_set_keeps_the_stored_one() {
    let port = Arc::new(FakePort::default());
    let h = harness_with_port(port.clone());
    let good = json!({"country": "DE", "rules": [
        {"name": "cheap night", "priority": 5, "enabled": true, "when": {"from": "01:00", "to": "05:00", "price_below": 0.1},
         "action": {"mode": "FORCE_CHARGE", "power": 3000}, "until": {"soc": 90}}
    ]});
    let r = put(&h, "/api/v1/rules", Some(VIEWER), &good).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = put(&h, "/api/v1/rules", Some(PROVIDER), &good).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(port.rules.lock().unwrap().is_empty());
    let r = put(&h, "/api/v1/rules", Some(OPERATOR), &good).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json, good, "answers the stored set");

    // GET's body (with its decision) can be sent back.
    let mut back = h.get("/api/v1/rules", Some(VIEWER)).await.json;
    assert_eq!(back["decision"]["winner"], "cheap night");
    back["rules"][0]["priority"] = json!(7);
    let r = put(&h, "/api/v1/rules", Some(ADMIN), &back).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert!(r.json.get("decision").is_none());
    assert_eq!(port.rules.lock().unwrap()["rules"][0]["priority"], 7);

    // A bad set: the port's 400 names the path and the value; the stored set is unchanged.
    let bad =
        json!({"rules": [{"name": "x", "when": {"from": "25:00"}, "action": {"mode": "NO_DISCHARGE"}}]});
    let r = put(&h, "/api/v1/rules", Some(OPERATOR), &bad).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.json);
    assert_eq!(r.json["field"], "rules[0].when.from");
    assert!(r.json["error"].as_str().unwrap().contains("25:00"), "{}", r.json);
    let now = h.get("/api/v1/rules", Some(VIEWER)).await.json;
    assert_eq!(now["rules"][0]["name"], "cheap night");
    assert_eq!(now["rules"][0]["priority"], 7);
    // Not JSON, or a key twice: refused before the port.
    let r =
        h.raw(Method::PUT, "/api/v1/rules", Some(OPERATOR), b"{\"rules\": [], \"rules\": []}".to_vec()).await;
    assert_eq!((r.status, r.json["field"].as_str()), (StatusCode::BAD_REQUEST, Some("rules")));

    let audit = h.audit();
    let puts: Vec<_> = audit.iter().filter(|e| e.action == "PUT /api/v1/rules").collect();
    assert_eq!(puts.iter().filter(|e| e.outcome == Outcome::Ok).count(), 2);
    assert!(puts
        .iter()
        .any(|e| e.outcome == Outcome::Ok && e.actor == "ops (operator)" && e.detail.contains("1 rules")));
    assert!(puts.iter().any(|e| e.outcome == Outcome::Refused && e.detail.contains("rules[0].when.from")));
    assert!(puts.iter().any(|e| e.outcome == Outcome::Refused && e.actor == "viewer (viewer)"));
}

#[tokio::test]
async fn whoami_tells_the_page_the_role() {
    let h = harness();
    for (token, name, role) in
        [(VIEWER, "viewer", "viewer"), (OPERATOR, "ops", "operator"), (ADMIN, "root", "admin")]
    {
        let r = h.get("/api/v1/whoami", Some(token)).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.json, json!({"name": name, "role": role}));
    }
    assert_eq!(h.get("/api/v1/whoami", None).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_safety_view_explains_interlocks_in_operator_language() {
    let h = harness();
    h.view.send_modify(|v| {
        v.safety.state = "RUNNING".into();
        v.safety.charge_limited_by = vec!["interlock #3".into(), "BMS limit".into()];
        v.safety.discharge_limited_by = vec!["interlock #2".into(), "interlock #99".into()];
    });
    let r = h.get("/api/v1/safety", Some(VIEWER)).await;
    let ex = &r.json["limitExplanations"];
    assert_eq!(ex["interlock #3"], "charging requires contactor closed and pre-charge done");
    assert_eq!(ex["interlock #2"], "discharge requires contactor closed and pre-charge done");
    assert!(ex.get("BMS limit").is_none() && ex.get("interlock #99").is_none(), "{ex}");
}

#[test]
fn the_document_lists_the_economics_operations_with_their_statuses() {
    let doc = openapi();
    let codes = |m: &str, p: &str| -> Vec<String> {
        doc["paths"][p][m]["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{m} {p}"))
            .keys()
            .cloned()
            .collect()
    };
    for p in [
        "/api/v1/plan",
        "/api/v1/forecast",
        "/api/v1/prices",
        "/api/v1/rules",
        "/api/v1/economics",
        "/api/v1/savings",
        "/api/v1/report",
    ] {
        assert!(codes("get", p).contains(&"404".to_owned()), "{p}");
        assert_eq!(doc["paths"][p]["get"]["x-roles"], json!(["viewer", "operator", "admin"]), "{p}");
    }
    assert_eq!(doc["paths"]["/api/v1/prices"]["post"]["x-roles"], json!(["provider", "admin"]));
    assert_eq!(doc["paths"]["/api/v1/rules"]["put"]["x-roles"], json!(["operator", "admin"]));
    for c in ["200", "400", "404", "409", "413"] {
        assert!(codes("post", "/api/v1/prices").contains(&c.to_owned()), "{c}");
    }
    assert!(doc["paths"]["/api/v1/report"]["get"]["responses"]["200"]["content"]["text/csv"].is_object());
    let body =
        &doc["paths"]["/api/v1/prices"]["post"]["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(body["additionalProperties"], false);
    assert_eq!(body["properties"]["prices"]["items"]["additionalProperties"], false);
    assert!(doc["paths"]["/api/v1/whoami"]["get"].is_object());
}

#[test]
fn event_lines_carry_the_clock_time_the_page_parses() {
    let at: Timestamp = "2026-05-01T12:00:03.456Z".parse().unwrap();
    let line = ems_api::model::event_line(at, "state RUNNING -> STOPPED");
    assert_eq!(line, "[2026-05-01T12:00:03Z] state RUNNING -> STOPPED");
    // The page's pattern (app.js `eventLine`) expects exactly this prefix.
    assert!(ems_api::dashboard::APP_JS.contains(r"^\[(\d{4}-\d{2}-\d{2}T[^\]]+)\]"));
}

#[test]
fn the_page_has_the_dashboard_elements_and_uses_the_economics_endpoints() {
    use ems_api::dashboard::{APP_JS, INDEX_HTML};
    for id in [
        "flow",
        "pv-arrow",
        "grid-arrow",
        "battery-arrow",
        "load-arrow",
        "grid-dir",
        "battery-dir",
        "drives",
        "price-basis",
        "active-rule",
        "fallback",
        "econ-banner",
        "econ-missing",
        "plan-chart",
        "plan-info",
        "forecast-chart",
        "forecast-nmae",
        "cost-ems-day",
        "saving-nobat-month",
        "rule-editor",
        "rules-list",
        "rule-name",
        "rule-from",
        "rule-to",
        "rule-mode",
        "rule-add",
        "rules-save",
        "rules-error",
        "whoami",
        "role-note",
    ] {
        assert_eq!(INDEX_HTML.matches(&format!("id=\"{id}\"")).count(), 1, "exactly one #{id}");
        assert!(
            APP_JS.contains(&format!("'{id}'"))
                || APP_JS.contains(&format!("'{id}-'"))
                || id.starts_with("cost-")
                || id.starts_with("saving-")
                || id == "rule-editor"
                || id == "flow",
            "app.js uses #{id}"
        );
    }
    for path in [
        "/api/v1/plan",
        "/api/v1/forecast",
        "/api/v1/savings",
        "/api/v1/rules",
        "/api/v1/economics",
        "/api/v1/whoami",
    ] {
        assert!(APP_JS.contains(&format!("'{path}")), "app.js calls {path}");
    }
    // A viewer's buttons are disabled from the role, economics panels hidden on a 404.
    assert!(APP_JS.contains("r.status === 404"));
    assert!(APP_JS.contains("role === 'operator' || role === 'admin'"));
    // Refreshed at least every 10 s, not once a minute.
    assert!(APP_JS.contains("const REFRESH_MS = 10000;"));
    assert!(!APP_JS.contains("}, 60000)"), "no one-minute refresh");
}
