//! Projectors: everything derived from the log. Each has a name, owns its tables
//! and applies events to them; [`registry`] lists them in the order they see each
//! event. The registry is the one list: it creates the tables, the projections
//! thread applies its projectors to every batch, `troth replay` rebuilds the same
//! projectors into fresh tables and compares and swaps them table by table, and the
//! time each takes is reported under its name.
//!
//! A projector later in the registry may rely on what an earlier one did with the
//! same event: the identities resolve the event's customer for all the others, the
//! shipments are staged before a play composes a message about one.
//!
//! The live projections also react (`Cx::live`): the promise engine decides
//! changes, plays enqueue messages and open cases, identities append their merges,
//! shipments get their tracking links. A rebuild reacts to nothing: what the live
//! projections decided is in the log, and the outbox and the links are not
//! projections (they must survive a replay as they are).

use std::sync::Arc;

use rusqlite::Connection;
use troth_core::{Timestamp, ValidEvent};

use super::projections::{Aggregates, JourneyRules};
use super::shipments;
use crate::{Compose, StoreError};

/// One event of the log on its way through the projectors.
pub struct Logged {
    pub seq: i64,
    /// When the log stored it.
    pub received: Timestamp,
    /// The event; the last projector (the customers' copies) takes its text.
    pub event: ValidEvent,
    /// The customer it resolved to, set by the identities for those after them.
    pub customer: Option<i64>,
    /// A promise change this store's engine decided and applied to the promises
    /// when it did: the promise projection has it already.
    pub applied_when_decided: bool,
}

/// A table a projector owns, and its rows in a form two schemas can compare
/// (`{s}` stands for the schema).
pub struct Table {
    pub name: &'static str,
    pub rows: &'static str,
}

/// What one transaction of projectors works in.
pub struct Cx<'a> {
    pub conn: &'a Connection,
    /// `main`, or `replay` for a rebuild beside the live tables.
    pub schema: &'static str,
    /// Set for the live projections, which react as well as project.
    pub live: Option<Live<'a>>,
    /// Shipment rows changed by the batch: written by the shipments' `finish`, and
    /// before a play composes a message, which reads the shipment from its table.
    pub shipments: shipments::Staged,
    /// Aggregates counted by the batch. The live projections hand them to the
    /// pending aggregates at commit (see [`Aggregates`]); a rebuild writes them at its end.
    pub aggregates: Aggregates,
}

/// What the live projections' reactions need and produce.
pub struct Live<'a> {
    pub composer: Option<&'a dyn Compose>,
    /// Called with each event the engine derives (and, by the caller, each event projected).
    pub fault: Option<&'a (dyn Fn(&ValidEvent) + Send + Sync)>,
    /// Events troth derived, appended to the log once the transaction commits.
    pub derived: Vec<ValidEvent>,
    /// Outbox rows enqueued as pending.
    pub enqueued: usize,
    /// The customers' copies of the batch's events and their entries in the event
    /// index, handed to their own thread once the transaction commits (`stories.rs`).
    pub handed: super::stories::Rows,
}

impl<'a> Live<'a> {
    pub fn new(composer: Option<&'a dyn Compose>, fault: Option<&'a (dyn Fn(&ValidEvent) + Send + Sync)>) -> Live<'a> {
        Live {
            composer,
            fault,
            derived: Vec::new(),
            enqueued: 0,
            handed: Default::default(),
        }
    }
}

impl<'a> Cx<'a> {
    pub fn new(conn: &'a Connection, schema: &'static str, live: Option<Live<'a>>) -> Cx<'a> {
        Cx {
            conn,
            schema,
            live,
            shipments: shipments::Staged::default(),
            aggregates: Aggregates::default(),
        }
    }
}

pub trait Projector: Send {
    fn name(&self) -> &'static str;

    /// Bumped when what it writes for the same events changes: a store whose tables
    /// were written by another version has them rebuilt from the log as it opens,
    /// before it says it is ready.
    fn version(&self) -> u32 {
        1
    }

    /// The tables it owns, compared and swapped by replay.
    fn tables(&self) -> &'static [Table];

