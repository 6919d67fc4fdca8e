//! The dispatcher against real receivers on loopback: an SMTP server that speaks
//! the protocol, HTTP servers for the SMS gateway and webhooks.

mod common;

use std::time::Duration;

use common::{HttpServer, SmtpServer};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use troth_core::journey::{JourneyMap, parse_journey};
use troth_core::{Timestamp, ValidEvent, validate_value};
use troth_notify::{Dispatcher, NotifyConfig, SmsConfig, SmtpConfig};
use troth_store::sqlite::SqliteStore;
use troth_store::{OutboxQuery, OutboxState, RetryPolicy, Store};

const RETAIL: &str = include_str!("../../../journeys/retail.toml");

fn ev(value: Value) -> ValidEvent {
    validate_value(value, None).unwrap()
}

fn identified(id: &str, customer: &str, email: &str, phone: &str) -> ValidEvent {
    ev(
        json!({"id": id, "type": "customer.identified", "time": "2026-11-23T09:00:00Z", "customer": {"id": customer},
              "data": {"emails": [email], "phones": [phone], "traits": {"name": "Ann"}}}),
    )
}

fn payment_failed(id: &str, customer: &str) -> ValidEvent {
    ev(
        json!({"id": id, "type": "payment.failed", "time": "2026-11-23T10:00:00Z", "customer": {"id": customer},
              "data": {"method": "card", "amount": 1999, "currency": "EUR", "reason": "card declined"}}),
    )
}

fn smtp(server: &SmtpServer) -> Option<SmtpConfig> {
    Some(SmtpConfig::from_url(&format!("smtp://{}", server.addr), "cx@shop.example").unwrap())
}

fn open(dir: &std::path::Path, map: &JourneyMap) -> SqliteStore {
    let store = SqliteStore::open_with_journey(dir, Some(map)).unwrap();
    same_day(&store);
    store
}

/// These tests' events happen on 2026-11-23; the store takes them in that day too,
/// so the plays they test answer them as news (plays ignore history).
fn same_day(store: &SqliteStore) {
    let noon = Timestamp::parse_rfc3339("2026-11-23T12:00:00Z").unwrap();
    store.set_clock(std::sync::Arc::new(move || noon));
}

async fn rows(store: &SqliteStore, state: Option<OutboxState>) -> Vec<troth_store::OutboxEntry> {
    store
        .outbox(OutboxQuery {
            state,
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .entries
}

#[tokio::test]
async fn a_failed_payment_sends_an_email_over_smtp_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &parse_journey(RETAIL).unwrap());
    let server = SmtpServer::start();
    let dispatcher = Dispatcher::new(
        store.clone(),
        NotifyConfig {
            smtp: smtp(&server),
            ..NotifyConfig::default()
        },
    );
    store
        .append(vec![
            identified("i1", "ann", "ann@example.org", "+44 20 7946 0000"),
            payment_failed("p1", "ann"),
        ])
        .await
        .unwrap();
    store.settle().await.unwrap();
    assert_eq!(dispatcher.run_once().await.unwrap(), 1);
    let mails = server.wait_for(1, Duration::from_secs(5));
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert_eq!(mail.from, "cx@shop.example");
    assert_eq!(mail.to, ["ann@example.org"]);
    assert_eq!(
        mail.header("Subject").as_deref(),
        Some("Your payment did not go through")
    );
    assert_eq!(mail.header("To").as_deref(), Some("ann@example.org"));
    let id = "play:payment_failed_help:p1:0";
    assert_eq!(
        mail.header("Message-ID").as_deref(),
        Some(troth_notify::smtp::message_id(id).as_str())
    );
    assert_eq!(mail.header("Troth-Delivery").as_deref(), Some(id));
    let body = mail.body();
    assert!(body.starts_with("Hello Ann,\r\n"), "{body}");
    assert!(
        body.contains("card payment of 19.99 EUR did not go through (reason: card declined)"),
        "{body}"
    );

    let row = store.outbox_entry(id.into()).await.unwrap().unwrap();
    assert_eq!(row.state, OutboxState::Sent);
    assert!(row.sent_at.is_some());
    // Nothing is due any more, and a duplicate of the event enqueues nothing.
    store.append(vec![payment_failed("p1", "ann")]).await.unwrap();
    store.settle().await.unwrap();
    assert_eq!(dispatcher.run_once().await.unwrap(), 0);
    assert_eq!(server.mails().len(), 1);
}

