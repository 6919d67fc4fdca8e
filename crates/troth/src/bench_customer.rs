//! `troth bench customer`: the agent's 360 read (`GET /api/v1/customers/{id}/story`
//! without the HTTP around it) of random customers of a simulated retailer, against
//! a plain indexed SQLite query of the same customer's rows (their newest events in
//! the log, by an index of positions by customer) in the same run, on the same store.

use std::io::{BufReader, BufWriter, Write};
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;
use troth_store::Store;
use troth_store::sqlite::SqliteStore;

#[derive(Debug, Clone, clap::Args)]
pub struct CustomerArgs {
    /// Customers of the simulated retailer.
    #[arg(long, default_value_t = 1_000_000)]
    pub customers: u64,
    /// Simulated days: 7 gives about 20 events per customer.
    #[arg(long, default_value_t = 7)]
    pub days: u32,
    /// Stories read (the same customers for both).
    #[arg(long, default_value_t = 2_000)]
    pub reads: usize,
    /// End with one line of JSON for scripts.
    #[arg(long)]
    pub json: bool,
    /// Keep the simulated store in this directory, and read it again on the next
    /// run instead of simulating and importing anew (`--customers` and `--days` are
    /// then those it was made with).
    #[arg(long, value_name = "DIR")]
    pub store: Option<std::path::PathBuf>,
}

#[derive(Debug, Serialize)]
struct Report {
    customers: u64,
    events: u64,
    p50_ms: f64,
    p99_ms: f64,
    plain_p99_ms: f64,
    ratio: f64,
}

/// The reference's connection: an index of the log's positions by customer
/// (`by_customer`, built here from the identities' answer for each event, in a
/// scratch file beside the store's, which keeps no such index) with the log
/// attached, set as the store's read connections are.
fn reference(store: &std::path::Path, scratch: &std::path::Path) -> anyhow::Result<rusqlite::Connection> {
    let path = |p: std::path::PathBuf| p.to_str().map(str::to_owned).context("the scratch path is not UTF-8");
    let conn = rusqlite::Connection::open(scratch.join("reference.db"))?;
    conn.execute(
        "ATTACH DATABASE ?1 AS projections",
        [path(store.join("projections.db"))?],
    )?;
    conn.execute_batch(
        "DROP TABLE IF EXISTS by_customer;
         CREATE TABLE by_customer (cid INTEGER NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (cid, seq)) WITHOUT ROWID;
         INSERT INTO by_customer SELECT cid, seq FROM projections.event_customers ORDER BY cid, seq;
         DETACH DATABASE projections;",
    )?;
    conn.execute("ATTACH DATABASE ?1 AS log", [path(store.join("troth.db"))?])?;
    conn.execute_batch(troth_store::sqlite::READER_PRAGMAS)?;
    Ok(conn)
}

