//! The customer's tracking page in a real browser: a stage change, the driver, the
//! driver moving and the estimated arrival changing, all without a reload.
//! Skipped (with a message) when Chromium is not installed, except in CI. See
//! docs/browser-tests.md.

mod common;

use std::time::Duration;

use serde_json::{Value, json};
use troth_browser_test::{Browser, http};
use troth_core::Timestamp;
use troth_http::AppState;
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
    let router = common::settled_app(AppState::new(store, None));
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
    assert_eq!(browser.text("#stops-text").await, "3 stops before yours");
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

/// Saves what the browser shows into `TROTH_SCREENSHOTS` (a directory), when set,
/// for a person to look at.
async fn screenshot(browser: &Browser, name: &str) {
    if let Some(dir) = std::env::var_os("TROTH_SCREENSHOTS") {
        browser.screenshot(&std::path::Path::new(&dir).join(name)).await;
    }
}

/// The tile requests a test's tile server saw: (path, `Referer`).
type TileRequests = std::sync::Arc<std::sync::Mutex<Vec<(String, Option<String>)>>>;

/// A tile server for the test: an SVG square for every tile, and a record of what
/// each request said it came from (`Referer`).
async fn tile_server() -> (std::net::SocketAddr, TileRequests) {
    use axum::http::{HeaderMap, Uri, header};
    let seen = TileRequests::default();
    let record = seen.clone();
    let router = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
        let record = record.clone();
        async move {
            let referer = headers
                .get(header::REFERER)
                .and_then(|r| r.to_str().ok())
                .map(str::to_owned);
            record.lock().unwrap().push((uri.path().to_owned(), referer));
            (
                [(header::CONTENT_TYPE, "image/svg+xml")],
                r##"<svg xmlns="http://www.w3.org/2000/svg" width="256" height="256"><rect width="256" height="256" fill="#cfe3c7" stroke="#9ab" /></svg>"##,
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (addr, seen)
}

/// Where an element of the map is on screen, relative to the map's frame, as a script.
const PLACES: &str = r#"
    var frame = document.querySelector('#map .map').getBoundingClientRect();
    function at(css) {
      var el = document.querySelector(css);
      if (!el) return null;
      var r = el.getBoundingClientRect();
      return {x: r.left + r.width / 2 - frame.left, y: r.top + r.height / 2 - frame.top, w: r.width, h: r.height};
    }
    return {frame: {w: frame.width, h: frame.height}, home: at('#home'), driver: at('#driver'),
            trail: (document.querySelector('#trail') || {getAttribute: function () { return ''; }}).getAttribute('points'),
            scale: document.querySelector('#map-scale text').textContent,
            stops: document.getElementById('map-stops').textContent,
            inner: window.innerWidth, scroll: document.documentElement.scrollWidth};
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_map_fits_a_phone_and_a_desktop_with_the_address_the_driver_and_tiles_from_the_configured_server() {
    let Some(browser) = Browser::launch().await else { return };
    let (tiles_addr, tile_requests) = tile_server().await;
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = troth_http::tracking::TrackingConfig {
        tile_url: Some(format!("http://{tiles_addr}/{{z}}/{{x}}/{{y}}.svg")),
        ..Default::default()
    };
    let router = common::settled_app(AppState::new(store, None).with_tracking(config));
    tokio::spawn(async move { axum::serve(listener, router).await });
    let url = |path: &str| format!("http://{addr}{path}");

    let position = |id: &str, minutes: i64, lat: f64| {
        json!({"id": id, "type": "courier.position", "time": at(minutes), "subject": "driver:d-1",
               "data": {"lat": lat, "lon": 13.39}})
    };
    let reply = http::post_json(
        &url("/api/v1/events"),
        &json!([
            event("placed", "order.placed", at(-600), "order:o-1",
                json!({"order": "o-1", "items": [{"sku": "a", "qty": 1, "price": 100}], "total": 100, "currency": "EUR", "delivery": "home"})),
            event("created", "shipment.created", at(-500), "shipment:s-1",
                json!({"shipment": "s-1", "order": "o-1", "carrier": "fast", "service": "standard"})),
            event("out", "shipment.out_for_delivery", at(-30), "shipment:s-1",
                json!({"driver": "d-1", "stops_before": 2, "lat": 52.52, "lon": 13.405})),
            position("p-1", -5, 52.500),
            position("p-2", -3, 52.505),
            position("p-3", -1, 52.510),
        ]),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let link = http::post_json(&url("/api/v1/shipments/s-1/tracking-link"), &json!({})).await;
    let token = link.json()["token"].as_str().unwrap().to_owned();

    for (width, height) in [(390, 844), (1366, 900)] {
        browser.set_window_size(width, height).await;
        browser.goto(&url(&format!("/t/{token}"))).await;
        browser
            .wait_for(
                "the map with the address and the driver",
                Duration::from_secs(15),
                "return !document.getElementById('map').hidden && !!document.getElementById('home') && !!document.getElementById('driver');",
            )
            .await;
        let seen = browser.execute(PLACES, Vec::new()).await;
        assert_eq!(seen["inner"], width, "the viewport took the size: {seen}");
        assert!(
            seen["scroll"].as_f64().unwrap() <= seen["inner"].as_f64().unwrap(),
            "no sideways scrolling at {width}×{height}: {seen}"
        );
        let (w, h) = (
            seen["frame"]["w"].as_f64().unwrap(),
            seen["frame"]["h"].as_f64().unwrap(),
        );
        assert!(w > 250.0 && (w / h - 1.2).abs() < 0.02, "a 6:5 map: {seen}");
        for marker in ["home", "driver"] {
            let m = &seen[marker];
            let (x, y) = (m["x"].as_f64().unwrap(), m["y"].as_f64().unwrap());
            assert!(
                x > 0.0 && x < w && y > 0.0 && y < h && m["w"].as_f64().unwrap() >= 10.0,
                "the {marker} marker is drawn inside the map at {width}×{height}: {seen}"
            );
        }
        // The driver is south of the address, as on the ground.
        assert!(seen["driver"]["y"].as_f64() > seen["home"]["y"].as_f64(), "{seen}");
        assert_eq!(seen["trail"].as_str().unwrap().split(' ').count(), 3, "{seen}");
        assert_eq!(seen["stops"], "2 stops before yours");
        let scale = seen["scale"].as_str().unwrap();
        assert!(scale.ends_with(" m") || scale.ends_with(" km"), "{seen}");
        // The tiles load from the configured server (the page's policy allows it) and are attributed.
        browser
            .wait_for(
                "a tile drawn",
                Duration::from_secs(15),
                "return Array.prototype.some.call(document.querySelectorAll('#map-tiles img'), function (i) { return i.complete && i.naturalWidth > 0; });",
            )
            .await;
        let credit = browser.find("#map-attribution a").await;
        assert_eq!(credit.text().await, "© OpenStreetMap contributors");
        assert_eq!(
            credit.attribute("href").await.as_deref(),
            Some("https://www.openstreetmap.org/copyright")
        );
        screenshot(&browser, &format!("tracking-map-{width}x{height}.png")).await;
    }
    {
        let requests = tile_requests.lock().unwrap();
        assert!(requests.iter().all(|(path, _)| path.ends_with(".svg")) && !requests.is_empty());
        // The tile server learns which page's origin asked, never the token.
        for (path, referer) in requests.iter() {
            assert_eq!(referer.as_deref(), Some(format!("http://{addr}/").as_str()), "{path}");
        }
    }

    // The driver moves on: track.js moves the marker and extends the trail, with the
    // same geometry as the server (reloaded, the page draws the driver in the same
    // place relative to the address).
    let before = browser.execute(PLACES, Vec::new()).await;
    let reply = http::post_json(
        &url("/api/v1/drivers/d-1/positions"),
        &json!([{"lat": 52.514, "lon": 13.40, "at": at(0), "speed_kmh": 30.0}]),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let live = browser
        .wait_for(
            "the trail to grow",
            Duration::from_secs(15),
            &format!(
                "var seen = (function () {{ {PLACES} }})(); return seen.trail.split(' ').length === 4 ? seen : null;"
            ),
        )
        .await;
    assert_ne!(live["driver"], before["driver"], "{live}");
    screenshot(&browser, "tracking-map-live.png").await;
    browser.goto(&url(&format!("/t/{token}"))).await;
    let served = browser.execute(PLACES, Vec::new()).await;
    let offset =
        |seen: &Value, axis: &str| seen["driver"][axis].as_f64().unwrap() - seen["home"][axis].as_f64().unwrap();
    for axis in ["x", "y"] {
        assert!(
            (offset(&live, axis) - offset(&served, axis)).abs() < 1.0,
            "the script and the server place the driver alike ({axis}): live {live} served {served}"
        );
    }
    browser.quit().await;
}