#[tokio::test]
async fn a_customer_who_withdrew_email_consent_receives_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &parse_journey(RETAIL).unwrap());
    let server = SmtpServer::start();
    let dispatcher = Dispatcher::new(
        store.clone(),
        NotifyConfig {
            smtp: smtp(&server),
            ..NotifyConfig::default()
        },
    );
    let withdrawn = ev(
        json!({"id": "c1", "type": "customer.consent_changed", "time": "2026-11-23T09:30:00Z",
        "customer": {"id": "ann"}, "data": {"channel": "email", "purpose": "service", "granted": false}}),
    );
    store
        .append(vec![
            identified("i1", "ann", "ann@example.org", "+44 20 7946 0000"),
            identified("i2", "bob", "bob@example.org", "+44 20 7946 0001"),
            withdrawn,
            payment_failed("p-ann", "ann"),
            payment_failed("p-bob", "bob"),
        ])
        .await
        .unwrap();
    store.settle().await.unwrap();
    dispatcher.run_once().await.unwrap();
    // Bob's mail shows the receiver works; Ann's never comes.
    let mails = server.wait_for(1, Duration::from_secs(5));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let to: Vec<String> = server.mails().into_iter().flat_map(|m| m.to).collect();
    assert_eq!(to, ["bob@example.org"], "{mails:?}");
    let ann = store
        .outbox_entry("play:payment_failed_help:p-ann:0".into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ann.state, OutboxState::Skipped);
    assert_eq!(ann.recipient, None);
}

#[tokio::test]
async fn alert_webhooks_are_signed_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let hooks = HttpServer::start(204);
    let map = parse_journey(&RETAIL.replace(
        "key = \"logistics\"\nname = \"Logistics\"\n",
        &format!(
            "key = \"logistics\"\nname = \"Logistics\"\nwebhook_url = \"{}\"\n",
            hooks.url("/alerts/logistics")
        ),
    ))
    .unwrap();
    let store = open(dir.path(), &map);
    let secret = "whsec-test-1";
    let dispatcher = Dispatcher::new(
        store.clone(),
        NotifyConfig {
            webhook_secret: Some(secret.into()),
            ..NotifyConfig::default()
        },
    );
    let window = ev(
        json!({"id": "w1", "type": "shipment.window_set", "time": "2026-11-23T08:00:00Z",
        "subject": "shipment:s-1", "customer": {"email": "ann@example.org"},
        "data": {"window_start": "2026-11-23T11:00:00Z", "window_end": "2026-11-23T12:00:00Z"}}),
    );
    store.append(vec![window]).await.unwrap();
    store.settle().await.unwrap();
    store
        .tick(Timestamp::parse_rfc3339("2026-11-23T12:01:00Z").unwrap())
        .await
        .unwrap();
    // The clock's changes reach the log and then the projections (and their plays).
    store.settle().await.unwrap();
    dispatcher.run_once().await.unwrap();

    let requests = hooks.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let request = &requests[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/alerts/logistics")
    );
    assert_eq!(request.header("content-type"), Some("application/json"));
    let delivery = request.header("troth-delivery").unwrap();
    assert!(
        delivery.starts_with("play:window_missed:troth.delivery_window:w1.broken:"),
        "{delivery}"
    );

    // The receiver's side, written from docs/notifications.md: split the header,
    // HMAC-SHA256 over "{t}.{raw body}" with the shared secret, compare the hex.
    let signature = request.header("troth-signature").unwrap();
    let (t, v1) = signature.split_once(',').unwrap();
    let t = t.strip_prefix("t=").unwrap();
    let v1 = v1.strip_prefix("v1=").unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(&request.body);
    let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(v1, expected);
    let now = Timestamp::now().micros() / 1_000_000;
    assert!((now - t.parse::<i64>().unwrap()).abs() < 60);
    assert!(troth_notify::webhook::verify(
        secret,
        signature,
        &request.body,
        now,
        300
    ));
    assert!(!troth_notify::webhook::verify(
        "wrong",
        signature,
        &request.body,
        now,
        300
    ));

    let body: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body["id"], delivery);
    assert_eq!(body["type"], "play.alert");
    assert_eq!(body["function"], "logistics");
    assert_eq!(body["play"], "window_missed");
    assert_eq!(body["promise"]["due"], "2026-11-23T12:00:00.000000Z");
    assert_eq!(body["event"]["type"], "promise.broken");

    // The same play's email has no SMTP relay to go to: it waits, saying why.
    let email = rows(&store, Some(OutboxState::Pending)).await;
    assert_eq!(email.len(), 1);
    assert_eq!(email[0].channel, "email");
    assert_eq!(email[0].attempts, 0);
    assert!(
        email[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("email channel is not configured"),
        "{:?}",
        email[0].last_error
    );
}

