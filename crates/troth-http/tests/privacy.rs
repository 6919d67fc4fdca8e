//! A customer's rights over their data: the export hands over everything troth
//! holds about them; the erasure leaves their personal data in no file of the
//! data directory (WAL and free pages included), while counts and journey health
//! stay as they were and a rebuild from the log still matches the projections.

mod common;

use std::path::Path;

use axum::http::StatusCode;
use common::{TestApi, retail_map};
use serde_json::{Value, json};
use tower::ServiceExt;

const ANN: &str = "ann.erase@example.org";
const BOB: &str = "bob.keep@example.org";
const PHOTO: &str = "0123456789abcdef0123456789abcdef.jpg";

fn journey_of(email: &str, name: &str, phone: &str, n: &str) -> Value {
    let (city, lat) = if n == "a" {
        ("Quistmoor", 51.123456)
    } else {
        ("Stonebridge", 52.654321)
    };
    let customer = json!({"email": email});
    json!([
        {"id": format!("{n}-id"), "type": "customer.identified", "time": "2026-11-20T09:00:00Z",
         "customer": {"email": email, "phone": phone}, "data": {"traits": {"name": name, "city": city}}},
        {"id": format!("{n}-order"), "type": "order.placed", "time": "2026-11-20T09:05:00Z", "customer": customer,
         "subject": format!("order:o-{n}"), "touchpoint": "checkout",
         "data": {"order": format!("o-{n}"), "items": [{"sku": "kettle", "qty": 1, "price": 4990}], "total": 4990,
                  "currency": "EUR", "delivery": "home",
                  "promised_from": "2026-11-22T08:00:00Z", "promised_to": "2026-11-22T18:00:00Z"}},
        {"id": format!("{n}-ship"), "type": "shipment.created", "time": "2026-11-21T09:00:00Z", "customer": customer,
         "subject": format!("shipment:s-{n}"),
         "data": {"shipment": format!("s-{n}"), "order": format!("o-{n}"), "carrier": "swiftpost", "service": "standard"}},
        {"id": format!("{n}-safe"), "type": "shipment.safe_place_set", "time": "2026-11-21T10:00:00Z", "customer": customer,
         "subject": format!("shipment:s-{n}"), "data": {"place": format!("behind {name}'s blue shed"), "photo": PHOTO}},
        {"id": format!("{n}-out"), "type": "shipment.out_for_delivery", "time": "2026-11-22T08:00:00Z", "customer": customer,
         "subject": format!("shipment:s-{n}"), "data": {"driver": "d-7", "lat": lat, "lon": -0.654321}},
        {"id": format!("{n}-late"), "type": "shipment.delivered", "time": "2026-11-22T19:30:00Z", "customer": customer,
         "subject": format!("shipment:s-{n}"), "data": {"proof": {"kind": "safe_place"}}},
        {"id": format!("{n}-review"), "type": "review.posted", "time": "2026-11-23T10:00:00Z", "customer": customer,
         "data": {"rating": 2, "text": format!("{name} here: late again"), "site": "trustpilot"}},
        {"id": format!("{n}-survey"), "type": "survey.answered", "time": "2026-11-23T11:00:00Z", "customer": customer,
         "touchpoint": "delivery", "data": {"survey": "post-delivery", "nps": 3, "comment": format!("call {phone}")}}
    ])
}

/// Every file under `dir` whose bytes hold `needle`.
fn files_holding(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_holding(&path, needle));
        } else if let Ok(bytes) = std::fs::read(&path)
            && bytes
                .windows(needle.len())
                .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
        {
            found.push(path.display().to_string());
        }
    }
    found
}

