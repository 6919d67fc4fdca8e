//! Promises followed by the store: made, kept and broken by events and by the
//! clock (a fake one), recorded in the log, rebuilt by replay.

use serde_json::{Value, json};
use troth_core::journey::parse_journey;
use troth_core::{Timestamp, ValidEvent, validate_value};
use troth_store::sqlite::SqliteStore;
use troth_store::{EventQuery, Store};

fn at(time: &str) -> Timestamp {
    Timestamp::parse_rfc3339(&format!("2026-11-23T{time}:00Z")).unwrap()
}

fn event(id: &str, event_type: &str, time: &str, subject: &str, data: Value) -> ValidEvent {
    validate_value(
        json!({"id": id, "type": event_type, "time": format!("2026-11-23T{time}:00Z"), "subject": subject,
               "customer": {"email": "ann@example.org"}, "data": data}),
        None,
    )
    .unwrap()
}

fn window(id: &str, shipment: &str, start: &str, end: &str) -> ValidEvent {
    let data =
        json!({"window_start": format!("2026-11-23T{start}:00Z"), "window_end": format!("2026-11-23T{end}:00Z")});
    event(
        id,
        "shipment.window_set",
        "08:00",
        &format!("shipment:{shipment}"),
        data,
    )
}

fn delivered(id: &str, shipment: &str, time: &str) -> ValidEvent {
    event(
        id,
        "shipment.delivered",
        time,
        &format!("shipment:{shipment}"),
        json!({"proof": {"kind": "handed"}}),
    )
}

fn open(dir: &std::path::Path) -> SqliteStore {
    let map = parse_journey(include_str!("../../../journeys/retail.toml")).unwrap();
    SqliteStore::open_with_journey(dir, Some(&map)).unwrap()
}

/// Opens the store again with the map `text`, once the previous writer thread has
/// let go of the lock.
async fn reopen(dir: &std::path::Path, text: &str) -> SqliteStore {
    let map = parse_journey(text).unwrap();
    loop {
        match SqliteStore::open_with_journey(dir, Some(&map)) {
            Ok(store) => break store,
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
}

/// The promise.* events in the log, as "type promise [cause]".
async fn promise_log(store: &SqliteStore) -> Vec<String> {
    let page = store
        .events(EventQuery {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    page.events
        .iter()
        .map(|e| serde_json::from_str::<Value>(&e.raw).unwrap())
        .filter(|v| v["type"].as_str().unwrap().starts_with("promise."))
        .map(|v| {
            let cause = v["data"]["cause"].as_str().map(|c| format!(" {c}")).unwrap_or_default();
            format!(
                "{} {}{cause}",
                v["type"].as_str().unwrap(),
                v["data"]["promise"].as_str().unwrap()
            )
        })
        .collect()
}

#[tokio::test]
async fn the_clock_and_events_settle_promises_and_the_log_tells_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .append(vec![
            window("w1", "s1", "11:37", "12:37"),
            window("w2", "s2", "14:00", "15:00"),
        ])
        .await
        .unwrap();
    store.settle().await.unwrap();
    assert_eq!(store.tick(at("12:00")).await.unwrap(), 0, "nothing is due yet");
    assert_eq!(store.tick(at("12:25")).await.unwrap(), 1, "s1's window is at risk");
    assert_eq!(
        store.tick(at("12:25")).await.unwrap(),
        0,
        "the same tick again changes nothing"
    );
    store.append(vec![delivered("d2", "s2", "14:30")]).await.unwrap();
    store.settle().await.unwrap();
    assert_eq!(store.tick(at("12:38")).await.unwrap(), 1, "s1's window is broken");
    // s1's courier scan from 12:30 arrives late: the break is corrected.
    store.append(vec![delivered("d1", "s1", "12:30")]).await.unwrap();
    store.settle().await.unwrap();
    assert_eq!(store.tick(at("18:00")).await.unwrap(), 0);
    assert_eq!(
        promise_log(&store).await,
        [
            "promise.made delivery_window:w1",
            "promise.made delivery_window:w2",
            "promise.at_risk delivery_window:w1",
            "promise.kept delivery_window:w2",
            "promise.broken delivery_window:w1 due_passed",
            "promise.kept delivery_window:w1",
        ]
    );
    // The promise events are part of the customer's story.
    let ann = store.customer("email:ann@example.org".into()).await.unwrap().unwrap();
    assert_eq!(ann.event_counts.get("promise.made"), Some(&2));
    assert_eq!(ann.event_counts.get("promise.kept"), Some(&2));

    let report = store.replay(false, &mut |_| {}).unwrap();
    assert!(report.matches(), "replay reproduces the promises: {report:?}");
}

#[tokio::test]
async fn an_order_promise_is_kept_by_its_shipment() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let order = json!({"order": "o1", "items": [{"sku": "t", "qty": 1, "price": 100}], "total": 100, "currency": "EUR",
                       "delivery": "home", "promised_to": "2026-11-24T18:00:00Z"});
    store
        .append(vec![
            event("o1", "order.placed", "08:00", "order:o1", order),
            event(
                "c1",
                "shipment.created",
                "09:00",
                "shipment:s1",
                json!({"shipment": "s1", "order": "o1", "carrier": "x", "service": "std"}),
            ),
            delivered("d1", "s1", "15:00"),
        ])
        .await
        .unwrap();
    store.settle().await.unwrap();
    assert_eq!(
        promise_log(&store).await,
        ["promise.made delivery_date:o1", "promise.kept delivery_date:o1"]
    );
}

#[tokio::test]
async fn without_a_journey_no_promise_is_followed() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    store.append(vec![window("w1", "s1", "11:37", "12:37")]).await.unwrap();
    store.settle().await.unwrap();
    assert_eq!(store.tick(at("13:00")).await.unwrap(), 0);
    assert!(promise_log(&store).await.is_empty());
}

/// Aggregates (counts by type, journey health) are written at most about once a
/// second; a stop before that loses nothing, since they are tallied again from the log.
#[tokio::test]
async fn aggregates_survive_a_stop_before_they_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .append(vec![
            window("w1", "s1", "11:37", "12:37"),
            delivered("d1", "s1", "12:00"),
        ])
        .await
        .unwrap();
    store.settle().await.unwrap();
    let before = (store.overview().await.unwrap(), store.health(None, None).await.unwrap());
    assert_eq!(before.0.events, 4, "two events sent, the promise made and kept");
    drop(store);
    // Wait for the writer thread to let go of the lock.
    let store = reopen(dir.path(), include_str!("../../../journeys/retail.toml")).await;
    let after = (store.overview().await.unwrap(), store.health(None, None).await.unwrap());
    assert_eq!(after.0, before.0);
    let sorted = |mut h: Vec<(String, troth_core::health::Tally)>| {
        h.sort_by(|a, b| a.0.cmp(&b.0));
        h
    };
    assert_eq!(sorted(after.1), sorted(before.1));
    assert!(store.replay(false, &mut |_| {}).unwrap().matches());
}

