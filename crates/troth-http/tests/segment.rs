//! Segment's HTTP Tracking API: what Segment's and RudderStack's SDKs send lands as
//! troth events, with the answers, limits and keys an SDK expects, and every
//! refused message is there for the operator to see.

mod common;

use std::io::Write;

use axum::body::Body;
use axum::http::{Request, Response, StatusCode, header};
use base64::Engine;
use common::{MASTER, TestApi, retail_map};
use serde_json::{Value, json};
use tower::ServiceExt;
use troth_core::Timestamp;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// `Authorization` as Segment's SDKs send it: the write key as the user name, no password.
fn basic(key: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{key}:"))
    )
}

/// A POST as an SDK makes it: JSON (gzip when `gzipped`), with `authorization` if any.
fn post(uri: &str, body: &Value, authorization: Option<&str>, gzipped: bool) -> Request<Body> {
    let mut request = Request::post(uri).header(header::CONTENT_TYPE, "application/json");
    if let Some(authorization) = authorization {
        request = request.header(header::AUTHORIZATION, authorization);
    }
    let text = body.to_string().into_bytes();
    let bytes = if gzipped {
        request = request.header(header::CONTENT_ENCODING, "gzip");
        gzip(&text)
    } else {
        text
    };
    request
        .header(header::CONTENT_LENGTH, bytes.len())
        .body(Body::from(bytes))
        .unwrap()
}

