//! Cases and first-contact resolution through the API: clocks in business hours of
//! the team's calendar, filters, and FCR per team and agent, against hand-computed cases.

mod common;

use axum::http::StatusCode;
use common::TestApi;
use serde_json::{Value, json};
use troth_core::calendar::Calendar;
use troth_core::case::ServiceLevels;

fn event(id: &str, kind: &str, time: &str, case: &str, email: &str, data: Value) -> Value {
    json!({"id": id, "type": kind, "time": time, "subject": format!("case:{case}"),
           "customer": {"email": email}, "data": data})
}

fn opened(case: &str, time: &str, email: &str, category: &str, team: &str, order: Option<&str>) -> Value {
    let mut data = json!({"case": case, "category": category, "team": team});
    if let Some(order) = order {
        data["order"] = json!(order);
    }
    event(&format!("{case}-opened"), "case.opened", time, case, email, data)
}

fn resolved(case: &str, time: &str, email: &str, agent: &str) -> Value {
    event(
        &format!("{case}-resolved-{time}"),
        "case.resolved",
        time,
        case,
        email,
        json!({"resolution": "refunded", "agent": agent}),
    )
}

fn paris() -> ServiceLevels {
    ServiceLevels {
        calendar: Calendar::new("Europe/Paris", "Mon-Fri 09:00-18:00", &[]).unwrap(),
        ..ServiceLevels::default()
    }
}

#[tokio::test]
async fn a_case_opened_friday_evening_is_due_monday_and_breaches_then() {
    let mut api = TestApi::new(None);
    api.service(paris());
    // Friday 27 November 2026, 17:50 in Paris; the default first response is 4 business hours.
    api.ingest(json!([opened(
        "k-1",
        "2026-11-27T16:50:00Z",
        "ann@example.org",
        "delivery",
        "support",
        None
    )]))
    .await;

    let (status, saturday) = api
        .call("GET", "/api/v1/cases?at=2026-11-28T12:00:00Z", Value::Null)
        .await;
    assert_eq!(status, StatusCode::OK, "{saturday}");
    let case = &saturday["cases"][0];
    assert_eq!(case["id"], "k-1");
    assert_eq!(case["state"], "open");
    assert_eq!(case["customer"], "cus_1");
    assert_eq!(
        case["first_response"]["due"], "2026-11-30T11:50:00.000000Z",
        "Monday 12:50 in Paris"
    );
    assert_eq!(case["first_response"]["state"], "running");
    assert_eq!(case["first_response"]["business_minutes_left"], 230);
    assert_eq!(case["breached"], false);

    let (_, monday) = api
        .call(
            "GET",
            "/api/v1/cases?breached=true&at=2026-11-30T12:00:00Z",
            Value::Null,
        )
        .await;
    assert_eq!(monday["cases"][0]["first_response"]["state"], "breached");
    assert_eq!(monday["cases"][0]["first_response"]["business_minutes_left"], -10);
    let (_, none) = api
        .call(
            "GET",
            "/api/v1/cases?breached=true&at=2026-11-28T12:00:00Z",
            Value::Null,
        )
        .await;
    assert_eq!(none["cases"], json!([]));

    let (status, one) = api
        .call("GET", "/api/v1/cases/k-1?at=2026-11-30T12:00:00Z", Value::Null)
        .await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(one["id"], "k-1");
    assert_eq!(one["events"].as_array().unwrap().len(), 1);
    let (status, missing) = api.call("GET", "/api/v1/cases/k-404", Value::Null).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
    let (status, bad) = api.call("GET", "/api/v1/cases?state=closed", Value::Null).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(bad["detail"].as_str().unwrap().contains("state"), "{bad}");
}