/// Health tallies follow the map the store is opened with: when a changed map counts
/// other events for a touchpoint, the history is counted again from the log.
#[tokio::test]
async fn a_changed_map_recounts_health_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let retail = include_str!("../../../journeys/retail.toml");
    let exposure_of = |health: Vec<(String, troth_core::health::Tally)>, key: &str| {
        health
            .into_iter()
            .find(|(t, _)| t == key)
            .map_or(0, |(_, t)| t.exposure)
    };

    let store = reopen(dir.path(), retail).await;
    store
        .append(vec![
            window("w1", "s1", "11:37", "12:37"),
            delivered("d1", "s1", "12:00"),
        ])
        .await
        .unwrap();
    store.settle().await.unwrap();
    let health = store.health(None, None).await.unwrap();
    assert_eq!(exposure_of(health.clone(), "delivery_window"), 1);
    assert_eq!(exposure_of(health, "delivery"), 1);
    drop(store);

    // The delivery now also counts as exposure of the window touchpoint.
    let changed = retail.replacen(
        r#"exposure = ["shipment.created", "shipment.window_set", "shipment.rescheduled"]"#,
        r#"exposure = ["shipment.created", "shipment.window_set", "shipment.rescheduled", "shipment.delivered"]"#,
        1,
    );
    assert_ne!(changed, retail);
    let store = reopen(dir.path(), &changed).await;
    let health = store.health(None, None).await.unwrap();
    assert_eq!(exposure_of(health.clone(), "delivery_window"), 2);
    assert_eq!(exposure_of(health, "delivery"), 1);
    assert!(store.replay(false, &mut |_| {}).unwrap().matches());
    drop(store);

    // And back: the first map's figures again.
    let store = reopen(dir.path(), retail).await;
    assert_eq!(
        exposure_of(store.health(None, None).await.unwrap(), "delivery_window"),
        1
    );
}

