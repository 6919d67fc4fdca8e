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