#[tokio::test]
async fn first_contact_resolution_per_team_and_agent_matches_the_hand_count() {
    let api = TestApi::new(None);
    let (ann, bob, cy) = ("ann@example.org", "bob@example.org", "cy@example.org");
    api.ingest(json!([
        // k-1: resolved at once: a first contact.
        opened("k-1", "2026-11-02T09:00:00Z", ann, "delivery", "support", Some("o-1")),
        resolved("k-1", "2026-11-02T09:20:00Z", ann, "agent-a"),
        // k-2: resolved, but Bob called again about the same order three days later (k-3).
        opened("k-2", "2026-11-02T10:00:00Z", bob, "delivery", "support", Some("o-2")),
        resolved("k-2", "2026-11-02T10:20:00Z", bob, "agent-a"),
        opened("k-3", "2026-11-05T10:00:00Z", bob, "refund", "support", Some("o-2")),
        resolved("k-3", "2026-11-05T10:20:00Z", bob, "agent-b"),
        // k-4: transferred to billing, then resolved there.
        opened("k-4", "2026-11-03T11:00:00Z", cy, "invoice", "support", None),
        event(
            "k-4-t",
            "case.transferred",
            "2026-11-03T11:05:00Z",
            "k-4",
            cy,
            json!({"from_team": "support", "to_team": "billing", "to_agent": "agent-c"})
        ),
        resolved("k-4", "2026-11-03T11:40:00Z", cy, "agent-c"),
    ]))
    .await;

    let (status, by_team) = api
        .call(
            "GET",
            "/api/v1/service/fcr?by=team&from=2026-11-01T00:00:00Z&to=2026-12-01T00:00:00Z",
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{by_team}");
    let rows = by_team["rows"].as_array().unwrap();
    // billing: k-4, transferred: 0 of 1. support: k-1 yes, k-2 no (repeat), k-3 yes: 2 of 3.
    assert_eq!(rows[0]["key"], "billing");
    assert_eq!(
        (rows[0]["resolved"].as_u64(), rows[0]["first_contact"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(rows[0]["transfers"], 1);
    assert_eq!(rows[1]["key"], "support");
    assert_eq!(
        (rows[1]["resolved"].as_u64(), rows[1]["first_contact"].as_u64()),
        (Some(3), Some(2))
    );
    assert_eq!(rows[1]["repeat_contacts"], 1);
    assert!(by_team["definition"].as_str().unwrap().contains("7 days"));

    let (_, by_agent) = api.call("GET", "/api/v1/service/fcr?by=agent", Value::Null).await;
    let agent = |key: &str| {
        by_agent["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == key)
            .cloned()
            .unwrap()
    };
    assert_eq!(agent("agent-a")["rate"], 0.5);
    assert_eq!(agent("agent-b")["rate"], 1.0);
    assert_eq!(agent("agent-c")["rate"], 0.0);

    // The case page's verdict agrees, and a case in another period does not count.
    let (_, k2) = api.call("GET", "/api/v1/cases/k-2", Value::Null).await;
    assert_eq!(k2["first_contact_resolution"], false);
    assert_eq!(k2["effort"]["repeat_contacts"], 1);
    let (_, later) = api
        .call("GET", "/api/v1/service/fcr?from=2026-11-04T00:00:00Z", Value::Null)
        .await;
    assert_eq!(later["rows"][0]["cases"], 1, "only k-3: {later}");
    let (status, _) = api.call("GET", "/api/v1/service/fcr?by=week", Value::Null).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn first_contact_resolution_per_touchpoint_matches_the_hand_count() {
    let api = TestApi::new(Some(common::retail_map()));
    let (ann, bob, cy, dee) = (
        "ann@example.org",
        "bob@example.org",
        "cy@example.org",
        "dee@example.org",
    );
    let about = |id: &str, kind: &str, time: &str, subject: &str, data: Value| {
        json!({"id": id, "type": kind, "time": time, "subject": subject,
               "customer": {"email": ann}, "data": data})
    };
    let transferred = |case: &str, time: &str, email: &str| {
        event(
            &format!("{case}-transferred"),
            "case.transferred",
            time,
            case,
            email,
            json!({"from_team": "support", "to_team": "billing"}),
        )
    };
    let mut named = opened("k-3", "2026-11-03T09:00:00Z", cy, "late_delivery", "support", None);
    named["touchpoint"] = json!("tracking_page");
    api.ingest(json!([
        // Ann's order was delivered; then she asks a question about it (a category no
        // touchpoint lists): where the order stood, the delivery. Resolved at once.
        about(
            "o1-placed",
            "order.placed",
            "2026-11-02T09:00:00Z",
            "order:o-1",
            json!({"order": "o-1", "items": [{"sku": "tyre", "qty": 1, "price": 9000}],
                     "total": 9000, "currency": "EUR", "delivery": "home"})
        ),
        about(
            "s1-created",
            "shipment.created",
            "2026-11-02T12:00:00Z",
            "shipment:s-1",
            json!({"shipment": "s-1", "order": "o-1", "carrier": "fast", "service": "std"})
        ),
        about(
            "s1-delivered",
            "shipment.delivered",
            "2026-11-03T10:00:00Z",
            "shipment:s-1",
            json!({"proof": {"kind": "handed"}})
        ),
        opened("k-1", "2026-11-03T11:00:00Z", ann, "question", "support", Some("o-1")),
        resolved("k-1", "2026-11-03T11:10:00Z", ann, "agent-a"),
        // Bob's payment case (the map lists `payment` at pay), transferred: not a first contact.
        opened("k-2", "2026-11-03T09:00:00Z", bob, "payment", "support", None),
        transferred("k-2", "2026-11-03T09:05:00Z", bob),
        resolved("k-2", "2026-11-03T09:30:00Z", bob, "agent-b"),
        // Cy's case names its touchpoint, which wins over its category's (delivery).
        named,
        resolved("k-3", "2026-11-03T09:10:00Z", cy, "agent-a"),
        // Dee asks twice in three days about nothing the map places: the contact itself.
        opened("k-4", "2026-11-03T09:00:00Z", dee, "question", "support", None),
        resolved("k-4", "2026-11-03T09:10:00Z", dee, "agent-b"),
        opened("k-5", "2026-11-05T09:00:00Z", dee, "question", "support", None),
        resolved("k-5", "2026-11-05T09:10:00Z", dee, "agent-b"),
    ]))
    .await;

    let (status, fcr) = api
        .call(
            "GET",
            "/api/v1/service/fcr?by=touchpoint&from=2026-11-01T00:00:00Z&to=2026-12-01T00:00:00Z",
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{fcr}");
    assert_eq!(fcr["by"], "touchpoint");
    assert!(
        fcr["touchpoint_definition"]
            .as_str()
            .unwrap()
            .contains("case_categories"),
        "{fcr}"
    );
    let rows: Vec<(&str, u64, u64, u64, f64)> = fcr["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["key"].as_str().unwrap(),
                r["cases"].as_u64().unwrap(),
                r["resolved"].as_u64().unwrap(),
                r["first_contact"].as_u64().unwrap(),
                r["rate"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            // k-2, transferred.
            ("pay", 1, 1, 0, 0.0),
            // k-4 (Dee asked again within 7 days: k-5) and k-5.
            ("complaint", 2, 2, 1, 0.5),
            // k-1.
            ("delivery", 1, 1, 1, 1.0),
            // k-3.
            ("tracking_page", 1, 1, 1, 1.0),
        ]
    );
    let complaint = &fcr["rows"][1];
    assert_eq!(complaint["repeat_contacts"], 1);

    // The other groupings are as they were, without a touchpoint definition.
    let (_, by_team) = api.call("GET", "/api/v1/service/fcr", Value::Null).await;
    assert_eq!(by_team["by"], "team");
    assert!(by_team.get("touchpoint_definition").is_none(), "{by_team}");

    // Touchpoints come from the journey map: without one, by=touchpoint says so.
    let without = TestApi::new(None);
    let (status, problem) = without
        .call("GET", "/api/v1/service/fcr?by=touchpoint", Value::Null)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert_eq!(problem["field"], "by");
    assert!(problem["detail"].as_str().unwrap().contains("journey map"), "{problem}");
}

#[tokio::test]
async fn the_openapi_document_offers_touchpoint_as_a_grouping() {
    let api = TestApi::new(None);
    let (_, doc) = api.call("GET", "/openapi.json", Value::Null).await;
    let operation = &doc["paths"]["/api/v1/service/fcr"]["get"];
    let by = operation["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "by")
        .unwrap_or_else(|| panic!("{operation}"));
    assert!(by["description"].as_str().unwrap().contains("touchpoint"), "{by}");
    assert!(
        operation["description"].as_str().unwrap().contains("case_categories"),
        "{operation}"
    );
    let fcr = &doc["components"]["schemas"]["Fcr"];
    assert!(fcr["properties"]["touchpoint_definition"].is_object(), "{fcr}");
}
