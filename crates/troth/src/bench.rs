//! `troth bench ingest`: troth against a reference, side by side, in one run on
//! the same machine, reported as ratios. `troth bench eta`: the arrival estimator
//! against a naive baseline on simulated routes (see `eta_accuracy`).
//!
//! The load is the built-in retail world of the simulator.
//!
//! - bulk: the same NDJSON file through `troth import`'s path (validate →
//!   dedupe → append to the log; the projections follow) and, as the reference,
//!   the rows troth stored inserted raw into the same schema with one prepared
//!   statement in big transactions (three times, each into a fresh file; the
//!   median counts). Two rates: the durable append (the log written) and end to
//!   end (the projections caught up too);
//! - shell: the same NDJSON file loaded by SQLite's own shell (`sqlite3`, when it
//!   is installed) into the same `events` table: `.import` of the lines, then
//!   `json_extract` of the columns, in WAL with the log's durability;
//! - http: single events from many concurrent clients to troth's ingest route
//!   and to a bare axum handler that parses the same JSON and does nothing, with
//!   the projections' lag sampled during troth's run;
//! - floors: the CPU that the rows troth must keep cost before any projection's
//!   logic runs (validation, the log's rows, and for the bulk run the customers'
//!   copies and the event index written raw in key order), so that a ratio can be
//!   read against what two cores allow at all (see bench/README.md).
//!
//! `--runs N` repeats all of it and reports the medians.

