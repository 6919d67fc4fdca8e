//! Plays in the store: outbox rows written in the append's transaction, once per
//! event; consent; claiming, backoff and dead letters with a fake clock; rows
//! claimed before a stop; cases opened as events; replay leaves the outbox alone.

use serde_json::{Value, json};
use troth_core::journey::parse_journey;
use troth_core::{Timestamp, ValidEvent, validate_value};
use troth_store::sqlite::SqliteStore;
use troth_store::{AppendStatus, EventQuery, OutboxQuery, OutboxState, RetryPolicy, Store};

fn retail() -> troth_core::journey::JourneyMap {
    parse_journey(include_str!("../../../journeys/retail.toml")).unwrap()
}

fn open(dir: &std::path::Path) -> SqliteStore {
    let store = SqliteStore::open_with_journey(dir, Some(&retail())).unwrap();
    same_day(&store);
    store
}

/// These tests' events happen on 2026-11-23; the store takes them in that day too,
/// so the plays they test answer them as news (plays ignore history).
fn same_day(store: &SqliteStore) {
    let noon = Timestamp::parse_rfc3339("2026-11-23T12:00:00Z").unwrap();
    store.set_clock(std::sync::Arc::new(move || noon));
}

fn ev(value: Value) -> ValidEvent {
    validate_value(value, None).unwrap()
}

fn identified(id: &str, customer: &str, email: &str) -> ValidEvent {
    ev(
        json!({"id": id, "type": "customer.identified", "time": "2026-11-23T09:00:00Z", "customer": {"id": customer},
              "data": {"emails": [email], "traits": {"name": "Ann"}}}),
    )
}

fn payment_failed(id: &str, customer: &str) -> ValidEvent {
    ev(
        json!({"id": id, "type": "payment.failed", "time": "2026-11-23T10:00:00Z", "customer": {"id": customer},
              "subject": "order:o-1", "data": {"method": "card", "amount": 1999, "currency": "EUR", "reason": "declined"}}),
    )
}

fn consent(id: &str, customer: &str, time: &str, purpose: &str, granted: bool) -> ValidEvent {
    ev(
        json!({"id": id, "type": "customer.consent_changed", "time": format!("2026-11-23T{time}:00Z"),
              "customer": {"id": customer}, "data": {"channel": "email", "purpose": purpose, "granted": granted}}),
    )
}

async fn all(store: &SqliteStore) -> Vec<troth_store::OutboxEntry> {
    store
        .outbox(OutboxQuery {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .entries
}

#[tokio::test]
async fn a_play_enqueues_once_per_event_with_the_customers_address() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .append(vec![identified("i1", "ann", "Ann@Example.org")])
        .await
        .unwrap();
    store.settle().await.unwrap();
    let statuses = store.append(vec![payment_failed("p1", "ann")]).await.unwrap();
    store.settle().await.unwrap();
    assert!(matches!(statuses[0], AppendStatus::Accepted { .. }));
    // The same event again, alone and in a batch: still one row.
    let again = store
        .append(vec![payment_failed("p1", "ann"), payment_failed("p1", "ann")])
        .await
        .unwrap();
    store.settle().await.unwrap();
    assert_eq!(again, [AppendStatus::Duplicate, AppendStatus::Duplicate]);
    let rows = all(&store).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(row.id, "play:payment_failed_help:p1:0");
    assert_eq!(
        (row.channel.as_str(), row.recipient.as_deref(), row.state),
        ("email", Some("ann@example.org"), OutboxState::Pending)
    );
    assert_eq!(row.payload["template"], "payment-failed");
    assert_eq!(row.payload["customer"]["traits"]["name"], "Ann");
    assert_eq!(row.payload["event"]["data"]["amount"], 1999);
    // Events no play is about enqueue nothing.
    store
        .append(vec![ev(
            json!({"id": "v1", "type": "page.viewed", "time": "2026-11-23T10:00:00Z",
                                "customer": {"id": "ann"}, "data": {"page": "/"}}),
        )])
        .await
        .unwrap();
    store.settle().await.unwrap();
    assert_eq!(all(&store).await.len(), 1);
}

#[tokio::test]
async fn withdrawn_service_consent_skips_the_message_and_replay_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .append(vec![
            identified("i1", "ann", "ann@example.org"),
            identified("i2", "bob", "bob@example.org"),
            identified("i3", "cy", "cy@example.org"),
            // Ann withdrew; Bob withdrew and granted again; Cy refused only marketing.
            consent("c1", "ann", "09:10", "service", false),
            consent("c2", "bob", "09:10", "service", false),
            consent("c3", "bob", "09:20", "service", true),
            consent("c4", "cy", "09:10", "marketing", false),
            // Arriving late, an older answer does not override a newer one.
            consent("c5", "bob", "09:15", "service", false),
        ])
        .await
        .unwrap();
    store.settle().await.unwrap();
    store
        .append(vec![
            payment_failed("p-ann", "ann"),
            payment_failed("p-bob", "bob"),
            payment_failed("p-cy", "cy"),
        ])
        .await
        .unwrap();
    store.settle().await.unwrap();
    let rows = all(&store).await;
    let states: Vec<(&str, OutboxState, Option<&str>)> = rows
        .iter()
        .map(|r| (r.event.as_str(), r.state, r.last_error.as_deref()))
        .collect();
    assert_eq!(
        states,
        [
            (
                "p-ann",
                OutboxState::Skipped,
                Some("the customer withdrew service consent for email")
            ),
            ("p-bob", OutboxState::Pending, None),
            ("p-cy", OutboxState::Pending, None),
        ]
    );
    assert_eq!(rows[0].recipient, None);
    // Skipped rows are never claimed.
    let claimed = store.claim_outbox(Timestamp::now(), 10).await.unwrap();
    assert_eq!(claimed.len(), 2);

    // Replay rebuilds the consent projection and neither adds nor re-sends outbox rows.
    let report = store.replay(false, &mut |_| {}).unwrap();
    assert!(report.matches(), "{report:?}");
    assert_eq!(report.differences["consents"], 0);
    let after = all(&store).await;
    assert_eq!(after.len(), 3);
    assert_eq!(
        after.iter().filter(|r| r.state == OutboxState::Sending).count(),
        2,
        "replay must not reset claimed rows"
    );
}

