//! Copying each file's WAL into the file, on a thread of its own.
//!
//! SQLite copies the WAL into the database file (a checkpoint) inside the commit
//! that takes the WAL past its threshold, on the thread that commits. For the log
//! that is the durable path: a request whose commit drew the copy waited for tens of
//! megabytes to be written and fsync'd. For the projections it stalled the batch,
//! and the lag behind the log jumped by a few hundred milliseconds each time. Both
//! writing connections therefore have SQLite's own copy turned off
//! (`wal_autocheckpoint = 0`) and this thread copies instead, with connections of its
//! own, every [`COPY_EVERY`]: a `PASSIVE` copy takes no lock a writer or a reader
//! waits for, so commits go on meanwhile. Once a WAL is copied to its end and no
//! reader is in it, the next commit writes it from its beginning again, so it stays
//! about as large as what is written in one interval.
//!
//! The log writer keeps its own bound (see `log.rs`): when readers keep the WAL
//! from starting over, it waits for them once it has grown past its limit.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::Connection;

use crate::StoreError;

/// How often the WALs are copied into their files.
pub const COPY_EVERY: Duration = Duration::from_millis(100);

/// One file whose WAL this thread copies.
pub struct Copied {
    name: &'static str,
    conn: Connection,
}

impl Copied {
    pub fn open(name: &'static str, path: &Path) -> Result<Copied, StoreError> {
        let conn = super::open_connection(path, false, "")?;
        Ok(Copied { name, conn })
    }
}

/// Copies what the WAL holds into the file without waiting for anyone; answers the
/// pages copied.
pub fn copy(conn: &Connection) -> rusqlite::Result<i64> {
    let (_busy, _in_wal, copied): (i64, i64, i64) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })?;
    Ok(copied)
}

/// Starts the thread; it stops when `stop`'s sender is dropped (with the store).
pub fn start(files: Vec<Copied>, stop: mpsc::Receiver<()>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("troth-checkpoint".into())
        .spawn(move || run(files, stop))
        .map(|_| ())
}

fn run(files: Vec<Copied>, stop: mpsc::Receiver<()>) {
    // A failure is said once, not ten times a second, and again after a success.
    let mut failing = vec![false; files.len()];
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(COPY_EVERY) {
        for (file, failing) in files.iter().zip(failing.iter_mut()) {
            match copy(&file.conn) {
                Ok(_) => *failing = false,
                Err(e) if !*failing => {
                    tracing::warn!(file = file.name, error = %e, "copying the WAL into the file failed; trying again");
                    *failing = true;
                }
                Err(_) => {}
            }
        }
    }
}
