//! Input meant to hurt: far-future instants, and a bug that panics while one event
//! is applied. Neither may stop the store: the event is refused with its reason and
//! everything else goes on.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{TestApi, retail_map};
use serde_json::{Value, json};

fn case_opened(id: &str, time: &str) -> Value {
    json!({"id": id, "type": "case.opened", "time": time, "customer": {"id": "c"}, "subject": format!("case:{id}"),
           "data": {"case": id, "category": "other", "team": "support"}})
}

fn page_view(id: &str) -> Value {
    json!({"id": id, "type": "page.viewed", "time": "2026-11-23T09:00:00Z", "customer": {"id": "ann"}, "data": {"page": "/"}})
}

async fn stored_ids(api: &TestApi) -> Vec<String> {
    let (status, page) = api.call("GET", "/api/v1/events?limit=1000", Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn far_future_instants_are_refused_by_field_and_the_store_keeps_writing() {
    let api = TestApi::new(Some(retail_map()));
    let handed_over = json!({"id": "h", "type": "shipment.handed_over", "time": "9999-12-31T23:59:00Z",
        "subject": "shipment:s1", "customer": {"id": "c"}, "data": {"shipment": "s1", "carrier": "swiftpost"}});
    let window = json!({"id": "w", "type": "shipment.window_set", "time": "2026-11-23T08:00:00Z",
        "subject": "shipment:s1", "customer": {"id": "c"},
        "data": {"window_start": "2026-11-23T11:00:00Z", "window_end": "9999-12-31T23:59:00Z"}});
    // Each more than once: a client that retries must not bring the store down either.
    for _ in 0..2 {
        let results = api
            .ingest(json!([case_opened("k1", "9999-12-31T23:59:00Z"), handed_over, window]))
            .await;
        let errors: Vec<(&str, &str, &str)> = results
            .iter()
            .map(|r| {
                (
                    r["status"].as_str().unwrap(),
                    r["error"]["field"].as_str().unwrap(),
                    r["error"]["message"].as_str().unwrap(),
                )
            })
            .collect();
        let range = "must be between 1970-01-01T00:00:00Z and 2200-01-01T00:00:00Z, not \"9999-12-31T23:59:00Z\"";
        assert_eq!(
            errors,
            [
                ("rejected", "time", range),
                ("rejected", "time", range),
                ("rejected", "data.window_end", range)
            ]
        );
    }
    // The last instant accepted makes a promise whose due time would fall past the
    // range: it is capped there, stored, listed and printed.
    let results = api
        .ingest(json!([case_opened("k2", "2199-12-31T23:59:00Z"), page_view("p1")]))
        .await;
    assert!(results.iter().all(|r| r["status"] == "accepted"), "{results:?}");
    let (status, promises) = api.call("GET", "/api/v1/journeys/retail/promises", Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{promises}");
    let due = promises["promises"][0]["due"].as_str().unwrap();
    assert_eq!(due, "2199-12-31T23:59:59.999999Z", "{promises}");
    // The clock runs past it without stopping anything.
    api.store
        .tick(troth_core::Timestamp::LATEST.plus_us(10 * 86_400_000_000))
        .await
        .unwrap();
    assert_eq!(api.ingest(json!([page_view("p2")])).await[0]["status"], "accepted");
    assert_eq!(
        stored_ids(&api).await.iter().filter(|id| id.starts_with('p')).count(),
        2
    );
}

#[tokio::test]
async fn an_osmand_report_from_the_far_future_is_refused_by_name() {
    let api = TestApi::new(None);
    let (status, device) = api.call("POST", "/api/v1/drivers/d-1/devices", Value::Null).await;
    assert_eq!(status, StatusCode::CREATED, "{device}");
    let device = device["device_id"].as_str().unwrap().to_owned();
    for timestamp in ["9000000000000000", "9223372036854775807", "-62135596800"] {
        let uri = format!("/osmand?id={device}&lat=52.5&lon=13.4&timestamp={timestamp}");
        let (status, body) = api.send(Request::get(uri).body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{timestamp}: {body}");
        assert!(body.contains("\"field\":\"timestamp\""), "{body}");
    }
    let uri = format!("/osmand?id={device}&lat=52.5&lon=13.4");
    let (status, body) = api.send(Request::get(uri).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK, "the handler goes on: {body}");
}

/// A bug that panics while one event is projected costs that event alone: it is
/// refused with the reason, the operator finds it in the quarantine, and the
/// events before and after it, in the same request and in later ones, are stored.
#[tokio::test]
async fn a_panic_while_applying_one_event_refuses_it_alone() {
    let api = TestApi::new(Some(retail_map()));
    api.store.set_fault(Some(Arc::new(|event: &troth_core::ValidEvent| {
        if event.id == "boom" {
            panic!("a projection bug, injected");
        }
    })));
    let results = api
        .ingest(json!([
            page_view("a"),
            page_view("boom"),
            page_view("b"),
            case_opened("k3", "2026-11-23T09:00:00Z")
        ]))
        .await;
    let statuses: Vec<&str> = results.iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["accepted", "rejected", "accepted", "accepted"]);
    let message = results[1]["error"]["message"].as_str().unwrap();
    assert!(message.contains("a projection bug, injected"), "{message}");
    assert!(message.contains("/api/v1/quarantine"), "{message}");

    // Many requests at once share a transaction; one bad event still costs only itself.
    let many = (0..20).map(|i| {
        let id = if i == 7 { "boom".to_owned() } else { format!("m{i}") };
        let api = &api;
        async move { api.ingest(json!([page_view(&id)])).await }
    });
    let answers = futures_util::future::join_all(many).await;
    let refused = answers.iter().filter(|r| r[0]["status"] == "rejected").count();
    assert_eq!(refused, 1, "{answers:?}");

    let (status, quarantine) = api.call("GET", "/api/v1/quarantine", Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{quarantine}");
    let listed = quarantine["events"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{quarantine}");
    assert_eq!(listed[0]["event_id"], "boom");
    assert_eq!(listed[0]["type"], "page.viewed");
    assert_eq!(listed[0]["body"]["customer"]["id"], "ann");
    assert!(listed[0]["reason"].as_str().unwrap().contains("injected"));

    let ids = stored_ids(&api).await;
    assert!(!ids.contains(&"boom".to_owned()), "{ids:?}");
    for id in ["a", "b", "k3", "m0", "m19"] {
        assert!(ids.contains(&id.to_owned()), "{id} missing from {ids:?}");
    }
    // The promise the case made was recorded after the panic, in the same request.
    let (_, promises) = api.call("GET", "/api/v1/journeys/retail/promises", Value::Null).await;
    assert_eq!(promises["promises"].as_array().unwrap().len(), 1, "{promises}");
    // Once the bug is gone, the same event is stored.
    api.store.set_fault(None);
    assert_eq!(api.ingest(json!([page_view("boom")])).await[0]["status"], "accepted");
}

/// The promise clock looks at every due promise each second: one whose change
/// fails would stop it for all. It is taken off the clock instead, in the quarantine.
#[tokio::test]
async fn a_promise_whose_change_panics_leaves_the_clock_running() {
    let api = TestApi::new(Some(retail_map()));
    let results = api
        .ingest(json!([
            case_opened("k8", "2026-11-23T09:00:00Z"),
            case_opened("k9", "2026-11-23T09:00:00Z")
        ]))
        .await;
    assert!(results.iter().all(|r| r["status"] == "accepted"), "{results:?}");
    api.store.set_fault(Some(Arc::new(|event: &troth_core::ValidEvent| {
        if event.event_type == "promise.broken" && event.raw.contains("k9") {
            panic!("a clock bug, injected");
        }
    })));
    let later = troth_core::Timestamp::parse("2026-12-31T00:00:00Z").unwrap();
    assert_eq!(api.store.tick(later).await.unwrap(), 1, "k8's promise broke");
    assert_eq!(api.store.tick(later).await.unwrap(), 0, "k9's is off the clock");
    let (_, quarantine) = api.call("GET", "/api/v1/quarantine", Value::Null).await;
    assert_eq!(quarantine["events"][0]["stage"], "clock", "{quarantine}");
    assert!(
        quarantine["events"][0]["event_id"].as_str().unwrap().contains("k9"),
        "{quarantine}"
    );
    let (_, promises) = api
        .call("GET", "/api/v1/journeys/retail/promises?state=broken", Value::Null)
        .await;
    assert_eq!(promises["promises"].as_array().unwrap().len(), 1, "{promises}");
    assert_eq!(api.ingest(json!([page_view("after")])).await[0]["status"], "accepted");
}
