//! An agent at work in a real browser: signs in with their own key, finds a
//! customer by email, opens them and resolves their open case with the case's form;
//! the page then shows the case resolved and says so in the timeline. Headless
//! Chromium against the server on a TCP port; skipped (with a message) when Chromium
//! is not installed, except in CI. See docs/browser-tests.md.

mod common;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use troth_browser_test::{Browser, http};
use troth_core::Timestamp;
use troth_http::AppState;
use troth_store::Store;
use troth_store::sqlite::SqliteStore;

const MASTER: &str = "s3cret";

/// Ann with a case opened an hour ago, and another customer the search must not find.
fn events() -> Vec<Value> {
    let opened = Timestamp(Timestamp::now().micros() - 3_600_000_000).to_string();
    vec![
        json!({"id": "e1", "type": "customer.identified", "time": "2026-11-20T09:00:00Z",
               "customer": {"email": "ann.lee@example.org"}, "data": {"traits": {"name": "Ann Lee"}}}),
        json!({"id": "e2", "type": "order.placed", "time": "2026-11-20T09:05:00Z", "channel": "web",
               "customer": {"email": "ann.lee@example.org"}, "subject": "order:o-1",
               "data": {"order": "o-1", "items": [{"sku": "tyre", "qty": 4, "price": 8900}], "total": 35600,
                        "currency": "EUR", "delivery": "home"}}),
        json!({"id": "e3", "type": "case.opened", "time": opened, "channel": "phone",
               "customer": {"email": "ann.lee@example.org"}, "subject": "case:k-1",
               "data": {"case": "k-1", "category": "late_delivery", "team": "support", "order": "o-1"}}),
        json!({"id": "e4", "type": "customer.identified", "time": "2026-11-20T10:00:00Z",
               "customer": {"email": "bob@example.org"}, "data": {"traits": {"name": "Bob Marsh"}}}),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_finds_a_customer_and_resolves_their_case() {
    let Some(browser) = Browser::launch().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_with_journey(dir.path(), Some(&common::retail_map())).unwrap();
    let valid: Vec<_> = events()
        .iter()
        .map(|e| troth_core::validate_value(e.clone(), None).unwrap())
        .collect();
    store.append(valid).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = AppState::new(store, Some(MASTER.to_owned())).with_journey(common::retail_map());
    let router = common::settled_app(state);
    tokio::spawn(async move { axum::serve(listener, router).await });
    let url = |path: &str| format!("http://{addr}{path}");

    // The agent's own key, made by an administrator.
    let made = http::request_with(
        "POST",
        &url("/api/v1/keys"),
        &[("authorization", &format!("Bearer {MASTER}"))],
        Some(&json!({"name": "ana", "scopes": ["agent"]})),
    )
    .await
    .unwrap();
    assert_eq!(made.status, 201, "{}", made.body);
    let key = made.json();
    let (secret, uid) = (key["key"].as_str().unwrap(), key["uid"].as_str().unwrap());

    browser.goto(&url("/ui/customers")).await;
    assert!(browser.current_url().await.ends_with("/login"), "signing in first");
    browser.find(r#"input[name="key"]"#).await.send_keys(secret).await;
    browser.find("form.login button").await.click().await;
    let signed_in = Instant::now() + Duration::from_secs(20);
    while browser.current_url().await.ends_with("/login") {
        assert!(Instant::now() < signed_in, "the sign-in did not go through");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Find Ann by her email: the one match opens her page.
    browser.goto(&url("/ui/customers")).await;
    browser
        .find(r#"form.search input[name="q"]"#)
        .await
        .send_keys("Ann.Lee@example.org")
        .await;
    browser.find("form.search button").await.click().await;
    browser.wait_for_text("h1", |h1| h1 == "Ann Lee").await;
    assert!(browser.current_url().await.contains("/ui/customers/cus_1"));
    let outcome = r#"tr[data-case="k-1"] td[data-label="outcome"]"#;
    assert!(
        browser.try_find(&format!("{outcome} form.resolve")).await.is_some(),
        "the open case has its form"
    );

    // On a phone the page, forms included, fits the screen.
    assert_eq!(browser.set_window_size(390, 844).await.0, 390);
    let wider = browser
        .execute(
            "return [...document.querySelectorAll('main *')]
                .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
                .map(e => e.tagName + '.' + e.className);",
            vec![],
        )
        .await;
    assert_eq!(wider, json!([]), "these stick out sideways at 390 px");
    browser.set_window_size(1366, 900).await;

    // Resolve the case with its form.
    browser
        .find(&format!(
            r#"{outcome} select[name="resolution"] option[value="redelivery_booked"]"#
        ))
        .await
        .click()
        .await;
    browser
        .find(&format!("{outcome} form.resolve button"))
        .await
        .click()
        .await;
    let resolved = browser
        .wait_for_text(outcome, |text| text.starts_with("resolved"))
        .await;
    assert_eq!(resolved, "resolved: redelivery booked");
    assert!(
        browser
            .current_url()
            .await
            .ends_with("/ui/customers/cus_1?done=resolve")
    );
    assert_eq!(browser.text(r#"p.done"#).await, "Case resolved.");
    assert!(
        browser.try_find("form.resolve").await.is_none(),
        "no open case is left to resolve"
    );
    let timeline = browser.text("table.timeline").await;
    assert!(
        // Recorded under the key's id, read by its name.
        timeline.contains("Case resolved: redelivery booked by ana"),
        "{timeline}"
    );
    let open = browser
        .execute(
            "return [...document.querySelectorAll('.card')].map(c => c.textContent).find(t => t.includes('open case'));",
            vec![],
        )
        .await;
    assert!(open.as_str().is_some_and(|t| t.starts_with('0')), "{open}");

    // The log holds one resolution, under the agent's key.
    let reply = http::request_with(
        "GET",
        &url("/api/v1/events?type=case.resolved"),
        &[("authorization", &format!("Bearer {MASTER}"))],
        None,
    )
    .await
    .unwrap();
    let resolutions = reply.json()["events"].as_array().unwrap().clone();
    assert_eq!(resolutions.len(), 1, "{resolutions:?}");
    assert_eq!(resolutions[0]["source"], format!("agent:{uid}"));
    assert_eq!(resolutions[0]["data"]["agent"], uid);
    browser.quit().await;
}
