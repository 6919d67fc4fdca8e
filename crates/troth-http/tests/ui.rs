//! The web pages, rendered from real events.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;
use troth_http::{AppState, app};
use troth_store::sqlite::SqliteStore;

async fn get(router: &axum::Router, uri: &str, cookie: Option<&str>) -> (StatusCode, Option<String>, String) {
    let mut request = Request::builder().uri(uri);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let location = response
        .headers()
        .get(header::LOCATION)
        .map(|v| v.to_str().unwrap().to_owned());
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, location, String::from_utf8(body.to_vec()).unwrap())
}

fn events() -> Value {
    let e = |id: &str, t: &str, time: &str, extra: Value| {
        let mut event = json!({"id": id, "type": t, "time": time});
        event
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        event
    };
    json!([
        e(
            "1",
            "customer.identified",
            "2026-11-23T08:00:00Z",
            json!({"customer": {"id": "ann"}, "data": {"traits": {"name": "Ann <Lee>"}}})
        ),
        e(
            "2",
            "shipment.created",
            "2026-11-23T08:10:00Z",
            json!({"customer": {"id": "ann"}, "subject": "shipment:s1",
            "data": {"shipment": "s1", "order": "o1", "carrier": "swiftpost", "service": "standard"}})
        ),
        e(
            "3",
            "shipment.window_set",
            "2026-11-23T08:20:00Z",
            json!({"customer": {"id": "ann"}, "subject": "shipment:s1",
            "data": {"window_start": "2026-11-23T11:37:00Z", "window_end": "2026-11-23T12:37:00Z"}})
        ),
        e(
            "4",
            "shipment.out_for_delivery",
            "2026-11-23T10:00:00Z",
            json!({"customer": {"id": "ann"}, "subject": "shipment:s1",
            "data": {"driver": "d7", "stops_before": 4}})
        ),
        e(
            "5",
            "courier.position",
            "2026-11-23T10:05:00Z",
            json!({"subject": "driver:d7", "data": {"lat": 48.85, "lon": 2.35}})
        ),
        e(
            "6",
            "courier.position",
            "2026-11-23T10:05:10Z",
            json!({"subject": "driver:d7", "data": {"lat": 48.851, "lon": 2.352}})
        ),
        e(
            "7",
            "review.posted",
            "2026-11-23T10:06:00Z",
            json!({"customer": {"id": "ann"},
            "data": {"rating": 1, "text": "<script>alert(1)</script>", "site": "shop"}})
        ),
    ])
}

async fn seeded(master_key: Option<&str>) -> (tempfile::TempDir, axum::Router) {
    let dir = tempfile::tempdir().unwrap();
    let journey = troth_core::journey::parse_journey(include_str!("../../../journeys/retail.toml")).unwrap();
    let store = SqliteStore::open_with_journey(dir.path(), Some(&journey)).unwrap();
    let router = app(AppState::new(store, master_key.map(str::to_owned)).with_journey(journey));
    let mut request = Request::builder().method("POST").uri("/api/v1/events");
    if let Some(key) = master_key {
        request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::from(events().to_string())).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    (dir, router)
}

#[tokio::test]
async fn pages_show_what_the_events_say() {
    let (_dir, router) = seeded(None).await;
    let (status, _, overview) = get(&router, "/", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        overview.contains(r#"<div class="n">8</div><div class="l">events</div>"#),
        "{overview}"
    );
    assert!(overview.contains("courier.position"));

    let (status, _, customer) = get(&router, "/ui/customers/ann", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        customer.contains("<h1>Ann &lt;Lee&gt;</h1>"),
        "names are escaped: {customer}"
    );
    assert!(
        customer.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && !customer.contains("<script>"),
        "event text is escaped"
    );
    assert!(
        customer.contains(r#"href="/ui/shipments/s1""#),
        "the timeline links the shipment"
    );

    let (status, _, shipment) = get(&router, "/ui/shipments/s1", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(shipment.contains("Created with swiftpost"));
    assert!(shipment.contains("Out for delivery, 4 stops before"));
    assert!(
        shipment.contains("Window: <strong>2026-11-23 11:37 – 2026-11-23 12:37</strong>"),
        "{shipment}"
    );
    assert!(shipment.contains("<circle"), "the driver is on the map");
    assert!(
        shipment.contains("48.85100, 2.35200"),
        "at the latest position: {shipment}"
    );
    assert!(
        !shipment.contains("Delivered"),
        "no stage is shown before its event arrived"
    );

    let (status, location, _) = get(&router, "/ui/journey", None).await;
    assert_eq!(
        (status, location.as_deref()),
        (StatusCode::SEE_OTHER, Some("/ui/journeys/retail"))
    );
    let (status, _, journey) = get(&router, "/ui/journeys/retail", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        journey.contains("<h2>Second moment of truth: receive and use</h2>"),
        "{journey}"
    );
    assert!(
        journey.contains("<strong>The one-hour delivery window</strong>") && journey.contains("owned by logistics")
    );
    assert!(
        journey.contains("2 exposures · promises kept 0 of 0 (– broken) · 0 survey answers (– negative)"),
        "the shipment created and its window are exposure: {journey}"
    );

    let (status, _, _) = get(&router, "/ui/shipments/nope", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, docs) = get(&router, "/docs", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(docs.contains("<code>/api/v1/events/ndjson</code>"));
}

#[tokio::test]
async fn with_a_master_key_pages_need_signing_in() {
    let (_dir, router) = seeded(Some("s3cret key")).await;
    let (status, location, _) = get(&router, "/ui/customers/ann", None).await;
    assert_eq!((status, location.as_deref()), (StatusCode::SEE_OTHER, Some("/login")));
    let (status, _, _) = get(&router, "/", Some("troth_key=wrong")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _, page) = get(&router, "/ui/customers/ann", Some("other=1; troth_key=s3cret%20key")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let (status, _, _) = get(&router, "/docs", None).await;
    assert_eq!(status, StatusCode::OK, "the API reference is public");
}