pub fn customer(args: CustomerArgs) -> anyhow::Result<()> {
    let work = tempfile::tempdir().context("creating a scratch directory")?;
    let dir = args.store.clone().unwrap_or_else(|| work.path().join("store"));
    let journey = crate::config::load_journey(None)?;
    let reuse = dir.join("troth.db").exists();
    let store = SqliteStore::open_with_journey(&dir, Some(&journey))?;
    let events = if reuse {
        store.settle_blocking(&mut |_, _| {})?;
        let events = store.progress().log.max(0) as u64;
        println!(
            "bench customer: the store in {} ({events} events), {} stories read",
            dir.display(),
            args.reads
        );
        events
    } else {
        load(&store, &args, work.path())?
    };
    let customers = {
        let conn = rusqlite::Connection::open(dir.join("projections.db"))?;
        let n: i64 = conn.query_row("SELECT max(cid) FROM customers", [], |r| r.get(0))?;
        n.max(1) as u64
    };
    // The same pseudo-random customers for both, from a fixed seed.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let picks: Vec<u64> = (0..args.reads)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            1 + state % customers
        })
        .collect();

    let runtime = crate::cli::runtime()?;
    let app = troth_http::AppState::new(store.clone(), None);
    let options = troth_http::story::StoryOptions::default();
    let now = troth_core::Timestamp::now();
    // The reference: the customer's newest events in the log, found by an index of
    // the log's positions by customer, as a plain schema would keep them.
    let conn = reference(&dir, work.path())?;
    let mut plain = conn.prepare(
        "SELECT e.seq, e.received_us, e.body FROM by_customer c JOIN events e ON e.seq = c.seq
          WHERE c.cid = ?1 ORDER BY c.seq DESC LIMIT 1000",
    )?;
    let mut plain_read = |cid: u64| -> anyhow::Result<f64> {
        let started = Instant::now();
        let rows: Vec<(i64, i64, String)> = plain
            .query_map([cid as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        std::hint::black_box(rows);
        Ok(started.elapsed().as_secs_f64() * 1e3)
    };
    let mut story_ms = Vec::with_capacity(picks.len());
    let mut plain_ms = Vec::with_capacity(picks.len());
    runtime.block_on(async {
        for (i, cid) in picks.iter().enumerate() {
            // Each customer is read both ways, first one way then the other in turn,
            // so that neither read always finds the other's pages in the cache.
            if i % 2 == 1 {
                plain_ms.push(plain_read(*cid)?);
            }
            let key = format!("cus_{cid}");
            let started = Instant::now();
            let story = troth_http::story::read(&app, &key, &options, now)
                .await
                .map_err(|e| anyhow::anyhow!("reading {key}'s story: {}", e.detail))?;
            story_ms.push(started.elapsed().as_secs_f64() * 1e3);
            anyhow::ensure!(story.is_some(), "{key} has no story");
            if i % 2 == 0 {
                plain_ms.push(plain_read(*cid)?);
            }
        }
        anyhow::Ok(())
    })?;
    let report = Report {
        customers,
        events,
        p50_ms: percentile(&mut story_ms, 0.50),
        p99_ms: percentile(&mut story_ms, 0.99),
        plain_p99_ms: percentile(&mut plain_ms, 0.99),
        ratio: 0.0,
    };
    let report = Report {
        ratio: report.p99_ms / report.plain_p99_ms.max(1e-6),
        ..report
    };
    println!(
        "story  p50 {:.2} ms  p99 {:.2} ms   plain query p50 {:.3} ms  p99 {:.3} ms   ratio {:.1} (p99 / plain p99)",
        report.p50_ms,
        report.p99_ms,
        percentile(&mut plain_ms, 0.50),
        report.plain_p99_ms,
        report.ratio
    );
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}

/// Simulates the retailer's customers and imports their events into `store`.
fn load(store: &SqliteStore, args: &CustomerArgs, scratch: &std::path::Path) -> anyhow::Result<u64> {
    let mut world = troth_sim::World::from_toml(crate::simulate::DEFAULT_WORLD)?;
    world.customers = args.customers;
    world.days = args.days;
    println!(
        "bench customer: {} customers over {} days, {} stories read",
        args.customers, args.days, args.reads
    );
    let file = scratch.join("events.ndjson");
    {
        let mut out = BufWriter::new(std::fs::File::create(&file)?);
        troth_sim::simulate(&world, &mut |line| {
            out.write_all(line.as_bytes())?;
            out.write_all(b"\n")
        })?;
        out.flush()?;
    }
    let started = Instant::now();
    let summary = crate::import::into_store(
        store,
        BufReader::with_capacity(1 << 20, std::fs::File::open(&file)?),
        &mut |_| {},
    )?;
    store.settle_blocking(&mut |_, _| {})?;
    let _ = std::fs::remove_file(&file);
    let events = summary.accepted + summary.duplicate;
    println!("loaded {events} events in {:.1} s", started.elapsed().as_secs_f64());
    Ok(events)
}

fn percentile(values: &mut [f64], q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    values
        .get(((values.len() as f64 * q) as usize).min(values.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}