async fn finished(api: &TestApi, location: &str) -> Value {
    // An erasure is a background job with no position to wait on: its state is asked.
    for _ in 0..3_000 {
        let (status, erasure) = api.call("GET", location, Value::Null).await;
        assert_eq!(status, StatusCode::OK, "{erasure}");
        if erasure["state"] != "running" {
            return erasure;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the erasure did not finish in 30 s");
}

#[tokio::test]
async fn the_export_holds_every_event_row_and_read_of_the_customer_and_no_one_else() {
    let api = TestApi::new(Some(retail_map()));
    api.ingest(journey_of(ANN, "Annabel Quist", "+44 7700 900111", "a"))
        .await;
    api.ingest(journey_of(BOB, "Bob Stone", "+44 7700 900222", "b")).await;
    let (status, _) = api
        .call("GET", &format!("/api/v1/customers/email:{ANN}/story"), Value::Null)
        .await;
    assert_eq!(status, StatusCode::OK);

    let (status, archive) = api
        .call("GET", &format!("/api/v1/customers/email:{ANN}/export"), Value::Null)
        .await;
    assert_eq!(status, StatusCode::OK, "{archive}");
    let ids: Vec<&str> = archive["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["id"].as_str())
        .collect();
    for id in [
        "a-id", "a-order", "a-ship", "a-safe", "a-out", "a-late", "a-review", "a-survey",
    ] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    // The promise engine's events about Ann's delivery window are hers too.
    assert!(ids.iter().any(|id| id.starts_with("troth.")), "{ids:?}");
    let projections = &archive["projections"];
    assert_eq!(projections["customers"][0]["traits"]["name"], "Annabel Quist");
    assert_eq!(projections["shipments"][0]["id"], "s-a");
    assert!(!projections["promises"].as_array().unwrap().is_empty(), "{projections}");
    assert_eq!(archive["reads"][0]["what"], "story");
    let text = archive.to_string();
    assert!(!text.contains(BOB) && !text.contains("Bob Stone"), "{text}");

    let (status, problem) = api
        .call("GET", "/api/v1/customers/email:nobody@example.org/export", Value::Null)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
}

#[tokio::test]
async fn an_erased_customer_is_in_no_file_yet_counts_health_and_replay_stay() {
    let mut api = TestApi::new(Some(retail_map()));
    let uploads = api.dir().join("uploads");
    std::fs::create_dir_all(&uploads).unwrap();
    std::fs::write(uploads.join(PHOTO), b"a photo of Ann's shed").unwrap();
    api.uploads(&uploads);
    api.ingest(journey_of(ANN, "Annabel Quist", "+44 7700 900111", "a"))
        .await;
    api.ingest(journey_of(BOB, "Bob Stone", "+44 7700 900222", "b")).await;
    let health = "/api/v1/journeys/retail/health?from=2026-11-01T00:00:00Z&to=2026-12-01T00:00:00Z";
    let (_, health_before) = api.call("GET", health, Value::Null).await;
    let (_, events_before) = api.call("GET", "/api/v1/events?limit=1000", Value::Null).await;
    let (_, ann_before) = api
        .call("GET", &format!("/api/v1/customers/email:{ANN}"), Value::Null)
        .await;
    for needle in [ANN, "Annabel", "Quistmoor", "900111", "Quist's blue shed"] {
        assert!(
            !files_holding(api.dir(), needle).is_empty(),
            "{needle} should be stored before"
        );
    }

    // Only the admin scope erases.
    let agent = api.key(&["agent"]).await;
    let request = axum::http::Request::delete(format!("/api/v1/customers/email:{ANN}"))
        .header("authorization", format!("Bearer {agent}"))
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(api.send(request).await.0, StatusCode::FORBIDDEN);

    let (status, started) = api
        .call("DELETE", &format!("/api/v1/customers/email:{ANN}"), Value::Null)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    assert_eq!(started["customer"], "cus_1");
    let erasure = finished(&api, &format!("/api/v1/erasures/{}", started["id"].as_str().unwrap())).await;
    assert_eq!(erasure["state"], "done", "{erasure}");
    assert_eq!(erasure["requested_by"], "master");
    assert_eq!(erasure["uploads"], 1, "{erasure}");
    assert_eq!(erasure["identities"], 2, "email and phone: {erasure}");
    assert!(erasure["events"].as_u64().unwrap() >= 8, "{erasure}");

    for needle in [ANN, "Annabel", "Quistmoor", "900111", "Quist's blue shed", "51.123456"] {
        assert_eq!(
            files_holding(api.dir(), needle),
            Vec::<String>::new(),
            "{needle} is still stored"
        );
    }
    // The scan does find what was kept: Bob is untouched.
    for needle in [BOB, "Bob Stone", "900222", "Stonebridge"] {
        assert!(!files_holding(api.dir(), needle).is_empty(), "{needle} should be kept");
    }
    assert!(!uploads.join(PHOTO).exists());

    // Counts and health are what they were; the customer is anonymous but whole.
    let (_, health_after) = api.call("GET", health, Value::Null).await;
    assert_eq!(health_after, health_before);
    let (_, events_after) = api.call("GET", "/api/v1/events?limit=1000", Value::Null).await;
    assert_eq!(
        events_after["events"].as_array().unwrap().len(),
        events_before["events"].as_array().unwrap().len()
    );
    let (status, _) = api
        .call("GET", &format!("/api/v1/customers/email:{ANN}"), Value::Null)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, erased) = api.call("GET", "/api/v1/customers/cus_1", Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{erased}");
    assert_eq!(erased["events"], ann_before["events"], "{erased}");
    assert!(erased["traits"].as_object().unwrap().is_empty(), "{erased}");
    assert!(erased.to_string().contains("erased.invalid"), "{erased}");

    let store = api.store.clone();
    let report = tokio::task::spawn_blocking(move || store.replay(false, &mut |_| {}))
        .await
        .unwrap()
        .unwrap();
    assert!(report.matches(), "{:?}", report.differences);
}

/// An erasure takes the customer's tracking links away, and with them the live
/// streams of their pages, which stop at once rather than at their next full read.
#[tokio::test]
async fn an_erasure_ends_the_customers_live_tracking_streams() {
    let api = TestApi::new(Some(retail_map()));
    api.ingest(journey_of(ANN, "Annabel Quist", "+44 7700 900111", "a"))
        .await;
    let (status, link) = api
        .call("POST", "/api/v1/shipments/s-a/tracking-link", Value::Null)
        .await;
    assert_eq!(status, StatusCode::OK, "{link}");
    let token = link["token"].as_str().unwrap();
    let response = api
        .router
        .clone()
        .oneshot(
            axum::http::Request::get(format!("/api/v1/track/{token}/events"))
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body().into_data_stream();
    use futures_util::StreamExt;
    let wait = std::time::Duration::from_secs(10);
    let mut seen = String::new();
    while !seen.contains("event: tracking") {
        let chunk = tokio::time::timeout(wait, body.next()).await.expect("no first view");
        seen.push_str(&String::from_utf8_lossy(&chunk.unwrap().unwrap()));
    }

    let (status, started) = api
        .call("DELETE", &format!("/api/v1/customers/email:{ANN}"), Value::Null)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    let erasure = finished(&api, &format!("/api/v1/erasures/{}", started["id"].as_str().unwrap())).await;
    assert_eq!(erasure["state"], "done", "{erasure}");
    while let Some(chunk) = tokio::time::timeout(wait, body.next())
        .await
        .expect("the stream is still open 10 s after the erasure")
    {
        chunk.unwrap();
    }
}
