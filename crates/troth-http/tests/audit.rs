//! Who read what: an agent signs in with their own key, and every read of a
//! customer's data (story, profile, events, page, a case) is recorded under it,
//! listable per customer and per agent by an admin, never by the agent.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{MASTER, TestApi};
use serde_json::{Value, json};
use tower::ServiceExt;

async fn get_as(api: &TestApi, uri: &str, key: &str) -> (StatusCode, Value) {
    let request = Request::get(uri)
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .body(Body::empty())
        .unwrap();
    let (status, text) = api.send(request).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[tokio::test]
async fn every_read_of_a_customer_is_recorded_under_the_reader() {
    let api = TestApi::new(None);
    api.ingest(json!([
        {"id": "e1", "type": "customer.identified", "time": "2026-11-20T09:00:00Z",
         "customer": {"email": "ann@example.org"}, "data": {"traits": {"name": "Ann Lee"}}},
        {"id": "e2", "type": "case.opened", "time": "2026-11-23T15:00:00Z", "customer": {"email": "ann@example.org"},
         "subject": "case:k-1", "data": {"case": "k-1", "category": "delivery", "team": "support"}},
        {"id": "e3", "type": "customer.identified", "time": "2026-11-20T09:00:00Z",
         "customer": {"email": "bob@example.org"}, "data": {"traits": {"name": "Bob"}}}
    ]))
    .await;
    let (status, key) = api
        .call(
            "POST",
            "/api/v1/keys",
            json!({"name": "Agent Smith", "scopes": ["agent"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    let (agent, uid) = (key["key"].as_str().unwrap(), key["uid"].as_str().unwrap());

    // The agent reads Ann four ways; the master key reads Bob once.
    for uri in [
        "/api/v1/customers/email:ann@example.org/story",
        "/api/v1/customers/email:ann@example.org",
        "/api/v1/events?customer=email:ann@example.org",
        "/api/v1/cases/k-1",
    ] {
        let (status, body) = get_as(&api, uri, agent).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
    }
    let page = Request::get("/ui/customers/email:ann@example.org")
        .header(header::AUTHORIZATION, format!("Bearer {agent}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(api.router.clone().oneshot(page).await.unwrap().status(), StatusCode::OK);
    let (status, _) = get_as(&api, "/api/v1/customers/email:bob@example.org", MASTER).await;
    assert_eq!(status, StatusCode::OK);

    let (status, ann) = api
        .call("GET", "/api/v1/audit/reads?customer=email:ann@example.org", Value::Null)
        .await;
    assert_eq!(status, StatusCode::OK, "{ann}");
    let reads = ann["reads"].as_array().unwrap();
    let what: Vec<&str> = reads.iter().map(|r| r["what"].as_str().unwrap()).collect();
    assert_eq!(what, ["page", "case", "events", "profile", "story"], "newest first");
    assert!(
        reads
            .iter()
            .all(|r| r["reader"] == uid && r["reader_name"] == "Agent Smith" && r["customer"] == "cus_1")
    );

    let (_, by_agent) = api
        .call("GET", &format!("/api/v1/audit/reads?agent={uid}"), Value::Null)
        .await;
    assert_eq!(
        by_agent["reads"].as_array().unwrap().len(),
        5,
        "Bob was read by the master key"
    );
    let (_, bob) = api.call("GET", "/api/v1/audit/reads?customer=cus_2", Value::Null).await;
    assert_eq!(bob["reads"][0]["reader"], "master");

    // An agent reads customers and cases, but neither the audit nor the keys.
    let (status, _) = get_as(&api, "/api/v1/audit/reads", agent).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = get_as(&api, "/api/v1/keys", agent).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Reading nobody records nothing.
    let (status, _) = get_as(&api, "/api/v1/customers/email:nobody@example.org/story", agent).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, all) = api.call("GET", "/api/v1/audit/reads", Value::Null).await;
    assert_eq!(all["reads"].as_array().unwrap().len(), 6);
}
