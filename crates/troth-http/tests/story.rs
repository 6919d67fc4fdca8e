//! The customer's whole story through the API: summary, cases with clocks, promises,
//! shipments with the customer's own tracking link, feedback, and a timeline in words
//! with the noise folded away.

mod common;

use axum::http::StatusCode;
use common::{TestApi, retail_map};
use serde_json::{Value, json};
use tower::ServiceExt;

fn story_events() -> Value {
    let ann = json!({"email": "Ann@Example.org"});
    json!([
        {"id": "e1", "type": "customer.identified", "time": "2026-11-20T09:00:00Z", "channel": "web",
         "customer": {"email": "ann@example.org", "phone": "+44 20 7946 0000"}, "data": {"traits": {"name": "Ann Lee"}}},
        {"id": "e2", "type": "page.viewed", "time": "2026-11-20T09:01:00Z", "channel": "web", "customer": ann,
         "data": {"page": "/tyres"}},
        {"id": "e3", "type": "order.placed", "time": "2026-11-20T09:05:00Z", "channel": "web", "customer": ann,
         "subject": "order:o-1",
         "data": {"order": "o-1", "items": [{"sku": "tyre", "qty": 4, "price": 8900}], "total": 35600,
                  "currency": "EUR", "delivery": "home"}},
        {"id": "e4", "type": "payment.succeeded", "time": "2026-11-20T09:05:30Z", "channel": "web", "customer": ann,
         "subject": "order:o-1", "data": {"method": "card", "amount": 35600, "currency": "EUR"}},
        {"id": "e5", "type": "shipment.created", "time": "2026-11-21T08:00:00Z", "customer": ann,
         "subject": "shipment:s-1", "data": {"shipment": "s-1", "order": "o-1", "carrier": "SwiftPost", "service": "standard"}},
        {"id": "e6", "type": "shipment.window_set", "time": "2026-11-21T08:05:00Z", "subject": "shipment:s-1",
         "data": {"window_start": "2026-11-23T13:00:00Z", "window_end": "2026-11-23T14:00:00Z", "driver": "SwiftPost"}},
        {"id": "e7", "type": "shipment.attempt_failed", "time": "2026-11-23T13:30:00Z", "subject": "shipment:s-1",
         "data": {"reason": "no_one_home"}},
        {"id": "e8", "type": "case.opened", "time": "2026-11-23T15:00:00Z", "channel": "phone", "customer": ann,
         "subject": "case:k-1", "data": {"case": "k-1", "category": "delivery", "team": "support", "order": "o-1"}},
        {"id": "e9", "type": "survey.answered", "time": "2026-11-23T16:00:00Z", "channel": "email", "customer": ann,
         "data": {"survey": "post_contact", "nps": 2, "comment": "nobody came"}}
    ])
}

