//! The embedded store against its contract: idempotency, identity resolution and
//! merges, pagination, replay.

use serde_json::{Value, json};
use troth_core::{ValidEvent, validate_value};
use troth_store::sqlite::SqliteStore;
use troth_store::{AppendStatus, EventQuery, Store};

fn event(id: &str, customer: Value) -> ValidEvent {
    validate_value(
        json!({"id": id, "type": "page.viewed", "time": "2026-11-23T09:00:00Z", "customer": customer, "data": {"page": "/"}}),
        None,
    )
    .unwrap()
}

fn open() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    (dir, store)
}

fn accepted(statuses: &[AppendStatus]) -> usize {
    statuses
        .iter()
        .filter(|s| matches!(s, AppendStatus::Accepted { .. }))
        .count()
}

#[tokio::test]
async fn the_same_id_again_is_a_duplicate_and_stores_nothing() {
    let (_dir, store) = open();
    let first = store.append(vec![event("e1", json!({"id": "ann"}))]).await.unwrap();
    store.settle().await.unwrap();
    assert!(matches!(first[..], [AppendStatus::Accepted { seq: 1 }]));
    // Again, alone and inside a batch (also twice within the batch).
    let again = store.append(vec![event("e1", json!({"id": "bob"}))]).await.unwrap();
    store.settle().await.unwrap();
    assert_eq!(again, [AppendStatus::Duplicate]);
    let batch = store
        .append(vec![
            event("e2", json!({"id": "ann"})),
            event("e1", json!({"id": "ann"})),
            event("e2", json!({"id": "ann"})),
        ])
        .await
        .unwrap();
    store.settle().await.unwrap();
    assert!(matches!(
        batch[..],
        [
            AppendStatus::Accepted { .. },
            AppendStatus::Duplicate,
            AppendStatus::Duplicate
        ]
    ));
    let page = store
        .events(EventQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.events.len(), 2);
    // The duplicate named another customer: it must not have created one.
    assert!(store.customer("bob".into()).await.unwrap().is_none());
}

