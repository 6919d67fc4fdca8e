//! The log's WAL stays small: no projection transaction holds a snapshot of the log
//! (SQLite starts a WAL over only when no reader is in it), and the log writer
//! starts it over once it passes its limit. What the projections keep instead of
//! reading the log — an order's stages, the promise changes they hold — is filled
//! for a store from before them.

use std::sync::{Arc, Barrier};

use serde_json::{Value, json};
use troth_core::journey::parse_journey;
use troth_core::{ValidEvent, validate_event, validate_value};
use troth_store::Store;
use troth_store::sqlite::SqliteStore;

fn open(dir: &std::path::Path) -> SqliteStore {
    let map = parse_journey(include_str!("../../../journeys/retail.toml")).unwrap();
    SqliteStore::open_with_journey(dir, Some(&map)).unwrap()
}

/// Opens the store again once the previous one's threads have let go of the lock.
async fn reopen(dir: &std::path::Path) -> SqliteStore {
    let map = parse_journey(include_str!("../../../journeys/retail.toml")).unwrap();
    loop {
        match SqliteStore::open_with_journey(dir, Some(&map)) {
            Ok(store) => break store,
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
}

fn event(id: &str, event_type: &str, minute: u32, subject: &str, data: Value) -> ValidEvent {
    validate_value(
        json!({"id": id, "type": event_type, "time": format!("2026-11-23T08:{minute:02}:00Z"), "subject": subject,
               "customer": {"email": "ann@example.org"}, "data": data}),
        None,
    )
    .unwrap()
}

fn placed(order: &str, minute: u32) -> ValidEvent {
    let data = json!({"order": order, "items": [{"sku": "t", "qty": 1, "price": 100}], "total": 100,
                      "currency": "EUR", "delivery": "home", "promised_to": "2026-11-24T18:00:00Z"});
    event(
        &format!("{order}.placed"),
        "order.placed",
        minute,
        &format!("order:{order}"),
        data,
    )
}

fn picked(order: &str, minute: u32) -> ValidEvent {
    event(
        &format!("{order}.picked"),
        "order.picked",
        minute,
        &format!("order:{order}"),
        json!({}),
    )
}

fn created(shipment: &str, order: &str, minute: u32) -> ValidEvent {
    event(
        &format!("{shipment}.created"),
        "shipment.created",
        minute,
        &format!("shipment:{shipment}"),
        json!({"shipment": shipment, "order": order, "carrier": "x", "service": "std"}),
    )
}

/// The stages of a shipment as the projection holds them.
async fn stages(store: &SqliteStore, shipment: &str) -> Vec<&'static str> {
    let link = store.issued_link(shipment.into()).await.unwrap().expect("a link");
    let tracked = store.tracked(link.token).await.unwrap().expect("the shipment");
    tracked.shipment.stages().iter().map(|s| s.stage.as_str()).collect()
}

/// `PRAGMA wal_checkpoint(TRUNCATE)` on a connection of its own that does not wait:
/// (busy, the WAL file's size after).
fn truncate_wal(dir: &std::path::Path) -> (i64, u64) {
    let conn = rusqlite::Connection::open(dir.join("troth.db")).unwrap();
    conn.busy_timeout(std::time::Duration::ZERO).unwrap();
    let busy = conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
        .unwrap();
    (busy, std::fs::metadata(dir.join("troth.db-wal")).unwrap().len())
}

/// The projections stopped in the middle of a batch, after projecting a shipment
/// created after its order's stages and a promise the engine made: the WAL can be
/// emptied at that moment, so the batch's transaction holds no snapshot of the log.
#[tokio::test]
async fn a_projection_batch_holds_no_snapshot_of_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append(vec![placed("o1", 0), picked("o1", 5)]).await.unwrap();
    store.settle().await.unwrap();

    let pause = Arc::new(Barrier::new(2));
    let held = pause.clone();
    store.set_fault(Some(Arc::new(move |event: &ValidEvent| {
        if event.id == "marker" {
            held.wait(); // stopped here,
            held.wait(); // until the test has looked.
        }
    })));
    // One append, so one commit and one batch: the order's stages reach the new
    // shipment, a second order's promise is made, then the batch stops at the marker.
    store
        .append(vec![
            created("s1", "o1", 10),
            placed("o2", 11),
            event("marker", "page.viewed", 12, "page:/", json!({"page": "/"})),
        ])
        .await
        .unwrap();
    pause.wait();
    let (busy, size) = truncate_wal(dir.path());
    pause.wait();
    store.set_fault(None);
    assert_eq!(
        (busy, size),
        (0, 0),
        "a reader in the middle of a projection batch keeps the log's WAL"
    );

    store.settle().await.unwrap();
    assert_eq!(stages(&store, "s1").await, ["placed", "picked"]);
    let report = store.replay(false, &mut |_| {}).unwrap();
    assert!(report.matches(), "{report:?}");
}

