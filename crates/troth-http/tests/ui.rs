//! The web pages, rendered from real events.

mod common;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;
use troth_http::AppState;
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
    seeded_in(master_key, troth_http::tracking::Zone::utc()).await
}

/// The store seeded with [`events`], its pages served for a retailer in `zone`.
async fn seeded_in(master_key: Option<&str>, zone: troth_http::tracking::Zone) -> (tempfile::TempDir, axum::Router) {
    let dir = tempfile::tempdir().unwrap();
    let journey = troth_core::journey::parse_journey(include_str!("../../../journeys/retail.toml")).unwrap();
    let store = SqliteStore::open_with_journey(dir.path(), Some(&journey)).unwrap();
    let state = AppState::new(store, master_key.map(str::to_owned))
        .with_journey(journey)
        .with_tracking(troth_http::tracking::TrackingConfig {
            timezone: zone,
            ..Default::default()
        });
    let router = common::settled_app(state);
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
async fn staff_pages_give_times_in_the_retailers_zone_and_name_it() {
    let (_dir, router) = seeded_in(None, troth_http::tracking::Zone::named("Europe/Paris").unwrap()).await;
    let (status, _, shipment) = get(&router, "/ui/shipments/s1", None).await;
    assert_eq!(status, StatusCode::OK);
    // 11:37–12:37 UTC in November is 12:37–13:37 in Paris (CET, UTC+1).
    assert!(
        shipment.contains("Window: <strong>2026-11-23 12:37–13:37 CET</strong>"),
        "{shipment}"
    );
    assert!(!shipment.contains(" UTC<"), "no time is left in UTC: {shipment}");
    let (status, _, customer) = get(&router, "/ui/customers/ann", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(customer.contains(" CET"), "{customer}");
    assert!(!customer.contains(" UTC<"), "{customer}");
}

#[tokio::test]
async fn pages_show_what_the_events_say() {
    let (_dir, router) = seeded(None).await;
    let (status, _, overview) = get(&router, "/", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        overview.contains(r#"id="totals">8 events from 1 customer stored"#),
        "{overview}"
    );
    assert!(
        !overview.contains("courier.position"),
        "the overview is not a log of raw events"
    );

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
    assert!(shipment.contains("Out for delivery, 4 stops before it on leaving"));
    assert!(
        shipment.contains("Window: <strong>2026-11-23 11:37–12:37 UTC</strong>"),
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
        journey.contains(r#"<h2>Receive and use<span class="subtitle">Second moment of truth</span></h2>"#),
        "{journey}"
    );
    let delivery_window = heat_map_cell(&journey, "delivery_window");
    assert!(
        delivery_window.contains("<strong>The one-hour delivery window</strong>")
            && delivery_window.contains(r#"<span class="owners">Logistics</span>"#),
        "{delivery_window}"
    );
    assert!(
        delivery_window.contains(r#"<b data-f="exposure">2</b> exposures"#),
        "the shipment created and its window are exposure: {delivery_window}"
    );

    let (status, _, _) = get(&router, "/ui/shipments/nope", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, docs) = get(&router, "/docs", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(docs.contains("<code>/api/v1/events/ndjson</code>"));
    let at = |marker: &str| docs.find(marker).unwrap_or_else(|| panic!("no {marker}"));
    assert!(
        at(r#"<h2 id="events">"#) < at(r#"<h2 id="journeys">"#)
            && at(r#"<h2 id="journeys">"#) < at(r#"<h2 id="keys">"#),
        "grouped by area, in the order a user needs them"
    );
    assert!(
        at(r#"<span class="method">POST</span><code>/api/v1/events</code>"#)
            < at(r#"<span class="method">GET</span><code>/api/v1/events</code>"#),
        "sending comes before reading"
    );
    assert!(
        docs.contains(r#"<pre class="example">curl -X POST http://localhost:7878/api/v1/events"#),
        "a request example"
    );
    assert!(
        docs.contains(r#"<p class="example-label">Answer</p><pre class="example">{&quot;results&quot;"#),
        "and its answer"
    );
    assert!(!docs.contains('`'), "code spans are rendered, not shown as backticks");
    assert!(
        !docs.contains("200: <br>") && !docs.contains("<code>200</code> </li>"),
        "no empty status lines"
    );
}

#[tokio::test]
async fn with_a_master_key_pages_need_signing_in() {
    let (_dir, router) = seeded(Some("s3cret key")).await;
    let (status, location, _) = get(&router, "/ui/customers/ann", None).await;
    assert_eq!((status, location.as_deref()), (StatusCode::SEE_OTHER, Some("/login")));
    // The key itself in a cookie (how pages once signed in) opens nothing.
    let (status, _, _) = get(&router, "/", Some("troth_key=s3cret%20key")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let session = sign_in(&router, "s3cret key").await;
    let (status, _, page) = get(&router, "/ui/customers/ann", Some(&format!("other=1; {session}"))).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let (status, _, _) = get(&router, "/docs", None).await;
    assert_eq!(status, StatusCode::OK, "the API reference is public");
}

/// Signs in with `key` as a browser would; returns the session's cookie.
async fn sign_in(router: &Router, key: &str) -> String {
    let response = router
        .clone()
        .oneshot(
            Request::post("/login")
                .header(header::HOST, "troth.example")
                .header(header::ORIGIN, "https://troth.example")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(format!("key={}", key.replace(' ', "+"))))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "signed in");
    let cookie = response.headers()[header::SET_COOKIE].to_str().unwrap();
    cookie.split(';').next().unwrap().to_owned()
}

/// The markup of one heat-map cell, found by its touchpoint key.
fn heat_map_cell<'a>(page: &'a str, touchpoint: &str) -> &'a str {
    let page = &page[page.find(r#"<div id="heatmap""#).expect("a heat map")..];
    let start = page
        .find(&format!(r#"data-touchpoint="{touchpoint}""#))
        .unwrap_or_else(|| panic!("no cell for {touchpoint}: {page}"));
    let start = page[..start].rfind("<a ").unwrap();
    let end = start + page[start..].find("</a>").unwrap();
    &page[start..end]
}

async fn post_events(router: &axum::Router, events: Value) {
    let response = router
        .clone()
        .oneshot(
            Request::builder()
                .method("POST")
                .uri("/api/v1/events")
                .body(Body::from(events.to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

/// A window missed for a customer whose id needs escaping, and a survey answer.
async fn with_a_broken_window(router: &axum::Router) {
    let customer = json!({"id": "o'neil<&>"});
    post_events(
        router,
        json!([
            {"id": "b1", "type": "shipment.created", "time": "2026-11-24T08:00:00Z", "customer": customer,
             "subject": "shipment:s<9>", "data": {"shipment": "s<9>", "order": "o9", "carrier": "swiftpost", "service": "standard"}},
            {"id": "b2", "type": "shipment.window_set", "time": "2026-11-24T08:10:00Z", "customer": customer,
             "subject": "shipment:s<9>", "data": {"window_start": "2026-11-24T10:00:00Z", "window_end": "2026-11-24T11:00:00Z"}},
            {"id": "b3", "type": "shipment.attempt_failed", "time": "2026-11-24T10:30:00Z", "customer": customer,
             "subject": "shipment:s<9>", "data": {"reason": "nobody home"}},
            {"id": "b4", "type": "survey.answered", "time": "2026-11-24T12:00:00Z", "customer": customer,
             "data": {"survey": "post-delivery", "touchpoint": "delivery_window", "nps": 2, "csat": 1}},
        ]),
    )
    .await;
}

#[tokio::test]
async fn the_heat_map_shows_the_days_asked_for() {
    let (_dir, router) = seeded(None).await;
    with_a_broken_window(&router).await;

    // By default: the last 7 days of data, ending on the day of the newest event.
    let (status, _, page) = get(&router, "/ui/journeys/retail", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(r#"name="from" value="2026-11-18""#), "{page}");
    assert!(page.contains(r#"name="to" value="2026-11-24""#));
    let cell = heat_map_cell(&page, "delivery_window");
    assert!(
        cell.contains("class=\"cell h-bad\""),
        "a broken window is a weakest link, and its card says so: {cell}"
    );
    assert!(cell.contains(r#"<b data-f="exposure">4</b>"#), "{cell}");
    assert!(
        cell.contains(r#"kept <b data-f="kept_rate">0 %</b> of <b data-f="settled">1</b> <span class="small-sample""#)
    );
    assert!(
        cell.contains(r#"NPS <b data-f="nps">-100</b> <span class="small-sample" title="fewer than 30 — read with care">⚠ from 1 answers</span>"#),
        "an NPS from one answer carries a warning: {cell}"
    );
    assert!(
        cell.contains(r#"href="/ui/journeys/retail/touchpoints/delivery_window?from=2026-11-18&amp;to=2026-11-24""#)
    );
    let review = heat_map_cell(&page, "review");
    assert!(
        review.contains("h-bad")
            && review.contains(r#"failed <b data-f="failure_rate">100 %</b> of <b data-f="outcomes">1</b> outcomes"#)
            && !review.contains("NPS"),
        "a one-star review is a failed outcome, as the ranking counts it; no NPS to show: {review}"
    );
    let find = heat_map_cell(&page, "find");
    assert!(find.contains("h-none"), "nothing measured: {find}");
    assert!(page.contains(r#"<script src="/assets/journey.js" defer></script>"#));
    assert!(
        !page.contains("http-equiv=\"refresh\""),
        "the script refreshes, not the browser"
    );
    // The broken window is the weakest link, named with its owners and what failed.
    let links = &page[page
        .find(r#"<section id="weakest-links">"#)
        .expect("a weakest-links section")..];
    let first = &links[links.find("<li").unwrap()..links.find("</li>").unwrap()];
    assert!(first.contains(r#"data-touchpoint="delivery_window""#), "{first}");
    assert!(first.contains("The one-hour delivery window") && first.contains("owned by Logistics"));
    assert!(
        first.contains("100% of 1 promises broken (target: at most 5%)"),
        "{first}"
    );
    assert!(page.contains(r#"<section id="chasm">"#) && page.contains(r#"id="chasm-cohort""#));
    assert!(
        page.find(r#"<section id="weakest-links">"#) < page.find(r#"<div id="heatmap""#),
        "the weakest links lead"
    );
    assert!(page.contains(r#"data-live-url="/ui/journeys/retail/live?from=2026-11-18&amp;to=2026-11-24""#));

    // One day only: the 23rd saw the first shipment, not the broken window.
    let (status, _, page) = get(&router, "/ui/journeys/retail?from=2026-11-23&to=2026-11-23", None).await;
    assert_eq!(status, StatusCode::OK);
    let cell = heat_map_cell(&page, "delivery_window");
    assert!(
        cell.contains(r#"<b data-f="exposure">2</b>"#) && cell.contains("h-none"),
        "{cell}"
    );

    for bad in [
        "from=23-11-2026",
        "from=2026-11-25&to=2026-11-24",
        "from=2026-01-01&to=2026-12-31",
        "days=3",
    ] {
        let (status, _, page) = get(&router, &format!("/ui/journeys/retail?{bad}"), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {page}");
        assert!(
            page.contains("<h1>Something went wrong</h1>"),
            "an error page, not JSON: {page}"
        );
    }
    let (status, _, _) = get(&router, "/ui/journeys/other", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_script_polls_the_same_cards_the_page_shows() {
    let (_dir, router) = seeded(None).await;
    with_a_broken_window(&router).await;
    let range = "from=2026-11-20&to=2026-11-24";
    let (status, _, page) = get(&router, &format!("/ui/journeys/retail?{range}"), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, live) = get(&router, &format!("/ui/journeys/retail/live?{range}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        live.starts_with(r#"<section id="weakest-links">"#),
        "a fragment: {live}"
    );
    assert!(page.contains(&live), "the page holds exactly what the script swaps in");

    let response = router
        .clone()
        .oneshot(
            Request::builder()
                .uri("/assets/journey.js")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/javascript; charset=utf-8"
    );
}

#[tokio::test]
async fn with_a_master_key_the_script_polls_with_the_sign_in_cookie() {
    let (_dir, router) = seeded(Some("k")).await;
    let (status, location, _) = get(&router, "/ui/journeys/retail/live", None).await;
    assert_eq!((status, location.as_deref()), (StatusCode::SEE_OTHER, Some("/login")));
    let session = sign_in(&router, "k").await;
    let (status, _, body) = get(&router, "/ui/journeys/retail/live", Some(&session)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains(r#"<div id="heatmap""#), "{body}");
}

#[tokio::test]
async fn a_touchpoint_drill_down_lists_its_days_owners_and_broken_promises() {
    let (_dir, router) = seeded(None).await;
    with_a_broken_window(&router).await;
    let (status, _, page) = get(
        &router,
        "/ui/journeys/retail/touchpoints/delivery_window?from=2026-11-22&to=2026-11-24",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("<h1>Touchpoint: The one-hour delivery window</h1>"),
        "{page}"
    );
    assert!(page.contains(r#"owned by <strong id="owners">Logistics</strong>"#));
    assert!(
        page.contains(r#"<div class="card h-bad"><div class="n">100 %</div>"#),
        "the one window was missed"
    );
    assert!(page.contains(r#"<svg class="trend" id="trend""#));
    assert_eq!(page.matches(r#"<rect class="exposure""#).count(), 3, "a bar per day");
    assert!(
        page.contains(r#"<tr><td>2026-11-24</td><td class="num">2</td><td class="num">0</td><td class="num">1</td><td class="num">100 %</td><td class="num">1</td><td class="num">100 %</td><td class="num">-100</td><td class="num">1.0</td></tr>"#),
        "{page}"
    );
    assert!(page.contains(r#"<tr><td>2026-11-23</td><td class="num">2</td><td class="num">0</td><td class="num">0</td><td class="num">–</td>"#));
    assert!(page.contains("<td>delivery_window</td><td><code>shipment.window_set</code></td><td>data.window_end</td>"));
    assert!(page.contains("Broken promises due in these days: 1"));
    let broken = &page[page.find(r#"<table id="broken-promises">"#).unwrap()..];
    assert!(
        broken.contains(r#"<a href="/ui/customers/o%27neil%3C%26%3E">o&#39;neil&lt;&amp;&gt;</a>"#),
        "the customer is linked and escaped: {broken}"
    );
    assert!(broken.contains(r#"<a href="/ui/shipments/s%3C9%3E">shipment:s&lt;9&gt;</a>"#));
    assert!(!page.contains("<9>") && !page.contains("o'neil<"), "nothing unescaped");
    assert!(
        page.contains(r#"<a href="/ui/journeys/retail/touchpoints/tracking_page?from=2026-11-22&amp;to=2026-11-24">"#)
    );

    // The customer the promise links to is the one the page shows.
    let (status, _, customer) = get(&router, "/ui/customers/o%27neil%3C%26%3E", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(customer.contains("(0 at risk, 1 broken)"), "{customer}");
    assert!(
        customer.contains("<h1>o&#39;neil&lt;&amp;&gt;</h1>"),
        "named by their own id: {customer}"
    );

    // Before the window was missed, nothing was broken.
    let (_, _, page) = get(
        &router,
        "/ui/journeys/retail/touchpoints/delivery_window?from=2026-11-23&to=2026-11-23",
        None,
    )
    .await;
    assert!(page.contains("Broken promises due in these days: 0") && !page.contains("<table id=\"broken-promises\">"));

    let (status, _, page) = get(&router, "/ui/journeys/retail/touchpoints/%3Cscript%3E", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!page.contains("<script>"), "{page}");
    let (status, _, _) = get(&router, "/ui/journeys/other/touchpoints/delivery_window", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = get(&router, "/ui/journeys/retail/touchpoints/delivery_window?to=nope", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// The number a page shows under `data-figure="{figure}"`, separators removed.
fn figure(page: &str, figure: &str) -> i64 {
    let at = page
        .find(&format!(r#"data-figure="{figure}""#))
        .unwrap_or_else(|| panic!("no figure {figure}: {page}"));
    let text = &page[at + page[at..].find('>').unwrap() + 1..];
    let text = &text[..text.find('<').unwrap()];
    text.replace(',', "")
        .trim_end_matches('+')
        .parse()
        .unwrap_or_else(|_| panic!("{figure} is not a count: {text:?}"))
}

/// How many promises the API lists for `query`, page by page.
async fn api_count(router: &Router, query: &str) -> i64 {
    let (mut n, mut after) = (0, String::new());
    loop {
        let (status, _, body) = get(
            router,
            &format!("/api/v1/journeys/retail/promises?{query}&limit=2{after}"),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let page: Value = serde_json::from_str(&body).unwrap();
        n += page["promises"].as_array().unwrap().len() as i64;
        match page["next"].as_str() {
            Some(next) => after = format!("&after={next}"),
            None => return n,
        }
    }
}

#[tokio::test]
async fn the_overviews_numbers_are_the_apis() {
    let dir = tempfile::tempdir().unwrap();
    let journey = troth_core::journey::parse_journey(include_str!("../../../journeys/retail.toml")).unwrap();
    let store = SqliteStore::open_with_journey(dir.path(), Some(&journey)).unwrap();
    let router = common::settled_app(AppState::new(store.clone(), None).with_journey(journey));
    post_events(&router, events()).await;
    with_a_broken_window(&router).await;
    // Windows of the week before, one kept and one missed, and cases: one resolved
    // in time, one resolved late, one still open past its 48-hour SLA.
    let window = |id: &str, day: u32, delivered: bool| {
        let subject = format!("shipment:{id}");
        let mut events = vec![
            json!({"id": format!("{id}-w"), "type": "shipment.window_set", "time": format!("2026-11-{day}T08:00:00Z"),
                   "customer": {"id": "bea"}, "subject": subject,
                   "data": {"window_start": format!("2026-11-{day}T10:00:00Z"), "window_end": format!("2026-11-{day}T11:00:00Z")}}),
        ];
        if delivered {
            events.push(json!({"id": format!("{id}-d"), "type": "shipment.delivered", "time": format!("2026-11-{day}T10:30:00Z"),
                               "subject": subject, "data": {"proof": {"kind": "signature"}}}));
        }
        events
    };
    let case = |id: &str, opened: &str, resolved: Option<&str>| {
        let mut events = vec![json!({"id": format!("{id}-o"), "type": "case.opened", "time": opened,
                                     "customer": {"id": "cy"}, "subject": format!("case:{id}"),
                                     "data": {"case": id, "team": "support", "category": "late_delivery"}})];
        if let Some(at) = resolved {
            events.push(json!({"id": format!("{id}-r"), "type": "case.resolved", "time": at,
                               "subject": format!("case:{id}"), "data": {"resolution": "refunded"}}));
        }
        events
    };
    let mut more = Vec::new();
    more.extend(window("k1", 12, true));
    more.extend(window("m1", 13, false));
    more.extend(window("k2", 19, true));
    more.extend(case("c1", "2026-11-20T09:00:00Z", Some("2026-11-20T15:00:00Z")));
    more.extend(case("c2", "2026-11-20T09:00:00Z", None));
    more.extend(case("c3", "2026-11-20T09:00:00Z", None));
    post_events(&router, Value::Array(more)).await;
    store
        .tick(troth_core::Timestamp::parse_rfc3339("2026-11-23T00:00:00Z").unwrap())
        .await
        .unwrap();
    // c3 is resolved after its SLA broke: late, but no longer open.
    post_events(
        &router,
        Value::Array(case("c3", "2026-11-20T09:00:00Z", Some("2026-11-23T01:00:00Z"))),
    )
    .await;

    let (status, _, page) = get(&router, "/?day=2026-11-24", None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let periods = [
        ("today", "2026-11-24", "2026-11-25"),
        ("week", "2026-11-18", "2026-11-25"),
        ("last_week", "2026-11-11", "2026-11-18"),
    ];
    let mut seen = 0;
    for (column, from, to) in periods {
        let range = format!("from={from}T00:00:00Z&to={to}T00:00:00Z");
        let mut due = 0;
        for state in ["kept", "broken", "at_risk", "made"] {
            let api = api_count(&router, &format!("state={state}&{range}")).await;
            assert_eq!(
                figure(&page, &format!("promises.{state}.{column}")),
                api,
                "{state} {column}"
            );
            due += api;
            seen += api;
        }
        assert_eq!(figure(&page, &format!("promises.due.{column}")), due, "{column}");
    }
    assert!(seen >= 4, "the test has figures to compare");
    assert_eq!(
        figure(&page, "promises.broken.today"),
        1,
        "the window missed on the 24th"
    );
    assert_eq!(figure(&page, "promises.kept.last_week"), 1);
    assert_eq!(figure(&page, "promises.broken.last_week"), 1);
    assert!(
        page.contains(r#"data-figure="promises.kept_rate.last_week">50 % <span class="small-sample""#),
        "a rate of 2 settled promises is flagged: {page}"
    );
    // Every number links to its list, and the list counts the same.
    assert!(page.contains(r#"href="/ui/promises?state=broken&amp;from=2026-11-24&amp;to=2026-11-24""#));
    let (status, _, list) = get(&router, "/ui/promises?state=broken&from=2026-11-24&to=2026-11-24", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(list.contains(r#"<strong id="count">1</strong> promise due"#), "{list}");
    assert!(list.contains(r#"<a href="/ui/shipments/s%3C9%3E">shipment:s&lt;9&gt;</a>"#));
    let (_, _, list) = get(&router, "/ui/promises?from=2026-11-11&to=2026-11-17", None).await;
    assert!(list.contains(r#"<strong id="count">2</strong> promises due"#), "{list}");

    // Cases: only c2 is open past its SLA.
    assert_eq!(figure(&page, "cases.breached"), 1);
    let (_, _, cases) = get(&router, "/ui/cases?state=broken", None).await;
    assert!(
        cases.contains("case:c2") && !cases.contains("case:c3") && !cases.contains("case:c1"),
        "{cases}"
    );
    // s1 went out on the 23rd and its window ended long before now.
    assert_eq!(figure(&page, "deliveries.on_the_road"), 1);
    assert_eq!(figure(&page, "deliveries.late"), 1);
    let (_, _, late) = get(&router, "/ui/deliveries?late=1", None).await;
    assert!(
        late.contains(r#"<a href="/ui/shipments/s1">s1</a>"#) && late.contains("d7 (4 stops before)"),
        "{late}"
    );
    // The weakest touchpoint of the week, with its owner.
    let worst = &page[page.find(r#"<section id="worst">"#).unwrap()..];
    assert!(
        worst.contains("The one-hour delivery window") && worst.contains("owned by Logistics"),
        "{worst}"
    );

    for bad in [
        "/?day=yesterday",
        "/?days=3",
        "/ui/promises?state=lost",
        "/ui/cases?state=made",
    ] {
        let (status, _, _) = get(&router, bad, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
}

/// Inventory truthfulness: a receipt that never reached the shelf shows as phantom
/// stock in the API and on the page, with its evidence and the owner of the fix;
/// the stock touchpoint links to it.
#[tokio::test]
async fn phantom_stock_is_found_per_store_and_sku_with_its_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let journey = troth_core::journey::parse_journey(include_str!("../../../journeys/retail.toml")).unwrap();
    let store = SqliteStore::open_with_journey(dir.path(), Some(&journey)).unwrap();
    let router = common::settled_app(AppState::new(store, None).with_journey(journey));
    let e = |id: &str, t: &str, time: &str, data: Value| json!({"id": id, "type": t, "time": format!("2026-11-23T{time}:00Z"), "data": data});
    let events = json!([
        e(
            "c0",
            "inventory.counted",
            "06:00",
            json!({"store": "st-3", "sku": "tyre-1", "on_hand": 0})
        ),
        e(
            "r1",
            "inventory.received",
            "07:00",
            json!({"store": "st-3", "sku": "tyre-1", "delta": 8})
        ),
        e(
            "a1",
            "availability.shown",
            "09:00",
            json!({"store": "st-3", "sku": "tyre-1", "claim": "in_stock"})
        ),
        e(
            "a2",
            "availability.shown",
            "09:30",
            json!({"store": "st-3", "sku": "tyre-1", "claim": "in_stock"})
        ),
        e(
            "v1",
            "store.visited",
            "11:00",
            json!({"store": "st-3", "sku": "tyre-1", "found": false})
        ),
        e(
            "c1",
            "inventory.counted",
            "21:00",
            json!({"store": "st-3", "sku": "tyre-1", "on_hand": 0})
        ),
        e(
            "j1",
            "inventory.adjusted",
            "21:01",
            json!({"store": "st-3", "sku": "tyre-1", "delta": -8, "reason": "count_correction"})
        ),
        e(
            "v2",
            "store.visited",
            "11:00",
            json!({"store": "st-1", "sku": "tyre-1", "found": true})
        ),
    ]);
    let response = router
        .clone()
        .oneshot(
            Request::builder()
                .method("POST")
                .uri("/api/v1/events")
                .body(Body::from(events.to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let (status, _, json) = get(&router, "/api/v1/inventory?from=2026-11-23T00:00:00Z", None).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    let answer: Value = serde_json::from_str(&json).unwrap();
    let worst = &answer["shelves"][0];
    assert_eq!(
        (worst["store"].as_str(), worst["sku"].as_str()),
        (Some("st-3"), Some("tyre-1")),
        "{answer}"
    );
    assert_eq!(worst["phantom_score"], 2.0);
    assert_eq!(worst["owner"], "store_operations");
    assert_eq!(worst["suspect_receipts"][0]["event"], "r1");
    assert_eq!(worst["suspect_receipts"][0]["units"], 8);
    assert_eq!(
        answer["shelves"][1]["owner"], "",
        "the store whose shelf was right: {answer}"
    );

    let (status, _, html) = get(&router, "/ui/inventory?from=2026-11-23&to=2026-11-23", None).await;
    assert_eq!(status, StatusCode::OK);
    let row = html.split("<tbody>").nth(1).unwrap_or_default();
    assert!(
        row.starts_with("<tr><td><code>st-3</code></td><td><code>tyre-1</code></td><td class=\"num\">2.0</td>")
            && row.contains("received 8 units (r1); the next count found 8 missing")
            && row.contains("Store operations"),
        "{html}"
    );
    assert!(!row.contains("st-1"), "only what is wrong is listed: {html}");
    let (_, _, stock) = get(
        &router,
        "/ui/journeys/retail/touchpoints/stock?from=2026-11-23&to=2026-11-23",
        None,
    )
    .await;
    assert!(
        stock.contains(r#"<p id="inventory-link"><a href="/ui/inventory?"#),
        "{stock}"
    );
}
