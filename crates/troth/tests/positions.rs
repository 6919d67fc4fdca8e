//! The real binary with `--osmand-listen`: GPS apps report at `/` of that port as
//! at `/osmand` of the main one, and an unknown device is refused there too.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use common::KillOnDrop;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use troth::client::{Client, Target};

/// Starts `troth serve` with an OsmAnd port; returns (main, osmand) addresses.
fn start(dir: &std::path::Path) -> (KillOnDrop, SocketAddr, SocketAddr) {
    let mut child = common::troth()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--osmand-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting troth serve");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let (mut main, mut osmand) = (None, None);
    while main.is_none() || osmand.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("troth serve did not start within 30 s");
        if let Some(addr) = line.strip_prefix("troth OsmAnd listening on http://") {
            osmand = addr.parse().ok();
        } else if let Some(addr) = line.strip_prefix("troth listening on http://") {
            main = addr.parse().ok();
        }
    }
    (KillOnDrop(Some(child)), main.unwrap(), osmand.unwrap())
}

async fn client(addr: SocketAddr) -> Client {
    Client::connect(&Target::from_addr(addr), None).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_osmand_port_takes_reports_at_its_root() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, main, osmand) = start(dir.path());
    let mut api = client(main).await;
    let (status, body) = api.post_json("/api/v1/drivers/d-9/devices", "").await.unwrap();
    assert_eq!(status, StatusCode::CREATED);
    let device: Value = serde_json::from_slice(&body).unwrap();
    let device = device["device_id"].as_str().unwrap().to_owned();

    let mut gps = client(osmand).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (status, body) = gps
        .get(&format!(
            "/?id={device}&lat=52.5&lon=13.4&timestamp={}&speed=5",
            now - 20
        ))
        .await
        .unwrap();
    assert_eq!((status, body.as_ref()), (StatusCode::OK, b"".as_ref()));
    let form = format!("id={device}&lat=52.5001&lon=13.4&timestamp={}", now - 10);
    let (status, _) = gps
        .request(
            Method::POST,
            "/",
            "application/x-www-form-urlencoded",
            Bytes::from(form),
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    let traccar_client = json!({"device_id": device, "location": {
        "timestamp": "2026-11-23T09:00:00Z", "coords": {"latitude": 52.5, "longitude": 13.4}}});
    let (status, _) = gps.post_json("/", traccar_client.to_string()).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let (status, _) = gps.get("/?id=not-a-device&lat=52.5&lon=13.4").await.unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST, "an unknown device is refused");
    let (status, _) = api
        .get(&format!(
            "/osmand?id={device}&lat=52.5002&lon=13.4&timestamp={}",
            now - 5
        ))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "and /osmand on the main port");

    let (_, body) = api
        .get("/api/v1/events?subject=driver:d-9&type=courier.position")
        .await
        .unwrap();
    let events: Value = serde_json::from_slice(&body).unwrap();
    let events = events["events"].as_array().unwrap();
    assert_eq!(events.len(), 4, "{events:?}");
    assert!((events[0]["data"]["speed_kmh"].as_f64().unwrap() - 9.26).abs() < 1e-9);
    let (_, body) = api.get("/api/v1/events").await.unwrap();
    let all: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        all["events"].as_array().unwrap().len(),
        4,
        "nothing of the unknown device"
    );
}
