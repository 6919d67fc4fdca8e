//! `troth demo`: a simulated retailer's history loaded into a fresh store, the
//! server started on it, then the same world kept running live (couriers moving,
//! new orders, new feedback) until Ctrl-C.
//!
//! The live part goes through the server's own API, as a real deployment's feeds
//! do: events to `POST /api/v1/events`, drivers' positions to
//! `POST /api/v1/drivers/{id}/positions`, each when the world says it reaches
//! troth. So everything that follows live events in a real deployment — the route
//! follower's arrival estimates and re-issued windows, the falling stop count, the
//! position checks, plays and notifications, the promise clock — happens in front
//! of the viewer. Only the history is a bulk import.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};
use troth_core::{Timestamp, ValidEvent, validate_event};
use troth_store::sqlite::SqliteStore;
use troth_store::{EventQuery, Store};

use crate::client::{Client, Target};
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
/// How long the demo waits for a driver on the move before printing its links anyway.
const CHOOSE_WITHIN: Duration = Duration::from_secs(45);
/// A next stop due within this is "soon": the viewer sees the stop count fall.
const NEXT_STOP_SOON_US: i64 = 5 * 60_000_000;
/// A driver whose last trusted position is older than this is not "moving now".
const MOVING_WITHIN_US: i64 = 60_000_000;
/// The least speed (km/h) that is moving.
const MOVING_KMH: f64 = 3.0;
/// How far ahead of the clock the demo reads its script, to know which stops are
/// about to be completed.
const LOOKAHEAD_US: i64 = 20 * 60_000_000;
/// How often a standing van's phone reports in the demo's world (the tracking page
/// hides a driver whose position is five minutes old).
const PARKED_REPORT_S: u32 = 30;

/// One simulated line and the instant it reaches troth.
type Timed = (String, Timestamp);

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let mut world = args.world.load()?;
    let listen = crate::config::parse_listen(&args.listen)?;
    anyhow::ensure!(
        listen.ip().is_loopback(),
        "the demo runs without keys, so it listens only on loopback (127.0.0.1)"
    );
    let runtime = crate::cli::runtime()?;
    let mut journey = crate::config::load_journey(None)?;
    let journey_key = journey.key.clone();
    // The retailer's zone is the world's city's: staff pages read in it.
    let zone = troth_http::tracking::Zone::named(&world.city.timezone).with_context(|| {
        format!(
            "the world's city has timezone {:?}, which is not an IANA time zone",
            world.city.timezone
        )
    })?;
    // Cases' promises fall due in the city's working hours, as the pages count them.
    journey.service = crate::config::default_service(zone.name());
    // The address first: a taken port fails before anything is written.
    let listener = runtime.block_on(crate::serve::bind(listen))?;
    let data_dir = fresh_dir(args.data_dir)?;
    // Until the demo is running, a failure takes back what it wrote.
    let mut written = Written::before(&data_dir);

    // The world's last day is today: its history ends now and the rest plays live.
    let now = Timestamp::now();
    // Drivers' phones report while the van stands too, as tracking apps do, so a
    // driver at a door or waiting for a stop's time stays on the map.
    if world.parked_report_s == 0 {
        world.parked_report_s = PARKED_REPORT_S;
    }
    world.start = Timestamp(now.micros() - (i64::from(world.days.max(1)) - 1) * DAY_US - NOW_INTO_DAY_US).to_string();

    let store = SqliteStore::open_with_journey(&data_dir, Some(&journey))
        .with_context(|| format!("opening the store in {}", data_dir.display()))?;
    println!("troth demo: store in {}", data_dir.display());

    let stopping = Arc::new(AtomicBool::new(false));
    {
        let stopping = stopping.clone();
        runtime.spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            stopping.store(true, Ordering::SeqCst);
        });
    }

    let (tx, rx) = sync_channel::<Timed>(65_536);
    let sim_world = world.clone();
    let simulator = std::thread::Builder::new()
        .name("troth-simulator".into())
        .spawn(move || {
            troth_sim::simulate_timed(&sim_world, &mut |line, arrives| {
                tx.send((line.to_owned(), arrives))
                    .map_err(|_| std::io::Error::other("the demo stopped"))
            })
        })?;

    let next = load_history(&store, &rx, now, &stopping)?;
    // The server starts on the loaded store, as a real one restarts on its log: its
    // route follower reads today's routes from the log when first asked.
    let (addr, stop_server) = {
        let _entered = runtime.enter();
        crate::serve::spawn_on(
            store.clone(),
            listener,
            crate::serve::ServeOptions {
                journey: Some(journey),
                tracking: troth_http::tracking::TrackingConfig {
                    timezone: zone,
                    ..Default::default()
                },
                ..Default::default()
            },
        )?
    };
    println!("server on http://{addr}");
    // From here the store holds a world worth keeping.
    written.keep();

    let mut result = Ok(());
    if !stopping.load(Ordering::SeqCst) {
        let target = Target::from_addr(addr);
        let script = Script::default();
        let live = {
            let (handle, stopping, target, script) = (
                runtime.handle().clone(),
                stopping.clone(),
                target.clone(),
                script.clone(),
            );
            std::thread::Builder::new()
                .name("troth-demo-live".into())
                .spawn(move || play_live(&handle, &target, &rx, next, &script, &stopping))?
        };
        let urls = runtime.block_on(urls(&store, &target, &script, &journey_key, &stopping))?;
        if !stopping.load(Ordering::SeqCst) {
            println!("\ntroth demo is running (Ctrl-C to stop)");
            for (name, url, note) in &urls {
                println!("  {name:<14} {url}{note}");
            }
            println!();
        }
        result = live
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the live world stopped abnormally")));
    } else {
        drop(rx);
    }
    let _ = stop_server.send(());
    let _ = simulator.join();
    println!("troth demo stopped; its store stays in {}", data_dir.display());
    result
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

