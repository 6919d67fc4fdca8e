//! A deterministic simulator of a plausible retailer's world: customers who browse,
//! buy, wait for couriers, visit stores, call the contact centre and say what they
//! think — with faults planted in chosen carriers, stores and teams, so that what
//! troth finds can be checked against what was planted.
//!
//! The same [`World`] and seed give the same events, byte for byte. Events stream
//! out one simulated day at a time, so memory stays bounded whatever the size.

mod json;
mod rng;
mod sim;
mod text;
mod world;

use serde::{Deserialize, Serialize};

pub use world::{CASE_CATEGORIES, Carrier, City, FAULT_KINDS, Fault, Rates, Store, Team, World, WorldError};

/// What a simulation produced: the world's extent and the faults it planted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub world: String,
    pub seed: u64,
    pub customers: u64,
    pub days: u32,
    /// First instant of the world (RFC 3339).
    pub start: String,
    /// The instant the world ends (exclusive).
    pub end: String,
    /// How many events were written.
    pub events: u64,
    pub faults: Vec<PlantedFault>,
}

/// One planted fault, described in troth's own terms: the touchpoint and stage it
/// should show up at, and the entity accountable.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlantedFault {
    pub kind: String,
    /// `carrier:NAME`, `store:ID` or `team:NAME`.
    pub target: String,
    pub touchpoint: String,
    /// zmot, fmot, smot or umot.
    pub stage: String,
    pub strength: f64,
    pub description: String,
}

/// Why a simulation stopped.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("invalid world: {0}")]
    World(#[from] WorldError),
    #[error("writing events: {0}")]
    Io(#[from] std::io::Error),
}

/// Streams the world's events as NDJSON lines (one JSON object per call, without
/// the newline) in the order they reach troth: non-decreasing `time`, except that
/// a carrier with a `slow_tracking` fault has its events arrive later than they
/// happened. Holds at most about one simulated day of events at a time.
pub fn simulate(world: &World, sink: &mut dyn FnMut(&str) -> std::io::Result<()>) -> Result<Manifest, SimError> {
    simulate_timed(world, &mut |line, _| sink(line))
}

/// What [`simulate_timed`] writes to: each line with the instant it reaches troth.
pub type TimedSink<'a> = dyn FnMut(&str, troth_core::Timestamp) -> std::io::Result<()> + 'a;

/// [`simulate`], with the instant each event reaches troth: its `time`, or later for
/// a carrier with a `slow_tracking` fault. Lines come in that order, so whoever plays
/// the world at the pace of a clock sends each line when its instant comes (the
/// demo), and a late feed stays late by exactly the fault's delay.
pub fn simulate_timed(world: &World, sink: &mut TimedSink<'_>) -> Result<Manifest, SimError> {
    world.validate()?;
    sim::run(world, sink)
}

/// The faults a world plants, as the manifest describes them.
pub fn planted_faults(world: &World) -> Vec<PlantedFault> {
    sim::planted(world)
}