async fn send(api: &TestApi, request: Request<Body>) -> (StatusCode, Value) {
    let (status, text) = api.send(request).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn respond(api: &TestApi, request: Request<Body>) -> Response<Body> {
    api.router.clone().oneshot(request).await.unwrap()
}

async fn events(api: &TestApi, query: &str) -> Vec<Value> {
    let (status, page) = api.call("GET", &format!("/api/v1/events?{query}"), Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["events"].as_array().unwrap().clone()
}

async fn rejected(api: &TestApi) -> Vec<Value> {
    let (status, list) = api.call("GET", "/api/v1/segment/rejected", Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    list["rejected"].as_array().unwrap().clone()
}

fn time(value: &Value) -> Timestamp {
    Timestamp::parse(value.as_str().unwrap()).unwrap()
}

const SUCCESS: &str = r#"{"success":true}"#;

#[tokio::test]
async fn an_sdk_batch_lands_as_catalogue_events_at_corrected_times() {
    let api = TestApi::new(Some(retail_map()));
    let key = api.key(&["ingest"]).await;
    // The device's clock is two hours fast: it stamped the order 10 minutes before
    // it sent the batch, both by its own clock.
    let hour = 3_600_000_000;
    let device_now = Timestamp::now().plus_us(2 * hour);
    let stamped = |minutes_before: i64| device_now.plus_us(-minutes_before * 60_000_000).to_string();
    let batch = json!({
        "batch": [
            {"type": "identify", "messageId": "m-identify", "userId": "u-1", "anonymousId": "anon-1",
             "traits": {"email": "Ann@Example.org", "name": "Ann"}, "timestamp": stamped(30)},
            {"type": "track", "messageId": "m-order", "userId": "u-1", "event": "Order Completed",
             "timestamp": stamped(10),
             "properties": {"order_id": "o-17", "total": 356.0, "revenue": 320.0, "currency": "EUR",
                            "products": [{"product_id": "p-1", "sku": "tyre-205", "quantity": 4, "price": 89}]}},
            {"type": "page", "messageId": "m-page", "anonymousId": "anon-1", "name": "Basket",
             "properties": {"path": "/basket", "url": "https://shop.example/basket"}, "timestamp": stamped(5)},
        ],
        "sentAt": device_now.to_string(),
        "context": {"library": {"name": "analytics.js", "version": "2.11.1"}},
    });
    let before = Timestamp::now();
    let (status, answer) = send(&api, post("/v1/batch", &batch, Some(&basic(&key)), true)).await;
    let after = Timestamp::now();
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer.to_string(), SUCCESS);

    // The anonymous page view and the identified orders are one customer's.
    let stored = events(&api, "customer=u-1").await;
    let types: Vec<&str> = stored.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        ["customer.identified", "order.placed", "page.viewed"],
        "{stored:?}"
    );
    let order = &stored[1];
    assert_eq!(order["id"], "seg.m-order");
    assert_eq!(order["subject"], "order:o-17");
    assert_eq!(
        (order["source"].as_str(), order["channel"].as_str()),
        (Some("analytics.js"), Some("web"))
    );
    assert_eq!(
        order["data"],
        json!({"order": "o-17", "total": 35600, "currency": "EUR", "delivery": "home",
               "items": [{"sku": "tyre-205", "qty": 4, "price": 8900}]})
    );
    // Each event's time: when troth received the batch, less how long before
    // sending the device stamped it; the device's two hours ahead do not count.
    for (event, minutes) in stored.iter().zip([30, 10, 5]) {
        let t = time(&event["time"]);
        let ago = minutes * 60_000_000;
        assert!(
            before.plus_us(-ago) <= t && t <= after.plus_us(-ago),
            "{} at {t}, received between {before} and {after}",
            event["type"]
        );
    }
    assert_eq!(stored[2]["data"], json!({"page": "/basket"}));

    let (status, customer) = api.call("GET", "/api/v1/customers/u-1", Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{customer}");
    let identities: Vec<String> = customer["identities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| format!("{}:{}", i["kind"].as_str().unwrap(), i["value"].as_str().unwrap()))
        .collect();
    for identity in ["id:u-1", "email:ann@example.org", "external:segment_anon:anon-1"] {
        assert!(
            identities.contains(&identity.to_owned()),
            "{identity} not in {identities:?}"
        );
    }
    assert_eq!(customer["traits"]["name"], "Ann");
    assert!(rejected(&api).await.is_empty());
}

#[tokio::test]
async fn a_duplicate_message_id_stores_nothing() {
    let api = TestApi::new(None);
    let key = api.key(&["ingest"]).await;
    // The write key in the body, as some SDKs and proxies send it.
    let track = json!({"writeKey": key, "messageId": "m-1", "userId": "u-1", "event": "Signed Up",
                       "timestamp": "2026-11-23T09:00:00Z"});
    let (status, answer) = send(&api, post("/v1/track", &track, None, false)).await;
    assert_eq!((status, answer.to_string()), (StatusCode::OK, SUCCESS.to_owned()));
    let head = api.progress_log().await;
    // An SDK retrying after a lost answer sends the same messageId again.
    let (status, answer) = send(&api, post("/v1/track", &track, None, false)).await;
    assert_eq!((status, answer.to_string()), (StatusCode::OK, SUCCESS.to_owned()));
    let batch = json!({"writeKey": key, "batch": [{"type": "track", "messageId": "m-1", "userId": "u-1", "event": "Signed Up"}]});
    let (status, _) = send(&api, post("/v1/batch", &batch, None, true)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(api.progress_log().await, head, "nothing more in the log");
    let stored = events(&api, "type=x.segment.signed_up").await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["id"], "seg.m-1");
    assert!(!stored[0].to_string().contains(&key), "the write key is never stored");
}

#[tokio::test]
async fn an_over_size_body_is_refused_naming_the_limit() {
    let api = TestApi::new(None);
    let key = basic(MASTER);
    let padding = "0".repeat(600 * 1024);
    let batch = json!({"batch": [{"type": "track", "userId": "u", "event": "Big", "properties": {"pad": padding}}]});
    // Compressed it is small; inflated it is over 500 KiB: refused, not inflated further.
    let gzipped = post("/v1/batch", &batch, Some(&key), true);
    let (status, problem) = send(&api, gzipped).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{problem}");
    assert_eq!(problem["code"], "payload_too_large");
    assert!(problem["detail"].as_str().unwrap().contains("512000"), "{problem}");
    // As sent, it is over the limit before it is read.
    let (status, problem) = send(&api, post("/v1/import", &batch, Some(&key), false)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("512000"), "{problem}");
    // One call has 32 KiB.
    let track = json!({"userId": "u", "event": "Big", "properties": {"pad": "0".repeat(40 * 1024)}});
    let (status, problem) = send(&api, post("/v1/track", &track, Some(&key), true)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("32768"), "{problem}");
    assert_eq!(api.progress_log().await, 0);

    // A message over 32 KiB in a batch within its 500 KiB is refused alone.
    let batch = json!({"batch": [
        {"type": "track", "messageId": "big", "userId": "u", "event": "Big", "properties": {"pad": "0".repeat(40 * 1024)}},
        {"type": "track", "messageId": "small", "userId": "u", "event": "Small"},
    ]});
    let (status, _) = send(&api, post("/v1/batch", &batch, Some(&key), true)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(events(&api, "").await.len(), 1);
    let refused = rejected(&api).await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["field"], "batch[0]");
    assert!(refused[0]["reason"].as_str().unwrap().contains("32768"), "{refused:?}");
}

#[tokio::test]
async fn a_wrong_write_key_is_refused() {
    let mut api = TestApi::new(None);
    let track = json!({"userId": "u-1", "event": "Signed Up"});
    let problem_of = |response: &Response<Body>| {
        response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let response = respond(&api, post("/v1/track", &track, Some(&basic("troth_wrong")), false)).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(problem_of(&response).as_deref(), Some("application/problem+json"));
    let mut in_body = track.clone();
    in_body["writeKey"] = "troth_wrong".into();
    let (status, problem) = send(&api, post("/v1/track", &in_body, None, false)).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_api_key"))
    );
    let (status, problem) = send(&api, post("/v1/batch", &json!({"batch": []}), None, true)).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("missing_authorization"))
    );
    // A real key without the ingest scope may not send.
    let reader = api.key(&["read"]).await;
    let (status, problem) = send(&api, post("/v1/track", &track, Some(&basic(&reader)), false)).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    assert_eq!(api.progress_log().await, 0);
    // Without a master key the API is open, as everywhere.
    api.open_mode();
    let (status, _) = send(&api, post("/v1/track", &track, None, false)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(events(&api, "type=x.segment.signed_up").await.len(), 1);
}

#[tokio::test]
async fn an_unmapped_track_is_kept_as_an_extension_event() {
    let api = TestApi::new(None);
    let key = api.key(&["ingest"]).await;
    let track = json!({"messageId": "m-w", "anonymousId": "anon-2", "event": "Wishlist Shared",
                       "properties": {"share_via": "email", "products": [{"product_id": "p-1"}]}});
    let (status, _) = send(&api, post("/v1/track", &track, Some(&basic(&key)), false)).await;
    assert_eq!(status, StatusCode::OK);
    let stored = events(&api, "type=x.segment.wishlist_shared").await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(
        stored[0]["data"],
        json!({"event": "Wishlist Shared", "properties": {"share_via": "email", "products": [{"product_id": "p-1"}]}})
    );
    assert_eq!(stored[0]["customer"], json!({"external": {"segment_anon": "anon-2"}}));
}

#[tokio::test]
async fn a_message_that_fails_validation_is_listed_and_the_rest_of_its_batch_stored() {
    let api = TestApi::new(None);
    let key = api.key(&["ingest"]).await;
    let batch = json!({
        "writeKey": key,
        "batch": [
            {"type": "page", "messageId": "ok-1", "userId": "u-1", "properties": {"path": "/"}},
            {"type": "track", "messageId": "bad-order", "userId": "u-1", "event": "Order Completed",
             "properties": {"order_id": "o-1", "total": 10, "currency": "EUR",
                            "products": [{"sku": "a", "quantity": 0, "price": 10}]}},
            {"type": "boom", "messageId": "bad-type", "userId": "u-1"},
            {"type": "track", "messageId": "ok-2", "userId": "u-1", "event": "Products Searched",
             "properties": {"query": "tyres"}},
        ],
    });
    let (status, answer) = send(&api, post("/v1/batch", &batch, None, true)).await;
    assert_eq!((status, answer.to_string()), (StatusCode::OK, SUCCESS.to_owned()));
    let stored: Vec<String> = events(&api, "")
        .await
        .iter()
        .map(|e| format!("{} {}", e["id"].as_str().unwrap(), e["type"].as_str().unwrap()))
        .collect();
    assert_eq!(stored, ["seg.ok-1 page.viewed", "seg.ok-2 search.performed"]);

    let refused = rejected(&api).await;
    let summary: Vec<(&str, &str, &str)> = refused
        .iter()
        .map(|r| {
            (
                r["route"].as_str().unwrap(),
                r["field"].as_str().unwrap(),
                r["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "/v1/batch",
                "batch[2].type",
                "must be one of identify|track|page|screen|group|alias, not \"boom\""
            ),
            (
                "/v1/batch",
                "batch[1].properties.products[0].quantity",
                "must be at least 1"
            ),
        ]
    );
    assert_eq!(refused[1]["message"]["messageId"], "bad-order");
    assert!(refused[1]["at"].as_str().is_some_and(|t| Timestamp::parse(t).is_ok()));
    assert!(
        !refused.iter().any(|r| r.to_string().contains(&key)),
        "no write key is kept"
    );

    // Sent again, a refused message is listed once.
    let (status, _) = send(&api, post("/v1/batch", &batch, None, false)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(rejected(&api).await.len(), 2);
    // The listing is the operator's: customers' details are in it.
    let request = Request::get("/api/v1/segment/rejected")
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .body(Body::empty())
        .unwrap();
    let (status, _) = api.send(request).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, problem) = api.call("GET", "/api/v1/segment/rejected?limit=0", Value::Null).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
}

#[tokio::test]
async fn the_configured_table_maps_names_over_the_defaults() {
    let mut api = TestApi::new(None);
    let events_map = troth_core::segment::EventMap::default()
        .with_overrides([("Purchase", "order.placed"), ("Order Completed", "x.shop.completed")])
        .unwrap();
    api.segment_events(events_map);
    let properties = json!({"order_id": "o-9", "total": "19.99", "currency": "usd",
                            "products": [{"sku": "a", "price": 19.99}]});
    let batch = json!({"batch": [
        {"type": "track", "messageId": "p", "userId": "u", "event": "purchase", "properties": properties},
        {"type": "track", "messageId": "c", "userId": "u", "event": "Order Completed", "properties": properties},
    ]});
    let (status, _) = send(&api, post("/v1/batch", &batch, Some(&basic(MASTER)), false)).await;
    assert_eq!(status, StatusCode::OK);
    let placed = events(&api, "type=order.placed").await;
    assert_eq!(placed.len(), 1, "{placed:?}");
    assert_eq!(
        (
            placed[0]["data"]["total"].as_i64(),
            placed[0]["data"]["currency"].as_str()
        ),
        (Some(1999), Some("USD"))
    );
    assert_eq!(events(&api, "type=x.shop.completed").await.len(), 1);
}

#[tokio::test]
async fn an_alias_makes_the_anonymous_visitor_the_user() {
    let api = TestApi::new(None);
    let key = basic(MASTER);
    for (uri, message) in [
        (
            "/v1/page",
            json!({"messageId": "p1", "anonymousId": "anon-9", "properties": {"path": "/"}}),
        ),
        (
            "/v1/identify",
            json!({"messageId": "i1", "userId": "u-9", "traits": {"email": "bo@example.org"}}),
        ),
        (
            "/v1/alias",
            json!({"messageId": "a1", "userId": "u-9", "previousId": "anon-9"}),
        ),
    ] {
        let (status, answer) = send(&api, post(uri, &message, Some(&key), false)).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {answer}");
    }
    // The alias named both: the anonymous visitor's customer was merged into the user's.
    let stored = events(&api, "customer=email:bo@example.org").await;
    let types: Vec<(&str, &str)> = stored
        .iter()
        .map(|e| (e["id"].as_str().unwrap(), e["type"].as_str().unwrap()))
        .collect();
    assert_eq!(
        types[..3],
        [
            ("seg.p1", "page.viewed"),
            ("seg.i1", "customer.identified"),
            ("seg.a1", "x.segment.alias")
        ]
    );
    assert_eq!(types[3].1, "customer.merged", "{stored:?}");
}

#[tokio::test]
async fn browsers_may_call_from_the_shops_pages_and_the_routes_are_described() {
    let api = TestApi::new(None);
    let preflight = Request::options("/v1/batch")
        .header(header::ORIGIN, "https://shop.example")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization, content-type")
        .body(Body::empty())
        .unwrap();
    let response = respond(&api, preflight).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let allowed =
        |response: &Response<Body>, name| response.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(
        allowed(&response, header::ACCESS_CONTROL_ALLOW_ORIGIN).as_deref(),
        Some("*")
    );
    assert!(allowed(&response, header::ACCESS_CONTROL_ALLOW_HEADERS).is_some_and(|h| h.contains("Authorization")));
    // analytics.js posts to the call's first letter, text/plain (a cross-site
    // fetch without a preflight), the write key in the body; batches to /v1/b.
    let analytics_js = |uri: &str, body: Value| {
        Request::post(uri)
            .header(header::ORIGIN, "https://shop.example")
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let page = json!({"type": "page", "messageId": "ajs-next-1", "anonymousId": "a", "writeKey": MASTER,
                      "properties": {"path": "/", "url": "https://shop.example/"},
                      "context": {"library": {"name": "analytics.js", "version": "npm:next-1.81.0"}},
                      "timestamp": "2026-11-23T09:00:00.000Z", "sentAt": "2026-11-23T09:00:00.100Z"});
    let response = respond(&api, analytics_js("/v1/p", page)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        allowed(&response, header::ACCESS_CONTROL_ALLOW_ORIGIN).as_deref(),
        Some("*")
    );
    let batch = json!({"writeKey": MASTER, "sentAt": "2026-11-23T09:00:05Z", "batch": [
        {"type": "track", "messageId": "ajs-next-2", "anonymousId": "a", "event": "Tapped", "writeKey": MASTER,
         "timestamp": "2026-11-23T09:00:04Z"},
        {"type": "track", "messageId": "ajs-next-3", "anonymousId": "a", "writeKey": MASTER},
    ]});
    let response = respond(&api, analytics_js("/v1/b", batch)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let ids: Vec<String> = events(&api, "customer=ext:segment_anon:a")
        .await
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["seg.ajs-next-1", "seg.ajs-next-2"]);
    let refused = rejected(&api).await;
    assert_eq!(
        (refused[0]["route"].as_str(), refused[0]["field"].as_str()),
        (Some("/v1/b"), Some("batch[1].event"))
    );
    // Not JSON, or not an object: problem+json, for any origin too.
    let request = Request::post("/v1/track")
        .header(header::AUTHORIZATION, basic(MASTER))
        .body(Body::from("[1]"))
        .unwrap();
    let (status, problem) = send(&api, request).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_segment_body"))
    );

    let (_, doc) = api.call("GET", "/openapi.json", Value::Null).await;
    for path in [
        "/v1/identify",
        "/v1/track",
        "/v1/page",
        "/v1/screen",
        "/v1/group",
        "/v1/alias",
        "/v1/batch",
        "/v1/import",
    ] {
        assert_eq!(doc["paths"][path]["post"]["tags"][0], "segment", "{path}");
    }
    assert!(doc["paths"]["/api/v1/segment/rejected"]["get"].is_object());
    assert_eq!(doc["components"]["securitySchemes"]["write_key"]["scheme"], "basic");
}