/// What the demo writes into its data directory until [`Written::keep`]: dropped
/// before that (a failed start), it removes what was not there before — the whole
/// directory when the demo made it — so a failure leaves nothing behind, and never
/// anything of the user's.
struct Written {
    dir: PathBuf,
    before: Before,
    keep: bool,
}

enum Before {
    /// Nothing was there: the directory is the demo's.
    Absent,
    /// A directory with these entries, which are the user's.
    Dir(HashSet<std::ffi::OsString>),
    /// Something else (a file): the store cannot open there, and nothing is touched.
    Other,
}

impl Written {
    fn before(dir: &Path) -> Written {
        let before = match std::fs::read_dir(dir) {
            Ok(entries) => Before::Dir(entries.filter_map(|e| e.ok().map(|e| e.file_name())).collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Before::Absent,
            Err(_) => Before::Other,
        };
        Written {
            dir: dir.to_owned(),
            before,
            keep: false,
        }
    }

    fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for Written {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        let removed = match &self.before {
            Before::Other => Ok(()),
            Before::Absent => std::fs::remove_dir_all(&self.dir).or_else(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Ok(()),
                _ => Err(e),
            }),
            Before::Dir(existed) => std::fs::read_dir(&self.dir).and_then(|entries| {
                for entry in entries.filter_map(Result::ok) {
                    if existed.contains(&entry.file_name()) {
                        continue;
                    }
                    let path = entry.path();
                    if path.is_dir() {
                        std::fs::remove_dir_all(&path)?;
                    } else {
                        std::fs::remove_file(&path)?;
                    }
                }
                Ok(())
            }),
        };
        if let Err(e) = removed {
            eprintln!(
                "troth demo: could not remove what it wrote in {}: {e}",
                self.dir.display()
            );
        }
    }
}

