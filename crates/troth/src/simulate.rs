//! `troth simulate`: a simulated retailer's events as NDJSON, to a file, to
//! standard output or to a running server, with a manifest of the faults planted.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use troth_sim::{Manifest, World};

/// The world `troth simulate` and `troth demo` use when given none.
pub const DEFAULT_WORLD: &str = include_str!("../../../worlds/retail.toml");

#[derive(Debug, Clone, clap::Args)]
pub struct WorldArgs {
    /// World file (TOML); see docs/worlds.md. Default: the built-in retail world.
    #[arg(long)]
    pub world: Option<PathBuf>,
    /// Number of customers (overrides the world file).
    #[arg(long)]
    pub customers: Option<u64>,
    /// Number of simulated days (overrides the world file).
    #[arg(long)]
    pub days: Option<u32>,
    /// Random seed (overrides the world file); the same seed gives the same bytes.
    #[arg(long)]
    pub seed: Option<u64>,
}

impl WorldArgs {
    pub fn load(&self) -> anyhow::Result<World> {
        let (text, origin) = match &self.world {
            Some(path) => (
                std::fs::read_to_string(path).with_context(|| format!("reading the world file {}", path.display()))?,
                path.display().to_string(),
            ),
            None => (DEFAULT_WORLD.to_owned(), "the built-in retail world".to_owned()),
        };
        let mut world = World::from_toml(&text).with_context(|| format!("in {origin}"))?;
        if let Some(customers) = self.customers {
            world.customers = customers;
        }
        if let Some(days) = self.days {
            world.days = days;
        }
        if let Some(seed) = self.seed {
            world.seed = seed;
        }
        Ok(world)
    }
}

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    #[command(flatten)]
    pub world: WorldArgs,
    /// Where to write the events: a file, or - for standard output (the default).
    #[arg(long, default_value = "-", conflicts_with = "ingest")]
    pub out: PathBuf,
    /// Write the manifest of planted faults (JSON) to this file.
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// Send the events to a running server instead, e.g. http://127.0.0.1:7878.
    #[arg(long)]
    pub ingest: Option<String>,
    /// API key for --ingest.
    #[arg(long, env = "TROTH_API_KEY", hide_env_values = true)]
    pub key: Option<String>,
}

pub fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let world = args.world.load()?;
    let started = Instant::now();
    let bar = crate::import::counter_bar("events");
    let manifest = match &args.ingest {
        Some(url) => to_server(&world, url, args.key.clone(), &bar)?,
        None => {
            let out: Box<dyn Write> = if args.out.as_os_str() == "-" {
                Box::new(std::io::stdout().lock())
            } else {
                Box::new(std::fs::File::create(&args.out).with_context(|| format!("creating {}", args.out.display()))?)
            };
            let mut out = BufWriter::with_capacity(1 << 20, out);
            let mut n = 0u64;
            let manifest = troth_sim::simulate(&world, &mut |line| {
                out.write_all(line.as_bytes())?;
                out.write_all(b"\n")?;
                n += 1;
                if n.is_multiple_of(65_536) {
                    bar.set_position(n);
                }
                Ok(())
            })?;
            out.flush()?;
            manifest
        }
    };
    bar.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!(
        "simulated {} events of {} customers over {} days in {elapsed:.1}s ({:.0} events/s), {} faults planted",
        manifest.events,
        manifest.customers,
        manifest.days,
        manifest.events as f64 / elapsed.max(1e-9),
        manifest.faults.len()
    );
    if let Some(path) = &args.manifest {
        let text = serde_json::to_string_pretty(&manifest)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing the manifest {}", path.display()))?;
    }
    Ok(())
}

fn to_server(world: &World, url: &str, key: Option<String>, bar: &indicatif::ProgressBar) -> anyhow::Result<Manifest> {
    let mut sink = crate::import::ServerSink::connect(url, key)?;
    let mut sent = 0u64;
    let manifest = troth_sim::simulate(world, &mut |line| {
        sink.line(line.as_bytes()).map_err(std::io::Error::other)?;
        sent += 1;
        if sent.is_multiple_of(5_000) {
            bar.set_position(sent);
        }
        Ok(())
    })?;
    let summary = sink.finish()?;
    if let Some((line, field, message)) = summary.rejects.first() {
        anyhow::bail!(
            "{url} rejected {} simulated events, e.g. line {line}: {field}: {message}",
            summary.rejected
        );
    }
    Ok(manifest)
}
