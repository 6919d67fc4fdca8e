//! The customers' copies of their events (`customer_events`, in `stories.db`), kept
//! by a thread of their own, `troth-stories`, which follows the projections: it
//! needs each event's customer, which the identities resolve there.
//!
//! The copies are each event's text again, in the order of its customer, so a
//! customer's story reads a few neighbouring pages (see `story.rs`). Written inside
//! the projections' transaction they were about a seventh of an import; here they
//! take the core the projections leave idle. After each commit the projections
//! hand over their batch's copies and the position they passed (a bounded channel:
//! a full one holds the projections back, and through them the appends). This
//! thread writes them in one transaction with its own checkpoint
//! (`meta.stories_through`), so a batch written twice changes nothing. At start it
//! catches up from `event_customers` and the log, from its checkpoint to where the
//! projections stood, before it takes what they hand over.

use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};

use super::log::Positions;
use super::projections::ProjectionTimes;
use crate::StoreError;

/// The file, beside the log and the projections.
pub const FILE: &str = "stories.db";

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS customer_events (
    cid   INTEGER NOT NULL,
    seq   INTEGER NOT NULL,
    body  TEXT NOT NULL,
    PRIMARY KEY (cid, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
";

/// Like the projections' file, a power cut may undo its last commits, and the
/// checkpoint goes back with them. SQLite copies its WAL into the file itself, in
/// the commit that takes it past 64 MiB: the commits here hold nobody up, and a
/// copy (with its fsync) that seldom keeps its writes from competing with the log's
/// fsyncs for the disk.
pub const PRAGMAS: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
PRAGMA foreign_keys = OFF;
PRAGMA temp_store = MEMORY;
PRAGMA cache_size = -65536;
PRAGMA wal_autocheckpoint = 16384;
PRAGMA journal_size_limit = 67108864;
";

/// How many events a catch-up reads at once.
const CATCH_UP_EVENTS: i64 = 65_536;

/// Copies the projections committed, `(cid, seq, text)`, and the position they passed.
pub struct Batch {
    pub through: i64,
    pub copies: Vec<(i64, i64, String)>,
}

/// The stories' checkpoint as stored.
pub fn checkpoint(conn: &Connection, schema: &str) -> rusqlite::Result<i64> {
    Ok(conn
        .query_row(
            &format!("SELECT value FROM {schema}.meta WHERE key = 'stories_through'"),
            [],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0))
}

pub struct Stories {
    /// `stories.db`, with `projections.db` attached as `projections` and the log as
    /// `log`, read when catching up.
    conn: Connection,
    checkpoint: i64,
    positions: Arc<Positions>,
    /// The projectors' times, where the time spent writing here is added to the
    /// `stories` projector's.
    times: ProjectionTimes,
}

impl Stories {
    pub fn new(conn: Connection, positions: Arc<Positions>, times: ProjectionTimes) -> Result<Stories, StoreError> {
        let checkpoint = checkpoint(&conn, "main")?;
        Ok(Stories {
            conn,
            checkpoint,
            positions,
            times,
        })
    }

    /// Catches up to `projected` (where the projections stood when they started),
    /// then writes what they hand over until they stop.
    pub fn run(mut self, batches: Receiver<Batch>, projected: i64) {
        // However the thread ends, a panic included, appends stop waiting for
        // projections that no longer move.
        let _stopped = Stopped(self.positions.clone());
        super::priority::follow_behind_the_log("stories");
        while self.checkpoint < projected {
            if let Err(e) = self.catch_up(projected) {
                tracing::error!(error = %e, "the customers' copies could not catch up; trying again in a second");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        for mut batch in batches {
            while let Err(e) = self.write(&mut batch) {
                tracing::error!(error = %e, "the customers' copies could not be written; trying again in a second");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }

    /// Copies the next events up to `projected` from `event_customers` and the log.
    fn catch_up(&mut self, projected: i64) -> Result<(), StoreError> {
        let through = (self.checkpoint + CATCH_UP_EVENTS).min(projected);
        let copies = {
            let mut read = self.conn.prepare_cached(
                "SELECT c.cid, c.seq, e.body FROM projections.event_customers c JOIN log.events e ON e.seq = c.seq
                  WHERE c.seq > ?1 AND c.seq <= ?2",
            )?;
            read.query_map([self.checkpoint, through], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?
        };
        self.write(&mut Batch { through, copies })
    }

    /// Writes a batch in customer order with the checkpoint it reaches.
    fn write(&mut self, batch: &mut Batch) -> Result<(), StoreError> {
        if batch.through <= self.checkpoint {
            return Ok(());
        }
        let started = Instant::now();
        // In customer order, a batch touches each customer's pages once.
        batch.copies.sort_unstable_by_key(|(cid, seq, _)| (*cid, *seq));
        let tx = self.conn.unchecked_transaction()?;
        {
            let mut copy = tx.prepare_cached(
                "INSERT INTO main.customer_events (cid, seq, body) VALUES (?1, ?2, ?3)
                 ON CONFLICT (cid, seq) DO UPDATE SET body = excluded.body",
            )?;
            for (cid, seq, body) in &batch.copies {
                if *seq > self.checkpoint {
                    copy.execute(params![cid, seq, body])?;
                }
            }
        }
        tx.prepare_cached(
            "INSERT INTO main.meta (key, value) VALUES ('stories_through', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )?
        .execute([batch.through])?;
        tx.commit()?;
        self.checkpoint = batch.through;
        self.positions.stories.advance(batch.through);
        self.positions.passed();
        let mut times = self.times.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, spent)) = times.iter_mut().find(|(name, _)| *name == super::story::Copies::NAME) {
            *spent += started.elapsed();
        }
        Ok(())
    }
}

struct Stopped(Arc<Positions>);

impl Drop for Stopped {
    fn drop(&mut self) {
        self.0
            .projections_stopped
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Moves the copies a store from before `stories.db` kept in `projections.db` (the
/// projections' connection, with `stories.db` attached as `stories`): copied with
/// the projections' checkpoint as the stories', then dropped from the projections.
/// Run again after a stop between the two, it only drops them.
pub fn move_from_projections(conn: &Connection, projected: i64) -> Result<(), StoreError> {
    let old: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM main.sqlite_master WHERE type = 'table' AND name = 'customer_events')",
        [],
        |r| r.get(0),
    )?;
    if !old {
        return Ok(());
    }
    if checkpoint(conn, "stories")? == 0 {
        let started = std::time::Instant::now();
        let tx = conn.unchecked_transaction()?;
        let moved = tx.execute(
            "INSERT OR IGNORE INTO stories.customer_events SELECT cid, seq, body FROM main.customer_events",
            [],
        )?;
        tx.execute(
            "INSERT INTO stories.meta (key, value) VALUES ('stories_through', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [projected],
        )?;
        tx.commit()?;
        tracing::info!(
            events = moved,
            seconds = started.elapsed().as_secs_f64(),
            "moved the customers' copies into stories.db (once, for a store made before)"
        );
    }
    conn.execute_batch("DROP TABLE main.customer_events")?;
    Ok(())
}
