//! `/api/v1/outbox` through the router: listing, dead letters, retry, master key only.

mod common;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;
use troth_core::journey::parse_journey;
use troth_core::{Timestamp, validate_value};
use troth_http::AppState;
use troth_store::sqlite::SqliteStore;
use troth_store::{NewKey, RetryPolicy, Scope, Store};

const MASTER: &str = "master-secret";

async fn call(router: &Router, method: &str, uri: &str, key: Option<&str>) -> (StatusCode, String, Value) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(key) = key {
        request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (
        status,
        content_type,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn outbox_rows_dead_letters_and_retry_for_the_master_key_only() {
    let dir = tempfile::tempdir().unwrap();
    let map = parse_journey(include_str!("../../../journeys/retail.toml")).unwrap();
    let store = SqliteStore::open_with_journey(dir.path(), Some(&map)).unwrap();
    // The events happen on 2026-11-23; taken in that day, they are news to plays.
    let noon = Timestamp::parse_rfc3339("2026-11-23T12:00:00Z").unwrap();
    store.set_clock(std::sync::Arc::new(move || noon));
    let mut events = vec![
        json!({"id": "i1", "type": "customer.identified", "time": "2026-11-23T09:00:00Z",
        "customer": {"id": "ann"}, "data": {"emails": ["ann@example.org"]}}),
    ];
    for n in 0..3 {
        events.push(
            json!({"id": format!("p{n}"), "type": "payment.failed", "time": "2026-11-23T10:00:00Z",
            "customer": {"id": "ann"}, "data": {"method": "card", "amount": 100, "currency": "EUR"}}),
        );
    }
    let events = events.into_iter().map(|e| validate_value(e, None).unwrap()).collect();
    store.append(events).await.unwrap();
    // p0 is sent, p1 dies at its first failure, p2 stays pending.
    let now = Timestamp::now();
    assert_eq!(store.claim_outbox(now, 2).await.unwrap().len(), 2);
    store
        .outbox_sent("play:payment_failed_help:p0:0".into(), now)
        .await
        .unwrap();
    let once = RetryPolicy {
        max_attempts: 1,
        ..RetryPolicy::default()
    };
    store
        .outbox_failed(
            "play:payment_failed_help:p1:0".into(),
            now,
            "550 no such user".into(),
            once,
        )
        .await
        .unwrap();
    let (_, admin) = store
        .create_key(NewKey {
            name: Some("admin".into()),
            scopes: vec![Scope::Admin],
        })
        .await
        .unwrap();
    let router = common::settled_app(AppState::new(store, Some(MASTER.into())));

    let (status, content_type, problem) = call(&router, "GET", "/api/v1/outbox", None).await;
    assert_eq!(
        (status, content_type.as_str()),
        (StatusCode::UNAUTHORIZED, "application/problem+json")
    );
    assert_eq!(problem["code"], "missing_authorization");
    let (status, _, problem) = call(&router, "GET", "/api/v1/outbox/dead-letters", Some(&admin)).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );

    let (status, _, all) = call(&router, "GET", "/api/v1/outbox?limit=2", Some(MASTER)).await;
    assert_eq!(status, StatusCode::OK, "{all}");
    let states: Vec<&str> = all["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["sent", "dead"]);
    let next = all["next"].as_str().unwrap();
    let (_, _, rest) = call(
        &router,
        "GET",
        &format!("/api/v1/outbox?limit=2&cursor={next}"),
        Some(MASTER),
    )
    .await;
    assert_eq!(rest["entries"][0]["id"], "play:payment_failed_help:p2:0");
    assert_eq!(rest["entries"][0]["recipient"], "ann@example.org");
    assert_eq!(rest["next"], Value::Null);

    let (_, _, pending) = call(&router, "GET", "/api/v1/outbox?state=pending", Some(MASTER)).await;
    assert_eq!(pending["entries"].as_array().unwrap().len(), 1);
    let (status, _, problem) = call(&router, "GET", "/api/v1/outbox?state=lost", Some(MASTER)).await;
    assert_eq!(
        (status, problem["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("state"))
    );

    let (_, _, dead) = call(&router, "GET", "/api/v1/outbox/dead-letters", Some(MASTER)).await;
    let dead = dead["entries"].as_array().unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["id"], "play:payment_failed_help:p1:0");
    assert_eq!(dead[0]["last_error"], "550 no such user");
    assert_eq!(dead[0]["attempts"], 1);

    let (status, _, problem) = call(
        &router,
        "POST",
        "/api/v1/outbox/play:payment_failed_help:p0:0/retry",
        Some(MASTER),
    )
    .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::CONFLICT, Some("not_dead"))
    );
    let (status, _, _) = call(&router, "POST", "/api/v1/outbox/nope/retry", Some(MASTER)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, retried) = call(
        &router,
        "POST",
        "/api/v1/outbox/play:payment_failed_help:p1:0/retry",
        Some(MASTER),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{retried}");
    assert_eq!(
        (retried["state"].as_str(), retried["attempts"].as_u64()),
        (Some("pending"), Some(0))
    );
    let (_, _, dead) = call(&router, "GET", "/api/v1/outbox/dead-letters", Some(MASTER)).await;
    assert!(dead["entries"].as_array().unwrap().is_empty());

    let (_, _, openapi) = call(&router, "GET", "/openapi.json", None).await;
    for path in [
        "/api/v1/outbox",
        "/api/v1/outbox/dead-letters",
        "/api/v1/outbox/{id}/retry",
    ] {
        assert!(
            openapi["paths"][path].is_object(),
            "{path} is not in the OpenAPI description"
        );
    }
}
