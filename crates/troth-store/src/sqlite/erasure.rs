//! Erasing a customer (docs/privacy.md): their events are rewritten in the log
//! without their personal data (`troth_core::erasure`), every projection is
//! rebuilt from the rewritten log, the rows kept beside the projections (outbox,
//! quarantine, tracking links, refused Segment messages) lose what named them,
//! and both files are vacuumed and their WALs truncated, so no copy of the old
//! bytes is left in free pages or in the WAL.
//!
//! The steps run one after another on a thread of their own, each on the thread
//! that owns the file it writes: the log writer rewrites and vacuums the log, the
//! projections thread plans, rebuilds and vacuums the projections. The erasure is
//! a row of `erasures` (in the log's file, never derived): written when asked for,
//! finished when done; one still running when troth stops is run again at the
//! next start. Every step can run twice: the rewrite is one transaction, and
//! pseudonymising pseudonyms again leaves the customer as anonymous and whole.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};
use troth_core::Timestamp;
use troth_core::erasure::Pseudonyms;

use crate::{Erasure, ErasureState, StoreError};

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS erasures (
    id            INTEGER PRIMARY KEY,
    customer      TEXT NOT NULL,
    requested_us  INTEGER NOT NULL,
    requested_by  TEXT NOT NULL,
    uploads_dir   TEXT,
    state         TEXT NOT NULL,
    completed_us  INTEGER,
    events        INTEGER NOT NULL DEFAULT 0,
    identities    INTEGER NOT NULL DEFAULT 0,
    messages      INTEGER NOT NULL DEFAULT 0,
    uploads       INTEGER NOT NULL DEFAULT 0,
    rejections    INTEGER NOT NULL DEFAULT 0,
    error         TEXT
);
";

/// What the projections found to erase, and the rows beside them already cleaned.
pub struct Plan {
    /// The customer's events, rewritten: (position, new body).
    pub bodies: Vec<(i64, String)>,
    /// Photos their events named.
    pub uploads: Vec<String>,
    pub pseudonyms: Pseudonyms,
    /// The log was projected this far when the plan was made.
    pub through: i64,
    /// Outbox rows emptied.
    pub messages: u64,
}

/// The log writer's steps.
pub enum LogStep {
    Begin {
        customer: String,
        by: String,
        uploads_dir: Option<PathBuf>,
    },
    Rewrite {
        erasure: i64,
        plan: Box<Plan>,
    },
    Vacuum,
    Finish {
        erasure: i64,
        /// The photos deleted, or why it failed.
        outcome: Result<u64, String>,
    },
}

pub enum LogDone {
    Begun(Erasure),
    Rewritten(Box<Plan>),
    Done,
}