    fn apply(&mut self, cx: &mut Cx<'_>, at: &mut Logged) -> Result<(), StoreError>;

    /// Writes what it staged while applying a batch.
    fn finish(&mut self, _cx: &mut Cx<'_>) -> Result<(), StoreError> {
        Ok(())
    }

    /// After a transaction rolled back: forgets what its memory may hold of it.
    fn reset(&mut self, _conn: &Connection) -> Result<(), StoreError> {
        Ok(())
    }

    /// Per table, the rows of the live tables (`main`) that a rebuild beside them
    /// (`replay`) does not reproduce, and the other way round.
    fn differences(&self, conn: &Connection) -> Result<Vec<(&'static str, u64)>, StoreError> {
        let mut differences = Vec::new();
        for table in self.tables() {
            let (stored, rebuilt) = (table.rows.replace("{s}", "main"), table.rows.replace("{s}", "replay"));
            differences.push((table.name, differing_rows(conn, &stored, &rebuilt)?));
        }
        Ok(differences)
    }

    /// Replaces the live tables with the rebuilt ones.
    fn swap(&self, conn: &Connection) -> Result<(), StoreError> {
        for table in self.tables() {
            let name = table.name;
            conn.execute_batch(&format!(
                "DELETE FROM main.{name}; INSERT INTO main.{name} SELECT * FROM replay.{name};"
            ))?;
        }
        Ok(())
    }
}

/// Rows of one query that the other does not give, both ways.
pub fn differing_rows(conn: &Connection, stored: &str, rebuilt: &str) -> rusqlite::Result<u64> {
    conn.query_row(
        &format!(
            "SELECT (SELECT count(*) FROM ({stored} EXCEPT {rebuilt})) + (SELECT count(*) FROM ({rebuilt} EXCEPT {stored}))"
        ),
        [],
        |r| r.get(0),
    )
}

/// Every projector, in the order each event goes through them, with its tables
/// created under `schema` (`main`, or `replay` for a rebuild). Without a journey map
/// the promise engine, health and plays have no rules and do nothing.
pub fn registry(
    conn: &Connection,
    schema: &'static str,
    rules: Option<&Arc<JourneyRules>>,
) -> Result<Vec<Box<dyn Projector>>, StoreError> {
    Ok(vec![
        Box::new(super::identities::Projection::open(conn, schema)?),
        Box::new(super::projections::Counts::open(conn, schema)?),
        Box::new(super::promises::Projection::open(conn, schema, rules.cloned())?),
        Box::new(super::shipments::Projection::open(conn, schema)?),
        Box::new(super::health::Projection::open(conn, schema, rules.cloned())?),
        Box::new(super::scorecards::Projection::open(conn, schema)?),
        Box::new(super::outbox::Consents::open(conn, schema)?),
        Box::new(super::outbox::Plays::new(rules.cloned())),
        Box::new(super::story::Copies),
        Box::new(super::event_index::Projection),
    ])
}

/// The event's customer as sent, as JSON text: what a promise or a shipment keeps
/// to carry onto the events derived from it.
pub fn customer_ref(event: &ValidEvent) -> Option<String> {
    // Most events of a shipment name no customer: their text tells without parsing
    // (unless a key in it is written with escapes).
    if !event.raw.contains("\"customer\"") && !event.raw.contains("\\u") {
        return None;
    }
    event_customer(event).map(|customer| customer.to_string())
}

/// The event's customer as sent (derived events carry it on), read without building
/// the rest of the event, which is skipped.
pub fn event_customer(event: &ValidEvent) -> Option<serde_json::Value> {
    use serde::Deserialize;
    #[derive(Deserialize)]
    struct Customer {
        // Present, even as null, is `Some`: as the field was read from the whole event.
        #[serde(default, deserialize_with = "present")]
        customer: Option<serde_json::Value>,
    }
    fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
        serde_json::Value::deserialize(d).map(Some)
    }
    serde_json::from_str::<Customer>(&event.raw).ok()?.customer
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tables of `projections.db` that are not derived from the log: what was
    /// decided and done (the outbox, the links customers hold) and bookkeeping.
    /// Replay must leave them as they are.
    const NOT_PROJECTIONS: [&str; 6] = [
        "outbox",
        "outbox_contacts",
        "tracking_links",
        "quarantine",
        "derived_outbox",
        "meta",
    ];

