//! An acknowledged event survives the process being killed with SIGKILL.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Server;
use serde_json::{Value, json};
use troth::client::{Client, Target};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_event_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let target = Target::from_addr(server.addr);
    let acknowledged = Arc::new(Mutex::new(HashSet::<String>::new()));

    // Eight clients send small batches as fast as they can until the process dies.
    let mut clients = Vec::new();
    for c in 0..8 {
        let (target, acknowledged) = (target.clone(), acknowledged.clone());
        clients.push(tokio::spawn(async move {
            let mut client = Client::connect(&target, None).await.unwrap();
            for n in 0.. {
                let batch: Vec<Value> = (0..5)
                    .map(|k| {
                        json!({"id": format!("c{c}-{n}-{k}"), "type": "page.viewed", "time": "2026-11-23T09:00:00Z",
                               "customer": {"id": format!("u{}", (n + k) % 50)}, "data": {"page": "/"}})
                    })
                    .collect();
                let Ok((status, body)) = client
                    .post_json("/api/v1/events", Value::Array(batch).to_string())
                    .await
                else {
                    return;
                };
                assert!(status.is_success());
                let answer: Value = serde_json::from_slice(&body).unwrap();
                let mut acked = acknowledged.lock().unwrap();
                for result in answer["results"].as_array().unwrap() {
                    assert_eq!(result["status"], "accepted");
                    acked.insert(result["id"].as_str().unwrap().to_owned());
                }
            }
        }));
    }
    let started = Instant::now();
    while acknowledged.lock().unwrap().len() < 3_000 && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill();
    for client in clients {
        client.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() >= 3_000,
        "only {} events were acknowledged",
        acknowledged.len()
    );

    let server = Server::start(dir.path(), &[]);
    let mut client = Client::connect(&Target::from_addr(server.addr), None).await.unwrap();
    let mut stored = HashSet::new();
    let mut after = String::new();
    loop {
        let (status, body) = client.get(&format!("/api/v1/events?limit=1000{after}")).await.unwrap();
        assert!(status.is_success());
        let page: Value = serde_json::from_slice(&body).unwrap();
        for event in page["events"].as_array().unwrap() {
            assert!(
                stored.insert(event["id"].as_str().unwrap().to_owned()),
                "an event was stored twice"
            );
        }
        match page["next"].as_str() {
            Some(next) => after = format!("&after={next}"),
            None => break,
        }
    }
    let lost: Vec<&String> = acknowledged.difference(&stored).take(5).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged events were lost, e.g. {lost:?}",
        acknowledged.difference(&stored).count()
    );
}

/// Every event id in a store's log, and the promises and outbox its projections hold.
struct Stored {
    ids: HashSet<String>,
    merges: usize,
    promises: Vec<(String, String)>,
    outbox: HashSet<String>,
}

async fn stored(dir: &std::path::Path) -> Stored {
    use troth_store::Store;
    let journey = troth_core::journey::parse_journey(include_str!("../../../journeys/retail.toml")).unwrap();
    let store = troth_store::sqlite::SqliteStore::open_with_journey(dir, Some(&journey)).unwrap();
    // A store opened after a crash catches its projections up before it says ready.
    store.settle().await.unwrap();
    store.ready().await.unwrap();
    let report = store.replay(false, &mut |_| {}).unwrap();
    assert!(report.matches(), "the projections differ from a rebuild: {report:?}");
    let mut ids = HashSet::new();
    let mut merges = 0;
    let mut after = None;
    loop {
        let page = store
            .events(troth_store::EventQuery {
                after_seq: after,
                limit: 10_000,
                ..Default::default()
            })
            .await
            .unwrap();
        for event in &page.events {
            let value: Value = serde_json::from_str(&event.raw).unwrap();
            let id = value["id"].as_str().unwrap().to_owned();
            // A merge's id names the position of the event that caused it, which
            // differs between runs; the merges themselves are counted.
            if id.starts_with("troth.merge.") {
                merges += 1;
            } else {
                assert!(ids.insert(id), "an event is in the log twice");
            }
        }
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let mut promises: Vec<(String, String)> = store
        .promises(troth_store::PromiseQuery {
            limit: 1_000_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .promises
        .into_iter()
        .map(|p| (p.id, p.state))
        .collect();
    promises.sort();
    let outbox = store
        .outbox(troth_store::OutboxQuery {
            limit: 1_000_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .entries
        .into_iter()
        .map(|e| e.id)
        .collect();
    Stored {
        ids,
        merges,
        promises,
        outbox,
    }
}

/// `troth import` killed at several points, then run again to the end, leaves the
/// same store as one import that was never interrupted: every event once, every
/// projection equal to a rebuild, no derived event and no message twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_killed_at_any_point_ends_as_one_uninterrupted_import() {
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("events.ndjson");
    let simulated = common::run(&[
        "simulate",
        "--customers",
        "600",
        "--days",
        "10",
        "--out",
        file.to_str().unwrap(),
    ]);
    assert!(simulated.status.success(), "{simulated:?}");
    let lines = std::fs::read_to_string(&file).unwrap().lines().count();
    assert!(lines > 10_000, "{lines} events");

    let import = |dir: &std::path::Path| {
        common::troth()
            .args(["import", file.to_str().unwrap(), "--data-dir"])
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let clean = work.path().join("clean");
    assert!(import(&clean).wait().unwrap().success());

    // Kills a few hundred milliseconds apart land while the log is written, while
    // the projections catch up, and while derived events are on their way.
    let killed = work.path().join("killed");
    for delay_ms in [150, 400, 700, 1_100, 1_600, 2_300] {
        let mut child = import(&killed);
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(import(&killed).wait().unwrap().success());

    let (clean, killed) = (stored(&clean).await, stored(&killed).await);
    assert!(clean.ids.len() >= lines, "{} of {lines}", clean.ids.len());
    let missing: Vec<&String> = clean.ids.symmetric_difference(&killed.ids).take(5).collect();
    assert!(missing.is_empty(), "the logs differ, e.g. {missing:?}");
    assert_eq!(clean.merges, killed.merges);
    assert!(!clean.promises.is_empty());
    assert_eq!(clean.promises, killed.promises);
    assert_eq!(clean.outbox, killed.outbox);
}