/// Runs a log step on the log writer's connection, outside any other transaction.
pub fn on_log(conn: &Connection, step: LogStep, now: Timestamp) -> Result<LogDone, StoreError> {
    match step {
        LogStep::Begin {
            customer,
            by,
            uploads_dir,
        } => {
            conn.execute(
                "INSERT INTO erasures (customer, requested_us, requested_by, uploads_dir, state) VALUES (?1, ?2, ?3, ?4, 'running')",
                params![customer, now.micros(), by, uploads_dir.as_deref().and_then(Path::to_str)],
            )?;
            let id = conn.last_insert_rowid();
            Ok(LogDone::Begun(get(conn, id)?.ok_or(StoreError::WriterGone)?))
        }
        LogStep::Rewrite { erasure, mut plan } => {
            let tx = conn.unchecked_transaction()?;
            let mut events = 0_u64;
            {
                let mut update = tx.prepare_cached("UPDATE events SET body = ?2 WHERE seq = ?1")?;
                for (seq, body) in &plan.bodies {
                    events += update.execute(params![seq, body])? as u64;
                }
                // Appended while the plan was made (the log writer was free meanwhile):
                // those of the customer go too, found by their identities.
                let mut later = tx.prepare("SELECT seq, body FROM events WHERE seq > ?1 ORDER BY seq")?;
                let rows = later
                    .query_map([plan.through], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?
                    .collect::<Result<Vec<_>, _>>()?;
                for (seq, body) in rows {
                    let names = troth_core::validate_event(&body).is_ok_and(|e| plan.pseudonyms.names(&e));
                    if names && let Ok(redacted) = plan.pseudonyms.redact(&body) {
                        update.execute(params![seq, redacted.body])?;
                        plan.uploads.extend(redacted.uploads);
                        events += 1;
                    }
                }
            }
            let rejections = delete_mentions(&tx, "segment_rejected", "message", &plan.pseudonyms)?;
            tx.execute(
                "UPDATE erasures SET events = ?2, identities = ?3, messages = ?4, rejections = ?5 WHERE id = ?1",
                params![erasure, events, plan.pseudonyms.len() as u64, plan.messages, rejections],
            )?;
            tx.commit()?;
            Ok(LogDone::Rewritten(plan))
        }
        LogStep::Vacuum => {
            vacuum(conn, "main")?;
            Ok(LogDone::Done)
        }
        LogStep::Finish { erasure, outcome } => {
            match outcome {
                Ok(uploads) => conn.execute(
                    "UPDATE erasures SET state = 'done', completed_us = ?2, uploads = ?3, error = NULL WHERE id = ?1",
                    params![erasure, now.micros(), uploads],
                )?,
                Err(error) => conn.execute(
                    "UPDATE erasures SET state = 'failed', completed_us = ?2, error = ?3 WHERE id = ?1",
                    params![erasure, now.micros(), error],
                )?,
            };
            Ok(LogDone::Done)
        }
    }
}

/// The projections' part of the plan, on their connection (the log attached):
/// the customer's events rewritten in memory, and the rows beside the projections
/// that name them cleaned in one transaction. `None` for an unknown customer.
pub fn plan(conn: &Connection, erasure: i64, customer: &str) -> Result<Option<Plan>, StoreError> {
    let Some(customers) = super::read::customer_set(conn, customer)? else {
        return Ok(None);
    };
    let tx = conn.unchecked_transaction()?;
    let through = super::projections::checkpoint(&tx)?;
    let (theirs, args) = super::read::customers_events(&customers);
    let events: Vec<(i64, String, String, Option<String>)> = tx
        .prepare(&format!(
            "SELECT e.seq, e.id, e.body, e.subject FROM {theirs} c JOIN events e ON e.seq = c.seq ORDER BY e.seq"
        ))?
        .query_map(rusqlite::params_from_iter(args), |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<Result<_, _>>()?;
    let mut pseudonyms = Pseudonyms::new(erasure.unsigned_abs());
    let mut plan = Plan {
        bodies: Vec::with_capacity(events.len()),
        uploads: Vec::new(),
        pseudonyms: Pseudonyms::new(0),
        through,
        messages: 0,
    };
    {
        let mut empty_messages = tx.prepare_cached(
            "UPDATE outbox SET recipient = NULL, payload = '{}',
                    state = CASE WHEN state IN ('pending', 'sending') THEN 'skipped' ELSE state END,
                    last_error = CASE WHEN state IN ('pending', 'sending') THEN 'the customer was erased' ELSE last_error END
              WHERE event_id = ?1",
        )?;
        let mut drop_link = tx.prepare_cached("DELETE FROM tracking_links WHERE shipment = ?1")?;
        for (seq, id, body, subject) in &events {
            let redacted = pseudonyms
                .redact(body)
                .map_err(|e| StoreError::Invalid(format!("stored event seq {seq}: {e}")))?;
            plan.bodies.push((*seq, redacted.body));
            plan.uploads.extend(redacted.uploads);
            plan.messages += empty_messages.execute([id])? as u64;
            // A tracking link is the customer's key to their shipment's page.
            if let Some(shipment) = subject.as_deref().and_then(|s| s.strip_prefix("shipment:")) {
                drop_link.execute([shipment])?;
            }
        }
    }
    // Derived events on their way to the log carry the customer as their cause did.
    let derived: Vec<(String, String)> = tx
        .prepare("SELECT id, body FROM derived_outbox")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (id, body) in derived {
        let names = troth_core::validate_event(&body).is_ok_and(|e| pseudonyms.names(&e));
        if names && let Ok(redacted) = pseudonyms.redact(&body) {
            tx.execute(
                "UPDATE derived_outbox SET body = ?2 WHERE id = ?1",
                params![id, redacted.body],
            )?;
        }
    }
    delete_mentions(&tx, "quarantine", "body", &pseudonyms)?;
    tx.commit()?;
    plan.pseudonyms = pseudonyms;
    Ok(Some(plan))
}

/// Deletes the rows of a table of refused input (kept as it was sent, so not
/// always readable as an event) whose text mentions one of the identities erased.
fn delete_mentions(conn: &Connection, table: &str, column: &str, pseudonyms: &Pseudonyms) -> Result<u64, StoreError> {
    let rows: Vec<(i64, String)> = conn
        .prepare(&format!("SELECT rowid, {column} FROM {table}"))?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut deleted = 0;
    let mut delete = conn.prepare(&format!("DELETE FROM {table} WHERE rowid = ?1"))?;
    for (rowid, body) in rows {
        if pseudonyms.mentions(&body) {
            deleted += delete.execute([rowid])? as u64;
        }
    }
    Ok(deleted)
}

/// Rewrites a file without its free pages, then empties its WAL: the bytes of
/// deleted rows are left nowhere. Readers may hold the WAL a moment; the
/// truncation is tried until none does.
pub fn vacuum(conn: &Connection, schema: &str) -> Result<(), StoreError> {
    conn.execute_batch(&format!("VACUUM {schema}"))?;
    for _ in 0..200 {
        let (busy, frames): (i64, i64) =
            conn.query_row(&format!("PRAGMA {schema}.wal_checkpoint(TRUNCATE)"), [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        if busy == 0 && frames <= 0 {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    Err(StoreError::Invalid(
        "the WAL could not be emptied: readers kept it open for 5 s".into(),
    ))
}

/// One erasure as recorded.
pub fn get(conn: &Connection, id: i64) -> Result<Option<Erasure>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT id, customer, requested_us, requested_by, state, completed_us, events, identities, messages, uploads, rejections, error
               FROM erasures WHERE id = ?1",
        )?
        .query_row([id], |r| {
            Ok(Erasure {
                id: format!("era_{}", r.get::<_, i64>(0)?),
                customer: r.get(1)?,
                requested_at: Timestamp(r.get(2)?).to_string(),
                requested_by: r.get(3)?,
                state: match r.get::<_, String>(4)?.as_str() {
                    "done" => ErasureState::Done,
                    "failed" => ErasureState::Failed,
                    _ => ErasureState::Running,
                },
                completed_at: r.get::<_, Option<i64>>(5)?.map(|us| Timestamp(us).to_string()),
                events: r.get(6)?,
                identities: r.get(7)?,
                messages: r.get(8)?,
                uploads: r.get(9)?,
                rejections: r.get(10)?,
                error: r.get(11)?,
            })
        })
        .optional()?)
}

/// Erasures left running when troth stopped: (id, customer, uploads directory).
pub fn unfinished(conn: &Connection) -> Result<Vec<(i64, String, Option<PathBuf>)>, StoreError> {
    Ok(conn
        .prepare("SELECT id, customer, uploads_dir FROM erasures WHERE state = 'running' ORDER BY id")?
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get::<_, Option<String>>(2)?.map(PathBuf::from)))
        })?
        .collect::<Result<_, _>>()?)
}

/// Reads an erasure's id as the API shows it (`era_12`).
pub fn parse_id(id: &str) -> Option<i64> {
    id.strip_prefix("era_")?.parse().ok().filter(|n| *n > 0)
}

/// Deletes the photos an erasure found, from the directory uploads are kept in;
/// a name that is not a plain file name is left alone.
pub fn delete_uploads(dir: &Path, names: &[String]) -> u64 {
    let mut deleted = 0;
    for name in names {
        if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
            continue;
        }
        match std::fs::remove_file(dir.join(name)) {
            Ok(()) => deleted += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(error = %e, name, "an erased customer's photo could not be deleted"),
        }
    }
    deleted
}
