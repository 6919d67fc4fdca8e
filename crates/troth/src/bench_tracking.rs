//! `troth bench tracking`: how long a driver's position takes from the request
//! that reports it to the tracking pages' live streams, under load, against a
//! reference on the same machine in the same run.
//!
//! - troth: drivers report positions to `POST /api/v1/drivers/{id}/positions`
//!   (validated, judged for plausibility, stored durably, published to the hub);
//!   each of the subscribers follows one shipment's `GET /api/v1/track/{token}/events`.
//! - reference: a bare axum server that parses the same JSON and hands it to a
//!   per-driver broadcast channel that the same number of SSE streams follow.
//!
//! Latency is measured from the position's `at` (set when the request is sent) to
//! its arrival in a subscriber's stream; both sides run in this process.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::{Path, State};
use axum::response::sse::{Event, Sse};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::broadcast;
use troth_core::Timestamp;
use troth_store::Store;
use troth_store::sqlite::SqliteStore;

use crate::client::{Client, Target};

#[derive(Debug, Clone, clap::Args)]
pub struct TrackingArgs {
    /// Positions per second, across all drivers.
    #[arg(long, default_value_t = 5_000)]
    pub rate: u32,
    /// Drivers out on the road, each with one shipment followed by one subscriber.
    #[arg(long, default_value_t = 1_000)]
    pub subscribers: usize,
    /// Seconds of load.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// End with one line of JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
pub struct LatencyFigures {
    pub positions_sent: u64,
    pub deliveries: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Resident memory of the whole process after the run, in MiB.
    pub rss_mib: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    troth: LatencyFigures,
    reference: LatencyFigures,
    p99_ratio: f64,
}

/// Clients that share the posting, each with its own connection: drivers' phones
/// report independently, so reports arrive concurrently, not one after another.
const PRODUCERS: usize = 250;

pub fn tracking(args: TrackingArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.subscribers > 0 && args.rate > 0,
        "--subscribers and --rate must be above 0"
    );
    println!(
        "bench tracking: {} positions/s over {} drivers, {} subscribers, {} s",
        args.rate, args.subscribers, args.subscribers, args.seconds
    );
    let runtime = crate::cli::runtime()?;
    let report = runtime.block_on(async {
        let reference = run_reference(&args).await?;
        print("reference (bare axum + broadcast)", &reference);
        let troth = run_troth(&args).await?;
        print("troth", &troth);
        anyhow::Ok(Report {
            p99_ratio: troth.p99_ms / reference.p99_ms.max(0.001),
            troth,
            reference,
        })
    })?;
    println!(
        "p99 latency ratio troth/reference: {:.2} (troth p99 {:.2} ms; bar: < 50 ms)",
        report.p99_ratio, report.troth.p99_ms
    );
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}

fn print(label: &str, f: &LatencyFigures) {
    println!(
        "  {label}: {} sent, {} delivered to streams, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, RSS {:.0} MiB",
        f.positions_sent, f.deliveries, f.p50_ms, f.p99_ms, f.max_ms, f.rss_mib
    );
}

async fn run_troth(args: &TrackingArgs) -> anyhow::Result<LatencyFigures> {
    let work = tempfile::tempdir().context("creating a scratch directory")?;
    let store = SqliteStore::open(work.path())?;
    // Every driver is out for delivery with one shipment.
    let now = Timestamp::now();
    let mut events = Vec::new();
    for i in 0..args.subscribers {
        let at = |offset_s: i64| Timestamp(now.0 - 3_600_000_000 + offset_s * 1_000_000).to_string();
        for (id, event_type, time, data) in [
            (
                format!("bt-c-{i}"),
                "shipment.created",
                at(0),
                serde_json::json!({"shipment": format!("s-{i}"), "order": format!("o-{i}"), "carrier": "bench", "service": "standard"}),
            ),
            (
                format!("bt-o-{i}"),
                "shipment.out_for_delivery",
                at(60),
                serde_json::json!({"driver": format!("d-{i}"), "stops_before": 3}),
            ),
        ] {
            let event = serde_json::json!({"id": id, "type": event_type, "time": time, "subject": format!("shipment:s-{i}"),
                "customer": {"id": format!("c-{i}")}, "data": data});
            events.push(troth_core::validate_value(event, None).map_err(|r| anyhow::anyhow!("{}", r.error))?);
        }
    }
    for chunk in events.chunks(10_000) {
        store.append(chunk.to_vec()).await?;
    }
    let (addr, stop) = crate::serve::spawn(store.clone(), "127.0.0.1:0".parse()?, None, None).await?;
    let mut tokens = Vec::with_capacity(args.subscribers);
    let mut client = Client::connect(&Target::from_addr(addr), None).await?;
    for i in 0..args.subscribers {
        let (status, body) = client
            .post_json(&format!("/api/v1/shipments/s-{i}/tracking-link"), "")
            .await?;
        anyhow::ensure!(
            status.is_success(),
            "tracking link: {status} {}",
            String::from_utf8_lossy(&body)
        );
        let link: serde_json::Value = serde_json::from_slice(&body)?;
        tokens.push(link["token"].as_str().context("a token")?.to_owned());
    }
    let paths: Vec<String> = tokens.iter().map(|t| format!("/api/v1/track/{t}/events")).collect();
    let figures = measure(addr, args, &paths, |driver| {
        format!("/api/v1/drivers/d-{driver}/positions")
    })
    .await;
    let _ = stop.send(());
    if let Some(waits) = store.append_waits() {
        println!(
            "  troth's appends waited for the projections {} times, {:.2} s in all",
            waits.waits, waits.seconds
        );
    }
    figures
}

