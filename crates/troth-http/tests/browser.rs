//! The journey pages in a real browser: headless Chromium against the server on a
//! TCP port, over a store filled by the simulator. Skipped (with a message) when
//! Chromium is not installed, except in CI. See docs/browser-tests.md.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use troth_browser_test::{Browser, http};
use troth_core::journey::{JourneyMap, parse_journey};
use troth_http::AppState;
use troth_store::Store;
use troth_store::sqlite::SqliteStore;

/// The server under test: an in-process app on 127.0.0.1, over a simulated store.
struct Served {
    addr: SocketAddr,
    map: JourneyMap,
    _dir: tempfile::TempDir,
}

impl Served {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// The small world's first `days` days, appended to a fresh store, then served.
async fn serve_simulated(days: u32) -> Served {
    serve_simulated_with_key(days, None).await
}

async fn serve_simulated_with_key(days: u32, master_key: Option<&str>) -> Served {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let map = parse_journey(include_str!("../../../journeys/retail.toml")).unwrap();
    let store = SqliteStore::open_with_journey(dir.path(), Some(&map)).unwrap();
    let mut world = troth_sim::World::from_toml(include_str!("../../../worlds/small.toml")).unwrap();
    world.days = days;
    let mut events = Vec::new();
    troth_sim::simulate(&world, &mut |line| {
        events.push(troth_core::validate_event(line).expect("the simulator writes valid events"));
        Ok(())
    })
    .unwrap();
    for chunk in events.chunks(troth_store::sqlite::MAX_GROUP_EVENTS) {
        store.append(chunk.to_vec()).await.unwrap();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = common::settled_app(AppState::new(store, master_key.map(str::to_owned)).with_journey(map.clone()));
    tokio::spawn(async move { axum::serve(listener, router).await });
    eprintln!("served {} simulated events in {:?}", events.len(), started.elapsed());
    Served { addr, map, _dir: dir }
}

/// The page's range as the health API's query, read from the live part of the page.
async fn api_range(browser: &Browser) -> (String, String) {
    let heatmap = browser.find("#live").await;
    let from = heatmap.attribute("data-from").await.unwrap();
    let to = heatmap.attribute("data-to").await.unwrap();
    (from, to)
}

async fn health(served: &Served, from: &str, to: &str) -> Value {
    let day_after = troth_core::Timestamp::parse_rfc3339(&format!("{to}T00:00:00Z"))
        .unwrap()
        .micros()
        + 86_400_000_000;
    let to = troth_core::Timestamp(day_after).to_string();
    let reply = http::get(&served.url(&format!(
        "/api/v1/journeys/retail/health?from={from}T00:00:00Z&to={}T00:00:00Z",
        &to[..10]
    )))
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()
}

fn touchpoints(health: &Value) -> impl Iterator<Item = &Value> {
    health["stages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["touchpoints"].as_array().unwrap())
}

/// The weakest-link scores of the page's range, by touchpoint, from the API.
async fn scores(served: &Served, from: &str, to: &str) -> std::collections::HashMap<String, f64> {
    let day_after = troth_core::Timestamp::parse_rfc3339(&format!("{to}T00:00:00Z"))
        .unwrap()
        .micros()
        + 86_400_000_000;
    let reply = http::get(&served.url(&format!(
        "/api/v1/journeys/retail/weakest-links?from={from}T00:00:00Z&to={}",
        troth_core::Timestamp(day_after)
    )))
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["touchpoint"].as_str().unwrap().to_owned(),
                l["score"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// A count as the pages print it, separators removed.
fn number(text: &str) -> i64 {
    text.replace(',', "")
        .parse()
        .unwrap_or_else(|_| panic!("not a count: {text:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heat_map_shows_every_touchpoint_with_the_apis_figures() {
    let Some(browser) = Browser::launch().await else { return };
    let served = serve_simulated(4).await;
    browser.goto(&served.url("/ui/journeys/retail")).await;
    assert_eq!(browser.text("h1").await, format!("Journey: {}", served.map.name));
    let (from, to) = api_range(&browser).await;
    let health = health(&served, &from, &to).await;
    let scores = scores(&served, &from, &to).await;

    let (mut red, mut with_kept_rate) = (0, 0);
    for t in touchpoints(&health) {
        let key = t["key"].as_str().unwrap();
        let cell = browser.find(&format!(r#"#heatmap [data-touchpoint="{key}"]"#)).await;
        let name = &served.map.touchpoint(key).unwrap().name;
        assert_eq!(&cell.find("strong").await.text().await, name);
        assert_eq!(
            number(&cell.find(r#"[data-f="exposure"]"#).await.text().await),
            t["exposure"].as_i64().unwrap(),
            "{key}"
        );
        if let Some(kept) = t["promises"]["kept_rate"].as_f64() {
            assert_eq!(
                cell.find(r#"[data-f="kept_rate"]"#).await.text().await,
                format!("{} %", (kept * 100.0 + 0.5).floor()),
                "{key}: the share of promises kept, in whole percent"
            );
            with_kept_rate += 1;
        }
        // Red exactly when the weakest-link ranking scores the touchpoint above zero.
        let class = cell.property("className").await;
        let weak = scores.get(key).is_some_and(|score| *score > 0.0);
        assert_eq!(
            class == "cell h-bad",
            weak,
            "{key}: {class}, score {:?}",
            scores.get(key)
        );
        red += usize::from(weak);
    }
    assert!(red >= 1, "the simulated faults make weakest links");
    assert!(with_kept_rate >= 2, "some promises were settled");
    assert_eq!(
        browser.find_all("#heatmap [data-touchpoint]").await.len(),
        served.map.touchpoints.len()
    );
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heat_map_follows_new_events_without_reloading() {
    let Some(browser) = Browser::launch().await else { return };
    let served = serve_simulated(2).await;
    browser.goto(&served.url("/ui/journeys/retail")).await;
    let (from, to) = api_range(&browser).await;
    // A reload would lose this.
    browser
        .execute("window.trothMarker = 'same page'; return null;", vec![])
        .await;

    let exposure = r#"#heatmap [data-touchpoint="tracking_page"] [data-f="exposure"]"#;
    let before = number(&browser.text(exposure).await);
    let review = touchpoints(&health(&served, &from, &to).await)
        .find(|t| t["key"] == "review")
        .cloned()
        .unwrap();
    let review_class = browser
        .find(r#"#heatmap [data-touchpoint="review"]"#)
        .await
        .property("className")
        .await;
    assert_ne!(review_class, "cell h-bad", "the review cell can still turn red");
    // Enough detractors and one-star reviews for the review touchpoint to fall short for certain.
    let answers = review["surveys"]["answers"].as_i64().unwrap();
    let detractors = answers * 2 + 10;
    let mut events: Vec<Value> = (0..3)
        .map(|i| {
            json!({"id": format!("live-view-{i}"), "type": "tracking.viewed", "time": format!("{to}T12:00:0{i}Z"),
                   "subject": "shipment:live-1", "data": {"shipment": "live-1"}})
        })
        .collect();
    events.extend((0..detractors).map(|i| {
        json!({"id": format!("live-answer-{i}"), "type": "survey.answered", "time": format!("{to}T12:01:00Z"),
               "data": {"survey": "live", "touchpoint": "review", "nps": 0}})
    }));
    events.extend((0..10).map(|i| {
        json!({"id": format!("live-review-{i}"), "type": "review.posted", "time": format!("{to}T12:02:00Z"),
               "customer": {"id": format!("live-reviewer-{i}")}, "data": {"rating": 1, "text": "late", "site": "shop"}})
    }));
    let reply = http::post_json(&served.url("/api/v1/events"), &Value::Array(events)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);

    let started = Instant::now();
    let after = browser.wait_for_text(exposure, |text| text != before.to_string()).await;
    eprintln!("the cell changed {:?} after the events were stored", started.elapsed());
    assert_eq!(number(&after), before + 3);
    browser
        .wait_for(
            "the review cell to turn red",
            Duration::from_secs(15),
            r#"return document.querySelector('#heatmap [data-touchpoint="review"]').classList.contains('h-bad');"#,
        )
        .await;
    assert!(
        browser
            .text(r#"#heatmap [data-touchpoint="review"]"#)
            .await
            .contains("NPS -100"),
        "the NPS line shows once there is an NPS"
    );
    assert_eq!(
        browser
            .find(r#"#weakest-links li"#)
            .await
            .attribute("data-touchpoint")
            .await
            .as_deref(),
        Some("review"),
        "the ranking above the heat map follows too"
    );
    assert_eq!(
        browser.execute("return window.trothMarker;", vec![]).await,
        "same page",
        "the page was not reloaded"
    );
    assert!(browser.text("#refresh-status").await.starts_with("Updated"));
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_down_links_broken_promises_to_their_customers() {
    let Some(browser) = Browser::launch().await else { return };
    let served = serve_simulated(4).await;
    browser.goto(&served.url("/ui/journeys/retail")).await;
    let (from, to) = api_range(&browser).await;
    let health = health(&served, &from, &to).await;
    let broken_at = touchpoints(&health)
        .find(|t| t["promises"]["broken"].as_i64() > Some(0))
        .expect("the simulated faults break promises")["key"]
        .as_str()
        .unwrap()
        .to_owned();

    browser
        .find(&format!(r#"#heatmap [data-touchpoint="{broken_at}"]"#))
        .await
        .click()
        .await;
    assert!(
        browser
            .current_url()
            .await
            .contains(&format!("/touchpoints/{broken_at}?")),
        "{}",
        browser.current_url().await
    );
    assert!(
        browser.find_all("#trend rect.exposure").await.len() >= 2,
        "a bar per day"
    );
    let link = browser.find(r#"#broken-promises a[href^="/ui/customers/"]"#).await;
    let customer = link.text().await;

    // The API agrees that this customer has a promise broken at this touchpoint.
    let href = link.attribute("href").await.unwrap();
    let key = href.strip_prefix("/ui/customers/").unwrap();
    let reply = http::get(&served.url(&format!(
        "/api/v1/journeys/retail/promises?state=broken&touchpoint={broken_at}&customer={key}"
    )))
    .await;
    let broken = reply.json();
    assert!(
        !broken["promises"].as_array().unwrap().is_empty(),
        "{customer} has no promise broken at {broken_at}: {broken}"
    );

    link.click().await;
    browser
        .wait_for_text("h2", |text| ["Cases", "Promises", "Timeline"].contains(&text))
        .await;
    let promises = browser
        .execute(
            "return [...document.querySelectorAll('.card .l')].map(l => l.textContent).find(t => t.startsWith('promises at risk or broken'));",
            vec![],
        )
        .await;
    assert!(
        promises
            .as_str()
            .is_some_and(|p| p.ends_with(" broken)") && !p.ends_with(" 0 broken)")),
        "the customer's page shows the broken promise: {promises}"
    );
    browser.quit().await;
}

/// With a master key the page's script has only the sign-in cookie, which must be
/// enough for it to keep the figures current.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_in_the_heat_map_still_follows_new_events() {
    let Some(browser) = Browser::launch().await else { return };
    let served = serve_simulated_with_key(2, Some("s3cret")).await;
    browser.goto(&served.url("/ui/journeys/retail")).await;
    assert!(browser.current_url().await.ends_with("/login"), "signing in first");
    browser.find(r#"input[name="key"]"#).await.send_keys("s3cret").await;
    browser.find(r#"form.login button"#).await.click().await;
    // The sign-in answers with a redirect and the cookie; wait for it before moving on.
    let signed_in = Instant::now() + Duration::from_secs(20);
    while browser.current_url().await.ends_with("/login") {
        assert!(Instant::now() < signed_in, "the sign-in did not go through");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    browser.goto(&served.url("/ui/journeys/retail")).await;
    let to = browser.find("#live").await.attribute("data-to").await.unwrap();
    let exposure = r#"#heatmap [data-touchpoint="returns"] [data-f="exposure"]"#;
    let before = number(&browser.text(exposure).await);

    let event = json!({"id": "signed-in-1", "type": "return.requested", "time": format!("{to}T13:00:00Z"),
                       "customer": {"id": "live-customer"}, "subject": "order:live-1",
                       "data": {}});
    let reply = http::request_with(
        "POST",
        &served.url("/api/v1/events"),
        &[("authorization", "Bearer s3cret")],
        Some(&event),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    let after = browser.wait_for_text(exposure, |text| text != before.to_string()).await;
    assert_eq!(number(&after), before + 1);
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journey_page_names_the_weakest_link_and_draws_the_chasm() {
    let Some(browser) = Browser::launch().await else { return };
    let served = serve_simulated(14).await;
    browser.goto(&served.url("/ui/journeys/retail")).await;
    let (from, to) = api_range(&browser).await;
    let day_after = troth_core::Timestamp::parse_rfc3339(&format!("{to}T00:00:00Z"))
        .unwrap()
        .micros()
        + 86_400_000_000;
    let reply = http::get(&served.url(&format!(
        "/api/v1/journeys/retail/weakest-links?from={from}T00:00:00Z&to={}",
        troth_core::Timestamp(day_after)
    )))
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let links: Value = reply.json();
    let weakest = &links["links"][0];
    assert!(
        weakest["score"].as_f64().unwrap() > 0.0,
        "the small world's faults show: {links}"
    );
    let key = weakest["touchpoint"].as_str().unwrap();

    let first = browser.find("#weakest-links li").await;
    assert_eq!(first.attribute("data-touchpoint").await.as_deref(), Some(key));
    assert_eq!(
        first.find(".link-name").await.text().await,
        served.map.touchpoint(key).unwrap().name
    );
    assert_eq!(first.find(".why").await.text().await, weakest["why"].as_str().unwrap());
    // One bar pair per stage at most, and the cohort sentence.
    assert!(!browser.find_all("#chasm svg rect").await.is_empty());
    assert!(
        browser
            .text("#chasm-cohort")
            .await
            .contains("pleased early and let down late")
    );
    let sentence = browser.text("#chasm-sentence").await;
    assert!(
        sentence.contains("let down most at") && !sentence.contains("gap"),
        "the chasm says what it means in words: {sentence}"
    );
    // The weakest link opens its drill-down.
    first.find(".link-name").await.click().await;
    let name = served.map.touchpoint(key).unwrap().name.clone();
    browser.wait_for_text("h1", |h1| h1.contains(&name)).await;
    browser.quit().await;
}

/// How many promises the API lists for `query`, page by page.
async fn api_promises(served: &Served, query: &str) -> i64 {
    let (mut n, mut after) = (0, String::new());
    loop {
        let reply =
            http::get(&served.url(&format!("/api/v1/journeys/retail/promises?{query}&limit=1000{after}"))).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let page = reply.json();
        n += page["promises"].as_array().unwrap().len() as i64;
        match page["next"].as_str() {
            Some(next) => after = format!("&after={next}"),
            None => return n,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overviews_numbers_match_the_api_and_open_their_lists() {
    let Some(browser) = Browser::launch().await else { return };
    let served = serve_simulated(14).await;
    // The simulated world lies in the past: look at its last day.
    browser.goto(&served.url("/ui/journeys/retail")).await;
    let (_, last) = api_range(&browser).await;
    browser.goto(&served.url(&format!("/?day={last}"))).await;
    let day = |d: &str, offset: i64| {
        let t = troth_core::Timestamp::parse_rfc3339(&format!("{d}T00:00:00Z")).unwrap();
        troth_core::Timestamp(t.micros() + offset * 86_400_000_000).to_string()[..10].to_owned()
    };
    let mut total = 0;
    for (column, from, to) in [
        ("today", day(&last, 0), day(&last, 1)),
        ("week", day(&last, -6), day(&last, 1)),
        ("last_week", day(&last, -13), day(&last, -6)),
    ] {
        for state in ["kept", "broken", "at_risk", "made"] {
            let shown = number(
                &browser
                    .text(&format!(r#"[data-figure="promises.{state}.{column}"]"#))
                    .await,
            );
            let api = api_promises(
                &served,
                &format!("state={state}&from={from}T00:00:00Z&to={to}T00:00:00Z"),
            )
            .await;
            assert_eq!(shown, api, "{state} {column}");
            total += api;
        }
    }
    assert!(total > 100, "the simulated world makes promises");
    // The number opens the list behind it, which counts the same.
    let broken = browser.find(r#"[data-figure="promises.broken.week"]"#).await;
    let shown = broken.text().await;
    broken.click().await;
    let count = browser.wait_for_text("#count", |t| !t.is_empty()).await;
    assert_eq!(count, shown);
    assert!(browser.text("h1").await.starts_with("Promises: broken"));
    browser.quit().await;
}