/// Appends every simulated event that reaches troth by `now`; returns the first later one.
fn load_history(
    store: &SqliteStore,
    rx: &Receiver<Timed>,
    now: Timestamp,
    stopping: &AtomicBool,
) -> anyhow::Result<Option<Timed>> {
    let bar = crate::import::counter_bar("events of history loaded");
    let mut batch = Vec::with_capacity(troth_store::sqlite::MAX_GROUP_EVENTS);
    let mut loaded = 0u64;
    let mut next = None;
    for (line, arrives) in rx.iter() {
        if arrives > now {
            next = Some((line, arrives));
            break;
        }
        batch.push(simulated(&line)?);
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

/// What the demo knows of its world's next minutes: when each stop on a route will
/// be completed (delivered, failed or rescheduled), by shipment. The simulator is
/// the demo's script, so the printed link can be a delivery whose driver really
/// completes a stop within minutes, not one that an estimate merely expects to.
#[derive(Clone, Default)]
struct Script(Arc<Mutex<HashMap<String, Timestamp>>>);

impl Script {
    /// Notes a line read ahead of the clock.
    fn read(&self, line: &str, arrives: Timestamp) {
        // Cheap to skip: most lines are positions.
        if !["shipment.delivered", "shipment.attempt_failed", "shipment.rescheduled"]
            .iter()
            .any(|t| line.contains(t))
        {
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            return;
        };
        if let Some(shipment) = v["subject"].as_str().and_then(|s| s.strip_prefix("shipment:")) {
            let mut completes = self.0.lock().unwrap_or_else(|e| e.into_inner());
            if completes.len() >= 10_000 {
                // Bounded: what is past no longer matters.
                let now = Timestamp::now();
                completes.retain(|_, at| *at >= now);
            }
            completes.entry(shipment.to_owned()).or_insert(arrives);
        }
    }

    /// When the first of `shipments` completes after now, if within the lookahead.
    fn next_completion<'a>(&self, shipments: impl IntoIterator<Item = &'a str>) -> Option<Timestamp> {
        let now = Timestamp::now();
        let completes = self.0.lock().unwrap_or_else(|e| e.into_inner());
        shipments
            .into_iter()
            .filter_map(|s| completes.get(s).copied())
            .filter(|at| *at >= now)
            .min()
    }
}

/// Sends each later event to the server when it reaches troth in the world, until
/// the world ends or Ctrl-C: positions to the drivers' API, the rest to the events API.
/// Lines are read [`LOOKAHEAD_US`] ahead of the clock into `script`.
fn play_live(
    handle: &tokio::runtime::Handle,
    target: &Target,
    rx: &Receiver<Timed>,
    next: Option<Timed>,
    script: &Script,
    stopping: &AtomicBool,
) -> anyhow::Result<()> {
    let mut sender = Sender::new(target);
    let mut ahead: VecDeque<Timed> = next.into_iter().collect();
    if let Some((line, arrives)) = ahead.front() {
        script.read(line, *arrives);
    }
    let mut played_out = false;
    while !stopping.load(Ordering::SeqCst) {
        let now = Timestamp::now();
        while !played_out
            && ahead
                .back()
                .is_none_or(|(_, at)| at.micros() <= now.micros() + LOOKAHEAD_US)
        {
            match rx.recv() {
                Ok((line, arrives)) => {
                    script.read(&line, arrives);
                    ahead.push_back((line, arrives));
                }
                // The world has played out; keep serving.
                Err(_) => played_out = true,
            }
        }
        let mut due = Vec::new();
        while ahead.front().is_some_and(|(_, at)| *at <= now) {
            due.push(ahead.pop_front().expect("a front line").0);
        }
        if due.is_empty() {
            let wait_us = ahead.front().map_or(200_000, |(_, at)| at.micros() - now.micros());
            std::thread::sleep(Duration::from_micros(wait_us.clamp(0, 200_000) as u64));
            continue;
        }
        handle.block_on(sender.send(&due))?;
    }
    Ok(())
}

/// Sends simulated lines to the server, in their order, through the API a real
/// deployment's feeds use.
struct Sender<'a> {
    target: &'a Target,
    client: Option<Client>,
}

/// A run of lines that go in one request.
enum Request {
    /// `POST /api/v1/events`: the events as they are.
    Events(Vec<String>),
    /// `POST /api/v1/drivers/{id}/positions`: one driver's positions, as its phone sends them.
    Positions(String, Vec<Value>),
}