#[tokio::test]
async fn identities_resolve_to_one_customer_and_merge() {
    let (_dir, store) = open();
    store
        .append(vec![event("e1", json!({"id": "ann", "email": "Ann@Example.org"}))])
        .await
        .unwrap();
    store.settle().await.unwrap();
    store
        .append(vec![event("e2", json!({"phone": "+44 20 7946 0000"}))])
        .await
        .unwrap();
    store.settle().await.unwrap();
    let ann = store.customer("ann".into()).await.unwrap().unwrap();
    let phone_only = store.customer("phone:+442079460000".into()).await.unwrap().unwrap();
    assert_ne!(ann.id, phone_only.id, "an unknown phone is a new customer");
    // Email lookups are case-insensitive.
    assert_eq!(
        store
            .customer("email:ann@example.org".into())
            .await
            .unwrap()
            .unwrap()
            .id,
        ann.id
    );

    // One event names the email of the first and the phone of the second: one person.
    let statuses = store
        .append(vec![event(
            "e3",
            json!({"email": "ann@example.org", "phone": "+442079460000"}),
        )])
        .await
        .unwrap();
    store.settle().await.unwrap();
    assert_eq!(accepted(&statuses), 1);
    let merged = store.customer(phone_only.id.clone()).await.unwrap().unwrap();
    assert_eq!(merged.id, ann.id, "the older customer survives");
    assert_eq!(merged.merged_from, std::slice::from_ref(&phone_only.id));
    assert_eq!(merged.events, 4, "three events plus the recorded merge");
    assert_eq!(merged.event_counts.get("customer.merged"), Some(&1));
    let kinds: Vec<&str> = merged.identities.iter().map(|i| i.kind.as_str()).collect();
    assert_eq!(kinds, ["email", "id", "phone"]);

    // The merge is itself in the log.
    let log = store
        .events(EventQuery {
            event_type: Some("customer.merged".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(log.events.len(), 1);
    let merge: Value = serde_json::from_str(&log.events[0].raw).unwrap();
    assert_eq!(merge["data"]["into"], json!(ann.id));
    assert_eq!(merge["data"]["from"], json!(phone_only.id));

    // Filtering the log by customer includes the merged customer's events.
    let theirs = store
        .events(EventQuery {
            customer: Some("ann".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(theirs.events.len(), 4);
}

#[tokio::test]
async fn identified_traits_accumulate() {
    let (_dir, store) = open();
    let identified = |id: &str, traits: Value| {
        validate_value(
            json!({"id": id, "type": "customer.identified", "time": "2026-11-23T09:00:00Z", "customer": {"id": "ann"}, "data": {"traits": traits}}),
            None,
        )
        .unwrap()
    };
    store
        .append(vec![identified(
            "e1",
            json!({"name": "Ann", "timezone": "Europe/London"}),
        )])
        .await
        .unwrap();
    store.settle().await.unwrap();
    store
        .append(vec![identified("e2", json!({"name": "Ann Lee"}))])
        .await
        .unwrap();
    store.settle().await.unwrap();
    let ann = store.customer("ann".into()).await.unwrap().unwrap();
    assert_eq!(
        Value::Object(ann.traits),
        json!({"name": "Ann Lee", "timezone": "Europe/London"})
    );
}

#[tokio::test]
async fn following_next_visits_every_event_once() {
    let (_dir, store) = open();
    let events: Vec<ValidEvent> = (0..250)
        .map(|i| event(&format!("e{i}"), json!({"id": format!("c{}", i % 7)})))
        .collect();
    store.append(events).await.unwrap();
    store.settle().await.unwrap();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .events(EventQuery {
                after_seq: after,
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        seen.extend(page.events.iter().map(|e| e.seq));
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, (1..=250).collect::<Vec<i64>>());
}

#[tokio::test]
async fn replay_reproduces_the_stored_projections() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SqliteStore::open(dir.path()).unwrap();
        let mut events = Vec::new();
        for i in 0..300 {
            let customer = match i % 5 {
                0 => json!({"id": format!("c{}", i % 40)}),
                1 => json!({"email": format!("p{}@x.org", i % 30)}),
                2 => json!({"id": format!("c{}", i % 40), "email": format!("p{}@x.org", i % 30)}),
                3 => {
                    json!({"phone": format!("+3312345{:03}", i % 20), "email": format!("p{}@x.org", i % 30)})
                }
                _ => {
                    json!({"external": {"shop": format!("s{}", i % 25)}, "phone": format!("+3312345{:03}", i % 20)})
                }
            };
            events.push(event(&format!("e{i}"), customer));
        }
        for chunk in events.chunks(37) {
            store.append(chunk.to_vec()).await.unwrap();
            store.settle().await.unwrap();
        }
        let report = store.replay(false, &mut |_| {}).unwrap();
        assert!(report.matches(), "{report:?}");
        assert_eq!(report.events, 300 + merges(&store).await);
    }
    // Tamper with a projection: replay sees it, and with write it repairs it.
    let conn = rusqlite::Connection::open(dir.path().join("projections.db")).unwrap();
    conn.execute(
        "UPDATE identities SET cid = cid + 1 WHERE key = (SELECT min(key) FROM identities)",
        [],
    )
    .unwrap();
    conn.execute("DELETE FROM event_customers WHERE seq = 5", []).unwrap();
    conn.execute("UPDATE event_type_counts SET n = n + 1 WHERE type = 'page.viewed'", [])
        .unwrap();
    drop(conn);
    let store = SqliteStore::open(dir.path()).unwrap();
    let report = store.replay(true, &mut |_| {}).unwrap();
    assert_eq!(report.differences["identities"], 2);
    assert_eq!(report.differences["event_customers"], 1);
    assert_eq!(report.differences["event_type_counts"], 2);
    assert!(report.written);
    assert!(store.replay(false, &mut |_| {}).unwrap().matches());
}

/// `troth replay --projector NAME`: one projector is rebuilt, repaired, and the
/// others are left as they are, tampered or not.
#[tokio::test]
async fn replay_of_one_projector_rebuilds_it_alone() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SqliteStore::open(dir.path()).unwrap();
        let events: Vec<ValidEvent> = (0..120)
            .map(|i| event(&format!("e{i}"), json!({"id": format!("c{}", i % 15)})))
            .collect();
        store.append(events).await.unwrap();
        store.settle().await.unwrap();
    }
    let stories = rusqlite::Connection::open(dir.path().join("stories.db")).unwrap();
    stories
        .execute("DELETE FROM customer_events WHERE seq = 7", [])
        .unwrap();
    drop(stories);
    let conn = rusqlite::Connection::open(dir.path().join("projections.db")).unwrap();
    conn.execute(
        "UPDATE identities SET cid = cid + 1 WHERE key = (SELECT min(key) FROM identities)",
        [],
    )
    .unwrap();
    drop(conn);
    let store = SqliteStore::open(dir.path()).unwrap();

    let unknown = store.replay_projector(Some("story"), true, &mut |_| {}).unwrap_err();
    let message = unknown.to_string();
    assert!(message.contains(r#"no projector is named "story""#), "{message}");
    assert!(message.contains("identities, counts, promises"), "{message}");

    let report = store.replay_projector(Some("stories"), true, &mut |_| {}).unwrap();
    assert_eq!(report.events, 120);
    assert_eq!(
        report.customers, 15,
        "the stored customers, the identities not being rebuilt"
    );
    assert_eq!(
        report.differences.keys().collect::<Vec<_>>(),
        ["customer_events"],
        "only the stories' table is compared"
    );
    assert_eq!(report.differences["customer_events"], 1);
    assert!(report.written);

    // The copies are repaired; the tampered identities are as they were.
    let report = store.replay(false, &mut |_| {}).unwrap();
    assert_eq!(report.differences["customer_events"], 0, "{report:?}");
    assert_eq!(report.differences["identities"], 2, "{report:?}");
}

/// A projector whose tables another version of it wrote is rebuilt from the log
/// when the store opens, and it alone.
#[tokio::test]
async fn a_projector_of_another_version_is_rebuilt_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SqliteStore::open(dir.path()).unwrap();
        let events: Vec<ValidEvent> = (0..60)
            .map(|i| event(&format!("e{i}"), json!({"id": format!("c{}", i % 7)})))
            .collect();
        store.append(events).await.unwrap();
        store.settle().await.unwrap();
    }
    let projections = dir.path().join("projections.db");
    let conn = rusqlite::Connection::open(&projections).unwrap();
    let versions: Vec<(String, i64)> = conn
        .prepare("SELECT key, value FROM meta WHERE key LIKE 'version:%' ORDER BY key")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(versions.contains(&("version:stories".into(), 1)), "{versions:?}");
    assert!(versions.contains(&("version:identities".into(), 1)), "{versions:?}");
    // The stories' copies as an older version left them; the identities tampered at their own version.
    let stories = rusqlite::Connection::open(dir.path().join("stories.db")).unwrap();
    stories
        .execute("DELETE FROM customer_events WHERE seq IN (3, 4)", [])
        .unwrap();
    drop(stories);
    conn.execute("UPDATE meta SET value = 0 WHERE key = 'version:stories'", [])
        .unwrap();
    conn.execute(
        "UPDATE identities SET cid = cid + 1 WHERE key = (SELECT min(key) FROM identities)",
        [],
    )
    .unwrap();
    drop(conn);

    let store = SqliteStore::open(dir.path()).unwrap();
    let report = store.replay(false, &mut |_| {}).unwrap();
    assert_eq!(report.differences["customer_events"], 0, "rebuilt at open: {report:?}");
    assert_eq!(report.differences["identities"], 2, "left as it was: {report:?}");
    drop(store);
    let conn = rusqlite::Connection::open(&projections).unwrap();
    let stories: i64 = conn
        .query_row("SELECT value FROM meta WHERE key = 'version:stories'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stories, 1, "the version it was rebuilt by is recorded");
}

/// A store from before the event index: the log had indexes by subject and by
/// type, and no event index was kept. As it opens, the log's indexes go and the
/// event index is built from the log, so listings by subject and by type still
/// find every event.
#[tokio::test]
async fn a_store_from_before_the_event_index_gets_it_built_from_the_log() {
    reopened_in_an_earlier_shape(|dir| {
        let log = rusqlite::Connection::open(dir.join("troth.db")).unwrap();
        log.execute_batch(
            "CREATE INDEX events_by_subject ON events(subject, seq) WHERE subject IS NOT NULL;
             CREATE INDEX events_by_type ON events(type, seq);",
        )
        .unwrap();
        let stories = rusqlite::Connection::open(dir.join("stories.db")).unwrap();
        stories
            .execute_batch("DROP TABLE subject_events; DROP TABLE type_events;")
            .unwrap();
        let projections = rusqlite::Connection::open(dir.join("projections.db")).unwrap();
        projections
            .execute_batch("DELETE FROM meta WHERE key = 'version:event_index';")
            .unwrap();
    })
    .await;
}

/// A store whose event index was a projection inside `projections.db`: as it
/// opens, that one is dropped and the index is built in `stories.db` from the log.
#[tokio::test]
async fn a_store_with_the_event_index_among_the_projections_gets_it_moved() {
    reopened_in_an_earlier_shape(|dir| {
        let stories = rusqlite::Connection::open(dir.join("stories.db")).unwrap();
        stories
            .execute_batch("DROP TABLE subject_events; DROP TABLE type_events;")
            .unwrap();
        let projections = rusqlite::Connection::open(dir.join("projections.db")).unwrap();
        projections
            .execute_batch(
                "CREATE TABLE subject_events (subject TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (subject, seq)) WITHOUT ROWID;
                 CREATE TABLE type_events (type TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (type, seq)) WITHOUT ROWID;
                 INSERT INTO type_events VALUES ('page.viewed', 1);
                 UPDATE meta SET value = 1 WHERE key = 'version:event_index';",
            )
            .unwrap();
    })
    .await;
}

/// Drivers' positions have no entries in the event index by type (the log read in
/// order finds them), yet a listing by their type finds every one, a page at a
/// time either way round; a store whose index held them loses those entries as it
/// opens, and replay finds the index equal to the log.
#[tokio::test]
async fn positions_are_listed_by_type_from_the_log_and_kept_out_of_the_type_index() {
    let dir = tempfile::tempdir().unwrap();
    let positions: Vec<i64> = {
        let store = SqliteStore::open(dir.path()).unwrap();
        let events: Vec<ValidEvent> = (0..30)
            .map(|i| {
                let event = if i % 3 == 0 {
                    json!({"id": format!("v{i}"), "type": "page.viewed", "time": "2026-11-23T09:00:00Z",
                           "customer": {"id": "c1"}, "data": {"page": "/"}})
                } else {
                    json!({"id": format!("p{i}"), "type": "courier.position", "time": "2026-11-23T09:00:00Z",
                           "subject": "driver:d1", "data": {"lat": 51.5, "lon": -0.1}})
                };
                validate_value(event, None).unwrap()
            })
            .collect();
        let statuses = store.append(events).await.unwrap();
        store.settle().await.unwrap();
        statuses
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 3 != 0)
            .map(|(_, status)| match status {
                AppendStatus::Accepted { seq } => *seq,
                other => panic!("{other:?}"),
            })
            .collect()
    };
    let stories = || rusqlite::Connection::open(dir.path().join("stories.db")).unwrap();
    let indexed = |type_: &str| -> i64 {
        stories()
            .query_row("SELECT count(*) FROM type_events WHERE type = ?1", [type_], |r| {
                r.get(0)
            })
            .unwrap()
    };
    assert_eq!(indexed("courier.position"), 0);
    assert_eq!(indexed("page.viewed"), 10);
    // A store from before: the index held positions too.
    stories()
        .execute("INSERT INTO type_events (type, seq) SELECT 'courier.position', 2", [])
        .unwrap();
    rusqlite::Connection::open(dir.path().join("projections.db"))
        .unwrap()
        .execute("UPDATE meta SET value = 2 WHERE key = 'version:event_index'", [])
        .unwrap();

    let store = SqliteStore::open(dir.path()).unwrap();
    assert_eq!(indexed("courier.position"), 0, "rebuilt as it opened");
    for newest_first in [false, true] {
        let mut listed = Vec::new();
        let mut query = EventQuery {
            event_type: Some("courier.position".into()),
            newest_first,
            limit: 7,
            ..Default::default()
        };
        loop {
            let page = store.events(query.clone()).await.unwrap();
            assert!(
                page.events
                    .iter()
                    .all(|e| e.raw.contains(r#""type":"courier.position""#))
            );
            listed.extend(page.events.iter().map(|e| e.seq));
            let Some(next) = page.next_after else { break };
            if newest_first {
                query.before_seq = Some(next);
            } else {
                query.after_seq = Some(next);
            }
        }
        let mut expected = positions.clone();
        if newest_first {
            expected.reverse();
        }
        assert_eq!(listed, expected, "newest first: {newest_first}");
    }
    let report = store.replay(false, &mut |_| {}).unwrap();
    assert_eq!(report.differences["type_events"], 0, "{report:?}");
}

/// Writes 40 events, lists them by subject and by type, puts the store's files
/// back to an earlier shape with `back`, opens it again: the same listings, a
/// replay that finds the event index equal to the log, and the log with no index
/// but its own keys, nor the projections' file with the index.
async fn reopened_in_an_earlier_shape(back: impl FnOnce(&std::path::Path)) {
    let dir = tempfile::tempdir().unwrap();
    let listed = |store: SqliteStore, query: EventQuery| async move {
        let page = store.events(query).await.unwrap();
        page.events.iter().map(|e| e.seq).collect::<Vec<_>>()
    };
    let by_subject = EventQuery {
        subject: Some("order:o-1".into()),
        limit: 100,
        ..Default::default()
    };
    let by_type = EventQuery {
        event_type: Some("page.viewed".into()),
        limit: 100,
        ..Default::default()
    };
    let (subject_before, type_before) = {
        let store = SqliteStore::open(dir.path()).unwrap();
        let events: Vec<ValidEvent> = (0..40)
            .map(|i| {
                let mut event = json!({"id": format!("e{i}"), "type": "page.viewed", "time": "2026-11-23T09:00:00Z",
                                       "customer": {"id": format!("c{}", i % 3)}, "data": {"page": "/"}});
                if i % 4 == 0 {
                    event["subject"] = json!("order:o-1");
                }
                validate_value(event, None).unwrap()
            })
            .collect();
        store.append(events).await.unwrap();
        store.settle().await.unwrap();
        (
            listed(store.clone(), by_subject.clone()).await,
            listed(store, by_type.clone()).await,
        )
    };
    assert_eq!(subject_before.len(), 10);
    assert_eq!(type_before.len(), 40);
    back(dir.path());

    let store = SqliteStore::open(dir.path()).unwrap();
    assert_eq!(listed(store.clone(), by_subject).await, subject_before);
    assert_eq!(listed(store.clone(), by_type).await, type_before);
    let report = store.replay(false, &mut |_| {}).unwrap();
    assert_eq!(report.differences["subject_events"], 0, "{report:?}");
    assert_eq!(report.differences["type_events"], 0, "{report:?}");
    drop(store);
    let log = rusqlite::Connection::open(dir.path().join("troth.db")).unwrap();
    let indexes: i64 = log
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' AND sql IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(indexes, 0, "only the log's own keys are left");
    let projections = rusqlite::Connection::open(dir.path().join("projections.db")).unwrap();
    let index_tables: i64 = projections
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name IN ('subject_events', 'type_events')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(index_tables, 0, "the event index is in stories.db alone");
}

async fn merges(store: &SqliteStore) -> u64 {
    let page = store
        .events(EventQuery {
            event_type: Some("customer.merged".into()),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!page.events.is_empty(), "the test data should cause merges");
    page.events.len() as u64
}

#[test]
fn a_second_process_is_refused_clearly() {
    let (dir, _store) = open();
    let err = SqliteStore::open(dir.path()).err().expect("the store is held");
    let message = err.to_string();
    assert!(message.contains("in use by another process"), "{message}");
    assert!(message.contains(&format!("pid {}", std::process::id())), "{message}");
}

#[tokio::test]
async fn keys_authenticate_by_secret_and_can_be_revoked() {
    use troth_store::{NewKey, Scope};
    let (_dir, store) = open();
    let (key, secret) = store
        .create_key(NewKey {
            name: Some("pos".into()),
            scopes: vec![Scope::Ingest],
        })
        .await
        .unwrap();
    assert!(secret.starts_with("troth_") && secret.len() == 70);
    let found = store.authenticate(&secret).unwrap();
    assert!(found.allows(Scope::Ingest) && !found.allows(Scope::Read));
    assert!(store.authenticate("troth_wrong").is_none());
    assert_eq!(store.list_keys().await.unwrap(), std::slice::from_ref(&key));
    assert!(store.delete_key(key.uid.clone()).await.unwrap());
    assert!(store.authenticate(&secret).is_none());
    assert!(!store.delete_key(key.uid).await.unwrap());
}

#[tokio::test]
async fn the_overview_counts_events_by_type_and_customers() {
    let (_dir, store) = open();
    store
        .append(vec![
            event("e1", json!({"id": "ann"})),
            event("e2", json!({"id": "bob"})),
        ])
        .await
        .unwrap();
    store.settle().await.unwrap();
    store
        .append(vec![
            event("e2", json!({"id": "bob"})),
            event("e3", json!({"email": "ann@x.org"})),
        ])
        .await
        .unwrap();
    store.settle().await.unwrap();
    // One event shows ann@x.org is ann: a merge, recorded as an event of its own.
    store
        .append(vec![event("e4", json!({"id": "ann", "email": "ann@x.org"}))])
        .await
        .unwrap();
    store.settle().await.unwrap();
    let overview = store.overview().await.unwrap();
    assert_eq!(
        overview.by_type,
        [("page.viewed".to_owned(), 4), ("customer.merged".to_owned(), 1)]
    );
    assert_eq!((overview.events, overview.customers, overview.last_seq), (5, 2, 5));
    let newest = store
        .events(EventQuery {
            newest_first: true,
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    let seqs: Vec<i64> = newest.events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [5, 4]);
}

/// A store written before the log and the projections had files of their own keeps
/// its log, its messages and the links customers hold; the rest is projected again.
#[tokio::test]
async fn a_store_from_before_the_split_keeps_its_log_messages_and_links() {
    let dir = tempfile::tempdir().unwrap();
    {
        let conn = rusqlite::Connection::open(dir.path().join("troth.db")).unwrap();
        conn.execute_batch(
            "CREATE TABLE events (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, type TEXT NOT NULL,
                 time_us INTEGER NOT NULL, received_us INTEGER NOT NULL, customer_id INTEGER, subject TEXT,
                 body TEXT NOT NULL);
             CREATE TABLE tracking_links (shipment TEXT PRIMARY KEY, token TEXT NOT NULL, hash TEXT NOT NULL UNIQUE,
                 created_us INTEGER NOT NULL);
             INSERT INTO tracking_links VALUES ('s1', 'the-token-ann-holds', 'its-hash', 1);
             CREATE TABLE outbox (id TEXT NOT NULL UNIQUE, play TEXT NOT NULL, event_id TEXT NOT NULL,
                 channel TEXT NOT NULL, recipient TEXT, payload TEXT NOT NULL, state TEXT NOT NULL,
                 attempts INTEGER NOT NULL DEFAULT 0, next_attempt_us INTEGER, last_error TEXT,
                 created_us INTEGER NOT NULL, sent_us INTEGER);
             INSERT INTO outbox (id, play, event_id, channel, recipient, payload, state, created_us, sent_us)
                 VALUES ('play:p:e:0', 'p', 'e', 'email', 'ann@example.org', '{}', 'sent', 1, 2);",
        )
        .unwrap();
        let created = json!({"id": "c1", "type": "shipment.created", "time": "2026-11-23T09:00:00Z",
            "subject": "shipment:s1", "customer": {"id": "ann"}, "data": {"shipment": "s1", "order": "o1", "carrier": "swiftpost", "service": "standard"}});
        troth_core::validate_value(created.clone(), None).unwrap();
        for (seq, body) in [
            (1, created),
            (2, event("e1", json!({"id": "ann"})).raw.parse().unwrap()),
        ] {
            let body: Value = body;
            conn.execute(
                "INSERT INTO events (seq, id, type, time_us, received_us, customer_id, subject, body)
                 VALUES (?1, ?2, ?3, 0, 0, 1, ?4, ?5)",
                rusqlite::params![
                    seq,
                    body["id"].as_str(),
                    body["type"].as_str(),
                    body["subject"].as_str(),
                    body.to_string()
                ],
            )
            .unwrap();
        }
    }
    let store = SqliteStore::open(dir.path()).unwrap();
    store.settle().await.unwrap();
    assert_eq!(store.progress().projected(), 2);
    let link = store.tracking_link("s1".into()).await.unwrap().unwrap();
    assert_eq!(link.token, "the-token-ann-holds", "the link Ann holds still works");
    let outbox = store.outbox(Default::default()).await.unwrap().entries;
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0].id, "play:p:e:0");
    let ann = store.customer("ann".into()).await.unwrap().unwrap();
    assert_eq!(ann.events, 2);
    assert!(store.replay(false, &mut |_| {}).unwrap().matches());
}

#[tokio::test]
async fn an_orders_events_include_its_shipments_in_log_order() {
    let (_dir, store) = open();
    let at = |id: &str, kind: &str, time: &str, subject: &str, data: Value| {
        validate_value(
            json!({"id": id, "type": kind, "time": time, "subject": subject, "data": data}),
            None,
        )
        .unwrap()
    };
    let placed = |id: &str, order: &str, time: &str| {
        let data = json!({"order": order, "items": [{"sku": "tyre", "qty": 1, "price": 100}], "total": 100,
                          "currency": "EUR", "delivery": "home"});
        at(id, "order.placed", time, &format!("order:{order}"), data)
    };
    store
        .append(vec![
            placed("p", "o-1", "2026-11-02T09:00:00Z"),
            // A view of the shipment before troth knows whose it is still counts once linked.
            at(
                "v",
                "tracking.viewed",
                "2026-11-02T09:30:00Z",
                "shipment:s-1",
                json!({"shipment": "s-1"}),
            ),
            at(
                "c",
                "shipment.created",
                "2026-11-02T10:00:00Z",
                "shipment:s-1",
                json!({"shipment": "s-1", "order": "o-1", "carrier": "c", "service": "std"}),
            ),
            placed("x", "o-2", "2026-11-02T11:00:00Z"),
            at(
                "d",
                "shipment.delivered",
                "2026-11-03T10:00:00Z",
                "shipment:s-1",
                json!({"proof": {"kind": "handed"}}),
            ),
        ])
        .await
        .unwrap();
    store.settle().await.unwrap();
    let events = store.order_events(vec!["o-1".into(), "o-9".into()]).await.unwrap();
    let got: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.order.as_str(), e.event_type.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("o-1", "order.placed"),
            ("o-1", "tracking.viewed"),
            ("o-1", "shipment.created"),
            ("o-1", "shipment.delivered")
        ]
    );
    assert_eq!(events[3].time_us, 1_793_700_000_000_000, "2026-11-03T10:00:00Z");
}

/// A story reads a customer's events from their copy in the customer's order
/// (`customer_events`): replay finds a copy that differs from the log and writes it
/// again, and a store from before the copy gets it when opened.
#[tokio::test]
async fn the_events_in_customer_order_follow_the_log_and_replay_checks_them() {
    let (dir, store) = open();
    let events: Vec<ValidEvent> = (0..5)
        .map(|i| event(&format!("e{i}"), json!({"id": if i % 2 == 0 { "ann" } else { "bob" }})))
        .collect();
    store.append(events).await.unwrap();
    store.settle().await.unwrap();
    let told = |store: &SqliteStore, who: &'static str| {
        let store = store.clone();
        async move {
            let story = store.story(who.to_owned(), 100, 10).await.unwrap().unwrap();
            story.events.iter().map(|(_, e)| e.id.clone()).collect::<Vec<_>>()
        }
    };
    assert_eq!(told(&store, "ann").await, ["e0", "e2", "e4"]);
    assert_eq!(told(&store, "bob").await, ["e1", "e3"]);

    // One copy altered and one lost, as a fault on disk or a bug would leave them.
    let stories = rusqlite::Connection::open(dir.path().join("stories.db")).unwrap();
    stories.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    stories
        .execute_batch(
            "UPDATE customer_events SET body = replace(body, '\"/\"', '\"/elsewhere\"') WHERE seq = 1;
             DELETE FROM customer_events WHERE seq = 2;",
        )
        .unwrap();
    assert_eq!(told(&store, "bob").await, ["e3"], "the story reads the copy");
    let report = store.replay(false, &mut |_| {}).unwrap();
    assert_eq!(report.differences["customer_events"], 2, "{report:?}");
    assert!(store.replay(true, &mut |_| {}).unwrap().written);
    assert!(store.replay(false, &mut |_| {}).unwrap().matches());
    assert_eq!(told(&store, "bob").await, ["e1", "e3"]);

    // A store from before `stories.db`, which kept the copies in `projections.db`:
    // they move over when it opens.
    drop(store);
    let projections = rusqlite::Connection::open(dir.path().join("projections.db")).unwrap();
    projections.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    projections
        .execute(
            "ATTACH DATABASE ?1 AS s",
            [dir.path().join("stories.db").to_str().unwrap()],
        )
        .unwrap();
    projections
        .execute_batch(
            "CREATE TABLE main.customer_events (cid INTEGER NOT NULL, seq INTEGER NOT NULL, body TEXT NOT NULL,
                                               PRIMARY KEY (cid, seq)) WITHOUT ROWID;
             INSERT INTO main.customer_events SELECT cid, seq, body FROM s.customer_events WHERE seq <> 5;
             DETACH DATABASE s;",
        )
        .unwrap();
    drop(stories);
    remove_stories(dir.path());
    let store = SqliteStore::open(dir.path()).unwrap();
    assert_eq!(
        told(&store, "ann").await,
        ["e0", "e2"],
        "what the projections' file held, moved"
    );
    let moved: bool = projections
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'customer_events')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(!moved, "no longer in projections.db");
    assert!(store.replay(true, &mut |_| {}).unwrap().written);

    // A store from before any copy: they are made from the log as it opens.
    drop(store);
    remove_stories(dir.path());
    let store = SqliteStore::open(dir.path()).unwrap();
    store.settle().await.unwrap();
    assert_eq!(told(&store, "ann").await, ["e0", "e2", "e4"]);
    assert_eq!(told(&store, "bob").await, ["e1", "e3"]);
    assert!(store.replay(false, &mut |_| {}).unwrap().matches());
}

