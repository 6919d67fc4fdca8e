//! The event index: the log's positions by subject and by type, for the reads that
//! look events up by them (an order's or a shipment's events, the cases, the
//! surveys, the listing's filters).
//!
//! The log itself keeps only what its append needs (the position and the unique
//! id): every other index there is written by every commit on the durable path, a
//! page per event on small commits, before anyone is answered. Here the index
//! follows the log like any projection, in the projections' batches.

use rusqlite::Connection;

use super::projector::{Cx, Logged, Projector, Table};
use crate::StoreError;

pub struct Projection {
    by_subject: String,
    by_type: String,
    /// The batch's entries, written at its end in key order: an insert then
    /// finds its page where the last one left off, not at a random place.
    subjects: Vec<(String, i64)>,
    types: Vec<(String, i64)>,
}

impl Projection {
    pub fn open(conn: &Connection, schema: &'static str) -> Result<Projection, StoreError> {
        conn.execute_batch(&super::schema::event_index(schema))?;
        Ok(Projection {
            by_subject: format!("INSERT OR IGNORE INTO {schema}.subject_events (subject, seq) VALUES (?1, ?2)"),
            by_type: format!("INSERT OR IGNORE INTO {schema}.type_events (type, seq) VALUES (?1, ?2)"),
            subjects: Vec::new(),
            types: Vec::new(),
        })
    }
}

impl Projector for Projection {
    fn name(&self) -> &'static str {
        "event_index"
    }

    fn tables(&self) -> &'static [Table] {
        &[
            Table {
                name: "subject_events",
                rows: "SELECT subject, seq FROM {s}.subject_events",
            },
            Table {
                name: "type_events",
                rows: "SELECT type, seq FROM {s}.type_events",
            },
        ]
    }

    fn apply(&mut self, _cx: &mut Cx<'_>, at: &mut Logged) -> Result<(), StoreError> {
        if let Some(subject) = &at.event.subject {
            self.subjects.push((subject.clone(), at.seq));
        }
        self.types.push((at.event.event_type.clone(), at.seq));
        Ok(())
    }

    fn finish(&mut self, cx: &mut Cx<'_>) -> Result<(), StoreError> {
        for (staged, sql) in [(&mut self.subjects, &self.by_subject), (&mut self.types, &self.by_type)] {
            staged.sort_unstable();
            let mut insert = cx.conn.prepare_cached(sql)?;
            for (key, seq) in staged.drain(..) {
                insert.execute(rusqlite::params![key, seq])?;
            }
        }
        Ok(())
    }

    fn reset(&mut self, _conn: &Connection) -> Result<(), StoreError> {
        self.subjects.clear();
        self.types.clear();
        Ok(())
    }
}