/// A small retailer's events imported in many commits, with a small WAL limit: the
/// log's WAL never grows much past it. Without the log writer starting it over,
/// SQLite would only do so once it holds 1,000 pages (4 MiB).
#[tokio::test]
async fn the_logs_wal_stays_near_its_limit_through_an_import() {
    const LIMIT: u64 = 256 << 10;
    let mut world = troth_sim::World::from_toml(include_str!("../../../worlds/retail.toml")).unwrap();
    world.customers = 600;
    world.days = 5;
    let mut events = Vec::new();
    troth_sim::simulate(&world, &mut |line| {
        events.push(validate_event(line).unwrap());
        Ok(())
    })
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.set_wal_limit(LIMIT);
    let mut written = 0;
    for chunk in events.chunks(200) {
        store.append(chunk.to_vec()).await.unwrap();
        written += chunk.iter().map(|e| e.raw.len()).sum::<usize>();
    }
    store.settle().await.unwrap();
    let wal = store.wal_stats();
    let size = std::fs::metadata(dir.path().join("troth.db-wal")).unwrap().len();
    assert!(
        written > 8 * LIMIT as usize,
        "the import writes much more than the limit: {written} bytes of events"
    );
    assert!(wal.restarts_tried > 0, "{wal:?}");
    // One commit of 200 events writes well under a MiB to the WAL.
    let bound = LIMIT + (1 << 20);
    assert!(wal.largest_bytes <= bound, "the WAL reached {wal:?}");
    assert!(size <= bound, "the WAL is {size} bytes after the import");
}

/// The customers' copies' WAL is copied into `stories.db` by the copier thread, as
/// the projections' is, every second and long before SQLite's own threshold (their
/// writer has SQLite's copy turned off: a copy of 64 MiB inside one of its commits
/// stalled it, the projections behind it and, through back-pressure, the appends).
#[tokio::test]
async fn the_customers_copies_wal_is_copied_into_their_file_by_the_copier() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let stories = dir.path().join("stories.db");
    let before = std::fs::metadata(&stories).unwrap().len();
    let events: Vec<ValidEvent> = (0..4_000).map(|i| placed(&format!("o{i}"), i % 60)).collect();
    for chunk in events.chunks(500) {
        store.append(chunk.to_vec()).await.unwrap();
    }
    store.settle().await.unwrap();
    // The copier runs every second; the file grows once it has copied the copies in.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let size = std::fs::metadata(&stories).unwrap().len();
        if size > before + (500 << 10) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "stories.db stayed at {size} bytes ({before} at open): its WAL was not copied"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A store whose projections were kept before `order_stages` and `promise_changes`
/// existed gets them filled from its log as far as it projected: a shipment created
/// afterwards for an earlier order has the order's stages, its promise is kept once,
/// and a replay finds what is stored.
#[tokio::test]
async fn a_store_from_before_order_stages_and_promise_changes_fills_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append(vec![placed("o1", 0), picked("o1", 5)]).await.unwrap();
    store.settle().await.unwrap();
    drop(store);
    let store = reopen(dir.path()).await;
    drop(store);
    let projections = rusqlite::Connection::open(dir.path().join("projections.db")).unwrap();
    projections
        .execute_batch("DROP TABLE order_stages; DROP TABLE promise_changes;")
        .unwrap();
    drop(projections);

    let store = reopen(dir.path()).await;
    let delivered = event(
        "s1.delivered",
        "shipment.delivered",
        30,
        "shipment:s1",
        json!({"proof": {"kind": "handed"}}),
    );
    store.append(vec![created("s1", "o1", 10), delivered]).await.unwrap();
    store.settle().await.unwrap();
    assert_eq!(stages(&store, "s1").await, ["placed", "picked", "delivered"]);
    let page = store
        .events(troth_store::EventQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let promises: Vec<String> = page
        .events
        .iter()
        .map(|e| {
            serde_json::from_str::<Value>(&e.raw).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .filter(|t| t.starts_with("promise."))
        .collect();
    assert_eq!(promises, ["promise.made", "promise.kept"]);
    let report = store.replay(false, &mut |_| {}).unwrap();
    assert!(report.matches(), "{report:?}");
}