impl<'a> Sender<'a> {
    fn new(target: &'a Target) -> Sender<'a> {
        Sender { target, client: None }
    }

    async fn send(&mut self, lines: &[String]) -> anyhow::Result<()> {
        for request in requests(lines)? {
            let (path, body) = match request {
                Request::Events(events) => ("/api/v1/events".to_owned(), format!("[{}]", events.join(","))),
                Request::Positions(driver, fixes) => (
                    format!("/api/v1/drivers/{driver}/positions"),
                    Value::Array(fixes).to_string(),
                ),
            };
            self.post(&path, body).await?;
        }
        Ok(())
    }

    /// Posts on the kept-alive connection, connecting again once if it was closed.
    async fn post(&mut self, path: &str, body: String) -> anyhow::Result<()> {
        let mut retried = false;
        loop {
            let client = match &mut self.client {
                Some(client) => client,
                None => self.client.insert(Client::connect(self.target, None).await?),
            };
            match client.post_json(path, body.clone()).await {
                Ok((status, answer)) => {
                    let answer = String::from_utf8_lossy(&answer);
                    // Every simulated event is valid: a refusal is worth a word.
                    if !status.is_success() || answer.contains("\"rejected\"") {
                        tracing::warn!(%status, path, answer = %answer, "the server refused part of the live world");
                    }
                    return Ok(());
                }
                Err(e) if !retried => {
                    tracing::debug!(error = %e, "reconnecting to the demo's server");
                    self.client = None;
                    retried = true;
                }
                Err(e) => return Err(e.context(format!("sending the live world to {path}"))),
            }
        }
    }
}

/// Splits lines into requests, keeping their order: consecutive positions of one
/// driver go together, other events in batches the events API takes.
fn requests(lines: &[String]) -> anyhow::Result<Vec<Request>> {
    let mut out: Vec<Request> = Vec::new();
    for line in lines {
        let v: Value = serde_json::from_str(line).context("the simulator wrote a line that is not JSON")?;
        if v["type"] == "courier.position" {
            let driver = v["subject"]
                .as_str()
                .and_then(|s| s.strip_prefix("driver:"))
                .context("a simulated position without a driver")?
                .to_owned();
            let data = &v["data"];
            let mut fix = json!({"lat": data["lat"], "lon": data["lon"], "at": v["time"]});
            for key in ["speed_kmh", "heading", "accuracy_m"] {
                if !data[key].is_null() {
                    fix[key] = data[key].clone();
                }
            }
            match out.last_mut() {
                Some(Request::Positions(d, fixes))
                    if *d == driver && fixes.len() < troth_http::ingest::MAX_BATCH_EVENTS =>
                {
                    fixes.push(fix)
                }
                _ => out.push(Request::Positions(driver, vec![fix])),
            }
        } else {
            match out.last_mut() {
                Some(Request::Events(events)) if events.len() < troth_http::ingest::MAX_BATCH_EVENTS => {
                    events.push(line.clone())
                }
                _ => out.push(Request::Events(vec![line.clone()])),
            }
        }
    }
    Ok(out)
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

/// A delivery worth showing on the tracking page, and how good a choice it is.
struct Pick {
    shipment: String,
    token: String,
    /// 4: the driver is moving now, at least two stops come first and the estimate
    /// is within the window; 3: the same but late (a stop the driver passed over,
    /// visited last); 2: not moving right now; 1: on the road; 0: finished.
    rank: u8,
    stops_before: u64,
    /// When the driver next completes a stop before this one, by the demo's script.
    next_stop: Option<Timestamp>,
}

impl Pick {
    /// The best rank; among equals the driver whose next stop comes soonest, so the
    /// viewer sees the stop count fall within minutes, then the fewest stops.
    fn better_than(&self, other: &Pick) -> bool {
        if self.rank != other.rank {
            return self.rank > other.rank;
        }
        if self.rank < 2 {
            return false;
        }
        let soonest = |p: &Pick| p.next_stop.map_or(i64::MAX, Timestamp::micros);
        (soonest(self), self.stops_before) < (soonest(other), other.stops_before)
    }
}

/// The pages worth opening: the overview, the customer's tracking page of a
/// delivery whose driver is moving now with stops still before it, its staff view,
/// its customer, the API reference. The live world may need a moment to put a
/// driver on the move: this waits for one up to [`CHOOSE_WITHIN`], then takes the
/// best there is.
async fn urls(
    store: &SqliteStore,
    target: &Target,
    script: &Script,
    journey_key: &str,
    stopping: &AtomicBool,
) -> anyhow::Result<Vec<(&'static str, String, String)>> {
    let base = format!("http://{}", target.addr);
    let mut urls = vec![
        ("overview", format!("{base}/"), String::new()),
        ("journey", format!("{base}/ui/journeys/{journey_key}"), String::new()),
    ];
    let deadline = tokio::time::Instant::now() + CHOOSE_WITHIN;
    let mut client = Client::connect(target, None).await?;
    let pick = loop {
        let pick = best_delivery(store, &mut client, script).await?;
        // The best: on the move, on time, and its count about to fall.
        let soon = Timestamp::now().micros() + NEXT_STOP_SOON_US;
        let done = pick
            .as_ref()
            .is_some_and(|p| p.rank == 4 && p.next_stop.is_some_and(|at| at.micros() <= soon));
        if done || tokio::time::Instant::now() >= deadline || stopping.load(Ordering::SeqCst) {
            break pick;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    if let Some(pick) = pick {
        let note = match pick.rank {
            3 | 4 => format!(
                "  (the driver is on the way now, {} stops before this one{})",
                pick.stops_before,
                pick.next_stop
                    .map(|at| {
                        let minutes = (at.micros() - Timestamp::now().micros()).max(0) / 60_000_000;
                        match minutes {
                            0 => "; the next stop is due now".to_owned(),
                            1 => "; the next stop is due in about a minute".to_owned(),
                            m => format!("; the next stop is due in about {m} minutes"),
                        }
                    })
                    .unwrap_or_default()
            ),
            2 => format!(
                "  (out for delivery, {} stops before this one; the driver is not moving right now)",
                pick.stops_before
            ),
            1 => "  (out for delivery now)".to_owned(),
            _ => "  (delivered; none is out right now)".to_owned(),
        };
        // What the customer sees: the tracking page their link opens.
        urls.push(("tracking page", format!("{base}/t/{}", pick.token), note));
        urls.push((
            "shipment",
            format!("{base}/ui/shipments/{}", pick.shipment),
            "  (the staff view)".to_owned(),
        ));
        if let Some(customer) = customer_of(store, &pick.shipment).await? {
            urls.push(("customer", format!("{base}/ui/customers/{customer}"), String::new()));
        }
    }
    urls.push(("API reference", format!("{base}/docs"), String::new()));
    Ok(urls)
}

/// The best delivery of the last day to show, judged by what its tracking page's
/// JSON twin says now (the server's own view: estimate, live stop count, fresh
/// driver) and whether its driver's last trusted position is moving.
async fn best_delivery(store: &SqliteStore, client: &mut Client, script: &Script) -> anyhow::Result<Option<Pick>> {
    let out = store
        .events(EventQuery {
            event_type: Some("shipment.out_for_delivery".into()),
            from_us: Some(Timestamp::now().micros() - DAY_US),
            newest_first: true,
            limit: 500,
            ..Default::default()
        })
        .await?;
    // Each shipment's latest assignment, by driver.
    let mut by_driver: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut seen = HashSet::new();
    for event in &out.events {
        let v: Value = serde_json::from_str(&event.raw)?;
        let (Some(subject), Some(driver)) = (v["subject"].as_str(), v["data"]["driver"].as_str()) else {
            continue;
        };
        let shipment = subject.trim_start_matches("shipment:").to_owned();
        if seen.insert(shipment.clone()) {
            by_driver.entry(driver.to_owned()).or_default().push(shipment);
        }
    }
    let mut best: Option<Pick> = None;
    for (driver, shipments) in by_driver {
        let moving = moving_now(store, &driver).await?;
        let mut views = Vec::new();
        for shipment in shipments {
            let Some(link) = store.tracking_link(shipment.clone()).await? else {
                continue;
            };
            let (status, body) = client.get(&format!("/api/v1/track/{}", link.token)).await?;
            if status.is_success() {
                views.push((shipment, link.token, serde_json::from_slice::<Value>(&body)?));
            }
        }
        // The driver's stops still on the way, by how many come before each.
        let on_route: Vec<(&str, u64)> = views
            .iter()
            .filter(|(.., view)| view["stage"] == "out_for_delivery" || view["stage"] == "arriving")
            .map(|(shipment, _, view)| (shipment.as_str(), view["stops_before"].as_u64().unwrap_or(0)))
            .collect();
        for (shipment, token, view) in &views {
            let on_the_way = view["stage"] == "out_for_delivery";
            let stops_before = view["stops_before"].as_u64().unwrap_or(0);
            // When the driver next completes a stop that comes before this one.
            let next_stop = script.next_completion(
                on_route
                    .iter()
                    .filter(|(other, before)| *other != shipment && *before < stops_before)
                    .map(|(other, _)| *other),
            );
            let shown = on_the_way && stops_before >= 2 && view["eta"].is_string() && view["driver"].is_object();
            // On time as the customer reads it: the page's own state, which also
            // counts a window troth re-issued after the carrier's was missed as late.
            let on_time = view["status"]["state"] == "on_the_way"
                && view["window"]["end"]
                    .as_str()
                    .is_none_or(|end| view["eta"].as_str().is_some_and(|eta| eta <= end));
            let rank = match (shown, moving, on_time, on_the_way || view["stage"] == "arriving") {
                (true, true, true, _) => 4,
                (true, true, false, _) => 3,
                (true, false, ..) => 2,
                (false, .., true) => 1,
                _ => 0,
            };
            let candidate = Pick {
                shipment: shipment.clone(),
                token: token.clone(),
                rank,
                stops_before,
                next_stop,
            };
            if best.as_ref().is_none_or(|b| candidate.better_than(b)) {
                best = Some(candidate);
            }
        }
    }
    Ok(best)
}

/// Whether the driver's latest trusted position is recent and moving.
async fn moving_now(store: &SqliteStore, driver: &str) -> anyhow::Result<bool> {
    let now = Timestamp::now();
    let page = store
        .events(EventQuery {
            subject: Some(format!("driver:{driver}")),
            event_type: Some("courier.position".into()),
            from_us: Some(now.micros() - MOVING_WITHIN_US),
            newest_first: true,
            limit: 20,
            ..Default::default()
        })
        .await?;
    let latest = page
        .events
        .iter()
        .filter_map(|e| validate_event(&e.raw).ok())
        .filter_map(|e| match e.data {
            troth_core::catalogue::EventData::CourierPosition(p) if p.flag.is_none() => {
                Some((e.time, p.speed_kmh.map(|s| s.0)))
            }
            _ => None,
        })
        .max_by_key(|(at, _)| *at);
    Ok(latest.is_some_and(|(at, speed)| {
        now.micros() - at.micros() <= MOVING_WITHIN_US && speed.is_some_and(|s| s >= MOVING_KMH)
    }))
}

/// The customer of a shipment, as troth knows them.
async fn customer_of(store: &SqliteStore, shipment: &str) -> anyhow::Result<Option<String>> {
    let history = store
        .events(EventQuery {
            subject: Some(format!("shipment:{shipment}")),
            limit: 1000,
            ..Default::default()
        })
        .await?;
    match history.events.iter().find_map(|e| customer_key(&e.raw)) {
        Some(key) => Ok(store.customer(key).await?.map(|profile| profile.id)),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_start_takes_back_what_it_wrote_and_only_that() {
        let root = tempfile::tempdir().unwrap();
        // A directory the demo makes goes entirely.
        let made = root.path().join("made");
        {
            let _written = Written::before(&made);
            std::fs::create_dir_all(made.join("uploads")).unwrap();
            std::fs::write(made.join("troth.db"), b"x").unwrap();
        }
        assert!(!made.exists());
        // In the user's directory, only what the demo added.
        let theirs = root.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::fs::write(theirs.join("notes.txt"), b"mine").unwrap();
        {
            let _written = Written::before(&theirs);
            std::fs::write(theirs.join("troth.db"), b"x").unwrap();
            std::fs::create_dir(theirs.join("uploads")).unwrap();
        }
        let left: Vec<_> = std::fs::read_dir(&theirs)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["notes.txt"]);
        // A file where the store should go is not touched.
        let file = root.path().join("file");
        std::fs::write(&file, b"mine").unwrap();
        drop(Written::before(&file));
        assert_eq!(std::fs::read(&file).unwrap(), b"mine");
        // A demo that started keeps its store.
        let kept = root.path().join("kept");
        {
            let mut written = Written::before(&kept);
            std::fs::create_dir(&kept).unwrap();
            written.keep();
        }
        assert!(kept.exists());
    }

    #[test]
    fn live_lines_go_to_the_api_a_real_feed_uses_in_order() {
        let position = |driver: &str, s: u32| {
            format!(
                r#"{{"id":"p{s}","type":"courier.position","time":"2026-12-01T10:00:{s:02}Z","subject":"driver:{driver}","data":{{"lat":48.85,"lon":2.35,"speed_kmh":20.5}}}}"#
            )
        };
        let other = |id: &str| {
            format!(
                r#"{{"id":"{id}","type":"shipment.arriving","time":"2026-12-01T10:00:00Z","subject":"shipment:s-1","data":{{}}}}"#
            )
        };
        let lines = vec![
            other("a"),
            other("b"),
            position("d-1", 1),
            position("d-1", 2),
            position("d-2", 3),
            other("c"),
        ];
        let got = requests(&lines).unwrap();
        let shape: Vec<String> = got
            .iter()
            .map(|r| match r {
                Request::Events(e) => format!("events:{}", e.len()),
                Request::Positions(d, f) => format!("{d}:{}", f.len()),
            })
            .collect();
        assert_eq!(shape, ["events:2", "d-1:2", "d-2:1", "events:1"]);
        let Request::Positions(_, fixes) = &got[1] else {
            unreachable!()
        };
        assert_eq!(
            fixes[0],
            json!({"lat": 48.85, "lon": 2.35, "at": "2026-12-01T10:00:01Z", "speed_kmh": 20.5})
        );
    }
}
