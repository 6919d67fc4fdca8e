//! Reading the log ahead of the projections, on a thread of its own.
//!
//! Events just appended reach the projections in memory (the log writer's
//! handoff). Those it could not hold — a bulk import outruns the projections, and
//! a restart finds the log ahead of them — are read back from the log and
//! validated again, which is a fifth of the projections' work. This thread does
//! that for the next batch while the projections apply the current one, so on two
//! cores catching up takes the time of applying alone.
//!
//! It reads with its own read-only connection, so it never waits for a writer,
//! and it holds at most two batches. It reads a batch in pieces of [`PIECE_EVENTS`],
//! each its own read transaction, so it never holds a snapshot of the log for long
//! (the log writer starts the WAL over only when no reader is in it).

use std::collections::VecDeque;
use std::path::Path;
use std::sync::mpsc;

use rusqlite::{Connection, params};
use troth_core::{Timestamp, ValidEvent};

use crate::StoreError;

/// One event as read back from the log: its position, when it was stored, and the
/// event, or why it no longer validates (the rules changed since it was appended).
pub type LogItem = (i64, Timestamp, Result<ValidEvent, String>);

struct Request {
    after: i64,
    limit: usize,
}

pub struct ReadAhead {
    requests: mpsc::Sender<Request>,
    answers: mpsc::Receiver<Result<Vec<LogItem>, String>>,
    /// Where the request in flight starts reading (after this position), if one is.
    in_flight: Option<i64>,
    /// Events read and not yet taken, in log order without a gap.
    stash: VecDeque<LogItem>,
}

impl ReadAhead {
    /// Starts the reading thread with a read-only connection to the log at `log_path`.
    pub fn start(log_path: &Path) -> Result<ReadAhead, StoreError> {
        let conn = super::open_connection(log_path, true, "")?;
        conn.execute_batch("PRAGMA cache_size = -16384;")?;
        let (requests, incoming) = mpsc::channel::<Request>();
        let (reply, answers) = mpsc::channel();
        std::thread::Builder::new()
            .name("troth-read-ahead".into())
            .spawn(move || {
                super::priority::follow_behind_the_log("read-ahead");
                // Ends when the projections drop their end of the channel.
                for request in incoming {
                    let read = read(&conn, request.after, request.limit).map_err(|e| e.to_string());
                    if reply.send(read).is_err() {
                        return;
                    }
                }
            })
            .map_err(|source| StoreError::Io {
                path: log_path.display().to_string(),
                source,
            })?;
        Ok(ReadAhead {
            requests,
            answers,
            in_flight: None,
            stash: VecDeque::new(),
        })
    }

    /// Up to `limit` events from position `after + 1` on and before `before`, in
    /// order and without a gap; then starts reading the next `limit` while the caller
    /// works, unless `head` (the newest position in the log) is already held.
    pub fn take(&mut self, after: i64, before: i64, limit: usize, head: i64) -> Result<Vec<LogItem>, StoreError> {
        self.drop_through(after);
        if self.stash.is_empty() && self.in_flight.is_some() {
            self.settle_in_flight()?;
            self.drop_through(after);
        }
        if self.stash.is_empty() {
            self.request(after, limit)?;
            self.settle_in_flight()?;
        }
        let mut taken = Vec::with_capacity(limit.min(self.stash.len()));
        while taken.len() < limit && self.stash.front().is_some_and(|(seq, ..)| *seq < before) {
            taken.extend(self.stash.pop_front());
        }
        let held_through = self.stash.back().or(taken.last()).map_or(after, |(seq, ..)| *seq);
        if self.in_flight.is_none() && self.stash.len() < limit && held_through < head {
            self.request(held_through, limit)?;
        }
        Ok(taken)
    }

    /// Forgets what the caller has (up to `after`), and the rest too unless it
    /// follows on: after a rolled-back batch the caller asks again from further back.
    fn drop_through(&mut self, after: i64) {
        while self.stash.front().is_some_and(|(seq, ..)| *seq <= after) {
            self.stash.pop_front();
        }
        if self.stash.front().is_some_and(|(seq, ..)| *seq != after + 1) {
            self.stash.clear();
        }
    }

    fn request(&mut self, after: i64, limit: usize) -> Result<(), StoreError> {
        self.requests
            .send(Request { after, limit })
            .map_err(|_| StoreError::WriteFailed("the log's read-ahead thread has stopped".into()))?;
        self.in_flight = Some(after);
        Ok(())
    }

    /// Waits for the request in flight, if any, and adds what it read to the stash
    /// when it continues it.
    fn settle_in_flight(&mut self) -> Result<(), StoreError> {
        let Some(after) = self.in_flight.take() else {
            return Ok(());
        };
        let read = self
            .answers
            .recv()
            .map_err(|_| StoreError::WriteFailed("the log's read-ahead thread has stopped".into()))?
            .map_err(StoreError::WriteFailed)?;
        let continues = self.stash.back().is_none_or(|(seq, ..)| *seq == after);
        if continues {
            self.stash.extend(read);
        }
        Ok(())
    }
}

/// How many events one read transaction of the log takes at most.
const PIECE_EVENTS: usize = 4_096;

fn read(conn: &Connection, after: i64, limit: usize) -> rusqlite::Result<Vec<LogItem>> {
    let mut scan =
        conn.prepare_cached("SELECT seq, received_us, body FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2")?;
    let mut items = Vec::with_capacity(limit);
    let mut from = after;
    while items.len() < limit {
        // Read, then validate: the read transaction ends with the rows, so the
        // log's WAL is not held open while events are validated.
        let piece = PIECE_EVENTS.min(limit - items.len());
        let rows: Vec<(i64, i64, String)> = scan
            .query_map(params![from, piece as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let last = rows.len() < piece;
        from = rows.last().map_or(from, |(seq, ..)| *seq);
        items.extend(rows.into_iter().map(|(seq, received, body)| {
            let event = troth_core::validate_event(&body)
                .map_err(|rejection| format!("{}: {}", rejection.error.field, rejection.error.message));
            (seq, Timestamp(received), event)
        }));
        if last {
            break;
        }
    }
    Ok(items)
}
