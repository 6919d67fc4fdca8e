//! Copying the followers' WALs into their files, on a thread of its own.
//!
//! SQLite copies the WAL into the database file (a checkpoint) inside the commit
//! that takes the WAL past its threshold, on the thread that commits. For the
//! projections that stalled a batch while tens of megabytes were written and
//! fsync'd, and their lag behind the log jumped by about 300 ms each time (the
//! HTTP benchmark's lag p99 was that stall). The customers' copies did the same
//! once per 64 MiB of their WAL: a commit of a hundred rows took 250 ms, the
//! projections waited for it to hand over their next batch, appends waited for
//! the projections (back-pressure), and the HTTP benchmark's lag p99 was that
//! stall again (240 ms), its answers' p99 20–28 ms. The writing connections of
//! `projections.db` and `stories.db` therefore have SQLite's own copy turned off
//! (`wal_autocheckpoint = 0`) and this thread copies instead, with a connection of
//! its own to each, every [`COPY_EVERY`] (a second): a `PASSIVE` copy takes no lock
//! that a writer or a reader waits for, so batches go on meanwhile. Once a WAL is
//! copied to its end and no reader is in it, the next commit writes it from its
//! beginning again, so it stays about as large as what is written in one interval.
//!
//! Under an import the writers commit without a pause: a copy never reaches the
//! WAL's end before the next commit, so the WAL was never started over and grew by
//! everything written (the copies' to 1.2 GB in a million-event import, and the
//! kernel zeroed each new block of it: a third of the copies' thread's CPU). So
//! each writer also copies its WAL itself once it holds [`writer_copies_at_pages!`]
//! pages, which only a WAL this thread cannot keep up with reaches.
//!
//! The log keeps SQLite's copy in its writer, once per 64 MiB (see `log.rs`): a
//! copy every 100 ms beside the import's appends cost the durable append about a
//! tenth of its rate, and did not shorten the HTTP answers' p99.

use std::sync::mpsc;
use std::time::Duration;

use rusqlite::Connection;

/// How often the WAL is copied into the file. Each copy fsyncs the WAL and the
/// file, and the log's fsyncs queue behind those on the disk: copied every 100 ms,
/// the HTTP benchmark's p99 was 5.8–5.9 ms against 5.6 ms copied every second
/// (and 6.8 against 5.6–6.3 ms in a noisier hour), the durable append 0.79–0.82
/// of the raw insert against 0.86–0.87. A page rewritten within the interval is
/// copied once. (Under an import it never keeps up: see [`writer_copies_at_pages!`].)
pub const COPY_EVERY: Duration = Duration::from_secs(1);

/// The WAL's size, in pages, at which a follower's writer copies it into the file
/// itself (SQLite's `wal_autocheckpoint` in `PROJECTION_PRAGMAS` and the stories'
/// `PRAGMAS`): 64 MiB. The next commit then writes the WAL from its beginning. A
/// macro so that `concat!` can put it in those settings.
macro_rules! writer_copies_at_pages {
    () => {
        "16384"
    };
}
pub(super) use writer_copies_at_pages;

/// Copies what the WAL holds into the file without waiting for anyone; answers the
/// pages copied.
pub fn copy(conn: &Connection) -> rusqlite::Result<i64> {
    let (_busy, _in_wal, copied): (i64, i64, i64) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })?;
    Ok(copied)
}

/// A file whose WAL this thread copies: its name, for the log, and a connection to it.
pub struct Copied {
    pub name: &'static str,
    pub conn: Connection,
}

/// Starts the thread that copies the WALs of `files`; it stops when `stop`'s
/// sender is dropped (with the store).
pub fn start(files: Vec<Copied>, stop: mpsc::Receiver<()>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("troth-checkpoint".into())
        .spawn(move || run(files, stop))
        .map(|_| ())
}

fn run(files: Vec<Copied>, stop: mpsc::Receiver<()>) {
    super::priority::follow_behind_the_log("checkpoint");
    // A failure is said once, not every second, and again after a success.
    let mut failing = vec![false; files.len()];
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(COPY_EVERY) {
        for (file, failing) in files.iter().zip(&mut failing) {
            match copy(&file.conn) {
                Ok(_) => *failing = false,
                Err(e) if !*failing => {
                    tracing::warn!(file = file.name, error = %e, "copying a WAL into its file failed; trying again");
                    *failing = true;
                }
                Err(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that commits without a pause, as under an import, keeps its WAL
    /// near [`writer_copies_at_pages!`] pages rather than growing it by all it
    /// writes: 96 MiB written in 4 MiB commits, no other connection copying.
    #[test]
    fn a_follower_writing_without_pause_starts_its_wal_over() {
        for (name, pragmas) in [
            ("projections", super::super::schema::PROJECTION_PRAGMAS),
            ("stories", super::super::stories::PRAGMAS),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(format!("{name}.db"));
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(pragmas).unwrap();
            conn.execute_batch("CREATE TABLE t (b BLOB NOT NULL)").unwrap();
            let wal = dir.path().join(format!("{name}.db-wal"));
            // A frame is a page and its 24-byte header; a commit may end past the
            // limit by its own 4 MiB and the B-tree's pages above the blobs'.
            let pages: u64 = writer_copies_at_pages!().parse().unwrap();
            let bound = (pages + 2_048) * (4_096 + 24);
            let mut largest = 0;
            for _ in 0..24 {
                conn.execute("INSERT INTO t (b) VALUES (randomblob(4194304))", [])
                    .unwrap();
                largest = largest.max(std::fs::metadata(&wal).unwrap().len());
            }
            assert!(
                largest <= bound,
                "{name}: the WAL grew to {largest} bytes, past {bound}"
            );
            assert!(largest > 48 << 20, "{name}: the WAL never held much ({largest} bytes)");
        }
    }
}