use std::io::{BufReader, BufWriter, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use rusqlite::params;
use serde::Serialize;
use troth_core::Timestamp;
use troth_store::sqlite::SqliteStore;

use crate::client::{Client, Target};

#[derive(Debug, Clone, clap::Args)]
pub struct IngestArgs {
    /// Events for the bulk run.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Requests for the HTTP run.
    #[arg(long, default_value_t = 20_000)]
    pub requests: usize,
    /// Concurrent HTTP clients, one connection each.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Skip the HTTP run.
    #[arg(long)]
    pub no_http: bool,
    /// Measure this many times, one run after the other, each against its own
    /// references; with more than one, the medians are reported (and in the JSON).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: u32,
    /// End with one line of JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct EtaArgs {
    #[command(flatten)]
    pub world: crate::simulate::WorldArgs,
    /// End with one line of JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
pub struct BulkFigures {
    /// End to end: every event in the log and projected.
    pub troth_eps: f64,
    pub sqlite_eps: f64,
    pub ratio: f64,
    /// The durable append alone.
    #[serde(skip)]
    pub append_eps: f64,
    /// Each thread's CPU per event, in microseconds, most first.
    #[serde(skip)]
    pub cpu_us: Vec<(String, f64)>,
    #[serde(skip)]
    pub floor: BulkFloor,
}

/// What an import cannot do without, done alone on one thread, in microseconds
/// per event of the file: a bound under any design that validates the events and
/// keeps these rows.
#[derive(Debug, Default, Clone, Copy)]
pub struct BulkFloor {
    /// Validation of the file's lines, read from the file.
    pub validate_us: f64,
    /// The log's rows, as the raw reference inserted them.
    pub log_us: f64,
    /// The customers' copies and the event index (what a story and the listings
    /// read), inserted raw in key order, one pass per table: the cheapest way
    /// SQLite builds a B-tree.
    pub stories_us: f64,
}

impl BulkFloor {
    fn total_us(&self) -> f64 {
        self.validate_us + self.log_us + self.stories_us
    }
}

/// `troth import` against SQLite's shell loading the same file.
#[derive(Debug, Serialize)]
pub struct ShellFigures {
    /// Lines per second the shell loaded.
    pub eps: f64,
    /// troth's durable append against it.
    pub append_ratio: f64,
    /// troth's end to end (the projections caught up) against it.
    pub end_to_end_ratio: f64,
}

#[derive(Debug, Serialize)]
pub struct Rate {
    pub eps: f64,
    pub ratio: f64,
}

#[derive(Debug, Serialize)]
pub struct HttpFigures {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub bare_rps: f64,
    pub ratio: f64,
    /// The projections' lag behind the log during troth's run, sampled every 10 ms.
    #[serde(skip)]
    pub lag_p99_ms: f64,
    /// Each thread's CPU per request during troth's run, in microseconds (the
    /// clients' share is in the Tokio workers').
    #[serde(skip)]
    pub cpu_us: Vec<(String, f64)>,
    /// The CPU per request of the bare handler's run, clients included, in microseconds.
    #[serde(skip)]
    pub bare_cpu_us: f64,
    /// The CPU per row of the run's log rows inserted raw in commits of as many
    /// rows as there are clients, each fsync'd: the durable append's own floor
    /// under this load, in microseconds.
    #[serde(skip)]
    pub log_floor_us: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    bulk: BulkFigures,
    #[serde(skip_serializing_if = "Option::is_none")]
    http: Option<HttpFigures>,
    append: Rate,
    end_to_end: Rate,
    #[serde(skip_serializing_if = "Option::is_none")]
    lag_p99_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    shell: Option<ShellFigures>,
    /// How many runs the figures are the medians of.
    runs: usize,
}

/// What one run measured.
struct RunFigures {
    bulk: BulkFigures,
    shell: Option<ShellFigures>,
    http: Option<HttpFigures>,
}

pub fn ingest(args: IngestArgs) -> anyhow::Result<()> {
    let work = tempfile::tempdir().context("creating a scratch directory")?;
    println!(
        "bench ingest: {} events bulk, {} HTTP requests from {} clients{}",
        args.events,
        args.requests,
        args.clients,
        match args.runs {
            1 => String::new(),
            n => format!(", {n} runs"),
        }
    );
    let file = work.path().join("events.ndjson");
    let world = {
        let mut out = BufWriter::new(std::fs::File::create(&file)?);
        let world = simulated(args.events, 42, &mut |line| {
            out.write_all(line.as_bytes())?;
            out.write_all(b"\n")
        })?;
        // On the disk before anything is timed: the file is read by every run, and
        // its pages written back during one would slow that run's fsyncs.
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        world
    };
    let mut live = None;
    if !args.no_http {
        let mut lines: Vec<Bytes> = Vec::with_capacity(args.requests + 2_000);
        let world = simulated(args.requests as u64 + 2_000, 43, &mut |line| {
            lines.push(Bytes::from(line.to_owned()));
            Ok(())
        })?;
        live = Some((lines, world.start));
    }
    // On a shared machine one run's figures, and even its ratios, move by tens of
    // percent: each run pairs troth with references measured just beside it, and
    // the medians of several runs are the figures to quote.
    let mut runs = Vec::new();
    for run in 1..=args.runs {
        if args.runs > 1 {
            println!("run {run} of {}", args.runs);
        }
        let scratch = tempfile::tempdir_in(work.path())?;
        runs.push(measure(scratch.path(), &file, world.last, live.as_ref(), &args)?);
    }
    let report = medians(&runs);
    if runs.len() > 1 {
        println!("medians of {} runs:", runs.len());
        print_bulk(&report.bulk, report.shell.as_ref());
        if let Some(http) = &report.http {
            print_http(http, &report.bulk.floor);
        }
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}

/// One run: the bulk import against its raw reference, against SQLite's shell,
/// and the HTTP run against the bare handler, each in a fresh store under `work`.
fn measure(
    work: &std::path::Path,
    file: &std::path::Path,
    now: Timestamp,
    live: Option<&(Vec<Bytes>, Timestamp)>,
    args: &IngestArgs,
) -> anyhow::Result<RunFigures> {
    let bulk = bulk(work, file, now)?;
    let shell_eps = shell_load(work, file)?;
    // The bulk run leaves a gigabyte of dirty pages; writing them back would slow the
    // HTTP run's fsyncs (troth's, not the bare handler's). Deleted files need no writeback.
    for done in ["bulk", "shell.db", "shell.db-wal", "shell.db-shm"] {
        let path = work.join(done);
        let _ = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
    }
    let shell = shell_eps.map(|eps| ShellFigures {
        eps,
        append_ratio: bulk.append_eps / eps,
        end_to_end_ratio: bulk.troth_eps / eps,
    });
    print_bulk(&bulk, shell.as_ref());
    let http = match live {
        Some((lines, start)) => Some(crate::cli::runtime()?.block_on(http(work, lines, args, *start))?),
        None => None,
    };
    if let Some(http) = &http {
        print_http(http, &bulk.floor);
    }
    Ok(RunFigures { bulk, shell, http })
}

fn print_bulk(bulk: &BulkFigures, shell: Option<&ShellFigures>) {
    println!(
        "bulk   append {:>10.0} events/s   end to end {:>10.0} events/s   raw sqlite {:>10.0} rows/s   ratios {:.2} / {:.2}",
        bulk.append_eps,
        bulk.troth_eps,
        bulk.sqlite_eps,
        bulk.append_eps / bulk.sqlite_eps,
        bulk.ratio
    );
    match shell {
        Some(figures) => println!(
            "import sqlite3 shell {:>10.0} lines/s (.import + json_extract)   troth import ratios {:.2} (append) / {:.2} (end to end)",
            figures.eps, figures.append_ratio, figures.end_to_end_ratio
        ),
        None => println!("import sqlite3 shell not found on PATH; the comparison with it is skipped"),
    }
    if !bulk.cpu_us.is_empty() {
        println!("{}", crate::thread_cpu::line(&bulk.cpu_us, "event (bulk)"));
    }
    let floor = &bulk.floor;
    if floor.stories_us > 0.0 {
        let cores = cores();
        let ceiling = cores * 1e6 / floor.total_us();
        // Per event of the file, the CPU two busy cores have at 0.7 of the raw insert.
        let at_bar = cores * 1e6 / (END_TO_END_BAR * bulk.sqlite_eps);
        let spent: f64 = bulk.cpu_us.iter().map(|(_, us)| us).sum();
        println!(
            "floor  {:.1} µs of CPU per event before any projection's logic: validation {:.1}, the log's rows {:.1}, the customers' copies and the event index written raw in key order {:.1}",
            floor.total_us(),
            floor.validate_us,
            floor.log_us,
            floor.stories_us
        );
        println!(
            "       on {cores:.0} cores end to end cannot pass {ceiling:.0} events/s ({:.2} of the raw insert); at {END_TO_END_BAR} of it, {:.1} µs per event are left above the floor, where troth spends {:.1}",
            ceiling / bulk.sqlite_eps,
            at_bar - floor.total_us(),
            spent - floor.total_us()
        );
    }
}

/// The end-to-end bar (bench/README.md): this share of the raw insert.
const END_TO_END_BAR: f64 = 0.7;
/// The HTTP bar: this share of the bare handler's rate.
const HTTP_BAR: f64 = 0.5;

/// The cores this process may run on.
fn cores() -> f64 {
    std::thread::available_parallelism().map_or(1, |n| n.get()) as f64
}

fn print_http(figures: &HttpFigures, bulk: &BulkFloor) {
    println!(
        "http   troth {:>10.0} req/s (p50 {:.2} ms, p99 {:.2} ms)   bare axum {:>10.0} req/s   ratio {:.2}   projection lag p99 {:.1} ms",
        figures.rps, figures.p50_ms, figures.p99_ms, figures.bare_rps, figures.ratio, figures.lag_p99_ms
    );
    if !figures.cpu_us.is_empty() {
        println!(
            "{}; the bare handler's run {:.1} in all",
            crate::thread_cpu::line(&figures.cpu_us, "request (HTTP; the clients' in tokio-rt-worker)"),
            figures.bare_cpu_us
        );
    }
    if figures.log_floor_us > 0.0 && figures.bare_cpu_us > 0.0 {
        let floor = figures.bare_cpu_us + bulk.validate_us + figures.log_floor_us;
        let spent: f64 = figures.cpu_us.iter().map(|(_, us)| us).sum();
        // On busy cores a rate is the inverse of the CPU each unit takes.
        let at_bar = figures.bare_cpu_us / HTTP_BAR;
        println!(
            "floor  {floor:.1} µs of CPU per request before any projection's logic: the bare handler's run {:.1}, validation {:.1}, the log's row in commits of one per client with an fsync {:.1}; at {HTTP_BAR} of the bare handler's rate, {:.1} µs are left above the floor, where troth spends {:.1}",
            figures.bare_cpu_us,
            bulk.validate_us,
            figures.log_floor_us,
            at_bar - floor,
            spent - floor
        );
    }
}

/// Each figure's median over the runs, taken figure by figure (a ratio's median,
/// not the ratio of two medians: each ratio pairs figures measured side by side).
fn medians(runs: &[RunFigures]) -> Report {
    let median = |mut values: Vec<f64>| -> f64 {
        values.sort_by(f64::total_cmp);
        match values.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => values[n / 2],
            n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
        }
    };
    let of = |figure: fn(&RunFigures) -> f64| median(runs.iter().map(figure).collect());
    // Each thread's median over the runs it appeared in, most first.
    let cpu = |each: Vec<&Vec<(String, f64)>>| -> Vec<(String, f64)> {
        let mut by_name: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
        for (name, us) in each.into_iter().flatten() {
            by_name.entry(name).or_default().push(*us);
        }
        let mut medians: Vec<(String, f64)> = by_name
            .into_iter()
            .map(|(name, values)| (name.to_owned(), median(values)))
            .collect();
        medians.sort_by(|a, b| b.1.total_cmp(&a.1));
        medians
    };
    let bulk = BulkFigures {
        troth_eps: of(|r| r.bulk.troth_eps),
        sqlite_eps: of(|r| r.bulk.sqlite_eps),
        ratio: of(|r| r.bulk.ratio),
        append_eps: of(|r| r.bulk.append_eps),
        cpu_us: cpu(runs.iter().map(|r| &r.bulk.cpu_us).collect()),
        floor: BulkFloor {
            validate_us: of(|r| r.bulk.floor.validate_us),
            log_us: of(|r| r.bulk.floor.log_us),
            stories_us: of(|r| r.bulk.floor.stories_us),
        },
    };
    let append_ratio = of(|r| r.bulk.append_eps / r.bulk.sqlite_eps);
    let shells: Vec<&ShellFigures> = runs.iter().filter_map(|r| r.shell.as_ref()).collect();
    let shell = (!shells.is_empty()).then(|| ShellFigures {
        eps: median(shells.iter().map(|s| s.eps).collect()),
        append_ratio: median(shells.iter().map(|s| s.append_ratio).collect()),
        end_to_end_ratio: median(shells.iter().map(|s| s.end_to_end_ratio).collect()),
    });
    let https: Vec<&HttpFigures> = runs.iter().filter_map(|r| r.http.as_ref()).collect();
    let http = (!https.is_empty()).then(|| HttpFigures {
        rps: median(https.iter().map(|h| h.rps).collect()),
        p50_ms: median(https.iter().map(|h| h.p50_ms).collect()),
        p99_ms: median(https.iter().map(|h| h.p99_ms).collect()),
        bare_rps: median(https.iter().map(|h| h.bare_rps).collect()),
        ratio: median(https.iter().map(|h| h.ratio).collect()),
        lag_p99_ms: median(https.iter().map(|h| h.lag_p99_ms).collect()),
        cpu_us: cpu(https.iter().map(|h| &h.cpu_us).collect()),
        bare_cpu_us: median(https.iter().map(|h| h.bare_cpu_us).collect()),
        log_floor_us: median(https.iter().map(|h| h.log_floor_us).collect()),
    });
    Report {
        append: Rate {
            eps: bulk.append_eps,
            ratio: append_ratio,
        },
        end_to_end: Rate {
            eps: bulk.troth_eps,
            ratio: bulk.ratio,
        },
        lag_p99_ms: http.as_ref().map(|h| h.lag_p99_ms),
        shell,
        bulk,
        http,
        runs: runs.len(),
    }
}

pub fn eta(args: EtaArgs) -> anyhow::Result<()> {
    let world = args.world.load()?;
    println!(
        "bench eta: world {} ({} customers, {} days, seed {}); estimator vs departure + (stops before + 1) × {} min",
        world.name,
        world.customers,
        world.days,
        world.seed,
        crate::eta_accuracy::BASELINE_STOP_MIN
    );
    let accuracy = crate::eta_accuracy::measure(&world, troth_core::eta::EtaParams::default())?;
    println!("{} shipments delivered; absolute error in minutes", accuracy.delivered);
    println!("horizon  measured   estimator MAE   p90   baseline MAE   p90   ratio MAE   p90");
    for h in &accuracy.horizons {
        println!(
            "{:>4} min {:>9} {:>15.1} {:>5.1} {:>14.1} {:>5.1} {:>11.2} {:>5.2}",
            h.horizon_min,
            h.measured,
            h.mae_min,
            h.p90_min,
            h.baseline_mae_min,
            h.baseline_p90_min,
            h.mae_ratio,
            h.p90_ratio
        );
    }
    if args.json {
        println!("{}", serde_json::to_string(&accuracy)?);
    }
    Ok(())
}

/// What [`simulated`] wrote.
struct Simulated {
    /// When the world starts: every event is at or after it.
    start: Timestamp,
    /// The time of the last event written (the simulator writes in time order).
    last: Timestamp,
}

/// The first `count` events of the built-in retail world, scaled to give at
/// least that many (about 90 events per customer over its 30 days).
fn simulated(count: u64, seed: u64, sink: &mut dyn FnMut(&str) -> std::io::Result<()>) -> anyhow::Result<Simulated> {
    let mut world = troth_sim::World::from_toml(crate::simulate::DEFAULT_WORLD)?;
    world.customers = (count / 60).max(200);
    world.seed = seed;
    let start = world.start_time()?;
    let mut written = 0u64;
    let mut last = String::new();
    let outcome = troth_sim::simulate(&world, &mut |line| {
        if written == count {
            return Err(std::io::Error::other("enough events"));
        }
        written += 1;
        last.clear();
        last.push_str(line);
        sink(line)
    });
    match outcome {
        Ok(_) => {}
        Err(_) if written == count => {}
        Err(e) => return Err(e.into()),
    }
    let last = troth_core::validate_event(&last)
        .map_err(|r| anyhow::anyhow!("the simulator wrote an invalid event: {}", r.error))?
        .time;
    Ok(Simulated { start, last })
}

/// Pins a benchmark store's clock (see `SqliteStore::set_clock`), so figures do not
/// depend on the day they are taken: plays answer only events within a day of it.
fn pin_clock(store: &SqliteStore, at: Timestamp) {
    store.set_clock(Arc::new(move || at));
}

/// Imports `file` as history taken in at `now` (its last event's time): the last
/// day's events are news that plays answer, the rest is history.
fn bulk(work: &std::path::Path, file: &std::path::Path, now: Timestamp) -> anyhow::Result<BulkFigures> {
    let dir = work.join("bulk");
    let cpu = crate::thread_cpu::ThreadCpu::start();
    let started = Instant::now();
    let (summary, end_to_end, cpu) = {
        let store = SqliteStore::open_with_journey(&dir, Some(&crate::config::load_journey(None)?))?;
        pin_clock(&store, now);
        let summary = crate::import::into_store(
            &store,
            BufReader::with_capacity(1 << 20, std::fs::File::open(file)?),
            &mut |_| {},
        )?;
        store.settle_blocking(&mut |_, _| {})?;
        let elapsed = started.elapsed();
        let cpu = cpu.stop();
        let times = store.projection_times();
        let total: f64 = times.iter().map(|(_, t)| t.as_secs_f64()).sum();
        let events = (summary.accepted + summary.duplicate) as f64;
        println!(
            "projectors (the projections' thread takes each event through all in turn; stories and event_index are written on a thread of their own):"
        );
        for (name, time) in &times {
            println!(
                "  {name:<11} {:>10.0} events/s   {:>3.0} % of projection time",
                events / time.as_secs_f64().max(1e-9),
                100.0 * time.as_secs_f64() / total.max(1e-9)
            );
        }
        (summary, elapsed, cpu)
    };
    anyhow::ensure!(
        summary.rejected == 0,
        "synthetic events were rejected: {:?}",
        summary.rejects
    );
    let append_eps = summary.events_per_second();
    let troth_eps = (summary.accepted + summary.duplicate) as f64 / end_to_end.as_secs_f64();

    // The reference: the very rows troth stored, inserted raw into the same schema.
    let rows = log_rows(&dir.join("troth.db"))?;
    // The median of three inserts, each into a fresh file: on a shared machine one
    // insert alone moved by a factor of two between runs, and every ratio with it.
    let mut rates = Vec::with_capacity(RAW_RUNS);
    for run in 0..RAW_RUNS {
        let path = work.join(format!("raw-{run}.db"));
        rates.push(raw_insert(&path, &rows, troth_store::sqlite::MAX_GROUP_EVENTS)?.rows_per_second);
        remove_database(&path);
    }
    rates.sort_by(f64::total_cmp);
    let sqlite_eps = rates[RAW_RUNS / 2];
    println!(
        "raw sqlite inserts {} rows/s; the median is the reference",
        rates.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(" / ")
    );
    let lines = (summary.accepted + summary.duplicate) as f64;
    let cpu_us = crate::thread_cpu::per_unit(&cpu, lines);
    let floor = BulkFloor {
        validate_us: validation(file)?.as_secs_f64() * 1e6 / lines,
        log_us: rows.len() as f64 / sqlite_eps * 1e6 / lines,
        stories_us: raw_stories(work, &dir.join("stories.db"))?.as_secs_f64() * 1e6 / lines,
    };
    Ok(BulkFigures {
        troth_eps,
        sqlite_eps,
        ratio: troth_eps / sqlite_eps,
        append_eps,
        cpu_us,
        floor,
    })
}

/// The rows of the log at `path`, in order, as the reference inserts them.
fn log_rows(path: &std::path::Path) -> anyhow::Result<Vec<RawRow>> {
    let stored = rusqlite::Connection::open(path)?;
    let mut select = stored.prepare("SELECT id, type, time_us, received_us, subject, body FROM events ORDER BY seq")?;
    let mut cursor = select.query([])?;
    let mut rows = Vec::new();
    while let Some(r) = cursor.next()? {
        rows.push((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?));
    }
    Ok(rows)
}

/// How long validating every line of `file` takes, reading it included.
fn validation(file: &std::path::Path) -> anyhow::Result<Duration> {
    let mut reader = BufReader::with_capacity(1 << 20, std::fs::File::open(file)?);
    let mut line = String::with_capacity(4096);
    let started = Instant::now();
    while std::io::BufRead::read_line(&mut reader, &mut line)? > 0 {
        // Rejections cost as much to find as acceptances; the bench's file has none.
        let _ = std::hint::black_box(troth_core::validate_event(line.trim()));
        line.clear();
    }
    Ok(started.elapsed())
}

/// The customers' copies and the event index that an import left in `built`,
/// inserted raw into a fresh file with their own schema, table by table in key
/// order (each table's own order), as the copies' writer commits (`synchronous =
/// NORMAL`): how long that took. The columns are named so that SQLite decodes and
/// encodes every row rather than copying its record as it is, which nothing that
/// builds the rows from events could do.
fn raw_stories(work: &std::path::Path, built: &std::path::Path) -> anyhow::Result<Duration> {
    const TABLES: [(&str, &str); 3] = [
        ("customer_events", "cid, seq, body"),
        ("subject_events", "subject, seq"),
        ("type_events", "type, seq"),
    ];
    let path = work.join("floor-stories.db");
    let conn = rusqlite::Connection::open(&path)?;
    conn.execute_batch(troth_store::sqlite::PRAGMAS)?;
    conn.execute_batch("PRAGMA synchronous = NORMAL;")?;
    conn.execute(
        "ATTACH DATABASE ?1 AS built",
        [built.to_str().context("the scratch path is not UTF-8")?],
    )?;
    for (table, _) in TABLES {
        let sql: String = conn.query_row(
            "SELECT sql FROM built.sqlite_schema WHERE type = 'table' AND name = ?1",
            [table],
            |r| r.get(0),
        )?;
        conn.execute_batch(&sql)?;
    }
    let started = Instant::now();
    for (table, columns) in TABLES {
        conn.execute_batch(&format!(
            "BEGIN; INSERT INTO main.{table} ({columns}) SELECT {columns} FROM built.{table} ORDER BY {columns}; COMMIT;"
        ))?;
    }
    let spent = started.elapsed();
    drop(conn);
    remove_database(&path);
    Ok(spent)
}

/// Deletes a scratch SQLite file and its WAL, so that their pages are never written
/// back during a later measurement.
fn remove_database(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

/// How many times the raw reference insert runs; the median counts.
const RAW_RUNS: usize = 3;

/// A row of the log as the reference inserts it.
type RawRow = (String, String, i64, i64, Option<String>, String);

/// What a raw insert took.
struct RawInsert {
    rows_per_second: f64,
    /// This thread's CPU per row, in microseconds.
    cpu_us: f64,
}

/// Inserts `rows` raw into a fresh log schema at `path`, with the log's settings,
/// `group` rows per transaction.
fn raw_insert(path: &std::path::Path, rows: &[RawRow], group: usize) -> anyhow::Result<RawInsert> {
    let raw = rusqlite::Connection::open(path)?;
    raw.execute_batch(troth_store::sqlite::PRAGMAS)?;
    raw.execute_batch(troth_store::sqlite::events_schema())?;
    let cpu = crate::thread_cpu::this_thread_ns();
    let started = Instant::now();
    for chunk in rows.chunks(group.max(1)) {
        let tx = raw.unchecked_transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO events (id, type, time_us, received_us, subject, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for (id, t, time, received, subject, body) in chunk {
                insert.execute(params![id, t, time, received, subject, body])?;
            }
        }
        tx.commit()?;
    }
    let elapsed = started.elapsed();
    let cpu_ns = cpu
        .zip(crate::thread_cpu::this_thread_ns())
        .map_or(0, |(before, after)| after.saturating_sub(before));
    Ok(RawInsert {
        rows_per_second: rows.len() as f64 / elapsed.as_secs_f64(),
        cpu_us: cpu_ns as f64 / 1e3 / rows.len().max(1) as f64,
    })
}

/// Loads `file` with SQLite's own shell into the log's `events` table, the way one
/// would by hand: `.import` of the lines into a one-column table, then the columns
/// taken out with `json_extract`, in WAL with `synchronous = FULL`. Lines per
/// second, or `None` when no `sqlite3` is on the PATH.
fn shell_load(work: &std::path::Path, file: &std::path::Path) -> anyhow::Result<Option<f64>> {
    use std::process::{Command, Stdio};
    let found = Command::new("sqlite3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        return Ok(None);
    }
    let lines = {
        let mut count = 0u64;
        let mut reader = BufReader::with_capacity(1 << 20, std::fs::File::open(file)?);
        let mut line = Vec::new();
        while std::io::BufRead::read_until(&mut reader, b'\n', &mut line)? > 0 {
            count += 1;
            line.clear();
        }
        count
    };
    let path = file
        .to_str()
        .context("the scratch directory's path is not UTF-8")?
        .replace('"', "\\\"");
    // The unit separator as the column separator: no JSON line holds one unescaped.
    let script = format!(
        "{pragmas}\nCREATE TABLE lines (line TEXT);\n{events}\n.mode ascii\n.separator \"\u{1f}\" \"\\n\"\n.import \"{path}\" lines\n\
         INSERT INTO events (id, type, time_us, received_us, subject, body)\n\
           SELECT json_extract(line, '$.id'), json_extract(line, '$.type'),\n\
                  CAST((julianday(json_extract(line, '$.time')) - 2440587.5) * 86400000000 AS INTEGER),\n\
                  CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER),\n\
                  json_extract(line, '$.subject'), line\n\
             FROM lines;\n",
        pragmas = troth_store::sqlite::PRAGMAS,
        events = troth_store::sqlite::events_schema(),
    );
    let started = Instant::now();
    let mut child = Command::new("sqlite3")
        .arg(work.join("shell.db"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting sqlite3")?;
    child
        .stdin
        .take()
        .context("sqlite3's input")?
        .write_all(script.as_bytes())?;
    let output = child.wait_with_output()?;
    let elapsed = started.elapsed();
    anyhow::ensure!(
        output.status.success() && output.stderr.is_empty(),
        "sqlite3 failed to load the file: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let loaded: i64 =
        rusqlite::Connection::open(work.join("shell.db"))?
            .query_row("SELECT count(*) FROM events", [], |r| r.get(0))?;
    anyhow::ensure!(loaded as u64 == lines, "sqlite3 loaded {loaded} of {lines} lines");
    Ok(Some(lines as f64 / elapsed.as_secs_f64()))
}

/// Live traffic: the store's clock stands at the world's start, so every event is
/// news and triggers its plays, as events sent as they happen do.
async fn http(
    work: &std::path::Path,
    lines: &[Bytes],
    args: &IngestArgs,
    now: Timestamp,
) -> anyhow::Result<HttpFigures> {
    let localhost: SocketAddr = "127.0.0.1:0".parse()?;
    // The reference: parse the same JSON, do nothing.
    let bare = axum::Router::new().route(
        "/api/v1/events",
        axum::routing::post(|body: Bytes| async move {
            let parsed: Result<serde_json::Value, _> = serde_json::from_slice(&body);
            if parsed.is_ok() {
                axum::http::StatusCode::OK
            } else {
                axum::http::StatusCode::BAD_REQUEST
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(localhost).await?;
    let bare_addr = listener.local_addr()?;
    let bare_server = tokio::spawn(async move { axum::serve(listener, bare).await });

    let journey = crate::config::load_journey(None)?;
    let store = SqliteStore::open_with_journey(&work.join("http"), Some(&journey))?;
    pin_clock(&store, now);
    let watched = store.clone();
    let (troth_addr, stop) = crate::serve::spawn(store, localhost, None, Some(journey)).await?;

    let (warm, measured) = lines.split_at(lines.len().min(2_000));
    // Warm both up alike, then measure the bare handler first and troth second.
    load(bare_addr, warm, args.clients).await?;
    load(troth_addr, warm, args.clients).await?;
    let bare_cpu = crate::thread_cpu::ThreadCpu::start();
    let bare = load(bare_addr, measured, args.clients).await?;
    let bare_cpu = crate::thread_cpu::per_unit(&bare_cpu.stop(), measured.len() as f64);
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let mut lags = Vec::new();
            while sampling.load(Ordering::Relaxed) {
                let progress = troth_store::Store::progress(&watched);
                lags.push(progress.projectors.iter().map(|p| p.lag_seconds).fold(0.0, f64::max) * 1e3);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            lags
        })
    };
    let cpu = crate::thread_cpu::ThreadCpu::start();
    let troth = load(troth_addr, measured, args.clients).await?;
    let cpu = cpu.stop();
    sampling.store(false, Ordering::Relaxed);
    let mut lags = sampler.await?;
    lags.sort_by(f64::total_cmp);
    let lag_p99_ms = lags
        .get(((lags.len() as f64 * 0.99) as usize).min(lags.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default();
    let _ = stop.send(());
    bare_server.abort();
    // The floor of the durable append under this load: the run's rows, raw, in
    // commits of one row per client, each fsync'd.
    let rows = log_rows(&work.join("http").join("troth.db"))?;
    let path = work.join("floor-log.db");
    let log_floor_us = tokio::task::block_in_place(|| raw_insert(&path, &rows, args.clients))?.cpu_us;
    remove_database(&path);
    Ok(HttpFigures {
        rps: troth.rps,
        p50_ms: troth.p50_ms,
        p99_ms: troth.p99_ms,
        bare_rps: bare.rps,
        ratio: troth.rps / bare.rps,
        lag_p99_ms,
        cpu_us: crate::thread_cpu::per_unit(&cpu, measured.len() as f64),
        bare_cpu_us: bare_cpu.iter().map(|(_, us)| us).sum(),
        log_floor_us,
    })
}

struct Load {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Sends each body once, from `clients` connections, and times every request.
async fn load(addr: SocketAddr, bodies: &[Bytes], clients: usize) -> anyhow::Result<Load> {
    let bodies: Arc<Vec<Bytes>> = Arc::new(bodies.to_vec());
    let next = Arc::new(AtomicUsize::new(0));
    let target = Target::from_addr(addr);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients.max(1) {
        let (bodies, next, target) = (bodies.clone(), next.clone(), target.clone());
        tasks.push(tokio::spawn(async move {
            let mut client = Client::connect(&target, None).await?;
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { break };
                let sent = Instant::now();
                let (status, answer) = client.post_json("/api/v1/events", body.clone()).await?;
                latencies.push(sent.elapsed());
                anyhow::ensure!(status.is_success(), "{status}: {}", String::from_utf8_lossy(&answer));
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies: Vec<Duration> = Vec::with_capacity(bodies.len());
    for task in tasks {
        latencies.extend(task.await??);
    }
    let wall = started.elapsed();
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Ok(Load {
        rps: latencies.len() as f64 / wall.as_secs_f64(),
        p50_ms: at(0.50).as_secs_f64() * 1e3,
        p99_ms: at(0.99).as_secs_f64() * 1e3,
    })
}