fn remove_stories(dir: &std::path::Path) {
    for file in ["stories.db", "stories.db-wal", "stories.db-shm"] {
        let _ = std::fs::remove_file(dir.join(file));
    }
}

/// A promise their order made is theirs twice over — made by one of their events and
/// about one of their orders — and is told once.
#[tokio::test]
async fn a_promise_found_two_ways_is_in_the_story_once() {
    let dir = tempfile::tempdir().unwrap();
    let journey = troth_core::journey::parse_journey(include_str!("../../../journeys/retail.toml")).unwrap();
    let store = SqliteStore::open_with_journey(dir.path(), Some(&journey)).unwrap();
    let placed = validate_value(
        json!({"id": "o1", "type": "order.placed", "time": "2026-11-23T09:00:00Z", "subject": "order:o-1",
               "customer": {"id": "ann"},
               "data": {"order": "o-1", "items": [{"sku": "a", "qty": 1, "price": 100}], "total": 100,
                        "currency": "EUR", "delivery": "home", "promised_to": "2026-11-25T18:00:00Z"}}),
        None,
    )
    .unwrap();
    store.append(vec![placed]).await.unwrap();
    store.settle().await.unwrap();
    let story = store.story("ann".to_owned(), 100, 10).await.unwrap().unwrap();
    assert!(
        story.events.iter().any(|(_, e)| e.event_type == "promise.made"),
        "the promise's making is one of their events: {:?}",
        story.events
    );
    assert_eq!(story.promises.len(), 1, "{:?}", story.promises);
    assert_eq!(story.promises[0].subject, "order:o-1");
}

#[tokio::test]
async fn the_projections_are_copied_from_their_wal_into_their_file_while_the_store_runs() {
    let (dir, store) = open();
    let file = dir.path().join("projections.db");
    let size = || std::fs::metadata(&file).map_or(0, |m| m.len());
    let before = size();
    let events: Vec<ValidEvent> = (0..3_000)
        .map(|i| event(&format!("e{i}"), json!({"email": format!("c{i}@example.com")})))
        .collect();
    store.append(events).await.unwrap();
    store.settle().await.unwrap();
    // The projections' commits never copy their WAL themselves; the checkpoint
    // thread does, every 100 ms. Until it has, the file keeps its size.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while size() < before + (256 << 10) && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        size() >= before + (256 << 10),
        "the projections' file grew from {before} to {} bytes",
        size()
    );
}
