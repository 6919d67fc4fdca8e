//! `troth demo`: the server on a fresh store, a simulated retailer's history
//! loaded, then the same world kept running live (couriers moving, new orders, new
//! feedback) until Ctrl-C.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, sync_channel};
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;
use troth_core::{Timestamp, ValidEvent, validate_event};
use troth_store::sqlite::SqliteStore;
use troth_store::{EventQuery, Store};

use crate::simulate::WorldArgs;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    #[command(flatten)]
    pub world: WorldArgs,
    /// A fresh directory for the demo's store [default: a new directory under the system's temp dir].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = crate::config::DEFAULT_LISTEN)]
    pub listen: String,
}

const HOUR_US: i64 = 3_600_000_000;
const DAY_US: i64 = 24 * HOUR_US;
/// Where "now" falls in the simulated day: late morning, when couriers are out.
const NOW_INTO_DAY_US: i64 = 11 * HOUR_US;

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let mut world = args.world.load()?;
    let listen = crate::config::parse_listen(&args.listen)?;
    anyhow::ensure!(
        listen.ip().is_loopback(),
        "the demo runs without keys, so it listens only on loopback (127.0.0.1)"
    );
    let data_dir = fresh_dir(args.data_dir)?;

    // The world's last day is today: its history ends now and the rest plays live.
    let now = Timestamp::now();
    world.start = Timestamp(now.micros() - (i64::from(world.days.max(1)) - 1) * DAY_US - NOW_INTO_DAY_US).to_string();

    let runtime = crate::cli::runtime()?;
    let journey = crate::config::load_journey(None)?;
    let journey_key = journey.key.clone();
    let store = SqliteStore::open_with_journey(&data_dir, Some(&journey))
        .with_context(|| format!("opening the store in {}", data_dir.display()))?;
    let (addr, stop_server) = runtime.block_on(crate::serve::spawn(store.clone(), listen, None, Some(journey)))?;
    println!("troth demo: store in {}, server on http://{addr}", data_dir.display());

    let stopping = Arc::new(AtomicBool::new(false));
    {
        let stopping = stopping.clone();
        runtime.spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            stopping.store(true, Ordering::SeqCst);
        });
    }

    let (tx, rx) = sync_channel::<String>(65_536);
    let sim_world = world.clone();
    let simulator = std::thread::Builder::new()
        .name("troth-simulator".into())
        .spawn(move || {
            troth_sim::simulate(&sim_world, &mut |line| {
                tx.send(line.to_owned())
                    .map_err(|_| std::io::Error::other("the demo stopped"))
            })
        })?;

    let next = load_history(&store, &rx, now, &stopping)?;
    if !stopping.load(Ordering::SeqCst) {
        let urls = runtime.block_on(urls(&store, addr, &journey_key))?;
        println!("\ntroth demo is running (Ctrl-C to stop)");
        for (name, url, note) in &urls {
            println!("  {name:<14} {url}{note}");
        }
        println!();
        play_live(&store, &rx, next, &stopping)?;
    }
    drop(rx);
    let _ = stop_server.send(());
    let _ = simulator.join();
    println!("troth demo stopped; its store stays in {}", data_dir.display());
    Ok(())
}

fn fresh_dir(requested: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    match requested {
        Some(dir) => {
            anyhow::ensure!(
                !dir.join("troth.db").exists(),
                "the demo starts from a fresh store, and {} already holds one: remove it or choose another --data-dir",
                dir.display()
            );
            Ok(dir)
        }
        None => {
            let dir = std::env::temp_dir().join(format!("troth-demo-{}", Timestamp::now().micros() / 1_000_000));
            Ok(dir)
        }
    }
}

/// Appends every simulated event up to `now`; returns the first later one.
fn load_history(
    store: &SqliteStore,
    rx: &Receiver<String>,
    now: Timestamp,
    stopping: &AtomicBool,
) -> anyhow::Result<Option<ValidEvent>> {
    let bar = crate::import::counter_bar("events of history loaded");
    let mut batch = Vec::with_capacity(troth_store::sqlite::MAX_GROUP_EVENTS);
    let mut loaded = 0u64;
    let mut next = None;
    for line in rx.iter() {
        let event = simulated(&line)?;
        if event.time > now {
            next = Some(event);
            break;
        }
        batch.push(event);
        if batch.len() == troth_store::sqlite::MAX_GROUP_EVENTS {
            loaded += batch.len() as u64;
            store.append_blocking(std::mem::take(&mut batch))?;
            bar.set_position(loaded);
            if stopping.load(Ordering::SeqCst) {
                break;
            }
        }
    }
    loaded += batch.len() as u64;
    store.append_blocking(batch)?;
    bar.finish_and_clear();
    println!("loaded {loaded} events of history");
    Ok(next)
}