#[tokio::test]
async fn failures_back_off_doubling_to_a_cap_then_dead_and_retry_revives() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .append(vec![
            identified("i1", "ann", "ann@example.org"),
            payment_failed("p1", "ann"),
        ])
        .await
        .unwrap();
    store.settle().await.unwrap();
    let policy = RetryPolicy {
        base_seconds: 30,
        max_seconds: 60,
        max_attempts: 4,
    };
    let t0 = Timestamp::now();
    let at = |seconds: i64| Timestamp(t0.0 + seconds * 1_000_000);
    let id = "play:payment_failed_help:p1:0".to_owned();
    // (when the attempt is made, the wait expected after it fails)
    let mut now = at(0);
    for (attempt, wait) in [(1, 30), (2, 60), (3, 60)] {
        let claimed = store.claim_outbox(now, 10).await.unwrap();
        assert_eq!(claimed.len(), 1, "attempt {attempt}");
        assert!(store.claim_outbox(now, 10).await.unwrap().is_empty(), "claimed twice");
        let state = store
            .outbox_failed(id.clone(), now, format!("refused {attempt}"), policy)
            .await
            .unwrap();
        assert_eq!(state, Some(OutboxState::Pending));
        let row = store.outbox_entry(id.clone()).await.unwrap().unwrap();
        assert_eq!(row.attempts, attempt);
        assert_eq!(
            row.next_attempt_at,
            Some(Timestamp(now.0 + wait * 1_000_000).to_string())
        );
        assert!(
            store
                .claim_outbox(Timestamp(now.0 + wait * 1_000_000 - 1), 10)
                .await
                .unwrap()
                .is_empty(),
            "due before its backoff"
        );
        now = Timestamp(now.0 + wait * 1_000_000);
    }
    assert_eq!(store.claim_outbox(now, 10).await.unwrap().len(), 1);
    let state = store
        .outbox_failed(id.clone(), now, "refused 4".into(), policy)
        .await
        .unwrap();
    assert_eq!(state, Some(OutboxState::Dead));
    assert!(store.claim_outbox(at(86_400), 10).await.unwrap().is_empty());
    let dead = store
        .outbox(OutboxQuery {
            state: Some(OutboxState::Dead),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(dead.entries.len(), 1);
    assert_eq!(dead.entries[0].last_error.as_deref(), Some("refused 4"));

    let retried = store.retry_outbox(id.clone(), now).await.unwrap().unwrap();
    assert_eq!((retried.state, retried.attempts), (OutboxState::Pending, 0));
    assert_eq!(store.claim_outbox(now, 10).await.unwrap().len(), 1);
    assert!(store.outbox_sent(id.clone(), now).await.unwrap());
    let sent = store.outbox_entry(id).await.unwrap().unwrap();
    assert_eq!((sent.state, sent.sent_at), (OutboxState::Sent, Some(now.to_string())));
    assert_eq!(RetryPolicy::default().delay_us(20), 3_600_000_000);
}

#[tokio::test]
async fn rows_claimed_before_a_stop_are_pending_again_after_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        store
            .append(vec![
                identified("i1", "ann", "ann@example.org"),
                payment_failed("p1", "ann"),
            ])
            .await
            .unwrap();
        store.settle().await.unwrap();
        assert_eq!(store.claim_outbox(Timestamp::now(), 10).await.unwrap().len(), 1);
    }
    // The writer thread lets go of the lock once the store is dropped.
    let store = loop {
        match SqliteStore::open_with_journey(dir.path(), Some(&retail())) {
            Ok(store) => {
                same_day(&store);
                break store;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    };
    let claimed = store.claim_outbox(Timestamp::now(), 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].state, OutboxState::Sending);
}

#[tokio::test]
async fn detractors_open_cases_as_events_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let survey = |id: &str, nps: u8| {
        ev(
            json!({"id": id, "type": "survey.answered", "time": "2026-11-23T12:00:00Z", "customer": {"id": "ann"},
                  "data": {"survey": "post-delivery", "nps": nps}}),
        )
    };
    store.append(vec![survey("s1", 3), survey("s2", 9)]).await.unwrap();
    store.settle().await.unwrap();
    store.append(vec![survey("s1", 3)]).await.unwrap();
    store.settle().await.unwrap();
    let cases = store
        .events(EventQuery {
            event_type: Some("case.opened".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .events;
    assert_eq!(cases.len(), 1, "one case for one detractor, however often it is sent");
    let case: Value = serde_json::from_str(&cases[0].raw).unwrap();
    assert_eq!(case["data"]["team"], "delivery");
    assert_eq!(case["data"]["category"], "late_delivery");
    assert_eq!(case["customer"], json!({"id": "ann"}));
    // The case is an event like any other: the case SLA promise is made on it.
    let made = store
        .events(EventQuery {
            event_type: Some("promise.made".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .events;
    // Its first response and its resolution.
    assert_eq!(made.len(), 2);
    assert!(
        made.iter().any(|m| m.raw.contains("case_resolved:troth.case.play-")),
        "{made:?}"
    );
    assert!(all(&store).await.is_empty(), "a case is not an outbound message");
    let report = store.replay(false, &mut |_| {}).unwrap();
    assert!(report.matches(), "{report:?}");
}
