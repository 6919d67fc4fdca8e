//! The command line: `troth serve | import | replay | bench`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::config::{Config, ServeFlags};

#[derive(Debug, Parser)]
#[command(
    name = "troth",
    version,
    about = "Keeps an organisation honest about the promises it makes to customers."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(Box<ServeFlags>),
    /// Start the server on a fresh store with a simulated retailer: history loaded, the world live.
    Demo(crate::demo::DemoArgs),
    /// Write a simulated retailer's events as NDJSON (or send them to a server).
    Simulate(crate::simulate::SimulateArgs),
    /// Load NDJSON events into a store, or send them to a running server.
    Import(ImportArgs),
    /// Check a journey map file: one line per problem, FILE:LINE: field: message.
    CheckJourney(CheckJourneyArgs),
    /// Rebuild every projection from the log and report whether it matches what was stored.
    Replay(ReplayArgs),
    /// Measure troth against a reference on this machine, side by side.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// NDJSON file to import, or - for standard input.
    pub file: PathBuf,
    /// Write straight into the store in this directory (no server may hold it).
    #[arg(long, env = "TROTH_DATA_DIR", conflicts_with = "url")]
    pub data_dir: Option<PathBuf>,
    /// Send to a running server instead, e.g. http://127.0.0.1:7878.
    #[arg(long)]
    pub url: Option<String>,
    /// API key for --url (an ingest key or the master key).
    #[arg(long, env = "TROTH_API_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// With --data-dir: the journey map whose promises to follow [default: the built-in retail map].
    #[arg(long, env = "TROTH_JOURNEY", conflicts_with = "url")]
    pub journey: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CheckJourneyArgs {
    /// The journey map (TOML), e.g. journeys/retail.toml.
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[arg(long, env = "TROTH_DATA_DIR", default_value = crate::config::DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Only compare; leave the stored projections as they are.
    #[arg(long)]
    pub check: bool,
    /// The journey map whose health to rebuild [default: the built-in retail map].
    #[arg(long, env = "TROTH_JOURNEY")]
    pub journey: Option<PathBuf>,
    /// Rebuild only this projector, by name (health, say); the others stay as they
    /// are. An unknown name is answered with the names there are.
    #[arg(long, value_name = "NAME")]
    pub projector: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Bulk and HTTP ingest, against raw SQLite inserts and a bare axum handler.
    Ingest(crate::bench::IngestArgs),
    /// Driver positions to tracking pages' live streams: latency under load, against a bare broadcast server.
    Tracking(crate::bench_tracking::TrackingArgs),
    /// Arrival predictions on simulated routes, against a naive baseline.
    Eta(crate::bench::EtaArgs),
    /// The agent's 360 read of random customers, against a plain indexed query of their rows.
    Customer(crate::bench_customer::CustomerArgs),
}

pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only for a person at a terminal, not in files or log collectors.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .init();
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(flags) => {
            let config = Config::load(*flags)?;
            runtime()?.block_on(crate::serve::serve(config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo(args) => {
            crate::demo::run(args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Simulate(args) => {
            crate::simulate::run(args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Import(args) => crate::import::run(args),
        Command::Replay(args) => replay(args),
        Command::CheckJourney(args) => check_journey(args),
        Command::Bench(BenchCommand::Ingest(args)) => {
            crate::bench::ingest(args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Tracking(args)) => {
            crate::bench_tracking::tracking(args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Eta(args)) => {
            crate::bench::eta(args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Customer(args)) => {
            crate::bench_customer::customer(args)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    if !args.data_dir.join("troth.db").exists() {
        anyhow::bail!("no store in {} (looked for troth.db)", args.data_dir.display());
    }
    let journey = crate::config::load_journey(args.journey.as_deref())?;
    let store = troth_store::sqlite::SqliteStore::open_with_journey(&args.data_dir, Some(&journey))?;
    let progress = crate::import::counter_bar("replaying");
    let report = store.replay_projector(args.projector.as_deref(), !args.check, &mut |n| {
        progress.set_position(n)
    })?;
    progress.finish_and_clear();
    println!(
        "replayed {} events: {} customers, {} identities",
        troth_core::number::thousands(report.events as i64),
        troth_core::number::thousands(report.customers as i64),
        troth_core::number::thousands(report.identities as i64)
    );
    let width = report.differences.keys().map(String::len).max().unwrap_or(0);
    for (projection, differences) in &report.differences {
        let verdict = if *differences == 0 {
            "matches".to_owned()
        } else {
            format!("{} rows differ", troth_core::number::thousands(*differences as i64))
        };
        println!("  {projection:<width$}  {verdict}");
    }
    let them = match &args.projector {
        Some(name) => format!("the {name} projector's tables"),
        None => "the stored projections".to_owned(),
    };
    if report.matches() {
        println!("{them} match the log");
        Ok(ExitCode::SUCCESS)
    } else if report.written {
        println!("{them} did not match the log; they have been rebuilt from it");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{them} do not match the log; run without --check to rebuild them");
        Ok(ExitCode::from(1))
    }
}

fn check_journey(args: CheckJourneyArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let file = args.file.display();
    match troth_core::journey::parse_journey(&text) {
        Ok(map) => {
            let promises = map.promises().count();
            let plays: usize = map.touchpoints.iter().map(|t| t.plays.len()).sum();
            println!(
                "{file}: journey {:?}: {} stages, {} touchpoints, {} functions, {promises} promises, {plays} plays",
                map.key,
                map.stages.len(),
                map.touchpoints.len(),
                map.functions.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            for e in &errors {
                println!("{file}:{}: {}: {}", e.line, e.field, e.message);
            }
            Ok(ExitCode::from(1))
        }
    }
}