async fn run_reference(args: &TrackingArgs) -> anyhow::Result<LatencyFigures> {
    let hub: Hub = Arc::default();
    let app = axum::Router::new()
        .route("/drivers/{id}/positions", axum::routing::post(reference_post))
        .route("/stream/{driver}", axum::routing::get(reference_stream))
        .with_state(hub);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let paths: Vec<String> = (0..args.subscribers).map(|i| format!("/stream/d-{i}")).collect();
    let figures = measure(addr, args, &paths, |driver| format!("/drivers/d-{driver}/positions")).await;
    server.abort();
    figures
}

type Hub = Arc<Mutex<HashMap<String, broadcast::Sender<String>>>>;

fn channel(hub: &Hub, driver: &str) -> broadcast::Sender<String> {
    let mut map = hub.lock().unwrap_or_else(|p| p.into_inner());
    map.entry(driver.to_owned())
        .or_insert_with(|| broadcast::channel(16).0)
        .clone()
}

async fn reference_post(State(hub): State<Hub>, Path(id): Path<String>, body: axum::body::Bytes) -> &'static str {
    if let Ok(serde_json::Value::Array(items)) = serde_json::from_slice::<serde_json::Value>(&body) {
        let sender = channel(&hub, &id);
        for item in items {
            let _ =
                sender.send(serde_json::json!({"lat": item["lat"], "lon": item["lon"], "at": item["at"]}).to_string());
        }
    }
    "ok"
}

async fn reference_stream(
    State(hub): State<Hub>,
    Path(driver): Path<String>,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let receiver = channel(&hub, &driver).subscribe();
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        loop {
            match receiver.recv().await {
                Ok(data) => return Some((Ok(Event::default().event("position").data(data)), receiver)),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream)
}

/// Opens a stream per path, posts positions at the rate for the duration, and
/// collects how long each took to reach its stream.
async fn measure(
    addr: SocketAddr,
    args: &TrackingArgs,
    streams: &[String],
    post_path: impl Fn(usize) -> String,
) -> anyhow::Result<LatencyFigures> {
    let latencies = Arc::new(Mutex::new(Vec::<f64>::new()));
    let mut readers = Vec::new();
    for path in streams {
        let (ready, opened) = tokio::sync::oneshot::channel();
        readers.push(tokio::spawn(read_stream(addr, path.clone(), latencies.clone(), ready)));
        opened.await.context("a stream did not open")??;
    }
    // Let the streams send their first view before the load starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    latencies.lock().unwrap_or_else(|p| p.into_inner()).clear();

    let drivers = streams.len();
    // Each driver reports every `interval`, so that all of them make the rate.
    let interval = Duration::from_secs_f64(drivers as f64 / f64::from(args.rate));
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let mut producers = Vec::new();
    for p in 0..PRODUCERS.min(drivers) {
        let mine: Vec<usize> = (p..drivers).step_by(PRODUCERS).collect();
        let paths: Vec<String> = mine.iter().map(|&d| post_path(d)).collect();
        producers.push(tokio::spawn(async move {
            let mut client = Client::connect(&Target::from_addr(addr), None).await?;
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut sent = 0u64;
            let mut step = 0f64;
            while Instant::now() < deadline {
                tick.tick().await;
                step += 1.0;
                for (k, path) in paths.iter().enumerate() {
                    // A driver creeping north, a metre a report: plausible, always newer.
                    let lat = 48.85 + (mine[k] as f64) * 0.001 + step * 0.000_01;
                    let body = serde_json::json!([{"lat": lat, "lon": 2.35, "at": Timestamp::now().to_string()}]);
                    let (status, answer) = client.post_json(path, body.to_string()).await?;
                    anyhow::ensure!(
                        status.is_success(),
                        "position: {status} {}",
                        String::from_utf8_lossy(&answer)
                    );
                    sent += 1;
                }
            }
            anyhow::Ok(sent)
        }));
    }
    let mut positions_sent = 0;
    for producer in producers {
        positions_sent += producer.await??;
    }
    // Let the last positions arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for reader in &readers {
        reader.abort();
    }
    let rss_mib = rss_mib();
    let mut latencies = std::mem::take(&mut *latencies.lock().unwrap_or_else(|p| p.into_inner()));
    latencies.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    Ok(LatencyFigures {
        positions_sent,
        deliveries: latencies.len() as u64,
        p50_ms: pick(0.5),
        p99_ms: pick(0.99),
        max_ms: latencies.last().copied().unwrap_or(f64::NAN),
        rss_mib,
    })
}

/// Reads one SSE stream, recording for each `position` event how old its `at` is.
async fn read_stream(
    addr: SocketAddr,
    path: String,
    latencies: Arc<Mutex<Vec<f64>>>,
    ready: tokio::sync::oneshot::Sender<anyhow::Result<()>>,
) {
    let opened = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        anyhow::Ok(stream)
    }
    .await;
    let mut stream = match opened {
        Ok(stream) => {
            let _ = ready.send(Ok(()));
            stream
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let mut buffer = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let mut position_next = false;
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let received = Timestamp::now();
        buffer.extend_from_slice(&chunk[..n]);
        while let Some(end) = buffer.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end();
            if line == "event: position" {
                position_next = true;
            } else if let Some(data) = line.strip_prefix("data: ") {
                if position_next
                    && let Ok(value) = serde_json::from_str::<serde_json::Value>(data)
                    && let Some(at) = value["at"].as_str().and_then(Timestamp::parse_rfc3339)
                {
                    let ms = (received.0 - at.0) as f64 / 1_000.0;
                    latencies.lock().unwrap_or_else(|p| p.into_inner()).push(ms);
                }
                position_next = false;
            }
        }
    }
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}