#[tokio::test]
async fn the_story_tells_an_agent_everything_in_words() {
    let api = TestApi::new(Some(retail_map()));
    for item in api.ingest(story_events()).await {
        assert_eq!(item["status"], "accepted", "{item}");
    }
    let (status, story) = api
        .call("GET", "/api/v1/customers/email:ann@example.org/story", Value::Null)
        .await;
    assert_eq!(status, StatusCode::OK, "{story}");

    let customer = &story["customer"];
    assert_eq!(customer["name"], "Ann Lee");
    assert_eq!(customer["value"]["orders"], 1);
    assert_eq!(customer["value"]["items"], 4);
    assert_eq!(customer["value"]["spend"], json!(["€356.00"]));
    assert_eq!(customer["preferred_channel"], "web");
    assert_eq!(customer["latest_nps"], 2);
    assert_eq!(customer["open_cases"], 1);

    assert_eq!(story["cases"][0]["id"], "k-1");
    assert_eq!(story["cases"][0]["state"], "open");
    assert!(story["cases"][0]["resolution_clock"]["due"].is_string());

    let shipment = &story["shipments"][0];
    assert_eq!(shipment["id"], "s-1");
    assert_eq!(shipment["carrier"], "SwiftPost");
    assert_eq!(shipment["stage"], "attempt_failed", "{shipment}");
    let link = shipment["tracking_url"].as_str().unwrap();
    assert!(link.starts_with("/t/"), "{link}");
    // The link is the customer's own page.
    let page = api
        .send(axum::http::Request::get(link).body(axum::body::Body::empty()).unwrap())
        .await;
    assert_eq!(page.0, StatusCode::OK);

    assert!(
        story["promises"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["subject"] == "shipment:s-1"),
        "{}",
        story["promises"]
    );
    // Each promise once, the latest due first.
    let promises = story["promises"].as_array().unwrap();
    let ids: std::collections::BTreeSet<&str> = promises.iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), promises.len(), "a promise listed twice: {promises:?}");
    let dues: Vec<&str> = promises.iter().map(|p| p["due"].as_str().unwrap()).collect();
    assert!(dues.windows(2).all(|w| w[0] >= w[1]), "{dues:?}");
    assert_eq!(story["feedback"][0]["kind"], "survey");
    assert_eq!(story["feedback"][0]["tone"], "bad");

    let texts: Vec<&str> = story["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert!(texts.contains(&"Paid €356.00 by card"), "{texts:?}");
    assert!(texts.contains(&"Ordered o-1 (4 items, €356.00)"), "{texts:?}");
    assert!(
        texts
            .iter()
            .any(|t| t.starts_with("Contacted support about delivery (order o-1)")),
        "{texts:?}"
    );
    assert!(
        !texts.iter().any(|t| t.starts_with("Viewed")),
        "page views are folded away: {texts:?}"
    );
    assert_eq!(story["next_best_action"], Value::Null);
    // Newest first.
    assert_eq!(story["timeline"][0]["type"], "survey.answered");

    let (_, noisy) = api
        .call(
            "GET",
            "/api/v1/customers/email:ann@example.org/story?noise=true",
            Value::Null,
        )
        .await;
    assert!(
        noisy["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["text"] == "Viewed /tyres" && e["noise"] == true)
    );
    let (_, phone) = api
        .call(
            "GET",
            "/api/v1/customers/email:ann@example.org/story?channel=phone",
            Value::Null,
        )
        .await;
    assert_eq!(phone["timeline"].as_array().unwrap().len(), 1);

    let (status, _) = api
        .call("GET", "/api/v1/customers/email:nobody@example.org/story", Value::Null)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = api
        .call("GET", "/api/v1/customers/cus_1/story?noise=maybe", Value::Null)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn an_agent_finds_the_customer_by_phone_order_shipment_or_name() {
    let mut api = TestApi::new(Some(retail_map()));
    api.open_mode();
    api.ingest(story_events()).await;
    let find = |q: &str| {
        let uri = format!("/ui/customers?q={}", q.replace(' ', "%20").replace('+', "%2B"));
        axum::http::Request::get(uri).body(axum::body::Body::empty()).unwrap()
    };
    for q in [
        "+44 20 7946 0000",
        "020 7946 0000x",
        "ANN@example.org",
        "o-1",
        "s-1",
        "lee",
        "cus_1",
    ] {
        let response = api.router.clone().oneshot(find(q)).await.unwrap();
        if q.ends_with('x') {
            // Not a phone number as written: no one.
            assert_eq!(response.status(), StatusCode::OK, "{q}");
            continue;
        }
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{q}");
        assert_eq!(response.headers()["location"], "/ui/customers/cus_1", "{q}");
    }
    let (status, page) = api.send(find("nobody")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("No customer matches “nobody”"), "{page}");

    // The page itself: the summary first, the timeline in words, routine events folded.
    let (status, page) = api
        .send(
            axum::http::Request::get("/ui/customers/cus_1")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("<h1>Ann Lee</h1>"), "{page}");
    assert!(page.contains("1 order") && page.contains("€356.00"), "{page}");
    assert!(page.contains("Paid €356.00 by card"), "{page}");
    assert!(page.contains("their tracking page"), "{page}");
    assert!(!page.contains("Viewed /tyres"), "{page}");
    let (_, noisy) = api
        .send(
            axum::http::Request::get("/ui/customers/cus_1?noise=true")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert!(noisy.contains("Viewed /tyres"));
}

#[tokio::test]
async fn a_customer_with_more_events_than_a_story_reads_keeps_every_case_and_their_first_day() {
    let api = TestApi::new(Some(retail_map()));
    api.ingest(story_events()).await;
    let story_of_ann = || async {
        let (status, story) = api
            .call("GET", "/api/v1/customers/email:ann@example.org/story", Value::Null)
            .await;
        assert_eq!(status, StatusCode::OK, "{story}");
        story
    };
    let before = story_of_ann().await;
    assert_eq!(before["timeline_truncated"], false);

    // More page views than the story reads, all after the case was opened.
    let views: Vec<usize> = (0..troth_http::story::STORY_EVENTS).collect();
    for chunk in views.chunks(250) {
        let batch: Vec<Value> = chunk
            .iter()
            .map(|i| {
                json!({"id": format!("v{i}"), "type": "page.viewed", "time": "2026-11-24T10:00:00Z",
                       "channel": "web", "customer": {"email": "ann@example.org"}, "data": {"page": format!("/p{i}")}})
            })
            .collect();
        for item in api.ingest(Value::Array(batch)).await {
            assert_eq!(item["status"], "accepted", "{item}");
        }
    }
    let after = story_of_ann().await;
    assert_eq!(after["timeline_truncated"], true);
    // The case and its promises were made by events the story no longer reads.
    let ids = |story: &Value, part: &str| -> Vec<String> {
        story[part]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| format!("{} {}", c["id"], c["state"]))
            .collect()
    };
    assert_eq!(ids(&after, "cases"), ids(&before, "cases"));
    assert_eq!(after["customer"]["open_cases"], 1);
    let made_by_ann: Vec<String> = before["promises"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["subject"] == "case:k-1")
        .map(|p| p["id"].to_string())
        .collect();
    assert!(!made_by_ann.is_empty(), "{}", before["promises"]);
    for id in &made_by_ann {
        assert!(
            ids(&after, "promises").iter().any(|p| p.starts_with(id.as_str())),
            "{id}"
        );
    }
    assert_eq!(after["customer"]["first_seen"], before["customer"]["first_seen"]);
    assert_eq!(after["customer"]["last_seen"], "2026-11-24T10:00:00.000000Z");
}
