//! The event index: the log's positions by subject and by type, for the reads that
//! look events up by them (an order's or a shipment's events, the cases, the
//! surveys, the listing's filters).
//!
//! The log itself keeps only what its append needs (the position and the unique
//! id): every other index there is written by every commit on the durable path, a
//! page per event on small commits, before anyone is answered. The index follows
//! the log instead, in `stories.db` (attached as `stories`): the projections hand
//! each batch's entries to the thread that writes the customers' copies
//! (`stories.rs`), which writes both with one checkpoint, on the other core.
//! A listing reads the index as far as that checkpoint and the log past it.

use rusqlite::Connection;

use super::projector::{Cx, Logged, Projector, Table};
use super::stories::stories_through;
use crate::StoreError;

pub const NAME: &str = "event_index";

/// Drivers' positions are not in the index by type: they are a large share of the
/// log (a fix every few seconds from every driver on the road), so a listing of
/// them reads the log in order and finds one every few rows, and their entries
/// would be a third of what the index writes. By subject (their driver) they are.
pub const UNINDEXED_TYPE: &str = "courier.position";

/// Whether events of `event_type` have an entry in `type_events`.
pub fn indexed_by_type(event_type: &str) -> bool {
    event_type != UNINDEXED_TYPE
}

/// The entries of the log's events as far as the stories' checkpoint, in the
/// index's shape: what the index holds once caught up.
const FROM_LOG: [(&str, &str); 2] = [
    (
        "subject_events",
        concat!(
            "SELECT subject, seq FROM log.events WHERE subject IS NOT NULL AND seq <= ",
            stories_through!()
        ),
    ),
    (
        "type_events",
        concat!(
            "SELECT type, seq FROM log.events WHERE type <> 'courier.position' AND seq <= ",
            stories_through!()
        ),
    ),
];

pub struct Projection;

impl Projector for Projection {
    fn name(&self) -> &'static str {
        NAME
    }

    /// 2: moved from `projections.db` to `stories.db`; 3: positions left out of
    /// `type_events` ([`UNINDEXED_TYPE`]).
    fn version(&self) -> u32 {
        3
    }

    fn tables(&self) -> &'static [Table] {
        &[
            Table {
                name: "subject_events",
                rows: "SELECT subject, seq FROM stories.subject_events",
            },
            Table {
                name: "type_events",
                rows: "SELECT type, seq FROM stories.type_events",
            },
        ]
    }

    fn apply(&mut self, cx: &mut Cx<'_>, at: &mut Logged) -> Result<(), StoreError> {
        // The last projector: the event's subject and type move into its entries.
        if let Some(live) = &mut cx.live {
            live.handed.index(
                at.seq,
                at.event.subject.take(),
                std::mem::take(&mut at.event.event_type),
            );
        }
        Ok(())
    }

    fn differences(&self, conn: &Connection) -> Result<Vec<(&'static str, u64)>, StoreError> {
        // Checked against the log rather than rebuilt beside it: each entry is a
        // column of one event there.
        let mut differences = Vec::new();
        for (table, from_log) in self.tables().iter().zip(FROM_LOG) {
            differences.push((
                table.name,
                super::projector::differing_rows(conn, table.rows, from_log.1)?,
            ));
        }
        Ok(differences)
    }

    fn swap(&self, conn: &Connection) -> Result<(), StoreError> {
        // The stories' thread is idle, as for the customers' copies (see `story::Copies`).
        for (table, from_log) in FROM_LOG {
            conn.execute_batch(&format!(
                "DELETE FROM stories.{table}; INSERT INTO stories.{table} {from_log} ORDER BY 1, 2;"
            ))?;
        }
        Ok(())
    }
}

/// Drops the index a store kept in `projections.db` before it moved to `stories.db`
/// (which the projector's new version then fills from the log).
pub fn drop_from_projections(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch("DROP TABLE IF EXISTS main.subject_events; DROP TABLE IF EXISTS main.type_events;")?;
    Ok(())
}
