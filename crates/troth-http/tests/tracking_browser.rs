//! The customer's tracking page in a real browser: a stage change, the driver, the
//! driver moving and the estimated arrival changing, all without a reload.
//! Skipped (with a message) when Chromium is not installed, except in CI. See
//! docs/browser-tests.md.

use std::time::Duration;

use serde_json::{Value, json};
use troth_browser_test::{Browser, http};
use troth_core::Timestamp;
use troth_http::{AppState, app};
use troth_store::sqlite::SqliteStore;

fn at(offset_minutes: i64) -> String {
    Timestamp(Timestamp::now().0 + offset_minutes * 60_000_000).to_string()
}

fn event(id: &str, event_type: &str, time: String, subject: &str, data: Value) -> Value {
    json!({"id": id, "type": event_type, "time": time, "subject": subject,
           "customer": {"email": "ann@example.org"}, "data": data})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tracking_page_follows_the_stage_the_driver_and_the_estimate_without_reloading() {
    let Some(browser) = Browser::launch().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app(AppState::new(store, None));
    tokio::spawn(async move { axum::serve(listener, router).await });
    let url = |path: &str| format!("http://{addr}{path}");

    let reply = http::post_json(
        &url("/api/v1/events"),
        &json!([
            event("placed", "order.placed", at(-600), "order:o-1",
                json!({"order": "o-1", "items": [{"sku": "a", "qty": 1, "price": 100}], "total": 100, "currency": "EUR", "delivery": "home"})),
            event("created", "shipment.created", at(-500), "shipment:s-1",
                json!({"shipment": "s-1", "order": "o-1", "carrier": "fast", "service": "standard"})),
            event("handed", "shipment.handed_over", at(-400), "shipment:s-1", json!({})),
        ]),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let link = http::post_json(&url("/api/v1/shipments/s-1/tracking-link"), &json!({})).await;
    let token = link.json()["token"].as_str().unwrap().to_owned();

    browser.goto(&url(&format!("/t/{token}"))).await;
    assert_eq!(browser.text("#stage").await, "Handed over to the carrier");
    browser
        .execute("window.trothMarker = 'same page'; return true;", Vec::new())
        .await;

    let reply = http::post_json(
        &url("/api/v1/events"),
        &json!([
            event("out", "shipment.out_for_delivery", at(-2), "shipment:s-1",
                json!({"driver": "d-1", "stops_before": 3, "lat": 52.52, "lon": 13.40})),
            {"id": "pos", "type": "courier.position", "time": at(-1), "subject": "driver:d-1",
             "data": {"lat": 52.51, "lon": 13.38}},
        ]),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);

    browser.wait_for_text("#stage", |t| t == "Out for delivery").await;
    browser
        .wait_for(
            "the driver on the map",
            Duration::from_secs(15),
            "return !document.getElementById('map').hidden && document.getElementById('driver') !== null;",
        )
        .await;
    assert_eq!(browser.text("#stops-text").await, "3");
    let stages: Vec<String> = {
        let mut texts = Vec::new();
        for li in browser.find_all("#stages li").await {
            texts.push(li.attribute("data-stage").await.unwrap());
        }
        texts
    };
    assert_eq!(stages, ["placed", "handed_over", "out_for_delivery"]);

    // An estimate appears with the driver: three stops before this one.
    browser
        .wait_for(
            "an estimated arrival",
            Duration::from_secs(15),
            "return !document.getElementById('eta').hidden && document.getElementById('eta-text').textContent !== '';",
        )
        .await;
    // The text is for people (in the customer's zone); the instant is in `datetime`.
    let eta_at = "return document.getElementById('eta-text').getAttribute('datetime');";
    let first_eta = browser.execute(eta_at, Vec::new()).await.as_str().unwrap().to_owned();
    let marker =
        "var d = document.getElementById('driver'); return d ? d.getAttribute('cx') + ',' + d.getAttribute('cy') : '';";
    let first_marker = browser.execute(marker, Vec::new()).await.as_str().unwrap().to_owned();

    // The driver drives on, reporting through the positions API: the marker moves.
    let reply = http::post_json(
        &url("/api/v1/drivers/d-1/positions"),
        &json!([{"lat": 52.515, "lon": 13.39, "at": at(0), "speed_kmh": 30.0}]),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    browser
        .wait_for(
            "the marker to move",
            Duration::from_secs(15),
            &format!(
                "{} return now !== '' && now !== {first_marker:?};",
                marker.replace("return", "var now =")
            ),
        )
        .await;

    // The driver is on the last leg to this customer: the estimate comes forward.
    let reply = http::post_json(
        &url("/api/v1/events"),
        &json!([event("arriving", "shipment.arriving", at(0), "shipment:s-1", json!({}))]),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    browser
        .wait_for(
            "the estimate to change",
            Duration::from_secs(15),
            &format!("return document.getElementById('eta-text').getAttribute('datetime') !== {first_eta:?};"),
        )
        .await;
    let eta = |text: &str| Timestamp::parse_rfc3339(text).unwrap();
    let now_eta = browser.execute(eta_at, Vec::new()).await.as_str().unwrap().to_owned();
    let (before, after) = (eta(&first_eta), eta(&now_eta));
    assert!(
        after < before,
        "arriving brings the estimate forward: {first_eta} → {after:?}"
    );

    assert_eq!(
        browser.execute("return window.trothMarker;", Vec::new()).await,
        "same page",
        "the page changed without a reload"
    );
    browser.quit().await;
}