/// A running store switches maps without a restart: the history is counted again by
/// the new map, and later events follow it.
#[tokio::test]
async fn a_reloaded_map_recounts_history_and_applies_from_then_on() {
    let dir = tempfile::tempdir().unwrap();
    let retail = include_str!("../../../journeys/retail.toml");
    let store = open(dir.path());
    store.append(vec![window("w1", "s1", "11:37", "12:37")]).await.unwrap();
    store.settle().await.unwrap();
    let exposure = |health: Vec<(String, troth_core::health::Tally)>, key: &str| {
        health
            .into_iter()
            .find(|(t, _)| t == key)
            .map_or(0, |(_, t)| t.exposure)
    };
    assert_eq!(exposure(store.health(None, None).await.unwrap(), "delivery_window"), 1);

    // The new map no longer follows windows as promises, and counts deliveries as
    // exposure of the window touchpoint.
    let changed = retail
        .replacen(
            r#"exposure = ["shipment.created", "shipment.window_set", "shipment.rescheduled"]"#,
            r#"exposure = ["shipment.created", "shipment.window_set", "shipment.rescheduled", "shipment.delivered"]"#,
            1,
        )
        .replacen(
            "[[touchpoints.promises]]\nkey = \"delivery_window\"\nkind = \"delivery_window\"\n",
            "",
            1,
        )
        .replace(
            "{ promise_at_risk = \"delivery_window\" }",
            "{ event = \"shipment.rescheduled\" }",
        )
        .replace(
            "{ promise_broken = \"delivery_window\" }",
            "{ event = \"shipment.attempt_failed\" }",
        );
    let map = parse_journey(&changed).unwrap();
    assert!(map.promises().all(|(_, p)| p.key != "delivery_window"));
    store.reload_journey(&map).await.unwrap();
    store
        .append(vec![
            delivered("d1", "s1", "12:00"),
            window("w2", "s2", "13:00", "14:00"),
        ])
        .await
        .unwrap();
    store.settle().await.unwrap();
    let health = store.health(None, None).await.unwrap();
    assert_eq!(
        exposure(health.clone(), "delivery_window"),
        3,
        "w1 and w2, and the delivery"
    );
    let made = health
        .iter()
        .find(|(t, _)| t == "delivery_window")
        .map(|(_, t)| t.promises_made)
        .unwrap();
    assert_eq!(made, 1, "w2 made no promise under the new map");
    // The promise made under the old map is still settled by its keeping event,
    // as the log tells; it is not decided again.
    assert!(
        promise_log(&store)
            .await
            .contains(&"promise.made delivery_window:w1".to_owned())
    );
    // A replay rebuilds health by the map followed now.
    assert!(store.replay(false, &mut |_| {}).unwrap().matches());
}

/// Reach counts each customer once per range, however often they came back, and
/// survives a restart and a replay.
#[tokio::test]
async fn reach_counts_distinct_customers() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let view = |id: &str, who: &str, day: &str| {
        let mut event = serde_json::json!({"id": id, "type": "tracking.viewed", "time": format!("2026-11-{day}T10:00:00Z"),
            "subject": "shipment:s1", "customer": {"id": who}, "data": {"shipment": "s1"}});
        troth_core::validate_value(std::mem::take(&mut event), None).unwrap()
    };
    store
        .append(vec![
            view("v1", "ann", "20"),
            view("v2", "ann", "20"),
            view("v3", "bob", "20"),
            view("v4", "ann", "21"),
        ])
        .await
        .unwrap();
    store.settle().await.unwrap();
    let reach_of = |reach: Vec<(String, u64)>| reach.into_iter().find(|(t, _)| t == "tracking_page").map(|(_, n)| n);
    let day = |d: &str| {
        Timestamp::parse_rfc3339(&format!("2026-11-{d}T00:00:00Z"))
            .unwrap()
            .micros()
            / 86_400_000_000
    };
    assert_eq!(reach_of(store.reach(None, None).await.unwrap()), Some(2));
    assert_eq!(reach_of(store.reach(Some(day("21")), None).await.unwrap()), Some(1));
    drop(store);
    let store = reopen(dir.path(), include_str!("../../../journeys/retail.toml")).await;
    assert_eq!(reach_of(store.reach(None, None).await.unwrap()), Some(2));
    let report = store.replay(false, &mut |_| {}).unwrap();
    assert!(report.matches(), "{report:?}");
    assert!(report.differences.contains_key("touchpoint_reach"));
}

/// A customer who opens a case again within a week is a repeat contact; after a
/// week, a new contact.
#[tokio::test]
async fn cases_reopened_within_a_week_count_as_repeat_contacts() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let case = |id: &str, who: &str, day: &str| {
        troth_core::validate_value(
            serde_json::json!({"id": id, "type": "case.opened", "time": format!("2026-11-{day}T10:00:00Z"),
                "subject": format!("case:{id}"), "customer": {"id": who},
                "data": {"case": id, "category": "late_delivery", "team": "delivery"}}),
            None,
        )
        .unwrap()
    };
    store
        .append(vec![
            case("k1", "ann", "02"),
            case("k2", "ann", "05"),
            case("k3", "bob", "05"),
        ])
        .await
        .unwrap();
    store.settle().await.unwrap();
    store.append(vec![case("k4", "ann", "20")]).await.unwrap();
    store.settle().await.unwrap();
    let complaint = store
        .health(None, None)
        .await
        .unwrap()
        .into_iter()
        .find(|(t, _)| t == "complaint")
        .unwrap()
        .1;
    assert_eq!(complaint.exposure, 4);
    assert_eq!(
        complaint.repeat_contacts, 1,
        "only ann's second case, three days after her first"
    );
    assert!(store.replay(false, &mut |_| {}).unwrap().matches());
}
