//! Carrier scorecards kept by the store: exact figures from hand-made events, facts
//! that arrive before the carrier is known, a restart, and replay.

use serde_json::{Value, json};
use troth_core::journey::parse_journey;
use troth_core::scorecard::{ScoreTally, rank};
use troth_core::{ValidEvent, validate_value};
use troth_store::Store;
use troth_store::sqlite::SqliteStore;

fn event(id: &str, event_type: &str, time: &str, shipment: &str, data: Value) -> ValidEvent {
    validate_value(
        json!({"id": id, "type": event_type, "time": format!("2026-11-23T{time}:00Z"),
               "subject": format!("shipment:{shipment}"), "customer": {"email": "ann@example.org"}, "data": data}),
        None,
    )
    .unwrap()
}

fn created(shipment: &str, carrier: &str) -> ValidEvent {
    let data = json!({"shipment": shipment, "order": format!("o-{shipment}"), "carrier": carrier, "service": "home"});
    event(
        &format!("{shipment}-created"),
        "shipment.created",
        "07:00",
        shipment,
        data,
    )
}

fn window(shipment: &str, start: &str, end: &str) -> ValidEvent {
    let data =
        json!({"window_start": format!("2026-11-23T{start}:00Z"), "window_end": format!("2026-11-23T{end}:00Z")});
    event(
        &format!("{shipment}-window"),
        "shipment.window_set",
        "08:00",
        shipment,
        data,
    )
}

fn out(shipment: &str, driver: &str, time: &str) -> ValidEvent {
    event(
        &format!("{shipment}-out-{driver}"),
        "shipment.out_for_delivery",
        time,
        shipment,
        json!({"driver": driver}),
    )
}

fn delivered(shipment: &str, time: &str) -> ValidEvent {
    let data = json!({"proof": {"kind": "handed"}});
    event(
        &format!("{shipment}-delivered"),
        "shipment.delivered",
        time,
        shipment,
        data,
    )
}

fn failed(shipment: &str, time: &str) -> ValidEvent {
    let data = json!({"reason": "nobody home"});
    event(
        &format!("{shipment}-failed"),
        "shipment.attempt_failed",
        time,
        shipment,
        data,
    )
}

fn lost(shipment: &str, time: &str) -> ValidEvent {
    event(&format!("{shipment}-lost"), "shipment.lost", time, shipment, json!({}))
}

fn viewed(shipment: &str, n: u32, time: &str) -> ValidEvent {
    let data = json!({"shipment": shipment});
    event(&format!("{shipment}-view-{n}"), "tracking.viewed", time, shipment, data)
}

fn open(dir: &std::path::Path) -> SqliteStore {
    let map = parse_journey(include_str!("../../../journeys/retail.toml")).unwrap();
    SqliteStore::open_with_journey(dir, Some(&map)).unwrap()
}

/// The scorecards as `carrier/driver: figures` lines (the driver empty for the carrier's total).
async fn cards(store: &SqliteStore) -> Vec<String> {
    let rows = store.scorecards(None, None).await.unwrap();
    let line = |who: String, t: &ScoreTally| {
        format!(
            "{who}: shipments {} kept {} broken {} delivered {} first {} lost {} late {} ({} s) views {}",
            t.shipments,
            t.windows_kept,
            t.windows_broken,
            t.delivered,
            t.first_attempt,
            t.lost,
            t.late,
            t.late_seconds,
            t.tracking_views
        )
    };
    let mut out = Vec::new();
    for card in rank(&rows) {
        out.push(line(card.carrier.clone(), &card.total));
        for (driver, t) in &card.drivers {
            out.push(line(format!("{}/{driver}", card.carrier), t));
        }
    }
    out
}

const EXPECTED: &[&str] = &[
    "swiftpost: shipments 2 kept 1 broken 1 delivered 2 first 1 lost 0 late 1 (2700 s) views 2",
    "swiftpost/d-2: shipments 1 kept 0 broken 1 delivered 1 first 0 lost 0 late 1 (2700 s) views 0",
    "swiftpost/d-1: shipments 1 kept 1 broken 0 delivered 1 first 1 lost 0 late 0 (0 s) views 2",
    "parcelpro: shipments 2 kept 1 broken 0 delivered 1 first 1 lost 1 late 0 (0 s) views 3",
    "parcelpro/d-3: shipments 2 kept 1 broken 0 delivered 1 first 1 lost 1 late 0 (0 s) views 3",
];