#[tokio::test]
async fn a_failing_gateway_is_retried_with_backoff_until_dead_then_retried_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = HttpServer::start(503);
    let map = parse_journey(&RETAIL.replace(
        r#"do = [{ type = "notify_customer", channel = "email", template = "payment-failed" }]"#,
        r#"do = [{ type = "notify_customer", channel = "sms", template = "payment-failed" }]"#,
    ))
    .unwrap();
    let store = open(dir.path(), &map);
    let dispatcher = Dispatcher::new(
        store.clone(),
        NotifyConfig {
            sms: Some(SmsConfig {
                url: gateway.url("/sms"),
                token: Some("gw-token".into()),
            }),
            retry: RetryPolicy {
                base_seconds: 2,
                max_seconds: 4,
                max_attempts: 3,
            },
            ..NotifyConfig::default()
        },
    );
    store
        .append(vec![
            identified("i1", "ann", "ann@example.org", "+44 20 7946 0000"),
            payment_failed("p1", "ann"),
        ])
        .await
        .unwrap();
    store.settle().await.unwrap();
    let id = "play:payment_failed_help:p1:0".to_owned();
    let row = || async { store.outbox_entry(id.clone()).await.unwrap().unwrap() };

    dispatcher.run_once().await.unwrap();
    let first = row().await;
    assert_eq!((first.state, first.attempts), (OutboxState::Pending, 1));
    assert!(first.last_error.as_deref().unwrap().contains("503"), "{first:?}");
    // Not due again before its backoff: a second pass sends nothing.
    dispatcher.run_once().await.unwrap();
    assert_eq!(gateway.requests().len(), 1);
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    dispatcher.run_once().await.unwrap();
    assert_eq!((row().await.attempts, gateway.requests().len()), (2, 2));
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    dispatcher.run_once().await.unwrap();
    assert_eq!(gateway.requests().len(), 2, "the second wait is twice the first");
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    dispatcher.run_once().await.unwrap();
    let dead = row().await;
    assert_eq!((dead.state, dead.attempts), (OutboxState::Dead, 3));
    assert_eq!(rows(&store, Some(OutboxState::Dead)).await.len(), 1);

    gateway.set_status(200);
    tokio::time::sleep(Duration::from_millis(4_200)).await;
    dispatcher.run_once().await.unwrap();
    assert_eq!(gateway.requests().len(), 3, "a dead letter waits for a hand");
    store.retry_outbox(id.clone(), Timestamp::now()).await.unwrap();
    dispatcher.run_once().await.unwrap();
    assert_eq!(row().await.state, OutboxState::Sent);

    let requests = gateway.requests();
    assert_eq!(requests.len(), 4);
    for request in &requests {
        assert_eq!(request.path, "/sms");
        assert_eq!(request.header("authorization"), Some("Bearer gw-token"));
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body["to"], "+442079460000");
        assert_eq!(body["id"], id.as_str());
        assert!(body["body"].as_str().unwrap().contains("19.99 EUR"), "{body}");
    }
}