    /// Every table of the projections' files (`projections.db`, and `stories.db`
    /// but for its checkpoint) is a projector's, so replay compares and rebuilds it,
    /// or is named here as not derived from the log.
    #[test]
    fn every_table_of_the_projections_is_a_projectors_or_not_derived() {
        let dir = tempfile::tempdir().unwrap();
        drop(super::super::SqliteStore::open(dir.path()).unwrap());
        let conn = Connection::open(dir.path().join("projections.db")).unwrap();
        conn.execute(
            "ATTACH DATABASE ?1 AS stories",
            [dir.path().join(super::super::stories::FILE).to_str().unwrap()],
        )
        .unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT name FROM main.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'
                 UNION ALL
                 SELECT name FROM stories.sqlite_master WHERE type = 'table' AND name NOT IN ('sqlite_stat1', 'meta')
                 ORDER BY name",
            )
            .unwrap();
        let tables: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let projectors = registry(&conn, "main", None).unwrap();
        let owned: Vec<&str> = projectors
            .iter()
            .flat_map(|p| p.tables().iter().map(|t| t.name))
            .collect();
        for table in &tables {
            assert!(
                owned.contains(&table.as_str()) || NOT_PROJECTIONS.contains(&table.as_str()),
                "{table} is in projections.db but no projector owns it: replay would neither compare nor rebuild it"
            );
        }
        for table in owned {
            assert!(tables.iter().any(|t| t == table), "{table} is owned but not created");
            assert!(!NOT_PROJECTIONS.contains(&table));
        }
    }

    /// The customer an event names, as the promises and shipments keep it.
    #[test]
    fn customer_ref_is_the_customer_as_sent_however_it_is_written() {
        let event = |customer: &str| {
            let text = format!(
                r#"{{"id":"e1","type":"page.viewed","time":"2026-11-23T09:00:00Z"{customer},"data":{{"page":"/"}}}}"#
            );
            troth_core::validate_event(&text).unwrap()
        };
        assert_eq!(
            customer_ref(&event(r#","customer":{"id":"c1","email":"a@x.org"}"#)).as_deref(),
            Some(r#"{"email":"a@x.org","id":"c1"}"#)
        );
        assert_eq!(customer_ref(&event("")), None);
        assert_eq!(
            customer_ref(&event(r#","\u0063ustomer":{"id":"c2"}"#)).as_deref(),
            Some(r#"{"id":"c2"}"#),
            "a key written with escapes is read too"
        );
    }

    /// A rebuild compares each projector's tables with the live ones: a row the live
    /// tables hold and the rebuild does not is counted under its table.
    #[test]
    fn differences_count_rows_either_side_has_alone() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "ATTACH DATABASE '' AS replay; ATTACH DATABASE '' AS log; ATTACH DATABASE '' AS stories;
             CREATE TABLE log.events (seq INTEGER PRIMARY KEY, subject TEXT, type TEXT NOT NULL, body TEXT NOT NULL);
             CREATE TABLE stories.customer_events (cid INTEGER, seq INTEGER, body TEXT, PRIMARY KEY (cid, seq));
             CREATE TABLE stories.subject_events (subject TEXT, seq INTEGER, PRIMARY KEY (subject, seq));
             CREATE TABLE stories.type_events (type TEXT, seq INTEGER, PRIMARY KEY (type, seq));
             CREATE TABLE stories.meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);",
        )
        .unwrap();
        let projectors = registry(&conn, "main", None).unwrap();
        registry(&conn, "replay", None).unwrap();
        conn.execute_batch(
            "INSERT INTO main.consents VALUES (1, 'email', 'service', 1, 10);
             INSERT INTO replay.consents VALUES (1, 'email', 'service', 0, 10);
             INSERT INTO main.event_type_counts VALUES ('order.placed', 2);
             INSERT INTO replay.event_type_counts VALUES ('order.placed', 2);",
        )
        .unwrap();
        let differences: Vec<(&str, u64)> = projectors
            .iter()
            .flat_map(|p| p.differences(&conn).unwrap())
            .filter(|(_, n)| *n > 0)
            .collect();
        assert_eq!(differences, [("consents", 2)]);
        for projector in &projectors {
            projector.swap(&conn).unwrap();
        }
        let granted: i64 = conn
            .query_row("SELECT granted FROM main.consents", [], |r| r.get(0))
            .unwrap();
        assert_eq!(granted, 0, "the rebuilt row replaced the live one");
    }
}
