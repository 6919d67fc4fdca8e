//! What follows the projections on a thread of its own, `troth-stories`, into a file
//! of its own, `stories.db`: the customers' copies of their events
//! (`customer_events`, see `story.rs`) and the event index (`subject_events`,
//! `type_events`, see `event_index.rs`). The copies need each event's customer,
//! which the identities resolve in the projections; the index needs nothing, and
//! rides along to share the transaction and the checkpoint.
//!
//! Written inside the projections' transaction, the copies were about a seventh of
//! an import and the index about a quarter of the projections' time; here they take
//! the core the projections leave idle. After each commit the projections hand over
//! their batch's rows and the position they passed (a bounded channel: a full one
//! holds the projections back, and through them the appends). This thread writes
//! them in one transaction with its own checkpoint (`meta.stories_through`), so a
//! batch written twice changes nothing. At start it catches up from
//! `event_customers` and the log, from its checkpoint to where the projections
//! stood, before it takes what they hand over.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};

use super::linger::{self, Linger};
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
CREATE TABLE IF NOT EXISTS subject_events (
    subject  TEXT NOT NULL,
    seq      INTEGER NOT NULL,
    PRIMARY KEY (subject, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS type_events (
    type  TEXT NOT NULL,
    seq   INTEGER NOT NULL,
    PRIMARY KEY (type, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
";

/// Like the projections' file, a power cut may undo its last commits, and the
/// checkpoint goes back with them. Its WAL is copied into the file by the thread
/// that copies the projections' (`checkpoint.rs`), not by SQLite inside a commit
/// here: that copy of 64 MiB stalled a commit for 250 ms, and with it the
/// projections and, through back-pressure, the appends. Only a WAL that thread
/// cannot keep up with (an import's) is copied here, at 64 MiB (see
/// [`super::checkpoint::writer_copies_at_pages!`]).
pub const PRAGMAS: &str = concat!(
    "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
PRAGMA foreign_keys = OFF;
PRAGMA temp_store = MEMORY;
PRAGMA cache_size = -65536;
PRAGMA wal_autocheckpoint = ",
    super::checkpoint::writer_copies_at_pages!(),
    ";
PRAGMA journal_size_limit = 67108864;
"
);

/// How many events a catch-up reads at once.
const CATCH_UP_EVENTS: i64 = 65_536;

/// Under a trickle the projections hand over a batch every few milliseconds; this
/// thread waits for more (`linger.rs`) so that a commit writes each page it touches
/// for many events rather than a few (and SQLite's walk of the page cache at the
/// end of each commit runs less often).
const LINGER: Linger = Linger {
    longest: Duration::from_millis(15),
    events: 2_048,
};

/// Far behind the log (an import), this thread waits for this many events before it
/// writes them, three of the projections' largest batches. The copies are kept in
/// customer order, so a commit rewrites about one page per customer it holds events
/// of, however few: one commit of three batches rewrites those pages once where
/// three commits rewrote them thrice (in a million-event import of 16,000
/// customers, the thread's CPU per event fell by a fifth).
const BEHIND_EVENTS: i64 = 3 * super::projections::BATCH_EVENTS;

/// What the projections committed hands over, and the position they passed.
pub struct Batch {
    pub through: i64,
    pub rows: Rows,
}

impl Batch {
    /// Adds the batch that followed this one.
    fn join(&mut self, next: Batch) {
        self.through = self.through.max(next.through);
        self.rows.copies.extend(next.rows.copies);
        self.rows.subjects.extend(next.rows.subjects);
        self.rows.types.extend(next.rows.types);
        self.rows.events += next.rows.events;
    }
}

/// The rows of a batch of events that this thread writes.
#[derive(Default)]
pub struct Rows {
    /// The customers' copies, `(cid, seq, text)`.
    pub copies: Vec<(i64, i64, String)>,
    /// The event index: `(subject, seq)` of the events that have a subject…
    pub subjects: Vec<(String, i64)>,
    /// …and `(type, seq)` of every event but positions (see `event_index.rs`).
    pub types: Vec<(String, i64)>,
    /// How many events these rows are of.
    pub events: i64,
}

impl Rows {
    /// The event's entries in the event index.
    pub fn index(&mut self, seq: i64, subject: Option<String>, event_type: String) {
        if let Some(subject) = subject {
            self.subjects.push((subject, seq));
        }
        if super::event_index::indexed_by_type(&event_type) {
            self.types.push((event_type, seq));
        }
        self.events += 1;
    }

    /// Room for the rows of `events` more events, taken at once rather than by
    /// doubling (each larger buffer copied and faulted in afresh).
    pub fn reserve(&mut self, events: usize) {
        self.copies.reserve(events);
        self.subjects.reserve(events);
        self.types.reserve(events);
    }
}

/// The stories' checkpoint in SQL, for a read on a connection that has `stories.db`
/// attached: the copies and the index hold the log up to it, and a read adds what is
/// newer from the projections and the log. A macro so that `concat!` can build
/// constant queries with it; [`THROUGH`] for `format!`.
macro_rules! stories_through {
    () => {
        "coalesce((SELECT value FROM stories.meta WHERE key = 'stories_through'), 0)"
    };
}
pub(super) use stories_through;

/// [`stories_through!`] as a constant.
pub(super) const THROUGH: &str = stories_through!();

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
    /// `stories` and `event_index` projectors'.
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
        while let Ok(mut batch) = batches.recv() {
            // What waits, and what comes while it lingers, is written in one
            // transaction: one commit, and each page touched once.
            self.gather(&mut batch, &batches);
            while let Err(e) = self.write(&mut batch) {
                tracing::error!(error = %e, "the customers' copies could not be written; trying again in a second");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }

    /// Joins into `batch` what waits in `batches`, and what comes while it lingers
    /// ([`LINGER`]) or, far behind the log, until it holds [`BEHIND_EVENTS`].
    fn gather(&self, batch: &mut Batch, batches: &Receiver<Batch>) {
        loop {
            let next = match batches.try_recv() {
                Ok(next) => next,
                Err(TryRecvError::Disconnected) => return,
                Err(TryRecvError::Empty) => {
                    let held = batch.rows.events;
                    let readers = self.positions.projected.waiters();
                    let wait = if more_is_coming(held, batch.through, self.positions.head.get()) && readers == 0 {
                        linger::SLICE
                    } else {
                        let oldest = self.positions.lag_age(self.checkpoint);
                        let Some(left) = LINGER.left(held, oldest, readers) else {
                            return;
                        };
                        left.min(linger::SLICE)
                    };
                    match batches.recv_timeout(wait) {
                        Ok(next) => next,
                        Err(RecvTimeoutError::Timeout) => continue,
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            };
            batch.join(next);
        }
    }

    /// Takes the next events up to `projected` from `event_customers` and the log.
    fn catch_up(&mut self, projected: i64) -> Result<(), StoreError> {
        let through = (self.checkpoint + CATCH_UP_EVENTS).min(projected);
        let mut rows = Rows::default();
        {
            let mut copies = self.conn.prepare_cached(
                "SELECT c.cid, c.seq, e.body FROM projections.event_customers c JOIN log.events e ON e.seq = c.seq
                  WHERE c.seq > ?1 AND c.seq <= ?2",
            )?;
            rows.copies = copies
                .query_map([self.checkpoint, through], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut index = self
                .conn
                .prepare_cached("SELECT seq, subject, type FROM log.events WHERE seq > ?1 AND seq <= ?2")?;
            let mut read = index.query([self.checkpoint, through])?;
            while let Some(row) = read.next()? {
                let subject = row.get_ref(1)?.as_str_or_null().map_err(rusqlite::Error::from)?;
                let event_type = row.get_ref(2)?.as_str().map_err(rusqlite::Error::from)?;
                rows.index(row.get(0)?, subject.map(str::to_owned), event_type.to_owned());
            }
        }
        self.write(&mut Batch { through, rows })
    }

    /// Writes a batch, each table in its key order, with the checkpoint it reaches.
    fn write(&mut self, batch: &mut Batch) -> Result<(), StoreError> {
        if batch.through <= self.checkpoint {
            return Ok(());
        }
        let started = Instant::now();
        let Rows {
            copies,
            subjects,
            types,
            ..
        } = &mut batch.rows;
        // In key order, a batch touches each customer's (each subject's) pages once,
        // and each insert finds its page where the last one left off.
        copies.sort_unstable_by_key(|(cid, seq, _)| (*cid, *seq));
        let tx = self.conn.unchecked_transaction()?;
        {
            let mut copy = tx.prepare_cached(
                "INSERT INTO main.customer_events (cid, seq, body) VALUES (?1, ?2, ?3)
                 ON CONFLICT (cid, seq) DO UPDATE SET body = excluded.body",
            )?;
            for (cid, seq, body) in copies.iter() {
                if *seq > self.checkpoint {
                    copy.execute(params![cid, seq, body])?;
                }
            }
        }
        let copied = started.elapsed();
        for (entries, sql) in [
            (
                subjects,
                "INSERT OR IGNORE INTO main.subject_events (subject, seq) VALUES (?1, ?2)",
            ),
            (
                types,
                "INSERT OR IGNORE INTO main.type_events (type, seq) VALUES (?1, ?2)",
            ),
        ] {
            let mut insert = tx.prepare_cached(sql)?;
            for (key, seqs) in by_key(entries) {
                for seq in seqs.into_iter().filter(|seq| *seq > self.checkpoint) {
                    insert.execute(params![key, seq])?;
                }
            }
        }
        let indexed = started.elapsed() - copied;
        tx.prepare_cached(
            "INSERT INTO main.meta (key, value) VALUES ('stories_through', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )?
        .execute([batch.through])?;
        tx.commit()?;
        self.checkpoint = batch.through;
        self.positions.stories.advance(batch.through);
        self.positions.passed();
        // Every projection now holds these events (the projections' thread passed
        // them before handing them here).
        self.positions.subjects.readable(
            batch.rows.subjects.iter().map(|(subject, _)| subject.as_str()),
            batch.through,
        );
        // The commit is the copies': they are most of what it writes.
        let copied = started.elapsed() - indexed;
        let mut times = self.times.lock().unwrap_or_else(|p| p.into_inner());
        for (name, spent) in times.iter_mut() {
            if *name == super::story::Copies::NAME {
                *spent += copied;
            } else if *name == super::event_index::NAME {
                *spent += indexed;
            }
        }
        Ok(())
    }
}

/// The index's entries grouped by key, the keys in order, each key's positions in
/// the order they came (the log's). Sorting the pairs instead compared the keys'
/// text a dozen times an entry, mostly equal (a batch holds few types, and a
/// subject's events come together): about 6 % of this thread's instructions.
fn by_key(entries: &[(String, i64)]) -> Vec<(&str, Vec<i64>)> {
    let mut groups: troth_core::FastMap<&str, Vec<i64>> = troth_core::FastMap::default();
    for (key, seq) in entries {
        groups.entry(key.as_str()).or_default().push(*seq);
    }
    let mut groups: Vec<_> = groups.into_iter().collect();
    groups.sort_unstable_by(|a, b| a.0.cmp(b.0));
    groups
}

/// Whether a batch of `held` events through position `through` holds fewer than
/// [`BEHIND_EVENTS`] while the log, at `head`, holds enough past it to make up the
/// rest and a whole batch of that size after it: the projections will hand those
/// over, so waiting for them ends (if they stop, their channel closes, and the wait
/// with it). Nearer the head each batch is written as it comes, so what is left
/// when the projections have caught up is their last batch, not three: the write
/// of the last is the import's tail (a million-event import waited 2.5–2.8 s for a
/// last write of up to 196,608 events after its projections were done).
fn more_is_coming(held: i64, through: i64, head: i64) -> bool {
    let missing = BEHIND_EVENTS - held;
    missing > 0 && head - through >= missing + BEHIND_EVENTS
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Far behind the log, a batch waits for more until it holds
    /// [`BEHIND_EVENTS`]; within two such batches of the log's head, or once it
    /// holds that many, it is written.
    #[test]
    fn far_behind_the_log_a_batch_waits_for_more() {
        assert!(more_is_coming(65_536, 65_536, 1_000_000));
        assert!(more_is_coming(1, 10, 10 + 2 * BEHIND_EVENTS - 1));
        assert!(!more_is_coming(1, 10, 10 + 2 * BEHIND_EVENTS - 2));
        // Enough to fill this batch, but not one after it: the import's last events.
        assert!(!more_is_coming(65_536, 800_000, 800_000 + BEHIND_EVENTS));
        assert!(!more_is_coming(BEHIND_EVENTS, 200_000, 1_000_000));
        assert!(!more_is_coming(100, 1_000, 1_000));
    }

    /// The index is written key by key, each key's positions in the log's order.
    #[test]
    fn entries_come_grouped_by_key_in_key_order() {
        let entries: Vec<(String, i64)> = [
            ("order.placed", 1),
            ("courier.position", 2),
            ("order.placed", 3),
            ("courier.position", 4),
            ("case.opened", 5),
        ]
        .map(|(key, seq)| (key.to_owned(), seq))
        .into();
        assert_eq!(
            by_key(&entries),
            [
                ("case.opened", vec![5]),
                ("courier.position", vec![2, 4]),
                ("order.placed", vec![1, 3]),
            ]
        );
    }
}