/// Appends each later event when its time comes, until the world ends or Ctrl-C.
fn play_live(
    store: &SqliteStore,
    rx: &Receiver<String>,
    mut next: Option<ValidEvent>,
    stopping: &AtomicBool,
) -> anyhow::Result<()> {
    while !stopping.load(Ordering::SeqCst) {
        let Some(event) = next.take() else {
            // The world has played out; keep serving.
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        let wait_us = event.time.micros() - Timestamp::now().micros();
        if wait_us > 0 {
            std::thread::sleep(Duration::from_micros(wait_us.min(200_000) as u64));
            next = Some(event);
            continue;
        }
        let mut due = vec![event];
        let now = Timestamp::now();
        for line in rx.iter() {
            let event = simulated(&line)?;
            if event.time > now {
                next = Some(event);
                break;
            }
            due.push(event);
        }
        store.append_blocking(due)?;
    }
    Ok(())
}

/// A key that finds an event's customer: their id, else an identity key.
fn customer_key(raw: &str) -> Option<String> {
    let v: Value = serde_json::from_str(raw).ok()?;
    let customer = v.get("customer")?;
    if let Some(id) = customer["id"].as_str() {
        return Some(id.to_owned());
    }
    ["email", "phone"]
        .iter()
        .find_map(|kind| customer[kind].as_str().map(|value| format!("{kind}:{value}")))
}

fn simulated(line: &str) -> anyhow::Result<ValidEvent> {
    validate_event(line).map_err(|r| anyhow::anyhow!("the simulator wrote an invalid event ({}): {line}", r.error))
}

/// The pages worth opening: the overview, the customer's tracking page of a
/// shipment out for delivery now and its staff view, its customer, the API reference.
async fn urls(
    store: &SqliteStore,
    addr: std::net::SocketAddr,
    journey_key: &str,
) -> anyhow::Result<Vec<(&'static str, String, String)>> {
    let base = format!("http://{addr}");
    let mut urls = vec![
        ("overview", format!("{base}/"), String::new()),
        ("journey", format!("{base}/ui/journeys/{}", journey_key), String::new()),
    ];
    let out = store
        .events(EventQuery {
            event_type: Some("shipment.out_for_delivery".into()),
            newest_first: true,
            limit: 500,
            ..Default::default()
        })
        .await?;
    let mut chosen: Option<(String, Option<String>, bool)> = None;
    for event in &out.events {
        let v: Value = serde_json::from_str(&event.raw)?;
        let Some(subject) = v["subject"].as_str() else { continue };
        let history = store
            .events(EventQuery {
                subject: Some(subject.to_owned()),
                limit: 1000,
                ..Default::default()
            })
            .await?;
        let finished = history.events.iter().any(|e| {
            let event_type = serde_json::from_str::<Value>(&e.raw)
                .ok()
                .and_then(|v| v["type"].as_str().map(str::to_owned));
            matches!(
                event_type.as_deref(),
                Some("shipment.delivered" | "shipment.attempt_failed" | "shipment.lost" | "shipment.returned")
            )
        });
        let customer = match history.events.iter().find_map(|e| customer_key(&e.raw)) {
            Some(key) => store.customer(key).await?.map(|profile| profile.id),
            None => None,
        };
        if !finished {
            chosen = Some((subject.to_owned(), customer, true));
            break;
        }
        if chosen.is_none() {
            chosen = Some((subject.to_owned(), customer, false));
        }
    }
    if let Some((subject, customer, live)) = chosen {
        let id = subject.trim_start_matches("shipment:");
        let note = if live {
            "  (out for delivery now)"
        } else {
            "  (delivered; none is out right now)"
        };
        // What the customer sees: the tracking page their link opens.
        if let Some(link) = store.tracking_link(id.to_owned()).await? {
            urls.push(("tracking page", format!("{base}/t/{}", link.token), note.to_owned()));
        }
        urls.push((
            "shipment",
            format!("{base}/ui/shipments/{id}"),
            "  (the staff view)".to_owned(),
        ));
        if let Some(customer) = customer {
            urls.push(("customer", format!("{base}/ui/customers/{customer}"), String::new()));
        }
    }
    urls.push(("API reference", format!("{base}/docs"), String::new()));
    Ok(urls)
}