#[tokio::test]
async fn scorecards_count_exactly_whatever_the_order_and_survive_restart_and_replay() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let batches = vec![
        // s1: swiftpost, d-1, delivered inside its window at the first attempt, viewed twice.
        vec![
            created("s1", "swiftpost"),
            window("s1", "10:00", "11:00"),
            out("s1", "d-1", "09:00"),
            viewed("s1", 1, "09:30"),
            viewed("s1", 2, "09:40"),
            delivered("s1", "10:30"),
        ],
        // s2: swiftpost, d-2: a failed attempt inside the window, delivered 45 minutes after it.
        vec![
            created("s2", "swiftpost"),
            window("s2", "12:00", "13:00"),
            out("s2", "d-2", "11:30"),
            failed("s2", "12:30"),
            delivered("s2", "13:45"),
        ],
        // s3: parcelpro, d-3: everything arrives before the shipment.created naming the carrier.
        vec![
            viewed("s3", 1, "09:00"),
            window("s3", "10:00", "11:00"),
            out("s3", "d-3", "09:30"),
            delivered("s3", "10:20"),
        ],
        // s4: parcelpro, lost; the driver arrives after the loss.
        vec![
            created("s4", "parcelpro"),
            viewed("s4", 1, "09:00"),
            lost("s4", "15:00"),
        ],
        vec![
            out("s4", "d-3", "10:00"),
            viewed("s4", 2, "16:00"),
            created("s3", "parcelpro"),
        ],
    ];
    for (i, batch) in batches.into_iter().enumerate() {
        store.append(batch).await.unwrap();
        store.settle().await.unwrap();
        if i == 2 {
            // Before its carrier is known, s3 counts nowhere.
            let rows = store.scorecards(None, None).await.unwrap();
            assert!(rows.iter().all(|(carrier, ..)| carrier == "swiftpost"), "{rows:?}");
        }
    }
    assert_eq!(cards(&store).await, EXPECTED);

    // A range outside the day counts nothing; the day itself holds the three (carrier, driver) pairs.
    let day = troth_core::Timestamp::parse_rfc3339("2026-11-23T00:00:00Z")
        .unwrap()
        .micros()
        / 86_400_000_000;
    assert!(store.scorecards(Some(day + 1), None).await.unwrap().is_empty());
    assert_eq!(store.scorecards(Some(day), Some(day + 1)).await.unwrap().len(), 3);

    let report = store.replay(false, &mut |_| {}).unwrap();
    assert!(report.matches(), "{:?}", report.differences);
    assert_eq!(report.differences.get("carrier_days"), Some(&0));

    // After a restart the written tallies give the same figures.
    drop(store);
    let store = open(dir.path());
    assert_eq!(cards(&store).await, EXPECTED);
    assert!(store.replay(false, &mut |_| {}).unwrap().matches());
}

/// A store whose scorecards were never counted (one from before them, or with other
/// rules) counts them from the log when it opens.
#[tokio::test]
async fn a_store_without_scorecards_counts_them_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .append(vec![
            created("s1", "swiftpost"),
            out("s1", "d-1", "09:00"),
            delivered("s1", "10:30"),
        ])
        .await
        .unwrap();
    store.settle().await.unwrap();
    store.replay(false, &mut |_| {}).unwrap(); // writes the pending aggregates
    drop(store);
    {
        let conn = rusqlite::Connection::open(dir.path().join("projections.db")).unwrap();
        conn.execute_batch(
            "DROP TABLE carrier_days; DROP TABLE shipment_scores; DELETE FROM meta WHERE key = 'scorecard_rules';",
        )
        .unwrap();
    }
    let store = open(dir.path());
    assert_eq!(
        cards(&store).await,
        [
            "swiftpost: shipments 1 kept 0 broken 0 delivered 1 first 1 lost 0 late 0 (0 s) views 0",
            "swiftpost/d-1: shipments 1 kept 0 broken 0 delivered 1 first 1 lost 0 late 0 (0 s) views 0",
        ]
    );
    assert!(store.replay(false, &mut |_| {}).unwrap().matches());
}

/// Tallies still pending in memory when the store stops are counted again at open
/// from the log past the watermark; the shipments' facts, already stored with their
/// events, are not counted twice.
#[tokio::test]
async fn pending_tallies_are_caught_up_at_open_without_counting_twice() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .append(vec![viewed("s1", 1, "09:30"), created("s1", "swiftpost")])
        .await
        .unwrap();
    store.settle().await.unwrap();
    store.replay(false, &mut |_| {}).unwrap(); // writes the aggregates: the watermark moves
    store
        .append(vec![
            out("s1", "d-1", "09:00"),
            viewed("s1", 2, "09:40"),
            delivered("s1", "10:30"),
        ])
        .await
        .unwrap();
    store.settle().await.unwrap();
    drop(store);
    let store = open(dir.path());
    assert_eq!(
        cards(&store).await,
        [
            "swiftpost: shipments 1 kept 0 broken 0 delivered 1 first 1 lost 0 late 0 (0 s) views 2",
            "swiftpost/d-1: shipments 1 kept 0 broken 0 delivered 1 first 1 lost 0 late 0 (0 s) views 2",
        ]
    );
    assert!(store.replay(false, &mut |_| {}).unwrap().matches());
}
